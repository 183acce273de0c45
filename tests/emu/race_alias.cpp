// Race check (shim.hpp, EMU_RACECHECK): static shared memory across a thread-block cluster.
//
// Every block's static __shared__ variables live at one address range, the section emu_shared,
// which the emulator swaps from block to block; while a block does not run, its variables are
// in its saved copy, and another block of its cluster reaches them there (map_shared_rank).
// So ThreadSanitizer would see a block's own accesses and its neighbours' accesses to the same
// variable at two different addresses, and never compare them.
//
// This file replaces the instrumentation's entry points for the accesses the kernels make.
// Each one is still checked where it happens; an access into the section is also checked a
// second time at the same offset in the running block's saved copy (emu_race_block_copy, set by
// the scheduler), where the other blocks' accesses are checked. A race through
// map_shared_rank, such as a block rewriting its histogram while a neighbour still reads it, is
// then reported. Accesses through memcpy and memset (TSan's interceptors) are checked where
// they happen only.
//
// Compiled without -fsanitize=thread (so that nothing here is instrumented) and linked into the
// race-check programs, whose instrumented code then calls these functions instead of libtsan's.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" {
extern char __start_emu_shared[], __stop_emu_shared[];  // emu_shared.ld
/// The running block's saved copy of the static section (null outside a kernel).
unsigned char* emu_race_block_copy = nullptr;

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
/// Where TSan also checks an access to `a`: its offset in the running block's copy, or null.
void* in_block_copy(const void* a) {
  const char* p = static_cast<const char*>(a);
  if (emu_race_block_copy == nullptr || p < __start_emu_shared || p >= __stop_emu_shared)
    return nullptr;
  return emu_race_block_copy + (p - __start_emu_shared);
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

#define EMU_ALIASED_ACCESS(kind, n)                               \
  extern "C" void __tsan_##kind##n(void* a) {                     \
    void* pc = __builtin_return_address(0);                       \
    __tsan_##kind##n##_pc(a, pc);                                 \
    if (void* c = in_block_copy(a)) __tsan_##kind##n##_pc(c, pc); \
  }
EMU_ALIASED_ACCESS(read, 1)
EMU_ALIASED_ACCESS(read, 2)
EMU_ALIASED_ACCESS(read, 4)
EMU_ALIASED_ACCESS(read, 8)
EMU_ALIASED_ACCESS(read, 16)
EMU_ALIASED_ACCESS(write, 1)
EMU_ALIASED_ACCESS(write, 2)
EMU_ALIASED_ACCESS(write, 4)
EMU_ALIASED_ACCESS(write, 8)
EMU_ALIASED_ACCESS(write, 16)
#undef EMU_ALIASED_ACCESS

// Unaligned accesses: checked as ranges (libtsan has no _pc form of them).
#define EMU_ALIASED_UNALIGNED(kind, n)                                  \
  extern "C" void __tsan_unaligned_##kind##n(void* a) {                 \
    void* pc = __builtin_return_address(0);                             \
    __tsan_##kind##_range_pc(a, n, pc);                                 \
    if (void* c = in_block_copy(a)) __tsan_##kind##_range_pc(c, n, pc); \
  }
EMU_ALIASED_UNALIGNED(read, 2)
EMU_ALIASED_UNALIGNED(read, 4)
EMU_ALIASED_UNALIGNED(read, 8)
EMU_ALIASED_UNALIGNED(read, 16)
EMU_ALIASED_UNALIGNED(write, 2)
EMU_ALIASED_UNALIGNED(write, 4)
EMU_ALIASED_UNALIGNED(write, 8)
EMU_ALIASED_UNALIGNED(write, 16)
#undef EMU_ALIASED_UNALIGNED

// 32-bit atomics (atomicAdd and atomicExch on shared counts and histograms, and the loads and
// stores of std::atomic_ref): the operation itself is libtsan's, on the real address; the copy
// sees an atomic read (a load) or an atomic read-modify-write that adds 0 (the others), which
// TSan checks as it would the operation and which leaves the copy's contents as they were.
using Atomic32 = std::uint32_t;
extern "C" Atomic32 __tsan_atomic32_load(const volatile Atomic32* a, int mo) {
  static const auto real = reinterpret_cast<Atomic32 (*)(const volatile Atomic32*, int)>(
      runtime_function("__tsan_atomic32_load"));
  const Atomic32 v = real(a, mo);
  if (void* c = in_block_copy(const_cast<Atomic32*>(a))) real(static_cast<Atomic32*>(c), mo);
  return v;
}
namespace {
using Rmw32 = Atomic32 (*)(volatile Atomic32*, Atomic32, int);
Rmw32 runtime_fetch_add() {
  static const auto real = reinterpret_cast<Rmw32>(runtime_function("__tsan_atomic32_fetch_add"));
  return real;
}
void check_copy_as_rmw(const volatile Atomic32* a, int mo) {
  if (void* c = in_block_copy(const_cast<Atomic32*>(a)))
    runtime_fetch_add()(static_cast<Atomic32*>(c), 0, mo);
}
}  // namespace
extern "C" Atomic32 __tsan_atomic32_fetch_add(volatile Atomic32* a, Atomic32 v, int mo) {
  const Atomic32 old = runtime_fetch_add()(a, v, mo);
  check_copy_as_rmw(a, mo);
  return old;
}
extern "C" Atomic32 __tsan_atomic32_exchange(volatile Atomic32* a, Atomic32 v, int mo) {
  static const auto real = reinterpret_cast<Rmw32>(runtime_function("__tsan_atomic32_exchange"));
  const Atomic32 old = real(a, v, mo);
  check_copy_as_rmw(a, mo);
  return old;
}
extern "C" void __tsan_atomic32_store(volatile Atomic32* a, Atomic32 v, int mo) {
  static const auto real = reinterpret_cast<void (*)(volatile Atomic32*, Atomic32, int)>(
      runtime_function("__tsan_atomic32_store"));
  real(a, v, mo);
  check_copy_as_rmw(a, mo);
}
