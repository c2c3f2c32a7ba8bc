#!/usr/bin/env bash
# DSGD on one machine: seconds per epoch and bytes sent for 1, 2 and 4 workers, as threads of
# one process and as processes on loopback, on a generated set (default 20M ratings).
# Usage: scripts/dsgd_bench.sh [ratings] [rank] [epochs]   (writes its data under $TMPDIR)
set -euo pipefail
RATINGS=${1:-20000000}; RANK=${2:-32}; EPOCHS=${3:-4}
B=${GPUMF:-target/release/gpumf}
[ -x "$B" ] || cargo build --release --quiet
DIR=${TMPDIR:-/tmp}/gpumf-dsgd-bench; mkdir -p "$DIR"
[ -f "$DIR/train-$RATINGS.bin" ] || "$B" generate --ratings "$RATINGS" --train-out "$DIR/train-$RATINGS.bin" --test-out "$DIR/test-$RATINGS.bin" >&2
T=(--train "$DIR/train-$RATINGS.bin" --test "$DIR/test-$RATINGS.bin" --rank "$RANK" --epochs "$EPOCHS" --eval-every 1000 --json -q)
row() { # label, then the JSON of process 0 on stdin
  python3 -c '
import json, sys
label, workers = sys.argv[1], int(sys.argv[2])
v = json.load(sys.stdin); h = v["history"]
# The last epoch also sends item copies to score the test set: left out of the traffic figure.
train_epochs = h[:-1] or h
sent = sum(e["streamed_bytes"] for e in train_epochs) / len(train_epochs)
secs = sorted(e["sgd_seconds"] for e in h)
items, rank = v["data"]["items"], v["settings"]["params"]["rank"]
backend, rmse, median = v["backend"], v["test_rmse"], secs[len(secs) // 2]
print(f"| {label} | {backend} | {median:.3f} | {sent / workers / 1e6:.2f} | {items * (rank + 1) * 4 / 1e6:.2f} | {rmse:.4f} |")
' "$1" "$2"; }
echo "| run | backend | s/epoch (median) | MB sent per worker per epoch | n·(k+1)·4 MB | test RMSE |"
echo "|---|---|---|---|---|---|"
"$B" train "${T[@]}" --threads 1 | row "one process, sequential" 1
"$B" train "${T[@]}" --threads 2 | row "one process, 2 threads" 2
for W in 1 2 4; do "$B" train "${T[@]}" --workers "$W" | row "--workers $W" "$W"; done
for PW in 2x1 4x1 2x2; do
  P=${PW%x*}; W=${PW#*x}; HOSTS="$DIR/hosts-$P"; : > "$HOSTS"
  for i in $(seq 0 $((P - 1))); do echo "127.0.0.1:$((25400 + i))" >> "$HOSTS"; done
  for i in $(seq $((P - 1)) -1 1); do "$B" train "${T[@]}" --workers "$W" --hosts "$HOSTS" --process "$i" > /dev/null & done
  "$B" train "${T[@]}" --workers "$W" --hosts "$HOSTS" --process 0 | row "$P processes x $W workers" $((P * W))
  wait
done
