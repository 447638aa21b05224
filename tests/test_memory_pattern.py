"""Memory patterns (SessionOptions.enable_mem_pattern; csrc/core/mem_pattern.*): the first run of an
input signature records the intermediates' sizes and lifetimes, later runs take them from one arena
laid out by lifetime. Results must not change, returned outputs must never share memory a later run
reuses, data-dependent shapes and host steps that keep buffers alive fall back safely, the patterns
per signature are bounded, and concurrent runs stay independent."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import make_model, session, vi

import onnxfast


def _chain_model(extra_outputs=()):
    # x -> Relu -> Mul(2) -> Add(x) -> Sigmoid -> Sub(1) -> Reshape(-1) -> y ; mid values short-lived
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Mul", ["a", "two"], ["b"], name="mul"),
             helper.make_node("Add", ["b", "x"], ["c"], name="add"),
             helper.make_node("Sigmoid", ["c"], ["d"], name="sig"),
             helper.make_node("Sub", ["d", "one"], ["e"], name="sub"),
             helper.make_node("Reshape", ["e", "flat"], ["y"], name="reshape")]
    outputs = [vi("y", T.FLOAT, None)] + [vi(n, T.FLOAT, None) for n in extra_outputs]
    return make_model(nodes, [vi("x", T.FLOAT, ["n", 64])], outputs,
                      initializers=[("two", np.array(2, np.float32)), ("one", np.array(1, np.float32)),
                                    ("flat", np.array([-1], np.int64))])


def _opts(pattern=True, disabled=""):
    o = onnxfast.SessionOptions()
    o.enable_mem_pattern = pattern
    # basic level: the chains stay separate steps (ElementwiseFusion would make them one)
    o.graph_optimization_level = onnxfast.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if disabled:
        o.add_session_config_entry("onnxfast.disable_kernels", disabled)
    return o


def _reference(x):
    c = np.maximum(x, 0) * 2 + x
    return (1 / (1 + np.exp(-c)) - 1).reshape(-1)


def _matmul_chain():
    # x -> MatMul(w1) -> h1 -> MatMul(w2) -> h2 -> MatMul(w3) -> h3 -> MatMul(w4) -> y, and Relu(h1) as a
    # second output: h2, h3 die inside the run (MatMul cannot run in place), so the arena serves them
    w = [np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64) / (k + 8) for k in range(4)]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("MatMul", ["h1", "w2"], ["h2"], name="mm2"),
             helper.make_node("MatMul", ["h2", "w3"], ["h3"], name="mm3"),
             helper.make_node("MatMul", ["h3", "w4"], ["y"], name="mm4"),
             helper.make_node("Relu", ["h1"], ["r"], name="relu")]
    m = make_model(nodes, [vi("x", T.FLOAT, ["n", 64])], [vi("y", T.FLOAT, None), vi("r", T.FLOAT, None)],
                   initializers=[("w1", w[0]), ("w2", w[1]), ("w3", w[2]), ("w4", w[3])])
    return m, w


def test_second_run_uses_the_arena_and_outputs_stay_valid(rng):
    m, w = _matmul_chain()
    s = session(m, sess_options=_opts())
    x = rng.standard_normal((32, 64)).astype(np.float32)
    first = s.run(None, {"x": x})
    assert s._plan.num_patterns() == 1 and s._plan.arena_bytes_served() == 0  # recorded, not used yet
    kept = [a.copy() for a in first]
    for i in range(3):
        xi = rng.standard_normal((32, 64)).astype(np.float32)
        y, r = s.run(None, {"x": xi})
        h1 = xi @ w[0]
        np.testing.assert_allclose(y, h1 @ w[1] @ w[2] @ w[3], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r, np.maximum(h1, 0), rtol=1e-4, atol=1e-4)
    assert s._plan.arena_bytes_served() > 0
    for a, b in zip(first, kept):  # what run 1 returned was not overwritten by the later runs
        np.testing.assert_array_equal(a, b)


def test_same_results_with_and_without(rng):
    m = _chain_model(extra_outputs=("c",))
    on, off = session(m, sess_options=_opts(True)), session(m, sess_options=_opts(False))
    for n in (1, 7, 1, 7, 0, 33, 7):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        a, b = on.run(None, {"x": x}), off.run(None, {"x": x})
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert off._plan.num_patterns() == 0 and off._plan.arena_bytes_served() == 0
    assert on._plan.num_patterns() == 4  # 1, 7, 0, 33 rows


def test_patterns_per_signature_are_bounded(rng):
    s = session(_chain_model(), sess_options=_opts())
    for n in range(1, 25):
        s.run(None, {"x": rng.standard_normal((n, 64)).astype(np.float32)})
    assert s._plan.num_patterns() == 16


def test_data_dependent_shapes_fall_back(rng):
    """NonZero's output size depends on the data, not on the input shape: the recorded sizes do not
    match and those values get ordinary allocations."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("NonZero", ["r"], ["nz"], name="nz"),
             helper.make_node("Cast", ["nz"], ["f"], name="cast", to=T.FLOAT),
             helper.make_node("Mul", ["f", "f"], ["sq"], name="sq"),
             helper.make_node("ReduceSum", ["sq"], ["y"], name="sum", keepdims=0)]
    m = make_model(nodes, [vi("x", T.FLOAT, [50])], [vi("y", T.FLOAT, None)], opset=13)
    s = session(m, sess_options=_opts())
    for _ in range(6):
        x = rng.standard_normal(50).astype(np.float32)
        idx = np.nonzero(np.maximum(x, 0))[0].astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], np.sum(idx * idx), rtol=1e-6)



