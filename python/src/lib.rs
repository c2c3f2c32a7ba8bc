//! `gpumf._gpumf`: the gpumf library for Python. Conversions only: NumPy buffers in, the
//! library's loaders, training loop and model, NumPy arrays out. The Python layer
//! (`python/gpumf/__init__.py`) turns SciPy and pandas inputs into these columns.

use gpumf::choice::Choice;
use gpumf::data::{load_ratings, parse_ratings, Duplicates, Format, LoadOptions, RatingSet};
use gpumf::gpu::{GpuOptions, Precision};
use gpumf::job::{Device, Holdout, Job, Listener, Source, Validation};
use gpumf::model::{Model, Params};
use gpumf::objective::{Confidence, Loss, OneClass};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, ToPyArray};
use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;
use std::path::PathBuf;

/// The shipped MovieLens latest-small, so `gpumf.datasets` works from any install.
const LATEST_SMALL: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/ml-latest-small/ratings.csv"));

/// The library's errors as the Python exceptions a user expects: bad data and settings are
/// ValueError, GPU failures RuntimeError, files OSError and its kinds; a setting is named as
/// Python names it (`rank=0: must be at least 1`), and so is any flag the rest mention.
fn py_err(e: gpumf::Error) -> PyErr {
    use gpumf::Error as E;
    let message = in_python_words(&e.to_string());
    match e {
        E::Setting { argument, value, problem, .. } => PyValueError::new_err(format!("{argument}={value}: {problem}")),
        E::NotFound { .. } => PyFileNotFoundError::new_err(message),
        E::IsDirectory { .. } => PyIsADirectoryError::new_err(message),
        E::Io { .. } | E::Output { .. } => PyOSError::new_err(message),
        E::Gpu(_) | E::NoAdapter => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// Python's argument for each CLI flag a Python user can set, as they would set it. The
/// library words its messages for the CLI ("lower --init-std (now 5) or --lr").
const ARGUMENTS: &[(&str, &str)] = &[
    ("--no-svdpp", "svdpp=False"),
    ("--no-biases", "biases=False"),
    ("--no-scale", "scale=False"),
    ("--constant-reg", "frequency_reg=False"),
    ("--force", "overwrite=True"),
    ("--nonneg", "nonneg=True"),
    ("--auto", "auto=True"),
    ("--refit", "refit=True"),
    ("--validation", "validation"),
    ("--patience", "patience"),
    ("--split", "split"),
    ("--counts", "counts=True"),
    ("--skip-bad-lines", "skip_bad_lines=True"),
    ("--test-fraction", "test_fraction"),
    ("--budget", "budget"),
    ("--format", "format"),
    ("--missing", "missing"),
    ("--skip-columns", "skip_columns"),
    ("--duplicates", "duplicates"),
    ("--positive-threshold", "positive_threshold"),
    ("--columns", "columns"),
    ("--metrics", "metrics"),
    ("--rank", "rank"),
    ("--epochs", "epochs"),
    ("--lr", "lr"),
    ("--lr-decay", "lr_decay"),
    ("--reg", "reg"),
    ("--reg-bias", "reg_bias"),
    ("--init-std", "init_std"),
    ("--models", "models"),
    ("--loss", "loss"),
    ("--unobserved-weight", "unobserved_weight"),
    ("--confidence", "confidence"),
    ("--alpha", "alpha"),
    ("--epsilon", "epsilon"),
    ("--cg-steps", "cg_steps"),
    ("--l1", "l1"),
    ("--seed", "seed"),
    ("--blocks", "blocks"),
    ("--eval-every", "eval_every"),
    ("--backend", "backend"),
    ("--threads", "threads"),
    ("--precision", "precision"),
    ("--gpu-memory", "gpu_memory"),
    ("--memory", "memory"),
    ("--cache-dir", "cache_dir"),
];

/// `message` with each flag in [`ARGUMENTS`] named as Python names it. A flag starts a word
/// (after a space, a bracket or a quote), so a path holding "--" is left as it is.
fn in_python_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("--") {
        let starts_word = rest[..at].chars().next_back().is_none_or(|c| c.is_whitespace() || "([`'\"".contains(c));
        let len = rest[at + 2..].find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')).unwrap_or(rest.len() - at - 2);
        let flag = &rest[at..at + 2 + len];
        out.push_str(&rest[..at]);
        match ARGUMENTS.iter().find(|(f, _)| *f == flag).filter(|_| starts_word) {
            Some((_, argument)) => out.push_str(argument),
            None => out.push_str(flag),
        }
        rest = &rest[at + 2 + len..];
    }
    out.push_str(rest);
    out
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{what} must be a contiguous one-dimensional array")))
}

/// A NumPy column as it arrives, of any common dtype and any stride, read in place: no
/// conversion in Python first (at 10M ratings that cost more than the CLI's whole load).
#[derive(FromPyObject)]
enum Column<'py> {
    U64(PyReadonlyArray1<'py, u64>),
    I64(PyReadonlyArray1<'py, i64>),
    U32(PyReadonlyArray1<'py, u32>),
    I32(PyReadonlyArray1<'py, i32>),
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::U64(a) => a.as_array().len(),
            Column::I64(a) => a.as_array().len(),
            Column::U32(a) => a.as_array().len(),
            Column::I32(a) => a.as_array().len(),
            Column::F64(a) => a.as_array().len(),
            Column::F32(a) => a.as_array().len(),
        }
    }

    /// Ids: whole non-negative numbers, whatever the dtype.
    fn ids(&self, what: &str) -> PyResult<Vec<u64>> {
        fn whole<T: Copy + Into<f64> + numpy::Element>(a: &PyReadonlyArray1<'_, T>, what: &str) -> PyResult<Vec<u64>> {
            a.as_array()
                .iter()
                .enumerate()
                .map(|(row, &v)| {
                    let v: f64 = v.into();
                    if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
                        Ok(v as u64)
                    } else {
                        let kind = if v < 0.0 { "non-negative" } else if v.fract() == 0.0 { "below 2^64" } else { "whole numbers" };
                        Err(PyValueError::new_err(format!("{what}: ids must be {kind}, found {v} at row {row}")))
                    }
                })
                .collect()
        }
        match self {
            Column::U64(a) => Ok(a.as_array().to_vec()),
            Column::U32(a) => Ok(a.as_array().iter().map(|&v| v as u64).collect()),
            Column::I64(a) => a
                .as_array()
                .iter()
                .enumerate()
                .map(|(row, &v)| u64::try_from(v).map_err(|_| PyValueError::new_err(format!("{what}: ids must be non-negative, found {v} at row {row}"))))
                .collect(),
            Column::I32(a) => whole(a, what),
            Column::F64(a) => whole(a, what),
            Column::F32(a) => whole(a, what),
        }
    }

    /// Ratings as the engine's f32 (finiteness is checked with the rest of the set).
    fn ratings(&self) -> Vec<f32> {
        match self {
            Column::F32(a) => a.as_array().to_vec(),
            Column::F64(a) => a.as_array().iter().map(|&v| v as f32).collect(),
            Column::U64(a) => a.as_array().iter().map(|&v| v as f32).collect(),
            Column::I64(a) => a.as_array().iter().map(|&v| v as f32).collect(),
            Column::U32(a) => a.as_array().iter().map(|&v| v as f32).collect(),
            Column::I32(a) => a.as_array().iter().map(|&v| v as f32).collect(),
        }
    }
}

fn columns(u: &Column<'_>, i: &Column<'_>, r: &Column<'_>, what: &str) -> PyResult<RatingSet> {
    if u.len() != i.len() || u.len() != r.len() {
        return Err(PyValueError::new_err(format!("{what}: the user, item and rating columns differ in length ({}, {} and {})", u.len(), i.len(), r.len())));
    }
    let (users, items, ratings) = (u.ids(&format!("{what}, user column"))?, i.ids(&format!("{what}, item column"))?, r.ratings());
    RatingSet::from_columns(&users, &items, &ratings, what).map_err(py_err)
}

/// A choice given by name, as the CLI spells it.
fn named<T: Choice>(value: &str, what: &str) -> PyResult<T> {
    T::named(value).map_err(|_| {
        let names: Vec<&str> = T::ALL.iter().map(|c| c.1).collect();
        PyValueError::new_err(format!("{what} must be one of {}, got {value:?}", names.join(", ")))
    })
}

/// The library's defaults for `loss`, so Python states none of its own.
#[pyfunction]
#[pyo3(signature = (loss="squared"))]
fn default_params<'py>(py: Python<'py>, loss: &str) -> PyResult<Bound<'py, PyDict>> {
    let p = Params::for_loss(named::<Loss>(loss, "loss")?);
    let d = PyDict::new(py);
    d.set_item("rank", p.rank)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("lr", p.learning_rate)?;
    d.set_item("lr_decay", p.lr_decay)?;
    d.set_item("reg", p.reg)?;
    d.set_item("reg_bias", p.reg_bias)?;
    d.set_item("biases", p.biases)?;
    d.set_item("init_std", p.init_std)?;
    d.set_item("seed", p.seed)?;
    d.set_item("eval_every", p.eval_every)?;
    d.set_item("scale", p.scale)?;
    d.set_item("frequency_reg", p.frequency_reg)?;
    d.set_item("svdpp", p.svdpp)?;
    d.set_item("models", p.models)?;
    d.set_item("loss", Choice::name(p.loss))?;
    d.set_item("nonneg", p.nonneg)?;
    d.set_item("l1", p.l1)?;
    d.set_item("unobserved_weight", p.one_class.unobserved_weight)?;
    d.set_item("confidence", Choice::name(p.one_class.confidence))?;
    d.set_item("alpha", p.one_class.alpha)?;
    d.set_item("epsilon", p.one_class.epsilon)?;
    d.set_item("cg_steps", p.one_class.cg_steps)?;
    Ok(d)
}

