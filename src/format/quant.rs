//! Tensor element types of GGUF (ggml's type ids), their block layouts and CPU dequantizers: the
//! only Rust code that knows block layouts (gpu/compose.rs names the WGSL file that decodes each).

use crate::error::{Error, Result};
use half::f16;

/// A ggml tensor type as stored in GGUF. Every id ggml defines is known here so that sizes can be
/// computed and an unsupported type is reported by name; `supported()` says which ones webllama runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    Bf16,
    Tq1_0,
    Tq2_0,
    Mxfp4,
}

use QuantType::*;

/// (type, ggml id, name, elements per block, bytes per block), as in ggml.c's type_traits.
const TABLE: &[(QuantType, u32, &str, u64, u64)] = &[
    (F32, 0, "F32", 1, 4),
    (F16, 1, "F16", 1, 2),
    (Q4_0, 2, "Q4_0", 32, 18),
    (Q4_1, 3, "Q4_1", 32, 20),
    (Q5_0, 6, "Q5_0", 32, 22),
    (Q5_1, 7, "Q5_1", 32, 24),
    (Q8_0, 8, "Q8_0", 32, 34),
    (Q8_1, 9, "Q8_1", 32, 36),
    (Q2K, 10, "Q2_K", 256, 84),
    (Q3K, 11, "Q3_K", 256, 110),
    (Q4K, 12, "Q4_K", 256, 144),
    (Q5K, 13, "Q5_K", 256, 176),
    (Q6K, 14, "Q6_K", 256, 210),
    (Q8K, 15, "Q8_K", 256, 292),
    (Iq2Xxs, 16, "IQ2_XXS", 256, 66),
    (Iq2Xs, 17, "IQ2_XS", 256, 74),
    (Iq3Xxs, 18, "IQ3_XXS", 256, 98),
    (Iq1S, 19, "IQ1_S", 256, 50),
    (Iq4Nl, 20, "IQ4_NL", 32, 18),
    (Iq3S, 21, "IQ3_S", 256, 110),
    (Iq2S, 22, "IQ2_S", 256, 82),
    (Iq4Xs, 23, "IQ4_XS", 256, 136),
    (I8, 24, "I8", 1, 1),
    (I16, 25, "I16", 1, 2),
    (I32, 26, "I32", 1, 4),
    (I64, 27, "I64", 1, 8),
    (F64, 28, "F64", 1, 8),
    (Iq1M, 29, "IQ1_M", 256, 56),
    (Bf16, 30, "BF16", 1, 2),
    (Tq1_0, 34, "TQ1_0", 256, 54),
    (Tq2_0, 35, "TQ2_0", 256, 66),
    (Mxfp4, 39, "MXFP4", 32, 17),
];

/// The types webllama can run, in the order tests iterate them.
pub const SUPPORTED: &[QuantType] =
    &[F32, F16, Bf16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K, Iq4Nl, Iq4Xs];

