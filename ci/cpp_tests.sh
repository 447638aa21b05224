#!/usr/bin/env bash
# Build and run the C++ kernel unit tests (tests/cpp/kernel_tests.cpp) without Python.
#   ci/cpp_tests.sh            native build; runs once per ISA tier (ONNXFAST_ISA=portable|avx2|avx512)
#   ci/cpp_tests.sh aarch64    cross-compiles the portable kernels with Debian's aarch64-linux-gnu-g++
#                              and runs them under qemu-aarch64 (apt-get install g++-aarch64-linux-gnu
#                              qemu-user); exits 77 when either tool is missing.
# Objects go to build/cpp-tests-<mode> (override with ONNXFAST_CPP_BUILD). ONNXFAST_CPP_FLAGS adds compile and
# link flags (ci/sanitize.sh passes the sanitizer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-native}
out=${ONNXFAST_CPP_BUILD:-build/cpp-tests-$mode}
mkdir -p "$out"
sources=(csrc/core/tensor.cpp csrc/core/memory.cpp csrc/core/executor.cpp csrc/kernels/kernel.cpp csrc/kernels/elementwise.cpp csrc/kernels/gemm.cpp
         csrc/cpu/cpu.cpp csrc/threadpool/threadpool.cpp csrc/kernels/conv.cpp csrc/kernels/conv_transpose.cpp csrc/kernels/conv_geometry.cpp
         csrc/kernels/device.cpp
         csrc/kernels/normalization.cpp csrc/kernels/half.cpp csrc/kernels/vecmath.cpp csrc/kernels/vecmath_portable.cpp
         csrc/kernels/pooling.cpp csrc/kernels/reduce.cpp csrc/kernels/tensor_ops.cpp csrc/kernels/resize.cpp
         tests/cpp/kernel_tests.cpp)
flags=(-std=c++17 -O2 -Wall -Wno-unused-parameter -Wno-psabi -fno-math-errno)
read -r -a user_flags <<< "${ONNXFAST_CPP_FLAGS:-}"
flags+=("${user_flags[@]}")
declare -A extra=([csrc/kernels/resize.cpp]="-ffp-contract=off")
case "$mode" in
  native)
    cxx=${CXX:-g++}
    ldflags=(-pthread)
    if [[ $(uname -m) == x86_64 ]]; then
      sources+=(csrc/kernels/gemm_avx2.cpp csrc/kernels/vecmath_avx2.cpp csrc/kernels/gemm_avx512.cpp
                csrc/kernels/vecmath_avx512.cpp csrc/kernels/conv_direct_avx2.cpp csrc/kernels/conv_direct_avx512.cpp
                csrc/kernels/half_f16c.cpp)
      extra[csrc/kernels/gemm_avx2.cpp]="-mavx2 -mfma"
      extra[csrc/kernels/vecmath_avx2.cpp]="-mavx2 -mfma"
      extra[csrc/kernels/gemm_avx512.cpp]="-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512"
      extra[csrc/kernels/vecmath_avx512.cpp]="-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512"
      extra[csrc/kernels/conv_direct_avx2.cpp]="-mavx2 -mfma"
      extra[csrc/kernels/half_f16c.cpp]="-mavx2 -mfma -mf16c"
      extra[csrc/kernels/conv_direct_avx512.cpp]="-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512"
    fi
    run=()
    ;;
  aarch64)
    cxx=aarch64-linux-gnu-g++
    if ! command -v "$cxx" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
      echo "skip: needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt-get install g++-aarch64-linux-gnu qemu-user)"
      exit 77
    fi
    ldflags=(-pthread -static)
    run=(qemu-aarch64)
    ;;
  *) echo "usage: $0 [native|aarch64]" >&2; exit 2 ;;
esac
objs=()
pids=()
for src in "${sources[@]}"; do
  obj="$out/$(basename "${src%.cpp}").o"
  objs+=("$obj")
  # shellcheck disable=SC2086
  "$cxx" "${flags[@]}" ${extra[$src]:-} -c "$src" -o "$obj" &
  pids+=($!)
  if (( ${#pids[@]} >= $(nproc) )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" "${objs[@]}" "${ldflags[@]}" "${user_flags[@]}" -o "$out/kernel_tests"
status=0
if [[ $mode == native && $(uname -m) == x86_64 ]]; then
  for isa in portable avx2 avx512; do
    ONNXFAST_ISA=$isa "$out/kernel_tests" || status=1
  done
else
  "${run[@]}" "$out/kernel_tests" || status=1
fi
exit $status
