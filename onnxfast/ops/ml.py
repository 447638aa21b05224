"""Kernels of the ai.onnx.ml domain (traditional ML, as exported by skl2onnx and friends)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import _core, errors
from ..registry import object_op, op
from ._common import invalid, node_label

ML = "ai.onnx.ml"


def _strs(x):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in x]


def _lookup_strs(table: dict, flat: list) -> np.ndarray:
    """table[key] per element of a list of str (or bytes / other objects, compared as their text), -1
    where absent: one C-level map over the common case, the misses looked up again by their text."""
    pos = np.fromiter(map(table.get, flat, itertools.repeat(-1, len(flat))), dtype=np.int64, count=len(flat))
    for i in np.flatnonzero(pos < 0).tolist():
        v = flat[i]
        if not isinstance(v, str):
            pos[i] = table.get(v.decode() if isinstance(v, bytes) else str(v), -1)
    return pos


def _obj(vals):
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


def _float_in(x):
    """Numeric ML inputs (int or float) as a float array (double stays double)."""
    x = np.asarray(x)
    if x.dtype == np.float64:
        return x
    if x.dtype.kind in "iub" or x.dtype.kind == "f":
        return x.astype(np.float32)
    raise errors.InvalidType(f"expected a numeric tensor, got {x.dtype}")


# ----------------------------------------------------------------------------------------------
# simple transforms


@op("ArrayFeatureExtractor", since=1, domain=ML)
def array_feature_extractor_1(node):
    def run(X, Y):
        idx = np.asarray(Y).reshape(-1).astype(np.int64)
        d = X.shape[-1] if X.ndim else 0
        if idx.size and (idx.min() < 0 or idx.max() >= d):
            bad = int(idx[(idx < 0) | (idx >= d)][0])
            raise errors.IndexOutOfRange(
                f"{node_label(node)}: index {bad} is out of range for the last dimension of size {d}")
        out = X[..., idx]
        if X.ndim == 1:
            out = out.reshape(1, -1)
        return out

    return run


@object_op("ArrayFeatureExtractor", since=1, domain=ML)
def array_feature_extractor_objects_1(node):
    """String X: the C++ kernel (numeric X has a native tensor kernel)."""
    return _core.string_feature_extractor_kernel(node_label(node)) if _is_string_input(node) else None


@op("Binarizer", since=1, domain=ML)
def binarizer_1(node):
    thr = float(node.attr("threshold", 0.0))

    def run(X):
        if X.dtype.kind == "f" and np.isnan(X).any():
            raise errors.InvalidArgument(f"{node_label(node)}: X holds NaN at index "
                                         f"{int(np.flatnonzero(np.isnan(X))[0])} (onnxruntime refuses NaN too)")
        return (X > X.dtype.type(thr)).astype(X.dtype)

    return run


@op("Normalizer", since=1, domain=ML)
def normalizer_1(node):
    norm = node.attr("norm", "MAX")
    if norm not in ("MAX", "L1", "L2"):
        invalid(node, f"norm must be MAX, L1 or L2, got {norm!r}", errors.InvalidModel)

    def run(X):
        x = _float_in(X)
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if norm == "MAX":
            d = np.max(x2, axis=1, keepdims=True)
        elif norm == "L1":
            d = np.sum(np.abs(x2), axis=1, keepdims=True)
        else:
            d = np.sqrt(np.sum(x2 * x2, axis=1, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(d != 0, x2 / np.where(d != 0, d, 1), x2)
        return y.reshape(x.shape).astype(np.float32)

    return run


@op("Scaler", since=1, domain=ML)
def scaler_1(node):
    scale = np.asarray(node.attr("scale", [1.0]), dtype=np.float32)
    offset = np.asarray(node.attr("offset", [0.0]), dtype=np.float32)

    def run(X):
        x = _float_in(X).astype(np.float32)
        c = x.shape[-1] if x.ndim else 1
        for name, v in (("scale", scale), ("offset", offset)):
            if v.size not in (1, c):
                invalid(node, f"{name} has {v.size} values for {c} features")
        return ((x - offset) * scale).astype(np.float32)

    return run


@op("Imputer", since=1, domain=ML)
def imputer_1(node):
    fvals = node.attr("imputed_value_floats", None)
    ivals = node.attr("imputed_value_int64s", None)
    rf = float(node.attr("replaced_value_float", 0.0))
    ri = int(node.attr("replaced_value_int64", 0))

    def run(X):
        if X.dtype.kind == "f":
            if not fvals:
                invalid(node, "imputed_value_floats is needed for a float input", errors.InvalidModel)
            v = np.asarray(fvals, dtype=X.dtype)
            bad = np.isnan(X) if math.isnan(rf) else (X == X.dtype.type(rf))
        else:
            if not ivals:
                invalid(node, "imputed_value_int64s is needed for an integer input", errors.InvalidModel)
            v = np.asarray(ivals, dtype=X.dtype)
            bad = X == ri
        c = X.shape[-1] if X.ndim else 1
        if v.size not in (1, c):
            invalid(node, f"{v.size} imputed values for {c} features")
        return np.where(bad, v, X).astype(X.dtype, copy=False)

    return run


@op("OneHotEncoder", since=1, domain=ML)
def onehotencoder_1(node):
    cs = node.attr("cats_strings", None)
    ci = node.attr("cats_int64s", None)
    zeros = bool(node.attr("zeros", 1))
    if (cs is None) == (ci is None):
        invalid(node, "exactly one of cats_int64s and cats_strings must be given", errors.InvalidModel)
    cats = _strs(cs) if cs is not None else [int(v) for v in ci]
    table = {k: i for i, k in enumerate(cats)}
    rows = np.vstack([np.eye(len(cats), dtype=np.float32), np.zeros((1, len(cats)), np.float32)])  # -1: zeros

    def run(X):
        flat = np.asarray(X).reshape(-1).tolist()
        if cs is not None:
            pos = _lookup_strs(table, flat)
            keys = flat
        else:
            keys = [int(v) for v in flat]
            pos = np.fromiter((table.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if not zeros and (pos < 0).any():
            raise errors.InvalidArgument(
                f"{node_label(node)}: value {keys[int(np.argmax(pos < 0))]!r} is not a known category (zeros=0)")
        return rows[pos].reshape(tuple(X.shape) + (len(cats),))

    return run


def _is_string_input(node) -> bool:
    t = node.input_types[0] if node.input_types else None
    return t == 8


def _is_number_input(node) -> bool:
    t = node.input_types[0] if node.input_types else None
    return t is not None and t in _NUMBER_TYPES


_NUMBER_TYPES = {1, 2, 3, 4, 5, 6, 7, 11, 12, 13}  # float, (u)int8..64, double


@object_op("OneHotEncoder", since=1, domain=ML)
def onehotencoder_objects_1(node):
    """String categories: the C++ kernel (integer categories have a native tensor kernel)."""
    cs = node.attr("cats_strings", None)
    if cs is None or node.attr("cats_int64s", None) is not None:
        return None
    return _core.onehot_strings_kernel(node_label(node), _strs(cs), bool(node.attr("zeros", 1)))


def _category_tables(node):
    """CategoryMapper's string -> int and int -> string tables (the last of equal keys wins) and defaults."""
    cs = _strs(node.attr("cats_strings", []) or [])
    ci = [int(v) for v in node.attr("cats_int64s", []) or []]
    if len(cs) != len(ci):
        invalid(node, "cats_strings and cats_int64s must have the same length", errors.InvalidModel)
    return dict(zip(cs, ci)), dict(zip(ci, cs)), int(node.attr("default_int64", -1)), \
        node.attr("default_string", "_Unused")


