"""The graph IR: Model, Graph, Node, ValueInfo.

Built from a ModelProto: initializers become numpy arrays (see loader), model-local functions
are inlined, nodes are topologically sorted, and the graph is checked (every value defined
exactly once, no cycles). Types and shapes come from the model plus ONNX shape inference run
on the weight-free proto (after _safe_for_inference has refused what crashes it); dimensions are ints, symbolic names (str) or None (unknown).
Subgraphs (If/Loop/Scan bodies) are Graphs too and record which outer-scope names they read.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from . import dtypes
from .errors import InvalidModel
from .loader import _KEEP_BYTES, _PACKED, ExternalData, checked_dims, load_initializers
from .schemas import attribute_value, check_schema_attributes, schema_for

Dim = "int | str | None"


@dataclass
class ValueInfo:
    name: str
    type: onnx.TypeProto | None = None

    @property
    def is_tensor(self) -> bool:
        return self.type is None or self.type.WhichOneof("value") in (None, "tensor_type")

    @property
    def elem_type(self) -> int | None:
        if self.type is not None and self.type.WhichOneof("value") == "tensor_type":
            return self.type.tensor_type.elem_type or None
        return None

    @property
    def is_optional(self) -> bool:
        return self.type is not None and self.type.WhichOneof("value") == "optional_type"

    @property
    def shape(self) -> list | None:
        """Dims as int / symbolic str / None; None when the rank is unknown."""
        if self.type is None or self.type.WhichOneof("value") != "tensor_type":
            return None
        tt = self.type.tensor_type
        if not tt.HasField("shape"):
            return None
        out: list = []
        for d in tt.shape.dim:
            w = d.WhichOneof("value")
            out.append(d.dim_value if w == "dim_value" else d.dim_param if w == "dim_param" else None)
        return out

    @property
    def type_str(self) -> str:
        return dtypes.type_string(self.type) if self.type is not None else "unknown"


@dataclass
class Node:
    op_type: str
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    subgraphs: dict[str, "Graph"] = field(default_factory=dict)
    # Outer-scope names read by this node's subgraphs (implicit inputs), in a fixed order.
    implicit_inputs: list[str] = field(default_factory=list)


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    initializers: dict[str, np.ndarray]
    value_info: dict[str, ValueInfo]
    outer_refs: list[str] = field(default_factory=list)  # names this graph reads from enclosing scopes
    doc: str = ""
    # Nodes the optimizer replaced by their values, as (name, op_type, domain): the kernel listing's
    # "constant" entries.
    folded: list[tuple[str, str, str]] = field(default_factory=list)
    # Constants the planner released once the kernels reading them had packed their own copies:
    # name -> (numpy dtype, shape).
    released: dict[str, tuple] = field(default_factory=dict)
    _index: "_UseDef | None" = field(default=None, repr=False, compare=False)

    def type_of(self, name: str) -> ValueInfo | None:
        return self.value_info.get(name)

    # ---- what a name is ---------------------------------------------------------------------
    def is_input(self, name: str) -> bool:
        return any(vi.name == name for vi in self.inputs)

    def is_output(self, name: str) -> bool:
        return any(vi.name == name for vi in self.outputs)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a true constant: an initializer that is not also a graph input (such an
        initializer is only a default the caller may override at run time, never folded)."""
        if name not in self.initializers or self.is_input(name):
            return None
        return self.initializers[name]

    def constants(self) -> dict[str, np.ndarray]:
        fed = {vi.name for vi in self.inputs}
        return {n: a for n, a in self.initializers.items() if n not in fed}

    # ---- use/def index ----------------------------------------------------------------------
    # Built at the first query, kept current by replace(); code that edits `nodes` directly must
    # call invalidate() (check() compares the index with the nodes).
    def _idx(self) -> "_UseDef":
        if self._index is None:
            self._index = _UseDef(self)
        return self._index

    def invalidate(self) -> None:
        self._index = None

    def producer(self, name: str) -> Node | None:
        """The node defining ``name`` (None for graph inputs, initializers, outer-scope names)."""
        return self._idx().producer.get(name)

    def consumers(self, name: str) -> list[Node]:
        """The nodes reading ``name`` (as an input or an implicit input of a subgraph), once per read."""
        return list(self._idx().consumers.get(name, ()))

    def use_count(self, name: str) -> int:
        """Reads of ``name`` by nodes, plus one if it is a graph output."""
        return len(self._idx().consumers.get(name, ())) + (1 if self.is_output(name) else 0)

    def only_consumer(self, name: str) -> Node | None:
        """The one node reading ``name`` once, when nothing else reads it and it is no graph output."""
        c = self._idx().consumers.get(name, ())
        return c[0] if len(c) == 1 and not self.is_output(name) else None

    # ---- patches ----------------------------------------------------------------------------
    def replace(self, old: list[Node], new: list[Node], constants: dict[str, np.ndarray] | None = None,
                opsets: dict[str, int] | None = None) -> None:
        """Replace the nodes ``old`` by ``new`` (in order, where the last of ``old`` stood: every
        input of ``old`` is defined there) and by ``constants`` (values that become true constants,
        typed by their arrays). The types of the new nodes' outputs are inferred again from their
        inputs (ONNX schemas; a name kept from ``old`` keeps its type where inference has none).
        Checked: the new nodes read only values defined before them, define no name twice, and every
        value ``old`` defined that is still read is defined again. InvalidModel otherwise (a bug of
        the pass that asked)."""
        constants = constants or {}
        idx = self._idx()
        old_ids = {id(n) for n in old}
        positions = [i for i, n in enumerate(self.nodes) if id(n) in old_ids]
        if len(positions) != len(old) or len(old_ids) != len(old):
            raise InvalidModel("optimizer patch: a node to replace is not in the graph")
        kept = [n for n in self.nodes if id(n) not in old_ids]
        at = positions[-1] - (len(positions) - 1)
        # checks first: the graph is untouched when the patch is refused
        gone = {o for n in old for o in n.outputs if o}
        new_names = [o for n in new for o in n.outputs if o] + list(constants)
        new_set = set(new_names)
        if len(new_set) != len(new_names):
            raise InvalidModel(f"optimizer patch: the new nodes define {sorted(new_names)} with repeats")
        for name in new_names:
            if ((name in idx.producer and name not in gone) or (name in self.initializers and name not in constants)
                    or self.is_input(name)):
                raise InvalidModel(f"optimizer patch: '{name}' would be defined twice")
        defined = ({vi.name for vi in self.inputs} | set(self.initializers) | set(self.outer_refs) | set(constants)
                   | {o for n in kept[:at] for o in n.outputs if o})
        for n in new:
            for name in itertools.chain(n.inputs, n.implicit_inputs):
                if name and name not in defined:
                    raise InvalidModel(f"optimizer patch: node '{n.name}' reads '{name}' before it is defined")
            defined.update(o for o in n.outputs if o)
        for name in gone:
            readers = [r for r in idx.consumers.get(name, ()) if id(r) not in old_ids]
            if name not in new_set and (readers or self.is_output(name)):
                raise InvalidModel(f"optimizer patch: '{name}' is still read but no longer defined")
        early = {id(n) for n in kept[:at]}
        for name in new_names:
            if name in constants:
                continue
            for r in idx.consumers.get(name, ()):
                if id(r) in early:
                    raise InvalidModel(f"optimizer patch: node '{r.name}' reads '{name}' before the new nodes define it")
        # then the edit
        for n in old:
            idx.remove(n)
        self.nodes = kept[:at] + list(new) + kept[at:]
        for n in new:
            idx.add(n)
        for name, value in constants.items():
            self.initializers[name] = value
            code = dtypes.onnx_code(value.dtype)
            if code:
                self.value_info[name] = ValueInfo(name, onnx.helper.make_tensor_type_proto(code, list(value.shape)))
        for name in gone - new_set:
            self.value_info.pop(name, None)
        if opsets is not None:
            _infer_node_types(self, new, opsets)

    def rewire(self, old: str, new: str) -> None:
        """Every node that reads ``old`` reads ``new`` instead (a value found equal to another: an
        Identity's output, a duplicate's). Refused (InvalidModel, graph untouched) when ``old`` is a
        graph output or read by a subgraph, or when ``new`` is defined after a reader of ``old``."""
        idx = self._idx()
        readers = list({id(r): r for r in idx.consumers.get(old, ())}.values())  # each node once
        if self.is_output(old):
            raise InvalidModel(f"optimizer patch: graph output '{old}' cannot be rewired")
        if any(old in r.implicit_inputs for r in readers):
            raise InvalidModel(f"optimizer patch: '{old}' is read by a subgraph and cannot be rewired")
        maker = idx.producer.get(new)
        if maker is not None and readers:
            pos = {id(n): i for i, n in enumerate(self.nodes)}
            if any(pos[id(r)] <= pos[id(maker)] for r in readers):
                raise InvalidModel(f"optimizer patch: '{new}' is defined after a reader of '{old}'")
        for r in readers:
            idx.remove(r)
            r.inputs = [new if name == old else name for name in r.inputs]
            idx.add(r)

    def check(self) -> None:
        """The graph's invariants: every node input defined before it is read, every name defined
        once, every graph output defined, the use/def index equal to the nodes (InvalidModel)."""
        if self._index is not None and not self._index.same_as(_UseDef(self)):
            raise InvalidModel("invalid graph: the use/def index is stale (nodes edited without replace())")
        defined = {vi.name for vi in self.inputs} | set(self.initializers) | set(self.outer_refs)
        for n in self.nodes:
            for name in list(n.inputs) + list(n.implicit_inputs):
                if name and name not in defined:
                    raise InvalidModel(f"invalid graph: node '{n.name}' reads '{name}' before it is defined")
            for o in n.outputs:
                if o:
                    if o in defined:
                        raise InvalidModel(f"invalid graph: '{o}' is defined twice")
                    defined.add(o)
        for o in self.outputs:
            if o.name not in defined:
                raise InvalidModel(f"invalid graph: output '{o.name}' is not defined")


