//! Helpers of the kernel tests (tests/kernels.rs, tests/attention.rs): a device with the layout
//! the kernels are built for, every layout to test, random quantized matrices laid out as the model
//! loader lays them out, the check against reference.rs, and one matmul case.

use super::{gpu, Rng};
use std::sync::Arc;
use webllama::format::quant::QuantType;
use webllama::kernels::cpu;
use webllama::kernels::gpu::{MatmulTile, MATMUL_FEW, MATMUL_MIN_WORKGROUPS};
use webllama::kernels::{self, MatmulParams, MatvecParams, QuantMatrix, Step, Target};
use webllama::model::Stored;
use webllama::reference;
use webllama::{Family, Gpu, Layout, Overrides};

pub const NMSE_MAX: f64 = 1e-6;

/// The NMSE the tiled matmul keeps with its products in f16 within each K step
/// (Layout::f16_products, not a default): f16 rounds each step's running sums (1.5e-6 measured on
/// lavapipe; f16 tiles with f32 products 2.4e-7).
pub const F16_PRODUCTS_NMSE_MAX: f64 = 4e-6;

/// Checks `got` against `want`: NMSE <= 1e-6, naming the first index off by more than 1e-3 of the scale.
pub fn check(op: &str, ty: &str, shape: &str, got: &[f32], want: &[f32]) {
    check_within(op, ty, shape, got, want, NMSE_MAX)
}

/// `check` with an NMSE bound of `nmse_max`.
pub fn check_within(op: &str, ty: &str, shape: &str, got: &[f32], want: &[f32], nmse_max: f64) {
    assert_eq!(got.len(), want.len(), "{op} [{ty}] {shape}: length");
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().max(1e-30);
    let nmse = num / den;
    if nmse.is_nan() || nmse > nmse_max {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let bad = got.iter().zip(want).position(|(a, b)| (a - b).is_nan() || (a - b).abs() > 1e-3 * scale).unwrap_or(0);
        panic!(
            "{op} [{ty}] {shape}: NMSE {nmse:.3e} > {nmse_max:e}; first bad index {bad}: gpu {} vs reference {}",
            got[bad], want[bad]
        );
    }
    // One wrong value among many hides in the NMSE: none may be off by more than MAX_ABS_REL of the
    // largest reference value.
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let (worst, err) = got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |m, (i, e)| {
        if e > m.1 || e.is_nan() {
            (i, e)
        } else {
            m
        }
    });
    assert!(
        err <= MAX_ABS_REL * scale,
        "{op} [{ty}] {shape}: |gpu - reference| {err:.3e} at index {worst} ({} vs {}) > {MAX_ABS_REL:e} x max |reference| {scale:.3e}",
        got[worst],
        want[worst]
    );
}

/// The largest error `check` allows in any one value, relative to the largest reference value.
pub const MAX_ABS_REL: f32 = 1e-2;

pub fn read(buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(gpu().read_f32(buf, 0, n as u64)).unwrap()
}

pub fn step_uniform(pos: u32) -> wgpu::Buffer {
    gpu().uniform("step", &Step::single(pos))
}

/// Random well-scaled blocks of `ty` (any quant bits, small finite scales) and the exact
/// dequantization the kernels must reproduce.
pub fn random_matrix(ty: QuantType, rows: usize, cols: usize, rng: &mut Rng) -> (Vec<u8>, reference::Mat) {
    let n_blocks = rows * cols / ty.block_elems() as usize;
    let mut bytes: Vec<u8> = (0..n_blocks * ty.block_bytes() as usize).map(|_| rng.next_u32() as u8).collect();
    bytes.chunks_exact_mut(ty.block_bytes() as usize).for_each(|b| ty.sanitize_block(b));
    let mat = reference::dequantize(ty, &bytes, rows, cols).unwrap();
    (bytes, mat)
}

/// A row length that is whole blocks of `ty`: SmolLM2's 576 where it can be (K-quants need 256s).
pub fn width(ty: QuantType, preferred: usize) -> usize {
    let b = ty.block_elems() as usize;
    preferred.div_ceil(b) * b
}

/// A device and the layout the kernels under test are built for (derefs to the device).
pub struct On {
    pub gpu: Arc<Gpu>,
    pub layout: Layout,
}

impl std::ops::Deref for On {
    type Target = Gpu;
    fn deref(&self) -> &Gpu {
        &self.gpu
    }
}

impl On {
    pub fn t(&self) -> Target<'_> {
        Target { gpu: &self.gpu, layout: &self.layout }
    }
}

/// The shared device with the layout `o` chooses.
pub fn on(o: Overrides) -> On {
    let gpu = gpu();
    let layout = Layout::choose(&gpu, &o);
    On { gpu, layout }
}

/// The shared device with its own layout.
pub fn adapter() -> On {
    on(Overrides::default())
}

