// Status codes returned by every public entry point; each has a human-readable message.
#pragma once

namespace sparq {

enum class Status : int {
  kSuccess = 0,
  kInvalidBatch,          // batch < 1 or > kMaxBatch, or batch x num_q_heads > kMaxQueryRows
  kInvalidHeads,          // a head count < 1 or num_q_heads > kMaxHeads
  kGroupSizeMismatch,     // num_q_heads is not a multiple of num_kv_heads
  kUnsupportedHeadDim,    // head_dim not in {64, 128, 256}
  kUnsupportedDType,      // element type not float, half or bfloat16
  kInvalidCapacity,       // capacity < 1 or > kMaxCapacity
  kLengthBeyondCapacity,  // a sequence length (or max_length) is outside [1, capacity]
  kInvalidR,              // r outside [1, head_dim]
  kInvalidK,              // k < 1
  kInvalidLocalWindow,    // local window outside [0, k]
  kInvalidCompression,    // compression ratio < 1 or not finite
  kInvalidGqaMode,        // SparqConfig::gqa is not a GqaMode value
  kInvalidNewTokens,      // tokens to append < 1, or they would overflow the capacity
  kNullPointer,           // a required pointer is null
  kMisalignedPointer,     // a pointer or stride breaks the vector-load alignment
  kInvalidStride,         // a stride is non-positive or makes rows overlap
  kWorkspaceTooSmall,     // the workspace is smaller than the size query returned
  kUnsupportedGroupSize,  // more than 32 query heads would share one selection
  kUnsupportedDevice,     // a forced kernel route needs what this device lacks (sm_90 clusters)
  kCudaError,             // a CUDA runtime call failed; see cudaGetLastError
};

inline const char* status_string(Status s) {
  switch (s) {
    case Status::kSuccess:
      return "success";
    case Status::kInvalidBatch:
      return "invalid batch size: must be in [1, 65535], with batch x num_q_heads at most 4194304";
    case Status::kInvalidHeads:
      return "invalid head count: num_q_heads and num_kv_heads must be >= 1, num_q_heads <= 65535";
    case Status::kGroupSizeMismatch:
      return "num_q_heads must be a multiple of num_kv_heads (GQA group size must divide)";
    case Status::kUnsupportedHeadDim:
      return "unsupported head_dim: must be 64, 128 or 256";
    case Status::kUnsupportedDType:
      return "unsupported element type: must be float, half or bfloat16";
    case Status::kInvalidCapacity:
      return "invalid cache capacity: must be in [1, 2^30]";
    case Status::kLengthBeyondCapacity:
      return "sequence length out of range: must be in [1, capacity]";
    case Status::kInvalidR:
      return "r out of range: must be in [1, head_dim]";
    case Status::kInvalidK:
      return "k out of range: must be >= 1";
    case Status::kInvalidLocalWindow:
      return "local window out of range: must be in [0, k]";
    case Status::kInvalidCompression:
      return "compression ratio out of range: must be finite and >= 1";
    case Status::kInvalidGqaMode:
      return "invalid GQA mode: must be GqaMode::kShared or GqaMode::kPerQueryHead";
    case Status::kInvalidNewTokens:
      return "invalid number of new tokens: must be >= 1 and fit in the cache capacity";
    case Status::kNullPointer:
      return "a required pointer is null";
    case Status::kMisalignedPointer:
      return "a pointer or stride is not aligned to 16 bytes as vector loads require";
    case Status::kInvalidStride:
      return "invalid stride: strides must be positive and rows disjoint";
    case Status::kWorkspaceTooSmall:
      return "workspace too small: pass at least the size the workspace query returned";
    case Status::kUnsupportedGroupSize:
      return "unsupported GQA group: at most 32 query heads may share one KV head's selection";
    case Status::kUnsupportedDevice:
      return "unsupported device: this kernel route needs sm_90 thread-block clusters and enough "
             "shared memory for the length bound";
    case Status::kCudaError:
      return "CUDA runtime error";
  }
  return "unknown status";
}

inline bool ok(Status s) {
  return s == Status::kSuccess;
}

}  // namespace sparq