class _UseDef:
    """name -> producing node, name -> reading nodes (one entry per read)."""

    def __init__(self, graph: Graph):
        self.producer: dict[str, Node] = {}
        self.consumers: dict[str, list[Node]] = {}
        for n in graph.nodes:
            self.add(n)

    def add(self, n: Node) -> None:
        for o in n.outputs:
            if o:
                self.producer[o] = n
        for name in itertools.chain(n.inputs, n.implicit_inputs):
            if name:
                self.consumers.setdefault(name, []).append(n)

    def remove(self, n: Node) -> None:
        for o in n.outputs:
            if o and self.producer.get(o) is n:
                del self.producer[o]
        for name in itertools.chain(n.inputs, n.implicit_inputs):
            readers = self.consumers.get(name)
            if readers:
                for i, r in enumerate(readers):
                    if r is n:
                        del readers[i]
                        break
                if not readers:
                    del self.consumers[name]

    def same_as(self, other: "_UseDef") -> bool:
        def ids(d):
            return {k: sorted(id(n) for n in v) for k, v in d.items()}

        return ({k: id(v) for k, v in self.producer.items()} == {k: id(v) for k, v in other.producer.items()}
                and ids(self.consumers) == ids(other.consumers))


_TENSOR_TYPES = {f"tensor({onnx.helper.tensor_dtype_to_string(c)[len('TensorProto.'):].lower()})": c
                 for c in onnx.TensorProto.DataType.values() if c}


