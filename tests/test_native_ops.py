"""Native pooling, normalization, reduction and data-movement kernels (csrc/kernels/pooling.cpp,
normalization.cpp, reduce.cpp, tensor_ops.cpp) against the numpy kernels of the same ops.

Each model runs twice: once with the op's numpy kernel disabled (the kernel listing must say
native) and once with every native kernel disabled. Shapes sweep sizes 0, 1, every size up to 17
and a few odd / prime / large ones along the pooled, reduced or moved axes; inputs are also fed as
non-contiguous numpy views. tests/test_isa_tiers.py reruns this file at every ISA tier."""

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import F, make_model, native_and_numpy, noncontiguous, vi

import onnxfast

SWEEP = list(range(18)) + [31, 64]


def _run_both(nat, ref, feed):
    """Both results, or both errors (same class, the native one naming the node)."""
    try:
        want = ref.run(None, feed)
    except onnxfast.errors.OnnxfastError as e:
        if feed["x"].size == 0 and "window shape" in str(e):
            # numpy's sliding_window_view rejects empty SAME-padded maps; native returns empty outputs
            assert all(g.size == 0 for g in nat.run(None, feed))
            return None, None
        with pytest.raises(type(e)) as got:
            nat.run(None, feed)
        assert "'n0'" in str(got.value), got.value
        return None, None
    return nat.run(None, feed), want


# ---- MaxPool / AveragePool ------------------------------------------------------------------

POOL_GEOMS = [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[1, 2], pads=[2, 2, 2, 2], dilations=[2, 2]),
    dict(kernel_shape=[2, 3], strides=[3, 2], pads=[1, 2, 0, 1], dilations=[2, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[4, 4], strides=[3, 3], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[2, 3], auto_pad="VALID"),
    dict(kernel_shape=[1, 1], strides=[3, 2]),
    dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
    dict(kernel_shape=[4], strides=[3], pads=[2, 1], ceil_mode=1),
    dict(kernel_shape=[2, 3, 2], strides=[1, 2, 2], pads=[1, 0, 1, 0, 1, 1]),
    dict(kernel_shape=[3, 1, 2], strides=[2, 1, 1], dilations=[1, 1, 2], ceil_mode=1),
]


def _pool_shapes(nsp):
    if nsp == 1:
        return [(2, 3, n) for n in SWEEP] + [(1, 2, 257)]
    if nsp == 2:
        return [(2, 3, n, 18 - n if n < 18 else n) for n in SWEEP] + [(1, 2, n, n) for n in (1, 2, 5, 7, 13, 17)] + [
            (0, 3, 5, 5), (2, 0, 5, 5), (1, 5, 61, 67)]
    return [(1, 2, a, b, c) for a, b, c in [(1, 1, 1), (2, 3, 4), (5, 7, 3), (8, 9, 17), (3, 0, 4), (4, 4, 4)]]


