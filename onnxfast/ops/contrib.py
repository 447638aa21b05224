"""Numpy kernels (the references of the native ones in csrc/kernels/contrib_*.cpp) of onnxruntime's
``com.microsoft`` operators that onnxfast runs: the ones onnxruntime's optimizer and transformer tools
write into models, and the ones onnxfast's own fusions write where onnxruntime has the same operator
(so a model onnxfast optimized also loads in onnxruntime). Their schemas are not registered with the
onnx package: onnx's reference evaluator refuses a registry where an operator name (Gelu) exists in
two domains. Types of their outputs are kept from the nodes they replace.

Gelu(X) = 0.5 X (1 + erf(X / sqrt 2)); BiasGelu(A, B) = Gelu(A + B); FastGelu(X[, bias]) = the tanh
form of Gelu(X + bias) (bias: 1-D along the last axis); FusedGemm (Gemm + activation); FusedMatMul
(alpha * MatMul with transposes); SkipLayerNormalization (residual Add + LayerNormalization).
FusedConv (com.microsoft) shares onnxfast's FusedConv kernel (ops/fused.py). CDist (pairwise
distances of two sets of rows).
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..errors import InvalidArgument
from ..registry import REGISTRY, KernelNode, op
from ._common import invalid
from .fused import gelu_kernel

MS_DOMAIN = "com.microsoft"


def _check_bias(node: KernelNode, x: np.ndarray, bias: np.ndarray) -> None:
    if bias.ndim != 1 or x.ndim == 0 or bias.shape[0] != x.shape[-1]:
        node.fail(f"bias must be 1-D with the last dimension of X ({x.shape[-1] if x.ndim else 'X is a scalar'}), "
                  f"got shape {tuple(bias.shape)}")


def _biased(node: KernelNode, approximate: str, needs_bias: bool):
    gelu = gelu_kernel(node.name, approximate)

    def run(x, bias=None):
        if bias is None:
            if needs_bias:
                node.fail("needs input B")
            return gelu(x)
        _check_bias(node, x, bias)
        return gelu((x + bias).astype(x.dtype, copy=False))

    return run


@op("Gelu", since=1, domain=MS_DOMAIN)
def ms_gelu(node: KernelNode):
    return _biased(node, "none", needs_bias=False)


@op("BiasGelu", since=1, domain=MS_DOMAIN)
def ms_bias_gelu(node: KernelNode):
    return _biased(node, "none", needs_bias=True)


@op("FastGelu", since=1, domain=MS_DOMAIN)
def ms_fast_gelu(node: KernelNode):
    return _biased(node, "tanh", needs_bias=False)


def _first(node: KernelNode, outs: tuple):
    """The node's outputs among ``outs`` (a one-output node returns the array itself)."""
    return outs[0] if node.num_outputs < 2 else outs[: node.num_outputs]


@op("FusedGemm", since=1, domain=MS_DOMAIN)
def ms_fused_gemm(node: KernelNode):
    """Gemm, then ``activation`` (Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid; parameters
    activation_alpha / activation_beta)."""
    gemm_attrs = {k: v for k, v in node.attrs.items() if k in ("alpha", "beta", "transA", "transB")}
    gemm = REGISTRY.factory("", "Gemm", 13)(KernelNode("Gemm", "", node.name, 13, 13, gemm_attrs, node.input_types,
                                                      node.output_types, {}, 3, 1))
    act = node.attr("activation", "")
    alpha = node.attr("activation_alpha", None)
    beta = node.attr("activation_beta", None)
    if act == "Relu":
        f = lambda y: np.maximum(y, 0)  # noqa: E731
    elif act == "LeakyRelu":
        a = 0.01 if alpha is None else float(alpha)
        f = lambda y: np.where(y >= 0, y, y * np.asarray(a, y.dtype))  # noqa: E731
    elif act == "Sigmoid":
        f = lambda y: 1 / (1 + np.exp(-y))  # noqa: E731
    elif act == "Tanh":
        f = np.tanh
    elif act == "HardSigmoid":
        a, b = 0.2 if alpha is None else float(alpha), 0.5 if beta is None else float(beta)
        f = lambda y: np.clip(y * np.asarray(a, y.dtype) + np.asarray(b, y.dtype), 0, 1)  # noqa: E731
    elif act in ("", "None"):
        f = lambda y: y  # noqa: E731
    else:
        node.fail(f"attribute 'activation' is '{act}'; known: Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid")

    def run(a, b, c=None):
        y = gemm(a, b, c) if c is not None else gemm(a, b)
        return f(y).astype(y.dtype, copy=False)

    return run


@op("FusedMatMul", since=1, domain=MS_DOMAIN)
def ms_fused_matmul(node: KernelNode):
    """alpha * op(A) @ op(B): transA / transB swap the last two axes; transBatchA / transBatchB move
    the first axis (the batch) behind the others before that (onnxruntime's Transpose + MatMul
    fusions)."""
    alpha = float(node.attr("alpha", 1.0))
    flags = {k: int(node.attr(k, 0)) for k in ("transA", "transB", "transBatchA", "transBatchB")}

    def prep(x, trans, trans_batch):
        if x.ndim == 1:
            return x
        if trans_batch and x.ndim > 2:
            x = np.moveaxis(x, 0, -2)
        if trans:
            x = np.swapaxes(x, -1, -2)
        return x

    def run(a, b):
        if (flags["transBatchA"] or flags["transBatchB"]) and (a.ndim != b.ndim or a.ndim < 3):
            node.fail(f"transBatchA / transBatchB need inputs of one rank, at least 3; got shapes {a.shape} and "
                      f"{b.shape}", cls=InvalidArgument)
        pa = prep(a, flags["transA"], flags["transBatchA"])
        pb = prep(b, flags["transB"], flags["transBatchB"])
        try:
            y = np.matmul(pa, pb)
        except ValueError as e:
            node.fail(f"operands of shapes {a.shape} and {b.shape} (after transposes {pa.shape} and {pb.shape}) "
                      f"do not multiply: {e}", cls=InvalidArgument)
        return (y * np.asarray(alpha, y.dtype)).astype(a.dtype, copy=False) if alpha != 1.0 else y

    return run


