//! The GGUF header parser: resumable item by item (the preamble, each metadata pair, each tensor
//! info), so a header that arrives in chunks is read once through (HeaderStream); hard caps on
//! counts, lengths and the header's size, checked against the bytes that exist; never panics.

use super::gguf::{
    bad, Array, Gguf, Parsed, TensorInfo, Value, DEFAULT_ALIGNMENT, MAX_ARRAY, MAX_DEPTH, MAX_DIMS, MAX_HEADER, MAX_KV,
    MAX_NAME, MAX_STRING, MAX_TENSORS,
};
use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use std::collections::HashMap;

/// Why a parse stopped short: it needs bytes up to `needed`, or the input is bad.
pub(super) enum Stop {
    More { needed: u64, what: String },
    Err(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Err(e)
    }
}

type R<T> = std::result::Result<T, Stop>;

/// A tensor info as read, before it is checked against its type and the data offset.
struct RawInfo {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    rel_offset: u64,
}

/// What a header parse has read so far: every whole item up to `pos`. `advance` goes on from there.
#[derive(Default)]
pub(super) struct Partial {
    /// File offset after the last whole item read.
    pos: usize,
    /// (version, tensor count, metadata count), once the preamble is read.
    preamble: Option<(u32, u64, u64)>,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    infos: Vec<RawInfo>,
    tensor_index: HashMap<String, usize>,
}

impl Partial {
    /// Reads on from `pos` in `buf` (the file from byte 0, `file_len` bytes long when known): the
    /// header once every item is there, else how many bytes it needs (or the error that ends it).
    pub(super) fn advance(&mut self, buf: &[u8], file_len: Option<u64>) -> Result<Parsed> {
        match self.advance_inner(buf, file_len) {
            Ok(g) => Ok(Parsed::Done(Box::new(g))),
            Err(Stop::More { needed, what }) => {
                let available = file_len.unwrap_or(u64::MAX);
                if needed > MAX_HEADER {
                    Err(over("header size", needed, MAX_HEADER))
                } else if needed > available || file_len == Some(buf.len() as u64) {
                    Err(Error::Truncated { what, needed, available: file_len.unwrap_or(buf.len() as u64) })
                } else {
                    Ok(Parsed::NeedMore { needed })
                }
            }
            Err(Stop::Err(e)) => Err(e),
        }
    }

    /// Records that whole items end at `pos`, refusing a header that grows past MAX_HEADER.
    fn moved_to(&mut self, pos: usize) -> R<()> {
        if pos as u64 > MAX_HEADER {
            return Err(over("header size", pos as u64, MAX_HEADER).into());
        }
        self.pos = pos;
        Ok(())
    }

    /// File offset after the last whole item read.
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    fn advance_inner(&mut self, buf: &[u8], file_len: Option<u64>) -> R<Gguf> {
        let (version, n_tensors, n_kv) = match self.preamble {
            Some(p) => p,
            None => {
                let mut r = Reader { buf, pos: 0, file_len };
                let p = preamble(&mut r)?;
                (self.preamble, self.pos) = (Some(p), r.pos);
                p
            }
        };
        while (self.metadata.len() as u64) < n_kv {
            let mut r = Reader { buf, pos: self.pos, file_len };
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let value = r.value(ty, &key, 0)?;
            if self.index.insert(key.clone(), self.metadata.len()).is_some() {
                return Err(bad(&key, "appears twice").into());
            }
            self.metadata.push((key, value));
            self.moved_to(r.pos)?;
        }
        while (self.infos.len() as u64) < n_tensors {
            let mut r = Reader { buf, pos: self.pos, file_len };
            let info = tensor_info(&mut r)?;
            if self.tensor_index.insert(info.name.clone(), self.infos.len()).is_some() {
                return Err(tensor_err(&info.name, "appears twice").into());
            }
            self.infos.push(info);
            self.moved_to(r.pos)?;
        }
        let alignment = match self.index.get("general.alignment").map(|&i| &self.metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => *a as u64,
            Some(v) => return Err(bad("general.alignment", &format!("is {v:?}, expected a power-of-two u32")).into()),
        };
        let data_offset = (self.pos as u64).div_ceil(alignment) * alignment;
        let tensors =
            self.infos.iter().map(|i| place(i, data_offset, alignment, file_len)).collect::<Result<Vec<_>>>()?;
        check_no_overlap(&tensors)?;
        Ok(Gguf {
            version,
            metadata: std::mem::take(&mut self.metadata),
            index: std::mem::take(&mut self.index),
            tensors,
            tensor_index: std::mem::take(&mut self.tensor_index),
            alignment,
            data_offset,
        })
    }
}

