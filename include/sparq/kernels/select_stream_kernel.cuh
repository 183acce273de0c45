// SparQ launch 2 of 3, streaming variant: one block per (sequence, unit) that never holds all
// of its ranking keys. select_kernel keeps every key in shared memory (128 KB at 32k
// positions: one block per SM, whose radix passes then stall that SM) or in the workspace;
// this one recomputes the keys from the logits on each pass and keeps only small histograms
// and the candidates of the k-th key's bin (device/stream_select.hpp):
//   1. count every key in 4096 bins of its top 12 bits;
//   2. pick the bin holding the k-th key; stream again, keeping the positions of higher bins
//      (in position order) and the keys and positions of that bin, all in shared memory;
//   3. three radix digits among the candidates give the exact k-th key; the chosen candidates
//      and the higher bins' positions, two sorted lists, are merged into the output.
// Where the bin holds more candidates than fit (many equal scores), or the higher bins more
// positions, the digits are counted by streaming again instead, and a last pass writes the
// selection in order.
// It selects exactly the positions select_kernel does (the same keys, the same tie rule).
#pragma once

#include "sparq/device/stream_select.hpp"
#include "sparq/kernels/select_kernel.cuh"

namespace sparq::kernels {

constexpr int kStreamThreads = 512;
constexpr int kStreamItems = 16;         // consecutive positions per thread per tile
constexpr int kStreamCandidates = 4096;  // candidate keys kept in shared memory (8 bytes each)
constexpr int kStreamAbove = 8192;       // higher bins' positions kept in shared memory (4 bytes)

/// Dynamic shared memory of select_stream_kernel for these capacities.
__host__ __device__ constexpr size_t stream_smem_bytes(int candidates, int above) {
  return 2 * sizeof(uint32_t) * static_cast<size_t>(candidates) +
         sizeof(int) * static_cast<size_t>(above);
}

namespace stream_detail {

using select_detail::UnitView;

/// Ranking keys of positions s0..s0+kItems (select_detail::shat_sums and ranking_key, as
/// compute_keys); positions at or past the unit's length get key 0 and must not be used.
template <int kItems>
__device__ void tile_keys(const SelectParams& p, const UnitView& u, const float* s_max,
                          const float* s_inv_sum, int s0, uint32_t (&key)[kItems]) {
  static_assert(kItems % 4 == 0, "logits are read 4 at a time");
  float sum[kItems / 4][4];
  select_detail::shat_sums<kItems / 4>(p, u, s_max, s_inv_sum, s0, 4, u.len, sum);
#pragma unroll
  for (int i = 0; i < kItems; ++i)
    key[i] = s0 + i < u.len ? device::ranking_key(sum[i / 4][i % 4], s0 + i, u.len, u.leff) : 0u;
}

/// Calls f(s0, key, n) for every tile of kThreads x kItems positions from tile `first` up to
/// (not including) tile `end`, n = positions of this thread's run s0..s0+kItems below the
/// length (0 past it). Every thread takes every tile, so f may contain block barriers.
template <int kThreads, int kItems, typename F>
__device__ void for_each_tile(const SelectParams& p, const UnitView& u, const float* s_max,
                              const float* s_inv_sum, F&& f, int first = 0, int end = 0x7fffffff) {
  constexpr int kTile = kThreads * kItems;
  const int64_t stop = static_cast<int64_t>(end) * kTile;
  const int last = static_cast<int>(stop < u.len ? stop : u.len);
  for (int base = first * kTile; base < last; base += kTile) {
    const int s0 = base + threadIdx.x * kItems;
    uint32_t key[kItems] = {};
    int n = u.len - s0;
    n = n < 0 ? 0 : (n > kItems ? kItems : n);
    if (n > 0) tile_keys<kItems>(p, u, s_max, s_inv_sum, s0, key);
    f(s0, key, n);
  }
}

/// Pass 1 over tiles [first, end): the first digit of every key, counted into bins[kStreamBins]
/// (warp-aggregated adds: diffuse attention puts most scores of a warp in one bin). The
/// selection counts every tile; the dataflow route's histogram items one tile each.
template <int kThreads, int kItems>
__device__ void count_first_digits(const SelectParams& p, const UnitView& u, const float* s_max,
                                   const float* s_inv_sum, unsigned* bins, int first = 0,
                                   int end = 0x7fffffff) {
  using TopK = device::BlockTopK<kThreads>;
  for_each_tile<kThreads, kItems>(
      p, u, s_max, s_inv_sum,
      [&](int, const uint32_t(&key)[kItems], int n) {
#pragma unroll
        for (int i = 0; i < kItems; ++i)
          if (i < n) TopK::add(bins, static_cast<unsigned>(device::stream_bin(key[i])));
      },
      first, end);
}

/// The bin holding the remaining-th largest key of hist[kStreamBins] (thread t scans bins
/// from the top down, kStreamBins / kThreads of them). Sets *bin and *above (keys in higher
/// bins) for every thread. Contains barriers.
template <int kThreads>
__device__ void choose_bin(typename device::BlockTopK<kThreads>::TempStorage& ts,
                           const unsigned* hist, unsigned remaining, int* bin, unsigned* above) {
  using Scan = typename device::BlockTopK<kThreads>::Scan;
  constexpr int kPer = device::kStreamBins / kThreads;
  static_assert(kPer * kThreads == device::kStreamBins, "bins split evenly over the threads");
  const int top = device::kStreamBins - 1 - static_cast<int>(threadIdx.x) * kPer;
  unsigned cnt[kPer], total = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    total += (cnt[i] = hist[top - i]);
  int excl = 0;
  Scan(ts.scan).ExclusiveSum(static_cast<int>(total), excl);
  const unsigned lo = static_cast<unsigned>(excl);
  if (lo < remaining && remaining <= lo + total) {
    unsigned running = lo;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (running + cnt[i] >= remaining) {
        ts.digit = static_cast<unsigned>(top - i);
        ts.above = running;
        break;
      }
      running += cnt[i];
    }
  }
  __syncthreads();
  *bin = static_cast<int>(ts.digit);
  *above = ts.above;
  __syncthreads();
}

/// Shared memory of the streaming selection besides the candidates.
template <int kThreads>
struct StreamShared {
  typename device::BlockTopK<kThreads>::TempStorage topk;  // its 256-bin hist: refine digits
  unsigned bins[device::kStreamBins];
  float max[kMaxHeadsPerUnit], inv_sum[kMaxHeadsPerUnit];
  float alpha[kMaxHeadsPerUnit], red[kThreads / 32];
};

/// The refine digits over the keys of bin `st.prefix` that `count_digit(d, hist)` adds to
/// hist; leaves the exact k-th key in st.prefix and how many of its equals to take in
/// st.remaining.
template <int kThreads, typename CountDigit>
__device__ void refine(StreamShared<kThreads>& sh, device::RadixState& st,
                       CountDigit&& count_digit) {
  using TopK = device::BlockTopK<kThreads>;
  for (int i = 0; i < device::kStreamRefineDigits; ++i) {
    const device::RadixDigit d = device::stream_refine_digit(i);
    TopK::clear(sh.topk.hist);
    __syncthreads();
    count_digit(d, sh.topk.hist);
    __syncthreads();
    TopK::choose_digit_at(sh.topk, sh.topk.hist, st, d.shift, d.bits);
  }
}

}  // namespace stream_detail

