//! What each kind of kernel costs in a decode step and in a prompt chunk (`webllama bench
//! --profile`; native only): GPU timestamps around each dispatch where the device has them
//! (Gpu::has_timestamps), else the step's time less its time without each kind.

use super::Model;
use crate::error::{Error, Result};
use crate::format::weights::is_experts;
use crate::gpu::Gpu;
use crate::kernels::{row_bytes, Bound, Dispatch};

/// Runs of each measurement; per dispatch the median is kept.
const RUNS: usize = 9;
/// Recordings timed for Profile::host_ms.
const HOST_RUNS: usize = 51;
/// Most queries one wgpu query set holds.
const MAX_QUERIES: usize = 4096;

/// How a profile was measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    /// GPU timestamps around each dispatch inside the pass; the gaps from the same dispatches
    /// with no workgroups.
    Timestamps,
    /// Wall-clock: the step's time less its time without each kind's dispatches (best of 20).
    Subtraction,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Timestamps => "timestamps",
            Method::Subtraction => "subtraction",
        }
    }

    /// One line saying how the times were taken.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Timestamps => {
                "GPU timestamps after each dispatch inside the pass, median of 9 per dispatch; a dispatch's \
                 time runs from the previous one's end to its own end; gap: the same dispatch with no \
                 workgroups (its barrier, pipeline and bindings), kernel = time - gap"
            }
            Method::Subtraction => {
                "no timestamp queries inside passes on this adapter: wall-clock, the step's time less its \
                 time without each kind (best of 20); no gaps"
            }
        }
    }
}

/// What one kind of kernel costs in a profiled graph.
pub struct KernelCost {
    pub name: &'static str,
    /// GPU time of its dispatches (timestamps: from the previous dispatch's end to their end;
    /// subtraction: what the step saves without them), ms.
    pub ms: f64,
    /// Of `ms`, the time the same dispatches take with no workgroups (timestamps only), ms.
    pub gap_ms: f64,
    pub dispatches: usize,
    /// Weight bytes its dispatches read (see `BYTES`).
    pub weight_bytes: u64,
    /// KV-cache bytes its dispatches read (see `BYTES`).
    pub kv_bytes: u64,
}

impl KernelCost {
    /// The kernels' own time: ms less the gaps (at least 1% of ms).
    pub fn kernel_ms(&self) -> f64 {
        (self.ms - self.gap_ms).max(0.01 * self.ms)
    }

    /// Weight and KV bytes over the kernels' own time, GB/s.
    pub fn gb_s(&self) -> f64 {
        (self.weight_bytes + self.kv_bytes) as f64 / self.kernel_ms() / 1e6
    }
}

/// How the byte counts are made.
pub const BYTES: &str = "bytes: weights = the blocks of each matrix a dispatch binds (rows x packed row \
    bytes; embed: the rows it looks up; stacked experts: the routed share); KV = the K and V \
    positions attention reads (once per dispatch); activations and outputs are not counted";

/// A profiled graph: each kind of kernel's cost and the whole's time (ms).
pub struct Profile {
    pub method: Method,
    pub kinds: Vec<KernelCost>,
    /// The graph's GPU time as it runs: the pass's own timestamps, no timestamps between
    /// dispatches (median); with subtraction, the wall-clock time of one submit (best of 20).
    pub whole_ms: f64,
    /// The wall-clock time of one submit and its wait (median), ms.
    pub wall_ms: f64,
    /// The host's time to record the graph into a command buffer and finish it, not submitted
    /// (median of HOST_RUNS), ms: what each step costs the CPU before the GPU can take it.
    pub host_ms: f64,
    /// Position of the graph's first row, and its rows.
    pub pos: usize,
    pub rows: usize,
}

impl Profile {
    /// The sum of the kinds' times (kernels and gaps), ms.
    pub fn sum_ms(&self) -> f64 {
        self.kinds.iter().map(|k| k.ms).sum()
    }

    /// The sum of the gaps, ms.
    pub fn gap_ms(&self) -> f64 {
        self.kinds.iter().map(|k| k.gap_ms).sum()
    }

    /// Weight and KV bytes of the whole graph.
    pub fn bytes(&self) -> u64 {
        self.kinds.iter().map(|k| k.weight_bytes + k.kv_bytes).sum()
    }

    pub fn dispatches(&self) -> usize {
        self.kinds.iter().map(|k| k.dispatches).sum()
    }
}

