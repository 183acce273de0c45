// Emulation stub: clusters are not emulated (the cluster kernels must not be run).
#pragma once
#include <cstdio>
#include <cstdlib>
namespace cooperative_groups {
struct cluster_group {
  unsigned block_rank() const { return 0; }
  void sync() const {
    std::fprintf(stderr, "emu: cluster kernels not emulated\n");
    std::abort();
  }
  template <typename U>
  U* map_shared_rank(U* p, unsigned) const {
    sync();
    return p;
  }
};
inline cluster_group this_cluster() {
  return {};
}
}  // namespace cooperative_groups
