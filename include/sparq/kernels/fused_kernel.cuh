// SparQ decode in one launch, for few (sequence, unit) pairs: a cluster of 8 blocks per unit
// (sm_90), each owning a segment of positions, runs every step on its segment with the
// intermediates in shared memory: approximate logits, softmax normalisers (merged across the
// cluster), ranking keys, the cluster-wide top-k, exact attention on its own selected rows,
// and finally the merge of the 8 partial states with alpha and v-bar. At batch 1 the
// three-launch pipeline is latency-bound (no launch fills the device, and the logits make a
// round trip through global memory); here only the KV cache and the output touch DRAM.
#pragma once

#include <cooperative_groups.h>

#include <algorithm>
#include <cstdint>

#include "sparq/device/approx_scores.cuh"
#include "sparq/device/mean_interpolation.cuh"
#include "sparq/device/phase_times.cuh"
#include "sparq/device/sparse_attention.cuh"
#include "sparq/device/topr_select.cuh"
#include "sparq/kernels/attend_kernel.cuh"
#include "sparq/kernels/score_kernel.cuh"
#include "sparq/kernels/select_kernel.cuh"

namespace sparq::kernels {

template <typename T>
struct FusedParams {
  const T* q;  // [B, Hq, D]
  KVCacheView<T> cache;
  const int* lengths;
  T* out;  // [B, Hq, D]
  int num_q_heads;
  int units_per_batch;
  int heads_per_unit;
  int group_size;
  int length_bound;
  int capacity;
  int r;
  int k;
  int local_window;
  bool reallocation;
  // Workspace, written for inspection (the same layout as the three-launch pipeline's).
  int* indices;  // [B * units, index_stride]: selected positions
  int64_t index_stride;
  float* alpha;  // [B, Hq]
};

constexpr int kFusedThreads = 256;
constexpr int kFusedWarps = kFusedThreads / 32;

/// Dynamic shared memory of one block: each head's query and partial output (D floats each),
/// its logits over the segment, and the segment's keys (units of several heads; one head's
/// keys overwrite its logits), or at least the attention step's scratch of D floats per warp,
/// which reuses that space.
inline size_t fused_smem_bytes(int heads_per_unit, int d, int segment) {
  const size_t h = static_cast<size_t>(heads_per_unit);
  const size_t logits_keys = h * segment + (h > 1 ? segment : 0);
  const size_t scratch = static_cast<size_t>(kFusedWarps) * d;
  return sizeof(float) * (2 * h * d + (logits_keys > scratch ? logits_keys : scratch));
}

/// Blocks per SM that sparq_fused_kernel<T, D, kBlocks> is compiled for (its register cap).
/// Clusters of 8 with d = 128: 3, at most 80 registers. With 128 registers (the cap of one
/// block) an H100 holds 2 such blocks per SM, and its GPCs (by our inference five of 18 SMs
/// and three of 14) fit 29 clusters of 8, not the 32 of batch 1 with 32 heads: 3 clusters ran in a
/// second wave, doubling the time (runs 8 and 10: 2, 3, 5 and 18 waves of 29 explain the times at
/// batch 1, 2, 4 and 16 within 8%). 3 per SM fit 45 clusters. Other head sizes spilled under 80
/// registers, and clusters of one block keep the kernel as it was measured: 0, no minimum.
template <typename T, int D>
constexpr int fused_min_blocks(int blocks) {
  return blocks > 1 && D == 128 ? 3 : 0;
}

/// What the register cap of fused_min_blocks costs: under 80 registers, heads one at a time
/// in the score step and 4 rows in flight per lane group in the attention step (score heads
/// 4 at a time and 8 rows spilled 128-700 bytes).
template <typename T, int D, int kBlocks>
struct FusedShape {
  static constexpr bool kCapped = fused_min_blocks<T, D>(kBlocks) > 1;
  static constexpr int kHeadsPerPass = kCapped ? 1 : kScoreHeadsPerPass;
  static constexpr int kRowsInFlight = kCapped ? 4 : kAttendUnroll;
};

namespace fused_detail {

/// Steps 5-6 by a block of kThreads: exact attention of each of the unit's nh heads (queries
/// q, global) over rows[0..count) of KV head kvh, heads across warps as in the attend kernel's
/// direct path. Writes each head's partial state (m, l in base 2; acc unnormalised) to
/// part_ml[h] and part_acc[h * D ..]; s_acc / s_ml are scratch of kThreads / 32 warps. Ends
/// with a barrier.
template <int kThreads, typename T, int D, int kUnroll = kAttendUnroll>
__device__ void attend_rows(const KVCacheView<T>& cache, int b, int kvh, const T* q, int nh,
                            const int* rows, int count, float (*s_acc)[D], float2* s_ml,
                            float* part_acc, float2* part_ml) {
  constexpr int kWarps = kThreads / 32;
  const int warp = threadIdx.x >> 5;
  const float qscale = 1.4426950408889634f / sqrtf(static_cast<float>(D));
  for (int hp = 0; hp < nh; hp += kWarps) {
    const WarpRole role(min(nh - hp, kWarps), warp, kWarps);
    device::AttentionState<T, D, 1> st;
    st.init(q + (hp + role.head) * D, 1, qscale);
    if (role.active)
      fold_rows_direct<T, D, kUnroll>(st, cache, b, kvh, rows, 0, count, count, role);
    st.merge_warp();
    st.store(0, s_acc[warp], &s_ml[warp], role.active);
    __syncthreads();
    for (int idx = threadIdx.x; idx < role.heads * D; idx += kThreads) {
      const int h = idx / D, j = idx % D;
      const float3 m_l_a =
          device::merge_stored_states(s_ml, &s_acc[0][0], D, h, role.heads, kWarps, j);
      part_acc[(hp + h) * D + j] = m_l_a.z;
      if (j == 0) part_ml[hp + h] = make_float2(m_l_a.x, m_l_a.y);
    }
    __syncthreads();
  }
}

}  // namespace fused_detail

/// kBlocks blocks per unit: kClusterBlocks for few units, or 1 (a cluster of one block) for
/// units of several heads at larger batch. Launched in clusters of kBlocks (launch_ex).
template <typename T, int D, int kBlocks = kClusterBlocks>
__global__ void __launch_bounds__(kFusedThreads, fused_min_blocks<T, D>(kBlocks))
    sparq_fused_kernel(FusedParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int V = device::kVec16<T>;
  constexpr int kHeadsPerPass = FusedShape<T, D, kBlocks>::kHeadsPerPass;
  using TopK = device::BlockTopK<kFusedThreads>;
  extern __shared__ __align__(16) float s_dyn[];
  // The top-r scratch is dead before the selection starts: the two share their space.
  __shared__ __align__(16) union {
    ClusterTopKShared<kFusedThreads> sel;
    uint64_t comp_keys[D];
  } s_shared_steps;
  ClusterTopKShared<kFusedThreads>& s_sel = s_shared_steps.sel;
  uint64_t* s_comp_keys = s_shared_steps.comp_keys;
  __shared__ int s_comp[D];
  __shared__ float s_inv_tau[kMaxHeadsPerUnit], s_max[kMaxHeadsPerUnit];
  __shared__ float s_inv_sum[kMaxHeadsPerUnit], s_alpha[kMaxHeadsPerUnit];
  __shared__ device::SoftmaxStats s_stats[kMaxHeadsPerUnit];
  __shared__ float2 s_part_ml[kMaxHeadsPerUnit];
  __shared__ float s_scratch[32 * kHeadsPerPass];
  __shared__ float2 s_ml[kFusedWarps];
  __shared__ float s_vbar_sum[D];  // the V sum row, for the last step's interpolation
  // The last step's thread keeps one column j through its iterations (their stride is a
  // multiple of D), so one V-sum value per thread.
  static_assert(kBlocks * kFusedThreads % D == 0, "a merge thread keeps its column");

  SPARQ_PHASE(kMarkStart);
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int b = blockIdx.z, unit = blockIdx.y;
  const int nh = p.heads_per_unit, h0 = unit * nh, kvh = h0 / p.group_size;
  const T* q = p.q + (static_cast<int64_t>(b) * p.num_q_heads + h0) * D;
  float* s_q = s_dyn;  // [nh][D]
  // The queries and the V sum row (read only by the blocks that merge) are requested with
  // the length, not after it: one round trip at the start, not a dependent one at the end.
  const bool merges = rank * kFusedThreads < nh * D;
  const float vbar_sum =
      p.reallocation && merges && threadIdx.x < D ? p.cache.vsum_row(b, kvh)[threadIdx.x] : 0.f;
  int len = p.lengths[b];
  load_unit_query<kFusedThreads, T, D>(q, nh, s_q);
  if (merges && threadIdx.x < D) s_vbar_sum[threadIdx.x] = vbar_sum;
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  const int keff = effective_k(p.k, len), leff = effective_window(p.local_window, len);
  const int seg = cluster_segment(len, kBlocks);
  const int begin = min(rank * seg, len), end = min(begin + seg, len), n = end - begin;
  float* s_part_acc = s_q + nh * D;       // [nh][D]
  float* s_logits = s_part_acc + nh * D;  // [nh][seg], position begin + s at s
  // [seg]; a unit of one head ranks by its own s-hat, so each logit becomes its key in place
  // (fused_smem_bytes) and alpha is summed from the keys (as in sparq_fused_block_kernel).
  const bool in_place = nh == 1;
  uint32_t* s_keys = reinterpret_cast<uint32_t*>(in_place ? s_logits : s_logits + nh * seg);
  // The attention step's per-warp scratch, over the logits and keys once alpha is summed
  // (fused_smem_bytes keeps room for it): 4 KB less static shared memory, which with the keys
  // in place leaves 3 blocks per SM up to 128k positions (d = 128).
  float(*s_acc_over_logits)[D] = reinterpret_cast<float(*)[D]>(s_logits);
  int* out = p.indices + (static_cast<int64_t>(b) * p.units_per_batch + unit) * p.index_stride;

  // Steps 1-2 (every block computes the same).
  loaded_query_prologue<kFusedThreads, T, D>(nh, p.r, s_q, s_comp_keys, s_comp, s_inv_tau);
  SPARQ_PHASE(kMarkQuery);

  // Step 3: approximate logits of this block's positions, into shared memory. With one head
  // each thread folds its logits into its softmax stats as it writes them (online).
  device::SoftmaxStats own_stats = device::empty_stats();
  const T* kt = p.cache.kt_row(b, kvh, 0);
  for (int s0 = begin + threadIdx.x * V; s0 < end; s0 += kFusedThreads * V) {
    for (int hb = 0; hb < nh; hb += kHeadsPerPass) {
      float acc[kHeadsPerPass][V];
      device::approx_logits<T, kHeadsPerPass>(kt, p.cache.kt_stride_d, s_comp, p.r, s_q, D, hb, nh,
                                              s0, len, p.capacity, acc);
#pragma unroll
      for (int h = 0; h < kHeadsPerPass; ++h) {
        if (hb + h >= nh) break;
        const float inv = s_inv_tau[hb + h];
#pragma unroll
        for (int v = 0; v < V; ++v) {
          acc[h][v] *= inv;
          if (s0 + v < end) s_logits[(hb + h) * seg + s0 + v - begin] = acc[h][v];
        }
      }
      if (in_place) own_stats = device::fold_stats(own_stats, acc[0], end - s0);
    }
  }
  // The stats of the segment, per head (the keys' step reads other threads' logits after the
  // cluster barrier below). Every block then merges all ranks' in rank order, so all hold
  // bitwise the same values.
  if (in_place) {
    // One barrier, in the block's merge of its threads' online stats. The mark is thread 0's
    // own logits written (no barrier of the scores' own).
    SPARQ_PHASE(kMarkScores);
    const device::SoftmaxStats seg_stats =
        device::block_merge_stats<kFusedThreads>(own_stats, s_ml);
    if (threadIdx.x == 0) s_stats[0] = seg_stats;
  } else {  // several heads: (max, then sum of exp) over the logits written
    __syncthreads();
    SPARQ_PHASE(kMarkScores);
    for (int hb = 0; hb < nh; hb += kHeadsPerPass) {
      float mx[kHeadsPerPass], sum[kHeadsPerPass];
#pragma unroll
      for (int h = 0; h < kHeadsPerPass; ++h) {
        mx[h] = -INFINITY;
        if (hb + h < nh)
          for (int s = threadIdx.x; s < n; s += kFusedThreads)
            mx[h] = fmaxf(mx[h], s_logits[(hb + h) * seg + s]);
      }
      device::block_max<kHeadsPerPass, kFusedThreads>(mx, s_scratch);
#pragma unroll
      for (int h = 0; h < kHeadsPerPass; ++h) {
        sum[h] = 0.f;
        if (hb + h < nh && mx[h] != -INFINITY)
          for (int s = threadIdx.x; s < n; s += kFusedThreads)
            sum[h] += __expf(s_logits[(hb + h) * seg + s] - mx[h]);
      }
      device::block_sum<kHeadsPerPass, kFusedThreads>(sum, s_scratch);
      if (threadIdx.x == 0) {
#pragma unroll
        for (int h = 0; h < kHeadsPerPass; ++h)
          if (hb + h < nh) s_stats[hb + h] = {mx[h], sum[h]};
      }
    }
  }
  device::cluster_sync_shared(cluster);  // every block's stats are published
  for (int h = threadIdx.x; h < nh; h += kFusedThreads) {
    device::SoftmaxStats all = device::empty_stats();
    for (int r = 0; r < kBlocks; ++r)
      all = device::merge_stats(all, cluster.map_shared_rank(s_stats, r)[h]);
    s_max[h] = all.m;
    s_inv_sum[h] = all.l > 0.f ? 1.f / all.l : 0.f;
  }
  s_sel.clear();
  __syncthreads();
  SPARQ_PHASE(kMarkStats);

  // Step 4: ranking keys (the sum of s-hat over the unit's heads; the local window forced in)
  // and the cluster's top-k positions, written in position order to the workspace.
  int first = 0, last = 0;  // this block's slice of `out`
  float own_alpha = 0.f;    // in place: this thread's s-hat of its selected positions
  if (keff == len) {
    for (int s = begin + threadIdx.x; s < end; s += kFusedThreads)
      out[s] = s;  // every row taken
    first = begin;
    last = end;
    __syncthreads();  // this block's positions in `out` are visible to all its threads
  } else {
    // Four consecutive positions per thread and step: 16-byte shared-memory reads and writes,
    // four keys' chains in flight (one position per step took 6 µs at 32k on an H200, 16
    // steps). Whole warps in every step, so the histogram adds are converged
    // (BlockTopK::add_all). With the keys in place each thread overwrites only the logits it
    // has read.
    const int lane = static_cast<int>(threadIdx.x & 31);
    for (int s0 = 4 * static_cast<int>(threadIdx.x); s0 - 4 * lane < n; s0 += 4 * kFusedThreads) {
      float sum[4] = {0.f, 0.f, 0.f, 0.f};
      for (int h = 0; h < nh; ++h) {
        float x[4];
        device::load4_below(s_logits + h * seg, s0, n, x);
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (s0 + i < n) sum[i] += device::shat(x[i], s_max[h], s_inv_sum[h]);
      }
      uint32_t key[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        key[i] = device::ranking_key(sum[i], begin + s0 + i, len, leff);
        // The window's keys carry no s-hat: counted here, before they are forced.
        if (s0 + i < n && in_place && key[i] == device::kForcedKey) own_alpha += sum[i];
      }
      device::store4_below(s_keys, s0, n, key);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        TopK::add_all(s_sel.hist[0], key[i] >> 24, s0 + i < n);
    }
    __syncthreads();
    SPARQ_PHASE(kMarkKeys);
    // Other selected keys are their s-hat, order-mapped (0 + s-hat): they decode exactly.
    select_detail::cluster_top_k<kFusedThreads, kBlocks>(
        cluster, s_sel, s_keys, n, keff, begin, rank, out, &first, &last, [&](uint32_t key, int) {
          if (in_place) own_alpha += device::key_shat(key);
        });
    // cluster_top_k ends with the compaction's barrier: `out` is visible to the block.
  }

  // alpha: this block's share of the sum of s-hat over the selected positions, per head.
  if (in_place && keff != len) {  // from the keys (own_alpha)
    float a[1] = {own_alpha};
    device::block_sum<1, kFusedThreads>(a, s_scratch);
    if (threadIdx.x == 0) s_alpha[0] = a[0];
  } else {  // from the logits
    for (int hb = 0; hb < nh; hb += kHeadsPerPass) {
      float a[kHeadsPerPass];
#pragma unroll
      for (int h = 0; h < kHeadsPerPass; ++h)
        a[h] = 0.f;
      for (int i = first + threadIdx.x; i < last; i += kFusedThreads) {
        const int s = out[i] - begin;
#pragma unroll
        for (int h = 0; h < kHeadsPerPass; ++h)
          if (hb + h < nh)
            a[h] += device::shat(s_logits[(hb + h) * seg + s], s_max[hb + h], s_inv_sum[hb + h]);
      }
      device::block_sum<kHeadsPerPass, kFusedThreads>(a, s_scratch);
      if (threadIdx.x == 0) {
#pragma unroll
        for (int h = 0; h < kHeadsPerPass; ++h)
          if (hb + h < nh) s_alpha[hb + h] = a[h];
      }
    }
  }

  SPARQ_PHASE(kMarkAlpha);

  // Steps 5-6: exact attention of each head over this block's selected rows.
  fused_detail::attend_rows<kFusedThreads, T, D, FusedShape<T, D, kBlocks>::kRowsInFlight>(
      p.cache, b, kvh, q, nh, out + first, last - first, s_acc_over_logits, s_ml, s_part_acc,
      s_part_ml);
  SPARQ_PHASE(kMarkAttend);

  // Step 7: merge the cluster's partial states in rank order, interpolate with v-bar, write.
  device::cluster_sync_shared(cluster);  // partial states and alphas are published
  SPARQ_PHASE(kMarkPartials);
  for (int idx = rank * kFusedThreads + threadIdx.x; idx < nh * D; idx += kBlocks * kFusedThreads) {
    const int h = idx / D, j = idx % D;
    float2 ml[kBlocks];
    float acc[kBlocks];
    float alpha = 0.f;
#pragma unroll
    for (int r = 0; r < kBlocks; ++r) {
      ml[r] = cluster.map_shared_rank(s_part_ml, r)[h];
      acc[r] = cluster.map_shared_rank(s_part_acc, r)[h * D + j];
      alpha += cluster.map_shared_rank(s_alpha, r)[h];
    }
    const float3 m_l_a = device::merge_stored_states(ml, acc, 1, 0, 1, kBlocks, 0);
    float y = m_l_a.y > 0.f ? m_l_a.z / m_l_a.y : 0.f;
    if (p.reallocation && len > 0) y = device::interpolate_mean(alpha, y, s_vbar_sum[j], len);
    const int64_t row = static_cast<int64_t>(b) * p.num_q_heads + h0 + h;
    p.out[row * D + j] = from_float<T>(y);
    if (j == 0) p.alpha[row] = alpha;
  }
  SPARQ_PHASE(kMarkMerge);
  cluster.sync();  // keep every block's shared memory alive until all have read it
  SPARQ_PHASE(kMarkEnd);
#endif
}

constexpr int kFusedBlockThreads = 512;

/// Dynamic shared memory of sparq_fused_block_kernel: the query and one word per position.
inline size_t fused_block_smem_bytes(int d, int length_bound) {
  return sizeof(float) * (static_cast<size_t>(d) + static_cast<size_t>(length_bound + 3) / 4 * 4);
}

/// Units of one query head (MHA, or per-query-head GQA) when there are too many units for a
/// cluster each: one block per unit runs every step with one word of shared memory per
/// position, the logit, overwritten in place by its ranking key. alpha reads s-hat back from
/// the keys (the local window's s-hat is summed before its keys are forced). The approximate
/// logits never go to DRAM and no step waits for a launch boundary.
template <typename T, int D>
__global__ void __launch_bounds__(kFusedBlockThreads) sparq_fused_block_kernel(FusedParams<T> p) {
  constexpr int kThreads = kFusedBlockThreads, kWarps = kThreads / 32;
  constexpr int V = device::kVec16<T>;
  using TopK = device::BlockTopK<kThreads>;
  extern __shared__ __align__(16) float s_dyn[];
  __shared__ typename TopK::TempStorage s_topk;
  __shared__ __align__(16) uint64_t s_comp_keys[D];  // top-r scratch
  __shared__ int s_comp[D];
  __shared__ float s_inv_tau[1], s_scratch[32];
  __shared__ float s_acc[kWarps][D];
  __shared__ float2 s_ml[kWarps];
  __shared__ float s_part_acc[D];
  __shared__ float2 s_part_ml[1];
  __shared__ float s_vbar_sum[D];  // the V sum row, for the interpolation at the end

  SPARQ_PHASE(kMarkStart);
  const int b = blockIdx.y, h = blockIdx.x, kvh = h / p.group_size;  // one head per unit
  const int64_t row = static_cast<int64_t>(b) * p.num_q_heads + h;
  const T* q = p.q + row * D;
  float* s_q = s_dyn;  // [D]
  // The query and the V sum row are requested with the length, not after it: one round trip
  // at the start, not a dependent one at the end.
  const float vbar_sum =
      p.reallocation && threadIdx.x < D ? p.cache.vsum_row(b, kvh)[threadIdx.x] : 0.f;
  int len = p.lengths[b];
  load_unit_query<kThreads, T, D>(q, 1, s_q);
  if (threadIdx.x < D) s_vbar_sum[threadIdx.x] = vbar_sum;
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  const int keff = effective_k(p.k, len), leff = effective_window(p.local_window, len);
  float* s_x = s_dyn + D;                               // [len]: logits, then keys
  uint32_t* s_keys = reinterpret_cast<uint32_t*>(s_x);  // 16-byte aligned (D % 64 == 0)
  int* out = p.indices + (static_cast<int64_t>(b) * p.units_per_batch + h) * p.index_stride;

  // Steps 1-3: top-r, temperature, approximate logits of every position into shared memory,
  // each thread folding its logits into its softmax stats as it writes them (online).
  TopK::clear_histogram(s_topk);  // ordered before step 4's adds by the barriers between
  loaded_query_prologue<kThreads, T, D>(1, p.r, s_q, s_comp_keys, s_comp, s_inv_tau);
  SPARQ_PHASE(kMarkQuery);
  const T* kt = p.cache.kt_row(b, kvh, 0);
  const float inv_tau = s_inv_tau[0];
  device::SoftmaxStats own_stats = device::empty_stats();
  for (int s0 = threadIdx.x * V; s0 < len; s0 += kThreads * V) {
    float acc[1][V];
    device::approx_logits<T, 1>(kt, p.cache.kt_stride_d, s_comp, p.r, s_q, D, 0, 1, s0, len,
                                p.capacity, acc);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      acc[0][v] *= inv_tau;
      if (s0 + v < len) s_x[s0 + v] = acc[0][v];
    }
    own_stats = device::fold_stats(own_stats, acc[0], len - s0);
  }
  SPARQ_PHASE(kMarkScores);  // thread 0's own logits written (no barrier of the scores' own)

