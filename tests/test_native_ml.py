"""The native ai.onnx.ml kernels of csrc/kernels/ml_linear.cpp (LinearClassifier, LinearRegressor, Scaler,
Normalizer, Binarizer, Imputer, ArrayFeatureExtractor, OneHotEncoder, LabelEncoder) against onnxruntime
and against their numpy kernels: post transforms, the binary-classifier convention, int / double inputs,
edge sizes (0, 1, odd rows), per-feature attributes of one or all features, NaN, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx_helpers import native_and_numpy

import onnxfast

ort = pytest.importorskip("onnxruntime")
NP2T = {np.float32: T.FLOAT, np.float64: T.DOUBLE, np.int64: T.INT64, np.int32: T.INT32}


def _model(op, attrs, x_type, outs, extra_inputs=(), ml_opset=3, x_shape=(None, None)):
    node = helper.make_node(op, ["X"] + [i.name for i in extra_inputs], [o.name for o in outs],
                            domain="ai.onnx.ml", name="n", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", x_type, list(x_shape))] + list(extra_inputs),
                          outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)],
                             ir_version=9)


def _out(name, t):
    return helper.make_tensor_value_info(name, t, None)


def _compare(model, op, feed, rtol=1e-5, atol=1e-6):
    nat, ref = native_and_numpy(model, op)
    got = nat.run(None, feed)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    for g, w, r in zip(got, want, ref.run(None, feed)):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        if g.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(g, r)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, equal_nan=True)
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 2
    for g, t in zip(got, onnxfast.InferenceSession(model.SerializeToString(), o).run(None, feed)):
        np.testing.assert_array_equal(g, t)


ROWS = [0, 1, 7, 300]


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("rows", ROWS)
def test_linear_classifier(post, classes, rows):
    rng = np.random.default_rng(classes * 10 + rows)
    f = 5
    coef = rng.normal(size=classes * f).astype(np.float32)
    icpt = rng.normal(size=classes).astype(np.float32)
    labels = [3, 9] if classes == 1 else [4, 1, 7]
    attrs = dict(coefficients=coef.tolist(), intercepts=icpt.tolist(), classlabels_ints=labels, post_transform=post)
    x = rng.normal(size=(rows, f)).astype(np.float32)
    if post == "PROBIT":  # probit takes probabilities
        x *= 0.05
        attrs["intercepts"] = [0.5] * classes
    m = _model("LinearClassifier", attrs, T.FLOAT, [_out("L", T.INT64), _out("P", T.FLOAT)])
    if post == "PROBIT" and classes == 1:
        # onnxruntime packs the N probit scores into the first N floats of its N x 2 output: onnxfast
        # writes [probit, 0] per row (the same for one row)
        nat, _ = native_and_numpy(m, "LinearClassifier")
        got = nat.run(None, {"X": x})
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1][:, 0], want[1].reshape(-1)[:rows], rtol=1e-4, atol=2e-3)
        assert not got[1][:, 1].any()
        return
    # onnxruntime's probit loses digits near p = 0.5 (see ml_common.h): float32 GEMM differences grow there
    _compare(m, "LinearClassifier", {"X": x}, rtol=1e-4, atol=2e-3 if post == "PROBIT" else 1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_linear_classifier_input_types(dtype):
    rng = np.random.default_rng(1)
    attrs = dict(coefficients=rng.normal(size=8).tolist(), intercepts=[0.1, -0.2], classlabels_ints=[0, 1])
    x = rng.integers(-3, 4, size=(9, 4)).astype(dtype)
    _compare(_model("LinearClassifier", attrs, NP2T[dtype], [_out("L", T.INT64), _out("P", T.FLOAT)]),
             "LinearClassifier", {"X": x})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "PROBIT"])
@pytest.mark.parametrize("targets", [1, 3])
@pytest.mark.parametrize("rows", ROWS)
def test_linear_regressor(post, targets, rows):
    rng = np.random.default_rng(targets + rows)
    f = 6
    attrs = dict(coefficients=rng.normal(size=targets * f).tolist(), targets=targets, post_transform=post,
                 intercepts=rng.normal(size=targets).tolist())
    x = rng.normal(size=(rows, f)).astype(np.float32) * (0.05 if post == "PROBIT" else 1)
    if post == "PROBIT":
        attrs["intercepts"] = [0.5] * targets
    _compare(_model("LinearRegressor", attrs, T.FLOAT, [_out("Y", T.FLOAT)]), "LinearRegressor", {"X": x},
             rtol=1e-4, atol=2e-3 if post == "PROBIT" else 1e-5)


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_scaler(per_feature, dtype):
    rng = np.random.default_rng(2)
    c = 5
    attrs = dict(scale=rng.uniform(0.5, 2, c if per_feature else 1).tolist(),
                 offset=rng.normal(size=c if per_feature else 1).tolist())
    x = (rng.normal(size=(11, c)) * 5).astype(dtype)
    _compare(_model("Scaler", attrs, NP2T[dtype], [_out("Y", T.FLOAT)]), "Scaler", {"X": x})


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_normalizer(norm):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    x[2] = 0  # a zero row stays zero
    x[3] = -np.abs(x[3])  # MAX of a negative row
    _compare(_model("Normalizer", dict(norm=norm), T.FLOAT, [_out("Y", T.FLOAT)]), "Normalizer", {"X": x})


def test_binarizer_and_imputer():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    m = _model("Binarizer", dict(threshold=0.25), T.FLOAT, [_out("Y", T.FLOAT)])
    _compare(m, "Binarizer", {"X": x})
    x[1, 2] = np.nan  # refused, as onnxruntime refuses it
    for s in native_and_numpy(m, "Binarizer"):
        with pytest.raises(onnxfast.errors.InvalidArgument, match="NaN at index 5"):
            s.run(None, {"X": x})
    m = _model("Imputer", dict(imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=float("nan")), T.FLOAT,
               [_out("Y", T.FLOAT)])
    _compare(m, "Imputer", {"X": x})
    xi = rng.integers(-2, 3, size=(6, 3)).astype(np.int64)
    m = _model("Imputer", dict(imputed_value_int64s=[7], replaced_value_int64=0), T.INT64, [_out("Y", T.INT64)])
    _compare(m, "Imputer", {"X": xi})


def test_array_feature_extractor():
    rng = np.random.default_rng(5)
    y = helper.make_tensor_value_info("I", T.INT64, [None])
    for shape in [(5, 4), (4,), (2, 3, 4)]:
        m = _model("ArrayFeatureExtractor", {}, T.FLOAT, [_out("Z", T.FLOAT)], extra_inputs=[y], ml_opset=1,
                   x_shape=(None,) * len(shape))
        x = rng.normal(size=shape).astype(np.float32)
        _compare(m, "ArrayFeatureExtractor", {"X": x, "I": np.array([3, 0, 0], np.int64)})
    m = _model("ArrayFeatureExtractor", {}, T.FLOAT, [_out("Z", T.FLOAT)], extra_inputs=[y], ml_opset=1)
    s = onnxfast.InferenceSession(m.SerializeToString())
    with pytest.raises(onnxfast.errors.OnnxfastError, match="index 4 is out of range"):
        s.run(None, {"X": np.zeros((2, 4), np.float32), "I": np.array([4], np.int64)})


@pytest.mark.parametrize("zeros", [0, 1])
def test_one_hot_encoder_int(zeros):
    m = _model("OneHotEncoder", dict(cats_int64s=[3, 1, 8], zeros=zeros), T.INT64, [_out("Y", T.FLOAT)], ml_opset=1)
    x = np.array([[1, 3], [8, 8], [3, 1]], np.int64)
    _compare(m, "OneHotEncoder", {"X": x})
    bad = np.array([[1, 5]], np.int64)
    if zeros:
        _compare(m, "OneHotEncoder", {"X": bad})
    else:
        with pytest.raises(onnxfast.errors.OnnxfastError, match="not a known category"):
            onnxfast.InferenceSession(m.SerializeToString()).run(None, {"X": bad})


@pytest.mark.parametrize("case", ["int_to_float", "float_to_int", "float_to_int_opset4", "tensor_opset4"])
def test_label_encoder_numeric(case):
    if case == "int_to_float":
        attrs = dict(keys_int64s=[1, 5, 9], values_floats=[0.5, -2.0, 7.25], default_float=-1.0)
        xt, x = T.INT64, np.array([[1, 2], [9, 5]], np.int64)
        out, opset = T.FLOAT, 2
    elif case.startswith("float_to_int"):  # a NaN key maps NaN from version 4 on only
        attrs = dict(keys_floats=[0.5, float("nan"), 2.0], values_int64s=[10, 20, 30], default_int64=-7)
        xt, x = T.FLOAT, np.array([0.5, np.nan, 3.0, 2.0], np.float32)
        out, opset = T.INT64, 4 if case.endswith("opset4") else 2
    else:
        attrs = dict(keys_tensor=numpy_helper.from_array(np.array([1, 2, 3], np.int64)),
                     values_tensor=numpy_helper.from_array(np.array([1.5, 2.5, 3.5], np.float32)),
                     default_tensor=numpy_helper.from_array(np.array([9.0], np.float32)))
        xt, x = T.INT64, np.array([3, 1, 4], np.int64)
        out, opset = T.FLOAT, 4
    m = _model("LabelEncoder", attrs, xt, [_out("Y", out)], ml_opset=opset, x_shape=(None,) * x.ndim)
    _compare(m, "LabelEncoder", {"X": x})


def test_linear_bad_attributes_refused():
    m = _model("LinearClassifier", dict(coefficients=[1.0, 2.0, 3.0], intercepts=[0.0, 0.0], classlabels_ints=[0, 1]),
               T.FLOAT, [_out("L", T.INT64), _out("P", T.FLOAT)])
    with pytest.raises(onnxfast.errors.InvalidModel, match="coefficients"):
        onnxfast.InferenceSession(m.SerializeToString())
    m = _model("LinearRegressor", dict(coefficients=[1.0, 2.0], targets=1), T.FLOAT, [_out("Y", T.FLOAT)])
    with pytest.raises(onnxfast.errors.OnnxfastError, match="features"):
        onnxfast.InferenceSession(m.SerializeToString()).run(None, {"X": np.zeros((2, 3), np.float32)})
