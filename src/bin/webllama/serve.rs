//! `webllama serve`: a small static server for the demo page, bound to 127.0.0.1: www/ (with the
//! wasm build in www/pkg) at /, the cached model files at /models/<file name>. GET and HEAD, byte
//! ranges, correct MIME types, one thread per connection. Hardened for a local server that a web
//! page can reach: every path stays inside its folder, requests and idle time are bounded, so is
//! the number of connections, and the Host header must name the address served (DNS rebinding).

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request line or header line, in bytes.
const MAX_LINE: u64 = 8 << 10;
/// Most header lines per request.
const MAX_HEADERS: usize = 100;
/// How long a connection may sit without sending or taking a byte.
const IDLE: Duration = Duration::from_secs(10);
/// Most connections served at once; past that a connection gets 503 and is closed.
const MAX_CONNECTIONS: usize = 64;

/// Serves until killed; prints the URL first.
pub fn serve(www: PathBuf, models: PathBuf, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    println!("serving {} at http://127.0.0.1:{port}/ (models from {})", www.display(), models.display());
    std::io::stdout().flush()?;
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&mut conn, "-", "-", 503, "text/plain", b"too many connections\n");
            continue;
        }
        let (www, models, live_here) = (www.clone(), models.clone(), live.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            let _ = handle(conn, &www, &models, port);
            live_here.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            // No thread for it: the connection is dropped (closed), the server goes on.
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file a request target names, or None when it is not an origin-form path or would leave the
/// served folders: no `.` or `..` segment, no `\\`, `:` (drive prefixes, NTFS streams) or control
/// character, decoded or not.
fn resolve(path: &str, www: &Path, models: &Path) -> Option<PathBuf> {
    if !path.starts_with('/') {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let parts: Vec<&str> = decoded.split('/').filter(|p| !p.is_empty()).collect();
    let bad = |p: &str| p == "." || p == ".." || p.chars().any(|c| c == '\\' || c == ':' || c.is_control());
    if parts.iter().any(|p| bad(p)) {
        return None;
    }
    if parts.first() == Some(&"models") {
        return (parts.len() == 2).then(|| models.join(parts[1]));
    }
    let mut p = www.to_path_buf();
    parts.iter().for_each(|s| p.push(s));
    if p.is_dir() {
        p.push("index.html");
    }
    Some(p)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One line of at most MAX_LINE bytes, or None when it is longer (or the peer closed mid-line).
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    reader.take(MAX_LINE + 1).read_until(b'\n', &mut line)?;
    if line.len() as u64 > MAX_LINE || !line.ends_with(b"\n") {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn handle(conn: TcpStream, www: &Path, models: &Path, port: u16) -> Result<()> {
    conn.set_read_timeout(Some(IDLE))?;
    conn.set_write_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let Some(line) = read_line(&mut reader)? else {
        return refuse_unread(out, reader, "-", "-", b"request line too long\n");
    };
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("/").to_string());
    let (mut range, mut host) = (None, None);
    for n in 0.. {
        let Some(h) = read_line(&mut reader)? else {
            return refuse_unread(out, reader, &method, &target, b"header line too long\n");
        };
        if h == "\r\n" || h == "\n" {
            break;
        }
        if n == MAX_HEADERS {
            return refuse_unread(out, reader, &method, &target, b"too many headers\n");
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("host") {
                host = Some(v.trim().to_string());
            }
        }
    }
    if !host.as_deref().is_some_and(|h| serves_host(h, port)) {
        return respond(&mut out, &method, &target, 421, "text/plain", b"the Host header must name this server\n");
    }
    if method != "GET" && method != "HEAD" {
        return respond(&mut out, &method, &target, 405, "text/plain", b"method not allowed\n");
    }
    let Some(path) = resolve(&target, www, models) else {
        return respond(&mut out, &method, &target, 400, "text/plain", b"bad path\n");
    };
    let Some(mut file) = std::fs::File::open(&path).ok().filter(|f| f.metadata().is_ok_and(|m| m.is_file())) else {
        return respond(&mut out, &method, &target, 404, "text/plain", b"not found\n");
    };
    let len = file.metadata()?.len();
    let (status, start, end) = match range.as_deref().and_then(|r| parse_range(r, len)) {
        Some((a, b)) => (206, a, b),
        None if range.is_some() => {
            let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            eprintln!("{method} {target} 416");
            return Ok(out.write_all(head.as_bytes())?);
        }
        None => (200, 0, len),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        mime(&path),
        end - start
    );
    if status == 206 {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{len}\r\n", end.saturating_sub(1)));
    }
    if path.file_name().is_some_and(|n| n == "worker.js") {
        head.push_str(&format!("Content-Security-Policy: {}\r\n", worker_csp(&target)));
    }
    head.push_str("\r\n");
    eprintln!("{method} {target} {status}");
    out.write_all(head.as_bytes())?;
    if method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut file.take(end - start), &mut out)?;
    }
    Ok(())
}

/// Refuses a request before it was read whole (431 with `body`), then closes the connection: what
/// the client still sends is read and dropped for a moment (at most 4 MiB, 1 s), so that closing
/// with unread bytes does not reset the connection before the client reads the response.
fn refuse_unread(mut out: TcpStream, reader: impl Read, method: &str, target: &str, body: &[u8]) -> Result<()> {
    respond(&mut out, method, target, 431, "text/plain", body)?;
    let _ = out.shutdown(std::net::Shutdown::Write);
    let _ = out.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::copy(&mut reader.take(4 << 20), &mut std::io::sink());
    Ok(())
}

/// Whether a Host header names this server: 127.0.0.1 or localhost on its port (a page of another
/// site that a DNS rebinding points at 127.0.0.1 sends its own name).
fn serves_host(host: &str, port: u16) -> bool {
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

/// "bytes=a-b" / "bytes=a-" / "bytes=-n" -> [start, end) within `len`.
fn parse_range(r: &str, len: u64) -> Option<(u64, u64)> {
    let spec = r.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => (len.saturating_sub(n.parse().ok()?), len),
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.saturating_add(1).min(len)),
    };
    (start < end && start < len).then_some((start, end))
}

