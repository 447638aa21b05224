"""Kernels of the ai.onnx.ml operators that vectorize features: FeatureVectorizer (tensors -> one
float tensor) and the two that read maps, DictVectorizer and CastMap.

A map reaches these kernels as the Python dict the session made of the caller's (see
``InferenceSession._map_feed``): keys int or str, values float (float32 values), in key order, as
onnxruntime's std::map holds them. Behaviour follows onnxruntime 1.32's CPU kernels (feature_vectorizer.cc,
dictvectorizer.h, cast_map.cc), including its padding values (0, "" and CastMap's "0.f") and its
float -> string formatting (std::to_string, "%f").
"""

from __future__ import annotations

import math
import re

import numpy as np
from onnx import TensorProto

from .. import _core, dtypes, errors
from ..registry import object_op, op
from ._common import invalid, node_label
from .ml import _obj, _strs

ML = "ai.onnx.ml"
F32 = np.float32
_INT64_MIN = np.iinfo(np.int64).min


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _map_type(node, i: int = 0):
    """(key element type, value element type) of input ``i`` when the graph declares it a map of tensors,
    else None."""
    types = node.context.get("non_tensor_input_types") or []
    tp = types[i] if i < len(types) else None
    if tp is None or tp.WhichOneof("value") != "map_type":
        return None
    vt = tp.map_type.value_type
    if vt.WhichOneof("value") != "tensor_type":
        return None
    return tp.map_type.key_type, vt.tensor_type.elem_type


def _map_type_str(kv) -> str:
    return f"map({dtypes.type_name(kv[0])},tensor({dtypes.type_name(kv[1])}))"


def _check_map(node, X) -> dict:
    if not isinstance(X, dict):
        raise errors.InvalidType(f"{node_label(node)}: input 0 must be a map (a dict), got {type(X).__name__}")
    return X


# ----------------------------------------------------------------------------------------------
# FeatureVectorizer

_FV_TYPES = (TensorProto.INT32, TensorProto.INT64, TensorProto.FLOAT, TensorProto.DOUBLE)
_FV_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64))


@op("FeatureVectorizer", since=1, domain=ML)
def featurevectorizer_1(node):
    dims = node.attrs.get("inputdimensions")
    if not dims:
        invalid(node, "attribute 'inputdimensions' is required (one width per input)", errors.InvalidModel)
    dims = [int(d) for d in dims]
    for i, d in enumerate(dims):
        if d < 0:
            invalid(node, f"inputdimensions[{i}] is negative ({d})", errors.InvalidModel)
    if node.num_inputs != len(dims):
        invalid(node, f"{node.num_inputs} inputs but inputdimensions has {len(dims)} values", errors.InvalidModel)
    known = [t for t in node.input_types if t is not None]
    for t in known:
        if t not in _FV_TYPES:
            invalid(node, f"input type tensor({dtypes.type_name(t)}) is not allowed (int32, int64, float, double)",
                    errors.InvalidModel)
    if len(set(known)) > 1:  # one type parameter T1 for all the inputs
        names = sorted({f"tensor({dtypes.type_name(t)})" for t in known})
        invalid(node, f"all inputs must have the same element type, got {' and '.join(names)}", errors.InvalidModel)
    total = sum(dims)
    offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)

    def run(*xs):
        if len(xs) != len(dims):
            invalid(node, f"{len(xs)} inputs but inputdimensions has {len(dims)} values")
        arrays = [np.asarray(x) for x in xs]
        for i, a in enumerate(arrays):
            if a.dtype not in _FV_DTYPES:
                raise errors.InvalidType(f"{node_label(node)}: input {i} has type {a.dtype} "
                                         "(expected int32, int64, float32 or float64)")
            if a.dtype != arrays[0].dtype:
                raise errors.InvalidType(f"{node_label(node)}: input {i} has type {a.dtype}, input 0 {arrays[0].dtype} "
                                         "(all inputs must have the same type)")
            if a.ndim == 0:
                invalid(node, f"input {i} must have at least 1 dimension")
        n = 1 if arrays[0].ndim == 1 else arrays[0].shape[0]
        out = np.zeros((n, total), F32)
        for i, a in enumerate(arrays):
            rows = 1 if a.ndim == 1 else a.shape[0]
            if rows != n:
                invalid(node, f"all inputs must have the same batch size: input 0 has {n}, input {i} has {rows}")
            flat = a.reshape(1, -1) if a.ndim == 1 else a.reshape(rows, int(np.prod(a.shape[1:])))
            w = min(flat.shape[1], dims[i])
            out[:, offsets[i]:offsets[i] + w] = flat[:, :w]
        return out

    return run


