//! The pairwise losses on the device: the host draws each epoch's pairs (the same draws as the
//! CPU's, [`crate::update::draw_pairs`]) and writes them into the records the kernel reads
//! (shaders/pairwise.wgsl); the lists are judged by NDCG on the host.

use crate::data::Rating;
use crate::error::Result;
use crate::metrics::HeldOutLists;
use crate::model::{Model, Params};
use crate::objective::Loss;
use crate::problem::Problem;
use crate::schedule::Schedule;
use crate::update::{draw_pairs, epoch_sample_seed, PairBlock};
use std::collections::VecDeque;

pub(super) struct Pairwise {
    /// The run's seed; each epoch draws from its own ([`epoch_sample_seed`]).
    seed: u64,
    epoch_seed: u64,
    columns: bool,
    /// The held-out events by id, and each user's training items, left out of the lists
    /// (`None` with the ratings in a block cache on disk).
    ranked: Option<HeldOutLists>,
    /// NDCG@20 of epochs submitted and not yet finished (`None`: not scored), oldest first.
    pub scored: VecDeque<Option<f64>>,
}

impl Pairwise {
    pub fn new(problem: &Problem, params: &Params) -> Pairwise {
        let ranked = HeldOutLists::of(problem);
        Pairwise { seed: params.seed, epoch_seed: epoch_sample_seed(params.seed, 0), columns: params.loss == Loss::BprColumns, ranked, scored: VecDeque::new() }
    }

    /// Whether there is a held-out set to judge lists by.
    pub fn scores(&self) -> bool {
        self.ranked.as_ref().is_some_and(|lists| !lists.is_empty())
    }

    /// NDCG@20 of `model`'s lists on the held-out events.
    pub fn ndcg(&self, model: Model) -> Option<f64> {
        self.ranked.as_ref()?.ndcg(model)
    }

    /// Draws from epoch `epoch`'s stream from now on.
    pub fn start_epoch(&mut self, epoch: usize) {
        self.epoch_seed = epoch_sample_seed(self.seed, epoch);
    }

    /// Block `b`'s ratings (naming positions, in the block's order) as the kernel's records,
    /// into `out`: ids made rows of their blocks, and each record's third word the row drawn
    /// against it ([`crate::update::NO_DRAW`], the kernel's UNKNOWN, where none).
    pub fn records(&self, schedule: &Schedule, b: usize, block: &[Rating], out: &mut Vec<Rating>) -> Result<()> {
        let (ub, ib) = schedule.coordinates(b);
        let first = (schedule.users.start(ub) as u32, schedule.items.start(ib) as u32);
        let rows = (schedule.users.members(ub).len(), schedule.items.members(ib).len());
        let draws = draw_pairs(block, self.columns, &PairBlock::new(self.epoch_seed, first, rows))?;
        schedule.local_rows(block, out);
        for (r, drawn) in out.iter_mut().zip(draws) {
            r.value = f32::from_bits(drawn);
        }
        Ok(())
    }
}
