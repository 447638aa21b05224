"""The native views and shape queries (csrc/kernels/tensor_ops.cpp): Reshape, Flatten, Squeeze,
Unsqueeze, Identity hand their input's buffer on under a new shape; Shape and Size read the shape.

Each case runs on the native kernel and on the numpy kernel (the reference) over edge shapes (rank
0, zero-sized dims, 1, odd sizes), every opset form (attribute vs input axes / shape, allowzero,
Shape's start / end), several element types, and bad values, which must fail alike (same class and
message). The aliasing itself: results are the user's own writeable arrays, never sharing memory
with a feed, an initializer or another result.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import make_model, native_and_numpy, vi

import onnxfast
from onnxfast import errors

F, I64 = TensorProto.FLOAT, TensorProto.INT64
SHAPES = [(), (0,), (1,), (7,), (2, 3), (1, 1, 5), (3, 0, 2), (2, 1, 3, 1)]
DTYPES = [np.float32, np.int64, np.uint8, np.bool_, np.float16, np.float64]


def _x(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)


def _same(nat, ref, feeds):
    """Both sessions give equal results, or both raise the same error."""
    try:
        want = ref.run(None, feeds)
    except errors.OnnxfastError as e:
        with pytest.raises(type(e)) as got:
            nat.run(None, feeds)
        assert str(got.value) == str(e)
        return None
    got = nat.run(None, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w)
    return got


def _check(model, op, feeds):
    """The native and numpy sessions of `model` agree on `feeds`; a model refused at creation is
    refused alike on both paths."""
    try:
        nat, ref = native_and_numpy(model, op)
    except errors.InvalidModel as e:
        for disabled in (f"numpy:{op}", "native"):
            o = onnxfast.SessionOptions()
            o.add_session_config_entry("onnxfast.disable_kernels", disabled)
            with pytest.raises(errors.InvalidModel) as got:
                onnxfast.InferenceSession(model.SerializeToString(), o)
            assert str(got.value) == str(e)
        return
    _same(nat, ref, feeds)


def _model(op, attrs, extra=(), opset=21, const=None):
    """op(x, *extra) -> y; const: (input name, array) given as an initializer instead of fed."""
    ins = ["x"] + [n for n, _ in extra]
    node = helper.make_node(op, ins, ["y"], name="n0", **attrs)
    inits = [const] if const else []
    graph_in = [vi("x", F, None)] + [vi(n, t, None) for n, t in extra if not const or n != const[0]]
    return make_model([node], graph_in, [vi("y", TensorProto.UNDEFINED, None)], initializers=inits, opset=opset)


def _with_dtype(model, dtype):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model.graph.input[0].type.tensor_type.elem_type = elem
    return model


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_identity_and_shape_queries(shape, dtype):
    x = _x(shape, dtype)
    for op, attrs, opset in [("Identity", {}, 21), ("Shape", {}, 13), ("Size", {}, 21),
                             ("Shape", {"start": 1}, 21), ("Shape", {"start": -1}, 21), ("Shape", {"end": -1}, 21),
                             ("Shape", {"start": -9, "end": 9}, 21), ("Shape", {"start": 2, "end": 1}, 21)]:
        _check(_with_dtype(_model(op, attrs, opset=opset), dtype), op, {"x": x})


RESHAPES = [[-1], [0], [0, -1], [-1, 0], [1, -1, 1], [2, -1], [3, 0, -1], [0, 0, 0, 0], [6], [1, 2, 3], [],
            [-1, -1], [-2], [5, 7], [0, 4], [2, 3, 0]]


@pytest.mark.parametrize("allowzero", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reshape_fed_and_constant(shape, allowzero):
    x = _x(shape, np.float32)
    for target in RESHAPES:
        t = np.array(target, np.int64)
        for const in (None, ("s", t)):
            m = _model("Reshape", {"allowzero": allowzero}, [("s", I64)], opset=14, const=const)
            _check(m, "Reshape", {"x": x} if const else {"x": x, "s": t})


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reshape_1_attribute_form(shape):
    x = _x(shape, np.float32)
    for target in RESHAPES:
        if not target:
            continue  # onnx.helper cannot type an empty list attribute
        _check(_model("Reshape", {"shape": target}, opset=4), "Reshape", {"x": x})


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_flatten(shape):
    x = _x(shape, np.float32)
    r = len(shape)
    for axis in range(-r, r + 1):
        _check(_model("Flatten", {"axis": axis}), "Flatten", {"x": x})


AXES = [None, [0], [-1], [0, -1], [1], [1, 3], [0, 0], [5], [-4, 1]]


@pytest.mark.parametrize("op", ["Squeeze", "Unsqueeze"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_squeeze_unsqueeze_all_forms(op, shape):
    x = _x(shape, np.float32)
    for axes in AXES:
        # opset 11: the attribute (Unsqueeze requires it: refused at creation); opset 13: the input,
        # fed or constant (absent when None: Unsqueeze-13 requires it, refused at load)
        _check(_model(op, {} if axes is None else {"axes": axes}, opset=11), op, {"x": x})
        if axes is None:
            _check(_model(op, {}, opset=13), op, {"x": x})
            continue
        a = np.array(axes, np.int64)
        for const in (None, ("a", a)):
            _check(_model(op, {}, [("a", I64)], opset=13, const=const), op, {"x": x} if const else {"x": x, "a": a})


def test_views_are_not_copies_inside_and_results_are_the_users_own():
    """y = Reshape(relu(x)), z = Identity(relu(x)) and r = relu(x) are all outputs: one buffer inside,
    three independent writeable arrays outside; a view of the feed or of an initializer is a copy."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "s"], ["y"]),
             helper.make_node("Identity", ["r"], ["z"]), helper.make_node("Reshape", ["x", "s"], ["xv"]),
             helper.make_node("Identity", ["w"], ["wv"])]
    m = make_model(nodes, [vi("x", F, [2, 3])], [vi(n, F, None) for n in ("y", "z", "r", "xv", "wv")],
                   initializers=[("s", np.array([3, -1], np.int64)), ("w", np.ones(4, np.float32))])
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert sum(r["kernel"] == "native:view" for r in s.kernel_listing()) >= 3, s.kernel_listing()
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    y, z, r, xv, wv = s.run(None, {"x": x})
    outs = [y, z, r, xv, wv]
    assert all(o.flags.writeable for o in outs)
    for i, a in enumerate(outs):
        assert not np.shares_memory(a, x)
        for b in outs[i + 1:]:
            assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(3, 2))
    y[...] = 7
    wv[...] = 7
    _, _, r2, _, wv2 = s.run(None, {"x": x})  # nothing the user wrote reaches the session
    np.testing.assert_array_equal(r2, np.maximum(x, 0))
    np.testing.assert_array_equal(wv2, np.ones(4, np.float32))


