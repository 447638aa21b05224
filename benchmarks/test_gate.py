"""The benchmark gate on the quick subset (ci/bench_gate.py --quick, benchmarks/quick.py), in the default test
run wherever a baseline for this CPU model and ISA tier is committed (benchmarks/baselines/): the clean tree
must pass it, and a 1.3x slowdown injected into one kernel (ONNXFAST_DEBUG_SLOWDOWN=MatMul:1.3) must fail it.

The gate compares ratios to onnxruntime measured interleaved in one process, with a noise band above the
worst of the runs that recorded the baseline and two re-measurements before a regression counts, so a
shared machine's drift does not fail it (10 of 10 clean runs passed where the baseline was recorded)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytest.importorskip("onnxruntime")


def _gate_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "ci" / "bench_gate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _quick_gate(env: dict) -> subprocess.CompletedProcess:
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from benchmarks import quick

    if not os.path.exists(_gate_module().baseline_path("quick", quick.machine())):
        pytest.skip(f"no quick baseline for this CPU ({quick.machine()['cpu']}, {quick.machine()['isa']})")
    return subprocess.run([sys.executable, str(ROOT / "ci" / "bench_gate.py"), "--quick"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})


def test_quick_gate_passes_on_the_clean_tree():
    r = _quick_gate({})
    assert r.returncode == 0, r.stdout + r.stderr


def test_quick_gate_fails_on_an_injected_slowdown():
    r = _quick_gate({"ONNXFAST_DEBUG_SLOWDOWN": "MatMul:1.3"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REGRESSION matmul_" in r.stdout
