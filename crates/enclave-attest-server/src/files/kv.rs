//! Publishing file hashes and proofs to a NATS JetStream key-value bucket.
//!
//! A bucket `B` is the stream `KV_B` on subjects `$KV.B.>` (NATS ADR-8); a put is a publish to
//! `$KV.B.<key>` acknowledged by JetStream, a get a direct get of the last message on the key's
//! subject. The enclave never writes a bare KV delete: a removed file gets a signed tombstone
//! record ([`super::FileRecord`]) like any other change.

use std::time::{Duration, Instant};

use enclave_attest::files::KvEntry;
use enclave_attest::vrf::{Epoch, PublicKey};
use serde::Deserialize;

use super::nats::{Conn, Msg, NatsError, NatsOptions};
use super::{kv_key, Change, FileRecord, STARTUP_DOCUMENT_KEY};

/// Longest subject we publish to: the server refuses control lines over 4 KiB by default.
const MAX_SUBJECT: usize = 3 * 1024;
/// Reply wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait before reconnecting after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

/// A JetStream API reply or publish acknowledgement: either an error or the fields we read.
#[derive(Deserialize)]
struct ApiReply {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: Option<u64>,
}

/// A publisher to (and reader of) one KV bucket, reconnecting with exponential backoff after
/// failures.
pub struct NatsPublisher {
    options: NatsOptions,
    conn: Option<Conn>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPublisher")
            .field("addr", &self.options.url.addr)
            .field("bucket", &self.options.bucket)
            .field("tls", &self.options.tls.is_some())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl NatsPublisher {
    /// Connects as `options` say (TLS and credentials when set) and makes sure the bucket
    /// exists, creating it (history 1, file storage) when it does not.
    pub fn connect(options: &NatsOptions) -> Result<NatsPublisher, NatsError> {
        let mut publisher = NatsPublisher {
            options: options.clone(),
            conn: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
        };
        publisher.conn = Some(publisher.establish()?);
        Ok(publisher)
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.options.bucket
    }

    /// Puts `value` under `key`; returns the stream sequence number JetStream assigned.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<u64, NatsError> {
        let subject = self.key_subject(key)?;
        self.with_conn(|conn| ack(conn.request(&subject, &[], value, REQUEST_TIMEOUT)?))
    }

    /// The last entry under `key` (a value, or a bare delete or purge marker someone wrote),
    /// `None` when there is none.
    pub fn get(&mut self, key: &str) -> Result<Option<KvEntry>, NatsError> {
        let subject = format!(
            "$JS.API.DIRECT.GET.KV_{}.{}",
            self.options.bucket,
            self.key_subject(key)?
        );
        self.with_conn(|conn| {
            let msg = conn.request(&subject, &[], &[], REQUEST_TIMEOUT)?;
            match msg.status {
                Some(404) => Ok(None),
                Some(code) if code >= 300 => Err(status_error(&msg, code)),
                _ => Ok(Some(match msg.header("KV-Operation") {
                    Some("DEL") => KvEntry::Delete,
                    Some("PURGE") => KvEntry::Purge,
                    _ => KvEntry::Value(msg.payload),
                })),
            }
        })
    }

    /// Publishes the record of `change` (proven under `key` in boot `epoch`) under the key of
    /// its path.
    pub(crate) fn publish(
        &mut self,
        change: &Change,
        epoch: Epoch,
        key: &PublicKey,
    ) -> Result<u64, NatsError> {
        let record = FileRecord::of_change(change, epoch, key);
        let value = serde_json::to_vec(&record).map_err(NatsError::Encode)?;
        self.put(&kv_key(change.path()), &value)
    }

    /// Puts the start-up document (whose hash is the epoch of every record) under
    /// [`STARTUP_DOCUMENT_KEY`], so a reader of the bucket can verify it and check records.
    pub fn put_startup_document(&mut self, document: &[u8]) -> Result<u64, NatsError> {
        self.put(STARTUP_DOCUMENT_KEY, document)
    }

    fn key_subject(&self, key: &str) -> Result<String, NatsError> {
        let valid = !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && !key.contains("..")
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=/.".contains(&b));
        let subject = format!("$KV.{}.{key}", self.options.bucket);
        if !valid || subject.len() > MAX_SUBJECT {
            return Err(NatsError::BadKey(key.chars().take(64).collect()));
        }
        Ok(subject)
    }

