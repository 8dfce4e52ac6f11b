//! The one place WGSL sources are put together: every shader file by name, the quant decoders per
//! type, `Module` (a kernel's source parts in order, compiled into a pipeline with `enable
//! subgroups;` where the platform needs it), and the generated code: the wide matvec's block walk
//! and the CPU family's attention walks.

use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::{Gpu, Layout};
use std::sync::Arc;

/// Every shader file: shared ones at the top of shaders/, each family's in shaders/gpu and
/// shaders/cpu.
pub mod wgsl {
    /// A shader file that binds the step uniform, after step.wgsl (the `Step` struct, declared
    /// once for all of them).
    macro_rules! stepped {
        ($path:literal) => {
            concat!(include_str!("../../shaders/step.wgsl"), include_str!(concat!("../../shaders/", $path)))
        };
    }

    /// A kernel that passes NaN and infinity over, after float_bits.wgsl (not_nan, finite).
    macro_rules! with_float_bits {
        ($path:literal) => {
            concat!(include_str!("../../shaders/float_bits.wgsl"), include_str!(concat!("../../shaders/", $path)))
        };
    }

    /// Byte readers and helpers every quantized kernel starts with.
    pub const COMMON: &str = include_str!("../../shaders/common.wgsl");
    pub const EMBED: &str = stepped!("embed.wgsl");
    pub const RMSNORM: &str = stepped!("rmsnorm.wgsl");
    pub const ROPE: &str = stepped!("rope.wgsl");
    pub const QKV_BIAS: &str = include_str!("../../shaders/qkv_bias.wgsl");
    pub const ADD_BIAS: &str = stepped!("add_bias.wgsl");
    pub const HEAD_RMSNORM: &str = include_str!("../../shaders/head_rmsnorm.wgsl");
    pub const MOE_ROUTE: &str = with_float_bits!("moe_route.wgsl");
    pub const MOE_MATVEC: &str = include_str!("../../shaders/moe_matvec.wgsl");
    pub const MOE_MATMUL: &str = include_str!("../../shaders/moe_matmul.wgsl");
    pub const MOE_SUM: &str = include_str!("../../shaders/moe_sum.wgsl");
    pub const SWIGLU: &str = stepped!("swiglu.wgsl");
    pub const GLU: &str = include_str!("../../shaders/glu.wgsl");
    pub const ARGMAX: &str = with_float_bits!("argmax.wgsl");
    pub const SAMPLE: &str = with_float_bits!("sample.wgsl");
    pub const EDIT_LOGITS: &str = include_str!("../../shaders/edit_logits.wgsl");
    /// matvec's and matmul's parameters and bindings (both families).
    pub const MATVEC_IO: &str = stepped!("matvec_io.wgsl");
    pub const MATMUL_IO: &str = stepped!("matmul_io.wgsl");
    pub const MATMUL_WEIGHTS: &str = include_str!("../../shaders/matmul_weights.wgsl");
    pub const ATTENTION_PARAMS: &str = stepped!("attention_params.wgsl");

    /// The GPU family.
    pub mod gpu {
        pub const MATVEC: &str = include_str!("../../shaders/gpu/matvec.wgsl");
        pub const MATVEC_ACTS: &str = include_str!("../../shaders/gpu/matvec_acts.wgsl");
        pub const MATMUL: &str = include_str!("../../shaders/gpu/matmul.wgsl");
        pub const MATMUL_TILED: &str = include_str!("../../shaders/gpu/matmul_tiled.wgsl");
        pub const MATMUL_SUM_F32: &str = include_str!("../../shaders/gpu/matmul_sum_f32.wgsl");
        pub const MATMUL_SUM_F16: &str = include_str!("../../shaders/gpu/matmul_sum_f16.wgsl");
        pub const NORM_FOLD: &str = include_str!("../../shaders/gpu/norm_fold.wgsl");
        pub const MATVEC_NORM: &str = include_str!("../../shaders/gpu/matvec_norm.wgsl");
        pub const MATVEC_COMBINE: &str = include_str!("../../shaders/gpu/matvec_combine.wgsl");
        /// The decode row walk matvec, qkv and gate_up share, and its two reductions.
        pub const ROW_WALK: &str = include_str!("../../shaders/gpu/row_walk.wgsl");
        pub const ROW_WALK_8: &str = include_str!("../../shaders/gpu/row_walk_8.wgsl");
        pub const ROW_WALK_PAIRS: &str = include_str!("../../shaders/gpu/row_walk_pairs.wgsl");
        pub const REDUCE_SUBGROUP: &str = include_str!("../../shaders/gpu/reduce_subgroup.wgsl");
        pub const REDUCE_SHARED: &str = include_str!("../../shaders/gpu/reduce_shared.wgsl");
        pub const QKV: &str = stepped!("gpu/qkv.wgsl");
        pub const GATE_UP: &str = include_str!("../../shaders/gpu/gate_up.wgsl");
        pub const ATTENTION_IO: &str = include_str!("../../shaders/gpu/attention_io.wgsl");
        pub const ATTENTION: &str = include_str!("../../shaders/gpu/attention.wgsl");
        pub const ATTENTION_SUM_SUBGROUP: &str = include_str!("../../shaders/gpu/attention_sum_subgroup.wgsl");
        pub const ATTENTION_SUM_SHARED: &str = include_str!("../../shaders/gpu/attention_sum_shared.wgsl");
        pub const ATTENTION_PROMPT: &str = include_str!("../../shaders/gpu/attention_prompt.wgsl");
    }