  // The softmax normaliser of the approximate logits, in one barrier, which also publishes
  // the logits to step 4's threads.
  const device::SoftmaxStats stats = device::block_merge_stats<kThreads>(own_stats, s_ml);
  const float m = stats.m, inv_sum = stats.l > 0.f ? 1.f / stats.l : 0.f;
  SPARQ_PHASE(kMarkStats);

  // Step 4: each logit becomes its key in place (s-hat; the window forced in) and counts in
  // the first radix histogram. alpha: the window's s-hat here (every row's when all are taken).
  const bool take_all = keff == len;
  float alpha[1] = {0.f};
  // Four consecutive positions per thread and step (16-byte reads and writes, four keys'
  // chains in flight), each thread overwriting only the logits it has read. Whole warps in
  // every step, so the histogram adds are converged (BlockTopK::add_all).
  const int lane = static_cast<int>(threadIdx.x & 31);
  for (int s0 = 4 * static_cast<int>(threadIdx.x); s0 - 4 * lane < len; s0 += 4 * kThreads) {
    float x[4];
    device::load4_below(s_x, s0, len, x);
    uint32_t key[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int s = s0 + i;
      const float shat = s < len ? device::shat(x[i], m, inv_sum) : 0.f;
      key[i] = device::ranking_key(shat, s, len, leff);
      if (s < len && (s >= len - leff || take_all)) alpha[0] += shat;
    }
    device::store4_below(s_keys, s0, len, key);
    if (!take_all) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        TopK::add_all(s_topk.hist, key[i] >> 24, s0 + i < len);
    }
  }
  __syncthreads();
  SPARQ_PHASE(kMarkKeys);
  if (take_all) {
    for (int s = threadIdx.x; s < len; s += kThreads)
      out[s] = s;
  } else {
    int need_equal = 0;
    const uint32_t threshold = TopK::threshold(s_topk, s_keys, len, keff, &need_equal);
    // The other selected positions' s-hat, decoded from their keys as they are written.
    TopK::compact(s_topk, s_keys, len, threshold, need_equal, out, 0, 0, 0,
                  [&](uint32_t key, int) { alpha[0] += device::key_shat(key); });
    SPARQ_PHASE(kMarkCompact);
  }
  device::block_sum<1, kThreads>(alpha, s_scratch);  // its barriers also publish `out`
  SPARQ_PHASE(kMarkAlpha);

  // Steps 5-7: exact attention over the selected rows, then the interpolation with v-bar.
  fused_detail::attend_rows<kThreads, T, D>(p.cache, b, kvh, q, 1, out, keff, s_acc, s_ml,
                                            s_part_acc, s_part_ml);
  SPARQ_PHASE(kMarkAttend);
  const float2 ml = s_part_ml[0];
  for (int j = threadIdx.x; j < D; j += kThreads) {
    float y = ml.y > 0.f ? s_part_acc[j] / ml.y : 0.f;
    if (p.reallocation && len > 0) y = device::interpolate_mean(alpha[0], y, s_vbar_sum[j], len);
    p.out[row * D + j] = from_float<T>(y);
  }
  if (threadIdx.x == 0) p.alpha[row] = alpha[0];
  SPARQ_PHASE(kMarkEnd);
}

