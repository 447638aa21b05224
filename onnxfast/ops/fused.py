"""Kernels of the internal ``onnxfast`` domain that the optimizer's fusions create. The native
kernels do the work (float32); these numpy kernels compose the original operators for the rest."""

from __future__ import annotations

import numpy as np

from ..registry import REGISTRY, KernelNode, op

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@op("FusedConv", since=1, domain="onnxfast")
def fused_conv(node: KernelNode):
    conv_node = KernelNode("Conv", "", node.name, 11, 11, {k: v for k, v in node.attrs.items() if k in _CONV_ATTRS},
                           node.input_types[:3], node.output_types, {}, 3, 1)
    conv = REGISTRY.factory("", "Conv", 11)(conv_node)
    act = node.attr("activation", "None")
    params = list(node.attr("activation_params", []))

    def run(x, w, b=None, z=None):
        y = conv(x, w, b)
        if z is not None:
            y = y + z
        return _activate(y, act, params).astype(x.dtype, copy=False)

    return run


def _activate(y: np.ndarray, act: str, params: list) -> np.ndarray:
    """The fused activation of FusedConv / FusedMatMul, as the original operator computes it."""
    if act == "Relu":
        return np.maximum(y, 0)
    if act == "LeakyRelu":
        return np.where(y >= 0, y, y * np.asarray(params[0], y.dtype))
    if act == "Clip":
        return np.clip(y, np.asarray(params[0], y.dtype), np.asarray(params[1], y.dtype))
    if act == "Sigmoid":
        return 1 / (1 + np.exp(-y))
    if act == "Tanh":
        return np.tanh(y)
    if act in ("Gelu", "GeluTanh"):
        gelu_node = KernelNode("Gelu", "", "gelu", 20, 20, {"approximate": "tanh" if act == "GeluTanh" else "none"},
                               [1], [1], {}, 1, 1)
        return REGISTRY.factory("", "Gelu", 20)(gelu_node)(y)
    return y


@op("FusedMatMul", since=1, domain="onnxfast")
def fused_matmul(node: KernelNode):
    """y = act(a @ b + bias + residual): MatMul [-> Add(bias)] [-> Add(residual)] [-> activation]."""
    act = node.attr("activation", "None")
    params = list(node.attr("activation_params", []))

    def run(a, b, bias=None, z=None):
        y = np.matmul(a, b)
        if bias is not None:
            y = y + bias
        if z is not None:
            y = y + z
        return _activate(y, act, params).astype(a.dtype, copy=False)

    return run


REGISTRY.register_native("FusedConv", domain="onnxfast", since=1)
REGISTRY.register_native("FusedMatMul", domain="onnxfast", since=1)
