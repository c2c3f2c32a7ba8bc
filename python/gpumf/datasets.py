"""Rating data that ships with gpumf."""

from __future__ import annotations

import numpy as np

from . import _gpumf


def load_latest_small(as_frame: bool = True):
    """MovieLens latest-small (100,836 ratings of 9,724 movies by 610 users, 0.5-5 stars), as
    shipped in the repository under GroupLens' terms (data/ml-latest-small/README.txt).

    Returns a pandas DataFrame with columns ``user``, ``item`` and ``rating`` (when pandas is
    installed and ``as_frame``), else an (n, 3) float64 NumPy array of the same columns. The
    rows are in the file's order, so ``MF(threads=1).fit(...)`` on it trains exactly as
    ``gpumf train --train data/ml-latest-small/ratings.csv --threads 1`` does.
    """
    users, items, ratings = _gpumf.latest_small()
    if as_frame:
        try:
            import pandas as pd

            return pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64), "rating": ratings})
        except ImportError:
            pass
    return np.column_stack([users.astype(np.float64), items.astype(np.float64), ratings.astype(np.float64)])
