//! The graphs' steps (graph.rs calls each in one line): which kernels run a step in the Layout's
//! family. The GPU family fuses rmsnorm + qkv + RoPE and rmsnorm + gate_up + swiglu into one
//! kernel each where the layer's matrices share a buffer; the CPU family folds rmsnorm and swiglu
//! into the decode matvecs where every matrix allows it (`Recorder::decode`), and rotates q and k
//! in the decode attention.

use super::graph::Parts;
use super::weight::Weight;
use crate::error::Result;
use crate::format::config::Config;
use crate::format::weights::{
    self, ATTN_K, ATTN_K_BIAS, ATTN_K_NORM, ATTN_NORM, ATTN_OUT_BIAS, ATTN_Q, ATTN_Q_BIAS, ATTN_Q_NORM, ATTN_V,
    ATTN_V_BIAS, FFN_DOWN, FFN_DOWN_BIAS, FFN_DOWN_EXPS, FFN_GATE, FFN_GATE_BIAS, FFN_GATE_EXPS, FFN_GATE_INP,
    FFN_NORM, FFN_UP, FFN_UP_BIAS, FFN_UP_EXPS, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD,
};
use crate::gpu::{Family, Layout};
use crate::kernels::cpu::{self, Fold};
use crate::kernels::gpu::{self, QkvParams};
use crate::kernels::{
    self, AddBiasParams, AttentionBuffers, AttentionParams, AttentionRows, Dispatch, GatedAct, HeadRmsnormParams,
    MatmulParams, MatvecParams, MoeMatmulParams, MoeMatvecParams, MoeRouteParams, NormOut, QkvBiasParams, QuantMatrix,
    RopeParams, ValueMap,
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
    /// Decode, GPU family: attention leaves its splits (at most this many) unmerged and Wo's
    /// activation loader merges them (kernels::gpu::matvec_combine), for a short context.
    combine_in_wo: Option<u32>,
}

