//! The problem's buffers on the device: factor rows block by block (packed to whole vec4s in
//! the storage precision; a side's blocks at aligned offsets in as few buffers as bindings
//! allow), and each schedule block's ratings with ids made rows of its blocks.

use super::kernel::{KernelShape, Pipelines};
use super::{Gpu, Precision, Upload};
use crate::data::Rating;
use crate::error::{Error, Result};
use crate::solver::UploadCounts;
use crate::grid::Axis;
use ndarray::Array2;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// One block of factor rows, their biases and their regularisation weights (read only: fixed
/// by the counts): a range of rows in its side's buffers, which it shares with the side's other
/// blocks as far as one binding reaches.
pub(super) struct FactorBlock {
    pub factors: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub reg_weight: wgpu::Buffer,
    /// With the SVD++ term, on the users' side: the rows' priors z, in the factors' layout,
    /// and their shares (f32, whole vec4s a row).
    pub prior: Option<wgpu::Buffer>,
    pub share: Option<wgpu::Buffer>,
    /// The block's first row in its buffer, and its room in rows.
    first_row: u64,
    room: u64,
    /// Bytes of a row of factors (and priors), and of a share.
    row_bytes: u64,
    share_bytes: u64,
    /// The model's ids of the rows, in order.
    rows: Vec<u32>,
}

/// Where one side's (users' or items') blocks of rows go on the device: every block of the
/// grid, or, `swapped`, one block's room (the largest block's rows) holding block 0, the others
/// loaded in turn by [`FactorBlock::load`]. Blocks `keep` refuses hold no rows (one zero row, to
/// bind): a DSGD worker's device holds only its own stripes. Blocks share buffers as far as one
/// binding reaches, so that where a side fits one binding, a pass can bind it whole.
pub(super) struct SideLayout {
    /// Each block's ids, its (buffer, first row) and its room in rows.
    members: Vec<Vec<u32>>,
    places: Vec<(usize, u64)>,
    rooms: Vec<u64>,
    /// Rows of each buffer, padding included.
    buffer_rows: Vec<u64>,
}

