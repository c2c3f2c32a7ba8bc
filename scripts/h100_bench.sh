#!/usr/bin/env bash
# Runs on the device machine (see scripts/device_prepare.sh): gpumf's GPU trainer and cuMF_SGD on
# the identical Netflix-shaped binary files, same rank and epochs, side by side, in one call;
# then a sweep of gpumf's GPU tuning flags, so one call also says which settings to keep.
# Writes its logs and JSON to $OUT (default /tmp/gpumf_out) and prints one table at the end.
#
# Environment: EPOCHS (20), SWEEP_EPOCHS (5; 0 skips the sweep), GEN_FLAGS (--netflix),
# GPUMF_FLAGS (the model's settings), CUMF (1; 0 skips cuMF_SGD), BANDWIDTH (3350 GB/s, H100 SXM).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
OUT=${OUT:-/tmp/gpumf_out}
W=${WORK:-/tmp/gpumf_h100}
G=.device/gpumf
EPOCHS=${EPOCHS:-20}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-5}
BANDWIDTH=${BANDWIDTH:-3350}
# The data set (flags of `gpumf generate`); smaller ones let the script be tried anywhere.
GEN_FLAGS=${GEN_FLAGS:---netflix}
# gpumf's settings for this data (flags of `gpumf bench`); cuMF_SGD's are those of its Netflix script.
# Since 7cc41f0/50fff0f they are in units of the ratings' spread with λ weighted by √(100/n) per
# row; on 20M Netflix-shaped ratings (dev, rank 32, 20 epochs) they reach test RMSE 0.130 so,
# against 0.150 with `--no-scale --constant-reg` (their meaning before), at the same speed.
# `--no-svdpp`: cuMF_SGD trains the plain model; the `implicit` rows time the default model.
GPUMF_FLAGS=${GPUMF_FLAGS:---lr 0.05 --lr-decay 0.1 --reg 0.01 --reg-bias 0.01 --init-std 0.05 --no-svdpp}
mkdir -p "$OUT/runs" "$W"
{ $G info; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>/dev/null; } | tee "$OUT/machine.txt"

$G generate $GEN_FLAGS --train-out "$W/train.bin" --test-out "$W/test.bin" --force 2>&1 | tee "$OUT/generate.txt"

# bench NAME RANK BACKENDS EPOCHS [gpu flags...]: one `gpumf bench` run, its rows in runs/NAME.json.
bench() {
    local name=$1 rank=$2 backends=$3 epochs=$4
    shift 4
    $G bench --train "$W/train.bin" --test "$W/test.bin" --backends "$backends" --rank "$rank" --epochs "$epochs" \
        --target-rmse 0.17 --bandwidth "$BANDWIDTH" $GPUMF_FLAGS "$@" --json > "$OUT/runs/$name.json" 2> "$OUT/runs/$name.err"
    echo "$name (rank $rank, $backends, $epochs epochs, flags: ${*:-none}): exit $?"
}

# The targets, defaults only.
bench k128 128 gpu,gpu-f16 "$EPOCHS"
bench k32 32 gpu "$EPOCHS"
# With the SVD++ term (gpumf's default model): its passes after each epoch on the device.
GPUMF_FLAGS=${GPUMF_FLAGS/ --no-svdpp/} bench k128_implicit 128 gpu,gpu-f16 "$EPOCHS"

# The peer on the identical files, before the sweep: should the call run out of time in the
# sweep, the side-by-side comparison is already in $OUT.
if [ "${CUMF:-1}" = 1 ] && [ -d .device/cumf_sgd ]; then
    bash .device/cumf_sgd/build.sh /tmp/cumf_build > "$OUT/cumf_build.txt" 2>&1 || echo "cuMF_SGD build failed (see cumf_build.txt)"
    C=/tmp/cumf_build
    if [ -x $C/singleGPU/cumf_sgd ]; then
        $C/singleGPU/cumf_sgd -g 1 -l 0.05 -a 0.08 -b 0.3 -u 1 -v 1 -x 1 -y 1 -s 6864 -k 128 -t "$EPOCHS" \
            "$W/train.bin" "$W/cumf.model" > "$OUT/cumf.txt" 2>&1
        $C/test/mf-predict -e 0 "$W/test.bin" "$W/cumf.model" "$W/cumf.out" >> "$OUT/cumf.txt" 2>&1
    fi
fi

# The tuning sweep: blocks of users whose rows fit the 50 MB L2 (one dispatch per block),
# ratings in flight, lanes per rating.
if [ "$SWEEP_EPOCHS" -gt 0 ]; then
    for rows in 16384 32768 65536; do
        bench "k128_block$rows" 128 gpu,gpu-f16 "$SWEEP_EPOCHS" --user-block-rows $rows
    done
    # The default model in user blocks: its passes stay on the device (each side's blocks in
    # one buffer), so this row against k128_implicit says what the blocks give it.
    GPUMF_FLAGS=${GPUMF_FLAGS/ --no-svdpp/} bench k128_implicit_block32768 128 gpu,gpu-f16 "$SWEEP_EPOCHS" --user-block-rows 32768
    for n in 8192 34270 68540; do
        bench "k128_inflight$n" 128 gpu,gpu-f16 "$SWEEP_EPOCHS" --in-flight $n
        bench "k32_inflight$n" 32 gpu "$SWEEP_EPOCHS" --in-flight $n
    done
    bench k128_lanes16 128 gpu,gpu-f16 "$SWEEP_EPOCHS" --lanes-per-rating 16
    bench k32_lanes32 32 gpu "$SWEEP_EPOCHS" --lanes-per-rating 32
    bench k32_lanes4 32 gpu "$SWEEP_EPOCHS" --lanes-per-rating 4
    bench k32_block32768 32 gpu "$SWEEP_EPOCHS" --user-block-rows 32768
    bench k128_wg8192 128 gpu,gpu-f16 "$SWEEP_EPOCHS" --workgroups 8192
    # Beyond device memory (issue 16): the ratings (1.2 GB) stream through the ring while the
    # factors stay resident; host writes into mapped buffers against copies on the queue.
    # The resident k128 rows are the baseline; "overlap" and host vs kernel s/epoch say
    # whether the device waited for the uploads.
    bench k128_stream_mapped 128 gpu "$SWEEP_EPOCHS" --gpu-memory ${STREAM_BUDGET:-1GiB} --upload mapped
    bench k128_stream_copied 128 gpu "$SWEEP_EPOCHS" --gpu-memory ${STREAM_BUDGET:-1GiB} --upload copied
fi

python3 scripts/bench_table.py "$OUT" "$EPOCHS" | tee "$OUT/summary.txt"
