//! `gpumf._gpumf`: the gpumf library for Python. Conversions only: NumPy buffers in, the
//! library's loaders, training loop and model, NumPy arrays out. The Python layer
//! (`python/gpumf/__init__.py`) turns SciPy and pandas inputs into these columns.

use gpumf::choice::Choice;
use gpumf::cpu::CpuMode;
use gpumf::data::{load_ratings, parse_ratings, Duplicates, Format, LoadOptions, RatingSet};
use gpumf::problem::{split_random, Problem};
use gpumf::gpu::{GpuOptions, Precision};
use gpumf::model::{Model, Params};
use gpumf::training::{choose_auto, train_until, Backend};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, ToPyArray};
use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;
use std::path::PathBuf;

/// The shipped MovieLens latest-small, so `gpumf.datasets` works from any install.
const LATEST_SMALL: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/ml-latest-small/ratings.csv"));

/// The library's errors as the Python exceptions a user expects: bad data and settings are
/// ValueError, GPU failures RuntimeError, files OSError and its kinds; the message is the CLI's.
fn py_err(e: gpumf::Error) -> PyErr {
    use gpumf::Error as E;
    let message = e.to_string();
    match e {
        E::NotFound { .. } => PyFileNotFoundError::new_err(message),
        E::IsDirectory { .. } => PyIsADirectoryError::new_err(message),
        E::Io { .. } | E::Output { .. } => PyOSError::new_err(message),
        E::Gpu(_) | E::NoAdapter => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
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
                        let kind = if v < 0.0 { "non-negative" } else { "whole numbers" };
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

/// The library's defaults, so Python states none of its own.
#[pyfunction]
fn default_params(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let p = Params::default();
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
    Ok(d)
}

type Columns<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>);

fn set_columns<'py>(py: Python<'py>, set: &RatingSet) -> Columns<'py> {
    let users: Vec<u64> = set.entries.iter().map(|r| set.users.external_id(r.user)).collect();
    let items: Vec<u64> = set.entries.iter().map(|r| set.items.external_id(r.item)).collect();
    let ratings: Vec<f32> = set.entries.iter().map(|r| r.value).collect();
    (users.into_pyarray(py), items.into_pyarray(py), ratings.into_pyarray(py))
}

fn load_options(format: &str, skip_bad_lines: bool, missing: Option<String>, skip_columns: usize, duplicates: &str) -> PyResult<LoadOptions> {
    Ok(LoadOptions {
        format: named::<Format>(format, "format")?,
        skip_bad_lines,
        missing,
        skip_columns,
        split_column: None,
        duplicates: named::<Duplicates>(duplicates, "duplicates")?,
    })
}

/// Reads a rating file with the CLI's loader: (user ids, item ids, ratings) in file order.
#[pyfunction]
#[pyo3(signature = (path, format="auto", skip_bad_lines=false, missing=None, skip_columns=0, duplicates="keep"))]
fn load_file<'py>(py: Python<'py>, path: PathBuf, format: &str, skip_bad_lines: bool, missing: Option<String>, skip_columns: usize, duplicates: &str) -> PyResult<(Columns<'py>, String)> {
    let options = load_options(format, skip_bad_lines, missing, skip_columns, duplicates)?;
    let loaded = py.detach(|| load_ratings(&path, options)).map_err(py_err)?;
    Ok((set_columns(py, &loaded.ratings), loaded.summary(&path)))
}

