//! Just enough HTTP/1.1 for the attestation server's answers: one GET at a time on a
//! keep-alive stream, responses with `Content-Length` (the server always sends one), heads and
//! bodies bounded.

use std::io::{self, Read, Write};

use super::ClientError;

/// Largest response head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body (a document is at most 64 KiB, base64 a third more).
const MAX_BODY: usize = 1024 * 1024;

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The server will close the connection after this response.
    pub close: bool,
}

impl HttpResponse {
    /// The `error` of a JSON error body, else the body as text (for messages).
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

fn bad(msg: impl Into<String>) -> ClientError {
    ClientError::Http(msg.into())
}

/// Sends `GET target` and reads the response. `buf` holds bytes read past the previous
/// response (none, from a conforming server) and is left empty.
pub(crate) fn get<S: Read + Write>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    host: &str,
    target: &str,
) -> Result<HttpResponse, ClientError> {
    if target
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("request target contains spaces or control characters"));
    }
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    stream.flush()?;

    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad(format!("response head longer than {MAX_HEAD} bytes")));
        }
        fill(stream, buf)?;
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("response head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") && code.len() == 3 => code
            .parse::<u16>()
            .map_err(|_| bad(format!("bad status line {status_line:?}")))?,
        _ => return Err(bad(format!("bad status line {status_line:?}"))),
    };
    let (mut length, mut content_type, mut close) = (None, None, false);
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err(bad("conflicting Content-Length headers"));
                }
            }
            "transfer-encoding" => return Err(bad("chunked responses are not supported")),
            "content-type" => content_type = Some(value.to_string()),
            "connection" => close |= value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let length = match (length, status) {
        (Some(n), _) => n,
        (None, 204 | 304) => 0,
        (None, _) => return Err(bad("response without Content-Length")),
    };
    if length > MAX_BODY {
        return Err(bad(format!(
            "response body of {length} bytes, more than {MAX_BODY}"
        )));
    }
    buf.drain(..head_end + 4);
    while buf.len() < length {
        fill(stream, buf)?;
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    if !buf.is_empty() {
        return Err(bad("bytes after the response"));
    }
    Ok(HttpResponse {
        status,
        content_type,
        body,
        close,
    })
}

/// Reads more bytes into `buf`; the end of the stream here is an error (mid-response).
fn fill<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Result<(), ClientError> {
    let mut chunk = [0u8; 8192];
    let n = loop {
        match stream.read(&mut chunk) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Err(ClientError::Closed);
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Percent-encodes a query value: everything but unreserved characters and `/`. The server
/// (crate `enclave-attest-server`, `query.rs`) decodes it; `+` stays an escape, never a space.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that answers with canned bytes and records what was written.
    struct Canned(io::Cursor<Vec<u8>>, Vec<u8>);

    impl Read for Canned {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: every split point of the response is exercised.
            let n = b.len().min(1);
            self.0.read(&mut b[..n])
        }
    }
    impl Write for Canned {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(response: &str) -> Result<HttpResponse, ClientError> {
        let mut s = Canned(io::Cursor::new(response.as_bytes().to_vec()), Vec::new());
        let r = get(&mut s, &mut Vec::new(), "h", "/x?a=1");
        assert!(s.1.starts_with(b"GET /x?a=1 HTTP/1.1\r\nHost: h\r\n"));
        r
    }

    #[test]
    fn parses_and_bounds() {
        let r =
            run("HTTP/1.1 200 OK\r\ncontent-type: a/b\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.close),
            (200, &b"abc"[..], false)
        );
        assert_eq!(r.content_type.as_deref(), Some("a/b"));
        let r = run("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 13\r\n\r\n{\"error\":\"x\"}")
            .unwrap();
        assert_eq!(
            (r.status, r.close, r.error_message()),
            (404, true, "x".into())
        );
        for bad in [
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
            "SSH-2.0\r\n\r\n",
            "HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbroken\r\n\r\n",
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD + 1));
        assert!(run(&huge).is_err());
    }

    #[test]
    fn percent_encodes_all_but_unreserved() {
        // The same path the server's query test decodes from this very string.
        assert_eq!(
            percent_encode("/srv/dåta/a b&c=d%+?#"),
            "/srv/d%C3%A5ta/a%20b%26c%3Dd%25%2B%3F%23"
        );
    }
}
