//! Distributed SGD (DSGD, Gemulla et al. 2011) over worker threads and processes.
//!
//! The [schedule](crate::schedule) cuts users into `G` stripes, pinned to workers (stripe `p`
//! to worker `p % W`), and items into `G` pairs of halves that travel. An epoch is `G`
//! strata; in each, every stripe trains the one item pair no other stripe holds, half by half,
//! and each half goes on to the stripe that needs it in the next stratum as soon as it is
//! trained, while its twin trains (DSGD++'s overlap). Every block is trained in its fixed
//! order and the strata's order depends only on the seed, so any number of workers, as
//! threads or processes, writes the same bits.
//!
//! This module owns only who trains what and when; the blocks travel through a
//! [`BlockExchange`](exchange::BlockExchange), and the update is the one rule of
//! [`crate::update`].

mod checkpoint;
pub mod exchange;

use crate::data::{stream_ratings, LoadOptions, Rating, RatingSet, RatingSummary, RowCounts, UNKNOWN};
use crate::problem::Problem;
use crate::error::{Error, Result};
use crate::gpu::{GpuOptions, GpuSolver, Side};
use crate::metrics::ErrorSums;
use crate::model::{clip, score_rows, Model, Params, SeenItems};
use crate::grid::{Axis, Order};
use crate::schedule::Schedule;
use crate::training::{EpochReport, Trained};
use crate::update::{sgd_update, RowWeights, Step};
use exchange::{BlockExchange, Hello, Message, RowsKind, TimelyExchange, Transport};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Who takes part, and how this process finds the others.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Worker threads in this process (the same in every process).
    pub workers: usize,
    /// `host:port` of each process, in order; empty for one process.
    pub hosts: Vec<String>,
    /// This process's line of `hosts`.
    pub process: usize,
    /// How long a worker waits for a block, or a process for the others to start, before it
    /// calls the peer lost.
    pub timeout: Duration,
    /// Write each worker's factors to this directory every so many epochs.
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Start from the latest checkpoint in this directory.
    pub resume: Option<PathBuf>,
    /// Gather which items each user rated into the model (for recommendations that leave them
    /// out), as a one-process run records them; costs a message of 1–2 bytes a rating. Every
    /// process must agree (it is compared at start-up).
    pub record_seen: bool,
    /// Train each worker's blocks on a GPU: these settings, and for local worker `w` the
    /// adapter `devices[w]` (one adapter may be listed twice: two devices on it). `None`: each
    /// worker is a CPU thread.
    pub gpu: Option<(GpuOptions, Vec<usize>)>,
}

impl Cluster {
    /// `workers` threads in one process.
    pub fn threads(workers: usize) -> Cluster {
        Cluster { workers, hosts: Vec::new(), process: 0, timeout: Duration::from_secs(300), checkpoint: None, resume: None, record_seen: false, gpu: None }
    }

    pub fn processes(&self) -> usize {
        self.hosts.len().max(1)
    }

    pub fn total_workers(&self) -> usize {
        self.workers * self.processes()
    }

    /// The worker a user stripe is pinned to: stripe p to worker p mod W, the one rule of who
    /// trains what.
    pub fn worker_of(&self, stripe: usize) -> usize {
        stripe % self.total_workers()
    }

    /// The process a worker runs in.
    pub fn process_of(&self, worker: usize) -> usize {
        worker / self.workers.max(1)
    }

    /// The process a worker runs in, for messages about it.
    fn describe_worker(&self, worker: usize) -> String {
        let process = self.process_of(worker);
        match self.hosts.get(process) {
            Some(host) => format!("worker {worker} (process {process}, {host})"),
            None => format!("worker {worker}"),
        }
    }
}

/// Reads a host file: one `host:port` per process, blank lines and `#` comments skipped.
pub fn read_hosts(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut hosts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let port = line.rsplit_once(':').map(|(_, p)| p);
        if port.is_none_or(|p| p.parse::<u16>().is_err()) {
            return Err(Error::Parse { path: path.into(), line: n as u64 + 1, message: format!("{line:?} is not host:port") });
        }
        hosts.push(line.to_string());
    }
    if hosts.is_empty() {
        return Err(Error::Format { path: path.into(), message: "lists no processes (one host:port per line)".into() });
    }
    Ok(hosts)
}

/// Item halves per pair.
const HALVES: usize = 2;

/// What every worker of a process reads.
struct Shared {
    /// This process's stripes' ratings (the others' blocks are empty), naming positions.
    schedule: Schedule,
    /// Test ratings of this process's stripes, by block, ids made rows of their blocks.
    test: Vec<Vec<Rating>>,
    /// Whether the whole cluster has test ratings: every worker must take part in scoring,
    /// whether or not its own stripes have any.
    has_test: bool,
    params: Params,
    cluster: Cluster,
    mean: f32,
    range: (f32, f32),
    /// The rating unit of the factor steps, from the whole set ([`Params::rating_unit`]).
    unit: f32,
    /// Each row's regularisation weight, from the whole set's counts, by position.
    weights: RowWeights,
    start_epoch: usize,
    settings: Vec<(String, String)>,
}

impl Shared {
    fn side(&self) -> usize {
        self.schedule.users.blocks()
    }

    fn owner(&self, stripe: usize) -> usize {
        self.cluster.worker_of(stripe)
    }

    /// Strata are numbered across epochs, so a half's message names the one it is for.
    fn tag(&self, epoch: usize, stratum: usize) -> u64 {
        (epoch * self.side() + stratum) as u64
    }

