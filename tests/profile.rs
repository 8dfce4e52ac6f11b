//! `webllama bench --profile`'s byte counts, which BENCH.md's real-GPU tables quote: a prompt
//! chunk's matmuls read each layer matrix once (a fused group's two halves half of it each), and a
//! decode step reads every matrix once.

mod common;

use webllama::format::weights;
use webllama::model::profile::Profile;
use webllama::{Family, Layout, Model};

#[test]
fn a_profile_counts_each_weight_once() {
    let Some(path) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    let g = weights::read_header(&path).unwrap();
    // The layers' matrices as the file holds them (the profile counts packed blocks, not padding).
    let layers: u64 =
        g.tensors.iter().filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2).map(|t| t.n_bytes).sum();
    let gpu = common::gpu();
    let mut model = Model::load_file(gpu.clone(), Layout::family(&gpu, Family::Cpu), &path, Some(64)).unwrap();
    let of = |p: &Profile, kind: &str| p.kinds.iter().filter(|k| k.name == kind).map(|k| k.weight_bytes).sum::<u64>();
    let chunk = model.profile_chunk(1).unwrap();
    let names: Vec<_> = chunk.kinds.iter().map(|k| (k.name, k.weight_bytes)).collect();
    assert_eq!(of(&chunk, "matmul"), layers, "the chunk's matmuls: {names:?}");
    let step = model.profile_step(1).unwrap();
    let all: u64 = step.kinds.iter().map(|k| k.weight_bytes).sum();
    let names: Vec<_> = step.kinds.iter().map(|k| (k.name, k.weight_bytes)).collect();
    // The step looks one embedding row up besides what a token reads.
    assert!(
        all >= model.weight_bytes && all - model.weight_bytes < 4096,
        "the step: {names:?} against {}",
        model.weight_bytes
    );
}
