// reference::append_kv: appending tokens one at a time or all at once leaves K, Kt, V and Vsum
// bitwise identical, for every element type; rows are written to both K layouts.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"
#include "support/host_cache.hpp"
#include "support/random.hpp"

namespace {

using sparq::DecodeProblem;
using sparq::Status;
using sparq::test::HostKVCache;

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
class AppendTest : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, __half, __nv_bfloat16>;
TYPED_TEST_SUITE(AppendTest, ElementTypes);

TYPED_TEST(AppendTest, OneAtATimeEqualsAllAtOnce) {
  using T = TypeParam;
  for (uint64_t seed : {1u, 2u, 3u}) {
    DecodeProblem p;
    p.batch = 3;
    p.num_q_heads = 8;
    p.num_kv_heads = 2;
    p.head_dim = 64;
    p.capacity = 45;  // not a multiple of 8: Kt rows are padded
    SCOPED_TRACE("seed=" + std::to_string(seed));
    sparq::test::Rng rng(seed);
    const std::vector<int> start = sparq::test::random_lengths(p.batch, 0, 20, rng);
    const int n = 25;
    const size_t tok = static_cast<size_t>(p.num_kv_heads) * p.head_dim;
    const std::vector<T> nk = sparq::test::random_normal<T>(p.batch * tok * n, rng);
    const std::vector<T> nv = sparq::test::random_normal<T>(p.batch * tok * n, rng);

    HostKVCache<T> bulk(p), single(p);
    // Same prefix in both.
    bulk.fill_random(start, seed + 50);
    single.fill_random(start, seed + 50);
    ASSERT_EQ(sparq::reference::append_kv(p, bulk.view(), start.data(), n, nk.data(), nv.data()),
              Status::kSuccess);
    std::vector<int> lens = start;
    for (int t = 0; t < n; ++t) {
      std::vector<T> k1(p.batch * tok), v1(p.batch * tok);
      for (int b = 0; b < p.batch; ++b)
        for (int h = 0; h < p.num_kv_heads; ++h)
          for (int j = 0; j < p.head_dim; ++j) {
            const size_t src =  // token-major [B, n, Hkv, d]
                ((static_cast<size_t>(b) * n + t) * p.num_kv_heads + h) * p.head_dim + j;
            const size_t dst = (static_cast<size_t>(b) * p.num_kv_heads + h) * p.head_dim + j;
            k1[dst] = nk[src];
            v1[dst] = nv[src];
          }
      ASSERT_EQ(sparq::reference::append_kv(p, single.view(), lens.data(), 1, k1.data(), v1.data()),
                Status::kSuccess);
      for (int& l : lens)
        ++l;
    }
    EXPECT_TRUE(bitwise_equal(bulk.k, single.k));
    EXPECT_TRUE(bitwise_equal(bulk.kt, single.kt));
    EXPECT_TRUE(bitwise_equal(bulk.v, single.v));
    EXPECT_TRUE(bitwise_equal(bulk.vsum, single.vsum));

    // The appended rows are where they belong, in both layouts, and Vsum is their float sum.
    const auto c = bulk.view();
    for (int b = 0; b < p.batch; ++b)
      for (int h = 0; h < p.num_kv_heads; ++h) {
        for (int t = 0; t < n; ++t)
          for (int j = 0; j < p.head_dim; ++j) {
            const size_t src =  // token-major [B, n, Hkv, d]
                ((static_cast<size_t>(b) * n + t) * p.num_kv_heads + h) * p.head_dim + j;
            const int s = start[b] + t;
            EXPECT_EQ(sparq::to_float(c.k_row(b, h, s)[j]), sparq::to_float(nk[src]));
            EXPECT_EQ(sparq::to_float(c.kt_row(b, h, j)[s]), sparq::to_float(nk[src]));
            EXPECT_EQ(sparq::to_float(c.v_row(b, h, s)[j]), sparq::to_float(nv[src]));
          }
        for (int j = 0; j < p.head_dim; ++j) {
          float sum = 0.0f;
          for (int s = 0; s < start[b] + n; ++s)
            sum += sparq::to_float(c.v_row(b, h, s)[j]);
          EXPECT_EQ(c.vsum_row(b, h)[j], sum);
        }
      }
  }
}

TEST(Append, DoesNotTouchOtherRows) {
  DecodeProblem p;
  p.batch = 2;
  p.num_q_heads = 2;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.capacity = 16;
  HostKVCache<float> cache(p);
  const std::vector<int> lens = {3, 10};
  cache.fill_random(lens, 77);
  const HostKVCache<float> before = cache;
  const std::vector<float> nk(2 * 2 * 2 * 64, 9.0f), nv(nk.size(), -9.0f);
  ASSERT_EQ(sparq::reference::append_kv(p, cache.view(), lens.data(), 2, nk.data(), nv.data()),
            Status::kSuccess);
  const auto c = cache.view();
  const auto old = make_packed_cache_view(
      p, const_cast<float*>(before.k.data()), const_cast<float*>(before.kt.data()),
      const_cast<float*>(before.v.data()), const_cast<float*>(before.vsum.data()));
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.num_kv_heads; ++h)
      for (int s = 0; s < p.capacity; ++s) {
        const bool appended = s >= lens[b] && s < lens[b] + 2;
        for (int j = 0; j < p.head_dim; ++j) {
          if (appended) {
            EXPECT_EQ(c.k_row(b, h, s)[j], 9.0f);
            EXPECT_EQ(c.v_row(b, h, s)[j], -9.0f);
          } else {
            EXPECT_EQ(c.k_row(b, h, s)[j], old.k_row(b, h, s)[j]);
            EXPECT_EQ(c.kt_row(b, h, j)[s], old.kt_row(b, h, j)[s]);
            EXPECT_EQ(c.v_row(b, h, s)[j], old.v_row(b, h, s)[j]);
          }
        }
      }
}

}  // namespace