@op("CategoryMapper", since=1, domain=ML)
def categorymapper_1(node):
    s2i, i2s, dint, dstr = _category_tables(node)

    def run(X):
        flat = np.asarray(X).reshape(-1).tolist()
        if X.dtype == object or X.dtype.kind in "US":
            out = np.fromiter((s2i.get(k, dint) for k in _strs(flat)), dtype=np.int64, count=len(flat))
        else:
            out = _obj([i2s.get(int(k), dstr) for k in flat])
        return out.reshape(X.shape)

    return run


@object_op("CategoryMapper", since=1, domain=ML)
def categorymapper_objects_1(node):
    """The C++ kernel, either direction (the input's type, known at session creation, picks it)."""
    s2i, i2s, dint, dstr = _category_tables(node)
    if _is_string_input(node):
        return _core.string_lookup_kernel(node_label(node), list(s2i), np.array(list(s2i.values()), np.int64), dint)
    if node.input_types and node.input_types[0] == 7:
        return _core.number_to_string_kernel(node_label(node), np.array(list(i2s), np.int64), list(i2s.values()),
                                             dstr)
    return None


# ----------------------------------------------------------------------------------------------
# LabelEncoder


def _le_lookup(keys, values, default, out_dtype, nan_keys=True):
    """Return fn(x) mapping an array through keys -> values (vectorized for numeric keys). A NaN key maps
    NaN inputs only where nan_keys (LabelEncoder 4; onnxruntime's earlier versions never match NaN)."""
    if keys.dtype == object:
        table = dict(zip(_strs(keys.tolist()), values.tolist()))

        def fn(x):
            flat = _strs(np.asarray(x).reshape(-1).tolist())
            vals = [table.get(k, default) for k in flat]
            out = _obj(vals) if out_dtype == object else np.asarray(vals, dtype=out_dtype)
            return out.reshape(np.shape(x))

        return fn
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    sv = values[order]
    nan_val = None
    if nan_keys and sk.dtype.kind == "f" and np.isnan(sk).any():
        nan_val = sv[np.isnan(sk)][0]

    def fn(x):
        x = np.asarray(x)
        xk = x.astype(sk.dtype, copy=False) if x.dtype.kind in "iuf" else x
        pos = np.searchsorted(sk, xk)
        posc = np.clip(pos, 0, max(len(sk) - 1, 0))
        if len(sk):
            hit = sk[posc] == xk
            res = np.where(hit, sv[posc], np.asarray(default, dtype=sv.dtype) if out_dtype != object else default)
        else:
            hit = np.zeros(x.shape, bool)
            res = np.full(x.shape, default, dtype=out_dtype)
        if nan_val is not None and xk.dtype.kind == "f":
            res = np.where(np.isnan(xk), nan_val, res)
        if out_dtype == object:
            r = np.empty(x.shape, dtype=object)
            r[...] = res
            return r
        return res.astype(out_dtype, copy=False)

    return fn


