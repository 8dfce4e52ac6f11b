//! Split GGUF files (llama.cpp's gguf-split: `name-00001-of-00003.gguf`, ...): every part has
//! `split.no` and `split.count`, the first one the metadata and `split.tensors.count`. The parts are
//! read as one file, one after the other: a tensor's offset in the whole is its offset in its part
//! plus the sizes of the parts before it.

use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, TensorInfo};

/// Most parts a split model may have (real ones have a few).
pub const MAX_PARTS: u64 = 128;

/// The path of part `no` (0-based) of `count` next to `first`, as llama.cpp names parts, or None
/// when `first` is not named like a first part.
pub fn part_path(first: &str, no: u64, count: u64) -> Option<String> {
    let suffix = format!("-00001-of-{count:05}.gguf");
    let prefix = first.strip_suffix(&suffix)?;
    Some(format!("{prefix}-{:05}-of-{count:05}.gguf", no + 1))
}

/// The number of parts a header says its file is one of (1 for a file that is not split), checking
/// that it is part `no`.
pub fn parts_of(g: &Gguf, no: u64) -> Result<u64> {
    let Some(count) = g.opt_u64("split.count")? else { return Ok(1) };
    if count == 0 || count > MAX_PARTS {
        return Err(Error::BadMetadata {
            key: "split.count".into(),
            msg: format!("is {count}, expected 1 to {MAX_PARTS}"),
        });
    }
    let got = g.opt_u64("split.no")?.unwrap_or(0);
    if got != no {
        return Err(Error::BadMetadata {
            key: "split.no".into(),
            msg: format!("is {got} in the file read as part {no}"),
        });
    }
    Ok(count)
}

/// Most tensors the parts of a split model may hold together (a 405B model has ~1,100).
pub const MAX_TENSORS: usize = 1 << 16;

/// What the merge keeps of a later part as it is read: its place (split.count, as it says) and its
/// tensors in a file of `len` bytes; the rest of its metadata (the first part's stands for the
/// model) is dropped.
pub struct Part {
    count: u64,
    tensors: Vec<TensorInfo>,
    len: u64,
}

impl Part {
    /// Part `no` (1-based after the first) of a file of `len` bytes, after parts that hold `held`
    /// tensors (the first's included): an error where it is not part `no`, or the tensors would be
    /// more than MAX_TENSORS.
    pub fn read(g: Gguf, no: u64, len: u64, held: usize) -> Result<Part> {
        let count = parts_of(&g, no)?;
        if held.saturating_add(g.tensors.len()) > MAX_TENSORS {
            return Err(Error::BadMetadata {
                key: "split.count".into(),
                msg: format!("the parts up to part {no} hold over {MAX_TENSORS} tensors"),
            });
        }
        Ok(Part { count, tensors: g.tensors, len })
    }

    pub fn tensors(&self) -> usize {
        self.tensors.len()
    }
}

/// The whole model's header from the first part's header and the others' (each with the length of
/// its file): the first part's metadata, every part's tensors placed in the parts' concatenation.
pub fn merge(first: Gguf, rest: Vec<Part>, first_len: u64) -> Result<Gguf> {
    let count = parts_of(&first, 0)?;
    if rest.len() as u64 + 1 != count {
        return Err(Error::BadMetadata {
            key: "split.count".into(),
            msg: format!("is {count}, but {} parts were read", rest.len() + 1),
        });
    }
    let mut tensors: Vec<TensorInfo> = first.tensors.clone();
    let mut base = first_len;
    let past =
        |no: u64| Error::BadMetadata { key: "split.count".into(), msg: format!("part {no} ends past 2^64 bytes") };
    for (k, part) in rest.into_iter().enumerate() {
        let no = k as u64 + 1;
        if part.count != count {
            return Err(Error::BadMetadata { key: "split.count".into(), msg: format!("differs in part {no}") });
        }
        for t in part.tensors {
            let offset = t.offset.checked_add(base).ok_or_else(|| past(no))?;
            tensors.push(TensorInfo { offset, ..t });
        }
        base = base.checked_add(part.len).ok_or_else(|| past(no))?;
    }
    // Each part's tensors lie within its file; checked again as one file all the same.
    crate::format::gguf_parse::check_no_overlap(&tensors)?;
    if let Some(want) = first.opt_u64("split.tensors.count")? {
        if want != tensors.len() as u64 {
            return Err(Error::BadMetadata {
                key: "split.tensors.count".into(),
                msg: format!("is {want}, but the parts hold {} tensors", tensors.len()),
            });
        }
    }
    first.with_tensors(tensors)
}
