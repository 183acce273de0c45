#!/bin/sh
# Copies examples/llama2/matvec.cuh (SRC) to DEST with the textual changes the CPU emulation
# needs; a change that no longer applies fails here.
#   tests/emu/prepare_matvec.sh SRC DEST
set -eu
mkdir -p "$(dirname "$2")"
cp "$1" "$2"
f=$2
applied() { if grep -qE "$1" "$f"; then echo "prepare_matvec: '$1' still in $f" >&2; exit 1; fi; }
# 1. dynamic shared memory -> the emulator's per-launch buffer
sed -i -E 's/extern __shared__ (__align__\(16\) )?([A-Za-z0-9_]+) ([A-Za-z0-9_]+)\[\];/\2* \3 = reinterpret_cast<\2*>(::emu::dyn_smem);/' "$f"
applied 'extern __shared__'
# 2. inline PTX: the streaming 16-byte load becomes a plain load; the L2 prefetches no-ops
perl -0pi -e 's/asm volatile\("ld\.global\.nc\.L1::no_allocate\.v4\.u32.*?\);/v = *reinterpret_cast<const uint4*>(p);/gs' "$f"
perl -0pi -e 's/asm volatile\("prefetch\.global\.L2.*?\);/(void)0;/gs' "$f"
perl -0pi -e 's/asm volatile\("createpolicy\..*?\);/policy = 0;/gs' "$f"
perl -0pi -e 's/asm volatile\("cp\.async\.bulk\.prefetch\..*?\);/(void)p, (void)bytes, (void)policy;/gs' "$f"
applied 'asm'
# 3. triple-chevron launch (host launcher, never called): a plain call
perl -0pi -e 's/<<<.*?>>>//gs' "$f"
applied '<<<'
