// Choosing dense or SparQ attention for a decode step (host rule, no GPU needed).
#pragma once

#include "sparq/config.hpp"
#include "sparq/problem.hpp"
#include "sparq/transfers.hpp"

namespace sparq {

enum class AttentionMode : int {
  kDense = 0,  ///< exact attention over every cached row
  kSparq = 1,  ///< SparQ (approximate)
  kAuto = 2,   ///< SparQ where it is expected to be faster, dense elsewhere
};

/// Thresholds of the auto rule. SparQ has a fixed cost (three launches, the selection pass over
/// every position) that only pays off when the dense read is long enough; see
/// docs/benchmarks.md for the sweep these come from.
struct AutoRule {
  int min_length = 4096;               ///< below this length bound, dense
  double min_theoretical_speedup = 2;  ///< dense transfers / SparQ transfers at that bound
};

/// kDense or kSparq for this problem (kAuto resolved by `rule`; the others returned as is).
inline AttentionMode resolve_attention_mode(AttentionMode mode, const DecodeProblem& p,
                                            const SparqConfig& c, const AutoRule& rule = {}) {
  if (mode != AttentionMode::kAuto) return mode;
  const int n = p.length_bound();
  if (n < rule.min_length) return AttentionMode::kDense;
  const double theory = theoretical_attention_speedup(n, p.head_dim, c.r, c.k);
  return theory >= rule.min_theoretical_speedup ? AttentionMode::kSparq : AttentionMode::kDense;
}

}  // namespace sparq
