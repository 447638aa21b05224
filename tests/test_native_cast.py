"""The native Cast (csrc/kernels/elementwise.cpp) against the numpy kernel, bit for bit.

Every pair of bool, int8 .. int64, uint8 .. uint64, float16, float32 and float64, over sizes 0, 1,
odd, and past the 1024-element conversion block and the parallel chunks. Values the spec defines
(in range) and values it leaves undefined (NaN, inf, out of range to an integer) alike: onnxfast's
rule for the latter is one rule on both paths and every CPU (ops/math.py ``_float_to_int``), and
a few of its values are spelled out below.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import native_and_numpy

import onnxfast

TYPES = [T.BOOL, T.INT8, T.UINT8, T.INT16, T.UINT16, T.INT32, T.UINT32, T.INT64, T.UINT64, T.FLOAT16, T.FLOAT,
         T.DOUBLE]
SIZES = [0, 1, 7, 1025, 70001]


def _model(src, to, opset=21):
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], name="n0", to=to)], "g",
        [helper.make_tensor_value_info("x", src, None)], [helper.make_tensor_value_info("y", to, None)]),
        opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _values(src, n, rng, wild):
    dt = helper.tensor_dtype_to_np_dtype(src)
    if dt == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    if not wild:  # in range for every integer target
        return (rng.integers(-128, 128, n) + rng.random(n) * 0.98).astype(dt)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5, -2.5, 3e9, -3e9, 5e9, 1e20, -1e20, 2.0 ** 31,
                        -(2.0 ** 31) - 1, 2.0 ** 63, 1.9e19, -129.5, 65537.9, 1e-40], np.float64)
    x = np.concatenate([special, rng.standard_normal(max(n - len(special), 0)) * 10.0 ** rng.integers(0, 21, max(n - len(special), 0))])
    with np.errstate(over="ignore"):
        return x[:n].astype(dt)


def _bits(a):
    return a.view(np.uint8) if a.dtype != np.bool_ else a


@pytest.mark.parametrize("src", TYPES, ids=lambda t: T.DataType.Name(t))
@pytest.mark.parametrize("to", TYPES, ids=lambda t: T.DataType.Name(t))
def test_cast_native_matches_numpy_bitwise(src, to):
    nat, ref = native_and_numpy(_model(src, to), "Cast")
    rng = np.random.default_rng(src * 100 + to)
    for n in SIZES:
        for wild in (False, True):
            x = _values(src, n, rng, wild)
            got, want = nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
            assert got.dtype == want.dtype and got.shape == want.shape
            if got.dtype.kind == "f":  # NaN payloads aside, equal bits
                np.testing.assert_array_equal(got, want)
                assert np.array_equal(np.signbit(got), np.signbit(want))
            else:
                np.testing.assert_array_equal(_bits(got), _bits(want))


def test_out_of_range_float_to_integer_rule():
    """The rule for what the spec leaves undefined, on both paths (onnxruntime's vector loop on x86-64)."""
    x = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 1e20, 300.7, -129.5, -2.7], np.float32)
    want = {
        T.INT8: [0, 0, 0, 0, 0, 0, 44, 127, -2],
        T.UINT8: [0, 0, 0, 0, 0, 0, 44, 127, 254],
        T.INT32: [-2**31] * 6 + [300, -129, -2],
        T.UINT32: [2**31, 0, 2**31, 3000000000, 2**31, 0, 300, 2**32 - 129, 2**32 - 2],
        T.INT64: [-2**63, -2**63, -2**63, 3000000000, -3000000000, -2**63, 300, -129, -2],
        T.UINT64: [2**63, 0, 2**63, 3000000000, 2**64 - 3000000000, 0, 300, 2**64 - 129, 2**64 - 2],
        T.BOOL: [True, True, True, True, True, True, True, True, True],
    }
    for to, w in want.items():
        for sess in native_and_numpy(_model(T.FLOAT, to), "Cast"):
            assert sess.run(None, {"x": x})[0].tolist() == w, T.DataType.Name(to)


def test_float64_to_float16_rounds_once():
    # just above the midpoint between 1 and the next half: float32 first would land on the midpoint
    # and round to even (1.0); rounded once it goes up
    x = np.array([1 + 2.0 ** -11 + 2.0 ** -40, -(1 + 2.0 ** -11 + 2.0 ** -40), 65519.999, 65520.0, 1e-8, 2.0 ** -25],
                 np.float64)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    for sess in native_and_numpy(_model(T.DOUBLE, T.FLOAT16), "Cast"):
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], want)


def test_cast_to_its_own_type_is_a_view_and_the_result_the_users_own():
    m = _model(T.FLOAT, T.FLOAT)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] == ["native"]
    x = np.arange(5, dtype=np.float32)
    y = s.run(None, {"x": x})[0]
    assert not np.shares_memory(x, y) and y.flags.writeable
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("to", [T.STRING, T.BFLOAT16, T.FLOAT8E4M3FN, T.INT4])
def test_targets_without_a_native_kernel_run_on_numpy(to):
    s = onnxfast.InferenceSession(_model(T.FLOAT, to).SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] == ["numpy"]
    s.run(None, {"x": np.array([1.5, -2.0], np.float32)})
