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

}  // namespace sparq::device
