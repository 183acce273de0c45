// Helpers for GPU tests: skip without a device, RAII device buffers, poisoning (error metrics:
// support/compare.hpp, included).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "sparq/cuda.cuh"
#include "support/compare.hpp"
#include "support/host_cache.hpp"

namespace sparq::test {

/// Empty when a CUDA device is usable; otherwise why not.
inline std::string gpu_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device (") + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "no CUDA device";
  return "";
}

#define SPARQ_REQUIRE_GPU()                                          \
  do {                                                               \
    const std::string why = ::sparq::test::gpu_unavailable_reason(); \
    if (!why.empty()) GTEST_SKIP() << "GPU test skipped: " << why;   \
  } while (0)

#define CUDA_ASSERT(expr)                                                  \
  do {                                                                     \
    const cudaError_t e_ = (expr);                                         \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_); \
  } while (0)

#define SPARQ_ASSERT_OK(expr)                                                                \
  do {                                                                                       \
    const ::sparq::Status s_ = (expr);                                                       \
    ASSERT_EQ(s_, ::sparq::Status::kSuccess) << #expr << ": " << ::sparq::status_string(s_); \
  } while (0)

/// Device memory of n elements of U, freed on scope exit.
template <typename U>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(size_t n) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = n;
    if (n > 0 && cudaMalloc(&ptr_, n * sizeof(U)) != cudaSuccess) {
      ptr_ = nullptr;
      n_ = 0;
      ADD_FAILURE() << "cudaMalloc of " << n * sizeof(U) << " bytes failed";
    }
  }
  explicit DeviceBuffer(const std::vector<U>& host) : DeviceBuffer(host.size()) { upload(host); }
  void upload(const std::vector<U>& host) {
    if (ptr_ && !host.empty())
      EXPECT_EQ(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(U), cudaMemcpyHostToDevice),
                cudaSuccess);
  }
  std::vector<U> download() const {
    std::vector<U> host(n_);
    if (ptr_ && n_)
      EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(U), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  /// Fills every byte with 0xFF: NaN in float, half and bfloat16; -1 in integers.
  void poison() {
    if (ptr_) EXPECT_EQ(cudaMemset(ptr_, 0xFF, n_ * sizeof(U)), cudaSuccess);
  }
  U* get() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  U* ptr_ = nullptr;
  size_t n_ = 0;
};

/// A device copy of a HostKVCache, with a view in the same packed layout.
template <typename T>
struct DeviceKVCache {
  DecodeProblem problem;
  DeviceBuffer<T> k, kt, v;
  DeviceBuffer<float> vsum;
  explicit DeviceKVCache(const HostKVCache<T>& h)
      : problem(h.problem), k(h.k), kt(h.kt), v(h.v), vsum(h.vsum) {}
  KVCacheView<T> view() const {
    return make_packed_cache_view<T>(problem, k.get(), kt.get(), v.get(), vsum.get());
  }
};

}  // namespace sparq::test

namespace sparq::test {

/// Copies n elements from a raw device pointer (e.g. into a workspace) to the host.
template <typename U>
std::vector<U> download_raw(const U* device_ptr, size_t n) {
  std::vector<U> host(n);
  if (n)
    EXPECT_EQ(cudaMemcpy(host.data(), device_ptr, n * sizeof(U), cudaMemcpyDeviceToHost),
              cudaSuccess);
  return host;
}

}  // namespace sparq::test
