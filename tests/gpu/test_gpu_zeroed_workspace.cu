// A workspace zeroed once needs no memset before any later decode launch (workspace_zeroed):
// every route leaves its counters zero, in the region at the workspace's start that all
// plans share. Checked by running dense, the three launches and the dataflow route in turn on
// one such workspace (the rest of it poisoned), each giving the output of a launch with its
// memset bit for bit and leaving the region zero; also back to back, as dependent launches
// and in a captured graph.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

using T = __nv_bfloat16;
using sparq::kernels::SparqPlan;
using sparq::kernels::SparqRoute;

struct Case {
  sparq::DecodeProblem p;
  sparq::SparqConfig cfg;
  std::vector<int> lengths;
  sparq::test::HostKVCache<T> host;
  std::vector<T> q;
  Case(int batch, int hq, int hkv, int capacity, std::vector<int> lens)
      : p{batch, hq, hkv, /*head_dim=*/128, capacity}, lengths(std::move(lens)), host(p) {
    cfg.r = 16;
    cfg.k = 256;
    cfg.local_window = 16;
    host.fill_random(lengths, 4321);
    q = sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, 77);
  }
};

/// One launch of the sequence: dense, or SparQ on a forced route (dataflow with a tuning).
struct Launch {
  std::string name;
  bool dense = false;
  SparqRoute route = SparqRoute::kThreeLaunches;
  std::optional<sparq::FlowTuning> tuning;
  bool dependent = false;
  bool per_query_head = false;  // units of one query head each: other counters in the region
};

class ZeroedWorkspace {
 public:
  explicit ZeroedWorkspace(const Case& c)
      : c_(c), cache_(c.host), q_(c.q), out_(c.q.size()), lengths_(c.lengths) {
    sparq::kernels::DensePlan<T> dense(c.p, nullptr);
    bytes_ = dense.bytes;
    for (const bool per_head : {false, true})
      for (SparqRoute r : {SparqRoute::kThreeLaunches, SparqRoute::kDataflow})
        bytes_ = std::max(
            bytes_, SparqPlan<T>(c.p, config(per_head), nullptr, r, std::nullopt, hist()).bytes);
    ws_.resize(bytes_);
  }
  sparq::SparqConfig config(bool per_query_head) const {
    sparq::SparqConfig cfg = c_.cfg;
    if (per_query_head) cfg.gqa = sparq::GqaMode::kPerQueryHead;
    return cfg;
  }
  static sparq::FlowTuning hist() {
    sparq::FlowTuning t;
    t.hist = 1;  // histogram items wherever the bound has two tiles
    return t;
  }
  sparq::test::DeviceBuffer<T>& out() { return out_; }

  void poison() { ws_.poison(); }
  /// Poisons the workspace, then zeroes the counter region only (what the promise rests on).
  void poison_but_the_counters() {
    ws_.poison();
    ASSERT_EQ(cudaMemset(ws_.get(), 0, sparq::kernels::counter_region_bytes(c_.p)), cudaSuccess);
  }

  /// One launch, writing to `out` (default: out()).
  sparq::Status run(const Launch& l, bool zeroed, cudaStream_t stream, T* out = nullptr) {
    sparq::SparqDecodeParams<T> a{c_.p,          config(l.per_query_head), q_.get(),
                                  cache_.view(), lengths_.get(),           out ? out : out_.get()};
    a.workspace_zeroed = zeroed;
    a.dependent_launch = l.dependent;
    if (l.dense)
      return sparq::decode_attention(sparq::AttentionMode::kDense, a, ws_.get(), bytes_, stream);
    SparqPlan<T> plan(c_.p, a.config, ws_.get(), l.route, std::nullopt, l.tuning);
    plan.dependent_launch = l.dependent;
    return sparq::kernels::launch_sparq<T, 128>(a, plan, stream);
  }

  std::vector<unsigned> counters() const {
    return sparq::test::download_raw(reinterpret_cast<const unsigned*>(ws_.get()),
                                     sparq::kernels::counter_region_bytes(c_.p) / sizeof(unsigned));
  }

