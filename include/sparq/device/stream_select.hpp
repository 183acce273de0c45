// The arithmetic of the streaming top-k selection (select_stream_kernel), shared by the kernel
// and the CPU tests of its algorithm. The kernel never stores all ranking keys: it streams
// them from the logits, once to count them in 4096 bins of their top 12 bits, and once more to
// write the positions of higher bins and keep those of the k-th key's bin as candidates; three
// radix digits (8, 8 and 4 bits) then finish the select among the candidates alone, and a merge
// puts the two position lists back into position order.
#pragma once

#include <cstdint>

#include "sparq/macros.hpp"

namespace sparq::device {

constexpr int kStreamBinBits = 12;
constexpr int kStreamBins = 1 << kStreamBinBits;
constexpr uint32_t kStreamBinMask = ~((1u << (32 - kStreamBinBits)) - 1u);  // 0xFFF00000

/// The first digit of a ranking key: its top 12 bits (sign, exponent, 3 mantissa bits of the
/// score), so that a bin spans at most 1/8 of an octave of scores.
SPARQ_HOST_DEVICE inline int stream_bin(uint32_t key) {
  return static_cast<int>(key >> (32 - kStreamBinBits));
}

/// A radix digit: `bits` bits of the key from bit `shift` up.
struct RadixDigit {
  int shift;
  int bits;
};

/// The digits after the first: bits 19-12, 11-4 and 3-0.
constexpr int kStreamRefineDigits = 3;
SPARQ_HOST_DEVICE inline RadixDigit stream_refine_digit(int i) {
  return i == 0 ? RadixDigit{12, 8} : (i == 1 ? RadixDigit{4, 8} : RadixDigit{0, 4});
}

SPARQ_HOST_DEVICE inline unsigned digit_of(uint32_t key, RadixDigit d) {
  return (key >> d.shift) & ((1u << d.bits) - 1u);
}

/// How many of sorted[0..n) (increasing) are below v: where v goes when two sorted lists merge.
SPARQ_HOST_DEVICE inline int count_below(const int* sorted, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sorted[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace sparq::device