def _le_tables(node):
    """LabelEncoder 2+'s (keys, values, default, output dtype) from whichever attributes carry them."""
    a = node.attrs
    keys = values = None
    out_dt = None
    if a.get("keys_tensor") is not None:
        keys = np.asarray(a["keys_tensor"]).reshape(-1)
    for name, dt in (("keys_strings", object), ("keys_int64s", np.int64), ("keys_floats", np.float32)):
        if a.get(name) is not None:
            keys = _obj(_strs(a[name])) if dt is object else np.asarray(a[name], dtype=dt)
    default = None
    if a.get("values_tensor") is not None:
        values = np.asarray(a["values_tensor"]).reshape(-1)
        out_dt = values.dtype
        dt_ = a.get("default_tensor")
        if dt_ is not None:
            default = np.asarray(dt_).reshape(-1)[0]
            default = default.item() if out_dt != object else default
        elif out_dt == object:
            default = "_Unused"
        elif out_dt.kind == "f":
            default = -0.0
        else:
            default = -1
    for name, dt, dname in (("values_strings", object, "default_string"), ("values_int64s", np.int64, "default_int64"),
                            ("values_floats", np.float32, "default_float")):
        if a.get(name) is not None:
            values = _obj(_strs(a[name])) if dt is object else np.asarray(a[name], dtype=dt)
            out_dt = np.dtype(dt)
            default = a.get(dname)
    if keys is None or values is None:
        invalid(node, "keys and values must be given", errors.InvalidModel)
    if keys.shape[0] != values.shape[0]:
        invalid(node, f"{keys.shape[0]} keys but {values.shape[0]} values", errors.InvalidModel)
    if keys.dtype.kind in "US":
        keys = _obj(_strs(keys.tolist()))
    if values.dtype.kind in "US":
        values = _obj(_strs(values.tolist()))
        out_dt = np.dtype(object)
    return keys, values, default, out_dt


def _le1_classes(node):
    """LabelEncoder 1: the classes (index <-> string) and the two defaults."""
    classes = _strs(node.attr("classes_strings", []) or [])
    return classes, int(node.attr("default_int64", -1)), node.attr("default_string", "_Unused")


@op("LabelEncoder", since=1, domain=ML)
def labelencoder_1(node):
    sv = node.since_version
    if sv < 2:
        classes, dint, dstr = _le1_classes(node)
        s2i = {k: i for i, k in enumerate(classes)}
        table = _obj(classes + [dstr])  # index n: the default

        def run1(X):
            if X.dtype == object or X.dtype.kind in "US":
                flat = np.asarray(X).reshape(-1).tolist()
                out = np.fromiter((s2i.get(k, dint) for k in _strs(flat)), dtype=np.int64, count=len(flat))
            else:
                n = len(classes)
                idx = np.asarray(X).reshape(-1).astype(np.int64)
                out = table[np.where((idx >= 0) & (idx < n), idx, n)]
            return out.reshape(X.shape)

        return run1
    keys, values, default, out_dt = _le_tables(node)
    fn = _le_lookup(keys, values, default, out_dt if out_dt != np.dtype(object) else object, nan_keys=sv >= 4)

    def run(X):
        return fn(X)

    return run


_LOOKUP_DTYPES = (np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.float64))


