//! Plain f32 CPU implementation of every op and of the whole forward pass: the test oracle and the
//! spec the GPU kernels must match. Reads weights in their GGUF layout through quant.rs.

use crate::error::Result;
use crate::format::config::Config;
use crate::format::gguf::{Gguf, TensorInfo};
use crate::format::quant::QuantType;
use crate::format::weights::{self, TensorSource};

/// A row-major f32 matrix: `rows` rows of `cols` values.
#[derive(Debug, Clone)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Rows r0..r0 + n as a matrix of their own.
    pub fn rows_of(&self, r0: usize, n: usize) -> Mat {
        Mat { rows: n, cols: self.cols, data: self.data[r0 * self.cols..(r0 + n) * self.cols].to_vec() }
    }
}

/// Dequantizes raw GGUF bytes of `ty` holding `rows` x `cols` values.
pub fn dequantize(ty: QuantType, bytes: &[u8], rows: usize, cols: usize) -> Result<Mat> {
    let mut data = vec![0f32; rows * cols];
    ty.dequantize(bytes, &mut data)?;
    Ok(Mat { rows, cols, data })
}

/// Dot product with eight partial sums (vectorizes, and is more accurate than one running sum).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// embed: row `token` of the embedding table.
pub fn embed(table: &Mat, token: u32) -> Vec<f32> {
    table.row(token as usize).to_vec()
}

/// rmsnorm: x / sqrt(mean(x^2) + eps) * w.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * scale * w).collect()
}

/// matvec: y[r] = dot(W[r], x) for a [rows, cols] matrix.
pub fn matvec(w: &Mat, x: &[f32]) -> Vec<f32> {
    matvec_rows(w, 0, w.rows, x)
}

/// y[r] = dot(W[r0 + r], x) for r < n: rows r0.. of W (one expert of a stacked matrix).
pub fn matvec_rows(w: &Mat, r0: usize, n: usize, x: &[f32]) -> Vec<f32> {
    (r0..r0 + n).map(|r| dot(w.row(r), x)).collect()
}

/// RoPE settings: angle of pair i at position pos = freq_scale * pos * base^(-2i/n_rot) / factors[i].
pub struct Rope<'a> {
    pub n_rot: usize,
    /// Pair i is (x[i], x[i + n_rot/2]) (llama.cpp's NEOX mode: qwen2, qwen3), else (x[2i], x[2i+1]).
    pub neox: bool,
    pub base: f32,
    pub freq_scale: f32,
    /// rope_freqs.weight ([n_rot / 2]), when the model has it.
    pub freq_factors: Option<&'a [f32]>,
}

/// rope: rotates the pairs of the first `n_rot` dims of each head (adjacent, llama.cpp's NORM mode; or
/// the two halves, NEOX mode) by the angle `r` gives for `pos`. `x` holds `n_heads` heads of `head_dim`.
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize, r: &Rope) {
    let n_rot = r.n_rot;
    for h in 0..n_heads {
        for i in 0..n_rot / 2 {
            let ff = r.freq_factors.map_or(1.0, |f| f[i]);
            let theta = r.freq_scale * pos as f32 * r.base.powf(-2.0 * i as f32 / n_rot as f32) / ff;
            let (s, c) = theta.sin_cos();
            let (j, j2) = if r.neox {
                (h * head_dim + i, h * head_dim + i + n_rot / 2)
            } else {
                (h * head_dim + 2 * i, h * head_dim + 2 * i + 1)
            };
            let (a, b) = (x[j], x[j2]);
            x[j] = a * c - b * s;
            x[j2] = a * s + b * c;
        }
    }
}

/// attention for one query position over `kv_len` cached positions with grouped-query heads:
/// `q` is [n_heads, head_dim]; `k`, `v` are [kv_len, n_kv_heads * head_dim]. Returns [n_heads, head_dim].
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    kv_len: usize,
) -> Vec<f32> {
    attention_scaled(q, k, v, [n_heads, n_kv_heads, head_dim, kv_len], 1.0 / (head_dim as f32).sqrt())
}

