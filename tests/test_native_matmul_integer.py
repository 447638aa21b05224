"""The native MatMulInteger kernel (csrc/kernels/matmul_integer.cpp), the registry's first mixed-type
kernel (A and B each uint8 or int8): every type combination, zero points absent / scalar / per row and
column, edge sizes (0, 1, odd, vector tails), broadcast batches and 1-D operands, constant B
pre-packed, int32 wrap-around; against an int64 numpy reference and the numpy kernel."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import make_model, native_and_numpy, session, vi

import onnxfast
from onnxfast import _core

TYPES = {np.uint8: T.UINT8, np.int8: T.INT8}
SIZES = [(0, 3, 4), (1, 1, 1), (3, 0, 5), (5, 7, 3), (2, 33, 17), (4, 16, 8), (1, 64, 65)]


def _model(ta, tb, zp: str, a_shape=None, b_shape=None, inits=()):
    names = ["a", "b"] + (["za", "zb"] if zp else [])
    node = helper.make_node("MatMulInteger", names, ["y"], name="n0")
    inputs = [vi("a", TYPES[ta], a_shape)] + ([vi("b", TYPES[tb], b_shape)] if "b" not in dict(inits) else [])
    if zp:
        inputs += [vi(n, TYPES[t], None) for n, t in (("za", ta), ("zb", tb)) if n not in dict(inits)]
    return make_model([node], inputs, [vi("y", T.INT32, None)], initializers=inits, opset=13)


def _rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _reference(a, b, za=None, zb=None):
    A = a.astype(np.int64) - (0 if za is None else (za.astype(np.int64).reshape(-1, 1) if za.size != 1
                                                   else za.astype(np.int64)))
    B = b.astype(np.int64) - (0 if zb is None else zb.astype(np.int64))
    return np.matmul(A, B).astype(np.int32)  # modulo 2^32, as the int32 accumulators


@pytest.mark.parametrize("ta,tb", list(itertools.product(TYPES, TYPES)))
@pytest.mark.parametrize("zp", ["", "scalar", "vector"])
def test_matmul_integer_sizes(ta, tb, zp):
    nat, ref = native_and_numpy(_model(ta, tb, zp), "MatMulInteger")
    rng = np.random.default_rng(3)
    for M, K, N in SIZES:
        a, b = _rand(rng, ta, (M, K)), _rand(rng, tb, (K, N))
        feeds = {"a": a, "b": b}
        if zp:
            feeds["za"] = _rand(rng, ta, (M,) if zp == "vector" else ())
            feeds["zb"] = _rand(rng, tb, (N,) if zp == "vector" else ())
        got = nat.run(None, feeds)[0]
        want = _reference(a, b, feeds.get("za"), feeds.get("zb"))
        assert got.dtype == np.int32 and got.shape == (M, N)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, ref.run(None, feeds)[0])


@pytest.mark.parametrize("a_shape,b_shape", [((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (2, 4, 5)), ((4,), (4, 3)),
                                             ((2, 3, 4), (4,)), ((4,), (4,)), ((1, 3, 0, 4), (3, 4, 2))])
def test_matmul_integer_batches_and_vectors(a_shape, b_shape):
    nat, ref = native_and_numpy(_model(np.uint8, np.int8, ""), "MatMulInteger")
    rng = np.random.default_rng(4)
    a, b = _rand(rng, np.uint8, a_shape), _rand(rng, np.int8, b_shape)
    got = nat.run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(got, _reference(a, b))
    np.testing.assert_array_equal(got, ref.run(None, {"a": a, "b": b})[0])


@pytest.mark.parametrize("with_zp", [False, True])
def test_constant_b_is_prepacked(with_zp):
    rng = np.random.default_rng(5)
    b, zb = _rand(rng, np.int8, (24, 9)), _rand(rng, np.int8, (9,))
    za = np.array(128, np.uint8)
    inits = [("b", b)] + ([("za", za), ("zb", zb)] if with_zp else [])
    s = session(_model(np.uint8, np.int8, "x" if with_zp else "", inits=inits))
    assert [r["kernel"] for r in s.kernel_listing()] == ["native:prepacked"]
    for m in (0, 1, 5):
        a = _rand(rng, np.uint8, (m, 24))
        np.testing.assert_array_equal(s.run(None, {"a": a})[0],
                                      _reference(a, b, za if with_zp else None, zb if with_zp else None))


@pytest.mark.parametrize("a_shape,b_shape,za_shape,zb_shape", [
    ((2, 3, 4), (2, 4, 5), (2, 3, 1), (2, 1, 5)),  # one per row / column of each matrix
    ((2, 3, 4), (4, 5), (3,), (1, 5)),  # shared by A's matrices; per column of the one B
    ((3, 4), (2, 4, 5), (3, 1), (5,)),
    ((4,), (4, 5), (1,), (5,)),
])
def test_zero_point_forms(a_shape, b_shape, za_shape, zb_shape):
    """The spec's per-row / per-column forms, N-D included, against numpy broadcasting."""
    rng = np.random.default_rng(8)
    nat, ref = native_and_numpy(_model(np.uint8, np.int8, "x"), "MatMulInteger")
    feeds = {"a": _rand(rng, np.uint8, a_shape), "b": _rand(rng, np.int8, b_shape),
             "za": _rand(rng, np.uint8, za_shape), "zb": _rand(rng, np.int8, zb_shape)}
    A = feeds["a"].astype(np.int64) - (feeds["za"].astype(np.int64).reshape(-1, 1) if len(za_shape) == 1
                                       and za_shape[0] != 1 else feeds["za"].astype(np.int64))
    want = np.matmul(A, feeds["b"].astype(np.int64) - feeds["zb"].astype(np.int64)).astype(np.int32)
    np.testing.assert_array_equal(nat.run(None, feeds)[0], want)
    np.testing.assert_array_equal(ref.run(None, feeds)[0], want)


