//! Every GPU kernel but attention (tests/attention.rs) and the mixture-of-experts ones
//! (tests/arch/) against its twin in reference.rs on random inputs, for every supported quant
//! type and every layout: normalized MSE at most 1e-6 and no value off by more than 1% of the
//! largest; a failure names the op, the type, the shape, the layout and the first bad index.

mod common;
#[path = "kernels/matmul.rs"]
mod matmul;

use common::kernels::*;
use common::{gpu, Rng};
use std::sync::Arc;
use webllama::format::quant::{QuantType, SUPPORTED};
use webllama::kernels::cpu;
use webllama::kernels::{
    self, AddBiasParams, GatedAct, HeadRmsnormParams, MatvecParams, NormOut, QkvBiasParams, QuantMatrix, RopeParams,
    Step, ValueMap,
};
use webllama::reference;
use webllama::{Family, Gpu, Layout};

#[test]
fn matvec_every_quant_type() {
    for g in every_layout() {
        matvec_every_quant_type_with(&g);
    }
}

fn matvec_every_quant_type_with(g: &On) {
    let mut rng = Rng(0x5eed);
    // 67 rows: not a multiple of the 4 rows per workgroup; 576 columns: SmolLM2's width; 224
    // columns: 7 blocks of 32, fewer than one group of matvec_wide's (on CPU adapters); 1000 x 576:
    // past one texture row of 8192 texels where the weights are in a texture (Q4_1: 23,000 texels).
    // 5 x 36: rows of 8k + 4 values for the 4-value types (F32, F16, BF16).
    for &(rows, cols) in &[(67usize, 576usize), (130, 1536), (33, 224), (1000, 576), (5, 36)] {
        for &ty in SUPPORTED {
            let cols = width(ty, cols);
            let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
            let x = rng.vec(cols);
            let mut wb = None;
            let (m, layout) = upload_matrix(g, ty, rows, cols, &bytes, &mut wb);
            let shape = format!("[{rows}x{cols}] {layout}");
            let xb = g.storage_with("x", bytemuck::cast_slice(&x));
            let want = reference::matvec(&w, &x);
            // Plain: out = W x.
            let out = g.storage("out", 4 * rows as u64);
            let d = kernels::matvec(g.t(), &m, &xb, &out, &step_on(g, 0), MatvecParams::default()).unwrap();
            kernels::submit(g, &[d]);
            check("matvec", ty.name(), &shape, &read_on(g, &out, rows), &want);
            if !g.layout.is_cpu() {
                // The GPU family's logits: rmsnorm folded in, into a part of out (at row 7).
                let norm_w = rng.vec(cols);
                let nb = g.storage_with("norm", bytemuck::cast_slice(&norm_w));
                let out = g.storage("out", 4 * (rows + 7) as u64);
                let p = MatvecParams { eps: 1e-5, out_offset: 7, ..Default::default() };
                let d = kernels::gpu::matvec_norm(g.t(), &m, &xb, &nb, &out, &step_on(g, 0), p).unwrap();
                kernels::submit(g, &[d]);
                let want = reference::matvec(&w, &reference::rmsnorm(&x, &norm_w, 1e-5));
                check("matvec(rmsnorm)", ty.name(), &shape, &read_on(g, &out, rows + 7)[7..], &want);
            }
            // Residual epilogue at a KV-cache position: out[off + pos * stride ..] += W x.
            let (pos, stride, off) = (3u32, rows as u32 + 5, 7u32);
            let n_out = (off + pos * stride) as usize + rows;
            let base = rng.vec(n_out);
            let out = g.storage_with("out", bytemuck::cast_slice(&base));
            let p = MatvecParams { accumulate: 1, out_offset: off, out_pos_stride: stride, ..Default::default() };
            let d = kernels::matvec(g.t(), &m, &xb, &out, &step_on(g, pos), p).unwrap();
            kernels::submit(g, &[d]);
            let mut want_acc = base.clone();
            let at = (off + pos * stride) as usize;
            reference::add(&mut want_acc[at..at + rows], &want);
            check("matvec+accumulate", ty.name(), &shape, &read_on(g, &out, n_out), &want_acc);
        }
    }
}

