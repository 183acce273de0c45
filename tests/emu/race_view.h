// Race check: what the emulator (shim.hpp) tells race_alias.cpp about the running block and its
// cluster, set at each block switch. Outside a kernel, `blocks` is 0.
#pragma once
#include <cstddef>

struct EmuRaceView {
  static constexpr int kMaxBlocks = 16;
  const char* kernel;
  int rank;                                // of the running block in its cluster
  int blocks;                              // in its cluster
  unsigned char* static_copy[kMaxBlocks];  // each block's saved copy of the static section
  unsigned char* dyn[kMaxBlocks];          // each block's dynamic shared memory
  size_t static_size, dyn_size;
  // Per 4-byte word of each block's static copy and dynamic shared memory: its latest read by
  // another block of the cluster (map_shared_rank), as (phase + 1) | reader rank << 24; 0: none.
  unsigned* static_reads[kMaxBlocks];
  unsigned* dyn_reads[kMaxBlocks];
  const unsigned* phase;      // cluster barriers the cluster has passed
  const unsigned* last_full;  // the phase the last cluster.sync() began (0: none yet)
};
extern "C" EmuRaceView emu_race_view;
