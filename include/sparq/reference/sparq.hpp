// CPU reference of SparQ decode attention, steps 1-7 of the paper's Algorithm 1, with the local
// window, the reallocation option and both GQA modes. float64 throughout; v-bar is the mean of
// the sequence's V rows computed here (not read from the running sum).
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "sparq/config.hpp"
#include "sparq/reference/attention.hpp"
#include "sparq/reference/topk.hpp"
#include "sparq/selection_units.hpp"

namespace sparq::reference {

/// Intermediate values, for tests of the individual steps. Units are indexed b * per_batch + u;
/// query heads b * Hq + h.
struct SparqTrace {
  std::vector<std::vector<int>> components;      ///< i1 per unit, selection order
  std::vector<std::vector<int>> positions;       ///< i2 per unit, selection order
  std::vector<std::vector<double>> unit_scores;  ///< ranking key per unit (sum of s-hat), [len]
  std::vector<std::vector<double>> approx;       ///< s-hat per query head, [len]
  std::vector<double> tau;                       ///< per query head
  std::vector<double> alpha;                     ///< per query head
};

/// q: [B, Hq, d]; lengths: host [B]; out: [B, Hq, d] float64; trace optional.
/// `positions`, when given, replaces step 4's selection per unit (tests use it to score a
/// kernel's output on the kernel's own choice where float rounding decided a near tie).
template <typename T>
Status sparq_decode(const DecodeProblem& p, const SparqConfig& cfg, const T* q,
                    const KVCacheView<T>& cache, const int* lengths, double* out,
                    SparqTrace* trace = nullptr,
                    const std::vector<std::vector<int>>* positions = nullptr) {
  if (Status s = validate_problem(p); !ok(s)) return s;
  if (Status s = validate_config(cfg, p.head_dim); !ok(s)) return s;
  if (q == nullptr || out == nullptr || cache.k == nullptr || cache.kt == nullptr ||
      cache.v == nullptr)
    return Status::kNullPointer;
  if (Status s = validate_lengths(p, lengths); !ok(s)) return s;

  const int d = p.head_dim;
  const SelectionUnits units = selection_units(p, cfg.gqa);
  const int total_units = p.batch * units.per_batch;
  if (trace) {
    *trace = SparqTrace{};
    trace->components.resize(total_units);
    trace->positions.resize(total_units);
    trace->unit_scores.resize(total_units);
    trace->approx.resize(static_cast<size_t>(p.batch) * p.num_q_heads);
    trace->tau.resize(static_cast<size_t>(p.batch) * p.num_q_heads);
    trace->alpha.resize(static_cast<size_t>(p.batch) * p.num_q_heads);
  }

  for (int b = 0; b < p.batch; ++b) {
    const int len = lengths[b];
    for (int u = 0; u < units.per_batch; ++u) {
      const int kvh = units.kv_head(u), h0 = units.first_q_head(u), nh = units.heads_per_unit;
      std::vector<std::vector<double>> qs(nh);
      for (int i = 0; i < nh; ++i)
        qs[i] = load_query(p, q, b, h0 + i);

      // Step 1: top-r of |q| (summed over the unit's heads).
      std::vector<double> absq(d, 0.0);
      for (int i = 0; i < nh; ++i)
        for (int j = 0; j < d; ++j)
          absq[j] += std::fabs(qs[i][j]);
      const std::vector<int> i1 = top_indices(absq, cfg.r);

      // Steps 2-3: per-head temperature and approximate scores from the gathered components.
      std::vector<double> key(len, 0.0);
      std::vector<std::vector<double>> shat(nh, std::vector<double>(len));
      std::vector<double> taus(nh);
      for (int i = 0; i < nh; ++i) {
        double l1_sel = 0.0, l1_all = 0.0;
        for (int j = 0; j < d; ++j)
          l1_all += std::fabs(qs[i][j]);
        for (int j : i1)
          l1_sel += std::fabs(qs[i][j]);
        taus[i] = temperature(d, l1_sel, l1_all);
        double mx = -std::numeric_limits<double>::infinity();
        for (int s = 0; s < len; ++s) {
          double dot = 0.0;
          for (int j : i1)
            dot += qs[i][j] * static_cast<double>(to_float(cache.kt_row(b, kvh, j)[s]));
          shat[i][s] = dot / taus[i];
          mx = std::max(mx, shat[i][s]);
        }
        double z = 0.0;
        for (int s = 0; s < len; ++s)
          z += (shat[i][s] = std::exp(shat[i][s] - mx));
        for (int s = 0; s < len; ++s) {
          shat[i][s] /= z;
          key[s] += shat[i][s];
        }
      }

      // Step 4: top-k positions; the last l positions are always kept (ranked first).
      const int keff = effective_k(cfg.k, len), leff = effective_window(cfg.local_window, len);
      std::vector<double> ranking = key;
      for (int s = len - leff; s < len; ++s)
        ranking[s] += 2.0 * nh + 1.0;  // above any sum
      const std::vector<int> i2 = positions
                                      ? (*positions)[static_cast<size_t>(b) * units.per_batch + u]
                                      : top_indices(ranking, keff);

      // Steps 5-7 per query head.
      std::vector<double> vbar(d, 0.0);
      for (int s = 0; s < len; ++s)
        for (int j = 0; j < d; ++j)
          vbar[j] += to_float(cache.v_row(b, kvh, s)[j]);
      for (double& x : vbar)
        x /= len;
      for (int i = 0; i < nh; ++i) {
        double alpha = 0.0;
        for (int s : i2)
          alpha += shat[i][s];
        if (!cfg.reallocation) alpha = 1.0;
        const std::vector<double> y = attend_rows(cache, b, kvh, d, qs[i], i2);
        double* dst = out + (static_cast<int64_t>(b) * p.num_q_heads + h0 + i) * d;
        for (int j = 0; j < d; ++j)
          dst[j] = alpha * y[j] + (1.0 - alpha) * vbar[j];
        if (trace) {
          const size_t hq = static_cast<size_t>(b) * p.num_q_heads + h0 + i;
          trace->approx[hq] = shat[i];
          trace->tau[hq] = taus[i];
          double a = 0.0;
          for (int s : i2)
            a += shat[i][s];
          trace->alpha[hq] = a;
        }
      }
      if (trace) {
        const size_t un = static_cast<size_t>(b) * units.per_batch + u;
        trace->components[un] = i1;
        trace->positions[un] = i2;
        trace->unit_scores[un] = key;
      }
    }
  }
  return Status::kSuccess;
}

}  // namespace sparq::reference
