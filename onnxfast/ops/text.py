"""Miscellaneous operators: TensorScatter (KV-cache update), TfIdfVectorizer, ImageDecoder."""

from __future__ import annotations

import io

import numpy as np

from .. import errors
from ..registry import op
from ._common import check_alloc, invalid, node_label, normalize_axis


# ----------------------------------------------------------------------------------------------
# TensorScatter


@op("TensorScatter", since=24)
def tensorscatter_24(node):
    mode = node.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        invalid(node, f"mode must be linear or circular, got {mode!r}", errors.InvalidModel)
    axis_attr = int(node.attr("axis", -2))

    def run(past_cache, update, write_indices=None):
        r = past_cache.ndim
        if update.ndim != r or r < 2:
            invalid(node, f"past_cache {past_cache.shape} and update {update.shape} must have the same rank >= 2")
        axis = normalize_axis(axis_attr, r, node)
        if axis == 0:
            invalid(node, "axis cannot be 0 (the batch dimension)")
        for i in range(r):
            if i != axis and past_cache.shape[i] != update.shape[i]:
                invalid(node, f"update of shape {update.shape} differs from past_cache of shape "
                        f"{past_cache.shape} in dimension {i}")
        mx = past_cache.shape[axis]
        s = update.shape[axis]
        if s > mx:
            invalid(node, f"update sequence length {s} exceeds the cache's {mx}")
        b = past_cache.shape[0]
        if write_indices is None:
            w = np.zeros(b, dtype=np.int64)
        else:
            w = np.asarray(write_indices).reshape(-1).astype(np.int64)
            if w.shape[0] != b:
                invalid(node, f"write_indices has {w.shape[0]} entries for a batch of {b}")
        pos = w[:, None] + np.arange(s)[None, :]  # (b, s)
        if mode == "circular":
            pos = pos % mx
        elif b and s and (w.min() < 0 or (w + s).max() > mx):
            bad = int(np.nonzero((w < 0) | (w + s > mx))[0][0])
            raise errors.IndexOutOfRange(
                f"{node_label(node)}: write index {int(w[bad])} for batch {bad} plus update length {s} "
                f"exceeds the cache length {mx} (linear mode)")
        out = past_cache.copy()
        if s == 0 or b == 0:
            return out
        # move the batch axis first and the sequence axis second (views), then scatter
        ov = np.moveaxis(out, axis, 1)
        uv = np.moveaxis(update, axis, 1)
        ov[np.arange(b)[:, None], pos] = uv
        return out

    return run


# ----------------------------------------------------------------------------------------------
# TfIdfVectorizer


