"""Loading large model files by streaming (onnxfast/loader.py): the weights go from the file into
numpy arrays without passing through protobuf, with the same results as a plain parse, the same
errors for broken files, and no way for a model to use the loader's own marker to read other files.
Also the release of weights that only pre-packing kernels read (planner), which together with the
streaming load keeps a session's memory near one copy of the weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import errors, loader


@pytest.fixture
def stream_everything(monkeypatch):
    """Stream every model file, however small (the threshold is 16 MiB)."""
    monkeypatch.setattr(loader, "STREAM_ABOVE", 0)


def _weights_model(rng):
    w = rng.standard_normal((64, 48)).astype(np.float32)  # 12 KiB: kept in the proto (<= 16 KiB)
    w2 = rng.standard_normal((48, 96)).astype(np.float32)  # 18 KiB: streamed
    idx = np.arange(5000, dtype=np.int64) % 96  # streamed int64
    scale = np.full((96,), 0.5, np.float64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "w2"], ["h2"], name="mm2"),
             helper.make_node("Gather", ["h2", "idx"], ["g"], axis=1, name="gather"),
             helper.make_node("Cast", ["scale"], ["s32"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Mul", ["h2", "s32"], ["y"], name="mul")]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(idx, "idx"),
             numpy_helper.from_array(scale, "scale"),
             helper.make_tensor("listed", TensorProto.FLOAT, [3000], np.ones(3000, np.float32).tolist())]  # float_data
    nodes.append(helper.make_node("ReduceSum", ["listed"], ["total"], keepdims=0, name="rs"))
    g = helper.make_graph(nodes, "g", [vi("x", F, [2, 64])], [vi("y", F, None), vi("g", F, None), vi("total", F, None)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def test_streamed_file_gives_the_plain_parse_results(tmp_path, rng, stream_everything):
    m = _weights_model(rng)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    proto, _, _ = loader.load_model(str(path))
    streamed = {t.name for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert streamed == {"w2", "idx"}  # large raw_data only; small and float_data tensors stay in the proto
    x = rng.standard_normal((2, 64)).astype(np.float32)
    want = onnxfast.InferenceSession(m.SerializeToString()).run(None, {"x": x})  # bytes: never streamed
    got = onnxfast.InferenceSession(str(path)).run(None, {"x": x})
    for g_, w_ in zip(got, want):
        np.testing.assert_array_equal(g_, w_)


def test_streamed_model_with_external_data_and_subgraph(tmp_path, rng, stream_everything):
    big = np.abs(rng.standard_normal((40, 40))).astype(np.float32)  # x @ w > 0: the then branch
    inner = helper.make_graph([helper.make_node("Add", ["x", "c"], ["t"])], "then", [], [vi("t", F, [40])],
                              [numpy_helper.from_array(big[0] * 0 + 2, "c")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [vi("e", F, [40])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("ReduceSum", ["xw"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=other)]
    m = make_model(nodes, [vi("x", F, [40])], [vi("y", F, [40])],
                   initializers=[("w", big), ("zero", np.array(0, np.float32))])
    path = tmp_path / "ext.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location="ext.data", size_threshold=1024)
    x = np.abs(rng.standard_normal(40)).astype(np.float32)
    np.testing.assert_array_equal(onnxfast.InferenceSession(str(path)).run(None, {"x": x})[0], x + 2)


def test_broken_streamed_files_fail_cleanly(tmp_path, rng, stream_everything):
    data = _weights_model(rng).SerializeToString()
    path = tmp_path / "bad.onnx"
    cut_points = [len(data) // 2, len(data) - 7, 40]
    for cut in cut_points:
        path.write_bytes(data[:cut])
        with pytest.raises(errors.InvalidModel):
            onnxfast.InferenceSession(str(path))
    flips = np.random.default_rng(0).integers(0, len(data), 60)
    for pos in flips:
        b = bytearray(data)
        b[pos] ^= 0xFF
        path.write_bytes(bytes(b))
        try:
            onnxfast.InferenceSession(str(path))
        except errors.OnnxfastError:
            pass  # refused with onnxfast's own error: fine


def test_raw_data_of_the_wrong_size_is_refused_when_streamed(tmp_path, stream_everything):
    t = numpy_helper.from_array(np.zeros(6000, np.float32), "w")
    t.dims[0] = 6001
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [vi("y", F, None)], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(errors.InvalidModel, match="raw data has 24000 bytes"):
        onnxfast.InferenceSession(str(path))


def test_a_model_cannot_claim_the_loader_marker(tmp_path):
    """An external-data entry carrying the streaming loader's key is an ordinary entry: its location is
    checked like any other (absolute paths and paths outside the model's folder are refused)."""
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "/etc/hostname"), ("offset", "0"), ("length", "16"), (loader.INLINE_KEY, "1")):
        t.external_data.add(key=k, value=v)
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [vi("y", F, None)], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(errors.ExternalDataError, match="absolute path"):
        onnxfast.InferenceSession(str(path))