/// A rating file's columns: each id column integers, or, where the file's ids are labels
/// (ASINs, names), the ids as the file wrote them, which the package numbers as it numbers a
/// DataFrame's strings.
type Columns<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyArray1<f32>>);

fn set_columns<'py>(py: Python<'py>, set: &RatingSet) -> PyResult<Columns<'py>> {
    let ids = |map: &gpumf::data::IdMap, row: fn(&gpumf::data::Rating) -> u32| -> PyResult<Bound<'py, PyAny>> {
        if map.has_labels() {
            let shown: Vec<String> = set.entries.iter().map(|r| map.shown(row(r)).to_string()).collect();
            return shown.into_pyobject(py).map(|list| list.into_any());
        }
        Ok(set.entries.iter().map(|r| map.external_id(row(r))).collect::<Vec<u64>>().into_pyarray(py).into_any())
    };
    let ratings: Vec<f32> = set.entries.iter().map(|r| r.value).collect();
    Ok((ids(&set.users, |r| r.user)?, ids(&set.items, |r| r.item)?, ratings.into_pyarray(py)))
}

/// Where `map`'s ids include labels: each row's id (its key, as `user_ids` gives it) and
/// its text, for the package to answer to the labels.
fn labelled_ids<'py>(py: Python<'py>, map: &gpumf::data::IdMap) -> Option<(Bound<'py, PyArray1<u64>>, Vec<String>)> {
    map.has_labels().then(|| (map.externals().to_pyarray(py), (0..map.len() as u32).map(|i| map.shown(i).to_string()).collect()))
}

