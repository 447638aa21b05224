"""Rewrites for traditional ML models (ai.onnx.ml).

``index_class_labels`` (ClassLabelIndexing, basic level): a classifier with string class labels
(TreeEnsembleClassifier, LinearClassifier, SVMClassifier; scikit-learn models trained on string
targets) becomes the same classifier over the labels' indices, whose native kernel computes the scores
and the label index, followed by a LabelEncoder (int64 index -> string label, numpy) for the label
output. The native executor holds no string tensors, so without this the whole classifier ran in numpy.
The scores and the labels are unchanged: the classifiers decide on indices and only look the label up
at the end (their binary conventions included).
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
