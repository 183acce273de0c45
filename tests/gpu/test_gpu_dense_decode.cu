// Dense (split-KV) decode attention on the GPU against the CPU reference: element types, head
// dims, group sizes, odd and differing lengths, poisoned outputs and rows past each length.
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

struct DenseCase {
  std::string name;
  int batch, hq, hkv, d, capacity;
  std::vector<int> lengths;
};

std::vector<DenseCase> cases() {
  return {
      {"mha_d128", 2, 4, 4, 128, 3000, {3000, 1234}},
      {"gqa4_d64", 3, 16, 4, 64, 777, {1, 776, 777}},
      {"gqa8_d256", 2, 16, 2, 256, 1025, {1025, 17}},
      {"many_short",
       16,
       2,
       1,
       128,
       300,
       {1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 255, 256, 300}},
      {"long", 1, 8, 8, 128, 40000, {39999}},
      {"gqa4_batch32", 32, 32, 8, 128, 1024, std::vector<int>(32, 1024)},
      {"gqa3", 2, 6, 2, 128, 2000, {2000, 1999}},
      {"gqa16_long", 1, 32, 2, 64, 50000, {50000}},
  };
}

/// `fixed_splits` > 0: through launch_dense with a plan of exactly that many splits (what
/// BM_DenseDecodeSplits times), including more splits than rows.
template <typename T>
void run_dense(const DenseCase& c, uint64_t seed, int fixed_splits = 0) {
  SCOPED_TRACE("case " + c.name + ", seed " + std::to_string(seed) + ", type " +
               sparq::dtype_name(sparq::ElementTraits<T>::kDType) + ", splits " +
               std::to_string(fixed_splits));
  sparq::DecodeProblem p;
  p.batch = c.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.head_dim = c.d;
  p.capacity = c.capacity;
  sparq::test::HostKVCache<T> host(p);
  host.fill_random(c.lengths, seed);
  host.poison_tail(NAN);  // rows past each length must never be read into the result
  const std::vector<T> q =
      sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, seed + 1);
  std::vector<double> ref(q.size());
  SPARQ_ASSERT_OK(
      sparq::reference::dense_decode(p, q.data(), host.view(), c.lengths.data(), ref.data()));
  sparq::test::DeviceKVCache<T> dev(host);
  sparq::test::DeviceBuffer<T> dq(q), dout(q.size());
  sparq::test::DeviceBuffer<int> dlen(c.lengths);
  size_t ws = 0;
  SPARQ_ASSERT_OK(sparq::dense_decode_workspace_size<T>(p, &ws));
  if (fixed_splits > 0) ws = sparq::kernels::DensePlan<T>(p, nullptr, fixed_splits).bytes;
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  dws.poison();
  dout.poison();
  sparq::DenseDecodeParams<T> a;
  a.problem = p;
  a.q = dq.get();
  a.cache = dev.view();
  a.lengths = dlen.get();
  a.out = dout.get();
  if (fixed_splits > 0)
    SPARQ_ASSERT_OK(sparq::kernels::launch_dense(
        a, sparq::kernels::DensePlan<T>(p, dws.get(), fixed_splits), ws, nullptr));
  else
    SPARQ_ASSERT_OK(sparq::dense_decode(a, dws.get(), ws, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<double> out = sparq::test::to_double(dout.download());
  ASSERT_EQ(sparq::test::count_non_finite(out), 0u) << "output elements not written (or NaN)";
  const double err = sparq::test::relative_l2(out, ref);
  EXPECT_LE(err, sparq::test::output_tolerance<T>()) << "relative L2 error " << err;
}

uint64_t fresh_seed() {
  return ::testing::UnitTest::GetInstance()->random_seed() * 6151ULL + 3;
}

class DenseDecodeGpu : public ::testing::TestWithParam<DenseCase> {};

TEST_P(DenseDecodeGpu, Float32MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_dense<float>(GetParam(), fresh_seed());
}
TEST_P(DenseDecodeGpu, BFloat16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_dense<__nv_bfloat16>(GetParam(), fresh_seed() + 1);
}
TEST_P(DenseDecodeGpu, Float16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_dense<__half>(GetParam(), fresh_seed() + 2);
}

// Any split count gives the reference's output: one split, an odd count, and more splits than
// some sequences have rows (empty splits merge as nothing).
TEST(DenseDecodeGpuSplits, FixedSplitCountsMatchReference) {
  SPARQ_REQUIRE_GPU();
  for (const DenseCase& c : cases()) {
    if (c.name != "many_short" && c.name != "mha_d128" && c.name != "gqa4_d64") continue;
    for (int splits : {1, 3, 64})
      run_dense<__nv_bfloat16>(c, fresh_seed() + 7, splits);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DenseDecodeGpu, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
