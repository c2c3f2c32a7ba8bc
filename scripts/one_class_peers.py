#!/usr/bin/env python3
"""Top-N recommendation from events: gpumf beside implicit's ALS and BPR, LIBMF's one-class
losses (-f 10, 11, 12) and EASE, on the same split files, by Recall@K and NDCG@K (each user's
training items left out), with training seconds, in one run.

usage: scripts/one_class_peers.py RATINGS OUT_DIR [--threshold 4] [--min-events 5]
                                  [--test-fraction 0.2] [--seed 42] [--k 20] [--threads N]

RATINGS is a rating file (MovieLens u.data, tab-separated, or ratings.csv with a header), or
of counts (Last.fm's user_artists.dat, tab-separated with a header: --threshold 1 makes every
pair an event). Ratings of --threshold and above become events; users with fewer than --min-events events are
dropped; each user's events are split --test-fraction to test, seeded. The split is written to
OUT_DIR/train.tsv and OUT_DIR/test.tsv (`user item 1`), so every method trains on the same
file. Keep OUT_DIR outside the repository for data whose licence forbids redistribution.

Metrics are computed here, in NumPy, for every method alike, with gpumf's definitions
(`gpumf eval --metrics`): recall@K = hits in the top K / the user's test events, NDCG@K with
gain 1/log2(place + 1) over the best the user's events allow, averaged over users; for
gpumf's model they are checked against gpumf's own `ranking_metrics`.

Tuned settings are chosen on a validation split inside the training events (20% of each
user's), never on the test file. Needs numpy, scipy and implicit (`pip install implicit`), and
the gpumf Python package (scripts/test.sh builds it into target/venv), and LIBMF's mf-train
(built in ../shared/peers/libmf, or where LIBMF names).
"""
import argparse
import os
import sys
import time

# implicit's ALS asks for BLAS on one thread (it threads over users itself).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp


def read_events(path, threshold):
    with open(path) as f:
        first = f.readline()
    if "," in first:
        skip = 1 if any(c.isalpha() for c in first) else 0
        data = np.loadtxt(path, delimiter=",", skiprows=skip, usecols=(0, 1, 2))
    else:
        skip = 1 if any(c.isalpha() for c in first) else 0
        data = np.loadtxt(path, skiprows=skip, usecols=(0, 1, 2))
    keep = data[:, 2] >= threshold
    return data[keep, 0].astype(np.int64), data[keep, 1].astype(np.int64)


def split_per_user(users, items, fraction, seed, min_events):
    """Dense ids, then each user's events cut at random into train and test."""
    _, u = np.unique(users, return_inverse=True)
    counts = np.bincount(u)
    keep = counts[u] >= min_events
    users, items = users[keep], items[keep]
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(u)), u))
    u, i = u[order], i[order]
    starts = np.r_[0, np.cumsum(np.bincount(u))]
    test = np.zeros(len(u), dtype=bool)
    for user in range(len(starts) - 1):
        n = starts[user + 1] - starts[user]
        held = max(1, int(round(n * fraction)))
        test[starts[user]:starts[user] + held] = True
    shape = (len(user_ids), len(item_ids))
    matrix = lambda m: sp.csr_matrix((np.ones(m.sum(), dtype=np.float32), (u[m], i[m])), shape=shape)
    return matrix(~test), matrix(test), user_ids, item_ids


def metrics(score_rows, train, test, k):
    """Mean recall@k and NDCG@k over users with test events; `score_rows(users)` gives their
    scores for every item."""
    users = np.flatnonzero(np.diff(test.indptr))
    recall, ndcg = [], []
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    for start in range(0, len(users), 256):
        block = users[start:start + 256]
        scores = np.array(score_rows(block), dtype=np.float64)
        for row, user in enumerate(block):
            s = scores[row]
            s[train.indices[train.indptr[user]:train.indptr[user + 1]]] = -np.inf
            top = np.argpartition(-s, k)[:k]
            # Best first; equal scores by item, as gpumf orders them.
            top = top[np.lexsort((top, -s[top]))]
            truth = test.indices[test.indptr[user]:test.indptr[user + 1]]
            hits = np.isin(top, truth)
            recall.append(hits.sum() / len(truth))
            ndcg.append((gains * hits).sum() / gains[:min(k, len(truth))].sum())
    return float(np.mean(recall)), float(np.mean(ndcg))


