"""Loss operators: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..registry import op
from ._common import invalid, node_label


def _lowp(dt) -> bool:
    return dt.kind != "f" or dt.itemsize < 4


def _nll(node, logp, target, weight, ignore_index, reduction):
    """``logp`` (N, C, d...) in the compute dtype; returns the loss in the compute dtype."""
    if logp.ndim < 2:
        invalid(node, f"input must have rank >= 2 (N, C, d1, ...), got shape {logp.shape}")
    n, c = logp.shape[0], logp.shape[1]
    tshape = (n,) + logp.shape[2:]
    if tuple(target.shape) != tshape:
        invalid(node, f"target of shape {target.shape} does not match input of shape {logp.shape} "
                f"(expected {tshape})")
    if target.dtype.kind not in "iu":
        invalid(node, f"target must be an integer tensor, got {target.dtype}", errors.InvalidType)
    x3 = logp.reshape(n, c, -1)
    t = target.reshape(n, -1).astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = t != ignore_index
        bad = keep & ((t < 0) | (t >= c))
    else:
        keep = None
        bad = (t < 0) | (t >= c)
    if bad.any():
        v = int(t[bad][0])
        raise errors.IndexOutOfRange(
            f"{node_label(node)}: target value {v} is out of range for {c} classes (valid [0, {c - 1}]"
            + (f", or ignore_index {ignore_index})" if ignore_index is not None else ")"))
    tc = t if keep is None else np.where(keep, t, 0)
    g = np.take_along_axis(x3, tc[:, None, :], axis=1)[:, 0, :]
    loss = -g
    w = None
    if weight is not None:
        weight = np.asarray(weight)
        if weight.shape != (c,):
            invalid(node, f"weight of shape {weight.shape} must have shape ({c},)")
        w = weight.astype(logp.dtype, copy=False)[tc]
        if keep is not None:
            w = np.where(keep, w, 0).astype(logp.dtype, copy=False)
    elif keep is not None:
        w = keep.astype(logp.dtype)
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss.reshape(tshape)
    if reduction == "sum":
        return np.asarray(loss.sum(dtype=logp.dtype))
    if reduction == "mean":
        if w is not None:
            return np.asarray(loss.sum(dtype=logp.dtype) / w.sum(dtype=logp.dtype))
        return np.asarray(loss.mean(dtype=logp.dtype))
    invalid(node, f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}", errors.InvalidModel)


def _attrs(node):
    reduction = node.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        invalid(node, f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}", errors.InvalidModel)
    ii = node.attrs.get("ignore_index")
    return reduction, (None if ii is None else int(ii))


@op("NegativeLogLikelihoodLoss", since=12)
def nll_loss_12(node):
    reduction, ignore_index = _attrs(node)

    def run(x, target, weight=None):
        dt = x.dtype
        cd = np.dtype(np.float32) if _lowp(dt) else dt
        y = _nll(node, x.astype(cd, copy=False), target, weight, ignore_index, reduction)
        return y.astype(dt, copy=False)

    return run


@op("SoftmaxCrossEntropyLoss", since=12)
def sce_loss_12(node):
    reduction, ignore_index = _attrs(node)
    want_logp = node.num_outputs >= 2

    def run(x, target, weight=None):
        dt = x.dtype
        cd = np.dtype(np.float32) if _lowp(dt) else dt
        xx = x.astype(cd, copy=False)
        if xx.ndim < 2:
            invalid(node, f"scores must have rank >= 2 (N, C, d1, ...), got shape {x.shape}")
        m = np.max(xx, axis=1, keepdims=True)
        d = xx - m
        logp = d - np.log(np.sum(np.exp(d), axis=1, keepdims=True))
        y = _nll(node, logp, target, weight, ignore_index, reduction).astype(dt, copy=False)
        if want_logp:
            return y, logp.astype(dt, copy=False)
        return y

    return run
