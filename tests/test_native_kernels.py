"""Native kernels (MatMul, Gemm, Conv, elementwise) against numpy / onnxruntime over edge sizes.

Sessions run with the numpy kernels of these ops disabled, so a pass proves the native kernel
computed the result (and the kernel listing says so)."""

import itertools

import numpy as np
import pytest
from onnx_helpers import F, make_model, vi
from onnx import TensorProto, helper

import onnxfast

SIZES = [1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33]


def native_session(model, ops=("MatMul", "Gemm", "Conv", "Add", "Sub", "Mul", "Div", "Relu")):
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", ",".join(f"numpy:{op}" for op in ops))
    s = onnxfast.InferenceSession(model.SerializeToString(), o)
    for r in s.kernel_listing():
        if r["op_type"] in ops:
            assert r["kernel"].startswith("native"), r
    return s


def numpy_session(model):
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    return onnxfast.InferenceSession(model.SerializeToString(), o)


def ort_run(model, feed):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def close(a, b, k=1):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1, k) ** 0.5)


@pytest.mark.parametrize("m,k,n", [(m, k, n) for m, k, n in itertools.product(SIZES, [1, 7, 16, 17, 300], SIZES)][::3])
def test_matmul_sizes(rng, m, k, n):
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["c"])], [vi("a"), vi("b")], [vi("c")])
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    close(native_session(model).run(None, {"a": a, "b": b})[0], a @ b, k)


@pytest.mark.parametrize("sa,sb", [
    ((0, 4), (4, 3)), ((3, 0), (0, 5)), ((5,), (5, 3)), ((4, 5), (5,)), ((7,), (7,)),
    ((2, 3, 4, 5), (5, 6)), ((2, 1, 4, 5), (3, 5, 6)), ((1, 4, 5), (2, 3, 5, 6)), ((6, 1, 8), (6, 8, 2)),
])
def test_matmul_batched_and_1d(rng, sa, sb):
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["c"])], [vi("a"), vi("b")], [vi("c")])
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    got = native_session(model).run(None, {"a": a, "b": b})[0]
    ref = np.matmul(a, b)
    assert got.shape == ref.shape
    close(got, ref, sa[-1])


@pytest.mark.parametrize("k,n", [(1, 1), (17, 33), (300, 70), (768, 64)])
def test_matmul_constant_weight_is_prepacked(rng, k, n):
    w = rng.standard_normal((k, n)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["a", "w"], ["c"])], [vi("a")], [vi("c")], initializers=[("w", w)])
    s = native_session(model)
    assert s.kernel_listing()[0]["kernel"] == "native:prepacked"
    for shape in [(1, k), (5, k), (2, 3, k), (0, k)]:
        a = rng.standard_normal(shape).astype(np.float32)
        close(s.run(None, {"a": a})[0], a @ w, k)


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("cshape", [None, (), (1,), (9,), (6, 1), (6, 9)])
@pytest.mark.parametrize("const_b", [False, True])
def test_gemm(rng, ta, tb, cshape, const_b):
    m, k, n = 6, 11, 9
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    inputs = ["a", "b"] + (["c"] if cshape is not None else [])
    feed = {"a": a}
    inits = []
    if const_b:
        inits.append(("b", b))
    else:
        feed["b"] = b
    c = None
    if cshape is not None:
        c = rng.standard_normal(cshape).astype(np.float32)
        feed["c"] = c
    node = helper.make_node("Gemm", inputs, ["y"], alpha=0.5, beta=2.0, transA=ta, transB=tb)
    model = make_model([node], [vi(x) for x in feed], [vi("y")], initializers=inits)
    got = native_session(model).run(None, feed)[0]
    ref = 0.5 * ((a.T if ta else a) @ (b.T if tb else b))
    if c is not None:
        ref = ref + 2.0 * c
    close(got, ref, k)