#[test]
fn matvec_folds_swiglu_and_rmsnorm_where_it_can() {
    // A producer matvec into x (residual add) leaving partial sums of squares, then a consumer with
    // rmsnorm(x) * norm_w folded in from them; and a down projection with swiglu folded in. On the
    // layouts that fold (CPU adapters with subgroups); the others must refuse.
    let mut rng = Rng(0xf01d);
    let mut folded = 0;
    for g in every_layout() {
        if let Ok(lanes) = std::env::var(LANES_ASKED) {
            if g.layout.subgroups {
                assert_eq!(g.layout.subgroup_sizes.0.to_string(), lanes, "{LANES_ASKED}: the adapter's subgroups");
            }
        }
        // A type for each wide walk: 20-, 24-, 34-byte blocks and Q6_K's superblocks (its rows
        // are whole superblocks: 768 and 256 values).
        for ty in [QuantType::Q4_1, QuantType::Q5_0, QuantType::Q8_0, QuantType::Q6K] {
            // (dim, consumer rows, ffn): SmolLM2's width, and 7 blocks (3.5 workgroups of 16 lanes with 4 rows
            // each). Run again with 4- to 64-lane subgroups (kernels_hold_with_4_to_64_lane_subgroups).
            for &(dim, rows, ffn) in &[(576usize, 130usize, 1536usize), (224, 67, 96)] {
                let (dim, ffn) = (width(ty, dim), width(ty, ffn));
                let (bo, wo) = random_matrix(ty, dim, dim, &mut rng);
                let (bc, wc) = random_matrix(ty, rows, dim, &mut rng);
                let (bd, wd) = random_matrix(ty, rows, ffn, &mut rng);
                let (mut so, mut sc, mut sd) = (None, None, None);
                let (mo, layout) = upload_matrix(&g, ty, dim, dim, &bo, &mut so);
                let (mc, _) = upload_matrix(&g, ty, rows, dim, &bc, &mut sc);
                let (md, _) = upload_matrix(&g, ty, rows, ffn, &bd, &mut sd);
                let shape = format!("[{rows}x{dim}] {layout}");
                let (att, x0, norm_w, gate_up) = (rng.vec(dim), rng.vec(dim), rng.vec(dim), rng.vec(2 * ffn));
                let (ab, xb, nb, gub) = (
                    g.storage_with("att", bytemuck::cast_slice(&att)),
                    g.storage_with("x", bytemuck::cast_slice(&x0)),
                    g.storage_with("norm", bytemuck::cast_slice(&norm_w)),
                    g.storage_with("gate_up", bytemuck::cast_slice(&gate_up)),
                );
                let partials = g.storage("partials", 4 * (dim + 4) as u64);
                let (out, step) = (g.storage("out", 4 * rows as u64), step_on(&g, 0));
                let add = MatvecParams { accumulate: 1, ..Default::default() };
                let produce = cpu::Fold { partials_out: Some(&partials), ..Default::default() };
                let consume = cpu::Fold { norm: Some((&nb, &partials, 1e-5)), ..Default::default() };
                let swiglu = cpu::Fold { swiglu_up: Some(ffn as u32), ..Default::default() };
                if !cpu::can_fold(g.t(), &mo) {
                    assert!(
                        matvec_fold(&g, &mo, &ab, &xb, &step, add, produce).is_err(),
                        "{shape}: folded where it cannot"
                    );
                    continue;
                }
                folded += 1;
                let d1 = matvec_fold(&g, &mo, &ab, &xb, &step, add, produce).unwrap();
                let d2 = matvec_fold(&g, &mc, &xb, &out, &step, MatvecParams::default(), consume).unwrap();
                kernels::submit(&g, &[d1, d2]);
                let mut x1 = x0.clone();
                reference::add(&mut x1, &reference::matvec(&wo, &att));
                check("matvec+partials", ty.name(), &shape, &read_on(&g, &xb, dim), &x1);
                let want = reference::matvec(&wc, &reference::rmsnorm(&x1, &norm_w, 1e-5));
                check("matvec(rmsnorm folded)", ty.name(), &shape, &read_on(&g, &out, rows), &want);
                kernels::submit(
                    &g,
                    &[matvec_fold(&g, &md, &gub, &out, &step, MatvecParams::default(), swiglu).unwrap()],
                );
                let want = reference::matvec(&wd, &reference::swiglu(&gate_up[..ffn], &gate_up[ffn..]));
                check(
                    "matvec(swiglu folded)",
                    ty.name(),
                    &format!("[{rows}x{ffn}] {layout}"),
                    &read_on(&g, &out, rows),
                    &want,
                );
            }
        }
    }
    assert!(folded > 0 || !gpu().has_subgroups(), "no layout folded on an adapter with subgroups");
}

/// The tests whose kernels reduce with subgroups, on both families: the CPU family's folds and
/// shared activations, the GPU family's row walk (matvec, the logits' rmsnorm, qkv, gate_up) and
/// argmax spans.
const SUBGROUP_TESTS: [&str; 7] = [
    "rmsnorm_matches",
    "matvec_folds_swiglu_and_rmsnorm_where_it_can",
    "matvec_every_quant_type",
    "qkv_every_quant_type",
    "gate_up_every_quant_type",
    "argmax_matches_and_takes_the_first_of_ties",
    "masked_argmax_and_logprobs_match_the_cpu_path",
];

#[test]
fn kernels_hold_with_4_to_64_lane_subgroups() {
    // The folds once assumed lavapipe's 8-lane subgroups and failed on NVIDIA's 32. lavapipe takes
    // its SIMD width from LP_NATIVE_VECTOR_WIDTH at start-up, so the same tests run again in child
    // processes with the subgroups of SwiftShader (4 lanes), Intel (16), NVIDIA and Apple (32) and
    // AMD (64).
    for lanes in [4, 16, 32, 64] {
        rerun_with_subgroup_lanes(lanes, &SUBGROUP_TESTS);
    }
}

