// The order in which the dataflow route's persistent blocks take work items (one decode step
// in one launch: sparq::kernels::sparq_dataflow_kernel). Per selection unit g (sequence and
// unit, g = b * units_per_batch + unit) there are `score_items` items of launch 1's work,
// `hist_items` shares of the selection's first pass (none: the selection makes its own), one
// selection item and `attend_items` items of launch 3's. Blocks take items in ticket order
// from one global counter, and an item may only wait for items with smaller tickets: every
// such item was taken by a running block that itself waits only for smaller tickets, so the
// step cannot deadlock, whatever the grid.
//
// Items are laid out in rounds: round K holds unit K's score items, then the histogram items
// of unit K - hist_lag, the selection of unit K - select_lag, then the attend items of unit
// K - attend_lag (those that exist). The lags put a unit's first items that wait (its
// histogram items, or its selection) at least one wave of tickets after its score items (they
// are done by the time it is taken, instead of its block waiting), its selection after its
// histogram items, and attend items after their selection (make_flow_schedule).
// Host and device: the CPU tests check the layout (every item once, dependencies first).
#pragma once

#include <cstdint>

#include "sparq/macros.hpp"

namespace sparq {

// Rows per attend item, at least (SparqPlan splits each unit's k rows so): 256 rows are one
// round of loads of a 512-thread block's lane groups (8 rows in flight per group). The timing
// model (tests/test_flow_schedule_model.cpp) preferred 128 (twice the items, so the last
// unit's attention spreads over twice the blocks), but on the H100 (run 8, B1, lags 100%)
// 256 was faster: 89.7 against 91.9 µs at S16k, 100.4 against 118.2 at S32k, 356.8 against
// 357.6 at S128k. Plans may take another (FlowTuning::attend_rows, SPARQ_FLOW rows=).
constexpr int kFlowMinAttendRows = 256;

enum class FlowKind : int { kScore = 0, kSelect = 1, kAttend = 2, kHistogram = 3 };

struct FlowItem {
  FlowKind kind = FlowKind::kScore;
  int unit = 0;   ///< g: sequence * units_per_batch + unit
  int index = 0;  ///< which score, histogram or attend item of the unit (0 for the selection)
};

struct FlowSchedule {
  int units = 0;         ///< selection units of the whole batch
  int score_items = 1;   ///< per unit
  int attend_items = 1;  ///< per unit
  int hist_items = 0;    ///< per unit: shares of the selection's first pass (0: none)
  int hist_lag = 1;      ///< rounds between a unit's score items and its histogram items (>= 1)
  int select_lag = 1;    ///< rounds between a unit's score items and its selection (> hist_lag
                         ///< where there are histogram items, else >= 1)
  int attend_lag = 2;  ///< rounds between a unit's score items and its attend items (> select_lag)

  /// Items in rounds 0..round-1 (round may run past the last round: then every item).
  SPARQ_HOST_DEVICE int64_t items_before(int round) const {
    auto clamp_units = [this](int64_t x) {
      return x < 0 ? int64_t{0} : (x > units ? int64_t{units} : x);
    };
    return clamp_units(round) * score_items + clamp_units(int64_t{round} - hist_lag) * hist_items +
           clamp_units(int64_t{round} - select_lag) +
           clamp_units(int64_t{round} - attend_lag) * attend_items;
  }
  SPARQ_HOST_DEVICE int rounds() const { return units + attend_lag; }
  SPARQ_HOST_DEVICE int64_t total() const { return items_before(rounds()); }

