#!/usr/bin/env bash
# Fetches cuobjdump and nvdisasm (NVIDIA's wheels on PyPI; the CUDA toolkit here ships
# without them) into DIR/bin (default build/tools/bin), for scripts/sass_loads.py and the
# ctest check tests/sass/check_loads_in_flight.py. Does nothing if they are already there.
#
#   scripts/get-sass-tools.sh [DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${1:-build/tools}"
if [[ -x $dir/bin/cuobjdump && -x $dir/bin/nvdisasm ]]; then exit 0; fi
mkdir -p "$dir/wheels" "$dir/bin"
python3 -m pip download --quiet --no-deps --dest "$dir/wheels" \
  "nvidia-cuda-cuobjdump==13.5.37" "nvidia-cuda-nvdisasm==13.5.37"
for whl in "$dir"/wheels/*.whl; do
  python3 -m zipfile -e "$whl" "$dir/unpacked"
done
for tool in cuobjdump nvdisasm; do
  cp "$(find "$dir/unpacked" -name "$tool" -type f | head -1)" "$dir/bin/$tool"
  chmod +x "$dir/bin/$tool"
done
echo "cuobjdump and nvdisasm in $dir/bin"
