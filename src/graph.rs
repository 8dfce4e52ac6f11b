//! The decoder as lists of kernel calls, recorded once and replayed (one line per call below, read
//! top to bottom like llama2.c's forward()): the decode graph (one token, matvec kernels, fused
//! where the layout allows) and the batch graph (a prompt chunk or n candidates as a matrix of
//! rows, matmul kernels reading each weight once per tile of rows).

use crate::config::Config;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::{self, AttentionBuffers, AttentionParams, AttentionRows, Blocks, Dispatch, Fold, MatmulParams, MatvecParams, QkvParams, QuantMatrix, RopeParams};
use crate::kv_cache::{Branches, KvCache};
use crate::weights;
use std::collections::HashMap;

/// A weight matrix in raw GGUF blocks, split by rows into parts that each fit one storage binding.
pub struct Weight {
    pub ty: crate::quant::QuantType,
    /// Rows (output features) and row length (input features).
    pub rows: u32,
    pub cols: u32,
    /// Bytes from one row to the next in the buffers: the packed row, or the row padded to 16 bytes
    /// (CPU adapters, types with a matvec_wide decoder).
    pub row_stride: u32,
    /// (blocks, first row, rows) per part.
    pub parts: Vec<(Stored, u32, u32)>,
}

/// A weight part's blocks on the GPU: the buffer they were uploaded into, or the texture they were
/// copied into once complete (CPU adapters, kernels::uses_texture).
pub enum Stored {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Stored {
    pub fn blocks(&self) -> Blocks<'_> {
        match self {
            Stored::Buffer(b) => Blocks::Buffer(b),
            Stored::Texture(t) => Blocks::Texture(t),
        }
    }
}

impl Weight {
    pub fn part(&self, i: usize) -> QuantMatrix<'_> {
        let (stored, _, rows) = &self.parts[i];
        QuantMatrix { ty: self.ty, blocks: stored.blocks(), rows: *rows, cols: self.cols, row_stride: self.row_stride }
    }

    /// The buffer of a one-part weight kept in a buffer (norm vectors, rope factors: F32, never in
    /// a texture).
    fn vector(&self) -> &wgpu::Buffer {
        match &self.parts[0].0 {
            Stored::Buffer(b) => b,
            Stored::Texture(_) => unreachable!("vectors are f32 and stay in buffers"),
        }
    }
}

/// Activations for up to `rows` rows (the decode graph uses row 0).
pub struct Acts {
    pub rows: u32,
    pub x: wgpu::Buffer,        // [rows, dim] residual stream
    pub xb: wgpu::Buffer,       // [rows, dim] normed residual
    pub qkv: wgpu::Buffer,      // [rows, (n_heads + 2 n_kv_heads) * head_dim]: q | k | v
    pub att: wgpu::Buffer,      // [rows, n_heads * head_dim] attention output
    pub hb: wgpu::Buffer,       // [max(rows, 2), ffn_dim] gate, then silu(gate) * up (decode on CPU adapters: gate | up)
    pub hb2: wgpu::Buffer,      // [rows, ffn_dim] up
    pub logits: wgpu::Buffer,   // [max_candidates, vocab]
    pub tokens: wgpu::Buffer,   // [rows] u32: input tokens, then each logits row's argmax
    pub step: wgpu::Buffer,     // uniform Step
    pub partial: wgpu::Buffer,  // [max_candidates, n_heads, n_splits, head_dim + 2] split attention
    pub rope_ones: wgpu::Buffer, // [n_rot / 2] of 1.0, for models without rope_freqs
    pub norms: wgpu::Buffer,    // [ceil(dim / subgroup size) + 4] (room for one per subgroup of rows) partial sums of squares of x (kernels::Fold)
    pub rotations: wgpu::Buffer, // [head_dim / 2] (cos, sin): RoPE at the decoded position (kernels::rope_rotations)
}

/// Most candidates decoded side by side (rows of the logits buffer).
pub const MAX_CANDIDATES: u32 = 8;

