#!/usr/bin/env bash
# Builds the gpu preset here (no GPU needed) so that the build folder can be carried to a
# machine with a GPU that lacks GoogleTest and Google Benchmark: shared libraries the
# binaries need from this machine (Google Benchmark) are copied into build/gpu/lib, which
# scripts/gpu-check.sh puts on LD_LIBRARY_PATH. Object files are dropped to keep it small.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset gpu >/dev/null
cmake --build --preset gpu -j "$(nproc)"
mkdir -p build/gpu/lib
for bin in build/gpu/tests/gpu/test_* build/gpu/bench/bench_*; do
  [ -x "$bin" ] || continue
  ldd "$bin" | awk '/libbenchmark/ {print $3}' | while read -r lib; do cp -L "$lib" build/gpu/lib/; done
done
du -sh build/gpu
