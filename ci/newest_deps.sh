#!/usr/bin/env bash
# The scheduled "newest dependencies" check: a fresh venv in which pip upgrades every dependency,
# direct and transitive, to its newest release (--upgrade-strategy eager, no cache), then the test
# suite. A dependency's new release that breaks a test shows up here as a named failure: the
# versions are printed first (and pytest's header repeats the ones the suite depends on).
#   ci/newest_deps.sh [pytest args...]      (default: -q)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ONNXFAST_NEWEST_VENV:-.venv-newest}
rm -rf "$venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
pip install --quiet --upgrade pip
pip install --no-cache-dir --upgrade --upgrade-strategy eager ".[test]"
echo "== installed versions"
pip list --format=freeze | grep -iE '^(numpy|onnx|onnxruntime|ml[_-]dtypes|protobuf|torch|onnxscript|transformers|scikit-learn|skl2onnx|lightgbm|onnxmltools|threadpoolctl|pytest)=='
echo "== dependencies with a newer release than installed (should be none but pinned ones)"
pip list --outdated --format=freeze 2>/dev/null || true
if [[ $# -eq 0 ]]; then set -- -q; fi
pytest "$@"
