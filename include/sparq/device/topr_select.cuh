// Step 1 and 2: absolute-query top-r component selection and the L1-coverage temperature.
#pragma once

#include "sparq/device/reduce.cuh"
#include "sparq/selection_units.hpp"

namespace sparq::device {

/// Rank of element j among n values under the tie rule (larger first, equal: lower index
/// first). Host/device so the CPU tests cover it. O(n) per element; n = head_dim <= 256.
SPARQ_HOST_DEVICE inline int rank_of(const float* values, int n, int j) {
  const float v = values[j];
  int rank = 0;
  for (int i = 0; i < n; ++i)
    rank += ranks_before(values[i], i, v, j) ? 1 : 0;
  return rank;
}

/// Block-cooperative top-r: `abs_q` holds d summed |q| values in shared memory; writes the
/// selected component indices, best first, to `components[0..r)`. Caller syncs afterwards.
__device__ inline void block_top_r(const float* abs_q, int d, int r, int* components) {
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const int rank = rank_of(abs_q, d, j);
    if (rank < r) components[rank] = j;
  }
}

/// 1 / tau for one query head held in shared memory (d floats), computed by one warp:
/// tau = sqrt(d * |q[i1]|_1 / |q|_1). All lanes get the result.
__device__ inline float warp_inverse_temperature(const float* q, int d, const int* components,
                                                 int r) {
  const int lane = threadIdx.x & 31;
  float all = 0.f, sel = 0.f;
  for (int j = lane; j < d; j += 32)
    all += fabsf(q[j]);
  for (int i = lane; i < r; i += 32)
    sel += fabsf(q[components[i]]);
  all = warp_sum(all);
  sel = warp_sum(sel);
  return static_cast<float>(1.0 / temperature(d, sel, all));
}

}  // namespace sparq::device
