#!/usr/bin/env bash
# Everything a session with unmeasured kernel changes needs from one device call (at most 10
# minutes), from a carry built by `scripts/build-for-device.sh --baseline COMMIT`:
#   1. same-card A/B of the baseline's and the candidate's bench_kernels (batch 1 and 64 rows
#      of dense, SparQ and each SparQ stage, the 1024-thread selection too, and the cluster
#      route forced at batch 1-16) and bench_sweep
#      at 1/8 (batch 1 at S 4k and 8k, MHA and GQA 32/8; GQA batch 1 and 64 at S 16k and
#      128k): scripts/gpu-ab.sh;
#   2. scripts/gpu-check.sh --bench --no-sanitizers (every GPU test, the benchmarks, the sweep,
#      the Llama 2 7B decode) with what the budget leaves;
#   3. the sanitizers, if 50 s are left.
# Between 1 and 2: the block route against the three launches, both forced, at batch 8-64
# (routes.txt; about 20 s), and where batch 1's time goes, step by step, in the fused routes
# and the cluster selection (phases.txt, bench/phase_times; phases_plain_adds.txt and
# phases_leader_adds.txt, the same with other radix histogram adds, and phases_compare.txt,
# all three side by side: scripts/compare_phases.py; in session.tgz).
# Results packed into session.tgz under --out (default $OUT, else out/gpu-session), beside
# at most seven summaries (the device returns 8 files).
#
#   tar xzf .devcarry.tar.gz && scripts/gpu-session.sh [--budget SECONDS] [--out DIR]
#                                                        [--build-dir DIR]
#
# --budget (default 560): seconds for the whole script; step 2 gets what step 1 leaves minus
# 60 s (the sanitizers and the packing). --build-dir: the carried build (default .devcarry);
# without its old/ (no --baseline), step 1 is skipped.
set -uo pipefail
budget=560
out=${OUT:-out/gpu-session}
build=$(cd "$(dirname "$0")/.." && pwd)/.devcarry
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2; shift ;;
    --out) out=$2; shift ;;
    --build-dir) build=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
