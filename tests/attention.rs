//! attention against reference::attention on every layout (the GPU family with and without
//! subgroups, the CPU family's): one token with GQA groups 1 to 8, heads 32, 64 and 128 wide, over
//! lengths from 1 to several splits of the KV length (RoPE in the kernel where the layout has it);
//! prompt chunks from position 0 and after a cached prefix; n candidates with their own branches.
//! The keys and values each stores into the cache are checked too; and decode's splits merged in
//! Wo's activation loader. The GPU family's cache is f16:
//! its outputs are compared with the f32 reference at the F16 bounds below, its stored keys and
//! values within an f16 rounding; the CPU family's f32 cache at common::kernels::check's.

mod common;

use common::kernels::*;
use common::Rng;
use half::f16;
use webllama::format::quant::QuantType;
use webllama::kernels::cpu;
use webllama::kernels::gpu::{
    self, attention_partial_bytes, ATTENTION_MAX_SPLITS, ATTENTION_SPLIT_LEN, COMBINE_IN_WO_SPLITS,
};
use webllama::kernels::{self, AttentionBuffers, AttentionParams, AttentionRows, MatvecParams, Step};
use webllama::model::{Model, Stored};
use webllama::reference;
use webllama::{Family, Layout};

/// NMSE bound on outputs computed from an f16 cache against the f32 reference: each cached element
/// carries a relative rounding of up to 2^-11 (about 4.9e-4), passed on through the scores and the
/// weighted sum; these cases measure up to 4.8e-8 on lavapipe. 2e-6 leaves room and is still far
/// below what a wrong position, head or weight gives (1e-3 and up).
const F16_NMSE_MAX: f64 = 2e-6;
/// Max-abs bound on those outputs, relative to the largest reference magnitude: 4 x 2^-11 (measured
/// up to 3.0e-4).
const F16_ABS_MAX: f32 = 4.0 / 2048.0;

/// The cache's bytes for `x` as `g`'s layout stores them (f16 in the GPU family, f32 otherwise).
fn cache_bytes(g: &On, x: &[f32]) -> Vec<u8> {
    if g.layout.is_cpu() {
        return bytemuck::cast_slice(x).to_vec();
    }
    x.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()
}

/// A cache buffer holding `x` as `g`'s layout stores it.
fn cache_with(g: &On, label: &str, x: &[f32]) -> wgpu::Buffer {
    g.storage_with(label, &cache_bytes(g, x))
}

/// The first `n` elements of a cache buffer, as f32.
fn read_cache(g: &On, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    if g.layout.is_cpu() {
        return read_on(g, buf, n);
    }
    let bytes = pollster::block_on(g.read(buf, 0, 2 * n as u64)).unwrap();
    bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
}

/// Checks an attention output: common::kernels::check on an f32 cache; NMSE <= F16_NMSE_MAX and
/// every element within F16_ABS_MAX of the scale on an f16 cache.
fn check_out(g: &On, op: &str, shape: &str, got: &[f32], want: &[f32]) {
    let shape = format!("{shape}, {}", g.layout);
    if g.layout.is_cpu() {
        return check(op, "f32", &shape, got, want);
    }
    assert_eq!(got.len(), want.len(), "{op} [f16 cache] {shape}: length");
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().max(1e-30);
    let nmse = num / den;
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let bad = got.iter().zip(want).position(|(a, b)| (a - b).is_nan() || (a - b).abs() > F16_ABS_MAX * scale);
    if nmse.is_nan() || nmse > F16_NMSE_MAX || bad.is_some() {
        let i = bad.unwrap_or(0);
        panic!(
            "{op} [f16 cache] {shape}: NMSE {nmse:.3e} (bound {F16_NMSE_MAX:e}); first index off by more than \
             {F16_ABS_MAX} x {scale}: {bad:?}: gpu {} vs reference {}",
            got[i], want[i]
        );
    }
}

