// Step 4: top-k position selection. An MSB radix select (up to four 8-bit passes) finds the
// k-th largest key, or stops once a digit is taken whole, or, once few keys are left in play,
// ranks those few directly (the finish); an ordered compaction (warp ballots) then writes the
// selected positions in increasing position order. Deterministic: equal keys are
// taken lowest position first. The pieces work for one block over all keys, or for a cluster of
// blocks that each own a segment of them.
#pragma once

#include <cstdint>
#include <cstring>

#include <cub/block/block_scan.cuh>

#include "sparq/device/ordered_keys.hpp"
#include "sparq/device/phase_times.cuh"
#include "sparq/device/vec.cuh"
#include "sparq/macros.hpp"

namespace sparq::device {

/// How the radix histograms count a warp's keys. kMatch (the library's): one atomic per group
/// of lanes with equal digits (__match_any_sync), chosen in run 2 for keys that crowd into a
/// few bins, never timed against the others. Two experiments, each compiled only into a
/// program of its own (bench/phase_times_plain_adds with SPARQ_HISTOGRAM_ADDS_PLAIN,
/// bench/phase_times_leader_adds with SPARQ_HISTOGRAM_ADDS_LEADER), so that no other code
/// sees the macro: kPlain, one shared-memory atomic per key (recent GPUs may merge
/// same-address shared atomics themselves); kLeader, the first key's digit counted for every
/// lane that shares it by one atomic (two ballots and a shuffle, no match), each other key
/// by its own atomic (a warp's first-pass keys fall in one to three bins).
enum class HistogramAdds { kMatch, kPlain, kLeader };
#if defined(SPARQ_HISTOGRAM_ADDS_PLAIN)
inline constexpr HistogramAdds kHistogramAdds = HistogramAdds::kPlain;
#elif defined(SPARQ_HISTOGRAM_ADDS_LEADER)
inline constexpr HistogramAdds kHistogramAdds = HistogramAdds::kLeader;
#else
inline constexpr HistogramAdds kHistogramAdds = HistogramAdds::kMatch;
#endif

/// State of a radix select between passes: keys matching `prefix` under `mask` are still in
/// play, and `remaining` of them belong to the selection.
struct RadixState {
  uint32_t prefix = 0;
  uint32_t mask = 0;
  unsigned remaining = 0;
  __device__ int shift(int pass) const { return 24 - 8 * pass; }
};

/// Keys in play (across a block, or a whole cluster) at most, for a radix select to stop its
/// passes and rank them directly (BlockTopK::finish): two per lane of one warp.
constexpr int kFinishKeys = 64;

template <int kThreads>
struct BlockTopK {
  using Scan = cub::BlockScan<int, kThreads>;
  struct TempStorage {
    typename Scan::TempStorage scan;
    unsigned hist[256];
    unsigned digit;
    unsigned above;
    unsigned filled;  // the chosen digit's keys are exactly the ones still needed
    unsigned chosen;  // keys of the chosen digit (in play for the next pass)
    unsigned listed;  // keys listed for the finish (collect_in_play)
    int warp_gt[kThreads / 32], warp_eq[kThreads / 32];  // compact(): each warp's counts
  };

  /// Clears a 256-bin histogram (call, then sync, before adding to it).
  __device__ static void clear(unsigned* hist) {
    for (int i = threadIdx.x; i < 256; i += kThreads)
      hist[i] = 0;
  }
  __device__ static void clear_histogram(TempStorage& ts) { clear(ts.hist); }

  /// One count for `bin`; lanes of a warp that hit the same bin add together (the keys of
  /// nearby scores share their top bits, so plain atomics would serialise on a few bins).
  ///
  /// kHistogramAdds picks how the adds below count (kMatch unless an experiment says).
  __device__ static void add(unsigned* hist, unsigned bin) {
    if constexpr (kHistogramAdds == HistogramAdds::kPlain) {
      atomicAdd(&hist[bin], 1u);
    } else {
      const unsigned peers = __match_any_sync(__activemask(), bin);
      if ((threadIdx.x & 31) == static_cast<unsigned>(__ffs(peers) - 1))
        atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
    }
  }

