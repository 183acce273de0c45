#!/usr/bin/env bash
# Nsight Compute on the batch-1 kernels, at the GPU's own clocks: how long each kernel runs on
# the device (gpu__time_duration) against the benchmarks' event times, and why (occupancy,
# warp stalls, DRAM throughput). Run 8 (H100) found every batch-1 stage about 13 us slower
# than its bytes allow, even at S = 1k; this tells launch gaps from in-kernel latency.
#
#   scripts/gpu-profile-b1.sh [--stalls] [BUILD_DIR] [OUT_DIR]
#
# --stalls: instead, each warp-stall reason (cycles per issued instruction) of the batch-1
# SparQ stages at S = 16k and of dense decoding at S = 4k.
set -uo pipefail
stalls=0
if [ "${1:-}" = --stalls ]; then stalls=1; shift; fi
build=${1:-build/gpu}
out=${2:-${OUT:-out/gpu-profile}}
mkdir -p "$out"
log="$out/profile.log"
: > "$log"
export LD_LIBRARY_PATH="$PWD/$build/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
command -v ncu >/dev/null 2>&1 || { echo "ncu not found" | tee -a "$log"; exit 2; }
ncu --version | tail -1 | tee -a "$log"
sections="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats"
kernels='regex:score_kernel|select_cluster_kernel|select_stream_kernel|attend_kernel|sparq_dataflow_kernel'
# prof LIMIT SKIP COUNT BINARY FILTER: COUNT matching launches after SKIP, at the GPU's clocks.
prof() {
  local lim=$1 skip=$2 count=$3 bin=$4 filter=$5
  echo "==== $bin $filter (skip $skip, count $count) ====" | tee -a "$log"
  timeout -k 5 "$lim" ncu --clock-control none $sections -k "$kernels" --launch-skip "$skip" \
    --launch-count "$count" "$build/bench/$bin" --benchmark_filter="$filter" >> "$log" 2>&1 ||
    echo "  rc $?" | tee -a "$log"
}
if [ $stalls = 1 ]; then
  sections="--section LaunchStats --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,gpu__time_duration.sum,sm__cycles_active.avg,smsp__inst_executed.avg"
  prof 60 6 3 bench_kernels '^BM_SparqRouteThree/B:1/S:16384/'
  prof 40 3 1 bench_kernels '^BM_DenseDecodeSplits/B:1/S:4096/splits:16/'
  grep -vE "^==PROF==|^ *$" "$log" | awk '$NF != "0" && $NF != "0.00"' > "$out/profile-summary.txt"
  cat "$out/profile-summary.txt"
  exit 0
fi
prof 60 4 8 bench_sweep '^sweep/Hq32_Hkv32/B1/S1024/c8/'
prof 60 6 3 bench_kernels '^BM_SparqRouteThree/B:1/S:16384/'
prof 40 3 1 bench_kernels '^BM_DenseDecodeSplits/B:1/S:4096/splits:16/'
prof 40 3 1 bench_kernels '^BM_DenseDecode/B:1/S:16384/'
prof 40 3 1 bench_kernels '^BM_SparqStageSelectStream/B:1/S:32768/'
prof 60 3 1 bench_kernels '^BM_SparqRouteDataflow/B:1/S:16384/'
# The few lines that matter, one row per kernel.
grep -E "^====|^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Registers Per|Grid Size|Block Size|Achieved Occupancy|Theoretical Occupancy|Waves Per SM|No Eligible|Issued Warp" "$log" > "$out/profile-summary.txt"
cat "$out/profile-summary.txt"
