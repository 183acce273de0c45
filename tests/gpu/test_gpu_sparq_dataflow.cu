// The dataflow route (sparq_dataflow_kernel: one persistent launch) on the GPU: every case of
// sparq_decode_cases.cuh against the CPU reference (the 128k cases with histogram items); the
// same positions and alpha, bit for bit, as the three launches with the streaming selection
// (the same code per stage), with and without histogram items; repeated runs, back-to-back
// steps and CUDA-graph replays bitwise identical (its counters are cleared by its own memset
// each step). Its own process: a trapped wait would end every later test.
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "gpu/sparq_decode_cases.cuh"

namespace {

using namespace sparq_cases;
using sparq::kernels::SelectRoute;
using sparq::kernels::SparqPlan;
using sparq::kernels::SparqRoute;

class SparqDataflowGpu : public ::testing::TestWithParam<SparqCase> {};

TEST_P(SparqDataflowGpu, BFloat16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 21, Route::kDataflow);
}
TEST_P(SparqDataflowGpu, Float32MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(GetParam(), fresh_seed() + 22, Route::kDataflow);
}
TEST_P(SparqDataflowGpu, Float16MatchesReference) {
  SPARQ_REQUIRE_GPU();
  run_case<__half>(GetParam(), fresh_seed() + 23, Route::kDataflow);
}

TEST_P(SparqDataflowGpu, BFloat16OneBlock) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(GetParam(), fresh_seed() + 26, Route::kDataflowOneBlock);
}

INSTANTIATE_TEST_SUITE_P(Cases, SparqDataflowGpu, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(SparqDataflowGpuLong, Positions128kBFloat16) {
  SPARQ_REQUIRE_GPU();
  run_case<__nv_bfloat16>(long_case(), fresh_seed() + 24, Route::kDataflow);
}
TEST(SparqDataflowGpuLong, Positions128kMhaFloat32) {
  SPARQ_REQUIRE_GPU();
  run_case<float>(long_mha_case(), fresh_seed() + 25, Route::kDataflow);
}

using T = __nv_bfloat16;

/// One batch-1 MHA step the size of a Llama 2 7B layer at 8k positions, and a batch of 3 GQA
/// sequences of different lengths, on the device.
struct FlowStep {
  sparq::DecodeProblem p;
  sparq::SparqConfig cfg;
  std::vector<int> lengths;
  sparq::test::HostKVCache<T> host;
  sparq::test::DeviceKVCache<T> cache;
  sparq::test::DeviceBuffer<T> q, out;
  sparq::test::DeviceBuffer<int> dlen;
  sparq::SparqDecodeParams<T> params;
  FlowStep(const sparq::DecodeProblem& prob, std::vector<int> lens, uint64_t seed)
      : p(prob),
        lengths(std::move(lens)),
        host(p),
        cache(fill(host, lengths, seed)),
        q(sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, seed + 1)),
        out(size_t(p.batch) * p.num_q_heads * p.head_dim),
        dlen(lengths) {
    cfg.r = 16;
    cfg.k = 512;
    cfg.local_window = 32;
    params = {p, cfg, q.get(), cache.view(), dlen.get(), out.get()};
  }
  static const sparq::test::HostKVCache<T>& fill(sparq::test::HostKVCache<T>& h,
                                                 const std::vector<int>& lens, uint64_t seed) {
    h.fill_random(lens, seed);
    sparq::test::set_exact_vsum(h);
    return h;
  }
};

sparq::DecodeProblem problem(int batch, int hq, int hkv, int capacity) {
  sparq::DecodeProblem p;
  p.batch = batch;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = 128;
  p.capacity = capacity;
  return p;
}

bool bitwise_equal(const void* a, const void* b, size_t bytes) {
  return std::memcmp(a, b, bytes) == 0;
}

/// A plan for `route` over a workspace of its size, poisoned; the default dataflow settings
/// unless given others (SPARQ_FLOW in the environment does not change these tests).
struct PlannedWorkspace {
  sparq::test::DeviceBuffer<unsigned char> bytes;
  SparqPlan<T> plan;
  PlannedWorkspace(const FlowStep& st, SparqRoute route,
                   std::optional<SelectRoute> select = std::nullopt,
                   std::optional<sparq::FlowTuning> tuning = sparq::FlowTuning{})
      : bytes(SparqPlan<T>(st.p, st.cfg, nullptr, route, select, tuning).bytes),
        plan((bytes.poison(), SparqPlan<T>(st.p, st.cfg, bytes.get(), route, select, tuning))) {}
};

