// Key sets for the radix top-k on its own (BlockTopK and the cluster-wide select_detail::
// cluster_top_k): built so that the passes stop in each of their ways, with the number of keys
// left in play on either side of kFinishKeys (the finish that ranks the last few directly),
// ties at the threshold among those few, and a threshold of zero. Shared by the GPU test of
// the building blocks and the CPU emulation, which check them against top_indices.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace sparq::test {

struct TopKKeySet {
  std::string name;
  std::vector<uint32_t> keys;
  int count = 0;  // how many to select (1 <= count <= keys.size())
};

/// `n` keys: `above` of them with top bits `hi`, `play` with `mid` (the ones a pass leaves in
/// play, their low bits from `low_values` distinct values), the rest with `lo`, at random
/// positions. `bits`: how many top bits the three prefixes set (8: a first-pass digit; 16: the
/// first two passes' digits).
inline std::vector<uint32_t> layered_keys(std::mt19937& gen, int n, int above, int play,
                                          uint32_t hi, uint32_t mid, uint32_t lo, int bits,
                                          uint32_t low_values) {
  const uint32_t low_mask = bits >= 32 ? 0u : (0xFFFFFFFFu >> bits);
  std::uniform_int_distribution<uint32_t> any(0, 0xFFFFFFFFu);
  std::vector<uint32_t> pool(low_values);
  for (uint32_t& v : pool)
    v = any(gen) & low_mask;
  std::vector<uint32_t> keys(n);
  for (int i = 0; i < n; ++i) {
    const uint32_t top = i < above ? hi : (i < above + play ? mid : lo);
    const uint32_t low = i >= above && i < above + play ? pool[any(gen) % low_values] : any(gen);
    keys[i] = top | (low & low_mask);
  }
  std::shuffle(keys.begin(), keys.end(), gen);
  return keys;
}

/// The key sets, from `seed`.
inline std::vector<TopKKeySet> topk_key_sets(uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<uint32_t> any(0, 0xFFFFFFFFu);
  std::vector<TopKKeySet> sets;
  auto random_keys = [&](int n) {
    std::vector<uint32_t> k(n);
    for (uint32_t& x : k)
      x = any(gen);
    return k;
  };
  // Spread keys: a dozen in play after the first pass (finish there).
  sets.push_back({"distinct_3001", random_keys(3001), 100});
  sets.push_back({"distinct_count1", random_keys(5000), 1});
  // Exactly kFinishKeys (64) in play after the first pass, and one more (a second pass).
  sets.push_back(
      {"in_play_64",
       layered_keys(gen, 2000, 10, 64, 0xF0u << 24, 0x80u << 24, 0x10u << 24, 8, 1u << 20), 30});
  sets.push_back(
      {"in_play_65",
       layered_keys(gen, 2000, 10, 65, 0xF0u << 24, 0x80u << 24, 0x10u << 24, 8, 1u << 20), 30});
  // The 64 in play take five values: the threshold's equal keys are cut part way.
  sets.push_back({"in_play_64_ties",
                  layered_keys(gen, 2003, 10, 64, 0xF0u << 24, 0x80u << 24, 0x10u << 24, 8, 5),
                  40});
  // Every key shares its top byte (no finish after the first pass); 64 share two bytes.
  sets.push_back(
      {"in_play_64_second_pass",
       layered_keys(gen, 5000, 10, 64, 0x40FFu << 16, 0x4099u << 16, 0x4010u << 16, 16, 1u << 12),
       50});
  // Keys that share three bytes and more than 64 in play until the last pass.
  sets.push_back(
      {"in_play_300_two_bytes",
       layered_keys(gen, 3000, 20, 300, 0x4041u << 16, 0x4040u << 16, 0x403Fu << 16, 16, 40), 170});
  // Threshold zero: 58 zero keys in play after the first pass, 3 of them selected.
  {
    std::vector<uint32_t> k(61, 0u);
    k[5] = 7u, k[17] = 0x01000000u, k[60] = 0xFFFFFFFFu;
    sets.push_back({"zeros_finish", k, 6});
  }
  // Threshold zero with too many zeros to finish: every pass, then ties.
  {
    std::vector<uint32_t> k(500, 0u);
    k[1] = 9u, k[250] = 3u, k[499] = 0x80000000u;
    sets.push_back({"zeros_all_passes", k, 10});
  }
  // All equal (ties throughout), all taken, and a digit taken whole (an early stop).
  sets.push_back({"all_equal", std::vector<uint32_t>(1000, 0x12345678u), 300});
  sets.push_back({"count_eq_n", random_keys(777), 777});
  sets.push_back(
      {"whole_digit",
       layered_keys(gen, 1500, 40, 30, 0xF0u << 24, 0x80u << 24, 0x10u << 24, 8, 1u << 20), 70});
  // Few keys: a cluster's later blocks hold none.
  sets.push_back({"tiny_7", random_keys(7), 3});
  return sets;
}

}  // namespace sparq::test
