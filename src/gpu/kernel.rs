//! Composes the one SGD kernel for a rank, a precision, a reduction mode and a loss, and builds
//! its pipelines. The composition is one small substitution step: a generated header (storage
//! type, rank, workgroup size, the uniform's struct), a group prelude, the loss's functions
//! ([`Loss::wgsl`]) and the constraints' go before shaders/sgd.wgsl; the SVD++ term's passes
//! after it, and for the pairwise losses shaders/pairwise.wgsl with the sides it pairs. No
//! kernel is copied per variant.

use super::context::Gpu;
use super::Precision;
use crate::error::{Error, Result};
use crate::objective::Loss;

pub const SGD_WGSL: &str = include_str!("../../shaders/sgd.wgsl");
pub const GROUP_SUBGROUP_WGSL: &str = include_str!("../../shaders/group_subgroup.wgsl");
pub const GROUP_WORKGROUP_WGSL: &str = include_str!("../../shaders/group_workgroup.wgsl");
pub const SVDPP_WGSL: &str = include_str!("../../shaders/svdpp.wgsl");
pub const PAIRWISE_WGSL: &str = include_str!("../../shaders/pairwise.wgsl");

/// Threads per workgroup with subgroups (8 subgroups of 32 on NVIDIA).
pub const SUBGROUP_MODE_WG: u32 = 256;
/// Threads per workgroup, one rating each, without subgroups.
pub const WORKGROUP_MODE_WG: u32 = 64;

/// Everything that shapes the kernel's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelShape {
    pub rank: usize,
    pub precision: Precision,
    /// Ratings go to groups of lanes within a subgroup (true) or to whole workgroups (false).
    pub subgroups: bool,
    /// Lanes per rating: a power of two no wider than the smallest subgroup, or the whole
    /// workgroup without subgroups.
    pub lanes: u32,
    /// With the SVD++ term's prior and its passes (shaders/svdpp.wgsl).
    pub svdpp: bool,
    /// What the updates descend, and how evaluation judges a score.
    pub loss: Loss,
    /// Factors projected to ≥ 0 after each update.
    pub nonneg: bool,
    /// L1 shrinkage after each update (its size is the uniform's `l1`).
    pub l1: bool,
}

impl KernelShape {
    /// The shape for an adapter whose subgroups are at least `min_subgroup_size` wide.
    /// By default a rating gets the fewest lanes that hold its row in one vec4 each (so at rank
    /// 32 a subgroup of 32 works on 4 ratings at once), and never more than a subgroup;
    /// `lanes_wanted` overrides that with any power of two up to the smallest subgroup.
    pub fn new(rank: usize, precision: Precision, subgroups: bool, min_subgroup_size: u32, lanes_wanted: Option<u32>) -> Result<KernelShape> {
        let k4 = rank.div_ceil(4) as u32;
        let lanes = if !subgroups {
            if let Some(l) = lanes_wanted {
                return Err(Error::InvalidParameter(format!(
                    "--lanes-per-rating {l} needs subgroups, which this adapter lacks (it reports no subgroup support)"
                )));
            }
            WORKGROUP_MODE_WG
        } else {
            // Subgroup sizes are powers of two; round down defensively all the same.
            let widest = 1u32 << (31 - min_subgroup_size.max(1).leading_zeros());
            match lanes_wanted {
                Some(l) if l == 0 || !l.is_power_of_two() || l > widest => {
                    return Err(Error::InvalidParameter(format!(
                        "--lanes-per-rating {l}: must be a power of two from 1 to the smallest subgroup size, {widest}"
                    )))
                }
                Some(l) => l,
                None => k4.max(1).next_power_of_two().min(widest),
            }
        };
        Ok(KernelShape { rank, precision, subgroups, lanes, svdpp: false, loss: Loss::Squared, nonneg: false, l1: false })
    }

    /// vec4s per factor row.
    pub fn k4(&self) -> u32 {
        self.rank.div_ceil(4) as u32
    }

