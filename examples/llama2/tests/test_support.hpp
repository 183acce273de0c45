// Shared by the llama2 tests: the tiny checkpoints and transformers' reference logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "model_cuda.hpp"

// Skips a GPU test, saying why, where no CUDA device is usable.
#define LLAMA_REQUIRE_GPU()                                        \
  do {                                                             \
    const std::string why = ::llama::cuda_unavailable_reason();    \
    if (!why.empty()) GTEST_SKIP() << "GPU test skipped: " << why; \
  } while (0)

namespace llama::test {

/// tests/data/tiny_llama (the environment variable LLAMA_TEST_DATA overrides the built-in path,
/// for binaries run from another checkout).
inline std::string data_dir() {
  const char* env = std::getenv("LLAMA_TEST_DATA");
  return env && *env ? env : LLAMA_TEST_DATA;
}
inline std::string variant_dir(const std::string& v) {
  return data_dir() + "/" + v;
}

struct Reference {
  std::vector<int> prompt_ids;
  std::vector<std::vector<float>> prefill_logits;  ///< every prompt position
  std::vector<int> decode_tokens;                  ///< fed at each decode step
  std::vector<std::vector<float>> decode_logits;   ///< after each decode step
};

inline Reference load_reference(const std::string& variant) {
  const nlohmann::json j =
      nlohmann::json::parse(read_text_file(variant_dir(variant) + "/reference.json"));
  Reference r;
  r.prompt_ids = j["prompt_ids"].get<std::vector<int>>();
  r.prefill_logits = j["prefill_logits"].get<std::vector<std::vector<float>>>();
  for (const auto& s : j["decode"]) {
    r.decode_tokens.push_back(s["token"].get<int>());
    r.decode_logits.push_back(s["logits"].get<std::vector<float>>());
  }
  return r;
}

/// The largest |a[i] - b[i]|; infinity if any difference is NaN (std::max would skip it, and
/// NaN logits would compare as equal).
inline double max_abs_diff(const float* a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double e = std::fabs(double(a[i]) - b[i]);
    if (!(e <= m)) m = std::isnan(e) ? INFINITY : e;
  }
  return m;
}

inline int argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace llama::test
