// The SparQ kernels executed on the CPU (tests/emu/shim.hpp: each block's threads are fibers)
// and checked against the reference: the three launches with the streaming selection (also
// its fallback, and against every other selection kernel: select_kernel bit for bit, its
// 1024-thread and global-keys forms and select_cluster_kernel, a cluster of eight blocks of
// 256 or 512 threads, position for position), the dataflow kernel on grids of one to eight blocks
// (interleaved at its spin-waits), workspace_zeroed over two steps (every counter zero after
// each launch), the dependent-launch counter clearing, the fused block route (units of one
// head; units of several: the fused kernel in clusters of one block) and the fused cluster
// route. Dense decode (the attend kernel as launch_dense launches it, planned and fixed split
// counts, workspace_zeroed over two launches) against reference::dense_decode; the KV append
// and length update bit for bit against the reference append (rows past the capacity
// dropped). Poisoned outputs and workspace, NaN rows past each length, exact ties; a block's
// shared memory is poisoned as it exits (a cluster peer reading it later fails).
//   emulated_kernels [all|NAME|fuzz|long|hist|topk|race|race_selftest|race_selftest_cluster|
//                     race_selftest_cluster_shared] [REPEATS] [SEED]
// NAME runs the cases or modes whose name contains it; `fuzz N SEED` N random shapes; `long`
// lengths past 16k. Environment: EMU_ORDER=fwd|rev|rand (the order threads resume after a
// barrier), EMU_BLOCKS=fwd|rev (block order), EMU_RESIDENT (blocks interleaved),
// EMU_RESIDENT_CLUSTERS (clusters interleaved; EMU_RESIDENT unless set).
// What it cannot show: memory ordering (the emulation is sequentially consistent; built with
// -fsanitize=thread, as emulated_kernels_race, it reports accesses that no barrier, fence or
// atomic orders: shim.hpp), warp divergence (__activemask() is the calling lane), the
// launchers, performance.
// `topk`: the radix top-k on its own (one block, and a cluster of eight) on the key sets of
// tests/support/topk_key_sets.hpp, which stop the passes in each of their ways.
#include "sparq/cuda.cuh"
#include "support/compare.hpp"
#include "support/host_cache.hpp"
#include "support/topk_key_sets.hpp"
#include "support/topk_test_kernels.cuh"

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

using namespace sparq;
namespace k = sparq::kernels;
#ifndef EMU_T
#define EMU_T __nv_bfloat16
#endif
using T = EMU_T;
static const double g_tol = test::output_tolerance<T>();

static int g_fail = 0, g_cases = 0;
static bool g_strict = false;
static const int g_resident =
    std::getenv("EMU_RESIDENT") ? std::atoi(std::getenv("EMU_RESIDENT")) : 1;
// Clusters resident at once (EMU_RESIDENT_CLUSTERS, else EMU_RESIDENT): the race check follows
// at most 8128 threads, fewer than two clusters of eight 512-thread blocks.
static const int g_resident_clusters = std::getenv("EMU_RESIDENT_CLUSTERS")
                                           ? std::atoi(std::getenv("EMU_RESIDENT_CLUSTERS"))
                                           : g_resident;
/// The blocks a launch keeps resident: clusters of `cluster` blocks, or single blocks.
static int resident_blocks(int cluster) {
  return cluster == 1 ? g_resident : cluster * g_resident_clusters;
}
#define CHECK(cond, ...)                                            \
  do {                                                              \
    if (!(cond)) {                                                  \
      ++g_fail;                                                     \
      std::printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                     \
      std::printf("\n");                                            \
    }                                                               \
  } while (0)

struct Case {
  std::string name;
  int batch, hq, hkv, d, capacity;
  std::vector<int> lengths;
  int r, kk, window;
  bool realloc;
  GqaMode gqa;
  int tie_period =
      0;  // > 0: K row s = K row s % tie_period (exact ties; selection must match exactly)
};

enum class Mode {
  kThreeStream,
  kThreeStreamFallback,
  kThreeZeroed,
  kFlow1,
  kFlow2,
  kFlowHist1,
  kThreeDependent,
  kFlowZeroed2,
  kFlowConc3,
  kFlowConc8,
  kFlowHistConc4,
  kFusedBlock,
  kFusedCluster
};
static const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kThreeStream:
      return "three+stream";
    case Mode::kThreeStreamFallback:
      return "three+stream(cand=4)";
    case Mode::kThreeZeroed:
      return "three+stream,workspace_zeroed";
    case Mode::kFlow1:
      return "dataflow grid=1";
    case Mode::kFlow2:
      return "dataflow grid=2(sequential)";
    case Mode::kFlowHist1:
      return "dataflow grid=1 hist items, zeroed x2";
    case Mode::kThreeDependent:
      return "three+stream,dependent(score clears)";
    case Mode::kFlowZeroed2:
      return "dataflow grid=1 zeroed x2";
    case Mode::kFlowConc3:
      return "dataflow grid=3 concurrent";
    case Mode::kFlowConc8:
      return "dataflow grid=8 concurrent, zeroed x2";
    case Mode::kFlowHistConc4:
      return "dataflow grid=4 concurrent hist items, zeroed x2";
    case Mode::kFusedBlock:
      return "fused block";
    case Mode::kFusedCluster:
      return "fused cluster";
  }
  return "?";
}

// The GPU tests' selection rule (test::selection_mismatch), and position order.
static void check_selection(const std::vector<int>& got, const std::vector<int>& ref,
                            const std::vector<double>& key, int window_begin, const char* where) {
  const std::string why = test::selection_mismatch(got, ref, key, window_begin, g_strict);
  CHECK(why.empty(), "%s: %s", where, why.c_str());
  CHECK(std::is_sorted(got.begin(), got.end()), "%s: positions not sorted", where);
}

