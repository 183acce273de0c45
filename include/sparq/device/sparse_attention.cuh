// Steps 5-6 core: exact softmax(q . K / sqrt(d)) . V over a list of cache rows (the top-k
// selection, or every row for dense decoding), as unnormalised partial states that merge
// exactly across blocks. A "row group" of lanes reads one 16-byte chunk per lane of a row.
#pragma once

#include "sparq/device/reduce.cuh"
#include "sparq/device/softmax_state.cuh"
#include "sparq/device/vec.cuh"
#include "sparq/problem.hpp"

namespace sparq::device {

/// How a warp covers rows of d elements of T with 16-byte loads.
template <typename T, int D>
struct RowGeometry {
  static constexpr int kElemsPerChunk = kVec16<T>;
  static constexpr int kChunks = D / kElemsPerChunk;                // 16-byte chunks per row
  static constexpr int kLanesPerRow = kChunks < 32 ? kChunks : 32;  // lanes sharing one row
  static constexpr int kChunksPerLane = kChunks / kLanesPerRow;
  static constexpr int kElemsPerLane = kChunksPerLane * kElemsPerChunk;
  static constexpr int kRowsPerWarp = 32 / kLanesPerRow;
  /// First element of a lane's i-th chunk within the row.
  __device__ static int elem(int lane_in_row, int i) {
    return (lane_in_row + i * kLanesPerRow) * kElemsPerChunk;
  }
};

/// Online-softmax state of up to kHeads query heads for the rows one lane group has seen.
/// Logits are kept in base 2 (q is pre-scaled by log2(e) / sqrt(d)).
template <typename T, int D, int kHeads>
struct AttentionState {
  using G = RowGeometry<T, D>;
  float q[kHeads][G::kElemsPerLane];
  float acc[kHeads][G::kElemsPerLane];
  float m[kHeads];
  float l[kHeads];

  /// Loads this lane's slice of each head's query (`q_heads`: num_heads rows of D, global).
  template <typename Q>
  __device__ void init(const Q* q_heads, int num_heads, float scale) {
    const int lr = (threadIdx.x & 31) % G::kLanesPerRow;
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      m[h] = -INFINITY;
      l[h] = 0.f;
#pragma unroll
      for (int i = 0; i < G::kChunksPerLane; ++i)
#pragma unroll
        for (int e = 0; e < G::kElemsPerChunk; ++e) {
          const int j = G::elem(lr, i) + e;
          q[h][i * G::kElemsPerChunk + e] =
              h < num_heads ? to_float(q_heads[h * D + j]) * scale : 0.f;
          acc[h][i * G::kElemsPerChunk + e] = 0.f;
        }
    }
  }

  /// Folds kUnroll rows into the state. Rows arrive as raw 16-byte chunks (this lane's part
  /// of K and V) so that many stay in flight in few registers; `valid` marks real rows.
  template <int kUnroll>
  __device__ void update(const uint4 (&k)[kUnroll][G::kChunksPerLane],
                         const uint4 (&v)[kUnroll][G::kChunksPerLane], const bool (&valid)[kUnroll],
                         int num_heads) {
    float s[kHeads][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[G::kElemsPerLane];
#pragma unroll
      for (int i = 0; i < G::kChunksPerLane; ++i)
        unpack16<T>(k[u][i], kf + i * G::kElemsPerChunk);
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < G::kElemsPerLane; ++e)
          dot = fmaf(q[h][e], kf[e], dot);
        dot = group_sum<G::kLanesPerRow>(dot);
        s[h][u] = valid[u] && h < num_heads ? dot : -INFINITY;
      }
    }
    float mx[kHeads], sum[kHeads];
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      mx[h] = m[h];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        mx[h] = fmaxf(mx[h], s[h][u]);
      // All -inf (no valid row yet): keep the state; exp2f(-inf - -inf) would be NaN.
      const float scale = mx[h] == -INFINITY ? 1.f : exp2f(m[h] - mx[h]);
      sum[h] = l[h] * scale;
#pragma unroll
      for (int e = 0; e < G::kElemsPerLane; ++e)
        acc[h][e] *= scale;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float vf[G::kElemsPerLane];
#pragma unroll
      for (int i = 0; i < G::kChunksPerLane; ++i)
        unpack16<T>(v[u][i], vf + i * G::kElemsPerChunk);
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        const float p = mx[h] == -INFINITY ? 0.f : exp2f(s[h][u] - mx[h]);
        sum[h] += p;
