"""gpumf: matrix factorisation of sparse rating data by SGD, on the GPU (wgpu) or the CPU.

The same engine as the ``gpumf`` command line: the model, the trainers, the loaders and the
model file are the Rust library's; this package turns NumPy, SciPy and pandas data into its
columns and its results into NumPy arrays.

    >>> import gpumf
    >>> ratings = gpumf.datasets.load_latest_small()
    >>> model = gpumf.MF(epochs=20).fit(ratings, test_fraction=0.2)
    >>> model.history[-1]["test_rmse"]
    >>> items, scores = model.recommend(1, n=10)
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import warnings
import zipfile
from typing import Any, Callable, Optional

import numpy as np

from . import _gpumf, datasets

__all__ = ["MF", "load", "adapters", "datasets"]

_DEFAULTS = _gpumf.default_params()
# A data frame's columns are found by the names a file's header gives them for the CLI.
_USER_COLUMNS = tuple(_gpumf.USER_COLUMNS)
_ITEM_COLUMNS = tuple(_gpumf.ITEM_COLUMNS)
_RATING_COLUMNS = tuple(_gpumf.RATING_COLUMNS)
# Stands for an id the model has never seen (predicted from the mean and the known biases).
_UNKNOWN = np.iinfo(np.uint64).max


def adapters() -> list:
    """The GPU adapters wgpu sees, as ``gpumf info --json`` lists them (a list of dicts)."""
    return json.loads(_gpumf.adapters())


class _Ids:
    """How one side's ids (users or items) map to the engine's unsigned integer ids.

    Numeric ids pass through unchanged, so a saved model answers to them in the CLI too; the
    engine refuses a negative or fractional one, as the CLI does. Any other ids (strings,
    dates) are numbered in order of first appearance and the labels are kept, to map results
    back. A model the engine trained from a
    file of labelled ids (ASINs, names) has its own ids for them (``keys``, one per label),
    which the labels are mapped to instead of their numbers.
    """

    def __init__(self, labels: Optional[np.ndarray] = None, keys: Optional[np.ndarray] = None):
        self.labels = labels
        self.keys = keys
        self._index = None

    @classmethod
    def of_model(cls, labelled):
        """The mapping for an engine model's ``user_labels`` or ``item_labels``."""
        if labelled is None:
            return cls()
        keys, labels = labelled
        return cls(np.asarray(labels, dtype=object), np.asarray(keys, dtype=np.uint64))

    @property
    def numbered(self) -> bool:
        """Whether the labels are numbered here (and so saved beside a model file)."""
        return self.labels is not None and self.keys is None

    @classmethod
    def from_column(cls, values, name: str):
        """The mapping for a training column, and the column to hand the engine: numbers go
        as they are (the engine reads int, uint and float columns in place and checks that
        they are whole and non-negative); anything else is numbered here."""
        values = np.asarray(values)
        if values.dtype.kind in "iu":
            return cls(), values if values.dtype.itemsize in (4, 8) else values.astype(np.int64)
        if values.dtype.kind == "f":
            return cls(), values if values.dtype.itemsize in (4, 8) else values.astype(np.float64)
        codes, labels = _factorize(values, name)
        return cls(np.asarray(labels)), codes.astype(np.uint64)

    def encode(self, values, name: str, grow: bool = False) -> np.ndarray:
        """External ids as engine ids; unknown labels become ids the model has never seen."""
        values = np.asarray(values)
        if self.labels is None:
            if not (_integral(values) or values.dtype.kind == "f"):
                if grow:
                    raise ValueError(f"{name}: ids are not numbers, but the training ids were")
                return np.full(values.shape, _UNKNOWN, dtype=np.uint64)
            if values.dtype.kind == "u":
                return values.astype(np.uint64)
            if values.dtype.kind == "f":
                # As training checks its ids: a fraction, NaN or infinity names no one, and a
                # cast would have made it someone (1.5 user 1).
                whole = np.isfinite(values) & (np.floor(values) == values) & (values < 2.0**64)
                if not whole.all():
                    at = int(np.flatnonzero(~whole.ravel())[0])
                    raise ValueError(f"{name}: ids must be whole numbers below 2^64, found {values.ravel()[at]} at position {at}")
            # Negative ids name no one training knew (training refuses them).
            negative = values < 0
            out = np.where(negative, 0, values).astype(np.uint64)
            out[negative] = _UNKNOWN
            return out
        codes = self._lookup(values)
        unknown = codes < 0
        out = codes.astype(np.uint64)
        if self.keys is not None:
            out[~unknown] = self.keys[codes[~unknown]]
        if grow and unknown.any():
            # Test ids absent from training: fresh numbers beyond the training labels.
            fresh, _ = _factorize(values[unknown], name, rows=np.flatnonzero(unknown))
            out[unknown] = len(self.labels) + fresh.astype(np.uint64)
        else:
            out[unknown] = _UNKNOWN
        return out

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Engine ids as the user's labels."""
        if self.labels is None:
            return ids
        if self.keys is not None:
            order = np.argsort(self.keys)
            return self.labels[order[np.searchsorted(self.keys[order], ids)]]
        return self.labels[ids.astype(np.int64)]

    def _lookup(self, values) -> np.ndarray:
        if self._index is None:
            try:
                import pandas as pd

                self._index = pd.Index(self.labels)
            except ImportError:
                self._index = {label: k for k, label in enumerate(self.labels.tolist())}
        if isinstance(self._index, dict):
            return np.array([self._index.get(v, -1) for v in np.asarray(values).tolist()], dtype=np.int64)
        return np.asarray(self._index.get_indexer(values), dtype=np.int64)


