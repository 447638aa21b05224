"""Table of kernel benchmarks (benchmarks/test_kernels.py): group, onnxfast median, peer median,
ratio, GFLOP/s where it applies.

    python ci/kernel_report.py RESULTS.json [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    with open(args.results) as f:
        data = json.load(f)
    lines = ["| kernel | onnxfast ms | peer | peer ms | ratio | GFLOP/s (peer) |", "|---|---:|---|---:|---:|---:|"]
    n = 0
    for b in sorted(data.get("benchmarks", []), key=lambda b: b.get("group") or ""):
        info = b.get("extra_info") or {}
        if "ratio" not in info:
            continue
        n += 1
        gf = f"{info['gflops']:.1f} ({info['peer_gflops']:.1f})" if "gflops" in info else ""
        lines.append(f"| {b.get('group')} | {b['stats']['median'] * 1e3:.3f} | {info['peer']} | "
                     f"{info['peer_median_s'] * 1e3:.3f} | {info['ratio']:.2f} | {gf} |")
    if not n:
        print("kernel_report: no kernel benchmarks with ratios", file=sys.stderr)
        return 2
    out = "\n".join(lines) + "\n"
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(out)
    else:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
