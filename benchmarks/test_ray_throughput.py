"""Ray Data batch inference throughput (rows/s): onnxfast and onnxruntime under the same Ray setup, against
a plain loop over the same batches in one process, for the MLP and ResNet-50 of the model suite.

Every setup spends the same two cores: the loop's session has 2 threads; Ray runs 1 actor x 2 CPUs or
2 actors x 1 CPU (each actor's session threads = its CPUs, onnxfast.integrations.ray.make_session). A
round is a whole pipeline over the rows, actor start-up and session creation included, the outputs
materialized in the object store. onnxruntime's pipeline runs in each round's setup (timed by hand),
so the two runtimes interleave. Measured only on request (it starts a Ray cluster):

    pytest benchmarks/test_ray_throughput.py --benchmark-only --benchmark-json=/tmp/ray.json
    python -m benchmarks.test_ray_throughput /tmp/ray.json > benchmarks/RAY.md
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import numpy as np
import pytest

if importlib.util.find_spec("ray") is None:
    pytest.skip("needs ray: pip install 'onnxfast[ray]'", allow_module_level=True)
# ray itself is imported only when a benchmark runs: a Ray driver in the default test run's process
# left its interpreter to crash at exit (see tests/test_ray.py)

from benchmarks.models import zoo  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1800)]

MODELS = {  # name -> (rows, batch size)
    "mlp": (400_000, 4096),
    "resnet50": (64, 8),
}
SETUPS = {  # name -> (actors, cpus per actor); None: the plain loop, 2 threads
    "loop": None,
    "ray 1x2": (1, 2),
    "ray 2x1": (2, 1),
}
ROUNDS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import os

    import ray

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray_driver"))  # workers must not import the source tree
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        yield
    finally:
        ray.shutdown()
        os.chdir(cwd)


def _rows(name: str) -> np.ndarray:
    c = zoo.get(name)
    (x,) = c.inputs.values()
    rows, _ = MODELS[name]
    reps = -(-rows // x.shape[0])
    return np.concatenate([x] * reps)[:rows], next(iter(c.inputs)), str(c.path)


def _dataset(x: np.ndarray, column: str, batch: int):
    import pyarrow as pa
    import ray
    from ray.data.extensions import ArrowTensorArray

    tables = [pa.table({column: ArrowTensorArray.from_numpy(x[lo:lo + batch * 4])})
              for lo in range(0, len(x), batch * 4)]
    return ray.data.from_arrow(tables).materialize()


def _pipeline(runtime: str, setup, path: str, x: np.ndarray, column: str, batch: int):
    """One timed pass: returns the number of rows produced."""
    if setup is None:
        from onnxfast.integrations.ray import make_session

        sess, _ = make_session(path, intra_op_num_threads=2, runtime=runtime)
        n = 0
        for lo in range(0, len(x), batch):
            (out,) = sess.run(None, {column: x[lo:lo + batch]})[:1]
            n += len(out)
        return n
    from onnxfast.integrations.ray import batch_inference

    actors, cpus = setup
    out = batch_inference(_DATA[(path, batch)], path, num_actors=actors, num_cpus_per_actor=cpus,
                          batch_size=batch, runtime=runtime).materialize()
    return out.count()


_DATA: dict = {}


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n == "resnet50" else [])
                                  for n in MODELS])
def test_ray_throughput(benchmark, request, name, setup):
    if benchmark.disabled:
        pytest.skip("a throughput benchmark: run with --benchmark-only (tests/test_ray.py checks correctness)")
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pyarrow")
    request.getfixturevalue("cluster")  # started only now, past the skips
    x, column, path = _rows(name)
    _, batch = MODELS[name]
    if (path, batch) not in _DATA:
        _DATA[(path, batch)] = _dataset(x, column, batch)
    conf = SETUPS[setup]
    ort_times: list[float] = []

    def other():
        t = time.perf_counter()
        assert _pipeline("onnxruntime", conf, path, x, column, batch) == len(x)
        ort_times.append(time.perf_counter() - t)

    def ours():
        assert _pipeline("onnxfast", conf, path, x, column, batch) == len(x)

    benchmark.group = f"ray {name}"
    benchmark.pedantic(ours, setup=other, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    fast = benchmark.stats.stats.median
    ref = float(np.median(ort_times))
    benchmark.extra_info.update({
        "model": name, "setup": setup, "rows": len(x), "batch": batch,
        "onnxfast_rows_per_s": len(x) / fast, "onnxruntime_rows_per_s": len(x) / ref,
        "onnxfast_spread_s": [min(benchmark.stats.stats.data), max(benchmark.stats.stats.data)],
        "onnxruntime_spread_s": [min(ort_times), max(ort_times)], "ratio": fast / ref,
    })


def table(results: dict) -> str:
    """benchmarks/RAY.md from a pytest-benchmark JSON of this file."""
    info = results.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw") or info.get("processor") or "unknown CPU"
    lines = [
        "# Ray Data batch inference: rows/s, onnxfast vs onnxruntime under the same Ray setup",
        "",
        f"CPU: {cpu}, {info.get('cpu', {}).get('count', '?')} cores; generated by `benchmarks/test_ray_throughput.py` "
        f"({results.get('datetime', '')[:10]}). Each setup spends the same 2 cores: the loop's session has 2 threads, "
        "Ray runs 1 actor x 2 CPUs or 2 actors x 1 CPU. A round is a whole pipeline (actor start-up and session "
        "creation included; outputs materialized in the object store); medians of 3 interleaved rounds, "
        "range in brackets.",
        "",
        "| model | rows (batch) | setup | onnxfast rows/s | onnxruntime rows/s | onnxfast / onnxruntime time |",
        "|---|---|---|---:|---:|---:|",
    ]
    def rate(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

    for b in results["benchmarks"]:
        e = b["extra_info"]
        if "setup" not in e:
            continue
        fs, os_ = e["onnxfast_spread_s"], e["onnxruntime_spread_s"]
        lines.append(
            f"| {e['model']} | {e['rows']} ({e['batch']}) | {e['setup']} | "
            f"{rate(e['onnxfast_rows_per_s'])} [{rate(e['rows'] / fs[1])}–{rate(e['rows'] / fs[0])}] | "
            f"{rate(e['onnxruntime_rows_per_s'])} [{rate(e['rows'] / os_[1])}–{rate(e['rows'] / os_[0])}] | "
            f"{e['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        sys.stdout.write(table(json.load(f)))
