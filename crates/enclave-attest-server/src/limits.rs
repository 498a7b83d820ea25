//! The server's bounds: sizes, counts, times and rates. Everything a client can make the
//! server spend is capped here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `per_second` tokens refill continuously up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (0: never refills, only the burst is ever served).
    pub per_second: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// All of the server's limits; [`Limits::default`] is what the binary uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request's head, counted from when the connection is ready for one (so it is
    /// also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Time a response write may make no progress (the client stopped reading); then the
    /// connection is closed.
    pub write_stall_timeout: Duration,
    /// Largest request head (request line and headers); beyond: 431 and close.
    pub max_header_bytes: usize,
    /// Most request headers; beyond: 431 and close.
    pub max_headers: usize,
    /// Fresh documents (`/attestation`, `/files/vrf-key`): each is an NSM call.
    pub attestation_rate: RateLimit,
    /// File hashes and proofs (`/files/hash`, `/files/proof`): each may read a file.
    pub files_rate: RateLimit,
    /// Blocking calls (NSM, file store) running at once; more wait for a slot.
    pub max_blocking: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
            max_header_bytes: 8 * 1024,
            max_headers: 32,
            attestation_rate: RateLimit {
                per_second: 50,
                burst: 100,
            },
            files_rate: RateLimit {
                per_second: 200,
                burst: 400,
            },
            max_blocking: 4,
        }
    }
}

/// A shared token bucket (one lock, held for a few arithmetic operations).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        TokenBucket {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    /// Takes a token if one is there.
    pub(crate) fn try_take(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let refill = now.duration_since(*last).as_secs_f64() * f64::from(self.limit.per_second);
        *tokens = (*tokens + refill).min(f64::from(self.limit.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_without_refill() {
        let bucket = TokenBucket::new(RateLimit {
            per_second: 0,
            burst: 3,
        });
        assert_eq!((0..5).filter(|_| bucket.try_take()).count(), 3);
        let empty = TokenBucket::new(RateLimit {
            per_second: 1000,
            burst: 0,
        });
        assert!(!empty.try_take(), "a zero burst serves nothing");
    }
}
