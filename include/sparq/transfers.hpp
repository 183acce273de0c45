// Memory-transfer model of one decode step (elements per KV head per generated token),
// from the SparQ paper: it sets the theoretical speedup and the bytes the benchmarks count.
#pragma once

#include <algorithm>

namespace sparq {

/// Dense decode: read K and V (2*S*d), write the new k and v (2*d).
inline double dense_transfers(double seq_len, double head_dim) {
  return 2.0 * seq_len * head_dim + 2.0 * head_dim;
}

/// SparQ: r components of K at every position, k full rows of K and V, write new k and v,
/// read and write the running V sum. k is clamped to the sequence length.
inline double sparq_transfers(double seq_len, double head_dim, double r, double k) {
  const double kk = std::min(k, seq_len);
  return seq_len * r + 2.0 * kk * head_dim + 4.0 * head_dim;
}

/// SparQ transfers over dense transfers (0.125 at compression 1/8).
inline double transfer_ratio(double seq_len, double head_dim, double r, double k) {
  return sparq_transfers(seq_len, head_dim, r, k) / dense_transfers(seq_len, head_dim);
}

/// The attention-only speedup SparQ can reach when both are bandwidth bound.
inline double theoretical_attention_speedup(double seq_len, double head_dim, double r, double k) {
  return 1.0 / transfer_ratio(seq_len, head_dim, r, k);
}

/// Whole-model speedup when attention is a fraction f of dense decode time and SparQ cuts
/// attention transfers by a factor a: 1 / (1 - (f - f/a)).
inline double theoretical_model_speedup(double attention_fraction, double transfer_factor) {
  const double f = attention_fraction;
  return 1.0 / (1.0 - (f - f / transfer_factor));
}

}  // namespace sparq
