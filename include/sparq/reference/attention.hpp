// Exact softmax attention of one query over chosen cache rows, in float64 (host only).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "sparq/dtype.hpp"
#include "sparq/problem.hpp"

namespace sparq::reference {

/// softmax(q . K[rows] / sqrt(d)) . V[rows] for query head vector q (already float64).
template <typename T>
std::vector<double> attend_rows(const KVCacheView<T>& c, int b, int kvh, int d,
                                const std::vector<double>& q, const std::vector<int>& rows) {
  std::vector<double> logits(rows.size());
  double mx = -std::numeric_limits<double>::infinity();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (size_t i = 0; i < rows.size(); ++i) {
    const T* krow = c.k_row(b, kvh, rows[i]);
    double dot = 0.0;
    for (int j = 0; j < d; ++j)
      dot += q[j] * static_cast<double>(to_float(krow[j]));
    logits[i] = dot * scale;
    mx = std::max(mx, logits[i]);
  }
  double denom = 0.0;
  for (double& l : logits)
    denom += (l = std::exp(l - mx));
  std::vector<double> out(d, 0.0);
  for (size_t i = 0; i < rows.size(); ++i) {
    const T* vrow = c.v_row(b, kvh, rows[i]);
    const double w = logits[i] / denom;
    for (int j = 0; j < d; ++j)
      out[j] += w * static_cast<double>(to_float(vrow[j]));
  }
  return out;
}

/// Query head h of sequence b as float64.
template <typename T>
std::vector<double> load_query(const DecodeProblem& p, const T* q, int b, int h) {
  std::vector<double> out(p.head_dim);
  const T* src = q + (static_cast<int64_t>(b) * p.num_q_heads + h) * p.head_dim;
  for (int j = 0; j < p.head_dim; ++j)
    out[j] = to_float(src[j]);
  return out;
}

}  // namespace sparq::reference
