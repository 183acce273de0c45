#!/usr/bin/env bash
# A short GPU check after a change to a few kernels, for a session whose device time cannot
# afford scripts/gpu-check.sh --bench (about 5 minutes on an H100): the named GPU test
# binaries, the bench_kernels rows that match a filter, with --sweep the speedup sweep's
# batch-1 rows and batch-64 MHA rows at 1/8, and with --llama the Llama 2 7B decode (random
# weights) at 4k and 32k as the defaults run it. Prints a summary table last.
#
#   scripts/gpu-quick.sh [--build-dir DIR] [--out DIR] [--tests "NAME ..."]
#                        [--bench REGEX] [--sweep] [--llama]
set -uo pipefail
build=build/gpu
out=${OUT:-out/gpu-quick}
tests=""
bench=""
sweep=0
llama=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift ;;
    --out) out=$2; shift ;;
    --tests) tests=$2; shift ;;
    --bench) bench=$2; shift ;;
    --sweep) sweep=1 ;;
    --llama) llama=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
summary="$out/summary.txt"
log="$out/quick.log"
: > "$summary"
: > "$log"
source "$(dirname "$0")/gpu-env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1 | sed 's/^/card: /' |
  tee -a "$summary"

for name in $tests; do
  bin=$(find "$build" -name "$name" -type f -perm -u+x | head -1)
  if [ -z "$bin" ]; then row "$name" "not built"; continue; fi
  t0=$SECONDS
  if timeout -k 5 240 "$bin" >> "$log" 2>&1; then
    row "$name" "pass ($((SECONDS - t0)) s)"
  else
    row "$name" "FAIL (rc $?, see quick.log)"
    grep -E "^\[  FAILED  \]" "$log" | sort -u | head -20 | tee -a "$summary"
  fi
done

if [ -n "$bench" ]; then
  timeout -k 5 180 "$build/bench/bench_kernels" --benchmark_filter="$bench" \
    --benchmark_out="$out/bench_kernels.json" --benchmark_out_format=json >> "$log" 2>&1 ||
    row bench_kernels "FAIL (rc $?)"
  grep -E "^BM_" "$log" | sed 's/iterations:1\/manual_time//' |
    awk '{printf "%-60s %8s %s\n", $1, $2, $3}' | tee -a "$summary"
fi

if [ $sweep = 1 ]; then
  timeout -k 5 120 "$build/bench/bench_sweep" --benchmark_filter='^sweep/Hq32_Hkv(32|8)/B1/.*/c8/|^sweep/Hq32_Hkv32/B64/.*/c8/' \
    --benchmark_out="$out/bench_sweep.json" --benchmark_out_format=json >> "$log" 2>&1 ||
    row bench_sweep "FAIL (rc $?)"
  python3 - "$out/bench_sweep.json" <<'PY' | tee -a "$summary"
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    n = b["name"].split("/")
    print(f"sweep {n[1]:>11} {n[2]:>3} {n[3]:>7}: dense {b['dense_us']:7.1f} us, "
          f"SparQ {b['sparq_us']:7.1f} us, {b['speedup']:.2f}x")
PY
fi

if [ $llama = 1 ]; then
  for s_len in 4096 32768; do
    res="$out/decode_$s_len.txt"
    if timeout -k 5 120 "$build/examples/llama2/llama2_chat" --random-weights llama2-7b \
        --bench-decode $s_len --bench-steps 32 > "$res" 2>&1; then
      row "llama2-7b decode $s_len" "$(grep -o 'dense: .*' "$res" | tr -s ' '); $(grep -o 'SparQ: .*ms/token' "$res" | tr -s ' '); $(grep -o 'speedup: .*' "$res")"
    else
      row "llama2-7b decode $s_len" "FAIL (rc $?)"
    fi
    cat "$res" >> "$log"
  done
fi
echo "==== summary ===="
cat "$summary"
