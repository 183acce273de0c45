// A timing model of the dataflow route's schedule (sparq/flow_schedule.hpp), as
// sparq_dataflow_kernel runs it: `blocks` blocks, each taking a ticket at launch and its next
// ticket as it begins an item (before waiting for the item's dependencies), then busy for the
// item's duration once they are done. Durations are estimates for an H100 at batch 1, bf16,
// d = 128, r = 16 (docs/tuning-notes.md), not measurements, each varied by up to 20% (a hash
// of the ticket; results are means over a few such draws): equal durations make whole waves
// end at once, which no GPU does. The model compares orders of items, it does not predict
// microseconds, and has no bandwidth sharing. It checks that the default lags stay close to
// the best of a range of lags and to the critical-path bound, so that a change to
// make_flow_schedule that would leave blocks waiting shows up here first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <queue>
#include <vector>

#include "sparq/flow_schedule.hpp"

namespace {

using sparq::FlowKind;
using sparq::FlowSchedule;

struct Durations {
  double score, select, attend;  // µs per item
  double hist = 0;               // a histogram item (with histogram items, `select` excludes them)
};

/// Makespan (µs) of one step; also the total time blocks spent waiting.
struct Simulated {
  double makespan = 0, waiting = 0;
};

/// A factor in [0.8, 1.2) from the ticket and the draw (0: no variation).
double variation(int64_t ticket, int draw) {
  if (draw == 0) return 1.0;
  uint64_t h = static_cast<uint64_t>(ticket + 1) * 0x9E3779B97F4A7C15ull ^
               static_cast<uint64_t>(draw) * 0xD1B54A32D192ED03ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return 0.8 + 0.4 * static_cast<double>(h % 10000) / 10000.0;
}

Simulated simulate(const FlowSchedule& s, int blocks, const Durations& d, int draw = 0) {
  const int64_t total = s.total();
  std::vector<double> score_done_at(s.units, 0.0), hist_done_at(s.units, 0.0),
      select_done_at(s.units, 0.0);
  std::vector<int> score_count(s.units, 0), hist_count(s.units, 0);
  // Tickets are taken in order by whichever block asks first; a block asks for its next ticket
  // when it begins an item (the kernel's atomicAdd comes before the item's wait), and starts
  // that one when the current item ends. Processing tickets in order works because an item
  // only waits for smaller tickets, whose end times are known.
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
    if (it.kind == FlowKind::kHistogram) {
      EXPECT_EQ(score_count[it.unit], s.score_items) << "histogram before its scores";
      ready = score_done_at[it.unit];
    } else if (it.kind == FlowKind::kSelect) {
      EXPECT_EQ(score_count[it.unit], s.score_items) << "selection before its scores";
      EXPECT_EQ(hist_count[it.unit], s.hist_items) << "selection before its histograms";
      ready = std::max(score_done_at[it.unit], hist_done_at[it.unit]);
    } else if (it.kind == FlowKind::kAttend) {
      ready = select_done_at[it.unit];
    }
    const double start_free = std::max(when, busy_until[b]);
    const double start = std::max(start_free, ready);
    out.waiting += start - start_free;
    const double dur = it.kind == FlowKind::kScore       ? d.score
                       : it.kind == FlowKind::kHistogram ? d.hist
                       : it.kind == FlowKind::kSelect    ? d.select
                                                         : d.attend;
    const double end = start + dur * variation(t, draw);
    busy_until[b] = end;
    if (it.kind == FlowKind::kScore) {
      score_done_at[it.unit] = std::max(score_done_at[it.unit], end);
      ++score_count[it.unit];
    } else if (it.kind == FlowKind::kHistogram) {
      hist_done_at[it.unit] = std::max(hist_done_at[it.unit], end);
      ++hist_count[it.unit];
    } else if (it.kind == FlowKind::kSelect) {
      select_done_at[it.unit] = end;
    }
    out.makespan = std::max(out.makespan, end);
    // The block claims its next ticket as it begins this item: after every block's first
    // ticket, taken at launch (hence the nudge past time 0).
    claim.push({start_free + 1e-6, b});
  }
  return out;
}

