#!/usr/bin/env bash
# Runs on the device machine (see scripts/device_prepare.sh) in two calls, each within its own
# time budget, each writing its results under $OUT as it goes (a call cut short still returns
# what ran) and ending with one table of everything under $OUT (scripts/bench_table.py).
#
#   bash scripts/gpu_bench.sh 1   (at most 6 minutes) machine info; the Netflix-shaped set;
#        gpumf at rank 128 in f32 and f16 and at rank 32 in f32, 20 epochs each; cuMF_SGD at
#        rank 128 (-s 6864) on the identical files; the default model (with the SVD++ term).
#   bash scripts/gpu_bench.sh 2   (at most 5 minutes) the tuning sweep (user blocks sized for
#        L2, ratings in flight, lanes per rating); streaming, mapped against copied; each loss
#        beside squared error and the one-class kernels (bpr, ials) on a 20M-rating set.
#
# Each run's JSON is written when it ends, its progress (a line per epoch) as it goes, into
# runs/NAME.err; progress.txt logs each step. The device tool gives back a machine idle for
# 30 s, so part 2 makes its own data when the machine is a fresh one.
#
# Environment: OUT (/tmp/gpumf_out), BANDWIDTH (4800 GB/s, the H200), EPOCHS (20), SWEEP_EPOCHS
# (5), GEN_FLAGS (--netflix), SMALL_FLAGS (the 20M set's), CUMF (1; 0 skips cuMF_SGD), BUDGET
# (seconds for the part: 330 and 270, a margin inside the calls' limits), GPUMF_FLAGS (the
# model's settings), GPUMF (the binary, .device/gpumf). A dry run anywhere (lavapipe, small data):
#   GEN_FLAGS="--ratings 400000" SMALL_FLAGS="--ratings 200000" EPOCHS=3 SWEEP_EPOCHS=2 \
#     bash scripts/gpu_bench.sh 1
set -uo pipefail
part=${1:-}
if [ "$part" != 1 ] && [ "$part" != 2 ]; then
    echo "usage: scripts/gpu_bench.sh 1|2 (see the comment at its top)" >&2
    exit 2
fi
start=$(date +%s)
case $part in 1) BUDGET=${BUDGET:-330} ;; 2) BUDGET=${BUDGET:-270} ;; esac
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -e "$ICD" ]; then
    for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$ICD}
else
    echo "note: no NVIDIA Vulkan driver here ($ICD): a dry run on this machine's own Vulkan" >&2
fi
OUT=${OUT:-/tmp/gpumf_out}
W=${WORK:-/tmp/gpumf_gpu}
G=${GPUMF:-.device/gpumf}
EPOCHS=${EPOCHS:-20}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-5}
BANDWIDTH=${BANDWIDTH:-4800}
GEN_FLAGS=${GEN_FLAGS:---netflix}
SMALL_FLAGS=${SMALL_FLAGS:---ratings 20000000}
# gpumf's settings for this data (flags of `gpumf bench`); cuMF_SGD's are those of its Netflix
# script. `--no-svdpp`: cuMF_SGD trains the plain model; the `svdpp` rows time the default one.
GPUMF_FLAGS=${GPUMF_FLAGS:---lr 0.05 --lr-decay 0.1 --reg 0.01 --reg-bias 0.01 --init-std 0.05 --no-svdpp}
DEFAULT_FLAGS=${GPUMF_FLAGS/ --no-svdpp/}
mkdir -p "$OUT/runs" "$W"

# Seconds left of the part's budget.
left() { echo $((BUDGET - ($(date +%s) - start))); }
log() { echo "[part $part, $(($(date +%s) - start)) s] $*" | tee -a "$OUT/progress.txt"; }

# step NAME STDOUT STDERR COMMAND...: runs the command, its output into the two files, within
# what is left of the budget (less 10 s for the table), or skips it when under 20 s are left;
# logs how it ended.
step() {
    local name=$1 stdout=$2 stderr=$3 limit
    shift 3
    limit=$(($(left) - 10))
    if [ "$limit" -lt 20 ]; then
        log "$name: skipped ($(left) s left)"
        return
    fi
    timeout "$limit" "$@" >> "$stdout" 2>> "$stderr"
    local rc=$?
    log "$name: exit $rc$([ $rc = 124 ] && echo ' (out of time)')"
}

# bench NAME DATA RANK BACKENDS EPOCHS [flags...]: one `gpumf bench` run, its rows in
# runs/NAME.json, its messages in runs/NAME.err.
bench() {
    local name=$1 data=$2 rank=$3 backends=$4 epochs=$5
    shift 5
    rm -f "$OUT/runs/$name.json" "$OUT/runs/$name.err"
    step "$name" "$OUT/runs/$name.json" "$OUT/runs/$name.err" "$G" bench --train "$W/$data.bin" --test "$W/$data.test.bin" \
        --backends "$backends" --rank "$rank" --epochs "$epochs" --target-rmse 0.17 --bandwidth "$BANDWIDTH" "$@" --json
}

