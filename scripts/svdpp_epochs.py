#!/usr/bin/env python3
"""The SVD++-style term's epochs beside plain ones on the CPU (issue 27, item 5).

Trains each gpumf binary given with the term, and the first also without it (`--no-svdpp`),
`--rounds` times in turn, and prints the least time of each kind of epoch: plain; with the
term, the epoch the passes run before (epochs 1, 4, 7, ...), the one after it, and the one
that gathers the shares (3, 6, ...). The ratio is the three term epochs' least times over three
plain ones: least times, because on a shared machine a slow spell makes any one epoch long,
and the kinds of epoch come round in every run. Epoch 0 (no passes before it) is left out.
It also prints the median over rounds of each round's own ratio (its runs a few seconds
apart), which a spell slow for minutes, longer than a round, moves less than the least times.

    python3 scripts/svdpp_epochs.py --train g20.bin --test g20.test.bin --rank 128 BIN [BIN ...]
"""
import argparse
import json
import statistics
import subprocess
import sys

KINDS = {1: "with passes", 2: "after them", 0: "gathering"}


def epoch_seconds(binary, args, extra):
    command = [binary, "train", "--train", args.train, "--test", args.test, "--backend", "cpu", "--threads", str(args.threads),
               "--rank", str(args.rank), "--epochs", str(args.epochs), "--eval-every", "1000", "--json"] + extra
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return [e["sgd_seconds"] for e in json.loads(done.stdout)["history"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10, help="at least 4, so every kind of epoch comes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    if args.epochs < 4:
        parser.error("--epochs: at least 4, so every kind of epoch comes")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    rounds = []
    for _ in range(args.rounds):
        runs = [("plain", args.binaries[0], ["--no-svdpp"])] + [(b, b, []) for b in args.binaries]
        least = {}
        for name, binary, extra in runs:
            for e, seconds in enumerate(epoch_seconds(binary, args, extra)):
                if e > 0:
                    key = (name, "plain" if name == "plain" else KINDS[e % 3])
                    least[key] = min(least.get(key, float("inf")), seconds)
        rounds.append(least)
    least = {key: min(r[key] for r in rounds) for key in rounds[0]}

    def ratio(least, b):
        return sum(least[(b, kind)] for kind in KINDS.values()) / (3 * least[("plain", "plain")])

    print(f"rank {args.rank}, {args.threads} thread(s), least of {args.rounds} rounds; plain {least[('plain', 'plain')]:.3f} s")
    for b in args.binaries:
        cells = ", ".join(f"{kind} {least[(b, kind)]:.3f}" for kind in KINDS.values())
        each = [ratio(r, b) for r in rounds]
        print(f"{b}: {cells}; three term epochs / three plain {ratio(least, b):.3f}; "
              f"by round {' '.join(f'{x:.3f}' for x in each)}, median {statistics.median(each):.3f}")


if __name__ == "__main__":
    main()
