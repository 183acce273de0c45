// CPU reference of the KV-cache append: new tokens' K (both layouts) and V at each sequence's
// next positions, and the float32 running V sum (tokens added one by one, in order, in float,
// so appending one at a time or all at once gives identical sums).
#pragma once

#include "sparq/dtype.hpp"
#include "sparq/problem.hpp"

namespace sparq::reference {

/// new_k, new_v: token-major [B, n, Hkv, d] (what a QKV projection produces); lengths: host [B],
/// rows already in the cache (not updated here).
template <typename T>
Status append_kv(const DecodeProblem& p, const KVCacheView<T>& c, const int* lengths, int n,
                 const T* new_k, const T* new_v) {
  if (Status s = validate_problem(p); !ok(s)) return s;
  if (lengths == nullptr || new_k == nullptr || new_v == nullptr || c.k == nullptr ||
      c.kt == nullptr || c.v == nullptr || c.vsum == nullptr)
    return Status::kNullPointer;
  if (n < 1) return Status::kInvalidNewTokens;
  for (int b = 0; b < p.batch; ++b) {
    if (lengths[b] < 0 || lengths[b] + n > p.capacity) return Status::kInvalidNewTokens;
  }
  const int d = p.head_dim;
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.num_kv_heads; ++h) {
      float* vsum = c.vsum_row(b, h);
      for (int t = 0; t < n; ++t) {
        const int64_t src = ((static_cast<int64_t>(b) * n + t) * p.num_kv_heads + h) * d;
        const int s = lengths[b] + t;
        for (int j = 0; j < d; ++j) {
          c.k_row(b, h, s)[j] = new_k[src + j];
          c.kt_row(b, h, j)[s] = new_k[src + j];
          c.v_row(b, h, s)[j] = new_v[src + j];
          vsum[j] += to_float(new_v[src + j]);
        }
      }
    }
  }
  return Status::kSuccess;
}

}  // namespace sparq::reference
