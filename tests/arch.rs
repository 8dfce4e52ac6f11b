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

/// The model's exact golden on both kernel families and in the reference.
fn exact_everywhere(name: &str) {
    let path = fixture(&format!("{name}.gguf"));
    let golden = format!("arch/{name}.exact.json");
    for layout in [common::layout(), common::gpu_family()] {
        let who = format!("gpu ({layout})");
        let model = RefCell::new(Model::load_file(common::gpu(), layout, &path, Some(128)).unwrap());
        check_exact(&who, &golden, WHOLE, &mut || model.borrow_mut().truncate(0), &mut |t| {
            pollster::block_on(model.borrow_mut().step(t, true)).unwrap().logits.unwrap()
        });
    }
    let g = weights::read_header(&path).unwrap();
    let m = RefCell::new(RefModel::load(&g, &mut weights::FileSource::open(&path).unwrap()).unwrap());
    check_exact("reference", &golden, WHOLE, &mut || m.borrow_mut().reset(), &mut |t| m.borrow_mut().forward(t));
}

#[test]
fn iq4_nl_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_NL");
}

#[test]
fn iq4_xs_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_XS");
}