/// Whether `split` (Python's `split=`, the CLI's `--split`) holds out test ratings per user.
fn per_user(split: &str) -> PyResult<bool> {
    match split {
        "random" => Ok(false),
        "per-user" => Ok(true),
        other => Err(PyValueError::new_err(format!("split must be random or per-user, got {other:?}"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn load_options(format: &str, skip_bad_lines: bool, missing: Option<String>, skip_columns: usize, duplicates: &str, positive_threshold: Option<f32>, counts: bool, columns: Option<&str>) -> PyResult<LoadOptions> {
    let columns = columns.map(|c| c.parse::<gpumf::data::Columns>().map_err(|e| PyValueError::new_err(format!("columns={c:?}: {e}")))).transpose()?;
    Ok(LoadOptions {
        format: named::<Format>(format, "format")?,
        skip_bad_lines,
        missing,
        skip_columns,
        split_column: None,
        duplicates: named::<Duplicates>(duplicates, "duplicates")?,
        positive_threshold,
        counts,
        columns,
        max_bytes: None,
    })
}

/// Reads a rating file with the CLI's loader: (user ids, item ids, ratings) in file order.
#[pyfunction]
#[pyo3(signature = (path, format="auto", skip_bad_lines=false, missing=None, skip_columns=0, duplicates="keep", positive_threshold=None, columns=None))]
#[allow(clippy::too_many_arguments)]
fn load_file<'py>(py: Python<'py>, path: PathBuf, format: &str, skip_bad_lines: bool, missing: Option<String>, skip_columns: usize, duplicates: &str, positive_threshold: Option<f32>, columns: Option<&str>) -> PyResult<(Columns<'py>, String)> {
    let options = load_options(format, skip_bad_lines, missing, skip_columns, duplicates, positive_threshold, false, columns)?;
    let loaded = py.detach(|| load_ratings(&path, options)).map_err(py_err)?;
    Ok((set_columns(py, &loaded.ratings)?, loaded.summary(&path)))
}

/// MovieLens latest-small, shipped inside the extension: (user ids, item ids, ratings).
#[pyfunction]
fn latest_small(py: Python<'_>) -> PyResult<Columns<'_>> {
    let loaded = parse_ratings(LATEST_SMALL, std::path::Path::new("ml-latest-small/ratings.csv"), LoadOptions::default()).map_err(py_err)?;
    set_columns(py, &loaded.ratings)
}

/// Whether `loss` trains on one-class events, so that data of a user and an item alone (no
/// rating) may train it.
#[pyfunction]
fn one_class(loss: &str) -> PyResult<bool> {
    Ok(named::<Loss>(loss, "loss")?.is_one_class())
}

/// The GPU adapters wgpu sees, as `gpumf info --json` prints them.
#[pyfunction]
fn adapters() -> String {
    serde_json::to_string(&gpumf::gpu::list_adapters()).unwrap_or_else(|_| "[]".into())
}

/// A trained model: the library's `Model`, shared with the CLI and its file format.
#[pyclass(name = "Model", module = "gpumf._gpumf", frozen)]
struct PyModel {
    model: Model,
}

/// What training returns to Python: the model, the per-epoch reports as the CLI's JSON, a
/// summary, and the exception that stopped training early, if one did.
type Fitted = (PyModel, Vec<String>, String, Option<PyErr>);

/// The model's settings and where it trains, as `MF` holds them (a dict of these keys).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Settings {
    rank: usize,
    epochs: usize,
    lr: f32,
    lr_decay: f32,
    reg: f32,
    reg_bias: f32,
    biases: bool,
    init_std: f32,
    seed: u64,
    eval_every: usize,
    scale: bool,
    frequency_reg: bool,
    svdpp: bool,
    blocks: Option<String>,
    auto: bool,
    budget: f64,
    models: usize,
    loss: String,
    nonneg: bool,
    l1: f32,
    unobserved_weight: Option<f32>,
    confidence: String,
    alpha: f32,
    epsilon: f32,
    cg_steps: usize,
    backend: String,
    threads: Option<usize>,
    precision: String,
    gpu_memory: Option<String>,
    validation: Option<f64>,
    patience: Option<usize>,
    refit: bool,
    memory: Option<String>,
    cache_dir: Option<PathBuf>,
}

impl Settings {
    fn params(&self) -> PyResult<Params> {
        let params = Params {
            rank: self.rank,
            epochs: self.epochs,
            learning_rate: self.lr,
            lr_decay: self.lr_decay,
            reg: self.reg,
            reg_bias: self.reg_bias,
            biases: self.biases,
            init_std: self.init_std,
            seed: self.seed,
            eval_every: self.eval_every,
            scale: self.scale,
            frequency_reg: self.frequency_reg,
            svdpp: self.svdpp,
            models: self.models,
            loss: named::<Loss>(&self.loss, "loss")?,
            nonneg: self.nonneg,
            l1: self.l1,
            one_class: OneClass {
                // The job scales it to the data where not given.
                unobserved_weight: self.unobserved_weight.unwrap_or(OneClass::default().unobserved_weight),
                confidence: named::<Confidence>(&self.confidence, "confidence")?,
                alpha: self.alpha,
                epsilon: self.epsilon,
                cg_steps: self.cg_steps,
            },
            blocks: self.blocks.as_deref().map(|b| b.parse::<gpumf::grid::GridSize>().map_err(|e| PyValueError::new_err(format!("blocks={b:?}: {e}")))).transpose()?,
        };
        params.validate().map_err(py_err)?;
        Ok(params)
    }
}

type ColumnArgs<'py> = (Column<'py>, Column<'py>, Column<'py>);

/// Trains on ratings given as columns of external ids (a test set likewise, or a seeded
/// held-out fraction). The columns are copied into the engine's ratings while the GIL is held,
/// so Python code cannot change the buffers under the copy.
#[pyfunction]
#[pyo3(signature = (data, test, test_fraction, settings, split="random", on_epoch=None, on_note=None, on_start=None))]
#[allow(clippy::too_many_arguments)]
fn train_columns(
    py: Python<'_>,
    data: ColumnArgs<'_>,
    test: Option<ColumnArgs<'_>>,
    test_fraction: Option<f64>,
    settings: Settings,
    split: &str,
    on_epoch: Option<Py<PyAny>>,
    on_note: Option<Py<PyAny>>,
    on_start: Option<Py<PyAny>>,
) -> PyResult<Fitted> {
    let train = columns(&data.0, &data.1, &data.2, "training data")?;
    let holdout = match (test, test_fraction) {
        (Some(_), Some(_)) => return Err(PyValueError::new_err("give test or test_fraction, not both")),
        (Some((u, i, r)), None) => Holdout::Ratings(columns(&u, &i, &r, "test data")?),
        (None, Some(fraction)) => Holdout::Fraction { fraction, per_user: per_user(split)? },
        (None, None) => Holdout::None,
    };
    let job = settings.job(Source::Ratings(train), holdout, LoadOptions::default())?;
    fit(py, job, Hooks { on_epoch, on_note, on_start })
}

/// Trains on rating files read by the CLI's loader, as `gpumf train --train PATH` does: the
/// ratings go from the file to the engine without a round trip through Python.
#[pyfunction]
#[pyo3(signature = (path, test_path, test_fraction, settings, split="random", format="auto", skip_bad_lines=false, missing=None, skip_columns=0, duplicates="keep", positive_threshold=None, counts=false, columns=None, on_epoch=None, on_note=None, on_start=None))]
#[allow(clippy::too_many_arguments)]
fn train_files(
    py: Python<'_>,
    path: PathBuf,
    test_path: Option<PathBuf>,
    test_fraction: Option<f64>,
    settings: Settings,
    split: &str,
    format: &str,
    skip_bad_lines: bool,
    missing: Option<String>,
    skip_columns: usize,
    duplicates: &str,
    positive_threshold: Option<f32>,
    counts: bool,
    columns: Option<&str>,
    on_epoch: Option<Py<PyAny>>,
    on_note: Option<Py<PyAny>>,
    on_start: Option<Py<PyAny>>,
) -> PyResult<Fitted> {
    let load = load_options(format, skip_bad_lines, missing, skip_columns, duplicates, positive_threshold, counts, columns)?;
    let holdout = match (test_path, test_fraction) {
        (Some(_), Some(_)) => return Err(PyValueError::new_err("give test or test_fraction, not both")),
        (Some(test), None) => Holdout::File(test),
        (None, Some(fraction)) => Holdout::Fraction { fraction, per_user: per_user(split)? },
        (None, None) => Holdout::None,
    };
    let job = settings.job(Source::File(path), holdout, load)?;
    fit(py, job, Hooks { on_epoch, on_note, on_start })
}

impl Settings {
    /// The job these settings describe, on `source` with `holdout`: the library chooses how
    /// it trains, as for the CLI.
    fn job(&self, source: Source, holdout: Holdout, load: LoadOptions) -> PyResult<Job> {
        let params = self.params()?;
        let threads = gpumf::resources::threads(self.threads, "--threads", "threads").map_err(py_err)?;
        let precision = named::<Precision>(&self.precision, "precision")?;
        let size = |name: &str, size: &str| gpumf::resources::parse_size(size).map_err(|e| PyValueError::new_err(format!("{name}: {e}")));
        let gpu_memory = self.gpu_memory.as_deref().map(|s| size("gpu_memory", s)).transpose()?;
        let memory = self.memory.as_deref().map(|s| size("memory", s)).transpose()?;
        if self.cache_dir.is_some() && memory.is_none() {
            return Err(PyValueError::new_err("cache_dir: where memory=SIZE keeps its block cache; give memory too"));
        }
        if memory.is_some() && !matches!(source, Source::File(_)) {
            return Err(PyValueError::new_err("memory: reads a rating file piece by piece into blocks on disk; give the training data, and any test set, as files' paths"));
        }
        let device = match self.backend.as_str() {
            "cpu" => Device::Cpu,
            "gpu" => Device::Gpu,
            "auto" => Device::Auto,
            other => return Err(PyValueError::new_err(format!("backend must be auto, cpu or gpu, got {other:?}"))),
        };
        if self.auto && !(self.budget.is_finite() && self.budget > 0.0) {
            return Err(PyValueError::new_err(format!("budget={}: must be a positive number of seconds", self.budget)));
        }
        if self.validation.is_none() {
            if let Some(patience) = self.patience {
                return Err(PyValueError::new_err(format!("patience={patience}: applies to early stopping; give validation=F too")));
            }
            if self.refit {
                return Err(PyValueError::new_err("refit=True: applies to early stopping; give validation=F too"));
            }
        }
        Ok(Job {
            holdout,
            load,
            device,
            threads,
            gpu: GpuOptions { precision, gpu_memory, ..Default::default() },
            search: self.auto.then(|| std::time::Duration::from_secs_f64(self.budget)),
            unobserved_weight: self.unobserved_weight,
            validation: self.validation.map(|fraction| Validation { fraction, patience: self.patience.unwrap_or(Validation::PATIENCE), refit: self.refit }),
            memory,
            cache_dir: self.cache_dir.clone(),
            ..Job::new(source, params)
        })
    }
}

/// Python's callables for what a job says as it runs: each epoch's report as the CLI's JSON,
/// notes, and the start of each training run (its epochs, and which ratings it scores: "test",
/// or "validation" for early stopping's).
struct Hooks {
    on_epoch: Option<Py<PyAny>>,
    on_note: Option<Py<PyAny>>,
    on_start: Option<Py<PyAny>>,
}

/// The job's listener: calls the hooks (giving Ctrl-C, or a hook's exception, the chance to
/// stop training) and keeps the history of the run whose model is kept, the last to start.
struct Callbacks<'a> {
    hooks: Hooks,
    held_out: &'static str,
    history: &'a mut Vec<String>,
    stopped: &'a mut Option<PyErr>,
}

impl Listener for Callbacks<'_> {
    fn note(&mut self, message: &str) {
        if let Some(f) = &self.hooks.on_note {
            Python::attach(|py| {
                if let Err(e) = f.call1(py, (message.to_string(),)) {
                    self.stopped.get_or_insert(e);
                }
            });
        }
    }

    fn start(&mut self, epochs: usize, held_out: &'static str) {
        self.history.clear();
        self.held_out = held_out;
        if let Some(f) = &self.hooks.on_start {
            Python::attach(|py| {
                if let Err(e) = f.call1(py, (epochs, held_out)) {
                    self.stopped.get_or_insert(e);
                }
            });
        }
    }

    fn epoch(&mut self, report: &gpumf::training::EpochReport) -> bool {
        let json = gpumf::job::report_json(report, self.held_out).to_string();
        self.history.push(json.clone());
        Python::attach(|py| {
            let called = match &self.hooks.on_epoch {
                Some(f) => f.call1(py, (json,)).map(drop),
                None => Ok(()),
            };
            match called.and_then(|_| py.check_signals()) {
                Ok(()) => self.stopped.is_none(),
                Err(e) => {
                    self.stopped.get_or_insert(e);
                    false
                }
            }
        })
    }
}

/// Runs `job` without the GIL; each epoch takes it back for the callback and for signals, so
/// Ctrl-C ends training at the end of the epoch with the model kept.
fn fit(py: Python<'_>, job: Job, hooks: Hooks) -> PyResult<Fitted> {
    let mut history = Vec::new();
    let mut stopped: Option<PyErr> = None;
    let run = py.detach(|| {
        let mut callbacks = Callbacks { hooks, held_out: "test", history: &mut history, stopped: &mut stopped };
        job.run(&mut callbacks)
    });
    let run = run.map_err(py_err)?.ok_or_else(|| PyRuntimeError::new_err("a cluster's process other than 0 holds no model"))?;
    let trained = &run.trained;
    let mut summary = serde_json::json!({
        "backend": trained.backend,
        "train_seconds": trained.train_seconds,
        "kernel_seconds": trained.kernel_seconds,
        "setup_seconds": trained.setup_seconds,
        "total_seconds": trained.total_seconds,
        "train_ratings": run.train_ratings,
        "test_ratings": run.test_ratings,
        "users": run.users,
        "items": run.items,
        "cold_start": run.cold,
        "loss": run.params.loss,
        "metric": run.params.loss.metric(),
        "labels": trained.model.labels,
        "auto": run.search.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        "validation": run.validation.as_ref().map(gpumf::job::Stopped::to_json),
    });
    for &m in run.params.loss.metrics() {
        summary[format!("test_{}", m.name())] = run.test.and_then(|s| s.get(m)).into();
    }
    Ok((PyModel { model: run.trained.model }, history, summary.to_string(), stopped))
}

/// Recommendations: item ids and their scores, one row a user for many users.
type Ranked<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>);
type RankedMany<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