/// MovieLens latest-small, shipped inside the extension: (user ids, item ids, ratings).
#[pyfunction]
fn latest_small(py: Python<'_>) -> PyResult<Columns<'_>> {
    let loaded = parse_ratings(LATEST_SMALL, std::path::Path::new("ml-latest-small/ratings.csv"), LoadOptions::default()).map_err(py_err)?;
    Ok(set_columns(py, &loaded.ratings))
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
    backend: String,
    threads: Option<usize>,
    precision: String,
    gpu_memory: Option<String>,
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
            loss: Params::default().loss,
            nonneg: false,
            l1: 0.0,
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
#[pyo3(signature = (data, test, test_fraction, settings, on_epoch=None, on_note=None))]
fn train_columns(py: Python<'_>, data: ColumnArgs<'_>, test: Option<ColumnArgs<'_>>, test_fraction: Option<f64>, settings: Settings, on_epoch: Option<Py<PyAny>>, on_note: Option<Py<PyAny>>) -> PyResult<Fitted> {
    let params = settings.params()?;
    let train_set = columns(&data.0, &data.1, &data.2, "training data")?;
    let test_set = test.map(|(u, i, r)| columns(&u, &i, &r, "test data")).transpose()?;
    let problem = problem(train_set, test_set, test_fraction, params.seed)?;
    fit(py, &problem, &params, &settings, on_epoch, on_note)
}

/// Trains on rating files read by the CLI's loader, as `gpumf train --train PATH` does: the
/// ratings go from the file to the engine without a round trip through Python.
#[pyfunction]
#[pyo3(signature = (path, test_path, test_fraction, settings, format="auto", skip_bad_lines=false, missing=None, skip_columns=0, duplicates="keep", on_epoch=None, on_note=None, on_load=None))]
#[allow(clippy::too_many_arguments)]
fn train_files(
    py: Python<'_>,
    path: PathBuf,
    test_path: Option<PathBuf>,
    test_fraction: Option<f64>,
    settings: Settings,
    format: &str,
    skip_bad_lines: bool,
    missing: Option<String>,
    skip_columns: usize,
    duplicates: &str,
    on_epoch: Option<Py<PyAny>>,
    on_note: Option<Py<PyAny>>,
    on_load: Option<Py<PyAny>>,
) -> PyResult<Fitted> {
    let params = settings.params()?;
    let options = load_options(format, skip_bad_lines, missing, skip_columns, duplicates)?;
    let mut sets = Vec::new();
    for file in std::iter::once(&path).chain(test_path.as_ref()) {
        let loaded = py.detach(|| load_ratings(file, options.clone())).map_err(py_err)?;
        // The loader's one-line report, as the CLI prints it.
        if let Some(f) = &on_load {
            f.call1(py, (loaded.summary(file),))?;
        }
        sets.push(loaded.ratings);
    }
    let test_set = (sets.len() == 2).then(|| sets.pop().expect("two sets"));
    let train_set = sets.pop().expect("the training set");
    let problem = problem(train_set, test_set, test_fraction, params.seed)?;
    fit(py, &problem, &params, &settings, on_epoch, on_note)
}

fn problem(train: RatingSet, test: Option<RatingSet>, test_fraction: Option<f64>, seed: u64) -> PyResult<Problem> {
    match (test, test_fraction) {
        (Some(_), Some(_)) => Err(PyValueError::new_err("give test or test_fraction, not both")),
        (Some(test), None) => Ok(Problem::new(train, Some(&test))),
        (None, Some(f)) => split_random(&train, f, seed).map_err(py_err),
        (None, None) => Ok(Problem::new(train, None)),
    }
}

fn fit(py: Python<'_>, problem: &Problem, params: &Params, settings: &Settings, on_epoch: Option<Py<PyAny>>, on_note: Option<Py<PyAny>>) -> PyResult<Fitted> {
    let threads = gpumf::resources::threads(settings.threads, "threads").map_err(py_err)?;
    let precision = named::<Precision>(&settings.precision, "precision")?;
    let cpu = Backend::Cpu(CpuMode::with_threads(threads));
    let gpu_memory = settings.gpu_memory.as_deref().map(|size| gpumf::resources::parse_size(size).map_err(|e| PyValueError::new_err(format!("gpu_memory: {e}")))).transpose()?;
    let gpu = Backend::Gpu(GpuOptions { precision, gpu_memory, ..Default::default() });
    let (backend, note) = match settings.backend.as_str() {
        "cpu" => (cpu, None),
        "gpu" => (gpu, None),
        "auto" => py.detach(|| choose_auto(cpu, gpu)),
        other => return Err(PyValueError::new_err(format!("backend must be auto, cpu or gpu, got {other:?}"))),
    };
    if let (Some(note), Some(f)) = (&note, &on_note) {
        f.call1(py, (note.clone(),))?;
    }
    // `auto`: the CLI's --auto, before training and without the GIL.
    let (params, auto) = if settings.auto {
        if !(settings.budget.is_finite() && settings.budget > 0.0) {
            return Err(PyValueError::new_err(format!("budget must be a positive number of seconds, got {}", settings.budget)));
        }
        let search = py
            .detach(|| {
                let fit = gpumf::search::hold_out(problem, gpumf::search::AUTO_HOLD_OUT, params.seed)?;
                gpumf::search::search(&fit, params, &backend, std::time::Duration::from_secs_f64(settings.budget), |_| {})
            })
            .map_err(py_err)?;
        (search.chosen.clone(), serde_json::to_value(&search).ok())
    } else {
        (params.clone(), None)
    };
    let params = &params;
    let mut history = Vec::with_capacity(params.epochs.min(1024));
    let mut stopped: Option<PyErr> = None;
    // Training runs without the GIL; each epoch takes it back for the callback and for
    // signals, so Ctrl-C ends training at the end of the epoch with the model kept.
    let trained = py
        .detach(|| -> gpumf::Result<_> {
            let mut trained = train_until(problem, params, &backend, |report| {
                let json = serde_json::to_string(report).unwrap_or_default();
                history.push(json.clone());
                Python::attach(|py| {
                    let called = match &on_epoch {
                        Some(f) => f.call1(py, (json,)).map(drop),
                        None => Ok(()),
                    };
                    match called.and_then(|_| py.check_signals()) {
                        Ok(()) => true,
                        Err(e) => {
                            stopped = Some(e);
                            false
                        }
                    }
                })
            })?;
            // Recommendations leave out the training items, as the CLI's saved models do.
            trained.model.record_seen(problem);
            Ok(trained)
        })
        .map_err(py_err)?;
    let summary = serde_json::json!({
        "backend": trained.backend,
        "train_seconds": trained.train_seconds,
        "kernel_seconds": trained.kernel_seconds,
        "setup_seconds": trained.setup_seconds,
        "total_seconds": trained.total_seconds,
        "train_ratings": problem.train.len(),
        "test_ratings": problem.test.len(),
        "users": problem.num_users(),
        "items": problem.num_items(),
        "cold_start": problem.cold,
        "auto": auto,
    });
    Ok((PyModel { model: trained.model }, history, summary.to_string(), stopped))
}

/// Recommendations: item ids and their scores, one row a user for many users.
type Ranked<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>);
type RankedMany<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

#[pymethods]
impl PyModel {
    /// Predicted ratings for pairs of ids (unknown ids predicted from what is known).
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
        let rows: Vec<Vec<(u32, f32)>> = py.detach(|| indices.par_iter().map(|&u| self.model.recommend(u, n, exclude_seen)).collect());
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

    /// The external id of each row of `user_factors`.
    #[getter]
    fn user_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.model.users.externals().to_pyarray(py)
    }

    #[getter]
    fn item_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.model.items.externals().to_pyarray(py)
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

impl PyModel {
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
    m.add_function(wrap_pyfunction!(default_params, m)?)?;
    m.add_function(wrap_pyfunction!(load_file, m)?)?;
    m.add_function(wrap_pyfunction!(latest_small, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(train_columns, m)?)?;
    m.add_function(wrap_pyfunction!(train_files, m)?)?;
    Ok(())
}
