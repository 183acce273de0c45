// Step 3 (gather): approximate logits q[i1] . Kt[i1, s] for the positions one thread owns,
// reading only the r selected rows of K transposed with 16-byte coalesced loads.
#pragma once

#include "sparq/device/vec.cuh"
#include "sparq/problem.hpp"

namespace sparq::device {

/// For kVec consecutive positions s0.. and kHeads query heads (rows `head0..` of `q`, a
/// shared-memory array of d floats per head), accumulates sum_i q[h][i1_i] * Kt[i1_i][s].
/// Heads at or past `num_heads` are skipped. Positions at or past `length` are left as
/// garbage: the caller masks them. A vector load is used only when it stays below
/// `capacity` (the allocated row length); otherwise each position is loaded alone.
template <typename T, int kHeads>
__device__ __forceinline__ void approx_logits(const T* kt_base, int64_t kt_stride_d,
                                              const int* components, int r, const float* q, int d,
                                              int head0, int num_heads, int s0, int length,
                                              int capacity, float (&acc)[kHeads][kVec16<T>]) {
  constexpr int V = kVec16<T>;
#pragma unroll
  for (int h = 0; h < kHeads; ++h)
#pragma unroll
    for (int v = 0; v < V; ++v)
      acc[h][v] = 0.f;
  const bool full = s0 + V <= capacity;
#pragma unroll 8
  for (int i = 0; i < r; ++i) {
    const int c = components[i];
    const T* row = kt_base + c * kt_stride_d + s0;
    float k[V];
    if (full) {
      unpack16<T>(load16_stream(row), k);
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v)
        k[v] = s0 + v < length ? to_float(row[v]) : 0.f;
    }
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      if (head0 + h < num_heads) {
        const float qv = q[(head0 + h) * d + c];
#pragma unroll
        for (int v = 0; v < V; ++v)
          acc[h][v] = fmaf(qv, k[v], acc[h][v]);
      }
    }
  }
}

}  // namespace sparq::device
