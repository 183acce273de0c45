// Properties of the CPU SparQ reference on random data: dense limit, alpha range, local window,
// GQA modes and group sizes, permutation invariance, masking of rows past each length, ties.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"
#include "support/host_cache.hpp"
#include "support/random.hpp"

namespace {

using sparq::DecodeProblem;
using sparq::GqaMode;
using sparq::SparqConfig;
using sparq::Status;
using sparq::reference::SparqTrace;
using sparq::test::HostKVCache;
using sparq::test::Rng;

DecodeProblem make_problem(int batch, int hq, int hkv, int d, int capacity) {
  DecodeProblem p;
  p.batch = batch;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.capacity = capacity;
  return p;
}

std::string trace_of(uint64_t seed, const DecodeProblem& p) {
  return "seed=" + std::to_string(seed) + " B=" + std::to_string(p.batch) +
         " Hq=" + std::to_string(p.num_q_heads) + " Hkv=" + std::to_string(p.num_kv_heads) +
         " d=" + std::to_string(p.head_dim) + " cap=" + std::to_string(p.capacity);
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / std::max(den, 1e-300);
}

struct SparqRun {
  std::vector<double> y;
  SparqTrace trace;
};

SparqRun run_sparq(const DecodeProblem& p, const SparqConfig& cfg, const std::vector<float>& q,
                   HostKVCache<float>& cache, const std::vector<int>& lens) {
  SparqRun r;
  r.y.assign(q.size(), 0.0);
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), cache.view(), lens.data(), r.y.data(),
                                           &r.trace),
            Status::kSuccess);
  return r;
}

std::vector<double> run_dense(const DecodeProblem& p, const std::vector<float>& q,
                              HostKVCache<float>& cache, const std::vector<int>& lens) {
  std::vector<double> y(q.size());
  EXPECT_EQ(sparq::reference::dense_decode(p, q.data(), cache.view(), lens.data(), y.data()),
            Status::kSuccess);
  return y;
}

// A random problem: query, cache and lengths (one sequence always at full capacity).
struct RandomCase {
  DecodeProblem p;
  std::vector<float> q;
  std::vector<int> lens;
  HostKVCache<float> cache;
  RandomCase(const DecodeProblem& prob, uint64_t seed, int min_len = 1) : p(prob), cache(prob) {
    Rng rng(seed);
    q = sparq::test::random_normal<float>(static_cast<size_t>(p.batch) * p.num_q_heads * p.head_dim,
                                          rng, 2.0f);
    lens = sparq::test::random_lengths(p.batch, min_len, p.capacity, rng);
    lens[0] = p.capacity;
    cache.fill_random(lens, seed + 1000);
  }
};

// r = d and k = S: SparQ is dense attention, alpha = 1, for every GQA size and mode.
TEST(SparqProperties, FullRAndKEqualsDense) {
  uint64_t seed = 11;
  for (int g : {1, 4, 8}) {
    for (GqaMode mode : {GqaMode::kShared, GqaMode::kPerQueryHead}) {
      for (int d : {64, 128, 256}) {
        const DecodeProblem p = make_problem(3, 2 * g, 2, d, 97);
        RandomCase s(p, ++seed);
        SCOPED_TRACE(trace_of(seed, p) + " mode=" + std::to_string(static_cast<int>(mode)));
        SparqConfig cfg;
        cfg.r = d;
        cfg.k = p.capacity;  // clamped to each length
        cfg.gqa = mode;
        const SparqRun r = run_sparq(p, cfg, s.q, s.cache, s.lens);
        const std::vector<double> dense = run_dense(p, s.q, s.cache, s.lens);
        EXPECT_LE(max_rel_diff(r.y, dense), 1e-12);
        for (double a : r.trace.alpha)
          EXPECT_NEAR(a, 1.0, 1e-12);
      }
    }
  }
}