// Every output element written (finite) and within the tolerance of `want`, in all and per
// sequence (a short one hides in the total).
static void check_output(const std::vector<T>& out, const std::vector<double>& want, int batch,
                         const std::vector<int>& lengths, const char* where) {
  const std::vector<double> got = test::to_double(out);
  const size_t nonfinite = test::count_non_finite(got);
  CHECK(nonfinite == 0, "%s: %zu output elements not written (NaN)", where, nonfinite);
  const double err = test::relative_l2(got, want);
  CHECK(err <= g_tol, "%s: relative L2 error %g", where, err);
  const size_t n = got.size() / batch;
  for (int b = 0; b < batch; ++b) {
    const double eb =
        test::relative_l2(std::vector<double>(got.begin() + b * n, got.begin() + (b + 1) * n),
                          std::vector<double>(want.begin() + b * n, want.begin() + (b + 1) * n));
    CHECK(eb <= g_tol, "%s: sequence %d (length %d): relative L2 error %g", where, b, lengths[b],
          eb);
  }
}

// A workspace of `bytes`, poisoned (0xFF) as the GPU tests do, with a poisoned tail that the
// kernels must leave alone (check_tail).
struct PoisonedWorkspace {
  size_t bytes, alloc;
  unsigned char* p;
  explicit PoisonedWorkspace(size_t b)
      : bytes(b),
        alloc((b + 255) / 256 * 256 + 256),
        p(static_cast<unsigned char*>(std::aligned_alloc(256, alloc))) {
    std::memset(p, 0xFF, alloc);
  }
  PoisonedWorkspace(const PoisonedWorkspace&) = delete;
  PoisonedWorkspace& operator=(const PoisonedWorkspace&) = delete;
  ~PoisonedWorkspace() { std::free(p); }
  void check_tail(const char* label) const {
    for (size_t i = bytes; i < alloc; ++i)
      if (p[i] != 0xFF) {
        CHECK(false, "%s: workspace byte %zu past plan.bytes=%zu written", label, i, bytes);
        return;
      }
  }
};

// launch_attend's kernel launch, as the SparQ and dense launchers make it (staged tiles for
// units of several heads), then every counter must be zero again.
template <int D>
static void launch_attend(const k::AttendParams<T>& ap, int batch, int64_t num_counters,
                          const char* kernel, const char* where) {
  emu::launch(
      dim3(ap.splits, ap.units_per_batch, batch), dim3(k::kAttendThreads), 0,
      [&] {
        if (ap.heads_per_unit > 1)
          k::attend_kernel<T, D, true>(ap);
        else
          k::attend_kernel<T, D, false>(ap);
      },
      kernel, g_resident);
  for (int64_t i = 0; i < num_counters; ++i)
    CHECK(ap.counters[i] == 0u, "%s: attend counter %lld = %u after the launch", where,
          (long long)i, ap.counters[i]);
}

static void report_done(const char* label, std::chrono::steady_clock::time_point t0) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-70s done %.1fs (fails so far %d)\n", label, secs, g_fail);
  std::fflush(stdout);
}

