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
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    // Keep the smallest prefix whose mass reaches top_p (at least one token).
    double kept = 0;
    int m = 0;
    while (m < n && (m == 0 || kept < top_p_ * sum))
      kept += p[order[m++]];
    std::uniform_real_distribution<double> u(0.0, kept);
    double x = u(rng_);
    for (int i = 0; i < m; ++i) {
      x -= p[order[i]];
      if (x <= 0) return order[i];
    }
    return order[m - 1];
  }

 private:
  float temperature_, top_p_;
  std::mt19937_64 rng_;
};

}  // namespace llama