 private:
  const Case& c_;
  sparq::test::DeviceKVCache<T> cache_;
  sparq::test::DeviceBuffer<T> q_, out_;
  sparq::test::DeviceBuffer<int> lengths_;
  sparq::test::DeviceBuffer<unsigned char> ws_;
  size_t bytes_ = 0;
};

bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

size_t nonzero(const std::vector<unsigned>& v) {
  size_t n = 0;
  for (unsigned x : v)
    n += x != 0;
  return n;
}

std::vector<Launch> launches(bool with_dependent) {
  std::vector<Launch> ls = {
      {"dense", true},
      {"three launches", false, SparqRoute::kThreeLaunches},
      {"dataflow", false, SparqRoute::kDataflow, sparq::FlowTuning{}},
      {"dataflow with histogram items", false, SparqRoute::kDataflow, ZeroedWorkspace::hist()},
      {"fused block", false, SparqRoute::kFusedBlock},
      {"three launches, per query head", false, SparqRoute::kThreeLaunches, std::nullopt, false,
       true},
      {"dataflow, per query head", false, SparqRoute::kDataflow, sparq::FlowTuning{}, false, true},
  };
  if (with_dependent) {
    ls.push_back({"dense, dependent", true, SparqRoute::kThreeLaunches, std::nullopt, true});
    ls.push_back(
        {"three launches, dependent", false, SparqRoute::kThreeLaunches, std::nullopt, true});
    ls.push_back({"dataflow, dependent", false, SparqRoute::kDataflow, sparq::FlowTuning{}, true});
  }
  return ls;
}

class ZeroedWorkspaceCases : public ::testing::TestWithParam<int> {};

Case make_case(int i) {
  // Several units per block of counters, an empty sequence, GQA units; and one long sequence
  // (three tiles: histogram items).
  if (i == 0) return Case(4, 8, 2, 3000, {3000, 1777, 0, 2500});
  return Case(1, 4, 4, 20000, {19000});
}

TEST_P(ZeroedWorkspaceCases, EveryLaunchGivesTheSameOutputAndLeavesTheCountersZero) {
  SPARQ_REQUIRE_GPU();
  const Case c = make_case(GetParam());
  const bool dependent = sparq::kernels::dependent_launch_supported();
  const std::vector<Launch> ls = launches(dependent);
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  // Each launch's output with its memset, from a poisoned workspace of its own.
  std::vector<std::vector<T>> want;
  std::vector<bool> ran;
  {
    ZeroedWorkspace fresh(c);
    for (const Launch& l : ls) {
      fresh.poison();  // the counters too: the launch's memset must clear them
      fresh.out().poison();
      const sparq::Status s = fresh.run(l, /*zeroed=*/false, stream);
      CUDA_ASSERT(cudaStreamSynchronize(stream));
      // The fused block route only runs where its positions fit in shared memory.
      ran.push_back(s == sparq::Status::kSuccess);
      if (!ran.back())
        EXPECT_TRUE(l.route == SparqRoute::kFusedBlock && s == sparq::Status::kUnsupportedDevice)
            << l.name << ": " << sparq::status_string(s);
      want.push_back(fresh.out().download());
    }
  }
  // The same launches in turn on one workspace, zeroed once: no memset before any of them.
  ZeroedWorkspace shared(c);
  shared.poison_but_the_counters();
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < ls.size(); ++i) {
      if (!ran[i]) continue;
      SCOPED_TRACE(ls[i].name + ", round " + std::to_string(round));
      shared.out().poison();
      SPARQ_ASSERT_OK(shared.run(ls[i], /*zeroed=*/true, stream));
      CUDA_ASSERT(cudaStreamSynchronize(stream));
      EXPECT_TRUE(bitwise_equal(want[i], shared.out().download()));
      EXPECT_EQ(nonzero(shared.counters()), 0u) << "counters left non-zero";
    }
  // Back to back, no sync between: each launch sees the previous one's cleared counters.
  for (size_t i = 0; i < ls.size(); ++i) {
    if (!ran[i]) continue;
    SCOPED_TRACE(ls[i].name + ", back to back");
    shared.out().poison();
    for (int rep = 0; rep < 3; ++rep)
      SPARQ_ASSERT_OK(shared.run(ls[i], /*zeroed=*/true, stream));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(bitwise_equal(want[i], shared.out().download()));
    EXPECT_EQ(nonzero(shared.counters()), 0u);
  }
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ZeroedWorkspaceCases, ::testing::Values(0, 1),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return i.param == 0 ? std::string("Batch4Gqa") : std::string("Long");
                         });

