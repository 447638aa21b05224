"""Numpy kernels (the references of the native ones in csrc/kernels/contrib_*.cpp) of onnxruntime's
``com.microsoft`` operators that onnxfast runs: the ones onnxruntime's optimizer and transformer tools
write into models, and the ones onnxfast's own fusions write where onnxruntime has the same operator
(so a model onnxfast optimized also loads in onnxruntime). Their schemas are not registered with the
onnx package: onnx's reference evaluator refuses a registry where an operator name (Gelu) exists in
two domains. Types of their outputs are kept from the nodes they replace.

Gelu(X) = 0.5 X (1 + erf(X / sqrt 2)); BiasGelu(A, B) = Gelu(A + B); FastGelu(X[, bias]) = the tanh
form of Gelu(X + bias). bias: 1-D along the last axis.
"""

from __future__ import annotations

import numpy as np

from ..registry import REGISTRY, KernelNode, op

MS_DOMAIN = "com.microsoft"


def _gelu_fn(node: KernelNode, approximate: str):
    gelu = KernelNode("Gelu", "", node.name, 20, 20, {"approximate": approximate}, [1], [1], {}, 1, 1)
    return REGISTRY.factory("", "Gelu", 20)(gelu)


def _check_bias(node: KernelNode, x: np.ndarray, bias: np.ndarray) -> None:
    if bias.ndim != 1 or x.ndim == 0 or bias.shape[0] != x.shape[-1]:
        node.fail(f"bias must be 1-D with the last dimension of X ({x.shape[-1] if x.ndim else 'X is a scalar'}), "
                  f"got shape {tuple(bias.shape)}")


def _biased(node: KernelNode, approximate: str, needs_bias: bool):
    gelu = _gelu_fn(node, approximate)

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