def _pool_input(rng, shape, ties):
    if ties:  # integer values: many equal maxima, so Indices must pick the first like numpy
        return rng.integers(-3, 3, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("geom", POOL_GEOMS, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
@pytest.mark.parametrize("variant", ["max", "max+indices", "max+indices-colmajor", "avg", "avg-include-pad",
                                     "lp2", "lp1", "lp3"])
def test_pool_against_numpy(rng, geom, variant):
    nsp = len(geom["kernel_shape"])
    attrs = dict(geom)
    op = "MaxPool" if variant.startswith("max") else "LpPool" if variant.startswith("lp") else "AveragePool"
    if op == "LpPool":
        attrs["p"] = int(variant[2:])
    outs = ["y", "i"] if "indices" in variant else ["y"]
    if variant == "avg-include-pad":
        attrs["count_include_pad"] = 1
    if variant.endswith("colmajor"):
        attrs["storage_order"] = 1
    opset = 19 if (op == "AveragePool" and "dilations" in attrs) else 18
    model = make_model([helper.make_node(op, ["x"], outs, name="n0", **attrs)], [vi("x")],
                       [vi("y")] + ([vi("i", TensorProto.INT64)] if len(outs) > 1 else []), opset=opset)
    nat, ref = native_and_numpy(model, op)
    checked = 0
    for shape in _pool_shapes(nsp):
        for ties in (False, True):
            x = _pool_input(rng, shape, ties)
            for feed in (x, noncontiguous(x)):
                got, want = _run_both(nat, ref, {"x": feed})
                if got is None:
                    continue
                checked += 1
                for g, w in zip(got, want):
                    assert g.shape == w.shape and g.dtype == w.dtype, (shape, g.shape, w.shape)
                    if op == "LpPool":  # |x|^p summed in another order than numpy's pairwise sum
                        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=f"{op} {attrs} input {shape}")
                    else:
                        np.testing.assert_array_equal(g, w, err_msg=f"{op} {attrs} input {shape}")
    assert checked >= 10


def test_maxpool_nan_inf_and_all_padding_windows():
    # NaN propagates (first NaN's index), -inf everywhere picks the window's first tap, windows
    # that lie entirely in the padding give -inf (Max) and NaN / 0 (Average without / with pads).
    # Pads must be smaller than the kernel (onnxruntime's rule, tests/test_conv_validation.py): a
    # dilated window can still miss the input (taps at rows -1 and 5 of 5).
    x = np.full((1, 2, 5, 6), -np.inf, np.float32)
    x[0, 0, 1, 2] = np.nan
    x[0, 0, 3, 3] = 4
    x[0, 1, 2, 2:5] = [1, np.nan, np.nan]
    for geom in (dict(strides=[2, 2]), dict(strides=[1, 2], dilations=[6, 1])):
        for op, extra, outs in (("MaxPool", {}, ["y", "i"]), ("AveragePool", {}, ["y"]),
                                ("AveragePool", {"count_include_pad": 1}, ["y"])):
            model = make_model([helper.make_node(op, ["x"], outs, name="n0", kernel_shape=[2, 3], pads=[1, 2, 1, 2],
                                                 **geom, **extra)],
                               [vi("x")], [vi(o, TensorProto.INT64 if o == "i" else F) for o in outs], opset=19)
            nat, ref = native_and_numpy(model, op)
            with np.errstate(all="ignore"):
                got, want = _run_both(nat, ref, {"x": x})
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("geom", [dict(kernel_shape=[2, 2], strides=[2, 2]),
                                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                  dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                                  dict(kernel_shape=[2, 4], strides=[1, 2], dilations=[2, 2], pads=[0, 3, 1, 2]),
                                  dict(kernel_shape=[3, 2], strides=[2, 3], ceil_mode=1)],
                         ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_maxpool_rows_sweep_widths_and_nans(rng, geom):
    # MaxPool without Indices runs the vector rows of pool_max_impl.h (AVX2 / AVX-512): every width up
    # to past two 16-lane vectors of outputs at stride 2 (tails, the stride-2 loads' slack), NaNs
    # and infinities in some windows
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="n0", **geom)], [vi("x")], [vi("y")])
    nat, ref = native_and_numpy(model, "MaxPool")
    for w in list(range(1, 40)) + [63, 64, 65, 70]:
        x = rng.standard_normal((1, 3, 5, w)).astype(np.float32)
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, max(1, flat.size // 40))] = np.nan
        flat[rng.integers(0, flat.size, max(1, flat.size // 40))] = np.inf
        x[0, 2] = -np.inf  # a plane of -inf: every window's max is -inf
        got, want = _run_both(nat, ref, {"x": x})
        if got is None:
            continue  # a window larger than the padded input: both refuse
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"{geom} width {w}")


def test_maxpool_indices_only(rng):
    # Y is required (an empty name is refused at load, as onnxruntime does); only the indices are read
    model = make_model([helper.make_node("MaxPool", ["x"], ["unused_y", "i"], name="n0", kernel_shape=[2, 3], strides=[2, 1],
                                         pads=[1, 1, 0, 1])],
                       [vi("x")], [vi("i", TensorProto.INT64)])
    nat, ref = native_and_numpy(model, "MaxPool")
    x = rng.integers(-3, 3, (2, 3, 7, 8)).astype(np.float32)
    got, want = _run_both(nat, ref, {"x": x})
    assert got[0].dtype == np.int64
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("attrs,msg", [
    (dict(kernel_shape=[3]), "kernel_shape"),
    (dict(kernel_shape=[9, 9]), "larger than the padded input"),
])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_errors_name_the_node(op, attrs, msg):
    # shape-dependent: at run time (attribute-only checks fail at session creation:
    # tests/test_conv_validation.py)
    model = make_model([helper.make_node(op, ["x"], ["y"], name="n0", **attrs)], [vi("x")], [vi("y")])
    nat, _ = native_and_numpy(model, op)
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"{op} 'n0'.*{msg}"):
        nat.run(None, {"x": np.zeros((1, 2, 5, 5), np.float32)})


def test_pool_large_map_threads_agree(rng):
    x = rng.standard_normal((2, 16, 112, 113)).astype(np.float32)
    for op, attrs in (("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
                      ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))):
        model = make_model([helper.make_node(op, ["x"], ["y"], name="n0", **attrs)], [vi("x")], [vi("y")])
        results = []
        for threads in (1, 3):
            nat, ref = native_and_numpy(model, op, threads)
            got, want = _run_both(nat, ref, {"x": x})
            np.testing.assert_array_equal(got[0], want[0])
            results.append(got[0].tobytes())
        assert results[0] == results[1]


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool:1", "GlobalLpPool:2"])
def test_global_pool(rng, op):
    op, _, p = op.partition(":")
    attrs = {"p": int(p)} if p else {}
    model = make_model([helper.make_node(op, ["x"], ["y"], name="n0", **attrs)], [vi("x")], [vi("y")])
    nat, ref = native_and_numpy(model, op)
    shapes = [(2, 3, n) for n in SWEEP if n] + [(2, 3, n, n + 1) for n in SWEEP] + [
        (0, 4, 3, 3), (3, 0, 2, 2), (1, 2, 3, 4, 5), (2, 5), (1, 3, 300, 300), (2, 2048, 7, 7)]
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        for feed in (x, noncontiguous(x)):
            got = nat.run(None, {"x": feed})[0]
            if x.size == 0 and 0 not in shape[:2] and op != "GlobalLpPool":
                want = np.full(shape[:2] + (1,) * (len(shape) - 2), np.nan if "Average" in op else -np.inf, np.float32)
            else:
                want = ref.run(None, {"x": feed})[0]
            assert got.shape == want.shape
            if op == "GlobalMaxPool":
                np.testing.assert_array_equal(got, want)
            else:
                n = max(1, int(np.prod(shape[2:])))
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.sqrt(n))
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"{op} 'n0'"):
        nat.run(None, {"x": np.zeros(3, np.float32)})


# ---- BatchNormalization / InstanceNormalization --------------------------------------------