template <int D>
void run(const Case& c, Mode mode, uint64_t seed) {
  const bool fused = mode == Mode::kFusedBlock, fused_cluster = mode == Mode::kFusedCluster;
  // The fused kernel's shared memory (the logits of a cluster's segment, per head): what a
  // 227 KB device gives, less its static shared memory (fused_fits and fused_block_fits).
  {
    const int heads = c.gqa == GqaMode::kShared ? c.hq / c.hkv : 1;
    const int blocks = fused_cluster ? k::kClusterBlocks : 1;
    if ((fused_cluster || (fused && heads > 1)) &&
        k::fused_smem_bytes(heads, c.d, k::cluster_segment(c.capacity, blocks)) >
            size_t(200 * 1024))
      return;
  }
  ++g_cases;
  const auto t0 = std::chrono::steady_clock::now();
  g_strict = c.tie_period > 0;
  DecodeProblem p;
  p.batch = c.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.head_dim = c.d;
  p.capacity = c.capacity;
  SparqConfig cfg;
  cfg.r = c.r;
  cfg.k = c.kk;
  cfg.local_window = c.window;
  cfg.reallocation = c.realloc;
  cfg.gqa = c.gqa;
  test::HostKVCache<T> host(p);
  host.fill_random(c.lengths, seed);
  if (c.tie_period > 0) {
    KVCacheView<T> cv = host.view();
    for (int b = 0; b < p.batch; ++b)
      for (int kv = 0; kv < p.num_kv_heads; ++kv)
        for (int s = c.tie_period; s < c.lengths[b]; ++s) {
          std::vector<T> kr(p.head_dim), vr(p.head_dim);
          for (int j = 0; j < p.head_dim; ++j) {
            kr[j] = cv.k_row(b, kv, s % c.tie_period)[j];
            vr[j] = cv.v_row(b, kv, s)[j];
          }
          host.set_row(b, kv, s, kr.data(), vr.data());
        }
  }
  host.poison_tail(NAN);  // rows past each length: NaN (a read past the length shows)
  test::set_exact_vsum(host);
  const std::vector<T> q =
      test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, seed + 1);
  reference::SparqTrace trace;
  std::vector<double> ref(q.size());
  if (!ok(reference::sparq_decode(p, cfg, q.data(), host.view(), c.lengths.data(), ref.data(),
                                  &trace))) {
    std::printf("reference failed\n");
    std::abort();
  }
  const bool flow = mode == Mode::kFlow1 || mode == Mode::kFlow2 || mode == Mode::kFlowHist1 ||
                    mode == Mode::kFlowZeroed2 || mode == Mode::kFlowConc3 ||
                    mode == Mode::kFlowConc8 || mode == Mode::kFlowHistConc4;
  const std::optional<k::SparqRoute> route = fused           ? k::SparqRoute::kFusedBlock
                                             : fused_cluster ? k::SparqRoute::kFusedCluster
                                             : flow          ? k::SparqRoute::kDataflow
                                                             : k::SparqRoute::kThreeLaunches;
  const std::optional<k::SelectRoute> sel_route =
      flow || fused || fused_cluster ? std::nullopt
                                     : std::optional<k::SelectRoute>(k::SelectRoute::kStream);
  FlowTuning tune;
  if (mode == Mode::kFlowHist1 || mode == Mode::kFlowHistConc4) tune.hist = 1;
  PoisonedWorkspace ws(k::SparqPlan<T>(p, cfg, nullptr, route, sel_route, tune).bytes);
  k::SparqPlan<T> plan(p, cfg, ws.p, route, sel_route, tune);
  // No device: the plan's device queries gave zero capacities; set what a 227 KB device gives.
  const k::StreamCapacity cap = k::stream_capacity(plan.kmax, 227 * 1024);
  plan.stream_candidates = cap.candidates;
  plan.stream_above = cap.above;
  if (mode == Mode::kThreeStreamFallback) plan.stream_candidates = 4;
  std::vector<T> out(q.size());
  std::memset(out.data(), 0xFF, out.size() * sizeof(T));  // NaN
  std::vector<int> lengths = c.lengths;
  SparqDecodeParams<T> a;
  a.problem = p;
  a.config = cfg;
  a.q = q.data();
  a.cache = host.view();
  a.lengths = lengths.data();
  a.out = out.data();
  a.workspace_zeroed = mode == Mode::kThreeZeroed || mode == Mode::kFlowZeroed2 ||
                       mode == Mode::kFlowHist1 || mode == Mode::kFlowConc8 ||
                       mode == Mode::kFlowHistConc4;
  const int launches =
      a.workspace_zeroed ? 2 : 1;  // zeroed: a second step on the same workspace, no memset
  const int64_t batch_units = int64_t(p.batch) * plan.units.per_batch;
  if (a.workspace_zeroed) std::memset(ws.p, 0, k::counter_region_bytes(p));
  char label[256];
  std::snprintf(label, sizeof label, "%s [%s] seed %llu", c.name.c_str(), mode_name(mode),
                (unsigned long long)seed);

  for (int launch = 0; launch < launches; ++launch) {
    if (launch > 0) std::memset(out.data(), 0xFF, out.size() * sizeof(T));
    if (fused && plan.units.heads_per_unit == 1) {
      // launch_sparq_fused_block, units of one head: sparq_fused_block_kernel. fused_block_fits
      // (no device: a 227 KB device's opt-in limit, less the 1 KB raise_dynamic_smem keeps).
      const size_t smem = k::fused_block_smem_bytes(D, p.length_bound());
      CHECK(smem <= 226 * 1024, "%s: block route refused", label);
      const k::FusedParams<T> fp = k::fused_params(a, plan);
      emu::launch(
          dim3(plan.units.per_batch, p.batch), dim3(k::kFusedBlockThreads), smem,
          [&] { k::sparq_fused_block_kernel<T, D>(fp); }, "sparq_fused_block_kernel", g_resident);
    } else if (fused) {
      // launch_sparq_fused_block, units of several heads: the fused kernel, clusters of one block.
      const size_t smem = k::fused_smem_bytes(plan.units.heads_per_unit, D,
                                              k::cluster_segment(p.length_bound(), 1));
      const k::FusedParams<T> fp = k::fused_params(a, plan);
      emu::launch(
          dim3(1, plan.units.per_batch, p.batch), dim3(k::kFusedThreads), smem,
          [&] { k::sparq_fused_kernel<T, D, 1>(fp); }, "sparq_fused_kernel<1>", g_resident, 1);
    } else if (fused_cluster) {
      // launch_sparq_fused: a cluster of kClusterBlocks blocks per unit.
      const size_t smem =
          k::fused_smem_bytes(plan.units.heads_per_unit, D, k::cluster_segment(p.length_bound()));
      const k::FusedParams<T> fp = k::fused_params(a, plan);
      emu::launch(
          dim3(k::kClusterBlocks, plan.units.per_batch, p.batch), dim3(k::kFusedThreads), smem,
          [&] { k::sparq_fused_kernel<T, D, k::kClusterBlocks>(fp); }, "sparq_fused_kernel",
          resident_blocks(k::kClusterBlocks), k::kClusterBlocks);
    } else if (!flow) {
      // launch_sparq_scores (attend_counters: the score kernel clears them with dependent launches)
      const bool dep = mode == Mode::kThreeDependent;
      if (dep) plan.dependent_launch = true;
      const k::ScoreParams<T> sp = k::score_params(a, plan, dep ? plan.attend.counters : nullptr);
      const dim3 sgrid(k::ceil_div(plan.chunks, plan.score_iters), plan.units.per_batch, p.batch);
      emu::launch(
          sgrid, dim3(k::kScoreThreads), k::score_smem_bytes(plan.units.heads_per_unit, D),
          [&] { k::score_kernel<T, D>(sp); }, "score_kernel", g_resident);
      // launch_sparq_select, SelectRoute::kStream
      const k::SelectParams sel = k::select_params(a, plan);
      emu::launch(
          dim3(plan.units.per_batch, p.batch), dim3(k::kStreamThreads),
          k::stream_smem_bytes(plan.stream_candidates, plan.stream_above),
          [&] { k::select_stream_kernel<>(sel); }, "select_stream_kernel", g_resident);
      // The workspace_zeroed and dependent modes give the selection the same logits and stats
      // as three+stream: the cross-checks run there and in the fallback mode only (they are
      // most of the emulation's time).
      if (launch == 0 && mode != Mode::kThreeZeroed && mode != Mode::kThreeDependent) {
        // Cross-checks: every other selection kernel (launch_sparq_select's routes) picks
        // exactly the same positions ("It selects exactly the positions select_kernel does");
        // select_kernel with 512 threads also the same alphas, bit for bit, for units of
        // several heads; units of one head sum alpha from the keys as they are selected, and
        // the others in another order (to 1e-6).
        const size_t ni = size_t(batch_units) * plan.kmax, na = size_t(p.batch) * p.num_q_heads;
        const std::vector<int> idx_stream(plan.indices, plan.indices + ni);
        const std::vector<float> alpha_stream(plan.alpha, plan.alpha + na);
        auto same_as_stream = [&](const char* kernel, bool bitwise_alpha, dim3 grid, int threads,
                                  size_t smem, int cluster, auto&& body) {
          std::memset(plan.indices, 0xFF, ni * sizeof(int));
          std::memset(plan.alpha, 0xFF, na * sizeof(float));
          emu::launch(grid, dim3(threads), smem, body, kernel, resident_blocks(cluster), cluster);
          size_t diff_i = 0, diff_a = 0;
          for (size_t i = 0; i < ni; ++i)
            diff_i += idx_stream[i] != plan.indices[i];
          for (size_t i = 0; i < na; ++i)
            diff_a += bitwise_alpha ? std::memcmp(&alpha_stream[i], &plan.alpha[i], 4) != 0
                                    : !(std::fabs(alpha_stream[i] - plan.alpha[i]) <=
                                        1e-6f * std::max(1.f, std::fabs(alpha_stream[i])));
          CHECK(diff_i == 0, "%s: select_stream_kernel and %s differ in %zu index slots", label,
                kernel, diff_i);
          CHECK(diff_a == 0, "%s: select_stream_kernel and %s alphas differ in %zu%s", label,
                kernel, diff_a, bitwise_alpha ? " (bitwise)" : "");
        };
        const dim3 grid(plan.units.per_batch, p.batch);
        const size_t shared_keys = sizeof(uint32_t) * size_t(p.length_bound());
        same_as_stream("select_kernel", plan.units.heads_per_unit > 1, grid, k::kSelectThreads,
                       shared_keys, 1, [&] { k::select_kernel<true, k::kSelectThreads>(sel); });
        same_as_stream("select_kernel (1024 threads)", false, grid, k::kSelectThreadsWide,
                       shared_keys, 1, [&] { k::select_kernel<true, k::kSelectThreadsWide>(sel); });
        // Keys in global memory (SelectRoute::kGlobalKeys: the plan's keys, here a buffer of
        // its size, poisoned).
        std::vector<uint32_t> keys(size_t(batch_units) * plan.logit_stride, 0xFFFFFFFFu);
        k::SelectParams sel_global = sel;
        sel_global.keys = keys.data();
        same_as_stream("select_kernel (global keys)", false, grid, k::kSelectThreads, 0, 1,
                       [&] { k::select_kernel<false, k::kSelectThreads>(sel_global); });
        same_as_stream("select_cluster_kernel", false,
                       dim3(k::kClusterBlocks, plan.units.per_batch, p.batch), k::kClusterThreads,
                       sizeof(uint32_t) * size_t(k::cluster_segment(p.length_bound())),
                       k::kClusterBlocks, [&] { k::select_cluster_kernel<>(sel); });
        same_as_stream(
            "select_cluster_kernel (512 threads)", false,
            dim3(k::kClusterBlocks, plan.units.per_batch, p.batch), k::kClusterThreadsWide,
            sizeof(uint32_t) * size_t(k::cluster_segment(p.length_bound())), k::kClusterBlocks,
            [&] { k::select_cluster_kernel<k::kClusterThreadsWide>(sel); });
        std::copy(idx_stream.begin(), idx_stream.end(), plan.indices);
        std::copy(alpha_stream.begin(), alpha_stream.end(), plan.alpha);
      }
      // launch_sparq_attend -> launch_attend (clear unless workspace_zeroed)
      const k::AttendParams<T> ap = k::attend_params(a, plan);
      // launch_sparq_attend: clear = !workspace_zeroed && !(after_scores && dependent_launch)
      if (!a.workspace_zeroed && !dep)
        std::memset(plan.attend.counters, 0, sizeof(unsigned) * plan.attend.num_counters);
      launch_attend<D>(ap, p.batch, plan.attend.num_counters, "attend_kernel", label);
    } else {
      // launch_sparq_dataflow's body (no device: limits replaced by a 227 KB device's)
      const size_t smem = k::flow_smem_bytes<T, D>(plan.units.heads_per_unit,
                                                   plan.stream_candidates, plan.stream_above);
      const int cpi = plan.flow_chunks_per_item;
      CHECK(!(cpi < k::kFlowChunksPerItem || cpi % k::kFlowChunksPerItem != 0 ||
              int64_t(plan.flow.score_items) * cpi < plan.chunks ||
              int64_t(plan.flow.score_items - 1) * cpi >= plan.chunks),
            "%s: launcher would refuse the chunks per item", label);
      const int hist = plan.flow.hist_items;
      CHECK(!(hist != 0 &&
              (plan.flow_hist == nullptr || hist != k::flow_hist_tiles(p.length_bound()))),
            "%s: hist", label);
      if (mode == Mode::kFlowHist1 || mode == Mode::kFlowHistConc4)
        CHECK(hist > 0, "%s: no histogram items planned (bound %d)", label, p.length_bound());
      const FlowSchedule& f = plan.flow;
      CHECK(!(f.units != batch_units || f.attend_items != plan.attend.splits || f.hist_lag < 1 ||
              f.select_lag < 1 || (hist > 0 && f.select_lag <= f.hist_lag) ||
              f.attend_lag <= f.select_lag),
            "%s: launcher would refuse the schedule", label);
      k::FlowParams<T> fp;
      fp.score = k::score_params(a, plan, nullptr);
      fp.select = k::select_params(a, plan);
      fp.attend = k::attend_params(a, plan);
      fp.schedule = plan.flow;
      fp.chunks_per_item = cpi;
      fp.ticket = plan.flow_counters;
      fp.score_done = plan.flow_counters + 1;
      fp.select_done = plan.flow_counters + 1 + batch_units;
      fp.hist_done = plan.flow_counters + 1 + 3 * batch_units;
      fp.hist = hist > 0 ? plan.flow_hist : nullptr;
      if (!a.workspace_zeroed) std::memset(plan.flow_counters, 0, plan.counter_bytes);
      int64_t grid = plan.flow.total();
      const int limit = mode == Mode::kFlow2           ? 2
                        : mode == Mode::kFlowConc3     ? 3
                        : mode == Mode::kFlowConc8     ? 8
                        : mode == Mode::kFlowHistConc4 ? 4
                                                       : 1;
      grid = std::min<int64_t>(grid, limit);
      const bool concurrent =
          mode == Mode::kFlowConc3 || mode == Mode::kFlowConc8 || mode == Mode::kFlowHistConc4;
      emu::launch(
          dim3(unsigned(grid)), dim3(k::kFlowThreads), smem,
          [&] { k::sparq_dataflow_kernel<T, D>(fp); }, "sparq_dataflow_kernel",
          concurrent ? int(grid) : 1);
      for (size_t i = 0; i < plan.counter_bytes / sizeof(unsigned); ++i)
        CHECK(plan.flow_counters[i] == 0u, "%s: flow counter %zu = %u after the launch", label, i,
              plan.flow_counters[i]);
    }

  }  // launches
  // Positions (workspace indices) against the reference.
  std::vector<std::vector<int>> pos(trace.positions.size());
  for (int b = 0; b < p.batch; ++b)
    for (int u = 0; u < plan.units.per_batch; ++u) {
      const size_t un = size_t(b) * plan.units.per_batch + u;
      const int keff = std::min(cfg.k, c.lengths[b]);
      pos[un].assign(plan.indices + un * plan.kmax, plan.indices + un * plan.kmax + keff);
      char where[300];
      std::snprintf(where, sizeof where, "%s b%d u%d", label, b, u);
      for (int i = keff; i < plan.kmax; ++i)
        CHECK(plan.indices[un * plan.kmax + i] == -1,
              "%s b%d u%d: index slot %d past k_eff=%d written (%d)", label, b, u, i, keff,
              plan.indices[un * plan.kmax + i]);
      check_selection(pos[un], trace.positions[un], trace.unit_scores[un],
                      c.lengths[b] - std::min(cfg.local_window, c.lengths[b]), where);
    }
  reference::SparqTrace tr2;
  std::vector<double> ref2(q.size());
  if (!ok(reference::sparq_decode(p, cfg, q.data(), host.view(), c.lengths.data(), ref2.data(),
                                  &tr2, &pos))) {
    std::printf("  %s: reference on the emulated selection failed (invalid positions)\n", label);
    ++g_fail;
  } else {
    check_output(out, ref2, p.batch, c.lengths, label);
    for (size_t h = 0; h < tr2.alpha.size(); ++h)
      CHECK(std::fabs(plan.alpha[h] - tr2.alpha[h]) <= 1e-4, "%s: alpha[%zu] %g vs %g", label, h,
            plan.alpha[h], tr2.alpha[h]);
  }
  ws.check_tail(label);
  report_done(label, t0);
}