@op("TfIdfVectorizer", since=9)
def tfidf_9(node):
    mode = node.attr("mode", "TF")
    if mode not in ("TF", "IDF", "TFIDF"):
        invalid(node, f"mode must be TF, IDF or TFIDF, got {mode!r}", errors.InvalidModel)
    min_n = int(node.attr("min_gram_length", 1))
    max_n = int(node.attr("max_gram_length", 1))
    max_skip = int(node.attr("max_skip_count", 0))
    if min_n < 1 or max_n < min_n or max_skip < 0:
        invalid(node, f"need 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0 "
                f"(got {min_n}, {max_n}, {max_skip})", errors.InvalidModel)
    counts = [int(v) for v in node.attr("ngram_counts", []) or []]
    indexes = [int(v) for v in node.attr("ngram_indexes", []) or []]
    pool_i = node.attr("pool_int64s", None)
    pool_s = node.attr("pool_strings", None)
    if (pool_i is None) == (pool_s is None):
        invalid(node, "exactly one of pool_int64s and pool_strings must be given", errors.InvalidModel)
    is_str = pool_s is not None
    pool = list(pool_s) if is_str else [int(v) for v in pool_i]
    if not indexes:
        invalid(node, "ngram_indexes must not be empty", errors.InvalidModel)
    out_size = max(indexes) + 1
    weights = node.attr("weights", None)
    wts = np.asarray(weights, dtype=np.float32) if weights else None
    if wts is not None and wts.shape[0] < out_size:
        invalid(node, f"weights has {wts.shape[0]} entries for {out_size} outputs", errors.InvalidModel)
    # n-gram (tuple) -> output column, for the sizes in [min_n, max_n]
    table: dict[int, dict[tuple, int]] = {}
    gid = 0
    for k, start in enumerate(counts):
        n = k + 1
        end = counts[k + 1] if k + 1 < len(counts) else len(pool)
        items = max(end - start, 0)
        ng = items // n
        for j in range(ng):
            key = tuple(pool[start + j * n: start + (j + 1) * n])
            if gid >= len(indexes):
                invalid(node, "ngram_indexes has fewer entries than the pool has n-grams", errors.InvalidModel)
            if min_n <= n <= max_n:
                table.setdefault(n, {})[key] = indexes[gid]
            gid += 1

    def run(X):
        if X.ndim == 0:
            X = X.reshape(1)
        if X.ndim not in (1, 2):
            invalid(node, f"input must be 1-D [C] or 2-D [N, C], got shape {X.shape}")
        if is_str != (X.dtype.kind in "OUS"):
            invalid(node, f"input element type {X.dtype} does not match the pool "
                    f"({'strings' if is_str else 'integers'})", errors.InvalidType)
        rows = X.reshape(1, -1) if X.ndim == 1 else X
        nb, c = rows.shape
        check_alloc((nb, out_size), np.float32, node)
        freq = np.zeros((nb, out_size), dtype=np.int64)
        vals = rows.astype(object) if is_str else rows.astype(np.int64)
        if is_str:
            vals = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])(vals) \
                if vals.size else vals
        # only n-gram sizes the pool holds and skips that fit in a row can match: the attributes may be huge
        for d in range(1, min(max_skip, c) + 2):
            lo = min_n if (d == 1 or min_n > 1) else 2
            for n in range(lo, min(max_n, len(counts)) + 1):
                tab = table.get(n)
                span = (n - 1) * d
                if not tab or span >= c:
                    continue
                idx = np.arange(c - span)[:, None] + np.arange(n)[None, :] * d
                win = vals[:, idx]  # (nb, positions, n)
                for bi in range(nb):
                    for tup in map(tuple, win[bi].tolist()):
                        col = tab.get(tup)
                        if col is not None:
                            freq[bi, col] += 1
        if mode == "TF":
            y = freq.astype(np.float32)
        elif mode == "IDF":
            y = (freq > 0).astype(np.float32)
            if wts is not None:
                y = y * wts[:out_size]
        else:
            y = freq.astype(np.float32)
            if wts is not None:
                y = y * wts[:out_size]
        y = y.astype(np.float32, copy=False)
        return y[0] if X.ndim == 1 else y

    return run


# ----------------------------------------------------------------------------------------------
# ImageDecoder


@op("ImageDecoder", since=20)
def imagedecoder_20(node):
    fmt = node.attr("pixel_format", "RGB")
    if fmt not in ("RGB", "BGR", "Grayscale"):
        invalid(node, f"pixel_format must be RGB, BGR or Grayscale, got {fmt!r}", errors.InvalidModel)

    def run(encoded):
        try:
            import PIL.Image  # lazy: Pillow is an optional dependency
        except ImportError:
            raise errors.NotImplementedFeature(
                f"{node_label(node)}: decoding images needs Pillow, which is not installed "
                f"(pip install pillow)") from None
        data = np.asarray(encoded)
        if data.dtype != np.uint8 or data.ndim != 1:
            invalid(node, f"encoded_stream must be a 1-D uint8 tensor, got {data.dtype} of shape {data.shape}")
        try:
            img = PIL.Image.open(io.BytesIO(data.tobytes()))
            img.load()
        except Exception as e:  # PIL raises many types for bad data
            raise errors.InvalidArgument(f"{node_label(node)}: cannot decode the image: {e}") from None
        if fmt == "Grayscale":
            arr = np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None]
        else:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
            if fmt == "BGR":
                arr = arr[:, :, ::-1]
        return np.ascontiguousarray(arr)

    return run
