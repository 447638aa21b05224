"""Attention fusion (extended level): scaled dot-product attention written out as operators becomes
one ``onnxfast::FusedAttention`` node, whose kernel never holds more than a block of rows of the
(batch, heads, queries, keys) score tensor.

Matched, as torch.onnx's dynamo and TorchScript exporters write it:

    scores = MatMul(Q, Kt)                       Q (B, H, S, D), Kt (B, H, D, T), rank 4
             [* c | / c]                         a scale after the product, or
             Q = Mul(q, cq), Kt = Mul(k, ck)     scalar scales on either operand (dynamo: both)
    x = Add(scores, mask)                        optional additive mask (either operand order)
    p = Softmax(x, axis=-1)                      opset 13+
        [Where(IsNaN(p), 0, p)]                  optional: rows masked out entirely give 0, not NaN
    out = MatMul(p, V)                           V (B, H, T, Dv)

Every intermediate must have no reader outside the pattern. Batch dims (B, H) and the mask
broadcast as the operators do; the kernel checks shapes at run time. float32 only.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .folding import each_graph
from .fusions import FUSED_DOMAIN, _float32, scalar_constant
from .gelu import _binary, _private_producer


def _rank(graph: ir.Graph, name: str) -> int | None:
    vi = graph.type_of(name)
    return None if vi is None or vi.shape is None else len(vi.shape)


def _unscaled(graph: ir.Graph, name: str, reader: ir.Node) -> tuple[str, float, list[ir.Node]]:
    """name = Mul(v, c) (c a scalar constant, name read only by reader) -> (v, c, [mul]); else (name, 1, [])."""
    mul = _private_producer(graph, name, reader)
    if _binary(mul, "Mul"):
        for v, c in (mul.inputs, mul.inputs[::-1]):
            s = scalar_constant(graph, c)
            if s is not None and _rank(graph, v) == 4 and _float32(graph, v):
                return v, s, [mul]
    return name, 1.0, []


def _scores(graph: ir.Graph, name: str, reader: ir.Node):
    """name = [scale *] MatMul([cq *] Q, [ck *] Kt), read only by reader: (Q, Kt, scale, nodes) or None."""
    maker = _private_producer(graph, name, reader)
    scale = 1.0
    nodes: list[ir.Node] = []
    if _binary(maker, "Mul") or _binary(maker, "Div"):
        pairs = [maker.inputs] if maker.op_type == "Div" else [maker.inputs, maker.inputs[::-1]]
        for mm_name, c_name in pairs:
            c = scalar_constant(graph, c_name)
            if c is not None and c != 0.0:
                scale = 1.0 / c if maker.op_type == "Div" else c
                nodes.append(maker)
                maker = _private_producer(graph, mm_name, maker)
                break
        else:
            return None
    if not _binary(maker, "MatMul"):
        return None
    nodes.append(maker)
    q, cq, q_nodes = _unscaled(graph, maker.inputs[0], maker)
    kt, ck, k_nodes = _unscaled(graph, maker.inputs[1], maker)
    return q, kt, scale * cq * ck, nodes + q_nodes + k_nodes


def _match(graph: ir.Graph, sm: ir.Node, opset: int):
    if sm.op_type != "Softmax" or sm.domain != "" or opset < 13 or len(sm.inputs) != 1:
        return None
    axis = int(sm.attrs.get("axis", -1))
    if axis not in (-1, 3) or _rank(graph, sm.inputs[0]) not in (None, 4):
        return None
    nodes = [sm]
    found = _scores(graph, sm.inputs[0], sm)
    mask = ""
    if found is None:
        add = _private_producer(graph, sm.inputs[0], sm)
        if not _binary(add, "Add"):
            return None
        for s_name, m_name in (add.inputs, add.inputs[::-1]):
            rank = _rank(graph, m_name)
            if rank is None or rank > 4 or not _float32(graph, m_name):
                continue
            found = _scores(graph, s_name, add)
            if found is not None:
                mask = m_name
                nodes.append(add)
                break
        if found is None:
            return None
    q, kt, scale, score_nodes = found
    nodes += score_nodes
    # after the Softmax
    p, nan_to_zero = sm.outputs[0], 0
    readers = graph.consumers(p)
    if graph.is_output(p):
        return None
    if len(readers) == 2:
        isnan = next((r for r in readers if r.op_type == "IsNaN" and r.domain == ""), None)
        where = next((r for r in readers if r.op_type == "Where" and r.domain == ""), None)
        if isnan is None or where is None or where.inputs[0] != isnan.outputs[0] or where.inputs[2] != p:
            return None
        zero = graph.constant(where.inputs[1])
        # one zero of rank <= 4 (TorchScript writes a (1,) constant): no broadcast beyond p's rank 4
        if zero is None or zero.size != 1 or float(zero.reshape(-1)[0]) != 0.0 or zero.ndim > 4:
            return None
        if graph.only_consumer(isnan.outputs[0]) is not where:
            return None
        nodes += [isnan, where]
        p, nan_to_zero = where.outputs[0], 1
    elif len(readers) != 1:
        return None
    mm2 = graph.only_consumer(p)
    if not _binary(mm2, "MatMul") or mm2.inputs[0] != p or mm2.inputs[1] == p:
        return None
    v = mm2.inputs[1]
    nodes.append(mm2)
    for name in (q, kt, v):
        if _rank(graph, name) != 4 or not _float32(graph, name):
            return None
    inputs = [q, kt, v] + ([mask] if mask else [])
    attrs = {"scale": float(np.float32(scale)), "nan_to_zero": nan_to_zero}
    return nodes, ir.Node("FusedAttention", FUSED_DOMAIN, mm2.name, inputs, [mm2.outputs[0]], attrs)


def fuse_attention(graph: ir.Graph, model: ir.Model) -> bool:
    opset = model.opsets.get("", 1)

    def one_graph(g: ir.Graph, m: ir.Model) -> bool:
        removed: set[int] = set()
        for sm in list(g.nodes):
            if id(sm) in removed:
                continue
            found = _match(g, sm, opset)
            if found is None:
                continue
            nodes, fused = found
            m.opsets.setdefault(FUSED_DOMAIN, 1)
            g.replace(nodes, [fused], opsets=m.opsets)
            removed.update(id(n) for n in nodes)
        return bool(removed)

    return each_graph(graph, model, one_graph)
