"""Traditional-ML models for the conversion tests (tests/test_ml_models.py): scikit-learn models
through skl2onnx, LightGBM and XGBoost through onnxmltools, and one hand-built CastMap model.

This module owns the ML half of the real-model zoo: which estimators are trained, on what data,
how each is converted (ZipMap or not, target opsets) and what the tests know about each model's
outputs (which output holds the labels, which the probabilities / scores / values, which is a
ZipMap list of dicts). The cache machinery (folder, build-then-rename, inputs.npz / expected.npz)
is benchmarks/models/zoo.py's; models land in ``<zoo cache>/ml_v<ML_ZOO_VERSION>/<name>``.

Everything is deterministic (fixed seeds, single-threaded training) and small: a few hundred
training rows, 64 test rows, so building every model takes seconds.

    python -m benchmarks.models.ml_zoo            # build every model (skips those cached)
    python -m benchmarks.models.ml_zoo svc_proba  # one model

``get(name)`` returns an MLCached: the model path, the test inputs, the source library's outputs
in model output order and one OutputInfo per model output. Tensor inputs are the test rows
(float32 features; string columns as object arrays, as a pandas column gives them). Models with a
map input (DictVectorizer, CastMap) take one dict per run: ``map_rows[input name]`` holds one dict
per test row, and the expected outputs are the rows' outputs stacked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from benchmarks.models.zoo import _save, build_cli, build_once, cache_root

ML_ZOO_VERSION = "1"
N_TEST = 64
# ai.onnx.ml 3 gives the TreeEnsembleClassifier / TreeEnsembleRegressor operators every converter emits
SKL_OPSET = {"": 18, "ai.onnx.ml": 3}
ONNXMLTOOLS_OPSET = 15


@dataclass
class OutputInfo:
    """What one model output holds.

    role: "label" (predicted classes), "probabilities", "scores" (decision values of a classifier or
    outlier detector) or "values" (regression outputs, features).
    zipmap: the output is a ZipMap's list of dicts (class -> probability); its expected array is the
    probability matrix with one column per class, in the dicts' key order.
    margin_from / margin: for labels, the output whose expected values decide ties: "top2" (the top
    two columns' difference) or "abs" (distance of a single score from the threshold 0).
    """

    name: str
    role: str
    zipmap: bool = False
    margin_from: int | None = None
    margin: str | None = None


@dataclass
class MLCached:
    name: str
    path: pathlib.Path
    inputs: dict  # tensor inputs: name -> array over the test rows
    expected: list  # the source library's outputs, in model output order
    outputs: list  # OutputInfo per model output
    family: str
    map_rows: dict = field(default_factory=dict)  # map inputs: name -> list of dicts, one run per row

    @property
    def per_row(self) -> bool:
        return bool(self.map_rows)


@dataclass
class MLSpec:
    build: Callable[[pathlib.Path], None]
    family: str  # "sklearn" | "lightgbm" | "xgboost" | "onnx"
    description: str
    slow: bool = False


def _clf_outputs(zipmap: bool, role: str = "probabilities") -> list[OutputInfo]:
    return [OutputInfo("", "label", margin_from=1, margin="top2"), OutputInfo("", role, zipmap=zipmap)]


_REG = [OutputInfo("", "values")]


def _write(folder: pathlib.Path, onx, inputs: dict, expected: list, outputs: list[OutputInfo],
           map_rows: dict | None = None) -> None:
    """model.onnx, inputs.npz and expected.npz (zoo._save), meta.json (output roles, map inputs)."""
    names = [o.name for o in onx.graph.output]
    if len(names) != len(outputs) or len(expected) != len(outputs):
        raise RuntimeError(f"{folder.name}: outputs {names}, {len(outputs)} roles, {len(expected)} expected")
    # byte-identical rebuilds: converters name graphs with random uuids, order opset imports by set order
    onx.graph.name = folder.name.removesuffix(".tmp")
    opsets = sorted(((o.domain, o.version) for o in onx.opset_import))
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    # string columns are stored as fixed-width unicode (npz without pickles); get() makes them objects
    _save(folder, {k: (v.astype(str) if v.dtype == object else v) for k, v in inputs.items()}, expected)
    meta = {
        "outputs": [dict(o.__dict__, name=n) for o, n in zip(outputs, names)],
        # map inputs as [key, value] pairs per row (JSON keeps int keys apart from string keys)
        "map_rows": {k: [[[key, val] for key, val in row.items()] for row in rows]
                     for k, rows in (map_rows or {}).items()},
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


# ---------------------------------------------------------------------------------------------
# data


@functools.cache
def _classification(classes: int, nan_fraction: float = 0.0, seed: int = 0):
    """400 training rows and N_TEST test rows of 8 float32 features; NaN at random where asked."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=400 + N_TEST, n_features=8, n_informative=5, n_redundant=1,
                               n_classes=classes, n_clusters_per_class=1, random_state=seed)
    x = x.astype(np.float32)
    if nan_fraction:
        rng = np.random.default_rng(seed + 1)
        x[rng.random(x.shape) < nan_fraction] = np.nan
    return x[:400], y[:400], x[400:], y[400:]