/// Checks `got` against reference::attention of `q` over keys `k` and values `v` (`len` positions):
/// check_out's bounds against the f32 values; on an f16 cache also, at common::kernels::check's f32
/// bound, against the values rounded to f16 as the cache holds them (the kernel's own arithmetic;
/// a driver rounding pack2x16float other than to nearest would differ by about the f16 NMSE above,
/// still under that bound).
#[allow(clippy::too_many_arguments)]
fn check_attention(
    g: &On,
    op: &str,
    shape: &str,
    got: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: (usize, usize, usize),
    len: usize,
    cap: f32,
) {
    let (h, kvh, hd) = heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let want = |k: &[f32], v: &[f32]| reference::attention_capped(q, k, v, [h, kvh, hd, len], scale, cap);
    check_out(g, op, shape, got, &want(k, v));
    if !g.layout.is_cpu() {
        let round = |x: &[f32]| x.iter().map(|v| f16::from_f32(*v).to_f32()).collect::<Vec<_>>();
        let want = want(&round(k), &round(v));
        check(
            &format!("{op} (f16-rounded keys and values)"),
            "f16 cache",
            &format!("{shape}, {}", g.layout),
            got,
            &want,
        );
    }
}

/// Checks a cache's contents: exact-to-f32 (check) on an f32 cache; on an f16 cache each element
/// within one f16 step (2^-10 relative, 2^-24 absolute for subnormals) of the f32 value.
fn check_cache(g: &On, op: &str, shape: &str, got: &[f32], want: &[f32]) {
    if g.layout.is_cpu() {
        return check(op, "f32", shape, got, want);
    }
    assert_eq!(got.len(), want.len(), "{op} [f16 cache] {shape}: length");
    if let Some(i) =
        got.iter().zip(want).position(|(a, b)| (a - b).is_nan() || (a - b).abs() > b.abs() / 1024.0 + 1.0 / 16777216.0)
    {
        panic!("{op} [f16 cache] {shape}, {}: index {i}: gpu {} vs {}", g.layout, got[i], want[i]);
    }
}

/// What a layer changes in attention: a sliding window of positions (0: none; gemma2, gemma3), its
/// cache as a ring of `slots` rows (0: a row a position) and Gemma 2's soft-cap of the scaled scores
/// (0: none).
#[derive(Clone, Copy, Debug, Default)]
struct Mods {
    window: usize,
    slots: usize,
    softcap: f32,
}

impl Mods {
    fn params(self, p: AttentionParams) -> AttentionParams {
        AttentionParams { window: self.window as u32, slots: self.slots as u32, softcap: self.softcap, ..p }
    }
}

/// `x` ([positions, kv_dim]) as a cache of `slots` rows holds it after the positions were written in
/// order: position j in row j % slots, the last one written there (rows no position reached are 0);
/// x itself where slots is 0.
fn ringed(x: &[f32], kv_dim: usize, slots: usize) -> Vec<f32> {
    if slots == 0 {
        return x.to_vec();
    }
    let mut ring = vec![0.0; slots * kv_dim];
    for (j, row) in x.chunks_exact(kv_dim).enumerate() {
        ring[(j % slots) * kv_dim..][..kv_dim].copy_from_slice(row);
    }
    ring
}

/// The first position a query at `pos` sees in a layer with a sliding window of `window` (0: none).
fn first_key(pos: usize, window: usize) -> usize {
    if window == 0 {
        0
    } else {
        (pos + 1).saturating_sub(window)
    }
}

fn params(h: usize, kvh: usize, hd: usize, n_splits: u32, branch_len: u32) -> AttentionParams {
    AttentionParams {
        n_heads: h as u32,
        n_kv_heads: kvh as u32,
        head_dim: hd as u32,
        qkv_stride: ((h + 2 * kvh) * hd) as u32,
        n_splits,
        branch_len,
        ..Default::default()
    }
}

