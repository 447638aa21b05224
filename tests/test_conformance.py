"""The ONNX backend suite (tests/conformance/runner.py) against the committed ratchet: every case
listed in passing.txt must still pass. New passes are reported; run the runner with --update to
raise the ratchet. failing.txt lists every failing case with its reason."""

from conformance.runner import collect, read_ratchet, run_all


def test_conformance_ratchet(capsys):
    cases = collect()
    results = run_all(cases)
    passing = read_ratchet()
    assert passing, "tests/conformance/passing.txt is missing or empty"
    unknown = sorted(passing - set(results))
    assert not unknown, f"ratchet lists cases the suite does not have: {unknown[:10]}"
    broken = {n: results[n] for n in sorted(passing) if results[n] is not None}
    n_pass = sum(r is None for r in results.values())
    newly = sorted(n for n, r in results.items() if r is None and n not in passing)
    with capsys.disabled():
        print(f"\nconformance: {n_pass} passed, {len(results) - n_pass} failed of {len(results)} cases"
              + (f" ({len(newly)} pass but are not in the ratchet yet)" if newly else ""))
    assert not broken, "cases in the ratchet that fail now:\n" + "\n".join(f"{k}: {v}" for k, v in broken.items())