namespace fused_detail {

/// Clusters of sparq_fused_kernel<T, D, kBlocks> the device holds at once with `smem` bytes
/// of dynamic shared memory per block (0 where none fits).
template <typename T, int D, int kBlocks>
int query_resident_clusters(size_t smem) {
  const KernelLaunch launch(dim3(kBlocks, 1, 1), dim3(kFusedThreads), smem, nullptr, kBlocks);
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, sparq_fused_kernel<T, D, kBlocks>, &launch.cfg) !=
      cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return clusters;
}

/// Largest dynamic shared memory of sparq_fused_kernel<T, D, kBlocks> on this device (its limit
/// raised once), or 0 where there are no clusters or a cluster of it cannot be resident.
template <typename T, int D, int kBlocks>
int smem_limit() {
  static const int limit = [] {
    if (!device_has_clusters()) return 0;
    const int bytes = raise_dynamic_smem(sparq_fused_kernel<T, D, kBlocks>);
    if (bytes <= 0) return 0;
    return query_resident_clusters<T, D, kBlocks>(static_cast<size_t>(bytes)) > 0 ? bytes : 0;
  }();
  return limit;
}

}  // namespace fused_detail

/// Shared memory steps in which fused_resident_clusters knows the device.
constexpr size_t kResidentSmemStep = 8192;