#[test]
fn matvec_past_65535_workgroups() {
    // 262,200 rows / 4 rows per workgroup = 65,550 workgroups: the grid spills into y.
    let g = family(Family::Gpu);
    let mut rng = Rng(3);
    let (rows, cols, ty) = (262_200usize, 32usize, QuantType::Q8_0);
    let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
    let x = rng.vec(cols);
    let (wb, xb, out) = (
        g.storage_with("w", &gpu_blocks(&g, ty, &bytes)),
        g.storage_with("x", bytemuck::cast_slice(&x)),
        g.storage("out", 4 * rows as u64),
    );
    let m = QuantMatrix::stored(&g.layout, ty, &wb, rows as u32, cols as u32);
    kernels::submit(&g, &[kernels::matvec(g.t(), &m, &xb, &out, &step_on(&g, 0), MatvecParams::default()).unwrap()]);
    check("matvec", ty.name(), &format!("[{rows}x{cols}]"), &read_on(&g, &out, rows), &reference::matvec(&w, &x));
}

#[test]
fn embed_every_quant_type() {
    let mut rng = Rng(7);
    for g in every_layout() {
        for &ty in SUPPORTED {
            let (rows, cols) = (50usize, width(ty, 576));
            let (bytes, table) = random_matrix(ty, rows, cols, &mut rng);
            // Two parts of the table, as a table split by rows is looked up: rows 0..20 and 20..50,
            // each laid out as the loader lays it out on this layout.
            let rb = kernels::row_bytes(ty, cols as u32) as usize;
            let (mut s1, mut s2) = (None, None);
            let (p1, layout) = upload_matrix(&g, ty, 20, cols, &bytes[..20 * rb], &mut s1);
            let (p2, _) = upload_matrix(&g, ty, 30, cols, &bytes[20 * rb..], &mut s2);
            // A batch of 3 rows of which the step's 2 hold tokens: rows 0 and 1 are looked up (in
            // either part), row 2 is left as it was (zeros).
            let step = g.uniform("step", &Step::chunk(0, 2));
            for token in [0u32, 19, 20, 49] {
                let second = 49 - token;
                let tokens = g.storage_with("tokens", bytemuck::cast_slice(&[token, second, 30]));
                let out = g.storage("out", 3 * 4 * cols as u64);
                let d1 = kernels::embed(g.t(), &p1, 0, &tokens, &out, &step, 0, 3).unwrap();
                let d2 = kernels::embed(g.t(), &p2, 20, &tokens, &out, &step, 0, 3).unwrap();
                kernels::submit(&g, &[d1, d2]);
                let got = read_on(&g, &out, 3 * cols);
                let want = [reference::embed(&table, token), reference::embed(&table, second)].concat();
                let shape = format!("[{rows}x{cols}] tokens {token}, {second} {layout}");
                check("embed", ty.name(), &shape, &got[..2 * cols], &want);
                assert!(got[2 * cols..].iter().all(|&v| v == 0.0), "embed {shape}: the row past the step's");
            }
        }
    }
}

/// rmsnorm over 3 rows, on the GPU layout's kernel and the CPU adapters' (8 lanes per row through
/// a subgroup where the adapter has them).
#[test]
fn rmsnorm_matches() {
    let mut rng = Rng(11);
    for g in every_layout() {
        for n in [576usize, 1000, 4096] {
            // A grid of 4 rows for a batch of 3: the fourth row is left as it was (zero).
            let (x, w) = (rng.vec(4 * n), rng.vec(n));
            let (xb, wb, out) = (
                g.storage_with("x", bytemuck::cast_slice(&x)),
                g.storage_with("w", bytemuck::cast_slice(&w)),
                g.storage("out", 4 * 4 * n as u64),
            );
            let step = g.uniform("step", &Step::chunk(0, 3));
            let d = kernels::rmsnorm(g.t(), &xb, &wb, NormOut::Write(&out), &step, n as u32, 1e-5, 4).unwrap();
            kernels::submit(&g, &[d]);
            let mut want: Vec<f32> = x[..3 * n].chunks(n).flat_map(|row| reference::rmsnorm(row, &w, 1e-5)).collect();
            want.extend(vec![0.0; n]);
            let layout = format!("[3 of 4, {n}], rowwise {}, lanes {}", g.layout.is_cpu(), g.layout.act_lanes());
            check("rmsnorm", "f32", &layout, &read_on(&g, &out, 4 * n), &want);
            // Added (gemma3's post-norms): the normed rows added to what out holds.
            let base = rng.vec(4 * n);
            let out = g.storage_with("out", bytemuck::cast_slice(&base));
            let d = kernels::rmsnorm(g.t(), &xb, &wb, NormOut::Add(&out), &step, n as u32, 1e-5, 4).unwrap();
            kernels::submit(&g, &[d]);
            let added: Vec<f32> = want.iter().zip(&base).map(|(a, b)| a + b).collect();
            check("rmsnorm (added)", "f32", &layout, &read_on(&g, &out, 4 * n), &added);
        }
    }
}

