//! What a backend provides to the training loop ([`crate::training`]): epochs of SGD over the
//! block schedule, and the factors. Backends import this module and nothing above it.

use crate::error::Result;
use crate::objective::LossSums;
use crate::model::Model;

/// What one epoch measured.
#[derive(Clone, Copy, Debug)]
pub struct EpochFigures {
    /// Loss sums of the training ratings as the pass met them, each just before its update
    /// (the pass's own loss: no second pass over every rating).
    pub train: LossSums,
    /// Loss sums of the test ratings after the epoch, when it was asked to score them.
    pub test: Option<LossSums>,
    /// NDCG@20 of the held-out events after the epoch, for one-class losses, whose test set
    /// sums do not judge ([`crate::objective::Metric::Ndcg`]).
    pub ndcg: Option<f64>,
    /// Seconds the device's own clock measured for the epoch's kernels, where it has one.
    pub kernel_seconds: Option<f64>,
    /// Bytes the epoch moved between host memory and the device beyond what stays resident
    /// (streamed ratings, swapped factor rows), or read from disk; 0 when all is resident.
    pub streamed_bytes: u64,
    /// Streamed windows written, and how many while the device was still busy.
    pub uploads: UploadCounts,
}

/// Windows of streamed ratings an epoch wrote, and how many of them the host wrote while the
/// device was still busy with earlier work: how far the upload overlapped the kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadCounts {
    pub windows: u64,
    pub while_device_busy: u64,
}

impl UploadCounts {
    pub fn merge(self, other: UploadCounts) -> UploadCounts {
        UploadCounts { windows: self.windows + other.windows, while_device_busy: self.while_device_busy + other.while_device_busy }
    }
}

/// A backend's trainer.
pub trait Solver {
    /// A short description, e.g. "cpu (blocks, 8 threads)".
    fn name(&self) -> String;
    /// Starts epoch `epoch` (0-based) of SGD over every training rating at learning rate `lr`,
    /// scoring the test set after it when `score_test`. A device may return before the work is
    /// done (the GPU queues it), so the next epoch goes out with no wait between them.
    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()>;
    /// Waits for the oldest submitted epoch and returns its figures.
    fn finish_epoch(&mut self) -> Result<EpochFigures>;
    /// How many epochs may be submitted before the first is finished (1: no overlap).
    fn epochs_in_flight(&self) -> usize {
        1
    }
    /// The trained factors, as the common model type.
    fn into_model(self: Box<Self>) -> Result<Model>;
    /// A copy of the factors as they stand, for keeping the best epoch's (early stopping).
    fn snapshot(&self) -> Result<Model>;
    /// Bytes held in device buffers (0 on the CPU).
    fn device_bytes(&self) -> u64 {
        0
    }
}
