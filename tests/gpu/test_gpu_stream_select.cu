// The streaming selection (select_stream_kernel) against the kernel the rule picks, on the same
// logits: the same positions in the same order, and the same alpha. Run with candidates in
// shared memory and with room for only 4 candidates or 3 higher-bin positions (the streamed
// refine passes), on random scores, on a query of zeros (every score equal: ties decided by
// position), with the local window, for GQA-shared units (summed scores), several lengths per
// batch and 128k positions.
#include <algorithm>
#include <string>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

using T = __nv_bfloat16;
using sparq::kernels::SelectRoute;
using sparq::kernels::SparqPlan;
using sparq::kernels::SparqRoute;

struct StreamCase {
  std::string name;
  int batch, hq, hkv;
  std::vector<int> lengths;
  int k, window;
  sparq::GqaMode gqa;
  bool zero_query;
};

std::vector<StreamCase> cases() {
  using sparq::GqaMode;
  return {
      {"mha_two_lengths", 2, 4, 4, {5000, 3001}, 400, 16, GqaMode::kShared, false},
      {"gqa4_shared", 1, 8, 2, {20000}, 1250, 32, GqaMode::kShared, false},
      {"gqa4_per_head", 2, 8, 2, {9000, 8999}, 600, 0, GqaMode::kPerQueryHead, false},
      {"short_and_odd", 3, 2, 2, {1, 17, 4100}, 16, 4, GqaMode::kShared, false},
      {"zero_query_ties", 2, 4, 4, {6000, 700}, 500, 8, GqaMode::kShared, true},
      {"positions_128k", 1, 2, 2, {131072}, 8192, 64, GqaMode::kShared, false},
  };
}

struct Selection {
  std::vector<int> indices;
  std::vector<float> alpha;
};

