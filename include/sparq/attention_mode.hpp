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

/// Thresholds of the auto rule. SparQ has fixed costs (three launches, a selection pass over
/// every position of every unit) that pay off only when the dense read is large: the rule asks
/// for at least `min_rows` cached rows in the whole step (batch x KV heads x length bound) at a
/// theoretical speedup of 8, proportionally more at lower ones, never fewer than `min_rows`.
/// The defaults come from the speedup sweep on an H100 (docs/benchmarks.md): with them, auto
/// was never more than 5% slower than dense at any point of that sweep.
struct AutoRule {
  double min_rows = 256000;              ///< rows per step at theoretical speedup >= 8
  double min_theoretical_speedup = 1.5;  ///< below this, always dense
};

/// Rows a step must read (batch x KV heads x length bound) for auto to pick SparQ.
inline double auto_min_rows(double theoretical_speedup, const AutoRule& rule = {}) {
  const double scaled = rule.min_rows * 8.0 / theoretical_speedup;
  return scaled > rule.min_rows ? scaled : rule.min_rows;
}

/// kDense or kSparq for this problem (kAuto resolved by `rule`; the others returned as is).
inline AttentionMode resolve_attention_mode(AttentionMode mode, const DecodeProblem& p,
                                            const SparqConfig& c, const AutoRule& rule = {}) {
  if (mode != AttentionMode::kAuto) return mode;
  const int n = p.length_bound();
  const double theory = theoretical_attention_speedup(n, p.head_dim, c.r, c.k);
  if (theory < rule.min_theoretical_speedup) return AttentionMode::kDense;
  const double rows = static_cast<double>(p.batch) * p.num_kv_heads * n;
  return rows >= auto_min_rows(theory, rule) ? AttentionMode::kSparq : AttentionMode::kDense;
}

}  // namespace sparq
