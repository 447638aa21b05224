"""The native SVM kernels (csrc/kernels/ml_svm.cpp): ai.onnx.ml SVMClassifier and SVMRegressor against
onnxruntime 1.32 and against the numpy kernel (onnxfast/ops/ml_svm.py, the reference).

Random models built with onnx.helper (every kernel type, 1 to 4 classes, with and without prob_a / prob_b,
int64 labels, every post transform, the liblinear layout, regressors with and without one_class), scikit-learn
conversions (skl2onnx: SVC with and without probabilities, rbf / poly / linear / sigmoid, NuSVC, SVR, NuSVR,
LinearSVR, OneClassSVM), 0, 1, 7 and 300 rows, float / double / integer inputs; labels equal onnxruntime's,
scores within rtol / atol 1e-5; 1 and 2 threads bitwise equal; malformed attributes refused by the native
kernel itself at session creation (InvalidModel naming the operator and the attribute)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper
from onnx_helpers import assert_svm_regression_matches_sklearn, native_and_numpy

import onnxfast
from onnxfast import errors

ort = pytest.importorskip("onnxruntime")

ML_OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
TOL = 1e-5
KERNELS = ["LINEAR", "POLY", "RBF", "SIGMOID"]
POSTS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]
SIZES = [0, 1, 7, 300]


# ----------------------------------------------------------------------------------------------
# models and comparisons


def _model(op, in_type=TP.FLOAT, **attrs):
    vi = helper.make_tensor_value_info
    outs = ([vi("Y", TP.INT64, None), vi("Z", TP.FLOAT, None)] if op == "SVMClassifier"
            else [vi("Y", TP.FLOAT, None)])
    node = helper.make_node(op, ["X"], [o.name for o in outs], domain="ai.onnx.ml", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", in_type, None)], outs)
    return helper.make_model(g, opset_imports=ML_OPSET)


def svc_model(in_type=TP.FLOAT, **attrs):
    return _model("SVMClassifier", in_type, **attrs)


def svr_model(**attrs):
    return _model("SVMRegressor", **attrs)


def _svc_attrs(rng, k, n_features, kernel="RBF", proba=False, params=(0.4, 0.3, 3.0), post="NONE",
               vectors=None):
    vpc = list(vectors or rng.integers(1, 5, k).tolist())
    n_vec = sum(vpc)
    pairs = k * (k - 1) // 2
    a = dict(kernel_type=kernel, kernel_params=list(params), post_transform=post, vectors_per_class=vpc,
             support_vectors=rng.standard_normal(n_vec * n_features).round(3).tolist(),
             coefficients=rng.standard_normal(max(k - 1, 1) * n_vec).round(3).tolist(),
             rho=rng.standard_normal(max(pairs, 1)).round(3).tolist(),
             classlabels_ints=[int(v) for v in rng.choice(50, k, replace=False)])
    if proba:
        a["prob_a"] = rng.uniform(-3.0, -0.3, max(pairs, 1)).tolist()
        a["prob_b"] = rng.uniform(-0.4, 0.4, max(pairs, 1)).tolist()
    return a


def _svr_attrs(rng, n_features, n_supports, kernel="RBF", params=(0.4, 0.3, 3.0), **extra):
    a = dict(kernel_type=kernel, kernel_params=list(params), n_supports=n_supports,
             rho=[float(rng.standard_normal())],
             coefficients=rng.standard_normal(n_supports if n_supports else n_features).round(3).tolist())
    if n_supports:
        a["support_vectors"] = rng.standard_normal(n_supports * n_features).round(3).tolist()
    a.update(extra)
    return a


def _ort(model):
    so = ort.SessionOptions()
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _close(got, ref, where, cols=None):
    assert (got.dtype, got.shape) == (ref.dtype, ref.shape), (where, got.dtype, got.shape, ref.shape)
    if ref.dtype.kind in "iu":
        np.testing.assert_array_equal(got, ref, err_msg=where)
        return
    if cols is not None:
        got, ref = got[:, cols], ref[:, cols]
    np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL, equal_nan=True, err_msg=where)


def check(model, x, op=None, cols=None, ort_ref=True):
    """Native vs the numpy kernel, and vs onnxruntime (labels equal, scores within 1e-5); also 2 threads
    bitwise equal to 1. Returns the native outputs."""
    op = op or model.graph.node[0].op_type
    nat, ref = native_and_numpy(model, op)
    feed = {"X": x}
    got = nat.run(None, feed)
    for i, (g, r) in enumerate(zip(got, ref.run(None, feed))):
        _close(g, r, f"output {i} (numpy kernel)", cols if i == 1 else None)
    if ort_ref:
        for i, (g, r) in enumerate(zip(got, _ort(model).run(None, feed))):
            _close(g, r, f"output {i} (onnxruntime)", cols if i == 1 else None)
    if len(x) > 1:
        nat2, _ = native_and_numpy(model, op, threads=2)
        for g, g2 in zip(got, nat2.run(None, feed)):
            np.testing.assert_array_equal(g2, g, err_msg="2 threads")
    return got


def _rows(rng, n, f, scale=1.0, dtype=np.float32):
    return (rng.standard_normal((n, f)) * scale).astype(dtype)


# ----------------------------------------------------------------------------------------------
# SVMClassifier, random models


@pytest.mark.parametrize("proba", [False, True], ids=["votes", "proba"])
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kernel", KERNELS)
def test_classifier_kernels(kernel, k, proba):
    rng = np.random.default_rng(KERNELS.index(kernel) * 100 + k * 10 + proba)
    m = svc_model(**_svc_attrs(rng, k, 5, kernel, proba, params=(0.3, 0.2, 3.0)))
    for n in SIZES:
        y, z = check(m, _rows(rng, n, 5))
        assert y.shape == (n,) and z.shape == (n, k if proba else (k * (k - 1) // 2 if k > 2 else 2))


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("case", ["binary", "binary_proba", "multi", "multi_proba"])
def test_classifier_post_transforms(case, post):
    rng = np.random.default_rng(7)
    k = 2 if case.startswith("binary") else 4
    m = svc_model(**_svc_attrs(rng, k, 3, "RBF", proba=case.endswith("proba"), post=post))
    x = _rows(rng, 60, 3, 1.5)
    # two classes, no probabilities, PROBIT: onnxruntime leaves column 1 uninitialized (onnxfast writes 0)
    cols = [0] if case == "binary" and post == "PROBIT" else None
    y, z = check(m, x, cols=cols)
    if cols:
        np.testing.assert_array_equal(z[:, 1], 0)


@pytest.mark.parametrize("degree", [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 2.5])
def test_classifier_poly_degrees(degree):
    rng = np.random.default_rng(int(degree * 10))
    m = svc_model(**_svc_attrs(rng, 3, 3, "POLY", params=(0.5, 0.7, degree), proba=degree == 3.0))
    check(m, _rows(rng, 40, 3))


def test_classifier_nan_decisions():
    """A non-integer power of a negative base: NaN decision values never win a vote; their pairwise
    probabilities stop the coupling at once (uniform probabilities)."""
    rng = np.random.default_rng(5)
    for proba, post in ((False, "NONE"), (True, "NONE"), (False, "SOFTMAX_ZERO"), (True, "LOGISTIC")):
        m = svc_model(**_svc_attrs(rng, 3, 3, "POLY", proba=proba, params=(0.5, -1.0, 2.5), post=post))
        check(m, _rows(rng, 30, 3))


def test_classifier_nan_inputs():
    rng = np.random.default_rng(6)
    x = _rows(rng, 20, 3)
    x[3, 1] = np.nan
    x[9] = np.nan
    for kernel in KERNELS:
        for proba in (False, True):
            check(svc_model(**_svc_attrs(rng, 3, 3, kernel, proba=proba)), x)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64])
def test_classifier_input_types(dtype):
    rng = np.random.default_rng(2)
    code = {np.float64: TP.DOUBLE, np.int32: TP.INT32, np.int64: TP.INT64}[dtype]
    for kernel in ("RBF", "SIGMOID"):
        m = svc_model(in_type=code, **_svc_attrs(rng, 3, 3, kernel, proba=True, params=(0.1, 0.2, 3.0)))
        for n in (1, 7, 300):
            check(m, _rows(rng, n, 3, 3.0, dtype))


def test_classifier_one_dimensional_input_and_bad_shapes():
    rng = np.random.default_rng(4)
    m = svc_model(**_svc_attrs(rng, 3, 3, "RBF", proba=True))
    nat, _ = native_and_numpy(m, "SVMClassifier")
    x = rng.standard_normal(3).astype(np.float32)
    y, z = nat.run(None, {"X": x})
    assert y.shape == (1,) and z.shape == (1, 3)
    for r, g in zip(_ort(m).run(None, {"X": x}), (y, z)):
        _close(g, r, "1-D input")
    for bad in (np.zeros((2, 4), np.float32), np.zeros((2, 3, 1), np.float32), np.zeros(5, np.float32),
                np.float32(1.0)):
        with pytest.raises(errors.InvalidArgument, match="SVMClassifier"):
            nat.run(None, {"X": bad})


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("case", ["binary_mixed", "binary_positive", "binary_proba", "multi", "single"])
def test_classifier_linear_layout(case, post):
    """No support vectors (liblinear): scores X.W + rho[0]; two classes pick the second label when the best
    score is > 0 (mixed-sign coefficients) or >= 0.5 (all coefficients >= 0)."""
    rng = np.random.default_rng(9)
    k = {"multi": 3, "single": 1}.get(case, 2)
    coef = rng.standard_normal(k * 4)
    if case == "binary_positive":
        coef = np.abs(coef) * 0.3
    attrs = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], coefficients=coef.round(3).tolist(),
                 rho=[0.2], classlabels_ints=[3, 8, 5][:k], post_transform=post)
    if case == "binary_proba":
        attrs.update(prob_a=[-1.0], prob_b=[0.1])
    for n in SIZES:
        check(svc_model(**attrs), _rows(rng, n, 4))


def test_classifier_single_class():
    """One class label and its support vectors: every row gets the label; onnxruntime leaves the two score
    columns uninitialized, onnxfast writes zeros (probabilities: the single class's 1)."""
    rng = np.random.default_rng(6)
    for proba in (False, True):
        attrs = dict(_svc_attrs(rng, 1, 3, "RBF", vectors=[2]), coefficients=[0.5, -0.5], rho=[0.1])
        if proba:
            attrs.update(prob_a=[-1.0], prob_b=[0.2])
        m = svc_model(**attrs)
        nat, ref = native_and_numpy(m, "SVMClassifier")
        x = _rows(rng, 5, 3)
        y, z = nat.run(None, {"X": x})
        y_ref, z_ref = ref.run(None, {"X": x})
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(z, z_ref)
        np.testing.assert_array_equal(y, _ort(m).run(None, {"X": x})[0])
        assert z.shape == ((5, 1) if proba else (5, 2))


def test_classifier_many_classes_and_wide_inputs():
    """7 classes (21 pairs), 40 features, more rows than a block, more support vectors than a register
    tile."""
    rng = np.random.default_rng(10)
    for kernel, proba, post in (("RBF", True, "SOFTMAX"), ("SIGMOID", False, "LOGISTIC"),
                                ("LINEAR", True, "NONE"), ("POLY", False, "NONE")):
        attrs = _svc_attrs(rng, 7, 40, kernel, proba=proba, params=(0.02, 0.1, 2.0), post=post,
                           vectors=rng.integers(3, 12, 7).tolist())
        check(svc_model(**attrs), _rows(rng, 300, 40))


def test_classifier_string_labels_stay_on_numpy():
    rng = np.random.default_rng(8)
    attrs = _svc_attrs(rng, 3, 2, "LINEAR")
    attrs["classlabels_strings"] = ["a", "b", "c"]
    sess = onnxfast.InferenceSession(svc_model(**attrs).SerializeToString())
    assert [r["kernel"] for r in sess.kernel_listing() if r["op_type"] == "SVMClassifier"] == ["numpy"]


# ----------------------------------------------------------------------------------------------
# SVMRegressor, random models


@pytest.mark.parametrize("one_class", [0, 1])
@pytest.mark.parametrize("kernel", KERNELS)
def test_regressor_kernels(kernel, one_class):
    rng = np.random.default_rng(len(kernel) + one_class)
    m = svr_model(**_svr_attrs(rng, 5, 9, kernel, one_class=one_class))
    for n in SIZES:
        (y,) = check(m, _rows(rng, n, 5))
        assert y.shape == (n, 1)
        if one_class and n:
            assert set(np.unique(y).tolist()) <= {-1.0, 1.0}


def test_regressor_linear_layout_and_post_transform():
    """n_supports 0: one coefficient per feature, the LINEAR kernel whatever kernel_type says;
    post_transform is checked, not applied."""
    rng = np.random.default_rng(12)
    attrs = _svr_attrs(rng, 4, 0, "POLY")
    for n in SIZES:
        x = _rows(rng, n, 4)
        (y,) = check(svr_model(**attrs), x)
        expected = x @ np.float32(attrs["coefficients"]) + attrs["rho"][0]
        np.testing.assert_allclose(y[:, 0], expected, rtol=1e-5, atol=1e-5)
    x = _rows(rng, 20, 4)
    (y,) = check(svr_model(**attrs), x)
    for post in ("LOGISTIC", "SOFTMAX", "PROBIT"):
        (yp,) = check(svr_model(**dict(attrs, post_transform=post)), x)
        np.testing.assert_array_equal(yp, y)
    (yo,) = check(svr_model(**dict(attrs, one_class=1)), x)
    np.testing.assert_array_equal(yo, np.where(y > 0, 1.0, -1.0).astype(np.float32))


def test_regressor_many_support_vectors():
    """More than 1024 support vectors (onnxruntime's Gemm sums them in slices of 1024)."""
    rng = np.random.default_rng(16)
    m = svr_model(**_svr_attrs(rng, 6, 2500, "RBF", params=(0.2, 0.0, 3.0)))
    check(m, _rows(rng, 50, 6))


def test_regressor_refuses_other_input_types_at_run_time():
    """An input whose type the model leaves open: the float kernel refuses a double tensor at run time."""
    rng = np.random.default_rng(13)
    node = helper.make_node("SVMRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **_svr_attrs(rng, 3, 4))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TP.FLOAT, None)],
                          [helper.make_tensor_value_info("Y", TP.FLOAT, None)])
    nat, _ = native_and_numpy(helper.make_model(g, opset_imports=ML_OPSET), "SVMRegressor")
    with pytest.raises((errors.InvalidType, errors.InvalidArgument)):
        nat.run(None, {"X": np.zeros((2, 3), np.float64)})
    with pytest.raises(errors.InvalidArgument, match="SVMRegressor"):
        nat.run(None, {"X": np.zeros((2, 4), np.float32)})


# ----------------------------------------------------------------------------------------------
# 1 and 2 threads: bitwise equal on larger batches


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_threads_bitwise(kernel):
    rng = np.random.default_rng(21)
    x = _rows(rng, 1000, 6)
    for m in (svc_model(**_svc_attrs(rng, 3, 6, kernel, proba=True, params=(0.2, 0.1, 2.0),
                                     vectors=[30, 25, 40])),
              svr_model(**_svr_attrs(rng, 6, 60, kernel, params=(0.2, 0.1, 2.0)))):
        op = m.graph.node[0].op_type
        one, _ = native_and_numpy(m, op, threads=1)
        two, _ = native_and_numpy(m, op, threads=2)
        for a, b in zip(one.run(None, {"X": x}), two.run(None, {"X": x})):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# scikit-learn conversions


@pytest.fixture(scope="module")
def sk():
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    return x.astype(np.float32), y


def _convert(model, x):
    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}, options={"zipmap": False})


