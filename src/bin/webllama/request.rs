//! The serve command's request parsing, apart from its sockets (and fuzzed on its own): the request
//! head read within limits, a target resolved inside the served folders, a Range, the Host check.

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Longest request line or header line, in bytes.
pub const MAX_LINE: u64 = 8 << 10;
/// Most header lines in one request.
pub const MAX_HEADERS: usize = 100;

/// What a request head says that the server looks at.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub host: Option<String>,
}

/// Reads a request head (the request line and the headers up to the empty line): the head, or why
/// it is refused (method, target as far as they were read, and the reason) when a line is over
/// MAX_LINE, there are over MAX_HEADERS headers, or the head ends early.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<Result<Head, (String, String, &'static str)>> {
    let Some(line) = read_line(reader)? else {
        return Ok(Err(("-".into(), "-".into(), "request line too long\n")));
    };
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("/").to_string());
    let (mut range, mut if_range, mut host) = (None, None, None);
    for n in 0.. {
        let Some(h) = read_line(reader)? else {
            return Ok(Err((method, target, "header line too long\n")));
        };
        if h == "\r\n" || h == "\n" {
            break;
        }
        if n == MAX_HEADERS {
            return Ok(Err((method, target, "too many headers\n")));
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("if-range") {
                if_range = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("host") {
                host = Some(v.trim().to_string());
            }
        }
    }
    Ok(Ok(Head { method, target, range, if_range, host }))
}

/// One line of at most MAX_LINE bytes, or None when it is longer (or the peer closed mid-line).
pub fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    std::io::Read::take(reader, MAX_LINE + 1).read_until(b'\n', &mut line)?;
    if line.len() as u64 > MAX_LINE || !line.ends_with(b"\n") {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// The file a request target names, or None when it is not an origin-form path or would leave the
/// served folders: no `.` or `..` segment, no `\\`, `:` (drive prefixes, NTFS streams) or control
/// character, decoded or not; no segment ending in `.` or a space (Windows drops them: another
/// name for a file) nor, on Windows, naming a device (CON, NUL, COM1, ...).
pub fn resolve(path: &str, www: &Path, models: &Path) -> Option<PathBuf> {
    if !path.starts_with('/') {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let parts: Vec<&str> = decoded.split('/').filter(|p| !p.is_empty()).collect();
    let bad = |p: &str| {
        p.ends_with(['.', ' '])
            || p.chars().any(|c| c == '\\' || c == ':' || c.is_control())
            || (cfg!(windows) && windows_device(p))
    };
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

/// Whether a file name names a Windows device (CON, PRN, AUX, NUL, COM0-9, LPT0-9; any extension).
fn windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim_end().to_ascii_uppercase();
    let numbered = |port: &str| {
        stem.strip_prefix(port).is_some_and(|n| {
            let mut c = n.chars();
            matches!((c.next(), c.next()), (Some('0'..='9' | '\u{b9}' | '\u{b2}' | '\u{b3}'), None))
        })
    };
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$") || numbered("COM") || numbered("LPT")
}

pub fn percent_decode(s: &str) -> Option<String> {
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

/// Whether a Host header names this server: 127.0.0.1 or localhost on its port (a page of another
/// site that a DNS rebinding points at 127.0.0.1 sends its own name); on port 80, browsers leave
/// the port out.
pub fn serves_host(host: &str, port: u16) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, p)) if p == port.to_string() => name,
        Some(_) => return false,
        None if port == 80 => host,
        None => return false,
    };
    name == "127.0.0.1" || name == "localhost"
}

/// What a request's Range header asks of a file (RFC 9110 14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// The whole file: a range this server does not serve (another unit, several ranges, bad
    /// syntax) is ignored.
    Whole,
    /// Bytes [start, end) of the file.
    Part(u64, u64),
    /// A well-formed range that starts at or past the file's end (416).
    Unsatisfiable,
}

/// "bytes=a-b" / "bytes=a-" / "bytes=-n" -> Range::Part within a file of `len` bytes.
pub fn parse_range(r: &str, len: u64) -> Range {
    let Some((unit, spec)) = r.split_once('=') else { return Range::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    let number = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    let (start, end) = match (a, b) {
        ("", "") => return Range::Whole,
        ("", n) => match number(n) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len),
            None => return Range::Whole,
        },
        (a, "") => match number(a) {
            Some(a) => (a, len),
            None => return Range::Whole,
        },
        (a, b) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(len)),
            _ => return Range::Whole,
        },
    };
    if start < end && start < len {
        Range::Part(start, end)
    } else {
        Range::Unsatisfiable
    }
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
            "/models/a.gguf.",
            "/models/a.gguf%20",
            "/app.js%2e",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        // Windows device names (refused there).
        for device in ["CON", "nul.gguf", "Com1", "lpt9.txt", "AUX .gguf", "CONOUT$", "COM\u{b9}", "lpt\u{b3}.gguf"] {
            assert!(windows_device(device), "{device}");
        }
        for file in ["console.gguf", "com10", "nullx", "a.gguf"] {
            assert!(!windows_device(file), "{file}");
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
        assert_eq!(parse_range("bytes=0-99", 1000), Range::Part(0, 100));
        assert_eq!(parse_range("bytes=900-", 1000), Range::Part(900, 1000));
        assert_eq!(parse_range("bytes=-100", 1000), Range::Part(900, 1000));
        assert_eq!(parse_range("bytes=-2000", 1000), Range::Part(0, 1000));
        assert_eq!(parse_range("bytes=990-2000", 1000), Range::Part(990, 1000));
        assert_eq!(parse_range("Bytes = 5-9", 1000), Range::Part(5, 10));
        // Past the end, or a suffix of none: 416.
        for past in ["bytes=1000-", "bytes=1000-1001", "bytes=-0", "bytes=18446744073709551615-"] {
            assert_eq!(parse_range(past, 1000), Range::Unsatisfiable, "{past}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
        // Not served (ignored: the whole file).
        for ignored in [
            "bytes=5-4",
            "bytes=a-b",
            "bytes=+5-",
            "items=0-1",
            "bytes=-",
            "bytes=0-1,5-6",
            "bytes",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(ignored, 1000), Range::Whole, "{ignored}");
        }
    }

    #[test]
    fn only_the_served_host_is_answered() {
        assert!(serves_host("127.0.0.1:8080", 8080) && serves_host("localhost:8080", 8080));
        // Port 80 is left out of Host by browsers.
        assert!(serves_host("127.0.0.1", 80) && serves_host("localhost", 80) && serves_host("localhost:80", 80));
        assert!(!serves_host("evil.example", 80) && !serves_host("127.0.0.1:8080:8080", 8080));
        for bad in ["evil.example:8080", "127.0.0.1:8081", "127.0.0.1", "localhost.evil.example:8080", ""] {
            assert!(!serves_host(bad, 8080), "{bad}");
        }
    }
}