NORM_SHAPES = [(2, 3, n) for n in SWEEP] + [(1, 1), (3, 5), (0, 4, 3), (2, 0, 5), (2, 3, 5, 0),
                                           (1, 17, 7, 9), (2, 4, 3, 5, 7), (1, 3, 300, 301), (1, 2, 70000)]


def _norm_model(op, C, const, rng, **attrs):
    names = ["scale", "B", "mean", "var"] if op == "BatchNormalization" else ["scale", "B"]
    vals = {n: rng.standard_normal(C).astype(np.float32) for n in names}
    if "var" in vals:
        vals["var"] = rng.random(C).astype(np.float32) + 0.1
    node = helper.make_node(op, ["x"] + names, ["y"], name="n0", **attrs)
    if const:
        return make_model([node], [vi("x")], [vi("y")], initializers=list(vals.items())), {}
    return make_model([node], [vi("x")] + [vi(n) for n in names], [vi("y")]), vals


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:Degrees of freedom")  # numpy on empty planes
@pytest.mark.parametrize("const", [True, False], ids=["const", "fed"])
@pytest.mark.parametrize("op", ["BatchNormalization", "InstanceNormalization"])
def test_channel_norms_against_numpy(rng, op, const):
    checked = 0
    for shape in NORM_SHAPES:
        C = shape[1]
        model, stats = _norm_model(op, C, const, rng, epsilon=1e-3)
        nat, ref = native_and_numpy(model, op)
        # an offset mean: the instance statistics must not lose precision on large planes
        x = (rng.standard_normal(shape) * 3 + 50).astype(np.float32)
        for feed in (x, noncontiguous(x)):
            got = nat.run(None, {"x": feed, **stats})[0]
            want = ref.run(None, {"x": feed, **stats})[0]
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4 if op == "InstanceNormalization" else 1e-5,
                                       err_msg=f"{op} {shape}")
            checked += 1
    assert checked == 2 * len(NORM_SHAPES)


def test_batchnorm_legacy_outputs_and_old_opsets(rng):
    # opset 7-13 nodes may list the training outputs; in inference they pass mean / var through
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for opset in (7, 9, 14, 15):
        model, _ = _norm_model("BatchNormalization", 3, True, rng)
        model.opset_import[0].version = opset
        if opset < 14:
            model.graph.node[0].output.extend(["m", "v"])
            model.graph.output.extend([vi("m"), vi("v")])
        nat, ref = native_and_numpy(model, "BatchNormalization")
        got, want = nat.run(None, {"x": x}), ref.run(None, {"x": x})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_modes_without_a_native_kernel_run_on_numpy(rng):
    # the registrations' when= conditions: these nodes get the numpy kernel, and it computes them
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    cases = [
        (helper.make_node("GlobalLpPool", ["x"], ["y"], p=3), [], 18,
         lambda: (np.abs(x) ** 3).sum(axis=(2, 3), keepdims=True) ** (1 / 3)),
        (helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[4, 5], p=-1), [], 18,
         lambda: (np.abs(x) ** -1.0).sum(axis=(2, 3), keepdims=True) ** -1.0),
        (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0),
         [("s", np.full((3, 4, 5), 2, np.float32)), ("b", np.zeros((3, 4, 5), np.float32)),
          ("m", np.zeros((3, 4, 5), np.float32)), ("v", np.ones((3, 4, 5), np.float32))], 7,
         lambda: 2 * x / np.sqrt(1 + 1e-5)),
    ]
    for node, inits, opset, ref in cases:
        model = make_model([node], [vi("x")], [vi("y")], initializers=inits, opset=opset)
        s = onnxfast.InferenceSession(model.SerializeToString())
        assert [r["kernel"] for r in s.kernel_listing()] == ["numpy"], node.op_type
        with np.errstate(all="ignore"):
            got = s.run(None, {"x": x})[0]
        if ref is not None:
            np.testing.assert_allclose(got, ref(), rtol=1e-5)


def test_batchnorm_training_and_half_statistics_run_on_numpy(rng):
    model, _ = _norm_model("BatchNormalization", 3, True, rng, training_mode=1)
    assert [r["kernel"] for r in onnxfast.InferenceSession(model.SerializeToString()).kernel_listing()] == ["numpy"]
    model, _ = _norm_model("BatchNormalization", 3, True, rng)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([1, 2, 0.5], np.float16), "scale"))
    s = onnxfast.InferenceSession(model.SerializeToString())
    assert [r["kernel"] for r in s.kernel_listing()] == ["numpy"]
    assert s.run(None, {"x": np.ones((1, 3, 2), np.float32)})[0].shape == (1, 3, 2)


@pytest.mark.parametrize("op", ["BatchNormalization", "InstanceNormalization"])
def test_channel_norm_errors_name_the_node(rng, op):
    model, stats = _norm_model(op, 4, False, rng)
    nat, _ = native_and_numpy(model, op)
    bad = dict(stats, scale=np.ones(5, np.float32))
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"{op} 'n0'.*scale.*one value per channel"):
        nat.run(None, {"x": np.zeros((1, 4, 3), np.float32), **bad})
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"{op} 'n0'.*at least 2 dimensions"):
        nat.run(None, {"x": np.zeros(4, np.float32), **stats})