def _convert_plain(model, x):
    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})


def _check_converted(onx, x, op):
    """The converted graph (the SVM node and the converter's Casts / ops around it): native vs numpy vs
    onnxruntime, 0 / 1 / 7 / 300 rows, 1 and 2 threads."""
    name = onx.graph.input[0].name
    nat, ref = native_and_numpy(onx, op)
    nat2, _ = native_and_numpy(onx, op, threads=2)
    ort_out = _ort(onx).run(None, {name: x})
    for n in SIZES:
        xi = np.resize(x, (n, x.shape[1])).astype(np.float32)
        got = nat.run(None, {name: xi})
        for i, (g, r) in enumerate(zip(got, ref.run(None, {name: xi}))):
            _close(np.asarray(g), np.asarray(r), f"output {i} (numpy kernel, {n} rows)")
        if n > 1:
            for g, g2 in zip(got, nat2.run(None, {name: xi})):
                np.testing.assert_array_equal(np.asarray(g2), np.asarray(g))
    got = nat.run(None, {name: x})
    for i, (g, r) in enumerate(zip(got, ort_out)):
        _close(np.asarray(g), np.asarray(r), f"output {i} (onnxruntime)")
    return got


SVC_CASES = {
    "svc_rbf_proba_3": ("SVC", dict(probability=True, random_state=0), 3),
    "svc_rbf_proba_2": ("SVC", dict(probability=True, random_state=0), 2),
    "svc_rbf_3": ("SVC", dict(), 3),
    "svc_rbf_2": ("SVC", dict(), 2),
    "svc_poly_proba_3": ("SVC", dict(kernel="poly", degree=3, probability=True, random_state=0), 3),
    "svc_poly_2": ("SVC", dict(kernel="poly", degree=2), 2),
    "svc_linear_proba_3": ("SVC", dict(kernel="linear", probability=True, random_state=0), 3),
    "svc_linear_2": ("SVC", dict(kernel="linear"), 2),
    "svc_sigmoid_3": ("SVC", dict(kernel="sigmoid", gamma=0.01), 3),
    "svc_sigmoid_proba_2": ("SVC", dict(kernel="sigmoid", gamma=0.01, probability=True, random_state=0), 2),
    "nusvc_3": ("NuSVC", dict(), 3),
    "nusvc_proba_2": ("NuSVC", dict(probability=True, random_state=0), 2),
}