def validation_split(train, seed):
    """20% of each user's training events held out, for choosing tuned settings."""
    coo = train.tocoo()
    rng = np.random.default_rng(seed + 1)
    order = np.lexsort((rng.random(coo.nnz), coo.row))
    row, col = coo.row[order], coo.col[order]
    starts = np.r_[0, np.cumsum(np.bincount(row, minlength=train.shape[0]))]
    held = np.zeros(coo.nnz, dtype=bool)
    for user in range(train.shape[0]):
        n = starts[user + 1] - starts[user]
        if n >= 5:
            held[starts[user]:starts[user] + int(round(n * 0.2))] = True
    part = lambda m: sp.csr_matrix((np.ones(m.sum(), dtype=np.float32), (row[m], col[m])), shape=train.shape)
    return part(~held), part(held)


def ease(train, reg):
    x = train.toarray().astype(np.float64)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += reg
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return lambda users: x[users] @ b


def implicit_model(kind, settings, threads):
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    cls = AlternatingLeastSquares if kind == "als" else BayesianPersonalizedRanking
    return cls(num_threads=threads, random_state=1, **settings)


def fit_implicit(kind, settings, train, threads):
    model = implicit_model(kind, settings, threads)
    model.fit(train, show_progress=False)
    users, items = model.user_factors, model.item_factors
    users = users.to_numpy() if hasattr(users, "to_numpy") else np.asarray(users)
    items = items.to_numpy() if hasattr(items, "to_numpy") else np.asarray(items)
    return lambda rows: users[rows] @ items.T


def fit_gpumf(train, threads, seed, loss="ials"):
    """gpumf's one-class loss at its defaults, on the CSR matrix of events (implicit's convention)."""
    import gpumf

    return gpumf.MF(loss=loss, threads=threads, verbose=False, seed=seed).fit(train)


LIBMF = os.environ.get("LIBMF", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "libmf"))


def write_events(path, m):
    coo = m.tocoo()
    np.savetxt(path, np.c_[coo.row, coo.col, np.ones(coo.nnz)], fmt="%d", delimiter="\t")


def fit_libmf(loss, settings, train, threads, work):
    """LIBMF's one-class losses (-f 10, 11, 12) from its command line; the factors read back
    from its model file."""
    import subprocess

    data, model = os.path.join(work, "libmf.train.tsv"), os.path.join(work, "libmf.model")
    write_events(data, train)
    flags = [f"-{key} {value}" for key, value in settings.items()]
    command = f"{os.path.join(LIBMF, 'mf-train')} -f {loss} -s {threads} --quiet {' '.join(flags)} {data} {model}"
    subprocess.run(command.split(), check=True)
    p, q = np.zeros((train.shape[0], 1)), np.zeros((train.shape[1], 1))
    with open(model) as f:
        header = dict(f.readline().split() for _ in range(5))
        k = int(header["k"])
        p, q = np.zeros((train.shape[0], k)), np.zeros((train.shape[1], k))
        for line in f:
            fields = line.split()
            side, row = (p if fields[0][0] == "p" else q), int(fields[0][1:])
            if fields[1] == "T" and row < side.shape[0]:
                side[row] = np.array(fields[2:], dtype=float)
    return lambda rows: p[rows] @ q.T


def gpumf_scores(model, n_items):
    factors_u, factors_i = model.user_factors, model.item_factors
    index_u = {int(u): k for k, u in enumerate(model.user_ids)}
    index_i = np.full(n_items, -1)
    for k, i in enumerate(model.item_ids):
        index_i[int(i)] = k
    bias_i = np.where(index_i >= 0, model.item_bias[np.maximum(index_i, 0)], -np.inf)
    q = np.where((index_i >= 0)[:, None], factors_i[np.maximum(index_i, 0)], 0.0)

    def rows(users):
        out = np.empty((len(users), n_items))
        for r, u in enumerate(users):
            k = index_u[int(u)]
            out[r] = model.global_mean + model.user_bias[k] + bias_i + q @ factors_u[k]
        return out

    return rows


def timed(fit):
    t = time.perf_counter()
    result = fit()
    return result, time.perf_counter() - t