def _fixed_output_type(schema, i: int) -> int:
    """The element type the schema allows output i to have when it allows exactly one tensor type; else 0."""
    outs = schema.outputs
    if not outs:
        return 0
    o = outs[min(i, len(outs) - 1)]
    allowed = [o.type_str]
    for c in schema.type_constraints:
        if c.type_param_str == o.type_str:
            allowed = list(c.allowed_type_strs)
    return _TENSOR_TYPES.get(allowed[0], 0) if len(allowed) == 1 else 0


def _infer_node_types(graph: Graph, nodes: list[Node], opsets: dict[str, int]) -> None:
    """Types of the nodes' outputs inferred again from their inputs' (ONNX schema inference, node by
    node, in order). Operators without a schema (or whose inference fails) keep what is recorded."""
    for n in nodes:
        if n.subgraphs:
            continue
        schema = schema_for(n.op_type, opsets.get(n.domain, 1), n.domain)
        if schema is None:
            continue
        types: dict[str, onnx.TypeProto] = {}
        for name in n.inputs:
            if not name:
                continue
            arr = graph.initializers.get(name)
            vi = graph.type_of(name)
            if arr is not None and not graph.is_input(name) and dtypes.onnx_code(arr.dtype):
                types[name] = onnx.helper.make_tensor_type_proto(dtypes.onnx_code(arr.dtype), list(arr.shape))
            elif vi is not None and vi.type is not None:
                types[name] = vi.type
        try:
            out = onnx.shape_inference.infer_node_outputs(schema, _node_to_proto(n, opsets, set()), types)
        except Exception:  # noqa: BLE001 - inference is advisory: the kernels check at run time
            continue
        for i, name in enumerate(n.outputs):  # outputs the schema fixes to one type (TreeEnsembleClassifier's Z)
            if name and name not in out and graph.type_of(name) is None:
                code = _fixed_output_type(schema, i)
                if code:
                    out[name] = onnx.helper.make_tensor_type_proto(code, None)
        for name, tp in out.items():
            if name not in n.outputs or tp.WhichOneof("value") is None:
                continue
            known = graph.value_info.get(name)
            inferred = ValueInfo(name, tp)
            if known is not None and known.elem_type == inferred.elem_type and known.shape is not None and (
                    all(isinstance(d, int) for d in known.shape) or inferred.shape is None):
                continue  # a kept name's type stays where inference says no more (fully known, or no shape)
            graph.value_info[name] = inferred


@dataclass
class Model:
    graph: Graph
    opsets: dict[str, int]
    ir_version: int
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    graph_description: str = ""
    proto: onnx.ModelProto | None = None  # weight-free after loading (see loader)


class _Ctx:
    def __init__(self, opsets, functions, external, release, types, has_kernel):
        self.has_kernel = has_kernel  # (domain, op_type) -> bool: ops without one expand their function body
        self.opsets = opsets
        self.functions = functions
        self.external = external
        self.release = release
        self.types = types  # name -> TypeProto from shape inference
        self.counter = itertools.count()


# Expanding functions (model-local or schema-defined) may not grow a graph past this many nodes:
# a small model whose functions call the next one twice would otherwise expand exponentially.
MAX_EXPANDED_NODES = 1_000_000


def _supported_opsets() -> dict[str, int]:
    """The newest opset of each ONNX domain the installed onnx package defines schemas for."""
    top: dict[str, int] = {}
    for sch in onnx.defs.get_all_schemas_with_history():
        top[sch.domain] = max(top.get(sch.domain, 0), sch.since_version)
    top[""] = max(top.get("", 0), onnx.defs.onnx_opset_version())
    return top


_SUPPORTED_OPSETS: dict[str, int] | None = None


def check_opsets(opsets: dict[str, int]) -> None:
    """Refuse an import of an ONNX-defined domain at an opset newer than its schemas (as onnxruntime
    does): the model's operators could mean anything there."""
    global _SUPPORTED_OPSETS
    if _SUPPORTED_OPSETS is None:
        _SUPPORTED_OPSETS = _supported_opsets()
    for domain, version in opsets.items():
        top = _SUPPORTED_OPSETS.get(domain)
        if top is None:
            continue  # a custom domain: its operators are checked one by one
        shown = domain or "ai.onnx"
        if version < 1 or version > top:
            raise InvalidModel(
                f"the model imports {shown} opset {version}; onnxfast supports {shown} opsets 1 to {top}"
            )


def build_model(proto: onnx.ModelProto, base_dir: str | None, release: bool,
                has_kernel: Callable[[str, str], bool] = lambda domain, op_type: True) -> Model:
    """The IR of a ModelProto. ``has_kernel(domain, op_type)`` says which operators the runtime computes;
    the others are replaced by the function body their schema defines, where it has one (the session
    passes the kernel registry's; the IR itself knows no kernels)."""
    opsets: dict[str, int] = {}
    for o in proto.opset_import:
        opsets["" if o.domain == "ai.onnx" else o.domain] = int(o.version)
    if "" not in opsets and proto.ir_version < 3:
        opsets[""] = 1
    check_opsets(opsets)
    functions = {(f.domain, f.name, getattr(f, "overload", "")): f for f in proto.functions}
    external = ExternalData(base_dir)
    ctx = _Ctx(opsets, functions, external, release, {}, has_kernel)
    # Initializers become numpy first (dropping the proto's bytes), then shape inference runs on
    # the weight-free proto to type intermediate values.
    graph_inits = load_initializers(proto.graph, external, release)
    external.close()
    if release and any(a.nbytes > _KEEP_BYTES for a in graph_inits.values()):
        # The parser keeps the memory of cleared fields (upb arenas): a fresh parse of the now
        # weight-free proto lets the caller's copy, and with it the weights' bytes, go.
        fresh = onnx.ModelProto()
        fresh.ParseFromString(proto.SerializeToString())
        proto = fresh
    ctx.types = _infer_types(proto) if _safe_for_inference(proto, opsets) else {}
    g = _build_graph(proto.graph, ctx, outer=set(), inits=graph_inits)
    meta = {p.key: p.value for p in proto.metadata_props}
    return Model(
        graph=g,
        opsets=opsets,
        ir_version=int(proto.ir_version),
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=int(proto.model_version),
        doc_string=proto.doc_string,
        metadata=meta,
        graph_description=proto.graph.doc_string,
        proto=proto,
    )


