//! Layout: the one value that chooses the kernel family and its options for an adapter, built once
//! from the adapter's type, limits and features plus the overrides (the CLI's `--layout`, the
//! page's `layout` option, the `WEBLLAMA_*` variables, which are read here and nowhere else).

use crate::gpu::Gpu;
use std::fmt;

/// The two kernel families (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Real GPUs: workgroups sharing a row, tiled matmul, attention split over the KV length.
    Gpu,
    /// CPU adapters (lavapipe, SwiftShader): a row per invocation, wide loads on padded rows,
    /// weights in textures, lanes-of-8 attention, folds.
    Cpu,
}

impl Family {
    /// "gpu" or "cpu", as `--layout` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Gpu => "gpu",
            Family::Cpu => "cpu",
        }
    }

    /// Layout::prompt_rows unless overridden: 512 on GPUs, 64 on CPU adapters.
    pub fn default_prompt_rows(self) -> u32 {
        match self {
            Family::Gpu => 512,
            Family::Cpu => 64,
        }
    }

    /// The family named `name` ("gpu" or "cpu").
    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "gpu" => Some(Family::Gpu),
            "cpu" => Some(Family::Cpu),
            _ => None,
        }
    }
}

/// What overrides the adapter's own choices: each None leaves the adapter's. From `--layout` (the
/// family) and the `WEBLLAMA_*` variables (`Overrides::from_env`), for measuring and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// WEBLLAMA_LAYOUT=gpu|cpu (or `--layout`).
    pub family: Option<Family>,
    /// WEBLLAMA_SUBGROUPS=0: no kernel uses subgroups.
    pub subgroups: Option<bool>,
    /// WEBLLAMA_F16=0: no kernel uses shader-f16.
    pub f16: Option<bool>,
    /// WEBLLAMA_F16_PRODUCTS=1: GPU family with f16 tiles, the tiled matmul's products in f16
    /// within each K step (off by default: see Layout::f16_products).
    pub f16_products: Option<bool>,
    /// WEBLLAMA_F16_K32=0: GPU family with f16 tiles, the tiled matmul steps as many columns as
    /// with f32 tiles (the large tile 16, not 32).
    pub f16_k32: Option<bool>,
    /// WEBLLAMA_PAIRS=0: GPU family, every type's decode row walk takes 8 values a lane and step.
    pub paired_walk: Option<bool>,
    /// WEBLLAMA_MATMUL_MIN_WORKGROUPS=<n>: GPU family, the tiled matmul takes the largest tile that
    /// gives n workgroups (0: the largest no wider than the batch, as llama.cpp does).
    pub matmul_min_workgroups: Option<u32>,
    /// WEBLLAMA_COMBINE_IN_WO=0: GPU family, decode attention's splits always merged by their own
    /// combine dispatch, never by Wo's activation loader.
    pub combine_in_wo: Option<bool>,
    /// WEBLLAMA_COMPONENT_STAGING=1: GPU family, the tiled matmul stages its tiles a vector
    /// component a thread (see Layout::component_staging).
    pub component_staging: Option<bool>,
    /// WEBLLAMA_TEXTURES=0: CPU family, the wide types' weights stay in buffers.
    pub weight_textures: Option<bool>,
    /// WEBLLAMA_TEXTURE_LOADS=storage|sampled: CPU family, how matvec_wide and embed_wide read
    /// weight textures.
    pub texture_storage_loads: Option<bool>,
    /// WEBLLAMA_WIDE_K=0|1: CPU family, the K-quants (Q4_K, Q5_K, Q6_K) read by the wide kernels or
    /// a block per step (the default only on lavapipe).
    pub wide_superblocks: Option<bool>,
    /// WEBLLAMA_PROMPT_LANES=0: CPU family, a prompt chunk's attention as an invocation per row and
    /// head.
    pub prompt_lanes: Option<bool>,
    /// WEBLLAMA_FOLDS=0: CPU family, rmsnorm and swiglu run as their own dispatches; =1: folded into
    /// the matvecs wherever lanes share activations (the default only with 8 or more lanes).
    pub folds: Option<bool>,
    /// WEBLLAMA_NO_FUSE=1: every weight matrix in its own buffer (no [Wq; Wk; Wv] or [Wgate; Wup]).
    pub fuse: Option<bool>,
    /// WEBLLAMA_PROMPT_ROWS=<n>: prompt chunks of at most n tokens (Layout::prompt_rows; at least
    /// MAX_CANDIDATES, the rows a candidates step runs).
    pub prompt_rows: Option<u32>,
    /// WEBLLAMA_DUMP_WGSL=1: a shader that fails to compile is printed whole in the error.
    pub dump_wgsl: Option<bool>,
    /// WEBLLAMA_GPU_SAMPLER=0|1: sampled tokens drawn, and the logit bias and penalties applied, on
    /// the GPU (kernels::sample, kernels::edit_logits) or on the host.
    pub gpu_sampler: Option<bool>,
}

