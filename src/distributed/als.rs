//! The one-class loss (`--loss ials`) on a cluster. ALS needs no strata: each process solves a
//! share of each side's rows and sends them to every other process, so that after each
//! half-epoch every process holds both sides whole (a row's system needs the other side's
//! Gramian, and its events name rows anywhere).
//!
//! A process's share is a run of the blocks of rows that the one-process solver solves
//! together ([`solve_blocks`]), cut where their work (events and rows) is even, so each
//! block is solved as one process solves it: any number of processes, and any `--workers`
//! (the threads each process solves on), write the model that `--threads` writes in one
//! process, bit for bit. Every process reads the whole file once and keeps the events of its
//! own rows; process 0 keeps each user's training items too, for NDCG and the model.

use super::exchange::{self, Hello, Message, RowsKind};
use super::post::{guarded, Post};
use super::threads::{figures, Command, Line, Workers};
use super::{check_cluster, data_checksum, Cluster};
use crate::cpu::als::{all_pairs_loss, gramian, solve_blocks, solve_side, Events};
use crate::data::Rating;
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{Model, OneClassFit, Params};
use crate::objective::LossSums;
use crate::problem::Problem;
use crate::solver::{EpochFigures, Solver};
use crate::training::{Course, EpochReport, Trained};
use crate::vector::CacheLines;
use ndarray::Array2;
use std::ops::Range;
use std::time::Instant;

/// Trains `problem` (the whole training set, read by every process) by ALS on `cluster`,
/// through the one training loop, as [`super::train`] trains by DSGD: process 0 calls
/// `on_epoch` and returns the run; the other processes return `None`.
pub fn train(problem: Problem, params: &Params, cluster: &Cluster, mut on_note: impl FnMut(&str), mut on_epoch: impl FnMut(&EpochReport) -> bool) -> Result<Option<Trained>> {
    let start = Instant::now();
    check(params, cluster, &mut on_note)?;
    let has_test = !problem.test.is_empty();
    // What the processes compare at start-up (a checksum of the whole file): none in one.
    let settings = (!cluster.hosts.is_empty()).then(|| settings(&problem, params));
    let state = Solve::new(problem, params, cluster)?;
    // One exchange endpoint a process: its threads are the solve's, not the exchange's.
    let endpoints = Cluster { workers: 1, ..cluster.clone() };
    let (me, processes) = (cluster.process, cluster.processes());
    let transport = match settings {
        None => exchange::in_process(1),
        Some(settings) => {
            let hello = Hello { process: me, processes, settings };
            exchange::over_tcp(&cluster.hosts, me, 1, &hello, cluster.timeout.min(super::MAX_TIMEOUT))?
        }
    };
    let name = match processes {
        1 => format!("cpu (alternating least squares, {})", crate::resources::counted(cluster.workers, "worker")),
        p => format!("cpu (alternating least squares, {p} processes x {})", crate::resources::counted(cluster.workers, "worker")),
    };
    let for_worker = endpoints.clone();
    let workers = Workers::start(&endpoints, transport, vec![state], move |state, line| Process::new(state, line, for_worker.clone()).run())?;
    let course = Course { first_epoch: 0, has_test, patience: None };
    let lead = me == 0;
    let trained = crate::training::drive(Box::new(AlsCluster { workers, name }), params, &course, start, |r| !lead || on_epoch(r))?;
    Ok(lead.then_some(trained))
}

/// The cluster's own checks, and what ALS on a cluster refuses.
fn check(params: &Params, cluster: &Cluster, on_note: &mut impl FnMut(&str)) -> Result<()> {
    params.validate()?;
    check_cluster(cluster)?;
    if params.blocks.is_some() {
        return Err(Error::InvalidParameter("--blocks: ials on a cluster cuts each side's rows between the processes by their events; leave out --blocks".into()));
    }
    if cluster.checkpoint.is_some() || cluster.resume.is_some() {
        return Err(Error::InvalidParameter("--loss ials on a cluster keeps no checkpoints: an epoch takes seconds, not hours; leave out --checkpoint-every and --resume".into()));
    }
    let cores = crate::resources::cores();
    if cluster.workers > cores {
        on_note(&format!("note: --workers {} is more than the {cores} cores here: each process solves on that many threads, which take turns", cluster.workers));
    }
    Ok(())
}

/// The rows each process solves on each side, with the number of its first block of rows.
struct Shares {
    users: Share,
    items: Share,
}

struct Share {
    rows: Vec<Range<usize>>,
    first_block: Vec<usize>,
}