@pytest.mark.parametrize("op", ["BatchNormalization", "InstanceNormalization"])
def test_channel_norm_threads_agree(rng, op):
    x = rng.standard_normal((2, 6, 150, 151)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        model, _ = _norm_model(op, 6, True, np.random.default_rng(1))
        nat, _ = native_and_numpy(model, op, threads)
        results.append(nat.run(None, {"x": x})[0].tobytes())
    assert results[0] == results[1] == results[2]


# ---- Reduce* --------------------------------------------------------------------------------

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare"]


def _reduce_model(op, opset, keepdims, axes=None, axes_mode="input", noop=None):
    """axes_mode: 'input' (fed at run time), 'const' (initializer), 'attr' (old opsets), 'none'."""
    attrs = dict(keepdims=keepdims)
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    inputs, graph_inputs, inits = ["x"], [vi("x")], []
    if axes_mode == "attr":
        if axes is not None:
            attrs["axes"] = axes
    elif axes_mode == "input":
        inputs.append("axes")
        graph_inputs.append(vi("axes", TensorProto.INT64))
    elif axes_mode == "const":
        inputs.append("axes")
        inits.append(("axes", np.array(axes, np.int64)))
    node = helper.make_node(op, inputs, ["y"], name="n0", **attrs)
    return make_model([node], graph_inputs, [vi("y")], initializers=inits, opset=opset)


def _axes_input_opset(op):
    return 13 if op == "ReduceSum" else 18


def _check_reduce(op, got, want, count):
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32, (got.shape, want.shape)
    if op in ("ReduceMax", "ReduceMin"):
        np.testing.assert_array_equal(got, want)
    else:
        scale = np.sqrt(max(count, 1))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * scale * (scale if "Sq" in op or "L2" in op else 1))


def _reduce_cases(rank):
    """(shape, axes) pairs: every size in SWEEP along the reduced axes, kept axes odd-sized."""
    cases = []
    for axes in itertools.chain.from_iterable(itertools.combinations(range(rank), k) for k in range(1, rank + 1)):
        for n in SWEEP:
            shape = [3, 5, 2, 7][:rank]
            for a in axes:
                shape[a] = n if a == axes[0] else max(1, (n * 7) % 19)
            cases.append((tuple(shape), list(axes)))
    return cases


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_input_sweep(rng, op, keepdims):
    model = _reduce_model(op, 18, keepdims)
    nat, ref = native_and_numpy(model, op)
    for rank in (1, 2, 3, 4):
        for shape, axes in _reduce_cases(rank):
            x = rng.standard_normal(shape).astype(np.float32)
            count = int(np.prod([shape[a] for a in axes]))
            negated = [a - rank if i % 2 else a for i, a in enumerate(axes)]
            for feed in (x, noncontiguous(x)):
                got, want = _run_both(nat, ref, {"x": feed, "axes": np.array(negated, np.int64)})
                _check_reduce(op, got[0], want[0], count)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("mode", ["attr", "const"])
def test_reduce_old_opset_attribute_and_constant_axes(rng, op, mode):
    opset = _axes_input_opset(op) - 1 if mode == "attr" else _axes_input_opset(op)
    for axes, keepdims in (([1], 1), ([0, 2], 0), ([-1], 0), ([2, 0, 1], 1)):
        model = _reduce_model(op, opset, keepdims, axes, mode)
        nat, ref = native_and_numpy(model, op)
        for shape in ((4, 5, 6), (1, 17, 1), (3, 0, 2), (0, 4, 3), (7, 33, 129)):
            x = rng.standard_normal(shape).astype(np.float32)
            got, want = _run_both(nat, ref, {"x": x})
            _check_reduce(op, got[0], want[0], int(np.prod([shape[a] for a in axes])))


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_empty_axes_and_noop(rng, op):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    cases = [("attr", _axes_input_opset(op) - 1, None), ("none", 18, 0), ("none", 18, 1), ("input", 18, 1),
             ("input", 18, 0)]
    for mode, opset, noop in cases:
        model = _reduce_model(op, opset, 1, None, mode, noop)
        nat, ref = native_and_numpy(model, op)
        feed = {"x": x}
        if mode == "input":
            feed["axes"] = np.zeros(0, np.int64)
        for f in (feed, dict(feed, x=np.zeros((2, 0, 3), np.float32))):
            got, want = _run_both(nat, ref, f)
            _check_reduce(op, got[0], want[0], f["x"].size)
            if noop:
                np.testing.assert_array_equal(got[0], f["x"])


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_nan_inf_and_scalars(op):
    model = _reduce_model(op, 18, 0)
    nat, ref = native_and_numpy(model, op)
    x = np.arange(60, dtype=np.float32).reshape(3, 4, 5) - 30
    x[0, 1, 2] = np.nan
    x[1, 2, 3] = np.inf
    x[2, 3, 4] = -np.inf
    with np.errstate(all="ignore"):
        for axes in ([0], [1], [2], [0, 2], [1, 2], [0, 1, 2]):
            got, want = _run_both(nat, ref, {"x": x, "axes": np.array(axes, np.int64)})
            np.testing.assert_array_equal(got[0], want[0])
        got, want = _run_both(nat, ref, {"x": np.array(2.5, np.float32), "axes": np.zeros(0, np.int64)})
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("axes,msg", [([3], "out of range"), ([-4], "out of range"), ([1, -2], "twice")])
def test_reduce_bad_axes_name_the_node(axes, msg):
    model = _reduce_model("ReduceSum", 18, 1)
    nat, ref = native_and_numpy(model, "ReduceSum")
    feed = {"x": np.zeros((2, 3, 4), np.float32), "axes": np.array(axes, np.int64)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"ReduceSum 'n0'.*{msg}"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, feed)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceL2", "ReduceMax"])
