"""Normalizations written out as elementary operators, fused into one node (extended level). This
module owns the three passes below (onnxruntime's names: a ``disabled_optimizers`` list written for
onnxruntime switches off the same rewrites here). float32 only: the type the native kernels compute.

``LayerNormFusion``: what the TorchScript exporter (opset < 17, where ONNX has no LayerNormalization)
writes for a layer norm,
    m = ReduceMean(X, trailing axes, keepdims=1);  D = Sub(X, m)  (or two such Subs)
    v = ReduceMean(Pow(D, 2) | Mul(D, D), same axes);  s = Sqrt(Add(v, eps))
    n = Div(D, s) | Mul(D, Reciprocal(s));  [Mul(n, gamma)];  [Add(., beta)]
and what tf2onnx writes for Keras' LayerNormalization (the means as GlobalAveragePool where they are
over the last axis of a rank-3 value, D only squared, the scale folded):
    r = Reciprocal(s) [* gamma];  Add(Mul(X, r), Mul(Neg(m), r) [+ beta])
-> ai.onnx LayerNormalization(X, gamma, beta, axis = -k, epsilon = eps). The normalized dims must be known
numbers (static shape, or the constant ending the shape of tf2onnx's Tensordot Reshape) for gamma and beta
to be checked against them. LayerNormalization exists from opset 17. A model importing an older opset
is moved to 17 only when no node's schema changes by it (``_opset_17_keeps_schemas``: opset 17 itself only
added operators, so every opset-16 model qualifies; an older model whose operators changed since, Softmax
13, Reshape 14, ..., stays as it is). The alternative, onnxruntime's contrib LayerNormalization of the ONNX
domain at any opset, has no schema in the onnx package (the IR's type inference and onnx.checker would
not know it).

``SimplifiedLayerNormFusion``: RMS normalization,
    q = Pow(X, 2) | Mul(X, X);  s = Sqrt(Add(ReduceMean(q, trailing axes, keepdims=1), eps))
    n = Mul(X, Reciprocal(s) | Div(1, s)) | Div(X, s);  [Mul(n, weight)]
with transformers' Llama / T5 form (a Cast to float32 of X before the square and of n after it, no-ops
for float32 X: only then) -> ONNX RMSNormalization where the model imports opset 23 or later, else
SimplifiedLayerNormalization (onnxruntime's operator, registered in the ONNX domain from version 1, so it
works at the model's own opset; a bump to 23 would change a dozen operators' schemas for the models that
have this pattern. onnx.checker does not know it: a model saved through optimized_model_filepath then
loads in onnxfast and onnxruntime, as one onnxruntime's own optimizer wrote does).

``SkipLayerNormFusion`` (runs after MatMulEpilogueFusion: a residual Add the GEMM already adds in its
store is not taken from it): Add(A, B) of two values of one static shape (rank 2 or 3; a broadcasting
Add changes the shape and stays), optionally A = Add(M, bias) with a constant 1-D bias, then
LayerNormalization over the last axis -> com.microsoft SkipLayerNormalization (SimplifiedLayerNormalization or RMSNormalization
-> SkipSimplifiedLayerNormalization). Where the sum is also read elsewhere (a residual stream, pre-LN
transformers) the fused node's fourth output (input_skip_bias_sum) defines it.

Every intermediate must have no reader outside the pattern; eps must be a true constant scalar (an eps
computed at run time or fed as an input leaves the nodes alone); gamma / beta / weight may be constants
or computed values whose static shape is the normalized shape (constants may carry leading 1s, dropped).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from .. import ir
from ..schemas import schema_for
from .folding import each_graph
from .fusions import _float32, _fresh_name, _same_static_shape, _static_shape

MS_DOMAIN = "com.microsoft"
LAYER_NORM_OPSET = 17


def _finish(graph: ir.Graph, nodes: list, op_type: str, x: str, norm, k: int, eps: float, scale: str, bias: str,
            consts: dict):
    """The matched ``nodes`` (the last defines the result) as one ``op_type`` node over the last ``k`` axes,
    when no intermediate is read elsewhere; a missing scale becomes ones of the normalized shape."""
    last = nodes[-1]
    if not _private(graph, nodes, last):
        return None
    if not scale:
        scale, ones = _ones(graph, x, norm)
        consts.update(ones)
    node = ir.Node(op_type, "", last.name, [x, scale] + ([bias] if bias else []), [last.outputs[0]],
                   {"axis": -k, "epsilon": eps})
    return nodes, node, consts


def _op(node: ir.Node | None, op: str, n_in: int) -> bool:
    return (node is not None and node.op_type == op and node.domain == "" and len(node.inputs) == n_in
            and len(node.outputs) == 1)


def _scalar(graph: ir.Graph, name: str, rank: int) -> float | None:
    """The value of a true constant of one element whose broadcast keeps a rank-``rank`` value's shape."""
    value = graph.constant(name)
    if value is None or value.size != 1 or value.ndim > rank or value.dtype.kind not in "fiu":
        return None
    return float(value.reshape(-1)[0])