impl SideLayout {
    /// `svdpp`: the rows carry the SVD++ term's priors and shares.
    pub(super) fn new(gpu: &Gpu, shape: &KernelShape, axis: &Axis, swapped: bool, keep: &dyn Fn(usize) -> bool, svdpp: bool, max_binding: u64) -> SideLayout {
        let blocks = if swapped { 1 } else { axis.blocks() };
        let members: Vec<Vec<u32>> = (0..blocks).map(|b| if keep(b) { axis.members(b).to_vec() } else { Vec::new() }).collect();
        let rooms: Vec<u64> = members.iter().map(|rows| if swapped { axis.max_rows() } else { rows.len() }.max(1) as u64).collect();
        // Every buffer of a row (4-byte biases and weights included) binds at a multiple of the
        // alignment when its first row is a multiple of alignment / 4.
        let align_rows = (gpu.limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
        let widest_row = shape.row_bytes().max(if svdpp { share_row_bytes(shape) } else { 0 });
        let (places, buffer_rows) = place_blocks(&rooms, align_rows, (max_binding / widest_row).max(1));
        SideLayout { members, places, rooms, buffer_rows }
    }

    /// The rows of the side's one buffer, padding included; `None` where it takes several.
    pub(super) fn whole_rows(&self) -> Option<u64> {
        match self.buffer_rows[..] {
            [rows] => Some(rows),
            _ => None,
        }
    }

    /// Each position's row in the side's one buffer (see [`whole_rows`](Self::whole_rows)).
    pub(super) fn rows_by_position(&self, axis: &Axis) -> Vec<u32> {
        (0..axis.blocks()).flat_map(|b| (0..axis.members(b).len() as u64).map(move |r| (self.places[b].1 + r) as u32)).collect()
    }
}

/// Where each block goes: blocks one after another in a buffer while the buffer stays within
/// `max_rows`, each starting at a multiple of `align_rows` (so it binds at an offset the device
/// accepts). Returns each block's (buffer, first row) and each buffer's rows.
fn place_blocks(rooms: &[u64], align_rows: u64, max_rows: u64) -> (Vec<(usize, u64)>, Vec<u64>) {
    let (mut places, mut buffers) = (Vec::with_capacity(rooms.len()), vec![0u64]);
    for &room in rooms {
        let end = *buffers.last().expect("one buffer at least");
        let mut first = end.div_ceil(align_rows) * align_rows;
        if end > 0 && first + room > max_rows {
            buffers.push(0);
            first = 0;
        }
        places.push((buffers.len() - 1, first));
        *buffers.last_mut().expect("one buffer at least") = first + room;
    }
    (places, buffers)
}

/// Uploads one side's rows as `layout` places them: the factors, biases, regularisation weights
/// and, with the SVD++ term, priors (all by id), with shares at zero.
#[allow(clippy::too_many_arguments)]
pub(super) fn upload_factor_blocks(gpu: &Gpu, shape: &KernelShape, layout: SideLayout, factors: &Array2<f32>, bias: &[f32], reg_weight: &[f32], prior: Option<&Array2<f32>>, label: &str) -> Vec<FactorBlock> {
    let SideLayout { members, places, rooms, buffer_rows } = layout;
    let row_bytes = shape.row_bytes() as usize;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let create = |label: &str, contents: &[u8]| gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
    let mut buffers = Vec::with_capacity(buffer_rows.len());
    for (buffer, &rows_here) in buffer_rows.iter().enumerate() {
        let rows_here = rows_here as usize;
        let (mut data, mut prior_data) = (vec![0u8; rows_here * row_bytes], prior.map(|_| vec![0u8; rows_here * row_bytes]));
        let (mut biases, mut weights) = (vec![0.0f32; rows_here], vec![0.0f32; rows_here]);
        for (rows, &(_, first)) in members.iter().zip(&places).filter(|(_, &(b, _))| b == buffer) {
            let first = first as usize;
            data[first * row_bytes..][..rows.len() * row_bytes].copy_from_slice(&pack_rows(factors, rows, shape));
            if let (Some(out), Some(prior)) = (prior_data.as_mut(), prior) {
                out[first * row_bytes..][..rows.len() * row_bytes].copy_from_slice(&pack_rows(prior, rows, shape));
            }
            for (r, &id) in rows.iter().enumerate() {
                biases[first + r] = bias[id as usize];
                weights[first + r] = reg_weight[id as usize];
            }
        }
        // Shares start at zero, as wgpu clears new buffers.
        let share = prior.map(|_| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("share"), size: rows_here as u64 * share_row_bytes(shape), usage, mapped_at_creation: false }));
        buffers.push((create(label, &data), create(label, bytemuck::cast_slice(&biases)), create(label, bytemuck::cast_slice(&weights)), prior_data.map(|data| create("prior", &data)), share));
    }
    members
        .into_iter()
        .zip(places)
        .zip(rooms)
        .map(|((rows, (buffer, first_row)), room)| {
            let (factors, bias, reg_weight, prior, share) = buffers[buffer].clone();
            FactorBlock { factors, bias, reg_weight, prior, share, first_row, room, row_bytes: shape.row_bytes(), share_bytes: share_row_bytes(shape), rows }
        })
        .collect()
}

/// Bytes of one row's SVD++-term share on the device (f32 whatever the precision).
pub(super) fn share_row_bytes(shape: &KernelShape) -> u64 {
    shape.k4() as u64 * 16
}

/// Reads every block of one side back into the model's rows.
pub(super) fn read_factor_blocks(gpu: &Gpu, shape: &KernelShape, blocks: &[FactorBlock], factors: &mut Array2<f32>, bias: &mut [f32]) -> Result<()> {
    blocks.iter().try_for_each(|block| block.store(gpu, shape, factors, bias, None))
}

impl FactorBlock {
    /// The block's rows in a buffer of `row_bytes` a row: (offset, bytes) of its rows now, or
    /// of its whole room.
    fn span(&self, row_bytes: u64, whole_room: bool) -> (u64, u64) {
        let rows = if whole_room { self.room } else { self.rows.len() as u64 };
        (self.first_row * row_bytes, rows * row_bytes)
    }