impl Acts {
    pub fn new(gpu: &Gpu, c: &Config, rows: u32, n_splits: u32) -> Acts {
        let f = |n: usize| 4 * n as u64 * rows as u64;
        Acts {
            rows,
            x: gpu.storage("x", f(c.dim)),
            xb: gpu.storage("xb", f(c.dim)),
            qkv: gpu.storage("qkv", f(c.q_dim() + 2 * c.kv_dim())),
            att: gpu.storage("att", f(c.q_dim())),
            hb: gpu.storage("hb", 4 * c.ffn_dim as u64 * rows.max(2) as u64),
            hb2: gpu.storage("hb2", f(c.ffn_dim)),
            logits: gpu.storage("logits", 4 * c.vocab_size as u64 * MAX_CANDIDATES as u64),
            tokens: gpu.storage("tokens", 4 * rows.max(MAX_CANDIDATES) as u64),
            step: gpu.uniform("step", &kernels::Step::default()),
            partial: gpu.storage("attention partials", 4 * (MAX_CANDIDATES as usize * c.n_heads * n_splits as usize * (c.head_dim + 2)) as u64),
            rope_ones: gpu.storage_with("rope ones", bytemuck::cast_slice(&vec![1f32; c.n_rot / 2])),
            rotations: gpu.storage("rope rotations", 4 * c.head_dim as u64),
            norms: gpu.storage("norm partial sums", 4 * (c.dim.div_ceil(gpu.info.subgroup_min_size.max(1) as usize) + 4) as u64),
        }
    }

    /// Bytes of activations for `rows` rows.
    pub fn bytes(c: &Config, rows: u32) -> u64 {
        4 * rows as u64 * (2 * c.dim + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn_dim) as u64 + 4 * (MAX_CANDIDATES as u64 * c.vocab_size as u64)
    }
}

/// Everything a graph reads.
pub struct Parts<'a> {
    pub gpu: &'a Gpu,
    pub cfg: &'a Config,
    pub weights: &'a HashMap<String, Weight>,
    pub acts: &'a Acts,
    pub kv: &'a KvCache,
    pub branches: &'a Branches,
    /// Attention splits over the KV length in the decode graph (1 on CPU adapters).
    pub n_splits: u32,
}

impl Parts<'_> {
    fn w(&self, name: &str) -> &Weight {
        &self.weights[name]
    }
    fn vec(&self, name: &str) -> &wgpu::Buffer {
        self.weights[name].vector()
    }
    fn freq_factors(&self) -> &wgpu::Buffer {
        self.weights.get(weights::ROPE_FREQS).map_or(&self.acts.rope_ones, |f| f.vector())
    }
    fn rope(&self, n_heads: usize, offset: u32) -> RopeParams {
        let c = self.cfg;
        RopeParams {
            n_heads: n_heads as u32,
            head_dim: c.head_dim as u32,
            n_rot: c.n_rot as u32,
            offset,
            pos_stride: 0,
            freq_base: c.rope_base,
            freq_scale: c.rope_freq_scale,
            row_stride: (c.q_dim() + 2 * c.kv_dim()) as u32,
        }
    }
    /// Attention for layer l; `rope`: q and the batch's keys arrive unrotated (the kernel rotates
    /// them: CPU adapters).
    fn attention(&self, l: usize, rows: AttentionRows, n_splits: u32, rope: bool) -> Result<Vec<Dispatch>> {
        let c = self.cfg;
        let b = AttentionBuffers {
            qkv: &self.acts.qkv,
            k_cache: &self.kv.k[l],
            v_cache: &self.kv.v[l],
            k_branch: self.branches.k(l),
            v_branch: self.branches.v(l),
            out: &self.acts.att,
            partial: &self.acts.partial,
            rotations: rope.then_some(&self.acts.rotations),
            kv_mirror: self.kv.mirror.as_ref().map(|m| m.views(l)),
        };
        let p = AttentionParams {
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: c.head_dim as u32,
            qkv_stride: (c.q_dim() + 2 * c.kv_dim()) as u32,
            n_splits,
            branch_len: self.branches.len,
            ..Default::default()
        };
        kernels::attention(self.gpu, &b, &self.acts.step, p, rows)
    }
}

