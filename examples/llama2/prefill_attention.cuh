// Causal attention for prefill: a prompt of n tokens, whose K/V rows are already appended to
// the cache after `past` earlier rows, attends to rows [0, past + t] for its token t.
//
// Two versions, side by side:
//  - gemm (the default): per chunk of queries, S = Q K^T and O = P V as cuBLAS strided-batched
//    GEMMs (bf16 in, float accumulation on tensor cores) with a masked softmax kernel between
//    them that turns the float scores into bf16 probabilities. Work and memory traffic grow
//    with n^2 like any exact attention, but at tensor-core and bandwidth rates: a long document
//    is read in seconds.
//  - simple: one block per (token, head) walking every row with an online softmax. Easy to
//    check, but each warp waits a round trip per row; kept as the reference the GPU test
//    compares with and as a fallback (--prefill-attention simple).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <sparq/device/reduce.cuh>
#include <sparq/device/softmax_state.cuh>
#include <sparq/problem.hpp>

namespace llama::prefill {

using bf16 = __nv_bfloat16;

/// One prefill's attention problem (batch 1). q: [tokens, num_heads, head_dim] bf16 after RoPE;
/// out: the same shape.
struct Shape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int past = 0;    ///< rows cached before the prompt
  int tokens = 0;  ///< prompt tokens (their rows follow `past` in the cache)
};

// ---------------------------------------------------------------------------------------------
// simple

constexpr int kSimpleWarps = 4;

// One block of 4 warps per (token, query head); each warp runs an online softmax over every
// 4th row, then the warps' partial states merge. head_dim a multiple of 32, at most 256. (A
// template, as every kernel in a header, so that two translation units can include it.)
template <typename T>
__global__ void simple_attention_kernel(const T* q, sparq::KVCacheView<T> cache, int past, int hq,
                                        int group, int d, float scale, T* out) {
  const int t = blockIdx.x, h = blockIdx.y, hk = h / group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, per_lane = d / 32;
  const int rows = past + t + 1;
  const T* qh = q + (static_cast<int64_t>(t) * hq + h) * d;
  float qv[8], acc[8];
  for (int e = 0; e < per_lane; ++e)
    qv[e] = __bfloat162float(qh[lane + 32 * e]), acc[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int s = warp; s < rows; s += kSimpleWarps) {
    const T* kr = cache.k_row(0, hk, s);
    float dot = 0.0f;
    for (int e = 0; e < per_lane; ++e)
      dot += qv[e] * __bfloat162float(kr[lane + 32 * e]);
    for (int o = 16; o > 0; o >>= 1)
      dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float sc = dot * scale, m_new = fmaxf(m, sc);
    const float corr = __expf(m - m_new), p = __expf(sc - m_new);
    const T* vr = cache.v_row(0, hk, s);
    for (int e = 0; e < per_lane; ++e)
      acc[e] = acc[e] * corr + p * __bfloat162float(vr[lane + 32 * e]);
    l = l * corr + p;
    m = m_new;
  }
  __shared__ float sm[kSimpleWarps], sl[kSimpleWarps], sacc[kSimpleWarps][256];
  if (lane == 0) sm[warp] = m, sl[warp] = l;
  for (int e = 0; e < per_lane; ++e)
    sacc[warp][lane + 32 * e] = acc[e];
  __syncthreads();
  float mx = -INFINITY;
  for (int w = 0; w < kSimpleWarps; ++w)
    mx = fmaxf(mx, sm[w]);
  float den = 0.0f;
  for (int w = 0; w < kSimpleWarps; ++w)
    if (sl[w] > 0.0f) den += sl[w] * __expf(sm[w] - mx);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float num = 0.0f;
    for (int w = 0; w < kSimpleWarps; ++w)
      if (sl[w] > 0.0f) num += sacc[w][i] * __expf(sm[w] - mx);
    out[(static_cast<int64_t>(t) * hq + h) * d + i] = __float2bfloat16_rn(num / den);
  }
}

inline void simple_attention(const Shape& s, const bf16* q, const sparq::KVCacheView<bf16>& cache,
                             bf16* out, cudaStream_t stream) {
  if (s.tokens == 0) return;
  simple_attention_kernel<bf16><<<dim3(s.tokens, s.num_heads), 32 * kSimpleWarps, 0, stream>>>(
      q, cache, s.past, s.num_heads, s.num_heads / s.num_kv_heads, s.head_dim,
      1.0f / std::sqrt(static_cast<float>(s.head_dim)), out);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("prefill attention (simple): ") + cudaGetErrorString(e));
}

// ---------------------------------------------------------------------------------------------
// gemm

