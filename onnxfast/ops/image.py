"""Spatial sampling operators: GridSample (N-D; nearest, linear, cubic), RoiAlign, DeformConv."""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import errors
from ..registry import op
from ._common import check_alloc, invalid


def _cdt(dt):
    dt = np.dtype(dt)
    return dt if dt == np.float64 else np.dtype(np.float32)


# ----------------------------------------------------------------------------------------------
# GridSample


def _reflect(x, lo, hi):
    """Reflect coordinates into [lo, hi] (repeatedly, like PyTorch's reflect_coordinates)."""
    rng = hi - lo
    if rng <= 0:
        return np.zeros_like(x) + lo
    below = x < lo
    above = x > hi
    d = np.where(below, lo - x, np.where(above, x - hi, 0))
    n = np.floor(d / rng)
    r = d - n * rng
    even = (n % 2) == 0
    out_below = np.where(even, lo + r, hi - r)
    out_above = np.where(even, hi - r, lo + r)
    return np.where(below, out_below, np.where(above, out_above, x))


def _cubic_coeffs(t, a=-0.75):
    """Keys cubic weights for taps at offsets -1, 0, 1, 2 of fractional position t in [0, 1)."""
    t1 = t + 1
    t2 = 1 - t
    t3 = 2 - t
    return [
        ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * t2 - (a + 3)) * t2 * t2 + 1,
        ((a * t3 - 5 * a) * t3 + 8 * a) * t3 - 4 * a,
    ]


_GS_MODES = {"bilinear": "linear", "linear": "linear", "bicubic": "cubic", "cubic": "cubic", "nearest": "nearest"}


@op("GridSample", since=16)
def gridsample_16(node):
    mode_attr = node.attr("mode", "bilinear" if node.since_version < 20 else "linear")
    mode = _GS_MODES.get(mode_attr)
    if mode is None:
        invalid(node, f"mode must be one of {sorted(_GS_MODES)}, got {mode_attr!r}", errors.InvalidModel)
    padding = node.attr("padding_mode", "zeros")
    if padding not in ("zeros", "border", "reflection"):
        invalid(node, f"padding_mode must be zeros, border or reflection, got {padding!r}", errors.InvalidModel)
    align = bool(node.attr("align_corners", 0))

    def run(X, grid):
        r = X.ndim - 2
        if r < 1 or grid.ndim != r + 2 or grid.shape[-1] != r or grid.shape[0] != X.shape[0]:
            invalid(node, f"grid of shape {grid.shape} does not match X of shape {X.shape} "
                    f"(expected (N, D1..D{r}, {r}))")
        if mode == "cubic" and r != 2 and node.since_version < 20:
            invalid(node, "bicubic mode needs 4-D input")
        dt = X.dtype
        n, c = X.shape[:2]
        dims = X.shape[2:]
        out_sp = grid.shape[1:-1]
        check_alloc((n, c) + tuple(out_sp), dt, node)
        cd = np.dtype(np.float64) if np.float64 in (X.dtype, grid.dtype) else np.dtype(np.float32)
        g = grid.astype(cd, copy=False)
        xt = np.moveaxis(X.astype(cd, copy=False), 1, -1)  # (N, D1..Dr, C)
        nidx = np.arange(n).reshape((n,) + (1,) * len(out_sp))
        # per spatial dim k (X axis 2+k): grid component r-1-k
        coords = []
        for k in range(r):
            size = dims[k]
            v = g[..., r - 1 - k]
            if align:
                x = (v + 1) / 2 * (size - 1)
                lo, hi = 0.0, size - 1.0
            else:
                x = ((v + 1) * size - 1) / 2
                lo, hi = -0.5, size - 0.5
            if mode == "nearest":
                x = np.rint(x)
            if padding == "border" and mode != "cubic":
                # (cubic, as in PyTorch and ONNX Runtime: only the taps are clamped)
                x = np.clip(x, 0, size - 1)
            elif padding == "reflection":
                x = _reflect(x, lo, hi)
            coords.append((x, size, lo, hi))

        def fix_index(i, size, lo, hi):
            """Integer tap index -> (index into X, valid mask)."""
            if padding == "zeros":
                ok = (i >= 0) & (i < size)
                return np.where(ok, i, 0), ok
            if padding == "border":
                return np.clip(i, 0, size - 1), None
            ii = _reflect(i.astype(np.float64), lo, hi).astype(np.int64)
            return np.clip(ii, 0, size - 1), None

        taps = []  # per dim: list of (index, valid, weight)
        for x, size, lo, hi in coords:
            if mode == "nearest":
                i = x.astype(np.int64)
                idx, ok = fix_index(i, size, lo, hi)
                taps.append([(idx, ok, None)])
                continue
            f = np.floor(x)
            t = x - f
            i0 = f.astype(np.int64)
            if mode == "linear":
                ws = [1 - t, t]
                offs = [0, 1]
            else:
                ws = _cubic_coeffs(t)
                offs = [-1, 0, 1, 2]
            lst = []
            for o, w in zip(offs, ws):
                idx, ok = fix_index(i0 + o, size, lo, hi)
                lst.append((idx, ok, w))
            taps.append(lst)
        acc = None
        for combo in itertools.product(*taps):
            idx = tuple(t[0] for t in combo)
            v = xt[(nidx,) + idx]  # (N, *out, C)
            w = None
            for _, ok, wk in combo:
                if wk is not None:
                    w = wk if w is None else w * wk
                if ok is not None:
                    w = ok.astype(cd) if w is None else np.where(ok, w, 0)
            if w is not None:
                v = v * w[..., None].astype(cd, copy=False)
            acc = v if acc is None else acc + v
        return np.moveaxis(acc, -1, 1).astype(dt, copy=False)

    return run


