#!/usr/bin/env bash
# Build and run the C++ kernel unit tests (tests/cpp/kernel_tests.cpp) without Python, from CMake's one
# source list (CMakeLists.txt, -DONNXFAST_PYTHON=OFF -DONNXFAST_CPP_TESTS=ON).
#   ci/cpp_tests.sh            native build; runs once per ISA tier (ONNXFAST_ISA=portable|avx2|avx512)
#   ci/cpp_tests.sh aarch64    cross-compiles the portable kernels with Debian's aarch64-linux-gnu-g++
#                              and runs them under qemu-aarch64 (apt-get install g++-aarch64-linux-gnu
#                              qemu-user); exits 77 when either tool is missing.
# The build goes to build/cpp-tests-<mode> (override with ONNXFAST_CPP_BUILD). ONNXFAST_CPP_FLAGS adds compile and
# link flags (ci/sanitize.sh passes the sanitizer flags). Needs cmake and ninja (the test extras install both).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-native}
out=${ONNXFAST_CPP_BUILD:-build/cpp-tests-$mode}
mkdir -p "$out"
flags=${ONNXFAST_CPP_FLAGS:-}
cmake_args=(-S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DONNXFAST_PYTHON=OFF -DONNXFAST_CPP_TESTS=ON
            "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=$flags")
case "$mode" in
  native)
    run=()
    ;;
  aarch64)
    if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
      echo "skip: needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt-get install g++-aarch64-linux-gnu qemu-user)"
      exit 77
    fi
    cmake_args+=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++
                 "-DCMAKE_EXE_LINKER_FLAGS=$flags -static")
    run=(qemu-aarch64)
    ;;
  *) echo "usage: $0 [native|aarch64]" >&2; exit 2 ;;
esac
cmake "${cmake_args[@]}" >/dev/null
cmake --build "$out" --target kernel_tests -j"$(nproc)"
status=0
if [[ $mode == native && $(uname -m) == x86_64 ]]; then
  for isa in portable avx2 avx512; do
    ONNXFAST_ISA=$isa "$out/kernel_tests" || status=1
  done
else
  "${run[@]}" "$out/kernel_tests" || status=1
fi
exit $status
