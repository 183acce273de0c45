// Speedup sweep: S in {1k..128k} x batch {1, 8, 32, 64} x (Hq, Hkv) in {(32, 32), (32, 8)},
// d = 128, bf16, compression 1/2, 1/4, 1/8, 1/16. Each entry reports dense and SparQ time,
// the speedup, the theoretical attention speedup (dense / SparQ transfers) and each kernel's
// share of the measured copy bandwidth, as counters in the JSON. Shapes that do not fit in
// device memory are not registered.
#include <map>
#include <string>
#include <tuple>

#include "bench/bench_support.cuh"

namespace sb = sparq::bench;
using T = __nv_bfloat16;

namespace {

constexpr int kDim = 128;

int reps_for(double bytes) {
  return bytes > 4e9 ? 5 : (bytes > 5e8 ? 11 : 30);
}

/// Dense time per (Hq, Hkv, B, S), shared by the four compressions.
double dense_ms(const sb::DecodeSetup<T>& s) {
  static std::map<std::tuple<int, int, int, int>, double> cache;
  const auto key = std::make_tuple(s.p.num_q_heads, s.p.num_kv_heads, s.p.batch, s.p.capacity);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const double ms = sb::median_ms(
      [&](int i) {
        sb::check_status(
            sparq::dense_decode(s.dense_params(i), s.workspace, s.workspace_bytes, nullptr),
            "dense_decode");
      },
      reps_for(s.dense_bytes()));
  cache[key] = ms;
  return ms;
}

void run_point(benchmark::State& state, int hq, int hkv, int batch, int seq, double compression) {
  sparq::SparqConfig cfg;
  sb::check_status(sparq::config_from_compression(kDim, seq, compression, &cfg), "config");
  sb::DecodeSetup<T> s(batch, hq, hkv, kDim, seq, cfg);
  if (!s.fits) return state.SkipWithError("does not fit in device memory");
  for (auto _ : state) {
    const double dense = dense_ms(s);
    const double sparse = sb::median_ms(
        [&](int i) {
          sb::check_status(
              sparq::sparq_decode(s.sparq_params(i), s.workspace, s.workspace_bytes, nullptr),
              "sparq_decode");
        },
        reps_for(s.sparq_bytes()));
    state.SetIterationTime(sparse * 1e-3);
    const double copy_bw = sb::copy_bandwidth_bytes_per_s();
    state.counters["dense_us"] = dense * 1e3;
    state.counters["sparq_us"] = sparse * 1e3;
    state.counters["speedup"] = dense / sparse;
    state.counters["theory"] = sparq::theoretical_attention_speedup(seq, kDim, cfg.r, cfg.k);
    state.counters["dense_pct_bw"] = 100.0 * s.dense_bytes() / (dense * 1e-3) / copy_bw;
    state.counters["sparq_pct_bw"] = 100.0 * s.sparq_bytes() / (sparse * 1e-3) / copy_bw;
    state.counters["r"] = cfg.r;
    state.counters["k"] = cfg.k;
    // 0: fused, a cluster per unit; 1: fused, a block per unit; 2: three launches.
    state.counters["route"] =
        static_cast<int>(sparq::kernels::SparqPlan<T>(s.p, cfg, nullptr).route);
    const bool auto_sparq = sparq::resolve_attention_mode(sparq::AttentionMode::kAuto, s.p, cfg) ==
                            sparq::AttentionMode::kSparq;
    state.counters["auto_is_sparq"] = auto_sparq ? 1 : 0;
    state.counters["auto_vs_dense"] = dense / (auto_sparq ? sparse : dense);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const size_t budget = sb::device_budget_bytes();
  for (auto heads : {std::make_pair(32, 32), std::make_pair(32, 8)})
    for (int batch : {1, 8, 32, 64})
      for (int seq : {1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072})
        for (double c : {2.0, 4.0, 8.0, 16.0}) {
          sparq::DecodeProblem p;
          p.batch = batch;
          p.num_q_heads = heads.first;
          p.num_kv_heads = heads.second;
          p.head_dim = kDim;
          p.capacity = seq;
          if (sb::DecodeSetup<T>::cache_bytes(p) * 1.1 > budget) continue;
          const std::string name = "sweep/Hq" + std::to_string(heads.first) + "_Hkv" +
                                   std::to_string(heads.second) + "/B" + std::to_string(batch) +
                                   "/S" + std::to_string(seq) + "/c" + std::to_string(int(c));
          benchmark::RegisterBenchmark(name.c_str(),
                                       [=](benchmark::State& st) {
                                         run_point(st, heads.first, heads.second, batch, seq, c);
                                       })
              ->UseManualTime()
              ->Iterations(1)
              ->Unit(benchmark::kMicrosecond);
        }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
