"""The platform table (csrc/cpu/cpu.h): cache sizes read at start-up (CPUID, else sysfs, else defaults)
against what Linux reports in sysfs, the CPU's identity against /proc/cpuinfo, the overrides
(ONNXFAST_CACHE_SIZES at start-up, _core.set_cache_sizes at run time) and the SGEMM blocking derived
from them (_core.gemm_blocking): another L2 size gives other column tiles, never other bits."""

from __future__ import annotations

import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper
from onnx_helpers import child_env, make_model, vi

import onnxfast
from onnxfast import _core

SYSFS_CPUS = pathlib.Path("/sys/devices/system/cpu")
SYSFS_CACHE = SYSFS_CPUS / "cpu0" / "cache"
KEYS = ("l1d", "l2", "l3")


@pytest.fixture(autouse=True)
def restore_cache_sizes():
    """Every test leaves the sizes in effect as it found them (they are process-wide)."""
    before = _core.cache_sizes()
    yield
    _core.set_cache_sizes(**before)


def sysfs_sizes(cache_dir: pathlib.Path = SYSFS_CACHE) -> dict:
    """A CPU's data or unified caches by level as sysfs lists them: {'l1d': bytes, 'l2': ..., 'l3': ...}
    (the first of each level; levels it does not list are absent)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    out = {}
    for d in sorted(cache_dir.glob("index*"), key=lambda p: int(p.name[5:])):
        try:
            level = int((d / "level").read_text().strip())
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind not in ("Data", "Unified") or not 1 <= level <= 3 or not size:
            continue
        n = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        out.setdefault(KEYS[level - 1], n)
    return out


def test_cpu_info_has_the_platform_table():
    info = _core.cpu_info()
    for k in ("avx2", "fma", "avx512f", "best_isa", "isa", "gemm", "vecmath"):  # the keys from before
        assert k in info
    for k in ("l1d_bytes", "l2_bytes", "l3_bytes", "vector_bytes", "family", "model", "stepping"):
        assert isinstance(info[k], int), k
    for k in ("vendor", "model_name", "cache_source"):
        assert isinstance(info[k], str), k
    assert isinstance(info["avx512_full_rate"], bool)
    assert info["vector_bytes"] == {"avx512": 64, "avx2": 32, "portable": 16}[info["isa"]]
    assert 1024 <= info["l1d_bytes"] <= info["l2_bytes"] and info["l3_bytes"] > 0
    assert [info[f"{k}_bytes"] for k in KEYS] == [_core.cache_sizes()[k] for k in KEYS]
    # the table's facts: no AVX-512, no full-rate AVX-512; Intel's AVX-512 cores all run it whole;
    # Zen 4 (AMD family 0x19) double-pumps it
    if not info["avx512f"]:
        assert not info["avx512_full_rate"]
    elif info["vendor"] == "GenuineIntel":
        assert info["avx512_full_rate"]
    elif info["vendor"] == "AuthenticAMD" and info["family"] == 0x19:
        assert not info["avx512_full_rate"]


@pytest.mark.skipif(not SYSFS_CACHE.is_dir(), reason="no /sys/devices/system/cpu/cpu0/cache (not Linux)")
def test_detected_sizes_match_sysfs():
    want = sysfs_sizes()
    if not want:
        pytest.skip("sysfs lists no data or unified cache for cpu0")
    detected = _core.cache_sizes(detected=True)
    # Linux fills sysfs from the same CPUID leaves (4 / 0x8000001D) on x86, so they agree; a VM whose
    # CPUID changed after boot (live migration) could legitimately differ, which this would report.
    # CPUID describes the core it ran on: on a hybrid CPU (P- and E-cores) any CPU's listing will do.
    got = {k: detected[k] for k in want}
    if got != want:
        others = [sysfs_sizes(c / "cache") for c in SYSFS_CPUS.glob("cpu[0-9]*")]
        assert any(got == {k: o.get(k) for k in want} for o in others), (
            f"detected {got}, sysfs cpu0 {want}; cache_source {_core.cpu_info()['cache_source']}")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not pathlib.Path("/proc/cpuinfo").exists(),
                    reason="x86-64 Linux only")
def test_identity_matches_proc_cpuinfo():
    fields = {}
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if not line.strip():
            break  # the first processor's block
        k, _, v = line.partition(":")
        fields[k.strip()] = v.strip()
    info = _core.cpu_info()
    assert info["vendor"] == fields["vendor_id"]
    assert info["family"] == int(fields["cpu family"])
    assert info["model"] == int(fields["model"])
    assert " ".join(info["model_name"].split()) == " ".join(fields["model name"].split())


def test_l2_override_changes_the_gemm_blocking():
    detected = _core.cache_sizes(detected=True)
    _core.set_cache_sizes(l2=None)
    base = _core.gemm_blocking(512, 4096, 512)
    assert base["kc"] == 256  # fixed: the packed layouts
    old = _core.set_cache_sizes(l2="256K")
    assert old["l2"] == detected["l2"]
    small = _core.gemm_blocking(512, 4096, 512)
    # a 256 x nc block of floats in half of 256 KiB: 128 columns, 32 tiles across N at one thread
    assert small["nc_max"] == 128 and small["nc"] == 128 and small["nb"] == 32 and small["kc"] == 256
    assert _core.cpu_info()["l2_bytes"] == 256 << 10
    _core.set_cache_sizes(l2=4 << 20)
    big = _core.gemm_blocking(512, 4096, 512)
    assert big["nc_max"] == 2048 and big["nb"] == 2
    assert small["nc"] != base["nc"] or big["nc"] != base["nc"]
    prev = _core.set_cache_sizes(l2=None)  # None: back to the detected size
    assert prev["l2"] == 4 << 20
    assert _core.cache_sizes()["l2"] == detected["l2"]
    assert _core.gemm_blocking(512, 4096, 512) == base
    # the other levels were never touched
    assert _core.cache_sizes()["l1d"] == old["l1d"] and _core.cache_sizes()["l3"] == old["l3"]


def _matmul_session(threads: int, b: np.ndarray | None):
    """y = x @ w with w a constant (pre-packed) or, when b is None, a second input."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    inputs = [vi("x", shape=["M", "K"])] + ([] if b is not None else [vi("w", shape=["K", "N"])])
    model = make_model([node], inputs, [vi("y", shape=None)], [("w", b)] if b is not None else [])
    o = onnxfast.SessionOptions()
    o.intra_op_num_threads = threads
    return onnxfast.InferenceSession(model.SerializeToString(), o)


