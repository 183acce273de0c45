// SparQ launch 2 of 3: per (sequence, unit): merge the softmax stats into each head's softmax
// normaliser, form the ranking key (sum over the unit's heads of s-hat; the local window
// forced in), select the top-k positions in position order, and compute alpha per head.
// Two kernels: a cluster of blocks per unit (sm_90, keys spread over the blocks' shared
// memory), and one block per unit (keys in shared memory or, for long sequences, in the
// workspace).
#pragma once

#include <cooperative_groups.h>

#include "sparq/device/cluster_sync.cuh"
#include "sparq/device/dependent_launch.cuh"
#include "sparq/device/phase_times.cuh"
#include "sparq/device/reduce.cuh"
#include "sparq/device/softmax_state.cuh"
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
  int stat_positions;   // positions per softmax-stats entry
  int stat_chunks;      // stats entries per query head
  const float* logits;  // [B, Hq, logit_stride]
  int64_t logit_stride;
  const device::SoftmaxStats* stats;  // [B, Hq, stat_chunks]
  uint32_t* keys;                     // [B * units, logit_stride] (single-block, global keys)
  int* indices;                       // [B * units, index_stride]
  int64_t index_stride;
  float* alpha;                // [B, Hq]
  int candidate_capacity = 0;  // select_stream_kernel: candidates its shared memory holds
  int above_capacity = 0;      // select_stream_kernel: higher-bin positions it holds
};

constexpr int kSelectThreads = 512;
constexpr int kSelectThreadsWide = 1024;
constexpr int kMaxHeadsPerUnit = 32;

namespace select_detail {

/// Where one (sequence, unit) stands: its clamped length, k, window and row pointers.
struct UnitView {
  int b, unit, nh, h0, len, keff, leff;
  const float* logits;  // the unit's first head's logits
  int* out;

  __device__ UnitView(const SelectParams& p, int b_, int unit_) : b(b_), unit(unit_) {
    nh = p.heads_per_unit;
    h0 = unit * nh;
    len = p.lengths[b];
    len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
    keff = effective_k(p.k, len);
    leff = effective_window(p.local_window, len);
    logits = p.logits + (static_cast<int64_t>(b) * p.num_q_heads + h0) * p.logit_stride;
    out = p.indices + (static_cast<int64_t>(b) * p.units_per_batch + unit) * p.index_stride;
  }
};

/// Each head's softmax max and 1/sum from the stats entries (exact merge; one warp per head).
/// Each lane requests up to kBatch entries before it merges any (one round trip per kBatch *
/// 32 entries; 256 positions each in bf16), merged in the same order as one at a time, so the
/// result is the same whatever kBatch: the selection kernels at batch 1 take 8 (one round trip
/// up to 64k, two at 128k, where 4 whole took two at 16k and four at 128k); the streaming one
/// 4 (at 8 its 64 registers spill).
template <int kThreads, int kBatch = 4>
__device__ void head_normalisers(const SelectParams& p, const UnitView& u, float* s_max,
                                 float* s_inv_sum) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int used_chunks = (u.len + p.stat_positions - 1) / p.stat_positions;
  for (int h = warp; h < u.nh; h += kThreads / 32) {
    const device::SoftmaxStats* st =
        p.stats + (static_cast<int64_t>(u.b) * p.num_q_heads + u.h0 + h) * p.stat_chunks;
    device::SoftmaxStats acc = device::empty_stats();
    for (int c = lane; c < used_chunks; c += kBatch * 32) {
      device::SoftmaxStats x[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
        x[i] = c + i * 32 < used_chunks ? st[c + i * 32] : device::empty_stats();
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
        if (c + i * 32 < used_chunks) acc = device::merge_stats(acc, x[i]);
    }
    acc = device::warp_merge_stats(acc);
    if (lane == 0) {
      s_max[h] = acc.m;
      s_inv_sum[h] = acc.l > 0.f ? 1.f / acc.l : 0.f;
    }
  }
}

/// The unit's s-hat summed over its heads (device::shat) at kGroups runs of 4 consecutive
/// positions, run g starting at first + g * stride; positions at or past `end` add s-hat of a
/// -inf logit (0). Where every run lies below `end` the runs' float4 loads issue together
/// (with a bounds test per run the compiler kept one load in flight). Both selection kernels
/// of the three-launch route (this one and select_stream_kernel) rank with these sums, so that
/// they compute the same keys; the fused routes sum s-hat over heads in the same order.
template <int kGroups>
__device__ __forceinline__ void shat_sums(const SelectParams& p, const UnitView& u,
                                          const float* s_max, const float* s_inv_sum, int first,
                                          int stride, int end, float (&sum)[kGroups][4]) {
#pragma unroll
  for (int g = 0; g < kGroups; ++g)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      sum[g][i] = 0.f;
  for (int h = 0; h < u.nh; ++h) {
    const float* row = u.logits + h * p.logit_stride;
    float x[kGroups][4];
    if (first + (kGroups - 1) * stride + 4 <= end) {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const float4 f = *reinterpret_cast<const float4*>(row + first + g * stride);
        x[g][0] = f.x;
        x[g][1] = f.y;
        x[g][2] = f.z;
        x[g][3] = f.w;
      }
    } else {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const int s0 = first + g * stride;
#pragma unroll
        for (int i = 0; i < 4; ++i)
          x[g][i] = s0 + i < end ? row[s0 + i] : -INFINITY;
      }
    }
    const float mh = s_max[h], inv = s_inv_sum[h];
#pragma unroll
    for (int g = 0; g < kGroups; ++g)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        sum[g][i] += device::shat(x[g][i], mh, inv);
  }
}

