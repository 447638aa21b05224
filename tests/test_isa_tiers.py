"""The native kernel tests (tests/test_native_*.py) pass at every ISA tier this CPU has (ONNXFAST_ISA
caps the tier). ci/sanitize.sh runs the same files under ASan + UBSan."""

import os
import pathlib
import subprocess
import sys

import pytest

import onnxfast

TIERS = ["portable", "avx2", "avx512"]
ORDER = {t: i for i, t in enumerate(TIERS)}
HERE = pathlib.Path(__file__).parent
# a new kernel's test file joins by its name, nothing to wire
NATIVE_TEST_FILES = sorted(p.name for p in HERE.glob("test_native_*.py"))


def test_cpu_info_reports_a_tier():
    info = onnxfast._core.cpu_info()
    assert info["isa"] in TIERS and info["gemm"] == info["isa"]


@pytest.mark.parametrize("tier", TIERS)
def test_native_kernels_at_tier(tier, tmp_path):
    best = onnxfast._core.cpu_info()["best_isa"]
    if ORDER[tier] > ORDER[best]:
        pytest.skip(f"this CPU tops out at {best}")
    env = dict(os.environ, ONNXFAST_ISA=tier)
    code = "import onnxfast; print(onnxfast._core.cpu_info()['gemm'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == tier, out.stderr
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         *(str(HERE / f) for f in NATIVE_TEST_FILES)],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
