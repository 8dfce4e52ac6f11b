//! The KV cache: per layer, keys and values of every position so far (a sliding-window layer's
//! last ones, in a ring), as rows on the GPU: f16 in the GPU family (two to a u32, pack2x16float's
//! order: element 2i in the low half), f32 in the CPU family (its kernels read f32 vectors).

use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::gpu::{Gpu, Layout};

/// Bytes one cached key or value element takes in `layout`: 2 (f16) in the GPU family, 4 (f32) in
/// the CPU family.
pub fn elem_bytes(layout: &Layout) -> u64 {
    if layout.is_cpu() {
        4
    } else {
        2
    }
}

/// Keys and values for `capacity` positions, per layer; a sliding-window layer (gemma2, gemma3) keeps
/// only its last `rows[l]` positions, in a ring (as llama.cpp's SWA cache: position j in row
/// j % rows[l]).
pub struct KvCache {
    /// Per layer: [rows[l], n_kv_heads * head_dim] keys (after RoPE), f16 or f32 (`elem_bytes`).
    pub k: Vec<wgpu::Buffer>,
    /// Per layer: [rows[l], n_kv_heads * head_dim] values, as the keys.
    pub v: Vec<wgpu::Buffer>,
    /// Per layer: rows its buffers hold: `capacity`, or a sliding-window layer's ring (`ring_rows`).
    pub rows: Vec<usize>,
    /// Per layer: the sliding window (0: none).
    windows: Vec<usize>,
    /// Positions the context holds.
    pub capacity: usize,
    /// Positions filled so far.
    pub len: usize,
    /// Positions written since the cache last started over: where a ring has overwritten earlier
    /// positions, a rewind (`truncate`) may have lost what it would keep.
    written: usize,
}

impl KvCache {
    /// Rows layer l's cache holds for a context of `capacity`: all of them, or in a sliding-window
    /// layer its window plus a prompt chunk's rows (the chunk's keys go into the ring while its first
    /// row still reads the window before it), when that is fewer.
    pub fn ring_rows(cfg: &Config, layout: &Layout, l: usize, capacity: usize) -> usize {
        match cfg.window(l) {
            0 => capacity,
            w => capacity.min(w + layout.batch_rows() as usize),
        }
    }

    /// Bytes the cache takes for `positions` positions of `cfg`, as `layout` stores it.
    pub fn bytes_for(cfg: &Config, layout: &Layout, positions: usize) -> u64 {
        let rows: u64 = (0..cfg.n_layers).map(|l| Self::ring_rows(cfg, layout, l, positions) as u64).sum();
        2 * rows * cfg.kv_dim() as u64 * elem_bytes(layout)
    }

    /// The positions a context may have when one layer's keys must fit one binding of `limit` bytes.
    pub fn max_positions(cfg: &Config, layout: &Layout, limit: u64) -> usize {
        (limit / (cfg.kv_dim() as u64 * elem_bytes(layout))) as usize
    }

    /// Checks that `capacity` positions fit bindings of `limit` bytes, naming the numbers and a
    /// context that would fit when they do not.
    pub fn check(cfg: &Config, layout: &Layout, capacity: usize, limit: u64) -> Result<()> {
        let rows = (0..cfg.n_layers).map(|l| Self::ring_rows(cfg, layout, l, capacity)).max().unwrap_or(0);
        let per_layer_bytes = rows as u64 * cfg.kv_dim() as u64 * elem_bytes(layout);
        if per_layer_bytes > limit {
            return Err(Error::ContextTooLarge {
                requested: capacity,
                per_layer_bytes,
                limit,
                fits: Self::max_positions(cfg, layout, limit),
            });
        }
        Ok(())
    }

    pub fn new(gpu: &Gpu, layout: &Layout, cfg: &Config, capacity: usize) -> Result<KvCache> {
        Self::check(cfg, layout, capacity, gpu.max_binding())?;
        let rows: Vec<usize> = (0..cfg.n_layers).map(|l| Self::ring_rows(cfg, layout, l, capacity)).collect();
        let bytes = |l: usize| rows[l] as u64 * cfg.kv_dim() as u64 * elem_bytes(layout);
        let k = (0..cfg.n_layers).map(|l| gpu.storage(&format!("k_cache.{l}"), bytes(l))).collect();
        let v = (0..cfg.n_layers).map(|l| gpu.storage(&format!("v_cache.{l}"), bytes(l))).collect();
        let windows = (0..cfg.n_layers).map(|l| cfg.window(l)).collect();
        Ok(KvCache { k, v, rows, windows, capacity, len: 0, written: 0 })
    }