impl Overrides {
    /// The overrides the environment sets (none in a browser).
    pub fn from_env() -> Overrides {
        let var = |name: &str| std::env::var(name).ok();
        let off = |name: &str| var(name).map(|v| v != "0");
        Overrides {
            family: var("WEBLLAMA_LAYOUT").and_then(|v| Family::parse(&v)),
            subgroups: off("WEBLLAMA_SUBGROUPS"),
            f16: off("WEBLLAMA_F16"),
            f16_products: off("WEBLLAMA_F16_PRODUCTS"),
            f16_k32: off("WEBLLAMA_F16_K32"),
            paired_walk: off("WEBLLAMA_PAIRS"),
            matmul_min_workgroups: var("WEBLLAMA_MATMUL_MIN_WORKGROUPS").and_then(|v| v.parse().ok()),
            combine_in_wo: off("WEBLLAMA_COMBINE_IN_WO"),
            component_staging: off("WEBLLAMA_COMPONENT_STAGING"),
            weight_textures: off("WEBLLAMA_TEXTURES"),
            texture_storage_loads: var("WEBLLAMA_TEXTURE_LOADS").and_then(|v| match v.as_str() {
                "storage" => Some(true),
                "sampled" => Some(false),
                _ => None,
            }),
            wide_superblocks: off("WEBLLAMA_WIDE_K"),
            prompt_lanes: off("WEBLLAMA_PROMPT_LANES"),
            folds: off("WEBLLAMA_FOLDS"),
            fuse: var("WEBLLAMA_NO_FUSE").map(|v| v != "1"),
            prompt_rows: var("WEBLLAMA_PROMPT_ROWS")
                .and_then(|v| v.parse().ok())
                .map(|n: u32| n.max(crate::model::MAX_CANDIDATES)),
            dump_wgsl: var("WEBLLAMA_DUMP_WGSL").map(|v| !v.is_empty() && v != "0"),
            gpu_sampler: off("WEBLLAMA_GPU_SAMPLER"),
        }
    }

    /// These overrides with the family set (the CLI's `--layout`).
    pub fn with_family(self, family: Option<Family>) -> Overrides {
        Overrides { family: family.or(self.family), ..self }
    }
}

