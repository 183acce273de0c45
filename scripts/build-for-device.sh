#!/usr/bin/env bash
# Builds the gpu preset here (no GPU needed) and gathers what a GPU machine without GoogleTest,
# Google Benchmark or SentencePiece needs into .devcarry/: the test, benchmark and example
# binaries (same relative paths as in build/gpu) and the shared libraries they use from this
# machine in .devcarry/lib (the Llama example's model library too), then packs them into
# .devcarry.tar.gz, which must stay under the device tool's 64 MiB carry limit (the script
# fails if it does not); .devcarry/BUILT_FROM names the commits. Carry .devcarry.tar.gz; there:
#   tar xzf .devcarry.tar.gz && scripts/gpu-check.sh --build-dir .devcarry [--bench]
#
# --baseline COMMIT also builds bench_kernels and bench_sweep of COMMIT (in a git worktree,
# build/baseline-src) into .devcarry/old/, for a same-card comparison there:
#   scripts/gpu-ab.sh --base .devcarry/old/bench_kernels --cand .devcarry/bench/bench_kernels
# --xz packs .devcarry.tar.xz instead (about 40% smaller: 47 against 29 MiB in the eighteenth
# session, when the gzip archive was 1.5 MiB under the limit); there, without an xz binary:
#   python3 -c "import tarfile; tarfile.open('.devcarry.tar.xz').extractall()"
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=""
archive=.devcarry.tar.gz
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline=${2:?--baseline needs a commit}; shift ;;
    --xz) archive=.devcarry.tar.xz ;;
    *) echo "unknown option: $1 (--baseline COMMIT, --xz)" >&2; exit 2 ;;
  esac
  shift
done
cmake --preset gpu >/dev/null
cmake --build --preset gpu -j "$(nproc)"
rm -rf .devcarry
mkdir -p .devcarry/lib
if [ -n "$baseline" ]; then
  src=build/baseline-src
  if [ -d "$src" ]; then git -C "$src" checkout -q --detach "$baseline"; else
    git worktree add -q --detach "$src" "$baseline"; fi
  (cd "$src" && cmake --preset gpu >/dev/null &&
    cmake --build --preset gpu -j "$(nproc)" --target bench_kernels bench_sweep)
  mkdir -p .devcarry/old
  cp "$src/build/gpu/bench/bench_kernels" "$src/build/gpu/bench/bench_sweep" .devcarry/old/
  strip --strip-unneeded .devcarry/old/bench_kernels .devcarry/old/bench_sweep
fi
for bin in build/gpu/tests/gpu/test_* build/gpu/tests/test_* build/gpu/bench/bench_* \
           build/gpu/bench/phase_times build/gpu/bench/phase_times_*_adds \
           build/gpu/examples/llama2/llama2_chat build/gpu/examples/llama2/tests/test_llama_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  dest=".devcarry/${bin#build/gpu/}"
  mkdir -p "$(dirname "$dest")"
  cp "$bin" "$dest"
  # Host symbols only (the device code is in the fatbin section): about 1 MiB of the carry.
  strip --strip-unneeded "$dest"
  ldd "$bin" | awk '/libbenchmark|libsentencepiece|libprotobuf|libllama2_model/ {print $3}' |
    while read -r lib; do cp -L "$lib" .devcarry/lib/; done
done
# What the carry was built from, for a later session to check against its checkout.
{
  echo "built from $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
  [ -n "$baseline" ] && echo "baseline $(git rev-parse "$baseline") in old/"
  date -u +"built %Y-%m-%d %H:%M UTC"
} > .devcarry/BUILT_FROM
du -sh .devcarry
rm -f .devcarry.tar.gz .devcarry.tar.xz  # one archive, so that a stale one is never carried
if [ "$archive" = .devcarry.tar.xz ]; then
  tar cf - .devcarry | xz -T0 -6 > "$archive"
else
  tar czf "$archive" .devcarry
fi
ls -la "$archive"
# The 64 MiB cover the working tree's tracked files too.
tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
limit=$((64 * 1024 * 1024 - tree))
size=$(stat -c %s "$archive")
echo "carry: $((size / 1024 / 1024)) MiB + tracked files $((tree / 1024 / 1024)) MiB of the 64 MiB limit"
if ((size >= limit)); then
  echo "error: $archive and the tracked files are over the device tool's 64 MiB limit" >&2
  exit 1
fi
