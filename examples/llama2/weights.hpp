// A Hugging Face Llama checkpoint directory: config.json, model.safetensors or shards listed in
// model.safetensors.index.json, memory-mapped. Tensors are looked up by name with their
// expected shape; every mismatch is a LoadError naming the file and the tensor.
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config.hpp"
#include "safetensors.hpp"

namespace llama {

inline bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir) : dir_(dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw LoadError(dir + ": not a directory (expected a Hugging Face checkpoint directory)");
    config_ = load_config(dir);
    const std::string index = dir + "/model.safetensors.index.json";
    const std::string single = dir + "/model.safetensors";
    if (file_exists(index)) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(read_text_file(index));
      } catch (const LoadError&) {
        throw;
      } catch (const std::exception& e) {
        throw LoadError(index + ": malformed JSON: " + e.what());
      }
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw LoadError(index + ": missing \"weight_map\" object");
      std::set<std::string> shards;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it->is_string())
          throw LoadError(index + ": weight_map[\"" + it.key() + "\"] must be a file name");
        const std::string f = it->get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
          throw LoadError(index + ": weight_map[\"" + it.key() + "\"]: bad file name \"" + f +
                          "\"");
        shards.insert(f);
        owner_[it.key()] = f;
      }
      for (const std::string& f : shards) {
        const std::string p = dir + "/" + f;
        if (!file_exists(p)) throw LoadError(p + ": missing shard (listed in " + index + ")");
        files_[f] = std::make_unique<SafetensorsFile>(p);
      }
    } else if (file_exists(single)) {
      files_["model.safetensors"] = std::make_unique<SafetensorsFile>(single);
    } else {
      throw LoadError(dir + ": neither model.safetensors nor model.safetensors.index.json found");
    }
  }

  const Config& config() const { return config_; }
  const std::string& dir() const { return dir_; }

  /// The tensor `name` with exactly `shape` and a float dtype (F32, F16, BF16).
  const TensorInfo& get(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorInfo* t = nullptr;
    std::string where;
    if (!owner_.empty()) {
      auto it = owner_.find(name);
      if (it == owner_.end())
        throw LoadError(dir_ + "/model.safetensors.index.json: missing tensor \"" + name + "\"");
      const SafetensorsFile& f = *files_.at(it->second);
      where = f.path();
      t = f.find(name);
      if (!t)
        throw LoadError(where + ": missing tensor \"" + name + "\" (the index lists it here)");
    } else {
      const SafetensorsFile& f = *files_.begin()->second;
      where = f.path();
      t = f.find(name);
      if (!t) throw LoadError(where + ": missing tensor \"" + name + "\"");
    }
    if (t->dtype == DType::kOther)
      throw LoadError(where + ": tensor \"" + name + "\": dtype " + t->dtype_name +
                      " is not supported (expected F32, F16 or BF16)");
    if (t->shape != shape)
      throw LoadError(where + ": tensor \"" + name + "\": shape " + shape_str(t->shape) +
                      ", expected " + shape_str(shape) + " from config.json");
    return *t;
  }

 private:
  std::string dir_;
  Config config_;
  std::map<std::string, std::string> owner_;  ///< tensor -> shard file (sharded checkpoints)
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
};

/// The tensors of a Llama model, all checked against config.json before any is used.
struct LayerTensors {
  const TensorInfo *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
};
struct ModelTensors {
  const TensorInfo* embed;
  std::vector<LayerTensors> layers;
  const TensorInfo* final_norm;
  const TensorInfo* lm_head;  ///< the embedding when tie_word_embeddings
  int64_t bytes = 0;
};

inline ModelTensors collect_tensors(const Checkpoint& ck, bool progress) {
  const Config& c = ck.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  ModelTensors m;
  auto get = [&](const std::string& n, std::vector<int64_t> s) {
    const TensorInfo* t = &ck.get(n, s);
    m.bytes += t->bytes;
    return t;
  };
  m.embed = get("model.embed_tokens.weight", {V, H});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerTensors L;
    L.attn_norm = get(p + "input_layernorm.weight", {H});
    L.wq = get(p + "self_attn.q_proj.weight", {c.q_dim(), H});
    L.wk = get(p + "self_attn.k_proj.weight", {c.kv_dim(), H});
    L.wv = get(p + "self_attn.v_proj.weight", {c.kv_dim(), H});
    L.wo = get(p + "self_attn.o_proj.weight", {H, c.q_dim()});
    L.mlp_norm = get(p + "post_attention_layernorm.weight", {H});
    L.w_gate = get(p + "mlp.gate_proj.weight", {I, H});
    L.w_up = get(p + "mlp.up_proj.weight", {I, H});
    L.w_down = get(p + "mlp.down_proj.weight", {H, I});
    m.layers.push_back(L);
    if (progress) std::fprintf(stderr, "\rchecking weights: layer %d/%d", l + 1, c.num_layers);
  }
  if (progress) std::fprintf(stderr, "\n");
  m.final_norm = get("model.norm.weight", {H});
  m.lm_head = c.tie_word_embeddings ? m.embed : get("lm_head.weight", {V, H});
  return m;
}

}  // namespace llama
