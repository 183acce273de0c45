// The decode matvec kernels (matvec.cuh) against a float64 CPU reference, at sizes the tiny
// checkpoints do not reach: an odd row count (a warp's second row past the end), a pair of rows
// that spans two matrices, in % 8 != 0 and misaligned pointers (the scalar paths), a partial
// last unrolled iteration, more rows than the resident warps (the grid-stride loop) and an input
// over 48 KB of shared memory. Outputs start as NaN, so a row never written fails. The GPU tests
// are skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "matvec.cuh"
#include "sparq/cuda.cuh"
#include "test_support.hpp"

namespace llama::test {
namespace {

using matvec::bf16;

/// A device copy of a host vector, `shift` elements into its allocation (shift 1 misaligns it).
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& h, int shift = 0) : n_(h.size()), shift_(shift) {
    EXPECT_EQ(cudaMalloc(&base_, (n_ + shift) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(get(), h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceVector() { cudaFree(base_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return base_ + shift_; }
  std::vector<T> host() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), get(), n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  T* base_ = nullptr;
  size_t n_;
  int shift_;
};

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v)
    x = d(rng);
  return v;
}
std::vector<bf16> uniform_bf16(size_t n, float a, std::mt19937& rng) {
  std::vector<bf16> v;
  v.reserve(n);
  for (float x : uniform(n, -a, a, rng))
    v.push_back(__float2bfloat16_rn(x));
  return v;
}
double f(bf16 v) {
  return __bfloat162float(v);
}

/// bf16(RMSNorm(x)), as the kernels round it.
std::vector<double> normalized(const std::vector<float>& x, const std::vector<float>& w,
                               float eps) {
  double ss = 0;
  for (float v : x)
    ss += double(v) * v;
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / x.size() + eps));
  std::vector<double> n(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    n[i] = f(__float2bfloat16_rn(w[i] * (x[i] * inv)));
  return n;
}

struct Dot {
  double sum = 0, abs = 0, max = 0;  // Σ w·x, Σ |w·x|, max |w·x|
};
Dot dot(const bf16* w, const std::vector<double>& x) {
  Dot d;
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = f(w[i]) * x[i];
    d.sum += t, d.abs += std::fabs(t), d.max = std::max(d.max, std::fabs(t));
  }
  return d;
}

// A float32 sum is within 1e-5 of Σ|terms| here. With a normalized input, the GPU's float sum of
// squares and rsqrtf may also round a few inputs to the other bf16 neighbour (each moves one term
// by at most 2^-8 of it): allow four.
double tol(const Dot& d, bool normalized_input) {
  return 1e-5 * d.abs + (normalized_input ? 4 * std::ldexp(d.max, -8) : 0.0);
}

/// Counts a mismatch (NaN included), reporting the first few.
bool mismatch(double got, double want, double tol, const std::string& where, int* failures) {
  if (std::fabs(got - want) <= tol) return false;
  if (++*failures <= 5)
    ADD_FAILURE() << where << ": got " << got << ", want " << want << " (tolerance " << tol << ")";
  return true;
}

