#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run: builds the C++ kernel unit tests (tests/cpp) and _core with
# -fsanitize=address,undefined (every report fatal), then runs the C++ tests at every ISA tier and the native-kernel
# Python tests (tests/test_native_*.py, as tests/test_isa_tiers.py) at each tier this CPU has. Exits non-zero on any
# report or test failure.
#   ci/sanitize.sh                 everything (about 25 min on 2 busy cores: two builds ~5-7 min, 4-7 min per tier)
#   ci/sanitize.sh -k conv         extra arguments go to pytest
# Environment: ONNXFAST_SANITIZE_BUILD (default build/sanitize), ONNXFAST_SANITIZE_TIERS (default: portable up to
# the CPU's best tier, e.g. "portable avx512"), ONNXFAST_SANITIZE_STEPS (default "cpp python"),
# ONNXFAST_SANITIZE_FILES (test files for the python step instead of tests/test_native_*.py).
# The in-place developer module (onnxfast/_core*.so) is never touched: the sanitized module is built into
# $ONNXFAST_SANITIZE_BUILD/pkg/onnxfast next to a copy of the Python package, and pytest runs from a folder outside
# the repository with PYTHONPATH pointing there. Python itself is not instrumented, so the gcc ASan/UBSan runtimes
# are preloaded; leak detection is off for Python (CPython keeps objects alive at exit by design) and on for the
# pure C++ test binary. ci/sanitize.supp lists third-party (never onnxfast) code ASan may trip over.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${ONNXFAST_SANITIZE_BUILD:-build/sanitize}
mkdir -p "$out"
out=$(cd "$out" && pwd)
steps=${ONNXFAST_SANITIZE_STEPS:-cpp python}
san_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
common_asan="halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1"
common_asan+=":suppressions=$root/ci/sanitize.supp"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1"
status=0
SECONDS=0

if [[ " $steps " == *" cpp "* ]]; then
  echo "== C++ kernel tests (ASan+UBSan, leak detection on)"
  # -O1 -g after cpp_tests.sh's -O2: readable stacks; the flags also reach the link.
  if ! ASAN_OPTIONS="$common_asan:detect_leaks=1" ONNXFAST_CPP_BUILD="$out/cpp" \
       ONNXFAST_CPP_FLAGS="$san_flags -O1 -g" nice -n 10 bash ci/cpp_tests.sh; then
    echo "FAILED: C++ kernel tests under sanitizers"; status=1
  fi
  echo "   (${SECONDS}s so far)"
fi

if [[ " $steps " == *" python "* ]]; then
  echo "== _core (ASan+UBSan) into $out/pkg"
  # RelWithDebInfo: symbols kept (pybind11 strips Release modules); no LTO (slow, and nothing to gain here).
  nice -n 10 cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DONNXFAST_SANITIZE=ON \
    -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
    -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
  nice -n 10 cmake --build "$out" -j"$(nproc)"
  pkg=$out/pkg
  # The Python package next to the sanitized _core (stale copies removed first; the module itself kept).
  python3 - "$root/onnxfast" "$pkg/onnxfast" <<'EOF'
import pathlib, shutil, sys
src, dst = map(pathlib.Path, sys.argv[1:])
for p in dst.iterdir():
    if not p.name.startswith("_core"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_core*.so", "_core*.pyd", "__pycache__"))
EOF
  # The runtimes of the compiler CMake used (CXX picks it on the first configure).
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$out/CMakeCache.txt")
  preload="$(realpath "$("$cxx" -print-file-name=libasan.so)"):$(realpath "$("$cxx" -print-file-name=libubsan.so)")"
  run_py() {  # run_py TIER ARGS...: python under the sanitizers, outside the repository, at one ISA tier
    local tier=$1; shift
    (cd "$out" && env LD_PRELOAD="$preload" PYTHONPATH="$pkg" PYTHONMALLOC=malloc ONNXFAST_ISA="$tier" \
       ASAN_OPTIONS="$common_asan:detect_leaks=0" nice -n 10 python3 "$@")
  }
  # The sanitized module is the one imported, and the tiers it can run.
  check=$(run_py portable -c "import onnxfast; print(onnxfast._core.__file__); print(onnxfast._core.cpu_info()['best_isa'])")
  core_file=$(sed -n 1p <<< "$check"); best=$(sed -n 2p <<< "$check")
  if [[ $core_file != "$pkg/onnxfast/"* ]]; then
    echo "FAILED: imported $core_file, not the sanitized module under $pkg"; exit 1
  fi
  tiers=${ONNXFAST_SANITIZE_TIERS:-}
  if [[ -z $tiers ]]; then
    case $best in
      avx512) tiers="portable avx2 avx512" ;;
      avx2) tiers="portable avx2" ;;
      *) tiers="portable" ;;
    esac
  fi
  files=$(ls "$root"/tests/test_native_*.py)  # tests/test_isa_tiers.py's NATIVE_TEST_FILES
  if [[ -n "${ONNXFAST_SANITIZE_FILES:-}" ]]; then  # other test files (paths relative to the repository)
    files=$(for f in $ONNXFAST_SANITIZE_FILES; do echo "$root/$f"; done)
  fi
  for tier in $tiers; do
    echo "== native-kernel Python tests at ONNXFAST_ISA=$tier (ASan+UBSan preloaded)"
    # --capture=sys: pytest captures Python's sys.stdout/stderr only, so a report written to fd 2 by an aborting
    # process is not lost with the capture file (UBSan ignores log_path in gcc 12). Any report in the output
    # fails the step, also one from a child process that the test tolerated.
    log=$out/pytest-$tier.log
    # shellcheck disable=SC2086
    if ! run_py "$tier" -m pytest -q -p no:cacheprovider --capture=sys $files "$@" 2>&1 | tee "$log"; then
      echo "FAILED: native-kernel tests at tier $tier under sanitizers (output in $log)"; status=1
    fi
    if grep -q -E 'runtime error:|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' "$log"; then
      echo "FAILED: sanitizer report(s) at tier $tier (in $log)"; status=1
    fi
    echo "   (${SECONDS}s so far)"
  done
fi

if (( status == 0 )); then echo "sanitize: clean (${SECONDS}s)"; else echo "sanitize: FAILED (${SECONDS}s)"; fi
exit $status
