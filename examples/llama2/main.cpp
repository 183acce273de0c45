// llama2_chat: a minimal Llama 2 decoder and chat program on top of sparq.
//
//   llama2_chat --model DIR                   interactive chat (Llama 2 chat format)
//   llama2_chat --model DIR --prompt "..."    one answer, then exit
//   llama2_chat --random-weights llama2-7b --bench-decode 16384    decode timing, dense vs SparQ
//
// Everything model-specific is in model_cpu.hpp (CPU) and model_cuda.cu (GPU); this file has
// the flags, the chat loop and the decode benchmark. Run with --help for the options.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "config.hpp"
#include "model.hpp"
#include "model_cpu.hpp"
#include "model_cuda.hpp"
#include "sampler.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model_dir, device = "auto", prompt, prompt_file, system, random_weights;
  bool has_prompt = false, raw = false, graphs = true, bench_prefill = false;
  bool fused_matvec = true, pdl = false, prefill_gemm = true, l2_prefetch = false;
  int max_new_tokens = 256, max_seq_len = 0, bench_decode = 0, bench_steps = 64;
  float temperature = 0.6f, top_p = 0.9f;
  uint64_t seed = 1234;
  llama::AttentionOptions attention;
};

void print_help() {
  std::printf(
      "Usage: llama2_chat --model DIR [options]\n"
      "       llama2_chat --random-weights NAME --bench-decode S [options]\n"
      "\n"
      "A minimal Llama 2 decoder using sparq: chat with a Hugging Face Llama checkpoint\n"
      "(config.json, model.safetensors or shards + model.safetensors.index.json,\n"
      "tokenizer.model; bf16, fp16 or fp32) on a CUDA GPU or on the CPU.\n"
      "\n"
      "Model and device:\n"
      "  --model DIR            checkpoint directory (e.g. Llama-2-7b-chat-hf)\n"
      "  --device auto|cpu|cuda where to run [auto: cuda if a GPU is usable, else cpu]\n"
      "  --max-seq-len N        KV-cache positions [min(max_position_embeddings, 4096)]\n"
      "  --no-graph             GPU: run decode steps without CUDA graph capture\n"
      "  --matvec cublas|fused  GPU: decode-step projections as cuBLAS GEMMs, or as fused\n"
      "                         bandwidth-oriented matvec kernels with RMSNorm and SiLU folded\n"
      "                         in (prefill always uses cuBLAS) [fused]\n"
      "  --pdl                  GPU (sm_90): decode-step kernels as programmatic dependent\n"
      "                         launches, each starting while the one before finishes\n"
      "                         (experimental: not yet timed) [off]\n"
      "  --l2-prefetch          GPU (fused matvecs): the q/k/v matvec prefetches the o\n"
      "                         projection's weights into a persisting part of L2 while\n"
      "                         attention runs (slower on an H200) [off]\n"
      "  --prefill-attention gemm|simple\n"
      "                         GPU: prompt attention as cuBLAS GEMMs around a masked softmax,\n"
      "                         or a simple kernel that walks the rows one by one [gemm]\n"
      "\n"
      "Chat:\n"
      "  --prompt TEXT          answer TEXT once and exit (else: interactive, one line per turn,\n"
      "                         a line ending in \\ continues on the next, Ctrl-D to quit)\n"
      "  --prompt-file FILE     answer FILE's text once and exit; with --prompt, the file comes\n"
      "                         first, then a blank line and TEXT (a document, then a question);\n"
      "                         /dev/stdin reads a pipe\n"
      "  --system TEXT          system prompt (<<SYS>> block of the first turn)\n"
      "  --raw                  plain text completion, no chat format\n"
      "  --max-new-tokens N     per answer [256]\n"
      "  --temperature T        0 = greedy [0.6]\n"
      "  --top-p P              nucleus sampling mass [0.9]\n"
      "  --seed N               sampling seed [1234]\n"
      "\n"
      "Attention for each decode step (prefill is always dense):\n"
      "  --attention M          dense | sparq | auto [auto: SparQ where the library's rule\n"
      "                         expects it to be faster: long contexts]\n"
      "  --compression C        SparQ transfers ~1/C of dense: r = d/C, k = S/(2C) [8]\n"
      "  --r N, --k N           override r (query components) / k (positions fetched)\n"
      "  --local-window N       last N positions always kept [16]\n"
      "  --no-reallocation      no mean-value interpolation (step 7)\n"
      "\n"
      "Benchmark:\n"
      "  --bench-decode S       fill the KV cache to S positions (random keys and values), then\n"
      "                         time decode steps with dense and with SparQ attention\n"
      "  --bench-steps N        decode steps timed per mode [64]\n"
      "  --bench-fill M         random: random keys and values through kv_append [default];\n"
      "                         prefill: prefill a random prompt of S tokens first (and\n"
      "                         print how long that took)\n"
      "  --random-weights NAME  no checkpoint: random weights of the true shapes, on the GPU;\n"
      "                         NAME: llama2-7b, llama2-13b, llama2-70b, tinyllama-1.1b, "
      "llama3-8b\n"
      "\n"
      "After each answer it prints (on stderr) prefill and decode tokens/s and the attention\n"
      "transfer ratio (KV bytes read by SparQ / by dense attention).\n");
}

