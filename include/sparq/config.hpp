// SparQ hyper-parameters, the compression-ratio rule and their validation.
#pragma once

#include <cmath>

#include "sparq/status.hpp"

namespace sparq {

/// How selections are shared inside a GQA group (g query heads per KV head).
enum class GqaMode : int {
  /// ICML rule: one top-r component set (on the group-summed |q|) and one top-k position set
  /// (on the group-summed approximate scores) per KV head; K/V bytes are read once per group.
  kShared = 0,
  /// No sharing: every query head selects its own components and positions (g = 1 semantics).
  kPerQueryHead = 1,
};

struct SparqConfig {
  int r = 16;                ///< query components used for the approximate scores (step 1)
  int k = 128;               ///< positions fetched exactly (step 4); clamped to each length
  int local_window = 0;      ///< the last l positions are always selected; 0 <= l <= k
  bool reallocation = true;  ///< mix in the mean value vector (step 7); false: y = s . V[i2]
  GqaMode gqa = GqaMode::kShared;
};

/// Checks r, k and the local window against a head dimension.
inline Status validate_config(const SparqConfig& c, int head_dim) {
  if (c.r < 1 || c.r > head_dim) return Status::kInvalidR;
  if (c.k < 1) return Status::kInvalidK;
  if (c.local_window < 0 || c.local_window > c.k) return Status::kInvalidLocalWindow;
  if (c.gqa != GqaMode::kShared && c.gqa != GqaMode::kPerQueryHead) return Status::kInvalidGqaMode;
  return Status::kSuccess;
}

/// The gpt-fast compression rule: r = round(d / c), k = round(S / (2c)), each clamped to
/// [1, d] and [1, S]. `compression` is the denominator c (8 means 1/8 of the transfers).
/// Only r and k are written; the other fields of *out are kept.
inline Status config_from_compression(int head_dim, int seq_len, double compression,
                                      SparqConfig* out) {
  if (out == nullptr) return Status::kNullPointer;
  if (!std::isfinite(compression) || compression < 1.0) return Status::kInvalidCompression;
  if (head_dim < 1) return Status::kUnsupportedHeadDim;
  if (seq_len < 1) return Status::kLengthBeyondCapacity;
  long r = std::lround(head_dim / compression);
  long k = std::lround(seq_len / (2.0 * compression));
  r = r < 1 ? 1 : (r > head_dim ? head_dim : r);
  k = k < 1 ? 1 : (k > seq_len ? seq_len : k);
  out->r = static_cast<int>(r);
  out->k = static_cast<int>(k);
  if (out->local_window > out->k) out->local_window = out->k;
  return Status::kSuccess;
}

}  // namespace sparq
