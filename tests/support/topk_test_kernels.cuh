// The radix top-k on its own, as the GPU test of the building blocks launches it and the CPU
// emulation runs it (each wraps these bodies in a kernel of its own): one block over all keys,
// or a cluster of blocks that each hold the segment of positions the kernels give them.
// Include after the library's headers.
#pragma once

#include <cstdint>

namespace sparq::test {

/// One block of kThreads: the top `count` of keys[0..n), positions in order into out, the
/// number written into *written.
template <int kThreads>
__device__ void block_topk(const uint32_t* keys, int n, int count, int* out, int* written) {
  using TopK = sparq::device::BlockTopK<kThreads>;
  __shared__ typename TopK::TempStorage ts;
  TopK::clear_histogram(ts);
  __syncthreads();
  // Whole warps in every step (add_all is converged): a lane past the end adds nothing.
  for (int s = threadIdx.x; s - static_cast<int>(threadIdx.x & 31) < n; s += kThreads)
    TopK::add_all(ts.hist, s < n ? keys[s] >> 24 : 0u, s < n);
  __syncthreads();
  int need = 0;
  const uint32_t t = TopK::threshold(ts, keys, n, count, &need);
  const int w = TopK::compact(ts, keys, n, t, need, out);
  if (threadIdx.x == 0) *written = w;
}

/// A block of a cluster of kClusterBlocks (kThreads each, sm_90): the top `count` of
/// keys[0..len) across the cluster (select_detail::cluster_top_k), this block's segment copied
/// into s_keys (dynamic shared memory, 16-byte aligned, cluster_segment(len) words).
template <int kThreads, typename Cluster>
__device__ void cluster_topk(Cluster& cluster, const uint32_t* keys, int len, int count, int* out,
                             uint32_t* s_keys) {
  namespace sk = sparq::kernels;
  using TopK = sparq::device::BlockTopK<kThreads>;
  __shared__ sk::ClusterTopKShared<kThreads> sh;
  const int rank = static_cast<int>(cluster.block_rank());
  const int seg = sk::cluster_segment(len);
  const int begin = min(rank * seg, len), n = min(begin + seg, len) - begin;
  sh.clear();
  __syncthreads();
  for (int s = threadIdx.x; s - static_cast<int>(threadIdx.x & 31) < n; s += kThreads) {
    const uint32_t key = s < n ? keys[begin + s] : 0u;
    if (s < n) s_keys[s] = key;
    TopK::add_all(sh.hist[0], key >> 24, s < n);
  }
  __syncthreads();
  int first = 0, last = 0;
  sk::select_detail::cluster_top_k<kThreads>(cluster, sh, s_keys, n, count, begin, rank, out,
                                             &first, &last);
  cluster.sync();  // every block's shared memory stays alive until all have read it
}

}  // namespace sparq::test