bool preset_config(const std::string& name, llama::Config* c) {
  struct P {
    const char* name;
    int h, i, l, heads, kv, d, v, maxpos;
    double theta;
  };
  static const P presets[] = {
      {"llama2-7b", 4096, 11008, 32, 32, 32, 128, 32000, 4096, 1e4},
      {"llama2-13b", 5120, 13824, 40, 40, 40, 128, 32000, 4096, 1e4},
      {"llama2-70b", 8192, 28672, 80, 64, 8, 128, 32000, 4096, 1e4},
      {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 1e4},
      {"llama3-8b", 4096, 14336, 32, 32, 8, 128, 128256, 8192, 5e5},
  };
  for (const P& p : presets) {
    if (name != p.name) continue;
    c->hidden_size = p.h;
    c->intermediate_size = p.i;
    c->num_layers = p.l;
    c->num_heads = p.heads;
    c->num_kv_heads = p.kv;
    c->head_dim = p.d;
    c->vocab_size = p.v;
    c->max_position_embeddings = p.maxpos;
    c->rope_theta = p.theta;
    c->rms_norm_eps = 1e-5;
    return true;
  }
  return false;
}

[[noreturn]] void usage_error(const std::string& m) {
  std::fprintf(stderr, "error: %s (see --help)\n", m.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](double lo, double hi) {
      const std::string v = value();
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(x >= lo && x <= hi))
        usage_error("bad value for " + a + ": " + v + " (a number from " + std::to_string(lo) +
                    " to " + std::to_string(hi) + ")");
      return x;
    };
    // A whole number in [lo, hi]: "1e20", "2.5" or "inf" must not reach an int conversion.
    auto integer = [&](long long lo, long long hi) {
      const std::string v = value();
      char* end = nullptr;
      errno = 0;
      const long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno == ERANGE || x < lo || x > hi)
        usage_error("bad value for " + a + ": " + v + " (a whole number from " +
                    std::to_string(lo) + " to " + std::to_string(hi) + ")");
      return x;
    };
    constexpr long long kMaxInt = 1 << 30;  // lengths and counts far beyond any real use
    if (a == "-h" || a == "--help") {
      print_help();
      std::exit(0);
    } else if (a == "--model") {
      o.model_dir = value();
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
        usage_error("--device must be auto, cpu or cuda");
    } else if (a == "--prompt") {
      o.prompt = value();
      o.has_prompt = true;
    } else if (a == "--prompt-file") {
      o.prompt_file = value();
      o.has_prompt = true;
    } else if (a == "--system") {
      o.system = value();
    } else if (a == "--raw") {
      o.raw = true;
    } else if (a == "--max-new-tokens") {
      o.max_new_tokens = static_cast<int>(integer(1, kMaxInt));
    } else if (a == "--max-seq-len") {
      o.max_seq_len = static_cast<int>(integer(2, kMaxInt));
    } else if (a == "--temperature") {
      o.temperature = static_cast<float>(number(0, 100));
    } else if (a == "--top-p") {
      o.top_p = static_cast<float>(number(0, 1));
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(integer(0, LLONG_MAX));
    } else if (a == "--attention") {
      const std::string m = value();
      if (m == "dense")
        o.attention.mode = sparq::AttentionMode::kDense;
      else if (m == "sparq")
        o.attention.mode = sparq::AttentionMode::kSparq;
      else if (m == "auto")
        o.attention.mode = sparq::AttentionMode::kAuto;
      else
        usage_error("--attention must be dense, sparq or auto");
    } else if (a == "--compression") {
      o.attention.compression = number(1, 1e6);
    } else if (a == "--r") {
      o.attention.r = static_cast<int>(integer(1, kMaxInt));
    } else if (a == "--k") {
      o.attention.k = static_cast<int>(integer(1, kMaxInt));
    } else if (a == "--local-window") {
      o.attention.local_window = static_cast<int>(integer(0, kMaxInt));
    } else if (a == "--no-reallocation") {
      o.attention.reallocation = false;
    } else if (a == "--no-graph") {
      o.graphs = false;
    } else if (a == "--matvec") {
      const std::string m = value();
      if (m != "cublas" && m != "fused") usage_error("--matvec must be cublas or fused");
      o.fused_matvec = m == "fused";
    } else if (a == "--pdl") {
      o.pdl = true;
    } else if (a == "--l2-prefetch") {
      o.l2_prefetch = true;
    } else if (a == "--prefill-attention") {
      const std::string m = value();
      if (m != "gemm" && m != "simple") usage_error("--prefill-attention must be gemm or simple");
      o.prefill_gemm = m == "gemm";
    } else if (a == "--bench-decode") {
      o.bench_decode = static_cast<int>(integer(1, kMaxInt));
    } else if (a == "--bench-steps") {
      o.bench_steps = static_cast<int>(integer(1, kMaxInt));
    } else if (a == "--bench-fill") {
      const std::string m = value();
      if (m != "random" && m != "prefill") usage_error("--bench-fill must be random or prefill");
      o.bench_prefill = m == "prefill";
    } else if (a == "--random-weights") {
      o.random_weights = value();
    } else {
      usage_error("unknown option " + a);
    }
  }
  if (o.model_dir.empty() && o.random_weights.empty())
    usage_error("--model DIR is required (or --random-weights NAME with --bench-decode)");
  if (!o.random_weights.empty() && o.bench_decode == 0)
    usage_error("--random-weights is only for --bench-decode");
  return o;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string attention_summary(const llama::Model& m) {
  const llama::StepAttention& s = m.last_step;
  if (!s.sparq) return "dense";
  char buf[128];
  std::snprintf(buf, sizeof buf, "sparq r=%d k=%d l=%d", s.config.r, s.config.k,
                s.config.local_window);
  return buf;
}