#[pymethods]
impl PyModel {
    /// Predictions for pairs of ids (unknown ids predicted from what is known): ratings, or the
    /// probabilities (logistic loss) or margins (hinge losses) of the positive label.
    fn predict<'py>(&self, py: Python<'py>, users: PyReadonlyArray1<'py, u64>, items: PyReadonlyArray1<'py, u64>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let (u, i) = (slice(&users, "users")?, slice(&items, "items")?);
        if u.len() != i.len() {
            return Err(PyValueError::new_err(format!("users and items differ in length ({} and {})", u.len(), i.len())));
        }
        let m = &self.model;
        let out: Vec<f32> = py.detach(|| u.par_iter().zip(i).map(|(&u, &i)| m.predict_external(u, i)).collect());
        Ok(out.into_pyarray(py))
    }

    /// The `n` best items for one user: (item ids, unclipped scores), best first.
    #[pyo3(signature = (user, n=10, exclude_seen=true))]
    fn recommend<'py>(&self, py: Python<'py>, user: u64, n: usize, exclude_seen: bool) -> PyResult<Ranked<'py>> {
        let u = self.user_index(user)?;
        let best = py.detach(|| self.model.recommend(u, n, exclude_seen));
        let ids: Vec<u64> = best.iter().map(|&(i, _)| self.model.items.external_id(i)).collect();
        let scores: Vec<f32> = best.iter().map(|&(_, s)| s).collect();
        Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
    }

    /// The `n` best items for each of many users, in parallel: (ids, scores), one row a user;
    /// rows with fewer than `n` items are padded with id -1 and score NaN.
    #[pyo3(signature = (users, n=10, exclude_seen=true))]
    fn recommend_many<'py>(&self, py: Python<'py>, users: PyReadonlyArray1<'py, u64>, n: usize, exclude_seen: bool) -> PyResult<RankedMany<'py>> {
        let indices: Vec<u32> = slice(&users, "users")?.iter().map(|&u| self.user_index(u)).collect::<PyResult<_>>()?;
        // (a list is never longer than the items, however large `n`)
        let n = n.min(self.model.items.len());
        let rows: Vec<Vec<(u32, f32)>> = py.detach(|| self.model.recommend_many(&indices, n, exclude_seen));
        let mut ids = numpy::ndarray::Array2::<i64>::from_elem((rows.len(), n), -1);
        let mut scores = numpy::ndarray::Array2::<f32>::from_elem((rows.len(), n), f32::NAN);
        for (r, row) in rows.iter().enumerate() {
            for (c, &(i, s)) in row.iter().enumerate() {
                ids[[r, c]] = self.model.items.external_id(i) as i64;
                scores[[r, c]] = s;
            }
        }
        Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
    }

    /// The `n` items whose factors have the highest cosine with `item`'s: (ids, cosines).
    #[pyo3(signature = (item, n=10))]
    fn similar_items<'py>(&self, py: Python<'py>, item: u64, n: usize) -> PyResult<Ranked<'py>> {
        let i = self.model.items.index_of(item).ok_or_else(|| PyValueError::new_err(format!("item {item}: the model has no such item (it knows {} items)", self.model.items.len())))?;
        let best = py.detach(|| self.model.similar_items(i, n));
        Ok(ranked(py, &best, &self.model.items))
    }

    /// The `n` users whose factors have the highest cosine with `user`'s: (ids, cosines).
    #[pyo3(signature = (user, n=10))]
    fn similar_users<'py>(&self, py: Python<'py>, user: u64, n: usize) -> PyResult<Ranked<'py>> {
        let u = self.user_index(user)?;
        let best = py.detach(|| self.model.similar_users(u, n));
        Ok(ranked(py, &best, &self.model.users))
    }

    /// The `n` best items for a user the model has not seen, from their `items` and `values`
    /// (default: the top of the rating scale, or the positive label), the row solved with the
    /// items' factors fixed (fold-in): (ids, scores), the given items left out unless
    /// `exclude_seen` is false.
    #[pyo3(signature = (items, values=None, n=10, exclude_seen=true))]
    fn recommend_new<'py>(&self, py: Python<'py>, items: PyReadonlyArray1<'py, u64>, values: Option<PyReadonlyArray1<'py, f32>>, n: usize, exclude_seen: bool) -> PyResult<Ranked<'py>> {
        let m = &self.model;
        let ids = slice(&items, "items")?;
        let indices: Vec<u32> = ids.iter().map(|&i| m.items.index_of(i).ok_or_else(|| PyValueError::new_err(format!("item {i}: the model has no such item (it knows {} items)", m.items.len())))).collect::<PyResult<_>>()?;
        let values: Vec<f32> = match &values {
            Some(v) => slice(v, "values")?.to_vec(),
            None => vec![m.liked_value(); indices.len()],
        };
        if values.len() != indices.len() {
            return Err(PyValueError::new_err(format!("items and values differ in length ({} and {})", indices.len(), values.len())));
        }
        if let Some(message) = values.iter().find_map(|&v| m.check_rated_value(v).err()) {
            return Err(PyValueError::new_err(format!("values: {message}")));
        }
        let rated: Vec<(u32, f32)> = indices.iter().copied().zip(values).collect();
        let best = py.detach(|| m.fold_in(&rated, gpumf::model::FoldInReg::default()).map(|user| m.recommend_folded(&user, n, if exclude_seen { &indices } else { &[] }))).map_err(py_err)?;
        Ok(ranked(py, &best, &m.items))
    }

    /// Ranking metrics (`"ndcg@20,recall@20"`) of the model's lists on held-out positives given
    /// as columns of ids, leaving out each user's training items: those of `train_users` and
    /// `train_items` when given, else those the model recorded. A JSON object.
    #[pyo3(signature = (users, items, metrics, train_users=None, train_items=None))]
    fn ranking_metrics(
        &self,
        py: Python<'_>,
        users: PyReadonlyArray1<'_, u64>,
        items: PyReadonlyArray1<'_, u64>,
        metrics: &str,
        train_users: Option<PyReadonlyArray1<'_, u64>>,
        train_items: Option<PyReadonlyArray1<'_, u64>>,
    ) -> PyResult<String> {
        let metrics = gpumf::ranking::RankingMetric::parse_list(metrics).map_err(|e| PyValueError::new_err(format!("metrics={e}")))?;
        let m = &self.model;
        let test = self.pairs(slice(&users, "users")?, slice(&items, "items")?)?;
        let with_train;
        let model = match (&train_users, &train_items) {
            (Some(tu), Some(ti)) => {
                let train: Vec<gpumf::data::Rating> = self.pairs(slice(tu, "train users")?, slice(ti, "train items")?)?.into_iter().filter(|r| r.user != gpumf::data::UNKNOWN && r.item != gpumf::data::UNKNOWN).collect();
                with_train = Model { seen: Some(gpumf::model::SeenItems::from_ratings(&train, m.users.len(), m.items.len())), ..m.clone() };
                &with_train
            }
            (None, None) => m,
            _ => return Err(PyValueError::new_err("give both train_users and train_items, or neither")),
        };
        let report = py.detach(|| gpumf::ranking::ranking_metrics(model, &test, |_| true, &metrics)).map_err(py_err)?;
        let mut summary = serde_json::json!({ "users": report.users, "positives": report.positives, "left_out": report.left_out });
        for (metric, value) in &report.values {
            summary[metric.name()] = if value.is_finite() { (*value).into() } else { serde_json::Value::Null };
        }
        Ok(summary.to_string())
    }

    #[getter]
    fn user_factors<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.model.user_factors.to_pyarray(py)
    }

    #[getter]
    fn item_factors<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.model.item_factors.to_pyarray(py)
    }

    #[getter]
    fn user_bias<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.model.user_bias.to_pyarray(py)
    }

    #[getter]
    fn item_bias<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.model.item_bias.to_pyarray(py)
    }

    #[getter]
    fn global_mean(&self) -> f32 {
        self.model.mean
    }

    #[getter]
    fn rating_range(&self) -> (f32, f32) {
        self.model.rating_range
    }

    #[getter]
    fn rank(&self) -> usize {
        self.model.rank()
    }

    /// The loss the model was trained with, by its name.
    #[getter]
    fn loss(&self) -> &'static str {
        Choice::name(self.model.loss)
    }

    /// With a binary loss: (negative, positive), the data's two values.
    #[getter]
    fn labels(&self) -> Option<(f32, f32)> {
        self.model.labels.map(|l| (l.negative, l.positive))
    }

    /// Every metric of the model's loss on ratings given as columns of external ids (the
    /// CLI's `eval`): a JSON object of the metrics.
    fn measure(&self, users: PyReadonlyArray1<'_, u64>, items: PyReadonlyArray1<'_, u64>, ratings: PyReadonlyArray1<'_, f32>) -> PyResult<String> {
        let r = slice(&ratings, "ratings")?;
        let mut test = self.pairs(slice(&users, "users")?, slice(&items, "items")?)?;
        if test.len() != r.len() {
            return Err(PyValueError::new_err(format!("users and items ({}) and ratings ({}) differ in length", test.len(), r.len())));
        }
        test.iter_mut().zip(r).for_each(|(t, &value)| t.value = value);
        let m = &self.model;
        if let Some(labels) = m.labels {
            if let Some(bad) = test.iter().find(|t| labels.sign(t.value).is_none()) {
                return Err(PyValueError::new_err(format!("the ratings hold {}, neither of the model's labels {} and {}", bad.value, labels.negative, labels.positive)));
            }
        }
        let scores = gpumf::metrics::Scores::measure(m, &test);
        Ok(serde_json::to_string(&scores).unwrap_or_default())
    }

    /// The class each pair's score predicts, in the data's values (binary losses only).
    fn classes<'py>(&self, py: Python<'py>, users: PyReadonlyArray1<'py, u64>, items: PyReadonlyArray1<'py, u64>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let (u, i) = (slice(&users, "users")?, slice(&items, "items")?);
        let labels = self.model.labels.ok_or_else(|| PyValueError::new_err(format!("the {} loss predicts values, not classes", Choice::name(self.model.loss))))?;
        let m = &self.model;
        let out: Vec<f32> = py.detach(|| u.par_iter().zip(i).map(|(&u, &i)| labels.class(m.score(m.users.index_of(u).unwrap_or(gpumf::data::UNKNOWN), m.items.index_of(i).unwrap_or(gpumf::data::UNKNOWN)))).collect());
        Ok(out.into_pyarray(py))
    }

    /// The external id of each row of `user_factors`.
    #[getter]
    fn user_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.model.users.externals().to_pyarray(py)
    }

    #[getter]
    fn item_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.model.items.externals().to_pyarray(py)
    }

    /// Where the users' ids include labels: (`user_ids`, each one's text); else None.
    #[getter]
    fn user_labels<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyArray1<u64>>, Vec<String>)> {
        labelled_ids(py, &self.model.users)
    }

    #[getter]
    fn item_labels<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyArray1<u64>>, Vec<String>)> {
        labelled_ids(py, &self.model.items)
    }

    /// Whether the model knows each user's training items (files before format 2 do not).
    #[getter]
    fn records_seen(&self) -> bool {
        self.model.seen.is_some()
    }

    /// Writes the model in the CLI's format.
    #[pyo3(signature = (path, overwrite=false))]
    fn save(&self, py: Python<'_>, path: PathBuf, overwrite: bool) -> PyResult<()> {
        py.detach(|| self.model.save(&path, overwrite)).map_err(py_err)
    }

    /// Reads a model in the CLI's format: (model, a note about an older file or None).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<(PyModel, Option<String>)> {
        let (model, info) = py.detach(|| Model::load_with_info(&path)).map_err(py_err)?;
        Ok((PyModel { model }, info.note()))
    }
}

