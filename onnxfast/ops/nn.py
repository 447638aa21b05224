"""Neural-network operators: convolution, pooling, normalization, softmax family, dropout, LRN."""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..registry import REGISTRY, op
from ._common import invalid, normalize_axes, normalize_axis


def _lowp(dt) -> bool:
    return dt == np.float16 or dt.kind == "V" or str(dt) == "bfloat16" or (dt.kind == "f" and dt.itemsize < 2)


def _compute_dtype(dt):
    return np.dtype(np.float32) if _lowp(dt) else dt


# ----------------------------------------------------------------------------------------------
# geometry helpers


def _pads_for(node, in_spatial, kernel, strides, dilations, pads, auto_pad, ceil_mode=False):
    """Return (pads_begin, pads_end, out_spatial)."""
    n = len(in_spatial)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_spatial, strides)]
        pb, pe = [], []
        for i in range(n):
            total = max((out[i] - 1) * strides[i] + eff[i] - in_spatial[i], 0)
            small = total // 2
            big = total - small
            if auto_pad == "SAME_UPPER":
                pb.append(small)
                pe.append(big)
            else:
                pb.append(big)
                pe.append(small)
        return pb, pe, out
    if auto_pad == "VALID":
        pb = [0] * n
        pe = [0] * n
    else:
        p = list(pads) if pads else [0] * (2 * n)
        if len(p) != 2 * n:
            invalid(node, f"pads {p} must have {2 * n} entries")
        pb, pe = p[:n], p[n:]
    out = []
    for i in range(n):
        span = in_spatial[i] + pb[i] + pe[i] - eff[i]
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            # the last window must start inside the input or the begin padding
            if (o - 1) * strides[i] >= in_spatial[i] + pb[i]:
                o -= 1
        else:
            o = span // strides[i] + 1
        if o <= 0 or span < 0:
            invalid(node, f"kernel {kernel} (dilations {dilations}) is larger than the padded input {in_spatial} (pads {pb + pe})")
        out.append(o)
    return pb, pe, out


def _windows(xp, kernel, strides, dilations, out):
    """(N, C, *S) padded -> (N, C, *O, *K) strided view of the windows."""
    n = len(kernel)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    axes = tuple(range(2, 2 + n))
    w = sliding_window_view(xp, eff, axis=axes)
    idx = [slice(None), slice(None)]
    idx += [slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides)]
    idx += [slice(None, None, d) for d in dilations]
    return w[tuple(idx)]


def _window_reduce(xp, kernel, strides, dilations, out, fn):
    """Reduce the windows with a binary ufunc, one kernel offset at a time (fast strided views)."""
    acc = None
    for kidx in itertools.product(*[range(k) for k in kernel]):
        sl = tuple(slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(kidx, dilations, out, strides))
        v = xp[(slice(None), slice(None)) + sl]
        if acc is None:
            acc = v.copy()
        else:
            fn(acc, v, out=acc)
    return acc


def _pad_spatial(x, pb, pe, value):
    if not any(pb) and not any(pe):
        return x
    n = len(pb)
    shape = list(x.shape[:2]) + [x.shape[2 + i] + pb[i] + pe[i] for i in range(n)]
    out = np.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(pb[i], pb[i] + x.shape[2 + i]) for i in range(n))] = x
    return out


def _geom_attrs(node, nsp, kernel):
    strides = node.attr("strides", None) or [1] * nsp
    dilations = node.attr("dilations", None) or [1] * nsp
    pads = node.attr("pads", None)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    return list(strides), list(dilations), pads, auto_pad


# ----------------------------------------------------------------------------------------------
# Conv


