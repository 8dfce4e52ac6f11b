//! The kernels that choose a step's token from the logits on the GPU and report on it, so that ids
//! and a few pairs come back instead of the logits: the argmax, the argmax under a grammar's
//! bitmask, and the log-softmax's most likely tokens with the chosen one's log-probability
//! (shaders/argmax.wgsl); a seeded draw under temperature, top-k, top-p and min-p
//! (shaders/sample.wgsl); and the logit bias and repetition penalties applied to a copy of the
//! logits before either (shaders/edit_logits.wgsl).

use super::{at, bind, Dispatch, Target};
use crate::error::Result;
use crate::gpu::compose::{wgsl, Module};
use bytemuck::{Pod, Zeroable};

/// Most likely tokens the logprobs kernel reports per row (K in shaders/argmax.wgsl).
pub const TOP_LOGPROBS: u32 = 20;
/// u32 words per row of the logprobs kernel's output: log-sum-exp, the chosen token's logprob, then
/// TOP_LOGPROBS (id, logprob) pairs (STRIDE in shaders/argmax.wgsl).
pub const LOGPROBS_STRIDE: u32 = 2 + 2 * TOP_LOGPROBS;

/// Words of a bitmask over `n` tokens (bit i % 32 of word i / 32 is token i).
pub fn mask_words(n: u32) -> u32 {
    n.div_ceil(32)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CountParams {
    pub n: u32,
    /// Rows of logits: workgroup row y reads row min(y, rows - 1) (the logprobs and sample kernels).
    pub rows: u32,
    pub _pad: [u32; 2],
}

/// Entry point `entry` of `module` with one workgroup per choice y, which reads row
/// min(y, rows - 1) of the n logits, `buffers` at their bindings.
fn per_choice(
    t: Target,
    name: &'static str,
    module: &Module,
    entry: &str,
    buffers: &[(u32, &wgpu::Buffer)],
    n: u32,
    shape: (u32, u32),
) -> Result<Dispatch> {
    per_span(t, name, module, entry, buffers, n, shape, 1)
}

/// As per_choice, with `spans` workgroups a choice (x: the span of the row).
#[allow(clippy::too_many_arguments)]
fn per_span(
    t: Target,
    name: &'static str,
    module: &Module,
    entry: &str,
    buffers: &[(u32, &wgpu::Buffer)],
    n: u32,
    (rows, choices): (u32, u32),
    spans: u32,
) -> Result<Dispatch> {
    let p = CountParams { n, rows, _pad: [0; 2] };
    bind(t.gpu, name, t.pipeline(module, entry)?, bytemuck::bytes_of(&p), at(buffers), [spans, choices, 1])
}

/// Entry point `entry` of shaders/argmax.wgsl over `rows` rows of n logits, one workgroup a row.
fn over_rows(
    t: Target,
    name: &'static str,
    entry: &str,
    buffers: &[(u32, &wgpu::Buffer)],
    n: u32,
    rows: u32,
) -> Result<Dispatch> {
    per_choice(t, name, &Module::new("argmax", &[wgsl::ARGMAX]), entry, buffers, n, (rows, rows))
}

/// argmax: result[r] = index of the largest of the n logits of row r, for `rows` rows.
pub fn argmax(t: Target, logits: &wgpu::Buffer, result: &wgpu::Buffer, n: u32, rows: u32) -> Result<Dispatch> {
    over_rows(t, "argmax", "main", &[(1, logits), (2, result)], n, rows)
}

/// Logits per workgroup of the two-level argmax's first pass (SPAN in shaders/argmax.wgsl).
pub const ARGMAX_SPAN: u32 = 2048;

/// Bytes of the two-level argmax's scratch for `rows` rows of n logits: a (best, id) pair per span.
pub fn argmax_spans_bytes(n: u32, rows: u32) -> u64 {
    8 * n.div_ceil(ARGMAX_SPAN) as u64 * rows as u64
}

/// argmax in two levels (the GPU family's): the best of each ARGMAX_SPAN logits into `spans`
/// (argmax_spans_bytes), one workgroup each, then the best of those into result[r]; as `argmax`.
pub fn argmax_spans(
    t: Target,
    logits: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    result: &wgpu::Buffer,
    n: u32,
    rows: u32,
) -> Result<[Dispatch; 2]> {
    two_level(t, "spans_first", &[(1, logits), (5, spans)], (spans, result), n, rows)
}

/// argmax_masked in two levels (the GPU family's, as argmax_spans): the best allowed logit of each
/// ARGMAX_SPAN into `spans`, then the best of those into result[r] (0xffffffff where row r of
/// `mask` allows no token).
pub fn argmax_masked_spans(
    t: Target,
    logits: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    result: &wgpu::Buffer,
    n: u32,
    rows: u32,
) -> Result<[Dispatch; 2]> {
    two_level(t, "spans_first_masked", &[(1, logits), (3, mask), (5, spans)], (spans, result), n, rows)
}

/// First-level entry `first` of shaders/argmax.wgsl over ceil(n / ARGMAX_SPAN) workgroups a row
/// (its buffers `inputs`), then spans_final from `spans` into `result`.
fn two_level(
    t: Target,
    first: &str,
    inputs: &[(u32, &wgpu::Buffer)],
    (spans, result): (&wgpu::Buffer, &wgpu::Buffer),
    n: u32,
    rows: u32,
) -> Result<[Dispatch; 2]> {
    let module = Module::new("argmax", &[wgsl::ARGMAX]);
    let spread = per_span(t, "argmax spans", &module, first, inputs, n, (rows, rows), n.div_ceil(ARGMAX_SPAN))?;
    let last = over_rows(t, "argmax", "spans_final", &[(2, result), (5, spans)], n, rows)?;
    Ok([spread, last])
}

/// argmax_masked: result[r] = index of the largest of the n logits of row r among the tokens row r
/// of `mask` ([rows, mask_words(n)] u32) allows (the first on ties; 0xffffffff where it allows
/// none), for `rows` rows.
pub fn argmax_masked(
    t: Target,
    logits: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    result: &wgpu::Buffer,
    n: u32,
    rows: u32,
) -> Result<Dispatch> {
    over_rows(t, "argmax_masked", "masked", &[(1, logits), (2, result), (3, mask)], n, rows)
}

/// logprobs: for each of `draws` choices of n logits (choice y: row min(y, rows - 1) of `logits`,
/// [rows, n]), out[y] ([draws, LOGPROBS_STRIDE] u32) = the log-sum-exp, the log-probability of token
/// chosen[y] (an argmax's or a draw's result), and the TOP_LOGPROBS most likely (id, log-probability)
/// pairs, most likely first (the lower id on ties; logprobs as f32 bits; id 0xffffffff past n).
pub fn logprobs(
    t: Target,
    logits: &wgpu::Buffer,
    chosen: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n: u32,
    rows: u32,
    draws: u32,
) -> Result<Dispatch> {
    let module = Module::new("argmax", &[wgsl::ARGMAX]);
    per_choice(t, "logprobs", &module, "logprobs", &[(1, logits), (2, chosen), (4, out)], n, (rows, draws))
}

/// Bytes of logprobs_spans' scratch for `draws` choices of n logits: per span of ARGMAX_SPAN, its
/// (max, sum of exponentials) and its cut (logit, id).
pub fn logprobs_spans_bytes(n: u32, draws: u32) -> u64 {
    16 * n.div_ceil(ARGMAX_SPAN) as u64 * draws as u64
}

/// logprobs with its first pass spread over workgroups of ARGMAX_SPAN logits (the GPU family's):
/// each span's max, sum of exponentials and cut into `spans` (logprobs_spans_bytes), then one
/// workgroup a choice combines them and gathers the top tokens; as `logprobs`.
pub fn logprobs_spans(
    t: Target,
    logits: &wgpu::Buffer,
    chosen: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n: u32,
    (rows, draws): (u32, u32),
) -> Result<[Dispatch; 2]> {
    let module = Module::new("argmax", &[wgsl::ARGMAX]);
    let x = n.div_ceil(ARGMAX_SPAN);
    let spread =
        per_span(t, "logprobs spans", &module, "logprobs_spans", &[(1, logits), (5, spans)], n, (rows, draws), x)?;
    let buffers = [(1, logits), (2, chosen), (4, out), (5, spans)];
    let last = per_choice(t, "logprobs", &module, "logprobs_final", &buffers, n, (rows, draws))?;
    Ok([spread, last])
}

/// One draw of the GPU sampler (Draw in shaders/sample.wgsl): the settings of engine::sampler and
/// the draw's uniform r in [0, 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SampleDraw {
    pub r: f32,
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    /// 0: all.
    pub top_k: u32,
    /// 1: row y of the mask applies.
    pub masked: u32,
    pub _pad: [u32; 2],
}

