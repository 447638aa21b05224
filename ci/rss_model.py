"""Peak resident memory of one real model, onnxfast or onnxruntime (issue #15, acceptance 2).

    python ci/rss_model.py bert_base                         # onnxfast: load, create, 3 runs
    python ci/rss_model.py bert_base --runtime onnxruntime
    python ci/rss_model.py bert_base --vary 8,128 --runs 200 # RSS flat while sequence lengths vary

The model comes from the real-model zoo (benchmarks/models/zoo.py; built into its cache once),
its inputs are the zoo's saved inputs, batch 1. One process per measurement, so ru_maxrss is this
model's alone. Reported (MB, one JSON line with --json):
  base     peak RSS before the runtime is imported (interpreter, numpy, the zoo's inputs)
  created  peak RSS once the session exists (import, load, optimize, plan)
  peak     peak RSS after the runs (ru_maxrss: the acceptance's measure)
With --vary LO,HI: each run uses a sequence length drawn from [LO, HI] (axis 1 of every input),
and rss_50 / rss_end are the current RSS after run 50 and after the last run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys

import numpy as np


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--runtime", choices=["onnxfast", "onnxruntime"], default="onnxfast")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vary", metavar="LO,HI", help="vary the sequence length (axis 1) between LO and HI")
    p.add_argument("--no-mem-pattern", action="store_true", help="onnxfast: SessionOptions.enable_mem_pattern = False")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    # the zoo lives in the repository; appended, so an installed onnxfast is not shadowed by the source tree
    sys.path.append(str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks.models import zoo

    c = zoo.get(a.model)
    path = str(c.path)
    inputs = {k: np.ascontiguousarray(v[:1]) for k, v in c.inputs.items()}
    del c
    base = max_rss_mb()
    if a.runtime == "onnxfast":
        import onnxfast

        o = onnxfast.SessionOptions()
        o.intra_op_num_threads = a.threads
        o.enable_mem_pattern = not a.no_mem_pattern
        sess = onnxfast.InferenceSession(path, o)
    else:
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.intra_op_num_threads = a.threads
        sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    created = max_rss_mb()
    rng = np.random.default_rng(0)
    lo, hi = (int(x) for x in a.vary.split(",")) if a.vary else (0, 0)
    out = {"runtime": a.runtime, "model": a.model, "base": round(base, 1), "created": round(created, 1)}
    for i in range(a.runs):
        feed = inputs
        if a.vary:
            n = int(rng.integers(lo, hi + 1))
            feed = {k: np.ascontiguousarray(np.resize(v, (v.shape[0], n) + v.shape[2:])) for k, v in inputs.items()}
        sess.run(None, feed)
        if i + 1 == 50:
            out["rss_50"] = round(rss_mb(), 1)
    out["peak"] = round(max_rss_mb(), 1)
    out["rss_end"] = round(rss_mb(), 1)
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