CONV_CASES = [
    dict(x=(1, 3, 8, 8), w=(4, 3, 3, 3)),
    dict(x=(2, 3, 9, 7), w=(5, 3, 3, 2), strides=[2, 1], pads=[1, 0, 1, 1]),
    dict(x=(1, 4, 10, 10), w=(4, 1, 3, 3), group=4, pads=[1, 1, 1, 1]),  # depthwise
    dict(x=(1, 6, 7, 7), w=(4, 3, 3, 3), group=2, dilations=[2, 2]),
    dict(x=(1, 8, 5, 5), w=(16, 8, 1, 1)),  # pointwise
    dict(x=(1, 3, 11, 11), w=(2, 3, 5, 5), auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(x=(1, 3, 11, 10), w=(2, 3, 4, 4), auto_pad="SAME_LOWER"),
    dict(x=(1, 3, 6, 6), w=(2, 3, 3, 3), auto_pad="VALID"),
    dict(x=(2, 3, 17), w=(4, 3, 5), strides=[3], pads=[2, 1]),  # 1-D
    dict(x=(1, 2, 5, 6, 7), w=(3, 2, 3, 2, 3), pads=[1, 0, 1, 1, 1, 0]),  # 3-D
    dict(x=(0, 3, 8, 8), w=(4, 3, 3, 3)),  # empty batch
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x" + "x".join(map(str, c["x"])))
@pytest.mark.parametrize("bias", [False, True])
def test_conv_against_onnxruntime(rng, case, bias):
    case = dict(case)
    xs, ws = case.pop("x"), case.pop("w")
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    inits = [("w", w)]
    inputs = ["x", "w"]
    if bias:
        inits.append(("b", rng.standard_normal(ws[0]).astype(np.float32)))
        inputs.append("b")
    model = make_model([helper.make_node("Conv", inputs, ["y"], **case)], [vi("x")], [vi("y")], initializers=inits)
    got = native_session(model).run(None, {"x": x})[0]
    ref = ort_run(model, {"x": x})[0]
    assert got.shape == ref.shape
    close(got, ref, int(np.prod(ws[1:])))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("sa,sb", [
    ((), ()), ((5,), ()), ((), (5,)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)),
    ((2, 1, 4), (1, 3, 1)), ((0, 3), (3,)), ((17,), (17,)), ((4, 1, 1, 5), (1, 3, 2, 1)),
])
def test_binary_broadcast(rng, op, dtype, sa, sb):
    code = onnxfast.dtypes.onnx_code(dtype)
    model = make_model([helper.make_node(op, ["a", "b"], ["c"])], [vi("a", code), vi("b", code)], [vi("c", code)])
    if np.issubdtype(dtype, np.integer):
        a = rng.integers(-50, 50, sa).astype(dtype)
        b = rng.integers(1, 9, sb).astype(dtype)
    else:
        a = rng.standard_normal(sa).astype(dtype)
        b = (rng.random(sb) + 0.5).astype(dtype)
    got = native_session(model).run(None, {"a": a, "b": b})[0]
    if op == "Div" and np.issubdtype(dtype, np.integer):
        ref = (np.trunc(a.astype(np.float64) / b)).astype(dtype)
    else:
        ref = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a, b)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("op,ref", [
    ("Relu", lambda x: np.maximum(x, 0)), ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("Tanh", np.tanh),
    ("Exp", np.exp), ("Abs", np.abs), ("Neg", np.negative),
])
@pytest.mark.parametrize("n", [0, 1, 7, 16, 17, 1000])
def test_unary(rng, op, ref, n):
    model = make_model([helper.make_node(op, ["x"], ["y"])], [vi("x")], [vi("y")])
    x = (rng.standard_normal(n) * 5).astype(np.float32)
    np.testing.assert_allclose(native_session(model, (op,)).run(None, {"x": x})[0], ref(x), rtol=2e-6, atol=1e-7)


def test_numpy_and_native_agree_on_a_small_cnn(rng):
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((8 * 6 * 6, 10)).astype(np.float32) * 0.1
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("Gemm", ["f", "w2"], ["y"]),
        ],
        [vi("x", F, ["n", 3, 12, 12])],
        [vi("y")],
        initializers=[("w1", w1), ("w2", w2)],
    )
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    a = native_session(model).run(None, {"x": x})[0]
    b = numpy_session(model).run(None, {"x": x})[0]
    assert all(r["kernel"] == "numpy" for r in numpy_session(model).kernel_listing())
    close(a, b, 27)
    assert TensorProto.FLOAT == 1


def test_native_or_numpy_chosen_per_run_when_types_are_unknown():
    # Inputs without an element type: the plan cannot know which kernel fits, so the native
    # kernel runs when input 0 is float32 and the numpy kernel otherwise.
    model = make_model([helper.make_node("Add", ["a", "b"], ["c"])], [vi("a", 0), vi("b", 0)], [vi("c", 0)])
    s = onnxfast.InferenceSession(model.SerializeToString())
    assert s.kernel_listing()[0]["kernel"] == "native|numpy"
    for dt in (np.float32, np.int8, np.float16, np.int64):
        a = np.arange(6, dtype=dt).reshape(2, 3)
        out = s.run(None, {"a": a, "b": a})[0]
        assert out.dtype == dt
        np.testing.assert_array_equal(out, a + a)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axis", [((1,), -1), ((3, 17), -1), ((2, 3, 5), 1), ((2, 3, 5), 0), ((4, 128, 128), -1),
                                         ((2, 0, 3), -1), ((5, 1), 1)])
def test_softmax(rng, op, opset, shape, axis):
    model = make_model([helper.make_node(op, ["x"], ["y"], axis=axis)], [vi("x")], [vi("y")], opset=opset)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    got = native_session(model, (op,)).run(None, {"x": x})[0]
    ref = ort_run(model, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("shape,axis,sshape", [
    ((2, 5, 768), -1, (768,)), ((3, 7), 1, (7,)), ((2, 3, 4, 5), 2, (4, 5)), ((2, 3, 4, 5), -2, (1, 5)),
    ((4, 33), -1, (1,)), ((1, 1), -1, (1,)),
])
@pytest.mark.parametrize("with_bias", [False, True])
def test_layer_normalization(rng, shape, axis, sshape, with_bias):
    inputs = ["x", "s"] + (["b"] if with_bias else [])
    inits = [("s", rng.standard_normal(sshape).astype(np.float32))]
    if with_bias:
        inits.append(("b", rng.standard_normal(sshape).astype(np.float32)))
    node = helper.make_node("LayerNormalization", inputs, ["y", "mean", "inv"], axis=axis, epsilon=1e-3)
    model = make_model([node], [vi("x")], [vi("y"), vi("mean"), vi("inv")], initializers=inits, opset=18)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    got = native_session(model, ("LayerNormalization",)).run(None, {"x": x})
    ref = ort_run(model, {"x": x})
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100000])
def test_gelu(rng, approximate, n):
    model = make_model([helper.make_node("Gelu", ["x"], ["y"], approximate=approximate)], [vi("x")], [vi("y")],
                       opset=20)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    got = native_session(model, ("Gelu",)).run(None, {"x": x})[0]
    ref = numpy_session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Erf", "Tanh", "Sigmoid", "Exp"])
