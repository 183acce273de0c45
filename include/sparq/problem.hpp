// The shape of one decode step and views over KV-cache memory in the dual layout.
// Strides are explicit (in elements) so engines with other cache layouts can plug in.
#pragma once

#include <cstdint>

#include "sparq/macros.hpp"
#include "sparq/status.hpp"

namespace sparq {

/// One new query token per sequence, attending over a KV cache of `capacity` rows.
struct DecodeProblem {
  int batch = 1;
  int num_q_heads = 1;
  int num_kv_heads = 1;
  int head_dim = 128;
  int capacity = 0;  ///< rows allocated per (sequence, KV head)
  /// Upper bound on every sequence length, known on the host (0: capacity). GPU launches size
  /// their grids by it, so that nothing needs to read the device lengths on the host.
  int max_length = 0;

  SPARQ_HOST_DEVICE int group_size() const { return num_q_heads / num_kv_heads; }
  SPARQ_HOST_DEVICE int length_bound() const { return max_length > 0 ? max_length : capacity; }
};

/// Head dims with compiled kernels (the reference accepts the same, so tests mirror kernels).
inline bool supported_head_dim(int d) {
  return d == 64 || d == 128 || d == 256;
}

/// Largest batch a launch accepts (grid y/z dimension limit).
constexpr int kMaxBatch = 65535;
/// Most query heads (grid y dimension limit; kernels put heads or units there).
constexpr int kMaxHeads = 65535;
/// Most query rows per step (batch x query heads): keeps per-row and per-unit indices and the
/// dataflow route's ticket count in 32 bits, four million rows, far past any real batch.
constexpr int64_t kMaxQueryRows = int64_t{1} << 22;
/// Most rows per sequence: a billion positions, far past any real context, low enough that
/// position arithmetic in int (a length plus a tile or a cluster's blocks) cannot overflow.
constexpr int kMaxCapacity = 1 << 30;

inline Status validate_problem(const DecodeProblem& p) {
  if (p.batch < 1 || p.batch > kMaxBatch) return Status::kInvalidBatch;
  if (p.num_q_heads < 1 || p.num_kv_heads < 1 || p.num_q_heads > kMaxHeads)
    return Status::kInvalidHeads;
  if (static_cast<int64_t>(p.batch) * p.num_q_heads > kMaxQueryRows) return Status::kInvalidBatch;
  if (p.num_q_heads % p.num_kv_heads != 0) return Status::kGroupSizeMismatch;
  if (!supported_head_dim(p.head_dim)) return Status::kUnsupportedHeadDim;
  if (p.capacity < 1 || p.capacity > kMaxCapacity) return Status::kInvalidCapacity;
  if (p.max_length < 0 || p.max_length > p.capacity) return Status::kLengthBeyondCapacity;
  return Status::kSuccess;
}

/// Checks host-side lengths: each in [1, length_bound()].
inline Status validate_lengths(const DecodeProblem& p, const int* lengths) {
  if (lengths == nullptr) return Status::kNullPointer;
  for (int b = 0; b < p.batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > p.length_bound()) return Status::kLengthBeyondCapacity;
  }
  return Status::kSuccess;
}

/// The dual-layout KV cache of one layer:
///   K   [B, Hkv, Smax, d]  row-major rows, for fetching whole selected rows (step 6)
///   Kt  [B, Hkv, d, Smax]  K transposed, for gathering r components at every position (step 3)
///   V   [B, Hkv, Smax, d]
///   Vsum float32 [B, Hkv, d]  running sum of the V rows written so far (v-bar = Vsum / length)
/// The innermost dimension is always contiguous; the other strides are free.
template <typename T>
struct KVCacheView {
  T* k = nullptr;
  T* kt = nullptr;
  T* v = nullptr;
  float* vsum = nullptr;
  int64_t k_stride_b = 0, k_stride_h = 0, k_stride_s = 0;
  int64_t kt_stride_b = 0, kt_stride_h = 0, kt_stride_d = 0;
  int64_t v_stride_b = 0, v_stride_h = 0, v_stride_s = 0;
  int64_t vsum_stride_b = 0, vsum_stride_h = 0;

  SPARQ_HOST_DEVICE T* k_row(int b, int h, int64_t s) const {
    return k + b * k_stride_b + h * k_stride_h + s * k_stride_s;
  }
  SPARQ_HOST_DEVICE T* kt_row(int b, int h, int64_t dim) const {
    return kt + b * kt_stride_b + h * kt_stride_h + dim * kt_stride_d;
  }
  SPARQ_HOST_DEVICE T* v_row(int b, int h, int64_t s) const {
    return v + b * v_stride_b + h * v_stride_h + s * v_stride_s;
  }
  SPARQ_HOST_DEVICE float* vsum_row(int b, int h) const {
    return vsum + b * vsum_stride_b + h * vsum_stride_h;
  }
};

/// Row stride of Kt in a packed cache: the capacity rounded up to 8 elements, so every row of
/// Kt starts 16-byte aligned for any element type.
inline int64_t padded_capacity(int capacity) {
  return (static_cast<int64_t>(capacity) + 7) / 8 * 8;
}

/// Element counts of a packed dual-layout cache for `p` (what to allocate).
struct KVCacheSizes {
  int64_t k = 0, kt = 0, v = 0, vsum = 0;
};

inline KVCacheSizes packed_cache_sizes(const DecodeProblem& p) {
  KVCacheSizes s;
  const int64_t heads = static_cast<int64_t>(p.batch) * p.num_kv_heads;
  s.k = heads * p.capacity * p.head_dim;
  s.kt = heads * p.head_dim * padded_capacity(p.capacity);
  s.v = s.k;
  s.vsum = heads * p.head_dim;
  return s;
}

/// A view over packed buffers of the sizes packed_cache_sizes() gives.
template <typename T>
KVCacheView<T> make_packed_cache_view(const DecodeProblem& p, T* k, T* kt, T* v, float* vsum) {
  KVCacheView<T> c;
  c.k = k;
  c.kt = kt;
  c.v = v;
  c.vsum = vsum;
  const int64_t d = p.head_dim, smax = p.capacity, sp = padded_capacity(p.capacity);
  c.k_stride_s = d;
  c.k_stride_h = smax * d;
  c.k_stride_b = p.num_kv_heads * smax * d;
  c.kt_stride_d = sp;
  c.kt_stride_h = d * sp;
  c.kt_stride_b = p.num_kv_heads * d * sp;
  c.v_stride_s = c.k_stride_s;
  c.v_stride_h = c.k_stride_h;
  c.v_stride_b = c.k_stride_b;
  c.vsum_stride_h = d;
  c.vsum_stride_b = p.num_kv_heads * d;
  return c;
}

/// Strides must be positive and large enough that rows do not overlap. A null vsum (allowed
/// without reallocation) is never indexed, so its strides are not checked.
template <typename T>
Status validate_strides(const DecodeProblem& p, const KVCacheView<T>& c) {
  const int64_t d = p.head_dim, smax = p.capacity;
  if (c.k_stride_s < d || c.k_stride_h < 1 || c.k_stride_b < 1) return Status::kInvalidStride;
  if (c.v_stride_s < d || c.v_stride_h < 1 || c.v_stride_b < 1) return Status::kInvalidStride;
  if (c.kt_stride_d < smax || c.kt_stride_h < 1 || c.kt_stride_b < 1) return Status::kInvalidStride;
  if (c.vsum != nullptr && (c.vsum_stride_h < d || c.vsum_stride_b < 1))
    return Status::kInvalidStride;
  return Status::kSuccess;
}

}  // namespace sparq
