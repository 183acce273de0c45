// Programmatic dependent launch (sm_90): a kernel launched with the programmatic stream
// serialization attribute may start while the kernel before it in the stream is finishing,
// so its launch latency hides behind that kernel's tail. Every kernel of the SparQ launches
// calls both functions first: it waits for the grids it depends on (complete, their memory
// visible) before reading or writing anything, then lets its own dependents start launching.
// Both are no-ops where the kernel was launched without the attribute, and before sm_90.
#pragma once

namespace sparq::device {

__device__ __forceinline__ void wait_for_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependent_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// Both, in order: the prologue of every kernel that may be launched as a dependent.
__device__ __forceinline__ void begin_dependent_grid() {
  wait_for_prior_grids();
  allow_dependent_grids();
}

}  // namespace sparq::device
