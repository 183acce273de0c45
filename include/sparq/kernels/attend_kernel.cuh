// Exact attention over a row list, split over blocks, merged by the last block of each unit.
// Serves SparQ steps 5-7 (the top-k rows, alpha, v-bar) and dense decoding (every row).
#pragma once

#include "sparq/device/mean_interpolation.cuh"
#include "sparq/device/sparse_attention.cuh"
#include "sparq/dtype.hpp"
#include "sparq/kernels/launch_common.cuh"
#include "sparq/problem.hpp"

namespace sparq::kernels {

template <typename T>
struct AttendParams {
  const T* q;              // [B, Hq, D]
  KVCacheView<T> cache;
  const int* lengths;      // device [B]
  T* out;                  // [B, Hq, D]
  int num_q_heads;
  int units_per_batch;
  int heads_per_unit;
  int group_size;
  int length_bound;        // lengths are clamped to [0, length_bound]
  int rows_per_split;
  int splits;
  // SparQ only (null for dense): selected rows [B * units, index_stride] and their count rule.
  const int* indices;
  int64_t index_stride;
  int k;
  const float* alpha;      // [B, Hq]; null: no reallocation
  // Workspace.
  float2* partial_ml;      // [B, Hq, splits]
  float* partial_acc;      // [B, Hq, splits, D]
  unsigned* counters;      // [B, units], zero on entry
};

constexpr int kAttendThreads = 128;

/// Query heads one pass holds in registers: 1 when each unit has a single head (MHA, or
/// per-query-head selections), else 4 (more heads take several passes over the rows).
inline int attend_heads_per_pass(int heads_per_unit) { return heads_per_unit == 1 ? 1 : 4; }

/// Rows in flight per lane group: more where registers allow.
template <int kHeads>
__host__ __device__ constexpr int attend_unroll() {
  return kHeads == 1 ? 8 : 4;
}

template <typename T, int D, int kAttendMaxHeads>
__global__ void __launch_bounds__(kAttendThreads) attend_kernel(AttendParams<T> p) {
  constexpr int kAttendUnroll = attend_unroll<kAttendMaxHeads>();
  using G = device::RowGeometry<T, D>;
  constexpr int kWarps = kAttendThreads / 32;
  constexpr int kGroups = kWarps * G::kRowsPerWarp;  // lane groups per block
  __shared__ float s_acc[kWarps][kAttendMaxHeads][D];
  __shared__ float2 s_ml[kWarps][kAttendMaxHeads];
  __shared__ bool s_last;

  const int b = blockIdx.z, unit = blockIdx.y, split = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = warp * G::kRowsPerWarp + lane / G::kLanesPerRow;
  const int lr = lane % G::kLanesPerRow;

  int len = p.lengths[b];
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  const bool sparse = p.indices != nullptr;
  const int n = sparse ? (p.k < len ? p.k : len) : len;
  const int begin = split * p.rows_per_split;
  const int end = begin + p.rows_per_split < n ? begin + p.rows_per_split : n;
  const int kvh = unit * p.heads_per_unit / p.group_size;
  const int h0 = unit * p.heads_per_unit;
  const int* rows = sparse ? p.indices + (static_cast<int64_t>(b) * p.units_per_batch + unit) *
                                             p.index_stride
                           : nullptr;
  const float qscale = 1.4426950408889634f / sqrtf(static_cast<float>(D));

  for (int hp = 0; hp < p.heads_per_unit; hp += kAttendMaxHeads) {
    const int nh = p.heads_per_unit - hp < kAttendMaxHeads ? p.heads_per_unit - hp
                                                           : kAttendMaxHeads;
    device::AttentionState<T, D, kAttendMaxHeads> st;
    st.init(p.q + (static_cast<int64_t>(b) * p.num_q_heads + h0 + hp) * D, nh, qscale);
    // The loop bound is uniform across the warp: update() shuffles with the full mask.
    for (int base = begin + warp * G::kRowsPerWarp; base < end; base += kGroups * kAttendUnroll) {
      uint4 k[kAttendUnroll][G::kChunksPerLane], v[kAttendUnroll][G::kChunksPerLane];
      bool valid[kAttendUnroll];
#pragma unroll
      for (int u = 0; u < kAttendUnroll; ++u) {
        const int i = base + (group - warp * G::kRowsPerWarp) + u * kGroups;
        valid[u] = i < end;
        const int row = valid[u] ? (sparse ? rows[i] : i) : -1;
        if (valid[u]) {
          device::load_kv_row<T, D>(p.cache, b, kvh, row, k[u], v[u]);
        } else {
#pragma unroll
          for (int i = 0; i < G::kChunksPerLane; ++i) k[u][i] = v[u][i] = make_uint4(0, 0, 0, 0);
        }
      }
      st.update(k, v, valid, nh);
    }
    st.merge_warp();
    // Combine the warps through shared memory; lane group 0 of each warp holds its state.
    if (lane < G::kLanesPerRow) {
#pragma unroll
      for (int h = 0; h < kAttendMaxHeads; ++h) {
#pragma unroll
        for (int i = 0; i < G::kChunksPerLane; ++i)
#pragma unroll
          for (int e = 0; e < G::kElemsPerChunk; ++e)
            s_acc[warp][h][G::elem(lr, i) + e] = st.acc[h][i * G::kElemsPerChunk + e];
        if (lr == 0) s_ml[warp][h] = make_float2(st.m[h], st.l[h]);
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nh * D; idx += kAttendThreads) {
      const int h = idx / D, j = idx % D;
      float mx = -INFINITY;
      for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_ml[w][h].x);
      float l = 0.f, a = 0.f;
      if (mx != -INFINITY) {
        for (int w = 0; w < kWarps; ++w) {
          const float wt = exp2f(s_ml[w][h].x - mx);
          l = fmaf(s_ml[w][h].y, wt, l);
          a = fmaf(s_acc[w][h][j], wt, a);
        }
      }
      const int64_t slot = (static_cast<int64_t>(b) * p.num_q_heads + h0 + hp + h) * p.splits + split;
      p.partial_acc[slot * D + j] = a;
      if (j == 0) p.partial_ml[slot] = make_float2(mx, l);
    }
    __syncthreads();
  }

  // The last block of this unit to finish merges all splits and writes the output.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned prev = atomicAdd(p.counters + b * p.units_per_batch + unit, 1u);
    s_last = prev == static_cast<unsigned>(p.splits - 1);
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const float* vsum = p.alpha ? p.cache.vsum_row(b, kvh) : nullptr;
  for (int idx = threadIdx.x; idx < p.heads_per_unit * D; idx += kAttendThreads) {
    const int h = idx / D, j = idx % D;
    const int64_t slot0 = (static_cast<int64_t>(b) * p.num_q_heads + h0 + h) * p.splits;
    float y = device::merge_split_partials(p.partial_ml + slot0, p.partial_acc + slot0 * D + j,
                                           p.splits, D);
    if (vsum != nullptr && len > 0) {
      const float alpha = p.alpha[static_cast<int64_t>(b) * p.num_q_heads + h0 + h];
      y = device::interpolate_mean(alpha, y, vsum[j], len);
    }
    p.out[(static_cast<int64_t>(b) * p.num_q_heads + h0 + h) * D + j] = from_float<T>(y);
  }
}

/// Resident blocks of the attend kernel instance that `heads_per_unit` selects.
template <typename T, int D>
int attend_slots(int heads_per_unit) {
  static const int one = device_slots(attend_kernel<T, D, 1>, kAttendThreads);
  static const int four = device_slots(attend_kernel<T, D, 4>, kAttendThreads);
  return attend_heads_per_pass(heads_per_unit) == 1 ? one : four;
}

/// Launches the attend kernel over (splits, units, batch) blocks.
template <typename T, int D>
Status launch_attend(const AttendParams<T>& ap, int batch, cudaStream_t stream) {
  const dim3 grid(ap.splits, ap.units_per_batch, batch);
  if (attend_heads_per_pass(ap.heads_per_unit) == 1)
    attend_kernel<T, D, 1><<<grid, kAttendThreads, 0, stream>>>(ap);
  else
    attend_kernel<T, D, 4><<<grid, kAttendThreads, 0, stream>>>(ap);
  return last_launch_status();
}

}  // namespace sparq::kernels
