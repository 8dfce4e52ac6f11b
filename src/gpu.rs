//! Gpu: adapter, device and queue; the pipeline cache that composes WGSL sources; buffer helpers;
//! readback through map_async that works natively and on the web.

use crate::error::{Error, Result};
use crate::quant::QuantType;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Shared helpers included before every quantized kernel.
const COMMON_WGSL: &str = include_str!("../shaders/common.wgsl");

/// The GPU the model runs on.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<(String, Option<QuantType>, &'static str), Arc<wgpu::ComputePipeline>>>,
    /// matvec gives each thread a whole row (no workgroup barriers) on CPU adapters (lavapipe,
    /// SwiftShader), where barriers cost more than the parallelism gives; GPUs share a row among 16.
    pub matvec_rowwise: bool,
    /// The device has subgroups of at least 8 lanes, enabled: matvec_wide loads a block's 8
    /// activation vectors one per lane and broadcasts them (shaders/acts_subgroup.wgsl).
    pub subgroup_acts: bool,
    /// Weights of the types with a wide decoder live in textures on CPU adapters (kernels::Blocks):
    /// lavapipe fetches texels as gathers, storage words one lane at a time. WEBLLAMA_TEXTURES=0
    /// keeps them in buffers (to measure both).
    pub weight_textures: bool,
    /// matvec_wide and embed_wide read weight textures through a read-only storage binding rather
    /// than a sampled one: lavapipe's image loads skip its sampler's mip path (decode ~18% faster
    /// there), while SwiftShader's sampled loads are the faster (page decode 3.6 vs 2.9 tok/s), as
    /// are lavapipe's for matmul_wide (prefill ~5%). On for llvmpipe (lavapipe) only;
    /// WEBLLAMA_TEXTURE_LOADS=storage or =sampled overrides.
    pub texture_storage_loads: bool,
    /// Errors the device reported outside any error scope, oldest first.
    errors: Arc<Mutex<Vec<String>>>,
    /// Buffers created so far (all go through `buffer`): flat across requests once a model is
    /// loaded, which the soak tests check.
    buffers_created: std::sync::atomic::AtomicU64,
}

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
        // Subgroups where the adapter has them (WEBLLAMA_SUBGROUPS=0 leaves them off, to measure and
        // test the plain path on the same adapter).
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP) && std::env::var("WEBLLAMA_SUBGROUPS").map_or(true, |v| v != "0");
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webllama"),
                required_features: if subgroups { wgpu::Features::SUBGROUP } else { wgpu::Features::empty() },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest(e.to_string()))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lost.lock().unwrap_or_else(|p| p.into_inner()).push(format!("device lost ({reason:?}): {msg}"));
        });
        // WEBLLAMA_ROWWISE=0/1 overrides the choice (for measuring both layouts on one adapter).
        let matvec_rowwise = match std::env::var("WEBLLAMA_ROWWISE").as_deref() {
            Ok("0") => false,
            Ok("1") => true,
            _ => info.device_type == wgpu::DeviceType::Cpu,
        };
        // Kernels that share activations across a subgroup need at least 8 lanes in one.
        let subgroup_acts = subgroups && info.subgroup_min_size >= 8;
        let weight_textures = std::env::var("WEBLLAMA_TEXTURES").map_or(true, |v| v != "0");
        let texture_storage_loads = match std::env::var("WEBLLAMA_TEXTURE_LOADS").as_deref() {
            Ok("storage") => true,
            Ok("sampled") => false,
            _ => info.name.contains("llvmpipe"),
        };
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            matvec_rowwise,
            subgroup_acts,
            weight_textures,
            texture_storage_loads,
            errors,
            buffers_created: Default::default(),
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
        if let Some(lost) = msg.split("; ").find(|m| m.starts_with("device lost")) {
            // Kept: every later call on this device fails the same way.
            let lost = lost.to_string();
            errs.push(lost.clone());
            return Err(Error::DeviceLost(lost));
        }
        if msg.to_ascii_lowercase().contains("out of memory") {
            return Err(Error::OutOfMemory(msg));
        }
        Err(Error::Gpu(msg))
    }

    /// Destroys the device, as a driver reset or a GPU unplugged would lose it (for tests of
    /// device loss): every later call fails with Error::DeviceLost.
    pub fn lose_device(&self) {
        self.device.destroy();
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding(&self) -> u64 {
        (self.limits.max_storage_buffer_binding_size as u64).min(self.limits.max_buffer_size)
    }

    /// The pipeline for `kernel` (its WGSL source `src`), composed as common.wgsl + quant/<type>.wgsl +
    /// the kernel when `quant` is given, else the kernel alone. Built once, then cached.
    pub fn pipeline(&self, kernel: &str, src: &str, quant: Option<QuantType>) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_at(kernel, src, quant, "main")
    }

    /// `pipeline` for the entry point `entry` of the kernel's source.
    pub fn pipeline_at(&self, kernel: &str, src: &str, quant: Option<QuantType>, entry: &'static str) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (kernel.to_string(), quant, entry);
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let source = match quant {
            None => src.to_string(),
            Some(q) => {
                let qsrc = q.wgsl().ok_or_else(|| Error::UnsupportedType {
                    tensor: format!("({kernel} kernel)"),
                    type_name: q.name().to_string(),
                })?;
                format!("{COMMON_WGSL}\n{qsrc}\n{src}")
            }
        };
        // Browsers require `enable subgroups;` before subgroup built-ins; wgpu 30's naga (native)
        // rejects the directive. The one place that difference is handled.
        let uses_subgroups = ["subgroupBroadcast(", "subgroupAdd(", "subgroupExclusiveAdd(", "subgroupElect("].iter().any(|f| source.contains(f));
        let source = if cfg!(target_arch = "wasm32") && uses_subgroups { format!("enable subgroups;\n{source}") } else { source };
        let name = match quant {
            Some(q) => format!("{kernel}/{}", q.name()),
            None => kernel.to_string(),
        };
        self.take_error()?;
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Err(e) = self.take_error() {
            let dump = if std::env::var_os("WEBLLAMA_DUMP_WGSL").is_some() {
                format!("\n--- composed source ---\n{source}")
            } else {
                " (set WEBLLAMA_DUMP_WGSL=1 to print the composed source)".to_string()
            };
            return Err(Error::Shader { name, msg: format!("{e}{dump}") });
        }
        let p = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, p.clone());
        Ok(p)
    }

    /// Whether the KV cache gets a copy in textures for the decode graph's attention (kv_cache::KvMirror):
    /// where weight textures are read through storage bindings (lavapipe) and attention_lanes runs
    /// (a CPU adapter with 8-lane subgroups; kernels::runs_attention_lanes for the model's shape).
    /// WEBLLAMA_KV_MIRROR=0 leaves it off.
    pub fn mirrors_kv(&self) -> bool {
        self.texture_storage_loads && self.subgroup_acts && self.matvec_rowwise && std::env::var("WEBLLAMA_KV_MIRROR").map_or(true, |v| v != "0")
    }

    /// Every buffer webllama makes, counted.
    pub fn buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.device.create_buffer(desc)
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
        if bytes.len() % 4 == 0 {
            self.queue.write_buffer(buf, offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buf, offset, &padded);
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
        let slot: Arc<Mutex<OneShot>> = Arc::default();
        let s = slot.clone();
        staging.slice(..size.div_ceil(4) * 4).map_async(wgpu::MapMode::Read, move |r| {
            let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
            st.result = Some(r.map_err(|e| e.to_string()));
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        let r = MapFuture(slot).await;
        self.take_error()?;
        r.map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
        let bytes = staging
            .slice(..size)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
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