  /// One count for `bin` from each lane where `in_play`. Every lane of the warp calls it at
  /// once (converged): under a divergent branch nvcc wraps each match in a collective slow
  /// path, which passes after the first (a minority of keys in play, spread over the warp)
  /// would take at nearly every key. Where few lanes have a key in play (the usual case after
  /// the first pass), each adds its own: a shared bin serialises at most those few, and the
  /// match is skipped.
  __device__ static void add_converged(unsigned* hist, unsigned bin, bool in_play) {
    if constexpr (kHistogramAdds == HistogramAdds::kPlain) {
      if (in_play) atomicAdd(&hist[bin], 1u);
    } else {
      constexpr int kFewLanes = 8;
      const unsigned lanes = __ballot_sync(0xffffffffu, in_play);
      if (lanes == 0u) return;
      if (__popc(lanes) <= kFewLanes) {
        if (in_play) atomicAdd(&hist[bin], 1u);
        return;
      }
      add_all(hist, bin, in_play);
    }
  }

  /// One count for `bin` from each lane where `in_play`, every lane of the warp calling at
  /// once (converged, as add_converged), with no ballot first: for the first pass, where
  /// nearly every lane has a key (a lane past the end of the keys passes false).
  __device__ static void add_all(unsigned* hist, unsigned bin, bool in_play) {
    if constexpr (kHistogramAdds == HistogramAdds::kPlain) {
      if (in_play) atomicAdd(&hist[bin], 1u);
    } else if constexpr (kHistogramAdds == HistogramAdds::kLeader) {
      const unsigned play = __ballot_sync(0xffffffffu, in_play);
      if (play == 0u) return;
      const int leader = __ffs(play) - 1;
      const unsigned first = __shfl_sync(0xffffffffu, bin, leader);
      const unsigned same = __ballot_sync(0xffffffffu, in_play && bin == first);
      if (static_cast<int>(threadIdx.x & 31) == leader)
        atomicAdd(&hist[first], static_cast<unsigned>(__popc(same)));
      if (in_play && bin != first) atomicAdd(&hist[bin], 1u);
    } else {
      const unsigned peers = __match_any_sync(0xffffffffu, in_play ? bin : 256u);
      if (in_play && (threadIdx.x & 31) == static_cast<unsigned>(__ffs(peers) - 1))
        atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
    }
  }

  /// Visits keys[0..n) (16-byte aligned) four per thread at a time, on4(uint4, valid) with
  /// 16-byte reads (a quarter of the load instructions, no bank conflicts), two reads in
  /// flight per lane; then warp 0 visits the last n % 4 keys, on1(key, valid). Trip counts are
  /// uniform per warp (a lane past the end takes part with valid false), so the visits may
  /// use warp collectives.
  template <typename On4, typename On1>
  __device__ static void sweep_keys(const uint32_t* keys, int n, On4&& on4, On1&& on1) {
    const int lane = threadIdx.x & 31;
    const int n4 = n / 4;
    const uint4* k4 = reinterpret_cast<const uint4*>(keys);
    for (int i0 = threadIdx.x - lane; i0 < n4; i0 += 2 * kThreads) {
      const int i1 = i0 + kThreads;
      const bool valid0 = i0 + lane < n4, valid1 = i1 + lane < n4;
      uint4 v0{0u, 0u, 0u, 0u}, v1{0u, 0u, 0u, 0u};
      if (valid0) v0 = k4[i0 + lane];
      if (valid1) v1 = k4[i1 + lane];
      on4(v0, valid0);
      if (i1 < n4) on4(v1, valid1);  // uniform per warp
    }
    if (threadIdx.x < 32) {
      const int s = 4 * n4 + lane;
      on1(s < n ? keys[s] : 0u, s < n);
    }
  }

