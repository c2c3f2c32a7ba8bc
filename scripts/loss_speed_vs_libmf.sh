#!/usr/bin/env bash
# What each loss costs beside squared error, for LIBMF and for gpumf, on one thread and the same
# file in one invocation: seconds per iteration (LIBMF) and per epoch (gpumf), each loss's speed
# as a fraction of its own program's squared error, and gpumf's speed over LIBMF's per loss.
#
# usage: scripts/loss_speed_vs_libmf.sh LIBMF_DIR TRAIN [K] [ITERATIONS] [THRESHOLD]
#   LIBMF_DIR  folder with LIBMF's mf-train (build it with `make -C LIBMF_DIR`)
#   TRAIN      a text file `user item rating` of positive real ratings (LIBMF's format;
#              `gpumf generate --output-format space` writes one)
#   THRESHOLD  ratings of THRESHOLD and above are the positive label of the binary losses
#              (default 3.5): a ±1 copy is written for LIBMF, gpumf takes --positive-threshold
# Both run on one core (CORE, default 0, when taskset exists), one after the other. LIBMF
# prints no training time, so it is timed with 1 and with ITERATIONS+1 iterations and the
# difference taken (loading the text cancels out); gpumf reports its own epoch time, its
# sequential trainer without the SVD++ term. λ 0.05 for both; L1 0.01 where it is the penalty.
set -euo pipefail
shopt -s inherit_errexit
if [ $# -lt 2 ]; then sed -n '2,15p' "$0"; exit 2; fi
libmf=$1 train=$2 k=${3:-32} iters=${4:-10} threshold=${5:-3.5}
[ -x "$libmf/mf-train" ] || { echo "error: $libmf/mf-train not found or not executable (build LIBMF with make -C $libmf)" >&2; exit 2; }
[ -f "$train" ] || { echo "error: $train: no such file" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
gpumf=${GPUMF:-$here/target/release/gpumf}
[ -x "$gpumf" ] || (cd "$here" && cargo build --release -q)
pin=()
command -v taskset >/dev/null && pin=(taskset -c "${CORE:-0}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
awk -v t="$threshold" '{ print $1, $2, ($3 >= t ? 1 : -1) }' "$train" > "$work/binary"

now() { date +%s.%N; }
# LIBMF's seconds per iteration: -f CODE on FILE with any further flags.
libmf_iteration() {
    local code=$1 file=$2; shift 2
    local t0 t1 t2
    t0=$(now); "${pin[@]}" "$libmf/mf-train" -f "$code" -k "$k" -t 1 -s 1 -l2 0.05 "$@" "$file" "$work/m" >/dev/null; t1=$(now)
    "${pin[@]}" "$libmf/mf-train" -f "$code" -k "$k" -t $((iters + 1)) -s 1 -l2 0.05 "$@" "$file" "$work/m" >/dev/null; t2=$(now)
    python3 -c "print(max(1e-9, (($t2 - $t1) - ($t1 - $t0)) / $iters))"
}
# gpumf's seconds per epoch with these flags.
gpumf_epoch() {
    "${pin[@]}" "$gpumf" train --train "$train" --backend cpu --threads 1 --no-svdpp --rank "$k" --reg 0.05 \
        --epochs "$iters" --json "$@" > "$work/g.json"
    python3 -c "import json; print(json.load(open('$work/g.json'))['seconds_per_epoch'])"
}

# name | LIBMF -f and flags | gpumf flags
runs=(
    "squared|0|"
    "absolute|1|--loss absolute"
    "kl (non-negative)|2 --nmf|--loss kl"
    "logistic|5 binary|--loss logistic --positive-threshold $threshold"
    "squared hinge|6 binary|--loss squared-hinge --positive-threshold $threshold"
    "hinge|7 binary|--loss hinge --positive-threshold $threshold"
    "squared, L1 0.01|0 -l1 0.01|--l1 0.01"
    "squared, non-negative|0 --nmf|--nonneg"
)
echo "rank $k, one thread, $(wc -l < "$train") ratings ($train), $iters iterations"
echo "| loss | LIBMF s/iter | LIBMF × its squared | gpumf s/epoch | gpumf × its squared | gpumf / LIBMF |"
echo "|---|---|---|---|---|---|"
base_libmf="" base_gpumf=""
for run in "${runs[@]}"; do
    IFS='|' read -r name libmf_args gpumf_args <<< "$run"
    read -r code rest <<< "$libmf_args"
    file=$train extra=()
    for a in $rest; do if [ "$a" = binary ]; then file=$work/binary; else extra+=("$a"); fi; done
    # gpumf first: it reports a bad file by its name and line, where LIBMF may crash on it.
    # shellcheck disable=SC2086
    g=$(gpumf_epoch $gpumf_args)
    l=$(libmf_iteration "$code" "$file" "${extra[@]}")
    base_libmf=${base_libmf:-$l} base_gpumf=${base_gpumf:-$g}
    python3 -c "print('| $name | %.4f | %.2f | %.4f | %.2f | %.2fx |' % ($l, $base_libmf / $l, $g, $base_gpumf / $g, $l / $g))"
done
