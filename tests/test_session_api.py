"""The session API matches onnxruntime's shape: NodeArg, metadata, options, providers, run variants."""

import warnings

import numpy as np
import onnx
import pytest
from onnx_helpers import F, make_model, session, vi
from onnx import TensorProto, helper

import onnxfast


def add_model(shape=("batch", 3)):
    return make_model(
        [helper.make_node("Add", ["x", "y"], ["z"]), helper.make_node("Relu", ["z"], ["r"])],
        [vi("x", F, list(shape)), vi("y", F, list(shape))],
        [vi("z", F, list(shape)), vi("r", F, list(shape))],
    )


def test_run_matches_numpy_and_changes_batch(rng):
    s = session(add_model())
    for b in (1, 5, 0, 17):
        x = rng.standard_normal((b, 3)).astype(np.float32)
        y = rng.standard_normal((b, 3)).astype(np.float32)
        z, r = s.run(None, {"x": x, "y": y})
        np.testing.assert_allclose(z, x + y, rtol=1e-6)
        np.testing.assert_allclose(r, np.maximum(x + y, 0), rtol=1e-6)
        assert z.flags.writeable and z.flags.owndata or z.base is not None


def test_output_selection_and_order():
    s = session(add_model())
    x = np.ones((2, 3), np.float32)
    (r,) = s.run(["r"], {"x": x, "y": x})
    r2, z2 = s.run(["r", "z"], {"x": x, "y": x})
    assert r.shape == (2, 3) and np.array_equal(r2, r) and np.array_equal(z2, x + x)
    assert len(s.run([], {"x": x, "y": x})) == 2  # empty list = all outputs, as in onnxruntime


def test_nodearg_and_metadata():
    m = add_model()
    m.producer_name = "tests"
    m.doc_string = "desc"
    m.model_version = 7
    helper.set_model_props(m, {"author": "me"})
    s = session(m)
    ins = s.get_inputs()
    assert [i.name for i in ins] == ["x", "y"]
    assert ins[0].type == "tensor(float)" and ins[0].shape == ["batch", 3]
    assert [o.name for o in s.get_outputs()] == ["z", "r"]
    meta = s.get_modelmeta()
    assert meta.producer_name == "tests" and meta.description == "desc" and meta.version == 7
    assert meta.custom_metadata_map == {"author": "me"} and meta.graph_name == "test_graph"


def test_unknown_dims_and_other_types():
    m = make_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.INT64, [None, "s", 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    s = session(m)
    assert s.get_inputs()[0].shape == [None, "s", 4]
    assert s.get_inputs()[0].type == "tensor(int64)"
    x = np.arange(8, dtype=np.int64).reshape(1, 2, 4)
    (y,) = s.run(None, {"x": x})
    assert np.array_equal(y, x)
    y[0, 0, 0] = 99  # the caller owns the result; the input is untouched
    assert x[0, 0, 0] == 0


def test_overridable_initializers():
    m = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [vi("x", F, [2]), vi("w", F, [2])],
        [vi("y", F, [2])],
        initializers=[("w", np.array([1, 2], np.float32))],
    )
    s = session(m)
    assert [i.name for i in s.get_inputs()] == ["x"]
    assert [i.name for i in s.get_overridable_initializers()] == ["w"]
    x = np.zeros(2, np.float32)
    assert np.array_equal(s.run(None, {"x": x})[0], [1, 2])
    assert np.array_equal(s.run(None, {"x": x, "w": np.array([5, 5], np.float32)})[0], [5, 5])


def test_session_options_defaults_like_onnxruntime():
    o = onnxfast.SessionOptions()
    assert o.intra_op_num_threads == 0 and o.inter_op_num_threads == 0
    assert o.execution_mode == onnxfast.ExecutionMode.ORT_SEQUENTIAL
    assert o.graph_optimization_level == onnxfast.GraphOptimizationLevel.ORT_ENABLE_ALL == 99
    assert o.enable_cpu_mem_arena and o.enable_mem_pattern and not o.enable_profiling
    assert o.log_severity_level == -1
    o.add_session_config_entry("session.disable_prepacking", "1")
    assert o.get_session_config_entry("session.disable_prepacking") == "1"
    with pytest.warns(onnxfast.errors.OnnxfastWarning, match="not recognized"):
        o.add_session_config_entry("session.no_such_key", "1")
    with pytest.raises(ValueError, match="no_such"):
        onnxfast.SessionOptions().get_session_config_entry("no_such")


