"""Fusions of several nodes into one kernel.

``fuse_conv_activation``: Conv [-> Add(residual)] [-> Relu | LeakyRelu | Clip | Sigmoid | Tanh]
becomes one ``onnxfast::FusedConv`` node, whose native kernel applies bias, residual and
activation while the output tile is still in cache.

``fuse_matmul_epilogue``: MatMul with a 2-D right operand (or a Gemm with a constant B and a 1-D bias,
followed by one of the below; an activation after a Reshape of the product counts too, the Reshape
then follows the fused node) [-> Add(bias of N values)]
[-> Add(residual)] [-> Relu | LeakyRelu | Clip | Sigmoid | Tanh | Gelu (ai.onnx, or com.microsoft Gelu /
FastGelu without bias)] becomes one
``onnxfast::FusedMatMul`` node (the GEMM applies them to each micro-tile; a transformer's
linear layer with its bias and Gelu is one kernel).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import TensorProto

from .. import ir
from .folding import drop_unused_initializers

FUSED_DOMAIN = "onnxfast"
_ACTS = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh"}


def _float32(graph: ir.Graph, name: str) -> bool:
    if name in graph.initializers:
        return graph.initializers[name].dtype == np.float32
    vi = graph.type_of(name)
    return vi is not None and vi.elem_type == TensorProto.FLOAT


def scalar_constant(graph: ir.Graph, name: str) -> float | None:
    """The value of a true float32 constant of rank 0, else None."""
    value = graph.constant(name)
    if value is None or value.size != 1 or value.dtype != np.float32 or value.ndim > 0:
        return None
    return float(value.reshape(()))


def _activation(node: ir.Node, graph: ir.Graph, opset: int) -> tuple[str, list[float]] | None:
    if node.domain != "" or node.op_type not in _ACTS:
        return None
    if node.op_type == "LeakyRelu":
        return "LeakyRelu", [float(node.attrs.get("alpha", 0.01))]
    if node.op_type == "Clip":
        if opset < 11:
            return "Clip", [float(node.attrs.get("min", -3.4028234663852886e38)),
                            float(node.attrs.get("max", 3.4028234663852886e38))]
        bounds = []
        for i, dflt in ((1, -3.4028234663852886e38), (2, 3.4028234663852886e38)):
            name = node.inputs[i] if len(node.inputs) > i else ""
            value = graph.constant(name) if name else None
            if not name:
                bounds.append(dflt)
            elif value is not None and value.size == 1:
                bounds.append(float(value.reshape(-1)[0]))
            else:
                return None  # bounds known only at run time (computed, or an overridable initializer)
        return "Clip", bounds
    return node.op_type, []


def _gelu(node: ir.Node, opset: int) -> tuple[str, list[float]] | None:
    if node.domain == "" and node.op_type == "Gelu" and opset >= 20:
        return ("GeluTanh" if node.attrs.get("approximate", "none") == "tanh" else "Gelu"), []
    if node.domain == "com.microsoft" and len([i for i in node.inputs if i]) == 1:  # no bias input
        if node.op_type == "Gelu":
            return "Gelu", []
        if node.op_type == "FastGelu":
            return "GeluTanh", []
    return None


def _add_operand(node: ir.Node | None, cur: str) -> str:
    """The other operand when ``node`` is a plain two-input Add of ``cur`` and something else, else ""."""
    if node is None or node.op_type != "Add" or node.domain != "" or len(node.inputs) != 2:
        return ""
    other = node.inputs[1] if node.inputs[0] == cur else node.inputs[0]
    return "" if other == cur else other


def _act_attrs(act: tuple[str, list[float]] | None) -> dict:
    """The fused node's activation / activation_params attributes."""
    return {"activation": act[0] if act else "None", "activation_params": [float(v) for v in act[1]] if act else []}


def _replace_chain(graph: ir.Graph, model: ir.Model, chain: list[ir.Node], fused: ir.Node) -> None:
    # The fused node takes the place of the last node of the chain: all its inputs exist by then.
    model.opsets.setdefault(FUSED_DOMAIN, 1)
    graph.replace(chain, [fused], opsets=model.opsets)


def _static_shape(graph: ir.Graph, name: str) -> list | None:
    if name in graph.initializers:
        return list(graph.initializers[name].shape)
    vi = graph.type_of(name)
    return None if vi is None or vi.shape is None else list(vi.shape)


def _repeat(fuse_one, graph: ir.Graph, model: ir.Model) -> bool:
    """Apply a one-site rewrite until it finds nothing more; True if it changed the graph."""
    changed = False
    while fuse_one(graph, model):
        changed = True
    return changed


def fuse_matmul_epilogue(graph: ir.Graph, model: ir.Model) -> bool:
    return _repeat(_fuse_one_matmul, graph, model)


def _gemm_start(graph: ir.Graph, gemm: ir.Node):
    """A Gemm the MatMul epilogue can take: alpha 1, A not transposed, B a true 2-D constant (a
    transposed B becomes its transposed copy), C absent or a bias of N values with beta 1.
    (a, b, bias, new constants) or None."""
    at = gemm.attrs
    if float(at.get("alpha", 1.0)) != 1.0 or at.get("transA", 0) or len(gemm.outputs) != 1 or len(gemm.inputs) < 2:
        return None
    a, b = gemm.inputs[:2]
    c = gemm.inputs[2] if len(gemm.inputs) > 2 else ""
    w = graph.constant(b)
    if w is None or w.dtype != np.float32 or w.ndim != 2 or not _float32(graph, a):
        return None
    n = w.shape[0] if at.get("transB", 0) else w.shape[1]
    bias = ""
    if c:
        cshape = _static_shape(graph, c)
        if float(at.get("beta", 1.0)) != 1.0 or not _float32(graph, c) or cshape != [n]:
            return None  # (a (1, N) or (M, N) C: the Gemm kernel adds it in its store already)
        bias = c
    consts = {}
    if at.get("transB", 0):
        name = f"{b}__transposed"
        if name in graph.initializers or graph.producer(name) is not None or graph.is_input(name):
            return None
        consts[name] = np.ascontiguousarray(w.T)
        b = name
    return a, b, bias, consts


