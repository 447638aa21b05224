"""Render benchmark results as a markdown table and a PNG chart of onnxfast/onnxruntime ratios.

    python ci/bench_report.py RESULTS.json --markdown benchmarks/RESULTS.md --png benchmarks/ratios.png \
        --readme README.md

The caption names the CPU model, the ISA tier, the onnxruntime version and the date of the run; --readme
replaces the table between README.md's `<!-- results -->` and `<!-- /results -->` markers.
"""

from __future__ import annotations

import argparse
import json
import sys


def rows(results_path: str) -> list[dict]:
    with open(results_path) as f:
        data = json.load(f)
    out = []
    for b in data.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if "ratio" not in info:
            continue
        out.append({
            "model": _param(b, "name"),
            "threads": _param(b, "threads"),
            "batch": _param(b, "batch"),
            "onnxfast_ms": info["onnxfast_median_s"] * 1e3,
            "onnxruntime_ms": info["onnxruntime_median_s"] * 1e3,
            "ratio": info["ratio"],
            "openvino_ratio": info.get("openvino_ratio"),
        })
    out.sort(key=lambda r: (r["model"], r["threads"], r["batch"]))
    return out


def _param(b: dict, key: str):
    return (b.get("params") or {}).get(key)


def caption(results_path: str) -> str:
    """'CPU (ISA kernels), onnxruntime X, date' of a pytest-benchmark JSON file."""
    with open(results_path) as f:
        data = json.load(f)
    cpu = ((data.get("machine_info") or {}).get("cpu") or {}).get("brand_raw", "") or "unknown CPU"
    versions = {(b.get("extra_info") or {}).get("onnxruntime") for b in data.get("benchmarks", [])} - {None}
    if not versions:
        try:
            from importlib.metadata import version

            versions = {version("onnxruntime") + " (installed when the report was made)"}
        except Exception:  # noqa: BLE001 - a caption without it
            versions = {"?"}
    try:
        from onnxfast import _core

        isa = f" ({_core.cpu_info()['isa']} kernels)"
    except ImportError:
        isa = ""
    date = (data.get("datetime") or "")[:10]
    return f"{cpu}{isa}, onnxruntime {', '.join(sorted(versions))}{', ' + date if date else ''}"


def markdown(rs: list[dict], machine: str = "") -> str:
    ov = any(r.get("openvino_ratio") is not None for r in rs)
    lines = [f"Benchmarks{(' on ' + machine) if machine else ''}: median latency, onnxfast vs onnxruntime "
             "measured interleaved in one process; ratio < 1 means onnxfast is faster."
             + (" OpenVINO / onnxruntime: OpenVINO's CPU plugin in float32, same threads, in the same rounds."
                if ov else ""), "",
             "| model | threads | batch | onnxfast ms | onnxruntime ms | ratio |" + (" OpenVINO / onnxruntime |" if ov else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if ov else "")]
    for r in rs:
        cell = ""
        if ov:
            cell = f" {r['openvino_ratio']:.2f} |" if r.get("openvino_ratio") is not None else " |"
        lines.append(f"| {r['model']} | {r['threads']} | {r['batch']} | {r['onnxfast_ms']:.2f} | "
                     f"{r['onnxruntime_ms']:.2f} | {r['ratio']:.2f} |" + cell)
    return "\n".join(lines) + "\n"


def chart(rs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']} t{r['threads']} b{r['batch']}" for r in rs]
    vals = [r["ratio"] for r in rs]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rs) + 1.2))
    colors = ["#2a9d8f" if v <= 1 else "#e76f51" for v in vals]
    ax.barh(range(len(rs)), vals, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(rs)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("median latency ratio onnxfast / onnxruntime (lower is better)")
    ax.set_title("onnxfast vs onnxruntime")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--markdown", help="write the table here (default: print it)")
    p.add_argument("--png", help="write the chart here")
    p.add_argument("--readme", help="replace the table between this file's results markers")
    args = p.parse_args(argv)
    machine = caption(args.results)
    rs = rows(args.results)
    if not rs:
        print("bench_report: no model benchmarks with ratios in the results", file=sys.stderr)
        return 2
    md = markdown(rs, machine)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    else:
        print(md)
    if args.png:
        chart(rs, args.png)
    if args.readme:
        with open(args.readme) as f:
            text = f.read()
        start, end = "<!-- results -->", "<!-- /results -->"
        if start not in text or end not in text:
            print(f"bench_report: {args.readme} has no {start} ... {end} markers", file=sys.stderr)
            return 2
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        with open(args.readme, "w") as f:
            f.write(f"{head}{start}\n{md}{end}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