def test_vector_math_accuracy(op):
    x = np.concatenate([np.linspace(-12, 12, 20001), np.linspace(-1e-3, 1e-3, 101)]).astype(np.float32)
    model = make_model([helper.make_node(op, ["x"], ["y"])], [vi("x")], [vi("y")])
    got = native_session(model, (op,)).run(None, {"x": x})[0].astype(np.float64)
    ref = numpy_session(model).run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)
    big = np.abs(ref) > 1e-30
    assert np.max(np.abs(got - ref)[big] / np.abs(ref[big])) < 2e-6


# ---- float16 / bfloat16 MatMul, Gemm, Conv (widened to float32 inside the native kernels) ----

def _half_types():
    import ml_dtypes

    return [(np.float16, TensorProto.FLOAT16, 2.0 ** -10), (ml_dtypes.bfloat16, TensorProto.BFLOAT16, 2.0 ** -7)]


@pytest.mark.parametrize("half", range(2), ids=["float16", "bfloat16"])
def test_half_conversions_are_exact_and_round_to_nearest_even(half):
    """Every 16-bit pattern through MatMul with K=1: times 1 it comes back unchanged (subnormals,
    infinities; NaNs stay NaN); times 1.3 (exact in float32) it is rounded like numpy/ml_dtypes'
    float32 -> half cast (round to nearest even, overflow to inf, subnormal results)."""
    dt, elem, _ = _half_types()[half]
    bits = np.arange(65536, dtype=np.uint16)
    a = bits.view(dt).reshape(-1, 1)
    for scale in (1.0, 1.3):
        b = np.array([[scale]], dtype=dt)
        model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [vi("a", elem, [65536, 1])],
                           [vi("y", elem)], initializers=[("b", helper.make_tensor("b", elem, [1, 1], b.view(np.uint16).tobytes(), raw=True))])
        got = native_session(model, ("MatMul",)).run(None, {"a": a})[0]
        assert got.dtype == dt
        with np.errstate(all="ignore"):  # NaN / inf patterns are part of the sweep
            ref = (a.astype(np.float32) * np.float32(b.astype(np.float32)[0, 0])).astype(dt)
        gn, rn = np.isnan(got.astype(np.float32)), np.isnan(ref.astype(np.float32))
        np.testing.assert_array_equal(gn, rn)
        # equal as numbers (bit for bit except the sign of zero: a GEMM sum of -0 is +0)
        np.testing.assert_array_equal(got.astype(np.float32)[~gn], ref.astype(np.float32)[~rn])


@pytest.mark.parametrize("half", range(2), ids=["float16", "bfloat16"])
@pytest.mark.parametrize("const_b", [False, True])
@pytest.mark.parametrize("mkn", [(1, 7, 5), (17, 33, 40), (64, 300, 70)], ids=str)
def test_half_matmul_and_gemm(rng, half, const_b, mkn):
    dt, elem, ulp = _half_types()[half]
    m, k, n = mkn
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    c = rng.standard_normal((n,)).astype(dt)
    inits = [("b", helper.make_tensor("b", elem, [k, n], b.view(np.uint16).tobytes(), raw=True))] if const_b else []
    ins = [vi("a", elem, [m, k])] + ([] if const_b else [vi("b", elem, [k, n])])
    feed = {"a": a} if const_b else {"a": a, "b": b}
    ref32 = a.astype(np.float32) @ b.astype(np.float32)
    mm = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], ins, [vi("y", elem)], initializers=inits)
    gm = make_model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0)], ins + [vi("c", elem, [n])],
                    [vi("y", elem)], initializers=inits)
    for model, f, ref, op in ((mm, feed, ref32, "MatMul"),
                              (gm, dict(feed, c=c), 0.5 * ref32 + 2.0 * c.astype(np.float32), "Gemm")):
        s = native_session(model, (op,))
        got = s.run(None, f)[0]
        assert got.dtype == dt and got.shape == (m, n)
        scale = np.abs(ref).max() + 1
        np.testing.assert_allclose(got.astype(np.float32), ref, rtol=2 * ulp, atol=2 * ulp * scale)
        assert any(r["op_type"] == op and r["kernel"].startswith("native") for r in s.kernel_listing())