/// The shared device with the layout of `family`.
pub fn family(family: Family) -> On {
    on(Overrides { family: Some(family), ..Default::default() })
}

/// matvec with `fold` (kernels::matvec_folded) on `g`'s layout.
pub fn matvec_fold(
    g: &On,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
    fold: cpu::Fold,
) -> webllama::Result<kernels::Dispatch> {
    kernels::matvec_folded(g.t(), w, x, out, step, p, fold)
}

pub fn read_on(g: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(g.read_f32(buf, 0, n as u64)).unwrap()
}

pub fn step_on(g: &Gpu, pos: u32) -> wgpu::Buffer {
    g.uniform("step", &Step::single(pos))
}

/// Set for the children of rerun_with_subgroup_lanes: the subgroup size the child must see.
pub const LANES_ASKED: &str = "WEBLLAMA_TEST_SUBGROUP_LANES";

/// Whether this process is a child of rerun_with_subgroup_lanes.
pub fn is_lanes_child() -> bool {
    std::env::var_os(LANES_ASKED).is_some()
}

/// Runs `tests` of this test binary again in a child process on lavapipe whose subgroups have
/// `lanes` lanes (LP_NATIVE_VECTOR_WIDTH = 32 x lanes bits; the children can check they got them
/// through LANES_ASKED); panics with the child's output unless every one passed. Does nothing on
/// other adapters or in a child.
pub fn rerun_with_subgroup_lanes(lanes: u32, tests: &[&str]) {
    if is_lanes_child() {
        return;
    }
    let adapter = crate::common::gpu().info.name.clone();
    // CI runs on lavapipe: a run there on another adapter would skip every subgroup size quietly.
    assert!(
        adapter.contains("llvmpipe") || std::env::var_os("CI").is_none(),
        "CI is set but the adapter is {adapter}, not lavapipe: the subgroup sizes would go untested"
    );
    if !adapter.contains("llvmpipe") {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "--test-threads=2"])
        .args(tests)
        .env("LP_NATIVE_VECTOR_WIDTH", (32 * lanes).to_string())
        .env(LANES_ASKED, lanes.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed = format!("{} passed", tests.len());
    assert!(out.status.success() && text.contains(&passed), "with {lanes}-lane subgroups:\n{text}");
}

/// The GPU family with subgroups and shader-f16 where the adapter has them, and then also without
/// both (its kernels' workgroup-memory reductions and f32 tiles) and with the 8-value row walk.
pub fn gpu_layouts() -> Vec<On> {
    // Without subgroups also without shader-f16 (f32 tiles) and the paired walk: each optional
    // path and its fallback.
    let gpu_layout = |subgroups: bool| {
        on(Overrides {
            family: Some(Family::Gpu),
            subgroups: Some(subgroups),
            f16: Some(subgroups),
            paired_walk: Some(subgroups),
            ..Default::default()
        })
    };
    let mut all = vec![gpu_layout(true)];
    // CI's lavapipe has subgroups: without them the subgroup kernels would pass untested.
    assert!(gpu().has_subgroups() || std::env::var_os("CI").is_none(), "CI is set but the adapter has no subgroups");
    if gpu().has_subgroups() {
        all.push(gpu_layout(false));
    }
    all
}

/// The GPU family (with subgroups where the adapter has them, and where it has them, also without);
/// the CPU family (weights of the wide types in textures, activations through
/// subgroups where the adapter has them); the CPU family with those weights in buffers; and where
/// the adapter has subgroups, the CPU family without them (every activation loaded by every
/// invocation, textures read through sampled bindings and the K-quants a block per step, as
/// SwiftShader runs them).
pub fn every_layout() -> Vec<On> {
    let cpu_layout = |subgroups: bool, textures: bool| {
        on(Overrides {
            family: Some(Family::Cpu),
            subgroups: Some(subgroups),
            weight_textures: Some(textures),
            texture_storage_loads: Some(subgroups),
            // The K-quants wide as on lavapipe, and without subgroups a block per step as on
            // SwiftShader.
            wide_superblocks: Some(subgroups),
            // Wherever the kernels can fold (4 lanes included, where the adapter's own layout
            // leaves the folds off).
            folds: Some(true),
            ..Default::default()
        })
    };
    let mut all = gpu_layouts();
    all.extend([cpu_layout(true, true), cpu_layout(true, false)]);
    if gpu().has_subgroups() {
        all.push(cpu_layout(false, true));
    }
    all
}

/// GGUF blocks of `ty` as `g`'s layout stores them (padded where kernels::block_pad says).
pub fn gpu_blocks(g: &On, ty: QuantType, bytes: &[u8]) -> Vec<u8> {
    webllama::model::pad_blocks(&g.layout, ty, bytes).unwrap_or_else(|| bytes.to_vec())
}

