"""One session, many threads: run() is re-entrant (per-run value tables, no shared scratch)."""

import threading

import numpy as np
import pytest
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


def test_numpy_steps_run_with_blas_limited_and_restored():
    """numpy-implemented nodes run with numpy's BLAS at one thread (so it does not fight the
    session's pool); the caller's setting is back after the run, also after a failing run."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from onnxfast.session import _BLAS_LIMIT, _BlasLimit

    libs = _BlasLimit._blas_libs()
    if not libs:
        pytest.skip("numpy has no BLAS library threadpoolctl can control")
    before = [c.get_num_threads() for c in libs]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outer = [c.get_num_threads() for c in libs]
        with _BLAS_LIMIT:
            assert [c.get_num_threads() for c in libs] == [1] * len(libs)
            with _BLAS_LIMIT:  # nested / concurrent runs keep the limit until the last one leaves
                pass
            assert [c.get_num_threads() for c in libs] == [1] * len(libs)
        assert [c.get_num_threads() for c in libs] == outer
        # A float64 MatMul is a numpy kernel: the session limits BLAS around its run.
        from onnx import TensorProto, helper

        m = make_model([helper.make_node("MatMul", ["a", "b"], ["c"])],
                       [vi("a", TensorProto.DOUBLE, [64, 64]), vi("b", TensorProto.DOUBLE, [64, 64])],
                       [vi("c", TensorProto.DOUBLE)])
        s = onnxfast.InferenceSession(m.SerializeToString())
        assert s._limit_blas
        a = np.ones((64, 64))
        np.testing.assert_allclose(s.run(None, {"a": a, "b": a})[0], a @ a)
        with pytest.raises(onnxfast.errors.OnnxfastError):
            s.run(None, {"a": a, "b": np.ones((3, 3))})
        assert [c.get_num_threads() for c in libs] == outer
        # numpy steps that never reach BLAS (string ops) run without the limit's per-run cost
        m2 = make_model([helper.make_node("StringNormalizer", ["s"], ["t"], case_change_action="UPPER")],
                        [vi("s", TensorProto.STRING, [2])], [vi("t", TensorProto.STRING)])
        s2 = onnxfast.InferenceSession(m2.SerializeToString())
        assert not s2._limit_blas and s2._numpy_steps
        assert s2.run(None, {"s": np.array(["a", "b"], dtype=object)})[0].tolist() == ["A", "B"]
    assert [c.get_num_threads() for c in libs] == before


def test_large_outputs_reuse_cached_blocks_without_page_faults():
    """A 4 MiB output freed by the caller goes to the block cache and serves the next run: no
    fresh pages to fault in (without the cache each run faults ~1000 pages in)."""
    import resource

    from onnx import TensorProto

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024, 1024])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    s = onnxfast.InferenceSession(m.SerializeToString())
    x = np.ones((1024, 1024), np.float32)
    for _ in range(3):
        y = s.run(None, {"x": x})[0]
        del y
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        y = s.run(None, {"x": x})[0]
        assert y[0, 0] == 1.0
        del y
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 200, f"{faults} page faults in 5 runs"


@pytest.mark.parametrize("arena", [True, False])
def test_enable_cpu_mem_arena_decides_whether_outputs_are_cached(arena):
    """SessionOptions.enable_cpu_mem_arena=False: a session's freed outputs go back to the C library
    instead of the block cache."""
    from onnx import TensorProto

    from onnxfast import _core

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [777, 333])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    o = onnxfast.SessionOptions()
    o.enable_cpu_mem_arena = arena
    s = onnxfast.InferenceSession(m.SerializeToString(), o)
    x = np.ones((777, 333), np.float32)
    y = s.run(None, {"x": x})[0]
    before = _core.block_cache_bytes()
    del y
    grew = _core.block_cache_bytes() - before
    assert (grew >= 777 * 333 * 4) == arena, grew
