"""Run-path overhead: a one-node Add of one float (onnxfast vs onnxruntime), per-node dispatch cost
of a long chain, and two threads running one session (the GIL is released, runs overlap)."""

import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfast

ort = pytest.importorskip("onnxruntime")


def _model(n_nodes: int, shape) -> onnx.ModelProto:
    nodes, prev = [], "x"
    for i in range(n_nodes):
        nodes.append(helper.make_node("Add", [prev, "y"], [f"t{i}"]))
        prev = f"t{i}"
    nodes[-1].output[0] = "z"
    g = helper.make_graph(nodes, "chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def _sessions(model):
    data = model.SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return {
        "onnxfast": onnxfast.InferenceSession(data),
        "onnxruntime": ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]),
    }


@pytest.mark.parametrize("runtime", ["onnxfast", "onnxruntime"])
def test_add_one_float(benchmark, runtime):
    sess = _sessions(_model(1, [1]))[runtime]
    x = np.ones(1, np.float32)
    feed = {"x": x, "y": x}
    benchmark.group = "run-overhead: Add of one float"
    out = benchmark(sess.run, None, feed)
    assert out[0][0] == 2.0


@pytest.mark.parametrize("runtime", ["onnxfast", "onnxruntime"])
def test_chain_of_100_adds(benchmark, runtime):
    sess = _sessions(_model(100, [4]))[runtime]
    x = np.ones(4, np.float32)
    benchmark.group = "dispatch: 100-node chain (per-node cost = time / 100)"
    out = benchmark(sess.run, None, {"x": x, "y": x})
    assert out[0][0] == 101.0


def _heavy_model():
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        inits.append(numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32) / 23, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes[-1].output[0] = "z"
    g = helper.make_graph(nodes, "heavy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 512])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [256, 512])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def test_two_threads_overlap(benchmark):
    """Two threads x N runs vs one thread x N runs of a single-threaded heavy model.
    extra_info['ratio'] near 1.0 means full overlap; 2.0 would mean the runs serialize."""
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = 1  # single-threaded kernels: any overlap comes from concurrent runs
    sess = onnxfast.InferenceSession(_heavy_model().SerializeToString(), o)
    x = np.ones((256, 512), np.float32)
    n = 10

    def one():
        for _ in range(n):
            sess.run(None, {"x": x})

    def two():
        ts = [threading.Thread(target=one) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    if benchmark.disabled:  # the default test run: one pass as a correctness check
        benchmark(two)
        return
    one()
    t1 = min(_timed(one) for _ in range(3))
    t2 = min(_timed(two) for _ in range(3))
    benchmark.group = "concurrency"
    benchmark.extra_info["one_thread_s"] = t1
    benchmark.extra_info["two_threads_s"] = t2
    benchmark.extra_info["ratio"] = t2 / t1
    benchmark.pedantic(two, rounds=1, iterations=1)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
