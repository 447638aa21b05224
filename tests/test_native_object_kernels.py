"""The native kernels over Python-object values (csrc/bindings/py_object_kernels.cpp): OneHotEncoder of
strings, LabelEncoder / CategoryMapper with string keys or values, ZipMap, DictVectorizer and CastMap of
float maps. Each is compared with the operator's numpy kernel (the reference) over edge sizes (0, 1,
odd), unknown values, duplicate keys, NaN / -0.0 keys, str / bytes / non-contiguous inputs, and
checked to be the kernel the plan chose ('native:objects')."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import onnxfast
from onnxfast import errors

ML = "ai.onnx.ml"


def _model(op, in_type, out_type, in_shape=None, ml_opset=3, inputs=None, **attrs):
    node = helper.make_node(op, ["X"], ["Y"], domain=ML, name="n", **attrs)
    x = inputs or [helper.make_tensor_value_info("X", in_type, in_shape)]
    if isinstance(out_type, onnx.TypeProto):
        y = helper.make_value_info("Y", out_type)
    else:
        y = helper.make_tensor_value_info("Y", out_type, None)
    g = helper.make_graph([node], "g", x, [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, ml_opset)],
                             ir_version=9)


def _sessions(model):
    """(native session, numpy session) of a one-node model; the native one must use the object kernel."""
    data = model.SerializeToString()
    nat = onnxfast.InferenceSession(data)
    assert [r["kernel"] for r in nat.kernel_listing()] == ["native:objects"]
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("onnxfast.disable_kernels", "native")
    ref = onnxfast.InferenceSession(data, o)
    assert [r["kernel"] for r in ref.kernel_listing()] == ["numpy"]
    return nat, ref


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    if a.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        assert a.tobytes() == b.tobytes()


def _compare(model, feed):
    nat, ref = _sessions(model)
    want = ref.run(None, feed)
    got = nat.run(None, feed)
    for g, w in zip(got, want):
        if isinstance(w, list):
            assert repr(g) == repr(w)  # NaN values compare by their text
        else:
            _same(g, w)
    return got


WORDS = ["apple", "b", "", "épée", "日本", "b", "zz"]  # "b" twice: a repeated key


def _strings(n, rng, unknown=True):
    pool = WORDS + (["nope", "APPLE"] if unknown else [])
    return np.array([pool[i] for i in rng.integers(0, len(pool), n)], dtype=object)


SHAPES = [(0,), (1,), (7,), (3, 5), (2, 0, 3), (1, 17)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_onehot_strings(shape):
    rng = np.random.default_rng(len(shape) * 10 + sum(shape))
    m = _model("OneHotEncoder", TP.STRING, TP.FLOAT, cats_strings=WORDS, zeros=1)
    x = _strings(int(np.prod(shape)), rng).reshape(shape)
    (y,) = _compare(m, {"X": x})
    assert y.shape == shape + (len(WORDS),)
    _compare(m, {"X": x.astype(str)})  # numpy str arrays, as onnxruntime takes them


def test_onehot_strings_zeros_0_names_the_value():
    m = _model("OneHotEncoder", TP.STRING, TP.FLOAT, cats_strings=["a", "b"], zeros=0)
    nat, ref = _sessions(m)
    _same(nat.run(None, {"X": np.array(["b", "a"], object)})[0], ref.run(None, {"X": np.array(["b", "a"], object)})[0])
    for s in (nat, ref):
        with pytest.raises(errors.InvalidArgument, match=r"OneHotEncoder node 'n'.*'c' is not a known category"):
            s.run(None, {"X": np.array(["a", "c"], object)})


def test_onehot_strings_odd_elements():
    """bytes compare as their text, other objects as str(); a lone surrogate matches nothing."""
    m = _model("OneHotEncoder", TP.STRING, TP.FLOAT, cats_strings=["a", "1", "xy"], zeros=1)
    x = np.array([b"a", 1, "a", "x\ud800y", None], dtype=object)
    _compare(m, {"X": x})
    big = np.array(["a", "q", "1", "b"] * 3, dtype=object)
    _compare(m, {"X": big[::3]})  # a non-contiguous view


def _labelencoder(in_type, out_type, ml_opset=2, **attrs):
    return _model("LabelEncoder", in_type, out_type, ml_opset=ml_opset, **attrs)


@pytest.mark.parametrize("n", [0, 1, 9])
def test_labelencoder_string_keys(n):
    rng = np.random.default_rng(n)
    x = _strings(n, rng)
    keys = ["b", "apple", "日本", "b", ""]  # "b" repeated: the last value wins
    for out_type, values in ((TP.INT64, dict(values_int64s=[1, 2, 3, 4, 5], default_int64=-7)),
                             (TP.FLOAT, dict(values_floats=[0.5, -0.0, 3.25, 1e30, 2.0], default_float=-1.5)),
                             (TP.STRING, dict(values_strings=["x", "y", "z", "w", "v"], default_string="??"))):
        _compare(_labelencoder(TP.STRING, out_type, keys_strings=keys, **values), {"X": x})


@pytest.mark.parametrize("dtype", [TP.INT16, TP.INT32, TP.UINT8, TP.DOUBLE, TP.INT64])
def test_labelencoder_string_keys_tensor_values(dtype):
    np_dt = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    vals = np.array([3, 0, 9], dtype=np_dt)
    m = _labelencoder(TP.STRING, dtype, ml_opset=4, keys_strings=["a", "b", "c"],
                      values_tensor=onnx.numpy_helper.from_array(vals, "values_tensor"),
                      default_tensor=onnx.numpy_helper.from_array(np.array([7], np_dt), "default_tensor"))
    (y,) = _compare(m, {"X": np.array([["c", "a"], ["q", "b"]], object)})
    assert y.dtype == np_dt and y.tolist() == [[9, 3], [7, 0]]


@pytest.mark.parametrize("ml_opset", [2, 3, 4])
def test_labelencoder_float_keys_to_strings(ml_opset):
    keys = [0.5, -0.0, float("nan"), 2.0, 0.5]  # -0.0 equals 0.0; 0.5 repeated: the first value wins
    m = _labelencoder(TP.FLOAT, TP.STRING, ml_opset=ml_opset, keys_floats=keys,
                      values_strings=["half", "zero", "nan", "two", "half2"], default_string="?")
    x = np.array([0.5, 0.0, -0.0, np.nan, 2.0, 3.0, -np.inf], np.float32)
    (y,) = _compare(m, {"X": x})
    assert y.tolist() == ["half", "zero", "zero", "nan" if ml_opset >= 4 else "?", "two", "?", "?"]


def test_labelencoder_int_keys_to_strings():
    m = _labelencoder(TP.INT64, TP.STRING, keys_int64s=[5, -1, 5, 2**40], values_strings=["a", "b", "c", "d"],
                      default_string="none")
    (y,) = _compare(m, {"X": np.array([[5, -1], [0, 2**40]], np.int64)})
    assert y.tolist() == [["a", "b"], ["none", "d"]]
    (y,) = _compare(m, {"X": np.zeros((0, 3), np.int64)})
    assert y.shape == (0, 3)


def test_labelencoder_1_both_directions():
    classes = ["cat", "dog", "emu", "dog"]
    m = _labelencoder(TP.STRING, TP.INT64, ml_opset=1, classes_strings=classes, default_int64=99)
    (y,) = _compare(m, {"X": np.array(["dog", "emu", "yak", "cat"], object)})
    assert y.tolist() == [3, 2, 99, 0]
    m = _labelencoder(TP.INT64, TP.STRING, ml_opset=1, classes_strings=classes, default_string="?")
    (y,) = _compare(m, {"X": np.array([0, 3, -1, 4, 2], np.int64)})
    assert y.tolist() == ["cat", "dog", "?", "?", "emu"]


def test_category_mapper_both_directions():
    attrs = dict(cats_strings=["a", "b", "c", "b"], cats_int64s=[10, 20, 30, 40], default_int64=-5, default_string="?")
    (y,) = _compare(_model("CategoryMapper", TP.STRING, TP.INT64, **attrs), {"X": np.array([["b", "z"], ["a", "c"]], object)})
    assert y.tolist() == [[40, -5], [10, 30]]
    (y,) = _compare(_model("CategoryMapper", TP.INT64, TP.STRING, **attrs), {"X": np.array([20, 40, 0], np.int64)})
    assert y.tolist() == ["b", "b", "?"]


def _zipmap_model(labels):
    key = TP.STRING if isinstance(labels[0], str) else TP.INT64
    seq = helper.make_sequence_type_proto(helper.make_map_type_proto(key, helper.make_tensor_type_proto(TP.FLOAT, [])))
    attr = {"classlabels_strings": labels} if key == TP.STRING else {"classlabels_int64s": labels}
    return _model("ZipMap", TP.FLOAT, seq, ml_opset=1, **attr)


@pytest.mark.parametrize("rows", [0, 1, 5])
@pytest.mark.parametrize("labels", [["a", "b", "日本"], [3, -1, 7]], ids=["str", "int"])
def test_zipmap(rows, labels):
    x = np.random.default_rng(rows).standard_normal((rows, 3)).astype(np.float32)
    x[:, 0] = [np.nan, -0.0, 1e38, 3.5, 0.25][:rows]
    (y,) = _compare(_zipmap_model(labels), {"X": x})
    assert len(y) == rows and all(list(d) == labels for d in y)


def test_zipmap_1d_and_wrong_width():
    m = _zipmap_model(["a", "b"])
    (y,) = _compare(m, {"X": np.array([0.25, 0.75], np.float32)})
    assert y == [{"a": 0.25, "b": 0.75}]
    nat, ref = _sessions(m)
    for s in (nat, ref):
        with pytest.raises(errors.InvalidArgument, match="ZipMap node 'n'.*does not have 2 columns"):
            s.run(None, {"X": np.ones((2, 3), np.float32)})


def _map_model(op, key, out_type, **attrs):
    x = helper.make_value_info("X", helper.make_map_type_proto(key, helper.make_tensor_type_proto(TP.FLOAT, [])))
    return _model(op, None, out_type, inputs=[x], ml_opset=1, **attrs)


def test_dict_vectorizer_repeated_vocabulary():
    """Every position of a repeated vocabulary entry gets the value; keys outside the vocabulary are ignored."""
    m = _map_model("DictVectorizer", TP.STRING, TP.FLOAT, string_vocabulary=["c", "a", "b", "a", "c", "a"])
    (y,) = _compare(m, {"X": {"a": 1.5, "zz": 9.0, "c": -2.0}})
    assert y.tolist() == [[-2.0, 1.5, 0.0, 1.5, -2.0, 1.5]]
    m = _map_model("DictVectorizer", TP.INT64, TP.FLOAT, int64_vocabulary=[4, 2, 4, -1])
    (y,) = _compare(m, {"X": {4: 1e39, 2: 0.1, 5: 1.0}})
    assert y[0, 0] == y[0, 2] == np.inf and y[0, 3] == 0.0


@pytest.mark.parametrize("cast_to", ["TO_FLOAT", "TO_INT64", "TO_STRING"])
@pytest.mark.parametrize("form", [("DENSE", 1), ("SPARSE", 1), ("SPARSE", 6)], ids=str)
def test_cast_map_float_values(cast_to, form):
    out = {"TO_FLOAT": TP.FLOAT, "TO_INT64": TP.INT64, "TO_STRING": TP.STRING}[cast_to]
    m = _map_model("CastMap", TP.INT64, out, cast_to=cast_to, map_form=form[0], max_map=form[1])
    for feed in ({0: 1.0}, {5: -2.5, 0: float("nan"), 3: 1e30, 2: -0.0}, {9: 1.0, 1: 2.75}):
        _compare(m, {"X": feed})


def test_cast_map_sparse_refuses_negative_keys():
    m = _map_model("CastMap", TP.INT64, TP.FLOAT, cast_to="TO_FLOAT", map_form="SPARSE", max_map=3)
    nat, ref = _sessions(m)
    for s in (nat, ref):
        with pytest.raises(errors.InvalidArgument, match="negative keys"):
            s.run(None, {"X": {-1: 1.0, 1: 2.0}})


def test_map_feed_is_sorted_and_rounded():
    """What the kernels receive: int keys through __index__, sorted; values rounded to float32."""
    from onnxfast import _core

    got = _core.map_feed_value("X", TP.INT64, TP.FLOAT, "map(int64,tensor(float))",
                               {np.int64(3): 0.1, True: 2, -4: np.float64(1e39)})
    assert list(got) == [-4, 1, 3] and all(type(k) is int for k in got)
    assert got[3] == float(np.float32(0.1)) and got[1] == 2.0 and math.isinf(got[-4])
    got = _core.map_feed_value("X", TP.STRING, TP.FLOAT, "map(string,tensor(float))", {"b": 1.0, 2: 3.0, "a": 0.5})
    assert list(got) == ["2", "a", "b"]


def test_string_kernel_wrong_input_type_is_refused():
    """A numeric tensor where the kernel reads strings: a clear error (the feed check comes first)."""
    m = _model("OneHotEncoder", TP.STRING, TP.FLOAT, cats_strings=["a"], zeros=1)
    nat, _ = _sessions(m)
    with pytest.raises(errors.InvalidType, match="'X'"):
        nat.run(None, {"X": np.zeros(3, np.float32)})


def _afe_model(x_shape, y_type=TP.INT64):
    node = helper.make_node("ArrayFeatureExtractor", ["X", "Y"], ["Z"], domain=ML, name="n")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TP.STRING, x_shape),
                                        helper.make_tensor_value_info("Y", y_type, None)],
                          [helper.make_tensor_value_info("Z", TP.STRING, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 1)], ir_version=9)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (0, 4)], ids=str)
@pytest.mark.parametrize("y_type", [TP.INT64, TP.INT32], ids=["int64", "int32"])
def test_array_feature_extractor_strings(shape, y_type):
    """skl2onnx selects columns of a string input with ArrayFeatureExtractor."""
    rng = np.random.default_rng(sum(shape))
    x = _strings(int(np.prod(shape)), rng).reshape(shape)
    y = np.array([shape[-1] - 1, 0, 0], dtype=onnx.helper.tensor_dtype_to_np_dtype(y_type))  # repeats too
    (z,) = _compare(_afe_model(list(shape), y_type), {"X": x, "Y": y})
    assert z.shape == ((1, 3) if len(shape) == 1 else shape[:-1] + (3,))


def test_array_feature_extractor_strings_index_out_of_range():
    nat, ref = _sessions(_afe_model([2, 3]))
    for s in (nat, ref):
        with pytest.raises(errors.IndexOutOfRange, match="index 3 is out of range"):
            s.run(None, {"X": np.array([["a", "b", "c"]] * 2, object), "Y": np.array([3], np.int64)})
