//! The KV cache: per layer, keys and values of every position so far, as f32 rows on the GPU.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Keys and values for `capacity` positions, per layer.
pub struct KvCache {
    /// Per layer: [capacity, n_kv_heads * head_dim] f32 keys (after RoPE).
    pub k: Vec<wgpu::Buffer>,
    /// Per layer: [capacity, n_kv_heads * head_dim] f32 values.
    pub v: Vec<wgpu::Buffer>,
    /// Positions the buffers hold.
    pub capacity: usize,
    /// Positions filled so far.
    pub len: usize,
    /// The cache's copy in textures where the decode graph reads them (Gpu::mirrors_kv).
    pub mirror: Option<KvMirror>,
}

impl KvCache {
    /// Bytes the cache takes for `positions` positions of `cfg`.
    pub fn bytes_for(cfg: &Config, positions: usize) -> u64 {
        2 * cfg.n_layers as u64 * positions as u64 * cfg.kv_dim() as u64 * 4
    }

    /// The positions a context may have when one layer's keys must fit one binding of `limit` bytes.
    pub fn max_positions(cfg: &Config, limit: u64) -> usize {
        (limit / (cfg.kv_dim() as u64 * 4)) as usize
    }

    /// Checks that `capacity` positions fit bindings of `limit` bytes, naming the numbers and a
    /// context that would fit when they do not.
    pub fn check(cfg: &Config, capacity: usize, limit: u64) -> Result<()> {
        let per_layer_bytes = capacity as u64 * cfg.kv_dim() as u64 * 4;
        if per_layer_bytes > limit {
            return Err(Error::ContextTooLarge { requested: capacity, per_layer_bytes, limit, fits: Self::max_positions(cfg, limit) });
        }
        Ok(())
    }

    pub fn new(gpu: &Gpu, cfg: &Config, capacity: usize) -> Result<KvCache> {
        Self::check(cfg, capacity, gpu.max_binding())?;
        let layer_bytes = capacity as u64 * cfg.kv_dim() as u64 * 4;
        let k = (0..cfg.n_layers).map(|l| gpu.storage(&format!("k_cache.{l}"), layer_bytes)).collect();
        let v = (0..cfg.n_layers).map(|l| gpu.storage(&format!("v_cache.{l}"), layer_bytes)).collect();
        let lanes = crate::kernels::runs_attention_lanes(gpu, cfg.n_heads as u32, cfg.n_kv_heads as u32, cfg.head_dim as u32);
        let mirror = if gpu.mirrors_kv() && lanes { KvMirror::new(gpu, cfg.n_layers, cfg.kv_dim(), capacity) } else { None };
        Ok(KvCache { k, v, capacity, len: 0, mirror })
    }

    /// Forgets positions from `len` on (they are overwritten by the next tokens).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        if let Some(m) = &mut self.mirror {
            m.len = m.len.min(len);
        }
    }

    /// Records into `enc` the copies that bring the mirror up to every position filled so far.
    pub fn sync_mirror(&mut self, enc: &mut wgpu::CommandEncoder) {
        if let Some(m) = &mut self.mirror {
            m.copy_rows(enc, &self.k, &self.v, m.len, self.len);
            m.len = self.len;
        }
    }
}

/// A copy of the KV cache in textures (Rgba32Float, [capacity, kv_dim / 4] texels per layer) that
/// the decode graph's attention reads on lavapipe, where a texel load is a gather of the SIMD lanes
/// and a storage load a loop over them (attention_kv_texture.wgsl). The buffers stay the cache every
/// kernel writes; before a decode step the host copies the rows written since the last one
/// (`KvCache::sync_mirror`: one copy per layer and K/V). Doubles the cache's memory there.
pub struct KvMirror {
    k: Vec<wgpu::Texture>,
    v: Vec<wgpu::Texture>,
    k_views: Vec<wgpu::TextureView>,
    v_views: Vec<wgpu::TextureView>,
    row_bytes: u32,
    /// Positions copied so far.
    pub len: usize,
}

