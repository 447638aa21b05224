"""onnxruntime API items that existing code relies on, each run the same way against onnxruntime and onnxfast
(issue #19): onnxruntime's exception classes at their import path, SessionOptions refusing unknown fields,
OrtValue element types and constructors, DLPack, memory infos, OrtDevice, run_async, set_seed,
set_default_logger_severity and get_build_info."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import onnxfast
from onnxfast import errors

ort = pytest.importorskip("onnxruntime")
ort_state = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")
from onnxfast.capi import onnxruntime_pybind11_state as fast_state  # noqa: E402

RUNTIMES = {"onnxruntime": (ort, ort_state), "onnxfast": (onnxfast, fast_state)}


def _add_model() -> bytes:
    g = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", TP.FLOAT, [2]),
                           helper.make_tensor_value_info("y", TP.FLOAT, [2])],
                          [helper.make_tensor_value_info("z", TP.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _random_model() -> bytes:
    g = helper.make_graph([helper.make_node("RandomNormal", [], ["z"], shape=[4], dtype=TP.FLOAT)], "g", [],
                          [helper.make_tensor_value_info("z", TP.FLOAT, [4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _session(rt, model: bytes):
    return rt.InferenceSession(model, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_exception_classes_at_onnxruntimes_import_path(name, tmp_path):
    """Code catching onnxruntime's classes catches the same situations in both runtimes."""
    rt, state = RUNTIMES[name]
    with pytest.raises(state.NoSuchFile):
        rt.InferenceSession(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage-that-is-not-a-model" * 3)
    with pytest.raises((state.InvalidProtobuf, state.InvalidGraph, state.Fail)):
        rt.InferenceSession(str(bad))
    sess = _session(rt, _add_model())
    x = np.ones(2, np.float32)
    with pytest.raises(state.InvalidArgument):  # wrong element type
        sess.run(None, {"x": x.astype(np.float64), "y": x})
    with pytest.raises(state.InvalidArgument):  # wrong rank
        sess.run(None, {"x": np.ones((2, 2), np.float32), "y": x})
    unknown_op = helper.make_model(helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["z"], domain="my.ops")], "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])], [helper.make_tensor_value_info("z", TP.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)], ir_version=9)
    with pytest.raises((state.NotImplemented, state.InvalidGraph, state.Fail)):
        rt.InferenceSession(unknown_op.SerializeToString())


def test_onnxfast_errors_keep_their_python_classes():
    assert issubclass(errors.InvalidArgument, ValueError) and issubclass(errors.InvalidArgument,
                                                                         fast_state.InvalidArgument)
    assert issubclass(errors.ModelFileNotFound, FileNotFoundError) and issubclass(errors.ModelFileNotFound,
                                                                                 fast_state.NoSuchFile)
    assert issubclass(errors.UnsupportedOperator, fast_state.NotImplemented)
    assert issubclass(errors.ExecutionError, fast_state.RuntimeException)
    assert issubclass(errors.RunTerminated, fast_state.Fail)
    assert issubclass(errors.InvalidProtobufModel, fast_state.InvalidProtobuf)
    assert issubclass(errors.InvalidProtobufModel, errors.InvalidModel)


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_session_options_refuse_unknown_fields(name):
    rt, _ = RUNTIMES[name]
    so = rt.SessionOptions()
    so.intra_op_num_threads = 2
    assert so.intra_op_num_threads == 2
    with pytest.raises(AttributeError, match="intra_op_threads"):
        so.intra_op_threads = 2


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_ortvalue_element_types_and_constructors(name):
    rt, _ = RUNTIMES[name]
    V = rt.OrtValue
    v = V.ortvalue_from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert v.element_type() == TP.INT64 and isinstance(v.element_type(), int)
    assert v.data_type() == "tensor(int64)" and v.shape() == [2, 3] and v.tensor_size_in_bytes() == 48
    z = V.ortvalue_from_shape_and_type([2, 3], TP.FLOAT)  # an ONNX element type code
    assert z.numpy().dtype == np.float32 and z.numpy().shape == (2, 3)  # contents unspecified (onnxruntime's)
    assert V.ortvalue_from_shape_and_type([4], np.int32).element_type() == TP.INT32
    bf = V.ortvalue_from_numpy_with_onnx_type(np.array([0x3F80, 0x4000], np.uint16), TP.BFLOAT16)
    assert bf.data_type() == "tensor(bfloat16)" and bf.element_type() == TP.BFLOAT16
    f16 = V.ortvalue_from_numpy_with_onnx_type(np.ones(3, np.float16), TP.FLOAT16)
    assert f16.element_type() == TP.FLOAT16


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_ortvalue_from_dlpack(name):
    rt, _ = RUNTIMES[name]
    a = np.arange(5, dtype=np.float32)
    v = rt.OrtValue.from_dlpack(a.__dlpack__())
    np.testing.assert_array_equal(v.numpy(), a)
    a[0] = 42.0  # the memory is shared, not copied
    assert v.numpy()[0] == 42.0


