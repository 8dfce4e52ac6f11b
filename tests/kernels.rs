//! Every GPU kernel against its twin in reference.rs on random inputs, for every supported quant
//! type: normalized MSE at most 1e-6; a failure names the op, the type, the shape and the first bad
//! index.

mod common;

use common::{gpu, Rng};
use std::sync::Arc;
use webllama::format::quant::{QuantType, SUPPORTED};
use webllama::gpu::compose::wide_wgsl;
use webllama::kernels::cpu::{self, KvMirror};
use webllama::kernels::{
    self, AttentionBuffers, AttentionParams, AttentionRows, MatmulParams, MatvecParams, QuantMatrix, RopeParams, Step,
    Target,
};
use webllama::model::Stored;
use webllama::reference;
use webllama::{Family, Gpu, Layout, Overrides};

const NMSE_MAX: f64 = 1e-6;

/// Checks `got` against `want`: NMSE <= 1e-6, naming the first index off by more than 1e-3 of the scale.
fn check(op: &str, ty: &str, shape: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{op} [{ty}] {shape}: length");
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().max(1e-30);
    let nmse = num / den;
    if nmse.is_nan() || nmse > NMSE_MAX {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let bad = got.iter().zip(want).position(|(a, b)| (a - b).is_nan() || (a - b).abs() > 1e-3 * scale).unwrap_or(0);
        panic!(
            "{op} [{ty}] {shape}: NMSE {nmse:.3e} > {NMSE_MAX:e}; first bad index {bad}: gpu {} vs reference {}",
            got[bad], want[bad]
        );
    }
}

fn read(buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(gpu().read_f32(buf, 0, n as u64)).unwrap()
}

fn step_uniform(pos: u32) -> wgpu::Buffer {
    gpu().uniform("step", &Step::single(pos))
}

/// Random well-scaled blocks of `ty` (any quant bits, small finite scales) and the exact
/// dequantization the kernels must reproduce.
fn random_matrix(ty: QuantType, rows: usize, cols: usize, rng: &mut Rng) -> (Vec<u8>, reference::Mat) {
    let n_blocks = rows * cols / ty.block_elems() as usize;
    let mut bytes: Vec<u8> = (0..n_blocks * ty.block_bytes() as usize).map(|_| rng.next_u32() as u8).collect();
    bytes.chunks_exact_mut(ty.block_bytes() as usize).for_each(|b| ty.sanitize_block(b));
    let mat = reference::dequantize(ty, &bytes, rows, cols).unwrap();
    (bytes, mat)
}

/// A row length that is whole blocks of `ty`: SmolLM2's 576 where it can be (K-quants need 256s).
fn width(ty: QuantType, preferred: usize) -> usize {
    let b = ty.block_elems() as usize;
    preferred.div_ceil(b) * b
}

/// A device and the layout the kernels under test are built for (derefs to the device).
struct On {
    gpu: Arc<Gpu>,
    layout: Layout,
}

impl std::ops::Deref for On {
    type Target = Gpu;
    fn deref(&self) -> &Gpu {
        &self.gpu
    }
}

impl On {
    fn t(&self) -> Target<'_> {
        Target { gpu: &self.gpu, layout: &self.layout }
    }
}

/// The shared device with the layout `o` chooses.
fn on(o: Overrides) -> On {
    let gpu = gpu();
    let layout = Layout::choose(&gpu, &o);
    On { gpu, layout }
}

/// The shared device with its own layout.
fn adapter() -> On {
    on(Overrides::default())
}

/// The shared device with the layout of `family`.
fn family(family: Family) -> On {
    on(Overrides { family: Some(family), ..Default::default() })
}

/// matvec with `fold` (the CPU family's; `p` completed from `w` as kernels::matvec does).
fn matvec_fold(
    g: &On,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
    fold: cpu::Fold,
) -> webllama::Result<kernels::Dispatch> {
    cpu::matvec(g.t(), w, x, out, step, MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_stride, ..p }, fold)
}

fn read_on(g: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(g.read_f32(buf, 0, n as u64)).unwrap()
}

fn step_on(g: &Gpu, pos: u32) -> wgpu::Buffer {
    g.uniform("step", &Step::single(pos))
}

#[test]
fn matvec_every_quant_type() {
    for g in every_layout() {
        matvec_every_quant_type_with(&g);
    }
}