#[test]
fn attention_matches_with_gqa_and_stores_this_position() {
    // (heads, kv heads, head_dim, kv_len, most splits): groups 1, 2, 3, 4, 7 and 8 (the CPU adapters'
    // looped walk of attention_lanes); 32 to 256 wide (80: not a power of two); one position, one
    // split's worth, several splits (ATTENTION_SPLIT_LEN each), and more than the dispatch's most
    // splits allow.
    let long = 5 * ATTENTION_SPLIT_LEN as usize + 60;
    let cases = [
        (9usize, 3usize, 64usize, 1usize, ATTENTION_MAX_SPLITS),
        (9, 3, 64, 100, ATTENTION_MAX_SPLITS),
        (9, 3, 64, long, ATTENTION_MAX_SPLITS),
        (9, 3, 64, long, 4),
        (9, 3, 64, 300, 1),
        (4, 4, 128, 64, 1),
        (4, 4, 128, 300, ATTENTION_MAX_SPLITS),
        (8, 2, 64, 300, ATTENTION_MAX_SPLITS),
        (8, 2, 128, long, ATTENTION_MAX_SPLITS),
        (14, 2, 64, 1, ATTENTION_MAX_SPLITS),
        (14, 2, 64, long, ATTENTION_MAX_SPLITS),
        (8, 2, 32, 300, 1),
        (16, 2, 64, 150, ATTENTION_MAX_SPLITS),
        (6, 2, 80, 300, ATTENTION_MAX_SPLITS),
        (2, 1, 256, 200, ATTENTION_MAX_SPLITS),
    ];
    for g in every_layout() {
        if let (Ok(lanes), true) = (std::env::var(LANES_ASKED), g.layout.subgroups) {
            assert_eq!(g.layout.subgroup_sizes.0.to_string(), lanes, "{LANES_ASKED}: the adapter's subgroups");
        }
        let mut rng = Rng(17);
        for &(h, kvh, hd, len, splits) in &cases {
            one_token(&g, &mut rng, (h, kvh, hd), len, splits, Mods::default());
        }
    }
}

/// Sliding-window layers (gemma2, gemma3): each query sees its last `window` positions, its own
/// included. Decode within, at and past the window, a window over several splits and one of a
/// single position; prompt chunks whose rows' windows start in different tiles and in the cache;
/// candidates whose window starts in the shared prefix, and in their own branch. Gemma 2's
/// soft-capped scores (a cap of 0.5 bends the random scores, which reach about 3), with and without
/// a window, in each.
#[test]
fn sliding_window_and_soft_capped_attention_match() {
    let split = ATTENTION_SPLIT_LEN as usize;
    let window = |window: usize| Mods { window, ..Default::default() };
    let capped = |window: usize| Mods { window, softcap: 0.5, ..Default::default() };
    for g in every_layout() {
        let mut rng = Rng(41);
        for &(len, w) in &[(5, 8), (8, 8), (9, 8), (300, 8), (5 * split + 60, 2 * split + 3), (300, 1)] {
            one_token(&g, &mut rng, (8, 2, 64), len, ATTENTION_MAX_SPLITS, window(w));
        }
        one_token(&g, &mut rng, (2, 1, 256), 200, ATTENTION_MAX_SPLITS, window(64));
        one_token(&g, &mut rng, (8, 2, 64), 300, ATTENTION_MAX_SPLITS, capped(0));
        one_token(&g, &mut rng, (8, 2, 64), 5 * split + 60, ATTENTION_MAX_SPLITS, capped(2 * split + 3));
        for &(cached, rows, w) in &[(0, 64, 8), (90, 20, 33), (200, 45, 64), (5, 12, 3)] {
            attention_over_prompt_chunk(&g, (6, 2, 32), cached, rows, window(w));
        }
        attention_over_prompt_chunk(&g, (2, 1, 256), 30, 40, window(16));
        attention_over_prompt_chunk(&g, (6, 2, 32), 90, 20, capped(0));
        attention_over_prompt_chunk(&g, (6, 2, 32), 90, 20, capped(33));
        attention_over_candidates(&g, (6, 2, 32), 70, ATTENTION_MAX_SPLITS, window(16));
        attention_over_candidates(&g, (6, 2, 32), 70, ATTENTION_MAX_SPLITS, window(3));
        attention_over_candidates(&g, (14, 2, 64), 3 * split + 5, ATTENTION_MAX_SPLITS, window(2 * split));
        attention_over_candidates(&g, (14, 2, 64), 3 * split + 5, ATTENTION_MAX_SPLITS, capped(2 * split));
    }
}