def _integral(values: np.ndarray) -> bool:
    return values.dtype.kind in "iu"


def _factorize(values, name: str, rows: Optional[np.ndarray] = None):
    """Codes in order of first appearance and the distinct labels (pandas when it is there).
    A missing label (None, NaN) is refused, named by its row (in ``rows`` where ``values`` were
    taken from a longer column): pandas codes it -1, which as an engine id would be a user or
    item of its own, decoded as the last label."""
    try:
        import pandas as pd

        codes, labels = pd.factorize(values, sort=False)
        missing = codes < 0
    except ImportError:
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in np.asarray(values).tolist()], dtype=bool)
        if not missing.any():
            labels, first, codes = np.unique(values, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            codes, labels = rank[codes], labels[order]
    if missing.any():
        at = int(np.flatnonzero(missing)[0])
        raise ValueError(f"{name}: a missing id (None or NaN) at row {at if rows is None else int(rows[at])}")
    return np.asarray(codes), np.asarray(labels, dtype=object)


def _named(columns, wanted):
    """The column whose name (in any case) is the first of ``wanted`` found, or None."""
    lowered = {str(c).lower(): c for c in columns}
    return next((lowered[name] for name in wanted if name in lowered), None)


def _pick(columns, wanted, position: int, what: str):
    found = _named(columns, wanted)
    if found is not None:
        return found
    if len(columns) < 3:
        raise ValueError(f"data frame has {len(columns)} columns; need {what} columns (user, item, rating)")
    return columns[position]


# What ``fit`` passes to the rating-file loader, with the kind of value each takes; all but
# ``positive_threshold`` apply to files only.
_LOAD_OPTIONS = {"format": str, "skip_bad_lines": bool, "missing": str, "skip_columns": int, "duplicates": str, "counts": bool, "positive_threshold": float, "columns": str}


def _is_path(v) -> bool:
    """Whether ``v`` names a file (rather than holding data)."""
    return isinstance(v, (str, os.PathLike))


def _check_load_options(X, test, load_options: dict) -> dict:
    """The loader's options, each checked for its kind (None: the loader's default). Refuses a
    keyword ``fit`` would otherwise drop: one it does not know (naming the ``MF()`` setting it
    may have been meant as), or a file loader's option with no file (``columns`` picks a data
    frame's columns too)."""
    settings = inspect.signature(MF.__init__).parameters
    for name in load_options:
        if name not in _LOAD_OPTIONS:
            hint = f"; {name} is a setting of MF(): MF({name}=...).fit(...)" if name in settings else ""
            raise TypeError(f"fit() got an unexpected keyword argument {name!r}{hint}")
    in_memory_too = ("positive_threshold",) + (("columns",) if _is_frame(X) or _is_frame(test) else ())
    file_only = [name for name in load_options if name not in in_memory_too]
    if file_only and not (_is_path(X) or _is_path(test)):
        raise ValueError(f"{file_only[0]}={load_options[file_only[0]]!r}: an option of the rating-file loader, but no data were given as a file")
    return {name: _of_kind(name, value, _LOAD_OPTIONS[name]) for name, value in load_options.items() if value is not None}


def _of_kind(name: str, value, kind: type):
    """``value`` as the engine takes an argument of ``kind``, or an error naming it."""
    if kind is int:
        return _whole(name, value, 0)
    if kind is float:
        return _real(name, value)
    if kind is bool:
        return _flag(name, value)
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r}: must be a string")
    return value


def _columns(X, what: str, loss: Optional[str] = None, **load_options):
    """(user column, item column, rating column) from any accepted input, as NumPy columns the
    extension reads in place, and for a file the loader's one-line report. With
    ``positive_threshold`` ratings of it and above are read as 1, the rest as 0, as the CLI's
    ``--positive-threshold`` does. Data of a user and an item alone are events, each a 1, for
    a one-class ``loss``, as a file of such lines is for the CLI."""
    if _is_path(X):
        (users, items, ratings), report = _gpumf.load_file(os.fspath(X), **load_options)
        return users, items, ratings, report
    threshold, columns = load_options.get("positive_threshold"), load_options.get("columns")
    if columns is not None and not _is_frame(X):
        raise ValueError(f"columns={columns!r}: picks the columns of a data frame or a file, and {what} is neither")
    users, items, ratings, report = _columns_of(X, what, loss, columns)
    if threshold is not None:
        ratings = (np.asarray(ratings) >= threshold).astype(np.float32)
    return users, items, ratings, report


def _is_frame(X) -> bool:
    """Whether ``X`` is a data frame (pandas's, or one that acts as it does)."""
    return hasattr(X, "columns") and hasattr(X, "iloc")