/// Keys of positions [begin, end) into keys[s - begin] (begin a multiple of 4, keys 16-byte
/// aligned), each added to the first radix pass's histogram. A thread takes 4 consecutive
/// positions from each of kVecs strips per step, so a warp's float4 loads are contiguous and
/// several are in flight, and stores their keys as one 16-byte write. The loop runs while the
/// warp's first lane has positions, so every histogram add is converged (under a per-key
/// bounds test nvcc wrapped each match in a divergence check and a branch).
template <int kThreads>
__device__ void compute_keys(const SelectParams& p, const UnitView& u, const float* s_max,
                             const float* s_inv_sum, int begin, int end, uint32_t* keys,
                             unsigned* hist) {
  using TopK = device::BlockTopK<kThreads>;
  constexpr int kVecs = 4, kStep = kThreads * 4;
  const int lane = static_cast<int>(threadIdx.x & 31);
  for (int base = begin + threadIdx.x * 4; base - 4 * lane < end; base += kStep * kVecs) {
    float sum[kVecs][4];
    shat_sums<kVecs>(p, u, s_max, s_inv_sum, base, kStep, end, sum);
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const int s0 = base + v * kStep;
      uint32_t key[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        key[i] = device::ranking_key(sum[v][i], s0 + i, u.len, u.leff);
      device::store4_below(keys, s0 - begin, end - begin, key);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        TopK::add_all(hist, key[i] >> 24, s0 + i < end);
    }
  }
}

/// This block's share of alpha_h: the sum of s-hat over out[first..last) for each head,
/// reduced over the block into s_alpha[h] (valid after the call's final barrier).
template <int kThreads>
__device__ void alpha_partials(const SelectParams& p, const UnitView& u, const float* s_max,
                               const float* s_inv_sum, int first, int last, float* s_red,
                               float* s_alpha) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int h = 0; h < u.nh; ++h) {
    float a = 0.f;
    for (int i = first + threadIdx.x; i < last; i += kThreads)
      a += device::shat(u.logits[h * p.logit_stride + u.out[i]], s_max[h], s_inv_sum[h]);
    a = device::warp_sum(a);
    if (lane == 0) s_red[warp] = a;
    __syncthreads();
    if (threadIdx.x == 0) {
      float t = 0.f;
      for (int w = 0; w < kThreads / 32; ++w)
        t += s_red[w];
      s_alpha[h] = t;
    }
    __syncthreads();
  }
}

/// Alpha of a one-head unit, summed from the keys BlockTopK::compact selects (its callback):
/// such a key is the position's s-hat, order-mapped (float_to_ordered of 0 + s-hat), so it
/// decodes exactly with no read of the logits; forced keys (the local window) carry none and
/// read their logit. Off (adds nothing) for units of several heads, which sum per head from
/// the logits afterwards (alpha_partials).
struct KeyAlpha {
  const UnitView& u;
  float max, inv_sum;
  bool on;
  float sum[1] = {0.f};

  __device__ void operator()(uint32_t key, int s) {
    if (on)
      sum[0] += key == device::kForcedKey ? device::shat(u.logits[s], max, inv_sum)
                                          : device::key_shat(key);
  }
  /// This block's sum into s_alpha[0] (valid after the call's barriers); call from the block.
  template <int kThreads>
  __device__ void finish(float* s_red, float* s_alpha) {
    if (!on) return;
    device::block_sum<1, kThreads>(sum, s_red);
    if (threadIdx.x == 0) s_alpha[0] = sum[0];
  }
};

}  // namespace select_detail

