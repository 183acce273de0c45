// Race check (shim.hpp, EMU_RACECHECK): shared memory across a thread-block cluster. Two checks
// that ThreadSanitizer cannot make on its own.
//
// 1. Static shared memory. Every block's static __shared__ variables live at one address range,
//    the section emu_shared, which the emulator swaps from block to block; while a block does
//    not run, its variables are in its saved copy, and another block of its cluster reaches
//    them there (map_shared_rank). TSan would see a block's own accesses and its neighbours'
//    at two addresses and never compare them. So each access into the section is checked where
//    it happens and again at the same offset in the running block's copy, where its
//    neighbours' accesses are checked: a block rewriting its histogram while a neighbour may
//    still read it, with no barrier between, is reported.
// 2. Write after read across cluster_sync_shared. That barrier's fences are restricted to
//    shared memory (device/cluster_sync.cuh): they order each block's shared-memory writes
//    before the cluster's reads after it, but not a neighbour's read before it against this
//    block's write after it. The emulation runs it as a full barrier, so TSan sees those two
//    ordered. Here every read of a neighbour's shared memory is noted with its cluster phase
//    (barriers passed), and a block writing its own shared memory that a neighbour read in an
//    earlier phase, with no cluster.sync() since, is reported.
//
// This file replaces the instrumentation's entry points for the accesses the kernels make
// (loads, stores, 32-bit atomics), keeping the kernel's line in every report. Accesses through
// memcpy and memset (TSan's interceptors) are checked where they happen only. Compiled without
// -fsanitize=thread, so that nothing here is instrumented, and linked into the race-check programs,
// whose instrumented code then calls these functions instead of libtsan's.
#include "race_view.h"

#include <dlfcn.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

EmuRaceView emu_race_view{};

extern "C" {
extern char __start_emu_shared[], __stop_emu_shared[];  // emu_shared.ld

// libtsan's checks with an explicit program counter: the report names the kernel's line.
void __tsan_read1_pc(void*, void*);
void __tsan_read2_pc(void*, void*);
void __tsan_read4_pc(void*, void*);
void __tsan_read8_pc(void*, void*);
void __tsan_read16_pc(void*, void*);
void __tsan_write1_pc(void*, void*);
void __tsan_write2_pc(void*, void*);
void __tsan_write4_pc(void*, void*);
void __tsan_write8_pc(void*, void*);
void __tsan_write16_pc(void*, void*);
void __tsan_read_range_pc(void*, unsigned long, void*);
void __tsan_write_range_pc(void*, unsigned long, void*);
}

namespace {
const unsigned char* section_begin() {
  return reinterpret_cast<const unsigned char*>(__start_emu_shared);
}
const unsigned char* section_end() {
  return reinterpret_cast<const unsigned char*>(__stop_emu_shared);
}
/// Where TSan also checks an access to `a`: its offset in the running block's copy, or null.
void* in_block_copy(const void* a) {
  const EmuRaceView& v = emu_race_view;
  const auto* p = static_cast<const unsigned char*>(a);
  if (v.blocks == 0 || p < section_begin() || p >= section_end()) return nullptr;
  return v.static_copy[v.rank] + (p - section_begin());
}

/// The words of `reads` under [p, p + n) when that lies in [base, base + size).
struct Words {
  unsigned* first = nullptr;
  unsigned* last = nullptr;  // one past
  size_t offset = 0;         // of p from base
};
Words words_in(const unsigned char* base, size_t size, unsigned* reads, const unsigned char* p,
               size_t n) {
  if (base == nullptr || p < base || p >= base + size) return {};
  const size_t off = static_cast<size_t>(p - base);
  return {reads + off / 4, reads + (off + n - 1) / 4 + 1, off};
}

/// Check 2: a read of another block's shared memory, noted with the cluster phase.
void note_read(const void* a, size_t n) {
  const EmuRaceView& v = emu_race_view;
  if (v.blocks <= 1) return;
  const auto* p = static_cast<const unsigned char*>(a);
  for (int t = 0; t < v.blocks; ++t) {
    if (t == v.rank) continue;
    Words w = words_in(v.static_copy[t], v.static_size, v.static_reads[t], p, n);
    if (w.first == nullptr) w = words_in(v.dyn[t], v.dyn_size, v.dyn_reads[t], p, n);
    if (w.first == nullptr) continue;
    const unsigned mark = (*v.phase + 1u) | static_cast<unsigned>(v.rank) << 24;
    for (unsigned* r = w.first; r != w.last; ++r)
      *r = mark;
    return;
  }
}

[[noreturn]] void report_write_after_read(const char* space, size_t offset, unsigned mark,
                                          const void* at) {
  const EmuRaceView& v = emu_race_view;
  char name[256] = "";
  if (*space == 's')  // static: name the variable
    __sanitizer_symbolize_global(const_cast<void*>(at), "%g", name, sizeof name);
  std::fprintf(
      stderr,
      "==================\n"
      "emu race check: write after read across cluster_sync_shared in %s\n"
      "  block rank %d writes its %s shared memory at byte offset %zu%s%s%s,\n"
      "  which rank %u read (map_shared_rank) in cluster phase %u; the cluster is in phase "
      "%u now and its last cluster.sync() began phase %u.\n"
      "  cluster_sync_shared's fences order shared-memory writes before later reads, not "
      "another block's read before a later write: a cluster.sync() belongs between.\n"
      "  The write:\n",
      v.kernel, v.rank, space, offset, *name ? " ('" : "", name, *name ? "')" : "", mark >> 24,
      (mark & 0xFFFFFFu) - 1u, *v.phase, *v.last_full);
  __sanitizer_print_stack_trace();
  _exit(66);  // TSan's status for a race
}

/// Check 2: a write of this block's own shared memory.
void note_write(const void* a, size_t n) {
  const EmuRaceView& v = emu_race_view;
  if (v.blocks <= 1) return;
  const auto* p = static_cast<const unsigned char*>(a);
  const char* space = "static";
  Words w;
  if (p >= section_begin() && p < section_end()) {
    w = words_in(section_begin(), v.static_size, v.static_reads[v.rank], p, n);
  } else {
    space = "dynamic";
    w = words_in(v.dyn[v.rank], v.dyn_size, v.dyn_reads[v.rank], p, n);
  }
  for (unsigned* r = w.first; r != w.last; ++r) {
    if (*r == 0) continue;
    const unsigned read_phase = (*r & 0xFFFFFFu) - 1u;
    if (read_phase < *v.phase && *v.last_full <= read_phase)
      report_write_after_read(space, w.offset, *r, a);
  }
}

/// libtsan's own definition of `name`, which this program's definition hides.
void* runtime_function(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "emu: race check: %s not found in libtsan\n", name);
    std::abort();
  }
  return f;
}
}  // namespace

