// Deterministic top-n index selection on the host (the tie rule of selection_units.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace sparq::reference {

/// Indices of the `count` largest values, largest first; equal values: lower index first;
/// NaN below every number (a strict weak order, so the sort is defined for any input).
inline std::vector<int> top_indices(const std::vector<double>& values, int count) {
  std::vector<int> idx(values.size());
  std::iota(idx.begin(), idx.end(), 0);
  count = std::max(0, std::min<int>(count, static_cast<int>(values.size())));
  std::partial_sort(idx.begin(), idx.begin() + count, idx.end(), [&](int a, int b) {
    const bool nan_a = std::isnan(values[a]), nan_b = std::isnan(values[b]);
    if (nan_a || nan_b) return nan_a == nan_b ? a < b : nan_b;
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  idx.resize(count);
  return idx;
}

}  // namespace sparq::reference
