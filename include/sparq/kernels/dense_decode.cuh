// Host launch API of dense decode attention (the baseline, and what runs when SparQ is off):
// split-KV flash decoding with exact merging of partial softmax states, GQA-aware (each K and V
// row is read once per group). Same validation, workspace and graph rules as sparq_decode.
#pragma once

#include <cuda_runtime.h>

#include "sparq/kernels/attend_kernel.cuh"
#include "sparq/kernels/launch_common.cuh"

namespace sparq {

template <typename T>
struct DenseDecodeParams {
  DecodeProblem problem;
  const T* q = nullptr;          ///< [B, Hq, d]
  KVCacheView<T> cache;          ///< K and V are read; Kt and Vsum are not used
  const int* lengths = nullptr;  ///< device [B]
  T* out = nullptr;              ///< [B, Hq, d]
  /// The workspace is clean: no memset before the kernel (the same contract as
  /// SparqDecodeParams::workspace_zeroed, which it shares).
  bool workspace_zeroed = false;
  /// With workspace_zeroed, on sm_90: the kernel starts as a programmatic dependent of the
  /// previous launch (as SparqDecodeParams::dependent_launch; ignored without
  /// workspace_zeroed, where a memset comes between).
  bool dependent_launch = false;
};

namespace kernels {

template <typename T>
struct DensePlan {
  WorkspaceCarver carver;
  AttendSplits<T> attend;  // its counters: the counter region, carved first
  size_t bytes = 0;

  /// `fixed_splits` > 0: exactly that many splits per unit (the benchmark's split rows);
  /// otherwise the occupancy rule with at least 256 rows per split.
  DensePlan(const DecodeProblem& p, void* workspace, int fixed_splits = 0)
      : carver(workspace),
        attend(p, p.group_size(), static_cast<int64_t>(p.batch) * p.num_kv_heads, p.length_bound(),
               256, carver, carver.take<unsigned>(counter_region_count(p)), fixed_splits),
        bytes(carver.bytes()) {}
};

template <typename T>
Status validate_dense(const DenseDecodeParams<T>& a) {
  if (Status s = validate_problem(a.problem); !ok(s)) return s;
  if (a.q == nullptr || a.out == nullptr || a.lengths == nullptr || a.cache.k == nullptr ||
      a.cache.v == nullptr)
    return Status::kNullPointer;
  const DecodeProblem& p = a.problem;
  const int64_t d = p.head_dim;
  const KVCacheView<T>& c = a.cache;
  if (c.k_stride_s < d || c.k_stride_h < 1 || c.k_stride_b < 1 || c.v_stride_s < d ||
      c.v_stride_h < 1 || c.v_stride_b < 1)
    return Status::kInvalidStride;
  return check_cache_alignment(a.cache, /*need_kt=*/false);
}

/// The attend kernel's parameters for dense decoding: every row of each KV head, its group's
/// query heads as one unit, split as `plan` says.
template <typename T>
AttendParams<T> dense_attend_params(const DenseDecodeParams<T>& a, const DensePlan<T>& plan) {
  const DecodeProblem& p = a.problem;
  const int g = p.group_size();
  return AttendParams<T>{a.q,
                         a.cache,
                         a.lengths,
                         a.out,
                         p.num_q_heads,
                         p.num_kv_heads,
                         g,
                         g,
                         p.length_bound(),
                         plan.attend.rows_per_split,
                         plan.attend.splits,
                         nullptr,
                         0,
                         0,
                         nullptr,
                         plan.attend.partial_ml,
                         plan.attend.partial_acc,
                         plan.attend.counters};
}

/// The attend kernel over every row, as `plan` splits it (the plan carved from the workspace
/// of `workspace_bytes` the launch uses). The parameters are validated, and a plan larger than
/// the workspace (more fixed splits than it was sized for) is refused, before anything runs.
template <typename T>
Status launch_dense(const DenseDecodeParams<T>& a, const DensePlan<T>& plan, size_t workspace_bytes,
                    cudaStream_t stream) {
  if (Status s = validate_dense(a); !ok(s)) return s;
  if (workspace_bytes < plan.bytes) return Status::kWorkspaceTooSmall;
  const DecodeProblem& p = a.problem;
  const AttendParams<T> ap = dense_attend_params(a, plan);
  const bool dependent = a.workspace_zeroed && a.dependent_launch && dependent_launch_supported();
  return dispatch_head_dim(p.head_dim, [&](auto dim) {
    return launch_attend<T, decltype(dim)::value>(ap, plan.attend, p.batch, stream,
                                                  !a.workspace_zeroed, dependent);
  });
}

}  // namespace kernels

template <typename T>
Status dense_decode_workspace_size(const DecodeProblem& problem, size_t* bytes) {
  if (bytes == nullptr) return Status::kNullPointer;
  if (Status s = validate_problem(problem); !ok(s)) return s;
  *bytes = kernels::DensePlan<T>(problem, nullptr).bytes;
  return Status::kSuccess;
}

template <typename T>
Status dense_decode(const DenseDecodeParams<T>& a, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream) {
  if (Status s = kernels::validate_dense(a); !ok(s)) return s;
  if (workspace == nullptr) return Status::kNullPointer;
  if (!kernels::aligned16(workspace)) return Status::kMisalignedPointer;
  const DecodeProblem& p = a.problem;
  return kernels::launch_dense(a, kernels::DensePlan<T>(p, workspace), workspace_bytes, stream);
}

}  // namespace sparq
