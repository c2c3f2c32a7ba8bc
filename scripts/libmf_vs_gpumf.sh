#!/usr/bin/env bash
# Runs LIBMF and gpumf's CPU trainer on the same files with the same rank, threads and L2
# regularisation, in one invocation, and prints both side by side: updates/s, seconds per
# epoch, test RMSE after ITERATIONS and 2 x ITERATIONS iterations, and the seconds each takes
# to reach LIBMF's test RMSE after ITERATIONS.
#
# usage: scripts/libmf_vs_gpumf.sh LIBMF_DIR TRAIN TEST [K] [ITERATIONS] [THREADS] [L2] [-- gpumf flags...]
#   LIBMF_DIR  folder with LIBMF's mf-train and mf-predict (build it with `make -C LIBMF_DIR`)
#   TRAIN/TEST text files `user item rating` (LIBMF's format; `gpumf generate --output-format space` writes it)
# LIBMF prints no training time, so it is timed with 1 and with ITERATIONS+1 iterations and the
# difference taken: loading the text file (seconds for 20M ratings) cancels out. gpumf reports
# its own epoch times; loading is excluded for both. gpumf runs its sequential trainer on one
# thread and its threaded one on more, for up to 4 x ITERATIONS epochs (GPUMF_EPOCHS), scoring
# the test set after each: its seconds to LIBMF's RMSE count from its first epoch (its set-up,
# like LIBMF's, left out; printed beside) and include that scoring.
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,14p' "$0"; exit 2; fi
libmf=$1 train=$2 test=$3 k=${4:-32} iters=${5:-10} threads=${6:-$(nproc)} l2=${7:-0.05}
shift $(( $# < 7 ? $# : 7 ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
for f in "$libmf/mf-train" "$libmf/mf-predict"; do [ -x "$f" ] || { echo "error: $f not found or not executable (build LIBMF with make -C $libmf)" >&2; exit 2; }; done
for f in "$train" "$test"; do [ -f "$f" ] || { echo "error: $f: no such file" >&2; exit 2; }; done
here=$(cd "$(dirname "$0")/.." && pwd)
gpumf=${GPUMF:-$here/target/release/gpumf}
[ -x "$gpumf" ] || (cd "$here" && cargo build --release -q)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ratings=$(wc -l < "$train")

now() { date +%s.%N; }
t0=$(now); "$libmf/mf-train" -k "$k" -t 1 -s "$threads" -l2 "$l2" "$train" "$work/m1" >/dev/null; t1=$(now)
"$libmf/mf-train" -k "$k" -t $((iters + 1)) -s "$threads" -l2 "$l2" "$train" "$work/m" >/dev/null; t2=$(now)
libmf_rmse=$("$libmf/mf-predict" -e 0 "$test" "$work/m" "$work/out" | awk '/RMSE/ {print $3}')
"$libmf/mf-train" -k "$k" -t $((2 * iters)) -s "$threads" -l2 "$l2" "$train" "$work/m2" >/dev/null
libmf_rmse2=$("$libmf/mf-predict" -e 0 "$test" "$work/m2" "$work/out" | awk '/RMSE/ {print $3}')
libmf_epoch=$(python3 -c "print(max(1e-9, (($t2 - $t1) - ($t1 - $t0)) / $iters))")

backend=cpu-threads
[ "$threads" = 1 ] && backend=cpu
epochs=${GPUMF_EPOCHS:-$((4 * iters))}
"$gpumf" bench --train "$train" --test "$test" --backends "$backend" --threads "$threads" --rank "$k" --epochs "$epochs" \
    --reg "$l2" --target "$libmf_rmse" "${extra[@]}" --json > "$work/gpumf.json"

python3 - "$work/gpumf.json" "$ratings" "$k" "$iters" "$threads" "$libmf_epoch" "$libmf_rmse" "$libmf_rmse2" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1])); g = rows[0]
ratings, k, iters, threads = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
l_epoch, l_rmse, l_rmse2 = float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
l_ups = ratings / l_epoch
at = lambda n: g["history"][min(n, len(g["history"])) - 1]["test_rmse"]
at_iters, at_twice = at(iters), at(2 * iters)
to_target = g["seconds_to_target"]
print(f"{ratings} ratings, k={k}, {threads} threads; LIBMF {iters} iterations, gpumf {g['backend']} up to {g['epochs']} epochs")
print(f"{'':10}{'s/epoch':>9}{'updates/s':>12}{'per thread':>12}{f'RMSE @{iters}':>11}{f'RMSE @{2 * iters}':>11}{'s to LIBMF RMSE':>17}")
print(f"{'LIBMF':10}{l_epoch:>9.4f}{l_ups/1e6:>11.1f}M{l_ups/threads/1e6:>11.1f}M{l_rmse:>11.4f}{l_rmse2:>11.4f}{l_epoch * iters:>17.2f}")
reach = "never" if to_target is None else f"{to_target:.2f}"
print(f"{'gpumf':10}{g['seconds_per_epoch']:>9.4f}{g['updates_per_second']/1e6:>11.1f}M{g['updates_per_second']/threads/1e6:>11.1f}M{at_iters:>11.4f}{at_twice:>11.4f}{reach:>17}")
ratio = "never reached" if to_target is None else f"{to_target / (l_epoch * iters):.2f}x LIBMF's time to its RMSE"
print(f"gpumf / LIBMF: {g['updates_per_second']/l_ups:.2f}x the updates/s, RMSE at {iters} iterations {at_iters - l_rmse:+.4f}, {ratio}")
print(f"gpumf set-up before its first epoch (left out of its time, as LIBMF's is): {g['setup_seconds']:.2f} s")
PY
