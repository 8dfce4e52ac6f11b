//! GGUF v2/v3 reader: header, metadata values, tensor infos with absolute data offsets.
//! Parses from a byte prefix so a streamed download can feed it; the file is never held whole.
//! Hard caps on counts and lengths, checked against the bytes that exist; never panics on input.

use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use std::collections::HashMap;

/// Most tensors a file may declare (real LLaMA files have a few hundred).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata keys a file may declare.
pub const MAX_KV: u64 = 1 << 16;
/// Longest string (a chat template, a key, a token) in bytes.
pub const MAX_STRING: u64 = 1 << 24;
/// Longest metadata array (a vocabulary of a few hundred thousand tokens fits easily).
pub const MAX_ARRAY: u64 = 1 << 24;
/// Deepest nesting of arrays inside arrays.
pub const MAX_DEPTH: u32 = 4;
/// Most dimensions of a tensor (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;
/// Longest tensor name (ggml's GGML_MAX_NAME, with its terminating NUL).
pub const MAX_NAME: u64 = 63;
/// The alignment of tensor data when general.alignment is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an integer, whatever its integer width; None for non-integers.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }
    /// The value as a float (integers and floats).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// One tensor's place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: dims[0] is the fastest-varying (the row length of a matrix).
    pub dims: Vec<u64>,
    pub ty: QuantType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row length (dims[0]) and number of rows (the product of the other dims).
    pub fn rows_cols(&self) -> (u64, u64) {
        let cols = self.dims[0];
        (self.n_elements() / cols.max(1), cols)
    }
}

/// A parsed GGUF header: metadata and tensor index. The data itself stays in the file.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset where tensor data starts.
    pub data_offset: u64,
}

/// The outcome of parsing a prefix of a file.
#[derive(Debug)]
pub enum Parsed {
    /// The header is complete.
    Done(Box<Gguf>),
    /// The prefix ends inside the header: at least `needed` bytes (from the file start) are required.
    NeedMore { needed: u64 },
}

impl Gguf {
    /// Parses the header from `prefix`, the first bytes of a file of `file_len` bytes (None when the
    /// length is not known yet). When `prefix` is the whole file, running out of bytes is an error.
    pub fn parse(prefix: &[u8], file_len: Option<u64>) -> Result<Parsed> {
        let mut r = Reader { buf: prefix, pos: 0, file_len };
        match parse_inner(&mut r) {
            Ok(g) => Ok(Parsed::Done(Box::new(g))),
            Err(Stop::More { needed, what }) => {
                let available = file_len.unwrap_or(u64::MAX);
                if needed > available || file_len == Some(prefix.len() as u64) {
                    Err(Error::Truncated { what, needed, available: file_len.unwrap_or(prefix.len() as u64) })
                } else {
                    Ok(Parsed::NeedMore { needed })
                }
            }
            Err(Stop::Err(e)) => Err(e),
        }
    }

    /// Parses a complete header held in memory (e.g. the whole file), erroring when it is cut short.
    pub fn parse_complete(bytes: &[u8]) -> Result<Gguf> {
        match Self::parse(bytes, Some(bytes.len() as u64))? {
            Parsed::Done(g) => Ok(*g),
            Parsed::NeedMore { needed } => {
                Err(Error::Truncated { what: "header".into(), needed, available: bytes.len() as u64 })
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
    /// A string value, or a named error when it is missing or not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))?;
        v.as_str().ok_or_else(|| bad(key, "is not a string"))
    }
    /// A non-negative integer that fits in u64, or a named error.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))?;
        let i = v.as_i128().ok_or_else(|| bad(key, "is not an integer"))?;
        u64::try_from(i).map_err(|_| bad(key, &format!("is {i}, expected a non-negative integer")))
    }
    /// An optional non-negative integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        if self.get(key).is_some() {
            self.get_u64(key).map(Some)
        } else {
            Ok(None)
        }
    }
    /// An optional number as f32.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| bad(key, "is not a number")),
        }
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| bad(key, "is not a bool")),
        }
    }
    /// An array value, or a named error.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))?;
        v.as_array().ok_or_else(|| bad(key, "is not an array"))
    }
    /// The end of the last tensor's data: the least file size this header is consistent with.
    pub fn data_end(&self) -> u64 {
        self.tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap_or(self.data_offset)
    }
    /// Checks that every tensor lies inside a file of `file_len` bytes.
    pub fn check_file_len(&self, file_len: u64) -> Result<()> {
        for t in &self.tensors {
            if t.offset + t.n_bytes > file_len {
                return Err(Error::Truncated {
                    what: format!("tensor {:?}", t.name),
                    needed: t.offset + t.n_bytes,
                    available: file_len,
                });
            }
        }
        Ok(())
    }
}