Selection run_select(const sparq::SparqDecodeParams<T>& a, const SparqPlan<T>& plan) {
  const size_t n_idx = size_t(a.problem.batch) * plan.units.per_batch * plan.kmax;
  const size_t n_alpha = size_t(a.problem.batch) * a.problem.num_q_heads;
  EXPECT_EQ(cudaMemset(plan.indices, 0xFF, n_idx * sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMemset(plan.alpha, 0xFF, n_alpha * sizeof(float)), cudaSuccess);
  const sparq::Status s = sparq::kernels::launch_sparq_select<T>(a, plan, nullptr);
  EXPECT_EQ(s, sparq::Status::kSuccess) << sparq::status_string(s);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {sparq::test::download_raw(plan.indices, n_idx),
          sparq::test::download_raw(plan.alpha, n_alpha)};
}

/// Empty when got == want; else where they first differ, briefly (a full dump of thousands of
/// positions would bury the log).
std::string first_difference(const std::vector<int>& got, const std::vector<int>& want) {
  const size_t n = std::min(got.size(), want.size());
  for (size_t i = 0; i < n; ++i)
    if (got[i] != want[i])
      return "index " + std::to_string(i) + " of " + std::to_string(want.size()) + ": got " +
             std::to_string(got[i]) + ", want " + std::to_string(want[i]) +
             (i > 0 ? " (previous " + std::to_string(want[i - 1]) + ")" : "");
  if (got.size() != want.size())
    return "sizes " + std::to_string(got.size()) + " and " + std::to_string(want.size());
  return "";
}

class StreamSelectGpu : public ::testing::TestWithParam<StreamCase> {};

TEST_P(StreamSelectGpu, SelectsWhatTheRuleKernelSelects) {
  SPARQ_REQUIRE_GPU();
  const StreamCase& c = GetParam();
  sparq::DecodeProblem p;
  p.batch = c.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.head_dim = 128;
  p.capacity = *std::max_element(c.lengths.begin(), c.lengths.end());
  sparq::SparqConfig cfg;
  cfg.r = 16;
  cfg.k = c.k;
  cfg.local_window = c.window;
  cfg.gqa = c.gqa;
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed() * 31ULL + 5;
  SCOPED_TRACE("case " + c.name + ", seed " + std::to_string(seed));

  sparq::test::HostKVCache<T> host(p);
  host.fill_random(c.lengths, seed);
  std::vector<T> q = sparq::test::random_normal<T>(size_t(p.batch) * p.num_q_heads * 128, seed + 1);
  if (c.zero_query) std::fill(q.begin(), q.end(), sparq::from_float<T>(0.f));
  sparq::test::DeviceKVCache<T> dev(host);
  sparq::test::DeviceBuffer<T> dq(q), dout(q.size());
  sparq::test::DeviceBuffer<int> dlen(c.lengths);

  const sparq::SelectionUnits units = sparq::selection_units(p, cfg.gqa);
  const SelectRoute rule =
      sparq::kernels::select_route(p.length_bound(), int64_t(p.batch) * units.per_batch);
  ASSERT_NE(rule, SelectRoute::kStream);
  const size_t ws = std::max(
      SparqPlan<T>(p, cfg, nullptr, SparqRoute::kThreeLaunches, rule).bytes,
      SparqPlan<T>(p, cfg, nullptr, SparqRoute::kThreeLaunches, SelectRoute::kStream).bytes);
  sparq::test::DeviceBuffer<unsigned char> dws(ws);
  dws.poison();
  // Both plans put the logits, stats, positions and alpha at the same offsets.
  const SparqPlan<T> by_rule(p, cfg, dws.get(), SparqRoute::kThreeLaunches, rule);
  SparqPlan<T> streaming(p, cfg, dws.get(), SparqRoute::kThreeLaunches, SelectRoute::kStream);
  ASSERT_EQ(by_rule.logits, streaming.logits);
  ASSERT_EQ(by_rule.indices, streaming.indices);
  ASSERT_EQ(by_rule.alpha, streaming.alpha);

  const sparq::SparqDecodeParams<T> a{p, cfg, dq.get(), dev.view(), dlen.get(), dout.get()};
  SPARQ_ASSERT_OK((sparq::kernels::launch_sparq_scores<T, 128>(a, by_rule, nullptr)));
  const Selection want = run_select(a, by_rule);
  const Selection got = run_select(a, streaming);
  const int full_candidates = streaming.stream_candidates;
  streaming.stream_candidates = 4;
  const Selection fallback = run_select(a, streaming);
  streaming.stream_candidates = full_candidates;
  streaming.stream_above = 3;
  const Selection few_above = run_select(a, streaming);

  for (int b = 0; b < p.batch; ++b)
    for (int u = 0; u < units.per_batch; ++u) {
      SCOPED_TRACE("sequence " + std::to_string(b) + " unit " + std::to_string(u));
      const int len = c.lengths[b], keff = std::min(c.k, len), win = std::min(c.window, len);
      const auto first = want.indices.begin() + (size_t(b) * units.per_batch + u) * by_rule.kmax;
      const std::vector<int> w(first, first + keff);
      const auto at = [&](const Selection& s) {
        const auto f = s.indices.begin() + (first - want.indices.begin());
        return std::vector<int>(f, f + keff);
      };
      EXPECT_EQ(first_difference(at(got), w), "") << "streaming, candidates in shared memory";
      EXPECT_EQ(first_difference(at(fallback), w), "")
          << "streaming, refine passes (too many candidates)";
      EXPECT_EQ(first_difference(at(few_above), w), "")
          << "streaming, refine passes (too many higher-bin positions)";
      if (c.zero_query) {
        // Every score equal: the window, then the lowest positions.
        std::vector<int> expect;
        for (int s = 0; s < keff - win; ++s)
          expect.push_back(s);
        for (int s = len - win; s < len; ++s)
          expect.push_back(s);
        EXPECT_EQ(first_difference(w, expect), "") << "all scores equal";
      }
    }
  for (size_t h = 0; h < want.alpha.size(); ++h) {
    EXPECT_NEAR(got.alpha[h], want.alpha[h], 1e-5f * std::max(1.f, want.alpha[h])) << "row " << h;
    EXPECT_NEAR(fallback.alpha[h], want.alpha[h], 1e-5f * std::max(1.f, want.alpha[h]))
        << "row " << h;
    EXPECT_NEAR(few_above.alpha[h], want.alpha[h], 1e-5f * std::max(1.f, want.alpha[h]))
        << "row " << h;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, StreamSelectGpu, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