#[test]
fn rope_matches() {
    let g = adapter();
    let mut rng = Rng(13);
    // (heads, head_dim, n_rot, pos, freq_scale, with factors, NEOX pairs): full rotation, a partial
    // one (n_rot < head_dim), linear scaling, per-frequency factors (LLaMA-3 rope_freqs), NEOX pairs
    // (qwen2, qwen3) full and partial.
    for &(heads, hd, n_rot, pos, scale, factors, neox) in &[
        (9usize, 64usize, 64usize, 0u32, 1.0f32, false, false),
        (3, 64, 64, 1234, 1.0, false, false),
        (4, 128, 64, 77, 1.0, false, false),
        (2, 64, 64, 900, 0.25, false, false),
        (8, 32, 32, 3000, 1.0, true, false),
        (6, 64, 64, 4321, 1.0, false, true),
        (4, 128, 64, 77, 0.5, true, true),
    ] {
        let stride = heads * hd + 3;
        let n = (pos as usize + 1) * stride;
        let x = rng.vec(n);
        let ff: Vec<f32> = (0..n_rot / 2).map(|i| if factors { 1.0 + (i as f32) * 1.7 } else { 1.0 }).collect();
        let buf = g.storage_with("x", bytemuck::cast_slice(&x));
        let ffb = g.storage_with("freq factors", bytemuck::cast_slice(&ff));
        let p = RopeParams {
            n_heads: heads as u32,
            head_dim: hd as u32,
            n_rot: n_rot as u32,
            offset: 0,
            pos_stride: stride as u32,
            freq_base: 100000.0,
            freq_scale: scale,
            row_stride: 0,
            neox: neox as u32,
            ..Default::default()
        };
        kernels::submit(&g, &[kernels::rope(g.t(), &buf, &ffb, &step_uniform(pos), p, 1).unwrap()]);
        let mut want = x.clone();
        let at = pos as usize * stride;
        let freq_factors = factors.then_some(&ff[..]);
        let r = reference::Rope { n_rot, neox, base: 100000.0, freq_scale: scale, freq_factors };
        reference::rope(&mut want[at..at + heads * hd], heads, hd, pos as usize, &r);
        check(
            "rope",
            "f32",
            &format!("[{heads}x{hd}] n_rot {n_rot} pos {pos} scale {scale} factors {factors} neox {neox}"),
            &read(&buf, n),
            &want,
        );
    }
}
/// qwen2's q | k | v biases, a llama file's other biases (add_bias) and qwen3's per-head q and k
/// norms, over batch rows of q | k | v.
#[test]
fn qkv_bias_and_head_rmsnorm_match() {
    let g = adapter();
    let mut rng = Rng(17);
    // (q heads, kv heads, head_dim, rows): Qwen2.5-0.5B's 14/2 x 64, Qwen3's 16/8 x 128, a tiny GQA.
    for &(heads, kv_heads, hd, rows) in &[(14usize, 2usize, 64usize, 3usize), (16, 8, 128, 2), (4, 2, 32, 5)] {
        let (q_dim, kv_dim) = (heads * hd, kv_heads * hd);
        let stride = q_dim + 2 * kv_dim;
        let shape = format!("[{rows}x{heads}+{kv_heads}+{kv_heads} heads x{hd}]");
        let x = rng.vec(rows * stride);
        let (bq, bk, bv) = (rng.vec(q_dim), rng.vec(kv_dim), rng.vec(kv_dim));
        let buf = g.storage_with("qkv", bytemuck::cast_slice(&x));
        let bufs = [&bq, &bk, &bv].map(|b| g.storage_with("bias", bytemuck::cast_slice(b)));
        let p = QkvBiasParams { q_dim: q_dim as u32, kv_dim: kv_dim as u32, row_stride: stride as u32, _pad: 0 };
        let d = kernels::qkv_bias(g.t(), &buf, [&bufs[0], &bufs[1], &bufs[2]], p, rows as u32).unwrap();
        kernels::submit(&g, &[d]);
        let mut want = x.clone();
        reference::qkv_bias(&mut want, &bq, &bk, &bv);
        check("qkv_bias", "f32", &shape, &read(&buf, x.len()), &want);

        // A llama file's other biases: one vector added inside each row (here over k's values).
        let b = rng.vec(kv_dim);
        let bias = g.storage_with("bias", bytemuck::cast_slice(&b));
        let p = AddBiasParams { len: kv_dim as u32, row_stride: stride as u32, offset: q_dim as u32, scale: 1.0 };
        // Each row that holds a token (step.n_rows of them); the graph's rows past them stay.
        let step = g.uniform("step", &webllama::kernels::Step::chunk(0, rows as u32 - 1));
        kernels::submit(&g, &[kernels::add_bias(g.t(), &buf, &bias, &step, p, rows as u32).unwrap()]);
        for row in want.chunks_mut(stride).take(rows - 1) {
            reference::add(&mut row[q_dim..q_dim + kv_dim], &b);
        }
        check("add_bias", "f32", &shape, &read(&buf, x.len()), &want);
        // granite's multipliers, the same way.
        let p = AddBiasParams { scale: 0.22, ..p };
        kernels::submit(&g, &[kernels::scale_values(g.t(), &buf, &step, p, rows as u32, ValueMap::Scale).unwrap()]);
        for row in want.chunks_mut(stride).take(rows - 1) {
            row[q_dim..q_dim + kv_dim].iter_mut().for_each(|v| *v *= 0.22);
        }
        check("scale_values", "f32", &shape, &read(&buf, x.len()), &want);
        // Gemma 2's soft-cap of the logits, the same way: c * tanh(v / c), c = 0.5 (values to about 3).
        let p = AddBiasParams { scale: 0.5, ..p };
        kernels::submit(&g, &[kernels::scale_values(g.t(), &buf, &step, p, rows as u32, ValueMap::SoftCap).unwrap()]);
        for row in want.chunks_mut(stride).take(rows - 1) {
            row[q_dim..q_dim + kv_dim].iter_mut().for_each(|v| *v = reference::soft_cap(*v, 0.5));
        }
        check("scale_values (soft-cap)", "f32", &shape, &read(&buf, x.len()), &want);

        let (q_norm, k_norm) = (rng.vec(hd), rng.vec(hd));
        let norms = [&q_norm, &k_norm].map(|n| g.storage_with("norm", bytemuck::cast_slice(n)));
        let p =
            HeadRmsnormParams { head_dim: hd as u32, n_q_heads: heads as u32, row_stride: stride as u32, eps: 1e-6 };
        let d = kernels::head_rmsnorm(g.t(), &buf, [&norms[0], &norms[1]], p, kv_heads as u32, rows as u32).unwrap();
        kernels::submit(&g, &[d]);
        for row in want.chunks_mut(stride) {
            let (q, k) = row.split_at_mut(q_dim);
            reference::head_rmsnorm(q, &q_norm, 1e-6);
            reference::head_rmsnorm(&mut k[..kv_dim], &k_norm, 1e-6);
        }
        check("head_rmsnorm", "f32", &shape, &read(&buf, x.len()), &want);
    }
}