/// Clusters of sparq_fused_kernel<T, D, kBlocks> resident at once with `smem` bytes of dynamic
/// shared memory per block: the device's answer for `smem` rounded up to kResidentSmemStep
/// (more shared memory never fits more blocks, so this never overstates). Every step up to the
/// kernel's limit is asked at the first call (about 28 queries), of the device current then,
/// as every limit here; so a later call, in a stream capture for one, asks nothing. 0 without
/// clusters or where `smem` exceeds the limit.
template <typename T, int D, int kBlocks = kClusterBlocks>
int fused_resident_clusters(size_t smem) {
  constexpr int kSteps = 64;  // up to 512 KiB, beyond any device's shared memory per block
  struct Table {
    size_t limit = 0;
    int clusters[kSteps] = {};
  };
  static const Table table = [] {
    Table t;
    const int limit = fused_detail::smem_limit<T, D, kBlocks>();
    if (limit <= 0) return t;
    t.limit = static_cast<size_t>(limit);
    for (size_t step = 0; step < kSteps && (step == 0 || (step - 1) * kResidentSmemStep < t.limit);
         ++step)
      t.clusters[step] = fused_detail::query_resident_clusters<T, D, kBlocks>(
          std::min(step * kResidentSmemStep, t.limit));
    return t;
  }();
  if (smem > table.limit) return 0;
  const size_t step = (smem + kResidentSmemStep - 1) / kResidentSmemStep;
  return step < kSteps ? table.clusters[step] : 0;
}