/// attention with the scores q k^T times `scale` (granite's attention.scale); `shape` is
/// [n_heads, n_kv_heads, head_dim, kv_len].
pub fn attention_scaled(q: &[f32], k: &[f32], v: &[f32], shape: [usize; 4], scale: f32) -> Vec<f32> {
    attention_capped(q, k, v, shape, scale, 0.0)
}

/// attention_scaled with each scaled score s soft-capped to cap * tanh(s / cap) (Gemma 2's; 0: none).
pub fn attention_capped(q: &[f32], k: &[f32], v: &[f32], shape: [usize; 4], scale: f32, cap: f32) -> Vec<f32> {
    let [n_heads, n_kv_heads, head_dim, kv_len] = shape;
    let kv_dim = n_kv_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let mut out = vec![0f32; n_heads * head_dim];
    for h in 0..n_heads {
        let kvh = h / group;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let scores: Vec<f32> = (0..kv_len)
            .map(|t| soft_cap(dot(qh, &k[t * kv_dim + kvh * head_dim..][..head_dim]) * scale, cap))
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let o = &mut out[h * head_dim..(h + 1) * head_dim];
        for (t, e) in exps.iter().enumerate() {
            let vt = &v[t * kv_dim + kvh * head_dim..][..head_dim];
            for d in 0..head_dim {
                o[d] += e / sum * vt[d];
            }
        }
    }
    out
}

/// cap * tanh(v / cap), in f64; v where cap is 0.
pub fn soft_cap(v: f32, cap: f32) -> f32 {
    if cap == 0.0 {
        return v;
    }
    (cap as f64 * (v as f64 / cap as f64).tanh()) as f32
}

/// qkv: xb = rmsnorm(x) * norm_w; q = Wq xb, k = Wk xb (both roped at `pos`), v = Wv xb.
#[allow(clippy::too_many_arguments)]
pub fn qkv(
    x: &[f32],
    norm_w: &[f32],
    eps: f32,
    wq: &Mat,
    wk: &Mat,
    wv: &Mat,
    pos: usize,
    r: &Rope,
    head_dim: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let xb = rmsnorm(x, norm_w, eps);
    let (mut q, mut k) = (matvec(wq, &xb), matvec(wk, &xb));
    rope(&mut q, wq.rows / head_dim, head_dim, pos, r);
    rope(&mut k, wk.rows / head_dim, head_dim, pos, r);
    (q, k, matvec(wv, &xb))
}

/// qkv_bias: q | k | v += bq | bk | bv, for `rows` rows of [q | k | v] (qwen2).
pub fn qkv_bias(qkv: &mut [f32], bq: &[f32], bk: &[f32], bv: &[f32]) {
    let bias: Vec<f32> = [bq, bk, bv].concat();
    qkv.chunks_mut(bias.len()).for_each(|row| add(row, &bias));
}

/// head_rmsnorm: each head of `x` ([n, head_dim]) RMS-normed on its own, times `w` ([head_dim]) (qwen3's
/// q and k norms).
pub fn head_rmsnorm(x: &mut [f32], w: &[f32], eps: f32) {
    for head in x.chunks_mut(w.len()) {
        let normed = rmsnorm(head, w, eps);
        head.copy_from_slice(&normed);
    }
}

/// gate_up: act(Wgate xb) * (Wup xb) with xb = rmsnorm(x) * norm_w (glu's act).
pub fn gate_up(x: &[f32], norm_w: &[f32], eps: f32, w_gate: &Mat, w_up: &Mat, gelu: bool) -> Vec<f32> {
    let xb = rmsnorm(x, norm_w, eps);
    glu(&matvec(w_gate, &xb), &matvec(w_up, &xb), gelu)
}

/// The feed-forward's gated activation: geglu where `gelu` (Gemma), else swiglu.
pub fn glu(gate: &[f32], up: &[f32], gelu: bool) -> Vec<f32> {
    if gelu {
        geglu(gate, up)
    } else {
        swiglu(gate, up)
    }
}

/// swiglu: silu(gate) * up.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect()
}

/// geglu: gelu(gate) * up (gemma2, gemma3), GELU in ggml's tanh form: 0.5 g (1 + tanh(sqrt(2 / pi) (g +
/// 0.044715 g^3))), computed in f64.
pub fn geglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let gelu = |g: f64| 0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh());
    gate.iter().zip(up).map(|(&g, &u)| (gelu(g as f64) * u as f64) as f32).collect()
}

