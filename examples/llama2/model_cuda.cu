// The Llama forward pass on a CUDA GPU. Weights and KV cache in bf16; the residual stream, the
// projections' outputs and every accumulation in float32. One decode step:
//
//   embed -> for each layer: RMSNorm -> q/k/v GEMMs -> RoPE (-> bf16) -> sparq::kv_append
//            -> sparq::decode_attention (dense or SparQ) -> o GEMM (+= residual)
//            -> RMSNorm -> gate/up GEMMs -> SiLU(gate) * up -> down GEMM (+= residual)
//   -> final RMSNorm -> lm_head GEMM -> float32 logits
//
// With CudaOptions::fused_matvec (--matvec fused) a decode step's projections are instead the
// bandwidth-oriented matvec kernels of matvec.cuh, with RMSNorm and SiLU·up fused into them:
//
//   embed -> for each layer: RMSNorm+q/k/v -> RoPE -> kv_append -> decode_attention
//            -> o (+= residual) -> RMSNorm+gate/up+SiLU·up -> down (+= residual)
//   -> final RMSNorm+lm_head
//
// Prefill runs the same layers over all prompt tokens at once (always with cuBLAS), with causal
// attention over the cache after the prompt's K/V are appended (prefill_attention.cuh: cuBLAS
// GEMMs around a masked softmax, or with --prefill-attention simple a plain kernel). Nothing in
// the decode step reads a length on the host, so it is captured once per (length bucket,
// attention choice) as a CUDA graph and replayed.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <sparq/cuda.cuh>

#include "matvec.cuh"
#include "model_cuda.hpp"
#include "prefill_attention.cuh"

namespace llama {
namespace {

using bf16 = __nv_bfloat16;

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}
void sparq_check(sparq::Status s, const char* what) {
  if (!sparq::ok(s)) throw std::runtime_error(std::string(what) + ": " + sparq::status_string(s));
}
#define CK(x) cuda_check((x), #x)

template <typename T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  DeviceArray() = default;
  explicit DeviceArray(size_t count) { resize(count); }
  ~DeviceArray() {
    if (p) cudaFree(p);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr, o.n = 0; }
  void resize(size_t count) {
    if (p) cudaFree(p);
    p = nullptr;
    n = count;
    if (count) CK(cudaMalloc(&p, count * sizeof(T)));
  }
};

// ---------------------------------------------------------------------------------------------
// Kernels (simple and correct; the projections, which dominate, are cuBLAS or matvec.cuh's)

// Grid (tokens, ceil(hidden / block)): one element per thread (no loop of dependent loads).
__global__ void embed_kernel(const int* tokens, const bf16* table, int hidden, float* x) {
  const int t = blockIdx.x, i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= hidden) return;
  const bf16* row = table + static_cast<int64_t>(tokens[t]) * hidden;
  x[static_cast<int64_t>(t) * hidden + i] = __bfloat162float(row[i]);
}

// y = x * rsqrt(mean(x^2) + eps) * w, one block of matvec::kThreads per row, written as bf16 for
// the next GEMM. matvec::rms_normalize repeats this arithmetic in the fused decode path.
__global__ void rms_norm_kernel(const float* x, const float* w, int dim, float eps, bf16* y) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    ss += xr[i] * xr[i];
  const float inv = rsqrtf(matvec::block_sum(ss) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    y[static_cast<int64_t>(blockIdx.x) * dim + i] = __float2bfloat16_rn(w[i] * (xr[i] * inv));
}

// RoPE (rotate-half: i pairs with i + d/2) on q and k at positions *pos0 + t, and the bf16
// conversion of q, k, v. Grid (tokens, rope_blocks): each thread does one rotation pair or one
// element of v, so a decode step's RoPE is one round trip of loads (one block per token,
// looping, waited about 32 in a row: its SASS kept one load in flight).
constexpr int kRopeThreads = 256;
inline int rope_blocks(int hq, int hkv, int d) {
  return ((hq + hkv) * (d / 2) + hkv * d + kRopeThreads - 1) / kRopeThreads;
}
__global__ void __launch_bounds__(kRopeThreads)
    rope_kernel(const float* q, const float* k, const float* v, int hq, int hkv, int d, float theta,
                const int* pos0, bf16* q16, bf16* k16, bf16* v16) {
  sparq::device::begin_dependent_grid();  // with --pdl: q, k, v come from the kernel before
  const int t = blockIdx.x, half = d / 2;
  const int pairs = (hq + hkv) * half;
  const int idx = blockIdx.y * kRopeThreads + threadIdx.x;
  if (idx < pairs) {
    const int h = idx / half, i = idx % half;
    const bool is_q = h < hq;
    const int64_t base = is_q ? (static_cast<int64_t>(t) * hq + h) * d
                              : (static_cast<int64_t>(t) * hkv + h - hq) * d;
    const float* src = is_q ? q : k;
    bf16* dst = is_q ? q16 : k16;
    const float a = src[base + i], b = src[base + i + half];  // requested with the position
    matvec::rope_pair(a, b, *pos0 + t, i, d, theta, &dst[base + i], &dst[base + i + half]);
  } else if (idx < pairs + hkv * d) {
    const int64_t j = static_cast<int64_t>(t) * hkv * d + (idx - pairs);
    v16[j] = __float2bfloat16_rn(v[j]);
  }
}

