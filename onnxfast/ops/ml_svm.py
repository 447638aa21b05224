"""Kernels of the ai.onnx.ml support vector machines: SVMClassifier and SVMRegressor.

This module owns the SVM kernels (LINEAR, POLY, RBF, SIGMOID), libsvm's one-vs-one decision values,
votes, Platt scaling (prob_a / prob_b) and pairwise-coupling probabilities, the liblinear layout
(no support vectors), one-class regressors and the score post transforms of onnxruntime's ML kernels
(ml_common.h), which differ from the other ML operators' in places: PROBIT uses Winitzki's erfinv
approximation, SOFTMAX_ZERO keeps onnxruntime's arithmetic, and binary SVC scores have their own
two-column conventions.

Everything follows onnxruntime 1.32's CPU kernels: the input is cast to float32 first, attribute sizes
are checked when the session is created, and the arithmetic is onnxruntime's float32 arithmetic step by
step (MLAS' sgemm accumulation order with fused multiply-adds, its tanh and logistic approximations,
Eigen's pow, libsvm's float32 coupling iterations), so scores usually agree to the last bit. Products
too big for that (N x M x F above _SEQUENTIAL_DOT_LIMIT) go through BLAS, a few ulps apart.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .. import dtypes, errors
from ..registry import op
from ._common import invalid, node_label
from .ml import _check_post, _obj, _probit, _strs

ML = "ai.onnx.ml"
F32 = np.float32

_KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")
# onnxruntime registers SVMClassifier for these input types, SVMRegressor for float only.
_CLASSIFIER_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64)
_CLASSIFIER_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _floats(node, name, required=False) -> np.ndarray:
    v = node.attrs.get(name)
    if v is None:
        if required:
            invalid(node, f"attribute '{name}' is required", errors.InvalidModel)
        return np.zeros(0, F32)
    return np.asarray(v, dtype=F32).reshape(-1)


# ----------------------------------------------------------------------------------------------
# float32 arithmetic as onnxruntime's CPU kernels do it (MLAS on x86-64 with FMA): products of
# float32 values are exact in float64, so rounding a float64 a * b + c to float32 is a fused
# multiply-add.

_SEQUENTIAL_DOT_LIMIT = 1 << 26  # N * M * K above this: BLAS (the last bits may then differ)
_ROW_BLOCK = 1 << 18  # elements of an (rows, M) block computed at once


def _fma(a, b, c) -> np.ndarray:
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(F32)


def _stride_k(m: int, k: int) -> int:
    """The slice of K one pass of MLAS' sgemm accumulates (MlasSgemmOperation: 128 x 128 strides, the K
    stride doubled while the N stride halves for narrow outputs)."""
    stride_n, stride_k = 128, 128
    if m >= k:
        while stride_k // 2 >= k:
            stride_n *= 2
            stride_k //= 2
    else:
        while stride_n > 16 and stride_n // 2 >= m:
            stride_k *= 2
            stride_n //= 2
    return stride_k


def _gemm(x: np.ndarray, w: np.ndarray, alpha=None, c=None, exact=None) -> np.ndarray:
    """alpha * x @ w.T + c for x (N, K), w (M, K) float32, as onnxruntime's Gemm computes it with MLAS:
    a float32 accumulator with one fused multiply-add per k, slice by slice of K, each slice's sum added
    to the output with alpha in a fused multiply-add; the output starts at c (c == 0: onnxruntime
    passes no c and the first slice is only scaled). ``exact`` False: BLAS instead (big products)."""
    n, k = x.shape
    m = w.shape[0]
    if exact is None:
        exact = n * m * max(k, 1) <= _SEQUENTIAL_DOT_LIMIT
    if not exact:
        acc = (x @ w.T).astype(F32)
        if c is not None and c != 0:
            return _fma(acc, F32(1) if alpha is None else alpha, c)
        return acc if alpha is None else (acc * F32(alpha)).astype(F32)
    a = F32(1) if alpha is None else F32(alpha)
    out = None if c is None or c == 0 else np.full((n, m), F32(c), F32)
    x64 = x.astype(np.float64)
    w64 = w.astype(np.float64)
    step = _stride_k(m, k)
    for b in range(0, k, step):
        part = np.zeros((n, m), F32)
        for j in range(b, min(b + step, k)):
            part = (np.multiply.outer(x64[:, j], w64[:, j]) + part).astype(F32)
        out = (part * a).astype(F32) if out is None else _fma(part, a, out)
    if out is None:
        out = np.zeros((n, m), F32)
    return out


_TANH = [F32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                          5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                          4.89352455891786e-03, 1.19825839466702e-06, 1.18534705686654e-04,
                          2.26843463243900e-03, 4.89352518554385e-03)]
_LOGISTIC = [F32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
                              8.51377133304701e-03, 2.48287947061529e-01, 6.10247389755681e-13,
                              5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
                              1.16817656904453e-01, 9.93151921023180e-01)]


def _mlas_tanh(v: np.ndarray) -> np.ndarray:
    """MlasComputeTanh: Eigen's rational approximation on [-9, 9] (NaN stays NaN)."""
    v = np.clip(np.asarray(v, F32), F32(-9), F32(9))
    p = v * v
    num = _fma(_TANH[0], p, _TANH[1])
    for c in _TANH[2:7]:
        num = _fma(num, p, c)
    num = num * v
    den = _fma(_TANH[7], p, _TANH[8])
    for c in _TANH[9:]:
        den = _fma(den, p, c)
    return (num / den).astype(F32)


