//! Byte and half loaders over `weights: array<u32>`, the raw GGUF bytes of a tensor, which every
//! kernel that reads a quantized tensor declares. No shader-f16 needed: halves go through
//! unpack2x16float.

// The 4 bytes at any byte offset, little-endian.
fn load_u32(byte: u32) -> u32 {
    let w = byte >> 2u;
    let s = (byte & 3u) * 8u;
    if (s == 0u) {
        return weights[w];
    }
    return (weights[w] >> s) | (weights[w + 1u] << (32u - s));
}

// The byte at a byte offset.
fn load_u8(byte: u32) -> u32 {
    return (weights[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
}

// The 16 bits at an even byte offset.
fn load_u16(byte: u32) -> u32 {
    return (weights[byte >> 2u] >> ((byte & 2u) * 8u)) & 0xffffu;
}

// The IEEE half at an even byte offset, as f32.
fn load_f16(byte: u32) -> f32 {
    return unpack2x16float(load_u16(byte)).x;
}

// Byte b (0..3) of a word as a signed value.
fn i8_of(word: u32, b: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * b)) >> 24u);
}

// Rows beyond 65535 workgroups go to the y dimension: the flat workgroup index.
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