@functools.cache
def _regression(nan_fraction: float = 0.0, seed: int = 0):
    x, y, xt, _ = _classification(3, nan_fraction, seed)
    rng = np.random.default_rng(seed + 2)
    w = rng.normal(size=x.shape[1])
    a = np.nan_to_num(x.astype(np.float64))  # the target is computed from the values before masking
    return x, a @ w + 0.5 * np.sin(3 * a[:, 0]) + y, xt, None


@contextlib.contextmanager
def _quiet():
    """Training warnings (ConvergenceWarning and the like) are not the tests' business."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _skl2onnx_bool_missing_fix():
    """skl2onnx 1.20 passes Python bools (leaves' missing_go_to_left = False) into the int list
    nodes_missing_value_tracks_true of HistGradientBoosting trees, which onnx >= 1.20's make_attribute
    refuses ("Expected an int, got a boolean"); converting them to int is what the converter means."""
    from skl2onnx.common import tree_ensemble

    orig = tree_ensemble.add_node

    def add_node(*args, nodes_missing_value_tracks_true=0, **kwargs):
        return orig(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = orig


# ---------------------------------------------------------------------------------------------
# scikit-learn


def _skl_convert(model, xt, zipmap: bool | None, initial_types=None):
    from skl2onnx import convert_sklearn, to_onnx

    options = {"zipmap": False} if zipmap is False else None
    with _quiet(), _skl2onnx_bool_missing_fix():
        if initial_types is not None:
            return convert_sklearn(model, initial_types=initial_types, target_opset=SKL_OPSET,
                                   options=options)
        return to_onnx(model, xt[:1], target_opset=SKL_OPSET, options=options)


@functools.cache
def _fit(kind: str):
    """The fitted estimator of each scikit-learn model (both ZipMap variants share one fit)."""
    from sklearn import ensemble, neighbors, neural_network, svm, tree

    with _quiet():
        if kind == "random_forest":
            x, y, *_ = _classification(3)
            return ensemble.RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(x, y)
        if kind == "extra_trees_reg":
            x, y, *_ = _regression()
            return ensemble.ExtraTreesRegressor(n_estimators=20, max_depth=8, random_state=0).fit(x, y)
        if kind == "gb_binary":
            x, y, *_ = _classification(2)
            return ensemble.GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(x, y)
        if kind == "gb_multi":
            x, y, *_ = _classification(3)
            return ensemble.GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(x, y)
        if kind == "hgb_reg_nan":
            x, y, *_ = _regression(nan_fraction=0.15)
            return ensemble.HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
        if kind == "hgb_clf":
            x, y, *_ = _classification(3)
            return ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
        if kind == "isolation_forest":
            x, *_ = _classification(3)
            return ensemble.IsolationForest(n_estimators=30, random_state=0).fit(x)
        if kind == "svc_proba":
            x, y, *_ = _classification(3)
            return svm.SVC(probability=True, random_state=0).fit(x, y)
        if kind == "svc_scores":
            x, y, *_ = _classification(3)
            return svm.SVC(probability=False).fit(x, y)
        if kind == "svc_scores_binary":
            x, y, *_ = _classification(2)
            return svm.SVC(kernel="poly", degree=3, probability=False).fit(x, y)
        if kind == "linear_svr":
            x, y, *_ = _regression()
            return svm.LinearSVR(C=1.0, max_iter=5000, random_state=0).fit(x, y)
        if kind == "knn":
            x, y, *_ = _classification(3)
            return neighbors.KNeighborsClassifier(n_neighbors=5).fit(x, y)
        if kind == "mlp":
            x, y, *_ = _classification(3)
            mlp = neural_network.MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0)
            return mlp.fit(x, y)
        if kind == "decision_tree":
            x, y, *_ = _classification(3)
            return tree.DecisionTreeClassifier(max_depth=6, random_state=0).fit(x, y)
        if kind == "decision_tree_reg":
            x, y, *_ = _regression()
            return tree.DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, y)
    raise KeyError(kind)


def _build_classifier(kind: str, zipmap: bool, folder: pathlib.Path, classes: int = 3) -> None:
    model = _fit(kind)
    _, _, xt, _ = _classification(classes)
    onx = _skl_convert(model, xt, zipmap)
    _write(folder, onx, {"X": xt}, [model.predict(xt), model.predict_proba(xt).astype(np.float32)],
           _clf_outputs(zipmap))


def _build_regressor(kind: str, folder: pathlib.Path, nan_fraction: float = 0.0) -> None:
    model = _fit(kind)
    _, _, xt, _ = _regression(nan_fraction)
    onx = _skl_convert(model, xt, None)
    _write(folder, onx, {"X": xt}, [model.predict(xt).astype(np.float32).reshape(-1, 1)], _REG)


def _build_svc_scores(kind: str, classes: int, folder: pathlib.Path) -> None:
    """SVC without probabilities: skl2onnx offers no ZipMap; the second output holds the decision
    values, for two classes laid out [d, -d] (what skl2onnx's SVMClassifier gives onnxruntime)."""
    model = _fit(kind)
    _, _, xt, _ = _classification(classes)
    onx = _skl_convert(model, xt, None)
    d = model.decision_function(xt)
    scores = np.stack([d, -d], axis=1) if d.ndim == 1 else d
    _write(folder, onx, {"X": xt}, [model.predict(xt), scores.astype(np.float32)],
           _clf_outputs(False, "scores"))


def _build_isolation_forest(folder: pathlib.Path) -> None:
    model = _fit("isolation_forest")
    _, _, xt, _ = _classification(3)
    onx = _skl_convert(model, xt, None)
    _write(folder, onx, {"X": xt},
           [model.predict(xt).reshape(-1, 1), model.decision_function(xt).astype(np.float32).reshape(-1, 1)],
           [OutputInfo("", "label", margin_from=1, margin="abs"), OutputInfo("", "scores")])


@functools.cache
def _column_data():
    """Mixed rows: two float columns, two string columns; string class labels."""
    rng = np.random.default_rng(0)
    n = 400 + N_TEST
    a = rng.normal(size=n).astype(np.float32)
    b = (3 * rng.normal(size=n) + 10).astype(np.float32)
    c = rng.choice(["red", "green", "blue"], n)
    d = rng.choice(["north", "south", "east", "west", "up"], n)
    y = np.where(a + (c == "red") > 0.5, "yes", np.where(b > 10, "maybe", "no"))
    x = np.empty((n, 4), dtype=object)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3] = a, b, c, d
    return x[:400], y[:400], x[400:], y[400:]


@functools.cache
def _fit_column_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y, _, _ = _column_data()
    ct = ColumnTransformer([("num", StandardScaler(), [0, 1]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), [2, 3])])
    with _quiet():
        return Pipeline([("columns", ct), ("clf", LogisticRegression(max_iter=500))]).fit(x, y)


