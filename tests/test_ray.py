"""The Ray integration's tests (tests/ray_cases.py) in a child pytest process.

A Ray driver leaves native threads (its core worker, gRPC) running after ray.shutdown(); in the suite's own
process, with torch and the rest loaded, the interpreter then crashed at exit (a segmentation fault after
the summary, every test passed), while the same cases alone exit cleanly. So the cluster lives and dies in
a child, and its result is checked here: every case must pass, none skipped."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.ray
def test_ray_integration_cases(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("pandas")
    pytest.importorskip("requests")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
                        "ignore::DeprecationWarning", str(HERE / "ray_cases.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    out = r.stdout[-6000:] + r.stderr[-3000:]
    assert r.returncode == 0, out
    summary = r.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary, out