/// The mean makespan over `draws` draws of the durations' variation.
double mean_makespan(const FlowSchedule& s, int blocks, const Durations& d, int draws = 4) {
  double sum = 0;
  for (int draw = 1; draw <= draws; ++draw)
    sum += simulate(s, blocks, d, draw).makespan;
  return sum / draws;
}

/// Batch 1, `units` heads (32 by default), S positions in bf16 (chunks of 1024), k = S / 16,
/// on 132 blocks. Score items of 4 chunks: 1 µs of prologue and 128 KB at the device's
/// bandwidth shared by 132 SMs (5.6 µs); a selection 1 µs plus 0.3 µs per 1k positions;
/// attend items as the plan splits them (at least `attend_rows` rows each, at most 8 items per
/// block over the units), each `attend_overhead` µs (the wait, the query, the indices' round
/// trip) plus 5.6 µs per 256 rows. With histogram items (`hist`: one per tile of 8192
/// positions), the selection's first pass, taken as 40% of its per-position time, moves to
/// them: each 0.5 µs (the normalisers, the global adds) plus 0.12 µs per 1k positions; the
/// selection keeps 1.2 µs (the histogram's load) plus 0.18 µs per 1k.
struct Shape {
  int seq;
  bool hist = false;
  int units = 32;
  int attend_rows = 128;  // the library's default until run 8 (now kFlowMinAttendRows, 256)
  double attend_overhead = 0.5;
  int hist_items() const { return hist ? (seq + 8191) / 8192 : 0; }
  int attend_items() const {
    const int kmax = seq / 16;
    return std::min({(kmax + attend_rows - 1) / attend_rows, std::max(1, 8 * 132 / units), 256});
  }
  FlowSchedule at(double lag_scale) const {
    const int chunks = seq / 1024, score_items = (chunks + 3) / 4;
    return sparq::scale_flow_lags(
        sparq::make_flow_schedule(units, score_items, attend_items(), 132, hist_items()),
        static_cast<int>(100 * lag_scale));
  }
  Durations durations() const {
    const double k = seq / 1024.0;
    const int rows = (seq / 16 + attend_items() - 1) / attend_items();
    const double attend = attend_overhead + 5.6 * rows / 256.0;
    if (!hist) return {6.6, 1.0 + 0.3 * k, attend};
    return {6.6, 1.2 + 0.18 * k, attend, 0.5 + 0.12 * 8};
  }
  /// No schedule beats this: all work over all blocks, or the last unit's chain (its scores
  /// spread over as many blocks as it has items, then its histograms likewise, its selection,
  /// then its attention).
  double bound() const {
    const FlowSchedule s = at(1.0);
    const Durations d = durations();
    const double work =
        s.units *
        (s.score_items * d.score + s.hist_items * d.hist + d.select + s.attend_items * d.attend) /
        132.0;
    return std::max(work, d.score + d.hist + d.select + d.attend);
  }
  double makespan(double lag_scale = 1.0) const {
    return mean_makespan(at(lag_scale), 132, durations());
  }
};

TEST(FlowScheduleModel, EveryBlockTakesOneItemBeforeAnyTakesTwo) {
  // 132 equal score items on 132 blocks end after one item's time, not two: a block's second
  // ticket comes after every block's first. (An earlier version of this model let a block
  // take its second ticket at time 0 too, and chose the lags from its skewed figures.)
  FlowSchedule s;
  s.units = 33;
  s.score_items = 4;
  s.select_lag = 33;
  s.attend_lag = 99;
  const Durations d{1.0, 0.0, 0.0};
  const Simulated one = simulate(s, 132, d);
  EXPECT_DOUBLE_EQ(one.makespan, 1.0);
}