def test_free_dimension_override():
    o = onnxfast.SessionOptions()
    o.add_free_dimension_override_by_name("batch", 2)
    s = session(add_model(), sess_options=o)
    assert s.get_inputs()[0].shape == [2, 3]
    with pytest.raises(ValueError, match="axis 0"):
        s.run(None, {"x": np.ones((3, 3), np.float32), "y": np.ones((3, 3), np.float32)})


def test_providers_and_fallback_warning():
    assert onnxfast.get_available_providers() == ["CPUExecutionProvider"]
    s = session(add_model(), providers=["CPUExecutionProvider"])
    assert s.get_providers() == ["CPUExecutionProvider"]
    assert s.get_provider_options() == {"CPUExecutionProvider": {}}
    with pytest.warns(UserWarning, match="CUDAExecutionProvider is not available"):
        s2 = session(add_model(), providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    assert s2.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="unknown provider 'NopeExecutionProvider'"):
        session(add_model(), providers=["NopeExecutionProvider"])
    s.set_providers(["CPUExecutionProvider"])
    assert s.get_providers() == ["CPUExecutionProvider"]


def test_unimplemented_options_warn():
    o = onnxfast.SessionOptions()
    o.execution_mode = onnxfast.ExecutionMode.ORT_PARALLEL
    with pytest.warns(onnxfast.errors.OnnxfastWarning, match="ORT_PARALLEL"):
        session(add_model(), sess_options=o)
    with pytest.raises(NotImplementedError):
        onnxfast.SessionOptions().register_custom_ops_library("x.so")
    # stored but not implemented: said, not silently ignored
    o = onnxfast.SessionOptions()
    o.execution_order = onnxfast.ExecutionOrder.PRIORITY_BASED
    with pytest.warns(onnxfast.errors.OnnxfastWarning, match="execution_order = PRIORITY_BASED"):
        session(add_model(), sess_options=o)
    o = onnxfast.SessionOptions()
    o.enable_mem_reuse = False
    with pytest.warns(onnxfast.errors.OnnxfastWarning, match="enable_mem_reuse"):
        session(add_model(), sess_options=o)


def test_run_options_terminate():
    s = session(add_model())
    ro = onnxfast.RunOptions()
    assert ro.terminate is False
    ro.terminate = True
    x = np.ones((1, 3), np.float32)
    with pytest.raises(RuntimeError, match="terminate"):
        s.run(None, {"x": x, "y": x}, ro)
    ro.terminate = False
    s.run(None, {"x": x, "y": x}, ro)
    ro.add_run_config_entry("k", "v")
    assert ro.get_run_config_entry("k") == "v"


def test_ortvalue_and_run_with_ort_values():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = onnxfast.OrtValue.ortvalue_from_numpy(x)
    assert v.numpy() is x and v.shape() == [2, 3] and v.data_type() == "tensor(float)"
    assert v.device_name() == "cpu" and v.is_tensor() and v.has_value()
    assert v.data_ptr() == x.ctypes.data  # zero-copy
    s = session(add_model())
    z, r = s.run_with_ort_values(None, {"x": v, "y": v})
    assert isinstance(z, onnxfast.OrtValue) and np.array_equal(z.numpy(), x + x)
    with pytest.raises(NotImplementedError, match="cuda"):
        onnxfast.OrtValue.ortvalue_from_numpy(x, "cuda", 0)


def test_io_binding_into_user_buffer():
    s = session(add_model())
    x = np.ones((2, 3), np.float32)
    out = np.zeros((2, 3), np.float32)
    b = s.io_binding()
    b.bind_cpu_input("x", x)
    b.bind_input("y", "cpu", 0, np.float32, [2, 3], x.ctypes.data)
    b.bind_output("z", "cpu", 0, np.float32, [2, 3], out.ctypes.data)
    b.bind_output("r")
    s.run_with_iobinding(b)
    assert np.array_equal(out, 2 * x)
    z, r = b.copy_outputs_to_cpu()
    assert np.array_equal(z, 2 * x) and np.array_equal(r, 2 * x)
    assert b.get_outputs()[0].data_ptr() == out.ctypes.data  # the bound buffer itself
    with pytest.raises(ValueError, match="unknown output name 'nope'"):
        b.bind_output("nope")


