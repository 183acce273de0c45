// The Llama forward pass on the CPU, in float32, straight from the memory-mapped weights
// (converted row by row, so bf16 and fp16 checkpoints need no float32 copy). Attention is the
// sparq library's CPU reference: dense for the prompt, dense or SparQ for each decode step.
// Matmuls are plain loops split over threads: this path exists to run and test without a GPU.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <sparq/sparq.hpp>

#include "model.hpp"
#include "weights.hpp"

namespace llama {

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      u = sign | ((127 - 15 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Elements [begin, begin + n) of a tensor as float32.
inline void tensor_to_float(const TensorInfo& t, int64_t begin, int64_t n, float* out) {
  if (t.dtype == DType::kF32) {
    std::memcpy(out, t.data + begin * 4, n * 4);
    return;
  }
  const uint8_t* src = t.data + begin * 2;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    out[i] = t.dtype == DType::kBF16 ? bf16_to_float(h) : f16_to_float(h);
  }
}

inline std::vector<float> tensor_to_float(const TensorInfo& t) {
  std::vector<float> v(t.numel());
  tensor_to_float(t, 0, t.numel(), v.data());
  return v;
}

/// Calls f(begin, end) on contiguous slices of [0, n), one per thread.
template <typename F>
void parallel_for(int64_t n, F f) {
  const int64_t threads = std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()), n);
  if (threads <= 1) return f(int64_t(0), n);
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t)
    pool.emplace_back(f, n * t / threads, n * (t + 1) / threads);
  for (auto& th : pool)
    th.join();
}

/// y[n, out] = x[n, in] . W[out, in]^T (accumulate: y += ...), W read from the mapping.
inline void matmul(const float* x, int n, const TensorInfo& w, float* y, bool accumulate = false) {
  const int64_t out = w.shape[0], in = w.shape[1];
  parallel_for(out, [&](int64_t o0, int64_t o1) {
    std::vector<float> row(in);
    for (int64_t o = o0; o < o1; ++o) {
      tensor_to_float(w, o * in, in, row.data());
      for (int t = 0; t < n; ++t) {
        const float* xt = x + static_cast<int64_t>(t) * in;
        float acc = 0.0f;
        for (int64_t i = 0; i < in; ++i)
          acc += xt[i] * row[i];
        float& dst = y[static_cast<int64_t>(t) * out + o];
        dst = accumulate ? dst + acc : acc;
      }
    }
  });
}

/// Hugging Face LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight, in float32.
inline void rms_norm(const float* x, int n, int dim, const std::vector<float>& w, float eps,
                     float* y) {
  for (int t = 0; t < n; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * dim;
    float ss = 0.0f;
    for (int i = 0; i < dim; ++i)
      ss += xt[i] * xt[i];
    const float inv = 1.0f / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i)
      y[static_cast<int64_t>(t) * dim + i] = w[i] * (xt[i] * inv);
  }
}