/// A GGUF header read from bytes as they arrive (a download): each item is parsed once, and an item
/// cut by a chunk's end is tried again only once its bytes have doubled, so the work stays linear in
/// the header's size. The bytes received are kept (the header and what came after it in the same
/// chunk) for the loader to take with the header.
pub struct HeaderStream {
    /// The file's bytes from 0, as received (at most MAX_HEADER and one chunk).
    buf: Vec<u8>,
    file_len: Option<u64>,
    partial: Partial,
    /// Bytes `buf` must hold before the next try.
    retry_at: u64,
    header: Option<Box<Gguf>>,
}

impl HeaderStream {
    /// A stream of a file of `file_len` bytes (None when the length is not known).
    pub fn new(file_len: Option<u64>) -> HeaderStream {
        HeaderStream { buf: vec![], file_len, partial: Partial::default(), retry_at: 0, header: None }
    }

    /// Takes the file's next bytes: true once the header is complete (later bytes are kept as they
    /// come); a named error when the file cannot be a GGUF or the header is over MAX_HEADER.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool> {
        self.buf.extend_from_slice(bytes);
        if self.header.is_some() {
            return Ok(true);
        }
        let have = self.buf.len() as u64;
        let at_end = self.file_len.is_some_and(|l| have >= l);
        if have < self.retry_at && have < MAX_HEADER && !at_end {
            return Ok(false);
        }
        match self.partial.advance(&self.buf, self.file_len)? {
            Parsed::Done(g) => {
                self.header = Some(g);
                Ok(true)
            }
            Parsed::NeedMore { needed } => {
                if have >= MAX_HEADER {
                    return Err(over("header size", have, MAX_HEADER));
                }
                let item = self.partial.pos();
                self.retry_at = needed.max(item + 2 * (have - item));
                Ok(false)
            }
        }
    }

    /// No more bytes will come: the header when complete, else the error naming what is missing.
    pub fn end(&mut self) -> Result<()> {
        if self.header.is_some() {
            return Ok(());
        }
        self.file_len = Some(self.buf.len() as u64);
        match self.partial.advance(&self.buf, self.file_len)? {
            Parsed::Done(g) => {
                self.header = Some(g);
                Ok(())
            }
            Parsed::NeedMore { needed } => {
                Err(Error::Truncated { what: "header".into(), needed, available: self.buf.len() as u64 })
            }
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    /// The header, once complete.
    pub fn header(&self) -> Option<&Gguf> {
        self.header.as_deref()
    }

    /// The file's length, when known.
    pub fn file_len(&self) -> Option<u64> {
        self.file_len
    }

    /// The header and every byte received (from the file's start), once the header is complete.
    pub fn into_parts(self) -> Option<(Gguf, Vec<u8>)> {
        self.header.map(|g| (*g, self.buf))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: Option<u64>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> R<&'a [u8]> {
        let end = (self.pos as u64).checked_add(n).ok_or_else(|| Stop::Err(over(what, n, u64::MAX)))?;
        if end > self.buf.len() as u64 {
            return Err(Stop::More { needed: end, what: what.to_string() });
        }
        let s = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    /// Bytes left in the file after the cursor, when the file length is known.
    fn left_in_file(&self) -> u64 {
        self.file_len.map_or(u64::MAX, |l| l.saturating_sub(self.pos as u64))
    }
    fn string(&mut self, what: &str) -> R<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(over(&format!("length of {what}"), len, MAX_STRING).into());
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Stop::Err(Error::BadMetadata { key: what.to_string(), msg: "string is not valid UTF-8".into() })
        })
    }
    fn bool(&mut self, key: &str) -> R<bool> {
        match self.u8(key)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(bad(key, &format!("bool byte is {b}, expected 0 or 1")).into()),
        }
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> R<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8(key)?),
            1 => Value::I8(self.u8(key)? as i8),
            2 => Value::U16(self.u16(key)?),
            3 => Value::I16(self.u16(key)? as i16),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => Value::Bool(self.bool(key)?),
            8 => Value::String(self.string(key)?),
            9 => Value::Array(self.array(key, depth)?),
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            t => return Err(Error::UnknownValueType { key: key.to_string(), type_id: t }.into()),
        })
    }
    /// An array (its element type and length, then the elements) as a vector of its element type.
    fn array(&mut self, key: &str, depth: u32) -> R<Array> {
        if depth >= MAX_DEPTH {
            return Err(over(&format!("array nesting of {key:?}"), depth as u64 + 1, MAX_DEPTH as u64).into());
        }
        let elem_ty = self.u32(key)?;
        let len = self.u64(key)?;
        if len > MAX_ARRAY {
            return Err(over(&format!("array length of {key:?}"), len, MAX_ARRAY).into());
        }
        let min_size = min_value_size(elem_ty)
            .ok_or_else(|| Stop::Err(Error::UnknownValueType { key: key.to_string(), type_id: elem_ty }))?;
        let min_bytes = len * min_size;
        if min_bytes > self.left_in_file() {
            return Err(Error::Truncated {
                what: format!("array {key:?} of {len} elements"),
                needed: self.pos as u64 + min_bytes,
                available: self.file_len.unwrap_or(0),
            }
            .into());
        }
        // Fixed-size elements come in one piece (so a short buffer asks for the whole array at once).
        macro_rules! fixed {
            ($variant:ident, $t:ty, $conv:expr) => {{
                let raw = self.take(min_bytes, key)?;
                Array::$variant(raw.chunks_exact(std::mem::size_of::<$t>()).map($conv).collect())
            }};
        }
        Ok(match elem_ty {
            0 => Array::U8(self.take(len, key)?.to_vec()),
            1 => fixed!(I8, i8, |b| b[0] as i8),
            2 => fixed!(U16, u16, |b| u16::from_le_bytes(b.try_into().unwrap())),
            3 => fixed!(I16, i16, |b| i16::from_le_bytes(b.try_into().unwrap())),
            4 => fixed!(U32, u32, |b| u32::from_le_bytes(b.try_into().unwrap())),
            5 => fixed!(I32, i32, |b| i32::from_le_bytes(b.try_into().unwrap())),
            6 => fixed!(F32, f32, |b| f32::from_le_bytes(b.try_into().unwrap())),
            7 => {
                let raw = self.take(len, key)?;
                if let Some(b) = raw.iter().find(|&&b| b > 1) {
                    return Err(bad(key, &format!("bool byte is {b}, expected 0 or 1")).into());
                }
                Array::Bool(raw.iter().map(|&b| b == 1).collect())
            }
            10 => fixed!(U64, u64, |b| u64::from_le_bytes(b.try_into().unwrap())),
            11 => fixed!(I64, i64, |b| i64::from_le_bytes(b.try_into().unwrap())),
            12 => fixed!(F64, f64, |b| f64::from_le_bytes(b.try_into().unwrap())),
            8 => Array::String(self.elements(len, min_size, |r| r.string(key))?),
            _ => Array::Array(self.elements(len, min_size, |r| r.array(key, depth + 1))?),
        })
    }
    /// `len` variable-size elements, never reserving more than the bytes present could hold.
    fn elements<T>(&mut self, len: u64, min_size: u64, mut one: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let present = (self.buf.len() - self.pos) as u64 / min_size;
        let mut items = Vec::with_capacity(len.min(present) as usize);
        for _ in 0..len {
            items.push(one(self)?);
        }
        Ok(items)
    }
}