    /// The block's room in `buffer` (of `row_bytes` a row), as a binding.
    fn binding<'a>(&self, number: u32, buffer: &'a wgpu::Buffer, row_bytes: u64) -> wgpu::BindGroupEntry<'a> {
        let (offset, size) = self.span(row_bytes, true);
        wgpu::BindGroupEntry { binding: number, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset, size: std::num::NonZeroU64::new(size) }) }
    }

    /// The rows' shares on the device, `k` values each in order (waits for the device).
    pub(super) fn read_share(&self, gpu: &Gpu, shape: &KernelShape, k: usize) -> Result<Vec<f32>> {
        let Some(buffer) = self.share.as_ref().filter(|_| !self.rows.is_empty()) else { return Ok(Vec::new()) };
        let (offset, size) = self.span(share_row_bytes(shape), false);
        let padded: Vec<f32> = bytemuck::pod_collect_to_vec(&gpu.read_back(buffer, offset, size)?);
        Ok(padded.chunks_exact(shape.k4() as usize * 4).flat_map(|row| &row[..k]).copied().collect())
    }

    /// Replaces the rows' shares on the device by `share` (`k` values a row, in order).
    pub(super) fn write_share(&self, gpu: &Gpu, shape: &KernelShape, k: usize, share: &[f32]) {
        if let (Some(buffer), false) = (&self.share, self.rows.is_empty()) {
            let stride = shape.k4() as usize * 4;
            let mut padded = vec![0.0f32; self.rows.len() * stride];
            for (r, row) in padded.chunks_exact_mut(stride).enumerate() {
                row[..k].copy_from_slice(&share[r * k..][..k]);
            }
            gpu.queue.write_buffer(buffer, self.span(share_row_bytes(shape), false).0, bytemuck::cast_slice(&padded));
        }
    }

    /// Writes the rows on the device back into the model's arrays, and their shares into
    /// `share` where given (waits for the device).
    pub(super) fn store(&self, gpu: &Gpu, shape: &KernelShape, factors: &mut Array2<f32>, bias: &mut [f32], share: Option<&mut Array2<f32>>) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let k = factors.ncols();
        if let Some(share) = share {
            let values = self.read_share(gpu, shape, k)?;
            let dest = share.as_slice_mut().expect("row-major");
            for (r, &id) in self.rows.iter().enumerate() {
                dest[id as usize * k..][..k].copy_from_slice(&values[r * k..][..k]);
            }
        }
        let dest = factors.as_slice_mut().expect("row-major");
        let (values, biases) = self.read(gpu, shape, k)?;
        for (r, &id) in self.rows.iter().enumerate() {
            dest[id as usize * k..][..k].copy_from_slice(&values[r * k..][..k]);
            bias[id as usize] = biases[r];
        }
        Ok(())
    }

    /// The rows on the device, `k` values each in order, and their biases (waits for the device).
    pub(super) fn read(&self, gpu: &Gpu, shape: &KernelShape, k: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        if self.rows.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let stride = shape.k4() as usize * 4;
        let (offset, size) = self.span(shape.row_bytes(), false);
        let raw = gpu.read_back(&self.factors, offset, size)?;
        let padded: Vec<f32> = match shape.precision {
            Precision::F32 => bytemuck::pod_collect_to_vec(&raw),
            Precision::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&raw).iter().map(|h| h.to_f32()).collect(),
        };
        let values = padded.chunks_exact(stride).flat_map(|row| &row[..k]).copied().collect();
        let (offset, size) = self.span(4, false);
        let biases = bytemuck::pod_collect_to_vec(&gpu.read_back(&self.bias, offset, size)?);
        Ok((values, biases))
    }

    /// Replaces the rows on the device by `factors` (`k` values a row, in order) and `bias`.
    pub(super) fn write(&self, gpu: &Gpu, shape: &KernelShape, k: usize, factors: &[f32], bias: &[f32]) {
        if self.rows.is_empty() {
            return;
        }
        gpu.queue.write_buffer(&self.factors, self.span(shape.row_bytes(), false).0, &pack(self.rows.len(), k, |r| &factors[r * k..][..k], shape));
        gpu.queue.write_buffer(&self.bias, self.span(4, false).0, bytemuck::cast_slice(bias));
    }

    /// Replaces the rows' priors on the device by `prior` (`k` values a row, in order).
    pub(super) fn write_prior(&self, gpu: &Gpu, shape: &KernelShape, k: usize, prior: &[f32]) {
        if let (Some(buffer), false) = (&self.prior, self.rows.is_empty()) {
            gpu.queue.write_buffer(buffer, self.span(shape.row_bytes(), false).0, &pack(self.rows.len(), k, |r| &prior[r * k..][..k], shape));
        }
    }

    /// Puts block `b` of `axis` on the device in place of the rows there (written back first
    /// by the caller), from the model's arrays, the regularisation weights, and with svdpp
    /// feedback the priors and shares (all by id; priors are only read on the device, so the
    /// host's stay current).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn load(&mut self, gpu: &Gpu, shape: &KernelShape, axis: &Axis, b: usize, factors: &Array2<f32>, bias: &[f32], reg_weight: &[f32], svdpp: Option<(&Array2<f32>, &Array2<f32>)>) {
        self.rows = axis.members(b).to_vec();
        if self.rows.is_empty() {
            return;
        }
        if let (Some(buffer), Some((prior, _))) = (&self.prior, svdpp) {
            gpu.queue.write_buffer(buffer, self.span(shape.row_bytes(), false).0, &pack_rows(prior, &self.rows, shape));
        }
        if let Some((_, share)) = svdpp {
            let k = share.ncols();
            let rows: Vec<f32> = self.rows.iter().flat_map(|&id| share.row(id as usize).to_vec()).collect();
            self.write_share(gpu, shape, k, &rows);
        }
        let weights: Vec<f32> = self.rows.iter().map(|&r| reg_weight[r as usize]).collect();
        gpu.queue.write_buffer(&self.reg_weight, self.span(4, false).0, bytemuck::cast_slice(&weights));
        gpu.queue.write_buffer(&self.factors, self.span(shape.row_bytes(), false).0, &pack_rows(factors, &self.rows, shape));
        let biases: Vec<f32> = self.rows.iter().map(|&r| bias[r as usize]).collect();
        gpu.queue.write_buffer(&self.bias, self.span(4, false).0, bytemuck::cast_slice(&biases));
    }
}

