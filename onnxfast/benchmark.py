"""Latency measurement shared by `onnxfast bench` and the benchmark suite: warm-up excluded,
runtimes interleaved round by round (so machine drift hits all of them), percentiles; and throughput
(requests in flight from several threads, for a duration or a number of requests)."""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np


def interleaved(runners: dict[str, Callable[[], object]], warmup: int = 3, runs: int = 20,
                progress: bool = False) -> dict[str, np.ndarray]:
    """Time each runner ``runs`` times, alternating runners within every round (the order flips
    each round). Returns seconds per run, per runner."""
    names = list(runners)
    for _ in range(max(0, warmup)):
        for n in names:
            runners[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t = time.perf_counter()
            runners[n]()
            times[n].append(time.perf_counter() - t)
        if progress:
            _bar(r + 1, runs)
    if progress:
        sys.stderr.write("\n")
    return {n: np.asarray(v) for n, v in times.items()}


def throughput(fn: Callable[[], object], concurrency: int = 1, duration: float | None = None, runs: int = 20,
               warmup: int = 3) -> tuple[np.ndarray, float]:
    """Keep ``concurrency`` calls of ``fn`` in flight (one thread each, back to back) for ``duration``
    seconds, or until each thread made ``runs`` calls. Returns (seconds per call, wall seconds of the
    timed part). The first error a thread meets is raised here once every thread stopped."""
    import threading

    for _ in range(max(0, warmup)):
        fn()
    times: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)
    stop = threading.Event()

    def worker(out: list[float]) -> None:
        start.wait()
        try:
            while not stop.is_set() and (duration is not None or len(out) < runs):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=worker, args=(times[i],), daemon=True) for i in range(concurrency)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    if duration is not None:
        stop.wait(duration)
        stop.set()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return np.asarray([t for ts in times for t in ts]), wall


def _bar(done: int, total: int, width: int = 30) -> None:
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def summary(t: np.ndarray) -> dict[str, float]:
    """mean / p50 / p90 / p99 in milliseconds."""
    ms = t * 1e3
    return {
        "mean": float(ms.mean()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
    }


def top_operators(profile_path: str, limit: int = 10) -> list[tuple[str, float, int, float]]:
    """(op type, total ms, calls, share of node time) from a profile written by end_profiling()."""
    import json

    with open(profile_path) as f:
        events = json.load(f)
    per_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node":
            per_op.setdefault(e["args"]["op_name"], []).append(e["dur"] / 1e3)
    total = sum(sum(v) for v in per_op.values()) or 1.0
    rows = [(op, sum(v), len(v), sum(v) / total) for op, v in per_op.items()]
    rows.sort(key=lambda r: -r[1])
    return rows[:limit]