def _check_tensor_attribute(t: onnx.TensorProto, where: str) -> None:
    """A tensor attribute's declared dims against the data it holds (onnx's shape inference and
    constant folding trust the dims: Constant dims of 2^40 over 3 floats hang it)."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return
    count = 1
    for d in checked_dims(t.dims, where):
        count *= d
    T = onnx.TensorProto
    if t.data_type == T.UNDEFINED:
        raise InvalidModel(f"{where} has no element type")
    if t.data_type == T.STRING:
        have, want = len(t.string_data), count
    elif t.HasField("raw_data"):
        if t.data_type in _PACKED or t.data_type not in dtypes._TABLE:
            return
        have, want = len(t.raw_data), count * dtypes.np_dtype(t.data_type).itemsize
    else:
        try:
            field_name = onnx.helper.tensor_dtype_to_field(t.data_type)
        except (KeyError, ValueError, TypeError):
            raise InvalidModel(f"{where} has an unknown element type {t.data_type}") from None
        have = len(getattr(t, field_name))
        if t.data_type in _PACKED:
            want = -(-count // 2)
        elif t.data_type in (T.COMPLEX64, T.COMPLEX128):
            want = 2 * count
        else:
            want = count
        if have == 0 and count != 0 and not t.dims:
            return
    if have != want:
        raise InvalidModel(f"{where} declares the shape {list(t.dims)} but holds data for a different number of "
                           f"elements ({have} values or bytes where {want} are needed)")


# A declared dimension above this (no real tensor has 2^30 entries along one axis) makes the model run
# without onnx's shape inference, whose data propagation would materialize it.
_MAX_INFERRED_DIM = 1 << 30


# letters, spaces and '...' (each character has one reading: linear-time matching on any input)
_EINSUM_TERM = rb"(?:[A-Za-z ]|\.\.\.)*"
_EINSUM_EQUATION = re.compile(_EINSUM_TERM + rb"(?:," + _EINSUM_TERM + rb")*(?:->" + _EINSUM_TERM + rb")?")


_ELEMENT_TYPES = frozenset(c for c in onnx.TensorProto.DataType.values() if c)
_ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")


def _safe_for_inference(proto: onnx.ModelProto, opsets: dict[str, int]) -> bool:
    """Check what onnx's C++ shape inference trusts before handing it an untrusted model (it runs
    in-process: a SIGSEGV or abort there kills the user's process). Raises InvalidModel for what the
    spec forbids (a node whose required input/output has an empty name or that has too many of them,
    tensor attributes whose dims disagree with their data, a Split whose num_outputs is not its
    output count, a negative GatherND batch_dims); returns False (run without inferred types) for what onnx's inference
    crashes on although the model may still run (a graph input or output without a type)."""
    ok = True

    def walk(g: onnx.GraphProto, top: bool, outer: frozenset = frozenset()):
        nonlocal ok
        # onnx's inference dereferences a value that nothing defines (EyeLike reading 'x': SIGSEGV)
        visible = outer | {vi.name for vi in g.input} | {t.name for t in g.initializer} | {
            t.values.name for t in g.sparse_initializer} | {o for n in g.node for o in n.output if o}
        for n in g.node:
            for x in n.input:
                if x and x not in visible:
                    raise InvalidModel(f"node '{n.name or n.op_type}' ({n.op_type}) reads '{x}', which no node, graph "
                                       f"input or initializer{' or enclosing graph' if outer else ''} defines")
        for o in g.output:
            if o.name not in visible:
                raise InvalidModel(f"graph output '{o.name}' is not produced by any node, input or initializer")
        ranks = {}  # declared ranks, for the axis check below
        for vi in itertools.chain(g.input, g.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
        for t in g.initializer:
            ranks.setdefault(t.name, len(t.dims))
        produced: dict[str, str] = {}  # value -> the node that produces it
        for n in g.node:
            where = f"node '{n.name or n.op_type}' ({n.op_type})"
            for o in n.output:
                # onnx's inference dereferences a value defined twice or read by its own producer
                if o and o in n.input:
                    raise InvalidModel(f"{where}: output '{o}' is also one of its inputs")
                if o and o in produced:
                    raise InvalidModel(f"value '{o}' is defined twice: by {produced[o]} and by {where}")
                produced[o] = where
            # (only ONNX's own domains: onnx's inference runs no schema of other domains; a contrib
            # operator's axis may refer to another input, as QLinearConcat's)
            for a in (n.attribute if n.domain in _ONNX_DOMAINS else ()):
                # (an axis without its type field is still read as an int by onnx's inference)
                if (a.name == "axis" and a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.UNDEFINED)
                        and n.input and n.input[0] in ranks):
                    r = ranks[n.input[0]]  # every op's axis lies in [-r - 1, r] (Flatten, Unsqueeze-1 reach r)
                    if not -r - 1 <= a.i <= r:
                        raise InvalidModel(f"{where}: attribute 'axis' is {a.i}; it must be in [{-r}, {r - 1}] "
                                           f"for an input of rank {r}")
                # onnx's inference crashes on a Cast to a type code that names no element type (fuzzer finding)
                if (n.op_type == "Cast" and a.name == "to" and a.type in (onnx.AttributeProto.INT,
                                                                         onnx.AttributeProto.UNDEFINED)
                        and a.i not in _ELEMENT_TYPES):
                    raise InvalidModel(f"{where}: attribute 'to' is {a.i}; it must be an ONNX element type code")
        for vi in itertools.chain(g.input, g.output, g.value_info):
            if not vi.HasField("type") or (vi.type.HasField("tensor_type") and not vi.type.tensor_type.elem_type):
                ok = False
            elif vi.type.HasField("tensor_type") and any(
                d.dim_value > _MAX_INFERRED_DIM for d in vi.type.tensor_type.shape.dim
            ):
                ok = False  # onnx's data propagation materializes such shapes: minutes, or out of memory
        for n in g.node:
            where = f"node '{n.name or n.op_type}' ({n.op_type})"
            _check_arity(n, n.name or n.op_type, opsets)
            for a in n.attribute:
                if a.HasField("t"):
                    _check_tensor_attribute(a.t, f"{where}: attribute '{a.name}'")
                for t in a.tensors:
                    _check_tensor_attribute(t, f"{where}: attribute '{a.name}'")
                if a.HasField("sparse_tensor"):
                    _check_tensor_attribute(a.sparse_tensor.values, f"{where}: attribute '{a.name}' (values)")
                if a.HasField("g"):
                    walk(a.g, False, visible)
                for sg in a.graphs:
                    walk(sg, False, visible)
            if n.op_type == "GatherND" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "batch_dims" and a.i < 0:
                        raise InvalidModel(f"{where}: attribute 'batch_dims' is {a.i}; it must be >= 0")
            if n.op_type == "Einsum" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:  # onnx's inference loops forever on some (e.g. "(a*)*b")
                    if a.name == "equation" and not _EINSUM_EQUATION.fullmatch(a.s):
                        raise InvalidModel(f"{where}: attribute 'equation' is {a.s[:80]!r}; it must be "
                                           "comma-separated letter subscripts (with '...'), optionally '->' and "
                                           "the output's subscripts")
            if n.op_type == "Split" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "num_outputs" and a.i != len(n.output):
                        raise InvalidModel(f"{where}: attribute 'num_outputs' is {a.i} but the node has "
                                           f"{len(n.output)} outputs (they must be equal)")

    walk(proto.graph, True)
    return ok


def _infer_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    types: dict[str, onnx.TypeProto] = {}
    try:
        # No data propagation: it evaluates shape arithmetic inside onnx's C++ with no size bound (a
        # ConstantOfShape of 2^31 elements ate all memory before any onnxfast guard could run: fuzz
        # corpus constantofshape-hang-*). It only refines a few static shapes; kernels check at run time.
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=False)
    except Exception:  # inference is advisory: kernels check types at run time
        return types

    def walk(g: onnx.GraphProto):
        for vi in itertools.chain(g.value_info, g.output, g.input):
            if vi.HasField("type"):
                types.setdefault(vi.name, vi.type)
        for n in g.node:
            for sg in node_subgraphs(n):
                walk(sg)

    walk(inferred.graph)
    # Outputs onnx's inference leaves untyped though the schema fixes their type (TreeEnsembleClassifier's
    # scores): declared, and inference run once more so that the types reach the nodes that read them.
    opsets = {o.domain or "": o.version for o in proto.opset_import}
    fixed = {}
    for n in inferred.graph.node:
        missing = [(i, o) for i, o in enumerate(n.output) if o and o not in types]
        schema = schema_for(n.op_type, opsets.get(n.domain or "", 1), n.domain or "") if missing else None
        for i, o in missing if schema is not None else ():
            code = _fixed_output_type(schema, i)
            if code:
                fixed[o] = code
    if fixed:
        again = onnx.ModelProto()
        again.CopyFrom(inferred)
        again.graph.value_info.extend(onnx.helper.make_tensor_value_info(o, c, None) for o, c in fixed.items())
        try:
            walk(onnx.shape_inference.infer_shapes(again, strict_mode=False, data_prop=False).graph)
        except Exception:  # noqa: BLE001 - advisory, as above
            pass
    return types


def node_subgraphs(n: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held in a node's attributes (If branches, Loop/Scan bodies, ...)."""
    out: list[onnx.GraphProto] = []
    for a in n.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def subgraph_outer_refs(g: onnx.GraphProto) -> list[str]:
    """Names a graph proto (with its nested subgraphs) reads but does not define, in first-use order."""
    defined = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    defined |= {st.values.name for st in g.sparse_initializer}
    for n in g.node:
        defined.update(o for o in n.output if o)
    refs: list[str] = []
    seen: set[str] = set()

    def use(name: str):
        if name and name not in defined and name not in seen:
            seen.add(name)
            refs.append(name)

    for n in g.node:
        for i in n.input:
            use(i)
        for sg in node_subgraphs(n):
            for r in subgraph_outer_refs(sg):
                use(r)
    for o in g.output:
        use(o.name)
    return refs