  /// The item of `ticket` (0 <= ticket < total()).
  SPARQ_HOST_DEVICE FlowItem item(int64_t ticket) const {
    // The last round that starts at or before the ticket (items_before is non-decreasing).
    int lo = 0, hi = rounds() - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (items_before(mid) <= ticket)
        lo = mid;
      else
        hi = mid - 1;
    }
    int64_t at = ticket - items_before(lo);
    FlowItem it;
    if (lo < units) {
      if (at < score_items) return FlowItem{FlowKind::kScore, lo, static_cast<int>(at)};
      at -= score_items;
    }
    const int hist = lo - hist_lag;
    if (hist_items > 0 && hist >= 0 && hist < units) {
      if (at < hist_items) return FlowItem{FlowKind::kHistogram, hist, static_cast<int>(at)};
      at -= hist_items;
    }
    const int sel = lo - select_lag;
    if (sel >= 0 && sel < units) {
      if (at == 0) return FlowItem{FlowKind::kSelect, sel, 0};
      at -= 1;
    }
    it.kind = FlowKind::kAttend;
    it.unit = lo - attend_lag;
    it.index = static_cast<int>(at);
    return it;
  }
};

/// A schedule for `units` units with these item counts, for `blocks` resident blocks.
///
/// A unit's first waiting items (its histogram items, else its selection) come at least one
/// wave of tickets (blocks of them) after its score items, so that those are done when they
/// are taken: while score items run, a round holds score_items + hist_items + 1 items, so one
/// wave is blocks / that many rounds. A timing model of the route
/// (tests/test_flow_schedule_model.cpp: blocks taking tickets as the kernel does, estimated
/// item times) prefers longer lags still:
/// - without histogram items, a select lag of `units` rounds: every unit's score items, then
///   every selection, then the attend items (the three launches' order, without their gaps
///   and tails). Shorter lags left blocks waiting on selections at 128k (213 against 139 µs
///   modelled at batch 1, 32 heads);
/// - with histogram items, a histogram lag of units / 2 and a select lag of twice that.
/// Attend items come at least two select lags after their selection, and after every unit's
/// score items. The model has no bandwidth sharing (it cannot value a memory-bound item beside
/// a latency-bound one), so a GPU run tunes the lags (BM_SparqRouteDataflowTuning).
SPARQ_HOST_DEVICE inline FlowSchedule make_flow_schedule(int units, int score_items,
                                                         int attend_items, int blocks,
                                                         int hist_items = 0) {
  FlowSchedule s;
  s.units = units < 0 ? 0 : units;
  s.score_items = score_items < 1 ? 1 : score_items;
  s.attend_items = attend_items < 1 ? 1 : attend_items;
  s.hist_items = hist_items < 0 ? 0 : hist_items;
  const int per_round = s.score_items + s.hist_items + 1;
  const int wave = (blocks + per_round - 1) / per_round;
  if (s.hist_items > 0) {
    const int half = (s.units + 1) / 2;
    s.hist_lag = wave > half ? wave : half;
    s.hist_lag = s.hist_lag < 1 ? 1 : s.hist_lag;
    s.select_lag = 2 * s.hist_lag;
  } else {
    s.hist_lag = 1;  // unused
    s.select_lag = wave > s.units ? wave : s.units;
    s.select_lag = s.select_lag < 1 ? 1 : s.select_lag;
  }
  s.attend_lag =
      3 * s.select_lag > s.units + s.select_lag ? 3 * s.select_lag : s.units + s.select_lag;
  return s;
}

/// `s` with its lags scaled by pct / 100 (at least 1 round each, in order): the tuning
/// benchmark's and the timing model's other schedules.
SPARQ_HOST_DEVICE inline FlowSchedule scale_flow_lags(FlowSchedule s, int pct) {
  auto scaled = [pct](int lag, int least) {
    const int64_t v = (int64_t{lag} * pct + 50) / 100;
    return static_cast<int>(v < least ? least : v);
  };
  s.hist_lag = scaled(s.hist_lag, 1);
  s.select_lag = scaled(s.select_lag, s.hist_items > 0 ? s.hist_lag + 1 : 1);
  s.attend_lag =
      3 * s.select_lag > s.units + s.select_lag ? 3 * s.select_lag : s.units + s.select_lag;
  return s;
}

}  // namespace sparq