/// The GPU family; the CPU family (weights of the wide types in textures, activations through
/// subgroups where the adapter has them); the CPU family with those weights in buffers; and where
/// the adapter has subgroups, the CPU family without them (every activation loaded by every
/// invocation, textures read through sampled bindings as SwiftShader runs them).
fn every_layout() -> Vec<On> {
    let cpu_layout = |subgroups: bool, textures: bool| {
        on(Overrides {
            family: Some(Family::Cpu),
            subgroups: Some(subgroups),
            weight_textures: Some(textures),
            texture_storage_loads: Some(subgroups),
            ..Default::default()
        })
    };
    let mut all = vec![family(Family::Gpu), cpu_layout(true, true), cpu_layout(true, false)];
    if gpu().has_subgroups() {
        all.push(cpu_layout(false, true));
    }
    all
}

/// A matrix's bytes on `g` laid out as the model loader lays them out there (rows padded to 16
/// bytes where the wide kernels read them, in a texture where the adapter reads them from one),
/// and a name for the layout.
fn upload_matrix<'a>(
    g: &On,
    ty: QuantType,
    rows: usize,
    cols: usize,
    bytes: &[u8],
    stored: &'a mut Option<Stored>,
) -> (QuantMatrix<'a>, String) {
    let (packed, stride) = (kernels::row_bytes(ty, cols as u32), kernels::row_stride(&g.layout, ty, cols as u32));
    let mut laid = if stride == packed {
        bytes.to_vec()
    } else {
        webllama::model::pad_rows(bytes, 0, packed as u64, stride as u64).1
    };
    // The whole last row too, padding included, as the loader allocates it: the wide kernels load
    // 16 bytes at a time up to the row's end, and a GPU may return zeros for a load that runs past
    // the buffer (lavapipe checks each word; an H100 caught the short buffer).
    laid.resize(rows * stride as usize, 0);
    let mut layout = match (g.layout.is_cpu(), stride % 16 == 0 && wide_wgsl(ty).is_some()) {
        (false, _) => "GPU layout",
        (true, false) => "rowwise",
        (true, true) if g.layout.lanes_of_8() => "rowwise, wide loads, subgroup activations",
        (true, true) => "rowwise, wide loads",
    }
    .to_string();
    let buffer = g.storage_with("w", &laid);
    let blocks = if cpu::uses_texture(&g.layout, ty, cols as u32) {
        layout +=
            if g.layout.texture_storage_loads { ", texture (storage loads)" } else { ", texture (sampled loads)" };
        Stored::Texture(cpu::texture_from_buffer(g, "w", &buffer, laid.len() as u64).unwrap())
    } else {
        Stored::Buffer(buffer)
    };
    let blocks = stored.insert(blocks).blocks();
    (QuantMatrix { ty, blocks, rows: rows as u32, cols: cols as u32, row_stride: stride }, layout)
}