/// Length bound up to which fewer units than half the SMs also take the block route (units
/// of one head).
constexpr int64_t kBlockRouteShortBound = 8192;

/// Length bound from which units of one head take the cluster route where all their clusters
/// are resident at once (cluster_route_rule). Runs 8 and 10 timed the route in waves of 29
/// clusters (H100): each wave took about 25 µs at S 4k, 33 at 16k and 49 at 32k, against the
/// block route's 24.0 and 35.2 at 4k and 8k and the three launches' 48.8 and 63.4 at 16k and
/// 32k (batch 1, 32 heads; run 10). Not yet timed in one wave.
constexpr int64_t kClusterRouteMinBound = 8192;

/// Whether `batch_units` units take the cluster route (sparq_fused_kernel, a cluster of 8
/// blocks per unit) where `resident_clusters` clusters fit on the device at once: units of one
/// head from kClusterRouteMinBound positions, all in one wave. A pure function, so that CPU
/// tests cover it. A second wave doubles the time (fused_min_blocks), hence the residency test.
inline bool cluster_route_rule(int64_t batch_units, int64_t length_bound, int heads_per_unit,
                               int resident_clusters) {
  return heads_per_unit == 1 && length_bound >= kClusterRouteMinBound && batch_units >= 1 &&
         batch_units <= resident_clusters;
}

