"""Every native kernel validates its attributes and input ranks at session creation (issue #14).

One case per native operator (the conv / pool family is tested with its kernels): a node with a bad
attribute (an operator without attributes: one its schema does not define), and where the operator
constrains them a bad input rank or shape the model declares. The session must refuse the model at
creation with InvalidModel naming the operator, the node and the attribute (or input), on the native
path and on the numpy fallback alike. A coverage test fails when a registered native operator has no
case here.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxfast
from onnxfast import _core

# Tested with their kernels (tests/test_native_ops.py, test_native_convtranspose.py; branch `conv`).
CONV_POOL_FAMILY = {"Conv", "FusedConv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                    "GlobalMaxPool", "GlobalLpPool"}
# Internal copy steps the planner inserts at device boundaries: no model node, no attributes.
INTERNAL = {"MemcpyToDevice", "MemcpyFromDevice"}

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
U8, I8 = TensorProto.UINT8, TensorProto.INT8
NAN = float("nan")

UNARY_NO_ATTRS = ["Abs", "Neg", "Sqrt", "Relu", "Exp", "Erf", "Tanh", "Sigmoid", "Log", "Reciprocal", "Softplus",
                  "Softsign", "Mish", "HardSwish"]
BINARY = ["Add", "Sub", "Mul", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Pow"]
VARIADIC = ["Max", "Min", "Sum", "Mean"]
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare"]


def _case(op, attrs, inputs, match, opset=21, inits=(), domain="", nout=1, id=None):
    """inputs: (elem type, shape or None) per input, fed; inits: (name, array) initializers appended."""
    return pytest.param(op, attrs, inputs, match, opset, inits, domain, nout, id=id or f"{op}-{match.split()[0]}")


def _attr(attr):
    return f"attribute '{attr}' is"


CASES = []
for _op in UNARY_NO_ATTRS:
    CASES.append(_case(_op, {"foo": 1}, [(F, [2, 3])], _attr("foo")))
for _op in BINARY:
    CASES.append(_case(_op, {"foo": 1}, [(F, [2, 3]), (F, [3])], _attr("foo")))
    CASES.append(_case(_op, {}, [(F, [2, 3]), (F, [2, 4])], "inputs 0 of shape (2, 3) and 1 of shape (2, 4)",
                       id=f"{_op}-shapes"))
for _op in VARIADIC:
    CASES.append(_case(_op, {"foo": 1}, [(F, [2, 3]), (F, [3])], _attr("foo")))
    CASES.append(_case(_op, {}, [(F, [2, 3]), (F, [3]), (F, [4, 1])], "inputs 0 of shape (2, 3) and 2 of shape (4, 1)",
                       id=f"{_op}-shapes"))
for _op in REDUCE:
    CASES.append(_case(_op, {"axes": [0, 5]}, [(F, [2, 3])], _attr("axes"), opset=13 if _op != "ReduceSum" else 11))
    CASES.append(_case(_op, {"axes": [1, -1]}, [(F, [2, 3])], _attr("axes"), opset=13 if _op != "ReduceSum" else 11,
                       id=f"{_op}-repeated-axis"))
CASES += [
    _case("ReduceSum", {}, [(F, [2, 3])], "input 1 ('axes') is [0, -2]", opset=13,
          inits=[("axes", np.array([0, -2], np.int64))], id="ReduceSum-axes-input"),
    _case("Where", {"foo": 1}, [(B, [2, 3]), (F, [2, 3]), (F, [3])], _attr("foo")),
    _case("Where", {}, [(B, [2, 3]), (F, [2, 3]), (F, [2, 4])], "inputs 0 of shape (2, 3) and 2 of shape (2, 4)",
          id="Where-shapes"),
    _case("MatMul", {"foo": 1}, [(F, [2, 3]), (F, [3, 4])], _attr("foo")),
    _case("FusedGemm", {"activation": "Relu", "alpha": NAN}, [(F, [2, 3]), (F, [3, 4])], _attr("alpha"), opset=1,
          domain="com.microsoft"),
    _case("SkipLayerNormalization", {"foo": 1}, [(F, [2, 3]), (F, [2, 3]), (F, [3])], _attr("foo"), opset=1,
          domain="com.microsoft"),
    _case("SkipSimplifiedLayerNormalization", {"foo": 1}, [(F, [2, 3]), (F, [2, 3]), (F, [3])], _attr("foo"), opset=1,
          domain="com.microsoft"),
    _case("SimplifiedLayerNormalization", {"foo": 1}, [(F, [2, 3]), (F, [3])], _attr("foo"), opset=18),
    _case("SimplifiedLayerNormalization", {"axis": 2}, [(F, [2, 3]), (F, [3])], _attr("axis") + " 2", opset=18,
          id="SimplifiedLayerNormalization-axis"),
    _case("RMSNormalization", {"axis": -3}, [(F, [2, 3]), (F, [3])], _attr("axis") + " -3", opset=23),
    _case("FusedElementwise", {"ops": ["Foo"], "args": [0, -1]}, [(F, [2, 3])], _attr("ops") + " 'Foo'", opset=1,
          domain="onnxfast"),
    _case("FusedElementwise", {"ops": ["Add"], "args": [0, 5]}, [(F, [2, 3]), (F, [2, 3])], "attribute 'args' of op 0",
          opset=1, domain="onnxfast", id="FusedElementwise-slots"),
    _case("FusedAttention", {"foo": 1}, [(F, [1, 2, 3, 4]), (F, [1, 2, 4, 5]), (F, [1, 2, 5, 6])], _attr("foo"),
          opset=1, domain="onnxfast"),
    _case("FusedAttention", {}, [(F, [2, 3, 4]), (F, [1, 2, 4, 5]), (F, [1, 2, 5, 6])],
          "input 0 ('Q') has rank 3; it must be 4", opset=1, domain="onnxfast", id="FusedAttention-rank"),
    _case("FastGelu", {"foo": 1}, [(F, [2, 3])], _attr("foo"), opset=1, domain="com.microsoft"),
    _case("BiasGelu", {"foo": 1}, [(F, [2, 3]), (F, [3])], _attr("foo"), opset=1, domain="com.microsoft"),
    _case("Gelu", {"foo": 1}, [(F, [2, 3])], _attr("foo"), opset=1, domain="com.microsoft", id="ms-Gelu-attr"),
    _case("MatMul", {}, [(F, []), (F, [3, 4])], "input 0 ('A') has rank 0; it must be at least 1", id="MatMul-rank"),
    _case("MatMulInteger", {"foo": 1}, [(U8, [2, 3]), (I8, [3, 4])], _attr("foo"), opset=13),
    _case("MatMulInteger", {}, [(U8, [2, 3]), (I8, [])], "input 1 ('B') has rank 0; it must be at least 1", opset=13,
          id="MatMulInteger-rank"),
    _case("FusedMatMul", {"activation": "Bogus"}, [(F, [2, 3]), (F, [3, 4])], _attr("activation"), opset=1,
          domain="onnxfast"),
    _case("FusedMatMul", {"activation": "LeakyRelu", "activation_params": [0.1, 0.2]}, [(F, [2, 3]), (F, [3, 4])],
          _attr("activation_params"), opset=1, domain="onnxfast", id="FusedMatMul-params"),
    _case("FusedMatMul", {"alpha": 1.0}, [(F, [2, 3]), (F, [3, 4])], _attr("alpha"), opset=1, domain="onnxfast",
          id="FusedMatMul-unknown"),
    _case("Gemm", {"alpha": NAN}, [(F, [2, 3]), (F, [3, 4])], _attr("alpha")),
    _case("Gemm", {"transA": "yes"}, [(F, [2, 3]), (F, [3, 4])], _attr("transA"), id="Gemm-type"),
    _case("Gemm", {}, [(F, [1, 2, 3]), (F, [3, 4])], "input 0 ('A') has rank 3; it must be 2", id="Gemm-rank"),
    _case("Clip", {"min": 2.0, "max": 1.0}, [(F, [4])], _attr("min") + " 2; it must be <= max (1)", opset=6),
    _case("Clip", {"min": NAN}, [(F, [4])], _attr("min"), opset=6, id="Clip-nan"),
    _case("Gelu", {"approximate": "fast"}, [(F, [4])], _attr("approximate") + " 'fast'", opset=20),
    _case("LeakyRelu", {"alpha": NAN}, [(F, [4])], _attr("alpha") + " nan"),
    _case("Elu", {"alpha": NAN}, [(F, [4])], _attr("alpha") + " nan"),
    _case("Celu", {"alpha": 0.0}, [(F, [4])], _attr("alpha") + " 0; it must be nonzero"),
    _case("Selu", {"gamma": NAN}, [(F, [4])], _attr("gamma") + " nan"),
    _case("HardSigmoid", {"beta": NAN}, [(F, [4])], _attr("beta") + " nan"),
    _case("ThresholdedRelu", {"alpha": NAN}, [(F, [4])], _attr("alpha") + " nan"),
    _case("Shrink", {"lambd": NAN}, [(F, [4])], _attr("lambd") + " nan"),
    _case("Swish", {"alpha": NAN}, [(F, [4])], _attr("alpha") + " nan", opset=24),
    _case("Softmax", {"axis": 2}, [(F, [2, 3])], _attr("axis") + " 2; it must be in [-2, 1]"),
    _case("Softmax", {"axis": -3}, [(F, [2, 3])], _attr("axis") + " -3", opset=11, id="Softmax-11"),
    _case("Softmax", {}, [(F, [])], "input 0 ('input') has rank 0", id="Softmax-rank"),
    _case("LogSoftmax", {"axis": 2}, [(F, [2, 3])], _attr("axis") + " 2; it must be in [-2, 1]"),
    _case("LayerNormalization", {"axis": 2}, [(F, [2, 3]), (F, [3])], _attr("axis") + " 2"),
    _case("LayerNormalization", {"epsilon": NAN}, [(F, [2, 3]), (F, [3])], _attr("epsilon") + " nan",
          id="LayerNormalization-epsilon"),
    _case("BatchNormalization", {"epsilon": float("inf")}, [(F, [1, 2, 3])] + [(F, [2])] * 4,
          _attr("epsilon") + " inf; it must be a finite number"),
    _case("BatchNormalization", {}, [(F, [2])] + [(F, [2])] * 4, "input 0 ('X') has rank 1; it must be at least 2",
          id="BatchNormalization-rank"),
    _case("InstanceNormalization", {"epsilon": NAN}, [(F, [1, 2, 3]), (F, [2]), (F, [2])], _attr("epsilon")),
    _case("InstanceNormalization", {}, [(F, [1, 2, 3]), (F, [1, 2]), (F, [2])], "input 1 ('scale') has rank 2",
          id="InstanceNormalization-rank"),
    _case("Concat", {"axis": 2}, [(F, [2, 3]), (F, [2, 3])], _attr("axis") + " 2; it must be in [-2, 1]"),
    _case("Concat", {"axis": 0}, [(F, [2, 3]), (F, [2])], "input 1 ('inputs') has rank 1; it must be 2",
          id="Concat-rank"),
    _case("Gather", {"axis": -3}, [(F, [2, 3]), (I64, [1])], _attr("axis") + " -3"),
    _case("Gather", {}, [(F, []), (I64, [1])], "input 0 ('data') has rank 0", id="Gather-rank"),
    _case("Transpose", {"perm": [1, 1]}, [(F, [2, 3])], _attr("perm") + " [1, 1]; it must be a permutation"),
    _case("Transpose", {"perm": [1, 0]}, [(F, [2, 3, 4])], _attr("perm") + " [1, 0]", id="Transpose-rank"),
    _case("Slice", {"starts": [0, 0], "ends": [1, 1], "axes": [0, -2]}, [(F, [2, 3])], _attr("axes"), opset=9),
    _case("Slice", {"starts": [0], "ends": [1, 1]}, [(F, [2, 3])], _attr("ends"), opset=9, id="Slice-lengths"),
    _case("Slice", {}, [(F, [2, 3])], "input 4 ('steps') is [0]", opset=13,
          inits=[("s", np.array([0], np.int64)), ("e", np.array([1], np.int64)), ("a", np.array([0], np.int64)),
                 ("st", np.array([0], np.int64))], id="Slice-steps"),
    _case("Resize", {"mode": "area"}, [(F, [1, 1, 2, 2]), (F, [0]), (F, [4])], _attr("mode") + " 'area'", opset=19),
    _case("Resize", {"axes": [2, 4]}, [(F, [1, 1, 2, 2]), (F, [0]), (F, [2])], _attr("axes"), opset=19,
          id="Resize-axes"),
    _case("Resize", {"keep_aspect_ratio_policy": "fit"}, [(F, [1, 1, 2, 2]), (F, [0]), (F, [4])],
          _attr("keep_aspect_ratio_policy"), opset=19, id="Resize-policy"),
    _case("Upsample", {"mode": "area"}, [(F, [1, 1, 2, 2]), (F, [4])], _attr("mode") + " 'area'", opset=9),
    _case("Upsample", {"scales": [1.0, 2.0]}, [(F, [1, 1, 2, 2])], _attr("scales"), opset=7, id="Upsample-scales"),
    # the views and shape queries (tensor_ops.cpp)
    _case("Identity", {"foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("Reshape", {"foo": 1}, [(F, [2, 3]), (I64, [2])], _attr("foo")),
    _case("Flatten", {"axis": -3}, [(F, [2, 3])], _attr("axis") + " -3; it must be in [-2, 2]"),
    _case("Squeeze", {"axes": [0, 5]}, [(F, [1, 3])], _attr("axes") + " [0, 5]", opset=11),
    _case("Squeeze", {"axes": [0, -2]}, [(F, [1, 3])], _attr("axes") + " [0, -2]", opset=11, id="Squeeze-repeated"),
    _case("Unsqueeze", {"axes": [0, 4]}, [(F, [1, 3])], _attr("axes") + " [0, 4]", opset=11),
    _case("Shape", {"foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("Size", {"foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("Cast", {"to": TensorProto.INT32, "foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("Expand", {"foo": 1}, [(F, [2, 3]), (I64, [2])], _attr("foo")),
    _case("And", {"foo": 1}, [(B, [2, 3]), (B, [3])], _attr("foo")),
    _case("And", {}, [(B, [2, 3]), (B, [2, 4])], "inputs 0 of shape (2, 3) and 1 of shape (2, 4)", id="And-shapes"),
    _case("Or", {"foo": 1}, [(B, [2, 3]), (B, [3])], _attr("foo")),
    _case("Xor", {"foo": 1}, [(B, [2, 3]), (B, [3])], _attr("foo")),
    _case("Not", {"foo": 1}, [(B, [2, 3])], _attr("foo")),
    _case("IsNaN", {"foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("IsInf", {"foo": 1}, [(F, [2, 3])], _attr("foo")),
    _case("Range", {"foo": 1}, [(F, []), (F, []), (F, [])], _attr("foo")),
    _case("ConstantOfShape", {"foo": 1}, [(I64, [2])], _attr("foo")),
    _case("GatherElements", {"axis": 2}, [(F, [2, 3]), (I64, [2, 3])], _attr("axis") + " 2"),
    _case("GatherND", {"foo": 1}, [(F, [2, 3]), (I64, [2, 1])], _attr("foo")),
    _case("Split", {"axis": 2}, [(F, [2, 4])], _attr("axis") + " 2", opset=13, nout=2),
    _case("CumSum", {"exclusive": 2}, [(F, [2, 3]), (I64, [])], _attr("exclusive") + " 2", opset=14),
    _case("CumSum", {}, [(F, [2, 3])], "input 1 ('axis') is [2]", opset=14, inits=[("axis", np.array(2, np.int64))],
          id="CumSum-axis-input"),
]

CASES += [
    _case("TopK", {"axis": 2}, [(F, [2, 3]), (I64, [1])], _attr("axis") + " 2", opset=11, nout=2),
    _case("CDist", {"metric": "cosine"}, [(F, [2, 3]), (F, [4, 3])], _attr("metric"), opset=1,
          domain="com.microsoft"),
    _case("ArgMax", {"axis": 2}, [(F, [2, 3])], _attr("axis") + " 2", opset=13),
    _case("ArgMin", {"keepdims": 3}, [(F, [2, 3])], _attr("keepdims") + " 3", opset=13),
]

# recurrent operators (rnn.cpp): X (seq 1, batch 1, input 3), W, R of hidden size 2
CASES += [
    _case("LSTM", {"direction": "sideways", "hidden_size": 2}, [(F, [1, 1, 3]), (F, [1, 8, 3]), (F, [1, 8, 2])],
          _attr("direction") + " 'sideways'"),
    _case("LSTM", {"hidden_size": 3}, [(F, [1, 1, 3]), (F, [1, 8, 3]), (F, [1, 8, 2])],
          "input 1 ('W') has shape (1, 8, 3)", id="LSTM-W-shape"),
    _case("GRU", {"activations": ["Sigmoid", "Foo"], "hidden_size": 2}, [(F, [1, 1, 3]), (F, [1, 6, 3]), (F, [1, 6, 2])],
          _attr("activations")),
    _case("GRU", {"activations": ["Sigmoid"], "hidden_size": 2}, [(F, [1, 1, 3]), (F, [1, 6, 3]), (F, [1, 6, 2])],
          _attr("activations") + " ['Sigmoid']; it must be 2 names per direction", id="GRU-activation-count"),
    _case("RNN", {"clip": -1.0, "hidden_size": 2}, [(F, [1, 1, 3]), (F, [1, 2, 3]), (F, [1, 2, 2])], _attr("clip")),
    _case("RNN", {"hidden_size": 2}, [(F, [1, 1, 3]), (F, [1, 2, 3]), (F, [1, 2, 3])], "input 2 ('R') has shape (1, 2, 3)",
          id="RNN-R-shape"),
]

# ai.onnx.ml: one-leaf ensembles and small models with one bad attribute each
_LEAF = dict(nodes_treeids=[0], nodes_nodeids=[0], nodes_featureids=[0], nodes_values=[0.0], nodes_modes=["LEAF"],
             nodes_truenodeids=[0], nodes_falsenodeids=[0])
_ML = "ai.onnx.ml"
CASES += [
    _case("TreeEnsembleRegressor", dict(_LEAF, target_treeids=[0], target_nodeids=[0], target_ids=[0],
                                        target_weights=[1.0], aggregate_function="MEDIAN"),
          [(F, [2, 3])], _attr("aggregate_function"), opset=3, domain=_ML),
    _case("TreeEnsembleRegressor", dict(_LEAF, target_treeids=[0], target_nodeids=[0], target_ids=[0],
                                        target_weights=[1.0, 2.0]),
          [(F, [2, 3])], _attr("target_weights"), opset=3, domain=_ML, id="TreeEnsembleRegressor-lengths"),
    _case("TreeEnsembleClassifier", dict(_LEAF, class_treeids=[0], class_nodeids=[0], class_ids=[0],
                                         class_weights=[1.0], classlabels_int64s=[0, 1], post_transform="TANH"),
          [(F, [2, 3])], _attr("post_transform"), opset=3, domain=_ML, nout=2),
    _case("TreeEnsemble", dict(nodes_featureids=[0], nodes_splits=np.array([0.5], np.float32), nodes_modes=np.array(
        [0], np.uint8), nodes_truenodeids=[0], nodes_falsenodeids=[1], nodes_trueleafs=[1], nodes_falseleafs=[1],
        leaf_targetids=[0, 0], leaf_weights=np.array([1, 2], np.float32), tree_roots=[0], aggregate_function=7),
          [(F, [2, 3])], _attr("aggregate_function"), opset=5, domain=_ML),
    _case("LinearClassifier", dict(coefficients=[1.0, 2.0], intercepts=[0.0], classlabels_ints=[0, 1],
                                   post_transform="TANH"), [(F, [2, 2])], _attr("post_transform"), opset=1,
          domain=_ML, nout=2),
    _case("LinearRegressor", dict(coefficients=[1.0, 2.0], targets=0), [(F, [2, 2])], _attr("targets"), opset=1,
          domain=_ML),
    _case("SVMClassifier", dict(kernel_type="CUBIC", kernel_params=[0.5, 0.1, 3.0], vectors_per_class=[2, 1],
                                support_vectors=[0.1] * 9, coefficients=[0.3, -0.2, 0.5], rho=[0.1],
                                classlabels_ints=[4, 7]), [(F, [2, 3])], _attr("kernel_type"), opset=1, domain=_ML,
          nout=2),
    _case("SVMRegressor", dict(kernel_type="RBF", kernel_params=[0.5], n_supports=2, support_vectors=[0.1] * 6,
                               coefficients=[0.2, 0.2], rho=[0.1]), [(F, [2, 3])], _attr("kernel_params"), opset=1,
          domain=_ML),
    _case("Scaler", {"foo": 1}, [(F, [2, 3])], _attr("foo"), opset=1, domain=_ML),
    _case("Imputer", {"foo": 1}, [(F, [2, 3])], _attr("foo"), opset=1, domain=_ML),
    _case("Binarizer", {"threshold": NAN}, [(F, [2, 3])], _attr("threshold"), opset=1, domain=_ML),
    _case("Normalizer", {"norm": "L3"}, [(F, [2, 3])], _attr("norm"), opset=1, domain=_ML),
    _case("ArrayFeatureExtractor", {"foo": 1}, [(F, [2, 3]), (I64, [1])], _attr("foo"), opset=1, domain=_ML),
    _case("FeatureVectorizer", {"inputdimensions": [3], "foo": 1}, [(F, [2, 3])], _attr("foo"), opset=1,
          domain=_ML),
    _case("OneHotEncoder", {"cats_int64s": [1, 2], "foo": 1}, [(I64, [2, 3])], _attr("foo"), opset=1, domain=_ML),
    _case("LabelEncoder", {"keys_int64s": [1, 2], "values_floats": [1.0]}, [(I64, [3])], _attr("values_floats"),
          opset=2, domain=_ML),
]


def _model(op, attrs, inputs, opset, inits, domain, nout):
    names = [f"x{i}" for i in range(len(inputs))] + [n for n, _ in inits]
    attrs = {k: (onnx_tensor(v, k) if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
    node = helper.make_node(op, names, [f"y{i}" for i in range(nout)], name="n1", domain=domain, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(f"x{i}", t, s) for i, (t, s) in enumerate(inputs)],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.UNDEFINED, None) for i in range(nout)],
        [onnx_tensor(a, n) for n, a in inits])
    opsets = [helper.make_opsetid("", opset if not domain else 18)]
    if domain:
        opsets.append(helper.make_opsetid(domain, opset))
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 9
    return m.SerializeToString()


def onnx_tensor(a, name):
    from onnx import numpy_helper

    return numpy_helper.from_array(a, name)


def _options(disabled):
    o = onnxfast.SessionOptions()
    if disabled:
        o.add_session_config_entry("onnxfast.disable_kernels", disabled)
    return o


@pytest.mark.parametrize("op,attrs,inputs,match,opset,inits,domain,nout", CASES)
def test_bad_attribute_or_rank_refused_at_creation(op, attrs, inputs, match, opset, inits, domain, nout):
    model = _model(op, attrs, inputs, opset, inits, domain, nout)
    for disabled in (f"numpy:{op}", "native"):  # the native kernel, then the numpy fallback
        with pytest.raises(onnxfast.errors.InvalidModel) as info:
            onnxfast.InferenceSession(model, _options(disabled))
        msg = str(info.value)
        assert msg.startswith(f"{op} 'n1': "), (disabled, msg)
        assert match in msg, (disabled, msg)


def test_every_native_op_has_a_validation_case():
    covered = {p.values[0] for p in CASES}
    native = set(_core.native_kernels()) - CONV_POOL_FAMILY - INTERNAL
    assert native - covered == set(), f"native ops without a validation case: {sorted(native - covered)}"
    # and each has a case with a bad attribute, not only a bad rank or shape
    with_attr = {p.values[0] for p in CASES if "attribute '" in p.values[3]}
    assert native - with_attr == set(), f"native ops without a bad-attribute case: {sorted(native - with_attr)}"


def test_valid_nodes_still_load():
    """The cases' valid neighbours load and run (the checks refuse only what they should)."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for op, attrs in (("Softmax", {"axis": -2}), ("Transpose", {"perm": [1, 0]}), ("Gemm", {"transA": 1}),
                      ("ReduceSum", {"axes": [-1, 0]}), ("Concat", {"axis": -1})):
        inputs = [(F, [2, 3])] + ([(F, [2, 3])] if op in ("Gemm", "Concat") else [])
        s = onnxfast.InferenceSession(_model(op, attrs, inputs, 13 if op != "ReduceSum" else 11, (), "", 1))
        s.run(None, {f"x{i}": x for i in range(len(inputs))})


