// Uses the installed headers: the compression rule, the transfer model and the CPU reference.
#include <cmath>
#include <cstdio>
#include <vector>

#include <sparq/sparq.hpp>

int main() {
  sparq::SparqConfig cfg;
  if (!sparq::ok(sparq::config_from_compression(128, 4096, 8.0, &cfg))) return 1;
  if (cfg.r != 16 || cfg.k != 256) {
    std::printf("unexpected config r=%d k=%d\n", cfg.r, cfg.k);
    return 1;
  }
  const double ratio = sparq::transfer_ratio(4096, 128, cfg.r, cfg.k);
  if (std::fabs(ratio - 0.125) > 0.00125) return 1;

  // A tiny reference decode: one sequence, one head, constant V rows -> output equals them.
  sparq::DecodeProblem p;
  p.head_dim = 64;
  p.capacity = 8;
  const sparq::KVCacheSizes sz = sparq::packed_cache_sizes(p);
  std::vector<float> k(sz.k, 0.5f), kt(sz.kt, 0.5f), v(sz.v, 2.0f), vsum(sz.vsum, 0.0f);
  const auto view = sparq::make_packed_cache_view(p, k.data(), kt.data(), v.data(), vsum.data());
  std::vector<float> q(64, 1.0f);
  std::vector<double> y(64);
  const int len = 8;
  sparq::SparqConfig small;
  small.r = 8;
  small.k = 4;
  if (!sparq::ok(sparq::reference::sparq_decode(p, small, q.data(), view, &len, y.data())))
    return 1;
  for (double x : y)
    if (std::fabs(x - 2.0) > 1e-12) return 1;
  std::printf("sparq consumer ok: version %d.%d.%d, r=%d k=%d transfer ratio %.4f\n",
              SPARQ_VERSION_MAJOR, SPARQ_VERSION_MINOR, SPARQ_VERSION_PATCH, cfg.r, cfg.k, ratio);
  return 0;
}
