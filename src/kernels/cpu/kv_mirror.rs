//! KvMirror: a copy of the KV cache in textures for the CPU family's decode attention.

use crate::gpu::Gpu;

/// A copy of the KV cache in textures (Rgba32Float, [capacity, kv_dim / 4] texels per layer) that
/// the decode graph's attention reads on lavapipe, where a texel load is a gather of the SIMD lanes
/// and a storage load a loop over them (attention_kv_texture.wgsl). The buffers stay the cache every
/// kernel writes; before a decode step the host copies the rows written since the last one
/// (`KvMirror::sync`: one copy per layer and K/V; a truncated cache rewinds it with `truncate`). Doubles the cache's memory there.
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
        if !row_bytes.is_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            || kv_dim / 4 > max
            || capacity > max
            || capacity == 0
        {
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
        Some(KvMirror {
            k_views: k.iter().map(view).collect(),
            v_views: v.iter().map(view).collect(),
            k,
            v,
            row_bytes,
            len: 0,
        })
    }

    /// Layer l's keys and values.
    pub fn views(&self, l: usize) -> (&wgpu::TextureView, &wgpu::TextureView) {
        (&self.k_views[l], &self.v_views[l])
    }

    /// Records copies of positions `from .. to` of every layer from the cache buffers `k`, `v`.
    pub fn copy_rows(
        &self,
        enc: &mut wgpu::CommandEncoder,
        k: &[wgpu::Buffer],
        v: &[wgpu::Buffer],
        from: usize,
        to: usize,
    ) {
        if from >= to {
            return;
        }
        let rows = (to - from) as u32;
        let extent = wgpu::Extent3d { width: self.row_bytes / 16, height: rows, depth_or_array_layers: 1 };
        for (buffers, textures) in [(k, &self.k), (v, &self.v)] {
            for (buffer, texture) in buffers.iter().zip(textures) {
                let src = wgpu::TexelCopyBufferInfo {
                    buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: from as u64 * self.row_bytes as u64,
                        bytes_per_row: Some(self.row_bytes),
                        rows_per_image: Some(rows),
                    },
                };
                let dst = wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: from as u32, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                };
                enc.copy_buffer_to_texture(src, dst, extent);
            }
        }
    }

    /// Records into `enc` the copies that bring the mirror up to the cache's first `len` positions
    /// (`k`, `v`: the cache's buffers per layer).
    pub fn sync(&mut self, enc: &mut wgpu::CommandEncoder, k: &[wgpu::Buffer], v: &[wgpu::Buffer], len: usize) {
        self.copy_rows(enc, k, v, self.len, len);
        self.len = len;
    }

    /// Forgets positions from `len` on (the cache was truncated there).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
