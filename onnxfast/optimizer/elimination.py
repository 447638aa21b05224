"""Eliminations of the basic level: nodes that compute nothing new.

``eliminate_identity`` / ``eliminate_dropout`` / ``eliminate_cast``: a node whose output equals its
input (Identity; Dropout at inference whose mask nobody reads; Cast to the type the input has) goes,
and its readers read the input. When the output is a graph output, the producer of the input is
renamed instead (if the input is read by nothing else). ``eliminate_common_subexpressions``: a node
with the same operator, attributes and inputs as an earlier one goes, its readers read the earlier
node's outputs (random operators and nodes with subgraphs never merge). ``eliminate_dead_nodes``:
nodes whose outputs nobody reads. All work in control-flow bodies too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import dtypes, ir
from .folding import NOT_FOLDABLE, each_graph, drop_unused_initializers


def _bypass(graph: ir.Graph, node: ir.Node, src: str, dst: str) -> bool:
    """Remove ``node``, whose output ``dst`` equals its input ``src``: readers of ``dst`` read
    ``src``. False (graph unchanged) where that cannot be expressed."""
    if not src or not dst or any(dst in r.implicit_inputs for r in graph.consumers(dst)):
        return False
    if not graph.is_output(dst):
        graph.rewire(dst, src)
        graph.replace([node], [])
        return True
    # dst is a graph output: the producer of src defines dst instead, if src is its private value.
    maker = graph.producer(src)
    if maker is None or maker.subgraphs or graph.is_output(src) or graph.use_count(src) != 1:
        return False
    # The renamed producer takes the bypassed node's place: not possible when a node before that
    # place reads another of its outputs (skl2onnx's SVMClassifier -> Cast(scores), Cast(label)).
    others = {o for o in maker.outputs if o and o != src}
    if others:
        position = {id(n): i for i, n in enumerate(graph.nodes)}
        at = position[id(node)]
        if any(position.get(id(r), at) < at for o in others for r in graph.consumers(o)):
            return False
    renamed = dataclasses.replace(maker, outputs=[dst if o == src else o for o in maker.outputs],
                                  attrs=dict(maker.attrs))
    graph.replace([maker, node], [renamed])
    if src in graph.value_info and dst not in graph.value_info:
        graph.value_info[dst] = dataclasses.replace(graph.value_info[src], name=dst)
    return True


def _eliminate(graph: ir.Graph, model: ir.Model, match) -> bool:
    """Bypass every node for which ``match(node, graph)`` gives (input, output) names that are equal."""
    changed = False
    for node in list(graph.nodes):
        pair = match(node, graph)
        if pair is not None and _bypass(graph, node, *pair):
            changed = True
    return changed


def _identity(node: ir.Node, graph: ir.Graph):
    if node.op_type == "Identity" and node.domain == "" and len(node.inputs) == 1 and len(node.outputs) == 1:
        return node.inputs[0], node.outputs[0]
    return None


def _dropout(node: ir.Node, graph: ir.Graph):
    if node.op_type != "Dropout" or node.domain != "" or not node.inputs or not node.outputs:
        return None
    if len(node.outputs) > 1 and node.outputs[1] and graph.use_count(node.outputs[1]):
        return None  # the mask is read
    if "is_test" in node.attrs and not node.attrs["is_test"]:
        return None  # opset < 7 training mode
    training = node.inputs[2] if len(node.inputs) > 2 else ""
    if training:
        value = graph.constant(training)
        if value is None or value.size != 1 or bool(value.reshape(-1)[0]):
            return None  # training mode at run time, or on
    return node.inputs[0], node.outputs[0]


def _cast(node: ir.Node, graph: ir.Graph):
    if node.op_type != "Cast" or node.domain != "" or len(node.inputs) != 1 or len(node.outputs) != 1:
        return None
    src = graph.type_of(node.inputs[0])
    arr = graph.initializers.get(node.inputs[0])
    if arr is not None and not graph.is_input(node.inputs[0]):
        code = dtypes.onnx_code(arr.dtype)
    elif src is not None and src.is_tensor:
        code = src.elem_type
    else:
        return None
    if code and code == node.attrs.get("to"):
        return node.inputs[0], node.outputs[0]
    return None


def eliminate_identity(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _eliminate(g, m, _identity))


def eliminate_dropout(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _eliminate(g, m, _dropout))


def eliminate_cast(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _eliminate(g, m, _cast))


def eliminate_dead_nodes(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, _dead_nodes)


def _dead_nodes(graph: ir.Graph, model: ir.Model) -> bool:
    changed = False
    # Last to first: removing a reader can make its producers dead in the same sweep.
    for node in reversed(list(graph.nodes)):
        outs = [o for o in node.outputs if o]
        if outs and all(graph.use_count(o) == 0 for o in outs):
            graph.replace([node], [])
            changed = True
    if changed:
        drop_unused_initializers(graph)
    return changed


def _attr_key(value):
    if isinstance(value, np.ndarray):
        return ("nd", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_attr_key(v) for v in value)
    if hasattr(value, "SerializeToString"):
        return ("pb", type(value).__name__, value.SerializeToString(deterministic=True))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, value)


def eliminate_common_subexpressions(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, _cse)


def _cse(graph: ir.Graph, model: ir.Model) -> bool:
    seen: dict = {}
    changed = False
    for node in list(graph.nodes):
        if node.subgraphs or node.op_type in NOT_FOLDABLE or not any(node.outputs):
            continue
        try:
            key = (node.domain, node.op_type, tuple(node.inputs), len(node.outputs),
                   tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items())))
            hash(key)
        except TypeError:
            continue  # an attribute value without a stable key
        first = seen.get(key)
        if first is None:
            seen[key] = node
            continue
        pairs = list(zip(node.outputs, first.outputs))
        if any(o and (not f or graph.is_output(o) or any(o in r.implicit_inputs for r in graph.consumers(o)))
               for o, f in pairs):
            continue
        for o, f in pairs:
            if o:
                graph.rewire(o, f)
        graph.replace([node], [])
        changed = True
    return changed
