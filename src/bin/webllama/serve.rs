//! `webllama serve`: a small static server for the demo page, bound to 127.0.0.1: www/ (with the
//! wasm build in www/pkg) at /, the cached model files at /models/<file name>. GET and HEAD, byte
//! ranges, correct MIME types, one thread per connection. Hardened for a local server that a web
//! page can reach: every path stays inside its folder, requests and idle time are bounded, so is
//! the number of connections, and the Host header must name the address served (DNS rebinding).

use crate::request::{parse_range, percent_decode, read_head, resolve, serves_host, Head, Range};
use anyhow::{Context, Result};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a connection may sit without sending or taking a byte.
const IDLE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head, however it spaces its bytes (one byte every
/// few seconds would otherwise hold a connection, and 64 of them the server, for hours).
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Most connections served at once; past that a connection gets 503 and is closed.
const MAX_CONNECTIONS: usize = 64;

/// One connection counted among the live ones until dropped (a handler that panics included).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request's line in the log (stderr); a log that cannot be written (a closed pipe) is skipped,
/// not a panic.
fn log(method: &str, target: &str, status: u16) {
    let _ = writeln!(std::io::stderr(), "{} {} {status}", printable(method), printable(target));
}

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
        let (www, models) = (www.clone(), models.clone());
        let live_here = Live(live.clone());
        // No thread for it (an error): the connection is dropped (closed), its count with it.
        let _ = std::thread::Builder::new().spawn(move || {
            let _counted = live_here;
            let _ = handle(conn, &www, &models, port);
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

fn handle(conn: TcpStream, www: &Path, models: &Path, port: u16) -> Result<()> {
    conn.set_read_timeout(Some(IDLE))?;
    conn.set_write_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(Deadline { conn: conn.try_clone()?, at: Instant::now() + HEAD_DEADLINE });
    let mut out = conn;
    let Head { method, target, range, if_range, host } = match read_head(&mut reader)? {
        Ok(head) => head,
        Err((method, target, why)) => return refuse_unread(out, reader, &method, &target, 431, why.as_bytes()),
    };
    // Refused with the request's body (if any) unread: read and dropped first, so that the client
    // sees the answer, not a reset connection.
    if !host.as_deref().is_some_and(|h| serves_host(h, port)) {
        return refuse_unread(out, reader, &method, &target, 421, b"the Host header must name this server\n");
    }
    if method != "GET" && method != "HEAD" {
        return refuse_unread(out, reader, &method, &target, 405, b"method not allowed\n");
    }
    let Some(path) = resolve(&target, www, models) else {
        return refuse_unread(out, reader, &method, &target, 400, b"bad path\n");
    };
    // A regular file (looked at before it is opened: opening a FIFO would wait for a writer).
    let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
    let Some(mut file) = regular.then(|| std::fs::File::open(&path).ok()).flatten() else {
        return respond(&mut out, &method, &target, 404, "text/plain", b"not found\n");
    };
    let meta = file.metadata()?;
    let len = meta.len();
    // A strong validator (the file's size and modification time), so that a download broken off,
    // even across a page reload, is resumed with If-Range; a Range whose If-Range names another
    // version of the file gets the whole file.
    let etag = etag_of(&meta);
    let range = range.filter(|_| if_range.as_deref().is_none_or(|v| v == etag));
    let (status, start, end) = match range.map_or(Range::Whole, |r| parse_range(&r, len)) {
        Range::Part(a, b) => (206, a, b),
        Range::Unsatisfiable => {
            let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            log(&method, &target, 416);
            return Ok(out.write_all(head.as_bytes())?);
        }
        Range::Whole => (200, 0, len),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\nETag: {etag}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
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
    if path.extension().is_some_and(|e| e == "html") {
        // The page's own policy is in its <meta> tag, which cannot say who may frame it.
        head.push_str("Content-Security-Policy: frame-ancestors 'none'\r\n");
    }
    head.push_str("\r\n");
    log(&method, &target, status);
    out.write_all(head.as_bytes())?;
    if method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut file.take(end - start), &mut out)?;
    }
    Ok(())
}

/// Refuses a request before it was read whole (`status` with `body`), then closes the connection:
/// what the client still sends is read and dropped for a moment (at most 4 MiB, 1 s), so that
/// closing with unread bytes does not reset the connection before the client reads the response.
fn refuse_unread(
    mut out: TcpStream,
    mut reader: BufReader<Deadline>,
    method: &str,
    target: &str,
    status: u16,
    body: &[u8],
) -> Result<()> {
    respond(&mut out, method, target, status, "text/plain", body)?;
    let _ = out.shutdown(std::net::Shutdown::Write);
    // A deadline of its own: the head's may have run out, and the drain must not wait on it.
    reader.get_mut().at = Instant::now() + Duration::from_secs(1);
    let _ = std::io::copy(&mut reader.take(4 << 20), &mut std::io::sink());
    Ok(())
}

fn respond(out: &mut TcpStream, method: &str, target: &str, status: u16, ctype: &str, body: &[u8]) -> Result<()> {
    log(method, target, status);
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

/// A file's strong ETag: its size and modification time (ns since the epoch), in hex; on Unix its
/// inode and change time too (tools that keep times, cp -p or rsync -t, give a new version of a
/// file its old modification time; nothing sets the change time).
fn etag_of(meta: &std::fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let tag = format!("{:x}-{:x}", meta.len(), modified.map_or(0, |d| d.as_nanos()));
    #[cfg(unix)]
    let tag = {
        use std::os::unix::fs::MetadataExt;
        format!("{tag}-{:x}-{:x}.{:x}", meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    format!("\"{tag}\"")
}

/// A client's text for the log: control characters escaped (an ESC would reach the terminal).
fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

/// A connection's reads until `at`: each read waits at most the time left (and IDLE).
struct Deadline {
    conn: TcpStream,
    at: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request head took too long"));
        }
        self.conn.set_read_timeout(Some(left.min(IDLE)))?;
        self.conn.read(buf)
    }
}

/// The worker's Content-Security-Policy: its own scripts and wasm, and connections to this origin
/// and to the model's host named by `?model_origin=` (checked to be a bare http(s) origin) and the
/// hosts it redirects downloads to, no other. The worker is what fetches models; were a hostile
/// file to take it over, it could send nothing to a third host.
fn worker_csp(target: &str) -> String {
    let origin = target
        .split_once('?')
        .map(|(_, q)| q.split('&'))
        .and_then(|mut q| q.find_map(|kv| kv.strip_prefix("model_origin=")))
        .and_then(percent_decode)
        .filter(|o| is_origin(o));
    let connect = match origin {
        Some(o) => format!("'self' {o}{}", redirect_hosts(&o)),
        None => "'self'".to_string(),
    };
    format!("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src {connect}")
}

/// The hosts a model host sends its downloads on to (a CSP checks each redirect's target): Hugging
/// Face's file URLs answer 302 to its CDNs (cdn-lfs.hf.co, cas-bridge.xethub.hf.co, ...), GitHub's
/// release assets to githubusercontent.com.
fn redirect_hosts(origin: &str) -> &'static str {
    match origin {
        "https://huggingface.co" => " https://*.hf.co https://*.huggingface.co",
        // hf.co sends its downloads to huggingface.co first.
        "https://hf.co" => " https://huggingface.co https://*.hf.co https://*.huggingface.co",
        "https://github.com" => " https://*.githubusercontent.com",
        _ => "",
    }
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
        assert!(
            csp.ends_with("connect-src 'self' https://huggingface.co https://*.hf.co https://*.huggingface.co"),
            "{csp}"
        );
        let csp = worker_csp("/worker.js?model_origin=https%3A%2F%2Fgithub.com");
        assert!(csp.ends_with("connect-src 'self' https://github.com https://*.githubusercontent.com"), "{csp}");
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