fn bad(key: &str, msg: &str) -> Error {
    Error::BadMetadata { key: key.to_string(), msg: msg.to_string() }
}

enum Stop {
    More { needed: u64, what: String },
    Err(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Err(e)
    }
}

type R<T> = std::result::Result<T, Stop>;

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
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> R<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8(key)?),
            1 => Value::I8(self.u8(key)? as i8),
            2 => Value::U16(self.u16(key)?),
            3 => Value::I16(self.u16(key)? as i16),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.u8(key)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(bad(key, &format!("bool byte is {b}, expected 0 or 1")).into()),
            },
            8 => Value::String(self.string(key)?),
            9 => {
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
                let min_bytes = len.saturating_mul(min_size);
                if min_bytes > self.left_in_file() {
                    return Err(Error::Truncated {
                        what: format!("array {key:?} of {len} elements"),
                        needed: self.pos as u64 + min_bytes,
                        available: self.file_len.unwrap_or(0),
                    }
                    .into());
                }
                // Never reserve more than the bytes present could hold.
                let present = (self.buf.len() - self.pos) as u64 / min_size;
                let mut items = Vec::with_capacity(len.min(present) as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            t => return Err(Error::UnknownValueType { key: key.to_string(), type_id: t }.into()),
        })
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

fn parse_inner(r: &mut Reader) -> R<Gguf> {
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
    let mut metadata = Vec::with_capacity(n_kv.min(1024) as usize);
    let mut index = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let ty = r.u32(&key)?;
        let value = r.value(ty, &key, 0)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return Err(bad(&key, "appears twice").into());
        }
        metadata.push((key, value));
    }
    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => *a as u64,
        Some(v) => return Err(bad("general.alignment", &format!("is {v:?}, expected a power-of-two u32")).into()),
    };
    let mut infos = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut tensor_index = HashMap::new();
    for _ in 0..n_tensors {
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
        if tensor_index.insert(name.clone(), infos.len()).is_some() {
            return Err(tensor_err(&name, "appears twice").into());
        }
        infos.push((name, dims, type_id, rel_offset));
    }
    let header_end = r.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, type_id, rel_offset) in infos {
        let ty = QuantType::from_ggml_id(type_id)
            .ok_or_else(|| Stop::Err(tensor_err(&name, &format!("unknown ggml type id {type_id}"))))?;
        let mut n: u64 = 1;
        for &d in &dims {
            if d == 0 {
                return Err(tensor_err(&name, &format!("has a zero dimension in {dims:?}")).into());
            }
            n = n
                .checked_mul(d)
                .filter(|&n| n < (1 << 62))
                .ok_or_else(|| Stop::Err(tensor_err(&name, &format!("dimensions {dims:?} overflow"))))?;
        }
        if dims[0] % ty.block_elems() != 0 {
            return Err(tensor_err(
                &name,
                &format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ty.name(),
                    ty.block_elems()
                ),
            )
            .into());
        }
        let n_bytes = ty.bytes_for(n).ok_or_else(|| Stop::Err(tensor_err(&name, "size overflows")))?;
        if rel_offset % alignment != 0 {
            return Err(tensor_err(
                &name,
                &format!("data offset {rel_offset} is not a multiple of the alignment {alignment}"),
            )
            .into());
        }
        let offset = data_offset
            .checked_add(rel_offset)
            .filter(|o| o.checked_add(n_bytes).is_some())
            .ok_or_else(|| Stop::Err(tensor_err(&name, &format!("data offset {rel_offset} overflows"))))?;
        if let Some(len) = r.file_len {
            if offset + n_bytes > len {
                return Err(Error::Truncated {
                    what: format!("tensor {name:?}"),
                    needed: offset + n_bytes,
                    available: len,
                }
                .into());
            }
        }
        tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
    }
    check_no_overlap(&tensors)?;
    Ok(Gguf { version, metadata, index, tensors, tensor_index, alignment, data_offset })
}

/// Refuses tensors whose data ranges overlap (a hostile file could make one upload overwrite
/// another, or count the same bytes twice).
fn check_no_overlap(tensors: &[TensorInfo]) -> Result<()> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.offset < a.offset + a.n_bytes {
            return Err(tensor_err(
                &b.name,
                &format!(
                    "its data (bytes {}..{}) overlaps tensor {:?} (bytes {}..{})",
                    b.offset,
                    b.offset + b.n_bytes,
                    a.name,
                    a.offset,
                    a.offset + a.n_bytes
                ),
            ));
        }
    }
    Ok(())
}

fn tensor_err(name: &str, msg: &str) -> Error {
    Error::BadTensor { tensor: name.to_string(), msg: msg.to_string() }
}
