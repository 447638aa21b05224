"""The C++ kernel unit tests (tests/cpp/kernel_tests.cpp), built without Python by ci/cpp_tests.sh:
natively at every ISA tier, and cross-compiled for aarch64 under qemu-user when the Debian
cross toolchain and qemu are installed (skipped otherwise, with the install line)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "ci" / "cpp_tests.sh"


def _run(mode: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ONNXFAST_CPP_BUILD=str(tmp_path / mode))
    env.pop("ONNXFAST_ISA", None)
    return subprocess.run(["bash", str(SCRIPT), mode], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler")
def test_cpp_kernel_units_native(tmp_path):
    r = _run("native", tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "0 failures" in r.stdout


def test_cpp_kernel_units_aarch64_qemu(tmp_path):
    r = _run("aarch64", tmp_path)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "tier: isa=portable" in r.stdout and "0 failures" in r.stdout