def _columns_of(X, what: str, loss: Optional[str], columns: Optional[str] = None):
    """``_columns`` for data in memory."""
    pair = _user_item_pairs(X, what, columns)
    if pair is not None:
        if loss is None or not _gpumf.one_class(str(loss)):
            but = "" if loss is None else f", not loss={loss!r}"
            named = f" (columns {', '.join(map(str, X.columns))}; a rating's is named {', '.join(_RATING_COLUMNS)})" if _is_frame(X) else ""
            raise ValueError(f"{what}: a user and an item but no rating{named}: events (plays, clicks) train with a one-class loss (loss=\"ials\" or \"bpr\"){but}")
        if len(pair[0]) == 0:
            raise ValueError(f"{what}: no events")
        return pair[0], pair[1], np.ones(len(pair[0]), dtype=np.float32), None
    if hasattr(X, "tocoo") and hasattr(X, "nnz"):  # a SciPy sparse matrix or array
        coo = X.tocoo()
        if coo.nnz == 0:
            raise ValueError(f"{what}: the sparse matrix holds no ratings")
        return coo.row, coo.col, _ratings(coo.data, what), None
    if _is_frame(X):
        user, item, rating = _frame_columns(X, what, columns)
        return X[user].to_numpy(), X[item].to_numpy(), _ratings(X[rating].to_numpy(), what), None
    array = _array(X, what)
    if array.ndim != 2 or array.shape[1] < 3:
        raise ValueError(
            f"{what}: expected a SciPy sparse matrix, a pandas DataFrame, an (n, 3) array of "
            f"(user, item, rating) (or (n, 2) of events for a one-class loss) or a file path; got {f'an array of shape {array.shape}' if array.ndim else type(X).__name__}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{what}: no ratings")
    return array[:, 0], array[:, 1], _ratings(array[:, 2], what), None


def _array(X, what: str) -> np.ndarray:
    """``X`` as a NumPy array, or an error naming ``what`` (rows of unequal length, say)."""
    try:
        return np.asarray(X)
    except ValueError as e:
        raise ValueError(f"{what}: not a table of rows of equal length ({e})") from None


def _frame_columns(X, what: str, columns: Optional[str] = None):
    """The names of data frame X's user, item and rating columns, the rating's None for a frame
    of events: those ``columns`` names ("user,item[,rating]", each by name in any case or by
    number from 1, as the CLI's ``--columns``); else a frame of two columns (the user's found
    by name, else the first); else a frame whose columns name a user and an item but no
    rating, as a file's header of those names is for the CLI (its time stamps, say, are never
    read as ratings); else the columns found by name, or the first three."""
    names = list(X.columns)
    if columns is not None:
        return _chosen_columns(names, columns)
    if len(names) == 2:
        user = 1 if str(names[1]).lower() in _USER_COLUMNS else 0
        return names[user], names[1 - user], None
    user, item = _named(names, _USER_COLUMNS), _named(names, _ITEM_COLUMNS)
    if user is not None and item is not None and _named(names, _RATING_COLUMNS) is None:
        return user, item, None
    return _pick(names, _USER_COLUMNS, 0, what), _pick(names, _ITEM_COLUMNS, 1, what), _pick(names, _RATING_COLUMNS, 2, what)


def _chosen_columns(names: list, columns: str):
    """``_frame_columns`` for the columns ``columns`` names."""
    parts = [part.strip() for part in columns.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"columns={columns!r}: give USER,ITEM[,RATING], each a column's name or its number from 1")
    lowered = [str(name).lower() for name in names]
    chosen = []
    for part in parts:
        if part.isdigit() and not 1 <= int(part) <= len(names):
            raise ValueError(f"columns={columns!r}: the data frame has {len(names)} columns")
        if not part.isdigit() and part.lower() not in lowered:
            raise ValueError(f"columns={columns!r}: the data frame has no column {part!r} (it has {', '.join(map(str, names))})")
        chosen.append(names[int(part) - 1] if part.isdigit() else names[lowered.index(part.lower())])
    return chosen[0], chosen[1], chosen[2] if len(chosen) == 3 else None


def _user_item_pairs(X, what: str, columns: Optional[str] = None):
    """(user column, item column) of events: an array of just those two, or a data frame of
    events as ``_frame_columns`` finds them. None for other data."""
    if _is_path(X) or hasattr(X, "tocoo"):
        return None
    if _is_frame(X):
        user, item, rating = _frame_columns(X, what, columns)
        return (X[user].to_numpy(), X[item].to_numpy()) if rating is None else None
    array = _array(X, what)
    return (array[:, 0], array[:, 1]) if array.ndim == 2 and array.shape[1] == 2 else None


def _events(X, what: str, positive_threshold=None):
    """(user column, item column) of the events in X: as ``_columns`` takes data, and also a
    data frame or array of just (user, item). With ``positive_threshold`` only the rows whose
    rating is at or above it."""
    pair = None if positive_threshold is not None else _user_item_pairs(X, what)
    if pair is not None:
        return pair
    users, items, ratings, _ = _columns(X, what)
    if positive_threshold is not None:
        keep = np.asarray(ratings) >= positive_threshold
        users, items = np.asarray(users)[keep], np.asarray(items)[keep]
    return users, items


def _ratings(values, what: str) -> np.ndarray:
    """Ratings as a numeric column; the engine converts to float32 and checks finiteness."""
    values = np.asarray(values)
    if values.dtype.kind in "fiu" and values.dtype.itemsize in (4, 8):
        return values
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: ratings must be numbers ({e})") from None


