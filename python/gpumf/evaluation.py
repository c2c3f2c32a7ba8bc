"""Ranking metrics of a fitted model, in the shape of implicit's ``evaluation`` module."""

from typing import Optional


def ranking_metrics(model, train, test, k: int = 10, metrics: Optional[list] = None) -> dict:
    """Precision, recall, NDCG and MAP at ``k`` and AUC (or the ``metrics`` named) of
    ``model``'s top-k lists on the positives of ``test``, each user's ``train`` items left out
    of the candidates (``train=None``: the items the model recorded when it was fitted).
    ``train`` and ``test`` are given as ``MF.fit`` takes data, e.g. SciPy CSR matrices with
    users as rows. See ``MF.ranking_metrics``."""
    return model.ranking_metrics(test, k=k, metrics=metrics, train=train)


def train_test_split(ratings, train_fraction: float = 0.8, seed: int = 0):
    """Splits a SciPy sparse matrix of events (users as rows) per user: about
    ``train_fraction`` of each user's entries go to train and the rest to test, chosen with
    ``seed``. Returns (train, test) as CSR matrices of the same shape."""
    import numpy as np
    import scipy.sparse as sp

    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    csr = sp.csr_matrix(ratings)
    rng = np.random.default_rng(seed)
    in_test = np.zeros(csr.nnz, dtype=bool)
    for u in range(csr.shape[0]):
        start, end = csr.indptr[u], csr.indptr[u + 1]
        count = end - start
        held = int(round(count * (1.0 - train_fraction)))
        if count > 1 and held > 0:
            in_test[start + rng.choice(count, size=min(held, count - 1), replace=False)] = True
    coo = csr.tocoo()
    part = lambda mask: sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=csr.shape)
    return part(~in_test), part(in_test)