# ----------------------------------------------------------------------------------------------
# RoiAlign


def _roi_axis(start, bin_size, out, grid, size):
    """Sample positions along one axis -> (low, high, w_low, w_high, valid), each (out, grid)."""
    p = np.arange(out)[:, None]
    q = np.arange(grid)[None, :]
    y = start + p * bin_size + (q + 0.5) * bin_size / grid
    valid = (y >= -1.0) & (y <= size)
    y = np.maximum(y, 0.0)
    low = y.astype(np.int64)
    clamp = low >= size - 1
    low = np.where(clamp, size - 1, low)
    high = np.where(clamp, size - 1, low + 1)
    y = np.where(clamp, low.astype(np.float64), y)
    ly = y - low
    hy = 1.0 - ly
    return low, high, hy, ly, valid


# Above this many samples per bin and axis, samples are handled in groups (below): equal results
# for max mode, sums in closed form for avg mode. Tests lower it to compare both.
_ROI_GROUP_ABOVE = 16


def _roi_count(start, bin_size, out, grid, t, strict):
    """Per output p: how many samples q in [0, grid) have s(q) < t (strict) or <= t, where s(q) is
    the sample position y(q) = start + p * bin + (q + 0.5) * bin / grid when bin >= 0 (increasing
    in q), or -y(q) when bin < 0 (so s increases too; _roi_positions). An estimate, then exact
    fix-ups evaluating s the way _roi_axis does."""
    p = np.arange(out, dtype=np.float64)
    sign = 1.0 if bin_size >= 0 else -1.0
    s_of = _roi_positions(start, bin_size, out, grid)

    def below(q):
        v = s_of(q)
        return v < t if strict else v <= t

    step = abs(bin_size) / grid
    with np.errstate(all="ignore"):
        est = np.ceil((t - sign * (start + p * bin_size)) / step - 0.5) if step > 0 else \
            np.where(below(np.zeros(out)), float(grid), 0.0)
    est = np.clip(np.nan_to_num(est, nan=0.0), 0, grid)
    for _ in range(64):
        dec = (est > 0) & ~below(est - 1)
        est = est - dec
        inc = (est < grid) & below(np.minimum(est, grid - 1))
        est = est + inc
        if not dec.any() and not inc.any():
            break
    return est


