// Every validation error path of the core headers and of the CPU reference, and status_string.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sparq/sparq.hpp"
#include "support/host_cache.hpp"

namespace {

using sparq::DecodeProblem;
using sparq::SparqConfig;
using sparq::Status;

DecodeProblem valid_problem() {
  DecodeProblem p;
  p.batch = 2;
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.capacity = 32;
  return p;
}

TEST(StatusString, DistinctNonEmptyMessageForEachStatus) {
  std::set<std::string> seen;
  const int last = static_cast<int>(Status::kCudaError);
  for (int i = 0; i <= last; ++i) {
    const std::string msg = sparq::status_string(static_cast<Status>(i));
    SCOPED_TRACE("status " + std::to_string(i));
    EXPECT_FALSE(msg.empty());
    EXPECT_NE(msg, "unknown status");
    EXPECT_TRUE(seen.insert(msg).second) << "duplicate message: " << msg;
  }
  EXPECT_TRUE(sparq::ok(Status::kSuccess));
  EXPECT_FALSE(sparq::ok(Status::kInvalidR));
}

TEST(ValidateProblem, AcceptsValidProblem) {
  EXPECT_EQ(sparq::validate_problem(valid_problem()), Status::kSuccess);
}

TEST(ValidateProblem, InvalidBatch) {
  DecodeProblem p = valid_problem();
  p.batch = 0;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidBatch);
  p.batch = -1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidBatch);
  p.batch = sparq::kMaxBatch + 1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidBatch);
  p.batch = sparq::kMaxBatch;
  EXPECT_EQ(sparq::validate_problem(p), Status::kSuccess);
  // batch x query heads past kMaxQueryRows (each within its own limit).
  p.num_q_heads = p.num_kv_heads = 128;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidBatch);
  p.batch = static_cast<int>(sparq::kMaxQueryRows / 128);
  EXPECT_EQ(sparq::validate_problem(p), Status::kSuccess);
}

TEST(ValidateProblem, InvalidHeads) {
  DecodeProblem p = valid_problem();
  p.num_q_heads = 0;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidHeads);
  p = valid_problem();
  p.num_kv_heads = 0;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidHeads);
  p.num_kv_heads = -2;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidHeads);
  // Past the grid's y limit, where the kernels put heads.
  p = valid_problem();
  p.num_q_heads = p.num_kv_heads = sparq::kMaxHeads + 1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidHeads);
  p.num_q_heads = p.num_kv_heads = sparq::kMaxHeads;
  EXPECT_EQ(sparq::validate_problem(p), Status::kSuccess);
}

TEST(ValidateProblem, GroupSizeNotDividing) {
  DecodeProblem p = valid_problem();
  p.num_q_heads = 6;
  p.num_kv_heads = 4;
  EXPECT_EQ(sparq::validate_problem(p), Status::kGroupSizeMismatch);
  p.num_q_heads = 2;  // fewer query heads than KV heads
  EXPECT_EQ(sparq::validate_problem(p), Status::kGroupSizeMismatch);
}

TEST(ValidateProblem, UnsupportedHeadDim) {
  DecodeProblem p = valid_problem();
  for (int d : {0, 1, 32, 63, 96, 127, 129, 512}) {
    p.head_dim = d;
    EXPECT_EQ(sparq::validate_problem(p), Status::kUnsupportedHeadDim) << "d=" << d;
  }
  for (int d : {64, 128, 256}) {
    p.head_dim = d;
    EXPECT_EQ(sparq::validate_problem(p), Status::kSuccess) << "d=" << d;
  }
}

TEST(ValidateProblem, InvalidCapacityAndMaxLength) {
  DecodeProblem p = valid_problem();
  p.capacity = 0;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidCapacity);
  // Past a billion rows, int position arithmetic (a length plus a tile) could overflow.
  p.capacity = sparq::kMaxCapacity + 1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kInvalidCapacity);
  p.capacity = sparq::kMaxCapacity;
  EXPECT_EQ(sparq::validate_problem(p), Status::kSuccess);
  p = valid_problem();
  p.max_length = p.capacity + 1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kLengthBeyondCapacity);
  p.max_length = -1;
  EXPECT_EQ(sparq::validate_problem(p), Status::kLengthBeyondCapacity);
}

