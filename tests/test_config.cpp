// The compression-ratio rule (config_from_compression), the transfer model and config checks.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"

namespace {

using sparq::SparqConfig;
using sparq::Status;

TEST(CompressionRule, D128TableOfSparqMd) {
  // SPARQ.md: for d = 128, 1/2 -> r=64, k=S/4; 1/4 -> r=32, k=S/8; 1/8 -> r=16, k=S/16;
  // 1/16 -> r=8, k=S/32.
  struct Row {
    double c;
    int r;
    int k_div;
  };
  const Row rows[] = {{2, 64, 4}, {4, 32, 8}, {8, 16, 16}, {16, 8, 32}};
  for (int S : {4096, 8192, 16384, 32768}) {
    for (const Row& row : rows) {
      SCOPED_TRACE("S=" + std::to_string(S) + " c=" + std::to_string(row.c));
      SparqConfig cfg;
      ASSERT_EQ(sparq::config_from_compression(128, S, row.c, &cfg), Status::kSuccess);
      EXPECT_EQ(cfg.r, row.r);
      EXPECT_EQ(cfg.k, S / row.k_div);
    }
  }
}

TEST(CompressionRule, TransferRatiosMatchCompression) {
  for (int S : {10000, 20000}) {
    for (double c : {2.0, 4.0, 8.0}) {
      SCOPED_TRACE("S=" + std::to_string(S) + " c=" + std::to_string(c));
      SparqConfig cfg;
      ASSERT_EQ(sparq::config_from_compression(128, S, c, &cfg), Status::kSuccess);
      const double ratio = sparq::transfer_ratio(S, 128, cfg.r, cfg.k);
      EXPECT_NEAR(ratio, 1.0 / c, 0.01 / c) << "r=" << cfg.r << " k=" << cfg.k;
      EXPECT_NEAR(sparq::theoretical_attention_speedup(S, 128, cfg.r, cfg.k), c, 0.01 * c);
    }
  }
}

TEST(CompressionRule, RoundsAndClamps) {
  SparqConfig cfg;
  // r = round(64 / 3) = 21, k = round(100 / 6) = 17.
  ASSERT_EQ(sparq::config_from_compression(64, 100, 3.0, &cfg), Status::kSuccess);
  EXPECT_EQ(cfg.r, 21);
  EXPECT_EQ(cfg.k, 17);
  // Compression 1: r = d, k = round(S / 2).
  ASSERT_EQ(sparq::config_from_compression(128, 10, 1.0, &cfg), Status::kSuccess);
  EXPECT_EQ(cfg.r, 128);
  EXPECT_EQ(cfg.k, 5);
  // Huge compression: both clamp to 1.
  ASSERT_EQ(sparq::config_from_compression(128, 10, 1e9, &cfg), Status::kSuccess);
  EXPECT_EQ(cfg.r, 1);
  EXPECT_EQ(cfg.k, 1);
}

TEST(CompressionRule, KeepsOtherFieldsAndClampsWindow) {
  SparqConfig cfg;
  cfg.local_window = 64;
  cfg.reallocation = false;
  cfg.gqa = sparq::GqaMode::kPerQueryHead;
  ASSERT_EQ(sparq::config_from_compression(128, 256, 8.0, &cfg), Status::kSuccess);
  EXPECT_EQ(cfg.r, 16);
  EXPECT_EQ(cfg.k, 16);
  EXPECT_EQ(cfg.local_window, 16);
  EXPECT_FALSE(cfg.reallocation);
  EXPECT_EQ(cfg.gqa, sparq::GqaMode::kPerQueryHead);
  EXPECT_EQ(sparq::validate_config(cfg, 128), Status::kSuccess);
}

TEST(CompressionRule, RejectsInvalidArguments) {
  SparqConfig cfg;
  EXPECT_EQ(sparq::config_from_compression(128, 100, 8.0, nullptr), Status::kNullPointer);
  EXPECT_EQ(sparq::config_from_compression(128, 100, 0.5, &cfg), Status::kInvalidCompression);
  EXPECT_EQ(sparq::config_from_compression(128, 100, 0.0, &cfg), Status::kInvalidCompression);
  EXPECT_EQ(sparq::config_from_compression(128, 100, -4.0, &cfg), Status::kInvalidCompression);
  EXPECT_EQ(sparq::config_from_compression(128, 100, std::nan(""), &cfg),
            Status::kInvalidCompression);
  EXPECT_EQ(sparq::config_from_compression(128, 100, std::numeric_limits<double>::infinity(), &cfg),
            Status::kInvalidCompression);
  EXPECT_EQ(sparq::config_from_compression(0, 100, 8.0, &cfg), Status::kUnsupportedHeadDim);
  EXPECT_EQ(sparq::config_from_compression(128, 0, 8.0, &cfg), Status::kLengthBeyondCapacity);
}

TEST(TransferModel, Formulas) {
  EXPECT_DOUBLE_EQ(sparq::dense_transfers(1000, 128), 2.0 * 1000 * 128 + 2 * 128);
  EXPECT_DOUBLE_EQ(sparq::sparq_transfers(1000, 128, 16, 64),
                   1000.0 * 16 + 2.0 * 64 * 128 + 4 * 128);
  // k is clamped to the sequence length.
  EXPECT_DOUBLE_EQ(sparq::sparq_transfers(10, 128, 16, 64), 10.0 * 16 + 2.0 * 10 * 128 + 4 * 128);
  // Paper's A100 example: S=4096, r=32, k=128, d=128 -> about 6.4x.
  EXPECT_NEAR(sparq::theoretical_attention_speedup(4096, 128, 32, 128), 6.4, 0.1);
  // Whole-model speedup: f = 0 gives 1, f = 1 gives a.
  EXPECT_DOUBLE_EQ(sparq::theoretical_model_speedup(0.0, 8.0), 1.0);
  EXPECT_DOUBLE_EQ(sparq::theoretical_model_speedup(1.0, 8.0), 8.0);
}

TEST(ValidateConfig, AcceptsTheValidRange) {
  SparqConfig cfg;
  for (int d : {64, 128, 256}) {
    cfg.r = 1;
    cfg.k = 1;
    cfg.local_window = 0;
    EXPECT_EQ(sparq::validate_config(cfg, d), Status::kSuccess);
    cfg.r = d;
    cfg.k = 1000;
    cfg.local_window = 1000;
    EXPECT_EQ(sparq::validate_config(cfg, d), Status::kSuccess);
  }
}

}  // namespace
