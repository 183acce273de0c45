// The CUDA forward pass (bf16) against transformers' float32 logits, SparQ with r = d, k = S
// against dense, and graph against no-graph decoding. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model_cuda.hpp"
#include "test_support.hpp"

namespace llama::test {
namespace {

#define LLAMA_REQUIRE_GPU()                                        \
  do {                                                             \
    const std::string why = ::llama::cuda_unavailable_reason();    \
    if (!why.empty()) GTEST_SKIP() << "GPU test skipped: " << why; \
  } while (0)

// bf16 weights, activations and KV cache against a float32 reference, logits of magnitude ~4:
// measured on an H100, max |error| 0.074 (fp32_sharded, whose weights are rounded to bf16) and
// 0.046 (bf16_tied), over every prefill position and decode step.
constexpr double kTol = 0.12;

std::unique_ptr<Model> load(const std::string& variant, bool graphs = true) {
  CudaOptions o;
  o.graphs = graphs;
  o.progress = false;
  return make_cuda_model(Checkpoint(variant_dir(variant)), 512, o);
}

class GpuLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuLogits, PrefillAndDecodeMatchTransformers) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference(GetParam());
  auto model = load(GetParam());
  model->attention.mode = sparq::AttentionMode::kDense;
  std::vector<float> last, all;
  model->prefill(ref.prompt_ids, &last, &all);
  const int V = model->config().vocab_size;
  double worst = 0;
  for (size_t t = 0; t < ref.prefill_logits.size(); ++t) {
    const double e = max_abs_diff(&all[t * V], ref.prefill_logits[t]);
    worst = std::max(worst, e);
    EXPECT_LT(e, kTol) << "prefill position " << t;
  }
  for (size_t s = 0; s < ref.decode_tokens.size(); ++s) {
    std::vector<float> logits;
    model->decode(ref.decode_tokens[s], &logits);
    const double e = max_abs_diff(logits.data(), ref.decode_logits[s]);
    worst = std::max(worst, e);
    EXPECT_LT(e, kTol) << "decode step " << s;
  }
  std::printf("[ %s ] max |logit - transformers| = %.4g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(TinyLlama, GpuLogits, ::testing::Values("fp32_sharded", "bf16_tied"));

std::vector<int> greedy(Model& m, const std::vector<int>& prompt, int steps,
                        std::vector<std::vector<float>>* all = nullptr) {
  std::vector<float> logits;
  m.reset();
  m.prefill(prompt, &logits);
  std::vector<int> out;
  for (int i = 0; i < steps; ++i) {
    out.push_back(argmax(logits));
    m.decode(out.back(), &logits);
    if (all) all->push_back(logits);
  }
  return out;
}

TEST(GpuSparq, FullRankSparqGeneratesExactlyTheDenseTokens) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("bf16_tied");
  auto model = load("bf16_tied");
  model->attention.mode = sparq::AttentionMode::kDense;
  const std::vector<int> dense = greedy(*model, ref.prompt_ids, 32);
  model->attention.mode = sparq::AttentionMode::kSparq;
  model->attention.r = 64;
  model->attention.k = 100000;
  model->attention.local_window = 0;
  const std::vector<int> sparse = greedy(*model, ref.prompt_ids, 32);
  EXPECT_TRUE(model->last_step.sparq);
  EXPECT_EQ(sparse, dense);
}

TEST(GpuGraphs, GraphAndNoGraphDecodeAgree) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("fp32_sharded");
  for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq}) {
    auto with = load("fp32_sharded", true), without = load("fp32_sharded", false);
    with->attention.mode = without->attention.mode = mode;
    with->attention.compression = without->attention.compression = 4;
    with->attention.local_window = without->attention.local_window = 4;
    std::vector<std::vector<float>> a, b;
    // 300 steps cross a 256-position bucket (a second captured graph).
    EXPECT_EQ(greedy(*with, ref.prompt_ids, 300, &a), greedy(*without, ref.prompt_ids, 300, &b));
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(a[i], b[i]) << "step " << i;
  }
}

TEST(GpuBench, RandomFillAndDecodeRun) {
  LLAMA_REQUIRE_GPU();
  auto model = load("bf16_tied");
  model->attention.mode = sparq::AttentionMode::kSparq;
  model->fill_random(400, 1);
  std::vector<float> logits;
  for (int i = 0; i < 5; ++i)
    model->decode(7, &logits);
  EXPECT_EQ(model->length(), 405);
  for (float x : logits)
    ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace llama::test
