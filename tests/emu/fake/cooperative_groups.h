// Emulation of the cluster API the kernels use (sm_90 thread-block clusters): shim.hpp runs a
// cluster's blocks together; sync() is a barrier over all their threads and map_shared_rank()
// the same shared variable in another block of the cluster.
#pragma once
namespace cooperative_groups {
struct cluster_group {
  unsigned block_rank() const { return static_cast<unsigned>(::emu::cb->rank); }
  unsigned num_blocks() const { return static_cast<unsigned>(::emu::cb->cluster->blocks.size()); }
  void sync() const { ::emu::cluster_barrier(); }
  template <typename U>
  U* map_shared_rank(U* p, unsigned rank) const {
    return static_cast<U*>(::emu::map_shared(p, rank));
  }
};
inline cluster_group this_cluster() {
  return {};
}
}  // namespace cooperative_groups
