// The SparQ decode cases of the GPU tests and their check against the CPU reference, on fresh
// random data: every element type, head dims 64/128/256, group sizes 1/4/8, both GQA modes,
// odd sizes, lengths differing across the batch, 128k positions, outputs and workspace
// poisoned before each launch. run_case launches through the public API (whichever route it
// picks) or through one route forced (Route). Shared by test_gpu_sparq_decode.cu and
// test_gpu_sparq_dataflow.cu (the dataflow route in a process of its own: a trap there would
// end every later test of its process).
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace sparq_cases {

using sparq::DecodeProblem;
using sparq::GqaMode;
using sparq::SparqConfig;

struct SparqCase {
  std::string name;
  int batch, hq, hkv, d, capacity;
  std::vector<int> lengths;
  int r, k, window;
  bool reallocation;
  GqaMode gqa;
};

inline std::vector<SparqCase> all_cases() {
  return {
      {"mha_two_lengths", 2, 4, 4, 128, 1000, {1000, 517}, 16, 64, 0, true, GqaMode::kShared},
      {"gqa4_window", 3, 16, 4, 128, 777, {777, 300, 45}, 32, 100, 16, true, GqaMode::kShared},
      {"gqa8_d64", 2, 32, 4, 64, 2049, {2049, 1500}, 8, 128, 8, true, GqaMode::kShared},
      {"per_head_gqa4_d256",
       2,
       8,
       2,
       256,
       600,
       {600, 333},
       32,
       50,
       4,
       true,
       GqaMode::kPerQueryHead},
      {"gqa4_d256_shared", 1, 8, 2, 256, 1500, {1400}, 24, 200, 0, true, GqaMode::kShared},
      {"length_one", 2, 2, 2, 128, 8, {1, 1}, 16, 4, 0, true, GqaMode::kShared},
      {"length_below_k", 2, 4, 2, 128, 100, {37, 100}, 16, 128, 2, true, GqaMode::kShared},
      {"dense_equivalent", 2, 2, 2, 128, 300, {300, 299}, 128, 300, 0, true, GqaMode::kShared},
      {"no_reallocation", 2, 8, 8, 64, 512, {512, 100}, 8, 32, 0, false, GqaMode::kShared},
      {"odd_tiles", 3, 2, 2, 128, 1031, {1031, 1029, 513}, 13, 77, 3, true, GqaMode::kShared},
      {"gqa4_batch32", 32, 32, 8, 128, 1024, std::vector<int>(32, 1024), 64, 256, 0, true,
       GqaMode::kShared},
      {"gqa8_per_head_odd", 2, 24, 3, 128, 900, {900, 3}, 16, 70, 5, true, GqaMode::kPerQueryHead},
      {"gqa3_shared", 2, 6, 2, 64, 700, {700, 650}, 8, 90, 0, true, GqaMode::kShared},
      {"many_sequences",
       16,
       2,
       2,
       64,
       500,
       {1, 2, 3, 7, 31, 64, 65, 127, 128, 129, 255, 256, 257, 333, 499, 500},
       8,
       40,
       4,
       true,
       GqaMode::kShared},
  };
}

inline SparqCase long_case() {
  return {"positions_128k", 1, 4, 1, 128, 131072, {131072}, 16, 8192, 64, true, GqaMode::kShared};
}

/// One head per unit, so the fused route fits 128k positions in shared memory.
inline SparqCase long_mha_case() {
  return {"positions_128k_mha", 1, 2, 2, 128, 131072, {131072}, 16, 8192, 64, true,
          GqaMode::kShared};
}

/// Batch 1 with 32 heads of one head per unit from 8k positions, the shape the cluster route is
/// for (cluster_route_rule, where its 32 clusters are resident); one sequence shorter than the
/// bound, so the cluster's segments follow the length, not the bound.
inline SparqCase batch_one_heads32_case() {
  return {"batch1_heads32_16k", 1, 32, 32, 128, 16384, {12345}, 16, 768, 64, true,
          GqaMode::kShared};
}

/// More units of one head than an H100 has SMs (5 x 32), from 4k positions: where the plan
/// takes the block route on cards with little DRAM bandwidth per SM (block_route_rule).
inline SparqCase many_units_case() {
  return {"many_units_4k", 5, 32, 32, 128, 4500, {4500, 4096, 1, 2999, 4497}, 16, 512, 8, true,
          GqaMode::kShared};
}

enum class Route {
  kChosen,
  kFused,
  kFusedBlock,
  kThreeLaunches,
  kThreeLaunchesWideSelect,
  kThreeLaunchesClusterWide,     // select_cluster_kernel with kClusterThreadsWide threads (sm_90)
  kThreeLaunchesStreamSelect,    // select_stream_kernel, candidates in shared memory
  kThreeLaunchesStreamFallback,  // select_stream_kernel with room for 4 candidates: the
                                 // streamed refine passes
  kThreeLaunchesDependent,       // programmatic dependent launches, no memset (sm_90)
  kDataflow,                     // one persistent launch (sparq_dataflow_kernel)
  kDataflowOneBlock,             // the same with a grid of one block: every item in ticket
                                 // order, no block ever waits (for racecheck)
};

/// The plan route a forced test route needs (the chosen one: none).
inline std::optional<sparq::kernels::SparqRoute> plan_route(Route route) {
  using sparq::kernels::SparqRoute;
  switch (route) {
    case Route::kChosen:
      return std::nullopt;
    case Route::kFused:
      return SparqRoute::kFusedCluster;
    case Route::kFusedBlock:
      return SparqRoute::kFusedBlock;
    case Route::kDataflow:
    case Route::kDataflowOneBlock:
      return SparqRoute::kDataflow;
    default:
      break;
  }
  return SparqRoute::kThreeLaunches;
}

/// The selection kernel a forced test route needs (else the plan's rule).
inline std::optional<sparq::kernels::SelectRoute> plan_select(Route route) {
  if (route == Route::kThreeLaunchesStreamSelect || route == Route::kThreeLaunchesStreamFallback)
    return sparq::kernels::SelectRoute::kStream;
  if (route == Route::kThreeLaunchesClusterWide) return sparq::kernels::SelectRoute::kCluster;
  return std::nullopt;
}

/// Forced routes, on a plan made for them.
template <typename T, int D>
sparq::Status launch_route(Route route, const sparq::SparqDecodeParams<T>& a,
                           const sparq::kernels::SparqPlan<T>& plan) {
  namespace k = sparq::kernels;
  if (route == Route::kFused) return k::launch_sparq_fused<T, D>(a, plan, 0);
  if (route == Route::kFusedBlock) return k::launch_sparq_fused_block<T, D>(a, plan, 0);
  if (route == Route::kDataflow || route == Route::kDataflowOneBlock)
    return k::launch_sparq_dataflow<T, D>(a, plan, 0);
  if (route == Route::kThreeLaunches || route == Route::kThreeLaunchesStreamSelect ||
      route == Route::kThreeLaunchesStreamFallback || route == Route::kThreeLaunchesDependent ||
      route == Route::kThreeLaunchesClusterWide)
    return k::launch_sparq_three<T, D>(a, plan, 0);
  if (sparq::Status s = k::launch_sparq_scores<T, D>(a, plan, 0); !sparq::ok(s)) return s;
  if (sparq::Status s = k::launch_sparq_select<T, k::kSelectThreadsWide>(a, plan, 0); !sparq::ok(s))
    return s;
  return k::launch_sparq_attend<T, D>(a, plan, 0);
}

/// Position sets must match the reference but for near ties (sparq::test::selection_mismatch).
inline void expect_same_selection(const std::vector<int>& gpu, const std::vector<int>& ref,
                                  const std::vector<double>& key, int window_begin) {
  const std::string why = sparq::test::selection_mismatch(gpu, ref, key, window_begin);
  EXPECT_TRUE(why.empty()) << why;
}

template <typename T>
void run_case(const SparqCase& c, uint64_t seed, Route route = Route::kChosen) {
  SCOPED_TRACE("case " + c.name + ", seed " + std::to_string(seed) + ", type " +
               sparq::dtype_name(sparq::ElementTraits<T>::kDType));
  DecodeProblem p;
  p.batch = c.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.head_dim = c.d;
  p.capacity = c.capacity;
  SparqConfig cfg;
  cfg.r = c.r;
  cfg.k = c.k;
  cfg.local_window = c.window;
  cfg.reallocation = c.reallocation;
  cfg.gqa = c.gqa;

  sparq::test::HostKVCache<T> host(p);
  host.fill_random(c.lengths, seed);
  sparq::test::set_exact_vsum(host);
  const std::vector<T> q =
      sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, seed + 1);
  sparq::reference::SparqTrace trace;
  std::vector<double> ref(q.size());
  SPARQ_ASSERT_OK(sparq::reference::sparq_decode(p, cfg, q.data(), host.view(), c.lengths.data(),
                                                 ref.data(), &trace));

  sparq::test::DeviceKVCache<T> dev(host);
  sparq::test::DeviceBuffer<T> dq(q), dout(q.size());
  sparq::test::DeviceBuffer<int> dlen(c.lengths);
  size_t ws = 0;
  SPARQ_ASSERT_OK(sparq::sparq_decode_workspace_size<T>(p, cfg, &ws));
  ws = std::max(
      ws,
      sparq::kernels::SparqPlan<T>(p, cfg, nullptr, plan_route(route), plan_select(route)).bytes);
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  dws.poison();
  dout.poison();
  sparq::SparqDecodeParams<T> a;
  a.problem = p;
  a.config = cfg;
  a.q = dq.get();
  a.cache = dev.view();
  a.lengths = dlen.get();
  a.out = dout.get();
  if (route == Route::kChosen) {
    SPARQ_ASSERT_OK(sparq::sparq_decode(a, dws.get(), ws, nullptr));
  } else {
    sparq::kernels::SparqPlan<T> launch_plan(p, cfg, dws.get(), plan_route(route),
                                             plan_select(route));
    if (route == Route::kThreeLaunchesStreamFallback) launch_plan.stream_candidates = 4;
    if (route == Route::kDataflowOneBlock) launch_plan.flow_grid_limit = 1;
    if (route == Route::kThreeLaunchesClusterWide) {
      if (!sparq::kernels::device_has_clusters())
        GTEST_SKIP() << "the cluster selection needs sm_90";
      launch_plan.select_wide = true;  // whatever the rule says for this shape
    }
    if (route == Route::kThreeLaunchesDependent) {
      if (!sparq::kernels::device_has_clusters()) GTEST_SKIP() << "dependent launches need sm_90";
      launch_plan.dependent_launch = true;  // the poisoned counters are cleared by the scores
    }
    const sparq::Status st = sparq::kernels::dispatch_head_dim(p.head_dim, [&](auto dim) {
      return launch_route<T, decltype(dim)::value>(route, a, launch_plan);
    });
    // The fused routes fit some shapes only; the dataflow route fits every one of these
    // (unsupported there would mean a broken device query, not a shape it cannot take).
    if (st == sparq::Status::kUnsupportedDevice && route != Route::kDataflow &&
        route != Route::kDataflowOneBlock)
      GTEST_SKIP() << "the forced route does not fit " << c.name << " on this device";
    SPARQ_ASSERT_OK(st);
  }
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<double> out = sparq::test::to_double(dout.download());
  ASSERT_EQ(sparq::test::count_non_finite(out), 0u) << "output elements not written (or NaN)";

  // Step 4: the GPU's positions against the reference's (positions and alpha lie at the same
  // workspace offsets for every route).
  const sparq::kernels::SparqPlan<T> plan(p, cfg, dws.get(), plan_route(route), plan_select(route));
  const std::vector<int> idx =
      sparq::test::download_raw(plan.indices, size_t(p.batch) * plan.units.per_batch * plan.kmax);
  std::vector<std::vector<int>> gpu_positions(trace.positions.size());
  for (int b = 0; b < p.batch; ++b)
    for (int u = 0; u < plan.units.per_batch; ++u) {
      const size_t un = size_t(b) * plan.units.per_batch + u;
      const int keff = std::min(cfg.k, c.lengths[b]);
      gpu_positions[un].assign(idx.begin() + un * plan.kmax, idx.begin() + un * plan.kmax + keff);
      const int window = std::min(cfg.local_window, c.lengths[b]);
      SCOPED_TRACE("sequence " + std::to_string(b) + " unit " + std::to_string(u));
      expect_same_selection(gpu_positions[un], trace.positions[un], trace.unit_scores[un],
                            c.lengths[b] - window);
      EXPECT_TRUE(std::is_sorted(gpu_positions[un].begin(), gpu_positions[un].end()));
    }

  // Steps 5-7 scored on the GPU's own selection (identical to the reference's but for ties).
  sparq::reference::SparqTrace trace_on_gpu_sel;
  std::vector<double> ref_on_gpu_sel(q.size());
  SPARQ_ASSERT_OK(sparq::reference::sparq_decode(p, cfg, q.data(), host.view(), c.lengths.data(),
                                                 ref_on_gpu_sel.data(), &trace_on_gpu_sel,
                                                 &gpu_positions));
  const double err = sparq::test::relative_l2(out, ref_on_gpu_sel);
  EXPECT_LE(err, sparq::test::output_tolerance<T>()) << "relative L2 error " << err;
  const std::vector<float> alpha = sparq::test::download_raw(plan.alpha, trace.alpha.size());
  for (size_t h = 0; h < alpha.size(); ++h) {
    EXPECT_GE(alpha[h], 0.f);
    EXPECT_LE(alpha[h], 1.f + 1e-5f);
    EXPECT_NEAR(alpha[h], trace_on_gpu_sel.alpha[h], 1e-4) << "alpha of query row " << h;
  }
}

inline uint64_t fresh_seed() {
  return ::testing::UnitTest::GetInstance()->random_seed() * 7919ULL + 17;
}

}  // namespace sparq_cases
