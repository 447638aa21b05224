"""Graph optimization: small rewrites of the IR, each registered once here with a name and a level,
run in a fixed list until none changes the graph (a fixed point). A pass is a function
``(graph, model) -> bool`` (changed or not) that edits the graph through the IR's patch API
(``ir.Graph.replace`` / ``ir.Graph.rewire``: use/def index kept current, types of new nodes inferred
again, local checks); the whole graph is checked after every pass that changed it.

Levels follow onnxruntime's GraphOptimizationLevel: a pass runs when the session's level is at or
above the pass's level. Names follow onnxruntime's where the rewrite is the same one (so a
``disabled_optimizers`` list written for onnxruntime disables the same work here); a session
disables passes by name with ``InferenceSession(..., disabled_optimizers=[...])`` or the config
entry ``optimization.disable_specified_optimizers`` (a ';' list). Passes insert operators of the
``com.microsoft`` domain where onnxruntime has the same one (Gelu, FastGelu) and internal operators
of the ``onnxfast`` domain otherwise (``FusedConv``, ``FusedMatMul``, ``FusedElementwise``, ``FusedAttention``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

from .. import ir
from ..errors import OnnxfastWarning
from .attention import fuse_attention
from .elementwise import fuse_elementwise
from .elimination import (eliminate_cast, eliminate_dead_nodes, eliminate_dropout, eliminate_identity,
                          eliminate_common_subexpressions)
from .folding import fold_constants, fold_shapes
from .fusions import fuse_conv_activation, fuse_matmul_epilogue
from .gelu import fuse_fast_gelu, fuse_gelu
from .layout import fold_reshape_chains, fold_transpose_pairs, fuse_gemm_transpose, fuse_matmul_transpose
from .ml import fuse_scan_cdist, index_class_labels
from .normalization import fuse_layer_norm, fuse_simplified_layer_norm, fuse_skip_layer_norm
from .weights import fuse_conv_add, fuse_conv_bn, fuse_conv_mul, fuse_matmul_scale

log = logging.getLogger("onnxfast")

PassFn = Callable[[ir.Graph, ir.Model], bool]

BASIC, EXTENDED, ALL = 1, 2, 99  # onnxruntime's GraphOptimizationLevel values


@dataclass(frozen=True)
class Pass:
    name: str
    level: int
    run: PassFn
    doc: str


# In the order they run in each round.
PASSES: list[Pass] = [
    Pass("EliminateIdentity", BASIC, eliminate_identity, "Identity nodes: readers read the input"),
    Pass("EliminateDropout", BASIC, eliminate_dropout, "Dropout at inference (mask unread): readers read the input"),
    Pass("CastElimination", BASIC, eliminate_cast, "Cast to the type the input has already"),
    Pass("ConstantFolding", BASIC, fold_constants, "nodes whose inputs are all true constants become constants"),
    Pass("ShapeToInitializer", BASIC, fold_shapes, "Shape / Size of a statically shaped value become constants"),
    Pass("TransposeOptimizer", BASIC, fold_transpose_pairs,
         "Transpose -> Transpose: one Transpose of the composed permutation, or none; identity Transposes go"),
    Pass("ReshapeChainElimination", BASIC, fold_reshape_chains,
         "Reshape -> Reshape(constant shape): one Reshape; a Reshape to the shape its input has goes"),
    Pass("GemmTransposeFusion", BASIC, fuse_gemm_transpose, "a 2-D Transpose into a Gemm's A or B: transA / transB"),
    Pass("ConvBNFusion", BASIC, fuse_conv_bn, "Conv -> BatchNormalization (constant statistics): folded into W, B"),
    Pass("ConvMulFusion", BASIC, fuse_conv_mul, "Conv -> Mul by a constant per channel: folded into W, B"),
    Pass("ConvAddFusion", BASIC, fuse_conv_add, "Conv -> Add of a constant per channel: folded into B"),
    Pass("MatMulScaleFusion", BASIC, fuse_matmul_scale,
         "MatMul / Gemm (constant W) -> Mul by a constant per column, or a scalar Mul before: folded into W"),
    Pass("CommonSubexpressionElimination", BASIC, eliminate_common_subexpressions,
         "a node computing what an earlier node computes (same op, attributes, inputs) is dropped"),
    Pass("EliminateDeadNodes", BASIC, eliminate_dead_nodes, "nodes whose outputs nobody reads"),
    Pass("ScanCDistFusion", BASIC, fuse_scan_cdist,
         "skl2onnx's Scan of ReduceSumSquare(X - row) (pairwise distances) -> com.microsoft CDist"),
    Pass("ClassLabelIndexing", BASIC, index_class_labels,
         "a classifier with string labels -> the classifier over label indices (native) + LabelEncoder"),
    Pass("GeluFusion", EXTENDED, fuse_gelu, "x * 0.5 * (1 + erf(x / sqrt 2)) -> com.microsoft.Gelu"),
    Pass("FastGeluFusion", EXTENDED, fuse_fast_gelu,
         "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> com.microsoft.FastGelu"),
    Pass("LayerNormFusion", EXTENDED, fuse_layer_norm,
         "ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div [* gamma] [+ beta] -> LayerNormalization"),
    Pass("SimplifiedLayerNormFusion", EXTENDED, fuse_simplified_layer_norm,
         "x / sqrt(mean(x^2) + eps) [* weight] (RMS norm) -> SimplifiedLayerNormalization"),
    Pass("AttentionFusion", EXTENDED, fuse_attention,
         "MatMul(Q, Kt) [* scale] [+ mask] -> Softmax [-> IsNaN/Where] -> MatMul(V) -> FusedAttention"),
    Pass("ConvActivationFusion", EXTENDED, fuse_conv_activation, "Conv [+ residual Add] [+ activation] -> FusedConv"),
    Pass("MatMulEpilogueFusion", EXTENDED, fuse_matmul_epilogue,
         "MatMul [+ bias] [+ residual] [+ activation] -> FusedMatMul"),
    # after MatMulEpilogueFusion: only the residual Adds the GEMM's store did not take
    Pass("SkipLayerNormFusion", EXTENDED, fuse_skip_layer_norm,
         "Add [+ bias] -> LayerNormalization -> com.microsoft.SkipLayerNormalization (Simplified too)"),
    Pass("MatmulTransposeFusion", EXTENDED, fuse_matmul_transpose,
         "Transpose (last two axes) -> MatMul's B: com.microsoft FusedMatMul transB (no copy)"),
    Pass("ElementwiseFusion", EXTENDED, fuse_elementwise,
         "a group of float32 elementwise nodes -> FusedElementwise (one pass over memory)"),
]

PASS_NAMES = [p.name for p in PASSES]

MAX_ROUNDS = 16


@dataclass
class PassRecord:
    """One application of a pass that changed the graph: node counts of the main graph around it."""

    name: str
    nodes_before: int
    nodes_after: int


def parse_disabled(names: Iterable[str] | str | None) -> set[str]:
    """A set of pass names from a list or a ';' string. Names onnxfast does not have are ignored
    with a warning (onnxruntime ignores them silently: lists written for it keep working)."""
    if names is None:
        return set()
    if isinstance(names, str):
        names = names.split(";")
    out = {str(n).strip() for n in names if str(n).strip()}
    unknown = sorted(out - set(PASS_NAMES))
    if unknown:
        warnings.warn(f"disabled optimizers {unknown} are not onnxfast passes (ignored); onnxfast's passes: "
                      f"{', '.join(PASS_NAMES)}", OnnxfastWarning, stacklevel=3)
    return out & set(PASS_NAMES)


def optimize(model: ir.Model, level: int, disabled: Iterable[str] = ()) -> list[PassRecord]:
    """Run the passes enabled at ``level`` (less ``disabled``) to a fixed point; returns, in order,
    each application that changed the graph."""
    off = set(disabled)
    passes = [p for p in PASSES if level >= p.level and p.name not in off]
    applied: list[PassRecord] = []
    for _ in range(MAX_ROUNDS):
        changed = False
        for p in passes:
            before = len(model.graph.nodes)
            if p.run(model.graph, model):
                changed = True
                applied.append(PassRecord(p.name, before, len(model.graph.nodes)))
                check(model.graph)
        if not changed:
            break
    if applied:
        log.info("optimizer applied: %s", ", ".join(r.name for r in applied))
    return applied


def check(graph: ir.Graph) -> None:
    """The graph's invariants after a pass (ir.Graph.check: definitions before use, each name defined
    once, outputs defined, the use/def index current)."""
    graph.check()
