// libFuzzer target: tests/support/npy.hpp on arbitrary bytes. Any exception other than the
// reader's std::runtime_error, and any sanitizer report, is a bug. Built and run by
// scripts/fuzz-loaders.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "support/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const sparq::test::NpyArray a =
        sparq::test::parse_npy(std::string(reinterpret_cast<const char*>(data), size));
    // The shape must describe exactly the values read.
    if (a.size() != static_cast<int64_t>(a.data.size())) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
