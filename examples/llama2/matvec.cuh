// Batch-1 decode projections as matrix-vector products, written for memory bandwidth.
//
// At batch 1 each projection y = W·x reads every weight once for two flops, so a decode step
// costs its weight bytes over the memory bandwidth. cuBLAS's GEMM with n = 1 and float32 output
// stays well below that, and the small kernels around it (RMSNorm, SiLU·up) add launches.
//
//   - W is bf16 [out, in] row-major, as CudaModel stores it. x is staged once per block in
//     shared memory as float. Each warp owns two rows (they share every read of x and double
//     the loads in flight); each lane reads 16-byte chunks (8 weights) of both rows, kUnroll
//     chunks per row at once (kAddUnroll for o and down, whose grids are small), with loads
//     that do not allocate in L1 (each weight byte is read once per step). A warp shuffle sums
//     the lanes; accumulation is float32.
//   - Where a warp's result is added to memory (the residual of o and down, the V sum of the
//     append), the values it adds to are loaded before the rows' weights (HasPreload), not
//     after them, when the memory system is saturated.
//   - A grid holds at most the blocks resident at once, which loop over the rows: each block
//     stages x once. Before staging, each warp prefetches its first rows' first chunks into L2,
//     so the weight stream starts while x is prepared.
//   - Fused variants, one launch each: RMSNorm + q/k/v (or + lm_head), RMSNorm + q/k/v + RoPE
//     (writes bf16 q, k, v), RMSNorm + gate/up + SiLU·up (writes bf16 h), and a matvec that adds
//     into the float32 residual (o, down).
//   - Optionally (L2Range `next`), once its rows are read, each block asks L2 to keep its part of
//     a later projection's weights (evict_last): the q/k/v matvec so prefetches the o
//     projection's while the attention launch between them mostly waits on latency.
//
// Numerics follow the cuBLAS path: RMSNorm's output is rounded to bf16 as rms_norm_kernel does
// (same arithmetic, same summation order), h is rounded to bf16 as silu_mul_kernel does; only
// the dot products' summation order differs. When in % 8 != 0 or a row is not 16-byte aligned,
// the rows are read one bf16 at a time instead.
//
// Run and tested on an H100 (docs/benchmarks.md); the L2 prefetch, the preloads and kAddUnroll
// (nineteenth session) on an H200 only (run 12; the prefetch made a decode step slower).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "sparq/device/dependent_launch.cuh"
#include "sparq/device/kv_append_element.cuh"
#include "sparq/kernels/launch_common.cuh"

namespace llama::matvec {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;  // per block: 8 warps
constexpr int kWarps = kThreads / 32;
// 16-byte loads in flight per lane and row (8 per lane for 2 rows). The adding variant (o,
// down) uses kAddUnroll: its grids have only 2 blocks per SM (one warp per row pair of 4096),
// so each warp keeps twice as many bytes in flight (128 KB per SM, not 64).
constexpr int kUnroll = 4;
constexpr int kAddUnroll = 8;

// The block's sum of v (every thread gets it). model_cuda.cu's rms_norm_kernel uses it too, so
// that the fused RMSNorm sums in exactly the same order.
__device__ inline float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  const float r = part[0];
  __syncthreads();
  return r;
}

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// 16 bytes through the read-only path, not kept in L1.
__device__ __forceinline__ uint4 load_stream(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// acc + the dot product of 8 bf16 weights with the floats a, b.
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b, float acc) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&w);
  float2 f = __bfloat1622float2(h[0]);
  acc = fmaf(f.x, a.x, acc), acc = fmaf(f.y, a.y, acc);
  f = __bfloat1622float2(h[1]);
  acc = fmaf(f.x, a.z, acc), acc = fmaf(f.y, a.w, acc);
  f = __bfloat1622float2(h[2]);
  acc = fmaf(f.x, b.x, acc), acc = fmaf(f.y, b.y, acc);
  f = __bfloat1622float2(h[3]);
  acc = fmaf(f.x, b.z, acc), acc = fmaf(f.y, b.w, acc);
  return acc;
}

template <int R>
__device__ __forceinline__ bool vector_rows(const bf16* const (&w)[R], int in) {
  bool ok = (in & 7) == 0;
#pragma unroll
  for (int r = 0; r < R; ++r)
    ok = ok && aligned16(w[r]);
  return ok;
}

