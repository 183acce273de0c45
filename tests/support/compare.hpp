// How tests compare a kernel's results with the reference (host code; used by the GPU tests
// and by the CPU emulation of the kernels): error metrics, bitwise counts, and the rule for
// selections that may differ only at near ties.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "sparq/dtype.hpp"

namespace sparq::test {

template <typename T>
std::vector<double> to_double(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = to_float(x[i]);
  return out;
}

inline double relative_l2(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline size_t count_non_finite(const std::vector<double>& x) {
  size_t n = 0;
  for (double v : x)
    n += std::isfinite(v) ? 0 : 1;
  return n;
}

/// Elements whose bytes differ, plus the difference in length.
template <typename U>
size_t count_bits_differ(const std::vector<U>& x, const std::vector<U>& y) {
  const size_t n = x.size() < y.size() ? x.size() : y.size();
  size_t c = 0;
  for (size_t i = 0; i < n; ++i)
    c += std::memcmp(&x[i], &y[i], sizeof(U)) != 0;
  return c + (x.size() > y.size() ? x.size() - y.size() : y.size() - x.size());
}

/// Tolerance of the relative L2 error against the float64 reference, per element type.
template <typename T>
double output_tolerance() {
  return ElementTraits<T>::kDType == DType::kFloat32 ? 1e-5 : 2e-2;
}

/// Empty when a kernel's selected positions `got` match the reference's `ref`; otherwise what
/// is wrong. Every position must be in range and distinct, the sizes equal, and every position
/// from window_begin on selected. The sets may differ only where the reference's ranking keys
/// of the differing positions lie within a relative 1e-4 of its k-th key (a near tie that
/// float rounding may decide either way); with exact_ties (inputs with exactly equal keys) not
/// at all, since the tie rule then decides.
inline std::string selection_mismatch(const std::vector<int>& got, const std::vector<int>& ref,
                                      const std::vector<double>& key, int window_begin,
                                      bool exact_ties = false) {
  const int n = static_cast<int>(key.size());
  std::set<int> g(got.begin(), got.end()), r(ref.begin(), ref.end());
  for (int s : got)
    if (s < 0 || s >= n) return "position " + std::to_string(s) + " out of range";
  if (g.size() != got.size()) return "duplicate positions selected";
  if (got.size() != ref.size())
    return std::to_string(got.size()) + " positions selected, the reference " +
           std::to_string(ref.size());
  for (int s = window_begin; s < n; ++s)
    if (!g.count(s)) return "window position " + std::to_string(s) + " not selected";
  if (g == r) return "";
  if (exact_ties) return "exact ties: selection differs from the tie rule (lowest position first)";
  double kth = 1e300;
  for (int s : ref)
    if (s < window_begin) kth = std::min(kth, key[s]);
  for (int s : got)
    if (!r.count(s) && std::fabs(key[s] - kth) > 1e-4 * kth)
      return "position " + std::to_string(s) + " chosen far below the k-th key";
  for (int s : ref)
    if (!g.count(s) && std::fabs(key[s] - kth) > 1e-4 * kth)
      return "position " + std::to_string(s) + " missed far above the k-th key";
  return "";
}

}  // namespace sparq::test
