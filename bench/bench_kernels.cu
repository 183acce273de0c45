// Per-kernel bandwidth: the copy ceiling, dense decode, SparQ decode (whole as the launch API
// routes it, each route forced, and each of the three launches alone) and KV append. bf16, d = 128,
// Hq = Hkv = 32, compression 1/8. Median time from CUDA events; bytes from the transfer formula;
// GB/s and % of the measured copy bandwidth. Launches run on a workspace zeroed once
// (workspace_zeroed: no memset per call) unless a row says otherwise.
#include "bench/bench_support.cuh"

namespace sb = sparq::bench;
using T = __nv_bfloat16;

namespace {

constexpr int kHeads = 32, kDim = 128;

sparq::SparqConfig config_for(int seq_len, double compression = 8) {
  sparq::SparqConfig c;
  sb::check_status(sparq::config_from_compression(kDim, seq_len, compression, &c), "config");
  return c;
}

int reps_for(double bytes) {
  return bytes > 4e9 ? 7 : (bytes > 5e8 ? 15 : 40);
}

void BM_CopyCeiling(benchmark::State& state) {
  for (auto _ : state) {
    const double bw = sb::copy_bandwidth_bytes_per_s();
    const double bytes = 2.0 * (size_t(1) << 31);
    sb::report(state, bytes / bw * 1e3, bytes);
  }
}

// kMemset: a memset of the counters before each launch, as before workspace_zeroed (what every
// figure up to run 7 included; BM_DenseDecodeMemset against BM_DenseDecode is its cost).
template <bool kMemset>
void BM_DenseDecode(benchmark::State& state) {
  const int batch = state.range(0), seq = state.range(1);
  sb::DecodeSetup<T> s(batch, kHeads, kHeads, kDim, seq, config_for(seq), false);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          sparq::DenseDecodeParams<T> a = s.dense_params(i);
          a.workspace_zeroed = !kMemset;
          sb::check_status(sparq::dense_decode(a, s.workspace, s.workspace_bytes, nullptr),
                           "dense_decode");
        },
        reps_for(s.dense_bytes()));
    sb::report(state, ms, s.dense_bytes());
  }
}

// Dense decoding with a fixed number of splits per head (the plan's rule picks by occupancy,
// at least 256 rows each): at batch 1 the launch's fixed costs (ramp, the last block's merge)
// weigh most, and the split count trades them against parallelism. Counter `default_splits`:
// the rule's choice for the shape.
void BM_DenseDecodeSplits(benchmark::State& state) {
  const int batch = state.range(0), seq = state.range(1), splits = state.range(2);
  sb::DecodeSetup<T> s(batch, kHeads, kHeads, kDim, seq, config_for(seq), false);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  const sparq::kernels::DensePlan<T> sized(s.p, nullptr, splits);
  void* ws = nullptr;
  BENCH_CUDA(cudaMalloc(&ws, sized.bytes));
  BENCH_CUDA(cudaMemset(ws, 0, sized.bytes));
  const sparq::kernels::DensePlan<T> plan(s.p, ws, splits);
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          sb::check_status(
              sparq::kernels::launch_dense(s.dense_params(i), plan, sized.bytes, nullptr),
              "dense decode, fixed splits");
        },
        reps_for(s.dense_bytes()));
    sb::report(state, ms, s.dense_bytes());
  }
  state.counters["default_splits"] = sparq::kernels::DensePlan<T>(s.p, nullptr).attend.splits;
  BENCH_CUDA(cudaFree(ws));
}

enum Stage {
  kWhole,
  kFused,
  kFusedBlock,
  kThree,
  kThreeStream,     // the three launches with the streaming selection
  kThreeDependent,  // the three launches as programmatic dependent launches (sm_90)
  kThreeStreamDependent,
  kDataflow,  // one persistent launch (sparq_dataflow_kernel)
  kScores,
  kSelect,
  kSelectWide,
  kSelectCluster,        // the cluster selection where the launch API takes the one-block one
  kSelectClusterNarrow,  // the cluster selection with kClusterThreads threads per block
  kSelectClusterWide,    // the same with kClusterThreadsWide (the rule: cluster_select_wide_rule)
  kSelectStream,
  kAttend
};