@object_op("LabelEncoder", since=1, domain=ML)
def labelencoder_objects_1(node):
    """The C++ kernel for string keys or string values (numeric -> numeric has a native tensor kernel)."""
    label = node_label(node)
    if node.since_version < 2:
        classes, dint, dstr = _le1_classes(node)
        if _is_string_input(node):
            s2i = {k: i for i, k in enumerate(classes)}  # the last of equal classes wins
            return _core.string_lookup_kernel(label, list(s2i), np.array(list(s2i.values()), np.int64), dint)
        if node.input_types and node.input_types[0] == 7:
            return _core.number_to_string_kernel(label, np.arange(len(classes), dtype=np.int64), classes, dstr)
        return None
    keys, values, default, out_dt = _le_tables(node)
    if keys.dtype == object:
        if not _is_string_input(node) or (values.dtype != object and values.dtype.kind not in "iu"
                                          and values.dtype not in _LOOKUP_DTYPES):
            return None
        table = dict(zip(_strs(keys.tolist()), values.tolist()))  # the last of equal keys wins
        vals = list(table.values()) if values.dtype == object else np.array(list(table.values()), values.dtype)
        return _core.string_lookup_kernel(label, list(table), vals, default)
    if values.dtype != object or keys.dtype not in _LOOKUP_DTYPES or not _is_number_input(node):
        return None
    nan_value = None
    if node.since_version >= 4 and keys.dtype.kind == "f" and np.isnan(keys).any():
        nan_value = values[np.isnan(keys)][0]  # LabelEncoder 4 maps NaN through a NaN key
    return _core.number_to_string_kernel(label, keys, values.tolist(), default, nan_value)


# ----------------------------------------------------------------------------------------------
# post transforms


def _probit(p):
    """onnxruntime's probit, sqrt(2) * erfinv(2p - 1), with Winitzki's closed-form erfinv (a = 0.147) in
    float32 and pi as a float (about 1e-4 relative error; matched so that scores equal onnxruntime's)."""
    f = np.float32
    with np.errstate(divide="ignore", invalid="ignore"):
        x = f(2) * np.asarray(p, f) - f(1)
        sgn = np.where(x < 0, f(-1), f(1)).astype(f)
        lg = np.log(((f(1) - x) * (f(1) + x)).astype(np.float64)).astype(f)  # a correctly rounded logf
        v = f(2) / (f(np.pi) * f(0.147)) + f(0.5) * lg
        v3 = -v + np.sqrt(v * v - (f(1) / f(0.147)) * lg)
        return (f(np.sqrt(2.0)) * (sgn * np.sqrt(v3))).astype(f)


def _post(name, s):
    """Apply a post transform to scores s (N, C) (float64)."""
    if name in ("NONE", 0):
        return s
    if name in ("LOGISTIC", 2):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-s))
    if name in ("SOFTMAX", 1):
        m = np.max(s, axis=1, keepdims=True)
        e = np.exp(s - m)
        return e / e.sum(axis=1, keepdims=True)
    if name in ("SOFTMAX_ZERO", 3):  # (near-)zero scores, classes nothing scored, are scaled, not exponentiated
        m = np.max(s, axis=1, keepdims=True)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            big = np.abs(s) > 1e-7
            e = np.where(big, np.exp(s - m), s * np.exp(-m))
            return e / np.where(big, e, 0).sum(axis=1, keepdims=True)
    if name in ("PROBIT", 4):
        return _probit(s).astype(np.float64)
    raise errors.InvalidModel(f"unknown post_transform {name!r}")


def _check_post(node, name):
    if name not in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT", 0, 1, 2, 3, 4):
        invalid(node, f"unknown post_transform {name!r}", errors.InvalidModel)


# ----------------------------------------------------------------------------------------------
# linear models


def _linear_scores(node, X, W, b):
    """X (n, features) or (features,) times W (outputs, features) plus b, in float64."""
    x = _float_in(X).astype(np.float64)
    x = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    if x.shape[1] != W.shape[1]:
        invalid(node, f"X has {x.shape[1]} features, the model {W.shape[1]}")
    return x @ W.T + b


@op("LinearRegressor", since=1, domain=ML)
def linearregressor_1(node):
    coef = np.asarray(node.attr("coefficients", []), dtype=np.float64)
    targets = int(node.attr("targets", 1))
    icpt = node.attr("intercepts", None)
    post = node.attr("post_transform", "NONE")
    _check_post(node, post)
    if targets <= 0 or coef.size % targets:
        invalid(node, f"{coef.size} coefficients do not split into {targets} targets", errors.InvalidModel)
    W = coef.reshape(targets, -1)
    b = np.asarray(icpt, dtype=np.float64) if icpt else np.zeros(targets)

    def run(X):
        s = _linear_scores(node, X, W, b)
        if targets == 1 and post not in ("PROBIT", 4):  # a single target takes PROBIT only (onnxruntime)
            return s.astype(np.float32)
        return _post(post, s).astype(np.float32)

    return run