class SparqDataflowSteps : public ::testing::TestWithParam<int> {
 protected:
  // 0, 1: no histogram items (short); 2, 3: long enough, and few enough units, for them.
  FlowStep make_step() const {
    switch (GetParam()) {
      case 0:
        return FlowStep(problem(1, 32, 32, 8192), {8192}, fresh_seed() + 31);
      case 1:
        return FlowStep(problem(3, 16, 4, 5000), {5000, 4097, 31}, fresh_seed() + 32);
      case 2:
        return FlowStep(problem(1, 8, 8, 40000), {39997}, fresh_seed() + 33);
      default:  // the second sequence ends in the third of five tiles; the third takes all
        return FlowStep(problem(3, 16, 4, 33000), {33000, 20001, 300}, fresh_seed() + 34);
    }
  }
};

// The three launches with the streaming selection run the same score and selection code:
// their positions and alpha are bit-identical; outputs agree to rounding (the attention is
// split and merged differently).
TEST_P(SparqDataflowSteps, SamePositionsAndAlphaAsThreeLaunches) {
  SPARQ_REQUIRE_GPU();
  FlowStep st = make_step();
  const PlannedWorkspace w3(st, SparqRoute::kThreeLaunches, SelectRoute::kStream);
  const PlannedWorkspace wf(st, SparqRoute::kDataflow);
  const SparqPlan<T>& three = w3.plan;
  const SparqPlan<T>& flow = wf.plan;
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_three<T, 128>(st.params, three, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<T> out3 = st.out.download();
  st.out.poison();
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, flow, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<T> outf = st.out.download();

  const size_t n_idx = size_t(st.p.batch) * three.units.per_batch * three.kmax;
  const size_t n_alpha = size_t(st.p.batch) * st.p.num_q_heads;
  const std::vector<int> i3 = sparq::test::download_raw(three.indices, n_idx);
  const std::vector<int> iflow = sparq::test::download_raw(flow.indices, n_idx);
  for (int b = 0; b < st.p.batch; ++b)
    for (int u = 0; u < three.units.per_batch; ++u) {
      const size_t at = (size_t(b) * three.units.per_batch + u) * three.kmax;
      const int keff = std::min(st.cfg.k, st.lengths[b]);
      ASSERT_TRUE(bitwise_equal(&i3[at], &iflow[at], sizeof(int) * keff))
          << "sequence " << b << " unit " << u << ": positions differ";
    }
  const std::vector<float> a3 = sparq::test::download_raw(three.alpha, n_alpha);
  const std::vector<float> af = sparq::test::download_raw(flow.alpha, n_alpha);
  EXPECT_TRUE(bitwise_equal(a3.data(), af.data(), sizeof(float) * n_alpha)) << "alpha differs";
  const double err =
      sparq::test::relative_l2(sparq::test::to_double(outf), sparq::test::to_double(out3));
  EXPECT_LE(err, sparq::test::output_tolerance<T>()) << "relative L2 difference " << err;
}

// Three steps back to back on one stream (each clears its counters), then a graph of two
// steps replayed twice: every output is the first run's, bit for bit.
TEST_P(SparqDataflowSteps, RepeatsAndGraphReplaysAreBitwiseIdentical) {
  SPARQ_REQUIRE_GPU();
  FlowStep st = make_step();
  PlannedWorkspace w(st, SparqRoute::kDataflow);
  SparqPlan<T>& plan = w.plan;
  cudaStream_t stream;
  CUDA_ASSERT(cudaStreamCreate(&stream));
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, stream)));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<T> first = st.out.download();
  ASSERT_EQ(sparq::test::count_non_finite(sparq::test::to_double(first)), 0u);
  st.out.poison();
  for (int i = 0; i < 3; ++i)
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, stream)));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(bitwise_equal(first.data(), st.out.download().data(), sizeof(T) * first.size()))
      << "three back-to-back steps";
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const sparq::Status s1 = sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, stream);
  const sparq::Status s2 = sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, stream);
  CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  SPARQ_ASSERT_OK(s1);
  SPARQ_ASSERT_OK(s2);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) {
    st.out.poison();
    CUDA_ASSERT(cudaGraphLaunch(exec, stream));
    CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(bitwise_equal(first.data(), st.out.download().data(), sizeof(T) * first.size()))
        << "graph replay " << i;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Fewer blocks than items: each block runs many items, taking its next ticket while one runs
// (one block runs them all in ticket order). The result does not depend on which block ran
// what, nor on how the score chunks are grouped into items: bit for bit the full grid's.
TEST_P(SparqDataflowSteps, SmallGridsGiveTheFullGridsOutput) {
  SPARQ_REQUIRE_GPU();
  FlowStep st = make_step();
  PlannedWorkspace w(st, SparqRoute::kDataflow);
  SparqPlan<T>& plan = w.plan;
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<T> full = st.out.download();
  for (int grid : {1, 2, 5}) {
    plan.flow_grid_limit = grid;
    st.out.poison();
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
    CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_TRUE(bitwise_equal(full.data(), st.out.download().data(), sizeof(T) * full.size()))
        << "grid of " << grid << " blocks";
  }
  // Score items of 8 chunks instead of 4 (the same chunks, computed alike): the same output.
  // A schedule left at the old item count no longer describes the launch: refused.
  plan.flow_grid_limit = 0;
  plan.flow_chunks_per_item = 2 * sparq::kernels::kFlowChunksPerItem;
  if (plan.chunks > plan.flow_chunks_per_item)  // else one item holds every chunk either way
    EXPECT_EQ((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)),
              sparq::Status::kWorkspaceTooSmall);
  plan.flow = sparq::make_flow_schedule(
      plan.flow.units, (plan.chunks + plan.flow_chunks_per_item - 1) / plan.flow_chunks_per_item,
      plan.flow.attend_items, plan.flow_blocks, plan.flow_hist_items);
  st.out.poison();
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(bitwise_equal(full.data(), st.out.download().data(), sizeof(T) * full.size()))
      << "score items of 8 chunks";
}

