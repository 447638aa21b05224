"""Traditional ML models, onnxfast vs onnxruntime, side by side in one process (issue #18's table).

Benchmark-size conversions (benchmarks/models/ml_zoo.py BENCH_ZOO: a random forest of 100 trees of
depth 10, LightGBM with 500 trees, XGBoost with 300 trees, scaler + logistic regression, an RBF SVC, a
linear SVR; 20 features) at 1, 256 and 10,000 rows and 1 and 2 threads; and, at one thread, the
pipelines whose plumbing is strings and maps (a ColumnTransformer with string columns, DictVectorizer,
CastMap). Timing as in test_models.py
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


# Pipelines whose plumbing is strings and maps (the C++ kernels over Python objects,
# csrc/bindings/py_object_kernels.cpp): skl2onnx's ColumnTransformer (OneHotEncoder of string columns,
# StandardScaler) + LogisticRegression with string labels, with and without ZipMap; DictVectorizer and
# CastMap fed one dict per run, as their users do.
STRING_PIPELINES = ["column_logreg", "column_logreg_nozipmap"]
MAP_PIPELINES = ["dict_vectorizer_logreg", "castmap_linear"]


@pytest.mark.parametrize("rows", [1, 256])
@pytest.mark.parametrize("name", STRING_PIPELINES)
def test_ml_string_pipeline(benchmark, name, rows):
    for m in ml_zoo.FAMILY_MODULES[ml_zoo.ML_ZOO[name].family]:
        pytest.importorskip(m)
    c = ml_zoo.get(name)
    feed = batch_feed(c.inputs, rows)
    run_pair(benchmark, str(c.path), feed, 1, ROUNDS[rows], group=f"ml-{name}-rows{rows}-t1")


@pytest.mark.parametrize("name", MAP_PIPELINES)
def test_ml_map_pipeline(benchmark, name):
    for m in ml_zoo.FAMILY_MODULES[ml_zoo.ML_ZOO[name].family]:
        pytest.importorskip(m)
    c = ml_zoo.get(name)
    feed = {k: rows[0] for k, rows in c.map_rows.items()}
    run_pair(benchmark, str(c.path), feed, 1, ROUNDS[1], group=f"ml-{name}-one-dict-t1")
