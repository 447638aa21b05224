"""Native ArgMax / ArgMin (csrc/kernels/argminmax.cpp) against the numpy kernel and onnxruntime: every axis
of ranks 1-3, keepdims, select_last_index, ties, NaN (the first / last NaN wins, as numpy's argmax),
float / double / int32 / int64, edge sizes, an empty axis refused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import native_and_numpy

import onnxfast

NP2T = {np.float32: T.FLOAT, np.float64: T.DOUBLE, np.int64: T.INT64, np.int32: T.INT32}


def _model(op, shape, dtype, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="n", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", NP2T[dtype], [None] * len(shape))],
                          [helper.make_tensor_value_info("y", T.INT64, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 1), (4, 17), (2, 5, 3), (1, 33, 2)])
def test_matches_numpy_and_onnxruntime(op, dtype, shape):
    rng = np.random.default_rng(len(shape) * 7 + shape[-1])
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # small integers: plenty of ties
    if np.dtype(dtype).kind == "f":
        x.reshape(-1)[rng.random(x.size) < 0.15] = np.nan
    for axis in range(-len(shape), len(shape)):
        for keepdims in (0, 1):
            for last in (0, 1):
                m = _model(op, shape, dtype, axis=axis, keepdims=keepdims, select_last_index=last)
                nat, ref = native_and_numpy(m, op)
                got = nat.run(None, {"x": x})[0]
                np.testing.assert_array_equal(got, ref.run(None, {"x": x})[0])
                if np.dtype(dtype).kind != "f":  # onnxruntime leaves NaN's order to its Eigen loop
                    ort = pytest.importorskip("onnxruntime")
                    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                        None, {"x": x})[0]
                    np.testing.assert_array_equal(got, want)


def test_empty_axis_refused():
    m = _model("ArgMax", (2, 0), np.float32, axis=1)
    nat, ref = native_and_numpy(m, "ArgMax")
    for s in (nat, ref):
        with pytest.raises(onnxfast.errors.InvalidArgument, match="empty axis 1"):
            s.run(None, {"x": np.zeros((2, 0), np.float32)})
