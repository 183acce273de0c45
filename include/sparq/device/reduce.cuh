// Warp and block reductions used by every stage.
#pragma once

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

}  // namespace sparq::device
