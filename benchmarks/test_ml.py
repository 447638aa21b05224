"""Traditional ML models, onnxfast vs onnxruntime, side by side in one process (issue #18's table).

Benchmark-size conversions (benchmarks/models/ml_zoo.py BENCH_ZOO: a random forest of 100 trees of
depth 10, LightGBM with 500 trees, XGBoost with 300 trees, scaler + logistic regression, an RBF SVC, a
linear SVR; 20 features) at 1, 256 and 10,000 rows and 1 and 2 threads. Timing as in test_models.py
(run_pair): onnxruntime runs in each round's setup, a settle pause lets its spinning threads go idle,
extra_info holds both medians and the ratio that ci/bench_gate.py gates on.

    pytest benchmarks/test_ml.py --benchmark-only --benchmark-autosave
"""

from __future__ import annotations

import pytest

from benchmarks.models import ml_zoo
from benchmarks.test_models import batch_feed, run_pair

pytest.importorskip("onnxruntime")

ROWS = [1, 256, 10000]
ROUNDS = {1: 60, 256: 30, 10000: 8}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("name", list(ml_zoo.BENCH_ZOO))
def test_ml_model(benchmark, name, rows, threads):
    for m in ml_zoo.FAMILY_MODULES[ml_zoo.BENCH_ZOO[name].family]:
        pytest.importorskip(m)
    c = ml_zoo.get(name)
    feed = batch_feed(c.inputs, rows)
    run_pair(benchmark, str(c.path), feed, threads, ROUNDS[rows], group=f"ml-{name}-rows{rows}-t{threads}")
