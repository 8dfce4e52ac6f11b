//! Gpu: adapter, device and queue; the pipeline cache; buffer helpers; readback through map_async
//! that works natively and on the web. No policy: gpu/layout.rs chooses how the device is used.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The largest binding the model's buffers take (weight parts, KV cache layers): the kernels
/// address a binding's bytes in u32 and add offsets to them (a row's start, a block's, a word's),
/// which must not wrap, so 2 GiB - 1, wgpu's own limit on Vulkan and DX12 (Metal reports its
/// maxBufferLength, which can pass 4 GiB).
pub const MAX_BINDING_BYTES: u64 = i32::MAX as u64;

/// The GPU the model runs on.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The features the device was opened with (subgroups where the adapter has them).
    pub features: wgpu::Features,
    /// Pipelines by (WGSL source, entry point): built once.
    pipelines: Mutex<HashMap<(String, String), Arc<wgpu::ComputePipeline>>>,
    /// Errors the device reported outside any error scope, oldest first.
    errors: Arc<Mutex<Vec<String>>>,
    /// Buffers created so far (all go through `buffer`): flat across requests once a model is
    /// loaded, which the soak tests check.
    buffers_created: std::sync::atomic::AtomicU64,
    /// Bytes of all buffers created so far.
    bytes_allocated: std::sync::atomic::AtomicU64,
    /// Bytes written through `write` since the last flush of the queue's writes (native).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    unflushed: std::sync::atomic::AtomicU64,
}

/// Bytes of queued writes after which `write` submits them (natively each write holds a staging
/// copy until a submit: a model's upload would otherwise hold a second copy of its weights).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const FLUSH_WRITES_BYTES: u64 = 64 << 20;

