"""The native Pow and CumSum kernels (csrc/kernels/elementwise.cpp, tensor_ops.cpp) against the numpy
kernels: Pow over float32 / float64 bases with exponents of every numeric type, broadcast both ways,
the constant-exponent shortcuts (1, 2, 3, 0.5: the same bits on both paths, special values included);
CumSum over every axis, exclusive / reverse, edge sizes (0, 1, odd, long rows) and integer wrap-around."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import make_model, native_and_numpy, vi

SHAPES = [((), ()), ((0,), (1,)), ((1,), (7,)), ((7,), (7,)), ((2, 3), (3,)), ((2, 1), (1, 5)),
          ((4, 1, 3), (2, 1)), ((3, 0), (1,)), ((1025,), (1025,)), ((2, 70001), (1,))]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-30, 3e38, 0.5]


def _elem(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


@pytest.mark.parametrize("xdt", [np.float32, np.float64])
@pytest.mark.parametrize("edt", [np.float32, np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8])
def test_pow_against_numpy(xdt, edt):
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="n0")
    model = make_model([node], [vi("x", _elem(xdt), None), vi("e", _elem(edt), None)], [vi("y", _elem(xdt), None)])
    nat, ref = native_and_numpy(model, "Pow")
    rng = np.random.default_rng(5)
    with np.errstate(all="ignore"):
        for sa, sb in SHAPES:
            for x_shape, e_shape in ((sa, sb), (sb, sa)):
                x = (rng.random(x_shape) * 4 - 1).astype(xdt)
                e = (rng.integers(-3, 4, e_shape) if np.dtype(edt).kind in "iu" and np.dtype(edt).kind != "u"
                     else rng.integers(0, 4, e_shape) if np.dtype(edt).kind == "u"
                     else rng.random(e_shape) * 6 - 3).astype(edt)
                got, want = nat.run(None, {"x": x, "e": e})[0], ref.run(None, {"x": x, "e": e})[0]
                assert got.dtype == want.dtype == xdt and got.shape == want.shape
                # numpy's power may use a SIMD pow (1 ulp); the shapes and specials are exact
                np.testing.assert_allclose(got, want, rtol=4e-7 if xdt == np.float32 else 1e-15, equal_nan=True)


@pytest.mark.parametrize("xdt", [np.float32, np.float64])
@pytest.mark.parametrize("exponent,edt", [(e, np.float32) for e in (1.0, 2.0, 3.0, 0.5, 1.5, -1.0)] +
                         [(e, np.int64) for e in (1.0, 2.0, 3.0, -1.0)])
def test_pow_constant_exponent_same_bits(xdt, exponent, edt):
    """A constant scalar exponent (GELU's x**3): both paths take the same shortcut, bit for bit."""
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="n0")
    model = make_model([node], [vi("x", _elem(xdt), None)], [vi("y", _elem(xdt), None)],
                       initializers=[("e", np.array(exponent, edt))])
    nat, ref = native_and_numpy(model, "Pow")
    rng = np.random.default_rng(6)
    with np.errstate(all="ignore"):
        for shape in [(), (0,), (1,), (7,), (3, 17), (70001,)]:
            x = (rng.standard_normal(shape) * 3).astype(xdt)
            got, want = nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
            if exponent in (1.0, 2.0, 3.0, 0.5):
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=4e-7 if xdt == np.float32 else 1e-15, equal_nan=True)
        x = np.array(SPECIAL, xdt)
        got, want = nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=4e-7 if xdt == np.float32 else 1e-15, equal_nan=True)
        if exponent in (1.0, 2.0, 3.0, 0.5):
            np.testing.assert_array_equal(got, want)


def test_pow_constant_exponent_of_higher_rank():
    """A [1, 1] exponent on a 1-D base broadcasts the output up to rank 2 (no shortcut)."""
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="n0")
    model = make_model([node], [vi("x", T.FLOAT, None)], [vi("y", T.FLOAT, None)],
                       initializers=[("e", np.full((1, 1), 2.0, np.float32))])
    nat, ref = native_and_numpy(model, "Pow")
    x = np.arange(5, dtype=np.float32)
    got = nat.run(None, {"x": x})[0]
    assert got.shape == (1, 5)
    np.testing.assert_array_equal(got, ref.run(None, {"x": x})[0])


def _cumsum_sessions(dtype, exclusive, reverse, axis_dtype=np.int64):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="n0", exclusive=exclusive, reverse=reverse)
    model = make_model([node], [vi("x", _elem(dtype), None), vi("axis", _elem(axis_dtype), None)],
                       [vi("y", _elem(dtype), None)])
    return native_and_numpy(model, "CumSum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint32, np.uint64])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_against_numpy(dtype, exclusive, reverse):
    nat, ref = _cumsum_sessions(dtype, exclusive, reverse)
    rng = np.random.default_rng(7)
    for shape in [(0,), (1,), (7,), (2, 3), (3, 0, 2), (4, 1, 5), (2, 3, 17), (1025,), (2, 4097)]:
        x = (rng.standard_normal(shape) * 100).astype(dtype) if np.dtype(dtype).kind == "f" else \
            rng.integers(0, 1000, shape).astype(dtype)
        for axis in range(-len(shape), len(shape)):
            feeds = {"x": x, "axis": np.array(axis, np.int64)}
            got, want = nat.run(None, feeds)[0], ref.run(None, feeds)[0]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_cumsum_specials_and_wraparound():
    nat, ref = _cumsum_sessions(np.float32, 1, 0, np.int32)
    x = np.array([-0.0, np.nan, 1.0, np.inf, -np.inf], np.float32)
    feeds = {"x": x, "axis": np.array([0], np.int32)}
    got = nat.run(None, feeds)[0]
    np.testing.assert_array_equal(got, ref.run(None, feeds)[0])
    assert np.signbit(got[1])  # exclusive: the first sum is x[0] itself, -0.0
    nat, ref = _cumsum_sessions(np.int32, 0, 0, np.int32)
    x = np.array([2**31 - 1, 1, 5], np.int32)
    feeds = {"x": x, "axis": np.array(0, np.int32)}
    np.testing.assert_array_equal(nat.run(None, feeds)[0], np.array([2**31 - 1, -2**31, -2**31 + 5], np.int32))


def test_cumsum_bad_axis_names_node():
    from onnxfast.errors import InvalidArgument

    nat, _ = _cumsum_sessions(np.float32, 0, 0)
    with pytest.raises(InvalidArgument, match=r"CumSum node 'n0': axis 2 is out of range"):
        nat.run(None, {"x": np.zeros((2, 2), np.float32), "axis": np.array(2, np.int64)})
    with pytest.raises(InvalidArgument, match=r"CumSum node 'n0': axis must hold one value"):
        nat.run(None, {"x": np.zeros((2, 2), np.float32), "axis": np.array([0, 1], np.int64)})