    /// Layer l's ring size for attention's parameters (AttentionParams::slots): its rows where they
    /// are fewer than the context's positions, else 0 (position j in row j).
    pub fn slots(&self, l: usize) -> u32 {
        if self.rows[l] < self.capacity {
            self.rows[l] as u32
        } else {
            0
        }
    }

    /// Notes positions up to `end` written without being kept (profiling runs a step or a chunk
    /// at the next positions and leaves len as it was).
    pub fn wrote(&mut self, end: usize) {
        self.written = self.written.max(end);
    }

    /// Forgets positions from `len` on (they are overwritten by the next tokens) and returns the
    /// positions kept: `len`, or 0 where a sliding-window layer's ring no longer holds the window
    /// before `len` (a rewind further back than a prompt chunk's rows past the newest position:
    /// the context must then be run again from its start, as llama.cpp does with its SWA cache).
    pub fn truncate(&mut self, len: usize) -> usize {
        self.written = self.written.max(self.len);
        let len = self.len.min(len);
        // A position p is intact while nothing written since the cache started over took its
        // row: no position p + rows was written.
        let intact = self
            .rows
            .iter()
            .zip(&self.windows)
            .all(|(&rows, &w)| rows >= self.capacity || (len + 1).saturating_sub(w) + rows >= self.written);
        self.len = if intact { len } else { 0 };
        if self.len == 0 {
            self.written = 0;
        }
        self.len
    }
}

/// Per-candidate continuations of the KV cache: when n candidates decode side by side after a shared
/// prompt, candidate r's positions from the prompt's end on live in row r of these buffers, and the
/// prompt's stay in the KV cache, stored once. Allocated on first use, grown when a longer or wider
/// request comes.
pub struct Branches {
    /// Per layer: [n, len, kv_dim] keys and values in the KV cache's format (empty until first used).
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    /// Bound in their place while there are none (attention binds them in every graph).
    dummy_k: wgpu::Buffer,
    dummy_v: wgpu::Buffer,
    /// Candidates and positions per candidate the buffers hold.
    pub n: u32,
    pub len: u32,
    /// Bytes per element (`elem_bytes` of the layout).
    elem: u64,
}

impl Branches {
    pub fn new(gpu: &Gpu, layout: &Layout) -> Branches {
        Branches {
            elem: elem_bytes(layout),
            k: vec![],
            v: vec![],
            dummy_k: gpu.storage("k_branch (none)", 16),
            dummy_v: gpu.storage("v_branch (none)", 16),
            n: 0,
            len: 0,
        }
    }

    pub fn k(&self, layer: usize) -> &wgpu::Buffer {
        self.k.get(layer).unwrap_or(&self.dummy_k)
    }

    pub fn v(&self, layer: usize) -> &wgpu::Buffer {
        self.v.get(layer).unwrap_or(&self.dummy_v)
    }

    /// Bytes for `n` candidates of `len` positions.
    pub fn bytes_for(&self, cfg: &Config, n: u32, len: u32) -> u64 {
        2 * cfg.n_layers as u64 * n as u64 * len as u64 * cfg.kv_dim() as u64 * self.elem
    }

    /// Makes room for `n` candidates of `len` positions; true when the buffers were replaced (graphs
    /// that bind them must be recorded again).
    pub async fn ensure(&mut self, gpu: &Gpu, cfg: &Config, n: u32, len: u32) -> Result<bool> {
        if n <= self.n && len <= self.len {
            return Ok(false);
        }
        let (n, len) = (n.max(self.n), len.max(self.len).next_multiple_of(64));
        let layer_bytes = self.bytes_for(cfg, n, len) / 2 / cfg.n_layers as u64;
        if layer_bytes > gpu.max_binding() {
            return Err(Error::InvalidRequest(format!(
                "{n} candidates of {len} tokens need {layer_bytes} bytes of KV cache per layer, over the adapter's binding limit of {}; ask for fewer or shorter ones",
                gpu.max_binding()
            )));
        }
        // Awaited: in a browser an allocation that fails says so later, and buffers kept as made
        // would fail every later request of this size.
        let layers = |name: &str| -> Vec<wgpu::Buffer> {
            (0..cfg.n_layers).map(|l| gpu.storage(&format!("{name}.{l}"), layer_bytes)).collect()
        };
        let (k, v) = gpu.checked(|| (layers("k_branch"), layers("v_branch"))).await.map_err(|e| match e {
            Error::OutOfMemory(m) => Error::OutOfMemory(format!(
                "{m} ({n} candidates of {len} positions need {:.1} MB of KV cache; ask for fewer or shorter ones)",
                self.bytes_for(cfg, n, len) as f64 / 1e6
            )),
            e => e,
        })?;
        (self.k, self.v, self.n, self.len) = (k, v, n, len);
        Ok(true)
    }
}
