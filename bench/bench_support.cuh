// Shared pieces of the benchmarks: a reusable device memory pool filled with random data,
// CUDA-event timing (median of many launches), the card's measured copy bandwidth, and decode
// problems laid out in that pool (rotated among copies when one copy would fit in L2).
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "sparq/cuda.cuh"

namespace sparq::bench {

#define BENCH_CUDA(expr)                                                                         \
  do {                                                                                           \
    const cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(2);                                                                              \
    }                                                                                            \
  } while (0)

/// Uniform values in [-2, 2) from a hash of the index: random, reproducible, never all zeros.
template <typename T>
__global__ void fill_random_kernel(T* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    const float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
    p[i] = from_float<T>(4.f * u - 2.f);
  }
}

template <typename T>
void fill_random(T* p, size_t n, uint64_t seed) {
  fill_random_kernel<T><<<4096, 256>>>(p, n, seed);
  BENCH_CUDA(cudaGetLastError());
}

/// Largest allocation the benchmarks make at once: total memory less a margin.
inline size_t device_budget_bytes() {
  size_t free_b = 0, total_b = 0;
  BENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return free_b > (size_t(4) << 30) ? free_b - (size_t(4) << 30) : free_b / 2;
}

inline size_t l2_bytes() {
  int dev = 0, l2 = 0;
  BENCH_CUDA(cudaGetDevice(&dev));
  BENCH_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return static_cast<size_t>(l2);
}

/// One growing device buffer, filled with random bytes-as-T once per growth.
class Pool {
 public:
  static Pool& get() {
    static Pool pool;
    return pool;
  }
  template <typename T>
  T* take(size_t bytes) {
    if (bytes > capacity_) {
      if (base_) BENCH_CUDA(cudaFree(base_));
      capacity_ = bytes;
      BENCH_CUDA(cudaMalloc(&base_, capacity_));
      fill_random(reinterpret_cast<T*>(base_), capacity_ / sizeof(T), 42);
      BENCH_CUDA(cudaDeviceSynchronize());
      filled_as_ = sizeof(T);
    }
    return reinterpret_cast<T*>(base_);
  }
  size_t capacity() const { return capacity_; }
  void release() {
    if (base_) cudaFree(base_);
    base_ = nullptr;
    capacity_ = 0;
  }

 private:
  void* base_ = nullptr;
  size_t capacity_ = 0;
  size_t filled_as_ = 0;
};

/// Reads every 16-byte word of p[0, n); stores only if the data hashes to a value it cannot
/// have (so the loads are kept, and nothing is written).
__global__ void l2_flush_kernel(const uint4* p, size_t n, unsigned* sink) {
  unsigned x = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x12345679u) *sink = x;  // the buffer holds bytes 0x01: never
}

/// Evicts whatever a launch left in L2 by reading a buffer of four times its size (reads, not
/// a memset: dirty lines would be written back during the next timed launch). Runs between
/// repeats, outside their events, so every timed launch starts from a cold L2, as a decode
/// step does after the rest of a layer's traffic. The rotated cache copies alone could not
/// promise that: a SparQ launch reads the same few selected rows of a copy every time.
inline void flush_l2() {
  static uint4* buf = nullptr;
  static size_t words = 0;
  if (buf == nullptr) {
    words = 4 * l2_bytes() / sizeof(uint4);
    BENCH_CUDA(cudaMalloc(&buf, (words + 1) * sizeof(uint4)));
    BENCH_CUDA(cudaMemset(buf, 1, (words + 1) * sizeof(uint4)));
  }
  l2_flush_kernel<<<1024, 256>>>(buf, words, reinterpret_cast<unsigned*>(buf + words));
  BENCH_CUDA(cudaGetLastError());
}