fn respond(out: &mut TcpStream, method: &str, target: &str, status: u16, ctype: &str, body: &[u8]) -> Result<()> {
    eprintln!("{method} {target} {status}");
    let head = format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    Ok(())
}

/// The worker's Content-Security-Policy: its own scripts and wasm, and connections to this origin
/// and to the model's host named by `?model_origin=` (checked to be a bare http(s) origin), no other.
/// The worker is what fetches models; were a hostile file to take it over, it could send nothing to
/// a third host.
fn worker_csp(target: &str) -> String {
    let origin = target
        .split_once('?')
        .map(|(_, q)| q.split('&'))
        .and_then(|mut q| q.find_map(|kv| kv.strip_prefix("model_origin=")))
        .and_then(percent_decode)
        .filter(|o| is_origin(o));
    let connect = match origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_string(),
    };
    format!("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src {connect}")
}

/// http(s)://host[:port], the host letters, digits, dots, dashes (or a bracketed IPv6 address).
fn is_origin(o: &str) -> bool {
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else { return false };
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => rest,
    };
    let v6 = host.starts_with('[')
        && host.ends_with(']')
        && host[1..host.len() - 1].chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    v6 || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_stays_inside_its_folder() {
        let (www, models) = (Path::new("/srv/www"), Path::new("/srv/models"));
        let r = |p: &str| resolve(p, www, models);
        assert_eq!(r("/models/a.gguf"), Some(models.join("a.gguf")));
        assert_eq!(r("/app.js?x=1#y"), Some(www.join("app.js")));
        assert_eq!(r("/pkg/webllama.js"), Some(www.join("pkg/webllama.js")));
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/pkg/%2E%2E/%2e%2e/x",
            "/models/..%2fsecret",
            "/models/%2e%2e%2fsecret",
            "/models/.",
            "/models/%2e",
            "/models/a.gguf%00.js",
            "/models/C:",
            "/models/C:%5cWindows",
            "/C:/Windows/win.ini",
            "/models/x.gguf:stream",
            "/a\\b",
            "/%5c%5cserver%5cshare",
            "http://127.0.0.1:8080/app.js",
            "//evil/app.js/..",
            "*",
            "/%zz",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        // /models/ takes exactly one file name.
        assert_eq!(r("/models/a/b.gguf"), None);
        assert_eq!(r("/models"), None);
    }

    /// Random targets over the characters that matter: whatever resolve accepts is inside a root.
    #[test]
    fn resolve_never_leaves_the_roots() {
        let (www, models) = (Path::new("/srv/www"), Path::new("/srv/models"));
        let alphabet: Vec<&str> =
            vec!["/", ".", "..", "%2e", "%2f", "%5c", "\\", ":", "a", "models", "%00", "%", "?", "#"];
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut t = "/".to_string();
            for _ in 0..(s % 9) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                t.push_str(alphabet[(s % alphabet.len() as u64) as usize]);
            }
            if let Some(p) = resolve(&t, www, models) {
                let inside = |root: &Path| {
                    p.starts_with(root)
                        && p.components()
                            .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
                };
                assert!(inside(www) || inside(models), "{t:?} -> {}", p.display());
            }
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 1000)));
        for bad in [
            "bytes=1000-",
            "bytes=5-4",
            "bytes=a-b",
            "items=0-1",
            "bytes=-",
            "bytes=0-1,5-6",
            "bytes=18446744073709551615-",
        ] {
            assert_eq!(parse_range(bad, 1000), None, "{bad}");
        }
    }

    #[test]
    fn only_the_served_host_is_answered() {
        assert!(serves_host("127.0.0.1:8080", 8080) && serves_host("localhost:8080", 8080));
        for bad in ["evil.example:8080", "127.0.0.1:8081", "127.0.0.1", "localhost.evil.example:8080", ""] {
            assert!(!serves_host(bad, 8080), "{bad}");
        }
    }

    #[test]
    fn the_worker_may_connect_to_its_origin_and_the_model_host_only() {
        assert_eq!(
            worker_csp("/worker.js"),
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'"
        );
        let csp = worker_csp("/worker.js?model_origin=https%3A%2F%2Fhuggingface.co");
        assert!(csp.ends_with("connect-src 'self' https://huggingface.co"), "{csp}");
        assert!(worker_csp("/worker.js?a=1&model_origin=http://127.0.0.1:8081")
            .ends_with("connect-src 'self' http://127.0.0.1:8081"));
        assert!(
            worker_csp("/worker.js?model_origin=http://[::1]:8081").ends_with("connect-src 'self' http://[::1]:8081")
        );
        // Anything that is not a bare origin is left out, never pasted into the header.
        for bad in [
            "https://a.com/path",
            "https://a.com;%20script-src%20*",
            "javascript:alert(1)",
            "https://",
            "https://a.com%0d%0aX: y",
            "*",
        ] {
            assert!(worker_csp(&format!("/worker.js?model_origin={bad}")).ends_with("connect-src 'self'"), "{bad}");
        }
    }
}