// The memory-bandwidth bound of a dense decode step at length S: the weights a step reads plus
// dense attention's K and V rows (bf16, every layer), moved at the device's copy bandwidth.
struct BandwidthBound {
  double copy_gbs = 0, weight_gb = 0, kv_gb = 0;
  double ms() const { return (weight_gb + kv_gb) / copy_gbs * 1e3; }
};

BandwidthBound bandwidth_bound(const llama::Model& m, int S, double copy_gbs) {
  const llama::Config& c = m.config();
  BandwidthBound b;
  b.copy_gbs = copy_gbs;
  b.weight_gb = m.decode_weight_bytes() / 1e9;
  b.kv_gb = double(c.num_layers) * 2 * S * c.kv_dim() * 2 / 1e9;
  return b;
}

// copy_gbs > 0 (on a GPU): also prints the bandwidth bound and dense's share of it.
int bench_decode(llama::Model& model, const Options& o, double copy_gbs) {
  const int S = o.bench_decode, n = o.bench_steps;
  const llama::Config& c = model.config();
  std::printf("decode benchmark on %s: %d layers, %d/%d heads, head_dim %d; S = %d, %d steps\n",
              model.device_name().c_str(), c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, S,
              n);
  const BandwidthBound bound = bandwidth_bound(model, S, copy_gbs);
  if (copy_gbs > 0) {
    std::printf("  matvec: %s (decode-step projections)%s\n",
                o.fused_matvec ? "fused kernels" : "cuBLAS GEMM",
                o.pdl ? "; dependent launches (--pdl)" : "");
    if (o.l2_prefetch)
      std::printf("  L2 prefetch (--l2-prefetch): %.1f MB of each layer's o projection\n",
                  o.fused_matvec ? llama::cuda_l2_prefetch_bytes(c) / 1e6 : 0.0);
    std::printf(
        "  bandwidth bound: %.3f GB weights + %.3f GB dense K/V per token at %.0f GB/s "
        "(device copy) = %.3f ms/token\n",
        bound.weight_gb, bound.kv_gb, bound.copy_gbs, bound.ms());
  }
  std::mt19937 rng(static_cast<uint32_t>(o.seed));
  std::uniform_int_distribution<int> tok(std::min(3, c.vocab_size - 1), c.vocab_size - 1);
  std::vector<float> logits;
  double ms[2] = {0, 0};
  llama::StepBreakdown parts[2];  // summed over `profiled` steps
  int profiled[2] = {0, 0};
  std::string how[2];
  double ratio = 1;
  const sparq::AttentionMode modes[2] = {sparq::AttentionMode::kDense,
                                         sparq::AttentionMode::kSparq};
  for (int m = 0; m < 2; ++m) {
    model.attention = o.attention;
    model.attention.mode = modes[m];
    for (int pass = 0; pass < 2; ++pass) {  // pass 0 warms up (and captures the graphs)
      if (o.bench_prefill) {
        std::vector<int> prompt(S);
        std::mt19937 prompt_rng(static_cast<uint32_t>(o.seed));
        for (int& t : prompt)
          t = tok(prompt_rng);
        model.reset();
        const auto t0 = Clock::now();
        model.prefill(prompt, &logits);
        model.synchronize();
        if (m == 0 && pass == 1)  // warm: the first prefill also sets up cuBLAS
          std::printf("  prefill of %d random tokens: %.3f s (%.0f tokens/s%s)\n", S,
                      seconds_since(t0), S / seconds_since(t0),
                      copy_gbs <= 0    ? ""  // the CPU model
                      : o.prefill_gemm ? "; gemm attention"
                                       : "; simple attention");
      } else {
        model.fill_random(S, o.seed);
      }
      model.synchronize();
      // The warm-up's last steps (at most 4, half of them) are timed part by part instead.
      const int part_steps = pass == 0 ? std::min(4, n / 2) : 0;
      const auto t0 = Clock::now();
      for (int i = 0; i < n - part_steps; ++i)
        model.decode(tok(rng), &logits);  // logits fetched, as to sample
      model.synchronize();
      ms[m] = seconds_since(t0) * 1e3 / (n - part_steps);
      for (int i = 0; i < part_steps; ++i) {
        llama::StepBreakdown b;
        if (!model.decode_breakdown(tok(rng), &b)) break;
        parts[m] += b;
        ++profiled[m];
      }
    }
    how[m] = attention_summary(model);
    if (m == 1) ratio = model.last_step.transfer_ratio;
  }
  if (copy_gbs > 0)
    std::printf("  dense: %8.3f ms/token (%.0f%% of the bandwidth bound)\n", ms[0],
                100 * bound.ms() / ms[0]);
  else
    std::printf("  dense: %8.3f ms/token\n", ms[0]);
  std::printf("  SparQ: %8.3f ms/token (%s, attention transfers %.3f of dense)\n", ms[1],
              how[1].c_str(), ratio);
  std::printf("  speedup: %.2fx\n", ms[0] / ms[1]);
  if (profiled[0] > 0 && profiled[1] > 0) {
    std::printf(
        "  where a step's time goes (ms; launched without a graph, events between parts):\n");
    for (int m = 0; m < 2; ++m) {
      const llama::StepBreakdown& a = parts[m];
      const double k = 1.0 / profiled[m];
      std::printf(
          "    %s: q/k/v %.3f | append %.3f | attention %.3f | o %.3f | MLP %.3f | other %.3f | "
          "total %.3f\n",
          m == 0 ? "dense" : "SparQ", a.qkv * k, a.append * k, a.attention * k, a.o * k, a.mlp * k,
          a.other * k, a.total() * k);
    }
  }
  return 0;
}