/// The rows `ids` of `factors`, padded to whole vec4s, in the storage precision.
fn pack_rows(factors: &Array2<f32>, ids: &[u32], shape: &KernelShape) -> Vec<u8> {
    let k = factors.ncols();
    let src = factors.as_slice().expect("row-major");
    pack(ids.len(), k, |r| &src[ids[r] as usize * k..][..k], shape)
}

/// `rows` rows of `k` values (row `r` given by `row(r)`), padded to whole vec4s, in the
/// storage precision.
fn pack<'a>(rows: usize, k: usize, row: impl Fn(usize) -> &'a [f32], shape: &KernelShape) -> Vec<u8> {
    let stride = shape.k4() as usize * 4;
    let mut padded = vec![0.0f32; rows * stride];
    for r in 0..rows {
        padded[r * stride..][..k].copy_from_slice(row(r));
    }
    match shape.precision {
        Precision::F32 => bytemuck::cast_slice(&padded).to_vec(),
        Precision::F16 => {
            let halves: Vec<half::f16> = padded.iter().map(|&x| half::f16::from_f32(x)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
    }
}

/// A run of one block's ratings on the device, bound beside the block's factor rows.
pub(super) struct Window {
    pub bind_group: wgpu::BindGroup,
    pub count: u32,
    /// A resident window's ratings, rewritten each epoch with a pairwise loss's new pairs.
    pub ratings: Option<wgpu::Buffer>,
}

/// What a window binds besides its ratings.
pub(super) struct Bindings<'a> {
    pub pipelines: &'a Pipelines,
    pub users: &'a FactorBlock,
    pub items: &'a FactorBlock,
    pub params: &'a wgpu::Buffer,
    /// Where the kernels add their error sums.
    pub output: &'a wgpu::Buffer,
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }
}

