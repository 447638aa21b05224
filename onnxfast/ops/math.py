"""Elementwise math, comparisons, logic, activations, Cast, MatMul/Gemm/Einsum and friends."""

from __future__ import annotations

import functools
import math

import ml_dtypes
import numpy as np
from onnx import TensorProto

from .. import errors
from ..dtypes import np_dtype
from ..registry import REGISTRY, op
from ._common import invalid, normalize_axis

_SCIPY_ERF = []  # scipy.special.erf once looked up (imported lazily: it is slow to import and starts BLAS threads)


def _scipy_erf():
    if not _SCIPY_ERF:
        try:
            from scipy.special import erf as f  # type: ignore
        except Exception:  # scipy is not a dependency
            f = None
        _SCIPY_ERF.append(f)
    return _SCIPY_ERF[0]


# ----------------------------------------------------------------------------------------------
# helpers

_FLOATISH = {"f", "c"}


def _is_float(dt) -> bool:
    dt = np.dtype(dt)
    return dt.kind in _FLOATISH or dt in _ML_FLOATS


_ML_FLOATS = {
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e4m3fnuz),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e5m2fnuz),
}
for _n in ("float4_e2m1fn", "float8_e8m0fnu"):
    if hasattr(ml_dtypes, _n):
        _ML_FLOATS.add(np.dtype(getattr(ml_dtypes, _n)))


def _keep(y, dt):
    """Make sure ``y`` is an ndarray of dtype ``dt``."""
    if not isinstance(y, np.ndarray) or y.dtype != dt:
        y = np.asarray(y).astype(dt, copy=False)
    return y


def _unary(fn):
    """Wrap a numpy ufunc so the output keeps the input dtype and is an ndarray."""

    def run(x):
        return _keep(fn(x), x.dtype)

    return run


def _unary_f32_compute(fn):
    """For ops numpy lacks for low-precision types (bfloat16, float8): compute in float32."""

    def run(x):
        dt = x.dtype
        if dt in _ML_FLOATS:
            return fn(x.astype(np.float32)).astype(dt)
        return _keep(fn(x), dt)

    return run


def _binary_factory(name, fn, since=1, bool_out=False, check=None):
    """Register a broadcasting binary op. ``check(a, b, node)`` may validate inputs."""

    def factory(node):
        legacy = node.since_version < 7
        bcast = bool(node.attr("broadcast", 0)) if legacy else False
        axis = node.attr("axis", None) if legacy else None

        def run(a, b):
            if legacy and bcast and axis is not None and b.ndim < a.ndim:
                ax = axis + a.ndim if axis < 0 else axis
                b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
            if check is not None:
                check(a, b, node)
            try:
                y = fn(a, b)
            except ValueError as e:
                invalid(node, f"cannot broadcast shapes {a.shape} and {b.shape} ({e})")
            if bool_out:
                return _keep(y, np.bool_)
            return _keep(y, a.dtype)

        return run

    REGISTRY.register(name, factory, since=since)
    return factory


def _erf(x):
    if np.asarray(x).dtype == np.float64:  # double precision: scipy when present
        f = _scipy_erf()
        if f is not None:
            return f(x)
    # Fallback: series for small |x|, Abramowitz-Stegun 7.1.26-like continued approx for the rest.
    x64 = np.asarray(x, dtype=np.float64)
    ax = np.abs(x64)
    # Taylor series (good for |x| < 0.5)
    x2 = x64 * x64
    term = x64.copy()
    s = x64.copy()
    for n in range(1, 12):
        term = term * (-x2) / n
        s = s + term / (2 * n + 1)
    small = s * (2.0 / math.sqrt(math.pi))
    # Numerical Recipes erfc approximation (fractional error < 1.2e-7)
    t = 1.0 / (1.0 + 0.5 * ax)
    poly = -ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    big = np.sign(x64) * (1.0 - erfc)
    return np.where(ax < 0.5, small, big)


def erf(x):
    dt = x.dtype
    xx = x.astype(np.float32) if dt in _ML_FLOATS or dt == np.float16 else x
    return _keep(_erf(xx), dt)


# ----------------------------------------------------------------------------------------------
# arithmetic


def _int_div(a, b, node):
    dt = np.result_type(a, b)
    if np.any(b == 0):
        raise errors.IntegerDivisionByZero(f"{node.op_type} node '{node.name}': integer division by zero")
    if dt.kind == "i":
        mn = np.iinfo(dt).min
        if np.any((a == mn) & (b == -1)):
            raise errors.IntegerOverflow(
                f"{node.op_type} node '{node.name}': integer overflow ({mn} / -1 does not fit in {dt})"
            )
        q = np.floor_divide(a, b)
        # floor -> truncation toward zero: add one where the division is inexact and signs differ
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        if np.any(fix):
            q = q + fix.astype(dt)
        return q
    return np.floor_divide(a, b)


def _div(a, b, node):
    if a.dtype.kind in "iu":
        return _int_div(a, b, node)
    return np.divide(a, b)


