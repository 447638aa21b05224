"""Attention (ai.onnx opset 23+): scaled dot-product attention with masks, KV cache and GQA.

Matmuls and elementwise steps are evaluated in float32 for float16/bfloat16 inputs (float64
for double), each step rounded to the input type T1 as the operator's definition computes it;
the softmax runs in ``softmax_precision`` (default: T1, as the spec says). Bit-for-bit this
matches the ONNX reference for bfloat16/float16 (a purely float32 pipeline is off by one bf16
ulp in ~25% of elements, beyond the suite's rtol=1e-3).
"""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from ..dtypes import np_dtype
from ..registry import op
from ._common import invalid


def _compute_dtype(dt) -> np.dtype:
    dt = np.dtype(dt)
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _softmax(x):
    """Softmax over the last axis in x's own precision; all -inf rows give zeros."""
    with np.errstate(invalid="ignore", over="ignore"):
        mx = np.max(x, axis=-1, keepdims=True)
        mx = np.where(np.isneginf(mx), x.dtype.type(0), mx)
        e = np.exp(x - mx)
        ssum = np.sum(e, axis=-1, keepdims=True)
        ssum = np.where(ssum == x.dtype.type(0), x.dtype.type(1), ssum)
        return e / ssum


def _to_heads(x, heads, node, what):
    b, s, hidden = x.shape
    if heads <= 0 or hidden % heads:
        invalid(node, f"{what} hidden size {hidden} is not divisible by the number of heads {heads}")
    return x.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


