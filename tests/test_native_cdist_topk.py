"""Native com.microsoft CDist and TopK (csrc/kernels/cdist.cpp, topk.cpp) against their numpy kernels and
onnxruntime, and the ScanCDistFusion pass (optimizer/ml.py) that turns skl2onnx's Scan form of pairwise
distances into CDist: rewritten with unchanged outputs, near misses left alone."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx_helpers import native_and_numpy

import onnxfast
from onnxfast import ir
from onnxfast.optimizer import optimize

ort = pytest.importorskip("onnxruntime")


def _ort(model, feed):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def _cdist_model(metric, dtype=T.FLOAT):
    node = helper.make_node("CDist", ["a", "b"], ["y"], domain="com.microsoft", name="n", metric=metric)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, dtype, [None, None]) for n in "ab"],
                          [helper.make_tensor_value_info("y", dtype, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=8)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("n,m,d", [(0, 3, 4), (1, 1, 1), (5, 7, 3), (9, 4, 8), (3, 17, 19)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cdist(metric, n, m, d, dtype):
    rng = np.random.default_rng(n * 100 + m * 10 + d)
    a = rng.normal(size=(n, d)).astype(dtype)
    b = rng.normal(size=(m, d)).astype(dtype)
    b[0, :] = a[0, :] if n else b[0, :]  # a zero distance
    model = _cdist_model(metric, T.FLOAT if dtype == np.float32 else T.DOUBLE)
    nat, ref = native_and_numpy(model, "CDist")
    got = nat.run(None, {"a": a, "b": b})[0]
    np.testing.assert_allclose(got, ref.run(None, {"a": a, "b": b})[0], rtol=1e-5, atol=1e-6)
    # onnxruntime expands |a - b|^2 into |a|^2 + |b|^2 - 2 a.b: equal rows get ~1e-6 instead of 0, whose
    # square root (euclidean) is ~1e-3; onnxfast sums the differences
    atol = 2e-3 if metric == "euclidean" else 1e-5
    np.testing.assert_allclose(got, _ort(model, {"a": a, "b": b})[0], rtol=1e-5, atol=atol)


def _topk_model(shape, dtype, axis, largest, opset=11):
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="n", axis=axis, largest=largest)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, [None] * len(shape)),
                                        helper.make_tensor_value_info("k", T.INT64, [1])],
                          [helper.make_tensor_value_info("v", dtype, None), helper.make_tensor_value_info("i", T.INT64, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((4, 9), 1), ((4, 9), 0), ((2, 5, 3), 1), ((1, 33), -1)])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk(dtype, shape, axis, largest):
    rng = np.random.default_rng(len(shape) + axis)
    x = rng.integers(-4, 5, size=shape).astype(dtype)  # ties
    model = _topk_model(shape, {np.float32: T.FLOAT, np.float64: T.DOUBLE, np.int32: T.INT32,
                                np.int64: T.INT64}[dtype], axis, largest)
    nat, ref = native_and_numpy(model, "TopK")
    for k in (0, 1, 3, x.shape[axis]):
        feed = {"x": x, "k": np.array([k], np.int64)}
        got = nat.run(None, feed)
        for g, r, w in zip(got, ref.run(None, feed), _ort(model, feed)):
            np.testing.assert_array_equal(g, r)
            np.testing.assert_array_equal(g, w)
    with pytest.raises(onnxfast.errors.InvalidArgument, match="out of range"):
        nat.run(None, {"x": x, "k": np.array([x.shape[axis] + 1], np.int64)})


def test_topk_nan_goes_last():
    x = np.array([[1.0, np.nan, 3.0, np.nan, 2.0]], np.float32)
    for largest in (0, 1):
        nat, ref = native_and_numpy(_topk_model(x.shape, T.FLOAT, 1, largest), "TopK")
        feed = {"x": x, "k": np.array([5], np.int64)}
        for g, r in zip(nat.run(None, feed), ref.run(None, feed)):
            np.testing.assert_array_equal(g, r)


def _scan_cdist_model(body_kind="skl2onnx", x_rank=2):
    """skl2onnx's Scan form of cdist(X, T) (body_kind 'skl2onnx'), or near misses of it."""
    body_nodes = [helper.make_node("Identity", ["next_in"], ["next_out"]),
                  helper.make_node("Sub", ["next_in", "next"], ["diff"])]
    if body_kind == "sum":  # ReduceSum, not ReduceSumSquare: not a distance
        body_nodes.append(helper.make_node("ReduceSum", ["diff", "axes"], ["red"], keepdims=0))
    else:
        body_nodes.append(helper.make_node("ReduceSumSquare", ["diff", "axes"], ["red"],
                                           keepdims=1 if body_kind == "keepdims" else 0))
    body_nodes.append(helper.make_node("Identity", ["red"], ["scan_out"]))
    body = helper.make_graph(body_nodes, "body", [helper.make_tensor_value_info("next_in", T.FLOAT, None),
                                                 helper.make_tensor_value_info("next", T.FLOAT, None)],
                             [helper.make_tensor_value_info("next_out", T.FLOAT, None),
                              helper.make_tensor_value_info("scan_out", T.FLOAT, None)],
                             [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    scan = helper.make_node("Scan", ["X", "T"], ["state", "dist"], name="scan", num_scan_inputs=1, body=body)
    tr = helper.make_node("Transpose", ["dist"], ["d"], perm=[1, 0])
    g = helper.make_graph([scan, tr], "g", [helper.make_tensor_value_info("X", T.FLOAT, [None, 3] if x_rank == 2
                                                                          else None)],
                          [helper.make_tensor_value_info("d", T.FLOAT, None)],
                          [numpy_helper.from_array(np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32),
                                                   "T")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _ops(model, level):
    m = ir.build_model(model, None, release=False)
    optimize(m, level, ())
    m.graph.check()
    return [n.op_type for n in m.graph.nodes]


def test_scan_cdist_becomes_cdist():
    m = _scan_cdist_model()
    assert _ops(m, 0) == ["Scan", "Transpose"]
    assert _ops(m, 1) == ["CDist", "Transpose"]
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    o0 = onnxfast.SessionOptions()
    o0.graph_optimization_level = onnxfast.GraphOptimizationLevel(0)
    want = onnxfast.InferenceSession(m.SerializeToString(), o0).run(None, {"X": x})[0]
    got = onnxfast.InferenceSession(m.SerializeToString()).run(None, {"X": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, _ort(m, {"X": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind,rank", [("sum", 2), ("keepdims", 2), ("skl2onnx", None)])
def test_scan_cdist_near_misses_stay(kind, rank):
    assert _ops(_scan_cdist_model(kind, rank), 1) == ["Scan", "Transpose"]
