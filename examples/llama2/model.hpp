// What the chat loop, the benchmark and the tests need from a model, on either device, and the
// choice of attention (dense, SparQ or auto) for each decode step.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <sparq/sparq.hpp>

#include "config.hpp"

namespace llama {

struct AttentionOptions {
  sparq::AttentionMode mode = sparq::AttentionMode::kAuto;
  double compression = 8.0;  ///< r = round(d/c), k = round(S/(2c)) (the gpt-fast rule)
  int r = 0;                 ///< > 0: overrides the r of the compression rule
  int k = 0;                 ///< > 0: overrides the k of the compression rule
  int local_window = 16;     ///< always-kept last positions (clamped to k)
  bool reallocation = true;  ///< mean-value interpolation (step 7)
};

/// How one decode step over `length` positions attends.
struct StepAttention {
  bool sparq = false;
  sparq::SparqConfig config;
  double transfer_ratio = 1.0;  ///< SparQ / dense KV transfers (1 for dense)
};

inline StepAttention choose_attention(const AttentionOptions& o, int head_dim, int length) {
  StepAttention s;
  sparq::SparqConfig& c = s.config;
  c.reallocation = o.reallocation;
  if (!sparq::ok(sparq::config_from_compression(head_dim, length, o.compression, &c)))
    throw std::invalid_argument("invalid --compression");
  if (o.r > 0) c.r = o.r > head_dim ? head_dim : o.r;
  if (o.k > 0) c.k = o.k;
  c.local_window = o.local_window < c.k ? o.local_window : c.k;
  if (!sparq::ok(sparq::validate_config(c, head_dim)))
    throw std::invalid_argument("invalid SparQ settings (--r, --k, --local-window)");
  sparq::DecodeProblem p;
  p.head_dim = head_dim;
  p.capacity = p.max_length = length;
  s.sparq = sparq::resolve_attention_mode(o.mode, p, c) == sparq::AttentionMode::kSparq;
  const int k_eff = c.k < length ? c.k : length;
  if (s.sparq) s.transfer_ratio = sparq::transfer_ratio(length, head_dim, c.r, k_eff);
  return s;
}

/// Where a decode step's device time goes (--bench-decode prints it): milliseconds per step in
/// each part, summed over the layers. Measured with events between the parts of a step launched
/// without a graph, so each part also carries its launch's gap.
struct StepBreakdown {
  double qkv = 0;        ///< RMSNorm, q/k/v projections, RoPE (and the fused append)
  double append = 0;     ///< the KV append where it has a launch of its own
  double attention = 0;  ///< the decode attention (dense or SparQ)
  double o = 0;          ///< the output projection
  double mlp = 0;        ///< RMSNorm, gate/up, SiLU·up, down
  double other = 0;      ///< embedding, final norm and lm_head, length counters
  double total() const { return qkv + append + attention + o + mlp + other; }
  StepBreakdown& operator+=(const StepBreakdown& b) {
    qkv += b.qkv, append += b.append, attention += b.attention;
    o += b.o, mlp += b.mlp, other += b.other;
    return *this;
  }
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const Config& config() const = 0;
  virtual std::string device_name() const = 0;
  virtual int capacity() const = 0;  ///< positions the KV cache holds (--max-seq-len)
  virtual int length() const = 0;    ///< positions in the KV cache now
  virtual void reset() = 0;          ///< empties the KV cache
  /// Appends `tokens` at positions length().. with causal attention over the cache and the new
  /// tokens. Writes the last position's logits to *last and, if `all` is given, every
  /// position's ([n, vocab]) to *all.
  virtual void prefill(const std::vector<int>& tokens, std::vector<float>* last,
                       std::vector<float>* all = nullptr) = 0;
  /// One token through the model with the decode attention chosen by `attention`.
  virtual void decode(int token, std::vector<float>* logits) = 0;
  /// Fills the KV cache of every layer to `length` positions with random keys and values
  /// (for --bench-decode; the decode time depends on the length, not on the values).
  virtual void fill_random(int length, uint64_t seed) = 0;
  /// decode(token, nullptr), launched without a graph and timed part by part into *out (false,
  /// and nothing decoded, where the model cannot: the CPU).
  virtual bool decode_breakdown(int /*token*/, StepBreakdown* /*out*/) { return false; }
  /// Waits for queued device work (timing); a no-op on the CPU.
  virtual void synchronize() {}
  /// Bytes of weights one decode step reads (for --bench-decode's bandwidth bound); 0 where not
  /// tracked (the CPU).
  virtual int64_t decode_weight_bytes() const { return 0; }

  AttentionOptions attention;
  StepAttention last_step;  ///< what the last decode step did
};

}  // namespace llama
