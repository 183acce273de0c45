// Which query heads share one selection (a "unit"): a whole GQA group in shared mode, a single
// query head otherwise. Kernels and the reference use the same mapping.
#pragma once

#include "sparq/config.hpp"
#include "sparq/macros.hpp"
#include "sparq/problem.hpp"

namespace sparq {

struct SelectionUnits {
  int per_batch = 1;       ///< units per sequence
  int heads_per_unit = 1;  ///< query heads that share a unit's selections
  int group_size = 1;      ///< query heads per KV head

  SPARQ_HOST_DEVICE int kv_head(int unit) const { return unit * heads_per_unit / group_size; }
  SPARQ_HOST_DEVICE int first_q_head(int unit) const { return unit * heads_per_unit; }
};

SPARQ_HOST_DEVICE inline SelectionUnits selection_units(const DecodeProblem& p, GqaMode mode) {
  SelectionUnits u;
  u.group_size = p.num_q_heads / p.num_kv_heads;
  if (mode == GqaMode::kShared) {
    u.per_batch = p.num_kv_heads;
    u.heads_per_unit = u.group_size;
  } else {
    u.per_batch = p.num_q_heads;
    u.heads_per_unit = 1;
  }
  return u;
}

/// k and the local window for a sequence of `length` rows: both clamped to the length.
SPARQ_HOST_DEVICE inline int effective_k(int k, int length) {
  return k < length ? k : length;
}
SPARQ_HOST_DEVICE inline int effective_window(int l, int length) {
  return l < length ? l : length;
}

/// Temperature of step 2: sqrt(d * |q[i1]|_1 / |q|_1). A zero query has no scale; 1 is used.
SPARQ_HOST_DEVICE inline double temperature(int head_dim, double l1_selected, double l1_total) {
  if (!(l1_total > 0.0)) return 1.0;
  const double t = head_dim * (l1_selected / l1_total);
#if defined(__CUDA_ARCH__)
  return t > 0.0 ? ::sqrt(t) : 1.0;
#else
  return t > 0.0 ? __builtin_sqrt(t) : 1.0;
#endif
}

/// Deterministic order of both top selections: larger value first; equal values, lower index.
/// NaN ranks below every number (NaNs among themselves by index), so the order stays total and
/// a NaN in q or K cannot leave a selected slot unwritten.
/// (Float values on the device; the reference's top_indices ranks doubles by the same rule.)
template <typename V>
SPARQ_HOST_DEVICE inline bool ranks_before(V va, int ia, V vb, int ib) {
  const bool nan_a = va != va, nan_b = vb != vb;
  if (nan_a || nan_b) return nan_a == nan_b ? ia < ib : nan_b;
  return va > vb || (va == vb && ia < ib);
}

}  // namespace sparq