    fn scores_test(&self, epoch: usize) -> bool {
        self.has_test && self.params.scores_test_after(epoch)
    }
}

/// Factor rows of one stripe or half, in position order, with their biases.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Rows {
    pub factors: Vec<f32>,
    pub bias: Vec<f32>,
}

/// What worker 0 hands back at the end: every stripe's and half's rows.
struct Gathered {
    stripes: Vec<Rows>,
    halves: Vec<Rows>,
    /// Each stripe's users' rated items, encoded, when the cluster records them.
    seen: Vec<Vec<u8>>,
}

/// The training data as one DSGD process holds it: the ratings of its own stripes (in
/// `problem.train`, beside the whole problem's ids and test set), and what it must know of the
/// others' (the whole set's summary and row counts, and a checksum to compare with the other
/// processes).
pub struct Stripes {
    problem: Problem,
    summary: RatingSummary,
    counts: RowCounts,
    checksum: u32,
}

impl Stripes {
    /// From a problem loaded whole: this process's stripes are kept, the rest dropped.
    pub fn from_problem(mut problem: Problem, params: &Params, cluster: &Cluster) -> Result<Stripes> {
        if problem.train_on_disk.is_some() {
            return Err(Error::InvalidParameter("--memory (blocks on disk) trains in one process; with --workers or --hosts each process keeps its stripes in memory".into()));
        }
        let side = grid_side(params, cluster)?;
        check_sizes(side, problem.num_users(), problem.num_items())?;
        let (summary, counts) = (problem.train_summary(), problem.train_counts());
        let checksum = crc32fast::hash(bytemuck::cast_slice(&problem.train));
        if cluster.processes() > 1 {
            let keep = stripe_filter(problem.num_users(), side, params, cluster);
            problem.train.retain(|r| keep(r));
            problem.train.shrink_to_fit();
        }
        Ok(Stripes { problem, summary, counts, checksum })
    }

    /// Reads the training file twice, piece by piece, never whole: the first pass learns the
    /// ids, the summary, the row counts and the checksum, the second keeps this process's
    /// stripes. The ids and ratings are those [`crate::data::load_ratings`] gives (the
    /// streaming loader reads what it reads), so the model is the same bits as one loaded whole.
    pub fn stream(path: &Path, options: &LoadOptions, test: Option<&RatingSet>, params: &Params, cluster: &Cluster) -> Result<Stripes> {
        let side = grid_side(params, cluster)?;
        let mut crc = crc32fast::Hasher::new();
        let (mut summary, mut counts) = (RatingSummary::default(), RowCounts::default());
        let first = stream_ratings(path, options, |ratings| {
            crc.update(bytemuck::cast_slice(ratings));
            summary.add(ratings);
            counts.add(ratings);
            Ok(())
        })?;
        let (m, n) = (first.users.len(), first.items.len());
        check_sizes(side, m, n)?;
        let keep = stripe_filter(m, side, params, cluster);
        let mut mine = Vec::new();
        let second = stream_ratings(path, options, |ratings| {
            mine.extend(ratings.iter().filter(|r| keep(r)));
            Ok(())
        })?;
        if (second.ratings, second.users.len(), second.items.len()) != (first.ratings, m, n) {
            return Err(Error::Format { path: path.into(), message: "changed while it was being read (its two readings differ)".into() });
        }
        let problem = Problem::new(RatingSet { entries: mine, users: first.users, items: first.items }, test);
        Ok(Stripes { problem, summary, counts: counts.sized(m, n), checksum: crc.finalize() })
    }

    /// The problem with this process's stripes' training ratings.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// Training ratings in the whole set, every process's.
    pub fn total_ratings(&self) -> usize {
        self.summary.count as usize
    }
}

/// Stripes per side of the grid: `--blocks`, or one per worker.
fn grid_side(params: &Params, cluster: &Cluster) -> Result<usize> {
    let workers = cluster.total_workers();
    if cluster.workers == 0 {
        return Err(Error::InvalidParameter("--workers must be at least 1".into()));
    }
    let side = match params.blocks {
        None => workers,
        Some(g) if g.user_blocks == g.item_blocks => g.user_blocks,
        Some(g) => {
            return Err(Error::InvalidParameter(format!("--blocks {g}: DSGD cuts users and items into as many blocks each; give one number, e.g. --blocks {}", g.user_blocks)))
        }
    };
    if side % workers != 0 {
        return Err(Error::InvalidParameter(format!(
            "--blocks {side} with {workers} workers: DSGD needs blocks per side a multiple of the workers ({workers}, {}, ...)",
            2 * workers
        )));
    }
    Ok(side)
}

fn check_sizes(side: usize, m: usize, n: usize) -> Result<()> {
    if m == 0 {
        return Err(Error::Data("no training ratings".into()));
    }
    if m < side || n < HALVES * side {
        return Err(Error::InvalidParameter(format!("--blocks {side}: DSGD needs at least {side} users and {} items, and there are {m} users and {n} items", HALVES * side)));
    }
    Ok(())
}

/// Whether a rating (dense ids) is of a stripe this process's workers own.
fn stripe_filter(users: usize, side: usize, params: &Params, cluster: &Cluster) -> impl Fn(&Rating) -> bool + Sync {
    let axis = Axis::new(users, side, params.seed, 11);
    let cluster = cluster.clone();
    move |r: &Rating| cluster.process_of(cluster.worker_of(axis.block_at(axis.position(r.user)))) == cluster.process
}

