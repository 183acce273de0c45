#!/bin/sh
# Copies the library's headers (SRC, the include/ folder) to DEST and makes the five textual
# changes the CPU emulation needs; everything else compiles unchanged with shim.hpp included
# first. A change that no longer applies fails here, so the emulation cannot silently run
# other code than the library's.
#   tests/emu/prepare_headers.sh SRC DEST
set -eu
src=$1
dest=$2
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$src/sparq" "$dest/"
cd "$dest/sparq"
applied() {  # applied FILE PATTERN: the change left no trace of PATTERN
  if grep -qE "$2" "$1"; then echo "prepare_headers: '$2' still in $1" >&2; exit 1; fi
}
# 1. Dynamic shared memory, `extern __shared__ [__align__(16)] T name[];`: a pointer to the
#    emulator's per-launch buffer (poisoned at every launch).
sed -i -E 's/extern __shared__ (__align__\(16\) )?([A-Za-z0-9_]+) ([A-Za-z0-9_]+)\[\];/\2* \3 = reinterpret_cast<\2*>(::emu::dyn_smem);/' \
  kernels/*.cuh
for f in kernels/*.cuh; do applied "$f" 'extern __shared__'; done
# 2. The dataflow kernel's inline PTX: the acquire load becomes the shim's atomic acquire load
#    (emu::load_acquire), %globaltimer the emulator's clock.
sed -i -E 's/asm volatile\("ld\.acquire\.gpu\.global\.u32.*$/v = ::emu::load_acquire(p);/' \
  kernels/dataflow_kernel.cuh
sed -i -E 's/asm volatile\("mov\.u64 %0, %%globaltimer;".*$/t = ::emu::now_ns();/' kernels/dataflow_kernel.cuh
applied kernels/dataflow_kernel.cuh 'ld\.acquire|globaltimer;'
# 3. The cluster kernels' sm_90 guard (their bodies are empty below sm_90 and on the host):
#    taken, so that fake/cooperative_groups.h and shim.hpp run them.
sed -i -E 's/^#if defined\(__CUDA_ARCH__\) && __CUDA_ARCH__ >= 900$/#if 1  \/\/ emulated: sm_90/' \
  kernels/select_kernel.cuh kernels/fused_kernel.cuh
applied kernels/select_kernel.cuh '__CUDA_ARCH__'
applied kernels/fused_kernel.cuh '__CUDA_ARCH__'
# 4. Triple-chevron launches (host launchers, never called by the emulation): plain calls, so
#    a host compiler parses them.
perl -0pi -e 's/<<<.*?>>>//gs' kernels/*.cuh
for f in kernels/*.cuh; do applied "$f" '<<<'; done
# 5. The cluster barrier with shared-memory fences only (device/cluster_sync.cuh): the emulator's
#    barrier of that kind, which the race check tells apart from cluster.sync().
sed -i -E 's/^  cluster\.sync\(\);  \/\/ older toolkits.*$/  ::emu::cluster_barrier(false);  \/\/ emulated: cluster_sync_shared/' \
  device/cluster_sync.cuh
applied device/cluster_sync.cuh '^  cluster\.sync\(\);'