// A captured step of dense, three-launch and dataflow attention (as a decoder with `auto`
// might run), all without memsets and as dependent launches where the device has them,
// replayed: the graph holds kernel nodes only, and every replay gives the same outputs.
TEST(ZeroedWorkspace, CapturedStepHasNoMemsetAndReplays) {
  SPARQ_REQUIRE_GPU();
  const Case c = make_case(0);
  const bool dependent = sparq::kernels::dependent_launch_supported();
  const Launch dense{"dense", true, SparqRoute::kThreeLaunches, std::nullopt, dependent};
  const Launch three{"three launches", false, SparqRoute::kThreeLaunches, std::nullopt, dependent};
  const Launch flow{"dataflow", false, SparqRoute::kDataflow, sparq::FlowTuning{}, dependent};
  ZeroedWorkspace w(c);
  sparq::test::DeviceBuffer<T> dense_out(c.q.size()), three_out(c.q.size());
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  w.poison_but_the_counters();
  SPARQ_ASSERT_OK(w.run(dense, true, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> want_dense = w.out().download();
  SPARQ_ASSERT_OK(w.run(three, true, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> want_three = w.out().download();
  SPARQ_ASSERT_OK(w.run(flow, true, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> want_flow = w.out().download();

  cudaGraph_t graph;
  CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const sparq::Status s1 = w.run(dense, true, stream, dense_out.get());
  const sparq::Status s2 = w.run(three, true, stream, three_out.get());
  const sparq::Status s3 = w.run(flow, true, stream);
  CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  SPARQ_ASSERT_OK(s1);
  SPARQ_ASSERT_OK(s2);
  SPARQ_ASSERT_OK(s3);
  size_t count = 0;
  CUDA_ASSERT(cudaGraphGetNodes(graph, nullptr, &count));
  std::vector<cudaGraphNode_t> nodes(count);
  CUDA_ASSERT(cudaGraphGetNodes(graph, nodes.data(), &count));
  int memsets = 0;
  for (cudaGraphNode_t n : nodes) {
    cudaGraphNodeType type;
    CUDA_ASSERT(cudaGraphNodeGetType(n, &type));
    memsets += type == cudaGraphNodeTypeMemset;
  }
  EXPECT_EQ(memsets, 0);
  cudaGraphExec_t exec;
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) {
    dense_out.poison();
    three_out.poison();
    w.out().poison();
    CUDA_ASSERT(cudaGraphLaunch(exec, stream));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(bitwise_equal(want_dense, dense_out.download())) << "replay " << i;
    EXPECT_TRUE(bitwise_equal(want_three, three_out.download())) << "replay " << i;
    EXPECT_TRUE(bitwise_equal(want_flow, w.out().download())) << "replay " << i;
    EXPECT_EQ(nonzero(w.counters()), 0u) << "replay " << i;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// The dataflow kernel may now be launched as a dependent: it must have its wait compiled in.
TEST(ZeroedWorkspace, DataflowKernelWasCompiledWithItsWait) {
  SPARQ_REQUIRE_GPU();
  if (!sparq::kernels::device_has_clusters()) GTEST_SKIP() << "dependent launches need sm_90";
  EXPECT_TRUE(
      sparq::kernels::kernel_waits_for_prior_grids(sparq::kernels::sparq_dataflow_kernel<T, 128>));
}

}  // namespace