@pytest.mark.parametrize("half", range(2), ids=["float16", "bfloat16"])
def test_half_conv(rng, half):
    dt, elem, ulp = _half_types()[half]
    x = rng.standard_normal((2, 6, 9, 8)).astype(dt)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(dt)
    bias = rng.standard_normal(8).astype(dt)
    def raw(name, arr):
        return name, helper.make_tensor(name, elem, arr.shape, arr.view(np.uint16).tobytes(), raw=True)

    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 1], group=2)],
                       [vi("x", elem, list(x.shape))], [vi("y", elem)], initializers=[raw("w", w), raw("b", bias)])
    got = native_session(model, ("Conv",)).run(None, {"x": x})[0]
    model32 = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 1], group=2)],
                         [vi("x", F, list(x.shape))], [vi("y", F)],
                         initializers=[("w", w.astype(np.float32)), ("b", bias.astype(np.float32))])
    ref = ort_run(model32, {"x": x.astype(np.float32)})[0]
    assert got.dtype == dt and got.shape == ref.shape
    np.testing.assert_allclose(got.astype(np.float32), ref, rtol=2 * ulp, atol=2 * ulp * (np.abs(ref).max() + 1))


@pytest.mark.parametrize("spatial", [(7, 7), (5,), (3, 3, 2)], ids=str)
@pytest.mark.parametrize("with_weight_const", [True, False])
def test_pointwise_conv_on_small_maps(rng, spatial, with_weight_const):
    """1x1 convolutions on maps of under 64 positions take the transposed GEMM path (vectorized
    along output channels); with bias, a residual Add and Relu (fused at the default level)."""
    n, c, m = 2, 40, 72
    x = rng.standard_normal((n, c, *spatial)).astype(np.float32)
    w = (rng.standard_normal((m, c) + (1,) * len(spatial)) * 0.2).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((n, m, *spatial)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Add", ["c", "r"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    inputs = [vi("x", F, list(x.shape)), vi("r", F, list(r.shape))] + ([] if with_weight_const else [vi("w", F, list(w.shape))])
    model = make_model(nodes, inputs, [vi("y", F)], initializers=[("b", b)] + ([("w", w)] if with_weight_const else []))
    feed = {"x": x, "r": r} if with_weight_const else {"x": x, "r": r, "w": w}
    s = native_session(model, ("Conv", "Add", "Relu"))
    for _ in range(2):  # the transposed weights are packed on first use
        got = s.run(None, feed)[0]
        np.testing.assert_allclose(got, ort_run(model, feed)[0], rtol=1e-4, atol=1e-4)


# Direct 2-D convolution (phase planes; conv_direct.h): both register tilings forced in turn and the
# automatic choice, across channel-block edges (blocks of 32 input channels), output-channel tails
# (blocks of 64 / 16 lanes), position tails, strides, dilations, asymmetric pads and groups.
DIRECT_CASES = [
    dict(x=(1, 1, 5, 7), w=(1, 1, 3, 3), pads=[1, 1, 1, 1]),
    dict(x=(2, 3, 13, 17), w=(7, 3, 3, 3), pads=[1, 0, 2, 1]),
    dict(x=(1, 31, 9, 9), w=(64, 31, 3, 3), pads=[1, 1, 1, 1]),
    dict(x=(1, 33, 8, 11), w=(65, 33, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(x=(1, 17, 12, 12), w=(130, 17, 2, 2), strides=[2, 2]),
    dict(x=(1, 5, 23, 19), w=(63, 5, 7, 7), strides=[2, 2], pads=[3, 3, 3, 3]),
    dict(x=(1, 16, 10, 10), w=(20, 16, 3, 3), dilations=[2, 2], pads=[2, 1, 0, 2]),
    dict(x=(1, 8, 11, 14), w=(9, 8, 5, 3), strides=[3, 2], pads=[2, 1, 2, 1], dilations=[1, 2]),
    dict(x=(1, 32, 6, 6), w=(96, 16, 3, 3), group=2, pads=[1, 1, 1, 1]),
    dict(x=(1, 4, 1, 1), w=(70, 4, 3, 3), pads=[1, 1, 1, 1]),
    dict(x=(1, 0, 4, 4), w=(8, 0, 3, 3), pads=[1, 1, 1, 1]),
    dict(x=(1, 64, 7, 7), w=(64, 64, 3, 3), pads=[1, 1, 1, 1]),
    # Maps wider than tiling A's row chunk (1536 plane positions): several chunks, a 1-row last one.
    dict(x=(1, 3, 75, 75), w=(10, 3, 7, 7), strides=[2, 2], pads=[3, 3, 3, 3]),
    dict(x=(2, 2, 100, 90), w=(9, 2, 3, 3), pads=[1, 1, 1, 1]),
]


@pytest.mark.parametrize("tiling", ["a", "b", "auto"])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=lambda c: "x" + "x".join(map(str, c["x"])) + "w" + "x".join(map(str, c["w"])))
def test_direct_conv_tilings(rng, monkeypatch, case, tiling):
    if tiling != "auto":
        monkeypatch.setenv("ONNXFAST_CONV_DIRECT", tiling)
    case = dict(case)
    xs, ws = case.pop("x"), case.pop("w")
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **case)], [vi("x")], [vi("y")],
                       initializers=[("w", w), ("b", b)])
    got = native_session(model).run(None, {"x": x})[0]
    ref = ort_run(model, {"x": x})[0]
    assert got.shape == ref.shape
    close(got, ref, int(np.prod(ws[1:])))


