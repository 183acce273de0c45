// The CUDA forward pass (bf16) against transformers' float32 logits, with cuBLAS and with the
// fused matvec decode kernels (--matvec fused; those against cuBLAS too), SparQ with r = d,
// k = S against dense, graph against no-graph decoding, and dependent (--pdl) against plain
// launches. Skipped without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "model_cuda.hpp"
#include "test_support.hpp"

namespace llama::test {
namespace {

// bf16 weights, activations and KV cache against a float32 reference, logits of magnitude ~4:
// measured on an H100, max |error| 0.074 (fp32_sharded, whose weights are rounded to bf16) and
// 0.046 (bf16_tied), over every prefill position and decode step.
constexpr double kTol = 0.12;

// The fused decode path (--matvec fused) differs from cuBLAS only in the order its dot products
// are summed; its inputs and bf16 rounding points are the same. A float32 sum order changes a
// projection by ~1e-6 relative, which now and then flips one bf16 rounding downstream (q, k, v,
// RMSNorm's output or h: one element off by 2^-8 relative); through two layers that moves logits
// of magnitude ~4 by ~1e-3 typically; measured on an H100, up to 0.022 (fp32_sharded, whose
// fp32 weights are rounded to bf16 on load). 4e-2 leaves room for that and is still 3x tighter
// than kTol, while a real fault (a wrong or missed row or chunk, a dropped norm weight) moves
// logits far more.
constexpr double kFusedVsCublasTol = 4e-2;

// The gemm prefill attention against the simple kernel: besides the sum order, the gemm
// version rounds every softmax probability to bf16 before P·V, which moves almost every
// attention output a little (not an occasional flip). A numpy emulation of both, rounding
// where the CUDA code rounds, put their logits 0.038 apart (bf16_tied; 0.040 fp32_sharded)
// before any sum-order noise: 4e-2 would fail by chance. Each is also held to kTol against
// transformers.
constexpr double kGemmVsSimpleTol = 8e-2;

std::unique_ptr<Model> load(const std::string& variant, CudaOptions o) {
  o.progress = false;
  return make_cuda_model(Checkpoint(variant_dir(variant)), 512, o);
}

std::unique_ptr<Model> load(const std::string& variant, bool graphs = true, bool fused = false,
                            bool dependent = false) {
  CudaOptions o;
  o.graphs = graphs;
  o.fused_matvec = fused;
  o.dependent_launch = dependent;
  return load(variant, o);
}

class GpuLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuLogits, PrefillAndDecodeMatchTransformers) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference(GetParam());
  auto model = load(GetParam());
  model->attention.mode = sparq::AttentionMode::kDense;
  std::vector<float> last, all;
  model->prefill(ref.prompt_ids, &last, &all);
  const int V = model->config().vocab_size;
  double worst = 0;
  for (size_t t = 0; t < ref.prefill_logits.size(); ++t) {
    const double e = max_abs_diff(&all[t * V], ref.prefill_logits[t]);
    worst = std::max(worst, e);
    EXPECT_LT(e, kTol) << "prefill position " << t;
  }
  for (size_t s = 0; s < ref.decode_tokens.size(); ++s) {
    std::vector<float> logits;
    model->decode(ref.decode_tokens[s], &logits);
    const double e = max_abs_diff(logits.data(), ref.decode_logits[s]);
    worst = std::max(worst, e);
    EXPECT_LT(e, kTol) << "decode step " << s;
  }
  std::printf("[ %s ] max |logit - transformers| = %.4g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(TinyLlama, GpuLogits, ::testing::Values("fp32_sharded", "bf16_tied"));

// (checkpoint, CUDA graphs on)
class GpuFusedMatvec : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(GpuFusedMatvec, DecodeMatchesTransformersAndCublas) {
  LLAMA_REQUIRE_GPU();
  const auto [variant, graphs] = GetParam();
  const Reference ref = load_reference(variant);
  auto fused = load(variant, graphs, /*fused=*/true), cublas = load(variant, graphs, false);
  fused->attention.mode = cublas->attention.mode = sparq::AttentionMode::kDense;
  std::vector<float> a, b, all;
  fused->prefill(ref.prompt_ids, &a, &all);  // prefill is cuBLAS in both
  cublas->prefill(ref.prompt_ids, &b);
  const int V = fused->config().vocab_size;
  for (size_t t = 0; t < ref.prefill_logits.size(); ++t)
    EXPECT_LT(max_abs_diff(&all[t * V], ref.prefill_logits[t]), kTol) << "prefill position " << t;
  // transformers' decode steps, then 40 greedy ones (the cuBLAS model's choice, fed to both)
  double worst_ref = 0, worst_cublas = 0;
  const size_t steps = ref.decode_tokens.size() + 40;
  for (size_t s = 0; s < steps; ++s) {
    const int token = s < ref.decode_tokens.size() ? ref.decode_tokens[s] : argmax(b);
    fused->decode(token, &a);
    cublas->decode(token, &b);
    if (s < ref.decode_logits.size()) {
      const double e = max_abs_diff(a.data(), ref.decode_logits[s]);
      worst_ref = std::max(worst_ref, e);
      EXPECT_LT(e, kTol) << "decode step " << s << " against transformers";
    }
    const double d = max_abs_diff(a.data(), b);
    worst_cublas = std::max(worst_cublas, d);
    EXPECT_LT(d, kFusedVsCublasTol) << "decode step " << s << " against cuBLAS";
  }
  std::printf(
      "[ %s, graphs %s ] fused decode: max |logit - transformers| = %.4g, "
      "max |logit - cuBLAS decode| = %.4g\n",
      variant.c_str(), graphs ? "on" : "off", worst_ref, worst_cublas);
}

INSTANTIATE_TEST_SUITE_P(TinyLlama, GpuFusedMatvec,
                         ::testing::Combine(::testing::Values("fp32_sharded", "bf16_tied"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_graphs" : "_no_graphs");
                         });

std::vector<int> greedy(Model& m, const std::vector<int>& prompt, int steps,
                        std::vector<std::vector<float>>* all = nullptr) {
  std::vector<float> logits;
  m.reset();
  m.prefill(prompt, &logits);
  std::vector<int> out;
  for (int i = 0; i < steps; ++i) {
    out.push_back(argmax(logits));
    m.decode(out.back(), &logits);
    if (all) all->push_back(logits);
  }
  return out;
}

TEST(GpuSparq, FullRankSparqGeneratesExactlyTheDenseTokens) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("bf16_tied");
  auto model = load("bf16_tied");
  model->attention.mode = sparq::AttentionMode::kDense;
  const std::vector<int> dense = greedy(*model, ref.prompt_ids, 32);
  model->attention.mode = sparq::AttentionMode::kSparq;
  model->attention.r = 64;
  model->attention.k = 100000;
  model->attention.local_window = 0;
  const std::vector<int> sparse = greedy(*model, ref.prompt_ids, 32);
  EXPECT_TRUE(model->last_step.sparq);
  EXPECT_EQ(sparse, dense);
}

// Two models that differ only in how their kernels are launched: the same greedy tokens and
// the same logits, bit for bit, over `steps` decode steps.
void expect_same_decoding(Model& with, Model& without, const std::vector<int>& prompt, int steps) {
  std::vector<std::vector<float>> a, b;
  EXPECT_EQ(greedy(with, prompt, steps, &a), greedy(without, prompt, steps, &b));
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(a[i], b[i]) << "step " << i;
}

TEST(GpuGraphs, GraphAndNoGraphDecodeAgree) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("fp32_sharded");
  for (const bool fused : {false, true})
    for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq}) {
      SCOPED_TRACE(fused ? "fused matvec" : "cuBLAS");
      auto with = load("fp32_sharded", true, fused), without = load("fp32_sharded", false, fused);
      with->attention.mode = without->attention.mode = mode;
      with->attention.compression = without->attention.compression = 4;
      with->attention.local_window = without->attention.local_window = 4;
      // 300 steps cross a 256-position bucket (a second captured graph).
      expect_same_decoding(*with, *without, ref.prompt_ids, 300);
    }
}

