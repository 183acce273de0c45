// A timing model of the dataflow route's schedule (sparq/flow_schedule.hpp), as
// sparq_dataflow_kernel runs it: `blocks` blocks, each taking the next ticket when it starts
// an item (the one after it is claimed then, and started when the block is free), waiting for
// the item's dependencies, then busy for the item's duration. Durations are estimates for an
// H100 at batch 1, bf16, d = 128, r = 16 (docs/tuning-notes.md), not measurements: the model
// compares orders of items, it does not predict microseconds. It checks that the default lags
// stay close to the best of a range of lags and to the critical-path bound, so that a change
// to make_flow_schedule that would leave blocks waiting shows up here first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <queue>
#include <vector>

#include "sparq/flow_schedule.hpp"

namespace {

using sparq::FlowKind;
using sparq::FlowSchedule;

struct Durations {
  double score, select, attend;  // µs per item
};

/// Makespan (µs) of one step; also the total time blocks spent waiting.
struct Simulated {
  double makespan = 0, waiting = 0;
};

Simulated simulate(const FlowSchedule& s, int blocks, const Durations& d) {
  const int64_t total = s.total();
  std::vector<double> score_done_at(s.units, 0.0), select_done_at(s.units, 0.0);
  std::vector<int> score_count(s.units, 0);
  // Tickets are taken in order by whichever block asks first; a block asks for its next ticket
  // when it starts an item, and starts that one when the current item ends. Processing tickets
  // in order works because an item only waits for smaller tickets, whose end times are known.
  using Free = std::pair<double, int>;  // (time the block can claim, block)
  std::priority_queue<Free, std::vector<Free>, std::greater<Free>> claim;
  std::vector<double> busy_until(blocks, 0.0);
  for (int b = 0; b < blocks; ++b)
    claim.push({0.0, b});
  // Each block holds at most one claimed, unstarted ticket.
  std::vector<int64_t> held(blocks, -1);
  Simulated out;
  for (int64_t t = 0; t < total; ++t) {
    const auto [when, b] = claim.top();
    claim.pop();
    const sparq::FlowItem it = s.item(t);
    double ready = 0.0;
    if (it.kind == FlowKind::kSelect) {
      EXPECT_EQ(score_count[it.unit], s.score_items) << "selection before its scores";
      ready = score_done_at[it.unit];
    } else if (it.kind == FlowKind::kAttend) {
      ready = select_done_at[it.unit];
    }
    const double start_free = std::max(when, busy_until[b]);
    const double start = std::max(start_free, ready);
    out.waiting += start - start_free;
    const double dur = it.kind == FlowKind::kScore    ? d.score
                       : it.kind == FlowKind::kSelect ? d.select
                                                      : d.attend;
    const double end = start + dur;
    busy_until[b] = end;
    if (it.kind == FlowKind::kScore) {
      score_done_at[it.unit] = std::max(score_done_at[it.unit], end);
      ++score_count[it.unit];
    } else if (it.kind == FlowKind::kSelect) {
      select_done_at[it.unit] = end;
    }
    out.makespan = std::max(out.makespan, end);
    // The block claims its next ticket as it starts this item.
    claim.push({start, b});
  }
  return out;
}

/// Batch 1, 32 heads, S positions in bf16 (chunks of 1024), k = S / 16 in items of 256 rows,
/// on 132 blocks. Score items of 4 chunks: 1 µs of prologue and 128 KB at the device's
/// bandwidth shared by 132 SMs (5.6 µs); a selection 1 µs plus 0.3 µs per 1k positions; an
/// attend item 0.5 µs plus 128 KB (5.6 µs).
struct Shape {
  int seq;
  FlowSchedule at(double lag_scale) const {
    const int units = 32, chunks = seq / 1024, score_items = (chunks + 3) / 4;
    const int attend_items = std::max(1, seq / 16 / 256);
    return sparq::make_flow_schedule(units, score_items, attend_items,
                                     std::max(1, static_cast<int>(132 * lag_scale)));
  }
  Durations durations() const { return {6.6, 1.0 + 0.3 * seq / 1024.0, 6.1}; }
  /// No schedule beats this: all work over all blocks, or the last unit's chain (its scores
  /// spread over as many blocks as it has items, then its selection, then its attention).
  double bound() const {
    const FlowSchedule s = at(1.0);
    const Durations d = durations();
    const double work =
        s.units * (s.score_items * d.score + d.select + s.attend_items * d.attend) / 132.0;
    return std::max(work, d.score + d.select + d.attend);
  }
};

TEST(FlowScheduleModel, DefaultLagsAreNearTheBestAndTheBound) {
  for (int seq : {16384, 32768, 131072}) {
    SCOPED_TRACE(::testing::Message() << "S " << seq);
    const Shape shape{seq};
    const Simulated chosen = simulate(shape.at(1.0), 132, shape.durations());
    double best = chosen.makespan;
    for (double scale : {0.25, 0.5, 2.0, 4.0})
      best = std::min(best, simulate(shape.at(scale), 132, shape.durations()).makespan);
    std::printf(
        "S %6d: default lags %.1f us (best tried %.1f, bound %.1f), blocks waited "
        "%.1f us in all\n",
        seq, chosen.makespan, best, shape.bound(), chosen.waiting);
    EXPECT_LE(chosen.makespan, 1.05 * best);
    EXPECT_LE(chosen.makespan, 1.40 * shape.bound());
  }
}

TEST(FlowScheduleModel, AnyGridFinishes) {
  // One block runs every item in ticket order and never waits; any grid finishes.
  const Shape shape{32768};
  const Simulated one = simulate(shape.at(1.0), 1, shape.durations());
  EXPECT_EQ(one.waiting, 0.0);
  for (int blocks : {2, 7, 132, 1000}) {
    const Simulated s = simulate(shape.at(1.0), blocks, shape.durations());
    EXPECT_GT(s.makespan, 0.0);
    EXPECT_LE(s.makespan, one.makespan + 1e-9);
  }
}

}  // namespace