/// Logits per workgroup of sample's first level (SPAN in shaders/sample.wgsl).
pub const SAMPLE_SPAN: u32 = 2048;

/// Bytes of sample's first-level scratch for `draws` draws of n logits: 2 x 16 per span of
/// SAMPLE_SPAN.
pub fn sample_spans_bytes(n: u32, draws: u32) -> u64 {
    32 * n.div_ceil(SAMPLE_SPAN) as u64 * draws as u64
}

/// sample: for each of `draws` choices (choice y: row min(y, rows - 1) of `logits`, [rows, n] f32),
/// result[y] = the token engine::sampler's candidates and pick choose with draws_buf[y]
/// ([draws] SampleDraw), among the tokens row y of `mask` ([draws, mask_words(n)] u32) allows where
/// that draw is masked (0xffffffff where no token is allowed). Three dispatches: the row's first
/// pass, then (where min-p is set) its totals, over workgroups of SAMPLE_SPAN into `spans`
/// (sample_spans_bytes), then one workgroup a draw.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    t: Target,
    logits: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    draws_buf: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    result: &wgpu::Buffer,
    n: u32,
    (rows, draws): (u32, u32),
) -> Result<[Dispatch; 3]> {
    let module = Module::new("sample", &[wgsl::SAMPLE]);
    let inputs = [(1, logits), (3, mask), (4, draws_buf), (5, spans)];
    let spans_x = n.div_ceil(SAMPLE_SPAN);
    let spread = |entry| per_span(t, "sample spans", &module, entry, &inputs, n, (rows, draws), spans_x);
    let (first, min_p) = (spread("spans_first")?, spread("spans_min_p")?);
    let buffers = [(1, logits), (2, result), (3, mask), (4, draws_buf), (5, spans)];
    let last = per_choice(t, "sample", &module, "main", &buffers, n, (rows, draws))?;
    Ok([first, min_p, last])
}

