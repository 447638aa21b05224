"""Table of kernel benchmarks (benchmarks/test_kernels.py): group, onnxfast median, peer median,
ratio of the medians, paired ratio (median over rounds of onnxfast / peer, each pair back to back),
GFLOP/s where it applies.

    python ci/kernel_report.py RESULTS.json [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys


def network_sums(data: dict) -> str:
    """Per network and thread count (groups "conv NET ... tN"): the sum of onnxfast's layer medians
    over the sum of onnxruntime's, and how many layers are within 1.25x (ratio of medians, paired)."""
    acc: dict[tuple[str, str], list[float]] = {}
    for b in data.get("benchmarks", []):
        m = re.match(r"conv (\S+) .* t(\d+)$", b.get("group") or "")
        info = b.get("extra_info") or {}
        if not m or "ratio" not in info:
            continue
        a = acc.setdefault((m.group(1), m.group(2)), [0.0, 0.0, 0, 0, 0])
        a[0] += b["stats"]["median"]
        a[1] += info["peer_median_s"]
        a[2] += 1
        a[3] += info["ratio"] <= 1.25
        a[4] += info.get("paired_ratio", info["ratio"]) <= 1.25
    if not acc:
        return ""
    lines = ["", "| network | threads | sum of medians ratio | layers within 1.25x (medians / paired) |",
             "|---|---:|---:|---:|"]
    for (net, t), (f, p, count, within, within_paired) in sorted(acc.items()):
        lines.append(f"| {net} | {t} | {f / p:.3f} | {within} / {within_paired} of {count} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    with open(args.results) as f:
        data = json.load(f)
    lines = ["| kernel | onnxfast ms | peer | peer ms | ratio | paired | GFLOP/s (peer) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    n = 0
    for b in sorted(data.get("benchmarks", []), key=lambda b: b.get("group") or ""):
        info = b.get("extra_info") or {}
        if "ratio" not in info:
            continue
        n += 1
        gf = f"{info['gflops']:.1f} ({info['peer_gflops']:.1f})" if "gflops" in info else ""
        paired = f"{info['paired_ratio']:.2f}" if "paired_ratio" in info else ""
        lines.append(f"| {b.get('group')} | {b['stats']['median'] * 1e3:.3f} | {info['peer']} | "
                     f"{info['peer_median_s'] * 1e3:.3f} | {info['ratio']:.2f} | {paired} | {gf} |")
    if not n:
        print("kernel_report: no kernel benchmarks with ratios", file=sys.stderr)
        return 2
    out = "\n".join(lines) + "\n" + network_sums(data)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(out)
    else:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