// Asks L2 for the chunks the warp's first loop iteration will load (U * 512 bytes of each row).
template <int U, int R>
__device__ void prefetch_first_chunks(const bf16* const (&w)[R], int in) {
  if (!vector_rows(w, in)) return;
  const int lane = threadIdx.x & 31, line = 128;
  const int bytes = min(2 * in, U * 32 * 16);
#pragma unroll
  for (int r = 0; r < R; ++r)
    for (int b = lane * line; b < bytes; b += 32 * line)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(w[r]) + b));
}

// acc[r] = w[r][0, in) · xs[0, in), summed over the warp (every lane gets the sums); U chunks
// per row and lane in flight. Each lane adds its chunks in ascending order whatever U is.
template <int U, int R>
__device__ __forceinline__ void warp_dot(const bf16* const (&w)[R], int in, const float* xs,
                                         float (&acc)[R]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r)
    acc[r] = 0.0f;
  if (vector_rows(w, in)) {
    const int chunks = in / 8;
    for (int c0 = lane; c0 < chunks; c0 += 32 * U) {
      uint4 v[U][R];
#pragma unroll
      for (int u = 0; u < U; ++u)  // all loads first; a chunk past the end re-reads the
#pragma unroll                     // last one (a valid address) and is not summed
        for (int r = 0; r < R; ++r)
          v[u][r] = load_stream(w[r] + 8 * min(c0 + 32 * u, chunks - 1));
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + 32 * u;
        if (c < chunks) {
          const float4 a = reinterpret_cast<const float4*>(xs)[2 * c];
          const float4 b = reinterpret_cast<const float4*>(xs)[2 * c + 1];
#pragma unroll
          for (int r = 0; r < R; ++r)
            acc[r] = dot8(v[u][r], a, b, acc[r]);
        }
      }
    }
  } else {
    for (int i = lane; i < in; i += 32) {
      const float xi = xs[i];
#pragma unroll
      for (int r = 0; r < R; ++r)
        acc[r] = fmaf(__bfloat162float(w[r][i]), xi, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
    for (int o = 16; o > 0; o >>= 1)
      acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
}

// xs[0, n) = src[0, n) as float, by the whole block; 16-byte loads, four per thread in flight.
__device__ inline void stage(const float* __restrict__ src, int n, float* xs) {
  if ((n & 3) == 0 && aligned16(src)) {
    const float4* s = reinterpret_cast<const float4*>(src);
    float4* d = reinterpret_cast<float4*>(xs);
    const int chunks = n / 4;
    for (int c0 = threadIdx.x; c0 < chunks; c0 += 4 * kThreads) {
      float4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + u * kThreads < chunks) v[u] = __ldg(s + c0 + u * kThreads);
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + u * kThreads < chunks) d[c0 + u * kThreads] = v[u];
    }
  } else {
    for (int i = threadIdx.x; i < n; i += kThreads)
      xs[i] = src[i];
  }
}
__device__ inline void stage(const bf16* __restrict__ src, int n, float* xs) {
  if ((n & 7) == 0 && aligned16(src)) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    float4* d = reinterpret_cast<float4*>(xs);
    const int chunks = n / 8;
    for (int c0 = threadIdx.x; c0 < chunks; c0 += 4 * kThreads) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + u * kThreads < chunks) v[u] = __ldg(s + c0 + u * kThreads);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = c0 + u * kThreads;
        if (c >= chunks) continue;
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v[u]);
        const float2 f0 = __bfloat1622float2(h[0]), f1 = __bfloat1622float2(h[1]);
        const float2 f2 = __bfloat1622float2(h[2]), f3 = __bfloat1622float2(h[3]);
        d[2 * c] = make_float4(f0.x, f0.y, f1.x, f1.y);
        d[2 * c + 1] = make_float4(f2.x, f2.y, f3.x, f3.y);
      }
    }
  } else {
    for (int i = threadIdx.x; i < n; i += kThreads)
      xs[i] = __bfloat162float(src[i]);
  }
}