#pragma unroll
        for (int e = 0; e < G::kElemsPerLane; ++e)
          acc[h][e] = fmaf(p, vf[e], acc[h][e]);
      }
    }
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      l[h] = sum[h];
      m[h] = mx[h];
    }
  }

  /// Merges the states of the row groups of a warp: afterwards every lane group holds the
  /// warp's state.
  __device__ void merge_warp() {
#pragma unroll
    for (int off = G::kLanesPerRow; off < 32; off <<= 1) {
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        const float mo = __shfl_xor_sync(0xffffffffu, m[h], off);
        const float lo = __shfl_xor_sync(0xffffffffu, l[h], off);
        const float mx = fmaxf(m[h], mo);
        const float ws = mx == -INFINITY ? 0.f : exp2f(m[h] - mx);
        const float wo = mx == -INFINITY ? 0.f : exp2f(mo - mx);
#pragma unroll
        for (int e = 0; e < G::kElemsPerLane; ++e) {
          const float ao = __shfl_xor_sync(0xffffffffu, acc[h][e], off);
          acc[h][e] = acc[h][e] * ws + ao * wo;
        }
        l[h] = l[h] * ws + lo * wo;
        m[h] = mx;
      }
    }
  }
  /// After merge_warp: lane group 0 stores head h's state, acc to acc_row[0..D) and (m, l) to
  /// *ml ((-inf, 0) for a warp that saw no rows of its own: `active` false).
  __device__ void store(int h, float* acc_row, float2* ml, bool active) const {
    const int lane = threadIdx.x & 31;
    if (lane >= G::kLanesPerRow) return;
#pragma unroll
    for (int i = 0; i < G::kChunksPerLane; ++i)
#pragma unroll
      for (int e = 0; e < G::kElemsPerChunk; ++e)
        acc_row[G::elem(lane, i) + e] = acc[h][i * G::kElemsPerChunk + e];
    if (lane == 0) *ml = active ? make_float2(m[h], l[h]) : make_float2(-INFINITY, 0.f);
  }
};

/// Merges stored partial states (m, l in base 2; acc unnormalised) of parts first, first +
/// stride, ... below `parts` for dimension j: ml[part], acc[part * acc_stride + j]. Returns
/// (m, l, acc) of their union; (-inf, 0, 0) when none saw a row.
__device__ __forceinline__ float3 merge_stored_states(const float2* ml, const float* acc,
                                                      int acc_stride, int first, int stride,
                                                      int parts, int j) {
  float mx = -INFINITY;
  for (int w = first; w < parts; w += stride)
    if (ml[w].y > 0.f) mx = fmaxf(mx, ml[w].x);
  float l = 0.f, a = 0.f;
  if (mx != -INFINITY) {
    for (int w = first; w < parts; w += stride) {
      if (ml[w].y > 0.f) {
        const float wt = exp2f(ml[w].x - mx);
        l = fmaf(ml[w].y, wt, l);
        a = fmaf(acc[w * acc_stride + j], wt, a);
      }
    }
  }
  return make_float3(mx, l, a);
}

/// Issues the loads of this lane's 16-byte chunks of row `row` of K and V (raw, unconverted).
/// Rows are read once per step: the loads stream past L1.
template <typename T, int D>
__device__ __forceinline__ void load_kv_row(const KVCacheView<T>& c, int b, int kvh, int row,
                                            uint4* k, uint4* v) {
  using G = RowGeometry<T, D>;
  const int lr = (threadIdx.x & 31) % G::kLanesPerRow;
  const T* kr = c.k_row(b, kvh, row);
  const T* vr = c.v_row(b, kvh, row);
#pragma unroll
  for (int i = 0; i < G::kChunksPerLane; ++i) {
    const int j = G::elem(lr, i);
    k[i] = load16_stream(kr + j);
    v[i] = load16_stream(vr + j);
  }
}

/// Splits whose partial states merge_split_partials requests together.
constexpr int kMergeBatch = 16;

/// Merges split partial states (m, l in base 2, acc unnormalised) of one head and one
/// dimension, in split order (deterministic), online over batches of kMergeBatch splits.
/// Returns acc / l, or 0 for an empty head. Every split of the launch wrote its state (zeros
/// where it saw no row), so each batch's (m, l) and acc loads are issued together, before any
/// test of l: one L2 round trip per batch (up to 16 splits) instead of one per few splits.
__device__ __forceinline__ float merge_split_partials(const float2* ml, const float* acc,
                                                      int splits, int64_t acc_stride) {
  float mx = -INFINITY, l = 0.f, a = 0.f;
  for (int s0 = 0; s0 < splits; s0 += kMergeBatch) {
    float2 x[kMergeBatch];
    float y[kMergeBatch];
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      const bool in = s0 + u < splits;
      x[u] = in ? __ldcg(ml + s0 + u) : make_float2(-INFINITY, 0.f);
      y[u] = in ? __ldcg(acc + (s0 + u) * acc_stride) : 0.f;
    }
    float bm = mx;
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u)
      if (x[u].y > 0.f) bm = fmaxf(bm, x[u].x);
    if (bm == -INFINITY) continue;
    const float r = exp2f(mx - bm);  // 0 before the first split with rows
    l *= r;
    a *= r;
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      if (x[u].y > 0.f) {
        const float w = exp2f(x[u].x - bm);
        l = fmaf(x[u].y, w, l);
        a = fmaf(y[u], w, a);
      }
    }
    mx = bm;
  }
  return mx == -INFINITY ? 0.f : a / l;
}

}  // namespace sparq::device
