// The Llama example's decode projections (examples/llama2/matvec.cuh) at Llama 2 7B shapes,
// each alone and as one layer's chain of four, in GB/s and % of the measured copy bandwidth.
// Run 7's whole-model decode at 4k spent about 40 µs per layer more than its weight bytes at
// the copy bandwidth outside attention. The single rows give each kernel's efficiency (each
// timed with its own launch); the chain, captured in a graph with and without programmatic
// dependent launches, what a layer's four cost as the decode step runs them, against the
// layer's weight bytes at the copy bandwidth. BM_LlamaMatvecPrefetchO: what the q/k/v matvec's
// prefetch of the o projection into L2 (--l2-prefetch) can save where attention leaves DRAM
// idle.
#include "bench/bench_support.cuh"
#include "examples/llama2/matvec.cuh"

namespace sb = sparq::bench;
namespace mv = llama::matvec;
using bf16 = __nv_bfloat16;

namespace {

constexpr int kHidden = 4096, kInter = 11008, kHeads = 32, kHeadDim = 128, kVocab = 32000;
constexpr float kEps = 1e-5f;

struct LayerWeights {
  const bf16 *wq, *wk, *wv, *wo, *wg, *wu, *wd;
  sparq::KVCacheView<bf16> cache;  // the layer's KV cache: the q/k/v epilogue appends to it
};

constexpr int kCapacity = 4096;  // cache positions; the step appends at the last

sparq::DecodeProblem cache_problem() {
  sparq::DecodeProblem p;
  p.num_q_heads = p.num_kv_heads = kHeads;
  p.head_dim = kHeadDim;
  p.capacity = kCapacity;
  return p;
}

double layer_weight_bytes() {
  return 2.0 * (4.0 * kHidden * kHidden + 3.0 * kHidden * kInter);
}

/// Random 7B-shaped weights for `copies` layers (rotated so that no launch reads from L2 what
/// the one before left there), an lm_head, and the step's vectors, all from the pool.
struct MatvecSetup {
  std::vector<LayerWeights> layers;
  const bf16* lm_head = nullptr;
  float *x = nullptr, *norm_w = nullptr, *logits = nullptr;
  bf16 *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *h = nullptr;
  int* pos = nullptr;
  mv::Matvec m;
  bool fits = false;

  explicit MatvecSetup(int copies) {
    const sparq::KVCacheSizes cs = sparq::packed_cache_sizes(cache_problem());
    const size_t per_layer = static_cast<size_t>(layer_weight_bytes()) + 7 * 256 +
                             (cs.k + cs.kt + cs.v) * sizeof(bf16) + cs.vsum * sizeof(float) +
                             4 * 256;
    const size_t vectors = 4 * (kHidden + kVocab + kInter) * sizeof(float) + 16 * 256;
    const size_t need = copies * per_layer + size_t(kVocab) * kHidden * 2 + vectors;
    if (need > sb::device_budget_bytes() + sb::Pool::get().capacity()) return;
    char* base = reinterpret_cast<char*>(sb::Pool::get().take<bf16>(need));
    auto carve = [&](size_t bytes) {
      char* p = base;
      base += (bytes + 255) / 256 * 256;
      return p;
    };
    auto matrix = [&](int rows, int cols) {
      return reinterpret_cast<const bf16*>(carve(size_t(rows) * cols * sizeof(bf16)));
    };
    for (int i = 0; i < copies; ++i) {
      LayerWeights w;
      w.wq = matrix(kHidden, kHidden);
      w.wk = matrix(kHidden, kHidden);
      w.wv = matrix(kHidden, kHidden);
      w.wo = matrix(kHidden, kHidden);
      w.wg = matrix(kInter, kHidden);
      w.wu = matrix(kInter, kHidden);
      w.wd = matrix(kHidden, kInter);
      bf16* k = reinterpret_cast<bf16*>(carve(cs.k * sizeof(bf16)));
      bf16* kt = reinterpret_cast<bf16*>(carve(cs.kt * sizeof(bf16)));
      bf16* v = reinterpret_cast<bf16*>(carve(cs.v * sizeof(bf16)));
      float* vsum = reinterpret_cast<float*>(carve(cs.vsum * sizeof(float)));
      sb::fill_random(vsum, cs.vsum, 7 + i);  // running sums of a plausible size
      w.cache = sparq::make_packed_cache_view<bf16>(cache_problem(), k, kt, v, vsum);
      layers.push_back(w);
    }
    lm_head = matrix(kVocab, kHidden);
    x = reinterpret_cast<float*>(carve(kHidden * sizeof(float)));
    norm_w = reinterpret_cast<float*>(carve(kHidden * sizeof(float)));
    logits = reinterpret_cast<float*>(carve(kVocab * sizeof(float)));
    q = reinterpret_cast<bf16*>(carve(kHidden * sizeof(bf16)));
    k = reinterpret_cast<bf16*>(carve(kHidden * sizeof(bf16)));
    v = reinterpret_cast<bf16*>(carve(kHidden * sizeof(bf16)));
    att = reinterpret_cast<bf16*>(carve(kHidden * sizeof(bf16)));
    h = reinterpret_cast<bf16*>(carve(kInter * sizeof(bf16)));
    pos = reinterpret_cast<int*>(carve(sizeof(int)));
    // Small finite inputs: the residual grows by a bounded amount per launch.
    sb::fill_random(x, kHidden, 3);
    sb::fill_random(norm_w, kHidden, 4);
    sb::fill_random(att, kHidden, 5);
    sb::fill_random(h, kInter, 6);
    const int p0 = kCapacity - 1;
    BENCH_CUDA(cudaMemcpy(pos, &p0, sizeof(int), cudaMemcpyHostToDevice));
    BENCH_CUDA(m.init(kHidden, kInter));
    BENCH_CUDA(cudaDeviceSynchronize());
    fits = true;
  }

