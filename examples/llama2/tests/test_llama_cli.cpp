// The llama2_chat program end to end on the CPU: --help, errors with a non-zero exit, a
// one-shot greedy answer, and the decode benchmark, on the tiny checkpoint.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_cpu.hpp"
#include "test_support.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

namespace llama::test {
namespace {

struct Result {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr
};

/// The program under test: $LLAMA2_CHAT_BIN when set (a build carried to another machine),
/// else the path CMake compiled in.
std::string program() {
  const char* env = std::getenv("LLAMA2_CHAT_BIN");
  return env && *env ? env : LLAMA2_CHAT;
}

/// Runs llama2_chat with `args`; `input` (no single quotes) is its standard input.
Result run(const std::string& args, bool with_stderr = true, const std::string& input = "") {
  Result r;
  const std::string cmd = "printf '" + input + "' | '" + program() + "' " + args +
                          (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    r.output.append(buf, n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

TEST(Cli, Help) {
  const Result r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--bench-decode"), std::string::npos);
  EXPECT_NE(r.output.find("--matvec cublas|fused"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--pdl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--prefill-attention gemm|simple"), std::string::npos) << r.output;
}

TEST(Cli, MissingModelDirectoryFailsCleanly) {
  const Result r = run("--model /nonexistent/llama --device cpu --prompt hi");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/llama: not a directory"), std::string::npos) << r.output;
}

TEST(Cli, BadFlagsAreUsageErrors) {
  EXPECT_EQ(run("--model x --attention fast").exit_code, 2);
  EXPECT_EQ(run("--prompt hi").exit_code, 2);
  EXPECT_EQ(run("--model x --bogus").exit_code, 2);
}

// Numbers out of range, fractional counts and "inf" are usage errors, never a conversion
// that overflows an int.
TEST(Cli, OutOfRangeNumbersAreUsageErrors) {
  for (const char* flags : {"--max-new-tokens 1e20", "--max-seq-len 99999999999", "--k 2.5",
                            "--r -3", "--bench-steps inf", "--seed 99999999999999999999"}) {
    const Result r = run(std::string("--model x ") + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find("(a whole number from"), std::string::npos) << r.output;
  }
  for (const char* flags : {"--top-p 2", "--temperature inf", "--compression nan"}) {
    const Result r = run(std::string("--model x ") + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find("(a number from"), std::string::npos) << r.output;
  }
}

// A tokenizer that can produce ids past the model's embedding is refused before the weights
// are loaded.
TEST(Cli, TokenizerLargerThanTheVocabularyIsRefused) {
  char tmpl[] = "/tmp/llama_cli_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, src = variant_dir("bf16_tied");
  nlohmann::json c = nlohmann::json::parse(read_text_file(src + "/config.json"));
  c["vocab_size"] = 100;
  std::ofstream(dir + "/config.json") << c.dump();
  for (const char* f : {"model.safetensors", "tokenizer.model"})
    ASSERT_EQ(symlink((src + "/" + f).c_str(), (dir + "/" + f).c_str()), 0);
  const Result r = run("--model '" + dir + "' --device cpu --prompt hi");
  std::system(("rm -rf '" + dir + "'").c_str());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("tokenizer.model: 384 pieces, but config.json's vocab_size is 100"),
            std::string::npos)
      << r.output;
}

// A copy of the bf16_tied checkpoint in `dir` whose vocabulary is padded to `padded` rows
// (config.json and the tied embedding), every padded row `scale` times row `like`.
void write_padded_checkpoint(const std::string& dir, int padded, int like, float scale) {
  const std::string src = variant_dir("bf16_tied");
  nlohmann::json c = nlohmann::json::parse(read_text_file(src + "/config.json"));
  const int vocab = c["vocab_size"], hidden = c["hidden_size"];
  c["vocab_size"] = padded;
  std::ofstream(dir + "/config.json") << c.dump();
  ASSERT_EQ(symlink((src + "/tokenizer.model").c_str(), (dir + "/tokenizer.model").c_str()), 0);
  const std::string bytes = read_text_file(src + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  const std::string data = bytes.substr(8 + n);
  // Tensors in data order, each copied; the embedding gets its extra rows.
  std::vector<std::pair<uint64_t, std::string>> order;
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") order.push_back({it.value()["data_offsets"][0], it.key()});
  std::sort(order.begin(), order.end());
  std::string out_data;
  for (const auto& [begin, name] : order) {
    nlohmann::json& e = header[name];
    std::string t = data.substr(begin, e["data_offsets"][1].get<uint64_t>() - begin);
    if (name == "model.embed_tokens.weight") {
      ASSERT_EQ(e["dtype"], "BF16");
      const size_t row = size_t(hidden) * 2;
      std::string extra = t.substr(size_t(like) * row, row);
      for (size_t j = 0; j < extra.size(); j += 2) {  // scale a bf16: through float and back
        uint32_t u = (uint32_t(uint8_t(extra[j + 1])) << 24) | (uint32_t(uint8_t(extra[j])) << 16);
        float f;
        std::memcpy(&f, &u, 4);
        f *= scale;
        std::memcpy(&u, &f, 4);
        extra[j] = char((u >> 16) & 0xff), extra[j + 1] = char(u >> 24);
      }
      for (int r = vocab; r < padded; ++r)
        t += extra;
      e["shape"] = {padded, hidden};
    }
    e["data_offsets"] = {out_data.size(), out_data.size() + t.size()};
    out_data += t;
  }
  const std::string h = header.dump();
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<char>((uint64_t(h.size()) >> (8 * i)) & 0xff);
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << file << h << out_data;
}

// With config.json's vocab_size above the tokenizer's pieces (a padded vocabulary), padded
// rows are never sampled. Here every padded row is 4 x the greedy answer's first token's row,
// so its logit is 4 x the winning one: sampled, it would end the streamed text. The answer
// must equal the unpadded checkpoint's.
TEST(Cli, PaddedVocabularyRowsAreNeverSampled) {
  const std::string prompt = "Hello there";
  int first = -1;
  {
    const Checkpoint ck(variant_dir("bf16_tied"));
    const Tokenizer tok(variant_dir("bf16_tied") + "/tokenizer.model");
    CpuModel m(ck, 256, false);
    std::vector<float> logits;
    m.prefill(chat_turn_tokens(tok, "", prompt), &logits);
    first = argmax(logits);
    ASSERT_GT(logits[first], 0.f);  // so that 4 x the row gives a larger logit
  }
  char tmpl[] = "/tmp/llama_padded_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  write_padded_checkpoint(dir, 400, first, 4.0f);
  const std::string args =
      " --device cpu --prompt '" + prompt + "' --temperature 0 --max-new-tokens 6";
  const Result padded = run("--model '" + dir + "'" + args, false);
  const Result plain = run("--model '" + variant_dir("bf16_tied") + "'" + args, false);
  std::system(("rm -rf '" + dir + "'").c_str());
  EXPECT_EQ(padded.exit_code, 0) << padded.output;
  EXPECT_FALSE(plain.output.empty());
  EXPECT_EQ(padded.output, plain.output);
}

TEST(Cli, BadMatvecIsAUsageError) {
  const Result r = run("--model x --matvec bogus");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: --matvec must be cublas or fused"), std::string::npos)
      << r.output;
}

TEST(Cli, BadPrefillAttentionIsAUsageError) {
  const Result r = run("--model x --prefill-attention flash");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: --prefill-attention must be gemm or simple"), std::string::npos)
      << r.output;
}

TEST(Cli, OneShotGreedyAnswerIsDeterministic) {
  const std::string args = "--model '" + variant_dir("bf16_tied") +
                           "' --device cpu --prompt 'Hello there' --system 'Be brief.' "
                           "--temperature 0 --max-new-tokens 8";
  const Result a = run(args);
  EXPECT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("[prefill 50 tokens"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("decode 8 tokens"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("context 58/256"), std::string::npos) << a.output;
  const Result b = run(args, false), c = run(args, false);  // the answer alone (stdout)
  EXPECT_FALSE(b.output.empty());
  EXPECT_EQ(b.output, c.output);
}

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + 1))
    ++n;
  return n;
}

TEST(Cli, InteractiveMultiTurnKeepsTheConversation) {
  const Result r = run("--model '" + variant_dir("bf16_tied") +
                           "' --device cpu --temperature 0 --max-new-tokens 5 --system Hi",
                       true, "Hello\\n\\nHow are you?\\n");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "[prefill "), 2u) << r.output;  // the empty line is skipped
  // Turn 1: <s>[INST] <<SYS>>... (43 tokens) + 5 answer tokens; turn 2 starts with </s>.
  const size_t second = r.output.rfind("[prefill ");
  EXPECT_NE(r.output.find("context ", second), std::string::npos);
  const size_t first = r.output.find("[prefill ");
  const int first_ctx = std::atoi(r.output.c_str() + r.output.find("context ", first) + 8);
  const int second_ctx = std::atoi(r.output.c_str() + r.output.find("context ", second) + 8);
  const int second_prefill = std::atoi(r.output.c_str() + second + 9);
  EXPECT_EQ(second_ctx, first_ctx + second_prefill + 5) << r.output;
}

// In interactive mode a line ending in a backslash continues on the next: one turn, the same
// tokens as the joined text given with --prompt.
TEST(Cli, InteractiveBackslashContinuesTheLine) {
  const std::string model =
      "--model '" + variant_dir("bf16_tied") + "' --device cpu --temperature 0 --max-new-tokens 4";
  const Result r = run(model, true, "The cat sat.\\\\\nThe dog ran.\\\\\nWho ran?\n");
  const Result joined = run(model + " --prompt 'The cat sat.\nThe dog ran.\nWho ran?'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "[prefill "), 1u) << r.output;
  const size_t a = r.output.find("[prefill "), b = joined.output.find("[prefill ");
  ASSERT_NE(b, std::string::npos) << joined.output;
  EXPECT_EQ(std::atoi(r.output.c_str() + a + 9), std::atoi(joined.output.c_str() + b + 9))
      << r.output << joined.output;
}

// Interactively, a turn that no longer fits starts the conversation over (system prompt
// again) if it fits on its own; a turn too long even alone is refused and the chat goes on.
TEST(Cli, InteractiveFullContextStartsOver) {
  const std::string model = "--model '" + variant_dir("bf16_tied") +
                            "' --device cpu --temperature 0 --max-new-tokens 5 --system Hi "
                            "--max-seq-len 80";
  // 42 + 5, then 26 + 5 (78 of 80): the third turn does not fit after them.
  const Result r = run(model, true, "Hello\\nHow are you?\\nTell me more.\\n");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "[prefill "), 3u) << r.output;
  EXPECT_NE(r.output.find("[context full (78/80): the conversation starts over]"),
            std::string::npos)
      << r.output;
  std::string words;
  for (int i = 0; i < 200; ++i)
    words += "word ";
  const Result skip = run(model, true, "Hello\\n" + words + "\\nHow are you?\\n");
  EXPECT_EQ(skip.exit_code, 0) << skip.output;
  EXPECT_EQ(count(skip.output, "[prefill "), 2u) << skip.output;
  EXPECT_EQ(count(skip.output, "error: this turn alone needs "), 1u) << skip.output;
  EXPECT_NE(skip.output.find("more than --max-seq-len 80: skipped"), std::string::npos)
      << skip.output;
  EXPECT_NE(skip.output.find("context 78/80"), std::string::npos) << skip.output;  // kept
}

TEST(Cli, SparqDecodeReportsTransferRatio) {
  const Result r = run("--model '" + variant_dir("fp32_sharded") +
                       "' --device cpu --prompt 'Once upon a time' --raw --temperature 0.8 "
                       "--seed 5 --max-new-tokens 6 --attention sparq --r 16 --k 8 "
                       "--local-window 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("attention sparq r=16 k=8 l=2"), std::string::npos) << r.output;
}

TEST(Cli, BenchDecodeOnTheCpu) {
  const Result r = run("--model '" + variant_dir("bf16_tied") +
                       "' --device cpu --bench-decode 200 --bench-steps 3 --compression 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("speedup"), std::string::npos) << r.output;
}

TEST(Cli, BenchDecodeAfterARealPrefill) {
  const Result r = run("--model '" + variant_dir("fp32_sharded") +
                       "' --device cpu --bench-decode 100 --bench-steps 2 --bench-fill prefill");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("prefill of 100 random tokens"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("speedup"), std::string::npos) << r.output;
}

// A KV cache larger than the machine's memory is refused up front with its size, not left to
// fail (or be killed) while the cache is filled. At 2^30 positions the tiny model's cache is
// 3.3 TB.
TEST(Cli, KVCacheLargerThanMemoryIsAnError) {
  const Result r = run("--model '" + variant_dir("bf16_tied") +
                       "' --device cpu --prompt hi --max-seq-len 1073741824");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("out of host memory: the KV cache alone needs 3298.5 GB"),
            std::string::npos)
      << r.output;
}

// --prompt-file with --prompt asks about a document: the file's text, a blank line, then the
// question, exactly as if typed as one prompt.
TEST(Cli, PromptFileComesBeforeThePrompt) {
  char tmpl[] = "/tmp/llama_cli_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, doc = "The cat sat.\nThe dog ran.";
  std::ofstream(dir + "/doc.txt") << doc << "\n";  // a file's last newline is not kept
  std::ofstream(dir + "/empty.txt") << " \n";
  const std::string model =
      "--model '" + variant_dir("bf16_tied") + "' --device cpu --temperature 0 --max-new-tokens 6 ";
  const Result joined = run(model + "--prompt '" + doc + "\n\nWho ran?'", false);
  const Result file = run(model + "--prompt-file '" + dir + "/doc.txt' --prompt 'Who ran?'", false);
  const Result alone = run(model + "--prompt-file '" + dir + "/doc.txt'");
  const Result empty = run(model + "--prompt-file '" + dir + "/empty.txt'");
  const Result missing = run(model + "--prompt-file '" + dir + "/none.txt'");
  const Result device = run(model + "--prompt-file /dev/zero");
  const Result piped = run(model + "--prompt-file /dev/stdin --prompt 'Who ran?'", false,
                           "The cat sat.\\nThe dog ran.\\n");
  const Result directory = run(model + "--prompt-file '" + dir + "'");
  std::filesystem::resize_file(dir + "/empty.txt", (std::uintmax_t(64) << 20) + 1);  // sparse
  const Result huge = run(model + "--prompt-file '" + dir + "/empty.txt'");
  std::system(("rm -rf '" + dir + "'").c_str());
  EXPECT_EQ(file.exit_code, 0) << file.output;
  EXPECT_FALSE(joined.output.empty());
  EXPECT_EQ(file.output, joined.output);
  EXPECT_EQ(alone.exit_code, 0) << alone.output;
  EXPECT_NE(alone.output.find("decode 6 tokens"), std::string::npos) << alone.output;
  EXPECT_EQ(empty.exit_code, 1) << empty.output;
  EXPECT_NE(empty.output.find("empty.txt: the file is empty"), std::string::npos) << empty.output;
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("none.txt: cannot open file"), std::string::npos) << missing.output;
  EXPECT_EQ(device.exit_code, 1) << device.output;
  EXPECT_NE(device.output.find("/dev/zero: larger than 64 MiB"), std::string::npos)
      << device.output;
  EXPECT_EQ(piped.output, joined.output);  // a pipe works like the file
  EXPECT_EQ(directory.exit_code, 1) << directory.output;
  EXPECT_NE(directory.output.find(": is a directory"), std::string::npos) << directory.output;
  EXPECT_EQ(huge.exit_code, 1) << huge.output;
  EXPECT_NE(huge.output.find("empty.txt: larger than 64 MiB"), std::string::npos) << huge.output;
}

// The tiny checkpoints were made with max_position_embeddings 256.
TEST(Cli, MaxSeqLenPastTheTrainedLengthWarns) {
  const std::string model = "--model '" + variant_dir("bf16_tied") +
                            "' --device cpu --prompt hi --temperature 0 --max-new-tokens 2 ";
  const Result past = run(model + "--max-seq-len 300"), within = run(model + "--max-seq-len 256");
  EXPECT_EQ(past.exit_code, 0) << past.output;
  EXPECT_NE(past.output.find("warning: --max-seq-len 300 is past the model's "
                             "max_position_embeddings 256"),
            std::string::npos)
      << past.output;
  EXPECT_EQ(within.exit_code, 0) << within.output;
  EXPECT_EQ(within.output.find("warning"), std::string::npos) << within.output;
}

TEST(Cli, ContextOverflowIsAnError) {
  const Result r = run("--model '" + variant_dir("bf16_tied") +
                       "' --device cpu --prompt 'a long enough prompt' --max-seq-len 8");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("tokens with this turn) does not fit --max-seq-len 8"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace llama::test