# ----------------------------------------------------------------------------------------------
# DictVectorizer

# onnxruntime's kernels: map(string, int64 | float | double) and map(int64, string | float | double)
_DV_VALUES = {TensorProto.STRING: (TensorProto.INT64, TensorProto.FLOAT, TensorProto.DOUBLE),
              TensorProto.INT64: (TensorProto.STRING, TensorProto.FLOAT, TensorProto.DOUBLE)}


@op("DictVectorizer", since=1, domain=ML)
def dictvectorizer_1(node):
    sv = node.attrs.get("string_vocabulary")
    iv = node.attrs.get("int64_vocabulary")
    if not sv and not iv:
        invalid(node, "one of string_vocabulary and int64_vocabulary is required", errors.InvalidModel)
    mt = _map_type(node)
    out_code = None
    if mt is not None:
        key, value = mt
        if value not in _DV_VALUES.get(key, ()):
            invalid(node, f"input type {_map_type_str(mt)} is not allowed (map(string, int64|float|double) or "
                          "map(int64, string|float|double))", errors.InvalidModel)
        if key == TensorProto.STRING and not sv:
            invalid(node, f"input type {_map_type_str(mt)} needs string_vocabulary", errors.InvalidModel)
        if key == TensorProto.INT64 and not iv:
            invalid(node, f"input type {_map_type_str(mt)} needs int64_vocabulary", errors.InvalidModel)
        out_code = value
    svocab = _strs(sv) if sv else None
    ivocab = [int(v) for v in iv] if iv else None

    def run(X):
        m = _check_map(node, X)
        first = next(iter(m), None)
        if first is None or isinstance(first, str):
            vocab = svocab
            if vocab is None:
                invalid(node, "a map with string keys needs string_vocabulary")
        else:
            vocab = ivocab
            if vocab is None:
                invalid(node, "a map with int64 keys needs int64_vocabulary")
        code = out_code
        if code is None:
            v0 = next(iter(m.values()), 0.0)
            code = TensorProto.STRING if isinstance(v0, str) else TensorProto.FLOAT
        if code == TensorProto.STRING:
            return _obj([m.get(k, "") for k in vocab]).reshape(1, -1)
        dt = dtypes.np_dtype(code)
        return np.asarray([m.get(k, 0) for k in vocab], dtype=dt).reshape(1, len(vocab))

    return run


@object_op("DictVectorizer", since=1, domain=ML)
def dictvectorizer_objects_1(node):
    """The C++ kernel for maps of float values (the maps a feed can hold) with one vocabulary, writing
    float or double; other declared types take the numpy kernel."""
    sv = node.attrs.get("string_vocabulary")
    iv = node.attrs.get("int64_vocabulary")
    mt = _map_type(node)
    if bool(sv) == bool(iv) or mt is None or mt[1] not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        return None
    if mt[0] != (TensorProto.STRING if sv else TensorProto.INT64):
        return None  # the numpy factory explains the mismatch
    return _core.dict_vectorizer_kernel(node_label(node), _strs(sv) if sv else None,
                                        [int(v) for v in iv] if iv else None, mt[1])


# ----------------------------------------------------------------------------------------------
# CastMap

_CAST_TO = ("TO_FLOAT", "TO_STRING", "TO_INT64")
_MAP_FORM = ("DENSE", "SPARSE")
_FLOAT_PREFIX = re.compile(r"\s*([+-]?(?:inf(?:inity)?|nan(?:\([0-9a-z_]*\))?|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?))",
                           re.IGNORECASE)
_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")


def _stof(s: str) -> float:
    """std::stof: the longest float prefix after white space; an error when there is none or it
    overflows float."""
    m = _FLOAT_PREFIX.match(s)
    if not m:
        raise ValueError(f"no number in {s!r}")
    text = m.group(1)
    v = float(text.split("(")[0]) if "nan" in text.lower() else float(text)
    if math.isfinite(v) and (abs(v) > float(np.finfo(F32).max)):
        raise ValueError(f"{s!r} is out of the range of float")
    return float(F32(v))


