"""Helpers for tests: tiny models built with onnx.helper."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def vi(name, elem=F, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=(), opset=18, ir_version=9, functions=(), extra_opsets=()):
    graph = helper.make_graph(
        nodes,
        "test_graph",
        inputs,
        outputs,
        [numpy_helper.from_array(np.asarray(a), n) if not isinstance(a, onnx.TensorProto) else a
         for n, a in initializers],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    m.ir_version = ir_version
    return m


def session(model, **kw):
    import onnxfast

    return onnxfast.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, **kw)


def native_and_numpy(model, op, threads=0, level=None):
    """Two sessions of `model`: one with op's numpy kernel disabled (its kernel listing must say native),
    one with every native kernel disabled (numpy), as the reference the native kernel is tested against.
    level: the graph optimization level (0 keeps a node the optimizer would drop, an identity Transpose)."""
    import onnxfast

    def make(disabled):
        o = onnxfast.SessionOptions()
        if level is not None:
            o.graph_optimization_level = onnxfast.GraphOptimizationLevel(level)
        o.add_session_config_entry("onnxfast.disable_kernels", disabled)
        if threads:
            o.intra_op_num_threads = threads
        return onnxfast.InferenceSession(model.SerializeToString(), o)

    nat, ref = make(f"numpy:{op}"), make("native")
    kinds = [r["kernel"] for r in nat.kernel_listing() if r["op_type"] == op]
    assert kinds and all(k in ("native", "native:prepacked", "native:view") for k in kinds), kinds
    assert all(r["kernel"] == "numpy" for r in ref.kernel_listing() if r["op_type"] == op)
    return nat, ref


def noncontiguous(x):
    """x's values as a non-contiguous view (the transpose of a transposed copy; 1-D: every other
    element of a buffer twice as long; 0-D: x itself)."""
    if x.ndim == 0:
        return x
    if x.ndim == 1:
        buf = np.zeros(2 * x.shape[0], x.dtype)
        buf[::2] = x
        return buf[::2]
    v = np.ascontiguousarray(x.T).T
    assert not v.flags.c_contiguous or x.size == 0 or sum(d > 1 for d in x.shape) <= 1
    return v


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def child_env(drop: tuple[str, ...] = ()) -> dict:
    """The environment for a child interpreter that imports the same onnxfast as this process
    (and these helpers): the package's root and tests/ lead PYTHONPATH; empty entries, which mean
    the cwd, are dropped. Variables named in ``drop`` are removed."""
    import onnxfast

    env = {k: v for k, v in os.environ.items() if k not in drop}
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(onnxfast.__file__)))
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, TESTS_DIR] + rest)
    return env


def run_python(args: list, *, timeout: float, drop_env: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    """``python args...`` in a fresh interpreter with child_env(), text output captured. The cwd is
    outside the repository: `python -c` puts the cwd first on sys.path, and the source tree's
    onnxfast/ (no compiled _core when the package is pip-installed) would shadow the tested one."""
    return subprocess.run([sys.executable, *map(str, args)], env=child_env(drop_env), capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir(), **kw)


def assert_svm_regression_matches_sklearn(name, model, xi, out):
    """A converted scikit-learn SVM regressor's outputs against scikit-learn: a OneClassSVM's scores (its
    decision function) and its labels where the decision is not a near-tie; other regressors' values."""
    if name == "oneclass":
        label, scores = out
        ref = model.decision_function(xi)
        np.testing.assert_allclose(np.asarray(scores).ravel(), ref, rtol=1e-4, atol=1e-4)
        sure = np.abs(ref) > 1e-3
        np.testing.assert_array_equal(np.asarray(label).ravel()[sure], model.predict(xi)[sure])
    else:
        ref = model.predict(xi)
        np.testing.assert_allclose(out[0].ravel(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
