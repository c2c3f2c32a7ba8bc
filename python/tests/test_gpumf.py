"""The Python package: every input type, results out, round trips with the CLI, bad input,
the GIL, Ctrl-C, and the GPU backend (lavapipe counts)."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gpumf

REPO = Path(__file__).resolve().parents[2]
LATEST_SMALL = REPO / "data" / "ml-latest-small" / "ratings.csv"
IN_CI = os.environ.get("CI") in ("true", "1")
# Small and fast unless a test says otherwise.
FAST = dict(rank=8, epochs=3, verbose=False, backend="cpu")


def cli() -> Path:
    """The gpumf binary the README's test command builds first; built here if missing."""
    binary = REPO / "target" / "release" / "gpumf"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "gpumf"], cwd=REPO, check=True)
    return binary


def cli_json(*args) -> dict:
    out = subprocess.run([str(cli()), *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def frame():
    return gpumf.datasets.load_latest_small()


def test_latest_small_ships_inside_the_package(frame):
    assert frame.shape == (100836, 3)
    assert list(frame.columns) == ["user", "item", "rating"]
    assert frame["user"].nunique() == 610 and frame["item"].nunique() == 9724
    array = gpumf.datasets.load_latest_small(as_frame=False)
    assert array.shape == (100836, 3) and array.dtype == np.float64


def test_every_input_type_trains_the_same_model(frame, tmp_path):
    scipy = pytest.importorskip("scipy.sparse")
    array = frame.to_numpy(dtype=np.float64)
    path = tmp_path / "r.tsv"
    np.savetxt(path, array, fmt=["%d", "%d", "%.1f"], delimiter="\t")
    sparse_users, users = np.unique(frame["user"], return_inverse=True)
    sparse_items, items = np.unique(frame["item"], return_inverse=True)
    matrix = scipy.coo_matrix((frame["rating"].to_numpy(), (users, items)))
    rmse = {}
    for name, data in [("frame", frame), ("array", array), ("path", path), ("str path", str(path))]:
        m = gpumf.MF(threads=1, **FAST).fit(data, test_fraction=0.2)
        rmse[name] = m.history[-1]["test_rmse"]
    assert len(set(rmse.values())) == 1, rmse
    # A sparse matrix's ids are its row and column numbers.
    m = gpumf.MF(threads=1, **FAST).fit(matrix.tocsr())
    assert m.user_factors.shape == (610, 8) and m.item_factors.shape == (9724, 8)
    assert set(m.user_ids.tolist()) == set(range(610))


def test_string_ids_are_mapped_and_kept(frame, tmp_path):
    named = frame.assign(user="u" + frame["user"].astype(str), item="movie-" + frame["item"].astype(str))
    m = gpumf.MF(threads=1, **FAST).fit(named, test_fraction=0.2)
    numeric = gpumf.MF(threads=1, **FAST).fit(frame, test_fraction=0.2)
    assert m.history[-1]["test_rmse"] == numeric.history[-1]["test_rmse"], "the same data in the same order trains the same"
    items, scores = m.recommend("u1", n=5)
    assert all(str(i).startswith("movie-") for i in items) and len(scores) == 5
    assert m.user_ids[0] == "u1"
    # A missing label is refused where it stands (it was a user of its own, shown as the last label).
    for column in ("user", "item"):
        holed = named.astype({column: object})
        holed.loc[holed.index[3], column] = None
        with pytest.raises(ValueError, match=f"^training {column} ids: a missing id \\(None or NaN\\) at row 3$"):
            gpumf.MF(**FAST).fit(holed)
    holed_test = named.iloc[:10].astype({"item": object})
    holed_test.loc[holed_test.index[2], "item"] = float("nan")
    with pytest.raises(ValueError, match="^test item ids: a missing id \\(None or NaN\\) at row 2$"):
        gpumf.MF(**FAST).fit(named, holed_test)
    # An unknown label is named as it was given, alone or among others.
    with pytest.raises(ValueError, match="^user 'nobody': the model has no such user$"):
        m.recommend("nobody")
    with pytest.raises(ValueError, match="^user 'nobody': the model has no such user$"):
        m.recommend_many(["u1", "nobody"])
    p = m.predict(["u1", "u1", "nobody"], ["movie-1", "movie-3", "movie-1"])
    assert p.dtype == np.float32 and np.isfinite(p).all()
    # Saved with its labels beside the CLI's file, and loaded back whole.
    m.save(tmp_path / "named.gpumf")
    back = gpumf.load(tmp_path / "named.gpumf")
    np.testing.assert_array_equal(back.predict(["u1"], ["movie-1"]), m.predict(["u1"], ["movie-1"]))
    np.testing.assert_array_equal(back.recommend("u1", 5)[0], items)
    # Labels that do not fit the model beside them are refused, never taken for its own.
    sidecar = tmp_path / "named.gpumf.labels.npz"
    with np.load(sidecar) as saved:
        users, items_saved = saved["users"], saved["items"]
    for broken, message in [
        ({"users": users[:5], "items": items_saved}, "^.*named.gpumf.labels.npz: 5 user labels, but the model has user number 609: the labels of another model\\?$"),
        ({"users": np.concatenate([users[:1], users[:-1]]), "items": items_saved}, "a user label stands twice"),
        ({"items": items_saved}, "not the labels MF.save writes beside a model"),
    ]:
        np.savez(sidecar, **broken)
        with pytest.raises(ValueError, match=message):
            gpumf.load(tmp_path / "named.gpumf")
    sidecar.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not the labels MF.save writes"):
        gpumf.load(tmp_path / "named.gpumf")
    # A model of numbered ids saved over it takes its place whole: no labels left beside it.
    numeric.save(tmp_path / "named.gpumf", overwrite=True)
    assert not sidecar.exists()
    np.testing.assert_array_equal(gpumf.load(tmp_path / "named.gpumf").user_ids, numeric.user_ids)


def test_a_file_of_labelled_ids_trains_and_answers_to_its_labels(frame, tmp_path):
    # Amazon's shape written to a file: users as hashes, items as ISBNs with a leading zero.
    named = frame.assign(user="A" + frame["user"].astype(str) + "Z", item=frame["item"].map(lambda i: f"{i:010d}"))
    path = tmp_path / "labelled.csv"
    named.to_csv(path, header=False, index=False)
    from_file = gpumf.MF(threads=1, **FAST).fit(path, test_fraction=0.2)
    from_frame = gpumf.MF(threads=1, **FAST).fit(named, test_fraction=0.2)
    assert from_file.history[-1]["test_rmse"] == from_frame.history[-1]["test_rmse"]
    assert from_file.user_ids[0] == "A1Z" and from_file.item_ids[0] == "0000000001"
    items, _ = from_file.recommend("A1Z", n=5)
    np.testing.assert_array_equal(items, from_frame.recommend("A1Z", n=5)[0])
    assert all(len(i) == 10 for i in items)
    many, _ = from_file.recommend_many(["A1Z", "A2Z"], n=5)
    np.testing.assert_array_equal(many, from_frame.recommend_many(["A1Z", "A2Z"], n=5)[0])
    assert list(many[0]) == list(items)
    # The file's labels, read again, score against the model; the model file keeps them, so
    # the CLI and gpumf.load answer to them without a sidecar.
    scored = from_file.score(path)
    assert scored == from_file.score(named) and scored["rmse"] < 0.9, scored
    saved = tmp_path / "labelled.gpumf"
    from_file.save(saved)
    assert not os.path.exists(str(saved) + ".labels.npz")
    back = gpumf.load(saved)
    np.testing.assert_array_equal(back.recommend("A1Z", n=5)[0], items)
    out = subprocess.run([str(cli()), "predict", "--model", str(saved), "--user", "A1Z", "--top", "5"], capture_output=True, text=True, check=True)
    assert [line.split("\t")[1] for line in out.stdout.splitlines()] == list(items)


def test_columns_pick_the_user_item_and_rating_of_a_file(tmp_path):
    # Last.fm's shape: user hash, artist id, artist name, plays.
    path = tmp_path / "plays.tsv"
    lines = [f"u{u:03x}\tart{a}\tname {a}\t{(u * a) % 50 + 1}" for u in range(40) for a in range(u % 7, 30, 3)]
    path.write_text("\n".join(lines) + "\n")
    m = gpumf.MF(loss="ials", verbose=False, backend="cpu", rank=8, epochs=3).fit(path, columns="1,2,4", counts=True)
    assert m.user_ids[0] == "u000" and m.item_ids[0] == "art0"
    with pytest.raises(ValueError, match="plays.tsv:2: rating .name 3. is not a number"):
        gpumf.MF(**FAST).fit(path, columns="1,2,3")
    with pytest.raises(ValueError, match="columns=.1.: .*USER,ITEM"):
        gpumf.MF(**FAST).fit(path, columns="1")


def test_columns_pick_the_user_item_and_rating_of_a_data_frame(frame):
    ones = dict(FAST, threads=1)
    base = gpumf.MF(**ones).fit(frame)
    renamed = frame.rename(columns={"user": "who", "item": "what", "rating": "stars"}).assign(ts=964982703)
    renamed = renamed[["ts", "who", "what", "stars"]]
    for columns in ("who,what,stars", "2,3,4", "WHO,What,4"):
        assert np.array_equal(gpumf.MF(**ones).fit(renamed, columns=columns).user_factors, base.user_factors), columns
    # Two columns are events, for a one-class loss.
    events = gpumf.MF(**{**ones, "loss": "ials"}).fit(renamed, columns="who,what")
    assert events.summary["train_ratings"] == len(frame)
    for columns, says in [
        ("who,nope,stars", "^columns='who,nope,stars': the data frame has no column 'nope' \\(it has ts, who, what, stars\\)$"),
        ("2,3,9", "^columns='2,3,9': the data frame has 4 columns$"),
        ("who", "^columns='who': give USER,ITEM\\[,RATING\\]"),
    ]:
        with pytest.raises(ValueError, match=says):
            gpumf.MF(**FAST).fit(renamed, columns=columns)
    with pytest.raises(ValueError, match="^columns='2,3,4': picks the columns of a data frame or a file, and test data is neither$"):
        gpumf.MF(**FAST).fit(renamed, test=renamed.to_numpy()[:10, 1:], columns="2,3,4")


def test_predict_recommend_and_factors(frame):
    m = gpumf.MF(threads=1, **FAST).fit(frame)
    assert m.user_factors.shape == (610, 8) and m.user_bias.shape == (610,)
    assert m.item_factors.shape == (9724, 8) and m.item_bias.shape == (9724,)
    assert abs(m.global_mean - frame["rating"].mean()) < 1e-4
    p = m.predict(np.array([1, 1]), np.array([1, 3]))
    manual = m.global_mean + m.user_bias[0] + m.item_bias[0] + m.user_factors[0] @ m.item_factors[0]
    assert abs(p[0] - min(max(manual, 0.5), 5.0)) < 1e-5
    seen = set(frame.loc[frame["user"] == 1, "item"])
    items, scores = m.recommend(1, n=20)
    assert len(items) == 20 and not seen & set(items.tolist())
    assert np.all(np.diff(scores) <= 0)
    with_seen, _ = m.recommend(1, n=9724, exclude_seen=False)
    assert seen <= set(with_seen.tolist())
    many_ids, many_scores = m.recommend_many([1, 2, 3], n=20)
    assert many_ids.shape == (3, 20) and many_scores.shape == (3, 20)
    np.testing.assert_array_equal(many_ids[0], items)


def test_save_and_load_round_trip_with_the_cli(frame, tmp_path):
    m = gpumf.MF(threads=1, **FAST).fit(frame)
    path = tmp_path / "py.gpumf"
    m.save(path)
    with pytest.raises(OSError, match=r"already exists; not overwriting it \(pass overwrite=True to replace it\)$"):
        m.save(path)
    # The CLI reads the Python model ...
    out = subprocess.run([str(cli()), "predict", "--model", str(path), "--user", "1", "--top", "5"], capture_output=True, text=True, check=True)
    cli_items = [int(line.split("\t")[1]) for line in out.stdout.splitlines()]
    assert cli_items == m.recommend(1, n=5)[0].tolist()
    # ... and Python reads the CLI's.
    cli_model = tmp_path / "cli.gpumf"
    subprocess.run([str(cli()), "train", "--train", str(LATEST_SMALL), "--epochs", "2", "--rank", "4", "--backend", "cpu", "--quiet", "--save", str(cli_model)], check=True)
    loaded = gpumf.load(cli_model)
    assert loaded.user_factors.shape == (610, 4)
    out = subprocess.run([str(cli()), "predict", "--model", str(cli_model), "--user", "1", "--top", "3"], capture_output=True, text=True, check=True)
    assert [int(line.split("\t")[1]) for line in out.stdout.splitlines()] == loaded.recommend(1, n=3)[0].tolist()


def test_the_sequential_trainer_gives_the_clis_test_rmse_exactly(frame):
    settings = ["--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--epochs", "10", "--rank", "32"]
    expected = cli_json("train", "--train", str(LATEST_SMALL), *settings)
    for data in (LATEST_SMALL, frame):
        m = gpumf.MF(rank=32, epochs=10, backend="cpu", threads=1, verbose=False).fit(data, test_fraction=0.2)
        assert m.history[-1]["test_rmse"] == expected["test_rmse"]
        assert [h["train_loss"] for h in m.history] == [h["train_loss"] for h in expected["history"]]


def test_blocks_and_eval_every_are_the_clis(frame):
    m = gpumf.MF(**{**FAST, "threads": 1}, blocks="3x2", eval_every=2).fit(frame, test_fraction=0.2)
    assert [r["test_rmse"] is None for r in m.history] == [True, False, False], "scored at epoch 2 and after the last"
    assert "3x2 blocks" in m.summary["backend"]
    expected = cli_json("train", "--train", str(LATEST_SMALL), "--test-fraction", "0.2", "--rank", "8", "--epochs", "3",
                        "--backend", "cpu", "--threads", "1", "--blocks", "3x2", "--eval-every", "2", "-q")
    assert m.history[-1]["test_rmse"] == expected["test_rmse"]
    with pytest.raises(ValueError, match="blocks"):
        gpumf.MF(**FAST, blocks="0x2").fit(frame)


def test_scale_frequency_reg_and_svdpp_are_the_clis_flags(frame):
    settings = ["--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--epochs", "3", "--rank", "8"]
    for kwargs, flags in [({"scale": False}, ["--no-scale"]), ({"frequency_reg": False}, ["--constant-reg"]), ({"svdpp": False}, ["--no-svdpp"])]:
        expected = cli_json("train", "--train", str(LATEST_SMALL), *settings, *flags)
        m = gpumf.MF(rank=8, epochs=3, backend="cpu", threads=1, verbose=False, **kwargs).fit(frame, test_fraction=0.2)
        assert m.history[-1]["test_rmse"] == expected["test_rmse"], kwargs
        default = gpumf.MF(rank=8, epochs=3, backend="cpu", threads=1, verbose=False).fit(frame, test_fraction=0.2)
        assert default.history[-1]["test_rmse"] != m.history[-1]["test_rmse"], kwargs


def test_early_stopping_and_the_per_user_split_are_the_clis(frame, capfd):
    settings = ["--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--epochs", "80", "--rank", "8"]
    ours = dict(rank=8, epochs=80, backend="cpu", threads=1, validation=0.1, patience=2)
    expected = cli_json("train", "--train", str(LATEST_SMALL), *settings, "--validation", "0.1", "--patience", "2")
    for data in (LATEST_SMALL, frame):
        m = gpumf.MF(**ours, verbose=data is frame).fit(data, test_fraction=0.2)
        assert m.summary["validation"]["best_epoch"] == expected["validation"]["best_epoch"] < len(m.history) < 80
        assert m.summary["test_rmse"] == expected["test_rmse"]
        # The held-out figures of early stopping are named for the ratings they were scored on.
        assert [h["validation_rmse"] for h in m.history] == [h["validation_rmse"] for h in expected["history"]]
        assert all("test_rmse" not in h for h in m.history)
    assert "validation RMSE" in capfd.readouterr().err
    # refit=True trains afresh for the best epoch count: its history is that run's.
    refit = gpumf.MF(**ours, refit=True, verbose=False).fit(frame, test_fraction=0.2)
    assert len(refit.history) == expected["validation"]["best_epoch"] and refit.history[-1]["test_rmse"] == refit.summary["test_rmse"]
    with pytest.raises(ValueError, match="^patience=2: applies to early stopping; give validation=F too$"):
        gpumf.MF(patience=2, verbose=False).fit(frame)
    with pytest.raises(ValueError, match="auto=True holds out its own ratings .* leave out validation$"):
        gpumf.MF(validation=0.1, auto=True, verbose=False).fit(frame)

    expected = cli_json("train", "--train", str(LATEST_SMALL), *settings[:-4], "--epochs", "3", "--rank", "8", "--split", "per-user")
    m = gpumf.MF(rank=8, epochs=3, backend="cpu", threads=1, verbose=False).fit(frame, test_fraction=0.2, split="per-user")
    assert m.summary["test_rmse"] == expected["test_rmse"] and m.summary["test_ratings"] == expected["data"]["test_ratings"]
    with pytest.raises(ValueError, match="^split='per-user': says how test_fraction holds out ratings"):
        gpumf.MF(**FAST).fit(frame, split="per-user")
    with pytest.raises(TypeError, match="^split=None: must be a string$"):
        gpumf.MF(**FAST).fit(frame, test_fraction=0.2, split=None)
    with pytest.raises(ValueError, match="^split must be random or per-user, got \"users\"$"):
        gpumf.MF(**FAST).fit(frame, test_fraction=0.2, split="users")


def test_memory_trains_a_large_file_from_blocks_on_disk_as_the_cli_does(frame, tmp_path):
    test = tmp_path / "test.csv"
    frame.sample(2000, random_state=1).to_csv(test, index=False)
    flags = ["--backend", "cpu", "--threads", "1", "--epochs", "3", "--rank", "8", "--test", str(test)]
    expected = cli_json("train", "--train", str(LATEST_SMALL), *flags, "--memory", "1MiB", "--cache-dir", str(tmp_path / "cli"))
    settings = dict(rank=8, epochs=3, backend="cpu", threads=1, verbose=False, memory="1MiB", cache_dir=tmp_path / "py")
    m = gpumf.MF(**settings).fit(LATEST_SMALL, test=test)
    assert os.listdir(tmp_path / "py") == ["ratings.csv.gpumf-blocks"]
    assert m.summary["test_rmse"] == expected["test_rmse"]
    # Data in memory is there already; a cache directory needs the cache.
    with pytest.raises(ValueError, match="^memory: reads a rating file piece by piece .* give the training data, and any test set, as files' paths$"):
        gpumf.MF(**settings).fit(frame)
    with pytest.raises(ValueError, match="^cache_dir: where memory=SIZE keeps its block cache; give memory too$"):
        gpumf.MF(**{**settings, "memory": None}).fit(LATEST_SMALL)


def test_auto_is_the_clis_search(frame):
    settings = ["--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--epochs", "9", "--rank", "8", "--auto"]
    expected = cli_json("train", "--train", str(LATEST_SMALL), *settings)
    m = gpumf.MF(rank=8, epochs=9, backend="cpu", threads=1, verbose=False, auto=True).fit(frame, test_fraction=0.2)
    auto = m.summary["auto"]
    assert auto["rungs"] == [1, 3, 9] and len(auto["trials"]) == len(expected["auto"]["trials"]) >= 27 + 9 + 3
    assert auto["best"]["rank"] == expected["auto"]["best"]["rank"] and auto["best"]["score"] == expected["auto"]["best"]["score"]
    assert m.history[-1]["test_rmse"] == expected["test_rmse"]
    with pytest.raises(ValueError, match="budget"):
        gpumf.MF(**FAST, auto=True, budget=0).fit(frame)


def test_a_separate_test_set_maps_through_the_training_ids(frame):
    train, test = frame.iloc[:80000], frame.iloc[80000:]
    m = gpumf.MF(threads=1, **FAST).fit(train, test)
    assert m.summary["test_ratings"] == len(test)
    assert m.summary["cold_start"]["entries"] > 0
    scored = m.score(test)
    assert abs(scored["rmse"] - m.history[-1]["test_rmse"]) < 1e-4


def test_bad_data_and_settings_are_value_errors_with_the_clis_messages(frame):
    good = frame.to_numpy(dtype=np.float64)[:100]
    nan = good.copy()
    nan[5, 2] = np.nan
    inf = good.copy()
    inf[7, 2] = np.inf
    negative = good.copy()
    negative[3, 0] = -4
    cases = [
        (nan, {}, "training data: rating NaN at row 5 is not a finite number"),
        (inf, {}, "rating inf at row 7"),
        (negative, {}, "non-negative"),
        (np.array([[1e30, 1, 4.0], [2, 2, 3.0]]), {}, "user column: ids must be below 2\\^64, found 10{30} at row 0"),
        (np.zeros((0, 3)), {}, "no ratings"),
        (np.ones(4), {}, "shape"),
        ([[1, 2, 4.0], [3, 4]], {}, "^training data: not a table of rows of equal length"),
        (good, {"rank": 0}, "^rank=0: must be at least 1$"),
        (good, {"lr": -1.0}, "^lr=-1: must be a finite non-negative number"),
        (good, {"l1": float("nan")}, "^l1=NaN: must be a finite"),
        (good, {"loss": "huber"}, "loss must be one of squared, absolute"),
        (good, {"loss": "logistic", "nonneg": True, "biases": False}, "^nonneg=True: with the logistic loss and no biases"),
        (good, {"alpha": 3.0}, "^alpha=3: is a setting of the ials loss alone, and this run trains the squared loss"),
        (good, {"loss": "ials", "lr": 0.05}, "^lr=0.05: is SGD's step, and the ials loss solves each row by least squares"),
        (good, {"backend": "tpu"}, "backend must be"),
        (good, {"precision": "f64"}, "precision must be one of"),
        (good, {"gpu_memory": "lots"}, "gpu_memory: \"lots\" is not a size"),
        (good, {"threads": 100000}, "^threads=100000: 100000 is far more than"),
        # The engine's messages name Python's arguments where they would name the CLI's flags.
        (good, {"loss": "logistic"}, "^loss logistic: the training ratings hold more than two values.*\\(positive_threshold T makes"),
        (good, {"init_std": 1e4, "lr": 0.5}, "diverged.*lower init_std \\(now 10000\\) or lr"),
    ]
    for data, settings, message in cases:
        with pytest.raises(ValueError, match=message):
            gpumf.MF(**{**FAST, **settings}).fit(data)
    # A value of the wrong kind is named with its value, not as the engine's field.
    wrong = [
        ({"rank": -1}, ValueError, "^rank=-1: must be at least 1$"),
        ({"seed": 2**64}, ValueError, "^seed=18446744073709551616: must be below 2\\*\\*64$"),
        ({"epochs": 2.5}, TypeError, "^epochs=2.5: must be a whole number$"),
        ({"threads": "2"}, TypeError, "^threads='2': must be a whole number$"),
        ({"lr": "0.1"}, TypeError, "^lr='0.1': must be a number$"),
        ({"biases": 1}, TypeError, "^biases=1: must be True or False$"),
    ]
    for settings, kind, message in wrong:
        with pytest.raises(kind, match=message):
            gpumf.MF(**{**FAST, **settings}).fit(good)
    # The file loader's options likewise.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        good_file = Path(d) / "good.csv"
        np.savetxt(good_file, good, delimiter=",", fmt="%g")
        for option, kind, message in [
            ({"skip_columns": -1}, ValueError, "^skip_columns=-1: must be at least 0$"),
            ({"counts": 2}, TypeError, "^counts=2: must be True or False$"),
            ({"missing": 5}, TypeError, "^missing=5: must be a string$"),
            ({"columns": "u,i,r"}, ValueError, "^invalid setting: columns u,i,r: .*good.csv has no header line to name columns; give their numbers"),
            ({"columns": "1,2", "format": "mtx"}, ValueError, "^invalid setting: columns applies to delimited text, and .*good.csv is read as mtx$"),
        ]:
            with pytest.raises(kind, match=message):
                gpumf.MF(**FAST).fit(good_file, **option)
        assert gpumf.MF(**FAST).fit(good_file, skip_columns=np.int64(0), missing=None).model is not None
    with pytest.raises(TypeError, match="^test_fraction='0.2': must be a number$"):
        gpumf.MF(**FAST).fit(good, test_fraction="0.2")
    with pytest.raises(ValueError, match="or a file path; got dict$"):
        gpumf.MF(**FAST).fit({"user": [1], "item": [1], "rating": [4.0]})
    assert gpumf.MF(**{**FAST, "rank": np.int64(4), "lr": np.float32(0.01), "biases": np.bool_(True)}).fit(good).model is not None
    scipy = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match="no ratings"):
        gpumf.MF(**FAST).fit(scipy.csr_matrix((3, 3)))
    with pytest.raises(FileNotFoundError, match="no such file"):
        gpumf.MF(**FAST).fit("/no/such/ratings.csv")
    with pytest.raises(ValueError, match="ratings.csv:2: rating"):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            bad = Path(d) / "ratings.csv"
            bad.write_text("userId,movieId,rating\n1,2,x\n")
            gpumf.MF(**FAST).fit(bad)
    with pytest.raises(ValueError, match=r"^test_fraction=0.001: 0.001 of 100 ratings holds out none"):
        gpumf.MF(**FAST).fit(good, test_fraction=0.001)
    m = gpumf.MF(**FAST).fit(good)
    with pytest.raises(ValueError, match="differ in shape"):
        m.predict([1, 2], [1])
    # Pairs in any shape come back in it: a grid of users by items, row by row.
    grid = m.predict([[1, 1], [2, 2]], [[1, 2], [1, 2]])
    assert grid.shape == (2, 2) and np.array_equal(grid.ravel(), m.predict([1, 1, 2, 2], [1, 2, 1, 2]))
    # Ids from 2^63 up are users like any other (a cast through int64 made them unknown).
    # (2^63 + 2048: a float64 holds it exactly.)
    high = np.array([[2**63 + 2048, 1, 5], [2, 1, 1], [2**63 + 2048, 2, 5], [2, 2, 1]], dtype=np.uint64)
    h = gpumf.MF(**{**FAST, "epochs": 20}).fit(high)
    unknown = h.predict([2**40], [1])[0]
    for ids in (np.array([2**63 + 2048], dtype=np.uint64), np.array([2.0**63 + 2048])):
        assert h.predict(ids, [1])[0] > unknown + 0.1, (ids, h.predict(ids, [1]), unknown)
    # An id that is no whole number names no one (a cast made 1.5 user 1, NaN anyone).
    for bad_id, shown in [(1.5, "1.5"), (np.nan, "nan")]:
        with pytest.raises(ValueError, match=f"^users: ids must be whole numbers below 2\\^64, found {shown} at position 1$"):
            m.predict([1.0, bad_id], [1, 1])
    with pytest.raises(ValueError, match="no such user"):
        m.recommend(987654)
    with pytest.raises(TypeError, match="^exclude_seen='no': must be True or False$"):
        m.recommend(1, exclude_seen="no")
    with pytest.raises(ValueError, match="^values: ratings must be numbers"):
        m.recommend_new([1, 2], values=["a", "b"])
    with pytest.raises(TypeError, match="^metrics=5: must be a string or a list of strings$"):
        m.ranking_metrics(good, metrics=5)
    with pytest.raises(TypeError, match="^positive_threshold='x': must be a number$"):
        m.ranking_metrics(good, positive_threshold="x")
    with pytest.raises(RuntimeError, match="not fitted"):
        gpumf.MF().predict([1], [1])


def test_a_keyword_fit_would_drop_is_refused_by_name(frame, tmp_path):
    good = frame.to_numpy(dtype=np.float64)[:100]
    # An MF() setting passed to fit() (it used to be dropped without a word for data in memory).
    with pytest.raises(TypeError, match="'verbose'; verbose is a setting of MF\\(\\): MF\\(verbose=...\\)"):
        gpumf.MF(**FAST).fit(good, verbose=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'positive_treshold'$"):
        gpumf.MF(**FAST).fit(good, positive_treshold=4)
    # A file loader's option with no file.
    with pytest.raises(ValueError, match="^skip_columns=1: an option of the rating-file loader"):
        gpumf.MF(**FAST).fit(good, skip_columns=1)
    path = tmp_path / "ratings.csv"
    frame.head(200).to_csv(path, index=False)
    with pytest.raises(TypeError, match="'verbose'; verbose is a setting of MF"):
        gpumf.MF(**FAST).fit(path, verbose=False)
    assert gpumf.MF(**FAST).fit(path, skip_bad_lines=True).summary["train_ratings"] == 200
    binary = gpumf.MF(**{**FAST, "loss": "logistic"}).fit(good, positive_threshold=4)
    assert binary.history[-1]["train_log_loss"] > 0


def test_every_setting_and_load_option_is_documented():
    """help(gpumf.MF) is the manual at hand: each setting and each option of fit() is named there."""
    import inspect
    import re

    def undocumented(names, doc):
        return [name for name in names if not re.search(f"``{name}(``|=)", doc)]

    settings = [name for name in inspect.signature(gpumf.MF.__init__).parameters if name != "self"]
    assert undocumented(settings, gpumf.MF.__doc__) == []
    assert undocumented(gpumf._LOAD_OPTIONS, gpumf.MF.fit.__doc__) == []


def test_the_gil_is_released_while_training(frame):
    ticks = 0
    done = threading.Event()
    m = gpumf.MF(rank=64, epochs=40, threads=1, backend="cpu", verbose=False)
    worker = threading.Thread(target=lambda: (m.fit(frame), done.set()))
    worker.start()
    while not done.is_set():
        ticks += 1  # Python bytecode on this thread: runs only while the GIL is free.
    worker.join()
    assert len(m.history) == 40
    assert ticks > 10_000, f"the main thread ran {ticks} steps while training held the GIL"


def test_ctrl_c_stops_at_the_end_of_an_epoch_and_keeps_a_usable_model(frame):
    import _thread
    import signal

    # A process a shell starts in the background inherits SIGINT ignored, and Python then drops
    # a simulated Ctrl-C as well (the test would train all its epochs): Python's own handler,
    # for this test only.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # Epochs of 2.5 ms or more here: well past the timer, and a failure ends in a minute.
        m = gpumf.MF(rank=64, epochs=20_000, threads=1, backend="cpu", verbose=False)
        timer = threading.Timer(0.5, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            m.fit(frame)
        timer.cancel()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 0 < len(m.history) < 20_000
    assert np.isfinite(m.predict([1], [1])).all()
    assert len(m.recommend(1, 5)[0]) == 5


def test_a_callback_sees_every_epoch_and_can_stop_training(frame):
    reports = []
    m = gpumf.MF(threads=1, **FAST).fit(frame, test_fraction=0.2, callback=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3] and reports == m.history
    assert set(reports[0]) >= {"epoch", "train_loss", "train_rmse", "test_rmse", "learning_rate", "sgd_seconds"}

    class Enough(Exception):
        pass

    def stop_at_two(report):
        if report["epoch"] == 2:
            raise Enough()

    m = gpumf.MF(threads=1, **{**FAST, "epochs": 10})
    with pytest.raises(Enough):
        m.fit(frame, callback=stop_at_two)
    assert len(m.history) == 2


def test_progress_goes_to_stderr_and_verbose_false_silences_it(frame, capfd):
    gpumf.MF(**{**FAST, "verbose": True}).fit(frame)
    err = capfd.readouterr().err
    assert "epoch" in err or "gpumf" in err, err
    gpumf.MF(**FAST).fit(frame)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_the_gpu_backend_trains_like_the_cpu(frame):
    if not gpumf.adapters():
        if IN_CI:
            pytest.fail("no GPU adapter: GPU tests must run in CI (install mesa-vulkan-drivers)")
        pytest.skip("no GPU adapter (install mesa-vulkan-drivers for lavapipe)")
    settings = dict(rank=16, epochs=10, verbose=False, threads=1)
    gpu = gpumf.MF(backend="gpu", **settings).fit(frame, test_fraction=0.2)
    cpu = gpumf.MF(backend="cpu", **settings).fit(frame, test_fraction=0.2)
    assert "gpu" in gpu.summary["backend"]
    assert abs(gpu.history[-1]["test_rmse"] - cpu.history[-1]["test_rmse"]) < 0.01
    # The CLI's --gpu-memory: below what the set needs, the ratings stream from host memory.
    streamed = gpumf.MF(backend="gpu", gpu_memory="1MiB", **settings).fit(frame, test_fraction=0.2)
    assert "streamed" in streamed.summary["backend"], streamed.summary["backend"]
    assert abs(streamed.history[-1]["test_rmse"] - gpu.history[-1]["test_rmse"]) < 0.005



def test_gpu_failures_are_runtime_errors(frame, monkeypatch):
    monkeypatch.setenv("GPUMF_ADAPTER", "no-such-gpu")
    with pytest.raises(RuntimeError, match="GPUMF_ADAPTER=\"no-such-gpu\" matches no adapter"):
        gpumf.MF(backend="gpu", rank=4, epochs=1, verbose=False).fit(frame)


def test_binary_losses_predict_probabilities_and_classes(frame):
    liked = frame.assign(rating=(frame["rating"] >= 4).astype(np.int64))
    m = gpumf.MF(loss="logistic", threads=1, **{**FAST, "epochs": 10}).fit(liked, test_fraction=0.2)
    last = m.history[-1]
    assert last["metric"] == "log_loss" and 0 < last["test_log_loss"] < 0.69 and 0.5 < last["test_accuracy"] <= 1
    assert m.summary["labels"] == {"negative": 0.0, "positive": 1.0} and m.summary["test_auc"] > 0.6
    p = m.predict([1, 1, 2], [1, 50, 3])
    assert p.dtype == np.float32 and ((0 < p) & (p < 1)).all(), p
    assert set(m.classes([1, 1, 2], [1, 50, 3]).tolist()) <= {0.0, 1.0}
    scores = m.score(liked.iloc[:500])
    assert set(scores) == {"log_loss", "accuracy", "auc", "ratings"} and scores["ratings"] == 500
    # The CLI's --positive-threshold: the same labels from the ratings, in memory and from the file.
    for data in [frame, LATEST_SMALL]:
        t = gpumf.MF(loss="logistic", threads=1, **{**FAST, "epochs": 10}).fit(data, test_fraction=0.2, positive_threshold=4)
        assert t.history[-1]["test_log_loss"] == last["test_log_loss"]
    h = gpumf.MF(loss="hinge", threads=1, **FAST).fit(liked, test_fraction=0.2)
    margins, classes = h.predict([1, 2], [1, 3]), h.classes([1, 2], [1, 3])
    assert ((margins > 0) == (classes == 1.0)).all(), (margins, classes)
    with pytest.raises(ValueError, match="predicts values, not classes"):
        gpumf.MF(**FAST).fit(frame).classes([1], [1])


def test_nonneg_and_l1_are_the_clis_flags(frame):
    base = ["--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--epochs", "3", "--rank", "8"]
    for kwargs, flags in [({"nonneg": True}, ["--nonneg"]), ({"l1": 0.05}, ["--l1", "0.05"]), ({"loss": "absolute"}, ["--loss", "absolute"])]:
        expected = cli_json("train", "--train", str(LATEST_SMALL), *base, *flags)
        m = gpumf.MF(rank=8, epochs=3, backend="cpu", threads=1, verbose=False, **kwargs).fit(LATEST_SMALL, test_fraction=0.2)
        metric = expected["metric"]
        assert m.history[-1][f"test_{metric}"] == expected[f"test_{metric}"], (kwargs, metric)
    nonneg = gpumf.MF(nonneg=True, threads=1, **FAST).fit(frame)
    assert (nonneg.user_factors >= 0).all() and (nonneg.item_factors >= 0).all()


def test_similar_items_users_and_ranking_metrics():
    sp = pytest.importorskip("scipy.sparse")
    from gpumf.evaluation import ranking_metrics, train_test_split

    # 80 users x 60 items of plays: each user plays the items of their kind ((u + i) % 4 == 0),
    # rated 5, and a third of the others, rated 1.
    rows, cols, vals = [], [], []
    for u in range(80):
        for i in range(60):
            if (u + i) % 4 == 0 or (u * 3 + i) % 3 == 0:
                rows.append(u), cols.append(i), vals.append(5.0 if (u + i) % 4 == 0 else 1.0)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(80, 60))
    train, test = train_test_split(matrix, train_fraction=0.8, seed=3)
    assert train.nnz + test.nnz == matrix.nnz and train.multiply(test).nnz == 0
    m = gpumf.MF(rank=8, epochs=40, verbose=False, backend="cpu", biases=False).fit(train)

    items, cosines = m.similar_items(0, n=5)
    assert len(items) == 5 and 0 not in items.tolist() and np.all(np.diff(cosines) <= 0)
    assert all(i % 4 == 0 for i in items.tolist()), items
    users, _ = m.similar_users(0, n=3)
    assert len(users) == 3 and 0 not in users.tolist()

    liked = test.multiply(test >= 4)
    scores = ranking_metrics(m, train, liked, k=5)
    assert set(scores) >= {"precision@5", "recall@5", "ndcg@5", "map@5", "auc", "users", "positives"}
    assert scores["ndcg@5"] > 0.5 and scores["auc"] > 0.6, scores
    # The model's recorded training items are the same as train's.
    assert m.ranking_metrics(liked, k=5) == scores
    assert m.ranking_metrics(test, metrics="ndcg@5", positive_threshold=4)["ndcg@5"] == scores["ndcg@5"]
    pairs = np.c_[liked.tocoo().row, liked.tocoo().col]
    assert m.ranking_metrics(pairs, k=5) == scores

    # A new user who rated four items of kind 0 highly is recommended the rest of that kind.
    new, _ = m.recommend_new([0, 4, 8, 12], n=5, values=[5, 5, 5, 5])
    assert len(new) == 5 and all(i % 4 == 0 and i not in (0, 4, 8, 12) for i in new.tolist()), new
    with pytest.raises(ValueError, match="item 999"):
        m.recommend_new([999])
    with pytest.raises(ValueError, match="not a finite number"):
        m.recommend_new([0], values=[float("nan")])
    ids, _ = m.recommend_many([0], n=10**12)
    assert ids.shape == (1, 60)

    with pytest.raises(ValueError, match="metrics=ndcg@0: K must be at least 1"):
        m.ranking_metrics(liked, metrics=["ndcg@0"])
    with pytest.raises(ValueError, match="item 999"):
        m.similar_items(999)


def test_one_class_events_train_by_ials_with_their_own_defaults(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    from gpumf.evaluation import ranking_metrics, train_test_split

    # 80 users x 60 items of play counts (implicit's convention: a CSR matrix, users as rows):
    # each user plays the items of their kind ((u + i) % 4 == 0), 1 to 3 times.
    rows, cols, counts = zip(*[(u, i, 1 + (u * i) % 3) for u in range(80) for i in range(60) if (u + i) % 4 == 0])
    plays = sp.csr_matrix((np.array(counts, dtype=np.float32), (rows, cols)), shape=(80, 60))
    train, test = train_test_split(plays, train_fraction=0.8, seed=3)
    m = gpumf.MF(loss="ials", rank=8, verbose=False).fit(train)
    # The one-class loss's defaults, not the squared error's: no biases, no SVD++ term.
    assert (m.epochs, m.biases, m.svdpp) == (15, False, False)
    assert m.summary["metric"] == "ndcg@20" and "alternating least squares" in m.summary["backend"]
    scores = ranking_metrics(m, train, test, k=5)
    assert scores["ndcg@5"] > 0.8, scores
    # User 0's three held-out items of its kind lead its list (its training items are left out).
    ids, _ = m.recommend(0, n=3)
    assert all(i % 4 == 0 for i in ids.tolist()), ids
    new, _ = m.recommend_new([0, 4, 8], n=4, values=[3, 1, 2])
    assert all(i % 4 == 0 and i not in (0, 4, 8) for i in new.tolist()), new
    with pytest.raises(ValueError, match="negative"):
        m.recommend_new([0], values=[-1])
    # The pairwise loss ranks the same kinds, with its own defaults (60 epochs, lr 0.1).
    bpr = gpumf.MF(loss="bpr", rank=8, verbose=False, threads=1).fit(train)
    assert (bpr.epochs, bpr.lr, bpr.svdpp) == (60, pytest.approx(0.1), False)
    assert ranking_metrics(bpr, train, test, k=5)["ndcg@5"] > 0.8

    # A file of counts reads with counts=True; without it, its values are refused by name.
    path = tmp_path / "plays.tsv"
    coo = train.tocoo()
    np.savetxt(path, np.c_[coo.row, coo.col, coo.data], fmt="%d", delimiter="\t")
    assert gpumf.MF(loss="ials", rank=8, verbose=False).fit(str(path), counts=True).summary["train_ratings"] == train.nnz
    with pytest.raises(ValueError, match="positive_threshold|--positive-threshold"):
        gpumf.MF(loss="ials", rank=8, verbose=False).fit(str(path))
    with pytest.raises(ValueError, match="nonneg"):
        gpumf.MF(loss="ials", nonneg=True, verbose=False).fit(train)
    with pytest.raises(ValueError, match="unobserved_weight"):
        gpumf.MF(loss="ials", unobserved_weight=-1.0, verbose=False).fit(train)


def test_pairs_of_user_and_item_are_events_for_a_one_class_loss(tmp_path):
    pd = pytest.importorskip("pandas")
    # Events as a log of (user, item) rows, as a file of such lines is for the CLI.
    pairs = [(u, i) for u in range(40) for i in range(30) if (u + i) % 3 == 0]
    log = pd.DataFrame(pairs, columns=["user", "item"])
    settings = dict(loss="ials", rank=8, epochs=3, threads=1, verbose=False)
    ones = gpumf.MF(**settings).fit(log.assign(rating=1.0))
    for events in (log, log[["item", "user"]], np.array(pairs)):
        assert np.array_equal(gpumf.MF(**settings).fit(events).user_factors, ones.user_factors)
    bpr = gpumf.MF(loss="bpr", rank=8, epochs=3, verbose=False).fit(log, test=log.head(50))
    assert bpr.summary["train_ratings"] == len(pairs)
    # A rating loss refuses them by name rather than training on ones.
    with pytest.raises(ValueError, match="^training data: a user and an item but no rating \\(columns user, item; .*\\): .*one-class loss .*not loss='squared'"):
        gpumf.MF(rank=8, verbose=False).fit(log)
    # A frame that names its user and item but no rating holds events, as a file with that
    # header does for the CLI: its time stamps are never read as ratings (nor as counts).
    stamped = log.assign(timestamp=964982703)
    assert np.array_equal(gpumf.MF(**settings).fit(stamped).user_factors, ones.user_factors)
    with pytest.raises(ValueError, match="no rating \\(columns user, item, timestamp; a rating's is named rating, score"):
        gpumf.MF(rank=8, verbose=False).fit(stamped)
    plays = log.assign(timestamp=964982703, plays=1.0)
    assert np.array_equal(gpumf.MF(**settings).fit(plays).user_factors, ones.user_factors)
    with pytest.raises(ValueError, match="not loss='logistic'"):
        gpumf.MF(loss="logistic", rank=8, verbose=False).fit(np.array(pairs))
    # A one-class model's score is its ranking metrics, as the CLI's eval reports them; a
    # loaded one keeps its loss.
    assert ones.score(log.head(200)) == ones.ranking_metrics(log.head(200))
    ones.save(tmp_path / "events.gpumf")
    loaded = gpumf.load(tmp_path / "events.gpumf")
    assert loaded.loss == "ials" and loaded.score(log.head(200)) == ones.score(log.head(200))
