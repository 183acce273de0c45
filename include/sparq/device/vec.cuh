// 16-byte vector loads of cache rows, converted to float in registers.
#pragma once

#include <cstdint>
#include <cstring>

#include "sparq/dtype.hpp"

namespace sparq::device {

/// Elements of T in one 16-byte load.
template <typename T>
constexpr int kVec16 = 16 / static_cast<int>(sizeof(T));

/// Converts one raw 16-byte chunk to kVec16<T> floats.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& raw, float* out);

template <>
__device__ __forceinline__ void unpack16<float>(const uint4& raw, float* out) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}

template <>
__device__ __forceinline__ void unpack16<__half>(const uint4& raw, float* out) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

template <>
__device__ __forceinline__ void unpack16<__nv_bfloat16>(const uint4& raw, float* out) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

/// The 32-bit words p[s0..s0+4) that lie below `end`, as one 16-byte read where all four do
/// (p 16-byte aligned, s0 a multiple of 4); words at or past `end` are not read and come back
/// zero. For loops of four consecutive positions per thread over keys or logits.
template <typename W>
__device__ __forceinline__ void load4_below(const W* p, int s0, int end, W (&out)[4]) {
  static_assert(sizeof(W) == 4, "32-bit words");
  if (s0 + 4 <= end) {
    const uint4 r = *reinterpret_cast<const uint4*>(p + s0);
    const uint32_t u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
      memcpy(&out[i], &u[i], sizeof(W));
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      out[i] = s0 + i < end ? p[s0 + i] : W{};
  }
}

/// Writes v[i] to p[s0 + i] for each s0 + i below `end` (one 16-byte write where all four
/// are; the alignment of load4_below).
template <typename W>
__device__ __forceinline__ void store4_below(W* p, int s0, int end, const W (&v)[4]) {
  static_assert(sizeof(W) == 4, "32-bit words");
  if (s0 + 4 <= end) {
    uint32_t u[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      memcpy(&u[i], &v[i], sizeof(W));
    *reinterpret_cast<uint4*>(p + s0) = make_uint4(u[0], u[1], u[2], u[3]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (s0 + i < end) p[s0 + i] = v[i];
  }
}

/// 16-byte load of data read once per step (streamed past L1).
__device__ __forceinline__ uint4 load16_stream(const void* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

}  // namespace sparq::device