TEST(SparqProperties, AlphaInUnitInterval) {
  uint64_t seed = 100;
  for (int g : {1, 4, 8}) {
    for (GqaMode mode : {GqaMode::kShared, GqaMode::kPerQueryHead}) {
      for (int k : {1, 7, 40}) {
        const DecodeProblem p = make_problem(2, 2 * g, 2, 64, 80);
        RandomCase s(p, ++seed);
        SCOPED_TRACE(trace_of(seed, p) + " k=" + std::to_string(k));
        SparqConfig cfg;
        cfg.r = 8;
        cfg.k = k;
        cfg.local_window = k / 2;
        cfg.gqa = mode;
        const SparqRun r = run_sparq(p, cfg, s.q, s.cache, s.lens);
        ASSERT_EQ(r.trace.alpha.size(), static_cast<size_t>(p.batch * p.num_q_heads));
        for (double a : r.trace.alpha) {
          EXPECT_GE(a, 0.0);
          EXPECT_LE(a, 1.0 + 1e-12);
        }
        for (double v : r.y)
          EXPECT_TRUE(std::isfinite(v));
      }
    }
  }
}

// The last l positions (clamped to the length) are always among the k selected, even when
// their scores are tiny; the selection has exactly min(k, length) distinct positions.
TEST(SparqProperties, LocalWindowAlwaysSelected) {
  uint64_t seed = 200;
  for (int g : {1, 4, 8}) {
    for (GqaMode mode : {GqaMode::kShared, GqaMode::kPerQueryHead}) {
      const DecodeProblem p = make_problem(4, 2 * g, 2, 64, 64);
      RandomCase s(p, ++seed);
      s.lens = {64, 33, 5, 1};
      s.cache.fill_random(s.lens, seed + 7);
      // Make the window rows score very low: keys opposite to the query direction.
      for (int b = 0; b < p.batch; ++b)
        for (int h = 0; h < p.num_kv_heads; ++h)
          for (int t = std::max(0, s.lens[b] - 8); t < s.lens[b]; ++t) {
            std::vector<float> krow(p.head_dim), vrow(p.head_dim, 0.25f);
            for (int j = 0; j < p.head_dim; ++j)
              krow[j] =
                  -4.0f * s.q[(static_cast<size_t>(b) * p.num_q_heads + h * g) * p.head_dim + j];
            s.cache.set_row(b, h, t, krow.data(), vrow.data());
          }
      SCOPED_TRACE(trace_of(seed, p));
      SparqConfig cfg;
      cfg.r = 16;
      cfg.k = 12;
      cfg.local_window = 8;
      cfg.gqa = mode;
      const SparqRun r = run_sparq(p, cfg, s.q, s.cache, s.lens);
      const sparq::SelectionUnits units = sparq::selection_units(p, mode);
      for (int b = 0; b < p.batch; ++b)
        for (int u = 0; u < units.per_batch; ++u) {
          const std::vector<int>& pos = r.trace.positions[b * units.per_batch + u];
          const int len = s.lens[b];
          EXPECT_EQ(static_cast<int>(pos.size()), std::min(cfg.k, len));
          std::vector<int> sorted = pos;
          std::sort(sorted.begin(), sorted.end());
          EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
          for (int t = len - std::min(cfg.local_window, len); t < len; ++t)
            EXPECT_NE(std::find(pos.begin(), pos.end(), t), pos.end())
                << "b=" << b << " unit=" << u << " window position " << t << " missing";
          for (int t : pos) {
            EXPECT_GE(t, 0);
            EXPECT_LT(t, len);
          }
        }
    }
  }
}

// Group size 1: both GQA modes are the same computation.
TEST(SparqProperties, GroupSizeOneModesAgree) {
  uint64_t seed = 300;
  for (int h : {1, 3}) {
    const DecodeProblem p = make_problem(3, h, h, 128, 150);
    RandomCase s(p, ++seed);
    SCOPED_TRACE(trace_of(seed, p));
    SparqConfig cfg;
    cfg.r = 16;
    cfg.k = 20;
    cfg.local_window = 4;
    cfg.gqa = GqaMode::kShared;
    const SparqRun a = run_sparq(p, cfg, s.q, s.cache, s.lens);
    cfg.gqa = GqaMode::kPerQueryHead;
    const SparqRun b = run_sparq(p, cfg, s.q, s.cache, s.lens);
    EXPECT_EQ(a.y, b.y);
    EXPECT_EQ(a.trace.positions, b.trace.positions);
    EXPECT_EQ(a.trace.alpha, b.trace.alpha);
  }
}