def _stoll(s: str) -> int:
    m = _INT_PREFIX.match(s)
    if not m:
        raise ValueError(f"no integer in {s!r}")
    v = int(m.group(1))
    if not _INT64_MIN <= v <= np.iinfo(np.int64).max:
        raise ValueError(f"{s!r} is out of the range of int64")
    return v


def _float_to_int64(v: float) -> int:
    """static_cast<int64_t>(float) as x86 does it: truncation, INT64_MIN when out of range or NaN."""
    if not math.isfinite(v) or not -9.223372036854775808e18 <= v < 9.223372036854775808e18:
        return _INT64_MIN
    return int(v)


def _float_to_string(v: float) -> str:
    """std::to_string(float): printf's %f of the value."""
    if math.isnan(v):
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    return "%f" % v


@op("CastMap", since=1, domain=ML)
def castmap_1(node):
    cast_to = _text(node.attr("cast_to", "TO_FLOAT"))
    map_form = _text(node.attr("map_form", "DENSE"))
    max_map = int(node.attr("max_map", 1))
    if cast_to not in _CAST_TO:
        invalid(node, f"unknown cast_to {cast_to!r} (expected TO_FLOAT, TO_STRING or TO_INT64)", errors.InvalidModel)
    if map_form not in _MAP_FORM:
        invalid(node, f"unknown map_form {map_form!r} (expected DENSE or SPARSE)", errors.InvalidModel)
    if map_form == "SPARSE" and max_map <= 0:
        invalid(node, f"max_map must be > 0 when map_form is SPARSE, got {max_map}", errors.InvalidModel)
    mt = _map_type(node)
    if mt is not None and (mt[0] != TensorProto.INT64 or mt[1] not in (TensorProto.FLOAT, TensorProto.STRING)):
        invalid(node, f"input type {_map_type_str(mt)} is not allowed (map(int64,tensor(float)) or "
                      "map(int64,tensor(string)))", errors.InvalidModel)

    if cast_to == "TO_FLOAT":
        pad, dt = 0.0, F32
        conv_f, conv_s = (lambda v: v), _stof
    elif cast_to == "TO_INT64":
        pad, dt = 0, np.int64
        conv_f, conv_s = _float_to_int64, _stoll
    else:
        pad, dt = "0.f", object
        conv_f, conv_s = _float_to_string, (lambda v: v)

    def run(X):
        m = _check_map(node, X)
        items = sorted(m.items())
        for k, _ in items[:1]:
            if isinstance(k, str):
                raise errors.InvalidType(f"{node_label(node)}: the map has string keys; CastMap reads int64 keys")
        strings = bool(items) and isinstance(items[0][1], str)
        conv = conv_s if strings else conv_f
        try:
            if map_form == "DENSE":
                vals = [conv(v) for _, v in items]
            else:
                if items and items[0][0] < 0:
                    invalid(node, f"negative keys are not allowed in SPARSE form (key {items[0][0]})")
                vals = [pad] * max_map
                for k, v in items:
                    if k < max_map:
                        vals[k] = conv(v)
        except ValueError as e:
            if isinstance(e, errors.OnnxfastError):
                raise
            invalid(node, f"cannot cast a map value: {e}")
        if dt is object:
            return _obj(vals).reshape(1, -1)
        return np.asarray(vals, dtype=dt).reshape(1, len(vals))

    return run


@object_op("CastMap", since=1, domain=ML)
def castmap_objects_1(node):
    """The C++ kernel for map(int64, float) inputs (string-valued maps take the numpy kernel, which
    parses numbers as std::stof / std::stoll do)."""
    cast_to = _text(node.attr("cast_to", "TO_FLOAT"))
    map_form = _text(node.attr("map_form", "DENSE"))
    max_map = int(node.attr("max_map", 1))
    mt = _map_type(node)
    if (mt != (TensorProto.INT64, TensorProto.FLOAT) or cast_to not in _CAST_TO or map_form not in _MAP_FORM
            or (map_form == "SPARSE" and max_map <= 0)):
        return None  # the numpy factory accepts or explains it
    return _core.cast_map_kernel(node_label(node), _CAST_TO.index(cast_to), map_form == "SPARSE", max_map)