/// A sliding-window layer's cache as a ring (KvCache::ring_rows): position j in row j % slots, the
/// newest one written there. Decode past several turns of the ring (a ring of the window alone, one
/// of more, one not yet full, the window over several splits, 256-wide heads, soft-capped); prompt
/// chunks whose keys wrap round it (one ring of exactly window + rows - 1 rows, the fewest a chunk
/// needs); candidates whose shared prefix has wrapped.
#[test]
fn ring_cache_attention_matches() {
    let split = ATTENTION_SPLIT_LEN as usize;
    let ring = |window: usize, slots: usize| Mods { window, slots, softcap: 0.0 };
    for g in every_layout() {
        let mut rng = Rng(43);
        for &(len, w, slots) in
            &[(300, 8, 8), (300, 8, 13), (5, 8, 12), (5 * split + 60, 2 * split + 3, 2 * split + 40)]
        {
            one_token(&g, &mut rng, (8, 2, 64), len, ATTENTION_MAX_SPLITS, ring(w, slots));
        }
        one_token(&g, &mut rng, (2, 1, 256), 200, ATTENTION_MAX_SPLITS, ring(64, 70));
        let capped = Mods { softcap: 0.5, ..ring(2 * split + 3, 2 * split + 9) };
        one_token(&g, &mut rng, (8, 2, 64), 5 * split + 60, ATTENTION_MAX_SPLITS, capped);
        for &(cached, rows, w, slots) in &[(90, 20, 33, 52), (100, 64, 8, 71), (200, 45, 64, 120), (5, 12, 3, 14)] {
            attention_over_prompt_chunk(&g, (6, 2, 32), cached, rows, ring(w, slots));
        }
        attention_over_prompt_chunk(&g, (2, 1, 256), 30, 40, ring(16, 55));
        attention_over_candidates(&g, (6, 2, 32), 70, ATTENTION_MAX_SPLITS, ring(16, 20));
        attention_over_candidates(&g, (14, 2, 64), 3 * split + 5, ATTENTION_MAX_SPLITS, ring(2 * split, 2 * split + 8));
    }
}

#[test]
fn attention_holds_with_4_to_64_lane_subgroups() {
    // Decode attention sums its lanes' partials with subgroups where the layout has them: again in
    // child processes on lavapipe with the subgroups of SwiftShader (4 lanes), Intel (16), NVIDIA
    // and Apple (32) and AMD (64) (LP_NATIVE_VECTOR_WIDTH); prompt chunks and candidates too at 4
    // (the CPU family's attention_prompt_lanes in SwiftShader's 4-lane shape) and 64 (at 32 lanes
    // lavapipe takes minutes over them); decode's splits merged in Wo, whose row walk reduces with
    // subgroups, at every width.
    let decode = "attention_matches_with_gqa_and_stores_this_position";
    let prompt = "attention_over_batch_rows_and_candidate_branches";
    let in_wo = "attention_splits_merged_in_wo_match_the_reference";
    rerun_with_subgroup_lanes(4, &[decode, prompt, in_wo]);
    for lanes in [16, 32] {
        rerun_with_subgroup_lanes(lanes, &[decode, in_wo]);
    }
    rerun_with_subgroup_lanes(64, &[decode, prompt, in_wo]);
}