def _roi_positions(start, bin_size, out, grid):
    """s(q) per output p: the sample position y(q) as _roi_axis computes it, negated when bin < 0."""
    p = np.arange(out, dtype=np.float64)
    sign = 1.0 if bin_size >= 0 else -1.0
    return lambda q: sign * (start + p * bin_size + (q + 0.5) * bin_size / grid)


def _roi_groups(start, bin_size, out, grid, size):
    """The samples of each output along one axis, grouped by what they read: per output p, K groups
    (out, K) of (low, high, hy_max, hy_min, ly_max, ly_min, n, sum_hy, sum_ly, nonempty). Groups:
    y < -1 (weight 0), [-1, 0) (low 0, ly 0), [j, j + 1) for j < size - 1, [size - 1, size] (low =
    high = size - 1, ly 0), y > size (weight 0): the classes _roi_axis sorts samples into."""
    # class boundaries as counts: [0, b0), [b0, b1), ..., [b_last, grid)
    ts = [(-1.0, True)] + [(float(j), True) for j in range(0, size)] + [(float(size), False)]
    if bin_size >= 0:
        bounds = [_roi_count(start, bin_size, out, grid, t, strict) for t, strict in ts]
        order = range(len(ts) + 1)
    else:  # s = -y: y in [lo, hi) is s in (-hi, -lo]; classes come in reverse order
        bounds = [_roi_count(start, bin_size, out, grid, -t, not strict) for t, strict in reversed(ts)]
        order = reversed(range(len(ts) + 1))
    s_of = _roi_positions(start, bin_size, out, grid)
    sign = 1.0 if bin_size >= 0 else -1.0
    edges = [np.zeros(out)] + bounds + [np.full(out, float(grid))]
    nc = size + 3
    cls = {}
    for k, c in enumerate(order):
        cls[c] = (edges[k], edges[k + 1])
    low = np.zeros((out, nc), np.int64)
    high = np.zeros((out, nc), np.int64)
    hymax, hymin, lymax, lymin, n, shy, sly = (np.zeros((out, nc)) for _ in range(7))
    for c in range(nc):
        qa, qb = cls[c]
        cnt = np.maximum(qb - qa, 0.0)
        n[:, c] = cnt
        if c == 0 or c == nc - 1:  # outside: weight 0 (indices as _roi_axis clamps them)
            low[:, c] = high[:, c] = 0 if c == 0 else size - 1
            continue
        if c == 1 or c == nc - 2:  # [-1, 0) and [size - 1, size]: hy 1, ly 0
            low[:, c] = 0 if c == 1 else size - 1
            high[:, c] = min(1, size - 1) if c == 1 else size - 1
            hymax[:, c] = hymin[:, c] = 1.0
            shy[:, c] = cnt
            continue
        j = c - 2  # [j, j + 1)
        low[:, c], high[:, c] = j, j + 1
        ok = cnt > 0
        ya = sign * s_of(np.where(ok, qa, 0.0))
        yb = sign * s_of(np.where(ok, qb - 1, 0.0))
        la, lb = ya - j, yb - j
        lymax[:, c], lymin[:, c] = np.maximum(la, lb), np.minimum(la, lb)
        hymax[:, c], hymin[:, c] = 1.0 - lymin[:, c], 1.0 - lymax[:, c]
        # sum of (y_q - j) over q in [qa, qb): y_q = base + (q + 0.5) * step
        base = start + np.arange(out) * bin_size
        sly[:, c] = np.where(ok, cnt * (base - j) + (bin_size / grid) * cnt * (qa + qb) / 2.0, 0.0)
        shy[:, c] = cnt - sly[:, c]
    # keep each output's nonempty classes, in order, in K columns
    nonempty = n > 0
    k = int(nonempty.sum(axis=1).max()) if out else 0
    pick = np.argsort(~nonempty, axis=1, kind="stable")[:, :k]
    take = lambda a: np.take_along_axis(a, pick, axis=1)  # noqa: E731
    return (take(low), take(high), take(hymax), take(hymin), take(lymax), take(lymin), take(n), take(shy),
            take(sly), take(nonempty))