/// cluster_route_rule on the current device for a cluster of kClusterBlocks per unit, with the
/// shared memory of the length bound's segment (asks the device only where the rest holds).
template <typename T, int D>
bool cluster_route_preferred(int64_t batch_units, int64_t length_bound, int heads_per_unit) {
  if (!cluster_route_rule(batch_units, length_bound, heads_per_unit, INT32_MAX)) return false;
  const size_t smem =
      fused_smem_bytes(heads_per_unit, D, cluster_segment(static_cast<int>(length_bound)));
  return cluster_route_rule(batch_units, length_bound, heads_per_unit,
                            fused_resident_clusters<T, D>(smem));
}

/// Peak DRAM GB/s per SM up to which many units of one head (more than the SM count) take the
/// block route (32 heads, d 128, 1/8; block route against three launches, both forced). On an
/// H100 SXM (25.4 GB/s per SM), run 11a, batch 8, 32 and 64 at 1k-32k positions: from 4k at
/// most 1.5% slower (B8 S16k) and up to 10% faster (B64 S32k: 1866 vs 2073 µs); below 4k up to
/// 49% slower. On an H200 (about 36 GB/s per SM by its 4.8 TB/s) it lost at batch 64: 313 vs
/// 267, 869 vs 811 and 1666 vs 1634 µs at S4k, 16k and 32k (twelfth session). A block per unit
/// saves the logits' and keys' round trip through DRAM but runs its stages one after another;
/// that pays where DRAM is slow next to the SMs.
constexpr double kBlockRouteMaxGbsPerSm = 30.0;