struct DenseCase {
  std::string name;
  int batch, hq, hkv, d, capacity, max_length;
  std::vector<int> lengths;
};

// Dense decode: the attend kernel as launch_dense launches it (DensePlan, rules or fixed split
// counts; units of a KV head's group, staged tiles when the group has several heads), the
// counters cleared first, or a zeroed workspace over two launches with no memset between.
template <int D>
void run_dense(const DenseCase& c, int fixed_splits, bool zeroed, uint64_t seed) {
  ++g_cases;
  const auto t0 = std::chrono::steady_clock::now();
  DecodeProblem p;
  p.batch = c.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hkv;
  p.head_dim = c.d;
  p.capacity = c.capacity;
  p.max_length = c.max_length;
  test::HostKVCache<T> host(p);
  host.fill_random(c.lengths, seed);
  host.poison_tail(NAN);  // rows past each length must never be read into the result
  const std::vector<T> q =
      test::random_normal<T>(size_t(p.batch) * p.num_q_heads * p.head_dim, seed + 1);
  std::vector<double> ref(q.size());
  if (!ok(reference::dense_decode(p, q.data(), host.view(), c.lengths.data(), ref.data()))) {
    std::printf("reference failed\n");
    std::abort();
  }
  PoisonedWorkspace ws(k::DensePlan<T>(p, nullptr, fixed_splits).bytes);
  const k::DensePlan<T> plan(p, ws.p, fixed_splits);
  std::vector<T> out(q.size());
  std::vector<int> lengths = c.lengths;
  DenseDecodeParams<T> a;
  a.problem = p;
  a.q = q.data();
  a.cache = host.view();
  a.lengths = lengths.data();
  a.out = out.data();
  a.workspace_zeroed = zeroed;
  if (zeroed) std::memset(ws.p, 0, k::counter_region_bytes(p));
  char label[256];
  std::snprintf(label, sizeof label, "%s [dense splits=%d%s%s] seed %llu", c.name.c_str(),
                plan.attend.splits, fixed_splits > 0 ? " fixed" : " planned",
                zeroed ? ", workspace_zeroed x2" : "", (unsigned long long)seed);
  CHECK(plan.attend.counters == reinterpret_cast<unsigned*>(ws.p) &&
            plan.attend.num_counters == int64_t(p.batch) * p.num_kv_heads,
        "%s: counters not the counter region's first %d", label, p.batch * p.num_kv_heads);
  if (fixed_splits > 0)
    CHECK(plan.attend.splits == fixed_splits, "%s: %d splits planned", label, plan.attend.splits);
  // launch_dense
  const k::AttendParams<T> ap = k::dense_attend_params(a, plan);
  CHECK(int64_t(ap.rows_per_split) * ap.splits >= p.length_bound(), "%s: splits miss rows", label);
  for (int launch = 0; launch < (zeroed ? 2 : 1); ++launch) {
    std::memset(out.data(), 0xFF, out.size() * sizeof(T));  // NaN
    // launch_attend: clear = !workspace_zeroed
    if (!zeroed) std::memset(plan.attend.counters, 0, sizeof(unsigned) * plan.attend.num_counters);
    char where[300];
    std::snprintf(where, sizeof where, "%s: launch %d", label, launch);
    launch_attend<D>(ap, p.batch, plan.attend.num_counters, "attend_kernel(dense)", where);
    check_output(out, ref, p.batch, c.lengths, where);
  }
  ws.check_tail(label);
  report_done(label, t0);
}

