"""What each optimizer pass family buys, per model: onnxfast with one family switched off
(``disabled_optimizers``) against onnxfast with every pass, side by side in one process (the full
session runs once before every timed round, as onnxruntime does in test_models.py). extra_info's
``ratio`` is time without the family / time with everything: above 1 means the family pays.
Families: Gelu (GeluFusion, FastGeluFusion), MatMulEpilogue, ConvActivation, Elementwise, Attention,
WeightFolding (BatchNorm / Mul / Add into Conv and MatMul weights), Layout (Transpose / Reshape chains, Transposes
into Gemm / MatMul), Normalization (LayerNorm / RMSNorm / SkipLayerNorm fusions), and "extended" (every
extended-level pass: the session at the basic level). A model is measured only for the families that rewrite
something in it.

    pytest benchmarks/test_passes.py --benchmark-only --benchmark-json out.json
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from benchmarks.models import zoo

import onnxfast
from onnxfast.optimizer import EXTENDED, PASSES

FAMILIES = {
    "Gelu": ["GeluFusion", "FastGeluFusion"],
    "MatMulEpilogue": ["MatMulEpilogueFusion"],
    "ConvActivation": ["ConvActivationFusion"],
    "Elementwise": ["ElementwiseFusion"],
    "Attention": ["AttentionFusion"],
    "WeightFolding": ["ConvBNFusion", "ConvMulFusion", "ConvAddFusion", "MatMulScaleFusion"],
    "Layout": ["TransposeOptimizer", "ReshapeChainElimination", "GemmTransposeFusion", "MatmulTransposeFusion"],
    "Normalization": ["LayerNormFusion", "SimplifiedLayerNormFusion", "SkipLayerNormFusion"],
    "extended": [p.name for p in PASSES if p.level >= EXTENDED],
}
# the families that rewrite something in each model
_TRANSFORMER = ["Gelu", "MatMulEpilogue", "Attention", "extended"]
MODELS = {"bert_base": _TRANSFORMER, "gpt2": _TRANSFORMER + ["Normalization", "Layout"], "minilm": _TRANSFORMER,
          "mlp": ["Gelu", "MatMulEpilogue", "extended"],
          "mobilenet_v2": ["ConvActivation", "extended"], "resnet50": ["ConvActivation", "extended"],
          "keras_cnn": ["WeightFolding", "ConvActivation", "extended"]}
ROUNDS = 7


def session(path: str, disabled: list[str]) -> onnxfast.InferenceSession:
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnxfast.InferenceSession(path, o, disabled_optimizers=disabled)


@pytest.mark.parametrize("name,family", [pytest.param(n, f, marks=[pytest.mark.slow] if zoo.ZOO[n].slow else [],
                                                      id=f"{n}-{f}") for n, fams in MODELS.items() for f in fams])
def test_pass_family(benchmark, name, family):
    """Batch 1 (the first row of the zoo's inputs), one thread."""
    for mod in zoo.FAMILY_MODULES[zoo.ZOO[name].family]:
        pytest.importorskip(mod)
    c = zoo.get(name)
    feed = {k: v[:1] for k, v in c.inputs.items()}
    full, without = session(str(c.path), []), session(str(c.path), FAMILIES[family])
    full_times: list[float] = []

    def setup():
        t = time.perf_counter()
        full.run(None, feed)
        full_times.append(time.perf_counter() - t)

    for _ in range(2):
        full.run(None, feed)
        without.run(None, feed)
    benchmark.group = f"{name} without {family}"
    rounds = 1 if benchmark.disabled else ROUNDS
    benchmark.pedantic(lambda: without.run(None, feed), setup=setup, rounds=rounds, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and full_times:
        benchmark.extra_info.update({"all_passes_median_s": float(np.median(full_times)),
                                     "without_median_s": stats.stats.median,
                                     "ratio": stats.stats.median / float(np.median(full_times))})
