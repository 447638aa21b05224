"""Graph optimization: small rewrites of the IR, each a function ``(graph, model) -> bool``
(changed or not), run in a fixed list until none changes the graph (a fixed point). Passes edit the
graph through the IR's patch API (``ir.Graph.replace``: use/def index kept current, types of new
nodes inferred again, local checks); the whole graph is checked after every pass that changed it.

Levels follow onnxruntime's GraphOptimizationLevel: a pass runs when the session's level is at
or above the pass's level. Passes insert internal operators of the ``onnxfast`` domain
(``FusedConv``, ``FusedMatMul``), which only onnxfast's kernels implement.
"""

from __future__ import annotations

import logging
from typing import Callable

from .. import ir
from .folding import fold_constants, fold_shapes
from .fusions import fuse_conv_activation, fuse_matmul_epilogue

log = logging.getLogger("onnxfast")

Pass = Callable[[ir.Graph, ir.Model], bool]

# (minimum level, pass) in the order they run.
PASSES: list[tuple[int, Pass]] = [
    (1, fold_constants),  # ORT_ENABLE_BASIC
    (1, fold_shapes),
    (2, fuse_conv_activation),  # ORT_ENABLE_EXTENDED
    (2, fuse_matmul_epilogue),
]

MAX_ROUNDS = 16


def optimize(model: ir.Model, level: int) -> list[str]:
    """Run the passes enabled at ``level`` to a fixed point; returns the names of passes that changed it."""
    passes = [p for lvl, p in PASSES if level >= lvl]
    applied: list[str] = []
    for _ in range(MAX_ROUNDS):
        changed = False
        for p in passes:
            if p(model.graph, model):
                changed = True
                applied.append(p.__name__)
                check(model.graph)
        if not changed:
            break
    if applied:
        log.info("optimizer applied: %s", ", ".join(applied))
    return applied


def check(graph: ir.Graph) -> None:
    """The graph's invariants after a pass (ir.Graph.check: definitions before use, each name defined
    once, outputs defined, the use/def index current)."""
    graph.check()