def _build_column_pipeline(zipmap: bool, folder: pathlib.Path) -> None:
    """One ONNX input per column, as skl2onnx converts a DataFrame: 'a', 'b' float, 'c', 'd' string."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    model = _fit_column_pipeline()
    _, _, xt, _ = _column_data()
    types = [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1])),
             ("c", StringTensorType([None, 1])), ("d", StringTensorType([None, 1]))]
    onx = _skl_convert(model, None, zipmap, initial_types=types)
    inputs = {"a": xt[:, 0:1].astype(np.float32), "b": xt[:, 1:2].astype(np.float32),
              "c": xt[:, 2:3].astype(object), "d": xt[:, 3:4].astype(object)}
    _write(folder, onx, inputs, [model.predict(xt), model.predict_proba(xt).astype(np.float32)],
           _clf_outputs(zipmap))


def _build_dict_vectorizer(folder: pathlib.Path) -> None:
    """DictVectorizer (string keys) + LogisticRegression: a map input, one row per run. (skl2onnx
    emits no CastMap for it: DictVectorizer reads the map directly.)"""
    from skl2onnx.common.data_types import DictionaryType, FloatTensorType, StringTensorType
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    x, y, xt, _ = _classification(2)
    names = [f"f{i}" for i in range(x.shape[1])]

    def rows(a):  # sparse dicts: the positive features only
        return [{names[j]: float(v) for j, v in enumerate(r) if v > 0} for r in a]

    with _quiet():
        model = Pipeline([("dv", DictVectorizer(sparse=False)), ("clf", LogisticRegression(max_iter=500))])
        model.fit(rows(x), y)
    onx = _skl_convert(model, None, None, initial_types=[("X", DictionaryType(StringTensorType([]),
                                                                              FloatTensorType([])))])
    test = rows(xt)
    _write(folder, onx, {}, [model.predict(test), model.predict_proba(test).astype(np.float32)],
           _clf_outputs(True), map_rows={"X": test})


# ---------------------------------------------------------------------------------------------
# LightGBM / XGBoost (onnxmltools)


def _mltools_types(xt):
    from onnxmltools.convert.common.data_types import FloatTensorType

    return [("X", FloatTensorType([None, xt.shape[1]]))]


def _build_lightgbm(kind: str, zipmap: bool, folder: pathlib.Path) -> None:
    import lightgbm
    from onnxmltools import convert_lightgbm

    params = dict(n_estimators=30, num_leaves=15, random_state=0, deterministic=True, n_jobs=1, verbose=-1)
    with _quiet():
        if kind == "reg":  # trained and evaluated with missing values (NaN)
            x, y, xt, _ = _regression(nan_fraction=0.1)
            model = lightgbm.LGBMRegressor(**params).fit(x, y)
            onx = convert_lightgbm(model, initial_types=_mltools_types(xt), target_opset=ONNXMLTOOLS_OPSET)
            _write(folder, onx, {"X": xt}, [model.predict(xt).astype(np.float32).reshape(-1, 1)], _REG)
            return
        x, y, xt, _ = _classification(2 if kind == "binary" else 3)
        model = lightgbm.LGBMClassifier(**params).fit(x, y)
        onx = convert_lightgbm(model, initial_types=_mltools_types(xt), zipmap=zipmap,
                               target_opset=ONNXMLTOOLS_OPSET)
    _write(folder, onx, {"X": xt}, [model.predict(xt), model.predict_proba(xt).astype(np.float32)],
           _clf_outputs(zipmap))


def _build_xgboost(kind: str, folder: pathlib.Path) -> None:
    """convert_xgboost offers no ZipMap: probabilities are a tensor."""
    import xgboost
    from onnxmltools import convert_xgboost

    params = dict(n_estimators=30, max_depth=4, learning_rate=0.3, random_state=0, n_jobs=1,
                  tree_method="hist")
    with _quiet():
        if kind == "reg":  # trained and evaluated with missing values (NaN)
            x, y, xt, _ = _regression(nan_fraction=0.1)
            model = xgboost.XGBRegressor(**params).fit(x, y)
            onx = convert_xgboost(model, initial_types=_mltools_types(xt), target_opset=ONNXMLTOOLS_OPSET)
            _write(folder, onx, {"X": xt}, [model.predict(xt).astype(np.float32).reshape(-1, 1)], _REG)
            return
        x, y, xt, _ = _classification(2 if kind == "binary" else 3)
        model = xgboost.XGBClassifier(**params).fit(x, y)
        onx = convert_xgboost(model, initial_types=_mltools_types(xt), target_opset=ONNXMLTOOLS_OPSET)
    _write(folder, onx, {"X": xt}, [model.predict(xt), model.predict_proba(xt).astype(np.float32)],
           _clf_outputs(False))


# ---------------------------------------------------------------------------------------------
# CastMap (no converter emits one: built by hand)


def _build_castmap(folder: pathlib.Path) -> None:
    """map(int64, float) -> CastMap SPARSE (max_map 6, absent keys 0) -> LinearRegressor, and the same
    map through CastMap DENSE (the values present, in key order). The source library is numpy."""
    import onnx
    from onnx import TensorProto, helper

    coef = np.array([0.5, -1.0, 2.0, 0.25, 1.5, -0.75], np.float32)
    intercept = np.float32(0.1)
    map_type = helper.make_map_type_proto(TensorProto.INT64,
                                          helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    nodes = [
        helper.make_node("CastMap", ["X"], ["features"], "cast_sparse", domain="ai.onnx.ml",
                         cast_to="TO_FLOAT", map_form="SPARSE", max_map=6),
        helper.make_node("LinearRegressor", ["features"], ["variable"], "linear", domain="ai.onnx.ml",
                         coefficients=coef.tolist(), intercepts=[float(intercept)]),
        helper.make_node("CastMap", ["X"], ["dense"], "cast_dense", domain="ai.onnx.ml", cast_to="TO_FLOAT",
                         map_form="DENSE"),
    ]
    graph = helper.make_graph(
        nodes, "castmap_linear", [helper.make_value_info("X", map_type)],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 6]),
         helper.make_tensor_value_info("variable", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("dense", TensorProto.FLOAT, [1, None])])
    onx = helper.make_model(graph, producer_name="onnxfast-ml-zoo",
                            opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    onx.ir_version = 9
    onnx.checker.check_model(onx, full_check=True)

    rng = np.random.default_rng(0)
    rows, feats, dense = [], [], []
    for _ in range(N_TEST):
        keys = sorted(int(k) for k in rng.choice(6, size=int(rng.integers(1, 7)), replace=False))
        vals = rng.normal(size=len(keys)).astype(np.float32)
        rows.append({k: float(v) for k, v in zip(keys, vals)})
        f = np.zeros(6, np.float32)
        f[keys] = vals
        feats.append(f)
        dense.append(vals)
    feats = np.stack(feats)
    variable = (feats.astype(np.float64) @ coef + intercept).astype(np.float32).reshape(-1, 1)
    # DENSE rows have different widths: the expected output is stored padded with NaN
    width = max(len(d) for d in dense)
    dense_pad = np.full((N_TEST, width), np.nan, np.float32)
    for i, d in enumerate(dense):
        dense_pad[i, :len(d)] = d
    _write(folder, onx, {}, [feats, variable, dense_pad],
           [OutputInfo("", "values"), OutputInfo("", "values"), OutputInfo("", "values")],
           map_rows={"X": rows})


# ---------------------------------------------------------------------------------------------


def _zip(kind: str, desc: str, classes: int = 3, family: str = "sklearn") -> dict[str, MLSpec]:
    """A classifier with skl2onnx's default ZipMap output and with options={'zipmap': False}."""
    return {
        kind: MLSpec(functools.partial(_build_classifier, kind, True, classes=classes), family,
                     desc + ", ZipMap"),
        f"{kind}_nozipmap": MLSpec(functools.partial(_build_classifier, kind, False, classes=classes), family,
                                   desc + ", probabilities tensor"),
    }