def _arith_factory(name, fn):
    def factory(node):
        legacy = node.since_version < 7
        bcast = bool(node.attr("broadcast", 0)) if legacy else False
        axis = node.attr("axis", None) if legacy else None
        label = f"{node.op_type} node '{node.name}'"

        def run(a, b):
            if legacy and bcast and axis is not None and b.ndim < a.ndim:
                ax = axis + a.ndim if axis < 0 else axis
                b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
            try:
                y = fn(a, b, node)
            except ValueError as e:
                raise errors.InvalidArgument(
                    f"{label}: cannot broadcast shapes {a.shape} and {b.shape} ({e})"
                ) from None
            return _keep(y, a.dtype)

        return run

    return factory


for _name, _fn in (
    ("Add", lambda a, b, n: np.add(a, b)),
    ("Sub", lambda a, b, n: np.subtract(a, b)),
    ("Mul", lambda a, b, n: np.multiply(a, b)),
    ("Div", _div),
):
    REGISTRY.register(_name, _arith_factory(_name, _fn), since=1)


@op("Mod", since=10)
def mod_10(node):
    fmod = int(node.attr("fmod", 0))
    label = f"{node.op_type} node '{node.name}'"

    def run(a, b):
        dt = a.dtype
        if dt.kind in "iu":
            if np.any(b == 0):
                raise errors.IntegerDivisionByZero(f"{label}: integer modulo by zero")
            y = np.fmod(a, b) if fmod else np.mod(a, b)
        elif fmod:
            y = np.fmod(a, b)
        else:
            y = np.mod(a, b)
        return _keep(y, dt)

    return run


@op("Pow", since=1)
def pow_1(node):
    # A constant scalar exponent of 2, 3, 0.5 or 1 (GELU's x**3, variances) skips numpy's generic
    # power, which is an order of magnitude slower.
    ey = node.const_inputs.get(1)
    special = None
    # (The native kernel, csrc/kernels/elementwise.cpp, takes the same shortcuts under the same
    # run-time condition, so both paths give the same bits.)
    if ey is not None and np.size(ey) == 1:
        special = float(np.asarray(ey).reshape(-1)[0])
        if special not in (1.0, 2.0, 3.0, 0.5):
            special = None

    def run(x, y):
        if special is not None and x.dtype.kind == "f" and x.dtype.itemsize >= 4 and x.ndim >= np.ndim(ey):
            if special == 2.0:
                return x * x
            if special == 3.0:
                return x * x * x
            if special == 0.5:
                return np.sqrt(x)
            return x.copy()
        dt = x.dtype
        if dt.kind in "iu" and y.dtype.kind in "iu":
            if np.any(y < 0):
                r = np.power(x.astype(np.float64), y.astype(np.float64))
            else:
                r = np.power(x, y.astype(dt) if y.dtype != dt else y)
        elif dt.kind in "iu":
            r = np.power(x.astype(np.float64), y.astype(np.float64))
        elif dt in _ML_FLOATS:
            r = np.power(x.astype(np.float32), y.astype(np.float32))
        else:
            r = np.power(x, y) if y.dtype == dt else np.power(x, y.astype(np.float64) if y.dtype.kind in "iu" else y)
        return _keep(r, dt)

    return run


# ----------------------------------------------------------------------------------------------
# unary math


def _reg_unary(name, fn, since=1):
    REGISTRY.register(name, lambda node, _f=fn: _f, since=since)


_reg_unary("Abs", _unary(np.abs))
_reg_unary("Neg", _unary(np.negative))
_reg_unary("Exp", _unary_f32_compute(np.exp))
_reg_unary("Log", _unary_f32_compute(np.log))
_reg_unary("Sqrt", _unary_f32_compute(np.sqrt))
_reg_unary("Erf", erf, since=9)
_reg_unary("Reciprocal", _unary_f32_compute(np.reciprocal))
_reg_unary("Floor", _unary_f32_compute(np.floor))
_reg_unary("Ceil", _unary_f32_compute(np.ceil))
_reg_unary("Round", _unary_f32_compute(np.round), since=11)
_reg_unary("Sign", _unary(np.sign), since=9)
_reg_unary("Sin", _unary_f32_compute(np.sin), since=7)
_reg_unary("Cos", _unary_f32_compute(np.cos), since=7)
_reg_unary("Tan", _unary_f32_compute(np.tan), since=7)
_reg_unary("Asin", _unary_f32_compute(np.arcsin), since=7)
_reg_unary("Acos", _unary_f32_compute(np.arccos), since=7)
_reg_unary("Atan", _unary_f32_compute(np.arctan), since=7)
_reg_unary("Sinh", _unary_f32_compute(np.sinh), since=9)
_reg_unary("Cosh", _unary_f32_compute(np.cosh), since=9)
_reg_unary("Asinh", _unary_f32_compute(np.arcsinh), since=9)
_reg_unary("Acosh", _unary_f32_compute(np.arccosh), since=9)
_reg_unary("Atanh", _unary_f32_compute(np.arctanh), since=9)
_reg_unary("Not", lambda x: np.logical_not(x))
_reg_unary("BitwiseNot", _unary(np.invert), since=18)
_reg_unary("IsNaN", lambda x: np.isnan(x.astype(np.float32) if x.dtype in _ML_FLOATS else x), since=9)


@op("IsInf", since=10)
def isinf_10(node):
    pos = bool(node.attr("detect_positive", 1))
    neg = bool(node.attr("detect_negative", 1))

    def run(x):
        if x.dtype in _ML_FLOATS:
            x = x.astype(np.float32)
        if pos and neg:
            return np.isinf(x)
        if pos:
            return np.isposinf(x)
        if neg:
            return np.isneginf(x)
        return np.zeros(x.shape, dtype=np.bool_)

    return run