impl Gpu {
    /// Opens the best adapter (a discrete GPU over an integrated one over a software one).
    pub async fn new() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter).await
    }

    /// Opens a device on `adapter` with the adapter's own limits (the largest buffers it allows).
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroups and shader-f16 where the adapter has them (the Layout decides whether kernels
        // use them); natively, timestamp queries inside passes too (the profile's clock:
        // model/profile.rs).
        let wanted = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
        #[cfg(not(target_arch = "wasm32"))]
        let wanted = wanted | Self::TIMESTAMPS;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webllama"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        let features = features | web_subgroups(&device);
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lost.lock().unwrap_or_else(|p| p.into_inner()).push(format!("device lost ({reason:?}): {msg}"));
        });
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: Mutex::new(HashMap::new()),
            errors,
            buffers_created: Default::default(),
            bytes_allocated: Default::default(),
            unflushed: Default::default(),
        })
    }

    /// A one-line description of the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// The first error the device reported since the last call, as an Error.
    pub fn take_error(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        // The lost callback's record, or wgpu's own word for work on a device lost before the
        // callback ran (natively it runs at the next poll; a driver reset comes unannounced).
        let lost_record = msg.split("; ").find(|m| m.starts_with("device lost")).map(str::to_string);
        let lost_word = msg.contains("Parent device is lost").then(|| format!("device lost: {msg}"));
        if let Some(lost) = lost_record.or(lost_word) {
            // Kept: every later call on this device fails the same way.
            errs.push(lost.clone());
            return Err(Error::DeviceLost(lost));
        }
        if msg.to_ascii_lowercase().contains("out of memory") {
            return Err(Error::OutOfMemory(msg));
        }
        Err(Error::Gpu(msg))
    }

    /// Runs `make` (buffer creations, pipelines) and waits for the device's verdict on it: in a
    /// browser an allocation or a pipeline that fails is reported later, as an event, so
    /// take_error right after the calls sees nothing and the buffers would be used as if made.
    /// Out of memory, validation and internal errors are caught in error scopes around `make`.
    pub async fn checked<T>(&self, make: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let made = make();
        // Popped innermost first; each pop takes effect at once, its verdict comes later.
        let (internal, invalid, oom) = (internal.pop(), invalid.pop(), oom.pop());
        let (internal, invalid, oom) = (internal.await, invalid.await, oom.await);
        // A device lost meanwhile names the cause better than what failed because of it.
        self.take_error()?;
        if let Some(e) = oom {
            return Err(Error::OutOfMemory(e.to_string()));
        }
        if let Some(e) = invalid.or(internal) {
            return Err(Error::Gpu(e.to_string()));
        }
        Ok(made)
    }

    /// Destroys the device, as a driver reset or a GPU unplugged would lose it (for tests of
    /// device loss): every later call fails with Error::DeviceLost.
    pub fn lose_device(&self) {
        // Recorded at once: on the web the device's lost callback comes later, after the work in
        // flight has failed in less telling ways.
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push("device lost (Destroyed): destroyed".into());
        self.device.destroy();
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Largest byte size one storage binding may have on this device, at most MAX_BINDING_BYTES.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size).min(MAX_BINDING_BYTES)
    }

    /// Timestamp queries around each dispatch of a compute pass.
    pub const TIMESTAMPS: wgpu::Features =
        wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

    /// Whether the device has timestamp queries inside compute passes enabled (native only).
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(Self::TIMESTAMPS)
    }

    /// Whether the device has subgroup operations enabled.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Whether the device has shader-f16 enabled (f16 values in WGSL, `enable f16;`).
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// The pipeline of `entry` in the WGSL `source` (gpu/compose.rs puts sources together), named
    /// `name` in labels and errors. Built once, then cached.
    pub fn compile(&self, name: &str, source: &str, entry: &str) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (source.to_string(), entry.to_string());
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        self.take_error()?;
        let desc = wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) };
        // wgpu's default for WGSL it cannot trust puts a counter into every loop (naga's loop
        // bounding), which can keep drivers from unrolling the kernels' fixed-count loops. Ours
        // drop it; bounds checks stay. (The browser's compiler keeps its own checks on the web.)
        let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
        // SAFETY: wgpu asks that no shader loop runs forever. Every loop in shaders/ counts up to a
        // bound set by shapes the host checked (rows, columns, positions, vocabulary), walks a
        // power-of-two ladder, or clears a bit of a mask word each turn.
        let module = unsafe { self.device.create_shader_module_trusted(desc, checks) };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Err(e) = self.take_error() {
            return Err(Error::Shader { name: name.to_string(), msg: e.to_string() });
        }
        let p = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, p.clone());
        Ok(p)
    }

    /// Every buffer webllama makes, counted.
    pub fn buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.bytes_allocated.fetch_add(desc.size, std::sync::atomic::Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Bytes of every buffer created since the device was opened (freed ones included).
    pub fn bytes_allocated(&self) -> u64 {
        self.bytes_allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Buffers created since the device was opened.
    pub fn buffers_created(&self) -> u64 {
        self.buffers_created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A zeroed storage buffer of at least `size` bytes (rounded up to 4, at least 4).
    pub fn storage(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `bytes` (zero-padded to a multiple of 4).
    pub fn storage_with(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let buf = self.storage(label, bytes.len() as u64);
        self.write(&buf, 0, bytes);
        buf
    }

    /// Writes `bytes` at `offset` (a multiple of 4), zero-padding the tail to a multiple of 4.
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buf, offset, &padded);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::sync::atomic::Ordering::Relaxed;
            if self.unflushed.fetch_add(bytes.len() as u64, Relaxed) + bytes.len() as u64 >= FLUSH_WRITES_BYTES {
                self.unflushed.store(0, Relaxed);
                self.queue.submit([]);
                let _ = self.device.poll(wgpu::PollType::Poll);
            }
        }
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let buf = self.buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: std::mem::size_of::<T>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytemuck::bytes_of(value));
        buf
    }

    /// A buffer the CPU can map to read `size` bytes copied into it.
    pub fn readback_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.div_ceil(4) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Maps `staging` (already filled by a submitted copy), returns its first `size` bytes, unmaps.
    pub async fn map_read(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        self.map_read_after(staging, size, None).await
    }

    /// map_read waiting (natively) only for `submission`, the submit that filled `staging`, where
    /// given, and not for work queued after it; else for all queued work.
    pub async fn map_read_after(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        let slot: Arc<Mutex<OneShot>> = Arc::default();
        let s = slot.clone();
        staging.slice(..size.div_ceil(4) * 4).map_async(wgpu::MapMode::Read, move |r| {
            let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
            st.result = Some(r.map_err(|e| e.to_string()));
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        });
        // A wait that fails because the work was never submitted says why in the errors first (a
        // device lost unannounced, a driver reset: a poll runs its lost callback).
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::Wait { submission_index: submission, timeout: None }) {
            // The map still pending is cancelled: the buffer is reused by later requests.
            staging.unmap();
            let _ = self.device.poll(wgpu::PollType::Poll);
            self.take_error()?;
            return Err(Error::Gpu(format!("waiting for the GPU: {e}")));
        }
        #[cfg(target_arch = "wasm32")]
        let _ = submission;
        // Copied and unmapped whatever else failed: a readback buffer left mapped fails every
        // later copy into it, and so every later request.
        let bytes = MapFuture(slot).await.map(|()| {
            let bytes = staging.slice(..size).get_mapped_range().map(|range| range.to_vec());
            staging.unmap();
            bytes
        });
        // A loss or an error of the work read back names the cause better than the map's error.
        self.take_error()?;
        bytes
            .map_err(|e| Error::Gpu(format!("reading back: {e}")))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))
    }

    /// Copies `size` bytes of `buf` from `offset` back to the CPU (waits for queued work).
    pub async fn read(&self, buf: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.readback_buffer("readback", size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, offset, &staging, 0, size.div_ceil(4) * 4);
        self.queue.submit([enc.finish()]);
        self.map_read(&staging, size).await
    }

    /// `read` for f32 data.
    pub async fn read_f32(&self, buf: &wgpu::Buffer, offset_elems: u64, n: u64) -> Result<Vec<f32>> {
        let bytes = self.read(buf, offset_elems * 4, n * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

#[derive(Default)]
struct OneShot {
    result: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

/// Resolves when map_async's callback has run.
struct MapFuture(Arc<Mutex<OneShot>>);

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Subgroups on a device of the browser's WebGPU. wgpu 30 does not map the feature there
/// (gfx-rs/wgpu#10146): www/worker.js asks for it on the device request, and the device's own
/// feature list says whether the browser granted it. wgpu passes WGSL to the browser unchanged, so
/// shaders with `enable subgroups;` (gpu/compose.rs) compile on such a device.
#[cfg(target_arch = "wasm32")]
fn web_subgroups(device: &wgpu::Device) -> wgpu::Features {
    match device.as_webgpu() {
        Some(d) if d.features().has("subgroups") => wgpu::Features::SUBGROUP,
        _ => wgpu::Features::empty(),
    }
}
