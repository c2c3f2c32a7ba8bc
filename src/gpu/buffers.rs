//! The problem's buffers on the device: factor rows block by block (packed to whole vec4s in
//! the storage precision), and each schedule block's ratings with ids made rows of its blocks.

use super::kernel::{KernelShape, Pipelines};
use super::{Gpu, Precision};
use crate::data::Rating;
use crate::error::Result;
use crate::schedule::Axis;
use ndarray::Array2;
use wgpu::util::DeviceExt;

/// One block of factor rows and their biases.
pub(super) struct FactorBlock {
    pub factors: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    /// The model's ids of the rows, in order.
    rows: Vec<u32>,
}

/// Every block of one side (users or items) of the grid, uploaded.
pub(super) fn upload_factor_blocks(gpu: &Gpu, shape: &KernelShape, axis: &Axis, factors: &Array2<f32>, bias: &[f32], label: &str) -> Vec<FactorBlock> {
    (0..axis.blocks())
        .map(|b| {
            let rows = axis.members(b).to_vec();
            let data = pack_rows(factors, &rows, shape);
            let bias: Vec<f32> = rows.iter().map(|&r| bias[r as usize]).collect();
            // A block with no rows still binds: give it one zero row.
            let (data, bias) = if rows.is_empty() { (vec![0u8; shape.row_bytes() as usize], vec![0.0f32]) } else { (data, bias) };
            FactorBlock {
                factors: gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &data,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                }),
                bias: gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&bias),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                }),
                rows,
            }
        })
        .collect()
}

/// Reads every block of one side back into the model's rows.
pub(super) fn read_factor_blocks(gpu: &Gpu, shape: &KernelShape, blocks: &[FactorBlock], factors: &mut Array2<f32>, bias: &mut [f32]) -> Result<()> {
    let k = factors.ncols();
    let stride = shape.k4() as usize * 4;
    let dest = factors.as_slice_mut().expect("row-major");
    for block in blocks.iter().filter(|b| !b.rows.is_empty()) {
        let raw = gpu.read_back(&block.factors, block.rows.len() as u64 * shape.row_bytes())?;
        let values: Vec<f32> = match shape.precision {
            Precision::F32 => bytemuck::pod_collect_to_vec(&raw),
            Precision::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&raw).iter().map(|h| h.to_f32()).collect(),
        };
        let biases: Vec<f32> = bytemuck::pod_collect_to_vec(&gpu.read_back(&block.bias, 4 * block.rows.len() as u64)?);
        for (r, &id) in block.rows.iter().enumerate() {
            dest[id as usize * k..][..k].copy_from_slice(&values[r * stride..][..k]);
            bias[id as usize] = biases[r];
        }
    }
    Ok(())
}

/// The rows `ids` of `factors`, padded to whole vec4s, in the storage precision.
fn pack_rows(factors: &Array2<f32>, ids: &[u32], shape: &KernelShape) -> Vec<u8> {
    let k = factors.ncols();
    let stride = shape.k4() as usize * 4;
    let mut padded = vec![0.0f32; ids.len() * stride];
    let src = factors.as_slice().expect("row-major");
    for (r, &id) in ids.iter().enumerate() {
        padded[r * stride..][..k].copy_from_slice(&src[id as usize * k..][..k]);
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
                usage: wgpu::BufferUsages::STORAGE,
            });
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &with.pipelines.layout,
                entries: &[
                    entry(0, &buffer),
                    entry(1, &with.users.factors),
                    entry(2, &with.items.factors),
                    entry(3, &with.users.bias),
                    entry(4, &with.items.bias),
                    entry(5, with.params),
                    entry(6, with.output),
                ],
            });
            Window { bind_group, count: run.len() as u32 }
        })
        .collect()
}