@op("Attention", since=23)
def attention_23(node):
    is_causal = bool(node.attr("is_causal", 0))
    q_heads_attr = node.attrs.get("q_num_heads")
    kv_heads_attr = node.attrs.get("kv_num_heads")
    mode = int(node.attr("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        invalid(node, f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}", errors.InvalidModel)
    scale_attr = node.attrs.get("scale")
    softcap = float(node.attr("softcap", 0.0))
    sp = node.attrs.get("softmax_precision")
    softmax_dt = None
    if sp is not None:
        try:
            softmax_dt = np_dtype(int(sp))
        except ValueError:
            invalid(node, f"softmax_precision {sp} is not a known element type", errors.InvalidModel)
    left_w = int(node.attr("left_window_size", -1))
    right_w = int(node.attr("right_window_size", -1))
    if left_w < -1 or right_w < -1:
        invalid(node, "left_window_size and right_window_size must be -1 or nonnegative", errors.InvalidModel)
    want = node.num_outputs

    def run(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
        dt = Q.dtype
        if not (Q.ndim == K.ndim == V.ndim) or Q.ndim not in (3, 4):
            invalid(node, f"Q, K and V must all be 3-D or all 4-D, got shapes {Q.shape}, {K.shape}, {V.shape}")
        if (past_key is None) != (past_value is None):
            invalid(node, "past_key and past_value must be given together")
        if nonpad_kv_seqlen is not None and past_key is not None:
            invalid(node, "nonpad_kv_seqlen cannot be combined with past_key/past_value")
        cd = _compute_dtype(dt)
        sdt = softmax_dt if softmax_dt is not None else dt  # softmax precision (default: T1)
        three_d = Q.ndim == 3
        if three_d:
            if q_heads_attr is None or kv_heads_attr is None:
                invalid(node, "3-D inputs need the q_num_heads and kv_num_heads attributes")
            Q = _to_heads(Q, int(q_heads_attr), node, "Q")
            K = _to_heads(K, int(kv_heads_attr), node, "K")
            V = _to_heads(V, int(kv_heads_attr), node, "V")
        b, hq, sq, d = Q.shape
        if K.shape[0] != b or V.shape[0] != b:
            invalid(node, f"batch sizes differ: Q {Q.shape}, K {K.shape}, V {V.shape}")
        if K.shape[3] != d:
            invalid(node, f"Q head size {d} differs from K head size {K.shape[3]}")
        if K.shape[1] != V.shape[1] or K.shape[2] != V.shape[2]:
            invalid(node, f"K {K.shape} and V {V.shape} disagree on heads or sequence length")
        # KV cache (in the input type: present_key/value are exact concatenations)
        if past_key is not None:
            if past_key.ndim != 4 or past_value.ndim != 4:
                invalid(node, "past_key and past_value must be 4-D")
            try:
                K = np.concatenate((past_key, K), axis=2)
                V = np.concatenate((past_value, V), axis=2)
            except ValueError:
                invalid(node, f"past_key {past_key.shape} / past_value {past_value.shape} do not match "
                        f"K {K.shape} / V {V.shape}")
        present_k, present_v = K, V
        hkv = K.shape[1]
        skv = K.shape[2]
        if hkv != hq:
            if hq % hkv:
                invalid(node, f"q_num_heads {hq} is not a multiple of kv_num_heads {hkv}")
            rep = hq // hkv
            K = np.repeat(K, rep, axis=1)
            V = np.repeat(V, rep, axis=1)

        # additive bias, broadcastable to (b, hq, sq, skv)
        bias = np.zeros((sq, skv), dtype=cd)
        if attn_mask is not None:
            m = attn_mask
            if m.ndim < 1 or m.ndim > 4:
                invalid(node, f"attn_mask must have rank 1 to 4, got shape {m.shape}")
            pad = skv - m.shape[-1]
            if pad < 0:
                invalid(node, f"attn_mask last dimension {m.shape[-1]} is longer than the key sequence {skv}")
            if m.dtype == np.bool_:
                m = np.where(m, cd.type(0), cd.type(-np.inf))
            else:
                m = m.astype(cd)
            if pad > 0:
                m = np.pad(m, [(0, 0)] * (m.ndim - 1) + [(0, pad)], constant_values=-np.inf)
            try:
                bias = bias + m
            except ValueError:
                invalid(node, f"attn_mask of shape {attn_mask.shape} does not broadcast to ({sq}, {skv})")
        if nonpad_kv_seqlen is not None:
            nk = np.asarray(nonpad_kv_seqlen).reshape(-1).astype(np.int64)
            if nk.shape[0] != b:
                invalid(node, f"nonpad_kv_seqlen has {nk.shape[0]} entries for a batch of {b}")
        else:
            nk = None
        if is_causal or left_w >= 0 or right_w >= 0:
            if past_key is None and nk is not None:
                offset = (nk - sq).reshape(b, 1, 1, 1)
            else:
                offset = past_key.shape[2] if past_key is not None else 0
            i = np.arange(sq).reshape(sq, 1)
            j = np.arange(skv).reshape(1, skv)
            diff = (i + offset) - j  # query position minus key position
            allowed = np.ones(np.shape(diff), dtype=bool)
            if is_causal:
                allowed &= diff >= 0
            if left_w >= 0:
                allowed &= diff <= left_w
            if right_w >= 0:
                allowed &= -diff <= right_w
            bias = bias + np.where(allowed, cd.type(0), cd.type(-np.inf))
        if nk is not None:
            pm = np.arange(skv)[None, :] < nk[:, None]
            bias = bias + np.where(pm, cd.type(0), cd.type(-np.inf)).reshape(b, 1, 1, skv)
        try:
            bias = np.broadcast_to(bias, np.broadcast_shapes(bias.shape, (b, hq, sq, skv))) if bias.ndim > 2 else bias
        except ValueError:
            invalid(node, f"attn_mask of shape {attn_mask.shape} does not broadcast to {(b, hq, sq, skv)}")

        # Every step is rounded to the input type T1 the way the operator's definition (its
        # function body) computes it; for float32/double this is a no-op. Matmuls and
        # elementwise steps are evaluated in float32 and rounded once per step.
        r = (lambda a: a.astype(dt).astype(cd)) if dt != cd else (lambda a: a)
        scale = float(scale_attr) if scale_attr is not None else 1.0 / math.sqrt(d)
        s = r(np.asarray(math.sqrt(scale), dtype=cd))
        qf = r(Q.astype(cd) * s)
        kf = r(K.astype(cd) * s)
        qk = r(np.matmul(qf, kf.transpose(0, 1, 3, 2)))
        raw = qk
        if softcap > 0:
            qk = r(np.tanh(r(qk / cd.type(softcap))) * cd.type(softcap))
        logits = r(qk + r(bias))
        p = _softmax(logits.astype(sdt, copy=False))
        # fully-masked rows (bias all -inf) give zeros, not NaN
        dead = np.isneginf(np.max(bias, axis=-1, keepdims=True))
        if dead.any():
            p = np.where(dead, p.dtype.type(0), p)
        p = r(p.astype(cd))
        y = np.matmul(p, V.astype(cd))
        if three_d:
            y = y.transpose(0, 2, 1, 3).reshape(b, sq, -1)
        outs = [y.astype(dt)]
        if want > 1:
            outs.append(present_k)
        if want > 2:
            outs.append(present_v)
        if want > 3:
            qko = (raw, qk, logits, p)[mode]
            outs.append(np.broadcast_to(qko, (b, hq, sq, skv)).astype(dt))
        return outs[0] if want == 1 else tuple(outs)

    return run