    /// The CPU family.
    pub mod cpu {
        pub const MATVEC_ROWWISE: &str = include_str!("../../shaders/cpu/matvec_rowwise.wgsl");
        pub const MATMUL_ROWWISE: &str = include_str!("../../shaders/cpu/matmul_rowwise.wgsl");
        pub const WIDE: &str = include_str!("../../shaders/cpu/wide.wgsl");
        pub const MATVEC_WIDE: &str = include_str!("../../shaders/cpu/matvec_wide.wgsl");
        pub const MATMUL_WIDE: &str = include_str!("../../shaders/cpu/matmul_wide.wgsl");
        pub const EMBED_WIDE: &str = stepped!("cpu/embed_wide.wgsl");
        pub const ACTS_PLAIN: &str = include_str!("../../shaders/cpu/acts_plain.wgsl");
        pub const ACTS_SUBGROUP: &str = include_str!("../../shaders/cpu/acts_subgroup.wgsl");
        pub const ACTS_SUBGROUP4: &str = include_str!("../../shaders/cpu/acts_subgroup4.wgsl");
        pub const WIDE_BUFFER: &str = include_str!("../../shaders/cpu/wide_buffer.wgsl");
        pub const WIDE_TEXTURE: &str = include_str!("../../shaders/cpu/wide_texture.wgsl");
        pub const WIDE_TEXTURE_SAMPLED: &str = include_str!("../../shaders/cpu/wide_texture_sampled.wgsl");
        pub const FOLD_ACT_X: &str = include_str!("../../shaders/cpu/fold/act_x.wgsl");
        pub const FOLD_ACT_NORM: &str = include_str!("../../shaders/cpu/fold/act_norm.wgsl");
        pub const FOLD_ACT_SWIGLU: &str = include_str!("../../shaders/cpu/fold/act_swiglu.wgsl");
        pub const FOLD_OUT_PLAIN: &str = include_str!("../../shaders/cpu/fold/out_plain.wgsl");
        pub const FOLD_OUT_NORM: &str = include_str!("../../shaders/cpu/fold/out_norm.wgsl");
        pub const RMSNORM_LANES: &str = include_str!("../../shaders/cpu/rmsnorm_lanes.wgsl");
        pub const SWIGLU_PACKED: &str = include_str!("../../shaders/cpu/swiglu_packed.wgsl");
        pub const ATTENTION_ROWWISE: &str = include_str!("../../shaders/cpu/attention_rowwise.wgsl");
        pub const ATTENTION_LANES: &str = include_str!("../../shaders/cpu/attention_lanes.wgsl");
        pub const ATTENTION_LANES_LOOP: &str = include_str!("../../shaders/cpu/attention_lanes_loop.wgsl");
        pub const ATTENTION_PROMPT_LANES: &str = include_str!("../../shaders/cpu/attention_prompt_lanes.wgsl");
    }
}