// RoPE in the q/k/v matvec's epilogue (the default with fused matvecs) computes the same bits
// as the plain q/k/v matvec followed by the RoPE kernel: the same logits, dense and SparQ, on
// both checkpoints (GQA, 4 query heads on 2), with and without graphs, and with --pdl (the
// RoPE kernel then starts as a dependent of the matvec).
TEST(GpuFusedRope, SameLogitsAsTheRopeKernel) {
  LLAMA_REQUIRE_GPU();
  for (const std::string variant : {"bf16_tied", "fp32_sharded"}) {
    const Reference ref = load_reference(variant);
    for (const bool graphs : {true, false})
      for (const bool pdl : {false, true})
        for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq}) {
          if (pdl && (!graphs || mode == sparq::AttentionMode::kSparq)) continue;  // one such case
          SCOPED_TRACE(variant + (graphs ? ", graphs" : ", no graphs") + (pdl ? ", --pdl" : "") +
                       (mode == sparq::AttentionMode::kDense ? ", dense" : ", SparQ"));
          CudaOptions fused, separate;
          fused.graphs = separate.graphs = graphs;
          fused.fused_matvec = separate.fused_matvec = true;
          fused.dependent_launch = separate.dependent_launch = pdl;
          separate.fused_rope = false;
          auto with = load(variant, fused), without = load(variant, separate);
          with->attention.mode = without->attention.mode = mode;
          with->attention.compression = without->attention.compression = 4;
          expect_same_decoding(*with, *without, ref.prompt_ids, 64);
        }
  }
}

