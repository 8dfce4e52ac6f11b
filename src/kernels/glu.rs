//! The feed-forward's gated activation between its two halves, act(gate) * up: SwiGLU's silu, or
//! GeGLU's gelu (gemma2, gemma3), over one token's values or a batch's rows (swiglu.wgsl, glu.wgsl).

use super::{bind, grid, numbered, Dispatch, Target};
use crate::error::Result;
use crate::format::config::Config;
use crate::gpu::compose::{wgsl, Module};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SwigluParams {
    pub n: u32,
    /// cpu::swiglu_packed: where up starts in the gate buffer.
    pub up_offset: u32,
    /// swiglu_rows: values a row.
    pub row_len: u32,
    pub _pad: u32,
}

/// The feed-forward's gated activation, act(gate) * up: SwiGLU's silu, or GeGLU's gelu (gemma2, gemma3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatedAct {
    #[default]
    Silu,
    Gelu,
}

impl GatedAct {
    /// The model's (Config::ffn_gelu).
    pub fn of(cfg: &Config) -> GatedAct {
        if cfg.ffn_gelu() {
            GatedAct::Gelu
        } else {
            GatedAct::Silu
        }
    }

    /// `module` with glu.wgsl's act_mul for this activation.
    pub fn compose(self, module: Module) -> Module {
        let gelu = self == GatedAct::Gelu;
        module.variant(if gelu { "gelu" } else { "silu" }, &format!("const GELU: bool = {gelu};\n{}", wgsl::GLU))
    }
}

/// swiglu: gate = act(gate) * up, in place, over the first n values.
pub fn swiglu(t: Target, gate: &wgpu::Buffer, up: &wgpu::Buffer, n: u32, act: GatedAct) -> Result<Dispatch> {
    let p = SwigluParams { n, ..Default::default() };
    let pipeline = t.pipeline(&act.compose(Module::new("swiglu", &[wgsl::SWIGLU])), "main")?;
    bind(t.gpu, "swiglu", pipeline, bytemuck::bytes_of(&p), numbered(&[gate, up]), grid(n.div_ceil(64)))
}

/// swiglu over a batch of `rows` rows of `row_len` values ([rows, row_len] gate and up), only its
/// first step.n_rows rows (those that hold tokens: a prompt chunk shorter than the graph's rows
/// does not run the rest).
pub fn swiglu_rows(
    t: Target,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
    step: &wgpu::Buffer,
    row_len: u32,
    rows: u32,
    act: GatedAct,
) -> Result<Dispatch> {
    let n = row_len * rows;
    let p = SwigluParams { n, row_len, ..Default::default() };
    let pipeline = t.pipeline(&act.compose(Module::new("swiglu", &[wgsl::SWIGLU])), "rows")?;
    bind(t.gpu, "swiglu", pipeline, bytemuck::bytes_of(&p), numbered(&[gate, up, step]), grid(n.div_ceil(64)))
}