@op("LinearClassifier", since=1, domain=ML)
def linearclassifier_1(node):
    coef = np.asarray(node.attr("coefficients", []), dtype=np.float64)
    icpt = node.attr("intercepts", None)
    post = node.attr("post_transform", "NONE")
    _check_post(node, post)
    li = node.attr("classlabels_ints", None)
    ls = node.attr("classlabels_strings", None)
    labels = _obj(_strs(ls)) if ls else np.asarray(li if li else [], dtype=np.int64)
    nlab = len(labels)
    nclass = len(icpt) if icpt else (nlab if nlab else 1)
    if nclass <= 0 or coef.size % nclass:
        invalid(node, f"{coef.size} coefficients do not split into {nclass} classes", errors.InvalidModel)
    W = coef.reshape(nclass, -1)
    b = np.asarray(icpt, dtype=np.float64) if icpt else np.zeros(nclass)

    def run(X):
        s = _linear_scores(node, X, W, b)
        if nclass == 1 and nlab == 2:  # binary: one score for the positive class
            s1 = s[:, 0]
            # onnxruntime's convention: [1 - p, p], p the raw score or its logistic; PROBIT: [probit, 0]
            if post == "PROBIT":
                scores = np.stack([_post(post, s)[:, 0], np.zeros_like(s1)], axis=1)
            else:
                p = _post(post, s)[:, 0] if post == "LOGISTIC" else s1
                scores = np.stack([1 - p, p], axis=1)
            lab = labels[(s1 > 0).astype(np.int64)]
        else:
            scores = _post(post, s)
            lab = labels[np.argmax(s, axis=1)] if nlab else np.argmax(s, axis=1).astype(np.int64)
        return lab, scores.astype(np.float32)

    return run


# ----------------------------------------------------------------------------------------------
# ZipMap


def _zipmap_labels(node) -> list:
    ls = node.attr("classlabels_strings", None)
    li = node.attr("classlabels_int64s", None)
    if (ls is None) == (li is None):
        invalid(node, "exactly one of classlabels_strings and classlabels_int64s must be given", errors.InvalidModel)
    return _strs(ls) if ls is not None else [int(v) for v in li]


@op("ZipMap", since=1, domain=ML)
def zipmap_1(node):
    labels = _zipmap_labels(node)

    def run(X):
        x = np.asarray(X, dtype=np.float32)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != len(labels):
            invalid(node, f"X of shape {X.shape} does not have {len(labels)} columns")
        return _core.zipmap_rows(labels, x)  # [dict(zip(labels, row)) for row in x.tolist()], in C++

    return run


@object_op("ZipMap", since=1, domain=ML)
def zipmap_objects_1(node):
    return _core.zipmap_kernel(node_label(node), _zipmap_labels(node))


# ----------------------------------------------------------------------------------------------
# tree ensembles

_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
          "BRANCH_MEMBER": 6, "LEAF": 7}


class _Forest:
    """Flattened trees: arrays over all nodes; a leaf is a node with mode 7.

    Evaluation walks every (sample, tree) pair one level per step, vectorized."""

    def __init__(self, feat, mode, split, true_id, false_id, missing_true, roots, members=None):
        self.feat = np.asarray(feat, dtype=np.int64)
        self.mode = np.asarray(mode, dtype=np.int64)
        self.split = np.asarray(split, dtype=np.float64)
        self.true_id = np.asarray(true_id, dtype=np.int64)
        self.false_id = np.asarray(false_id, dtype=np.int64)
        self.missing_true = np.asarray(missing_true, dtype=bool)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.members = members or {}  # node -> sorted array of members

    def leaves(self, X):
        """X (N, F) float64 -> leaf node index per (sample, tree): (N, T)."""
        n = X.shape[0]
        cur = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(len(self.mode) + 1):
            m = self.mode[cur]
            active = m != 7
            if not active.any():
                return cur
            f = self.feat[cur]
            v = X[rows, np.where(active, f, 0)]
            s = self.split[cur]
            with np.errstate(invalid="ignore"):
                cond = np.select(
                    [m == 0, m == 1, m == 2, m == 3, m == 4, m == 5],
                    [v <= s, v < s, v >= s, v > s, v == s, v != s], default=False)
            if self.members:
                for nd, vals in self.members.items():
                    at = cur == nd
                    if at.any():
                        cond = np.where(at, np.isin(v, vals), cond)
            cond = cond | (np.isnan(v) & self.missing_true[cur])
            nxt = np.where(cond, self.true_id[cur], self.false_id[cur])
            cur = np.where(active, nxt, cur)
        raise errors.InvalidModel("tree ensemble has a cycle")


