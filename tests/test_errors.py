"""Every error a user can hit is a standard Python exception naming the culprit."""

import numpy as np
import pytest
from onnx_helpers import F, make_model, session, vi
from onnx import TensorProto, helper, numpy_helper

import onnxfast
from onnxfast import errors


def two_input_model():
    return make_model(
        [helper.make_node("Add", ["x", "y"], ["z"], name="adder")],
        [vi("x", F, ["batch", 3]), vi("y", F, ["batch", 3])],
        [vi("z", F, ["batch", 3])],
    )


@pytest.fixture
def s():
    return session(two_input_model())


X = np.ones((2, 3), np.float32)


def test_missing_input(s):
    with pytest.raises(ValueError, match=r"required inputs \['y'\] are missing"):
        s.run(None, {"x": X})


def test_unknown_input(s):
    with pytest.raises(ValueError, match=r"unknown input name 'xx'; the model's inputs are \['x', 'y'\]"):
        s.run(None, {"xx": X, "y": X})


def test_wrong_dtype(s):
    with pytest.raises(TypeError, match=r"input 'x' has the wrong type: expected tensor\(float\), got tensor\(double\)"):
        s.run(None, {"x": X.astype(np.float64), "y": X})


def test_wrong_rank(s):
    with pytest.raises(ValueError, match=r"input 'y' has the wrong rank: expected 2 dimensions, got 3"):
        s.run(None, {"x": X, "y": X[None]})


def test_wrong_dimension(s):
    with pytest.raises(ValueError, match=r"input 'x' has the wrong size on axis 1: expected 3, got 4"):
        s.run(None, {"x": np.ones((2, 4), np.float32), "y": X})


def test_not_an_array(s):
    with pytest.raises(TypeError, match="input 'x' must be a numpy array, got list"):
        s.run(None, {"x": [[1.0, 2.0, 3.0]], "y": X})
    with pytest.raises(TypeError, match="input 'x' is None"):
        s.run(None, {"x": None, "y": X})
    with pytest.raises(TypeError, match="input_feed must be a dict"):
        s.run(None, [X, X])


def test_unknown_output(s):
    with pytest.raises(ValueError, match=r"unknown output name 'w'; the model's outputs are \['z'\]"):
        s.run(["w"], {"x": X, "y": X})


def test_non_contiguous_and_byteswapped_inputs_work(s):
    big = np.ones((2, 6), np.float32)[:, ::2]
    swapped = X.astype(">f4")
    np.testing.assert_array_equal(s.run(None, {"x": big, "y": swapped})[0], 2 * X)


def test_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found: '.*nope.onnx'"):
        onnxfast.InferenceSession(str(tmp_path / "nope.onnx"))


def test_corrupt_and_truncated_protobuf(tmp_path):
    data = two_input_model().SerializeToString()
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        onnxfast.InferenceSession(b"\xff\xfe garbage \x00\x01" * 10)
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        onnxfast.InferenceSession(str(p))
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        onnxfast.InferenceSession(b"")
    with pytest.raises(TypeError, match="cannot load a model from int"):
        onnxfast.InferenceSession(42)


def test_undefined_value():
    m = make_model([helper.make_node("Relu", ["ghost"], ["y"], name="r")], [vi("x", F, [1])], [vi("y", F, [1])])
    with pytest.raises(ValueError, match="node 'r' \\(Relu\\) reads 'ghost', which no node"):
        session(m)


def test_cycle():
    m = make_model(
        [helper.make_node("Relu", ["b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")],
        [vi("x", F, [1])],
        [vi("a", F, [1])],
    )
    with pytest.raises(ValueError, match="cycle through nodes \\['n1', 'n2'\\]"):
        session(m)


def test_value_defined_twice():
    m = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="n1"), helper.make_node("Abs", ["x"], ["y"], name="n2")],
        [vi("x", F, [1])],
        [vi("y", F, [1])],
    )
    with pytest.raises(ValueError, match="'y' is defined twice"):
        session(m)


def test_unsupported_op_at_creation():
    m = make_model(
        [helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")],
        [vi("x", F, [1])],
        [vi("y", F, [1])],
        extra_opsets=[("com.example", 3)],
    )
    with pytest.raises(NotImplementedError, match="operator 'FancyOp' \\(domain 'com.example', opset 3\\) used by node 'fancy'"):
        session(m)


def test_impossible_allocation_native():
    m = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")],
        [vi("a", F, [None, 1]), vi("b", F, [1, None])],
        [vi("c", F, None)],
    )
    s = session(m)
    a = np.ones((1 << 20, 1), np.float32)
    b = np.ones((1, 1 << 20), np.float32)
    with pytest.raises(MemoryError, match="MatMul 'mm' output asks for 4398046511104 bytes"):
        s.run(None, {"a": a, "b": b})


def test_impossible_allocation_numpy_kernel():
    m = make_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="cos")],
        [vi("shape", TensorProto.INT64, [2])],
        [vi("y", F, None)],
    )
    s = session(m)
    with pytest.raises(MemoryError, match="cos"):
        s.run(None, {"shape": np.array([1 << 30, 1 << 30], np.int64)})


