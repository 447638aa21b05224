"""Rewrites of Transpose and Reshape nodes that move no data the graph needs.

``fold_transpose_pairs`` (basic level; onnxruntime's TransposeOptimizer cancels transposes the same way,
among much else): Transpose -> Transpose becomes one Transpose with the composed permutation, or none when the
two cancel; a Transpose whose permutation is the identity goes.
``fold_reshape_chains`` (ReshapeChainElimination): Reshape -> Reshape becomes one Reshape of the first
one's input when the second one's shape is a constant that does not copy dimensions from its input
(no 0, or allowzero); a Reshape to the static shape its input has goes.
``fuse_gemm_transpose`` (GemmTransposeFusion): a 2-D Transpose feeding a Gemm's A or B becomes the
Gemm's transA / transB.
``fuse_matmul_transpose`` (MatmulTransposeFusion, extended level, after the attention and MatMul
epilogue fusions, which match plain MatMuls): a Transpose that swaps the last two axes of a
MatMul's right operand becomes com.microsoft FusedMatMul with transB = 1 (the GEMM packs B from its
transposed layout directly: no copy). Only the right operand: the native FusedMatMul kernel takes
transB, not transA.

A Transpose that other nodes read too stays for them; the rewritten node reads around it.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .folding import each_graph
from .fusions import _float32, _repeat, _static_shape

MS_DOMAIN = "com.microsoft"


def _perm(graph: ir.Graph, node: ir.Node) -> list[int] | None:
    """A Transpose's permutation, when its input's rank is known and the permutation fits it (a
    permutation of another length fails in the kernel at run time, and must still fail: it is never
    rewritten); the default reverses the axes."""
    if node.op_type != "Transpose" or node.domain != "" or len(node.inputs) != 1 or len(node.outputs) != 1:
        return None
    shape = _static_shape(graph, node.inputs[0])
    if shape is None:
        return None
    perm = node.attrs.get("perm")
    if perm is None:
        return list(range(len(shape)))[::-1]
    perm = [int(p) for p in perm]
    return perm if sorted(perm) == list(range(len(shape))) else None


def _transpose_of(graph: ir.Graph, name: str) -> tuple[ir.Node, list[int]] | None:
    node = graph.producer(name)
    if node is None:
        return None
    perm = _perm(graph, node)
    return None if perm is None else (node, perm)


# ---- Transpose pairs ----------------------------------------------------------------------------

def _fold_one_transpose(graph: ir.Graph, _model) -> bool:
    for node in graph.nodes:
        p2 = _perm(graph, node)
        if p2 is None:
            continue
        if p2 == list(range(len(p2))):
            graph.replace([node], [ir.Node("Identity", "", node.name, [node.inputs[0]], list(node.outputs), {})])
            return True
        inner = _transpose_of(graph, node.inputs[0])
        if inner is None or len(inner[1]) != len(p2):
            continue
        first, p1 = inner
        composed = [p1[p] for p in p2]  # y[i] = t[p2[i]] = x[p1[p2[i]]]
        if composed == list(range(len(composed))):
            new = ir.Node("Identity", "", node.name, [first.inputs[0]], list(node.outputs), {})
        else:
            new = ir.Node("Transpose", "", node.name, [first.inputs[0]], list(node.outputs), {"perm": composed})
        graph.replace([node], [new])
        return True
    return False


def fold_transpose_pairs(graph: ir.Graph, model: ir.Model) -> bool:
    """The first Transpose, read by nothing else now, goes with the dead nodes (EliminateDeadNodes);
    an Identity left behind goes with EliminateIdentity."""
    return each_graph(graph, model, lambda g, m: _repeat(_fold_one_transpose, g, m))


# ---- Reshape chains -----------------------------------------------------------------------------

def _reshape_target(graph: ir.Graph, node: ir.Node) -> np.ndarray | None:
    """The constant target shape of a Reshape that does not depend on its input's dimensions
    (no 0 entry unless allowzero), else None."""
    if node.op_type != "Reshape" or node.domain != "" or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    shape = graph.constant(node.inputs[1])
    if shape is None or shape.dtype != np.int64 or shape.ndim != 1:
        return None
    if (shape == 0).any() and not int(node.attrs.get("allowzero", 0)):
        return None
    return shape


def _fold_one_reshape(graph: ir.Graph, _model) -> bool:
    for node in graph.nodes:
        target = _reshape_target(graph, node)
        if target is None:
            continue
        inner = graph.producer(node.inputs[0])
        if inner is not None and inner.op_type == "Reshape" and inner.domain == "" and len(inner.inputs) == 2:
            graph.replace([node], [ir.Node("Reshape", "", node.name, [inner.inputs[0], node.inputs[1]],
                                           list(node.outputs), dict(node.attrs))])
            return True
        src = _static_shape(graph, node.inputs[0])
        if (src is not None and all(isinstance(d, int) for d in src) and (target >= 0).all()
                and list(target) == src):
            graph.replace([node], [ir.Node("Identity", "", node.name, [node.inputs[0]], list(node.outputs), {})])
            return True
    return False


def fold_reshape_chains(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(_fold_one_reshape, g, m))


# ---- Transposes into Gemm / MatMul --------------------------------------------------------------

def _fold_one_gemm(graph: ir.Graph, _model) -> bool:
    for node in graph.nodes:
        if node.op_type != "Gemm" or node.domain != "" or len(node.inputs) < 2:
            continue
        for i, flag in ((0, "transA"), (1, "transB")):
            t = _transpose_of(graph, node.inputs[i])
            if t is None or t[1] != [1, 0]:
                continue
            attrs = dict(node.attrs)
            attrs[flag] = 0 if int(attrs.get(flag, 0)) else 1
            inputs = list(node.inputs)
            inputs[i] = t[0].inputs[0]
            graph.replace([node], [ir.Node("Gemm", "", node.name, inputs, list(node.outputs), attrs)])
            return True
    return False


def fuse_gemm_transpose(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(_fold_one_gemm, g, m))


def _swaps_last_two(perm: list[int]) -> bool:
    r = len(perm)
    return r >= 2 and perm == list(range(r - 2)) + [r - 1, r - 2]


def _fold_one_matmul(graph: ir.Graph, model: ir.Model) -> bool:
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.domain != "" or len(node.inputs) != 2 or len(node.outputs) != 1:
            continue
        a, b = node.inputs
        t = _transpose_of(graph, b)
        if t is None or not _swaps_last_two(t[1]) or not (_float32(graph, a) and _float32(graph, b)):
            continue
        a_shape = _static_shape(graph, a)
        if a_shape is None or len(a_shape) < 2:
            continue  # a 1-D A: FusedMatMul's broadcasting of vectors is not MatMul's in every version
        model.opsets.setdefault(MS_DOMAIN, 1)
        graph.replace([node], [ir.Node("FusedMatMul", MS_DOMAIN, node.name, [a, t[0].inputs[0]], list(node.outputs),
                                       {"transB": 1, "alpha": 1.0})], opsets=model.opsets)
        return True
    return False


def fuse_matmul_transpose(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(_fold_one_matmul, g, m))