def _mlas_logistic(v: np.ndarray) -> np.ndarray:
    """MlasComputeLogistic: Eigen's rational approximation on [-18, 18], clamped to [0, 1]."""
    v = np.clip(np.asarray(v, F32), F32(-18), F32(18))
    p = v * v
    num = _fma(p, _LOGISTIC[0], _LOGISTIC[1])
    for c in _LOGISTIC[2:5]:
        num = _fma(num, p, c)
    num = num * v
    den = _fma(p, _LOGISTIC[5], _LOGISTIC[6])
    for c in _LOGISTIC[7:]:
        den = _fma(den, p, c)
    out = num / den + F32(0.5)
    return np.where(out < 0, F32(0), np.where(out > 1, F32(1), out)).astype(F32)


def _expf(v: np.ndarray) -> np.ndarray:
    return np.exp(np.asarray(v, F32).astype(np.float64)).astype(F32)


class _Kernel:
    """The kernel of an SVM node: kernel_type and kernel_params [gamma, coef0, degree]."""

    def __init__(self, node):
        kind = _text(node.attr("kernel_type", "LINEAR"))
        if kind not in _KERNELS:
            invalid(node, f"unknown kernel_type {kind!r} (expected one of {', '.join(_KERNELS)})",
                    errors.InvalidModel)
        params = node.attrs.get("kernel_params")
        if params is None:  # onnxruntime reads it unconditionally
            invalid(node, "attribute 'kernel_params' is required", errors.InvalidModel)
        params = [float(p) for p in params]
        if len(params) not in (0, 3):
            invalid(node, f"kernel_params must be empty or have 3 values [gamma, coef0, degree], "
                          f"got {len(params)}", errors.InvalidModel)
        self.kind = kind
        self.gamma, self.coef0, self.degree = (F32(p) for p in (params or [0.0, 0.0, 0.0]))

    def __call__(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """k(x_n, v_m) for x (N, F) and vectors (M, F) float32 -> (N, M) float32: LINEAR x.v,
        POLY (gamma x.v + coef0)^degree, RBF exp(-gamma |x - v|^2), SIGMOID tanh(gamma x.v + coef0)."""
        n, m = x.shape[0], vectors.shape[0]
        exact = n * m * max(x.shape[1], 1) <= _SEQUENTIAL_DOT_LIMIT
        rows = max(1, _ROW_BLOCK // max(m, 1))
        if n <= rows:
            return self._block(x, vectors, exact)
        out = np.empty((n, m), F32)
        for r in range(0, n, rows):
            out[r:r + rows] = self._block(x[r:r + rows], vectors, exact)
        return out

    def _block(self, x: np.ndarray, vectors: np.ndarray, exact: bool) -> np.ndarray:
        if self.kind == "RBF":  # float32 sums of squares, feature by feature, then expf
            acc = np.zeros((x.shape[0], vectors.shape[0]), F32)
            for j in range(x.shape[1]):
                d = np.subtract.outer(x[:, j], vectors[:, j])
                acc = acc + d * d
            return _expf(-self.gamma * acc)
        if self.kind == "LINEAR":
            return _gemm(x, vectors, exact=exact)
        out = _gemm(x, vectors, self.gamma, self.coef0, exact=exact)
        if self.kind == "SIGMOID":
            return _mlas_tanh(out)
        if self.degree == 2:
            return out * out
        if self.degree == 3:
            return out * out * out
        d = float(self.degree)
        if d.is_integer() and 0 <= d <= 7:  # Eigen's pow: squarings for small integer exponents
            e = int(d)
            res = out if e & 1 else np.ones_like(out)
            sq = out
            e >>= 1
            while e:
                sq = sq * sq
                if e & 1:
                    res = res * sq
                e >>= 1
            return res
        return np.power(out.astype(np.float64), d).astype(F32)


def _features(node, X, expected: int, allowed: tuple) -> np.ndarray:
    """The input as float32 (N, F), checked the way onnxruntime checks it (``allowed``: numpy dtypes)."""
    x = np.asarray(X)
    if x.dtype not in allowed:
        raise errors.InvalidType(f"{node_label(node)}: input of type {x.dtype} is not supported "
                                 f"(expected {', '.join(str(t) for t in allowed)})")
    if x.ndim not in (1, 2):
        invalid(node, f"input shape must have 1 or 2 dimensions, got {x.ndim} (shape {tuple(x.shape)})")
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.shape[1] != expected:
        invalid(node, f"the input has {x.shape[1]} features, the model expects {expected} "
                      f"(input shape {tuple(np.shape(X))})")
    return x.astype(F32, copy=False)


def _check_input_type(node, allowed: tuple, unsupported_ok: tuple = ()) -> None:
    """Session-creation check of input 0's element type (when known): a type outside the schema is an
    invalid model, a schema type onnxruntime has no kernel for is an unsupported operator."""
    t = node.input_types[0] if node.input_types else None
    if t is None or t in allowed:
        return
    name = f"tensor({dtypes.type_name(t)})"
    if t in unsupported_ok:
        raise errors.UnsupportedOperator(
            f"{node_label(node)}: no kernel for input type {name} (onnxruntime implements "
            f"{node.op_type} for {', '.join(f'tensor({dtypes.type_name(a)})' for a in allowed)} only)")
    invalid(node, f"input type {name} is not allowed for {node.op_type}", errors.InvalidModel)


# ----------------------------------------------------------------------------------------------
# score transforms, float32 as in onnxruntime's ml_common.h


def _logistic(s: np.ndarray) -> np.ndarray:
    """ComputeLogistic (the scalar one): 1 / (1 + exp(-|s|)), mirrored for negative s."""
    s = np.asarray(s, F32)
    v = (F32(1) / (F32(1) + _expf(-np.abs(s)))).astype(F32)
    return np.where(s < 0, F32(1) - v, v).astype(F32)


def _max_element(s: np.ndarray) -> np.ndarray:
    """Per row, the index std::max_element picks: the first maximum, a NaN never replacing the
    current best (and kept when it comes first)."""
    best = np.zeros(s.shape[0], np.int64)
    top = s[:, 0].copy() if s.shape[1] else np.zeros(s.shape[0], s.dtype)
    for j in range(1, s.shape[1]):
        up = top < s[:, j]
        best = np.where(up, j, best)
        top = np.where(up, s[:, j], top)
    return best


def _row_max(s: np.ndarray) -> np.ndarray:
    """onnxruntime's softmax maximum: the largest value above -FLT_MAX, NaNs skipped."""
    top = np.full((s.shape[0], 1), -np.finfo(F32).max, F32)
    for j in range(s.shape[1]):
        top = np.where(s[:, j:j + 1] > top, s[:, j:j + 1], top)
    return top


def _softmax_f32(s: np.ndarray, zero: bool) -> np.ndarray:
    """ComputeSoftmax / ComputeSoftmaxZero, float32 element by element. SOFTMAX_ZERO scales the values
    within 1e-7 of 0 (and NaNs) by exp(-max) instead of exponentiating them, and leaves them out of the sum."""
    vmax = _row_max(s)
    total = np.zeros((s.shape[0], 1), F32)
    e = np.empty_like(s)
    for j in range(s.shape[1]):
        col = s[:, j:j + 1]
        ex = _expf(col - vmax)
        if zero:
            nz = (col > F32(1e-7)) | (col < F32(-1e-7))
            e[:, j:j + 1] = np.where(nz, ex, col * _expf(-vmax))
            total = np.where(nz, total + ex, total).astype(F32)
        else:
            e[:, j:j + 1] = ex
            total = (total + ex).astype(F32)
    return (e / total).astype(F32)


def _transform_rows(post: str, s: np.ndarray) -> np.ndarray:
    """The post transform of rows of two or more scores (N, C) float32 (batched_update_scores_inplace)."""
    if post == "NONE":
        return s
    if post == "PROBIT":
        return _probit(s)
    if post == "LOGISTIC":
        return _mlas_logistic(s)
    if post == "SOFTMAX_ZERO":
        return _softmax_f32(s, True)
    c = s.shape[1]
    n_scores = s.size
    # onnxruntime hands wide rows (and many narrow ones) to MLAS' softmax; float64 here (the last bit may differ)
    if c >= 5 or (c == 2 and n_scores >= 32 * 1024) or (c in (3, 4) and n_scores >= 16 * 1024):
        s64 = s.astype(np.float64)
        e = np.exp(s64 - _row_max(s).astype(np.float64))
        return (e / e.sum(axis=1, keepdims=True)).astype(F32)
    return _softmax_f32(s, False)


def _sigmoid_probability(score: np.ndarray, a: F32, b: F32) -> np.ndarray:
    """Platt scaling, float32: 1 - logistic(score * A + B), clipped to [1e-7, 1 - 1e-7]."""
    val = (score * a + b).astype(F32)
    p = F32(1) - _logistic(val)
    # std::max / std::min: a NaN stays NaN
    p = np.where(p < F32(1e-7), F32(1e-7), p)
    hi = F32(1) - F32(1e-7)
    return np.where(hi < p, hi, p).astype(F32)


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """Class probabilities from pairwise ones (Wu, Lin and Weng's second method, libsvm's
    multiclass_probability): r (N, k, k) float32 with r[i, j] = P(i beats j), result (N, k) float32.
    Each row iterates until its own stopping test passes (at most 100 rounds), in float32."""
    n, k = r.shape[0], r.shape[1]
    Q = np.zeros((n, k, k), F32)
    for i in range(k):
        for j in range(i):
            Q[:, i, i] += r[:, j, i] * r[:, j, i]
            Q[:, i, j] = Q[:, j, i]
        for j in range(i + 1, k):
            Q[:, i, i] += r[:, j, i] * r[:, j, i]
            Q[:, i, j] = -r[:, j, i] * r[:, i, j]
    p = np.full((n, k), F32(1) / F32(k), F32)
    eps = F32(0.005) / F32(k)
    active = np.arange(n)
    one, two = F32(1), F32(2)
    for _ in range(100):
        if not active.size:
            break
        q = Q[active]
        pa = p[active]
        qp = np.zeros((active.size, k), F32)
        pqp = np.zeros(active.size, F32)
        for i in range(k):
            acc = np.zeros(active.size, F32)
            for j in range(k):
                acc = acc + q[:, i, j] * pa[:, j]
            qp[:, i] = acc
            pqp = pqp + pa[:, i] * acc
        max_err = np.zeros(active.size, F32)
        for i in range(k):  # a NaN error is never larger: NaN probabilities stop at once
            err = np.abs(qp[:, i] - pqp)
            max_err = np.where(err > max_err, err, max_err)
        done = max_err < eps
        go = ~done
        if go.any():
            q, pa, qp, pqp = q[go], pa[go], qp[go], pqp[go]
            for i in range(k):
                diff = (-qp[:, i] + pqp) / q[:, i, i]
                pa[:, i] = pa[:, i] + diff
                d1 = one + diff
                pqp = (pqp + diff * (diff * q[:, i, i] + two * qp[:, i])) / d1 / d1
                for j in range(k):
                    qp[:, j] = (qp[:, j] + diff * q[:, i, j]) / d1
                    pa[:, j] = pa[:, j] / d1
            p[active[go]] = pa
        active = active[go]
    return p


# ----------------------------------------------------------------------------------------------
# SVMClassifier


@op("SVMClassifier", since=1, domain=ML)
def svmclassifier_1(node):
    kernel = _Kernel(node)
    post = _text(node.attr("post_transform", "NONE"))
    _check_post(node, post)
    _check_input_type(node, _CLASSIFIER_TYPES)
    vpc = [int(v) for v in (node.attrs.get("vectors_per_class") or [])]
    prob_a = _floats(node, "prob_a")
    prob_b = _floats(node, "prob_b")
    sv = _floats(node, "support_vectors")
    rho = _floats(node, "rho", required=True)
    coef = _floats(node, "coefficients", required=True)
    ls = node.attrs.get("classlabels_strings")
    li = node.attrs.get("classlabels_ints")
    if ls:  # the string labels win when both are given (as in onnxruntime)
        labels = _obj(_strs(ls))
    elif li:
        labels = np.asarray(li, dtype=np.int64)
    else:
        invalid(node, "one of classlabels_strings and classlabels_ints is required", errors.InvalidModel)
    k = len(labels)
    if k >= 65536:
        invalid(node, f"{k} classes: at most 65535 are supported", errors.InvalidModel)
    if prob_a.size != prob_b.size:
        invalid(node, f"prob_a has {prob_a.size} values but prob_b {prob_b.size}", errors.InvalidModel)
    if coef.size == 0:
        invalid(node, "coefficients is empty", errors.InvalidModel)
    for i, v in enumerate(vpc):
        if v < 0:
            invalid(node, f"vectors_per_class[{i}] is negative ({v})", errors.InvalidModel)
    n_vectors = sum(vpc)
    have_proba = prob_a.size > 0
    n_pairs = k * (k - 1) // 2
    if n_vectors > 0:
        svc = True
        if len(vpc) != k:
            invalid(node, f"vectors_per_class has {len(vpc)} values for {k} class labels", errors.InvalidModel)
        if sv.size % n_vectors:
            invalid(node, f"support_vectors has {sv.size} values, not a multiple of the {n_vectors} "
                          "support vectors", errors.InvalidModel)
        n_features = sv.size // n_vectors
        if coef.size < (k - 1) * n_vectors:
            invalid(node, f"coefficients has {coef.size} values, {(k - 1) * n_vectors} expected "
                          f"({k - 1} rows of {n_vectors} support vectors)", errors.InvalidModel)
        if rho.size < n_pairs:
            invalid(node, f"rho has {rho.size} values, {n_pairs} expected (one per pair of classes)",
                    errors.InvalidModel)
        if have_proba and prob_a.size < n_pairs:
            invalid(node, f"prob_a and prob_b have {prob_a.size} values, {n_pairs} expected "
                          "(one per pair of classes)", errors.InvalidModel)
        vectors = sv[:n_vectors * n_features].reshape(n_vectors, n_features)
        starts = np.concatenate([[0], np.cumsum(vpc)]).astype(np.int64)
        coef_rows = coef[:(k - 1) * n_vectors].reshape(max(k - 1, 0), n_vectors)
    else:
        svc = False
        if rho.size < 1:
            invalid(node, "rho must have at least one value", errors.InvalidModel)
        n_features = coef.size // k
        W = coef[:k * n_features].reshape(k, n_features)
        all_positive = bool(np.all(coef >= 0))

    def run(X):
        x = _features(node, X, n_features, _CLASSIFIER_DTYPES)
        n = x.shape[0]
        if not svc:
            s = _gemm(x, W, c=rho[0])
            best = _max_element(s)
            idx = best
            if k == 2 and not have_proba and n:
                top = s[np.arange(n), best]
                pos = (top >= F32(0.5)) if all_positive else (top > 0)
                idx = np.where(pos, 1, best)
            scores = _transform_rows(post, s) if k >= 2 else (_probit(s) if post == "PROBIT" else s)
            return labels[idx], scores.astype(F32)
        K = kernel(x, vectors)  # (N, V)
        dec = np.zeros((n, n_pairs), np.float64)
        votes = np.zeros((n, k), np.int64)
        p = 0
        for i in range(k - 1):
            si, ei = starts[i], starts[i + 1]
            for j in range(i + 1, k):
                sj, ej = starts[j], starts[j + 1]
                # float32 products summed in float64: class i's support vectors, class j's, then rho
                d = (K[:, si:ei] * coef_rows[j - 1, si:ei]).astype(np.float64).sum(axis=1)
                d += (K[:, sj:ej] * coef_rows[i, sj:ej]).astype(np.float64).sum(axis=1)
                d += np.float64(rho[p])
                dec[:, p] = d
                win = d > 0
                votes[:, i] += win
                votes[:, j] += ~win
                p += 1
        idx = np.argmax(votes, axis=1) if n else np.zeros(0, np.int64)
        lab = labels[idx]
        d32 = dec.astype(F32)
        if have_proba:
            r = np.zeros((n, k, k), F32)
            p = 0
            for i in range(k - 1):
                for j in range(i + 1, k):
                    v = _sigmoid_probability(d32[:, p], prob_a[p], prob_b[p])
                    r[:, i, j] = v
                    r[:, j, i] = F32(1) - v
                    p += 1
            probs = _pairwise_coupling(r)
            if k >= 2:
                return lab, _transform_rows(post, probs)
            return lab, (_probit(probs) if post == "PROBIT" else probs)
        if k > 2:
            return lab, _transform_rows(post, d32)
        if not n_pairs:
            # a single class: no classifier at all; onnxruntime leaves the scores uninitialized
            return lab, np.zeros((n, 2), F32)
        # one decision value: onnxruntime writes two columns
        s = d32[:, 0]
        if post == "NONE":
            z = np.stack([-s, s], axis=1)
        elif post == "LOGISTIC":
            pos = _logistic(s)
            z = np.stack([F32(1) - pos, pos], axis=1)
        elif post == "PROBIT":
            # onnxruntime fills the first column only; the second is left as allocated (0 here)
            z = np.stack([_probit(s), np.zeros(n, F32)], axis=1)
        else:  # SOFTMAX, SOFTMAX_ZERO: [1 - s, s] on the raw decision value
            z = np.stack([F32(1) - s, s], axis=1)
        return lab, z.astype(F32)

    return run


# ----------------------------------------------------------------------------------------------
# SVMRegressor


@op("SVMRegressor", since=1, domain=ML)
def svmregressor_1(node):
    kernel = _Kernel(node)
    post = _text(node.attr("post_transform", "NONE"))
    _check_post(node, post)  # checked, then ignored: onnxruntime applies no post transform here
    _check_input_type(node, (TensorProto.FLOAT,),
                      unsupported_ok=(TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64))
    n_vectors = int(node.attr("n_supports", 0))
    sv = _floats(node, "support_vectors")
    rho = _floats(node, "rho", required=True)
    coef = _floats(node, "coefficients", required=True)
    one_class = int(node.attr("one_class", 0)) != 0
    if coef.size == 0:
        invalid(node, "coefficients is empty", errors.InvalidModel)
    if rho.size == 0:
        invalid(node, "rho is empty", errors.InvalidModel)
    if n_vectors > 0:
        if coef.size < n_vectors:
            invalid(node, f"coefficients has {coef.size} values for {n_vectors} support vectors", errors.InvalidModel)
        if sv.size % n_vectors:
            invalid(node, f"support_vectors has {sv.size} values, not a multiple of n_supports={n_vectors}",
                    errors.InvalidModel)
        n_features = sv.size // n_vectors
        vectors = sv.reshape(n_vectors, n_features)
        weights = coef[:n_vectors].reshape(1, n_vectors)
    else:  # liblinear layout: one coefficient per feature, LINEAR kernel whatever kernel_type says
        n_features = coef.size
        weights = coef.reshape(1, n_features)
    b = rho[0]

    def run(X):
        x = _features(node, X, n_features, (np.dtype(np.float32),))
        if n_vectors > 0:
            y = _gemm(kernel(x, vectors), weights, c=b)
        else:  # onnxruntime's LINEAR kernel with rho[0] as the constant
            y = _gemm(x, weights, c=b)
        if one_class:
            y = np.where(y > 0, F32(1), F32(-1))
        return y.reshape(-1, 1)

    return run
