// Host-side planning of the launches (runs on any machine): split counts fill the last wave,
// cluster segments cover the sequence, workspace sizes grow with the problem, the SparQ route
// (fused or three launches) follows the device and the shape.
#include <gtest/gtest.h>

#include <cstdio>

#include "sparq/cuda.cuh"

namespace {

using sparq::kernels::plan_splits;

TEST(LaunchPlanning, SplitsRespectTheMinimumRowsAndFillTheLastWave) {
  const int64_t slots = 396;  // e.g. 3 blocks per SM on 132 SMs
  for (int64_t units : {1, 8, 32, 100, 256, 2048, 4096})
    for (int64_t n : {1, 31, 32, 100, 1024, 4096, 32768, 131072}) {
      SCOPED_TRACE("units " + std::to_string(units) + " n " + std::to_string(n));
      const int s = plan_splits(n, units, 32, slots);
      EXPECT_GE(s, 1);
      EXPECT_LE(s, std::max<int64_t>(1, (n + 31) / 32));
      const int64_t blocks = units * s;
      const int64_t waves = (blocks + slots - 1) / slots;
      const double eff = double(blocks) / double(waves * slots);
      // The fewest splits that fill the last wave to 95%, else no allowed count does.
      const int64_t most = std::min<int64_t>(256, std::max<int64_t>(1, (n + 31) / 32));
      if (eff >= 0.95) {
        for (int64_t t = 1; t < s; ++t) {
          const int64_t b = units * t, w = (b + slots - 1) / slots;
          EXPECT_LT(double(b) / double(w * slots), 0.95) << "fewer splits " << t << " suffice";
        }
      } else {
        for (int64_t t = 1; t <= most; ++t) {
          const int64_t b = units * t, w = (b + slots - 1) / slots;
          EXPECT_LT(double(b) / double(w * slots), 0.95) << "splits " << t << " fill the wave";
        }
      }
    }
}

TEST(LaunchPlanning, ScoreChunksPerBlockAvoidAMostlyEmptyLastWave) {
  using sparq::kernels::plan_chunk_iters;
  // Batch 64 x 32 heads, 32 chunks each, 924 resident blocks: one block per head would make
  // 3 waves with the last 22% full; 8 chunks per block make 9 waves, the last 87% full.
  EXPECT_EQ(plan_chunk_iters(32, 2048, 924), 8);
  // Batch 1: 2 chunks per block fit the whole grid in one wave.
  EXPECT_EQ(plan_chunk_iters(32, 32, 924), 2);
  // Everything fits in one wave with a chunk per block: no reason to serialise.
  EXPECT_EQ(plan_chunk_iters(4, 10, 924), 1);
  EXPECT_EQ(plan_chunk_iters(1, 100000, 924), 1);
  for (int64_t chunks : {1, 7, 32, 128, 1000})
    for (int64_t units : {1, 32, 2048})
      for (int64_t slots : {132, 924}) {
        const int it = plan_chunk_iters(chunks, units, slots);
        EXPECT_GE(it, 1);
        EXPECT_LE(it, std::min<int64_t>(64, chunks));
      }
}

TEST(LaunchPlanning, ClusterSegmentsCoverTheSequence) {
  for (int len : {0, 1, 15, 16, 17, 127, 128, 129, 1000, 4096, 32768, 131071, 131072}) {
    const int seg = sparq::kernels::cluster_segment(len);
    EXPECT_EQ(seg % 16, 0) << len;
    EXPECT_GE(seg * sparq::kernels::kClusterBlocks, len) << len;
    EXPECT_LT((seg - 16) * sparq::kernels::kClusterBlocks, std::max(len, 1)) << len;
  }
}

TEST(LaunchPlanning, WorkspaceGrowsWithTheProblem) {
  sparq::DecodeProblem p;
  p.batch = 2;
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.capacity = 4096;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 256;
  size_t small = 0, large = 0, dense_small = 0, dense_large = 0;
  ASSERT_EQ(sparq::sparq_decode_workspace_size<__nv_bfloat16>(p, cfg, &small),
            sparq::Status::kSuccess);
  ASSERT_EQ(sparq::dense_decode_workspace_size<__nv_bfloat16>(p, &dense_small),
            sparq::Status::kSuccess);
  p.batch = 16;
  p.capacity = 65536;
  ASSERT_EQ(sparq::sparq_decode_workspace_size<__nv_bfloat16>(p, cfg, &large),
            sparq::Status::kSuccess);
  ASSERT_EQ(sparq::dense_decode_workspace_size<__nv_bfloat16>(p, &dense_large),
            sparq::Status::kSuccess);
  EXPECT_GT(large, small);
  EXPECT_GE(dense_large, dense_small);
  // The three launches' workspace holds at least the float logits of every query head; a
  // fused route's (positions and alpha only) is no larger.
  using Plan = sparq::kernels::SparqPlan<__nv_bfloat16>;
  const size_t three = Plan(p, cfg, nullptr, sparq::kernels::SparqRoute::kThreeLaunches).bytes;
  EXPECT_GE(three, sizeof(float) * size_t(p.batch) * p.num_q_heads * p.capacity);
  EXPECT_LE(large, three);
  const size_t fused = Plan(p, cfg, nullptr, sparq::kernels::SparqRoute::kFusedBlock).bytes;
  EXPECT_LT(fused, three);
  EXPECT_GE(fused, sizeof(int) * size_t(p.batch) * p.num_kv_heads * cfg.k);
  // max_length bounds the workspace below the capacity (the three launches' logits scale
  // with it; a fused route's positions only up to k).
  p.max_length = 1024;
  size_t bounded = 0;
  ASSERT_EQ(sparq::sparq_decode_workspace_size<__nv_bfloat16>(p, cfg, &bounded),
            sparq::Status::kSuccess);
  EXPECT_LE(bounded, large);
  EXPECT_LT(Plan(p, cfg, nullptr, sparq::kernels::SparqRoute::kThreeLaunches).bytes, three);
}

sparq::DecodeProblem mha_problem(int batch, int length) {
  sparq::DecodeProblem p;
  p.batch = batch;
  p.num_q_heads = 32;
  p.num_kv_heads = 32;
  p.head_dim = 128;
  p.capacity = length;
  return p;
}

// A workspace zeroed once stays clean across every decode launch with the same batch and
// query heads only if every plan keeps its counters in the same region at the start, and
// nothing else there (the counters are zero again after each launch; the rest is not).
TEST(LaunchPlanning, EveryPlanKeepsItsCountersInTheSharedRegion) {
  using T = __nv_bfloat16;
  using sparq::kernels::SparqRoute;
  alignas(256) static unsigned char fake[64 << 20];  // never touched: addresses only
  for (int hkv : {32, 8})
    for (int bound : {100, 4096, 40000})
      for (int k : {16, 512}) {
        sparq::DecodeProblem p = mha_problem(3, 40000);
        p.num_kv_heads = hkv;
        p.max_length = bound;
        sparq::SparqConfig cfg;
        cfg.r = 16;
        cfg.k = k;
        const size_t region = sparq::kernels::counter_region_bytes(p);
        ASSERT_EQ(region, (sizeof(unsigned) * (1 + 4 * 3 * 32) + 255) / 256 * 256);
        const auto in_region = [&](const void* q, int64_t count) {
          const auto* c = static_cast<const unsigned char*>(q);
          return c >= fake && c + sizeof(unsigned) * count <= fake + region;
        };
        const auto after_region = [&](const void* q) {
          return static_cast<const unsigned char*>(q) >= fake + region;
        };
        SCOPED_TRACE("hkv " + std::to_string(hkv) + " bound " + std::to_string(bound) + " k " +
                     std::to_string(k));
        const sparq::kernels::DensePlan<T> dense(p, fake);
        ASSERT_LE(dense.bytes, sizeof(fake));
        EXPECT_TRUE(in_region(dense.attend.counters, dense.attend.num_counters));
        EXPECT_TRUE(after_region(dense.attend.partial_ml));
        EXPECT_TRUE(after_region(dense.attend.partial_acc));
        for (SparqRoute route : {SparqRoute::kThreeLaunches, SparqRoute::kDataflow,
                                 SparqRoute::kFusedBlock, SparqRoute::kFusedCluster}) {
          const sparq::kernels::SparqPlan<T> plan(p, cfg, fake, route);
          ASSERT_LE(plan.bytes, sizeof(fake));
          EXPECT_TRUE(after_region(plan.indices));
          EXPECT_TRUE(after_region(plan.alpha));
          if (route == SparqRoute::kThreeLaunches || route == SparqRoute::kDataflow) {
            EXPECT_TRUE(in_region(plan.attend.counters, plan.attend.num_counters));
            EXPECT_TRUE(after_region(plan.logits));
            EXPECT_TRUE(after_region(plan.attend.partial_ml));
          }
          if (route == SparqRoute::kDataflow) {
            EXPECT_TRUE(in_region(plan.flow_counters,
                                  static_cast<int64_t>(plan.counter_bytes / sizeof(unsigned))));
            if (plan.flow_hist != nullptr) EXPECT_TRUE(after_region(plan.flow_hist));
          }
        }
      }
}

TEST(SparqRoute, FusedSharedMemoryCountsQueriesOutputsLogitsAndKeys) {
  // 1 head, d 128, a 4096-position segment: q and partial output (2 x 128), logits (their
  // keys in place).
  EXPECT_EQ(sparq::kernels::fused_smem_bytes(1, 128, 4096), 4u * (256 + 4096));
  EXPECT_EQ(sparq::kernels::fused_smem_bytes(4, 64, 256), 4u * (2 * 4 * 64 + 4 * 256 + 256));
  // Short segments: room for the attention step's scratch (8 warps x d floats) all the same.
  EXPECT_EQ(sparq::kernels::fused_smem_bytes(4, 64, 16), 4u * (2 * 4 * 64 + 8 * 64));
  EXPECT_EQ(sparq::kernels::fused_smem_bytes(1, 128, 16), 4u * (256 + 8 * 128));
}

TEST(SparqRoute, BlockRouteForAboutOneWaveOfUnitsOrFewShortOnes) {
  using sparq::kernels::block_route_rule;
  // An H100 SXM's 132 SMs; DRAM bandwidth per SM of an H200 (above the many-units limit).
  const int sms = 132;
  const double h200 = 4800.0 / 132;
  const int64_t short_bound = sparq::kernels::kBlockRouteShortBound;
  // Half to one wave of units, whatever the length and the heads per unit (below half a wave
  // where neither exception below applies).
  for (int64_t bound : {short_bound + 1, int64_t{32768}})
    for (int heads : {1, 4}) {
      EXPECT_FALSE(block_route_rule(sms / 2, bound, heads, sms, h200)) << bound << " " << heads;
      EXPECT_TRUE(block_route_rule(sms / 2 + 1, bound, heads, sms, h200)) << bound << " " << heads;
      EXPECT_TRUE(block_route_rule(sms, bound, heads, sms, h200)) << bound << " " << heads;
      EXPECT_FALSE(block_route_rule(sms + 1, bound, heads, sms, h200)) << bound << " " << heads;
    }
  // Fewer units of one head: only up to the short bound (batch 1 with 32 heads at 4k and 8k).
  EXPECT_TRUE(block_route_rule(1, short_bound, 1, sms, h200));
  EXPECT_TRUE(block_route_rule(32, 4096, 1, sms, h200));
  EXPECT_FALSE(block_route_rule(32, short_bound + 1, 1, sms, h200));
  EXPECT_FALSE(block_route_rule(32, 16384, 1, sms, h200));
  EXPECT_TRUE(block_route_rule(sms / 2, 1024, 1, sms, h200));
  EXPECT_FALSE(block_route_rule(8, 4096, 4, sms, h200)) << "GQA units of four heads: not measured";
  EXPECT_FALSE(block_route_rule(sms / 2, 1024, 4, sms, h200));
  EXPECT_FALSE(block_route_rule(sms + 1, 4096, 1, sms, h200));
}

TEST(SparqRoute, ClusterRouteForFewOneHeadUnitsInOneWave) {
  using sparq::kernels::cluster_route_rule;
  const int64_t min_bound = sparq::kernels::kClusterRouteMinBound;
  // Batch 1 x 32 heads on an H100: 45 clusters resident at 3 blocks per SM, 29 at 2.
  for (int64_t bound : {min_bound, int64_t{16384}, int64_t{32768}}) {
    EXPECT_TRUE(cluster_route_rule(32, bound, 1, 45)) << bound;
    EXPECT_FALSE(cluster_route_rule(32, bound, 1, 29)) << bound << ": a second wave";
  }
  EXPECT_TRUE(cluster_route_rule(45, 16384, 1, 45)) << "every resident cluster used";
  EXPECT_FALSE(cluster_route_rule(46, 16384, 1, 45));
  EXPECT_TRUE(cluster_route_rule(1, 16384, 1, 45));
  EXPECT_FALSE(cluster_route_rule(32, min_bound - 1, 1, 45)) << "shorter: the block route";
  EXPECT_FALSE(cluster_route_rule(8, 32768, 4, 45)) << "units of four heads: not measured";
  EXPECT_FALSE(cluster_route_rule(32, 32768, 1, 0)) << "no clusters on the device";
  EXPECT_FALSE(cluster_route_rule(0, 32768, 1, 45));
  // The block route's short-bound case ends where this begins.
  EXPECT_EQ(min_bound, sparq::kernels::kBlockRouteShortBound);
}

TEST(SparqRoute, FusedClusterKernelCapsItsRegistersForThreeBlocksPerSm) {
  using sparq::kernels::fused_min_blocks;
  using sparq::kernels::FusedShape;
  EXPECT_EQ((fused_min_blocks<__nv_bfloat16, 128>(8)), 3);
  EXPECT_EQ((fused_min_blocks<__half, 128>(8)), 3);
  EXPECT_EQ((fused_min_blocks<float, 128>(8)), 3);
  // Head sizes where 80 registers spilled, and clusters of one block: no minimum (0).
  EXPECT_EQ((fused_min_blocks<__nv_bfloat16, 256>(8)), 0);
  EXPECT_EQ((fused_min_blocks<__nv_bfloat16, 64>(8)), 0);
  EXPECT_EQ((fused_min_blocks<float, 256>(8)), 0);
  EXPECT_EQ((fused_min_blocks<__nv_bfloat16, 128>(1)), 0);
  EXPECT_EQ((FusedShape<__nv_bfloat16, 128, 8>::kHeadsPerPass), 1);
  EXPECT_EQ((FusedShape<__nv_bfloat16, 128, 8>::kRowsInFlight), 4);
  EXPECT_EQ((FusedShape<__nv_bfloat16, 128, 1>::kHeadsPerPass), sparq::kernels::kScoreHeadsPerPass);
  EXPECT_EQ((FusedShape<__nv_bfloat16, 128, 1>::kRowsInFlight), sparq::kernels::kAttendUnroll);
}

TEST(SparqRoute, PeakDramBandwidthPerSmFromTheDeviceAttributes) {
  using sparq::kernels::peak_dram_gbs_per_sm;
  // An H100 SXM as run 11 read it: 2619 MHz memory clock, a 5120-bit bus, 132 SMs.
  EXPECT_NEAR(peak_dram_gbs_per_sm(2619000, 5120, 132), 25.4, 0.05);
  EXPECT_NEAR(peak_dram_gbs_per_sm(2619000, 5120, 132) * 132, 3352.3, 0.1);
  EXPECT_EQ(peak_dram_gbs_per_sm(0, 5120, 132), 0.0);
  EXPECT_EQ(peak_dram_gbs_per_sm(2619000, 0, 132), 0.0);
  EXPECT_EQ(peak_dram_gbs_per_sm(2619000, 5120, 0), 0.0);
}

TEST(SparqRoute, ManyUnitsTakeTheBlockRouteWhereDramIsSlowPerSm) {
  using sparq::kernels::block_route_rule;
  const int sms = 132;
  // Peak GB/s per SM: an H100 SXM (run 11), an H200 by its data sheet (4.8 TB/s, 132 SMs).
  const double h100 = 3352.3 / 132, h200 = 4800.0 / 132;
  const double limit = sparq::kernels::kBlockRouteMaxGbsPerSm;
  const int64_t min_bound = sparq::kernels::kBlockRouteManyUnitsMinBound;
  ASSERT_LT(h100, limit);
  ASSERT_GT(h200, limit);
  for (int64_t units : {int64_t{sms} + 1, int64_t{16 * 32}, int64_t{64 * 32}})
    for (int64_t bound : {min_bound, int64_t{16384}, int64_t{32768}}) {
      EXPECT_TRUE(block_route_rule(units, bound, 1, sms, h100)) << units << " " << bound;
      EXPECT_TRUE(block_route_rule(units, bound, 1, sms, limit)) << "the limit is included";
      EXPECT_FALSE(block_route_rule(units, bound, 1, sms, h200)) << units << " " << bound;
      EXPECT_FALSE(block_route_rule(units, bound, 1, sms, 0.0)) << "bandwidth unknown";
      EXPECT_FALSE(block_route_rule(units, bound, 4, sms, h100)) << "GQA units: not measured";
    }
  EXPECT_FALSE(block_route_rule(64 * 32, min_bound - 1, 1, sms, h100)) << "shorter: not measured";
  EXPECT_FALSE(block_route_rule(64 * 32, 1024, 1, sms, h100));
}

TEST(SparqRoute, ThreeLaunchesRefuseAPlanMadeForAFusedRoute) {
  using T = __nv_bfloat16;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 256;
  const sparq::kernels::SparqPlan<T> fused(mha_problem(2, 4096), cfg, nullptr,
                                           sparq::kernels::SparqRoute::kFusedBlock);
  EXPECT_EQ(fused.logits, nullptr);
  sparq::SparqDecodeParams<T> a;
  a.problem = mha_problem(2, 4096);
  a.config = cfg;
  // Its workspace has no room for the logits, stats and splits: nothing is launched.
  EXPECT_EQ((sparq::kernels::launch_sparq_three<T, 128>(a, fused, nullptr)),
            sparq::Status::kWorkspaceTooSmall);
  EXPECT_EQ((sparq::kernels::launch_sparq_select<T>(a, fused, nullptr)),
            sparq::Status::kWorkspaceTooSmall);
}

TEST(SparqRoute, EnvironmentOverrideParses) {
  using sparq::kernels::parse_route_override;
  using sparq::kernels::RouteOverride;
  EXPECT_EQ(parse_route_override(nullptr), RouteOverride::kAuto);
  EXPECT_EQ(parse_route_override(""), RouteOverride::kAuto);
  EXPECT_EQ(parse_route_override("auto"), RouteOverride::kAuto);
  EXPECT_EQ(parse_route_override("three"), RouteOverride::kThree);
  EXPECT_EQ(parse_route_override("cluster"), RouteOverride::kCluster);
  EXPECT_EQ(parse_route_override("block"), RouteOverride::kBlock);
  EXPECT_EQ(parse_route_override("Three"), RouteOverride::kInvalid);
  EXPECT_EQ(parse_route_override("fused"), RouteOverride::kInvalid);
}

TEST(SparqSelect, EnvironmentOverrideParses) {
  using sparq::kernels::parse_select_override;
  using sparq::kernels::SelectRoute;
  ASSERT_TRUE(parse_select_override(nullptr).has_value());
  EXPECT_FALSE(parse_select_override(nullptr)->has_value()) << "unset: the rule";
  EXPECT_FALSE(parse_select_override("")->has_value());
  EXPECT_FALSE(parse_select_override("auto")->has_value());
  ASSERT_TRUE(parse_select_override("stream").has_value());
  EXPECT_EQ(*parse_select_override("stream"), SelectRoute::kStream);
  ASSERT_TRUE(parse_select_override("cluster").has_value());
  EXPECT_EQ(*parse_select_override("cluster"), SelectRoute::kCluster);
  EXPECT_FALSE(parse_select_override("Stream").has_value()) << "not a value: refused";
  EXPECT_FALSE(parse_select_override("block").has_value());
}

TEST(SparqDependentLaunch, EnvironmentOverrideParses) {
  using sparq::kernels::parse_pdl_override;
  EXPECT_EQ(parse_pdl_override(nullptr), false);
  EXPECT_EQ(parse_pdl_override(""), false);
  EXPECT_EQ(parse_pdl_override("0"), false);
  EXPECT_EQ(parse_pdl_override("1"), true);
  EXPECT_FALSE(parse_pdl_override("yes").has_value());
}

TEST(SparqDependentLaunch, OnlyOnDevicesWithClusters) {
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 256;
  const sparq::kernels::SparqPlan<__nv_bfloat16> plan(mha_problem(1, 4096), cfg, nullptr);
  if (!sparq::kernels::device_has_clusters()) EXPECT_FALSE(plan.dependent_launch);
  if (!sparq::kernels::dependent_launch_requested()) EXPECT_FALSE(plan.dependent_launch);
}

TEST(SparqSelect, WideClusterSelectionForManyKeysPerBlockAndFewBlocksPerSm) {
  using sparq::kernels::cluster_select_wide_rule;
  using sparq::kernels::kWideClusterKeys;
  const int sms = 132;
  // Batch 1 with 32 heads: 256 blocks, at most two per SM; S 64k and up.
  EXPECT_TRUE(cluster_select_wide_rule(sparq::kernels::cluster_segment(65536), 32, sms));
  EXPECT_TRUE(cluster_select_wide_rule(sparq::kernels::cluster_segment(131072), 32, sms));
  EXPECT_FALSE(cluster_select_wide_rule(sparq::kernels::cluster_segment(32768), 32, sms));
  EXPECT_FALSE(cluster_select_wide_rule(kWideClusterKeys - 16, 1, sms));
  EXPECT_TRUE(cluster_select_wide_rule(kWideClusterKeys, 1, sms));
  // Up to two blocks per SM: 33 units of 8 blocks fill 264 slots of 132 SMs; 34 do not.
  EXPECT_TRUE(cluster_select_wide_rule(kWideClusterKeys, 33, sms));
  EXPECT_FALSE(cluster_select_wide_rule(kWideClusterKeys, 34, sms));
  EXPECT_FALSE(cluster_select_wide_rule(sparq::kernels::cluster_segment(131072), 64, sms));
}

TEST(SparqSelect, StreamingSelectionNeedsNoKeysInTheWorkspace) {
  using T = __nv_bfloat16;
  using sparq::kernels::SelectRoute;
  using sparq::kernels::SparqRoute;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 8192;
  // 256k positions exceed every shared-memory key store: the rule keeps the keys in the
  // workspace; the streaming kernel keeps none.
  const sparq::DecodeProblem p = mha_problem(2, 262144);
  const sparq::kernels::SparqPlan<T> rule(p, cfg, nullptr, SparqRoute::kThreeLaunches,
                                          SelectRoute::kGlobalKeys);
  const sparq::kernels::SparqPlan<T> stream(p, cfg, nullptr, SparqRoute::kThreeLaunches,
                                            SelectRoute::kStream);
  EXPECT_EQ(stream.select, SelectRoute::kStream);
  const size_t keys = size_t(2) * 32 * 262144 * sizeof(uint32_t);
  EXPECT_EQ(rule.bytes - stream.bytes, keys);
  if (sparq::kernels::device_sm_count() == 0) {
    EXPECT_EQ(stream.stream_candidates, 0) << "no device: no shared memory to plan with";
    EXPECT_EQ(stream.stream_above, 0);
    // Nothing is launched where the kernel cannot get its shared memory.
    sparq::SparqDecodeParams<T> a;
    a.problem = p;
    a.config = cfg;
    EXPECT_EQ((sparq::kernels::launch_sparq_select<T>(a, stream, nullptr)),
              sparq::Status::kUnsupportedDevice);
  } else {
    EXPECT_GE(stream.stream_candidates, 1024);
    EXPECT_LE(stream.stream_candidates, sparq::kernels::kStreamCandidates);
    EXPECT_EQ(stream.stream_above, 8192) << "room for every selected position (k = 8192)";
    EXPECT_LE(sparq::kernels::stream_smem_bytes(stream.stream_candidates, stream.stream_above),
              sparq::kernels::stream_smem_limit());
  }
}

TEST(SparqRoute, PlanFollowsTheDevice) {
  if (sparq::kernels::route_override() != sparq::kernels::RouteOverride::kAuto)
    GTEST_SKIP() << "SPARQ_ROUTE is set: the rule is overridden";
  using T = __nv_bfloat16;
  using sparq::kernels::SparqRoute;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 2048;
  const sparq::kernels::SparqPlan<T> one(mha_problem(1, 32768), cfg, nullptr);
  const sparq::kernels::SparqPlan<T> four(mha_problem(4, 16384), cfg, nullptr);
  const sparq::kernels::SparqPlan<T> many(mha_problem(64, 32768), cfg, nullptr);
  const sparq::kernels::SparqPlan<T> long_four(mha_problem(4, 131072), cfg, nullptr);
  EXPECT_EQ(long_four.route, SparqRoute::kThreeLaunches) << "128k positions: three launches";
  // Batch 1 x 32 heads from 8k positions: the cluster route where its 32 clusters are resident
  // at once (sm_90), else three launches.
  const int resident = sparq::kernels::fused_resident_clusters<T, 128>(
      sparq::kernels::fused_smem_bytes(1, 128, sparq::kernels::cluster_segment(32768)));
  const bool one_wave = resident >= 32 && sparq::kernels::fused_fits<T, 128>(32768, 1);
  EXPECT_EQ(one.route, one_wave ? SparqRoute::kFusedCluster : SparqRoute::kThreeLaunches)
      << "batch 1, 32k; clusters resident: " << resident;
  if (sparq::kernels::device_has_clusters()) {
    std::printf("clusters of 8 resident at batch 1, 32k: %d\n", resident);
    // The design's premise (fused_min_blocks): an H100's 132 SMs hold 45 clusters of 8 at 3
    // blocks per SM; at 2 per SM they held 29, and 3 of batch 1's 32 ran in a second wave.
    if (sparq::kernels::planning_sm_count() >= 128 && sparq::kernels::planning_sm_count() < 256)
      EXPECT_GE(resident, 32) << "fewer than 32 clusters resident: a second wave";
  }
  // Batch 64: the block route on cards with little DRAM bandwidth per SM (an H100), else
  // three launches (an H200; measured on both).
  const double gbs_per_sm = sparq::kernels::device_dram_gbs_per_sm();
  const bool slow_dram = gbs_per_sm > 0 && gbs_per_sm <= sparq::kernels::kBlockRouteMaxGbsPerSm;
  const bool fits = sparq::kernels::fused_block_fits<T, 128>(32768, 1);
  EXPECT_EQ(many.route, slow_dram && fits ? SparqRoute::kFusedBlock : SparqRoute::kThreeLaunches)
      << "batch 64, S 32k; peak DRAM GB/s per SM " << gbs_per_sm;
  if (gbs_per_sm > 0) std::printf("peak DRAM bandwidth per SM: %.1f GB/s\n", gbs_per_sm);
  sparq::SparqDecodeParams<T> a;
  a.problem = mha_problem(1, 32768);
  a.config = cfg;
  if (sparq::kernels::device_sm_count() == 0) {
    EXPECT_EQ(four.route, SparqRoute::kThreeLaunches) << "no device here: three launches";
    // Forcing a fused route where it cannot run launches nothing and says why.
    EXPECT_EQ((sparq::kernels::launch_sparq_fused<T, 128>(a, one, nullptr)),
              sparq::Status::kUnsupportedDevice);
    EXPECT_EQ((sparq::kernels::launch_sparq_fused_block<T, 128>(a, one, nullptr)),
              sparq::Status::kUnsupportedDevice);
  } else if (sparq::kernels::planning_sm_count() >= 128 &&
             sparq::kernels::planning_sm_count() < 256) {
    EXPECT_EQ(four.route, SparqRoute::kFusedBlock) << "4 x 32 heads, 16k: a block per head";
    EXPECT_EQ(sparq::kernels::SparqPlan<T>(mha_problem(1, 4096), cfg, nullptr).route,
              SparqRoute::kFusedBlock)
        << "batch 1, 4k: a block per head";
  }
  // Units of several heads take the block route as clusters of one block (sm_90), while their
  // logits and keys fit: 4 heads x 4096 positions do, 4 x 32768 do not. 16 x 8 units.
  sparq::DecodeProblem gqa = mha_problem(16, 4096);
  gqa.num_kv_heads = 8;
  const sparq::kernels::SparqPlan<T> shared(gqa, cfg, nullptr);
  gqa.capacity = 32768;
  const sparq::kernels::SparqPlan<T> shared_long(gqa, cfg, nullptr);
  EXPECT_EQ(shared_long.route, SparqRoute::kThreeLaunches);
  const int sms = sparq::kernels::planning_sm_count();
  const bool block = sparq::kernels::device_has_clusters() && sms >= 128 && sms < 256;
  EXPECT_EQ(shared.route, block ? SparqRoute::kFusedBlock : SparqRoute::kThreeLaunches);
}

// The dataflow plan takes what FlowTuning (SPARQ_FLOW) asks for: score items of several
// default items' chunks, histogram items forced on (two tiles or more) or off, lags scaled,
// attend items of more rows; the defaults give the plan's own rules.
TEST(SparqDataflowPlan, FollowsItsTuning) {
  using T = __nv_bfloat16;
  using sparq::kernels::SparqPlan;
  using sparq::kernels::SparqRoute;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 2048;
  const sparq::DecodeProblem p = mha_problem(1, 16400);  // 3 tiles: the rule takes none
  const SparqPlan<T> rule(p, cfg, nullptr, SparqRoute::kDataflow, std::nullopt,
                          sparq::FlowTuning{});
  EXPECT_EQ(rule.flow_chunks_per_item, sparq::kernels::kFlowChunksPerItem);
  EXPECT_EQ(rule.flow_hist_items, 0);
  EXPECT_EQ(rule.attend.splits, 2048 / sparq::kFlowMinAttendRows);
  const int blocks = rule.flow_blocks > 0 ? rule.flow_blocks : sparq::kernels::planning_sm_count();

  const auto tune = sparq::parse_flow_tuning("lag_pct=50,steps=2,hist=1,rows=512");
  ASSERT_TRUE(tune);
  const SparqPlan<T> tuned(p, cfg, nullptr, SparqRoute::kDataflow, std::nullopt, tune);
  EXPECT_EQ(tuned.flow_chunks_per_item, 2 * sparq::kernels::kFlowChunksPerItem);
  EXPECT_EQ(tuned.flow_hist_items, 3);
  EXPECT_EQ(tuned.attend.splits, 2048 / 512);
  const sparq::FlowSchedule expect = sparq::scale_flow_lags(
      sparq::make_flow_schedule(
          32, (tuned.chunks + tuned.flow_chunks_per_item - 1) / tuned.flow_chunks_per_item, 8,
          blocks, 3),
      50);
  EXPECT_EQ(tuned.flow.score_items, expect.score_items);
  EXPECT_EQ(tuned.flow.hist_items, 3);
  EXPECT_EQ(tuned.flow.hist_lag, expect.hist_lag);
  EXPECT_EQ(tuned.flow.select_lag, expect.select_lag);
  EXPECT_EQ(tuned.flow.attend_lag, expect.attend_lag);
  EXPECT_EQ(tuned.bytes - rule.bytes,
            size_t(32) * sparq::device::kStreamBins * sizeof(unsigned) -
                (rule.attend.splits - tuned.attend.splits) * size_t(32) * (2 + 128) * sizeof(float))
      << "the histograms carved, fewer split partials";

  // Where the rule takes histogram items (5 tiles, 32 units), hist=0 leaves them out; one
  // tile is never split, forced or not.
  const auto off = sparq::parse_flow_tuning("hist=0");
  const SparqPlan<T> longer(mha_problem(1, 40000), cfg, nullptr, SparqRoute::kDataflow,
                            std::nullopt, sparq::FlowTuning{});
  const SparqPlan<T> none(mha_problem(1, 40000), cfg, nullptr, SparqRoute::kDataflow, std::nullopt,
                          off);
  EXPECT_EQ(longer.flow_hist_items, 4 * 32 <= blocks ? 5 : 0);
  EXPECT_EQ(none.flow_hist_items, 0);
  EXPECT_EQ(none.flow.hist_items, 0);
  const auto on = sparq::parse_flow_tuning("hist=1");
  const SparqPlan<T> one_tile(mha_problem(1, 8192), cfg, nullptr, SparqRoute::kDataflow,
                              std::nullopt, on);
  EXPECT_EQ(one_tile.flow_hist_items, 0);

  // Settings given directly, out of SPARQ_FLOW's ranges, are clamped into them.
  sparq::FlowTuning wild;
  wild.lag_pct = -7, wild.score_steps = 1000, wild.attend_rows = 1;
  const SparqPlan<T> clamped(p, cfg, nullptr, SparqRoute::kDataflow, std::nullopt, wild);
  EXPECT_EQ(clamped.flow_chunks_per_item,
            sparq::kFlowScoreStepsMax * sparq::kernels::kFlowChunksPerItem);
  EXPECT_EQ(clamped.attend.splits, std::min(2048 / sparq::kFlowAttendRowsMin, 8 * blocks / 32))
      << "32-row items, as many as 8 per block allow";
  EXPECT_GE(clamped.flow.select_lag, 1);
  EXPECT_GT(clamped.flow.attend_lag, clamped.flow.select_lag);
}

}  // namespace