@pytest.mark.parametrize("shape,axes", [
    ((3, 300001), [1]),          # long contiguous rows: fixed chunks
    ((1, 70000, 5), [1]),        # reduced axis in the middle: row chunks
    ((257, 1023), [0, 1]),       # everything
    ((64, 33, 100), [0, 2]),     # two reduced groups
    ((1000, 3, 100), [0, 2]),    # chunks of whole segments
    ((300000, 3), [0]),
])
def test_reduce_is_bitwise_deterministic_across_threads(rng, op, shape, axes):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    model = _reduce_model(op, 18, 0)
    outs = []
    for threads in (1, 2, 3, 4):
        nat, ref = native_and_numpy(model, op, threads)
        feed = {"x": x, "axes": np.array(axes, np.int64)}
        for _ in range(2):
            outs.append(nat.run(None, feed)[0].tobytes())
    assert len(set(outs)) == 1
    got = np.frombuffer(outs[0], np.float32)
    want = ref.run(None, feed)[0].reshape(-1)
    _check_reduce(op, got, want, int(np.prod([shape[a] for a in axes])))


# ---- Transpose ------------------------------------------------------------------------------

TRANSPOSE_DTYPES = [np.float32, np.uint8, np.int16, np.int64, np.complex128, np.bool_, np.float16]


def _transpose_shapes(rank):
    base = {0: [()], 1: [(0,), (1,), (17,)], 2: [(n, m) for n in (0, 1, 2, 7, 16, 17, 65) for m in (1, 3, 64, 67)],
            3: [(2, 3, 5), (1, 7, 1), (4, 0, 3), (17, 16, 15), (3, 1, 33)],
            4: [(2, 3, 4, 5), (1, 5, 1, 7), (3, 17, 2, 9), (2, 0, 3, 1)]}
    return base[rank]


def _values(rng, shape, dt):
    if dt == np.bool_:
        return rng.random(shape) > 0.5
    if dt == np.complex128:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return (rng.standard_normal(shape) * 50).astype(dt)


@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("dt", TRANSPOSE_DTYPES, ids=lambda d: np.dtype(d).name)
def test_transpose_all_perms(rng, rank, dt):
    code = onnxfast.dtypes.onnx_code(dt)
    perms = [p for p in itertools.permutations(range(rank)) if p] + [None]  # onnx.helper cannot write perm=[]
    for perm in perms:
        attrs = {} if perm is None else {"perm": list(perm)}
        model = make_model([helper.make_node("Transpose", ["x"], ["y"], name="n0", **attrs)], [vi("x", code)],
                           [vi("y", code)])
        nat, ref = native_and_numpy(model, "Transpose", level=0)  # (an identity perm is optimized away)
        for shape in _transpose_shapes(rank):
            x = _values(rng, shape, dt)
            for feed in (x, noncontiguous(x)):
                got = nat.run(None, {"x": feed})[0]
                want = np.transpose(x, perm)
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(got, ref.run(None, {"x": feed})[0])


@pytest.mark.parametrize("shape,perm", [
    ((1000, 1001), (1, 0)), ((8, 3, 224, 225), (0, 2, 3, 1)), ((2, 224, 225, 3), (0, 3, 1, 2)),
    ((16, 12, 129, 64), (0, 2, 1, 3)), ((5, 6, 7, 8, 9, 10), (5, 3, 1, 4, 2, 0)), ((2, 3, 4, 5, 6), (4, 0, 3, 1, 2)),
])
@pytest.mark.parametrize("dt", [np.float32, np.uint8, np.float64], ids=lambda d: np.dtype(d).name)
def test_transpose_large_and_high_rank(rng, shape, perm, dt):
    code = onnxfast.dtypes.onnx_code(dt)
    model = make_model([helper.make_node("Transpose", ["x"], ["y"], name="n0", perm=list(perm))], [vi("x", code)],
                       [vi("y", code)])
    x = _values(rng, shape, dt)
    for threads in (1, 2):
        nat, _ = native_and_numpy(model, "Transpose", threads)
        np.testing.assert_array_equal(nat.run(None, {"x": x})[0], np.transpose(x, perm))


@pytest.mark.parametrize("perm", [[0, 0, 1], [0, 1], [0, 1, 3], [-1, 0, 1]])
def test_transpose_bad_perm_names_the_node(perm):
    model = make_model([helper.make_node("Transpose", ["x"], ["y"], name="n0", perm=perm)], [vi("x")], [vi("y")])
    x = np.zeros((2, 3, 4), np.float32)
    if sorted(perm) != list(range(len(perm))):
        # not a permutation of any rank: refused at session creation, native and numpy paths alike
        with pytest.raises(onnxfast.errors.InvalidModel, match="Transpose 'n0': attribute 'perm' is"):
            native_and_numpy(model, "Transpose")
        return
    # a permutation of the wrong length for the input, whose rank is not declared: found at run time
    nat, ref = native_and_numpy(model, "Transpose")
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Transpose 'n0'.*perm"):
        nat.run(None, {"x": x})
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, {"x": x})


# ---- Concat / Where -------------------------------------------------------------------------

CONCAT_DTYPES = [np.float32, np.int8, np.float16, np.int64, np.complex128, np.bool_]