// Histogram items count the selection's first pass in shares: with them or without, and
// with other lags, the same output bit for bit. A plan that carved no histograms refuses a
// schedule with histogram items.
TEST_P(SparqDataflowSteps, HistogramItemsAndLagsDoNotChangeTheOutput) {
  SPARQ_REQUIRE_GPU();
  FlowStep st = make_step();
  PlannedWorkspace w(st, SparqRoute::kDataflow);
  SparqPlan<T>& plan = w.plan;
  const int tiles = sparq::kernels::flow_hist_tiles(st.p.length_bound());
  const bool with = GetParam() >= 2 && 4 * plan.flow.units <= plan.flow_blocks;
  ASSERT_EQ(plan.flow_hist_items, with ? tiles : 0);
  ASSERT_EQ(plan.flow.hist_items, plan.flow_hist_items);
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<T> first = st.out.download();
  const sparq::FlowSchedule chosen = plan.flow;
  const int score_items = chosen.score_items, attend_items = chosen.attend_items;
  for (int hist : {0, tiles})
    for (int pct : {25, 100, 300}) {
      plan.flow =
          sparq::scale_flow_lags(sparq::make_flow_schedule(chosen.units, score_items, attend_items,
                                                           plan.flow_blocks, hist),
                                 pct);
      st.out.poison();
      const sparq::Status s = sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0);
      if (hist > 0 && !with) {
        EXPECT_EQ(s, sparq::Status::kWorkspaceTooSmall) << "histogram items without histograms";
        continue;
      }
      SPARQ_ASSERT_OK(s);
      CUDA_ASSERT(cudaDeviceSynchronize());
      EXPECT_TRUE(bitwise_equal(first.data(), st.out.download().data(), sizeof(T) * first.size()))
          << hist << " histogram items, lags at " << pct << "%";
    }
  // Schedules that do not describe this launch are refused before anything runs: lags out of
  // order (an item would wait for a later ticket), other units or attend items.
  auto refused = [&](const sparq::FlowSchedule& f, const char* what) {
    plan.flow = f;
    EXPECT_EQ((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)),
              sparq::Status::kWorkspaceTooSmall)
        << what;
  };
  sparq::FlowSchedule bad = chosen;
  bad.attend_lag = bad.select_lag;
  refused(bad, "attend lag not after the select lag");
  bad = chosen;
  bad.select_lag = bad.hist_items > 0 ? bad.hist_lag : 0;
  refused(bad, "select lag not after the histogram lag");
  bad = chosen;
  bad.units += 1;
  refused(bad, "one unit more than the plan's");
  bad = chosen;
  bad.attend_items += 1;
  refused(bad, "one attend item more than the plan's splits");
  plan.flow = chosen;
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
}