# ---- weights released once packed -------------------------------------------------------------

def _mm_model(rng, extra_nodes=(), outputs=("y",), inputs=("x",), op="MatMul"):
    w = rng.standard_normal((32, 16)).astype(np.float32)
    nodes = [helper.make_node(op, ["x", "w"], ["y"], name="mm"), *extra_nodes]
    ins = [vi(n, F, [4, 32] if n == "x" else [32, 16]) for n in inputs]  # b / an overridable w: 32 x 16
    return make_model(nodes, ins, [vi(o, F, None) for o in outputs], initializers=[("w", w)]), w


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_weight_read_only_by_a_packing_kernel_is_released(rng, op):
    m, w = _mm_model(rng, op=op)
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert "w" in s._model.graph.released and "w" not in s._model.graph.initializers
    assert s.kernel_listing()[0]["kernel"].endswith("prepacked")
    x = rng.standard_normal((4, 32)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(s.run(None, {"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)


def test_weight_shared_by_two_packing_kernels_is_released_after_both(rng):
    m, w = _mm_model(rng, [helper.make_node("MatMul", ["x", "w"], ["y2"], name="mm2")], outputs=("y", "y2"))
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert "w" in s._model.graph.released
    x = rng.standard_normal((4, 32)).astype(np.float32)
    y, y2 = s.run(None, {"x": x})
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["also-added", "graph-output", "overridable", "no-prepack"])
def test_weights_that_stay(rng, case):
    extra, outputs, inputs = (), ("y",), ("x",)
    o = onnxfast.SessionOptions()
    if case == "also-added":
        extra = [helper.make_node("Add", ["w", "b"], ["ws"], name="add")]
        outputs, inputs = ("y", "ws"), ("x", "b")
    elif case == "graph-output":
        outputs = ("y", "w")
    elif case == "overridable":
        inputs = ("x", "w")
    else:
        o.add_session_config_entry("session.disable_prepacking", "1")
    m, w = _mm_model(rng, extra, outputs, inputs)
    s = onnxfast.InferenceSession(m.SerializeToString(), o)
    assert not s._model.graph.released
    x = rng.standard_normal((4, 32)).astype(np.float32)
    feed = {"x": x, "b": np.zeros((32, 16), np.float32)} if "b" in inputs else {"x": x}
    outs = s.run(None, feed)
    np.testing.assert_allclose(outs[0], x @ w, rtol=1e-5, atol=1e-5)
    if case == "overridable":
        w2 = rng.standard_normal((32, 16)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x, "w": w2})[0], x @ w2, rtol=1e-5, atol=1e-5)
    if case == "graph-output":
        np.testing.assert_array_equal(outs[1], w)


def test_half_weights_keep_working(rng):
    """Float16 Gemm: the half kernel keeps its widened copy and finds it by the input's data; its
    weight is not released (only float32 weights packed as they are)."""
    w = rng.standard_normal((32, 16)).astype(np.float16)
    m = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], name="g")], [vi("x", TensorProto.FLOAT16, [4, 32])],
                   [vi("y", TensorProto.FLOAT16, None)], initializers=[("w", w)])
    s = onnxfast.InferenceSession(m.SerializeToString())
    assert "w" not in s._model.graph.released
    x = rng.standard_normal((4, 32)).astype(np.float16)
    want = (x.astype(np.float32) @ w.astype(np.float32)).astype(np.float16)
    np.testing.assert_allclose(s.run(None, {"x": x})[0].astype(np.float32), want.astype(np.float32), rtol=2e-2, atol=2e-2)