/// Rotary embedding, the rotate-half convention of Hugging Face checkpoints: dimension i pairs
/// with i + d/2, angle = position * theta^(-2i/d) (computed in float32 as transformers does).
inline void rope(float* x, int heads, int d, int position, float theta) {
  const int half = d / 2;
  for (int i = 0; i < half; ++i) {
    const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * i) / d);
    const float angle = static_cast<float>(position) * inv_freq;
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < heads; ++h) {
      float* v = x + static_cast<int64_t>(h) * d;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

class CpuModel : public Model {
 public:
  CpuModel(const Checkpoint& ck, int max_seq_len, bool progress)
      : cfg_(ck.config()), w_(collect_tensors(ck, progress)) {
    final_norm_ = tensor_to_float(*w_.final_norm);
    for (const LayerTensors& L : w_.layers) {
      attn_norm_.push_back(tensor_to_float(*L.attn_norm));
      mlp_norm_.push_back(tensor_to_float(*L.mlp_norm));
    }
    problem_.batch = 1;
    problem_.num_q_heads = cfg_.num_heads;
    problem_.num_kv_heads = cfg_.num_kv_heads;
    problem_.head_dim = cfg_.head_dim;
    problem_.capacity = max_seq_len;
    const sparq::KVCacheSizes s = sparq::packed_cache_sizes(problem_);
    caches_.resize(cfg_.num_layers);
    for (Cache& c : caches_) {
      c.k.assign(s.k, 0.0f);
      c.kt.assign(s.kt, 0.0f);
      c.v.assign(s.v, 0.0f);
      c.vsum.assign(s.vsum, 0.0f);
    }
  }

  const Config& config() const override { return cfg_; }
  std::string device_name() const override {
    return "cpu (" + std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
           " threads)";
  }
  int capacity() const override { return problem_.capacity; }
  int length() const override { return length_; }
  void reset() override {
    length_ = 0;
    for (Cache& c : caches_)
      std::fill(c.vsum.begin(), c.vsum.end(), 0.0f);
  }

  void prefill(const std::vector<int>& tokens, std::vector<float>* last,
               std::vector<float>* all = nullptr) override {
    forward(tokens, /*decode=*/false, last, all);
  }
  void decode(int token, std::vector<float>* logits) override {
    forward({token}, /*decode=*/true, logits, nullptr);
  }

  void fill_random(int length, uint64_t seed) override {
    if (length < 1 || length >= capacity()) throw std::invalid_argument("fill length");
    reset();
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> nk(static_cast<size_t>(length) * cfg_.kv_dim()), nv(nk.size());
    for (Cache& c : caches_) {
      for (float& x : nk)
        x = nd(rng);
      for (float& x : nv)
        x = nd(rng);
      check(sparq::reference::append_kv(problem_, view(c), &length_, length, nk.data(), nv.data()),
            "append_kv");
    }
    length_ = length;
  }

 private:
  struct Cache {
    std::vector<float> k, kt, v, vsum;
  };
  sparq::KVCacheView<float> view(Cache& c) {
    return sparq::make_packed_cache_view<float>(problem_, c.k.data(), c.kt.data(), c.v.data(),
                                                c.vsum.data());
  }
  static void check(sparq::Status s, const char* what) {
    if (!sparq::ok(s)) throw std::runtime_error(std::string(what) + ": " + sparq::status_string(s));
  }

  void forward(const std::vector<int>& tokens, bool decode, std::vector<float>* last,
               std::vector<float>* all) {
    const int n = static_cast<int>(tokens.size());
    const int H = cfg_.hidden_size, I = cfg_.intermediate_size, V = cfg_.vocab_size;
    const int d = cfg_.head_dim, hq = cfg_.num_heads, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
    if (n < 1) throw std::invalid_argument("empty input");
    if (length_ + n > capacity())
      throw std::runtime_error("KV cache full: " + std::to_string(length_ + n) +
                               " positions > --max-seq-len " + std::to_string(capacity()));
    std::vector<float> x(static_cast<size_t>(n) * H), xn(x.size());
    for (int t = 0; t < n; ++t) {
      if (tokens[t] < 0 || tokens[t] >= V) throw std::out_of_range("token id out of range");
      tensor_to_float(*w_.embed, static_cast<int64_t>(tokens[t]) * H, H, &x[t * H]);
    }
    std::vector<float> q(static_cast<size_t>(n) * qd), k(static_cast<size_t>(n) * kvd), v(k.size()),
        att(q.size()), g(static_cast<size_t>(n) * I), u(g.size());
    std::vector<double> out(qd);
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    if (decode) last_step = choose_attention(attention, d, length_ + 1);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      const LayerTensors& L = w_.layers[l];
      rms_norm(x.data(), n, H, attn_norm_[l], eps, xn.data());
      matmul(xn.data(), n, *L.wq, q.data());
      matmul(xn.data(), n, *L.wk, k.data());
      matmul(xn.data(), n, *L.wv, v.data());
      for (int t = 0; t < n; ++t) {
        rope(&q[t * qd], hq, d, length_ + t, static_cast<float>(cfg_.rope_theta));
        rope(&k[t * kvd], cfg_.num_kv_heads, d, length_ + t, static_cast<float>(cfg_.rope_theta));
      }
      const sparq::KVCacheView<float> cache = view(caches_[l]);
      check(sparq::reference::append_kv(problem_, cache, &length_, n, k.data(), v.data()),
            "append_kv");
      for (int t = 0; t < n; ++t) {  // token t sees positions [0, length_ + t]
        const int len = length_ + t + 1;
        if (decode && last_step.sparq)
          check(sparq::reference::sparq_decode(problem_, last_step.config, &q[t * qd], cache, &len,
                                               out.data()),
                "sparq_decode");
        else
          check(sparq::reference::dense_decode(problem_, &q[t * qd], cache, &len, out.data()),
                "dense_decode");
        for (int i = 0; i < qd; ++i)
          att[t * qd + i] = static_cast<float>(out[i]);
      }
      matmul(att.data(), n, *L.wo, x.data(), /*accumulate=*/true);
      rms_norm(x.data(), n, H, mlp_norm_[l], eps, xn.data());
      matmul(xn.data(), n, *L.w_gate, g.data());
      matmul(xn.data(), n, *L.w_up, u.data());
      for (size_t i = 0; i < g.size(); ++i)
        g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      matmul(g.data(), n, *L.w_down, x.data(), /*accumulate=*/true);
    }
    length_ += n;
    const int first = all ? 0 : n - 1;  // logits only where asked
    const int rows = n - first;
    rms_norm(&x[static_cast<size_t>(first) * H], rows, H, final_norm_, eps, xn.data());
    std::vector<float> logits(static_cast<size_t>(rows) * V);
    matmul(xn.data(), rows, *w_.lm_head, logits.data());
    if (last) last->assign(logits.end() - V, logits.end());
    if (all) *all = std::move(logits);
  }

  Config cfg_;
  ModelTensors w_;
  std::vector<float> final_norm_;
  std::vector<std::vector<float>> attn_norm_, mlp_norm_;
  sparq::DecodeProblem problem_;
  std::vector<Cache> caches_;
  int length_ = 0;
};

}  // namespace llama