@pytest.mark.parametrize("name", list(SVC_CASES))
def test_sklearn_classifiers(sk, name):
    from sklearn import svm

    cls, kw, k = SVC_CASES[name]
    x, y = sk
    if k == 2:
        y = (y == 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = getattr(svm, cls)(**kw).fit(x, y)
    label, scores = _check_converted(_convert(clf, x), x, "SVMClassifier")
    np.testing.assert_array_equal(np.asarray(label), clf.predict(x))
    if kw.get("probability"):
        np.testing.assert_allclose(np.asarray(scores), clf.predict_proba(x), atol=1e-4)


def test_sklearn_classifier_with_zipmap(sk):
    from sklearn import svm

    x, y = sk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = svm.SVC(probability=True, random_state=0).fit(x, y)
    onx = _convert_plain(clf, x)
    nat, _ = native_and_numpy(onx, "SVMClassifier")
    label, probs = nat.run(None, {onx.graph.input[0].name: x})
    ref_label, ref_probs = _ort(onx).run(None, {onx.graph.input[0].name: x})
    np.testing.assert_array_equal(label, ref_label)
    assert len(probs) == len(ref_probs)
    for a, b in zip(probs, ref_probs):
        assert list(a) == list(b)
        np.testing.assert_allclose([a[c] for c in a], [b[c] for c in b], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("name", ["svr_rbf", "svr_poly", "svr_linear", "svr_sigmoid", "nusvr", "linearsvr",
                                  "oneclass"])
def test_sklearn_regressors(sk, name):
    from sklearn import svm

    x, _ = sk
    target = x[:, 0] * 2 - x[:, 3]
    xi = x if name == "oneclass" else x[:, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = {"svr_rbf": lambda: svm.SVR().fit(xi, target),
                 "svr_poly": lambda: svm.SVR(kernel="poly", degree=2).fit(xi, target),
                 "svr_linear": lambda: svm.SVR(kernel="linear").fit(xi, target),
                 "svr_sigmoid": lambda: svm.SVR(kernel="sigmoid", gamma=0.01).fit(xi, target),
                 "nusvr": lambda: svm.NuSVR().fit(xi, target),
                 "linearsvr": lambda: svm.LinearSVR(max_iter=5000, random_state=0).fit(xi, target),
                 "oneclass": lambda: svm.OneClassSVM(gamma="scale", nu=0.2).fit(xi)}[name]()
    if name == "linearsvr":
        # skl2onnx converts LinearSVR to a LinearRegressor: its coefficients in SVMRegressor's liblinear
        # layout instead
        onx = svr_model(kernel_type="LINEAR", kernel_params=[0.0, 0.0, 0.0], n_supports=0,
                        coefficients=model.coef_.astype(np.float32).tolist(),
                        rho=[float(np.ravel(model.intercept_)[0])])
    else:
        onx = _convert_plain(model, xi)
    out = _check_converted(onx, xi, "SVMRegressor")
    assert_svm_regression_matches_sklearn(name, model, xi, out)


# ----------------------------------------------------------------------------------------------
# malformed attributes: the native kernel refuses them at session creation (numpy kernel disabled)

_SVC_OK = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], vectors_per_class=[2, 2, 1],
               support_vectors=[0.1 * i for i in range(15)], coefficients=[0.3, -0.2, 0.5, 0.1, -0.4] * 2,
               rho=[0.1, 0.2, 0.3], classlabels_ints=[4, 7, 9])

# name: (change, the attribute the message names)
INVALID_SVC = {
    "prob_a_prob_b_lengths": (dict(prob_a=[1.0, 2.0, 3.0], prob_b=[1.0]), "prob_b"),
    "prob_a_too_short": (dict(prob_a=[1.0], prob_b=[1.0]), "prob_a"),
    "no_labels": (dict(classlabels_ints=None), "classlabels"),
    "coefficients_too_short": (dict(coefficients=[0.1] * 9), "coefficients"),
    "coefficients_missing": (dict(coefficients=None), "coefficients"),
    "rho_too_short": (dict(rho=[0.1, 0.2]), "rho"),
    "rho_missing": (dict(rho=None), "rho"),
    "vectors_per_class_length": (dict(vectors_per_class=[2, 3]), "vectors_per_class"),
    "vectors_per_class_negative": (dict(vectors_per_class=[3, -1, 3]), "vectors_per_class"),
    "support_vectors_not_a_multiple": (dict(support_vectors=[0.1] * 14), "support_vectors"),
    "kernel_params_length": (dict(kernel_params=[0.5]), "kernel_params"),
    "kernel_params_missing": (dict(kernel_params=None), "kernel_params"),
    "kernel_type_unknown": (dict(kernel_type="CUBIC"), "kernel_type"),
    "post_transform_unknown": (dict(post_transform="SIGMOID"), "post_transform"),
    "linear_layout_rho_missing": (dict(vectors_per_class=None, support_vectors=None, rho=None), "rho"),
    "linear_layout_rho_empty": (dict(vectors_per_class=None, support_vectors=None, rho=[]), "rho"),
}

_SVR_OK = dict(kernel_type="RBF", kernel_params=[0.5, 0.1, 3.0], n_supports=5, support_vectors=[0.1] * 15,
               coefficients=[0.2] * 5, rho=[0.1])

INVALID_SVR = {
    "coefficients_too_short": (dict(coefficients=[0.1] * 4), "coefficients"),
    "coefficients_missing": (dict(coefficients=None), "coefficients"),
    "rho_missing": (dict(rho=None), "rho"),
    "support_vectors_not_a_multiple": (dict(support_vectors=[0.1] * 14), "support_vectors"),
    "kernel_params_missing": (dict(kernel_params=None), "kernel_params"),
    "kernel_params_length": (dict(kernel_params=[0.5, 0.1]), "kernel_params"),
    "kernel_type_unknown": (dict(kernel_type="CUBIC"), "kernel_type"),
    "post_transform_unknown": (dict(post_transform="FOO"), "post_transform"),
}


def _with(base, change):
    a = dict(base)
    a.update(change)
    return {k: v for k, v in a.items() if v is not None}


def _native_only(model, op):
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", f"numpy:{op}")
    return onnxfast.InferenceSession(model.SerializeToString(), o)


def _make(build, attrs):
    """build(**attrs), empty float lists (whose type onnx.helper cannot infer) added as typed attributes."""
    empty = [k for k, v in attrs.items() if isinstance(v, list) and not v]
    m = build(**{k: v for k, v in attrs.items() if k not in empty})
    for k in empty:
        m.graph.node[0].attribute.append(helper.make_attribute(k, [], attr_type=helper.AttributeProto.FLOATS))
    return m


@pytest.mark.parametrize("name", list(INVALID_SVC))
def test_classifier_invalid_models(name):
    change, attr = INVALID_SVC[name]
    m = _make(svc_model, _with(_SVC_OK, change))
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match=f"SVMClassifier.*{attr}"):
        _native_only(m, "SVMClassifier")
    with pytest.raises(errors.InvalidModel, match="SVMClassifier"):
        onnxfast.InferenceSession(m.SerializeToString())


@pytest.mark.parametrize("name", list(INVALID_SVR))
def test_regressor_invalid_models(name):
    change, attr = INVALID_SVR[name]
    m = _make(svr_model, _with(_SVR_OK, change))
    with pytest.raises(Exception):
        _ort(m)
    with pytest.raises(errors.InvalidModel, match=f"SVMRegressor.*{attr}"):
        _native_only(m, "SVMRegressor")


def test_valid_edge_attributes():
    """Longer rho / coefficients than needed are accepted (the extra values are not read)."""
    rng = np.random.default_rng(14)
    x = _rows(rng, 6, 3)
    check(svc_model(**_with(_SVC_OK, dict(rho=[0.1, 0.2, 0.3, 9.0], coefficients=[0.3] * 11))), x)
    check(svr_model(**_with(_SVR_OK, dict(rho=[0.1, 7.0], coefficients=[0.2] * 6))), x)
    check(_make(svc_model, _with(_SVC_OK, dict(kernel_params=[]))), x)  # empty: gamma = coef0 = degree = 0
