// Warp and block reductions used by every stage.
#pragma once

#include "sparq/device/softmax_state.cuh"

namespace sparq::device {

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

/// Sum over the `kWidth` lanes of an aligned lane group (kWidth a power of two <= 32).
template <int kWidth>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o >>= 1)
    x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

/// Block-wide max and sum of N values per thread at once; `scratch` holds 32 * N floats.
/// Every thread gets the results. Ends with a barrier so scratch can be reused.
template <int N, int kThreads>
__device__ __forceinline__ void block_max(float (&x)[N], float* scratch) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    x[i] = warp_max(x[i]);
    if (lane == 0) scratch[i * 32 + warp] = x[i];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float v = -INFINITY;
    for (int w = 0; w < kWarps; ++w)
      v = fmaxf(v, scratch[i * 32 + w]);
    x[i] = v;
  }
  __syncthreads();
}

template <int N, int kThreads>
__device__ __forceinline__ void block_sum(float (&x)[N], float* scratch) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    x[i] = warp_sum(x[i]);
    if (lane == 0) scratch[i * 32 + warp] = x[i];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float v = 0.f;
    for (int w = 0; w < kWarps; ++w)
      v += scratch[i * 32 + w];
    x[i] = v;
  }
  __syncthreads();
}

/// The 32 lanes' stats merged (a butterfly): every lane gets the same bits, because
/// merge_stats is symmetric in its arguments.
__device__ __forceinline__ SoftmaxStats warp_merge_stats(SoftmaxStats s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const SoftmaxStats t = {__shfl_xor_sync(0xffffffffu, s.m, o),
                            __shfl_xor_sync(0xffffffffu, s.l, o)};
    s = merge_stats(s, t);
  }
  return s;
}

/// The block's stats merged, in one barrier: each warp's merge goes to scratch (kThreads / 32
/// entries), then every warp merges those entries the same way, so every thread gets the same
/// bits. No barrier at the end: the caller syncs before it writes scratch again. The barrier
/// also publishes the block's shared-memory writes made before the call.
template <int kThreads>
__device__ __forceinline__ SoftmaxStats block_merge_stats(SoftmaxStats s, float2* scratch) {
  constexpr int kWarps = kThreads / 32;
  static_assert(kWarps <= 32, "a lane per warp");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  s = warp_merge_stats(s);
  if (lane == 0) scratch[warp] = make_float2(s.m, s.l);
  __syncthreads();
  SoftmaxStats w = empty_stats();
  if (lane < kWarps) {
    const float2 e = scratch[lane];
    w = {e.x, e.y};
  }
  return warp_merge_stats(w);
}

}  // namespace sparq::device
