"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare (all opset variants)."""

from __future__ import annotations

import numpy as np

from ..registry import REGISTRY
from ._common import ints_of, normalize_axes


def _is_lowp(dt) -> bool:
    return dt.kind == "V" or (dt.kind == "f" and dt.itemsize < 2) or str(dt) == "bfloat16"


def _acc_dtype(dt):
    """Dtype to accumulate in: float16/bfloat16 accumulate in float32 for accuracy."""
    if dt == np.float16 or _is_lowp(dt):
        return np.dtype(np.float32)
    return dt


def _empty_fill(kind, dt):
    if kind == "max":
        if dt.kind == "f" or _is_lowp(dt):
            return -np.inf
        if dt.kind == "b":
            return False
        return np.iinfo(dt).min
    if kind == "min":
        if dt.kind == "f" or _is_lowp(dt):
            return np.inf
        if dt.kind == "b":
            return True
        return np.iinfo(dt).max
    if kind in ("logsum", "logsumexp"):
        return -np.inf
    if kind == "prod":
        return 1
    if kind == "mean":
        return np.nan
    return 0


def _compute(kind, x, axes, keepdims):
    dt = x.dtype
    acc = _acc_dtype(dt)
    xa = x.astype(acc) if acc != dt else x
    if kind == "sum":
        return np.sum(xa, axis=axes, keepdims=keepdims, dtype=acc)
    if kind == "mean":
        if dt.kind in "iu":
            s = np.sum(xa, axis=axes, keepdims=keepdims, dtype=np.int64 if dt.kind == "i" else np.uint64)
            n = 1
            for a in axes if axes is not None else range(x.ndim):
                n *= x.shape[a]
            return s // n
        return np.mean(xa, axis=axes, keepdims=keepdims, dtype=acc)
    if kind == "max":
        return np.max(xa, axis=axes, keepdims=keepdims)
    if kind == "min":
        return np.min(xa, axis=axes, keepdims=keepdims)
    if kind == "prod":
        return np.prod(xa, axis=axes, keepdims=keepdims, dtype=acc)
    if kind == "l1":
        return np.sum(np.abs(xa), axis=axes, keepdims=keepdims, dtype=acc)
    if kind == "l2":
        if dt.kind in "iu":
            s = np.sum(np.square(xa.astype(np.float64)), axis=axes, keepdims=keepdims)
            return np.sqrt(s)
        return np.sqrt(np.sum(np.square(xa), axis=axes, keepdims=keepdims, dtype=acc))
    if kind == "sumsquare":
        return np.sum(np.square(xa), axis=axes, keepdims=keepdims, dtype=acc)
    if kind == "logsum":
        with np.errstate(divide="ignore"):
            return np.log(np.sum(xa, axis=axes, keepdims=keepdims, dtype=acc))
    if kind == "logsumexp":
        if dt.kind in "iu":
            xa = xa.astype(np.float64)
        m = np.max(xa, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):
            s = np.log(np.sum(np.exp(xa - m), axis=axes, keepdims=True)) + m
        if not keepdims:
            s = np.squeeze(s, axis=axes) if axes is not None else s.reshape(())
        return s
    raise AssertionError(kind)


def _reduce(node, kind, x, axes, keepdims, noop):
    dt = x.dtype
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None:
        if noop:
            return x
        ax = None
        red = tuple(range(x.ndim))
    else:
        red = normalize_axes(axes, x.ndim, node)
        ax = red
    if any(x.shape[a] == 0 for a in red):
        out_shape = tuple(1 if i in red else d for i, d in enumerate(x.shape)) if keepdims else tuple(
            d for i, d in enumerate(x.shape) if i not in red
        )
        fill = _empty_fill(kind, dt)
        if dt.kind in "iu" and isinstance(fill, float):
            fill = 0
        return np.full(out_shape, fill, dtype=dt)
    y = _compute(kind, x, ax, keepdims)
    y = np.asarray(y)
    if y.dtype != dt:
        if dt.kind in "iu" and y.dtype.kind == "f":
            y = np.round(y) if kind in ("l2",) else y
        y = y.astype(dt)
    return y


def _make(kind, axes_input_since):
    def factory(node):
        keepdims = bool(node.attr("keepdims", 1))
        noop = bool(node.attr("noop_with_empty_axes", 0))
        if node.since_version >= axes_input_since:
            caxes = node.const_inputs.get(1) if node.const_inputs else None
            caxes = ints_of(caxes)

            def run(x, axes=None):
                a = caxes if caxes is not None else ints_of(axes)
                return _reduce(node, kind, x, a, keepdims, noop)

        else:
            attr_axes = node.attr("axes", None)

            def run(x):
                return _reduce(node, kind, x, attr_axes, keepdims, False)

        return run

    return factory


for _name, _kind in (
    ("ReduceSum", "sum"),
    ("ReduceMean", "mean"),
    ("ReduceMax", "max"),
    ("ReduceMin", "min"),
    ("ReduceProd", "prod"),
    ("ReduceL1", "l1"),
    ("ReduceL2", "l2"),
    ("ReduceLogSum", "logsum"),
    ("ReduceLogSumExp", "logsumexp"),
    ("ReduceSumSquare", "sumsquare"),
):
    _since = 13 if _name == "ReduceSum" else 18
    _f = _make(_kind, _since)
    REGISTRY.register(_name, _f, since=1)
    REGISTRY.register(_name, _make(_kind, _since), since=_since)

