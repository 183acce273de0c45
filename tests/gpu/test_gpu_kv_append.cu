// KV append on the GPU against the reference append: decode (1 token) and prefill (n tokens),
// bitwise equal K, Kt, V and Vsum, lengths advanced, nothing written past the capacity; also
// as programmatic dependent launches.
#include <cstring>
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

template <typename U>
bool same_bits(const std::vector<U>& a, const std::vector<U>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(U)) == 0;
}

template <typename T>
void run_append(int n, uint64_t seed, bool dependent = false) {
  SCOPED_TRACE("n = " + std::to_string(n) + ", seed " + std::to_string(seed));
  sparq::DecodeProblem p;
  p.batch = 3;
  p.num_q_heads = 8;
  p.num_kv_heads = 4;
  p.head_dim = 128;
  p.capacity = 700;
  const std::vector<int> lengths{0, 123, 700 - n};
  sparq::test::HostKVCache<T> host(p);
  host.fill_random(lengths, seed);
  const size_t new_elems = size_t(p.batch) * n * p.num_kv_heads * p.head_dim;
  const std::vector<T> nk = sparq::test::random_normal<T>(new_elems, seed + 1);
  const std::vector<T> nv = sparq::test::random_normal<T>(new_elems, seed + 2);

  sparq::test::DeviceKVCache<T> dev(host);
  sparq::test::DeviceBuffer<T> dk(nk), dv(nv);
  sparq::test::DeviceBuffer<int> dlen(lengths);
  sparq::KVAppendParams<T> a;
  a.problem = p;
  a.cache = dev.view();
  a.lengths = dlen.get();
  a.num_new = n;
  a.new_k = dk.get();
  a.new_v = dv.get();
  a.dependent_launch = dependent;
  SPARQ_ASSERT_OK(sparq::kv_append(a, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());

  SPARQ_ASSERT_OK(
      sparq::reference::append_kv(p, host.view(), lengths.data(), n, nk.data(), nv.data()));
  EXPECT_TRUE(same_bits(host.k, dev.k.download())) << "K differs";
  EXPECT_TRUE(same_bits(host.kt, dev.kt.download())) << "K transposed differs";
  EXPECT_TRUE(same_bits(host.v, dev.v.download())) << "V differs";
  EXPECT_TRUE(same_bits(host.vsum, dev.vsum.download())) << "V sum differs";
  const std::vector<int> after = dlen.download();
  for (int b = 0; b < p.batch; ++b)
    EXPECT_EQ(after[b], lengths[b] + n);
}

TEST(KVAppendGpu, DecodeOneTokenBFloat16) {
  SPARQ_REQUIRE_GPU();
  run_append<__nv_bfloat16>(1, 11);
}
// The append and the length update as programmatic dependent launches (sm_90; elsewhere the
// flag is ignored): the same result.
TEST(KVAppendGpu, DependentLaunchesGiveTheSameResult) {
  SPARQ_REQUIRE_GPU();
  run_append<__nv_bfloat16>(1, 14, true);
  run_append<float>(33, 15, true);
}
TEST(KVAppendGpu, PrefillFloat32) {
  SPARQ_REQUIRE_GPU();
  run_append<float>(77, 12);
}
TEST(KVAppendGpu, PrefillFloat16) {
  SPARQ_REQUIRE_GPU();
  run_append<__half>(300, 13);
}

TEST(KVAppendGpu, RowsPastCapacityAreDropped) {
  SPARQ_REQUIRE_GPU();
  using T = float;
  sparq::DecodeProblem p;
  p.batch = 1;
  p.num_q_heads = 1;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  p.capacity = 10;
  sparq::test::HostKVCache<T> host(p);
  host.fill_random({8}, 5);
  sparq::test::DeviceKVCache<T> dev(host);
  const std::vector<T> nk = sparq::test::random_normal<T>(4 * 64, 6);
  sparq::test::DeviceBuffer<T> dk(nk), dv(nk);
  sparq::test::DeviceBuffer<int> dlen(std::vector<int>{8});
  sparq::KVAppendParams<T> a;
  a.problem = p;
  a.cache = dev.view();
  a.lengths = dlen.get();
  a.num_new = 4;  // two fit, two would overflow
  a.new_k = dk.get();
  a.new_v = dv.get();
  SPARQ_ASSERT_OK(sparq::kv_append(a, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<T> k = dev.k.download();
  for (int s = 8; s < 10; ++s)
    for (int j = 0; j < 64; ++j)
      EXPECT_EQ(k[s * 64 + j], nk[(s - 8) * 64 + j]);
  EXPECT_EQ(dlen.download()[0], 10);
}

}  // namespace