    /// Runs `op` on the connection, (re)connecting first when there is none. A connection that
    /// breaks is dropped; if it was an old one (the server may have restarted), `op` is tried
    /// once more on a fresh connection.
    fn with_conn<T>(
        &mut self,
        op: impl Fn(&mut Conn) -> Result<T, NatsError>,
    ) -> Result<T, NatsError> {
        let reused = self.conn.is_some();
        match self.try_once(&op) {
            Err(e) if reused && e.breaks_connection() => self.try_once(&op),
            other => other,
        }
    }

    fn try_once<T>(
        &mut self,
        op: &impl Fn(&mut Conn) -> Result<T, NatsError>,
    ) -> Result<T, NatsError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.reconnect()?,
        };
        let result = op(self.conn.insert(conn));
        if let Err(e) = &result {
            if e.breaks_connection() {
                tracing::warn!(addr = %self.options.url.addr, error = %e, "NATS connection lost");
                self.conn = None;
            }
        }
        result
    }

    fn reconnect(&mut self) -> Result<Conn, NatsError> {
        let now = Instant::now();
        if let Some(at) = self.retry_at.filter(|at| *at > now) {
            return Err(NatsError::Backoff(at - now));
        }
        match self.establish() {
            Ok(conn) => {
                tracing::info!(
                    addr = %self.options.url.addr,
                    bucket = %self.options.bucket,
                    tls = self.options.tls.is_some(),
                    "NATS connected"
                );
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
                Ok(conn)
            }
            Err(e) => {
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(e)
            }
        }
    }

    fn establish(&self) -> Result<Conn, NatsError> {
        let mut conn = Conn::connect(&self.options, REQUEST_TIMEOUT)?;
        self.ensure_bucket(&mut conn)?;
        Ok(conn)
    }

    /// Creates the bucket's stream unless it exists (stream config as NATS's own clients
    /// create a KV bucket, ADR-8).
    fn ensure_bucket(&self, conn: &mut Conn) -> Result<(), NatsError> {
        let bucket = &self.options.bucket;
        let stream = format!("KV_{bucket}");
        let info = conn.request(
            &format!("$JS.API.STREAM.INFO.{stream}"),
            &[],
            &[],
            REQUEST_TIMEOUT,
        )?;
        match api_reply(&info)?.error {
            None => return Ok(()),
            Some(e) if e.code == 404 => {}
            Some(e) => return Err(api_error(e)),
        }
        let config = serde_json::json!({
            "name": stream,
            "subjects": [format!("$KV.{bucket}.>")],
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msgs_per_subject": 1,
            "max_msg_size": -1,
            "storage": "file",
            "discard": "new",
            "num_replicas": 1,
            "duplicate_window": 120_000_000_000u64,
            "allow_rollup_hdrs": true,
            "deny_delete": true,
            "deny_purge": false,
            "allow_direct": true,
            "mirror_direct": false,
        });
        let created = conn.request(
            &format!("$JS.API.STREAM.CREATE.{stream}"),
            &[],
            config.to_string().as_bytes(),
            REQUEST_TIMEOUT,
        )?;
        match api_reply(&created)?.error {
            None => {
                tracing::info!(bucket = %bucket, "NATS KV bucket created");
                Ok(())
            }
            Some(e) => Err(api_error(e)),
        }
    }
}

fn api_reply(msg: &Msg) -> Result<ApiReply, NatsError> {
    if let Some(code) = msg.status.filter(|c| *c >= 300) {
        return Err(status_error(msg, code));
    }
    serde_json::from_slice(&msg.payload)
        .map_err(|e| NatsError::Protocol(format!("JetStream reply is not JSON: {e}")))
}

/// A publish acknowledgement: the sequence number, or JetStream's error.
fn ack(msg: Msg) -> Result<u64, NatsError> {
    let reply = api_reply(&msg)?;
    if let Some(e) = reply.error {
        return Err(api_error(e));
    }
    reply
        .seq
        .ok_or_else(|| NatsError::Protocol("publish acknowledgement without seq".into()))
}

fn api_error(e: ApiError) -> NatsError {
    NatsError::JetStream {
        code: e.code,
        err_code: e.err_code,
        description: e.description.chars().take(200).collect(),
    }
}

fn status_error(msg: &Msg, code: u16) -> NatsError {
    NatsError::JetStream {
        code,
        err_code: 0,
        description: msg.description.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding};

    #[test]
    fn keys_are_subject_tokens_and_reversible() {
        for path in ["/srv/data/a.txt", "/ü/ ?*>", "/a/b/c/d"] {
            let key = kv_key(path);
            assert!(key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let back = Base64UrlUnpadded::decode_vec(&key).unwrap();
            assert_eq!(back, path.as_bytes());
            assert!(key.starts_with('L'), "an absolute path's key starts with L");
            assert_ne!(key, STARTUP_DOCUMENT_KEY);
        }
    }
}