constexpr int kSoftmaxThreads = 256;

/// Leading dimension of a chunk's score rows: the keys rounded up to 8, so that every bf16 row
/// of probabilities starts 16-byte aligned (cuBLAS's fast paths).
inline int64_t score_ld(int keys) {
  return (static_cast<int64_t>(keys) + 7) / 8 * 8;
}

/// Queries per chunk so that the chunk's scores (float) and probabilities (bf16) of every head
/// fit in `budget_bytes` at the longest key count; at least 1, at most the prompt.
inline int chunk_queries(const Shape& s, size_t budget_bytes) {
  const double per_query = 6.0 * s.num_heads * score_ld(s.past + s.tokens);
  const double fit = std::floor(static_cast<double>(budget_bytes) / per_query);
  return static_cast<int>(std::max(1.0, std::min(fit, static_cast<double>(s.tokens))));
}

/// Workspace bytes for chunks of `chunk` queries (scores, then probabilities, each 256-aligned).
inline size_t workspace_bytes(const Shape& s, int chunk) {
  const size_t n = static_cast<size_t>(s.num_heads) * chunk * score_ld(s.past + s.tokens);
  return (n * 4 + 255) / 256 * 256 + n * 2;
}

// Row (head, t) of a chunk: the scores of query position first_query + t over `keys` keys;
// keys after the query's own position are masked. Writes normalised probabilities as bf16,
// zeros where masked (the P V product runs over all `keys`). Grid (chunk queries, heads).
template <typename T>
__global__ void __launch_bounds__(kSoftmaxThreads)
    causal_softmax_kernel(const float* scores, T* probs, int64_t ld, int keys, int first_query) {
  __shared__ float scratch[32];
  const int64_t row = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  const float* sr = scores + row * ld;
  T* pr = probs + row * ld;
  const int valid = min(keys, first_query + static_cast<int>(blockIdx.x) + 1);
  // One read for the maximum and the sum: each thread's softmax stats, merged exactly.
  sparq::device::SoftmaxStats st = sparq::device::empty_stats();
  for (int i = threadIdx.x; i < valid; i += kSoftmaxThreads)
    st = sparq::device::merge_stats(st, {sr[i], 1.f});
  float mx[1] = {st.m};
  sparq::device::block_max<1, kSoftmaxThreads>(mx, scratch);
  float sum[1] = {st.m == -INFINITY ? 0.f : st.l * __expf(st.m - mx[0])};
  sparq::device::block_sum<1, kSoftmaxThreads>(sum, scratch);
  const float inv = 1.f / sum[0];
  for (int i = threadIdx.x; i < keys; i += kSoftmaxThreads)
    pr[i] = __float2bfloat16_rn(i < valid ? __expf(sr[i] - mx[0]) * inv : 0.f);
}

/// One chunk of queries: tokens [first_token, first_token + queries) of the prompt, whose
/// scores span keys [0, keys), row stride ld, `head` elements per query head.
struct Chunk {
  int first_token = 0, queries = 0, keys = 0;
  int64_t ld = 0, head = 0;
};

inline Chunk make_chunk(const Shape& s, int first_token, int chunk) {
  Chunk c;
  c.first_token = first_token;
  c.queries = std::min(chunk, s.tokens - first_token);
  c.keys = s.past + first_token + c.queries;  // up to the chunk's last query
  c.ld = score_ld(c.keys);
  c.head = static_cast<int64_t>(c.queries) * c.ld;
  return c;
}

/// The arguments of one cublasGemmStridedBatchedEx call (column-major), with element offsets
/// from the base pointers. Host-only, so that a CPU test can check the layout by emulating it.
struct BatchedGemm {
  bool transpose_a = false;
  int m = 0, n = 0, k = 0;
  int64_t a_offset = 0, a_stride = 0;
  int lda = 0;
  int64_t b_offset = 0, b_stride = 0;
  int ldb = 0;
  int64_t c_offset = 0, c_stride = 0;
  int ldc = 0;
  int batch = 0;
};

// Column-major views: the scores of query head h are a (keys x queries) matrix at h * head; a
// query row is a (d x 1) column with stride hq * d; K and V of a KV head are (d x keys) with
// stride d (row-major rows). The heads of a group are the i-th of each KV head's g, so each
// product is one batched call (over KV heads) per i.