/// Trains this process's `stripes` by DSGD on `cluster`. Process 0 returns the run (its model
/// gathered from every worker) and calls `on_epoch` after each epoch with the figures of all
/// workers; the other processes return `None`.
pub fn train(stripes: Stripes, params: &Params, cluster: &Cluster, mut on_epoch: impl FnMut(&EpochReport)) -> Result<Option<Trained>> {
    let start = Instant::now();
    params.validate()?;
    if params.svdpp {
        // Its passes need every user's items and every item's users in one place each epoch.
        return Err(Error::InvalidParameter("distributed training has no SVD++ term yet: train with it off (--no-svdpp, Params::svdpp = false)".into()));
    }
    let workers = cluster.total_workers();
    if let Some((_, devices)) = &cluster.gpu {
        if devices.len() != cluster.workers {
            return Err(Error::InvalidParameter(format!("--devices lists {} GPUs for {} workers: on the GPU each worker has one", devices.len(), cluster.workers)));
        }
    }
    if !cluster.hosts.is_empty() && cluster.process >= cluster.hosts.len() {
        return Err(Error::InvalidParameter(format!("--process {}: the host file lists {} processes (0 to {})", cluster.process, cluster.hosts.len(), cluster.hosts.len() - 1)));
    }
    let side = grid_side(params, cluster)?;
    let Stripes { problem, summary, counts, checksum } = stripes;
    let (m, n) = (problem.num_users(), problem.num_items());
    check_sizes(side, m, n)?;
    let resume = match &cluster.resume {
        Some(dir) => Some(checkpoint::latest(dir, cluster)?),
        None => None,
    };
    let start_epoch = resume.as_ref().map_or(0, |r| r.epoch);
    if start_epoch >= params.epochs {
        return Err(Error::InvalidParameter(format!("--resume: the checkpoint is after epoch {start_epoch}, and --epochs is {}: nothing is left to train", params.epochs)));
    }
    let settings = settings(&problem, summary.count as usize, checksum, params, cluster, side, start_epoch);

    // This process's stripes only: the ratings of other processes' users are dropped here.
    let process = cluster.process;
    let user_axis = Axis::new(m, side, params.seed, 11);
    let stripe_of = |r: &Rating| user_axis.block_at(user_axis.position(r.user));
    let first = cluster.workers * process..cluster.workers * (process + 1);
    // The whole set's mean, range and unit, which this process's stripes alone would not give.
    let model = Model::init_for(&problem, params, &summary);
    let unit = params.rating_unit(&summary);
    let weights = RowWeights::new(params, &counts);
    // On a GPU each worker's device holds its blocks, shuffled (ratings in flight together
    // then rarely share a row); the process keeps only the grid.
    let devices: Vec<Option<GpuSolver>> = match &cluster.gpu {
        None => first.clone().map(|_| None).collect(),
        Some((options, adapters)) => {
            let mut devices = Vec::new();
            for (w, &adapter) in first.clone().zip(adapters) {
                let own: Vec<Rating> = problem.train.par_iter().filter(|r| cluster.worker_of(stripe_of(r)) == w).copied().collect();
                let schedule = Schedule::new(&own, m, n, Schedule::dsgd_grid(side), Order::Shuffled, params.seed)?;
                let options = GpuOptions { adapter: Some(adapter), ..options.clone() };
                devices.push(Some(GpuSolver::for_blocks(schedule, model.clone(), params, unit, &weights, &options, &|p| cluster.worker_of(p) == w)?));
            }
            devices
        }
    };
    // On the CPU, by user within each block: a worker loads a user's row once per block, and
    // the order is still fixed by the seed, so every worker count trains the same sequence.
    let mine: &[Rating] = if cluster.gpu.is_some() { &[] } else { &problem.train };
    let schedule = Schedule::new(mine, m, n, Schedule::dsgd_grid(side), Order::ByUser, params.seed)?;
    let has_test = !problem.test.is_empty();
    let mut test = schedule.localize(&problem.test);
    for (b, ratings) in test.iter_mut().enumerate() {
        if cluster.process_of(cluster.worker_of(schedule.coordinates(b).0)) != process {
            *ratings = Vec::new();
        }
    }
    drop(problem);

    let shared =
        Arc::new(Shared { mean: model.mean, range: model.rating_range, unit, weights: weights.by_position(&schedule), schedule, test, has_test, params: params.clone(), cluster: cluster.clone(), start_epoch, settings: settings.clone() });
    // Each worker's rows to start from: its stripes, and the halves its stripes train first.
    let mut starts: Vec<Option<WorkerStart>> = first.clone().map(|w| Some(WorkerStart::from_model(&shared, &model, w))).collect();
    if let Some(resume) = &resume {
        for (slot, w) in starts.iter_mut().zip(first.clone()) {
            *slot = Some(checkpoint::read(&resume.dir, resume.epoch, w, &shared)?);
        }
    }
    for (start, device) in starts.iter_mut().zip(devices) {
        start.as_mut().expect("set above").device = device;
    }
    // Process 0 keeps the model to gather into; the others need only their rows.
    let model = (process == 0).then_some(model);

    let transport = if cluster.hosts.is_empty() {
        exchange::in_process(cluster.workers)
    } else {
        let hello = Hello { process, processes: cluster.hosts.len(), settings };
        exchange::over_tcp(&cluster.hosts, process, cluster.workers, &hello, cluster.timeout)?
    };
    let setup_seconds = start.elapsed().as_secs_f64();
    quiet_timely_panics();
    let Transport { builders, comms } = transport;
    let starts = Arc::new(Mutex::new(starts));
    let (report_tx, reports) = mpsc::channel::<EpochReport>();
    let report_tx = Arc::new(Mutex::new(Some(report_tx)));
    let first_worker = first.start;
    let for_workers = shared.clone();
    let guards = timely_communication::initialize_from(builders, Box::new(()), move |allocator| {
        let exchange = TimelyExchange::new(allocator);
        let me = exchange.worker();
        let start = starts.lock().unwrap_or_else(|e| e.into_inner())[me - first_worker].take().expect("each worker starts once");
        let reports = if me == 0 { report_tx.lock().unwrap_or_else(|e| e.into_inner()).take() } else { None };
        Worker::new(exchange, for_workers.clone(), start, reports).run()
    })
    .map_err(|e| Error::Cluster(format!("cannot start the worker threads: {e}")))?;
    let mut history = Vec::new();
    for report in reports {
        on_epoch(&report);
        history.push(report);
    }
    let results = guards.join();
    let mut gathered = None;
    let mut failure = None;
    for (w, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(g)) => gathered = gathered.or(g),
            // The failure itself before the workers it stopped.
            Ok(Err(e)) if failure.is_none() || matches!(&failure, Some(Error::Cluster(m)) if m.starts_with(STOPPED)) => failure = Some(e),
            Ok(Err(_)) => {}
            Err(panic) => failure = failure.or(Some(lost_peer(cluster, first_worker + w, &panic))),
        }
    }
    if let Some(e) = failure {
        // Let the network threads send what the workers left (their stop messages), but wait
        // at most a moment: a vanished peer's receiving thread has panicked, and joining it
        // panics too (muted, in a thread of its own).
        if let Some(comms) = comms {
            let (done, finished) = mpsc::channel();
            let shutdown = std::thread::Builder::new().name("timely:shutdown".into()).spawn(move || {
                drop(comms);
                let _ = done.send(());
            });
            if shutdown.is_ok() {
                let _ = finished.recv_timeout(Duration::from_secs(2));
            }
        }
        return Err(e);
    }
    drop(comms);
    let Some(mut model) = model else {
        return Ok(None);
    };
    let gathered = gathered.ok_or_else(|| Error::Cluster("worker 0 ended without the model".into()))?;
    let s = &shared.schedule;
    for (p, rows) in gathered.stripes.iter().enumerate() {
        scatter_rows(s.users.members(p), rows, &mut model.user_factors, &mut model.user_bias);
    }
    for (h, rows) in gathered.halves.iter().enumerate() {
        scatter_rows(s.items.members(h), rows, &mut model.item_factors, &mut model.item_bias);
    }
    if cluster.record_seen {
        let parts = gathered
            .seen
            .into_iter()
            .enumerate()
            .map(|(p, runs)| SeenItems::from_bytes(runs, s.users.members(p).len(), n).map_err(|e| Error::Cluster(format!("the seen items of stripe {p}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        model.seen = Some(SeenItems::gather(m, &parts, |u| {
            let position = s.users.position(u as u32);
            let stripe = s.users.block_at(position);
            (stripe, position as usize - s.users.start(stripe))
        }));
    }
    let train_seconds = history.iter().map(|r: &EpochReport| r.sgd_seconds).sum();
    let grid = shared.schedule.grid();
    let on = match &cluster.gpu {
        Some((options, _)) => format!(", each on a GPU, {:?}", options.precision),
        None => String::new(),
    };
    let backend = if cluster.hosts.is_empty() {
        format!("dsgd ({workers} workers, {grid} blocks{on})")
    } else {
        format!("dsgd ({} processes x {} workers, {grid} blocks{on})", cluster.hosts.len(), cluster.workers)
    };
    Ok(Some(Trained {
        model,
        history,
        train_seconds,
        kernel_seconds: None,
        total_seconds: start.elapsed().as_secs_f64(),
        setup_seconds,
        backend,
        device_bytes: 0,
        best_epoch: None,
    }))
}

