"""Constant folding and shape folding: the basic level's passes, run before any fusion.

``fold_constants`` replaces a node by its outputs when every input is a true constant (an
initializer that is not also a graph input, or a value folded before it): Constant nodes, and any
deterministic node its numpy kernel can evaluate now. An initializer that is also a graph input is
an overridable default and never folds. ``fold_shapes`` replaces Shape / Size of a value whose
shape the model fixes (every dim a number) by that constant, so the shape arithmetic that follows
folds in turn (main graph only: control-flow bodies' declared shapes are not checked when they run).
Constant folding runs in subgraphs too, with the subgraph's own constants. Both record what they
folded in ``graph.folded`` and drop initializers nobody reads any more.
"""

from __future__ import annotations

import numpy as np
import onnx

from .. import dtypes, ir
from ..registry import REGISTRY, kernel_node, since_version

# Never evaluated at session creation: random or stateful results.
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                "Multinomial", "Dropout", "ImageDecoder"}
# A fold may not grow the constants by more than this factor (or 64 MiB): Expand, Tile, ConstantOfShape
# of a large shape stay nodes.
MAX_GROWTH = 2
MAX_GROWN_BYTES = 64 << 20


def fold_constants(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, _fold_constants)


def fold_shapes(graph: ir.Graph, model: ir.Model) -> bool:
    # The main graph only: a control-flow body's declared input shapes are not checked at run time.
    return _fold_shapes(graph, model)


def each_graph(graph: ir.Graph, model: ir.Model, fn) -> bool:
    changed = fn(graph, model)
    for node in graph.nodes:
        for sub in node.subgraphs.values():
            changed = each_graph(sub, model, fn) or changed
    return changed


def _fold_constants(graph: ir.Graph, model: ir.Model) -> bool:
    return _replace_by_values(graph, model, lambda node, known: _evaluate(node, graph, model, known))


def _fold_shapes(graph: ir.Graph, model: ir.Model) -> bool:
    def shape_value(node, known):
        v = _static_shape_value(node, graph, model)
        return None if v is None else [v]

    return _replace_by_values(graph, model, shape_value)


def _replace_by_values(graph: ir.Graph, model: ir.Model, evaluate) -> bool:
    """Replace each node for which ``evaluate(node, known)`` gives its output values by those values
    (true constants); ``known`` holds the true constants, those folded before included."""
    known = graph.constants()
    changed = False
    for node in list(graph.nodes):
        values = evaluate(node, known)
        if values is None:
            continue
        folded = {name: v for name, v in zip(node.outputs, values) if name}
        graph.replace([node], [], constants=folded, opsets=model.opsets)
        known.update(folded)
        graph.folded.append((node.name, node.op_type, node.domain))
        changed = True
    if changed:
        drop_unused_initializers(graph)
    return changed


def drop_unused_initializers(graph: ir.Graph) -> None:
    """Initializers no node, subgraph or graph output reads (graph inputs' defaults stay)."""
    for name in [n for n in graph.initializers if not graph.use_count(n) and not graph.is_input(n)]:
        del graph.initializers[name]


def _evaluate(node: ir.Node, graph: ir.Graph, model: ir.Model, known: dict) -> list[np.ndarray] | None:
    """The node's outputs computed now, or None when it does not fold."""
    if (node.subgraphs or node.implicit_inputs or node.op_type in NOT_FOLDABLE or not node.outputs
            or not node.outputs[0]):
        return None
    is_constant = node.op_type == "Constant" and node.domain == ""
    if not is_constant and (not any(node.inputs) or any(n and n not in known for n in node.inputs)):
        return None
    opset = model.opsets.get(node.domain)
    if opset is None:
        return None
    sv = since_version(node.op_type, opset, node.domain)
    factory = REGISTRY.factory(node.domain, node.op_type, sv)
    if factory is None:
        return None
    args = [known[n] if n else None for n in node.inputs]
    in_types = [dtypes.onnx_code(a.dtype) or None if isinstance(a, np.ndarray) else None for a in args]
    out_types = [vi.elem_type if (vi := graph.type_of(n)) is not None else None for n in node.outputs]
    try:
        fn = factory(kernel_node(node, opset, sv, in_types, out_types, known))
        with np.errstate(all="ignore"):
            out = fn(*args)
    except Exception:  # noqa: BLE001 - folding is an optimization: the error surfaces at run time instead
        return None
    outs = list(out) if isinstance(out, tuple) else [out]
    if len(outs) < len([o for o in node.outputs if o]) or not all(isinstance(v, np.ndarray) for v in outs):
        return None
    in_bytes = sum(int(a.nbytes) for a in args if isinstance(a, np.ndarray))
    if not is_constant and sum(int(v.nbytes) for v in outs) > max(MAX_GROWTH * in_bytes, MAX_GROWN_BYTES):
        return None
    return [v if v.flags.c_contiguous else v.copy(order="C") for v in outs]  # (ascontiguousarray makes 0-d 1-d)


def _static_shape_value(node: ir.Node, graph: ir.Graph, model: ir.Model) -> np.ndarray | None:
    """Shape(x) / Size(x) as a constant when x's declared or inferred shape is all numbers."""
    if node.domain != "" or node.op_type not in ("Shape", "Size") or not node.inputs or not node.inputs[0]:
        return None
    x = node.inputs[0]
    if x in graph.initializers:
        return None  # fold_constants' case (or an overridable default, which must not fold)
    vi = graph.type_of(x)
    dims = vi.shape if vi is not None else None
    if dims is None or not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    if node.op_type == "Size":
        return np.array(int(np.prod(dims, dtype=np.int64)), np.int64)
    rank = len(dims)
    start, end = int(node.attrs.get("start", 0) or 0), node.attrs.get("end")
    end = rank if end is None else int(end)
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, end))
    return np.array(dims[start:end], np.int64)
