"""Shape manipulation, indexing, constants and data movement operators."""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from .. import errors
from ..dtypes import np_dtype
from ..registry import REGISTRY, op
from ._common import check_alloc, check_indices, ints_of, invalid, normalize_axes, normalize_axis
from . import _common

_I64 = np.dtype(np.int64)


def _const(node, i):
    return node.const_inputs.get(i) if node.const_inputs else None


def _i64(v) -> np.ndarray:
    return np.asarray(v, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Shape, Size, Identity


@op("Shape", since=1)
def shape_1(node):
    start = node.attr("start", 0) if node.since_version >= 15 else 0
    end = node.attr("end", None) if node.since_version >= 15 else None

    def run(x):
        r = x.ndim
        s = start + r if start < 0 else start
        s = min(max(s, 0), r)
        if end is None:
            e = r
        else:
            e = end + r if end < 0 else end
            e = min(max(e, 0), r)
        return np.array(x.shape[s:e], dtype=np.int64)

    return run


@op("Size", since=1)
def size_1(node):
    def run(x):
        return np.array(x.size, dtype=np.int64)

    return run


@op("Identity", since=1)
def identity_1(node):
    def run(x):
        return x

    return run


# ----------------------------------------------------------------------------------------------
# Reshape, Flatten, Squeeze, Unsqueeze, Transpose


def _reshape_target(node, in_shape, shape, allowzero):
    shape = [int(v) for v in shape]
    out = list(shape)
    neg = [i for i, v in enumerate(shape) if v == -1]
    if len(neg) > 1:
        invalid(node, f"shape {shape} has more than one -1")
    for i, v in enumerate(shape):
        if v < -1:
            invalid(node, f"shape {shape} has an invalid value {v}")
        if v == 0 and not allowzero:
            if i >= len(in_shape):
                invalid(node, f"shape {shape} copies dimension {i} (0) but the input {tuple(in_shape)} has rank {len(in_shape)}")
            out[i] = in_shape[i]
    total = math.prod(in_shape)
    if neg:
        known = math.prod(v for j, v in enumerate(out) if j != neg[0])
        if known == 0 or total % known:
            if known == 0 and total == 0:
                out[neg[0]] = 0
            else:
                invalid(node, f"cannot reshape input of shape {tuple(in_shape)} to {shape}")
        else:
            out[neg[0]] = total // known
    if math.prod(out) != total:
        invalid(node, f"cannot reshape input of shape {tuple(in_shape)} ({total} elements) to {shape} ({math.prod(out)} elements)")
    return tuple(out)


@op("Reshape", since=1)
def reshape_1(node):
    shape = node.attr("shape", [])

    def run(x):
        return x.reshape(_reshape_target(node, x.shape, shape, False))

    return run


@op("Reshape", since=5)
def reshape_5(node):
    allowzero = bool(node.attr("allowzero", 0)) if node.since_version >= 14 else False
    cshape = ints_of(_const(node, 1))

    def run(x, shape):
        s = cshape if cshape is not None else ints_of(shape)
        return x.reshape(_reshape_target(node, x.shape, s, allowzero))

    return run


@op("Flatten", since=1)
def flatten_1(node):
    axis = int(node.attr("axis", 1))

    def run(x):
        r = x.ndim
        a = axis + r if axis < 0 else axis
        if a < 0 or a > r:
            invalid(node, f"axis {axis} out of range for rank {r}")
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))

    return run


def _squeeze(node, x, axes):
    if axes is None:
        return x.reshape(tuple(d for d in x.shape if d != 1))
    ax = normalize_axes(axes, x.ndim, node)
    for a in ax:
        if x.shape[a] != 1:
            invalid(node, f"cannot squeeze axis {a} of size {x.shape[a]} (input shape {x.shape})")
    return x.reshape(tuple(d for i, d in enumerate(x.shape) if i not in ax))


@op("Squeeze", since=1)
def squeeze_1(node):
    axes = node.attr("axes", None)

    def run(x):
        return _squeeze(node, x, axes)

    return run


@op("Squeeze", since=13)
def squeeze_13(node):
    caxes = ints_of(_const(node, 1))

    def run(x, axes=None):
        a = caxes if caxes is not None else ints_of(axes)
        return _squeeze(node, x, a)

    return run


def _unsqueeze(node, x, axes):
    if axes is None:
        invalid(node, "axes are required")
    r = x.ndim + len(axes)
    ax = sorted(normalize_axes(axes, r, node))
    shape = list(x.shape)
    for a in ax:
        shape.insert(a, 1)
    return x.reshape(shape)


@op("Unsqueeze", since=1)
def unsqueeze_1(node):
    axes = node.attr("axes", None)

    def run(x):
        return _unsqueeze(node, x, axes)

    return run


@op("Unsqueeze", since=13)
def unsqueeze_13(node):
    caxes = ints_of(_const(node, 1))

    def run(x, axes):
        a = caxes if caxes is not None else ints_of(axes)
        return _unsqueeze(node, x, a)

    return run


@op("Transpose", since=1)
def transpose_1(node):
    perm = node.attr("perm", None)

    def run(x):
        if perm is None:
            return np.transpose(x)
        if len(perm) != x.ndim or sorted(perm) != list(range(x.ndim)):
            invalid(node, f"perm {perm} is not a permutation of the axes of an input of shape {x.shape}")
        return np.transpose(x, perm)

    return run


# ----------------------------------------------------------------------------------------------
# Concat, Split


