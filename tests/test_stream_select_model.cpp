// The algorithm of the streaming selection (select_stream_kernel), step for step on the CPU
// with the kernel's own arithmetic (sparq/device/stream_select.hpp): first-digit bins, the
// k-th key's bin, candidates, the three refine digits, the ordered compaction with its tie
// budget, and the merge of the two sorted position lists, against a plain sort. Covers both
// branches (candidates and higher-bin positions kept, or too many) on random, tied, clustered
// and window-forced keys.
// The CUDA plumbing itself (block scans, barriers) is tested on the GPU
// (tests/gpu/test_gpu_stream_select.cu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "sparq/device/stream_select.hpp"
#include "sparq/device/ordered_keys.hpp"

namespace {

using sparq::device::count_below;
using sparq::device::digit_of;
using sparq::device::kStreamBins;
using sparq::device::RadixDigit;
using sparq::device::stream_bin;
using sparq::device::stream_refine_digit;

/// The top `keff` positions (larger key first, equal keys lower position first), ascending.
std::vector<int> brute_force(const std::vector<uint32_t>& key, int keff) {
  std::vector<int> idx(key.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return key[a] > key[b]; });
  idx.resize(keff);
  std::sort(idx.begin(), idx.end());
  return idx;
}

/// The digit whose count, from the top down, reaches `remaining`; *above: keys in higher ones.
int choose_from_top(const std::vector<unsigned>& hist, unsigned remaining, unsigned* above) {
  unsigned running = 0;
  for (int d = static_cast<int>(hist.size()) - 1; d >= 0; --d) {
    if (running + hist[d] >= remaining) {
      *above = running;
      return d;
    }
    running += hist[d];
  }
  ADD_FAILURE() << "fewer keys than remaining";
  return 0;
}

struct Threshold {
  uint32_t prefix, mask;
  unsigned remaining;
};

/// The three refine digits over `keys` (those matching the prefix count).
void refine(const std::vector<uint32_t>& keys, Threshold& t) {
  for (int i = 0; i < sparq::device::kStreamRefineDigits; ++i) {
    const RadixDigit d = stream_refine_digit(i);
    std::vector<unsigned> hist(256, 0);
    for (uint32_t k : keys)
      if ((k & t.mask) == t.prefix) ++hist[digit_of(k, d)];
    unsigned above = 0;
    const int digit = choose_from_top(hist, t.remaining, &above);
    ASSERT_LT(digit, 1 << d.bits);
    t.remaining -= above;
    t.prefix |= static_cast<uint32_t>(digit) << d.shift;
    t.mask |= ((1u << d.bits) - 1u) << d.shift;
  }
  EXPECT_EQ(t.mask, 0xFFFFFFFFu) << "the digits cover every bit once";
}

/// Keys > threshold, and the first need_equal keys == threshold, as their positions.
std::vector<int> compact(const std::vector<uint32_t>& key, const std::vector<int>& pos,
                         uint32_t threshold, unsigned need_equal) {
  std::vector<int> out;
  unsigned equal_seen = 0;
  for (size_t i = 0; i < key.size(); ++i)
    if (key[i] > threshold || (key[i] == threshold && equal_seen++ < need_equal))
      out.push_back(pos[i]);
  return out;
}

/// The kernel's selection of the top keff of `key` with room for `capacity` candidates and
/// `above_capacity` positions of higher bins.
std::vector<int> stream_select(const std::vector<uint32_t>& key, int keff, int capacity,
                               int above_capacity, bool* kept_candidates) {
  const int len = static_cast<int>(key.size());
  std::vector<unsigned> bins(kStreamBins, 0);
  for (uint32_t k : key)
    ++bins[stream_bin(k)];
  unsigned above = 0;
  const int bin = choose_from_top(bins, static_cast<unsigned>(keff), &above);
  Threshold t{static_cast<uint32_t>(bin) << (32 - sparq::device::kStreamBinBits),
              sparq::device::kStreamBinMask, static_cast<unsigned>(keff) - above};
  std::vector<int> all(len);
  std::iota(all.begin(), all.end(), 0);
  *kept_candidates =
      static_cast<int>(bins[bin]) <= capacity && static_cast<int>(above) <= above_capacity;
  if (!*kept_candidates) {
    refine(key, t);
    return compact(key, all, t.prefix, t.remaining);
  }
  std::vector<int> higher, cand_pos;
  std::vector<uint32_t> cand_key;
  for (int s = 0; s < len; ++s) {
    if (stream_bin(key[s]) > bin) higher.push_back(s);
    if (stream_bin(key[s]) == bin) {
      cand_key.push_back(key[s]);
      cand_pos.push_back(s);
    }
  }
  EXPECT_EQ(higher.size(), above);
  refine(cand_key, t);
  const std::vector<int> chosen = compact(cand_key, cand_pos, t.prefix, t.remaining);
  const int a = static_cast<int>(higher.size()), m = static_cast<int>(chosen.size());
  EXPECT_EQ(a + m, keff);
  // The kernel's merge: each element's place is its index plus the other list's count below.
  std::vector<int> out(keff, -1);
  for (int i = 0; i < a; ++i)
    out[i + count_below(chosen.data(), m, higher[i])] = higher[i];
  for (int j = 0; j < m; ++j)
    out[j + count_below(higher.data(), a, chosen[j])] = chosen[j];
  return out;
}