@pytest.mark.parametrize("prepacked", [False, True])
def test_gemm_bits_do_not_depend_on_threads_or_cache_sizes(prepacked):
    rng = np.random.default_rng(7)
    M, N, K = 96, 1000, 600  # three K blocks; N wider than a 64-column tile
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64)
    feeds = {"x": x} if prepacked else {"x": x, "w": w}
    sessions = {t: _matmul_session(t, w if prepacked else None) for t in (1, 2)}
    results = {}
    for l2 in (None, "128K"):
        _core.set_cache_sizes(l2=l2)
        nc = _core.gemm_blocking(M, N, K, threads=1, prepacked=prepacked)["nc"]
        assert nc == 64 or l2 is None
        for t, s in sessions.items():
            y = s.run(None, feeds)[0]
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)
            results[l2, t] = y
        assert np.array_equal(results[l2, 1], results[l2, 2]), f"l2={l2}: 1 and 2 threads differ"
    # nc only partitions N (K blocks and their order are fixed): the same bits under both sizes
    assert np.array_equal(results[None, 1], results["128K", 1])


@pytest.mark.parametrize("kwargs", [dict(l2=0), dict(l2=-1), dict(l2="12Q"), dict(l2="512"), dict(l2=1.5),
                                    dict(l2=True), dict(l2="2T"), dict(l4="1M"), dict(l1d="64K", l2="bad")])
def test_bad_set_cache_sizes_raise_and_change_nothing(kwargs):
    before = _core.cache_sizes()
    with pytest.raises(ValueError) as e:
        _core.set_cache_sizes(**kwargs)
    bad = "l4" if "l4" in kwargs else "l2"
    assert bad in str(e.value)
    assert _core.cache_sizes() == before  # all entries are checked before any is applied


def test_cache_size_strings():
    assert _core.parse_cache_sizes("l1d=32K,l2=1M,l3=32M") == {"l1d": 32 << 10, "l2": 1 << 20, "l3": 32 << 20}
    assert _core.parse_cache_sizes(" L2 = 1536k , ") == {"l2": 1536 << 10}
    assert _core.parse_cache_sizes("l3=2097152,l1d=48KiB") == {"l3": 2 << 20, "l1d": 48 << 10}
    for spec, entry in [("l2=1Q", "l2=1Q"), ("l2", "l2"), ("l2=", "l2="), ("l9=1M", "l9=1M"),
                        ("l1d=32K,l2=1M,l2=2M", "l2=2M"), ("l2=0K", "l2=0K"), ("l2=1.5M", "l2=1.5M")]:
        with pytest.raises(ValueError, match=f"bad entry '{entry}'"):
            _core.parse_cache_sizes(spec)


def _child(code: str, env_value: str, tmp_path) -> subprocess.CompletedProcess:
    env = child_env()
    env["ONNXFAST_CACHE_SIZES"] = env_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)


def test_env_override_at_start_up(tmp_path):
    code = ("import json, onnxfast; c = onnxfast._core; i = c.cpu_info(); "
            "print(json.dumps([[i[k + '_bytes'] for k in ('l1d', 'l2', 'l3')], c.cache_sizes(detected=True), "
            "c.gemm_blocking(64, 4096, 512)['nc_max']]))")
    r = _child(code, "l1d=32K,l2=1M,l3=32M", tmp_path)
    assert r.returncode == 0, r.stderr
    sizes, detected, nc_max = __import__("json").loads(r.stdout)
    assert sizes == [32 << 10, 1 << 20, 32 << 20]
    assert detected == _core.cache_sizes(detected=True)  # the override leaves the detection alone
    assert nc_max == 512
    r = _child(code, "l2=256K", tmp_path)  # a subset: the others as detected
    assert r.returncode == 0, r.stderr
    sizes, detected, nc_max = __import__("json").loads(r.stdout)
    assert sizes == [detected["l1d"], 256 << 10, detected["l3"]] and nc_max == 128


def test_bad_env_override_fails_the_import_clearly(tmp_path):
    r = _child("import onnxfast", "l1d=32K,l2=12Q", tmp_path)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: ONNXFAST_CACHE_SIZES") and "'l2=12Q'" in last, r.stderr[-2000:]
