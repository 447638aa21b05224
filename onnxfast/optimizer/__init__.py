"""Graph optimization: small rewrites of the IR, each a function ``(graph, model) -> bool``
(changed or not), run in a fixed list until none changes the graph (a fixed point). The graph is
checked after every pass that changed it (every value defined before use, no cycles).

Levels follow onnxruntime's GraphOptimizationLevel: a pass runs when the session's level is at
or above the pass's level. Passes insert internal operators of the ``onnxfast`` domain
(``FusedConv``, ``FusedMatMul``), which only onnxfast's kernels implement.
"""

from __future__ import annotations

import logging
from typing import Callable

from .. import ir
from ..errors import InvalidModel
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
    """Every node input is defined before it is read; names are defined once."""
    defined = {vi.name for vi in graph.inputs} | set(graph.initializers) | set(graph.outer_refs)
    for n in graph.nodes:
        for name in list(n.inputs) + list(n.implicit_inputs):
            if name and name not in defined:
                raise InvalidModel(f"optimizer produced an invalid graph: node '{n.name}' reads '{name}' before it "
                                   "is defined")
        for o in n.outputs:
            if o:
                if o in defined:
                    raise InvalidModel(f"optimizer produced an invalid graph: '{o}' is defined twice")
                defined.add(o)
    for o in graph.outputs:
        if o.name not in defined:
            raise InvalidModel(f"optimizer produced an invalid graph: output '{o.name}' is not defined")