// --pdl changes when the decode step's kernels start, not what they compute: the same logits
// bit for bit, dense and SparQ, with and without graphs, fused matvecs and cuBLAS projections
// (RoPE then starts as a dependent of a cuBLAS kernel). On an sm_90 device the option must
// take effect (else this would compare a model with itself); before sm_90 it is ignored.
TEST(GpuDependentLaunch, SameLogitsAsPlainLaunches) {
  LLAMA_REQUIRE_GPU();
  int dev = 0, major = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), cudaSuccess);
  if (major >= 9)
    EXPECT_TRUE(llama::cuda_dependent_launch_available())
        << "an sm_90 device, yet --pdl would be ignored (kernels built for an older architecture?)";
  const Reference ref = load_reference("bf16_tied");
  for (const bool graphs : {true, false})
    for (const bool fused : {true, false})
      for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq}) {
        if (!fused && !graphs) continue;  // one cuBLAS case is enough: graphs, as by default
        SCOPED_TRACE(std::string(graphs ? "graphs" : "no graphs") + (fused ? "" : ", cuBLAS") +
                     (mode == sparq::AttentionMode::kDense ? ", dense" : ", SparQ"));
        auto with = load("bf16_tied", graphs, fused, true),
             without = load("bf16_tied", graphs, fused);
        with->attention.mode = without->attention.mode = mode;
        with->attention.compression = without->attention.compression = 4;
        expect_same_decoding(*with, *without, ref.prompt_ids, 64);
      }
}

/// Decoding with the fused matvecs and the default options, against the same with one option
/// changed by `change`: the same logits bit for bit, dense and SparQ, with and without --pdl,
/// over 300 steps that cross a 256-position bucket (a second graph, and a grown attention
/// workspace).
void expect_option_changes_no_logit(void (*change)(CudaOptions&)) {
  const Reference ref = load_reference("bf16_tied");
  for (const bool pdl : {false, true})
    for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq}) {
      SCOPED_TRACE(std::string(pdl ? "--pdl" : "plain") +
                   (mode == sparq::AttentionMode::kDense ? ", dense" : ", SparQ"));
      CudaOptions on;
      on.fused_matvec = true;
      on.dependent_launch = pdl;
      CudaOptions other = on;
      change(other);
      auto with = load("bf16_tied", on), without = load("bf16_tied", other);
      with->attention.mode = without->attention.mode = mode;
      with->attention.compression = without->attention.compression = 4;
      expect_same_decoding(*with, *without, ref.prompt_ids, 300);
    }
}