def test_ortvalue_to_dlpack_shares_memory():
    v = onnxfast.OrtValue.ortvalue_from_numpy(np.arange(4, dtype=np.float64))
    w = np.from_dlpack(v)
    back = onnxfast.OrtValue.from_dlpack(v.to_dlpack())
    v.numpy()[1] = -1.0
    assert w[1] == -1.0 and back.numpy()[1] == -1.0


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_memory_infos_and_devices(name):
    rt, _ = RUNTIMES[name]
    sess = _session(rt, _add_model())
    infos = sess.get_input_memory_infos()
    assert len(infos) == 2 and len(sess.get_output_memory_infos()) == 1
    m = infos[0]
    assert (m.name, m.device_id, int(m.mem_type)) == ("Cpu", 0, 0)
    d = rt.OrtDevice.make("cpu", 0)
    assert (d.device_type(), d.device_id()) == (0, 0)


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_run_async(name):
    rt, _ = RUNTIMES[name]
    sess = _session(rt, _add_model())
    done = threading.Event()
    got = []

    def callback(outputs, user_data, err):
        got.append((outputs, user_data, err))
        done.set()

    x = np.array([1.0, 2.0], np.float32)
    sess.run_async(None, {"x": x, "y": x}, callback, "my data")
    assert done.wait(60)
    outputs, user_data, err = got[0]
    assert user_data == "my data" and not err
    np.testing.assert_array_equal(outputs[0], x + x)
    with pytest.raises(Exception, match="missing|required"):  # the feed's names are checked before it returns
        sess.run_async(None, {"x": x}, callback, None)


def test_run_async_reports_run_errors_to_the_callback():
    sess = _session(onnxfast, _add_model())
    done = threading.Event()
    got = []
    sess.run_async(None, {"x": np.ones(3, np.float32), "y": np.ones(2, np.float32)},
                   lambda o, u, e: (got.append((o, u, e)), done.set()), 7)
    assert done.wait(60)
    outputs, user_data, err = got[0]
    assert outputs is None and user_data == 7 and "'x'" in err


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_set_seed_makes_unseeded_random_ops_repeatable(name):
    rt, _ = RUNTIMES[name]
    rt.set_seed(1234)
    a = _session(rt, _random_model()).run(None, {})[0]
    b = _session(rt, _random_model()).run(None, {})[0]
    np.testing.assert_array_equal(a, b)
    rt.set_seed(99)
    c = _session(rt, _random_model()).run(None, {})[0]
    assert not np.array_equal(a, c)


def test_set_seed_value_is_per_process_state():
    from onnxfast.ops import _common

    onnxfast.set_seed(5)
    assert _common.GLOBAL_SEED[0] == 5
    _common.GLOBAL_SEED[0] = None  # leave other tests their fresh entropy


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_logger_severity_and_build_info(name):
    rt, _ = RUNTIMES[name]
    rt.set_default_logger_severity(3)
    rt.set_default_logger_severity(2)
    assert "Build Info" in rt.get_build_info()


def test_log_severity_verbose_prints(tmp_path):
    """log_severity_level=0 prints onnxfast's verbose / info messages to stderr (onnxruntime prints its own),
    in a fresh process: no logging configured by the application."""
    import subprocess
    import sys

    (tmp_path / "m.onnx").write_bytes(_add_model())
    code = ("import onnxfast; so = onnxfast.SessionOptions(); so.log_severity_level = 0; "
            "onnxfast.InferenceSession('m.onnx', so)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "session created" in r.stderr
    code = code.replace("= 0", "= 2")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "session created" not in r.stderr


def test_invalid_logger_severity():
    with pytest.raises(errors.InvalidArgument):
        onnxfast.set_default_logger_severity(7)
    onnx.checker.check_model(onnx.load_from_string(_add_model()))


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_disabled_optimizers_keyword(name):
    rt, _ = RUNTIMES[name]
    from onnxfast.cli import DEMO_MODEL

    s = rt.InferenceSession(DEMO_MODEL, disabled_optimizers=["GeluFusion"], providers=["CPUExecutionProvider"])
    assert s.run(None, {"input": np.ones((2, 16), np.float32)})[1].shape == (2, 8)
