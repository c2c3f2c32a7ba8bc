//! `--models S`: S models trained side by side from other seeds, their predictions averaged.
//! It is a solver over solvers, so every backend has it and the training loop does not change;
//! the average is kept as one model of rank S·k (see [`Model::averaged`]).

use crate::problem::Problem;
use crate::error::Result;
use crate::metrics;
use crate::objective::LossSums;
use crate::model::Model;
use crate::solver::{EpochFigures, Solver, UploadCounts};

/// Members' seeds are this far apart, so their initial factors and orders share nothing.
pub const SEED_STRIDE: u64 = 1_000_003;

pub struct Ensemble<'a> {
    members: Vec<Box<dyn Solver + 'a>>,
    problem: &'a Problem,
    /// Epochs submitted and whether each scores the test set.
    scoring: std::collections::VecDeque<bool>,
}

impl<'a> Ensemble<'a> {
    pub fn new(members: Vec<Box<dyn Solver + 'a>>, problem: &'a Problem) -> Ensemble<'a> {
        Ensemble { members, problem, scoring: Default::default() }
    }
}

impl Solver for Ensemble<'_> {
    fn name(&self) -> String {
        format!("{} models averaged, each {}", self.members.len(), self.members[0].name())
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        // The members never score: the test set is scored on their average.
        self.members.iter_mut().try_for_each(|m| m.submit_epoch(epoch, lr, false))?;
        self.scoring.push_back(score_test);
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        let figures = self.members.iter_mut().map(|m| m.finish_epoch()).collect::<Result<Vec<_>>>()?;
        let s = figures.len() as f64;
        // The members' mean loss, so the report reads as one model's would.
        let train = figures.iter().map(|f| f.train).fold(LossSums::default(), LossSums::merge);
        let train = LossSums { count: (train.count as f64 / s).round() as u64, loss: train.loss / s, squared: train.squared / s, absolute: train.absolute / s, correct: train.correct / s };
        let score = self.scoring.pop_front().unwrap_or(false);
        let test = match score && !self.problem.test.is_empty() {
            true => Some(metrics::evaluate(&self.snapshot()?, &self.problem.test)),
            false => None,
        };
        let kernel_seconds = figures.iter().map(|f| f.kernel_seconds).sum::<Option<f64>>();
        Ok(EpochFigures { train, test, ndcg: None, kernel_seconds, streamed_bytes: figures.iter().map(|f| f.streamed_bytes).sum(), uploads: figures.iter().fold(UploadCounts::default(), |a, f| a.merge(f.uploads)) })
    }

    // Scoring reads the members' factors after each epoch, so no epoch may be queued behind it.

    fn into_model(self: Box<Self>) -> Result<Model> {
        let models = self.members.into_iter().map(|m| m.into_model()).collect::<Result<Vec<_>>>()?;
        Ok(Model::averaged(models))
    }

    fn snapshot(&self) -> Result<Model> {
        Ok(Model::averaged(self.members.iter().map(|m| m.snapshot()).collect::<Result<Vec<_>>>()?))
    }

    fn device_bytes(&self) -> u64 {
        self.members.iter().map(|m| m.device_bytes()).sum()
    }
}