/// moe_route: the `k` experts a token runs and their weights, from the router's logits (one per
/// expert): softmax, the k largest (the lower index first on ties), renormalized to sum 1.
pub fn moe_route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let p: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let sum: f32 = order[..k].iter().map(|&e| p[e]).sum();
    order[..k].iter().map(|&e| (e, p[e] / sum)).collect()
}

/// moe_ffn: sum over the routed experts e (weight w) of w * Wdown_e (silu(Wgate_e xb) * (Wup_e xb)),
/// where expert e's rows of each stacked matrix follow expert e-1's.
pub fn moe_ffn(xb: &[f32], route: &[(usize, f32)], n_experts: usize, gate: &Mat, up: &Mat, down: &Mat) -> Vec<f32> {
    let (ffn, dim) = (gate.rows / n_experts, down.rows / n_experts);
    let mut out = vec![0f32; dim];
    for &(e, w) in route {
        let h = swiglu(&matvec_rows(gate, e * ffn, ffn, xb), &matvec_rows(up, e * ffn, ffn, xb));
        let y = matvec_rows(down, e * dim, dim, &h);
        out.iter_mut().zip(y).for_each(|(o, y)| *o += w * y);
    }
    out
}

/// add: the residual add, a += b.
pub fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// argmax: the index of the largest value (the first one on ties).
pub fn argmax(x: &[f32]) -> u32 {
    // NaN is passed over (0 where every value is NaN).
    let mut best: Option<usize> = None;
    for (i, &v) in x.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|b| v > x[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0) as u32
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    /// qwen2 and some llama files: bq, bk, bv.
    qkv_bias: Option<[Vec<f32>; 3]>,
    /// Some llama files: Wo's bias.
    out_bias: Option<Vec<f32>>,
    /// qwen3: the per-head norms of q and k.
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Mat,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
    /// Gemma: the norms of the attention's output and of the feed-forward's, before x.
    post_norms: Option<[Vec<f32>; 2]>,
}

/// A layer's feed-forward: dense SwiGLU, or a mixture of SwiGLU experts behind a router.
enum Ffn {
    /// With `bias` (some llama files): bgate, bup, bdown.
    Dense {
        w_gate: Mat,
        w_up: Mat,
        w_down: Mat,
        bias: Option<[Vec<f32>; 3]>,
    },
    Experts {
        router: Mat,
        gate: Mat,
        up: Mat,
        down: Mat,
    },
}

/// The whole model in f32 on the CPU, with its own KV cache.
pub struct RefModel {
    pub cfg: Config,
    embd: Mat,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: Option<Mat>,
    rope_freqs: Option<Vec<f32>>,
    /// Per layer: [positions, kv_dim] keys and values.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
}