template <Stage kStage>
void BM_SparqDecode(benchmark::State& state) {
  const int batch = state.range(0), seq = state.range(1);
  sb::DecodeSetup<T> s(batch, kHeads, kHeads, kDim, seq, config_for(seq));
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  // The three launches' plan (the fused launchers take any plan: the positions and alpha sit
  // at the same offsets); the launch API's own plan says which route it takes.
  const sparq::kernels::SparqPlan<T> plan(s.p, s.cfg, s.workspace,
                                          sparq::kernels::SparqRoute::kThreeLaunches);
  const sparq::kernels::SparqRoute chosen = sparq::kernels::SparqPlan<T>(s.p, s.cfg, nullptr).route;
  // The same workspace offsets with the streaming selection (it needs no key buffer).
  const sparq::kernels::SparqPlan<T> stream_plan(s.p, s.cfg, s.workspace,
                                                 sparq::kernels::SparqRoute::kThreeLaunches,
                                                 sparq::kernels::SelectRoute::kStream);
  sparq::kernels::SparqPlan<T> dependent_plan(s.p, s.cfg, s.workspace,
                                              sparq::kernels::SparqRoute::kThreeLaunches);
  sparq::kernels::SparqPlan<T> stream_dependent_plan = stream_plan;
  // The dataflow route's own layout of the same workspace (after the three launches below
  // have run: the fused and stage rows need their plan's intermediates, not this one's).
  const sparq::kernels::SparqPlan<T> flow_plan(s.p, s.cfg, s.workspace,
                                               sparq::kernels::SparqRoute::kDataflow);
  // The cluster selection (sm_90) at any batch: the same offsets (its keys need no buffer).
  const sparq::kernels::SparqPlan<T> cluster_plan(s.p, s.cfg, s.workspace,
                                                  sparq::kernels::SparqRoute::kThreeLaunches,
                                                  sparq::kernels::SelectRoute::kCluster);
  sparq::kernels::SparqPlan<T> narrow_plan = cluster_plan, wide_plan = cluster_plan;
  narrow_plan.select_wide = false;
  wide_plan.select_wide = true;
  if ((kStage == kSelectCluster || kStage == kSelectClusterNarrow ||
       kStage == kSelectClusterWide) &&
      !sparq::kernels::cluster_select_fits(seq))
    return state.SkipWithError("the cluster selection does not fit this shape on this device");
  dependent_plan.dependent_launch = stream_dependent_plan.dependent_launch = true;
  if ((kStage == kThreeDependent || kStage == kThreeStreamDependent) &&
      !sparq::kernels::device_has_clusters())
    return state.SkipWithError("dependent launches need sm_90");
  if (kStage == kFused && !sparq::kernels::fused_fits<T, kDim>(seq, plan.units.heads_per_unit))
    return state.SkipWithError("the fused route does not fit this shape on this device");
  if (kStage == kFusedBlock &&
      !sparq::kernels::fused_block_fits<T, kDim>(seq, plan.units.heads_per_unit))
    return state.SkipWithError("the fused block route does not fit this shape on this device");
  // Run the three launches once per copy so every stage's inputs (logits, stats, positions)
  // are valid; the fused route leaves the logits unwritten.
  for (int i = 0; i < s.copies; ++i)
    sb::check_status(sparq::kernels::launch_sparq_three<T, kDim>(s.sparq_params(i), plan, nullptr),
                     "sparq three launches");
  const double rows = s.kv_rows(), S = seq, r = s.cfg.r, k = s.cfg.k, g = 1;
  double bytes = s.sparq_bytes();
  if (kStage == kScores) bytes = rows * (S * r * sizeof(T) + 4.0 * S * g);
  // select_kernel: the logits once, and the keys written and read once where they do not fit
  // in shared memory (the global-keys route); the streaming one reads the logits twice
  // instead (counted once here, so the rows compare time on the same bytes).
  const bool cluster_stage =
      kStage == kSelectCluster || kStage == kSelectClusterNarrow || kStage == kSelectClusterWide;
  if (kStage == kSelect || kStage == kSelectWide || cluster_stage || kStage == kSelectStream) {
    const bool global_keys = kStage != kSelectStream && !cluster_stage &&
                             plan.select == sparq::kernels::SelectRoute::kGlobalKeys;
    bytes = rows * (4.0 * S * g + (global_keys ? 8.0 * S : 0.0));
  }
  if (kStage == kAttend) bytes = rows * (2.0 * k * kDim * sizeof(T));
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          const sparq::SparqDecodeParams<T> a = s.sparq_params(i);
          sparq::Status st = sparq::Status::kSuccess;
          if (kStage == kWhole)
            st = sparq::sparq_decode(a, s.workspace, s.workspace_bytes, nullptr);
          if (kStage == kFused) st = sparq::kernels::launch_sparq_fused<T, kDim>(a, plan, nullptr);
          if (kStage == kFusedBlock)
            st = sparq::kernels::launch_sparq_fused_block<T, kDim>(a, plan, nullptr);
          if (kStage == kThree) st = sparq::kernels::launch_sparq_three<T, kDim>(a, plan, nullptr);
          if (kStage == kThreeStream)
            st = sparq::kernels::launch_sparq_three<T, kDim>(a, stream_plan, nullptr);
          if (kStage == kThreeDependent)
            st = sparq::kernels::launch_sparq_three<T, kDim>(a, dependent_plan, nullptr);
          if (kStage == kThreeStreamDependent)
            st = sparq::kernels::launch_sparq_three<T, kDim>(a, stream_dependent_plan, nullptr);
          if (kStage == kDataflow)
            st = sparq::kernels::launch_sparq_dataflow<T, kDim>(a, flow_plan, nullptr);
          if (kStage == kSelectStream)
            st = sparq::kernels::launch_sparq_select<T>(a, stream_plan, nullptr);
          if (kStage == kScores)
            st = sparq::kernels::launch_sparq_scores<T, kDim>(a, plan, nullptr);
          if (kStage == kSelect) st = sparq::kernels::launch_sparq_select<T>(a, plan, nullptr);
          if (kStage == kSelectWide)
            st = sparq::kernels::launch_sparq_select<T, sparq::kernels::kSelectThreadsWide>(
                a, plan, nullptr);
          if (kStage == kSelectCluster)
            st = sparq::kernels::launch_sparq_select<T>(a, cluster_plan, nullptr);
          if (kStage == kSelectClusterNarrow)
            st = sparq::kernels::launch_sparq_select<T>(a, narrow_plan, nullptr);
          if (kStage == kSelectClusterWide)
            st = sparq::kernels::launch_sparq_select<T>(a, wide_plan, nullptr);
          if (kStage == kAttend)
            st = sparq::kernels::launch_sparq_attend<T, kDim>(a, plan, nullptr);
          sb::check_status(st, "sparq stage");
        },
        reps_for(bytes));
    sb::report(state, ms, bytes);
    state.counters["r"] = s.cfg.r;
    state.counters["k"] = s.cfg.k;
    // 0: fused, a cluster per unit; 1: fused, a block per unit; 2: three launches; 3: dataflow.
    const sparq::kernels::SparqRoute route =
        kStage == kFused        ? sparq::kernels::SparqRoute::kFusedCluster
        : kStage == kFusedBlock ? sparq::kernels::SparqRoute::kFusedBlock
        : kStage == kDataflow   ? sparq::kernels::SparqRoute::kDataflow
        : kStage == kWhole      ? chosen
                                : sparq::kernels::SparqRoute::kThreeLaunches;
    state.counters["route"] = static_cast<int>(route);
    // Clusters of the cluster route resident at once for this shape (fused_resident_clusters):
    // fewer than the units means more than one wave.
    if (kStage == kFused || kStage == kWhole)
      state.counters["clusters"] = sparq::kernels::fused_resident_clusters<T, kDim>(
          sparq::kernels::fused_smem_bytes(plan.units.heads_per_unit, kDim,
                                           sparq::kernels::cluster_segment(s.p.length_bound())));
  }
}

