#!/usr/bin/env python3
"""How ials's default w0 was chosen: on a validation split inside each training file (never the
test file), NDCG@20 of `gpumf train --loss ials` over a grid of --unobserved-weight (w0) and
--reg, beside the default (w0 scaled to the data: 1.3 * sqrt(the share of pairs named)).

usage: scripts/one_class_defaults.py TRAIN.tsv [TRAIN.tsv ...] [--gpumf target/release/gpumf]

Each TRAIN.tsv is a training file of `user item 1` lines, such as scripts/one_class_peers.py
writes to OUT_DIR/train.tsv. 20% of each user's events (users with at least 5) are held out,
seeded, into a validation file beside it (TRAIN.fit.tsv, TRAIN.valid.tsv).
"""
import argparse
import os
import re
import subprocess

import numpy as np


def validation_split(path, seed=43):
    d = np.loadtxt(path, dtype=np.int64, usecols=(0, 1))
    rng = np.random.default_rng(seed)
    d = d[np.lexsort((rng.random(len(d)), d[:, 0]))]
    _, starts = np.unique(d[:, 0], return_index=True)
    ends = np.r_[starts[1:], len(d)]
    held = np.zeros(len(d), bool)
    for s, e in zip(starts, ends):
        if e - s >= 5:
            held[s:s + int(round((e - s) * 0.2))] = True
    base = os.path.splitext(path)[0]
    fit, valid = base + ".fit.tsv", base + ".valid.tsv"
    np.savetxt(fit, d[~held], fmt="%d\t%d\t1")
    np.savetxt(valid, d[held], fmt="%d\t%d\t1")
    return fit, valid, len(d[~held]), len(np.unique(d[~held, 0])), len(np.unique(d[~held, 1]))


def ndcg(gpumf, fit, valid, extra):
    out = subprocess.run([gpumf, "train", "--train", fit, "--test", valid, "--loss", "ials", "--backend", "cpu"] + extra, capture_output=True, text=True, check=True)
    return float(re.search(r"test NDCG@20 ([0-9.]+)", out.stdout).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", nargs="+")
    parser.add_argument("--gpumf", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "gpumf"))
    args = parser.parse_args()
    grid = [(w, r) for w in (0.3, 0.2, 0.1, 0.05, 0.02, 0.005) for r in (0.05, 0.025, 0.005)]
    for path in args.train:
        fit, valid, n, users, items = validation_split(path)
        scaled = 1.3 * np.sqrt(n / (users * items))
        print(f"{path}: {n} events to fit, {users} users x {items} items; scaled w0 {scaled:.4f}", flush=True)
        best = max((ndcg(args.gpumf, fit, valid, ["--unobserved-weight", str(w), "--reg", str(r)]), w, r) for w, r in grid)
        print(f"  best of the grid: NDCG@20 {best[0]:.4f} at w0 {best[1]}, reg {best[2]}")
        print(f"  w0 0.2 (the old fixed default), reg 0.025: {ndcg(args.gpumf, fit, valid, ['--unobserved-weight', '0.2']):.4f}")
        print(f"  the default (scaled w0, reg 0.025): {ndcg(args.gpumf, fit, valid, []):.4f}", flush=True)


if __name__ == "__main__":
    main()