def _other(node: ir.Node, name: str) -> str | None:
    """The other operand of a two-input node reading ``name`` once."""
    a, b = node.inputs
    return b if a == name and b != name else a if b == name and a != name else None


MEANS = ("ReduceMean", "GlobalAveragePool")


def _reduce_axes(graph: ir.Graph, node: ir.Node | None, rank: int) -> list[int] | None:
    """The axes a mean over a rank-``rank`` value reduces, keeping dims: a ReduceMean's (attribute before
    opset 18, constant input from 18), or GlobalAveragePool's 2..rank-1 (tf2onnx's mean over the last
    axis of a rank-3 value)."""
    if node is None or node.op_type not in MEANS or node.domain != "" or len(node.outputs) != 1:
        return None
    if node.op_type == "GlobalAveragePool":
        return list(range(2, rank)) if rank >= 3 and len(node.inputs) == 1 else None
    if not node.inputs or int(node.attrs.get("keepdims", 1)) != 1:
        return None
    if len(node.inputs) > 1 and node.inputs[1]:
        value = graph.constant(node.inputs[1])
        if value is None or value.dtype.kind not in "iu" or value.ndim > 1:
            return None
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", [])]
    return axes or None  # no axes: every axis (or none): not a per-row normalization


def _trailing(axes: list[int], rank: int) -> int | None:
    """k when ``axes`` are the last k axes of a rank-``rank`` value, else None."""
    axes = [a - rank if a >= 0 else a for a in axes]
    k = len(axes)
    return k if k <= rank and sorted(axes) == list(range(-k, 0)) else None


def _normalized(graph: ir.Graph, x: str, node: ir.Node) -> tuple[int, int, list[int]] | None:
    """For ReduceMean ``node`` over the trailing axes of float32 ``x`` of a static shape whose normalized
    dims are numbers: (rank, k, the normalized dims)."""
    shape = _shape(graph, x)
    axes = _reduce_axes(graph, node, len(shape)) if shape is not None else None
    if axes is None or not _float32(graph, x):
        return None
    k = _trailing(axes, len(shape))
    dims = _trailing_dims(graph, x, shape, k) if k is not None else None
    return None if dims is None else (len(shape), k, dims)


def _trailing_dims(graph: ir.Graph, x: str, shape: list, k: int) -> list[int] | None:
    """The last k dims of ``x`` as numbers: from its static shape, or where x = Reshape(., Concat(..., c))
    (through a Cast: tf2onnx's Tensordot, a Dense layer on a 3-D input, whose shape shape inference
    leaves unknown) from the positive values ending the constant c, which become those dims."""
    dims = shape[len(shape) - k:]
    if all(isinstance(d, int) for d in dims):
        return list(dims)
    reshape = graph.producer(x)
    if not _op(reshape, "Reshape", 2):
        return None
    cat = graph.producer(reshape.inputs[1])
    if _op(cat, "Cast", 1):
        cat = graph.producer(cat.inputs[0])
    if cat is None or cat.op_type != "Concat" or cat.domain != "" or not cat.inputs:
        return None
    end = graph.constant(cat.inputs[-1])
    if end is None or end.ndim != 1 or end.dtype.kind not in "iu" or end.shape[0] < k:
        return None
    values = [int(v) for v in end[end.shape[0] - k:]]  # (0 copies an input dim, -1 is inferred: not these)
    if any(v <= 0 for v in values) or any(isinstance(d, int) and d != v for d, v in zip(dims, values)):
        return None
    return values


def _shape(graph: ir.Graph, name: str) -> list | None:
    """The static shape every run gives ``name``: a graph input's declared one (an initializer that is
    also an input is a default the caller may replace by a value of another shape)."""
    if graph.is_input(name):
        vi = graph.type_of(name)
        return None if vi is None or vi.shape is None else list(vi.shape)
    return _static_shape(graph, name)