/// The dataflow route with its schedule's lags at pct / 100 of the default
/// (scale_flow_lags), `steps` times the default score chunks per item, with (hist = 1) or
/// without histogram items (the plan's rule takes them at 32k and 128k, not at 16k), and at
/// least `rows` rows per attend item (default 256, kFlowMinAttendRows): how much the order and size
/// of items matter, for tuning all four.
void BM_SparqRouteDataflowTuning(benchmark::State& state) {
  const int batch = state.range(0), seq = state.range(1), pct = state.range(2);
  const int steps = state.range(3), hist = state.range(4), rows = state.range(5);
  sb::DecodeSetup<T> s(batch, kHeads, kHeads, kDim, seq, config_for(seq));
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  // hist = 1: the plan's rule (rows only where it takes histogram items, so that the
  // default setting is among the rows); 0: none.
  sparq::FlowTuning tune;
  tune.lag_pct = pct, tune.score_steps = steps, tune.hist = hist ? -1 : 0, tune.attend_rows = rows;
  sparq::kernels::SparqPlan<T> plan(s.p, s.cfg, s.workspace, sparq::kernels::SparqRoute::kDataflow,
                                    std::nullopt, tune);
  if (hist && plan.flow_hist_items == 0)
    return state.SkipWithError("the plan has no histogram items here (fewer than 4 tiles)");
  if (plan.bytes > s.workspace_bytes)
    return state.SkipWithError("this setting needs more workspace than the default plans");
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          sb::check_status(
              sparq::kernels::launch_sparq_dataflow<T, kDim>(s.sparq_params(i), plan, nullptr),
              "sparq dataflow");
        },
        reps_for(s.sparq_bytes()));
    sb::report(state, ms, s.sparq_bytes());
    state.counters["hist_lag"] = plan.flow.hist_items > 0 ? plan.flow.hist_lag : 0;
    state.counters["select_lag"] = plan.flow.select_lag;
    state.counters["attend_lag"] = plan.flow.attend_lag;
    state.counters["attend_items"] = plan.flow.attend_items;
  }
}