// Per-query-head mode on a GQA cache equals the MHA problem with each KV head repeated g times
// (what gpt-fast does).
TEST(SparqProperties, PerQueryHeadModeEqualsRepeatedKv) {
  uint64_t seed = 400;
  for (int g : {1, 4, 8}) {
    const DecodeProblem p = make_problem(2, 2 * g, 2, 64, 70);
    RandomCase s(p, ++seed);
    SCOPED_TRACE(trace_of(seed, p));
    SparqConfig cfg;
    cfg.r = 12;
    cfg.k = 9;
    cfg.local_window = 3;
    cfg.gqa = GqaMode::kPerQueryHead;
    const SparqRun gqa = run_sparq(p, cfg, s.q, s.cache, s.lens);

    DecodeProblem m = p;
    m.num_kv_heads = p.num_q_heads;
    const size_t rows = static_cast<size_t>(p.capacity) * p.head_dim;
    std::vector<float> K(static_cast<size_t>(m.batch) * m.num_kv_heads * rows), V(K.size());
    const auto view = s.cache.view();
    for (int b = 0; b < p.batch; ++b)
      for (int h = 0; h < m.num_kv_heads; ++h)
        for (int t = 0; t < p.capacity; ++t)
          for (int j = 0; j < p.head_dim; ++j) {
            const size_t dst =
                ((static_cast<size_t>(b) * m.num_kv_heads + h) * p.capacity + t) * p.head_dim + j;
            K[dst] = view.k_row(b, h / g, t)[j];
            V[dst] = view.v_row(b, h / g, t)[j];
          }
    HostKVCache<float> mha(m);
    mha.assign(K, V, s.lens);
    cfg.gqa = GqaMode::kShared;
    const SparqRun rep = run_sparq(m, cfg, s.q, mha, s.lens);
    EXPECT_EQ(gqa.y, rep.y);
  }
}

// Shared mode against an independent, naive implementation of the ICML GQA rule.
TEST(SparqProperties, SharedModeMatchesNaiveGroupRule) {
  uint64_t seed = 500;
  for (int g : {1, 4, 8}) {
    const DecodeProblem p = make_problem(2, 2 * g, 2, 128, 90);
    RandomCase s(p, ++seed);
    SCOPED_TRACE(trace_of(seed, p));
    SparqConfig cfg;
    cfg.r = 20;
    cfg.k = 15;
    cfg.local_window = 0;
    cfg.gqa = GqaMode::kShared;
    const SparqRun run = run_sparq(p, cfg, s.q, s.cache, s.lens);
    const auto c = s.cache.view();
    const int d = p.head_dim;
    for (int b = 0; b < p.batch; ++b)
      for (int kvh = 0; kvh < p.num_kv_heads; ++kvh) {
        const int len = s.lens[b];
        auto qv = [&](int h, int j) {
          return static_cast<double>(s.q[(static_cast<size_t>(b) * p.num_q_heads + h) * d + j]);
        };
        // Step 1 on the group-summed |q|.
        std::vector<int> comp(d);
        std::iota(comp.begin(), comp.end(), 0);
        std::vector<double> sum_abs(d, 0.0);
        for (int h = kvh * g; h < (kvh + 1) * g; ++h)
          for (int j = 0; j < d; ++j)
            sum_abs[j] += std::fabs(qv(h, j));
        std::stable_sort(comp.begin(), comp.end(),
                         [&](int a, int bb) { return sum_abs[a] > sum_abs[bb]; });
        comp.resize(cfg.r);
        EXPECT_EQ(run.trace.components[b * p.num_kv_heads + kvh], comp);
        // Steps 2-4: per-head tau and s-hat, positions on the summed s-hat.
        std::vector<std::vector<double>> shat(g, std::vector<double>(len));
        std::vector<double> summed(len, 0.0);
        for (int i = 0; i < g; ++i) {
          const int h = kvh * g + i;
          double l1 = 0, l1s = 0;
          for (int j = 0; j < d; ++j)
            l1 += std::fabs(qv(h, j));
          for (int j : comp)
            l1s += std::fabs(qv(h, j));
          const double tau = std::sqrt(d * l1s / l1);
          EXPECT_NEAR(run.trace.tau[b * p.num_q_heads + h], tau, 1e-12 * tau);
          double z = 0;
          for (int t = 0; t < len; ++t) {
            double dot = 0;
            for (int j : comp)
              dot += qv(h, j) * c.k_row(b, kvh, t)[j];
            z += (shat[i][t] = std::exp(dot / tau));
          }
          for (int t = 0; t < len; ++t)
            summed[t] += (shat[i][t] /= z);
        }
        std::vector<int> pos(len);
        std::iota(pos.begin(), pos.end(), 0);
        std::stable_sort(pos.begin(), pos.end(),
                         [&](int a, int bb) { return summed[a] > summed[bb]; });
        pos.resize(std::min(cfg.k, len));
        std::vector<int> got = run.trace.positions[b * p.num_kv_heads + kvh];
        std::sort(got.begin(), got.end());
        std::sort(pos.begin(), pos.end());
        EXPECT_EQ(got, pos);
        // Steps 5-7 per head.
        for (int i = 0; i < g; ++i) {
          const int h = kvh * g + i;
          double alpha = 0;
          for (int t : pos)
            alpha += shat[i][t];
          EXPECT_NEAR(run.trace.alpha[b * p.num_q_heads + h], alpha, 1e-12);
          std::vector<double> w(pos.size());
          double mx = -1e300, z = 0;
          for (size_t n = 0; n < pos.size(); ++n) {
            double dot = 0;
            for (int j = 0; j < d; ++j)
              dot += qv(h, j) * c.k_row(b, kvh, pos[n])[j];
            w[n] = dot / std::sqrt(static_cast<double>(d));
            mx = std::max(mx, w[n]);
          }
          for (double& x : w)
            z += (x = std::exp(x - mx));
          for (int j = 0; j < d; ++j) {
            double att = 0, vbar = 0;
            for (size_t n = 0; n < pos.size(); ++n)
              att += w[n] / z * c.v_row(b, kvh, pos[n])[j];
            for (int t = 0; t < len; ++t)
              vbar += c.v_row(b, kvh, t)[j];
            vbar /= len;
            const double want = alpha * att + (1 - alpha) * vbar;
            EXPECT_NEAR(run.y[(static_cast<size_t>(b) * p.num_q_heads + h) * d + j], want,
                        1e-10 * (1 + std::fabs(want)));
          }
        }
      }
  }
}