__global__ void silu_mul_kernel(const float* g, const float* u, int64_t n, bf16* h) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = g[i];
    h[i] = __float2bfloat16_rn(x / (1.0f + __expf(-x)) * u[i]);
  }
}

__global__ void add_length_kernel(const int* src, int add, int* dst) {
  *dst = *src + add;
}

// Deterministic pseudo-random fill (splitmix64 hash of the index): uniform in [-a, a) as bf16,
// or a constant when a == 0 (norm weights are float).
__device__ float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
}
__global__ void random_bf16_kernel(bf16* p, int64_t n, uint64_t seed, float a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(a * hash_uniform(seed, i));
}
__global__ void fill_float_kernel(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = v;
}

// ---------------------------------------------------------------------------------------------

uint16_t float_to_bf16_bits(float f) {  // round to nearest even (NaN kept quiet)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

float half_bits_to_float(uint16_t h) {
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}

struct Layer {
  DeviceArray<float> attn_norm, mlp_norm;
  DeviceArray<bf16> wq, wk, wv, wo, w_gate, w_up, w_down;
  DeviceArray<bf16> k, kt, v;  // the layer's KV cache (sparq's packed dual layout)
  DeviceArray<float> vsum;
};

/// Activations for up to `rows` tokens at once.
struct Scratch {
  int rows = 0;
  DeviceArray<int> tokens;
  DeviceArray<float> x, q, k, v, g, u, logits;
  DeviceArray<bf16> xn, q16, k16, v16, att, h16;
  void resize(const Config& c, int n, int logit_rows) {
    rows = n;
    tokens.resize(n);
    x.resize(size_t(n) * c.hidden_size);
    xn.resize(size_t(n) * c.hidden_size);
    q.resize(size_t(n) * c.q_dim());
    k.resize(size_t(n) * c.kv_dim());
    v.resize(size_t(n) * c.kv_dim());
    q16.resize(size_t(n) * c.q_dim());
    k16.resize(size_t(n) * c.kv_dim());
    v16.resize(size_t(n) * c.kv_dim());
    att.resize(size_t(n) * c.q_dim());
    g.resize(size_t(n) * c.intermediate_size);
    u.resize(size_t(n) * c.intermediate_size);
    h16.resize(size_t(n) * c.intermediate_size);
    logits.resize(size_t(logit_rows) * c.vocab_size);
  }
};

class CudaModel : public Model {
 public:
  CudaModel(const Config& cfg, int max_seq_len, const CudaOptions& opt) : cfg_(cfg), opt_(opt) {
    CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cublas_check(cublasCreate(&blas_), "cublasCreate");
    cublas_check(cublasSetStream(blas_, stream_), "cublasSetStream");
    blas_ws_.resize(32 << 20);  // a fixed cuBLAS workspace keeps graph capture allocation-free
    cublas_check(cublasSetWorkspace(blas_, blas_ws_.p, blas_ws_.n), "cublasSetWorkspace");
    // Split-K partial sums in float, never in a bf16 output's type (prefill's P V product).
    cublas_check(cublasSetMathMode(blas_, static_cast<cublasMath_t>(
                                              CUBLAS_DEFAULT_MATH |
                                              CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
                 "cublasSetMathMode");
    if (opt.fused_matvec) init_matvec();
    pdl_ = opt.dependent_launch && sparq::kernels::dependent_launch_supported();
    if (opt.l2_prefetch && opt.fused_matvec && opt.fused_rope) init_l2_prefetch();
    problem_.batch = 1;
    problem_.num_q_heads = cfg.num_heads;
    problem_.num_kv_heads = cfg.num_kv_heads;
    problem_.head_dim = cfg.head_dim;
    problem_.capacity = max_seq_len;
    const sparq::KVCacheSizes s = sparq::packed_cache_sizes(problem_);
    layers_.resize(cfg.num_layers);
    for (Layer& L : layers_) {
      L.k.resize(s.k);
      L.kt.resize(s.kt);
      L.v.resize(s.v);
      L.vsum.resize(s.vsum);
      CK(cudaMemset(L.k.p, 0, s.k * sizeof(bf16)));
      CK(cudaMemset(L.kt.p, 0, s.kt * sizeof(bf16)));
      CK(cudaMemset(L.v.p, 0, s.v * sizeof(bf16)));
    }
    d_len_.resize(1);
    d_len_after_.resize(1);
    decode_.resize(cfg, 1, 1);
    CK(cudaMallocHost(&h_logits_, sizeof(float) * cfg.vocab_size));
    reset();
  }
  ~CudaModel() override {
    clear_graphs();
    for (cudaEvent_t e : events_)
      cudaEventDestroy(e);
    if (l2_bytes_ > 0) {  // the persisting lines back to normal, the set-aside as it was
      cudaStreamSynchronize(stream_);
      cudaCtxResetPersistingL2Cache();
      cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, l2_limit_before_);
    }
    if (h_logits_) cudaFreeHost(h_logits_);
    if (blas_) cublasDestroy(blas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  /// Allocates every weight, then fills it from the checkpoint (or randomly).
  void allocate_weights() {
    const Config& c = cfg_;
    const size_t H = c.hidden_size, I = c.intermediate_size;
    embed_.resize(size_t(c.vocab_size) * H);
    final_norm_.resize(H);
    if (!c.tie_word_embeddings) lm_head_.resize(size_t(c.vocab_size) * H);
    for (Layer& L : layers_) {
      L.attn_norm.resize(H);
      L.mlp_norm.resize(H);
      L.wq.resize(size_t(c.q_dim()) * H);
      L.wk.resize(size_t(c.kv_dim()) * H);
      L.wv.resize(size_t(c.kv_dim()) * H);
      L.wo.resize(H * c.q_dim());
      L.w_gate.resize(I * H);
      L.w_up.resize(I * H);
      L.w_down.resize(H * I);
    }
  }

  void load(const Checkpoint& ck) {
    const ModelTensors w = collect_tensors(ck, false);
    allocate_weights();
    int64_t done = 0;
    auto progress = [&](const TensorInfo& t) {
      done += t.bytes;
      if (opt_.progress)
        std::fprintf(stderr, "\rloading weights: %6.2f / %.2f GB", done / 1e9, w.bytes / 1e9);
    };
    auto put = [&](const TensorInfo& t, DeviceArray<bf16>& dst) {
      upload_bf16(t, dst.p);
      progress(t);
    };
    auto put_f = [&](const TensorInfo& t, DeviceArray<float>& dst) {
      std::vector<float> h(t.numel());
      for (int64_t i = 0; i < t.numel(); ++i)
        h[i] = element(t, i);
      CK(cudaMemcpy(dst.p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
      progress(t);
    };
    put(*w.embed, embed_);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      const LayerTensors& T = w.layers[l];
      Layer& L = layers_[l];
      put_f(*T.attn_norm, L.attn_norm);
      put(*T.wq, L.wq);
      put(*T.wk, L.wk);
      put(*T.wv, L.wv);
      put(*T.wo, L.wo);
      put_f(*T.mlp_norm, L.mlp_norm);
      put(*T.w_gate, L.w_gate);
      put(*T.w_up, L.w_up);
      put(*T.w_down, L.w_down);
    }
    put_f(*w.final_norm, final_norm_);
    if (!cfg_.tie_word_embeddings) put(*w.lm_head, lm_head_);
    if (opt_.progress) std::fprintf(stderr, "\n");
  }

  void randomize(uint64_t seed) {
    allocate_weights();
    uint64_t s = seed;
    auto rnd = [&](DeviceArray<bf16>& a, int fan_in) {
      random_bf16_kernel<<<1024, 256, 0, stream_>>>(a.p, a.n, s++ * 0x1000003ull,
                                                    1.7320508f / std::sqrt(float(fan_in)));
    };
    auto one = [&](DeviceArray<float>& a) {
      fill_float_kernel<<<64, 256, 0, stream_>>>(a.p, a.n, 1.0f);
    };
    rnd(embed_, 1);
    if (!cfg_.tie_word_embeddings) rnd(lm_head_, cfg_.hidden_size);
    one(final_norm_);
    for (Layer& L : layers_) {
      one(L.attn_norm);
      one(L.mlp_norm);
      rnd(L.wq, cfg_.hidden_size);
      rnd(L.wk, cfg_.hidden_size);
      rnd(L.wv, cfg_.hidden_size);
      rnd(L.wo, cfg_.q_dim());
      rnd(L.w_gate, cfg_.hidden_size);
      rnd(L.w_up, cfg_.hidden_size);
      rnd(L.w_down, cfg_.intermediate_size);
    }
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(stream_));
  }

  const Config& config() const override { return cfg_; }

  // Every layer tensor, the final norm, the lm_head (the embedding table when tied) and one
  // embedding row: what a decode step reads (the rest of an untied embedding table is not read).
  int64_t decode_weight_bytes() const override {
    auto bytes = [](const auto& a) { return static_cast<int64_t>(a.n * sizeof(*a.p)); };
    int64_t sum = bytes(final_norm_) + bytes(cfg_.tie_word_embeddings ? embed_ : lm_head_) +
                  int64_t(cfg_.hidden_size) * sizeof(bf16);
    for (const Layer& L : layers_)
      sum += bytes(L.attn_norm) + bytes(L.mlp_norm) + bytes(L.wq) + bytes(L.wk) + bytes(L.wv) +
             bytes(L.wo) + bytes(L.w_gate) + bytes(L.w_up) + bytes(L.w_down);
    return sum;
  }
  std::string device_name() const override {
    int dev = 0;
    cudaDeviceProp prop{};
    cudaGetDevice(&dev);
    cudaGetDeviceProperties(&prop, dev);
    return std::string("cuda (") + prop.name + ")";
  }
  int capacity() const override { return problem_.capacity; }
  int length() const override { return length_; }

  void reset() override {
    length_ = 0;
    CK(cudaMemsetAsync(d_len_.p, 0, sizeof(int), stream_));
    for (Layer& L : layers_)
      CK(cudaMemsetAsync(L.vsum.p, 0, L.vsum.n * sizeof(float), stream_));
    CK(cudaStreamSynchronize(stream_));
  }

  void synchronize() override { CK(cudaStreamSynchronize(stream_)); }

  // The prompt in pieces of at most opt_.prefill_tokens tokens: each piece appends its K/V and
  // attends to everything before it, so the scratch buffers (about 210 KB per token for 7B)
  // stay bounded however long the prompt.
  void prefill(const std::vector<int>& tokens, std::vector<float>* last,
               std::vector<float>* all = nullptr) override {
    const int n = static_cast<int>(tokens.size());
    if (n == 0) throw std::invalid_argument("prefill: no tokens");
    check_room(n);
    for (int t : tokens)
      if (t < 0 || t >= cfg_.vocab_size) throw std::out_of_range("token id out of range");
    const int piece = std::max(1, opt_.prefill_tokens), V = cfg_.vocab_size;
    if (opt_.prefill_gemm) {  // the largest piece's attention scratch, allocated once
      size_t bytes = 0;
      for (int t0 = 0; t0 < n; t0 += piece) {
        const int m = std::min(piece, n - t0);
        bytes = std::max(bytes, prefill::workspace_bytes(prefill_shape(m, length_ + t0),
                                                         prefill_chunk(m, length_ + t0)));
      }
      if (prefill_ws_.n < bytes) prefill_ws_.resize(bytes);
    }
    std::vector<float> h;
    if (all) all->clear();
    for (int t0 = 0; t0 < n; t0 += piece) {
      const int m = std::min(piece, n - t0);
      const int logit_rows = all ? m : (t0 + m == n ? 1 : 0);
      if (prefill_.rows < m)
        prefill_.resize(cfg_, m, std::max<int>(logit_rows, prefill_.logits.n / V));
      else if (prefill_.logits.n < size_t(logit_rows) * V)  // logits: only the rows asked for
        prefill_.logits.resize(size_t(logit_rows) * V);
      CK(cudaMemcpyAsync(prefill_.tokens.p, tokens.data() + t0, m * sizeof(int),
                         cudaMemcpyHostToDevice, stream_));
      forward(prefill_, m, /*decode=*/false, logit_rows);
      h.resize(size_t(logit_rows) * V);
      if (logit_rows > 0)
        CK(cudaMemcpyAsync(h.data(), prefill_.logits.p, h.size() * 4, cudaMemcpyDeviceToHost,
                           stream_));
      CK(cudaStreamSynchronize(stream_));  // (the tokens were staged from pageable memory)
      length_ += m;
      if (all) all->insert(all->end(), h.begin(), h.end());
    }
    if (last) last->assign(h.end() - V, h.end());
  }

  void decode(int token, std::vector<float>* logits) override {
    decode_step(token, logits, opt_.graphs);
  }

  bool decode_breakdown(int token, StepBreakdown* out) override {
    marks_.clear();
    profiling_ = true;
    try {
      decode_step(token, nullptr, /*graphs=*/false);
    } catch (...) {
      profiling_ = false;
      throw;
    }
    profiling_ = false;
    CK(cudaStreamSynchronize(stream_));
    *out = StepBreakdown{};
    for (size_t i = 1; i < marks_.size(); ++i) {
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]));
      double* part[] = {&out->qkv, &out->append, &out->attention, &out->o, &out->mlp, &out->other};
      *part[static_cast<int>(marks_[i])] += ms;
    }
    return true;
  }

  // One decode step, as a graph (captured at the first step of each key) or launch by launch.
  void decode_step(int token, std::vector<float>* logits, bool graphs) {
    check_room(1);
    if (token < 0 || token >= cfg_.vocab_size) throw std::out_of_range("token id out of range");
    // Grids are sized by a length bound rounded up to 256 (so one graph serves 256 steps); the
    // kernels read the exact length on the device.
    const int bound = std::min(capacity(), (length_ + 1 + 255) / 256 * 256);
    last_step = choose_attention(attention, cfg_.head_dim, bound);
    if (last_step.sparq)  // the ratio at the exact length, for the report
      last_step.transfer_ratio =
          sparq::transfer_ratio(length_ + 1, cfg_.head_dim, last_step.config.r,
                                std::min(last_step.config.k, length_ + 1));
    step_problem_ = problem_;
    step_problem_.max_length = bound;
    ensure_workspace();
    // From pageable memory: staged at call time, so the local may go out of scope.
    CK(cudaMemcpyAsync(decode_.tokens.p, &token, sizeof(int), cudaMemcpyHostToDevice, stream_));
    if (graphs) {
      const auto key =
          std::make_tuple(bound, last_step.sparq, last_step.config.r, last_step.config.k,
                          last_step.config.local_window, last_step.config.reallocation);
      auto it = graphs_.find(key);
      if (it == graphs_.end()) {
        cudaGraph_t graph;
        CK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
        try {
          forward(decode_, 1, /*decode=*/true, 1);
        } catch (...) {
          graph = nullptr;
          if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr)
            cudaGraphDestroy(graph);  // the partial capture
          throw;
        }
        CK(cudaStreamEndCapture(stream_, &graph));
        cudaGraphExec_t exec;
        CK(cudaGraphInstantiate(&exec, graph, 0));
        cudaGraphDestroy(graph);
        it = graphs_.emplace(key, exec).first;
      }
      CK(cudaGraphLaunch(it->second, stream_));
    } else {
      forward(decode_, 1, /*decode=*/true, 1);
    }
    if (logits) {
      CK(cudaMemcpyAsync(h_logits_, decode_.logits.p, sizeof(float) * cfg_.vocab_size,
                         cudaMemcpyDeviceToHost, stream_));
      CK(cudaStreamSynchronize(stream_));
      logits->assign(h_logits_, h_logits_ + cfg_.vocab_size);
    }
    ++length_;
  }

  void fill_random(int length, uint64_t seed) override {
    if (length < 1 || length >= capacity()) throw std::invalid_argument("fill length");
    reset();
    DeviceArray<bf16> nk(size_t(length) * cfg_.kv_dim()), nv(nk.n);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      random_bf16_kernel<<<1024, 256, 0, stream_>>>(nk.p, nk.n, seed + 2 * l, 1.7320508f);
      random_bf16_kernel<<<1024, 256, 0, stream_>>>(nv.p, nv.n, seed + 2 * l + 1, 1.7320508f);
      sparq::KVAppendParams<bf16> a;
      a.problem = problem_;
      a.cache = view(layers_[l]);
      a.lengths = d_len_.p;
      a.num_new = length;
      a.new_k = nk.p;
      a.new_v = nv.p;
      a.advance_lengths = false;
      sparq_check(sparq::kv_append(a, stream_), "kv_append");
    }
    add_length_kernel<<<1, 1, 0, stream_>>>(d_len_.p, length, d_len_.p);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(stream_));
    length_ = length;
  }

 private:
  sparq::KVCacheView<bf16> view(Layer& L) {
    return sparq::make_packed_cache_view<bf16>(problem_, L.k.p, L.kt.p, L.v.p, L.vsum.p);
  }

  // CudaOptions::l2_prefetch: a persisting set-aside of L2 for one layer's o projection (or as
  // much of it as the device allows), remembered so that the destructor restores it.
  void init_l2_prefetch() {
    const size_t bytes = cuda_l2_prefetch_bytes(cfg_);
    if (bytes == 0 ||
        cudaDeviceGetLimit(&l2_limit_before_, cudaLimitPersistingL2CacheSize) != cudaSuccess) {
      cudaGetLastError();
      return;
    }
    if (cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, std::max(bytes, l2_limit_before_)) !=
        cudaSuccess) {
      cudaGetLastError();  // MIG, or an MPS client: no set-aside, no prefetch
      return;
    }
    l2_bytes_ = bytes & ~size_t(15);
  }

  // The fused decode kernels stage their input vector in shared memory as float; their
  // shared-memory limit is raised here, once, outside any graph capture.
  void init_matvec() {
    const int norm_in = cfg_.hidden_size;
    const int add_in = std::max(cfg_.q_dim(), cfg_.intermediate_size);
    int dev = 0, optin = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const size_t need = matvec::Matvec::smem_bytes(std::max(norm_in, add_in)) + 32 * sizeof(float);
    if (need > size_t(optin))
      throw std::runtime_error("--matvec fused: a projection input of " +
                               std::to_string(std::max(norm_in, add_in)) +
                               " elements does not fit in shared memory (" + std::to_string(need) +
                               " > " + std::to_string(optin) + " bytes); use --matvec cublas");
    CK(matvec_.init(norm_in, add_in));
  }

  void check_room(int n) const {
    if (length_ + n > capacity())
      throw std::runtime_error("KV cache full: " + std::to_string(length_ + n) +
                               " positions > --max-seq-len " + std::to_string(capacity()));
  }

  void clear_graphs() {
    for (auto& kv : graphs_)
      cudaGraphExecDestroy(kv.second);
    graphs_.clear();
  }

  void ensure_workspace() {
    size_t bytes = 0;
    sparq_check(sparq::decode_attention_workspace_size<bf16>(
                    last_step.sparq ? sparq::AttentionMode::kSparq : sparq::AttentionMode::kDense,
                    step_problem_, last_step.config, &bytes),
                "decode_attention_workspace_size");
    if (bytes > attn_ws_.n) {
      CK(cudaStreamSynchronize(stream_));
      clear_graphs();  // captured graphs point at the old workspace
      attn_ws_.resize(std::max(bytes, 2 * attn_ws_.n));
      // Zeroed once: every decode launch (batch 1, the same heads) leaves its counters zero.
      CK(cudaMemsetAsync(attn_ws_.p, 0, attn_ws_.n, stream_));
    }
  }

  // y[n, out] (+)= x[n, in] . W[out, in]^T: bf16 in, float32 accumulate and out.
  void gemm(const bf16* x, int n, const bf16* w, int out, int in, float* y, bool accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublas_check(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF,
                              in, x, CUDA_R_16BF, in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

  void forward(Scratch& s, int n, bool decode, int logit_rows) {
    const Config& c = cfg_;
    const int H = c.hidden_size, I = c.intermediate_size, d = c.head_dim;
    const float eps = static_cast<float>(c.rms_norm_eps);
    const bool fused = decode && opt_.fused_matvec;    // n == 1: matvec.cuh's kernels
    const bool pdl = decode && pdl_;                   // dependent launches: decode steps only
    const bool fused_rope = fused && opt_.fused_rope;  // RoPE in the q/k/v matvec's epilogue
    const bool fused_append = fused_rope && opt_.fused_append;  // and the KV append
    matvec_.set_dependent_launch(pdl);
    const bf16* lm_head = c.tie_word_embeddings ? embed_.p : lm_head_.p;
    mark(Part::kOther);  // the start (decode_breakdown)
    if (decode) add_length_kernel<<<1, 1, 0, stream_>>>(d_len_.p, 1, d_len_after_.p);
    embed_kernel<<<dim3(n, (H + 255) / 256), 256, 0, stream_>>>(s.tokens.p, embed_.p, H, s.x.p);
    mark(Part::kOther);
    for (int l = 0; l < c.num_layers; ++l) {
      Layer& L = layers_[l];
      const sparq::KVCacheView<bf16> cache = view(L);
      if (fused_rope) {
        CK(matvec_.norm_qkv_rope(
            s.x.p, L.attn_norm.p, eps, H, L.wq.p, L.wk.p, L.wv.p, c.num_heads, c.num_kv_heads, d,
            static_cast<float>(c.rope_theta), d_len_.p, s.q16.p, s.k16.p, s.v16.p, stream_,
            fused_append ? &cache : nullptr, capacity(), matvec::L2Range{L.wo.p, l2_bytes_}));
      } else if (fused) {
        CK(matvec_.norm_matvec(
            s.x.p, L.attn_norm.p, eps, H,
            {{L.wq.p, s.q.p, c.q_dim()}, {L.wk.p, s.k.p, c.kv_dim()}, {L.wv.p, s.v.p, c.kv_dim()}},
            stream_));
      } else {
        rms_norm_kernel<<<n, matvec::kThreads, 0, stream_>>>(s.x.p, L.attn_norm.p, H, eps, s.xn.p);
        gemm(s.xn.p, n, L.wq.p, c.q_dim(), H, s.q.p, false);
        gemm(s.xn.p, n, L.wk.p, c.kv_dim(), H, s.k.p, false);
        gemm(s.xn.p, n, L.wv.p, c.kv_dim(), H, s.v.p, false);
      }
      if (!fused_rope)
        CK(sparq::kernels::launch_ex(
            rope_kernel, dim3(n, rope_blocks(c.num_heads, c.num_kv_heads, d)), dim3(kRopeThreads),
            0, stream_, 0, pdl, s.q.p, s.k.p, s.v.p, c.num_heads, c.num_kv_heads, d,
            static_cast<float>(c.rope_theta), static_cast<const int*>(d_len_.p), s.q16.p, s.k16.p,
            s.v16.p));
      mark(Part::kQkv);
      if (!fused_append) {
        sparq::KVAppendParams<bf16> a;
        a.problem = problem_;
        a.cache = cache;
        a.lengths = d_len_.p;
        a.num_new = n;
        a.new_k = s.k16.p;
        a.new_v = s.v16.p;
        a.advance_lengths = false;  // every layer appends at the same positions
        a.dependent_launch = pdl;
        sparq_check(sparq::kv_append(a, stream_), "kv_append");
        mark(Part::kAppend);
      }
      if (decode) {
        sparq::SparqDecodeParams<bf16> p;
        p.problem = step_problem_;
        p.config = last_step.config;
        p.q = s.q16.p;
        p.cache = cache;
        p.lengths = d_len_after_.p;
        p.out = s.att.p;
        p.dependent_launch = pdl;
        p.workspace_zeroed = opt_.zeroed_workspace;
        sparq_check(sparq::decode_attention(last_step.sparq ? sparq::AttentionMode::kSparq
                                                            : sparq::AttentionMode::kDense,
                                            p, attn_ws_.p, attn_ws_.n, stream_),
                    "decode_attention");
      } else {
        prefill_attention(n, s.q16.p, cache, s.att.p);
      }
      mark(Part::kAttention);
      if (fused)
        CK(matvec_.matvec_add(s.att.p, c.q_dim(), L.wo.p, H, s.x.p, stream_));
      else
        gemm(s.att.p, n, L.wo.p, H, c.q_dim(), s.x.p, true);
      mark(Part::kO);
      if (fused) {
        CK(matvec_.norm_gate_up_silu(s.x.p, L.mlp_norm.p, eps, H, L.w_gate.p, L.w_up.p, I, s.h16.p,
                                     stream_));
        CK(matvec_.matvec_add(s.h16.p, I, L.w_down.p, H, s.x.p, stream_));
      } else {
        rms_norm_kernel<<<n, matvec::kThreads, 0, stream_>>>(s.x.p, L.mlp_norm.p, H, eps, s.xn.p);
        gemm(s.xn.p, n, L.w_gate.p, I, H, s.g.p, false);
        gemm(s.xn.p, n, L.w_up.p, I, H, s.u.p, false);
        silu_mul_kernel<<<1024, 256, 0, stream_>>>(s.g.p, s.u.p, int64_t(n) * I, s.h16.p);
        gemm(s.h16.p, n, L.w_down.p, H, I, s.x.p, true);
      }
      mark(Part::kMlp);
    }
    const int first = n - logit_rows;
    if (logit_rows == 0) {  // a prompt piece before the last: no logits wanted
    } else if (fused) {
      CK(matvec_.norm_matvec(s.x.p, final_norm_.p, eps, H, {{lm_head, s.logits.p, c.vocab_size}},
                             stream_));
    } else {
      rms_norm_kernel<<<logit_rows, matvec::kThreads, 0, stream_>>>(s.x.p + size_t(first) * H,
                                                                    final_norm_.p, H, eps, s.xn.p);
      gemm(s.xn.p, logit_rows, lm_head, c.vocab_size, H, s.logits.p, false);
    }
    add_length_kernel<<<1, 1, 0, stream_>>>(d_len_.p, n, d_len_.p);
    CK(cudaGetLastError());
    mark(Part::kOther);
  }

  // decode_breakdown's parts, in StepBreakdown's order.
  enum class Part { kQkv, kAppend, kAttention, kO, kMlp, kOther };
  // With profiling_, an event after the work queued so far, ending a `part` (the first one
  // only starts the step).
  void mark(Part part) {
    if (!profiling_) return;
    if (events_.size() == marks_.size()) {
      cudaEvent_t e;
      CK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    CK(cudaEventRecord(events_[marks_.size()], stream_));
    marks_.push_back(part);
  }

  // A piece of n tokens after `past` cached ones (the current length by default).
  prefill::Shape prefill_shape(int n, int past = -1) const {
    prefill::Shape shape;
    shape.num_heads = cfg_.num_heads;
    shape.num_kv_heads = cfg_.num_kv_heads;
    shape.head_dim = cfg_.head_dim;
    shape.past = past < 0 ? length_ : past;
    shape.tokens = n;
    return shape;
  }
  int prefill_chunk(int n, int past = -1) const {
    return prefill::chunk_queries(prefill_shape(n, past), opt_.prefill_attention_bytes);
  }
  void prefill_attention(int n, const bf16* q, const sparq::KVCacheView<bf16>& cache, bf16* out) {
    const prefill::Shape shape = prefill_shape(n);
    if (!opt_.prefill_gemm) return prefill::simple_attention(shape, q, cache, out, stream_);
    // prefill_ws_ was sized in prefill(), for every piece of the prompt.
    prefill::gemm_attention(shape, q, cache, out, prefill_ws_.p, prefill_chunk(n), blas_);
  }

  static float element(const TensorInfo& t, int64_t i) {
    if (t.dtype == DType::kF32) {
      float f;
      std::memcpy(&f, t.data + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, t.data + 2 * i, 2);
    if (t.dtype == DType::kF16) return half_bits_to_float(h);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  // Copies a tensor to the device as bf16 (bf16 straight from the mapping; others converted on
  // the host in chunks).
  void upload_bf16(const TensorInfo& t, bf16* dst) {
    if (t.dtype == DType::kBF16) {
      CK(cudaMemcpy(dst, t.data, t.bytes, cudaMemcpyHostToDevice));
      return;
    }
    const int64_t n = t.numel(), chunk = int64_t(1) << 22;
    std::vector<uint16_t> h(std::min(n, chunk));
    for (int64_t b = 0; b < n; b += chunk) {
      const int64_t m = std::min(chunk, n - b);
      for (int64_t i = 0; i < m; ++i)
        h[i] = float_to_bf16_bits(element(t, b + i));
      CK(cudaMemcpy(dst + b, h.data(), m * 2, cudaMemcpyHostToDevice));
    }
  }

  Config cfg_;
  CudaOptions opt_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  matvec::Matvec matvec_;   // set up only with opt_.fused_matvec
  bool pdl_ = false;        // opt_.dependent_launch on a device that has it
  size_t l2_bytes_ = 0;     // of each layer's o projection prefetched into L2 (l2_prefetch)
  bool profiling_ = false;  // decode_breakdown: events between the parts of the step
  std::vector<cudaEvent_t> events_;
  std::vector<Part> marks_;
  size_t l2_limit_before_ = 0;
  DeviceArray<uint8_t> blas_ws_, attn_ws_, prefill_ws_;
  sparq::DecodeProblem problem_, step_problem_;
  std::vector<Layer> layers_;
  DeviceArray<bf16> embed_, lm_head_;
  DeviceArray<float> final_norm_;
  DeviceArray<int> d_len_, d_len_after_;
  Scratch decode_, prefill_;
  float* h_logits_ = nullptr;
  int length_ = 0;
  std::map<std::tuple<int, bool, int, int, int, bool>, cudaGraphExec_t> graphs_;
};

}  // namespace

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device (") + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "no CUDA device";
  return "";
}

size_t cuda_l2_prefetch_bytes(const Config& cfg) {
  int dev = 0, most = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&most, cudaDevAttrMaxPersistingL2CacheSize, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const size_t o_bytes = size_t(cfg.hidden_size) * cfg.q_dim() * sizeof(bf16);
  return std::min(o_bytes, size_t(std::max(most, 0)));
}

bool cuda_dependent_launch_available() {
  return sparq::kernels::dependent_launch_supported();
}

double device_copy_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 30;
  DeviceArray<uint8_t> a(bytes), b(bytes);
  cudaStream_t stream;
  cudaEvent_t start, stop;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  CK(cudaMemsetAsync(a.p, 1, bytes, stream));
  std::vector<float> ms;
  for (int i = 0; i < 6; ++i) {  // the first copy only warms up
    CK(cudaEventRecord(start, stream));
    CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, stream));
    CK(cudaEventRecord(stop, stream));
    CK(cudaEventSynchronize(stop));
    float t = 0;
    CK(cudaEventElapsedTime(&t, start, stop));
    if (i > 0) ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  std::sort(ms.begin(), ms.end());
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

std::unique_ptr<Model> make_cuda_model(const Checkpoint& ck, int max_seq_len,
                                       const CudaOptions& opt) {
  auto m = std::make_unique<CudaModel>(ck.config(), max_seq_len, opt);
  m->load(ck);
  return m;
}

std::unique_ptr<Model> make_cuda_model_random(const Config& cfg, int max_seq_len, uint64_t seed,
                                              const CudaOptions& opt) {
  auto m = std::make_unique<CudaModel>(cfg, max_seq_len, opt);
  m->randomize(seed);
  return m;
}

}  // namespace llama
