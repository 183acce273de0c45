// The device building blocks on their own: the host-callable pieces (tie rule, ordered keys,
// softmax-state merge, interpolation) run on any machine; the block-level top-r and top-k
// selections run in small test kernels against the reference's top_indices.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"
#include "support/random.hpp"
#include "support/topk_key_sets.hpp"
#include "support/topk_test_kernels.cuh"

namespace {

using sparq::reference::top_indices;

TEST(BuildingBlocksHost, OrderedKeysPreserveFloatOrder) {
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.f, 10.f);
  std::vector<float> xs{0.f, -0.f, 1e-38f, -1e-38f, INFINITY, -INFINITY, 1.f, -1.f};
  for (int i = 0; i < 2000; ++i)
    xs.push_back(nd(gen));
  for (float a : xs)
    for (int i = 0; i < 20; ++i) {
      const float b = xs[(i * 97) % xs.size()];
      const uint32_t ka = sparq::device::float_to_ordered(a),
                     kb = sparq::device::float_to_ordered(b);
      EXPECT_EQ(a < b, ka < kb) << a << " vs " << b;
      EXPECT_EQ(a == b, ka == kb) << a << " vs " << b;
    }
  EXPECT_LT(sparq::device::float_to_ordered(INFINITY), sparq::device::kForcedKey);
  // The map inverts exactly (the single-block fused kernel reads s-hat back from the keys).
  for (float a : xs) {
    const float back = sparq::device::ordered_to_float(sparq::device::float_to_ordered(a));
    EXPECT_EQ(back, a);
    EXPECT_FALSE(std::signbit(back) && back == 0.f) << "-0 comes back as +0";
  }
}

/// Each value's rank among v by its component key, as block_top_r ranks them.
std::vector<int> ranks_by_key(const std::vector<float>& v) {
  std::vector<uint64_t> keys(v.size());
  for (size_t j = 0; j < v.size(); ++j)
    keys[j] = sparq::device::component_key(v[j], static_cast<int>(j));
  std::vector<int> ranks(v.size());
  for (size_t j = 0; j < v.size(); ++j)
    ranks[j] =
        sparq::device::rank_of_key(keys.data(), static_cast<int>(v.size()), static_cast<int>(j));
  return ranks;
}

// A selected key decodes to the s-hat sum it ranks by; the window's forced keys carry none.
TEST(BuildingBlocksHost, KeyShatDecodesRankingKeys) {
  using namespace sparq::device;
  for (const float v : {0.f, 1e-30f, 0.125f, 0.7f, 1.f}) {
    EXPECT_EQ(key_shat(ranking_key(v, 3, 100, 10)), v);
  }
  EXPECT_EQ(ranking_key(0.5f, 95, 100, 10), kForcedKey);
  EXPECT_EQ(key_shat(kForcedKey), 0.f);
}

TEST(BuildingBlocksHost, RankOfKeyFollowsTheTieRule) {
  const std::vector<float> v{3.f, 1.f, 3.f, 2.f, 1.f, 5.f};
  std::vector<double> vd(v.begin(), v.end());
  const std::vector<int> order = top_indices(vd, static_cast<int>(v.size()));
  const std::vector<int> ranks = ranks_by_key(v);
  for (int pos = 0; pos < static_cast<int>(order.size()); ++pos)
    EXPECT_EQ(ranks[order[pos]], pos);
}