ML_ZOO: dict[str, MLSpec] = {
    "column_logreg": MLSpec(functools.partial(_build_column_pipeline, True), "sklearn",
                            "ColumnTransformer(StandardScaler, OneHotEncoder) + LogisticRegression, string "
                            "labels, four inputs (2 float, 2 string), ZipMap"),
    "column_logreg_nozipmap": MLSpec(functools.partial(_build_column_pipeline, False), "sklearn",
                                     "the same pipeline, probabilities tensor"),
    **_zip("random_forest", "RandomForestClassifier, 3 classes"),
    "extra_trees_reg": MLSpec(functools.partial(_build_regressor, "extra_trees_reg"), "sklearn",
                              "ExtraTreesRegressor"),
    **_zip("gb_binary", "GradientBoostingClassifier, 2 classes", classes=2),
    **_zip("gb_multi", "GradientBoostingClassifier, 3 classes"),
    "hgb_reg_nan": MLSpec(functools.partial(_build_regressor, "hgb_reg_nan", nan_fraction=0.15), "sklearn",
                          "HistGradientBoostingRegressor trained and evaluated with NaN (15% of values)"),
    **_zip("hgb_clf", "HistGradientBoostingClassifier, 3 classes"),
    "isolation_forest": MLSpec(_build_isolation_forest, "sklearn",
                               "IsolationForest: label -1/1, decision scores"),
    **_zip("svc_proba", "SVC(probability=True), rbf, 3 classes"),
    "svc_scores": MLSpec(functools.partial(_build_svc_scores, "svc_scores", 3), "sklearn",
                         "SVC(probability=False), rbf, 3 classes: labels and decision values"),
    "svc_scores_binary": MLSpec(functools.partial(_build_svc_scores, "svc_scores_binary", 2), "sklearn",
                                "SVC(probability=False), poly kernel, 2 classes: labels and decision values"),
    "linear_svr": MLSpec(functools.partial(_build_regressor, "linear_svr"), "sklearn", "LinearSVR"),
    **_zip("knn", "KNeighborsClassifier(5), 3 classes"),
    **_zip("mlp", "MLPClassifier(32, 16), 3 classes"),
    **_zip("decision_tree", "DecisionTreeClassifier, 3 classes"),
    "decision_tree_reg": MLSpec(functools.partial(_build_regressor, "decision_tree_reg"), "sklearn",
                                "DecisionTreeRegressor"),
    "dict_vectorizer_logreg": MLSpec(_build_dict_vectorizer, "sklearn",
                                     "DictVectorizer(string keys) + LogisticRegression, map input, ZipMap"),
    "lgbm_binary": MLSpec(functools.partial(_build_lightgbm, "binary", True), "lightgbm",
                          "LGBMClassifier, 2 classes, ZipMap"),
    "lgbm_binary_nozipmap": MLSpec(functools.partial(_build_lightgbm, "binary", False), "lightgbm",
                                   "LGBMClassifier, 2 classes, probabilities tensor"),
    "lgbm_multi": MLSpec(functools.partial(_build_lightgbm, "multi", True), "lightgbm",
                         "LGBMClassifier, 3 classes, ZipMap"),
    "lgbm_multi_nozipmap": MLSpec(functools.partial(_build_lightgbm, "multi", False), "lightgbm",
                                  "LGBMClassifier, 3 classes, probabilities tensor"),
    "lgbm_reg": MLSpec(functools.partial(_build_lightgbm, "reg", False), "lightgbm",
                       "LGBMRegressor trained and evaluated with NaN (10% of values)"),
    "xgb_binary": MLSpec(functools.partial(_build_xgboost, "binary"), "xgboost", "XGBClassifier, 2 classes"),
    "xgb_multi": MLSpec(functools.partial(_build_xgboost, "multi"), "xgboost", "XGBClassifier, 3 classes"),
    "xgb_reg": MLSpec(functools.partial(_build_xgboost, "reg"), "xgboost",
                      "XGBRegressor trained and evaluated with NaN (10% of values)"),
    "castmap_linear": MLSpec(_build_castmap, "onnx", "hand-built CastMap (SPARSE, DENSE) + LinearRegressor"),
}

