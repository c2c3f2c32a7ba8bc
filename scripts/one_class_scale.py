#!/usr/bin/env python3
"""Seconds per ALS iteration on a large file of events: gpumf's --loss ials beside implicit's
ALS, at the same rank, threads and iterations, on the same CSR matrix, in one run.

usage: scripts/one_class_scale.py EVENTS [--rank 128] [--iterations 3] [--threads N]

EVENTS holds `user item` lines (e.g. from `gpumf generate --events --output-format tab`).
Each trainer gets the same scipy CSR matrix (repeated pairs summed); the seconds are each fit
call's, and per iteration after subtracting a 1-iteration fit (set-up cancels out).
Needs numpy, scipy, pandas, implicit and the gpumf package (scripts/test.sh builds it).
"""
import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import scipy.sparse as sp


def timed(fit):
    t = time.perf_counter()
    fit()
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events")
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    frame = pd.read_csv(args.events, sep=r"\s+", header=None, names=["user", "item"], usecols=[0, 1], dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(frame), dtype=np.float32), (frame.user.values, frame.item.values)))
    matrix.sum_duplicates()
    print(f"{args.events}: {matrix.nnz} events, {matrix.shape[0]} users x {matrix.shape[1]} items; rank {args.rank}, {args.threads} threads", flush=True)

    from implicit.als import AlternatingLeastSquares
    import gpumf

    def implicit_fit(iterations):
        model = AlternatingLeastSquares(factors=args.rank, iterations=iterations, num_threads=args.threads, random_state=1)
        return lambda: model.fit(matrix, show_progress=False)

    def gpumf_fit(iterations):
        model = gpumf.MF(loss="ials", rank=args.rank, epochs=iterations, threads=args.threads, backend="cpu", verbose=False)
        return lambda: model.fit(matrix)

    for name, fit in (("implicit ALS", implicit_fit), ("gpumf ials", gpumf_fit)):
        one, many = timed(fit(1)), timed(fit(args.iterations))
        per = (many - one) / (args.iterations - 1) if args.iterations > 1 else many
        print(f"{name:14s} {args.iterations} iterations {many:7.2f} s, 1 iteration {one:6.2f} s: {per:6.2f} s per iteration", flush=True)


if __name__ == "__main__":
    main()
