//! Weights in textures (the CPU family, for the types with a wide decoder): lavapipe fetches
//! texels as gathers of its SIMD lanes, storage words one lane at a time. A matrix's rows, padded
//! to 16 bytes, lie one after another in 16-byte texels (Rgba32Uint), TEXTURE_WIDTH per texture row.

use super::reads_wide;
use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::{Gpu, Layout};

/// Texels per texture row of a matrix in a texture (Blocks::Texture): the least maximum width
/// WebGPU guarantees; wide_texture.wgsl has it as a shift and a mask.
pub const TEXTURE_WIDTH: u32 = 8192;

/// Whether a matrix of this type and row length lives in a texture in this layout: weight textures,
/// and the wide kernels read it (reads_wide).
pub fn uses_texture(layout: &Layout, ty: QuantType, cols: u32) -> bool {
    layout.weight_textures && reads_wide(layout, ty, crate::kernels::row_stride(layout, ty, cols))
}

/// Most bytes of one matrix part in a texture (TEXTURE_WIDTH x the adapter's largest height).
pub fn max_texture_bytes(gpu: &Gpu) -> u64 {
    16 * TEXTURE_WIDTH as u64 * gpu.limits.max_texture_dimension_2d as u64
}

/// Copies the first `bytes` (a multiple of 16) of `buffer` into a new texture laid out as
/// Blocks::Texture describes (the buffer can be dropped once this is submitted).
pub fn texture_from_buffer(gpu: &Gpu, label: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<wgpu::TextureView> {
    let texels = bytes / 16;
    let (width, full_rows, rest) = (TEXTURE_WIDTH as u64, texels / TEXTURE_WIDTH as u64, texels % TEXTURE_WIDTH as u64);
    let height = texels.div_ceil(width).max(1);
    if !bytes.is_multiple_of(16) || height > gpu.limits.max_texture_dimension_2d as u64 {
        return Err(Error::InvalidRequest(format!(
            "{label}: {bytes} bytes do not fit a texture of {width} x {} texels",
            gpu.limits.max_texture_dimension_2d
        )));
    }
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: TEXTURE_WIDTH, height: height as u32, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        // Bound as a read-only storage texture (wide_texture.wgsl) or a sampled one
        // (wide_texture_sampled.wgsl): Layout::texture_storage_loads.
        usage: wgpu::TextureUsages::STORAGE_BINDING
            | wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    // Whole texture rows, then the texels of the last, partial one.
    let at = |row: u64| wgpu::TexelCopyTextureInfo {
        texture: &texture,
        mip_level: 0,
        origin: wgpu::Origin3d { x: 0, y: row as u32, z: 0 },
        aspect: wgpu::TextureAspect::All,
    };
    let from = |offset: u64, rows: u64| wgpu::TexelCopyBufferInfo {
        buffer,
        layout: wgpu::TexelCopyBufferLayout {
            offset,
            bytes_per_row: Some(16 * TEXTURE_WIDTH),
            rows_per_image: Some(rows as u32),
        },
    };
    if full_rows > 0 {
        enc.copy_buffer_to_texture(
            from(0, full_rows),
            at(0),
            wgpu::Extent3d { width: TEXTURE_WIDTH, height: full_rows as u32, depth_or_array_layers: 1 },
        );
    }
    if rest > 0 {
        enc.copy_buffer_to_texture(
            from(full_rows * width * 16, 1),
            at(full_rows),
            wgpu::Extent3d { width: rest as u32, height: 1, depth_or_array_layers: 1 },
        );
    }
    gpu.queue.submit([enc.finish()]);
    gpu.take_error()?;
    Ok(texture.create_view(&Default::default()))
}
