#!/usr/bin/env python3
"""gpumf's losses beside LIBMF's on the same files, in one run: binary labels (LIBMF -f 5, 6, 7
beside gpumf's logistic, squared-hinge and hinge losses) on accuracy, log loss (logistic) and
AUC; the absolute error (-f 1 beside --loss absolute) on MAE; the generalised KL divergence
(-f 2 --nmf beside --loss kl) on its mean, RMSE and MAE. Every metric is computed here, the same
way for both, from each program's predictions of the test file.

usage: losses_vs_libmf.py --libmf DIR [--gpumf BIN] [--threads N] [--gpumf-flags "..."] NAME:TRAIN,TEST [...]

TRAIN and TEST are `user item rating` files of explicit ratings; ratings of 4 and above are the
positive label of the binary losses (written to binary files here, for both programs). LIBMF
runs with its defaults (k 8, 20 iterations, lr 0.1, L2 0.1) on the given threads, gpumf with
its defaults for each loss (--loss only). Seconds are each program's whole run (loading
included), on the same threads.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

BINARY = [("logistic", 5), ("squared-hinge", 6), ("hinge", 7)]
REAL = [("absolute", 1, []), ("kl", 2, ["--nmf"])]


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            u, i, r = line.split()[:3]
            rows.append((int(u), int(i), float(r)))
    return rows


def write(rows, path, binary):
    with open(path, "w") as f:
        for u, i, r in rows:
            f.write(f"{u} {i} {(1 if r >= 4 else 0) if binary else r}\n")


def auc(scores, positive):
    order = sorted(range(len(scores)), key=lambda k: scores[k])
    ranks, k = [0.0] * len(scores), 0
    while k < len(order):
        j = k
        while j < len(order) and scores[order[j]] == scores[order[k]]:
            j += 1
        for t in order[k:j]:
            ranks[t] = (k + j + 1) / 2
        k = j
    p = sum(positive)
    n = len(scores) - p
    return (sum(r for r, y in zip(ranks, positive) if y) - p * (p + 1) / 2) / (p * n)


def binary_metrics(scores, labels, probabilities):
    """Accuracy, log loss (from raw scores, or probabilities for gpumf's logistic link) and AUC."""
    positive = [y > 0 for y in labels]
    if probabilities:
        logit = [math.log(max(p, 1e-12) / max(1 - p, 1e-12)) for p in scores]
    else:
        logit = scores
    accuracy = sum((z > 0) == y for z, y in zip(logit, positive)) / len(labels)
    log_loss = sum(max(-(1 if y else -1) * z, 0) + math.log1p(math.exp(-abs(z))) for z, y in zip(logit, positive)) / len(labels)
    return {"accuracy": accuracy, "log_loss": log_loss, "auc": auc(logit, positive)}


def real_metrics(predicted, truth):
    n = len(truth)
    e = [p - r for p, r in zip(predicted, truth)]
    gkl = sum(r * math.log(r / max(p, 1e-6)) - r + max(p, 1e-6) for p, r in zip(predicted, truth) if r > 0) / n
    return {"mae": sum(abs(x) for x in e) / n, "rmse": math.sqrt(sum(x * x for x in e) / n), "gkl": gkl}


def run_libmf(libmf, train, test, fun, extra, threads, work):
    start = time.time()
    subprocess.run([f"{libmf}/mf-train", "-f", str(fun), "-s", str(threads), "--quiet", *extra, train, f"{work}/m"], check=True, capture_output=True)
    subprocess.run([f"{libmf}/mf-predict", test, f"{work}/m", f"{work}/out"], check=True, capture_output=True)
    seconds = time.time() - start
    return [float(x) for x in open(f"{work}/out")], seconds


def run_gpumf(binary, train, test, loss, threads, flags, work):
    model = f"{work}/g.gpumf"
    start = time.time()
    subprocess.run([binary, "train", "--train", train, "--loss", loss, "--backend", "cpu", "--threads", str(threads), "--save", model, "--force", "--quiet", *flags], check=True, capture_output=True)
    out = subprocess.run([binary, "predict", "--model", model, "--pairs", test], check=True, capture_output=True, text=True).stdout
    seconds = time.time() - start
    return [float(line.split("\t")[2]) for line in out.splitlines()], seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libmf", required=True)
    ap.add_argument("--gpumf", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "gpumf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gpumf-flags", default="")
    ap.add_argument("sets", nargs="+")
    args = ap.parse_args()
    flags = args.gpumf_flags.split()
    results = {}
    for spec in args.sets:
        name, files = spec.split(":", 1)
        train_path, test_path = files.split(",")
        train, test = read(train_path), read(test_path)
        with tempfile.TemporaryDirectory() as work:
            for binary in (True, False):
                write(train, f"{work}/train{binary}", binary)
                write(test, f"{work}/test{binary}", binary)
            labels = [1 if r >= 4 else 0 for _, _, r in test]
            truth = [r for _, _, r in test]
            for loss, fun in BINARY:
                for who in ("gpumf", "LIBMF"):
                    if who == "gpumf":
                        scores, seconds = run_gpumf(args.gpumf, f"{work}/trainTrue", f"{work}/testTrue", loss, args.threads, flags, work)
                        m = binary_metrics(scores, labels, probabilities=(loss == "logistic"))
                    else:
                        scores, seconds = run_libmf(args.libmf, f"{work}/trainTrue", f"{work}/testTrue", fun, [], args.threads, work)
                        m = binary_metrics(scores, labels, probabilities=False)
                    results.setdefault((loss, who), []).append((name, m, seconds))
            for loss, fun, extra in REAL:
                for who in ("gpumf", "LIBMF"):
                    if who == "gpumf":
                        predicted, seconds = run_gpumf(args.gpumf, f"{work}/trainFalse", f"{work}/testFalse", loss, args.threads, flags, work)
                    else:
                        predicted, seconds = run_libmf(args.libmf, f"{work}/trainFalse", f"{work}/testFalse", fun, extra, args.threads, work)
                    results.setdefault((loss, who), []).append((name, real_metrics(predicted, truth), seconds))
        print(f"done {name}", file=sys.stderr)
    shown = {"logistic": ["accuracy", "log_loss", "auc"], "squared-hinge": ["accuracy", "auc"], "hinge": ["accuracy", "auc"], "absolute": ["mae", "rmse"], "kl": ["gkl", "rmse", "mae"]}
    print("| loss | program | set | " + " | ".join(["metric 1", "metric 2", "metric 3"]) + " | seconds |")
    print("|---|---|---|---|---|---|---|")
    for (loss, who), rows in results.items():
        for name, m, seconds in rows:
            cells = [f"{k} {m[k]:.4f}" for k in shown[loss]] + [""] * (3 - len(shown[loss]))
            print(f"| {loss} | {who} | {name} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    # Means over the sets whose names start alike (u1..u5 as ml-100k).
    print()
    print("| loss | metric | gpumf | LIBMF | better |")
    print("|---|---|---|---|---|")
    groups = sorted({name.rstrip("0123456789") for rows in results.values() for name, _, _ in rows})
    for loss in shown:
        for group in groups:
            for k in shown[loss]:
                mean = lambda who: sum(m[k] for name, m, _ in results[(loss, who)] if name.rstrip("0123456789") == group) / sum(1 for name, _, _ in results[(loss, who)] if name.rstrip("0123456789") == group)
                g, l = mean("gpumf"), mean("LIBMF")
                higher = k in ("accuracy", "auc")
                better = (g > l) if higher else (g < l)
                print(f"| {loss} | {group} {k} | {g:.4f} | {l:.4f} | {'gpumf' if better else 'LIBMF'} |")


if __name__ == "__main__":
    main()
