//! Fuzz target: the GPU builder's feed path on lavapipe (or whatever adapter there is), as the page
//! drives it: a header streamed with no known length, then every byte after it fed in chunks. Any
//! declared model either loads or fails by name, and GPU memory follows the bytes that came: at most
//! twice them (row padding) and two binding parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use webllama::format::gguf_parse::HeaderStream;
use webllama::{Gpu, Layout, ModelBuilder};

/// The largest part of one weight: small, so that part sizes do not hide the bound.
const PART: u64 = 1 << 20;

fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Arc::new(pollster::block_on(Gpu::new()).expect("a wgpu adapter (lavapipe)"))).clone()
}

fuzz_target!(|data: &[u8]| {
    let mut stream = HeaderStream::new(None);
    let mut at = 0;
    let mut done = false;
    while at < data.len() && !done {
        let chunk = &data[at..(at + 97).min(data.len())];
        at += chunk.len();
        match stream.push(chunk) {
            Ok(d) => done = d,
            Err(_) => return,
        }
    }
    if !done && stream.end().is_err() {
        return;
    }
    // The bytes after the header (kept with it).
    let _ = stream.push(&data[at..]);
    let (g, received) = stream.into_parts().expect("complete");
    let gpu = gpu();
    let Ok(b) = ModelBuilder::new(gpu.clone(), Layout::of(&gpu), &g, Some(8)) else { return };
    let mut b = b.with_max_part_bytes(PART);
    let (before, buffers) = (gpu.bytes_allocated(), gpu.buffers_created());
    let mut fed = 0u64;
    for (i, chunk) in received.chunks(61).enumerate() {
        if b.feed((i * 61) as u64, chunk).is_err() {
            return;
        }
        fed += chunk.len() as u64;
        let allocated = gpu.bytes_allocated() - before;
        let rounding = 4 * (gpu.buffers_created() - buffers);
        assert!(allocated <= 2 * fed + 2 * PART + rounding, "{allocated} bytes of GPU buffers for {fed} bytes fed");
    }
    let _ = b.finish();
    gpu.take_error().ok();
});
