// Host emulation of CUDA device code: each block's threads are fibers (ucontext) run one block
// at a time on one OS thread; __syncthreads and warp collectives are rendezvous between fibers.
// Thread-block clusters (sm_90): a cluster's blocks are resident together, cluster.sync() is a
// rendezvous of all their threads, map_shared_rank() reaches another block's shared memory
// (fake/cooperative_groups.h).
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <ucontext.h>
#include <csignal>
#include <unistd.h>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <algorithm>
#include <string>
#include <vector>

// Race check (docs/design.md, tests/emu): built with -fsanitize=thread, every emulated thread is a
// ThreadSanitizer fiber, switched to without synchronisation, and the emulator tells TSan what
// the GPU orders: barriers (block, warp, cluster) release and acquire, a kernel's end and a
// fence order global memory. Two threads' accesses to one address with none of these between
// them are reported as a data race: a missing __syncthreads, a shared buffer reused too early.
#if defined(__SANITIZE_THREAD__)
#define EMU_RACECHECK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EMU_RACECHECK 1
#endif
#endif
#ifdef EMU_RACECHECK
#include <sanitizer/tsan_interface.h>
#include <sys/mman.h>
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
extern "C" void __tsan_func_entry(void* caller_pc);  // the compiler's instrumentation entry points
extern "C" void __tsan_func_exit();
#include "race_view.h"  // what race_cluster.cpp is told about the running block
#endif

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static __attribute__((section("emu_shared"), aligned(16)))
#define __forceinline__
#define __launch_bounds__(...)

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

