"""Sequence and Optional operators.

A sequence value is a Python ``list`` of numpy arrays; an optional value is either its content
(a numpy array or a list) or ``None`` when empty.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..registry import op
from ._common import invalid, normalize_axis


def _position(node, pos, n, allow_end):
    """Validate a sequence position (negative counts from the end) and make it non-negative."""
    p = int(np.asarray(pos).reshape(-1)[0])
    hi = n if allow_end else n - 1
    if p < -n or p > hi:
        raise errors.IndexOutOfRange(
            f"{node.op_type} node '{node.name}': position {p} is out of range for a sequence of "
            f"length {n} (valid range [{-n}, {hi}])"
        )
    return p + n if p < 0 else p


def _seq(node, s):
    if not isinstance(s, (list, tuple)):
        invalid(node, f"expected a sequence, got {type(s).__name__}", errors.InvalidType)
    return s


@op("SequenceEmpty", since=11)
def sequence_empty_11(node):
    def run():
        return []

    return run


@op("SequenceConstruct", since=11)
def sequence_construct_11(node):
    def run(*xs):
        if xs:
            dt = xs[0].dtype
            for x in xs:
                if x.dtype != dt:
                    invalid(node, f"all inputs must have the same element type, got {dt} and {x.dtype}", errors.InvalidType)
        return list(xs)

    return run


@op("SequenceAt", since=11)
def sequence_at_11(node):
    def run(s, position):
        s = _seq(node, s)
        return s[_position(node, position, len(s), False)]

    return run


@op("SequenceInsert", since=11)
def sequence_insert_11(node):
    def run(s, tensor, position=None):
        s = list(_seq(node, s))
        if s and s[0].dtype != tensor.dtype:
            invalid(node, f"tensor element type {tensor.dtype} differs from the sequence's {s[0].dtype}", errors.InvalidType)
        if position is None:
            s.append(tensor)
        else:
            s.insert(_position(node, position, len(s), True), tensor)
        return s

    return run


@op("SequenceErase", since=11)
def sequence_erase_11(node):
    def run(s, position=None):
        s = list(_seq(node, s))
        if not s:
            raise errors.IndexOutOfRange(f"{node.op_type} node '{node.name}': cannot erase from an empty sequence")
        if position is None:
            s.pop()
        else:
            del s[_position(node, position, len(s), False)]
        return s

    return run


@op("SequenceLength", since=11)
def sequence_length_11(node):
    def run(s):
        return np.array(len(_seq(node, s)), dtype=np.int64)

    return run


@op("ConcatFromSequence", since=11)
def concat_from_sequence_11(node):
    axis = node.attr("axis", None)
    if axis is None:
        node.fail("missing attribute 'axis'")
    new_axis = bool(node.attr("new_axis", 0))

    def run(s):
        s = _seq(node, s)
        if not s:
            invalid(node, "cannot concatenate an empty sequence")
        r = s[0].ndim
        try:
            if new_axis:
                a = normalize_axis(axis, r + 1, node)
                return np.stack(s, axis=a)
            a = normalize_axis(axis, r, node)
            return np.concatenate(s, axis=a)
        except ValueError:
            invalid(node, f"tensor shapes {[x.shape for x in s]} cannot be concatenated on axis {axis}")

    return run


@op("SplitToSequence", since=11)
def split_to_sequence_11(node):
    axis = int(node.attr("axis", 0))
    keepdims = bool(node.attr("keepdims", 1))

    def run(x, split=None):
        a = normalize_axis(axis, x.ndim, node)
        d = x.shape[a]
        idx = [slice(None)] * x.ndim
        if split is None:
            out = []
            for i in range(d):
                idx[a] = slice(i, i + 1) if keepdims else i
                out.append(x[tuple(idx)])
            return out
        sp = np.asarray(split)
        if sp.ndim == 0 or sp.size == 1 and sp.ndim == 0:
            n = int(sp)
            if n <= 0:
                invalid(node, f"split must be positive, got {n}")
            sizes = [n] * (d // n) + ([d % n] if d % n else [])
        else:
            sizes = [int(v) for v in sp.reshape(-1)]
            if sum(sizes) != d or any(v < 0 for v in sizes):
                invalid(node, f"split {sizes} does not add up to dimension {d} of axis {a}")
        out = []
        off = 0
        for n in sizes:
            idx[a] = slice(off, off + n)
            out.append(x[tuple(idx)])
            off += n
        return out

    return run


@op("Optional", since=15)
def optional_15(node):
    def run(x=None):
        return x

    return run


@op("OptionalHasElement", since=15)
def optional_has_element_15(node):
    def run(x=None):
        return np.array(x is not None, dtype=np.bool_)

    return run


@op("OptionalGetElement", since=15)
def optional_get_element_15(node):
    def run(x=None):
        if x is None:
            invalid(node, "the optional input is empty")
        return x

    return run
