//! `--host unix:///PATH` (or `ENCLAVE_ENGINE_HOST`): the commands that manage enclaves ask the
//! engine API (`enclave-engine daemon`) instead of reading the state directory, and print the
//! same. A small blocking HTTP/1.1 client: one request per connection (`Connection: close`),
//! the API's JSON errors turned into the message the daemonless command would give.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The largest answer read (a `ps` of thousands of enclaves is a few MiB).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// A daemon to ask.
#[derive(Debug, Clone)]
pub struct Remote {
    socket: PathBuf,
    /// [`Remote::local_root`], asked once.
    local: std::sync::OnceLock<Option<enclave_engine::state::StateRoot>>,
}

/// An answer.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Remote {
    /// The daemon named by `--host`; only `unix://` addresses are served.
    pub fn parse(host: &str) -> Result<Remote> {
        match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(Remote {
                socket: PathBuf::from(path),
                local: std::sync::OnceLock::new(),
            }),
            _ => bail!(
                "--host {host:?}: expected unix:///PATH (the daemon's socket, e.g. unix:///run/enclave-engine/engine.sock)"
            ),
        }
    }

    /// `GET path` of a stream (server-sent events, followed logs): `line` for each line as it
    /// comes, until the daemon ends the stream or `line` returns false. An error answer becomes its message.
    pub fn stream(&self, path: &str, mut line: impl FnMut(&str) -> bool) -> Result<()> {
        let (status, chunked, mut reader) = self.send("GET", path, None)?;
        if !(200..300).contains(&status) {
            let mut body = Vec::new();
            if chunked {
                body = dechunk(&mut reader)?;
            } else {
                reader.read_to_end(&mut body).context("reading the body")?;
            }
            bail!("{}", error_message(&body));
        }
        let mut pending = Vec::new();
        let mut chunk = Vec::new();
        let whole = !chunked;
        loop {
            chunk.clear();
            if whole {
                // A body with its length (not streamed): read at once, then split.
                reader.read_to_end(&mut chunk).context("reading the body")?;
                chunk.push(b'\n');
            } else if !next_chunk(&mut reader, &mut chunk)? {
                return Ok(());
            }
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let text = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..=end);
                if !line(&text) {
                    return Ok(());
                }
            }
            if whole {
                return Ok(());
            }
        }
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).with_context(|| {
            format!(
                "cannot reach the engine API at unix://{} (is `enclave-engine daemon` running?)",
                self.socket.display()
            )
        })
    }

    /// Sends `METHOD path`; (status, chunked, the reader after the headers).
    fn send(
        &self,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> Result<(u16, bool, BufReader<Limited>)> {
        let mut stream = self.connect()?;
        let body = json.map(Value::to_string).unwrap_or_default();
        let kind = if json.is_some() {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{kind}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .context("sending the request")?;
        let mut reader = BufReader::new(stream.take(MAX_ANSWER));
        let mut line = String::new();
        reader.read_line(&mut line).context("reading the answer")?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let mut chunked = false;
        loop {
            line.clear();
            reader.read_line(&mut line).context("reading the headers")?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        Ok((status, chunked, reader))
    }

    /// `METHOD path`; the answer, whatever its status.
    pub fn call(&self, method: &str, path: &str) -> Result<Answer> {
        self.call_with(method, path, None)
    }

    /// `METHOD path` with a JSON body (or none); the answer, whatever its status.
    pub fn call_with(&self, method: &str, path: &str, json: Option<&Value>) -> Result<Answer> {
        let (status, chunked, mut reader) = self.send(method, path, json)?;
        let body = if chunked {
            dechunk(&mut reader)?
        } else {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).context("reading the body")?;
            body
        };
        Ok(Answer { status, body })
    }

    /// `METHOD path`, which must succeed; its body. An error answer becomes its message.
    pub fn ok(&self, method: &str, path: &str) -> Result<Vec<u8>> {
        let a = self.call(method, path)?;
        if (200..300).contains(&a.status) {
            return Ok(a.body);
        }
        bail!("{}", error_message(&a.body))
    }

    /// `POST path` with a JSON body, which must succeed; the answer as JSON.
    pub fn post_json(&self, path: &str, json: &Value) -> Result<Value> {
        let a = self.call_with("POST", path, Some(json))?;
        if !(200..300).contains(&a.status) {
            bail!("{}", error_message(&a.body));
        }
        serde_json::from_slice(&a.body).context("the engine API answered something not JSON")
    }

    /// `GET path` as JSON.
    pub fn json(&self, path: &str) -> Result<Value> {
        let body = self.ok("GET", path)?;
        serde_json::from_slice(&body).context("the engine API answered something not JSON")
    }
}

impl Remote {
    /// The enclave's control channel through the daemon (`POST /v1/enclaves/{id}/control`,
    /// upgraded): a stream that carries the control protocol as the enclave's port does. The
    /// daemon only relays; the session's handshake and key proof are the caller's.
    pub fn control_stream(&self, id: &str) -> Result<UnixStream> {
        let mut stream = self.connect()?;
        write!(
            stream,
            "POST /v1/enclaves/{}/control HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: enclave-control\r\nContent-Length: 0\r\n\r\n",
            segment(id)
        )
        .context("sending the request")?;
        // Byte by byte up to the blank line: what follows belongs to the control protocol.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                bail!("the engine API's answer has no end of headers");
            }
            let n = stream.read(&mut byte).context("reading the answer")?;
            if n == 0 {
                bail!("the engine API closed the connection");
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {head:?}"))?;
        if status == 101 {
            return Ok(stream);
        }
        let length: u64 = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        stream
            .take(length.min(MAX_ANSWER))
            .read_to_end(&mut body)
            .context("reading the body")?;
        bail!("{}", error_message(&body))
    }

    /// The daemon's state directory, when this user can open it here too (the same machine
    /// and the same user): then the enclave's supervisor key and pinned identity are at hand.
    /// Asked of the daemon once per command.
    pub fn local_root(&self) -> Option<enclave_engine::state::StateRoot> {
        self.local
            .get_or_init(|| {
                let info = self.json("/v1/system/info").ok()?;
                let dir = PathBuf::from(info["state_dir"].as_str()?);
                if !dir.is_dir() {
                    return None;
                }
                enclave_engine::state::StateRoot::open(&dir).ok()
            })
            .clone()
    }

    /// The record of the enclave `query` names, for the control commands: a 404 worded as
    /// their daemonless lookup words it (they also take a control address).
    pub fn control_record(&self, query: &str) -> Result<Value> {
        self.record(query, " (not a name, id or address)")
    }

    /// The record of the enclave `query` names; a 404 says "no enclave QUERY" and `hint`, as
    /// the daemonless lookups do.
    pub fn record(&self, query: &str, hint: &str) -> Result<Value> {
        let a = self.call("GET", &format!("/v1/enclaves/{}", segment(query)))?;
        match a.status {
            200..=299 => serde_json::from_slice(&a.body)
                .context("the engine API answered something not JSON"),
            404 => Err(anyhow::anyhow!("{}", error_message(&a.body)))
                .with_context(|| format!("no enclave {query:?}{hint}")),
            _ => bail!("{}", error_message(&a.body)),
        }
    }

    /// The name of the enclave `query` (a name or an id prefix) names.
    pub fn name_of(&self, query: &str) -> Result<String> {
        let rec = self.json(&format!("/v1/enclaves/{}", segment(query)))?;
        Ok(rec["name"].as_str().unwrap_or(query).to_owned())
    }
}

/// Runs `f` for each enclave named, as `stop` and `rm` do: its name on stdout when it worked,
/// the error on stderr otherwise; exit 1 if any failed.
pub fn for_each(enclaves: &[String], f: impl Fn(&str) -> Result<String>) -> i32 {
    let mut code = crate::cli::EXIT_OK;
    for q in enclaves {
        match f(q) {
            Ok(name) => println!("{name}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = crate::cli::EXIT_ERROR;
            }
        }
    }
    code
}

type Limited = std::io::Take<UnixStream>;

/// The message of an API error body (`{code, message}`), or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// Appends the next chunk of a chunked body to `out`; false at the last (empty) chunk.
fn next_chunk(reader: &mut impl BufRead, out: &mut Vec<u8>) -> Result<bool> {
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .context("reading a chunk size")?
        == 0
    {
        return Ok(false);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .with_context(|| format!("bad chunk size {line:?}"))?;
    if size == 0 {
        return Ok(false);
    }
    let start = out.len();
    out.resize(start + size, 0);
    reader
        .read_exact(&mut out[start..])
        .context("reading a chunk")?;
    line.clear();
    reader
        .read_line(&mut line)
        .context("reading a chunk's end")?;
    Ok(true)
}

/// A chunked body, whole.
fn dechunk(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while next_chunk(reader, &mut body)? {}
    Ok(body)
}

/// A path segment (an enclave name or id), percent-encoded where it must be.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_unix_sockets() {
        assert!(Remote::parse("unix:///run/e.sock").is_ok());
        for bad in ["tcp://1.2.3.4:2375", "unix://relative", "/run/e.sock", ""] {
            assert!(Remote::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let mut r = std::io::Cursor::new(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n".to_vec());
        assert_eq!(dechunk(&mut r).unwrap(), b"abcde");
        let mut bad = std::io::Cursor::new(b"zz\r\n".to_vec());
        assert!(dechunk(&mut bad).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("web-1.a_b"), "web-1.a_b");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