/// One matvec per weight part; row r of the part starting at r0 lands at out_offset + r0 + r.
fn matvec(g: &mut Vec<Dispatch>, s: &Parts, wt: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams) -> Result<()> {
    matvec_fold(g, s, wt, x, out, p, Fold::default())
}

/// `matvec` with `fold` in each part's matvec (partial sums out only from a one-part weight).
fn matvec_fold(g: &mut Vec<Dispatch>, s: &Parts, wt: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams, fold: Fold) -> Result<()> {
    for (i, (_, r0, _)) in wt.parts.iter().enumerate() {
        let p = MatvecParams { out_offset: p.out_offset + r0, ..p };
        g.push(kernels::matvec_fold(s.gpu, &wt.part(i), x, out, &s.acts.step, p, fold)?);
    }
    Ok(())
}

/// One matmul per weight part (for all `tokens` rows of the batch).
fn matmul(g: &mut Vec<Dispatch>, s: &Parts, wt: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatmulParams, tokens: u32) -> Result<()> {
    for (i, (_, r0, _)) in wt.parts.iter().enumerate() {
        let p = MatmulParams { out_offset: p.out_offset + r0, ..p };
        g.push(kernels::matmul(s.gpu, &wt.part(i), x, out, &s.acts.step, p, tokens)?);
    }
    Ok(())
}

