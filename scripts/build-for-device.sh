#!/usr/bin/env bash
# Builds the gpu preset here (no GPU needed) and gathers what a GPU machine without GoogleTest,
# Google Benchmark or SentencePiece needs into .devcarry/: the test, benchmark and example
# binaries (same relative paths as in build/gpu) and the shared libraries they use from this
# machine in .devcarry/lib, then packs them into .devcarry.tar.gz (the binaries alone are over
# the device tool's 64 MiB carry limit; packed, about 23 MB). Carry .devcarry.tar.gz; there:
#   tar xzf .devcarry.tar.gz && scripts/gpu-check.sh --build-dir .devcarry [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset gpu >/dev/null
cmake --build --preset gpu -j "$(nproc)"
rm -rf .devcarry
mkdir -p .devcarry/lib
for bin in build/gpu/tests/gpu/test_* build/gpu/tests/test_* build/gpu/bench/bench_* \
           build/gpu/examples/llama2/llama2_chat build/gpu/examples/llama2/tests/test_llama_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  dest=".devcarry/${bin#build/gpu/}"
  mkdir -p "$(dirname "$dest")"
  cp "$bin" "$dest"
  ldd "$bin" | awk '/libbenchmark|libsentencepiece|libprotobuf/ {print $3}' |
    while read -r lib; do cp -L "$lib" .devcarry/lib/; done
done
du -sh .devcarry
tar czf .devcarry.tar.gz .devcarry
ls -la .devcarry.tar.gz