// Plans made with other settings (what SPARQ_FLOW and the tuning benchmark give): other lags,
// larger score items, histogram items forced on or off, other attend items. Each plan is what
// it was asked for, and the output is the default plan's: bit for bit, except with other
// attend items, whose splits merge in another order (then to rounding).
TEST_P(SparqDataflowSteps, TunedPlansGiveTheDefaultOutput) {
  SPARQ_REQUIRE_GPU();
  FlowStep st = make_step();
  std::vector<T> first;
  {
    PlannedWorkspace w(st, SparqRoute::kDataflow, std::nullopt, sparq::FlowTuning{});
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, w.plan, 0)));
    CUDA_ASSERT(cudaDeviceSynchronize());
    first = st.out.download();
  }
  const int tiles = sparq::kernels::flow_hist_tiles(st.p.length_bound());
  for (const char* text : {"lag_pct=50,steps=2", "hist=1,lag_pct=300", "hist=0,steps=3", "rows=512",
                           "rows=32,hist=1"}) {
    const std::optional<sparq::FlowTuning> tune = sparq::parse_flow_tuning(text);
    ASSERT_TRUE(tune) << text;
    PlannedWorkspace w(st, SparqRoute::kDataflow, std::nullopt, tune);
    const SparqPlan<T>& plan = w.plan;
    EXPECT_EQ(plan.flow_chunks_per_item, tune->score_steps * sparq::kernels::kFlowChunksPerItem)
        << text;
    if (tune->hist == 0) EXPECT_EQ(plan.flow_hist_items, 0) << text;
    if (tune->hist == 1) EXPECT_EQ(plan.flow_hist_items, tiles >= 2 ? tiles : 0) << text;
    EXPECT_EQ(plan.flow.hist_items, plan.flow_hist_items) << text;
    st.out.poison();
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, plan, 0)));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<T> out = st.out.download();
    if (tune->attend_rows == 0) {
      EXPECT_TRUE(bitwise_equal(first.data(), out.data(), sizeof(T) * first.size())) << text;
    } else {
      const double err =
          sparq::test::relative_l2(sparq::test::to_double(out), sparq::test::to_double(first));
      EXPECT_LE(err, sparq::test::output_tolerance<T>()) << text << ": relative L2 " << err;
    }
  }
}

// hist=1 forces histogram items where the plan's rule takes none (3 tiles, fewer than 4): the
// output is the default plan's, bit for bit.
TEST(SparqDataflowTuning, ForcedHistogramItemsGiveTheDefaultOutput) {
  SPARQ_REQUIRE_GPU();
  FlowStep st(problem(1, 32, 32, 16400), {16399}, fresh_seed() + 35);
  std::vector<T> first;
  {
    PlannedWorkspace w(st, SparqRoute::kDataflow, std::nullopt, sparq::FlowTuning{});
    ASSERT_EQ(w.plan.flow_hist_items, 0);
    SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, w.plan, 0)));
    CUDA_ASSERT(cudaDeviceSynchronize());
    first = st.out.download();
  }
  sparq::FlowTuning forced;
  forced.hist = 1;
  PlannedWorkspace w(st, SparqRoute::kDataflow, std::nullopt, forced);
  ASSERT_EQ(w.plan.flow_hist_items, 3);
  st.out.poison();
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_dataflow<T, 128>(st.params, w.plan, 0)));
  CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(bitwise_equal(first.data(), st.out.download().data(), sizeof(T) * first.size()));
}

std::string step_name(const ::testing::TestParamInfo<int>& info) {
  static const char* const names[] = {"B1_mha_8k", "B3_gqa4_lengths", "B1_mha8_40k_histograms",
                                      "B3_gqa4_33k_histograms"};
  return names[info.param];
}

INSTANTIATE_TEST_SUITE_P(Shapes, SparqDataflowSteps, ::testing::Values(0, 1, 2, 3), step_name);

