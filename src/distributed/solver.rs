//! The cluster as a [`Solver`]: the training loop submits an epoch, every local worker thread
//! trains its part of it, and the first local worker hands back the whole cluster's figures
//! (added up by worker 0). At the end the workers gather the rows into worker 0's model. A
//! failure anywhere ends every worker with the failure's own message, never a hang.

use super::exchange::{self, Hello};
use super::threads::{Command, Workers};
use super::worker::Worker;
use super::{scatter_rows, Gathered, Shared, WorkerStart};
use crate::error::{Error, Result};
use crate::model::{Model, SeenItems};
use crate::solver::{EpochFigures, Solver};
use std::sync::Arc;

pub(super) struct Dsgd {
    shared: Arc<Shared>,
    workers: Workers<Gathered>,
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
        let for_workers = shared.clone();
        let workers = Workers::start(cluster, transport, starts, move |start, line| Worker::new(line.exchange, for_workers.clone(), start, line.commands, line.figures).run())?;
        Ok(Dsgd { shared, workers, model })
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
            format!("dsgd ({}, {grid} blocks{on}{svdpp})", crate::resources::counted(cluster.workers, "worker"))
        } else {
            format!("dsgd ({} processes x {}, {grid} blocks{on}{svdpp})", cluster.hosts.len(), crate::resources::counted(cluster.workers, "worker"))
        }
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        self.workers.command(|| Command::Epoch { epoch, lr, score: score_test })
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        self.workers.figures()
    }

    fn into_model(mut self: Box<Self>) -> Result<Model> {
        match self.workers.finish()? {
            Some(gathered) => self.assemble(gathered),
            // Not worker 0's process: its rows went there.
            None => Ok(self.model.clone()),
        }
    }

    fn snapshot(&self) -> Result<Model> {
        Err(Error::InvalidParameter("distributed training keeps no snapshots of its factors (early stopping trains in one process)".into()))
    }
}
