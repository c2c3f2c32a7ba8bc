//! Distributed SGD (DSGD, Gemulla et al. 2011) over worker threads and processes.
//!
//! The [schedule](crate::schedule) cuts users into `G` stripes, pinned to workers (stripe `p`
//! to worker `p % W`), and items into `G` pairs of halves that travel. An epoch is `G`
//! strata; in each, every stripe trains the one item pair no other stripe holds, half by half,
//! and each half goes on to the stripe that needs it in the next stratum as soon as it is
//! trained, while its twin trains (DSGD++'s overlap). Every block is trained in its fixed
//! order by the one block-training function ([`crate::update::train_block`]), and the strata's
//! order depends only on the seed, so any number of workers, as threads or processes, writes
//! the same bits. The SVD++ term's passes after an epoch ([`svdpp`]) add up each stripe's part
//! in stripe order, for the same reason.
//!
//! This module owns who trains what and when: the cluster and its data ([`Stripes`]); the
//! workers ([`worker`]), whose blocks travel through a [`BlockExchange`](exchange::BlockExchange);
//! and a [`Solver`](crate::solver::Solver) over them ([`solver`]), so that the one training
//! loop ([`crate::training::drive`]) runs a cluster as it runs any backend.

pub mod als;
mod checkpoint;
pub mod exchange;
mod post;
mod solver;
mod svdpp;
mod threads;
mod worker;

use crate::data::{stream_ratings, LoadOptions, Rating, RatingSet, RatingSummary, RowCounts};
use crate::error::{Error, Result};
use crate::gpu::{GpuOptions, GpuSolver};
use crate::grid::{Axis, Order};
use crate::model::{Model, Params};
use crate::objective::BinaryLabels;
use crate::problem::Problem;
use crate::schedule::Schedule;
use crate::training::{Course, EpochReport, Trained};
use crate::update::RowWeights;
use crate::vector::CacheLines;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// The longest `--timeout` taken as given; longer waits are as good as forever, and a
/// deadline further off than this could overflow the clock.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

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

    /// The first worker of process `process`: the one that hands its epochs' figures to the
    /// process's training loop.
    pub fn lead_of(&self, process: usize) -> usize {
        process * self.workers
    }

    /// The process a worker runs in, for messages about it.
    fn describe_worker(&self, worker: usize) -> String {
        let process = self.process_of(worker);
        match self.hosts.get(process) {
            Some(host) => format!("worker {worker} (process {process}, {host})"),
            None => format!("worker {worker}"),
        }
    }

    /// The deadline `timeout` from now, capped at [`MAX_TIMEOUT`].
    fn deadline(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.timeout.min(MAX_TIMEOUT)).unwrap_or(now + Duration::from_secs(3600))
    }
}

/// Reads a host file: one `host:port` per process, blank lines and `#` comments skipped.
pub fn read_hosts(path: &Path) -> Result<Vec<String>> {
    let text = crate::data::read_text(path, 1 << 20, "a host file")?;
    // Each host with its line, for the errors below.
    let mut hosts: Vec<(String, u64)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let (line, at) = (line.split('#').next().unwrap_or("").trim(), n as u64 + 1);
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| Err(Error::Parse { path: path.into(), line: at, message });
        let port = line.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        if port.is_none() {
            return bad(format!("{} is not host:port", crate::data::quoted(line)));
        }
        // Two processes cannot listen on one address: the second would wait out --timeout.
        if let Some((_, first)) = hosts.iter().find(|(h, _)| h == line) {
            return bad(format!("{} is listed on line {first} too; each process needs an address of its own", crate::data::quoted(line)));
        }
        hosts.push((line.to_string(), at));
    }
    if hosts.is_empty() {
        return Err(Error::Format { path: path.into(), message: "lists no processes (one host:port per line)".into() });
    }
    if let (true, Some((host, at))) = (hosts.len() > 1, hosts.iter().find(|(h, _)| h.ends_with(":0"))) {
        let message = format!("{} asks for any free port, which the other processes cannot know: give each a port", crate::data::quoted(host));
        return Err(Error::Parse { path: path.into(), line: *at, message });
    }
    Ok(hosts.into_iter().map(|(h, _)| h).collect())
}

/// Item halves per pair.
const HALVES: usize = 2;

