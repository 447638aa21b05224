"""ai.onnx.ml SVMClassifier, SVMRegressor, FeatureVectorizer, DictVectorizer and CastMap
(onnxfast/ops/ml_svm.py, onnxfast/ops/ml_maps.py) against onnxruntime 1.32, and the dicts a session
accepts for map inputs (onnxfast/session.py).

Models are built with onnx.helper and run in both runtimes: labels and integer / string outputs must
be equal, scores within rtol 1e-5, atol 1e-6 (element types and shapes equal). Conversions of
scikit-learn models (skl2onnx) are compared with onnxruntime the same way, and with scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper
from onnx_helpers import assert_svm_regression_matches_sklearn

import onnxfast
from onnxfast import errors

ort = pytest.importorskip("onnxruntime")

ML_OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
RTOL, ATOL = 1e-5, 1e-6


# ----------------------------------------------------------------------------------------------
# helpers


def _ort(model: onnx.ModelProto):
    so = ort.SessionOptions()
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _fast(model: onnx.ModelProto):
    return onnxfast.InferenceSession(model.SerializeToString())


def _same(ref, got, where="output", cols=None):
    """``got`` (onnxfast) is ``ref`` (onnxruntime): same Python objects, same types and shapes, labels and
    strings equal, floats within RTOL / ATOL. ``cols``: compare only these columns of a 2-D float output."""
    if isinstance(ref, list):
        assert isinstance(got, list) and len(got) == len(ref), where
        for i, (r, g) in enumerate(zip(ref, got)):
            _same(r, g, f"{where}[{i}]")
        return
    if isinstance(ref, dict):
        assert isinstance(got, dict), where
        assert list(got) == list(ref), f"{where}: keys {list(got)} != {list(ref)}"
        assert [type(k) for k in got] == [type(k) for k in ref], where
        for k in ref:
            assert type(got[k]) is type(ref[k]), f"{where}[{k!r}]: {type(got[k])} != {type(ref[k])}"
            np.testing.assert_allclose(got[k], ref[k], rtol=RTOL, atol=ATOL, err_msg=f"{where}[{k!r}]")
        return
    assert isinstance(got, np.ndarray), f"{where}: {type(got).__name__}"
    assert got.dtype == ref.dtype, f"{where}: dtype {got.dtype} != {ref.dtype}"
    assert got.shape == ref.shape, f"{where}: shape {got.shape} != {ref.shape}"
    if ref.dtype == object:
        assert [type(v) for v in got.ravel()] == [type(v) for v in ref.ravel()], where
        assert got.tolist() == ref.tolist(), where
    elif ref.dtype.kind in "biu":
        np.testing.assert_array_equal(got, ref, err_msg=where)
    else:
        if cols is not None:
            ref, got = ref[:, cols], got[:, cols]
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=where)


def _compare(model, feed, cols=None):
    """Run both runtimes on ``feed``; returns onnxfast's outputs."""
    ref = _ort(model).run(None, feed)
    got = _fast(model).run(None, feed)
    assert len(got) == len(ref)
    for i, (r, g) in enumerate(zip(ref, got)):
        _same(r, g, f"output {i}", cols=cols if i == 1 else None)
    return got


def _both_refuse(model, feed, cls=(errors.InvalidArgument, errors.InvalidType)):
    with pytest.raises(Exception):
        _ort(model).run(None, feed)
    with pytest.raises(cls):
        _fast(model).run(None, feed)


def _model(op, inputs, outputs, **attrs):
    node = helper.make_node(op, [vi.name for vi in inputs], [vi.name for vi in outputs], domain="ai.onnx.ml", **attrs)
    return helper.make_model(helper.make_graph([node], "g", inputs, outputs), opset_imports=ML_OPSET)


def svc_model(in_type=TP.FLOAT, shape=None, **attrs):
    label_type = TP.STRING if attrs.get("classlabels_strings") else TP.INT64
    return _model("SVMClassifier", [helper.make_tensor_value_info("X", in_type, shape)],
                  [helper.make_tensor_value_info("Y", label_type, None), helper.make_tensor_value_info("Z", TP.FLOAT, None)],
                  **attrs)


def svr_model(in_type=TP.FLOAT, shape=None, **attrs):
    return _model("SVMRegressor", [helper.make_tensor_value_info("X", in_type, shape)],
                  [helper.make_tensor_value_info("Y", TP.FLOAT, None)], **attrs)


def map_type(key, value):
    return helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, None))


def map_model(op, key, value, out_type, **attrs):
    return _model(op, [helper.make_value_info("X", map_type(key, value))],
                  [helper.make_tensor_value_info("Y", out_type, None)], **attrs)