def conv_nd(node, x, w, b, kernel, strides, dilations, pads, auto_pad, group):
    if x.ndim < 3:
        invalid(node, f"X must have rank >= 3, got shape {x.shape}")
    nsp = x.ndim - 2
    kernel = list(kernel) if kernel else list(w.shape[2:])
    if w.ndim != x.ndim:
        invalid(node, f"W shape {w.shape} does not match X shape {x.shape}")
    N, C = x.shape[:2]
    M = w.shape[0]
    if C % group or M % group or w.shape[1] * group != C:
        invalid(node, f"channels of X {x.shape} and W {w.shape} do not match group={group}")
    strides = strides or [1] * nsp
    dilations = dilations or [1] * nsp
    pb, pe, out = _pads_for(node, x.shape[2:], kernel, strides, dilations, pads, auto_pad)
    xp = _pad_spatial(x, pb, pe, 0)
    win = _windows(xp, kernel, strides, dilations, out)  # N, C, *O, *K
    P = math.prod(out)
    Kp = math.prod(kernel)
    Cg = C // group
    Mg = M // group
    if group == 1:
        # (N, *O, C, *K) -> (N*P, C*Kp)
        perm = (0,) + tuple(range(2, 2 + nsp)) + (1,) + tuple(range(2 + nsp, 2 + 2 * nsp))
        cols = np.ascontiguousarray(win.transpose(perm)).reshape(N * P, C * Kp)
        y = cols @ w.reshape(M, C * Kp).T  # N*P, M
        y = y.reshape((N,) + tuple(out) + (M,))
        y = np.moveaxis(y, -1, 1)
    elif Cg == 1:
        # depthwise-like: accumulate one kernel offset at a time (cheap, no im2col copy)
        wg = w.reshape(group, Mg, Kp)
        y = np.zeros((N, group, Mg) + tuple(out), dtype=np.result_type(x.dtype, w.dtype))
        xs = xp.reshape((N, group, 1) + xp.shape[2:])
        for ki, kidx in enumerate(itertools.product(*[range(k) for k in kernel])):
            sl = tuple(
                slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(kidx, dilations, out, strides)
            )
            y += xs[(slice(None), slice(None), slice(None)) + sl] * wg[:, :, ki].reshape((1, group, Mg) + (1,) * nsp)
        y = y.reshape((N, M) + tuple(out))
    else:
        win2 = win.reshape((N, group, Cg) + tuple(out) + tuple(kernel))
        win2 = np.ascontiguousarray(win2).reshape(N, group, Cg, P, Kp)
        wg = w.reshape(group, Mg, Cg, Kp)
        y = np.einsum("ngcpk,gmck->ngmp", win2, wg, optimize=True)
        y = y.reshape((N, M) + tuple(out))
    if b is not None:
        y = y + b.reshape((1, M) + (1,) * nsp)
    return np.ascontiguousarray(y)


@op("Conv", since=1)
def conv_1(node):
    group = int(node.attr("group", 1))
    kernel = node.attr("kernel_shape", None)

    def run(x, w, b=None):
        dt = x.dtype
        cd = _compute_dtype(dt)
        nsp = x.ndim - 2
        strides, dilations, pads, auto_pad = _geom_attrs(node, nsp, kernel)
        xx, ww = x.astype(cd, copy=False), w.astype(cd, copy=False)
        bb = b.astype(cd, copy=False) if b is not None else None
        y = conv_nd(node, xx, ww, bb, kernel, strides, dilations, pads, auto_pad, group)
        return y.astype(dt, copy=False)

    return run


REGISTRY.register_native("Conv", since=1)


@op("ConvInteger", since=10)
def conv_integer_10(node):
    group = int(node.attr("group", 1))
    kernel = node.attr("kernel_shape", None)

    def run(x, w, x_zp=None, w_zp=None):
        nsp = x.ndim - 2
        strides, dilations, pads, auto_pad = _geom_attrs(node, nsp, kernel)
        xx = x.astype(np.int32)
        ww = w.astype(np.int32)
        if x_zp is not None:
            xx = xx - x_zp.astype(np.int32).reshape(-1)[0]
        if w_zp is not None:
            z = w_zp.astype(np.int32)
            ww = ww - (z.reshape((-1,) + (1,) * (w.ndim - 1)) if z.size > 1 else z.reshape(()))
        # padding must use the zero point, i.e. 0 after subtraction
        y = conv_nd(node, xx.astype(np.int64), ww.astype(np.int64), None, kernel, strides, dilations, pads, auto_pad, group)
        return y.astype(np.int32)

    return run


