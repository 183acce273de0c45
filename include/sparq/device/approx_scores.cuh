// Step 3 (gather): approximate logits q[i1] . Kt[i1, s] for the positions one thread owns,
// reading only the r selected rows of K transposed with 16-byte coalesced loads.
#pragma once

#include "sparq/device/vec.cuh"
#include "sparq/problem.hpp"

namespace sparq::device {

/// Rows of K transposed a thread has in flight at once in approx_logits. One at a time, each
/// row waits a full DRAM round trip: where few blocks run (batch 1) that, not bandwidth,
/// bounds the score kernel (its SASS had one 16-byte load in flight per thread).
constexpr int kApproxRowsInFlight = 8;

/// acc[h][v] += q[head0 + h][c] * k[v] for the heads below num_heads: one row's contribution.
template <int kHeads, int V>
__device__ __forceinline__ void accumulate_row(const float* q, int d, int head0, int num_heads,
                                               int c, const float (&k)[V],
                                               float (&acc)[kHeads][V]) {
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

/// For kVec consecutive positions s0.. and kHeads query heads (rows `head0..` of `q`, a
/// shared-memory array of d floats per head), accumulates sum_i q[h][i1_i] * Kt[i1_i][s].
/// Heads at or past `num_heads` are skipped. Positions at or past `length` are left as
/// garbage: the caller masks them. A vector load is used only when it stays below
/// `capacity` (the allocated row length); otherwise each position is loaded alone. Rows are
/// accumulated in component order either way, so the result does not depend on the path.
template <typename T, int kHeads>
__device__ __forceinline__ void approx_logits(const T* kt_base, int64_t kt_stride_d,
                                              const int* components, int r, const float* q, int d,
                                              int head0, int num_heads, int s0, int length,
                                              int capacity, float (&acc)[kHeads][kVec16<T>]) {
  constexpr int V = kVec16<T>;
  constexpr int kBatch = kApproxRowsInFlight;
#pragma unroll
  for (int h = 0; h < kHeads; ++h)
#pragma unroll
    for (int v = 0; v < V; ++v)
      acc[h][v] = 0.f;
  if (s0 + V <= capacity) {
    // Vector path, unswitched: a batch of rows is requested before the first is used.
    int i = 0;
    for (; i + kBatch <= r; i += kBatch) {
      int c[kBatch];
      uint4 raw[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        c[j] = components[i + j];
        raw[j] = load16_stream(kt_base + c[j] * kt_stride_d + s0);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        float k[V];
        unpack16<T>(raw[j], k);
        accumulate_row<kHeads, V>(q, d, head0, num_heads, c[j], k, acc);
      }
    }
    for (; i < r; ++i) {
      const int c = components[i];
      float k[V];
      unpack16<T>(load16_stream(kt_base + c * kt_stride_d + s0), k);
      accumulate_row<kHeads, V>(q, d, head0, num_heads, c, k, acc);
    }
    return;
  }
  // The row's allocated end: element by element, none past the length.
  for (int i = 0; i < r; ++i) {
    const int c = components[i];
    const T* row = kt_base + c * kt_stride_d + s0;
    float k[V];
#pragma unroll
    for (int v = 0; v < V; ++v)
      k[v] = s0 + v < length ? to_float(row[v]) : 0.f;
    accumulate_row<kHeads, V>(q, d, head0, num_heads, c, k, acc);
  }
}

}  // namespace sparq::device
