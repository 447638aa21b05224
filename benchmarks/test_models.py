"""Real models, onnxfast vs onnxruntime, side by side in one process.

For each model x threads {1, 2} x batch {1, 8}: pytest-benchmark times onnxfast's run; before
every timed round, the setup runs onnxruntime once (timed by hand), so the two runtimes
interleave and machine drift hits both; a short pause after onnxruntime's run lets its spinning
worker threads go idle so they do not take the cores of onnxfast's timed round. extra_info holds onnxruntime's median and the ratio
onnxfast/onnxruntime, which ci/bench_gate.py gates on and ci/bench_report.py tabulates. Where the
``openvino`` package is installed (the bench extra), OpenVINO's CPU plugin runs in the same setup too, in
float32 (INFERENCE_PRECISION_HINT f32: on CPUs with AMX or AVX-512 BF16 it would otherwise compute in bf16)
with the same thread count: extra_info's ``openvino_ratio`` is OpenVINO / onnxruntime, the next bar.

    pytest benchmarks/test_models.py --benchmark-only --benchmark-autosave
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from benchmarks.models import zoo

import onnxfast

ort = pytest.importorskip("onnxruntime")

ROUNDS = {False: 30, True: 8}  # per model size (slow models get fewer rounds)
SETTLE_S = 0.1


def sessions(path: str, threads: int):
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = threads
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxfast's pool is not there yet: threads>1 warns
        fast = onnxfast.InferenceSession(path, o)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return fast, ref


def batch_feed(inputs: dict, batch: int) -> dict:
    out = {}
    for k, v in inputs.items():
        reps = -(-batch // v.shape[0])
        out[k] = np.concatenate([v] * reps)[:batch] if reps > 1 else v[:batch]
    return out


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def openvino_runner(path: str, threads: int, feed: dict):
    """A callable running the model on OpenVINO's CPU plugin in float32, or None without openvino (or
    when it cannot compile the model: the column stays empty)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        core = ov.Core()
        model = core.read_model(path)
        model.reshape({k: list(v.shape) for k, v in feed.items()})  # static shapes, as its benchmark_app does
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                                                     "PERFORMANCE_HINT": "LATENCY"})
    except Exception as e:  # noqa: BLE001 - a model OpenVINO does not take: no column
        warnings.warn(f"openvino could not compile {path}: {e}")
        return None
    request = compiled.create_infer_request()
    return lambda: request.infer(feed)


def run_pair(benchmark, path: str, feed: dict, threads: int, rounds: int, group: str) -> None:
    fast, ref = sessions(path, threads)
    ov_run = openvino_runner(path, threads, feed)
    ort_times: list[float] = []
    ov_times: list[float] = []

    def setup():
        if ov_run is not None:
            t = time.perf_counter()
            ov_run()
            ov_times.append(time.perf_counter() - t)
            if not benchmark.disabled:
                time.sleep(SETTLE_S)
        t = time.perf_counter()
        ref.run(None, feed)
        ort_times.append(time.perf_counter() - t)
        if not benchmark.disabled:
            time.sleep(SETTLE_S)  # onnxruntime's spinning workers go idle before onnxfast's timed round

    for _ in range(2):  # warm-up, excluded
        fast.run(None, feed)
        ref.run(None, feed)
        if ov_run is not None:
            ov_run()
    benchmark.group = group
    benchmark.pedantic(lambda: fast.run(None, feed), setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and ort_times:
        fast_median = stats.stats.median
        ort_median = float(np.median(ort_times))
        benchmark.extra_info.update({
            "onnxruntime_median_s": ort_median,
            "onnxfast_median_s": fast_median,
            "ratio": fast_median / ort_median,
            "threads": threads,
            "onnxruntime": _ort_version(),
        })
        if ov_times:
            ov_median = float(np.median(ov_times))
            benchmark.extra_info.update({"openvino_median_s": ov_median, "openvino_ratio": ov_median / ort_median})


PARAMS = [pytest.param(name, marks=[pytest.mark.slow] if spec.slow else [], id=name)
          for name, spec in zoo.ZOO.items()]


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", PARAMS)
def test_model(benchmark, name, threads, batch):
    spec = zoo.ZOO[name]
    for mod in zoo.FAMILY_MODULES[spec.family]:
        pytest.importorskip(mod)
    c = zoo.get(name)
    feed = batch_feed(c.inputs, batch)
    rounds = 1 if benchmark.disabled else ROUNDS[spec.slow]
    run_pair(benchmark, str(c.path), feed, threads, rounds, f"{name} threads={threads} batch={batch}")
