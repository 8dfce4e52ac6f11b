//! The decoder as lists of kernel calls, recorded once and replayed, read top to bottom like
//! llama2.c's forward(): one line per call with its math in a comment. The decode graph runs one
//! token; the batch graph a prompt chunk or n candidates as a matrix of rows (matmul kernels
//! reading each weight once per tile of rows). Where the two kernel families differ (fused or
//! folded kernels), the step functions in steps.rs choose by the Layout.

use super::kv_cache::{Branches, KvCache};
use super::steps::Recorder;
use super::weight::Weight;
use super::MAX_CANDIDATES;
use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::format::weights::{
    self, ATTN_NORM, ATTN_OUT, ATTN_POST_NORM, FFN_DOWN, FFN_NORM, FFN_POST_NORM, OUTPUT_NORM,
};
use crate::gpu::{Gpu, Layout};
use crate::kernels::{self, AttentionRows, Dispatch, MatmulParams, Step, Target};
use std::collections::HashMap;

/// Activations for up to `rows` rows (the decode graph uses row 0).
pub struct Acts {
    pub rows: u32,
    pub x: wgpu::Buffer,            // [rows, dim] residual stream
    pub xb: wgpu::Buffer,           // [rows, dim] normed residual
    pub qkv: wgpu::Buffer,          // [rows, (n_heads + 2 n_kv_heads) * head_dim]: q | k | v
    pub att: wgpu::Buffer,          // [rows, n_heads * head_dim] attention output
    pub hb: wgpu::Buffer, // [max(rows, 2), ffn_dim] gate, then silu(gate) * up (decode, CPU family or biases: gate | up)
    pub hb2: wgpu::Buffer, // [rows, ffn_dim] up
    pub logits: wgpu::Buffer, // [max_candidates, vocab]
    pub argmax_spans: wgpu::Buffer, // [max_candidates, ceil(vocab / ARGMAX_SPAN)] (best, id): the GPU family's two-level argmax
    pub tokens: wgpu::Buffer,       // [rows] u32: input tokens, then each logits row's argmax
    pub step: wgpu::Buffer,         // uniform Step
    pub partial: wgpu::Buffer,      // [max_candidates, n_heads, n_splits, head_dim + 4] split attention
    pub rope_ones: wgpu::Buffer,    // [n_rot / 2] of 1.0, for models without rope_freqs
    pub norms: wgpu::Buffer, // [ceil(dim / 64) + 4] (one per matvec_wide workgroup of rows, zero-padded) partial sums of squares of x (kernels::cpu::Fold)
    pub rotations: wgpu::Buffer, // [head_dim / 2] (cos, sin): RoPE at the decoded position (kernels::cpu::rope_rotations)
    pub router: wgpu::Buffer,    // [rows, n_experts] router logits (mixture of experts)
    pub route: wgpu::Buffer,     // [rows, n_experts_used, 2] u32: each row's experts and their weights' f32 bits
    pub moe_h: wgpu::Buffer, // [rows, n_experts_used, ffn_dim] batch: each routed expert's gate, then silu(gate) * up
    pub moe_h2: wgpu::Buffer, // [rows, n_experts_used, ffn_dim] batch: each routed expert's up
    pub moe_y: wgpu::Buffer, // [rows, n_experts_used, dim] batch: each routed expert's down projection
}

impl Acts {
    pub fn new(gpu: &Gpu, c: &Config, rows: u32, n_splits: u32) -> Acts {
        let sizes: HashMap<&str, u64> = Acts::sizes(c, rows, n_splits).into_iter().collect();
        let buffer = |label: &str| gpu.storage(label, sizes[label]);
        Acts {
            rows,
            x: buffer("x"),
            xb: buffer("xb"),
            qkv: buffer("qkv"),
            att: buffer("att"),
            hb: buffer("hb"),
            hb2: buffer("hb2"),
            logits: buffer("logits"),
            argmax_spans: buffer("argmax spans"),
            tokens: buffer("tokens"),
            step: gpu.uniform("step", &Step::default()),
            partial: buffer("attention partials"),
            rope_ones: gpu.storage_with("rope ones", bytemuck::cast_slice(&vec![1f32; c.n_rot / 2])),
            rotations: buffer("rope rotations"),
            norms: buffer("norm partial sums"),
            router: buffer("router logits"),
            route: buffer("routes"),
            moe_h: buffer("expert gates"),
            moe_h2: buffer("expert ups"),
            moe_y: buffer("expert outputs"),
        }
    }