# ----------------------------------------------------------------------------------------------
# activations


def _act(name, make, since=1):
    """``make(node)`` returns f(x) computed in float; dtype is preserved."""

    def factory(node):
        f = make(node)

        def run(x):
            dt = x.dtype
            if dt in _ML_FLOATS:
                return f(x.astype(np.float32)).astype(dt)
            return _keep(f(x), dt)

        return run

    REGISTRY.register(name, factory, since=since)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def relu(x):
    """x < 0 ? 0 : x, as onnxruntime: NaN and -0 pass through (np.maximum(x, 0) turns -0 into 0)."""
    return np.where(x < 0, np.zeros((), x.dtype), x)


def _softplus(x):
    return np.logaddexp(0, x)


_act("Relu", lambda n: relu)
_act("Sigmoid", lambda n: _sigmoid)
_act("Tanh", lambda n: np.tanh)
_act("Softplus", lambda n: _softplus)
_act("Softsign", lambda n: lambda x: x / (1 + np.abs(x)))
_act("Mish", lambda n: lambda x: x * np.tanh(_softplus(x)), since=18)


def _make_leaky(n):
    alpha = float(n.attr("alpha", 0.01))
    return lambda x: np.where(x < 0, x * alpha, x)


_act("LeakyRelu", _make_leaky)


def _make_elu(n):
    alpha = float(n.attr("alpha", 1.0))
    return lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_act("Elu", _make_elu)


def _make_selu(n):
    alpha = float(n.attr("alpha", 1.67326319217681884765625))
    gamma = float(n.attr("gamma", 1.05070102214813232421875))
    return lambda x: gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_act("Selu", _make_selu)


def _make_celu(n):
    alpha = float(n.attr("alpha", 1.0))
    return lambda x: np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha))


_act("Celu", _make_celu, since=12)


def _make_thresholded(n):
    alpha = float(n.attr("alpha", 1.0))
    return lambda x: np.where(x > alpha, x, 0)


_act("ThresholdedRelu", _make_thresholded, since=10)


def _make_hardsigmoid(n):
    alpha = float(n.attr("alpha", 0.2))
    beta = float(n.attr("beta", 0.5))
    return lambda x: np.clip(x * alpha + beta, 0, 1)


_act("HardSigmoid", _make_hardsigmoid)
_act("HardSwish", lambda n: lambda x: x * np.clip(x * (1 / 6) + 0.5, 0, 1), since=14)


def _make_shrink(n):
    bias = float(n.attr("bias", 0.0))
    lambd = float(n.attr("lambd", 0.5))
    return lambda x: np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))


_act("Shrink", _make_shrink, since=9)


def _make_swish(n):
    alpha = float(n.attr("alpha", 1.0))
    return lambda x: x * _sigmoid(x * alpha)


_act("Swish", _make_swish, since=24)


def _make_gelu(n):
    approx = n.attr("approximate", "none")
    if approx == "tanh":
        c = math.sqrt(2 / math.pi)
        return lambda x: 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x * x * x)))
    if approx != "none":
        n.fail(f"unknown approximate={approx!r}")
    r = 1 / math.sqrt(2)
    return lambda x: 0.5 * x * (1 + _erf(x * r))


_act("Gelu", _make_gelu, since=20)


@op("PRelu", since=1)
def prelu(node):
    label = f"{node.op_type} node '{node.name}'"
    legacy = node.since_version < 7  # before opset 7: a 1-D slope is per channel (axis 1)

    def run(x, slope):
        if legacy and slope.ndim == 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1] and slope.shape[0] != 1:
            slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
        try:
            y = np.where(x < 0, x * slope, x)
        except ValueError:
            raise errors.InvalidArgument(
                f"{label}: slope of shape {slope.shape} does not broadcast to X of shape {x.shape}"
            ) from None
        return _keep(y, x.dtype)

    return run


# ----------------------------------------------------------------------------------------------
# comparisons, logic, bitwise


def _cmp(name, fn, since=1):
    _binary_factory(name, fn, since=since, bool_out=True)


_cmp("Equal", np.equal)
_cmp("Less", np.less)
_cmp("Greater", np.greater)
_cmp("LessOrEqual", np.less_equal, since=12)
_cmp("GreaterOrEqual", np.greater_equal, since=12)
_cmp("And", np.logical_and)
_cmp("Or", np.logical_or)
_cmp("Xor", np.logical_xor)
_binary_factory("BitwiseAnd", np.bitwise_and, since=18)
_binary_factory("BitwiseOr", np.bitwise_or, since=18)
_binary_factory("BitwiseXor", np.bitwise_xor, since=18)


