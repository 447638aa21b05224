"""Recurrent operators (csrc/kernels/rnn.cpp) against onnxruntime, measured interleaved in one process at
one thread (benchmarks/test_kernels.py's pairing: extra_info holds onnxruntime's median, the ratio of the
medians, onnxfast / onnxruntime, < 1 is faster, and the paired ratio).

LSTM and GRU nodes with constant weights (W, R, B: pre-packed), seq 32, input 128, hidden 256, batch 1 and
8, forward and bidirectional, all outputs requested.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from benchmarks.test_kernels import _fast, _model, _ort, _pair

pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT

SEQ, INPUT, HIDDEN = 32, 128, 256


def rnn_model(op: str, direction: str, seq: int, batch: int, input_size: int, hidden: int) -> tuple[bytes, dict]:
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    ndir = 2 if direction == "bidirectional" else 1
    scale = 1.0 / np.sqrt(hidden)
    w = (rng.standard_normal((ndir, gates * hidden, input_size)) * scale).astype(np.float32)
    r = (rng.standard_normal((ndir, gates * hidden, hidden)) * scale).astype(np.float32)
    b = (rng.standard_normal((ndir, 2 * gates * hidden)) * 0.1).astype(np.float32)
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["x", "w", "r", "b"], outs, hidden_size=hidden, direction=direction)
    data = _model([node], [helper.make_tensor_value_info("x", F, [seq, batch, input_size])],
                  [helper.make_tensor_value_info(o, F, None) for o in outs], [("w", w), ("r", r), ("b", b)])
    x = rng.standard_normal((seq, batch, input_size)).astype(np.float32)
    return data, {"x": x}


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_rnn_vs_onnxruntime(benchmark, op, batch, direction):
    data, feed = rnn_model(op, direction, SEQ, batch, INPUT, HIDDEN)
    s, r = _fast(data, 1), _ort(data, 1)
    assert all(k["kernel"].startswith("native") for k in s.kernel_listing() if k["op_type"] == op)
    got, want = s.run(None, feed), r.run(None, feed)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    gates = {"LSTM": 4, "GRU": 3}[op]
    ndir = 2 if direction == "bidirectional" else 1
    flops = 2.0 * SEQ * batch * ndir * gates * HIDDEN * (INPUT + HIDDEN)
    _pair(benchmark, f"{op} seq{SEQ} batch{batch} in{INPUT} hidden{HIDDEN} {direction} t1",
          lambda: s.run(None, feed), lambda: r.run(None, feed), rounds=50, flops=flops)
