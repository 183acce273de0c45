// The library is header-only: a program may include it from several .cu files. This binary
// links two translation units that both include sparq/cuda.cuh (a kernel defined in a header
// as a plain, non-template __global__ function would be defined twice and fail to link), and
// checks that both see the same plan.
#include <gtest/gtest.h>

#include "sparq/cuda.cuh"

size_t workspace_bytes_from_second_unit(const sparq::DecodeProblem& p, const sparq::SparqConfig& c);

TEST(HeaderOnly, TwoTranslationUnitsLinkAndAgree) {
  const sparq::DecodeProblem p{/*batch=*/2, /*num_q_heads=*/8, /*num_kv_heads=*/2,
                               /*head_dim=*/128, /*capacity=*/4096};
  sparq::SparqConfig c;
  c.r = 16;
  c.k = 256;
  size_t here = 0;
  ASSERT_EQ(sparq::sparq_decode_workspace_size<__nv_bfloat16>(p, c, &here),
            sparq::Status::kSuccess);
  EXPECT_GT(here, 0u);
  EXPECT_EQ(workspace_bytes_from_second_unit(p, c), here);
}
