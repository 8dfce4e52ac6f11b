//! attention against reference::attention on every layout: one token with GQA (RoPE in the kernel
//! where the layout has it), a prompt chunk after a cached prefix, and n
//! candidates with their own branches; the keys and values each stores into the cache checked too.

mod common;

use common::kernels::*;
use common::Rng;
use webllama::kernels::cpu;
use webllama::kernels::{self, AttentionBuffers, AttentionParams, AttentionRows, Step};
use webllama::reference;

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
                g.storage_with("k", bytemuck::cast_slice(&stale_k)),
                g.storage_with("v", bytemuck::cast_slice(&stale_v)),
                g.storage_with("rotations", bytemuck::cast_slice(&rotations)),
            );
            let b = AttentionBuffers { k_cache: &kb, v_cache: &vb, rotations: Some(&rb), ..b };
            let want = reference::attention(&q_rot, &k_rot, &v, h, kvh, hd, len);
            let shape = format!("{shape}, rope in the kernel (n_rot {n_rot})");
            run_and_check(&b, &shape, &want, &k_rot, &v);
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
