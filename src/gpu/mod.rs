//! The GPU solver: Hogwild masked SGD in WGSL compute shaders through wgpu.
//!
//! The path of the data, one step a module: the [schedule](crate::schedule) cuts the ratings
//! into blocks, each block's ratings in a fixed random order (as cuMF_SGD does: reshuffling
//! 100M ratings per epoch would cost more than the epoch); [`buffers`] uploads the factor rows
//! block by block and each block's ratings as windows of one binding; [`kernel`] composes the
//! one WGSL kernel; an epoch is one submission here, one dispatch per window in the epoch's
//! block sequence, each a grid-stride loop of groups over its ratings, summing the errors it
//! meets; [`readback`] brings back those sums (and the test set's) without stopping the next
//! epoch from going out. The factors come back once, at the end.

pub mod als;
mod buffers;
mod context;
mod dispatch;
mod svdpp;
mod kernel;
mod pairwise;
mod plan;
mod readback;
mod setup;

pub use context::{list_adapters, quiet_headless_drivers, AdapterSummary, Gpu};
pub use kernel::{KernelShape, ParamsUniform, GROUP_SUBGROUP_WGSL, GROUP_WORKGROUP_WGSL, SVDPP_WGSL, SGD_WGSL};

use crate::data::Rating;
use std::collections::VecDeque;
use crate::error::Result;
use crate::objective::LossSums;
use crate::model::Model;
use crate::schedule::Schedule;
use crate::solver::{EpochFigures, Solver, UploadCounts};
use crate::update::RowWeights;
use buffers::{FactorBlock, Window};
use dispatch::encode_reduction;
use kernel::Pipelines;
use readback::EpochSlots;

/// How factors are stored on the GPU; arithmetic is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// Half the bytes per update (needs the adapter's shader-f16 feature).
    F16,
}

impl crate::choice::Choice for Precision {
    const WHAT: &'static str = "precision";
    const ALL: &'static [(Precision, &'static str, &'static str)] = &[
        (Precision::F32, "f32", "Factors stored as 32-bit floats"),
        (Precision::F16, "f16", "Half the bytes per update (needs the adapter's shader-f16 feature)"),
    ];
}

impl Precision {
    pub(crate) fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// How streamed ratings reach the device (`--gpu-memory` below what they need).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upload {
    /// The host writes each window straight into a buffer the kernels read (wgpu's
    /// MAPPABLE_PRIMARY_BUFFERS; device-local where the driver maps video memory), while the
    /// device trains the window before it. No copy is queued: on wgpu's one queue a copy would
    /// wait behind every kernel before it.
    Mapped,
    /// `write_buffer` through staging: the device copies each window before its kernels.
    Copied,
}

impl crate::choice::Choice for Upload {
    const WHAT: &'static str = "upload";
    const ALL: &'static [(Upload, &'static str, &'static str)] = &[
        (Upload::Mapped, "mapped", "The host writes windows into buffers the kernels read, while the device trains (the default where the adapter allows it)"),
        (Upload::Copied, "copied", "The device copies each window from staging before its kernels"),
    ];
}

/// GPU-specific settings; the model's hyper-parameters are in [`crate::model::Params`].
#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Use subgroups when the adapter has them; false forces the workgroup reduction.
    pub subgroups: bool,
    /// Caps one binding below the device's own limit (exercises the blocks and windows on any
    /// device).
    pub max_binding_bytes: Option<u64>,
    /// Users per block at most, e.g. to keep a block's rows in the L2 cache (cuts the grid's
    /// user side finer than `Params::blocks` where needed).
    pub user_block_rows: Option<usize>,
    /// Workgroups per update dispatch (default: enough groups to hide memory latency).
    pub workgroups: Option<u32>,
    /// Lanes of a subgroup per rating (default: the fewest that hold a row in one vec4 each).
    pub lanes_per_rating: Option<u32>,
    /// Ratings updated at once, at most (default: [`default_in_flight`]).
    pub in_flight: Option<u32>,
    /// Bytes gpumf may allocate on the device. When the ratings and factors need more, the
    /// ratings stay in host memory and stream through a ring of upload buffers each epoch.
    /// `None`: the adapter's memory less a tenth (at least 512 MiB) where its driver reports
    /// it (Vulkan, Metal, DX12); no cap elsewhere.
    pub gpu_memory: Option<u64>,
    /// How streamed ratings reach the device; `None`: mapped where the adapter allows it.
    pub upload: Option<Upload>,
    /// Which adapter, by its place in `gpumf info`'s list; `None`: the preferred one.
    pub adapter: Option<usize>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { precision: Precision::F32, subgroups: true, max_binding_bytes: None, user_block_rows: None, workgroups: None, lanes_per_rating: None, in_flight: None, gpu_memory: None, upload: None, adapter: None }
    }
}

