// The stores of a decode step's append, one element at a time: what kv_append_kernel does for
// one token, callable from another kernel's epilogue (a projection that produces K and V can
// append them itself and save the append's launch). K and V halves are separate because the
// element of K and the element of V at one (head, dim) often come from different threads.
#pragma once

#include "sparq/dtype.hpp"
#include "sparq/problem.hpp"

namespace sparq::device {

/// Element j of the new K row of (sequence b, KV head h) at position pos: the row-major and
/// the transposed copy. The caller checks 0 <= pos < capacity.
template <typename T>
__device__ __forceinline__ void append_k_element(const KVCacheView<T>& c, int b, int h, int pos,
                                                 int j, T kj) {
  c.k_row(b, h, pos)[j] = kj;
  c.kt_row(b, h, j)[pos] = kj;
}

/// Element j of the new V row at position pos, and the running V sum (if the cache has one):
/// `sum_before` is vsum[j] as loaded before (so the caller may issue that load early); the sum
/// becomes sum_before + v in float32, the order the reference adds in.
template <typename T>
__device__ __forceinline__ void append_v_element(const KVCacheView<T>& c, int b, int h, int pos,
                                                 int j, T vj, float sum_before) {
  c.v_row(b, h, pos)[j] = vj;
  if (c.vsum != nullptr) c.vsum_row(b, h)[j] = sum_before + to_float(vj);
}

}  // namespace sparq::device
