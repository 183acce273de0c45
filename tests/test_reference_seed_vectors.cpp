// The CPU reference reproduces the published implementation's outputs (tests/data/seed_sparq,
// see tests/data/README.md): relative L2 error of y at most 1e-6. Missing data fails the test.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"
#include "support/host_cache.hpp"
#include "support/json.hpp"

namespace {

const std::vector<std::string> kCases = {"exact_dense", "mha_small", "no_reallocation", "odd_sizes",
                                         "ratio8_d128"};

std::string seed_dir() {
  return sparq::test::test_data_dir() + "/seed_sparq";
}

double relative_l2(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// Runs the reference on one case; returns the output.
std::vector<double> run_case(const sparq::test::SeedCase& c,
                             sparq::reference::SparqTrace* trace = nullptr) {
  const sparq::DecodeProblem p = sparq::test::seed_problem(c);
  const sparq::SparqConfig cfg = sparq::test::seed_config(c);
  sparq::test::HostKVCache<float> cache(p);
  cache.assign(c.K, c.V, c.lens);  // builds Kt from K
  std::vector<double> y(c.y.size());
  const sparq::Status s = sparq::reference::sparq_decode(p, cfg, c.q.data(), cache.view(),
                                                         c.lens.data(), y.data(), trace);
  EXPECT_EQ(s, sparq::Status::kSuccess) << sparq::status_string(s);
  return y;
}

class SeedVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(SeedVectors, ReferenceMatchesPublishedOutput) {
  const std::string name = GetParam();
  SCOPED_TRACE("case " + name + " in " + seed_dir());
  sparq::test::SeedCase c;
  ASSERT_NO_THROW(c = sparq::test::load_seed_case(seed_dir(), name))
      << "seed test data missing or malformed";
  const std::vector<double> y = run_case(c);
  for (double v : y)
    ASSERT_TRUE(std::isfinite(v));
  EXPECT_LE(relative_l2(y, c.y), 1e-6);
  // Per head as well, so that a short sequence cannot hide behind a long one.
  for (int bh = 0; bh < c.B * c.H; ++bh) {
    const std::vector<double> got(y.begin() + bh * c.D, y.begin() + (bh + 1) * c.D);
    const std::vector<double> want(c.y.begin() + bh * c.D, c.y.begin() + (bh + 1) * c.D);
    EXPECT_LE(relative_l2(got, want), 1e-6) << "batch*head " << bh;
  }
}

INSTANTIATE_TEST_SUITE_P(SeedSparq, SeedVectors, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(SeedVectorsDirectory, HoldsTheExpectedCases) {
  const std::vector<std::string> names = sparq::test::list_seed_cases(seed_dir());
  ASSERT_FALSE(names.empty()) << "no seed test data in " << seed_dir();
  for (const std::string& want : kCases)
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  // Any further case added to the directory must pass too.
  for (const std::string& name : names) {
    SCOPED_TRACE("case " + name);
    sparq::test::SeedCase c;
    ASSERT_NO_THROW(c = sparq::test::load_seed_case(seed_dir(), name));
    EXPECT_LE(relative_l2(run_case(c), c.y), 1e-6);
  }
}

TEST(SeedVectorsExactDense, IsDenseAttentionWithAlphaOne) {
  sparq::test::SeedCase c;
  ASSERT_NO_THROW(c = sparq::test::load_seed_case(seed_dir(), "exact_dense"));
  sparq::reference::SparqTrace trace;
  run_case(c, &trace);
  for (double a : trace.alpha)
    EXPECT_NEAR(a, 1.0, 1e-12);
}

}  // namespace
