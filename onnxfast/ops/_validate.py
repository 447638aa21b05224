"""Validation of nodes at session creation: attributes and the input ranks the model declares.

The checks of each operator that has a native kernel live in that kernel's constructor
(csrc/kernels/*.cpp, with the helpers of kernel.h's validation section); every such node is checked
by them once, before the optimizer rewrites the graph (``validate_graph``), whichever kernel then
runs it: native, numpy fallback, folded into a constant, or fused into an ``onnxfast::Fused*`` node.
So the numpy kernels of those operators raise the same errors, worded alike. This module holds the
Python side: the one message form (the native one, ``attr_message``), the input shapes known at
session creation (``input_shapes``, also given to the kernels the planner creates) and the check
of a node's attributes against its ONNX schema at load (``check_schema_attributes``: unknown
attributes, attributes of the wrong type, required attributes missing, as onnxruntime refuses them).

Message forms (csrc/kernels/kernel.h words them alike):
  "<Op> '<node>': attribute '<attr>' is <value>; it must be <allowed>"
  "<Op> '<node>': input <i> ('<name>') has rank <r>; it must be <allowed>"
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument, InvalidModel

# Constant inputs handed to a kernel that only validates: small integer tensors (axes, starts, ends,
# steps), which some kernels check; weights are not needed for validation.
_MAX_VALIDATION_CONST = 4096


def attr_message(op_type: str, node: str, attr: str, value: str, allowed: str) -> str:
    return f"{op_type} '{node}': attribute '{attr}' is {value}; it must be {allowed}"


def attr_error(op_type: str, node: str, attr: str, value: str, allowed: str) -> InvalidModel:
    return InvalidModel(attr_message(op_type, node, attr, value, allowed))


def input_error(op_type: str, node: str, index: int, name: str, what: str, allowed: str) -> InvalidModel:
    return InvalidModel(f"{op_type} '{node}': input {index} ('{name}') {what}; it must be {allowed}")


def input_shapes(graph, names: list[str]) -> list[list[int] | None]:
    """Per input name: its dims known at session creation (-1 for a dim that is not a fixed number),
    or None where the rank is unknown (or the input absent). A true constant's shape is its value's;
    other values take the declared or inferred type (an overridable initializer's is the graph
    input's declaration, which the feed is checked against)."""
    overridable = {vi.name for vi in graph.inputs}
    out: list[list[int] | None] = []
    for n in names:
        if not n:
            out.append(None)
            continue
        if n in graph.initializers and n not in overridable:
            out.append([int(d) for d in graph.initializers[n].shape])
            continue
        vi = graph.type_of(n)
        shape = vi.shape if vi is not None and vi.is_tensor else None
        out.append(None if shape is None else [d if isinstance(d, int) and d >= 0 else -1 for d in shape])
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


def validate_graph(model) -> None:
    """Check every node that has a native kernel (in every subgraph too) with that kernel's rules,
    before any rewrite: errors name the node as the model wrote it."""
    _validate(model.graph, model.opsets)


def _validate(graph, opsets: dict[str, int]) -> None:
    from .. import _core, dtypes
    from ..registry import REGISTRY, native_attrs, resolve_attributes, since_version

    for node in graph.nodes:
        for sub in node.subgraphs.values():
            _validate(sub, opsets)
        opset = opsets.get(node.domain)
        if opset is None:
            continue
        sv = since_version(node.op_type, opset, node.domain)
        attrs: dict[str, Any] | None = None

        def resolved() -> dict[str, Any]:
            nonlocal attrs
            if attrs is None:
                attrs = resolve_attributes(node.op_type, node.domain, opset, node.attrs)
            return attrs

        types = []
        for n in node.inputs:
            if n in graph.initializers:
                types.append(dtypes.onnx_code(graph.initializers[n].dtype) or None)
            else:
                vi = graph.type_of(n) if n else None
                types.append(vi.elem_type if vi is not None else None)
        if REGISTRY.native_dtypes(node.domain, node.op_type, sv, resolved, types) is None:
            continue
        consts = []
        for n in node.inputs:
            c = graph.initializers.get(n) if n else None
            ok = (isinstance(c, np.ndarray) and c.dtype.kind in "iu" and c.size <= _MAX_VALIDATION_CONST
                  and not any(vi.name == n for vi in graph.inputs))
            consts.append(c if ok else None)
        try:
            _core.validate_kernel(node.op_type, node.name, opset, native_attrs(resolved()), consts,
                                  input_shapes(graph, node.inputs), len(node.outputs), domain=node.domain,
                                  since_version=sv, input_types=types)
        except InvalidArgument as e:
            # the kernels raise InvalidArgument (at run time the culprit is an input); at session
            # creation the culprit is the model, as the numpy kernels' checks say (InvalidModel)
            raise InvalidModel(str(e)) from None
