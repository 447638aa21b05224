"""`onnxfast bench`, the benchmark gate and the report script."""

import json
import os
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


def _gate_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "ci" / "bench_gate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _synthetic(ratios: dict) -> dict:
    return {"machine_info": {"cpu": {"brand_raw": "Test CPU 9000"}},
            "benchmarks": [{"name": n, "fullname": n, "extra_info": {"ratio": r}} for n, r in ratios.items()]}


def test_gate_noise_band_and_coverage(tmp_path):
    """No timing here: the gate's rules on made-up ratios. A ratio above the worst baseline run x threshold
    fails; a baseline of which under 90% was compared fails; no baseline for the CPU is exit 2."""
    gate = [sys.executable, str(ROOT / "ci" / "bench_gate.py")]
    base = {f"b{i}": 1.0 for i in range(10)}
    (tmp_path / "base.json").write_text(json.dumps(_synthetic(base)))
    bl = tmp_path / "bl.json"
    assert subprocess.run(gate + [str(tmp_path / "base.json"), "--baseline", str(bl), "--write-baseline"],
                          capture_output=True).returncode == 0
    recorded = json.loads(bl.read_text())
    assert recorded["machine"]["cpu"] == "Test CPU 9000" and recorded["entries"]["b0"]["worst"] == 1.0

    def run(ratios):
        f = tmp_path / "cur.json"
        f.write_text(json.dumps(_synthetic(ratios)))
        return subprocess.run(gate + [str(f), "--baseline", str(bl)], capture_output=True, text=True)

    assert run({**base, "b3": 1.14}).returncode == 0  # inside the band
    r = run({**base, "b3": 1.3})
    assert r.returncode == 1 and "REGRESSION b3" in r.stdout
    r = run({k: v for k, v in base.items() if k not in ("b1", "b2")})  # 8 of 10 compared
    assert r.returncode == 1 and "fewer than 90%" in r.stdout
    assert run({k: v for k, v in base.items() if k != "b1"}).returncode == 0  # 9 of 10
    r = subprocess.run(gate + [str(tmp_path / "base.json"), "--baseline", str(tmp_path / "none.json")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no baseline for this CPU" in r.stdout
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    assert subprocess.run(gate + [str(empty), "--baseline", str(bl)], capture_output=True).returncode == 2


def test_gate_remeasures_before_failing():
    """In --quick mode a regressed entry fails only if it regressed in every measurement."""
    g = _gate_module()
    baseline = {"entries": {"a": {"ratio": 1.0, "worst": 1.1}, "b": {"ratio": 0.5, "worst": 0.5}}}
    noisy = iter([{"a": 1.0}])  # the first re-measurement is clean: a noise spike
    failures, compared, total = g.gate({"a": 1.4, "b": 0.5}, baseline, 1.15, lambda names: next(noisy))
    assert failures == [] and (compared, total) == (2, 2)
    slow = iter([{"a": 1.5}, {"a": 1.45}])
    failures, _, _ = g.gate({"a": 1.4, "b": 0.5}, baseline, 1.15, lambda names: next(slow))
    assert len(failures) == 1 and failures[0].startswith("a: ratio 1.400, 1.500, 1.450 > 1.265")
    assert g.slug({"cpu": "AMD EPYC 9B45 64-Core Processor", "isa": "avx512"}) == "amd-epyc-9b45-64-core-processor-avx512"
    assert g.slug({"cpu": "AMD EPYC", "cpu_id": "f26m17", "isa": "avx512"}) == "amd-epyc-f26m17-avx512"


def test_debug_slowdown_hook_keeps_results(tmp_path):
    """ONNXFAST_DEBUG_SLOWDOWN (the gate's injection hook) slows a kernel, never changes what it computes."""
    code = ("import numpy as np, onnxfast; from onnxfast.cli import DEMO_MODEL; "
            "s = onnxfast.InferenceSession(DEMO_MODEL); "
            "print(repr(s.run(None, {'input': np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)})[1].tolist()))")
    outs = []
    for env in ({}, {"ONNXFAST_DEBUG_SLOWDOWN": "FusedMatMul:1.5"}, {"ONNXFAST_DEBUG_SLOWDOWN": "nonsense"}):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env}, cwd=tmp_path)  # not the source tree: the installed package
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] == outs[2]
