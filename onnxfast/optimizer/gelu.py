"""Gelu written out as elementary operators, fused into one node (extended level).

``fuse_gelu``: x * 0.5 * (1 + erf(x / sqrt 2)) -> com.microsoft Gelu(x).
``fuse_fast_gelu``: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) -> com.microsoft FastGelu(x).

The exporters write these in several orders: x / sqrt 2 or x * (1 / sqrt 2); x^3 as Pow(x, 3),
x * x * x or x * (x * x); and the final product of x, 0.5 and (1 + erf) in any grouping (torch
dynamo: x * (0.5 * a); TorchScript: (x * a) * 0.5; transformers: (x * 0.5) * a; also (x * a) / 2).
Operands are matched in either order. Every intermediate must have no other reader and every
constant must be a true constant scalar (an overridable initializer, or a constant whose broadcast
would change the output's shape, leaves the nodes alone). float32 only: the dtype the native kernel
computes. The resulting Gelu is what the MatMul epilogue fusion then folds into the GEMM.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from .folding import each_graph
from .fusions import _float32

MS_DOMAIN = "com.microsoft"
SQRT2 = math.sqrt(2.0)
TANH_SCALE = math.sqrt(2.0 / math.pi)


def _scalar(graph: ir.Graph, name: str, x: str, want: float) -> bool:
    """``name`` is a true constant holding one float close to ``want`` whose broadcast against ``x``
    keeps x's shape."""
    value = graph.constant(name)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return False
    if not np.isclose(float(value.reshape(-1)[0]), want, rtol=1e-4, atol=0.0):
        return False
    if value.ndim == 0:
        return True
    vi = graph.type_of(x)
    return vi is not None and vi.shape is not None and value.ndim <= len(vi.shape)


def _binary(node: ir.Node | None, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain == "" and len(node.inputs) == 2 \
        and len(node.outputs) == 1


def _other(node: ir.Node, name: str) -> str | None:
    """The other operand of a two-input node reading ``name`` once."""
    a, b = node.inputs
    if a == name and b != name:
        return b
    if b == name and a != name:
        return a
    return None


def _private_producer(graph: ir.Graph, name: str, reader: ir.Node) -> ir.Node | None:
    """The producer of ``name`` when ``reader`` is its only reader."""
    maker = graph.producer(name)
    return maker if maker is not None and graph.only_consumer(name) is reader else None


def _times_const(graph: ir.Graph, node: ir.Node | None, want: float, op: str = "Mul") -> str | None:
    """For node = op(v, c) or Mul(c, v) with c ~ want: v."""
    if not _binary(node, op):
        return None
    a, b = node.inputs
    if _scalar(graph, b, a, want):
        return a
    if op == "Mul" and _scalar(graph, a, b, want):
        return b
    return None


def _half_x_times(graph: ir.Graph, x: str, a_node: ir.Node) -> tuple[list[ir.Node], ir.Node] | None:
    """The nodes forming x * 0.5 * a (a = a_node's output) in any grouping: (nodes, the last one)."""
    a = a_node.outputs[0]
    m1 = graph.only_consumer(a)
    if not _binary(m1, "Mul"):
        return None
    o = _other(m1, a)
    if o is None:
        return None
    if o == x:  # (x * a) * 0.5  or  (x * a) / 2
        m2 = graph.only_consumer(m1.outputs[0])
        if _times_const(graph, m2, 0.5) == m1.outputs[0] or _times_const(graph, m2, 2.0, "Div") == m1.outputs[0]:
            return [m1, m2], m2
        return None
    if _scalar(graph, o, a, 0.5):  # x * (0.5 * a)
        m2 = graph.only_consumer(m1.outputs[0])
        if _binary(m2, "Mul") and _other(m2, m1.outputs[0]) == x:
            return [m1, m2], m2
        return None
    h = _private_producer(graph, o, m1)  # (x * 0.5) * a
    if h is not None and _times_const(graph, h, 0.5) == x:
        return [h, m1], m1
    return None


def _plus_one(graph: ir.Graph, name: str) -> ir.Node | None:
    """The Add(name, 1) that is the only reader of ``name``."""
    node = graph.only_consumer(name)
    if _binary(node, "Add"):
        o = _other(node, name)
        if o is not None and _scalar(graph, o, name, 1.0):
            return node
    return None


def _replace(graph: ir.Graph, model: ir.Model, nodes: list[ir.Node], op: str, x: str, last: ir.Node) -> None:
    model.opsets.setdefault(MS_DOMAIN, 1)
    graph.replace(nodes, [ir.Node(op, MS_DOMAIN, last.name, [x], [last.outputs[0]], {})], opsets=model.opsets)


def _match_erf(graph: ir.Graph, erf: ir.Node):
    if erf.op_type != "Erf" or erf.domain != "" or len(erf.inputs) != 1:
        return None
    d = _private_producer(graph, erf.inputs[0], erf)
    if d is None:
        return None
    x = _times_const(graph, d, SQRT2, "Div") or _times_const(graph, d, 1.0 / SQRT2)
    if not x or not _float32(graph, x):
        return None
    add = _plus_one(graph, erf.outputs[0])
    tail = _half_x_times(graph, x, add) if add is not None else None
    if tail is None:
        return None
    return [d, erf, add] + tail[0], x, tail[1]


def _cube_of(graph: ir.Graph, node: ir.Node | None) -> tuple[str, list[ir.Node]] | None:
    """node computes x^3 as Pow(x, 3), x * (x * x) or (x * x) * x: (x, its nodes)."""
    if _binary(node, "Pow") and _scalar(graph, node.inputs[1], node.inputs[0], 3.0):
        return node.inputs[0], [node]
    if not _binary(node, "Mul"):
        return None
    for sq_name, x in (node.inputs, node.inputs[::-1]):
        sq = _private_producer(graph, sq_name, node)
        if _binary(sq, "Mul") and sq.inputs[0] == sq.inputs[1] == x:
            return x, [sq, node]
    return None


def _match_tanh(graph: ir.Graph, tanh: ir.Node):
    if tanh.op_type != "Tanh" or tanh.domain != "" or len(tanh.inputs) != 1:
        return None
    s = _private_producer(graph, tanh.inputs[0], tanh)
    r_name = _times_const(graph, s, TANH_SCALE) if s is not None else None
    r = _private_producer(graph, r_name, s) if r_name else None
    if not _binary(r, "Add"):
        return None
    for q_name, x in (r.inputs, r.inputs[::-1]):
        q = _private_producer(graph, q_name, r)
        p_name = _times_const(graph, q, 0.044715) if q is not None else None
        p = _private_producer(graph, p_name, q) if p_name else None
        cube = _cube_of(graph, p)
        if cube is None or cube[0] != x or not _float32(graph, x):
            continue
        add = _plus_one(graph, tanh.outputs[0])
        tail = _half_x_times(graph, x, add) if add is not None else None
        if tail is None:
            return None
        return cube[1] + [q, r, s, tanh, add] + tail[0], x, tail[1]
    return None


def _fuse(graph: ir.Graph, model: ir.Model, match, op: str) -> bool:
    removed: set[int] = set()
    for node in list(graph.nodes):
        found = match(graph, node) if id(node) not in removed else None
        if found is not None:
            nodes, x, last = found
            _replace(graph, model, nodes, op, x, last)
            removed.update(id(n) for n in nodes)
    return bool(removed)


def fuse_gelu(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _fuse(g, m, _match_erf, "Gelu"))


def fuse_fast_gelu(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _fuse(g, m, _match_tanh, "FastGelu"))