// Permuting cache positions (K and V rows together) permutes nothing in the output.
TEST(SparqProperties, PermutationOfPositionsInvariant) {
  uint64_t seed = 600;
  for (int g : {1, 4, 8}) {
    for (GqaMode mode : {GqaMode::kShared, GqaMode::kPerQueryHead}) {
      const DecodeProblem p = make_problem(2, 2 * g, 2, 64, 120);
      RandomCase s(p, ++seed);
      SCOPED_TRACE(trace_of(seed, p));
      SparqConfig cfg;
      cfg.r = 10;
      cfg.k = 17;
      cfg.local_window = 0;
      cfg.gqa = mode;
      cfg.reallocation = (seed % 2) == 0;
      const SparqRun a = run_sparq(p, cfg, s.q, s.cache, s.lens);

      Rng rng(seed * 31);
      const auto c = s.cache.view();
      const size_t rows = static_cast<size_t>(p.capacity) * p.head_dim;
      std::vector<float> K(static_cast<size_t>(p.batch) * p.num_kv_heads * rows), V(K.size());
      for (int b = 0; b < p.batch; ++b)
        for (int h = 0; h < p.num_kv_heads; ++h) {
          std::vector<int> perm(s.lens[b]);
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng.engine());
          for (int t = 0; t < p.capacity; ++t) {
            const int src = t < s.lens[b] ? perm[t] : t;
            for (int j = 0; j < p.head_dim; ++j) {
              const size_t dst =
                  ((static_cast<size_t>(b) * p.num_kv_heads + h) * p.capacity + t) * p.head_dim + j;
              K[dst] = c.k_row(b, h, src)[j];
              V[dst] = c.v_row(b, h, src)[j];
            }
          }
        }
      HostKVCache<float> permuted(p);
      permuted.assign(K, V, s.lens);
      const SparqRun bres = run_sparq(p, cfg, s.q, permuted, s.lens);
      EXPECT_LE(max_rel_diff(bres.y, a.y), 1e-12);
      for (size_t i = 0; i < a.trace.alpha.size(); ++i)
        EXPECT_NEAR(bres.trace.alpha[i], a.trace.alpha[i], 1e-12);
    }
  }
}

