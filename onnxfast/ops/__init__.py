"""Numpy kernels of the ai.onnx domain; importing this package registers them."""

from . import attention, loss, math, nn, reduce, sequence, tensor  # noqa: F401