TEST(BuildingBlocksHost, ComponentKeysOrderAsRanksBefore) {
  // Every pair of values that |q| sums can take (and a few they cannot), at two indices.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> xs{nan, -INFINITY, -2.f, -0.f, 0.f, 1e-40f, 1.f, 1.5f, 3e38f, INFINITY};
  for (float a : xs)
    for (float b : xs)
      for (int ia : {0, 5, 255})
        for (int ib : {0, 6, 254}) {
          if (ia == ib) continue;
          EXPECT_EQ(sparq::device::component_key(a, ia) > sparq::device::component_key(b, ib),
                    sparq::ranks_before(a, ia, b, ib))
              << a << "@" << ia << " vs " << b << "@" << ib;
        }
  // Random values with many ties: the ranks are the reference's order.
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> coarse(0, 9);
  for (int d : {64, 128, 256}) {
    std::vector<float> v(d);
    for (float& x : v)
      x = coarse(gen) == 0 ? nan : coarse(gen) * 0.25f;
    const std::vector<int> order = top_indices(std::vector<double>(v.begin(), v.end()), d);
    const std::vector<int> ranks = ranks_by_key(v);
    for (int pos = 0; pos < d; ++pos)
      ASSERT_EQ(ranks[order[pos]], pos) << "d " << d;
  }
}

TEST(BuildingBlocksHost, NanRanksBelowEveryNumber) {
  // Both NaN encodings (the host's 0xFFC00000, the device's canonical 0x7FFFFFFF) key as 1:
  // above the padding key 0, below -inf, never the forced window key.
  for (uint32_t bits : {0x7FFFFFFFu, 0xFFC00000u, 0x7FC00000u, 0xFF800001u}) {
    float nan;
    std::memcpy(&nan, &bits, sizeof(nan));
    ASSERT_TRUE(std::isnan(nan));
    EXPECT_EQ(sparq::device::float_to_ordered(nan), 1u) << std::hex << bits;
    EXPECT_LT(sparq::device::float_to_ordered(nan), sparq::device::float_to_ordered(-INFINITY));
  }
  // Ranks by key stay a permutation with NaNs in |q| (every selected slot written), and agree
  // with the reference's top_indices.
  const std::vector<float> v{NAN, 1.f, 3.f, NAN, -INFINITY, 3.f, 0.f};
  const std::vector<double> vd(v.begin(), v.end());
  const std::vector<int> order = top_indices(vd, static_cast<int>(v.size()));
  EXPECT_EQ(order, (std::vector<int>{2, 5, 1, 6, 4, 0, 3}));
  const std::vector<int> ranks = ranks_by_key(v);
  for (int pos = 0; pos < static_cast<int>(order.size()); ++pos)
    EXPECT_EQ(ranks[order[pos]], pos);
}

TEST(BuildingBlocksHost, SoftmaxStatsMergeIsExact) {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> x(1000);
  for (float& v : x)
    v = nd(gen);
  auto stats_of = [&](int lo, int hi) {
    sparq::device::SoftmaxStats s = sparq::device::empty_stats();
    for (int i = lo; i < hi; ++i)
      s = sparq::device::merge_stats(s, {x[i], 1.f});
    return s;
  };
  const sparq::device::SoftmaxStats whole = stats_of(0, 1000);
  const sparq::device::SoftmaxStats merged = sparq::device::merge_stats(
      sparq::device::merge_stats(stats_of(0, 333), stats_of(333, 334)), stats_of(334, 1000));
  EXPECT_EQ(whole.m, merged.m);
  EXPECT_NEAR(whole.l, merged.l, 1e-5 * whole.l);
  double direct = 0.0;
  for (float v : x)
    direct += std::exp(double(v) - whole.m);
  EXPECT_NEAR(whole.l, direct, 1e-5 * direct);
  const sparq::device::SoftmaxStats e =
      sparq::device::merge_stats(sparq::device::empty_stats(), sparq::device::empty_stats());
  EXPECT_EQ(e.l, 0.f);
}

