"""ONNX operator schemas, read without any kernel: the schema an opset selects, its since_version,
attribute values with the schema's defaults, and the check of a node's attributes against its
schema (as onnxruntime refuses unknown, mistyped or missing attributes at load). The IR and the
registry both use these; this module imports neither.
"""

from __future__ import annotations

import functools
from typing import Any

import onnx
import onnx.defs

from .errors import InvalidModel
from .loader import tensor_to_numpy


def attr_message(op_type: str, node: str, attr: str, value: str, allowed: str) -> str:
    return f"{op_type} '{node}': attribute '{attr}' is {value}; it must be {allowed}"


def attr_error(op_type: str, node: str, attr: str, value: str, allowed: str) -> InvalidModel:
    return InvalidModel(attr_message(op_type, node, attr, value, allowed))


@functools.lru_cache(maxsize=None)
def _schema(op_type: str, opset: int, domain: str):
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except Exception:  # no schema: custom domain or unknown op
        return None


def schema_for(op_type: str, opset: int, domain: str):
    return _schema(op_type, opset, domain)


def since_version(op_type: str, opset: int, domain: str) -> int:
    s = _schema(op_type, opset, domain)
    return s.since_version if s is not None else opset


def attribute_value(a: onnx.AttributeProto) -> Any:
    """An AttributeProto as a Python value (graphs stay GraphProto; tensors become numpy)."""
    t = a.type
    A = onnx.AttributeProto
    if t == A.FLOAT:
        return float(a.f)
    if t == A.INT:
        return int(a.i)
    if t == A.STRING:
        return a.s.decode("utf-8", errors="surrogateescape")
    if t == A.TENSOR:
        return tensor_to_numpy(a.t)
    if t == A.GRAPH:
        return a.g
    if t == A.SPARSE_TENSOR:
        return onnx.numpy_helper.to_array(a.sparse_tensor.values), a.sparse_tensor
    if t == A.TYPE_PROTO:
        return a.tp
    if t == A.FLOATS:
        return [float(x) for x in a.floats]
    if t == A.INTS:
        return [int(x) for x in a.ints]
    if t == A.STRINGS:
        return [s.decode("utf-8", errors="surrogateescape") for s in a.strings]
    if t == A.TENSORS:
        return [tensor_to_numpy(x) for x in a.tensors]
    if t == A.GRAPHS:
        return list(a.graphs)
    if t == A.SPARSE_TENSORS:
        return list(a.sparse_tensors)
    if t == A.TYPE_PROTOS:
        return list(a.type_protos)
    return None


def resolve_attributes(op_type: str, domain: str, opset: int, given: dict[str, Any]) -> dict[str, Any]:
    """Attributes given on the node, plus the schema's defaults for the ones left out."""
    out = dict(given)
    s = _schema(op_type, opset, domain)
    if s is not None:
        for name, a in s.attributes.items():
            if name not in out and a.default_value is not None and a.default_value.name:
                out[name] = attribute_value(a.default_value)
    return out


_ATTR_TYPE_NAMES = {
    1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR", 5: "GRAPH", 6: "FLOATS", 7: "INTS", 8: "STRINGS",
    9: "TENSORS", 10: "GRAPHS", 11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS", 13: "TYPE_PROTO", 14: "TYPE_PROTOS",
}


def check_schema_attributes(node_proto, name: str, schema) -> None:
    """A node's attributes against its operator schema, as onnxruntime checks them at load: no
    attribute the schema does not define, each of the schema's type, the required ones given."""
    op = node_proto.op_type
    defined = schema.attributes
    given = set()
    for a in node_proto.attribute:
        given.add(a.name)
        spec = defined.get(a.name)
        if spec is None:
            names = ", ".join(sorted(defined)) or "none"
            raise attr_error(op, name, a.name, f"not defined by {op}-{schema.since_version}",
                             f"left out (its attributes: {names})")
        want = int(spec.type.value) if hasattr(spec.type, "value") else int(spec.type)
        if a.type and not a.ref_attr_name and a.type != want:
            raise attr_error(op, name, a.name, f"of type {_ATTR_TYPE_NAMES.get(a.type, a.type)}",
                             f"of type {_ATTR_TYPE_NAMES.get(want, want)}")
    for attr_name, spec in defined.items():
        if spec.required and attr_name not in given:
            raise attr_error(op, name, attr_name, "missing", f"given ({op}-{schema.since_version} requires it)")
