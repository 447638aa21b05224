#!/usr/bin/env bash
# Developer build: compile _core into onnxfast/ in place (no pip), for fast edit-compile-test loops.
# Use with PYTHONPATH=$PWD (or `pip install -e .` for the packaged path).
set -euo pipefail
cd "$(dirname "$0")/.."
# one build at a time per checkout (two engineers, or a helper, sharing a tree): wait for the other
if command -v flock >/dev/null; then exec 9>"build/.dev_build.lock" 2>/dev/null || { mkdir -p build; exec 9>"build/.dev_build.lock"; }; flock 9; fi
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python3)" "$@" >/dev/null
cmake --build build/dev -j"$(nproc)"
