// Host launch API of SparQ decode attention: one call per layer per decode step for a batch.
// Routes: for few (sequence, unit) pairs on sm_90, one fused launch with a cluster per unit;
// for more units of one head each whose positions fit in shared memory, one fused launch with
// a block per unit; otherwise three kernel launches (scores, selection, exact attention) and
// one memset of counters. A fourth, the dataflow route (one persistent launch after a memset),
// runs only where forced until a GPU run has timed it. On a workspace zeroed once
// (workspace_zeroed) neither memset is needed. No allocation, no host synchronisation and no
// device reads on the host: capturable in a graph.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "sparq/config.hpp"
#include "sparq/flow_tuning.hpp"
#include "sparq/kernels/attend_kernel.cuh"
#include "sparq/kernels/dataflow_kernel.cuh"
#include "sparq/kernels/fused_kernel.cuh"
#include "sparq/kernels/launch_common.cuh"
#include "sparq/kernels/score_kernel.cuh"
#include "sparq/kernels/select_kernel.cuh"
#include "sparq/kernels/select_stream_kernel.cuh"
#include "sparq/selection_units.hpp"

namespace sparq {

/// Everything one SparQ decode launch reads and writes (device pointers).
template <typename T>
struct SparqDecodeParams {
  DecodeProblem problem;
  SparqConfig config;
  const T* q = nullptr;          ///< [B, Hq, d]
  KVCacheView<T> cache;          ///< K, Kt, V and Vsum (Vsum only with reallocation)
  const int* lengths = nullptr;  ///< device [B]; clamped to [0, problem.length_bound()]
  T* out = nullptr;              ///< [B, Hq, d]
  /// sm_90 (ignored elsewhere, and for kernels built for an older architecture): the
  /// three-launch route's kernels start as programmatic dependent launches, each while the
  /// kernel before it in the stream finishes (they wait for it before touching memory), with
  /// no memset between them. griddepcontrol.wait waits for the previous grid only, so every
  /// kernel the caller launches as a dependent between two decode steps must wait too. On an
  /// H100 (run 8) 2-3 µs faster per step at batch 1, no change at batch 64; off by default for
  /// that contract. Also switched on for every call by SPARQ_PDL=1. With workspace_zeroed, the
  /// dataflow route's kernel launches as a dependent too.
  bool dependent_launch = false;
  /// The workspace is clean, so no memset of counters is launched before the kernels (one
  /// graph node and one kernel boundary fewer per call; dependent launches are not broken
  /// by it). It is clean when it was zeroed (cudaMemsetAsync over its bytes) before its first
  /// launch and has since been used only by decode launches (sparq_decode, dense_decode,
  /// decode_attention: any mode, route, config or length bound) with the same batch and
  /// number of query heads: their counters sit at the workspace's start and every launch
  /// leaves them zero. Saves 1-2 µs per launch at batch 1 (H100, run 8).
  bool workspace_zeroed = false;
};

namespace kernels {

/// How launch 2 selects, by the length bound: a cluster of blocks with keys in their shared
/// memory (sm_90), one block with keys in shared memory, or one block with keys in the
/// workspace (long sequences, or no device to ask); or, only where forced (SPARQ_SELECT=stream
/// or the plan's argument) until a GPU run has timed it, one block that streams the keys from
/// the logits (select_stream_kernel).
enum class SelectRoute { kCluster, kSharedKeys, kGlobalKeys, kStream };

/// Dynamic shared memory the streaming selection may use (its limit raised once); 0 without a
/// device.
inline size_t stream_smem_limit() {
  static const size_t bytes = static_cast<size_t>(raise_dynamic_smem(select_stream_kernel<>));
  return bytes;
}

/// Shared-memory capacities of the streaming selection for up to `kmax` selected positions:
/// the higher bins' positions (up to kStreamAbove; beyond, the kernel takes its streamed
/// path) and then up to kStreamCandidates candidates in what is left. {0, 0} where even one
/// candidate does not fit (no device).
struct StreamCapacity {
  int candidates = 0, above = 0;
};
inline StreamCapacity stream_capacity(int64_t kmax, size_t limit = stream_smem_limit()) {
  StreamCapacity c;
  c.above = static_cast<int>(kmax < kStreamAbove ? kmax : kStreamAbove);
  const size_t above_bytes = stream_smem_bytes(0, c.above);
  const int64_t fit = limit > above_bytes ? static_cast<int64_t>((limit - above_bytes) / 8) : 0;
  c.candidates = static_cast<int>(fit < kStreamCandidates ? fit : kStreamCandidates);
  if (c.candidates < 1) c = StreamCapacity{};
  return c;
}

/// Whether the dataflow route runs on this device for up to `kmax` selected positions: its
/// kernel is resident, and its shared memory holds the streaming selection's lists.
template <typename T, int D>
bool flow_fits(int64_t kmax, int heads_per_unit) {
  const FlowDeviceLimits l = flow_device_limits<T, D>();
  const StreamCapacity c = stream_capacity(kmax, static_cast<size_t>(l.smem));
  return l.blocks > 0 && c.candidates > 0 &&
         flow_smem_bytes<T, D>(heads_per_unit, c.candidates, c.above) <=
             static_cast<size_t>(l.smem);
}

/// The SPARQ_SELECT environment variable: "stream" makes every three-launch plan select with
/// select_stream_kernel, "cluster" with select_cluster_kernel wherever it fits (sm_90; to time
/// it end to end at batches where the rule takes the one-block kernel); unset, empty or
/// "auto": the rule (select_route). Null where the value is not one of those.
inline std::optional<std::optional<SelectRoute>> parse_select_override(const char* v) {
  const std::string s = v ? v : "";
  if (s.empty() || s == "auto") return std::optional<SelectRoute>{};
  if (s == "stream") return std::optional<SelectRoute>{SelectRoute::kStream};
  if (s == "cluster") return std::optional<SelectRoute>{SelectRoute::kCluster};
  return std::nullopt;
}

inline std::optional<SelectRoute> select_override() {
  static const std::optional<SelectRoute> value = [] {
    const char* v = std::getenv("SPARQ_SELECT");
    const auto parsed = parse_select_override(v);
    if (parsed) return *parsed;
    std::fprintf(stderr, "sparq: SPARQ_SELECT=%s ignored (auto, stream or cluster)\n", v);
    return std::optional<SelectRoute>{};
  }();
  return value;
}

/// Keys the one-block select kernel can hold in shared memory (its limit raised once).
template <int kThreads>
int block_key_capacity() {
  static const int keys =
      raise_dynamic_smem(select_kernel<true, kThreads>) / static_cast<int>(sizeof(uint32_t));
  return keys;
}

/// Whether the one-block selection takes kSelectThreadsWide threads: where its keys leave room
/// for one block per SM only, more warps hide the shared-memory latency. On an H100 (batch
/// 64): S 32k 484 against 619 µs; S 16k, two blocks per SM, 279 against 212 µs.
inline bool wide_select_preferred(int bound) {
  const int narrow = block_key_capacity<kSelectThreads>();
  return 2 * bound > narrow && bound <= block_key_capacity<kSelectThreadsWide>();
}

/// Keys a block of the cluster selection (kThreads) holds in shared memory (its limit raised
/// once); 0 without clusters.
template <int kThreads>
int cluster_key_capacity() {
  static const int keys =
      device_has_clusters()
          ? raise_dynamic_smem(select_cluster_kernel<kThreads>) / static_cast<int>(sizeof(uint32_t))
          : 0;
  return keys;
}

/// Whether the cluster selection runs for this length bound: an sm_90 device whose shared
/// memory holds a block's segment of keys.
inline bool cluster_select_fits(int bound) {
  return cluster_segment(bound) <= cluster_key_capacity<kClusterThreads>();
}

/// Whether the cluster selection launches kClusterThreadsWide threads per block
/// (cluster_select_wide_rule on this device, where their keys fit).
inline bool wide_cluster_select_preferred(int bound, int64_t batch_units) {
  return cluster_select_wide_rule(cluster_segment(bound), batch_units, planning_sm_count()) &&
         cluster_segment(bound) <= cluster_key_capacity<kClusterThreadsWide>();
}

inline SelectRoute select_route(int bound, int64_t batch_units) {
  const int block_keys = block_key_capacity<kSelectThreads>();
  // A cluster spreads one unit over 8 SMs: worth its barriers only while one block per unit
  // would leave most of the device idle.
  const bool few_units = batch_units < planning_sm_count();
  if (few_units && cluster_select_fits(bound)) return SelectRoute::kCluster;
  if (bound <= block_keys) return SelectRoute::kSharedKeys;
  if (cluster_select_fits(bound)) return SelectRoute::kCluster;
  return SelectRoute::kGlobalKeys;
}

/// How a SparQ decode step runs (SparqPlan::route). kDataflow (sparq_dataflow_kernel) only
/// where forced (SPARQ_ROUTE=dataflow or the plan's argument) until a GPU run has timed it.
enum class SparqRoute { kFusedCluster, kFusedBlock, kThreeLaunches, kDataflow };

/// The SPARQ_ROUTE environment variable, read once: "three", "cluster", "block" or "dataflow"
/// make every plan take that route wherever it can run (else the rule decides); unset, empty
/// or "auto": the rule. For comparing routes end to end, and as an escape hatch.
enum class RouteOverride { kAuto, kThree, kCluster, kBlock, kDataflow, kInvalid };

/// SPARQ_ROUTE's value as a RouteOverride (null or empty: kAuto).
inline RouteOverride parse_route_override(const char* v) {
  const std::string s = v ? v : "";
  if (s.empty() || s == "auto") return RouteOverride::kAuto;
  if (s == "three") return RouteOverride::kThree;
  if (s == "cluster") return RouteOverride::kCluster;
  if (s == "block") return RouteOverride::kBlock;
  if (s == "dataflow") return RouteOverride::kDataflow;
  return RouteOverride::kInvalid;
}

inline RouteOverride route_override() {
  static const RouteOverride value = [] {
    const char* v = std::getenv("SPARQ_ROUTE");
    const RouteOverride r = parse_route_override(v);
    if (r != RouteOverride::kInvalid) return r;
    std::fprintf(stderr,
                 "sparq: SPARQ_ROUTE=%s ignored (auto, three, cluster, block or dataflow)\n", v);
    return RouteOverride::kAuto;
  }();
  return value;
}

/// The SPARQ_PDL environment variable: "1" asks for dependent launches (SparqPlan::
/// dependent_launch), "0", empty or unset not; null for any other value.
inline std::optional<bool> parse_pdl_override(const char* v) {
  const std::string s = v ? v : "";
  if (s.empty() || s == "0") return false;
  if (s == "1") return true;
  return std::nullopt;
}

inline bool dependent_launch_requested() {
  static const bool value = [] {
    const char* v = std::getenv("SPARQ_PDL");
    const std::optional<bool> parsed = parse_pdl_override(v);
    if (parsed) return *parsed;
    std::fprintf(stderr, "sparq: SPARQ_PDL=%s ignored (0 or 1)\n", v);
    return false;
  }();
  return value;
}

/// The SPARQ_FLOW environment variable, read once (parse_flow_tuning's form, e.g.
/// "lag_pct=50,steps=2,hist=0,rows=256"): the dataflow route's settings for every plan that is
/// not given its own. Unset or empty: the plan's rules; an invalid value is ignored with a
/// message.
inline FlowTuning flow_tuning_override() {
  static const FlowTuning value = [] {
    const char* v = std::getenv("SPARQ_FLOW");
    const std::optional<FlowTuning> parsed = parse_flow_tuning(v);
    if (parsed) return *parsed;
    std::fprintf(stderr,
                 "sparq: SPARQ_FLOW=%s ignored (comma-separated lag_pct=1..%d, steps=1..%d, "
                 "hist=auto|0|1, rows=%d..%d)\n",
                 v, kFlowLagPctMax, kFlowScoreStepsMax, kFlowAttendRowsMin, kFlowAttendRowsMax);
    return FlowTuning{};
  }();
  return value;
}

/// Where each intermediate lives in the workspace; the same plan sizes and carves it.
template <typename T>
struct SparqPlan {
  SelectionUnits units;
  SparqRoute route = SparqRoute::kThreeLaunches;
  SelectRoute select = SelectRoute::kSharedKeys;  // launch 2 of the three launches
  bool select_wide = false;                       // kCluster: kClusterThreadsWide threads per block
  // The three launches as programmatic dependent launches (sm_90; the caller's dependent_launch
  // or SPARQ_PDL=1): each may start while the one before finishes; no memset.
  bool dependent_launch = false;
  // select_stream_kernel's shared-memory capacities (tests lower the candidates).
  int stream_candidates = 0, stream_above = 0;
  int chunk_positions = 0, chunks = 0, score_iters = 1, kmax = 0;
  int stat_chunks = 0;  // softmax stats per query head: one per warp span of each chunk
  int64_t logit_stride = 0;
  float* logits = nullptr;
  device::SoftmaxStats* stats = nullptr;
  uint32_t* keys = nullptr;
  int* indices = nullptr;
  float* alpha = nullptr;
  WorkspaceCarver carver;
  AttendSplits<T> attend;
  // The dataflow route: its item order, resident blocks (0 without a device) and counters:
  // the ticket, then per unit its score items done, its selection done, attend.counters and
  // its histogram items done.
  FlowSchedule flow;
  int flow_blocks = 0;
  int flow_grid_limit = 0;  // tests: at most this many blocks (0: as many as are resident)
  int flow_chunks_per_item = kFlowChunksPerItem;  // score chunks per score item
  // Histogram items per unit (one per tile of the bound; 0: each selection counts its own
  // first pass) and their histograms, kStreamBins counters per unit.
  int flow_hist_items = 0;
  unsigned* flow_hist = nullptr;
  unsigned* flow_counters = nullptr;
  size_t counter_bytes = 0;
  size_t bytes = 0;