def _svc_attrs(rng, k, n_features, kernel="RBF", proba=False, strings=False, params=(0.4, 0.3, 3.0), post="NONE",
               vectors=None):
    vpc = list(vectors or rng.integers(1, 4, k).tolist())
    n_vec = sum(vpc)
    pairs = k * (k - 1) // 2
    a = dict(kernel_type=kernel, kernel_params=list(params), post_transform=post, vectors_per_class=vpc,
             support_vectors=rng.standard_normal(n_vec * n_features).round(3).tolist(),
             coefficients=rng.standard_normal((k - 1) * n_vec).round(3).tolist(),
             rho=rng.standard_normal(pairs).round(3).tolist())
    if strings:
        a["classlabels_strings"] = [f"class_{i}" for i in range(k)]
    else:
        a["classlabels_ints"] = [int(v) for v in rng.choice(50, k, replace=False)]
    if proba:
        a["prob_a"] = rng.uniform(-3.0, -0.3, pairs).tolist()
        a["prob_b"] = rng.uniform(-0.4, 0.4, pairs).tolist()
    return a


KERNELS = ["LINEAR", "POLY", "RBF", "SIGMOID"]
POSTS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]


# ----------------------------------------------------------------------------------------------
# SVMClassifier


@pytest.mark.parametrize("strings", [False, True], ids=["int_labels", "string_labels"])
@pytest.mark.parametrize("proba", [False, True], ids=["votes", "proba"])
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kernel", KERNELS)
def test_svm_classifier_kernels(kernel, k, proba, strings):
    rng = np.random.default_rng(hash((kernel, k, proba, strings)) % 2**32)
    m = svc_model(**_svc_attrs(rng, k, 4, kernel, proba, strings))
    x = rng.standard_normal((25, 4)).astype(np.float32)
    y, z = _compare(m, {"X": x})
    # columns: the class probabilities, else one decision value per pair of classes (two for two classes)
    assert y.shape == (25,) and z.shape == (25, k if proba else (k * (k - 1) // 2 if k > 2 else 2))


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("case", ["binary", "binary_proba", "multi", "multi_proba"])
def test_svm_classifier_post_transforms(case, post):
    rng = np.random.default_rng(7)
    k = 2 if case.startswith("binary") else 4
    m = svc_model(**_svc_attrs(rng, k, 3, "RBF", proba=case.endswith("proba"), post=post))
    x = (rng.standard_normal((40, 3)) * 1.5).astype(np.float32)
    if case == "binary" and post == "PROBIT":
        # onnxruntime writes probit(d) in column 0 and leaves column 1 as allocated (uninitialized)
        y, z = _compare(m, {"X": x}, cols=[0])
        np.testing.assert_array_equal(z[:, 1], 0)
    else:
        _compare(m, {"X": x})


def test_svm_classifier_binary_conventions():
    """Two classes, no probabilities: scores [-d, d] (NONE), [1 - sigmoid(d), sigmoid(d)] (LOGISTIC),
    [1 - d, d] (SOFTMAX, SOFTMAX_ZERO: the raw decision value); the label is the first class when d > 0."""
    rng = np.random.default_rng(3)
    attrs = _svc_attrs(rng, 2, 3, "RBF")
    x = rng.standard_normal((30, 3)).astype(np.float32)
    y, z = _compare(svc_model(**attrs), {"X": x})
    d = z[:, 1]
    np.testing.assert_array_equal(z[:, 0], -d)
    labels = np.asarray(attrs["classlabels_ints"])
    np.testing.assert_array_equal(y, np.where(d > 0, labels[0], labels[1]))
    for post, first in (("SOFTMAX", 1 - d), ("SOFTMAX_ZERO", 1 - d), ("LOGISTIC", 1 / (1 + np.exp(d)))):
        _, zp = _compare(svc_model(**dict(attrs, post_transform=post)), {"X": x})
        np.testing.assert_allclose(zp[:, 0], first, rtol=1e-5, atol=1e-6)


def test_svm_classifier_proba_label_from_votes():
    """With probabilities the label is still the one-vs-one vote winner (as in onnxruntime and libsvm),
    which is not always the most probable class."""
    rng = np.random.default_rng(3)
    attrs = _svc_attrs(rng, 3, 2, "RBF", proba=True)
    x = (rng.standard_normal((100, 2)) * 2).astype(np.float32)
    y, z = _compare(svc_model(**attrs), {"X": x})
    labels = np.asarray(attrs["classlabels_ints"])
    assert len(set(y.tolist())) == 3
    assert (labels[np.argmax(z, axis=1)] != y).sum() > 10
    np.testing.assert_allclose(z.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("degree", [1.0, 2.0, 3.0, 4.0, 5.0, 2.5])
def test_svm_classifier_poly_degrees(degree):
    rng = np.random.default_rng(int(degree * 10))
    m = svc_model(**_svc_attrs(rng, 3, 3, "POLY", params=(0.5, -0.2, degree)))
    _compare(m, {"X": rng.standard_normal((30, 3)).astype(np.float32)})


def test_svm_classifier_nan_decisions():
    """A non-integer degree of a negative base gives NaN decision values: a NaN never wins a vote, and its
    pairwise probabilities stop the coupling at once (uniform probabilities), as in onnxruntime."""
    rng = np.random.default_rng(5)
    for proba, post in ((False, "NONE"), (True, "NONE"), (False, "SOFTMAX_ZERO"), (True, "LOGISTIC")):
        m = svc_model(**_svc_attrs(rng, 3, 3, "POLY", proba=proba, params=(0.5, -1.0, 2.5), post=post))
        _compare(m, {"X": rng.standard_normal((30, 3)).astype(np.float32)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_svm_classifier_input_types(dtype):
    rng = np.random.default_rng(2)
    code = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.int32: TP.INT32, np.int64: TP.INT64}[dtype]
    m = svc_model(in_type=code, **_svc_attrs(rng, 3, 3, "RBF", proba=True))
    x = (rng.standard_normal((12, 3)) * 3).astype(dtype)
    _compare(m, {"X": x})


def test_svm_classifier_shapes():
    rng = np.random.default_rng(4)
    m = svc_model(**_svc_attrs(rng, 3, 3, "RBF", proba=True))
    y, z = _compare(m, {"X": rng.standard_normal(3).astype(np.float32)})  # 1-D: one row
    assert y.shape == (1,) and z.shape == (1, 3)
    y, z = _compare(m, {"X": np.zeros((0, 3), np.float32)})
    assert y.shape == (0,) and z.shape == (0, 3)
    sess = _fast(m)
    for bad in (np.zeros((2, 4), np.float32), np.zeros((2, 3, 1), np.float32), np.zeros(5, np.float32)):
        with pytest.raises(errors.InvalidArgument):
            sess.run(None, {"X": bad})
        with pytest.raises(Exception):
            _ort(m).run(None, {"X": bad})


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("case", ["binary_mixed", "binary_positive", "binary_proba", "multi"])
def test_svm_classifier_linear_layout(case, post):
    """No support vectors (liblinear): scores X.W + rho[0] per class; two classes pick the second label
    when the best score is > 0 (mixed-sign coefficients) or >= 0.5 (all coefficients >= 0)."""
    rng = np.random.default_rng(9)
    k = 3 if case == "multi" else 2
    coef = rng.standard_normal(k * 4)
    if case == "binary_positive":
        coef = np.abs(coef) * 0.3
    attrs = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], coefficients=coef.round(3).tolist(), rho=[0.2],
                 classlabels_ints=[3, 8, 5][:k], post_transform=post)
    if case == "binary_proba":
        attrs.update(prob_a=[-1.0], prob_b=[0.1])
    x = rng.standard_normal((60, 4)).astype(np.float32)
    _compare(svc_model(**attrs), {"X": x})


def test_svm_classifier_single_class():
    """One class label (and its support vectors): no pair to decide, every row gets the label.
    onnxruntime leaves the two score columns uninitialized; onnxfast writes zeros."""
    rng = np.random.default_rng(6)
    m = svc_model(**dict(_svc_attrs(rng, 1, 3, "RBF", vectors=[2]), coefficients=[0.5, -0.5], rho=[0.1]))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y_ref, z_ref = _ort(m).run(None, {"X": x})
    y, z = _fast(m).run(None, {"X": x})
    _same(y_ref, y, "labels")
    assert z.shape == z_ref.shape == (5, 2) and z.dtype == np.float32
    np.testing.assert_array_equal(z, 0)


def test_svm_classifier_string_labels_preferred():
    """Both label attributes: the strings are used (onnxruntime reads classlabels_strings first)."""
    rng = np.random.default_rng(8)
    attrs = _svc_attrs(rng, 3, 2, "LINEAR", strings=True)
    attrs["classlabels_ints"] = [1, 2, 3]
    y, _ = _compare(svc_model(**attrs), {"X": rng.standard_normal((10, 2)).astype(np.float32)})
    assert set(y.tolist()) <= set(attrs["classlabels_strings"])


def test_svm_classifier_large_batch():
    """More rows than onnxruntime's parallel threshold (512), and wide inputs."""
    rng = np.random.default_rng(10)
    m = svc_model(**_svc_attrs(rng, 4, 30, "SIGMOID", proba=True, params=(0.05, 0.1, 3.0), post="SOFTMAX"))
    _compare(m, {"X": rng.standard_normal((700, 30)).astype(np.float32)})


@pytest.mark.parametrize("level", [0, 1, 99])
def test_svm_classifier_followed_by_casts(level):
    """skl2onnx's SVC graphs: SVMClassifier -> Cast(scores), then a Cast of the labels to their own type
    into a graph output. Removing that Cast must not move the classifier after the first Cast (the
    optimizer refused such models: "node 'Cast' reads 'scores' before the new nodes define it")."""
    rng = np.random.default_rng(15)
    attrs = _svc_attrs(rng, 3, 3, "RBF")
    nodes = [helper.make_node("SVMClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", **attrs),
             helper.make_node("Cast", ["scores"], ["scores32"], to=TP.FLOAT),
             helper.make_node("Cast", ["label"], ["out_label"], to=TP.INT64),
             helper.make_node("Neg", ["scores32"], ["out_scores"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TP.FLOAT, [None, 3])],
                          [helper.make_tensor_value_info("out_label", TP.INT64, [None]),
                           helper.make_tensor_value_info("out_scores", TP.FLOAT, [None, 3])])
    m = helper.make_model(g, opset_imports=ML_OPSET)
    so = onnxfast.SessionOptions()
    so.graph_optimization_level = onnxfast.GraphOptimizationLevel(level)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    got = onnxfast.InferenceSession(m.SerializeToString(), so).run(None, {"X": x})
    for i, (r, g_) in enumerate(zip(_ort(m).run(None, {"X": x}), got)):
        _same(r, g_, f"output {i}")


# ----------------------------------------------------------------------------------------------
# SVMRegressor


def _svr_attrs(rng, n_features, n_supports, kernel="RBF", params=(0.4, 0.3, 3.0), **extra):
    a = dict(kernel_type=kernel, kernel_params=list(params), n_supports=n_supports, rho=[float(rng.standard_normal())],
             coefficients=rng.standard_normal(max(n_supports, 1) if n_supports else n_features).round(3).tolist())
    if n_supports:
        a["support_vectors"] = rng.standard_normal(n_supports * n_features).round(3).tolist()
    a.update(extra)
    return a


@pytest.mark.parametrize("one_class", [0, 1])
@pytest.mark.parametrize("kernel", KERNELS)
def test_svm_regressor_kernels(kernel, one_class):
    rng = np.random.default_rng(len(kernel) + one_class)
    m = svr_model(**_svr_attrs(rng, 5, 7, kernel, one_class=one_class))
    (y,) = _compare(m, {"X": rng.standard_normal((20, 5)).astype(np.float32)})
    assert y.shape == (20, 1)
    if one_class:
        assert set(np.unique(y).tolist()) <= {-1.0, 1.0}


def test_svm_regressor_linear_layout_and_post_transform():
    """n_supports 0: one coefficient per feature and the LINEAR kernel whatever kernel_type says;
    post_transform is checked but not applied (onnxruntime ignores it)."""
    rng = np.random.default_rng(12)
    attrs = _svr_attrs(rng, 4, 0, "POLY")
    x = rng.standard_normal((15, 4)).astype(np.float32)
    (y,) = _compare(svr_model(**attrs), {"X": x})
    np.testing.assert_allclose(y[:, 0], x @ np.float32(attrs["coefficients"]) + attrs["rho"][0], rtol=1e-5, atol=1e-6)
    for post in ("LOGISTIC", "SOFTMAX", "PROBIT"):
        (yp,) = _compare(svr_model(**dict(attrs, post_transform=post)), {"X": x})
        np.testing.assert_array_equal(yp, y)


def test_svm_regressor_shapes_and_types():
    rng = np.random.default_rng(13)
    attrs = _svr_attrs(rng, 3, 4, "RBF")
    m = svr_model(**attrs)
    (y,) = _compare(m, {"X": rng.standard_normal(3).astype(np.float32)})
    assert y.shape == (1, 1)
    (y,) = _compare(m, {"X": np.zeros((0, 3), np.float32)})
    assert y.shape == (0, 1)
    with pytest.raises(errors.InvalidArgument):
        _fast(m).run(None, {"X": np.zeros((2, 4), np.float32)})
    # onnxruntime implements SVMRegressor for float only
    md = svr_model(in_type=TP.DOUBLE, **attrs)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        _ort(md)
    with pytest.raises(errors.UnsupportedOperator):
        _fast(md)


# ----------------------------------------------------------------------------------------------
# invalid models: onnxruntime refuses them when the session is created, onnxfast too (never a crash)

_SVC_OK = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], vectors_per_class=[2, 2, 1],
               support_vectors=[0.1 * i for i in range(15)], coefficients=[0.3, -0.2, 0.5, 0.1, -0.4] * 2,
               rho=[0.1, 0.2, 0.3], classlabels_ints=[4, 7, 9])