/// Median milliseconds of `reps` runs of fn(i), each bracketed by its own events, each after
/// an untimed flush_l2() (`cold_l2`).
inline double median_ms(const std::function<void(int)>& fn, int reps, int warmup = 3,
                        bool cold_l2 = true) {
  for (int i = 0; i < warmup; ++i)
    fn(i);
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev)
    BENCH_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < reps; ++i) {
    if (cold_l2) flush_l2();
    BENCH_CUDA(cudaEventRecord(ev[2 * i]));
    fn(i);
    BENCH_CUDA(cudaEventRecord(ev[2 * i + 1]));
  }
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i)
    BENCH_CUDA(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev)
    cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

/// Device-to-device copy bandwidth (bytes read + bytes written per second), measured once
/// on a 2 GiB copy: the ceiling every other figure is compared with.
inline double copy_bandwidth_bytes_per_s() {
  static double bw = 0;
  if (bw > 0) return bw;
  const size_t n = size_t(1) << 31;
  void *a = nullptr, *b = nullptr;
  BENCH_CUDA(cudaMalloc(&a, n));
  BENCH_CUDA(cudaMalloc(&b, n));
  BENCH_CUDA(cudaMemset(a, 1, n));
  const double ms =
      median_ms([&](int) { BENCH_CUDA(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice)); }, 20, 3,
                /*cold_l2=*/false);  // 2 GiB: L2 is irrelevant
  BENCH_CUDA(cudaFree(a));
  BENCH_CUDA(cudaFree(b));
  bw = 2.0 * n / (ms * 1e-3);
  return bw;
}

/// A decode step of every sequence at length S, laid out in the pool, with `copies` rotated
/// copies of the cache (and median_ms's L2 flush between launches).
template <typename T>
struct DecodeSetup {
  DecodeProblem p;
  SparqConfig cfg;
  int copies = 1;
  std::vector<KVCacheView<T>> caches;
  T* q = nullptr;
  T* out = nullptr;
  int* lengths = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  bool fits = false;

  /// Device bytes of one cache copy.
  static size_t cache_bytes(const DecodeProblem& p) {
    const KVCacheSizes s = packed_cache_sizes(p);
    return (s.k + s.kt + s.v) * sizeof(T) + s.vsum * sizeof(float) + 3 * 256;
  }