  /// The route comes from the rule (and SPARQ_ROUTE) unless `forced` names one, the selection
  /// kernel of the three launches from select_route (and SPARQ_SELECT) unless `forced_select`
  /// does; the workspace holds that route's pieces only: the counter region (counter_region_count),
  /// the positions and alpha (every route writes them, at the same offsets), then, for the three
  /// launches and the dataflow route, the logits, stats, keys and splits.
  /// `flow_tuning`: the dataflow route's settings (null: SPARQ_FLOW's, else the rules'; the
  /// tuning benchmark tries others).
  SparqPlan(const DecodeProblem& p, const SparqConfig& c, void* workspace,
            std::optional<SparqRoute> forced = std::nullopt,
            std::optional<SelectRoute> forced_select = std::nullopt,
            std::optional<FlowTuning> flow_tuning = std::nullopt)
      : carver(workspace) {
    units = selection_units(p, c.gqa);
    const int64_t bound = p.length_bound();
    const int64_t batch_units = static_cast<int64_t>(p.batch) * units.per_batch;
    const int64_t q_rows = static_cast<int64_t>(p.batch) * p.num_q_heads;
    chunk_positions = score_chunk_positions<T>();
    chunks = ceil_div(bound, chunk_positions);
    stat_chunks = chunks * kScoreWarps;
    kmax = static_cast<int>(c.k < bound ? c.k : bound);
    int score_block_slots = 0;
    dispatch_head_dim(p.head_dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      score_block_slots = score_slots<T, D>(units.heads_per_unit);
      const int b = static_cast<int>(bound);
      const bool cluster = fused_fits<T, D>(b, units.heads_per_unit);
      const bool block = fused_block_fits<T, D>(b, units.heads_per_unit);
      const RouteOverride forced = route_override();
      if (forced == RouteOverride::kThree) {
        route = SparqRoute::kThreeLaunches;
      } else if (forced == RouteOverride::kCluster && cluster) {
        route = SparqRoute::kFusedCluster;
      } else if (forced == RouteOverride::kBlock && block) {
        route = SparqRoute::kFusedBlock;
      } else if (forced == RouteOverride::kDataflow &&
                 flow_fits<T, D>(kmax, units.heads_per_unit)) {
        route = SparqRoute::kDataflow;
      } else if (cluster &&
                 cluster_route_preferred<T, D>(batch_units, bound, units.heads_per_unit)) {
        route = SparqRoute::kFusedCluster;
      } else if (block && block_route_preferred(batch_units, bound, units.heads_per_unit)) {
        route = SparqRoute::kFusedBlock;
      }
      return Status::kSuccess;
    });
    if (forced) route = *forced;
    // Consecutive chunks per score block (each computes its unit's top-r and temperatures
    // once for all of them), chosen so that the grid's last wave is not mostly empty.
    score_iters = plan_chunk_iters(chunks, batch_units, score_block_slots);
    // A forced cluster selection (SPARQ_SELECT=cluster) only where it fits; the rule elsewhere.
    const std::optional<SelectRoute> env_select =
        select_override() == SelectRoute::kCluster && !cluster_select_fits(static_cast<int>(bound))
            ? std::nullopt
            : select_override();
    select = forced_select ? *forced_select
             : env_select  ? *env_select
                           : select_route(static_cast<int>(bound), batch_units);
    select_wide = select == SelectRoute::kCluster &&
                  wide_cluster_select_preferred(static_cast<int>(bound), batch_units);
    size_t flow_smem_limit = 0;
    if (route == SparqRoute::kDataflow)
      dispatch_head_dim(p.head_dim, [&](auto dim) {
        const FlowDeviceLimits l = flow_device_limits<T, decltype(dim)::value>();
        flow_smem_limit = static_cast<size_t>(l.smem);
        flow_blocks = l.blocks;
        return Status::kSuccess;
      });
    const StreamCapacity cap = route == SparqRoute::kDataflow
                                   ? stream_capacity(kmax, flow_smem_limit)
                                   : stream_capacity(kmax);
    stream_candidates = cap.candidates;
    stream_above = cap.above;
    dependent_launch = dependent_launch_requested() && dependent_launch_supported();
    logit_stride = (bound + 3) / 4 * 4;
    WorkspaceCarver& w = carver;
    // The counter region first, at the same place for every decode plan (counter_region_count).
    unsigned* const counter_region = w.take<unsigned>(counter_region_count(p));
    indices = w.take<int>(batch_units * kmax);
    alpha = w.take<float>(q_rows);
    if (route == SparqRoute::kThreeLaunches) {
      logits = w.take<float>(q_rows * logit_stride);
      stats = w.take<device::SoftmaxStats>(q_rows * stat_chunks);
      // Selection keys live in shared memory where the bound fits, else in the workspace.
      keys = w.take<uint32_t>(select == SelectRoute::kGlobalKeys ? batch_units * logit_stride : 0);
      attend = AttendSplits<T>(p, units.heads_per_unit, batch_units, kmax, 32, w, counter_region);
    } else if (route == SparqRoute::kDataflow) {
      logits = w.take<float>(q_rows * logit_stride);
      stats = w.take<device::SoftmaxStats>(q_rows * stat_chunks);
      // Settings out of parse_flow_tuning's ranges are clamped into them.
      FlowTuning tune = flow_tuning ? *flow_tuning : flow_tuning_override();
      tune.lag_pct = std::clamp(tune.lag_pct, 1, kFlowLagPctMax);
      tune.score_steps = std::clamp(tune.score_steps, 1, kFlowScoreStepsMax);
      if (tune.attend_rows > 0)
        tune.attend_rows = std::clamp(tune.attend_rows, kFlowAttendRowsMin, kFlowAttendRowsMax);
      flow_chunks_per_item = tune.score_steps * kFlowChunksPerItem;
      // At least kFlowMinAttendRows rows per attend item, and about 8 items per block at
      // most over the batch (the split partials grow with batch x splits).
      const int blocks = flow_blocks > 0 ? flow_blocks : planning_sm_count();
      const int64_t most = std::max<int64_t>(1, 8 * static_cast<int64_t>(blocks) / batch_units);
      const int min_rows = tune.attend_rows > 0 ? tune.attend_rows : kFlowMinAttendRows;
      const int64_t splits =
          std::min<int64_t>({ceil_div(kmax > 0 ? kmax : 1, min_rows), most, 256});
      // The ticket, then per unit the score count, the selection flag, the attend kernel's
      // counter and the histogram count, in the counter region (1 + 4 per unit at most).
      flow_counters = counter_region;
      counter_bytes = sizeof(unsigned) * static_cast<size_t>(1 + 4 * batch_units);
      attend = AttendSplits<T>(p, units.heads_per_unit, batch_units, kmax, 32, w,
                               flow_counters ? flow_counters + 1 + 2 * batch_units : nullptr,
                               static_cast<int>(splits));
      // The selection's first pass split over histogram items (a tile each) where it is
      // long and units are few, where the last selection is the critical path: by the timing
      // model (tests/test_flow_schedule_model.cpp) they shorten B1 S128k by about 5% (32
      // heads) to 20% (8 units), change little at 32 heads and 32k, and only add work where
      // units fill the device. (Chosen by the bound, not the lengths: items past a
      // sequence's length return at once.)
      // Tuning may force them on wherever there are two tiles or more, or off.
      const int tiles = flow_hist_tiles(bound);
      const bool hist_rule = tiles >= 4 && 4 * batch_units <= blocks;
      flow_hist_items = (tune.hist < 0 ? hist_rule : tune.hist > 0 && tiles >= 2) ? tiles : 0;
      flow_hist =
          flow_hist_items > 0 ? w.take<unsigned>(batch_units * device::kStreamBins) : nullptr;
      flow =
          make_flow_schedule(static_cast<int>(batch_units), ceil_div(chunks, flow_chunks_per_item),
                             attend.splits, blocks, flow_hist_items);
      if (tune.lag_pct != 100) flow = scale_flow_lags(flow, tune.lag_pct);
    }
    bytes = w.bytes();
  }
};

template <typename T>
Status validate_sparq(const SparqDecodeParams<T>& a) {
  if (Status s = validate_problem(a.problem); !ok(s)) return s;
  if (Status s = validate_config(a.config, a.problem.head_dim); !ok(s)) return s;
  const SelectionUnits u = selection_units(a.problem, a.config.gqa);
  if (u.heads_per_unit > kMaxHeadsPerUnit) return Status::kUnsupportedGroupSize;
  if (a.q == nullptr || a.out == nullptr || a.lengths == nullptr || a.cache.k == nullptr ||
      a.cache.kt == nullptr || a.cache.v == nullptr)
    return Status::kNullPointer;
  if (a.config.reallocation && a.cache.vsum == nullptr) return Status::kNullPointer;
  if (Status s = validate_strides(a.problem, a.cache); !ok(s)) return s;
  return check_cache_alignment(a.cache, /*need_kt=*/true);
}

/// Each stage's parameters from a plan (the three launches and the dataflow route share
/// them). `attend_counters`: cleared by the score kernel (dependent launches), or null.
template <typename T>
ScoreParams<T> score_params(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                            unsigned* attend_counters) {
  const DecodeProblem& p = a.problem;
  return ScoreParams<T>{a.q,
                        a.cache,
                        a.lengths,
                        p.num_q_heads,
                        plan.units.per_batch,
                        plan.units.heads_per_unit,
                        plan.units.group_size,
                        p.length_bound(),
                        p.capacity,
                        a.config.r,
                        plan.chunks,
                        plan.score_iters,
                        plan.stat_chunks,
                        plan.logits,
                        plan.logit_stride,
                        plan.stats,
                        attend_counters};
}

template <typename T>
SelectParams select_params(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan) {
  const DecodeProblem& p = a.problem;
  return SelectParams{a.lengths,
                      p.num_q_heads,
                      plan.units.per_batch,
                      plan.units.heads_per_unit,
                      p.length_bound(),
                      a.config.k,
                      a.config.local_window,
                      score_stat_positions<T>(),
                      plan.stat_chunks,
                      plan.logits,
                      plan.logit_stride,
                      plan.stats,
                      plan.keys,
                      plan.indices,
                      plan.kmax,
                      plan.alpha,
                      plan.stream_candidates,
                      plan.stream_above};
}

template <typename T>
AttendParams<T> attend_params(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan) {
  const DecodeProblem& p = a.problem;
  return AttendParams<T>{a.q,
                         a.cache,
                         a.lengths,
                         a.out,
                         p.num_q_heads,
                         plan.units.per_batch,
                         plan.units.heads_per_unit,
                         plan.units.group_size,
                         p.length_bound(),
                         plan.attend.rows_per_split,
                         plan.attend.splits,
                         plan.indices,
                         plan.kmax,
                         a.config.k,
                         a.config.reallocation ? plan.alpha : nullptr,
                         plan.attend.partial_ml,
                         plan.attend.partial_acc,
                         plan.attend.counters};
}

/// Launch 1: approximate logits and softmax stats per warp span.
template <typename T, int D>
Status launch_sparq_scores(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                           cudaStream_t stream) {
  // A plan made for a fused route carved no room for this launch's intermediates.
  if (plan.route != SparqRoute::kThreeLaunches) return Status::kWorkspaceTooSmall;
  const DecodeProblem& p = a.problem;
  const ScoreParams<T> sp =
      score_params(a, plan, plan.dependent_launch ? plan.attend.counters : nullptr);
  const size_t smem = score_smem_bytes(plan.units.heads_per_unit, D);
  const dim3 grid(ceil_div(plan.chunks, plan.score_iters), plan.units.per_batch, p.batch);
  return launch_ex(score_kernel<T, D>, grid, dim3(kScoreThreads), smem, stream, 0,
                   plan.dependent_launch, sp) == cudaSuccess
             ? Status::kSuccess
             : Status::kCudaError;
}

/// Launch 2: top-k positions and alpha. kThreads sizes the one-block kernel (the benchmark
/// compares kSelectThreadsWide; kUnsupportedDevice where its shared memory is too small).
template <typename T, int kThreads = kSelectThreads>
Status launch_sparq_select(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                           cudaStream_t stream) {
  // A plan made for a fused route carved no room for this launch's intermediates.
  if (plan.route != SparqRoute::kThreeLaunches) return Status::kWorkspaceTooSmall;
  const DecodeProblem& p = a.problem;
  const SelectParams sel = select_params(a, plan);
  const int bound = p.length_bound();
  const dim3 grid(plan.units.per_batch, p.batch);
  const bool dep = plan.dependent_launch;
  cudaError_t e = cudaSuccess;
  switch (plan.select) {
    case SelectRoute::kCluster: {
      const bool wide = plan.select_wide;
      if (!cluster_select_fits(bound) ||
          (wide && cluster_segment(bound) > cluster_key_capacity<kClusterThreadsWide>()))
        return Status::kUnsupportedDevice;
      e = launch_ex(wide ? select_cluster_kernel<kClusterThreadsWide>
                         : select_cluster_kernel<kClusterThreads>,
                    dim3(kClusterBlocks, plan.units.per_batch, p.batch),
                    dim3(wide ? kClusterThreadsWide : kClusterThreads),
                    sizeof(uint32_t) * cluster_segment(bound), stream, kClusterBlocks, dep, sel);
      break;
    }
    case SelectRoute::kSharedKeys:
      if (bound > block_key_capacity<kThreads>()) return Status::kUnsupportedDevice;
      e = launch_ex(select_kernel<true, kThreads>, grid, dim3(kThreads),
                    sizeof(uint32_t) * static_cast<size_t>(bound), stream, 0, dep, sel);
      break;
    case SelectRoute::kGlobalKeys:
      e = launch_ex(select_kernel<false, kThreads>, grid, dim3(kThreads), 0, stream, 0, dep, sel);
      break;
    case SelectRoute::kStream:
      if (plan.stream_candidates < 1 || plan.stream_above < 0 ||
          stream_smem_bytes(plan.stream_candidates, plan.stream_above) > stream_smem_limit())
        return Status::kUnsupportedDevice;
      e = launch_ex(select_stream_kernel<>, grid, dim3(kStreamThreads),
                    stream_smem_bytes(plan.stream_candidates, plan.stream_above), stream, 0, dep,
                    sel);
      break;
  }
  return e == cudaSuccess ? Status::kSuccess : Status::kCudaError;
}

/// Launch 3: exact attention on the selected rows, merge, interpolation with v-bar. A memset of
/// the counters comes first unless the workspace is zeroed or (`after_scores`) this step's
/// scores launch, from a plan with dependent launches, cleared them; without it, a plan with
/// dependent launches launches this one as a dependent.
template <typename T, int D>
Status launch_sparq_attend(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                           cudaStream_t stream, bool after_scores = false) {
  // A plan made for a fused route carved no room for this launch's intermediates.
  if (plan.route != SparqRoute::kThreeLaunches) return Status::kWorkspaceTooSmall;
  const DecodeProblem& p = a.problem;
  const AttendParams<T> ap = attend_params(a, plan);
  const bool clear = !a.workspace_zeroed && !(after_scores && plan.dependent_launch);
  return launch_attend<T, D>(ap, plan.attend, p.batch, stream, clear,
                             plan.dependent_launch && !clear);
}

/// The three-launch route; the plan must have been made for it (SparqPlan(..., SparqRoute::
/// kThreeLaunches)), else kWorkspaceTooSmall and nothing is launched.
template <typename T, int D>
Status launch_sparq_three(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                          cudaStream_t stream) {
  if (Status s = launch_sparq_scores<T, D>(a, plan, stream); !ok(s)) return s;
  const Status selected = wide_select_preferred(a.problem.length_bound())
                              ? launch_sparq_select<T, kSelectThreadsWide>(a, plan, stream)
                              : launch_sparq_select<T>(a, plan, stream);
  if (!ok(selected)) return selected;
  return launch_sparq_attend<T, D>(a, plan, stream, /*after_scores=*/true);
}

/// The dataflow route (one launch, after a memset unless the workspace is zeroed; the kernel
/// leaves its counters zero); the plan must have been made for it, else
/// kWorkspaceTooSmall and nothing is launched; kUnsupportedDevice where its selection's shared
/// memory does not fit (no device).
template <typename T, int D>
Status launch_sparq_dataflow(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                             cudaStream_t stream) {
  if (plan.route != SparqRoute::kDataflow) return Status::kWorkspaceTooSmall;
  const DecodeProblem& p = a.problem;
  const FlowDeviceLimits limits = flow_device_limits<T, D>();
  const size_t smem =
      flow_smem_bytes<T, D>(plan.units.heads_per_unit, plan.stream_candidates, plan.stream_above);
  if (limits.blocks < 1 || plan.stream_candidates < 1 || plan.stream_above < 0 ||
      smem > static_cast<size_t>(limits.smem))
    return Status::kUnsupportedDevice;
  // Every chunk in exactly one score item: a plan whose schedule does not match its chunks
  // per item (edited after it was made) does not describe this launch, as for a plan made
  // for another route.
  const int cpi = plan.flow_chunks_per_item;
  if (cpi < kFlowChunksPerItem || cpi % kFlowChunksPerItem != 0 ||
      static_cast<int64_t>(plan.flow.score_items) * cpi < plan.chunks ||
      static_cast<int64_t>(plan.flow.score_items - 1) * cpi >= plan.chunks)
    return Status::kWorkspaceTooSmall;
  // Histogram items: none, or one per tile of the bound with the plan's histograms (a plan
  // that carved none cannot take them).
  const int hist = plan.flow.hist_items;
  if (hist != 0 && (plan.flow_hist == nullptr || hist != flow_hist_tiles(p.length_bound())))
    return Status::kWorkspaceTooSmall;
  // Other units or attend items than the plan's would index past its counters, and lags out
  // of order would make an item wait for a later ticket (a trap after 20 s): such a schedule
  // does not describe this launch either.
  const FlowSchedule& f = plan.flow;
  if (f.units != static_cast<int64_t>(p.batch) * plan.units.per_batch ||
      f.attend_items != plan.attend.splits || f.hist_lag < 1 || f.select_lag < 1 ||
      (hist > 0 && f.select_lag <= f.hist_lag) || f.attend_lag <= f.select_lag)
    return Status::kWorkspaceTooSmall;
  FlowParams<T> fp;
  fp.score = score_params(a, plan, nullptr);
  fp.select = select_params(a, plan);
  fp.attend = attend_params(a, plan);
  fp.schedule = plan.flow;
  fp.chunks_per_item = cpi;
  const int64_t batch_units = static_cast<int64_t>(p.batch) * plan.units.per_batch;
  fp.ticket = plan.flow_counters;
  fp.score_done = plan.flow_counters + 1;
  fp.select_done = plan.flow_counters + 1 + batch_units;
  fp.hist_done = plan.flow_counters + 1 + 3 * batch_units;
  fp.hist = hist > 0 ? plan.flow_hist : nullptr;
  if (!a.workspace_zeroed &&
      cudaMemsetAsync(plan.flow_counters, 0, plan.counter_bytes, stream) != cudaSuccess)
    return Status::kCudaError;
  int64_t grid = std::min<int64_t>(plan.flow.total(), limits.blocks);
  if (plan.flow_grid_limit > 0) grid = std::min<int64_t>(grid, plan.flow_grid_limit);
  // A dependent launch only without the memset (one between would break the chain).
  return launch_ex(sparq_dataflow_kernel<T, D>, dim3(static_cast<unsigned>(grid)),
                   dim3(kFlowThreads), smem, stream, 0, a.workspace_zeroed && plan.dependent_launch,
                   fp) == cudaSuccess
             ? Status::kSuccess
             : Status::kCudaError;
}

template <typename T>
FusedParams<T> fused_params(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan) {
  const DecodeProblem& p = a.problem;
  return FusedParams<T>{a.q,
                        a.cache,
                        a.lengths,
                        a.out,
                        p.num_q_heads,
                        plan.units.per_batch,
                        plan.units.heads_per_unit,
                        plan.units.group_size,
                        p.length_bound(),
                        p.capacity,
                        a.config.r,
                        a.config.k,
                        a.config.local_window,
                        a.config.reallocation,
                        plan.indices,
                        plan.kmax,
                        plan.alpha};
}

/// The fused route with a cluster per unit, from a plan made for any route; kUnsupportedDevice
/// (nothing launched) where the device cannot run it for this shape.
template <typename T, int D>
Status launch_sparq_fused(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                          cudaStream_t stream) {
  const DecodeProblem& p = a.problem;
  const int bound = p.length_bound();
  if (!fused_fits<T, D>(bound, plan.units.heads_per_unit)) return Status::kUnsupportedDevice;
  const size_t smem = fused_smem_bytes(plan.units.heads_per_unit, D, cluster_segment(bound));
  if (launch_ex(sparq_fused_kernel<T, D, kClusterBlocks>,
                dim3(kClusterBlocks, plan.units.per_batch, p.batch), dim3(kFusedThreads), smem,
                stream, kClusterBlocks, false, fused_params(a, plan)) != cudaSuccess)
    return Status::kCudaError;
  return Status::kSuccess;
}

/// The fused route with a block per unit, from a plan made for any route: the in-place kernel for
/// units of one head, the fused kernel as a cluster of one block for units of several (sm_90).
/// kUnsupportedDevice (nothing launched) where the positions exceed its shared memory.
template <typename T, int D>
Status launch_sparq_fused_block(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan,
                                cudaStream_t stream) {
  const DecodeProblem& p = a.problem;
  const int bound = p.length_bound(), nh = plan.units.heads_per_unit;
  if (!fused_block_fits<T, D>(bound, nh)) return Status::kUnsupportedDevice;
  const dim3 grid(plan.units.per_batch, p.batch);
  if (nh == 1) {
    sparq_fused_block_kernel<T, D>
        <<<grid, kFusedBlockThreads, fused_block_smem_bytes(D, bound), stream>>>(
            fused_params(a, plan));
  } else {
    const size_t smem = fused_smem_bytes(nh, D, cluster_segment(bound, 1));
    if (launch_ex(sparq_fused_kernel<T, D, 1>, dim3(1, plan.units.per_batch, p.batch),
                  dim3(kFusedThreads), smem, stream, 1, false,
                  fused_params(a, plan)) != cudaSuccess)
      return Status::kCudaError;
  }
  return last_launch_status();
}

template <typename T, int D>
Status launch_sparq(const SparqDecodeParams<T>& a, const SparqPlan<T>& plan, cudaStream_t stream) {
  switch (plan.route) {
    case SparqRoute::kFusedCluster:
      return launch_sparq_fused<T, D>(a, plan, stream);
    case SparqRoute::kFusedBlock:
      return launch_sparq_fused_block<T, D>(a, plan, stream);
    case SparqRoute::kDataflow:
      return launch_sparq_dataflow<T, D>(a, plan, stream);
    case SparqRoute::kThreeLaunches:
      break;
  }
  return launch_sparq_three<T, D>(a, plan, stream);
}

}  // namespace kernels

