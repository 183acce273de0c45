#!/usr/bin/env bash
# Builds every CPU-side test (tests/*.cpp, the Llama example's loader, CPU-model and CLI tests
# with the llama2_chat program they drive, and the host-side launch validation and planning
# tests of tests/gpu) under AddressSanitizer and UndefinedBehaviorSanitizer, and runs them.
# Host code only: no GPU needed. Not part of CI (a Debug build of its own, a few minutes on 2
# cores); run it after changing host code.
# With --emu it also runs the kernels' CPU emulation (tests/emu, every mode: `all`) under the
# same sanitizers, built by clang++: a kernel's read or write past a buffer of global or
# dynamic shared memory is reported (static shared memory has no redzones). About 15 more
# minutes; run it after changing device code.
#
#   scripts/sanitize-cpu.sh [--emu]    build into build/asan and run
set -euo pipefail

emu=0
case "${1:-}" in
  --emu) emu=1 ;;
  "") ;;
  *)
    echo "usage: scripts/sanitize-cpu.sh [--emu]" >&2
    exit 2
    ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/cuda/bin"
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# nvcc splits -Xcompiler values at commas, so each sanitizer is named on its own there.
cuda_san="-Xcompiler=-fsanitize=address,-fsanitize=undefined,-fno-omit-frame-pointer"
cuda_san+=",-fno-sanitize-recover=undefined"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSPARQ_BUILD_TESTS=ON -DSPARQ_BUILD_BENCH=OFF -DSPARQ_BUILD_EXAMPLES=ON \
  "-DCMAKE_CXX_FLAGS=$san" "-DCMAKE_CUDA_FLAGS=$cuda_san" \
  "-DCMAKE_EXE_LINKER_FLAGS=$san" >/dev/null

cpu_tests=()
for f in tests/test_*.cpp; do cpu_tests+=("tests/$(basename "$f" .cpp)"); done
llama_tests=(test_llama_loader test_llama_cpu test_llama_cli test_llama_prefill)
# GPU test binaries whose host-side tests (validation, launch planning) run without a GPU.
gpu_host_tests=(test_launch_validation test_launch_planning)
targets=(llama2_chat "${llama_tests[@]}" "${gpu_host_tests[@]}")
for t in "${cpu_tests[@]}"; do targets+=("$(basename "$t")"); done
cmake --build build/asan -j"${SPARQ_JOBS:-2}" --target "${targets[@]}"

# The CUDA runtime maps memory where ASan keeps its shadow gap.
export ASAN_OPTIONS="protect_shadow_gap=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
failed=0
for t in "${cpu_tests[@]}" "${llama_tests[@]/#/examples/llama2/tests/}" \
  "${gpu_host_tests[@]/#/tests/gpu/}"; do
  if ./build/asan/"$t" --gtest_brief=1 >"build/asan/$(basename "$t").log" 2>&1; then
    echo "ok    $t"
  else
    failed=1
    echo "FAIL  $t (build/asan/$(basename "$t").log)"
  fi
done

if ((emu)); then
  clangxx=$(command -v clang++ || true)
  if [[ -z $clangxx ]]; then
    echo "FAIL  emulated_kernels: clang++ not found" >&2
    exit 1
  fi
  emu_dir=build/asan/emu
  tests/emu/prepare_headers.sh include "$emu_dir/include"
  cuda_inc=$(dirname "$(command -v nvcc)")/../include
  "$clangxx" -std=c++20 -O1 -g -w $san -include tests/emu/shim.hpp -Itests/emu/fake \
    -I"$emu_dir/include" -Itests -I"$cuda_inc" tests/emu/emulated_kernels.cpp \
    -o "$emu_dir/emulated_kernels" -L"$cuda_inc/../lib64" -lcudart
  # Fibers switch stacks, which ASan follows only without fake stacks.
  if ASAN_OPTIONS="detect_stack_use_after_return=0:detect_leaks=0:$ASAN_OPTIONS" \
    "$emu_dir/emulated_kernels" all 1 >"$emu_dir/emulated_kernels.log" 2>&1; then
    echo "ok    emulated_kernels all"
  else
    failed=1
    echo "FAIL  emulated_kernels all ($emu_dir/emulated_kernels.log)"
  fi
fi
exit $failed