impl<'a> Recorder<'a> {
    /// The decode graph's recorder; `combine_in_wo`: attention split in at most that many, merged
    /// in Wo (GPU family).
    pub fn decode(s: &'a Parts<'a>, combine_in_wo: Option<u32>) -> Recorder<'a> {
        Recorder { s, g: vec![], rows: 1, folds: decode_folds(s), combine_in_wo }
    }

    /// A batch graph's recorder for `rows` rows.
    pub fn batch(s: &'a Parts<'a>, rows: u32) -> Recorder<'a> {
        Recorder { s, g: vec![], rows, folds: false, combine_in_wo: None }
    }

    pub fn done(self) -> Vec<Dispatch> {
        self.g
    }

    fn family(&self) -> Family {
        self.s.layout.family
    }

    /// x[t] = embedding[tokens[t]] for the step's tokens, at most `rows` (each part of the table
    /// looks up its own).
    pub fn embed(&mut self, rows: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let embd = s.w(TOKEN_EMBD);
        for (i, (_, row_start, _)) in embd.parts.iter().enumerate() {
            let part = embd.part(i);
            self.g.push(kernels::embed(s.target(), &part, *row_start, &a.tokens, &a.x, &a.step, 0, rows)?);
        }
        Ok(())
    }

    /// xb = rmsnorm(x) * norm_w for every row.
    pub fn rmsnorm(&mut self, norm_w: &wgpu::Buffer) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.g.push(kernels::rmsnorm(
            s.target(),
            &a.x,
            norm_w,
            NormOut::Write(&a.xb),
            &a.step,
            s.cfg.dim as u32,
            s.cfg.rms_eps,
            self.rows,
        )?);
        Ok(())
    }

    /// q, k = rope(q), rope(k) in acts.qkv for every row (k's heads follow q's), with layer l's
    /// base and scale (Gemma's sliding-window layers may have their own); nothing in a layer
    /// without RoPE (SmolLM3's every 4th).
    pub fn rope(&mut self, l: usize) -> Result<()> {
        let (s, c) = (self.s, self.s.cfg);
        if !c.layer_ropes(l) {
            return Ok(()); // SmolLM3's every 4th layer
        }
        let (freq_base, freq_scale) = c.layer_rope(l);
        let p = RopeParams {
            n_heads: (c.n_heads + c.n_kv_heads) as u32,
            head_dim: c.head_dim as u32,
            n_rot: c.n_rot as u32,
            freq_base,
            freq_scale,
            row_stride: c.qkv_dim() as u32,
            neox: c.traits.rope_neox as u32,
            ..Default::default()
        };
        self.g.push(kernels::rope(s.target(), &s.acts.qkv, self.freq_factors(), &s.acts.step, p, self.rows)?);
        Ok(())
    }

    /// q | k | v += bq | bk | bv for every row, where the model has the biases (qwen2, some llama
    /// files).
    pub fn qkv_bias(&mut self, l: usize) -> Result<()> {
        let (s, c) = (self.s, self.s.cfg);
        if !c.biases.qkv {
            return Ok(());
        }
        let bias = [ATTN_Q_BIAS, ATTN_K_BIAS, ATTN_V_BIAS].map(|b| s.vec(&weights::layer(l, b)));
        let p = QkvBiasParams {
            q_dim: c.q_dim() as u32,
            kv_dim: c.kv_dim() as u32,
            row_stride: c.qkv_dim() as u32,
            ..Default::default()
        };
        self.g.push(kernels::qkv_bias(s.target(), &s.acts.qkv, bias, p, self.rows)?);
        Ok(())
    }

    /// x += bo for every row, where the model has Wo's bias (a llama file's).
    pub fn out_bias(&mut self, l: usize) -> Result<()> {
        let c = self.s.cfg;
        if !c.biases.out {
            return Ok(());
        }
        self.add_bias(&self.s.acts.x, ATTN_OUT_BIAS, l, c.dim as u32, [c.dim as u32, 0])
    }

    /// Where the model has the feed-forward's biases (a llama file's): gate += bgate, up += bup
    /// for every row, gate and up in hb and hb2 (`packed`: both in hb, gate | up, as the decode graph
    /// leaves them in either family when the feed-forward has biases).
    pub fn gate_up_bias(&mut self, l: usize, packed: bool) -> Result<()> {
        let (a, ffn) = (self.s.acts, self.s.cfg.ffn_dim as u32);
        if !self.s.cfg.biases.ffn {
            return Ok(());
        }
        match packed {
            true => {
                self.add_bias(&a.hb, FFN_GATE_BIAS, l, ffn, [2 * ffn, 0])?;
                self.add_bias(&a.hb, FFN_UP_BIAS, l, ffn, [2 * ffn, ffn])
            }
            false => {
                self.add_bias(&a.hb, FFN_GATE_BIAS, l, ffn, [ffn, 0])?;
                self.add_bias(&a.hb2, FFN_UP_BIAS, l, ffn, [ffn, 0])
            }
        }
    }

    /// x += bdown for every row, where the model has the feed-forward's biases (a llama file's).
    pub fn down_bias(&mut self, l: usize) -> Result<()> {
        let c = self.s.cfg;
        if !c.biases.ffn {
            return Ok(());
        }
        self.add_bias(&self.s.acts.x, FFN_DOWN_BIAS, l, c.dim as u32, [c.dim as u32, 0])
    }

    /// x *= granite's embedding multiplier, for every row (other models: nothing).
    pub fn embedding_scale(&mut self) -> Result<()> {
        let (c, a) = (self.s.cfg, self.s.acts);
        self.scale(&a.x, c.dim as u32, c.multipliers.embedding_scale)
    }

    /// v *= granite's residual multiplier for every row, `len` values a row (other models:
    /// nothing): the attention's output before Wo, or SwiGLU's before Wdown, which then add
    /// residual_scale * their product to x.
    pub fn residual_scale(&mut self, v: &wgpu::Buffer, len: u32) -> Result<()> {
        self.scale(v, len, self.s.cfg.multipliers.residual_scale)
    }

    /// out[r, ..len] *= `by` for every row, rows `len` apart; nothing where `by` is 1.
    fn scale(&mut self, out: &wgpu::Buffer, len: u32, by: f32) -> Result<()> {
        if by == 1.0 {
            return Ok(());
        }
        let p = AddBiasParams { len, row_stride: len, offset: 0, scale: by };
        self.g.push(kernels::scale_values(self.s.target(), out, &self.s.acts.step, p, self.rows, ValueMap::Scale)?);
        Ok(())
    }

    /// out[r, offset..offset + len] += layer l's bias `suffix` ([len]) for every row, rows
    /// `row_stride` apart.
    fn add_bias(&mut self, out: &wgpu::Buffer, suffix: &str, l: usize, len: u32, at: [u32; 2]) -> Result<()> {
        let bias = self.s.vec(&weights::layer(l, suffix));
        let [row_stride, offset] = at;
        let p = AddBiasParams { len, row_stride, offset, scale: 1.0 };
        self.g.push(kernels::add_bias(self.s.target(), out, bias, &self.s.acts.step, p, self.rows)?);
        Ok(())
    }

    /// q, k = rmsnorm of each head, times q_norm or k_norm, for every row, where the architecture has
    /// the norms (qwen3).
    pub fn head_rmsnorm(&mut self, l: usize) -> Result<()> {
        let (s, c) = (self.s, self.s.cfg);
        if !c.traits.qk_norm {
            return Ok(());
        }
        let norms = [ATTN_Q_NORM, ATTN_K_NORM].map(|n| s.vec(&weights::layer(l, n)));
        let p = HeadRmsnormParams {
            head_dim: c.head_dim as u32,
            n_q_heads: c.n_heads as u32,
            row_stride: c.qkv_dim() as u32,
            eps: c.rms_eps,
        };
        let t = s.target();
        self.g.push(kernels::head_rmsnorm(t, &s.acts.qkv, norms, p, c.n_kv_heads as u32, self.rows)?);
        Ok(())
    }

    fn freq_factors(&self) -> &'a wgpu::Buffer {
        self.s.weights.get(ROPE_FREQS).map_or(&self.s.acts.rope_ones, |f| f.vector())
    }

    /// att = causal softmax(q k^T / sqrt(head_dim)) v for layer l's `which` rows (each row's last
    /// `window` positions in a sliding-window layer), their k and v into
    /// the cache (or the candidates' branches). The CPU family's decode rotates q and k here. Where
    /// Wo merges the splits (combine_in_wo), att is left as the splits' partials.
    pub fn attention(&mut self, l: usize, which: AttentionRows, n_splits: u32) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let in_kernel = which == AttentionRows::One && rope_in_attention(s.layout, c);
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
            qkv_stride: c.qkv_dim() as u32,
            n_splits,
            branch_len: s.branches.len,
            scale: c.attention_scale(),
            window: c.window(l) as u32,
            softcap: c.softcaps().0,
            slots: s.kv.slots(l),
            ..Default::default()
        };
        match self.combine_in_wo {
            Some(n_splits) if which == AttentionRows::One => {
                let p = AttentionParams { n_splits, ..p };
                self.g.push(kernels::attention_unmerged(s.target(), &b, &a.step, p)?)
            }
            _ => self.g.extend(kernels::attention(s.target(), &b, &a.step, p, which)?),
        }
        Ok(())
    }

    /// out (+)= W x for every row of the batch: one matmul per part of W.
    pub fn matmul(&mut self, w: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatmulParams) -> Result<()> {
        for (i, (_, r0, part_rows)) in w.parts.iter().enumerate() {
            let p = MatmulParams { out_offset: p.out_offset + r0, ..p };
            let mut d = kernels::matmul(self.s.target(), &w.part(i), x, out, &self.s.acts.step, p, self.rows)?;
            // A fused group's half (rows from w_row0, `rows` of them or the rest).
            if p.rows != 0 || p.w_row0 != 0 {
                let rest = part_rows.saturating_sub(p.w_row0);
                d.weight_rows = Some(if p.rows != 0 { p.rows.min(rest) } else { rest });
            }
            self.g.push(d);
        }
        Ok(())
    }

    /// q | k | v = [Wq; Wk; Wv] xb for every row (one matmul over the group where there is one).
    pub fn matmul_qkv(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let out = |out_offset: u32| MatmulParams {
            x_stride: c.dim as u32,
            out_stride: c.qkv_dim() as u32,
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

    /// gate = act(gate) * up over hb and hb2 (silu, or Gemma's gelu), `row_len` values a row, in the rows of the batch
    /// that hold tokens (step.n_rows; the decode graph's one).
    pub fn swiglu(&mut self, row_len: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        self.g.push(match self.rows {
            1 => kernels::swiglu(s.target(), &a.hb, &a.hb2, row_len, GatedAct::of(s.cfg))?,
            rows => kernels::swiglu_rows(s.target(), &a.hb, &a.hb2, &a.step, row_len, rows, GatedAct::of(s.cfg))?,
        });
        Ok(())
    }

    /// tokens[r] = argmax(logits[r]) for `rows` rows: on GPUs in two levels (many workgroups, then
    /// one per row), on CPU adapters one workgroup per row (a second dispatch costs more there).
    pub fn argmax(&mut self, rows: u32) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let (t, vocab) = (s.target(), s.cfg.vocab_size as u32);
        if s.layout.is_cpu() {
            self.g.push(kernels::argmax(t, &a.logits, &a.tokens, vocab, rows)?);
        } else {
            self.g.extend(kernels::argmax_spans(t, &a.logits, &a.argmax_spans, &a.tokens, vocab, rows)?);
        }
        Ok(())
    }

    /// out (+)= W x for one token: one matvec per part of W, with `fold` (CPU family) in each.
    fn matvec(&mut self, w: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams, fold: Fold) -> Result<()> {
        let (t, step) = (self.s.target(), &self.s.acts.step);
        self.per_part(w, p, |part, p| kernels::matvec_folded(t, part, x, out, step, p, fold))
    }

    /// One decode kernel per part of W (`kernel` of the part and `p` with out_offset moved to the
    /// part's first row).
    fn per_part(
        &mut self,
        w: &Weight,
        p: MatvecParams,
        kernel: impl Fn(&QuantMatrix, MatvecParams) -> Result<Dispatch>,
    ) -> Result<()> {
        for (i, (_, r0, _)) in w.parts.iter().enumerate() {
            self.g.push(kernel(&w.part(i), MatvecParams { out_offset: p.out_offset + r0, ..p })?);
        }
        Ok(())
    }

    /// The rmsnorm a matvec folds (CPU family, decode): of x, from the partial sums the last matvec
    /// into x left.
    fn norm_fold(&self, norm: &str) -> Fold<'a> {
        let (s, a) = (self.s, self.s.acts);
        Fold { norm: Some((s.vec(norm), &a.norms, s.cfg.rms_eps)), ..Default::default() }
    }

    /// Decode: q | k | v = [Wq; Wk; Wv] rmsnorm(x) (+ biases, q and k head-normed, where the
    /// architecture has them), q and k roped (the CPU family leaves LLaMA's RoPE to attention): the
    /// GPU family's fused qkv kernel over the layer's group (biases and NEOX RoPE in it; not qwen3's head norms); the CPU family's
    /// matvec folding rmsnorm (after the first layer, where folds run); else rmsnorm and the
    /// matvecs on their own.
    pub fn qkv(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let norm = weights::layer(l, ATTN_NORM);
        let wqkv = s.weights.get(&weights::layer(l, "attn_qkv"));
        match (self.family(), wqkv) {
            (Family::Gpu, Some(wqkv)) if !c.traits.qk_norm => {
                let bias =
                    c.biases.qkv.then(|| [ATTN_Q_BIAS, ATTN_K_BIAS, ATTN_V_BIAS].map(|b| s.vec(&weights::layer(l, b))));
                let (freq_base, freq_scale) = c.layer_rope(l);
                let p = QkvParams {
                    q_rows: c.q_dim() as u32,
                    kv_rows: c.kv_dim() as u32,
                    head_dim: c.head_dim as u32,
                    // No pair rotates in a layer without RoPE (SmolLM3's every 4th).
                    n_rot: if c.layer_ropes(l) { c.n_rot as u32 } else { 0 },
                    freq_base,
                    freq_scale,
                    eps: c.rms_eps,
                    neox: c.traits.rope_neox as u32,
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
                    bias,
                )?);
                return Ok(());
            }
            (Family::Cpu, Some(wqkv)) if self.folds && l > 0 => {
                self.matvec(wqkv, &a.x, &a.qkv, MatvecParams::default(), self.norm_fold(&norm))?;
                return self.qk_finish(l);
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
        self.qk_finish(l)
    }

    /// Decode, after the q | k | v projections: the biases and head norms, then RoPE unless
    /// attention rotates q and k.
    fn qk_finish(&mut self, l: usize) -> Result<()> {
        self.qkv_bias(l)?;
        self.head_rmsnorm(l)?;
        if !rope_in_attention(self.s.layout, self.s.cfg) {
            self.rope(l)?;
        }
        Ok(())
    }

    /// Decode: x += Wo att (the CPU family's folds leave the partial sums of squares of x for the
    /// next matvec's rmsnorm; where attention left its splits unmerged, Wo's loader merges them).
    /// Gemma: xb = Wo att instead, which post_norm adds to x.
    pub fn residual(&mut self, w: &Weight, v: &wgpu::Buffer) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let (out, accumulate) = s.block_out();
        let p = MatvecParams { accumulate, ..Default::default() };
        if let Some(n_splits) = self.combine_in_wo {
            let splits = gpu::Splits { n_heads: s.cfg.n_heads as u32, head_dim: s.cfg.head_dim as u32, n_splits };
            let t = s.target();
            return self.per_part(w, p, |part, p| gpu::matvec_combine(t, part, v, &a.partial, out, &a.step, p, splits));
        }
        let fold = Fold { partials_out: self.folds.then_some(&a.norms), ..Default::default() };
        self.matvec(w, v, out, p, fold)
    }

    /// Decode: the feed-forward's first half. GPU family: hb = silu(Wgate xb) * (Wup xb), xb =
    /// rmsnorm(x), by the fused gate_up kernel over the layer's group. CPU family, and the GPU
    /// family where the feed-forward has biases (they come before SwiGLU): hb = gate | up by one
    /// matvec over the group (rmsnorm folded where folds run; the biases added), swiglu left to
    /// `down`. Without a group: hb, hb2 = gate, up.
    pub fn gate_up(&mut self, l: usize) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        let norm = weights::layer(l, FFN_NORM);
        let wgu = s.weights.get(&weights::layer(l, "ffn_gate_up"));
        match (self.family(), wgu) {
            (Family::Gpu, Some(wgu)) if !s.cfg.biases.ffn => {
                let act = GatedAct::of(s.cfg);
                self.g.push(gpu::gate_up(s.target(), &wgu.part(0), &a.x, s.vec(&norm), &a.hb, s.cfg.rms_eps, act)?);
                return Ok(());
            }
            (Family::Cpu, Some(wgu)) if self.folds => {
                debug_assert!(!s.cfg.biases.ffn, "decode_folds is off where biases come before SwiGLU");
                return self.matvec(wgu, &a.x, &a.hb, MatvecParams::default(), self.norm_fold(&norm));
            }
            _ => {}
        }
        self.rmsnorm(s.vec(&norm))?;
        match wgu {
            Some(wgu) => self.matvec(wgu, &a.xb, &a.hb, MatvecParams::default(), Fold::default())?,
            None => {
                self.matvec(s.w(&weights::layer(l, FFN_GATE)), &a.xb, &a.hb, MatvecParams::default(), Fold::default())?;
                self.matvec(s.w(&weights::layer(l, FFN_UP)), &a.xb, &a.hb2, MatvecParams::default(), Fold::default())?
            }
        }
        self.gate_up_bias(l, wgu.is_some()) // gate += bgate, up += bup (a llama file's)
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
            (Family::Gpu, true) if !s.cfg.biases.ffn => {} // the fused gate_up kernel did it
            // hb = silu(hb) * hb[ffn..] (gate | up packed; the GPU family's too where biases came between)
            (_, true) => self.g.push(cpu::swiglu_packed(s.target(), &a.hb, ffn, ffn, GatedAct::of(s.cfg))?),
            (_, false) => self.swiglu(ffn)?, // hb = silu(hb) * hb2
        }
        // hb *= granite's residual multiplier (folds are off there).
        self.residual_scale(&a.hb, ffn)?;
        // Gemma: xb = Wdown hb, which post_norm adds to x.
        let (out, accumulate) = s.block_out();
        self.matvec(
            s.w(&weights::layer(l, FFN_DOWN)),
            &a.hb,
            out,
            MatvecParams { accumulate, ..Default::default() },
            fold,
        )
    }

    /// logits = c * tanh(logits / c) for `rows` rows of the vocabulary, where the model soft-caps
    /// them (Gemma 2's c = final_logit_softcapping); nothing elsewhere.
    pub fn logit_softcap(&mut self, rows: u32) -> Result<()> {
        let (s, cap) = (self.s, self.s.cfg.softcaps().1);
        if cap == 0.0 {
            return Ok(());
        }
        let vocab = s.cfg.vocab_size as u32;
        let p = AddBiasParams { len: vocab, row_stride: vocab, offset: 0, scale: cap };
        self.g.push(kernels::scale_values(s.target(), &s.acts.logits, &s.acts.step, p, rows, ValueMap::SoftCap)?);
        Ok(())
    }

    /// x += rmsnorm(xb) * layer l's norm `suffix` for every row, where the model norms each block's
    /// output before adding it (Gemma's post_attention_norm after Wo, post_ffw_norm after Wdown).
    pub fn post_norm(&mut self, l: usize, suffix: &str) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        if !s.cfg.post_norms() {
            return Ok(());
        }
        let (norm, dim, eps) = (s.vec(&weights::layer(l, suffix)), s.cfg.dim as u32, s.cfg.rms_eps);
        self.g.push(kernels::rmsnorm(s.target(), &a.xb, norm, NormOut::Add(&a.x), &a.step, dim, eps, self.rows)?);
        Ok(())
    }

    /// The mixture-of-experts feed-forward for every row: xb = rmsnorm(x); the router's logits,
    /// each row's experts (moe_route); then, reading only the chosen experts' rows: decode, per
    /// routed slot, hb = silu(Wgate_e xb) * (Wup_e xb) and x += w_e Wdown_e hb; a batch, the same
    /// grouped by expert (moe_matmul) into per-slot buffers, summed into x by moe_sum.
    pub fn moe(&mut self, l: usize) -> Result<()> {
        let (s, c, a) = (self.s, self.s.cfg, self.s.acts);
        let (dim, ffn, rows) = (c.dim as u32, c.ffn_dim as u32, self.rows);
        let n_experts = c.n_experts as u32;
        self.rmsnorm(s.vec(&weights::layer(l, FFN_NORM)))?;
        let router = s.w(&weights::layer(l, FFN_GATE_INP));
        if rows == 1 {
            self.matvec(router, &a.xb, &a.router, MatvecParams::default(), Fold::default())?;
        } else {
            let p = MatmulParams { x_stride: dim, out_stride: n_experts, ..Default::default() };
            self.matmul(router, &a.xb, &a.router, p)?;
        }
        let p = MoeRouteParams { n_experts, n_used: c.n_experts_used as u32, rows, _pad: 0 };
        self.g.push(kernels::moe_route(s.target(), &a.router, &a.route, p)?);
        // Stacked experts are in one part (the builder refuses larger ones).
        let experts = |suffix: &str| s.w(&weights::layer(l, suffix)).part(0);
        let (gate, up, down) = (experts(FFN_GATE_EXPS), experts(FFN_UP_EXPS), experts(FFN_DOWN_EXPS));
        let n_used = c.n_experts_used as u32;
        if rows > 1 {
            // A batch, grouped by expert: item i = (token, routed slot).
            let n_items = rows * n_used;
            let p = MoeMatmulParams { rows: ffn, x_stride: dim, n_items, n_used, per_token: 1, ..Default::default() };
            let t = s.target();
            self.g.push(kernels::moe_matmul(t, &gate, &a.xb, &a.moe_h, &a.route, p, n_experts)?); // h[i] = Wgate_e xb[token]
            self.g.push(kernels::moe_matmul(t, &up, &a.xb, &a.moe_h2, &a.route, p, n_experts)?); // h2[i] = Wup_e xb[token]

            // h = silu(h) * h2, for the items of the tokens the batch holds (items are token-major).
            self.g.push(kernels::swiglu_rows(t, &a.moe_h, &a.moe_h2, &a.step, n_used * ffn, rows, GatedAct::Silu)?);
            let p = MoeMatmulParams { rows: dim, x_stride: ffn, per_token: 0, ..p };
            self.g.push(kernels::moe_matmul(t, &down, &a.moe_h, &a.moe_y, &a.route, p, n_experts)?); // y[i] = Wdown_e h[i]
            self.g.push(kernels::moe_sum(t, &a.moe_y, &a.route, &a.x, dim, n_used, rows)?); // x[t] += sum_j w_tj y[t, j]
            return Ok(());
        }
        for slot in 0..n_used {
            let p = MoeMatvecParams {
                rows: ffn,
                x_stride: dim,
                out_stride: ffn,
                slot,
                n_used: c.n_experts_used as u32,
                ..Default::default()
            };
            self.g.push(kernels::moe_matvec(s.target(), &gate, &a.xb, &a.hb, &a.route, p, rows)?); // hb = Wgate_e xb
            self.g.push(kernels::moe_matvec(s.target(), &up, &a.xb, &a.hb2, &a.route, p, rows)?); // hb2 = Wup_e xb
            self.swiglu(ffn)?; // hb = silu(hb) * hb2
            let p = MoeMatvecParams { rows: dim, x_stride: ffn, out_stride: dim, weighted: 1, ..p };
            self.g.push(kernels::moe_matvec(s.target(), &down, &a.hb, &a.x, &a.route, p, rows)?);
            // x += w_e Wdown_e hb
        }
        Ok(())
    }

    /// Decode: logits = Wout rmsnorm(x).
    pub fn logits(&mut self) -> Result<()> {
        let (s, a) = (self.s, self.s.acts);
        if self.folds {
            return self.matvec(s.output(), &a.x, &a.logits, MatvecParams::default(), self.norm_fold(OUTPUT_NORM));
        }
        if !s.layout.is_cpu() {
            // The GPU family folds the final rmsnorm into the output matrix's walk.
            let (t, w, p) = (s.target(), s.output(), MatvecParams { eps: s.cfg.rms_eps, ..Default::default() });
            for (i, (_, r0, _)) in w.parts.iter().enumerate() {
                let p = MatvecParams { out_offset: *r0, ..p };
                self.g.push(gpu::matvec_norm(t, &w.part(i), &a.x, s.vec(OUTPUT_NORM), &a.logits, &a.step, p)?);
            }
            return Ok(());
        }
        self.rmsnorm(s.vec(OUTPUT_NORM))?;
        self.matvec(s.output(), &a.xb, &a.logits, MatvecParams::default(), Fold::default())
    }
}

/// Whether the decode graph's attention rotates q and k (CPU family, LLaMA's q and k), in place of
/// a rope dispatch.
pub fn rope_in_attention(layout: &Layout, cfg: &Config) -> bool {
    layout.rope_in_attention() && cfg.llama_qk()
}

/// Whether the decode graph folds rmsnorm and swiglu into its matvecs: the CPU family with folds
/// on, every layer's matrices grouped, every decode matrix one cpu::can_fold reads, and the
/// matrices that leave partial sums (Wo, Wdown) in one part.
fn decode_folds(s: &Parts) -> bool {
    let t = s.target();
    // Biases added to x between the matvecs would be missed by the sums of squares they pass on,
    // granite's multiplier of SwiGLU's output by the swiglu fold.
    let c = s.cfg;
    // Gemma's post-norms come between a matvec and x.
    let unfoldable = c.biases.out || c.biases.ffn || c.multipliers.residual_scale != 1.0 || c.post_norms();
    if !s.layout.is_cpu() || !s.layout.folds || unfoldable {
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
