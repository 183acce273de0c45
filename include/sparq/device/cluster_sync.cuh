// A cluster barrier for data exchanged through shared memory only (sm_90). cluster.sync()
// releases and acquires every state space at cluster scope, which ptxas implements with a
// GPU-scope MEMBAR that waits for all of the thread's outstanding memory operations and an L1
// invalidation: run 8 measured memory-fence stalls beside the barriers in the cluster selection.
// Where a barrier only publishes this block's shared-memory writes to the cluster's later
// shared-memory reads, a release fence restricted to shared::cta before a relaxed arrive, and
// an acquire fence restricted to shared::cluster after the wait, are enough (PTX ISA 8.6; the
// restricted release is a CTA-scope MEMBAR in the SASS).
//
// What it does not order: global memory, and reads made before it against writes made after
// it in another block (write-after-read). A caller must not overwrite shared memory that
// another block may still read across such a barrier; cluster.sync() remains the barrier for
// that (the kernels' last one, which keeps a block's shared memory alive until all have read).
#pragma once

namespace sparq::device {

/// Barrier of every thread of the cluster, after which shared memory written by any block
/// before it is visible to reads of any block after it. Call from every thread of every block.
template <typename Cluster>
__device__ __forceinline__ void cluster_sync_shared(const Cluster& cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 8))
  (void)cluster;
  asm volatile(
      "fence.release.sync_restrict::shared::cta.cluster;\n\t"
      "barrier.cluster.arrive.relaxed.aligned;\n\t"
      "barrier.cluster.wait.aligned;\n\t"
      "fence.acquire.sync_restrict::shared::cluster.cluster;" ::
          : "memory");
#else
  cluster.sync();  // older toolkits (no restricted fences), and the CPU emulation
#endif
}

}  // namespace sparq::device
