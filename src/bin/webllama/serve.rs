//! `webllama serve`: a small static server for the demo page, bound to 127.0.0.1: www/ (with the
//! wasm build in www/pkg) at /, the cached model files at /models/<file name>. GET and HEAD, byte
//! ranges, correct MIME types, one thread per connection.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// Serves until killed; prints the URL first.
pub fn serve(www: PathBuf, models: PathBuf, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    println!("serving {} at http://127.0.0.1:{port}/ (models from {})", www.display(), models.display());
    std::io::stdout().flush()?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (www, models) = (www.clone(), models.clone());
        std::thread::spawn(move || {
            let _ = handle(conn, &www, &models);
        });
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

/// The file a request path names, or None when it escapes the served folders.
fn resolve(path: &str, www: &Path, models: &Path) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let parts: Vec<&str> = decoded.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || p.contains('\\')) {
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

fn handle(conn: TcpStream, www: &Path, models: &Path) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("/").to_string());
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let mut out = conn;
    if method != "GET" && method != "HEAD" {
        return respond(&mut out, &method, &target, 405, "text/plain", b"method not allowed\n");
    }
    let Some(path) = resolve(&target, www, models) else {
        return respond(&mut out, &method, &target, 400, "text/plain", b"bad path\n");
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
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
