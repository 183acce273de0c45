// Where a batch-1 launch spends its time, block by block: with SPARQ_PHASE_TIMES defined
// before the library's headers are included, thread 0 of every block of the fused kernels (and
// of the cluster selection) records the SM clock as it passes each mark below, and the global
// timer at the first and last, into device arrays that bench/phase_times.cu reads back. The
// marks sit after the barriers that end each step, so a mark's clock is when the block's step
// ended. Without the macro SPARQ_PHASE() is nothing and the kernels are unchanged (the SASS
// check compiles them without it). Define the macro in one translation unit of a program only:
// the arrays are defined here.
#pragma once

namespace sparq::device {

enum PhaseMark : int {
  kMarkStart = 0,  // the kernel's first instruction (after the parameters)
  kMarkQuery,      // queries loaded, top-r components and temperatures known
  kMarkScores,     // approximate logits of the block's positions in shared memory
  kMarkStats,      // softmax normalisers known (merged across the cluster)
  kMarkKeys,       // ranking keys and the first radix histogram written
  kMarkPass0,      // radix pass 0's histograms complete (across the cluster), and so on
  kMarkPass1,
  kMarkPass2,
  kMarkPass3,
  kMarkFinish,    // the few keys left in play listed (and published across the cluster)
  kMarkCompact,   // selected positions written
  kMarkAlpha,     // alpha summed
  kMarkAttend,    // exact attention over the block's rows done
  kMarkPartials,  // every block's partial state published (cluster barrier passed)
  kMarkMerge,     // output written
  kMarkEnd,       // the block's last instruction
  kMarkCount
};

#ifdef SPARQ_PHASE_TIMES
constexpr int kPhaseBlocks = 4096;  // blocks recorded per launch (linear block index)
__device__ unsigned long long g_phase_clock[kPhaseBlocks][kMarkCount];  // 0: not reached
__device__ unsigned long long g_phase_ns[kPhaseBlocks][2];  // global timer at start and end

__device__ __forceinline__ void phase_mark(int mark) {
  if (threadIdx.x != 0) return;
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (block >= static_cast<unsigned>(kPhaseBlocks)) return;
  g_phase_clock[block][mark] = clock64();
  if (mark == kMarkStart || mark == kMarkEnd) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    g_phase_ns[block][mark == kMarkStart ? 0 : 1] = t;
  }
}
#define SPARQ_PHASE(mark) ::sparq::device::phase_mark(::sparq::device::mark)
#define SPARQ_PHASE_PASS(pass) ::sparq::device::phase_mark(::sparq::device::kMarkPass0 + (pass))
#else
#define SPARQ_PHASE(mark) ((void)0)
#define SPARQ_PHASE_PASS(pass) ((void)0)
#endif

}  // namespace sparq::device