/// What every worker of a process reads.
struct Shared {
    /// This process's stripes' ratings (the others' blocks are empty), naming positions.
    schedule: Schedule,
    /// Test ratings of this process's stripes, by block, ids made rows of their blocks.
    test: Vec<Vec<Rating>>,
    params: Params,
    cluster: Cluster,
    /// The binary labels, with a binary loss.
    labels: Option<BinaryLabels>,
    mean: f32,
    range: (f32, f32),
    /// The rating unit of the factor steps, from the whole set ([`Params::rating_unit`]).
    unit: f32,
    /// Each row's regularisation weight, from the whole set's counts, by position.
    weights: RowWeights,
    /// With the SVD++ term: what its passes know of the whole set.
    svdpp: Option<svdpp::Reach>,
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

    /// The blocks of stripe `stripe`, in order.
    fn blocks_of(&self, stripe: usize) -> std::ops::Range<usize> {
        stripe * HALVES * self.side()..(stripe + 1) * HALVES * self.side()
    }
}

/// Factor rows of one stripe or half, in position order, with their biases.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Rows {
    /// Trained in place, so in storage that starts a cache line.
    pub factors: CacheLines,
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
/// others' (the whole set's summary and row counts, each item's reach for the SVD++ term, and a
/// checksum to compare with the other processes).
pub struct Stripes {
    problem: Problem,
    summary: RatingSummary,
    counts: RowCounts,
    /// Σ |N(u)| over each item's users, by id.
    item_reach: Vec<f32>,
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
        let mut item_reach = vec![0.0f32; problem.num_items()];
        add_reach(&mut item_reach, &problem.train, &counts.users);
        let checksum = crc32fast::hash(bytemuck::cast_slice(&problem.train));
        if cluster.processes() > 1 {
            let keep = stripe_filter(problem.num_users(), side, params, cluster);
            problem.train.retain(|r| keep(r));
            problem.train.shrink_to_fit();
        }
        Ok(Stripes { problem, summary, counts, item_reach, checksum })
    }

    /// Reads the training file twice, piece by piece, never whole: the first pass learns the
    /// ids, the summary, the row counts and the checksum, the second each item's reach and this
    /// process's stripes. The ids and ratings are those [`crate::data::load_ratings`] gives
    /// (the streaming loader reads what it reads), so the model is the same bits as one loaded
    /// whole.
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
        // As a file loaded whole is checked (every process reads all of it here).
        let loss = params.loss;
        crate::data::check_values(path, options, first.events, || summary.not_events(), loss.is_one_class(), crate::choice::Choice::name(loss))?;
        let (m, n) = (first.users.len(), first.items.len());
        check_sizes(side, m, n)?;
        let counts = counts.sized(m, n);
        let keep = stripe_filter(m, side, params, cluster);
        let (mut mine, mut item_reach) = (Vec::new(), vec![0.0f32; n]);
        let second = stream_ratings(path, options, |ratings| {
            add_reach(&mut item_reach, ratings, &counts.users);
            mine.extend(ratings.iter().filter(|r| keep(r)));
            Ok(())
        })?;
        if (second.ratings, second.users.len(), second.items.len()) != (first.ratings, m, n) {
            return Err(Error::Format { path: path.into(), message: "changed while it was being read (its two readings differ)".into() });
        }
        let problem = Problem::new(RatingSet { entries: mine, users: first.users, items: first.items }, test);
        Ok(Stripes { problem, summary, counts, item_reach, checksum: crc.finalize() })
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