# ---------------------------------------------------------------------------------------------
# Benchmark-size models (benchmarks/test_ml.py): 20 features, 10,000 input rows; the sizes the issue
# names (a random forest of 100 trees of depth 10, LightGBM with 500 trees) and the linear / SVM peers.

N_BENCH = 10000


@functools.cache
def _bench_data(classes: int):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=4000 + N_BENCH, n_features=20, n_informative=10, n_classes=classes,
                               random_state=7)
    x = x.astype(np.float32)
    return x[:4000], y[:4000], x[4000:]


def _build_bench(kind: str, folder: pathlib.Path) -> None:
    from skl2onnx import to_onnx

    x, y, xt = _bench_data(2 if kind in ("lgbm", "xgb") else 3)
    with _quiet():
        if kind == "rf":
            from sklearn.ensemble import RandomForestClassifier

            model = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0, n_jobs=1).fit(x, y)
        elif kind == "logreg":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
        elif kind == "svc":
            from sklearn.svm import SVC

            model = SVC(probability=True, random_state=0).fit(x[:1500], y[:1500])
        elif kind == "linear_svr":
            from sklearn.svm import LinearSVR

            model = LinearSVR(random_state=0, max_iter=5000).fit(x, y.astype(np.float32))
        elif kind == "lgbm":
            import lightgbm
            from onnxmltools import convert_lightgbm

            model = lightgbm.LGBMClassifier(n_estimators=500, num_leaves=31, random_state=0, deterministic=True,
                                            n_jobs=1, verbose=-1).fit(x, y)
            onx = convert_lightgbm(model, initial_types=_mltools_types(xt), zipmap=False,
                                   target_opset=ONNXMLTOOLS_OPSET)
        elif kind == "xgb":
            import xgboost
            from onnxmltools import convert_xgboost

            model = xgboost.XGBClassifier(n_estimators=300, max_depth=6, random_state=0, n_jobs=1,
                                          tree_method="hist").fit(x, y)
            onx = convert_xgboost(model, initial_types=_mltools_types(xt), target_opset=ONNXMLTOOLS_OPSET)
        if kind not in ("lgbm", "xgb"):
            opts = {"zipmap": False} if kind != "linear_svr" else None
            onx = to_onnx(model, xt[:1], target_opset=SKL_OPSET, options=opts)
    if kind == "linear_svr":
        _write(folder, onx, {"X": xt}, [model.predict(xt).astype(np.float32).reshape(-1, 1)], _REG)
    else:
        _write(folder, onx, {"X": xt}, [model.predict(xt), model.predict_proba(xt).astype(np.float32)],
               _clf_outputs(False))


