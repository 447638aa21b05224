"""Gate benchmark regressions on the ratio onnxfast / onnxruntime measured in the same process.

    python ci/bench_gate.py --quick                        # run the quick subset (benchmarks/quick.py), gate it
    python ci/bench_gate.py --quick --write-baseline --runs 5
    python ci/bench_gate.py RESULTS.json                   # gate a full pytest-benchmark run
    python ci/bench_gate.py RESULTS.json --write-baseline

Baselines are per CPU model and ISA tier (benchmarks/baselines/{quick,full}-<cpu>-<family/model>-<isa>.json): ratios move
with the microarchitecture, so a baseline from another CPU gates nothing. Each records the machine (CPU
model, ISA tier, onnxruntime and onnxfast versions) and, per entry, the median ratio and the worst ratio over
the runs that recorded it. An entry regresses when its ratio exceeds max(median, worst) x threshold (the
noise band: default 1.15 above the worst baseline run); in --quick mode a regressed entry is measured twice
more and fails only if every measurement regressed. The gate fails (exit 1) on a regression, and when fewer
than 90% of the baseline's entries were compared (skipped benchmarks, renamed entries); exit 2 when there
is no baseline for this CPU or nothing to compare. Absolute times are never gated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_DIR = os.path.join(ROOT, "benchmarks", "baselines")
DEFAULT_THRESHOLD = 1.15
MIN_COMPARED = 0.9
RETRIES = 2


def slug(machine: dict) -> str:
    """'<cpu model>-<family/model>-<isa>': the family and model tell microarchitectures apart where a VM
    names the CPU only 'AMD EPYC' or 'Intel Xeon'."""
    text = f"{machine.get('cpu', 'unknown')}-{machine.get('cpu_id', '')}-{machine.get('isa', '')}"
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def baseline_path(kind: str, machine: dict, folder: str = BASELINE_DIR) -> str:
    return os.path.join(folder, f"{kind}-{slug(machine)}.json")


def results_ratios(results_path: str) -> tuple[dict[str, float], dict]:
    """Ratios and the machine of a pytest-benchmark JSON file (extra_info['ratio'] per benchmark)."""
    with open(results_path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        r = (b.get("extra_info") or {}).get("ratio")
        if r is not None:
            out[b.get("fullname") or b["name"]] = float(r)
    info = data.get("machine_info") or {}
    cpuinfo = info.get("cpu") or {}
    cpu = cpuinfo.get("brand_raw") or info.get("processor") or "unknown"
    cpu_id = f"f{cpuinfo['family']}m{cpuinfo['model']}" if "family" in cpuinfo and "model" in cpuinfo else ""
    import onnxfast
    from onnxfast import _core

    versions = {(b.get("extra_info") or {}).get("onnxruntime") for b in data.get("benchmarks", [])} - {None}
    if not versions:  # runs before the benchmarks recorded it: the installed one
        from importlib.metadata import PackageNotFoundError, version

        try:
            versions = {version("onnxruntime")}
        except PackageNotFoundError:
            versions = {"?"}
    return out, {"cpu": cpu, "cpu_id": cpu_id, "isa": _core.cpu_info()["isa"], "onnxruntime": ", ".join(sorted(versions)),
                 "onnxfast": onnxfast.__version__, "datetime": data.get("datetime", "")}


def make_baseline(runs: list[dict[str, float]], machine: dict) -> dict:
    import statistics

    names = sorted(set().union(*runs)) if runs else []
    entries = {}
    for n in names:
        vals = [r[n] for r in runs if n in r]
        entries[n] = {"ratio": statistics.median(vals), "worst": max(vals), "runs": len(vals)}
    return {"machine": machine, "entries": entries}


def limit(entry: dict, threshold: float) -> float:
    return max(entry["ratio"], entry.get("worst", entry["ratio"])) * threshold


def gate(current: dict[str, float], baseline: dict, threshold: float,
         remeasure=None) -> tuple[list[str], int, int]:
    """(failure lines, entries compared, entries in the baseline). ``remeasure(names) -> ratios`` re-runs
    regressed entries; an entry fails only if it regressed in every measurement."""
    entries = baseline["entries"]
    compared = [n for n in entries if n in current]
    regressed = {n: [current[n]] for n in compared if current[n] > limit(entries[n], threshold)}
    for _ in range(RETRIES if remeasure else 0):
        if not regressed:
            break
        again = remeasure(sorted(regressed))
        for n, r in again.items():
            regressed[n].append(r)
        regressed = {n: v for n, v in regressed.items() if all(x > limit(entries[n], threshold) for x in v)}
    failures = [f"{n}: ratio {', '.join(f'{x:.3f}' for x in v)} > {limit(entries[n], threshold):.3f} "
                f"(baseline median {entries[n]['ratio']:.3f}, worst {entries[n].get('worst', entries[n]['ratio']):.3f},"
                f" x{threshold})" for n, v in sorted(regressed.items())]
    return failures, len(compared), len(entries)


def verdict(failures: list[str], compared: int, total: int, threshold: float) -> int:
    for line in failures:
        print("REGRESSION " + line)
    print(f"bench_gate: {compared} of {total} baseline entries compared, {len(failures)} regressions "
          f"(threshold x{threshold} above the worst baseline run)")
    if failures:
        return 1
    if total == 0 or compared < MIN_COMPARED * total:
        print(f"bench_gate: FAIL: fewer than {MIN_COMPARED:.0%} of the baseline's entries were compared")
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", help="pytest-benchmark JSON of a full run (omit with --quick)")
    p.add_argument("--quick", action="store_true", help="run and gate the quick subset (benchmarks/quick.py)")
    p.add_argument("--baseline", help="baseline file (default: benchmarks/baselines/<kind>-<cpu>-<isa>.json)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--write-baseline", action="store_true", help="record the current ratios as the baseline")
    p.add_argument("--runs", type=int, default=5, help="--quick --write-baseline: runs recorded (default 5)")
    args = p.parse_args(argv)
    if args.quick == bool(args.results):
        p.error("give a results file or --quick (not both)")
    if args.quick:
        # appended, not prepended: onnxfast must come from where it is installed (or PYTHONPATH), not from
        # the uncompiled source tree
        if ROOT not in sys.path:
            sys.path.append(ROOT)
        from benchmarks import quick

        machine = quick.machine()
        path = args.baseline or baseline_path("quick", machine)
        if args.write_baseline:
            runs = [quick.run() for _ in range(max(1, args.runs))]
            current = runs[-1]
        else:
            current = quick.run()
        remeasure = quick.run
    else:
        current, machine = results_ratios(args.results)
        path = args.baseline or baseline_path("full", machine)
        runs = [current]
        remeasure = None
    if not current:
        print("bench_gate: no ratios to compare (were the benchmarks skipped? run with --benchmark-only)")
        return 2
    if args.write_baseline:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(make_baseline(runs, machine), f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"bench_gate: wrote {len(current)} entries ({len(runs)} runs) to {path}")
        return 0
    if not os.path.exists(path):
        print(f"bench_gate: no baseline for this CPU ({machine['cpu']}, {machine['isa']}): {path} is missing; "
              "record one with --write-baseline")
        return 2
    with open(path) as f:
        baseline = json.load(f)
    print(f"bench_gate: {machine['cpu']} ({machine['isa']}) against {os.path.relpath(path, ROOT)} "
          f"(recorded with onnxruntime {baseline['machine'].get('onnxruntime', '?')})")
    failures, compared, total = gate(current, baseline, args.threshold, remeasure)
    return verdict(failures, compared, total, args.threshold)


if __name__ == "__main__":
    sys.exit(main())