def _legacy_tree(node, prefix):
    """Shared parsing of TreeEnsembleRegressor/Classifier: a _Forest and leaf-contribution lists."""
    a = node.attrs

    def get(name, dt):
        t = a.get(name + "_as_tensor")
        v = t if t is not None else a.get(name)
        return None if v is None else np.asarray(v, dtype=dt).reshape(-1)

    treeids = get("nodes_treeids", np.int64)
    nodeids = get("nodes_nodeids", np.int64)
    feats = get("nodes_featureids", np.int64)
    values = get("nodes_values", np.float64)
    modes = [m.decode() if isinstance(m, bytes) else m for m in (a.get("nodes_modes") or [])]
    tids = get("nodes_truenodeids", np.int64)
    fids = get("nodes_falsenodeids", np.int64)
    mvt = get("nodes_missing_value_tracks_true", np.int64)
    if treeids is None or nodeids is None or not modes:
        invalid(node, "nodes_treeids, nodes_nodeids and nodes_modes are required", errors.InvalidModel)
    n = len(treeids)
    if values is None:
        values = np.zeros(n)
    if feats is None:
        feats = np.zeros(n, np.int64)
    key = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(treeids, nodeids))}
    try:
        mode_i = np.asarray([_MODES[m] for m in modes], dtype=np.int64)
    except KeyError as e:
        invalid(node, f"unknown node mode {e.args[0]!r}", errors.InvalidModel)

    def resolve(ids):
        out = np.zeros(n, np.int64)
        for k in range(n):
            if mode_i[k] == 7:
                continue
            kk = key.get((int(treeids[k]), int(ids[k])))
            if kk is None:
                invalid(node, f"node ({treeids[k]}, {nodeids[k]}) points to missing node {ids[k]}", errors.InvalidModel)
            out[k] = kk
        return out

    t_u = resolve(tids)
    f_u = resolve(fids)
    trees = sorted(set(int(t) for t in treeids))
    by_tree: dict[int, list[int]] = {}
    for k, t in enumerate(treeids.tolist()):
        by_tree.setdefault(t, []).append(k)
    inner = mode_i != 7
    pointed = set(t_u[inner].tolist()) | set(f_u[inner].tolist())
    roots = []
    for t in trees:  # the root: the node of the tree no other node points to
        root = next((k for k in by_tree[t] if k not in pointed), None)
        if root is None:
            invalid(node, f"tree {t} has no root (every node is some node's child: a cycle)", errors.InvalidModel)
        roots.append(root)
    forest = _Forest(feats, mode_i, values, t_u, f_u,
                     mvt.astype(bool) if mvt is not None else np.zeros(n, bool), roots)
    # contributions: leaf node index -> list of (target/class id, weight)
    ct = get(prefix + "_treeids", np.int64)
    cn = get(prefix + "_nodeids", np.int64)
    cid = get(prefix + "_ids", np.int64)
    cw = get(prefix + "_weights", np.float64)
    if ct is None or cn is None or cid is None or cw is None:
        invalid(node, f"{prefix}_treeids/_nodeids/_ids/_weights are required", errors.InvalidModel)
    leaf_idx = np.asarray([key.get((int(t), int(i)), -1) for t, i in zip(ct, cn)], dtype=np.int64)
    if (leaf_idx < 0).any():
        invalid(node, f"{prefix}_nodeids names a node that does not exist", errors.InvalidModel)
    if not (len(ct) == len(cn) == len(cid) == len(cw)):
        invalid(node, f"{prefix}_treeids/_nodeids/_ids/_weights must have the same length", errors.InvalidModel)
    return forest, _Leaves(leaf_idx, cid, cw, n), len(trees)


class _Leaves:
    """What the reached leaves contribute: per leaf node, (target, weight) pairs in CSR form."""

    def __init__(self, nodes, targets, weights, n_nodes):
        order = np.argsort(np.asarray(nodes, np.int64), kind="stable")
        self.target = np.asarray(targets, np.int64)[order]
        self.weight = np.asarray(weights, np.float64)[order]
        counts = np.bincount(np.asarray(nodes, np.int64), minlength=n_nodes)
        self.start = np.concatenate([[0], np.cumsum(counts)])
        self.count = counts
        self.positive = bool((self.weight >= 0).all())
        self.named = set(self.target.tolist())

    def aggregate(self, lv, n_out, agg):
        """lv (N, T) reached nodes -> scores (N, n_out) float64 and has-score flags (the kernel's rules)."""
        n = lv.shape[0]
        flat = lv.reshape(-1)
        cnt = self.count[flat]
        rows = np.repeat(np.repeat(np.arange(n), lv.shape[1]), cnt)
        first = np.repeat(self.start[flat], cnt)
        offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        idx = first + offs
        tgt, w = self.target[idx], self.weight[idx]
        has = np.zeros((n, n_out), bool)
        has[rows, tgt] = True
        if agg in ("SUM", "AVERAGE"):
            s = np.zeros((n, n_out))
            np.add.at(s, (rows, tgt), w)
        else:
            s = np.full((n, n_out), np.inf if agg == "MIN" else -np.inf)
            (np.minimum if agg == "MIN" else np.maximum).at(s, (rows, tgt), w)
            s = np.where(has, s, 0.0)
        return s, has