INVALID_SVC = {
    "prob_a_prob_b_lengths": dict(prob_a=[1.0, 2.0, 3.0], prob_b=[1.0]),
    "prob_a_too_short": dict(prob_a=[1.0], prob_b=[1.0]),
    "no_labels": dict(classlabels_ints=None),
    "coefficients_too_short": dict(coefficients=[0.1] * 9),
    "coefficients_missing": dict(coefficients=None),
    "rho_too_short": dict(rho=[0.1, 0.2]),
    "rho_missing": dict(rho=None),
    "vectors_per_class_length": dict(vectors_per_class=[2, 3]),
    "vectors_per_class_negative": dict(vectors_per_class=[3, -1, 3]),
    "support_vectors_not_a_multiple": dict(support_vectors=[0.1] * 14),
    "kernel_params_length": dict(kernel_params=[0.5]),
    "kernel_params_missing": dict(kernel_params=None),
    "kernel_type_unknown": dict(kernel_type="CUBIC"),
    "post_transform_unknown": dict(post_transform="SIGMOID"),
    "linear_layout_rho_missing": dict(vectors_per_class=None, support_vectors=None, rho=None),
}

_SVR_OK = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], n_supports=5, support_vectors=[0.1] * 15,
               coefficients=[0.2] * 5, rho=[0.1])

