"""The smoke subset a built wheel must pass in a fresh environment (ci/build_wheel.sh, cibuildwheel's
test-command): the package imports with its native core, the shipped demo model runs, a few operators
(native float kernels, a string / map pipeline, control flow) agree with onnxruntime when it is installed,
errors are onnxfast's classes, and the CLI answers.

    python ci/smoke.py        # exit 0 when every check passed; prints one line per check
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def _model(nodes, inputs, outputs, opsets=(("", 17),)):
    g = helper.make_graph(nodes, "smoke", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             ir_version=9).SerializeToString()


def _ort_session(data):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@check
def native_core():
    import onnxfast
    from onnxfast import _core

    info = _core.cpu_info()
    assert info["isa"] in ("portable", "avx2", "avx512", "neon"), info
    return f"onnxfast {onnxfast.__version__}, kernels {info['isa']}, {onnxfast.get_build_info()}"


@check
def demo_model():
    import onnxfast
    from onnxfast.cli import DEMO_MODEL

    s = onnxfast.InferenceSession(DEMO_MODEL)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    _, probs = s.run(None, {"input": x})
    assert probs.shape == (4, 8) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    ref = _ort_session(open(DEMO_MODEL, "rb").read())
    if ref is not None:
        np.testing.assert_allclose(probs, ref.run(None, {"input": x})[1], rtol=1e-4, atol=1e-6)
    return "demo MLP runs" + (" and matches onnxruntime" if ref is not None else "")


@check
def float_kernels():
    import onnxfast

    F = TensorProto.FLOAT
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", F, [1, 3, 9, 7])],
                          [helper.make_tensor_value_info("y", F, None)],
                          [helper.make_tensor("w", F, w.shape, w.ravel())])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    x = rng.standard_normal((1, 3, 9, 7)).astype(np.float32)
    s = onnxfast.InferenceSession(data)
    assert all(r["kernel"].startswith("native") for r in s.kernel_listing()), s.kernel_listing()
    got = s.run(None, {"x": x})[0]
    ref = _ort_session(data)
    if ref is not None:
        np.testing.assert_allclose(got, ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    return "Conv + Relu + Softmax on native kernels"


@check
def strings_and_maps():
    import onnxfast

    data = _model([helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_strings=["a", "b"],
                                    values_int64s=[1, 2], default_int64=-1)],
                  [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
                  [helper.make_tensor_value_info("y", TensorProto.INT64, [None])],
                  opsets=(("", 17), ("ai.onnx.ml", 2)))
    s = onnxfast.InferenceSession(data)
    assert [r["kernel"] for r in s.kernel_listing()] == ["native:objects"]
    y = s.run(None, {"x": np.array(["b", "z", "a"])})[0]
    assert y.tolist() == [2, -1, 1], y
    return "string LabelEncoder on its C++ kernel"


@check
def control_flow():
    import onnxfast

    B, F = TensorProto.BOOL, TensorProto.FLOAT
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, [2])])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F, [2])])
    data = _model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
                  [helper.make_tensor_value_info("c", B, []), helper.make_tensor_value_info("x", F, [2])],
                  [helper.make_tensor_value_info("y", F, [2])])
    s = onnxfast.InferenceSession(data)
    x = np.array([-1.5, 2.0], np.float32)
    assert s.run(None, {"c": np.array(True), "x": x})[0].tolist() == [1.5, -2.0]
    assert s.run(None, {"c": np.array(False), "x": x})[0].tolist() == [1.5, 2.0]
    return "If runs both branches"


@check
def errors():
    import onnxfast
    from onnxfast.capi.onnxruntime_pybind11_state import NoSuchFile

    try:
        onnxfast.InferenceSession("/no/such/model.onnx")
    except NoSuchFile as e:
        assert isinstance(e, onnxfast.errors.ModelFileNotFound)
    else:
        raise AssertionError("a missing model file did not raise")
    return "errors are onnxfast's and onnxruntime's classes"


@check
def cli():
    r = subprocess.run([sys.executable, "-m", "onnxfast", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("onnxfast "), (r.stdout, r.stderr)
    return r.stdout.strip()


def main() -> int:
    failed = 0
    for fn in CHECKS:
        try:
            print(f"ok   {fn.__name__}: {fn()}")
        except Exception as e:  # noqa: BLE001 - every check reports
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
    print(f"smoke: {len(CHECKS) - failed} of {len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
