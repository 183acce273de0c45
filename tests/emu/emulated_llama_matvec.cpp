// examples/llama2/matvec.cuh's fused decode kernels run on the CPU (tests/emu/shim.hpp; the
// header copied by prepare_matvec.sh) against
// a plain CPU computation: NormQkvRopeOp (RMSNorm + q/k/v + RoPE, with and without the KV append)
// and MatvecAddOp (y += W·a).
#include "matvec.cuh"
#include "support/compare.hpp"
#include "support/host_cache.hpp"
#include "support/random.hpp"
#include <cmath>
#include <cstdio>
#include <optional>
#include <vector>

using bf16 = __nv_bfloat16;
namespace mv = llama::matvec;
static int g_fail = 0;
static float bf(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}
using sparq::test::random_normal;
// |got - want| <= atol + rtol |want|
static void compare(const char* what, const std::vector<float>& got,
                    const std::vector<double>& want, double atol, double rtol) {
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    worst = std::max(worst, e);
    if (!(e <= atol + rtol * std::fabs(want[i]))) {
      if (bad < 5) std::printf("    %s[%zu]: got %.6f want %.6f\n", what, i, got[i], want[i]);
      ++bad;
    }
  }
  std::printf("  %-28s %zu elements, %d outside tolerance, max abs err %.3g\n", what, got.size(),
              bad, worst);
  g_fail += bad;
}

static void run_qkv(int in, int hq, int hkv, int d, int pos, bool append, int capacity,
                    int blocks_cap, unsigned seed) {
  std::printf("norm_qkv_rope in=%d hq=%d hkv=%d d=%d pos=%d append=%d capacity=%d grid cap %d\n",
              in, hq, hkv, d, pos, append, capacity, blocks_cap);
  sparq::test::Rng g(seed);
  const float eps = 1e-5f, theta = 10000.f;
  auto x = random_normal<float>(in, g);
  auto nw = random_normal<float>(in, g, 0.2f);
  for (float& e : nw)
    e += 1.f;
  auto wq = random_normal<bf16>(size_t(hq) * d * in, g, 0.1f),
       wk = random_normal<bf16>(size_t(hkv) * d * in, g, 0.1f),
       wv = random_normal<bf16>(size_t(hkv) * d * in, g, 0.1f);
  std::vector<bf16> q(hq * d, __float2bfloat16_rn(NAN)), k(hkv * d, __float2bfloat16_rn(NAN)),
      v(hkv * d, __float2bfloat16_rn(NAN));
  int pos_dev = pos;
  mv::NormQkvRopeOp op{{x.data(), nw.data(), eps, in},
                       wq.data(),
                       wk.data(),
                       wv.data(),
                       q.data(),
                       k.data(),
                       v.data(),
                       hq,
                       hkv,
                       d,
                       theta,
                       &pos_dev,
                       0};
  op.groups = (hq + 2 * hkv) * (d / 2);
  op.next = mv::L2Range{wq.data(), wq.size() * sizeof(bf16)};  // a no-op here: only its parts
  sparq::DecodeProblem p;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.capacity = capacity;
  std::optional<sparq::test::HostKVCache<bf16>> cache, want_cache;
  if (append) {
    cache.emplace(p);
    const int fill = std::max(0, std::min(pos, capacity));
    cache->fill_random({fill}, seed + 7);
    want_cache = cache;
    op.append = true;
    op.cache = cache->view();
    op.cache_capacity = capacity;
  }
  const int blocks = std::min((op.groups + mv::kWarps - 1) / mv::kWarps, blocks_cap);
  emu::launch(
      dim3(blocks), dim3(mv::kThreads), mv::Matvec::smem_bytes(in),
      [&] { mv::matvec_kernel<mv::NormQkvRopeOp>(op); }, "matvec_kernel<NormQkvRopeOp>", 1);
  // Reference: n = bf16(w * (x * inv)), y = W n (double), RoPE (double), no final rounding.
  double ss = 0;
  for (int i = 0; i < in; ++i)
    ss += double(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / in + eps);
  std::vector<double> n(in);
  for (int i = 0; i < in; ++i)
    n[i] = bf(float(nw[i] * (x[i] * inv)));
  auto proj = [&](const std::vector<bf16>& w, int rows) {
    std::vector<double> y(rows, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < in; ++i)
        y[r] += double(__bfloat162float(w[size_t(r) * in + i])) * n[i];
    return y;
  };
  auto rope = [&](std::vector<double>& y, int heads) {
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d / 2; ++i) {
        const double ang = pos * std::pow(double(theta), -2.0 * i / d);
        const double a = y[h * d + i], b = y[h * d + i + d / 2];
        y[h * d + i] = a * std::cos(ang) - b * std::sin(ang);
        y[h * d + i + d / 2] = b * std::cos(ang) + a * std::sin(ang);
      }
  };
  auto yq = proj(wq, hq * d), yk = proj(wk, hkv * d), yv = proj(wv, hkv * d);
  rope(yq, hq);
  rope(yk, hkv);
  auto tof = [](const std::vector<bf16>& a) {
    std::vector<float> f(a.size());
    for (size_t i = 0; i < a.size(); ++i)
      f[i] = __bfloat162float(a[i]);
    return f;
  };
  // bf16 output (rel 2^-8) + float sin/cos of angles up to pos (float32 angle error ~ pos * 6e-8)
  const double atol = 2e-3 + pos * 2e-7, rtol = 8e-3;
  compare("q", tof(q), yq, atol, rtol);
  compare("k", tof(k), yk, atol, rtol);
  compare("v", tof(v), yv, atol, rtol);
  if (append) {
    if (pos >= 0 && pos < capacity) {
      sparq::DecodeProblem one = p;
      if (!sparq::ok(
              sparq::reference::append_kv(one, want_cache->view(), &pos, 1, k.data(), v.data()))) {
        std::printf("  reference append failed\n");
        ++g_fail;
      }
    }
    using sparq::test::count_bits_differ;
    const size_t dk = count_bits_differ(cache->k, want_cache->k),
                 dkt = count_bits_differ(cache->kt, want_cache->kt),
                 dv = count_bits_differ(cache->v, want_cache->v),
                 ds = count_bits_differ(cache->vsum, want_cache->vsum);
    std::printf(
        "  cache vs reference::append_kv of the kernel's k, v: K %zu Kt %zu V %zu Vsum %zu bits "
        "differ\n",
        dk, dkt, dv, ds);
    g_fail += int(dk + dkt + dv + ds);
  }
}

