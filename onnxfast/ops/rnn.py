"""Recurrent operators: RNN, GRU, LSTM (all directions, layouts, activations, clip,
sequence_lens, initial states, LSTM peepholes / input_forget, GRU linear_before_reset)."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..registry import op
from ._common import invalid
from .math import relu


def _sigmoid(x):
    # numerically stable logistic
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softplus(x):
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


# name -> (uses alpha, uses beta, default alpha, default beta, builder(alpha, beta) -> fn)
_ACTS = {
    "relu": (False, False, None, None, lambda a, b: relu),
    "tanh": (False, False, None, None, lambda a, b: np.tanh),
    "sigmoid": (False, False, None, None, lambda a, b: _sigmoid),
    "affine": (True, True, 1.0, 0.0, lambda a, b: lambda x: x * x.dtype.type(a) + x.dtype.type(b)),
    "leakyrelu": (True, False, 0.01, None, lambda a, b: lambda x: np.where(x >= 0, x, x * x.dtype.type(a))),
    "thresholdedrelu": (True, False, 1.0, None, lambda a, b: lambda x: np.where(x > a, x, x.dtype.type(0))),
    "scaledtanh": (True, True, 1.0, 1.0, lambda a, b: lambda x: x.dtype.type(a) * np.tanh(x * x.dtype.type(b))),
    "hardsigmoid": (True, True, 0.2, 0.5,
                    lambda a, b: lambda x: np.clip(x * x.dtype.type(a) + x.dtype.type(b), 0, 1)),
    "elu": (True, False, 1.0, None,
            lambda a, b: lambda x: np.where(x >= 0, x, x.dtype.type(a) * np.expm1(np.minimum(x, 0)))),
    "softsign": (False, False, None, None, lambda a, b: lambda x: x / (1 + np.abs(x))),
    "softplus": (False, False, None, None, lambda a, b: _softplus),
}


def _activations(node, defaults, ndir):
    """The activation functions, ``len(defaults)`` per direction, flattened (direction-major)."""
    names = node.attr("activations", None)
    per = len(defaults)
    if not names:
        names = list(defaults) * ndir
    names = list(names)
    if len(names) == per and ndir == 2:
        names = names * 2
    elif len(names) == 2 * per and ndir == 1:  # RNN's schema default lists one per direction of a bidirectional node
        names = names[:per]
    if len(names) != per * ndir:
        invalid(node, f"activations {names} must list {per} function(s) per direction ({per * ndir} in all)",
                errors.InvalidModel)
    alphas = list(node.attr("activation_alpha", []) or [])
    betas = list(node.attr("activation_beta", []) or [])
    fns = []
    ai = bi = 0
    for name in names:
        spec = _ACTS.get(str(name).lower())
        if spec is None:
            invalid(node, f"unknown activation function {name!r}", errors.NotImplementedFeature)
        use_a, use_b, da, db, build = spec
        a = b = None
        if use_a:
            a = alphas[ai] if ai < len(alphas) else da
            ai += 1
        if use_b:
            b = betas[bi] if bi < len(betas) else db
            bi += 1
        fns.append(build(a, b))
    return fns


def _cdt(dt):
    dt = np.dtype(dt)
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float32)


class _Setup:
    pass


def _common(node, ngates, default_acts):
    st = _Setup()
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        invalid(node, f"direction must be forward, reverse or bidirectional, got {direction!r}", errors.InvalidModel)
    st.direction = direction
    st.ndir = 2 if direction == "bidirectional" else 1
    st.layout = int(node.attr("layout", 0))
    if st.layout not in (0, 1):
        invalid(node, f"layout must be 0 or 1, got {st.layout}", errors.InvalidModel)
    clip = node.attrs.get("clip")
    st.clip = None if clip is None else float(clip)
    st.hidden = node.attrs.get("hidden_size")
    st.acts = _activations(node, default_acts, st.ndir)
    st.nacts = len(default_acts)
    st.ngates = ngates
    st.nout = node.num_outputs
    return st


def _prepare(node, st, X, W, R, B, sequence_lens, initial):
    """Shared checks; returns (Xc (seq, batch, in), W, R, Wb, Rb, mask (seq, batch) | None, inits, cd)."""
    dt = X.dtype
    cd = _cdt(dt)
    if X.ndim != 3:
        invalid(node, f"X must be 3-D, got shape {X.shape}")
    x = X.astype(cd, copy=False)
    if st.layout == 1:
        x = x.transpose(1, 0, 2)
    seq, batch, isz = x.shape
    g = st.ngates
    if W.ndim != 3 or W.shape[0] != st.ndir or W.shape[2] != isz or W.shape[1] % g:
        invalid(node, f"W of shape {W.shape} does not match {st.ndir} direction(s), {g} gates and input size {isz}")
    H = W.shape[1] // g
    if st.hidden is not None and int(st.hidden) != H:
        invalid(node, f"hidden_size {st.hidden} does not match W of shape {W.shape}")
    if R.shape != (st.ndir, g * H, H):
        invalid(node, f"R of shape {R.shape}, expected {(st.ndir, g * H, H)}")
    if B is None:
        Wb = np.zeros((st.ndir, g * H), cd)
        Rb = np.zeros((st.ndir, g * H), cd)
    else:
        if B.shape != (st.ndir, 2 * g * H):
            invalid(node, f"B of shape {B.shape}, expected {(st.ndir, 2 * g * H)}")
        Bc = B.astype(cd, copy=False)
        Wb, Rb = Bc[:, : g * H], Bc[:, g * H:]
    mask = None
    if sequence_lens is not None:
        sl = np.asarray(sequence_lens).reshape(-1).astype(np.int64)
        if sl.shape[0] != batch:
            invalid(node, f"sequence_lens has {sl.shape[0]} entries for a batch of {batch}")
        if sl.size and (sl.min() < 0 or sl.max() > seq):
            invalid(node, f"sequence_lens {sl.tolist()} must lie in [0, {seq}]")
        if not np.all(sl == seq):
            mask = (np.arange(seq)[:, None] < sl[None, :])[..., None]  # (seq, batch, 1)
    inits = []
    for name, t in initial:
        if t is None:
            inits.append(np.zeros((st.ndir, batch, H), cd))
            continue
        tt = t.astype(cd, copy=False)
        if st.layout == 1:
            tt = tt.transpose(1, 0, 2)
        if tt.shape != (st.ndir, batch, H):
            invalid(node, f"{name} of shape {t.shape} does not match {st.ndir} direction(s), batch {batch}, "
                    f"hidden size {H}")
        inits.append(tt)
    return x, W.astype(cd, copy=False), R.astype(cd, copy=False), Wb, Rb, mask, inits, cd, H


def _finish(st, Y, finals, dt):
    """Y (seq, ndir, batch, H); finals: list of (ndir, batch, H)."""
    outs = []
    if st.layout == 1:
        Y = Y.transpose(2, 0, 1, 3)
        finals = [f.transpose(1, 0, 2) for f in finals]
    outs.append(Y.astype(dt, copy=False))
    outs.extend(f.astype(dt, copy=False) for f in finals)
    outs = outs[: max(st.nout, 1)]
    return outs[0] if len(outs) == 1 else tuple(outs)


def _steps(st, d, seq):
    rev = st.direction == "reverse" or (st.direction == "bidirectional" and d == 1)
    return range(seq - 1, -1, -1) if rev else range(seq)


def _clip(st, a):
    return a if st.clip is None else np.clip(a, -st.clip, st.clip)


@op("RNN", since=1)
def rnn_1(node):
    st = _common(node, 1, ["Tanh"])

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        x, Wc, Rc, Wb, Rb, mask, (h0,), cd, H = _prepare(node, st, X, W, R, B, sequence_lens,
                                                         [("initial_h", initial_h)])
        seq, batch = x.shape[:2]
        Y = np.zeros((seq, st.ndir, batch, H), cd)
        hs = []
        for d in range(st.ndir):
            f = st.acts[d]
            xw = x @ Wc[d].T + (Wb[d] + Rb[d])  # (seq, batch, H)
            Rt = Rc[d].T
            h = h0[d]
            for t in _steps(st, d, seq):
                hn = f(_clip(st, xw[t] + h @ Rt))
                hn, h = _masked(mask, t, hn, h)
                Y[t, d] = hn
            hs.append(h)
        return _finish(st, Y, [np.stack(hs)], X.dtype)

    return run


def _masked(mask, t, hn, h):
    """Step t's output and carried state: rows past their sequence length output 0 and keep h."""
    if mask is None:
        return hn, hn
    hn = np.where(mask[t], hn, 0)
    return hn, np.where(mask[t], hn, h)


