//! Weight: a matrix in GGUF blocks on the GPU (some types' blocks padded: kernels::block_pad),
//! split by rows into parts that each fit one binding, in buffers or (CPU family) textures; how
//! uploaded rows are laid out there.

use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::{Gpu, Layout};
use crate::kernels::{self, cpu, Blocks, QuantMatrix};

/// A weight matrix in raw GGUF blocks, split by rows into parts that each fit one storage binding.
pub struct Weight {
    pub ty: QuantType,
    /// Rows (output features) and row length (input features).
    pub rows: u32,
    pub cols: u32,
    /// Bytes from one row to the next in the buffers: the packed row of stored blocks
    /// (kernels::block_pad), padded to 16 bytes in the CPU family for the types with a wide decoder.
    pub row_stride: u32,
    /// (blocks, first row, rows) per part.
    pub parts: Vec<(Stored, u32, u32)>,
}

/// A weight part's blocks on the GPU: the buffer they were uploaded into, or the texture they were
/// copied into once complete (CPU family: kernels::cpu::uses_texture).
pub enum Stored {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Stored {
    pub fn blocks(&self) -> Blocks<'_> {
        match self {
            Stored::Buffer(b) => Blocks::Buffer(b),
            Stored::Texture(t) => Blocks::Texture(t),
        }
    }
}

impl Weight {
    pub fn part(&self, i: usize) -> QuantMatrix<'_> {
        let (stored, _, rows) = &self.parts[i];
        QuantMatrix { ty: self.ty, blocks: stored.blocks(), rows: *rows, cols: self.cols, row_stride: self.row_stride }
    }

    /// The buffer of a one-part weight kept in a buffer (norm vectors, rope factors: F32, never in
    /// a texture).
    pub fn vector(&self) -> &wgpu::Buffer {
        match &self.parts[0].0 {
            Stored::Buffer(b) => b,
            Stored::Texture(_) => unreachable!("vectors are f32 and stay in buffers"),
        }
    }
}

/// Writes the GGUF bytes of `tensor` (of type `ty`, rows of `row_bytes` in the file) that start at
/// file offset `at` of a part into the part's buffer, where `layout` pads the blocks (pad_blocks;
/// `bytes` then hold whole blocks) and rows lie `stride` bytes apart (padded through pad_rows when
/// stride is more than a row's stored bytes).
#[allow(clippy::too_many_arguments)]
pub fn write_rows(
    gpu: &Gpu,
    layout: &Layout,
    tensor: &str,
    ty: QuantType,
    part: &Stored,
    at: u64,
    bytes: &[u8],
    row_bytes: u64,
    stride: u64,
) -> Result<()> {
    let Stored::Buffer(buffer) = part else {
        return Err(Error::BadTensor {
            tensor: tensor.to_string(),
            msg: "bytes arrived after the tensor was complete".into(),
        });
    };
    if let Some(padded) = pad_blocks(layout, ty, bytes) {
        // In stored blocks: the offset, and a row's bytes before any padding to `stride`.
        let per_block = |n: u64| n / ty.block_bytes() * kernels::stored_block_bytes(layout, ty);
        let (at, packed) = (per_block(at), per_block(row_bytes));
        if stride == packed {
            gpu.write(buffer, at, &padded);
        } else {
            let (at, padded) = pad_rows(&padded, at, packed, stride);
            gpu.write(buffer, at, &padded);
        }
    } else if stride == row_bytes {
        gpu.write(buffer, at, bytes);
    } else {
        let (at, padded) = pad_rows(bytes, at, row_bytes, stride);
        gpu.write(buffer, at, &padded);
    }
    Ok(())
}

/// Moves a complete weight's parts from their upload buffers into textures where the layout reads
/// them from textures (kernels::cpu::uses_texture); the buffers go once the copies are done.
pub fn into_textures(gpu: &Gpu, layout: &Layout, name: &str, w: &mut Weight) -> Result<()> {
    if !cpu::uses_texture(layout, w.ty, w.cols) {
        return Ok(());
    }
    for (stored, _, rows) in w.parts.iter_mut() {
        if let Stored::Buffer(buffer) = stored {
            let view = cpu::texture_from_buffer(gpu, name, buffer, *rows as u64 * w.row_stride as u64)?;
            *stored = Stored::Texture(view);
        }
    }
    Ok(())
}

/// Packed row bytes starting at packed offset `at` (within a part) laid out with rows `stride`
/// bytes apart: (the offset they go to, the bytes with zeros in the gaps between rows).
pub fn pad_rows(bytes: &[u8], at: u64, row_bytes: u64, stride: u64) -> (u64, Vec<u8>) {
    let gap = (stride - row_bytes) as usize;
    let mut out = Vec::with_capacity(bytes.len() + (bytes.len() / row_bytes as usize + 1) * gap);
    let (mut pos, mut rest) = (at, bytes);
    while !rest.is_empty() {
        if !out.is_empty() {
            out.resize(out.len() + gap, 0);
        }
        let n = ((row_bytes - pos % row_bytes) as usize).min(rest.len());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        pos += n as u64;
    }
    (at / row_bytes * stride + at % row_bytes, out)
}

/// Whole GGUF blocks of `ty` as `layout` stores them: kernels::block_pad's zero bytes inserted in
/// each; None where the layout stores them as GGUF has them.
pub fn pad_blocks(layout: &Layout, ty: QuantType, bytes: &[u8]) -> Option<Vec<u8>> {
    let pad = kernels::block_pad(layout, ty)?;
    let (at, zeros) = (pad.at as usize, vec![0; pad.bytes as usize]);
    let block = ty.block_bytes() as usize;
    let mut out = Vec::with_capacity(bytes.len() / block * kernels::stored_block_bytes(layout, ty) as usize);
    for b in bytes.chunks(block) {
        out.extend_from_slice(&b[..at.min(b.len())]);
        out.extend_from_slice(&zeros);
        out.extend_from_slice(&b[at.min(b.len())..]);
    }
    Some(out)
}