/// One token at position len - 1 over a cache of len - 1 positions (its last `m.window` of them in a
/// sliding-window layer; 0: all).
fn one_token(g: &On, rng: &mut Rng, (h, kvh, hd): (usize, usize, usize), len: usize, splits: u32, m: Mods) {
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
    let ring = |x: &[f32]| ringed(x, kv_dim, m.slots);
    let qb = g.storage_with("qkv", bytemuck::cast_slice(&qkv));
    let kb = cache_with(g, "k", &ring(&stale_k));
    let vb = cache_with(g, "v", &ring(&stale_v));
    let out = g.storage("out", 4 * (h * hd) as u64);
    let step = step_on(g, pos as u32);
    let (none_k, none_v) = (g.storage("k_branch", 16), g.storage("v_branch", 16));
    let partial = g.storage("partial", attention_partial_bytes(1, h as u32, splits, hd as u32));
    let b = AttentionBuffers {
        qkv: &qb,
        k_cache: &kb,
        v_cache: &vb,
        k_branch: &none_k,
        v_branch: &none_v,
        out: &out,
        partial: &partial,
        rotations: None,
    };
    let p = m.params(params(h, kvh, hd, splits, 0));
    let first = first_key(pos, m.window) * kv_dim;
    // Runs attention over `b`; checks its output and the whole caches it leaves.
    let run_and_check = |b: &AttentionBuffers, shape: &str, q: &[f32], want_k: &[f32], want_v: &[f32]| {
        kernels::submit(g, &kernels::attention(g.t(), b, &step, p, AttentionRows::One).unwrap());
        let got = read_on(g, b.out, h * hd);
        let (k, v, seen) = (&want_k[first..], &want_v[first..], len - first / kv_dim);
        check_attention(g, "attention", shape, &got, q, k, v, (h, kvh, hd), seen, m.softcap);
        let (want_k, want_v) = (ring(want_k), ring(want_v));
        check_cache(g, "attention k store", shape, &read_cache(g, b.k_cache, want_k.len()), &want_k);
        check_cache(g, "attention v store", shape, &read_cache(g, b.v_cache, want_v.len()), &want_v);
    };
    let shape = format!("heads {h}/{kvh} x {hd}, kv_len {len}, at most {splits} splits, {m:?}");
    run_and_check(&b, &shape, &q, &k, &v);
    if g.layout.is_cpu() {
        // RoPE in the kernel (the CPU adapters' decode graph): q and this position's k arrive
        // unrotated; the cache's rows are rotated already. A full rotation, and a partial one
        // with per-frequency factors.
        let (n_rot, factors) = if len.is_multiple_of(2) { (hd / 2, true) } else { (hd, false) };
        let ff: Vec<f32> = (0..n_rot / 2).map(|i| if factors { 1.0 + i as f32 } else { 1.0 }).collect();
        let r = reference::Rope {
            n_rot,
            neox: false,
            base: 10000.0,
            freq_scale: 0.5,
            freq_factors: factors.then_some(&ff[..]),
        };
        let (mut q_rot, mut k_rot) = (q.clone(), k.clone());
        reference::rope(&mut q_rot, h, hd, pos, &r);
        reference::rope(&mut k_rot[pos * kv_dim..], kvh, hd, pos, &r);
        let rotations = cpu::rope_rotations(pos as u32, hd, n_rot, 10000.0, 0.5, factors.then_some(&ff[..]));
        let (kb, vb, rb) = (
            cache_with(g, "k", &ring(&stale_k)),
            cache_with(g, "v", &ring(&stale_v)),
            g.storage_with("rotations", bytemuck::cast_slice(&rotations)),
        );
        let b = AttentionBuffers { k_cache: &kb, v_cache: &vb, rotations: Some(&rb), ..b };
        let shape = format!("{shape}, rope in the kernel (n_rot {n_rot})");
        run_and_check(&b, &shape, &q_rot, &k_rot, &v);
    }
}

/// Decode attention leaving its splits unmerged (kernels::attention_unmerged) and Wo merging them
/// in its activation loader (gpu::matvec_combine), against reference::matvec of reference::attention
/// added to the residual: from one working split (attention writes att itself) to
/// COMBINE_IN_WO_SPLITS, and a length past what the dispatched splits would take at
/// ATTENTION_SPLIT_LEN each; Wo in Q8_0 (the 8-value row walk) and Q4_0 (the paired walk).
#[test]
fn attention_splits_merged_in_wo_match_the_reference() {
    let (most, split) = (COMBINE_IN_WO_SPLITS, ATTENTION_SPLIT_LEN as usize);
    let cases = [
        (9usize, 3usize, 64usize, 1usize, most),
        (9, 3, 64, split + 1, most),
        (9, 3, 64, most as usize * split, most),
        (8, 2, 128, 3 * split - 5, most),
        (6, 2, 80, 2 * split + 7, 2),
        (14, 2, 64, most as usize * split + 40, most),
    ];
    for g in gpu_layouts() {
        let mut rng = Rng(31);
        for &(h, kvh, hd, len, splits) in &cases {
            for ty in [QuantType::Q8_0, QuantType::Q4_0] {
                merged_in_wo(&g, &mut rng, (h, kvh, hd), len, splits, ty);
            }
        }
    }
}