/// Rows by position within a block put back at their ids.
fn scatter_rows(ids: &[u32], rows: &Rows, factors: &mut ndarray::Array2<f32>, bias: &mut [f32]) {
    let k = factors.ncols();
    let all = factors.as_slice_mut().expect("row-major");
    for (j, &id) in ids.iter().enumerate() {
        all[id as usize * k..][..k].copy_from_slice(&rows.factors[j * k..][..k]);
        bias[id as usize] = rows.bias[j];
    }
}

/// Rows of the ids of a block, in its order.
fn gather_rows(ids: &[u32], factors: &ndarray::Array2<f32>, bias: &[f32]) -> Rows {
    let k = factors.ncols();
    let all = factors.as_slice().expect("row-major");
    let mut out = Rows { factors: Vec::with_capacity(ids.len() * k), bias: Vec::with_capacity(ids.len()) };
    for &id in ids {
        out.factors.extend_from_slice(&all[id as usize * k..][..k]);
        out.bias.push(bias[id as usize]);
    }
    out
}

/// The settings in `ours` that `theirs` gives otherwise (or not at all), leaving out `skip`,
/// each as "NAME THEIRS there, OURS `here`" for an error that says what to change.
pub(crate) fn differences(ours: &[(String, String)], theirs: &[(String, String)], skip: &[&str], here: &str) -> Vec<String> {
    ours.iter()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let other = theirs.iter().find(|(n, _)| n == name).map_or("(none)", |(_, v)| v.as_str());
            (other != value).then(|| format!("{name} {other} there, {value} {here}"))
        })
        .collect()
}