/// Positions of one tile of the streaming selection's passes (a histogram item of the
/// dataflow route counts one).
template <int kThreads>
__host__ __device__ constexpr int stream_tile_positions() {
  return kThreads * kStreamItems;
}

/// A share of the first pass of select_stream_unit for a block of kThreads: the first digits
/// of the unit's keys in tile `tile` (stream_tile_positions<kThreads>() positions), added to
/// `bins` (device::kStreamBins counters in global memory, summed over the unit's tiles).
/// Counts are integers, so the sum over tiles in any order is the count of the whole pass.
template <int kThreads>
__device__ void stream_histogram_tile(const SelectParams& p, int b, int unit, int tile,
                                      unsigned* bins, stream_detail::StreamShared<kThreads>& sh) {
  constexpr int kItems = kStreamItems;
  const select_detail::UnitView u(p, b, unit);
  // Where every row is taken the selection reads no histogram; past the length, no keys.
  if (u.keff == u.len || static_cast<int64_t>(tile) * stream_tile_positions<kThreads>() >= u.len)
    return;
  select_detail::head_normalisers<kThreads>(p, u, sh.max, sh.inv_sum);
  for (int i = threadIdx.x; i < device::kStreamBins; i += kThreads)
    sh.bins[i] = 0;
  __syncthreads();
  stream_detail::count_first_digits<kThreads, kItems>(p, u, sh.max, sh.inv_sum, sh.bins, tile,
                                                      tile + 1);
  __syncthreads();
  // Only the bins this tile touched (diffuse attention fills a few).
  for (int i = threadIdx.x; i < device::kStreamBins; i += kThreads)
    if (sh.bins[i] != 0) atomicAdd(bins + i, sh.bins[i]);
}

