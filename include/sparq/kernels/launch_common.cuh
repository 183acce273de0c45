// Helpers shared by the launchers: head-dim dispatch, device facts, alignment checks,
// workspace carving. Nothing here synchronises with the device or allocates.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sparq/problem.hpp"
#include "sparq/status.hpp"

namespace sparq::kernels {

/// Calls f(std::integral_constant<int, D>{}) for the supported head dims.
template <typename F>
Status dispatch_head_dim(int d, F&& f) {
  switch (d) {
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
    case 256:
      return f(std::integral_constant<int, 256>{});
    default:
      return Status::kUnsupportedHeadDim;
  }
}

/// Multiprocessors of the current device (a host query; no synchronisation).
inline int device_sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  return sms;
}

/// Peak DRAM bandwidth per multiprocessor in GB/s from the device attributes: the memory
/// clock in kHz (double data rate), the bus width in bits, the SM count; 0 if one is unknown.
inline double peak_dram_gbs_per_sm(int memory_khz, int bus_bits, int sms) {
  if (memory_khz <= 0 || bus_bits <= 0 || sms <= 0) return 0;
  return 2.0 * memory_khz * 1e3 * (bus_bits / 8.0) / 1e9 / sms;
}

/// Peak DRAM bandwidth of the current device per multiprocessor in GB/s (memory clock, double
/// data rate, bus width), or 0 where unknown or no device. These attribute queries took about
/// 0.6 ms per call on an H100 (run 11a), too slow for a launch path that plans every call, so
/// each device's value is queried once per process (no synchronisation either way).
inline double device_dram_gbs_per_sm() {
  constexpr int kCachedDevices = 64;
  static std::atomic<float> cache[kCachedDevices];  // 0: not queried yet; -1: unknown
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  const bool cached = dev >= 0 && dev < kCachedDevices;
  if (cached) {
    const float v = cache[dev].load(std::memory_order_relaxed);
    if (v != 0) return v > 0 ? v : 0;
  }
  int khz = 0, bits = 0;
  const int sms = device_sm_count();
  float gbs = -1;
  if (sms > 0 && cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess &&
      khz > 0 && bits > 0)
    gbs = static_cast<float>(peak_dram_gbs_per_sm(khz, bits, sms));
  else
    cudaGetLastError();  // this query's own error, not left for the caller
  if (cached) cache[dev].store(gbs, std::memory_order_relaxed);
  return gbs > 0 ? gbs : 0;
}

/// SM count used to plan grids: the device's, or a fixed stand-in where none is present
/// (so workspace queries work, and give stable answers, on machines without a GPU).
inline int planning_sm_count() {
  const int sms = device_sm_count();
  return sms > 0 ? sms : 132;
}

inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

/// Vector loads need 16-byte aligned rows: base pointers and every stride in bytes.
template <typename T>
Status check_cache_alignment(const KVCacheView<T>& c, bool need_kt) {
  auto ok16 = [](int64_t stride_elems) { return (stride_elems * sizeof(T)) % 16 == 0; };
  if (!aligned16(c.k) || !aligned16(c.v)) return Status::kMisalignedPointer;
  if (!ok16(c.k_stride_b) || !ok16(c.k_stride_h) || !ok16(c.k_stride_s))
    return Status::kMisalignedPointer;
  if (!ok16(c.v_stride_b) || !ok16(c.v_stride_h) || !ok16(c.v_stride_s))
    return Status::kMisalignedPointer;
  if (need_kt) {
    if (!aligned16(c.kt)) return Status::kMisalignedPointer;
    if (!ok16(c.kt_stride_b) || !ok16(c.kt_stride_h) || !ok16(c.kt_stride_d))
      return Status::kMisalignedPointer;
  }
  return Status::kSuccess;
}

/// Bump allocator over a caller-provided workspace (256-byte aligned pieces).
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename U>
  U* take(int64_t count) {
    U* p = base_ ? reinterpret_cast<U*>(base_ + offset_) : nullptr;
    offset_ += (static_cast<int64_t>(sizeof(U)) * count + 255) / 256 * 256;
    return p;
  }
  size_t bytes() const { return static_cast<size_t>(offset_); }

 private:
  char* base_;
  int64_t offset_ = 0;
};

/// The counters every decode launch uses (the attend kernel's per-unit merge counts; the
/// dataflow route's ticket and per-unit progress) live at the start of the workspace, in a
/// region whose size depends on the batch and the query heads only: 1 + 4 counters per
/// (sequence, query head), enough for any route (units are at most the query heads). So
/// every plan, dense or SparQ, any route, bound or config, finds its counters at the same
/// place, and since every launch leaves its counters zero, a workspace zeroed once stays
/// clean for all of them (`workspace_zeroed` in the launch parameters).
inline int64_t counter_region_count(const DecodeProblem& p) {
  return 1 + 4 * static_cast<int64_t>(p.batch) * p.num_q_heads;
}

/// Bytes of the counter region as the carver carves it.
inline size_t counter_region_bytes(const DecodeProblem& p) {
  WorkspaceCarver w(nullptr);
  w.take<unsigned>(counter_region_count(p));
  return w.bytes();
}

/// Returns the last launch error as a Status (launch errors are never swallowed).
inline Status last_launch_status() {
  return cudaGetLastError() == cudaSuccess ? Status::kSuccess : Status::kCudaError;
}

inline int ceil_div(int64_t a, int64_t b) {
  return static_cast<int>((a + b - 1) / b);
}

/// Blocks of `kernel` (with `threads` threads) resident on the whole device at once; a fixed
/// stand-in where no device is present.
template <typename Kernel>
int device_slots(Kernel kernel, int threads, size_t dynamic_smem = 0) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, dynamic_smem) !=
          cudaSuccess ||
      per_sm < 1) {
    cudaGetLastError();  // clear the error of a machine without a device
    per_sm = 4;
  }
  return per_sm * planning_sm_count();
}