extern "C" char __start_emu_shared[], __stop_emu_shared[];
#include <random>
namespace emu {
namespace race {  // no-ops unless EMU_RACECHECK
#ifdef EMU_RACECHECK
inline void* new_fiber() {
  return __tsan_create_fiber(0);
}
inline void free_fiber(void* f) {
  __tsan_destroy_fiber(f);
}
inline void* this_fiber() {
  return __tsan_get_current_fiber();
}
/// Called right before swapcontext. `sync`: the switch orders what ran before it before what
/// runs after it (a thread's start); otherwise the two threads stay unordered.
inline void switch_to(void* f, bool sync) {
  __tsan_switch_to_fiber(f, sync ? 0u : __tsan_switch_to_fiber_no_sync);
}
inline void release(const void* p) {
  __tsan_release(const_cast<void*>(p));
}
inline void acquire(const void* p) {
  __tsan_acquire(const_cast<void*>(p));
}
/// Starts a new epoch of the calling thread after a barrier or fence, so that none of the
/// kernel's accesses after it can count as published by the release before it. A safeguard:
/// with g++ 12's libtsan, a race planted right after a barrier was reported without it too.
inline void new_epoch() {
  __tsan_func_entry(__builtin_return_address(0));
  __tsan_func_exit();
}
/// The emulator's own bookkeeping (barrier counters, warp slots, the scheduler) is not the
/// kernel's: its accesses are not checked.
struct Unchecked {
  Unchecked() { __tsan_ignore_thread_begin(); }
  ~Unchecked() { __tsan_ignore_thread_end(); }
  Unchecked(const Unchecked&) = delete;
  Unchecked& operator=(const Unchecked&) = delete;
};
/// Forgets every access to [p, p + n), rounded out to whole pages (their contents are kept):
/// the static shared-memory section is one address range that every block uses in turn, so
/// each block starts on it with no history. TSan resets the shadow of a range mapped anew.
/// (race_cluster.cpp checks the same accesses again in the block's saved copy, which keeps its
/// history for the block's lifetime: there they meet its cluster neighbours' accesses.)
inline void forget_pages(void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
  std::vector<unsigned char> keep(hi - lo);
  std::memcpy(keep.data(), reinterpret_cast<void*>(lo), hi - lo);
  void* m = mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m != reinterpret_cast<void*>(lo)) {
    std::fprintf(stderr, "emu: race check: mmap over the shared-memory section failed\n");
    std::abort();
  }
  std::memcpy(reinterpret_cast<void*>(lo), keep.data(), hi - lo);
}
#else
inline void* new_fiber() {
  return nullptr;
}
inline void free_fiber(void*) {}
inline void* this_fiber() {
  return nullptr;
}
inline void switch_to(void*, bool) {}
inline void release(const void*) {}
inline void acquire(const void*) {}
inline void new_epoch() {}
struct Unchecked {};
inline void forget_pages(void*, size_t) {}
#endif
/// What a __threadfence releases and acquires: every fence orders against every other, more
/// than the GPU promises (a fence orders only with the flag it is paired with), so a missing
/// fence is found but a fence paired with the wrong flag is not.
inline char fence_sync;
/// What a kernel's threads release as they exit and the host acquires after the launch.
inline char launch_sync;
}  // namespace race
inline unsigned char* dyn_smem = nullptr;
inline long long shared_bytes = 0;
struct Fiber {
  ucontext_t ctx;
  bool done = false;
  const unsigned* wait_ptr = nullptr;  // blocked while *wait_ptr == wait_val
  unsigned wait_val = 0;
  char* stack = nullptr;
  void* tsan = nullptr;  // race check: its TSan fiber
  bool started = false;
};
/// One barrier (a block's, a warp's, a cluster's): its generation and the threads arrived at
/// it. Exited threads count as arrived.
struct Rendezvous {
  unsigned gen = 0, arrived = 0;
  // Race check: what the arrivals of an even or odd generation release and its leavers
  // acquire. Two objects, so that what a thread does after one barrier is never acquired by a
  // thread still leaving it.
  char sync[2];
  /// Waits until `live` threads have arrived. `orders_memory`: __syncwarp and the block and
  /// cluster barriers order memory among their threads; a shuffle or vote only exchanges
  /// values (PTX), so it waits for the lanes without ordering their other accesses.
  inline void arrive(int live, bool orders_memory = true);
  /// A thread has exited, leaving `live`: those may all be waiting here already.
  void on_exit(int live) {
    if (arrived > 0 && arrived >= static_cast<unsigned>(live)) {
      arrived = 0;
      ++gen;
    }
  }
};
struct Warp {
  Rendezvous bar;
  int live = 32;
  uint64_t slot[32];
};
struct Block;
/// The blocks of one thread-block cluster (sm_90): they are resident together, share a barrier
/// and read each other's shared memory. A launch without clusters has clusters of one block.
struct Cluster {
  std::vector<Block*> blocks;  // by rank
  int live = 0;                // threads not yet exited, over every block
  Rendezvous bar;
  unsigned last_full = 0;  // race check: the phase (bar.gen) the last cluster.sync() began
  char exit_sync;          // race check: what its threads release as they exit
};
/// One resident block: its threads, barrier state, shared memory (dynamic, and a saved copy of
/// the static section while another block runs).
struct Block {
  uint3 idx;
  std::vector<Fiber> fibers;
  int live = 0;
  Rendezvous bar;
  Warp warps[64];
  std::vector<unsigned char> dyn, saved_static;
  unsigned char* dyn_aligned = nullptr;
  size_t dyn_size = 0;
  std::shared_ptr<Cluster> cluster;
  int rank = 0;  // in its cluster
  // Race check: per 4-byte word of the static section and of the dynamic shared memory, the
  // latest read by another block of the cluster (race_cluster.cpp).
  std::vector<unsigned> static_reads, dyn_reads;
};
namespace race {
#ifdef EMU_RACECHECK
/// Tells race_cluster.cpp which block runs next, its cluster and their shared memory (null: no
/// kernel thread runs until the next call). The view must never outlive the blocks it names:
/// race_cluster.cpp writes through it. Not instrumented, so that race_cluster.cpp never sees
/// the view half written.
__attribute__((no_sanitize("thread"))) inline void enter_block(const Block* b, const char* kernel) {
  EmuRaceView& v = emu_race_view;
  v = EmuRaceView{};
  if (b == nullptr) return;
  const Cluster& c = *b->cluster;
  if (c.blocks.size() > static_cast<size_t>(EmuRaceView::kMaxBlocks)) {
    std::fprintf(stderr, "emu: race check: clusters of at most %d blocks\n",
                 EmuRaceView::kMaxBlocks);
    std::abort();
  }
  v.kernel = kernel;
  v.rank = b->rank;
  v.blocks = static_cast<int>(c.blocks.size());
  v.static_size = b->saved_static.size();
  v.dyn_size = b->dyn_size;
  for (int r = 0; r < v.blocks; ++r) {
    Block* t = c.blocks[r];  // clusters start whole (launch's admit)
    v.static_copy[r] = t->saved_static.data();
    v.dyn[r] = t->dyn_aligned;
    v.static_reads[r] = t->static_reads.data();
    v.dyn_reads[r] = t->dyn_reads.data();
  }
  v.phase = &c.bar.gen;
  v.last_full = &c.last_full;
}
/// A block is about to be freed: no view may name it.
inline void expect_no_block() {
  if (emu_race_view.blocks != 0) {
    std::fprintf(stderr, "emu: race check: a block retired while race_cluster.cpp sees it\n");
    std::abort();
  }
}
#else
inline void enter_block(const Block*, const char*) {}
inline void expect_no_block() {}
#endif
}  // namespace race
inline ucontext_t sched_ctx;
inline void* sched_fiber = nullptr;  // race check: the scheduler's TSan fiber
/// Fiber stacks not in use, freed at exit (so a leak checker finds none).
struct StackPool : std::vector<char*> {
  ~StackPool() {
    for (char* s : *this)
      std::free(s);
  }
};
inline StackPool stacks;
inline Block* cb = nullptr;  // the running block
inline int cur = 0;          // the running thread of cb
inline std::function<void()>* body = nullptr;
inline long long switches = 0, spins = 0;
inline int resident_blocks = 1;
inline const char* cur_kernel = "(host)";
constexpr size_t kStack = 256 * 1024;
inline void on_fault(int sig) {
  char buf[256];
  const int n = std::snprintf(buf, sizeof buf, "emu: signal %d in %s block (%u,%u,%u) thread %u\n",
                              sig, cur_kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);
  (void)!write(2, buf, n);
  _exit(128 + sig);
}
inline const bool fault_handler_installed = [] {
  static char alt[1 << 16];
  stack_t ss{};
  ss.ss_sp = alt;
  ss.ss_size = sizeof alt;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  sigaction(SIGFPE, &sa, nullptr);
  return true;
}();