  // One projection of layer copy i, by kind; the q/k/v one appends k and v to the layer's
  // cache (as the decode step does by default) where `append`.
  // `next`: bytes of the o projection to prefetch into L2 afterwards.
  void qkv(int i, cudaStream_t s, bool append = true, size_t next = 0) const {
    const LayerWeights& w = layers[i % layers.size()];
    BENCH_CUDA(m.norm_qkv_rope(x, norm_w, kEps, kHidden, w.wq, w.wk, w.wv, kHeads, kHeads, kHeadDim,
                               10000.0f, pos, q, k, v, s, append ? &w.cache : nullptr, kCapacity,
                               mv::L2Range{w.wo, next}));
  }
  void o(int i, cudaStream_t s) const {
    BENCH_CUDA(m.matvec_add(att, kHidden, layers[i % layers.size()].wo, kHidden, x, s));
  }
  void gate_up(int i, cudaStream_t s) const {
    const LayerWeights& w = layers[i % layers.size()];
    BENCH_CUDA(m.norm_gate_up_silu(x, norm_w, kEps, kHidden, w.wg, w.wu, kInter, h, s));
  }
  void down(int i, cudaStream_t s) const {
    BENCH_CUDA(m.matvec_add(h, kInter, layers[i % layers.size()].wd, kHidden, x, s));
  }
};

// Enough layer copies that four in a row exceed the L2 several times over (one is 405 MB).
constexpr int kCopies = 4;

enum Kind { kQkvRope, kQkvRopeAppend, kO, kGateUp, kDown, kLmHead };

template <Kind kKind>
void BM_LlamaMatvec(benchmark::State& state) {
  MatvecSetup s(kCopies);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  const double bytes = kKind == kQkvRope || kKind == kQkvRopeAppend ? 2.0 * 3 * kHidden * kHidden
                       : kKind == kO                                ? 2.0 * kHidden * kHidden
                       : kKind == kGateUp                           ? 2.0 * 2 * kInter * kHidden
                       : kKind == kDown                             ? 2.0 * kHidden * kInter
                                                                    : 2.0 * kVocab * kHidden;
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          if (kKind == kQkvRope) s.qkv(i, nullptr, false);
          if (kKind == kQkvRopeAppend) s.qkv(i, nullptr, true);
          if (kKind == kO) s.o(i, nullptr);
          if (kKind == kGateUp) s.gate_up(i, nullptr);
          if (kKind == kDown) s.down(i, nullptr);
          if (kKind == kLmHead)
            BENCH_CUDA(s.m.norm_matvec(s.x, s.norm_w, kEps, kHidden,
                                       {{s.lm_head, s.logits, kVocab}}, nullptr));
        },
        40);
    sb::report(state, ms, bytes);
  }
}