TEST(BuildingBlocksHost, SoftmaxStatsFoldMatchesDirectSums) {
  // fold_stats (the fused kernels' online stats): chunks of 8 with a short last one, and
  // values past n that must not count.
  const std::vector<float> x = sparq::test::random_normal<float>(1003, 6, 4.f);
  sparq::device::SoftmaxStats s = sparq::device::empty_stats();
  for (size_t i = 0; i < x.size(); i += 8) {
    float chunk[8];
    for (int j = 0; j < 8; ++j)
      chunk[j] = i + j < x.size() ? x[i + j] : 1e30f;  // poison past the end
    s = sparq::device::fold_stats(s, chunk, static_cast<int>(x.size() - i));
  }
  EXPECT_EQ(s.m, *std::max_element(x.begin(), x.end()));
  double direct = 0.0;
  for (float v : x)
    direct += std::exp(double(v) - s.m);
  EXPECT_NEAR(s.l, direct, 1e-5 * direct);
  // Nothing to fold, or only -inf: the stats are unchanged.
  const float none[4] = {-INFINITY, -INFINITY, 5.f, 5.f};
  const sparq::device::SoftmaxStats e =
      sparq::device::fold_stats(sparq::device::empty_stats(), none, 2);
  EXPECT_EQ(e.m, -INFINITY);
  EXPECT_EQ(e.l, 0.f);
  const sparq::device::SoftmaxStats same = sparq::device::fold_stats(s, none, 0);
  EXPECT_EQ(same.m, s.m);
  EXPECT_EQ(same.l, s.l);
}

TEST(BuildingBlocksHost, MeanInterpolation) {
  EXPECT_FLOAT_EQ(sparq::device::interpolate_mean(1.f, 2.5f, 100.f, 4), 2.5f);
  EXPECT_FLOAT_EQ(sparq::device::interpolate_mean(0.f, 2.5f, 100.f, 4), 25.f);
  EXPECT_FLOAT_EQ(sparq::device::interpolate_mean(0.25f, 4.f, 8.f, 2), 0.25f * 4.f + 0.75f * 4.f);
}

TEST(BuildingBlocksHost, RowGeometryCoversARow) {
  using G1 = sparq::device::RowGeometry<__nv_bfloat16, 128>;
  static_assert(G1::kLanesPerRow == 16 && G1::kRowsPerWarp == 2 && G1::kElemsPerLane == 8);
  using G2 = sparq::device::RowGeometry<float, 256>;
  static_assert(G2::kLanesPerRow == 32 && G2::kChunksPerLane == 2 && G2::kElemsPerLane == 8);
  using G3 = sparq::device::RowGeometry<__half, 64>;
  static_assert(G3::kLanesPerRow == 8 && G3::kRowsPerWarp == 4);
  SUCCEED();
}

constexpr int kThreads = sparq::kernels::kSelectThreads;

__global__ void topk_kernel(const uint32_t* keys, int n, int count, int* out, int* written) {
  sparq::test::block_topk<kThreads>(keys, n, count, out, written);
}

TEST(BuildingBlocksGpu, BlockTopKMatchesReferenceWithTies) {
  SPARQ_REQUIRE_GPU();
  std::mt19937 gen(::testing::UnitTest::GetInstance()->random_seed());
  struct Shape {
    int n, count, distinct;
  };
  for (const Shape sh : {Shape{1, 1, 5}, Shape{7, 3, 3}, Shape{512, 100, 1000000},
                         Shape{513, 513, 50}, Shape{5000, 1, 100}, Shape{100000, 6250, 1000000},
                         Shape{131072, 8192, 64}, Shape{3000, 1500, 1}}) {
    SCOPED_TRACE("n " + std::to_string(sh.n) + " count " + std::to_string(sh.count));
    std::uniform_int_distribution<uint32_t> dist(0, sh.distinct - 1);
    std::vector<uint32_t> keys(sh.n);
    for (auto& k : keys)
      k = dist(gen) * 2654435761u % 0xFFFFFFF0u;  // spread over all bits
    std::vector<double> as_double(keys.begin(), keys.end());
    std::vector<int> want = top_indices(as_double, sh.count);
    std::sort(want.begin(), want.end());
    sparq::test::DeviceBuffer<uint32_t> dk(keys);
    sparq::test::DeviceBuffer<int> dout(sh.count), dw(1);
    dout.poison();
    topk_kernel<<<1, kThreads>>>(dk.get(), sh.n, sh.count, dout.get(), dw.get());
    CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_EQ(dw.download()[0], sh.count);
    EXPECT_EQ(dout.download(), want);
  }
}

