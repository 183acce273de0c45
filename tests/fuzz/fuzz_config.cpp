// libFuzzer target, structure-aware: a config.json object whose known keys hold values of
// random types and ranges (integers past int, lists, objects, strings). parse_config must
// either return a config the rest of the example can use or throw LoadError; any other
// exception or sanitizer report is a bug. Built and run by scripts/fuzz-loaders.sh.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>

#include "config.hpp"

namespace {

using nlohmann::json;

json random_value(FuzzedDataProvider& p, int depth) {
  static const char* const kStrings[] = {"silu", "gelu", "default", "linear", "", "llama3"};
  static const char* const kRopeKeys[] = {"rope_type", "type", "rope_theta", "factor"};
  switch (p.ConsumeIntegralInRange(0, depth > 1 ? 5 : 7)) {
    case 0:
      return nullptr;
    case 1:
      return p.ConsumeBool();
    case 2:
      return p.ConsumeIntegralInRange<int64_t>(-3, 300);
    case 3:
      return p.ConsumeIntegral<int64_t>();
    case 4:
      return p.ConsumeIntegral<uint64_t>();
    case 5:
      return kStrings[p.ConsumeIntegralInRange(0, 5)];
    case 6: {
      json a = json::array();
      for (int i = p.ConsumeIntegralInRange(0, 3); i > 0; --i)
        a.push_back(random_value(p, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (int i = p.ConsumeIntegralInRange(0, 3); i > 0; --i)
        o[kRopeKeys[p.ConsumeIntegralInRange(0, 3)]] = random_value(p, depth + 1);
      return o;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kKeys[] = {
      "hidden_size",  "intermediate_size",   "num_hidden_layers", "num_attention_heads",
      "vocab_size",   "num_key_value_heads", "head_dim",          "max_position_embeddings",
      "bos_token_id", "eos_token_id",        "rope_theta",        "rope_parameters",
      "rms_norm_eps", "tie_word_embeddings", "rope_scaling",      "hidden_act"};
  FuzzedDataProvider p(data, size);
  json j = {{"hidden_size", 64},
            {"intermediate_size", 128},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 1},
            {"vocab_size", 100}};
  for (int i = p.ConsumeIntegralInRange(0, 6); i > 0; --i)
    j[kKeys[p.ConsumeIntegralInRange(0, 15)]] = random_value(p, 0);
  try {
    const llama::Config c = llama::parse_config(j.dump(), "config.json");
    // What the model code relies on once parsing succeeded.
    if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256) __builtin_trap();
    if (c.num_kv_heads < 1 || c.num_heads % c.num_kv_heads != 0) __builtin_trap();
    if (int64_t(c.num_heads) * c.head_dim > INT32_MAX) __builtin_trap();
  } catch (const llama::LoadError&) {
  }
  return 0;
}