/// Adds each rating's user's count to its item's reach (dense ids; reaches are exact in f32 up
/// to 2^24, and the order of a piece's ratings is the file's).
fn add_reach(item_reach: &mut [f32], ratings: &[Rating], user_counts: &[u32]) {
    for r in ratings {
        item_reach[r.item as usize] += user_counts[r.user as usize] as f32;
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

/// Checks a cluster's own settings against the machine and each other.
fn check_cluster(cluster: &Cluster) -> Result<()> {
    if let Some((_, devices)) = &cluster.gpu {
        if devices.len() != cluster.workers {
            return Err(Error::InvalidParameter(format!("--devices lists {} GPUs for {} workers: on the GPU each worker has one", devices.len(), cluster.workers)));
        }
    }
    if !cluster.hosts.is_empty() && cluster.process >= cluster.hosts.len() {
        return Err(Error::InvalidParameter(format!("--process {}: the host file lists {} processes (0 to {})", cluster.process, cluster.hosts.len(), cluster.hosts.len() - 1)));
    }
    crate::resources::threads(Some(cluster.workers), "--workers", "workers")?;
    if cluster.timeout.is_zero() {
        return Err(Error::InvalidParameter("--timeout must be at least 1 second".into()));
    }
    Ok(())
}

/// Trains this process's `stripes` by DSGD on `cluster`, through the one training loop. Every
/// process runs the loop on the whole cluster's figures (worker 0 adds them up and sends them
/// round), so every process sees the same epochs; process 0 calls `on_epoch` (returning false
/// stops training after that epoch everywhere only when every process stops, so the cluster
/// runs `--epochs`) and returns the run, its model gathered from every worker; the other
/// processes return `None`. `on_note` hears what resuming found.
pub fn train(stripes: Stripes, params: &Params, cluster: &Cluster, mut on_note: impl FnMut(&str), mut on_epoch: impl FnMut(&EpochReport) -> bool) -> Result<Option<Trained>> {
    let start = Instant::now();
    params.validate()?;
    check_cluster(cluster)?;
    if cluster.workers > crate::resources::cores() {
        let cores = crate::resources::cores();
        on_note(&format!("note: --workers {} is more than the {cores} cores here: the workers take turns on them, and each stratum waits for the slowest (--workers {cores} is faster)", cluster.workers));
    }
    let side = grid_side(params, cluster)?;
    let Stripes { problem, summary, counts, item_reach, checksum } = stripes;
    let (m, n) = (problem.num_users(), problem.num_items());
    check_sizes(side, m, n)?;
    let resume = resume_point(cluster, params, &mut on_note)?;
    let start_epoch = resume.as_ref().map_or(0, |r| r.epoch);
    let settings = settings(&problem, summary.count as usize, checksum, params, cluster, side, start_epoch);
    if let Some((dir, _)) = &cluster.checkpoint {
        checkpoint::refuse_others(dir, cluster, &settings)?;
    }
    // The whole set's mean, range, unit and labels, which this process's stripes alone would
    // not give.
    let labels = problem.labels_of(params.loss, &summary)?;
    let model = Model::init_for(&problem, params, &summary, labels);
    let unit = params.rating_unit(&summary);
    let weights = RowWeights::new(params, &counts);
    let devices = devices(&problem, &model, params, unit, &weights, cluster, side)?;
    // On the CPU, by user within each block: a worker loads a user's row once per block, and
    // the order is still fixed by the seed, so every worker count trains the same sequence.
    let mine: &[Rating] = if cluster.gpu.is_some() { &[] } else { &problem.train };
    let schedule = Schedule::new(mine, m, n, Schedule::dsgd_grid(side), Order::ByUser, params.seed)?;
    let test = local_test(&schedule, &problem.test, cluster);
    let has_test = !problem.test.is_empty();
    let svdpp = params.svdpp.then(|| svdpp::Reach::new(&schedule, &counts, &item_reach));
    let shared = Arc::new(Shared {
        labels,
        mean: model.mean,
        range: model.rating_range,
        unit,
        weights: weights.by_position(&schedule),
        svdpp,
        schedule,
        test,
        params: params.clone(),
        cluster: cluster.clone(),
        start_epoch,
        settings: settings.clone(),
    });
    drop(problem);
    let starts = worker_starts(&shared, &model, resume.as_ref(), devices)?;
    let solver = solver::Dsgd::start(shared.clone(), starts, model, settings)?;
    let lead = cluster.process == 0;
    let course = Course { first_epoch: start_epoch, has_test, patience: None };
    let trained = crate::training::drive(Box::new(solver), params, &course, start, |r| !lead || on_epoch(r))?;
    Ok(lead.then_some(trained))
}

/// Each of this process's workers' rows to start from (its stripes, and the halves its
/// stripes train first), from `model` or the checkpoint `resume` found, with its device.
fn worker_starts(shared: &Shared, model: &Model, resume: Option<&checkpoint::Found>, devices: Vec<Option<GpuSolver>>) -> Result<Vec<WorkerStart>> {
    let cluster = &shared.cluster;
    let first = cluster.workers * cluster.process..cluster.workers * (cluster.process + 1);
    let mut starts: Vec<WorkerStart> = match resume {
        Some(resume) => first.map(|w| checkpoint::read(&resume.dir, resume.epoch, w, shared)).collect::<Result<_>>()?,
        None => first.map(|w| WorkerStart::from_model(shared, model, w)).collect(),
    };
    for (start, device) in starts.iter_mut().zip(devices) {
        start.device = device;
        start.prepare_terms(shared)?;
    }
    Ok(starts)
}

/// The checkpoint `--resume` names the latest whole epoch of, if any (`on_note` hears which,
/// and what was passed over), refused when it leaves no epoch to train.
fn resume_point(cluster: &Cluster, params: &Params, on_note: &mut impl FnMut(&str)) -> Result<Option<checkpoint::Found>> {
    let Some(dir) = &cluster.resume else { return Ok(None) };
    let found = checkpoint::latest(dir, cluster)?;
    let shown = found.dir.display();
    match found.passed_over.is_empty() {
        true => on_note(&format!("--resume {shown}: resuming after epoch {}", found.epoch)),
        false => on_note(&format!("warning: --resume {shown}: {}; resuming after epoch {}", found.passed_over.join("; "), found.epoch)),
    }
    if found.epoch >= params.epochs {
        return Err(Error::InvalidParameter(format!("--resume: the checkpoint is after epoch {}, and --epochs is {}: nothing is left to train", found.epoch, params.epochs)));
    }
    Ok(Some(found))
}

/// The test ratings by block of `schedule`, kept only in the blocks of this process's workers'
/// stripes (each process scores its own users).
fn local_test(schedule: &Schedule, test: &[Rating], cluster: &Cluster) -> Vec<Vec<Rating>> {
    let mut test = schedule.localize(test);
    for (b, ratings) in test.iter_mut().enumerate() {
        if cluster.process_of(cluster.worker_of(schedule.coordinates(b).0)) != cluster.process {
            *ratings = Vec::new();
        }
    }
    test
}

/// Each local worker's GPU with its blocks, shuffled (ratings in flight together then rarely
/// share a row), when the cluster trains on GPUs; the process then keeps only the grid.
fn devices(problem: &Problem, model: &Model, params: &Params, unit: f32, weights: &RowWeights, cluster: &Cluster, side: usize) -> Result<Vec<Option<GpuSolver>>> {
    let first = cluster.workers * cluster.process..cluster.workers * (cluster.process + 1);
    let Some((options, adapters)) = &cluster.gpu else { return Ok(first.map(|_| None).collect()) };
    let (m, n) = (problem.num_users(), problem.num_items());
    let user_axis = Axis::new(m, side, params.seed, 11);
    let stripe_of = |r: &Rating| user_axis.block_at(user_axis.position(r.user));
    let mut devices = Vec::new();
    for (w, &adapter) in first.zip(adapters) {
        let own: Vec<Rating> = problem.train.par_iter().filter(|r| cluster.worker_of(stripe_of(r)) == w).copied().collect();
        let schedule = Schedule::new(&own, m, n, Schedule::dsgd_grid(side), Order::Shuffled, params.seed)?;
        let options = GpuOptions { adapter: Some(adapter), ..options.clone() };
        devices.push(Some(GpuSolver::for_blocks(schedule, model.clone(), params, unit, weights, &options, &|p| cluster.worker_of(p) == w)?));
    }
    Ok(devices)
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
    let mut out = Rows { factors: CacheLines::zeros(ids.len() * k), bias: Vec::with_capacity(ids.len()) };
    for (row, &id) in out.factors.chunks_exact_mut(k.max(1)).zip(ids) {
        row.copy_from_slice(&all[id as usize * k..][..k]);
    }
    out.bias.extend(ids.iter().map(|&id| bias[id as usize]));
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

/// A checksum of what every process must read alike: the training set's (`train`, as the
/// caller summed it), the test set, and both sides' ids.
fn data_checksum(problem: &Problem, train: u32) -> u32 {
    let mut data = crc32fast::Hasher::new();
    data.update(&train.to_le_bytes());
    data.update(bytemuck::cast_slice(&problem.test));
    data.update(bytemuck::cast_slice(problem.users.externals()));
    data.update(bytemuck::cast_slice(problem.items.externals()));
    data.finalize()
}

/// Everything that must match in every process, as text for the start-up comparison.
fn settings(problem: &Problem, total: usize, checksum: u32, params: &Params, cluster: &Cluster, side: usize, start_epoch: usize) -> Vec<(String, String)> {
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
        ("--loss", crate::choice::Choice::name(p.loss).to_string()),
        ("--nonneg", p.nonneg.to_string()),
        ("--l1", p.l1.to_string()),
        ("--backend", cluster.gpu.as_ref().map_or("cpu".into(), |(o, _)| format!("gpu {:?}", o.precision))),
        ("--eval-every", p.eval_every.to_string()),
        ("record seen items", cluster.record_seen.to_string()),
        ("--checkpoint-every", cluster.checkpoint.as_ref().map_or("none".into(), |c| c.1.to_string())),
        ("resume epoch", start_epoch.to_string()),
        ("training ratings", total.to_string()),
        ("test ratings", problem.test.len().to_string()),
        ("data checksum", format!("{:08x}", data_checksum(problem, checksum))),
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
    /// With the SVD++ term: the items' vectors y, by position (zero at the start).
    item_vectors: Option<Vec<f32>>,
    /// With the SVD++ term, resumed between its passes: the stripes' shares since the last.
    shares: BTreeMap<usize, Vec<f32>>,
    /// The worker's GPU, its blocks uploaded; `None` on the CPU.
    device: Option<GpuSolver>,
    /// With the SVD++ term: its state from `item_vectors`, once the device is in place
    /// ([`prepare_terms`](Self::prepare_terms)).
    terms: Option<worker::Terms>,
}

impl WorkerStart {
    fn from_model(shared: &Shared, model: &Model, worker: usize) -> WorkerStart {
        let s = &shared.schedule;
        let shift = s.strata(shared.start_epoch)[0];
        let tag = shared.tag(shared.start_epoch, 0);
        // Zeros written now (mapping the pages), not the allocator's untouched zeroed pages,
        // which worker 0's first pass then faulted in (40 ms at rank 128 on 17,770 items).
        let item_vectors = shared.svdpp.as_ref().map(|_| {
            let mut y = Vec::with_capacity(s.items.ids() * model.rank());
            y.resize(s.items.ids() * model.rank(), 0.0f32);
            y
        });
        let mut start = WorkerStart { stripes: BTreeMap::new(), halves: HashMap::new(), item_vectors, shares: BTreeMap::new(), device: None, terms: None };
        for p in (0..shared.side()).filter(|&p| shared.owner(p) == worker) {
            start.stripes.insert(p, gather_rows(s.users.members(p), &model.user_factors, &model.user_bias));
            let pair = s.pair_of(p, shift);
            for h in HALVES * pair..HALVES * (pair + 1) {
                start.halves.insert(h, (tag, gather_rows(s.items.members(h), &model.item_factors, &model.item_bias)));
            }
        }
        start
    }

    /// The SVD++ term's state from the start's y ([`worker::Terms::start`]), with the term on.
    fn prepare_terms(&mut self, shared: &Shared) -> Result<()> {
        if let (Some(_), Some(item_vectors)) = (&shared.svdpp, self.item_vectors.take()) {
            let pending = std::mem::take(&mut self.shares);
            self.terms = Some(worker::Terms::start(shared, &self.stripes, item_vectors, pending, self.device.as_ref())?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::read_hosts;

    /// The host file's error for `text`, or its hosts.
    fn read(text: &str) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, text).unwrap();
        read_hosts(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn a_host_file_names_each_line_it_cannot_use() {
        assert_eq!(read("# two of them\na:7001\n\nb:7002 # the other\n").unwrap(), ["a:7001", "b:7002"]);
        assert_eq!(read("a:0\n").unwrap(), ["a:0"], "one process may take any port");
        assert!(read("a:7001\nb\n").unwrap_err().ends_with(":2: \"b\" is not host:port"));
        assert!(read("a:7001\nb:7002\na:7001\n").unwrap_err().ends_with(":3: \"a:7001\" is listed on line 1 too; each process needs an address of its own"));
        assert!(read("a:7001\nb:0\n").unwrap_err().contains(":2: \"b:0\" asks for any free port"));
        assert!(read("# none\n").unwrap_err().ends_with("lists no processes (one host:port per line)"));
    }
}
