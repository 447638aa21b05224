"""Neural-network operators: convolution, pooling, normalization, softmax family, dropout, LRN."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..registry import REGISTRY, op
from ._common import check_alloc, invalid, normalize_axes, normalize_axis
from . import _common


def _lowp(dt) -> bool:
    return dt == np.float16 or dt.kind == "V" or str(dt) == "bfloat16" or (dt.kind == "f" and dt.itemsize < 2)


def _compute_dtype(dt):
    return np.dtype(np.float32) if _lowp(dt) else dt


# ----------------------------------------------------------------------------------------------
# The convolution family's attributes and geometry: Conv, ConvInteger, QLinearConv, ConvTranspose,
# MaxPool, AveragePool, LpPool. The native twin is csrc/kernels/conv_geometry.h (same rules, same
# messages); keep them in step.

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_INT64_MAX = 2**63 - 1


def _i64(node, v, what):
    """v, or InvalidArgument where it leaves int64 (the native kernels compute extents in checked int64)."""
    if not -_INT64_MAX - 1 <= v <= _INT64_MAX:
        invalid(node, f"{what} overflows int64 ({v})")
    return v


class _ConvAttrs:
    """A convolution-family node's attributes, checked at session creation (InvalidModel naming the node,
    the attribute and the allowed range): auto_pad one of NOTSET / SAME_UPPER / SAME_LOWER / VALID;
    group >= 1; kernel_shape, strides, dilations >= 1; pads, output_padding, output_shape >= 0; the lists'
    lengths consistent (pads twice the others); pools: kernel_shape present and explicit pads smaller than
    it (onnxruntime's rule); ConvTranspose: output_padding < max(stride, dilation) (onnxruntime's rule).
    forward() / transpose() compute a call's geometry from the shapes (InvalidArgument naming the node)."""

    def __init__(self, node, family: str):  # family: "conv", "transpose" or "pool"
        self.node = node
        ap = node.attr("auto_pad", "NOTSET") or "NOTSET"
        if isinstance(ap, bytes):
            ap = ap.decode("utf-8", "replace")
        if ap not in _AUTO_PADS:
            node.fail(f"attribute auto_pad '{ap}' must be one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        self.auto_pad = ap
        self.same = ap in ("SAME_UPPER", "SAME_LOWER")
        self.group = 1
        if family != "pool":
            self.group = int(node.attr("group", 1))
            if self.group < 1:
                node.fail(f"attribute group must be >= 1, got {self.group}")
        self.ceil_mode = family == "pool" and bool(node.attr("ceil_mode", 0))

        def ints(name, minimum):
            v = node.attr(name, None)
            if v is None:
                return None
            if isinstance(v, (int, float, str, bytes, np.ndarray)) or not all(
                    isinstance(e, (int, np.integer)) for e in v):
                node.fail(f"attribute {name} must be a list of integers")
            v = [int(e) for e in v]
            bad = [e for e in v if e < minimum]
            if bad:
                node.fail(f"attribute {name} {v} must contain values >= {minimum} (got {bad[0]})")
            return v or None

        self.kernel_shape = ints("kernel_shape", 1)
        self.strides = ints("strides", 1)
        self.dilations = ints("dilations", 1)
        self.pads = ints("pads", 0)
        self.output_padding = ints("output_padding", 0) if family == "transpose" else None
        self.output_shape = ints("output_shape", 0) if family == "transpose" else None
        if self.pads and len(self.pads) % 2:
            node.fail(f"attribute pads {self.pads} must have an even number of values (begins, then ends)")
        if family == "pool" and not self.kernel_shape:
            node.fail("attribute kernel_shape is missing or empty (required)")
        # the spatial rank: the first list that gives it; every other list must agree
        self.nsp, self.nsp_attr, first = None, "", None
        for name, v, per in (("kernel_shape", self.kernel_shape, 1), ("strides", self.strides, 1),
                             ("dilations", self.dilations, 1), ("pads", self.pads, 2),
                             ("output_padding", self.output_padding, 1)):
            if not v:
                continue
            if first is None:
                first, self.nsp, self.nsp_attr = name, len(v) // per, f"{name} {v}"
            elif len(v) // per != self.nsp:
                node.fail(f"attribute {name} {v} must have {self.nsp * per} values ({first} gives {self.nsp} "
                          "spatial dimensions)")
        if family == "pool" and self.auto_pad == "NOTSET" and self.pads:
            for i, p in enumerate(self.pads):
                if p >= self.kernel_shape[i % self.nsp]:
                    node.fail(f"attribute pads {self.pads} must be smaller than kernel_shape {self.kernel_shape} "
                              f"(pads[{i}] = {p}; a window must hold an input element)")
        if family == "transpose" and self.output_padding:
            for i, o in enumerate(self.output_padding):
                m = max(self.strides[i] if self.strides else 1, self.dilations[i] if self.dilations else 1)
                if o >= m:
                    node.fail(f"attribute output_padding {self.output_padding} must be smaller than max(stride, "
                              f"dilation) = {m} along spatial axis {i}")

    def _check(self, in_spatial, kernel):
        node = self.node
        if self.nsp is not None and self.nsp != len(in_spatial):
            invalid(node, f"attribute {self.nsp_attr} is for {self.nsp} spatial dimensions, the input has "
                          f"{len(in_spatial)}")
        if self.kernel_shape and list(self.kernel_shape) != list(kernel):
            invalid(node, f"attribute kernel_shape {self.kernel_shape} differs from the weight's kernel {list(kernel)}")
        if any(k < 1 for k in kernel):
            invalid(node, f"the kernel {list(kernel)} has an empty dimension")
        n = len(in_spatial)
        return [int(i) for i in in_spatial], [int(k) for k in kernel], self.strides or [1] * n, self.dilations or [1] * n

    def forward(self, in_spatial, kernel):
        """Conv and the pools: (strides, dilations, pads_begin, pads_end, out_spatial)."""
        node = self.node
        ins, kernel, strides, dil = self._check(in_spatial, kernel)
        n = len(ins)
        pb, pe, out = [0] * n, [0] * n, [0] * n
        for i in range(n):
            s = strides[i]
            eff = _i64(node, (kernel[i] - 1) * dil[i] + 1, "the dilated kernel extent")
            if self.same:
                out[i] = -(-ins[i] // s)
                total = max(_i64(node, (out[i] - 1) * s + eff, "the SAME padding") - ins[i], 0)
                small, big = total // 2, total - total // 2
                pb[i], pe[i] = (small, big) if self.auto_pad == "SAME_UPPER" else (big, small)
                continue
            if self.auto_pad == "NOTSET" and self.pads:
                pb[i], pe[i] = self.pads[i], self.pads[i + n]
            span = _i64(node, ins[i] + pb[i] + pe[i], "the padded input extent") - eff
            o = 0
            if span >= 0:
                o = span // s + 1
                if self.ceil_mode:
                    o = -(-span // s) + 1
                    if (o - 1) * s >= ins[i] + pb[i]:  # the last window starts inside the input or its begin padding
                        o -= 1
            if span < 0 or o <= 0:
                invalid(node, f"kernel {kernel} (dilations {dil}) is larger than the padded input {ins} "
                              f"(pads {pb} + {pe})")
            out[i] = o
        return strides, dil, pb, pe, out

    def transpose(self, in_spatial, kernel):
        """ConvTranspose: (strides, dilations, pads_begin, out_spatial). The full output
        s * (in - 1) + (k - 1) * d + 1 + output_padding is cropped by pads, or output_shape / SAME choose a
        window of it (positions past its end get no contribution)."""
        node = self.node
        ins, kernel, strides, dil = self._check(in_spatial, kernel)
        n = len(ins)
        opad = self.output_padding or [0] * n
        if self.output_shape and len(self.output_shape) < n:
            invalid(node, f"attribute output_shape {self.output_shape} must have at least {n} values")
        explicit = not self.output_shape and not self.same and self.pads and self.auto_pad != "VALID"
        pb, out = [0] * n, [0] * n
        for i in range(n):
            eff = _i64(node, (kernel[i] - 1) * dil[i] + 1, "the full output extent")
            full = _i64(node, strides[i] * (ins[i] - 1) + eff + opad[i], "the full output extent")
            if self.output_shape or self.same:
                o = self.output_shape[len(self.output_shape) - n + i] if self.output_shape else \
                    _i64(node, ins[i] * strides[i], "the SAME output extent")
                # past the full extent, as far as the next input position would reach (onnxruntime's
                # bound: it refuses what floor((o - eff) / s) + 1 != in)
                limit = _i64(node, full - opad[i] + strides[i] - 1, "the output_shape bound")
                if self.output_shape and o > limit:
                    invalid(node, f"output_shape {o} along spatial axis {i} is larger than {limit}, the most an "
                                  f"input extent of {ins[i]} reaches (kernel {kernel[i]}, stride {strides[i]}, "
                                  f"dilation {dil[i]})")
                total = max(0, full - o)
                pb[i] = total // 2 if self.auto_pad == "SAME_UPPER" else total - total // 2
            elif explicit:
                pb[i] = self.pads[i]
                o = full - self.pads[i] - self.pads[i + n]
            else:
                o = full
            if o < 0:
                invalid(node, f"output size {o} along spatial axis {i} is negative (input extent {ins}, kernel "
                              f"{kernel})")
            _i64(node, o + pb[i], "the output extent plus its padding")
            out[i] = o
        return strides, dil, pb, out


def _axis_coords(o, taps, s, d, pb):
    """Input coordinates (o x len(taps)) that each output reads through each tap along one axis: all in
    [-pb, in + pads_end), so int64 (forward() checked the padded extent)."""
    return np.arange(o, dtype=np.int64)[:, None] * s - pb + np.asarray(taps, dtype=np.int64)[None, :] * d


def _first_tap(start, bound, K, d):
    """Per output (window start `start`), the first tap k with start + k * d >= bound (K if none)."""
    need = bound - start
    return np.where(need <= 0, 0, np.minimum(K, -(-np.maximum(need, 0) // d)))


def _useful_taps(n, o, K, s, d, pb):
    """The taps along one axis that read an input element for some output: all of them for a small kernel;
    for a huge kernel_shape (2^40 with a huge stride) only those, so no loop runs over the padding."""
    if K <= 64:
        return np.arange(K, dtype=np.int64)
    start = np.arange(o, dtype=np.int64) * s - pb
    lo = _first_tap(start, 0, K, d)
    hi = np.maximum(lo, _first_tap(start, n, K, d))
    ranges = [np.arange(a, b, dtype=np.int64) for a, b in zip(lo.tolist(), hi.tolist()) if b > a]
    return np.unique(np.concatenate(ranges)) if ranges else np.zeros(0, np.int64)


def _pad_spatial(x, pb, pe, value):
    if not any(pb) and not any(pe):
        return x
    n = len(pb)
    shape = list(x.shape[:2]) + [x.shape[2 + i] + pb[i] + pe[i] for i in range(n)]
    out = np.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(pb[i], pb[i] + x.shape[2 + i]) for i in range(n))] = x
    return out


def _taps(x, fill, pb, out, taps, strides, dilations):
    """For each combination of the given taps (row-major): (positions of the taps in `taps`, values
    (N, C, *out)): the element each output reads through those taps, `fill` where it lies in the padding.
    Strided slices of a padded copy when that copy is small; otherwise per-axis gathers, so a stride or pad of
    2^32 costs memory like the output, not like the padded input."""
    n_in = x.shape[2:]
    nsp = len(out)
    coords = [_axis_coords(out[i], taps[i], strides[i], dilations[i], pb[i]) for i in range(nsp)]
    if any(c.size == 0 for c in coords):
        return
    lo = [min(0, int(c.min())) for c in coords]
    hi = [max(n_in[i], int(coords[i].max()) + 1) for i in range(nsp)]
    if math.prod(h - a for h, a in zip(hi, lo)) <= 2 * math.prod(n_in) + 4096:
        xp = _pad_spatial(x, [-a for a in lo], [h - n for h, n in zip(hi, n_in)], fill)
        for pos in itertools.product(*[range(len(t)) for t in taps]):
            sl = tuple(slice(int(c[0, j]) - a, int(c[0, j]) - a + (o - 1) * s + 1, s)
                       for c, j, a, o, s in zip(coords, pos, lo, out, strides))
            yield pos, xp[(slice(None), slice(None)) + sl]
        return
    xe = _pad_spatial(x, [0] * nsp, [1] * nsp, fill)  # one fill slot at the end of every axis
    idx = [np.where((c >= 0) & (c < n), c, n) for c, n in zip(coords, n_in)]
    for pos in itertools.product(*[range(len(t)) for t in taps]):
        yield pos, xe[(slice(None), slice(None)) + np.ix_(*[ix[:, j] for ix, j in zip(idx, pos)])]


# ----------------------------------------------------------------------------------------------
# Conv


def conv_nd(node, x, w, b, attrs: _ConvAttrs):
    if x.ndim < 3:
        invalid(node, f"X must have rank >= 3, got shape {x.shape}")
    nsp = x.ndim - 2
    if w.ndim != x.ndim:
        invalid(node, f"W shape {w.shape} does not match X shape {x.shape}")
    group = attrs.group
    N, C = x.shape[:2]
    M = w.shape[0]
    if C % group or M % group or w.shape[1] * group != C:
        invalid(node, f"channels of X {x.shape} and W {w.shape} do not match group={group}")
    kernel = list(w.shape[2:])
    strides, dilations, pb, _, out = attrs.forward(x.shape[2:], kernel)
    rt = np.result_type(x.dtype, w.dtype)
    check_alloc((N, M) + tuple(out), rt, node)
    P = math.prod(out)
    Kp = math.prod(kernel)
    Cg = C // group
    Mg = M // group
    taps = _taps(x, 0, pb, out, [range(k) for k in kernel], strides, dilations)
    if group == 1 or Cg != 1:
        check_alloc((N, C, P, Kp), x.dtype, node)  # the im2col matrix
    if group == 1:
        # (N, *O, C, Kp) -> (N*P, C*Kp), filled one tap at a time
        cols = np.empty((N,) + tuple(out) + (C, Kp), dtype=x.dtype)
        for ki, (_, v) in enumerate(taps):
            cols[..., ki] = np.moveaxis(v, 1, -1)
        cols = cols.reshape(N * P, C * Kp)
        y = cols @ w.reshape(M, C * Kp).T  # N*P, M
        y = y.reshape((N,) + tuple(out) + (M,))
        y = np.moveaxis(y, -1, 1)
    elif Cg == 1:
        # depthwise-like: accumulate one kernel offset at a time (cheap, no im2col copy)
        wg = w.reshape(group, Mg, Kp)
        y = np.zeros((N, group, Mg) + tuple(out), dtype=rt)
        for ki, (_, v) in enumerate(taps):
            y += v.reshape((N, group, 1) + tuple(out)) * wg[:, :, ki].reshape((1, group, Mg) + (1,) * nsp)
        y = y.reshape((N, M) + tuple(out))
    else:
        win = np.empty((N, C) + tuple(out) + (Kp,), dtype=x.dtype)
        for ki, (_, v) in enumerate(taps):
            win[..., ki] = v
        win2 = win.reshape(N, group, Cg, P, Kp)
        wg = w.reshape(group, Mg, Cg, Kp)
        y = np.einsum("ngcpk,gmck->ngmp", win2, wg, optimize=True)
        y = y.reshape((N, M) + tuple(out))
    if b is not None:
        y = y + b.reshape((1, M) + (1,) * nsp)
    return np.ascontiguousarray(y)


@op("Conv", since=1)
def conv_1(node):
    attrs = _ConvAttrs(node, "conv")

    def run(x, w, b=None):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx, ww = x.astype(cd, copy=False), w.astype(cd, copy=False)
        bb = b.astype(cd, copy=False) if b is not None else None
        y = conv_nd(node, xx, ww, bb, attrs)
        return y.astype(dt, copy=False)

    return run


@op("ConvInteger", since=10)
def conv_integer_10(node):
    attrs = _ConvAttrs(node, "conv")

    def run(x, w, x_zp=None, w_zp=None):
        xx = x.astype(np.int32)
        ww = w.astype(np.int32)
        if x_zp is not None:
            xx = xx - x_zp.astype(np.int32).reshape(-1)[0]
        if w_zp is not None:
            z = w_zp.astype(np.int32)
            ww = ww - (z.reshape((-1,) + (1,) * (w.ndim - 1)) if z.size > 1 else z.reshape(()))
        # padding must use the zero point, i.e. 0 after subtraction
        y = conv_nd(node, xx.astype(np.int64), ww.astype(np.int64), None, attrs)
        return y.astype(np.int32)

    return run


@op("ConvTranspose", since=1)
def conv_transpose_1(node):
    attrs = _ConvAttrs(node, "transpose")
    group = attrs.group

    def run(x, w, b=None):
        dt = x.dtype
        cd = _compute_dtype(dt)
        x = x.astype(cd, copy=False)
        w = w.astype(cd, copy=False)
        if x.ndim < 3 or w.ndim != x.ndim:
            invalid(node, f"W shape {w.shape} does not match X shape {x.shape}")
        nsp = x.ndim - 2
        N, C = x.shape[:2]
        if w.shape[0] != C or C % group:
            invalid(node, f"W shape {w.shape} does not match X shape {x.shape} with group={group}")
        Mg = w.shape[1]
        M = Mg * group
        Cg = C // group
        kernel = list(w.shape[2:])
        strides, dilations, pb, oshape = attrs.transpose(x.shape[2:], kernel)
        check_alloc((N, M) + tuple(oshape), cd, node)
        ins = x.shape[2:]
        out = np.zeros((N, M) + tuple(oshape), dtype=cd)
        Kp = math.prod(kernel)
        P = math.prod(ins)
        xg = x.reshape(N, group, Cg, P)
        wt = w.reshape(group, Cg, Mg * Kp).transpose(0, 2, 1)  # g, Mg*Kp, Cg
        cols = np.matmul(wt, xg).reshape((N, group, Mg, Kp) + tuple(ins))
        cols = cols.reshape((N, M, Kp) + tuple(ins))
        for ki, kidx in enumerate(itertools.product(*[range(k) for k in kernel])):
            # input index i lands at i * s + k * d - pb: the inputs landing inside the output, a range
            src, dst = [], []
            for k, d, i, s, p, o in zip(kidx, dilations, ins, strides, pb, oshape):
                off = k * d - p
                lo = 0 if off >= 0 else -(-(-off) // s)
                hi = min(i, (o - 1 - off) // s + 1) if o - 1 - off >= 0 else 0
                if hi <= lo:
                    break
                src.append(slice(lo, hi))
                dst.append(slice(lo * s + off, (hi - 1) * s + off + 1, s))
            else:
                out[(slice(None), slice(None)) + tuple(dst)] += cols[(slice(None), slice(None), ki) + tuple(src)]
        y = out
        if b is not None:
            y = y + b.astype(cd).reshape((1, M) + (1,) * nsp)
        return np.ascontiguousarray(y).astype(dt, copy=False)

    return run


# ----------------------------------------------------------------------------------------------
# pooling


def _pool_geometry(node, attrs, x):
    """(strides, dilations, pads_begin, pads_end, out_spatial, taps per axis) of a pool over x."""
    if x.ndim != len(attrs.kernel_shape) + 2:
        invalid(node, f"kernel_shape {attrs.kernel_shape} does not match input of shape {x.shape}")
    strides, dilations, pb, pe, out = attrs.forward(x.shape[2:], attrs.kernel_shape)
    check_alloc(x.shape[:2] + tuple(out), x.dtype, node)
    taps = [_useful_taps(n, o, k, s, d, p) for n, o, k, s, d, p in
            zip(x.shape[2:], out, attrs.kernel_shape, strides, dilations, pb)]
    return strides, dilations, pb, pe, out, taps


def _axis_counts(n, o, K, s, d, pb, pe, include_pad):
    """Per output along one axis: the taps inside the input (or inside input + pads: count_include_pad)."""
    start = np.arange(o, dtype=np.int64) * s - pb
    if include_pad:
        return _first_tap(start, n + pe, K, d) - _first_tap(start, -pb, K, d)
    lo = _first_tap(start, 0, K, d)
    return np.maximum(lo, _first_tap(start, n, K, d)) - lo


def _min_value(dt):
    if dt.kind == "f" or _lowp(dt):
        return -np.inf
    return np.iinfo(dt).min


@op("MaxPool", since=1)
def maxpool_1(node):
    attrs = _ConvAttrs(node, "pool")
    storage_order = int(node.attr("storage_order", 0))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, out, taps = _pool_geometry(node, attrs, xx)
        nsp = len(out)
        N, C = x.shape[:2]
        fill = _min_value(cd)
        acc = np.full((N, C) + tuple(out), fill, dtype=cd)
        with_indices = node.num_outputs >= 2
        if with_indices:
            in_sp = x.shape[2:]
            # flat index multiplier per spatial axis: row-major, or column-major (storage_order 1)
            mul = [math.prod(in_sp[i + 1:]) if storage_order == 0 else math.prod(in_sp[:i]) for i in range(nsp)]
            coords = [_axis_coords(out[i], taps[i], strides[i], dilations[i], pb[i]) for i in range(nsp)]

            def flat(cols):  # the flat index (in one image and channel) of per-axis coordinates
                lin = np.zeros(tuple(out), np.int64)
                for i, c in enumerate(cols):
                    lin = lin + c.reshape((1,) * i + (-1,) + (1,) * (nsp - i - 1)) * mul[i]
                return lin

            base = (np.arange(N).reshape(N, 1) * C + np.arange(C).reshape(1, C)) * math.prod(in_sp)
            base = base.reshape((N, C) + (1,) * nsp)
            # a window with no larger value (all padding, or all -inf) reports its first tap, as the native kernel
            ind = base + flat([np.arange(o, dtype=np.int64) * s - p for o, s, p in zip(out, strides, pb)])
        floating = cd.kind == "f"
        for pos, v in _taps(xx, fill, pb, out, taps, strides, dilations):
            if not with_indices:
                np.maximum(acc, v, out=acc)  # NaN propagates
                continue
            take = v > acc
            if floating:
                take |= np.isnan(v) & ~np.isnan(acc)  # the first NaN wins
            np.copyto(acc, v, where=take)
            np.copyto(ind, base + flat([c[:, j] for c, j in zip(coords, pos)]), where=take)
        y = acc.astype(dt, copy=False)
        return (y, ind) if with_indices else y

    return run


@op("AveragePool", since=1)
def avgpool_1(node):
    attrs = _ConvAttrs(node, "pool")
    include_pad = bool(node.attr("count_include_pad", 0))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, out, taps = _pool_geometry(node, attrs, xx)
        nsp = len(out)
        acc = np.zeros(x.shape[:2] + tuple(out), dtype=cd)
        for _, v in _taps(xx, 0, pb, out, taps, strides, dilations):
            acc += v
        # divisor: the taps inside the input (and its pads: count_include_pad) of every window
        cnt = np.ones((1, 1) + (1,) * nsp, dtype=cd)
        for i, (n, o, k, s, d, a, b) in enumerate(zip(x.shape[2:], out, attrs.kernel_shape, strides, dilations, pb, pe)):
            c = _axis_counts(n, o, k, s, d, a, b, include_pad).astype(cd)
            cnt = cnt * c.reshape((1, 1) + (1,) * i + (-1,) + (1,) * (nsp - i - 1))
        y = acc / cnt
        return y.astype(dt, copy=False)

    return run


def _lp_p(node):
    """LpPool / GlobalLpPool's p: 0 is refused at session creation (|x|^0 = 1 has no 0th root: onnxruntime
    returns inf, 1 / p divided by zero here before); a negative p is computed, as onnxruntime does."""
    p = float(node.attr("p", 2))
    if p == 0 or p != p:
        node.fail(f"attribute p must not be {node.attr('p', 2)} (|x|^0 has no 0th root; use p >= 1)")
    return p


@op("LpPool", since=1)
def lppool_1(node):
    attrs = _ConvAttrs(node, "pool")
    p = _lp_p(node)

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, out, taps = _pool_geometry(node, attrs, xx)
        acc = np.zeros(x.shape[:2] + tuple(out), dtype=cd)
        for _, v in _taps(np.abs(xx) ** p, 0, pb, out, taps, strides, dilations):
            acc += v
        return (acc ** (1.0 / p)).astype(dt, copy=False)

    return run


def _global(fn):
    def factory(node):
        p = _lp_p(node) if node.op_type == "GlobalLpPool" else 2.0

        def run(x):
            dt = x.dtype
            axes = tuple(range(2, x.ndim))
            xx = x.astype(_compute_dtype(dt), copy=False)
            return np.asarray(fn(xx, axes, p)).astype(dt, copy=False)

        return run

    return factory


REGISTRY.register("GlobalAveragePool", _global(lambda x, a, p: x.mean(axis=a, keepdims=True)), since=1)
REGISTRY.register("GlobalMaxPool", _global(lambda x, a, p: x.max(axis=a, keepdims=True)), since=1)
REGISTRY.register(
    "GlobalLpPool",
    _global(lambda x, a, p: (np.abs(x) ** p).sum(axis=a, keepdims=True) ** (1.0 / p)),
    since=1,
)


# ----------------------------------------------------------------------------------------------
# normalization


def _chan_shape(x, n=1):
    return (1, -1) + (1,) * (x.ndim - 2)


@op("BatchNormalization", since=1)
def batchnorm_1(node):
    eps = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    training = bool(node.attr("training_mode", 0)) if node.since_version >= 14 else False
    # opset < 9, spatial = 0: statistics per activation, shaped like one sample (C x D1 x ...)
    per_activation = node.since_version < 9 and int(node.attr("spatial", 1)) == 0

    def run(x, scale, bias, mean, var):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        cs = (1,) + x.shape[1:] if per_activation else (1, -1) + (1,) * (x.ndim - 2)
        sc = scale.astype(cd, copy=False).reshape(cs)
        bi = bias.astype(cd, copy=False).reshape(cs)
        if training and node.num_outputs > 1 or training:
            axes = (0,) + tuple(range(2, x.ndim))
            bm = xx.mean(axis=axes)
            bv = xx.var(axis=axes)
            y = (xx - bm.reshape(cs)) / np.sqrt(bv.reshape(cs) + eps) * sc + bi
            rm = (mean.astype(cd) * momentum + bm * (1 - momentum)).astype(mean.dtype)
            rv = (var.astype(cd) * momentum + bv * (1 - momentum)).astype(var.dtype)
            outs = (y.astype(dt, copy=False), rm, rv)
            return outs[: max(node.num_outputs, 1)] if node.num_outputs > 1 else outs[0]
        m = mean.astype(cd, copy=False).reshape(cs)
        v = var.astype(cd, copy=False).reshape(cs)
        a = sc / np.sqrt(v + eps)
        y = xx * a + (bi - m * a)
        y = y.astype(dt, copy=False)
        if node.num_outputs > 1:
            # legacy (opset < 9 training outputs): pass statistics through
            extra = (mean, var, mean, var)[: node.num_outputs - 1]
            return (y,) + tuple(extra)
        return y

    return run


def _stash(node, dt):
    st = int(node.attr("stash_type", 1))
    if st == 1:
        return np.dtype(np.float32) if dt != np.float64 else dt
    return _compute_dtype(dt)


@op("LayerNormalization", since=17)
def layernorm_17(node):
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))

    def run(x, scale, bias=None):
        dt = x.dtype
        sd = _stash(node, dt)
        a = normalize_axis(axis, x.ndim, node)
        axes = tuple(range(a, x.ndim))
        xx = x.astype(sd, copy=False)
        mean = xx.mean(axis=axes, keepdims=True)
        d = xx - mean
        var = (d * d).mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + eps)
        y = d * inv
        y = y.astype(dt, copy=False) * scale
        if bias is not None:
            y = y + bias
        y = y.astype(dt, copy=False)
        if node.num_outputs == 1:
            return y
        return (y, mean.astype(sd, copy=False), inv.astype(sd, copy=False))[: node.num_outputs]

    return run


@op("RMSNormalization", since=23)
def rmsnorm_23(node):
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))

    def run(x, scale):
        dt = x.dtype
        sd = _stash(node, dt)
        a = normalize_axis(axis, x.ndim, node)
        axes = tuple(range(a, x.ndim))
        xx = x.astype(sd, copy=False)
        ms = (xx * xx).mean(axis=axes, keepdims=True)
        y = xx / np.sqrt(ms + eps)
        y = y.astype(dt, copy=False) * scale
        return y.astype(dt, copy=False)

    return run


@op("InstanceNormalization", since=1)
def instancenorm_1(node):
    eps = float(node.attr("epsilon", 1e-5))

    def run(x, scale, bias):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        axes = tuple(range(2, x.ndim))
        mean = xx.mean(axis=axes, keepdims=True)
        var = xx.var(axis=axes, keepdims=True)
        cs = (1, -1) + (1,) * (x.ndim - 2)
        y = (xx - mean) / np.sqrt(var + eps) * scale.astype(cd).reshape(cs) + bias.astype(cd).reshape(cs)
        return y.astype(dt, copy=False)

    return run


@op("GroupNormalization", since=18)
def groupnorm_18(node):
    eps = float(node.attr("epsilon", 1e-5))
    G = int(node.attr("num_groups"))
    per_channel = node.since_version >= 21

    def run(x, scale, bias):
        dt = x.dtype
        sd = _stash(node, dt) if node.since_version >= 21 else _compute_dtype(dt)
        N, C = x.shape[:2]
        if C % G:
            invalid(node, f"channels {C} not divisible by num_groups {G}")
        xx = x.astype(sd, copy=False).reshape((N, G, -1))
        mean = xx.mean(axis=2, keepdims=True)
        var = xx.var(axis=2, keepdims=True)
        y = ((xx - mean) / np.sqrt(var + eps)).reshape(x.shape)
        cs = (1, -1) + (1,) * (x.ndim - 2)
        if per_channel:
            sc = scale.astype(sd).reshape(cs)
            bi = bias.astype(sd).reshape(cs)
        else:
            rep = C // G
            sc = np.repeat(scale.astype(sd), rep).reshape(cs)
            bi = np.repeat(bias.astype(sd), rep).reshape(cs)
        return (y * sc + bi).astype(dt, copy=False)

    return run


@op("MeanVarianceNormalization", since=9)
def mvn_9(node):
    axes = node.attr("axes", [0, 2, 3])

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        ax = normalize_axes(axes, x.ndim, node)
        xx = x.astype(cd, copy=False)
        mean = xx.mean(axis=ax, keepdims=True)
        var = ((xx - mean) ** 2).mean(axis=ax, keepdims=True)
        y = (xx - mean) / (np.sqrt(var) + 1e-9)
        return y.astype(dt, copy=False)

    return run


@op("LpNormalization", since=1)
def lpnorm_1(node):
    axis = int(node.attr("axis", -1))
    p = int(node.attr("p", 2))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        a = normalize_axis(axis, x.ndim, node)
        xx = x.astype(cd, copy=False)
        if p == 1:
            n = np.abs(xx).sum(axis=a, keepdims=True)
        elif p == 2:
            n = np.sqrt((xx * xx).sum(axis=a, keepdims=True))
        else:
            invalid(node, f"p must be 1 or 2, got {p}")
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(n == 0, 0, xx / n)
        return y.astype(dt, copy=False)

    return run


@op("LRN", since=1)
def lrn_1(node):
    alpha = float(node.attr("alpha", 1e-4))
    beta = float(node.attr("beta", 0.75))
    bias = float(node.attr("bias", 1.0))
    size = int(node.attr("size"))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        C = x.shape[1]
        lo = (size - 1) // 2
        hi = size - 1 - lo
        sq = xx * xx
        # channel c sums channels [c - lo, c + hi] that exist: prefix sums indexed with clipped bounds
        # (never padded by `size`, which a model may set to millions)
        cs = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
        ch = np.arange(C)
        s = np.take(cs, np.minimum(ch + hi + 1, C), axis=1) - np.take(cs, np.maximum(ch - lo, 0), axis=1)
        y = xx / (bias + (alpha / size) * s) ** beta
        return y.astype(dt, copy=False)

    return run


# ----------------------------------------------------------------------------------------------
# Softmax family


def _softmax_axis(x, axes):
    m = np.max(x, axis=axes, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axes, keepdims=True)


def _logsoftmax_axis(x, axes):
    m = np.max(x, axis=axes, keepdims=True)
    d = x - m
    return d - np.log(np.sum(np.exp(d), axis=axes, keepdims=True))


def _hardmax_axis(x, axis):
    am = np.argmax(x, axis=axis)
    am = np.expand_dims(am, axis)
    r = np.zeros(x.shape, dtype=x.dtype)
    np.put_along_axis(r, am, 1, axis=axis)
    return r


def _softmax_family(fn, hard=False):
    def factory(node):
        new = node.since_version >= 13
        axis = int(node.attr("axis", -1 if new else 1))

        def run(x):
            dt = x.dtype
            if x.ndim == 0:
                xx = x.reshape(1)
            else:
                xx = x
            cd = _compute_dtype(dt)
            xx = xx.astype(cd, copy=False)
            a = normalize_axis(axis, xx.ndim, node)
            if new:
                y = _hardmax_axis(xx, a) if hard else fn(xx, a)
            else:
                shape = xx.shape
                x2 = xx.reshape(math.prod(shape[:a]), math.prod(shape[a:]))
                y = (_hardmax_axis(x2, 1) if hard else fn(x2, 1)).reshape(shape)
            return y.reshape(x.shape).astype(dt, copy=False)

        return run

    return factory


for _name, _fn, _hard in (
    ("Softmax", _softmax_axis, False),
    ("LogSoftmax", _logsoftmax_axis, False),
    ("Hardmax", None, True),
):
    REGISTRY.register(_name, _softmax_family(_fn, _hard), since=1)
    REGISTRY.register(_name, _softmax_family(_fn, _hard), since=13)


# ----------------------------------------------------------------------------------------------
# Dropout


@op("Dropout", since=1)
def dropout_1(node):
    sv = node.since_version
    ratio_attr = float(node.attr("ratio", 0.5))
    seed = node.attr("seed", None)
    rng = np.random.default_rng(_common.GLOBAL_SEED[0] if seed is None else seed)

    def run(x, ratio=None, training_mode=None):
        if sv >= 12:
            training = bool(np.asarray(training_mode).reshape(-1)[0]) if training_mode is not None else False
            r = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else 0.5
        else:
            training = sv < 7 and not bool(node.attr("is_test", 0))
            r = ratio_attr
        if not training or r == 0:
            if node.num_outputs < 2:
                return x
            mask_dt = np.bool_ if sv >= 10 else x.dtype
            return x, np.ones(x.shape, dtype=mask_dt)
        mask = rng.uniform(size=x.shape) >= r
        scale = 1.0 / (1.0 - r)
        y = (x * mask * scale).astype(x.dtype, copy=False)
        if node.num_outputs < 2:
            return y
        return y, mask if sv >= 10 else mask.astype(x.dtype)

    return run

