"""Numpy kernels of onnxruntime's ``com.microsoft`` QOperator-format operators (what
``onnxruntime.quantization.quantize_static(..., quant_format=QOperator)`` writes besides the ONNX
QLinearConv / QLinearMatMul): QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat.

Each dequantizes its uint8 / int8 inputs ((q - zero_point) * scale, float32), computes the float
operator and quantizes the result with the output's scale and zero point (round half to even, then
saturate), as onnxruntime's kernels define them. A missing zero point is 0 of the input's type.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument
from ..registry import REGISTRY, KernelNode, op

MS_DOMAIN = "com.microsoft"
QTYPES = (np.uint8, np.int8)


def _check_q(node: KernelNode, x: np.ndarray, what: str) -> None:
    if x.dtype not in QTYPES:
        node.fail(f"{what} must be uint8 or int8, got {x.dtype}", cls=InvalidArgument)


def _scalar(node: KernelNode, v, what: str, default=None):
    if v is None:
        return default
    a = np.asarray(v)
    if a.size != 1:
        node.fail(f"{what} must hold one value (per-tensor quantization), got shape {a.shape}", cls=InvalidArgument)
    return a.reshape(())


def dequantize(node: KernelNode, x, scale, zp, what: str) -> np.ndarray:
    _check_q(node, x, what)
    s = _scalar(node, scale, f"{what}'s scale").astype(np.float32)
    z = _scalar(node, zp, f"{what}'s zero point", np.zeros((), x.dtype))
    if z.dtype != x.dtype:
        node.fail(f"{what}'s zero point is {z.dtype}, {what} is {x.dtype}", cls=InvalidArgument)
    return (x.astype(np.float32) - z.astype(np.float32)) * s


def quantize(node: KernelNode, y: np.ndarray, scale, zp, dtype) -> np.ndarray:
    s = _scalar(node, scale, "the output scale").astype(np.float32)
    z = _scalar(node, zp, "the output zero point", np.zeros((), dtype))
    info = np.iinfo(z.dtype)
    q = np.rint(y.astype(np.float32) / s) + z.astype(np.float32)
    return np.clip(q, info.min, info.max).astype(z.dtype)


def _binary(f):
    def factory(node: KernelNode):
        def run(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp=None):
            fa = dequantize(node, a, a_scale, a_zp, "A")
            fb = dequantize(node, b, b_scale, b_zp, "B")
            try:
                y = f(fa, fb)
            except ValueError:
                node.fail(f"inputs of shapes {a.shape} and {b.shape} do not broadcast", cls=InvalidArgument)
            return quantize(node, y, c_scale, c_zp, a.dtype)

        return run

    return factory


REGISTRY.register("QLinearAdd", _binary(np.add), domain=MS_DOMAIN, since=1)
REGISTRY.register("QLinearMul", _binary(np.multiply), domain=MS_DOMAIN, since=1)


def _unary(make):
    def factory(node: KernelNode):
        f = make(node)

        def run(x, x_scale, x_zp, y_scale, y_zp=None):
            return quantize(node, f(dequantize(node, x, x_scale, x_zp, "X")), y_scale, y_zp, x.dtype)

        return run

    return factory


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _leaky(node):
    alpha = np.float32(node.attr("alpha", 0.01))
    return lambda x: np.where(x >= 0, x, x * alpha)


REGISTRY.register("QLinearSigmoid", _unary(lambda node: _sigmoid), domain=MS_DOMAIN, since=1)
REGISTRY.register("QLinearLeakyRelu", _unary(_leaky), domain=MS_DOMAIN, since=1)


def _channels_last(node: KernelNode):
    """(to NCHW, back) for the channels_last attribute."""
    if int(node.attr("channels_last", 0)):
        return (lambda x: np.moveaxis(x, -1, 1)), (lambda y: np.moveaxis(y, 1, -1))
    return (lambda x: x), (lambda y: y)


@op("QLinearGlobalAveragePool", since=1, domain=MS_DOMAIN)
def qlinear_global_average_pool(node: KernelNode):
    to_nchw, back = _channels_last(node)

    def run(x, x_scale, x_zp, y_scale, y_zp=None):
        if x.ndim < 3:
            node.fail(f"X must be N x C x spatial..., got shape {x.shape}", cls=InvalidArgument)
        f = to_nchw(dequantize(node, x, x_scale, x_zp, "X"))
        y = f.mean(axis=tuple(range(2, f.ndim)), keepdims=True, dtype=np.float64).astype(np.float32)
        return quantize(node, back(y), y_scale, y_zp, x.dtype)

    return run


@op("QLinearAveragePool", since=1, domain=MS_DOMAIN)
def qlinear_average_pool(node: KernelNode):
    to_nchw, back = _channels_last(node)
    attrs = {k: v for k, v in node.attrs.items() if k != "channels_last"}
    pool = REGISTRY.factory("", "AveragePool", 19)(KernelNode("AveragePool", "", node.name, 19, 19, attrs, [1], [1],
                                                             {}, 1, 1))

    def run(x, x_scale, x_zp, y_scale, y_zp=None):
        y = pool(to_nchw(dequantize(node, x, x_scale, x_zp, "X")))
        return quantize(node, back(np.asarray(y, np.float32)), y_scale, y_zp, x.dtype)

    return run


@op("QLinearConcat", since=1, domain=MS_DOMAIN)
def qlinear_concat(node: KernelNode):
    axis = int(node.attr("axis", 0))

    def run(y_scale, y_zp, *triples):
        if len(triples) % 3 or not triples:
            node.fail(f"inputs after Y_scale, Y_zero_point come in (X, scale, zero point) triples, got {len(triples)}",
                      cls=InvalidArgument)
        xs = [dequantize(node, triples[i], triples[i + 1], triples[i + 2], f"input {i // 3}")
              for i in range(0, len(triples), 3)]
        rank = xs[0].ndim
        if not -rank <= axis < rank:
            node.fail(f"axis {axis} is out of range for rank {rank}", cls=InvalidArgument)
        try:
            y = np.concatenate(xs, axis=axis)
        except ValueError as e:
            node.fail(f"inputs do not concatenate on axis {axis}: {e}", cls=InvalidArgument)
        return quantize(node, y, y_scale, y_zp, triples[0].dtype)

    return run
