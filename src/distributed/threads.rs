//! This process's worker threads on the cluster's transport, as a solver drives them: the
//! training loop's commands go to every worker, the epoch's figures come back from the first,
//! and at the end each worker returns what it holds. A failure anywhere ends every worker with
//! the failure's own message, never a hang.

use super::exchange::{self, quiet_timely_panics, TimelyExchange, Transport};
use super::post::STOPPED;
use super::Cluster;
use crate::error::{Error, Result};
use crate::objective::LossSums;
use crate::solver::EpochFigures;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use timely_communication::allocator::zero_copy::initialize::CommsGuard;

/// What the training loop asks of the workers.
pub(super) enum Command {
    /// Train epoch `epoch` (from 0) at learning rate `lr`, scoring the test set after it.
    Epoch { epoch: usize, lr: f32, score: bool },
    /// Hand the rows to worker 0 and stop.
    Finish,
}

/// What a worker starts with besides its own state: its end of the exchange, the commands, and
/// (the first worker of each process) where the cluster's figures go.
pub(super) struct Line {
    pub exchange: TimelyExchange,
    pub commands: mpsc::Receiver<Command>,
    pub figures: Option<mpsc::Sender<EpochFigures>>,
}

/// An epoch's figures as a cluster reports them: its loss sums, and the bytes the workers sent
/// as the bytes the epoch moved.
pub(super) fn figures(train: LossSums, test: Option<LossSums>, sent_bytes: u64) -> EpochFigures {
    EpochFigures { train, test, ndcg: None, kernel_seconds: None, streamed_bytes: sent_bytes, uploads: Default::default() }
}

type Guards<R> = timely_communication::initialize::WorkerGuards<Result<Option<R>>>;

pub(super) struct Workers<R: Send + 'static> {
    cluster: Cluster,
    /// The cluster's number of this process's first worker.
    first_worker: usize,
    /// To each local worker.
    commands: Vec<mpsc::Sender<Command>>,
    /// From the first local worker: each epoch's figures for the whole cluster.
    figures: mpsc::Receiver<EpochFigures>,
    guards: Option<Guards<R>>,
    comms: Option<CommsGuard>,
}

impl<R: Send + 'static> Workers<R> {
    /// Starts one worker thread per entry of `starts` on `transport`, each running `work` on
    /// its start and its [`Line`]; a worker returns `Some` for what it hands back at the end.
    pub fn start<S: Send + 'static>(cluster: &Cluster, transport: Transport, starts: Vec<S>, work: impl Fn(S, Line) -> Result<Option<R>> + Send + Sync + 'static) -> Result<Workers<R>> {
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
        let first_worker = builders.len() * cluster.process;
        let guards = timely_communication::initialize_from(builders, Box::new(()), move |allocator| {
            let exchange = TimelyExchange::new(allocator);
            let me = exchange::BlockExchange::worker(&exchange);
            let (start, commands, figures) = lock(&slots)[me - first_worker].take().expect("each worker starts once");
            work(start, Line { exchange, commands, figures })
        })
        .map_err(|e| Error::Cluster(format!("cannot start the worker threads: {e}")))?;
        Ok(Workers { cluster: cluster.clone(), first_worker, commands, figures, guards: Some(guards), comms })
    }

    /// Sends `command` to every local worker; a worker that has ended gives its failure.
    pub fn command(&mut self, command: impl Fn() -> Command) -> Result<()> {
        for tx in &self.commands {
            if tx.send(command()).is_err() {
                return Err(self.join().err().unwrap_or_else(|| Error::Cluster("a worker ended before training did".into())));
            }
        }
        Ok(())
    }

    /// The cluster's figures of the next epoch, from the first local worker.
    pub fn figures(&mut self) -> Result<EpochFigures> {
        match self.figures.recv() {
            Ok(figures) => Ok(figures),
            // The first worker ended without the figures: its failure, or the one that stopped it.
            Err(_) => Err(self.join().err().unwrap_or_else(|| Error::Cluster("the workers ended without the epoch's figures".into()))),
        }
    }

    /// Tells the workers to finish and returns what one of them handed back, if any.
    pub fn finish(&mut self) -> Result<Option<R>> {
        for tx in &self.commands {
            let _ = tx.send(Command::Finish);
        }
        let handed = self.join()?;
        drop(self.comms.take());
        Ok(handed)
    }

    /// Waits for the workers and returns what one handed back, or the first failure: the
    /// failure itself before the workers it stopped.
    fn join(&mut self) -> Result<Option<R>> {
        let Some(guards) = self.guards.take() else { return Err(Error::Cluster("the workers were already joined".into())) };
        let first_worker = self.first_worker;
        let mut handed = None;
        let mut failure = None;
        for (w, result) in guards.join().into_iter().enumerate() {
            match result {
                Ok(Ok(r)) => handed = handed.or(r),
                Ok(Err(e)) if failure.is_none() || matches!(&failure, Some(Error::Cluster(m)) if m.starts_with(STOPPED)) => failure = Some(e),
                Ok(Err(_)) => {}
                Err(_) => failure = failure.or(Some(exchange::worker_thread_panicked(&self.cluster, first_worker + w))),
            }
        }
        match failure {
            Some(e) => {
                self.shut_down_network();
                Err(e)
            }
            None => Ok(handed),
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
}

impl<R: Send + 'static> Drop for Workers<R> {
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