// The four projections of kLayers layers (rotating over the copies) captured in one graph, as
// the decode step runs them (the q/k/v one appending to the cache; without attention); time
// and weight bytes per layer. Arg: dependent launches (1: each kernel a programmatic dependent
// of the one before, sm_90).
void BM_LlamaMatvecLayerChain(benchmark::State& state) {
  constexpr int kLayers = 8;
  const bool dependent = state.range(0) != 0;
  if (dependent && !sparq::kernels::dependent_launch_supported())
    return state.SkipWithError("dependent launches need sm_90");
  MatvecSetup s(kCopies);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  s.m.set_dependent_launch(dependent);
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  BENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int l = 0; l < kLayers; ++l) {
    s.qkv(l, stream);
    s.o(l, stream);
    s.gate_up(l, stream);
    s.down(l, stream);
  }
  BENCH_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  BENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (auto _ : state) {
    const double ms = sb::median_ms([&](int) { BENCH_CUDA(cudaGraphLaunch(exec, nullptr)); }, 15);
    sb::report(state, ms / kLayers, layer_weight_bytes());
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Reads the global timer until `ns` have passed: a stand-in for the attention launch between
// the q/k/v and o matvecs, which at batch 1 mostly waits on latency with DRAM idle.
__global__ void spin_kernel(long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (static_cast<long long>(t - t0) < ns);
}

// Per layer copy: q/k/v (with the append), 30 µs of a one-warp kernel that only waits, then o.
// Arg l2 = 1: the q/k/v matvec then prefetches o's weights into L2 as the Llama decode does
// with --l2-prefetch (evict_last, in a persisting set-aside set here for the run), so o reads
// them from L2. The difference between the two rows bounds what the option saves per layer
// where attention leaves DRAM idle that long; the decode's own A/B says what it saves there.
void BM_LlamaMatvecPrefetchO(benchmark::State& state) {
  constexpr long long kWaitNs = 30000;
  const bool l2 = state.range(0) != 0;
  MatvecSetup s(kCopies);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  int dev = 0, most = 0;
  BENCH_CUDA(cudaGetDevice(&dev));
  BENCH_CUDA(cudaDeviceGetAttribute(&most, cudaDevAttrMaxPersistingL2CacheSize, dev));
  const size_t bytes = std::min(size_t(2) * kHidden * kHidden, size_t(most)) & ~size_t(15);
  if (l2 && bytes == 0) return state.SkipWithError("no L2 persistence on this device");
  size_t before = 0;
  BENCH_CUDA(cudaDeviceGetLimit(&before, cudaLimitPersistingL2CacheSize));
  if (l2) BENCH_CUDA(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, std::max(before, bytes)));
  for (auto _ : state) {
    const double ms = sb::median_ms(
        [&](int i) {
          s.qkv(i, nullptr, true, l2 ? bytes : 0);
          spin_kernel<<<1, 32>>>(kWaitNs);
          s.o(i, nullptr);
        },
        40);
    sb::report(state, ms, 2.0 * 4 * kHidden * kHidden);
    state.counters["wait_us"] = kWaitNs / 1000.0;
    state.counters["prefetch_mb"] = l2 ? bytes / 1e6 : 0.0;
  }
  if (l2) {
    BENCH_CUDA(cudaCtxResetPersistingL2Cache());
    BENCH_CUDA(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, before));
  }
}

}  // namespace

#define LLAMA_ROW(kind, name)     \
  BENCHMARK(BM_LlamaMatvec<kind>) \
      ->Name(name)                \
      ->UseManualTime()           \
      ->Iterations(1)             \
      ->Unit(benchmark::kMicrosecond)

LLAMA_ROW(kQkvRope, "BM_LlamaMatvec/qkv_rope");
LLAMA_ROW(kQkvRopeAppend, "BM_LlamaMatvec/qkv_rope_append");
LLAMA_ROW(kO, "BM_LlamaMatvec/o");
LLAMA_ROW(kGateUp, "BM_LlamaMatvec/gate_up_silu");
LLAMA_ROW(kDown, "BM_LlamaMatvec/down");
LLAMA_ROW(kLmHead, "BM_LlamaMatvec/lm_head");
BENCHMARK(BM_LlamaMatvecLayerChain)
    ->ArgName("pdl")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_LlamaMatvecPrefetchO)
    ->ArgName("l2")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
