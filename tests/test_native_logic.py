"""The native logical ops and float predicates (csrc/kernels/elementwise.cpp) against the numpy kernels:
And / Or / Xor (bool, numpy broadcasting), Not, IsNaN and IsInf (float32, float64, float16; both
detect flags), over edge shapes (0, 1, odd, broadcast) and the special values."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import make_model, native_and_numpy, vi

PAIRS = [((), ()), ((0,), (1,)), ((1,), (7,)), ((7,), (7,)), ((2, 3), (3,)), ((2, 1), (1, 5)), ((4, 1, 3), (2, 1)),
         ((3, 0), (1,)), ((1025,), (1025,)), ((2, 70001), (1,))]


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_and_or_xor(op):
    node = helper.make_node(op, ["a", "b"], ["y"], name="n0")
    nat, ref = native_and_numpy(make_model([node], [vi("a", T.BOOL, None), vi("b", T.BOOL, None)],
                                           [vi("y", T.BOOL, None)]), op)
    rng = np.random.default_rng(1)
    for sa, sb in PAIRS:
        for a_shape, b_shape in ((sa, sb), (sb, sa)):
            feeds = {"a": rng.random(a_shape) < 0.5, "b": rng.random(b_shape) < 0.5}
            got, want = nat.run(None, feeds)[0], ref.run(None, feeds)[0]
            assert got.dtype == want.dtype == np.bool_ and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e38, 65504.0, 1e-45]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("op,attrs", [("IsNaN", {}), ("IsInf", {}), ("IsInf", {"detect_positive": 0}),
                                      ("IsInf", {"detect_negative": 0}),
                                      ("IsInf", {"detect_positive": 0, "detect_negative": 0})])
def test_float_predicates(op, attrs, dtype):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node(op, ["x"], ["y"], name="n0", **attrs)
    nat, ref = native_and_numpy(make_model([node], [vi("x", elem, None)], [vi("y", T.BOOL, None)], opset=20), op)
    rng = np.random.default_rng(2)
    with np.errstate(over="ignore"):
        for n in (0, 1, 7, 1025, 70001):
            x = rng.choice(np.array(SPECIAL), n).astype(dtype)
            got, want = nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
            np.testing.assert_array_equal(got, want)
        x = np.array(SPECIAL).astype(dtype).reshape(1, -1)
        np.testing.assert_array_equal(nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0])


def test_not():
    node = helper.make_node("Not", ["x"], ["y"], name="n0")
    nat, ref = native_and_numpy(make_model([node], [vi("x", T.BOOL, None)], [vi("y", T.BOOL, None)]), "Not")
    for shape in [(), (0,), (1,), (7,), (3, 5), (70001,)]:
        x = np.random.default_rng(3).random(shape) < 0.5
        np.testing.assert_array_equal(nat.run(None, {"x": x})[0], ~x)
        np.testing.assert_array_equal(ref.run(None, {"x": x})[0], ~x)