@op("RoiAlign", since=10)
def roialign_10(node):
    half_pixel = node.attr("coordinate_transformation_mode",
                           "half_pixel" if node.since_version >= 16 else "output_half_pixel") == "half_pixel"
    mode = node.attr("mode", "avg")
    if mode not in ("avg", "max"):
        invalid(node, f"mode must be avg or max, got {mode!r}", errors.InvalidModel)
    oh = int(node.attr("output_height", 1))
    ow = int(node.attr("output_width", 1))
    ratio = int(node.attr("sampling_ratio", 0))
    scale = float(node.attr("spatial_scale", 1.0))

    def run(X, rois, batch_indices):
        if X.ndim != 4:
            invalid(node, f"X must be 4-D (N, C, H, W), got shape {X.shape}")
        if rois.ndim != 2 or rois.shape[1] != 4:
            invalid(node, f"rois must have shape (num_rois, 4), got {rois.shape}")
        bi = np.asarray(batch_indices).reshape(-1).astype(np.int64)
        if bi.shape[0] != rois.shape[0]:
            invalid(node, f"batch_indices has {bi.shape[0]} entries for {rois.shape[0]} rois")
        n, c, h, w = X.shape
        if bi.size and (bi.min() < 0 or bi.max() >= n):
            raise errors.IndexOutOfRange(
                f"RoiAlign node '{node.name}': batch index {int(bi[(bi < 0) | (bi >= n)][0])} is out of "
                f"range for a batch of {n}")
        dt = X.dtype
        xd = X.astype(np.float64)
        out = np.zeros((rois.shape[0], c, oh, ow), dtype=np.float64)
        off = 0.5 if half_pixel else 0.0
        rr = rois.astype(np.float64)
        for k in range(rois.shape[0]):
            x1, y1, x2, y2 = rr[k] * scale - off
            rw, rh = x2 - x1, y2 - y1
            if not half_pixel:
                rw, rh = max(rw, 1.0), max(rh, 1.0)
            bh, bw = rh / oh, rw / ow
            gh = ratio if ratio > 0 else int(math.ceil(rh / oh))
            gw = ratio if ratio > 0 else int(math.ceil(rw / ow))
            count = max(gh * gw, 1)
            img = xd[bi[k]]  # (C, H, W)
            if gh <= 0 or gw <= 0:
                continue
            grouped = max(gh, gw) > _ROI_GROUP_ABOVE and np.isfinite([y1, x1, bh, bw]).all()
            if mode == "avg":
                # separable: out = Wy @ img @ Wx^T / count
                Wy = np.zeros((oh, h))
                Wx = np.zeros((ow, w))
                if grouped:  # the sums of each group's weights, in closed form
                    for W_, (st, bs, o_, g_, sz) in ((Wy, (y1, bh, oh, gh, h)), (Wx, (x1, bw, ow, gw, w))):
                        lo_, hi_, _, _, _, _, _, shy, sly, _ = _roi_groups(st, bs, o_, g_, sz)
                        rows = np.broadcast_to(np.arange(o_)[:, None], lo_.shape)
                        np.add.at(W_, (rows.ravel(), lo_.ravel()), shy.ravel())
                        np.add.at(W_, (rows.ravel(), hi_.ravel()), sly.ravel())
                else:
                    yl, yh, why, wly, vy = _roi_axis(y1, bh, oh, gh, h)
                    xl, xh, whx, wlx, vx = _roi_axis(x1, bw, ow, gw, w)
                    rows = np.repeat(np.arange(oh), gh)
                    np.add.at(Wy, (rows, yl.ravel()), (why * vy).ravel())
                    np.add.at(Wy, (rows, yh.ravel()), (wly * vy).ravel())
                    cols = np.repeat(np.arange(ow), gw)
                    np.add.at(Wx, (cols, xl.ravel()), (whx * vx).ravel())
                    np.add.at(Wx, (cols, xh.ravel()), (wlx * vx).ravel())
                out[k] = np.einsum("ph,chw,qw->cpq", Wy, img, Wx) / count
            elif grouped:
                # a group of samples reading the same pixels: each corner's max over the group is
                # v * max(weight) for v >= 0, v * min(weight) otherwise (weights >= 0), the same
                # value the samples one by one give
                ylo, yhi, hymax, hymin, lymax, lymin, _, _, _, yok = _roi_groups(y1, bh, oh, gh, h)
                xlo, xhi, hxmax, hxmin, lxmax, lxmin, _, _, _, xok = _roi_groups(x1, bw, ow, gw, w)
                best = np.full((img.shape[0], oh, ow), -np.inf)
                for ky in range(ylo.shape[1]):
                    for yi, wy1, wy0 in ((ylo[:, ky], hymax[:, ky], hymin[:, ky]),
                                         (yhi[:, ky], lymax[:, ky], lymin[:, ky])):
                        rows = img.take(yi, axis=1)  # (C, oh, W)
                        for kx in range(xlo.shape[1]):
                            ok = yok[:, ky, None] & xok[None, :, kx]
                            for xi, wx1, wx0 in ((xlo[:, kx], hxmax[:, kx], hxmin[:, kx]),
                                                 (xhi[:, kx], lxmax[:, kx], lxmin[:, kx])):
                                v = rows.take(xi, axis=2)  # (C, oh, ow)
                                hi_w = wy1[:, None] * wx1[None, :]
                                lo_w = wy0[:, None] * wx0[None, :]
                                val = np.where(v >= 0, v * hi_w, v * lo_w)
                                np.maximum(best, np.where(ok, val, -np.inf), out=best)
                out[k] = best
            else:
                yl, yh, why, wly, vy = _roi_axis(y1, bh, oh, gh, h)
                xl, xh, whx, wlx, vx = _roi_axis(x1, bw, ow, gw, w)
                # per sample: the max of the four weighted corners (a sample outside the image counts 0);
                # then the max over the bin's samples. One sample (qy, qx) at a time: the temporaries are
                # (C, oh, ow), the output's size, and each corner is two takes, not a 5-D gather
                best, first = out[k], True
                for qy in range(gh):
                    for yi, wy in ((yl[:, qy], why[:, qy] * vy[:, qy]), (yh[:, qy], wly[:, qy] * vy[:, qy])):
                        rows = img.take(yi, axis=1)  # (C, oh, W)
                        for qx in range(gw):
                            for xi, wx in ((xl[:, qx], whx[:, qx] * vx[:, qx]), (xh[:, qx], wlx[:, qx] * vx[:, qx])):
                                v = rows.take(xi, axis=2)  # (C, oh, ow)
                                v *= wy[:, None] * wx[None, :]
                                if first:
                                    best[...], first = v, False
                                else:
                                    np.maximum(best, v, out=best)
        return out.astype(dt)

    return run


