// The order in which the dataflow route's persistent blocks take work items (one decode step
// in one launch: sparq::kernels::sparq_dataflow_kernel). Per selection unit g (sequence and
// unit, g = b * units_per_batch + unit) there are `score_items` items of launch 1's work, one
// selection item and `attend_items` items of launch 3's. Blocks take items in ticket order
// from one global counter, and an item may only wait for items with smaller tickets: every
// such item was taken by a running block that itself waits only for smaller tickets, so the
// step cannot deadlock, whatever the grid.
//
// Items are laid out in rounds: round K holds unit K's score items, then the selection of unit
// K - select_lag, then the attend items of unit K - attend_lag (those that exist). The lags put
// a selection about one wave of tickets after its unit's score items (they are done by the
// time it is taken, instead of its block waiting), and attend items after their selection.
// Host and device: the CPU tests check the layout (every item once, dependencies first).
#pragma once

#include <cstdint>

#include "sparq/macros.hpp"

namespace sparq {

enum class FlowKind : int { kScore = 0, kSelect = 1, kAttend = 2 };

struct FlowItem {
  FlowKind kind = FlowKind::kScore;
  int unit = 0;   ///< g: sequence * units_per_batch + unit
  int index = 0;  ///< which score or attend item of the unit (0 for the selection)
};

struct FlowSchedule {
  int units = 0;         ///< selection units of the whole batch
  int score_items = 1;   ///< per unit
  int attend_items = 1;  ///< per unit
  int select_lag = 1;    ///< rounds between a unit's score items and its selection (>= 1)
  int attend_lag = 2;  ///< rounds between a unit's score items and its attend items (> select_lag)

  /// Items in rounds 0..round-1 (round may run past the last round: then every item).
  SPARQ_HOST_DEVICE int64_t items_before(int round) const {
    auto clamp_units = [this](int64_t x) {
      return x < 0 ? int64_t{0} : (x > units ? int64_t{units} : x);
    };
    return clamp_units(round) * score_items + clamp_units(int64_t{round} - select_lag) +
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

/// A schedule for `units` units with these item counts, for `blocks` resident blocks. While
/// score items run, a round is about score_items + 1 items, so a select lag of blocks /
/// (score_items + 1) rounds puts each selection about one wave of tickets after its unit's
/// score items: started about when they are done. Attend items come after every unit's score
/// items (and at least two select lags after their selection, which lasts several score
/// items at long lengths): earlier, they would mostly wait for selections still running.
/// Once the score items run out, blocks work on earlier units' attend items while the last
/// selections run (the step's critical path: last scores, last selection, its attention).
/// A timing model (tests/test_flow_schedule_model.cpp) chose this over shorter attend lags;
/// a GPU run tunes it (the benchmark scales `blocks` to try other lags).
SPARQ_HOST_DEVICE inline FlowSchedule make_flow_schedule(int units, int score_items,
                                                         int attend_items, int blocks) {
  FlowSchedule s;
  s.units = units;
  s.score_items = score_items < 1 ? 1 : score_items;
  s.attend_items = attend_items < 1 ? 1 : attend_items;
  const int lag = (blocks + s.score_items) / (s.score_items + 1);
  s.select_lag = lag < 1 ? 1 : lag;
  s.attend_lag = 3 * s.select_lag > units + s.select_lag ? 3 * s.select_lag : units + s.select_lag;
  return s;
}

}  // namespace sparq
