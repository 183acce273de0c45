// sparq_demo: SparQ attention vs dense attention with the CPU reference, on random data.
// Prints the output error of SparQ against dense, statistics of alpha (the approximate score
// mass the selected positions cover) and the transfer model's ratio and speedup.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <sparq/sparq.hpp>

namespace {

struct Options {
  int batch = 2;
  int heads = 8;
  int kv_heads = 2;
  int head_dim = 128;
  int seq_len = 4096;
  double compression = 8.0;
  int local_window = 16;
  unsigned long long seed = 1;
  bool per_query_head = false;
  bool no_reallocation = false;
  int planted = 8;
};

void print_help(const char* argv0) {
  std::printf(
      "Usage: %s [options]\n"
      "\n"
      "Runs one decode step of SparQ attention and of dense attention with the CPU reference\n"
      "(float64) on random queries and a random KV cache, and compares them.\n"
      "\n"
      "Options (default in brackets):\n"
      "  --batch N          sequences in the batch [2]; sequence b has length seq-len - 37*b\n"
      "  --heads N          query heads [8]\n"
      "  --kv-heads N       KV heads; must divide --heads (GQA group = heads / kv-heads) [2]\n"
      "  --head-dim N       head dimension d: 64, 128 or 256 [128]\n"
      "  --seq-len N        cache length S of the first sequence [4096]\n"
      "  --compression C    transfer compression, e.g. 8 for 1/8: r = round(d/C),\n"
      "                     k = round(S/(2C)) (the gpt-fast rule) [8]\n"
      "  --local-window L   last L positions always selected (clamped to k) [16]\n"
      "  --seed N           random seed [1]\n"
      "  --planted N        relevant positions planted per query head (0: noise) [8]\n"
      "  --per-query-head   select per query head instead of once per GQA group\n"
      "  --no-reallocation  y = attention over the selection only (no mean-value mix-in)\n"
      "  --help             this text\n"
      "\n"
      "Queries and keys are Gaussian with a few heavy components (as in trained LLMs), and a\n"
      "few planted positions per query head have keys along its query, so attention is peaked.\n",
      argv0);
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_help(argv[0]);
      std::exit(0);
    }
    if (a == "--per-query-head") {
      o->per_query_head = true;
      continue;
    }
    if (a == "--no-reallocation") {
      o->no_reallocation = true;
      continue;
    }
    static const char* const kValued[] = {"--batch",        "--heads",   "--kv-heads",
                                          "--head-dim",     "--seq-len", "--compression",
                                          "--local-window", "--seed",    "--planted"};
    if (std::find_if(std::begin(kValued), std::end(kValued),
                     [&](const char* n) { return a == n; }) == std::end(kValued)) {
      std::fprintf(stderr, "error: unknown option %s (see --help)\n", a.c_str());
      return false;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", a.c_str());
      return false;
    }
    const char* v = argv[++i];
    char* end = nullptr;
    const double x = std::strtod(v, &end);
    if (end == v || *end != '\0') {
      std::fprintf(stderr, "error: %s: '%s' is not a number\n", a.c_str(), v);
      return false;
    }
    if (a == "--batch")
      o->batch = static_cast<int>(x);
    else if (a == "--heads")
      o->heads = static_cast<int>(x);
    else if (a == "--kv-heads")
      o->kv_heads = static_cast<int>(x);
    else if (a == "--head-dim")
      o->head_dim = static_cast<int>(x);
    else if (a == "--seq-len")
      o->seq_len = static_cast<int>(x);
    else if (a == "--compression")
      o->compression = x;
    else if (a == "--local-window")
      o->local_window = static_cast<int>(x);
    else if (a == "--seed")
      o->seed = static_cast<unsigned long long>(x);
    else
      o->planted = static_cast<int>(x);
  }
  return true;
}