def test_a_chain_of_views_feeds_a_numpy_step_read_only():
    """A view reaches a numpy kernel as a read-only array; the numpy kernel's result is correct."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unsqueeze", ["r", "a"], ["u"]),
             helper.make_node("Flatten", ["u"], ["f"], axis=0), helper.make_node("CumSum", ["f", "ax"], ["y"])]
    m = make_model(nodes, [vi("x", F, [2, 3])], [vi("y", F, None)],
                   initializers=[("a", np.array([0], np.int64)), ("ax", np.array(1, np.int64))])
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    (y,) = onnxfast.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(y, np.cumsum(np.maximum(x, 0).reshape(1, 6), axis=1))


# ---- Expand and Range ----------------------------------------------------------------------------

EXPANDS = [[], [1], [3], [2, 1], [2, 3], [4, 1, 1], [1, 1, 1, 1], [0], [3, 0], [2, 7], [5, 2, 3], [-1], [1, 0, 1]]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.float16, np.bool_])
@pytest.mark.parametrize("shape", SHAPES + [(3, 1), (1, 3), (2, 1, 3)], ids=str)
def test_expand(shape, dtype):
    x = _x(shape, dtype)
    for target in EXPANDS:
        t = np.array(target, np.int64)
        for const in (None, ("s", t)):
            m = _with_dtype(_model("Expand", {}, [("s", I64)], opset=13, const=const), dtype)
            _check(m, "Expand", {"x": x} if const else {"x": x, "s": t})


RANGES = [(0, 5, 1), (5, 0, -1), (0, 10, 3), (10, 0, -3), (2, 2, 1), (0, 1, 7), (-7, 7, 2), (3, -3, 1), (0, 5, 0),
          (1.5, 4.25, 0.5), (0.1, 1.0, 0.1), (1e8, 1e8 + 10, 0.7), (-1.0, 1.0, 1e-3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int64])
def test_range(dtype):
    node = helper.make_node("Range", ["s", "l", "d"], ["y"], name="n0")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    m = make_model([node], [vi(n, elem, []) for n in "sld"], [vi("y", elem, None)], opset=11)
    for start, limit, delta in RANGES:
        if np.dtype(dtype).kind == "i" and any(float(v) != int(v) for v in (start, limit, delta)):
            continue
        feeds = {"s": np.array(start, dtype), "l": np.array(limit, dtype), "d": np.array(delta, dtype)}
        _check(m, "Range", feeds)
    if np.dtype(dtype).kind == "i":  # extremes: the count in wide arithmetic, values wrapping alike
        info = np.iinfo(dtype)
        for start, limit, delta in [(info.max - 2, info.max, 1), (info.min, info.min + 3, 1), (info.max, info.min, info.min)]:
            _check(m, "Range", {"s": np.array(start, dtype), "l": np.array(limit, dtype), "d": np.array(delta, dtype)})
    else:
        for start, limit, delta in [(0.0, np.inf, 1.0), (0.0, 1.0, np.nan), (0.0, 1e30, 1e-30)]:
            _check(m, "Range", {"s": np.array(start, dtype), "l": np.array(limit, dtype), "d": np.array(delta, dtype)})


@pytest.mark.parametrize("value", [None, np.array([7.5], np.float32), np.array([-3], np.int64), np.array([True]),
                                   np.array([2.5], np.float16), np.array([255], np.uint8), np.array([1e300]),
                                   np.array([1 + 2j], np.complex128)], ids=str)
def test_constant_of_shape(value):
    from onnx import numpy_helper

    attrs = {} if value is None else {"value": numpy_helper.from_array(value, "value")}
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="n0", **attrs)
    m = make_model([node], [vi("s", I64, None)], [vi("y", TensorProto.UNDEFINED, None)], opset=21)
    for target in [[], [0], [1], [7], [2, 3], [3, 0, 2], [70001], [2, -1]]:
        _check(m, "ConstantOfShape", {"s": np.array(target, np.int64)})


def test_constant_of_shape_too_large_is_refused_on_both_paths():
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="n0")
    m = make_model([node], [vi("s", I64, None)], [vi("y", F, None)], opset=21)
    nat, ref = native_and_numpy(m, "ConstantOfShape")
    for sess in (nat, ref):
        with pytest.raises(errors.AllocationError, match="n0"):
            sess.run(None, {"s": np.array([2**40, 2**20], np.int64)})


# ---- GatherElements and GatherND -----------------------------------------------------------------

def _gather_model(op, attrs, idx_elem=I64):
    node = helper.make_node(op, ["x", "i"], ["y"], name="n0", **attrs)
    return make_model([node], [vi("x", F, None), vi("i", idx_elem, None)], [vi("y", F, None)], opset=13)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.float16])
def test_gather_elements(dtype):
    rng = np.random.default_rng(4)
    for xs in [(1,), (5,), (3, 4), (2, 3, 5), (4, 1, 6), (3, 0)]:
        x = _x(xs, dtype)
        for axis in range(-len(xs), len(xs)):
            a = axis % len(xs)
            for trial in range(3):
                ishape = tuple(int(rng.integers(0, d + 1)) if i != a else int(rng.integers(0, 4)) for i, d in enumerate(xs))
                dim = xs[a]
                hi = dim + (2 if trial == 2 else 0)  # the third trial may go out of range
                idx = rng.integers(-dim - (1 if trial == 2 else 0), max(hi, 1), ishape) if dim or trial == 2 else \
                    np.zeros(ishape, np.int64)
                for elem, idt in ((I64, np.int64), (TensorProto.INT32, np.int32)):
                    m = _with_dtype(_gather_model("GatherElements", {"axis": axis}, elem), dtype)
                    _check(m, "GatherElements", {"x": x, "i": idx.astype(idt)})
    # ranks that differ, indices larger than the data
    m = _gather_model("GatherElements", {"axis": 0})
    _check(m, "GatherElements", {"x": _x((3, 4), np.float32), "i": np.zeros((2,), np.int64)})
    _check(m, "GatherElements", {"x": _x((3, 4), np.float32), "i": np.zeros((2, 5), np.int64)})


@pytest.mark.parametrize("batch_dims", [0, 1, 2])
def test_gather_nd(batch_dims):
    rng = np.random.default_rng(5 + batch_dims)
    m = _gather_model("GatherND", {"batch_dims": batch_dims})
    for xs in [(5,), (3, 4), (2, 3, 5), (2, 3, 4, 2), (2, 0, 3)]:
        if len(xs) <= batch_dims:
            continue
        x = _x(xs, np.float32)
        for k in range(0, len(xs) - batch_dims + 2):  # k too large in the last one
            for mid in [(), (1,), (3,), (2, 2), (0,)]:
                shape = xs[:batch_dims] + mid + (k,)
                dims = xs[batch_dims:batch_dims + k]
                cols = [rng.integers(-d, d, shape[:-1]) if d else np.zeros(shape[:-1], np.int64)
                        for d in dims] + [np.zeros(shape[:-1], np.int64)] * max(0, k - len(dims))
                idx = np.stack(cols, axis=-1).astype(np.int64) if k else np.zeros(shape, np.int64)
                _check(m, "GatherND", {"x": x, "i": idx})
                if idx.size and dims and dims[0]:
                    bad = idx.copy()
                    bad.reshape(-1, k)[0, 0] = dims[0] + 3
                    _check(m, "GatherND", {"x": x, "i": bad})
        _check(m, "GatherND", {"x": x, "i": np.zeros((7,) + xs[1:batch_dims] + (1,), np.int64)})  # batch mismatch


# ---- Split ---------------------------------------------------------------------------------------

def _split_model(n_out, attrs, opset, with_input=False, const=None):
    ins = ["x"] + (["sp"] if with_input else [])
    node = helper.make_node("Split", ins, [f"y{k}" for k in range(n_out)], name="n0", **attrs)
    graph_in = [vi("x", F, None)] + ([vi("sp", I64, None)] if with_input and not const else [])
    return make_model([node], graph_in, [vi(f"y{k}", F, None) for k in range(n_out)],
                      initializers=[const] if const else [], opset=opset)


@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 7, 3), (0, 4), (3, 0, 2)], ids=str)
def test_split_all_forms(shape):
    x = _x(shape, np.float32)
    r = len(shape)
    for axis in range(-r, r):
        dim = shape[axis]
        for n_out in (1, 2, 3):
            _check(_split_model(n_out, {"axis": axis}, 11), "Split", {"x": x})  # even split of the output count
            _check(_split_model(n_out, {"axis": axis}, 18 if n_out > 1 else 13) if n_out == 1 else
                   _split_model(n_out, {"axis": axis, "num_outputs": n_out}, 18), "Split", {"x": x})
            for sizes in ([dim], [1, dim - 1], [0, dim, 0], [dim - 2, 1, 1], [dim + 1, -1], [1] * n_out):
                if len(sizes) != n_out:
                    continue
                if all(v >= 0 for v in sizes):
                    _check(_split_model(n_out, {"axis": axis, "split": sizes}, 11), "Split", {"x": x})
                sp = np.array(sizes, np.int64)
                _check(_split_model(n_out, {"axis": axis}, 13, True), "Split", {"x": x, "sp": sp})
                _check(_split_model(n_out, {"axis": axis}, 13, True, ("sp", sp)), "Split", {"x": x})


def test_split_outputs_are_the_users_own_arrays():
    m = _split_model(2, {"axis": 1}, 13)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    nat, _ = native_and_numpy(m, "Split")
    a, b = nat.run(None, {"x": x})
    np.testing.assert_array_equal(a, x[:, :2])
    np.testing.assert_array_equal(b, x[:, 2:])
    assert a.flags.c_contiguous and a.flags.writeable and not np.shares_memory(a, x)