@op("BitShift", since=11)
def bitshift_11(node):
    direction = node.attr("direction", "")
    if direction not in ("LEFT", "RIGHT"):
        node.fail(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    fn = np.left_shift if direction == "LEFT" else np.right_shift

    def run(x, y):
        dt = x.dtype
        yy = y.astype(dt, copy=False)
        bits = dt.itemsize * 8
        big = yy >= bits
        if not np.any(big):
            return _keep(fn(x, yy), dt)
        if direction == "RIGHT" and dt.kind == "i":
            # arithmetic shift by >= width leaves only the sign
            return _keep(fn(x, np.minimum(yy, bits - 1).astype(dt)), dt)
        r = fn(x, np.where(big, 0, yy).astype(dt))
        return _keep(np.where(big, np.zeros((), dt), r), dt)

    return run


# ----------------------------------------------------------------------------------------------
# Where, Clip, variadic


@op("Where", since=9)
def where_9(node):
    label = f"{node.op_type} node '{node.name}'"

    def run(c, x, y):
        try:
            r = np.where(c, x, y)
        except ValueError:
            raise errors.InvalidArgument(
                f"{label}: shapes {c.shape}, {x.shape}, {y.shape} do not broadcast"
            ) from None
        return _keep(r, x.dtype)

    return run


def _clip_run(x, lo, hi):
    dt = x.dtype
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(dt, copy=False).reshape(()))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(dt, copy=False).reshape(()))
    if y is x:
        return x
    return _keep(y, dt)


@op("Clip", since=1)
def clip_1(node):
    lo = node.attr("min", None)
    hi = node.attr("max", None)

    def run(x):
        return _clip_run(x, lo, hi)

    return run


@op("Clip", since=11)
def clip_11(node):
    def run(x, lo=None, hi=None):
        if lo is not None and lo.size != 1:
            invalid(node, f"min must be a scalar, got shape {lo.shape}")
        if hi is not None and hi.size != 1:
            invalid(node, f"max must be a scalar, got shape {hi.shape}")
        return _clip_run(x, lo, hi)

    return run


def _variadic(name, fn, mean=False, since=1):
    def factory(node):
        label = f"{node.op_type} node '{node.name}'"

        def run(*xs):
            xs = [x for x in xs if x is not None]
            if not xs:
                invalid(node, "needs at least one input")
            dt = xs[0].dtype
            if len(xs) == 1:
                r = xs[0]
            else:
                try:
                    r = functools.reduce(fn, xs)
                except ValueError:
                    raise errors.InvalidArgument(
                        f"{label}: input shapes {[x.shape for x in xs]} do not broadcast"
                    ) from None
            if mean:
                r = r / len(xs) if len(xs) > 1 else r
            return _keep(r, dt)

        return run

    REGISTRY.register(name, factory, since=since)


_variadic("Max", np.maximum)
_variadic("Min", np.minimum)
_variadic("Sum", np.add)
_variadic("Mean", np.add, mean=True)


# ----------------------------------------------------------------------------------------------
# Cast


_F8_MAX = {}
for _t, _n in (
    (TensorProto.FLOAT8E4M3FN, "float8_e4m3fn"),
    (TensorProto.FLOAT8E4M3FNUZ, "float8_e4m3fnuz"),
    (TensorProto.FLOAT8E5M2, "float8_e5m2"),
    (TensorProto.FLOAT8E5M2FNUZ, "float8_e5m2fnuz"),
):
    _F8_MAX[_t] = float(ml_dtypes.finfo(getattr(ml_dtypes, _n)).max)

_STRING = TensorProto.STRING
_INT4 = {TensorProto.INT4, TensorProto.UINT4}
for _n in ("INT2", "UINT2"):
    if hasattr(TensorProto, _n):
        _INT4.add(getattr(TensorProto, _n))
_F4 = getattr(TensorProto, "FLOAT4E2M1", 23)
_E8M0 = getattr(TensorProto, "FLOAT8E8M0", 24)


def _format_float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    return repr(float(v))


def _to_string(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1)
    if x.dtype == object:
        return x
    if x.dtype.kind == "b":
        vals = [str(int(v)) for v in flat.tolist()]
    elif x.dtype.kind in "iu":
        vals = [str(v) for v in flat.tolist()]
    elif x.dtype in _ML_FLOATS or x.dtype.kind == "f":
        if x.dtype == np.float64:
            vals = [_format_float(v) for v in flat.tolist()]
        else:
            # shortest representation that round-trips in the source precision
            f32 = flat.astype(np.float32) if x.dtype != np.float32 else flat
            vals = []
            for v in f32:
                fv = float(v)
                if math.isnan(fv) or math.isinf(fv):
                    vals.append(_format_float(fv))
                else:
                    vals.append(np.format_float_positional(v, unique=True, trim="-") if abs(fv) < 1e16 and (fv == 0 or abs(fv) >= 1e-4) else np.format_float_scientific(v, unique=True, trim="-"))
    else:
        vals = [str(v) for v in flat.tolist()]
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out.reshape(x.shape)


def _parse_float(s) -> float:
    if isinstance(s, bytes):
        s = s.decode("utf-8")
    t = str(s).strip()
    u = t.upper()
    if u in ("INF", "+INF", "INFINITY", "+INFINITY"):
        return math.inf
    if u in ("-INF", "-INFINITY"):
        return -math.inf
    if u in ("NAN", "+NAN", "-NAN"):
        return math.nan
    return float(t)