  DecodeSetup(int batch, int hq, int hkv, int d, int seq_len, const SparqConfig& c,
              bool need_sparq_workspace = true) {
    p.batch = batch;
    p.num_q_heads = hq;
    p.num_kv_heads = hkv;
    p.head_dim = d;
    p.capacity = seq_len;
    cfg = c;
    size_t ws_dense = 0, ws_sparq = 0;
    if (!ok(dense_decode_workspace_size<T>(p, &ws_dense))) return;
    if (need_sparq_workspace && !ok(sparq_decode_workspace_size<T>(p, cfg, &ws_sparq))) return;
    // Room for every route, so that a benchmark may force any of them.
    if (need_sparq_workspace)
      ws_sparq = std::max(
          {ws_sparq,
           kernels::SparqPlan<T>(p, cfg, nullptr, kernels::SparqRoute::kThreeLaunches).bytes,
           kernels::SparqPlan<T>(p, cfg, nullptr, kernels::SparqRoute::kDataflow).bytes});
    workspace_bytes = std::max(ws_dense, ws_sparq);
    const size_t one = cache_bytes(p);
    copies = static_cast<int>(std::min<size_t>(16, std::max<size_t>(1, 4 * l2_bytes() / one)));
    const size_t io = 2 * size_t(batch) * hq * d * sizeof(T) + 4096;
    const size_t need = copies * one + workspace_bytes + io + 4096;
    if (need > device_budget_bytes() + Pool::get().capacity()) return;  // the pool is reusable
    char* base = reinterpret_cast<char*>(Pool::get().take<T>(need));
    auto carve = [&](size_t bytes) {
      char* ptr = base;
      base += (bytes + 255) / 256 * 256;
      return ptr;
    };
    const KVCacheSizes s = packed_cache_sizes(p);
    for (int i = 0; i < copies; ++i) {
      T* k = reinterpret_cast<T*>(carve(s.k * sizeof(T)));
      T* kt = reinterpret_cast<T*>(carve(s.kt * sizeof(T)));
      T* v = reinterpret_cast<T*>(carve(s.v * sizeof(T)));
      float* vsum = reinterpret_cast<float*>(carve(s.vsum * sizeof(float)));
      caches.push_back(make_packed_cache_view<T>(p, k, kt, v, vsum));
    }
    q = reinterpret_cast<T*>(carve(size_t(batch) * hq * d * sizeof(T)));
    out = reinterpret_cast<T*>(carve(size_t(batch) * hq * d * sizeof(T)));
    lengths = reinterpret_cast<int*>(carve(batch * sizeof(int)));
    workspace = carve(workspace_bytes);
    // Zeroed once (the pool holds earlier benchmarks' data): every launch then runs with
    // workspace_zeroed, without a memset, as an engine would (BM_DenseDecodeMemset times one).
    BENCH_CUDA(cudaMemset(workspace, 0, workspace_bytes));
    std::vector<int> lens(batch, seq_len);
    BENCH_CUDA(cudaMemcpy(lengths, lens.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
    // Random data in this setup's own buffers: the pool only fills itself when it grows, and
    // an earlier setup may have left workspace contents (zeros, floats read as T) where this
    // one's cache now lies. Each copy its own values; the V sums as floats (finite).
    for (int i = 0; i < copies; ++i) {
      const KVCacheView<T>& c2 = caches[i];
      fill_random(c2.k, s.k, 101 + 4 * i);
      fill_random(c2.kt, s.kt, 102 + 4 * i);
      fill_random(c2.v, s.v, 103 + 4 * i);
      fill_random(c2.vsum, s.vsum, 104 + 4 * i);
    }
    fill_random(q, size_t(batch) * hq * d, 99);
    BENCH_CUDA(cudaDeviceSynchronize());
    fits = true;
  }

  SparqDecodeParams<T> sparq_params(int copy) const {
    SparqDecodeParams<T> a;
    a.problem = p;
    a.config = cfg;
    a.q = q;
    a.cache = caches[copy % copies];
    a.lengths = lengths;
    a.out = out;
    a.workspace_zeroed = true;
    return a;
  }
  DenseDecodeParams<T> dense_params(int copy) const {
    DenseDecodeParams<T> a;
    a.problem = p;
    a.q = q;
    a.cache = caches[copy % copies];
    a.lengths = lengths;
    a.out = out;
    a.workspace_zeroed = true;
    return a;
  }
  double kv_rows() const { return double(p.batch) * p.num_kv_heads; }
  /// Bytes the transfer formula counts for dense decoding.
  double dense_bytes() const {
    return kv_rows() * dense_transfers(p.capacity, p.head_dim) * sizeof(T);
  }
  /// Bytes the transfer formula counts for SparQ.
  double sparq_bytes() const {
    return kv_rows() * sparq_transfers(p.capacity, p.head_dim, cfg.r, cfg.k) * sizeof(T);
  }
};

inline void check_status(Status s, const char* what) {
  if (!ok(s)) {
    std::fprintf(stderr, "%s failed: %s\n", what, status_string(s));
    std::exit(2);
  }
}

/// Sets the usual counters from a median time and a byte count.
inline void report(benchmark::State& state, double ms, double bytes) {
  state.SetIterationTime(ms * 1e-3);
  const double bw = bytes / (ms * 1e-3);
  state.counters["time_us"] = ms * 1e3;
  state.counters["GBps"] = bw * 1e-9;
  state.counters["pct_of_copy_bw"] = 100.0 * bw / copy_bandwidth_bytes_per_s();
  state.counters["bytes"] = bytes;
}

}  // namespace sparq::bench