/// Ratings updated at once by default, for blocks of `users` × `items` rows: m·n/(m+n), the
/// number at which a rating expects about one other in flight to share its user or item row.
/// Hogwild needs such conflicts to stay rare, and the ratings' order is fixed at upload, so on a
/// small problem the same pairs would collide every epoch and bias the result (the 3×3 lab
/// matrix runs one rating at a time). Netflix-sized problems still fill the GPU (about 17,000).
pub fn default_in_flight(users: usize, items: usize) -> u32 {
    let (m, n) = (users.max(1) as f64, items.max(1) as f64);
    ((m * n / (m + n)).floor() as u64).clamp(1, u32::MAX as u64) as u32
}

/// Workgroups per evaluation dispatch; also the number of partial sums.
pub(crate) const EVAL_WORKGROUPS: u32 = 1024;
/// Ratings one group of lanes updates in one dispatch, at most. Mesa's llvmpipe (lavapipe) ends
/// a loop silently after about 16,000 iterations of a kernel's loops together (measured: one
/// rating in flight trained only the first 16,000 of u1's 80,000 ratings), and a long dispatch
/// can trip a desktop driver's watchdog; cutting windows shorter costs a dispatch per window.
const MAX_GROUP_ITERATIONS: usize = 1024;
/// Default workgroups per update dispatch: 2048 × 8 subgroups keeps every SM of a large GPU busy.
pub(crate) const UPDATE_WORKGROUPS: u32 = 2048;

/// Where the ratings live while training.
enum Placement {
    /// Uploaded once: each schedule block's windows (by block index), and the test set's.
    Resident { train: Vec<Vec<Window>>, test: Vec<Window> },
    /// In host memory (the schedule's blocks; the test set by block, rows local), uploaded
    /// window by window each epoch through the ring.
    Streamed { ring: buffers::Ring, test: Vec<Vec<Rating>> },
}

pub struct GpuSolver {
    gpu: Gpu,
    shape: KernelShape,
    pipelines: Pipelines,
    /// With the SVD++ term: where its passes run, and their state.
    svdpp: Option<svdpp::Svdpp>,
    /// How many epochs' shares the passes sum ([`crate::svdpp::pass_every`]).
    svdpp_every: usize,
    schedule: Schedule,
    user_blocks: Vec<FactorBlock>,
    item_blocks: Vec<FactorBlock>,
    /// Each row's regularisation weight by id, for the blocks swapped onto the device.
    weights: RowWeights,
    params_buffer: wgpu::Buffer,
    uniform: ParamsUniform,
    /// Per-workgroup error sums of the update pass, and of the test set's scoring.
    train_partials: wgpu::Buffer,
    test_partials: wgpu::Buffer,
    placement: Placement,
    /// With factors swapped: the (user, item) blocks whose rows are on the device now; the
    /// other rows are in `template`.
    swapped: Option<(usize, usize)>,
    /// Bytes streamed or swapped by epochs submitted and not yet finished, oldest first.
    streamed: VecDeque<u64>,
    /// The ring's windows written by those epochs.
    uploads: VecDeque<UploadCounts>,
    /// Bind the partials for the reductions.
    train_reduction: Window,
    test_reduction: Window,
    update_workgroups: u32,
    slots: EpochSlots,
    /// The model's non-factor parts, completed by the read-back; with factors swapped, also the
    /// rows not on the device.
    template: Model,
    buffer_bytes: u64,
    train_count: u64,
    test_count: u64,
    /// With a pairwise loss: the pairs drawn each epoch, and the lists' scores.
    pairwise: Option<pairwise::Pairwise>,
}

