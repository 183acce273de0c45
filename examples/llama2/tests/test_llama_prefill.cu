// Prefill attention (prefill_attention.cuh), both versions, against a float64 CPU reference:
// rows cached before the prompt, several chunks with a partial last one, GQA groups of 2 to 4,
// key counts that are not multiples of 8, a single token. Cache rows past the prompt hold NaN
// and outputs start as NaN, so a read past the prompt or a row never written fails. The chunk
// sizing and the GEMMs' layout (emulated in double) are checked on the CPU; the GPU tests are
// skipped without a GPU.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "prefill_attention.cuh"
#include "test_support.hpp"

namespace llama::test {
namespace {

using prefill::bf16;

template <typename T>
class Device {
 public:
  explicit Device(const std::vector<T>& h) : n_(h.size()) {
    EXPECT_EQ(cudaMalloc(&p_, n_ * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit Device(size_t bytes) : n_(bytes / sizeof(T)) {
    EXPECT_EQ(cudaMalloc(&p_, bytes), cudaSuccess);
  }
  ~Device() { cudaFree(p_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() const { return p_; }
  std::vector<T> host() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

struct Case {
  const char* name;
  prefill::Shape shape;
  int capacity;
  int chunk;  // gemm version's queries per chunk
};

std::vector<bf16> random_bf16(size_t n, float a, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-a, a);
  std::vector<bf16> v(n);
  for (bf16& x : v)
    x = __float2bfloat16_rn(u(rng));
  return v;
}

double f(bf16 v) {
  return __bfloat162float(v);
}

void check(const Case& c, bool gemm) {
  SCOPED_TRACE(std::string(c.name) + (gemm ? " (gemm)" : " (simple)"));
  const prefill::Shape& s = c.shape;
  const int hq = s.num_heads, hkv = s.num_kv_heads, d = s.head_dim, g = hq / hkv;
  const int rows = s.past + s.tokens;
  sparq::DecodeProblem p;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.capacity = c.capacity;
  std::mt19937 rng(hq * 1000 + rows);
  const size_t cache_elems = size_t(hkv) * c.capacity * d;
  std::vector<bf16> k = random_bf16(cache_elems, 1.0f, rng),
                    v = random_bf16(cache_elems, 1.0f, rng);
  for (int h = 0; h < hkv; ++h)  // rows past the prompt must never be read
    for (size_t i = (size_t(h) * c.capacity + rows) * d; i < size_t(h + 1) * c.capacity * d; ++i)
      k[i] = v[i] = __float2bfloat16(NAN);
  // Larger queries than keys: peaked attention, not a near-uniform average.
  const std::vector<bf16> q = random_bf16(size_t(s.tokens) * hq * d, 4.0f, rng);
  const Device<bf16> dk(k), dv(v), dq(q);
  const Device<bf16> dout(std::vector<bf16>(q.size(), __float2bfloat16(NAN)));
  const sparq::KVCacheView<bf16> view =
      sparq::make_packed_cache_view<bf16>(p, dk.get(), nullptr, dv.get(), nullptr);
  if (gemm) {
    cublasHandle_t blas;
    ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasSetMathMode(blas, static_cast<cublasMath_t>(
                                          CUBLAS_DEFAULT_MATH |
                                          CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
              CUBLAS_STATUS_SUCCESS);  // as the model sets it
    const Device<char> ws(prefill::workspace_bytes(s, c.chunk));
    prefill::gemm_attention(s, dq.get(), view, dout.get(), ws.get(), c.chunk, blas);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    cublasDestroy(blas);
  } else {
    prefill::simple_attention(s, dq.get(), view, dout.get(), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  const std::vector<bf16> out = dout.host();
  int failures = 0;
  std::vector<double> score(rows), acc(d);
  for (int t = 0; t < s.tokens; ++t) {
    for (int h = 0; h < hq; ++h) {
      const int kh = h / g, n = s.past + t + 1;
      const bf16* qh = &q[(size_t(t) * hq + h) * d];
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < n; ++j) {
        double dot = 0;
        for (int e = 0; e < d; ++e)
          dot += f(qh[e]) * f(k[(size_t(kh) * c.capacity + j) * d + e]);
        score[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, score[j]);
      }
      for (int j = 0; j < n; ++j)
        sum += score[j] = std::exp(score[j] - mx);
      for (int e = 0; e < d; ++e) {
        double o = 0, mag = 0;
        for (int j = 0; j < n; ++j) {
          const double pv = score[j] / sum * f(v[(size_t(kh) * c.capacity + j) * d + e]);
          o += pv;
          mag += std::fabs(pv);
        }
        // bf16 output rounding; the gemm version also rounds each probability to bf16 (each
        // term off by at most 2^-8 of it) and both use __expf.
        const double tol =
            std::ldexp(std::fabs(o), -8) + (gemm ? std::ldexp(mag, -8) : 0.0) + 1e-4 * mag + 1e-6;
        const double got = f(out[(size_t(t) * hq + h) * d + e]);
        if (!(std::fabs(got - o) <= tol) && ++failures <= 5)
          ADD_FAILURE() << "token " << t << " head " << h << " dim " << e << ": got " << got
                        << ", want " << o << " (tolerance " << tol << ")";
      }
    }
  }
}

const Case kCases[] = {
    // name, {heads, kv heads, head_dim, past, tokens}, capacity, chunk
    {"gqa2_past_three_chunks", {4, 2, 64, 37, 45}, 90, 16},
    {"mha_d128_one_chunk", {8, 8, 128, 0, 70}, 70, 70},
    {"gqa3_one_token", {6, 2, 128, 300, 1}, 333, 1},
    {"gqa4_odd_keys", {4, 1, 64, 0, 33}, 40, 5},
};

TEST(GpuPrefillAttention, GemmMatchesReference) {
  LLAMA_REQUIRE_GPU();
  for (const Case& c : kCases)
    check(c, true);
}

TEST(GpuPrefillAttention, SimpleMatchesReference) {
  LLAMA_REQUIRE_GPU();
  for (const Case& c : kCases)
    check(c, false);
}

// C = alpha op(A) B as cublasGemmStridedBatchedEx defines it (column-major), in double.
void emulate(const prefill::BatchedGemm& g, double alpha, const std::vector<double>& a,
             const std::vector<double>& b, std::vector<double>* c) {
  // cuBLAS's argument rules: leading dimensions cover the stored rows.
  ASSERT_GE(g.lda, g.transpose_a ? g.k : g.m);
  ASSERT_GE(g.ldb, g.k);
  ASSERT_GE(g.ldc, g.m);
  for (int bi = 0; bi < g.batch; ++bi) {
    const int64_t a0 = g.a_offset + bi * g.a_stride, b0 = g.b_offset + bi * g.b_stride,
                  c0 = g.c_offset + bi * g.c_stride;
    for (int j = 0; j < g.n; ++j) {
      for (int i = 0; i < g.m; ++i) {
        double sum = 0;
        for (int l = 0; l < g.k; ++l) {
          const int64_t ai = a0 + (g.transpose_a ? l + int64_t(i) * g.lda : i + int64_t(l) * g.lda);
          sum += a.at(ai) * b.at(b0 + l + int64_t(j) * g.ldb);
        }
        c->at(c0 + i + int64_t(j) * g.ldc) = alpha * sum;
      }
    }
  }
}

// The gemm version's layout (every GEMM's arguments, the chunks, the masking), with the GEMMs
// emulated in double on the CPU: runs in CI, where the GPU tests skip.
TEST(PrefillAttention, GemmLayoutMatchesDirectAttention) {
  const Case cases[] = {{"gqa2_past", {4, 2, 8, 5, 7}, 16, 3},
                        {"gqa3", {6, 2, 8, 0, 9}, 12, 4},
                        {"mha_one_token", {4, 4, 8, 3, 1}, 6, 1},
                        {"gqa4_one_chunk", {4, 1, 16, 0, 11}, 11, 11}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const prefill::Shape& s = c.shape;
    const int hq = s.num_heads, hkv = s.num_kv_heads, d = s.head_dim, g = hq / hkv;
    std::mt19937 rng(hq + s.tokens);
    std::uniform_real_distribution<double> u(-1, 1);
    const int64_t k_stride_h = int64_t(c.capacity) * d;
    std::vector<double> k(hkv * k_stride_h), v(k.size()), q(size_t(s.tokens) * hq * d);
    for (std::vector<double>* x : {&k, &v, &q})
      for (double& e : *x)
        e = 2 * u(rng);
    const size_t elems = size_t(hq) * c.chunk * prefill::score_ld(s.past + s.tokens);
    std::vector<double> scores(elems, NAN), probs(elems, NAN), out(q.size(), NAN);
    for (int t0 = 0; t0 < s.tokens; t0 += c.chunk) {
      const prefill::Chunk ch = prefill::make_chunk(s, t0, c.chunk);
      for (int i = 0; i < g; ++i)
        emulate(prefill::scores_gemm(s, k_stride_h, ch, i), 1 / std::sqrt(double(d)), k, q,
                &scores);
      for (int h = 0; h < hq; ++h) {  // the softmax kernel's rows
        for (int t = 0; t < ch.queries; ++t) {
          const int64_t row = (int64_t(h) * ch.queries + t) * ch.ld;
          const int valid = std::min(ch.keys, s.past + ch.first_token + t + 1);
          double mx = -INFINITY, sum = 0;
          for (int j = 0; j < valid; ++j)
            mx = std::max(mx, scores.at(row + j));
          for (int j = 0; j < valid; ++j)
            sum += std::exp(scores.at(row + j) - mx);
          for (int j = 0; j < ch.keys; ++j)
            probs.at(row + j) = j < valid ? std::exp(scores.at(row + j) - mx) / sum : 0.0;
        }
      }
      for (int i = 0; i < g; ++i)
        emulate(prefill::output_gemm(s, k_stride_h, ch, i), 1, v, probs, &out);
    }
    double worst = 0;
    for (int t = 0; t < s.tokens; ++t) {
      for (int h = 0; h < hq; ++h) {
        const int kh = h / g, n = s.past + t + 1;
        std::vector<double> p(n);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < n; ++j) {
          double dot = 0;
          for (int e = 0; e < d; ++e)
            dot += q[(size_t(t) * hq + h) * d + e] * k[kh * k_stride_h + int64_t(j) * d + e];
          mx = std::max(mx, p[j] = dot / std::sqrt(double(d)));
        }
        for (int j = 0; j < n; ++j)
          sum += p[j] = std::exp(p[j] - mx);
        for (int e = 0; e < d; ++e) {
          double o = 0;
          for (int j = 0; j < n; ++j)
            o += p[j] / sum * v[kh * k_stride_h + int64_t(j) * d + e];
          const double got = out[(size_t(t) * hq + h) * d + e];
          worst = std::isnan(got) ? INFINITY : std::max(worst, std::fabs(got - o));
        }
      }
    }
    EXPECT_LT(worst, 1e-12);
  }
}

TEST(PrefillAttention, ChunksFitTheBudget) {  // host arithmetic only: runs on the CPU too
  prefill::Shape s{32, 32, 128, 0, 32768};
  const size_t budget = size_t(1) << 30;
  const int chunk = prefill::chunk_queries(s, budget);
  EXPECT_GT(chunk, 100);  // about 170 queries of 32 heads x 32k keys x 6 bytes
  EXPECT_LE(prefill::workspace_bytes(s, chunk), budget + 256);
  EXPECT_GT(prefill::workspace_bytes(s, chunk + 1), budget);
  s.tokens = 20;  // a short prompt is one chunk
  EXPECT_EQ(prefill::chunk_queries(s, budget), 20);
  s.tokens = 1 << 30;  // never fewer than one query
  EXPECT_EQ(prefill::chunk_queries(s, 1024), 1);
  EXPECT_EQ(prefill::score_ld(33), 40);
  EXPECT_EQ(prefill::score_ld(40), 40);
}

}  // namespace
}  // namespace llama::test