    /// Each storage buffer's label and bytes for `rows` rows and `n_splits` attention splits (as
    /// Acts::new makes them; rope_ones besides).
    pub fn sizes(c: &Config, rows: u32, n_splits: u32) -> Vec<(&'static str, u64)> {
        let f = |n: usize| 4 * n as u64 * rows as u64;
        // The batch's per-expert buffers (4 bytes for dense models and the decode graph).
        let moe = |n: usize| if c.n_experts > 0 && rows > 1 { f(n * c.n_experts_used) } else { 4 };
        let (heads, head_dim) = (c.n_heads as u32, c.head_dim as u32);
        vec![
            ("x", f(c.dim)),
            ("xb", f(c.dim)),
            ("qkv", f(c.qkv_dim())),
            ("att", f(c.q_dim())),
            ("hb", 4 * c.ffn_dim as u64 * rows.max(2) as u64),
            ("hb2", f(c.ffn_dim)),
            ("logits", 4 * c.vocab_size as u64 * MAX_CANDIDATES as u64),
            ("argmax spans", kernels::argmax_spans_bytes(c.vocab_size as u32, MAX_CANDIDATES)),
            ("tokens", 4 * rows.max(MAX_CANDIDATES) as u64),
            ("attention partials", kernels::gpu::attention_partial_bytes(MAX_CANDIDATES, heads, n_splits, head_dim)),
            ("rope rotations", 4 * c.head_dim as u64),
            ("norm partial sums", 4 * (c.dim.div_ceil(kernels::cpu::FOLD_ROWS_PER_SLOT) + 4) as u64),
            ("router logits", f(c.n_experts.max(1))),
            ("routes", 2 * f(c.n_experts_used.max(1))),
            ("expert gates", moe(c.ffn_dim)),
            ("expert ups", moe(c.ffn_dim)),
            ("expert outputs", moe(c.dim)),
        ]
    }

    /// Bytes of activations for `rows` rows and `n_splits` attention splits.
    pub fn bytes(c: &Config, rows: u32, n_splits: u32) -> u64 {
        Acts::sizes(c, rows, n_splits).iter().map(|(_, b)| b).sum::<u64>() + 4 * (c.n_rot / 2) as u64
    }

    /// An OutOfMemory error, before anything is allocated, where one of the buffers would be over
    /// `max_binding` (a GPU buffer binding's limit): a header's widths that can't run here.
    pub fn check(c: &Config, rows: u32, n_splits: u32, max_binding: u64) -> Result<()> {
        match Acts::sizes(c, rows, n_splits).into_iter().find(|&(_, b)| b > max_binding) {
            Some((label, bytes)) => Err(Error::OutOfMemory(format!(
                "its {label} activations take {bytes} bytes, over the {max_binding} bytes one GPU buffer binding holds"
            ))),
            None => Ok(()),
        }
    }
}

/// Everything a graph reads.
pub struct Parts<'a> {
    pub gpu: &'a Gpu,
    pub layout: &'a Layout,
    pub cfg: &'a Config,
    pub weights: &'a HashMap<String, Weight>,
    pub acts: &'a Acts,
    pub kv: &'a KvCache,
    pub branches: &'a Branches,
    /// Most attention splits over the KV length the decode and candidates graphs dispatch (the
    /// kernel works as many as the current length asks for; 1 in the CPU family); a decode graph
    /// whose Wo merges the splits dispatches at most kernels::gpu::combine_in_wo_splits of them.
    pub n_splits: u32,
}

