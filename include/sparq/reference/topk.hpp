// Deterministic top-n index selection on the host (the tie rule of selection_units.hpp).
#pragma once

#include <algorithm>
#include <numeric>
#include <vector>

#include "sparq/selection_units.hpp"

namespace sparq::reference {

/// Indices of the `count` largest values in the selections' order (ranks_before: largest
/// first, equal values lower index first, NaN below every number; a strict weak order, so the
/// sort is defined for any input).
inline std::vector<int> top_indices(const std::vector<double>& values, int count) {
  std::vector<int> idx(values.size());
  std::iota(idx.begin(), idx.end(), 0);
  count = std::max(0, std::min<int>(count, static_cast<int>(values.size())));
  std::partial_sort(idx.begin(), idx.begin() + count, idx.end(),
                    [&](int a, int b) { return ranks_before(values[a], a, values[b], b); });
  idx.resize(count);
  return idx;
}

}  // namespace sparq::reference