// y_m = W_m · bf16(RMSNorm(x)) for one matrix or three (q, k, v style), every pointer shifted by
// `shift` elements.
void check_norm_matvec(int in, const std::vector<int>& rows, int shift) {
  SCOPED_TRACE("in " + std::to_string(in) + ", " + std::to_string(rows.size()) +
               " matrices, shift " + std::to_string(shift));
  std::mt19937 rng(in + 7 * rows[0]);
  const std::vector<float> x = uniform(in, -2, 2, rng), nw = uniform(in, 0.5f, 1.5f, rng);
  const float eps = 1e-5f;
  std::vector<std::vector<bf16>> w;
  std::vector<std::unique_ptr<DeviceVector<bf16>>> dw;
  std::vector<std::unique_ptr<DeviceVector<float>>> dy;
  for (int r : rows) {
    w.push_back(uniform_bf16(size_t(r) * in, 1.0f / std::sqrt(float(in)), rng));
    dw.push_back(std::make_unique<DeviceVector<bf16>>(w.back(), shift));
    dy.push_back(std::make_unique<DeviceVector<float>>(std::vector<float>(r, NAN)));
  }
  const DeviceVector<float> dx(x, shift), dn(nw, shift);
  matvec::Matvec mv;
  ASSERT_EQ(mv.init(in, in), cudaSuccess);
  using P = matvec::Matvec::Proj;
  const cudaError_t e = rows.size() == 1
                            ? mv.norm_matvec(dx.get(), dn.get(), eps, in,
                                             {P{dw[0]->get(), dy[0]->get(), rows[0]}}, nullptr)
                            : mv.norm_matvec(dx.get(), dn.get(), eps, in,
                                             {P{dw[0]->get(), dy[0]->get(), rows[0]},
                                              P{dw[1]->get(), dy[1]->get(), rows[1]},
                                              P{dw[2]->get(), dy[2]->get(), rows[2]}},
                                             nullptr);
  ASSERT_EQ(e, cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<double> n = normalized(x, nw, eps);
  int failures = 0;
  for (size_t m = 0; m < rows.size(); ++m) {
    const std::vector<float> y = dy[m]->host();
    for (int i = 0; i < rows[m]; ++i) {
      const Dot d = dot(&w[m][size_t(i) * in], n);
      mismatch(y[i], d.sum, tol(d, true),
               "matrix " + std::to_string(m) + " row " + std::to_string(i), &failures);
    }
  }
}

TEST(GpuMatvec, NormMatvec) {
  LLAMA_REQUIRE_GPU();
  check_norm_matvec(4096, {37, 5, 6}, 0);  // full unrolled iterations; rows 36, 37 span q and k
  check_norm_matvec(1000, {37, 5, 6}, 0);  // 125 chunks: a partial last iteration
  check_norm_matvec(1003, {37, 5, 6}, 0);  // in % 8 != 0: scalar rows, scalar staging
  check_norm_matvec(1000, {37, 5, 6}, 1);  // misaligned weights, x and norm weight
  check_norm_matvec(136, {20001}, 0);      // lm_head-like: more rows than resident warps
}

TEST(GpuMatvec, NormGateUpSilu) {
  LLAMA_REQUIRE_GPU();
  for (const int in : {1000, 1003}) {
    SCOPED_TRACE("in " + std::to_string(in));
    const int out = 333;
    std::mt19937 rng(in);
    const std::vector<float> x = uniform(in, -2, 2, rng), nw = uniform(in, 0.5f, 1.5f, rng);
    const float eps = 1e-6f, a = 2.0f / std::sqrt(float(in));
    const std::vector<bf16> wg = uniform_bf16(size_t(out) * in, a, rng);
    const std::vector<bf16> wu = uniform_bf16(size_t(out) * in, a, rng);
    const DeviceVector<float> dx(x), dn(nw);
    const DeviceVector<bf16> dg(wg), du(wu), dh(std::vector<bf16>(out, __float2bfloat16(NAN)));
    matvec::Matvec mv;
    ASSERT_EQ(mv.init(in, in), cudaSuccess);
    ASSERT_EQ(mv.norm_gate_up_silu(dx.get(), dn.get(), eps, in, dg.get(), du.get(), out, dh.get(),
                                   nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<double> n = normalized(x, nw, eps);
    const std::vector<bf16> h = dh.host();
    int failures = 0;
    for (int i = 0; i < out; ++i) {
      const Dot g = dot(&wg[size_t(i) * in], n), u = dot(&wu[size_t(i) * in], n);
      const double silu = g.sum / (1 + std::exp(-g.sum)), want = silu * u.sum;
      // bf16 output rounding, plus g's and u's errors through silu(g)·u (|silu'| < 1.1)
      const double t = std::ldexp(std::fabs(want), -8) + 1.1 * tol(g, true) * std::fabs(u.sum) +
                       std::fabs(silu) * tol(u, true) + 1e-6;
      mismatch(f(h[i]), want, t, "row " + std::to_string(i), &failures);
    }
  }
}

// y += W · a with bf16 a; the weights and a shifted by `shift` elements.
void check_matvec_add(int in, int out, int shift) {
  SCOPED_TRACE("in " + std::to_string(in) + ", out " + std::to_string(out) + ", shift " +
               std::to_string(shift));
  std::mt19937 rng(in + out);
  const std::vector<bf16> w = uniform_bf16(size_t(out) * in, 1.0f / std::sqrt(float(in)), rng);
  const std::vector<bf16> a = uniform_bf16(in, 2.0f, rng);
  const std::vector<float> y0 = uniform(out, -1, 1, rng);
  const DeviceVector<bf16> dw(w, shift), da(a, shift);
  const DeviceVector<float> dy(y0);
  matvec::Matvec mv;
  ASSERT_EQ(mv.init(128, in), cudaSuccess);
  ASSERT_EQ(mv.matvec_add(da.get(), in, dw.get(), out, dy.get(), nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<double> ad(in);
  for (int i = 0; i < in; ++i)
    ad[i] = f(a[i]);
  const std::vector<float> y = dy.host();
  int failures = 0;
  for (int i = 0; i < out; ++i) {
    const Dot d = dot(&w[size_t(i) * in], ad);
    mismatch(y[i], y0[i] + d.sum, tol(d, false) + 1e-6 * std::fabs(y0[i]),
             "row " + std::to_string(i), &failures);
  }
}

TEST(GpuMatvec, MatvecAdd) {
  LLAMA_REQUIRE_GPU();
  check_matvec_add(4096, 4097, 0);  // odd rows: the last warp's second row is past the end
  check_matvec_add(13000, 77, 0);   // 52 KB of staged input: above the default 48 KB
  check_matvec_add(1000, 50, 1);    // misaligned weights and input: the scalar paths
  check_matvec_add(1001, 50, 0);    // in % 8 != 0
}

// q, k, v = W · bf16(RMSNorm(x)) with RoPE on q and k at a position read from the device, as
// bf16: against a float64 reference rotated in float64. The kernel's angle is a float product
// (at position 4095 half its last bit is 1.2e-4 rad) of a float powf (a few 1e-7 of the angle,
// up to 8e-4 rad): 2e-3 of the pair's magnitude covers that; a wrong row, pair or sign is off
// by the magnitude itself. With `prefetch`, the launch then also prefetches the q weights into
// L2 (a hint: the same outputs), all but their last 8 bytes (a length not a multiple of 16).
void check_norm_qkv_rope(int in, int hq, int hkv, int d, int pos, bool prefetch = false) {
  SCOPED_TRACE("in " + std::to_string(in) + ", heads " + std::to_string(hq) + "/" +
               std::to_string(hkv) + ", d " + std::to_string(d) + ", position " +
               std::to_string(pos) + (prefetch ? ", L2 prefetch" : ""));
  std::mt19937 rng(in + hq + d + pos);
  const std::vector<float> x = uniform(in, -2, 2, rng), nw = uniform(in, 0.5f, 1.5f, rng);
  const float eps = 1e-5f, theta = 10000.0f;
  const int rows[3] = {hq * d, hkv * d, hkv * d};
  std::vector<std::vector<bf16>> w;
  std::vector<std::unique_ptr<DeviceVector<bf16>>> dw, dy;
  for (int r : rows) {
    w.push_back(uniform_bf16(size_t(r) * in, 1.0f / std::sqrt(float(in)), rng));
    dw.push_back(std::make_unique<DeviceVector<bf16>>(w.back()));
    dy.push_back(std::make_unique<DeviceVector<bf16>>(std::vector<bf16>(r, __float2bfloat16(NAN))));
  }
  const DeviceVector<float> dx(x), dn(nw);
  const DeviceVector<int> dpos(std::vector<int>{pos});
  matvec::Matvec mv;
  ASSERT_EQ(mv.init(in, in), cudaSuccess);
  const matvec::L2Range next =
      prefetch ? matvec::L2Range{dw[0]->get(), size_t(rows[0]) * in * sizeof(bf16) - 8}
               : matvec::L2Range{};
  ASSERT_EQ(mv.norm_qkv_rope(dx.get(), dn.get(), eps, in, dw[0]->get(), dw[1]->get(), dw[2]->get(),
                             hq, hkv, d, theta, dpos.get(), dy[0]->get(), dy[1]->get(),
                             dy[2]->get(), nullptr, nullptr, 0, next),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<double> n = normalized(x, nw, eps);
  int failures = 0;
  const int half = d / 2;
  for (int m = 0; m < 3; ++m) {
    const std::vector<bf16> y = dy[m]->host();
    for (int row = 0; row < rows[m]; ++row) {
      const int head = row / d, i = row % d % half;
      const bool low = row % d < half;
      const Dot a = dot(&w[m][size_t(head * d + i) * in], n);
      const Dot b = dot(&w[m][size_t(head * d + i + half) * in], n);
      double want = low ? a.sum : b.sum, err = low ? tol(a, true) : tol(b, true);
      if (m < 2) {  // rotate-half at `pos`
        const double angle = pos * std::pow(double(theta), -2.0 * i / d);
        const double c = std::cos(angle), s = std::sin(angle);
        want = low ? a.sum * c - b.sum * s : b.sum * c + a.sum * s;
        err = tol(a, true) + tol(b, true) + 2e-3 * (std::fabs(a.sum) + std::fabs(b.sum));
      }
      err += std::ldexp(std::fabs(want), -8);  // the bf16 output
      mismatch(f(y[row]), want, err, "matrix " + std::to_string(m) + " row " + std::to_string(row),
               &failures);
    }
  }
}

/// One-head q/k/v buffers of 64 inputs (zero weights) that a launch could use: for the
/// refusals, which must return before launching anything.
struct SmallQkv {
  mutable matvec::Matvec mv;
  const DeviceVector<float> x{std::vector<float>(64, 1.0f)};
  const DeviceVector<bf16> w{std::vector<bf16>(64 * 64, __float2bfloat16(0.0f))};
  const DeviceVector<bf16> y{std::vector<bf16>(64, __float2bfloat16(0.0f))};
  const DeviceVector<int> pos{std::vector<int>{0}};
  cudaError_t launch(int d, const sparq::KVCacheView<bf16>* cache = nullptr,
                     matvec::L2Range next = {}) const {
    return mv.norm_qkv_rope(x.get(), x.get(), 1e-5f, 64, w.get(), w.get(), w.get(), 1, 1, d, 1e4f,
                            pos.get(), y.get(), y.get(), y.get(), nullptr, cache, 1, next);
  }
};

TEST(GpuMatvec, NormQkvRope) {
  LLAMA_REQUIRE_GPU();
  check_norm_qkv_rope(4096, 4, 2, 128, 4095);        // GQA, 7B-like rows
  check_norm_qkv_rope(1000, 3, 3, 64, 0);            // position 0: q and k only rounded
  check_norm_qkv_rope(1003, 2, 1, 64, 77);           // in % 8 != 0: scalar rows
  check_norm_qkv_rope(4096, 4, 2, 128, 4095, true);  // and the q weights into L2 afterwards
  check_norm_qkv_rope(1000, 3, 3, 64, 0, true);
  // An odd d, and a prefetch range without a 16-byte aligned start, are refused before anything
  // is launched (the buffers would hold a launch).
  const SmallQkv s;
  ASSERT_EQ(s.mv.init(64, 64), cudaSuccess);
  EXPECT_EQ(s.launch(63), cudaErrorInvalidValue);
  EXPECT_EQ(s.launch(64, nullptr, {nullptr, 128}), cudaErrorInvalidValue);
  EXPECT_EQ(s.launch(64, nullptr, {s.w.get() + 1, 128}), cudaErrorInvalidValue);
  EXPECT_EQ(s.launch(64, nullptr, {s.w.get(), 64 * 64 * sizeof(bf16)}), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// With a cache, the q/k/v epilogue also appends k and v: the cache (K, K transposed, V and the
// running V sum) ends bit for bit as sparq::kv_append of the kernel's own k and v outputs leaves
// it, and a position past the capacity leaves it untouched.
void check_norm_qkv_rope_append(int hq, int hkv, int d, int capacity, int pos) {
  SCOPED_TRACE("heads " + std::to_string(hq) + "/" + std::to_string(hkv) + ", d " +
               std::to_string(d) + ", position " + std::to_string(pos) + " of " +
               std::to_string(capacity));
  const int in = 512;
  std::mt19937 rng(hq * 131 + d + pos);
  const std::vector<float> x = uniform(in, -2, 2, rng), nw = uniform(in, 0.5f, 1.5f, rng);
  const DeviceVector<float> dx(x), dn(nw);
  const DeviceVector<bf16> wq(uniform_bf16(size_t(hq) * d * in, 0.05f, rng)),
      wk(uniform_bf16(size_t(hkv) * d * in, 0.05f, rng)),
      wv(uniform_bf16(size_t(hkv) * d * in, 0.05f, rng));
  const DeviceVector<bf16> q(std::vector<bf16>(size_t(hq) * d)),
      k(std::vector<bf16>(size_t(hkv) * d)), v(std::vector<bf16>(size_t(hkv) * d));
  const DeviceVector<int> dpos(std::vector<int>{pos});
  sparq::DecodeProblem p;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.capacity = capacity;
  const sparq::KVCacheSizes sizes = sparq::packed_cache_sizes(p);
  // Two caches with the same random contents: one the epilogue appends to, one kv_append does.
  const std::vector<bf16> kc = uniform_bf16(sizes.k, 1.0f, rng),
                          ktc = uniform_bf16(sizes.kt, 1.0f, rng),
                          vc = uniform_bf16(sizes.v, 1.0f, rng);
  const std::vector<float> sc = uniform(sizes.vsum, -3, 3, rng);
  DeviceVector<bf16> k1(kc), kt1(ktc), v1(vc), k2(kc), kt2(ktc), v2(vc);
  DeviceVector<float> s1(sc), s2(sc);
  const auto fused =
      sparq::make_packed_cache_view<bf16>(p, k1.get(), kt1.get(), v1.get(), s1.get());
  const auto plain =
      sparq::make_packed_cache_view<bf16>(p, k2.get(), kt2.get(), v2.get(), s2.get());
  matvec::Matvec mv;
  ASSERT_EQ(mv.init(in, in), cudaSuccess);
  ASSERT_EQ(
      mv.norm_qkv_rope(dx.get(), dn.get(), 1e-5f, in, wq.get(), wk.get(), wv.get(), hq, hkv, d,
                       1e4f, dpos.get(), q.get(), k.get(), v.get(), nullptr, &fused, capacity),
      cudaSuccess);
  sparq::KVAppendParams<bf16> a;
  a.problem = p;
  a.cache = plain;
  a.lengths = dpos.get();
  a.new_k = k.get();
  a.new_v = v.get();
  a.advance_lengths = false;
  ASSERT_EQ(sparq::kv_append(a, nullptr), sparq::Status::kSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto same = [](const auto& x, const auto& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0;
  };
  EXPECT_TRUE(same(k1.host(), k2.host())) << "K";
  EXPECT_TRUE(same(kt1.host(), kt2.host())) << "K transposed";
  EXPECT_TRUE(same(v1.host(), v2.host())) << "V";
  EXPECT_TRUE(same(s1.host(), s2.host())) << "V sum";
  const bool appended = pos < capacity;
  EXPECT_EQ(!same(k1.host(), kc), appended) << "the cache changed only where in range";
  EXPECT_EQ(!same(s1.host(), sc), appended);
}

TEST(GpuMatvec, NormQkvRopeAppendsLikeKvAppend) {
  LLAMA_REQUIRE_GPU();
  check_norm_qkv_rope_append(4, 2, 128, 300, 299);  // GQA, the last row
  check_norm_qkv_rope_append(3, 3, 64, 100, 0);     // position 0
  check_norm_qkv_rope_append(2, 1, 64, 50, 50);     // full: nothing appended
  // A cache without K transposed is refused before anything is launched.
  const SmallQkv s;
  ASSERT_EQ(s.mv.init(64, 64), cudaSuccess);
  sparq::KVCacheView<bf16> no_kt{};
  no_kt.k = no_kt.v = s.y.get();
  EXPECT_EQ(s.launch(64, &no_kt), cudaErrorInvalidValue);
}

// The rotation-pair groups cover every q, k and v row exactly once, each pair in one head.
TEST(Matvec, RopeGroupsCoverEveryRowOnce) {  // host arithmetic: runs on the CPU too
  for (const auto& [hq, hkv, d] : {std::tuple{32, 32, 128}, {32, 8, 128}, {3, 1, 64}, {1, 1, 2}}) {
    const int half = d / 2, groups = (hq + 2 * hkv) * half;
    std::vector<std::vector<int>> seen = {std::vector<int>(hq * d), std::vector<int>(hkv * d),
                                          std::vector<int>(hkv * d)};
    for (int g = 0; g < groups; ++g) {
      const matvec::RopeGroup r = matvec::rope_group(g, hq, hkv, half);
      ASSERT_GE(r.matrix, 0);
      ASSERT_LE(r.matrix, 2);
      ASSERT_LT(r.head, r.matrix == 0 ? hq : hkv);
      ASSERT_GE(r.i, 0);
      ASSERT_LT(r.i, half);
      ++seen[r.matrix][r.head * d + r.i];
      ++seen[r.matrix][r.head * d + r.i + half];
    }
    for (const auto& rows : seen)
      for (int c : rows)
        EXPECT_EQ(c, 1) << hq << "/" << hkv << " heads, d " << d;
  }
}

// Each block's part of a range prefetched into L2 starts where the one before ends, on a
// 128-byte line, and the parts cover the range whatever the grid.
TEST(Matvec, L2PartsCoverTheRangeOnce) {  // host arithmetic: runs on the CPU too
  for (const size_t bytes :
       {size_t(0), size_t(16), size_t(127), size_t(128), size_t(1000008), size_t(4096) * 4096 * 2})
    for (const int blocks : {1, 7, 768, 1056}) {
      size_t next = 0;
      for (int b = 0; b < blocks; ++b) {
        size_t begin = 1, end = 0;
        matvec::l2_part(bytes, b, blocks, &begin, &end);
        ASSERT_EQ(begin, next) << bytes << " bytes, block " << b << " of " << blocks;
        ASSERT_LE(begin, end);
        ASSERT_TRUE(begin % 128 == 0 || begin == bytes);
        next = end;
      }
      EXPECT_EQ(next, bytes) << bytes << " bytes over " << blocks << " blocks";
    }
}

TEST(Matvec, LaunchWithoutInitIsAnError) {  // no device call: runs on the CPU too
  const matvec::Matvec mv;
  EXPECT_EQ(mv.matvec_add(nullptr, 8, nullptr, 8, nullptr, nullptr), cudaErrorInvalidValue);
  const int pos = 0;
  EXPECT_EQ(mv.norm_qkv_rope(nullptr, nullptr, 1e-5f, 8, nullptr, nullptr, nullptr, 1, 1, 8, 1e4f,
                             &pos, nullptr, nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace llama::test
