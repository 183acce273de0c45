#!/usr/bin/env bash
# Fuzzes the file loaders with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer:
# the .npy reader (tests/support/npy.hpp), config.json parsing and .safetensors headers
# (examples/llama2). Host code only: no GPU needed. Not part of CI (it runs for minutes);
# run it after changing a loader.
#
#   scripts/fuzz-loaders.sh [seconds per target, default 60] [target ...]
#
# Needs clang++ with libFuzzer (Debian: clang) and nlohmann-json. Crashing inputs are left in
# build/fuzz/<target>/crash-*; the script exits non-zero if any target found one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(npy config safetensors)

command -v clang++ >/dev/null || { echo "error: clang++ not found (apt-get install clang)" >&2; exit 1; }
flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Iexamples/llama2 -Itests)
failed=0
for t in "${targets[@]}"; do
  src="tests/fuzz/fuzz_$t.cpp"
  [[ -f $src ]] || { echo "error: no fuzz target $src" >&2; exit 1; }
  dir="build/fuzz/$t"
  mkdir -p "$dir/corpus"
  clang++ "${flags[@]}" "$src" -o "$dir/fuzz_$t"
  # Seeds: the project's own valid files, so mutation starts from real structure.
  if [[ $t == npy ]]; then
    for f in tests/data/seed_sparq/*.q.npy tests/data/seed_sparq/*.y.npy; do
      cp -n "$f" "$dir/corpus/" 2>/dev/null || true
    done
  fi
  echo "== fuzz_$t: $seconds s"
  if (cd "$dir" && ./"fuzz_$t" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        corpus >log.txt 2>&1); then
    grep -E "^stat::number_of_executed_units" "$dir/log.txt" | sed 's/^/   /' || true
  else
    failed=1
    echo "   CRASH: see $dir/log.txt and $dir/crash-*"
    grep -m3 -E "ERROR|runtime error|what\(\)" "$dir/log.txt" | sed 's/^/   /' || true
  fi
done
exit $failed
