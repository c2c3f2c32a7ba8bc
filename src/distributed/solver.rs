//! The cluster as a [`Solver`]: the training loop submits an epoch, every local worker thread
//! trains its part of it, and the first local worker hands back the whole cluster's figures
//! (added up by worker 0). At the end the workers gather the rows into worker 0's model. A
//! failure anywhere ends every worker with the failure's own message, never a hang.

use super::exchange::{self, quiet_timely_panics, Hello, TimelyExchange, Transport};
use super::worker::{Command, Worker, STOPPED};
use super::{scatter_rows, Gathered, Shared, WorkerStart};
use crate::error::{Error, Result};
use crate::model::{Model, SeenItems};
use crate::solver::{EpochFigures, Solver};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use timely_communication::allocator::zero_copy::initialize::CommsGuard;

type Guards = timely_communication::initialize::WorkerGuards<Result<Option<Gathered>>>;

pub(super) struct Dsgd {
    shared: Arc<Shared>,
    /// To each local worker.
    commands: Vec<mpsc::Sender<Command>>,
    /// From the first local worker: each epoch's figures for the whole cluster.
    figures: mpsc::Receiver<EpochFigures>,
    guards: Option<Guards>,
    comms: Option<CommsGuard>,
    /// Worker 0's process gathers the rows into this; the others keep it only to return.
    model: Model,
}

impl Dsgd {
    /// Connects the cluster's processes and starts this process's workers from `starts`.
    pub fn start(shared: Arc<Shared>, starts: Vec<WorkerStart>, model: Model, settings: Vec<(String, String)>) -> Result<Dsgd> {
        let cluster = &shared.cluster;
        let transport = if cluster.hosts.is_empty() {
            exchange::in_process(cluster.workers)
        } else {
            let hello = Hello { process: cluster.process, processes: cluster.hosts.len(), settings };
            exchange::over_tcp(&cluster.hosts, cluster.process, cluster.workers, &hello, cluster.timeout.min(super::MAX_TIMEOUT))?
        };
        quiet_timely_panics();
        let Transport { builders, comms } = transport;
        let (figures_tx, figures) = mpsc::channel();
        let mut commands = Vec::new();
        let mut slots = Vec::new();
        for (i, start) in starts.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            commands.push(tx);
            slots.push(Some((start, rx, (i == 0).then(|| figures_tx.clone()))));
        }
        drop(figures_tx);
        let slots = Arc::new(Mutex::new(slots));
        let first_worker = cluster.workers * cluster.process;
        let for_workers = shared.clone();
        let guards = timely_communication::initialize_from(builders, Box::new(()), move |allocator| {
            let exchange = TimelyExchange::new(allocator);
            let me = crate::distributed::exchange::BlockExchange::worker(&exchange);
            let (start, commands, figures) = lock(&slots)[me - first_worker].take().expect("each worker starts once");
            Worker::new(exchange, for_workers.clone(), start, commands, figures).run()
        })
        .map_err(|e| Error::Cluster(format!("cannot start the worker threads: {e}")))?;
        Ok(Dsgd { shared, commands, figures, guards: Some(guards), comms, model })
    }

    /// Waits for the workers and returns what worker 0 gathered, or the first failure: the
    /// failure itself before the workers it stopped.
    fn join(&mut self) -> Result<Option<Gathered>> {
        let Some(guards) = self.guards.take() else { return Err(Error::Cluster("the workers were already joined".into())) };
        let cluster = &self.shared.cluster;
        let first_worker = cluster.workers * cluster.process;
        let mut gathered = None;
        let mut failure = None;
        for (w, result) in guards.join().into_iter().enumerate() {
            match result {
                Ok(Ok(g)) => gathered = gathered.or(g),
                Ok(Err(e)) if failure.is_none() || matches!(&failure, Some(Error::Cluster(m)) if m.starts_with(STOPPED)) => failure = Some(e),
                Ok(Err(_)) => {}
                Err(_) => failure = failure.or(Some(exchange::worker_thread_panicked(cluster, first_worker + w))),
            }
        }
        match failure {
            Some(e) => {
                self.shut_down_network();
                Err(e)
            }
            None => Ok(gathered),
        }
    }

    /// After a failure: lets the network threads send what the workers left (their stop
    /// messages), but waits at most a moment: a vanished peer's receiving thread has panicked,
    /// and joining it panics too (muted, in a thread of its own).
    fn shut_down_network(&mut self) {
        if let Some(comms) = self.comms.take() {
            let (done, finished) = mpsc::channel();
            let shutdown = std::thread::Builder::new().name("timely:shutdown".into()).spawn(move || {
                drop(comms);
                let _ = done.send(());
            });
            if shutdown.is_ok() {
                let _ = finished.recv_timeout(Duration::from_secs(2));
            }
        }
    }

    /// Worker 0's rows put into the model, with each user's rated items when recorded.
    fn assemble(&mut self, gathered: Gathered) -> Result<Model> {
        let s = &self.shared.schedule;
        let mut model = self.model.clone();
        for (p, rows) in gathered.stripes.iter().enumerate() {
            scatter_rows(s.users.members(p), rows, &mut model.user_factors, &mut model.user_bias);
        }
        for (h, rows) in gathered.halves.iter().enumerate() {
            scatter_rows(s.items.members(h), rows, &mut model.item_factors, &mut model.item_bias);
        }
        if self.shared.cluster.record_seen {
            let (m, n) = (s.users.ids(), s.items.ids());
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
        Ok(model)
    }
}

impl Solver for Dsgd {
    fn name(&self) -> String {
        let cluster = &self.shared.cluster;
        let grid = self.shared.schedule.grid();
        let on = match &cluster.gpu {
            Some((options, _)) => format!(", each on a GPU, {:?}", options.precision),
            None => String::new(),
        };
        let svdpp = if self.shared.svdpp.is_some() { ", SVD++ term" } else { "" };
        if cluster.hosts.is_empty() {
            format!("dsgd ({} workers, {grid} blocks{on}{svdpp})", cluster.workers)
        } else {
            format!("dsgd ({} processes x {} workers, {grid} blocks{on}{svdpp})", cluster.hosts.len(), cluster.workers)
        }
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        for tx in &self.commands {
            if tx.send(Command::Epoch { epoch, lr, score: score_test }).is_err() {
                // A worker has ended: its failure says why.
                return Err(self.join().err().unwrap_or_else(|| Error::Cluster("a worker ended before training did".into())));
            }
        }
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        match self.figures.recv() {
            Ok(figures) => Ok(figures),
            // The first worker ended without the figures: its failure, or the one that stopped it.
            Err(_) => Err(self.join().err().unwrap_or_else(|| Error::Cluster("the workers ended without the epoch's figures".into()))),
        }
    }

    fn into_model(mut self: Box<Self>) -> Result<Model> {
        for tx in &self.commands {
            let _ = tx.send(Command::Finish);
        }
        let gathered = self.join()?;
        drop(self.comms.take());
        match gathered {
            Some(gathered) => self.assemble(gathered),
            // Not worker 0's process: its rows went there.
            None => Ok(self.model.clone()),
        }
    }

    fn snapshot(&self) -> Result<Model> {
        Err(Error::InvalidParameter("distributed training keeps no snapshots of its factors (early stopping trains in one process)".into()))
    }
}

impl Drop for Dsgd {
    /// Training abandoned (an error in the loop): the workers see their commands end and stop,
    /// telling the other processes' workers.
    fn drop(&mut self) {
        if self.guards.is_some() {
            self.commands.clear();
            let _ = self.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