@pytest.mark.parametrize("weight_const", [True, False])
def test_strided_conv_with_large_planes_takes_im2col(rng, monkeypatch, weight_const):
    """A stride-2 3x3 convolution whose phase planes exceed 1.5 MiB (4 x 72 x 37 x 37 floats here) runs
    on im2col in the automatic mode, from weights packed at session creation or per run; its result
    must match onnxruntime and the forced direct tilings."""
    x = rng.standard_normal((2, 72, 72, 72)).astype(np.float32)
    w = (rng.standard_normal((40, 72, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    inputs = [vi("x")] + ([] if weight_const else [vi("w")])
    model = make_model([node], inputs, [vi("y")], initializers=[("b", b)] + ([("w", w)] if weight_const else []))
    feed = {"x": x} if weight_const else {"x": x, "w": w}
    ref = ort_run(model, feed)[0]
    for mode in (None, "a", "b"):
        if mode:
            monkeypatch.setenv("ONNXFAST_CONV_DIRECT", mode)
        close(native_session(model).run(None, feed)[0], ref, 72 * 9)


@pytest.mark.parametrize("tiling", ["a", "b"])
@pytest.mark.parametrize("weight_const", [True, False])
def test_direct_conv_fused_residual_relu(rng, monkeypatch, tiling, weight_const):
    """Conv + bias + residual Add + Relu fused (default optimization level) on the direct path,
    batch 2, the weight either a constant (packed at session creation) or fed per run."""
    monkeypatch.setenv("ONNXFAST_CONV_DIRECT", tiling)
    x = rng.standard_normal((2, 24, 9, 10)).astype(np.float32)
    w = (rng.standard_normal((72, 24, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(72).astype(np.float32)
    r = rng.standard_normal((2, 72, 9, 10)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "r"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    inputs = [vi("x", F, list(x.shape)), vi("r", F, list(r.shape))] + ([] if weight_const else [vi("w", F, list(w.shape))])
    model = make_model(nodes, inputs, [vi("y", F)], initializers=[("b", b)] + ([("w", w)] if weight_const else []))
    feed = {"x": x, "r": r} if weight_const else {"x": x, "r": r, "w": w}
    s = native_session(model, ("Conv", "Add", "Relu"))
    for _ in range(2):
        np.testing.assert_allclose(s.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-4, atol=1e-4)


def _fused_matmul_ref(a, b, bias, r, act):
    y = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if bias is not None:
        y = y + bias
    if r is not None:
        y = y + r
    if act == "Relu":
        y = np.maximum(y, 0)
    elif act == "Clip":
        y = np.clip(y, -0.5, 0.75)
    elif act == "Gelu":
        from math import erf

        y = 0.5 * y * (1 + np.array([erf(v) for v in (y / np.sqrt(2)).ravel()]).reshape(y.shape))
    return y


@pytest.mark.parametrize("act", ["None", "Relu", "Clip", "Gelu"])
@pytest.mark.parametrize("a_shape,b_shape", [
    ((0, 5), (5, 3)), ((1, 7), (7, 33)), ((2, 300), (300, 17)), ((3, 17), (17, 1)), ((13, 1), (1, 16)),
    ((33, 64), (64, 100)), ((2, 5, 17), (17, 31)), ((4, 0), (0, 9)), ((3, 4, 9), (3, 9, 5)), ((2, 1, 3, 8), (4, 8, 6)),
])
@pytest.mark.parametrize("const_b", [True, False])
def test_fused_matmul_native(rng, act, a_shape, b_shape, const_b):
    """onnxfast::FusedMatMul: act(A @ B + bias + residual) through the GEMM epilogue, every GEMM path
    (rows-direct for M <= 2, the packed driver, pre-packed constant B, K = 0, broadcast batches)."""
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    out_shape = np.matmul(a, b).shape
    bias = rng.standard_normal(b_shape[-1]).astype(np.float32)
    r = rng.standard_normal(out_shape).astype(np.float32)
    params = {"activation_params": [-0.5, 0.75]} if act == "Clip" else {}
    node = helper.make_node("FusedMatMul", ["a", "b", "bias", "r"], ["y"], domain="onnxfast", activation=act, **params)
    inputs = [vi("a", F, list(a_shape)), vi("r", F, list(out_shape))] + ([] if const_b else [vi("b", F, list(b_shape))])
    inits = [("bias", bias)] + ([("b", b)] if const_b else [])
    model = make_model([node], inputs, [vi("y", F)], initializers=inits, extra_opsets=[("onnxfast", 1)])
    feed = {"a": a, "r": r} if const_b else {"a": a, "r": r, "b": b}
    s = native_session(model, ("FusedMatMul",))
    got = s.run(None, feed)[0]
    np.testing.assert_allclose(got, _fused_matmul_ref(a, b, bias, r, act), rtol=1e-4, atol=1e-4 * max(1, a_shape[-1]) ** 0.5)
    np.testing.assert_allclose(numpy_session(model).run(None, feed)[0], got, rtol=1e-4, atol=1e-4 * max(1, a_shape[-1]) ** 0.5)


def test_fused_matmul_rejects_a_bias_of_the_wrong_length(rng):
    node = helper.make_node("FusedMatMul", ["a", "b", "bias"], ["y"], domain="onnxfast")
    model = make_model([node], [vi("a", F, [2, 3])], [vi("y", F)],
                       initializers=[("b", np.ones((3, 4), np.float32)), ("bias", np.ones(5, np.float32))],
                       extra_opsets=[("onnxfast", 1)])
    with pytest.raises(Exception, match="bias must have shape"):
        native_session(model, ("FusedMatMul",)).run(None, {"a": np.ones((2, 3), np.float32)})


@pytest.mark.parametrize("spatial,strides", [((13, 13), [2, 2]), ((14, 14), [2, 2]), ((9,), [3]), ((5, 7, 4), [2, 3, 1])],
                         ids=str)
def test_strided_pointwise_conv_on_small_maps(rng, spatial, strides):
    """1x1 strided convolutions whose output map is under 64 positions (ResNet's 1x1 stride-2
    projections at 14x14 -> 7x7) read a subsampled copy of X through the transposed GEMM path."""
    n, c, m = 2, 24, 80
    x = rng.standard_normal((n, c, *spatial)).astype(np.float32)
    w = (rng.standard_normal((m, c) + (1,) * len(spatial)) * 0.2).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=strides)], [vi("x", F, list(x.shape))],
                       [vi("y", F)], initializers=[("w", w), ("b", b)])
    got = native_session(model).run(None, {"x": x})[0]
    ref = ort_run(model, {"x": x})[0]
    assert got.shape == ref.shape and int(np.prod(got.shape[2:])) < 64
    close(got, ref, c)


# Activations and unary math on vecmath's act_t (csrc/kernels/vecmath_impl.h) against the numpy kernels:
# every size to 17 (the 16-lane body and its tails), larger rows, and the special values.
ACTS = [("Log", {}), ("Reciprocal", {}), ("Softplus", {}), ("Softsign", {}), ("Elu", {"alpha": 0.7}), ("Selu", {}),
        ("Celu", {"alpha": 1.3}), ("Celu", {"alpha": -0.5}), ("Exp", {}), ("Sigmoid", {}), ("Tanh", {}), ("Mish", {}), ("Swish", {"alpha": 0.8}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("HardSwish", {}), ("ThresholdedRelu", {"alpha": 0.4}), ("Shrink", {"lambd": 0.6, "bias": 0.2})]
SPECIAL = np.array([0, -0.0, 1e-30, -1e-30, 1e-40, -1e-40, np.inf, -np.inf, np.nan, 100, -100, 88, -88, 87.5, -87.5,
                    1e-5, -1e-5, 0.3499, -0.3501, 0.35, -0.35, 17, -17, 2.5, -2.5, 3, -3, 1, -1], np.float32)


@pytest.mark.parametrize("op,attrs", ACTS, ids=[a[0] + "".join(f"-{k}{v}" for k, v in a[1].items()) for a in ACTS])
def test_activation_against_numpy(rng, op, attrs):
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [vi("x")], [vi("y")], opset=24)
    nat, ref = native_session(model, (op,)), numpy_session(model)
    assert [r["kernel"] for r in nat.kernel_listing()] == ["native"]
    rows = [(rng.standard_normal(n) * 4).astype(np.float32) for n in list(range(18)) + [31, 64, 1000, 40000]]
    rows += [SPECIAL, rng.standard_normal((3, 0, 2)).astype(np.float32), rng.standard_normal((2, 3, 5)).astype(np.float32)]
    rows.append((np.exp(rng.uniform(-80, 80, 2000)) * rng.choice([-1, 1], 2000)).astype(np.float32))  # every magnitude
    for x in rows:
        if op == "Log":
            x = np.abs(x)
        with np.errstate(all="ignore"):
            got, want = nat.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
        assert got.shape == want.shape and got.dtype == np.float32
        # about 1e-6 relative; HardSigmoid / HardSwish: x * alpha + beta may be one fused multiply-add here,
        # so results that cancel to near 0 differ by an ulp of beta
        atol = 1e-7 if op not in ("HardSigmoid", "HardSwish") else 1e-7 + 6e-8 * np.abs(x)
        with np.errstate(all="ignore"):
            ok = (got == want) | (np.abs(got - want) <= atol + 2e-6 * np.abs(want)) | (np.isnan(got) & np.isnan(want))
        ok &= ~np.isinf(want) | (got == want)  # an infinite result must be that infinity
        assert ok.all(), f"{op}: x={x[~ok][:5]} native={got[~ok][:5]} numpy={want[~ok][:5]}"


def test_log_of_subnormals_zero_and_negatives():
    x = np.array([1e-45, 1e-40, 1.1754942e-38, 0, -0.0, -1, np.inf, 2.0 ** -149, 3.4e38], np.float32)
    model = make_model([helper.make_node("Log", ["x"], ["y"])], [vi("x")], [vi("y")])
    with np.errstate(all="ignore"):
        got = native_session(model, ("Log",)).run(None, {"x": x})[0]
        want = np.log(x)
    np.testing.assert_allclose(got, want, rtol=1e-6)


CMP_OPS = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
           "GreaterOrEqual": np.greater_equal}


@pytest.mark.parametrize("op,dtype", [(op, dt) for op in CMP_OPS for dt in (np.float32, np.float64, np.int32, np.int64)]
                         + [("Equal", np.bool_)], ids=lambda v: v if isinstance(v, str) else np.dtype(v).name)
@pytest.mark.parametrize("sa,sb", [((), ()), ((5,), ()), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 4), (1, 3, 1)),
                                   ((0, 3), (3,)), ((17,), (17,)), ((70000,), (1,))])
def test_comparison_broadcast(rng, op, dtype, sa, sb):
    code = onnxfast.dtypes.onnx_code(dtype)
    model = make_model([helper.make_node(op, ["a", "b"], ["c"])], [vi("a", code), vi("b", code)],
                       [vi("c", TensorProto.BOOL)])
    a = rng.integers(-3, 3, sa).astype(dtype)
    b = rng.integers(-3, 3, sb).astype(dtype)
    if dtype == np.float32 and a.size > 2:
        a.reshape(-1)[:2] = [np.nan, np.inf]
    got = native_session(model, (op,)).run(None, {"a": a, "b": b})[0]
    want = CMP_OPS[op](a, b)
    assert got.dtype == np.bool_ and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


VAR_OPS = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}


