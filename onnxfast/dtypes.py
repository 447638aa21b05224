"""Element types: ONNX TensorProto codes <-> numpy dtypes (ml_dtypes for bfloat16, float8, int4,
...), ONNX Runtime style type strings ('tensor(float)'), and registration with the native core."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto

# code -> (numpy dtype, onnx type-string name)
_TABLE: dict[int, tuple[np.dtype, str]] = {
    TensorProto.FLOAT: (np.dtype(np.float32), "float"),
    TensorProto.UINT8: (np.dtype(np.uint8), "uint8"),
    TensorProto.INT8: (np.dtype(np.int8), "int8"),
    TensorProto.UINT16: (np.dtype(np.uint16), "uint16"),
    TensorProto.INT16: (np.dtype(np.int16), "int16"),
    TensorProto.INT32: (np.dtype(np.int32), "int32"),
    TensorProto.INT64: (np.dtype(np.int64), "int64"),
    TensorProto.STRING: (np.dtype(object), "string"),
    TensorProto.BOOL: (np.dtype(np.bool_), "bool"),
    TensorProto.FLOAT16: (np.dtype(np.float16), "float16"),
    TensorProto.DOUBLE: (np.dtype(np.float64), "double"),
    TensorProto.UINT32: (np.dtype(np.uint32), "uint32"),
    TensorProto.UINT64: (np.dtype(np.uint64), "uint64"),
    TensorProto.COMPLEX64: (np.dtype(np.complex64), "complex64"),
    TensorProto.COMPLEX128: (np.dtype(np.complex128), "complex128"),
    TensorProto.BFLOAT16: (np.dtype(ml_dtypes.bfloat16), "bfloat16"),
    TensorProto.FLOAT8E4M3FN: (np.dtype(ml_dtypes.float8_e4m3fn), "float8e4m3fn"),
    TensorProto.FLOAT8E4M3FNUZ: (np.dtype(ml_dtypes.float8_e4m3fnuz), "float8e4m3fnuz"),
    TensorProto.FLOAT8E5M2: (np.dtype(ml_dtypes.float8_e5m2), "float8e5m2"),
    TensorProto.FLOAT8E5M2FNUZ: (np.dtype(ml_dtypes.float8_e5m2fnuz), "float8e5m2fnuz"),
    TensorProto.UINT4: (np.dtype(ml_dtypes.uint4), "uint4"),
    TensorProto.INT4: (np.dtype(ml_dtypes.int4), "int4"),
}
for _name, _code, _mlname in (
    ("FLOAT4E2M1", 23, "float4_e2m1fn"),
    ("FLOAT8E8M0", 24, "float8_e8m0fnu"),
    ("UINT2", 25, "uint2"),
    ("INT2", 26, "int2"),
):
    if hasattr(ml_dtypes, _mlname):
        _TABLE[getattr(TensorProto, _name, _code)] = (np.dtype(getattr(ml_dtypes, _mlname)), _name.lower())

_BY_DTYPE: dict[np.dtype, int] = {dt: code for code, (dt, _) in _TABLE.items()}
_BY_DTYPE[np.dtype(np.str_)] = TensorProto.STRING


def np_dtype(code: int) -> np.dtype:
    """numpy dtype of an ONNX element type code."""
    try:
        return _TABLE[code][0]
    except KeyError:
        from .errors import InvalidModel

        raise InvalidModel(f"unknown ONNX element type {code}") from None


def onnx_code(dtype) -> int:
    """ONNX element type code of a numpy dtype (0 when there is none)."""
    dt = np.dtype(dtype)
    if dt.kind == "U":
        return TensorProto.STRING
    return _BY_DTYPE.get(dt, 0)


def type_name(code: int) -> str:
    """'float', 'int64', ... as used inside 'tensor(...)'."""
    entry = _TABLE.get(code)
    return entry[1] if entry else f"unknown({code})"


def type_string(type_proto) -> str:
    """ONNX Runtime style type string for a TypeProto: 'tensor(float)', 'seq(tensor(int64))',
    'map(int64,tensor(float))', 'optional(tensor(float))', 'sparse_tensor(float)'."""
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({type_name(type_proto.tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({type_string(type_proto.sequence_type.elem_type)})"
    if which == "map_type":
        mt = type_proto.map_type
        return f"map({type_name(mt.key_type)},{type_string(mt.value_type)})"
    if which == "optional_type":
        return f"optional({type_string(type_proto.optional_type.elem_type)})"
    if which == "sparse_tensor_type":
        return f"sparse_tensor({type_name(type_proto.sparse_tensor_type.elem_type)})"
    return "unknown"


_BY_NAME: dict[str, np.dtype] = {name: dt for dt, name in _TABLE.values()}


def from_type_string(type_str: str) -> np.dtype | None:
    """numpy dtype of a tensor type string ('tensor(float)' -> float32), as either runtime's
    NodeArg.type writes it; None for non-tensor types (sequences, maps) and unknown names."""
    if not (type_str.startswith("tensor(") and type_str.endswith(")")):
        return None
    return _BY_NAME.get(type_str[7:-1])


def register_with_core(core) -> None:
    for code, (dt, name) in _TABLE.items():
        core.register_dtype(dt, code, name)
