"""Rewrites for traditional ML models (ai.onnx.ml).

``index_class_labels`` (ClassLabelIndexing, basic level): a classifier with string class labels
(TreeEnsembleClassifier, LinearClassifier, SVMClassifier; scikit-learn models trained on string
targets) becomes the same classifier over the labels' indices, whose native kernel computes the scores
and the label index, followed by a LabelEncoder (int64 index -> string label, numpy) for the label
output. The native executor holds no string tensors, so without this the whole classifier ran in numpy.
The scores and the labels are unchanged: the classifiers decide on indices and only look the label up
at the end (their binary conventions included).

``fuse_scan_cdist`` (ScanCDistFusion, basic level): skl2onnx computes the distances of k-nearest
neighbours (and other cdist users) as a Scan over the training rows whose body emits
ReduceSumSquare(X - row, axes=[1]); the Scan becomes com.microsoft CDist(T, X, 'sqeuclidean') (the
operator skl2onnx writes itself with its 'cdist' option), one native kernel instead of a loop of
subgraph runs. The body must be exactly that pattern, with rank-2 X and T.
"""

from __future__ import annotations

import dataclasses

from .. import ir
from .fusions import _fresh_name

ML = "ai.onnx.ml"
# classifier op -> (string labels attribute, integer labels attribute)
_LABELS = {
    "TreeEnsembleClassifier": ("classlabels_strings", "classlabels_int64s"),
    "LinearClassifier": ("classlabels_strings", "classlabels_ints"),
    "SVMClassifier": ("classlabels_strings", "classlabels_ints"),
}


def index_class_labels(graph: ir.Graph, model: ir.Model) -> bool:
    from .folding import each_graph

    return each_graph(graph, model, _index_labels)


def _index_labels(graph: ir.Graph, model: ir.Model) -> bool:
    changed = False
    v1 = model.opsets.get(ML, 1) < 2  # LabelEncoder 1 maps an int64 index to classes_strings[index]
    for node in list(graph.nodes):
        names = _LABELS.get(node.op_type) if node.domain == ML else None
        if names is None or not node.outputs or not node.outputs[0]:
            continue
        strings = node.attrs.get(names[0])
        if not strings or node.attrs.get(names[1]):
            continue
        labels = [s.decode() if isinstance(s, bytes) else str(s) for s in strings]
        attrs = {k: v for k, v in node.attrs.items() if k != names[0]}
        attrs[names[1]] = list(range(len(labels)))
        index = _fresh_name(graph, node.outputs[0] + "__index")
        indexed = dataclasses.replace(node, outputs=[index] + node.outputs[1:], attrs=attrs)
        table = ({"classes_strings": labels} if v1 else
                 {"keys_int64s": list(range(len(labels))), "values_strings": labels})
        lookup = ir.Node("LabelEncoder", ML, _fresh_name(graph, node.name + "__labels"), [index], [node.outputs[0]],
                         dict(table, default_string="_Unused"))
        graph.replace([node], [indexed, lookup], opsets=model.opsets)
        changed = True
    return changed


# ---------------------------------------------------------------------------------------------
# ScanCDistFusion: skl2onnx's pairwise distances (k-nearest neighbours) as one native CDist

MS_DOMAIN = "com.microsoft"
_SCAN_AXES_ATTRS = ("scan_input_axes", "scan_output_axes", "scan_input_directions", "scan_output_directions")


def fuse_scan_cdist(graph: ir.Graph, model: ir.Model) -> bool:
    from .folding import each_graph

    return each_graph(graph, model, _scan_cdist)


def _rank(graph: ir.Graph, name: str) -> int | None:
    vi = graph.type_of(name)
    return len(vi.shape) if vi is not None and vi.shape is not None else None


def _cdist_body(body: ir.Graph) -> bool:
    """The body skl2onnx writes for cdist(X, rows of T): state passed through unchanged, each scan step
    emitting ReduceSumSquare(state - row, axes=[1], keepdims=0)."""
    if len(body.inputs) != 2 or len(body.outputs) != 2 or body.outer_refs:
        return False
    s_in, row = body.inputs[0].name, body.inputs[1].name
    s_out, y = body.outputs[0].name, body.outputs[1].name
    made = {o: n for n in body.nodes for o in n.outputs}
    ident = made.get(s_out)
    if ident is None or ident.op_type != "Identity" or ident.inputs != [s_in]:
        return False
    last = made.get(y)
    if last is not None and last.op_type == "Identity":
        last = made.get(last.inputs[0])
    if last is None or last.op_type != "ReduceSumSquare" or last.domain or last.attrs.get("keepdims", 1) != 0:
        return False
    axes = last.attrs.get("axes")
    if len(last.inputs) > 1 and last.inputs[1]:
        const = body.initializers.get(last.inputs[1])
        axes = None if const is None else [int(v) for v in const.reshape(-1)]
    if axes is None or [int(a) for a in axes] not in ([1], [-1]):
        return False
    sub = made.get(last.inputs[0])
    if sub is None or sub.op_type != "Sub" or sorted(sub.inputs) != sorted([s_in, row]):
        return False
    return len(body.nodes) == (4 if made.get(y) is not last else 3)


def _scan_cdist(graph: ir.Graph, model: ir.Model) -> bool:
    changed = False
    for node in list(graph.nodes):
        if (node.op_type != "Scan" or node.domain or len(node.inputs) != 2 or len(node.outputs) != 2
                or node.attrs.get("num_scan_inputs") != 1 or "body" not in node.subgraphs):
            continue
        if any(any(int(v) for v in node.attrs.get(a) or []) for a in _SCAN_AXES_ATTRS):
            continue
        x, t = node.inputs
        if _rank(graph, x) != 2 or _rank(graph, t) != 2 or not _cdist_body(node.subgraphs["body"]):
            continue
        state, dist = node.outputs
        new = [ir.Node("CDist", MS_DOMAIN, node.name, [t, x], [dist], {"metric": "sqeuclidean"})]
        if state and (graph.is_output(state) or graph.consumers(state)):
            new.append(ir.Node("Identity", "", _fresh_name(graph, node.name + "__state"), [x], [state], {}))
        model.opsets.setdefault(MS_DOMAIN, 1)
        graph.replace([node], new, opsets=model.opsets)
        changed = True
    return changed