inline void wait_until_changed(const unsigned* p, unsigned v) {
  Fiber& f = cb->fibers[cur];
  f.wait_ptr = p;
  f.wait_val = v;
  ++switches;
  race::switch_to(sched_fiber, false);
  swapcontext(&f.ctx, &sched_ctx);
}
inline void yield_spin() {  // a spin-wait: runnable again at the next sweep
  race::Unchecked unchecked;
  Fiber& f = cb->fibers[cur];
  ++switches;
  race::switch_to(sched_fiber, false);
  swapcontext(&f.ctx, &sched_ctx);
}
inline void Rendezvous::arrive(int live, bool orders_memory) {
  race::Unchecked unchecked;
  const unsigned g = gen;
  if (orders_memory) race::release(&sync[g & 1]);
  if (++arrived >= static_cast<unsigned>(live)) {
    arrived = 0;
    ++gen;
  } else {
    wait_until_changed(&gen, g);
  }
  if (orders_memory) {
    race::acquire(&sync[g & 1]);
    race::new_epoch();
  }
}
inline void block_barrier() {
  cb->bar.arrive(cb->live);
}
inline void warp_barrier(bool orders_memory = true) {
  Warp& w = cb->warps[cur / 32];
  w.bar.arrive(w.live, orders_memory);
}
inline unsigned char* static_begin();
inline size_t static_size();
/// cluster.sync() (`full`), or device::cluster_sync_shared (prepare_headers.sh): every thread of
/// every block of the cluster (exited threads count as arrived). Both order everything here;
/// race_cluster.cpp checks what the second does not order (a neighbour's read before it
/// against a write after it).
inline void cluster_barrier(bool full = true) {
  Cluster& c = *cb->cluster;
  c.bar.arrive(c.live);
  race::Unchecked unchecked;
  if (full) c.last_full = c.bar.gen;
}
/// cluster.map_shared_rank(p, rank): the same shared variable (static, or an offset into the
/// dynamic shared memory) in the block of that rank. While one block's fibers run, the static
/// section holds its variables and every other block's are in its saved copy; a mapped pointer
/// is valid until the next barrier (where fibers switch), as the kernels use it.
inline void* map_shared(const void* p, unsigned rank) {
  race::Unchecked unchecked;
  Cluster& c = *cb->cluster;
  if (rank >= c.blocks.size()) {
    std::fprintf(stderr, "emu: map_shared_rank: rank %u of a cluster of %zu\n", rank,
                 c.blocks.size());
    std::abort();
  }
  Block* t = c.blocks[rank];
  const unsigned char* u = static_cast<const unsigned char*>(p);
  if (t == cb) return const_cast<unsigned char*>(u);
  if (u >= static_begin() && u < static_begin() + static_size())
    return t->saved_static.data() + (u - static_begin());
  if (u >= cb->dyn_aligned && u < cb->dyn_aligned + cb->dyn_size)
    return t->dyn_aligned + (u - cb->dyn_aligned);
  std::fprintf(stderr, "emu: map_shared_rank of a pointer outside shared memory\n");
  std::abort();
}
inline void exit_thread();
inline void trampoline() {
  (*body)();
  exit_thread();
  Fiber& f = cb->fibers[cur];
  race::switch_to(sched_fiber, false);
  swapcontext(&f.ctx, &sched_ctx);
}
/// The calling thread has returned from the kernel: it leaves every barrier.
inline void exit_thread() {
  race::Unchecked unchecked;
  Block& b = *cb;
  Fiber& f = b.fibers[cur];
  // An exited thread counts as arrived at the barriers but publishes nothing through them
  // (its last accesses are not ordered before a barrier the others pass later): only the
  // launch's end, and the next blocks (which reuse its stacks), follow it.
  race::release(&b.cluster->exit_sync);
  race::release(&race::launch_sync);
  f.done = true;
  --b.live;
  Cluster& c = *b.cluster;
  --c.live;
  c.bar.on_exit(c.live);
  if (b.live == 0) {
    // The block has exited: its shared memory is gone (another block of its cluster reading
    // it now reads poison). It is in the section now; the next swap saves the poison.
    std::memset(static_begin(), 0xFF, static_size());
    std::memset(b.dyn.data(), 0xFF, b.dyn.size());
  }
  Warp& w = b.warps[cur / 32];
  --w.live;
  b.bar.on_exit(b.live);
  w.bar.on_exit(w.live);
}
inline char* take_stack() {
  if (stacks.empty()) return static_cast<char*>(std::malloc(kStack));
  char* s = stacks.back();
  stacks.pop_back();
  return s;
}
inline unsigned char* static_begin() {
  return reinterpret_cast<unsigned char*>(__start_emu_shared);
}
inline size_t static_size() {
  return static_cast<size_t>(__stop_emu_shared - __start_emu_shared);
}

