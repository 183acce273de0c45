// The CPU forward pass against transformers' float32 logits (tests/data/tiny_llama, made by
// scripts/make_tiny_llama.py), SparQ with r = d and k = S against dense, and the chat format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <sentencepiece_processor.h>

#include "model_cpu.hpp"
#include "sampler.hpp"
#include "test_support.hpp"
#include "tokenizer.hpp"

namespace llama::test {
namespace {

// transformers runs the same float32 math with other summation orders (and the library's
// reference attention is float64): logits agree to ~1e-5; 2e-4 leaves room for rounding only.
constexpr double kTol = 2e-4;

class CpuLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuLogits, PrefillAndDecodeMatchTransformers) {
  const Reference ref = load_reference(GetParam());
  const Checkpoint ck(variant_dir(GetParam()));
  CpuModel model(ck, 128, false);
  model.attention.mode = sparq::AttentionMode::kDense;
  std::vector<float> last, all;
  model.prefill(ref.prompt_ids, &last, &all);
  const int V = ck.config().vocab_size;
  ASSERT_EQ(all.size(), ref.prefill_logits.size() * V);
  for (size_t t = 0; t < ref.prefill_logits.size(); ++t)
    EXPECT_LT(max_abs_diff(&all[t * V], ref.prefill_logits[t]), kTol) << "prefill position " << t;
  EXPECT_EQ(argmax(last), ref.decode_tokens[0]);
  for (size_t s = 0; s < ref.decode_tokens.size(); ++s) {
    std::vector<float> logits;
    model.decode(ref.decode_tokens[s], &logits);  // teacher-forced with transformers' tokens
    EXPECT_LT(max_abs_diff(logits.data(), ref.decode_logits[s]), kTol) << "decode step " << s;
    if (s + 1 < ref.decode_tokens.size()) EXPECT_EQ(argmax(logits), ref.decode_tokens[s + 1]);
  }
  EXPECT_EQ(model.length(), int(ref.prompt_ids.size() + ref.decode_tokens.size()));
}

TEST_P(CpuLogits, PrefillInPiecesEqualsPrefillAtOnce) {
  const Reference ref = load_reference(GetParam());
  const Checkpoint ck(variant_dir(GetParam()));
  CpuModel model(ck, 128, false);
  std::vector<float> once, pieces;
  model.prefill(ref.prompt_ids, &once);
  model.reset();
  const std::vector<int> a(ref.prompt_ids.begin(), ref.prompt_ids.begin() + 10),
      b(ref.prompt_ids.begin() + 10, ref.prompt_ids.end());
  model.prefill(a, nullptr);
  model.prefill(b, &pieces);
  EXPECT_LT(max_abs_diff(pieces.data(), once), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(TinyLlama, CpuLogits, ::testing::Values("fp32_sharded", "bf16_tied"));

TEST(CpuDtypes, HalfToFloat) {
  for (float x : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f,
                  1e-6f, 0.1f, -3.14159f}) {
    const __half h = sparq::from_float<__half>(x);
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    EXPECT_EQ(f16_to_float(bits), sparq::to_float(h)) << x;
  }
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
}

// The bf16 checkpoint rewritten as F16 (bf16 values are exact in fp16 unless they are tiny):
// the fp16 loading path gives transformers' logits too.
TEST(CpuDtypes, Fp16CheckpointMatchesTransformers) {
  char tmpl[] = "/tmp/llama_fp16_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, src = variant_dir("bf16_tied");
  const std::string bytes = read_text_file(src + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  std::string data = bytes.substr(8 + n);
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    ASSERT_EQ((*it)["dtype"], "BF16");
    (*it)["dtype"] = "F16";
    const uint64_t b = (*it)["data_offsets"][0], e = (*it)["data_offsets"][1];
    for (uint64_t off = b; off < e; off += 2) {
      uint16_t v;
      std::memcpy(&v, &data[off], 2);
      const __half h = sparq::from_float<__half>(bf16_to_float(v));
      std::memcpy(&data[off], &h, 2);
    }
  }
  const std::string h = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((uint64_t(h.size()) >> (8 * i)) & 0xff);
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << out << h << data;
  std::ofstream(dir + "/config.json", std::ios::binary) << read_text_file(src + "/config.json");

  const Reference ref = load_reference("bf16_tied");
  const Checkpoint ck(dir);
  CpuModel model(ck, 64, false);
  std::vector<float> last, all;
  model.prefill(ref.prompt_ids, &last, &all);
  const int V = ck.config().vocab_size;
  for (size_t t = 0; t < ref.prefill_logits.size(); ++t)
    EXPECT_LT(max_abs_diff(&all[t * V], ref.prefill_logits[t]), kTol) << "position " << t;
  std::system(("rm -rf '" + dir + "'").c_str());
}

std::vector<int> greedy(Model& m, const std::vector<int>& prompt, int steps,
                        std::vector<std::vector<float>>* logits_out = nullptr) {
  std::vector<float> logits;
  m.reset();
  m.prefill(prompt, &logits);
  std::vector<int> out;
  for (int i = 0; i < steps; ++i) {
    out.push_back(argmax(logits));
    m.decode(out.back(), &logits);
    if (logits_out) logits_out->push_back(logits);
  }
  return out;
}

TEST(CpuSparq, FullRankSparqGeneratesExactlyTheDenseTokens) {
  const Reference ref = load_reference("fp32_sharded");
  const Checkpoint ck(variant_dir("fp32_sharded"));
  CpuModel model(ck, 128, false);
  model.attention.mode = sparq::AttentionMode::kDense;
  std::vector<std::vector<float>> dense_logits, sparq_logits;
  const std::vector<int> dense = greedy(model, ref.prompt_ids, 24, &dense_logits);
  EXPECT_FALSE(model.last_step.sparq);
  model.attention.mode = sparq::AttentionMode::kSparq;
  model.attention.r = 64;    // r = d
  model.attention.k = 1000;  // k >= S (clamped to each length)
  model.attention.local_window = 0;
  const std::vector<int> sparse = greedy(model, ref.prompt_ids, 24, &sparq_logits);
  EXPECT_TRUE(model.last_step.sparq);
  EXPECT_EQ(model.last_step.config.r, 64);
  EXPECT_EQ(sparse, dense);
  for (size_t i = 0; i < dense_logits.size(); ++i)
    EXPECT_LT(max_abs_diff(sparq_logits[i].data(), dense_logits[i]), 1e-5) << "step " << i;
}

TEST(CpuSparq, CompressedSparqRunsAndReportsTransfers) {
  const Reference ref = load_reference("bf16_tied");
  const Checkpoint ck(variant_dir("bf16_tied"));
  CpuModel model(ck, 128, false);
  model.attention.mode = sparq::AttentionMode::kSparq;
  model.attention.compression = 4;
  model.attention.local_window = 4;
  std::vector<std::vector<float>> logits;
  greedy(model, ref.prompt_ids, 4, &logits);
  EXPECT_TRUE(model.last_step.sparq);
  EXPECT_EQ(model.last_step.config.r, 16);  // 64 / 4
  EXPECT_GT(model.last_step.transfer_ratio, 0.0);
  EXPECT_LT(model.last_step.transfer_ratio, 0.5);
  for (const auto& l : logits)
    for (float x : l)
      ASSERT_TRUE(std::isfinite(x));
}

TEST(CpuAttentionChoice, AutoIsDenseForShortContexts) {
  AttentionOptions o;  // auto
  EXPECT_FALSE(choose_attention(o, 128, 100).sparq);
  o.mode = sparq::AttentionMode::kSparq;
  const StepAttention s = choose_attention(o, 128, 4096);
  EXPECT_TRUE(s.sparq);
  EXPECT_EQ(s.config.r, 16);
  EXPECT_EQ(s.config.k, 256);
  EXPECT_NEAR(s.transfer_ratio, sparq::transfer_ratio(4096, 128, 16, 256), 1e-12);
}

TEST(ChatFormat, TwoTurnsWithSystemPromptMatchMetasFormat) {
  const nlohmann::json j =
      nlohmann::json::parse(read_text_file(data_dir() + "/chat_reference.json"));
  const Tokenizer tok(data_dir() + "/tokenizer.model");
  std::vector<std::pair<std::string, std::string>> turns;
  for (const auto& t : j["turns"])
    turns.emplace_back(t[0].get<std::string>(), t[1].is_null() ? "" : t[1].get<std::string>());
  const std::vector<int> want = j["ids"].get<std::vector<int>>();
  EXPECT_EQ(dialog_tokens(tok, j["system"].get<std::string>(), turns), want);
  // The open turn alone is what the chat loop prefills for a first turn.
  const std::vector<int> first = chat_turn_tokens(tok, "sys", "hi");
  EXPECT_EQ(first.front(), tok.bos());
  EXPECT_EQ(tok.decode(first), "[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST]");
  EXPECT_EQ(tok.encode(j["plain"]["text"].get<std::string>()),
            j["plain"]["ids"].get<std::vector<int>>());
}

TEST(ChatFormat, TextStreamRebuildsTheDecodedText) {
  const Tokenizer tok(data_dir() + "/tokenizer.model");
  const std::string text = "Hello world, the sky is blue. Ünïcödé ✓";
  TextStream s(tok);
  std::string streamed;
  for (int id : tok.encode(text))
    streamed += s.push(id);
  EXPECT_EQ(streamed, text);
}

// What TextStream printed before it decoded a window: the whole answer decoded at every token,
// printing the new suffix unless the text ends in an incomplete character (U+FFFD).
class WholeDecodeStream {
 public:
  explicit WholeDecodeStream(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int id) {
    ids_.push_back(id);
    const std::string text = tok_.decode(ids_);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return "";
    if (text.size() < printed_.size() || text.compare(0, printed_.size(), printed_) != 0) return "";
    std::string out = text.substr(printed_.size());
    printed_ = text;
    return out;
  }

 private:
  const Tokenizer& tok_;
  std::vector<int> ids_;
  std::string printed_;
};

TEST(ChatFormat, TextStreamPrintsWhatWholeDecodingPrints) {
  const Tokenizer tok(data_dir() + "/tokenizer.model");
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(data_dir() + "/tokenizer.model").ok());
  auto byte_id = [&](unsigned char c) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", c);
    return sp.PieceToId(piece);
  };
  std::vector<int> words;  // pieces that are neither bytes nor control symbols
  for (int i = 0; i < sp.GetPieceSize(); ++i)
    if (!sp.IsByte(i) && !sp.IsControl(i) && !sp.IsUnknown(i)) words.push_back(i);
  ASSERT_GT(words.size(), 20u);
  ASSERT_NE(byte_id(0xE2), sp.unk_id()) << "the tiny tokenizer has byte fallback";
  const std::vector<std::string> chars{"\xC3\xBC", "\xE2\x9C\x93", "\xF0\x9F\x99\x82"};
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int> ids;
    while (ids.size() < 60) {
      const int pick = static_cast<int>(rng() % 10);
      if (pick < 6) {
        ids.push_back(words[rng() % words.size()]);
      } else if (pick < 9) {  // a character of 2-4 bytes as byte tokens
        for (unsigned char c : chars[rng() % chars.size()])
          ids.push_back(byte_id(c));
      } else {  // a lone byte: often invalid UTF-8
        ids.push_back(byte_id(static_cast<unsigned char>(rng() % 256)));
      }
    }
    TextStream windowed(tok);
    WholeDecodeStream whole(tok);
    std::string a, b;
    for (int id : ids) {
      a += windowed.push(id);
      b += whole.push(id);
      ASSERT_LE(windowed.window_tokens(), 2 * TextStream::kMaxHeld + 8) << "trial " << trial;
    }
    EXPECT_EQ(a, b) << "trial " << trial;
  }
  // Bytes that never complete a character (each 0xF0 starts a new 4-byte one) are printed as
  // U+FFFD once kMaxHeld tokens are held, so the window stays bounded.
  {
    TextStream held(tok);
    std::string out;
    for (size_t i = 0; i < 3 * TextStream::kMaxHeld; ++i) {
      out += held.push(byte_id(0xF0));
      ASSERT_LE(held.window_tokens(), 2 * TextStream::kMaxHeld);
    }
    EXPECT_NE(out.find("\xEF\xBF\xBD"), std::string::npos);
  }
  // A long answer keeps the window short (the point of the window).
  TextStream s(tok);
  std::string text;
  std::vector<int> ids;
  for (int i = 0; i < 3000; ++i) {
    ids.push_back(words[rng() % words.size()]);
    text += s.push(ids.back());
    ASSERT_LE(s.window_tokens(), 2u);
  }
  EXPECT_EQ(text, tok.decode(ids));
}

