//! The decoders of what a NATS server sends (INFO, operation lines, header blocks), apart from
//! the socket so the fuzz target ([`crate::files::fuzzing`]) reaches every one of them. Each
//! takes bytes already bounded by the reader and answers a [`NatsError`], never a panic.

use super::NatsError;

/// Largest message accepted from the server (NATS's default max_payload).
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;

/// What we read of the server's INFO. Before TLS it arrives in plain text, so nothing in it
/// is trusted for security: it only decides whether to go on (see `Conn::connect`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ServerInfo {
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub max_payload: Option<u64>,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub tls_available: bool,
    #[serde(default)]
    pub auth_required: bool,
    /// What an NKey signs.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// A message received on our inbox.
#[derive(Debug)]
pub(crate) struct Msg {
    pub subject: String,
    /// The status of a header-only reply (`NATS/1.0 404 ...`).
    pub status: Option<u16>,
    pub description: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One operation line from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpLine {
    /// `MSG`/`HMSG`: the subject, then how many bytes follow (headers first), without the CRLF.
    Msg {
        subject: String,
        header_len: usize,
        total: usize,
    },
    Ping,
    Pong,
    Err(String),
    /// INFO updates, +OK: nothing to do.
    Other,
}

/// Parses the first line the server sends: `INFO {json}`.
pub(crate) fn parse_info(line: &str) -> Result<ServerInfo, NatsError> {
    let json = line
        .strip_prefix("INFO ")
        .or_else(|| line.strip_prefix("info "))
        .ok_or_else(|| NatsError::Protocol(format!("expected INFO, got {:?}", clip(line))))?;
    serde_json::from_str(json).map_err(|e| NatsError::Protocol(format!("INFO is not JSON: {e}")))
}

/// Parses an operation line (without its CRLF).
pub(crate) fn parse_op(line: &str) -> Result<OpLine, NatsError> {
    let mut parts = line.split_ascii_whitespace();
    let op = parts.next().unwrap_or("").to_ascii_uppercase();
    let args: Vec<&str> = parts.collect();
    let bad = |what: &str| NatsError::Protocol(format!("{what}: {:?}", clip(line)));
    match op.as_str() {
        "MSG" | "HMSG" => {
            let with_headers = op == "HMSG";
            let sizes = if with_headers { 2 } else { 1 };
            if args.len() != 2 + sizes && args.len() != 3 + sizes {
                return Err(bad("malformed message line"));
            }
            let num = |s: &str| s.parse::<usize>().map_err(|_| bad("bad size"));
            let total = num(args[args.len() - 1])?;
            let header_len = if with_headers {
                num(args[args.len() - 2])?
            } else {
                0
            };
            if total > MAX_PAYLOAD || header_len > total {
                return Err(NatsError::Protocol(format!(
                    "message of {total} bytes (headers {header_len}) is over the {MAX_PAYLOAD}-byte limit or inconsistent"
                )));
            }
            Ok(OpLine::Msg {
                subject: args[0].to_string(),
                header_len,
                total,
            })
        }
        "PING" => Ok(OpLine::Ping),
        "PONG" => Ok(OpLine::Pong),
        "+OK" | "INFO" => Ok(OpLine::Other),
        "-ERR" => Ok(OpLine::Err(err_text(line))),
        _ => Err(bad("unknown operation")),
    }
}

/// Parses a `NATS/1.0[ status [description]]` header block into `msg`.
pub(crate) fn parse_headers(block: &[u8], msg: &mut Msg) -> Result<(), NatsError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| NatsError::Protocol("message headers are not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let status = first
        .strip_prefix("NATS/1.0")
        .ok_or_else(|| NatsError::Protocol(format!("bad header version {:?}", clip(first))))?
        .trim();
    if !status.is_empty() {
        let (code, description) = status.split_once(' ').unwrap_or((status, ""));
        msg.status = Some(
            code.parse()
                .map_err(|_| NatsError::Protocol(format!("bad status {:?}", clip(code))))?,
        );
        msg.description = clip(description.trim()).to_string();
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| NatsError::Protocol(format!("bad header line {:?}", clip(line))))?;
        msg.headers
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(())
}

/// The text of an `-ERR 'text'` line.
pub(crate) fn err_text(line: &str) -> String {
    let text = line.get(4..).unwrap_or("").trim().trim_matches('\'');
    clip(text).to_string()
}

/// At most 200 characters of untrusted text for messages and logs.
pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Msg {
        Msg {
            subject: String::new(),
            status: None,
            description: String::new(),
            headers: Vec::new(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn header_blocks() {
        let mut msg = empty();
        parse_headers(
            b"NATS/1.0 404 Message Not Found\r\nKV-Operation: DEL\r\n\r\n",
            &mut msg,
        )
        .unwrap();
        assert_eq!(msg.status, Some(404));
        assert_eq!(msg.description, "Message Not Found");
        assert_eq!(msg.header("kv-operation"), Some("DEL"));
        assert!(parse_headers(b"HTTP/1.1 200\r\n\r\n", &mut msg).is_err());
        assert!(parse_headers(b"NATS/1.0 abc\r\n\r\n", &mut msg).is_err());
    }

    #[test]
    fn operation_lines() {
        assert_eq!(
            parse_op("HMSG _INBOX.x.1 9 12 30").unwrap(),
            OpLine::Msg {
                subject: "_INBOX.x.1".into(),
                header_len: 12,
                total: 30
            }
        );
        assert_eq!(
            parse_op("msg a 1 reply 5").unwrap(),
            OpLine::Msg {
                subject: "a".into(),
                header_len: 0,
                total: 5
            }
        );
        assert_eq!(
            parse_op("-ERR 'Authorization Violation'").unwrap(),
            OpLine::Err("Authorization Violation".into())
        );
        for bad in ["MSG a 1", "HMSG a 1 40 30", "MSG a 1 99999999", "WHAT", ""] {
            assert!(parse_op(bad).is_err(), "{bad:?}");
        }
        let info =
            parse_info(r#"INFO {"tls_required":true,"nonce":"abc","headers":true}"#).unwrap();
        assert!(info.tls_required && info.headers && !info.auth_required);
        assert_eq!(info.nonce.as_deref(), Some("abc"));
        assert!(parse_info("INFO {").is_err());
        assert!(parse_info("PING").is_err());
    }
}
