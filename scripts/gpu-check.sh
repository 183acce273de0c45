#!/usr/bin/env bash
# Runs every GPU check on a machine with an NVIDIA GPU and prints a summary table last:
# the GPU tests; with --bench the per-kernel benchmarks and the speedup sweep (JSON and PNG
# plots); then compute-sanitizer memcheck and racecheck on a subset of the tests.
#
#   scripts/gpu-check.sh [--bench [--profile]] [--bench-only] [--no-sanitizers]
#                        [--sanitizers-only] [--budget SECONDS] [--bench-reserve SECONDS]
#                        [--build-dir DIR] [--out DIR]
#
# --budget S: finish within S seconds of the start (0, the default: no limit). Each step's
# timeout is cut to what is left (the tests leave --bench-reserve seconds, default 240, for
# the benchmarks), a step with under 10 s left is skipped ("skipped (budget)"), and the JSON
# is merged into --out after each benchmark process, so a command killed at the device's
# limit still returns the rest.
#
# --profile adds Nsight Compute summaries of the SparQ and dense kernels to bench.log.
# --bench-only skips the tests and sanitizers (to repeat only the measurements).
# --no-sanitizers / --sanitizers-only split a run in two (each call under the device's
# 10-minute limit): everything but the sanitizers, then only them.
#
# It uses an existing build (default build/gpu, from `cmake --preset gpu`; GoogleTest and
# Google Benchmark are needed only where it is built) or builds one. Results go to --out
# (default $OUT, else out/gpu-check). On an H100 in run 8 (twelfth session) --bench
# --no-sanitizers took 288 s (the tests about 190 s of it) and --sanitizers-only 42 s. Rows
# go to the summary as each part ends, and the sanitizers run last: a run cut at the device's
# 10-minute limit still returns everything before.
set -uo pipefail

bench=0
tests=1
sanitize=1
profile=0
budget=0
bench_reserve=240
build=build/gpu
out=${OUT:-out/gpu-check}
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) bench=1 ;;
    --bench-only) bench=1; tests=0; sanitize=0 ;;
    --no-sanitizers) sanitize=0 ;;
    --sanitizers-only) bench=0; tests=0; sanitize=1 ;;
    --profile) profile=1 ;;
    --budget) budget=$2; shift ;;
    --bench-reserve) bench_reserve=$2; shift ;;
    --build-dir) build=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
source "$(dirname "$0")/gpu-env.sh"
# lim LIMIT [RESERVE]: the timeout for a step that may take LIMIT seconds, cut so that RESERVE
# seconds (default 20: the plots) of the budget stay free; 0: skip the step.
lim() {
  local want=$1 reserve=${2:-20}
  if [ "$budget" = 0 ]; then echo "$want"; return; fi
  local left=$((budget - SECONDS - reserve))
  if [ $left -lt 10 ]; then echo 0; elif [ $left -lt "$want" ]; then echo $left; else echo "$want"; fi
}
# rc_word RC: how a timed step ended, for the summary.
rc_word() { case $1 in 0) echo pass ;; 124|137) echo TIMEOUT ;; *) echo "FAIL (rc $1)" ;; esac; }

if ! nvidia-smi -L >/dev/null 2>&1; then echo "no NVIDIA GPU visible" >&2; exit 2; fi
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
echo "card: $card" | tee -a "$summary"
date -u +"date: %Y-%m-%d %H:%M UTC" | tee -a "$summary"

if [ ! -x "$build/tests/gpu/test_gpu_sparq_decode" ]; then
  echo "no build in $build: configuring and building (needs GoogleTest)"
  cmake --preset gpu && cmake --build "$build" -j "$(nproc)" || { row build FAILED; exit 1; }
fi

