// Element types (float, half, bfloat16) and float conversions usable on host and device.
// The CUDA types are used directly so host code, the CPU reference and kernels share them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "sparq/macros.hpp"

namespace sparq {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

inline int dtype_size(DType t) {
  return t == DType::kFloat32 ? 4 : 2;
}

template <typename T>
struct ElementTraits;  // only float, __half and __nv_bfloat16 are element types

template <>
struct ElementTraits<float> {
  static constexpr DType kDType = DType::kFloat32;
  SPARQ_HOST_DEVICE static float to_float(float x) { return x; }
  SPARQ_HOST_DEVICE static float from_float(float x) { return x; }
};

template <>
struct ElementTraits<__half> {
  static constexpr DType kDType = DType::kFloat16;
  SPARQ_HOST_DEVICE static float to_float(__half x) { return __half2float(x); }
  SPARQ_HOST_DEVICE static __half from_float(float x) { return __float2half_rn(x); }
};

template <>
struct ElementTraits<__nv_bfloat16> {
  static constexpr DType kDType = DType::kBFloat16;
  SPARQ_HOST_DEVICE static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  SPARQ_HOST_DEVICE static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};

template <typename T>
SPARQ_HOST_DEVICE SPARQ_FORCEINLINE float to_float(T x) {
  return ElementTraits<T>::to_float(x);
}

template <typename T>
SPARQ_HOST_DEVICE SPARQ_FORCEINLINE T from_float(float x) {
  return ElementTraits<T>::from_float(x);
}

/// Rounds a float through T and back: what a value looks like once stored as T.
template <typename T>
SPARQ_HOST_DEVICE SPARQ_FORCEINLINE float round_through(float x) {
  return to_float(from_float<T>(x));
}

}  // namespace sparq