/// Length bound from which many units take the block route where kBlockRouteMaxGbsPerSm
/// allows it (the shortest measured; shorter ones keep the three launches).
constexpr int64_t kBlockRouteManyUnitsMinBound = 4096;

/// block_route_preferred for a device with `sms` multiprocessors and `gbs_per_sm` peak DRAM
/// GB/s per SM (0: unknown): a pure function, so that CPU tests cover every branch.
inline bool block_route_rule(int64_t batch_units, int64_t length_bound, int heads_per_unit, int sms,
                             double gbs_per_sm) {
  if (batch_units > sms)
    return heads_per_unit == 1 && length_bound >= kBlockRouteManyUnitsMinBound && gbs_per_sm > 0 &&
           gbs_per_sm <= kBlockRouteMaxGbsPerSm;
  return batch_units * 2 > sms || (heads_per_unit == 1 && length_bound <= kBlockRouteShortBound);
}

/// Where the launch API takes the block-per-unit route (block_route_rule on this device):
/// - between half and all of the SM count of units (one wave of blocks): measured at batch 4,
///   S 16k, 80 against 127 µs for the three launches (H100, run 8);
/// - for units of one head, fewer units where the length bound is at most
///   kBlockRouteShortBound. At batch 1 it took 55.6 µs at S 16k and 94.7 at S 32k (run 8;
///   three launches 58.1 and 74.1): a block per head grows by about 2.4 µs per 1k positions
///   from about 16.5, while the three launches have a floor of about 40 µs. At S 4k and 8k it
///   took 24.0 and 34.4 against 38.8 and 41.6 (run 10);
/// - for units of one head, more units than SMs on cards with little DRAM bandwidth per SM
///   (kBlockRouteMaxGbsPerSm) from kBlockRouteManyUnitsMinBound positions.
/// Units of several heads with more units than SMs were not measured: three launches. Where
/// cluster_route_preferred holds (batch 1 with 32 heads from 8k positions), the plan takes the
/// cluster route before asking this.
inline bool block_route_preferred(int64_t batch_units, int64_t length_bound, int heads_per_unit) {
  return block_route_rule(batch_units, length_bound, heads_per_unit, planning_sm_count(),
                          device_dram_gbs_per_sm());
}

/// Whether sparq_fused_kernel<T, D, kBlocks> can run this shape on the current device.
template <typename T, int D, int kBlocks = kClusterBlocks>
bool fused_fits(int length_bound, int heads_per_unit) {
  const int limit = fused_detail::smem_limit<T, D, kBlocks>();
  return limit > 0 && fused_smem_bytes(heads_per_unit, D, cluster_segment(length_bound, kBlocks)) <=
                          static_cast<size_t>(limit);
}

/// Whether the block-per-unit route can run this shape: sparq_fused_block_kernel for units of
/// one head (any architecture), sparq_fused_kernel<T, D, 1> for units of several (sm_90).
template <typename T, int D>
bool fused_block_fits(int length_bound, int heads_per_unit) {
  if (heads_per_unit > 1) return fused_fits<T, D, 1>(length_bound, heads_per_unit);
  static const int limit = raise_dynamic_smem(sparq_fused_block_kernel<T, D>);
  return limit > 0 && fused_block_smem_bytes(D, length_bound) <= static_cast<size_t>(limit);
}

}  // namespace sparq::kernels
