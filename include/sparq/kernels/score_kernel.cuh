// SparQ launch 1 of 3: per (sequence, unit, chunk of positions): top-r components of the
// (group-summed) |q|, per-head temperatures, approximate logits q[i1] . Kt[i1, s] / tau
// written to the workspace, and softmax stats (max, sum of exp) per head for each warp's
// share of a chunk (warp reductions only: no block barrier between a chunk's loads and the
// next chunk's).
#pragma once

#include <array>

#include "sparq/device/approx_scores.cuh"
#include "sparq/device/dependent_launch.cuh"
#include "sparq/device/reduce.cuh"
#include "sparq/device/softmax_state.cuh"
#include "sparq/device/topr_select.cuh"
#include "sparq/kernels/launch_common.cuh"
#include "sparq/problem.hpp"

namespace sparq::kernels {

template <typename T>
struct ScoreParams {
  const T* q;  // [B, Hq, D]
  KVCacheView<T> cache;
  const int* lengths;
  int num_q_heads;
  int units_per_batch;
  int heads_per_unit;
  int group_size;
  int length_bound;
  int capacity;
  int r;
  int chunks;       // chunks per sequence
  int iters;        // consecutive chunks per block (sharing its top-r and tau)
  int stat_chunks;  // warp spans per sequence (kScoreWarps per chunk)
  float* logits;    // [B, Hq, logit_stride]
  int64_t logit_stride;
  device::SoftmaxStats* stats;  // [B, Hq, stat_chunks]
  // Dependent launches only (no memset before the attend launch): the attend kernel's
  // per-unit counters, cleared here. Null otherwise.
  unsigned* attend_counters = nullptr;
};

constexpr int kScoreThreads = 128;
constexpr int kScoreWarps = kScoreThreads / 32;
constexpr int kScoreHeadsPerPass = 4;

template <typename T>
__host__ __device__ constexpr int score_chunk_positions() {
  return kScoreThreads * device::kVec16<T>;
}

/// Positions of one softmax-stats entry: a warp's span of a chunk.
template <typename T>
__host__ __device__ constexpr int score_stat_positions() {
  return 32 * device::kVec16<T>;
}

/// Dynamic shared memory: the unit's queries as floats.
inline size_t score_smem_bytes(int heads_per_unit, int d) {
  return sizeof(float) * static_cast<size_t>(heads_per_unit) * d;
}

/// A unit's nh queries as floats into s_q ([nh][D]); no barrier.
template <int kThreads, typename T, int D>
__device__ void load_unit_query(const T* q, int nh, float* s_q) {
  for (int i = threadIdx.x; i < nh * D; i += kThreads)
    s_q[i] = to_float(q[i]);
}

/// Steps 1-2 for one unit whose queries load_unit_query has written to s_q, by a block of
/// kThreads: the top-r components of the summed |q| into s_comp (s_comp_keys: D ranking keys of
/// scratch) and each head's 1 / tau into s_inv_tau. Starts and ends with a barrier.
template <int kThreads, typename T, int D>
__device__ void loaded_query_prologue(int nh, int r, const float* s_q, uint64_t* s_comp_keys,
                                      int* s_comp, float* s_inv_tau) {
  __syncthreads();
  for (int j = threadIdx.x; j < D; j += kThreads) {
    float a = 0.f;
    for (int h = 0; h < nh; ++h)
      a += fabsf(s_q[h * D + j]);
    s_comp_keys[j] = device::component_key(a, j);
  }
  __syncthreads();
  device::block_top_r(s_comp_keys, D, r, s_comp);
  __syncthreads();
  const int warp = threadIdx.x >> 5;
  for (int h = warp; h < nh; h += kThreads / 32) {
    const float inv = device::warp_inverse_temperature(s_q + h * D, D, s_comp, r);
    if ((threadIdx.x & 31) == 0) s_inv_tau[h] = inv;
  }
  __syncthreads();
}

/// Launch 1's work on chunks [first_chunk, end_chunk) of one (sequence, unit), by a block of
/// kThreads (a multiple of kScoreThreads): each kScoreThreads threads take one chunk at a
/// time, so every chunk is computed, and its stats laid out, as by score_kernel. `s_q`:
/// score_smem_bytes of shared memory. Returns early, for the whole block, past the length.
template <int kThreads, typename T, int D>
__device__ void score_chunks(const ScoreParams<T>& p, int b, int unit, int first_chunk,
                             int end_chunk, float* s_q) {
  static_assert(kThreads % kScoreThreads == 0, "whole chunks per block");
  constexpr int V = device::kVec16<T>;
  constexpr int kChunksAtOnce = kThreads / kScoreThreads;
  __shared__ __align__(16) uint64_t s_comp_keys[D];  // top-r scratch
  __shared__ int s_comp[D];
  __shared__ float s_inv_tau[32];

  const int nh = p.heads_per_unit, h0 = unit * nh, kvh = h0 / p.group_size;
  // The queries are requested with the length, not after it (one round trip instead of two);
  // a block past the length has loaded them for nothing.
  int len = p.lengths[b];
  load_unit_query<kThreads, T, D>(p.q + (static_cast<int64_t>(b) * p.num_q_heads + h0) * D, nh,
                                  s_q);
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  // The select kernel reads only chunks below the length.
  if (first_chunk * score_chunk_positions<T>() >= len) return;
  loaded_query_prologue<kThreads, T, D>(nh, p.r, s_q, s_comp_keys, s_comp, s_inv_tau);
  const int tid = threadIdx.x % kScoreThreads;  // thread within its chunk
  const int warp = tid >> 5;                    // warp within its chunk

  const T* kt = p.cache.kt_row(b, kvh, 0);
  if (end_chunk > p.chunks) end_chunk = p.chunks;
  for (int c0 = first_chunk; c0 < end_chunk; c0 += kChunksAtOnce) {
    // Whole warps share a chunk, so the loop exits below are warp-uniform.
    const int chunk = c0 + static_cast<int>(threadIdx.x) / kScoreThreads;
    if (chunk >= end_chunk) break;
    const int chunk_begin = chunk * score_chunk_positions<T>();
    if (chunk_begin >= len) break;
    const int s0 = chunk_begin + tid * V;
    for (int hb = 0; hb < nh; hb += kScoreHeadsPerPass) {
      float acc[kScoreHeadsPerPass][V];
      device::approx_logits<T, kScoreHeadsPerPass>(kt, p.cache.kt_stride_d, s_comp, p.r, s_q, D, hb,
                                                   nh, s0, len, p.capacity, acc);
      float mx[kScoreHeadsPerPass];
#pragma unroll
      for (int h = 0; h < kScoreHeadsPerPass; ++h) {
        mx[h] = -INFINITY;
        const float inv = hb + h < nh ? s_inv_tau[hb + h] : 0.f;
#pragma unroll
        for (int v = 0; v < V; ++v) {
          acc[h][v] = s0 + v < len ? acc[h][v] * inv : -INFINITY;
          mx[h] = fmaxf(mx[h], acc[h][v]);
        }
        if (hb + h < nh) {
          float* dst =
              p.logits + (static_cast<int64_t>(b) * p.num_q_heads + h0 + hb + h) * p.logit_stride;
          if (s0 + V <= len) {  // rows of logits are 16-byte aligned and s0 is a multiple of V
#pragma unroll
            for (int v = 0; v < V; v += 4)
              *reinterpret_cast<float4*>(dst + s0 + v) =
                  make_float4(acc[h][v], acc[h][v + 1], acc[h][v + 2], acc[h][v + 3]);
          } else {
#pragma unroll
            for (int v = 0; v < V; ++v)
              if (s0 + v < len) dst[s0 + v] = acc[h][v];
          }
        }
      }
      // This warp's stats of its span; heads past nh are skipped (a warp-uniform branch).
#pragma unroll
      for (int h = 0; h < kScoreHeadsPerPass; ++h) {
        if (hb + h >= nh) break;
        const float m = device::warp_max(mx[h]);
        float sum = 0.f;
#pragma unroll
        for (int v = 0; v < V; ++v)
          sum += s0 + v < len ? __expf(acc[h][v] - m) : 0.f;
        sum = device::warp_sum(sum);
        if ((threadIdx.x & 31) == 0) {
          const int64_t row = static_cast<int64_t>(b) * p.num_q_heads + h0 + hb + h;
          p.stats[row * p.stat_chunks + chunk * kScoreWarps + warp] = {m, sum};
        }
      }
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kScoreThreads) score_kernel(ScoreParams<T> p) {
  extern __shared__ float s_q[];  // [heads_per_unit][D]
  device::begin_dependent_grid();
  const int b = blockIdx.z, unit = blockIdx.y, first_chunk = blockIdx.x * p.iters;
  if (p.attend_counters != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    p.attend_counters[b * p.units_per_batch + unit] = 0;
  score_chunks<kScoreThreads, T, D>(p, b, unit, first_chunk, first_chunk + p.iters, s_q);
}

/// Resident score blocks for units of `heads_per_unit` (1..32) heads (their shared memory
/// differs), queried once per process rather than at every launch.
template <typename T, int D>
int score_slots(int heads_per_unit) {
  static const std::array<int, 33> slots = [] {
    std::array<int, 33> a{};
    for (int h = 1; h <= 32; ++h)
      a[h] = device_slots(score_kernel<T, D>, kScoreThreads, score_smem_bytes(h, D));
    return a;
  }();
  return slots[heads_per_unit < 1 ? 1 : (heads_per_unit > 32 ? 32 : heads_per_unit)];
}

}  // namespace sparq::kernels
