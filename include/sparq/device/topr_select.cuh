// Step 1 and 2: absolute-query top-r component selection and the L1-coverage temperature.
#pragma once

#include <cstdint>

#include "sparq/device/ordered_keys.hpp"
#include "sparq/device/reduce.cuh"
#include "sparq/selection_units.hpp"

namespace sparq::device {

/// Ranking key of component j whose summed |q| is v: a larger key ranks first, in
/// ranks_before's order (larger value first; equal values, NaNs included, lower index first).
/// Keys of distinct components differ, so ranks by key are a permutation.
SPARQ_HOST_DEVICE inline uint64_t component_key(float v, int j) {
  return (static_cast<uint64_t>(float_to_ordered(v)) << 32) |
         (0xFFFFFFFFu - static_cast<uint32_t>(j));
}

/// Rank of key j among n keys: how many are larger. Host/device so the CPU tests cover it.
/// O(n) per key, n = head_dim <= 256: one 64-bit compare per key, where comparing the floats
/// under the tie rule (NaN tests, then the index) took about four times the instructions,
/// which made this loop most of the score kernel's work at batch 1 (H100, run 8).
SPARQ_HOST_DEVICE inline int rank_of_key(const uint64_t* keys, int n, int j) {
  const uint64_t kj = keys[j];
  int rank = 0;
  for (int i = 0; i < n; ++i)
    rank += keys[i] > kj ? 1 : 0;
  return rank;
}

/// Block-cooperative top-r: `keys` holds the d components' component_key values in shared
/// memory; writes the selected component indices, best first, to `components[0..r)`. Caller
/// syncs afterwards.
__device__ inline void block_top_r(const uint64_t* keys, int d, int r, int* components) {
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const int rank = rank_of_key(keys, d, j);
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