// Rows at or past a sequence's length never influence the output: NaN there changes nothing.
TEST(SparqProperties, RowsPastLengthNeverRead) {
  uint64_t seed = 700;
  for (int g : {1, 4, 8}) {
    for (GqaMode mode : {GqaMode::kShared, GqaMode::kPerQueryHead}) {
      const DecodeProblem p = make_problem(3, 2 * g, 2, 64, 100);
      RandomCase s(p, ++seed);
      s.lens = {100, 37, 1};
      s.cache.fill_random(s.lens, seed + 3);
      SCOPED_TRACE(trace_of(seed, p));
      SparqConfig cfg;
      cfg.r = 8;
      cfg.k = 20;
      cfg.local_window = 5;
      cfg.gqa = mode;
      const SparqRun clean = run_sparq(p, cfg, s.q, s.cache, s.lens);
      const std::vector<double> dense_clean = run_dense(p, s.q, s.cache, s.lens);
      s.cache.poison_tail(std::nanf(""));
      const SparqRun poisoned = run_sparq(p, cfg, s.q, s.cache, s.lens);
      const std::vector<double> dense_poisoned = run_dense(p, s.q, s.cache, s.lens);
      for (double v : poisoned.y)
        ASSERT_TRUE(std::isfinite(v));
      for (double v : dense_poisoned)
        ASSERT_TRUE(std::isfinite(v));
      EXPECT_EQ(poisoned.y, clean.y);
      EXPECT_EQ(dense_poisoned, dense_clean);
    }
  }
}

// Zero query: tau = 1, uniform approximate scores, ties broken by lower index first; the
// window is still forced in.
TEST(SparqProperties, ZeroQueryUsesTauOneAndLowerIndexTieRule) {
  const DecodeProblem p = make_problem(1, 4, 1, 64, 30);
  HostKVCache<float> cache(p);
  const std::vector<int> lens = {30};
  cache.fill_random(lens, 5);
  const std::vector<float> q(static_cast<size_t>(p.num_q_heads) * p.head_dim, 0.0f);
  SparqConfig cfg;
  cfg.r = 4;
  cfg.k = 5;
  cfg.local_window = 2;
  const SparqRun r = run_sparq(p, cfg, q, cache, lens);
  for (double t : r.trace.tau)
    EXPECT_EQ(t, 1.0);
  EXPECT_EQ(r.trace.components[0], (std::vector<int>{0, 1, 2, 3}));
  std::vector<int> pos = r.trace.positions[0];
  std::sort(pos.begin(), pos.end());
  EXPECT_EQ(pos, (std::vector<int>{0, 1, 2, 28, 29}));
  for (double a : r.trace.alpha)
    EXPECT_NEAR(a, 5.0 / 30.0, 1e-12);
  for (double v : r.y)
    EXPECT_TRUE(std::isfinite(v));
}

// Ties in |q|: equal magnitudes rank by lower component index.
TEST(SparqProperties, ComponentTiesLowerIndexFirst) {
  const DecodeProblem p = make_problem(1, 1, 1, 64, 10);
  HostKVCache<float> cache(p);
  const std::vector<int> lens = {10};
  cache.fill_random(lens, 9);
  std::vector<float> q(64, 0.5f);
  q[40] = -0.5f;  // same magnitude
  q[50] = 2.0f;   // the largest
  SparqConfig cfg;
  cfg.r = 3;
  cfg.k = 10;
  const SparqRun r = run_sparq(p, cfg, q, cache, lens);
  EXPECT_EQ(r.trace.components[0], (std::vector<int>{50, 0, 1}));
}

// Without reallocation y is exact attention over the selection (alpha treated as 1).
TEST(SparqProperties, NoReallocationIsAttentionOverSelection) {
  const DecodeProblem p = make_problem(1, 2, 2, 64, 50);
  RandomCase s(p, 808);
  SparqConfig cfg;
  cfg.r = 64;
  cfg.k = 50;
  cfg.reallocation = false;
  const SparqRun r = run_sparq(p, cfg, s.q, s.cache, s.lens);
  EXPECT_LE(max_rel_diff(r.y, run_dense(p, s.q, s.cache, s.lens)), 1e-12);
}

}  // namespace