/// (external ids, scores) of a ranked list.
fn ranked<'py>(py: Python<'py>, best: &[(u32, f32)], ids: &gpumf::data::IdMap) -> Ranked<'py> {
    let external: Vec<u64> = best.iter().map(|&(j, _)| ids.external_id(j)).collect();
    let scores: Vec<f32> = best.iter().map(|&(_, s)| s).collect();
    (external.into_pyarray(py), scores.into_pyarray(py))
}

impl PyModel {
    /// (user, item) columns of external ids as ratings of the model's indices (unknown ids as
    /// [`gpumf::data::UNKNOWN`]).
    fn pairs(&self, users: &[u64], items: &[u64]) -> PyResult<Vec<gpumf::data::Rating>> {
        if users.len() != items.len() {
            return Err(PyValueError::new_err(format!("users and items differ in length ({} and {})", users.len(), items.len())));
        }
        let (m, unknown) = (&self.model, gpumf::data::UNKNOWN);
        Ok(users.iter().zip(items).map(|(&u, &i)| gpumf::data::Rating { user: m.users.index_of(u).unwrap_or(unknown), item: m.items.index_of(i).unwrap_or(unknown), value: 1.0 }).collect())
    }

    fn user_index(&self, user: u64) -> PyResult<u32> {
        self.model
            .users
            .index_of(user)
            .ok_or_else(|| PyValueError::new_err(format!("user {user}: the model has no such user (it knows {} users)", self.model.users.len())))
    }
}

#[pymodule]
fn _gpumf(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Before any thread starts: it may set XDG_RUNTIME_DIR (see the library).
    gpumf::gpu::quiet_headless_drivers();
    m.add_class::<PyModel>()?;
    // Where `MF.save` keeps the labels it numbered, which the engine's model writer clears.
    m.add("LABELS_BESIDE", gpumf::model::LABELS_BESIDE)?;
    m.add("USER_COLUMNS", gpumf::data::USER_COLUMNS.to_vec())?;
    m.add("ITEM_COLUMNS", gpumf::data::ITEM_COLUMNS.to_vec())?;
    m.add("RATING_COLUMNS", gpumf::data::RATING_COLUMNS.to_vec())?;
    m.add_function(wrap_pyfunction!(default_params, m)?)?;
    m.add_function(wrap_pyfunction!(load_file, m)?)?;
    m.add_function(wrap_pyfunction!(latest_small, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(one_class, m)?)?;
    m.add_function(wrap_pyfunction!(train_columns, m)?)?;
    m.add_function(wrap_pyfunction!(train_files, m)?)?;
    Ok(())
}