impl GpuSolver {
    /// Bytes of GPU buffers this solver holds.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.adapter
    }

    pub fn shape(&self) -> &KernelShape {
        &self.shape
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

impl Solver for GpuSolver {
    fn name(&self) -> String {
        let adapter = self.gpu.adapter.name.split(" (").next().unwrap_or(&self.gpu.adapter.name);
        format!(
            "gpu ({}, {}, {:?}, {}, {} in flight, {} blocks{}{})",
            adapter,
            self.gpu.adapter.backend,
            self.shape.precision,
            if self.shape.subgroups {
                format!("{} lanes per rating, subgroups of {}", self.shape.lanes, self.gpu.adapter.subgroup_min_size)
            } else {
                "workgroup reduction".into()
            },
            self.uniform.max_groups,
            self.schedule.grid(),
            match &self.placement {
                Placement::Resident { .. } => String::new(),
                Placement::Streamed { ring, .. } => format!(", ratings streamed in windows of {}, {}", ring.window_ratings, crate::choice::Choice::name(ring.upload_kind())),
            },
            self.svdpp.as_ref().map_or(String::new(), |i| i.describe())
        )
    }

    fn submit_epoch(&mut self, epoch: usize, lr: f32, score_test: bool) -> Result<()> {
        let sequence = self.schedule.sequence(epoch);
        let passes = crate::svdpp::passes_before(epoch, self.svdpp_every);
        let share_weight = crate::svdpp::share_weight(epoch, self.svdpp_every);
        let Some(pairs) = &mut self.pairwise else { return self.submit(&sequence, (lr, share_weight), score_test, passes) };
        // A pairwise loss's lists are judged on the host, from the factors this epoch leaves.
        pairs.start_epoch(epoch);
        let judge = score_test && pairs.scores();
        self.submit(&sequence, (lr, share_weight), false, passes)?;
        let ndcg = match judge {
            true => {
                let model = self.snapshot()?;
                self.pairwise.as_ref().and_then(|p| p.ndcg(model))
            }
            false => None,
        };
        self.pairwise.as_mut().expect("pairwise").scored.push_back(ndcg);
        Ok(())
    }

    fn finish_epoch(&mut self) -> Result<EpochFigures> {
        let done = self.slots.finish(&self.gpu)?;
        Ok(EpochFigures {
            train: sums(self.train_count, &done.sums[..4]),
            test: done.scored_test.then(|| sums(self.test_count, &done.sums[4..])),
            ndcg: self.pairwise.as_mut().and_then(|p| p.scored.pop_front()).flatten(),
            kernel_seconds: done.kernel_seconds,
            streamed_bytes: self.streamed.pop_front().unwrap_or(0),
            uploads: self.uploads.pop_front().unwrap_or_default(),
        })
    }
    fn epochs_in_flight(&self) -> usize {
        // The SVD++ term's passes on the host need each epoch's factors before the next.
        if self.svdpp.as_ref().is_some_and(svdpp::Svdpp::on_host) { 1 } else { readback::SLOTS }
    }

    fn device_bytes(&self) -> u64 {
        self.buffer_bytes
    }

    fn into_model(self: Box<Self>) -> Result<Model> {
        self.snapshot()
    }

    fn snapshot(&self) -> Result<Model> {
        let mut model = self.template.clone();
        buffers::read_factor_blocks(&self.gpu, &self.shape, &self.user_blocks, &mut model.user_factors, &mut model.user_bias)?;
        buffers::read_factor_blocks(&self.gpu, &self.shape, &self.item_blocks, &mut model.item_factors, &mut model.item_bias)?;
        Ok(model)
    }
}

/// The loss sums of `count` ratings read back from the device.
fn sums(count: u64, four: &[f32]) -> LossSums {
    LossSums { count, loss: four[0] as f64, squared: four[1] as f64, absolute: four[2] as f64, correct: four[3] as f64 }
}

/// A side of the grid, for moving a block of rows on and off the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Users,
    Items,
}

