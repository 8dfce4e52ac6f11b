//! The weight types and architectures of tests/fixtures/arch (made with llama.cpp by
//! scripts/make_arch_fixtures.py) against their exact goldens (llama.cpp's F32 math on the
//! dequantized weights): greedy ids and top-8 logits within 0.05, on the GPU with both kernel
//! families and in reference.rs.

mod common;

use common::exact::{check_exact, WHOLE};
use std::cell::RefCell;
use webllama::format::weights;
use webllama::reference::RefModel;
use webllama::Model;

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/arch/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The model in `file` against `name`'s exact golden on both kernel families and in the reference.
fn exact_everywhere(file: &str, name: &str) {
    let path = fixture(file);
    let golden = format!("arch/{name}.exact.json");
    for layout in [common::layout(), common::gpu_family()] {
        let who = format!("gpu ({layout})");
        let model = RefCell::new(Model::load_file(common::gpu(), layout, &path, Some(128)).unwrap());
        check_exact(&who, &golden, WHOLE, &mut || model.borrow_mut().truncate(0), &mut |t| {
            pollster::block_on(model.borrow_mut().step(t, true)).unwrap().logits.unwrap()
        });
    }
    let (g, mut source) = weights::open_model(&path).unwrap();
    let m = RefCell::new(RefModel::load(&g, &mut source).unwrap());
    check_exact("reference", &golden, WHOLE, &mut || m.borrow_mut().reset(), &mut |t| m.borrow_mut().forward(t));
}

#[test]
fn iq4_nl_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_NL.gguf", "tiny-llama-IQ4_NL");
}

#[test]
fn iq4_xs_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_XS.gguf", "tiny-llama-IQ4_XS");
}

/// A model in 3 parts (gguf-split), given by its first part, loads as one file.
#[test]
fn a_split_model_loads_from_its_first_part() {
    exact_everywhere("tiny-split-Q4_1-00001-of-00003.gguf", "tiny-split-Q4_1");
}

/// A missing part, or parts that do not belong together, are named errors.
#[test]
fn a_split_model_with_a_part_missing_or_foreign_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("webllama-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let part = |k: u32| format!("tiny-split-Q4_1-0000{k}-of-00003.gguf");
    let first = dir.join(part(1));
    std::fs::copy(fixture(&part(1)), &first).unwrap();
    std::fs::copy(fixture(&part(2)), dir.join(part(2))).unwrap();
    let e = weights::open_model(first.to_str().unwrap()).err().expect("part 3 is missing");
    assert!(e.to_string().contains(&part(3)), "{e}");
    // Part 2 given as part 3: its split.no says otherwise.
    std::fs::copy(fixture(&part(2)), dir.join(part(3))).unwrap();
    let e = weights::open_model(first.to_str().unwrap()).err().expect("part 3 is part 2");
    assert!(e.to_string().contains("split.no"), "{e}");
    // A first part not named like one.
    let renamed = dir.join("model.gguf");
    std::fs::copy(fixture(&part(1)), &renamed).unwrap();
    let e = weights::open_model(renamed.to_str().unwrap()).err().expect("no part names");
    assert!(e.to_string().contains("00001-of-00003"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A Mixtral-style mixture-of-experts llama file is refused by name (the tensor, the expert count),
/// not with a missing ffn_gate; an architecture other than llama names itself.
#[test]
fn unsupported_architectures_are_named() {
    for (file, want) in [
        ("tiny-moe-Q8_0.gguf", "ffn_gate_inp.weight\" (8 experts): mixture-of-experts"),
        ("tiny-qwen2-Q8_0.gguf", "\"qwen2\""),
        ("tiny-qwen3-Q5_0.gguf", "\"qwen3\""),
    ] {
        let e = Model::load_file(common::gpu(), common::layout(), &fixture(file), Some(64)).err().expect(file);
        assert!(e.to_string().contains(want), "{file}: {e}");
    }
}

/// The page's model panel names every weight type webllama loads (and the one architecture).
#[test]
fn the_page_lists_every_supported_type() {
    let html = std::fs::read_to_string(format!("{}/www/index.html", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let at = html.find("id=\"supported\"").expect("the page's list of what loads");
    let list = &html[at..at + html[at..].find("</p>").unwrap()];
    let words: Vec<&str> = list.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    for ty in webllama::format::quant::SUPPORTED {
        assert!(words.contains(&ty.name()), "{} is not in the page's list", ty.name());
    }
    assert!(list.contains("<code>llama</code>"));
}
