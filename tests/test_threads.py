"""One session, many threads: run() is re-entrant (per-run value tables, no shared scratch)."""

import threading

import numpy as np
from onnx_helpers import F, make_model, vi
from onnx import helper

import onnxfast


def mixed_model(rng):
    # native (Conv, Relu, Gemm) and numpy (MaxPool, Flatten, Softmax) kernels in one graph
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    fc = (rng.standard_normal((8 * 4 * 4, 10)) * 0.1).astype(np.float32)
    return make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "fc"], ["g"]),
            helper.make_node("Softmax", ["g"], ["y"], axis=1),
        ],
        [vi("x", F, ["n", 3, 8, 8])],
        [vi("y", F, ["n", 10])],
        initializers=[("w", w), ("fc", fc)],
    )


def test_eight_threads_fifty_runs(rng):
    sess = onnxfast.InferenceSession(mixed_model(rng).SerializeToString())
    inputs = [rng.standard_normal((1 + i % 3, 3, 8, 8)).astype(np.float32) for i in range(8)]
    expected = [sess.run(None, {"x": x})[0] for x in inputs]
    errors: list[str] = []

    def worker(i):
        try:
            for _ in range(50):
                got = sess.run(None, {"x": inputs[i]})[0]
                if not np.array_equal(got, expected[i]):
                    errors.append(f"thread {i}: wrong output")
                    return
        except Exception as e:  # pragma: no cover - reported below
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_results_are_deterministic(rng):
    sess = onnxfast.InferenceSession(mixed_model(rng).SerializeToString())
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    first = sess.run(None, {"x": x})[0]
    for _ in range(10):
        assert np.array_equal(sess.run(None, {"x": x})[0], first)
