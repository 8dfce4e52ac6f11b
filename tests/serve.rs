//! `webllama serve` over real sockets: paths that try to leave its folders are refused, only its own
//! Host is answered, ranges are served or ignored as RFC 9110 says, a request line of 1 MB is refused, a client that stalls is dropped after the
//! idle limit and one that trickles its head at its deadline, while normal requests are still
//! answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `webllama serve` on a free port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    start_with(Stdio::null(), false)
}

/// A server whose log goes to `stderr`; with `close_log`, a pipe closed at once (as when a log
/// reader has died: every write to stderr fails).
fn start_with(stderr: Stdio, close_log: bool) -> Server {
    let models = std::env::temp_dir().join(format!("webllama-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("m.gguf"), b"GGUF model bytes").unwrap();
    let www = format!("{}/www", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_webllama"))
        .args(["serve", "--port", "0", "--www", &www, "--models", models.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    if close_log {
        drop(child.stderr.take());
    }
    // "serving ... at http://127.0.0.1:PORT/ ..."
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).unwrap().parse().unwrap();
    Server { child, port }
}

/// Sends `request` and returns the response's status code and body (the server closes after one).
fn ask(port: u16, request: &[u8]) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = c.write_all(request);
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(vec![], |i| resp[i + 4..].to_vec());
    (status, body)
}

fn get(port: u16, target: &str) -> (u16, Vec<u8>) {
    ask(port, format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
}

#[test]
fn paths_hosts_and_hostile_clients() {
    let s = start();
    let p = s.port;
    assert_eq!(get(p, "/models/m.gguf"), (200, b"GGUF model bytes".to_vec()));
    assert_eq!(get(p, "/").0, 200);
    // A strong ETag, and a Range honoured only for the version its If-Range names (a download
    // broken off resumes across reloads; one of a file since changed starts over).
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.write_all(format!("HEAD /models/m.gguf HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes()).unwrap();
    let mut head = String::new();
    c.read_to_string(&mut head).unwrap();
    let etag = head.lines().find_map(|l| l.strip_prefix("ETag: ")).expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let ranged = |if_range: &str| {
        let req = format!(
            "GET /models/m.gguf HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nRange: bytes=5-\r\nIf-Range: {if_range}\r\n\r\n"
        );
        ask(p, req.as_bytes())
    };
    assert_eq!(ranged(&etag), (206, b"model bytes".to_vec()));
    assert_eq!(ranged("\"other\""), (200, b"GGUF model bytes".to_vec()));
    // Ranges (RFC 9110 14.2): one past the end is 416; one this server does not serve (another
    // unit, several, bad syntax) is ignored: the whole file.
    let range = |r: &str| {
        ask(p, format!("GET /models/m.gguf HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nRange: {r}\r\n\r\n").as_bytes())
    };
    assert_eq!(range("bytes=-5"), (206, b"bytes".to_vec()));
    assert_eq!(range("bytes=16-").0, 416);
    for ignored in ["items=0-1", "bytes=5-3", "bytes=0-1,5-6", "bytes=x-"] {
        assert_eq!(range(ignored), (200, b"GGUF model bytes".to_vec()), "{ignored}");
    }
    // Served as what they are (no sniffing); the page may not be framed by another site.
    assert!(head.contains("X-Content-Type-Options: nosniff\r\n"), "{head}");
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.write_all(format!("HEAD /index.html HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes()).unwrap();
    let mut page = String::new();
    c.read_to_string(&mut page).unwrap();
    assert!(page.contains("Content-Security-Policy: frame-ancestors 'none'\r\n"), "{page}");
    for bad in ["/%2e%2e/Cargo.toml", "/../Cargo.toml", "/models/..%2f..%2fCargo.toml", "/models/.", "/models/m.gguf:x"]
    {
        assert_eq!(get(p, bad).0, 400, "{bad}");
    }
    // Another name for 127.0.0.1 (a DNS rebinding) or none at all.
    let other = ask(p, b"GET /models/m.gguf HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    assert_eq!(other.0, 421);
    assert_eq!(ask(p, b"GET /models/m.gguf HTTP/1.1\r\n\r\n").0, 421);
    // A 1 MB request line is refused without reading it all.
    let mut huge = b"GET /".to_vec();
    huge.resize(1 << 20, b'a');
    huge.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(ask(p, &huge).0, 431);
    // A client that trickles its head a byte every 2 s (never idle for the 10 s limit): dropped at
    // the head's deadline (10 s), not served for as long as it goes on.
    let trickler = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t0 = Instant::now();
        let head = b"GET /models/m.gguf HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
        for b in head {
            if c.write_all(&[*b]).is_err() || t0.elapsed() > Duration::from_secs(40) {
                break;
            }
            // Closed by the server (read gives 0 bytes or an error), or 2 s of nothing.
            match c.read(&mut [0u8; 64]) {
                Ok(0) => break,
                Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                _ => {}
            }
        }
        t0.elapsed()
    });
    // Any method but GET and HEAD: a 405 (its body read and dropped before the server closes).
    let post = format!(
        "POST /models/m.gguf HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(100000)
    );
    assert_eq!(ask(p, post.as_bytes()).0, 405);
    // A client that sends half a request and stalls: the others are served meanwhile, and it is
    // dropped after the idle limit.
    let mut slow = TcpStream::connect(("127.0.0.1", p)).unwrap();
    slow.write_all(b"GET /models/m.gguf HTTP/1.1\r\nHo").unwrap();
    let t0 = Instant::now();
    assert_eq!(get(p, "/models/m.gguf").0, 200);
    assert!(t0.elapsed() < Duration::from_secs(5), "a stalled client held up another: {:?}", t0.elapsed());
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(25), "dropped after {waited:?}");
    assert_eq!(get(p, "/models/m.gguf").0, 200);
    let trickled = trickler.join().unwrap();
    assert!(
        trickled >= Duration::from_secs(8) && trickled < Duration::from_secs(20),
        "trickler dropped after {trickled:?}"
    );
}

/// A log that cannot be written (its pipe closed) costs nothing: each request is still answered,
/// past the 64 connections a leaked count would have used up (a handler that panicked on its log
/// line never gave back its place, and the 503's own log line then ended the server).
#[test]
fn a_closed_log_does_not_stop_the_server() {
    let s = start_with(Stdio::piped(), true);
    for i in 0..80 {
        assert_eq!(get(s.port, "/models/m.gguf"), (200, b"GGUF model bytes".to_vec()), "request {i}");
    }
}