# Relative paths are the caller's; the scripts below run from the repository root.
mkdir -p "$out"
final=$(cd "$out" && pwd)
# The device returns at most 8 files from $OUT: everything is written to a work folder, and
# only session.tgz (all of it) and a few summaries are copied into --out at the end.
out=$(mktemp -d)
[ -d "$build" ] && build=$(cd "$build" && pwd)
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH="$build/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
status=0  # 1 where gpu-check, the sanitizers or the packing failed
log="$out/session.log"
: > "$log"
note() { echo "[$SECONDS s] $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  > "$out/gpu.txt" 2>&1
cat "$build/BUILT_FROM" >> "$log" 2>/dev/null || note "no $build/BUILT_FROM"

if [ -x "$build/old/bench_kernels" ] && [ -x "$build/old/bench_sweep" ]; then
  note "A/B bench_kernels"
  bash scripts/gpu-ab.sh --base "$build/old/bench_kernels" --cand "$build/bench/bench_kernels" \
    --filter '^BM_(DenseDecode|SparqDecode|SparqStage(Scores|Select|SelectWide|Attend))/B:(1|64)/|^BM_SparqRouteFused/' \
    --out "$out/ab_kernels" --timeout 75 > "$out/ab_kernels.txt" 2>&1
  note "A/B bench_sweep"
  bash scripts/gpu-ab.sh --base "$build/old/bench_sweep" --cand "$build/bench/bench_sweep" \
    --filter '^sweep/Hq32_Hkv(8|32)/B1/S(4096|8192)/c8/|^sweep/Hq32_Hkv8/B(1|64)/S(16384|131072)/c8/' \
    --out "$out/ab_sweep" --timeout 60 > "$out/ab_sweep.txt" 2>&1
else
  note "no baseline in $build/old: A/B skipped"
fi

# The block route against the three launches, each forced, at batch 8-64 (MHA and GQA, 1k-32k
# positions, 1/8): where the rule (block_route_rule) should take which, on this card.
note "routes forced: block against three"
for route in block three; do
  SPARQ_ROUTE=$route timeout -k 5 60 "$build/bench/bench_sweep" \
    --benchmark_filter='^sweep/Hq32_Hkv(8|32)/B(8|32|64)/S([0-9]+)/c8/' \
    --benchmark_out="$out/routes_$route.json" --benchmark_out_format=json > /dev/null 2>> "$log"
done
python3 - "$out/routes_block.json" "$out/routes_three.json" > "$out/routes.txt" 2>> "$log" <<'PY'
import json, sys
def rows(path):
    return {b["name"].split("/iterations")[0]: b for b in json.load(open(path))["benchmarks"]}
block, three = rows(sys.argv[1]), rows(sys.argv[2])
print(f"{'row':<36} {'block us':>9} {'three us':>9} {'block/three':>11}  block fits")
for name, b in block.items():
    if name in three:
        t = three[name]
        fits = "yes" if b.get("route") == 1 else "no (ran three)"
        print(f"{name:<36} {b['sparq_us']:9.1f} {t['sparq_us']:9.1f} {b['sparq_us'] / t['sparq_us']:11.3f}  {fits}")
PY

# Each step of batch 1's launches, block by block (clock marks compiled into that binary only).
if [ -x "$build/bench/phase_times" ]; then
  note "phase times"
  timeout -k 5 60 "$build/bench/phase_times" > "$out/phases.txt" 2>> "$log" ||
    note "phase_times ended with rc $?"
fi
# The same with other radix histogram adds (experiments: device::HistogramAdds).
for adds in plain leader; do
  if [ -x "$build/bench/phase_times_${adds}_adds" ]; then
    note "phase times, $adds histogram adds"
    timeout -k 5 60 "$build/bench/phase_times_${adds}_adds" > "$out/phases_${adds}_adds.txt" \
      2>> "$log" || note "phase_times_${adds}_adds ended with rc $?"
  fi
done
# Their steps side by side with phase_times' (phases_compare.txt).
if [ -s "$out/phases.txt" ] && ls "$out"/phases_*_adds.txt > /dev/null 2>&1; then
  python3 scripts/compare_phases.py "$out/phases.txt" "$out"/phases_*_adds.txt \
    > "$out/phases_compare.txt" 2>> "$log" || note "compare_phases.py ended with rc $?"
fi

left=$((budget - SECONDS - 60))
if [ $left -gt 60 ]; then
  note "gpu-check --bench --no-sanitizers, budget $left s"
  # The A/B has the key rows already: the full benchmarks keep 130 s (about 100 s in run 8),
  # not gpu-check's default 240, so that the tests (about 190 s) are not cut.
  bash scripts/gpu-check.sh --build-dir "$build" --bench --no-sanitizers --budget "$left" \
    --bench-reserve 130 --out "$out/check" > "$out/check.log" 2>&1
  rc=$?
  note "gpu-check ended with rc $rc"
  [ $rc = 0 ] || status=1
else
  note "gpu-check skipped: $left s left"
fi
left=$((budget - SECONDS - 10))
if [ $left -ge 50 ]; then
  note "sanitizers, budget $left s"
  bash scripts/gpu-check.sh --build-dir "$build" --sanitizers-only --budget "$left" \
    --out "$out/sanitizers" > "$out/sanitizers.log" 2>&1
  rc=$?
  note "sanitizers ended with rc $rc"
  [ $rc = 0 ] || status=1
else
  note "sanitizers skipped: $left s left"
fi
note "done"
tar czf "$final/session.tgz" -C "$out" . || status=1
for f in session.log gpu.txt ab_kernels.txt ab_sweep.txt routes.txt check/summary.txt sanitizers/summary.txt; do
  [ -f "$out/$f" ] && cp "$out/$f" "$final/$(echo "$f" | tr / -)"
done
echo "results: $final (all of them in session.tgz)"
exit $status