/// The mixture of experts: each token's route (softmax, top-k, renormalized) from its router
/// logits, then an expert's rows of a stacked matrix of every quant type against a token, plain and
/// weighted into an accumulator, for 3 tokens routed apart.
#[test]
fn qkv_every_quant_type() {
    let mut rng = Rng(31);
    for g in gpu_layouts() {
        for &ty in SUPPORTED {
            // SmolLM2's shape (GQA 9/3 x 64, n_rot 64) and a partial rotation with rope_freqs; qwen2's
            // (14/2 x 64: biases, NEOX RoPE) and NEOX with a partial rotation; a llama file's biases
            // (Granite Code) with adjacent pairs and rope_freqs.
            for &(heads, kv_heads, hd, n_rot, pos, factors, neox, biased) in &[
                (9usize, 3usize, 64usize, 64usize, 7u32, false, false, false),
                (8, 2, 32, 16, 300, true, false, false),
                (14, 2, 64, 64, 11, false, true, true),
                (4, 2, 32, 16, 5, false, true, true),
                (8, 2, 32, 32, 19, true, false, true),
            ] {
                let dim = width(ty, heads * hd);
                let (q_rows, kv_rows) = (heads * hd, kv_heads * hd);
                let (bq, wq) = random_matrix(ty, q_rows, dim, &mut rng);
                let (bk, wk) = random_matrix(ty, kv_rows, dim, &mut rng);
                let (bv, wv) = random_matrix(ty, kv_rows, dim, &mut rng);
                let (x, norm) = (rng.vec(dim), rng.vec(dim));
                let ff: Vec<f32> = (0..n_rot / 2).map(|i| if factors { 1.0 + i as f32 } else { 1.0 }).collect();
                let wb = g.storage_with("wqkv", &gpu_blocks(&g, ty, &[bq, bk, bv].concat()));
                let m = QuantMatrix::stored(&g.layout, ty, &wb, (q_rows + 2 * kv_rows) as u32, dim as u32);
                let (xb, nb, fb) = (
                    g.storage_with("x", bytemuck::cast_slice(&x)),
                    g.storage_with("norm", bytemuck::cast_slice(&norm)),
                    g.storage_with("ff", bytemuck::cast_slice(&ff)),
                );
                let out = g.storage("qkv", 4 * (q_rows + 2 * kv_rows) as u64);
                let p = webllama::kernels::gpu::QkvParams {
                    q_rows: q_rows as u32,
                    kv_rows: kv_rows as u32,
                    head_dim: hd as u32,
                    n_rot: n_rot as u32,
                    freq_base: 10000.0,
                    freq_scale: 1.0,
                    eps: 1e-5,
                    neox: neox as u32,
                    ..Default::default()
                };
                let (bq, bk, bv) = (rng.vec(q_rows), rng.vec(kv_rows), rng.vec(kv_rows));
                let biases = [&bq, &bk, &bv].map(|b| g.storage_with("bias", bytemuck::cast_slice(b)));
                let bias = biased.then(|| [&biases[0], &biases[1], &biases[2]]);
                kernels::submit(
                    &g,
                    &[webllama::kernels::gpu::qkv(g.t(), &m, &xb, &nb, &out, &fb, &step_on(&g, pos), p, bias).unwrap()],
                );
                let r = reference::Rope {
                    n_rot,
                    neox,
                    base: 10000.0,
                    freq_scale: 1.0,
                    freq_factors: factors.then_some(&ff[..]),
                };
                // rmsnorm, the projections, the biases, then RoPE.
                let xn = reference::rmsnorm(&x, &norm, 1e-5);
                let mut want: Vec<f32> = [&wq, &wk, &wv].iter().flat_map(|w| reference::matvec(w, &xn)).collect();
                if biased {
                    reference::qkv_bias(&mut want, &bq, &bk, &bv);
                }
                reference::rope(&mut want[..q_rows], heads, hd, pos as usize, &r);
                reference::rope(&mut want[q_rows..q_rows + kv_rows], kv_heads, hd, pos as usize, &r);
                let what = format!("biases {biased}, NEOX {neox}");
                let shape = format!("[{heads}+2x{kv_heads} heads x {hd}, {dim}] {what} pos {pos} {}", g.layout);
                check("qkv", ty.name(), &shape, &read_on(&g, &out, want.len()), &want);
            }
        }
    }
}