/// scores[h] = K[h / g]^T q[h] (scaled by the caller's alpha): A = K (transposed), B = q, C =
/// scores. Bases: the cache's K, q, the scores.
inline BatchedGemm scores_gemm(const Shape& s, int64_t k_stride_h, const Chunk& c, int i) {
  const int hq = s.num_heads, g = s.num_heads / s.num_kv_heads, d = s.head_dim;
  BatchedGemm b;
  b.transpose_a = true;
  b.m = c.keys, b.n = c.queries, b.k = d;
  b.a_offset = 0, b.lda = d, b.a_stride = k_stride_h;
  b.b_offset = (static_cast<int64_t>(c.first_token) * hq + i) * d;
  b.ldb = hq * d, b.b_stride = static_cast<int64_t>(g) * d;
  b.c_offset = i * c.head, b.ldc = static_cast<int>(c.ld), b.c_stride = g * c.head;
  b.batch = s.num_kv_heads;
  return b;
}

/// out[h] = V[h / g] probs[h]: A = V, B = probs, C = out. Bases: the cache's V, the
/// probabilities, the output.
inline BatchedGemm output_gemm(const Shape& s, int64_t v_stride_h, const Chunk& c, int i) {
  const int hq = s.num_heads, g = s.num_heads / s.num_kv_heads, d = s.head_dim;
  BatchedGemm b;
  b.transpose_a = false;
  b.m = d, b.n = c.queries, b.k = c.keys;
  b.a_offset = 0, b.lda = d, b.a_stride = v_stride_h;
  b.b_offset = i * c.head, b.ldb = static_cast<int>(c.ld), b.b_stride = g * c.head;
  b.c_offset = (static_cast<int64_t>(c.first_token) * hq + i) * d;
  b.ldc = hq * d, b.c_stride = static_cast<int64_t>(g) * d;
  b.batch = s.num_kv_heads;
  return b;
}

inline void blas_check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("prefill attention (gemm): ") + what + ": " +
                             cublasGetStatusString(st));
}

/// C = alpha op(A) B in bf16 x bf16 with float accumulation; C is float or bf16.
inline void run_gemm(cublasHandle_t blas, const BatchedGemm& b, float alpha, const bf16* a,
                     const bf16* bm, void* c, cudaDataType_t c_type, const char* what) {
  const float beta = 0.f;
  const size_t c_size = c_type == CUDA_R_32F ? 4 : 2;
  blas_check(cublasGemmStridedBatchedEx(
                 blas, b.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, b.m, b.n, b.k,
                 &alpha, a + b.a_offset, CUDA_R_16BF, b.lda, b.a_stride, bm + b.b_offset,
                 CUDA_R_16BF, b.ldb, b.b_stride, &beta, static_cast<char*>(c) + b.c_offset * c_size,
                 c_type, b.ldc, b.c_stride, b.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             what);
}

/// The gemm version on `blas`'s stream. `workspace` holds workspace_bytes(s, chunk) bytes. The
/// cache view must be packed row-major (k/v row stride head_dim), as the model's is.
inline void gemm_attention(const Shape& s, const bf16* q, const sparq::KVCacheView<bf16>& cache,
                           bf16* out, void* workspace, int chunk, cublasHandle_t blas) {
  if (s.tokens == 0) return;
  if (chunk < 1 || cache.k_stride_s != s.head_dim || cache.v_stride_s != s.head_dim)
    throw std::invalid_argument("prefill attention (gemm): bad chunk or cache strides");
  cudaStream_t stream = nullptr;
  blas_check(cublasGetStream(blas, &stream), "cublasGetStream");
  const int g = s.num_heads / s.num_kv_heads;
  const size_t elems = static_cast<size_t>(s.num_heads) * chunk * score_ld(s.past + s.tokens);
  float* scores = static_cast<float*>(workspace);
  bf16* probs =
      reinterpret_cast<bf16*>(static_cast<char*>(workspace) + (elems * 4 + 255) / 256 * 256);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  for (int t0 = 0; t0 < s.tokens; t0 += chunk) {
    const Chunk c = make_chunk(s, t0, chunk);
    for (int i = 0; i < g; ++i)
      run_gemm(blas, scores_gemm(s, cache.k_stride_h, c, i), scale, cache.k_row(0, 0, 0), q, scores,
               CUDA_R_32F, "Q K^T");
    causal_softmax_kernel<bf16><<<dim3(c.queries, s.num_heads), kSoftmaxThreads, 0, stream>>>(
        scores, probs, c.ld, c.keys, s.past + c.first_token);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      throw std::runtime_error(std::string("prefill attention (softmax): ") +
                               cudaGetErrorString(e));
    for (int i = 0; i < g; ++i)
      run_gemm(blas, output_gemm(s, cache.v_stride_h, c, i), 1.f, cache.v_row(0, 0, 0), probs, out,
               CUDA_R_16BF, "P V");
  }
}

}  // namespace llama::prefill