/// One block per unit. Keys in dynamic shared memory (kKeysInSmem, when the length bound
/// fits) or in the workspace (long sequences). kThreads: kSelectThreads in the launch API;
/// the benchmark also times kSelectThreadsWide (more warps to hide shared-memory latency at
/// one block per SM).
template <bool kKeysInSmem, int kThreads = kSelectThreads>
__global__ void __launch_bounds__(kThreads) select_kernel(SelectParams p) {
  extern __shared__ __align__(16) uint32_t s_keys[];  // 16-byte reads in compact()
  using TopK = device::BlockTopK<kThreads>;
  __shared__ typename TopK::TempStorage s_topk;
  __shared__ float s_max[kMaxHeadsPerUnit], s_inv_sum[kMaxHeadsPerUnit];
  __shared__ float s_alpha[kMaxHeadsPerUnit], s_red[kThreads / 32];

  device::begin_dependent_grid();
  const select_detail::UnitView u(p, blockIdx.y, blockIdx.x);
  select_detail::head_normalisers<kThreads, 8>(p, u, s_max, s_inv_sum);
  TopK::clear_histogram(s_topk);
  __syncthreads();

  // One-head units sum alpha from the selected keys as they are written (KeyAlpha); units of
  // several heads, and sequences that take every row, read the logits back after.
  if (u.keff == u.len) {
    for (int s = threadIdx.x; s < u.len; s += kThreads)
      u.out[s] = s;  // every row taken
  } else {
    const int64_t un = static_cast<int64_t>(u.b) * p.units_per_batch + u.unit;
    uint32_t* keys = kKeysInSmem ? s_keys : p.keys + un * p.logit_stride;
    select_detail::compute_keys<kThreads>(p, u, s_max, s_inv_sum, 0, u.len, keys, s_topk.hist);
    __syncthreads();
    int need_equal = 0;
    const uint32_t threshold = TopK::threshold(s_topk, keys, u.len, u.keff, &need_equal);
    select_detail::KeyAlpha alpha{u, s_max[0], s_inv_sum[0], u.nh == 1};
    TopK::compact(s_topk, keys, u.len, threshold, need_equal, u.out, 0, 0, 0, alpha);
    alpha.template finish<kThreads>(s_red, s_alpha);
  }
  __syncthreads();
  if (u.nh != 1 || u.keff == u.len)
    select_detail::alpha_partials<kThreads>(p, u, s_max, s_inv_sum, 0, u.keff, s_red, s_alpha);
  for (int h = threadIdx.x; h < u.nh; h += kThreads)
    p.alpha[static_cast<int64_t>(u.b) * p.num_q_heads + u.h0 + h] = s_alpha[h];
}

constexpr int kClusterBlocks = 8;
constexpr int kClusterThreads = 256;
/// The cluster selection's block where its blocks hold many keys each and few blocks share an
/// SM (launch_sparq_select): more warps to hide the latency of the passes over the keys.
constexpr int kClusterThreadsWide = 512;

/// Positions each block of a cluster owns: the length split `blocks` ways, a multiple of 16.
__host__ __device__ inline int cluster_segment(int length, int blocks = kClusterBlocks) {
  const int per = (length + blocks - 1) / blocks;
  return (per + 15) / 16 * 16;
}

/// Keys per block from which the cluster selection may take kClusterThreadsWide threads.
constexpr int kWideClusterKeys = 8192;

/// Whether the cluster selection takes kClusterThreadsWide threads: where each block holds at
/// least kWideClusterKeys keys (S 64k and up) and the grid leaves at most two blocks per SM.
/// At batch 1 (256 blocks) a 256-thread block leaves each SM 16 warps for passes over 64 keys
/// per thread at 128k; the one-block selection gained 22% from 16 to 32 warps per SM on an H100
/// (wide_select_preferred), and lost where that took it from 32 to 64.
__host__ __device__ inline bool cluster_select_wide_rule(int segment, int64_t batch_units,
                                                         int sms) {
  return segment >= kWideClusterKeys && batch_units * kClusterBlocks <= 2 * int64_t{sms};
}

/// Radix passes of a cluster-wide top-k: one histogram buffer each, so that no pass rewrites
/// a histogram another block may still be reading (the pass barriers order writes only:
/// device::cluster_sync_shared). The last pass's buffer also holds the finish's list: a
/// finish replaces that pass, so the two never meet.
constexpr int kRadixPasses = 4;
static_assert(device::kFinishKeys <= 256, "the finish's list fits a histogram buffer");

