// The published implementation's outputs (tests/data/seed_sparq) through the GPU path, fp32.
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"
#include "support/json.hpp"

namespace {

TEST(SeedVectorsGpu, Float32PathMatchesPublishedOutput) {
  SPARQ_REQUIRE_GPU();
  const std::string dir = sparq::test::test_data_dir() + "/seed_sparq";
  const std::vector<std::string> names = sparq::test::list_seed_cases(dir);
  ASSERT_FALSE(names.empty()) << "no seed cases in " << dir;
  for (const std::string& name : names) {
    SCOPED_TRACE("case " + name);
    const sparq::test::SeedCase c = sparq::test::load_seed_case(dir, name);
    const sparq::DecodeProblem p = sparq::test::seed_problem(c);
    const sparq::SparqConfig cfg = sparq::test::seed_config(c);
    sparq::test::HostKVCache<float> host(p);
    host.assign(c.K, c.V, c.lens);
    sparq::test::set_exact_vsum(host);
    sparq::test::DeviceKVCache<float> dev(host);
    sparq::test::DeviceBuffer<float> dq(c.q), dout(c.q.size());
    sparq::test::DeviceBuffer<int> dlen(c.lens);
    size_t ws = 0;
    SPARQ_ASSERT_OK(sparq::sparq_decode_workspace_size<float>(p, cfg, &ws));
    sparq::test::DeviceBuffer<unsigned char> dws(ws);
    dout.poison();
    sparq::SparqDecodeParams<float> a;
    a.problem = p;
    a.config = cfg;
    a.q = dq.get();
    a.cache = dev.view();
    a.lengths = dlen.get();
    a.out = dout.get();
    SPARQ_ASSERT_OK(sparq::sparq_decode(a, dws.get(), ws, nullptr));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<double> out = sparq::test::to_double(dout.download());
    const double err = sparq::test::relative_l2(out, c.y);
    EXPECT_LE(err, 1e-5) << "relative L2 error " << err;
  }
}

}  // namespace