@pytest.mark.parametrize("op,dtype", [(op, dt) for op in ("Max", "Min", "Sum") for dt in (np.float32, np.float64, np.int32,
                                                                                        np.int64)]
                         + [("Mean", np.float32), ("Mean", np.float64)],
                         ids=lambda v: v if isinstance(v, str) else np.dtype(v).name)
@pytest.mark.parametrize("shapes", [[(5,)], [(3, 4), (4,)], [(2, 1, 4), (1, 3, 1), (4,)], [(), (2, 3)],
                                    [(17,), (17,), (17,), (17,)], [(0, 3), (3,)], [(40000,), (1,), (40000,)]],
                         ids=lambda s: "-".join("x".join(map(str, d)) or "s" for d in s))
def test_variadic_broadcast(rng, op, dtype, shapes):
    import functools

    code = onnxfast.dtypes.onnx_code(dtype)
    names = [f"x{i}" for i in range(len(shapes))]
    model = make_model([helper.make_node(op, names, ["y"])], [vi(n, code) for n in names], [vi("y", code)])
    xs = [(rng.standard_normal(s) * 10).astype(dtype) for s in shapes]
    if dtype == np.float32 and xs[0].size > 3:
        xs[0].reshape(-1)[:3] = [np.nan, -0.0, np.inf]
    got = native_session(model, (op,)).run(None, dict(zip(names, xs)))[0]
    want = functools.reduce(VAR_OPS[op], xs)
    if op == "Mean" and len(xs) > 1:
        want = want / len(xs)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want.astype(dtype))