void BM_KVAppendDecode(benchmark::State& state) {
  const int batch = state.range(0), seq = state.range(1);
  sb::DecodeSetup<T> s(batch, kHeads, kHeads, kDim, seq, config_for(seq), false);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  // New tokens come from the q buffer region (random data); lengths stay at seq - 1.
  std::vector<int> lens(batch, seq - 1);
  BENCH_CUDA(cudaMemcpy(s.lengths, lens.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
  const double bytes =
      s.kv_rows() * (3.0 * kDim * sizeof(T) + 2.0 * kDim * sizeof(float) + 2.0 * kDim * sizeof(T));
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          sparq::KVAppendParams<T> a;
          a.problem = s.p;
          a.cache = s.caches[i % s.copies];
          a.lengths = s.lengths;
          a.num_new = 1;
          a.new_k = s.q;
          a.new_v = s.q;
          a.advance_lengths = false;
          sb::check_status(sparq::kv_append(a, nullptr), "kv_append");
        },
        40);
    sb::report(state, ms, bytes);
  }
}

void shapes(benchmark::internal::Benchmark* b) {
  for (auto bs : std::vector<std::pair<int, int>>{{1, 4096},
                                                  {1, 8192},
                                                  {1, 16384},
                                                  {1, 32768},
                                                  {1, 65536},
                                                  {1, 131072},
                                                  {4, 16384},
                                                  {16, 4096},
                                                  {64, 4096},
                                                  {64, 16384},
                                                  {64, 32768}})
    b->Args({bs.first, bs.second});
  b->ArgNames({"B", "S"})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
}

/// Where the one-block selection kernel runs (batch x units above the SM count).
void large_batch_shapes(benchmark::internal::Benchmark* b) {
  for (auto bs : std::vector<std::pair<int, int>>{{16, 4096}, {64, 4096}, {64, 16384}, {64, 32768}})
    b->Args({bs.first, bs.second});
  b->ArgNames({"B", "S"})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
}

/// Batch 1 from 16k to 128k positions: where the cluster selection's block size matters.
void cluster_width_shapes(benchmark::internal::Benchmark* b) {
  for (int seq : {16384, 32768, 65536, 131072})
    b->Args({1, seq});
  b->ArgNames({"B", "S"})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
}

/// Where the cluster route competes: batch x units below the device's SM count.
void route_shapes(benchmark::internal::Benchmark* b) {
  for (auto bs : std::vector<std::pair<int, int>>{{1, 4096},
                                                  {1, 8192},
                                                  {1, 16384},
                                                  {1, 32768},
                                                  {1, 65536},
                                                  {1, 131072},
                                                  {2, 32768},
                                                  {4, 16384},
                                                  {16, 4096}})
    b->Args({bs.first, bs.second});
  b->ArgNames({"B", "S"})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
}

