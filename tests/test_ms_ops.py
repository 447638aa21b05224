"""onnxruntime's com.microsoft operators that its optimizer writes (FusedGemm, FusedMatMul, FusedConv,
SkipLayerNormalization, BiasGelu, FastGelu): models written by onnxruntime itself
(optimized_model_filepath at the extended level) run in onnxfast, on native kernels, with
onnxruntime's outputs; and each kernel against its numpy reference over edge sizes."""

import math

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast

ort = pytest.importorskip("onnxruntime")
MS = [("com.microsoft", 1)]


def ort_written(tmp_path, model, name):
    """The model as onnxruntime's extended-level optimizer writes it."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return so.optimized_model_filepath


def ms_ops(path):
    import onnx

    return sorted({n.op_type for n in onnx.load(path).graph.node if n.domain == "com.microsoft"})


def check_against_ort(path, feed, expect_ops, rtol=1e-5, atol=1e-5):
    assert ms_ops(path) == sorted(expect_ops)  # onnxruntime wrote what this test is about
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
    s = onnxfast.InferenceSession(path)
    for r in s.kernel_listing():
        if r["domain"] == "com.microsoft":
            assert r["kernel"].startswith("native"), r
    for a, b in zip(s.run(None, feed), want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def consts(rng, **shapes):
    return [(k, (rng.standard_normal(s) * 0.3).astype(np.float32)) for k, s in shapes.items()]


def test_transformer_block_written_by_onnxruntime(tmp_path, rng):
    """MatMul + bias + residual + LayerNormalization, erf Gelu, and scaled Q @ K^T."""
    g = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
         helper.make_node("Add", ["a1", "x"], ["r1"]),
         helper.make_node("LayerNormalization", ["r1", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-5),
         helper.make_node("MatMul", ["ln", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["h"]),
         helper.make_node("Div", ["h", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
         helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["h", "e1"], ["hm"]),
         helper.make_node("Mul", ["hm", "half"], ["gelu"]),
         helper.make_node("Transpose", ["ln"], ["lnT"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["ln", "lnT"], ["qk"]), helper.make_node("Mul", ["qk", "scale"], ["y2"])]
    inits = consts(rng, w1=(8, 8), b1=(8,), gamma=(8,), beta=(8,), w2=(8, 16), b2=(16,))
    inits += [("s2", np.array(math.sqrt(2), np.float32)), ("one", np.array(1, np.float32)),
              ("half", np.array(0.5, np.float32)), ("scale", np.array(0.125, np.float32))]
    m = make_model(g, [vi("x", F, ["b", 5, 8])], [vi("gelu", F, None), vi("y2", F, None)], initializers=inits)
    path = ort_written(tmp_path, m, "block")
    feed = {"x": rng.standard_normal((3, 5, 8)).astype(np.float32)}
    check_against_ort(path, feed, ["BiasGelu", "FusedMatMul", "SkipLayerNormalization"])


@pytest.mark.parametrize("act", ["Relu", "Sigmoid", "Tanh", "LeakyRelu"])
def test_fused_gemm_written_by_onnxruntime(tmp_path, rng, act):
    attrs = {"alpha": 0.2} if act == "LeakyRelu" else {}
    g = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node(act, ["g"], ["y"], **attrs)]
    m = make_model(g, [vi("x", F, ["n", 6])], [vi("y", F, None)], initializers=consts(rng, w=(5, 6), b=(5,)))
    path = ort_written(tmp_path, m, "gemm")
    check_against_ort(path, {"x": rng.standard_normal((4, 6)).astype(np.float32)}, ["FusedGemm"])


@pytest.mark.parametrize("act", ["Relu", "Clip", "LeakyRelu", "Sigmoid"])
def test_fused_conv_written_by_onnxruntime(tmp_path, rng, act):
    ins, inits = ["c"], consts(rng, w=(4, 3, 3, 3), b=(4,))
    attrs = {"alpha": 0.1} if act == "LeakyRelu" else {}
    if act == "Clip":
        ins += ["lo", "hi"]
        inits += [("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))]
    g = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node(act, ins, ["y"], **attrs)]
    m = make_model(g, [vi("x", F, ["n", 3, 7, 7])], [vi("y", F, None)], initializers=inits)
    path = ort_written(tmp_path, m, "conv")
    check_against_ort(path, {"x": rng.standard_normal((2, 3, 7, 7)).astype(np.float32)}, ["FusedConv"])


# ---- kernels against their numpy references and onnxruntime -----------------------------------------

def run_both(model, feed):
    """(native outputs, numpy outputs, onnxruntime outputs)."""
    data = model.SerializeToString()
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    return onnxfast.InferenceSession(data).run(None, feed), onnxfast.InferenceSession(data, o).run(None, feed), want


@pytest.mark.parametrize("a_shape,b_shape,trans_b", [((3, 4), (5, 4), 1), ((2, 3, 4), (4, 5), 0), ((2, 3, 4), (2, 5, 4), 1),
                                                     ((1, 4), (4, 1), 0), ((2, 2, 3, 4), (2, 1, 5, 4), 1),
                                                     ((3, 0), (5, 0), 1), ((4,), (5, 4), 1)])
@pytest.mark.parametrize("alpha", [1.0, 0.125])
@pytest.mark.parametrize("const_b", [False, True])
def test_fused_matmul(rng, a_shape, b_shape, trans_b, alpha, const_b):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", alpha=alpha, transB=trans_b)
    inputs = [vi("a", F, list(a_shape))] + ([] if const_b else [vi("b", F, list(b_shape))])
    m = make_model([node], inputs, [vi("y", F, None)], initializers=[("b", b)] if const_b else [], extra_opsets=MS)
    feed = {"a": a} if const_b else {"a": a, "b": b}
    native, numpy_, want = run_both(m, feed)
    for got in (native[0], numpy_[0]):
        np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)


def test_fused_matmul_other_transposes_run_on_numpy(rng):
    a = rng.standard_normal((2, 4, 3)).astype(np.float32)
    b = rng.standard_normal((4, 2, 5)).astype(np.float32)  # transBatchB: (2, 4, 5), its first axis moved in
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", transA=1, transBatchB=1)
    m = make_model([node], [vi("a", F, [2, 4, 3]), vi("b", F, [4, 2, 5])], [vi("y", F, None)], extra_opsets=MS)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert s.kernel_listing()[0]["kernel"] == "numpy"
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})
    np.testing.assert_allclose(s.run(None, {"a": a, "b": b})[0], want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h", [1, 7, 8, 33, 768])
@pytest.mark.parametrize("skip_shape", ["same", "1SH", "SH"])
@pytest.mark.parametrize("with_beta_bias", [False, True])
def test_skip_layer_norm(rng, h, skip_shape, with_beta_bias):
    x = rng.standard_normal((2, 3, h)).astype(np.float32)
    skip = rng.standard_normal({"same": (2, 3, h), "1SH": (1, 3, h), "SH": (3, h)}[skip_shape]).astype(np.float32)
    ins, inputs = ["x", "skip", "gamma"], [vi("x", F, [2, 3, h]), vi("skip", F, list(skip.shape))]
    inits = consts(rng, gamma=(h,))
    if with_beta_bias:
        ins += ["beta", "bias"]
        inits += consts(rng, beta=(h,), bias=(h,))
    outs = ["y", "", "", "sum"]  # mean / inv_std_var: onnxruntime's CPU kernel leaves them out
    node = helper.make_node("SkipLayerNormalization", ins, outs, domain="com.microsoft", epsilon=1e-5)
    m = make_model([node], inputs, [vi("y", F, None), vi("sum", F, None)], initializers=inits, extra_opsets=MS)
    native, numpy_, want = run_both(m, {"x": x, "skip": skip})
    for got in (native, numpy_):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_skip_layer_norm_bad_skip_refused(rng):
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["y"], domain="com.microsoft")
    m = make_model([node], [vi("x", F, [2, 3, 4]), vi("skip", F, [2, 1, 4])], [vi("y", F, None)],
                   initializers=consts(rng, gamma=(4,)), extra_opsets=MS)
    for disabled in ("", "native"):
        o = onnxfast.SessionOptions()
        if disabled:
            o.add_session_config_entry("onnxfast.disable_kernels", disabled)
        s = onnxfast.InferenceSession(m.SerializeToString(), o)
        with pytest.raises(onnxfast.errors.InvalidArgument, match="skip of shape"):
            s.run(None, {"x": np.zeros((2, 3, 4), np.float32), "skip": np.zeros((2, 1, 4), np.float32)})


# ---- QOperator quantization (onnxruntime.quantization.quantize_static) ------------------------------

def _float_cnn(rng):
    g = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.1),
         helper.make_node("Conv", ["l1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["c2"], ["s2"]),
         helper.make_node("Mul", ["l1", "s2"], ["m"]), helper.make_node("Add", ["m", "l1"], ["a"]),
         helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Conv", ["p", "w3", "b3"], ["c3"]),
         helper.make_node("Concat", ["p", "c3"], ["cat"], axis=1),
         helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
         helper.make_node("Flatten", ["gap"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w4"], ["y"])]
    inits = consts(rng, w1=(4, 3, 3, 3), b1=(4,), w2=(4, 4, 3, 3), b2=(4,), w3=(4, 4, 1, 1), b3=(4,), w4=(8, 5))
    return make_model(g, [vi("x", F, [1, 3, 8, 8])], [vi("y", F, [1, 5])], initializers=inits, opset=13)


def test_qoperator_model_written_by_onnxruntime(tmp_path, rng):
    q = pytest.importorskip("onnxruntime.quantization")
    import onnx

    src, dst = tmp_path / "float.onnx", tmp_path / "q.onnx"
    onnx.save(_float_cnn(rng), str(src))
    data = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QOperator,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QUInt8)
    written = ms_ops(str(dst))
    for op_type in ("QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
                    "QLinearGlobalAveragePool", "QLinearConcat"):
        assert op_type in written, written
    ref = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    s = onnxfast.InferenceSession(str(dst))
    for feed in data[:4]:
        want = ref.run(None, feed)[0]
        got = s.run(None, feed)[0]
        # the same quantized arithmetic up to rounding: a value one step of the output scale apart at most
        step = float(np.max(np.abs(want))) / 50 + 1e-6
        np.testing.assert_allclose(got, want, atol=step)


@pytest.mark.parametrize("op_type,attrs", [("QLinearAdd", {}), ("QLinearMul", {})])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_binary_matches_onnxruntime(rng, op_type, attrs, dtype):
    t = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (3, 1, 7), endpoint=True).astype(dtype)
    b = rng.integers(info.min, info.max, (4, 7), endpoint=True).astype(dtype)
    inits = [("sa", np.array(0.05, np.float32)), ("za", np.array(3, dtype)), ("sb", np.array(0.02, np.float32)),
             ("zb", np.array(-2 if dtype == np.int8 else 7, dtype)), ("sc", np.array(0.1, np.float32)),
             ("zc", np.array(1, dtype))]
    node = helper.make_node(op_type, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft")
    m = make_model([node], [vi("a", t, [3, 1, 7]), vi("b", t, [4, 7])], [vi("y", t, None)], initializers=inits,
                   extra_opsets=MS).SerializeToString()
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
    got = onnxfast.InferenceSession(m).run(None, {"a": a, "b": b})[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))) <= 1  # float rounding of the rescale


@pytest.mark.parametrize("op_type,attrs", [("QuickGelu", {"alpha": 1.5}), ("QuickGelu", {})])
def test_quick_gelu(rng, op_type, attrs):
    x = (rng.standard_normal((3, 11)) * 3).astype(np.float32)
    m = make_model([helper.make_node(op_type, ["x"], ["y"], domain="com.microsoft", **attrs)], [vi("x", F, [3, 11])],
                   [vi("y", F, None)], extra_opsets=MS).SerializeToString()
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(onnxfast.InferenceSession(m).run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


def test_simplified_layer_norms(rng):
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    skip = rng.standard_normal((2, 3, 16)).astype(np.float32)
    inits = consts(rng, gamma=(16,), bias=(16,))
    nodes = [helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y1"], axis=-1, epsilon=1e-5),
             helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"], ["y2", "", "", "s"],
                              domain="com.microsoft", epsilon=1e-5)]
    m = make_model(nodes, [vi("x", F, [2, 3, 16]), vi("skip", F, [2, 3, 16])],
                   [vi("y1", F, None), vi("y2", F, None), vi("s", F, None)], initializers=inits,
                   extra_opsets=MS).SerializeToString()
    feed = {"x": x, "skip": skip}
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feed)
    for g, w in zip(onnxfast.InferenceSession(m).run(None, feed), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# ---- transformer operators --------------------------------------------------------------------------

def _ort_vs_onnxfast(m, feed, rtol=1e-4, atol=1e-5):
    data = m.SerializeToString()
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    got = onnxfast.InferenceSession(data).run(None, feed)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("mask", [None, "lengths", "raw2d", "raw3d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention(rng, mask, unidirectional):
    b, s, d, heads = 2, 5, 8, 2
    x = rng.standard_normal((b, s, d)).astype(np.float32)
    ins, inputs = ["x", "w", "bias"], [vi("x", F, [b, s, d])]
    feed = {"x": x}
    if mask:
        m = {"lengths": np.array([5, 3], np.int32), "raw2d": (rng.random((b, s)) > 0.3).astype(np.int32),
             "raw3d": (rng.random((b, s, s)) > 0.3).astype(np.int32)}[mask]
        m.reshape(-1)[0] = 1  # every row keeps a key
        if mask == "raw3d":
            m[:, :, 0] = 1
        ins.append("mask")
        inputs.append(vi("mask", TensorProto.INT32, list(m.shape)))
        feed["mask"] = m
    node = helper.make_node("Attention", ins, ["y"], domain="com.microsoft", num_heads=heads,
                            unidirectional=unidirectional)
    model = make_model([node], inputs, [vi("y", F, None)], initializers=consts(rng, w=(d, 3 * d), bias=(3 * d,)),
                       extra_opsets=MS)
    _ort_vs_onnxfast(model, feed)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("mask", [None, "raw2d", "attention_bias"])
def test_multi_head_attention(rng, with_bias, mask):
    b, s, t, d, heads = 2, 3, 4, 8, 2
    feed = {"q": rng.standard_normal((b, s, d)).astype(np.float32), "k": rng.standard_normal((b, t, d)).astype(np.float32),
            "v": rng.standard_normal((b, t, d)).astype(np.float32)}
    ins = ["q", "k", "v", "bias" if with_bias else ""]
    inputs = [vi("q", F, [b, s, d]), vi("k", F, [b, t, d]), vi("v", F, [b, t, d])]
    if mask == "raw2d":
        ins.append("kpm")
        feed["kpm"] = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], np.int32)
        inputs.append(vi("kpm", TensorProto.INT32, [b, t]))
    elif mask == "attention_bias":
        ins += ["", "ab"]
        feed["ab"] = rng.standard_normal((1, heads, s, t)).astype(np.float32)
        inputs.append(vi("ab", F, [1, heads, s, t]))
    node = helper.make_node("MultiHeadAttention", ins, ["y"], domain="com.microsoft", num_heads=heads)
    model = make_model([node], inputs, [vi("y", F, None)], initializers=consts(rng, bias=(3 * d,)) if with_bias else [],
                       extra_opsets=MS)
    _ort_vs_onnxfast(model, feed)


@pytest.mark.parametrize("with_mask", [False, True])
def test_embed_layer_normalization(rng, with_mask):
    b, s, h = 2, 4, 8
    ins = ["ids", "seg", "word", "pos", "segemb", "gamma", "beta"] + (["mask"] if with_mask else [])
    feed = {"ids": rng.integers(0, 10, (b, s)).astype(np.int32), "seg": rng.integers(0, 2, (b, s)).astype(np.int32)}
    inputs = [vi("ids", TensorProto.INT32, [b, s]), vi("seg", TensorProto.INT32, [b, s])]
    if with_mask:
        feed["mask"] = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)
        inputs.append(vi("mask", TensorProto.INT32, [b, s]))
    node = helper.make_node("EmbedLayerNormalization", ins, ["y", "mask_index"], domain="com.microsoft", epsilon=1e-5)
    inits = consts(rng, word=(10, h), pos=(6, h), segemb=(2, h), gamma=(h,), beta=(h,))
    model = make_model([node], inputs, [vi("y", F, None), vi("mask_index", TensorProto.INT32, None)],
                       initializers=inits, extra_opsets=MS)
    _ort_vs_onnxfast(model, feed)