impl Parts<'_> {
    pub fn target(&self) -> Target<'_> {
        Target { gpu: self.gpu, layout: self.layout }
    }
    pub fn w(&self, name: &str) -> &Weight {
        &self.weights[name]
    }
    pub fn vec(&self, name: &str) -> &wgpu::Buffer {
        self.weights[name].vector()
    }
    /// Where a block's product (Wo's, Wdown's) goes, and whether it is added there: into x, or where
    /// the model norms each block's output first (Gemma), written to xb, which post_norm adds to x.
    pub fn block_out(&self) -> (&wgpu::Buffer, u32) {
        match self.cfg.post_norms() {
            true => (&self.acts.xb, 0),
            false => (&self.acts.x, 1),
        }
    }

    /// The output matrix: the token embedding where the model ties them.
    pub fn output(&self) -> &Weight {
        if self.cfg.tied_output {
            self.w(weights::TOKEN_EMBD)
        } else {
            self.w(weights::OUTPUT)
        }
    }
}

/// The decode graph: one token at step.pos, its argmax into tokens[0]. `combine_in_wo` (GPU family,
/// at most kernels::gpu::COMBINE_IN_WO_SPLITS): attention split in at most that many, merged by
/// Wo's activation loader rather than by a combine dispatch.
pub fn decode(s: &Parts, combine_in_wo: Option<u32>) -> Result<Vec<Dispatch>> {
    let (c, a) = (s.cfg, s.acts);
    let mut g = Recorder::decode(s, combine_in_wo);
    g.embed(1)?; // x = embedding[token]
    g.embedding_scale()?; // x *= embedding_scale (granite; Gemma's sqrt(dim))
    for l in 0..c.n_layers {
        let lw = |suffix: &str| weights::layer(l, suffix);
        g.qkv(l)?; // q | k | v = [Wq; Wk; Wv] rmsnorm(x) (+ qkv_bias; head_rmsnorm q, k); q, k = rope(q), rope(k) (CPU family, llama: in attention)
        g.attention(l, AttentionRows::One, s.n_splits)?; // att = softmax(q k^T / sqrt(head_dim)) v over the positions the layer sees (or its splits' partials); k, v into the cache
        g.residual_scale(&a.att, c.q_dim() as u32)?; // att *= residual_scale (granite; its attention merges its splits)
        g.residual(s.w(&lw(ATTN_OUT)), &a.att)?; // x += Wo att (att merged from the partials in Wo's loader where attention left them; Gemma: xb = Wo att)
        g.post_norm(l, ATTN_POST_NORM)?; // x += rmsnorm(xb) * post_attention_norm (gemma2, gemma3)
        g.out_bias(l)?; // x += bo (a llama file's)
        if c.n_experts > 0 {
            g.moe(l)?; // x += sum over the token's routed experts e (weight w_e) of w_e Wdown_e silu(Wgate_e xb) * (Wup_e xb), xb = rmsnorm(x)
            continue;
        }
        g.gate_up(l)?; // hb = silu(Wgate rmsnorm(x)) * (Wup rmsnorm(x)) (Gemma: gelu; CPU family, or biases: gate | up (+ bgate | bup), swiglu in down)
        g.down(l)?; // x += Wdown hb (hb *= residual_scale first: granite; Gemma: xb = Wdown hb)
        g.post_norm(l, FFN_POST_NORM)?; // x += rmsnorm(xb) * post_ffw_norm (gemma2, gemma3)
        g.down_bias(l)?; // x += bdown (a llama file's)
    }
    g.logits()?; // logits = Wout rmsnorm(x)
    g.logit_softcap(1)?; // logits = c tanh(logits / c) (gemma2)
    g.argmax(1)?; // tokens[0] = argmax(logits)
    Ok(g.done())
}

/// What a batch graph runs: a prompt chunk (up to its rows, at most acts.rows, at consecutive
/// positions; the logits of its last row, the argmax into tokens[0]; the matmuls' tiles chosen for
/// that many rows) or n candidates (up to MAX_CANDIDATES rows at one position; every row's logits,
/// row r's argmax into tokens[r]; attention split over the KV length as in decode).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Prompt(u32),
    Candidates,
}

/// A batch graph: the layers, then the logits.
pub struct BatchGraph {
    pub body: Vec<Dispatch>,
    pub logits: Vec<Dispatch>,
}