// The KV append in the q/k/v matvec's epilogue (the default with fused RoPE) writes what
// sparq::kv_append writes (SparQ also reads K transposed and the V sum).
TEST(GpuFusedAppend, SameLogitsAsTheAppendKernel) {
  LLAMA_REQUIRE_GPU();
  expect_option_changes_no_logit([](CudaOptions& o) { o.fused_append = false; });
}

// The attention workspace zeroed once (the default) instead of a memset before every layer's
// launch (with --pdl the attention kernel then starts as a dependent; the grown workspace is
// zeroed again).
TEST(GpuZeroedWorkspace, SameLogitsAsAMemsetPerLaunch) {
  LLAMA_REQUIRE_GPU();
  expect_option_changes_no_logit([](CudaOptions& o) { o.zeroed_workspace = false; });
}

// --l2-prefetch only asks L2 to keep each layer's o projection: the same logits bit for bit.
// While such a model lives, the device's persisting set-aside of L2 holds it (where the device
// has one: not under MIG); afterwards the set-aside is what it was.
TEST(GpuL2Prefetch, SameLogitsAndTheSetAsideRestored) {
  LLAMA_REQUIRE_GPU();
  size_t before = 0, during = 0, after = 0;
  ASSERT_EQ(cudaDeviceGetLimit(&before, cudaLimitPersistingL2CacheSize), cudaSuccess);
  expect_option_changes_no_logit([](CudaOptions& o) { o.l2_prefetch = true; });
  ASSERT_EQ(cudaDeviceGetLimit(&after, cudaLimitPersistingL2CacheSize), cudaSuccess);
  EXPECT_EQ(after, before);
  CudaOptions o;
  o.l2_prefetch = true;
  {
    auto model = load("bf16_tied", o);
    const size_t bytes = cuda_l2_prefetch_bytes(model->config());
    ASSERT_EQ(cudaDeviceGetLimit(&during, cudaLimitPersistingL2CacheSize), cudaSuccess);
    if (bytes > 0) EXPECT_GT(during, size_t(0)) << "no set-aside for " << bytes << " bytes";
    std::printf("L2 prefetch: %zu bytes of o per layer; set-aside %zu (before: %zu)\n", bytes,
                during, before);
  }
  ASSERT_EQ(cudaDeviceGetLimit(&after, cudaLimitPersistingL2CacheSize), cudaSuccess);
  EXPECT_EQ(after, before);
}

// The two prefill attention versions (prefill_attention.cuh) on the whole model: both match
// transformers, and each other within kGemmVsSimpleTol (the gemm version also rounds
// probabilities to bf16). The prompt
// also goes in two pieces, so the second attends to rows cached before it; the gemm version
// runs in small chunks of queries.
TEST(GpuPrefill, GemmAndSimpleAttentionMatchTransformers) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("bf16_tied");
  CudaOptions small, plain;
  // Attention in chunks of 5 queries (4 heads x 5 queries x up to 48 keys x 6 bytes = 5760
  // bytes): the 42-token prompt runs as 9 chunks, the last of 2 queries.
  small.prefill_attention_bytes = 5760;
  plain.prefill_gemm = false;
  auto gemm = load("bf16_tied", small);
  auto simple = load("bf16_tied", plain);
  const int V = gemm->config().vocab_size, n = static_cast<int>(ref.prompt_ids.size());
  std::vector<float> last, a, b;
  gemm->prefill(ref.prompt_ids, &last, &a);
  simple->prefill(ref.prompt_ids, &last, &b);
  for (int t = 0; t < n; ++t) {
    EXPECT_LT(max_abs_diff(&a[size_t(t) * V], ref.prefill_logits[t]), kTol) << "gemm, " << t;
    EXPECT_LT(max_abs_diff(&b[size_t(t) * V], ref.prefill_logits[t]), kTol) << "simple, " << t;
    EXPECT_LT(max_abs_diff(&a[size_t(t) * V], std::vector<float>(b.begin() + size_t(t) * V,
                                                                 b.begin() + size_t(t + 1) * V)),
              kGemmVsSimpleTol)
        << "gemm vs simple, " << t;
  }
  gemm->reset();
  const int half = n / 2;
  gemm->prefill(std::vector<int>(ref.prompt_ids.begin(), ref.prompt_ids.begin() + half), &last);
  gemm->prefill(std::vector<int>(ref.prompt_ids.begin() + half, ref.prompt_ids.end()), &last, &a);
  for (int t = half; t < n; ++t)
    EXPECT_LT(max_abs_diff(&a[size_t(t - half) * V], ref.prefill_logits[t]), kTol)
        << "second piece, " << t;
}