def test_host_steps_that_keep_views(rng):
    """With Relu and Mul on numpy (host steps returning arrays that may view their inputs), the arena
    must not hand out memory a numpy value still uses."""
    s = session(_chain_model(extra_outputs=("a",)), sess_options=_opts(disabled="native:Relu,native:Mul,native:Reshape"))
    for _ in range(4):
        x = rng.standard_normal((16, 64)).astype(np.float32)
        y, a = s.run(None, {"x": x})
        np.testing.assert_allclose(y, _reference(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a, np.maximum(x, 0))


def test_concurrent_runs_share_no_arena(rng):
    s = session(_chain_model(), sess_options=_opts())
    xs = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(4)]
    s.run(None, {"x": xs[0]})  # record
    errors = []

    def work(x):
        try:
            for _ in range(30):
                np.testing.assert_allclose(s.run(None, {"x": x})[0], _reference(x), rtol=1e-5, atol=1e-6)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("pattern", [True, False])
def test_memory_returns_after_runs(pattern, rng):
    """No run leaves live bytes behind (the arena goes back to the block cache with the run)."""
    from onnxfast import _core

    s = session(_chain_model(), sess_options=_opts(pattern))
    x = rng.standard_normal((256, 64)).astype(np.float32)
    s.run(None, {"x": x})
    live = _core.memory_stats()["live_bytes"]
    for _ in range(5):
        out = s.run(None, {"x": x})
        del out
    assert _core.memory_stats()["live_bytes"] == live


def test_elementwise_steps_run_in_place_without_touching_inputs(rng):
    """Relu -> Mul -> Add -> Sigmoid -> Sub: each output may be written over the input that dies there
    (the kernels declare it); the fed array, the constants and earlier outputs are never written."""
    s = session(_chain_model(), sess_options=_opts(False))
    x = rng.standard_normal((8, 64)).astype(np.float32)
    x_before = x.copy()
    y1 = s.run(None, {"x": x})[0]
    assert s._plan.inplace_reuses() >= 3  # mul (over a), sig (over c), sub (over d); add reads x too
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_allclose(y1, _reference(x), rtol=1e-5, atol=1e-6)
    y1_copy = y1.copy()
    s.run(None, {"x": rng.standard_normal((8, 64)).astype(np.float32)})
    np.testing.assert_array_equal(y1, y1_copy)


def test_no_in_place_over_a_value_still_read(rng):
    """'a' is read by Mul and is a graph output: Mul must not overwrite it."""
    s = session(_chain_model(extra_outputs=("a", "c")), sess_options=_opts())
    for _ in range(3):
        x = rng.standard_normal((8, 64)).astype(np.float32)
        y, a, c = s.run(None, {"x": x})
        np.testing.assert_array_equal(a, np.maximum(x, 0))
        np.testing.assert_allclose(c, np.maximum(x, 0) * 2 + x, rtol=1e-6)
        np.testing.assert_allclose(y, _reference(x), rtol=1e-5, atol=1e-6)