// xs = bf16(w · xs · rsqrt(mean(xs²) + eps)), kept as float: rms_norm_kernel's arithmetic, sum
// order (kThreads threads, strided) and rounding, so the projections get the same input.
__device__ inline void rms_normalize(float* xs, int n, const float* __restrict__ w, float eps) {
  __syncthreads();  // xs was staged by other threads
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += kThreads)
    ss += xs[i] * xs[i];
  const float inv = rsqrtf(block_sum(ss) / n + eps);
  auto scale = [inv](float wi, float xi) {
    return __bfloat162float(__float2bfloat16_rn(wi * (xi * inv)));
  };
  if ((n & 3) == 0 && aligned16(w)) {  // elementwise: any thread may take any 4 elements
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* x4 = reinterpret_cast<float4*>(xs);
    const int chunks = n / 4;
    for (int c0 = threadIdx.x; c0 < chunks; c0 += 4 * kThreads) {
      float4 wv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + u * kThreads < chunks) wv[u] = __ldg(w4 + c0 + u * kThreads);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = c0 + u * kThreads;
        if (c >= chunks) continue;
        const float4 x = x4[c];
        x4[c] = make_float4(scale(wv[u].x, x.x), scale(wv[u].y, x.y), scale(wv[u].z, x.z),
                            scale(wv[u].w, x.w));
      }
    }
  } else {
    for (int i = threadIdx.x; i < n; i += kThreads)
      xs[i] = scale(w[i], xs[i]);
  }
}

/// RoPE (rotate-half) of the pair (a, b) = (x[i], x[i + d/2]) of one head at position `pos`,
/// rounded to bf16. model_cuda.cu's RoPE kernel calls it too, so the fused and separate paths
/// compute the same bits; the explicitly rounded products and sums keep the compiler from
/// contracting them into FMAs differently in the two places.
__device__ __forceinline__ void rope_pair(float a, float b, int pos, int i, int d, float theta,
                                          bf16* lo, bf16* hi) {
  const float inv_freq =
      __fdiv_rn(1.0f, powf(theta, __fdiv_rn(static_cast<float>(2 * i), static_cast<float>(d))));
  float s, c;
  sincosf(__fmul_rn(static_cast<float>(pos), inv_freq), &s, &c);
  *lo = __float2bfloat16_rn(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
  *hi = __float2bfloat16_rn(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
}

/// Group g of the q, k and v projections taken as rotation pairs: matrix 0 (q), 1 (k) or 2 (v),
/// head, and i < d/2 (the pair is rows head·d + i and head·d + i + d/2). Host and device: a CPU
/// test checks that the groups cover every row once.
struct RopeGroup {
  int matrix, head, i;
};
__host__ __device__ inline RopeGroup rope_group(int g, int hq, int hkv, int half) {
  const int qg = hq * half, kg = hkv * half;
  RopeGroup r;
  r.matrix = g < qg ? 0 : g < qg + kg ? 1 : 2;
  const int j = g - (r.matrix > 0 ? qg : 0) - (r.matrix > 1 ? kg : 0);
  r.head = j / half;
  r.i = j % half;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Weights into L2 ahead of the matvec that reads them (CudaOptions::l2_prefetch).

/// Bytes [p, p + bytes) of a later projection's weights that a matvec asks L2 to keep once its
/// own rows are read (p 16-byte aligned; bytes 0: nothing).
struct L2Range {
  const void* p = nullptr;
  size_t bytes = 0;
};

/// Block `block` of `blocks`' part of a range of `bytes`: [*begin, *end), whole 128-byte lines
/// (the last part ends with the range; parts past it are empty). Host and device: a CPU test
/// checks that the parts cover the range once.
__host__ __device__ inline void l2_part(size_t bytes, int block, int blocks, size_t* begin,
                                        size_t* end) {
  const size_t lines = (bytes + 127) / 128, per = (lines + blocks - 1) / blocks;
  const size_t b = per * 128 * static_cast<size_t>(block), e = b + per * 128;
  *begin = b < bytes ? b : bytes;
  *end = e < bytes ? e : bytes;
}

constexpr int kL2PrefetchPiece = 4096;  // bytes per bulk prefetch (sm_90)

// An L2 policy that marks lines evict_last: with a persisting set-aside of L2
// (cudaLimitPersistingL2CacheSize) they stay while the KV cache streams through.
__device__ __forceinline__ uint64_t evict_last_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ void bulk_prefetch_l2(const char* p, uint32_t bytes, uint64_t policy) {
  asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(p), "r"(bytes),
               "l"(policy)
               : "memory");
}
__device__ __forceinline__ void prefetch_l2_evict_last(const char* p) {
  asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p));
}