@pytest.mark.parametrize("dt", CONCAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("nin", [1, 2, 3, 5])
def test_concat_sweep(rng, dt, nin):
    code = onnxfast.dtypes.onnx_code(dt)
    names = [f"x{k}" for k in range(nin)]
    for rank in (1, 2, 3, 4):
        base = [3, 1, 4, 2][:rank]
        for axis in range(-rank, rank):
            model = make_model([helper.make_node("Concat", names, ["y"], name="n0", axis=axis)],
                               [vi(n, code) for n in names], [vi("y", code)])
            nat, ref = native_and_numpy(model, "Concat")
            for n in SWEEP[::3] + [17]:
                arrays = []
                for k in range(nin):
                    shape = list(base)
                    shape[axis] = (n + 5 * k) % 19 if k else n
                    arrays.append(_values(rng, tuple(shape), dt))
                for feed in ({nm: a for nm, a in zip(names, arrays)},
                             {nm: noncontiguous(a) for nm, a in zip(names, arrays)}):
                    got, want = _run_both(nat, ref, feed)
                    assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[0], np.concatenate(arrays, axis=axis))


@pytest.mark.parametrize("shapes,axis", [
    ([(1, 3, 300, 301), (1, 5, 300, 301)], 1),      # one outer row: 64 KiB pieces
    ([(4, 70000), (4, 1), (4, 0), (4, 33333)], 1),
    ([(64, 32, 7, 7)] * 4, 1),
    ([(100000,), (3,)], 0),
])
def test_concat_large(rng, shapes, axis):
    names = [f"x{k}" for k in range(len(shapes))]
    model = make_model([helper.make_node("Concat", names, ["y"], name="n0", axis=axis)], [vi(n) for n in names],
                       [vi("y")])
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for threads in (1, 2):
        nat, _ = native_and_numpy(model, "Concat", threads)
        np.testing.assert_array_equal(nat.run(None, dict(zip(names, arrays)))[0], np.concatenate(arrays, axis=axis))


@pytest.mark.parametrize("shapes,axis,msg", [
    ([(2, 3), (3, 3)], 1, "do not match outside axis"),
    ([(2, 3), (2, 3, 1)], 0, "do not match outside axis"),
    ([(2, 3), (2, 3)], 2, "out of range"),
    ([(), ()], 0, "out of range"),
])
def test_concat_errors_name_the_node(shapes, axis, msg):
    names = [f"x{k}" for k in range(len(shapes))]
    model = make_model([helper.make_node("Concat", names, ["y"], name="n0", axis=axis)], [vi(n) for n in names],
                       [vi("y")])
    nat, ref = native_and_numpy(model, "Concat")
    feed = {n: np.zeros(s, np.float32) for n, s in zip(names, shapes)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"Concat 'n0'.*{msg}"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, feed)


WHERE_SHAPES = [
    ((), (), ()), ((5,), (), ()), ((), (5,), (1,)), ((3, 4), (4,), (3, 1)), ((3, 1), (1, 4), ()),
    ((2, 3, 4), (3, 1), (2, 1, 4)), ((2, 1, 4), (1, 3, 1), (4,)), ((0, 3), (3,), (1, 3)), ((17,), (17,), (17,)),
    ((4, 1, 1, 5), (1, 3, 2, 1), (4, 3, 2, 5)), ((1,), (7, 1), (1, 9)), ((2, 0, 3), (1,), (2, 1, 3)),
    ((64, 1), (64, 9000), (1, 9000)), ((70000,), (70000,), ()),
]