/// The selection of one (sequence, unit) by a block of kThreads. `s_cand`: shared memory of
/// stream_smem_bytes(p.candidate_capacity, p.above_capacity) bytes, 16-byte aligned.
/// `given_bins`: the first pass's histogram, already counted (the dataflow route's histogram
/// items, stream_histogram_tile over every tile), or null to count it here.
template <int kThreads>
__device__ void select_stream_unit(const SelectParams& p, int b, int unit, uint32_t* s_cand,
                                   stream_detail::StreamShared<kThreads>& sh,
                                   const unsigned* given_bins = nullptr) {
  constexpr int kItems = kStreamItems;
  using TopK = device::BlockTopK<kThreads>;
  const int capacity = p.candidate_capacity;
  uint32_t* cand_key = s_cand;
  int* cand_pos = reinterpret_cast<int*>(s_cand + capacity);
  int* s_above = cand_pos + capacity;

  const select_detail::UnitView u(p, b, unit);
  select_detail::head_normalisers<kThreads>(p, u, sh.max, sh.inv_sum);
  // The histogram counted elsewhere is read past L1 (other SMs wrote it with atomics).
  for (int i = threadIdx.x; i < device::kStreamBins; i += kThreads)
    sh.bins[i] = given_bins != nullptr ? __ldcg(given_bins + i) : 0u;
  __syncthreads();

  if (u.keff == u.len) {
    for (int s = threadIdx.x; s < u.len; s += kThreads)
      u.out[s] = s;  // every row taken
  } else {
    // Pass 1, unless histogram items counted it.
    if (given_bins == nullptr)
      stream_detail::count_first_digits<kThreads, kItems>(p, u, sh.max, sh.inv_sum, sh.bins);
    __syncthreads();
    int bin = 0;
    unsigned above = 0;
    stream_detail::choose_bin<kThreads>(sh.topk, sh.bins, static_cast<unsigned>(u.keff), &bin,
                                        &above);
    const int candidates = static_cast<int>(sh.bins[bin]);
    device::RadixState st;
    st.prefix = static_cast<uint32_t>(bin) << (32 - device::kStreamBinBits);
    st.mask = device::kStreamBinMask;
    st.remaining = static_cast<unsigned>(u.keff) - above;

    if (candidates <= capacity && above <= static_cast<unsigned>(p.above_capacity)) {
      // Pass 2: positions of higher bins to s_above, the bin's keys to the candidates.
      int written = 0, kept = 0;
      stream_detail::for_each_tile<kThreads, kItems>(
          p, u, sh.max, sh.inv_sum, [&](int s0, const uint32_t(&key)[kItems], int n) {
            int gt = 0, eq = 0;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
              const int b = device::stream_bin(key[i]);
              gt += (i < n && b > bin) ? 1 : 0;
              eq += (i < n && b == bin) ? 1 : 0;
            }
            int pre, total;
            typename TopK::Scan(sh.topk.scan).ExclusiveSum(gt | (eq << 16), pre, total);
            int out_at = written + (pre & 0xFFFF), cand_at = kept + (pre >> 16);
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
              if (i >= n) break;
              const int b = device::stream_bin(key[i]);
              // The capacities were checked against pass 1's counts; pass 2 recomputes the
              // same keys with the same arithmetic, so the bounds tests below never fail.
              // They stay so that a future change to one pass cannot write past the lists.
              if (b > bin) {
                if (out_at < p.above_capacity) s_above[out_at] = s0 + i;
                ++out_at;
              } else if (b == bin) {
                if (cand_at < capacity) {
                  cand_key[cand_at] = key[i];
                  cand_pos[cand_at] = s0 + i;
                }
                ++cand_at;
              }
            }
            written += total & 0xFFFF;
            kept += total >> 16;
            __syncthreads();
          });
      // The exact k-th key among the candidates.
      stream_detail::refine<kThreads>(sh, st, [&](device::RadixDigit d, unsigned* hist) {
        for (int c = threadIdx.x; c < candidates; c += kThreads) {
          const uint32_t key = cand_key[c];
          if ((key & st.mask) == st.prefix) TopK::add(hist, device::digit_of(key, d));
        }
      });
      // The chosen candidates, compacted in place to cand_pos[0..chosen) (each write lands at
      // or before its own slot, and every read of a tile precedes the scan's barrier).
      int chosen = 0, equal_seen = 0;
      for (int base = 0; base < candidates; base += kThreads) {
        const int c = base + threadIdx.x;
        const uint32_t key[1] = {c < candidates ? cand_key[c] : 0u};
        const int pos[1] = {c < candidates ? cand_pos[c] : 0};
        TopK::template compact_tile<1>(sh.topk, key, pos, c < candidates ? 1 : 0, st.prefix,
                                       static_cast<int>(st.remaining), cand_pos, chosen,
                                       equal_seen);
      }
      // Merge the two sorted lists, s_above[0..above) and cand_pos[0..chosen) (positions
      // are distinct): an element's place in the output is its index plus the count of the
      // other list below it.
      const int a = static_cast<int>(above);
      for (int i = threadIdx.x; i < a; i += kThreads)
        u.out[i + device::count_below(cand_pos, chosen, s_above[i])] = s_above[i];
      for (int j = threadIdx.x; j < chosen; j += kThreads)
        u.out[j + device::count_below(s_above, a, cand_pos[j])] = cand_pos[j];
    } else {
      // Too many candidates (many equal scores) or higher-bin positions: count each refine
      // digit over every key, then write the selection in one ordered pass.
      stream_detail::refine<kThreads>(sh, st, [&](device::RadixDigit d, unsigned* hist) {
        stream_detail::for_each_tile<kThreads, kItems>(
            p, u, sh.max, sh.inv_sum, [&](int, const uint32_t(&key)[kItems], int n) {
#pragma unroll
              for (int i = 0; i < kItems; ++i)
                if (i < n && (key[i] & st.mask) == st.prefix)
                  TopK::add(hist, device::digit_of(key[i], d));
            });
      });
      int written = 0, equal_seen = 0;
      stream_detail::for_each_tile<kThreads, kItems>(
          p, u, sh.max, sh.inv_sum, [&](int s0, const uint32_t(&key)[kItems], int n) {
            int pos[kItems];
#pragma unroll
            for (int i = 0; i < kItems; ++i)
              pos[i] = s0 + i;
            TopK::template compact_tile<kItems>(sh.topk, key, pos, n, st.prefix,
                                                static_cast<int>(st.remaining), u.out, written,
                                                equal_seen);
          });
    }
  }
  __syncthreads();
  select_detail::alpha_partials<kThreads>(p, u, sh.max, sh.inv_sum, 0, u.keff, sh.red, sh.alpha);
  for (int h = threadIdx.x; h < u.nh; h += kThreads)
    p.alpha[static_cast<int64_t>(u.b) * p.num_q_heads + u.h0 + h] = sh.alpha[h];
}

/// One block of kThreads per unit; dynamic shared memory: stream_smem_bytes(p.candidate_capacity,
/// p.above_capacity). (A template so that every translation unit that includes it shares one
/// definition.)
template <int kThreads = kStreamThreads>
__global__ void __launch_bounds__(kThreads) select_stream_kernel(SelectParams p) {
  extern __shared__ __align__(16) uint32_t s_cand[];  // candidate keys, their positions, above
  __shared__ stream_detail::StreamShared<kThreads> sh;
  device::begin_dependent_grid();
  select_stream_unit<kThreads>(p, blockIdx.y, blockIdx.x, s_cand, sh);
}

}  // namespace sparq::kernels