impl QuantType {
    fn row(self) -> &'static (QuantType, u32, &'static str, u64, u64) {
        TABLE.iter().find(|r| r.0 == self).expect("every variant is in TABLE")
    }
    /// The type for a GGUF/ggml type id, or None for an id ggml never defined.
    pub fn from_ggml_id(id: u32) -> Option<QuantType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }
    pub fn ggml_id(self) -> u32 {
        self.row().1
    }
    pub fn name(self) -> &'static str {
        self.row().2
    }
    /// Elements per block (1 for plain float types).
    pub fn block_elems(self) -> u64 {
        self.row().3
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.row().4
    }
    /// Whether webllama has a CPU dequantizer and a WGSL decoder for this type.
    pub fn supported(self) -> bool {
        SUPPORTED.contains(&self)
    }
    /// Fails with an error naming `tensor` and the type when the type is not supported.
    pub fn check_supported(self, tensor: &str) -> Result<()> {
        if self.supported() {
            Ok(())
        } else {
            Err(Error::UnsupportedType { tensor: tensor.to_string(), type_name: self.name().to_string() })
        }
    }
    /// Bytes taken by `n_elements` (a multiple of the block size), or None on a partial block or overflow.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if !n_elements.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n_elements / self.block_elems()).checked_mul(self.block_bytes())
    }
    /// Dequantizes one block (`block_bytes()` bytes) into `out` (`block_elems()` values).
    pub fn dequantize_block(self, block: &[u8], out: &mut [f32]) -> Result<()> {
        let n = self.block_elems() as usize;
        if block.len() != self.block_bytes() as usize || out.len() != n {
            return Err(Error::InvalidRequest(format!(
                "dequantize {}: got {} bytes into {} values, expected {} into {}",
                self.name(),
                block.len(),
                out.len(),
                self.block_bytes(),
                n
            )));
        }
        let h = |i: usize| f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
        match self {
            // F32: one little-endian f32.
            F32 => out[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            // F16: one little-endian IEEE half.
            F16 => out[0] = h(0),
            // BF16: the top 16 bits of an f32.
            Bf16 => out[0] = half::bf16::from_le_bytes([block[0], block[1]]).to_f32(),
            // Q4_0 { d: f16, qs: [u8; 16] }: x[j] = d * ((qs[j] & 0xF) - 8), x[j+16] = d * ((qs[j] >> 4) - 8).
            Q4_0 => {
                let d = h(0);
                for j in 0..16 {
                    let q = block[2 + j];
                    out[j] = d * ((q & 0xF) as f32 - 8.0);
                    out[j + 16] = d * ((q >> 4) as f32 - 8.0);
                }
            }
            // Q4_1 { d: f16, m: f16, qs: [u8; 16] }: x[j] = d * (qs[j] & 0xF) + m, x[j+16] = d * (qs[j] >> 4) + m.
            Q4_1 => {
                let (d, m) = (h(0), h(2));
                for j in 0..16 {
                    let q = block[4 + j];
                    out[j] = d * (q & 0xF) as f32 + m;
                    out[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
            // Q5_0 { d: f16, qh: u32 (LE, bit j = 5th bit of x[j]), qs: [u8; 16] }:
            // x[j] = d * (((qs[j] & 0xF) | bit j of qh << 4) - 16), x[j+16] likewise with qs[j] >> 4 and bit j+16.
            Q5_0 => {
                let d = h(0);
                let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                for j in 0..16 {
                    let q = block[6 + j] as u32;
                    let lo = (q & 0xF) | (((qh >> j) & 1) << 4);
                    let hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4);
                    out[j] = d * (lo as f32 - 16.0);
                    out[j + 16] = d * (hi as f32 - 16.0);
                }
            }
            // Q5_1 { d: f16, m: f16, qh: u32 (LE, bit j = 5th bit of x[j]), qs: [u8; 16] }:
            // x[j] = d * ((qs[j] & 0xF) | bit j of qh << 4) + m, x[j+16] likewise with qs[j] >> 4 and bit j+16.
            Q5_1 => {
                let (d, m) = (h(0), h(2));
                let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
                for j in 0..16 {
                    let q = block[8 + j] as u32;
                    out[j] = d * ((q & 0xF) | (((qh >> j) & 1) << 4)) as f32 + m;
                    out[j + 16] = d * ((q >> 4) | (((qh >> (j + 16)) & 1) << 4)) as f32 + m;
                }
            }
            // Q8_0 { d: f16, qs: [i8; 32] }: x[j] = d * qs[j].
            Q8_0 => {
                let d = h(0);
                for j in 0..32 {
                    out[j] = d * (block[2 + j] as i8) as f32;
                }
            }
            // Q2_K { scales: [u8; 16] (low nibble scale, high nibble min), qs: [u8; 64], d: f16, dmin: f16 }:
            // value 128n + 32j + 16s + l is bits 2j..2j+1 of qs[32n + 16s + l], with scale byte 8n + 2j + s;
            // x = d * (sc & 0xF) * q - dmin * (sc >> 4).
            Q2K => {
                let (d, dmin) = (h(80), h(82));
                for n in 0..2 {
                    for j in 0..4 {
                        for sub in 0..2 {
                            let sc = block[8 * n + 2 * j + sub];
                            let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                            for l in 0..16 {
                                let q = (block[16 + 32 * n + 16 * sub + l] >> (2 * j)) & 3;
                                out[128 * n + 32 * j + 16 * sub + l] = dl * q as f32 - ml;
                            }
                        }
                    }
                }
            }
            // Q3_K { hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12] (sixteen 6-bit scales), d: f16 }:
            // value 128n + 32j + 16s + l is bits 2j..2j+1 of qs[32n + 16s + l], minus 4 unless bit 4n + j of
            // hmask[16s + l] is set; x = d * (scale6(8n + 2j + s) - 32) * q.
            Q3K => {
                let d = h(108);
                let scales = &block[96..108];
                for n in 0..2 {
                    for j in 0..4 {
                        for sub in 0..2 {
                            let dl = d * (q3k_scale(scales, 8 * n + 2 * j + sub) - 32) as f32;
                            for l in 0..16 {
                                let q = ((block[32 + 32 * n + 16 * sub + l] >> (2 * j)) & 3) as i32;
                                let high = (block[16 * sub + l] >> (4 * n + j)) & 1;
                                out[128 * n + 32 * j + 16 * sub + l] = dl * (q - if high == 1 { 0 } else { 4 }) as f32;
                            }
                        }
                    }
                }
            }
            // Q4_K { d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] } (256 values in 8 sub-blocks of 32):
            // sub-block j has a 6-bit scale sc_j and min m_j (scale_min_k4); chunk c (64 values) takes
            // qs[32c..32c+32]: low nibbles are sub-block 2c, high nibbles 2c+1; x = d*sc*q - dmin*m.
            Q4K => {
                let (d, dmin) = (h(0), h(2));
                let scales = &block[4..16];
                for c in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * c, scales);
                    let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
                    for l in 0..32 {
                        let q = block[16 + 32 * c + l];
                        out[64 * c + l] = d * sc1 * (q & 0xF) as f32 - dmin * m1;
                        out[64 * c + 32 + l] = d * sc2 * (q >> 4) as f32 - dmin * m2;
                    }
                }
            }
            // Q5_K { d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }: as Q4_K, plus a
            // fifth bit per value: bit 2c of qh[l] for value 64c+l, bit 2c+1 for value 64c+32+l.
            Q5K => {
                let (d, dmin) = (h(0), h(2));
                let scales = &block[4..16];
                let qh = &block[16..48];
                for c in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * c, scales);
                    let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
                    for l in 0..32 {
                        let q = block[48 + 32 * c + l];
                        let lo = (q & 0xF) as u32 | (((qh[l] >> (2 * c)) & 1) as u32) << 4;
                        let hi = (q >> 4) as u32 | (((qh[l] >> (2 * c + 1)) & 1) as u32) << 4;
                        out[64 * c + l] = d * sc1 * lo as f32 - dmin * m1;
                        out[64 * c + 32 + l] = d * sc2 * hi as f32 - dmin * m2;
                    }
                }
            }
            // Q6_K { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 } (256 values in two halves of
            // 128): in half n, for l in 0..32, values l, l+32, l+64, l+96 are the low nibble of
            // ql[64n+l], low of ql[64n+32+l], high of ql[64n+l], high of ql[64n+32+l], each with 2 more
            // bits from qh[32n+l] (bits 0-1, 2-3, 4-5, 6-7), minus 32, times d * scales[8n + l/16 + 2g].
            Q6K => {
                let d = h(208);
                for n in 0..2 {
                    for l in 0..32 {
                        let (a, b, qh) = (block[64 * n + l], block[64 * n + 32 + l], block[128 + 32 * n + l]);
                        let q = [
                            (a & 0xF) | ((qh & 3) << 4),
                            (b & 0xF) | (((qh >> 2) & 3) << 4),
                            (a >> 4) | (((qh >> 4) & 3) << 4),
                            (b >> 4) | (((qh >> 6) & 3) << 4),
                        ];
                        for (g, qg) in q.iter().enumerate() {
                            let sc = block[192 + 8 * n + l / 16 + 2 * g] as i8 as f32;
                            out[128 * n + 32 * g + l] = d * sc * (*qg as f32 - 32.0);
                        }
                    }
                }
            }
            // IQ4_NL { d: f16, qs: [u8; 16] }: x[j] = d * IQ4_LEVELS[qs[j] & 0xF], x[j+16] = d * IQ4_LEVELS[qs[j] >> 4].
            Iq4Nl => {
                let d = h(0);
                for j in 0..16 {
                    out[j] = d * IQ4_LEVELS[(block[2 + j] & 0xF) as usize] as f32;
                    out[j + 16] = d * IQ4_LEVELS[(block[2 + j] >> 4) as usize] as f32;
                }
            }
            // IQ4_XS { d: f16, scales_h: u16, scales_l: [u8; 4], qs: [u8; 128] } (8 sub-blocks of 32):
            // sub-block b's 6-bit scale ls is nibble b of scales_l with bits 2b..2b+1 of scales_h on
            // top; its quants qs[16b..16b+16] as IQ4_NL's, times d * (ls - 32).
            Iq4Xs => {
                let d = h(0);
                let scales_h = u16::from_le_bytes([block[2], block[3]]) as u32;
                for b in 0..8 {
                    let low = (block[4 + b / 2] >> (4 * (b % 2))) as u32 & 0xF;
                    let ls = low | ((scales_h >> (2 * b)) & 3) << 4;
                    let dl = d * (ls as f32 - 32.0);
                    for j in 0..16 {
                        let q = block[8 + 16 * b + j];
                        out[32 * b + j] = dl * IQ4_LEVELS[(q & 0xF) as usize] as f32;
                        out[32 * b + 16 + j] = dl * IQ4_LEVELS[(q >> 4) as usize] as f32;
                    }
                }
            }
            other => return Err(Error::UnsupportedType { tensor: String::new(), type_name: other.name().to_string() }),
        }
        Ok(())
    }

    /// Makes random bytes a well-scaled block: every f16 scale field becomes a small finite value
    /// (|v| < 0.25, derived from its bits), quants stay as they are. For test inputs of any type.
    pub fn sanitize_block(self, block: &mut [u8]) {
        let fix = |b: &mut [u8], at: usize| {
            let bits = u16::from_le_bytes([b[at], b[at + 1]]);
            let v = f16::from_bits((bits & 0x83ff) | 0x3000); // sign, mantissa; exponent 2^-3
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        match self {
            F32 => {
                let v = (u32::from_le_bytes([block[0], block[1], block[2], block[3]]) as f32 / u32::MAX as f32) - 0.5;
                block.copy_from_slice(&v.to_le_bytes());
            }
            F16 | Q4_0 | Q5_0 | Q8_0 | Iq4Nl | Iq4Xs => fix(block, 0),
            Bf16 => {
                let bits = u16::from_le_bytes([block[0], block[1]]);
                block.copy_from_slice(&((bits & 0x807f) | 0x3e00).to_le_bytes());
                // |v| < 0.25
            }
            Q4_1 | Q5_1 | Q4K | Q5K => {
                fix(block, 0);
                fix(block, 2);
            }
            Q6K => fix(block, 208),
            Q2K => {
                fix(block, 80);
                fix(block, 82);
            }
            Q3K => fix(block, 108),
            _ => {}
        }
    }

    /// Quantizes `x` (`block_elems()` values) into one block, as ggml's reference quantizers do.
    /// Used to build test inputs and small test models.
    pub fn quantize_block(self, x: &[f32], out: &mut Vec<u8>) -> Result<()> {
        if x.len() != self.block_elems() as usize {
            return Err(Error::InvalidRequest(format!(
                "quantize {}: {} values, expected {}",
                self.name(),
                x.len(),
                self.block_elems()
            )));
        }
        let put_h = |out: &mut Vec<u8>, v: f32| out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
        // The value of largest magnitude, with its sign.
        let signed_max = || x.iter().cloned().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        match self {
            F32 => out.extend_from_slice(&x[0].to_le_bytes()),
            F16 => put_h(out, x[0]),
            Bf16 => out.extend_from_slice(&half::bf16::from_f32(x[0]).to_le_bytes()),
            Q4_0 | Q5_0 => {
                let levels = if self == Q4_0 { 8.0 } else { 16.0 };
                let d = signed_max() / -levels;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let q: Vec<u32> =
                    x.iter().map(|v| ((v * id + levels + 0.5) as u32).min(2 * levels as u32 - 1)).collect();
                put_h(out, d);
                if self == Q5_0 {
                    let qh = (0..32).fold(0u32, |h, j| h | ((q[j] >> 4) & 1) << j);
                    out.extend_from_slice(&qh.to_le_bytes());
                }
                out.extend((0..16).map(|j| ((q[j] & 0xF) | (q[j + 16] & 0xF) << 4) as u8));
            }
            Q4_1 | Q5_1 => {
                let levels = if self == Q4_1 { 15 } else { 31 };
                let min = x.iter().cloned().fold(f32::INFINITY, f32::min);
                let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / levels as f32;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                put_h(out, d);
                put_h(out, min);
                let q: Vec<u32> = x.iter().map(|&v| (((v - min) * id + 0.5) as u32).min(levels)).collect();
                if self == Q5_1 {
                    let qh = (0..32).fold(0u32, |h, j| h | ((q[j] >> 4) & 1) << j);
                    out.extend_from_slice(&qh.to_le_bytes());
                }
                out.extend((0..16).map(|j| ((q[j] & 0xF) | (q[j + 16] & 0xF) << 4) as u8));
            }
            Q8_0 => {
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                put_h(out, d);
                out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
            }
            Iq4Nl => {
                // The value of largest magnitude lands on the level -127; every value takes the nearest level.
                let d = signed_max() / -127.0;
                put_h(out, d);
                let d = f16::from_f32(d).to_f32();
                let q: Vec<u8> = x
                    .iter()
                    .map(|&v| {
                        let err = |k: usize| (v - d * IQ4_LEVELS[k] as f32).abs();
                        (0..16).min_by(|&a, &b| err(a).total_cmp(&err(b))).unwrap_or(0) as u8
                    })
                    .collect();
                out.extend((0..16).map(|j| q[j] | q[j + 16] << 4));
            }
            other => return Err(Error::UnsupportedType { tensor: String::new(), type_name: other.name().to_string() }),
        }
        Ok(())
    }

    /// Quantizes whole blocks of `x` into GGUF bytes.
    pub fn quantize(self, x: &[f32]) -> Result<Vec<u8>> {
        let be = self.block_elems() as usize;
        if !x.len().is_multiple_of(be) {
            return Err(Error::InvalidRequest(format!(
                "quantize {}: {} values are not whole blocks of {be}",
                self.name(),
                x.len()
            )));
        }
        let mut out = Vec::with_capacity(x.len() / be * self.block_bytes() as usize);
        for blk in x.chunks_exact(be) {
            self.quantize_block(blk, &mut out)?;
        }
        Ok(out)
    }

    /// Dequantizes a run of whole blocks (e.g. one row) into f32 values.
    pub fn dequantize(self, bytes: &[u8], out: &mut [f32]) -> Result<()> {
        let (be, bb) = (self.block_elems() as usize, self.block_bytes() as usize);
        if !bytes.len().is_multiple_of(bb) || bytes.len() / bb * be != out.len() {
            return Err(Error::InvalidRequest(format!(
                "dequantize {}: {} bytes do not make {} values",
                self.name(),
                bytes.len(),
                out.len()
            )));
        }
        for (blk, o) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
            self.dequantize_block(blk, o)?;
        }
        Ok(())
    }
}

/// IQ4_NL's and IQ4_XS's non-linear levels (ggml's kvalues_iq4nl): a 4-bit quant indexes them.
const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block's 12 scale bytes (ggml's
/// get_scale_min_k4): j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split over bytes j+4 and
/// the top 2 bits of bytes j-4 and j.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (d as f32, m as f32)
}

/// Scale `i` (0..16, 6 bits) of a Q3_K block's 12 scale bytes: the low 4 bits are the low (i < 8) or
/// high (i >= 8) nibble of byte i % 8, the top 2 bits are bits 2(i/4).. of byte 8 + i % 4.
fn q3k_scale(scales: &[u8], i: usize) -> i32 {
    let low = if i < 8 { scales[i] & 0xF } else { scales[i - 8] >> 4 };
    let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    (low | high << 4) as i32
}
