"""The intra-op thread pool: every item exactly once under stealing, shared pools, thread count
honoured, bitwise-identical results run to run, idle workers sleep, fork-safe."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from onnx_helpers import F, make_model, vi
from onnx import helper

import onnxfast
from onnxfast import _core


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n,grain", [(0, 1), (1, 1), (2, 1), (17, 1), (1000, 1), (100003, 7), (64, 100)])
def test_parallel_for_visits_each_item_once(threads, n, grain):
    pool = _core.shared_pool(threads)
    assert pool.num_threads == threads
    for _ in range(5):
        assert _core.test_parallel_sum(pool, n, grain) == 0


def test_default_threads_are_the_cpus_we_may_use():
    assert _core.default_num_threads() == min(len(os.sched_getaffinity(0)), os.cpu_count())


def heavy_model(rng):
    w = (rng.standard_normal((256, 256)) / 16).astype(np.float32)
    c = (rng.standard_normal((16, 8, 3, 3)) / 8).astype(np.float32)
    return make_model(
        [
            helper.make_node("Conv", ["x", "c"], ["y"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["y"], ["r"]),
            helper.make_node("Reshape", ["r", "shape"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["m"]),
            helper.make_node("Add", ["m", "m"], ["z"]),
        ],
        [vi("x", F, [1, 8, 64, 64])],
        [vi("z", F, None)],
        initializers=[("w", w), ("c", c), ("shape", np.array([-1, 256], np.int64))],
    )


def session(model, threads):
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = threads
    return onnxfast.InferenceSession(model.SerializeToString(), o)


def test_sessions_share_pools_and_threads_agree(rng):
    m = heavy_model(rng)
    s1, s2, s3 = session(m, 2), session(m, 2), session(m, 1)
    assert s1._pool is s2._pool or s1._pool.num_threads == s2._pool.num_threads == 2
    assert s3._pool.num_threads == 1
    x = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    a, b = s1.run(None, {"x": x})[0], s3.run(None, {"x": x})[0]
    np.testing.assert_array_equal(a, b)  # every output element is summed by one thread in a fixed order


@pytest.mark.parametrize("shape,cout,k,group", [((1, 64, 14, 14), 96, 1, 1), ((3, 32, 9, 11), 40, 1, 2),
                                                 ((2, 24, 20, 20), 36, 3, 3), ((1, 16, 40, 40), 20, 1, 1)])
def test_im2col_conv_grids_agree_across_thread_counts(rng, shape, cout, k, group, monkeypatch):
    # The im2col path (1x1, or forced for 3x3) cuts (images x groups) x channel blocks x position
    # chunks differently at 1, 2 and 3 threads; each output is still summed by one task in K order.
    monkeypatch.setenv("ONNXFAST_CONV_DIRECT", "off")
    w = (rng.standard_normal((cout, shape[1] // group, k, k)) / 8).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4, group=group)],
                   [vi("x", F, list(shape))], [vi("y", F, None)], initializers=[("w", w)])
    x = rng.standard_normal(shape).astype(np.float32)
    outs = [session(m, t).run(None, {"x": x})[0] for t in (1, 2, 3)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    assert outs[0].shape[1] == cout and np.isfinite(outs[0]).all()


def test_bitwise_identical_across_runs_at_two_threads(rng):
    s = session(heavy_model(rng), 2)
    x = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    first = s.run(None, {"x": x})[0]
    for _ in range(10):
        assert np.array_equal(s.run(None, {"x": x})[0], first)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def test_idle_pool_burns_no_cpu(rng):
    s = session(heavy_model(rng), 2)
    x = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    for _ in range(3):
        s.run(None, {"x": x})
    c0, t0 = _cpu_seconds(), time.monotonic()
    time.sleep(1.0)
    used = (_cpu_seconds() - c0) / (time.monotonic() - t0)
    assert used < 0.02, f"process used {used:.1%} of a core while idle"


def test_fork_child_can_run_and_exit(rng, tmp_path):
    code = r"""
import os, numpy as np, onnxfast
from onnxfast.cli import DEMO_MODEL
o = onnxfast.SessionOptions(); o.intra_op_num_threads = 2
s = onnxfast.InferenceSession(DEMO_MODEL, o)
x = np.ones((64, 16), np.float32)
ref = s.run(None, {"input": x})[1]
pid = os.fork()
if pid == 0:
    try:
        ok = np.array_equal(s.run(None, {"input": x})[1], ref)
        del s
        os._exit(0 if ok else 3)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "child 0"


@pytest.mark.parametrize("threads", [1, 2])
def test_denormals_as_zero_in_every_thread(threads):
    m = make_model([helper.make_node("Mul", ["x", "one"], ["y"])], [vi("x", F, [None])], [vi("y", F, [None])],
                   initializers=[("one", np.ones(1, np.float32))])
    x = np.full(1 << 20, 1e-40, np.float32)  # large enough to run on every pool thread
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = threads
    assert np.all(onnxfast.InferenceSession(m.SerializeToString(), o).run(None, {"x": x})[0] == np.float32(1e-40))
    o.add_session_config_entry("session.set_denormal_as_zero", "1")
    assert np.all(onnxfast.InferenceSession(m.SerializeToString(), o).run(None, {"x": x})[0] == 0)
    # the caller's own floating-point mode is restored after the run
    assert np.float32(1e-40) * np.float32(1) != 0


_PIN_PROBE = r"""
import os, sys
from onnxfast import _core
cpus = sorted(os.sched_getaffinity(0))
pool = _core.shared_pool(len(cpus))
assert _core.test_parallel_sum(pool, 100000, 1) == 0
me = os.sched_getcpu() if hasattr(os, "sched_getcpu") else None
single = []
for tid in os.listdir("/proc/self/task"):
    if int(tid) == os.getpid():
        continue
    allowed = os.sched_getaffinity(int(tid))
    if len(allowed) == 1:
        single.append(next(iter(allowed)))
print(len(cpus), sorted(single))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="worker pinning is Linux-only and needs two CPUs")
def test_a_pool_with_one_thread_per_cpu_pins_its_workers_off_the_caller():
    """Each worker of a pool with one thread per usable CPU keeps to one CPU (the caller stays free), so a
    worker woken after an idle spell is not queued behind the caller; ONNXFAST_PIN_WORKERS=0 turns it off."""
    import ast
    import tempfile

    from onnx_helpers import child_env, run_python

    r = run_python(["-c", _PIN_PROBE], timeout=120)
    assert r.returncode == 0, r.stderr
    ncpu, pinned = r.stdout.split(" ", 1)
    pinned = ast.literal_eval(pinned)
    assert len(pinned) == int(ncpu) - 1 and set(pinned) <= set(os.sched_getaffinity(0))
    env_off = dict(child_env(), ONNXFAST_PIN_WORKERS="0")
    r = subprocess.run([sys.executable, "-c", _PIN_PROBE], capture_output=True, text=True, timeout=120,
                       env=env_off, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(" ", 1)[1].strip() == "[]"