/// The decode graph: one token at step.pos, its argmax into tokens[0]. GPUs run the fused qkv and
/// gate_up kernels; CPU adapters with subgroups fold rmsnorm, swiglu and RoPE into the matvecs and
/// attention around them (5 dispatches per layer); the rest runs each step on its own.
pub fn decode(s: &Parts) -> Result<Vec<Dispatch>> {
    let (c, a, gpu) = (s.cfg, s.acts, s.gpu);
    let mut g: Vec<Dispatch> = vec![];
    let set = MatvecParams::default();
    let add = MatvecParams { accumulate: 1, ..set };
    // Whether matvec_fold folds into every part of `w`; a matvec leaving partial sums needs one part.
    let can_fold = |w: Option<&Weight>| w.is_some_and(|w| (0..w.parts.len()).all(|i| kernels::can_fold(gpu, &w.part(i))));
    let one_part = |w: &Weight| w.parts.len() == 1 && can_fold(Some(w));
    let norm = |name: String| Fold { norm: Some((s.vec(&name), &a.norms, c.rms_eps)), ..Default::default() };
    let embd = s.w(weights::TOKEN_EMBD);
    for i in 0..embd.parts.len() {
        g.push(kernels::embed(gpu, &embd.part(i), embd.parts[i].1, &a.tokens, &a.x, 0, 1)?); // x = embedding[token]
    }
    // Whether the partial sums of squares of x are in acts.norms (the last matvec into x left them).
    let mut norms_ready = false;
    for l in 0..c.n_layers {
        let lw = |suffix: &str| weights::layer(l, suffix);
        let wqkv = s.weights.get(&lw("attn_qkv"));
        if let (Some(wqkv), false) = (wqkv, gpu.matvec_rowwise) {
            // q | k | v = rope(Wq xb), rope(Wk xb), Wv xb with xb = rmsnorm(x)
            let p = QkvParams {
                q_rows: c.q_dim() as u32,
                kv_rows: c.kv_dim() as u32,
                head_dim: c.head_dim as u32,
                n_rot: c.n_rot as u32,
                freq_base: c.rope_base,
                freq_scale: c.rope_freq_scale,
                eps: c.rms_eps,
                ..Default::default()
            };
            g.push(kernels::qkv(gpu, &wqkv.part(0), &a.x, s.vec(&lw(weights::ATTN_NORM)), &a.qkv, s.freq_factors(), &a.step, p)?);
        } else if let (Some(wqkv), true) = (wqkv, norms_ready && can_fold(wqkv)) {
            matvec_fold(&mut g, s, wqkv, &a.x, &a.qkv, set, norm(lw(weights::ATTN_NORM)))?; // q | k | v = [Wq; Wk; Wv] rmsnorm(x)
        } else {
            // The same, unfused (q, k and v of different types, or a CPU adapter: one matvec over the
            // group where there is one).
            let (k_at, v_at) = (c.q_dim() as u32, (c.q_dim() + c.kv_dim()) as u32);
            g.push(kernels::rmsnorm(gpu, &a.x, s.vec(&lw(weights::ATTN_NORM)), &a.xb, c.dim as u32, c.rms_eps, 1)?); // xb = rmsnorm(x)
            if let Some(wqkv) = wqkv {
                matvec(&mut g, s, wqkv, &a.xb, &a.qkv, set)?; // q | k | v = [Wq; Wk; Wv] xb
            } else {
                matvec(&mut g, s, s.w(&lw(weights::ATTN_Q)), &a.xb, &a.qkv, set)?; // q = Wq xb
                matvec(&mut g, s, s.w(&lw(weights::ATTN_K)), &a.xb, &a.qkv, MatvecParams { out_offset: k_at, ..set })?; // k = Wk xb
                matvec(&mut g, s, s.w(&lw(weights::ATTN_V)), &a.xb, &a.qkv, MatvecParams { out_offset: v_at, ..set })?; // v = Wv xb
            }
            if !gpu.matvec_rowwise {
                g.push(kernels::rope(gpu, &a.qkv, s.freq_factors(), &a.step, s.rope(c.n_heads + c.n_kv_heads, 0), 1)?); // rope(q), rope(k): k's heads follow q's
            }
        }
        // att = softmax(q k^T / sqrt(head_dim)) v; k_cache[pos], v_cache[pos] = k, v (CPU adapters:
        // q and k roped on the way)
        g.extend(s.attention(l, AttentionRows::One, s.n_splits, gpu.matvec_rowwise)?);
        let wgu = s.weights.get(&lw("ffn_gate_up"));
        let wo = s.w(&lw(weights::ATTN_OUT));
        norms_ready = one_part(wo) && can_fold(wgu);
        matvec_fold(&mut g, s, wo, &a.att, &a.x, add, Fold { partials_out: norms_ready.then_some(&a.norms), ..Default::default() })?; // x += Wo att
        if let (Some(wgu), false) = (wgu, gpu.matvec_rowwise) {
            // hb = silu(Wgate xb) * (Wup xb) with xb = rmsnorm(x)
            g.push(kernels::gate_up(gpu, &wgu.part(0), &a.x, s.vec(&lw(weights::FFN_NORM)), &a.hb, c.rms_eps)?);
        } else if let (Some(wgu), true) = (wgu, norms_ready) {
            matvec_fold(&mut g, s, wgu, &a.x, &a.hb, set, norm(lw(weights::FFN_NORM)))?; // hb = [Wgate; Wup] rmsnorm(x): gate | up
        } else {
            g.push(kernels::rmsnorm(gpu, &a.x, s.vec(&lw(weights::FFN_NORM)), &a.xb, c.dim as u32, c.rms_eps, 1)?); // xb = rmsnorm(x)
            if let Some(wgu) = wgu {
                matvec(&mut g, s, wgu, &a.xb, &a.hb, set)?; // hb[0..2 ffn] = [Wgate; Wup] xb (rows 0 and 1 of hb)
            } else {
                matvec(&mut g, s, s.w(&lw(weights::FFN_GATE)), &a.xb, &a.hb, set)?; // hb = Wgate xb
                matvec(&mut g, s, s.w(&lw(weights::FFN_UP)), &a.xb, &a.hb2, set)?; // hb2 = Wup xb
            }
        }
        // x += Wdown silu(gate) * up: swiglu folded into down where gate | up are packed in hb and
        // down folds; leaving the partial sums of squares of x where the next matvec folds rmsnorm.
        let wdown = s.w(&lw(weights::FFN_DOWN));
        let next = if l + 1 < c.n_layers { s.weights.get(&weights::layer(l + 1, "attn_qkv")) } else { Some(output_weight(s)) };
        let swiglu_folds = gpu.matvec_rowwise && wgu.is_some() && can_fold(Some(wdown));
        if !swiglu_folds {
            let ffn = c.ffn_dim as u32;
            match wgu {
                Some(_) if gpu.matvec_rowwise => g.push(kernels::swiglu_packed(gpu, &a.hb, ffn, ffn)?), // hb = silu(hb) * hb[ffn..]
                Some(_) => {} // the fused gate_up kernel did it
                None => g.push(kernels::swiglu(gpu, &a.hb, &a.hb2, ffn)?), // hb = silu(hb) * hb2
            }
        }
        norms_ready = one_part(wdown) && can_fold(next);
        let fold = Fold { swiglu_up: swiglu_folds.then_some(c.ffn_dim as u32), partials_out: norms_ready.then_some(&a.norms), ..Default::default() };
        matvec_fold(&mut g, s, wdown, &a.hb, &a.x, add, fold)?; // x += Wdown hb
    }
    if norms_ready {
        matvec_fold(&mut g, s, output_weight(s), &a.x, &a.logits, set, norm(weights::OUTPUT_NORM.to_string()))?; // logits = Wout rmsnorm(x)
    } else {
        g.push(kernels::rmsnorm(gpu, &a.x, s.vec(weights::OUTPUT_NORM), &a.xb, c.dim as u32, c.rms_eps, 1)?); // xb = rmsnorm(x)
        matvec(&mut g, s, output_weight(s), &a.xb, &a.logits, set)?; // logits = Wout xb
    }
    g.push(kernels::argmax(gpu, &a.logits, &a.tokens, c.vocab_size as u32, 1)?); // tokens[0] = argmax(logits)
    Ok(g)
}