/// The kernel family and its options for one adapter. Built once (`Layout::choose`), passed to the
/// model builder, the kernels and the KV cache; tests build the ones they want.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub family: Family,
    /// Kernels may use subgroup operations (the device has them enabled).
    pub subgroups: bool,
    /// The adapter's subgroup sizes (min, max).
    pub subgroup_sizes: (u32, u32),
    /// GPU family: the tiled matmul stages its tiles in workgroup memory as f16 (the device has
    /// shader-f16): half the bytes a step reads from workgroup memory, and room for 32-column steps
    /// in the large tile (f16_k32).
    pub f16_tiles: bool,
    /// GPU family with f16 tiles: the tiled matmul multiplies and sums each K step's products in f16
    /// (matmul_sum_f16.wgsl: no widening of tile values, packed half FMAs where the GPU has them, as
    /// llama.cpp's f16 accumulators), adding each step's sums into f32 accumulators; off, the
    /// products are f32 (matmul_sum_f32.wgsl). Off unless asked for (WEBLLAMA_F16_PRODUCTS=1): on
    /// lavapipe its error against reference.rs reaches an NMSE of 1.5e-6, over the 1e-6 every other
    /// kernel keeps (f16 tiles with f32 products: 2.4e-7); a device run measures what it gains.
    /// Its range is f16's too: a step's sum past 65504 is clamped there once it has overflowed, wrong
    /// but finite (the tiles clamp each value they hold the same way: TILE_MAX).
    pub f16_products: bool,
    /// GPU family with f16 tiles: every tile of the tiled matmul steps 32 columns
    /// (kernels::gpu::MatmulTile::k_f16, as llama.cpp's tiles for quantized weights), which f16
    /// tiles fit in 16 KiB; off, the f32 tiles' steps (the large tile's 16).
    pub f16_k32: bool,
    /// GPU family: the decode row walk of the types whose quant words hold two runs of values (their
    /// decoder has quant16) takes both runs, 16 values a lane and step (row_walk_pairs.wgsl), rather
    /// than 8 (row_walk_8.wgsl).
    pub paired_walk: bool,
    /// GPU family: the tiled matmul takes the largest tile that gives this many workgroups
    /// (kernels::gpu::MatmulTile::choose).
    pub matmul_min_workgroups: u32,
    /// GPU family: while the context is at most kernels::gpu::combine_in_wo_splits attention splits
    /// long (4 for small models, fewer for large ones), the decode graph merges them in Wo's
    /// activation loader (matvec_combine.wgsl), one dispatch a layer fewer; longer contexts take the
    /// graph with attention's combine dispatch.
    pub combine_in_wo: bool,
    /// GPU family: the tiled matmul stages its tiles as it did before each thread wrote whole
    /// vec4s: a thread dequantizes 8 values of one row (copies 4 of one token) and writes them into
    /// 8 (4) vec4s, one component each, 4 threads sharing a vec4. WGSL lets a component write touch
    /// the whole vector, and Metal and D3D12 do (a race); Vulkan writes the component alone. Off
    /// unless asked for (WEBLLAMA_COMPONENT_STAGING=1): a device run measures what whole-vec4
    /// staging costs on Vulkan (4 times fewer threads stage the weights, 4 rows each).
    pub component_staging: bool,
    /// CPU family: weights of the types with a wide decoder live in textures (lavapipe fetches
    /// texels as gathers, storage words one lane at a time).
    pub weight_textures: bool,
    /// CPU family: matvec_wide and embed_wide read weight textures through a read-only storage
    /// binding rather than a sampled one (on for lavapipe; SwiftShader's sampled loads are faster).
    pub texture_storage_loads: bool,
    /// CPU family: the K-quants' superblocks (Q4_K, Q5_K, Q6_K) take the wide kernels
    /// (kernels::cpu::wide_decoder). On lavapipe (4-30x faster there); elsewhere they walk a block per
    /// step: SwiftShader compiled each such pipeline for seconds and decoded no faster (BENCH.md).
    pub wide_superblocks: bool,
    /// CPU family: a prompt chunk's attention runs act_lanes rows of a head per subgroup.
    pub prompt_lanes: bool,
    /// CPU family: rmsnorm and swiglu fold into the decode graph's matvecs.
    pub folds: bool,
    /// Per-layer matrices of one type share a buffer ([Wq; Wk; Wv], [Wgate; Wup]).
    pub fuse: bool,
    /// Most tokens one prompt chunk runs (the batch graph's rows): on GPUs 512, llama.cpp's
    /// micro-batch (one chunk for a 512-token prompt: twice the tiles in flight of 256, half the
    /// chunks' dispatches); on CPU adapters 64. Fewer (WEBLLAMA_PROMPT_ROWS) shrink the activations
    /// and a sliding-window layer's ring cache (KvCache::ring_rows).
    pub prompt_rows: u32,
    /// Print the composed source of a shader that fails to compile.
    pub dump_wgsl: bool,
    /// A sampled step's token is drawn on the GPU (kernels::sample: only its id comes back, and one
    /// candidate's steps chain on the GPU), after the logit bias and penalties where a request sets
    /// them (kernels::edit_logits, greedy steps too), rather than by the host from the logits read
    /// back. The GPU family's default; on CPU adapters the host draws (the kernel's passes over the
    /// row cost SwiftShader ~60 ms a token and seconds of compile; the host sorts the row).
    pub gpu_sampler: bool,
}