def test_unknown_rank_still_checked_at_run_time():
    """Where the model does not declare the rank, the same checks run on the fed tensor."""
    model = _model("Softmax", {"axis": 2}, [(F, None)], 13, (), "", 1)
    s = onnxfast.InferenceSession(model, _options("numpy:Softmax"))
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Softmax 'n1'.*axis 2"):
        s.run(None, {"x0": np.zeros((2, 3), np.float32)})


@pytest.mark.parametrize("act,attrs,attr", [
    ("LeakyRelu", {"alpha": NAN}, "alpha"),
    ("Gelu", {"approximate": "fast"}, "approximate"),
])
def test_fused_sources_validated_before_fusion(act, attrs, attr):
    """MatMul -> Add(bias) -> activation fuses into one onnxfast::FusedMatMul at the default level: a
    bad activation attribute is reported on the activation node, as written in the model."""
    w = np.ones((3, 4), np.float32)
    b = np.ones(4, np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
             helper.make_node(act, ["a"], ["y"], name="act", **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2, 3])],
                              [helper.make_tensor_value_info("y", F, [2, 4])],
                              [onnx_tensor(w, "w"), onnx_tensor(b, "b")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    with pytest.raises(onnxfast.errors.InvalidModel, match=f"{act} 'act': attribute '{attr}' is"):
        onnxfast.InferenceSession(m.SerializeToString())


def test_native_attribute_types_checked():
    """create_kernel checks attribute types itself (nodes of domains without an ONNX schema)."""
    with pytest.raises(onnxfast.errors.InvalidModel, match="Gemm 'g': attribute 'alpha' is a string; it must be a float"):
        _core.create_kernel("Gemm", "g", 13, {"alpha": "x"}, [None, None])
    with pytest.raises(onnxfast.errors.InvalidModel, match="Softmax 's': attribute 'axis' is 3; it must be in"):
        _core.create_kernel("Softmax", "s", 13, {"axis": 3}, [None], input_shapes=[[2, -1]])
    _core.create_kernel("Softmax", "s", 13, {"axis": 3}, [None])  # rank unknown: checked at run time
