// Ranking keys: floats mapped to uint32 so that unsigned order is score order, and the key
// that forces a position into the selection. Plain C++ (host and device).
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "sparq/macros.hpp"

namespace sparq::device {

/// Order-preserving map of a float to uint32 (larger float, larger key; -0 == +0). Every NaN
/// maps to 1: below -inf (as ranks_before orders it), above the key 0 of padding past a
/// length, and never kForcedKey (the device's canonical NaN 0x7FFFFFFF would map to it).
/// Written without branches: the selection kernels map every position, and nvcc compiled the
/// early return into a branch around each key.
SPARQ_HOST_DEVICE inline uint32_t float_to_ordered(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  u = u == 0x80000000u ? 0u : u;  // -0 ranks as +0
  // Negative: every bit flipped; otherwise the sign bit set (u has it clear).
  const uint32_t flip = 0x80000000u | (0u - (u >> 31));
  return f != f ? 1u : u ^ flip;
}

/// Inverse of float_to_ordered (-0 comes back as +0).
SPARQ_HOST_DEVICE inline float ordered_to_float(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

/// Key that ranks above every finite score: positions of the local window.
constexpr uint32_t kForcedKey = 0xFFFFFFFFu;

/// s-hat of one head at one position: the softmax weight of its approximate logit, from the
/// head's largest logit and 1 / (sum of exp). Every kernel that ranks or sums s-hat uses this
/// one expression, so that they all select the same positions.
SPARQ_HOST_DEVICE inline float shat(float logit, float max, float inv_sum) {
  return expf(logit - max) * inv_sum;
}

/// The ranking key of position s (of `len`) whose s-hat, summed over the unit's heads, is
/// shat_sum; the last `window` positions are forced in.
SPARQ_HOST_DEVICE inline uint32_t ranking_key(float shat_sum, int s, int len, int window) {
  return s >= len - window ? kForcedKey : float_to_ordered(shat_sum);
}

/// The s-hat sum a ranking key carries, decoded exactly (what alpha adds for a selected
/// position); 0 for a forced key, whose s-hat the caller takes from elsewhere.
SPARQ_HOST_DEVICE inline float key_shat(uint32_t key) {
  return key == kForcedKey ? 0.f : ordered_to_float(key);
}

}  // namespace sparq::device