@op("GRU", since=1)
def gru_1(node):
    st = _common(node, 3, ["Sigmoid", "Tanh"])
    lbr = bool(node.attr("linear_before_reset", 0))

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        x, Wc, Rc, Wb, Rb, mask, (h0,), cd, H = _prepare(node, st, X, W, R, B, sequence_lens,
                                                         [("initial_h", initial_h)])
        seq, batch = x.shape[:2]
        Y = np.zeros((seq, st.ndir, batch, H), cd)
        hs = []
        for d in range(st.ndir):
            f, g = st.acts[2 * d], st.acts[2 * d + 1]
            xw = x @ Wc[d].T + Wb[d]  # (seq, batch, 3H): z, r, h
            Rz, Rr, Rh = Rc[d][:H].T, Rc[d][H:2 * H].T, Rc[d][2 * H:].T
            Rzr = np.concatenate([Rz, Rr], axis=1)
            rbz, rbh = Rb[d][: 2 * H], Rb[d][2 * H:]
            h = h0[d]
            for t in _steps(st, d, seq):
                a = xw[t]
                zr = f(_clip(st, a[:, : 2 * H] + h @ Rzr + rbz))
                z, r = zr[:, :H], zr[:, H:]
                if lbr:
                    hh = g(_clip(st, a[:, 2 * H:] + r * (h @ Rh + rbh)))
                else:
                    hh = g(_clip(st, a[:, 2 * H:] + (r * h) @ Rh + rbh))
                hn = (1 - z) * hh + z * h
                hn, h = _masked(mask, t, hn, h)
                Y[t, d] = hn
            hs.append(h)
        return _finish(st, Y, [np.stack(hs)], X.dtype)

    return run


