"""The operator registry: one place that maps (domain, op type, opset) to kernels.

Each operator registers once. A registration is a *factory*: given a :class:`KernelNode`
(the node with attributes resolved from the schema defaults, its opset, input element types
and constant inputs) it returns a Python callable ``fn(*inputs) -> output | tuple(outputs)``
working on numpy arrays. An operator may also have a native kernel in ``_core`` (listed with
the element types it computes); the planner prefers it when the node's types allow.

Factories are registered per "since" version: the one used for a node is the highest ``since``
not above the schema version the model's opset selects, so opset differences live either in
separate factories or in one factory that reads ``node.since_version``.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import onnx
import onnx.defs

from . import _core
from .errors import InvalidModel

Factory = Callable[["KernelNode"], Callable[..., Any]]


@dataclass
class KernelNode:
    """What a kernel factory sees about its node (all resolved at session creation)."""

    op_type: str
    domain: str
    name: str
    opset: int  # the model's opset for this domain
    since_version: int  # the schema version that opset selects
    attrs: dict[str, Any]
    input_types: list  # ONNX element type code per input, None when unknown or absent
    output_types: list
    const_inputs: dict[int, Any] = field(default_factory=dict)  # input index -> numpy array
    num_inputs: int = 0
    num_outputs: int = 0
    # For control-flow ops: compile a graph attribute into a runnable subgraph.
    compile_subgraph: Callable[[str], Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name)
        return default if v is None else v

    def fail(self, msg: str, cls=InvalidModel):
        raise cls(f"{self.op_type} node '{self.name}': {msg}")


def kernel_node(node, opset: int, sv: int, input_types: list, output_types: list, consts: dict) -> KernelNode:
    """The KernelNode of an IR node: attributes with the schema's defaults, element types, and the
    constant inputs found in ``consts`` (name -> array)."""
    return KernelNode(
        op_type=node.op_type,
        domain=node.domain,
        name=node.name,
        opset=opset,
        since_version=sv,
        attrs=resolve_attributes(node.op_type, node.domain, opset, node.attrs),
        input_types=input_types,
        output_types=output_types,
        const_inputs={k: consts[n] for k, n in enumerate(node.inputs) if n in consts},
        num_inputs=len(node.inputs),
        num_outputs=len(node.outputs),
        context={"implicit_inputs": list(node.implicit_inputs)},
    )


@dataclass
class OpEntry:
    since: list[int] = field(default_factory=list)
    factories: list[Factory] = field(default_factory=list)
    native_since: int | None = None  # native kernel usable from this schema version on
    # Which nodes the native kernel computes, judged from the attributes (schema defaults filled), the
    # schema version and the input element types (ONNX codes, None where unknown); None: every node.
    # The others run on the numpy kernel (e.g. a mode the native kernel does not implement).
    native_when: Callable[[dict, int, list], bool] | None = None


class Registry:
    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], OpEntry] = {}

    def register(self, op_type: str, factory: Factory, domain: str = "", since: int = 1) -> None:
        entry = self._ops.setdefault((domain, op_type), OpEntry())
        if since in entry.since:
            raise ValueError(f"{domain or 'ai.onnx'}::{op_type} since {since} registered twice")
        i = bisect.bisect(entry.since, since)
        entry.since.insert(i, since)
        entry.factories.insert(i, factory)

    def register_native(self, op_type: str, domain: str = "", since: int = 1,
                        when: Callable[[dict, int, list], bool] | None = None) -> None:
        """Declare _core's native kernel for op_type usable from schema version `since` on;
        `when(attrs, since_version, input_types)` (optional) restricts it to the nodes it accepts."""
        if op_type not in _core.native_kernels():
            raise ValueError(f"_core has no native kernel for {op_type}")
        entry = self._ops.setdefault((domain, op_type), OpEntry())
        entry.native_since = since
        entry.native_when = when

    def factory(self, domain: str, op_type: str, since_version: int) -> Factory | None:
        entry = self._ops.get((domain, op_type))
        if not entry or not entry.since:
            return None
        i = bisect.bisect(entry.since, since_version) - 1
        return entry.factories[i] if i >= 0 else None

    def native_dtypes(self, domain: str, op_type: str, since_version: int,
                      attrs: Callable[[], dict] | None = None, input_types: list | None = None) -> list[int] | None:
        """Element types (of the first input) the native kernel computes for a node of this schema
        version; None when no native kernel applies. `attrs()` gives the node's resolved attributes
        (asked only when the registration has a `when` condition)."""
        entry = self._ops.get((domain, op_type))
        if not entry or entry.native_since is None or since_version < entry.native_since:
            return None
        if entry.native_when is not None and not entry.native_when(attrs() if attrs else {}, since_version, list(input_types or [])):
            return None
        return list(_core.native_kernels().get(op_type, []))

    def knows(self, domain: str, op_type: str) -> bool:
        return (domain, op_type) in self._ops

    def ops(self) -> list[tuple[str, str]]:
        return sorted(self._ops)


REGISTRY = Registry()


def op(op_type: str, since: int = 1, domain: str = ""):
    """Decorator: register a numpy kernel factory for ``op_type`` from schema version ``since``."""

    def deco(fn: Factory) -> Factory:
        REGISTRY.register(op_type, fn, domain=domain, since=since)
        return fn

    return deco


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
    from .loader import tensor_to_numpy  # local import: loader imports the registry indirectly

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