TEST(Sampler, GreedyAndSeededSampling) {
  const std::vector<float> logits{0.1f, 2.0f, 1.9f, -1.0f};
  Sampler greedy(0.0f, 0.9f, 1);
  EXPECT_EQ(greedy.sample(logits), 1);
  Sampler a(1.0f, 0.9f, 7), b(1.0f, 0.9f, 7);
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(a.sample(logits), b.sample(logits));
  Sampler nucleus(1.0f, 0.01f, 3);  // top-p this small keeps only the best token
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(nucleus.sample(logits), 1);
}

// The nucleus by its definition: sort every token (ties by index), keep the shortest prefix
// whose mass reaches top_p of the sum (at least one token).
std::vector<int> full_sort_nucleus(const std::vector<double>& p, double sum, float top_p) {
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  double kept = 0;
  size_t m = 0;
  while (m < order.size() && (m == 0 || kept < top_p * sum))
    kept += p[order[m++]];
  order.resize(m);
  return order;
}

// The nucleus with the cutoff (only tokens that can be in it are sorted) equals the nucleus of
// a full sort, over random vocabularies, temperatures and top-p values, ties included.
TEST(Sampler, NucleusEqualsTheFullSort) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = trial < 20 ? 1 + trial : 32000;
    std::normal_distribution<double> g(0, trial % 3 == 0 ? 0.5 : 3.0);
    std::vector<double> p(n);
    double sum = 0;
    for (double& x : p)
      sum += x = std::exp(std::round(g(rng) * 4) / 4);  // coarse values: many ties
    const float top_p = std::vector<float>{0.5f, 0.9f, 0.95f, 1.0f, 0.0f}[trial % 5];
    ASSERT_EQ(Sampler::nucleus(p, sum, top_p), full_sort_nucleus(p, sum, top_p))
        << "trial " << trial << ", n " << n;
  }
}

