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
# The one attribute message form, and the check of attributes against the ONNX schema at load
# (before any kernel exists): in ..schemas, which the IR uses without the kernels.
from ..schemas import attr_error, attr_message, check_schema_attributes  # noqa: F401

# Constant inputs handed to a kernel that only validates: small integer tensors (axes, starts, ends,
# steps), which some kernels check; weights are not needed for validation.
_MAX_VALIDATION_CONST = 4096


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