/// Uploads `ratings` (ids local to the bound blocks) as runs of at most `max_ratings`, in order.
pub(super) fn upload_windows(gpu: &Gpu, ratings: &[Rating], max_ratings: usize, with: &Bindings, label: &str) -> Vec<Window> {
    ratings
        .chunks(max_ratings.max(1))
        .map(|run| {
            let buffer = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(run),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            });
            let window = bind(gpu, entry(0, &buffer), with, label, run.len());
            Window { ratings: Some(buffer), ..window }
        })
        .collect()
}

/// Upload buffers that training ratings stream through, one window at a time, when they do not
/// all fit the device: the window written into one slot while the kernels read another, a slot
/// reused only once the device is done with it (so host staging stays a few windows, too).
pub(super) struct Ring {
    buffers: Vec<wgpu::Buffer>,
    last_use: Vec<Option<wgpu::SubmissionIndex>>,
    /// Mapped: each slot's mapping, asked for once its last use is submitted and answered when
    /// the device is done with it.
    mappings: Vec<Arc<Mutex<Mapping>>>,
    upload: Upload,
    next: usize,
    /// Ratings one slot holds.
    pub window_ratings: usize,
    /// Windows written, and those written while the device was still busy with earlier work
    /// (the upload overlapping the kernels), since [`Ring::take_counts`].
    counts: UploadCounts,
}

/// Where a mapped slot's mapping stands.
#[derive(Clone, Debug)]
enum Mapping {
    Asked,
    Ready,
    Failed(String),
}

impl Ring {
    pub(super) fn new(gpu: &Gpu, slots: usize, window_ratings: usize, upload: Upload) -> Result<Ring> {
        let bytes = (window_ratings * std::mem::size_of::<Rating>()) as u64;
        let usage = match upload {
            Upload::Mapped => wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::MAP_WRITE,
            Upload::Copied => wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        };
        let buffers = gpu.scoped(&format!("allocating {slots} upload buffers of {}", crate::resources::human_bytes(bytes)), || {
            (0..slots)
                .map(|_| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("streamed ratings"), size: bytes, usage, mapped_at_creation: upload == Upload::Mapped }))
                .collect()
        })?;
        let mappings = (0..slots).map(|_| Arc::new(Mutex::new(Mapping::Ready))).collect();
        Ok(Ring { buffers, last_use: vec![None; slots], mappings, upload, next: 0, window_ratings, counts: UploadCounts::default() })
    }

    /// Writes `ratings` (at most a window) into the next slot, once the device has finished the
    /// work that last read it, and binds them. Returns the slot, to mark with [`Ring::used`].
    pub(super) fn upload(&mut self, gpu: &Gpu, ratings: &[Rating], with: &Bindings) -> Result<(usize, Window)> {
        debug_assert!(!ratings.is_empty() && ratings.len() <= self.window_ratings);
        let slot = self.next;
        self.next = (self.next + 1) % self.buffers.len();
        if let Some(index) = self.last_use[slot].take() {
            wait_for(gpu, Some(index))?;
        }
        let buffer = &self.buffers[slot];
        let bytes: &[u8] = bytemuck::cast_slice(ratings);
        match self.upload {
            Upload::Copied => gpu.queue.write_buffer(buffer, 0, bytes),
            Upload::Mapped => {
                // The mapping is answered by the poll that saw its slot's last use finish; a
                // poll of everything is the fallback, and a mapping still not answered is a bug.
                if matches!(*lock(&self.mappings[slot]), Mapping::Asked) {
                    wait_for(gpu, None)?;
                }
                match lock(&self.mappings[slot]).clone() {
                    Mapping::Ready => {}
                    Mapping::Asked => return Err(Error::Gpu("an upload buffer was never mapped for writing".into())),
                    Mapping::Failed(e) => return Err(Error::Gpu(format!("mapping an upload buffer failed: {e}"))),
                }
                buffer.get_mapped_range_mut(..bytes.len() as u64).map_err(|e| Error::Gpu(format!("writing an upload buffer failed: {e}")))?.copy_from_slice(bytes);
                buffer.unmap();
            }
        }
        // Work still queued now was queued all through the write.
        let busy = !gpu.device.poll(wgpu::PollType::Poll).map_err(|e| Error::Gpu(format!("polling the device failed: {e}")))?.is_queue_empty();
        self.counts.windows += 1;
        self.counts.while_device_busy += busy as u64;
        let size = std::num::NonZeroU64::new(bytes.len() as u64);
        let ratings_binding = wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: 0, size }) };
        Ok((slot, bind(gpu, ratings_binding, with, "streamed ratings", ratings.len())))
    }

    /// Marks `slot` in use by `submission`; a mapped slot asks for its next mapping, which the
    /// device answers when that submission is done.
    pub(super) fn used(&mut self, slot: usize, submission: wgpu::SubmissionIndex) {
        self.last_use[slot] = Some(submission);
        if self.upload == Upload::Mapped {
            *lock(&self.mappings[slot]) = Mapping::Asked;
            let answer = self.mappings[slot].clone();
            self.buffers[slot].slice(..).map_async(wgpu::MapMode::Write, move |r| {
                *lock(&answer) = match r {
                    Ok(()) => Mapping::Ready,
                    Err(e) => Mapping::Failed(e.to_string()),
                };
            });
        }
    }

    pub(super) fn upload_kind(&self) -> Upload {
        self.upload
    }

    /// The counts since the last call.
    pub(super) fn take_counts(&mut self) -> UploadCounts {
        std::mem::take(&mut self.counts)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for submission `index` (all submitted work when `None`).
fn wait_for(gpu: &Gpu, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
    gpu.device
        .poll(wgpu::PollType::Wait { submission_index: index, timeout: None })
        .map(|_| ())
        .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))
}

