// Step 7: alpha-weighted interpolation with the mean value vector v-bar = Vsum / length.
#pragma once

#include "sparq/macros.hpp"

namespace sparq::device {

/// y = alpha * o + (1 - alpha) * vsum / length. With reallocation off the caller passes
/// alpha = 1, which returns o unchanged.
SPARQ_HOST_DEVICE inline float interpolate_mean(float alpha, float o, float vsum, int length) {
  if (alpha == 1.f) return o;
  return alpha * o + (1.f - alpha) * (vsum / static_cast<float>(length));
}

}  // namespace sparq::device
