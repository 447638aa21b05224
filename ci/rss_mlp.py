"""Resident memory of an MLP run with cycling batch sizes (issue #14, acceptance 5).

    python ci/rss_mlp.py                      # onnxfast, 2,000 runs, batch 16..1024
    python ci/rss_mlp.py --runtime onnxruntime
    python ci/rss_mlp.py --runs 300 --json    # one JSON line (used by tests/test_memory.py)

The model: 256 -> 1024 -> 1024 -> 1024, each layer MatMul + Add + Relu. The batch cycles through
16, 32, 48, ..., 1024 (64 sizes), one size per run. Reported (MB):
  before    RSS before the session is created (model bytes and feeds already built)
  start     RSS after the first full cycle of batch sizes (the warm-up)
  end       RSS after all runs
  peak      highest RSS sampled after a run
  after     RSS once the session and its outputs are deleted
  cache     bytes the onnxfast block cache holds at the end of the runs / after deleting the session
The acceptance: end <= 1.25 x start, after <= before + 30 MB.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    import os
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def mlp_model(dims=(256, 1024, 1024, 1024), seed: int = 0) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        inits.append(numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(rng.standard_normal(b).astype(np.float32) * 0.1, f"b{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}"])]
        prev = f"h{i}"
    nodes[-1].output[0] = "y"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dims[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dims[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def batch_cycle(lo: int = 16, hi: int = 1024, step: int = 16) -> list[int]:
    """16, 32, 48, ..., 1024: 64 batch sizes, so a cache keyed by exact size would keep a block
    for each of them."""
    return list(range(lo, hi + 1, step))


def make_session(runtime: str, data: bytes):
    if runtime == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    import onnxfast
    so = onnxfast.SessionOptions()
    so.intra_op_num_threads = 1
    return onnxfast.InferenceSession(data, so)


def cache_mb() -> float | None:
    try:
        from onnxfast import _core
    except ImportError:
        return None
    return round(_core.block_cache_bytes() / 1e6, 1)


def measure(runtime: str = "onnxfast", runs: int = 2000, lo: int = 16, hi: int = 1024, step: int = 16) -> dict:
    if runtime == "onnxfast":
        import onnxfast  # noqa: F401  (imported before 'before' so the module's own memory is not counted)
    else:
        import onnxruntime  # noqa: F401
    data = mlp_model()
    sizes = batch_cycle(lo, hi, step)
    rng = np.random.default_rng(1)
    feeds = [rng.standard_normal((b, 256)).astype(np.float32) for b in sizes]
    gc.collect()
    before = rss_mb()
    sess = make_session(runtime, data)
    start = peak = None
    for i in range(runs):
        out = sess.run(None, {"x": feeds[i % len(feeds)]})
        del out
        if i == len(sizes) - 1:
            start = rss_mb()
        if i >= len(sizes) - 1:
            peak = max(peak or 0.0, rss_mb())
    end = rss_mb()
    cache_end = cache_mb() if runtime == "onnxfast" else None
    del sess
    gc.collect()
    after = rss_mb()
    cache_after = cache_mb() if runtime == "onnxfast" else None
    if start is None:
        start = end
    return {"runtime": runtime, "runs": runs, "batches": f"{sizes[0]}..{sizes[-1]} ({len(sizes)} sizes)",
            "before": round(before, 1), "start": round(start, 1), "end": round(end, 1), "peak": round(peak or end, 1),
            "after": round(after, 1), "end_over_start": round(end / start, 3), "after_minus_before": round(after - before, 1),
            "cache_end": cache_end, "cache_after": cache_after}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", choices=["onnxfast", "onnxruntime"], default="onnxfast")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--lo", type=int, default=16)
    ap.add_argument("--hi", type=int, default=1024)
    ap.add_argument("--step", type=int, default=16)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    a = ap.parse_args(argv)
    r = measure(a.runtime, a.runs, a.lo, a.hi, a.step)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{r['runtime']}: {r['runs']} runs, batch {r['batches']}")
        print(f"  RSS before session {r['before']} MB, after warm-up {r['start']} MB, end {r['end']} MB "
              f"(x{r['end_over_start']}), peak {r['peak']} MB")
        print(f"  RSS after deleting the session {r['after']} MB ({r['after_minus_before']:+} MB vs before)")
        if r["cache_end"] is not None:
            print(f"  block cache {r['cache_end']} MB at the end, {r['cache_after']} MB after deleting the session")
    return 0


if __name__ == "__main__":
    sys.exit(main())