# data NAME FLAGS...: a generated set, unless this machine already made it.
data() {
    local name=$1
    shift
    [ -s "$W/$name.bin" ] && return
    step "generate $name" "$OUT/generate_$name.txt" "$OUT/generate_$name.txt" "$G" generate "$@" \
        --train-out "$W/$name.bin" --test-out "$W/$name.test.bin" --force
}

{ $G info; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>/dev/null; } > "$OUT/machine_$part.txt" 2>&1
log "start; $(head -c 300 "$OUT/machine_$part.txt" | tr '\n' ' ')"
data netflix $GEN_FLAGS

if [ "$part" = 1 ]; then
    # The issue's targets, with the defaults of the kernel.
    bench k128 netflix 128 gpu,gpu-f16 "$EPOCHS" $GPUMF_FLAGS
    bench k32 netflix 32 gpu "$EPOCHS" $GPUMF_FLAGS
    # The peer on the identical files.
    if [ "${CUMF:-1}" = 1 ] && [ -d .device/cumf_sgd ]; then
        C=/tmp/cumf_build
        rm -f "$OUT/cumf.txt"
        step "cumf build" "$OUT/cumf_build.txt" "$OUT/cumf_build.txt" bash .device/cumf_sgd/build.sh $C
        if [ -x $C/singleGPU/cumf_sgd ]; then
            step "cumf_sgd" "$OUT/cumf.txt" "$OUT/cumf.txt" $C/singleGPU/cumf_sgd -g 1 -l 0.05 -a 0.08 -b 0.3 -u 1 -v 1 -x 1 -y 1 \
                -s 6864 -k 128 -t "$EPOCHS" "$W/netflix.bin" "$W/cumf.model"
            step "cumf predict" "$OUT/cumf.txt" "$OUT/cumf.txt" $C/test/mf-predict -e 0 "$W/netflix.test.bin" "$W/cumf.model" "$W/cumf.out"
        fi
    fi
    # gpumf's default model: the SVD++ term's passes after each epoch, on the device.
    bench k128_svdpp netflix 128 gpu,gpu-f16 "$EPOCHS" $DEFAULT_FLAGS
else
    # Past the DRAM bound: user blocks whose rows and the items' fit the 50 MB L2 (one dispatch
    # per block), then ratings in flight and lanes per rating.
    for rows in 32768 65536; do
        bench "k128_block$rows" netflix 128 gpu,gpu-f16 "$SWEEP_EPOCHS" $GPUMF_FLAGS --user-block-rows $rows
    done
    bench k32_block65536 netflix 32 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --user-block-rows 65536
    for n in 8192 68540; do
        bench "k128_inflight$n" netflix 128 gpu-f16 "$SWEEP_EPOCHS" $GPUMF_FLAGS --in-flight $n
    done
    bench k128_lanes16 netflix 128 gpu-f16 "$SWEEP_EPOCHS" $GPUMF_FLAGS --lanes-per-rating 16
    bench k32_lanes4 netflix 32 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --lanes-per-rating 4
    # Beyond device memory: the ratings stream through a ring while the factors stay resident;
    # host writes into mapped buffers against copies on the queue.
    bench k128_stream_mapped netflix 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --gpu-memory ${STREAM_BUDGET:-1GiB} --upload mapped
    bench k128_stream_copied netflix 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --gpu-memory ${STREAM_BUDGET:-1GiB} --upload copied
    # Each loss's kernel beside squared error's on the same 20M ratings (binary losses read
    # ratings of 3 and above as the positive label), then the one-class kernels on its events.
    data small $SMALL_FLAGS
    bench loss_squared small 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS
    for loss in absolute kl; do
        bench "loss_$loss" small 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --loss $loss
    done
    for loss in logistic hinge; do
        bench "loss_$loss" small 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --loss $loss --positive-threshold 3
    done
    bench loss_nonneg small 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --nonneg
    bench loss_l1 small 128 gpu "$SWEEP_EPOCHS" $GPUMF_FLAGS --l1 0.01
    data events $SMALL_FLAGS --events
    bench oneclass_bpr events 128 gpu "$SWEEP_EPOCHS" --loss bpr
    bench oneclass_ials events 128 gpu "$SWEEP_EPOCHS" --loss ials
fi

python3 scripts/bench_table.py "$OUT" "$EPOCHS" 2>&1 | tee "$OUT/summary_$part.txt"
log "done"