fail=0
tests_log="$out/tests.log"
: > "$tests_log"
# Each test binary runs as 4 GoogleTest shards at once (most of a case's time is the float64
# CPU reference, and the device machine has 16 cores); a binary passes when every shard does.
shards=4
shard_dir=$(mktemp -d)
for t in "$build"/tests/gpu/test_* "$build"/tests/test_* "$build"/examples/llama2/tests/test_llama_*; do
  [ $tests = 1 ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s)
  # The benchmarks keep bench_reserve seconds of a budget (a hang here must not eat the
  # measurements).
  t_lim=$(lim 150 $([ $bench = 1 ] && echo "$bench_reserve" || echo 20))
  if [ "$t_lim" = 0 ]; then row "$name" "skipped (budget)"; fail=1; continue; fi
  pids=()
  for ((i = 0; i < shards; ++i)); do
    # Full output ([ RUN ] lines): a shard that times out shows which test it was in.
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout -k 5 "$t_lim" "$t" \
      > "$shard_dir/$name.$i" 2>&1 &
    pids+=($!)
  done
  res=pass
  for pid in "${pids[@]}"; do
    wait "$pid"
    rc=$?
    [ $rc = 0 ] || [ "$res" = TIMEOUT ] || res=$(rc_word $rc)
  done
  cat "$shard_dir/$name".* >> "$tests_log"
  [ "$res" = pass ] || fail=1
  # Skipped tests counted: a run where the device is not seen skips them all and passes.
  # (GoogleTest prints each twice: as it ends, "(N ms)", and in the closing list.)
  skipped=$(cat "$shard_dir/$name".* | grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$')
  row "$name" "$res ($(( $(date +%s) - start )) s$([ "$skipped" = 0 ] || echo ", $skipped skipped"))"
done
grep -E '^\[  (FAILED|SKIPPED) ' "$tests_log" | grep -v ' listed below' | sort -u | head -40

if [ $bench = 1 ]; then
  if [ -x "$build/bench/bench_kernels" ]; then
    log="$out/bench.log"
    t0=$SECONDS
    # The dataflow route (never run before) in a process of its own: a trapped wait there
    # would end the process; the two JSON files are merged for the tables and plots. Its rows
    # include BM_SparqRouteDataflowTuning (the schedule's lags scaled, larger score items,
    # with or without histogram items, attend items of 128 or 256 rows: 60 timed rows).
    kparts=$(mktemp -d)
    : > "$log"
    # run_bench NAME LIMIT JSON ARGS...: one benchmark process under the budget, its JSON part
    # merged into $out/bench_kernels.json at once.
    run_bench() {
      local name=$1 want=$2 json=$3 b_lim rc
      shift 3
      b_lim=$(lim "$want")
      if [ "$b_lim" = 0 ]; then row "$name" "skipped (budget)"; return; fi
      echo "==== $name ====" >> "$log"
      local t0=$SECONDS
      timeout -k 5 "$b_lim" "$@" --benchmark_out="$kparts/$json" --benchmark_out_format=json \
        >> "$log" 2>&1
      rc=$?
      if [ $rc = 0 ]; then row "$name" "done ($((SECONDS - t0)) s)"; else row "$name" "$(rc_word $rc)"; fi
      python3 scripts/plot_bench.py --merge "$kparts" --merged "$out/bench_kernels.json" >> "$log" 2>&1
    }
    # Routes and options never timed before (the streaming selection, dependent launches)
    # in a process of their own too, after the rows every earlier run had.
    run_bench bench_kernels 150 1_main.json "$build/bench/bench_kernels" \
      --benchmark_filter='-BM_SparqRouteDataflow|Stream|Dependent'
    run_bench "bench_kernels stream/dependent" 60 2_new.json "$build/bench/bench_kernels" \
      --benchmark_filter='Stream|Dependent'
    run_bench "bench_kernels dataflow" 120 3_dataflow.json "$build/bench/bench_kernels" \
      --benchmark_filter=BM_SparqRouteDataflow
    # The Llama example's decode projections alone and chained (7B shapes; about 10 s).
    if [ -x "$build/bench/bench_llama_matvec" ]; then
      run_bench bench_llama_matvec 60 4_llama_matvec.json "$build/bench/bench_llama_matvec"
    else
      row bench_llama_matvec "not built"
    fi
    # The fastest dataflow settings the tuning rows found (SPARQ_FLOW values; empty: the
    # defaults), for the Llama decode below: B1 S32k's at 32k, B1 S16k's at 4k (the nearest).
    flow32=$(python3 scripts/plot_bench.py --kernels "$out/bench_kernels.json" --flow-setting 1:32768)
    flow16=$(python3 scripts/plot_bench.py --kernels "$out/bench_kernels.json" --flow-setting 1:16384)
    row "dataflow best B1 S16k" "${flow16:-none (defaults)}"
    row "dataflow best B1 S32k" "${flow32:-none (defaults)}"
    t0=$SECONDS
    # The sweep runs one process per (heads, batch) group, so a failure costs one group only.
    parts=$(mktemp -d)
    sweep_fail=0
    for hkv in 32 8; do
      for batch in 1 8 32 64; do
        s_lim=$(lim 90)
        if [ "$s_lim" = 0 ]; then sweep_fail=1; echo "Hkv$hkv B$batch skipped (budget)" >> "$log"; continue; fi
        echo "==== bench_sweep Hkv$hkv B$batch (stderr) ====" >> "$log"
        timeout -k 5 "$s_lim" "$build/bench/bench_sweep" --benchmark_filter="^sweep/Hq32_Hkv$hkv/B$batch/" \
          --benchmark_out="$parts/sweep_${hkv}_$batch.json" --benchmark_out_format=json \
          2>> "$log" > /dev/null || {
            echo "rc $? for Hkv$hkv B$batch; memcheck of its first point:" >> "$log"
            m_lim=$(lim 60)
            [ $sweep_fail = 1 ] || [ "$m_lim" = 0 ] || timeout -k 5 "$m_lim" compute-sanitizer --tool memcheck --print-limit 3 \
              "$build/bench/bench_sweep" --benchmark_filter="^sweep/Hq32_Hkv$hkv/B$batch/S1024/c2" \
              >> "$log" 2>&1
            sweep_fail=1
          }
        # Merged after every group: a run killed later keeps the groups done.
        python3 scripts/plot_bench.py --merge "$parts" --merged "$out/bench_sweep.json" >> "$log" 2>&1
      done
    done
    if [ $sweep_fail = 0 ]; then row bench_sweep "done ($((SECONDS - t0)) s)"; else row bench_sweep "FAIL (see bench.log)"; fi
    chat="$build/examples/llama2/llama2_chat"
    if [ -x "$chat" ]; then
      # Each length as the defaults run it, with the options not yet timed (dependent
      # launches, --pdl, and the streaming selection, SPARQ_SELECT=stream), with the dataflow
      # route at the tuning rows' fastest setting (SPARQ_ROUTE=dataflow, SPARQ_FLOW), and with
      # the o projection prefetched into L2 during attention (--l2-prefetch; nineteenth
      # session; slower on an H200 in run 12). Each loads random 7B weights and times 2 x 32 steps. (cuBLAS projections, --matvec cublas, measured 8.25 ms/token at 4k on an H100: see
      # docs/benchmarks.md.)
      for s_len in 4096 32768; do
        for variant in default new dataflow l2; do
          name="llama2-7b decode $s_len $variant"
          limit=$(lim $([ $s_len = 4096 ] && echo 60 || echo 90))
          if [ "$limit" = 0 ]; then row "$name" "skipped (budget)"; continue; fi
          res="$parts/bench_decode_${s_len}_$variant.txt"  # into bench.log: $OUT returns 8 files
          sel=auto route=auto flow="" flags=()
          [ $variant = new ] && sel=stream flags=(--pdl)
          [ $variant = l2 ] && flags=(--l2-prefetch)
          [[ $variant = dataflow* ]] && route=dataflow flow=$([ $s_len = 4096 ] && echo "$flow16" || echo "$flow32")
          echo "==== SPARQ_SELECT=$sel SPARQ_ROUTE=$route SPARQ_FLOW=$flow llama2_chat --random-weights llama2-7b --bench-decode $s_len ${flags[*]} ====" >> "$log"
          if SPARQ_SELECT=$sel SPARQ_ROUTE=$route SPARQ_FLOW=$flow timeout -k 5 $limit "$chat" --random-weights llama2-7b \
              --bench-decode $s_len --bench-steps 32 "${flags[@]}" > "$res" 2>&1; then
            row "$name" "$(grep -o 'dense: *[0-9.]* ms/token.*' "$res" | tr -s ' ')$(grep -o 'SparQ: *[0-9.]* ms/token' "$res" | tr -s ' ' | sed 's/^/; /')$(grep -o '; speedup: .*' <(sed 's/^  speedup/; speedup/' "$res"))"
          else
            row "$name" "$(rc_word $?)"
          fi
          cat "$res" >> "$log"
        done
      done
      # Prefill of a random prompt (examples/llama2/prefill_attention.cuh), the gemm version
      # at 4k and 32k (the simple one, --prefill-attention simple, is left out for time). Each
      # run prefills four times; the warm time is printed.
      for spec in "4096 gemm" "32768 gemm"; do
        read -r s_len kind <<< "$spec"
        res="$parts/bench_prefill_${s_len}_$kind.txt"
        p_lim=$(lim $([ $s_len = 4096 ] && echo 90 || echo 150))
        if [ "$p_lim" = 0 ]; then row "llama2-7b prefill $s_len $kind" "skipped (budget)"; continue; fi
        echo "==== llama2_chat --random-weights llama2-7b --bench-decode $s_len --bench-fill prefill --prefill-attention $kind ====" >> "$log"
        if timeout -k 5 "$p_lim" "$chat" --random-weights llama2-7b \
            --bench-decode $s_len --bench-fill prefill \
            --bench-steps 2 --prefill-attention $kind > "$res" 2>&1; then
          row "llama2-7b prefill $s_len $kind" "$(grep -o 'prefill of .*' "$res")"
        else
          row "llama2-7b prefill $s_len $kind" "$(rc_word $?)"
        fi
        cat "$res" >> "$log"
      done
    fi
    if [ $profile = 1 ] && command -v ncu >/dev/null 2>&1; then
      echo "==== ncu: SparQ B=1 S=32k (fused, a cluster per head), dense B=64 S=32k ====" >> "$log"
      timeout 120 ncu --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SourceCounters \
        -k regex:'score|select|attend|fused' --launch-count 3 "$build/bench/bench_kernels" \
        --benchmark_filter='BM_SparqDecode/B:1/S:32768' >> "$log" 2>&1 || row ncu-sparq FAIL
      timeout 90 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats \
        -k regex:'dataflow' --launch-count 1 "$build/bench/bench_kernels" \
        --benchmark_filter='BM_SparqRouteDataflow/B:1/S:32768' >> "$log" 2>&1 || row ncu-dataflow FAIL
      timeout 90 ncu --section SpeedOfLight --section Occupancy --section MemoryWorkloadAnalysis \
        -k regex:'attend' --launch-count 1 "$build/bench/bench_kernels" \
        --benchmark_filter='BM_DenseDecode/B:64/S:32768' >> "$log" 2>&1 || row ncu-dense FAIL
    fi
    python3 scripts/plot_bench.py --kernels "$out/bench_kernels.json" --sweep "$out/bench_sweep.json" \
      --out "$out" >> "$summary" 2>&1 || row plots FAIL
    # The auto rule's thresholds re-derived from this sweep (include/sparq/attention_mode.hpp).
    python3 scripts/derive_auto_rule.py --sweep "$out/bench_sweep.json" >> "$summary" 2>&1 ||
      row derive_auto_rule "FAIL (see summary)"
  else
    row benchmarks "not built (configure with -DSPARQ_BUILD_BENCH=ON)"
  fi
fi

san_log="$out/sanitizer.log"  # only when sanitizing: $OUT returns 8 files at most
if [ $sanitize = 0 ]; then
  row compute-sanitizer "skipped"
elif command -v compute-sanitizer >/dev/null 2>&1; then
  : > "$san_log"
  # san LIMIT PROGRAM ARGS...: PROGRAM under compute-sanitizer's $tool within the budget.
  san() {
    local s_lim
    s_lim=$(lim "$1")
    shift
    if [ "$s_lim" = 0 ]; then echo "skipped (budget): $*" >> "$san_log"; ok=0; return; fi
    timeout -k 5 "$s_lim" compute-sanitizer --tool $tool --error-exitcode 3 "$@" >> "$san_log" 2>&1 || ok=0
  }
  # The chosen route (fused, a cluster per unit, for these shapes on an H100), the block route
  # and the three launches.
  filter='*Float32MatchesReference/odd_tiles:*BFloat16MatchesReference/gqa4_window:*Float16MatchesReference/per_head_gqa4_d256:*Float32MatchesReference/length_one:*Float32FusedBlockRoute/odd_tiles:*BFloat16ThreeLaunches/gqa4_window:*BFloat16ThreeLaunches/odd_tiles:*BFloat16StreamSelect/gqa4_window:*Float32StreamSelectFallback/odd_tiles:*BFloat16DependentLaunches/gqa4_window'
  for tool in memcheck racecheck; do
    ok=1
    san 150 "$build/tests/gpu/test_gpu_sparq_decode" --gtest_filter="$filter"
    san 45 "$build/tests/gpu/test_gpu_dense_decode" --gtest_filter='*Float32*gqa4_d64'
    san 45 "$build/tests/gpu/test_gpu_kv_append"
    # The dataflow route: racecheck only on a grid of one block (blocks that wait on each
    # other might not both progress under the tool); memcheck also on full grids.
    flow_filter='*BFloat16OneBlock/gqa4_window:*BFloat16OneBlock/odd_tiles'
    [ $tool = memcheck ] && flow_filter="$flow_filter:*BFloat16MatchesReference/gqa4_window:*Float32MatchesReference/odd_tiles:*SmallGrids*/B3*"
    san 120 "$build/tests/gpu/test_gpu_sparq_dataflow" --gtest_filter="$flow_filter"
    san 90 "$build/tests/gpu/test_gpu_stream_select" \
      --gtest_filter='*short_and_odd:*zero_query_ties'
    if [ $tool = memcheck ]; then
      san 60 "$build/tests/gpu/test_building_blocks"
      # Launches without a memset on a workspace zeroed once (every route in turn).
      san 120 "$build/tests/gpu/test_gpu_zeroed_workspace" --gtest_filter='*Batch4Gqa'
      san 60 "$build/examples/llama2/tests/test_llama_prefill"
    fi
    if [ $ok = 1 ]; then row "compute-sanitizer $tool" clean; else row "compute-sanitizer $tool" FAIL; fail=1; fi
  done
else
  row compute-sanitizer "not installed"
fi

row "elapsed" "$SECONDS s"
echo
echo "==== summary ===="
cat "$summary"
exit $fail
