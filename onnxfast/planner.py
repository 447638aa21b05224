"""The planner: an IR graph + providers -> a native ``_core.Plan``.

It assigns value ids (constants first), folds Constant nodes, partitions nodes between
providers in the user's order (inserting device copies at boundaries), chooses each node's
kernel (native when the registry has one for the node's element type and it is not disabled,
else the numpy kernel), compiles subgraphs of control-flow nodes into plans of their own, and
records what runs where for the kernel listing. Lifetimes are computed by ``Plan.finalize``.
"""

from __future__ import annotations

import functools

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core, dtypes, ir
from .errors import InvalidModel, UnsupportedOperator
from .providers import CPUExecutionProvider, ExecutionProvider
from .ops._validate import input_shapes
from .registry import REGISTRY, KernelNode, kernel_node, native_attrs, resolve_attributes, since_version

log = logging.getLogger("onnxfast")


@dataclass
class PlanOptions:
    disabled: set[str] = field(default_factory=set)  # {"native", "numpy", "native:MatMul", "numpy:Add", ...}
    allow_prepack: bool = True
    dim_overrides: dict[str, int] = field(default_factory=dict)
    cache_blocks: bool = True  # enable_cpu_mem_arena
    mem_pattern: bool = True  # enable_mem_pattern
    custom_ops: dict = field(default_factory=dict)  # (domain, op_type) -> factory (SessionOptions.register_custom_op)
    # (every plan the planner builds, control-flow bodies' included, gets these two)

    def allowed(self, kind: str, op_type: str) -> bool:
        return kind not in self.disabled and f"{kind}:{op_type}" not in self.disabled


@dataclass
class KernelRecord:
    node: str
    op_type: str
    domain: str
    provider: str
    kernel: str  # native | native:prepacked | native:objects | numpy | custom | control-flow | copy | constant
    subgraph: str = ""


class Subgraph:
    """A compiled subgraph: ``run(formal_inputs, env)`` where env maps outer-scope names to values."""

    def __init__(self, plan, formal_names: list[str], outer_names: list[str], name: str,
                 output_types: list[int | None] | None = None):
        self.plan = plan
        self.output_types = output_types or []
        self.formal_names = formal_names
        self.outer_names = outer_names
        self.name = name

    def run(self, formals, env: dict[str, Any]) -> list:
        args = list(formals) + [env.get(n) for n in self.outer_names]
        return self.plan.run_positional(args)