impl RefModel {
    /// Loads and dequantizes every weight (checked by weights::check first).
    pub fn load(g: &Gguf, src: &mut dyn TensorSource) -> Result<RefModel> {
        let cfg = Config::from_gguf(g)?;
        weights::check(g, &cfg)?;
        let mut mat = |name: &str| -> Result<Mat> {
            let t: &TensorInfo = g.tensor(name).expect("checked by weights::check");
            let (rows, cols) = t.rows_cols();
            dequantize(t.ty, &src.read(t)?, rows as usize, cols as usize)
        };
        let embd = mat(weights::TOKEN_EMBD)?;
        let out_norm = mat(weights::OUTPUT_NORM)?.data;
        let output = if cfg.tied_output { None } else { Some(mat(weights::OUTPUT)?) };
        // The divisors for the context the builder gives by default (Phi-3's long or short ones).
        let rope_freqs = match cfg.rope_factors_for(crate::model::DEFAULT_CTX.min(cfg.ctx_len)) {
            Some(name) => Some(mat(name)?.data),
            None => None,
        };
        let mut layers = vec![];
        for i in 0..cfg.n_layers {
            let mut m = |s: &str| mat(&weights::layer(i, s));
            // A phi3 file's fused matrices, split back: q | k | v, and gate | up.
            let (wq, wk, wv) = match cfg.phi3_layout.fused_qkv {
                true => {
                    let qkv = m(weights::ATTN_QKV)?;
                    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
                    (qkv.rows_of(0, q), qkv.rows_of(q, kv), qkv.rows_of(q + kv, kv))
                }
                false => (m(weights::ATTN_Q)?, m(weights::ATTN_K)?, m(weights::ATTN_V)?),
            };
            let qkv_bias = match cfg.biases.qkv {
                true => {
                    Some([m(weights::ATTN_Q_BIAS)?.data, m(weights::ATTN_K_BIAS)?.data, m(weights::ATTN_V_BIAS)?.data])
                }
                false => None,
            };
            let qk_norm = match cfg.traits.qk_norm {
                true => Some([m(weights::ATTN_Q_NORM)?.data, m(weights::ATTN_K_NORM)?.data]),
                false => None,
            };
            let out_bias = if cfg.biases.out { Some(m(weights::ATTN_OUT_BIAS)?.data) } else { None };
            let post_norms = match cfg.post_norms() {
                true => Some([m(weights::ATTN_POST_NORM)?.data, m(weights::FFN_POST_NORM)?.data]),
                false => None,
            };
            let ffn_bias = match cfg.biases.ffn {
                true => Some([
                    m(weights::FFN_GATE_BIAS)?.data,
                    m(weights::FFN_UP_BIAS)?.data,
                    m(weights::FFN_DOWN_BIAS)?.data,
                ]),
                false => None,
            };
            layers.push(Layer {
                attn_norm: m(weights::ATTN_NORM)?.data,
                wq,
                wk,
                wv,
                qkv_bias,
                out_bias,
                qk_norm,
                post_norms,
                wo: m(weights::ATTN_OUT)?,
                ffn_norm: m(weights::FFN_NORM)?.data,
                ffn: match cfg.n_experts {
                    0 if cfg.phi3_layout.packed_gate_up => {
                        let gate_up = m(weights::FFN_UP)?;
                        let f = cfg.ffn_dim;
                        Ffn::Dense {
                            w_gate: gate_up.rows_of(0, f),
                            w_up: gate_up.rows_of(f, f),
                            w_down: m(weights::FFN_DOWN)?,
                            bias: ffn_bias,
                        }
                    }
                    0 => Ffn::Dense {
                        w_gate: m(weights::FFN_GATE)?,
                        w_up: m(weights::FFN_UP)?,
                        w_down: m(weights::FFN_DOWN)?,
                        bias: ffn_bias,
                    },
                    _ => Ffn::Experts {
                        router: m(weights::FFN_GATE_INP)?,
                        gate: m(weights::FFN_GATE_EXPS)?,
                        up: m(weights::FFN_UP_EXPS)?,
                        down: m(weights::FFN_DOWN_EXPS)?,
                    },
                },
            });
        }
        let n = cfg.n_layers;
        Ok(RefModel {
            cfg,
            embd,
            layers,
            out_norm,
            output,
            rope_freqs,
            k_cache: vec![vec![]; n],
            v_cache: vec![vec![]; n],
        })
    }

    /// Number of positions in the KV cache.
    pub fn positions(&self) -> usize {
        self.k_cache.first().map_or(0, |k| k.len() / self.cfg.kv_dim())
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.k_cache.iter_mut().chain(self.v_cache.iter_mut()).for_each(Vec::clear);
    }