#[test]
fn gate_up_every_quant_type() {
    let mut rng = Rng(37);
    for g in gpu_layouts() {
        for (i, &ty) in SUPPORTED.iter().enumerate() {
            // SwiGLU and GeGLU (gemma3) by turns.
            let act = if i % 2 == 0 { GatedAct::Silu } else { GatedAct::Gelu };
            let (ffn, dim) = (1536 + 32, width(ty, 576));
            let (bg, wg) = random_matrix(ty, ffn, dim, &mut rng);
            let (bu, wu) = random_matrix(ty, ffn, dim, &mut rng);
            let (x, norm) = (rng.vec(dim), rng.vec(dim));
            let wb = g.storage_with("w", &gpu_blocks(&g, ty, &[bg, bu].concat()));
            let m = QuantMatrix::stored(&g.layout, ty, &wb, 2 * ffn as u32, dim as u32);
            let (xb, nb) =
                (g.storage_with("x", bytemuck::cast_slice(&x)), g.storage_with("norm", bytemuck::cast_slice(&norm)));
            let out = g.storage("out", 4 * ffn as u64);
            kernels::submit(&g, &[webllama::kernels::gpu::gate_up(g.t(), &m, &xb, &nb, &out, 1e-5, act).unwrap()]);
            let want = reference::gate_up(&x, &norm, 1e-5, &wg, &wu, act == GatedAct::Gelu);
            let shape = format!("[2x{ffn}x{dim}] {act:?} {}", g.layout);
            check("gate_up", ty.name(), &shape, &read_on(&g, &out, ffn), &want);
        }
    }
}

/// act(gate) * up as reference.rs computes it.
fn glu(act: GatedAct, gate: &[f32], up: &[f32]) -> Vec<f32> {
    reference::glu(gate, up, act == GatedAct::Gelu)
}

#[test]
fn swiglu_and_geglu_match() {
    let g = family(Family::Cpu);
    let mut rng = Rng(19);
    let n = 1536;
    // Gates from -12 to 12: past GeGLU's +-10, where it is the identity or 0.
    let gate: Vec<f32> = rng.vec(n).iter().map(|v| v * 12.0).collect();
    let up = rng.vec(n);
    for act in [GatedAct::Silu, GatedAct::Gelu] {
        let gb = g.storage_with("gate", bytemuck::cast_slice(&gate));
        let ub = g.storage_with("up", bytemuck::cast_slice(&up));
        kernels::submit(&g, &[kernels::swiglu(g.t(), &gb, &ub, n as u32, act).unwrap()]);
        check("swiglu", &format!("{act:?}"), &format!("[{n}]"), &read(&gb, n), &glu(act, &gate, &up));
        // Packed: gate | up in one buffer (one matvec over [Wgate; Wup]).
        let both = g.storage_with("gate | up", bytemuck::cast_slice(&[gate.clone(), up.clone()].concat()));
        kernels::submit(&g, &[cpu::swiglu_packed(g.t(), &both, n as u32, n as u32, act).unwrap()]);
        check("swiglu_packed", &format!("{act:?}"), &format!("[{n}]"), &read(&both, n), &glu(act, &gate, &up));
        // A batch's rows: 4 rows of 384, of which the step's 3 hold tokens; the 4th is left as it was.
        let (rows, row_len) = (4usize, n / 4);
        let gb = g.storage_with("gate", bytemuck::cast_slice(&gate));
        let step = g.uniform("step", &Step::chunk(0, 3));
        let d = kernels::swiglu_rows(g.t(), &gb, &ub, &step, row_len as u32, rows as u32, act).unwrap();
        kernels::submit(&g, &[d]);
        let got = read(&gb, n);
        let want = glu(act, &gate[..3 * row_len], &up[..3 * row_len]);
        check("swiglu_rows", &format!("{act:?}"), &format!("[3 of {rows}, {row_len}]"), &got[..3 * row_len], &want);
        assert_eq!(&got[3 * row_len..], &gate[3 * row_len..], "the row past the step's is untouched");
    }
}

