// A second translation unit that includes every CUDA header (see test_header_only_linking.cu).
#include "sparq/cuda.cuh"

size_t workspace_bytes_from_second_unit(const sparq::DecodeProblem& p,
                                        const sparq::SparqConfig& c) {
  size_t bytes = 0;
  if (!sparq::ok(sparq::sparq_decode_workspace_size<__nv_bfloat16>(p, c, &bytes))) return 0;
  return bytes;
}
