"""Native ConvTranspose (csrc/kernels/conv_transpose.cpp) against the numpy kernel and onnxruntime.

Each model runs twice: once with the numpy ConvTranspose disabled (the kernel listing must say native,
native:prepacked for a constant weight) and once with every native kernel disabled. Geometries sweep
1-D/2-D/3-D, kernel sizes 1..5, strides 1..3, dilations, asymmetric pads, output_padding,
output_shape (cropping and extending), auto_pad modes and groups (depthwise included); inputs sweep
batch 0/1/2, channel counts 1/3/17, spatial sizes 1, odd and prime, fed contiguous and not.
tests/test_isa_tiers.py reruns this file at every ISA tier."""

import numpy as np
import pytest
from onnx import helper
from onnx_helpers import make_model, native_and_numpy, noncontiguous, vi

import onnxfast
from onnxfast.errors import InvalidArgument

GEOMS = [
    dict(kernel_shape=[1]),
    dict(kernel_shape=[3], strides=[2]),
    dict(kernel_shape=[5], strides=[3], pads=[2, 1], output_padding=[1]),
    dict(kernel_shape=[4], dilations=[2], pads=[1, 3]),
    dict(kernel_shape=[2], strides=[2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3], strides=[3], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3], strides=[2], output_shape=[10]),
    dict(kernel_shape=[2], auto_pad="VALID"),
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[2, 3], strides=[3, 1], pads=[0, 2, 1, 0], dilations=[2, 1]),
    dict(kernel_shape=[5, 1], strides=[1, 3], dilations=[1, 2], output_padding=[0, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[4, 4], strides=[3, 3], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], output_shape=[11, 8]),
    dict(kernel_shape=[3, 2], strides=[2, 1], output_shape=[1, 1, 6, 9], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[1, 1], strides=[2, 2]),
    dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
    dict(kernel_shape=[3, 1, 2], strides=[1, 2, 3], pads=[1, 0, 0, 0, 0, 1], dilations=[1, 1, 2]),
    dict(kernel_shape=[3, 3, 3], strides=[2, 1, 2], auto_pad="SAME_UPPER"),
]

SPATIAL = {
    1: [(1,), (2,), (5,), (7,), (13,)],
    2: [(1, 1), (1, 5), (5, 7), (7, 13), (13, 4)],
    3: [(1, 1, 1), (2, 3, 4), (5, 3, 7)],
}

# (C, M / group, group): single channels, odd counts, grouped and depthwise.
CHANNELS = [(1, 1, 1), (3, 2, 1), (3, 1, 3), (17, 3, 1), (17, 1, 17), (6, 5, 2)]