@op("Concat", since=1)
def concat_1(node):
    axis = node.attr("axis", 1 if node.since_version < 4 else None)
    if axis is None:
        node.fail("missing attribute 'axis'")

    def run(*xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            invalid(node, "needs at least one input")
        r = xs[0].ndim
        a = normalize_axis(axis, r, node)
        for x in xs:
            if x.ndim != r or any(x.shape[i] != xs[0].shape[i] for i in range(r) if i != a):
                invalid(node, f"input shapes {[x.shape for x in xs]} do not match outside axis {a}")
        if len(xs) == 1:
            return xs[0]
        dt = xs[0].dtype
        return np.concatenate(xs, axis=a).astype(dt, copy=False)

    return run


def _split_sizes(node, dim, split, n_out, num_outputs=None):
    if split is not None:
        split = [int(s) for s in split]
        if sum(split) != dim or any(s < 0 for s in split):
            invalid(node, f"split {split} does not add up to the dimension {dim}")
        return split
    n = num_outputs or n_out
    if num_outputs:
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        if sizes[-1] < 0:
            invalid(node, f"cannot split dimension {dim} into {n} outputs")
        return sizes
    if dim % n:
        invalid(node, f"dimension {dim} cannot be split evenly into {n} outputs")
    return [dim // n] * n


def _do_split(x, axis, sizes):
    idx = [slice(None)] * x.ndim
    out = []
    off = 0
    for s in sizes:
        idx[axis] = slice(off, off + s)
        out.append(x[tuple(idx)])
        off += s
    return tuple(out)


@op("Split", since=1)
def split_1(node):
    axis = int(node.attr("axis", 0))
    split_attr = node.attr("split", None)
    use_input = node.since_version >= 13 or (node.since_version == 1)
    num_outputs = node.attr("num_outputs", None) if node.since_version >= 18 else None
    csplit = ints_of(_const(node, 1))

    def run(x, split=None):
        a = normalize_axis(axis, x.ndim, node)
        sp = split_attr
        if use_input and split is not None:
            sp = csplit if csplit is not None else ints_of(split)
        if sp is not None and len(sp) == 0:
            sp = None
        sizes = _split_sizes(node, x.shape[a], sp, node.num_outputs, num_outputs)
        if len(sizes) != node.num_outputs and node.num_outputs:
            invalid(node, f"split gives {len(sizes)} parts but the node has {node.num_outputs} outputs")
        parts = _do_split(x, a, sizes)
        return parts[0] if len(parts) == 1 else parts  # one output: the array itself, not a 1-tuple

    return run


# ----------------------------------------------------------------------------------------------
# Slice


def _slice_index(node, shape, starts, ends, axes, steps):
    r = len(shape)
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        invalid(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have the same length")
    ax = normalize_axes(axes, r, node)
    idx = [slice(None)] * r
    for a, s, e, st in zip(ax, starts, ends, steps):
        d = shape[a]
        if st == 0:
            invalid(node, f"step for axis {a} is 0")
        if s < 0:
            s += d
        if e < 0:
            e += d
        if st > 0:
            s = min(max(s, 0), d)
            e = min(max(e, 0), d)
            idx[a] = slice(s, e, st)
        else:
            s = min(max(s, -1), d - 1)
            e = min(max(e, -1), d - 1)
            idx[a] = slice(s, e if e >= 0 else None, st) if s >= 0 else slice(0, 0)
    return tuple(idx)


@op("Slice", since=1)
def slice_1(node):
    starts = node.attr("starts")
    ends = node.attr("ends")
    axes = node.attr("axes", None)

    def run(x):
        return x[_slice_index(node, x.shape, starts, ends, axes, None)]

    return run


@op("Slice", since=10)
def slice_10(node):
    c = [ints_of(_const(node, i)) for i in range(1, 5)]
    cache = {}

    def run(x, starts, ends, axes=None, steps=None):
        s = c[0] if c[0] is not None else ints_of(starts)
        e = c[1] if c[1] is not None else ints_of(ends)
        a = c[2] if c[2] is not None else ints_of(axes)
        st = c[3] if c[3] is not None else ints_of(steps)
        if all(v is not None for v in c[:2]) and (axes is None or c[2] is not None) and (steps is None or c[3] is not None):
            key = x.shape
            idx = cache.get(key)
            if idx is None:
                idx = cache[key] = _slice_index(node, x.shape, s, e, a, st)
        else:
            idx = _slice_index(node, x.shape, s, e, a, st)
        return x[idx]

    return run


# ----------------------------------------------------------------------------------------------
# Gather family


@op("Gather", since=1)
def gather_1(node):
    axis = int(node.attr("axis", 0))

    def run(x, indices):
        a = normalize_axis(axis, x.ndim, node)
        idx = check_indices(indices, x.shape[a], node, a)
        if idx.ndim == 0:
            return np.take(x, int(idx), axis=a)[...] if x.ndim > 1 else np.asarray(x[int(idx)])
        return np.take(x, idx, axis=a)

    return run


@op("GatherElements", since=11)
def gather_elements_11(node):
    axis = int(node.attr("axis", 0))

    def run(x, indices):
        a = normalize_axis(axis, x.ndim, node)
        if indices.ndim != x.ndim:
            invalid(node, f"indices rank {indices.ndim} differs from data rank {x.ndim}")
        for i in range(x.ndim):
            if i != a and indices.shape[i] > x.shape[i]:
                invalid(node, f"indices shape {indices.shape} exceeds data shape {x.shape} on axis {i}")
        idx = check_indices(indices, x.shape[a], node, a)
        src = x[tuple(slice(0, idx.shape[i]) if i != a else slice(None) for i in range(x.ndim))]
        return np.take_along_axis(src, idx, axis=a)

    return run


def _nd_index(node, data_shape, indices, batch_dims):
    """Turn GatherND/ScatterND indices into a tuple of index arrays over data (batch folded in)."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        invalid(node, f"indices must be integers, got {idx.dtype}", errors.InvalidType)
    idx = idx.astype(np.int64, copy=False)
    k = idx.shape[-1]
    b = batch_dims
    if k > len(data_shape) - b:
        invalid(node, f"indices last dimension {k} is larger than data rank {len(data_shape)} minus batch_dims {b}")
    comps = []
    for j in range(k):
        d = data_shape[b + j]
        comps.append(check_indices(idx[..., j], d, node, b + j))
    return comps, k


@op("GatherND", since=11)
def gathernd_11(node):
    batch_dims = int(node.attr("batch_dims", 0)) if node.since_version >= 12 else 0

    def run(x, indices):
        b = batch_dims
        if indices.shape[:b] != x.shape[:b]:
            invalid(node, f"batch dimensions of indices {indices.shape} and data {x.shape} differ")
        comps, k = _nd_index(node, x.shape, indices, b)
        if b == 0:
            return np.asarray(x[tuple(comps)]) if k else np.broadcast_to(x, indices.shape[:-1] + x.shape).copy()
        bshape = x.shape[:b]
        nb = math.prod(bshape)
        mid = indices.shape[b:-1]
        if nb == 0 or math.prod(mid) == 0:  # nothing to gather (reshape(0, -1) would not know its shape)
            return np.empty(bshape + mid + x.shape[b + k:], x.dtype)
        xf = x.reshape((nb,) + x.shape[b:])
        cf = [c.reshape(nb, -1) for c in comps]
        br = np.arange(nb).reshape(nb, 1)
        if k:
            y = xf[(br,) + tuple(cf)]
        else:
            m = math.prod(mid)
            y = np.broadcast_to(xf[:, None], (nb, m) + x.shape[b:])
        return np.ascontiguousarray(y).reshape(bshape + mid + x.shape[b + k:])

    return run


_REDUCE_AT = {
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


def _scatter_assign(node, out, index, updates, reduction):
    if reduction in (None, "", "none"):
        out[index] = updates
    else:
        fn = _REDUCE_AT.get(reduction)
        if fn is None:
            invalid(node, f"unknown reduction {reduction!r}")
        if out.dtype == np.bool_ and reduction == "add":
            fn = np.logical_or
        elif out.dtype == np.bool_ and reduction == "mul":
            fn = np.logical_and
        fn.at(out, index, updates)


@op("ScatterND", since=11)
def scatternd_11(node):
    reduction = node.attr("reduction", "none") if node.since_version >= 16 else "none"

    def run(x, indices, updates):
        comps, k = _nd_index(node, x.shape, indices, 0)
        exp = indices.shape[:-1] + x.shape[k:]
        if updates.shape != exp:
            invalid(node, f"updates shape {updates.shape} should be {exp} (data {x.shape}, indices {indices.shape})")
        out = x.copy()
        _scatter_assign(node, out, tuple(comps), updates, reduction)
        return out

    return run


def _scatter_elements(node, axis, reduction):
    def run(x, indices, updates):
        a = normalize_axis(axis, x.ndim, node)
        if indices.shape != updates.shape:
            invalid(node, f"indices shape {indices.shape} and updates shape {updates.shape} differ")
        if indices.ndim != x.ndim:
            invalid(node, f"indices rank {indices.ndim} differs from data rank {x.ndim}")
        idx = check_indices(indices, x.shape[a], node, a)
        grids = list(np.indices(idx.shape, sparse=True))
        grids[a] = idx
        out = x.copy()
        _scatter_assign(node, out, tuple(grids), updates, reduction)
        return out

    return run


@op("ScatterElements", since=11)
def scatter_elements_11(node):
    red = node.attr("reduction", "none") if node.since_version >= 16 else "none"
    return _scatter_elements(node, int(node.attr("axis", 0)), red)


@op("Scatter", since=9)
def scatter_9(node):
    return _scatter_elements(node, int(node.attr("axis", 0)), "none")


# ----------------------------------------------------------------------------------------------
# Expand, Tile, constants, Range


@op("Expand", since=8)
def expand_8(node):
    cshape = ints_of(_const(node, 1))

    def run(x, shape):
        s = cshape if cshape is not None else ints_of(shape)
        try:
            out_shape = np.broadcast_shapes(x.shape, tuple(s))
        except ValueError:
            invalid(node, f"input shape {x.shape} cannot be expanded to {tuple(s)}")
        if out_shape == x.shape:
            return x
        check_alloc(out_shape, x.dtype, node)
        return np.broadcast_to(x, out_shape).copy()

    return run


@op("Tile", since=1)
def tile_1(node):
    def run(x, repeats, axis=None):
        if node.since_version < 6:  # tiles, axis
            reps = [1] * x.ndim
            a = normalize_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim, node)
            reps[a] = int(np.asarray(repeats).reshape(-1)[0])
        else:
            reps = ints_of(repeats)
        if len(reps) != x.ndim:
            invalid(node, f"repeats {reps} must have one entry per input dimension (input shape {x.shape})")
        if any(r < 0 for r in reps):
            invalid(node, f"repeats {reps} must be non-negative")
        check_alloc([d * r for d, r in zip(x.shape, reps)], x.dtype, node)
        return np.tile(x, reps)

    return run


def _constant_value(node):
    a = node.attrs
    if a.get("value") is not None:
        v = a["value"]
        return np.asarray(v) if not isinstance(v, np.ndarray) else v
    if a.get("sparse_value") is not None:
        sv = a["sparse_value"]
        return _densify(node, sv)
    if a.get("value_float") is not None:
        return np.array(a["value_float"], dtype=np.float32)
    if a.get("value_floats") is not None:
        return np.array(a["value_floats"], dtype=np.float32)
    if a.get("value_int") is not None:
        return np.array(a["value_int"], dtype=np.int64)
    if a.get("value_ints") is not None:
        return np.array(a["value_ints"], dtype=np.int64)
    if a.get("value_string") is not None:
        return np.array(a["value_string"], dtype=object)
    if a.get("value_strings") is not None:
        out = np.empty(len(a["value_strings"]), dtype=object)
        out[:] = list(a["value_strings"])
        return out
    node.fail("Constant has no value attribute")


def _densify(node, sv):
    from onnx import numpy_helper

    if isinstance(sv, tuple):
        values, proto = sv
    else:
        proto = sv
        values = numpy_helper.to_array(proto.values)
    dims = list(proto.dims)
    idx = numpy_helper.to_array(proto.indices).astype(np.int64)
    out = np.zeros(dims, dtype=values.dtype)
    flat = out.reshape(-1)
    if idx.ndim == 2:
        idx = np.ravel_multi_index(tuple(idx.T), dims)
    flat[idx.reshape(-1)] = values.reshape(-1)
    return out


@op("Constant", since=1)
def constant_1(node):
    value = _constant_value(node)
    value.flags.writeable = False if value.flags.owndata else value.flags.writeable

    def run():
        return value

    return run


@op("ConstantOfShape", since=9)
def constant_of_shape_9(node):
    v = node.attr("value", None)
    if v is None:
        v = np.zeros(1, dtype=np.float32)
    v = np.asarray(v)
    if v.size != 1:
        node.fail(f"value must have exactly one element, got shape {v.shape}")
    scalar = v.reshape(())
    dt = v.dtype

    def run(shape):
        s = ints_of(shape)
        check_alloc(s, dt, node)
        return np.full(s, scalar, dtype=dt)

    return run


@op("Range", since=11)
def range_11(node):
    def run(start, limit, delta):
        dt = start.dtype
        s = start.reshape(-1)[0]
        lim = limit.reshape(-1)[0]
        d = delta.reshape(-1)[0]
        if d == 0:
            invalid(node, "delta must not be 0")
        if dt.kind in "iu":
            n = max(-(-(int(lim) - int(s)) // int(d)), 0)
        else:
            c = math.ceil((float(lim) - float(s)) / float(d)) if math.isfinite((float(lim) - float(s)) / float(d)) \
                else float("nan")
            if not c < 9.2e18:
                invalid(node, f"the element count ceil((limit - start) / delta) is {float(c):f}, not a size")
            n = max(int(c), 0)
        check_alloc([n], dt, node)
        if dt.kind in "iu":
            return (int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(dt)
        return (s + np.arange(n, dtype=dt) * d).astype(dt, copy=False)

    return run


@op("EyeLike", since=9)
def eyelike_9(node):
    k = int(node.attr("k", 0))
    dtype_code = node.attr("dtype", None)

    def run(x):
        if x.ndim != 2:
            invalid(node, f"input must be 2-D, got shape {x.shape}")
        dt = np_dtype(dtype_code) if dtype_code is not None else x.dtype
        return np.eye(x.shape[0], x.shape[1], k=k, dtype=dt)

    return run


# ----------------------------------------------------------------------------------------------
# Pad


def _pad(node, x, pads, mode, value, axes):
    r = x.ndim
    pads = [int(p) for p in pads]
    if axes is None:
        axes = list(range(r))
    else:
        axes = list(normalize_axes(axes, r, node))
    n = len(axes)
    if len(pads) != 2 * n:
        invalid(node, f"pads {pads} must have 2 * {n} entries for input of shape {x.shape}")
    begin = [0] * r
    end = [0] * r
    for i, a in enumerate(axes):
        begin[a] = pads[i]
        end[a] = pads[i + n]
    # crop negative pads first
    if any(p < 0 for p in begin + end):
        idx = tuple(slice(-b if b < 0 else 0, x.shape[i] + e if e < 0 else None) for i, (b, e) in enumerate(zip(begin, end)))
        x = x[idx]
        begin = [max(b, 0) for b in begin]
        end = [max(e, 0) for e in end]
    out_shape = [d + b + e for d, b, e in zip(x.shape, begin, end)]
    check_alloc(out_shape, x.dtype, node)
    if not any(begin) and not any(end):
        return x
    width = list(zip(begin, end))
    if mode == "constant":
        out = np.empty(out_shape, dtype=x.dtype)
        cv = value if value is not None else np.zeros((), x.dtype)
        out[...] = np.asarray(cv).astype(x.dtype) if x.dtype != object else (cv if cv is not None else "")
        out[tuple(slice(b, b + d) for b, d in zip(begin, x.shape))] = x
        return out
    if mode == "edge":
        return np.pad(x, width, mode="edge")
    if mode == "reflect":
        for i, (b, e) in enumerate(width):
            if (b or e) and x.shape[i] < 2:
                invalid(node, f"reflect padding needs at least 2 elements on axis {i}, shape {x.shape}")
        return np.pad(x, width, mode="reflect")
    if mode == "wrap":
        return np.pad(x, width, mode="wrap")
    invalid(node, f"unknown mode {mode!r}")


@op("Pad", since=1)
def pad_1(node):
    pads = node.attr("pads", None) if node.since_version >= 2 else node.attr("paddings", None)
    mode = node.attr("mode", "constant")
    value = float(node.attr("value", 0.0))

    def run(x):
        return _pad(node, x, pads, mode, np.asarray(value), None)

    return run


@op("Pad", since=11)
def pad_11(node):
    mode = node.attr("mode", "constant")
    cpads = ints_of(_const(node, 1))
    caxes = ints_of(_const(node, 3))

    def run(x, pads, constant_value=None, axes=None):
        p = cpads if cpads is not None else ints_of(pads)
        a = caxes if caxes is not None else ints_of(axes)
        cv = None
        if constant_value is not None and constant_value.size:
            cv = constant_value.reshape(-1)[0]
        return _pad(node, x, p, mode, cv, a)

    return run


# ----------------------------------------------------------------------------------------------
# NonZero, TopK, ArgMax/ArgMin, OneHot, Compress, Unique


@op("NonZero", since=9)
def nonzero_9(node):
    def run(x):
        xx = x.reshape(1) if x.ndim == 0 else x
        nz = np.nonzero(xx)
        if not nz:
            return np.zeros((0, 0), dtype=np.int64)
        return np.array(nz, dtype=np.int64).reshape(len(nz), -1)

    return run


def _desc_key(x):
    dt = x.dtype
    if dt.kind == "u":
        return np.iinfo(dt).max - x
    if dt.kind == "i":
        return ~x
    if dt.kind == "b":
        return ~x
    if dt.kind == "f":
        return -x
    return -x.astype(np.float32)


@op("TopK", since=1)
def topk_1(node):
    axis = int(node.attr("axis", -1))
    largest = bool(node.attr("largest", 1)) if node.since_version >= 11 else True
    k_attr = node.attr("k", None) if node.since_version < 10 else None
    ck = _const(node, 1)

    def run(x, k=None):
        a = normalize_axis(axis, x.ndim, node)
        kk = k_attr if k_attr is not None else int(np.asarray(ck if ck is not None else k).reshape(-1)[0])
        if kk < 0 or kk > x.shape[a]:
            invalid(node, f"k={kk} is out of range for axis {a} of size {x.shape[a]}")
        key = _desc_key(x) if largest else x
        if key.dtype not in (np.float32, np.float64) and key.dtype.kind == "f":
            key = key.astype(np.float32)
        if x.dtype.kind == "f" and largest:
            # NaN sorts first for largest (as the greatest), ascending puts NaN last
            pass
        order = np.argsort(key, axis=a, kind="stable")
        idx = [slice(None)] * x.ndim
        idx[a] = slice(0, kk)
        ind = np.ascontiguousarray(order[tuple(idx)])
        vals = np.take_along_axis(x, ind, axis=a)
        return vals, ind.astype(np.int64, copy=False)

    return run


def _arg(fn):
    def factory(node):
        axis = int(node.attr("axis", 0))
        keepdims = bool(node.attr("keepdims", 1))
        last = bool(node.attr("select_last_index", 0)) if node.since_version >= 12 else False

        def run(x):
            a = normalize_axis(axis, x.ndim, node)
            if x.shape[a] == 0:
                invalid(node, f"cannot compute {node.op_type} over an empty axis {a} (shape {x.shape})")
            xx = x.astype(np.float32) if x.dtype.kind == "V" or str(x.dtype) == "bfloat16" else x
            if last:
                r = x.shape[a] - 1 - fn(np.flip(xx, a), axis=a, keepdims=keepdims)
            else:
                r = fn(xx, axis=a, keepdims=keepdims)
            return np.asarray(r, dtype=np.int64)

        return run

    return factory


REGISTRY.register("ArgMax", _arg(np.argmax), since=1)
REGISTRY.register("ArgMin", _arg(np.argmin), since=1)


@op("OneHot", since=9)
def onehot_9(node):
    axis = int(node.attr("axis", -1))

    def run(indices, depth, values):
        d = depth.reshape(-1)[0]
        d = int(d)
        if d <= 0:
            invalid(node, f"depth must be positive, got {d}")
        if values.size != 2:
            invalid(node, f"values must have 2 elements, got shape {values.shape}")
        r = indices.ndim + 1
        a = normalize_axis(axis, r, node)
        out_shape = indices.shape[:a] + (d,) + indices.shape[a:]
        check_alloc(out_shape, values.dtype, node)
        idx = indices
        if idx.dtype.kind == "f":
            idx = np.trunc(idx)
        idx = idx.astype(np.int64)
        idx = np.where(idx < 0, idx + d, idx)
        ar = np.arange(d, dtype=np.int64).reshape((d,) + (1,) * (r - 1 - a))
        hot = np.expand_dims(idx, a) == ar
        off, on = values.reshape(-1)[0], values.reshape(-1)[1]
        return np.where(hot, on, off).astype(values.dtype, copy=False)

    return run


@op("Compress", since=9)
def compress_9(node):
    axis = node.attr("axis", None)

    def run(x, condition):
        c = condition.astype(np.bool_, copy=False).reshape(-1)
        if axis is None:
            flat = x.reshape(-1)
            if c.size > flat.size:
                invalid(node, f"condition has {c.size} entries, more than the {flat.size} elements of the input")
            return flat[: c.size][c]
        a = normalize_axis(axis, x.ndim, node)
        if c.size > x.shape[a]:
            invalid(node, f"condition has {c.size} entries, more than dimension {x.shape[a]} of axis {a}")
        return np.compress(c, x, axis=a)

    return run


@op("Unique", since=11)
def unique_11(node):
    axis = node.attr("axis", None)
    sorted_ = bool(node.attr("sorted", 1))

    def run(x):
        if axis is None:
            data = x.reshape(-1)
            u, first, inv, counts = np.unique(data, return_index=True, return_inverse=True, return_counts=True)
            a = None
        else:
            a = normalize_axis(axis, x.ndim, node)
            u, first, inv, counts = np.unique(x, axis=a, return_index=True, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        if not sorted_:
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            u = np.take(u, order, axis=0 if a is None else a)
            first = first[order]
            counts = counts[order]
            inv = rank[inv]
        outs = (u, first.astype(np.int64), inv.astype(np.int64), counts.astype(np.int64))
        k = node.num_outputs or 4
        return outs[0] if k == 1 else outs[:k]

    return run


@op("ReverseSequence", since=10)
def reverse_sequence_10(node):
    batch_axis = int(node.attr("batch_axis", 1))
    time_axis = int(node.attr("time_axis", 0))

    def run(x, seq_lens):
        b = normalize_axis(batch_axis, x.ndim, node)
        t = normalize_axis(time_axis, x.ndim, node)
        T = x.shape[t]
        lens = seq_lens.astype(np.int64).reshape(-1)
        if lens.size != x.shape[b]:
            invalid(node, f"sequence_lens has {lens.size} entries, batch dimension is {x.shape[b]}")
        if np.any(lens < 0) or np.any(lens > T):
            invalid(node, f"sequence_lens {lens.tolist()} out of range [0, {T}]")
        tt = np.arange(T).reshape(1, T)
        L = lens.reshape(-1, 1)
        src_t = np.where(tt < L, L - 1 - tt, tt)  # (B, T)
        shape = [1] * x.ndim
        shape[b] = x.shape[b]
        shape[t] = T
        if b > t:
            src_t = src_t.T
        src = src_t.reshape(shape)
        return np.take_along_axis(x, np.broadcast_to(src, x.shape), axis=t)

    return run


# ----------------------------------------------------------------------------------------------
# DepthToSpace, SpaceToDepth


@op("DepthToSpace", since=1)
def depth_to_space_1(node):
    bs = int(node.attr("blocksize"))
    mode = node.attr("mode", "DCR") if node.since_version >= 11 else "DCR"

    def run(x):
        if x.ndim != 4:
            invalid(node, f"input must be 4-D, got shape {x.shape}")
        b, c, h, w = x.shape
        if c % (bs * bs):
            invalid(node, f"channels {c} not divisible by blocksize^2 = {bs * bs}")
        c2 = c // (bs * bs)
        if mode == "DCR":
            y = x.reshape(b, bs, bs, c2, h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(b, c2, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c2, h * bs, w * bs)

    return run


@op("SpaceToDepth", since=1)
def space_to_depth_1(node):
    bs = int(node.attr("blocksize"))
    mode = node.attr("mode", "DCR")

    def run(x):
        if x.ndim != 4:
            invalid(node, f"input must be 4-D, got shape {x.shape}")
        b, c, h, w = x.shape
        if h % bs or w % bs:
            invalid(node, f"spatial dims {h}x{w} not divisible by blocksize {bs}")
        perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
        y = x.reshape(b, c, h // bs, bs, w // bs, bs).transpose(perm)
        return y.reshape(b, c * bs * bs, h // bs, w // bs)

    return run


# ----------------------------------------------------------------------------------------------
# Resize, Upsample


def _src_coords(mode, out_len, in_len, scale, roi_pair):
    """Source coordinate for each output index (float64) and the extrapolation mask (or None)."""
    x = np.arange(out_len, dtype=np.float64)
    out_w = scale * in_len
    mask = None
    if mode == "align_corners":
        src = np.zeros_like(x) if out_w == 1 else x * (in_len - 1) / (out_w - 1)
    elif mode == "asymmetric":
        src = x / scale
    elif mode == "tf_crop_and_resize":
        r0, r1 = roi_pair
        if out_w == 1:
            src = np.full_like(x, (r1 - r0) * (in_len - 1) / 2)
        else:
            src = x * (r1 - r0) * (in_len - 1) / (out_w - 1)
        src = src + r0 * (in_len - 1)
        mask = (src < 0) | (src > in_len - 1)
    elif mode == "pytorch_half_pixel":
        src = np.full_like(x, -0.5) if out_w == 1 else (x + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        src = (x + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        adjustment = out_len / out_w
        center = in_len / 2
        offset = center * (1 - adjustment)
        src = offset + (x + 0.5) / scale - 0.5
    else:
        raise errors.InvalidArgument(f"unknown coordinate_transformation_mode {mode!r}")
    return src, mask


def _nearest_index(src, nearest_mode, in_len):
    fl = np.floor(src)
    frac = src - fl
    if nearest_mode == "round_prefer_floor":
        up = frac > 0.5
    elif nearest_mode == "round_prefer_ceil":
        up = frac >= 0.5
    elif nearest_mode == "floor":
        up = np.zeros(src.shape, dtype=bool)
    elif nearest_mode == "ceil":
        up = frac > 0
    else:
        raise errors.InvalidArgument(f"unknown nearest_mode {nearest_mode!r}")
    idx = fl.astype(np.int64) + up
    return np.clip(idx, 0, in_len - 1)


def _cubic_kernel(u, a):
    u = np.abs(u)
    u2 = u * u
    u3 = u2 * u
    return np.where(
        u <= 1,
        (a + 2) * u3 - (a + 3) * u2 + 1,
        np.where(u < 2, a * u3 - 5 * a * u2 + 8 * a * u - 4 * a, 0.0),
    )


def _taps(src, in_len, scale, mode, antialias, cubic_a, exclude_outside):
    se = min(scale, 1.0) if antialias else 1.0
    fl = np.floor(src)
    ratio = src - fl
    ratio = np.where(ratio == 0, 1.0, ratio)
    base = (src - ratio).astype(np.int64)  # so that ratio is in (0, 1]
    support = 1.0 if mode == "linear" else 2.0
    start = int(math.floor(-support / se)) + 1
    n = 2 - 2 * start
    k = np.arange(start, start + n)
    idx = base[:, None] + k[None, :]
    u = (k[None, :] - ratio[:, None]) * se
    if mode == "linear":
        w = np.clip(1 - np.abs(u), 0, 1)
    else:
        w = _cubic_kernel(u, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, in_len - 1), w


def _resize(node, x, scales, sizes, roi, axes, p):
    r = x.ndim
    ax = list(range(r)) if axes is None else list(normalize_axes(axes, r, node))
    in_shape = x.shape
    roi_full = None
    if roi is not None and np.asarray(roi).size:
        rv = [float(v) for v in np.asarray(roi).reshape(-1)]
        if len(rv) == 2 * len(ax):
            roi_full = [0.0] * r + [1.0] * r
            for i, a in enumerate(ax):
                roi_full[a] = rv[i]
                roi_full[r + a] = rv[len(ax) + i]
        elif len(rv) == 2 * r:
            roi_full = rv
    if sizes is not None:
        if len(sizes) != len(ax):
            invalid(node, f"sizes {sizes} must have one entry per resized axis {ax}")
        sc = {a: sizes[i] / in_shape[a] for i, a in enumerate(ax)}
        out = {a: int(sizes[i]) for i, a in enumerate(ax)}
        policy = p["keep_aspect_ratio_policy"]
        if policy != "stretch":
            s = min(sc.values()) if policy == "not_larger" else max(sc.values())
            sc = {a: s for a in ax}
            out = {a: int(s * in_shape[a] + 0.5) for a in ax}
    elif scales is not None:
        if len(scales) != len(ax):
            invalid(node, f"scales {scales} must have one entry per resized axis {ax}")
        if any(s <= 0 for s in scales):
            invalid(node, f"scales {scales} must be positive")
        sc = {a: float(scales[i]) for i, a in enumerate(ax)}
        out = {a: int(math.floor(sc[a] * in_shape[a] + 1e-9 * 0)) for a in ax}
    else:
        invalid(node, "one of scales or sizes must be given")
    out_shape = [out.get(i, in_shape[i]) for i in range(r)]
    check_alloc(out_shape, x.dtype, node)
    dt = x.dtype
    mode = p["mode"]
    ctm = p["coordinate_transformation_mode"]
    if mode == "nearest":
        y = x
    else:
        cd = np.float64 if dt == np.float64 else np.float32
        y = x.astype(cd)
    extrap_mask = None
    for a in ax:
        s, o, n_in = sc[a], out[a], in_shape[a]
        roi_pair = (roi_full[a], roi_full[r + a]) if roi_full is not None else (0.0, 1.0)
        if math.isclose(s, 1.0) and o == n_in and ctm != "tf_crop_and_resize":
            continue
        src, mask = _src_coords(ctm, o, n_in, s, roi_pair)
        if mode == "nearest":
            y = np.take(y, _nearest_index(src, p["nearest_mode"], n_in), axis=a)
        elif mode in ("linear", "cubic"):
            idx, w = _taps(src, n_in, s, mode, p["antialias"], p["cubic_coeff_a"], p["exclude_outside"])
            wshape = [1] * r
            wshape[a] = o
            acc = None
            for j in range(idx.shape[1]):
                term = np.take(y, idx[:, j], axis=a) * w[:, j].astype(y.dtype).reshape(wshape)
                acc = term if acc is None else acc + term
            y = acc
        else:
            invalid(node, f"unknown mode {mode!r}")
        if mask is not None and mask.any():
            mshape = [1] * r
            mshape[a] = o
            m = mask.reshape(mshape)
            extrap_mask = m if extrap_mask is None else (extrap_mask | m)
    if extrap_mask is not None:
        y = np.where(extrap_mask, np.asarray(p["extrapolation_value"]).astype(y.dtype), y)
    if y.dtype != dt:
        if dt.kind in "iu":
            info = np.iinfo(dt)
            y = np.clip(np.rint(y), info.min, info.max)
        y = y.astype(dt)
    return np.ascontiguousarray(y)


def _resize_params(node):
    v = node.since_version
    p = {
        "mode": node.attr("mode", "nearest"),
        "coordinate_transformation_mode": node.attr("coordinate_transformation_mode", "half_pixel") if v >= 11 else "asymmetric",
        "nearest_mode": node.attr("nearest_mode", "round_prefer_floor") if v >= 11 else "floor",
        "cubic_coeff_a": float(node.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(node.attr("exclude_outside", 0)),
        "extrapolation_value": float(node.attr("extrapolation_value", 0.0)),
        "antialias": bool(node.attr("antialias", 0)) if v >= 18 else False,
        "keep_aspect_ratio_policy": node.attr("keep_aspect_ratio_policy", "stretch") if v >= 18 else "stretch",
    }
    if p["mode"] == "bilinear":
        p["mode"] = "linear"
    return p


@op("Resize", since=10)
def resize_10(node):
    p = _resize_params(node)
    axes = node.attr("axes", None) if node.since_version >= 18 else None

    def run(x, *rest):
        if node.since_version < 11:
            roi, scales, sizes = None, rest[0], None
        else:
            roi = rest[0] if len(rest) > 0 else None
            scales = rest[1] if len(rest) > 1 else None
            sizes = rest[2] if len(rest) > 2 else None
        sc = [float(v) for v in scales.reshape(-1)] if scales is not None and scales.size else None
        sz = ints_of(sizes) if sizes is not None and sizes.size else None
        if sc is not None and sz is not None:
            invalid(node, "only one of scales and sizes may be given")
        return _resize(node, x, sc, sz, roi, axes, p)

    return run


@op("Upsample", since=1)
def upsample_1(node):
    p = _resize_params(node)
    p["coordinate_transformation_mode"] = "asymmetric"
    p["nearest_mode"] = "floor"
    attr_scales = node.attr("scales", None)
    if node.since_version < 7:
        attr_scales = [1.0, 1.0, float(node.attr("height_scale", 1.0)), float(node.attr("width_scale", 1.0))]

    def run(x, scales=None):
        sc = attr_scales if scales is None else [float(v) for v in scales.reshape(-1)]
        return _resize(node, x, sc, None, None, None, p)

    return run


# ----------------------------------------------------------------------------------------------
# CenterCropPad, BitCast, MaxUnpool, Col2Im


@op("CenterCropPad", since=18)
def center_crop_pad_18(node):
    axes_attr = node.attr("axes", None)

    def run(x, shape):
        s = ints_of(shape)
        ax = list(range(x.ndim)) if axes_attr is None else list(normalize_axes(axes_attr, x.ndim, node))
        if len(s) != len(ax):
            invalid(node, f"shape {s} must have one entry per axis {ax}")
        out_shape = list(x.shape)
        src = [slice(None)] * x.ndim
        dst = [slice(None)] * x.ndim
        for a, t in zip(ax, s):
            d = x.shape[a]
            out_shape[a] = t
            if t < d:
                b = (d - t) // 2
                src[a] = slice(b, b + t)
            elif t > d:
                b = (t - d) // 2
                dst[a] = slice(b, b + d)
        check_alloc(out_shape, x.dtype, node)
        out = np.zeros(out_shape, dtype=x.dtype)
        out[tuple(dst)] = x[tuple(src)]
        return out

    return run


@op("BitCast", since=26)
def bitcast_26(node):
    to = int(node.attr("to"))
    dt = np_dtype(to)

    def run(x):
        if x.dtype == object or dt == object:
            invalid(node, "BitCast does not support strings", errors.InvalidType)
        if x.dtype.itemsize != dt.itemsize:
            invalid(node, f"cannot bit-cast {x.dtype} to {dt}: different bit widths", errors.InvalidType)
        return np.ascontiguousarray(x).view(dt).reshape(x.shape)

    return run


@op("MaxUnpool", since=9)
def maxunpool_9(node):
    kernel = node.attr("kernel_shape")
    strides_a = node.attr("strides", None)
    pads_a = node.attr("pads", None)

    def run(x, indices, output_shape=None):
        nsp = x.ndim - 2
        strides = strides_a or [1] * nsp
        pads = pads_a or [0] * (2 * nsp)
        inferred = list(x.shape[:2]) + [
            (x.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[nsp + i] for i in range(nsp)
        ]
        oshape = ints_of(output_shape) if output_shape is not None else inferred
        if len(oshape) != x.ndim or any(o < i for o, i in zip(oshape, inferred)):
            invalid(node, f"output_shape {oshape} is smaller than the inferred shape {inferred}")
        check_alloc(oshape, x.dtype, node)
        if indices.shape != x.shape:
            invalid(node, f"indices shape {indices.shape} differs from X shape {x.shape}")
        flat = np.zeros(math.prod(inferred), dtype=x.dtype)
        idx = check_indices(indices.reshape(-1), flat.size, node, 0)
        flat[idx] = x.reshape(-1)
        y = flat.reshape(inferred)
        if list(oshape) == inferred:
            return y
        out = np.zeros(oshape, dtype=x.dtype)
        out[tuple(slice(0, i) for i in inferred)] = y
        return out

    return run


@op("Col2Im", since=18)
def col2im_18(node):
    def run(x, image_shape, block_shape):
        img = ints_of(image_shape)
        blk = ints_of(block_shape)
        n = len(img)
        strides = node.attr("strides", None) or [1] * n
        dil = node.attr("dilations", None) or [1] * n
        pads = node.attr("pads", None) or [0] * (2 * n)
        N, CK, L = x.shape
        K = math.prod(blk)
        if CK % K:
            invalid(node, f"input dimension 1 ({CK}) is not a multiple of the block size {K}")
        C = CK // K
        padded = [img[i] + pads[i] + pads[n + i] for i in range(n)]
        outs = [(padded[i] - dil[i] * (blk[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
        if math.prod(outs) != L:
            invalid(node, f"input has {L} blocks, expected {math.prod(outs)} for image {img} and block {blk}")
        buf = np.zeros([N, C] + padded, dtype=x.dtype)
        cols = x.reshape([N, C, K] + outs)
        for ki, kidx in enumerate(np.ndindex(*blk)):
            sl = tuple(slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(kidx, dil, outs, strides))
            buf[(slice(None), slice(None)) + sl] += cols[:, :, ki]
        return np.ascontiguousarray(buf[(slice(None), slice(None)) + tuple(slice(pads[i], pads[i] + img[i]) for i in range(n))])

    return run


# ----------------------------------------------------------------------------------------------
# strings


def _str_array(vals, shape):
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out.reshape(shape)


@op("StringConcat", since=20)
def string_concat_20(node):
    def run(x, y):
        try:
            b = np.broadcast(x, y)
        except ValueError:
            invalid(node, f"shapes {x.shape} and {y.shape} do not broadcast")
        return _str_array([str(a) + str(c) for a, c in b], b.shape)

    return run


@op("RegexFullMatch", since=20)
def regex_full_match_20(node):
    import re

    pattern = node.attr("pattern", "")
    try:
        rx = re.compile(pattern)
    except re.error as e:
        node.fail(f"invalid pattern {pattern!r}: {e}")

    def run(x):
        return np.array([rx.fullmatch(str(s)) is not None for s in x.reshape(-1)], dtype=np.bool_).reshape(x.shape)

    return run


@op("StringSplit", since=20)
def string_split_20(node):
    delim = node.attr("delimiter", None) or None
    maxsplit = node.attr("maxsplit", None)
    ms = -1 if maxsplit is None else int(maxsplit)

    def run(x):
        parts = [str(s).split(delim, ms) for s in x.reshape(-1)]
        if delim is None:
            parts = [p for p in parts]
        width = max((len(p) for p in parts), default=0)
        counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
        vals = []
        for p in parts:
            vals.extend(p + [""] * (width - len(p)))
        return _str_array(vals, x.shape + (width,)), counts

    return run


@op("StringNormalizer", since=10)
def string_normalizer_10(node):
    action = node.attr("case_change_action", "NONE")
    sensitive = bool(node.attr("is_case_sensitive", 0))
    stop = node.attr("stopwords", None) or []
    stop_set = set(stop) if sensitive else {s.lower() for s in stop}

    def run(x):
        if x.ndim == 2 and x.shape[0] != 1 or x.ndim > 2:
            invalid(node, f"input must have shape [C] or [1, C], got {x.shape}")
        vals = [str(s) for s in x.reshape(-1)]
        if stop_set:
            vals = [v for v in vals if (v if sensitive else v.lower()) not in stop_set]
        if action == "LOWER":
            vals = [v.lower() for v in vals]
        elif action == "UPPER":
            vals = [v.upper() for v in vals]
        if not vals:
            vals = [""]
        shape = (len(vals),) if x.ndim == 1 else (1, len(vals))
        return _str_array(vals, shape)

    return run


# ----------------------------------------------------------------------------------------------
# random generators


def _rng(node):
    seed = node.attr("seed", None)
    if seed is None:
        return np.random.default_rng(_common.GLOBAL_SEED[0])
    return np.random.default_rng(np.frombuffer(np.float32(seed).tobytes(), dtype=np.uint32)[0])


def _random_factory(kind, like):
    def factory(node):
        rng = _rng(node)
        dcode = node.attr("dtype", None)
        shape_attr = node.attr("shape", None)
        if kind == "uniform":
            lo, hi = float(node.attr("low", 0.0)), float(node.attr("high", 1.0))
        else:
            mean, scale = float(node.attr("mean", 0.0)), float(node.attr("scale", 1.0))

        def run(x=None):
            if like:
                shape = x.shape
                dt = np_dtype(dcode) if dcode is not None else x.dtype
            else:
                shape = tuple(shape_attr)
                dt = np_dtype(dcode if dcode is not None else TensorProto.FLOAT)
            check_alloc(shape, dt, node)
            if kind == "uniform":
                v = rng.uniform(lo, hi, size=shape)
            else:
                v = rng.normal(mean, scale, size=shape)
            return np.asarray(v).astype(dt)

        return run

    return factory


REGISTRY.register("RandomUniform", _random_factory("uniform", False), since=1)
REGISTRY.register("RandomNormal", _random_factory("normal", False), since=1)
REGISTRY.register("RandomUniformLike", _random_factory("uniform", True), since=1)
REGISTRY.register("RandomNormalLike", _random_factory("normal", True), since=1)


@op("Bernoulli", since=15)
def bernoulli_15(node):
    rng = _rng(node)
    dcode = node.attr("dtype", None)

    def run(x):
        dt = np_dtype(dcode) if dcode is not None else x.dtype
        return (rng.uniform(size=x.shape) < x.astype(np.float64)).astype(dt)

    return run


@op("Multinomial", since=7)
def multinomial_7(node):
    rng = _rng(node)
    n = int(node.attr("sample_size", 1))
    dt = np_dtype(int(node.attr("dtype", TensorProto.INT32)))

    def run(x):
        if x.ndim != 2:
            invalid(node, f"input must be 2-D [batch, classes], got {x.shape}")
        logits = x.astype(np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        u = rng.uniform(size=(x.shape[0], n))
        out = np.stack([np.searchsorted(cdf[b], u[b], side="right") for b in range(x.shape[0])])
        return np.minimum(out, x.shape[1] - 1).astype(dt)

    return run