def _param(graph: ir.Graph, name: str, norm: list[int], rank: int) -> tuple[str, dict] | None:
    """``name`` as a Scale / B input over the normalized dims ``norm``: (the name to read, new constants).
    Its broadcast must cover only the normalized axes: shape ``norm``, or (a true constant) ``norm`` with
    leading 1s, which are dropped into a copy. None otherwise."""
    if not _float32(graph, name):
        return None
    value = graph.constant(name)
    shape = list(value.shape) if value is not None else _shape(graph, name)
    if shape is None or len(shape) > rank:
        return None
    lead = len(shape) - len(norm)
    if lead < 0 or shape[lead:] != norm or any(d != 1 for d in shape[:lead]):
        return None
    if lead == 0:
        return name, {}
    if value is None:
        return None  # a computed value with leading 1s would need a Reshape
    new = _fresh_name(graph, f"{name}__normalized")
    return new, {new: np.ascontiguousarray(value.reshape(norm))}


def _ones(graph: ir.Graph, base: str, norm: list[int]) -> tuple[str, dict]:
    name = _fresh_name(graph, f"{base}__scale")
    return name, {name: np.ones(norm, np.float32)}


def _private(graph: ir.Graph, nodes: list[ir.Node], last: ir.Node) -> bool:
    """Every value the nodes define, but the last one's, is read only by the nodes and is no graph output."""
    ids = {id(n) for n in nodes}
    if len(ids) != len(nodes):
        return False
    for n in nodes:
        if n is last:
            continue
        for o in n.outputs:
            if o and (graph.is_output(o) or any(id(r) not in ids for r in graph.consumers(o))):
                return False
    return True


def _scale_and_shift(graph: ir.Graph, n: str, norm: list[int], rank: int, shift: bool):
    """The optional Mul(n, gamma) [then Add(., beta)] after the normalized value ``n``:
    (nodes, gamma or "", beta or "", constants)."""
    nodes, consts, gamma, beta, cur = [], {}, "", "", n
    mul = graph.only_consumer(cur)
    if _op(mul, "Mul", 2) and _other(mul, cur):
        p = _param(graph, _other(mul, cur), norm, rank)
        if p is not None:
            gamma, consts = p[0], {**consts, **p[1]}
            nodes.append(mul)
            cur = mul.outputs[0]
    add = graph.only_consumer(cur) if shift else None
    if _op(add, "Add", 2) and _other(add, cur):
        p = _param(graph, _other(add, cur), norm, rank)
        if p is not None:
            beta, consts = p[0], {**consts, **p[1]}
            nodes.append(add)
    return nodes, gamma, beta, consts


def _root_sqrt(graph: ir.Graph, mean_sq: ir.Node, rank: int):
    """ReduceMean -> Add(eps) -> Sqrt: (add, sqrt, eps) when eps is a finite true constant scalar."""
    add = graph.only_consumer(mean_sq.outputs[0])
    if not _op(add, "Add", 2) or _other(add, mean_sq.outputs[0]) is None:
        return None
    eps = _scalar(graph, _other(add, mean_sq.outputs[0]), rank)
    sqrt = graph.only_consumer(add.outputs[0])
    if eps is None or not math.isfinite(eps) or not _op(sqrt, "Sqrt", 1):
        return None
    return add, sqrt, eps


def _divide_by(graph: ir.Graph, sqrt: ir.Node, rank: int,
               numerator) -> tuple[list[ir.Node], ir.Node, str] | None:
    """Div(num, s), Mul(num, Reciprocal(s)) or Mul(num, Div(1, s)) for s = sqrt's output, where
    ``numerator(name)`` accepts num: (the nodes, the last one, num)."""
    s = sqrt.outputs[0]
    nxt = graph.only_consumer(s)
    if _op(nxt, "Div", 2) and nxt.inputs[1] == s and nxt.inputs[0] != s and numerator(nxt.inputs[0]):
        return [nxt], nxt, nxt.inputs[0]
    if _op(nxt, "Reciprocal", 1) or (_op(nxt, "Div", 2) and nxt.inputs[1] == s
                                     and _scalar(graph, nxt.inputs[0], rank) == 1.0):
        mul = graph.only_consumer(nxt.outputs[0])
        num = _other(mul, nxt.outputs[0]) if _op(mul, "Mul", 2) else None
        if num is not None and numerator(num):
            return [nxt, mul], mul, num
    return None