impl Model {
    /// What each kind of kernel costs in a decode step at the cache's next position (run at that
    /// same position each time; native only; for `webllama bench --profile`).
    pub fn profile_step(&mut self, token: u32) -> Result<Profile> {
        self.begin_step(token)?;
        // Written past kv.len: a ring cache's rows there no longer hold what they held.
        self.kv.wrote(self.kv.len + 1);
        let graph: Vec<&Dispatch> = self.decode_graph().iter().collect();
        self.profile(&graph, 1)
    }

    /// As profile_step, for one full prompt chunk (batch_rows tokens of `token` at the cache's
    /// next positions) through the batch graph's body (the logits' matmul runs once a prompt).
    pub fn profile_chunk(&mut self, token: u32) -> Result<Profile> {
        let chunk = vec![token; self.acts.rows as usize];
        self.check_prompt(&chunk)?;
        self.begin_chunk(&chunk);
        self.kv.wrote(self.kv.len + chunk.len());
        let graph: Vec<&Dispatch> = self.batch.body.iter().collect();
        self.profile(&graph, self.acts.rows)
    }

    fn profile(&self, graph: &[&Dispatch], rows: u32) -> Result<Profile> {
        let (pos, rows) = (self.kv.len, rows as usize);
        let (whole_ms, wall_ms, times, method) = if self.gpu.has_timestamps() && graph.len() < MAX_QUERIES {
            let t = Timestamps::new(&self.gpu, graph.len());
            let (mut whole, mut wall, mut full, mut empty) = (vec![], vec![], vec![], vec![]);
            for _ in 0..RUNS {
                full.push(t.run(graph, Run::Each)?.0);
                empty.push(t.run(graph, Run::Empty)?.0);
                let (w, s) = t.run(graph, Run::Pass)?;
                whole.push(w[0]);
                wall.push(s);
            }
            let per = |runs: &[Vec<f64>], i: usize| median(runs.iter().map(|r| r[i]).collect());
            let times: Vec<(f64, f64)> = (0..graph.len()).map(|i| (per(&full, i), per(&empty, i))).collect();
            (median(whole), median(wall), Some(times), Method::Timestamps)
        } else {
            let whole = best_of_20(&self.gpu, graph, None)?;
            (whole, whole, None, Method::Subtraction)
        };
        let mut names: Vec<&'static str> = vec![];
        for d in graph {
            if !names.contains(&d.name) {
                names.push(d.name);
            }
        }
        let mut kinds = vec![];
        for name in names {
            let of_kind = || graph.iter().enumerate().filter(|(_, d)| d.name == name);
            let (ms, gap_ms) = match &times {
                Some(t) => of_kind().fold((0.0, 0.0), |(a, b), (i, _)| (a + t[i].0, b + t[i].1)),
                None => (whole_ms - best_of_20(&self.gpu, graph, Some(name))?, 0.0),
            };
            let (mut weight_bytes, mut kv_bytes) = (0, 0);
            for (_, d) in of_kind() {
                let (w, kv) = self.bytes_read(d, rows, pos + rows);
                weight_bytes += w;
                kv_bytes += kv;
            }
            kinds.push(KernelCost { name, ms, gap_ms, dispatches: of_kind().count(), weight_bytes, kv_bytes });
        }
        let host_ms = median((0..HOST_RUNS).map(|_| host_time(&self.gpu, graph)).collect());
        Ok(Profile { method, kinds, whole_ms, wall_ms, host_ms, pos, rows })
    }

