// The whole SparQ decode pipeline on the GPU against the CPU reference (the cases and the
// check: sparq_decode_cases.cuh). Each case runs through the public launch (whichever route it
// picks) and through each route forced: fused with a cluster per unit, fused with a block per
// unit (units of one head; the others skip), and the three launches with each selection
// kernel. The dataflow route has its own binary (test_gpu_sparq_dataflow.cu).
#include <cstdio>

#include "gpu/sparq_decode_cases.cuh"

namespace {

using namespace sparq_cases;

class SparqDecodeGpu : public ::testing::TestWithParam<SparqCase> {};

TEST_P(SparqDecodeGpu, Float32MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed());
}
TEST_P(SparqDecodeGpu, BFloat16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 1);
}
TEST_P(SparqDecodeGpu, Float16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<__half>(GetParam(), fresh_seed() + 2);
}

TEST_P(SparqDecodeGpu, Float32FusedRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 5, Route::kFused);
}
TEST_P(SparqDecodeGpu, BFloat16FusedRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 6, Route::kFused);
}
TEST_P(SparqDecodeGpu, Float16FusedRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<__half>(GetParam(), fresh_seed() + 7, Route::kFused);
}
TEST_P(SparqDecodeGpu, Float32FusedBlockRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 13, Route::kFusedBlock);
}
TEST_P(SparqDecodeGpu, BFloat16FusedBlockRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 14, Route::kFusedBlock);
}
TEST_P(SparqDecodeGpu, Float16FusedBlockRoute) {
  SPARQ_REQUIRE_GPU();
  run_case<__half>(GetParam(), fresh_seed() + 15, Route::kFusedBlock);
}
TEST_P(SparqDecodeGpu, Float32ThreeLaunches) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 8, Route::kThreeLaunches);
}
TEST_P(SparqDecodeGpu, BFloat16ThreeLaunches) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 9, Route::kThreeLaunches);
}

TEST_P(SparqDecodeGpu, Float32ThreeLaunchesWideSelect) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 12, Route::kThreeLaunchesWideSelect);
}

TEST_P(SparqDecodeGpu, BFloat16ClusterSelectWide) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 19, Route::kThreeLaunchesClusterWide);
}

TEST_P(SparqDecodeGpu, BFloat16StreamSelect) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 16, Route::kThreeLaunchesStreamSelect);
}
TEST_P(SparqDecodeGpu, BFloat16DependentLaunches) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 18, Route::kThreeLaunchesDependent);
}
TEST_P(SparqDecodeGpu, Float32StreamSelectFallback) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 17, Route::kThreeLaunchesStreamFallback);
}

INSTANTIATE_TEST_SUITE_P(Cases, SparqDecodeGpu, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(SparqDecodeGpuLong, Positions128kFloat32) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(long_case(), fresh_seed() + 3);
}

TEST(SparqDecodeGpuLong, Positions128kBFloat16) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(long_case(), fresh_seed() + 4);
}

TEST(SparqDecodeGpuLong, Positions128kFusedBFloat16) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(long_mha_case(), fresh_seed() + 10, Route::kFused);
}

TEST(SparqDecodeGpuLong, Positions128kThreeLaunchesFloat32) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(long_mha_case(), fresh_seed() + 11, Route::kThreeLaunches);
}

// Batch 1 with 32 heads: the route the plan picks (the cluster route where its clusters are
// resident, sm_90), and the cluster route forced there.
TEST(SparqDecodeGpuBatchOne, ChosenRouteBFloat16) {
  SPARQ_REQUIRE_GPU();
  using T = __nv_bfloat16;
  const SparqCase c = batch_one_heads32_case();
  const int resident = sparq::kernels::fused_resident_clusters<T, 128>(
      sparq::kernels::fused_smem_bytes(1, 128, sparq::kernels::cluster_segment(c.capacity)));
  std::printf(
      "%d units, %d clusters of 8 resident: %s\n", c.batch * c.hq, resident,
      sparq::kernels::cluster_route_preferred<T, 128>(int64_t{c.batch} * c.hq, c.capacity, 1)
          ? "cluster route"
          : "not the cluster route");
  run_case<T>(c, fresh_seed() + 30);
}

TEST(SparqDecodeGpuBatchOne, FusedClusterFloat32) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(batch_one_heads32_case(), fresh_seed() + 31, Route::kFused);
}

// The route the plan picks for many one-head units (the block route on an H100, three
// launches on an H200), and the block route forced there.
TEST(SparqDecodeGpuManyUnits, ChosenRouteBFloat16) {
  SPARQ_REQUIRE_GPU();
  const SparqCase c = many_units_case();
  const int64_t units = int64_t{c.batch} * c.hq;
  std::printf("%lld units, %d SMs, %.1f GB/s of DRAM per SM: %s\n", static_cast<long long>(units),
              sparq::kernels::planning_sm_count(), sparq::kernels::device_dram_gbs_per_sm(),
              sparq::kernels::block_route_preferred(units, c.capacity, 1) ? "block route"
                                                                          : "three launches");
  run_case<__nv_bfloat16>(c, fresh_seed() + 20);
}

TEST(SparqDecodeGpuManyUnits, FusedBlockFloat32) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(many_units_case(), fresh_seed() + 21, Route::kFusedBlock);
}

}  // namespace