// This block's part of r (l2_part) into L2 as evict_last: bulk prefetches of kL2PrefetchPiece
// bytes (sm_90), else a prefetch per 32-byte sector. A hint: nothing waits for it.
__device__ inline void prefetch_part_l2(const L2Range& r) {
  if (r.bytes == 0) return;
  size_t begin, end;
  l2_part(r.bytes, blockIdx.x, gridDim.x, &begin, &end);
  const char* base = static_cast<const char*>(r.p);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint64_t policy = evict_last_policy();
  const size_t step = size_t(kThreads) * kL2PrefetchPiece;
  for (size_t o = begin + size_t(threadIdx.x) * kL2PrefetchPiece; o < end; o += step) {
    const size_t n = end - o < size_t(kL2PrefetchPiece) ? end - o : size_t(kL2PrefetchPiece);
    if (n >= 16) bulk_prefetch_l2(base + o, static_cast<uint32_t>(n & ~size_t(15)), policy);
  }
#else
  for (size_t o = begin + size_t(threadIdx.x) * 32; o < end; o += size_t(kThreads) * 32)
    prefetch_l2_evict_last(base + o);
#endif
}

// ---------------------------------------------------------------------------------------------
// The four variants, as the rows each warp reads, the input each block stages and what becomes
// of the warp's sums. Every variant gives a warp two rows (kRows).

/// The input of the RMSNorm variants: x (float, `in` elements) staged, then normalized with
/// weight norm_w.
struct NormInput {
  const float* x;
  const float* norm_w;
  float eps;
  int in;
  L2Range next{};  // prefetched into L2 once the rows are read (none by default)
  static constexpr int kUnroll = matvec::kUnroll;

  __device__ void load_input(float* xs) const {
    stage(x, in, xs);
    rms_normalize(xs, in, norm_w, eps);
  }
};

/// (a) y_s = W_s · RMSNorm(x) for up to three matrices, rows concatenated (q, k, v; lm_head).
struct NormMatvecOp : NormInput {
  static constexpr int kRows = 2;
  const bf16* w[3];
  float* y[3];
  int rows[3];  // 0 for unused matrices
  int total, groups;

  // Concatenated row i of matrix s is row i - rows[0] - ... of its matrix.
  __device__ int64_t find(int i, int* s) const {
    *s = i < rows[0] ? 0 : i < rows[0] + rows[1] ? 1 : 2;
    return i - (*s > 0 ? rows[0] : 0) - (*s > 1 ? rows[1] : 0);
  }
  __device__ void rows_of(int g, const bf16* (&p)[kRows]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {  // past the end: the last row again (its sum is dropped)
      int s;
      const int64_t i = find(min(g * kRows + r, total - 1), &s);
      p[r] = (s == 0 ? w[0] : s == 1 ? w[1] : w[2]) + i * in;
    }
  }
  __device__ void store(int g, const float (&acc)[kRows]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (g * kRows + r >= total) continue;
      int s;
      const int64_t i = find(g * kRows + r, &s);
      (s == 0 ? y[0] : s == 1 ? y[1] : y[2])[i] = acc[r];
    }
  }
};

/// (a') q, k, v = W · RMSNorm(x), then RoPE on q and k at position *pos0 and bf16 for all three:
/// the decode step's first launch in place of (a) and a RoPE kernel. A warp's two rows are a
/// rotation pair, rows i and i + d/2 of one head (v's too, only rounded), so it rotates its own
/// sums. Each row's sum is computed as in (a), whichever row it is paired with: the same bits
/// as (a) followed by the RoPE kernel. With `append`, k and v also go into the KV cache of
/// sequence 0 at position *pos0 (sparq's append stores, as sparq::kv_append would write them),
/// in place of the append's launch.
struct NormQkvRopeOp : NormInput {
  static constexpr int kRows = 2;
  const bf16 *wq, *wk, *wv;
  bf16 *q, *k, *v;
  int hq, hkv, d;
  float theta;
  const int* pos0;
  int groups;   // (hq + 2 hkv) · d / 2
  int pos = 0;  // *pos0, read after the kernel before has finished
  bool append = false;
  sparq::KVCacheView<bf16> cache{};  // with append; rows below cache_capacity only
  int cache_capacity = 0;