/// Fewest bytes a value of GGUF type `ty` takes (None for an unknown type).
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10 | 11 | 12 => 8,
        9 => 12,
        _ => return None,
    })
}

fn over(what: &str, value: u64, limit: u64) -> Error {
    Error::OverLimit { what: what.to_string(), value, limit }
}

/// Magic, version, tensor count, metadata count.
fn preamble(r: &mut Reader) -> R<(u32, u64, u64)> {
    let magic = r.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(Error::BadMagic { found: magic.try_into().unwrap() }.into());
    }
    let version = r.u32("version")?;
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let n_tensors = r.u64("tensor count")?;
    if n_tensors > MAX_TENSORS {
        return Err(over("tensor count", n_tensors, MAX_TENSORS).into());
    }
    let n_kv = r.u64("metadata count")?;
    if n_kv > MAX_KV {
        return Err(over("metadata count", n_kv, MAX_KV).into());
    }
    Ok((version, n_tensors, n_kv))
}

/// One tensor info: name, dimensions, type id, data offset relative to the data section.
fn tensor_info(r: &mut Reader) -> R<RawInfo> {
    let name = r.string("tensor name")?;
    if name.len() as u64 > MAX_NAME {
        return Err(over(&format!("length of tensor name {name:?}"), name.len() as u64, MAX_NAME).into());
    }
    let n_dims = r.u32(&name)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(tensor_err(&name, &format!("has {n_dims} dimensions, expected 1 to {MAX_DIMS}")).into());
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64(&name)?);
    }
    let type_id = r.u32(&name)?;
    let rel_offset = r.u64(&name)?;
    Ok(RawInfo { name, dims, type_id, rel_offset })
}

