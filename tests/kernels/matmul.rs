//! The matmul kernels (tests/kernels.rs's module): the tiled matmul's tile choice, every quant type
//! on every layout against reference.rs, and f16 tiles' clamp of values past f16's range.

use crate::common::kernels::*;
use crate::common::{gpu, Rng};
use webllama::format::quant::{QuantType, SUPPORTED};
use webllama::kernels::gpu::{MatmulTile, MATMUL_FEW, MATMUL_MIN_WORKGROUPS, MATMUL_TILES};
use webllama::kernels::{self, MatmulParams, Step};
use webllama::reference;
use webllama::{Family, Overrides};

/// The tiled matmul's tile: none wider than the batch (a 32-token chunk in 32-token tiles, as
/// llama.cpp's small tile), and otherwise the largest that gives 128 workgroups.
#[test]
fn matmul_tiles_fit_the_batch() {
    let smallest = MATMUL_TILES[MATMUL_TILES.len() - 1];
    for rows in [64, 576, 2048, 16384, 128256] {
        for max_tokens in [9, 32, 33, 64, 256, 512] {
            let tile = MatmulTile::choose(rows, max_tokens, MATMUL_MIN_WORKGROUPS);
            assert!(tile.tokens <= max_tokens.max(smallest.tokens), "{rows} rows, batches of {max_tokens}: {tile:?}");
        }
        assert_eq!(MatmulTile::choose(rows, 32, MATMUL_MIN_WORKGROUPS), smallest, "{rows} rows in a 32-token chunk");
    }
    // Llama-3.2-1B's gate_up (16,384 rows) in a 512-token chunk: 128 x 128 (512 workgroups); its
    // 2,048-row Wo: 64 x 64 (256; 128 x 128 would give 64).
    assert_eq!(MatmulTile::choose(16384, 512, MATMUL_MIN_WORKGROUPS), MATMUL_TILES[0]);
    assert_eq!(MatmulTile::choose(2048, 512, MATMUL_MIN_WORKGROUPS), MATMUL_TILES[1]);
    // With no workgroup count asked for (WEBLLAMA_MATMUL_MIN_WORKGROUPS=0), llama.cpp's choice:
    // the largest tile no wider than the batch.
    assert_eq!(MatmulTile::choose(2048, 512, 0), MATMUL_TILES[0]);
    assert_eq!(MatmulTile::choose(2048, 64, 0), MATMUL_TILES[1]);
}

#[test]
fn matmul_every_quant_type_on_both_layouts() {
    // 134 rows: whole 32-, 64- and 128-row tiles and a partial one after them, which ends within
    // a group of 4 rows (the tiled kernel stages 4 rows a thread).
    let rows = 134usize;
    // Every layout, and where the adapter has shader-f16 two of the GPU family's options for f16
    // tiles: products in f16 (Layout::f16_products, WEBLLAMA_F16_PRODUCTS=1; checked within
    // F16_PRODUCTS_NMSE_MAX), and the large tile stepping 16 columns (Layout::f16_k32 off); and the
    // tiles staged a component a thread. They follow the tiles whatever the type, so they take a
    // few types (lavapipe compiles each tiled pipeline for ~1.5 s), and only the tiled kernel.
    let mut layouts = every_layout();
    if gpu().has_f16() {
        let gpu = Overrides { family: Some(Family::Gpu), ..Default::default() };
        layouts.push(on(Overrides { f16_products: Some(true), ..gpu }));
        layouts.push(on(Overrides { f16_k32: Some(false), ..gpu }));
    }
    // The tiles staged a vector component a thread (Layout::component_staging: Vulkan only).
    layouts.push(on(Overrides { family: Some(Family::Gpu), component_staging: Some(true), ..Default::default() }));
    for g in layouts {
        let mut rng = Rng(0xba7c);
        let option = g.layout.f16_products || (g.layout.f16_tiles && !g.layout.f16_k32) || g.layout.component_staging;
        // Batch capacities: up to MATMUL_FEW tokens take the matvec-shaped kernel; on GPUs, one
        // capacity per tile of the tiled kernel (workgroups past the batch's tokens return at once).
        let mut capacities = if option { vec![] } else { vec![MATMUL_FEW] };
        if g.layout.is_cpu() {
            capacities.push(72);
        } else {
            // (16-column steps change only the large tile: the others step 32 either way.)
            let tiles = if g.layout.f16_tiles && !g.layout.f16_k32 { &MATMUL_TILES[..1] } else { &MATMUL_TILES[..] };
            capacities.extend(tiles.iter().map(|&tile| capacity_taking(tile, rows as u32)));
        }
        let option_types = [QuantType::F32, QuantType::Q4_1, QuantType::Q4K, QuantType::Q6K];
        for &ty in SUPPORTED.iter().filter(|ty| !option || option_types.contains(ty)) {
            // Unquantized types: a row length that is not a multiple of 8 (the tail of the last K
            // step, and main_few's 4-value tail).
            let cols = if ty.block_elems() == 1 { 580 } else { width(ty, 576) };
            // Token rows of x longer than a weight row.
            let x_stride = cols + 8;
            let (bytes, w) = random_matrix(ty, rows, cols, &mut rng);
            let mut wb = None;
            let (m, layout) = upload_matrix(&g, ty, rows, cols, &bytes, &mut wb);
            let layout = format!(
                "{layout}{}{}",
                if g.layout.subgroups { "" } else { ", no subgroups" },
                match (g.layout.f16_tiles, g.layout.f16_products, g.layout.f16_k32) {
                    (true, true, _) => ", f16 tiles and products",
                    (true, false, false) => ", f16 tiles, 16-column steps",
                    (true, false, true) => ", f16 tiles",
                    _ => "",
                }
            );
            let layout = if g.layout.component_staging { format!("{layout}, component staging") } else { layout };
            for &max_tokens in &capacities {
                // 1, 5: a part of one token tile; 33: past one 32-token tile; 64: whole tiles; 70:
                // past one 64-token tile.
                for n in [1usize, 5, 8, 33, 64, 70].into_iter().filter(|&n| n <= max_tokens as usize) {
                    matmul_case(&g, &m, &w, (n, max_tokens, x_stride), &mut rng, ty.name(), &layout);
                }
            }
        }
    }
}