TEST(ValidateLengths, LengthBeyondCapacityAndNull) {
  DecodeProblem p = valid_problem();
  std::vector<int> lens = {32, 1};
  EXPECT_EQ(sparq::validate_lengths(p, lens.data()), Status::kSuccess);
  EXPECT_EQ(sparq::validate_lengths(p, nullptr), Status::kNullPointer);
  lens = {33, 1};
  EXPECT_EQ(sparq::validate_lengths(p, lens.data()), Status::kLengthBeyondCapacity);
  lens = {4, 0};
  EXPECT_EQ(sparq::validate_lengths(p, lens.data()), Status::kLengthBeyondCapacity);
  p.max_length = 8;  // the host bound is tighter than the capacity
  lens = {9, 1};
  EXPECT_EQ(sparq::validate_lengths(p, lens.data()), Status::kLengthBeyondCapacity);
  lens = {8, 1};
  EXPECT_EQ(sparq::validate_lengths(p, lens.data()), Status::kSuccess);
}

TEST(ValidateConfig, ROutOfRange) {
  SparqConfig c;
  c.r = 0;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidR);
  c.r = 129;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidR);
  c.r = -3;
  EXPECT_EQ(sparq::validate_config(c, 64), Status::kInvalidR);
}

TEST(ValidateConfig, KOutOfRange) {
  SparqConfig c;
  c.k = 0;
  c.local_window = 0;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidK);
  c.k = -5;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidK);
}

TEST(ValidateConfig, LocalWindowOutOfRange) {
  SparqConfig c;
  c.k = 16;
  c.local_window = 17;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidLocalWindow);
  c.local_window = -1;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidLocalWindow);
  c.local_window = 16;
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kSuccess);
}

TEST(ValidateConfig, GqaModeOutOfRange) {
  SparqConfig c;
  c.gqa = static_cast<sparq::GqaMode>(2);
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidGqaMode);
  c.gqa = static_cast<sparq::GqaMode>(-1);
  EXPECT_EQ(sparq::validate_config(c, 128), Status::kInvalidGqaMode);
  EXPECT_NE(std::string(sparq::status_string(Status::kInvalidGqaMode)).find("GQA mode"),
            std::string::npos);
}

TEST(ValidateStrides, PackedViewIsValid) {
  const DecodeProblem p = valid_problem();
  sparq::test::HostKVCache<float> cache(p);
  EXPECT_EQ(sparq::validate_strides(p, cache.view()), Status::kSuccess);
}

TEST(ValidateStrides, BadStrides) {
  const DecodeProblem p = valid_problem();
  sparq::test::HostKVCache<float> cache(p);
  const sparq::KVCacheView<float> good = cache.view();
  using V = sparq::KVCacheView<float>;
  const std::vector<std::pair<const char*, void (*)(V&)>> breakers = {
      {"k_stride_s < d", [](V& c) { c.k_stride_s = 63; }},
      {"k_stride_h = 0", [](V& c) { c.k_stride_h = 0; }},
      {"k_stride_b < 0", [](V& c) { c.k_stride_b = -1; }},
      {"v_stride_s < d", [](V& c) { c.v_stride_s = 1; }},
      {"v_stride_h = 0", [](V& c) { c.v_stride_h = 0; }},
      {"v_stride_b = 0", [](V& c) { c.v_stride_b = 0; }},
      {"kt_stride_d < capacity", [](V& c) { c.kt_stride_d = 31; }},
      {"kt_stride_h = 0", [](V& c) { c.kt_stride_h = 0; }},
      {"kt_stride_b = 0", [](V& c) { c.kt_stride_b = 0; }},
      {"vsum_stride_h < d", [](V& c) { c.vsum_stride_h = 63; }},
      {"vsum_stride_b = 0", [](V& c) { c.vsum_stride_b = 0; }},
  };
  for (const auto& [name, breaker] : breakers) {
    V c = good;
    breaker(c);
    EXPECT_EQ(sparq::validate_strides(p, c), Status::kInvalidStride) << name;
  }
}

TEST(ValidateStrides, NullVsumNeedsNoStrides) {
  // Without reallocation vsum may be null; its strides, left at zero, are then not checked.
  const DecodeProblem p = valid_problem();
  sparq::test::HostKVCache<float> cache(p);
  sparq::KVCacheView<float> c = cache.view();
  c.vsum = nullptr;
  c.vsum_stride_h = c.vsum_stride_b = 0;
  EXPECT_EQ(sparq::validate_strides(p, c), Status::kSuccess);
}

// The reference entry points return the same errors.
class ReferenceErrors : public ::testing::Test {
 protected:
  ReferenceErrors()
      : p(valid_problem()),
        cache(p),
        q(p.batch * p.num_q_heads * p.head_dim, 0.5f),
        out(q.size()),
        lens{8, 4} {
    cache.fill_random(lens, 7);
  }
  DecodeProblem p;
  sparq::test::HostKVCache<float> cache;
  std::vector<float> q;
  std::vector<double> out;
  std::vector<int> lens;
};

