//! The wide kernels' modules (matvec_wide, matmul_wide, embed_wide): the type's wide decoder,
//! wide.wgsl, the kernel's io file, the activation loader and the weights' loader, composed for a
//! matrix and the layout.

use super::Target;
use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::compose::{self, wgsl, wide_wgsl, Module};
use crate::kernels::{Blocks, QuantMatrix};

/// How a wide kernel reads a weight texture: matvec_wide and embed_wide through the read-only
/// storage binding (wide_texture.wgsl) where the layout allows it, matmul_wide always through the
/// sampled one (wide_texture_sampled.wgsl: BENCH.md has the measurements).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TextureBinding {
    Storage,
    Sampled,
}

/// The module of a wide kernel named `base` over `w`, up to the kernel itself: common.wgsl and the
/// type's decoders, wide.wgsl, the kernel's `io` file, the activation loader (through subgroups
/// where `subgroup_acts` and the layout has act_lanes, else plain loads) and the weights' loader
/// (a buffer, or a texture read through `binding`).
pub fn wide_module(
    t: Target,
    w: &QuantMatrix,
    base: &str,
    io: &str,
    subgroup_acts: bool,
    binding: TextureBinding,
) -> Result<Module> {
    let wide =
        wide_wgsl(w.ty).ok_or_else(|| Error::InvalidRequest(format!("{base}: {} has no wide decoder", w.ty.name())))?;
    let mut module = Module::quant(t.layout, base, w.ty, &[wide, wgsl::cpu::WIDE, io])?;
    module = match t.layout.act_lanes() {
        8 if subgroup_acts => module.variant("subgroup", wgsl::cpu::ACTS_SUBGROUP),
        4 if subgroup_acts => module.variant("subgroup4", wgsl::cpu::ACTS_SUBGROUP4),
        _ => module.with(&[wgsl::cpu::ACTS_PLAIN]),
    };
    Ok(match w.blocks {
        Blocks::Texture(_) if binding == TextureBinding::Sampled || !t.layout.texture_storage_loads => {
            module.variant("sampled", wgsl::cpu::WIDE_TEXTURE_SAMPLED)
        }
        Blocks::Texture(_) => module.variant("texture", wgsl::cpu::WIDE_TEXTURE),
        Blocks::Buffer(_) => module.with(&[wgsl::cpu::WIDE_BUFFER]),
    })
}

/// `kernel` with its group-of-blocks walk written out for `ty` (compose::group_blocks).
pub fn fill_group_blocks(kernel: &str, ty: QuantType) -> Result<String> {
    let wide = wide_wgsl(ty).ok_or_else(|| Error::InvalidRequest(format!("{} has no wide decoder", ty.name())))?;
    Ok(compose::fill(kernel, &[(compose::GROUP_BLOCKS_MARKER, compose::group_blocks(wide)?)]))
}
