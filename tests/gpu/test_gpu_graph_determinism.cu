// A decode step captured in a CUDA graph and replayed gives the launch's output, and two runs
// on the same input are bitwise identical (SparQ and dense; the cluster kernels many times).
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

using T = __nv_bfloat16;

struct Step {
  sparq::DecodeProblem p;
  sparq::SparqConfig cfg;
  std::vector<int> lengths{3000, 1777, 64, 2500};
  sparq::test::HostKVCache<T> host;
  std::vector<T> q;
  Step() : p(make_problem()), host(p) {
    cfg.r = 16;
    cfg.k = 256;
    cfg.local_window = 16;
    host.fill_random(lengths, 1234);
    q = sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, 99);
  }
  static sparq::DecodeProblem make_problem() {
    sparq::DecodeProblem p;
    p.batch = 4;
    p.num_q_heads = 8;
    p.num_kv_heads = 2;
    p.head_dim = 128;
    p.capacity = 3000;
    return p;
  }
};

/// A Step's inputs on the device and an output buffer, with the SparQ launch's parameters.
struct DeviceStep {
  sparq::test::DeviceKVCache<T> cache;
  sparq::test::DeviceBuffer<T> q, out;
  sparq::test::DeviceBuffer<int> lengths;
  sparq::SparqDecodeParams<T> params;
  explicit DeviceStep(const Step& st)
      : cache(st.host), q(st.q), out(st.q.size()), lengths(st.lengths) {
    params = {st.p, st.cfg, q.get(), cache.view(), lengths.get(), out.get()};
  }
};

bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST(GraphAndDeterminism, SparqReplayAndRepeatAreBitwiseIdentical) {
  SPARQ_REQUIRE_GPU();
  Step st;
  DeviceStep d(st);
  const sparq::SparqDecodeParams<T>& a = d.params;
  sparq::test::DeviceBuffer<T>& dout = d.out;
  size_t ws = 0;
  SPARQ_ASSERT_OK(sparq::sparq_decode_workspace_size<T>(st.p, st.cfg, &ws));
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  dout.poison();
  SPARQ_ASSERT_OK(sparq::sparq_decode(a, dws.get(), ws, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> first = dout.download();
  dout.poison();
  SPARQ_ASSERT_OK(sparq::sparq_decode(a, dws.get(), ws, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(bitwise_equal(first, dout.download())) << "two runs differ";

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const sparq::Status s = sparq::sparq_decode(a, dws.get(), ws, stream);
  CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  SPARQ_ASSERT_OK(s);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) {
    dout.poison();
    CUDA_ASSERT(cudaGraphLaunch(exec, stream));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(bitwise_equal(first, dout.download())) << "graph replay " << i << " differs";
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Dependent launches (and the streaming selection) change when kernels start, not what they
// compute: back-to-back steps without a sync between them, and two steps captured in one
// graph, give the three plain launches' output bit for bit.
TEST(GraphAndDeterminism, SparqDependentLaunchesMatchPlainLaunches) {
  SPARQ_REQUIRE_GPU();
  if (!sparq::kernels::device_has_clusters()) GTEST_SKIP() << "dependent launches need sm_90";
  using sparq::kernels::SelectRoute;
  using sparq::kernels::SparqPlan;
  using sparq::kernels::SparqRoute;
  Step st;
  DeviceStep d(st);
  const sparq::SparqDecodeParams<T>& a = d.params;
  sparq::test::DeviceBuffer<T>& dout = d.out;
  const size_t ws = SparqPlan<T>(st.p, st.cfg, nullptr, SparqRoute::kThreeLaunches).bytes;
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  dws.poison();
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  for (const bool streaming : {false, true}) {
    SCOPED_TRACE(streaming ? "streaming selection" : "selection by the rule");
    const std::optional<SelectRoute> select =
        streaming ? std::optional<SelectRoute>(SelectRoute::kStream) : std::nullopt;
    SparqPlan<T> dep(st.p, st.cfg, dws.get(), SparqRoute::kThreeLaunches, select);
    dep.dependent_launch = false;
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_three<T, 128>(a, dep, stream)));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    const std::vector<T> first = dout.download();
    dep.dependent_launch = true;
    dws.poison();  // the scores launch clears the attend counters itself
    dout.poison();
    for (int i = 0; i < 3; ++i)
      SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_three<T, 128>(a, dep, stream)));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(bitwise_equal(first, dout.download())) << "three back-to-back steps";
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const sparq::Status s1 = sparq::kernels::launch_sparq_three<T, 128>(a, dep, stream);
    const sparq::Status s2 = sparq::kernels::launch_sparq_three<T, 128>(a, dep, stream);
    CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
    SPARQ_ASSERT_OK(s1);
    SPARQ_ASSERT_OK(s2);
    CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 2; ++i) {
      dout.poison();
      CUDA_ASSERT(cudaGraphLaunch(exec, stream));
      CUDA_ASSERT(cudaStreamSynchronize(stream));
      EXPECT_TRUE(bitwise_equal(first, dout.download())) << "graph replay " << i;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaStreamDestroy(stream);
}

// The kernels of a dependent chain must have been compiled with their wait (sm_90 code): a
// build for an older architecture, JIT-compiled here, would start early. The switch
// (dependent_launch_supported) asks a probe kernel built with the same flags; the chain's
// kernels must agree with it.
TEST(GraphAndDeterminism, DependentChainKernelsWereCompiledWithTheirWait) {
  SPARQ_REQUIRE_GPU();
  if (!sparq::kernels::device_has_clusters()) GTEST_SKIP() << "dependent launches need sm_90";
  namespace k = sparq::kernels;
  EXPECT_TRUE(k::dependent_launch_supported());
  EXPECT_TRUE(k::kernel_waits_for_prior_grids(k::score_kernel<__nv_bfloat16, 128>));
  EXPECT_TRUE(k::kernel_waits_for_prior_grids(k::select_kernel<true, k::kSelectThreads>));
  EXPECT_TRUE(k::kernel_waits_for_prior_grids(k::select_stream_kernel<k::kStreamThreads>));
  EXPECT_TRUE(k::kernel_waits_for_prior_grids(k::attend_kernel<__nv_bfloat16, 128, false>));
  EXPECT_TRUE(k::kernel_waits_for_prior_grids(k::kv_append_kernel<__nv_bfloat16>));
}

// The cluster kernels pass histograms, softmax stats and partial states between the blocks of
// a cluster through distributed shared memory, across barriers that order shared memory only
// (device::cluster_sync_shared). Were an ordering missing, a block would now and then read
// another's histogram before it was complete and select other positions. Many launches of the
// fused cluster kernel and of the cluster selection (both block sizes) on one input whose K
// rows repeat with a period of 7, so that keys tie exactly and the threshold falls inside runs
// of equal keys that span every block of a cluster (the counts of lower ranks' equal keys
// decide each block's share): every launch's positions and output bitwise the first's.
TEST(GraphAndDeterminism, ClusterKernelsRepeatBitwiseWithTies) {
  SPARQ_REQUIRE_GPU();
  namespace k = sparq::kernels;
  if (!k::device_has_clusters()) GTEST_SKIP() << "the cluster kernels need sm_90";
  sparq::DecodeProblem p;
  p.batch = 2;
  p.num_q_heads = p.num_kv_heads = 16;
  p.head_dim = 128;
  p.capacity = 9000;
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 600;
  cfg.local_window = 16;
  const std::vector<int> lengths{9000, 5003};
  constexpr int kPeriod = 7, kRepeats = 40;
  const size_t rows = size_t(p.batch) * p.num_kv_heads * p.capacity;
  std::vector<T> K = sparq::test::random_normal<T>(rows * p.head_dim, 4321);
  const std::vector<T> V = sparq::test::random_normal<T>(rows * p.head_dim, 4322);
  for (size_t row = 0; row < rows; ++row) {
    const size_t s = row % p.capacity;
    if (s >= kPeriod)
      std::copy_n(K.begin() + (row - s + s % kPeriod) * p.head_dim, p.head_dim,
                  K.begin() + row * p.head_dim);
  }
  sparq::test::HostKVCache<T> host(p);
  host.assign(K, V, lengths);
  const std::vector<T> q =
      sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, 4323);
  sparq::test::DeviceKVCache<T> dev(host);
  sparq::test::DeviceBuffer<T> dq(q), dout(q.size());
  sparq::test::DeviceBuffer<int> dlen(lengths);
  const sparq::SparqDecodeParams<T> a{p, cfg, dq.get(), dev.view(), dlen.get(), dout.get()};
  const size_t ws = k::SparqPlan<T>(p, cfg, nullptr, k::SparqRoute::kThreeLaunches).bytes;
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  for (const int variant : {0, 1, 2}) {
    const bool fused = variant == 0;
    SCOPED_TRACE(fused          ? "fused cluster kernel"
                 : variant == 1 ? "cluster selection (three launches)"
                                : "cluster selection, kClusterThreadsWide threads");
    if (fused ? !k::fused_fits<T, 128>(p.capacity, 1) : !k::cluster_select_fits(p.capacity))
      continue;
    // The fused launcher takes the three launches' plan: positions at the same offsets.
    k::SparqPlan<T> plan(
        p, cfg, dws.get(), k::SparqRoute::kThreeLaunches,
        fused ? std::nullopt : std::optional<k::SelectRoute>(k::SelectRoute::kCluster));
    plan.select_wide = variant == 2;
    auto launch = [&] {
      return fused ? k::launch_sparq_fused<T, 128>(a, plan, nullptr)
                   : k::launch_sparq_three<T, 128>(a, plan, nullptr);
    };
    const size_t n_idx = size_t(p.batch) * plan.units.per_batch * plan.kmax;
    dws.poison();
    dout.poison();
    SPARQ_ASSERT_OK(launch());
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<T> first = dout.download();
    const std::vector<int> first_idx = sparq::test::download_raw(plan.indices, n_idx);
    int differ = 0;
    for (int i = 0; i < kRepeats; ++i) {
      dout.poison();
      SPARQ_ASSERT_OK(launch());
      CUDA_ASSERT(cudaDeviceSynchronize());
      differ += !bitwise_equal(first, dout.download()) ||
                sparq::test::download_raw(plan.indices, n_idx) != first_idx;
    }
    EXPECT_EQ(differ, 0) << "of " << kRepeats << " launches, " << differ
                         << " differ from the first";
  }
}

TEST(GraphAndDeterminism, DenseReplayAndRepeatAreBitwiseIdentical) {
  SPARQ_REQUIRE_GPU();
  Step st;
  sparq::test::DeviceKVCache<T> dev(st.host);
  sparq::test::DeviceBuffer<T> dq(st.q), dout(st.q.size());
  sparq::test::DeviceBuffer<int> dlen(st.lengths);
  size_t ws = 0;
  SPARQ_ASSERT_OK(sparq::dense_decode_workspace_size<T>(st.p, &ws));
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  sparq::DenseDecodeParams<T> a;
  a.problem = st.p;
  a.q = dq.get();
  a.cache = dev.view();
  a.lengths = dlen.get();
  a.out = dout.get();
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  SPARQ_ASSERT_OK(sparq::dense_decode(a, dws.get(), ws, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> first = dout.download();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const sparq::Status s = sparq::dense_decode(a, dws.get(), ws, stream);
  CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  SPARQ_ASSERT_OK(s);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  dout.poison();
  CUDA_ASSERT(cudaGraphLaunch(exec, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(bitwise_equal(first, dout.download())) << "graph replay differs";
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