/// The dataflow route: where launch gaps matter (few units), and one large batch.
void flow_shapes(benchmark::internal::Benchmark* b) {
  for (auto bs : std::vector<std::pair<int, int>>{
           {1, 4096}, {1, 16384}, {1, 32768}, {1, 131072}, {4, 16384}, {16, 4096}, {64, 16384}})
    b->Args({bs.first, bs.second});
  b->ArgNames({"B", "S"})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_CopyCeiling)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseDecode<false>)->Name("BM_DenseDecode")->Apply(shapes);
BENCHMARK(BM_DenseDecodeSplits)
    ->Args({1, 4096, 8})
    ->Args({1, 4096, 16})
    ->Args({1, 4096, 32})
    ->Args({1, 4096, 64})
    ->Args({1, 16384, 16})
    ->Args({1, 16384, 32})
    ->Args({1, 16384, 64})
    ->Args({1, 16384, 128})
    ->ArgNames({"B", "S", "splits"})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseDecode<true>)  // three of BM_DenseDecode's shapes
    ->Name("BM_DenseDecodeMemset")
    ->Args({1, 16384})
    ->Args({1, 32768})
    ->Args({64, 4096})
    ->ArgNames({"B", "S"})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SparqDecode<kWhole>)->Name("BM_SparqDecode")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kFused>)->Name("BM_SparqRouteFused")->Apply(route_shapes);
BENCHMARK(BM_SparqDecode<kFusedBlock>)->Name("BM_SparqRouteFusedBlock")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kThree>)->Name("BM_SparqRouteThree")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kScores>)->Name("BM_SparqStageScores")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kSelect>)->Name("BM_SparqStageSelect")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kSelectWide>)->Name("BM_SparqStageSelectWide")->Apply(large_batch_shapes);
BENCHMARK(BM_SparqDecode<kAttend>)->Name("BM_SparqStageAttend")->Apply(shapes);
BENCHMARK(BM_KVAppendDecode)
    ->Args({1, 4096})
    ->Args({64, 4096})
    ->ArgNames({"B", "S"})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

// Not yet measured on a GPU, so last: a failing launch here ends the binary after every
// measured row has run. The streaming selection alone and in the three launches, and the
// three launches as programmatic dependent launches (sm_90), alone and with it.
BENCHMARK(BM_SparqDecode<kSelectStream>)->Name("BM_SparqStageSelectStream")->Apply(shapes);
// The cluster selection at large batch (the launch API takes it below the SM count of units):
// whether eight blocks of a unit per cluster, several clusters per SM, beat one block of 1024
// threads per SM where the keys fill shared memory.
BENCHMARK(BM_SparqDecode<kSelectCluster>)
    ->Name("BM_SparqStageSelectCluster")
    ->Apply(large_batch_shapes);
BENCHMARK(BM_SparqDecode<kSelectClusterNarrow>)
    ->Name("BM_SparqStageSelectClusterNarrow")
    ->Apply(cluster_width_shapes);
BENCHMARK(BM_SparqDecode<kSelectClusterWide>)
    ->Name("BM_SparqStageSelectClusterWide")
    ->Apply(cluster_width_shapes);
BENCHMARK(BM_SparqDecode<kThreeStream>)->Name("BM_SparqRouteThreeStream")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kThreeDependent>)->Name("BM_SparqRouteThreeDependent")->Apply(shapes);
BENCHMARK(BM_SparqDecode<kThreeStreamDependent>)
    ->Name("BM_SparqRouteThreeStreamDependent")
    ->Apply(shapes);
// The dataflow route, never run yet either; scripts/gpu-check.sh runs it in a process of its
// own (a trapped wait would end the process).
BENCHMARK(BM_SparqDecode<kDataflow>)->Name("BM_SparqRouteDataflow")->Apply(flow_shapes);
BENCHMARK(BM_SparqRouteDataflowTuning)
    ->ArgsProduct({{1}, {16384, 32768, 131072}, {25, 50, 100}, {1, 2}, {0, 1}, {128, 256}})
    ->ArgNames({"B", "S", "lag_pct", "steps", "hist", "rows"})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