@op("LSTM", since=1)
def lstm_1(node):
    st = _common(node, 4, ["Sigmoid", "Tanh", "Tanh"])
    input_forget = bool(node.attr("input_forget", 0))

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        x, Wc, Rc, Wb, Rb, mask, (h0, c0), cd, H = _prepare(
            node, st, X, W, R, B, sequence_lens, [("initial_h", initial_h), ("initial_c", initial_c)])
        seq, batch = x.shape[:2]
        if P is not None:
            if P.shape != (st.ndir, 3 * H):
                invalid(node, f"P of shape {P.shape}, expected {(st.ndir, 3 * H)}")
            Pc = P.astype(cd, copy=False)
        Y = np.zeros((seq, st.ndir, batch, H), cd)
        hs, cs = [], []
        for d in range(st.ndir):
            f, g, hact = st.acts[3 * d], st.acts[3 * d + 1], st.acts[3 * d + 2]
            xw = x @ Wc[d].T + (Wb[d] + Rb[d])  # (seq, batch, 4H): i, o, f, c
            Rt = Rc[d].T
            if P is not None:
                pi, po, pf = Pc[d][:H], Pc[d][H:2 * H], Pc[d][2 * H:]
            h, c = h0[d], c0[d]
            for t in _steps(st, d, seq):
                a = xw[t] + h @ Rt
                ai, ao, af, ac = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
                if P is not None:
                    ai = ai + pi * c
                    af = af + pf * c
                i = f(_clip(st, ai))
                fg = (1 - i) if input_forget else f(_clip(st, af))
                cc = g(_clip(st, ac))
                cn = fg * c + i * cc
                if P is not None:
                    ao = ao + po * cn
                o = f(_clip(st, ao))
                hn = o * hact(cn)
                if mask is not None:
                    hn = np.where(mask[t], hn, 0)
                    h = np.where(mask[t], hn, h)
                    c = np.where(mask[t], cn, c)
                else:
                    h, c = hn, cn
                Y[t, d] = hn
            hs.append(h)
            cs.append(c)
        return _finish(st, Y, [np.stack(hs), np.stack(cs)], X.dtype)

    return run