    /// Bytes of one factor row on the device.
    pub fn row_bytes(&self) -> u64 {
        self.k4() as u64 * 4 * self.precision.bytes()
    }

    pub fn workgroup_size(&self) -> u32 {
        if self.subgroups { SUBGROUP_MODE_WG } else { WORKGROUP_MODE_WG }
    }

    /// Ratings one workgroup works on at once.
    pub fn ratings_per_workgroup(&self) -> u32 {
        self.workgroup_size() / self.lanes
    }

    /// The full WGSL source.
    pub fn source(&self) -> String {
        let k4 = self.k4();
        let chunks = k4.div_ceil(self.lanes);
        let (enable, factor) = match self.precision {
            Precision::F32 => ("", "vec4<f32>"),
            Precision::F16 => ("enable f16;\n", "vec4<f16>"),
        };
        let prelude = if self.subgroups { GROUP_SUBGROUP_WGSL } else { GROUP_WORKGROUP_WGSL };
        let svdpp = if self.svdpp {
            format!("const ITEM_STEP: f32 = {:?};\nconst ITEM_REG: f32 = {:?};\nconst CURVATURE: f32 = {:?};\n\n{SVDPP_WGSL}", crate::svdpp::ITEM_STEP, crate::svdpp::ITEM_REG, crate::svdpp::CURVATURE)
        } else {
            "// no SVD++ term: each user row decays toward zero, and no share is kept\nfn user_decay(index: u32, p: vec4<f32>, pull: f32) -> vec4<f32> { return (1.0 - pull) * p; }\nfn add_share(index: u32, slope: f32, q: vec4<f32>) {}\n".into()
        };
        format!(
            "{enable}// generated header: rank {rank}, {precision:?}, {lanes} lanes per rating\nalias Factor = {factor};\nconst K4: u32 = {k4}u;\nconst LANES: u32 = {lanes}u;\nconst CHUNKS: u32 = {chunks}u;\nconst WG: u32 = {wg}u;\n\n{params}\n{prelude}\n{loss}\n{label}\n{constraints}\n{SGD_WGSL}\n{svdpp}\n{pairwise}",
            rank = self.rank,
            precision = self.precision,
            lanes = self.lanes,
            wg = self.workgroup_size(),
            params = ParamsUniform::wgsl(),
            loss = self.loss.wgsl(),
            label = if self.loss.is_binary() {
                "// Binary labels: values above the middle of the two are +1, below −1.\nfn label_of(value: f32) -> f32 {\n    return select(-1.0, 1.0, value > params.label_middle);\n}\n"
            } else {
                "fn label_of(value: f32) -> f32 {\n    return value;\n}\n"
            },
            constraints = self.constraints_wgsl(),
            pairwise = self.pairwise_wgsl(),
        )
    }

