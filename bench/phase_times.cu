// Where a batch-1 SparQ launch spends its time, step by step and block by block: the fused
// cluster route, the fused block route and the cluster selection (bf16, d = 128, 32 heads,
// 1/8), built with SPARQ_PHASE_TIMES so that thread 0 of each block records the SM clock at
// the end of each step (include/sparq/device/phase_times.cuh). For each step: the median over
// launches of the median and the slowest block's time since the previous mark, in µs. Also
// the kernel's event time, the spread of the blocks' start and end (global timer), and a
// block's span. Every launch starts from a cold L2, as in the benchmarks.
//   phase_times [S ...]      (default 4096 16384 32768 131072)
// phase_times_plain_adds and phase_times_leader_adds are the same program with other radix
// histogram adds (device::HistogramAdds).
#define SPARQ_PHASE_TIMES
#include "bench/bench_support.cuh"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sb = sparq::bench;
namespace sd = sparq::device;
namespace sk = sparq::kernels;
using T = __nv_bfloat16;

namespace {

constexpr int kHeads = 32, kDim = 128, kLaunches = 21;

const char* const kMarkNames[sd::kMarkCount] = {
    "start",  "query+top-r",      "scores",      "softmax stats", "keys+hist0", "pass 0",
    "pass 1", "pass 2",           "pass 3",      "finish",        "compact",    "alpha",
    "attend", "partials barrier", "merge+write", "end barrier"};

enum class Kernel { kFusedCluster, kFusedBlock, kSelectCluster };

const char* kernel_name(Kernel k) {
  return k == Kernel::kFusedCluster ? "fused cluster (sparq_fused_kernel<bf16,128,8>)"
         : k == Kernel::kFusedBlock ? "fused block (sparq_fused_block_kernel<bf16,128>)"
                                    : "cluster selection (select_cluster_kernel)";
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Record {
  std::vector<std::array<unsigned long long, sd::kMarkCount>> clock;
  std::vector<std::array<unsigned long long, 2>> ns;
};

Record read_back(int blocks) {
  Record r;
  r.clock.resize(blocks);
  r.ns.resize(blocks);
  BENCH_CUDA(cudaMemcpyFromSymbol(r.clock.data(), sd::g_phase_clock, sizeof(r.clock[0]) * blocks));
  BENCH_CUDA(cudaMemcpyFromSymbol(r.ns.data(), sd::g_phase_ns, sizeof(r.ns[0]) * blocks));
  return r;
}

void clear_records() {
  void* clock = nullptr;
  void* ns = nullptr;
  BENCH_CUDA(cudaGetSymbolAddress(&clock, sd::g_phase_clock));
  BENCH_CUDA(cudaGetSymbolAddress(&ns, sd::g_phase_ns));
  BENCH_CUDA(cudaMemset(clock, 0, sizeof(sd::g_phase_clock)));
  BENCH_CUDA(cudaMemset(ns, 0, sizeof(sd::g_phase_ns)));
}

void run(Kernel kernel, int seq, double attribute_cycles_per_us) {
  sparq::SparqConfig cfg;
  sb::check_status(sparq::config_from_compression(kDim, seq, 8, &cfg), "config");
  sb::DecodeSetup<T> s(1, kHeads, kHeads, kDim, seq, cfg);
  std::printf("\n== %s, batch 1, S %d (r %d, k %d)\n", kernel_name(kernel), seq, cfg.r, cfg.k);
  if (!s.fits) return (void)std::printf("skipped: does not fit in device memory\n");
  const sk::SparqPlan<T> plan(s.p, s.cfg, s.workspace, sk::SparqRoute::kThreeLaunches);
  const sk::SparqPlan<T> cluster_plan(s.p, s.cfg, s.workspace, sk::SparqRoute::kThreeLaunches,
                                      sk::SelectRoute::kCluster);
  const int heads_per_unit = plan.units.heads_per_unit;
  if (kernel == Kernel::kFusedCluster && !sk::fused_fits<T, kDim>(seq, heads_per_unit))
    return (void)std::printf("skipped: the cluster route does not fit on this device\n");
  if (kernel == Kernel::kFusedBlock && !sk::fused_block_fits<T, kDim>(seq, heads_per_unit))
    return (void)std::printf("skipped: the block route does not fit on this device\n");
  if (kernel == Kernel::kSelectCluster && !sk::cluster_select_fits(seq))
    return (void)std::printf("skipped: the cluster selection does not fit on this device\n");
  if (kernel == Kernel::kSelectCluster)
    std::printf("%d threads per block (cluster_select_wide_rule)\n",
                cluster_plan.select_wide ? sk::kClusterThreadsWide : sk::kClusterThreads);
  // The selection reads the scores' logits and stats: the three launches once per copy.
  for (int i = 0; i < s.copies; ++i)
    sb::check_status(sk::launch_sparq_three<T, kDim>(s.sparq_params(i), plan, nullptr), "three");
  const int units = static_cast<int>(plan.units.per_batch);
  const int blocks = kernel == Kernel::kFusedBlock ? units : units * sk::kClusterBlocks;
  if (blocks > sd::kPhaseBlocks) return (void)std::printf("skipped: too many blocks\n");
  auto launch = [&](int i) {
    const sparq::SparqDecodeParams<T> a = s.sparq_params(i);
    sparq::Status st =
        kernel == Kernel::kFusedCluster ? sk::launch_sparq_fused<T, kDim>(a, plan, nullptr)
        : kernel == Kernel::kFusedBlock ? sk::launch_sparq_fused_block<T, kDim>(a, plan, nullptr)
                                        : sk::launch_sparq_select<T>(a, cluster_plan, nullptr);
    sb::check_status(st, kernel_name(kernel));
  };
  for (int i = 0; i < 3; ++i)
    launch(i);  // warm-up
  // Steps in SM clock cycles (converted at the end with the clock the blocks ran at).
  std::array<std::vector<double>, sd::kMarkCount> step_med, step_max;
  double all_cycles = 0, all_ns = 0;
  std::vector<double> event_us, start_spread, end_spread, span, first_to_last;
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  for (int i = 0; i < kLaunches; ++i) {
    clear_records();
    sb::flush_l2();
    BENCH_CUDA(cudaEventRecord(e0));
    launch(i);
    BENCH_CUDA(cudaEventRecord(e1));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    event_us.push_back(ms * 1e3);
    const Record r = read_back(blocks);
    std::array<std::vector<double>, sd::kMarkCount> per_mark;
    unsigned long long s_min = ~0ull, s_max = 0, e_min = ~0ull, e_max = 0;
    std::vector<double> spans;
    for (int b = 0; b < blocks; ++b) {
      const auto& c = r.clock[b];
      if (c[sd::kMarkStart] == 0) continue;
      unsigned long long prev = c[sd::kMarkStart];
      for (int m = 1; m < sd::kMarkCount; ++m) {
        if (c[m] == 0) continue;  // not reached (a pass that was not needed)
        per_mark[m].push_back(static_cast<double>(c[m] - prev));
        prev = c[m];
      }
      s_min = std::min(s_min, r.ns[b][0]);
      s_max = std::max(s_max, r.ns[b][0]);
      e_min = std::min(e_min, r.ns[b][1]);
      e_max = std::max(e_max, r.ns[b][1]);
      spans.push_back(static_cast<double>(c[sd::kMarkEnd] - c[sd::kMarkStart]));
      all_cycles += static_cast<double>(c[sd::kMarkEnd] - c[sd::kMarkStart]);
      all_ns += static_cast<double>(r.ns[b][1] - r.ns[b][0]);
    }
    for (int m = 1; m < sd::kMarkCount; ++m) {
      if (per_mark[m].empty()) continue;
      step_med[m].push_back(median(per_mark[m]));
      step_max[m].push_back(*std::max_element(per_mark[m].begin(), per_mark[m].end()));
    }
    start_spread.push_back((s_max - s_min) * 1e-3);
    end_spread.push_back((e_max - e_min) * 1e-3);
    first_to_last.push_back((e_max - s_min) * 1e-3);
    span.push_back(median(spans));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  // The clock the blocks ran at, from their cycles against the global timer over every block
  // of every launch (the timer's coarse steps average out); the attribute's where that is off.
  const double measured = all_ns > 0 ? all_cycles / (all_ns * 1e-3) : 0;
  const bool use_measured =
      measured > 0.5 * attribute_cycles_per_us && measured < 1.5 * attribute_cycles_per_us;
  const double cycles_per_us = use_measured ? measured : attribute_cycles_per_us;
  std::printf("SM clock %.0f MHz (%s)\n", cycles_per_us,
              use_measured ? "measured: cycles over the global timer" : "the attribute's");
  for (auto& v : step_med)
    for (double& x : v)
      x /= cycles_per_us;
  for (auto& v : step_max)
    for (double& x : v)
      x /= cycles_per_us;
  for (double& x : span)
    x /= cycles_per_us;
  std::printf(
      "kernel (events) %.1f us; first block start to last block end %.1f us; block span "
      "%.1f us (median); start spread %.1f us, end spread %.1f us (%d blocks, medians of "
      "%d launches)\n",
      median(event_us), median(first_to_last), median(span), median(start_spread),
      median(end_spread), blocks, kLaunches);
  std::printf("%-18s %10s %10s %9s\n", "step (ends at)", "median us", "slowest us", "launches");
  for (int m = 1; m < sd::kMarkCount; ++m) {
    if (step_med[m].empty()) continue;
    std::printf("%-18s %10.2f %10.2f %9zu\n", kMarkNames[m], median(step_med[m]),
                median(step_max[m]), step_med[m].size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> lengths;
  for (int i = 1; i < argc; ++i) {
    const int s = std::atoi(argv[i]);
    if (s <= 0) {
      std::fprintf(stderr,
                   "usage: phase_times [S ...] (positions, > 0; default 4096 16384 "
                   "32768 131072)\n");
      return 2;
    }
    lengths.push_back(s);
  }
  if (lengths.empty()) lengths = {4096, 16384, 32768, 131072};
  int dev = 0, khz = 0, count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "phase_times: no CUDA device\n");
    return 1;
  }
  BENCH_CUDA(cudaGetDevice(&dev));
  BENCH_CUDA(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev));
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, dev));
  std::printf("%s, SM clock attribute %.0f MHz\n", prop.name, khz * 1e-3);
  std::printf("radix histogram adds: %s\n",
              sd::kHistogramAdds == sd::HistogramAdds::kPlain
                  ? "plain shared-memory atomics (phase_times_plain_adds)"
              : sd::kHistogramAdds == sd::HistogramAdds::kLeader
                  ? "the first key's digit by one atomic, the rest plain (phase_times_leader_adds)"
                  : "one atomic per group of lanes with equal digits (the library's)");
  const double cycles_per_us = khz * 1e-3;
  for (int seq : lengths) {
    run(Kernel::kFusedCluster, seq, cycles_per_us);
    run(Kernel::kFusedBlock, seq, cycles_per_us);
    run(Kernel::kSelectCluster, seq, cycles_per_us);
  }
  return 0;
}
