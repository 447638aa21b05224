"""The quick benchmark subset the gate runs (ci/bench_gate.py --quick): a few kernels and two small models,
onnxfast against onnxruntime at one thread, a few seconds in all.

Each entry is measured in rounds: within a round onnxfast and onnxruntime each run a batch of calls back
to back (the order alternating), and the round's ratio is onnxfast's time / onnxruntime's; the entry's ratio
is the median over rounds, so a slow phase of a shared machine hits both halves of a pair alike.
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17) -> bytes:
    g = helper.make_graph(nodes, "q", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m.SerializeToString()


def _vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def _small_cnn(rng) -> tuple[bytes, dict]:
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    wf = (rng.standard_normal((32, 10)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "wf"], ["y"])]
    data = _model(nodes, [_vi("x", [1, 3, 32, 32])], [_vi("y", [1, 10])], [("w1", w1), ("w2", w2), ("wf", wf)])
    return data, {"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}


def entries() -> dict[str, tuple[bytes, dict]]:
    """name -> (model bytes, feed)."""
    rng = np.random.default_rng(0)
    out: dict[str, tuple[bytes, dict]] = {}
    a = rng.standard_normal((256, 256)).astype(np.float32)
    out["matmul_256_fed"] = (_model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                                    [_vi("a", [256, 256]), _vi("b", [256, 256])], [_vi("y", [256, 256])]),
                             {"a": a, "b": a.T.copy()})
    w = rng.standard_normal((768, 768)).astype(np.float32)
    out["matmul_m1_768_const"] = (_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 768])],
                                         [_vi("y", [1, 768])], [("w", w)]),
                                  {"x": rng.standard_normal((1, 768)).astype(np.float32)})
    wc = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    out["conv3x3_64x28"] = (_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                                    helper.make_node("Relu", ["c"], ["y"])],
                                   [_vi("x", [1, 64, 28, 28])], [_vi("y", [1, 64, 28, 28])], [("w", wc)]),
                            {"x": rng.standard_normal((1, 64, 28, 28)).astype(np.float32)})
    out["softmax_12x128x128"] = (_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
                                        [_vi("x", [12, 128, 128])], [_vi("y", [12, 128, 128])]),
                                 {"x": rng.standard_normal((12, 128, 128)).astype(np.float32)})
    g, b = np.ones(768, np.float32), np.zeros(768, np.float32)
    out["layernorm_128x768"] = (_model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
                                       [_vi("x", [128, 768])], [_vi("y", [128, 768])], [("g", g), ("b", b)]),
                                {"x": rng.standard_normal((128, 768)).astype(np.float32)})
    out["add_bcast_128x768"] = (_model([helper.make_node("Add", ["x", "b"], ["y"])], [_vi("x", [128, 768])],
                                       [_vi("y", [128, 768])], [("b", rng.standard_normal(768).astype(np.float32))]),
                                {"x": rng.standard_normal((128, 768)).astype(np.float32)})
    from onnxfast.cli import DEMO_MODEL

    with open(DEMO_MODEL, "rb") as f:
        out["model_demo_mlp_b8"] = (f.read(), {"input": rng.standard_normal((8, 16)).astype(np.float32)})
    out["model_small_cnn"] = _small_cnn(rng)
    return out


def _sessions(data: bytes):
    import onnxruntime as ort

    import onnxfast

    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnxfast.InferenceSession(data, o), ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def measure(data: bytes, feed: dict, budget_s: float = 0.4, rounds: int = 15) -> float:
    """The median over rounds of onnxfast's time / onnxruntime's for one model and feed."""
    fast, ref = _sessions(data)
    for _ in range(3):
        fast.run(None, feed)
        ref.run(None, feed)
    t = time.perf_counter()
    fast.run(None, feed)
    ref.run(None, feed)
    per_pair = max(time.perf_counter() - t, 1e-6)
    calls = max(1, min(200, int(budget_s / rounds / per_pair)))
    ratios = []
    for r in range(rounds):
        times = {}
        for name, sess in ((("fast", fast), ("ref", ref)) if r % 2 == 0 else (("ref", ref), ("fast", fast))):
            t0 = time.perf_counter()
            for _ in range(calls):
                sess.run(None, feed)
            times[name] = time.perf_counter() - t0
        ratios.append(times["fast"] / times["ref"])
    return float(np.median(ratios))


def machine() -> dict:
    import onnxruntime as ort

    import onnxfast
    from onnxfast import _core

    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    # family / model tell microarchitectures apart where a VM reports only "AMD EPYC" or "Intel Xeon"
    cpu_id = f"f{fields['cpu family']}m{fields['model']}" if "cpu family" in fields and "model" in fields else ""
    return {"cpu": cpu, "cpu_id": cpu_id, "isa": _core.cpu_info()["isa"], "onnxruntime": ort.__version__,
            "onnxfast": onnxfast.__version__, "cores": os.cpu_count()}


def run(names: list[str] | None = None, budget_s: float = 0.4) -> dict[str, float]:
    """Ratios of the quick entries (all, or the named ones)."""
    es = entries()
    return {n: measure(*es[n], budget_s=budget_s) for n in (names or list(es))}


if __name__ == "__main__":
    import json
    import sys

    json.dump({"machine": machine(), "ratios": run()}, sys.stdout, indent=1)
    print()