def _from_string(x: np.ndarray, to_dt, node) -> np.ndarray:
    flat = x.reshape(-1).tolist()
    try:
        if to_dt.kind in "iu":
            vals = []
            for s in flat:
                st = s.decode() if isinstance(s, bytes) else str(s)
                try:
                    vals.append(int(st.strip()))
                except ValueError:
                    vals.append(int(_parse_float(st)))
            arr = np.array(vals, dtype=object)
            info = np.iinfo(to_dt)
            arr = np.array([((v - info.min) % (info.max - info.min + 1)) + info.min for v in vals], dtype=to_dt)
            return arr.reshape(x.shape)
        if to_dt.kind == "b":
            return np.array([_parse_float(s) != 0 for s in flat], dtype=np.bool_).reshape(x.shape)
        vals = np.array([_parse_float(s) for s in flat], dtype=np.float64)
    except ValueError as e:
        invalid(node, f"cannot parse string as a number: {e}")
    return vals.reshape(x.shape)


def _cast_float8(x: np.ndarray, to: int, saturate: bool) -> np.ndarray:
    dt = np_dtype(to)
    src = x
    if src.dtype.kind not in "f":
        src = src.astype(np.float32)
    if saturate:
        m = _F8_MAX[to]
        # clip only after rounding semantics: values whose rounding stays <= max are unaffected
        src = np.clip(src, -m, m)  # NaN stays NaN; inf -> max
        return src.astype(dt)
    y = src.astype(dt)
    if to == TensorProto.FLOAT8E5M2:
        return y
    # e4m3fn / fnuz / e5m2fnuz: non-saturated overflow and inf -> NaN (ml_dtypes does that already,
    # but make sure for inf)
    if np.any(np.isinf(src)):
        y = np.where(np.isinf(src), np.array(np.nan, dtype=np.float32).astype(dt), y).astype(dt)
    return y


def _cast_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    bits = np.ascontiguousarray(x.astype(np.float32)).view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.int32)
    frac = bits & 0x7FFFFF
    special = exp == 0xFF
    isnan = special & (frac != 0)
    if round_mode == "up":
        inc = (frac != 0) & ~special
    elif round_mode == "down":
        inc = np.zeros(exp.shape, dtype=np.bool_)
    elif round_mode == "nearest":
        half = (frac & 0x400000) != 0
        rest = (frac & 0x3FFFFF) != 0
        inc = half & (rest | (exp > 0)) & ~special
    else:
        raise errors.InvalidArgument(f"Cast: unknown round_mode {round_mode!r}")
    e = exp + inc.astype(np.int32)
    if saturate:
        e = np.where(special, np.where(isnan, 0xFF, 0xFE), np.minimum(e, 0xFE))
    else:
        e = np.where(special | (e > 0xFE), 0xFF, e)
    return e.astype(np.uint8).view(np_dtype(_E8M0)).reshape(x.shape)


def _cvt(v: np.ndarray, bits: int) -> np.ndarray:
    """x86's truncating float -> int32 / int64 conversion: NaN and values out of range give the
    minimum (the 'integer indefinite')."""
    lo = -float(2 ** (bits - 1))
    idt = np.int32 if bits == 32 else np.int64
    ok = (v >= lo) & (v < -lo)  # NaN fails both
    return np.where(ok, np.trunc(np.where(ok, v, 0.0)), lo).astype(idt)