impl Layout {
    /// This layout as `cfg`'s model runs it: Gemma's activations are reported to outgrow f16's range
    /// (65504; Google's and Hugging Face's code run it in bf16 or f32), so its prompt matmuls keep
    /// their tiles in f32, where f16 would clamp them.
    pub fn for_model(self, cfg: &crate::format::config::Config) -> Layout {
        match cfg.gemma {
            Some(_) => Layout { f16_tiles: false, f16_products: false, f16_k32: false, ..self },
            None => self,
        }
    }

    /// The adapter's own layout with `o` applied: the CPU family on adapters whose type is CPU, the
    /// GPU family elsewhere.
    pub fn choose(gpu: &Gpu, o: &Overrides) -> Layout {
        let family =
            o.family.unwrap_or(if gpu.info.device_type == wgpu::DeviceType::Cpu { Family::Cpu } else { Family::Gpu });
        let subgroups = gpu.has_subgroups() && o.subgroups.unwrap_or(true);
        let cpu = family == Family::Cpu;
        let lavapipe = gpu.info.name.contains("llvmpipe");
        let f16_tiles = !cpu && gpu.has_f16() && o.f16.unwrap_or(true);
        let mut layout = Layout {
            family,
            subgroups,
            subgroup_sizes: (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size),
            f16_tiles,
            f16_products: f16_tiles && o.f16_products.unwrap_or(false),
            f16_k32: f16_tiles && o.f16_k32.unwrap_or(true),
            paired_walk: !cpu && o.paired_walk.unwrap_or(true),
            matmul_min_workgroups: o.matmul_min_workgroups.unwrap_or(crate::kernels::gpu::MATMUL_MIN_WORKGROUPS),
            combine_in_wo: !cpu && o.combine_in_wo.unwrap_or(true),
            component_staging: !cpu && o.component_staging.unwrap_or(false),
            weight_textures: cpu && o.weight_textures.unwrap_or(true),
            texture_storage_loads: cpu && o.texture_storage_loads.unwrap_or(lavapipe),
            wide_superblocks: cpu && o.wide_superblocks.unwrap_or(lavapipe),
            prompt_lanes: false,
            folds: false,
            fuse: o.fuse.unwrap_or(true),
            prompt_rows: o.prompt_rows.unwrap_or(family.default_prompt_rows()),
            dump_wgsl: o.dump_wgsl.unwrap_or(false),
            gpu_sampler: o.gpu_sampler.unwrap_or(!cpu),
        };
        layout.prompt_lanes = layout.act_lanes() > 0 && o.prompt_lanes.unwrap_or(true);
        // Folds need no subgroups, but without shared activations (act_lanes) every lane computes
        // rmsnorm(x) or silu(gate) * up for every value itself: slower than the separate kernels.
        // With 4 lanes (SwiftShader) they run only when asked: decode there is ~15% faster without
        // them, and each fold variant of a wide matvec takes it ~0.6-1.9 s to compile (BENCH.md).
        layout.folds = layout.act_lanes() > 0 && o.folds.unwrap_or(layout.act_lanes() >= 8);
        layout
    }

    /// The adapter's own layout, with no overrides.
    pub fn of(gpu: &Gpu) -> Layout {
        Layout::choose(gpu, &Overrides::default())
    }

    /// The layout of `family` on this adapter, its other options as that family's defaults.
    pub fn family(gpu: &Gpu, family: Family) -> Layout {
        Layout::choose(gpu, &Overrides { family: Some(family), ..Default::default() })
    }

    /// The CPU family: whether the kernels shaped for CPU adapters run.
    pub fn is_cpu(&self) -> bool {
        self.family == Family::Cpu
    }

    /// CPU family with subgroups of at least 8 lanes: kernels that share activations or cache
    /// vectors across 8 lanes (acts_subgroup.wgsl, attention_lanes) run.
    pub fn lanes_of_8(&self) -> bool {
        self.is_cpu() && self.subgroups && self.subgroup_sizes.0 >= 8
    }

