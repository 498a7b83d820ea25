//! The restart policy: `no`, `on-failure[:N]`, `always` (Docker's spelling).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When the supervisor boots the enclave again after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it failed (the VM was killed, crashed, panicked, or stopped heart-beating, or its
    /// main service exited non-zero), at most `max` times when given.
    OnFailure {
        /// Restart limit.
        max: Option<u32>,
    },
    /// Whenever it ends, unless it was stopped.
    Always,
}

/// How an enclave run ended, as the restart policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The enclave powered off by itself, its main service having exited 0 (or without a
    /// report of it).
    Clean,
    /// The enclave powered off by itself after its main service exited non-zero or was killed
    /// by a signal (Docker's on-failure case).
    MainFailed,
    /// It was killed or crashed.
    Failed,
    /// `stop` asked for it.
    Stopped,
    /// The boot was refused (the EIF is not the one measured at `run`): booting again would be
    /// refused again, so no policy restarts it.
    Refused,
}

impl RestartPolicy {
    /// Whether to boot again after `ending`, `restarts` restarts so far.
    pub fn should_restart(&self, ending: Ending, restarts: u32) -> bool {
        match (self, ending) {
            (_, Ending::Stopped | Ending::Refused) | (RestartPolicy::No, _) => false,
            (RestartPolicy::Always, _) => true,
            (RestartPolicy::OnFailure { max }, Ending::Failed | Ending::MainFailed) => {
                max.is_none_or(|m| restarts < m)
            }
            (RestartPolicy::OnFailure { .. }, Ending::Clean) => false,
        }
    }

    /// The pause before restart number `restarts + 1`: 0.5 s doubling, at most 8 s.
    pub fn backoff(restarts: u32) -> Duration {
        Duration::from_millis(500u64 << restarts.min(4))
    }
}

/// A malformed policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart policy {0:?}: expected no, on-failure, on-failure:N or always")]
pub struct PolicyParseError(String);

impl FromStr for RestartPolicy {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PolicyParseError(s.to_owned());
        match s {
            "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
            _ => {
                let n = s.strip_prefix("on-failure:").ok_or_else(err)?;
                let max = n.parse().map_err(|_| err())?;
                Ok(RestartPolicy::OnFailure { max: Some(max) })
            }
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for s in ["no", "always", "on-failure", "on-failure:3"] {
            assert_eq!(s.parse::<RestartPolicy>().unwrap().to_string(), s);
        }
        for bad in ["", "on-failure:", "on-failure:-1", "sometimes", "always:2"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_decisions() {
        use Ending::*;
        let of2 = RestartPolicy::OnFailure { max: Some(2) };
        assert!(of2.should_restart(Failed, 0));
        assert!(of2.should_restart(Failed, 1));
        assert!(!of2.should_restart(Failed, 2));
        assert!(!of2.should_restart(Clean, 0));
        assert!(of2.should_restart(MainFailed, 1));
        assert!(!of2.should_restart(MainFailed, 2));
        assert!(RestartPolicy::Always.should_restart(MainFailed, 5));
        assert!(!RestartPolicy::No.should_restart(MainFailed, 0));
        assert!(!of2.should_restart(Stopped, 0));
        assert!(RestartPolicy::Always.should_restart(Clean, 100));
        assert!(!RestartPolicy::Always.should_restart(Stopped, 0));
        assert!(!RestartPolicy::Always.should_restart(Refused, 0));
        assert!(!RestartPolicy::OnFailure { max: None }.should_restart(Refused, 0));
        assert!(!RestartPolicy::No.should_restart(Failed, 0));
        assert_eq!(RestartPolicy::backoff(0), Duration::from_millis(500));
        assert_eq!(RestartPolicy::backoff(30), Duration::from_secs(8));
    }
}