def test_variadic_errors_name_the_node():
    model = make_model([helper.make_node("Max", ["a", "b"], ["y"], name="n0")], [vi("a"), vi("b")], [vi("y")])
    s = native_session(model, ("Max",))
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Max 'n0'.*cannot be broadcast"):
        s.run(None, {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)})


@pytest.mark.parametrize("opset", [6, 11, 13])
def test_clip_against_numpy(rng, opset):
    x = (rng.standard_normal(1000) * 4).astype(np.float32)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0]
    bounds = [(-1.0, 2.0), (None, 0.5), (-0.5, None), (None, None), (3.0, 1.0), (np.nan, 1.0)]
    for lo, hi in bounds:
        if opset < 11:
            attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
            model = make_model([helper.make_node("Clip", ["x"], ["y"], name="c", **attrs)], [vi("x")], [vi("y")],
                               opset=opset)
            if not (lo is None or hi is None or lo <= hi):  # Clip-6 attributes: refused, as onnxruntime does
                for make in (lambda: native_session(model, ("Clip",)), lambda: numpy_session(model)):
                    with pytest.raises(onnxfast.errors.InvalidModel, match="Clip 'c': attribute 'min' is"):
                        make()
                continue
            feeds = [{"x": x}]
        else:
            ins = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
            fed = [vi(n) for n in ins[1:] if n]
            model = make_model([helper.make_node("Clip", ins, ["y"])], [vi("x")] + fed, [vi("y")], opset=opset)
            feeds = [{"x": x, **{n: np.array(v, np.float32) for n, v in (("lo", lo), ("hi", hi)) if v is not None}}]
        for feed in feeds:
            with np.errstate(invalid="ignore"):
                got = native_session(model, ("Clip",)).run(None, feed)[0]
                want = numpy_session(model).run(None, feed)[0]
            np.testing.assert_array_equal(got, want, err_msg=f"Clip({lo}, {hi}) opset {opset}")
            assert np.array_equal(np.signbit(got), np.signbit(want))


def test_clip_bound_must_be_a_scalar():
    model = make_model([helper.make_node("Clip", ["x", "lo"], ["y"], name="n0")], [vi("x"), vi("lo")], [vi("y")], opset=13)
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Clip 'n0': min must be a scalar"):
        native_session(model, ("Clip",)).run(None, {"x": np.zeros(3, np.float32), "lo": np.zeros(2, np.float32)})