impl GpuSolver {
    /// Submits one pass over `sequence`'s blocks at learning rate `lr` (an epoch, or a DSGD
    /// worker's blocks), after the SVD++ term's passes where `svdpp_passes`, scoring the test
    /// set after it when asked.
    fn submit(&mut self, sequence: &[usize], (lr, share_weight): (f32, f32), score_test: bool, svdpp_passes: bool) -> Result<()> {
        let slot = self.slots.take()?;
        self.streamed.push_back(0);
        // Before the epoch's rate is written, so they step y at the last epoch's.
        let passes_on_device = svdpp_passes && self.svdpp_passes(slot)?;
        (self.uniform.learning_rate, self.uniform.share_weight) = (lr, share_weight);
        // Ordered on the queue: epochs already submitted keep the rate they were given.
        self.gpu.queue.write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&self.uniform));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&self.train_partials, 0, None);
        let score_test = score_test && self.test_count > 0;
        // Out of self for the epoch, so swapping factor blocks can borrow the rest.
        let mut placement = std::mem::replace(&mut self.placement, Placement::Resident { train: Vec::new(), test: Vec::new() });
        let outcome = self.encode_epoch(&mut placement, &mut encoder, slot, sequence, score_test, passes_on_device);
        self.uploads.push_back(match &mut placement {
            Placement::Streamed { ring, .. } => ring.take_counts(),
            Placement::Resident { .. } => UploadCounts::default(),
        });
        self.placement = placement;
        outcome?;
        if score_test {
            encode_reduction(&mut encoder, &self.pipelines, &self.test_reduction, "test error");
            self.slots.encode_copy(&mut encoder, slot, &self.test_partials, readback::SUMS_BYTES);
        }
        self.slots.encode_timestamps(&mut encoder, slot);
        let submission = self.gpu.queue.submit([encoder.finish()]);
        self.slots.submitted(slot, submission, score_test);
        Ok(())
    }

    /// DSGD: trains `blocks` once each, in order, at `lr`, adding to the SVD++ term's shares
    /// with `share_weight`, and returns their errors (waits for the device).
    pub fn train_blocks(&mut self, blocks: &[usize], lr: f32, share_weight: f32) -> Result<LossSums> {
        // (The worker runs the SVD++ term's passes itself.)
        self.submit(blocks, (lr, share_weight), false, false)?;
        let figures = self.finish_epoch()?;
        let count = blocks.iter().map(|&b| self.schedule.block_len(b) as u64).sum();
        Ok(LossSums { count, ..figures.train })
    }

    /// DSGD: the rows of block `b` of `side`, by position within the block, and their biases.
    pub fn rows(&self, side: Side, b: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let blocks = if side == Side::Users { &self.user_blocks } else { &self.item_blocks };
        blocks[b].read(&self.gpu, &self.shape, self.template.rank())
    }

    /// DSGD with the SVD++ term: the shares the last blocks trained gathered for user block
    /// `b`, by position within the block.
    pub(crate) fn svdpp_shares(&self, b: usize) -> Result<Vec<f32>> {
        self.user_blocks[b].read_share(&self.gpu, &self.shape, self.template.rank())
    }

    /// DSGD with the SVD++ term: user block `b`'s priors and shares (by position within the
    /// block; the shares zero after the passes).
    pub(crate) fn set_svdpp_rows(&self, b: usize, prior: &[f32], share: &[f32]) {
        let k = self.template.rank();
        let block = &self.user_blocks[b];
        block.write_prior(&self.gpu, &self.shape, k, prior);
        block.write_share(&self.gpu, &self.shape, k, share);
    }

    /// DSGD: puts `factors` and `bias` (by position within block `b`) on the device as block
    /// `b` of `side`; the next training sees them.
    pub fn set_rows(&self, side: Side, b: usize, factors: &[f32], bias: &[f32]) {
        let blocks = if side == Side::Users { &self.user_blocks } else { &self.item_blocks };
        blocks[b].write(&self.gpu, &self.shape, self.template.rank(), factors, bias);
    }
}

/// A WGSL struct's fields with their offsets, and its size: what the layout tests hold equal
/// to the Rust uniform each shader struct mirrors.
#[cfg(test)]
pub(crate) fn wgsl_struct_layout(source: &str, name: &str) -> (Vec<(String, usize)>, usize) {
    let module = naga::front::wgsl::parse_str(source).unwrap();
    let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("a struct {name}"));
    let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{name} is a struct") };
    (members.iter().map(|m| (m.name.clone().unwrap(), m.offset as usize)).collect(), *span as usize)
}