class Planner:
    def __init__(self, model: ir.Model, providers: list[ExecutionProvider], options: PlanOptions):
        self.model = model
        self.providers = providers
        self.options = options
        self.records: list[KernelRecord] = []

    # ------------------------------------------------------------------------------------------
    def build(self) -> _core.Plan:
        return self._build_graph(self.model.graph, outer=[], main=True, prefix="")

    def _elem_type(self, graph: ir.Graph, consts: dict[str, np.ndarray], name: str) -> int | None:
        if not name:
            return None
        if name in consts:
            return dtypes.onnx_code(consts[name].dtype) or None
        vi = graph.type_of(name)
        return vi.elem_type if vi is not None else None

    def _build_graph(self, graph: ir.Graph, outer: list[str], main: bool, prefix: str) -> _core.Plan:
        plan = _core.Plan()
        plan.cache_blocks = self.options.cache_blocks
        plan.mem_pattern = self.options.mem_pattern
        ids: dict[str, int] = {}
        location: dict[str, int] = {}  # value -> device
        consts: dict[str, np.ndarray] = {}
        nid = 0

        input_names = [vi.name for vi in graph.inputs]
        overridable = [n for n in input_names if n in graph.initializers]
        # Constants: initializers that are not graph inputs, and folded Constant nodes.
        const_items: list[tuple[str, Any]] = []
        for name, arr in graph.initializers.items():
            if name not in input_names:
                const_items.append((name, arr))
        # Constant nodes left by the optimizer (level 0 runs none of its folding) become constants here.
        folded: set[int] = set()
        for i, node in enumerate(graph.nodes):
            if node.op_type == "Constant" and node.domain == "" and node.outputs and node.outputs[0]:
                const_items.append((node.outputs[0], self._fold_constant(node)))
                folded.add(i)
        # Constants nobody reads any more (inputs of folded nodes) are left out of the plan. The
        # others get their ids now and go into the plan once the steps exist (add_constants below):
        # a weight that only pre-packing kernels read is released as soon as they have packed it.
        readers: dict[str, int] = {}
        for i, node in enumerate(graph.nodes):
            if i not in folded:
                for n in list(node.inputs) + list(node.implicit_inputs):
                    readers[n] = readers.get(n, 0) + 1
        for vi in graph.outputs:
            readers[vi.name] = 1 << 30  # a graph output is never released
        const_ids: dict[str, int] = {}
        for name, value in const_items:
            if name in readers:
                ids[name] = const_ids[name] = nid
                consts[name] = value
                location[name] = 0
                nid += 1
        del const_items
        default_slots: dict[str, int] = {}
        for name in overridable:
            default_slots[name] = nid
            nid += 1
        packed_reads: dict[str, int] = {}
        released: dict[str, tuple[int, list[int]]] = {}  # name -> (element type, shape) of a placeholder

        def add_constants() -> None:
            for name, cid in const_ids.items():
                if name in released:
                    plan.add_placeholder(cid, *released[name])
                else:
                    plan.add_constant(cid, consts[name])
            for name, cid in default_slots.items():
                plan.add_constant(cid, graph.initializers[name])

        def packed(node: ir.Node, kernel, inputs: list[int]) -> None:
            """Count the constant inputs this step's kernel packed; release those only packers read."""
            for k in kernel.packed_inputs():
                name = node.inputs[k] if k < len(node.inputs) else ""
                if name not in const_ids or inputs[k] != const_ids[name]:
                    continue
                packed_reads[name] = packed_reads.get(name, 0) + 1
                if packed_reads[name] == readers[name]:
                    arr = consts.pop(name)
                    released[name] = (dtypes.onnx_code(arr.dtype), list(arr.shape))
                    graph.initializers.pop(name, None)
                    graph.released[name] = (arr.dtype, tuple(arr.shape))

        def new_id(name: str) -> int:
            nonlocal nid
            ids[name] = nid
            location[name] = 0
            nid += 1
            return nid - 1

        # Inputs (graph inputs, then outer-scope names for subgraphs).
        for vi in graph.inputs:
            vid = new_id(vi.name)
            if main:
                shape = vi.shape
                dims = None
                if shape is not None:
                    dims = []
                    for d in shape:
                        if isinstance(d, str) and d in self.options.dim_overrides:
                            dims.append(int(self.options.dim_overrides[d]))
                        else:
                            dims.append(d if isinstance(d, int) and d > 0 else -1)
                elem = vi.elem_type
                plan.add_input(
                    vi.name,
                    vid,
                    elem if (elem and vi.is_tensor) else -1,
                    vi.is_tensor,
                    dims if vi.is_tensor else None,
                    vi.name in default_slots,
                    default_slots.get(vi.name, -1),
                    vi.is_optional,
                )
            else:
                plan.add_input(vi.name, vid, -1, False, None, False, -1, True)
        for name in outer:
            vid = new_id(name)
            plan.add_input(name, vid, -1, False, None, False, -1, True)

        copies: dict[tuple[str, int], str] = {}

        def value_on(name: str, device: int, for_node: str) -> int:
            """Id of ``name`` as seen on ``device``; inserts a copy step when it lives elsewhere."""
            if not name:
                return -1
            if name not in ids:
                raise InvalidModel(f"node '{for_node}' reads '{name}', which is not defined")
            src = location.get(name, 0)
            if src == device:
                return ids[name]
            key = (name, device)
            if key not in copies:
                op = "MemcpyToDevice" if device != 0 else "MemcpyFromDevice"
                cname = f"{name}@dev{device}"
                kernel = _core.create_kernel(op, f"{op}_{name}", 1, {}, [None], domain="onnxfast")
                cid = new_id(cname)
                location[cname] = device
                plan.add_native_step(f"{op}_{name}", op, kernel, [ids[name]], [cid], src, device)
                self.records.append(KernelRecord(f"{op}_{name}", op, "onnxfast", "copy", "native:copy", prefix))
                copies[key] = cname
            return ids[copies[key]]

        for name, op_type, domain in graph.folded:  # folded by the optimizer: computed at session creation
            self.records.append(KernelRecord(name, op_type, domain, "CPUExecutionProvider", "constant", prefix))
        for i, node in enumerate(graph.nodes):
            if i in folded:
                self.records.append(
                    KernelRecord(node.name, node.op_type, node.domain, "CPUExecutionProvider", "constant", prefix)
                )
                continue
            opset = self.model.opsets.get(node.domain)
            if opset is None:
                raise UnsupportedOperator(
                    f"node '{node.name}' uses operator domain '{node.domain}' ({node.op_type}), which the model "
                    "does not import (no opset_import entry)"
                )
            sv = since_version(node.op_type, opset, node.domain)
            in_types = [self._elem_type(graph, consts, n) for n in node.inputs]
            # the node's attributes with schema defaults, resolved once if a `when` or the native kernel asks
            node_attrs = functools.cache(lambda: resolve_attributes(node.op_type, node.domain, opset, node.attrs))
            custom = self.options.custom_ops.get((node.domain, node.op_type))
            native_types = None if custom else REGISTRY.native_dtypes(node.domain, node.op_type, sv, node_attrs,
                                                                      in_types)
            first_type = in_types[0] if in_types else None
            native_allowed = (native_types is not None and self.options.allowed("native", node.op_type)
                              and not node.subgraphs)
            native_ok = native_allowed and first_type is not None and first_type in native_types
            factory = custom or REGISTRY.factory(node.domain, node.op_type, sv)
            numpy_ok = factory is not None and (custom is not None or self.options.allowed("numpy", node.op_type))
            # string tensors and maps: a native kernel over Python objects where one computes the node
            object_kernel = None
            object_factory = None if custom else REGISTRY.object_factory(node.domain, node.op_type, sv)
            if (object_factory is not None and not native_ok and not node.subgraphs
                    and self.options.allowed("native", node.op_type)):
                object_kernel = self._call_factory(
                    node, object_factory, self._kernel_node(node, opset, sv, in_types, graph, consts, prefix))
            native_ok = native_ok or object_kernel is not None
            # Input type unknown at plan time: native kernel chosen per run by type, numpy otherwise.
            by_type = native_allowed and first_type is None and numpy_ok
            provider = None
            for p in self.providers:
                if p.native_only:  # a device provider: only nodes its own declared kernels compute
                    p_types = REGISTRY.native_dtypes(node.domain, node.op_type, sv, node_attrs, in_types,
                                                     provider=p.name)
                    p_allowed = self.options.allowed("native", node.op_type) and not node.subgraphs
                    if not (p_allowed and p_types is not None and first_type in p_types):
                        continue
                    if p.claims(node, True):
                        provider = p
                        break
                elif p.claims(node, native_ok):
                    provider = p
                    break
            if provider is None or (not provider.native_only and not native_ok and not numpy_ok):
                domain = node.domain or "ai.onnx"
                if factory is None and native_types is None:
                    why = "onnxfast has no kernel for it"
                else:
                    why = f"its kernels are disabled by the session options ({sorted(self.options.disabled)})"
                raise UnsupportedOperator(
                    f"operator '{node.op_type}' (domain '{domain}', opset {opset}) used by node '{node.name}' is "
                    f"not supported: {why}"
                )
            device = provider.device
            inputs = [value_on(n, device, node.name) for n in node.inputs]
            implicit = [value_on(n, 0, node.name) for n in node.implicit_inputs]
            for o in node.outputs:
                if o:
                    if o in ids:
                        raise InvalidModel(f"value '{o}' is defined twice (node '{node.name}')")
            if object_kernel is not None and not provider.native_only:
                outputs = [new_id(o) if o else -1 for o in node.outputs]
                plan.add_host_step(node.name, node.op_type, object_kernel, inputs, outputs)
                kind = "native:objects"
            elif provider.native_only or native_ok or (by_type and device == 0):
                const_inputs = [consts.get(n) if n else None for n in node.inputs]
                kernel = _core.create_kernel(
                    node.op_type, node.name, opset, native_attrs(node_attrs()), const_inputs,
                    self.options.allow_prepack, input_shapes(graph, node.inputs), len(node.outputs),
                    domain=node.domain, since_version=sv, input_types=in_types, provider=provider.name,
                )
                outputs = [new_id(o) if o else -1 for o in node.outputs]
                for o in node.outputs:
                    if o:
                        location[o] = device
                fallback = None if native_ok or provider.native_only else \
                    self._numpy_kernel(node, factory, opset, sv, in_types, graph, consts, prefix)
                plan.add_native_step(node.name, node.op_type, kernel, inputs, outputs, device, device,
                                     fallback, list(kernel.dtypes) if fallback is not None else [])
                if fallback is None:
                    packed(node, kernel, inputs)
                kind = kernel.describe() + ("|numpy" if fallback is not None else "")
            else:
                fn = self._numpy_kernel(node, factory, opset, sv, in_types, graph, consts, prefix)
                outputs = [new_id(o) if o else -1 for o in node.outputs]
                plan.add_python_step(node.name, node.op_type, fn, inputs + implicit, outputs)
                kind = "control-flow" if node.subgraphs else "custom" if custom else "numpy"
            self.records.append(KernelRecord(node.name, node.op_type, node.domain, provider.name, kind, prefix))

        outs = graph.outputs
        for vi in outs:
            if vi.name not in ids:
                raise InvalidModel(f"graph output '{vi.name}' is not produced by any node")
            vid = value_on(vi.name, 0, "graph output")
            plan.add_output(vi.name, vid)
        add_constants()
        plan.finalize(nid)
        return plan

    def _numpy_kernel(self, node: ir.Node, factory, opset: int, sv: int, in_types, graph: ir.Graph,
                      consts: dict, prefix: str):
        return self._call_factory(node, factory, self._kernel_node(node, opset, sv, in_types, graph, consts, prefix))

    def _kernel_node(self, node: ir.Node, opset: int, sv: int, in_types, graph: ir.Graph, consts: dict,
                     prefix: str) -> KernelNode:
        kn = kernel_node(node, opset, sv, in_types, [self._elem_type(graph, consts, n) for n in node.outputs], consts)
        # the declared types of inputs that are not tensors (maps, sequences, optionals), None elsewhere:
        # kernels reading maps (DictVectorizer, CastMap) check their key / value types at creation
        infos = [graph.type_of(n) if n else None for n in node.inputs]
        kn.context["non_tensor_input_types"] = [
            vi.type if vi is not None and vi.type is not None and not vi.is_tensor else None for vi in infos]
        if node.subgraphs:
            kn.compile_subgraph = self._subgraph_compiler(node, prefix)
        return kn

    @staticmethod
    def _call_factory(node: ir.Node, factory, kn: KernelNode):
        """A kernel factory's result; its ValueError / TypeError / KeyError become InvalidModel naming the node."""
        try:
            return factory(kn)
        except (InvalidModel, UnsupportedOperator, NotImplementedError):
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidModel(f"{node.op_type} node '{node.name}': {e}") from None

    def _fold_constant(self, node: ir.Node):
        opset = self.model.opsets.get("", 1)
        sv = since_version("Constant", opset, "")
        factory = REGISTRY.factory("", "Constant", sv)
        if factory is None:
            raise UnsupportedOperator("no kernel for Constant")
        kn = KernelNode("Constant", "", node.name, opset, sv, dict(node.attrs), [], [], num_outputs=1)
        return factory(kn)()

    def _subgraph_compiler(self, node: ir.Node, prefix: str):
        def compile_subgraph(attr: str) -> Subgraph:
            g = node.subgraphs.get(attr)
            if g is None:
                raise InvalidModel(f"{node.op_type} node '{node.name}' has no graph attribute '{attr}'")
            sub_prefix = f"{prefix}{node.name}/{attr}/"
            saved = self.providers
            self.providers = [CPUExecutionProvider()]
            try:
                plan = self._build_graph(g, outer=list(g.outer_refs), main=False, prefix=sub_prefix)
            finally:
                self.providers = saved
            return Subgraph(plan, [vi.name for vi in g.inputs], list(g.outer_refs), sub_prefix,
                            [vi.elem_type for vi in g.outputs])

        return compile_subgraph