@op("ConvTranspose", since=1)
def conv_transpose_1(node):
    group = int(node.attr("group", 1))
    kernel_attr = node.attr("kernel_shape", None)
    output_padding_attr = node.attr("output_padding", None)
    output_shape_attr = node.attr("output_shape", None)

    def run(x, w, b=None):
        dt = x.dtype
        cd = _compute_dtype(dt)
        x = x.astype(cd, copy=False)
        w = w.astype(cd, copy=False)
        nsp = x.ndim - 2
        N, C = x.shape[:2]
        if w.shape[0] != C or C % group:
            invalid(node, f"W shape {w.shape} does not match X shape {x.shape} with group={group}")
        Mg = w.shape[1]
        M = Mg * group
        Cg = C // group
        kernel = list(kernel_attr) if kernel_attr else list(w.shape[2:])
        strides, dilations, pads, auto_pad = _geom_attrs(node, nsp, kernel)
        opad = list(output_padding_attr) if output_padding_attr else [0] * nsp
        ins = x.shape[2:]
        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        full = [s * (i - 1) + e + op_ for s, i, e, op_ in zip(strides, ins, eff, opad)]
        if output_shape_attr:
            oshape = list(output_shape_attr)[-nsp:]
            total = [f - o for f, o in zip(full, oshape)]
            pb, pe = [], []
            for t in total:
                t = max(t, 0)
                if auto_pad == "SAME_UPPER":
                    pb.append(t // 2)
                    pe.append(t - t // 2)
                else:
                    pb.append(t - t // 2)
                    pe.append(t // 2)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            oshape = [i * s for i, s in zip(ins, strides)]
            total = [f - o for f, o in zip(full, oshape)]
            pb, pe = [], []
            for t in total:
                t = max(t, 0)
                if auto_pad == "SAME_UPPER":
                    pb.append(t // 2)
                    pe.append(t - t // 2)
                else:
                    pb.append(t - t // 2)
                    pe.append(t // 2)
        else:
            p = list(pads) if (pads and auto_pad != "VALID") else [0] * (2 * nsp)
            pb, pe = p[:nsp], p[nsp:]
            oshape = [f - a - c for f, a, c in zip(full, pb, pe)]
        buf_shape = [max(f, pb_ + o) for f, pb_, o in zip(full, pb, oshape)]
        out = np.zeros((N, M) + tuple(buf_shape), dtype=cd)
        Kp = math.prod(kernel)
        P = math.prod(ins)
        xg = x.reshape(N, group, Cg, P)
        wt = w.reshape(group, Cg, Mg * Kp).transpose(0, 2, 1)  # g, Mg*Kp, Cg
        cols = np.matmul(wt, xg).reshape((N, group, Mg, Kp) + tuple(ins))
        cols = cols.reshape((N, M, Kp) + tuple(ins))
        for ki, kidx in enumerate(itertools.product(*[range(k) for k in kernel])):
            sl = tuple(
                slice(k * d, k * d + (i - 1) * s + 1, s) for k, d, i, s in zip(kidx, dilations, ins, strides)
            )
            out[(slice(None), slice(None)) + sl] += cols[:, :, ki]
        y = out[(slice(None), slice(None)) + tuple(slice(a, a + o) for a, o in zip(pb, oshape))]
        if b is not None:
            y = y + b.astype(cd).reshape((1, M) + (1,) * nsp)
        return np.ascontiguousarray(y).astype(dt, copy=False)

    return run


REGISTRY.register_native("ConvTranspose", since=1)


# ----------------------------------------------------------------------------------------------
# pooling


def _pool_setup(node, x, kernel, ceil_mode):
    nsp = x.ndim - 2
    if not kernel or len(kernel) != nsp:
        invalid(node, f"kernel_shape {kernel} does not match input of shape {x.shape}")
    strides, dilations, pads, auto_pad = _geom_attrs(node, nsp, kernel)
    pb, pe, out = _pads_for(node, x.shape[2:], kernel, strides, dilations, pads, auto_pad, ceil_mode)
    # extra end padding so every (ceil-mode) window exists
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    extra = [max((o - 1) * s + e - (i + a + c), 0) for o, s, e, i, a, c in zip(out, strides, eff, x.shape[2:], pb, pe)]
    return strides, dilations, pb, pe, extra, out


def _min_value(dt):
    if dt.kind == "f" or _lowp(dt):
        return -np.inf
    return np.iinfo(dt).min


@op("MaxPool", since=1)
def maxpool_1(node):
    kernel = node.attr("kernel_shape", None)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    storage_order = int(node.attr("storage_order", 0))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, extra, out = _pool_setup(node, x, kernel, ceil_mode)
        pe2 = [a + b for a, b in zip(pe, extra)]
        xp = _pad_spatial(xx, pb, pe2, _min_value(cd))
        nsp = len(kernel)
        y = _window_reduce(xp, kernel, strides, dilations, out, np.maximum).astype(dt, copy=False)
        if node.num_outputs < 2:
            return y
        win = _windows(xp, kernel, strides, dilations, out)
        N, C = x.shape[:2]
        P = math.prod(out)
        Kp = math.prod(kernel)
        flat = np.ascontiguousarray(win).reshape(N, C, P, Kp)
        am = np.argmax(flat, axis=-1)  # N, C, P
        kcoords = np.unravel_index(am, kernel)
        ocoords = np.unravel_index(np.arange(P), out)
        in_sp = x.shape[2:]
        coords = [
            ocoords[i] * strides[i] - pb[i] + kcoords[i] * dilations[i] for i in range(nsp)
        ]
        if storage_order == 0:
            lin = np.zeros_like(am, dtype=np.int64)
            for i in range(nsp):
                lin = lin * in_sp[i] + coords[i]
        else:
            lin = np.zeros_like(am, dtype=np.int64)
            for i in reversed(range(nsp)):
                lin = lin * in_sp[i] + coords[i]
        base = (np.arange(N).reshape(N, 1, 1) * C + np.arange(C).reshape(1, C, 1)) * math.prod(in_sp)
        ind = (base + lin).reshape((N, C) + tuple(out)).astype(np.int64)
        return y, ind

    return run


@op("AveragePool", since=1)
def avgpool_1(node):
    kernel = node.attr("kernel_shape", None)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    include_pad = bool(node.attr("count_include_pad", 0))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, extra, out = _pool_setup(node, x, kernel, ceil_mode)
        pe2 = [a + b for a, b in zip(pe, extra)]
        xp = _pad_spatial(xx, pb, pe2, 0)
        nsp = len(kernel)
        kaxes = tuple(range(2 + nsp, 2 + 2 * nsp))
        s = _window_reduce(xp, kernel, strides, dilations, out, np.add)
        # divisor: number of valid positions in every window
        mshape = (1, 1) + x.shape[2:]
        if include_pad:
            m = _pad_spatial(np.ones(mshape, dtype=cd), pb, pe, 1)
            m = _pad_spatial(m, [0] * nsp, extra, 0)
        else:
            m = _pad_spatial(np.ones(mshape, dtype=cd), pb, pe2, 0)
        cnt = _windows(m, kernel, strides, dilations, out).sum(axis=kaxes)
        y = s / cnt
        return y.astype(dt, copy=False)

    return run


@op("LpPool", since=1)
def lppool_1(node):
    kernel = node.attr("kernel_shape", None)
    p = float(node.attr("p", 2))
    ceil_mode = bool(node.attr("ceil_mode", 0))

    def run(x):
        dt = x.dtype
        cd = _compute_dtype(dt)
        xx = x.astype(cd, copy=False)
        strides, dilations, pb, pe, extra, out = _pool_setup(node, x, kernel, ceil_mode)
        pe2 = [a + b for a, b in zip(pe, extra)]
        xp = _pad_spatial(np.abs(xx) ** p, pb, pe2, 0)
        nsp = len(kernel)
        kaxes = tuple(range(2 + nsp, 2 + 2 * nsp))
        s = _windows(xp, kernel, strides, dilations, out).sum(axis=kaxes)
        return (s ** (1.0 / p)).astype(dt, copy=False)

    return run


def _global(fn):
    def factory(node):
        p = float(node.attr("p", 2))

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
        pad = [(0, 0)] * x.ndim
        pad[1] = (lo, hi)
        sqp = np.pad(sq, pad)
        cs = np.cumsum(sqp, axis=1)
        cs = np.concatenate([np.zeros_like(cs[:, :1]), cs], axis=1)
        s = cs[:, size:size + C] - cs[:, :C]
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
    rng = np.random.default_rng(seed)

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

# Native float32 kernels (csrc/kernels/normalization.cpp).
REGISTRY.register_native("Softmax", since=1)
REGISTRY.register_native("LogSoftmax", since=1)
REGISTRY.register_native("LayerNormalization", since=17)
_FLOAT_OR_UNKNOWN = (None, 1)  # onnx.TensorProto.FLOAT
# BatchNormalization: inference mode with float32 statistics (spatial = 1 before opset 9); training
# mode and mixed-precision statistics run on numpy.
REGISTRY.register_native(
    "BatchNormalization", since=7,
    when=lambda a, sv, types: (not a.get("training_mode", 0) and a.get("spatial", 1) == 1
                               and all(t in _FLOAT_OR_UNKNOWN for t in types[1:5])))
REGISTRY.register_native("InstanceNormalization", since=1,
                         when=lambda a, sv, types: all(t in _FLOAT_OR_UNKNOWN for t in types[1:3]))
# csrc/kernels/pooling.cpp (float32; MaxPool computes Indices too when the node asks for them)
for _name in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
    REGISTRY.register_native(_name, since=1)
REGISTRY.register_native("LpPool", since=1, when=lambda a, sv, types: float(a.get("p", 2)) > 0)  # p <= 0: numpy
# GlobalLpPool: the reduction engine's L1 / L2 (other p on numpy)
REGISTRY.register_native("GlobalLpPool", since=1, when=lambda a, sv, types: float(a.get("p", 2)) in (1.0, 2.0))