/// A tensor info checked (type, dims, block size, alignment) and placed in the file.
fn place(i: &RawInfo, data_offset: u64, alignment: u64, file_len: Option<u64>) -> Result<TensorInfo> {
    let name = &i.name;
    let ty = QuantType::from_ggml_id(i.type_id)
        .ok_or_else(|| tensor_err(name, &format!("unknown ggml type id {}", i.type_id)))?;
    let mut n: u64 = 1;
    for &d in &i.dims {
        if d == 0 {
            return Err(tensor_err(name, &format!("has a zero dimension in {:?}", i.dims)));
        }
        n = n
            .checked_mul(d)
            .filter(|&n| n < (1 << 62))
            .ok_or_else(|| tensor_err(name, &format!("dimensions {:?} overflow", i.dims)))?;
    }
    if !i.dims[0].is_multiple_of(ty.block_elems()) {
        let msg =
            format!("row length {} is not a multiple of the {} block size {}", i.dims[0], ty.name(), ty.block_elems());
        return Err(tensor_err(name, &msg));
    }
    let n_bytes = ty.bytes_for(n).ok_or_else(|| tensor_err(name, "size overflows"))?;
    if !i.rel_offset.is_multiple_of(alignment) {
        let msg = format!("data offset {} is not a multiple of the alignment {alignment}", i.rel_offset);
        return Err(tensor_err(name, &msg));
    }
    let offset = data_offset
        .checked_add(i.rel_offset)
        .filter(|o| o.checked_add(n_bytes).is_some())
        .ok_or_else(|| tensor_err(name, &format!("data offset {} overflows", i.rel_offset)))?;
    if let Some(len) = file_len {
        if offset + n_bytes > len {
            return Err(Error::Truncated {
                what: format!("tensor {name:?}"),
                needed: offset + n_bytes,
                available: len,
            });
        }
    }
    Ok(TensorInfo { name: name.clone(), dims: i.dims.clone(), ty, offset, n_bytes })
}

/// Refuses tensors whose data ranges overlap (a hostile file could make one upload overwrite
/// another, or count the same bytes twice).
pub(crate) fn check_no_overlap(tensors: &[TensorInfo]) -> Result<()> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.offset < a.offset + a.n_bytes {
            let msg = format!(
                "its data (bytes {}..{}) overlaps tensor {:?} (bytes {}..{})",
                b.offset,
                b.offset + b.n_bytes,
                a.name,
                a.offset,
                a.offset + a.n_bytes
            );
            return Err(tensor_err(&b.name, &msg));
        }
    }
    Ok(())
}

fn tensor_err(name: &str, msg: &str) -> Error {
    Error::BadTensor { tensor: name.to_string(), msg: msg.to_string() }
}