def _is_square(graph: ir.Graph, node: ir.Node | None, rank: int) -> str | None:
    """For node = Pow(v, 2) or Mul(v, v), v of rank ``rank``: v."""
    if _op(node, "Pow", 2) and _scalar(graph, node.inputs[1], rank) == 2.0:
        return node.inputs[0]
    if _op(node, "Mul", 2) and node.inputs[0] == node.inputs[1]:
        return node.inputs[0]
    return None


def _squared(node: ir.Node | None) -> str | None:
    """The value a Pow or Mul(v, v) squares, before its exponent is checked (_is_square)."""
    if _op(node, "Pow", 2) or (_op(node, "Mul", 2) and node.inputs[0] == node.inputs[1]):
        return node.inputs[0]
    return None


# ---- LayerNormFusion ------------------------------------------------------------------------------

def _opset_17_keeps_schemas(graph: ir.Graph, opset: int) -> bool:
    """Every ONNX-domain node (subgraphs included) selects the same schema at opset 17 as at ``opset``
    (an operator without a schema at both, onnxruntime's contrib ones of the ONNX domain, is unaffected)."""
    for n in graph.nodes:
        if n.domain == "":
            old, new = schema_for(n.op_type, opset, ""), schema_for(n.op_type, LAYER_NORM_OPSET, "")
            if (old is None) != (new is None) or (old is not None and old.since_version != new.since_version):
                return False
        if any(not _opset_17_keeps_schemas(sub, opset) for sub in n.subgraphs.values()):
            return False
    return True


def _folded_tail(graph: ir.Graph, sqrt: ir.Node, x: str, neg: ir.Node, norm: list[int], rank: int):
    """tf2onnx's form of Keras' layer norm after the root: s = Reciprocal(root) [* gamma];
    y = x * s + (Neg(mean) * s [+ beta]). (nodes, gamma or "", beta or "", constants)."""
    root = sqrt.outputs[0]
    r = graph.only_consumer(root)
    if not (_op(r, "Reciprocal", 1) or (_op(r, "Div", 2) and r.inputs[1] == root
                                        and _scalar(graph, r.inputs[0], rank) == 1.0)):
        return None
    nodes, scale, gamma, beta, consts = [r], r.outputs[0], "", "", {}
    g = graph.only_consumer(scale)
    if _op(g, "Mul", 2) and _other(g, scale):
        p = _param(graph, _other(g, scale), norm, rank)
        if p is None:
            return None
        gamma, consts = p
        nodes.append(g)
        scale = g.outputs[0]
    muls = list({id(c): c for c in graph.consumers(scale)}.values())
    if len(muls) != 2 or not all(_op(c, "Mul", 2) and _other(c, scale) for c in muls):
        return None
    scaled = next((c for c in muls if _other(c, scale) == x), None)
    shift = next((c for c in muls if _other(c, scale) == neg.outputs[0]), None)
    if scaled is None or shift is None:
        return None
    nodes += [scaled, shift]
    cur = shift.outputs[0]
    nb = graph.only_consumer(cur)
    if _op(nb, "Add", 2) and _other(nb, cur) not in (None, scaled.outputs[0]):
        p = _param(graph, _other(nb, cur), norm, rank)
        if p is None:
            return None
        beta = p[0]
        consts.update(p[1])
        nodes.append(nb)
        cur = nb.outputs[0]
    final = graph.only_consumer(cur)
    if not _op(final, "Add", 2) or _other(final, cur) != scaled.outputs[0]:
        return None
    return nodes + [final], gamma, beta, consts