  /// Adds the digit of `pass` of every key still in play to `hist` (no barrier), every add
  /// converged (sweep_keys). One vote skips a warp's four keys per lane where none is in play
  /// (most of them after the second pass); two reads in flight per lane, since the passes
  /// after the first mostly skip every key and a pass is then a chain of read latencies.
  __device__ static void build_histogram(unsigned* hist, const uint32_t* keys, int n,
                                         const RadixState& st, int pass) {
    const int shift = st.shift(pass);
    auto in_play = [&](uint32_t key, bool valid) { return valid && (key & st.mask) == st.prefix; };
    auto add_key = [&](uint32_t key, bool play) {
      add_converged(hist, (key >> shift) & 0xFFu, play);
    };
    sweep_keys(
        keys, n,
        [&](const uint4& v, bool valid) {
          const bool px = in_play(v.x, valid), py = in_play(v.y, valid), pz = in_play(v.z, valid),
                     pw = in_play(v.w, valid);
          if (!__any_sync(0xffffffffu, px || py || pz || pw)) return;  // uniform per warp
          add_key(v.x, px);
          add_key(v.y, py);
          add_key(v.z, pz);
          add_key(v.w, pw);
        },
        [&](uint32_t key, bool valid) { add_key(key, in_play(key, valid)); });
  }

  /// Where the remaining-th largest key lies in a histogram: its digit, the keys in higher
  /// digits, and whether the selection takes every key of that digit.
  struct DigitChoice {
    unsigned digit = 0, above = 0, filled = 0, count = 0;
  };