pub fn batch(s: &Parts, kind: Batch) -> Result<BatchGraph> {
    let (c, a) = (s.cfg, s.acts);
    let rows = match kind {
        Batch::Prompt(rows) => rows.min(a.rows),
        Batch::Candidates => MAX_CANDIDATES.min(a.rows),
    };
    let (dim, ffn) = (c.dim as u32, c.ffn_dim as u32);
    let (which, n_splits) = match kind {
        Batch::Prompt(_) => (AttentionRows::Prompt(rows), 1),
        Batch::Candidates => (AttentionRows::Candidates(rows), s.n_splits),
    };
    let (block_out, accumulate) = s.block_out();
    let add = |x_stride: u32| MatmulParams { x_stride, out_stride: dim, accumulate, ..Default::default() };
    let mut g = Recorder::batch(s, rows);
    g.embed(rows)?; // x[t] = embedding[tokens[t]]
    g.embedding_scale()?; // x *= embedding_scale (granite; Gemma's sqrt(dim))
    for l in 0..c.n_layers {
        let lw = |suffix: &str| weights::layer(l, suffix);
        g.rmsnorm(s.vec(&lw(ATTN_NORM)))?; // xb = rmsnorm(x)
        g.matmul_qkv(l)?; // q | k | v = [Wq; Wk; Wv] xb
        g.qkv_bias(l)?; // q | k | v += bq | bk | bv (qwen2, some llama files)
        g.head_rmsnorm(l)?; // q, k = rmsnorm of each head * q_norm, k_norm (qwen3)
        g.rope(l)?; // q, k = rope(q), rope(k) (the layer's base: Gemma's sliding-window layers may have theirs)
        g.attention(l, which, n_splits)?; // att = causal softmax(q k^T / sqrt(head_dim)) v (a sliding-window layer's last positions); each row's k, v into the cache (or branch)
        g.residual_scale(&a.att, c.q_dim() as u32)?; // att *= residual_scale (granite)
        g.matmul(s.w(&lw(ATTN_OUT)), &a.att, block_out, add(c.q_dim() as u32))?; // x += Wo att (Gemma: xb = Wo att)
        g.post_norm(l, ATTN_POST_NORM)?; // x += rmsnorm(xb) * post_attention_norm (gemma2, gemma3)
        g.out_bias(l)?; // x += bo (a llama file's)
        if c.n_experts > 0 {
            g.moe(l)?; // x[t] += sum over t's routed experts e (weight w_e) of w_e Wdown_e silu(Wgate_e xb[t]) * (Wup_e xb[t])
            continue;
        }
        g.rmsnorm(s.vec(&lw(FFN_NORM)))?; // xb = rmsnorm(x)
        g.matmul_gate_up(l)?; // hb, hb2 = Wgate xb, Wup xb
        g.gate_up_bias(l, false)?; // hb, hb2 += bgate, bup (a llama file's)
        g.swiglu(ffn)?; // hb = silu(hb) * hb2 (Gemma: gelu; the rows that hold tokens)
        g.residual_scale(&a.hb, ffn)?; // hb *= residual_scale (granite)
        g.matmul(s.w(&lw(FFN_DOWN)), &a.hb, block_out, add(ffn))?; // x += Wdown hb (Gemma: xb = Wdown hb)
        g.post_norm(l, FFN_POST_NORM)?; // x += rmsnorm(xb) * post_ffw_norm (gemma2, gemma3)
        g.down_bias(l)?; // x += bdown (a llama file's)
    }
    g.rmsnorm(s.vec(OUTPUT_NORM))?; // xb = rmsnorm(x)
    let body = g.done();
    let mut g = Recorder::batch(s, rows);
    let vocab = c.vocab_size as u32;
    let logits = MatmulParams { x_stride: dim, out_stride: vocab, ..Default::default() };
    if let Batch::Prompt(_) = kind {
        g.matmul(s.output(), &a.xb, &a.logits, MatmulParams { last_only: 1, ..logits })?; // logits = Wout xb[last]
        g.logit_softcap(1)?; // logits = c tanh(logits / c) (gemma2)
        g.argmax(1)?; // tokens[0] = argmax(logits)
    } else {
        g.matmul(s.output(), &a.xb, &a.logits, logits)?; // logits[t] = Wout xb[t]
        g.logit_softcap(rows)?; // logits[t] = c tanh(logits[t] / c) (gemma2)
        g.argmax(rows)?; // tokens[t] = argmax(logits[t])
    }
    Ok(BatchGraph { body, logits: g.done() })
}
