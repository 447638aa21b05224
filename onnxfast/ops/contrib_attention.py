"""Numpy kernels of onnxruntime's ``com.microsoft`` transformer operators that its transformers
optimizer writes: Attention (packed QKV projection), MultiHeadAttention (separate Q, K, V),
EmbedLayerNormalization (embeddings + LayerNormalization + mask index), BiasSoftmax.

The forms onnxruntime's CPU kernels take without a past state are computed here: masks as 1-D valid
lengths (right padding), 2-D raw 0/1 masks over the keys, 3-D per-query masks; an additive
attention_bias; unidirectional (causal) masking. Masked scores get ``mask_filter_value`` (default
-10000) added, as onnxruntime does. Other forms (past / present key-values, rotary embedding,
packed QKV inputs of MultiHeadAttention) are refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgument
from ..registry import KernelNode, op

MS_DOMAIN = "com.microsoft"


def _softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def _heads(x: np.ndarray, n: int) -> np.ndarray:
    """(B, S, n * h) -> (B, n, S, h)."""
    b, s, d = x.shape
    return x.reshape(b, s, n, d // n).transpose(0, 2, 1, 3)


def _mask_bias(node: KernelNode, mask, b: int, s: int, t: int, filt: float) -> np.ndarray | float:
    """The additive mask of shape broadcastable to (B, N, S, T) from onnxruntime's mask forms."""
    if mask is None:
        return 0.0
    m = np.asarray(mask)
    if m.ndim == 1 and m.shape[0] == b:  # valid key lengths: keys from the length on are padding
        keep = np.arange(t)[None, :] < m.astype(np.int64)[:, None]
        return np.where(keep, 0.0, filt)[:, None, None, :]
    if m.ndim == 2 and m.shape == (b, t):  # raw 0/1 over the keys
        return np.where(m != 0, 0.0, filt)[:, None, None, :]
    if m.ndim == 3 and m.shape == (b, s, t):  # raw 0/1 per query
        return np.where(m != 0, 0.0, filt)[:, None, :, :]
    node.fail(f"mask of shape {m.shape} is not a form onnxfast takes for batch {b}, {s} queries, {t} keys "
              f"((B,) lengths, (B, T) or (B, S, T) 0/1 masks)", cls=InvalidArgument)


def _attend(node: KernelNode, q, k, v, n: int, scale, mask, attn_bias, unidirectional: bool, filt: float):
    """softmax(Q K^T * scale + masks + bias) V for (B, S, n*h) q and (B, T, n*h) k, v: (B, S, n*hv)."""
    b, s, _ = q.shape
    t = k.shape[1]
    qh, kh, vh = _heads(q, n), _heads(k, n), _heads(v, n)
    head = qh.shape[-1]
    sc = float(scale) if scale else 1.0 / math.sqrt(head)
    scores = np.matmul(qh.astype(np.float64), kh.astype(np.float64).transpose(0, 1, 3, 2)) * sc
    scores = scores + _mask_bias(node, mask, b, s, t, filt)
    if unidirectional:
        causal = np.arange(t)[None, :] > (np.arange(s)[:, None] + (t - s))
        scores = scores + np.where(causal, filt, 0.0)
    if attn_bias is not None:
        try:
            scores = scores + attn_bias.astype(np.float64)
        except ValueError:
            node.fail(f"attention_bias of shape {attn_bias.shape} does not broadcast to {scores.shape}",
                      cls=InvalidArgument)
    out = np.matmul(_softmax(scores), vh.astype(np.float64))  # (B, N, S, hv)
    return out.transpose(0, 2, 1, 3).reshape(b, s, -1).astype(q.dtype)


def _common(node: KernelNode):
    heads = int(node.attr("num_heads", 0))
    if heads <= 0:
        node.fail(f"attribute 'num_heads' is {heads}; it must be positive")
    if int(node.attr("do_rotary", 0)):
        node.fail("do_rotary=1 (rotary embedding inside Attention) is not supported")
    return heads, float(node.attr("scale", 0.0)), float(node.attr("mask_filter_value", -10000.0)), \
        bool(node.attr("unidirectional", 0))


