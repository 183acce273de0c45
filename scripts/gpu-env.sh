# Sourced by scripts/gpu-check.sh and scripts/gpu-quick.sh (from the repository root, with
# $build and $summary set): what the GPU test binaries and the Llama example need from the
# environment, and row NAME TEXT, one line of the summary table (printed and appended).
export SPARQ_TEST_DATA_DIR="$PWD/tests/data"
export LLAMA_TEST_DATA="$PWD/tests/data/tiny_llama"
case "$build" in /*) build_abs=$build ;; *) build_abs=$PWD/$build ;; esac  # --build-dir may be absolute
export LD_LIBRARY_PATH="$build_abs/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LLAMA2_CHAT_BIN="$build_abs/examples/llama2/llama2_chat"
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$summary"; }