  __device__ void load_input(float* xs) {
    pos = *pos0;
    NormInput::load_input(xs);
  }
  __device__ int64_t first_row(const RopeGroup& r) const { return int64_t(r.head) * d + r.i; }
  __device__ void rows_of(int g, const bf16* (&p)[kRows]) const {
    const RopeGroup r = rope_group(g, hq, hkv, d / 2);
    const bf16* w = r.matrix == 0 ? wq : r.matrix == 1 ? wk : wv;
    p[0] = w + first_row(r) * in;
    p[1] = w + (first_row(r) + d / 2) * in;
  }
  /// The V sum's two elements a v group adds to (with the append; else zeros), loaded before
  /// the group's weights (HasPreload).
  struct Pre {
    float s0, s1;
  };
  __device__ Pre preload(int g) const {
    const RopeGroup r = rope_group(g, hq, hkv, d / 2);
    if (!append || r.matrix != 2 || pos < 0 || pos >= cache_capacity || cache.vsum == nullptr)
      return {0.0f, 0.0f};
    const float* sum = cache.vsum_row(0, r.head);
    return {sum[r.i], sum[r.i + d / 2]};
  }
  __device__ void store(int g, const float (&acc)[kRows], Pre pre) const {
    const RopeGroup r = rope_group(g, hq, hkv, d / 2);
    bf16* y = (r.matrix == 0 ? q : r.matrix == 1 ? k : v) + first_row(r);
    bf16 lo, hi;
    if (r.matrix == 2) {
      lo = __float2bfloat16_rn(acc[0]);
      hi = __float2bfloat16_rn(acc[1]);
    } else {
      rope_pair(acc[0], acc[1], pos, r.i, d, theta, &lo, &hi);
    }
    y[0] = lo;
    y[d / 2] = hi;
    if (!append || r.matrix == 0 || pos < 0 || pos >= cache_capacity) return;
    const int j = r.i, j2 = r.i + d / 2;
    if (r.matrix == 1) {
      sparq::device::append_k_element(cache, 0, r.head, pos, j, lo);
      sparq::device::append_k_element(cache, 0, r.head, pos, j2, hi);
    } else {
      sparq::device::append_v_element(cache, 0, r.head, pos, j, lo, pre.s0);
      sparq::device::append_v_element(cache, 0, r.head, pos, j2, hi, pre.s1);
    }
  }
};

/// (b) h[i] = bf16(SiLU(Wg[i] · n) · (Wu[i] · n)), n = RMSNorm(x): a warp's two rows are row i
/// of gate and row i of up.
struct NormGateUpSiluOp : NormInput {
  static constexpr int kRows = 2;
  const bf16 *w_gate, *w_up;
  bf16* h;
  int groups;  // = the intermediate size

  __device__ void rows_of(int g, const bf16* (&p)[kRows]) const {
    p[0] = w_gate + int64_t(g) * in;
    p[1] = w_up + int64_t(g) * in;
  }
  __device__ void store(int g, const float (&acc)[kRows]) const {
    const float gate = acc[0];  // silu_mul_kernel's expression
    h[g] = __float2bfloat16_rn(gate / (1.0f + __expf(-gate)) * acc[1]);
  }
};

/// (c) y += W · a for a bf16 input a (attention output, h): the o and down projections adding
/// into the float32 residual.
struct MatvecAddOp {
  static constexpr int kRows = 2;
  static constexpr int kUnroll = kAddUnroll;
  const bf16* a;
  int in;
  const bf16* w;
  float* y;
  int out, groups;
  L2Range next{};

  __device__ void load_input(float* xs) const { stage(a, in, xs); }
  __device__ void rows_of(int g, const bf16* (&p)[kRows]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      p[r] = w + int64_t(min(g * kRows + r, out - 1)) * in;
  }
  /// The residual's elements the group adds to, loaded before its weights (HasPreload).
  struct Pre {
    float y[kRows];
  };
  __device__ Pre preload(int g) const {
    Pre p;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      p.y[r] = g * kRows + r < out ? y[g * kRows + r] : 0.0f;
    return p;
  }
  __device__ void store(int g, const float (&acc)[kRows], const Pre& pre) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (g * kRows + r < out) y[g * kRows + r] = pre.y[r] + acc[r];
  }
};

