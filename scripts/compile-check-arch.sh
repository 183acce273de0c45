#!/usr/bin/env bash
# Compiles the whole GPU API (every kernel the launchers can reach, all element types and head
# dims) for other CUDA architectures than the build's, without running anything: the headers
# must build wherever a user's project does (sm_80 has no thread-block clusters; its routes
# avoid them). CI builds sm_90 only, to stay fast.
#
#   scripts/compile-check-arch.sh [ARCH ...]      (default: 80 90)
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
tu=$(mktemp --suffix=.cu)
trap 'rm -f "$tu" "$tu.o"' EXIT
cat > "$tu" <<'CU'
#include <sparq/cuda.cuh>
template <typename T>
void all(void* ws, size_t n) {
  sparq::SparqDecodeParams<T> s;
  sparq::DenseDecodeParams<T> d;
  sparq::KVAppendParams<T> k;
  (void)sparq::sparq_decode(s, ws, n, nullptr);
  (void)sparq::dense_decode(d, ws, n, nullptr);
  (void)sparq::decode_attention(sparq::AttentionMode::kAuto, s, ws, n, nullptr);
  (void)sparq::kv_append(k, nullptr);
}
template void all<float>(void*, size_t);
template void all<__half>(void*, size_t);
template void all<__nv_bfloat16>(void*, size_t);
CU
for arch in "${@:-80 90}"; do
  for a in $arch; do
    echo "sm_$a ..."
    "$nvcc" -std=c++17 -arch="sm_$a" -Iinclude -c "$tu" -o "$tu.o"
  done
done
echo "ok"
