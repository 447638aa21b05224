"""Shared fixtures. Model-building helpers live in onnx_helpers.py (conftest modules of tests/ and
benchmarks/ share the module name 'conftest', so nothing is imported from here)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

# The real-model zoo lives in benchmarks/models; make it importable without shadowing the
# installed onnxfast (the repository root goes last on sys.path).
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    """The versions the suite's expectations depend on, so a failure after a dependency's release
    names it (ci/newest_deps.sh runs the suite on the newest release of everything)."""
    from importlib import metadata

    names = ("numpy", "onnx", "onnxruntime", "ml_dtypes", "protobuf", "torch", "onnxscript", "transformers",
             "scikit-learn", "skl2onnx", "lightgbm", "xgboost-cpu", "onnxmltools")
    found = []
    for n in names:
        try:
            found.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            found.append(f"{n} (missing)")
    return "dependencies: " + ", ".join(found)
