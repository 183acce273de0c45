// The dataflow route's item order (sparq/flow_schedule.hpp): every item of every unit exactly
// once, and each item after everything it waits for (the property that rules out deadlock):
// histogram items after their unit's score items, the selection after both, attend items
// after the selection.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "sparq/flow_schedule.hpp"

namespace {

using sparq::FlowKind;
using sparq::FlowSchedule;

void check_schedule(const FlowSchedule& s) {
  SCOPED_TRACE(::testing::Message() << "units " << s.units << " score " << s.score_items << " hist "
                                    << s.hist_items << " attend " << s.attend_items << " lags "
                                    << s.hist_lag << "/" << s.select_lag << "/" << s.attend_lag);
  ASSERT_EQ(s.total(), int64_t{s.units} * (s.score_items + s.hist_items + 1 + s.attend_items));
  std::map<std::tuple<int, int, int>, int64_t> ticket_of;
  for (int64_t t = 0; t < s.total(); ++t) {
    const sparq::FlowItem it = s.item(t);
    ASSERT_GE(it.unit, 0);
    ASSERT_LT(it.unit, s.units);
    const int count = it.kind == FlowKind::kScore       ? s.score_items
                      : it.kind == FlowKind::kHistogram ? s.hist_items
                      : it.kind == FlowKind::kSelect    ? 1
                                                        : s.attend_items;
    ASSERT_GE(it.index, 0);
    ASSERT_LT(it.index, count);
    const auto key = std::make_tuple(static_cast<int>(it.kind), it.unit, it.index);
    ASSERT_EQ(ticket_of.count(key), 0u) << "ticket " << t << " repeats an item";
    ticket_of[key] = t;
  }
  for (int g = 0; g < s.units; ++g) {
    const int64_t sel = ticket_of.at({1, g, 0});
    int64_t last_score = -1;
    for (int i = 0; i < s.score_items; ++i) {
      EXPECT_LT(ticket_of.at({0, g, i}), sel) << "unit " << g << " score item " << i;
      last_score = std::max(last_score, ticket_of.at({0, g, i}));
    }
    for (int i = 0; i < s.hist_items; ++i) {
      const int64_t h = ticket_of.at({3, g, i});
      EXPECT_GT(h, last_score) << "unit " << g << " histogram item " << i;
      EXPECT_LT(h, sel) << "unit " << g << " histogram item " << i;
    }
    for (int j = 0; j < s.attend_items; ++j)
      EXPECT_GT(ticket_of.at({2, g, j}), sel) << "unit " << g << " attend item " << j;
  }
}

TEST(FlowSchedule, EveryItemOnceAndAfterWhatItWaitsFor) {
  for (int units : {1, 2, 3, 7, 32, 100})
    for (int score : {1, 2, 8, 33})
      for (int attend : {1, 3, 8})
        for (int blocks : {1, 5, 132, 1000})
          for (int hist : {0, 1, 2, 16}) {
            check_schedule(sparq::make_flow_schedule(units, score, attend, blocks, hist));
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
      // With histogram items, at any lag below the selection's.
      s.hist_items = 3;
      for (int hl = 1; hl < sl; ++hl) {
        s.hist_lag = hl;
        check_schedule(s);
        if (HasFatalFailure()) return;
      }
      s.hist_items = 0;
    }
}

TEST(FlowSchedule, DefaultOrderIsStageByStageWithoutHistogramItems) {
  // Batch 1, 32 heads, 32k positions in bf16 (8 score items, 8 attend items), an H100's 132
  // resident blocks: every score item, then every selection, then every attend item.
  const FlowSchedule s = sparq::make_flow_schedule(32, 8, 8, 132);
  EXPECT_EQ(s.select_lag, 32);
  EXPECT_EQ(s.attend_lag, 96);
  FlowKind last = FlowKind::kScore;
  for (int64_t t = 0; t < s.total(); ++t) {
    const FlowKind k = s.item(t).kind;
    EXPECT_NE(k, FlowKind::kHistogram);
    EXPECT_GE(static_cast<int>(k), static_cast<int>(last)) << "ticket " << t;
    last = k;
  }
  // Few units: a selection still comes at least one wave (132 tickets) after its scores.
  const FlowSchedule few = sparq::make_flow_schedule(2, 8, 8, 132);
  EXPECT_EQ(few.select_lag, 15);  // ceil(132 / 9) rounds of 8 score items and a selection
  // Degenerate inputs are clamped to one item each.
  const FlowSchedule d = sparq::make_flow_schedule(4, 0, -3, 0, -2);
  EXPECT_EQ(d.score_items, 1);
  EXPECT_EQ(d.attend_items, 1);
  EXPECT_EQ(d.hist_items, 0);
  EXPECT_GE(d.select_lag, 1);
  EXPECT_GT(d.attend_lag, d.select_lag);
}

TEST(FlowSchedule, HistogramItemsHalfwayThroughTheScoresAndSelectionsAfter) {
  // As above with 4 histogram items per unit (32k positions, tiles of 8192): a unit's
  // histogram items come 16 rounds (half the units; one wave would be ceil(132 / 13) = 11)
  // after its scores, and its selection 16 rounds after them.
  const FlowSchedule s = sparq::make_flow_schedule(32, 8, 8, 132, 4);
  EXPECT_EQ(s.hist_lag, 16);
  EXPECT_EQ(s.select_lag, 32);
  EXPECT_EQ(s.attend_lag, 96);
  int64_t last_score = -1, last_hist = -1;
  for (int64_t t = 0; t < s.total(); ++t) {
    const sparq::FlowItem it = s.item(t);
    if (it.unit != 16) continue;  // past the first rounds, which hold only score items
    if (it.kind == FlowKind::kScore) last_score = t;
    if (it.kind == FlowKind::kHistogram) {
      if (last_hist < 0) EXPECT_GE(t - last_score, 132);
      last_hist = t;
    }
    // The 15 rounds between hold 4 histogram items and a selection each.
    if (it.kind == FlowKind::kSelect) EXPECT_GE(t - last_hist, 15 * 5);
  }
}

TEST(FlowSchedule, ScaledLagsKeepTheirOrder) {
  for (int hist : {0, 4})
    for (int pct : {1, 25, 50, 100, 200, 400}) {
      const FlowSchedule s =
          sparq::scale_flow_lags(sparq::make_flow_schedule(32, 8, 8, 132, hist), pct);
      EXPECT_GE(s.hist_lag, 1);
      EXPECT_GT(s.select_lag, hist > 0 ? s.hist_lag : 0);
      EXPECT_GT(s.attend_lag, s.select_lag);
      check_schedule(s);
    }
  const FlowSchedule d = sparq::make_flow_schedule(32, 8, 8, 132);
  EXPECT_EQ(sparq::scale_flow_lags(d, 50).select_lag, 16);
  EXPECT_EQ(sparq::scale_flow_lags(d, 100).select_lag, d.select_lag);
}

}  // namespace