// KV append (kv_append_kernel, then advance_lengths_kernel, as kv_append launches them)
// against the reference append of each sequence's rows that fit (rows at or past the capacity
// are dropped): K, Kt (its padding too), V and Vsum bit for bit; lengths advanced, clamped.
static void run_append(const char* name, int hkv, int d, int capacity,
                       const std::vector<int>& lengths0, int n, bool with_vsum, uint64_t seed) {
  ++g_cases;
  const auto t0 = std::chrono::steady_clock::now();
  DecodeProblem p;
  p.batch = int(lengths0.size());
  p.num_q_heads = 2 * hkv;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.capacity = capacity;
  std::vector<int> fill(lengths0);
  for (int& l : fill)
    l = std::max(0, std::min(l, capacity));
  test::HostKVCache<T> want(p);
  want.fill_random(fill, seed);
  test::HostKVCache<T> got = want;  // the kernel's copy
  const size_t new_elems = size_t(p.batch) * n * hkv * d;
  const std::vector<T> nk = test::random_normal<T>(new_elems, seed + 1);
  const std::vector<T> nv = test::random_normal<T>(new_elems, seed + 2);
  char label[256];
  std::snprintf(label, sizeof label, "%s [kv_append n=%d%s] seed %llu", name, n,
                with_vsum ? "" : ", no vsum", (unsigned long long)seed);
  // Reference: each sequence alone (a batch-1 problem), its rows below the capacity.
  DecodeProblem one = p;
  one.batch = 1;
  for (int b = 0; b < p.batch; ++b) {
    const int fits = lengths0[b] < 0 ? 0 : std::min(n, capacity - lengths0[b]);
    if (fits <= 0) continue;
    // [1, fits, Hkv, d]: the first `fits` tokens of sequence b's [n, Hkv, d] block.
    const size_t off = size_t(b) * n * hkv * d;
    if (!ok(reference::append_kv(one, want.sequence_view(b), &lengths0[b], fits, nk.data() + off,
                                 nv.data() + off))) {
      std::printf("reference append failed\n");
      std::abort();
    }
  }
  if (!with_vsum)  // the kernel leaves a cache without Vsum's sums alone
    want.vsum = got.vsum;
  std::vector<int> lengths = lengths0;
  KVAppendParams<T> a;
  a.problem = p;
  a.cache = got.view();
  if (!with_vsum) a.cache.vsum = nullptr;
  a.lengths = lengths.data();
  a.num_new = n;
  a.new_k = nk.data();
  a.new_v = nv.data();
  // kv_append
  emu::launch(
      dim3(p.num_kv_heads, p.batch), dim3(k::kAppendThreads), 0, [&] { k::kv_append_kernel<T>(a); },
      "kv_append_kernel", g_resident);
  CHECK(lengths == lengths0, "%s: the append kernel changed the lengths", label);
  emu::launch(
      dim3(k::ceil_div(p.batch, 256)), dim3(256), 0,
      [&] { k::advance_lengths_kernel<>(a.lengths, p.batch, a.num_new, p.capacity); },
      "advance_lengths_kernel", g_resident);
  const size_t dk = test::count_bits_differ(got.k, want.k),
               dkt = test::count_bits_differ(got.kt, want.kt),
               dv = test::count_bits_differ(got.v, want.v),
               ds = test::count_bits_differ(got.vsum, want.vsum);
  CHECK(dk == 0, "%s: K differs in %zu elements", label, dk);
  CHECK(dkt == 0, "%s: K transposed differs in %zu elements", label, dkt);
  CHECK(dv == 0, "%s: V differs in %zu elements", label, dv);
  CHECK(ds == 0, "%s: V sum differs in %zu elements (bitwise)", label, ds);
  for (int b = 0; b < p.batch; ++b)
    CHECK(lengths[b] == std::min(lengths0[b] + n, capacity), "%s: length %d: %d -> %d", label, b,
          lengths0[b], lengths[b]);
  report_done(label, t0);
}

