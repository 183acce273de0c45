// The comparison rules the GPU tests and the CPU emulation share (tests/support/compare.hpp):
// each must accept what it should and reject what it should, or those tests could not fail.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "support/compare.hpp"

namespace {

using sparq::test::selection_mismatch;

// Keys of 8 positions; the reference takes the top 3 outside a window of the last 2.
const std::vector<double> kKeys = {0.9, 0.1, 0.50001, 0.5, 0.2, 0.7, 0.05, 0.01};
const std::vector<int> kRef = {0, 2, 5, 6, 7};  // 0.9, 0.7, 0.50001 (k-th); window 6, 7

TEST(SelectionMismatch, AcceptsTheSameSetInAnyOrder) {
  EXPECT_EQ(selection_mismatch({7, 6, 5, 2, 0}, kRef, kKeys, 6), "");
}

TEST(SelectionMismatch, AcceptsANearTieAtTheKth) {
  // 3 (0.5) instead of 2 (0.50001): within 1e-4 of the k-th key.
  EXPECT_EQ(selection_mismatch({0, 3, 5, 6, 7}, kRef, kKeys, 6), "");
}

TEST(SelectionMismatch, RejectsAnyDifferenceWithExactTies) {
  EXPECT_NE(selection_mismatch({0, 3, 5, 6, 7}, kRef, kKeys, 6, /*exact_ties=*/true), "");
}

TEST(SelectionMismatch, RejectsAPositionFarFromTheKth) {
  EXPECT_NE(selection_mismatch({0, 4, 5, 6, 7}, kRef, kKeys, 6), "");  // 0.2 for 0.5
  EXPECT_NE(selection_mismatch({1, 2, 5, 6, 7}, kRef, kKeys, 6), "");  // 0.1 for 0.9
}

TEST(SelectionMismatch, RejectsBrokenSelections) {
  EXPECT_NE(selection_mismatch({0, 2, 5, 6, 6}, kRef, kKeys, 6), "");   // duplicate
  EXPECT_NE(selection_mismatch({0, 2, 5, 6}, kRef, kKeys, 6), "");      // too few
  EXPECT_NE(selection_mismatch({0, 2, 5, 6, 8}, kRef, kKeys, 6), "");   // out of range
  EXPECT_NE(selection_mismatch({0, 2, 5, 6, -1}, kRef, kKeys, 6), "");  // unwritten slot
  EXPECT_NE(selection_mismatch({0, 2, 3, 5, 6}, kRef, kKeys, 6), "");   // window 7 missing
}

TEST(Compare, RelativeL2AndCounts) {
  EXPECT_DOUBLE_EQ(sparq::test::relative_l2({1.0, 2.0}, {1.0, 2.0}), 0.0);
  EXPECT_NEAR(sparq::test::relative_l2({3.0, 4.0}, {0.0, 0.0}), 5.0, 1e-12);  // absolute at 0
  EXPECT_NEAR(sparq::test::relative_l2({1.0, 0.0}, {0.0, 1.0}), std::sqrt(2.0), 1e-12);
  EXPECT_EQ(sparq::test::count_non_finite({1.0, NAN, INFINITY, 0.0}), 2u);
  const std::vector<float> a = {1.f, -0.f, 2.f}, b = {1.f, 0.f, 2.f};
  EXPECT_EQ(sparq::test::count_bits_differ(a, b), 1u);  // -0 and +0 differ in bits
  EXPECT_EQ(sparq::test::count_bits_differ(a, std::vector<float>{1.f}), 2u);
}

}  // namespace
