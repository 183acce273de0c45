// The dataflow route's item order (sparq/flow_schedule.hpp): every item of every unit exactly
// once, and each item after everything it waits for (the property that rules out deadlock).
#include <gtest/gtest.h>

#include <map>
#include <tuple>
#include <vector>

#include "sparq/flow_schedule.hpp"

namespace {

using sparq::FlowKind;
using sparq::FlowSchedule;

void check_schedule(const FlowSchedule& s) {
  SCOPED_TRACE(::testing::Message()
               << "units " << s.units << " score " << s.score_items << " attend " << s.attend_items
               << " lags " << s.select_lag << "/" << s.attend_lag);
  ASSERT_EQ(s.total(), int64_t{s.units} * (s.score_items + 1 + s.attend_items));
  std::map<std::tuple<int, int, int>, int64_t> ticket_of;
  for (int64_t t = 0; t < s.total(); ++t) {
    const sparq::FlowItem it = s.item(t);
    ASSERT_GE(it.unit, 0);
    ASSERT_LT(it.unit, s.units);
    const int count = it.kind == FlowKind::kScore    ? s.score_items
                      : it.kind == FlowKind::kSelect ? 1
                                                     : s.attend_items;
    ASSERT_GE(it.index, 0);
    ASSERT_LT(it.index, count);
    const auto key = std::make_tuple(static_cast<int>(it.kind), it.unit, it.index);
    ASSERT_EQ(ticket_of.count(key), 0u) << "ticket " << t << " repeats an item";
    ticket_of[key] = t;
  }
  for (int g = 0; g < s.units; ++g) {
    const int64_t sel = ticket_of.at({1, g, 0});
    for (int i = 0; i < s.score_items; ++i)
      EXPECT_LT(ticket_of.at({0, g, i}), sel) << "unit " << g << " score item " << i;
    for (int j = 0; j < s.attend_items; ++j)
      EXPECT_GT(ticket_of.at({2, g, j}), sel) << "unit " << g << " attend item " << j;
  }
}

TEST(FlowSchedule, EveryItemOnceAndAfterWhatItWaitsFor) {
  for (int units : {1, 2, 3, 7, 32, 100})
    for (int score : {1, 2, 8, 33})
      for (int attend : {1, 3, 8})
        for (int blocks : {1, 5, 132, 1000}) {
          check_schedule(sparq::make_flow_schedule(units, score, attend, blocks));
          if (HasFatalFailure()) return;
        }
  // Lags the planner would not choose, down to the smallest allowed.
  for (int sl = 1; sl < 5; ++sl)
    for (int al = sl + 1; al < 9; ++al) {
      FlowSchedule s;
      s.units = 9;
      s.score_items = 3;
      s.attend_items = 2;
      s.select_lag = sl;
      s.attend_lag = al;
      check_schedule(s);
      if (HasFatalFailure()) return;
    }
}

TEST(FlowSchedule, SelectionAboutOneWaveAfterItsScores) {
  // Batch 1, 32 heads, 32k positions in bf16 (8 score items, 8 attend items), an H100's 132
  // resident blocks: early on, a unit's selection comes about 132 tickets after its last
  // score item.
  const FlowSchedule s = sparq::make_flow_schedule(32, 8, 8, 132);
  EXPECT_EQ(s.select_lag, 15);
  EXPECT_EQ(s.attend_lag, 47);  // after every unit's score items: 32 + 15
  int64_t last_score = -1;
  for (int64_t t = 0; t < s.total(); ++t) {
    const sparq::FlowItem it = s.item(t);
    if (it.unit != 2) continue;
    if (it.kind == FlowKind::kScore) last_score = t;
    if (it.kind == FlowKind::kSelect) {
      EXPECT_GE(t - last_score, 132 - 9);
      EXPECT_LE(t - last_score, 132 + 9);
    }
  }
  // Degenerate inputs are clamped to one item each.
  const FlowSchedule d = sparq::make_flow_schedule(4, 0, -3, 0);
  EXPECT_EQ(d.score_items, 1);
  EXPECT_EQ(d.attend_items, 1);
  EXPECT_GE(d.select_lag, 1);
  EXPECT_GT(d.attend_lag, d.select_lag);
}

}  // namespace
