"""Helpers shared by the numpy kernels of the ai.onnx domain."""

from __future__ import annotations

import math

import numpy as np

from .. import _core, errors
from ..dtypes import np_dtype

# onnxfast.set_seed's value: the seed of random operators without a seed attribute (None: fresh entropy)
GLOBAL_SEED: list = [None]

__all__ = [
    "check_alloc",
    "check_indices",
    "normalize_axis",
    "normalize_axes",
    "const_or_none",
    "ints_of",
    "out_dtype",
    "invalid",
    "node_label",
    "to_array",
]


def node_label(node) -> str:
    return f"{node.op_type} node '{node.name}'"


def invalid(node, msg: str, cls=errors.InvalidArgument):
    """Raise ``cls`` with a message naming the node."""
    raise cls(f"{node_label(node)}: {msg}")


def check_alloc(shape, dtype, node) -> None:
    """Raise AllocationError before allocating a tensor of ``shape`` x ``dtype`` that the memory
    guard refuses (more than the memory limit, or past the budget of live bytes; csrc/core/memory.h)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        invalid(node, f"negative dimension in output shape {tuple(dims)}")
    n = math.prod(dims)
    nbytes = n * np.dtype(dtype).itemsize
    if nbytes >= 1 << 64:
        raise errors.AllocationError(
            f"{node_label(node)}: output of shape {tuple(dims)} ({np.dtype(dtype).name}) needs "
            f"{nbytes} bytes, more than the memory limit of {_core.max_allocation_bytes()} bytes"
        )
    # raises AllocationError (the native error kinds map to onnxfast.errors)
    _core.check_allocation(nbytes, f"{node_label(node)}: output of shape {tuple(dims)} ({np.dtype(dtype).name})")


def normalize_axis(axis: int, rank: int, node, what: str = "axis") -> int:
    a = int(axis)
    if a < -rank or a >= rank:
        invalid(node, f"{what} {a} is out of range for a tensor of rank {rank} (valid: [{-rank}, {rank - 1}])")
    return a + rank if a < 0 else a


def normalize_axes(axes, rank: int, node, what: str = "axes") -> tuple[int, ...]:
    out = tuple(normalize_axis(a, rank, node, what) for a in axes)
    if len(set(out)) != len(out):
        invalid(node, f"{what} {list(axes)} contains duplicates")
    return out


def check_indices(indices: np.ndarray, dim: int, node, axis: int) -> np.ndarray:
    """Validate ``indices`` against [-dim, dim) and return them made non-negative (int64)."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        invalid(node, f"indices must be integers, got {idx.dtype}", errors.InvalidType)
    idx = idx.astype(np.int64, copy=False)
    if idx.size:
        lo = int(idx.min())
        hi = int(idx.max())
        if lo < -dim or hi >= dim:
            bad = lo if lo < -dim else hi
            raise errors.IndexOutOfRange(
                f"{node_label(node)}: index {bad} on axis {axis} is out of range "
                f"(valid range [{-dim}, {dim - 1}] for dimension {dim})"
            )
        if lo < 0:
            idx = np.where(idx < 0, idx + dim, idx)
    return idx


def const_or_none(node, i: int):
    """The constant value of input ``i`` when it is an initializer, else None."""
    return node.const_inputs.get(i) if node.const_inputs else None


def ints_of(x) -> list[int] | None:
    if x is None:
        return None
    return [int(v) for v in np.asarray(x).reshape(-1)]


def out_dtype(node, i: int = 0):
    """numpy dtype of output ``i`` when the node knows it, else None."""
    try:
        t = node.output_types[i]
    except (IndexError, TypeError):
        return None
    if not t:
        return None
    try:
        return np_dtype(t)
    except ValueError:
        return None


def to_array(x, dtype=None) -> np.ndarray:
    a = np.asarray(x)
    if dtype is not None and a.dtype != dtype:
        a = a.astype(dtype)
    return a