/// One token at position len - 1 through attention_unmerged and Wo (`ty`, 48 rows; Q4_0's in two
/// parts) reading its splits.
fn merged_in_wo(g: &On, rng: &mut Rng, (h, kvh, hd): (usize, usize, usize), len: usize, splits: u32, ty: QuantType) {
    let (kv_dim, dim) = (kvh * hd, 48);
    let (k, v, q) = (rng.vec(len * kv_dim), rng.vec(len * kv_dim), rng.vec(h * hd));
    let pos = len - 1;
    let qkv: Vec<f32> = q.iter().chain(&k[pos * kv_dim..]).chain(&v[pos * kv_dim..]).cloned().collect();
    let (qb, kb, vb) =
        (g.storage_with("qkv", bytemuck::cast_slice(&qkv)), cache_with(g, "k", &k), cache_with(g, "v", &v));
    let (none_k, none_v) = (g.storage("k_branch", 16), g.storage("v_branch", 16));
    let att = g.storage("att", 4 * (h * hd) as u64);
    let partial = g.storage("partial", attention_partial_bytes(1, h as u32, splits, hd as u32));
    let b = AttentionBuffers {
        qkv: &qb,
        k_cache: &kb,
        v_cache: &vb,
        k_branch: &none_k,
        v_branch: &none_v,
        out: &att,
        partial: &partial,
        rotations: None,
    };
    let (bytes, wo) = random_matrix(ty, dim, h * hd, rng);
    let residual = rng.vec(dim);
    let x = g.storage_with("x", bytemuck::cast_slice(&residual));
    let step = step_on(g, pos as u32);
    let s = gpu::Splits { n_heads: h as u32, head_dim: hd as u32, n_splits: splits };
    let mut dispatches = vec![kernels::attention_unmerged(g.t(), &b, &step, params(h, kvh, hd, splits, 0)).unwrap()];
    // Q4_0's Wo in two parts of rows (as the loader splits a matrix too large for one binding),
    // each dispatch merging the splits for its rows.
    let parts: &[(usize, usize)] = if ty == QuantType::Q4_0 { &[(0, 32), (32, dim - 32)] } else { &[(0, dim)] };
    let row_bytes = bytes.len() / dim;
    let mut stored: Vec<Option<Stored>> = parts.iter().map(|_| None).collect();
    for (&(r0, rows), stored) in parts.iter().zip(stored.iter_mut()) {
        let (w, _) = upload_matrix(g, ty, rows, h * hd, &bytes[r0 * row_bytes..(r0 + rows) * row_bytes], stored);
        let p = MatvecParams { accumulate: 1, out_offset: r0 as u32, ..Default::default() };
        dispatches.push(gpu::matvec_combine(g.t(), &w, &att, &partial, &x, &step, p, s).unwrap());
    }
    kernels::submit(g, &dispatches);
    let round = |x: &[f32]| x.iter().map(|v| f16::from_f32(*v).to_f32()).collect::<Vec<_>>();
    let att_want = reference::attention(&q, &round(&k), &round(&v), h, kvh, hd, len);
    let want: Vec<f32> = reference::matvec(&wo, &att_want).iter().zip(&residual).map(|(a, r)| a + r).collect();
    let shape = format!("heads {h}/{kvh} x {hd}, kv_len {len}, at most {splits} splits, {}", g.layout);
    check("x += Wo att (splits merged in Wo)", ty.name(), &shape, &read_on(g, &x, dim), &want);
}

/// A prompt chunk (rows at consecutive positions after a cached prefix) and n candidates (rows at
/// one position, each with its own branch after a shared prefix) against reference::attention.
#[test]
fn attention_over_batch_rows_and_candidate_branches() {
    for g in &every_layout() {
        // Heads (query, kv) x width, cached positions, chunk rows: partial tiles and groups of 8
        // rows, full chunks from position 0, one row, groups 1, 3, 4 and 7, 80, 128 and 256 wide,
        // and the GPU family's largest chunk.
        for &(h, kvh, hd, cached, rows) in &[
            (6usize, 2usize, 32usize, 90usize, 20usize),
            (9, 3, 64, 0, 64),
            (9, 3, 64, 33, 1),
            (4, 4, 128, 37, 9),
            (8, 2, 128, 0, 30),
            (8, 2, 64, 200, 45),
            (14, 2, 64, 150, 40),
            (9, 3, 64, 20, 256),
            (6, 2, 80, 10, 20),
            (2, 1, 256, 5, 12),
        ] {
            attention_over_prompt_chunk(g, (h, kvh, hd), cached, rows, Mods::default());
        }
        // Candidates after a short prefix, and after one long enough for several splits.
        attention_over_candidates(g, (6, 2, 32), 70, 1, Mods::default());
        attention_over_candidates(g, (6, 2, 32), 70, ATTENTION_MAX_SPLITS, Mods::default());
        attention_over_candidates(
            g,
            (14, 2, 64),
            3 * ATTENTION_SPLIT_LEN as usize + 5,
            ATTENTION_MAX_SPLITS,
            Mods::default(),
        );
    }
}

