"""The operator registry: one place that maps (domain, op type, opset) to kernels.

Each operator registers once. A numpy registration is a *factory*: given a :class:`KernelNode`
(the node with attributes resolved from the schema defaults, its opset, input element types
and constant inputs) it returns a Python callable ``fn(*inputs) -> output | tuple(outputs)``
working on numpy arrays. Native kernels are declared in C++ next to their code (domain, op type,
schema-version range, provider, input types, a `when` condition, aliases: ``csrc/kernels/kernel.h``);
the registry reads those declarations from ``_core`` at import and the planner prefers a native
kernel wherever one fits the node, the numpy kernel being the fallback and reference. Operators over
string tensors and maps may also register an *object kernel* factory (``@object_op``): it returns a
``_core.ObjectKernel`` (C++ working on the Python objects, csrc/bindings/py_object_kernels.cpp) or None,
and is preferred to the numpy kernel where it returns one.

Factories are registered per "since" version: the one used for a node is the highest ``since``
not above the schema version the model's opset selects, so opset differences live either in
separate factories or in one factory that reads ``node.since_version``.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
import onnx.defs

from . import _core
from .errors import InvalidModel
# ONNX schema look-ups live in .schemas (no kernels there: the IR uses them); re-exported here.
from .schemas import attribute_value, resolve_attributes, schema_for, since_version  # noqa: F401

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


@dataclass(frozen=True)
class NativeDef:
    """One native kernel declaration, as _core declares it next to the kernel's code."""

    since: int
    until: int
    provider: str
    types: frozenset  # element types of input 0
    input_types: dict  # input index -> allowed element types
    conditional: bool  # a `when` (attributes / input types) decides per node: _core.kernel_accepts
    aliases: tuple  # (output, input): the output may be a view of the input
    index: int  # its position in _core.kernel_defs() (for _core.kernel_accepts)

    def fits(self, since_version: int, input_types: list) -> bool:
        if not self.since <= since_version <= self.until:
            return False
        for i, allowed in self.input_types.items():
            t = input_types[i] if i < len(input_types) else None
            if t is not None and t not in allowed:
                return False
        return True


@dataclass
class OpEntry:
    since: list[int] = field(default_factory=list)
    factories: list[Factory] = field(default_factory=list)
    native: list[NativeDef] = field(default_factory=list)
    # native kernels over Python-object values (string tensors, ZipMap's dicts): factories returning
    # a _core.ObjectKernel, or None where the node is not one they compute
    object_since: list[int] = field(default_factory=list)
    object_factories: list[Factory] = field(default_factory=list)


def _add_versioned(since_list: list[int], factories: list, since: int, factory, what: str) -> None:
    if since in since_list:
        raise ValueError(f"{what} since {since} registered twice")
    i = bisect.bisect(since_list, since)
    since_list.insert(i, since)
    factories.insert(i, factory)


def _pick_versioned(since_list: list[int], factories: list, since_version: int):
    i = bisect.bisect(since_list, since_version) - 1
    return factories[i] if i >= 0 else None


class Registry:
    """Numpy kernel factories registered in Python (``@op``), native kernels read from ``_core``'s
    declarations: one table keyed by (domain, op type), the native kernel preferred where it fits."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], OpEntry] = {}
        for d in _core.kernel_defs():
            entry = self._ops.setdefault((d["domain"], d["op_type"]), OpEntry())
            entry.native.append(NativeDef(
                d["since"], d["until"], d["provider"], frozenset(d["types"]),
                {int(i): frozenset(t) for i, t in d["input_types"].items()}, d["conditional"],
                tuple(tuple(a) for a in d["aliases"]), d["index"]))

    def register(self, op_type: str, factory: Factory, domain: str = "", since: int = 1) -> None:
        entry = self._ops.setdefault((domain, op_type), OpEntry())
        _add_versioned(entry.since, entry.factories, since, factory, f"{domain or 'ai.onnx'}::{op_type}")

    def register_object(self, op_type: str, factory: Factory, domain: str = "", since: int = 1) -> None:
        """A native kernel over Python-object values: ``factory(KernelNode)`` returns a
        ``_core.ObjectKernel`` (a host step written in C++), or None for nodes it does not compute."""
        entry = self._ops.setdefault((domain, op_type), OpEntry())
        _add_versioned(entry.object_since, entry.object_factories, since, factory,
                       f"{domain or 'ai.onnx'}::{op_type} (object kernel)")

    def factory(self, domain: str, op_type: str, since_version: int) -> Factory | None:
        entry = self._ops.get((domain, op_type))
        return _pick_versioned(entry.since, entry.factories, since_version) if entry else None

    def object_factory(self, domain: str, op_type: str, since_version: int) -> Factory | None:
        entry = self._ops.get((domain, op_type))
        return _pick_versioned(entry.object_since, entry.object_factories, since_version) if entry else None

    def native_defs(self, domain: str, op_type: str) -> list[NativeDef]:
        entry = self._ops.get((domain, op_type))
        return list(entry.native) if entry else []

    def native_dtypes(self, domain: str, op_type: str, since_version: int,
                      attrs: Callable[[], dict] | None = None, input_types: list | None = None,
                      provider: str = "CPUExecutionProvider") -> list[int] | None:
        """Element types of input 0 the native kernels compute for a node of this schema version (and
        these input element types, None where unknown); None when no native kernel applies. `attrs()` gives
        the node's resolved attributes, asked only when a declaration has a `when` condition."""
        types = list(input_types or [])
        out: set[int] = set()
        found = False
        for d in self.native_defs(domain, op_type):
            if d.provider != provider or not d.fits(since_version, types):
                continue
            if d.conditional and not _core.kernel_accepts(d.index, since_version,
                                                          native_attrs(attrs() if attrs else {}), types):
                continue
            found = True
            out |= d.types
        return sorted(out) if found else None

    def supports(self, domain: str, op_type: str, since_version: int) -> bool:
        """Whether some kernel (numpy, object or native, for any input type) computes this schema version."""
        entry = self._ops.get((domain, op_type))
        if entry is None:
            return False
        if (_pick_versioned(entry.since, entry.factories, since_version) is not None
                or _pick_versioned(entry.object_since, entry.object_factories, since_version) is not None):
            return True
        return any(d.since <= since_version <= d.until for d in entry.native)

    def knows(self, domain: str, op_type: str) -> bool:
        entry = self._ops.get((domain, op_type))
        return entry is not None and bool(entry.since or entry.native or entry.object_since)

    def ops(self) -> list[tuple[str, str]]:
        return sorted(k for k in self._ops if self.knows(*k))


# Attribute values _core's KernelArgs carries (graphs, sparse tensors and type protos are not).
NATIVE_ATTR_TYPES = (int, float, str, list, np.ndarray)


def native_attrs(attrs: dict) -> dict:
    """The attributes a native kernel sees (the kinds _core converts)."""
    return {k: v for k, v in attrs.items() if isinstance(v, NATIVE_ATTR_TYPES)}


REGISTRY = Registry()


def op(op_type: str, since: int = 1, domain: str = ""):
    """Decorator: register a numpy kernel factory for ``op_type`` from schema version ``since``."""

    def deco(fn: Factory) -> Factory:
        REGISTRY.register(op_type, fn, domain=domain, since=since)
        return fn

    return deco


def object_op(op_type: str, since: int = 1, domain: str = ""):
    """Decorator: register a factory of native object kernels (``Registry.register_object``)."""

    def deco(fn: Factory) -> Factory:
        REGISTRY.register_object(op_type, fn, domain=domain, since=since)
        return fn

    return deco