    /// The entry point of the update pass.
    pub fn update_entry(&self) -> &'static str {
        if self.loss.is_pairwise() { "pairwise_update" } else { "sgd_update" }
    }

    /// For the pairwise losses, shaders/pairwise.wgsl after the sides it pairs: `bpr` anchors
    /// on the user and draws items, `bpr-columns` anchors on the item and draws users.
    fn pairwise_wgsl(&self) -> String {
        if !self.loss.is_pairwise() {
            return String::new();
        }
        let (anchor, other) = if self.loss == Loss::BprColumns { ("item", "user") } else { ("user", "item") };
        format!(
            "// Pairwise sides: the anchor is the record's {anchor}, the rows paired are {other}s.\n\
             fn anchor_of(r: Rating) -> u32 {{ return r.{anchor}; }}\n\
             fn positive_of(r: Rating) -> u32 {{ return r.{other}; }}\n\
             fn anchor_row(at: u32) -> vec4<f32> {{ return vec4<f32>({anchor}_factors[at]); }}\n\
             fn set_anchor_row(at: u32, v: vec4<f32>) {{ {anchor}_factors[at] = Factor(v); }}\n\
             fn anchor_weight(row: u32) -> f32 {{ return {anchor}_reg_weight[row]; }}\n\
             fn other_row(at: u32) -> vec4<f32> {{ return vec4<f32>({other}_factors[at]); }}\n\
             fn set_other_row(at: u32, v: vec4<f32>) {{ {other}_factors[at] = Factor(v); }}\n\
             fn other_weight(row: u32) -> f32 {{ return {other}_reg_weight[row]; }}\n\
             fn other_bias(row: u32) -> f32 {{ return {other}_bias[row]; }}\n\
             fn set_other_bias(row: u32, b: f32) {{ {other}_bias[row] = b; }}\n\n{PAIRWISE_WGSL}"
        )
    }

    /// `constrain(v, threshold)`: a vec4 of factors after its plain step, shrunk toward zero by
    /// `threshold` and stopped there (L1), then projected to ≥ 0 (non-negative factors), as
    /// the CPU's update does (src/update.rs); `project(v)` the projection alone.
    fn constraints_wgsl(&self) -> String {
        let shrink = if self.l1 { "let x = v - clamp(v, vec4<f32>(-threshold), vec4<f32>(threshold));" } else { "let x = v;" };
        let project = if self.nonneg { "max(v, vec4<f32>(0.0))" } else { "v" };
        format!(
            "fn project(v: vec4<f32>) -> vec4<f32> {{\n    return {project};\n}}\n\nfn constrain(v: vec4<f32>, threshold: f32) -> vec4<f32> {{\n    {shrink}\n    return project(x);\n}}\n"
        )
    }
}

/// The kernel's uniform: this struct, and the WGSL `struct Params` the header declares from
/// [`ParamsUniform::FIELDS`] (a test holds their layouts equal).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ParamsUniform {
    pub learning_rate: f32,
    pub reg: f32,
    pub reg_bias: f32,
    pub mean: f32,
    pub use_biases: u32,
    pub clip_low: f32,
    pub clip_high: f32,
    /// Groups that update at once, at most: Hogwild's conflicts stay rare only while the
    /// ratings in flight are few beside the rows they touch (a 3×3 problem must run one at a
    /// time).
    pub max_groups: u32,
    /// 1 / the rating unit: factor steps take the loss in units of the ratings' spread, bias
    /// steps in rating units (see Params::rating_unit in src/model/mod.rs).
    pub error_scale: f32,
    pub unit: f32,
    /// L1 shrinkage of the factors per update, before each row's weight and the learning rate.
    pub l1: f32,
    /// Binary labels: values above it are the positive label.
    pub label_middle: f32,
    /// With the SVD++ term: what each update adds to its user's share, times ε·q (0: the
    /// epoch gathers none; [`crate::svdpp::share_weight`]).
    pub share_weight: f32,
}

impl ParamsUniform {
    /// Each field's name and WGSL type, in order.
    pub const FIELDS: [(&'static str, &'static str); 13] = [
        ("learning_rate", "f32"),
        ("reg", "f32"),
        ("reg_bias", "f32"),
        ("mean", "f32"),
        ("use_biases", "u32"),
        ("clip_low", "f32"),
        ("clip_high", "f32"),
        ("max_groups", "u32"),
        ("error_scale", "f32"),
        ("unit", "f32"),
        ("l1", "f32"),
        ("label_middle", "f32"),
        ("share_weight", "f32"),
    ];

    /// The WGSL declaration.
    pub fn wgsl() -> String {
        let fields: String = Self::FIELDS.iter().map(|(name, ty)| format!("    {name}: {ty},\n")).collect();
        format!("// The kernel's uniform (ParamsUniform in src/gpu/kernel.rs).\nstruct Params {{\n{fields}}}\n")
    }
}