# The settings by the kind of value the engine takes, with the least a whole number may be
# (the engine checks the rest: rank at most 4096, a positive lr, ...).
_WHOLE_SETTINGS = {"rank": 1, "epochs": 1, "seed": 0, "eval_every": 1, "models": 1, "cg_steps": 1, "threads": 1, "patience": 1}
_REAL_SETTINGS = ("lr", "lr_decay", "reg", "reg_bias", "init_std", "budget", "l1", "unobserved_weight", "alpha", "epsilon", "validation")
_FLAG_SETTINGS = ("biases", "scale", "frequency_reg", "svdpp", "auto", "nonneg", "refit")
_TEXT_SETTINGS = ("blocks", "backend", "precision", "gpu_memory", "loss", "confidence", "memory", "cache_dir")
# Those that may be None, for the engine to choose.
_OPTIONAL = ("threads", "unobserved_weight", "test_fraction", "positive_threshold", "validation", "patience")


def _whole(name: str, value, least: int) -> Optional[int]:
    """A whole number the engine takes unsigned, named with its value where it is not one."""
    if value is None and name in _OPTIONAL:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r}: must be a whole number")
    if value < least:
        raise ValueError(f"{name}={value}: must be at least {least}")
    if value >= 2**64:
        raise ValueError(f"{name}={value}: must be below 2**64")
    return int(value)


def _real(name: str, value) -> Optional[float]:
    """A real number, named with its value where it is not one; the engine checks its range."""
    if value is None and name in _OPTIONAL:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r}: must be a number")
    return float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r}: must be True or False")
    return bool(value)


def _known(ids: "_Ids", values, what: str):
    """The engine's ids of ``values``, users or items (``what``) the model knows: one int for
    one value, else an array; a ValueError names the first it does not know."""
    array = np.atleast_1d(values)
    encoded = ids.encode(array, what if np.ndim(values) == 0 else what + "s")
    if (encoded == _UNKNOWN).any():
        (unknown,) = array[encoded == _UNKNOWN][:1].tolist()
        raise ValueError(f"{what} {unknown!r}: the model has no such {what}")
    return int(encoded[0]) if np.ndim(values) == 0 else encoded


# How each metric of the reports is named for people, as the CLI names it.
_METRIC_NAMES = {"rmse": "RMSE", "mae": "MAE", "gkl": "KL divergence", "log_loss": "log loss", "accuracy": "accuracy", "auc": "AUC", "ndcg@20": "NDCG@20"}


