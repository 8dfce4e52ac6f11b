//! The graphs' steps (graph.rs calls each in one line): which kernels run a step in the Layout's
//! family. The GPU family fuses rmsnorm + qkv + RoPE and rmsnorm + gate_up + swiglu into one
//! kernel each where the layer's matrices share a buffer; the CPU family folds rmsnorm and swiglu
//! into the decode matvecs where every matrix allows it (`Recorder::decode`), and rotates q and k
//! in the decode attention.

use super::graph::Parts;
use super::weight::Weight;
use crate::error::Result;
use crate::format::weights::{
    self, ATTN_K, ATTN_NORM, ATTN_Q, ATTN_V, FFN_DOWN, FFN_GATE, FFN_NORM, FFN_UP, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD,
};
use crate::gpu::Family;
use crate::kernels::cpu::{self, Fold};
use crate::kernels::gpu::{self, QkvParams};
use crate::kernels::{
    self, AttentionBuffers, AttentionParams, AttentionRows, Dispatch, MatmulParams, MatvecParams, RopeParams,
};

/// A graph being recorded: its dispatches so far and what they read.
pub struct Recorder<'a> {
    s: &'a Parts<'a>,
    g: Vec<Dispatch>,
    /// Rows of the batch (1: the decode graph).
    rows: u32,
    /// Decode, CPU family: rmsnorm and swiglu fold into the matvecs (every matvec into x leaves the
    /// partial sums of squares of x in acts.norms for the next one to fold rmsnorm).
    folds: bool,
}

