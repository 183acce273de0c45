// Exact attention over a row list, split over blocks, merged by the last block of each unit.
// Serves SparQ steps 5-7 (the top-k rows, alpha, v-bar) and dense decoding (every row).
#pragma once

#include "sparq/device/dependent_launch.cuh"
#include "sparq/device/mean_interpolation.cuh"
#include "sparq/device/sparse_attention.cuh"
#include "sparq/dtype.hpp"
#include "sparq/kernels/launch_common.cuh"
#include "sparq/problem.hpp"

namespace sparq::kernels {

template <typename T>
struct AttendParams {
  const T* q;  // [B, Hq, D]
  KVCacheView<T> cache;
  const int* lengths;  // device [B]
  T* out;              // [B, Hq, D]
  int num_q_heads;
  int units_per_batch;
  int heads_per_unit;
  int group_size;
  int length_bound;  // lengths are clamped to [0, length_bound]
  int rows_per_split;
  int splits;
  // SparQ only (null for dense): selected rows [B * units, index_stride] and their count rule.
  const int* indices;
  int64_t index_stride;
  int k;
  const float* alpha;  // [B, Hq]; null: no reallocation
  // Workspace.
  float2* partial_ml;  // [B, Hq, splits]
  float* partial_acc;  // [B, Hq, splits, D]
  unsigned* counters;  // [B, units], zero on entry; the merging block leaves its own zero
};

constexpr int kAttendThreads = 128;
constexpr int kAttendWarps = kAttendThreads / 32;
constexpr int kAttendUnroll = 8;  // rows in flight per lane group

/// Heads across warps: each warp follows one query head. With h heads in a pass (h <= warps),
/// warps / h warps share each head and split the rows; warps of different heads read the same
/// rows, which the first of them brings into L1 for the others, so K and V leave DRAM once
/// per group. More than 4 heads take several passes.
struct WarpRole {
  int heads;      // heads in this pass
  int head;       // this warp's head within the pass (valid when active)
  int row_warp;   // which of the warps sharing the head this is
  int row_warps;  // warps sharing each head
  bool active;
  __device__ WarpRole(int heads_in_pass, int warp, int warps = kAttendWarps) {
    heads = heads_in_pass;
    row_warps = warps / heads;
    head = warp % heads;
    row_warp = warp / heads;
    active = row_warp < row_warps;
  }
};

/// The direct path: this warp's lane groups fold rows [begin, end) into st straight from
/// global memory, kAttendUnroll rows in flight each (row i is rows[i], or i when rows is
/// null); the warps sharing a head interleave. The loop bound is uniform across the warp since
/// update() shuffles with the full mask. Call from active warps only.
/// The row indices are requested one batch ahead, next to the current batch's rows, so each
/// batch waits one memory round trip, not two (index, then row); the first batch's indices
/// are requested before `end` is known (they are bounded by `index_end`, the index buffer's
/// valid extent, not by the sequence length, which may still be in flight).
template <typename T, int D, int kUnroll = kAttendUnroll>
__device__ __forceinline__ void fold_rows_direct(device::AttentionState<T, D, 1>& st,
                                                 const KVCacheView<T>& cache, int b, int kvh,
                                                 const int* rows, int begin, int end, int index_end,
                                                 const WarpRole& role) {
  using G = device::RowGeometry<T, D>;
  const int group_in_warp = (threadIdx.x & 31) / G::kLanesPerRow;
  const int groups = role.row_warps * G::kRowsPerWarp;
  const int step = groups * kUnroll;
  auto fetch_rows = [&](int base, int(&row_of)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + group_in_warp + u * groups;
      row_of[u] = i < index_end ? rows[i] : 0;
    }
  };
  using Batch = uint4[kUnroll][G::kChunksPerLane];
  // Requests a batch's rows (row_at(u, i): the row of lane group's u-th, list position i).
  auto load_batch = [&](int base, auto row_at, Batch& k, Batch& v, bool(&valid)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + group_in_warp + u * groups;
      valid[u] = i < end;
      if (valid[u]) {
        device::load_kv_row<T, D>(cache, b, kvh, row_at(u, i), k[u], v[u]);
      } else {
#pragma unroll
        for (int c = 0; c < G::kChunksPerLane; ++c)
          k[u][c] = v[u][c] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  int base = begin + role.row_warp * G::kRowsPerWarp;
  if (rows == nullptr) {
    // Dense: row i is i, nothing to request ahead. Its own loop keeps no row numbers live
    // across update() (run 9 on the H100: dense was 10-17% slower at some large shapes
    // through the indexed loop).
    for (; base < end; base += step) {
      Batch k, v;
      bool valid[kUnroll];
      load_batch(
          base, [](int, int i) { return i; }, k, v, valid);
      st.update(k, v, valid, 1);
    }
    return;
  }
  int row_of[kUnroll];
  fetch_rows(base, row_of);
  for (; base < end; base += step) {
    Batch k, v;
    bool valid[kUnroll];
    load_batch(
        base, [&](int u, int) { return row_of[u]; }, k, v, valid);
    fetch_rows(base + step, row_of);  // the next batch's, while these rows are in flight
    st.update(k, v, valid, 1);
  }
}

/// Rows of K and V staged per tile in the GQA variant: 16 KiB of shared memory per tile.
template <typename T, int D, int kThreads = kAttendThreads>
struct StageTile {
  static constexpr int kChunksPerRow = D * static_cast<int>(sizeof(T)) / 16;
  static constexpr int kRows = 16384 / (2 * kChunksPerRow * 16);
  static constexpr int kChunks = 2 * kRows * kChunksPerRow;  // K then V
  static constexpr int kPerThread = kChunks / kThreads;
  static_assert(kPerThread * kThreads == kChunks, "a tile splits evenly over the threads");
};

/// Shared memory of attend_split: the staged tile (GQA), each warp's state, the last-block flag.
template <int kThreads, typename T, int D, bool kStaged>
struct AttendShared {
  uint4 stage[kStaged ? StageTile<T, D, kThreads>::kChunks : 1];
  float acc[kThreads / 32][D];
  float2 ml[kThreads / 32];
  bool last;
};

/// Split `split` of one (sequence, unit) by a block of kThreads; the last block of the unit
/// to finish merges the splits, writes the output, sets the unit's counter back to zero (no
/// block of this launch touches it after) and returns true; the others return false early.
/// kStaged (query heads sharing a KV head): the block loads each tile of rows once into
/// shared memory (prefetching the next tile into registers meanwhile) and every warp reads
/// its head's rows from there. Otherwise (one head per unit) each lane group loads its own
/// rows straight into registers, 8 rows in flight.
template <int kThreads, typename T, int D, bool kStaged>
__device__ bool attend_split(const AttendParams<T>& p, int b, int unit, int split,
                             AttendShared<kThreads, T, D, kStaged>& sh) {
  using G = device::RowGeometry<T, D>;
  using Tile = StageTile<T, D, kThreads>;
  constexpr int kWarps = kThreads / 32;
  uint4* s_stage = sh.stage;
  float(*s_acc)[D] = sh.acc;
  float2* s_ml = sh.ml;
  bool& s_last = sh.last;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group_in_warp = lane / G::kLanesPerRow;
  const int lr = lane % G::kLanesPerRow;

  int len = p.lengths[b];
  len = len < 0 ? 0 : (len > p.length_bound ? p.length_bound : len);
  const bool sparse = p.indices != nullptr;
  const int n = sparse ? (p.k < len ? p.k : len) : len;
  const int begin = split * p.rows_per_split;
  const int end = begin + p.rows_per_split < n ? begin + p.rows_per_split : n;
  const int kvh = unit * p.heads_per_unit / p.group_size;
  const int h0 = unit * p.heads_per_unit;
  const int* rows =
      sparse ? p.indices + (static_cast<int64_t>(b) * p.units_per_batch + unit) * p.index_stride
             : nullptr;
  const float qscale = 1.4426950408889634f / sqrtf(static_cast<float>(D));

  for (int hp = 0; hp < p.heads_per_unit; hp += kWarps) {
    const WarpRole role(min(p.heads_per_unit - hp, kWarps), warp, kWarps);
    device::AttentionState<T, D, 1> st;
    st.init(p.q + (static_cast<int64_t>(b) * p.num_q_heads + h0 + hp + role.head) * D, 1, qscale);
    if constexpr (kStaged) {
      // A thread's chunks of a tile, and their rows: for SparQ the rows' indices are requested
      // a tile ahead of the rows (with the previous tile's rows), so a tile waits one round
      // trip, where the registers allow it (rows up to 256 bytes; longer rows spilled).
      constexpr bool kAhead = D * static_cast<int>(sizeof(T)) <= 256;
      const bool ahead = kAhead && sparse;
      const int index_end = min(begin + p.rows_per_split, static_cast<int>(p.index_stride));
      uint4 pre[Tile::kPerThread];
      int row_of[Tile::kPerThread];
      auto fetch_rows = [&](int tile_begin) {
#pragma unroll
        for (int i = 0; i < Tile::kPerThread; ++i) {
          const int c = threadIdx.x + i * kThreads;
          const int r = tile_begin + c % (Tile::kRows * Tile::kChunksPerRow) / Tile::kChunksPerRow;
          row_of[i] = r < index_end ? rows[r] : 0;
        }
      };
      auto prefetch = [&](int tile_begin) {
#pragma unroll
        for (int i = 0; i < Tile::kPerThread; ++i) {
          const int c = threadIdx.x + i * kThreads;
          const int in_tile = c % (Tile::kRows * Tile::kChunksPerRow);
          const int r = tile_begin + in_tile / Tile::kChunksPerRow;
          const int chunk = in_tile % Tile::kChunksPerRow;
          if (r < end) {
            const int row = ahead ? row_of[i] : (sparse ? rows[r] : r);
            const T* src = c < Tile::kRows * Tile::kChunksPerRow ? p.cache.k_row(b, kvh, row)
                                                                 : p.cache.v_row(b, kvh, row);
            pre[i] = device::load16_stream(src + chunk * G::kElemsPerChunk);
          } else {
            pre[i] = make_uint4(0, 0, 0, 0);
          }
        }
      };
      if (ahead) fetch_rows(begin);
      if (begin < end) prefetch(begin);
      if (ahead) fetch_rows(begin + Tile::kRows);
      for (int tile = begin; tile < end; tile += Tile::kRows) {
        __syncthreads();  // every warp is done with the previous tile
#pragma unroll
        for (int i = 0; i < Tile::kPerThread; ++i)
          s_stage[threadIdx.x + i * kThreads] = pre[i];
        __syncthreads();
        if (tile + Tile::kRows < end) prefetch(tile + Tile::kRows);
        if (ahead) fetch_rows(tile + 2 * Tile::kRows);
        if (role.active) {
          const int rows_here = min(Tile::kRows, end - tile);
          const int groups = role.row_warps * G::kRowsPerWarp;
          for (int base = role.row_warp * G::kRowsPerWarp; base < rows_here;
               base += groups * kAttendUnroll) {
            uint4 k[kAttendUnroll][G::kChunksPerLane], v[kAttendUnroll][G::kChunksPerLane];
            bool valid[kAttendUnroll];
#pragma unroll
            for (int u = 0; u < kAttendUnroll; ++u) {
              const int r = base + group_in_warp + u * groups;
              valid[u] = r < rows_here;
#pragma unroll
              for (int c = 0; c < G::kChunksPerLane; ++c) {
                const int chunk = lr + c * G::kLanesPerRow;
                const uint4 zero = make_uint4(0, 0, 0, 0);
                k[u][c] = valid[u] ? s_stage[r * Tile::kChunksPerRow + chunk] : zero;
                v[u][c] =
                    valid[u] ? s_stage[(Tile::kRows + r) * Tile::kChunksPerRow + chunk] : zero;
              }
            }
            st.update(k, v, valid, 1);
          }
        }
      }
      __syncthreads();  // s_stage is free for the next head pass
    } else if (role.active) {
      const int index_end = min(begin + p.rows_per_split, static_cast<int>(p.index_stride));
      fold_rows_direct<T, D>(st, p.cache, b, kvh, sparse ? rows : nullptr, begin, end, index_end,
                             role);
    }
    st.merge_warp();
    // Lane group 0 of each warp holds the warp's state; combine the warps of each head.
    st.store(0, s_acc[warp], &s_ml[warp], role.active);
    __syncthreads();
    for (int idx = threadIdx.x; idx < role.heads * D; idx += kThreads) {
      const int h = idx / D, j = idx % D;
      const float3 m_l_a =
          device::merge_stored_states(s_ml, &s_acc[0][0], D, h, role.heads, kWarps, j);
      const int64_t slot =
          (static_cast<int64_t>(b) * p.num_q_heads + h0 + hp + h) * p.splits + split;
      p.partial_acc[slot * D + j] = m_l_a.z;
      if (j == 0) p.partial_ml[slot] = make_float2(m_l_a.x, m_l_a.y);
    }
    __syncthreads();
  }

  // The last block of this unit to finish merges all splits and writes the output.
  __threadfence();
  __syncthreads();
  unsigned* counter = p.counters + b * p.units_per_batch + unit;
  if (threadIdx.x == 0) {
    __threadfence();  // release in the counting thread, after the barrier (PTX memory model)
    const unsigned prev = atomicAdd(counter, 1u);
    s_last = prev == static_cast<unsigned>(p.splits - 1);
    // Every split has counted: clean for the next launch (which the stream orders after
    // this one), so a zeroed workspace needs no memset before it. Atomic, as every other
    // access to the counter is: PTX orders a plain store after the adds it observed, but a
    // race checker that knows only C++ orders (the emulation's, tests/emu) would not.
    if (s_last) atomicExch(counter, 0u);
  }
  __syncthreads();
  if (!s_last) return false;
  __threadfence();
  const float* vsum = p.alpha ? p.cache.vsum_row(b, kvh) : nullptr;
  for (int idx = threadIdx.x; idx < p.heads_per_unit * D; idx += kThreads) {
    const int h = idx / D, j = idx % D;
    const int64_t slot0 = (static_cast<int64_t>(b) * p.num_q_heads + h0 + h) * p.splits;
    // Requested before the split states, so that both arrive in one round trip.
    const bool reallocate = vsum != nullptr && len > 0;
    const float alpha =
        reallocate ? p.alpha[static_cast<int64_t>(b) * p.num_q_heads + h0 + h] : 0.f;
    const float vbar_sum = reallocate ? vsum[j] : 0.f;
    float y = device::merge_split_partials(p.partial_ml + slot0, p.partial_acc + slot0 * D + j,
                                           p.splits, D);
    if (reallocate) y = device::interpolate_mean(alpha, y, vbar_sum, len);
    p.out[(static_cast<int64_t>(b) * p.num_q_heads + h0 + h) * D + j] = from_float<T>(y);
  }
  return true;
}

/// Blocks per SM the attend kernel is compiled for: the occupancy run 8's code reached
/// unbounded (4 direct or 3 staged blocks for rows of up to 512 bytes, 3 or 2 above), which
/// ptxas keeps without spilling. Left unbounded, the split merge's batched loads pushed the
/// staged variant to 208-254 registers, 2 blocks per SM (run 9, H100: GQA dense 10-15% slower
/// at large batch).
template <typename T, int D, bool kStaged>
constexpr int attend_min_blocks() {
  return D * static_cast<int>(sizeof(T)) <= 512 ? (kStaged ? 3 : 4) : (kStaged ? 2 : 3);
}

template <typename T, int D, bool kStaged>
__global__ void __launch_bounds__(kAttendThreads, (attend_min_blocks<T, D, kStaged>()))
    attend_kernel(AttendParams<T> p) {
  __shared__ AttendShared<kAttendThreads, T, D, kStaged> sh;
  device::begin_dependent_grid();
  attend_split<kAttendThreads, T, D, kStaged>(p, blockIdx.z, blockIdx.y, blockIdx.x, sh);
}

/// Resident blocks of the attend kernel variant for units of `heads_per_unit` query heads.
template <typename T, int D>
int attend_slots(int heads_per_unit) {
  static const int direct = device_slots(attend_kernel<T, D, false>, kAttendThreads);
  static const int staged = device_slots(attend_kernel<T, D, true>, kAttendThreads);
  return heads_per_unit > 1 ? staged : direct;
}

/// How the attend kernel splits each unit's rows, and its piece of the workspace (the same
/// for dense and SparQ): split partial states, and one counter per unit in the workspace's
/// counter region.
template <typename T>
struct AttendSplits {
  int splits = 0, rows_per_split = 0;
  float2* partial_ml = nullptr;  // [B, Hq, splits]
  float* partial_acc = nullptr;  // [B, Hq, splits, D]
  unsigned* counters = nullptr;  // [B, units]
  int64_t num_counters = 0;

  AttendSplits() = default;
  /// Plans up to `rows` rows per unit (at least min_rows per split; exactly `fixed_splits`
  /// splits where that is positive) and carves the partial states; `counters`: batch_units
  /// counters of the counter region (counter_region_count).
  AttendSplits(const DecodeProblem& p, int heads_per_unit, int64_t batch_units, int64_t rows,
               int min_rows, WorkspaceCarver& w, unsigned* counters_in, int fixed_splits = 0) {
    if (fixed_splits > 0) {
      splits = fixed_splits;
    } else {
      int slots = 0;
      dispatch_head_dim(p.head_dim, [&](auto dim) {
        slots = attend_slots<T, decltype(dim)::value>(heads_per_unit);
        return Status::kSuccess;
      });
      splits = plan_splits(rows, batch_units, min_rows, slots);
    }
    rows_per_split = ceil_div(rows, splits);
    const int64_t q_rows = static_cast<int64_t>(p.batch) * p.num_q_heads;
    partial_ml = w.take<float2>(q_rows * splits);
    partial_acc = w.take<float>(q_rows * splits * p.head_dim);
    counters = counters_in;
    num_counters = batch_units;
  }
};

/// Launches the attend kernel over (splits, units, batch) blocks. `clear`: a memset of the
/// per-unit counters first (the last block of each unit merges the splits). Otherwise they are
/// zero already (a zeroed workspace, or the scores kernel of the same step cleared them), and
/// with `dependent` (sm_90) the kernel launches as a programmatic dependent of the previous
/// launch (a memset between would break that chain).
template <typename T, int D>
Status launch_attend(const AttendParams<T>& ap, const AttendSplits<T>& splits, int batch,
                     cudaStream_t stream, bool clear, bool dependent) {
  const dim3 grid(ap.splits, ap.units_per_batch, batch);
  auto kernel = ap.heads_per_unit > 1 ? attend_kernel<T, D, true> : attend_kernel<T, D, false>;
  if (clear) {
    if (cudaMemsetAsync(splits.counters, 0, sizeof(unsigned) * splits.num_counters, stream) !=
        cudaSuccess)
      return Status::kCudaError;
  } else if (dependent) {
    return launch_ex(kernel, grid, dim3(kAttendThreads), 0, stream, 0, true, ap) == cudaSuccess
               ? Status::kSuccess
               : Status::kCudaError;
  }
  kernel<<<grid, kAttendThreads, 0, stream>>>(ap);
  return last_launch_status();
}

}  // namespace sparq::kernels