fn matvec_every_quant_type_with(g: &On) {
    let mut rng = Rng(0x5eed);
    // 67 rows: not a multiple of the 4 rows per workgroup; 576 columns: SmolLM2's width; 224
    // columns: 7 blocks of 32, fewer than one group of matvec_wide's (on CPU adapters); 1000 x 576:
    // past one texture row of 8192 texels where the weights are in a texture (Q4_1: 23,000 texels).
    for &(rows, cols) in &[(67usize, 576usize), (130, 1536), (33, 224), (1000, 576)] {
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
    for g in every_layout() {
        for ty in [QuantType::Q4_1, QuantType::Q8_0] {
            // (dim, consumer rows, ffn): SmolLM2's width, and 7 blocks (7 subgroups of 8 lanes with 4 rows each).
            for &(dim, rows, ffn) in &[(576usize, 130usize, 1536usize), (224, 67, 96)] {
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
}

#[test]
fn matvec_past_65535_workgroups() {
    // 262,200 rows / 4 rows per workgroup = 65,550 workgroups: the grid spills into y.
    let g = family(Family::Gpu);
    let mut rng = Rng(3);
    let (rows, cols, ty) = (262_200usize, 32usize, QuantType::Q8_0);
    let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
    let x = rng.vec(cols);
    let (wb, xb, out) =
        (g.storage_with("w", &bytes), g.storage_with("x", bytemuck::cast_slice(&x)), g.storage("out", 4 * rows as u64));
    let m = QuantMatrix::packed(ty, &wb, rows as u32, cols as u32);
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
            for token in [0u32, 19, 20, 49] {
                let tokens = g.storage_with("tokens", bytemuck::bytes_of(&token));
                let out = g.storage("out", 4 * cols as u64);
                let d1 = kernels::embed(g.t(), &p1, 0, &tokens, &out, 0, 1).unwrap();
                let d2 = kernels::embed(g.t(), &p2, 20, &tokens, &out, 0, 1).unwrap();
                kernels::submit(&g, &[d1, d2]);
                check(
                    "embed",
                    ty.name(),
                    &format!("[{rows}x{cols}] token {token} {layout}"),
                    &read_on(&g, &out, cols),
                    &reference::embed(&table, token),
                );
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
            let (x, w) = (rng.vec(3 * n), rng.vec(n));
            let (xb, wb, out) = (
                g.storage_with("x", bytemuck::cast_slice(&x)),
                g.storage_with("w", bytemuck::cast_slice(&w)),
                g.storage("out", 4 * 3 * n as u64),
            );
            kernels::submit(&g, &[kernels::rmsnorm(g.t(), &xb, &wb, &out, n as u32, 1e-5, 3).unwrap()]);
            let want: Vec<f32> = x.chunks(n).flat_map(|row| reference::rmsnorm(row, &w, 1e-5)).collect();
            let layout = format!("[3, {n}], rowwise {}, subgroups {}", g.layout.is_cpu(), g.layout.lanes_of_8());
            check("rmsnorm", "f32", &layout, &read_on(&g, &out, 3 * n), &want);
        }
    }
}

#[test]
fn rope_matches() {
    let g = adapter();
    let mut rng = Rng(13);
    // (heads, head_dim, n_rot, pos, freq_scale, with factors): full rotation, a partial one
    // (n_rot < head_dim), linear scaling, per-frequency factors (LLaMA-3 rope_freqs).
    for &(heads, hd, n_rot, pos, scale, factors) in &[
        (9usize, 64usize, 64usize, 0u32, 1.0f32, false),
        (3, 64, 64, 1234, 1.0, false),
        (4, 128, 64, 77, 1.0, false),
        (2, 64, 64, 900, 0.25, false),
        (8, 32, 32, 3000, 1.0, true),
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
        };
        kernels::submit(&g, &[kernels::rope(g.t(), &buf, &ffb, &step_uniform(pos), p, 1).unwrap()]);
        let mut want = x.clone();
        let at = pos as usize * stride;
        let r = reference::Rope { n_rot, base: 100000.0, freq_scale: scale, freq_factors: factors.then_some(&ff[..]) };
        reference::rope(&mut want[at..at + heads * hd], heads, hd, pos as usize, &r);
        check(
            "rope",
            "f32",
            &format!("[{heads}x{hd}] n_rot {n_rot} pos {pos} scale {scale} factors {factors}"),
            &read(&buf, n),
            &want,
        );
    }
}

#[test]
fn attention_matches_with_gqa_and_stores_this_position() {
    for g in every_layout() {
        attention_matches_with(&g);
    }
}

fn attention_matches_with(g: &On) {
    let mut rng = Rng(17);
    // (heads, kv heads, head_dim, kv_len): one chunk, several chunks with a partial one, MHA, 128 wide;
    // 8 query heads per kv head (CPU adapters: the looped walk of attention_lanes, not the written-out one).
    for &(h, kvh, hd, len, splits) in &[
        (9usize, 3usize, 64usize, 1usize, 1u32),
        (9, 3, 64, 150, 1),
        (4, 4, 128, 64, 1),
        (8, 2, 32, 300, 1),
        (9, 3, 64, 1, 4),
        (9, 3, 64, 150, 4),
        (8, 2, 32, 300, 4),
        (16, 2, 64, 150, 1),
    ] {
        let kv_dim = kvh * hd;
        let (k, v) = (rng.vec(len * kv_dim), rng.vec(len * kv_dim));
        // This position's q | k | v; the cache holds the earlier positions (its last row is stale).
        let q = rng.vec(h * hd);
        let pos = len - 1;
        let qkv: Vec<f32> = q.iter().chain(&k[pos * kv_dim..]).chain(&v[pos * kv_dim..]).cloned().collect();
        let mut stale_k = k.clone();
        let mut stale_v = v.clone();
        stale_k[pos * kv_dim..].iter_mut().for_each(|x| *x = 9.0);
        stale_v[pos * kv_dim..].iter_mut().for_each(|x| *x = -9.0);
        let qb = g.storage_with("qkv", bytemuck::cast_slice(&qkv));
        let kb = g.storage_with("k", bytemuck::cast_slice(&stale_k));
        let vb = g.storage_with("v", bytemuck::cast_slice(&stale_v));
        let out = g.storage("out", 4 * (h * hd) as u64);
        let step = step_on(g, pos as u32);
        let (none_k, none_v, partial) =
            (g.storage("k_branch", 16), g.storage("v_branch", 16), g.storage("partial", 4 * (h * 4 * (hd + 2)) as u64));
        let b = AttentionBuffers {
            qkv: &qb,
            k_cache: &kb,
            v_cache: &vb,
            k_branch: &none_k,
            v_branch: &none_v,
            out: &out,
            partial: &partial,
            rotations: None,
            kv_mirror: None,
        };
        let p = AttentionParams {
            n_heads: h as u32,
            n_kv_heads: kvh as u32,
            head_dim: hd as u32,
            qkv_stride: ((h + 2 * kvh) * hd) as u32,
            n_splits: splits,
            ..Default::default()
        };
        // Runs attention over `b`; checks its output and the whole caches it leaves.
        let run_and_check = |b: &AttentionBuffers, shape: &str, want: &[f32], want_k: &[f32], want_v: &[f32]| {
            kernels::submit(g, &kernels::attention(g.t(), b, &step, p, AttentionRows::One).unwrap());
            check("attention", "f32", shape, &read_on(g, b.out, h * hd), want);
            check("attention k store", "f32", shape, &read_on(g, b.k_cache, len * kv_dim), want_k);
            check("attention v store", "f32", shape, &read_on(g, b.v_cache, len * kv_dim), want_v);
        };
        let want = reference::attention(&q, &k, &v, h, kvh, hd, len);
        let shape = format!("heads {h}/{kvh} x {hd}, kv_len {len}, {splits} splits");
        run_and_check(&b, &shape, &want, &k, &v);
        if g.layout.is_cpu() {
            // RoPE in the kernel (the CPU adapters' decode graph): q and this position's k arrive
            // unrotated; the cache's rows are rotated already. A full rotation, and a partial one
            // with per-frequency factors.
            let (n_rot, factors) = if len % 2 == 0 { (hd / 2, true) } else { (hd, false) };
            let ff: Vec<f32> = (0..n_rot / 2).map(|i| if factors { 1.0 + i as f32 } else { 1.0 }).collect();
            let r = reference::Rope { n_rot, base: 10000.0, freq_scale: 0.5, freq_factors: factors.then_some(&ff[..]) };
            let (mut q_rot, mut k_rot) = (q.clone(), k.clone());
            reference::rope(&mut q_rot, h, hd, pos, &r);
            reference::rope(&mut k_rot[pos * kv_dim..], kvh, hd, pos, &r);
            let rotations = cpu::rope_rotations(pos as u32, hd, n_rot, 10000.0, 0.5, factors.then_some(&ff[..]));
            let (kb, vb, rb) = (
                g.storage_with("k", bytemuck::cast_slice(&stale_k)),
                g.storage_with("v", bytemuck::cast_slice(&stale_v)),
                g.storage_with("rotations", bytemuck::cast_slice(&rotations)),
            );
            let b = AttentionBuffers { k_cache: &kb, v_cache: &vb, rotations: Some(&rb), ..b };
            let want = reference::attention(&q_rot, &k_rot, &v, h, kvh, hd, len);
            let shape = format!("{shape}, rope in the kernel (n_rot {n_rot})");
            run_and_check(&b, &shape, &want, &k_rot, &v);
            if g.layout.kv_mirror {
                // The earlier positions from the cache's copy in textures (lavapipe's decode graph):
                // the mirror gets the true rows, the buffers garbage there, so only reads of the
                // mirror give the right answer; this position is still stored into the buffers.
                let mirror = KvMirror::new(g, 1, kv_dim, len).unwrap();
                let (true_k, true_v) =
                    (g.storage_with("k", bytemuck::cast_slice(&k_rot)), g.storage_with("v", bytemuck::cast_slice(&v)));
                let mut enc = g.device.create_command_encoder(&Default::default());
                mirror.copy_rows(&mut enc, &[true_k], &[true_v], 0, pos);
                g.queue.submit([enc.finish()]);
                let garbage: Vec<f32> = (0..len * kv_dim).map(|i| if i < pos * kv_dim { 5.0 } else { 9.0 }).collect();
                let (kb, vb) = (
                    g.storage_with("k", bytemuck::cast_slice(&garbage)),
                    g.storage_with("v", bytemuck::cast_slice(&garbage)),
                );
                let b = AttentionBuffers { k_cache: &kb, v_cache: &vb, kv_mirror: Some(mirror.views(0)), ..b };
                kernels::submit(g, &kernels::attention(g.t(), &b, &step, p, AttentionRows::One).unwrap());
                let shape = format!("{shape}, earlier positions from the texture mirror");
                check("attention", "f32", &shape, &read_on(g, &out, h * hd), &want);
                let stored = &read_on(g, &kb, len * kv_dim)[pos * kv_dim..];
                check("attention k store", "f32", &shape, stored, &k_rot[pos * kv_dim..]);
            }
        }
    }
}

#[test]
fn qkv_every_quant_type() {
    let mut rng = Rng(31);
    let g = family(Family::Gpu);
    {
        for &ty in SUPPORTED {
            // SmolLM2's shape (GQA 9/3 x 64, n_rot 64) and a partial rotation with rope_freqs.
            for &(heads, kv_heads, hd, n_rot, pos, factors) in
                &[(9usize, 3usize, 64usize, 64usize, 7u32, false), (8, 2, 32, 16, 300, true)]
            {
                let dim = width(ty, heads * hd);
                let (q_rows, kv_rows) = (heads * hd, kv_heads * hd);
                let (bq, wq) = random_matrix(ty, q_rows, dim, &mut rng);
                let (bk, wk) = random_matrix(ty, kv_rows, dim, &mut rng);
                let (bv, wv) = random_matrix(ty, kv_rows, dim, &mut rng);
                let (x, norm) = (rng.vec(dim), rng.vec(dim));
                let ff: Vec<f32> = (0..n_rot / 2).map(|i| if factors { 1.0 + i as f32 } else { 1.0 }).collect();
                let wb = g.storage_with("wqkv", &[bq, bk, bv].concat());
                let m = QuantMatrix::packed(ty, &wb, (q_rows + 2 * kv_rows) as u32, dim as u32);
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
                    ..Default::default()
                };
                kernels::submit(
                    &g,
                    &[webllama::kernels::gpu::qkv(g.t(), &m, &xb, &nb, &out, &fb, &step_on(&g, pos), p).unwrap()],
                );
                let r =
                    reference::Rope { n_rot, base: 10000.0, freq_scale: 1.0, freq_factors: factors.then_some(&ff[..]) };
                let (q, k, v) = reference::qkv(&x, &norm, 1e-5, &wq, &wk, &wv, pos as usize, &r, hd);
                let want: Vec<f32> = q.into_iter().chain(k).chain(v).collect();
                let shape = format!("[{heads}+2x{kv_heads} heads x {hd}, {dim}] pos {pos}");
                check("qkv", ty.name(), &shape, &read_on(&g, &out, want.len()), &want);
            }
        }
    }
}

#[test]
fn gate_up_every_quant_type() {
    let mut rng = Rng(37);
    let g = family(Family::Gpu);
    {
        for &ty in SUPPORTED {
            let (ffn, dim) = (1536 + 32, width(ty, 576));
            let (bg, wg) = random_matrix(ty, ffn, dim, &mut rng);
            let (bu, wu) = random_matrix(ty, ffn, dim, &mut rng);
            let (x, norm) = (rng.vec(dim), rng.vec(dim));
            let wb = g.storage_with("w", &[bg, bu].concat());
            let m = QuantMatrix::packed(ty, &wb, 2 * ffn as u32, dim as u32);
            let (xb, nb) =
                (g.storage_with("x", bytemuck::cast_slice(&x)), g.storage_with("norm", bytemuck::cast_slice(&norm)));
            let out = g.storage("out", 4 * ffn as u64);
            kernels::submit(&g, &[webllama::kernels::gpu::gate_up(g.t(), &m, &xb, &nb, &out, 1e-5).unwrap()]);
            let want = reference::gate_up(&x, &norm, 1e-5, &wg, &wu);
            let shape = format!("[2x{ffn}x{dim}]");
            check("gate_up", ty.name(), &shape, &read_on(&g, &out, ffn), &want);
        }
    }
}

#[test]
fn swiglu_matches() {
    let g = family(Family::Cpu);
    let mut rng = Rng(19);
    let n = 1536;
    let gate: Vec<f32> = rng.vec(n).iter().map(|v| v * 12.0).collect();
    let up = rng.vec(n);
    let gb = g.storage_with("gate", bytemuck::cast_slice(&gate));
    let ub = g.storage_with("up", bytemuck::cast_slice(&up));
    kernels::submit(&g, &[kernels::swiglu(g.t(), &gb, &ub, n as u32).unwrap()]);
    check("swiglu", "f32", &format!("[{n}]"), &read(&gb, n), &reference::swiglu(&gate, &up));
    // Packed: gate | up in one buffer (one matvec over [Wgate; Wup]).
    let both = g.storage_with("gate | up", bytemuck::cast_slice(&[gate.clone(), up.clone()].concat()));
    kernels::submit(&g, &[cpu::swiglu_packed(g.t(), &both, n as u32, n as u32).unwrap()]);
    check("swiglu_packed", "f32", &format!("[{n}]"), &read(&both, n), &reference::swiglu(&gate, &up));
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
        let xb = g.storage_with("logits", bytemuck::cast_slice(&x));
        let out = g.storage("result", 4);
        kernels::submit(&g, &[kernels::argmax(g.t(), &xb, &out, n as u32, 1).unwrap()]);
        let got = u32::from_le_bytes(pollster::block_on(g.read(&out, 0, 4)).unwrap().try_into().unwrap());
        assert_eq!(got, reference::argmax(&x), "argmax [{n}]");
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

#[test]
fn matmul_every_quant_type_on_both_layouts() {
    for g in every_layout() {
        let mut rng = Rng(0xba7c);
        // 70 rows: not a multiple of the 64-row tile; 37 tokens: past one 32-token tile, a partial one.
        let rows = 70usize;
        for &ty in SUPPORTED {
            // Unquantized types: a row length that is not a multiple of 8 (the 4-value tail path).
            let cols = if ty.block_elems() == 1 { 580 } else { width(ty, 576) };
            let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
            let mut wb = None;
            let (m, layout) = upload_matrix(&g, ty, rows, cols, &bytes, &mut wb);
            // Batches of up to 40 tokens take the tiled kernel on GPUs; up to 8 the matvec-shaped one.
            for (n, max_tokens) in [(1usize, 40u32), (5, 40), (37, 40), (1, 8), (5, 8), (8, 8)] {
                let x = rng.vec(n * cols);
                let xb = g.storage_with("x", bytemuck::cast_slice(&x));
                let step = g.uniform("step", &Step::chunk(0, n as u32));
                let want: Vec<Vec<f32>> = (0..n).map(|t| reference::matvec(&w, &x[t * cols..(t + 1) * cols])).collect();
                // Plain, into rows of a wider output at an offset: out[t, 3 + r] = W x[t].
                let out_stride = rows + 5;
                let base = rng.vec(n * out_stride + 3);
                let out = g.storage_with("out", bytemuck::cast_slice(&base));
                let p = MatmulParams {
                    x_stride: cols as u32,
                    out_offset: 3,
                    out_stride: out_stride as u32,
                    ..Default::default()
                };
                kernels::submit(&g, &[kernels::matmul(g.t(), &m, &xb, &out, &step, p, max_tokens).unwrap()]);
                let mut expect = base.clone();
                for t in 0..n {
                    expect[3 + t * out_stride..3 + t * out_stride + rows].copy_from_slice(&want[t]);
                }
                let shape = format!("[{rows}x{cols}] x {n} tokens (batches of up to {max_tokens}), {layout}");
                check("matmul", ty.name(), &shape, &read_on(&g, &out, expect.len()), &expect);
                // Residual add, weight rows 10.. only, the last token only (prompt logits).
                let out = g.storage_with("out", bytemuck::cast_slice(&base[..rows]));
                let p = MatmulParams {
                    x_stride: cols as u32,
                    out_stride: rows as u32,
                    accumulate: 1,
                    last_only: 1,
                    w_row0: 10,
                    ..Default::default()
                };
                kernels::submit(&g, &[kernels::matmul(g.t(), &m, &xb, &out, &step, p, max_tokens).unwrap()]);
                let mut expect = base[..rows].to_vec();
                for r in 0..rows - 10 {
                    expect[r] += want[n - 1][r + 10];
                }
                check("matmul+accumulate, last token, rows 10..", ty.name(), &shape, &read_on(&g, &out, rows), &expect);
            }
        }
    }
}

/// A prompt chunk (rows at consecutive positions after a cached prefix) and n candidates (rows at
/// one position, each with its own branch after a shared prefix) against reference::attention, on
/// the GPU layout and the CPU adapters' (with and without subgroups: a prompt chunk's lanes or an
/// invocation per row and head).
#[test]
fn attention_over_batch_rows_and_candidate_branches() {
    for g in &every_layout() {
        // Heads (query, kv) x width, cached positions, chunk rows: a partial last group of 8 rows,
        // a full chunk from position 0, one row, and the widest heads the lanes kernel takes.
        for &(h, kvh, hd, cached, rows) in
            &[(6usize, 2usize, 32usize, 90usize, 20usize), (9, 3, 64, 0, 64), (9, 3, 64, 33, 1), (4, 4, 128, 37, 9)]
        {
            for splits in [1u32, 3] {
                attention_over_prompt_chunk(g, (h, kvh, hd), cached, rows, splits);
            }
        }
        attention_over_candidates(g);
    }
}

/// A prompt chunk of `rows` rows after `cached` positions in the cache.
fn attention_over_prompt_chunk(g: &On, (h, kvh, hd): (usize, usize, usize), cached: usize, rows: usize, splits: u32) {
    let mut rng = Rng(23 + cached as u64);
    let (kv_dim, stride) = (kvh * hd, (h + 2 * kvh) * hd);
    let p = AttentionParams {
        n_heads: h as u32,
        n_kv_heads: kvh as u32,
        head_dim: hd as u32,
        qkv_stride: stride as u32,
        n_splits: splits,
        ..Default::default()
    };
    let partial = g.storage("partial", 4 * (rows * h * splits as usize * (hd + 2)) as u64);
    let (k, v) = (rng.vec((cached + rows) * kv_dim), rng.vec((cached + rows) * kv_dim));
    let q = rng.vec(rows * h * hd);
    let qkv: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let p = cached + r;
            q[r * h * hd..(r + 1) * h * hd]
                .iter()
                .chain(&k[p * kv_dim..(p + 1) * kv_dim])
                .chain(&v[p * kv_dim..(p + 1) * kv_dim])
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let mut ck = k.clone();
    let mut cv = v.clone();
    ck[cached * kv_dim..].iter_mut().for_each(|x| *x = 9.0);
    cv[cached * kv_dim..].iter_mut().for_each(|x| *x = -9.0);
    let (qb, kb, vb) = (
        g.storage_with("qkv", bytemuck::cast_slice(&qkv)),
        g.storage_with("k", bytemuck::cast_slice(&ck)),
        g.storage_with("v", bytemuck::cast_slice(&cv)),
    );
    let (nk, nv, out) = (g.storage("kb", 16), g.storage("vb", 16), g.storage("out", 4 * (rows * h * hd) as u64));
    let b = AttentionBuffers {
        qkv: &qb,
        k_cache: &kb,
        v_cache: &vb,
        k_branch: &nk,
        v_branch: &nv,
        out: &out,
        partial: &partial,
        rotations: None,
        kv_mirror: None,
    };
    let step = g.uniform("step", &Step::chunk(cached as u32, rows as u32));
    kernels::submit(g, &kernels::attention(g.t(), &b, &step, p, AttentionRows::Prompt(rows as u32)).unwrap());
    let got = read_on(g, &out, rows * h * hd);
    let layout = g.layout.to_string();
    let shape = format!("heads {h}/{kvh} x {hd}, {rows} rows after {cached}, {splits} splits, {layout}");
    for r in 0..rows {
        let want = reference::attention(&q[r * h * hd..(r + 1) * h * hd], &k, &v, h, kvh, hd, cached + r + 1);
        check(
            "attention (prompt chunk)",
            "f32",
            &format!("row {r}: {shape}"),
            &got[r * h * hd..(r + 1) * h * hd],
            &want,
        );
    }
    check("attention (prompt chunk) k store", "f32", &shape, &read_on(g, &kb, k.len()), &k);
    check("attention (prompt chunk) v store", "f32", &shape, &read_on(g, &vb, v.len()), &v);
}

/// n candidates after a shared prefix, each with its own branch.
fn attention_over_candidates(g: &On) {
    let mut rng = Rng(29);
    let (h, kvh, hd) = (6usize, 2usize, 32usize);
    let (kv_dim, stride) = (kvh * hd, (h + 2 * kvh) * hd);
    let params = |splits: u32, branch_len: u32| AttentionParams {
        n_heads: h as u32,
        n_kv_heads: kvh as u32,
        head_dim: hd as u32,
        qkv_stride: stride as u32,
        n_splits: splits,
        branch_len,
        ..Default::default()
    };
    let partial = g.storage("partial", 4 * (20 * h * 4 * (hd + 2)) as u64);
    // Candidates: a 70-position prefix in the cache, 3 candidates with 4 earlier branch positions
    // each, now at position 74.
    let (prefix, n, earlier, branch_len) = (70usize, 3usize, 4usize, 8usize);
    let (pk, pv) = (rng.vec(prefix * kv_dim), rng.vec(prefix * kv_dim));
    let (bk, bv) = (rng.vec(n * branch_len * kv_dim), rng.vec(n * branch_len * kv_dim));
    let q = rng.vec(n * h * hd);
    let (nk_now, nv_now) = (rng.vec(n * kv_dim), rng.vec(n * kv_dim));
    let qkv: Vec<f32> = (0..n)
        .flat_map(|r| {
            q[r * h * hd..(r + 1) * h * hd]
                .iter()
                .chain(&nk_now[r * kv_dim..(r + 1) * kv_dim])
                .chain(&nv_now[r * kv_dim..(r + 1) * kv_dim])
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let (qb, kb, vb) = (
        g.storage_with("qkv", bytemuck::cast_slice(&qkv)),
        g.storage_with("k", bytemuck::cast_slice(&pk)),
        g.storage_with("v", bytemuck::cast_slice(&pv)),
    );
    let (kbb, vbb, out) = (
        g.storage_with("kb", bytemuck::cast_slice(&bk)),
        g.storage_with("vb", bytemuck::cast_slice(&bv)),
        g.storage("out", 4 * (n * h * hd) as u64),
    );
    let b = AttentionBuffers {
        qkv: &qb,
        k_cache: &kb,
        v_cache: &vb,
        k_branch: &kbb,
        v_branch: &vbb,
        out: &out,
        partial: &partial,
        rotations: None,
        kv_mirror: None,
    };
    let step = g.uniform("step", &Step::candidates((prefix + earlier) as u32, n as u32, prefix as u32));
    kernels::submit(
        g,
        &kernels::attention(g.t(), &b, &step, params(1, branch_len as u32), AttentionRows::Candidates(n as u32))
            .unwrap(),
    );
    let got = read_on(g, &out, n * h * hd);
    let mut bk_after = bk.clone();
    let mut bv_after = bv.clone();
    for r in 0..n {
        let branch = |src: &[f32], now: &[f32]| -> Vec<f32> {
            let mut all = (if std::ptr::eq(src, &bk[..]) { &pk } else { &pv }).clone();
            all.extend_from_slice(&src[r * branch_len * kv_dim..(r * branch_len + earlier) * kv_dim]);
            all.extend_from_slice(&now[r * kv_dim..(r + 1) * kv_dim]);
            all
        };
        let (kr, vr) = (branch(&bk, &nk_now), branch(&bv, &nv_now));
        let want = reference::attention(&q[r * h * hd..(r + 1) * h * hd], &kr, &vr, h, kvh, hd, prefix + earlier + 1);
        check(
            "attention (candidates)",
            "f32",
            &format!("candidate {r} of {n}"),
            &got[r * h * hd..(r + 1) * h * hd],
            &want,
        );
        let at = (r * branch_len + earlier) * kv_dim;
        bk_after[at..at + kv_dim].copy_from_slice(&nk_now[r * kv_dim..(r + 1) * kv_dim]);
        bv_after[at..at + kv_dim].copy_from_slice(&nv_now[r * kv_dim..(r + 1) * kv_dim]);
    }
    check("attention (candidates) k store", "f32", "branches", &read_on(g, &kbb, bk.len()), &bk_after);
    check("attention (candidates) v store", "f32", "branches", &read_on(g, &vbb, bv.len()), &bv_after);
    check("attention (candidates) prefix untouched", "f32", "cache", &read_on(g, &kb, pk.len()), &pk);
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
    let (wb, xb, out) =
        (g.storage_with("w", &bytes), g.storage_with("x", bytemuck::cast_slice(&x)), g.storage("out", 4 * rows as u64));
    let m = QuantMatrix::packed(ty, &wb, rows as u32, cols as u32);
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
    let wb = g.storage_with("w", &bytes);
    let m = QuantMatrix::packed(ty, &wb, rows as u32, cols as u32);
    kernels::submit(&g, &[kernels::matvec(g.t(), &m, &xb, &out, &step_on(&g, 0), MatvecParams::default()).unwrap()]);
    check("matvec after an error", ty.name(), "[8x32]", &read_on(&g, &out, rows), &reference::matvec(&w, &x));
}
