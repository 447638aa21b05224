"""Folding of constant per-channel affine steps into the constant weights of the Conv, MatMul or Gemm
before them (basic level): the affine step's node goes and the weights are computed once, at session
creation, in float64 and stored in the weights' dtype.

``fuse_conv_bn`` (onnxruntime's ConvBNFusion): Conv -> BatchNormalization (inference, all four
statistics constant) becomes one Conv with W * f and (B - mean) * f + bias, f = scale / sqrt(var + eps).
``fuse_conv_mul`` (ConvMulFusion): Conv -> Mul by a constant per output channel (or a scalar) becomes
Conv with W * c and B * c. ``fuse_conv_add`` (ConvAddFusion): Conv -> Add of a constant per output
channel (or a scalar) becomes Conv with B + c. tf2onnx writes a Keras BatchNormalization after a
convolution as exactly such a Mul and Add.
``fuse_matmul_scale`` (MatMulScaleFusion; onnxruntime folds scalars into a FusedMatMul's alpha, here
the weights are constant and take any per-column scale): MatMul / Gemm with a constant 2-D weight ->
Mul by a constant per output column (or a scalar) becomes the product with W * c (a Gemm's constant C
scaled too); a scalar Mul of the MatMul's left operand folds into W the same way.

Each applies only where the step's constant broadcasts along the channel (column) axis alone, so the
product's shape is unchanged, and where the product is read by the step alone.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .folding import drop_unused_initializers, each_graph
from .fusions import _fresh_name, _repeat

_FLOATS = (np.float16, np.float32, np.float64)


def _weight(graph: ir.Graph, name: str) -> np.ndarray | None:
    """A true constant of a float dtype, else None."""
    w = graph.constant(name) if name else None
    return w if w is not None and w.dtype in _FLOATS else None


def _channel_vector(c: np.ndarray, rank: int, axis: int, channels: int) -> np.ndarray | None:
    """``c`` as ``channels`` values when it broadcasts against a tensor of ``rank`` along ``axis`` only
    (every other axis 1, no axis added), else None. A scalar gives ``channels`` copies."""
    if c.ndim > rank:
        return None  # broadcasting would add axes: the shape changes
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


def _step_operand(step: ir.Node, cur: str) -> str:
    """The other operand of a two-input Mul / Add that reads ``cur`` once, else ""."""
    if step.domain != "" or len(step.inputs) != 2 or len(step.outputs) != 1:
        return ""
    a, b = step.inputs
    if (a == cur) == (b == cur):
        return ""
    return b if a == cur else a


def _store(graph: ir.Graph, base: str, value: np.ndarray, like: np.ndarray, consts: dict) -> str:
    name = _fresh_name(graph, base)
    while name in consts:
        name += "_"
    consts[name] = np.ascontiguousarray(value.astype(like.dtype))
    return name


# ---- Conv ---------------------------------------------------------------------------------------

def _conv_start(graph: ir.Graph, conv: ir.Node):
    """(W, B or None) of a Conv whose weight and bias are true constants and whose output only the
    next node reads, else None."""
    if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1 or len(conv.inputs) < 2:
        return None
    w = _weight(graph, conv.inputs[1])
    if w is None or w.ndim < 3:
        return None
    bias_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
    b = _weight(graph, bias_name) if bias_name else None
    if bias_name and (b is None or b.shape != (w.shape[0],) or b.dtype != w.dtype):
        return None
    return w, b


def _rewrite_conv(graph: ir.Graph, conv: ir.Node, step: ir.Node, w, b, scale, shift, tag: str) -> None:
    """Replace Conv -> step by one Conv with W * scale (per output channel) and B * scale + shift."""
    consts: dict = {}
    inputs = list(conv.inputs[:2])
    if scale is not None:
        inputs[1] = _store(graph, f"{conv.inputs[1]}_{tag}", w.astype(np.float64) * scale.reshape(
            (-1,) + (1,) * (w.ndim - 1)), w, consts)
    bias = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    if scale is not None:
        bias = bias * scale
    if shift is not None:
        bias = bias + shift
    inputs.append(_store(graph, f"{conv.inputs[2] if b is not None else conv.inputs[1]}_{tag}_bias", bias, w,
                         consts))
    new = ir.Node("Conv", "", conv.name, inputs, [step.outputs[0]], dict(conv.attrs))
    graph.replace([conv, step], [new], constants=consts)
    drop_unused_initializers(graph)


def _fold_one_conv(graph: ir.Graph, kinds: tuple[str, ...], tag: str) -> bool:
    for conv in graph.nodes:
        start = _conv_start(graph, conv)
        if start is None:
            continue
        step = graph.only_consumer(conv.outputs[0])
        if step is None or step.op_type not in kinds or step.domain != "":
            continue
        w, b = start
        if step.op_type == "BatchNormalization":
            fold = _batch_norm(graph, step, w)
        else:
            fold = _conv_affine(graph, step, conv.outputs[0], w)
        if fold is None:
            continue
        _rewrite_conv(graph, conv, step, w, b, *fold, tag)
        return True
    return False


def _conv_affine(graph: ir.Graph, step: ir.Node, cur: str, w: np.ndarray):
    other = _step_operand(step, cur)
    c = _weight(graph, other)
    if c is None or c.dtype != w.dtype:
        return None
    per = _channel_vector(c, w.ndim, 1, w.shape[0])  # the output has W's rank: (N, M, spatial...)
    if per is None:
        return None
    return (per, None) if step.op_type == "Mul" else (None, per)


def _batch_norm(graph: ir.Graph, bn: ir.Node, w: np.ndarray):
    """(scale, shift) per channel of an inference BatchNormalization with constant statistics."""
    if len(bn.inputs) != 5 or int(bn.attrs.get("training_mode", 0)) or int(bn.attrs.get("spatial", 1)) != 1:
        return None
    if not int(bn.attrs.get("is_test", 1)):
        return None  # opset < 7 training mode
    if any(o and graph.use_count(o) for o in bn.outputs[1:]):
        return None  # running statistics read: training outputs
    stats = [_weight(graph, name) for name in bn.inputs[1:]]
    m = w.shape[0]
    if any(s is None or s.shape != (m,) or s.dtype != w.dtype for s in stats):
        return None
    gamma, beta, mean, var = (s.astype(np.float64) for s in stats)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    with np.errstate(invalid="ignore", divide="ignore"):  # var + eps <= 0: NaN / inf, as the node computes
        f = gamma / np.sqrt(var + eps)
    return f, beta - mean * f


def fuse_conv_bn(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(lambda g2, _: _fold_one_conv(g2, ("BatchNormalization",),
                                                                                        "bn"), g, m))


def fuse_conv_mul(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(lambda g2, _: _fold_one_conv(g2, ("Mul",), "mul"), g, m))


def fuse_conv_add(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(lambda g2, _: _fold_one_conv(g2, ("Add",), "add"), g, m))


# ---- MatMul / Gemm ------------------------------------------------------------------------------

def _rank(graph: ir.Graph, name: str) -> int | None:
    vi = graph.type_of(name)
    return None if vi is None or vi.shape is None else len(vi.shape)


def _scale_after(graph: ir.Graph, node: ir.Node) -> bool:
    """MatMul / Gemm with constant 2-D weights -> Mul by a per-column constant: folded."""
    w_name = node.inputs[1]
    w = _weight(graph, w_name)
    if w is None or w.ndim != 2 or len(node.outputs) != 1:
        return False
    step = graph.only_consumer(node.outputs[0])
    if step is None or step.op_type != "Mul":
        return False
    c = _weight(graph, _step_operand(step, node.outputs[0]))
    if c is None or c.dtype != w.dtype:
        return False
    consts: dict = {}
    attrs = dict(node.attrs)
    inputs = list(node.inputs)
    if node.op_type == "Gemm":
        trans_b = int(attrs.get("transB", 0))
        n = w.shape[0] if trans_b else w.shape[1]
        per = _channel_vector(c, 2, 1, n)
        if per is None:
            return False
        if len(inputs) > 2 and inputs[2]:
            bias = _weight(graph, inputs[2])
            if bias is None or bias.dtype != w.dtype or bias.ndim > 2:
                return False
            try:
                scaled = bias.astype(np.float64) * per.reshape((1, n) if bias.ndim == 2 else (n,))
            except ValueError:
                return False  # a C the Gemm would refuse: leave the error to it
            inputs[2] = _store(graph, f"{inputs[2]}_scaled", scaled, w, consts)
        col = per.reshape((n, 1)) if trans_b else per.reshape((1, n))
    else:
        rank = _rank(graph, node.inputs[0])
        out_rank = None if rank is None else max(rank, 2) if rank != 1 else 1
        n = w.shape[1]
        if out_rank is None:
            if c.ndim > 1:
                return False
            out_rank = 1
        per = _channel_vector(c, out_rank, out_rank - 1, n)
        if per is None:
            return False
        col = per.reshape((1, n))
    inputs[1] = _store(graph, f"{w_name}_scaled", w.astype(np.float64) * col, w, consts)
    graph.replace([node, step], [ir.Node(node.op_type, "", node.name, inputs, [step.outputs[0]], attrs)],
                  constants=consts)
    drop_unused_initializers(graph)
    return True


def _scale_before(graph: ir.Graph, node: ir.Node) -> bool:
    """Mul(X, scalar constant) -> MatMul(., constant W): folded into W."""
    w = _weight(graph, node.inputs[1])
    if w is None or w.ndim != 2:
        return False
    step = graph.producer(node.inputs[0])
    if step is None or step.op_type != "Mul" or graph.only_consumer(node.inputs[0]) is not node:
        return False
    x = next((i for i in step.inputs if _weight(graph, i) is None), "") if len(step.inputs) == 2 else ""
    other = _step_operand(step, x) if x else ""
    c = _weight(graph, other)
    if c is None or c.size != 1 or c.dtype != w.dtype:
        return False
    rank = _rank(graph, x)
    if c.ndim > 0 and (rank is None or c.ndim > rank):
        return False  # the scalar would add axes to X
    consts: dict = {}
    scaled = _store(graph, f"{node.inputs[1]}_scaled", w.astype(np.float64) * float(c.reshape(-1)[0]), w, consts)
    graph.replace([step, node], [ir.Node("MatMul", "", node.name, [x, scaled], list(node.outputs),
                                         dict(node.attrs))], constants=consts)
    drop_unused_initializers(graph)
    return True


def _fold_one_scale(graph: ir.Graph, _model) -> bool:
    for node in graph.nodes:
        if node.domain != "" or len(node.inputs) < 2:
            continue
        if node.op_type == "MatMul" and len(node.inputs) == 2:
            if _scale_after(graph, node) or _scale_before(graph, node):
                return True
        elif node.op_type == "Gemm" and _scale_after(graph, node):
            return True
    return False


def fuse_matmul_scale(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _repeat(_fold_one_scale, g, m))