/// Runs grid x block. `resident` blocks run at once (interleaved at barriers and spin-waits; a
/// finished block's slot takes the next block of the grid, in x, y, z order or reversed with
/// EMU_BLOCKS=rev). Static __shared__ variables (section emu_shared) are swapped per block and
/// poisoned (0xFF) at each block's start, as is its dynamic shared memory. `cluster` > 1: blocks
/// run in clusters of that many along x (sm_90), each cluster started whole (at least one
/// cluster resident) and retired when all its blocks have exited.
inline void launch(dim3 grid, dim3 block, size_t smem, const std::function<void()>& kernel,
                   const char* name, int resident = 1, int cluster = 1) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (block.y != 1 || block.z != 1 || n % 32 != 0 || n > 2048) {
    std::fprintf(stderr, "emu: block shape\n");
    std::abort();
  }
  if (cluster < 1 || grid.x % static_cast<unsigned>(cluster) != 0) {
    std::fprintf(stderr, "emu: grid.x %u is not a multiple of the cluster size %d\n", grid.x,
                 cluster);
    std::abort();
  }
  resident = std::max(resident, cluster) / cluster * cluster;
  race::Unchecked unchecked;  // the scheduler's own accesses
  sched_fiber = race::this_fiber();
  gridDim = grid;
  blockDim = block;
  cur_kernel = name;
  resident_blocks = resident;
  std::function<void()> k = kernel;
  body = &k;
  static const bool rev_blocks = [] {
    const char* e = std::getenv("EMU_BLOCKS");
    return e && std::string(e) == "rev";
  }();
  static const int order = [] {
    const char* e = std::getenv("EMU_ORDER");
    return e && std::string(e) == "rev" ? 1 : (e && std::string(e) == "rand" ? 2 : 0);
  }();
  static std::mt19937 rng(12345);
  shared_bytes = static_cast<long long>(static_size());
  const long long nblocks = static_cast<long long>(grid.x) * grid.y * grid.z;
  long long next = 0;
  std::vector<std::unique_ptr<Block>> res;
  Block* in_section = nullptr;       // whose static shared memory the section holds
  std::shared_ptr<Cluster> filling;  // the cluster whose blocks are being started
  auto start_block = [&]() {
    const long long lin = rev_blocks ? nblocks - 1 - next : next;
    ++next;
    auto b = std::make_unique<Block>();
    if (next % cluster == 1 || cluster == 1) {
      filling = std::make_shared<Cluster>();
      filling->blocks.assign(cluster, nullptr);
    }
    b->cluster = filling;
    b->rank = static_cast<int>(lin % grid.x % cluster);
    filling->blocks[b->rank] = b.get();
    filling->live += n;
    b->idx = make_uint3(static_cast<unsigned>(lin % grid.x),
                        static_cast<unsigned>(lin / grid.x % grid.y),
                        static_cast<unsigned>(lin / grid.x / grid.y));
    b->dyn.assign(smem + 16, 0xFF);
    b->dyn_size = smem;
    b->dyn_aligned = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(b->dyn.data()) + 15) & ~uintptr_t{15});
    // Poisoned static shared memory. Race check: a race reported on a "heap block" allocated
    // here is on a static __shared__ variable at that offset (race_cluster.cpp).
    b->saved_static.assign(static_size(), 0xFF);