// The cluster-wide top-k (eight blocks of 256 threads, as select_cluster_kernel runs it): block
// r holds the segment of positions the kernels give it, in its own shared memory.
constexpr int kClusterThreads = sparq::kernels::kClusterThreads;

__global__ void __launch_bounds__(kClusterThreads)
    cluster_topk_kernel(const uint32_t* keys, int len, int count, int* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(16) uint32_t s_keys[];
  cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  sparq::test::cluster_topk<kClusterThreads>(cluster, keys, len, count, out, s_keys);
#endif
}

// Every way the radix passes stop (a digit taken whole, the last pass, the finish that ranks
// the few keys left in play, at exactly kFinishKeys and one more), one block and a cluster.
TEST(BuildingBlocksGpu, TopKPassesAndFinishMatchReference) {
  SPARQ_REQUIRE_GPU();
  const bool clusters = sparq::kernels::device_has_clusters();
  for (const auto& set :
       sparq::test::topk_key_sets(::testing::UnitTest::GetInstance()->random_seed())) {
    SCOPED_TRACE(set.name);
    const int n = static_cast<int>(set.keys.size());
    std::vector<int> want =
        top_indices(std::vector<double>(set.keys.begin(), set.keys.end()), set.count);
    std::sort(want.begin(), want.end());
    sparq::test::DeviceBuffer<uint32_t> dk(set.keys);
    sparq::test::DeviceBuffer<int> dout(set.count), dw(1);
    dout.poison();
    topk_kernel<<<1, kThreads>>>(dk.get(), n, set.count, dout.get(), dw.get());
    CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_EQ(dw.download()[0], set.count);
    EXPECT_EQ(dout.download(), want) << "one block";
    if (!clusters) continue;
    dout.poison();
    const size_t smem = sizeof(uint32_t) * sparq::kernels::cluster_segment(n);
    CUDA_ASSERT(sparq::kernels::launch_ex(cluster_topk_kernel, dim3(8), dim3(kClusterThreads), smem,
                                          nullptr, 8, false, dk.get(), n, set.count, dout.get()));
    CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_EQ(dout.download(), want) << "cluster of 8";
  }
}

__global__ void topr_kernel(const float* absq, int d, int r, int* out) {
  __shared__ uint64_t s_keys[256];
  __shared__ int s_comp[256];
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    s_keys[j] = sparq::device::component_key(absq[j], j);
  __syncthreads();
  sparq::device::block_top_r(s_keys, d, r, s_comp);
  __syncthreads();
  for (int i = threadIdx.x; i < r; i += blockDim.x)
    out[i] = s_comp[i];
}

TEST(BuildingBlocksGpu, BlockTopRMatchesReference) {
  SPARQ_REQUIRE_GPU();
  std::mt19937 gen(::testing::UnitTest::GetInstance()->random_seed() + 1);
  for (int d : {64, 128, 256})
    for (int r : {1, 8, 13, d / 2, d}) {
      SCOPED_TRACE("d " + std::to_string(d) + " r " + std::to_string(r));
      std::uniform_int_distribution<int> coarse(0, 20);  // coarse values: plenty of ties
      std::vector<float> absq(d);
      for (float& a : absq)
        a = coarse(gen) * 0.5f;
      const std::vector<int> want = top_indices(std::vector<double>(absq.begin(), absq.end()), r);
      sparq::test::DeviceBuffer<float> da(absq);
      sparq::test::DeviceBuffer<int> dout(r);
      dout.poison();
      topr_kernel<<<1, 128>>>(da.get(), d, r, dout.get());
      CUDA_ASSERT(cudaDeviceSynchronize());
      EXPECT_EQ(dout.download(), want);
    }
}

}  // namespace