def test_index_out_of_range():
    m = make_model(
        [helper.make_node("Gather", ["data", "idx"], ["y"], name="g", axis=0)],
        [vi("data", F, [3, 2]), vi("idx", TensorProto.INT64, [None])],
        [vi("y", F, None)],
    )
    s = session(m)
    d = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(s.run(None, {"data": d, "idx": np.array([-1, 0], np.int64)})[0], d[[2, 0]])
    with pytest.raises(IndexError, match="g"):
        s.run(None, {"data": d, "idx": np.array([0, 3], np.int64)})


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])
def test_integer_division_never_crashes(dtype):
    code = onnxfast.dtypes.onnx_code(dtype)
    m = make_model(
        [helper.make_node("Div", ["a", "b"], ["c"], name="div")],
        [vi("a", code, [None]), vi("b", code, [None])],
        [vi("c", code, [None])],
    )
    s = session(m)
    a = np.array([7, -7, 6], dtype=dtype) if np.issubdtype(dtype, np.signedinteger) else np.array([7, 9, 6], dtype)
    b = np.array([2, 2, 3], dtype=dtype)
    expect = np.trunc(a.astype(np.float64) / b.astype(np.float64)).astype(dtype)  # truncation, as ONNX Runtime
    np.testing.assert_array_equal(s.run(None, {"a": a, "b": b})[0], expect)
    with pytest.raises(ZeroDivisionError, match="div"):
        s.run(None, {"a": a, "b": np.array([1, 0, 1], dtype)})
    if np.issubdtype(dtype, np.signedinteger):
        lo = np.iinfo(dtype).min
        with pytest.raises(OverflowError, match="div"):
            s.run(None, {"a": np.array([lo], dtype), "b": np.array([-1], dtype)})


def test_integer_mod_by_zero():
    m = make_model(
        [helper.make_node("Mod", ["a", "b"], ["c"], name="mod")],
        [vi("a", TensorProto.INT32, [None]), vi("b", TensorProto.INT32, [None])],
        [vi("c", TensorProto.INT32, [None])],
    )
    s = session(m)
    with pytest.raises(ZeroDivisionError, match="mod"):
        s.run(None, {"a": np.array([1], np.int32), "b": np.array([0], np.int32)})


def _external_model(tmp_path, location, nbytes=None):
    w = np.arange(4, dtype=np.float32)
    t = numpy_helper.from_array(w, "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(nbytes or w.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    m = make_model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x", F, [4])], [vi("y", F, [4])])
    m.graph.initializer.append(t)
    d = tmp_path / "model"
    d.mkdir()
    p = d / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p, w


def test_external_data_loads_and_is_memory_mapped(tmp_path):
    p, w = _external_model(tmp_path, "weights.bin")
    (p.parent / "weights.bin").write_bytes(w.tobytes())
    s = onnxfast.InferenceSession(str(p))
    np.testing.assert_array_equal(s.run(None, {"x": np.ones(4, np.float32)})[0], w + 1)
    # The initializer's array is a read-only view of a memory map, not a copy.
    arr = s._model.graph.initializers["w"]
    assert not arr.flags.writeable and not arr.flags.owndata


def test_external_data_outside_folder_relative(tmp_path):
    p, w = _external_model(tmp_path, "../secret.bin")
    (tmp_path / "secret.bin").write_bytes(w.tobytes())
    with pytest.raises(ValueError, match="points outside the model's folder"):
        onnxfast.InferenceSession(str(p))


def test_external_data_outside_folder_absolute(tmp_path):
    target = tmp_path / "abs.bin"
    target.write_bytes(np.zeros(4, np.float32).tobytes())
    p, _ = _external_model(tmp_path, str(target))
    with pytest.raises(ValueError, match="is an absolute path"):
        onnxfast.InferenceSession(str(p))


def test_external_data_missing_or_truncated(tmp_path):
    p, w = _external_model(tmp_path, "weights.bin")
    with pytest.raises(FileNotFoundError, match="weights.bin"):
        onnxfast.InferenceSession(str(p))
    (p.parent / "weights.bin").write_bytes(w.tobytes()[:7])
    with pytest.raises(ValueError, match="truncated"):
        onnxfast.InferenceSession(str(p))


def test_external_data_from_bytes_needs_folder(tmp_path):
    p, w = _external_model(tmp_path, "weights.bin")
    (p.parent / "weights.bin").write_bytes(w.tobytes())
    data = p.read_bytes()
    with pytest.raises(ValueError, match="model_external_initializers_file_folder_path"):
        onnxfast.InferenceSession(data)
    o = onnxfast.SessionOptions()
    o.add_session_config_entry("session.model_external_initializers_file_folder_path", str(p.parent))
    s = onnxfast.InferenceSession(data, o)
    np.testing.assert_array_equal(s.run(None, {"x": np.zeros(4, np.float32)})[0], w)


def test_kernel_error_names_node():
    m = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshaper")],
        [vi("x", F, [None]), vi("shape", TensorProto.INT64, [1])],
        [vi("y", F, None)],
    )
    s = session(m)
    with pytest.raises(ValueError, match="reshaper"):
        s.run(None, {"x": np.ones(6, np.float32), "shape": np.array([4], np.int64)})
    assert issubclass(errors.InvalidArgument, errors.OnnxfastError)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_models_raise_python_errors(tmp_path, seed):
    """Random byte mutations of a model: session creation and a run either work or raise an
    onnxfast error (never a crash, a hang or a bare exception from a dependency)."""
    import subprocess
    import sys

    code = r"""
import random, sys, warnings
import onnxfast
from onnxfast.cli import DEMO_MODEL, random_inputs
from onnxfast.errors import OnnxfastError
warnings.simplefilter("ignore")
data = open(DEMO_MODEL, "rb").read()
rng = random.Random(int(sys.argv[1]))
bad = 0
for _ in range(150):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    try:
        s = onnxfast.InferenceSession(bytes(b))
        s.run(None, random_inputs(s))
    except OnnxfastError:
        pass
    except Exception as e:
        bad += 1
        print(type(e).__name__, e)
print("bad", bad)
"""
    r = subprocess.run([sys.executable, "-c", code, str(seed)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, f"seed {seed}: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert r.stdout.strip().endswith("bad 0"), f"seed {seed}:\n{r.stdout[-2000:]}"
