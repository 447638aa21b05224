"""`onnxfast bench`, the benchmark gate and the report script."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from onnxfast.cli import DEMO_MODEL, main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_bench_compare_prints_both_runtimes_and_ratio(capsys):
    assert main(["bench", DEMO_MODEL, "--compare", "onnxruntime", "--runs", "5", "--warmup", "1", "--batch", "4",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "input[4, 16]" in out
    assert "\nonnxfast " in out and "\nonnxruntime " in out
    assert "ratio onnxfast/onnxruntime (p50):" in out
    for col in ("mean ms", "p50 ms", "p90 ms", "p99 ms"):
        assert col in out


def test_bench_profile_lists_operators(capsys):
    assert main(["bench", DEMO_MODEL, "--runs", "3", "--profile", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "operators by time" in out and "FusedMatMul" in out and "Softmax" in out and "calls" in out


def test_bench_shape_option(capsys):
    assert main(["bench", DEMO_MODEL, "--runs", "2", "--shape", "input=3x16", "--no-progress"]) == 0
    assert "input[3, 16]" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["--compare", "tensorflow"], "--compare supports 'onnxruntime'"),
    (["--runs", "0"], "--runs and --batch must be >= 1"),
    (["--shape", "nope=1,2"], "the model has no input 'nope'"),
    (["--shape", "input=a,b"], "--shape expects NAME=D1,D2"),
])
def test_bench_bad_arguments(args, msg, tmp_path):
    r = subprocess.run([sys.executable, "-m", "onnxfast", "bench", DEMO_MODEL, "--no-progress", *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def _measure(slowdown_s: float) -> dict:
    """A tiny benchmark-results file measured like benchmarks/test_models.py does (interleaved)."""
    import onnxruntime as ort

    import onnxfast
    from onnxfast.benchmark import interleaved

    fast = onnxfast.InferenceSession(DEMO_MODEL)
    ref = ort.InferenceSession(DEMO_MODEL, providers=["CPUExecutionProvider"])
    x = {"input": np.ones((64, 16), np.float32)}

    def slow_fast():
        fast.run(None, x)
        if slowdown_s:
            time.sleep(slowdown_s)  # the deliberate slowdown

    t = interleaved({"onnxfast": slow_fast, "onnxruntime": lambda: ref.run(None, x)}, warmup=2, runs=30)
    ratio = float(np.median(t["onnxfast"]) / np.median(t["onnxruntime"]))
    return {"benchmarks": [{"name": "test_model[demo-1-1]", "fullname": "demo", "params": {"name": "demo",
                            "threads": 1, "batch": 1},
                            "extra_info": {"ratio": ratio, "onnxfast_median_s": float(np.median(t["onnxfast"])),
                                           "onnxruntime_median_s": float(np.median(t["onnxruntime"]))}}]}


def test_gate_fails_when_onnxfast_is_made_slower(tmp_path):
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(_measure(0.0)))
    slow.write_text(json.dumps(_measure(0.002)))
    baseline = tmp_path / "baseline_ratios.json"
    gate = [sys.executable, str(ROOT / "ci" / "bench_gate.py")]
    assert subprocess.run(gate + [str(base), "--baseline", str(baseline), "--write-baseline"]).returncode == 0
    ok = subprocess.run(gate + [str(base), "--baseline", str(baseline)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run(gate + [str(slow), "--baseline", str(baseline)], capture_output=True, text=True)
    assert bad.returncode == 1 and "REGRESSION demo" in bad.stdout


def test_report_renders_table_and_chart(tmp_path):
    pytest.importorskip("matplotlib")
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_measure(0.0)))
    md, png = tmp_path / "t.md", tmp_path / "c.png"
    r = subprocess.run([sys.executable, str(ROOT / "ci" / "bench_report.py"), str(res), "--markdown", str(md),
                        "--png", str(png)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| demo | 1 | 1 |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