# ----------------------------------------------------------------------------------------------
# DeformConv


def _bilinear_zero(img, y, x):
    """img (N, C, H, W); y, x (N, *S) float -> (N, C, *S); corners outside the image read 0."""
    n, c, h, w = img.shape
    y0 = np.floor(y)
    x0 = np.floor(x)
    ty = y - y0
    tx = x - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    nidx = np.arange(n).reshape((n,) + (1,) * (y.ndim - 1))
    it = np.moveaxis(img, 1, -1)  # (N, H, W, C)
    acc = 0
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            yy = y0 + dy
            xx = x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            v = it[nidx, np.where(ok, yy, 0), np.where(ok, xx, 0)]  # (N, *S, C)
            acc = acc + v * np.where(ok, wy * wx, 0)[..., None]
    return np.moveaxis(acc, -1, 1)


@op("DeformConv", since=19)
def deformconv_19(node):
    group = int(node.attr("group", 1))
    og = int(node.attr("offset_group", 1))

    def run(X, W, offset, B=None, mask=None):
        if X.ndim != 4:
            invalid(node, f"only 2-D DeformConv (4-D X) is supported, got X of shape {X.shape}",
                    errors.NotImplementedFeature)
        dt = X.dtype
        cd = _cdt(dt)
        n, ic, ih, iw = X.shape
        oc = W.shape[0]
        kshape = node.attr("kernel_shape", None) or list(W.shape[2:])
        kh, kw = int(kshape[0]), int(kshape[1])
        dil = node.attr("dilations", None) or [1, 1]
        strides = node.attr("strides", None) or [1, 1]
        pads = node.attr("pads", None) or [0, 0, 0, 0]
        if W.ndim != 4 or (kh, kw) != tuple(W.shape[2:]):
            invalid(node, f"W of shape {W.shape} does not match kernel_shape {list(kshape)}")
        if group <= 0 or ic != W.shape[1] * group or oc % group:
            invalid(node, f"X of shape {X.shape} and W of shape {W.shape} do not match group {group}")
        if og <= 0 or ic % og:
            invalid(node, f"input channels {ic} are not divisible by offset_group {og}")
        K = kh * kw
        oh = (ih + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) // strides[0] + 1
        ow = (iw + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) // strides[1] + 1
        if offset.shape != (n, og * 2 * K, oh, ow):
            invalid(node, f"offset of shape {offset.shape}, expected {(n, og * 2 * K, oh, ow)}")
        if mask is not None and mask.shape != (n, og * K, oh, ow):
            invalid(node, f"mask of shape {mask.shape}, expected {(n, og * K, oh, ow)}")
        off = offset.astype(cd, copy=False).reshape(n, og, kh, kw, 2, oh, ow)
        base_y = (np.arange(oh) * strides[0] - pads[0])[:, None] + 0 * np.arange(ow)[None, :]
        base_x = (np.arange(ow) * strides[1] - pads[1])[None, :] + 0 * np.arange(oh)[:, None]
        ky = (np.arange(kh) * dil[0]).reshape(kh, 1, 1, 1)
        kx = (np.arange(kw) * dil[1]).reshape(1, kw, 1, 1)
        ys = base_y + ky + off[:, :, :, :, 0]  # (n, og, kh, kw, oh, ow)
        xs = base_x + kx + off[:, :, :, :, 1]
        xc = X.astype(cd, copy=False)
        cpg = ic // og
        cols = np.empty((n, ic, kh, kw, oh, ow), dtype=cd)
        for gi in range(og):
            sub = xc[:, gi * cpg:(gi + 1) * cpg]
            cols[:, gi * cpg:(gi + 1) * cpg] = _bilinear_zero(sub, ys[:, gi], xs[:, gi])
        if mask is not None:
            m = mask.astype(cd, copy=False).reshape(n, og, 1, kh, kw, oh, ow)
            cols = (cols.reshape(n, og, cpg, kh, kw, oh, ow) * m).reshape(n, ic, kh, kw, oh, ow)
        icg = ic // group
        ocg = oc // group
        Wc = W.astype(cd, copy=False)
        out = np.empty((n, oc, oh, ow), dtype=cd)
        for gi in range(group):
            out[:, gi * ocg:(gi + 1) * ocg] = np.einsum(
                "ockl,nckluv->nouv", Wc[gi * ocg:(gi + 1) * ocg], cols[:, gi * icg:(gi + 1) * icg])
        if B is not None:
            out += B.astype(cd).reshape(1, -1, 1, 1)
        return out.astype(dt, copy=False)

    return run