/// Everything that must match in every process, as text for the start-up comparison.
fn settings(problem: &Problem, total: usize, checksum: u32, params: &Params, cluster: &Cluster, side: usize, start_epoch: usize) -> Vec<(String, String)> {
    let mut data = crc32fast::Hasher::new();
    data.update(&checksum.to_le_bytes());
    data.update(bytemuck::cast_slice(&problem.test));
    data.update(bytemuck::cast_slice(problem.users.externals()));
    data.update(bytemuck::cast_slice(problem.items.externals()));
    let p = params;
    [
        ("--rank", p.rank.to_string()),
        ("--seed", p.seed.to_string()),
        ("--blocks", side.to_string()),
        ("--workers", cluster.workers.to_string()),
        ("--epochs", p.epochs.to_string()),
        ("--lr", p.learning_rate.to_string()),
        ("--lr-decay", p.lr_decay.to_string()),
        ("--reg", p.reg.to_string()),
        ("--reg-bias", p.reg_bias.to_string()),
        ("--no-biases", (!p.biases).to_string()),
        ("--init-std", p.init_std.to_string()),
        ("--no-scale", (!p.scale).to_string()),
        ("--constant-reg", (!p.frequency_reg).to_string()),
        ("--no-svdpp", (!p.svdpp).to_string()),
        ("--backend", cluster.gpu.as_ref().map_or("cpu".into(), |(o, _)| format!("gpu {:?}", o.precision))),
        ("--eval-every", p.eval_every.to_string()),
        ("record seen items", cluster.record_seen.to_string()),
        ("--checkpoint-every", cluster.checkpoint.as_ref().map_or("none".into(), |c| c.1.to_string())),
        ("resume epoch", start_epoch.to_string()),
        ("training ratings", total.to_string()),
        ("test ratings", problem.test.len().to_string()),
        ("data checksum", format!("{:08x}", data.finalize())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A worker's rows at the start of its first epoch.
pub(crate) struct WorkerStart {
    stripes: BTreeMap<usize, Rows>,
    /// Halves, each with the stratum it is for.
    halves: HashMap<usize, (u64, Rows)>,
    /// The worker's GPU, its blocks uploaded; `None` on the CPU.
    device: Option<GpuSolver>,
}

impl WorkerStart {
    fn from_model(shared: &Shared, model: &Model, worker: usize) -> WorkerStart {
        let s = &shared.schedule;
        let shift = s.strata(shared.start_epoch)[0];
        let tag = shared.tag(shared.start_epoch, 0);
        let mut start = WorkerStart { stripes: BTreeMap::new(), halves: HashMap::new(), device: None };
        for p in (0..shared.side()).filter(|&p| shared.owner(p) == worker) {
            start.stripes.insert(p, gather_rows(s.users.members(p), &model.user_factors, &model.user_bias));
            let pair = s.pair_of(p, shift);
            for h in HALVES * pair..HALVES * (pair + 1) {
                start.halves.insert(h, (tag, gather_rows(s.items.members(h), &model.item_factors, &model.item_bias)));
            }
        }
        start
    }
}

struct Worker<E> {
    exchange: E,
    me: usize,
    shared: Arc<Shared>,
    stripes: BTreeMap<usize, Rows>,
    halves: HashMap<usize, (u64, Rows)>,
    /// Messages that arrived before they were wanted.
    inbox: Vec<Message>,
    sent_bytes: u64,
    /// Worker 0 reports each epoch here.
    reports: Option<mpsc::Sender<EpochReport>>,
    /// On a GPU, the stripes' rows live there, and `stripes` is refreshed only when read.
    device: Option<GpuSolver>,
}

impl<E: BlockExchange> Worker<E> {
    fn new(exchange: E, shared: Arc<Shared>, start: WorkerStart, reports: Option<mpsc::Sender<EpochReport>>) -> Self {
        let me = exchange.worker();
        let mut device = start.device;
        if let Some(gpu) = &mut device {
            // The rows it starts from (a checkpoint's, when resuming).
            for (&p, rows) in &start.stripes {
                gpu.set_rows(Side::Users, p, &rows.factors, &rows.bias);
            }
        }
        Worker { exchange, me, shared, stripes: start.stripes, halves: start.halves, inbox: Vec::new(), sent_bytes: 0, reports, device }
    }

    /// One block of SGD on stripe `stripe`'s rows and `half`, on this worker's CPU or GPU.
    fn train(&mut self, b: usize, stripe: usize, h: usize, half: &mut Rows, step: &Step) -> Result<Option<ErrorSums>> {
        let Some(gpu) = &mut self.device else {
            let rows = self.stripes.get_mut(&stripe).expect("own stripe");
            return Ok(train_block(&self.shared.schedule, &self.shared.weights, b, rows, half, step));
        };
        if gpu.schedule().block(b).is_empty() {
            return Ok(None);
        }
        gpu.set_rows(Side::Items, h, &half.factors, &half.bias);
        let sums = gpu.train_blocks(&[b], step.lr)?;
        (half.factors, half.bias) = gpu.rows(Side::Items, h)?;
        Ok(Some(sums))
    }

    /// On a GPU: brings the stripes' rows back from the device (to score, checkpoint or gather).
    fn refresh_stripes(&mut self) -> Result<()> {
        if let Some(gpu) = &self.device {
            for (&p, rows) in self.stripes.iter_mut() {
                (rows.factors, rows.bias) = gpu.rows(Side::Users, p)?;
            }
        }
        Ok(())
    }

    /// Trains every epoch and hands the rows to worker 0; on failure, tells every other worker
    /// to stop, so none waits out the timeout for blocks that will not come.
    fn run(mut self) -> Result<Option<Gathered>> {
        let outcome = self.epochs();
        if let Err(e) = &outcome {
            if !matches!(e, Error::Cluster(m) if m.starts_with(STOPPED)) {
                let reason = e.to_string();
                for w in (0..self.exchange.workers()).filter(|&w| w != self.me) {
                    self.exchange.send(w, Message::Stop { worker: self.me as u32, reason: reason.clone() });
                }
            }
        }
        outcome
    }

    fn epochs(&mut self) -> Result<Option<Gathered>> {
        let sh = self.shared.clone();
        let (s, p) = (&sh.schedule, &sh.params);
        let side = sh.side();
        let began = Instant::now();
        let my_stripes: Vec<usize> = self.stripes.keys().copied().collect();
        for epoch in sh.start_epoch..p.epochs {
            let epoch_began = Instant::now();
            let sent_before = self.sent_bytes;
            let strata = s.strata(epoch);
            let following = s.strata(epoch + 1)[0];
            let step = Step::new(p, p.learning_rate_at(epoch), sh.mean, sh.unit);
            let mut sums = Vec::new();
            for (t, &shift) in strata.iter().enumerate() {
                let (next_shift, next_tag) = if t + 1 < side { (strata[t + 1], sh.tag(epoch, t + 1)) } else { (following, sh.tag(epoch + 1, 0)) };
                for &stripe in &my_stripes {
                    let pair = s.pair_of(stripe, shift);
                    for h in HALVES * pair..HALVES * (pair + 1) {
                        let mut half = self.take_half(h, sh.tag(epoch, t))?;
                        let b = stripe * HALVES * side + h;
                        if let Some(block_sums) = self.train(b, stripe, h, &mut half, &step)? {
                            sums.push((b as u32, block_sums));
                        }
                        self.pass_on(h, next_tag, half, sh.owner(s.stripe_of(pair, next_shift)));
                    }
                }
            }
            let last = epoch + 1 == p.epochs;
            let checkpoint = sh.cluster.checkpoint.as_ref().filter(|(_, every)| (epoch + 1) % every.max(&1) == 0 || last);
            let score = sh.scores_test(epoch);
            if score || last || checkpoint.is_some() {
                self.collect_halves(sh.tag(epoch + 1, 0), following)?;
                self.refresh_stripes()?;
            }
            let test = if score { Some(self.score_test(epoch)?) } else { None };
            if let Some((dir, _)) = checkpoint {
                checkpoint::write(dir, epoch + 1, self.me, &sh, &self.stripes, &self.halves)?;
            }
            let sent = self.sent_bytes - sent_before;
            if self.me != 0 {
                self.send(0, Message::Sums { epoch: epoch as u32, test: false, blocks: sums, sent_bytes: sent });
                if let Some(test) = test {
                    self.send(0, Message::Sums { epoch: epoch as u32, test: true, blocks: test, sent_bytes: 0 });
                }
            } else {
                let report = self.gather_report(epoch, sums, test, sent, step.lr, epoch_began, began)?;
                if !report.train_loss.is_finite() {
                    return Err(Error::Data(format!("training diverged at epoch {} (loss is {}); lower --lr or raise --reg", epoch + 1, report.train_loss)));
                }
                if let Some(tx) = &self.reports {
                    // The receiver is gone only if training is being abandoned anyway.
                    let _ = tx.send(report);
                }
            }
        }
        self.reports = None;
        self.gather_model()
    }

    fn send(&mut self, to: usize, message: Message) {
        self.sent_bytes += message.payload_bytes();
        self.exchange.send(to, message);
    }

    /// Item half `h` for the stratum `tag`: kept here, or received.
    fn take_half(&mut self, h: usize, tag: u64) -> Result<Rows> {
        if self.halves.get(&h).is_some_and(|(t, _)| *t == tag) {
            return Ok(self.halves.remove(&h).expect("present").1);
        }
        let message =
            self.wait_for(&format!("item half {h} for stratum {tag}"), |m| matches!(m, Message::Rows { kind: RowsKind::Half, id, tag: t, .. } if *id as usize == h && *t == tag))?;
        match message {
            Message::Rows { factors, bias, .. } => Ok(Rows { factors, bias }),
            _ => unreachable!("matched rows"),
        }
    }

    /// Keeps half `h` for the stratum `tag` if `to` is this worker, else sends it there.
    fn pass_on(&mut self, h: usize, tag: u64, half: Rows, to: usize) {
        if to == self.me {
            self.halves.insert(h, (tag, half));
        } else {
            self.send(to, Message::Rows { kind: RowsKind::Half, id: h as u32, tag, factors: half.factors, bias: half.bias });
        }
    }

    /// Waits until this worker holds every half its stripes train first in the next epoch:
    /// then it holds the epoch's final rows of those halves.
    fn collect_halves(&mut self, tag: u64, shift: usize) -> Result<()> {
        let stripes: Vec<usize> = self.stripes.keys().copied().collect();
        for stripe in stripes {
            let pair = self.shared.schedule.pair_of(stripe, shift);
            for h in HALVES * pair..HALVES * (pair + 1) {
                let half = self.take_half(h, tag)?;
                self.halves.insert(h, (tag, half));
            }
        }
        Ok(())
    }

    /// Scores this worker's stripes' test ratings after epoch `epoch`: every worker sends the
    /// others a copy of the halves it holds, so each sees every item row once.
    fn score_test(&mut self, epoch: usize) -> Result<Vec<(u32, ErrorSums)>> {
        let sh = self.shared.clone();
        let side = sh.side();
        let held: Vec<(usize, Rows)> = self.halves.iter().map(|(&h, (_, rows))| (h, rows.clone())).collect();
        let me = self.me;
        for to in (0..self.exchange.workers()).filter(|&w| w != me) {
            for (h, rows) in &held {
                self.send(to, Message::Rows { kind: RowsKind::Copy, id: *h as u32, tag: epoch as u64, factors: rows.factors.clone(), bias: rows.bias.clone() });
            }
        }
        let mut all: Vec<Option<Rows>> = vec![None; HALVES * side];
        for (h, rows) in held {
            all[h] = Some(rows);
        }
        while all.iter().any(Option::is_none) {
            let message = self
                .wait_for(&format!("copies of item halves after epoch {}", epoch + 1), |m| matches!(m, Message::Rows { kind: RowsKind::Copy, tag, .. } if *tag == epoch as u64))?;
            if let Message::Rows { id, factors, bias, .. } = message {
                all[id as usize] = Some(Rows { factors, bias });
            }
        }
        let k = sh.params.rank;
        let mut out = Vec::new();
        for (&stripe, user_rows) in &self.stripes {
            for (h, item_rows) in all.iter().enumerate() {
                let item_rows = item_rows.as_ref().expect("every half arrived");
                let b = stripe * HALVES * side + h;
                if sh.test[b].is_empty() {
                    continue;
                }
                let mut sums = ErrorSums::default();
                for r in &sh.test[b] {
                    let user = (r.user != UNKNOWN).then(|| (&user_rows.factors[r.user as usize * k..][..k], user_rows.bias[r.user as usize]));
                    let item = (r.item != UNKNOWN).then(|| (&item_rows.factors[r.item as usize * k..][..k], item_rows.bias[r.item as usize]));
                    sums.add((r.value - clip(score_rows(sh.mean, user, item), sh.range)) as f64);
                }
                out.push((b as u32, sums));
            }
        }
        Ok(out)
    }

    /// Worker 0: every worker's sums of epoch `epoch`, added block by block in block order
    /// (so the figures, too, are the same bits for any worker count).
    #[allow(clippy::too_many_arguments)]
    fn gather_report(
        &mut self,
        epoch: usize,
        mut train: Vec<(u32, ErrorSums)>,
        mut test: Option<Vec<(u32, ErrorSums)>>,
        sent: u64,
        lr: f32,
        epoch_began: Instant,
        began: Instant,
    ) -> Result<EpochReport> {
        let mut sent_total = sent;
        let others = self.exchange.workers() - 1;
        let wants_test = test.is_some();
        let mut waiting = others * (1 + wants_test as usize);
        while waiting > 0 {
            let message = self.wait_for(&format!("the figures of epoch {}", epoch + 1), |m| matches!(m, Message::Sums { epoch: e, .. } if *e as usize == epoch))?;
            if let Message::Sums { test: is_test, blocks, sent_bytes, .. } = message {
                sent_total += sent_bytes;
                if is_test {
                    test.as_mut().expect("test asked for").extend(blocks);
                } else {
                    train.extend(blocks);
                }
            }
            waiting -= 1;
        }
        let fold = |mut v: Vec<(u32, ErrorSums)>| {
            v.sort_by_key(|(b, _)| *b);
            v.into_iter().fold(ErrorSums::default(), |a, (_, s)| a.merge(s))
        };
        let train = fold(train);
        let test = test.map(fold);
        Ok(EpochReport {
            epoch: epoch + 1,
            learning_rate: lr,
            train_loss: train.squared,
            train_rmse: train.rmse(),
            test_rmse: test.map(|t| t.rmse()),
            test_mae: test.map(|t| t.mae()),
            sgd_seconds: epoch_began.elapsed().as_secs_f64(),
            kernel_seconds: None,
            elapsed_seconds: began.elapsed().as_secs_f64(),
            streamed_bytes: sent_total,
            uploads: Default::default(),
        })
    }

    /// After the last epoch: every worker sends its stripes and halves to worker 0.
    fn gather_model(&mut self) -> Result<Option<Gathered>> {
        let side = self.shared.side();
        let record = self.shared.cluster.record_seen;
        let own_seen: Vec<(usize, Vec<u8>)> = if record { self.stripes.keys().map(|&p| (p, self.stripe_seen(p))).collect() } else { Vec::new() };
        if self.me != 0 {
            for (p, runs) in own_seen {
                self.send(0, Message::Seen { stripe: p as u32, runs });
            }
            let stripes = std::mem::take(&mut self.stripes);
            for (p, rows) in stripes {
                self.send(0, Message::Rows { kind: RowsKind::Stripe, id: p as u32, tag: 0, factors: rows.factors, bias: rows.bias });
            }
            let halves = std::mem::take(&mut self.halves);
            for (h, (_, rows)) in halves {
                self.send(0, Message::Rows { kind: RowsKind::Final, id: h as u32, tag: 0, factors: rows.factors, bias: rows.bias });
            }
            return Ok(None);
        }
        let mut stripes: Vec<Option<Rows>> = vec![None; side];
        let mut halves: Vec<Option<Rows>> = vec![None; HALVES * side];
        for (p, rows) in std::mem::take(&mut self.stripes) {
            stripes[p] = Some(rows);
        }
        for (h, (_, rows)) in std::mem::take(&mut self.halves) {
            halves[h] = Some(rows);
        }
        let mut seen: Vec<Option<Vec<u8>>> = vec![None; if record { side } else { 0 }];
        for (p, runs) in own_seen {
            seen[p] = Some(runs);
        }
        while stripes.iter().chain(&halves).any(Option::is_none) || seen.iter().any(Option::is_none) {
            let message = self.wait_for("the trained rows", |m| matches!(m, Message::Rows { kind: RowsKind::Stripe | RowsKind::Final, .. } | Message::Seen { .. }))?;
            match message {
                Message::Rows { kind, id, factors, bias, .. } => {
                    let slot = if kind == RowsKind::Stripe { &mut stripes[id as usize] } else { &mut halves[id as usize] };
                    *slot = Some(Rows { factors, bias });
                }
                Message::Seen { stripe, runs } => seen[stripe as usize] = Some(runs),
                _ => unreachable!("matched above"),
            }
        }
        let all = |v: Vec<Option<Rows>>| v.into_iter().map(|r| r.expect("arrived")).collect();
        Ok(Some(Gathered { stripes: all(stripes), halves: all(halves), seen: seen.into_iter().map(|r| r.expect("arrived")).collect() }))
    }

    /// The items each user of stripe `stripe` rated, encoded by row of the stripe: from the
    /// stripe's blocks, wherever they are kept (this process's grid, or the worker's GPU's).
    fn stripe_seen(&self, stripe: usize) -> Vec<u8> {
        let s = self.device.as_ref().map_or(&self.shared.schedule, |gpu| gpu.schedule());
        let side = self.shared.side();
        let first_row = s.users.start(stripe) as u32;
        let mut local = Vec::new();
        for b in stripe * HALVES * side..(stripe + 1) * HALVES * side {
            local.extend(s.block(b).iter().map(|r| Rating { user: r.user - first_row, item: s.items.id_at(r.item), value: 0.0 }));
        }
        SeenItems::from_ratings(&local, s.users.members(stripe).len(), s.items.start(s.items.blocks())).as_bytes().to_vec()
    }

    /// The first message `wanted` accepts, from the inbox or as it arrives; after the timeout,
    /// an error naming what was awaited.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Message) -> bool) -> Result<Message> {
        let deadline = Instant::now() + self.shared.cluster.timeout;
        let mut seen = 0;
        loop {
            if let Some(at) = self.inbox[seen..].iter().position(&wanted) {
                return Ok(self.inbox.remove(seen + at));
            }
            if let Some(Message::Stop { worker, reason }) = self.inbox[seen..].iter().find(|m| matches!(m, Message::Stop { .. })) {
                return Err(Error::Cluster(format!("{STOPPED} {} failed: {reason}", self.shared.cluster.describe_worker(*worker as usize))));
            }
            seen = self.inbox.len();
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Cluster(format!(
                    "{} waited {} s for {what} and none came: a worker is lost or stalled (raise --timeout if the blocks are slow)",
                    self.shared.cluster.describe_worker(self.me),
                    self.shared.cluster.timeout.as_secs()
                )));
            }
            self.exchange.receive((deadline - now).min(Duration::from_millis(100)), &mut self.inbox);
        }
    }
}

