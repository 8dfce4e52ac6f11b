//! The reference dequantizer, bit for bit, on known answers from gguf-py for every supported type.
//!
//! reference::dequantize and QuantType::dequantize_block (src/format/quant.rs) are checked on
//! tests/fixtures/quant_blocks.json: per type, a few seeded random blocks valid for the type
//! (every quant, sub-block scale/min and f16 mantissa bit exercised, f16 scales finite; one
//! block of all-ones quants, one with a subnormal scale) and the f32 values that the `gguf`
//! Python package (llama.cpp's gguf-py, `gguf.quants.dequantize`) decodes them to, as made by
//! tests/fixtures/make_quant_blocks.py. The GPU kernels are all checked against the reference,
//! so this is what ties their block layouts to ggml's for the types no llama.cpp model golden
//! covers (Q2_K, Q4_0, Q5_1, F16, BF16, F32).
//!
//! Equality is bit for bit (+0 and -0 differ): for every supported type gguf-py and the reference
//! do the same f32 operations in the same order (an f16 -> f32 scale times a small integer, the
//! products of sub-block scale and quant, then one subtraction or addition of a min), and IEEE
//! f32 arithmetic is deterministic, so any difference is a decoding difference. A supported type
//! that the fixture lacks is a failure: SUPPORTED is the crate's own list.

use serde_json::Value;
use webllama::format::quant::{QuantType, SUPPORTED};
use webllama::reference;

fn fixture() -> Value {
    let path = format!("{}/tests/fixtures/quant_blocks.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// One type's blocks: (bytes, expected f32 bits) each.
fn blocks(name: &str, t: &Value) -> Vec<(Vec<u8>, Vec<u32>)> {
    t["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no blocks"))
        .iter()
        .map(|b| {
            let bytes = hex_bytes(b["bytes"].as_str().expect("bytes"));
            let want = b["f32_bits"]
                .as_array()
                .expect("f32_bits")
                .iter()
                .map(|v| u32::from_str_radix(v.as_str().expect("hex string"), 16).expect("f32 bits"))
                .collect();
            (bytes, want)
        })
        .collect()
}

/// The fixture's type for `name`, checked against the crate's ggml id, name and block sizes (the
/// sizes in the fixture are gguf-py's GGML_QUANT_SIZES, another independent check).
fn quant_type(name: &str, t: &Value) -> QuantType {
    let id = t["ggml_id"].as_u64().expect("ggml_id") as u32;
    let ty = QuantType::from_ggml_id(id).unwrap_or_else(|| panic!("{name}: ggml id {id} unknown to webllama"));
    assert_eq!(ty.name(), name, "ggml id {id}");
    assert_eq!(Some(ty.block_elems()), t["block_elems"].as_u64(), "{name}: elements per block");
    assert_eq!(Some(ty.block_bytes()), t["block_bytes"].as_u64(), "{name}: bytes per block");
    ty
}

/// Where `got` differs from `want` in bits: a line per value, at most 4, and the count.
fn mismatches(what: &str, bytes: &[u8], got: &[f32], want: &[u32]) -> Option<String> {
    let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i].to_bits() != want[i]).collect();
    if bad.is_empty() {
        return None;
    }
    let mut s = format!("{what}: {} of {} values differ", bad.len(), want.len());
    if !bytes.is_empty() {
        s += &format!(" (bytes {})", hex(bytes));
    }
    for &i in bad.iter().take(4) {
        let w = f32::from_bits(want[i]);
        s += &format!("\n    [{i}] reference {:e} ({:08x}), gguf-py {w:e} ({:08x})", got[i], got[i].to_bits(), want[i]);
    }
    Some(s)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_supported_type_has_known_answers() {
    let f = fixture();
    let types = f["types"].as_object().expect("types");
    let missing: Vec<&str> = SUPPORTED.iter().map(|t| t.name()).filter(|n| !types.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "supported types without known answers in tests/fixtures/quant_blocks.json: {missing:?} \
         (rerun tests/fixtures/make_quant_blocks.py)"
    );
}

#[test]
fn reference_dequantize_matches_gguf_py() {
    let f = fixture();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, t) in f["types"].as_object().expect("types") {
        let ty = quant_type(name, t);
        if !ty.supported() {
            eprintln!("{name}: not supported by webllama, skipped");
            continue;
        }
        let blocks = blocks(name, t);
        assert!(blocks.len() >= 2, "{name}: {} blocks, expected several", blocks.len());
        let be = ty.block_elems() as usize;
        for (i, (bytes, want)) in blocks.iter().enumerate() {
            assert_eq!(bytes.len(), ty.block_bytes() as usize, "{name} block {i}: byte count");
            assert_eq!(want.len(), be, "{name} block {i}: value count");
            assert!(want.iter().all(|&w| f32::from_bits(w).is_finite()), "{name} block {i}: non-finite expected value");
            // One block alone.
            let mut got = vec![f32::NAN; be];
            ty.dequantize_block(bytes, &mut got).unwrap_or_else(|e| panic!("{name} block {i}: {e}"));
            failures.extend(mismatches(&format!("{name} block {i} (dequantize_block)"), bytes, &got, want));
        }
        // All blocks as one row, through the reference's entry point (block order and offsets).
        let all: Vec<u8> = blocks.iter().flat_map(|b| b.0.iter().copied()).collect();
        let want: Vec<u32> = blocks.iter().flat_map(|b| b.1.iter().copied()).collect();
        let got = reference::dequantize(ty, &all, 1, want.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        failures.extend(mismatches(&format!("{name} row of {} blocks", blocks.len()), &[], &got.data, &want));
        checked += 1;
    }
    assert!(failures.is_empty(), "reference dequantizer differs from gguf-py:\n{}", failures.join("\n"));
    assert!(checked >= SUPPORTED.len(), "checked {checked} types of {}", SUPPORTED.len());
}