#ifdef EMU_RACECHECK
    b->static_reads.assign((static_size() + 3) / 4, 0u);
    b->dyn_reads.assign((smem + 3) / 4, 0u);
#endif
    b->fibers.assign(n, Fiber{});
    b->live = n;
    for (int w = 0; w < n / 32; ++w)
      b->warps[w] = Warp{};
    for (int i = 0; i < n; ++i) {
      Fiber& f = b->fibers[i];
      f.stack = take_stack();
      f.tsan = race::new_fiber();
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack;
      f.ctx.uc_stack.ss_size = kStack;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, trampoline, 0);
    }
    res.push_back(std::move(b));
  };
  auto admit = [&] {  // whole clusters while they fit
    while (next < nblocks && static_cast<int>(res.size()) + cluster <= resident)
      for (int i = 0; i < cluster; ++i)
        start_block();
  };
  admit();
  std::vector<int> perm(n);
  while (!res.empty()) {
    bool ran = false;
    for (size_t bi = 0; bi < res.size(); ++bi) {
      Block* b = res[bi].get();
      if (in_section != b) {  // swap the static shared memory
        if (in_section) std::memcpy(in_section->saved_static.data(), static_begin(), static_size());
        race::forget_pages(static_begin(), static_size());  // each block's accesses its own
        std::memcpy(static_begin(), b->saved_static.data(), static_size());
        in_section = b;
      }
      cb = b;
      race::enter_block(b, name);
      dyn_smem = b->dyn_aligned;
      blockIdx = b->idx;
      for (int i = 0; i < n; ++i)
        perm[i] = order == 1 ? n - 1 - i : i;
      if (order == 2) std::shuffle(perm.begin(), perm.end(), rng);
      for (int pi = 0; pi < n; ++pi) {
        const int i = perm[pi];
        Fiber& f = b->fibers[i];
        if (f.done) continue;
        if (f.wait_ptr && *f.wait_ptr == f.wait_val) continue;
        f.wait_ptr = nullptr;
        cur = i;
        threadIdx = make_uint3(i, 0, 0);
        ran = true;
        race::switch_to(f.tsan, !f.started);  // a thread's start follows the launch
        f.started = true;
        swapcontext(&sched_ctx, &f.ctx);
      }
      race::enter_block(nullptr, nullptr);  // the scheduler's own accesses, and blocks retired
    }
    if (!ran) {
      std::fprintf(stderr, "emu: DEADLOCK in %s: every thread of the %zu resident blocks waits\n",
                   name, res.size());
      for (auto& b : res)
        std::fprintf(stderr, "  block (%u,%u,%u): %d live, bar arrived %u\n", b->idx.x, b->idx.y,
                     b->idx.z, b->live, b->bar.arrived);
      std::abort();
    }
    // Retire finished clusters' blocks; start the next ones of the grid.
    race::expect_no_block();
    for (size_t bi = 0; bi < res.size();) {
      if (res[bi]->cluster->live == 0) {
        // The next blocks reuse its stacks: their threads follow its threads' exit.
        race::acquire(&res[bi]->cluster->exit_sync);
        for (Fiber& f : res[bi]->fibers) {
          stacks.push_back(f.stack);
          race::free_fiber(f.tsan);
        }
        if (in_section == res[bi].get()) in_section = nullptr;
        res.erase(res.begin() + static_cast<long>(bi));
      } else {
        ++bi;
      }
    }
    admit();
    if (order == 2 && res.size() > 1) std::shuffle(res.begin(), res.end(), rng);
  }
  race::acquire(&race::launch_sync);  // the host reads what the kernel wrote
  cb = nullptr;
  body = nullptr;
}
}  // namespace emu