static void run_add(int in, int out, int blocks_cap, unsigned seed) {
  std::printf("matvec_add in=%d out=%d grid cap %d\n", in, out, blocks_cap);
  sparq::test::Rng g(seed);
  auto a = random_normal<bf16>(in, g);
  auto w = random_normal<bf16>(size_t(out) * in, g, 0.1f);
  auto y = random_normal<float>(out, g);
  std::vector<double> want(out);
  for (int r = 0; r < out; ++r) {
    double s = 0;
    for (int i = 0; i < in; ++i)
      s += double(__bfloat162float(w[size_t(r) * in + i])) * __bfloat162float(a[i]);
    want[r] = y[r] + s;
  }
  const mv::MatvecAddOp op{a.data(), in, w.data(), y.data(), out, (out + 1) / 2};
  const int blocks = std::min((op.groups + mv::kWarps - 1) / mv::kWarps, blocks_cap);
  emu::launch(
      dim3(blocks), dim3(mv::kThreads), mv::Matvec::smem_bytes(in),
      [&] { mv::matvec_kernel<mv::MatvecAddOp>(op); }, "matvec_kernel<MatvecAddOp>", 1);
  compare("y", y, want, 1e-4, 1e-5);
}

int main() {
  run_qkv(128, 4, 2, 64, 5, true, 16, 1 << 30, 1);  // append at pos 5 (cache partly full)
  run_qkv(128, 4, 2, 64, 15, true, 16, 3, 2);  // last row of the cache; 3 blocks loop over groups
  run_qkv(128, 4, 2, 64, 16, true, 16, 1 << 30, 3);    // pos == capacity: nothing appended
  run_qkv(128, 4, 2, 64, 1000, false, 0, 1 << 30, 4);  // no cache, large pos
  run_qkv(128, 4, 2, 32, 7, false, 0, 2, 5);  // d = 32 (no cache: sparq's head dims are 64/128/256)
  run_qkv(120, 2, 1, 64, 3, true, 8, 1 << 30, 6);  // in % 8 != 0: scalar path
  run_add(256, 128, 1 << 30, 7);                   // o projection: hq*d -> hidden
  run_add(128, 37, 2, 8);                          // odd rows, grid loop
  run_add(100, 9, 1 << 30, 9);                     // in % 8 != 0
  std::printf(g_fail ? "FAILED (%d)\n" : "all matched\n", g_fail);
  return g_fail != 0;
}