impl KvMirror {
    /// Textures for `n_layers` of `capacity` rows of `kv_dim` values, or None where they cannot be:
    /// rows not a multiple of 256 bytes (a buffer-to-texture copy's row pitch) or taller than the
    /// device's textures.
    pub fn new(gpu: &Gpu, n_layers: usize, kv_dim: usize, capacity: usize) -> Option<KvMirror> {
        let row_bytes = 4 * kv_dim as u32;
        let max = gpu.limits.max_texture_dimension_2d as usize;
        if row_bytes % wgpu::COPY_BYTES_PER_ROW_ALIGNMENT != 0 || kv_dim / 4 > max || capacity > max || capacity == 0 {
            return None;
        }
        let texture = |label: String| {
            gpu.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(&label),
                size: wgpu::Extent3d { width: kv_dim as u32 / 4, height: capacity as u32, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        };
        let k: Vec<wgpu::Texture> = (0..n_layers).map(|l| texture(format!("k_mirror.{l}"))).collect();
        let v: Vec<wgpu::Texture> = (0..n_layers).map(|l| texture(format!("v_mirror.{l}"))).collect();
        let view = |t: &wgpu::Texture| t.create_view(&Default::default());
        Some(KvMirror { k_views: k.iter().map(view).collect(), v_views: v.iter().map(view).collect(), k, v, row_bytes, len: 0 })
    }

    /// Layer l's keys and values.
    pub fn views(&self, l: usize) -> (&wgpu::TextureView, &wgpu::TextureView) {
        (&self.k_views[l], &self.v_views[l])
    }

    /// Records copies of positions `from .. to` of every layer from the cache buffers `k`, `v`.
    pub fn copy_rows(&self, enc: &mut wgpu::CommandEncoder, k: &[wgpu::Buffer], v: &[wgpu::Buffer], from: usize, to: usize) {
        if from >= to {
            return;
        }
        let rows = (to - from) as u32;
        let extent = wgpu::Extent3d { width: self.row_bytes / 16, height: rows, depth_or_array_layers: 1 };
        for (buffers, textures) in [(k, &self.k), (v, &self.v)] {
            for (buffer, texture) in buffers.iter().zip(textures) {
                let src = wgpu::TexelCopyBufferInfo {
                    buffer,
                    layout: wgpu::TexelCopyBufferLayout { offset: from as u64 * self.row_bytes as u64, bytes_per_row: Some(self.row_bytes), rows_per_image: Some(rows) },
                };
                let dst = wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d { x: 0, y: from as u32, z: 0 }, aspect: wgpu::TextureAspect::All };
                enc.copy_buffer_to_texture(src, dst, extent);
            }
        }
    }
}

/// Per-candidate continuations of the KV cache: when n candidates decode side by side after a shared
/// prompt, candidate r's positions from the prompt's end on live in row r of these buffers, and the
/// prompt's stay in the KV cache, stored once. Allocated on first use, grown when a longer or wider
/// request comes.
pub struct Branches {
    /// Per layer: [n, len, kv_dim] f32 keys and values (empty until first used).
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    /// Bound in their place while there are none (attention binds them in every graph).
    dummy_k: wgpu::Buffer,
    dummy_v: wgpu::Buffer,
    /// Candidates and positions per candidate the buffers hold.
    pub n: u32,
    pub len: u32,
}

impl Branches {
    pub fn new(gpu: &Gpu) -> Branches {
        Branches { k: vec![], v: vec![], dummy_k: gpu.storage("k_branch (none)", 16), dummy_v: gpu.storage("v_branch (none)", 16), n: 0, len: 0 }
    }

    pub fn k(&self, layer: usize) -> &wgpu::Buffer {
        self.k.get(layer).unwrap_or(&self.dummy_k)
    }

    pub fn v(&self, layer: usize) -> &wgpu::Buffer {
        self.v.get(layer).unwrap_or(&self.dummy_v)
    }

    /// Bytes for `n` candidates of `len` positions.
    pub fn bytes_for(cfg: &Config, n: u32, len: u32) -> u64 {
        2 * cfg.n_layers as u64 * n as u64 * len as u64 * cfg.kv_dim() as u64 * 4
    }

    /// Makes room for `n` candidates of `len` positions; true when the buffers were replaced (graphs
    /// that bind them must be recorded again).
    pub fn ensure(&mut self, gpu: &Gpu, cfg: &Config, n: u32, len: u32) -> Result<bool> {
        if n <= self.n && len <= self.len {
            return Ok(false);
        }
        let (n, len) = (n.max(self.n), len.max(self.len).next_multiple_of(64));
        let layer_bytes = Self::bytes_for(cfg, n, len) / 2 / cfg.n_layers as u64;
        if layer_bytes > gpu.max_binding() {
            return Err(Error::InvalidRequest(format!(
                "{n} candidates of {len} tokens need {layer_bytes} bytes of KV cache per layer, over the adapter's binding limit of {}; ask for fewer or shorter ones",
                gpu.max_binding()
            )));
        }
        self.k = (0..cfg.n_layers).map(|l| gpu.storage(&format!("k_branch.{l}"), layer_bytes)).collect();
        self.v = (0..cfg.n_layers).map(|l| gpu.storage(&format!("v_branch.{l}"), layer_bytes)).collect();
        gpu.take_error()?;
        (self.n, self.len) = (n, len);
        Ok(true)
    }
}