/// Whether Op's store reads global memory it also writes (the V sum, the residual): such an
/// Op loads those values with preload(g) before the group's weights stream in, so their round
/// trip is not the last thing the warp waits for. At the end of a matvec the memory system is
/// saturated and one dependent load there costs a loaded latency.
template <class Op, class = void>
struct HasPreload : std::false_type {};
template <class Op>
struct HasPreload<Op, std::void_t<decltype(std::declval<const Op&>().preload(0))>>
    : std::true_type {};

// One kernel body for the four: prefetch, stage x, then each warp takes groups of rows
// (blockIdx.x * kWarps + warp, then every gridDim.x * kWarps). Launched as a programmatic
// dependent (Matvec::set_dependent_launch), it starts while the kernel before it finishes: the
// weight prefetch needs nothing from that kernel, so it runs before the wait; x does. Once its
// rows are done, the block prefetches its part of op.next.
template <class Op>
__global__ void __launch_bounds__(kThreads) matvec_kernel(Op op) {
  extern __shared__ float4 smem[];
  sparq::device::allow_dependent_grids();
  float* xs = reinterpret_cast<float*>(smem);
  const bf16* w[Op::kRows];
  int g = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (g < op.groups) {
    op.rows_of(g, w);
    prefetch_first_chunks<Op::kUnroll>(w, op.in);
  }
  sparq::device::wait_for_prior_grids();
  op.load_input(xs);
  __syncthreads();
  for (; g < op.groups; g += gridDim.x * kWarps) {
    op.rows_of(g, w);
    float acc[Op::kRows];
    if constexpr (HasPreload<Op>::value) {
      const auto pre = op.preload(g);
      warp_dot<Op::kUnroll>(w, op.in, xs, acc);
      // Every lane read what lane 0 now writes: order those reads before the write (without
      // it, a data race, if a harmless one; the emulation's race check found it). The lanes
      // have just met in warp_dot's shuffles, so it costs no wait.
      __syncwarp();
      if ((threadIdx.x & 31) == 0) op.store(g, acc, pre);
    } else {
      warp_dot<Op::kUnroll>(w, op.in, xs, acc);
      if ((threadIdx.x & 31) == 0) op.store(g, acc);
    }
  }
  prefetch_part_l2(op.next);
}

// ---------------------------------------------------------------------------------------------

/// Host side: set up once (outside graph capture), then launch; launches never allocate or
/// synchronise, so a CUDA graph can capture them.
class Matvec {
 public:
  struct Proj {
    const bf16* w;  ///< [rows, in]
    float* y;       ///< [rows]
    int rows;
  };

  /// Dynamic shared memory for an input of `in` elements (staged as float).
  static size_t smem_bytes(int in) { return (size_t(in) + 3) / 4 * sizeof(float4); }

  /// Allows inputs up to `max_norm_in` elements (RMSNorm variants) and `max_add_in` (the adding
  /// variant): raises the kernels' dynamic shared-memory limit (needed above 48 KB) and records
  /// how many blocks of each fit on the device at once.
  cudaError_t init(int max_norm_in, int max_add_in) {
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = setup(matvec_kernel<NormMatvecOp>, max_norm_in, sms, &blocks_norm_);
    if (e == cudaSuccess)
      e = setup(matvec_kernel<NormQkvRopeOp>, max_norm_in, sms, &blocks_qkv_rope_);
    if (e == cudaSuccess)
      e = setup(matvec_kernel<NormGateUpSiluOp>, max_norm_in, sms, &blocks_gate_up_);
    if (e == cudaSuccess) e = setup(matvec_kernel<MatvecAddOp>, max_add_in, sms, &blocks_add_);
    return e;
  }

  /// Launches from now on as programmatic dependent launches (sm_90 only: the caller checks),
  /// or not (the default).
  void set_dependent_launch(bool on) { dependent_ = on; }

  /// Each p.y = p.w · bf16(RMSNorm(x) with weight norm_w) for 1 to 3 projections of `in` inputs.
  cudaError_t norm_matvec(const float* x, const float* norm_w, float eps, int in,
                          std::initializer_list<Proj> projs, cudaStream_t stream) const {
    if (projs.size() < 1 || projs.size() > 3) return cudaErrorInvalidValue;
    NormMatvecOp op{{x, norm_w, eps, in}, {}, {}, {0, 0, 0}, 0, 0};
    int s = 0;
    for (const Proj& p : projs) {
      op.w[s] = p.w, op.y[s] = p.y, op.rows[s] = p.rows;
      op.total += p.rows;
      ++s;
    }
    op.groups = (op.total + op.kRows - 1) / op.kRows;
    return launch(op, in, blocks_norm_, dependent_, stream);
  }