/// The WGSL that decodes blocks of `ty` (`shaders/quant/<type>.wgsl`), for the types with one.
pub fn quant_wgsl(ty: QuantType) -> Option<&'static str> {
    use QuantType::*;
    Some(match ty {
        F32 => include_str!("../../shaders/quant/f32.wgsl"),
        F16 => include_str!("../../shaders/quant/f16.wgsl"),
        Bf16 => include_str!("../../shaders/quant/bf16.wgsl"),
        Q4_0 => include_str!("../../shaders/quant/q4_0.wgsl"),
        Q4_1 => include_str!("../../shaders/quant/q4_1.wgsl"),
        Q5_0 => include_str!("../../shaders/quant/q5_0.wgsl"),
        Q5_1 => include_str!("../../shaders/quant/q5_1.wgsl"),
        Q8_0 => include_str!("../../shaders/quant/q8_0.wgsl"),
        Q2K => include_str!("../../shaders/quant/q2_k.wgsl"),
        Q3K => include_str!("../../shaders/quant/q3_k.wgsl"),
        Q4K => include_str!("../../shaders/quant/q4_k.wgsl"),
        Q5K => include_str!("../../shaders/quant/q5_k.wgsl"),
        Q6K => include_str!("../../shaders/quant/q6_k.wgsl"),
        // Both read the level table of iq4_levels.wgsl.
        Iq4Nl => concat!(
            include_str!("../../shaders/quant/iq4_levels.wgsl"),
            include_str!("../../shaders/quant/iq4_nl.wgsl")
        ),
        Iq4Xs => concat!(
            include_str!("../../shaders/quant/iq4_levels.wgsl"),
            include_str!("../../shaders/quant/iq4_xs.wgsl")
        ),
        _ => return None,
    })
}

/// The CPU family's wide decoders of `ty` (`shaders/cpu/quant/wide_<type>.wgsl`: 16-byte loads
/// on rows padded to 16 bytes, some types' blocks padded too: kernels::cpu::block_pad), for the
/// types that have them.
pub fn wide_wgsl(ty: QuantType) -> Option<&'static str> {
    use QuantType::*;
    // A type's values, then the walk its blocks share (wide_20.wgsl, wide_24.wgsl).
    macro_rules! walk {
        ($ty:literal, $walk:literal) => {
            concat!(
                include_str!(concat!("../../shaders/cpu/quant/wide_", $ty, ".wgsl")),
                include_str!(concat!("../../shaders/cpu/quant/wide_", $walk, ".wgsl"))
            )
        };
    }
    Some(match ty {
        Q4_0 => walk!("q4_0", "20"),
        Q4_1 => walk!("q4_1", "20"),
        Q5_0 => walk!("q5_0", "24"),
        Q5_1 => walk!("q5_1", "24"),
        Q8_0 => include_str!("../../shaders/cpu/quant/wide_q8_0.wgsl"),
        Q4K => include_str!("../../shaders/cpu/quant/wide_q4_k.wgsl"),
        Q5K => include_str!("../../shaders/cpu/quant/wide_q5_k.wgsl"),
        Q6K => include_str!("../../shaders/cpu/quant/wide_q6_k.wgsl"),
        _ => return None,
    })
}

/// A kernel's WGSL module being put together: a name (labels, errors; it grows a `+tag` per
/// variant part) and the source parts in order.
pub struct Module {
    name: String,
    parts: Vec<String>,
    /// The source uses f16 values (`enable f16;` goes first; the device needs shader-f16).
    f16: bool,
}

impl Module {
    /// A module of `parts` alone.
    pub fn new(name: &str, parts: &[&str]) -> Module {
        Module { name: name.to_string(), parts: parts.iter().map(|p| p.to_string()).collect(), f16: false }
    }

    /// A module that reads blocks of `ty` as `layout` stores them: BLOCK_PAD (the zero bytes
    /// kernels::block_pad inserts in each block, which the decoders' offsets count), common.wgsl
    /// and the type's decoder, then `parts`.
    pub fn quant(layout: &Layout, name: &str, ty: QuantType, parts: &[&str]) -> Result<Module> {
        let q = quant_wgsl(ty).ok_or_else(|| Error::UnsupportedType {
            tensor: format!("({name} kernel)"),
            type_name: ty.name().to_string(),
        })?;
        let pad = crate::kernels::block_pad(layout, ty).map_or(0, |p| p.bytes);
        let pad_const = format!(
            "const BLOCK_PAD: u32 = {pad}u; // zero bytes in each stored block (kernels::block_pad)\n\
             const WORD_ALIGNED: bool = {}; // every load_u32 at a multiple of 4 (the GPU family's blocks)",
            !layout.is_cpu()
        );
        let name = if pad > 0 { format!("{name}/{}+padded", ty.name()) } else { format!("{name}/{}", ty.name()) };
        Ok(Module::new(&name, &[&pad_const, wgsl::COMMON, q]).with(parts))
    }

    /// Appends `parts`.
    pub fn with(mut self, parts: &[&str]) -> Module {
        self.parts.extend(parts.iter().map(|p| p.to_string()));
        self
    }

    /// Appends a variant's `part`, naming it `tag`.
    pub fn variant(mut self, tag: &str, part: &str) -> Module {
        self.name = format!("{}+{tag}", self.name);
        self.parts.push(part.to_string());
        self
    }