// The radix top-k on its own, as tests/gpu/test_building_blocks.cu runs it on a GPU
// (tests/support/topk_test_kernels.cuh).
static void run_topk_sets(uint32_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& set : test::topk_key_sets(seed)) {
    ++g_cases;
    const int n = static_cast<int>(set.keys.size());
    std::vector<int> want =
        reference::top_indices(std::vector<double>(set.keys.begin(), set.keys.end()), set.count);
    std::sort(want.begin(), want.end());
    std::vector<uint4> aligned((n + 3) / 4 + 1);  // 16-byte reads
    std::memcpy(aligned.data(), set.keys.data(), sizeof(uint32_t) * n);
    const uint32_t* keys = reinterpret_cast<const uint32_t*>(aligned.data());
    std::vector<int> out(set.count, -7);
    int written = -1;
    emu::launch(
        dim3(1), dim3(k::kSelectThreads), 0,
        [&] { test::block_topk<k::kSelectThreads>(keys, n, set.count, out.data(), &written); },
        "block_topk");
    CHECK(written == set.count, "topk %s: one block wrote %d of %d", set.name.c_str(), written,
          set.count);
    CHECK(out == want, "topk %s: one block's positions differ", set.name.c_str());
    std::vector<int> out8(set.count, -7);
    emu::launch(
        dim3(8), dim3(k::kClusterThreads), sizeof(uint32_t) * k::cluster_segment(n),
        [&] {
          cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
          test::cluster_topk<k::kClusterThreads>(cluster, keys, n, set.count, out8.data(),
                                                 reinterpret_cast<uint32_t*>(::emu::dyn_smem));
        },
        "cluster_topk", 8, 8);
    CHECK(out8 == want, "topk %s: the cluster's positions differ", set.name.c_str());
  }
  report_done("topk key sets (one block, a cluster of 8)", t0);
}

// `race_selftest`: a kernel with its barrier left out (thread 0 writes a shared variable that
// the others read at once). The race-check build must report it (its ctest looks for the
// report); the plain build runs it and checks nothing.
static void run_race_selftest() {
  static int seen[256];
  emu::launch(
      dim3(1), dim3(256), 0,
      [] {
        __shared__ int s_flag;
        if (threadIdx.x == 0) s_flag = 1;
        seen[threadIdx.x] = s_flag;  // a __syncthreads() belongs before this read
      },
      "race_selftest");
  int ones = 0;  // kept, so that the compiler keeps the kernel's accesses
  for (int v : seen)
    ones += v == 1;
  std::printf("race_selftest: %d of 256 threads saw the flag\n", ones);
}