def _finish_targets(s, has, base, agg, post, ntrees):
    """Regression scores (onnxruntime's conventions): base values, AVERAGE over all trees; a single target
    takes only PROBIT of the post transforms."""
    nt = s.shape[1]
    trees = max(ntrees, 1)
    if nt == 1:
        b = base[0] if base.size == 1 else 0.0
        v = s + b if agg == "SUM" else s / trees + b if agg == "AVERAGE" else np.where(has, s + b, b)
        return _post(post, v) if post in ("PROBIT", 4) else v
    b = base if base.size == nt else np.zeros(nt)
    v = s + b if agg == "SUM" else s / trees + b if agg == "AVERAGE" else b + np.where(has, s, 0.0)
    return _post(post, v)


def _finish_classes(s, has, base, post, labels, leaves):
    """Class scores and labels (onnxruntime's conventions for base values and the binary case; see
    csrc/kernels/tree_ensemble.cpp)."""
    n, nc = s.shape
    if nc > 2:
        s = s.copy()
        has = has.copy()
        s[:, :base.size] += base
        has[:, :base.size] = True
        masked = np.where(has, s, -np.inf)
        best = np.argmax(masked, axis=1)
        best = np.where(has.any(axis=1), best, 0)
        z = _post(post, np.where(has, s, 0.0).astype(np.float32).astype(np.float64))
        return labels[best], z
    s0, s1 = s[:, 0].copy(), s[:, 1].copy()
    h0, h1 = has[:, 0], has[:, 1]
    if base.size == 2:
        t1 = np.where(h1, base[1] + s0, s1 + base[1])
        s0 = np.where(h1, -t1, s0 + base[0])
        s1 = t1
        two = np.ones(n, bool)
    elif base.size == 1:
        s0 = s0 + base[0]
        two = h1
    else:
        two = h1
    v0 = np.where(h0, s0, 0.0).astype(np.float32)
    v1 = np.where(h1, s1, 0.0).astype(np.float32)
    binary = len(leaves.named) == 1
    if binary:
        pos = np.where(two & h1, v1, v0)
        lab = labels[(pos > (0.5 if leaves.positive else 0.0)).astype(np.int64)]
    else:
        lab = labels[(v1 > v0).astype(np.int64)]
    z = _post(post, np.stack([v0, v1], axis=1).astype(np.float64))
    # one class scored: onnxruntime's binary row
    v = v0.astype(np.float64)
    if post in ("PROBIT", 4):
        one = np.stack([_post(post, v[:, None])[:, 0], np.full(n, np.nan)], axis=1)
    elif leaves.positive and binary:
        p = _post(post, v[:, None])[:, 0] if post in ("LOGISTIC", 2) else v
        one = np.stack([1.0 - p, p], axis=1)
    elif post in ("LOGISTIC", 2):
        one = np.stack([_post(post, -v[:, None])[:, 0], _post(post, v[:, None])[:, 0]], axis=1)
    else:
        one = np.stack([-v, v], axis=1)
    return lab, np.where(two[:, None], z, one)


def _rows(X):
    """X as (N, features) float64, compared as onnxruntime does: float32 and integer inputs in float32."""
    x = np.asarray(X)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    x = x.astype(np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1 if x.shape[0] else int(np.prod(x.shape[1:])))


