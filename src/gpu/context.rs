//! Finding an adapter and opening a device with the features the kernels can use.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// What `gpumf info` shows of one adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    /// Storage buffers the host may map for writing: streamed ratings without a copy
    /// (`--upload mapped`).
    pub mappable_storage: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    /// Bytes of memory the adapter's driver says it has for us (Vulkan, Metal, DX12).
    pub device_memory: Option<u64>,
}

impl AdapterSummary {
    /// A software rasteriser such as lavapipe: correct, but slower than the native CPU trainer.
    pub fn is_software(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

/// Mesa's Vulkan drivers (through libwayland) print "error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment." whenever it is unset, as in root shells, containers and CI, though
/// nothing failed. Where it is unset or not an absolute directory, point it at a private
/// directory of gpumf's own. Called before the first wgpu instance; the binary also calls it
/// first thing, before any thread exists, since changing the environment races with threads
/// that read it.
pub fn quiet_headless_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt};
            let usable = std::env::var_os("XDG_RUNTIME_DIR")
                .map(std::path::PathBuf::from)
                .is_some_and(|d| d.is_absolute() && d.is_dir());
            if usable {
                return;
            }
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            let dir = std::env::temp_dir().join(format!("gpumf-runtime-{uid}"));
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            // Only a directory of this user's, closed to others, stands in for the real one.
            let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
            if ours {
                std::env::set_var("XDG_RUNTIME_DIR", &dir);
            }
        }
    });
}

fn instance() -> wgpu::Instance {
    quiet_headless_drivers();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc)
}

fn summarise(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let features = adapter.features();
    let limits = adapter.limits();
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver,
        driver_info: info.driver_info,
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        mappable_storage: features.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        device_memory: device_memory(adapter),
    }
}

/// How much memory the adapter's driver has for us, asked of the backend's own API, as wgpu
/// itself does not tell: Vulkan's largest device-local heap, Metal's recommended working set
/// (on unified memory, the share of RAM the GPU should use), DX12's local video-memory budget
/// (what the OS grants this process now). `None` where the backend does not say.
fn device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    vulkan_device_memory(adapter).or_else(|| metal_device_memory(adapter)).or_else(|| dx12_device_memory(adapter)).filter(|&bytes| bytes > 0)
}

#[cfg(any(target_os = "linux", target_os = "windows", target_os = "android", target_os = "freebsd"))]
fn vulkan_device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only read (one query of memory properties) while `adapter`
    // keeps it alive; nothing is created or destroyed through it.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: the physical device belongs to this instance, as wgpu-hal opened both.
    let properties = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    const DEVICE_LOCAL: u32 = 0x1; // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
    properties.memory_heaps[..properties.memory_heap_count as usize].iter().filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0).map(|h| h.size).max()
}

#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "android", target_os = "freebsd")))]
fn vulkan_device_memory(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

#[cfg(target_vendor = "apple")]
fn metal_device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    use objc2_metal::MTLDevice;
    // SAFETY: as for Vulkan: one read of a property of the device `adapter` keeps alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Metal>() }?;
    Some(hal.raw_device().recommendedMaxWorkingSetSize())
}

#[cfg(not(target_vendor = "apple"))]
fn metal_device_memory(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

#[cfg(windows)]
fn dx12_device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    use windows::Win32::Graphics::Dxgi::{DXGI_MEMORY_SEGMENT_GROUP_LOCAL, DXGI_QUERY_VIDEO_MEMORY_INFO};
    // SAFETY: as for Vulkan: one query of the DXGI adapter `adapter` keeps alive, into a
    // structure on our stack.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Dx12>() }?;
    let mut info = DXGI_QUERY_VIDEO_MEMORY_INFO::default();
    unsafe { hal.as_raw().QueryVideoMemoryInfo(0, DXGI_MEMORY_SEGMENT_GROUP_LOCAL, &mut info) }.ok()?;
    Some(info.Budget)
}

#[cfg(not(windows))]
fn dx12_device_memory(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

/// Every adapter wgpu can see on Vulkan, Metal and DX12.
pub fn list_adapters() -> Vec<AdapterSummary> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::PRIMARY)).iter().map(summarise).collect()
}