class _Progress:
    """Epoch, loss and the loss's own metric as training goes: tqdm (terminals and notebooks) when installed,
    else one line on stderr rewritten in place."""

    def __init__(self, epochs: int, enabled: bool):
        self.enabled, self.total, self.held_out = enabled, epochs, "test"
        self.bar, self.line_open = None, False

    def start(self, epochs: int, held_out: str):
        """A training run starts: early stopping's, scored on the "validation" ratings, or the
        one whose model is kept, scored on the "test" ratings."""
        self.close()
        self.total, self.held_out = epochs, held_out
        if not self.enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", desc="gpumf" if held_out == "test" else f"gpumf ({held_out})")
        except ImportError:
            pass

    def update(self, report: dict):
        if not self.enabled:
            return
        metric = report.get("metric", "rmse")
        name = _METRIC_NAMES.get(metric, metric)
        facts = f"loss {report['train_loss']:.4g}"
        for side in ("train", self.held_out):
            if report.get(f"{side}_{metric}") is not None:
                facts += f", {side} {name} {report[f'{side}_{metric}']:.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(facts, refresh=False)
            self.bar.update(1)
        else:
            self.line_open = sys.stderr.isatty()
            print(f"epoch {report['epoch']}/{self.total}: {facts}", end="\r" if self.line_open else "\n", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.line_open:
            print(file=sys.stderr)
            self.line_open = False


class MF:
    """Biased matrix factorisation, score = mean + b_u + b_i + p_u . q_i, trained by SGD.

    ``loss`` says what training minimises and what ``predict`` returns: "squared" (the
    default; ratings, judged by RMSE), "absolute" (the median; MAE), "kl" (generalised KL
    divergence for non-negative values such as counts; non-negative factors); for two-valued
    labels (0/1, -1/1, any two values) "logistic" (``predict`` returns the probability of the
    larger label), "hinge" or "squared-hinge" (``predict`` returns the margin, ``classes`` the
    class). ``nonneg`` keeps the factors non-negative, ``l1`` adds L1 regularisation beside
    ``reg``'s L2.

    For one-class data (plays, clicks, purchases: a SciPy CSR matrix of events or counts with
    users as rows, implicit's convention, or a DataFrame or (n, 2) array of (user, item)
    events) ``loss="ials"`` trains the weighted squared loss over
    every user-item pair by alternating least squares on the CPU or the GPU, judged by NDCG@20: an event
    counted c times has confidence 1 + ``alpha`` * c (``confidence="linear"``) or
    1 + ``alpha`` * ln(1 + c / ``epsilon``) (``"log"``), every other pair the weight
    ``unobserved_weight`` (None: 1.3 * sqrt(the share of user-item pairs the data names), so
    sparser data weighs its unseen pairs less); ``cg_steps`` conjugate-gradient steps solve
    each row. Its defaults
    (``epochs``, ``reg``; no biases, no SVD++ term) are its own: left as None, ``epochs``,
    ``lr``, ``lr_decay``, ``reg``, ``biases`` and ``svdpp`` take the loss's defaults (squared
    error: ``lr`` 0.1, ``lr_decay`` 0.7; the other rating losses 0.02 and 0.05). ``loss="bpr"`` trains
    the pairwise ranking loss (BPR) by SGD instead, each event against an item without one
    drawn for each update, on the CPU or the GPU.

    The other parameters are the CLI's: ``rank``, ``epochs``, ``lr`` (initial learning rate), ``lr_decay``
    (lr / (1 + lr_decay * epoch)), ``reg`` and ``reg_bias`` (L2 on factors and biases),
    ``biases`` (False for the pure p_u . q_i model), ``init_std``, ``scale`` (True: ``lr``,
    ``reg`` and ``init_std`` are in units of the ratings' spread, so they suit any rating
    scale; False: in the ratings' own units, the CLI's ``--no-scale``), ``frequency_reg`` (True:
    a user's or item's ``reg`` and ``reg_bias`` are scaled by sqrt(100 / its ratings); False: the CLI's
    ``--constant-reg``), ``svdpp`` (True: each user's factors are pulled toward what the
    items it rated say of it, SVD++ style; False: the CLI's ``--no-svdpp``; ``implicit``, its
    name before one-class data came, is still accepted with a warning), ``auto`` and ``budget`` (the CLI's ``--auto --budget``: rank, ``reg``
    and ``lr`` searched on a tenth of the training ratings held out, within ``budget`` seconds,
    before training; ``summary["auto"]`` says what was tried and chosen), ``validation``,
    ``patience`` and ``refit`` (the CLI's ``--validation --patience --refit``: early stopping,
    holding out that fraction of the training ratings (seeded) and stopping when the loss's
    metric on them has not improved for ``patience`` epochs (default 5), keeping the best
    epoch's factors, or with ``refit=True`` training afresh on every training rating for that
    many epochs; ``summary["validation"]`` says how it went, and ``history`` names the held-out
    figures ``validation_*`` where they are), ``models`` (the CLI's
    ``--models``: that many models from other seeds, averaged), ``seed``, ``eval_every``
    (score the test set every N epochs and after the last), ``blocks`` (the grid every backend
    trains by, "8" or "16x4"; default: the backend's choice). ``backend`` is
    "auto" (a hardware GPU when there is one, else the CPU), "gpu" or "cpu"; ``threads`` the
    CPU threads (1: the sequential, bit-reproducible trainer; default every core);
    ``precision`` "f32" or "f16" (GPU factor storage); ``gpu_memory`` the CLI's ``--gpu-memory``
    ("512MiB", "8GiB" or bytes: the most the GPU holds; ratings beyond it stream from host
    memory; default what the adapter reports, less a tenth); ``memory`` the CLI's ``--memory``
    (a file of training ratings larger than this is read piece by piece into a block cache on
    disk, beside it or in ``cache_dir``, and trained from there; data given in memory is
    refused). ``verbose`` shows a progress bar.
    """

    def __init__(
        self,
        rank: int = _DEFAULTS["rank"],
        epochs: Optional[int] = None,
        lr: Optional[float] = None,
        reg: Optional[float] = None,
        backend: str = "auto",
        threads: Optional[int] = None,
        seed: int = _DEFAULTS["seed"],
        precision: str = "f32",
        lr_decay: Optional[float] = None,
        reg_bias: float = _DEFAULTS["reg_bias"],
        biases: Optional[bool] = None,
        init_std: float = _DEFAULTS["init_std"],
        eval_every: int = _DEFAULTS["eval_every"],
        blocks: Optional[str] = None,
        verbose: bool = True,
        scale: bool = _DEFAULTS["scale"],
        frequency_reg: bool = _DEFAULTS["frequency_reg"],
        svdpp: Optional[bool] = None,
        auto: bool = False,
        budget: float = 300.0,
        models: int = _DEFAULTS["models"],
        gpu_memory=None,
        loss: str = _DEFAULTS["loss"],
        nonneg: bool = _DEFAULTS["nonneg"],
        l1: float = _DEFAULTS["l1"],
        unobserved_weight: Optional[float] = None,
        confidence: str = _DEFAULTS["confidence"],
        alpha: float = _DEFAULTS["alpha"],
        epsilon: float = _DEFAULTS["epsilon"],
        cg_steps: int = _DEFAULTS["cg_steps"],
        implicit: Optional[bool] = None,
        validation: Optional[float] = None,
        patience: Optional[int] = None,
        refit: bool = False,
        memory=None,
        cache_dir=None,
    ):
        if implicit is not None:
            warnings.warn("MF(implicit=...) is now MF(svdpp=...): the SVD++-style term, not one-class data", DeprecationWarning, stacklevel=2)
            svdpp = implicit
        # The loss's own defaults where none is given (the one-class loss has its own).
        own = _gpumf.default_params(str(loss))
        epochs = own["epochs"] if epochs is None else epochs
        lr = own["lr"] if lr is None else lr
        lr_decay = own["lr_decay"] if lr_decay is None else lr_decay
        reg = own["reg"] if reg is None else reg
        biases = own["biases"] if biases is None else biases
        svdpp = own["svdpp"] if svdpp is None else svdpp
        self.rank, self.epochs, self.lr, self.reg = rank, epochs, lr, reg
        self.backend, self.threads, self.seed, self.precision = backend, threads, seed, precision
        self.lr_decay, self.reg_bias, self.biases, self.init_std = lr_decay, reg_bias, biases, init_std
        self.eval_every, self.blocks, self.scale, self.frequency_reg = eval_every, blocks, scale, frequency_reg
        self.auto, self.budget, self.models, self.svdpp = auto, budget, models, svdpp
        self.verbose, self.gpu_memory = verbose, gpu_memory
        self.loss, self.nonneg, self.l1 = loss, nonneg, l1
        self.unobserved_weight, self.confidence, self.alpha = unobserved_weight, confidence, alpha
        self.epsilon, self.cg_steps = epsilon, cg_steps
        self.validation, self.patience, self.refit = validation, patience, refit
        self.memory, self.cache_dir = memory, cache_dir
        self.history: list = []
        self.summary: dict = {}
        self._model = None
        self._users = _Ids()
        self._items = _Ids()

    def __repr__(self) -> str:
        state = f"fitted, {len(self.history)} epochs" if self._model is not None else "not fitted"
        # The defaults come from the engine as f32: shown to the digits an f32 holds.
        loss = "" if self.loss == "squared" else f", loss={self.loss!r}"
        return f"gpumf.MF(rank={self.rank}, epochs={self.epochs}, lr={self.lr:.7g}, reg={self.reg:.7g}{loss}, backend={self.backend!r}; {state})"

    def _settings(self) -> dict:
        """The settings as the engine takes them, each checked for its type here, so that a
        wrong one is named with its value (the engine's conversion would name only its field)."""
        whole = {name: _whole(name, getattr(self, name), least) for name, least in _WHOLE_SETTINGS.items()}
        real = {name: _real(name, getattr(self, name)) for name in _REAL_SETTINGS}
        flags = {name: _flag(name, getattr(self, name)) for name in _FLAG_SETTINGS}
        text = {name: None if getattr(self, name) is None else str(getattr(self, name)) for name in _TEXT_SETTINGS}
        return {**whole, **real, **flags, **text}

    def fit(
        self,
        X,
        test=None,
        *,
        test_fraction: Optional[float] = None,
        split: str = "random",
        callback: Optional[Callable[[dict], Any]] = None,
        **load_options,
    ) -> "MF":
        """Trains on ``X`` and returns self.

        ``X`` is a SciPy sparse matrix (rows users, columns items), a pandas DataFrame (user,
        item and rating columns, found by name as the CLI finds them, else the first three;
        one that names a user and an item but no rating holds events; ids of any type), an (n, 3) NumPy array of (user, item, rating) (for a one-class ``loss``
        also a DataFrame or (n, 2) array of (user, item) events), or the path of a rating
        file in any format the CLI reads (``format``, ``columns``, ``skip_bad_lines``, ``missing``,
        ``skip_columns`` and ``duplicates`` pass to its loader, as do ``counts=True``, which reads
        the third column as counts of events for a one-class ``loss``; ``columns="user,item[,rating]"``,
        by name or number from 1, picks a DataFrame's columns too). ``positive_threshold=T`` reads
        ratings of T and above as 1 and the rest as 0, the labels of a binary ``loss``. ``test`` is scored every
        ``eval_every`` epochs and after the last; it takes the same kinds of input, or ``test_fraction`` holds out a seeded share
        of ``X`` as the CLI's ``--test-fraction`` does, ``split="per-user"`` holding out that share of each
        user's ratings (the CLI's ``--split per-user``). ``callback(report)`` is called after
        every epoch with the CLI's per-epoch JSON as a dict.

        Training runs with the GIL released. Ctrl-C (KeyboardInterrupt) stops it at the end of
        the current epoch (on the GPU, after the epoch already queued behind it): the model of
        the finished epochs is kept, then the interrupt is raised. An exception from ``callback`` stops training the same way.
        """
        load_options = _check_load_options(X, test, load_options)
        settings = self._settings()
        test_fraction = _real("test_fraction", test_fraction)
        split = _of_kind("split", split, str)
        if split != "random" and test_fraction is None:
            raise ValueError(f"split={split!r}: says how test_fraction holds out ratings; give test_fraction too")
        progress = _Progress(self.epochs, self.verbose)

        def on_epoch(line: str):
            report = json.loads(line)
            progress.update(report)
            if callback is not None:
                callback(report)

        def on_note(note: str):
            if self.verbose:
                print(note, file=sys.stderr)

        hooks = {"on_epoch": on_epoch, "on_note": on_note, "on_start": progress.start}
        try:
            if _is_path(X) and (test is None or _is_path(test)):
                # Straight from the file to the engine, as the CLI reads it: integer ids, or
                # labels that the model keeps (below).
                user_ids = item_ids = None
                test_path = None if test is None else os.fspath(test)
                fitted = _gpumf.train_files(os.fspath(X), test_path, test_fraction, settings, split, **load_options, **hooks)
            else:
                fitted, user_ids, item_ids = self._train_in_memory(X, test, (test_fraction, split), settings, load_options, hooks)
        finally:
            progress.close()
        model, lines, summary, stopped = fitted
        if user_ids is None:
            user_ids, item_ids = _Ids.of_model(model.user_labels), _Ids.of_model(model.item_labels)
        self._model, self._users, self._items = model, user_ids, item_ids
        self.history = [json.loads(line) for line in lines]
        self.summary = json.loads(summary)
        if stopped is not None:
            raise stopped
        return self

    def _train_in_memory(self, X, test, holdout: tuple, settings: dict, load_options: dict, hooks: dict):
        """``fit`` on data that is not all in files: the columns numbered here, where their
        ids are not numbers, and the engine's result with the two mappings."""
        users, items, ratings, report = _columns(X, "training data", self.loss, **load_options)
        if report and self.verbose:
            print(report, file=sys.stderr)
        user_ids, users = _Ids.from_column(users, "training user ids")
        item_ids, items = _Ids.from_column(items, "training item ids")
        test_columns = None
        if test is not None:
            tu, ti, tr, _ = _columns(test, "test data", self.loss, **load_options)
            test_columns = (
                user_ids.encode(tu, "test user ids", grow=True),
                item_ids.encode(ti, "test item ids", grow=True),
                tr,
            )
        test_fraction, split = holdout
        fitted = _gpumf.train_columns((users, items, ratings), test_columns, test_fraction, settings, split, **hooks)
        return fitted, user_ids, item_ids

    @property
    def model(self):
        """The engine's model; raises if the model has not been fitted or loaded."""
        if self._model is None:
            raise RuntimeError("this MF is not fitted yet: call fit() or gpumf.load() first")
        return self._model

    def predict(self, users, items) -> np.ndarray:
        """Predictions (float32) for each (user, item) pair as the loss defines them: ratings
        clipped to the training scale; with the logistic loss the probability of the positive
        (larger) label; with the hinge losses the margin (its sign is the class, see
        ``classes``), in the shape ``users`` and ``items`` share. A user or item never seen
        in training is predicted from what is known."""
        return self._pairwise(self.model.predict, users, items)

    def classes(self, users, items) -> np.ndarray:
        """With a binary loss, the class each pair's score predicts, in the data's own two
        values (0/1, -1/1, ...)."""
        return self._pairwise(self.model.classes, users, items)

    def _pairwise(self, score, users, items) -> np.ndarray:
        """``score`` of each (user, item) pair, in the shape of ``users`` (a scalar's: one)."""
        users, items = np.atleast_1d(users), np.atleast_1d(items)
        if users.shape != items.shape:
            raise ValueError(f"users and items differ in shape ({users.shape} and {items.shape})")
        scores = score(self._users.encode(users.ravel(), "users"), self._items.encode(items.ravel(), "items"))
        return np.asarray(scores).reshape(users.shape)

    def recommend(self, user, n: int = 10, exclude_seen: bool = True):
        """The ``n`` items with the highest scores for ``user``: (item ids, scores), best first.
        With ``exclude_seen`` (default) the user's training items are left out. Scores are
        unclipped, so the order holds above the top of the rating scale."""
        n = _whole("n", n, 1)
        uid = _known(self._users, user, "user")
        ids, scores = self.model.recommend(uid, n, _flag("exclude_seen", exclude_seen))
        return self._items.decode(ids), scores

    def recommend_many(self, users, n: int = 10, exclude_seen: bool = True):
        """``recommend`` for many users at once, in parallel: (ids, scores), one row a user,
        padded with -1 (or None, for mapped ids) and NaN where a user has fewer than n items."""
        n = _whole("n", n, 1)
        encoded = _known(self._users, users, "user")
        ids, scores = self.model.recommend_many(encoded, n, _flag("exclude_seen", exclude_seen))
        if self._items.labels is None:
            return ids, scores
        labels = np.full(ids.shape, None, dtype=object)
        # Padding has a NaN score (an engine key may read as a negative int64).
        present = ~np.isnan(scores)
        labels[present] = self._items.decode(ids[present].astype(np.uint64))
        return labels, scores

    def recommend_new(self, items, n: int = 10, values=None, exclude_seen: bool = True):
        """The ``n`` best items for a user the model has not seen, from the ``items`` they
        rated or used (and their ``values``: ratings or binary labels; default the top of the
        rating scale, or the positive label), without retraining: their row is solved with the
        items' factors fixed (fold-in, as implicit's ``recalculate_user``). Returns (item ids,
        scores), best first, the given items left out unless ``exclude_seen=False``."""
        n = _whole("n", n, 1)
        encoded = _known(self._items, items, "item")
        if values is not None:
            values = _ratings(values, "values").astype(np.float32)
        ids, scores = self.model.recommend_new(encoded, values, n, _flag("exclude_seen", exclude_seen))
        return self._items.decode(ids), scores

    def similar_items(self, item, n: int = 10):
        """The ``n`` items whose factors have the highest cosine with ``item``'s (itself left
        out): (item ids, cosines), best first, as implicit's ``similar_items`` ranks them."""
        n = _whole("n", n, 1)
        iid = _known(self._items, item, "item")
        ids, cosines = self.model.similar_items(iid, n)
        return self._items.decode(ids), cosines

    def similar_users(self, user, n: int = 10):
        """``similar_items`` for users: (user ids, cosines), best first."""
        n = _whole("n", n, 1)
        uid = _known(self._users, user, "user")
        ids, cosines = self.model.similar_users(uid, n)
        return self._users.decode(ids), cosines

    def ranking_metrics(self, test, k: int = 20, metrics=None, train=None, positive_threshold=None) -> dict:
        """Ranking metrics of the model's top-k lists on held-out positives ``test`` (given as
        ``fit`` takes data: a SciPy matrix with users as rows, a DataFrame, an array or a
        file; or as (user, item) pairs alone). Each user's candidates are every item but their training items: those of
        ``train`` when given, else those the model recorded when it was fitted. ``metrics`` is
        a list or comma-separated string of ``recall@K``, ``precision@K``, ``ndcg@K``,
        ``map@K``, ``auc`` and ``mpr`` (default: precision, recall, NDCG and MAP at ``k``,
        and AUC). With ``positive_threshold`` only test ratings at or above it are positives.
        Returns each metric by name, and the numbers of users and positives judged."""
        k = _whole("k", k, 1)
        if metrics is None:
            metrics = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "auc"]
        if not isinstance(metrics, str):
            names = list(metrics) if hasattr(metrics, "__iter__") else [metrics]
            if not all(isinstance(name, str) for name in names):
                raise TypeError(f"metrics={metrics!r}: must be a string or a list of strings")
            metrics = ",".join(names)
        users, items = _events(test, "test data", _real("positive_threshold", positive_threshold))
        args = [self._users.encode(users, "users"), self._items.encode(items, "items"), metrics]
        if train is not None:
            train_users, train_items = _events(train, "train")
            args += [self._users.encode(train_users, "train users"), self._items.encode(train_items, "train items")]
        return json.loads(self.model.ranking_metrics(*args))

    @property
    def user_factors(self) -> np.ndarray:
        """P, users x rank (float32); row k belongs to ``user_ids[k]``."""
        return self.model.user_factors

    @property
    def item_factors(self) -> np.ndarray:
        """Q, items x rank (float32); row k belongs to ``item_ids[k]``."""
        return self.model.item_factors

    @property
    def user_bias(self) -> np.ndarray:
        """b_u per user, in the order of ``user_ids``."""
        return self.model.user_bias

    @property
    def item_bias(self) -> np.ndarray:
        """b_i per item, in the order of ``item_ids``."""
        return self.model.item_bias

    @property
    def global_mean(self) -> float:
        """The mean training rating, the model's offset."""
        return self.model.global_mean

    @property
    def user_ids(self) -> np.ndarray:
        """The user of each row of ``user_factors``, as given to ``fit``."""
        return self._users.decode(self.model.user_ids)

    @property
    def item_ids(self) -> np.ndarray:
        """The item of each row of ``item_factors``, as given to ``fit``."""
        return self._items.decode(self.model.item_ids)

    def save(self, path, overwrite: bool = False) -> None:
        """Writes the model in the CLI's format (``gpumf predict --model PATH`` reads it).

        Ids given in memory that were not non-negative integers are numbered in the file; their
        labels go beside it in ``PATH.labels.npz`` for ``gpumf.load`` (a model saved over it,
        here or by the CLI, removes them). Labels the engine read
        from a rating file (ASINs, names) are kept in the model file itself, as the CLI keeps
        them.
        """
        path = os.fspath(path)
        self.model.save(path, _flag("overwrite", overwrite))
        sidecar = path + _gpumf.LABELS_BESIDE
        if self._users.numbered or self._items.numbered:
            empty = np.array([], dtype=str)
            users = self._users.labels.astype(str) if self._users.numbered else empty
            items = self._items.labels.astype(str) if self._items.numbered else empty
            with open(sidecar, "wb") as f:
                np.savez(f, users=users, items=items)

    def score(self, X) -> dict:
        """Every metric of the model's loss on ratings given as ``fit`` takes them, as the CLI's
        ``eval`` reports them: RMSE and MAE for real values; log loss (logistic), accuracy and
        AUC for binary labels. Also the number of ratings. A one-class model (``loss="ials"`` or
        ``"bpr"``) has no per-rating metric: its ``ranking_metrics`` on ``X``'s events, as the
        CLI's ``eval`` reports NDCG@20 for it."""
        if _gpumf.one_class(self.model.loss):
            return self.ranking_metrics(X)
        users, items, ratings, _ = _columns(X, "test data")
        scores = json.loads(self.model.measure(self._users.encode(users, "users"), self._items.encode(items, "items"), np.asarray(ratings, dtype=np.float32)))
        scores["ratings"] = int(len(ratings))
        return scores


