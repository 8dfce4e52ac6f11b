//! GGUF v2/v3 header: metadata values (arrays kept as typed vectors), tensor infos with absolute
//! data offsets, and the limits a file must keep; the parser itself is in gguf_parse.rs.

use super::gguf_parse::Partial;
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
/// Largest header (metadata and tensor index) in bytes: real ones, with a 256k-token vocabulary and
/// its merges, are under 16 MiB.
pub const MAX_HEADER: u64 = 64 << 20;

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
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, stored as a vector of its element type: a U8 array costs one byte an element
/// in memory as in the file, never a `Value` each.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The GGUF type id of the elements.
    pub fn elem_type(&self) -> u32 {
        match self {
            Array::U8(_) => 0,
            Array::I8(_) => 1,
            Array::U16(_) => 2,
            Array::I16(_) => 3,
            Array::U32(_) => 4,
            Array::I32(_) => 5,
            Array::F32(_) => 6,
            Array::Bool(_) => 7,
            Array::String(_) => 8,
            Array::Array(_) => 9,
            Array::U64(_) => 10,
            Array::I64(_) => 11,
            Array::F64(_) => 12,
        }
    }
    /// Element `i` as an integer, whatever the integer width; None for other types or out of range.
    pub fn int_at(&self, i: usize) -> Option<i128> {
        Some(match self {
            Array::U8(v) => *v.get(i)? as i128,
            Array::I8(v) => *v.get(i)? as i128,
            Array::U16(v) => *v.get(i)? as i128,
            Array::I16(v) => *v.get(i)? as i128,
            Array::U32(v) => *v.get(i)? as i128,
            Array::I32(v) => *v.get(i)? as i128,
            Array::U64(v) => *v.get(i)? as i128,
            Array::I64(v) => *v.get(i)? as i128,
            _ => return None,
        })
    }
    /// Element `i` as a float (integers and floats).
    pub fn float_at(&self, i: usize) -> Option<f64> {
        match self {
            Array::F32(v) => v.get(i).map(|&x| x as f64),
            Array::F64(v) => v.get(i).copied(),
            _ => self.int_at(i).map(|x| x as f64),
        }
    }
    /// The elements, when they are strings.
    pub fn strings(&self) -> Option<&[String]> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }
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
    pub fn as_array(&self) -> Option<&Array> {
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
    pub(super) index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub(super) tensor_index: HashMap<String, usize>,
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
    /// (A stream that arrives in chunks is parsed once through, item by item, by HeaderStream.)
    pub fn parse(prefix: &[u8], file_len: Option<u64>) -> Result<Parsed> {
        Partial::default().advance(prefix, file_len)
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
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))?;
        v.as_array().ok_or_else(|| bad(key, "is not an array"))
    }
    /// The same metadata with `tensors` instead (a split model's, placed in the parts'
    /// concatenation): a named error when a name appears twice.
    pub fn with_tensors(mut self, tensors: Vec<TensorInfo>) -> Result<Gguf> {
        let mut index = HashMap::new();
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(Error::BadTensor { tensor: t.name.clone(), msg: "appears in two parts".into() });
            }
        }
        (self.tensors, self.tensor_index) = (tensors, index);
        Ok(self)
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

pub(super) fn bad(key: &str, msg: &str) -> Error {
    Error::BadMetadata { key: key.to_string(), msg: msg.to_string() }
}
