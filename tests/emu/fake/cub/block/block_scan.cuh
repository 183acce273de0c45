// Emulated cub::BlockScan (host fibers): values gathered in TempStorage, thread 0 scans.
#pragma once
namespace cub {
template <typename T, int kThreads>
class BlockScan {
 public:
  struct TempStorage {
    T v[kThreads];
    T total;
  };
  explicit BlockScan(TempStorage& ts) : ts_(ts) {}
  void ExclusiveSum(T in, T& out) {
    T agg;
    ExclusiveSum(in, out, agg);
  }
  void ExclusiveSum(T in, T& out, T& aggregate) {
    ts_.v[threadIdx.x] = in;
    __syncthreads();
    if (threadIdx.x == 0) {
      T run = T(0);
      for (int i = 0; i < kThreads; ++i) {
        T x = ts_.v[i];
        ts_.v[i] = run;
        run = run + x;
      }
      ts_.total = run;
    }
    __syncthreads();
    out = ts_.v[threadIdx.x];
    aggregate = ts_.total;
  }

 private:
  TempStorage& ts_;
};
}  // namespace cub