/// A matrix's bytes on `g` laid out as the model loader lays them out there (rows padded to 16
/// bytes where the wide kernels read them, in a texture where the adapter reads them from one),
/// and a name for the layout.
pub fn upload_matrix<'a>(
    g: &On,
    ty: QuantType,
    rows: usize,
    cols: usize,
    bytes: &[u8],
    stored: &'a mut Option<Stored>,
) -> (QuantMatrix<'a>, String) {
    let gpu_bytes = gpu_blocks(g, ty, bytes);
    let bytes = &gpu_bytes[..];
    // The row as stored but for the CPU family's padding between rows (pad_rows).
    let packed = (bytes.len() / rows) as u32;
    let stride = kernels::row_stride(&g.layout, ty, cols as u32);
    let mut laid = if stride == packed {
        bytes.to_vec()
    } else {
        webllama::model::pad_rows(bytes, 0, packed as u64, stride as u64).1
    };
    // The whole last row too, padding included, as the loader allocates it: the wide kernels load
    // 16 bytes at a time up to the row's end, and a GPU may return zeros for a load that runs past
    // the buffer (lavapipe checks each word; an H100 caught the short buffer).
    laid.resize(rows * stride as usize, 0);
    let mut layout = match (g.layout.is_cpu(), cpu::reads_wide(&g.layout, ty, stride)) {
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

/// The smallest batch capacity above MATMUL_FEW for which `rows` rows take `tile` (the tiled
/// matmul's tile is chosen by rows and capacity); none means the tile is never used.
pub fn capacity_taking(tile: MatmulTile, rows: u32) -> u32 {
    (MATMUL_FEW + 1..=1 << 16)
        .find(|&c| MatmulTile::choose(rows, c, MATMUL_MIN_WORKGROUPS) == tile)
        .unwrap_or_else(|| panic!("{rows} rows never take the tiled matmul's tile {tile:?}"))
}

/// One matmul of `n` tokens in batches of up to `max_tokens` (x rows `x_stride` apart) against the
/// reference: into rows of a wider output at an offset; then added to an output, from weight rows
/// 10.., for every token and for the last one only (prompt logits).
pub fn matmul_case(
    g: &On,
    m: &QuantMatrix,
    w: &reference::Mat,
    (n, max_tokens, x_stride): (usize, u32, usize),
    rng: &mut Rng,
    ty: &str,
    layout: &str,
) {
    let (rows, cols) = (m.rows as usize, m.cols as usize);
    let x = rng.vec(n * x_stride);
    let xb = g.storage_with("x", bytemuck::cast_slice(&x));
    let step = g.uniform("step", &Step::chunk(0, n as u32));
    let want: Vec<Vec<f32>> = (0..n).map(|t| reference::matvec(w, &x[t * x_stride..t * x_stride + cols])).collect();
    let shape = format!("[{rows}x{cols}] x {n} tokens (batches of up to {max_tokens}), {layout}");
    let nmse_max = if g.layout.f16_products { F16_PRODUCTS_NMSE_MAX } else { NMSE_MAX };
    let check =
        |op: &str, ty: &str, shape: &str, got: &[f32], want: &[f32]| check_within(op, ty, shape, got, want, nmse_max);
    // The output after one matmul with `p` into a buffer holding `init`.
    let run = |p: MatmulParams, init: &[f32]| {
        let out = g.storage_with("out", bytemuck::cast_slice(init));
        kernels::submit(g, &[kernels::matmul(g.t(), m, &xb, &out, &step, p, max_tokens).unwrap()]);
        read_on(g, &out, init.len())
    };
    // Plain, into rows of a wider output at an offset: out[t, 3 + r] = W x[t].
    let out_stride = rows + 5;
    let base = rng.vec(n * out_stride + 3);
    let mut expect = base.clone();
    (0..n).for_each(|t| expect[3 + t * out_stride..][..rows].copy_from_slice(&want[t]));
    let p =
        MatmulParams { x_stride: x_stride as u32, out_offset: 3, out_stride: out_stride as u32, ..Default::default() };
    check("matmul", ty, &shape, &run(p, &base), &expect);
    // Residual add, weight rows 10.. only: every token, then the last token only (prompt logits).
    let r = rows - 10;
    let p = MatmulParams { out_offset: 0, out_stride: r as u32, accumulate: 1, w_row0: 10, ..p };
    let expect: Vec<f32> = (0..n * r).map(|j| base[j] + want[j / r][j % r + 10]).collect();
    check("matmul+accumulate, rows 10..", ty, &shape, &run(p, &base[..n * r]), &expect);
    let expect: Vec<f32> = (0..r).map(|i| base[i] + want[n - 1][i + 10]).collect();
    let got = run(MatmulParams { last_only: 1, ..p }, &base[..r]);
    check("matmul+accumulate, last token, rows 10..", ty, &shape, &got, &expect);
}
