#!/usr/bin/env python3
"""Test RMSE of gpumf's defaults beside Surprise's SVD, SVD++ and KNNBaseline and LIBMF's
defaults, on the same split files, in one run.

usage: accuracy_peers.py [--libmf DIR] [--gpumf BIN] [--gpumf-flags "..."] [--skip NAME,..] TRAIN,TEST [TRAIN,TEST ...]

TRAIN and TEST are `user item rating` files (tab or space separated). Surprise comes from
`pip install scikit-surprise` in the Python that runs this; LIBMF's mf-train and mf-predict
from `make -C ../shared/peers/libmf` (copied elsewhere first). Each peer runs with its own
defaults (KNNBaseline item-based with pearson_baseline similarity, as its documentation's
best setting); the scale of the ratings is given to Surprise from the training file.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            u, i, r = line.split()[:3]
            rows.append((u, i, float(r)))
    return rows


def rmse(pairs):
    return math.sqrt(sum((p - r) ** 2 for p, r in pairs) / len(pairs))


def gpumf(binary, train, test, flags):
    out = subprocess.run([binary, "train", "--train", train, "--test", test, "--json", *flags], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return d["test_rmse"], d["total_seconds"]


def libmf(directory, train, test):
    with tempfile.TemporaryDirectory() as work:
        # LIBMF reads non-negative integer ids; map ids to dense indices the same way for both files.
        ids = [{}, {}]
        def write(src, dst):
            with open(dst, "w") as f:
                for u, i, r in read(src):
                    a = ids[0].setdefault(u, len(ids[0]))
                    b = ids[1].setdefault(i, len(ids[1]))
                    f.write(f"{a} {b} {r}\n")
        write(train, f"{work}/tr")
        write(test, f"{work}/te")
        start = time.time()
        subprocess.run([f"{directory}/mf-train", "-s", str(os.cpu_count()), "--quiet", f"{work}/tr", f"{work}/m"], check=True, capture_output=True)
        seconds = time.time() - start
        out = subprocess.run([f"{directory}/mf-predict", "-e", "0", f"{work}/te", f"{work}/m", f"{work}/out"], check=True, capture_output=True, text=True).stdout
        return float(out.split("=")[-1]), seconds


def surprise(algorithm, train, test):
    import surprise as s
    rows = read(train)
    low, high = min(r for _, _, r in rows), max(r for _, _, r in rows)
    import pandas as pd
    data = s.Dataset.load_from_df(pd.DataFrame(rows, columns=["u", "i", "r"]), s.Reader(rating_scale=(low, high)))
    trainset = data.build_full_trainset()
    algo = {
        "SVD": lambda: s.SVD(random_state=0),
        "SVD++": lambda: s.SVDpp(random_state=0, cache_ratings=True),
        "KNNBaseline": lambda: s.KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False),
    }[algorithm]()
    start = time.time()
    algo.fit(trainset)
    predictions = algo.test(read(test))
    return rmse([(p.est, p.r_ui) for p in predictions]), time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libmf", default=None)
    parser.add_argument("--gpumf", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "gpumf"))
    parser.add_argument("--gpumf-flags", default="--backend cpu --threads 1")
    parser.add_argument("--skip", default="")
    parser.add_argument("pairs", nargs="+")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    runners = [("gpumf", lambda tr, te: gpumf(args.gpumf, tr, te, args.gpumf_flags.split()))]
    runners += [(name, (lambda n: lambda tr, te: surprise(n, tr, te))(name)) for name in ["SVD", "SVD++", "KNNBaseline"]]
    if args.libmf:
        runners.append(("LIBMF", lambda tr, te: libmf(args.libmf, tr, te)))
    print("| data | " + " | ".join(n for n, _ in runners if n not in skip) + " |")
    print("|---" * (1 + len([n for n, _ in runners if n not in skip])) + "|")
    for pair in args.pairs:
        train, test = pair.split(",")
        cells = []
        for name, run in runners:
            if name in skip:
                continue
            value, seconds = run(train, test)
            cells.append(f"{value:.4f} ({seconds:.1f} s)")
            print(f"  {os.path.basename(train)} {name}: {value:.4f} in {seconds:.1f} s", file=sys.stderr, flush=True)
        print(f"| {os.path.basename(train)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
