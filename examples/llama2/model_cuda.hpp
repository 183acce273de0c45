// The Llama forward pass on a CUDA GPU (model_cuda.cu), behind a plain C++ interface so that
// main.cpp and the tests compile without nvcc. bf16 weights and KV cache, float32 residual
// stream and accumulation; cuBLAS projections (or, for decode steps, the fused matvec kernels of
// matvec.cuh); sparq's kv_append and decode_attention.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model.hpp"
#include "weights.hpp"

namespace llama {

/// Empty when a CUDA device is usable; otherwise why not.
std::string cuda_unavailable_reason();

struct CudaOptions {
  bool graphs = true;    ///< capture each decode step as a CUDA graph (replayed per token)
  bool progress = true;  ///< a progress line on stderr while weights are copied
  /// Decode steps (one token) run their projections as matvec.cuh's kernels, RMSNorm and SiLU·up
  /// fused in, instead of cuBLAS (prefill always uses cuBLAS). On an H100, 7B shapes at 4k
  /// positions: 6.8 against 8.3 ms per token.
  bool fused_matvec = true;
  /// With fused_matvec: RoPE and the bf16 rounding of q, k, v in the q/k/v matvec's epilogue
  /// instead of a kernel of their own (the same bits; one launch fewer per layer).
  bool fused_rope = true;
  /// With fused_rope: the same epilogue also appends k and v to the KV cache (sparq's append
  /// stores, sparq/device/kv_append_element.cuh) in place of sparq::kv_append's launch (the
  /// same cache contents; one launch fewer per layer).
  bool fused_append = true;
  /// Decode steps launch their kernels (the fused matvecs, RoPE, sparq's append and attention
  /// launches; dense and the dataflow route only with zeroed_workspace) as programmatic
  /// dependent launches, each starting while the one before finishes
  /// (sm_90; ignored elsewhere). Not yet timed on a GPU, so off by default.
  bool dependent_launch = false;
  /// The decode attention's workspace is zeroed when it is allocated, and every launch is told
  /// so (sparq's workspace_zeroed): no memset of counters per layer, and with dependent_launch
  /// the attention kernel starts as a dependent too. False: a memset before each launch.
  bool zeroed_workspace = true;
  /// With fused_rope: the q/k/v matvec, once its rows are read, prefetches the o projection's
  /// weights into L2 (evict_last, in a persisting set-aside of L2 this model sets for its
  /// lifetime), so that they arrive while the attention launch mostly waits on latency and the o
  /// matvec reads them from L2. Ignored where the device has no L2 persistence (MIG, before
  /// sm_80). Off by default: on an H200 (run 12) it made a 7B step slower, 4.58 against 4.89 ms
  /// dense at 4k, as the q/k/v matvec's end waited for its prefetches.
  bool l2_prefetch = false;
  /// Prefill attention as cuBLAS GEMMs around a masked softmax (prefill_attention.cuh), or, if
  /// false, the simple kernel (one block per token and head, a row at a time).
  bool prefill_gemm = true;
  /// Bytes of scores and probabilities one chunk of prefill queries may use (gemm version):
  /// at 1 GiB a 32k-token 7B prompt runs in chunks of about 170 queries.
  size_t prefill_attention_bytes = size_t(1) << 30;
  /// A prompt is prefilled in pieces of at most this many tokens (each attends to the ones
  /// before), so prefill's scratch memory stays bounded (about 0.9 GB at 4096 for 7B).
  int prefill_tokens = 4096;
};

/// Loads a checkpoint's weights (bf16, fp16 or fp32; converted to bf16) onto the GPU.
std::unique_ptr<Model> make_cuda_model(const Checkpoint& ck, int max_seq_len,
                                       const CudaOptions& opt);

/// Whether CudaOptions::dependent_launch takes effect here: an sm_90 device, and kernels built
/// for it (elsewhere the option is ignored).
bool cuda_dependent_launch_available();

/// Bytes of the o projection CudaOptions::l2_prefetch would keep in L2 for a model of `cfg`
/// on the current device: the projection's bytes, at most the device's largest persisting
/// set-aside (0 where there is none).
size_t cuda_l2_prefetch_bytes(const Config& cfg);

/// The device's copy bandwidth in GB/s (1e9 bytes/s): the median of five device-to-device
/// copies of 1 GiB, counting each byte read and written (2 GiB per copy).
double device_copy_bandwidth_gbs();

/// The model `cfg` describes with random weights, generated on the GPU (for --random-weights).
std::unique_ptr<Model> make_cuda_model_random(const Config& cfg, int max_seq_len, uint64_t seed,
                                              const CudaOptions& opt);

}  // namespace llama
