//! What each kind of kernel costs in a decode step and in a prompt chunk (`webllama bench
//! --profile`; native only).

use super::Model;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::Dispatch;

/// What one kind of kernel costs in a profiled graph.
pub struct KernelCost {
    pub name: &'static str,
    /// The graph's time less its time without this kind's dispatches.
    pub ms: f64,
    pub dispatches: usize,
}

/// A profiled graph: each kind of kernel's cost and the whole's time (ms).
pub struct Profile {
    pub kinds: Vec<KernelCost>,
    pub whole_ms: f64,
}

impl Model {
    /// What each kind of kernel costs in a decode step as it runs (one submit): the step's time
    /// (best of 20) less its time without that kind's dispatches (best of 20), in milliseconds per
    /// kernel name (with its dispatch count), and the whole step's time. The step is run at the
    /// same position each time (native only; for `webllama bench --profile`).
    pub fn profile_step(&mut self, token: u32) -> Result<Profile> {
        self.begin_step(token)?;
        profile_dispatches(&self.gpu, &self.graph)
    }

    /// As profile_step, for one full prompt chunk (batch_rows tokens of `token` at the cache's
    /// next positions) through the batch graph's body.
    pub fn profile_chunk(&mut self, token: u32) -> Result<Profile> {
        let chunk = vec![token; self.acts.rows as usize];
        self.check_prompt(&chunk)?;
        self.begin_chunk(&chunk);
        profile_dispatches(&self.gpu, &self.batch.body)
    }
}

/// Each kernel name's share of `graph` run as one submit: the whole's time less the time without
/// that name's dispatches (best of 20 each, ms) and how many dispatches it has; and the whole's
/// time.
fn profile_dispatches(gpu: &Gpu, graph: &[Dispatch]) -> Result<Profile> {
    let best_of_20 = |skip: Option<&str>| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                graph.iter().filter(|d| Some(d.name) != skip).for_each(|d| d.record(&mut pass));
            }
            gpu.queue.submit([enc.finish()]);
            gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(best)
    };
    let whole = best_of_20(None)?;
    let mut names: Vec<&'static str> = vec![];
    for d in graph {
        if !names.contains(&d.name) {
            names.push(d.name);
        }
    }
    let mut kinds = vec![];
    for name in names {
        let dispatches = graph.iter().filter(|d| d.name == name).count();
        kinds.push(KernelCost { name, ms: whole - best_of_20(Some(name))?, dispatches });
    }
    Ok(Profile { kinds, whole_ms: whole })
}
