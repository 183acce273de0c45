// CPU reference of dense decode attention: one query token per sequence, GQA, per-sequence
// lengths, float64 accumulation. Reads only K and V of the cache.
#pragma once

#include <algorithm>
#include <numeric>
#include <vector>

#include "sparq/reference/attention.hpp"

namespace sparq::reference {

/// q: [B, Hq, d]; lengths: host [B]; out: [B, Hq, d] float64.
template <typename T>
Status dense_decode(const DecodeProblem& p, const T* q, const KVCacheView<T>& cache,
                    const int* lengths, double* out) {
  if (Status s = validate_problem(p); !ok(s)) return s;
  if (q == nullptr || out == nullptr || cache.k == nullptr || cache.v == nullptr)
    return Status::kNullPointer;
  if (Status s = validate_lengths(p, lengths); !ok(s)) return s;
  const int d = p.head_dim, g = p.group_size();
  for (int b = 0; b < p.batch; ++b) {
    std::vector<int> rows(lengths[b]);
    std::iota(rows.begin(), rows.end(), 0);
    for (int h = 0; h < p.num_q_heads; ++h) {
      const std::vector<double> y = attend_rows(cache, b, h / g, d, load_query(p, q, b, h), rows);
      std::copy(y.begin(), y.end(), out + (static_cast<int64_t>(b) * p.num_q_heads + h) * d);
    }
  }
  return Status::kSuccess;
}

}  // namespace sparq::reference