def tune(fit, grid, train, k):
    """The setting of `grid` whose `fit(setting, data)` ranks a validation split of the
    training events best by NDCG@K."""
    fit_part, held = validation_split(train, 0)
    return max(grid, key=lambda s: metrics(fit(s, fit_part), fit_part, held, k)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ratings")
    parser.add_argument("out_dir")
    parser.add_argument("--threshold", type=float, default=4)
    parser.add_argument("--min-events", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    users, items = read_events(args.ratings, args.threshold)
    train, test, _, _ = split_per_user(users, items, args.test_fraction, args.seed, args.min_events)
    for name, m in (("train.tsv", train), ("test.tsv", test)):
        write_events(os.path.join(args.out_dir, name), m)
    print(f"{args.ratings}: {train.nnz + test.nnz} events (ratings >= {args.threshold}), {train.shape[0]} users x {train.shape[1]} items; "
          f"train {train.nnz}, test {test.nnz}; K = {args.k}, {args.threads} threads")
    k, threads = args.k, args.threads
    rows = []

    def run(name, fit):
        score, seconds = timed(fit)
        recall, ndcg = metrics(score, train, test, k)
        rows.append((name, recall, ndcg, seconds))
        print(f"{name:48s} recall@{k} {recall:.4f}  ndcg@{k} {ndcg:.4f}  {seconds:7.2f} s", flush=True)

    run("EASE (lambda 500)", lambda: ease(train, 500.0))
    als_defaults = {}
    run("implicit ALS (defaults)", lambda: fit_implicit("als", als_defaults, train, threads))
    als_grid = [dict(factors=f, regularization=r, alpha=a, iterations=15) for f in (64, 128) for r in (0.01, 0.1) for a in (1.0, 10.0)]
    best = tune(lambda s, data: fit_implicit("als", s, data, threads), als_grid, train, k)
    run(f"implicit ALS (tuned: {best})", lambda: fit_implicit("als", best, train, threads))
    run("implicit BPR (defaults)", lambda: fit_implicit("bpr", {}, train, threads))
    bpr_grid = [dict(factors=f, learning_rate=lr, regularization=0.01, iterations=it) for f in (64, 128) for lr in (0.01, 0.05) for it in (100, 300)]
    best = tune(lambda s, data: fit_implicit("bpr", s, data, threads), bpr_grid, train, k)
    run(f"implicit BPR (tuned: {best})", lambda: fit_implicit("bpr", best, train, threads))

    for loss, name in ((10, "row-oriented BPR"), (11, "column-oriented BPR"), (12, "squared")):
        run(f"LIBMF -f {loss} {name} (defaults)", lambda: fit_libmf(loss, {}, train, threads, args.out_dir))
        libmf_grid = [dict(k=dims, l2=reg, t=20) for dims in (32, 128) for reg in (0.01, 0.1)]
        best = tune(lambda s, data: fit_libmf(loss, s, data, threads, args.out_dir), libmf_grid, train, k)
        run(f"LIBMF -f {loss} (tuned: {best})", lambda: fit_libmf(loss, best, train, threads, args.out_dir))

    run("gpumf bpr (defaults)", lambda: gpumf_scores(fit_gpumf(train, threads, args.seed, "bpr"), train.shape[1]))
    run("gpumf bpr-columns (defaults)", lambda: gpumf_scores(fit_gpumf(train, threads, args.seed, "bpr-columns"), train.shape[1]))
    model, seconds = timed(lambda: fit_gpumf(train, threads, args.seed))
    score = gpumf_scores(model, train.shape[1])
    recall, ndcg = metrics(score, train, test, k)
    # The same definitions here and in gpumf: gpumf leaves out test events of items it never
    # saw, so compare on the test events of items it knows.
    known = np.zeros(train.shape[1], dtype=bool)
    known[np.asarray(model.item_ids, dtype=np.int64)] = True
    coo = test.tocoo()
    keep = known[coo.col]
    known_test = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=test.shape)
    mine = metrics(score, train, known_test, k)
    own = model.ranking_metrics(known_test, k=k, metrics=[f"recall@{k}", f"ndcg@{k}"], train=train)
    # Within 1e-3: both score in f32, but with sums in other orders, so near-ties at the 20th
    # place can fall the other way (on Last.fm's 17,617 artists, 11 hits of 16,184).
    if abs(own[f"recall@{k}"] - mine[0]) > 1e-3 or abs(own[f"ndcg@{k}"] - mine[1]) > 1e-3:
        sys.exit(f"gpumf's ranking_metrics ({own}) disagree with this script's ({mine})")
    rows.append(("gpumf ials (defaults)", recall, ndcg, seconds))
    print(f"{'gpumf ials (defaults)':48s} recall@{k} {recall:.4f}  ndcg@{k} {ndcg:.4f}  {seconds:7.2f} s  (gpumf's own metrics agree)")


if __name__ == "__main__":
    main()