BENCH_ZOO: dict[str, MLSpec] = {
    "random_forest_100x10": MLSpec(functools.partial(_build_bench, "rf"), "sklearn",
                                   "RandomForestClassifier, 100 trees of depth 10, 3 classes"),
    "lightgbm_500": MLSpec(functools.partial(_build_bench, "lgbm"), "lightgbm", "LGBMClassifier, 500 trees"),
    "xgboost_300": MLSpec(functools.partial(_build_bench, "xgb"), "xgboost",
                          "XGBClassifier, 300 trees of depth 6"),
    "scaler_logreg": MLSpec(functools.partial(_build_bench, "logreg"), "sklearn",
                            "StandardScaler + LogisticRegression, 3 classes"),
    "svc_rbf": MLSpec(functools.partial(_build_bench, "svc"), "sklearn", "SVC (RBF, probabilities), 3 classes"),
    "linear_svr_20": MLSpec(functools.partial(_build_bench, "linear_svr"), "sklearn", "LinearSVR, 20 features"),
}


# the Python packages each family needs to build its models
FAMILY_MODULES = {
    "sklearn": ["sklearn", "skl2onnx"],
    "lightgbm": ["sklearn", "lightgbm", "onnxmltools"],
    "xgboost": ["sklearn", "xgboost", "onnxmltools"],
    "onnx": [],
}