/// Dynamic shared memory a kernel may use after raising its limit to the device's opt-in
/// maximum (done here, once per kernel); 0 where that fails or there is no device.
template <typename Kernel>
int raise_dynamic_smem(Kernel kernel) {
  int dev = 0, optin = 0;
  cudaFuncAttributes attr{};
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const int dynamic = optin - static_cast<int>(attr.sharedSizeBytes) - 1024;
  if (dynamic <= 0 || cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           dynamic) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return dynamic;
}

inline bool device_has_clusters() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 9;
}

/// A launch configuration with thread-block clusters of `cluster_x` blocks along x (sm_90;
/// 0: not launched as clusters) and, where `dependent`, programmatic stream serialization (sm_90:
/// the kernel may launch before the previous one in the stream completes; it must begin with
/// device::begin_dependent_grid). The cluster size is a launch attribute rather than
/// __cluster_dims__, so that the kernels also compile for architectures without clusters (where
/// they are never launched). Not copyable: the configuration points at its own attributes.
struct KernelLaunch {
  cudaLaunchConfig_t cfg{};
  cudaLaunchAttribute attr[2];
  KernelLaunch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, unsigned cluster_x,
               bool dependent = false) {
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    unsigned n = 0;
    if (cluster_x > 0) {
      attr[n].id = cudaLaunchAttributeClusterDimension;
      attr[n].val.clusterDim.x = cluster_x;
      attr[n].val.clusterDim.y = 1;
      attr[n].val.clusterDim.z = 1;
      ++n;
    }
    if (dependent) {
      attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[n].val.programmaticStreamSerializationAllowed = 1;
      ++n;
    }
    cfg.attrs = n > 0 ? attr : nullptr;
    cfg.numAttrs = n;
  }
  KernelLaunch(const KernelLaunch&) = delete;
  KernelLaunch& operator=(const KernelLaunch&) = delete;
};

/// Whether `kernel`'s code came from sm_90 or later PTX, so that its griddepcontrol.wait exists.
/// A build for an older architecture, JIT-compiled on an H100, has none: launched as a
/// dependent it would start before the kernel it depends on has finished.
template <typename Kernel>
bool kernel_waits_for_prior_grids(Kernel kernel) {
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.ptxVersion >= 90;
}

/// Compiled with the same flags as every kernel of these headers: stands for them in
/// dependent_launch_supported.
template <int = 0>
__global__ void dependent_launch_probe_kernel() {}

/// Whether dependent launches may be used: an sm_90 device, and kernels compiled from sm_90
/// PTX (their wait exists). Every switch for dependent launches (SparQ plan, KV append, the
/// Llama example) goes through here; the build part is asked once per process.
inline bool dependent_launch_supported() {
  static const bool compiled = kernel_waits_for_prior_grids(dependent_launch_probe_kernel<>);
  return compiled && device_has_clusters();
}

/// Launches `kernel` over `grid` in clusters of `cluster_x` blocks along x (sm_90; 0: not as
/// clusters), as a programmatic dependent of the previous launch where `dependent` (only where
/// dependent_launch_supported()).
template <typename... Params, typename... Args>
cudaError_t launch_ex(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream, unsigned cluster_x, bool dependent, Args&&... args) {
  const KernelLaunch launch(grid, block, smem, stream, cluster_x, dependent);
  return cudaLaunchKernelEx(&launch.cfg, kernel, static_cast<Args&&>(args)...);
}

/// Splits of a sequence of up to n rows among blocks, for batch_units independent rows lists
/// and `slots` resident blocks: the fewest splits whose last wave is at least 95% full (or the
/// fullest found), with at least min_rows rows per split.
inline int plan_splits(int64_t n, int64_t batch_units, int min_rows, int64_t slots) {
  int64_t most = (n + min_rows - 1) / min_rows;
  if (most < 1) most = 1;
  if (most > 256) most = 256;
  int best = 1;
  double best_eff = 0.0;
  for (int64_t s = 1; s <= most; ++s) {
    const int64_t blocks = batch_units * s;
    const int64_t waves = (blocks + slots - 1) / slots;
    const double eff = static_cast<double>(blocks) / static_cast<double>(waves * slots);
    if (eff >= 0.95) return static_cast<int>(s);  // the fewest splits that fill the last wave
    if (eff > best_eff + 0.02) {  // else the fullest, preferring fewer splits on near ties
      best = static_cast<int>(s);
      best_eff = eff;
    }
  }
  return best;
}

/// Consecutive chunks per block for `units` independent rows of `chunks` chunks each, with
/// `slots` resident blocks: the count (1..64) that minimises the estimated makespan, waves x
/// (iters + a prologue worth half a chunk), so the last wave is not left mostly empty; on
/// ties the fewest blocks.
inline int plan_chunk_iters(int64_t chunks, int64_t units, int64_t slots) {
  if (chunks < 1 || units < 1 || slots < 1) return 1;
  int best = 1;
  double best_time = -1.0;
  const int64_t most = chunks < 64 ? chunks : 64;
  for (int64_t iters = 1; iters <= most; ++iters) {
    const int64_t per_unit = (chunks + iters - 1) / iters;
    const int64_t waves = (units * per_unit + slots - 1) / slots;
    const double time = static_cast<double>(waves) * (static_cast<double>(iters) + 0.5);
    if (best_time < 0.0 || time < best_time - 1e-9 || (time <= best_time + 1e-9 && iters > best)) {
      best = static_cast<int>(iters);
      best_time = time;
    }
  }
  return best;
}

}  // namespace sparq::kernels
