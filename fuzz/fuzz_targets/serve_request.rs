//! Fuzz target: `webllama serve`'s request parsing on arbitrary bytes: the head is read within its
//! line and header limits, a target resolves inside the served folders or not at all, a Range is
//! inside the file; never a panic.
#![no_main]

#[path = "../../src/bin/webllama/request.rs"]
#[allow(dead_code)]
mod request;

use libfuzzer_sys::fuzz_target;
use request::{parse_range, read_head, resolve, serves_host, Range, MAX_LINE};
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::BufReader::new(data);
    let Ok(head) = read_head(&mut reader) else { return };
    let Ok(head) = head else { return };
    assert!(head.target.len() as u64 <= MAX_LINE);
    let (www, models) = (Path::new("/srv/www"), Path::new("/srv/models"));
    if let Some(p) = resolve(&head.target, www, models) {
        let inside = |root: &Path| {
            p.starts_with(root) && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        };
        assert!(inside(www) || inside(models), "{:?} -> {}", head.target, p.display());
        assert!(!p.to_string_lossy().contains(':'), "{:?} -> {}", head.target, p.display());
    }
    if let Some(r) = &head.range {
        for len in [0u64, 1, 1000, u64::MAX] {
            if let Range::Part(a, b) = parse_range(r, len) {
                assert!(a < b && b <= len, "{r:?} in {len}: {a}..{b}");
            }
        }
    }
    if let Some(h) = &head.host {
        let _ = serves_host(h, 8080);
    }
});