def _float_to_int(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Float -> integer with onnxfast's rule for what the spec leaves undefined (out of range, NaN,
    inf): the results onnxruntime and numpy give on x86-64, computed explicitly so every CPU gives
    them, as the native Cast does (csrc/kernels/elementwise.cpp): int64 via cvt64; uint64 / uint32
    take values >= 2^63 / 2^31 as cvt(x - 2^63) ^ 2^63 (resp. 32 bits), others as cvt64 / cvt32; the
    narrower types keep the low bits of cvt32. (onnxruntime's own results differ between its vector
    loop and its scalar tail; this is its vector loop's rule.)"""
    v = x.astype(np.float64)
    if dt == np.int64:
        return _cvt(v, 64)
    if dt == np.uint64:
        big = v >= 2.0 ** 63
        return np.where(big, _cvt(v - 2.0 ** 63, 64).view(np.uint64) ^ np.uint64(2 ** 63), _cvt(v, 64).view(np.uint64))
    if dt == np.uint32:
        big = v >= 2.0 ** 31
        return np.where(big, _cvt(v - 2.0 ** 31, 32).view(np.uint32) ^ np.uint32(2 ** 31), _cvt(v, 32).view(np.uint32))
    return _cvt(v, 32).astype(dt)  # int32 and narrower: the low bits (numpy's integer casts wrap)


def cast_array(x: np.ndarray, to: int, saturate: bool = True, node=None, round_mode: str = "up") -> np.ndarray:
    """Cast ``x`` to ONNX element type ``to`` following the Cast spec.

    Floating point to an integer type is undefined by the spec when the value is out of range.
    onnxfast's choice is what onnxruntime gives on x86-64 (``_float_to_int``; NaN and inf included),
    the same on every CPU; for the 4- and 2-bit types the value is
    rounded to nearest even and then keeps its low bits (wraps), the same rule as an
    integer-to-integer cast. The conformance runner does not compare these elements
    (tests/conformance/runner.py, ``_undefined_cast_mask``)."""
    dt = np_dtype(to)
    if x.dtype == dt and to != _STRING:
        return x
    if to == _STRING:
        return _to_string(x)
    if x.dtype == object or x.dtype.kind in "US":
        parsed = _from_string(x, dt, node)
        if parsed.dtype == dt:
            return parsed
        x = parsed
    if to in _F8_MAX:
        return _cast_float8(x, to, saturate)
    if to == _E8M0:
        return _cast_e8m0(x, saturate, round_mode)
    if to == _F4:
        src = x.astype(np.float32)
        if saturate:
            src = np.clip(src, -6.0, 6.0)
        return src.astype(dt)
    if to in _INT4:
        info = ml_dtypes.iinfo(dt)
        lo, hi = int(info.min), int(info.max)
        if x.dtype.kind in "fc" or x.dtype in _ML_FLOATS:
            v = np.rint(x.astype(np.float64))
            span = hi - lo + 1
            v = np.nan_to_num(v).astype(np.int64)
        else:
            v = x.astype(np.int64)
            span = hi - lo + 1
        v = ((v - lo) % span) + lo
        return v.astype(dt)
    if dt.kind == "b":
        if x.dtype in _ML_FLOATS:
            x = x.astype(np.float32)
        return x != 0
    if (x.dtype in _ML_FLOATS or x.dtype.kind == "f") and dt.kind in "iu":
        return _float_to_int(x, dt)
    if x.dtype.kind in "iub" and dt in _ML_FLOATS:
        return x.astype(np.float32).astype(dt)
    with np.errstate(all="ignore"):
        return x.astype(dt)


@op("Cast", since=1)
def cast_1(node):
    to = node.attr("to")
    if isinstance(to, str):  # opset 1 used a string name
        to = getattr(TensorProto, to.upper(), None)
    if to is None:
        node.fail("missing attribute 'to'")
    to = int(to)
    saturate = bool(node.attr("saturate", 1)) if node.since_version >= 19 else True
    round_mode = node.attr("round_mode", "up")
    try:
        np_dtype(to)
    except ValueError:
        node.fail(f"unsupported target element type {to}", errors.NotImplementedFeature)

    def run(x):
        return cast_array(x, to, saturate, node, round_mode)

    return run




@op("CastLike", since=15)
def castlike_15(node):
    saturate = bool(node.attr("saturate", 1)) if node.since_version >= 19 else True
    round_mode = node.attr("round_mode", "up")
    to = node.input_types[1] if len(node.input_types) > 1 else None

    def run(x, like):
        from ..dtypes import onnx_code

        t = to or onnx_code(like.dtype)
        if not t:
            invalid(node, f"unsupported target dtype {like.dtype}", errors.InvalidType)
        return cast_array(x, t, saturate, node, round_mode)

    return run


# ----------------------------------------------------------------------------------------------
# MatMul, Gemm, Einsum, MatMulInteger, Det


def _low_precision(dt) -> bool:
    return dt in _ML_FLOATS or dt == np.float16


@op("MatMul", since=1)
def matmul_1(node):
    label = f"{node.op_type} node '{node.name}'"

    def run(a, b):
        dt = a.dtype
        try:
            if _low_precision(dt):
                return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(dt)
            return _keep(np.matmul(a, b), dt)
        except ValueError:
            raise errors.InvalidArgument(
                f"{label}: incompatible shapes {a.shape} and {b.shape}"
            ) from None

    return run


@op("Gemm", since=1)
def gemm_1(node):
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    ta = bool(node.attr("transA", 0))
    tb = bool(node.attr("transB", 0))
    label = f"{node.op_type} node '{node.name}'"

    def run(a, b, c=None):
        dt = a.dtype
        if a.ndim != 2 or b.ndim != 2:
            raise errors.InvalidArgument(f"{label}: A and B must be 2-D, got {a.shape} and {b.shape}")
        A = a.T if ta else a
        B = b.T if tb else b
        if A.shape[1] != B.shape[0]:
            raise errors.InvalidArgument(
                f"{label}: inner dimensions differ: A{' (transposed)' if ta else ''} {A.shape} "
                f"vs B{' (transposed)' if tb else ''} {B.shape}"
            )
        if _low_precision(dt):
            A = A.astype(np.float32)
            B = B.astype(np.float32)
        y = A @ B
        if alpha != 1.0:
            y = y * alpha if dt.kind not in "iu" else (y * alpha)
        if c is not None and beta != 0.0:
            cc = c.astype(y.dtype) if _low_precision(dt) else c
            try:
                y = y + (cc * beta if beta != 1.0 else cc)
            except ValueError:
                raise errors.InvalidArgument(
                    f"{label}: C of shape {c.shape} does not broadcast to {y.shape}"
                ) from None
        return _keep(y, dt)

    return run


@op("Einsum", since=12)
def einsum_12(node):
    eq = node.attr("equation", "").replace(" ", "")
    label = f"{node.op_type} node '{node.name}'"

    def run(*xs):
        dt = xs[0].dtype
        args = [x.astype(np.float32) for x in xs] if _low_precision(dt) else xs
        try:
            y = np.einsum(eq, *args, optimize=len(xs) > 2)
        except ValueError as e:
            raise errors.InvalidArgument(
                f"{label}: equation {eq!r} does not match shapes {[x.shape for x in xs]} ({e})"
            ) from None
        return _keep(y, dt)

    return run


@op("MatMulInteger", since=10)
def matmulinteger_10(node):
    def run(a, b, a_zp=None, b_zp=None):
        A = a.astype(np.int32)
        B = b.astype(np.int32)
        if a_zp is not None:
            z = a_zp.astype(np.int32)
            if z.ndim == 1 and z.size != 1:  # one per row of A (M of them; M may be 0)
                z = z.reshape(-1, 1)
            A = A - z
        if b_zp is not None:
            B = B - b_zp.astype(np.int32)
        return np.matmul(A, B).astype(np.int32)

    return run


@op("Det", since=11)
def det_11(node):
    def run(x):
        dt = x.dtype
        xx = x.astype(np.float32) if dt == np.float16 or _low_precision(dt) else x
        return _keep(np.linalg.det(xx), dt)

    return run


# ----------------------------------------------------------------------------------------------
# CumSum, CumProd, Trilu


def _cumulative(fn, identity):
    def factory(node):
        exclusive = bool(node.attr("exclusive", 0))
        reverse = bool(node.attr("reverse", 0))
        const_axis = node.const_inputs.get(1) if node.const_inputs else None

        def run(x, axis):
            ax = int(np.asarray(axis if const_axis is None else const_axis).reshape(-1)[0])
            ax = normalize_axis(ax, x.ndim, node)
            dt = x.dtype
            src = np.flip(x, ax) if reverse else x
            y = fn(src, axis=ax, dtype=dt)
            if exclusive:
                y2 = np.empty_like(y)
                idx_first = [slice(None)] * x.ndim
                idx_first[ax] = slice(0, 1)
                y2[tuple(idx_first)] = identity
                dst = [slice(None)] * x.ndim
                dst[ax] = slice(1, None)
                srcs = [slice(None)] * x.ndim
                srcs[ax] = slice(0, -1)
                y2[tuple(dst)] = y[tuple(srcs)]
                y = y2
            if reverse:
                y = np.flip(y, ax)
            return np.ascontiguousarray(y)

        return run

    return factory


REGISTRY.register("CumSum", _cumulative(np.cumsum, 0), since=11)
REGISTRY.register("CumProd", _cumulative(np.cumprod, 1), since=26)


@op("Trilu", since=14)
def trilu_14(node):
    upper = bool(node.attr("upper", 1))

    def run(x, k=None):
        kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
        if x.ndim < 2:
            invalid(node, f"input must have rank >= 2, got shape {x.shape}")
        return np.triu(x, kk) if upper else np.tril(x, kk)

    return run


# ----------------------------------------------------------------------------------------------
# quantization


def _q_param(p, x_shape, axis, block_size, node, what):
    """Broadcastable view of a scale / zero point for per-tensor, per-axis or blocked quantization."""
    p = np.asarray(p)
    r = len(x_shape)
    if p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    a = normalize_axis(axis, r, node)
    if block_size and block_size > 0:
        if p.ndim != r:
            invalid(node, f"{what} of shape {p.shape} must have rank {r} for blocked quantization")
        want = tuple(-(-d // block_size) if i == a else d for i, d in enumerate(x_shape))
        if p.shape != want:
            invalid(node, f"{what} of shape {p.shape} does not fit input shape {tuple(x_shape)} with block_size "
                          f"{block_size} on axis {a} (expected {want})")
        # element i along the axis reads block i // block_size (never materializes block_size copies)
        return np.take(p, np.arange(x_shape[a]) // block_size, axis=a)
    if p.ndim == 1:
        if p.shape[0] != x_shape[a]:
            invalid(node, f"{what} has {p.shape[0]} entries but axis {a} of the input has {x_shape[a]}")
        return p.reshape((-1,) + (1,) * (r - 1 - a))
    if p.shape == tuple(x_shape):
        return p
    invalid(node, f"{what} shape {p.shape} is not valid for input shape {tuple(x_shape)}")


_INT_RANGE_CODES = {
    TensorProto.UINT4: (0, 15),
    TensorProto.INT4: (-8, 7),
}
if hasattr(TensorProto, "UINT2"):
    _INT_RANGE_CODES[TensorProto.UINT2] = (0, 3)
    _INT_RANGE_CODES[TensorProto.INT2] = (-2, 1)


def _quantize(q, out_dt, saturate, zp=None):
    """``q`` = x / scale (float); round, add zero point, saturate into ``out_dt``."""
    from ..dtypes import onnx_code

    code = onnx_code(out_dt)
    if code in _F8_MAX or out_dt in _ML_FLOATS:
        v = q.astype(np.float32)
        if zp is not None:
            v = v + zp.astype(np.float32)
        return cast_array(v, code, saturate) if code else v.astype(out_dt)
    v = np.rint(q)
    if zp is not None:
        v = v + zp.astype(np.float64 if v.dtype == np.float64 else np.float32)
    if code in _INT_RANGE_CODES:
        lo, hi = _INT_RANGE_CODES[code]
    else:
        info = np.iinfo(out_dt)
        lo, hi = info.min, info.max
    return np.clip(v, lo, hi).astype(out_dt)


@op("QuantizeLinear", since=10)
def quantize_linear_10(node):
    sv = node.since_version
    axis = int(node.attr("axis", 1)) if sv >= 13 else 1
    block = int(node.attr("block_size", 0)) if sv >= 21 else 0
    saturate = bool(node.attr("saturate", 1)) if sv >= 19 else True
    out_code = int(node.attr("output_dtype", 0)) if sv >= 21 else 0
    precision = int(node.attr("precision", 0)) if sv >= 25 else 0

    def run(x, scale, zp=None):
        if zp is not None:
            out_dt = zp.dtype
        elif out_code:
            out_dt = np_dtype(out_code)
        else:
            out_dt = np.dtype(np.uint8)
        pd = np_dtype(precision) if precision else scale.dtype
        if pd in _ML_FLOATS or pd == np.float16:
            pd = np.dtype(np.float32)
        s = _q_param(scale, x.shape, axis, block, node, "y_scale").astype(pd)
        z = _q_param(zp, x.shape, axis, block, node, "y_zero_point") if zp is not None else None
        q = x.astype(pd) / s
        if z is not None and z.dtype in _ML_FLOATS:
            z = z.astype(np.float32)
        elif z is not None and z.dtype.kind == "V":
            z = z.astype(np.float32)
        return _quantize(q, out_dt, saturate, None if z is None else z.astype(np.float32) if z.dtype not in (np.float32, np.float64) else z)

    return run


@op("DequantizeLinear", since=10)
def dequantize_linear_10(node):
    sv = node.since_version
    axis = int(node.attr("axis", 1)) if sv >= 13 else 1
    block = int(node.attr("block_size", 0)) if sv >= 21 else 0
    out_code = int(node.attr("output_dtype", 0)) if sv >= 23 else 0

    def run(x, scale, zp=None):
        out_dt = np_dtype(out_code) if out_code else scale.dtype
        cd = np.float64 if scale.dtype == np.float64 else np.float32
        v = x.astype(cd)
        if zp is not None:
            v = v - _q_param(zp, x.shape, axis, block, node, "x_zero_point").astype(cd)
        y = v * _q_param(scale, x.shape, axis, block, node, "x_scale").astype(cd)
        return y.astype(out_dt)

    return run


@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear_11(node):
    def run(x):
        xf = x.astype(np.float32)
        mx = max(float(xf.max()) if xf.size else 0.0, 0.0)
        mn = min(float(xf.min()) if xf.size else 0.0, 0.0)
        scale = np.float32((mx - mn) / 255.0)
        if scale == 0:
            zp = np.uint8(0)
            y = np.zeros(x.shape, dtype=np.uint8)
        else:
            zp = np.uint8(np.clip(np.rint(np.float32(0 - mn) / scale), 0, 255))
            y = np.clip(np.rint(xf / scale) + float(zp), 0, 255).astype(np.uint8)
        return y, np.array(scale, dtype=np.float32), np.array(zp, dtype=np.uint8)

    return run


def _requantize(acc, real_scale, y_zp, out_dt):
    v = np.rint(acc.astype(np.float64) * real_scale)
    if y_zp is not None:
        v = v + y_zp.astype(np.float64)
    info = np.iinfo(out_dt)
    return np.clip(v, info.min, info.max).astype(out_dt)


@op("QLinearMatMul", since=10)
def qlinear_matmul_10(node):
    def run(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp=None):
        A = a.astype(np.int64)
        B = b.astype(np.int64)
        az = np.asarray(a_zp).astype(np.int64)
        bz = np.asarray(b_zp).astype(np.int64)
        asc = np.asarray(a_scale).astype(np.float64)
        if az.size > 1:
            az = az.reshape(az.shape + (1,)) if az.ndim == a.ndim - 1 else az.reshape(-1, 1)
        if asc.size > 1:
            asc = asc.reshape(asc.shape + (1,)) if asc.ndim == a.ndim - 1 else asc.reshape(-1, 1)
        acc = np.matmul(A - az, B - bz)
        real = asc * np.asarray(b_scale).astype(np.float64) / np.asarray(y_scale).astype(np.float64)
        out_dt = y_zp.dtype if y_zp is not None else a.dtype
        return _requantize(acc, real, y_zp, out_dt)

    return run


@op("QLinearConv", since=10)
def qlinear_conv_10(node):
    from .nn import _ConvAttrs, conv_nd

    attrs = _ConvAttrs(node, "conv")  # checked at session creation, as Conv's

    def run(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp=None, bias=None):
        nsp = x.ndim - 2
        X = x.astype(np.int64) - np.asarray(x_zp).astype(np.int64).reshape(())
        wz = np.asarray(w_zp).astype(np.int64)
        W = w.astype(np.int64) - (wz.reshape((-1,) + (1,) * (w.ndim - 1)) if wz.size > 1 else wz.reshape(()))
        acc = conv_nd(node, X, W, None, attrs)
        if bias is not None:
            acc = acc + bias.astype(np.int64).reshape((1, -1) + (1,) * nsp)
        ws = np.asarray(w_scale).astype(np.float64)
        ws = ws.reshape((1, -1) + (1,) * nsp) if ws.size > 1 else ws.reshape(())
        real = float(np.asarray(x_scale).reshape(-1)[0]) * ws / float(np.asarray(y_scale).reshape(-1)[0])
        out_dt = y_zp.dtype if y_zp is not None else x.dtype
        return _requantize(acc, real, None if y_zp is None else np.asarray(y_zp).reshape(()), out_dt)

    return run