/// With f16 tiles (the GPU family's default where the device has shader-f16), a weight or an
/// activation past f16's 65504 (a large SwiGLU output into the down projection) is clamped into
/// the tile: its token's sums are those of the clamped values, finite, where an unclamped f16 would
/// be inf and every sum of the token NaN.
#[test]
fn f16_tiles_clamp_values_past_f16s_range() {
    let g = on(Overrides { family: Some(Family::Gpu), f16_products: Some(false), ..Default::default() });
    if !g.layout.f16_tiles {
        assert!(std::env::var_os("CI").is_none(), "CI's lavapipe has shader-f16: the GPU family should take f16 tiles");
        eprintln!("SKIPPED: this adapter has no shader-f16, so the GPU family has no f16 tiles");
        return;
    }
    let (rows, cols, n, max_tokens) = (64usize, 64usize, 12usize, 32u32);
    let mut rng = Rng(0xf16);
    let mut w = rng.vec(rows * cols);
    w[3 * cols + 7] = 9.0e4; // row 3
    let mut x = rng.vec(n * cols);
    x[cols + 7] = 7.0e4; // token 1, against row 3's large weight
    x[5 * cols + 20] = -1.0e6; // token 5
    let clamped = |v: &[f32]| v.iter().map(|v| v.clamp(-65504.0, 65504.0)).collect::<Vec<f32>>();
    let w_tile = reference::Mat { rows, cols, data: clamped(&w) };
    let want: Vec<f32> = (0..n).flat_map(|t| reference::matvec(&w_tile, &clamped(&x[t * cols..][..cols]))).collect();
    let mut wb = None;
    let bytes: Vec<u8> = bytemuck::cast_slice(&w).to_vec();
    let (m, _) = upload_matrix(&g, QuantType::F32, rows, cols, &bytes, &mut wb);
    let xb = g.storage_with("x", bytemuck::cast_slice(&x));
    let step = g.uniform("step", &Step::chunk(0, n as u32));
    let out = g.storage("out", (4 * n * rows) as u64);
    let p = MatmulParams { x_stride: cols as u32, out_stride: rows as u32, ..Default::default() };
    kernels::submit(&g, &[kernels::matmul(g.t(), &m, &xb, &out, &step, p, max_tokens).unwrap()]);
    let got = read_on(&g, &out, n * rows);
    assert!(got.iter().all(|v| v.is_finite()), "a non-finite sum: {:?}", &got[rows..2 * rows]);
    check("matmul, f16 tiles, values past 65504", "F32", "[64x64] x 12 tokens", &got, &want);
}
