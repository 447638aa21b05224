"""Gate benchmark regressions on the ratio onnxfast/onnxruntime measured in the same run.

    python ci/bench_gate.py RESULTS.json [--baseline benchmarks/baseline_ratios.json] [--threshold 1.15]

A benchmark fails the gate when its ratio exceeds the baseline ratio by more than the threshold
factor (default 1.15: 15% slower relative to onnxruntime than when the baseline was recorded).
Absolute times are not gated: on a shared machine they drift; the ratio of two runtimes measured
interleaved in one process does not. `--write-baseline` records the current ratios.
"""

from __future__ import annotations

import argparse
import json
import sys

DEFAULT_BASELINE = "benchmarks/baseline_ratios.json"
DEFAULT_THRESHOLD = 1.15


def ratios(results_path: str) -> dict[str, float]:
    with open(results_path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        r = (b.get("extra_info") or {}).get("ratio")
        if r is not None:
            out[b["fullname"] if "fullname" in b else b["name"]] = float(r)
    return out


def gate(current: dict[str, float], baseline: dict[str, float], threshold: float) -> list[str]:
    failures = []
    for name, base in sorted(baseline.items()):
        if name in current and current[name] > base * threshold:
            failures.append(f"{name}: ratio {current[name]:.3f} > baseline {base:.3f} x {threshold}")
    return failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="pytest-benchmark JSON (--benchmark-json or an autosaved file)")
    p.add_argument("--baseline", default=DEFAULT_BASELINE)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--write-baseline", action="store_true", help="store the current ratios as the baseline")
    args = p.parse_args(argv)
    current = ratios(args.results)
    if not current:
        print("bench_gate: no ratios in the results (run benchmarks/test_models.py with --benchmark-only)")
        return 2
    if args.write_baseline:
        with open(args.baseline, "w") as f:
            json.dump(current, f, indent=1, sort_keys=True)
        print(f"bench_gate: wrote {len(current)} ratios to {args.baseline}")
        return 0
    with open(args.baseline) as f:
        baseline = json.load(f)
    failures = gate(current, baseline, args.threshold)
    compared = len(set(current) & set(baseline))
    for line in failures:
        print("REGRESSION " + line)
    print(f"bench_gate: {compared} benchmarks compared, {len(failures)} regressions (threshold x{args.threshold})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
