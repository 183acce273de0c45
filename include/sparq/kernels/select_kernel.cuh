// SparQ launch 2 of 3: per (sequence, unit): merge the chunk stats into each head's softmax
// normaliser, form the ranking key (sum over the unit's heads of s-hat; the local window
// forced in), select the top-k positions in position order, and compute alpha per head.
#pragma once

#include "sparq/device/softmax_state.cuh"
#include "sparq/device/reduce.cuh"
#include "sparq/device/topk_select.cuh"
#include "sparq/selection_units.hpp"

namespace sparq::kernels {

struct SelectParams {
  const int* lengths;
  int num_q_heads;
  int units_per_batch;
  int heads_per_unit;
  int length_bound;
  int k;
  int local_window;
  int chunk_positions;
  int chunks;
  const float* logits;                // [B, Hq, logit_stride]
  int64_t logit_stride;
  const device::SoftmaxStats* stats;  // [B, Hq, chunks]
  uint32_t* keys;                     // [B * units, logit_stride]
  int* indices;                       // [B * units, index_stride]
  int64_t index_stride;
  float* alpha;                       // [B, Hq]
};

constexpr int kSelectThreads = 512;
constexpr int kMaxHeadsPerUnit = 32;

/// Keys in dynamic shared memory (kKeysInSmem, when the length bound fits) or in the
/// workspace. Shared memory saves the selection passes' global traffic; long sequences fall
/// back to global keys.
template <bool kKeysInSmem>
__global__ void __launch_bounds__(kSelectThreads) select_kernel(SelectParams p) {
  extern __shared__ uint32_t s_keys[];
  using TopK = device::BlockTopK<kSelectThreads>;
  __shared__ typename TopK::TempStorage s_topk;
  __shared__ float s_max[kMaxHeadsPerUnit];
  __shared__ float s_inv_sum[kMaxHeadsPerUnit];
  __shared__ float s_red[kSelectThreads / 32];

  const int b = blockIdx.y, unit = blockIdx.x;
  const int nh = p.heads_per_unit, h0 = unit * nh;
  int len = p.lengths[b];
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  const int keff = effective_k(p.k, len), leff = effective_window(p.local_window, len);
  const int64_t un = static_cast<int64_t>(b) * p.units_per_batch + unit;
  int* out = p.indices + un * p.index_stride;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  // Softmax normaliser per head from the chunk stats (exact merge).
  const int used_chunks = (len + p.chunk_positions - 1) / p.chunk_positions;
  for (int h = warp; h < nh; h += kSelectThreads / 32) {
    const device::SoftmaxStats* st = p.stats + (static_cast<int64_t>(b) * p.num_q_heads + h0 + h) *
                                                   p.chunks;
    device::SoftmaxStats acc = device::empty_stats();
    for (int c = lane; c < used_chunks; c += 32) acc = device::merge_stats(acc, st[c]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      device::SoftmaxStats other{__shfl_xor_sync(0xffffffffu, acc.m, o),
                                 __shfl_xor_sync(0xffffffffu, acc.l, o)};
      acc = device::merge_stats(acc, other);
    }
    if (lane == 0) {
      s_max[h] = acc.m;
      s_inv_sum[h] = acc.l > 0.f ? 1.f / acc.l : 0.f;
    }
  }
  __syncthreads();

  const float* logits = p.logits + (static_cast<int64_t>(b) * p.num_q_heads + h0) * p.logit_stride;
  if (keff == len) {
    for (int s = threadIdx.x; s < len; s += kSelectThreads) out[s] = s;  // every row is taken
  } else {
    uint32_t* keys = kKeysInSmem ? s_keys : p.keys + un * p.logit_stride;
    TopK::clear_histogram(s_topk);
    __syncthreads();
    // Each thread takes 4 consecutive positions from each of kVecs strips per step, so a
    // warp's float4 loads are contiguous and several are in flight before the first exp.
    constexpr int kVecs = 4, kStep = kSelectThreads * 4;
    for (int base = threadIdx.x * 4; base < len; base += kStep * kVecs) {
      float sum[kVecs][4];
#pragma unroll
      for (int v = 0; v < kVecs; ++v)
#pragma unroll
        for (int i = 0; i < 4; ++i) sum[v][i] = 0.f;
      for (int h = 0; h < nh; ++h) {
        const float* row = logits + h * p.logit_stride;
        float x[kVecs][4];
#pragma unroll
        for (int v = 0; v < kVecs; ++v) {
          const int s0 = base + v * kStep;
          if (s0 + 4 <= len) {
            const float4 f = *reinterpret_cast<const float4*>(row + s0);
            x[v][0] = f.x;
            x[v][1] = f.y;
            x[v][2] = f.z;
            x[v][3] = f.w;
          } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) x[v][i] = s0 + i < len ? row[s0 + i] : -INFINITY;
          }
        }
        const float mh = s_max[h], inv = s_inv_sum[h];
#pragma unroll
        for (int v = 0; v < kVecs; ++v)
#pragma unroll
          for (int i = 0; i < 4; ++i) sum[v][i] += expf(x[v][i] - mh) * inv;
      }
#pragma unroll
      for (int v = 0; v < kVecs; ++v)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int s = base + v * kStep + i;
          if (s < len) {
            const uint32_t key =
                s >= len - leff ? device::kForcedKey : device::float_to_ordered(sum[v][i]);
            keys[s] = key;
            TopK::add_to_first_histogram(s_topk, key);
          }
        }
    }
    __syncthreads();
    int need_equal = 0;
    const uint32_t threshold = TopK::threshold(s_topk, keys, len, keff, &need_equal);
    TopK::compact(s_topk, keys, len, threshold, need_equal, out);
  }
  __syncthreads();

  // alpha_h = sum of s-hat over the selected rows.
  for (int h = 0; h < nh; ++h) {
    float a = 0.f;
    for (int i = threadIdx.x; i < keff; i += kSelectThreads)
      a += expf(logits[h * p.logit_stride + out[i]] - s_max[h]) * s_inv_sum[h];
    a = device::warp_sum(a);
    if (lane == 0) s_red[warp] = a;
    __syncthreads();
    if (threadIdx.x == 0) {
      float t = 0.f;
      for (int w = 0; w < kSelectThreads / 32; ++w) t += s_red[w];
      p.alpha[static_cast<int64_t>(b) * p.num_q_heads + h0 + h] = t;
    }
    __syncthreads();
  }
}

}  // namespace sparq::kernels