/// Words before the biases in edit_logits' `edits` buffer (HEADER in shaders/edit_logits.wgsl):
/// the repetition, frequency and presence penalties (f32 bits), the biases in use, and 1 where
/// each choice y's window ends with the token fed[y].
pub const EDIT_HEADER: u32 = 8;

/// The shape of edit_logits' `edits` buffer: room for `biases` (id, bias) pairs, then for
/// `choices` windows of `window` tokens.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct EditShape {
    pub window: u32,
    pub biases: u32,
}

impl EditShape {
    /// Words of the `edits` buffer for `choices` choices.
    pub fn words(&self, choices: u32) -> u32 {
        EDIT_HEADER + 2 * self.biases + choices * (1 + self.window)
    }
    /// The word where choice y's window starts (its length, then its tokens).
    pub fn window_at(&self, y: u32) -> u32 {
        EDIT_HEADER + 2 * self.biases + y * (1 + self.window)
    }
}

/// edit_logits' buffers.
pub struct EditBuffers<'a> {
    pub logits: &'a wgpu::Buffer, // [rows, n] f32: the raw logits, left as they are
    pub edited: &'a wgpu::Buffer, // [choices, n] f32: each choice's row, edited
    pub edits: &'a wgpu::Buffer,  // EditShape::words(choices) u32: the settings, biases and windows
    pub counts: &'a wgpu::Buffer, // [choices, n] u32: scratch, left at 0
    pub fed: &'a wgpu::Buffer,    // [choices] u32: the token each window may end with
}

/// Tokens a workgroup of edit_logits edits (SPAN in shaders/edit_logits.wgsl).
pub const EDIT_SPAN: u32 = 2048;

/// edit_logits: for each of `choices` choices y, row y of b.edited = row min(y, rows - 1) of
/// b.logits with the logit bias and the repetition, frequency and presence penalties over choice
/// y's window of b.edits applied (engine::sampler's apply_penalties, laid out as EditShape says;
/// each choice y's window ends with b.fed[y] where the header says so). EDIT_SPAN tokens a workgroup.
pub fn edit_logits(
    t: Target,
    b: EditBuffers,
    n: u32,
    shape: EditShape,
    (rows, choices): (u32, u32),
) -> Result<Dispatch> {
    let module = Module::new("edit_logits", &[wgsl::EDIT_LOGITS]);
    let p = [n, rows, shape.window, shape.biases];
    let buffers = [(1, b.logits), (2, b.edited), (3, b.edits), (4, b.counts), (5, b.fed)];
    bind(
        t.gpu,
        "edit_logits",
        t.pipeline(&module, "main")?,
        bytemuck::cast_slice(&p),
        at(&buffers),
        [n.div_ceil(EDIT_SPAN), choices, 1],
    )
}