/// An open device and what it allows.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// Whether kernels run one rating per subgroup (else per workgroup).
    pub subgroups: bool,
    pub shader_f16: bool,
    /// Whether the device was opened with timestamp queries, to time kernels on its own clock.
    pub timestamps: bool,
    /// Whether storage buffers may also be mapped for writing (streamed ratings, [`super::Upload::Mapped`]).
    pub mappable: bool,
    /// Errors the device reported outside an error scope, surfaced at the next check.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Gpu {
    /// Opens the preferred adapter (a discrete GPU before an integrated or CPU one).
    /// `GPUMF_ADAPTER` picks one by a part of its name instead.
    pub fn open(want_f16: bool, allow_subgroups: bool) -> Result<Gpu> {
        Gpu::open_at(None, want_f16, allow_subgroups)
    }

    /// Opens adapter `index` of [`list_adapters`]' list (`--devices`), or the preferred one.
    /// Opening one adapter twice gives two devices (how tests stand in for two GPUs).
    pub fn open_at(index: Option<usize>, want_f16: bool, allow_subgroups: bool) -> Result<Gpu> {
        let instance = instance();
        let adapter = choose_adapter(&instance, index)?;
        let summary = summarise(&adapter);
        if want_f16 && !summary.shader_f16 {
            return Err(Error::Gpu(format!(
                "--precision f16 needs the shader-f16 feature, which {} ({}) lacks; use --precision f32",
                summary.name, summary.backend
            )));
        }
        let subgroups = allow_subgroups && summary.subgroups;
        let mut features = wgpu::Features::empty();
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if want_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Buffers the host maps for writing and the kernels read: streamed ratings without a copy.
        let mappable = summary.mappable_storage;
        if mappable {
            features |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        let timestamps = summary.timestamp_query;
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpumf"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("could not open {}: {e}", summary.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        Ok(Gpu { device, queue, adapter: summary, limits, subgroups, shader_f16: want_f16, timestamps, mappable, errors })
    }

    /// Fails with the first error the device reported since the last check.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let first = errors.drain(..).next();
        match first {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Waits for all submitted work.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))?;
        self.check()
    }

    /// Maps the first `size` bytes of `buffer` (a MAP_READ buffer) and copies them out, waiting
    /// for submission `until` only (for all submitted work when `None`), so later submissions
    /// keep the device busy meanwhile.
    pub fn read_mapped(&self, buffer: &wgpu::Buffer, size: u64, until: Option<wgpu::SubmissionIndex>) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait { submission_index: until, timeout: None })
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))?;
        self.check()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back was never answered".into()))?
            .map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?;
        let bytes = buffer.get_mapped_range(0..size).map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?.to_vec();
        buffer.unmap();
        Ok(bytes)
    }

    /// Copies `size` bytes of `source` (a COPY_SRC buffer) from `offset` back to the host,
    /// after all work.
    pub fn read_back(&self, source: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.scoped("allocating a read-back buffer", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("staging"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, offset, &staging, 0, size);
        let index = self.queue.submit([encoder.finish()]);
        self.read_mapped(&staging, size, Some(index))
    }

    /// Runs `f`, turning an out-of-memory or validation error it causes into an error.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o {
            return Err(Error::Gpu(format!("out of GPU memory while {what}: {e}")));
        }
        if let Some(e) = v {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        Ok(value)
    }
}

/// Adapter `index` of [`list_adapters`]' list, else the one `GPUMF_ADAPTER` names, else the
/// preferred (high-performance) one.
fn choose_adapter(instance: &wgpu::Instance, index: Option<usize>) -> Result<wgpu::Adapter> {
    let all = || pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    if let Some(i) = index {
        let mut all = all();
        if i >= all.len() {
            let there = match all.len() {
                0 => "is no adapter".to_string(),
                1 => "is 1 adapter".to_string(),
                n => format!("are {n} adapters"),
            };
            return Err(Error::Gpu(format!("--devices {i}: there {there} (see `gpumf info`, numbered from 0)")));
        }
        return Ok(all.swap_remove(i));
    }
    match std::env::var("GPUMF_ADAPTER") {
        Ok(name) if !name.is_empty() => {
            let found = all().into_iter().find(|a| a.get_info().name.to_lowercase().contains(&name.to_lowercase()));
            found.ok_or_else(|| Error::Gpu(format!("GPUMF_ADAPTER={name:?} matches no adapter (see `gpumf info`)")))
        }
        _ => {
            let preferred = wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
            pollster::block_on(instance.request_adapter(&preferred)).map_err(|_| Error::NoAdapter)
        }
    }
}
