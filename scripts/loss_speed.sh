#!/usr/bin/env bash
# Each loss's training speed beside squared error's, with gpumf's defaults (rank 128, every
# core, the SVD++-style term: issue 30's conditions), on one file in one invocation. Losses run
# one after another in each round, so each round's ratios compare runs minutes apart at most;
# the table gives each loss's updates/s (median over rounds) and its ratio to squared error's
# in the same round (the median, and the lowest and highest over rounds).
#
# usage: scripts/loss_speed.sh TRAIN TEST [ROUNDS] [GPUMF FLAGS...]
#   TRAIN, TEST  rating files of positive real values (any format gpumf reads)
#   ROUNDS       rounds of every loss in turn (default 3)
#   GPUMF FLAGS  added to every run, e.g. --no-svdpp, --threads 1, --rank 32
# THRESHOLD (default 3.5): ratings at or above it are the binary losses' positive label.
# EPOCHS (default 5): epochs a run; its reported seconds per epoch are taken.
set -euo pipefail
shopt -s inherit_errexit
if [ $# -lt 2 ]; then sed -n '2,14p' "$0"; exit 2; fi
train=$1 test=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS must be a whole number of at least 1, not '$rounds'" >&2; exit 2; }
for f in "$train" "$test"; do [ -f "$f" ] || { echo "error: $f: no such file" >&2; exit 2; }; done
here=$(cd "$(dirname "$0")/.." && pwd)
gpumf=${GPUMF:-$here/target/release/gpumf}
[ -x "$gpumf" ] || (cd "$here" && cargo build --release -q)
threshold=${THRESHOLD:-3.5} epochs=${EPOCHS:-5}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# name | gpumf flags
runs=(
    "squared|--loss squared"
    "absolute|--loss absolute"
    "kl|--loss kl"
    "logistic|--loss logistic --positive-threshold $threshold"
    "squared hinge|--loss squared-hinge --positive-threshold $threshold"
    "hinge|--loss hinge --positive-threshold $threshold"
)
echo "gpumf $("$gpumf" --version | cut -d' ' -f2), $train, $epochs epochs a run, flags: ${*:-(defaults)}" >&2
for round in $(seq "$rounds"); do
    for run in "${runs[@]}"; do
        IFS='|' read -r name flags <<< "$run"
        # shellcheck disable=SC2086
        "$gpumf" train --train "$train" --test "$test" --backend cpu --epochs "$epochs" --eval-every "$epochs" \
            $flags "$@" --json > "$work/run.json"
        python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], d['seconds_per_epoch'], d['updates_per_second'])" \
            "$work/run.json" "$round" "$name" >> "$work/times"
        echo "round $round: $name done" >&2
    done
done
python3 - "$work/times" <<'PY'
import statistics, sys
rows = [line.rsplit(' ', 2) for line in open(sys.argv[1])]
runs = {}
for head, seconds, speed in rows:
    round_, name = head.split(' ', 1)
    runs.setdefault(name, {})[round_] = (float(seconds), float(speed))
squared = runs['squared']
print('| loss | s/epoch (each round) | M updates/s (median) | × squared error, same round: median (lowest–highest) |')
print('|---|---|---|---|')
for name, by_round in runs.items():
    ratios = [by_round[r][1] / squared[r][1] for r in by_round]
    seconds = ', '.join('%.4f' % by_round[r][0] for r in sorted(by_round, key=int))
    speed = statistics.median(v[1] for v in by_round.values()) / 1e6
    print('| %s | %s | %.2f | %.2f (%.2f–%.2f) |' % (name, seconds, speed, statistics.median(ratios), min(ratios), max(ratios)))
PY