def _fuse_one_matmul(graph: ir.Graph, model: ir.Model) -> bool:
    opset = model.opsets.get("", 1)
    only_consumer = graph.only_consumer
    for mm in graph.nodes:
        if mm.domain != "" or len(mm.outputs) != 1:
            continue
        consts: dict = {}
        if mm.op_type == "MatMul" and len(mm.inputs) == 2:
            a, b = mm.inputs
            bias = ""
            bshape = _static_shape(graph, b)
            ashape = _static_shape(graph, a)
            if not (_float32(graph, a) and _float32(graph, b)) or bshape is None or len(bshape) != 2:
                continue
            if ashape is None or len(ashape) < 2:
                continue
            n = bshape[1]
        elif mm.op_type == "Gemm":
            start = _gemm_start(graph, mm)
            if start is None:
                continue
            a, b, bias, consts = start
            n = (consts[b] if consts else graph.initializers[b]).shape[1]
        else:
            continue
        cur, chain, residual, act = mm.outputs[0], [mm], "", None
        nxt = only_consumer(cur)
        other = _add_operand(nxt, cur)
        init = graph.initializers.get(other) if other else None
        if (not bias and init is not None and init.dtype == np.float32 and init.ndim == 1 and isinstance(n, int)
                and init.shape[0] == n):
            bias, cur = other, nxt.outputs[0]
            chain.append(nxt)
            nxt = only_consumer(cur)
        other = _add_operand(nxt, cur)
        if other and _float32(graph, other) and _same_static_shape(graph, other, mm.outputs[0]):
            residual, cur = other, nxt.outputs[0]
            chain.append(nxt)
            nxt = only_consumer(cur)
        reshape = None
        if nxt is not None and _is_reshape(nxt):
            # MatMul -> Reshape -> activation (GPT-2's MLP): the activation is elementwise, so it runs
            # in the GEMM's store and the Reshape follows the fused node.
            after = only_consumer(nxt.outputs[0])
            if after is not None and (_activation(after, graph, opset) or _gelu(after, opset)):
                reshape, pre_reshape, nxt = nxt, cur, after
        if nxt is not None:
            act = _activation(nxt, graph, opset) or _gelu(nxt, opset)
            if act is not None:
                chain += [reshape, nxt] if reshape is not None else [nxt]
        if len(chain) == 1:
            continue  # (a lone Gemm adds its bias in the GEMM's store already)
        inputs = [a, b, bias] + ([residual] if residual else [])
        out = chain[-1].outputs[0]
        new = [ir.Node("FusedMatMul", FUSED_DOMAIN, mm.name, inputs, [out], _act_attrs(act))]
        if reshape is not None and chain[-2] is reshape:
            tmp = _fresh_name(graph, pre_reshape + "__act")
            new[0].outputs = [tmp]
            new.append(ir.Node("Reshape", "", reshape.name, [tmp, reshape.inputs[1]], [out], dict(reshape.attrs)))
            if graph.type_of(pre_reshape) is not None:
                graph.value_info[tmp] = dataclasses.replace(graph.type_of(pre_reshape), name=tmp)
        model.opsets.setdefault(FUSED_DOMAIN, 1)
        graph.replace(chain, new, constants=consts, opsets=model.opsets)
        drop_unused_initializers(graph)
        return True
    return False


def _is_reshape(node: ir.Node) -> bool:
    return node.op_type == "Reshape" and node.domain == "" and len(node.inputs) == 2 and len(node.outputs) == 1


def _fresh_name(graph: ir.Graph, base: str) -> str:
    name, i = base, 0
    while (name in graph.value_info or name in graph.initializers or graph.producer(name) is not None
           or graph.consumers(name) or graph.is_input(name) or graph.is_output(name)):
        i += 1
        name = f"{base}{i}"
    return name


def fuse_conv_activation(graph: ir.Graph, model: ir.Model) -> bool:
    return _repeat(_fuse_one_conv, graph, model)


def _fuse_one_conv(graph: ir.Graph, model: ir.Model) -> bool:
    opset = model.opsets.get("", 1)
    only_consumer = graph.only_consumer
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1:
            continue
        if not conv.inputs or not _float32(graph, conv.inputs[0]):
            continue
        out = conv.outputs[0]
        chain, residual, act = [conv], "", None
        nxt = only_consumer(out)
        other = _add_operand(nxt, out)
        if other and _float32(graph, other) and _same_static_shape(graph, other, out):
            residual = other
            chain.append(nxt)
            nxt = only_consumer(nxt.outputs[0])
        if nxt is not None:
            act = _activation(nxt, graph, opset)
            if act is not None:
                chain.append(nxt)
        if len(chain) == 1:
            continue
        attrs = {**conv.attrs, **_act_attrs(act)}
        inputs = (list(conv.inputs) + ["", ""])[:3] + ([residual] if residual else [])
        _replace_chain(graph, model, chain, ir.Node("FusedConv", FUSED_DOMAIN, conv.name, inputs,
                                                    [chain[-1].outputs[0]], attrs))
        return True
    return False


def _same_static_shape(graph: ir.Graph, a: str, b: str) -> bool:
    va, vb = graph.type_of(a), graph.type_of(b)
    if va is None or vb is None:
        return False
    sa, sb = va.shape, vb.shape
    return sa is not None and sb is not None and None not in sa and sa == sb