// Boundary cases built so that rounding of the sum and of the cutoff matters (a reviewer found
// p = {1, 1/6 x 6} at top-p 0.5 left out a token): the crop falls back to the full sort.
TEST(Sampler, NucleusAtTheRoundingBoundary) {
  for (int k = 2; k <= 40; ++k) {
    for (const float top_p : {0.5f, 0.25f, 0.75f, 1.0f / 3}) {
      std::vector<double> p{1.0};
      for (int i = 0; i < k; ++i)
        p.push_back((1.0 / top_p - 1.0) / k);  // the best token alone is just top_p of the sum
      double sum = 0;
      for (double x : p)
        sum += x;
      EXPECT_EQ(Sampler::nucleus(p, sum, top_p), full_sort_nucleus(p, sum, top_p))
          << "k " << k << ", top_p " << top_p;
    }
  }
}

// Sampled frequencies follow the nucleus, renormalised; tokens outside it never come up.
TEST(Sampler, FrequenciesFollowTheNucleus) {
  const std::vector<float> logits{2.0f, 1.0f, 0.0f, -1.0f, -3.0f};
  std::vector<double> p;
  double sum = 0;
  for (float l : logits)
    sum += p.emplace_back(std::exp(l));
  const std::vector<int> kept = Sampler::nucleus(p, sum, 0.9f);  // 0.64 + 0.24 + 0.09 >= 0.9
  ASSERT_EQ(kept, (std::vector<int>{0, 1, 2}));
  Sampler s(1.0f, 0.9f, 5);
  std::vector<int> count(logits.size());
  const int draws = 100000;
  for (int i = 0; i < draws; ++i)
    ++count[s.sample(logits)];
  const double mass = p[0] + p[1] + p[2];
  for (int i = 0; i < 3; ++i) {
    const double want = p[i] / mass;  // binomial standard deviation < 0.0016: allow 4 of them
    EXPECT_NEAR(count[i] / double(draws), want, 0.0064) << "token " << i;
  }
  EXPECT_EQ(count[3] + count[4], 0);
}

// NaN logits (broken weights) would make the sampler's sort undefined behaviour: an error.
TEST(Sampler, NonFiniteLogitsAreAnError) {
  const std::vector<float> logits{0.1f, std::nanf(""), 1.9f};
  for (float t : {0.0f, 1.0f})
    EXPECT_THROW(Sampler(t, 0.9f, 1).sample(logits), std::runtime_error);
  EXPECT_THROW(Sampler(1.0f, 0.9f, 1).sample({1.0f, INFINITY}), std::runtime_error);
  EXPECT_THROW(Sampler(1.0f, 0.9f, 1).sample({}), std::runtime_error);
}

}  // namespace
}  // namespace llama::test