def _node_attrs(n: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: attribute_value(a) for a in n.attribute}


def _call_body(n: onnx.NodeProto, f: onnx.FunctionProto, ctx: _Ctx) -> list[onnx.NodeProto]:
    """The nodes of function ``f`` instantiated for call ``n`` (values renamed, attributes bound)."""
    prefix = f"{n.name or n.op_type}/{next(ctx.counter)}/"
    rename = {}
    for formal, actual in zip(f.input, n.input):
        rename[formal] = actual
    for formal in f.input[len(n.input) :]:
        rename[formal] = ""
    for formal, actual in zip(f.output, n.output):
        rename[formal] = actual
    given = {a.name: a for a in n.attribute}
    defaults = {a.name: a for a in f.attribute_proto}
    caller = schema_for(n.op_type, ctx.opsets.get("" if n.domain == "ai.onnx" else n.domain, 0), n.domain)
    if caller is not None:  # schema functions: the operator's own attribute defaults
        for name, a in caller.attributes.items():
            if name not in defaults and a.default_value is not None and a.default_value.name:
                d = onnx.AttributeProto()
                d.CopyFrom(a.default_value)
                defaults[name] = d

    def local(name: str) -> str:
        return rename.get(name, prefix + name) if name else ""

    def rename_graph(g: onnx.GraphProto) -> None:
        # Function bodies are closed: every name in a nested graph is function-local.
        for v in list(g.input) + list(g.output) + list(g.value_info):
            v.name = local(v.name)
        for t in g.initializer:
            t.name = local(t.name)
        for nd in g.node:
            nd.input[:] = [local(i) for i in nd.input]
            nd.output[:] = [local(o) for o in nd.output]
            for sg in node_subgraphs(nd):
                rename_graph(sg)
    for o in f.opset_import:
        dom = "" if o.domain == "ai.onnx" else o.domain
        ctx.opsets.setdefault(dom, int(o.version))
    body: list[onnx.NodeProto] = []
    for b in f.node:
        nb = onnx.NodeProto()
        nb.CopyFrom(b)
        nb.name = prefix + (b.name or b.op_type)
        del nb.input[:]
        del nb.output[:]
        nb.input.extend(local(i) for i in b.input)
        nb.output.extend(local(o) for o in b.output)
        new_attrs = []
        for a in nb.attribute:
            if a.ref_attr_name:
                src = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is None:
                    continue  # attribute left unset: the schema default applies
                na = onnx.AttributeProto()
                na.CopyFrom(src)
                na.name = a.name
                new_attrs.append(na)
            else:
                new_attrs.append(a)
        for sg in node_subgraphs(nb):
            rename_graph(sg)
        del nb.attribute[:]
        nb.attribute.extend(new_attrs)
        body.append(nb)
    return body