@pytest.mark.parametrize("dt", [np.float32, np.int8, np.float16, np.int64, np.complex128, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_where_broadcast(rng, dt):
    code = onnxfast.dtypes.onnx_code(dt)
    model = make_model([helper.make_node("Where", ["c", "x", "y"], ["o"], name="n0")],
                       [vi("c", TensorProto.BOOL), vi("x", code), vi("y", code)], [vi("o", code)])
    nat, ref = native_and_numpy(model, "Where")
    for sc, sx, sy in WHERE_SHAPES:
        c = rng.random(sc) > 0.4
        x, y = _values(rng, sx, dt), _values(rng, sy, dt)
        for feed in ({"c": c, "x": x, "y": y}, {"c": noncontiguous(c), "x": noncontiguous(x), "y": y}):
            got, want = _run_both(nat, ref, feed)
            assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[0], np.where(c, x, y))


def test_where_errors_name_the_node():
    model = make_model([helper.make_node("Where", ["c", "x", "y"], ["o"], name="n0")],
                       [vi("c", TensorProto.BOOL), vi("x"), vi("y")], [vi("o")])
    nat, ref = native_and_numpy(model, "Where")
    feed = {"c": np.ones((2, 3), bool), "x": np.zeros((4, 3), np.float32), "y": np.zeros(3, np.float32)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Where 'n0'.*broadcast"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, feed)


# ---- Gather ---------------------------------------------------------------------------------

GATHER_DTYPES = [np.float32, np.int64, np.bool_, np.float16, np.int8, np.complex128]
GATHER_SHAPES = [(0,), (1,), (5,), (17,), (3, 4), (2, 0, 3), (4, 1, 5), (2, 3, 4, 17), (1, 16, 1, 3)]


def _gather_indices(rng, d, idt):
    if d == 0:
        return [np.zeros((0,), idt), np.zeros((2, 0), idt)]
    return [np.array(0, idt), np.array(-1, idt), np.array(d - 1, idt), np.array(-d, idt),
            rng.integers(-d, d, size=(7,)).astype(idt), rng.integers(-d, d, size=(2, 3)).astype(idt),
            rng.integers(-d, d, size=(17,)).astype(idt), np.zeros((0,), idt), np.zeros((3, 0), idt)]


@pytest.mark.parametrize("dt", GATHER_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("idt", [np.int64, np.int32], ids=lambda d: np.dtype(d).name)
def test_gather_sweep(rng, dt, idt):
    code, icode = onnxfast.dtypes.onnx_code(dt), onnxfast.dtypes.onnx_code(idt)
    for shape in GATHER_SHAPES:
        r = len(shape)
        for axis in range(-r, r):
            model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], name="n0", axis=axis)],
                               [vi("x", code), vi("i", icode)], [vi("y", code)])
            nat, ref = native_and_numpy(model, "Gather")
            x = _values(rng, shape, dt)
            d = shape[axis]
            for idx in _gather_indices(rng, d, idt):
                want = np.take(x, np.where(idx < 0, idx + d, idx).astype(np.int64), axis=axis)
                for feed in ({"x": x, "i": idx}, {"x": noncontiguous(x), "i": noncontiguous(idx)}):
                    got, ref_out = _run_both(nat, ref, feed)
                    assert got[0].dtype == ref_out[0].dtype == want.dtype
                    assert got[0].shape == ref_out[0].shape == want.shape  # scalar indices drop the axis
                    np.testing.assert_array_equal(got[0], ref_out[0])
                    np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("shape,axis,ishape", [
    ((1000, 64), 0, (8, 128)), ((3, 20000), 1, (9000,)), ((2, 50, 4, 33), -2, (5, 3)), ((30000,), 0, (70000,)),
])
def test_gather_large(rng, shape, axis, ishape):
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], name="n0", axis=axis)],
                       [vi("x"), vi("i", TensorProto.INT64)], [vi("y")])
    x = rng.standard_normal(shape).astype(np.float32)
    d = shape[axis]
    idx = rng.integers(-d, d, size=ishape)
    for threads in (1, 2):
        nat, _ = native_and_numpy(model, "Gather", threads)
        np.testing.assert_array_equal(nat.run(None, {"x": x, "i": idx})[0], np.take(x, idx % d, axis=axis))


@pytest.mark.parametrize("shape,axis,idx,bad", [
    ((5,), 0, [0, 5], "5"), ((5,), 0, [-6, 1], "-6"), ((2, 3), 1, [[0], [3]], "3"), ((2, 3), -1, -4, "-4"),
    ((2, 0), 1, [0], "0"), ((4, 2), 0, [2**40], str(2**40)),
])
@pytest.mark.parametrize("idt", [np.int64, np.int32], ids=lambda d: np.dtype(d).name)
def test_gather_out_of_range_names_node_and_index(shape, axis, idx, bad, idt):
    if idt == np.int32 and abs(np.asarray(idx)).max() >= 2**31:
        pytest.skip("index does not fit int32")
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], name="n0", axis=axis)],
                       [vi("x"), vi("i", onnxfast.dtypes.onnx_code(idt))], [vi("y")])
    nat, ref = native_and_numpy(model, "Gather")
    feed = {"x": np.zeros(shape, np.float32), "i": np.asarray(idx, idt)}
    with pytest.raises(onnxfast.errors.IndexOutOfRange, match=f"Gather 'n0': index {bad} on axis .* out of range"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.IndexOutOfRange):
        ref.run(None, feed)


def test_gather_bad_axis_names_the_node():
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], name="n0", axis=2)],
                       [vi("x"), vi("i", TensorProto.INT64)], [vi("y")])
    nat, ref = native_and_numpy(model, "Gather")
    feed = {"x": np.zeros((2, 3), np.float32), "i": np.zeros(1, np.int64)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Gather 'n0'.*axis 2 is out of range"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, feed)


# ---- Slice ----------------------------------------------------------------------------------

SLICE_DTYPES = [np.float32, np.int64, np.bool_, np.float16, np.uint8, np.complex128]
I64_MAX, I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
SLICE_STARTS = [0, 1, 3, -1, -3, 100, -100, I64_MAX, I64_MIN]
SLICE_ENDS = [0, 2, 7, -1, -2, 100, -100, I64_MAX, I64_MIN]
SLICE_STEPS = [1, 2, -1, -3, 5, I64_MAX, I64_MIN]


def _slice_model(code, icode=TensorProto.INT64, axes=True, steps=True, consts=None, opset=18):
    names = ["x", "s", "e"] + (["a"] if axes else [""] if steps else []) + (["st"] if steps else [])
    consts = consts or {}
    inputs = [vi("x", code)] + [vi(n, icode) for n in names[1:] if n and n not in consts]
    return make_model([helper.make_node("Slice", names, ["y"], name="n0")], inputs, [vi("y", code)],
                      initializers=list(consts.items()), opset=opset)


def _slice_want(x, starts, ends, axes, steps):
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a] = slice(int(s), int(e), int(st))
    return x[tuple(idx)]


def _check_slice(nat, ref, x, starts, ends, axes, steps, idt=np.int64):
    feed = {"x": x, "s": np.array(starts, idt), "e": np.array(ends, idt)}
    if axes is not None:
        feed["a"] = np.array(axes, idt)
    if steps is not None:
        feed["st"] = np.array(steps, idt)
    got, want = _run_both(nat, ref, feed)
    oracle = _slice_want(x, starts, ends, axes if axes is not None else range(len(starts)),
                         steps if steps is not None else [1] * len(starts))
    assert got[0].dtype == want[0].dtype == oracle.dtype
    assert got[0].shape == want[0].shape == oracle.shape, (x.shape, starts, ends, axes, steps)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0], oracle)


