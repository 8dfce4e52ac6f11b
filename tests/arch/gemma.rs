//! Gemma 2 and 3 (tests/arch's gemma2 and gemma3 fixtures): llama.cpp's goldens, reference.rs past
//! the window and over attention's splits, and the sliding-window layers' ring caches
//! (KvCache::ring_rows): the goldens with rings small enough to wrap, and rewinds that a ring keeps
//! or that start over (a session's: tests/generation.rs).

use super::{common, tolerance};
use super::{
    decodes_as_the_reference, exact_everywhere, exact_on, fixture, prefill_everywhere, prefill_on, replace_all,
};
use webllama::format::weights;
use webllama::{Model, ModelBuilder};

/// Both families with 8-row prompt chunks: the tiny Gemma models' sliding layers (a window of 8)
/// keep rings of 16 rows, which a golden's prompts and 24 steps wrap round several times.
fn ring_layouts() -> [webllama::Layout; 2] {
    [common::layout(), common::gpu_family()].map(|l| webllama::Layout { prompt_rows: 8, ..l })
}

/// gemma3 (Gemma 3): q and k normed per head, GeGLU, the attention's and the feed-forward's outputs
/// normed before the residual, the embedding times sqrt(n_embd); layer 0 sees its last 8 positions
/// (RoPE base 10000), layer 1 all of them (base 1e6, linear scaling by 8). The prompts (6 to 31
/// tokens) and their 24 generated tokens run past the window, in prompt chunks and in decode.
#[test]
fn gemma3_matches_the_exact_golden() {
    exact_everywhere("tiny-gemma3-Q8_0.gguf", "tiny-gemma3-Q8_0");
    prefill_everywhere("tiny-gemma3-Q8_0.gguf", "tiny-gemma3-Q8_0");
    // Its prompt matmuls keep f32 tiles where the adapter would give f16 ones (Gemma's activations
    // outgrow f16).
    let cfg = webllama::Config::from_gguf(&weights::read_header(&fixture("tiny-gemma3-Q8_0.gguf")).unwrap()).unwrap();
    let f16 = webllama::Layout { f16_tiles: true, f16_products: true, f16_k32: true, ..common::gpu_family() };
    assert!(!f16.for_model(&cfg).f16_tiles && !f16.for_model(&cfg).f16_products);
}

/// gemma2 (Gemma 2): gemma3's layers without q and k norms, tied output; layer 0 sees its last 8
/// positions, layer 1 all of them (both RoPE base 10000); the attention's scores soft-capped at 2 and
/// the logits at 8 (Gemma 2's are 50 and 30: these bend the tiny model's values). Decoding 96
/// positions against reference.rs on both families besides.
#[test]
fn gemma2_matches_the_exact_golden() {
    exact_everywhere("tiny-gemma2-Q8_0.gguf", "tiny-gemma2-Q8_0");
    prefill_everywhere("tiny-gemma2-Q8_0.gguf", "tiny-gemma2-Q8_0");
    decodes_as_the_reference(&fixture("tiny-gemma2-Q8_0.gguf"), 96);
}

/// gemma3 decoding 96 positions against reference.rs: its window of 8, and in a copy whose window is
/// 80 positions, a window over more than one of attention's splits (64 positions each).
#[test]
fn gemma3_decodes_past_its_window_and_attentions_splits() {
    let path = fixture("tiny-gemma3-Q8_0.gguf");
    decodes_as_the_reference(&path, 96);
    let key = b"gemma3.attention.sliding_window";
    let entry =
        |window: u32| [&(key.len() as u64).to_le_bytes()[..], key, &4u32.to_le_bytes(), &window.to_le_bytes()].concat();
    let wider = replace_all(&std::fs::read(&path).unwrap(), &entry(8), &entry(80));
    let copy = std::env::temp_dir().join(format!("webllama-gemma3-window80-{}.gguf", std::process::id()));
    std::fs::write(&copy, wider).unwrap();
    let cfg = webllama::Config::from_gguf(&weights::read_header(copy.to_str().unwrap()).unwrap()).unwrap();
    assert_eq!((cfg.window(0), cfg.window(1)), (80, 0), "the copy's window");
    decodes_as_the_reference(copy.to_str().unwrap(), 96);
    std::fs::remove_file(copy).unwrap();
}

/// The goldens with rings that wrap: gemma3 and gemma2 decoding step by step and prefilling their
/// prompts in 8-row chunks, their sliding layers' caches 16 rows (window 8 + 8), the global layers'
/// the whole context.
#[test]
fn sliding_window_rings_match_the_goldens() {
    for name in ["tiny-gemma3-Q8_0", "tiny-gemma2-Q8_0"] {
        let path = fixture(&format!("{name}.gguf"));
        let cfg = webllama::Config::from_gguf(&weights::read_header(&path).unwrap()).unwrap();
        for layout in ring_layouts() {
            let rows = |l| webllama::model::kv_cache::KvCache::ring_rows(&cfg, &layout, l, 128);
            assert_eq!((rows(0), rows(1)), (16, 128), "{name} {layout}: the rings");
            // The memory the loader counts before a download is what the rings take.
            let b = ModelBuilder::new(common::gpu(), layout, &weights::read_header(&path).unwrap(), Some(128)).unwrap();
            let elem = webllama::model::kv_cache::elem_bytes(&layout);
            assert_eq!(b.memory_needed().1, 2 * (16 + 128) * cfg.kv_dim() as u64 * elem, "{name} {layout}");
            exact_on(layout, &path, &format!("arch/{name}.exact.json"));
        }
        prefill_on(&ring_layouts(), &format!("{name}.gguf"), name);
    }
}

/// A ring keeps the window before a short rewind (a step in flight, a regenerated last token) and
/// the steps after it give the logits they gave; a rewind further back than its spare rows starts
/// the context over (truncate keeps 0), and running the tokens again gives them too.
#[test]
fn a_ring_cache_rewinds_within_its_spare_rows_or_starts_over() {
    let path = fixture("tiny-gemma3-Q8_0.gguf");
    let tokens: Vec<u32> = (0..32).map(|i| 100 + 37 * i).collect();
    for layout in ring_layouts() {
        let mut model = Model::load_file(common::gpu(), layout, &path, Some(128)).unwrap();
        let tol = tolerance(&layout, &path) / 10.0;
        let step = |m: &mut Model, t: u32| pollster::block_on(m.step(t, true)).unwrap().logits.unwrap();
        let first: Vec<Vec<f32>> = tokens.iter().map(|&t| step(&mut model, t)).collect();
        let again = |m: &mut Model, from: usize, to: usize, how: &str| {
            for i in from..to {
                let got = step(m, tokens[i]);
                let worst = got.iter().zip(&first[i]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= tol, "{layout} {how}: position {i}, a logit {worst} from the first run's");
            }
        };
        // Written 32; back to 28: position 28 sees 21 to 28, and rows 21 to 31 are still theirs.
        assert_eq!(model.truncate(28), 28, "{layout}: a rewind of 4");
        again(&mut model, 28, 32, "after a rewind of 4");
        // Back to 14: position 14 would see 7 to 14, whose rows positions 23 to 30 took.
        assert_eq!(model.truncate(14), 0, "{layout}: a rewind of 18 starts over");
        assert_eq!(model.kv_len(), 0);
        pollster::block_on(model.prefill(&tokens[..14], false)).unwrap();
        again(&mut model, 14, 24, "started over");
    }
}