def ml_cache_root() -> pathlib.Path:
    p = cache_root() / f"ml_v{ML_ZOO_VERSION}"
    p.mkdir(parents=True, exist_ok=True)
    return p


def get(name: str) -> MLCached:
    """Build (once) and load an ML zoo model (ML_ZOO, or BENCH_ZOO's benchmark-size ones)."""
    spec = ML_ZOO[name] if name in ML_ZOO else BENCH_ZOO[name]
    folder = build_once(ml_cache_root() / name, spec.build)
    meta = json.loads((folder / "meta.json").read_text())
    stored = np.load(folder / "inputs.npz")
    inputs = {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in stored.items()}
    exp = np.load(folder / "expected.npz")
    expected = [exp[f"arr_{i}"] for i in range(len(exp.files))]
    outputs = [OutputInfo(**o) for o in meta["outputs"]]
    map_rows = {k: [{key: val for key, val in row} for row in rows] for k, rows in meta["map_rows"].items()}
    return MLCached(name, folder / "model.onnx", inputs, expected, outputs, spec.family, map_rows)


def main(argv=None) -> int:
    return build_cli(argv, "Build the traditional-ML model zoo into the cache folder.",
                     list(ML_ZOO) + list(BENCH_ZOO), get)


if __name__ == "__main__":
    sys.exit(main())
