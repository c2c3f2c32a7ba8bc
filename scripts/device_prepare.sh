#!/usr/bin/env bash
# Prepares, on this machine, everything the GPU benchmark needs on the device machine (which has
# no network): the stripped release binary and a copy of the cuMF_SGD peer in .device/, and the
# Vulkan loader packages in .gl/ (both git-ignored). Then, with the device tool, two calls (see
# scripts/gpu_bench.sh), each returning what it wrote under $OUT:
#   run(command="bash scripts/gpu_bench.sh 1", carry=[".gl", ".device"], timeout_s=360)
#   run(command="bash scripts/gpu_bench.sh 2", carry=[".gl", ".device"], timeout_s=300)
# usage: scripts/device_prepare.sh [PEERS_DIR]   (default ../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${1:-../shared/peers}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for d in /.gl/ /.device/; do grep -qx "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
cargo build --release
rm -rf .device && mkdir -p .device
strip -o .device/gpumf target/release/gpumf 2>/dev/null || cp target/release/gpumf .device/gpumf
if [ -d "$peers/cumf_sgd" ]; then
    cp -r "$peers/cumf_sgd" .device/cumf_sgd
else
    echo "note: $peers/cumf_sgd not found; the benchmark will run gpumf alone" >&2
fi
if ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .device .gl