def _complete_type(tp: onnx.TypeProto) -> bool:
    """A type with every level set: a tensor's element type, a sequence's / optional's element type,
    a map's key and value."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        return getattr(tp, kind).elem_type != 0
    if kind in ("sequence_type", "optional_type"):
        return _complete_type(getattr(tp, kind).elem_type)
    if kind == "map_type":
        return tp.map_type.key_type != 0 and _complete_type(tp.map_type.value_type)
    return False


def _schema_function(n: onnx.NodeProto, ctx: _Ctx) -> onnx.FunctionProto | None:
    """The function body the ONNX schema defines for an operator we have no kernel for."""
    domain = "" if n.domain == "ai.onnx" else n.domain
    opset = ctx.opsets.get(domain)
    if opset is None:
        return None
    schema = schema_for(n.op_type, opset, domain)
    if schema is None:
        return None
    data = b""
    try:
        if schema.has_function:
            versions = [v for v in schema.function_opset_versions if v <= opset]
            if versions:
                data = schema.get_function_with_opset_version(max(versions))
        elif schema.has_context_dependent_function:
            types = []
            for i in n.input:
                tp = ctx.types.get(i) if i else onnx.TypeProto()
                if tp is None or (i and not _complete_type(tp)):
                    # the body depends on input types we do not know (onnx's builders dereference
                    # them unchecked: SequenceMap over an input typed {} segfaulted)
                    return None
                types.append(tp.SerializeToString())
            if n.op_type == "SequenceMap" and (not n.input or ctx.types[n.input[0]].WhichOneof("value") != "sequence_type"):
                return None  # its builder reads input 0 as a sequence
            versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
            nb = n.SerializeToString()
            if versions:
                data = schema.get_context_dependent_function_with_opset_version(max(versions), nb, types)
            else:
                data = schema.get_context_dependent_function(nb, types)
    except Exception:  # the schema could not build a body for this node
        return None
    if not data:
        return None
    f = onnx.FunctionProto()
    f.ParseFromString(data)
    return f


def _expanded_size(nodes, ctx: _Ctx, memo: dict, stack: tuple) -> int:
    """How many nodes ``nodes`` become once model-local functions are expanded (computed per
    function once, so a chain of functions that each call the next twice costs linear time)."""
    total = 0
    for n in nodes:
        key = (n.domain, n.op_type, getattr(n, "overload", ""))
        f = ctx.functions.get(key)
        if f is None:
            total += 1
            continue
        if key in stack:
            raise InvalidModel(f"function '{n.op_type}' (domain '{n.domain}') calls itself")
        if key not in memo:
            memo[key] = _expanded_size(list(f.node), ctx, memo, stack + (key,))
        total += memo[key]
        if total > MAX_EXPANDED_NODES:
            return total
    return total


def _check_arity(n: onnx.NodeProto, name: str, opsets: dict[str, int]) -> None:
    """A node's inputs and outputs against its operator schema: not more than the schema allows,
    and every required (non-optional) input and output named; its attributes too (ops/_validate.py:
    none unknown, each of the schema's type, the required ones given). Nodes of domains without ONNX
    schemas (onnxfast's fused ops, custom domains) are checked by their kernels."""
    domain = "" if n.domain == "ai.onnx" else n.domain
    opset = opsets.get(domain)
    if opset is None:
        return
    sch = schema_for(n.op_type, opset, domain)
    if sch is None:
        return
    where = f"node '{name}' ({n.op_type})"
    O = onnx.defs.OpSchema.FormalParameterOption
    for kind, names, formals, lo, hi in (
        ("input", list(n.input), sch.inputs, sch.min_input, sch.max_input),
        ("output", list(n.output), sch.outputs, sch.min_output, sch.max_output),
    ):
        for i, formal in enumerate(formals):
            if formal.option == O.Variadic:
                break
            if formal.option == O.Single and i < lo and i < len(names) and not names[i]:
                raise InvalidModel(f"{where}: its required {kind} {i} ('{formal.name}') has an empty name")
        count = len(names)
        while count and not names[count - 1]:
            count -= 1  # trailing empty names are omitted optionals
        if count > hi:
            raise InvalidModel(f"{where} has {count} {kind}s; {n.op_type}-{sch.since_version} takes at most {hi}")
        if count < lo:
            raise InvalidModel(f"{where} has {count} {kind}s; {n.op_type}-{sch.since_version} needs at least {lo}")
    check_schema_attributes(n, name, sch)


def _inline_functions(nodes: list[onnx.NodeProto], ctx: _Ctx, depth: int = 0) -> list[onnx.NodeProto]:
    """Replace calls of model-local functions by their bodies, and operators without a kernel by
    the function body their schema defines (recursively)."""
    if depth > 32:
        raise InvalidModel("functions call each other recursively (depth > 32)")
    out: list[onnx.NodeProto] = []
    for n in nodes:
        key = (n.domain, n.op_type, getattr(n, "overload", ""))
        f = ctx.functions.get(key)
        if f is None:
            domain = "" if n.domain == "ai.onnx" else n.domain
            if not ctx.has_kernel(domain, n.op_type):
                f = _schema_function(n, ctx)
        if f is None:
            out.append(n)
            continue
        # Functions may use their own opset versions; their nodes run at the model's.
        out.extend(_inline_functions(_call_body(n, f, ctx), ctx, depth + 1))
    return out


def _build_graph(gp: onnx.GraphProto, ctx: _Ctx, outer: set[str], inits=None) -> Graph:
    if inits is None:
        inits = load_initializers(gp, ctx.external, ctx.release)
    value_info: dict[str, ValueInfo] = {}
    for name, tp in ctx.types.items():
        value_info[name] = ValueInfo(name, tp)
    for vi in itertools.chain(gp.value_info, gp.input, gp.output):
        if vi.HasField("type"):
            value_info[vi.name] = ValueInfo(vi.name, vi.type)
    inputs = [ValueInfo(vi.name, vi.type if vi.HasField("type") else None) for vi in gp.input]
    outputs = [ValueInfo(vi.name, value_info.get(vi.name, ValueInfo(vi.name)).type) for vi in gp.output]
    for name, arr in inits.items():
        if name not in value_info:
            code = dtypes.onnx_code(arr.dtype)
            tp = onnx.helper.make_tensor_type_proto(code, list(arr.shape))
            value_info[name] = ValueInfo(name, tp)
            ctx.types.setdefault(name, tp)

    expanded = _expanded_size(list(gp.node), ctx, {}, ())
    if expanded > MAX_EXPANDED_NODES:
        raise InvalidModel(
            f"graph '{gp.name}' would have {expanded} nodes once its functions are expanded, more than the "
            f"{MAX_EXPANDED_NODES} onnxfast accepts"
        )
    protos = _inline_functions(list(gp.node), ctx)
    defined: dict[str, str] = {}
    for vi in gp.input:
        defined[vi.name] = "graph input"
    for name in inits:
        defined.setdefault(name, "initializer")
    nodes: list[Node] = []
    for i, n in enumerate(protos):
        name = n.name or f"{n.op_type}_{i}"
        _check_arity(n, name, ctx.opsets)
        attrs = _node_attrs(n)
        node = Node(n.op_type, "" if n.domain == "ai.onnx" else n.domain, name, list(n.input), list(n.output), attrs)
        implicit: list[str] = []
        for sg in node_subgraphs(n):
            for r in subgraph_outer_refs(sg):
                if r not in implicit:
                    implicit.append(r)
        node.implicit_inputs = implicit
        nodes.append(node)
        for o in n.output:
            if not o:
                continue
            if o in defined:
                raise InvalidModel(f"value '{o}' is defined twice: by {defined[o]} and by node '{name}' ({n.op_type})")
            defined[o] = f"node '{name}' ({n.op_type})"

    # Subgraphs: built after the names of this scope are known.
    scope = set(outer) | set(defined)
    for node, n in zip(nodes, protos):
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                node.subgraphs[a.name] = _build_graph(a.g, ctx, scope)

    nodes = _toposort(nodes, set(defined) - {o for nd in nodes for o in nd.outputs}, outer, gp.name)
    for o in gp.output:
        if o.name not in defined and o.name not in outer:
            raise InvalidModel(f"graph output '{o.name}' is not produced by any node, input or initializer")
    refs = [r for r in subgraph_outer_refs(gp) if r in outer]
    return Graph(gp.name, nodes, inputs, outputs, inits, value_info, refs, gp.doc_string)


def _toposort(nodes: list[Node], available: set[str], outer: set[str], gname: str) -> list[Node]:
    producers: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.outputs:
            if o:
                producers[o] = i
    deps: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        d: set[int] = set()
        for name in itertools.chain(n.inputs, n.implicit_inputs):
            if not name or name in available:
                continue
            p = producers.get(name)
            if p is None:
                if name in outer:
                    continue
                raise InvalidModel(
                    f"node '{n.name}' ({n.op_type}) reads '{name}', which no node, graph input or "
                    f"initializer{' or enclosing graph' if outer else ''} defines"
                )
            d.add(p)
        deps.append(d)
        for p in d:
            users.setdefault(p, []).append(i)
    indeg = [len(d) for d in deps]
    ready = [i for i, k in enumerate(indeg) if k == 0]
    heapq.heapify(ready)  # keep the model's own order among ready nodes
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, []):
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = [nodes[i].name for i in range(len(nodes)) if indeg[i] > 0]
        raise InvalidModel(f"graph '{gname}' has a cycle through nodes {stuck[:10]}")
    return [nodes[i] for i in order]


# ---- back to ONNX -----------------------------------------------------------------------------


def to_proto(model: Model) -> onnx.ModelProto:
    """The model as it is now (after the optimizer's rewrites) as a ModelProto: functions inlined,
    folded values as initializers, fused nodes in the ``onnxfast`` domain (whose schemas
    onnxfast registers with the onnx package, so the result passes onnx.checker and loads again)."""
    domains: set[str] = set()
    graph = _graph_to_proto(model.graph, model.opsets, domains)
    opsets = dict(model.opsets)
    for d in domains:
        opsets.setdefault(d, 1)
    m = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in sorted(opsets.items())])
    # IR 4 lets initializers be constants rather than graph inputs (folded values are constants);
    # it changes nothing else, and the model's inputs that have initializers stay overridable.
    m.ir_version = max(model.ir_version, 4)
    m.producer_name = "onnxfast"
    from . import __version__

    m.producer_version = __version__
    m.domain = model.domain
    m.model_version = model.model_version
    m.doc_string = model.doc_string
    for k, v in model.metadata.items():
        m.metadata_props.add(key=k, value=v)
    return m


