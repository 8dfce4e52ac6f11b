//! Fuzz target: loading a whole file as the CPU reference does (every tensor read and dequantized,
//! then one forward step), so that any file that parses either loads or fails with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webllama::format::gguf::{Gguf, TensorInfo};
use webllama::reference::RefModel;
use webllama::format::weights::TensorSource;

/// The file in memory.
struct Bytes<'a>(&'a [u8]);

impl TensorSource for Bytes<'_> {
    fn read_at(&mut self, offset: u64, n: u64) -> webllama::Result<Vec<u8>> {
        let end = offset.checked_add(n).filter(|&e| e <= self.0.len() as u64);
        match end {
            Some(e) => Ok(self.0[offset as usize..e as usize].to_vec()),
            None => Err(webllama::Error::Truncated { what: "tensor".into(), needed: offset.saturating_add(n), available: self.0.len() as u64 }),
        }
    }
    fn read(&mut self, t: &TensorInfo) -> webllama::Result<Vec<u8>> {
        self.read_at(t.offset, t.n_bytes)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse_complete(data) else { return };
    // Keep the f32 copy of the weights bounded: a few MB of file at most.
    if g.data_end() > 4 << 20 {
        return;
    }
    if let Ok(mut m) = RefModel::load(&g, &mut Bytes(data)) {
        if m.cfg.vocab_size > 0 && m.cfg.n_layers <= 4 && m.cfg.dim <= 1024 && m.cfg.ffn_dim <= 4096 {
            let logits = m.forward(0);
            assert_eq!(logits.len(), m.cfg.vocab_size);
        }
    }
});