// `race_selftest_cluster`: across a cluster. Each block reads its neighbour's count through
// map_shared_rank after a cluster barrier, then rewrites its own while the neighbour may still
// be reading it: with only a block barrier between (`race_selftest_cluster`: TSan reports it,
// as race_cluster.cpp checks a block's static shared memory where its neighbours reach it), or
// with device::cluster_sync_shared between (`race_selftest_cluster_shared`: its fences do not
// order that read before the write; race_cluster.cpp reports it). A cluster.sync() belongs
// there. The race-check build must report each; the plain build runs them and checks nothing.
static void run_race_selftest_cluster(bool shared_barrier) {
  static int seen[128];
  emu::launch(
      dim3(2), dim3(64), 0,
      [shared_barrier] {
        namespace cg = cooperative_groups;
        const cg::cluster_group cluster = cg::this_cluster();
        __shared__ int s_count;
        if (threadIdx.x == 0) s_count = 1;
        device::cluster_sync_shared(cluster);
        seen[blockIdx.x * 64 + threadIdx.x] =
            *cluster.map_shared_rank(&s_count, cluster.block_rank() ^ 1u);
        if (shared_barrier)
          device::cluster_sync_shared(cluster);
        else
          __syncthreads();
        if (threadIdx.x == 0) s_count = 2;  // the neighbour may not have read 1 yet
        cluster.sync();
      },
      shared_barrier ? "race_selftest_cluster_shared" : "race_selftest_cluster", 2, 2);
  int ones = 0;
  for (int v : seen)
    ones += v == 1;
  std::printf("race_selftest_cluster: %d of 128 threads read their neighbour's 1\n", ones);
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 && std::string(argv[1]) != "all" ? argv[1] : "";
  const int reps = argc > 2 ? std::atoi(argv[2]) : 1;  // seeds per case and mode
  // `race`: the race check's short run (emulated_kernels_race on the 2-core CPU machine:
  // 136-145 s with one block resident, 164-183 s as its ctest runs it, four resident and
  // threads in random order): every mode on one small case with ties, the top-k key sets and
  // one dense case.
  const bool race = only == "race";
  auto wanted = [&](const std::string& name, const char* mode) {
    if (race) return name == "ties_period1_k_small" || name == "dense_gqa4_d64";
    return only.empty() || name.find(only) != std::string::npos ||
           (mode != nullptr && std::string(mode).find(only) != std::string::npos);
  };
  std::vector<Case> cases = {
      {"mha_len7_k3", 1, 2, 2, 64, 7, {7}, 8, 3, 1, true, GqaMode::kShared},
      {"len1", 2, 2, 2, 128, 8, {1, 1}, 16, 4, 0, true, GqaMode::kShared},
      {"two_lengths_300", 2, 4, 4, 64, 300, {300, 217}, 16, 64, 0, true, GqaMode::kShared},
      {"gqa4_shared_1000", 2, 8, 2, 128, 1000, {1000, 517}, 32, 100, 16, true, GqaMode::kShared},
      {"k_eq_len", 1, 2, 2, 64, 300, {300}, 64, 300, 0, true, GqaMode::kShared},
      {"r1_k1", 1, 2, 2, 64, 300, {300}, 1, 1, 0, true, GqaMode::kShared},
      {"r_eq_d_window_eq_k", 1, 2, 2, 64, 1000, {1000}, 64, 50, 50, false, GqaMode::kShared},
      {"per_head_gqa4", 1, 8, 2, 64, 600, {600}, 16, 50, 4, true, GqaMode::kPerQueryHead},
      {"len4500_k700", 1, 4, 4, 128, 4500, {4500}, 16, 700, 8, true, GqaMode::kShared},
      {"ties_period1_4500", 1, 2, 2, 64, 4500, {4500}, 8, 300, 4, true, GqaMode::kShared, 1},
      {"ties_period3_1000_gqa4",
       2,
       8,
       2,
       64,
       1000,
       {1000, 999},
       16,
       100,
       0,
       true,
       GqaMode::kShared,
       3},
      {"ties_period1_k_small", 1, 2, 2, 128, 300, {300}, 4, 1, 0, true, GqaMode::kShared, 1},
      {"batch3_odd", 3, 2, 2, 64, 1031, {1031, 1, 513}, 13, 77, 3, true, GqaMode::kShared},
  };
  const Mode modes[] = {
      Mode::kThreeStream, Mode::kThreeStreamFallback, Mode::kThreeZeroed, Mode::kFlow1,
      Mode::kFlow2,       Mode::kThreeDependent,      Mode::kFlowZeroed2, Mode::kFlowConc3,
      Mode::kFlowConc8,   Mode::kFusedBlock,          Mode::kFusedCluster};
  for (int rep = 0; rep < reps; ++rep)
    for (const Case& c : cases)
      for (Mode m : modes) {
        if (!wanted(c.name, mode_name(m))) continue;
        k::dispatch_head_dim(c.d, [&](auto dim) {
          run<decltype(dim)::value>(c, m, 1234 + g_cases);
          return Status::kSuccess;
        });
      }
  // The fused kernels over more positions than one pass of their threads covers (the
  // cluster kernel's 256 threads take 8 bf16 logits each, 2048 per block, so its segments
  // pass that from 16k positions; the block kernel's 512 from 4096): each thread folds its
  // online softmax stats over several vectors. Fused routes only (the other routes' long
  // runs are `long`); d = 128 is the register-capped cluster kernel. About 10 s.
  {
    const Case f64{"fused_long_17000", 1, 2, 2, 64, 17000, {17000}, 8, 700, 3, true,
                   GqaMode::kShared};
    const Case f128{"fused_long_16500_d128", 1, 2, 2, 128, 16500, {16500}, 16, 1100, 5, true,
                    GqaMode::kShared};
    for (Mode m : {Mode::kFusedBlock, Mode::kFusedCluster}) {
      if (!race && wanted(f64.name, mode_name(m))) run<64>(f64, m, 600 + g_cases);
      if (!race && wanted(f128.name, mode_name(m))) run<128>(f128, m, 600 + g_cases);
    }
  }
  if (only == "fuzz") {  // random shapes: fuzz N [seed]
    std::mt19937_64 rng(argc > 3 ? std::atoll(argv[3]) : 7);
    auto pick = [&](int lo, int hi) { return lo + int(rng() % uint64_t(hi - lo + 1)); };
    for (int i = 0; i < reps; ++i) {
      Case c;
      c.batch = pick(1, 3);
      const int hkv = pick(1, 2), group = std::vector<int>{1, 2, 4, 8}[pick(0, 3)];
      c.hkv = hkv;
      c.hq = hkv * group;
      c.d = std::vector<int>{64, 128, 256}[pick(0, 2)];
      c.capacity = std::vector<int>{1, 7, 33, 300, 1000, 2049, 4500}[pick(0, 6)];
      c.lengths.clear();
      for (int b = 0; b < c.batch; ++b)
        c.lengths.push_back(pick(0, 3) == 0 ? c.capacity : pick(1, c.capacity));
      c.r = pick(1, c.d);
      c.kk = pick(1, c.capacity + 5);
      c.window = pick(0, c.kk);
      c.realloc = pick(0, 3) != 0;
      c.gqa = pick(0, 1) ? GqaMode::kShared : GqaMode::kPerQueryHead;
      c.tie_period = pick(0, 4) == 0 ? pick(1, 5) : 0;
      char nm[200];
      std::snprintf(nm, sizeof nm, "fuzz%d B%d Hq%d Hkv%d d%d cap%d r%d k%d w%d re%d %s tie%d", i,
                    c.batch, c.hq, c.hkv, c.d, c.capacity, c.r, c.kk, c.window, int(c.realloc),
                    c.gqa == GqaMode::kShared ? "shared" : "perhead", c.tie_period);
      c.name = nm;
      const Mode m = modes[pick(0, int(std::size(modes)) - 1)];
      k::dispatch_head_dim(c.d, [&](auto dim) {
        run<decltype(dim)::value>(c, m, rng());
        return Status::kSuccess;
      });
    }
    std::printf("%d runs, %d failed checks\n", g_cases, g_fail);
    return g_fail ? 1 : 0;
  }
  if (only == "race_selftest") {
    run_race_selftest();
    return 0;
  }
  if (only == "race_selftest_cluster" || only == "race_selftest_cluster_shared") {
    run_race_selftest_cluster(only == "race_selftest_cluster_shared");
    return 0;
  }
  if (only.empty() || only == "topk" || race)
    for (int rep = 0; rep < reps; ++rep)
      run_topk_sets(2024u + static_cast<uint32_t>(rep));
  // Dense decode: group 1 and 4, d 64 and 128, lengths 1, 7, 300, 1031 in one batch; the
  // planned split count and 1, 3, 64 fixed ones (more splits than some sequences have rows;
  // the d 128 cases skip 1 and the second zeroed run, for time). Bound 1031 < capacity once.
  const std::vector<DenseCase> dense = {
      {"dense_mha_d64", 4, 2, 2, 64, 1031, 0, {1, 7, 300, 1031}},
      {"dense_gqa4_d64", 4, 4, 1, 64, 1031, 0, {7, 1031, 1, 300}},
      {"dense_gqa4_d128", 4, 4, 1, 128, 1040, 1031, {1031, 300, 7, 1}},
      {"dense_mha_d128", 4, 2, 2, 128, 1031, 0, {300, 1, 1031, 7}},
  };
  for (int rep = 0; rep < reps; ++rep)
    for (const DenseCase& c : dense) {
      if (!wanted(c.name, nullptr)) continue;
      for (int splits : {0, 1, 3, 64})
        for (bool zeroed : {false, true}) {
          if (zeroed && splits != 0 && (splits != 3 || c.d > 64)) continue;
          if (c.d > 64 && splits == 1) continue;
          k::dispatch_head_dim(c.d, [&](auto dim) {
            run_dense<decltype(dim)::value>(c, splits, zeroed, 4321 + g_cases);
            return Status::kSuccess;
          });
        }
    }
  // KV append: decode (one token) and prefill (five), sequences empty, partly full, one row
  // short of the capacity, full, and some rows past it (dropped); Kt padded (capacity 13 -> 16).
  if (only.empty() || std::string("kv_append").find(only) != std::string::npos)
    for (int rep = 0; rep < reps; ++rep) {
      run_append("kv_append_decode", 2, 128, 13, {0, 5, 12, 13}, 1, true, 77 + g_cases);
      run_append("kv_append_decode_d64", 3, 64, 300, {299, 0, 123}, 1, true, 77 + g_cases);
      run_append("kv_append_prefill", 2, 128, 13, {0, 5, 8, 10, 12, 13}, 5, true, 77 + g_cases);
      run_append("kv_append_prefill_d64", 1, 64, 700, {0, 123, 695, 698}, 5, true, 77 + g_cases);
      run_append("kv_append_prefill_long", 2, 64, 700, {0, 400, 650}, 77, true, 77 + g_cases);
      run_append("kv_append_decode", 2, 64, 13, {0, 12, 13}, 1, false, 77 + g_cases);
      run_append("kv_append_prefill", 2, 64, 13, {0, 10, 13}, 5, false, 77 + g_cases);
    }
  // The dataflow route's histogram items need two tiles (8192 positions each) or more.
  if (only ==
      "long") {  // several tiles of pass 2; k > kStreamAbove (the higher bins' list overflows)
    Case l1{"long_20000_k500", 1, 2, 2, 64, 20000, {20000}, 8, 500, 3, true, GqaMode::kShared};
    Case l2{"long_20000_k10000", 1, 2, 2, 64, 20000, {20000}, 8, 10000, 10, true, GqaMode::kShared};
    Case l3{"long_17000_gqa4_k9000_b2",
            2,
            8,
            2,
            64,
            17000,
            {17000, 12001},
            16,
            9000,
            0,
            true,
            GqaMode::kShared};
    for (const Case* c : {&l1, &l2, &l3})
      for (Mode m : {Mode::kThreeStream, Mode::kThreeStreamFallback, Mode::kFlowConc3})
        run<64>(*c, m, 500 + g_cases);
  }
  if (only.empty() || only == "hist") {
    Case h{"hist_items_17000", 1, 2, 2, 64, 17000, {17000}, 8, 300, 4, true, GqaMode::kShared};
    run<64>(h, Mode::kFlowHist1, 99);
    Case h2{"hist_items_20000_gqa4_b2",
            2,
            8,
            2,
            128,
            20000,
            {20000, 9000},
            16,
            500,
            0,
            true,
            GqaMode::kShared};
    run<128>(h2, Mode::kFlowHist1, 98);
    Case h3{"hist_items_ties_17000", 1, 2, 2, 64, 17000, {17000}, 8, 300, 4, true,
            GqaMode::kShared,        1};
    run<64>(h3, Mode::kFlowHist1, 97);
    run<128>(h2, Mode::kFlowHistConc4, 96);
    run<64>(h3, Mode::kFlowHistConc4, 95);
  }
  std::printf("%d runs, %d failed checks, %lld fiber switches, %lld spin-waits\n", g_cases, g_fail,
              emu::switches, emu::spins);
  return g_fail ? 1 : 0;
}