def save(model: Model, path: str) -> None:
    """Write to_proto(model) to ``path``; past protobuf's 2 GB limit the weights go to ``<file>.data``
    beside it (ONNX external data)."""
    m = to_proto(model)
    if m.ByteSize() < (2 << 30) - (64 << 20):
        onnx.save(m, path)
    else:
        onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=os.path.basename(path) + ".data", size_threshold=1024)


def _graph_to_proto(g: Graph, opsets: dict[str, int], domains: set[str]) -> onnx.GraphProto:
    from onnx import numpy_helper

    nodes = [_node_to_proto(n, opsets, domains) for n in g.nodes]

    def info(vi: ValueInfo) -> onnx.ValueInfoProto:
        p = onnx.ValueInfoProto(name=vi.name)
        if vi.type is not None:
            p.type.CopyFrom(vi.type)
        return p

    produced = {o for n in g.nodes for o in n.outputs if o}
    ends = {vi.name for vi in itertools.chain(g.inputs, g.outputs)}
    value_info = [info(vi) for name, vi in g.value_info.items()
                  if name in produced and name not in ends and vi.type is not None]
    inits = [numpy_helper.from_array(np.asarray(a), name) for name, a in g.initializers.items()]
    graph = onnx.helper.make_graph(nodes, g.name, [info(vi) for vi in g.inputs], [info(vi) for vi in g.outputs],
                                   inits, doc_string=g.doc, value_info=value_info)
    return graph


