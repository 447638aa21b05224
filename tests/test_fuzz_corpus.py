"""Replays every crash / hang reproducer ci/fuzz.py saved under tests/fuzz_corpus/ (issue #14).

All entries run in one persistent child interpreter (ci/fuzz.py's worker, the same onnxfast as this
process, 4 GiB address-space limit); a child that dies or answers nothing within 10 s is replaced and
the entry fails. A clean Python exception or a result is a pass: the entry only has to stop crashing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import pytest

import onnxfast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz_corpus")


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("onnxfast_ci_fuzz", os.path.join(ROOT, "ci", "fuzz.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_fuzz = _fuzz_module()
ENTRIES = _fuzz.read_index(CORPUS)


@pytest.fixture(scope="module")
def results():
    args = argparse.Namespace(onnxfast_path=os.path.dirname(os.path.dirname(onnxfast.__file__)), threads=1,
                              mem_gib=4.0, seed=0, timeout=10.0)
    checker = _fuzz.Checker(args, "")
    out = {}
    try:
        for e in ENTRIES:
            with open(os.path.join(CORPUS, e["id"] + ".onnx"), "rb") as f:
                data = f.read()
            out[e["id"]] = checker.check(data, _fuzz.load_feeds(os.path.join(CORPUS, e["id"] + ".npz")))
    finally:
        checker.close()
    return out


def test_corpus_is_not_empty_and_files_are_small():
    assert ENTRIES, "tests/fuzz_corpus/index.json lists no entries"
    for e in ENTRIES:
        for ext in (".onnx", ".npz"):
            assert os.path.getsize(os.path.join(CORPUS, e["id"] + ext)) < 256 * 1024, e["id"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_corpus_entry_neither_crashes_nor_hangs(entry, results):
    res = results[entry["id"]]
    assert not _fuzz.is_finding(res), (
        f"{entry['id']} ({entry['op']}, found as {entry['kind']} by {entry['found_by']}): now {res}")
