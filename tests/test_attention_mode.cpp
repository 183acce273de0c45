// The auto attention rule: dense for small steps and weak compression, SparQ for large steps;
// explicit modes pass through unchanged.
#include <gtest/gtest.h>

#include "sparq/sparq.hpp"

namespace {

sparq::DecodeProblem problem(int batch, int kv_heads, int length) {
  sparq::DecodeProblem p;
  p.batch = batch;
  p.num_q_heads = 32;
  p.num_kv_heads = kv_heads;
  p.head_dim = 128;
  p.capacity = length;
  return p;
}

sparq::SparqConfig compressed(int length, double c) {
  sparq::SparqConfig cfg;
  EXPECT_EQ(sparq::config_from_compression(128, length, c, &cfg), sparq::Status::kSuccess);
  return cfg;
}

sparq::AttentionMode resolve(int batch, int kv_heads, int length, double c) {
  return sparq::resolve_attention_mode(sparq::AttentionMode::kAuto,
                                       problem(batch, kv_heads, length), compressed(length, c));
}

TEST(AttentionMode, ExplicitModesPassThrough) {
  const auto p = problem(1, 32, 1024);
  const auto cfg = compressed(1024, 8);
  EXPECT_EQ(sparq::resolve_attention_mode(sparq::AttentionMode::kDense, p, cfg),
            sparq::AttentionMode::kDense);
  EXPECT_EQ(sparq::resolve_attention_mode(sparq::AttentionMode::kSparq, p, cfg),
            sparq::AttentionMode::kSparq);
}

TEST(AttentionMode, AutoPicksDenseForSmallSteps) {
  EXPECT_EQ(resolve(1, 32, 4096, 8), sparq::AttentionMode::kDense);  // 131k rows
  EXPECT_EQ(resolve(8, 8, 2048, 8), sparq::AttentionMode::kDense);
  EXPECT_EQ(resolve(1, 32, 16384, 2), sparq::AttentionMode::kDense);  // 1/2 needs 1M rows
}

TEST(AttentionMode, AutoPicksSparqForLargeSteps) {
  EXPECT_EQ(resolve(1, 32, 8192, 8), sparq::AttentionMode::kSparq);  // 262k rows
  EXPECT_EQ(resolve(1, 8, 32768, 8), sparq::AttentionMode::kSparq);
  EXPECT_EQ(resolve(64, 32, 4096, 4), sparq::AttentionMode::kSparq);
  EXPECT_EQ(resolve(1, 32, 32768, 2), sparq::AttentionMode::kSparq);  // 1M rows
}

TEST(AttentionMode, NoCompressionMeansDense) {
  sparq::SparqConfig cfg;
  cfg.r = 128;
  cfg.k = 65536;  // r = d, k = S: SparQ reads more than dense
  EXPECT_EQ(sparq::resolve_attention_mode(sparq::AttentionMode::kAuto, problem(64, 32, 65536), cfg),
            sparq::AttentionMode::kDense);
}

TEST(AttentionMode, MinimumRowsScaleWithTheoreticalSpeedup) {
  EXPECT_DOUBLE_EQ(sparq::auto_min_rows(8), 256000);
  EXPECT_DOUBLE_EQ(sparq::auto_min_rows(16), 256000);
  EXPECT_DOUBLE_EQ(sparq::auto_min_rows(4), 512000);
  EXPECT_DOUBLE_EQ(sparq::auto_min_rows(2), 1024000);
}

}  // namespace
