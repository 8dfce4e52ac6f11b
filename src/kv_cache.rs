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
        Ok(KvCache { k, v, capacity, len: 0 })
    }

    /// Forgets positions from `len` on (they are overwritten by the next tokens).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