  /// The DigitChoice of `hist` (256 bins in shared memory), found by one warp: every lane
  /// calls it and all get the same answer. Lane l scans digits 255-8l down to 248-8l, so lanes
  /// in order cover digits descending.
  __device__ static DigitChoice find_digit(const unsigned* hist, unsigned remaining) {
    const int lane = static_cast<int>(threadIdx.x & 31);
    unsigned cnt[8], total = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      total += (cnt[i] = hist[255 - lane * 8 - i]);
    unsigned incl = total;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned t = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += t;
    }
    const unsigned excl = incl - total;
    const bool mine = excl < remaining && remaining <= incl;
    DigitChoice c;
    if (mine) {
      unsigned running = excl;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (running + cnt[i] >= remaining) {
          c.digit = static_cast<unsigned>(255 - lane * 8 - i);
          c.above = running;
          c.filled = running + cnt[i] == remaining ? 1u : 0u;
          c.count = cnt[i];
          break;
        }
        running += cnt[i];
      }
    }
    // One lane holds it (1 <= remaining <= the keys in play); none only where that fails.
    const unsigned holder = __ballot_sync(0xffffffffu, mine);
    const int src = holder != 0u ? __ffs(holder) - 1 : 0;
    c.digit = __shfl_sync(0xffffffffu, c.digit, src);
    c.above = __shfl_sync(0xffffffffu, c.above, src);
    c.filled = __shfl_sync(0xffffffffu, c.filled, src);
    c.count = __shfl_sync(0xffffffffu, c.count, src);
    return c;
  }

  /// Narrows `st` to the chosen digit of `bits` bits from bit `shift` up; returns whether the
  /// selection takes every key of it.
  __device__ static bool apply_digit(RadixState& st, const DigitChoice& c, int shift, int bits) {
    st.remaining -= c.above;
    st.prefix |= c.digit << shift;
    st.mask |= ((1u << bits) - 1u) << shift;
    return c.filled != 0u;
  }

  /// Warp 0 finds the digit of `pass` that holds the remaining-th largest key in `hist` and
  /// every thread updates `st`. Returns whether the selection takes every key of that digit
  /// (the same answer in every thread), and in *chosen (where given) how many keys that digit
  /// holds. Contains barriers: call from the whole block.
  __device__ static bool choose_digit(TempStorage& ts, const unsigned* hist, RadixState& st,
                                      int pass, unsigned* chosen = nullptr) {
    return choose_digit_at(ts, hist, st, st.shift(pass), 8, chosen);
  }

  /// choose_digit for a digit of `bits` <= 8 bits from bit `shift` up (hist: 256 bins, those
  /// from 2^bits up empty). Also zeroes ts.listed (behind its barrier) for a finish after it.
  __device__ static bool choose_digit_at(TempStorage& ts, const unsigned* hist, RadixState& st,
                                         int shift, int bits, unsigned* chosen = nullptr) {
    if (threadIdx.x < 32) {
      const DigitChoice c = find_digit(hist, st.remaining);
      if (threadIdx.x == 0) {
        ts.digit = c.digit;
        ts.above = c.above;
        ts.filled = c.filled;
        ts.chosen = c.count;
        ts.listed = 0;
      }
    }
    __syncthreads();
    DigitChoice c;
    c.digit = ts.digit;
    c.above = ts.above;
    c.filled = ts.filled;
    if (chosen != nullptr) *chosen = ts.chosen;
    __syncthreads();
    return apply_digit(st, c, shift, bits);
  }

  /// choose_digit with no barrier: every warp searches `hist` itself (the same answer in each;
  /// 8 shared-memory reads per lane instead of two block barriers). `hist` must be complete
  /// (a barrier after its last write) and stay unwritten until every warp has returned.
  __device__ static bool choose_digit_every_warp(const unsigned* hist, RadixState& st, int pass) {
    return apply_digit(st, find_digit(hist, st.remaining), st.shift(pass), 8);
  }

  /// After pass `pass` (its choose_digit returned `filled`): whether the selection is known,
  /// and then its threshold: every key above *threshold and the first *need_equal keys equal
  /// to it. After the last pass that is the remaining-th key. Earlier, where the selection
  /// takes every key of the chosen digit, the remaining bits cannot change it: it is every key
  /// >= st.prefix (the bits below the digit are zero), so every key > st.prefix - 1 and no
  /// equal one (a prefix of zero would need a threshold below zero: no early stop then).
  /// Uniform wherever `filled` is.
  __device__ static bool decided(bool filled, int pass, const RadixState& st, uint32_t* threshold,
                                 int* need_equal) {
    if (pass == 3) {
      *threshold = st.prefix;
      *need_equal = static_cast<int>(st.remaining);
      return true;
    }
    if (!filled || st.prefix == 0u) return false;
    *threshold = st.prefix - 1u;
    *need_equal = 0;
    return true;
  }

  /// Appends every key still in play (matching st's prefix) to list[0..), counting them in
  /// *count (zero on entry; kFinishKeys at most, as the last pass's histogram said). No
  /// barrier. The order of the list is arbitrary: the finish ranks keys, not positions.
  __device__ static void collect_in_play(unsigned* list, unsigned* count, const uint32_t* keys,
                                         int n, const RadixState& st) {
    auto add = [&](uint32_t key, bool valid) {
      if (valid && (key & st.mask) == st.prefix) {
        const unsigned at = atomicAdd(count, 1u);
        if (at < static_cast<unsigned>(kFinishKeys)) list[at] = key;
      }
    };
    sweep_keys(
        keys, n,
        [&](const uint4& v, bool valid) {
          add(v.x, valid), add(v.y, valid), add(v.z, valid), add(v.w, valid);
        },
        add);
  }

  /// What a finish decides: the selection is every key above `threshold` and the first
  /// need_equal keys equal to it; gt_lower and eq_lower count the listed keys above and equal
  /// to it in the lists before the caller's (the keys of lower cluster ranks).
  struct Finish {
    uint32_t threshold = 0;
    int need_equal = 0, gt_lower = 0, eq_lower = 0;
  };

  /// The remaining-th largest of the keys still in play, listed by kLists blocks (list r:
  /// count_of(r) keys at keys_of(r)[0..); kFinishKeys at most in all), found by one warp
  /// ranking each key against every other (two per lane): the same answer in every lane, and
  /// in every warp that calls it. `my_list`: the caller's list (for gt_lower, eq_lower).
  /// Instead of the remaining radix passes, each a histogram sweep and a barrier (across the
  /// cluster there, with a round trip to the other blocks' histograms).
  template <int kLists, typename KeysOf, typename CountOf>
  __device__ static Finish finish(KeysOf&& keys_of, CountOf&& count_of, unsigned remaining,
                                  int my_list) {
    static_assert(kLists >= 1 && kLists <= 32, "a lane per list");
    constexpr int kPer = kFinishKeys / 32;
    constexpr unsigned kAll = 0xffffffffu;
    const int lane = static_cast<int>(threadIdx.x & 31);
    // Where each list's keys end in their concatenation (list order).
    const unsigned cnt = lane < kLists ? static_cast<unsigned>(count_of(lane)) : 0u;
    unsigned incl = cnt;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned t = __shfl_up_sync(kAll, incl, o);
      if (lane >= o) incl += t;
    }
    unsigned ends[kLists];