TEST_F(ReferenceErrors, SparqDecode) {
  SparqConfig cfg;
  cfg.r = 8;
  cfg.k = 4;
  const auto view = cache.view();
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), view, lens.data(), out.data()),
            Status::kSuccess);
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, static_cast<const float*>(nullptr), view,
                                           lens.data(), out.data()),
            Status::kNullPointer);
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), view, lens.data(), nullptr),
            Status::kNullPointer);
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), view, nullptr, out.data()),
            Status::kNullPointer);
  auto no_kt = view;
  no_kt.kt = nullptr;
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), no_kt, lens.data(), out.data()),
            Status::kNullPointer);
  SparqConfig bad = cfg;
  bad.r = 65;
  EXPECT_EQ(sparq::reference::sparq_decode(p, bad, q.data(), view, lens.data(), out.data()),
            Status::kInvalidR);
  bad = cfg;
  bad.k = 0;
  bad.local_window = 0;
  EXPECT_EQ(sparq::reference::sparq_decode(p, bad, q.data(), view, lens.data(), out.data()),
            Status::kInvalidK);
  bad = cfg;
  bad.local_window = 5;
  EXPECT_EQ(sparq::reference::sparq_decode(p, bad, q.data(), view, lens.data(), out.data()),
            Status::kInvalidLocalWindow);
  DecodeProblem bp = p;
  bp.head_dim = 96;
  EXPECT_EQ(sparq::reference::sparq_decode(bp, cfg, q.data(), view, lens.data(), out.data()),
            Status::kUnsupportedHeadDim);
  bp = p;
  bp.num_q_heads = 7;
  EXPECT_EQ(sparq::reference::sparq_decode(bp, cfg, q.data(), view, lens.data(), out.data()),
            Status::kGroupSizeMismatch);
  std::vector<int> long_lens = {33, 4};
  EXPECT_EQ(sparq::reference::sparq_decode(p, cfg, q.data(), view, long_lens.data(), out.data()),
            Status::kLengthBeyondCapacity);
}

TEST_F(ReferenceErrors, DenseDecode) {
  const auto view = cache.view();
  EXPECT_EQ(sparq::reference::dense_decode(p, q.data(), view, lens.data(), out.data()),
            Status::kSuccess);
  EXPECT_EQ(sparq::reference::dense_decode(p, static_cast<const float*>(nullptr), view, lens.data(),
                                           out.data()),
            Status::kNullPointer);
  auto no_v = view;
  no_v.v = nullptr;
  EXPECT_EQ(sparq::reference::dense_decode(p, q.data(), no_v, lens.data(), out.data()),
            Status::kNullPointer);
  DecodeProblem bp = p;
  bp.batch = 0;
  EXPECT_EQ(sparq::reference::dense_decode(bp, q.data(), view, lens.data(), out.data()),
            Status::kInvalidBatch);
  std::vector<int> zero_lens = {0, 4};
  EXPECT_EQ(sparq::reference::dense_decode(p, q.data(), view, zero_lens.data(), out.data()),
            Status::kLengthBeyondCapacity);
}

TEST_F(ReferenceErrors, AppendKv) {
  const auto view = cache.view();
  const int n = 2;
  std::vector<float> nk(p.batch * p.num_kv_heads * n * p.head_dim, 1.0f), nv(nk);
  EXPECT_EQ(sparq::reference::append_kv(p, view, lens.data(), n, nk.data(), nv.data()),
            Status::kSuccess);
  EXPECT_EQ(sparq::reference::append_kv(p, view, lens.data(), 0, nk.data(), nv.data()),
            Status::kInvalidNewTokens);
  std::vector<int> full = {31, 4};  // 31 + 2 > 32
  EXPECT_EQ(sparq::reference::append_kv(p, view, full.data(), n, nk.data(), nv.data()),
            Status::kInvalidNewTokens);
  EXPECT_EQ(sparq::reference::append_kv(p, view, nullptr, n, nk.data(), nv.data()),
            Status::kNullPointer);
  EXPECT_EQ(sparq::reference::append_kv(p, view, lens.data(), n, static_cast<const float*>(nullptr),
                                        nv.data()),
            Status::kNullPointer);
  auto no_vsum = view;
  no_vsum.vsum = nullptr;
  EXPECT_EQ(sparq::reference::append_kv(p, no_vsum, lens.data(), n, nk.data(), nv.data()),
            Status::kNullPointer);
  DecodeProblem bp = p;
  bp.num_kv_heads = 0;
  EXPECT_EQ(sparq::reference::append_kv(bp, view, lens.data(), n, nk.data(), nv.data()),
            Status::kInvalidHeads);
}

}  // namespace