    /// Puts `code` first (constants a generated kernel is made for).
    pub fn prepend(mut self, code: String) -> Module {
        self.parts.insert(0, code);
        self
    }

    /// Marks the source as using f16 values (shader-f16), naming the variant `+f16`.
    pub fn f16(mut self) -> Module {
        self.name = format!("{}+f16", self.name);
        self.f16 = true;
        self
    }

    /// The whole source for this platform: `enable f16;` where it uses f16; browsers also require
    /// `enable subgroups;` before subgroup built-ins, which wgpu's naga (native) rejects.
    pub fn source(&self) -> String {
        let src = self.parts.join("\n");
        let src = if self.f16 { format!("enable f16;\n{src}") } else { src };
        if cfg!(target_arch = "wasm32") && uses_subgroups(&src) {
            format!("enable subgroups;\n{src}")
        } else {
            src
        }
    }

    /// The pipeline of entry point `entry` (built once per source and entry, then cached).
    pub fn pipeline(&self, gpu: &Gpu, layout: &Layout, entry: &str) -> Result<Arc<wgpu::ComputePipeline>> {
        let source = self.source();
        gpu.compile(&self.name, &source, entry).map_err(|e| match e {
            Error::Shader { name, msg } => Error::Shader { name, msg: layout.shader_error(&msg, &source) },
            e => e,
        })
    }
}

/// The line of matvec_wide.wgsl that `group_blocks` replaces.
pub const GROUP_BLOCKS_MARKER: &str = "//@group_blocks";

/// matvec_wide's walk over one group of blocks for its 4 rows (group g0 .. g3 loaded, activations
/// from element xi): block j's activations loaded once, then dotted with each row's block j by the
/// wide decoder's group_block_<j>; one statement per block, written out (a function per block
/// rather than an index: the group's words are fields). GROUP_BLOCKS comes from the decoder `wide`.
pub fn group_blocks(wide: &str) -> Result<String> {
    let n: u32 = wide
        .lines()
        .find_map(|l| l.strip_prefix("const GROUP_BLOCKS: u32 = ")?.strip_suffix("u;")?.parse().ok())
        .ok_or_else(|| Error::InvalidRequest("a wide decoder without `const GROUP_BLOCKS: u32 = <n>u;`".into()))?;
    Ok((0..n)
        .map(|j| {
            format!(
                "x = block_acts(xi + {j}u * WIDE_ELEMS);\n        acc += vec4<f32>(group_block_{j}(g0, x), group_block_{j}(g1, x), group_block_{j}(g2, x), group_block_{j}(g3, x));\n        "
            )
        })
        .collect())
}

/// attention_lanes' walk over the cache positions written out for `group` query heads of `hd4`
/// vectors: a named value per query vector, key vector and accumulator, so that lavapipe keeps them
/// in registers (the loop version, attention_lanes_loop.wgsl, indexes private arrays at run time,
/// which it keeps in memory). Reads q; leaves acc, m and l as the loop version does.
pub fn attention_lanes_walk(group: u32, hd4: u32) -> String {
    let (heads, vecs) = (0..group, 0..hd4);
    let mut w = String::new();
    for h in heads.clone() {
        for i in vecs.clone() {
            w += &format!("    let q_{h}_{i} = q[{}u];\n    var a_{h}_{i} = vec4<f32>(0.0);\n", h * hd4 + i);
        }
        w += &format!("    var m_{h} = -3.4e38;\n    var l_{h} = 0.0;\n");
    }
    w += "    for (var j = lane; j < pos; j += 8u) {\n";
    for i in vecs.clone() {
        w += &format!("        let k_{i} = cached_k(j, kv_off4 + {i}u);\n");
    }
    for h in heads.clone() {
        let dots: Vec<String> = vecs.clone().map(|i| format!("dot(q_{h}_{i}, k_{i})")).collect();
        w += &format!("        let s_{h} = {};\n", dots.join(" + "));
        w += &format!("        let cp_{h} = softmax_step(&m_{h}, &l_{h}, s_{h});\n");
    }
    for i in vecs.clone() {
        w += &format!("        let v_{i} = cached_v(j, kv_off4 + {i}u);\n");
        for h in heads.clone() {
            w += &format!("        a_{h}_{i} = a_{h}_{i} * cp_{h}.x + cp_{h}.y * v_{i};\n");
        }
    }
    w += "    }\n";
    for h in heads {
        for i in vecs.clone() {
            w += &format!("    acc[{}u] = a_{h}_{i};\n", h * hd4 + i);
        }
        w += &format!("    m[{h}u] = m_{h};\n    l[{h}u] = l_{h};\n");
    }
    w
}