/// A prompt chunk of `rows` rows after `cached` positions in the cache (each row seeing its last
/// `m.window` positions; 0: all).
fn attention_over_prompt_chunk(g: &On, (h, kvh, hd): (usize, usize, usize), cached: usize, rows: usize, m: Mods) {
    let mut rng = Rng(23 + cached as u64);
    let kv_dim = kvh * hd;
    let p = m.params(params(h, kvh, hd, 1, 0));
    let partial = g.storage("partial", 16);
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
    let ring = |x: &[f32]| ringed(x, kv_dim, m.slots);
    let (qb, kb, vb) = (
        g.storage_with("qkv", bytemuck::cast_slice(&qkv)),
        cache_with(g, "k", &ring(&ck)),
        cache_with(g, "v", &ring(&cv)),
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
    };
    let step = g.uniform("step", &Step::chunk(cached as u32, rows as u32));
    kernels::submit(g, &kernels::attention(g.t(), &b, &step, p, AttentionRows::Prompt(rows as u32)).unwrap());
    let got = read_on(g, &out, rows * h * hd);
    let shape = format!("heads {h}/{kvh} x {hd}, {rows} rows after {cached}, {m:?}");
    for r in 0..rows {
        let (row, got) = (format!("row {r}: {shape}"), &got[r * h * hd..(r + 1) * h * hd]);
        let q = &q[r * h * hd..(r + 1) * h * hd];
        let first = first_key(cached + r, m.window);
        let (ks, vs) = (&k[first * kv_dim..], &v[first * kv_dim..]);
        let seen = cached + r + 1 - first;
        check_attention(g, "attention (prompt chunk)", &row, got, q, ks, vs, (h, kvh, hd), seen, m.softcap);
    }
    let (k, v) = (ring(&k), ring(&v));
    check_cache(g, "attention (prompt chunk) k store", &shape, &read_cache(g, &kb, k.len()), &k);
    check_cache(g, "attention (prompt chunk) v store", &shape, &read_cache(g, &vb, v.len()), &v);
}