def _gid(g):
    return "-".join(f"{k}{'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in g.items())


def _model(attrs, bias=True, w=None, b=None):
    """One ConvTranspose node 'n0'; w / b given: constant initializers, else graph inputs."""
    ins = ["x", "w"] + (["b"] if bias else [])
    inits = []
    if w is not None:
        inits.append(("w", w))
        if bias:
            inits.append(("b", b))
    graph_inputs = [vi(n) for n in ins if n not in dict(inits)]
    node = helper.make_node("ConvTranspose", ins, ["y"], name="n0", **attrs)
    return make_model([node], graph_inputs, [vi("y")], initializers=inits)


def _check(got, want, terms, what):
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32, (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.sqrt(max(terms, 1)), err_msg=what)


def _beyond_reach(geom, spatial) -> bool:
    """output_shape asks for more than the input reaches (s * (in - 1) + eff + s - 1): both kernels
    refuse it, as onnxruntime does (tests/test_conv_validation.py)."""
    osh, n = geom.get("output_shape"), len(spatial)
    if not osh:
        return False
    k, s, d = geom["kernel_shape"], geom.get("strides", [1] * n), geom.get("dilations", [1] * n)
    return any(osh[len(osh) - n + i] > s[i] * spatial[i] + (k[i] - 1) * d[i] for i in range(n))


def _refused(sessions, feed) -> None:
    for sess in sessions:
        with pytest.raises(InvalidArgument, match="is larger than"):
            sess.run(None, feed)


def _inputs(rng, geom, n, spatial, C, Mg, group, bias):
    k = geom["kernel_shape"]
    x = rng.standard_normal((n, C) + tuple(spatial)).astype(np.float32)
    w = rng.standard_normal((C, Mg) + tuple(k)).astype(np.float32)
    b = rng.standard_normal(Mg * group).astype(np.float32) if bias else None
    return x, w, b


@pytest.mark.parametrize("geom", GEOMS, ids=_gid)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_fed_weights_against_numpy(rng, geom, bias):
    nat, ref = native_and_numpy(_model(geom, bias), "ConvTranspose")
    nsp = len(geom["kernel_shape"])
    checked = 0
    for i, spatial in enumerate(SPATIAL[nsp]):
        for j, (C, Mg, group) in enumerate(CHANNELS):
            if (i + j) % 2 and C != 17:  # every channel config on half the sizes
                continue
            n = (0, 1, 2)[(i + j) % 3]
            x, w, b = _inputs(rng, geom, n, spatial, C, Mg, group, bias)
            attrs = dict(geom, group=group) if group > 1 else geom
            if group > 1:
                nat_g, ref_g = native_and_numpy(_model(attrs, bias), "ConvTranspose")
            else:
                nat_g, ref_g = nat, ref
            feed = {"x": x, "w": w}
            if bias:
                feed["b"] = b
            if _beyond_reach(attrs, spatial):
                _refused((nat_g, ref_g), feed)
                checked += 1
                continue
            want = ref_g.run(None, feed)[0]
            for f in (feed, dict(feed, x=noncontiguous(x), w=noncontiguous(w))):
                got = nat_g.run(None, f)[0]
                _check(got, want, C // group * w[0, 0].size, f"{attrs} x{x.shape} w{w.shape}")
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize("geom", GEOMS, ids=_gid)
def test_constant_weights_against_numpy(rng, geom):
    nsp = len(geom["kernel_shape"])
    for C, Mg, group, bias in ((3, 2, 1, True), (17, 1, 17, False), (6, 5, 2, True)):
        attrs = dict(geom, group=group) if group > 1 else geom
        _, w, b = _inputs(rng, geom, 1, SPATIAL[nsp][0], C, Mg, group, bias)
        nat, ref = native_and_numpy(_model(attrs, bias, w, b), "ConvTranspose")
        assert [r["kernel"] for r in nat.kernel_listing() if r["op_type"] == "ConvTranspose"] == ["native:prepacked"]
        for n, spatial in zip((2, 1, 0), SPATIAL[nsp][1:4]):
            x = rng.standard_normal((n, C) + spatial).astype(np.float32)
            if _beyond_reach(attrs, spatial):
                _refused((nat, ref), {"x": x})
                continue
            want = ref.run(None, {"x": x})[0]
            for feed in (x, noncontiguous(x)):
                _check(nat.run(None, {"x": feed})[0], want, C // group * w[0, 0].size, f"{attrs} x{x.shape}")


@pytest.mark.parametrize("xshape,wshape,attrs", [
    # input channels over one GEMM K block (256), several position chunks whose ends split input rows
    ((1, 300, 9, 9), (300, 8, 3, 3), dict(strides=[2, 2], pads=[1, 0, 0, 1])),
    ((2, 64, 41, 43), (64, 32, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    ((1, 5, 3001), (5, 3, 5), dict(strides=[3], dilations=[2], pads=[4, 1])),
    ((1, 16, 12, 11, 10), (16, 4, 3, 3, 3), dict(strides=[2, 2, 2], output_padding=[1, 0, 1])),
    ((2, 32, 30, 30), (32, 1, 3, 3), dict(group=32, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    ((1, 7, 37, 41), (7, 9, 5, 5), dict(strides=[3, 3], dilations=[2, 2])),
])
def test_large_shapes_and_threads_bitwise(rng, xshape, wshape, attrs):
    group = attrs.get("group", 1)
    x = rng.standard_normal(xshape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[1] * group).astype(np.float32)
    model = _model(dict(attrs, kernel_shape=list(wshape[2:])), True, w, b)
    results = []
    for threads in (1, 2, 3):
        nat, ref = native_and_numpy(model, "ConvTranspose", threads)
        got = nat.run(None, {"x": x})[0]
        results.append(got.tobytes())
        if threads == 1:
            _check(got, ref.run(None, {"x": x})[0], xshape[1] // group * w[0, 0].size, str(attrs))
    assert results[0] == results[1] == results[2]
    # the fed-weight path packs per run: same values
    nat, _ = native_and_numpy(_model(dict(attrs, kernel_shape=list(wshape[2:]))), "ConvTranspose", 2)
    assert nat.run(None, {"x": x, "w": w, "b": b})[0].tobytes() == results[0]


@pytest.mark.parametrize("xshape,wshape,attrs", [
    ((1, 3, 0, 4), (3, 2, 3, 3), {}),                   # no input positions: Y is the bias
    ((2, 0, 3, 4), (0, 2, 3, 3), dict(strides=[2, 2])),  # no input channels
    ((1, 2, 3), (2, 2, 1), dict(pads=[1, 2])),          # everything cropped
])
def test_empty_inputs_give_the_bias(rng, xshape, wshape, attrs):
    nat, ref = native_and_numpy(_model(attrs), "ConvTranspose")
    feed = {"x": rng.standard_normal(xshape).astype(np.float32), "w": rng.standard_normal(wshape).astype(np.float32),
            "b": rng.standard_normal(wshape[1]).astype(np.float32)}
    want = ref.run(None, feed)[0]
    got = nat.run(None, feed)[0]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


ORT_CASES = [
    ((2, 3, 7), (3, 2, 3), dict(strides=[2], pads=[1, 0], output_padding=[1])),
    ((1, 4, 5, 6), (4, 3, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    ((1, 6, 5, 4), (6, 2, 3, 3), dict(group=3, strides=[2, 1], dilations=[2, 1], pads=[0, 2, 1, 0])),
    ((1, 8, 6, 7), (8, 1, 3, 3), dict(group=8, strides=[2, 2], auto_pad="SAME_UPPER")),
    ((2, 3, 5, 5), (3, 4, 3, 3), dict(strides=[3, 2], auto_pad="SAME_LOWER")),
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[9, 10])),
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[8, 10], auto_pad="SAME_UPPER")),
    ((1, 2, 3, 4, 5), (2, 3, 2, 3, 2), dict(strides=[1, 2, 3], pads=[0, 1, 0, 1, 0, 1])),
    ((1, 17, 13, 11), (17, 3, 5, 5), dict(strides=[3, 2], dilations=[1, 2])),
]


@pytest.mark.parametrize("xshape,wshape,attrs", ORT_CASES)
def test_against_onnxruntime(rng, xshape, wshape, attrs):
    ort = pytest.importorskip("onnxruntime")
    group = attrs.get("group", 1)
    x = rng.standard_normal(xshape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[1] * group).astype(np.float32)
    model = _model(dict(attrs, kernel_shape=list(wshape[2:])), True)
    nat, _ = native_and_numpy(model, "ConvTranspose")
    feed = {"x": x, "w": w, "b": b}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    _check(nat.run(None, feed)[0], want, xshape[1] // group * w[0, 0].size, str(attrs))


@pytest.mark.parametrize("case,msg", [
    (dict(w=(4, 2, 3, 3)), "does not match input X"),             # W's first dim is not C
    (dict(attrs=dict(group=2), w=(3, 1, 3, 3)), "group=2"),        # C not divisible by group
    (dict(b=5), "bias must have shape"),                           # M = 2
    (dict(attrs=dict(kernel_shape=[2, 2])), "kernel_shape"),
    (dict(w=(3, 2, 3)), "rank"),
    (dict(attrs=dict(pads=[1, 1])), "pads"),
    (dict(attrs=dict(pads=[4, 4, 4, 4])), "negative"),
])
@pytest.mark.parametrize("const", [False, True], ids=["fed", "const"])
def test_errors_name_the_node(rng, case, msg, const):
    wshape, nb = case.get("w", (3, 2, 3, 3)), case.get("b", 2)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(nb).astype(np.float32)
    attrs = case.get("attrs", {})
    model = _model(attrs, True, w if const else None, b if const else None)
    nat, _ = native_and_numpy(model, "ConvTranspose")
    feed = {"x": rng.standard_normal((1, 3, 4, 4)).astype(np.float32)}
    if not const:
        feed.update(w=w, b=b)
    with pytest.raises(onnxfast.errors.InvalidArgument, match=f"ConvTranspose 'n0'.*{msg}"):
        nat.run(None, feed)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("const", [False, True], ids=["fed", "const"])
def test_half_inputs_widened_to_float32(rng, dtype, const):
    """float16 / bfloat16 run through the float32 kernel (csrc/kernels/half.cpp), like the numpy
    kernel computes them in float32: the results agree to a unit in the last place."""
    import ml_dtypes
    from onnx import TensorProto

    dt, elem, ulp = {"float16": (np.float16, TensorProto.FLOAT16, 2.0 ** -10),
                     "bfloat16": (ml_dtypes.bfloat16, TensorProto.BFLOAT16, 2.0 ** -7)}[dtype]
    x = rng.standard_normal((2, 6, 5, 7)).astype(dt)
    w = (rng.standard_normal((6, 2, 3, 3)) * 0.3).astype(dt)
    b = rng.standard_normal(4).astype(dt)

    def tensor(name, a):
        return name, helper.make_tensor(name, elem, a.shape, a.view(np.uint16).tobytes(), raw=True)

    attrs = dict(kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 0, 1], output_padding=[1, 0], group=2)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="n0", **attrs)
    inits = [tensor("w", w), tensor("b", b)] if const else []
    ins = [vi("x", elem)] + ([] if const else [vi("w", elem), vi("b", elem)])
    nat, _ = native_and_numpy(make_model([node], ins, [vi("y", elem)], initializers=inits), "ConvTranspose")
    got = nat.run(None, {"x": x} if const else {"x": x, "w": w, "b": b})[0]
    model32 = _model(attrs, True, w.astype(np.float32), b.astype(np.float32))
    _, ref32 = native_and_numpy(model32, "ConvTranspose")
    want = ref32.run(None, {"x": x.astype(np.float32)})[0]
    assert got.dtype == dt and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2 * ulp, atol=2 * ulp * (np.abs(want).max() + 1))
