// Every malformed-checkpoint case gives a LoadError naming the file and (where there is one)
// the tensor. The malformed files are made here, in a temporary directory, from the tiny
// checkpoint.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "test_support.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

namespace llama::test {
namespace {

std::string slurp(const std::string& p) {
  return read_text_file(p);
}
void write(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}

/// A header and data section split out of a .safetensors file, to be edited and written back.
struct Safetensors {
  nlohmann::json header;
  std::string data;
  explicit Safetensors(const std::string& bytes) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
      n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    header = nlohmann::json::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  std::string bytes() const {
    const std::string h = header.dump();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i)
      out[i] = static_cast<char>((uint64_t(h.size()) >> (8 * i)) & 0xff);
    return out + h + data;
  }
};

class Loader : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/llama_loader_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string src = variant_dir("bf16_tied");
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
      write(dir_ + "/" + f, slurp(src + "/" + f));
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  /// The LoadError message of loading dir_ (and checking every tensor); fails if none.
  std::string load_error() {
    try {
      const Checkpoint ck(dir_);
      collect_tensors(ck, false);
    } catch (const LoadError& e) {
      return e.what();
    }
    ADD_FAILURE() << "no LoadError";
    return "";
  }
  void edit_model(const std::function<void(Safetensors&)>& f) {
    Safetensors st(slurp(model()));
    f(st);
    write(model(), st.bytes());
  }
  std::string model() const { return dir_ + "/model.safetensors"; }

  std::string dir_;
};

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

TEST_F(Loader, ValidCheckpointLoads) {
  const Checkpoint ck(dir_);
  const ModelTensors m = collect_tensors(ck, false);
  EXPECT_EQ(m.lm_head, m.embed);  // tied
  EXPECT_EQ(ck.config().num_kv_heads, 2);
  EXPECT_EQ(ck.config().head_dim, 64);
  EXPECT_DOUBLE_EQ(ck.config().rope_theta, 50000.0);  // from rope_parameters
  EXPECT_DOUBLE_EQ(ck.config().rms_norm_eps, 1e-6);
}

TEST_F(Loader, ShardedCheckpointAndLegacyConfigLoad) {
  const Checkpoint ck(variant_dir("fp32_sharded"));
  const ModelTensors m = collect_tensors(ck, false);
  EXPECT_NE(m.lm_head, m.embed);
  EXPECT_EQ(m.embed->dtype, DType::kF32);
  EXPECT_DOUBLE_EQ(ck.config().rope_theta, 50000.0);  // top-level rope_theta
}

TEST_F(Loader, MissingDirectory) {
  dir_ += "/nope";
  EXPECT_HAS(load_error(), dir_ + ": not a directory");
}

TEST_F(Loader, MissingConfig) {
  std::remove((dir_ + "/config.json").c_str());
  EXPECT_HAS(load_error(), "config.json: cannot open file");
}

// A config.json that is a directory, or a device with no end, is an error, not a hang.
TEST_F(Loader, ConfigThatIsNotATextFile) {
  std::remove((dir_ + "/config.json").c_str());
  ASSERT_EQ(symlink("/dev/zero", (dir_ + "/config.json").c_str()), 0);
  EXPECT_HAS(load_error(), "config.json: larger than 64 MiB");
  std::remove((dir_ + "/config.json").c_str());
  ASSERT_EQ(mkdir((dir_ + "/config.json").c_str(), 0700), 0);
  EXPECT_HAS(load_error(), "config.json: is a directory");
}

TEST_F(Loader, MalformedConfig) {
  write(dir_ + "/config.json", "{\"hidden_size\": 128,");
  EXPECT_HAS(load_error(), "config.json: malformed JSON");
  write(dir_ + "/config.json", "{\"hidden_size\": 128}");
  EXPECT_HAS(load_error(), "config.json: missing \"intermediate_size\"");
  nlohmann::json c = nlohmann::json::parse(slurp(variant_dir("bf16_tied") + "/config.json"));
  c["head_dim"] = 96;
  write(dir_ + "/config.json", c.dump());
  EXPECT_HAS(load_error(), "head_dim 96 is not supported");
}