def test_kernel_listing_and_profiling(tmp_path):
    o = onnxfast.SessionOptions()
    o.enable_profiling = True
    o.profile_file_prefix = str(tmp_path / "prof_")
    s = session(add_model(), sess_options=o)
    listing = s.kernel_listing()
    assert [(r["node"], r["kernel"], r["provider"]) for r in listing] == [
        ("Add_0", "native", "CPUExecutionProvider"),
        ("Relu_1", "native", "CPUExecutionProvider"),
    ]
    x = np.ones((2, 3), np.float32)
    s.run(None, {"x": x, "y": x})
    path = s.end_profiling()
    import json

    events = json.load(open(path))
    assert isinstance(events, list)
    names = {e["name"] for e in events}
    assert {"model_loading", "session_initialization", "model_run", "Add_0_kernel_time"} <= names
    for e in events:
        assert e["ph"] == "X" and {"ts", "dur", "pid", "tid", "cat"} <= set(e)
    node = next(e for e in events if e["name"] == "Add_0_kernel_time")
    assert node["args"]["op_name"] == "Add" and node["args"]["provider"] == "CPUExecutionProvider"
    assert node["args"]["input_type_shape"] == [{"float": [2, 3]}, {"float": [2, 3]}]
    assert s.end_profiling() == ""


def test_load_from_path_bytes_and_proto(tmp_path):
    m = add_model()
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    x = np.ones((1, 3), np.float32)
    for src in (str(p), p, m.SerializeToString(), m):
        s = onnxfast.InferenceSession(src)
        assert np.array_equal(s.run(["z"], {"x": x, "y": x})[0], 2 * x)
    # The user's ModelProto is not modified by loading.
    assert m.SerializeToString() == onnx.load(p).SerializeToString()


def test_demo_model_ships_and_runs():
    import os

    from onnxfast.cli import DEMO_MODEL

    assert os.path.exists(DEMO_MODEL)
    s = onnxfast.InferenceSession(DEMO_MODEL)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    logits, probs = s.run(None, {"input": x})
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import onnxruntime as ort

        ref = ort.InferenceSession(DEMO_MODEL, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(logits, ref[0], rtol=1e-5, atol=1e-6)


def _custom_model():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Scale", ["x"], ["y"], domain="my.ops", name="s", factor=3.0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)],
                             ir_version=9).SerializeToString()


def test_custom_op_is_per_session():
    """SessionOptions.register_custom_op: a Python kernel for a domain/op in the sessions of these options only."""
    seen = []

    def factory(node):
        seen.append((node.op_type, node.domain, node.attrs.get("factor"), node.input_types))
        factor = np.float32(node.attrs["factor"])
        return lambda x: x * factor

    o = onnxfast.SessionOptions()
    o.register_custom_op("Scale", factory, domain="my.ops")
    s = onnxfast.InferenceSession(_custom_model(), o)
    assert seen == [("Scale", "my.ops", 3.0, [1])]
    np.testing.assert_array_equal(s.run(None, {"x": np.array([1, 2], np.float32)})[0], [3, 6])
    assert [r["kernel"] for r in s.kernel_listing()] == ["custom"]
    with pytest.raises(onnxfast.errors.UnsupportedOperator, match="Scale"):  # not registered there
        onnxfast.InferenceSession(_custom_model())
    with pytest.raises(onnxfast.errors.InvalidArgument, match="domain of your own"):
        o.register_custom_op("Relu", factory)
    with pytest.raises(onnxfast.errors.InvalidArgument, match="callable"):
        o.register_custom_op("Other", 3, domain="my.ops")


def test_custom_op_errors_name_the_node():
    def factory(node):
        def run(x):
            raise ValueError("bad value")
        return run

    o = onnxfast.SessionOptions()
    o.register_custom_op("Scale", factory, domain="my.ops")
    s = onnxfast.InferenceSession(_custom_model(), o)
    with pytest.raises(onnxfast.errors.InvalidArgument, match="Scale node 's': bad value"):
        s.run(None, {"x": np.ones(2, np.float32)})