def test_constant_vector_b_with_its_zero_point():
    """A 1-D B is one column: its zero point is a single value (N = 1), checked alike at load and run."""
    b, zb = np.arange(-3, 4, dtype=np.int8), np.array([2], np.int8)
    s = session(_model(np.uint8, np.int8, "x", inits=[("b", b), ("zb", zb)]))
    a, za = np.arange(14, dtype=np.uint8).reshape(2, 7), np.array(1, np.uint8)
    np.testing.assert_array_equal(s.run(None, {"a": a, "za": za})[0],
                                  (a.astype(np.int64) - 1) @ (b.astype(np.int64) - 2))


def test_sums_wrap_modulo_2_32():
    """255 * 255 * 33100 exceeds int32: the sums wrap as onnxruntime's int32 accumulators do."""
    K = 33100
    a, b = np.full((1, K), 255, np.uint8), np.full((K, 2), 255, np.uint8)
    got = session(_model(np.uint8, np.uint8, "")).run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(got, np.full((1, 2), np.int64(255 * 255 * K).astype(np.int32)))


def test_declared_with_per_input_types():
    defs = [d for d in _core.kernel_defs() if d["op_type"] == "MatMulInteger"]
    assert len(defs) == 1 and defs[0]["since"] == 10 and defs[0]["file"] == "csrc/kernels/matmul_integer.cpp"
    assert sorted(defs[0]["types"]) == [T.UINT8, T.INT8]
    assert {i: sorted(t) for i, t in defs[0]["input_types"].items()} == {i: [T.UINT8, T.INT8] for i in (1, 2, 3)}


@pytest.mark.parametrize("za_shape,zb_shape,match", [
    ((2, 2), (), "a_zero_point has shape (2, 2); it must be a scalar, 1-D of 3 elements (rows of A) or of shape (3, 1)"),
    ((), (4,), "b_zero_point has shape (4,); it must be a scalar, 1-D of 5 elements (columns of B) or of shape (1, 5)"),
])
def test_bad_zero_point_shape(za_shape, zb_shape, match):
    s = session(_model(np.uint8, np.int8, "x"))
    feeds = {"a": np.zeros((3, 4), np.uint8), "b": np.zeros((4, 5), np.int8),
             "za": np.zeros(za_shape, np.uint8), "zb": np.zeros(zb_shape, np.int8)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match=match.replace("(", r"\(").replace(")", r"\)")):
        s.run(None, feeds)


def test_inner_dimensions_checked():
    s = session(_model(np.int8, np.int8, ""))
    with pytest.raises(onnxfast.errors.InvalidArgument, match="inner dimensions differ"):
        s.run(None, {"a": np.zeros((3, 4), np.int8), "b": np.zeros((5, 2), np.int8)})