/// `events`' rows cut into `processes` runs of whole [`solve_blocks`], each with about as much
/// work: a row's events (k products each) and its Gramian product (k², so k events' worth).
/// Some runs are empty when there are fewer blocks than processes.
fn cut(events: &Events, k: usize, processes: usize) -> Share {
    let blocks = solve_blocks(events, k);
    let work = |b: &Range<usize>| (events.starts[b.end] - events.starts[b.start] + b.len() * k) as f64;
    let total: f64 = blocks.iter().map(work).sum();
    let (mut rows, mut first_block) = (Vec::with_capacity(processes), Vec::with_capacity(processes));
    let (mut b, mut done) = (0, 0.0);
    for p in 0..processes {
        let (start, first) = (blocks.get(b).map_or(events.rows(), |r| r.start), b);
        let goal = total * (p + 1) as f64 / processes as f64;
        while b < blocks.len() && (p + 1 == processes || done + work(&blocks[b]) / 2.0 <= goal) {
            done += work(&blocks[b]);
            b += 1;
        }
        let end = if b == first { start } else { blocks[b - 1].end };
        rows.push(start..end);
        first_block.push(first);
    }
    Share { rows, first_block }
}

/// Everything every process must agree on, for the start-up comparison. Not `--workers`: the
/// threads of a process do not change its rows, so each machine may use its own cores.
fn settings(problem: &Problem, params: &Params) -> Vec<(String, String)> {
    let (p, c) = (params, &params.one_class);
    [
        ("--loss", "ials".to_string()),
        ("--rank", p.rank.to_string()),
        ("--seed", p.seed.to_string()),
        ("--init-std", p.init_std.to_string()),
        ("--epochs", p.epochs.to_string()),
        ("--reg", p.reg.to_string()),
        ("--constant-reg", (!p.frequency_reg).to_string()),
        ("--unobserved-weight", c.unobserved_weight.to_string()),
        ("--confidence", format!("{:?} {} {}", c.confidence, c.alpha, c.epsilon)),
        ("--cg-steps", c.cg_steps.to_string()),
        ("--eval-every", p.eval_every.to_string()),
        ("training ratings", problem.train.len().to_string()),
        ("test ratings", problem.test.len().to_string()),
        ("data checksum", format!("{:08x}", data_checksum(problem, crc32fast::hash(bytemuck::cast_slice(&problem.train))))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What a process solves with.
struct Solve {
    /// Both sides whole, as they stand after the last half-epoch.
    model: Model,
    /// The events of this process's users, and of its items.
    own: (Events, Events),
    shares: Shares,
    fit: OneClassFit,
    /// The items' Gramian as the last epoch left them.
    item_gram: Option<Array2<f32>>,
    /// Process 0: the held-out events, judged by NDCG@20.
    test: Vec<Rating>,
    pool: rayon::ThreadPool,
}

impl Solve {
    /// This process's part of `problem`: the model one process would start from (with each
    /// user's training items on process 0), and the events of its own rows.
    fn new(problem: Problem, params: &Params, cluster: &Cluster) -> Result<Solve> {
        let lead = cluster.process == 0;
        let mut model = Model::init(&problem, params, problem.labels(params.loss)?);
        if lead {
            model.record_seen(&problem);
        }
        crate::cpu::align_factors(&mut model);
        let (by_user, by_item) = Events::of_problem(&problem, &params.one_class)?;
        let (k, processes, me) = (params.rank, cluster.processes(), cluster.process);
        let shares = Shares { users: cut(&by_user, k, processes), items: cut(&by_item, k, processes) };
        let own = (by_user.keep(shares.users.rows[me].clone()), by_item.keep(shares.items.rows[me].clone()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cluster.workers)
            .build()
            .map_err(|e| Error::InvalidParameter(format!("--workers {}: cannot start the thread pool: {e}", cluster.workers)))?;
        let fit = OneClassFit { settings: params.one_class, reg: params.reg, frequency_reg: params.frequency_reg };
        let test = if lead { problem.test } else { Vec::new() };
        Ok(Solve { model, own, shares, fit, item_gram: None, test, pool })
    }
}

/// The side a half-epoch solves, as a message's tag counts them.
#[derive(Clone, Copy)]
enum Side {
    Users = 0,
    Items = 1,
}

/// One process's part of the cluster's ALS.
struct Process<E> {
    post: Post<E>,
    /// Until the end, when the model is handed back.
    solve: Option<Solve>,
    commands: std::sync::mpsc::Receiver<Command>,
    figures: Option<std::sync::mpsc::Sender<EpochFigures>>,
}

impl Process<exchange::TimelyExchange> {
    fn new(solve: Solve, line: Line, cluster: Cluster) -> Self {
        Process { post: Post::new(line.exchange, cluster), solve: Some(solve), commands: line.commands, figures: line.figures }
    }

    /// Serves the training loop's commands, and hands back the model at the end.
    fn run(self) -> Result<Option<Model>> {
        guarded(self, |p| &mut p.post, |p| p.serve())
    }

    fn serve(&mut self) -> Result<Option<Model>> {
        loop {
            match self.commands.recv() {
                Ok(Command::Epoch { epoch, score, .. }) => {
                    let figures = self.epoch(epoch, score)?;
                    if let Some(tx) = &self.figures {
                        let _ = tx.send(figures);
                    }
                }
                Ok(Command::Finish) => return Ok(self.solve.take().map(|s| s.model)),
                Err(_) => return Err(Error::Cluster(format!("process {} stopped training", self.post.me))),
            }
        }
    }

    /// One epoch: this process's users solved against the items, every process's users
    /// exchanged, then the same for the items; the figures added up by process 0.
    fn epoch(&mut self, epoch: usize, score: bool) -> Result<EpochFigures> {
        let sent_before = self.post.sent_bytes;
        let me = self.post.me;
        let s = self.solve.as_mut().expect("until the end");
        let k = s.model.rank();
        let gq = s.item_gram.take().unwrap_or_else(|| s.pool.install(|| gramian(s.model.item_factors.view())));
        let rows = s.shares.users.rows[me].clone();
        let (p, q) = (s.model.user_factors.as_slice_mut().expect("row-major"), s.model.item_factors.as_slice().expect("row-major"));
        s.pool.install(|| solve_side(&mut p[rows.start * k..rows.end * k], q, &gq, &s.own.0, &s.fit, false));
        self.exchange_rows(epoch, Side::Users)?;
        let s = self.solve.as_mut().expect("until the end");
        let gp = s.pool.install(|| gramian(s.model.user_factors.view()));
        let rows = s.shares.items.rows[me].clone();
        let (q, p) = (s.model.item_factors.as_slice_mut().expect("row-major"), s.model.user_factors.as_slice().expect("row-major"));
        let sums = s.pool.install(|| solve_side(&mut q[rows.start * k..rows.end * k], p, &gp, &s.own.1, &s.fit, true));
        let first = s.shares.items.first_block[me];
        let sums: Vec<(u32, LossSums)> = sums.into_iter().enumerate().map(|(b, sums)| ((first + b) as u32, sums)).collect();
        self.exchange_rows(epoch, Side::Items)?;
        let s = self.solve.as_mut().expect("until the end");
        let gq = s.pool.install(|| gramian(s.model.item_factors.view()));
        let all_pairs = all_pairs_loss(&s.fit.settings, (&gp, &gq));
        s.item_gram = Some(gq);
        self.figures(epoch, sums, all_pairs, score, self.post.sent_bytes - sent_before)
    }

    /// Sends this process's rows of `side` to every other process and puts theirs in place.
    fn exchange_rows(&mut self, epoch: usize, side: Side) -> Result<()> {
        let (me, tag) = (self.post.me, (2 * epoch + side as usize) as u64);
        let s = self.solve.as_mut().expect("until the end");
        let (share, factors) = match side {
            Side::Users => (&s.shares.users, &mut s.model.user_factors),
            Side::Items => (&s.shares.items, &mut s.model.item_factors),
        };
        let k = factors.ncols();
        let all = factors.as_slice_mut().expect("row-major");
        let mine = &share.rows[me];
        let own = CacheLines::from(&all[mine.start * k..mine.end * k]);
        for to in (0..self.post.workers()).filter(|&p| p != me) {
            self.post.send(to, Message::Rows { kind: RowsKind::Solved, id: me as u32, tag, factors: own.clone(), bias: Vec::new() });
        }
        let what = format!("the {} rows of epoch {}", if matches!(side, Side::Users) { "user" } else { "item" }, epoch + 1);
        for _ in 1..self.post.workers() {
            let message = self.post.wait_for(&what, |m| matches!(m, Message::Rows { kind: RowsKind::Solved, tag: t, .. } if *t == tag))?;
            let Message::Rows { id, factors: theirs, .. } = message else { unreachable!("matched above") };
            let rows = share.rows.get(id as usize).filter(|r| r.len() * k == theirs.len());
            let Some(rows) = rows else {
                return Err(Error::Cluster(format!("process {id} sent {} floats for {what}, which is not its share of the rows", theirs.len())));
            };
            all[rows.start * k..rows.end * k].copy_from_slice(&theirs);
        }
        Ok(())
    }

    /// The cluster's figures of epoch `epoch`: every process's loss sums, block by block, added
    /// by process 0 in block order (so the same bits as one process), with the loss over every
    /// pair and NDCG when `score`; process 0 sends them to the others.
    fn figures(&mut self, epoch: usize, mut sums: Vec<(u32, LossSums)>, all_pairs: f64, score: bool, sent: u64) -> Result<EpochFigures> {
        let what = format!("the figures of epoch {}", epoch + 1);
        if self.post.me != 0 {
            self.post.send(0, Message::Sums { epoch: epoch as u32, test: false, blocks: sums, sent_bytes: sent });
            let message = self.post.wait_for(&what, |m| matches!(m, Message::Figures { epoch: e, .. } if *e as usize == epoch))?;
            let Message::Figures { train, sent_bytes, .. } = message else { unreachable!("matched above") };
            return Ok(figures(train, None, sent_bytes));
        }
        let mut sent_total = sent;
        for _ in 1..self.post.workers() {
            let message = self.post.wait_for(&what, |m| matches!(m, Message::Sums { epoch: e, .. } if *e as usize == epoch))?;
            let Message::Sums { blocks, sent_bytes, .. } = message else { unreachable!("matched above") };
            sums.extend(blocks);
            sent_total += sent_bytes;
        }
        sums.sort_by_key(|(b, _)| *b);
        let mut train = sums.into_iter().fold(LossSums::default(), |a, (_, s)| a.merge(s));
        train.loss += all_pairs;
        for to in 1..self.post.workers() {
            self.post.send(to, Message::Figures { epoch: epoch as u32, train, test: None, sent_bytes: sent_total });
        }
        let s = self.solve.as_ref().expect("until the end");
        let ndcg = (score && !s.test.is_empty()).then(|| metrics::ndcg(&s.model, &s.test)).flatten();
        Ok(EpochFigures { ndcg, ..figures(train, None, sent_total) })
    }
}

/// The cluster's ALS as a [`Solver`] the one training loop drives.
struct AlsCluster {
    workers: Workers<Model>,
    name: String,
}

impl Solver for AlsCluster {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        self.workers.command(|| Command::Epoch { epoch, lr, score: score_test })
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.workers.figures()
    }

    fn into_model(mut self: Box<Self>) -> Result<Model> {
        self.workers.finish()?.ok_or_else(|| Error::Cluster("the process ended without its model".into()))
    }

    fn snapshot(&self) -> Result<Model> {
        Err(Error::InvalidParameter("distributed training keeps no snapshots of its factors (early stopping trains in one process)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of `rows` rows with `counts[r]` events each.
    fn events(counts: &[usize]) -> Events {
        let mut starts = vec![0];
        for c in counts {
            starts.push(starts.last().unwrap() + c);
        }
        let n = *starts.last().unwrap();
        Events { starts, index: vec![0; n], weight: vec![1.0; n] }
    }

    #[test]
    fn shares_are_runs_of_whole_blocks_that_cover_every_row_once() {
        let counts: Vec<usize> = (0..1000).map(|r| (r * 7919) % 300).collect();
        let e = events(&counts);
        for processes in [1, 2, 3, 7] {
            let share = cut(&e, 32, processes);
            let blocks = solve_blocks(&e, 32);
            assert_eq!(share.rows.len(), processes);
            assert_eq!(share.rows[0].start, 0);
            assert_eq!(share.rows[processes - 1].end, 1000);
            for p in 1..processes {
                assert_eq!(share.rows[p].start, share.rows[p - 1].end, "contiguous");
                assert_eq!(blocks[share.first_block[p]].start, share.rows[p].start, "starts at its first block");
            }
            let work: Vec<usize> = share.rows.iter().map(|r| e.starts[r.end] - e.starts[r.start]).collect();
            let (most, least) = (work.iter().max().unwrap(), work.iter().min().unwrap());
            assert!(*most as f64 <= 1.3 * *least as f64, "{processes} processes: even shares, {work:?}");
        }
        // Fewer blocks than processes: the last ones are empty.
        let share = cut(&events(&[1, 1]), 8, 4);
        assert_eq!(share.rows.iter().map(|r| r.len()).sum::<usize>(), 2);
        assert!(share.rows.iter().all(|r| r.start <= r.end));
    }
}