/// How an error passed on from the worker that failed begins (it is not passed on again).
const STOPPED: &str = "stopped because";

/// One block of SGD: the ratings of block `b` in their fixed order on the stripe's and the
/// half's rows. `None` for an empty block.
fn train_block(s: &Schedule, weights: &RowWeights, b: usize, stripe: &mut Rows, half: &mut Rows, step: &Step) -> Option<ErrorSums> {
    let ratings = s.block(b);
    if ratings.is_empty() {
        return None;
    }
    let (ub, ib) = s.coordinates(b);
    let (u0, i0) = (s.users.start(ub) as u32, s.items.start(ib) as u32);
    let k = stripe.factors.len() / stripe.bias.len().max(1);
    let mut sums = ErrorSums::default();
    for r in ratings {
        let (u, i) = ((r.user - u0) as usize, (r.item - i0) as usize);
        let weight = (weights.users[r.user as usize], weights.items[r.item as usize]);
        let e = sgd_update(&mut stripe.factors[u * k..][..k], &mut half.factors[i * k..][..k], &mut stripe.bias[u], &mut half.bias[i], weight, &[], &mut [], r.value, step);
        sums.add(e as f64);
    }
    Some(sums)
}

/// The panics of timely's threads when a peer vanishes, kept for the error instead of printed.
static TIMELY_PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn quiet_timely_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            if thread.starts_with("timely:") {
                let message = info.payload().downcast_ref::<String>().cloned().or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                TIMELY_PANICS.lock().unwrap_or_else(|e| e.into_inner()).push((thread, message));
            } else {
                default(info);
            }
        }));
    });
}

/// The error for a worker whose thread panicked: a peer process that vanished, when timely's
/// receiving thread for it saw its connection end.
fn lost_peer(cluster: &Cluster, worker: usize, panic: &str) -> Error {
    let panics = TIMELY_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = panics.iter().find_map(|(thread, message)| thread.strip_prefix("timely:recv-").and_then(|p| p.parse::<usize>().ok()).map(|p| (p, message.clone())));
    match receiver {
        Some((process, message)) => {
            Error::Cluster(format!("process {process} ({}) stopped or lost its connection: {message}", cluster.hosts.get(process).map_or("?", String::as_str)))
        }
        None => Error::Cluster(format!("{} failed: {panic}", cluster.describe_worker(worker))),
    }
}