@op("TreeEnsemble", since=5, domain=ML)
def treeensemble_5(node):
    a = node.attrs

    def arr(name, dt, required=True):
        v = a.get(name)
        if v is None:
            if required:
                invalid(node, f"attribute {name} is required", errors.InvalidModel)
            return None
        return np.asarray(v, dtype=dt).reshape(-1)

    splits = arr("nodes_splits", np.float64)
    feats = arr("nodes_featureids", np.int64)
    modes = arr("nodes_modes", np.int64)
    tids = arr("nodes_truenodeids", np.int64)
    fids = arr("nodes_falsenodeids", np.int64)
    tleaf = arr("nodes_trueleafs", np.int64).astype(bool)
    fleaf = arr("nodes_falseleafs", np.int64).astype(bool)
    ltarget = arr("leaf_targetids", np.int64)
    lweight = arr("leaf_weights", np.float64)
    roots = arr("tree_roots", np.int64)
    mvt = arr("nodes_missing_value_tracks_true", np.int64, False)
    memb = arr("membership_values", np.float64, False)
    n_targets = int(a.get("n_targets") or (int(ltarget.max()) + 1 if ltarget.size else 1))
    agg = {0: "AVERAGE", 1: "SUM", 2: "MIN", 3: "MAX"}.get(int(a.get("aggregate_function", 1)))
    if agg is None:
        invalid(node, f"unknown aggregate_function {a.get('aggregate_function')}", errors.InvalidModel)
    post = int(a.get("post_transform", 0))
    _check_post(node, post)
    nn_ = len(modes)
    if not all(len(v) == nn_ for v in (splits, feats, tids, fids, tleaf, fleaf)):
        invalid(node, "the nodes_* attributes must all have the same length", errors.InvalidModel)
    nl = len(lweight)
    if len(ltarget) != nl:
        invalid(node, "leaf_targetids and leaf_weights must have the same length", errors.InvalidModel)
    # unified index space: nodes [0, nn_), leaves [nn_, nn_ + nl)
    mode_u = np.concatenate([modes, np.full(nl, 7)])
    t_u = np.concatenate([np.where(tleaf, tids + nn_, tids), np.zeros(nl, np.int64)])
    f_u = np.concatenate([np.where(fleaf, fids + nn_, fids), np.zeros(nl, np.int64)])
    if (t_u[:nn_].max(initial=0) >= nn_ + nl) or (f_u[:nn_].max(initial=0) >= nn_ + nl):
        invalid(node, "a node points past the nodes/leaves", errors.InvalidModel)
    members = {}
    if (modes == 6).any():
        if memb is None:
            invalid(node, "BRANCH_MEMBER nodes need membership_values", errors.InvalidModel)
        groups, curg = [], []
        for v in memb:
            if np.isnan(v):
                groups.append(np.asarray(sorted(curg)))
                curg = []
            else:
                curg.append(v)
        mnodes = np.nonzero(modes == 6)[0]  # in the order BRANCH_MEMBER appears in nodes_modes
        if len(groups) < len(mnodes):
            invalid(node, "membership_values has fewer sets than there are BRANCH_MEMBER nodes", errors.InvalidModel)
        members = {int(nd): groups[i] for i, nd in enumerate(mnodes)}
    forest = _Forest(np.concatenate([feats, np.zeros(nl, np.int64)]), mode_u,
                     np.concatenate([splits, np.zeros(nl)]), t_u, f_u,
                     np.concatenate([mvt.astype(bool) if mvt is not None else np.zeros(nn_, bool),
                                     np.zeros(nl, bool)]), roots, members)
    leaves = _Leaves(np.arange(nl) + nn_, ltarget, lweight, nn_ + nl)
    if ltarget.size and (ltarget.min() < 0 or ltarget.max() >= n_targets):
        invalid(node, f"leaf_targetids must be in [0, {n_targets})", errors.InvalidModel)

    def run(X):
        dt = X.dtype
        x = _rows(X)
        if x.shape[1] and feats.size and feats.max() >= x.shape[1]:
            invalid(node, f"a node tests feature {int(feats.max())} of an input with {x.shape[1]} features")
        s, has = leaves.aggregate(forest.leaves(x), n_targets, agg)
        out = _finish_targets(s, has, np.zeros(0), agg, post, len(roots))
        return out.astype(dt if dt.kind == "f" else np.float32)

    return run


@op("TreeEnsembleRegressor", since=1, domain=ML)
def treeensembleregressor_1(node):
    forest, leaves, ntrees = _legacy_tree(node, "target")
    ntargets = int(node.attr("n_targets", int(max(leaves.named)) + 1 if leaves.named else 1))
    if leaves.named and max(leaves.named) >= ntargets:
        invalid(node, f"a leaf weight is for target {max(leaves.named)} of {ntargets}", errors.InvalidModel)
    agg = node.attr("aggregate_function", "SUM")
    if agg not in ("SUM", "AVERAGE", "MIN", "MAX"):
        invalid(node, f"unknown aggregate_function {agg!r}", errors.InvalidModel)
    post = node.attr("post_transform", "NONE")
    _check_post(node, post)
    base = _base_values(node)

    def run(X):
        x = _rows(_float_in(X))
        s, has = leaves.aggregate(forest.leaves(x), ntargets, agg)
        return _finish_targets(s, has, base, agg, post, ntrees).astype(np.float32)

    return run


@op("TreeEnsembleClassifier", since=1, domain=ML)
def treeensembleclassifier_1(node):
    forest, leaves, ntrees = _legacy_tree(node, "class")
    ls = node.attr("classlabels_strings", None)
    li = node.attr("classlabels_int64s", None)
    labels = _obj(_strs(ls)) if ls else np.asarray(li or [], dtype=np.int64)
    nclass = len(labels)
    if nclass == 0:
        invalid(node, "classlabels_int64s or classlabels_strings is required", errors.InvalidModel)
    if leaves.named and max(leaves.named) >= nclass:
        invalid(node, f"a leaf weight is for class {max(leaves.named)} of {nclass}", errors.InvalidModel)
    post = node.attr("post_transform", "NONE")
    _check_post(node, post)
    base = _base_values(node)

    def run(X):
        x = _rows(_float_in(X))
        s, has = leaves.aggregate(forest.leaves(x), nclass, "SUM")
        lab, z = _finish_classes(s, has, base, post, labels, leaves)
        return lab, z.astype(np.float32)

    return run


def _base_values(node):
    bt = node.attrs.get("base_values_as_tensor")
    return np.asarray(bt if bt is not None else (node.attr("base_values", None) or []), dtype=np.float64).reshape(-1)
