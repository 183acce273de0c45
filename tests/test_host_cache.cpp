// The host KV-cache helper of tests/support: sizes, layout consistency and Vsum.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"
#include "support/host_cache.hpp"

namespace {

template <typename T>
class HostCacheTest : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, __half, __nv_bfloat16>;
TYPED_TEST_SUITE(HostCacheTest, ElementTypes);

TYPED_TEST(HostCacheTest, LayoutsAgreeAndVsumIsSumOfValidRows) {
  using T = TypeParam;
  sparq::DecodeProblem p;
  p.batch = 2;
  p.num_q_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.capacity = 21;
  sparq::test::HostKVCache<T> cache(p);
  const sparq::KVCacheSizes sz = sparq::packed_cache_sizes(p);
  EXPECT_EQ(static_cast<int64_t>(cache.k.size()), sz.k);
  EXPECT_EQ(static_cast<int64_t>(cache.kt.size()), sz.kt);
  EXPECT_EQ(static_cast<int64_t>(cache.v.size()), sz.v);
  EXPECT_EQ(static_cast<int64_t>(cache.vsum.size()), sz.vsum);
  const std::vector<int> lens = {21, 6};
  const uint64_t seed = 4242;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  cache.fill_random(lens, seed);
  EXPECT_EQ(cache.lengths, lens);
  EXPECT_EQ(sparq::validate_strides(p, cache.view()), sparq::Status::kSuccess);
  const auto c = cache.view();
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.num_kv_heads; ++h) {
      for (int s = 0; s < p.capacity; ++s)
        for (int j = 0; j < p.head_dim; ++j)
          EXPECT_EQ(sparq::to_float(c.k_row(b, h, s)[j]), sparq::to_float(c.kt_row(b, h, j)[s]));
      for (int j = 0; j < p.head_dim; ++j) {
        float sum = 0.0f;
        for (int s = 0; s < lens[b]; ++s)
          sum += sparq::to_float(c.v_row(b, h, s)[j]);
        EXPECT_EQ(c.vsum_row(b, h)[j], sum);
      }
    }
  // Same seed, same data.
  sparq::test::HostKVCache<T> again(p);
  again.fill_random(lens, seed);
  EXPECT_EQ(0, std::memcmp(again.k.data(), cache.k.data(), cache.k.size() * sizeof(T)));
  // Poisoning touches only rows past each length.
  cache.poison_tail(std::nanf(""));
  for (int h = 0; h < p.num_kv_heads; ++h) {
    EXPECT_FALSE(std::isnan(sparq::to_float(c.k_row(1, h, 5)[0])));
    EXPECT_TRUE(std::isnan(sparq::to_float(c.k_row(1, h, 6)[0])));
    EXPECT_TRUE(std::isnan(sparq::to_float(c.kt_row(1, h, 3)[20])));
    EXPECT_FALSE(std::isnan(sparq::to_float(c.v_row(0, h, 20)[0])));
  }
}

}  // namespace