    /// CPU family: the lanes of a subgroup that share a block's activations in the wide kernels
    /// (acts_subgroup.wgsl: 8; acts_subgroup4.wgsl: 4, SwiftShader's subgroups), or 0: plain loads.
    pub fn act_lanes(&self) -> u32 {
        match self.subgroup_sizes.0 {
            _ if !self.is_cpu() || !self.subgroups => 0,
            8.. => 8,
            4..8 => 4,
            _ => 0,
        }
    }

    /// Most tokens one prompt chunk runs (prompt_rows).
    pub fn batch_rows(&self) -> u32 {
        self.prompt_rows
    }

    /// GPU family: prompt chunks of at most this many tokens run a batch graph of their own, its
    /// matmuls in 32-token tiles (llama.cpp's small tile for up to 32 tokens); CPU adapters keep
    /// one (their chunks are 64 tokens).
    pub fn short_chunk_rows(&self) -> Option<u32> {
        (!self.is_cpu()).then_some(32)
    }

    /// Most splits of the KV length the decode graph's attention dispatches for a context of `ctx`
    /// (the kernel works as many of them as the current length asks for,
    /// kernels::gpu::ATTENTION_SPLIT_LEN positions or more each, so no more than a full context
    /// can use); one on CPU adapters, where an invocation walks a whole row.
    pub fn attention_splits(&self, ctx: usize) -> u32 {
        use crate::kernels::gpu::{ATTENTION_MAX_SPLITS, ATTENTION_SPLIT_LEN};
        if self.is_cpu() {
            1
        } else {
            (ctx as u32).div_ceil(ATTENTION_SPLIT_LEN).clamp(1, ATTENTION_MAX_SPLITS)
        }
    }

    /// A shader compiler's message with the composed `source` where dump_wgsl asks for it, else with
    /// how to ask.
    pub fn shader_error(&self, msg: &str, source: &str) -> String {
        if self.dump_wgsl {
            format!("{msg}\n--- composed source ---\n{source}")
        } else {
            format!("{msg} (set WEBLLAMA_DUMP_WGSL=1 to print the composed source)")
        }
    }

    /// Whether the decode graph's attention rotates q and k itself (from host-computed rotations)
    /// instead of a rope dispatch: the CPU family.
    pub fn rope_in_attention(&self) -> bool {
        self.is_cpu()
    }
}

impl fmt::Display for Layout {
    /// e.g. "cpu (subgroups 8, textures storage, prompt lanes, folds)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut opts = vec![];
        if self.subgroups {
            let (lo, hi) = self.subgroup_sizes;
            opts.push(if lo == hi { format!("subgroups {lo}") } else { format!("subgroups {lo}-{hi}") });
        } else {
            opts.push("no subgroups".into());
        }
        if self.f16_tiles {
            opts.push(if self.f16_products { "f16 tiles and products" } else { "f16 tiles" }.into());
            if !self.f16_k32 {
                opts.push("f32 tiles' steps".into());
            }
        }
        if !self.is_cpu() {
            if !self.paired_walk {
                opts.push("8-value walk".into());
            }
            if self.matmul_min_workgroups != crate::kernels::gpu::MATMUL_MIN_WORKGROUPS {
                opts.push(format!("tiles for {} workgroups", self.matmul_min_workgroups));
            }
            if !self.combine_in_wo {
                opts.push("combine dispatch".into());
            }
            if self.component_staging {
                opts.push("component staging".into());
            }
        } else {
            opts.push(match (self.weight_textures, self.texture_storage_loads) {
                (false, _) => "weights in buffers".into(),
                (true, true) => "textures storage".into(),
                (true, false) => "textures sampled".into(),
            });
            for (on, name) in
                [(self.wide_superblocks, "wide K-quants"), (self.prompt_lanes, "prompt lanes"), (self.folds, "folds")]
            {
                if on {
                    opts.push(name.into());
                }
            }
        }
        if !self.fuse {
            opts.push("unfused".into());
        }
        if self.prompt_rows != self.family.default_prompt_rows() {
            opts.push(format!("{}-row prompt chunks", self.prompt_rows));
        }
        if self.gpu_sampler == self.is_cpu() {
            opts.push(if self.gpu_sampler { "gpu sampler" } else { "host sampler" }.into());
        }
        write!(f, "{} ({})", self.family.name(), opts.join(", "))
    }
}
