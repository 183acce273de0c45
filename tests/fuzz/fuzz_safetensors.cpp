// libFuzzer target, structure-aware: .safetensors files whose JSON header has entries with
// random dtypes, shapes and data offsets (negative, fractional, strings, 2^63, missing), a
// header length that may lie, and random data bytes. SafetensorsFile must throw LoadError or
// give tensors whose every byte lies inside the mapping (read here, under AddressSanitizer).
// Built and run by scripts/fuzz-loaders.sh.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "safetensors.hpp"

namespace {

using nlohmann::json;

json random_number(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange(0, 5)) {
    case 0:
      return p.ConsumeIntegralInRange<int64_t>(0, 64);
    case 1:
      return p.ConsumeIntegral<uint64_t>();
    case 2:
      return p.ConsumeIntegralInRange<int64_t>(-5, -1);
    case 3:
      return 1.5;
    case 4:
      return "3";
    default:
      return uint64_t(1) << p.ConsumeIntegralInRange(0, 63);
  }
}

std::string random_file(FuzzedDataProvider& p) {
  static const char* const kDtypes[] = {"F32", "F16", "BF16", "I64", "U8", "F8_E4M3", "Q4", ""};
  json header = json::object();
  for (int i = p.ConsumeIntegralInRange(0, 4); i > 0; --i) {
    json e = json::object();
    if (p.ConsumeIntegralInRange(0, 9)) e["dtype"] = kDtypes[p.ConsumeIntegralInRange(0, 7)];
    json shape = json::array();
    for (int k = p.ConsumeIntegralInRange(0, 4); k > 0; --k)
      shape.push_back(random_number(p));
    if (p.ConsumeIntegralInRange(0, 9)) e["shape"] = shape;
    json offsets = json::array();
    for (int k = p.ConsumeIntegralInRange(0, 9) ? 2 : p.ConsumeIntegralInRange(0, 3); k > 0; --k)
      offsets.push_back(random_number(p));
    if (p.ConsumeIntegralInRange(0, 9)) e["data_offsets"] = offsets;
    header["t" + std::to_string(i)] = p.ConsumeIntegralInRange(0, 19) ? e : json(7);
  }
  const std::string text = header.dump();
  uint64_t length = text.size();
  switch (p.ConsumeIntegralInRange(0, 7)) {
    case 0:
      length += p.ConsumeIntegralInRange(0, 300);
      break;
    case 1:
      length = p.ConsumeIntegral<uint64_t>();
      break;
    case 2:
      length = length ? length - 1 : 0;
      break;
    default:
      break;
  }
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<char>(length >> (8 * i));
  return file + text + p.ConsumeRemainingBytesAsString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  const std::string bytes = random_file(p);
  static const std::string path = "/tmp/sparq_fuzz_safetensors_" + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  try {
    const llama::SafetensorsFile st(path);
    volatile uint64_t sum = 0;
    for (const auto& kv : st.tensors())
      for (int64_t i = 0; i < kv.second.bytes; ++i)
        sum += kv.second.data[i];
  } catch (const llama::LoadError&) {
  }
  return 0;
}