inline void __syncthreads() {
  emu::block_barrier();
}
inline void __syncwarp(unsigned = 0xffffffffu) {
  emu::warp_barrier();
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  emu::race::release(&emu::race::fence_sync);
  emu::race::acquire(&emu::race::fence_sync);
  emu::race::new_epoch();
}
inline void __nanosleep(unsigned) {
  emu::race::Unchecked unchecked;
  if (emu::resident_blocks <= 1) {
    std::fprintf(stderr,
                 "emu: __nanosleep: a spin-wait in a one-block emulation can never end "
                 "(thread %u block %u)\n",
                 threadIdx.x, blockIdx.x);
    std::abort();
  }
  if (++emu::spins > 200000000LL) {
    std::fprintf(stderr, "emu: spin limit (livelock?)\n");
    std::abort();
  }
  emu::yield_spin();
}
[[noreturn]] inline void __trap() {
  std::fprintf(stderr, "emu: __trap\n");
  std::abort();
}
inline unsigned __activemask() {
  return 1u << (threadIdx.x & 31);
}  // see README: own lane only
// Every lane of the warp exchanges through its slot between two warp barriers, so a lane
// missing from the call (divergence under a full mask) deadlocks, which the emulation reports.
inline void emu_warp_gather(unsigned v, unsigned (&all)[32]) {
  emu::Warp& w = emu::cb->warps[threadIdx.x / 32];
  if (w.live != 32) {
    std::fprintf(stderr, "emu: full-mask warp vote with %d live lanes (thread %u)\n", w.live,
                 threadIdx.x);
    std::abort();
  }
  emu::race::Unchecked unchecked;
  w.slot[threadIdx.x & 31] = v;
  emu::warp_barrier(false);
  for (int l = 0; l < 32; ++l)
    all[l] = static_cast<unsigned>(w.slot[l]);
  emu::warp_barrier(false);
}
inline unsigned __match_any_sync(unsigned mask, unsigned v) {
  if (mask == (1u << (threadIdx.x & 31))) return mask;
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "emu: __match_any_sync with mask %x not emulated\n", mask);
    std::abort();
  }
  unsigned all[32], peers = 0;
  emu_warp_gather(v, all);
  for (int l = 0; l < 32; ++l)
    peers |= (all[l] == v ? 1u : 0u) << l;
  return peers;
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "emu: __ballot_sync with mask %x not emulated\n", mask);
    std::abort();
  }
  unsigned all[32], bits = 0;
  emu_warp_gather(pred ? 1u : 0u, all);
  for (int l = 0; l < 32; ++l)
    bits |= all[l] << l;
  return bits;
}
inline int __any_sync(unsigned mask, int pred) {
  return __ballot_sync(mask, pred) != 0u;
}
template <typename T>
inline T emu_shfl(unsigned mask, T v, int src_of_lane_ok, int src) {
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "emu: partial shuffle mask\n");
    std::abort();
  }
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  emu::Warp& w = emu::cb->warps[threadIdx.x / 32];
  const int lane = threadIdx.x & 31;
  emu::race::Unchecked unchecked;
  std::memcpy(&w.slot[lane], &v, sizeof(T));
  emu::warp_barrier(false);
  T r = v;
  if (src_of_lane_ok) std::memcpy(&r, &w.slot[src & 31], sizeof(T));
  emu::warp_barrier(false);
  (void)lane;
  return r;
}
template <typename T>
inline T __shfl_xor_sync(unsigned m, T v, int o, int = 32) {
  return emu_shfl(m, v, 1, (threadIdx.x & 31) ^ o);
}
template <typename T>
inline T __shfl_up_sync(unsigned m, T v, unsigned o, int = 32) {
  const int lane = threadIdx.x & 31;
  return emu_shfl(m, v, lane >= static_cast<int>(o), lane - static_cast<int>(o));
}
template <typename T>
inline T __shfl_down_sync(unsigned m, T v, unsigned o, int = 32) {
  const int lane = threadIdx.x & 31;
  return emu_shfl(m, v, lane + static_cast<int>(o) < 32, lane + static_cast<int>(o));
}
template <typename T>
inline T __shfl_sync(unsigned m, T v, int s, int = 32) {
  return emu_shfl(m, v, 1, s);
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __ffs(unsigned x) {
  return __builtin_ffs(static_cast<int>(x));
}
inline float __expf(float x) {
  return expf(x);
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
template <typename T>
inline T atomicAdd(T* p, T v) {  // relaxed, as on the GPU (the race check sees an atomic)
  return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
template <typename T>
inline T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
namespace emu {
/// The dataflow kernel's ld.acquire.gpu (prepare_headers.sh). Its waits are followed by a
/// __threadfence, so the race check needs no more than an atomic load here.
inline unsigned load_acquire(const unsigned* p) {
  return std::atomic_ref<unsigned>(*const_cast<unsigned*>(p)).load(std::memory_order_acquire);
}
}  // namespace emu
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
  return *p;
}
namespace emu {
inline unsigned long long now_ns() {
  return 0;
}
}  // namespace emu
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a > b ? a : b;
}
inline unsigned min(unsigned a, unsigned b) {
  return a < b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
  return a > b ? a : b;
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline long long max(long long a, long long b) {
  return a > b ? a : b;
}
inline long min(long a, long b) {
  return a < b ? a : b;
}
inline long max(long a, long b) {
  return a > b ? a : b;
}
// Host templates that nvcc's cuda_runtime.h declares only under __CUDACC__ (no device here:
// they fail, as the real ones do on a machine without a GPU).
template <typename... A>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, void (*k)(A...)) {
  return ::cudaFuncGetAttributes(a, reinterpret_cast<const void*>(k));
}
template <typename... A>
cudaError_t cudaFuncSetAttribute(void (*k)(A...), cudaFuncAttribute at, int v) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(k), at, v);
}
template <typename... A>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, void (*k)(A...), int t,
                                                          size_t s) {
  return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, reinterpret_cast<const void*>(k), t, s);
}
template <typename... A>
cudaError_t cudaOccupancyMaxActiveClusters(int* n, void (*k)(A...), const cudaLaunchConfig_t* c) {
  return ::cudaOccupancyMaxActiveClusters(n, reinterpret_cast<const void*>(k), c);
}

// Intrinsics of examples/llama2/matvec.cuh (host equivalents; the device's rsqrtf is
// approximate, 2 ulp, so its results may differ in the last bits).
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline float rsqrtf(float x) {
  return 1.0f / sqrtf(x);
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
