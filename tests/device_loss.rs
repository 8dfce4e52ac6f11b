//! A GPU device lost at any point (while the weights upload, during a prompt's prefill, while a
//! reply streams, while n candidates decode side by side) is a DeviceLost error naming it, in
//! seconds: never a panic or a hang; a new device loads the model again and generates as before.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use webllama::format::weights::{self, FileSource, TensorSource};
use webllama::{Error, GenerateOptions, Gpu, Layout, ModelBuilder, Session};

fn new_gpu() -> Arc<Gpu> {
    Arc::new(pollster::block_on(Gpu::new()).expect("a wgpu adapter (on CI: Mesa lavapipe)"))
}

fn model_path() -> Option<String> {
    common::shared_fixture("tiny/tiny-llama3-Q4_K_M.gguf")
}

fn assert_lost(r: Result<impl std::fmt::Debug, Error>, since: Instant, when: &str) {
    match r {
        Err(Error::DeviceLost(_)) => {}
        other => panic!("{when}: expected DeviceLost, got {other:?}"),
    }
    assert!(since.elapsed() < Duration::from_secs(20), "{when}: the error came after {:?}", since.elapsed());
}

#[test]
fn a_device_lost_during_the_upload_is_named() {
    let Some(path) = model_path() else { return };
    let gpu = new_gpu();
    let g = weights::read_header(&path).unwrap();
    let mut b = ModelBuilder::new(gpu.clone(), Layout::of(&gpu), &g, Some(64)).unwrap();
    let (start, end) = b.byte_range();
    let mut src = FileSource::open(&path).unwrap();
    let half = start + (end - start) / 2;
    b.feed(start, &src.read_at(start, half - start).unwrap()).unwrap();
    let t = Instant::now();
    gpu.lose_device();
    let rest = b.feed(half, &src.read_at(half, end - half).unwrap()).and_then(|_| b.finish().map(|_| ()));
    assert_lost(rest, t, "upload");
}

/// A device lost outside webllama (a driver reset: here wgpu's own destroy, without the record
/// Gpu::lose_device writes first) reaches the next request through the device's lost callback, as
/// DeviceLost, and stays: the request after it fails the same way.
#[test]
fn a_device_lost_behind_webllamas_back_is_named_through_its_callback() {
    let Some(path) = model_path() else { return };
    let gpu = new_gpu();
    let mut s = Session::load_file(gpu.clone(), Layout::of(&gpu), &path, Some(64)).unwrap();
    let ids = s.tokenizer.encode("The quick brown fox", true).unwrap();
    let opts = GenerateOptions { max_tokens: 4, ..Default::default() };
    assert!(pollster::block_on(s.generate(&ids, &opts, &mut |_| true)).is_ok());
    gpu.device.destroy();
    for when in ["the request after the loss", "the one after that"] {
        let t = Instant::now();
        assert_lost(pollster::block_on(s.generate(&ids, &opts, &mut |_| true)), t, when);
    }
}

/// A generation on a session whose device is lost from another thread after `after`, or from the
/// stream callback at its `at_piece`-th piece.
fn lose_while_generating(n: usize, prompt_tokens: usize, after: Option<Duration>, at_piece: Option<usize>, when: &str) {
    let Some(path) = model_path() else { return };
    let gpu = new_gpu();
    let mut s = Session::load_file(gpu.clone(), Layout::of(&gpu), &path, Some(512)).unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(prompt_tokens / 10 + 1);
    let mut ids = s.tokenizer.encode(&text, true).unwrap();
    ids.truncate(prompt_tokens);
    let opts = GenerateOptions { max_tokens: 48, ignore_eos: true, ..Default::default() };
    let t = Instant::now();
    let killer = after.map(|d| {
        let gpu = gpu.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            gpu.lose_device();
        })
    });
    let mut pieces = 0;
    let r = pollster::block_on(s.generate_n(&ids, n, &opts, &mut |_, _| {
        pieces += 1;
        if Some(pieces) == at_piece {
            gpu.lose_device();
        }
        true
    }));
    if let Some(k) = killer {
        k.join().unwrap();
    }
    assert_lost(r.map(|g| g.len()), t, when);
    if after.is_some() {
        assert_eq!(pieces, 0, "{when}: the device went after the prompt was read");
    }
    // And it stays lost: the next request fails the same way, at once.
    let again = pollster::block_on(s.generate(&ids[..4], &opts, &mut |_| true));
    assert_lost(again.map(|g| g.ids), Instant::now(), when);
}

#[test]
fn a_device_lost_during_prefill_is_named() {
    // A 400-token prompt prefills for well over the 30 ms before the device goes.
    lose_while_generating(1, 400, Some(Duration::from_millis(30)), None, "prefill");
}

#[test]
fn a_device_lost_while_a_reply_streams_is_named() {
    lose_while_generating(1, 8, None, Some(3), "streaming");
}

#[test]
fn a_device_lost_while_candidates_decode_is_named() {
    lose_while_generating(3, 8, None, Some(5), "n = 3");
}

#[test]
fn a_new_device_after_a_lost_one_generates_as_before() {
    let Some(path) = model_path() else { return };
    let run = |gpu: &Arc<Gpu>| {
        let mut s = Session::load_file(gpu.clone(), Layout::of(gpu), &path, Some(64)).unwrap();
        let ids = s.tokenizer.encode("Once upon a time", true).unwrap();
        let opts = GenerateOptions { max_tokens: 6, ..Default::default() };
        pollster::block_on(s.generate(&ids, &opts, &mut |_| true)).unwrap().ids
    };
    let first = new_gpu();
    let before = run(&first);
    first.lose_device();
    assert_eq!(run(&new_gpu()), before);
}
