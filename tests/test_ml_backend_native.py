"""The ai.onnx.ml cases of the ONNX backend suite with the numpy kernels of the ML operators disabled:
every case runs on native kernels and matches the suite's expected outputs. Numeric cases run on
tensor kernels ('native'); the string LabelEncoder cases on the C++ kernels over string tensors
('native:objects', csrc/bindings/py_object_kernels.cpp)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import onnxfast

ML_OPS = ["ArrayFeatureExtractor", "Binarizer", "LabelEncoder", "TreeEnsemble", "TreeEnsembleRegressor",
          "TreeEnsembleClassifier", "LinearClassifier", "LinearRegressor", "Scaler", "Normalizer", "Imputer",
          "OneHotEncoder", "SVMClassifier", "SVMRegressor", "CategoryMapper", "ZipMap", "DictVectorizer", "CastMap",
          "FeatureVectorizer"]


def _cases():
    """The suite's ai.onnx.ml cases: importing only their modules builds them (collect_testcases() would
    build all ~1,700 node cases)."""
    import importlib

    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.import_recursive(importlib.import_module("onnx.backend.test.case.node.ai_onnx_ml"))
    return [c for c in node._NodeTestCases if any(o.domain == "ai.onnx.ml" for o in c.model.opset_import)]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ml_backend_case_on_native_kernels(case):
    strings = any(n.op_type == "LabelEncoder" and any(
        a.name in ("keys_strings", "values_strings") or (a.name.endswith("_tensor") and a.t.data_type == 8)
        for a in n.attribute) for n in case.model.graph.node)
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", ",".join(f"numpy:{op}" for op in ML_OPS))
    sess = onnxfast.InferenceSession(case.model.SerializeToString(), o)
    kinds = {r["kernel"] for r in sess.kernel_listing()}
    assert kinds == ({"native:objects"} if strings else {"native"}), kinds
    for inputs, outputs in case.data_sets:
        names = [i.name for i in case.model.graph.input]
        got = sess.run(None, dict(zip(names, inputs)))
        for g, w in zip(got, outputs):
            if w.dtype == object:
                assert g.tolist() == w.tolist()
            else:
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
