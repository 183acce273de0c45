// KV-cache append: writes new tokens' K (row-major and transposed) and V at each sequence's
// next positions and adds their V rows to the float32 running sum, for decode (n = 1) and
// prefill (n tokens per sequence). Rows that would land at or past the capacity are dropped.
#pragma once

#include <cuda_runtime.h>

#include "sparq/device/dependent_launch.cuh"
#include "sparq/device/kv_append_element.cuh"
#include "sparq/dtype.hpp"
#include "sparq/kernels/launch_common.cuh"
#include "sparq/problem.hpp"

namespace sparq {

template <typename T>
struct KVAppendParams {
  DecodeProblem problem;
  KVCacheView<T> cache;
  int* lengths = nullptr;       ///< device [B]: rows already in the cache
  int num_new = 1;              ///< tokens appended to every sequence
  const T* new_k = nullptr;     ///< [B, num_new, Hkv, d]
  const T* new_v = nullptr;     ///< [B, num_new, Hkv, d]
  bool advance_lengths = true;  ///< add num_new to lengths afterwards (clamped to capacity)
  /// sm_90 with sm_90 code (ignored elsewhere): launch as a programmatic dependent of the kernel
  /// before it in the stream (it starts while that one finishes and waits for it before touching
  /// memory). Correct on an H100 (run 8); not timed alone.
  bool dependent_launch = false;
};

namespace kernels {

constexpr int kAppendThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kAppendThreads) kv_append_kernel(KVAppendParams<T> a) {
  device::begin_dependent_grid();
  const int b = blockIdx.y, h = blockIdx.x;
  const DecodeProblem& p = a.problem;
  const int d = p.head_dim, n = a.num_new, hkv = p.num_kv_heads;
  const int len0 = a.lengths[b];
  const int64_t tok_stride = static_cast<int64_t>(hkv) * d;
  const T* nk = a.new_k + (static_cast<int64_t>(b) * n * hkv + h) * d;
  const T* nv = a.new_v + (static_cast<int64_t>(b) * n * hkv + h) * d;
  auto in_range = [&](int t) { return len0 >= 0 && len0 + t < p.capacity; };
  if (n == 1) {
    // Decoding: every load (new K and V, the V sum) is issued before the length is known,
    // so the step costs one round trip, not one per loop below. Same stores, same sum.
    float* vsum = a.cache.vsum != nullptr ? a.cache.vsum_row(b, h) : nullptr;
    for (int j = threadIdx.x; j < d; j += kAppendThreads) {
      const T kj = nk[j], vj = nv[j];
      const float s = vsum != nullptr ? vsum[j] : 0.f;
      if (!in_range(0)) continue;
      device::append_k_element(a.cache, b, h, len0, j, kj);
      device::append_v_element(a.cache, b, h, len0, j, vj, s);
    }
    return;
  }
  for (int idx = threadIdx.x; idx < n * d; idx += kAppendThreads) {
    const int t = idx / d, j = idx % d;
    if (!in_range(t)) continue;
    a.cache.k_row(b, h, len0 + t)[j] = nk[t * tok_stride + j];
    a.cache.v_row(b, h, len0 + t)[j] = nv[t * tok_stride + j];
  }
  for (int idx = threadIdx.x; idx < n * d; idx += kAppendThreads) {
    const int j = idx / n, t = idx % n;  // consecutive threads write consecutive positions
    if (!in_range(t)) continue;
    a.cache.kt_row(b, h, j)[len0 + t] = nk[t * tok_stride + j];
  }
  if (a.cache.vsum != nullptr) {
    float* vsum = a.cache.vsum_row(b, h);
    for (int j = threadIdx.x; j < d; j += kAppendThreads) {
      float s = vsum[j];
      for (int t = 0; t < n && in_range(t); ++t)
        s += to_float(nv[t * tok_stride + j]);
      vsum[j] = s;  // tokens added one by one, in order: matches the reference bit for bit
    }
  }
}

/// A template (of its block size) so that every translation unit that includes it shares one
/// definition.
template <int kThreads = 256>
__global__ void __launch_bounds__(kThreads)
    advance_lengths_kernel(int* lengths, int batch, int n, int capacity) {
  device::begin_dependent_grid();
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < batch) {
    const int l = lengths[b] + n;
    lengths[b] = l > capacity ? capacity : l;
  }
}

}  // namespace kernels

template <typename T>
Status kv_append(const KVAppendParams<T>& a, cudaStream_t stream) {
  const DecodeProblem& p = a.problem;
  if (Status s = validate_problem(p); !ok(s)) return s;
  if (a.num_new < 1 || a.num_new > p.capacity) return Status::kInvalidNewTokens;
  if (a.lengths == nullptr || a.new_k == nullptr || a.new_v == nullptr || a.cache.k == nullptr ||
      a.cache.kt == nullptr || a.cache.v == nullptr)
    return Status::kNullPointer;
  if (Status s = validate_strides(p, a.cache); !ok(s)) return s;
  const bool dep = a.dependent_launch && kernels::dependent_launch_supported();
  if (kernels::launch_ex(kernels::kv_append_kernel<T>, dim3(p.num_kv_heads, p.batch),
                         dim3(kernels::kAppendThreads), 0, stream, 0, dep, a) != cudaSuccess)
    return Status::kCudaError;
  if (a.advance_lengths &&
      kernels::launch_ex(kernels::advance_lengths_kernel<>, dim3(kernels::ceil_div(p.batch, 256)),
                         dim3(256), 0, stream, 0, dep, a.lengths, p.batch, a.num_new,
                         p.capacity) != cudaSuccess)
    return Status::kCudaError;
  return Status::kSuccess;
}

}  // namespace sparq
