// A host-owned packed dual-layout KV cache (K, Kt, V and the float32 V sum) in std::vector
// buffers sized by sparq::packed_cache_sizes, with a view from sparq::make_packed_cache_view.
// Valid rows are written through reference::append_kv, so Vsum is exactly what the reference
// append computes. Templated on the element type (float, __half, __nv_bfloat16); host code,
// usable from .cpp and .cu files (GPU tests copy the buffers to the device).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "sparq/dtype.hpp"
#include "sparq/problem.hpp"
#include "sparq/reference/append.hpp"
#include "support/random.hpp"

namespace sparq::test {

template <typename T>
struct HostKVCache {
  DecodeProblem problem;
  std::vector<T> k, kt, v;
  std::vector<float> vsum;
  std::vector<int> lengths;  ///< rows written through append (all 0 after construction)

  explicit HostKVCache(const DecodeProblem& p) : problem(p), lengths(p.batch, 0) {
    const KVCacheSizes s = packed_cache_sizes(p);
    k.assign(s.k, from_float<T>(0.0f));
    kt.assign(s.kt, from_float<T>(0.0f));
    v.assign(s.v, from_float<T>(0.0f));
    vsum.assign(s.vsum, 0.0f);
  }

  KVCacheView<T> view() {
    return make_packed_cache_view<T>(problem, k.data(), kt.data(), v.data(), vsum.data());
  }

  /// The view restricted to one sequence (a batch-1 problem), e.g. to append to it alone.
  KVCacheView<T> sequence_view(int b) {
    KVCacheView<T> c = view();
    c.k += b * c.k_stride_b;
    c.kt += b * c.kt_stride_b;
    c.v += b * c.v_stride_b;
    c.vsum += b * c.vsum_stride_b;
    return c;
  }

  /// Writes one row of K (both layouts) and V directly, without touching Vsum.
  void set_row(int b, int h, int s, const T* krow, const T* vrow) {
    KVCacheView<T> c = view();
    for (int j = 0; j < problem.head_dim; ++j) {
      c.k_row(b, h, s)[j] = krow[j];
      c.kt_row(b, h, j)[s] = krow[j];
      c.v_row(b, h, s)[j] = vrow[j];
    }
  }

  /// Fills the cache from dense K, V arrays [B, Hkv, capacity, d]: rows below lens[b] are
  /// appended (they enter Vsum), rows at or past lens[b] are copied without entering Vsum.
  void assign(const std::vector<T>& K, const std::vector<T>& V, const std::vector<int>& lens) {
    const DecodeProblem& p = problem;
    const int64_t d = p.head_dim, cap = p.capacity;
    const size_t want = static_cast<size_t>(p.batch) * p.num_kv_heads * cap * d;
    if (K.size() != want || V.size() != want || static_cast<int>(lens.size()) != p.batch)
      throw std::invalid_argument("HostKVCache::assign: size mismatch");
    std::fill(vsum.begin(), vsum.end(), 0.0f);
    for (int b = 0; b < p.batch; ++b) {
      if (lens[b] < 0 || lens[b] > p.capacity)
        throw std::invalid_argument("HostKVCache::assign: length out of range");
      const int n = lens[b];
      DecodeProblem one = p;
      one.batch = 1;
      one.max_length = 0;
      if (n > 0) {
        std::vector<T> nk(static_cast<size_t>(p.num_kv_heads) * n * d), nv(nk.size());
        for (int h = 0; h < p.num_kv_heads; ++h)
          for (int s = 0; s < n; ++s)
            for (int64_t j = 0; j < d; ++j) {
              const size_t src = ((static_cast<size_t>(b) * p.num_kv_heads + h) * cap + s) * d + j;
              const size_t dst =
                  (static_cast<size_t>(s) * p.num_kv_heads + h) * d + j;  // [1,n,Hkv,d]
              nk[dst] = K[src];
              nv[dst] = V[src];
            }
        const int zero = 0;
        const Status st =
            reference::append_kv(one, sequence_view(b), &zero, n, nk.data(), nv.data());
        if (!ok(st))
          throw std::runtime_error(std::string("HostKVCache::assign: ") + status_string(st));
      }
      for (int h = 0; h < p.num_kv_heads; ++h)
        for (int s = n; s < p.capacity; ++s) {
          const size_t src = ((static_cast<size_t>(b) * p.num_kv_heads + h) * cap + s) * d;
          set_row(b, h, s, &K[src], &V[src]);
        }
    }
    lengths = lens;
  }

  /// Random Normal(0, stddev) K and V in every row (rows past lens[b] too, outside Vsum).
  void fill_random(const std::vector<int>& lens, uint64_t seed, float stddev = 1.0f) {
    const size_t n = static_cast<size_t>(problem.batch) * problem.num_kv_heads * problem.capacity *
                     problem.head_dim;
    Rng rng(seed);
    const std::vector<T> K = random_normal<T>(n, rng, stddev);
    const std::vector<T> V = random_normal<T>(n, rng, stddev);
    assign(K, V, lens);
  }

  /// Overwrites K (both layouts) and V at every row at or past lengths[b] with `value`
  /// (e.g. NaN); Vsum is unchanged.
  void poison_tail(float value) {
    const std::vector<T> row(problem.head_dim, from_float<T>(value));
    for (int b = 0; b < problem.batch; ++b)
      for (int h = 0; h < problem.num_kv_heads; ++h)
        for (int s = lengths[b]; s < problem.capacity; ++s)
          set_row(b, h, s, row.data(), row.data());
  }
};

/// Recomputes the V sums in float64 (rounded once to float), so that a kernel test compares
/// the kernel's v-bar with the reference's, not float accumulation over long sequences.
template <typename T>
void set_exact_vsum(HostKVCache<T>& h) {
  const DecodeProblem& p = h.problem;
  KVCacheView<T> c = h.view();
  for (int b = 0; b < p.batch; ++b)
    for (int kv = 0; kv < p.num_kv_heads; ++kv)
      for (int j = 0; j < p.head_dim; ++j) {
        double s = 0.0;
        for (int r = 0; r < h.lengths[b]; ++r)
          s += to_float(c.v_row(b, kv, r)[j]);
        c.vsum_row(b, kv)[j] = static_cast<float>(s);
      }
}

}  // namespace sparq::test