// SPARQ_ROUTE=dataflow reaches it through the public launch; without a device the plan still
// sizes its workspace (the launch would report kUnsupportedDevice).
TEST(SparqDataflowPlan, WorkspaceHoldsItsCounters) {
  const sparq::DecodeProblem p = problem(2, 8, 2, 3000);
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = 700;
  const SparqPlan<T> plan(p, cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(plan.route, SparqRoute::kDataflow);
  EXPECT_EQ(plan.attend.splits, 3);  // 700 rows, at least 256 per split (kFlowMinAttendRows)
  sparq::FlowTuning rows128;
  rows128.attend_rows = 128;
  const SparqPlan<T> narrower(p, cfg, nullptr, SparqRoute::kDataflow, std::nullopt, rows128);
  EXPECT_EQ(narrower.attend.splits, 6);  // at least 128 per split, as the tuning rows try
  EXPECT_EQ(plan.flow.units, 2 * plan.units.per_batch);
  EXPECT_EQ(plan.flow.score_items, (plan.chunks + sparq::kernels::kFlowChunksPerItem - 1) /
                                       sparq::kernels::kFlowChunksPerItem);
  EXPECT_EQ(plan.counter_bytes, sizeof(unsigned) * (1 + 4 * plan.flow.units));
  EXPECT_EQ(plan.flow_hist_items, 0);  // 3000 positions: one tile
  // A real workspace: the counters open it, within the counter region every decode plan
  // shares; the attend counters are their third part.
  alignas(256) static unsigned char fake[1 << 20];
  ASSERT_LE(plan.bytes, sizeof(fake));
  const SparqPlan<T> carved(p, cfg, fake, SparqRoute::kDataflow);
  const auto* c = reinterpret_cast<const unsigned char*>(carved.flow_counters);
  EXPECT_EQ(c, fake);
  EXPECT_LE(carved.counter_bytes, sparq::kernels::counter_region_bytes(p));
  EXPECT_EQ(reinterpret_cast<const unsigned char*>(carved.indices),
            fake + sparq::kernels::counter_region_bytes(p));
  EXPECT_EQ(reinterpret_cast<const unsigned char*>(carved.attend.counters),
            c + sizeof(unsigned) * (1 + 2 * carved.flow.units));
  // A large batch: about 8 attend items per block over the batch, at least one per unit.
  cfg.k = 4096;
  const SparqPlan<T> big(problem(64, 32, 32, 8192), cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(big.attend.splits, 1);
  const SparqPlan<T> one(problem(1, 32, 32, 8192), cfg, nullptr, SparqRoute::kDataflow);
  const int blocks = one.flow_blocks > 0 ? one.flow_blocks : sparq::kernels::planning_sm_count();
  EXPECT_EQ(one.attend.splits, std::min(16, std::max(1, 8 * blocks / 32)));  // 4096 rows / 256
  // Histogram items: one per tile of 8192 positions, for 4 tiles or more and at most a
  // quarter of the blocks in units; a histogram of 4096 counters per unit.
  const SparqPlan<T> longer(problem(1, 32, 32, 40000), cfg, nullptr, SparqRoute::kDataflow);
  const int lb = longer.flow_blocks > 0 ? longer.flow_blocks : sparq::kernels::planning_sm_count();
  EXPECT_EQ(longer.flow_hist_items, 4 * 32 <= lb ? 5 : 0);
  EXPECT_EQ(longer.flow.hist_items, longer.flow_hist_items);
  const SparqPlan<T> wide(problem(8, 32, 32, 40000), cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(wide.flow_hist_items, 0);
  cfg.k = 700;
  const bool room = 4 * 8 <= lb;  // 8 units need 32 resident blocks (any GPU of 32 SMs)
  const SparqPlan<T> hist(problem(1, 8, 8, 40000), cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(hist.flow_hist_items, room ? 5 : 0);
  const SparqPlan<T> no_hist(problem(1, 8, 8, 24576), cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(no_hist.flow_hist_items, 0);  // 3 tiles
  const SparqPlan<T> four(problem(1, 8, 8, 24577), cfg, nullptr, SparqRoute::kDataflow);
  EXPECT_EQ(four.flow_hist_items, room ? 4 : 0);  // one position into the fourth tile
}

}  // namespace
