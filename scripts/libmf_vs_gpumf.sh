#!/usr/bin/env bash
# Runs LIBMF and gpumf's CPU Hogwild trainer on the same files with the same rank, iterations,
# threads and L2 regularisation, in one invocation, and prints both side by side.
#
# usage: scripts/libmf_vs_gpumf.sh LIBMF_DIR TRAIN TEST [K] [ITERATIONS] [THREADS] [L2] [-- gpumf flags...]
#   LIBMF_DIR  folder with LIBMF's mf-train and mf-predict (build it with `make -C LIBMF_DIR`)
#   TRAIN/TEST text files `user item rating` (LIBMF's format; `gpumf generate --output-format space` writes it)
# LIBMF prints no training time, so it is timed with 1 and with ITERATIONS+1 iterations and the
# difference taken: loading the text file (seconds for 20M ratings) cancels out. gpumf reports
# its own epoch time; loading is excluded for both.
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,11p' "$0"; exit 2; fi
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
libmf_epoch=$(python3 -c "print(max(1e-9, (($t2 - $t1) - ($t1 - $t0)) / $iters))")

"$gpumf" bench --train "$train" --test "$test" --backends cpu-threads --threads "$threads" --rank "$k" --epochs "$iters" \
    --reg "$l2" "${extra[@]}" --json > "$work/gpumf.json"

python3 - "$work/gpumf.json" "$ratings" "$k" "$iters" "$threads" "$libmf_epoch" "$libmf_rmse" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1])); g = rows[0]
ratings, k, iters, threads = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
l_epoch, l_rmse = float(sys.argv[6]), float(sys.argv[7])
l_ups = ratings / l_epoch
print(f"{ratings} ratings, k={k}, {iters} iterations, {threads} threads")
print(f"{'':22}{'s/epoch':>10}{'updates/s':>14}{'per thread':>14}{'test RMSE':>11}")
print(f"{'LIBMF':22}{l_epoch:>10.4f}{l_ups/1e6:>13.1f}M{l_ups/threads/1e6:>13.1f}M{l_rmse:>11.4f}")
print(f"{'gpumf cpu threads':22}{g['seconds_per_epoch']:>10.4f}{g['updates_per_second']/1e6:>13.1f}M{g['updates_per_second']/threads/1e6:>13.1f}M{g['test_rmse']:>11.4f}")
print(f"gpumf / LIBMF: {g['updates_per_second']/l_ups:.2f}x the updates/s, test RMSE {g['test_rmse'] - l_rmse:+.4f}")
PY
