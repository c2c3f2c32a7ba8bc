#!/usr/bin/env bash
# Runs on the device machine (see scripts/device_prepare.sh): gpumf's GPU trainer and cuMF_SGD on
# the identical Netflix-shaped binary files, same rank and epochs, side by side, in one call.
# Writes its logs and JSON to $OUT (default /tmp/gpumf_out).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
OUT=${OUT:-/tmp/gpumf_out}
W=${WORK:-/tmp/gpumf_h100}
G=.device/gpumf
EPOCHS=${EPOCHS:-20}
# The data set (flags of `gpumf generate`); smaller ones let the script be tried anywhere.
GEN_FLAGS=${GEN_FLAGS:---netflix}
# gpumf's settings for this data (flags of `gpumf bench`); cuMF_SGD's are those of its Netflix script.
GPUMF_FLAGS=${GPUMF_FLAGS:---lr 0.05 --lr-decay 0.1 --reg 0.01 --reg-bias 0.01 --init-std 0.05}
mkdir -p "$OUT" "$W"
{ $G info; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null; } | tee "$OUT/machine.txt"

$G generate $GEN_FLAGS --train-out "$W/train.bin" --test-out "$W/test.bin" --force 2>&1 | tee "$OUT/generate.txt"

for run in "128 gpu,gpu-f16" "32 gpu"; do
    set -- $run
    $G bench --train "$W/train.bin" --test "$W/test.bin" --backends "$2" --rank "$1" --epochs "$EPOCHS" \
        --target-rmse 0.17 --bandwidth 3350 $GPUMF_FLAGS --json > "$OUT/gpumf_k$1.json" 2> "$OUT/gpumf_k$1.err"
    echo "gpumf rank $1: exit $?"
done

if [ -d .device/cumf_sgd ]; then
    bash .device/cumf_sgd/build.sh /tmp/cumf_build > "$OUT/cumf_build.txt" 2>&1 || echo "cuMF_SGD build failed (see cumf_build.txt)"
    C=/tmp/cumf_build
    if [ -x $C/singleGPU/cumf_sgd ]; then
        $C/singleGPU/cumf_sgd -g 1 -l 0.05 -a 0.08 -b 0.3 -u 1 -v 1 -x 1 -y 1 -s 6864 -k 128 -t "$EPOCHS" \
            "$W/train.bin" "$W/cumf.model" > "$OUT/cumf.txt" 2>&1
        $C/test/mf-predict -e 0 "$W/test.bin" "$W/cumf.model" "$W/cumf.out" >> "$OUT/cumf.txt" 2>&1
    fi
fi

python3 - "$OUT" "$EPOCHS" <<'PY'
import json, os, re, sys
out, epochs = sys.argv[1], int(sys.argv[2])
rows = []
for k in (128, 32):
    p = os.path.join(out, f"gpumf_k{k}.json")
    if os.path.exists(p) and os.path.getsize(p):
        rows += json.load(open(p))
cumf = None
p = os.path.join(out, "cumf.txt")
if os.path.exists(p):
    t = open(p).read()
    wall = re.search(r"GPUMF_TIMING.*?wall_s=([0-9.]+)", t)
    rmse = re.search(r"RMSE = ([0-9.]+)", t)
    if wall:
        cumf = dict(seconds=float(wall.group(1)), rmse=float(rmse.group(1)) if rmse else None)
print(f"{'trainer':62}{'rank':>5}{'s/epoch':>10}{'G upd/s':>9}{'GB/s':>8}{'RMSE':>8}")
for r in rows:
    print(f"{r['backend']:62}{r['rank']:>5}{r['seconds_per_epoch']:>10.4f}{r['updates_per_second']/1e9:>9.2f}{r['gigabytes_per_second']:>8.0f}{(r['test_rmse'] or 0):>8.4f}")
if cumf and rows:
    n = rows[0]["ratings"]
    ups = n * epochs / cumf["seconds"]
    print(f"{'cuMF_SGD (f16, 6864 warps)':62}{128:>5}{cumf['seconds']/epochs:>10.4f}{ups/1e9:>9.2f}{'':>8}{(cumf['rmse'] or 0):>8.4f}")
    for r in rows:
        if r["rank"] == 128:
            print(f"{r['backend']} / cuMF_SGD: {r['updates_per_second']/ups:.2f}x the updates/s")
PY