TEST(FlowScheduleModel, DefaultLagsAreNearTheBestAndTheBound) {
  for (int units : {8, 32, 128})
    for (bool hist : {false, true})
      for (int seq : {4096, 16384, 32768, 131072}) {
        if (hist && seq < 32768) continue;  // the plan takes histogram items from 4 tiles
        SCOPED_TRACE(::testing::Message() << units << " units, S " << seq
                                          << (hist ? " with" : " without") << " histogram items");
        const Shape shape{seq, hist, units};
        const double chosen = shape.makespan();
        double best = chosen;
        for (double scale : {0.25, 0.5, 0.75, 1.5, 2.0})
          best = std::min(best, shape.makespan(scale));
        std::printf(
            "%3d units, S %6d, %s histogram items: default lags %.1f us (best tried %.1f, "
            "bound %.1f)\n",
            units, seq, hist ? "with" : "no", chosen, best, shape.bound());
        EXPECT_LE(chosen, 1.08 * best);
        // The bound has no variation: the last wave ends up to 20% late.
        EXPECT_LE(chosen, 1.6 * shape.bound());
      }
}

TEST(FlowScheduleModel, HistogramItemsShortenLongSelectionsAtSmallBatch) {
  // Splitting the selection's first pass over histogram items takes most of it off the
  // critical path (the last unit's selection). By the model's estimates the step gets shorter
  // where selections are long and units few (8 units from 32k, 32 units at 128k), and costs
  // nothing to speak of at 32 units and 32k; where the device is full of units they only add
  // work, so the plan uses them only for few units and long lengths (SparqPlan).
  struct Case {
    int units, seq;
    double at_most;  // with / without
  };
  for (const Case& c : {Case{8, 32768, 0.95}, Case{8, 131072, 0.9}, Case{32, 32768, 1.02},
                        Case{32, 131072, 0.97}}) {
    SCOPED_TRACE(::testing::Message() << c.units << " units, S " << c.seq);
    const double without = Shape{c.seq, false, c.units}.makespan();
    const double with = Shape{c.seq, true, c.units}.makespan();
    std::printf("%3d units, S %6d: %.1f us without histogram items, %.1f us with\n", c.units, c.seq,
                without, with);
    EXPECT_LT(with, c.at_most * without);
  }
}

TEST(FlowScheduleModel, AttendItemsOf128RowsShortenShortSteps) {
  // The last unit's attention ends the step; twice the items (of half the rows) spread it over
  // twice the blocks. However much an item's fixed cost (0.5 to 2 µs), B1 S16k gets shorter,
  // and S32k no more than 5% longer (at 128k the plan's cap of 8 items per block decides).
  for (double overhead : {0.5, 1.0, 2.0}) {
    auto at = [&](int seq, int rows) {
      Shape s{seq, seq >= 32768};
      s.attend_rows = rows;
      s.attend_overhead = overhead;
      return s.makespan();
    };
    std::printf("attend item overhead %.1f us: S 16k %.1f -> %.1f us, S 32k %.1f -> %.1f us\n",
                overhead, at(16384, 256), at(16384, 128), at(32768, 256), at(32768, 128));
    EXPECT_LT(at(16384, 128), 0.9 * at(16384, 256)) << "overhead " << overhead;
    EXPECT_LT(at(32768, 128), 1.05 * at(32768, 256)) << "overhead " << overhead;
  }
}

TEST(FlowScheduleModel, AnyGridFinishes) {
  // One block runs every item in ticket order and never waits; any grid finishes.
  const Shape shape{32768, true};
  const Simulated one = simulate(shape.at(1.0), 1, shape.durations());
  EXPECT_EQ(one.waiting, 0.0);
  for (int blocks : {2, 7, 132, 1000}) {
    const Simulated s = simulate(shape.at(1.0), blocks, shape.durations());
    EXPECT_GT(s.makespan, 0.0);
    EXPECT_LE(s.makespan, one.makespan + 1e-9);
  }
}

}  // namespace