def load(path) -> MF:
    """Reads a model saved by ``MF.save`` or by ``gpumf train --save``."""
    path = os.fspath(path)
    model, note = _gpumf.Model.load(path)
    if note:
        warnings.warn(note, stacklevel=2)
    mf = MF(rank=model.rank, loss=model.loss, verbose=False)
    mf._model = model
    sidecar = path + _gpumf.LABELS_BESIDE
    mf._users, mf._items = _Ids.of_model(model.user_labels), _Ids.of_model(model.item_labels)
    if os.path.exists(sidecar):
        users, items = _sidecar_labels(sidecar, model)
        mf._users = mf._users if users is None else users
        mf._items = mf._items if items is None else items
    return mf


def _sidecar_labels(sidecar: str, model):
    """The user and item labels ``MF.save`` wrote beside a model file (None for a side it
    numbered itself), checked against the model: a file that does not belong to it is an
    error, never a silent relabelling."""
    try:
        with np.load(sidecar, allow_pickle=False) as saved:
            columns = saved["users"], saved["items"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{sidecar}: not the labels MF.save writes beside a model ({e})") from None
    mappings = []
    for what, labels, engine_ids in zip(("user", "item"), columns, (model.user_ids, model.item_ids)):
        if not labels.size:
            mappings.append(None)
            continue
        # A label for every number the model has (more where test_fraction held some out).
        if engine_ids.size and int(engine_ids.max()) >= labels.size:
            raise ValueError(f"{sidecar}: {labels.size} {what} labels, but the model has {what} number {int(engine_ids.max())}: the labels of another model?")
        if np.unique(labels).size != labels.size:
            raise ValueError(f"{sidecar}: a {what} label stands twice: the labels of another model?")
        mappings.append(_Ids(labels.astype(object)))
    return mappings