/// 3 candidates after a shared prefix of `prefix` positions in the cache, each with 4 earlier
/// positions in its own branch, now at position prefix + 4 (seeing its last `m.window`; 0: all).
fn attention_over_candidates(g: &On, (h, kvh, hd): (usize, usize, usize), prefix: usize, splits: u32, m: Mods) {
    let mut rng = Rng(29);
    let kv_dim = kvh * hd;
    let (n, earlier, branch_len) = (3usize, 4usize, 8usize);
    let p = m.params(params(h, kvh, hd, splits, branch_len as u32));
    let partial = g.storage("partial", attention_partial_bytes(n as u32, h as u32, splits, hd as u32));
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
    let ring = |x: &[f32]| ringed(x, kv_dim, m.slots);
    let (qb, kb, vb) = (
        g.storage_with("qkv", bytemuck::cast_slice(&qkv)),
        cache_with(g, "k", &ring(&pk)),
        cache_with(g, "v", &ring(&pv)),
    );
    let (kbb, vbb, out) =
        (cache_with(g, "kb", &bk), cache_with(g, "vb", &bv), g.storage("out", 4 * (n * h * hd) as u64));
    let b = AttentionBuffers {
        qkv: &qb,
        k_cache: &kb,
        v_cache: &vb,
        k_branch: &kbb,
        v_branch: &vbb,
        out: &out,
        partial: &partial,
        rotations: None,
    };
    let step = g.uniform("step", &Step::candidates((prefix + earlier) as u32, n as u32, prefix as u32));
    kernels::submit(g, &kernels::attention(g.t(), &b, &step, p, AttentionRows::Candidates(n as u32)).unwrap());
    let got = read_on(g, &out, n * h * hd);
    let shape = format!("heads {h}/{kvh} x {hd}, prefix {prefix}, at most {splits} splits, {m:?}");
    let first = first_key(prefix + earlier, m.window);
    let mut bk_after = bk.clone();
    let mut bv_after = bv.clone();
    for r in 0..n {
        let whole = |prefix: &[f32], branch: &[f32], now: &[f32]| -> Vec<f32> {
            let mut all = prefix.to_vec();
            all.extend_from_slice(&branch[r * branch_len * kv_dim..(r * branch_len + earlier) * kv_dim]);
            all.extend_from_slice(&now[r * kv_dim..(r + 1) * kv_dim]);
            all
        };
        let (kr, vr) = (whole(&pk, &bk, &nk_now), whole(&pv, &bv, &nv_now));
        let (row, got) = (format!("candidate {r} of {n}: {shape}"), &got[r * h * hd..(r + 1) * h * hd]);
        let q = &q[r * h * hd..(r + 1) * h * hd];
        let (ks, vs, seen) = (&kr[first * kv_dim..], &vr[first * kv_dim..], prefix + earlier + 1 - first);
        check_attention(g, "attention (candidates)", &row, got, q, ks, vs, (h, kvh, hd), seen, m.softcap);
        let at = (r * branch_len + earlier) * kv_dim;
        bk_after[at..at + kv_dim].copy_from_slice(&nk_now[r * kv_dim..(r + 1) * kv_dim]);
        bv_after[at..at + kv_dim].copy_from_slice(&nv_now[r * kv_dim..(r + 1) * kv_dim]);
    }
    check_cache(g, "attention (candidates) k store", &shape, &read_cache(g, &kbb, bk.len()), &bk_after);
    check_cache(g, "attention (candidates) v store", &shape, &read_cache(g, &vbb, bv.len()), &bv_after);
    let pk = ring(&pk);
    check_cache(g, "attention (candidates) prefix untouched", &shape, &read_cache(g, &kb, pk.len()), &pk);
}

/// The decode graphs end to end (tiny-llama2 Q8_0, GPU family, a context longer than the splits Wo
/// merges, gpu::combine_in_wo_splits): while the cache holds fewer than that many splits of
/// ATTENTION_SPLIT_LEN positions a step merges attention's splits in Wo (one dispatch a layer
/// fewer), from there on in attention's combine dispatch. The steps on either side of that edge
/// (all those splits working, then one more) give the CPU family's logits.
#[test]
fn decode_merges_splits_in_wo_then_by_a_combine_dispatch() {
    // The splits Wo merges: SmolLM2's and tiny-llama2's (dim 256, 4 heads of 64) 4, a 1B's 2 and
    // an 8B's 1.
    let shapes = [(576, 576), (256, 256), (2048, 2048), (4096, 4096)];
    assert_eq!(shapes.map(|(rows, cols)| gpu::combine_in_wo_splits(rows, cols)), [COMBINE_IN_WO_SPLITS, 4, 2, 1]);
    let Some(path) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    let edge = (gpu::combine_in_wo_splits(256, 256) * ATTENTION_SPLIT_LEN) as usize;
    let prompt: Vec<u32> = (0..edge - 1).map(|i| 100 + (i * 37 % 900) as u32).collect();
    let mut runs = vec![];
    for family in [Family::Gpu, Family::Cpu] {
        let layout = Layout::family(&common::gpu(), family);
        let mut model = Model::load_file(common::gpu(), layout, &path, Some(2 * edge)).unwrap();
        let first = pollster::block_on(model.prefill(&prompt, false)).unwrap();
        let before = model.dispatches_per_token();
        let at_edge = pollster::block_on(model.step(first.id, true)).unwrap(); // kv_len = edge
        let after = model.dispatches_per_token();
        let past = pollster::block_on(model.step(at_edge.id, true)).unwrap(); // kv_len = edge + 1
        if family == Family::Gpu {
            assert_eq!(after, before + model.cfg.n_layers, "a combine dispatch a layer past {edge} positions");
        }
        runs.push([at_edge.logits.unwrap(), past.logits.unwrap()]);
    }
    for (i, (gpu, cpu)) in runs[0].iter().zip(&runs[1]).enumerate() {
        let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = common::max_abs_diff(gpu, cpu);
        assert!(worst <= 1e-2 * scale, "step {i} at the edge: logits off by {worst} (largest {scale})");
    }
}
