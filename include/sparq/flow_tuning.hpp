// The dataflow route's tuning knobs: what BM_SparqRouteDataflowTuning varies, given to a plan
// (SparqPlan's FlowTuning argument) or to every plan of a process through the SPARQ_FLOW
// environment variable, so that a program (the Llama example) can run the setting a benchmark
// chose without a rebuild. The defaults are the plan's own rules.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

namespace sparq {

struct FlowTuning {
  int lag_pct = 100;    ///< the schedule's lags scaled by this percentage (scale_flow_lags)
  int score_steps = 1;  ///< score chunks per score item, in multiples of the default
  int hist = -1;        ///< histogram items: -1 the plan's rule, 0 none, 1 wherever the bound
                        ///< spans two tiles or more
  int attend_rows = 0;  ///< least rows per attend item (0: kFlowMinAttendRows)

  bool operator==(const FlowTuning& o) const {
    return lag_pct == o.lag_pct && score_steps == o.score_steps && hist == o.hist &&
           attend_rows == o.attend_rows;
  }
};

// Accepted ranges: wide enough for any sensible trial, narrow enough that no value can
// overflow the schedule's arithmetic or make an item of a single row.
constexpr int kFlowLagPctMax = 1000;
constexpr int kFlowScoreStepsMax = 16;
constexpr int kFlowAttendRowsMin = 32, kFlowAttendRowsMax = 4096;

/// "lag_pct=50,steps=2,hist=0,rows=256": any of the four keys, in any order, comma-separated
/// (hist also takes "auto"); null or empty: the defaults. Null for anything else: an unknown
/// key, a value that is not a whole number or is out of range, a key given twice.
inline std::optional<FlowTuning> parse_flow_tuning(const char* v) {
  FlowTuning t;
  const std::string s = v ? v : "";
  if (s.empty()) return t;
  bool seen[4] = {false, false, false, false};
  size_t at = 0;
  while (at <= s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(at, end - at);
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return std::nullopt;
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    int which = key == "lag_pct" ? 0
                : key == "steps" ? 1
                : key == "hist"  ? 2
                : key == "rows"  ? 3
                                 : -1;
    if (which < 0 || seen[which]) return std::nullopt;
    seen[which] = true;
    long n = 0;
    if (which == 2 && value == "auto") {
      n = -1;
    } else {
      if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos ||
          value.size() > 6)
        return std::nullopt;
      errno = 0;
      n = std::strtol(value.c_str(), nullptr, 10);
      if (errno != 0) return std::nullopt;
    }
    switch (which) {
      case 0:
        if (n < 1 || n > kFlowLagPctMax) return std::nullopt;
        t.lag_pct = static_cast<int>(n);
        break;
      case 1:
        if (n < 1 || n > kFlowScoreStepsMax) return std::nullopt;
        t.score_steps = static_cast<int>(n);
        break;
      case 2:
        if (n > 1) return std::nullopt;
        t.hist = static_cast<int>(n);
        break;
      default:
        if (n < kFlowAttendRowsMin || n > kFlowAttendRowsMax) return std::nullopt;
        t.attend_rows = static_cast<int>(n);
    }
    at = end + 1;
  }
  return t;
}

}  // namespace sparq