/// A bind group of a ratings binding with what `with` names.
fn bind(gpu: &Gpu, ratings: wgpu::BindGroupEntry<'_>, with: &Bindings, label: &str, count: usize) -> Window {
    let (users, items, row_bytes, share_bytes) = (with.users, with.items, with.users.row_bytes, with.users.share_bytes);
    let mut entries = vec![
        ratings,
        users.binding(1, &users.factors, row_bytes),
        items.binding(2, &items.factors, row_bytes),
        users.binding(3, &users.bias, 4),
        items.binding(4, &items.bias, 4),
        entry(5, with.params),
        entry(6, with.output),
        users.binding(7, &users.reg_weight, 4),
        items.binding(8, &items.reg_weight, 4),
    ];
    if let (Some(prior), Some(share)) = (&users.prior, &users.share) {
        entries.extend([users.binding(9, prior, row_bytes), users.binding(10, share, share_bytes)]);
    }
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &with.pipelines.layout, entries: &entries });
    Window { bind_group, count: count as u32, ratings: None }
}

#[cfg(test)]
mod tests {
    use super::place_blocks;

    #[test]
    fn blocks_share_a_buffer_at_aligned_rows_until_a_binding_is_full() {
        // Rooms of 5, 3, 8 and 2 rows, first rows multiples of 4, at most 16 rows a buffer.
        let (places, buffers) = place_blocks(&[5, 3, 8, 2], 4, 16);
        assert_eq!(places, vec![(0, 0), (0, 8), (1, 0), (1, 8)]);
        assert_eq!(buffers, vec![11, 10]);
        // A block larger than a buffer allows still gets one of its own.
        let (places, buffers) = place_blocks(&[3, 40, 1], 4, 16);
        assert_eq!(places, vec![(0, 0), (1, 0), (2, 0)]);
        assert_eq!(buffers, vec![3, 40, 1]);
        // Everything fits: one buffer, which a pass can bind whole.
        let (places, buffers) = place_blocks(&[5, 5, 5], 1, 1 << 20);
        assert_eq!((places, buffers), (vec![(0, 0), (0, 5), (0, 10)], vec![15]));
    }
}