# im2col convolutions finish bias, residual and Relu / LeakyRelu / Clip in the GEMM micro-kernel's
# store, the direct tiling A in its store into Y (other activations run as a pass): the fused node
# must give the bits of the separate nodes.
FUSED_CONV_CASES = {
    "1x1_10x13": dict(x=(2, 16, 10, 13), w=(13, 16, 1, 1)),  # 130 positions: not the small-map path
    "1d_k3": dict(x=(1, 5, 71), w=(29, 5, 3), pads=[1, 1]),
    "3d_k3": dict(x=(1, 3, 5, 6, 7), w=(14, 3, 3, 3, 3), pads=[1, 1, 1, 1, 1, 1]),
    "k300": dict(x=(1, 300, 17), w=(7, 300, 1)),  # two K blocks: the epilogue on the last one only
    # Direct tilings forced: A stores into Y lane ranges of each plane row (rows of 11 + 2 garbage
    # columns, 5 + 3 at stride 2); 40 channels make two channel blocks; B for comparison.
    "direct_a": dict(x=(2, 5, 11, 11), w=(13, 5, 3, 3), pads=[1, 1, 1, 1], direct="a"),
    "direct_a_k7s2": dict(x=(1, 3, 23, 21), w=(10, 3, 7, 7), strides=[2, 2], pads=[3, 3, 3, 3], direct="a"),
    "direct_a_2blocks": dict(x=(1, 40, 9, 8), w=(9, 40, 3, 3), pads=[1, 0, 1, 2], direct="a"),
    # Plane rows of 5 (3 outputs + 2 garbage): one AVX2 vector spans two rows and part of a third.
    "direct_a_narrow": dict(x=(1, 3, 6, 5), w=(6, 3, 3, 3), direct="a"),
    "direct_b": dict(x=(1, 40, 9, 8), w=(70, 40, 3, 3), pads=[1, 1, 1, 1], direct="b"),
}
ACTIVATIONS = {"none": None, "relu": ("Relu", {}), "leaky": ("LeakyRelu", {"alpha": 0.1}),
               "clip": ("Clip", {}), "clip_inverted": ("Clip", {}), "sigmoid": ("Sigmoid", {})}
CLIP_BOUNDS = {"clip": (-0.5, 0.75), "clip_inverted": (0.5, -0.25)}  # min > max: every output is max


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("case", list(FUSED_CONV_CASES))
def test_conv_fused_epilogue_matches_separate_nodes(rng, monkeypatch, case, act, residual):
    c = dict(FUSED_CONV_CASES[case])
    xs, ws = c.pop("x"), c.pop("w")
    if "direct" in c:
        monkeypatch.setenv("ONNXFAST_CONV_DIRECT", c.pop("direct"))
    x = rng.standard_normal(xs).astype(np.float32)
    # Two NaN inputs (first and last position of one channel): the outputs they reach are NaN
    # through every activation (Relu, Clip and LeakyRelu keep NaN), the others stay finite.
    x[(0, 0) + (0,) * (len(xs) - 2)] = np.nan
    x[(-1, -1) + (-1,) * (len(xs) - 2)] = np.nan
    w = (rng.standard_normal(ws) * 0.3).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    b[::3] = 0.0  # zero bias entries take the no-add branch
    nd = len(xs) - 2
    pads, strides = c.get("pads", [0] * 2 * nd), c.get("strides", [1] * nd)
    out_shape = [xs[0], ws[0], *[(n + pads[d] + pads[d + nd] - k) // strides[d] + 1
                                for d, (n, k) in enumerate(zip(xs[2:], ws[2:]))]]
    r = rng.standard_normal(out_shape).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **c)]
    last, feed, inputs, inits = "c", {"x": x}, [vi("x", F, list(xs))], [("w", w), ("b", b)]
    if residual:
        nodes.append(helper.make_node("Add", ["c", "r"], ["s"]))
        last, feed["r"] = "s", r
        inputs.append(vi("r", F, out_shape))
    if ACTIVATIONS[act]:
        op, attrs = ACTIVATIONS[act]
        ins = [last] + (["lo", "hi"] if op == "Clip" else [])
        if op == "Clip":
            lo, hi = CLIP_BOUNDS[act]
            inits += [("lo", np.array(lo, np.float32)), ("hi", np.array(hi, np.float32))]
        nodes.append(helper.make_node(op, ins, ["y"], **attrs))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    model = make_model(nodes, inputs, [vi("y", F)], initializers=inits)
    fused = native_session(model, ("Conv",))
    assert "FusedConv" in [k["op_type"] for k in fused.kernel_listing()] or act == "none" and not residual
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = onnxfast.GraphOptimizationLevel.ORT_DISABLE_ALL
    separate = onnxfast.InferenceSession(model.SerializeToString(), o)
    got = fused.run(None, feed)[0]
    np.testing.assert_array_equal(got, separate.run(None, feed)[0])
    ref = ort_run(model, feed)[0]
    finite = np.isfinite(ref)
    assert finite.mean() > 0.5  # the NaN inputs reach a few outputs, not most
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-4, atol=1e-4)
