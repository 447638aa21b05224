"""Elementwise fusion (extended level): a connected group of float32 elementwise nodes becomes one
``onnxfast::FusedElementwise`` node that runs the group as a small program, one pass over memory
(the native kernel works through the elements in cache-sized blocks, every operation of the
program on a block before the next block).

A group grows backwards from its last node through operands whose producer is fusible and whose
value has no other reader (a value read twice, or a graph output, ends the group there). Every
operand of a member is either a tensor of exactly the output's shape (same rank, same numbers or
symbols) or a true constant of one element; a node with an operand that would broadcast stays out.

The program (attributes): ``ops`` (operator names, in order) and ``args`` (two slot numbers per
operation, -1 for a unary one's second). Slots 0..n_inputs-1 are the node's inputs, then the
``constants`` (floats), then each operation's result; the last operation's result is the output.
"""

from __future__ import annotations

from .. import ir
from .folding import each_graph
from .fusions import FUSED_DOMAIN, _float32, scalar_constant

UNARY = {"Relu", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal", "Sigmoid", "Tanh", "Erf"}
BINARY = {"Add", "Sub", "Mul", "Div"}
MIN_GROUP = 2


def _fusible(node: ir.Node) -> bool:
    if node.domain != "" or len(node.outputs) != 1 or node.attrs or node.subgraphs:
        return False
    return (node.op_type in UNARY and len(node.inputs) == 1) or (node.op_type in BINARY and len(node.inputs) == 2)


def _shape(graph: ir.Graph, name: str):
    vi = graph.type_of(name)
    if vi is None or vi.shape is None or any(d is None for d in vi.shape):
        return None
    return list(vi.shape)


def _operands_fit(graph: ir.Graph, node: ir.Node, shape: list) -> bool:
    """Every operand is a float32 tensor of ``shape`` or a true constant of one element."""
    return all(scalar_constant(graph, name) is not None or (_float32(graph, name) and _shape(graph, name) == shape)
               for name in node.inputs)


def _group(graph: ir.Graph, root: ir.Node, shape: list) -> list[ir.Node]:
    """The nodes fused with ``root`` (whose operands fit), in graph order."""
    members = {id(root): root}
    stack = [root]
    while stack:
        node = stack.pop()
        for name in node.inputs:
            maker = graph.producer(name)
            if (maker is not None and id(maker) not in members and _fusible(maker)
                    and graph.only_consumer(name) is node and _operands_fit(graph, maker, shape)):
                members[id(maker)] = maker
                stack.append(maker)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    return sorted(members.values(), key=lambda n: order[id(n)])


def _program(graph: ir.Graph, nodes: list[ir.Node]):
    """(inputs, constants, ops, args) of the fused node."""
    inputs: list[str] = []
    constants: list[float] = []
    const_names: list[str] = []
    produced = {n.outputs[0]: i for i, n in enumerate(nodes)}
    for n in nodes:
        for name in n.inputs:
            if name in produced or name in inputs or name in const_names:
                continue
            c = scalar_constant(graph, name)
            if c is not None:
                const_names.append(name)
                constants.append(c)
            else:
                inputs.append(name)

    def slot(name: str) -> int:
        if name in produced:
            return len(inputs) + len(constants) + produced[name]
        if name in inputs:
            return inputs.index(name)
        return len(inputs) + const_names.index(name)

    ops, args = [], []
    for n in nodes:
        ops.append(n.op_type)
        args += [slot(n.inputs[0]), slot(n.inputs[1]) if len(n.inputs) > 1 else -1]
    return inputs, constants, ops, args


def fuse_elementwise(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, _fuse_all)


def _fuse_all(graph: ir.Graph, model: ir.Model) -> bool:
    removed: set[int] = set()
    unfit: set[int] = set()  # fusible nodes whose operands broadcast: not in any group
    for root in reversed(list(graph.nodes)):
        if not _fusible(root) or id(root) in removed:
            continue
        out = root.outputs[0]
        shape = _shape(graph, out)
        if shape is None or not _float32(graph, out) or not _operands_fit(graph, root, shape):
            unfit.add(id(root))
            continue
        reader = graph.only_consumer(out)
        if reader is not None and _fusible(reader) and id(reader) not in unfit:
            continue  # not the end of a group: its reader's group takes it
        nodes = _group(graph, root, shape)
        if len(nodes) < MIN_GROUP:
            continue
        inputs, constants, ops, args = _program(graph, nodes)
        if not inputs:
            continue  # constants only: constant folding's work
        model.opsets.setdefault(FUSED_DOMAIN, 1)
        attrs = {"ops": ops, "args": args}
        if constants:
            attrs["constants"] = constants
        graph.replace(nodes, [ir.Node("FusedElementwise", FUSED_DOMAIN, root.name, inputs, [out], attrs)],
                      opsets=model.opsets)
        removed.update(id(n) for n in nodes)
    return bool(removed)