double rel_l2(const double* a, const double* b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;

  sparq::DecodeProblem p;
  p.batch = o.batch;
  p.num_q_heads = o.heads;
  p.num_kv_heads = o.kv_heads;
  p.head_dim = o.head_dim;
  p.capacity = o.seq_len;
  if (sparq::Status s = sparq::validate_problem(p); !sparq::ok(s)) {
    std::fprintf(stderr, "error: %s\n", sparq::status_string(s));
    return 2;
  }
  std::vector<int> lengths(p.batch);
  for (int b = 0; b < p.batch; ++b)
    lengths[b] = std::max(1, o.seq_len - 37 * b);

  sparq::SparqConfig cfg;
  cfg.local_window = o.local_window;
  cfg.reallocation = !o.no_reallocation;
  cfg.gqa = o.per_query_head ? sparq::GqaMode::kPerQueryHead : sparq::GqaMode::kShared;
  if (sparq::Status s = sparq::config_from_compression(p.head_dim, o.seq_len, o.compression, &cfg);
      !sparq::ok(s)) {
    std::fprintf(stderr, "error: %s\n", sparq::status_string(s));
    return 2;
  }
  if (sparq::Status s = sparq::validate_config(cfg, p.head_dim); !sparq::ok(s)) {
    std::fprintf(stderr, "error: %s\n", sparq::status_string(s));
    return 2;
  }

  // Random data. Query: Normal(0,1) with 1/16 of the components scaled by 8 (heavy, as in
  // real models); keys share the heavy components' scale so scores have structure.
  std::mt19937_64 gen(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int d = p.head_dim;
  std::vector<float> scale(d, 1.0f);
  for (int j = 0; j < d; j += 16)
    scale[(j * 7 + 3) % d] = 8.0f;
  std::vector<float> q(static_cast<size_t>(p.batch) * p.num_q_heads * d);
  for (size_t i = 0; i < q.size(); ++i)
    q[i] = normal(gen) * scale[i % d] / 4.0f;

  const sparq::KVCacheSizes sz = sparq::packed_cache_sizes(p);
  std::vector<float> k(sz.k), kt(sz.kt, 0.0f), v(sz.v), vsum(sz.vsum, 0.0f);
  const auto cache = sparq::make_packed_cache_view(p, k.data(), kt.data(), v.data(), vsum.data());
  // Append the whole sequences through the reference append (fills K, Kt, V and the V sum).
  for (int b = 0; b < p.batch; ++b) {
    sparq::DecodeProblem one = p;
    one.batch = 1;
    auto view = cache;
    view.k += b * cache.k_stride_b;
    view.kt += b * cache.kt_stride_b;
    view.v += b * cache.v_stride_b;
    view.vsum += b * cache.vsum_stride_b;
    const int n = lengths[b];
    std::vector<float> nk(static_cast<size_t>(n) * p.num_kv_heads * d), nv(nk.size());
    for (size_t i = 0; i < nk.size(); ++i) {
      nk[i] = normal(gen) * scale[i % d] / 4.0f;
      nv[i] = normal(gen);
    }
    // Plant a few relevant positions per query head (keys along that head's query), so that
    // attention is peaked as in trained models rather than flat as on pure noise.
    std::uniform_int_distribution<int> pos(0, n - 1);
    const int g = p.group_size();
    for (int hq = 0; hq < p.num_q_heads; ++hq)
      for (int i = 0; i < std::min(o.planted, n); ++i) {
        const size_t row = (static_cast<size_t>(pos(gen)) * p.num_kv_heads + hq / g) * d;
        const float* qh = &q[(static_cast<size_t>(b) * p.num_q_heads + hq) * d];
        for (int j = 0; j < d; ++j)
          nk[row + j] = 2.5f * qh[j] + 0.25f * normal(gen);
      }
    const int zero = 0;
    if (sparq::Status s = sparq::reference::append_kv(one, view, &zero, n, nk.data(), nv.data());
        !sparq::ok(s)) {
      std::fprintf(stderr, "error: append: %s\n", sparq::status_string(s));
      return 1;
    }
  }

  const size_t out_n = q.size();
  std::vector<double> y_dense(out_n), y_sparq(out_n);
  const auto t0 = std::chrono::steady_clock::now();
  sparq::Status s =
      sparq::reference::dense_decode(p, q.data(), cache, lengths.data(), y_dense.data());
  const auto t1 = std::chrono::steady_clock::now();
  sparq::reference::SparqTrace trace;
  if (sparq::ok(s))
    s = sparq::reference::sparq_decode(p, cfg, q.data(), cache, lengths.data(), y_sparq.data(),
                                       &trace);
  const auto t2 = std::chrono::steady_clock::now();
  if (!sparq::ok(s)) {
    std::fprintf(stderr, "error: %s\n", sparq::status_string(s));
    return 1;
  }

  std::printf("SparQ attention demo (CPU reference, float64)\n");
  std::printf("  batch %d, query heads %d, KV heads %d (group %d, %s selection), head dim %d\n",
              p.batch, p.num_q_heads, p.num_kv_heads, p.group_size(),
              o.per_query_head ? "per-query-head" : "shared", d);
  std::printf("  lengths %d", lengths[0]);
  for (int b = 1; b < p.batch; ++b)
    std::printf(", %d", lengths[b]);
  std::printf("; seed %llu\n", o.seed);
  std::printf(
      "  compression 1/%g -> r = %d of %d components, k = %d positions, local window %d%s\n",
      o.compression, cfg.r, d, cfg.k, cfg.local_window,
      cfg.reallocation ? "" : ", no reallocation");

  double worst = 0, mean_err = 0;
  const int heads = p.batch * p.num_q_heads;
  for (int i = 0; i < heads; ++i) {
    const double e = rel_l2(&y_sparq[i * d], &y_dense[i * d], d);
    worst = std::max(worst, e);
    mean_err += e / heads;
  }
  std::printf("\nOutput vs dense attention\n");
  std::printf("  relative L2 error, all heads: %.3e\n",
              rel_l2(y_sparq.data(), y_dense.data(), static_cast<int>(out_n)));
  std::printf("  per head: mean %.3e, worst %.3e\n", mean_err, worst);

  std::vector<double> a = trace.alpha;
  std::sort(a.begin(), a.end());
  double amean = 0;
  for (double x : a)
    amean += x / a.size();
  std::printf("\nalpha (approximate score mass covered by the k positions), over %zu heads\n",
              a.size());
  std::printf("  min %.4f, median %.4f, mean %.4f, max %.4f\n", a.front(), a[a.size() / 2], amean,
              a.back());

  const double S = o.seq_len;
  const double ratio = sparq::transfer_ratio(S, d, cfg.r, cfg.k);
  std::printf("\nMemory-transfer model (elements per KV head per token, S = %d)\n", o.seq_len);
  std::printf("  dense %.0f, SparQ %.0f: ratio %.4f\n", sparq::dense_transfers(S, d),
              sparq::sparq_transfers(S, d, cfg.r, cfg.k), ratio);
  std::printf("  theoretical attention speedup (bandwidth bound): %.2fx\n",
              sparq::theoretical_attention_speedup(S, d, cfg.r, cfg.k));
  std::printf(
      "\nCPU reference time: dense %.1f ms, SparQ %.1f ms (reference code, not a benchmark)\n",
      std::chrono::duration<double, std::milli>(t1 - t0).count(),
      std::chrono::duration<double, std::milli>(t2 - t1).count());
  return 0;
}