@pytest.mark.parametrize("dt", SLICE_DTYPES, ids=lambda d: np.dtype(d).name)
def test_slice_one_axis_clamping(rng, dt):
    """Every start x end x step (clamped, negative, INT64_MAX / INT64_MIN) on 1-D inputs of sizes 0..17."""
    nat, ref = native_and_numpy(_slice_model(onnxfast.dtypes.onnx_code(dt)), "Slice")
    for n in (0, 1, 2, 5, 17):
        x = _values(rng, (n,), dt)
        for s, e, st in itertools.product(SLICE_STARTS, SLICE_ENDS, SLICE_STEPS):
            _check_slice(nat, ref, x, [s], [e], [-1 if st == 2 else 0], [st])


@pytest.mark.parametrize("dt", SLICE_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("idt", [np.int64, np.int32], ids=lambda d: np.dtype(d).name)
def test_slice_multi_axis_sweep(rng, dt, idt):
    code, icode = onnxfast.dtypes.onnx_code(dt), onnxfast.dtypes.onnx_code(idt)
    small = [v for v in SLICE_STARTS + SLICE_ENDS if abs(v) < 2**31]
    for axes_in, steps_in in ((True, True), (True, False), (False, True), (False, False)):
        nat, ref = native_and_numpy(_slice_model(code, icode, axes_in, steps_in), "Slice")
        for shape in [(3, 4, 5), (2, 0, 3), (17, 16, 3), (1, 1, 1), (4, 17), (1, 7, 1, 9), ()]:
            x = _values(rng, shape, dt)
            r = len(shape)
            for _ in range(25 if r else 1):
                k = int(rng.integers(0, r + 1)) if axes_in else r
                axes = [int(a) - (r if rng.random() < 0.5 else 0) for a in rng.permutation(r)[:k]]
                if not axes_in:
                    k = int(rng.integers(0, r + 1))
                    axes = list(range(k))
                starts = [int(rng.choice(small)) for _ in range(k)]
                ends = [int(rng.choice(small)) for _ in range(k)]
                steps = [int(rng.choice([1, 1, 2, -1, -3, 3])) for _ in range(k)]
                if not steps_in:
                    steps = [1] * k
                for feed_x in (x, noncontiguous(x)):
                    _check_slice(nat, ref, feed_x, starts, ends, axes if axes_in else None,
                                 steps if steps_in else None, idt)


@pytest.mark.parametrize("idt", [np.int64, np.int32], ids=lambda d: np.dtype(d).name)
def test_slice_constant_inputs_and_large(rng, idt):
    consts = {"s": np.array([1, -1, 0], idt), "e": np.array([-1, -1000, 70000], idt),
              "a": np.array([0, -2, 2], idt), "st": np.array([2, -3, 1], idt)}
    model = _slice_model(TensorProto.FLOAT, onnxfast.dtypes.onnx_code(idt), consts=consts)
    for shape in [(9, 17, 5), (64, 300, 200), (1, 1, 0)]:
        x = rng.standard_normal(shape).astype(np.float32)
        want = x[1:-1:2, ::-3, 0:70000]
        for threads in (1, 2):
            nat, ref = native_and_numpy(model, "Slice", threads)
            got = nat.run(None, {"x": x})[0]
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, ref.run(None, {"x": x})[0])


def test_slice_opset1_attribute_form(rng):
    for attrs, key in [({"starts": [1, -3], "ends": [-1, 100], "axes": [-1, 0]}, (slice(-3, 100), slice(1, -1))),
                       ({"starts": [0, 2], "ends": [I64_MAX, 3]}, (slice(0, None), slice(2, 3))),
                       ({"starts": [5], "ends": [-100], "axes": [1]}, (slice(None), slice(5, -100)))]:
        model = make_model([helper.make_node("Slice", ["x"], ["y"], name="n0", **attrs)], [vi("x")], [vi("y")],
                           opset=9)
        nat, ref = native_and_numpy(model, "Slice")
        for shape in [(4, 6), (0, 3), (1, 17)]:
            x = rng.standard_normal(shape).astype(np.float32)
            for feed in (x, noncontiguous(x)):
                got = nat.run(None, {"x": feed})[0]
                np.testing.assert_array_equal(got, x[key])
                np.testing.assert_array_equal(got, ref.run(None, {"x": feed})[0])


@pytest.mark.parametrize("starts,ends,axes,steps,msg", [
    ([0], [1], [0], [0], "step for axis 0 is 0"),
    ([0, 0], [1, 1], [1, -1], [1, 1], "contains duplicates"),
    ([0], [1], [2], [1], "out of range"),
    ([0, 0], [1], [0], [1], "same length"),
])
def test_slice_errors_name_the_node(starts, ends, axes, steps, msg):
    nat, ref = native_and_numpy(_slice_model(TensorProto.FLOAT), "Slice")
    feed = {"x": np.zeros((2, 3), np.float32), "s": np.array(starts), "e": np.array(ends), "a": np.array(axes),
            "st": np.array(steps)}
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"Slice 'n0'.*{msg}"):
        nat.run(None, feed)
    with pytest.raises(onnxfast.errors.InvalidArgument):
        ref.run(None, feed)