INVALID_SVR = {
    "coefficients_too_short": dict(coefficients=[0.1] * 4),
    "coefficients_missing": dict(coefficients=None),
    "rho_missing": dict(rho=None),
    "support_vectors_not_a_multiple": dict(support_vectors=[0.1] * 14),
    "kernel_params_missing": dict(kernel_params=None),
    "kernel_params_length": dict(kernel_params=[0.5, 0.1]),
    "kernel_type_unknown": dict(kernel_type="CUBIC"),
    "post_transform_unknown": dict(post_transform="FOO"),
}


def _with(base, change):
    a = dict(base)
    a.update(change)
    return {k: v for k, v in a.items() if v is not None}


@pytest.mark.parametrize("name", list(INVALID_SVC))
def test_svm_classifier_invalid_models(name):
    m = svc_model(**_with(_SVC_OK, INVALID_SVC[name]))
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match="SVMClassifier"):
        _fast(m)


@pytest.mark.parametrize("name", list(INVALID_SVR))
def test_svm_regressor_invalid_models(name):
    m = svr_model(**_with(_SVR_OK, INVALID_SVR[name]))
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match="SVMRegressor"):
        _fast(m)


@pytest.mark.parametrize("op", ["SVMClassifier", "SVMRegressor"])
def test_svm_input_types_outside_the_schema(op):
    build = svc_model if op == "SVMClassifier" else svr_model
    m = build(in_type=TP.BOOL, **(_SVC_OK if op == "SVMClassifier" else _SVR_OK))
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match=op):
        _fast(m)