@op("SkipLayerNormalization", since=1, domain=MS_DOMAIN)
def ms_skip_layer_norm(node: KernelNode):
    """s = input + skip (+ bias); LayerNormalization of s over the last axis with gamma (+ beta).
    Outputs: output, mean, inv_std_var, input_skip_bias_sum."""
    eps = float(node.attr("epsilon", 1e-12))

    def run(x, skip, gamma, beta=None, bias=None):
        h = x.shape[-1] if x.ndim else 0
        if x.ndim < 2:
            node.fail(f"input must have rank 2 or more, got shape {x.shape}", cls=InvalidArgument)
        k = skip.shape
        while len(k) > 1 and k[0] == 1:
            k = k[1:]
        if not skip.ndim or len(k) > x.ndim or tuple(k) != x.shape[x.ndim - len(k):]:
            node.fail(f"skip of shape {skip.shape} does not match input {x.shape}", cls=InvalidArgument)
        for name, v in (("gamma", gamma), ("beta", beta), ("bias", bias)):
            if v is not None and v.shape != (h,):
                node.fail(f"{name} must have shape ({h},), got {v.shape}", cls=InvalidArgument)
        s = x + skip.reshape(k)
        if bias is not None:
            s = s + bias
        s = s.astype(x.dtype, copy=False)
        s64 = s.astype(np.float64)
        mean = s64.mean(axis=-1, keepdims=True)
        inv = 1.0 / np.sqrt(((s64 - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
        y = (s64 - mean) * inv * gamma
        if beta is not None:
            y = y + beta
        dt = x.dtype
        return _first(node, (y.astype(dt), mean.astype(dt), inv.astype(dt), s))

    return run


@op("QuickGelu", since=1, domain=MS_DOMAIN)
def ms_quick_gelu(node: KernelNode):
    """x * sigmoid(alpha * x), alpha 1.702 by default."""
    alpha = float(node.attr("alpha", 1.702))

    def run(x):
        xf = x.astype(np.float64)
        return (xf / (1.0 + np.exp(-alpha * xf))).astype(x.dtype)

    return run


def _rms_norm(x, gamma, axis: int, eps: float):
    """x / sqrt(mean(x^2) + eps) * gamma over the axes from ``axis`` on, in float64: (y, inv_std_var)."""
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(np.float64)
    inv = 1.0 / np.sqrt((xf * xf).mean(axis=axes, keepdims=True) + eps)
    return xf * inv * gamma, inv


@op("SimplifiedLayerNormalization", since=1)  # onnxruntime registers it in the ONNX domain
def simplified_layer_norm(node: KernelNode):
    """RMS normalization (onnxruntime's name; ONNX has RMSNormalization from opset 23)."""
    axis_attr = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))

    def run(x, scale):
        axis = axis_attr + x.ndim if axis_attr < 0 else axis_attr
        if not 0 <= axis < x.ndim:
            node.fail(f"axis {axis_attr} is out of range for rank {x.ndim}", cls=InvalidArgument)
        try:
            y, inv = _rms_norm(x, scale, axis, eps)
        except ValueError:
            node.fail(f"scale of shape {scale.shape} does not broadcast to X {x.shape}", cls=InvalidArgument)
        outs = (y.astype(x.dtype), inv.astype(np.float32))
        return outs[0] if node.num_outputs < 2 else outs

    return run


@op("SkipSimplifiedLayerNormalization", since=1, domain=MS_DOMAIN)
def ms_skip_simplified_layer_norm(node: KernelNode):
    """s = input + skip (+ bias); RMS normalization of s over the last axis with gamma. Outputs: output,
    mean (unused: zeros' place holder as onnxruntime leaves it), inv_std_var, input_skip_bias_sum."""
    eps = float(node.attr("epsilon", 1e-12))

    def run(x, skip, gamma, bias=None):
        if x.ndim < 2 or skip.shape[-len(x.shape[1:]):] != x.shape[1:] and skip.shape != x.shape:
            node.fail(f"skip of shape {skip.shape} does not match input {x.shape}", cls=InvalidArgument)
        s = x + skip
        if bias is not None:
            s = s + bias
        s = s.astype(x.dtype, copy=False)
        y, inv = _rms_norm(s, gamma, x.ndim - 1, eps)
        return _first(node, (y.astype(x.dtype), np.zeros(inv.shape, x.dtype), inv.astype(x.dtype), s))

    return run


@op("CDist", since=1, domain=MS_DOMAIN)
def ms_cdist(node: KernelNode):
    """Pairwise distances of the rows of A (n, d) and B (m, d): (n, m), 'sqeuclidean' or 'euclidean'
    (onnxruntime's metrics; skl2onnx writes it for kNN and Gaussian processes, and onnxfast's
    ScanCDistFusion for skl2onnx's Scan form of the same)."""
    metric = node.attr("metric", "sqeuclidean")
    metric = metric.decode() if isinstance(metric, bytes) else metric
    if metric not in ("sqeuclidean", "euclidean"):
        invalid(node, f"metric must be 'sqeuclidean' or 'euclidean', got {metric!r}", errors.InvalidModel)

    def run(a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            invalid(node, f"A {a.shape} and B {b.shape} must be matrices with as many columns")
        d = ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(axis=2)
        return (np.sqrt(d) if metric == "euclidean" else d).astype(a.dtype)

    return run