    /// Runs one token at the next position and returns the logits over the vocabulary.
    pub fn forward(&mut self, token: u32) -> Vec<f32> {
        let c = self.cfg.clone();
        let pos = self.positions();
        let mut x = embed(&self.embd, token); // [dim]
        x.iter_mut().for_each(|v| *v *= c.multipliers.embedding_scale);
        for (l, layer) in self.layers.iter().enumerate() {
            // The layer's RoPE base and scale (Gemma's sliding-window layers may have their own).
            let (base, freq_scale) = c.layer_rope(l);
            let r = Rope {
                n_rot: c.n_rot,
                neox: c.traits.rope_neox,
                base,
                freq_scale,
                freq_factors: self.rope_freqs.as_deref(),
            };
            let xb = rmsnorm(&x, &layer.attn_norm, c.rms_eps); // [dim]
                                                               // q [n_heads * head_dim], k and v [n_kv_heads * head_dim]
            let (mut q, mut k, mut v) = (matvec(&layer.wq, &xb), matvec(&layer.wk, &xb), matvec(&layer.wv, &xb));
            if let Some([bq, bk, bv]) = &layer.qkv_bias {
                add(&mut q, bq);
                add(&mut k, bk);
                add(&mut v, bv);
            }
            if let Some([q_norm, k_norm]) = &layer.qk_norm {
                head_rmsnorm(&mut q, q_norm, c.rms_eps);
                head_rmsnorm(&mut k, k_norm, c.rms_eps);
            }
            // (SmolLM3's every 4th layer has no RoPE.)
            if c.layer_ropes(l) {
                rope(&mut q, c.n_heads, c.head_dim, pos, &r);
                rope(&mut k, c.n_kv_heads, c.head_dim, pos, &r);
            }
            if c.rope_attn_factor != 1.0 {
                // As ggml's rope: the rotated dimensions times the attention factor (Phi-3.5).
                for head in q.chunks_mut(c.head_dim).chain(k.chunks_mut(c.head_dim)) {
                    head[..c.n_rot].iter_mut().for_each(|v| *v *= c.rope_attn_factor);
                }
            }
            self.k_cache[l].extend_from_slice(&k);
            self.v_cache[l].extend_from_slice(&v);
            // The scale of q k^T: granite's or Gemma's, else 1 / sqrt(head_dim) (the RoPE attention
            // factor is in q and k already).
            let scale = c.multipliers.attention_scale.unwrap_or(1.0 / (c.head_dim as f32).sqrt());
            // A sliding-window layer sees its last `window` positions, its own included.
            let first = pos + 1 - c.positions_seen(l, pos + 1);
            let shape = [c.n_heads, c.n_kv_heads, c.head_dim, pos + 1 - first];
            let kv = first * c.kv_dim();
            let (k, v) = (&self.k_cache[l][kv..], &self.v_cache[l][kv..]);
            let att = attention_capped(&q, k, v, shape, scale, c.softcaps().0);
            let mut out = matvec(&layer.wo, &att);
            if let Some(bo) = &layer.out_bias {
                add(&mut out, bo);
            }
            // Granite adds residual_scale times each block's output; Gemma adds its rmsnorm times
            // the block's post-norm (`which`: 0 attention, 1 feed-forward).
            let residual = |x: &mut Vec<f32>, mut out: Vec<f32>, which: usize| {
                if let Some(norms) = &layer.post_norms {
                    out = rmsnorm(&out, &norms[which], c.rms_eps);
                }
                out.iter_mut().for_each(|v| *v *= c.multipliers.residual_scale);
                add(x, &out);
            };
            residual(&mut x, out, 0);
            match &layer.ffn {
                Ffn::Dense { w_gate, w_up, w_down, bias } => {
                    let xb = rmsnorm(&x, &layer.ffn_norm, c.rms_eps);
                    let (mut gate, mut up) = (matvec(w_gate, &xb), matvec(w_up, &xb)); // [ffn_dim]
                    if let Some([b_gate, b_up, _]) = bias {
                        add(&mut gate, b_gate);
                        add(&mut up, b_up);
                    }
                    let h = glu(&gate, &up, c.ffn_gelu());
                    let mut out = matvec(w_down, &h);
                    if let Some([_, _, b_down]) = bias {
                        add(&mut out, b_down);
                    }
                    residual(&mut x, out, 1);
                }
                Ffn::Experts { router, gate, up, down } => {
                    let xb = rmsnorm(&x, &layer.ffn_norm, c.rms_eps);
                    let route = moe_route(&matvec(router, &xb), c.n_experts_used); // [n_experts_used] (expert, weight)
                    add(&mut x, &moe_ffn(&xb, &route, c.n_experts, gate, up, down));
                }
            }
        }
        let xb = rmsnorm(&x, &self.out_norm, c.rms_eps);
        let logits = matvec(self.output.as_ref().unwrap_or(&self.embd), &xb); // [vocab]
                                                                              // Granite's divisor; Gemma 2's soft-cap.
        logits.into_iter().map(|l| soft_cap(l / c.multipliers.logit_scale, c.softcaps().1)).collect()
    }
}
