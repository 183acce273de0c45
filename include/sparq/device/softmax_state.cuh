// Partial softmax states and their exact merge: a sequence split over blocks is reduced to
// (max, sum of exp) per part, and parts combine without approximation.
#pragma once

#include <math.h>

#include "sparq/macros.hpp"

namespace sparq::device {

/// Running max m and sum l of exp(x - m) over a part of a sequence (natural-log domain).
struct SoftmaxStats {
  float m;
  float l;
};

SPARQ_HOST_DEVICE inline SoftmaxStats empty_stats() {
  return {-INFINITY, 0.f};
}

/// Exact merge of two parts' stats.
SPARQ_HOST_DEVICE inline SoftmaxStats merge_stats(SoftmaxStats a, SoftmaxStats b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return empty_stats();
  return {m, a.l * expf(a.m - m) + b.l * expf(b.m - m)};
}

/// Stats s with the first n of x[0..N) folded in, online: one rescale of s per call, not per
/// value (a thread folds its values as it computes them, with no second pass to sum the exps).
template <int N>
SPARQ_HOST_DEVICE inline SoftmaxStats fold_stats(SoftmaxStats s, const float (&x)[N], int n) {
  float mc = -INFINITY;
#pragma unroll
  for (int i = 0; i < N; ++i)
    if (i < n) mc = fmaxf(mc, x[i]);
  const float m = fmaxf(s.m, mc);
  if (m == -INFINITY) return s;
  float l = s.l * expf(s.m - m);
#pragma unroll
  for (int i = 0; i < N; ++i)
    if (i < n) l += expf(x[i] - m);
  return {m, l};
}

}  // namespace sparq::device