def _match_layer_norm(graph: ir.Graph, m1: ir.Node):
    x = m1.inputs[0] if m1.inputs else ""
    found = _normalized(graph, x, m1) if x else None
    if found is None:
        return None
    rank, k, norm = found
    mean = m1.outputs[0]
    readers = list({id(r): r for r in graph.consumers(mean)}.values())
    subs = [r for r in readers if _op(r, "Sub", 2) and r.inputs == [x, mean]]
    negs = [r for r in readers if _op(r, "Neg", 1)]  # tf2onnx's Keras form
    if len(subs) + len(negs) != len(readers) or not 1 <= len(subs) <= 2 or len(negs) > 1:
        return None
    centred = [s.outputs[0] for s in subs]
    # the square reads one centred value, the normalizer the same one or (two Subs) the other
    for d in centred:
        sq = next((r for r in graph.consumers(d) if _is_square(graph, r, rank) == d), None)
        if sq is None:
            continue
        m2 = graph.only_consumer(sq.outputs[0])
        axes2 = _reduce_axes(graph, m2, rank)
        if axes2 is None or _trailing(axes2, rank) != k:
            return None
        root = _root_sqrt(graph, m2, rank)
        if root is None:
            return None
        add, sqrt, eps = root
        if negs:  # x * s + (-mean) * s [+ beta], s = 1 / sqrt(var + eps) [* gamma]; D only squared
            tail = _folded_tail(graph, sqrt, x, negs[0], norm, rank) if len(subs) == 1 else None
            if tail is None:
                return None
            nodes, gamma, beta, consts = [m1, *subs, negs[0], sq, m2, add, sqrt, *tail[0]], *tail[1:]
        else:
            want = d if len(centred) == 1 else next(c for c in centred if c != d)
            div = _divide_by(graph, sqrt, rank, lambda name: name == want)
            if div is None:
                return None
            tail, gamma, beta, consts = _scale_and_shift(graph, div[1].outputs[0], norm, rank, shift=True)
            nodes = [m1, *subs, sq, m2, add, sqrt, *div[0], *tail]
        return _finish(graph, nodes, "LayerNormalization", x, norm, k, eps, gamma, beta, consts)
    return None


def _fuse_layer_norm(graph: ir.Graph, model: ir.Model) -> bool:
    opset = model.opsets.get("", 1)
    if opset < LAYER_NORM_OPSET and not _opset_17_keeps_schemas(model.graph, opset):
        return False
    return _fuse(graph, model, _match_layer_norm, MEANS, bump=True)


def fuse_layer_norm(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, _fuse_layer_norm)


# ---- SimplifiedLayerNormFusion ---------------------------------------------------------------------

def _float_cast(graph: ir.Graph, name: str) -> ir.Node | None:
    """The producer of ``name`` when it is a Cast to float32 of a float32 value (a no-op)."""
    p = graph.producer(name)
    if _op(p, "Cast", 1) and int(p.attrs.get("to", 0)) == TensorProto.FLOAT and _float32(graph, p.inputs[0]):
        return p
    return None


def _match_rms_norm(graph: ir.Graph, m: ir.Node, op_type: str = "SimplifiedLayerNormalization"):
    if not m.inputs:
        return None
    sq = graph.producer(m.inputs[0])
    v = _squared(sq)
    if v is None:
        return None
    cast = _float_cast(graph, v)
    x = cast.inputs[0] if cast is not None else v
    found = _normalized(graph, x, m)
    if found is None:
        return None
    rank, k, norm = found
    if _is_square(graph, sq, rank) != v:
        return None
    root = _root_sqrt(graph, m, rank)
    if root is None:
        return None
    add, sqrt, eps = root
    casts = [cast] if cast is not None else []

    def numerator(name: str) -> bool:
        c = _float_cast(graph, name)
        if c is not None and c.inputs[0] == x:
            if all(c is not seen for seen in casts):
                casts.append(c)
            return True
        return name == x

    div = _divide_by(graph, sqrt, rank, numerator)
    if div is None:
        return None
    cur = div[1].outputs[0]
    tail = []
    back = graph.only_consumer(cur)  # the Cast back to the input's type: float32 to float32
    if _op(back, "Cast", 1) and int(back.attrs.get("to", 0)) == TensorProto.FLOAT:
        tail.append(back)
        cur = back.outputs[0]
    scale, weight, _, consts = _scale_and_shift(graph, cur, norm, rank, shift=False)
    nodes = [*casts, sq, m, add, sqrt, *div[0], *tail, *scale]
    return _finish(graph, nodes, op_type, x, norm, k, eps, weight, "", consts)


def fuse_simplified_layer_norm(graph: ir.Graph, model: ir.Model) -> bool:
    # ONNX's own RMSNormalization where the model's opset has it (a saved model stays valid ONNX for
    # onnx.checker); onnxruntime's SimplifiedLayerNormalization below opset 23
    op_type = "RMSNormalization" if model.opsets.get("", 1) >= 23 else "SimplifiedLayerNormalization"
    return each_graph(graph, model, lambda g, m: _fuse(g, m, lambda g2, n: _match_rms_norm(g2, n, op_type), MEANS))


# ---- SkipLayerNormFusion ---------------------------------------------------------------------------