impl<'a> Recorder<'a> {
    /// The decode graph's recorder.
    pub fn decode(s: &'a Parts<'a>) -> Recorder<'a> {
        Recorder { s, g: vec![], rows: 1, folds: decode_folds(s) }
    }

    /// A batch graph's recorder for `rows` rows.
    pub fn batch(s: &'a Parts<'a>, rows: u32) -> Recorder<'a> {
        Recorder { s, g: vec![], rows, folds: false }
    }

    pub fn done(self) -> Vec<Dispatch> {
        self.g
    }

    fn family(&self) -> Family {
        self.s.layout.family
    }

    /// x[t] = embedding[tokens[t]] for `rows` tokens (each part of the table looks up its own).
    pub fn embed(&mut self, rows: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let embd = s.w(TOKEN_EMBD);
        for (i, (_, row_start, _)) in embd.parts.iter().enumerate() {
            self.g.push(kernels::embed(s.target(), &embd.part(i), *row_start, &a.tokens, &a.x, 0, rows)?);
        }
        Ok(())
    }

    /// xb = rmsnorm(x) * norm_w for every row.
    pub fn rmsnorm(&mut self, norm_w: &wgpu::Buffer) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.g.push(kernels::rmsnorm(s.target(), &a.x, norm_w, &a.xb, s.cfg.dim as u32, s.cfg.rms_eps, self.rows)?);
        Ok(())
    }

    /// q, k = rope(q), rope(k) in acts.qkv for every row (k's heads follow q's).
    pub fn rope(&mut self) -> Result<()> {
        let (s, c) = (self.s, self.s.cfg);
        let p = RopeParams {
            n_heads: (c.n_heads + c.n_kv_heads) as u32,
            head_dim: c.head_dim as u32,
            n_rot: c.n_rot as u32,
            freq_base: c.rope_base,
            freq_scale: c.rope_freq_scale,
            row_stride: (c.q_dim() + 2 * c.kv_dim()) as u32,
            ..Default::default()
        };
        self.g.push(kernels::rope(s.target(), &s.acts.qkv, self.freq_factors(), &s.acts.step, p, self.rows)?);
        Ok(())
    }

    fn freq_factors(&self) -> &'a wgpu::Buffer {
        self.s.weights.get(ROPE_FREQS).map_or(&self.s.acts.rope_ones, |f| f.vector())
    }

    /// att = causal softmax(q k^T / sqrt(head_dim)) v for layer l's `which` rows, their k and v into
    /// the cache (or the candidates' branches). The CPU family's decode rotates q and k here.
    pub fn attention(&mut self, l: usize, which: AttentionRows, n_splits: u32) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let in_kernel = which == AttentionRows::One && s.layout.rope_in_attention();
        let b = AttentionBuffers {
            qkv: &a.qkv,
            k_cache: &s.kv.k[l],
            v_cache: &s.kv.v[l],
            k_branch: s.branches.k(l),
            v_branch: s.branches.v(l),
            out: &a.att,
            partial: &a.partial,
            rotations: in_kernel.then_some(&a.rotations),
        };
        let p = AttentionParams {
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: c.head_dim as u32,
            qkv_stride: (c.q_dim() + 2 * c.kv_dim()) as u32,
            n_splits,
            branch_len: s.branches.len,
            ..Default::default()
        };
        self.g.extend(kernels::attention(s.target(), &b, &a.step, p, which)?);
        Ok(())
    }

    /// out (+)= W x for every row of the batch: one matmul per part of W.
    pub fn matmul(&mut self, w: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatmulParams) -> Result<()> {
        for (i, (_, r0, _)) in w.parts.iter().enumerate() {
            let p = MatmulParams { out_offset: p.out_offset + r0, ..p };
            self.g.push(kernels::matmul(self.s.target(), &w.part(i), x, out, &self.s.acts.step, p, self.rows)?);
        }
        Ok(())
    }

    /// q | k | v = [Wq; Wk; Wv] xb for every row (one matmul over the group where there is one).
    pub fn matmul_qkv(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let out = |out_offset: u32| MatmulParams {
            x_stride: c.dim as u32,
            out_stride: (c.q_dim() + 2 * c.kv_dim()) as u32,
            out_offset,
            ..Default::default()
        };
        if let Some(wqkv) = s.weights.get(&weights::layer(l, "attn_qkv")) {
            return self.matmul(wqkv, &a.xb, &a.qkv, out(0));
        }
        self.matmul(s.w(&weights::layer(l, ATTN_Q)), &a.xb, &a.qkv, out(0))?;
        self.matmul(s.w(&weights::layer(l, ATTN_K)), &a.xb, &a.qkv, out(c.q_dim() as u32))?;
        self.matmul(s.w(&weights::layer(l, ATTN_V)), &a.xb, &a.qkv, out((c.q_dim() + c.kv_dim()) as u32))
    }

    /// hb, hb2 = Wgate xb, Wup xb for every row (the group's two halves where there is one).
    pub fn matmul_gate_up(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let ffn = c.ffn_dim as u32;
        let mm = MatmulParams { x_stride: c.dim as u32, out_stride: ffn, ..Default::default() };
        if let Some(wgu) = s.weights.get(&weights::layer(l, "ffn_gate_up")) {
            self.matmul(wgu, &a.xb, &a.hb, MatmulParams { rows: ffn, ..mm })?;
            return self.matmul(wgu, &a.xb, &a.hb2, MatmulParams { w_row0: ffn, ..mm });
        }
        self.matmul(s.w(&weights::layer(l, FFN_GATE)), &a.xb, &a.hb, mm)?;
        self.matmul(s.w(&weights::layer(l, FFN_UP)), &a.xb, &a.hb2, mm)
    }

    /// gate = silu(gate) * up over hb and hb2, n values.
    pub fn swiglu(&mut self, n: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.g.push(kernels::swiglu(s.target(), &a.hb, &a.hb2, n)?);
        Ok(())
    }

    /// tokens[r] = argmax(logits[r]) for `rows` rows.
    pub fn argmax(&mut self, rows: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.g.push(kernels::argmax(s.target(), &a.logits, &a.tokens, s.cfg.vocab_size as u32, rows)?);
        Ok(())
    }

    /// out (+)= W x for one token: one matvec per part of W, with `fold` (CPU family) in each.
    fn matvec(&mut self, w: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams, fold: Fold) -> Result<()> {
        let (t, step) = (self.s.target(), &self.s.acts.step);
        for (i, (_, r0, _)) in w.parts.iter().enumerate() {
            let p = MatvecParams { out_offset: p.out_offset + r0, ..p };
            self.g.push(kernels::matvec_folded(t, &w.part(i), x, out, step, p, fold)?);
        }
        Ok(())
    }

    /// The rmsnorm a matvec folds (CPU family, decode): of x, from the partial sums the last matvec
    /// into x left.
    fn norm_fold(&self, norm: &str) -> Fold<'a> {
        let (s, a) = (self.s, self.s.acts);
        Fold { norm: Some((s.vec(norm), &a.norms, s.cfg.rms_eps)), ..Default::default() }
    }

    /// Decode: q | k | v = [Wq; Wk; Wv] rmsnorm(x), q and k roped (the CPU family leaves RoPE to
    /// attention): the GPU family's fused qkv kernel over the layer's group; the CPU family's matvec
    /// folding rmsnorm (after the first layer, where folds run); else rmsnorm, the matvecs and
    /// (GPU family) rope on their own.
    pub fn qkv(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let norm = weights::layer(l, ATTN_NORM);
        let wqkv = s.weights.get(&weights::layer(l, "attn_qkv"));
        match (self.family(), wqkv) {
            (Family::Gpu, Some(wqkv)) => {
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
                self.g.push(gpu::qkv(
                    s.target(),
                    &wqkv.part(0),
                    &a.x,
                    s.vec(&norm),
                    &a.qkv,
                    self.freq_factors(),
                    &a.step,
                    p,
                )?);
                return Ok(());
            }
            (Family::Cpu, Some(wqkv)) if self.folds && l > 0 => {
                return self.matvec(wqkv, &a.x, &a.qkv, MatvecParams::default(), self.norm_fold(&norm))
            }
            _ => {}
        }
        self.rmsnorm(s.vec(&norm))?;
        match wqkv {
            Some(wqkv) => self.matvec(wqkv, &a.xb, &a.qkv, MatvecParams::default(), Fold::default())?,
            None => {
                let at = |out_offset: usize| MatvecParams { out_offset: out_offset as u32, ..Default::default() };
                self.matvec(s.w(&weights::layer(l, ATTN_Q)), &a.xb, &a.qkv, at(0), Fold::default())?;
                self.matvec(s.w(&weights::layer(l, ATTN_K)), &a.xb, &a.qkv, at(c.q_dim()), Fold::default())?;
                self.matvec(
                    s.w(&weights::layer(l, ATTN_V)),
                    &a.xb,
                    &a.qkv,
                    at(c.q_dim() + c.kv_dim()),
                    Fold::default(),
                )?;
            }
        }
        if self.family() == Family::Gpu {
            self.rope()?;
        }
        Ok(())
    }

    /// Decode: x += W v (the CPU family's folds leave the partial sums of squares of x for the
    /// next matvec's rmsnorm).
    pub fn residual(&mut self, w: &Weight, v: &wgpu::Buffer) -> Result<()> {
        let a = self.s.acts;
        let fold = Fold { partials_out: self.folds.then_some(&a.norms), ..Default::default() };
        self.matvec(w, v, &a.x, MatvecParams { accumulate: 1, ..Default::default() }, fold)
    }

    /// Decode: the feed-forward's first half. GPU family: hb = silu(Wgate xb) * (Wup xb), xb =
    /// rmsnorm(x), by the fused gate_up kernel over the layer's group. CPU family: hb = gate | up
    /// by one matvec over the group (rmsnorm folded where folds run), swiglu left to `down`.
    /// Without a group: hb, hb2 = gate, up.
    pub fn gate_up(&mut self, l: usize) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let norm = weights::layer(l, FFN_NORM);
        let wgu = s.weights.get(&weights::layer(l, "ffn_gate_up"));
        match (self.family(), wgu) {
            (Family::Gpu, Some(wgu)) => {
                self.g.push(gpu::gate_up(s.target(), &wgu.part(0), &a.x, s.vec(&norm), &a.hb, s.cfg.rms_eps)?);
                return Ok(());
            }
            (Family::Cpu, Some(wgu)) if self.folds => {
                return self.matvec(wgu, &a.x, &a.hb, MatvecParams::default(), self.norm_fold(&norm))
            }
            _ => {}
        }
        self.rmsnorm(s.vec(&norm))?;
        match wgu {
            Some(wgu) => self.matvec(wgu, &a.xb, &a.hb, MatvecParams::default(), Fold::default()),
            None => {
                self.matvec(s.w(&weights::layer(l, FFN_GATE)), &a.xb, &a.hb, MatvecParams::default(), Fold::default())?;
                self.matvec(s.w(&weights::layer(l, FFN_UP)), &a.xb, &a.hb2, MatvecParams::default(), Fold::default())
            }
        }
    }

    /// Decode: x += Wdown silu(gate) * up, from what `gate_up` left: the CPU family's folds run
    /// swiglu inside the matvec; otherwise swiglu runs first where gate_up did not.
    pub fn down(&mut self, l: usize) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let ffn = s.cfg.ffn_dim as u32;
        let grouped = s.weights.contains_key(&weights::layer(l, "ffn_gate_up"));
        let mut fold = Fold::default();
        match (self.family(), grouped) {
            (Family::Cpu, true) if self.folds => {
                fold = Fold { swiglu_up: Some(ffn), partials_out: Some(&a.norms), ..Default::default() }
            }
            (Family::Cpu, true) => self.g.push(cpu::swiglu_packed(s.target(), &a.hb, ffn, ffn)?), // hb = silu(hb) * hb[ffn..]
            (Family::Gpu, true) => {}        // the fused gate_up kernel did it
            (_, false) => self.swiglu(ffn)?, // hb = silu(hb) * hb2
        }
        self.matvec(
            s.w(&weights::layer(l, FFN_DOWN)),
            &a.hb,
            &a.x,
            MatvecParams { accumulate: 1, ..Default::default() },
            fold,
        )
    }

    /// Decode: logits = Wout rmsnorm(x).
    pub fn logits(&mut self) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        if self.folds {
            return self.matvec(s.output(), &a.x, &a.logits, MatvecParams::default(), self.norm_fold(OUTPUT_NORM));
        }
        self.rmsnorm(s.vec(OUTPUT_NORM))?;
        self.matvec(s.output(), &a.xb, &a.logits, MatvecParams::default(), Fold::default())
    }
}

/// Whether the decode graph folds rmsnorm and swiglu into its matvecs: the CPU family with folds
/// on, every layer's matrices grouped, every decode matrix one cpu::can_fold reads, and the
/// matrices that leave partial sums (Wo, Wdown) in one part.
fn decode_folds(s: &Parts) -> bool {
    let t = s.target();
    if !s.layout.is_cpu() || !s.layout.folds {
        return false;
    }
    let folds = |w: &Weight| (0..w.parts.len()).all(|i| cpu::can_fold(t, &w.part(i)));
    let one_part = |w: &Weight| w.parts.len() == 1 && folds(w);
    (0..s.cfg.n_layers).all(|l| {
        let w = |suffix: &str| s.weights.get(&weights::layer(l, suffix));
        w("attn_qkv").is_some_and(folds)
            && w("ffn_gate_up").is_some_and(folds)
            && w(weights::ATTN_OUT).is_some_and(one_part)
            && w(FFN_DOWN).is_some_and(one_part)
    }) && folds(s.output())
}
