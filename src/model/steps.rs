//! The graphs' steps (graph.rs calls each in one line): which kernels run a step in the Layout's
//! family. The GPU family fuses rmsnorm + qkv + RoPE and rmsnorm + gate_up + swiglu into one
//! kernel each where the layer's matrices share a buffer; the CPU family runs one matvec over such
//! a group, swiglu over its packed output, and rotates q and k in the decode attention.

use super::graph::Parts;
use super::weight::Weight;
use crate::error::Result;
use crate::format::weights::{
    self, ATTN_K, ATTN_NORM, ATTN_Q, ATTN_V, FFN_DOWN, FFN_GATE, FFN_NORM, FFN_UP, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD,
};
use crate::gpu::Family;
use crate::kernels::cpu;
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
}

impl<'a> Recorder<'a> {
    /// The decode graph's recorder.
    pub fn decode(s: &'a Parts<'a>) -> Recorder<'a> {
        Recorder { s, g: vec![], rows: 1 }
    }

    /// A batch graph's recorder for `rows` rows.
    pub fn batch(s: &'a Parts<'a>, rows: u32) -> Recorder<'a> {
        Recorder { s, g: vec![], rows }
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

    /// out (+)= W x for one token: one matvec per part of W.
    fn matvec(&mut self, w: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams) -> Result<()> {
        let (t, step) = (self.s.target(), &self.s.acts.step);
        for (i, (_, r0, _)) in w.parts.iter().enumerate() {
            let p = MatvecParams { out_offset: p.out_offset + r0, ..p };
            self.g.push(kernels::matvec(t, &w.part(i), x, out, step, p)?);
        }
        Ok(())
    }

    /// Decode: q | k | v = [Wq; Wk; Wv] rmsnorm(x), q and k roped: the GPU family's fused qkv
    /// kernel over the layer's group; else rmsnorm, one matvec over the group (or one per matrix)
    /// and, in the GPU family, rope (the CPU family leaves RoPE to attention).
    pub fn qkv(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let norm = s.vec(&weights::layer(l, ATTN_NORM));
        let wqkv = s.weights.get(&weights::layer(l, "attn_qkv"));
        if let (Family::Gpu, Some(wqkv)) = (self.family(), wqkv) {
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
            let ff = self.freq_factors();
            self.g.push(gpu::qkv(s.target(), &wqkv.part(0), &a.x, norm, &a.qkv, ff, &a.step, p)?);
            return Ok(());
        }
        self.rmsnorm(norm)?;
        let at = |out_offset: usize| MatvecParams { out_offset: out_offset as u32, ..Default::default() };
        match wqkv {
            Some(wqkv) => self.matvec(wqkv, &a.xb, &a.qkv, at(0))?,
            None => {
                self.matvec(s.w(&weights::layer(l, ATTN_Q)), &a.xb, &a.qkv, at(0))?;
                self.matvec(s.w(&weights::layer(l, ATTN_K)), &a.xb, &a.qkv, at(c.q_dim()))?;
                self.matvec(s.w(&weights::layer(l, ATTN_V)), &a.xb, &a.qkv, at(c.q_dim() + c.kv_dim()))?;
            }
        }
        if self.family() == Family::Gpu {
            self.rope()?;
        }
        Ok(())
    }

    /// Decode: x += W v.
    pub fn residual(&mut self, w: &Weight, v: &wgpu::Buffer) -> Result<()> {
        let a = self.s.acts;
        self.matvec(w, v, &a.x, MatvecParams { accumulate: 1, ..Default::default() })
    }

    /// Decode: the feed-forward's first half. GPU family: hb = silu(Wgate xb) * (Wup xb), xb =
    /// rmsnorm(x), by the fused gate_up kernel over the layer's group. CPU family: hb = gate | up
    /// by one matvec over the group, swiglu left to `down`. Without a group: hb, hb2 = gate, up.
    pub fn gate_up(&mut self, l: usize) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let norm = s.vec(&weights::layer(l, FFN_NORM));
        let wgu = s.weights.get(&weights::layer(l, "ffn_gate_up"));
        if let (Family::Gpu, Some(wgu)) = (self.family(), wgu) {
            self.g.push(gpu::gate_up(s.target(), &wgu.part(0), &a.x, norm, &a.hb, s.cfg.rms_eps)?);
            return Ok(());
        }
        self.rmsnorm(norm)?;
        match wgu {
            Some(wgu) => self.matvec(wgu, &a.xb, &a.hb, MatvecParams::default()),
            None => {
                self.matvec(s.w(&weights::layer(l, FFN_GATE)), &a.xb, &a.hb, MatvecParams::default())?;
                self.matvec(s.w(&weights::layer(l, FFN_UP)), &a.xb, &a.hb2, MatvecParams::default())
            }
        }
    }

    /// Decode: x += Wdown silu(gate) * up, swiglu first where `gate_up` did not run it.
    pub fn down(&mut self, l: usize) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let ffn = s.cfg.ffn_dim as u32;
        let grouped = s.weights.contains_key(&weights::layer(l, "ffn_gate_up"));
        match (self.family(), grouped) {
            (Family::Cpu, true) => self.g.push(cpu::swiglu_packed(s.target(), &a.hb, ffn, ffn)?), // hb = silu(hb) * hb[ffn..]
            (Family::Gpu, true) => {}        // the fused gate_up kernel did it
            (_, false) => self.swiglu(ffn)?, // hb = silu(hb) * hb2
        }
        self.matvec(
            s.w(&weights::layer(l, FFN_DOWN)),
            &a.hb,
            &a.x,
            MatvecParams { accumulate: 1, ..Default::default() },
        )
    }

    /// Decode: logits = Wout rmsnorm(x).
    pub fn logits(&mut self) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.rmsnorm(s.vec(OUTPUT_NORM))?;
        self.matvec(s.output(), &a.xb, &a.logits, MatvecParams::default())
    }
}