#[test]
fn argmax_matches_and_takes_the_first_of_ties() {
    let g = adapter();
    let mut rng = Rng(23);
    for n in [5usize, 49152, 128256] {
        let mut x = rng.vec(n);
        // A tie for the maximum: the lower index wins, as in reference::argmax.
        let (a, b) = (n / 3 + 1, n / 2 + 2);
        x[a] = 5.0;
        x[b.min(n - 1)] = 5.0;
        // NaN is passed over (first in a thread's walk, it once refused every logit after it).
        x[1] = f32::NAN;
        let xb = g.storage_with("logits", bytemuck::cast_slice(&x));
        let out = g.storage("result", 4);
        kernels::submit(&g, &[kernels::argmax(g.t(), &xb, &out, n as u32, 1).unwrap()]);
        let got = u32::from_le_bytes(pollster::block_on(g.read(&out, 0, 4)).unwrap().try_into().unwrap());
        assert_eq!(got, reference::argmax(&x), "argmax [{n}]");
    }
    // The two-level argmax (the GPU family's), 3 rows: row 0 ties in two spans (the first wins),
    // row 1 its best tied at its last two ids (the last, partial span), row 2 all equal (id 0);
    // rows 0 and 1 with a NaN at id 1.
    let span = kernels::ARGMAX_SPAN as usize;
    for n in [5usize, span, span + 1, 3 * span + 100, 49152, 128256] {
        let mut x = rng.vec(3 * n);
        let (a, b) = (n / 3 + 1, (n / 2 + span + 2).min(n - 1));
        x[a] = 5.0;
        x[b] = 5.0;
        x[n + n / 2] = 5.5;
        x[n + n - 2] = 6.0;
        x[n + n - 1] = 6.0;
        x[2 * n..].fill(1.0);
        x[1] = f32::NAN;
        x[n + 1] = f32::NAN;
        let xb = g.storage_with("logits", bytemuck::cast_slice(&x));
        let spans = g.storage("spans", kernels::argmax_spans_bytes(n as u32, 3));
        let out = g.storage("result", 12);
        kernels::submit(&g, &kernels::argmax_spans(g.t(), &xb, &spans, &out, n as u32, 3).unwrap());
        let got: Vec<u32> = bytemuck::cast_slice(&pollster::block_on(g.read(&out, 0, 12)).unwrap()).to_vec();
        let want: Vec<u32> = x.chunks(n).map(reference::argmax).collect();
        assert_eq!(got, want, "two-level argmax [3 x {n}]");
    }
}

#[test]
fn masked_argmax_and_logprobs_match_the_cpu_path() {
    // argmax_masked and its two-level form (argmax_masked_spans) against the CPU's masked argmax.
    use webllama::engine::constraint::apply_mask;
    use webllama::engine::logprobs::token_logprob;
    let k = kernels::TOP_LOGPROBS as usize;
    for g in [family(Family::Gpu), family(Family::Cpu)] {
        let mut rng = Rng(31);
        // 5: fewer tokens than TOP_LOGPROBS; 49159: a last mask word only partly used.
        for n in [5usize, 49159, 128256] {
            let rows = 4;
            let mut x: Vec<f32> = rng.vec(n * rows).iter().map(|v| v * 8.0).collect();
            // Row 3: every logit the same (ties past the kernel's room for candidates).
            x[3 * n..].fill(1.0);
            // Ties at the top of row 0: the lower id first, in both.
            x[n / 3] = 9.0;
            x[n / 2 + 1] = 9.0;
            let words = kernels::mask_words(n as u32) as usize;
            // Row 0 allows about three quarters of the tokens, rows 1 and 3 all, row 2 only its last.
            let mut mask: Vec<u32> = (0..words).map(|_| rng.next_u32() | rng.next_u32()).collect();
            mask.extend(std::iter::repeat_n(u32::MAX, words));
            let mut last = vec![0u32; words];
            last[(n - 1) / 32] = 1 << ((n - 1) % 32);
            mask.extend(last);
            mask.extend(std::iter::repeat_n(u32::MAX, words));
            let (xb, mb) = (
                g.storage_with("logits", bytemuck::cast_slice(&x)),
                g.storage_with("mask", bytemuck::cast_slice(&mask)),
            );
            let ids = g.storage("ids", 4 * rows as u64);
            let out = g.storage("logprobs", 4 * (kernels::LOGPROBS_STRIDE as usize * rows) as u64);
            let (n32, r32) = (n as u32, rows as u32);
            kernels::submit(
                &g,
                &[
                    kernels::argmax_masked(g.t(), &xb, &mb, &ids, n32, r32).unwrap(),
                    kernels::logprobs(g.t(), &xb, &ids, &out, n32, r32, r32).unwrap(),
                ],
            );
            let got_ids: Vec<u32> =
                bytemuck::pod_collect_to_vec(&pollster::block_on(g.read(&ids, 0, 4 * rows as u64)).unwrap());
            // The two-level masked argmax (the GPU family's) gives the same ids; with row 2's mask
            // cleared, none there.
            let spans = g.storage("spans", kernels::argmax_spans_bytes(n32, r32));
            let two = g.storage("two-level ids", 4 * rows as u64);
            kernels::submit(&g, &kernels::argmax_masked_spans(g.t(), &xb, &mb, &spans, &two, n32, r32).unwrap());
            let got_two: Vec<u32> =
                bytemuck::pod_collect_to_vec(&pollster::block_on(g.read(&two, 0, 4 * rows as u64)).unwrap());
            assert_eq!(got_two, got_ids, "two-level argmax_masked [{rows}x{n}] {}", g.layout);
            let mut none = mask.clone();
            none[2 * words..3 * words].fill(0);
            let nb = g.storage_with("no tokens in row 2", bytemuck::cast_slice(&none));
            kernels::submit(&g, &kernels::argmax_masked_spans(g.t(), &xb, &nb, &spans, &two, n32, r32).unwrap());
            let got_none: Vec<u32> =
                bytemuck::pod_collect_to_vec(&pollster::block_on(g.read(&two, 0, 4 * rows as u64)).unwrap());
            assert_eq!(got_none[2], u32::MAX, "two-level argmax_masked [{rows}x{n}] {}: nothing allowed", g.layout);
            assert_eq!([got_none[0], got_none[1], got_none[3]], [got_ids[0], got_ids[1], got_ids[3]]);
            let got: Vec<u32> = bytemuck::pod_collect_to_vec(&pollster::block_on(g.read(&out, 0, out.size())).unwrap());
            // logprobs with its first pass over spans (the GPU family's) into a second output.
            let lp_spans = g.storage("logprobs spans", kernels::logprobs_spans_bytes(n32, r32));
            let out2 = g.storage("logprobs over spans", out.size());
            kernels::submit(&g, &kernels::logprobs_spans(g.t(), &xb, &ids, &lp_spans, &out2, n32, (r32, r32)).unwrap());
            let got2: Vec<u32> =
                bytemuck::pod_collect_to_vec(&pollster::block_on(g.read(&out2, 0, out.size())).unwrap());
            for (r, (kernel, got)) in (0..rows).flat_map(|r| [(r, ("logprobs", &got)), (r, ("logprobs_spans", &got2))])
            {
                let what = format!("[{rows}x{n}] row {r} {}", g.layout);
                let logits = &x[r * n..(r + 1) * n];
                let mut masked = logits.to_vec();
                apply_mask(&mask[r * words..(r + 1) * words], &mut masked);
                let want_id = reference::argmax(&masked);
                assert_eq!(got_ids[r], want_id, "argmax_masked {what}");
                let want = token_logprob(logits, want_id, k, 0);
                let row = &got[r * kernels::LOGPROBS_STRIDE as usize..];
                let f = |i: usize| f32::from_bits(row[i]);
                assert!((f(1) - want.logprob).abs() < 1e-4, "{kernel} {what}: chosen {} vs {}", f(1), want.logprob);
                let top: Vec<(u32, f32)> =
                    (0..k).map(|j| (row[2 + 2 * j], f(3 + 2 * j))).filter(|t| t.0 < n as u32).collect();
                assert_eq!(top.len(), want.top.len(), "{kernel} {what}: how many");
                for (j, (a, b)) in top.iter().zip(&want.top).enumerate() {
                    assert_eq!(a.0, b.0, "{kernel} {what}: the {j}th id");
                    assert!((a.1 - b.1).abs() < 1e-4, "{kernel} {what}: the {j}th logprob {} vs {}", a.1, b.1);
                }
                assert!(
                    (f(0) - (logits[want_id as usize] - want.logprob)).abs() < 1e-4,
                    "{kernel} {what}: log-sum-exp"
                );
            }
        }
    }
}

