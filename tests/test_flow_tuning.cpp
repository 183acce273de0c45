// The dataflow route's settings as SPARQ_FLOW gives them (sparq/flow_tuning.hpp): every key,
// any order, the defaults when empty, and everything malformed or out of range refused.
#include <gtest/gtest.h>

#include "sparq/flow_tuning.hpp"

namespace {

using sparq::FlowTuning;
using sparq::parse_flow_tuning;

TEST(FlowTuning, EmptyGivesTheDefaults) {
  ASSERT_TRUE(parse_flow_tuning(nullptr));
  EXPECT_EQ(*parse_flow_tuning(nullptr), FlowTuning{});
  ASSERT_TRUE(parse_flow_tuning(""));
  EXPECT_EQ(*parse_flow_tuning(""), FlowTuning{});
  const FlowTuning d;
  EXPECT_EQ(d.lag_pct, 100);
  EXPECT_EQ(d.score_steps, 1);
  EXPECT_EQ(d.hist, -1);
  EXPECT_EQ(d.attend_rows, 0);
}

TEST(FlowTuning, EveryKeyInAnyOrder) {
  const auto t = parse_flow_tuning("rows=256,hist=0,steps=2,lag_pct=50");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->lag_pct, 50);
  EXPECT_EQ(t->score_steps, 2);
  EXPECT_EQ(t->hist, 0);
  EXPECT_EQ(t->attend_rows, 256);
  const auto one = parse_flow_tuning("hist=1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->hist, 1);
  EXPECT_EQ(one->lag_pct, 100);  // the others keep their defaults
  const auto automatic = parse_flow_tuning("hist=auto,lag_pct=1000");
  ASSERT_TRUE(automatic);
  EXPECT_EQ(automatic->hist, -1);
  EXPECT_EQ(automatic->lag_pct, 1000);
}

TEST(FlowTuning, LimitsAreInclusive) {
  EXPECT_TRUE(parse_flow_tuning("lag_pct=1"));
  EXPECT_TRUE(parse_flow_tuning("steps=16"));
  EXPECT_TRUE(parse_flow_tuning("rows=32"));
  EXPECT_TRUE(parse_flow_tuning("rows=4096"));
  EXPECT_FALSE(parse_flow_tuning("lag_pct=0"));
  EXPECT_FALSE(parse_flow_tuning("lag_pct=1001"));
  EXPECT_FALSE(parse_flow_tuning("steps=0"));
  EXPECT_FALSE(parse_flow_tuning("steps=17"));
  EXPECT_FALSE(parse_flow_tuning("rows=31"));
  EXPECT_FALSE(parse_flow_tuning("rows=4097"));
  EXPECT_FALSE(parse_flow_tuning("rows=0"));  // the default is spelt by leaving rows out
  EXPECT_FALSE(parse_flow_tuning("hist=2"));
}

TEST(FlowTuning, MalformedTextIsRefused) {
  for (const char* bad :
       {"lag_pct", "lag_pct=", "=50", "lag=50", "LAG_PCT=50", "lag_pct=50,", ",lag_pct=50",
        "lag_pct=50,,steps=2", "lag_pct=50;steps=2", "lag_pct= 50", "lag_pct=-5", "lag_pct=+5",
        "lag_pct=5x", "lag_pct=1e2", "lag_pct=50,lag_pct=60", "hist=-1", "hist=on",
        "steps=99999999999999999999", "rows=0256000"})
    EXPECT_FALSE(parse_flow_tuning(bad)) << bad;
}

// The form scripts/plot_bench.py --flow-setting prints (every key, hist as auto or 0) reads
// back as the benchmark row's setting.
TEST(FlowTuning, TheBenchmarkSummaryFormParses) {
  const auto rule = parse_flow_tuning("lag_pct=25,steps=2,hist=auto,rows=128");
  ASSERT_TRUE(rule);
  EXPECT_EQ(rule->lag_pct, 25);
  EXPECT_EQ(rule->score_steps, 2);
  EXPECT_EQ(rule->hist, -1);
  EXPECT_EQ(rule->attend_rows, 128);
  const auto none = parse_flow_tuning("lag_pct=100,steps=1,hist=0,rows=256");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->hist, 0);
  EXPECT_EQ(none->attend_rows, 256);
}

}  // namespace