def test_svm_valid_edge_attributes():
    """Longer rho / coefficients than needed are accepted (the extra values are not read)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    _compare(svc_model(**_with(_SVC_OK, dict(rho=[0.1, 0.2, 0.3, 9.0], coefficients=[0.3] * 11))), {"X": x})
    _compare(svr_model(**_with(_SVR_OK, dict(rho=[0.1, 7.0], coefficients=[0.2] * 6))), {"X": x})


# ----------------------------------------------------------------------------------------------
# FeatureVectorizer


def fv_model(types, dims):
    ins = [helper.make_tensor_value_info(f"X{i}", t, None) for i, t in enumerate(types)]
    kw = {} if dims is None else dict(inputdimensions=dims)
    return _model("FeatureVectorizer", ins, [helper.make_tensor_value_info("Y", TP.FLOAT, None)], **kw)


FV_TYPES = {np.int32: TP.INT32, np.int64: TP.INT64, np.float32: TP.FLOAT, np.float64: TP.DOUBLE}


@pytest.mark.parametrize("dtype", list(FV_TYPES))
def test_feature_vectorizer(dtype):
    rng = np.random.default_rng(1)
    xs = [(rng.standard_normal((4, w)) * 100).astype(dtype) for w in (3, 1, 5, 2)]
    feed = {f"X{i}": x for i, x in enumerate(xs)}
    code = FV_TYPES[dtype]
    m = fv_model([code] * 4, [3, 1, 5, 2])
    assert [r["kernel"] for r in _fast(m).kernel_listing()] == ["native"]
    (y,) = _compare(m, feed)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=1).astype(np.float32))
    # widths larger than the inputs pad with zeros, smaller ones drop the extra columns
    (y,) = _compare(fv_model([code] * 4, [5, 2, 2, 0]), feed)
    assert y.shape == (4, 9)
    np.testing.assert_array_equal(y[:, 3:5], 0)


def test_feature_vectorizer_shapes():
    a = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    _compare(fv_model([TP.FLOAT], [6]), {"X0": a})  # rows are flattened
    _compare(fv_model([TP.FLOAT], [4]), {"X0": a})
    _compare(fv_model([TP.FLOAT, TP.FLOAT], [3, 2]),
             {"X0": np.array([1, 2, 3], np.float32), "X1": np.array([4, 5], np.float32)})  # 1-D: one row
    _compare(fv_model([TP.DOUBLE], [2]), {"X0": np.array([[np.nan, 1e300]])})  # float32 cast: nan, inf
    _compare(fv_model([TP.INT64], [1]), {"X0": np.array([[2**40 + 1]], np.int64)})
    (y,) = _compare(fv_model([TP.FLOAT], [3]), {"X0": np.zeros((0, 3), np.float32)})
    assert y.shape == (0, 3)
    two = fv_model([TP.FLOAT, TP.FLOAT], [3, 3])
    _both_refuse(two, {"X0": np.zeros((2, 3), np.float32), "X1": np.zeros((3, 3), np.float32)})  # batch sizes
    _both_refuse(fv_model([TP.FLOAT], [1]), {"X0": np.array(5, np.float32)})  # a scalar


INVALID_FV = {
    "no_inputdimensions": ([TP.FLOAT], None),
    "fewer_dimensions_than_inputs": ([TP.FLOAT, TP.FLOAT], [3]),
    "more_dimensions_than_inputs": ([TP.FLOAT], [3, 1]),
    "negative_dimension": ([TP.FLOAT], [-1]),
    "mixed_input_types": ([TP.FLOAT, TP.INT64], [3, 1]),
    "string_input": ([TP.STRING], [1]),
}


@pytest.mark.parametrize("name", list(INVALID_FV))
def test_feature_vectorizer_invalid_models(name):
    types, dims = INVALID_FV[name]
    m = fv_model(types, dims)
    feed = {f"X{i}": np.zeros((2, 3), {TP.FLOAT: np.float32, TP.INT64: np.int64}.get(t, np.float32))
            for i, t in enumerate(types)}
    if name == "string_input":
        feed = {"X0": np.array([["a"]], dtype=object)}
    with pytest.raises(Exception):  # onnxruntime: at session creation, or at the first run
        _ort(m).run(None, feed)
    with pytest.raises(errors.InvalidModel, match="FeatureVectorizer"):
        _fast(m)


# ----------------------------------------------------------------------------------------------
# DictVectorizer


@pytest.mark.parametrize("feed", [{"a": 1.5, "c": 2}, {"c": -3.25}, {"b": np.float32(0.5), "zz": 7.0},
                                  {"a": True, "b": np.float64(2.5), "c": np.array(3.0)}, {"b": 3.4e39}])
def test_dict_vectorizer_string_keys(feed):
    m = map_model("DictVectorizer", TP.STRING, TP.FLOAT, TP.FLOAT, string_vocabulary=["c", "a", "b", "a"])
    (y,) = _compare(m, {"X": feed})
    assert y.shape == (1, 4) and y.dtype == np.float32


@pytest.mark.parametrize("feed", [{3: 1.5, 2: 2}, {np.int64(1): -1.0}, {np.int32(2): 4.0, -5: 1.0},
                                  {True: 1.0}, {7: 2**40}])
def test_dict_vectorizer_int_keys(feed):
    m = map_model("DictVectorizer", TP.INT64, TP.FLOAT, TP.FLOAT, int64_vocabulary=[3, 1, 2, 7])
    (y,) = _compare(m, {"X": feed})
    assert y.shape == (1, 4)


def test_dict_vectorizer_invalid_models():
    for key, value, vocab in ((TP.STRING, TP.FLOAT, dict(int64_vocabulary=[1])),
                              (TP.INT64, TP.FLOAT, dict(string_vocabulary=["a"])),
                              (TP.INT64, TP.FLOAT, {})):
        m = map_model("DictVectorizer", key, value, value, **vocab)
        with pytest.raises(Exception):
            _ort(m)
        with pytest.raises(errors.InvalidModel, match="DictVectorizer"):
            _fast(m)
    # both vocabularies: the one of the key type is used
    m = map_model("DictVectorizer", TP.INT64, TP.FLOAT, TP.FLOAT, string_vocabulary=["a"], int64_vocabulary=[1, 2])
    _compare(m, {"X": {1: 2.0}})


# ----------------------------------------------------------------------------------------------
# map inputs: exactly the dicts onnxruntime's Python API accepts


MAP_FEEDS = {
    "string": (TP.STRING, TP.FLOAT, dict(string_vocabulary=["a", "b", "2"]),
               {"ok": [{"a": 1.0}, {"a": 1, "b": np.float32(2)}, {np.str_("b"): 1.0},
                       {"a": 1.0, 2: 5.0, b"b": 3.0}],  # later keys become str(key)
                "refused": [{}, {b"a": 1.0}, {1: 1.0}, {"a": "x"}, {"a": None}, {None: 1.0}, [{"a": 1.0}],
                            np.array([1.0], np.float32), "a", 1.0]}),
    "int64": (TP.INT64, TP.FLOAT, dict(int64_vocabulary=[1, 2, 3]),
              {"ok": [{1: 1.0}, {np.int64(2): 1.0, np.uint8(3): 2}, {-1: 1.0}, {True: 4.0}],
               "refused": [{}, {1.0: 1.0}, {"1": 1.0}, {2**70: 1.0}, {1: 1.0, "a": 2.0}, {1: "x"}, {1: b"x"},
                           {1: None}, {1: [1.0]}, np.array([1.0]), [{1: 1.0}]]}),
    # dicts always become map(int64 | string, float): these inputs take none
    "int64_string": (TP.INT64, TP.STRING, dict(int64_vocabulary=[1]),
                     {"ok": [], "refused": [{1: "x"}, {1: 1.0}, {"1": 1.0}]}),
    "string_double": (TP.STRING, TP.DOUBLE, dict(string_vocabulary=["a"]),
                      {"ok": [], "refused": [{"a": 1.0}, {"a": 1}]}),
    "int64_double": (TP.INT64, TP.DOUBLE, dict(int64_vocabulary=[1]), {"ok": [], "refused": [{1: 1.0}]}),
    "string_int64": (TP.STRING, TP.INT64, dict(string_vocabulary=["a"]), {"ok": [], "refused": [{"a": 1}]}),
}


@pytest.mark.parametrize("kind", list(MAP_FEEDS))
def test_map_input_feeds(kind):
    key, value, vocab, feeds = MAP_FEEDS[kind]
    m = map_model("DictVectorizer", key, value, value, **vocab)
    fast = _fast(m)
    ref = _ort(m)
    (arg,) = fast.get_inputs()
    assert (arg.name, arg.type, arg.shape) == (ref.get_inputs()[0].name, ref.get_inputs()[0].type, ref.get_inputs()[0].shape)
    for feed in feeds["ok"]:
        _same(ref.run(None, {"X": feed})[0], fast.run(None, {"X": feed})[0], repr(feed))
    for feed in feeds["refused"]:
        with pytest.raises(Exception):
            ref.run(None, {"X": feed})
        with pytest.raises((errors.InvalidType, errors.InvalidArgument)) as e:
            fast.run(None, {"X": feed})
        assert "'X'" in str(e.value)


def test_map_input_does_not_change_the_callers_dict():
    m = map_model("DictVectorizer", TP.INT64, TP.FLOAT, TP.FLOAT, int64_vocabulary=[1, 2])
    feed = {"X": {2: np.float64(0.1), 1: 3}}
    before = repr(feed)
    _fast(m).run(None, feed)
    assert repr(feed) == before


# ----------------------------------------------------------------------------------------------
# CastMap


CAST_TO = {"TO_FLOAT": TP.FLOAT, "TO_INT64": TP.INT64, "TO_STRING": TP.STRING}


@pytest.mark.parametrize("form", [("DENSE", None), ("DENSE", 2), ("SPARSE", None), ("SPARSE", 4), ("SPARSE", 9)],
                         ids=lambda f: f"{f[0]}-{f[1]}")
@pytest.mark.parametrize("cast_to", list(CAST_TO))
def test_cast_map(cast_to, form):
    map_form, max_map = form
    attrs = dict(cast_to=cast_to, map_form=map_form)
    if max_map is not None:
        attrs["max_map"] = max_map
    m = map_model("CastMap", TP.INT64, TP.FLOAT, CAST_TO[cast_to], **attrs)
    for feed in ({5: 1.5, 0: -2.7, 2: 3.25, 1: 1e10}, {3: 0.1}, {7: -0.0, 8: 123456789.0, 0: 1e-7}):
        (y,) = _compare(m, {"X": feed})
        assert y.shape[0] == 1


def test_cast_map_special_values():
    feed = {0: float("nan"), 1: float("inf"), 2: -float("inf"), 3: 1e30, 4: -3.9, 5: 2.5}
    for cast_to, want in (("TO_INT64", [np.iinfo(np.int64).min] * 4 + [-3, 2]),
                          ("TO_STRING", ["nan", "inf", "-inf", "1000000015047466219876688855040.000000",
                                         "-3.900000", "2.500000"])):
        m = map_model("CastMap", TP.INT64, TP.FLOAT, CAST_TO[cast_to], cast_to=cast_to)
        (y,) = _compare(m, {"X": feed})
        assert y.ravel().tolist() == want
    m = map_model("CastMap", TP.INT64, TP.FLOAT, TP.STRING, cast_to="TO_STRING", map_form="SPARSE", max_map=3)
    (y,) = _compare(m, {"X": {1: 2.0}})
    assert y.tolist() == [["0.f", "2.000000", "0.f"]]  # onnxruntime's padding string


def test_cast_map_negative_keys():
    dense = map_model("CastMap", TP.INT64, TP.FLOAT, TP.FLOAT, cast_to="TO_FLOAT", map_form="DENSE")
    _compare(dense, {"X": {-1: 1.0, 1: 2.0}})
    sparse = map_model("CastMap", TP.INT64, TP.FLOAT, TP.FLOAT, cast_to="TO_FLOAT", map_form="SPARSE", max_map=3)
    _both_refuse(sparse, {"X": {-1: 1.0, 1: 2.0}})


@pytest.mark.parametrize("attrs", [dict(cast_to="TO_DOUBLE"), dict(map_form="PACKED"),
                                   dict(map_form="SPARSE", max_map=0), dict(map_form="SPARSE", max_map=-2)])
def test_cast_map_invalid_models(attrs):
    m = map_model("CastMap", TP.INT64, TP.FLOAT, TP.FLOAT, **attrs)
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match="CastMap"):
        _fast(m)


def _factory(op, **attrs):
    """The numpy kernel of ``op`` built directly (for map types no Python feed can produce)."""
    from onnxfast.registry import REGISTRY, KernelNode

    defaults = dict(cast_to="TO_FLOAT", map_form="DENSE", max_map=1) if op == "CastMap" else {}
    defaults.update(attrs)
    node = KernelNode(op, "ai.onnx.ml", "n", 1, 1, defaults, [None], [None], num_inputs=1, num_outputs=1)
    return REGISTRY.factory("ai.onnx.ml", op, 1)(node)


def test_cast_map_string_values():
    """map(int64, string) as onnxruntime's kernel casts it (std::stof / std::stoll, leading blanks, trailing
    text ignored); no dict can feed such an input from Python, so the kernel is called directly."""
    m = {2: " 2.5xyz", 0: "-1e3", 5: "7"}
    y = _factory("CastMap", cast_to="TO_FLOAT", map_form="SPARSE", max_map=6)(m)
    np.testing.assert_array_equal(y, np.float32([[-1000.0, 0, 2.5, 0, 0, 7.0]]))
    y = _factory("CastMap", cast_to="TO_INT64")(m)
    np.testing.assert_array_equal(y, [[-1, 2, 7]])
    assert _factory("CastMap", cast_to="TO_STRING", map_form="SPARSE", max_map=3)(m).tolist() == [["-1e3", "0.f", " 2.5xyz"]]
    with pytest.raises(errors.InvalidArgument):
        _factory("CastMap", cast_to="TO_FLOAT")({1: "abc"})
    with pytest.raises(errors.InvalidArgument):
        _factory("CastMap", cast_to="TO_INT64")({1: "99999999999999999999"})


def test_dict_vectorizer_string_values():
    y = _factory("DictVectorizer", int64_vocabulary=[3, 1, 2])({1: "x", 3: "y"})
    assert y.dtype == object and y.tolist() == [["y", "x", ""]]


# ----------------------------------------------------------------------------------------------
# scikit-learn conversions (skl2onnx)


@pytest.fixture(scope="module")
def sk():
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), y[order]


def _convert(model, x):
    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})


def _proba_matrix(zipmap):
    return np.asarray([[row[k] for k in sorted(row)] for row in zipmap])


SVC_CASES = {
    "svc_proba_3": ("SVC", dict(probability=True, random_state=0), 3),
    "svc_proba_2": ("SVC", dict(probability=True, random_state=0), 2),
    "svc_scores_3": ("SVC", dict(), 3),
    "svc_scores_2": ("SVC", dict(), 2),
    "svc_poly_3": ("SVC", dict(kernel="poly", degree=3), 3),
    "svc_sigmoid_3": ("SVC", dict(kernel="sigmoid", gamma=0.01), 3),
    "svc_linear_proba_3": ("SVC", dict(kernel="linear", probability=True, random_state=0), 3),
    "nusvc_3": ("NuSVC", dict(), 3),
    "nusvc_proba_2": ("NuSVC", dict(probability=True, random_state=0), 2),
    "linearsvc_3": ("LinearSVC", dict(max_iter=5000), 3),
    "linearsvc_2": ("LinearSVC", dict(max_iter=5000), 2),
}


@pytest.mark.parametrize("name", list(SVC_CASES))
def test_sklearn_svm_classifiers(sk, name):
    from sklearn import svm

    cls, kw, k = SVC_CASES[name]
    x, y = sk
    if k == 2:
        y = (y == 1).astype(np.int64)
    clf = getattr(svm, cls)(**kw).fit(x, y)
    onx = _convert(clf, x)
    label, scores = _compare(onx, {onx.graph.input[0].name: x})
    # scikit-learn: labels equal except where its decision is a near tie; probabilities close
    pred = clf.predict(x)
    if hasattr(clf, "decision_function"):
        d = clf.decision_function(x)
        margin = np.abs(d) if d.ndim == 1 else np.abs(np.sort(d, axis=1)[:, -1] - np.sort(d, axis=1)[:, -2])
        sure = margin > 1e-3
    else:
        sure = np.ones(len(x), bool)
    if not kw.get("probability"):
        np.testing.assert_array_equal(np.asarray(label)[sure], pred[sure])
    else:  # libsvm's predict with probabilities is the vote winner too
        np.testing.assert_array_equal(np.asarray(label)[sure], pred[sure])
        np.testing.assert_allclose(_proba_matrix(scores), clf.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("name", ["svr_rbf", "svr_poly", "nusvr", "linearsvr", "oneclass"])
def test_sklearn_svm_regressors(sk, name):
    from sklearn import svm

    x, y = sk
    target = x[:, 0] * 2 - x[:, 3]
    model = {"svr_rbf": lambda: svm.SVR().fit(x[:, 1:], target),
             "svr_poly": lambda: svm.SVR(kernel="poly", degree=2).fit(x[:, 1:], target),
             "nusvr": lambda: svm.NuSVR().fit(x[:, 1:], target),
             "linearsvr": lambda: svm.LinearSVR(max_iter=5000, random_state=0).fit(x[:, 1:], target),
             "oneclass": lambda: svm.OneClassSVM(gamma="scale", nu=0.2).fit(x)}[name]()
    xi = x if name == "oneclass" else x[:, 1:]
    onx = _convert(model, xi)
    out = _compare(onx, {onx.graph.input[0].name: xi})
    assert_svm_regression_matches_sklearn(name, model, xi, out)


def test_sklearn_dict_vectorizer(sk):
    pytest.importorskip("sklearn")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DictionaryType, FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.feature_extraction import DictVectorizer

    rows = [{"red": 1.0, "size": 3.5}, {"blue": 2.0}, {"size": -1.0, "green": 0.25, "red": 4.0}, {"weight": 9.0}]
    dv = DictVectorizer(sparse=False).fit(rows)
    onx = to_onnx(dv, initial_types=[("X", DictionaryType(StringTensorType([1]), FloatTensorType([1])))])
    for row in rows + [{"unknown": 5.0, "red": 2.0}]:
        (y,) = _compare(onx, {"X": row})
        np.testing.assert_allclose(y, dv.transform([row]).astype(np.float32))
    rows_i = [{1: 1.0, 5: 2.0}, {3: -1.0}, {5: 0.5, 7: 7.0}]
    dvi = DictVectorizer(sparse=False).fit(rows_i)
    onx = to_onnx(dvi, initial_types=[("X", DictionaryType(Int64TensorType([1]), FloatTensorType([1])))])
    for row in rows_i:
        (y,) = _compare(onx, {"X": row})
        np.testing.assert_allclose(y, dvi.transform([row]).astype(np.float32))
