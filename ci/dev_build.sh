#!/usr/bin/env bash
# Developer build: compile _core into onnxfast/ in place (no pip), for fast edit-compile-test loops.
# Use with PYTHONPATH=$PWD (or `pip install -e .` for the packaged path).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python3)" "$@" >/dev/null
cmake --build build/dev -j"$(nproc)"
