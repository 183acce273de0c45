#!/usr/bin/env bash
# Everything a session with unmeasured kernel changes needs from one device call (at most 10
# minutes), from a carry built by `scripts/build-for-device.sh --baseline COMMIT`:
#   1. same-card A/B of the baseline's and the candidate's bench_kernels (batch 1 and 64 rows
#      of dense, SparQ and each SparQ stage, the 1024-thread selection too) and bench_sweep
#      at 1/8 (batch 1 at S 4k and 8k, MHA and GQA 32/8; GQA batch 1 and 64 at S 16k and
#      128k): scripts/gpu-ab.sh;
#   2. scripts/gpu-check.sh --bench --no-sanitizers (every GPU test, the benchmarks, the sweep,
#      the Llama 2 7B decode) with what the budget leaves;
#   3. the sanitizers, if 50 s are left.
# Results under --out (default $OUT, else out/gpu-session), and all of them packed into
# session.tgz there (the device returns few files).
#
#   tar xzf .devcarry.tar.gz && scripts/gpu-session.sh [--budget SECONDS] [--out DIR]
#
# --budget (default 560): seconds for the whole script; step 2 gets what steps 1 leave minus
# 60 s (the sanitizers and the packing). Without .devcarry/old (no --baseline), step 1 is
# skipped.
set -uo pipefail
budget=560
out=${OUT:-out/gpu-session}
build=.devcarry
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
log="$out/session.log"
: > "$log"
note() { echo "[$SECONDS s] $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  > "$out/gpu.txt" 2>&1
cat "$build/BUILT_FROM" >> "$log" 2>/dev/null || note "no $build/BUILT_FROM"

if [ -x "$build/old/bench_kernels" ] && [ -x "$build/old/bench_sweep" ]; then
  note "A/B bench_kernels"
  bash scripts/gpu-ab.sh --base "$build/old/bench_kernels" --cand "$build/bench/bench_kernels" \
    --filter '^BM_(DenseDecode|SparqDecode|SparqStage(Scores|Select|SelectWide|Attend))/B:(1|64)/' \
    --out "$out/ab_kernels" --timeout 75 > "$out/ab_kernels.txt" 2>&1
  note "A/B bench_sweep (GQA 32/8)"
  bash scripts/gpu-ab.sh --base "$build/old/bench_sweep" --cand "$build/bench/bench_sweep" \
    --filter '^sweep/Hq32_Hkv(8|32)/B1/S(4096|8192)/c8/|^sweep/Hq32_Hkv8/B(1|64)/S(16384|131072)/c8/' \
    --out "$out/ab_sweep" --timeout 45 > "$out/ab_sweep.txt" 2>&1
else
  note "no baseline in $build/old: A/B skipped"
fi

left=$((budget - SECONDS - 60))
if [ $left -gt 60 ]; then
  note "gpu-check --bench --no-sanitizers, budget $left s"
  bash scripts/gpu-check.sh --build-dir "$build" --bench --no-sanitizers --budget "$left" \
    --out "$out/check" > "$out/check.log" 2>&1
else
  note "gpu-check skipped: $left s left"
fi
left=$((budget - SECONDS - 10))
if [ $left -ge 50 ]; then
  note "sanitizers, budget $left s"
  bash scripts/gpu-check.sh --build-dir "$build" --sanitizers-only --budget "$left" \
    --out "$out/sanitizers" > "$out/sanitizers.log" 2>&1
else
  note "sanitizers skipped: $left s left"
fi
note "done"
tar czf "$out/session.tgz" -C "$out" --exclude session.tgz . 2>/dev/null