/// Bytes of workspace sparq_decode needs for this problem and config (on the current device).
template <typename T>
Status sparq_decode_workspace_size(const DecodeProblem& problem, const SparqConfig& config,
                                   size_t* bytes) {
  if (bytes == nullptr) return Status::kNullPointer;
  if (Status s = validate_problem(problem); !ok(s)) return s;
  if (Status s = validate_config(config, problem.head_dim); !ok(s)) return s;
  *bytes = kernels::SparqPlan<T>(problem, config, nullptr).bytes;
  return Status::kSuccess;
}

/// SparQ decode attention for a batch: validates everything first and launches nothing on
/// error. `workspace` (device, 256-byte aligned) must hold sparq_decode_workspace_size bytes.
template <typename T>
Status sparq_decode(const SparqDecodeParams<T>& params, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  if (Status s = kernels::validate_sparq(params); !ok(s)) return s;
  if (workspace == nullptr) return Status::kNullPointer;
  if (!kernels::aligned16(workspace)) return Status::kMisalignedPointer;
  kernels::SparqPlan<T> plan(params.problem, params.config, workspace);
  if (workspace_bytes < plan.bytes) return Status::kWorkspaceTooSmall;
  if (params.dependent_launch && kernels::dependent_launch_supported())
    plan.dependent_launch = true;
  return kernels::dispatch_head_dim(params.problem.head_dim, [&](auto dim) {
    return kernels::launch_sparq<T, decltype(dim)::value>(params, plan, stream);
  });
}

}  // namespace sparq
