// One entry point for a decode step's attention: dense, SparQ or auto (see attention_mode.hpp).
#pragma once

#include <algorithm>

#include "sparq/attention_mode.hpp"
#include "sparq/kernels/dense_decode.cuh"
#include "sparq/kernels/sparq_decode.cuh"

namespace sparq {

/// Workspace that decode_attention needs in `mode` (auto: enough for either choice).
template <typename T>
Status decode_attention_workspace_size(AttentionMode mode, const DecodeProblem& p,
                                       const SparqConfig& c, size_t* bytes) {
  if (bytes == nullptr) return Status::kNullPointer;
  size_t dense = 0, sparse = 0;
  if (mode != AttentionMode::kSparq)
    if (Status s = dense_decode_workspace_size<T>(p, &dense); !ok(s)) return s;
  if (mode != AttentionMode::kDense)
    if (Status s = sparq_decode_workspace_size<T>(p, c, &sparse); !ok(s)) return s;
  *bytes = std::max(dense, sparse);
  return Status::kSuccess;
}

/// Runs dense or SparQ attention as `mode` resolves for this problem. Dense ignores the
/// config, Kt and Vsum, and takes workspace_zeroed and dependent_launch as they are.
template <typename T>
Status decode_attention(AttentionMode mode, const SparqDecodeParams<T>& a, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream, const AutoRule& rule = {}) {
  if (resolve_attention_mode(mode, a.problem, a.config, rule) == AttentionMode::kSparq)
    return sparq_decode(a, workspace, workspace_bytes, stream);
  DenseDecodeParams<T> d;
  d.problem = a.problem;
  d.q = a.q;
  d.cache = a.cache;
  d.lengths = a.lengths;
  d.out = a.out;
  d.workspace_zeroed = a.workspace_zeroed;
  d.dependent_launch = a.dependent_launch;
  return dense_decode(d, workspace, workspace_bytes, stream);
}

}  // namespace sparq
