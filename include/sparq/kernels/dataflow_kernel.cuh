// SparQ in one launch, as a dataflow: persistent blocks of kFlowThreads take work items (a
// share of a unit's approximate scores, optionally a share of its selection's first pass, a
// unit's selection, a share of a unit's exact attention) in the order of a FlowSchedule, from
// one global ticket counter. A histogram item waits for its unit's score items, a selection
// for those (or its histogram items), an attend item for its unit's selection, through
// per-unit counters in the workspace. Where the three launches leave the device between
// stages (a launch gap, a grid's tail, at batch 1 each several microseconds), here one unit's
// selection runs while other units' scores stream, and its attention while later selections
// run. Each stage is the three-launch code itself (score_chunks, select_stream_unit,
// attend_split) with more threads per block, so the logits, stats and selected positions are
// bit-identical to the three launches with the streaming selection.
#pragma once

#include "sparq/flow_schedule.hpp"
#include "sparq/kernels/attend_kernel.cuh"
#include "sparq/kernels/score_kernel.cuh"
#include "sparq/kernels/select_stream_kernel.cuh"

namespace sparq::kernels {

constexpr int kFlowThreads = 512;
// Score chunks per score item by default: one chunk per kScoreThreads threads, about 128 KB
// of K transposed (r = 16) per item. Each item repeats the query prologue (top-r and
// temperatures), so larger items spend less on it but finish a unit's scores later; plans
// may take a multiple (SparqPlan::flow_chunks_per_item).
constexpr int kFlowChunksPerItem = kFlowThreads / kScoreThreads;
// Rows per attend item, at least: kFlowMinAttendRows (sparq/flow_schedule.hpp).
// A wait this long (ns of the global timer) is a bug, not a wait: trap instead of hanging.
// Generous, for slow runs under compute-sanitizer and test shards sharing the GPU.
constexpr unsigned long long kFlowSpinLimitNs = 20000000000ULL;

/// Histogram items per unit for a bound of `bound` positions: one per tile of the streaming
/// selection's passes (the plan's choice, the launcher's check, the tests').
inline int flow_hist_tiles(int64_t bound) {
  return ceil_div(bound, int64_t{stream_tile_positions<kFlowThreads>()});
}

template <typename T>
struct FlowParams {
  ScoreParams<T> score;
  SelectParams select;
  AttendParams<T> attend;
  FlowSchedule schedule;
  int chunks_per_item;    // score chunks per score item (a multiple of kFlowChunksPerItem)
  unsigned* ticket;       // zero on entry
  unsigned* score_done;   // [units of the batch]: score items finished; zero on entry
  unsigned* select_done;  // [units of the batch]: 1 once the selection is written; zero on entry
  // With histogram items (schedule.hist_items > 0, one tile of stream_tile_positions each):
  unsigned* hist_done;  // [units of the batch]: histogram items finished; zero on entry
  unsigned* hist;       // [units of the batch][device::kStreamBins]: zeroed by score item 0
};

namespace flow_detail {

// An acquire at GPU scope: the SM's L1 is invalidated too (CCTL.IVALL in the SASS), which
// matters because neighbouring units' rows share cache lines. A relaxed or volatile poll
// would not do.
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

/// Thread 0 waits until *counter reaches `target`; then every thread of the block may read
/// what the counted items wrote (the same fence-and-barrier handshake as the attend kernel's
/// last-block merge).
__device__ inline void wait_for(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0) {
    const unsigned long long start = global_ns();
    while (load_acquire(counter) < target) {
      __nanosleep(64);
      if (global_ns() - start > kFlowSpinLimitNs) __trap();
    }
    __threadfence();
  }
  __syncthreads();
}

/// Publishes every thread's writes, then counts this item done. Each thread's fence drains its
/// own stores; thread 0's fence after the barrier is the release the memory model asks for
/// (the barrier orders the block's writes before it, the fence makes them cumulative), the
/// pattern of a cooperative grid's sync.
__device__ inline void signal_done(unsigned* counter) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
  }
}

}  // namespace flow_detail