@op("Attention", since=1, domain=MS_DOMAIN)
def ms_attention(node: KernelNode):
    heads, scale, filt, causal = _common(node)
    sizes = [int(v) for v in node.attr("qkv_hidden_sizes", [])]

    def run(x, weights, bias=None, mask_index=None, past=None, attention_bias=None, past_sequence_length=None):
        if past is not None:
            node.fail("a past state (input 'past') is not supported", cls=InvalidArgument)
        if x.ndim != 3 or weights.ndim != 2 or weights.shape[0] != x.shape[2]:
            node.fail(f"input (B, S, D) and weights (D, 3 * hidden) expected, got {x.shape} and {weights.shape}",
                      cls=InvalidArgument)
        qs, ks, vs = sizes if sizes else [weights.shape[1] // 3] * 3
        if qs + ks + vs != weights.shape[1] or qs != ks or qs % heads or vs % heads:
            node.fail(f"weights' {weights.shape[1]} columns do not split into Q, K, V of {heads} heads "
                      f"(qkv_hidden_sizes {sizes or 'equal'})", cls=InvalidArgument)
        qkv = np.matmul(x, weights)
        if bias is not None:
            qkv = qkv + bias
        q, k, v = qkv[..., :qs], qkv[..., qs:qs + ks], qkv[..., qs + ks:]
        return _attend(node, q, k, v, heads, scale, mask_index, attention_bias, causal, filt)

    return run


@op("MultiHeadAttention", since=1, domain=MS_DOMAIN)
def ms_multi_head_attention(node: KernelNode):
    heads, scale, filt, causal = _common(node)

    def run(query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None, past_key=None,
            past_value=None, *rest):
        if key is None or value is None or query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            node.fail("query, key and value of shape (B, S, D) are supported (packed or BNSH forms are not), got "
                      f"{query.shape}, {None if key is None else key.shape}, {None if value is None else value.shape}",
                      cls=InvalidArgument)
        if past_key is not None or past_value is not None:
            node.fail("past_key / past_value are not supported", cls=InvalidArgument)
        d, dv = query.shape[2], value.shape[2]
        if key.shape[2] != d or d % heads or dv % heads:
            node.fail(f"query and key widths ({d}, {key.shape[2]}) must match and split into {heads} heads",
                      cls=InvalidArgument)
        if bias is not None:
            query, key, value = query + bias[:d], key + bias[d:2 * d], value + bias[2 * d:]
        return _attend(node, query, key, value, heads, scale, key_padding_mask, attention_bias, causal, filt)

    return run


@op("EmbedLayerNormalization", since=1, domain=MS_DOMAIN)
def ms_embed_layer_norm(node: KernelNode):
    """word + position (+ segment) embeddings, LayerNormalization with gamma / beta; mask_index: the
    number of ones per row of mask (0 when no mask); embedding_sum: the sum before normalization."""
    eps = float(node.attr("epsilon", 1e-12))

    def run(input_ids, segment_ids, word_emb, pos_emb, seg_emb, gamma, beta, mask=None, position_ids=None):
        if input_ids.ndim != 2:
            node.fail(f"input_ids must be (B, S), got {input_ids.shape}", cls=InvalidArgument)
        b, s = input_ids.shape

        def take(table, ids, what):
            ids = ids.astype(np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
                node.fail(f"{what} ids must be in [0, {table.shape[0]}), got {int(ids.min())}..{int(ids.max())}",
                          cls=InvalidArgument)
            return table[ids]

        pos = np.arange(s)[None, :] if position_ids is None else position_ids
        e = take(word_emb, input_ids, "input") + take(pos_emb, np.broadcast_to(pos, (b, s)), "position")
        if seg_emb is not None and segment_ids is not None:
            e = e + take(seg_emb, segment_ids, "segment")
        e = e.astype(word_emb.dtype)
        ef = e.astype(np.float64)
        mean = ef.mean(axis=-1, keepdims=True)
        y = (ef - mean) / np.sqrt(((ef - mean) ** 2).mean(axis=-1, keepdims=True) + eps) * gamma + beta
        mask_index = (np.asarray(mask) != 0).sum(axis=1).astype(np.int32) if mask is not None else \
            np.zeros(b, np.int32)
        outs = (y.astype(word_emb.dtype), mask_index, e)
        return outs[0] if node.num_outputs < 2 else outs[: node.num_outputs]

    return run