// A prompt prefilled in pieces of 9 tokens (each attending to the pieces before it), logits of
// every position asked for: the same logits as transformers, and a decode step after it too.
TEST(GpuPrefill, PromptInPiecesMatchesTransformers) {
  LLAMA_REQUIRE_GPU();
  const Reference ref = load_reference("bf16_tied");
  CudaOptions o;
  o.prefill_tokens = 9;  // 42 tokens: 5 pieces, the last of 6
  auto model = load("bf16_tied", o);
  const int V = model->config().vocab_size;
  std::vector<float> last, all;
  model->prefill(ref.prompt_ids, &last, &all);
  ASSERT_EQ(all.size(), ref.prompt_ids.size() * V);
  EXPECT_EQ(model->length(), static_cast<int>(ref.prompt_ids.size()));
  for (size_t t = 0; t < ref.prompt_ids.size(); ++t)
    EXPECT_LT(max_abs_diff(&all[t * V], ref.prefill_logits[t]), kTol) << "position " << t;
  EXPECT_LT(max_abs_diff(last.data(), ref.prefill_logits.back()), kTol);
  model->reset();
  model->prefill(ref.prompt_ids, &last);  // only the last row's logits
  EXPECT_LT(max_abs_diff(last.data(), ref.prefill_logits.back()), kTol);
  model->decode(ref.decode_tokens[0], &last);
  EXPECT_LT(max_abs_diff(last.data(), ref.decode_logits[0]), kTol);
}

TEST(GpuBench, RandomFillAndDecodeRun) {
  LLAMA_REQUIRE_GPU();
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused matvec" : "cuBLAS");
    auto model = load("bf16_tied", true, fused);
    model->attention.mode = sparq::AttentionMode::kSparq;
    model->fill_random(400, 1);
    std::vector<float> logits;
    for (int i = 0; i < 5; ++i)
      model->decode(7, &logits);
    EXPECT_EQ(model->length(), 405);
    for (float x : logits)
      ASSERT_TRUE(std::isfinite(x));
  }
}

// --bench-decode's breakdown: a step launched part by part decodes like any other (the same
// logits as a model that decoded it with a graph), and every part that has launches takes time.
TEST(GpuBench, BreakdownStepDecodesAndTimesEveryPart) {
  LLAMA_REQUIRE_GPU();
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused matvec" : "cuBLAS");
    auto timed = load("bf16_tied", true, fused), plain = load("bf16_tied", true, fused);
    for (auto* m : {timed.get(), plain.get()}) {
      m->attention.mode = sparq::AttentionMode::kSparq;
      m->fill_random(300, 1);
    }
    StepBreakdown b;
    ASSERT_TRUE(timed->decode_breakdown(7, &b));
    plain->decode(7, nullptr);
    EXPECT_EQ(timed->length(), 301);
    EXPECT_GT(b.qkv, 0.0);
    EXPECT_GT(b.attention, 0.0);
    EXPECT_GT(b.o, 0.0);
    EXPECT_GT(b.mlp, 0.0);
    EXPECT_GT(b.other, 0.0);
    if (fused)
      EXPECT_EQ(b.append, 0.0) << "the append is fused into the q/k/v matvec by default";
    else
      EXPECT_GT(b.append, 0.0);
    std::vector<float> a, c;
    timed->decode(9, &a);
    plain->decode(9, &c);
    EXPECT_EQ(a, c) << "the step after the timed one";
  }
}

}  // namespace
}  // namespace llama::test