// Each field of the wrong type or out of range is a LoadError naming the field: never a JSON
// library exception, and never an integer that silently wraps (4294967424 would become 128).
TEST_F(Loader, ConfigFieldsOfTheWrongTypeOrRange) {
  const nlohmann::json good =
      nlohmann::json::parse(slurp(variant_dir("bf16_tied") + "/config.json"));
  auto error_with = [&](const char* key, const nlohmann::json& v) {
    nlohmann::json c = good;
    c[key] = v;
    write(dir_ + "/config.json", c.dump());
    return load_error();
  };
  EXPECT_HAS(error_with("head_dim", 4294967424ull), "\"head_dim\" = 4294967424 is out of range");
  EXPECT_HAS(error_with("vocab_size", 3000000000ull),
             "\"vocab_size\" = 3000000000 is out of range");
  EXPECT_HAS(error_with("num_attention_heads", 2.5), "\"num_attention_heads\" must be an integer");
  EXPECT_HAS(error_with("hidden_size", 1 << 24), "implausibly large model");
  EXPECT_HAS(error_with("eos_token_id", nlohmann::json::array()),
             "\"eos_token_id\" is an empty list");
  EXPECT_HAS(error_with("eos_token_id", {"</s>"}), "\"eos_token_id[0]\" must be an integer");
  EXPECT_HAS(error_with("rope_scaling", "linear"), "\"rope_scaling\" must be an object or null");
  EXPECT_HAS(error_with("rope_scaling", {{"rope_type", 3}}),
             "rope_scaling \"rope_type\" must be a string");
  EXPECT_HAS(error_with("rope_scaling", {{"type", "linear"}, {"factor", 2.0}}),
             "rope_scaling \"linear\" is not supported");
  EXPECT_HAS(error_with("rope_parameters", 10000), "\"rope_parameters\" must be an object");
  EXPECT_HAS(error_with("hidden_act", 3), "\"hidden_act\" must be a string");
  EXPECT_HAS(error_with("hidden_act", "gelu"), "hidden_act \"gelu\" is not supported");
  EXPECT_HAS(error_with("tie_word_embeddings", "yes"), "\"tie_word_embeddings\" must be a boolean");
  // Llama 3 style: a list of end tokens; the first is taken.
  nlohmann::json c = good;
  c["eos_token_id"] = {7, 9};
  EXPECT_EQ(parse_config(c.dump(), "config.json").eos_token_id, 7);
}

TEST_F(Loader, MissingWeights) {
  std::remove(model().c_str());
  EXPECT_HAS(load_error(), "neither model.safetensors nor model.safetensors.index.json");
}

TEST_F(Loader, TruncatedBeforeHeaderLength) {
  write(model(), "abc");
  EXPECT_HAS(load_error(), model() + ": truncated");
}

TEST_F(Loader, HeaderLengthPastEndOfFile) {
  write(model(), slurp(model()).substr(0, 100));
  EXPECT_HAS(load_error(), model() + ": truncated or malformed header");
}

TEST_F(Loader, MalformedHeaderJson) {
  std::string b = slurp(model());
  b[8] = '[';
  b[9] = '!';
  write(model(), b);
  EXPECT_HAS(load_error(), model() + ": malformed header JSON");
}

/// Open file descriptors of this process, and its mappings of `path`.
int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}
int mappings_of(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    n += line.find(path) != std::string::npos ? 1 : 0;
  return n;
}

// A constructor that throws gets no destructor call: the file and its mapping were kept open
// by every rejected file (found by fuzz-loaders.sh: "Too many open files").
TEST_F(Loader, RejectedFilesAreClosedAndUnmapped) {
  edit_model([](Safetensors& st) {
    st.header["model.norm.weight"]["data_offsets"] = {1u << 30, (1u << 30) + 256};
  });
  const int fds = open_fds();
  for (int i = 0; i < 50; ++i)
    EXPECT_THROW(SafetensorsFile f(model()), LoadError);
  EXPECT_EQ(open_fds(), fds);
  EXPECT_EQ(mappings_of(model()), 0);
  // A file too short for its header length fails before mapping: closed as well.
  write(model(), "abc");
  EXPECT_THROW(SafetensorsFile f(model()), LoadError);
  EXPECT_EQ(open_fds(), fds);
}

TEST_F(Loader, TruncatedData) {
  const std::string b = slurp(model());
  write(model(), b.substr(0, b.size() - 1000));
  const std::string e = load_error();
  EXPECT_HAS(e, model() + ": tensor \"");
  EXPECT_HAS(e, "outside the data section");
}

TEST_F(Loader, OffsetsPastEndOfData) {
  edit_model([](Safetensors& st) {
    st.header["model.norm.weight"]["data_offsets"] = {1u << 30, (1u << 30) + 256};
  });
  const std::string e = load_error();
  EXPECT_HAS(e, model() + ": tensor \"model.norm.weight\": data_offsets");
}