def _read_after(graph: ir.Graph, name: str, node: ir.Node) -> bool:
    """Every reader of ``name`` other than ``node`` stands after ``node`` (the fused node, placed where
    ``node`` stood, defines ``name`` for them)."""
    others = [r for r in graph.consumers(name) if r is not node]
    if not others:
        return True
    pos = {id(n): i for i, n in enumerate(graph.nodes)}
    return all(pos[id(r)] > pos[id(node)] for r in others)


def _match_skip(graph: ir.Graph, ln: ir.Node):
    simplified = ln.op_type in ("SimplifiedLayerNormalization", "RMSNormalization")
    if ln.domain != "" or not ln.outputs or len(ln.inputs) not in ((2,) if simplified else (2, 3)):
        return None
    if int(ln.attrs.get("stash_type", 1)) != 1 or any(o and graph.use_count(o) for o in ln.outputs[1:]):
        return None  # (its statistics outputs read: the skip kernel's are not the same shape's)
    x = ln.inputs[0]
    add = graph.producer(x)
    if not _op(add, "Add", 2) or not all(_float32(graph, i) for i in add.inputs):
        return None
    a, b = add.inputs
    shape = _shape(graph, a)
    if shape is None or len(shape) not in (2, 3) or not _same_static_shape(graph, a, b):
        return None  # a broadcasting Add: its output's shape is neither operand's
    h = shape[-1]
    if not isinstance(h, int) or int(ln.attrs.get("axis", -1)) not in (-1, len(shape) - 1):
        return None
    params = [p for p in ln.inputs[1:] if p]
    if not ln.inputs[1] or any(not _float32(graph, p) or _shape(graph, p) != [h] for p in params):
        return None
    nodes, inp, skip, bias = [add], a, b, ""
    for first, second in ((a, b), (b, a)):  # Add(Add(M, bias), skip): the bias joins the fused node
        inner = graph.producer(first)
        if not _op(inner, "Add", 2) or graph.only_consumer(first) is not add:
            continue
        for m, c in (inner.inputs, inner.inputs[::-1]):
            value = graph.constant(c)
            if (value is not None and value.dtype == np.float32 and value.shape == (h,) and m != c
                    and _same_static_shape(graph, m, second)):
                nodes, inp, skip, bias = [inner, add], m, second, c
                break
        if bias:
            break
    if not _read_after(graph, x, ln):
        return None
    gamma = ln.inputs[1]
    beta = ln.inputs[2] if len(ln.inputs) > 2 else ""
    if simplified:
        op, inputs = "SkipSimplifiedLayerNormalization", [inp, skip, gamma, bias]
    else:
        op, inputs = "SkipLayerNormalization", [inp, skip, gamma, beta, bias]
    while not inputs[-1]:
        inputs.pop()
    keep_sum = graph.use_count(x) > 1  # read elsewhere too (or a graph output): output 3 defines it
    outputs = [ln.outputs[0]] + (["", "", x] if keep_sum else [])
    eps = float(ln.attrs.get("epsilon", 1e-5))  # (both norms' default; the skip ops' is 1e-12)
    return nodes + [ln], ir.Node(op, MS_DOMAIN, ln.name, inputs, outputs, {"epsilon": eps}), {}


NORMS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")


def fuse_skip_layer_norm(graph: ir.Graph, model: ir.Model) -> bool:
    return each_graph(graph, model, lambda g, m: _fuse(g, m, _match_skip, NORMS, domain=MS_DOMAIN))


# ---- shared driver ---------------------------------------------------------------------------------

def _fuse(graph: ir.Graph, model: ir.Model, match, start: tuple[str, ...], bump: bool = False,
          domain: str = "") -> bool:
    """Apply ``match`` at every node whose type is in ``start``: (old nodes, the new node, new constants)
    or None."""
    removed: set[int] = set()
    for node in list(graph.nodes):
        if node.op_type not in start or node.domain != "" or id(node) in removed:
            continue
        found = match(graph, node)
        if found is None:
            continue
        nodes, new, consts = found
        if bump and model.opsets.get("", 1) < LAYER_NORM_OPSET:
            model.opsets[""] = LAYER_NORM_OPSET  # (checked by the caller: no node's schema changes)
            model.ir_version = max(model.ir_version, 8)  # opset 17's IR version
        if domain:
            model.opsets.setdefault(domain, 1)
        graph.replace(nodes, [new], constants=consts, opsets=model.opsets)
        removed.update(id(n) for n in nodes)
    return bool(removed)