/// attention_prompt_lanes' walks over the cache's positions and the chunk's own, and its output
/// store, written out for `hd4` vectors per head (markers and code): a named value per query, key,
/// value and accumulator vector, as attention_lanes_walk. Lane i loads vectors i, i + lanes, ... of a
/// key and a value (clamped to the head), and takes each vector from the lane that loaded it.
pub fn prompt_lanes_walks(hd4: u32, lanes: u32) -> [(&'static str, String); 3] {
    let (vecs, loads) = (0..hd4, 0..hd4.div_ceil(lanes));
    let mut cache = String::new();
    for i in vecs.clone() {
        cache += &format!("    let q_{i} = qkv[qa + {i}u] * p.scale;\n    var a_{i} = vec4<f32>(0.0);\n");
    }
    // One position: keys and values loaded by `k_load`/`v_load` (with AT the vector's index from
    // kb); `masked`: positions past the lane's row get weight 0.
    let body = |k_load: &str, v_load: &str, masked: bool| {
        let mut w = String::new();
        for c in loads.clone() {
            let at = format!("kb + min(lane + {}u, {}u)", lanes * c, hd4 - 1);
            w += &format!(
                "        let kl_{c} = {};\n        let vl_{c} = {};\n",
                k_load.replace("AT", &at),
                v_load.replace("AT", &at)
            );
        }
        for i in vecs.clone() {
            w += &format!("        let k_{i} = subgroupBroadcast(kl_{}, {}u);\n", i / lanes, i % lanes);
        }
        let dots: Vec<String> = vecs.clone().map(|i| format!("dot(q_{i}, k_{i})")).collect();
        w += &format!("        let s = {};\n", dots.join(" + "));
        w += if masked {
            "        let cp = softmax_step(&m, &l, select(s, -3.4e38, j > pos_r));\n"
        } else {
            "        let cp = softmax_step(&m, &l, s);\n"
        };
        for i in vecs.clone() {
            w += &format!(
                "        a_{i} = a_{i} * cp.x + cp.y * subgroupBroadcast(vl_{}, {}u);\n",
                i / lanes,
                i % lanes
            );
        }
        w
    };
    cache += "    for (var j = 0u; j < step.pos; j++) {\n        let kb = j * kv4 + kv_off4;\n";
    cache += &body("k_cache[AT]", "v_cache[AT]", false);
    cache += "    }\n";
    let mut own = "    for (var j = step.pos; j <= last; j++) {\n        let kb = (j - step.pos) * stride4 + own_k;\n"
        .to_string();
    own += &body("qkv[AT]", "qkv[kv4 + AT]", true);
    own += "    }\n";
    let store: String = vecs.map(|i| format!("        out[o + {i}u] = a_{i} / l;\n")).collect();
    [("    //@walk_cache\n", cache), ("    //@walk_own\n", own), ("        //@store\n", store)]
}

/// `src` with each (marker, code) of `fills` written in place of its marker.
pub fn fill(src: &str, fills: &[(&str, String)]) -> String {
    fills.iter().fold(src.to_string(), |s, (marker, code)| s.replace(marker, code))
}

/// Whether WGSL source calls a subgroup built-in (subgroupAdd(, subgroupMax(, ...: every one is
/// `subgroup` then a capital) or takes a subgroup built-in value (@builtin(subgroup_size)).
fn uses_subgroups(src: &str) -> bool {
    src.contains("@builtin(subgroup_")
        || src.match_indices("subgroup").any(|(i, m)| {
            // Not inside a longer name (my_subgroupMax).
            if src[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return false;
            }
            let rest = &src[i + m.len()..];
            let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
            rest.starts_with(|c: char| c.is_ascii_uppercase()) && rest[name_len..].trim_start().starts_with('(')
        })
}

#[cfg(test)]
mod tests {
    use super::uses_subgroups;

    #[test]
    fn subgroup_built_ins_ask_for_the_subgroups_extension() {
        for src in
            ["m = subgroupMax(x);", "s = subgroupAdd (v)", "@builtin(subgroup_size) n: u32", "subgroupBallot(true)"]
        {
            assert!(uses_subgroups(src), "{src}");
        }
        for src in [
            "let subgroups = 4u;",
            "// lanes of a subgroup: 8",
            "subgroup_sizes.0",
            "fn subgroup_sum() {}",
            "my_subgroupMax(x)",
        ] {
            assert!(!uses_subgroups(src), "{src}");
        }
    }
}