  /// q, k, v (bf16, [hq·d], [hkv·d], [hkv·d]) = wq, wk, wv · bf16(RMSNorm(x)), q and k rotated
  /// (RoPE, rotate-half, base `theta`) at position *pos; d even. With `cache` (batch 1, hkv KV
  /// heads of d, capacity `capacity`), k and v are also appended at position *pos, as
  /// sparq::kv_append with advance_lengths = false would (nothing where *pos is out of range).
  /// With `next` (p 16-byte aligned), its bytes are then prefetched into L2 as evict_last.
  cudaError_t norm_qkv_rope(const float* x, const float* norm_w, float eps, int in, const bf16* wq,
                            const bf16* wk, const bf16* wv, int hq, int hkv, int d, float theta,
                            const int* pos, bf16* q, bf16* k, bf16* v, cudaStream_t stream,
                            const sparq::KVCacheView<bf16>* cache = nullptr, int capacity = 0,
                            L2Range next = {}) const {
    if (hq < 1 || hkv < 1 || d < 2 || d % 2 != 0 || pos == nullptr) return cudaErrorInvalidValue;
    if (cache != nullptr &&
        (capacity < 1 || cache->k == nullptr || cache->kt == nullptr || cache->v == nullptr))
      return cudaErrorInvalidValue;
    if (next.bytes > 0 && (next.p == nullptr || (reinterpret_cast<uintptr_t>(next.p) & 15) != 0))
      return cudaErrorInvalidValue;
    NormQkvRopeOp op{{x, norm_w, eps, in, next}, wq, wk, wv, q, k, v, hq, hkv, d, theta, pos, 0};
    op.groups = (hq + 2 * hkv) * (d / 2);
    if (cache != nullptr) {
      op.append = true;
      op.cache = *cache;
      op.cache_capacity = capacity;
    }
    return launch(op, in, blocks_qkv_rope_, dependent_, stream);
  }

  /// h = bf16(SiLU(w_gate · n) ⊙ (w_up · n)), n = bf16(RMSNorm(x)); `out` rows of `in` inputs.
  cudaError_t norm_gate_up_silu(const float* x, const float* norm_w, float eps, int in,
                                const bf16* w_gate, const bf16* w_up, int out, bf16* h,
                                cudaStream_t stream) const {
    const NormGateUpSiluOp op{{x, norm_w, eps, in}, w_gate, w_up, h, out};
    return launch(op, in, blocks_gate_up_, dependent_, stream);
  }

  /// y[0, out) += w · a, w [out, in], a bf16 [in].
  cudaError_t matvec_add(const bf16* a, int in, const bf16* w, int out, float* y,
                         cudaStream_t stream) const {
    const MatvecAddOp op{a, in, w, y, out, (out + MatvecAddOp::kRows - 1) / MatvecAddOp::kRows};
    return launch(op, in, blocks_add_, dependent_, stream);
  }

 private:
  template <class Kernel>
  static cudaError_t setup(Kernel kernel, int max_in, int sms, int* max_blocks) {
    const size_t bytes = smem_bytes(max_in);
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes));
    int per_sm = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, bytes);
    if (e == cudaSuccess && per_sm == 0) e = cudaErrorInvalidConfiguration;
    *max_blocks = per_sm * sms;
    return e;
  }

  template <class Op>
  static cudaError_t launch(const Op& op, int in, int max_blocks, bool dependent,
                            cudaStream_t stream) {
    if (max_blocks == 0 || in < 1) return cudaErrorInvalidValue;  // init() not called / empty
    if (op.groups == 0) return cudaSuccess;
    const int blocks = std::min((op.groups + kWarps - 1) / kWarps, max_blocks);
    if (dependent)
      return sparq::kernels::launch_ex(matvec_kernel<Op>, dim3(blocks), dim3(kThreads),
                                       smem_bytes(in), stream, 0, true, op);
    matvec_kernel<Op><<<blocks, kThreads, smem_bytes(in), stream>>>(op);
    return cudaGetLastError();
  }

  // Resident at once, device-wide.
  int blocks_norm_ = 0, blocks_qkv_rope_ = 0, blocks_gate_up_ = 0, blocks_add_ = 0;
  bool dependent_ = false;
};

}  // namespace llama::matvec