void expect_matches(const std::vector<uint32_t>& key, int keff, const char* what) {
  for (int capacity : {4096, 4, 0})
    for (int above_capacity : {8192, 3}) {
      bool kept = false;
      const std::vector<int> got = stream_select(key, keff, capacity, above_capacity, &kept);
      EXPECT_EQ(got, brute_force(key, keff))
          << what << ", n " << key.size() << ", k " << keff << ", capacity " << capacity
          << ", above capacity " << above_capacity
          << (kept ? " (candidates kept)" : " (refine passes)");
    }
}

/// Ranking keys of scores, with the last `window` positions forced in.
std::vector<uint32_t> keys_of(const std::vector<float>& s, int window) {
  std::vector<uint32_t> key(s.size());
  for (size_t i = 0; i < s.size(); ++i)
    key[i] =
        i + window >= s.size() ? sparq::device::kForcedKey : sparq::device::float_to_ordered(s[i]);
  return key;
}

TEST(StreamSelectModel, DigitsSplitTheKeyBelowTheFirstBin) {
  int next = 32 - sparq::device::kStreamBinBits;
  for (int i = 0; i < sparq::device::kStreamRefineDigits; ++i) {
    const RadixDigit d = stream_refine_digit(i);
    EXPECT_EQ(d.shift + d.bits, next) << "digit " << i;
    EXPECT_LE(d.bits, 8) << "digits use 256-bin histograms";
    next = d.shift;
  }
  EXPECT_EQ(next, 0);
  EXPECT_EQ(stream_bin(0xFFFFFFFFu), kStreamBins - 1);
  EXPECT_EQ(stream_bin(0x00100000u), 1);
}

TEST(StreamSelectModel, CountBelowIsTheMergeRank) {
  const std::vector<int> v{2, 5, 5, 9};
  EXPECT_EQ(count_below(v.data(), 4, 0), 0);
  EXPECT_EQ(count_below(v.data(), 4, 5), 1);
  EXPECT_EQ(count_below(v.data(), 4, 6), 3);
  EXPECT_EQ(count_below(v.data(), 4, 10), 4);
  EXPECT_EQ(count_below(v.data(), 0, 3), 0);
}

TEST(StreamSelectModel, SoftmaxLikeScores) {
  std::mt19937 rng(7);
  for (int n : {1, 2, 17, 1000, 4096, 20000}) {
    std::normal_distribution<float> logit(0.f, 2.f);
    std::vector<float> s(n);
    for (float& x : s)
      x = std::exp(logit(rng)) / n;
    for (int keff : {1, n / 16 + 1, n / 2 + 1, n})
      if (keff <= n) expect_matches(keys_of(s, 0), keff, "s-hat");
    if (n > 40) expect_matches(keys_of(s, 16), n / 8 + 16, "s-hat with a window of 16");
  }
}

TEST(StreamSelectModel, TiesAndNarrowRanges) {
  std::mt19937 rng(11);
  const int n = 9000;
  std::vector<float> equal(n, 1.f / n);
  expect_matches(keys_of(equal, 0), 700, "all equal");
  expect_matches(keys_of(equal, 8), 700, "all equal, window 8");
  std::uniform_int_distribution<int> few(0, 3);
  std::vector<float> four(n);
  for (float& x : four)
    x = 0.25f + 0.01f * few(rng);
  expect_matches(keys_of(four, 0), 3000, "four values");
  // Scores within one first-digit bin: only the refine digits separate them.
  std::uniform_real_distribution<float> narrow(0.5f, 0.5f + 1.f / 64);
  std::vector<float> close(n);
  for (float& x : close)
    x = narrow(rng);
  expect_matches(keys_of(close, 0), 1234, "one bin");
}

TEST(StreamSelectModel, ArbitraryKeys) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any;
  for (int n : {5, 333, 5000}) {
    std::vector<uint32_t> key(n);
    for (uint32_t& k : key)
      k = any(rng);
    expect_matches(key, n / 3 + 1, "uniform 32-bit keys");
    for (uint32_t& k : key)
      k &= 0xFFF0000Fu;  // equal first digits and bits 19-4: ties in the last digit
    expect_matches(key, n / 3 + 1, "keys differing in the first and last digits");
  }
}

}  // namespace