/// One block per SM (launch with the device's resident count, or fewer); dynamic shared
/// memory: flow_smem_bytes. Counters zero on entry, and zero again on exit: each unit's by the
/// block that merges its attention (every item of the unit has passed its waits by then), the
/// ticket by the block that draws the last one (every block has drawn its last by then).
template <typename T, int D>
__global__ void __launch_bounds__(kFlowThreads, 1) sparq_dataflow_kernel(FlowParams<T> p) {
  // A score item's queries, a selection's candidates, or an attend item's AttendShared.
  extern __shared__ __align__(16) uint32_t s_flow[];
  __shared__ stream_detail::StreamShared<kFlowThreads> s_select;
  __shared__ unsigned s_ticket;
  device::begin_dependent_grid();  // a programmatic dependent launch waits here
  const int64_t total = p.schedule.total();
  const int units_per_batch = p.select.units_per_batch;
  if (threadIdx.x == 0) s_ticket = atomicAdd(p.ticket, 1u);
  __syncthreads();
  for (;;) {
    const unsigned ticket = s_ticket;
    if (static_cast<int64_t>(ticket) >= total) break;
    __syncthreads();  // every thread has the ticket; the last item's shared memory is free
    // The next ticket is taken now and used after this item: its atomic's latency hides
    // behind the item. (Still no deadlock: this item waits only for smaller tickets.)
    unsigned next = 0;
    if (threadIdx.x == 0) next = atomicAdd(p.ticket, 1u);
    const FlowItem it = p.schedule.item(ticket);
    const int b = it.unit / units_per_batch, unit = it.unit % units_per_batch;
    const bool histograms = p.schedule.hist_items > 0;
    unsigned* unit_hist =
        histograms ? p.hist + static_cast<int64_t>(it.unit) * device::kStreamBins : nullptr;
    if (it.kind == FlowKind::kScore) {
      // The unit's histogram starts at zero; its histogram items wait for this item's signal.
      if (histograms && it.index == 0)
        for (int i = threadIdx.x; i < device::kStreamBins; i += kFlowThreads)
          unit_hist[i] = 0;
      const int first = it.index * p.chunks_per_item;
      score_chunks<kFlowThreads, T, D>(p.score, b, unit, first, first + p.chunks_per_item,
                                       reinterpret_cast<float*>(s_flow));
      flow_detail::signal_done(p.score_done + it.unit);
    } else if (it.kind == FlowKind::kHistogram) {
      flow_detail::wait_for(p.score_done + it.unit, static_cast<unsigned>(p.schedule.score_items));
      stream_histogram_tile<kFlowThreads>(p.select, b, unit, it.index, unit_hist, s_select);
      flow_detail::signal_done(p.hist_done + it.unit);
    } else if (it.kind == FlowKind::kSelect) {
      // Histogram items waited for the scores themselves (acquire, then release: what they
      // saw is seen here too).
      if (histograms)
        flow_detail::wait_for(p.hist_done + it.unit, static_cast<unsigned>(p.schedule.hist_items));
      else
        flow_detail::wait_for(p.score_done + it.unit,
                              static_cast<unsigned>(p.schedule.score_items));
      select_stream_unit<kFlowThreads>(p.select, b, unit, s_flow, s_select, unit_hist);
      flow_detail::signal_done(p.select_done + it.unit);
    } else {
      flow_detail::wait_for(p.select_done + it.unit, 1u);
      const bool merged =
          p.attend.heads_per_unit > 1
              ? attend_split<kFlowThreads, T, D, true>(
                    p.attend, b, unit, it.index,
                    *reinterpret_cast<AttendShared<kFlowThreads, T, D, true>*>(s_flow))
              : attend_split<kFlowThreads, T, D, false>(
                    p.attend, b, unit, it.index,
                    *reinterpret_cast<AttendShared<kFlowThreads, T, D, false>*>(s_flow));
      // The unit's last item: its other counters are done with (the attend counter cleared
      // itself), so the workspace is clean for the next launch.
      // Atomic, as every other access to them is (the attend kernel's counter says why).
      if (merged && threadIdx.x == 0) {
        atomicExch(p.score_done + it.unit, 0u);
        atomicExch(p.select_done + it.unit, 0u);
        if (histograms) atomicExch(p.hist_done + it.unit, 0u);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) s_ticket = next;
    __syncthreads();
  }
  // Each block draws tickets until one past the schedule, so total + gridDim.x in all: the
  // last one drawn is the last use of the ticket. Atomic, as the counters' resets are (the
  // attend kernel's counter says why).
  if (threadIdx.x == 0 && static_cast<int64_t>(s_ticket) == total + gridDim.x - 1)
    atomicExch(p.ticket, 0u);
}

/// Dynamic shared memory of the dataflow kernel: the largest of a score item's queries, the
/// selection's candidate lists and the attend items' shared state.
template <typename T, int D>
size_t flow_smem_bytes(int heads_per_unit, int candidates, int above) {
  const size_t score = score_smem_bytes(heads_per_unit, D);
  const size_t select = stream_smem_bytes(candidates, above);
  const size_t attend = sizeof(AttendShared<kFlowThreads, T, D, true>);
  const size_t larger = score > select ? score : select;
  return larger > attend ? larger : attend;
}

/// The dataflow kernel's dynamic shared memory limit (raised once) and its resident blocks
/// with that much; {0, 0} without a device.
struct FlowDeviceLimits {
  int smem = 0, blocks = 0;
};
template <typename T, int D>
FlowDeviceLimits flow_device_limits() {
  static const FlowDeviceLimits limits = [] {
    FlowDeviceLimits l;
    l.smem = raise_dynamic_smem(sparq_dataflow_kernel<T, D>);
    if (l.smem > 0) l.blocks = device_slots(sparq_dataflow_kernel<T, D>, kFlowThreads, l.smem);
    return l;
  }();
  return limits;
}

}  // namespace sparq::kernels