#define EMU_CHECKED_ACCESS(kind, n)                               \
  extern "C" void __tsan_##kind##n(void* a) {                     \
    void* pc = __builtin_return_address(0);                       \
    __tsan_##kind##n##_pc(a, pc);                                 \
    if (void* c = in_block_copy(a)) __tsan_##kind##n##_pc(c, pc); \
    note_##kind(a, n);                                            \
  }
EMU_CHECKED_ACCESS(read, 1)
EMU_CHECKED_ACCESS(read, 2)
EMU_CHECKED_ACCESS(read, 4)
EMU_CHECKED_ACCESS(read, 8)
EMU_CHECKED_ACCESS(read, 16)
EMU_CHECKED_ACCESS(write, 1)
EMU_CHECKED_ACCESS(write, 2)
EMU_CHECKED_ACCESS(write, 4)
EMU_CHECKED_ACCESS(write, 8)
EMU_CHECKED_ACCESS(write, 16)
#undef EMU_CHECKED_ACCESS

// Unaligned accesses: checked as ranges (libtsan has no _pc form of them).
#define EMU_CHECKED_UNALIGNED(kind, n)                                  \
  extern "C" void __tsan_unaligned_##kind##n(void* a) {                 \
    void* pc = __builtin_return_address(0);                             \
    __tsan_##kind##_range_pc(a, n, pc);                                 \
    if (void* c = in_block_copy(a)) __tsan_##kind##_range_pc(c, n, pc); \
    note_##kind(a, n);                                                  \
  }
EMU_CHECKED_UNALIGNED(read, 2)
EMU_CHECKED_UNALIGNED(read, 4)
EMU_CHECKED_UNALIGNED(read, 8)
EMU_CHECKED_UNALIGNED(read, 16)
EMU_CHECKED_UNALIGNED(write, 2)
EMU_CHECKED_UNALIGNED(write, 4)
EMU_CHECKED_UNALIGNED(write, 8)
EMU_CHECKED_UNALIGNED(write, 16)
#undef EMU_CHECKED_UNALIGNED

// 32-bit atomics (atomicAdd and atomicExch on shared counts and histograms, and the loads and
// stores of std::atomic_ref). The copy sees an atomic read (a load) or an atomic
// read-modify-write that adds 0 (the others), which TSan checks as it would the operation and
// which leaves the copy's contents as they were. Then the operation itself, libtsan's, on the
// real address, as a tail call: libtsan takes its caller's return address, the kernel's line.
using Atomic32 = std::uint32_t;
using Load32 = Atomic32 (*)(const volatile Atomic32*, int);
using Rmw32 = Atomic32 (*)(volatile Atomic32*, Atomic32, int);
using Store32 = void (*)(volatile Atomic32*, Atomic32, int);
namespace {
void check_as_rmw(const volatile Atomic32* a, int mo) {
  static const auto fetch_add =
      reinterpret_cast<Rmw32>(runtime_function("__tsan_atomic32_fetch_add"));
  if (void* c = in_block_copy(const_cast<Atomic32*>(a)))
    fetch_add(static_cast<Atomic32*>(c), 0, mo);
  note_write(const_cast<Atomic32*>(a), 4);
}
}  // namespace
extern "C" Atomic32 __tsan_atomic32_load(const volatile Atomic32* a, int mo) {
  static const auto real = reinterpret_cast<Load32>(runtime_function("__tsan_atomic32_load"));
  if (void* c = in_block_copy(const_cast<Atomic32*>(a))) real(static_cast<Atomic32*>(c), mo);
  note_read(const_cast<Atomic32*>(a), 4);
  return real(a, mo);
}
extern "C" Atomic32 __tsan_atomic32_fetch_add(volatile Atomic32* a, Atomic32 v, int mo) {
  static const auto real = reinterpret_cast<Rmw32>(runtime_function("__tsan_atomic32_fetch_add"));
  check_as_rmw(a, mo);
  return real(a, v, mo);
}
extern "C" Atomic32 __tsan_atomic32_exchange(volatile Atomic32* a, Atomic32 v, int mo) {
  static const auto real = reinterpret_cast<Rmw32>(runtime_function("__tsan_atomic32_exchange"));
  check_as_rmw(a, mo);
  return real(a, v, mo);
}
extern "C" void __tsan_atomic32_store(volatile Atomic32* a, Atomic32 v, int mo) {
  static const auto real = reinterpret_cast<Store32>(runtime_function("__tsan_atomic32_store"));
  check_as_rmw(a, mo);
  real(a, v, mo);
}