#[test]
fn quantize_round_trips_within_the_type_precision() {
    let mut rng = Rng(29);
    for &ty in SUPPORTED.iter().filter(|t| t.block_elems() < 256) {
        let x = rng.vec(256);
        let back = reference::dequantize(ty, &ty.quantize(&x).unwrap(), 1, 256).unwrap().data;
        let err = x.iter().zip(&back).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let bound = match ty {
            QuantType::F32 => 0.0,
            QuantType::F16 => 1e-3,
            QuantType::Q8_0 => 1e-2,
            QuantType::Bf16 => 4e-3,
            QuantType::Q5_1 => 0.04,
            QuantType::Q4_1 | QuantType::Q5_0 => 0.07,
            _ => 0.13,
        };
        assert!(err <= bound, "{} round trip error {err} > {bound}", ty.name());
    }
}

/// A WebGPU validation error (here: a dispatch whose weights buffer was destroyed) comes back as a
/// named error from the next read, not a hang or a panic, and the device works afterwards.
#[test]
fn a_validation_error_surfaces_as_an_error() {
    // A device of its own: on the shared one another test's read could take this error.
    let device = Arc::new(pollster::block_on(Gpu::new()).unwrap());
    let g = On { layout: Layout::of(&device), gpu: device };
    let mut rng = Rng(29);
    let (rows, cols, ty) = (8usize, 32usize, QuantType::Q8_0);
    let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
    let x = rng.vec(cols);
    let (wb, xb, out) = (
        g.storage_with("w", &gpu_blocks(&g, ty, &bytes)),
        g.storage_with("x", bytemuck::cast_slice(&x)),
        g.storage("out", 4 * rows as u64),
    );
    let m = QuantMatrix::stored(&g.layout, ty, &wb, rows as u32, cols as u32);
    let d = kernels::matvec(g.t(), &m, &xb, &out, &step_on(&g, 0), MatvecParams::default()).unwrap();
    wb.destroy();
    kernels::submit(&g, &[d]);
    let t = std::time::Instant::now();
    let err = pollster::block_on(g.read_f32(&out, 0, rows as u64))
        .expect_err("a dispatch on a destroyed buffer fails")
        .to_string();
    assert!(err.starts_with("GPU error") && err.contains("destroyed"), "{err}");
    assert!(t.elapsed().as_secs() < 10);
    // The device still works.
    let wb = g.storage_with("w", &gpu_blocks(&g, ty, &bytes));
    let m = QuantMatrix::stored(&g.layout, ty, &wb, rows as u32, cols as u32);
    kernels::submit(&g, &[kernels::matvec(g.t(), &m, &xb, &out, &step_on(&g, 0), MatvecParams::default()).unwrap()]);
    check("matvec after an error", ty.name(), "[8x32]", &read_on(&g, &out, rows), &reference::matvec(&w, &x));
}