TEST_F(Loader, OffsetsDisagreeWithShape) {
  edit_model([](Safetensors& st) {
    auto& o = st.header["model.norm.weight"]["data_offsets"];
    o[1] = o[1].get<uint64_t>() - 2;
  });
  EXPECT_HAS(load_error(), "tensor \"model.norm.weight\": data_offsets span 254 bytes");
}

TEST_F(Loader, MissingTensor) {
  edit_model([](Safetensors& st) { st.header.erase("model.layers.1.mlp.up_proj.weight"); });
  EXPECT_HAS(load_error(), model() + ": missing tensor \"model.layers.1.mlp.up_proj.weight\"");
}

TEST_F(Loader, WrongShape) {
  edit_model([](Safetensors& st) {
    st.header["model.layers.0.self_attn.q_proj.weight"]["shape"] = {128, 256};
  });
  EXPECT_HAS(load_error(), model() +
                               ": tensor \"model.layers.0.self_attn.q_proj.weight\": shape "
                               "[128, 256], expected [256, 128]");
}

TEST_F(Loader, WrongDtype) {
  edit_model([](Safetensors& st) {
    st.header["model.layers.0.self_attn.k_proj.weight"]["dtype"] = "I16";
  });
  EXPECT_HAS(load_error(), model() +
                               ": tensor \"model.layers.0.self_attn.k_proj.weight\": dtype "
                               "I16 is not supported");
  edit_model([](Safetensors& st) { st.header["model.norm.weight"]["dtype"] = "Q9"; });
  EXPECT_HAS(load_error(), "tensor \"model.norm.weight\": unknown dtype \"Q9\"");
}

TEST_F(Loader, MalformedHeaderEntry) {
  edit_model([](Safetensors& st) { st.header["model.norm.weight"].erase("shape"); });
  EXPECT_HAS(load_error(), "tensor \"model.norm.weight\": malformed header entry");
}

class ShardedLoader : public Loader {
 protected:
  void SetUp() override {
    Loader::SetUp();
    std::remove(model().c_str());
    const std::string src = variant_dir("fp32_sharded");
    for (const char* f : {"config.json", "model.safetensors.index.json",
                          "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
      write(dir_ + "/" + f, slurp(src + "/" + f));
  }
  std::string index() const { return dir_ + "/model.safetensors.index.json"; }
};

TEST_F(ShardedLoader, Loads) {
  collect_tensors(Checkpoint(dir_), false);
}

TEST_F(ShardedLoader, MissingShard) {
  std::remove((dir_ + "/model-00002-of-00002.safetensors").c_str());
  EXPECT_HAS(load_error(), "model-00002-of-00002.safetensors: missing shard");
}

TEST_F(ShardedLoader, TensorMissingFromIndex) {
  nlohmann::json j = nlohmann::json::parse(slurp(index()));
  j["weight_map"].erase("model.embed_tokens.weight");
  write(index(), j.dump());
  EXPECT_HAS(load_error(), index() + ": missing tensor \"model.embed_tokens.weight\"");
}

TEST_F(ShardedLoader, IndexPointsAtTheWrongShard) {
  nlohmann::json j = nlohmann::json::parse(slurp(index()));
  const std::string f = j["weight_map"]["model.norm.weight"];
  j["weight_map"]["model.norm.weight"] = f == "model-00001-of-00002.safetensors"
                                             ? "model-00002-of-00002.safetensors"
                                             : "model-00001-of-00002.safetensors";
  write(index(), j.dump());
  EXPECT_HAS(load_error(), ": missing tensor \"model.norm.weight\" (the index lists it here)");
}

TEST_F(ShardedLoader, MalformedIndex) {
  write(index(), "{\"weight_map\": 3}");
  EXPECT_HAS(load_error(), index() + ": missing \"weight_map\" object");
  write(index(), "{\"weight_map\": {\"model.norm.weight\": \"../x\"}}");
  EXPECT_HAS(load_error(), "bad file name");
}

TEST_F(Loader, MissingOrBadTokenizer) {
  std::remove((dir_ + "/tokenizer.model").c_str());
  try {
    Tokenizer tok(dir_ + "/tokenizer.model");
    ADD_FAILURE() << "no error";
  } catch (const LoadError& e) {
    EXPECT_HAS(std::string(e.what()), dir_ + "/tokenizer.model: cannot load SentencePiece model");
  }
  write(dir_ + "/tokenizer.model", "not a model");
  EXPECT_THROW(Tokenizer(dir_ + "/tokenizer.model"), LoadError);
}

}  // namespace
}  // namespace llama::test
