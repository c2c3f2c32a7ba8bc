#!/usr/bin/env python3
"""Training from Python against the CLI, same file, same settings, runs alternated.

    python scripts/python_vs_cli.py DATA [--runs 3] [-- gpumf train flags]

Times, per run: the CLI as a process (`gpumf train --train DATA FLAGS --json --quiet`: start,
load, train), `gpumf.MF(...).fit(DATA)` (load through the same loader, train), and `fit` on the
ratings already in NumPy arrays. Prints the medians and the ratios to the CLI, and each side's
own `train_seconds` (the epochs alone), which should agree: it is the same engine.
Needs the package installed (scripts/test.sh installs it into target/venv) and
target/release/gpumf built.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import gpumf

REPO = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data")
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--cli", default=str(REPO / "target" / "release" / "gpumf"))
argv = sys.argv[1:]
flags = argv[argv.index("--") + 1 :] if "--" in argv else []
args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
args.flags = flags  # for gpumf train: --rank, --epochs, --threads, --backend, --lr, --reg

# The same flags, as MF's keyword arguments.
names = {"--rank": ("rank", int), "--epochs": ("epochs", int), "--threads": ("threads", int), "--backend": ("backend", str), "--lr": ("lr", float), "--reg": ("reg", float)}
settings = {}
for flag, value in zip(args.flags[::2], args.flags[1::2]):
    key, kind = names[flag]
    settings[key] = kind(value)

(users, items, ratings), _ = gpumf._gpumf.load_file(args.data)
# The (n, 3) array a NumPy user would hold: built before the clock starts.
array = np.column_stack([users.astype(np.float64), items.astype(np.float64), ratings.astype(np.float64)])

try:
    import pandas as pd

    frame = pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64), "rating": ratings})
except ImportError:
    frame = None

cli, path, memory, frames, cli_train, py_train, array_train, frame_train = [], [], [], [], [], [], [], []
for run in range(args.runs):
    t = time.perf_counter()
    out = subprocess.run([args.cli, "train", "--train", args.data, *args.flags, "--json", "--quiet"], capture_output=True, text=True, check=True)
    cli.append(time.perf_counter() - t)
    cli_train.append(json.loads(out.stdout)["train_seconds"])

    t = time.perf_counter()
    m = gpumf.MF(verbose=False, **settings).fit(args.data)
    path.append(time.perf_counter() - t)
    py_train.append(m.summary["train_seconds"])

    t = time.perf_counter()
    m = gpumf.MF(verbose=False, **settings).fit(array)
    memory.append(time.perf_counter() - t)
    array_train.append(m.summary["train_seconds"])
    if frame is not None:
        t = time.perf_counter()
        m = gpumf.MF(verbose=False, **settings).fit(frame)
        frames.append(time.perf_counter() - t)
        frame_train.append(m.summary["train_seconds"])
    print(f"run {run + 1}: CLI {cli[-1]:.3f} s, fit(path) {path[-1]:.3f} s, fit(array) {memory[-1]:.3f} s", file=sys.stderr)

med = statistics.median
print(f"data: {args.data} ({len(ratings)} ratings); flags: {' '.join(args.flags) or '(defaults)'}; {args.runs} runs, medians")
print(f"CLI process         {med(cli):8.3f} s   (its epochs: {med(cli_train):.3f} s)")
print(f"Python fit(path)    {med(path):8.3f} s   (its epochs: {med(py_train):.3f} s)   {med(path) / med(cli):.3f}x the CLI")
print(f"Python fit(array)   {med(memory):8.3f} s   (its epochs: {med(array_train):.3f} s)   {med(memory) / med(cli):.3f}x the CLI")
if frames:
    print(f"Python fit(frame)   {med(frames):8.3f} s   (its epochs: {med(frame_train):.3f} s)   {med(frames) / med(cli):.3f}x the CLI")