#pragma unroll
    for (int r = 0; r < kLists; ++r)
      ends[r] = __shfl_sync(kAll, incl, r);
    const unsigned total = ends[kLists - 1];
    // Lane l holds keys l and l + 32 of the concatenation.
    uint32_t key[kPer];
    int from[kPer];
    bool have[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const unsigned j = static_cast<unsigned>(lane + 32 * i);
      int r = 0;
      unsigned start = 0;
#pragma unroll
      for (int l = 0; l < kLists; ++l) {
        if (ends[l] <= j) {
          r = l + 1;
          start = ends[l];
        }
      }
      have[i] = j < total;  // j < kFinishKeys: at most that many are listed
      from[i] = r;
      key[i] = have[i] ? keys_of(r)[j - start] : 0u;
    }
    // Each key's count of keys above it, and of keys at or above it.
    unsigned gt[kPer], ge[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i)
      gt[i] = ge[i] = 0u;
#pragma unroll
    for (int s = 0; s < kPer; ++s) {
      const int m = min(32, static_cast<int>(total) - 32 * s);  // uniform
      for (int l = 0; l < m; ++l) {
        const uint32_t other = __shfl_sync(kAll, key[s], l);
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          gt[i] += other > key[i] ? 1u : 0u;
          ge[i] += other >= key[i] ? 1u : 0u;
        }
      }
    }
    // The remaining-th largest: a key with fewer than `remaining` above it and at least
    // `remaining` at or above it (equal keys all qualify; any one of them gives the value).
    Finish f;
    unsigned above = 0;
    bool found = false;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const unsigned hits = __ballot_sync(kAll, have[i] && gt[i] < remaining && remaining <= ge[i]);
      if (!found && hits != 0u) {  // uniform
        const int src = __ffs(hits) - 1;
        f.threshold = __shfl_sync(kAll, key[i], src);
        above = __shfl_sync(kAll, gt[i], src);
        found = true;
      }
    }
    f.need_equal = static_cast<int>(remaining - above);
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const bool lower = have[i] && from[i] < my_list;
      f.gt_lower += __popc(__ballot_sync(kAll, lower && key[i] > f.threshold));
      f.eq_lower += __popc(__ballot_sync(kAll, lower && key[i] == f.threshold));
    }
    return f;
  }

  /// The threshold of the top count (1 <= count <= n) of keys held by this block alone (keys
  /// 16-byte aligned): the selection is every key above the returned value and the first
  /// *need_equal keys equal to it. That value is the count-th largest key, or, where a pass
  /// finds the selection takes a whole digit, one below that digit's lowest key (decided).
  /// Once a pass leaves kFinishKeys keys or fewer in play, they are listed (in ts.hist, free
  /// after choose_digit) and ranked directly (finish) instead of the remaining passes.
  /// The first histogram must be filled (and a barrier passed) on entry.
  __device__ static uint32_t threshold(TempStorage& ts, const uint32_t* keys, int n, int count,
                                       int* need_equal) {
    RadixState st;
    st.remaining = static_cast<unsigned>(count);
    uint32_t t = 0;
    for (int pass = 0;; ++pass) {
      if (pass > 0) {
        clear(ts.hist);
        __syncthreads();
        build_histogram(ts.hist, keys, n, st, pass);
        __syncthreads();
      }
      SPARQ_PHASE_PASS(pass);
      unsigned in_play = 0;
      if (decided(choose_digit(ts, ts.hist, st, pass, &in_play), pass, st, &t, need_equal))
        return t;
      if (in_play <= static_cast<unsigned>(kFinishKeys)) {  // uniform
        collect_in_play(ts.hist, &ts.listed, keys, n, st);
        __syncthreads();
        SPARQ_PHASE(kMarkFinish);
        const Finish f = finish<1>([&](int) { return static_cast<const unsigned*>(ts.hist); },
                                   [&](int) { return ts.listed; }, st.remaining, 0);
        *need_equal = f.need_equal;
        return f.threshold;
      }
    }
  }

  /// What compact calls for each selected key by default: nothing.
  struct NoCallback {
    __device__ void operator()(uint32_t, int) const {}
  };

  /// One tile of an ordered compaction, kItems keys per thread in thread order: the positions
  /// (pos) of this thread's first n keys that are > threshold, and of the first need_equal
  /// keys == threshold (counting `equal_seen` met before this tile), go to out[written...],
  /// and on_selected(key, position) is called for each; written and equal_seen advance
  /// (block-uniform). Ends with a barrier, after which out and the keys' storage may be reused.
  template <int kItems, typename F = NoCallback>
  __device__ static void compact_tile(TempStorage& ts, const uint32_t (&key)[kItems],
                                      const int (&pos)[kItems], int n, uint32_t threshold,
                                      int need_equal, int* out, int& written, int& equal_seen,
                                      F&& on_selected = F{}) {
    static_assert(kThreads * kItems < 65536, "per-tile counts are packed in 16 bits");
    int gt = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      gt += (i < n && key[i] > threshold) ? 1 : 0;
      eq += (i < n && key[i] == threshold) ? 1 : 0;
    }
    int pre, total;
    Scan(ts.scan).ExclusiveSum(gt | (eq << 16), pre, total);
    const int budget = need_equal - equal_seen > 0 ? need_equal - equal_seen : 0;
    int eq_count = pre >> 16;
    int at = written + (pre & 0xFFFF) + (eq_count < budget ? eq_count : budget);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (i >= n) break;
      if (key[i] > threshold) {
        out[at++] = pos[i];
        on_selected(key[i], pos[i]);
      } else if (key[i] == threshold) {
        if (eq_count < budget) {
          out[at++] = pos[i];
          on_selected(key[i], pos[i]);
        }
        ++eq_count;
      }
    }
    const int tile_eq = total >> 16, tile_gt = total & 0xFFFF;
    written += tile_gt + (tile_eq < budget ? tile_eq : budget);
    equal_seen += tile_eq;
    __syncthreads();
  }

  /// A warp step of four flags per lane, in position order lane by lane: how many are set in
  /// the lanes below this one (`lower`: their lane mask), and in the whole step.
  __device__ static void warp_ranks4(const bool (&flag)[4], unsigned lower, int& below,
                                     int& total) {
    below = 0;
    total = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const unsigned b = __ballot_sync(0xffffffffu, flag[i]);
      below += __popc(b & lower);
      total += __popc(b);
    }
  }

  /// Writes, in increasing position order, every key > threshold and the first need_equal
  /// keys == threshold, as positions first_position + i (keys[i] for i < n), into out from
  /// index `written` on, with `equal_seen` equal keys already met before these. Returns the
  /// index after the last one written (the same in every thread), and calls
  /// on_selected(key, position) for each (in the writing thread). `keys` must be 16-byte
  /// aligned. Call from the whole block; ends with a barrier, after which out and the keys'
  /// storage may be reused.
  ///
  /// Each warp owns a contiguous range of whole 128-key steps (4 consecutive keys per lane),
  /// so the block needs one barrier to learn where each warp's output starts: a first sweep
  /// counts the warp's keys above and equal to the threshold, and a second writes them, each
  /// lane's offset from four ballots (no block scan per tile of keys, as an earlier version
  /// had: two barriers and a CUB scan per 8 keys per thread).
  template <typename F = NoCallback>
  __device__ static int compact(TempStorage& ts, const uint32_t* keys, int n, uint32_t threshold,
                                int need_equal, int* out, int written = 0, int equal_seen = 0,
                                int first_position = 0, F&& on_selected = F{}) {
    constexpr int kWarps = kThreads / 32, kStep = 128;
    static_assert(kWarps <= 32, "a lane per warp count");
    const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
    const int steps = (n + kStep - 1) / kStep;
    const int per_warp = (steps + kWarps - 1) / kWarps;
    const int wbegin = min(n, warp * per_warp * kStep), wend = min(n, wbegin + per_warp * kStep);

    // Sweep 1: this warp's keys above and equal to the threshold.
    int gt = 0, eq = 0;
    for (int s0 = wbegin + 4 * lane; s0 < wend; s0 += kStep) {
      uint32_t k[4];
      load4_below(keys, s0, wend, k);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        gt += (s0 + i < wend && k[i] > threshold) ? 1 : 0;
        eq += (s0 + i < wend && k[i] == threshold) ? 1 : 0;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      gt += __shfl_xor_sync(0xffffffffu, gt, o);
      eq += __shfl_xor_sync(0xffffffffu, eq, o);
    }
    if (lane == 0) {
      ts.warp_gt[warp] = gt;
      ts.warp_eq[warp] = eq;
    }
    __syncthreads();
    // Lane l holds warp l's counts: the sums over the warps before this one, and over all.
    const int lg = lane < kWarps ? ts.warp_gt[lane] : 0, le = lane < kWarps ? ts.warp_eq[lane] : 0;
    int gt_before = lane < warp ? lg : 0, eq_before = lane < warp ? le : 0, gt_all = lg,
        eq_all = le;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      gt_before += __shfl_xor_sync(0xffffffffu, gt_before, o);
      eq_before += __shfl_xor_sync(0xffffffffu, eq_before, o);
      gt_all += __shfl_xor_sync(0xffffffffu, gt_all, o);
      eq_all += __shfl_xor_sync(0xffffffffu, eq_all, o);
    }
    const int budget = need_equal - equal_seen > 0 ? need_equal - equal_seen : 0;
    // Equal keys met before each step (its own rank base): the first `budget` are taken.
    int eq_rank = eq_before;
    int at = written + gt_before + (eq_before < budget ? eq_before : budget);

    // Sweep 2: the same steps again, every lane of the warp in each (ballots), the next
    // step's keys read before this one's are written.
    const unsigned lower = (1u << lane) - 1u;
    uint32_t next[4];
    load4_below(keys, wbegin + 4 * lane, wend, next);
    for (int base = wbegin; base < wend; base += kStep) {
      const int s0 = base + 4 * lane;
      uint32_t k[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        k[i] = next[i];
      if (base + kStep < wend) load4_below(keys, s0 + kStep, wend, next);
      bool sel[4], equal[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        sel[i] = s0 + i < wend && k[i] > threshold;
        equal[i] = s0 + i < wend && k[i] == threshold;
      }
      // Equal keys are rare (the threshold itself, or ties): ranked only in a step that has one.
      if (__any_sync(0xffffffffu, equal[0] || equal[1] || equal[2] || equal[3])) {
        int e_pre = 0, e_step = 0;
        warp_ranks4(equal, lower, e_pre, e_step);
        e_pre += eq_rank;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (equal[i]) sel[i] = e_pre < budget;
          e_pre += equal[i] ? 1 : 0;
        }
        eq_rank += e_step;
      }
      int pre = 0, step_total = 0;
      warp_ranks4(sel, lower, pre, step_total);
      pre += at;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (sel[i]) {
          out[pre++] = first_position + s0 + i;
          on_selected(k[i], first_position + s0 + i);
        }
      }
      at += step_total;
    }
    __syncthreads();
    return written + gt_all + (eq_all < budget ? eq_all : budget);
  }
};

}  // namespace sparq::device