def _node_to_proto(n: Node, opsets: dict[str, int], domains: set[str]) -> onnx.NodeProto:
    """A node as a NodeProto (its subgraphs too); domains not in ``opsets`` are added to ``domains``."""
    if n.domain not in opsets:
        domains.add(n.domain)
    p = onnx.helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, domain=n.domain)
    schema = schema_for(n.op_type, opsets.get(n.domain, 1), n.domain)
    for name, value in n.attrs.items():
        if name in n.subgraphs:
            a = onnx.helper.make_attribute(name, _graph_to_proto(n.subgraphs[name], opsets, domains))
        else:
            a = _attribute_proto(name, value, schema)
        if a is not None:
            p.attribute.append(a)
    return p


_ATTR_FROM_PYTHON = {bool: "INT", int: "INT", float: "FLOAT", str: "STRING", np.ndarray: "TENSOR"}


def _attribute_proto(name: str, value: Any, schema) -> onnx.AttributeProto | None:
    """A node attribute (as ``attribute_value`` made it) back as an AttributeProto, typed by the
    schema where there is one; None for a value that cannot be written (an unknown empty list)."""
    from onnx import numpy_helper

    A = onnx.AttributeProto
    if value is None:
        return None
    kind = None
    if schema is not None and name in schema.attributes:
        kind = A.AttributeType.Name(int(schema.attributes[name].type))
    if kind is None or kind == "UNDEFINED":
        if isinstance(value, list):
            if not value:
                return None
            first = value[0]
            kind = {int: "INTS", float: "FLOATS", str: "STRINGS"}.get(type(first))
            if kind is None and isinstance(first, np.ndarray):
                kind = "TENSORS"
            elif kind is None and isinstance(first, onnx.GraphProto):
                kind = "GRAPHS"
        elif isinstance(value, onnx.GraphProto):
            kind = "GRAPH"
        elif isinstance(value, onnx.TypeProto):
            kind = "TYPE_PROTO"
        elif isinstance(value, tuple):
            kind = "SPARSE_TENSOR"
        else:
            kind = next((k for t, k in _ATTR_FROM_PYTHON.items() if isinstance(value, t)), None)
        if kind is None:
            raise InvalidModel(f"cannot write attribute '{name}' of type {type(value).__name__}")

    def text(s) -> bytes:
        return s if isinstance(s, bytes) else str(s).encode("utf-8", errors="surrogateescape")

    a = A(name=name, type=getattr(A, kind))
    if kind == "INT":
        a.i = int(value)
    elif kind == "FLOAT":
        a.f = float(value)
    elif kind == "STRING":
        a.s = text(value)
    elif kind == "TENSOR":
        a.t.CopyFrom(numpy_helper.from_array(np.asarray(value)))
    elif kind == "GRAPH":
        a.g.CopyFrom(value)
    elif kind == "SPARSE_TENSOR":
        a.sparse_tensor.CopyFrom(value[1])
    elif kind == "TYPE_PROTO":
        a.tp.CopyFrom(value)
    elif kind == "INTS":
        a.ints.extend(int(v) for v in value)
    elif kind == "FLOATS":
        a.floats.extend(float(v) for v in value)
    elif kind == "STRINGS":
        a.strings.extend(text(v) for v in value)
    elif kind == "TENSORS":
        a.tensors.extend(numpy_helper.from_array(np.asarray(v)) for v in value)
    elif kind == "GRAPHS":
        a.graphs.extend(value)
    elif kind == "SPARSE_TENSORS":
        a.sparse_tensors.extend(value)
    elif kind == "TYPE_PROTOS":
        a.type_protos.extend(value)
    else:
        raise InvalidModel(f"cannot write attribute '{name}' of type {kind}")
    return a