// --prompt-file's text: a file, or a pipe such as /dev/stdin (read_text_file's 64 MiB bound
// is far beyond any context: 4k tokens are about 16 KB).
std::string read_prompt_file(const std::string& path) {
  try {
    return llama::read_text_file(path);
  } catch (const llama::LoadError& e) {  // not a model file: no "error loading the model"
    throw std::runtime_error(std::string("--prompt-file ") + e.what());
  }
}

int chat(llama::Model& model, const llama::Tokenizer& tok, const Options& o) {
  llama::Sampler sampler(o.temperature, o.top_p, o.seed);
  const bool interactive = !o.has_prompt;
  bool first = true, ended_with_eos = true;
  std::vector<float> logits;
  for (;;) {
    std::string user = o.prompt;
    if (interactive) {
      std::printf("> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, user)) break;
      // A line ending in a backslash continues on the next (pasting a document, as llama.cpp
      // does): the backslash becomes a newline. Windows line ends (CR) are dropped first; a
      // backslash on the last line of the input is dropped too.
      auto drop_cr = [](std::string& s) {
        if (!s.empty() && s.back() == '\r') s.pop_back();
      };
      drop_cr(user);
      std::string more;
      while (!user.empty() && user.back() == '\\') {
        if (!std::getline(std::cin, more)) {
          user.pop_back();
          break;
        }
        drop_cr(more);
        user.back() = '\n';
        user += more;
      }
      if (llama::strip(user).empty()) continue;
    }
    // This turn's tokens; `opening`: the first turn of a conversation (BOS, system prompt),
    // else one after an answer, closed with EOS if it did not end with one.
    auto turn_tokens = [&](bool opening) {
      std::vector<int> ids;
      if (!opening && !ended_with_eos) ids.push_back(tok.eos());
      if (o.raw) {
        if (opening) ids.push_back(tok.bos());
        for (int id : tok.encode(user))
          ids.push_back(id);
      } else {
        for (int id : llama::chat_turn_tokens(tok, opening ? o.system : "", user))
          ids.push_back(id);
      }
      return ids;
    };
    auto room = [&](const std::vector<int>& ids, int used) {
      return used + static_cast<int>(ids.size()) + 1 <= model.capacity();
    };
    std::vector<int> ids = turn_tokens(first);
    if (!room(ids, model.length()) && interactive) {
      // Interactively, a full context starts the conversation over (system prompt included)
      // rather than ending the program; a turn too long on its own is skipped.
      std::vector<int> fresh = turn_tokens(true);
      if (!room(fresh, 0)) {
        std::fprintf(stderr,
                     "error: this turn alone needs %d tokens, more than --max-seq-len %d: "
                     "skipped\n",
                     static_cast<int>(fresh.size()) + 1, model.capacity());
        continue;
      }
      std::fprintf(stderr, "[context full (%d/%d): the conversation starts over]\n", model.length(),
                   model.capacity());
      model.reset();
      first = true;
      ids = std::move(fresh);
    }
    if (!room(ids, model.length())) {
      std::fprintf(stderr,
                   "error: the conversation (%d tokens with this turn) does not fit --max-seq-len "
                   "%d\n",
                   model.length() + static_cast<int>(ids.size()) + 1, model.capacity());
      return 1;
    }
    first = false;
    auto t0 = Clock::now();
    model.prefill(ids, &logits);
    const double t_prefill = seconds_since(t0);
    llama::TextStream stream(tok);
    int steps = 0;
    double ratio_sum = 0;
    ended_with_eos = false;
    t0 = Clock::now();
    for (int i = 0; i < o.max_new_tokens && model.length() < model.capacity(); ++i) {
      // Rows of a padded vocabulary (vocab_size above the tokenizer's pieces) cannot be
      // decoded, and one in the answer would stop the streamed text: never sample them.
      if (logits.size() > static_cast<size_t>(tok.vocab_size())) logits.resize(tok.vocab_size());
      const int next = sampler.sample(logits);
      if (next == tok.eos()) {
        ended_with_eos = true;
        break;
      }
      std::fputs(stream.push(next).c_str(), stdout);
      std::fflush(stdout);
      model.decode(next, &logits);  // the answer's tokens enter the cache for later turns
      ++steps;
      ratio_sum += model.last_step.transfer_ratio;
    }
    const double t_decode = seconds_since(t0);
    std::printf("\n");
    std::fflush(stdout);  // the answer before the statistics (stderr)
    std::fprintf(stderr,
                 "[prefill %zu tokens %.1f tok/s | decode %d tokens %.1f tok/s | attention %s, "
                 "transfers %.3f of dense | context %d/%d]\n",
                 ids.size(), ids.size() / t_prefill, steps, steps ? steps / t_decode : 0.0,
                 steps ? attention_summary(model).c_str() : "-", steps ? ratio_sum / steps : 1.0,
                 model.length(), model.capacity());
    if (!interactive) break;
  }
  return 0;
}

// Every id the tokenizer can produce must index the model's embedding, and the chat format
// needs BOS and EOS.
std::unique_ptr<llama::Tokenizer> load_tokenizer(const std::string& path, const llama::Config& c) {
  auto tok = std::make_unique<llama::Tokenizer>(path);
  if (tok->vocab_size() > c.vocab_size)
    throw llama::LoadError(path + ": " + std::to_string(tok->vocab_size()) +
                           " pieces, but config.json's vocab_size is " +
                           std::to_string(c.vocab_size) + " (a tokenizer of another model?)");
  if (tok->bos() < 0 || tok->eos() < 0)
    throw llama::LoadError(path + ": the tokenizer defines no BOS or EOS piece");
  return tok;
}

int run(Options o) {  // a copy: --prompt-file is read into o.prompt
  bool use_cuda = o.device == "cuda";
  if (o.device != "cpu") {
    const std::string why = llama::cuda_unavailable_reason();
    if (!why.empty()) {
      if (o.device == "cuda") throw std::runtime_error("--device cuda: " + why);
      std::fprintf(stderr, "note: %s; running on the CPU\n", why.c_str());
    } else {
      use_cuda = true;
    }
  }
  llama::CudaOptions copt;
  copt.graphs = o.graphs;
  copt.fused_matvec = o.fused_matvec;
  copt.dependent_launch = o.pdl;
  copt.l2_prefetch = o.l2_prefetch;
  copt.prefill_gemm = o.prefill_gemm;
  std::unique_ptr<llama::Model> model;
  std::unique_ptr<llama::Checkpoint> ck;
  llama::Config cfg;
  if (!o.random_weights.empty()) {
    if (!preset_config(o.random_weights, &cfg)) usage_error("unknown --random-weights name");
    if (!use_cuda) throw std::runtime_error("--random-weights needs a GPU");
  } else {
    ck = std::make_unique<llama::Checkpoint>(o.model_dir);
    cfg = ck->config();
  }
  // The prompt file and the tokenizer before the weights: a missing file or a mismatched
  // tokenizer.model is reported in a second, not after minutes of loading.
  if (!o.prompt_file.empty()) {
    std::string text = read_prompt_file(o.prompt_file);
    if (llama::strip(text).empty())
      throw std::runtime_error("--prompt-file " + o.prompt_file + ": the file is empty");
    // Without the file's own trailing newline, the question follows exactly one blank line.
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
      text.pop_back();
    if (!o.prompt.empty()) text += "\n\n" + o.prompt;
    o.prompt = text;
  }
  std::unique_ptr<llama::Tokenizer> tok;
  if (o.bench_decode == 0) tok = load_tokenizer(o.model_dir + "/tokenizer.model", cfg);
  int seq = o.max_seq_len;
  if (o.bench_decode > 0) {
    const int need = o.bench_decode + o.bench_steps + 1;
    if (seq == 0) seq = need;
    if (seq < need) usage_error("--max-seq-len must be at least S + --bench-steps + 1");
  } else if (seq == 0) {
    seq = std::min(cfg.max_position_embeddings, 4096);
  } else if (seq > cfg.max_position_embeddings) {
    // Allowed (the cache and RoPE work at any length), but the model never saw those positions.
    std::fprintf(stderr,
                 "warning: --max-seq-len %d is past the model's max_position_embeddings %d: "
                 "text beyond that length is likely to degrade\n",
                 seq, cfg.max_position_embeddings);
  }
  // --bench-decode's bound needs the copy bandwidth: measured before the model takes the memory.
  const double copy_gbs = use_cuda && o.bench_decode > 0 ? llama::device_copy_bandwidth_gbs() : 0;
  if (use_cuda)
    model = ck ? llama::make_cuda_model(*ck, seq, copt)
               : llama::make_cuda_model_random(cfg, seq, o.seed, copt);
  else {
    // The KV cache (K, K transposed and V in float, every layer) grows with --max-seq-len.
    // Past physical memory the allocation may still succeed (overcommit) and the process
    // then dies filling it, so check first.
    const double cache = double(cfg.num_layers) * 3 * cfg.kv_dim() * double(seq) * 4;
    const double ram = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
    char msg[200];
    std::snprintf(msg, sizeof msg,
                  "out of host memory: the KV cache alone needs %.1f GB at --max-seq-len %d "
                  "(this machine has %.1f GB); use a smaller --max-seq-len",
                  cache / 1e9, seq, ram / 1e9);
    if (ram > 0 && cache > ram) throw std::runtime_error(msg);
    try {
      model = std::make_unique<llama::CpuModel>(*ck, seq, /*progress=*/true);
    } catch (const std::bad_alloc&) {
      throw std::runtime_error(msg);
    }
  }
  model->attention = o.attention;
  if (o.bench_decode > 0) return bench_decode(*model, o, copy_gbs);
  std::fprintf(stderr, "%s on %s, %d layers, context %d\n", o.model_dir.c_str(),
               model->device_name().c_str(), cfg.num_layers, seq);
  return chat(*model, *tok, o);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const llama::LoadError& e) {
    std::fprintf(stderr, "error loading the model: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
