// Next-token choice: greedy (temperature 0) or temperature + top-p (nucleus) sampling.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

namespace llama {

class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed)
      : temperature_(temperature), top_p_(top_p), rng_(seed) {}

  int sample(const std::vector<float>& logits) {
    const int n = static_cast<int>(logits.size());
    // NaN would break the sort's ordering (undefined behaviour); it means broken weights.
    for (float x : logits)
      if (!std::isfinite(x))
        throw std::runtime_error(
            "the model produced a non-finite logit (NaN or inf): are the weights corrupt?");
    if (n == 0) throw std::runtime_error("no logits to sample from");
    if (temperature_ <= 0.0f)
      return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const float mx = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(n);
    double sum = 0;
    for (int i = 0; i < n; ++i)
      sum += p[i] = std::exp((logits[i] - mx) / temperature_);
    const std::vector<int> kept = nucleus(p, sum, top_p_);
    double mass = 0;
    for (int i : kept)
      mass += p[i];
    std::uniform_real_distribution<double> u(0.0, mass);
    double x = u(rng_);
    for (int i : kept) {
      x -= p[i];
      if (x <= 0) return i;
    }
    return kept.back();
  }

  /// The nucleus: the most probable tokens, best first, whose mass (of `sum`) first reaches
  /// top_p (at least one token). Tokens below (1 - top_p) * sum / (n - 1) are never in it (all
  /// of them together hold less than 1 - top_p of the mass), so only the others are sorted: a
  /// few instead of a whole vocabulary. (Sorting all 32000 took 3.9 ms per token on a 2-core CI
  /// machine, half of a 7B decode step on an H100; sampling now takes 0.34 ms there.)
  static std::vector<int> nucleus(const std::vector<double>& p, double sum, float top_p,
                                  bool crop = true) {
    const int n = static_cast<int>(p.size());
    const double cutoff = crop && n > 1 ? (1.0 - top_p) * sum / (n - 1) : 0.0;
    std::vector<int> order;
    for (int i = 0; i < n; ++i)
      if (p[i] >= cutoff) order.push_back(i);
    // Below top_p = 1/n even the best token can fall under the cutoff; the nucleus is then it.
    if (order.empty())
      order.push_back(static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin()));
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double kept = 0;
    size_t m = 0;
    while (m < order.size() && (m == 0 || kept < top_p * sum))
      kept += p[order[m++]];
    // Exact arithmetic never gets here; rounding of sum and the cutoff can, with a token that
    // sits on the boundary left out: then take the full sort.
    if (m == order.size() && kept < top_p * sum && order.size() < p.size() && cutoff > 0)
      return nucleus(p, sum, top_p, /*crop=*/false);
    order.resize(m);
    return order;
  }

 private:
  float temperature_, top_p_;
  std::mt19937_64 rng_;
};

}  // namespace llama
