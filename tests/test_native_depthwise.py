"""Depthwise convolution (group = channels, one output channel each) on its native per-ISA kernels
(csrc/kernels/conv_depthwise*), against a numpy reference over edge sizes: planes narrower than a
vector, widths around the vector width and its 4-vector step, strides 1 / 2 / 3, dilations,
asymmetric and oversized pads, 1x1 to 7x7 kernels, bias, residual and fused activations.
tests/test_isa_tiers.py runs this file at every tier the CPU has."""

import itertools

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_helpers import F, make_model, vi

import onnxfast


def reference(x, w, b, strides, dilations, pads):
    """y[n, c] = sum over taps of w[c, 0, kh, kw] * xpadded[n, c, oh*sh + kh*dh, ow*sw + kw*dw] (float64)."""
    n, c, h, wd = x.shape
    kh_, kw_ = w.shape[2:]
    (sh, sw), (dh, dw) = strides, dilations
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - ((kh_ - 1) * dh + 1)) // sh + 1
    ow = (wd + pl + pr - ((kw_ - 1) * dw + 1)) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(kh_), range(kw_)):
        patch = xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
        y += w[None, :, 0, i, j, None, None] * patch
    return y + b[None, :, None, None]


def native_session(model):
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "numpy:Conv,numpy:FusedConv")
    o.graph_optimization_level = onnxfast.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = onnxfast.InferenceSession(model.SerializeToString(), o)
    assert all(r["kernel"].startswith("native") for r in s.kernel_listing() if "Conv" in r["op_type"])
    return s


def conv_model(c, k, strides, dilations, pads, op="Conv", domain="", **extra):
    kh, kw = k
    rng = np.random.default_rng(c * 100 + kh * 10 + kw)
    w = rng.standard_normal((c, 1, kh, kw)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    node = helper.make_node(op, ["x", "w", "b"] + (["r"] if "r" in extra.pop("inputs", ()) else []), ["y"],
                            group=c, strides=list(strides), dilations=list(dilations), pads=list(pads),
                            domain=domain, **extra)
    return node, w, b


CASES = []
for (h, wd), k, s, d, p in [
    ((1, 1), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((5, 5), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((7, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((7, 7), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((8, 8), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((9, 17), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((14, 14), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((14, 14), (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)),   # TF-style SAME for stride 2
    ((28, 33), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((28, 28), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((17, 70), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),   # 4-vector steps then single vectors then tails
    ((17, 70), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((16, 67), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    ((16, 67), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),
    ((11, 40), (5, 5), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((12, 37), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),   # dilation: the generic tap loop
    ((12, 37), (3, 3), (2, 2), (2, 3), (1, 2, 3, 1)),
    ((10, 35), (7, 7), (1, 1), (1, 1), (3, 3, 3, 3)),
    ((10, 35), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((10, 35), (2, 4), (1, 2), (1, 1), (0, 1, 1, 2)),   # even, non-square kernel
    ((13, 41), (3, 3), (3, 3), (1, 1), (1, 1, 1, 1)),   # stride 3: one output at a time
    ((13, 41), (3, 3), (1, 3), (1, 1), (1, 1, 1, 1)),
    ((6, 9), (3, 3), (1, 1), (1, 1), (4, 5, 4, 6)),     # pads wider than the kernel
    ((3, 2), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),     # plane smaller than the kernel
    ((40, 3), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((20, 21), (17, 17), (1, 1), (1, 1), (8, 8, 8, 8)),  # more kernel rows than the staging ring's fast path
    ((20, 21), (9, 3), (1, 1), (2, 1), (8, 1, 8, 1)),
]:
    CASES.append(pytest.param((h, wd), k, s, d, p, id=f"{h}x{wd}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-d{d[0]}{d[1]}-p"
                              + "".join(map(str, p))))


@pytest.mark.parametrize("batch,channels", [(1, 3), (2, 1)])
@pytest.mark.parametrize("hw,k,strides,dilations,pads", CASES)
def test_depthwise_matches_reference(hw, k, strides, dilations, pads, batch, channels):
    node, w, b = conv_model(channels, k, strides, dilations, pads)
    x = np.random.default_rng(sum(hw)).standard_normal((batch, channels, *hw)).astype(np.float32)
    model = make_model([node], [vi("x", F, list(x.shape))], [vi("y", F, None)],
                       [("w", w), ("b", b)])
    (y,) = native_session(model).run(None, {"x": x})
    want = reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strides, dilations, pads)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation,attrs,ref", [
    ("Relu", {}, lambda v: np.maximum(v, 0)),
    ("Clip", {"activation_params": [0.0, 6.0]}, lambda v: np.clip(v, 0, 6)),
    ("LeakyRelu", {"activation_params": [0.1]}, lambda v: np.where(v >= 0, v, 0.1 * v)),
    ("Sigmoid", {}, lambda v: 1 / (1 + np.exp(-v))),
])
def test_fused_depthwise_with_residual_and_activation(activation, attrs, ref):
    c = 24
    node, w, b = conv_model(c, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), op="FusedConv", domain="onnxfast",
                            activation=activation, inputs=("r",), **attrs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, c, 19, 45)).astype(np.float32)
    r = rng.standard_normal((1, c, 19, 45)).astype(np.float32)
    model = make_model([node], [vi("x", F, list(x.shape)), vi("r", F, list(r.shape))], [vi("y", F, None)],
                       [("w", w), ("b", b)],
                       extra_opsets=[("onnxfast", 1)])
    (y,) = native_session(model).run(None, {"x": x, "r": r})
    want = ref(reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), (1, 1),
                         (1, 1, 1, 1)) + r)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_depthwise_identical_across_thread_counts():
    node, w, b = conv_model(32, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1))
    x = np.random.default_rng(0).standard_normal((2, 32, 57, 57)).astype(np.float32)
    model = make_model([node], [vi("x", F, list(x.shape))], [vi("y", F, None)],
                       [("w", w), ("b", b)])
    outs = []
    for threads in (1, 2, 3):
        o = onnxfast.SessionOptions()
        o.intra_op_num_threads = threads
        outs.append(onnxfast.InferenceSession(model.SerializeToString(), o).run(None, {"x": x})[0])
    assert all(np.array_equal(outs[0], other) for other in outs[1:])


def test_depthwise_matches_onnxruntime_mobilenet_layers():
    ort = pytest.importorskip("onnxruntime")
    for c, hw, s in [(32, 112, 1), (96, 112, 2), (144, 56, 1), (960, 7, 1)]:
        node, w, b = conv_model(c, (3, 3), (s, s), (1, 1), (1, 1, 1, 1))
        x = np.random.default_rng(c).standard_normal((1, c, hw, hw)).astype(np.float32)
        model = make_model([node], [vi("x", F, list(x.shape))], [vi("y", F, None)],
                           [("w", w), ("b", b)])
        (y,) = native_session(model).run(None, {"x": x})
        (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_depthwise_zero_batch():
    node, w, b = conv_model(4, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))
    model = make_model([node], [vi("x", F, ["N", 4, 9, 9])], [vi("y", F, None)],
                       [("w", w), ("b", b)])
    (y,) = native_session(model).run(None, {"x": np.zeros((0, 4, 9, 9), np.float32)})
    assert y.shape == (0, 4, 9, 9)
