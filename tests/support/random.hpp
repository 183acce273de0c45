// Seeded random data for tests (host; usable from .cpp and .cu files). The same seed gives the
// same data with the same standard library; tests print the seed on failure.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "sparq/dtype.hpp"

namespace sparq::test {

class Rng {
 public:
  explicit Rng(uint64_t seed) : seed_(seed), gen_(seed) {}
  uint64_t seed() const { return seed_; }
  /// Normal(0, stddev).
  float normal(float stddev = 1.0f) { return std::normal_distribution<float>(0.0f, stddev)(gen_); }
  /// Uniform in [lo, hi).
  float uniform(float lo = 0.0f, float hi = 1.0f) {
    return std::uniform_real_distribution<float>(lo, hi)(gen_);
  }
  /// Uniform integer in [lo, hi].
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }
  std::mt19937_64& engine() { return gen_; }

 private:
  uint64_t seed_;
  std::mt19937_64 gen_;
};

/// n values ~ Normal(0, stddev), each rounded to T.
template <typename T>
std::vector<T> random_normal(size_t n, uint64_t seed, float stddev = 1.0f) {
  Rng rng(seed);
  std::vector<T> out(n);
  for (auto& x : out)
    x = from_float<T>(rng.normal(stddev));
  return out;
}

/// n values ~ Normal(0, stddev) from an existing generator, each rounded to T.
template <typename T>
std::vector<T> random_normal(size_t n, Rng& rng, float stddev = 1.0f) {
  std::vector<T> out(n);
  for (auto& x : out)
    x = from_float<T>(rng.normal(stddev));
  return out;
}

/// B lengths uniform in [lo, hi].
inline std::vector<int> random_lengths(int batch, int lo, int hi, Rng& rng) {
  std::vector<int> out(batch);
  for (int& x : out)
    x = rng.uniform_int(lo, hi);
  return out;
}

}  // namespace sparq::test