fn output_weight<'a>(s: &'a Parts) -> &'a Weight {
    if s.cfg.tied_output { s.w(weights::TOKEN_EMBD) } else { s.w(weights::OUTPUT) }
}

/// What a batch graph runs: a prompt chunk (up to acts.rows rows at consecutive positions; the
/// logits of its last row, the argmax into tokens[0]) or n candidates (up to MAX_CANDIDATES rows at
/// one position; every row's logits, row r's argmax into tokens[r]; on GPUs the matvec-shaped
/// matmul and attention split over the KV length, as in decode).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Prompt,
    Candidates,
}

/// A batch graph: the layers, then the logits.
pub struct BatchGraph {
    pub body: Vec<Dispatch>,
    pub logits: Vec<Dispatch>,
}

pub fn batch(s: &Parts, kind: Batch) -> Result<BatchGraph> {
    let (c, a, gpu) = (s.cfg, s.acts, s.gpu);
    let rows = if kind == Batch::Prompt { a.rows } else { MAX_CANDIDATES.min(a.rows) };
    let mut g: Vec<Dispatch> = vec![];
    let (dim, qkv_stride, ffn) = (c.dim as u32, (c.q_dim() + 2 * c.kv_dim()) as u32, c.ffn_dim as u32);
    let mm = |x_stride: u32, out_stride: u32| MatmulParams { x_stride, out_stride, ..Default::default() };
    let embd = s.w(weights::TOKEN_EMBD);
    for i in 0..embd.parts.len() {
        g.push(kernels::embed(gpu, &embd.part(i), embd.parts[i].1, &a.tokens, &a.x, 0, rows)?); // x[t] = embedding[tokens[t]]
    }
    for l in 0..c.n_layers {
        let lw = |suffix: &str| weights::layer(l, suffix);
        g.push(kernels::rmsnorm(gpu, &a.x, s.vec(&lw(weights::ATTN_NORM)), &a.xb, dim, c.rms_eps, rows)?); // xb = rmsnorm(x)
        let (k_at, v_at) = (c.q_dim() as u32, (c.q_dim() + c.kv_dim()) as u32);
        if let Some(wqkv) = s.weights.get(&lw("attn_qkv")) {
            matmul(&mut g, s, wqkv, &a.xb, &a.qkv, mm(dim, qkv_stride), rows)?; // q | k | v = [Wq; Wk; Wv] xb
        } else {
            matmul(&mut g, s, s.w(&lw(weights::ATTN_Q)), &a.xb, &a.qkv, mm(dim, qkv_stride), rows)?; // q = Wq xb
            matmul(&mut g, s, s.w(&lw(weights::ATTN_K)), &a.xb, &a.qkv, MatmulParams { out_offset: k_at, ..mm(dim, qkv_stride) }, rows)?; // k = Wk xb
            matmul(&mut g, s, s.w(&lw(weights::ATTN_V)), &a.xb, &a.qkv, MatmulParams { out_offset: v_at, ..mm(dim, qkv_stride) }, rows)?; // v = Wv xb
        }
        g.push(kernels::rope(gpu, &a.qkv, s.freq_factors(), &a.step, s.rope(c.n_heads + c.n_kv_heads, 0), rows)?); // rope(q), rope(k): k's heads follow q's
        // att = causal softmax(q k^T / sqrt(head_dim)) v; each row's k, v into the cache (or branch);
        // candidates split the KV length like decode, a prompt chunk has rows enough
        let (which, n_splits) = match kind {
            Batch::Prompt => (AttentionRows::Prompt(rows), 1),
            Batch::Candidates => (AttentionRows::Candidates(rows), s.n_splits),
        };
        g.extend(s.attention(l, which, n_splits, false)?);
        let add = |x_stride: u32| MatmulParams { accumulate: 1, ..mm(x_stride, dim) };
        matmul(&mut g, s, s.w(&lw(weights::ATTN_OUT)), &a.att, &a.x, add(c.q_dim() as u32), rows)?; // x += Wo att
        g.push(kernels::rmsnorm(gpu, &a.x, s.vec(&lw(weights::FFN_NORM)), &a.xb, dim, c.rms_eps, rows)?); // xb = rmsnorm(x)
        if let Some(wgu) = s.weights.get(&lw("ffn_gate_up")) {
            matmul(&mut g, s, wgu, &a.xb, &a.hb, MatmulParams { rows: ffn, ..mm(dim, ffn) }, rows)?; // hb = Wgate xb
            matmul(&mut g, s, wgu, &a.xb, &a.hb2, MatmulParams { w_row0: ffn, ..mm(dim, ffn) }, rows)?; // hb2 = Wup xb
        } else {
            matmul(&mut g, s, s.w(&lw(weights::FFN_GATE)), &a.xb, &a.hb, mm(dim, ffn), rows)?; // hb = Wgate xb
            matmul(&mut g, s, s.w(&lw(weights::FFN_UP)), &a.xb, &a.hb2, mm(dim, ffn), rows)?; // hb2 = Wup xb
        }
        g.push(kernels::swiglu(gpu, &a.hb, &a.hb2, ffn * rows)?); // hb = silu(hb) * hb2
        matmul(&mut g, s, s.w(&lw(weights::FFN_DOWN)), &a.hb, &a.x, add(ffn), rows)?; // x += Wdown hb
    }
    g.push(kernels::rmsnorm(gpu, &a.x, s.vec(weights::OUTPUT_NORM), &a.xb, dim, c.rms_eps, rows)?); // xb = rmsnorm(x)
    let vocab = c.vocab_size as u32;
    let mut logits = vec![];
    if kind == Batch::Prompt {
        matmul(&mut logits, s, output_weight(s), &a.xb, &a.logits, MatmulParams { last_only: 1, ..mm(dim, vocab) }, rows)?; // logits = Wout xb[last]
        logits.push(kernels::argmax(gpu, &a.logits, &a.tokens, vocab, 1)?); // tokens[0] = argmax(logits)
    } else {
        matmul(&mut logits, s, output_weight(s), &a.xb, &a.logits, mm(dim, vocab), rows)?; // logits[t] = Wout xb[t]
        logits.push(kernels::argmax(gpu, &a.logits, &a.tokens, vocab, rows)?); // tokens[t] = argmax(logits[t])
    }
    Ok(BatchGraph { body: g, logits })
}