/// The kernel's compute pipelines over one shared bind-group layout.
pub struct Pipelines {
    pub layout: wgpu::BindGroupLayout,
    pub update: wgpu::ComputePipeline,
    pub evaluate: wgpu::ComputePipeline,
    pub finish_evaluate: wgpu::ComputePipeline,
    /// With the SVD++ term: its passes after an epoch, in order, each with the layout of the
    /// bindings it uses.
    pub svdpp: Vec<(&'static str, wgpu::ComputePipeline)>,
}

/// The SVD++-term passes after an epoch, in the order they run.
pub const SVDPP_PASSES: [&str; 4] = ["svdpp_mean_norm", "svdpp_item_runs", "svdpp_items", "svdpp_users"];

impl Pipelines {
    pub fn new(gpu: &Gpu, shape: &KernelShape) -> Result<Pipelines> {
        gpu.scoped("compiling the SGD kernel", || {
            let device = &gpu.device;
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("sgd.wgsl"),
                source: wgpu::ShaderSource::Wgsl(shape.source().into()),
            });
            let layout = window_layout(device, shape.svdpp);
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("sgd"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            // The passes bind more than a window, so their layouts come from the shader.
            let pipeline = |entry: &'static str, layout: Option<&wgpu::PipelineLayout>| {
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
            };
            let svdpp = if shape.svdpp { SVDPP_PASSES.iter().map(|&entry| (entry, pipeline(entry, None))).collect() } else { Vec::new() };
            Pipelines {
                update: pipeline(shape.update_entry(), Some(&pipeline_layout)),
                evaluate: pipeline("evaluate", Some(&pipeline_layout)),
                finish_evaluate: pipeline("finish_evaluate", Some(&pipeline_layout)),
                layout,
                svdpp,
            }
        })
    }
}

/// The bindings of a window (a block's ratings and rows, the uniform, the sums), and with the
/// SVD++ term the priors and shares beside the user block.
fn window_layout(device: &wgpu::Device, svdpp: bool) -> wgpu::BindGroupLayout {
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let uniform = wgpu::BindGroupLayoutEntry {
        binding: 5,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let mut entries = vec![storage(0, true), storage(1, false), storage(2, false), storage(3, false), storage(4, false), uniform, storage(6, false), storage(7, true), storage(8, true)];
    if svdpp {
        entries.extend([storage(9, false), storage(10, false)]);
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("sgd window"), entries: &entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's uniform in WGSL (generated from ParamsUniform::FIELDS) has the Rust
    /// struct's layout: every field at the same offset, and the same size.
    #[test]
    fn the_kernels_uniform_has_the_rust_structs_layout() {
        let source = KernelShape::new(32, Precision::F32, true, 32, None).unwrap().source();
        let (fields, span) = crate::gpu::wgsl_struct_layout(&source, "Params");
        let wgsl: Vec<(&str, usize)> = fields.iter().map(|(name, offset)| (name.as_str(), *offset)).collect();
        let rust: Vec<(&str, usize)> = vec![
            ("learning_rate", std::mem::offset_of!(ParamsUniform, learning_rate)),
            ("reg", std::mem::offset_of!(ParamsUniform, reg)),
            ("reg_bias", std::mem::offset_of!(ParamsUniform, reg_bias)),
            ("mean", std::mem::offset_of!(ParamsUniform, mean)),
            ("use_biases", std::mem::offset_of!(ParamsUniform, use_biases)),
            ("clip_low", std::mem::offset_of!(ParamsUniform, clip_low)),
            ("clip_high", std::mem::offset_of!(ParamsUniform, clip_high)),
            ("max_groups", std::mem::offset_of!(ParamsUniform, max_groups)),
            ("error_scale", std::mem::offset_of!(ParamsUniform, error_scale)),
            ("unit", std::mem::offset_of!(ParamsUniform, unit)),
            ("l1", std::mem::offset_of!(ParamsUniform, l1)),
            ("label_middle", std::mem::offset_of!(ParamsUniform, label_middle)),
            ("share_weight", std::mem::offset_of!(ParamsUniform, share_weight)),
        ];
        assert_eq!(wgsl, rust, "each field at the same offset, in the same order");
        assert_eq!(span, std::mem::size_of::<ParamsUniform>(), "the same size");
        assert_eq!(ParamsUniform::FIELDS.len(), rust.len(), "this test names every field");
    }
}