    /// (weight bytes, KV-cache bytes) that `d` reads for `rows` rows with `kv_len` positions in
    /// the cache (see BYTES).
    fn bytes_read(&self, d: &Dispatch, rows: usize, kv_len: usize) -> (u64, u64) {
        let (mut weight, mut kv) = (0, 0);
        for b in &d.bound {
            let layer = match b {
                Bound::Buffer(buf) => {
                    let find = |caches: &[wgpu::Buffer]| caches.iter().position(|c| c == buf);
                    find(&self.kv.k).or_else(|| find(&self.kv.v))
                }
                Bound::Texture(_) => None,
            };
            if let Some(l) = layer {
                // A sliding-window layer (Gemma) reads its window's positions alone.
                let read = self.cfg.positions_seen(l, kv_len).min(self.kv.rows[l]);
                kv += self.kv.k[l].size() / self.kv.rows[l] as u64 * read as u64;
                continue;
            }
            for (name, w) in &self.weights {
                for (stored, _, part_rows) in &w.parts {
                    let same = match (b, stored) {
                        (Bound::Buffer(a), super::Stored::Buffer(s)) => a == s,
                        (Bound::Texture(a), super::Stored::Texture(s)) => a == s,
                        _ => false,
                    };
                    if !same {
                        continue;
                    }
                    let row = row_bytes(w.ty, w.cols) as u64;
                    // The rows it reads: a fused group's half reads half the group.
                    let all = d.weight_rows.map_or(*part_rows, |r| r.min(*part_rows)) as u64 * row;
                    weight += if d.name == "embed" {
                        (rows as u64 * row).min(all)
                    } else if is_experts(name) && self.cfg.n_experts > 0 && rows == 1 {
                        // A decode step runs a dispatch per routed expert, each reading its own.
                        all / self.cfg.n_experts as u64
                    } else if is_experts(name) && self.cfg.n_experts > 0 {
                        let used = (rows * self.cfg.n_experts_used).min(self.cfg.n_experts) as u64;
                        all / self.cfg.n_experts as u64 * used
                    } else {
                        all
                    };
                }
            }
        }
        (weight, kv)
    }
}

/// What one timestamped run records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// The pass's beginning and end only: the graph as it runs.
    Pass,
    /// A timestamp before the first dispatch and after each.
    Each,
    /// As Each, every dispatch with no workgroups.
    Empty,
}

/// A query set and its readback for a graph of `n` dispatches.
struct Timestamps<'a> {
    gpu: &'a Gpu,
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    n: usize,
}

impl<'a> Timestamps<'a> {
    fn new(gpu: &'a Gpu, n: usize) -> Timestamps<'a> {
        let queries = n as u32 + 1;
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: queries,
        });
        let size = 8 * queries as u64;
        let resolve = gpu.buffer(&wgpu::BufferDescriptor {
            label: Some("profile timestamps"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.readback_buffer("profile readback", size);
        Timestamps { gpu, set, resolve, staging, n }
    }

    /// Runs `graph` as one submit: (per dispatch ms, or the pass's ms for Run::Pass; wall ms).
    fn run(&self, graph: &[&Dispatch], how: Run) -> Result<(Vec<f64>, f64)> {
        let t = std::time::Instant::now();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let pass_writes = wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        };
        let queries = if how == Run::Pass { 2 } else { self.n as u32 + 1 };
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("profile"),
                timestamp_writes: (how == Run::Pass).then_some(pass_writes),
            });
            if how != Run::Pass {
                pass.write_timestamp(&self.set, 0);
            }
            for (i, d) in graph.iter().enumerate() {
                match how {
                    Run::Empty => d.record_empty(&mut pass),
                    _ => d.record(&mut pass),
                }
                if how != Run::Pass {
                    pass.write_timestamp(&self.set, i as u32 + 1);
                }
            }
        }
        enc.resolve_query_set(&self.set, 0..queries, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, 8 * queries as u64);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = pollster_like(self.gpu.map_read(&self.staging, 8 * queries as u64))?;
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let ms_per_tick = self.gpu.queue.get_timestamp_period() as f64 / 1e6;
        let ms = ticks.windows(2).map(|w| w[1].saturating_sub(w[0]) as f64 * ms_per_tick).collect();
        Ok((ms, wall))
    }
}

/// Drives map_read's future to its end (natively the map has completed once the poll inside it
/// returns, so one poll suffices).
fn pollster_like<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The middle value of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The host's time to record `graph` into a command buffer and finish it (dropped unsubmitted), ms.
fn host_time(gpu: &Gpu, graph: &[&Dispatch]) -> f64 {
    let t = std::time::Instant::now();
    drop(encode(gpu, graph, None).finish());
    t.elapsed().as_secs_f64() * 1000.0
}

/// `graph` but `skip`'s dispatches recorded into one pass of a new encoder.
fn encode(gpu: &Gpu, graph: &[&Dispatch], skip: Option<&str>) -> wgpu::CommandEncoder {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        graph.iter().filter(|d| Some(d.name) != skip).for_each(|d| d.record(&mut pass));
    }
    enc
}

/// The graph's wall-clock time as one submit, without `skip`'s dispatches (best of 20, ms).
fn best_of_20(gpu: &Gpu, graph: &[&Dispatch], skip: Option<&str>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        gpu.queue.submit([encode(gpu, graph, skip).finish()]);
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(best)
}
