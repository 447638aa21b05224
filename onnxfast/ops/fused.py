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
        if act == "Relu":
            y = np.maximum(y, 0)
        elif act == "LeakyRelu":
            y = np.where(y >= 0, y, y * np.asarray(params[0], y.dtype))
        elif act == "Clip":
            y = np.clip(y, np.asarray(params[0], y.dtype), np.asarray(params[1], y.dtype))
        elif act == "Sigmoid":
            y = 1 / (1 + np.exp(-y))
        elif act == "Tanh":
            y = np.tanh(y)
        return y.astype(x.dtype, copy=False)

    return run


REGISTRY.register_native("FusedConv", domain="onnxfast", since=1)