/// Shared memory of a cluster-wide top-k (cluster_top_k).
template <int kThreads>
struct ClusterTopKShared {
  typename device::BlockTopK<kThreads>::TempStorage topk;  // topk.hist: the cluster's totals
  unsigned hist[kRadixPasses][256];  // this block's counts per pass, read by the whole cluster
  int before[2];                     // keys of lower ranks above the threshold, and equal to it

  /// Clears every pass's histogram and the counts (call, then sync, before the first add).
  __device__ void clear() {
    for (int i = threadIdx.x; i < kRadixPasses * 256; i += kThreads)
      hist[i / 256][i % 256] = 0;
    if (threadIdx.x == 0) {
      before[0] = before[1] = 0;
      topk.listed = 0;  // the finish's count (cluster_top_k never calls choose_digit)
    }
  }
};

namespace select_detail {

/// The top `keff` of keys spread over the kBlocks blocks of a cluster (sm_90; this block holds
/// keys[0..n) of positions begin..begin+n): up to four radix passes on histograms summed
/// across the cluster through distributed shared memory, one cluster barrier per pass (fewer
/// where a digit is taken whole: BlockTopK::decided, or where a pass leaves kFinishKeys keys
/// or fewer in play in the whole cluster: each block lists its own, and after one more
/// barrier every warp ranks all of them, BlockTopK::finish); then each block
/// writes its selected positions, in position order, to out[*first..*last), calling
/// on_selected(key, position) for each. On entry sh.hist[0] counts the top digits of this
/// block's keys, the other passes' histograms are clear (ClusterTopKShared::clear), and a
/// barrier has passed. Contains cluster barriers: every thread of every block calls it.
template <int kThreads, int kBlocks = kClusterBlocks, typename Cluster,
          typename F = typename device::BlockTopK<kThreads>::NoCallback>
__device__ void cluster_top_k(Cluster& cluster, ClusterTopKShared<kThreads>& sh,
                              const uint32_t* keys, int n, int keff, int begin, int rank, int* out,
                              int* first, int* last, F&& on_selected = F{}) {
  static_assert(kThreads >= 256, "a thread per histogram bin");
  using TopK = device::BlockTopK<kThreads>;
  device::RadixState st;
  st.remaining = static_cast<unsigned>(keff);
  uint32_t threshold = 0;
  int need_equal = 0;
  // Where this block's output starts: the keys of lower ranks above the threshold and equal to
  // it, summed from their histograms as each pass reads them anyway (thread i holds bin i): a
  // key in play whose digit is above the chosen one is above the threshold. No barrier to
  // publish per-block counts afterwards.
  const int bin = static_cast<int>(threadIdx.x);
  int gt_before = 0, eq_before = 0;
  for (int pass = 0;; ++pass) {
    unsigned* hist = sh.hist[pass];
    if (pass > 0) TopK::build_histogram(hist, keys, n, st, pass);
    device::cluster_sync_shared(cluster);  // every block's histogram of this pass is complete
    SPARQ_PHASE_PASS(pass);
    unsigned below = 0;
    if (bin < 256) {
      unsigned c[kBlocks];
#pragma unroll
      for (int r = 0; r < kBlocks; ++r)
        c[r] = cluster.map_shared_rank(hist, r)[bin];
      unsigned t = 0;
#pragma unroll
      for (int r = 0; r < kBlocks; ++r) {
        t += c[r];
        below += r < rank ? c[r] : 0u;
      }
      sh.topk.hist[bin] = t;
    }
    __syncthreads();
    // Every block sums the same totals, so a stop is uniform across the cluster. Every warp
    // finds the digit itself (no block barriers); the totals are rewritten only after the next
    // pass's cluster barrier, which every warp reaches after reading them.
    const bool done = TopK::decided(TopK::choose_digit_every_warp(sh.topk.hist, st, pass), pass, st,
                                    &threshold, &need_equal);
    // The chosen digit's keys: equal to the threshold after the last pass; after an early
    // stop (threshold one below the prefix) every one of them is above it.
    const int digit = static_cast<int>((st.prefix >> st.shift(pass)) & 0xFFu);
    if (bin > digit || (done && bin == digit && pass < kRadixPasses - 1))
      gt_before += static_cast<int>(below);
    if (done && bin == digit && pass == kRadixPasses - 1) eq_before += static_cast<int>(below);
    if (done) break;
    // The cluster's keys in play for the next pass (the totals, unchanged until its barrier).
    if (sh.topk.hist[digit] <= static_cast<unsigned>(device::kFinishKeys)) {  // uniform
      unsigned* list = sh.hist[kRadixPasses - 1];  // unused: no pass reaches it now
      TopK::collect_in_play(list, &sh.topk.listed, keys, n, st);
      device::cluster_sync_shared(cluster);  // every block's list is complete
      SPARQ_PHASE(kMarkFinish);
      const auto f = TopK::template finish<kBlocks>(
          [&](int r) { return static_cast<const unsigned*>(cluster.map_shared_rank(list, r)); },
          [&](int r) { return *cluster.map_shared_rank(&sh.topk.listed, r); }, st.remaining, rank);
      threshold = f.threshold;
      need_equal = f.need_equal;
      if (threadIdx.x == 0) {  // once per block: the lower ranks' listed keys
        gt_before += f.gt_lower;
        eq_before += f.eq_lower;
      }
      break;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    gt_before += __shfl_xor_sync(0xffffffffu, gt_before, o);
    eq_before += __shfl_xor_sync(0xffffffffu, eq_before, o);
  }
  if ((threadIdx.x & 31) == 0 && (gt_before != 0 || eq_before != 0)) {
    atomicAdd(&sh.before[0], gt_before);
    atomicAdd(&sh.before[1], eq_before);
  }
  __syncthreads();
  gt_before = sh.before[0];
  eq_before = sh.before[1];
  const int eq_taken = eq_before < need_equal ? eq_before : need_equal;
  *first = gt_before + eq_taken;
  *last = TopK::compact(sh.topk, keys, n, threshold, need_equal, out, *first, eq_before, begin,
                        on_selected);
  SPARQ_PHASE(kMarkCompact);
}

}  // namespace select_detail

/// A cluster of kClusterBlocks blocks per unit (sm_90): block r owns a segment of positions
/// and keeps its keys in its shared memory; cluster_top_k selects across the cluster.
/// Launched in clusters of kClusterBlocks (launch_ex). kThreads: kClusterThreads, or
/// kClusterThreadsWide where each block holds many keys (launch_sparq_select).
template <int kThreads = kClusterThreads>
__global__ void __launch_bounds__(kThreads) select_cluster_kernel(SelectParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  extern __shared__ __align__(16) uint32_t s_keys[];  // 16-byte reads in compact()
  __shared__ ClusterTopKShared<kThreads> s_sel;
  __shared__ float s_max[kMaxHeadsPerUnit], s_inv_sum[kMaxHeadsPerUnit];
  __shared__ float s_alpha[kMaxHeadsPerUnit], s_red[kThreads / 32];

  device::begin_dependent_grid();
  SPARQ_PHASE(kMarkStart);
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const select_detail::UnitView u(p, blockIdx.z, blockIdx.y);
  const int seg = cluster_segment(u.len);
  const int begin = min(rank * seg, u.len), end = min(begin + seg, u.len), n = end - begin;

  select_detail::head_normalisers<kThreads, 8>(p, u, s_max, s_inv_sum);
  s_sel.clear();
  __syncthreads();
  SPARQ_PHASE(kMarkStats);

  int first = 0, last = 0;  // this block's slice of the output
  // As in select_kernel: one-head units sum alpha from the keys they select.
  if (u.keff == u.len) {
    for (int s = begin + threadIdx.x; s < end; s += kThreads)
      u.out[s] = s;
    first = begin;
    last = end;
  } else {
    select_detail::compute_keys<kThreads>(p, u, s_max, s_inv_sum, begin, end, s_keys,
                                          s_sel.hist[0]);
    __syncthreads();
    SPARQ_PHASE(kMarkKeys);
    select_detail::KeyAlpha alpha{u, s_max[0], s_inv_sum[0], u.nh == 1};
    select_detail::cluster_top_k<kThreads>(cluster, s_sel, s_keys, n, u.keff, begin, rank, u.out,
                                           &first, &last, alpha);
    alpha.template finish<kThreads>(s_red, s_alpha);
  }
  __syncthreads();
  if (u.nh != 1 || u.keff == u.len)
    select_detail::alpha_partials<kThreads>(p, u, s_max, s_inv_sum, first, last, s_red, s_alpha);
  SPARQ_PHASE(kMarkAlpha);
  device::cluster_sync_shared(cluster);  // partial alphas published
  SPARQ_PHASE(kMarkPartials);
  if (rank == 0) {
    for (int h = threadIdx.x; h < u.nh; h += kThreads) {
      float a = 0.f;
      for (int r = 0; r < kClusterBlocks; ++r)
        a += cluster.map_shared_rank(s_alpha, r)[h];
      p.alpha[static_cast<int64_t>(u.b) * p.num_q_heads + u.h0 + h] = a;
    }
  }
  SPARQ_PHASE(kMarkMerge);
  cluster.sync();  // keep every block's shared memory alive until rank 0 has read it
  SPARQ_PHASE(kMarkEnd);
#endif
}

}  // namespace sparq::kernels
