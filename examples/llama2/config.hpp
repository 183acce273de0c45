// Llama model hyper-parameters from a Hugging Face config.json, and the errors the loader throws.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llama {

/// Every loading problem (missing file, bad header, missing tensor, wrong shape or dtype) is a
/// LoadError whose message names the file and, where there is one, the tensor.
struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Config {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  int eos_token_id = 2;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
};

/// A whole text file (or pipe), at most `max_bytes` of it: a config or prompt past that is an
/// error, not a read until memory runs out (/dev/zero, a wrong path to a weights file).
inline std::string read_text_file(const std::string& path, size_t max_bytes = size_t(64) << 20) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw LoadError(path + ": is a directory");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw LoadError(path + ": cannot open file");
  std::string text;
  std::vector<char> buf(1 << 16);
  while (f.read(buf.data(), buf.size()) || f.gcount() > 0) {
    text.append(buf.data(), static_cast<size_t>(f.gcount()));
    if (text.size() > max_bytes)
      throw LoadError(path + ": larger than " + std::to_string(max_bytes >> 20) + " MiB");
  }
  return text;
}

/// Checks the shapes every component of the example relies on (sparq supports head_dim 64, 128
/// and 256; the query heads must be a multiple of the KV heads).
inline void validate_config(const Config& c, const std::string& where) {
  auto fail = [&](const std::string& m) { throw LoadError(where + ": " + m); };
  if (c.hidden_size < 1 || c.intermediate_size < 1 || c.num_layers < 1 || c.num_heads < 1 ||
      c.num_kv_heads < 1 || c.vocab_size < 1)
    fail(
        "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, "
        "num_key_value_heads and vocab_size must be positive");
  // Far above any real Llama, low enough that every product of them fits the int64 shapes
  // and the int dimensions the model code uses (q_dim, kv_dim).
  if (c.hidden_size > (1 << 20) || c.intermediate_size > (1 << 20) || c.num_layers > 4096 ||
      c.num_heads > 4096 || c.vocab_size > (1 << 24))
    fail(
        "implausibly large model (limits: hidden_size and intermediate_size 2^20, 4096 layers, "
        "4096 heads, vocab_size 2^24)");
  if (c.num_heads % c.num_kv_heads != 0)
    fail("num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256)
    fail("head_dim " + std::to_string(c.head_dim) + " is not supported (sparq: 64, 128, 256)");
  if (!(c.rope_theta > 0) || !(c.rms_norm_eps > 0)) fail("rope_theta and rms_norm_eps must be > 0");
  if (c.max_position_embeddings < 1) fail("max_position_embeddings must be positive");
}

/// Parses config.json text (`where` names the file in errors).
inline Config parse_config(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw LoadError(where + ": malformed JSON: " + e.what());
  }
  if (!j.is_object()) throw LoadError(where + ": expected a JSON object");
  auto fail = [&](const std::string& m) { throw LoadError(where + ": " + m); };
  // An integer that fits an int; 4294967424 must not silently become 128.
  auto as_int = [&](const nlohmann::json& v, const std::string& key) -> int {
    if (!v.is_number_integer()) fail("\"" + key + "\" must be an integer");
    const bool fits = v.is_number_unsigned()
                          ? v.get<uint64_t>() <= uint64_t(INT32_MAX)
                          : v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
    if (!fits) fail("\"" + key + "\" = " + v.dump() + " is out of range");
    return static_cast<int>(v.get<int64_t>());
  };
  auto get_int = [&](const char* key, int fallback, bool required) -> int {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) fail(std::string("missing \"") + key + "\"");
      return fallback;
    }
    return as_int(*it, key);
  };
  auto get_num = [&](const char* key, double fallback) -> double {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number()) fail(std::string("\"") + key + "\" must be a number");
    return it->get<double>();
  };
  // A string member of an object, or `fallback` when absent or null.
  auto get_str = [&](const nlohmann::json& o, const std::string& key, const std::string& fallback,
                     const std::string& what) -> std::string {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return fallback;
    if (!it->is_string())
      fail((what.empty() ? "" : what + " ") + "\"" + key + "\" must be a string");
    return it->get<std::string>();
  };
  Config c;
  c.hidden_size = get_int("hidden_size", 0, true);
  c.intermediate_size = get_int("intermediate_size", 0, true);
  c.num_layers = get_int("num_hidden_layers", 0, true);
  c.num_heads = get_int("num_attention_heads", 0, true);
  c.vocab_size = get_int("vocab_size", 0, true);
  c.num_kv_heads = get_int("num_key_value_heads", c.num_heads, false);
  c.head_dim = get_int("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, false);
  c.max_position_embeddings = get_int("max_position_embeddings", 2048, false);
  c.bos_token_id = get_int("bos_token_id", 1, false);
  if (auto it = j.find("eos_token_id"); it != j.end() && it->is_array()) {
    // Llama 3 lists several end tokens; the first is the one a turn ends with.
    if (it->empty()) fail("\"eos_token_id\" is an empty list");
    c.eos_token_id = as_int(it->front(), "eos_token_id[0]");
  } else {
    c.eos_token_id = get_int("eos_token_id", 2, false);
  }
  c.rope_theta = get_num("rope_theta", 10000.0);
  // transformers >= 5 writes {"rope_parameters": {"rope_theta": ..., "rope_type": ...}}.
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("\"rope_parameters\" must be an object");
    if (auto t = it->find("rope_theta"); t != it->end() && !t->is_null()) {
      if (!t->is_number()) fail("rope_parameters \"rope_theta\" must be a number");
      c.rope_theta = t->get<double>();
    }
    const std::string type = get_str(*it, "rope_type", "default", "rope_parameters");
    if (type != "default")
      fail("rope_parameters rope_type \"" + type + "\" is not supported by this example");
  }
  c.rms_norm_eps = get_num("rms_norm_eps", 1e-6);
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail("\"tie_word_embeddings\" must be a boolean");
    c.tie_word_embeddings = it->get<bool>();
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("\"rope_scaling\" must be an object or null");
    const std::string type =
        get_str(*it, "rope_type", get_str(*it, "type", "?", "rope_scaling"), "rope_scaling");
    if (type != "default") fail("rope_scaling \"" + type + "\" is not supported by this example");
  }
  if (const std::string act = get_str(j, "hidden_act", "silu", ""); act != "silu")
    fail("hidden_act \"" + act + "\" is not supported");
  validate_config(c, where);
  return c;
}

inline Config load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  return parse_config(read_text_file(path), path);
}

}  // namespace llama
