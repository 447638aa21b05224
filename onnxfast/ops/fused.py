"""Kernels of the internal ``onnxfast`` domain that the optimizer's fusions create. The native
kernels do the work (float32); these numpy kernels compose the original operators for the rest."""

from __future__ import annotations

import numpy as np

from ..registry import REGISTRY, KernelNode, op
from .math import relu

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@op("FusedConv", since=1, domain="onnxfast")
def fused_conv(node: KernelNode):
    conv_node = KernelNode("Conv", "", node.name, 11, 11, {k: v for k, v in node.attrs.items() if k in _CONV_ATTRS},
                           node.input_types[:3], node.output_types, {}, 3, 1)
    conv = REGISTRY.factory("", "Conv", 11)(conv_node)
    activate = _activation(node)

    def run(x, w, b=None, z=None):
        y = conv(x, w, b)
        if z is not None:
            y = y + z
        return activate(y).astype(x.dtype, copy=False)

    return run


def _activation(node: KernelNode):
    """The node's fused activation (attributes activation / activation_params) as a function,
    computed as the original operator computes it; resolved once, at session creation."""
    act = node.attr("activation", "None")
    params = list(node.attr("activation_params", []))
    if act == "Relu":
        return relu
    if act == "LeakyRelu":
        return lambda y: np.where(y >= 0, y, y * np.asarray(params[0], y.dtype))
    if act == "Clip":
        return lambda y: np.clip(y, np.asarray(params[0], y.dtype), np.asarray(params[1], y.dtype))
    if act == "Sigmoid":
        return lambda y: 1 / (1 + np.exp(-y))
    if act == "Tanh":
        return np.tanh
    if act in ("Gelu", "GeluTanh"):
        gelu_node = KernelNode("Gelu", "", node.name, 20, 20, {"approximate": "tanh" if act == "GeluTanh" else "none"},
                               [1], [1], {}, 1, 1)
        return REGISTRY.factory("", "Gelu", 20)(gelu_node)
    return lambda y: y


@op("FusedMatMul", since=1, domain="onnxfast")
def fused_matmul(node: KernelNode):
    """y = act(a @ b + bias + residual): MatMul [-> Add(bias)] [-> Add(residual)] [-> activation]."""
    activate = _activation(node)

    def run(a, b, bias=None, z=None):
        y = np.matmul(a, b)
        if bias is not None:
            y = y + bias
        if z is not None:
            y = y + z
        return activate(y).astype(a.dtype, copy=False)

    return run


REGISTRY.register_native("FusedConv", domain="onnxfast", since=1)
REGISTRY.register_native("FusedMatMul", domain="onnxfast", since=1)
