"""The zoo's transformers at several sequence lengths: onnxfast / onnxruntime (and OpenVINO's CPU plugin in
float32 / onnxruntime where openvino is installed), in interleaved rounds in one process, the whole
measurement repeated 3 times: the median ratio and its spread, one markdown row per length.

    python -m benchmarks.transformer_seqs bert_base --threads 1 --batch 1 --seqs 32,128,384

The zoo's token inputs are tiled / cut to each length. Each timed call follows a 0.1 s pause so the
previous runtime's spinning workers are idle (on a 2-core machine they would take a core of the next
one), so these are single calls from idle, like benchmarks/test_models.py's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.models import zoo

SETTLE_S = 0.1


def feed_at(inputs: dict, batch: int, seq: int) -> dict:
    out = {}
    for k, v in inputs.items():
        v = v[:batch]
        reps = -(-seq // v.shape[1])
        out[k] = np.ascontiguousarray(np.concatenate([v] * reps, axis=1)[:, :seq])
    return out


def runners(path: str, threads: int, feed: dict) -> dict:
    from benchmarks.test_models import openvino_runner, sessions

    fast, ref = sessions(path, threads)
    out = {"onnxfast": lambda: fast.run(None, feed), "onnxruntime": lambda: ref.run(None, feed)}
    ov = openvino_runner(path, threads, feed)
    if ov is not None:
        out["openvino"] = ov
    return out


def measure(run: dict, rounds: int = 5, repeats: int = 3) -> tuple[list[float], list[float], dict]:
    """Per repeat: the median over rounds of onnxfast / onnxruntime and openvino / onnxruntime; medians of the times."""
    for f in run.values():
        f()
        f()
    ratios, ov_ratios, times = [], [], {k: [] for k in run}
    for _ in range(repeats):
        t = {k: [] for k in run}
        for r in range(rounds):
            for k in (list(run) if r % 2 == 0 else list(run)[::-1]):
                time.sleep(SETTLE_S)
                a = time.perf_counter()
                run[k]()
                t[k].append(time.perf_counter() - a)
        ratios.append(statistics.median([x / y for x, y in zip(t["onnxfast"], t["onnxruntime"])]))
        if "openvino" in run:
            ov_ratios.append(statistics.median([x / y for x, y in zip(t["openvino"], t["onnxruntime"])]))
        for k in run:
            times[k].append(statistics.median(t[k]))
    return ratios, ov_ratios, {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=["bert_base", "bert_base_torchscript", "minilm", "minilm_torchscript", "gpt2"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seqs", default="32,128,384")
    args = p.parse_args(argv)
    c = zoo.get(args.model)
    print("| model | seq | threads | batch | onnxfast ms | onnxruntime ms | ratio [spread] | OpenVINO / onnxruntime |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for seq in (int(s) for s in args.seqs.split(",")):
        feed = feed_at(c.inputs, args.batch, seq)
        ratios, ov_ratios, med = measure(runners(str(c.path), args.threads, feed))
        r = sorted(ratios)
        ov = f"{statistics.median(ov_ratios):.2f}" if ov_ratios else ""
        print(f"| {args.model} | {seq} | {args.threads} | {args.batch} | {med['onnxfast'] * 1e3:.1f} | "
              f"{med['onnxruntime'] * 1e3:.1f} | {r[len(r) // 2]:.2f} [{r[0]:.2f}-{r[-1]:.2f}] | {ov} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
