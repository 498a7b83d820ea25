//! `healthcheck:`: how the enclave tells it is healthy, like Docker's HEALTHCHECK. enclave-init
//! runs the check inside the enclave (the command as the image's user, or a TCP/HTTP request to
//! 127.0.0.1), so the host can ask for the result but never choose what runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// The health check: exactly one of `command`, `tcp` or `http`, with Docker's timing fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(extend("oneOf" = [{"required": ["command"]}, {"required": ["tcp"]}, {"required": ["http"]}]))
)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckSpec {
    /// Healthy when this argv exits 0 within `timeout` (run as the main service's user, with
    /// its environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Healthy when 127.0.0.1:PORT inside the enclave accepts a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    /// Healthy when `GET http://127.0.0.1:PORT/PATH` inside the enclave answers 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Time between two checks (`30s`, `500ms`, `2m`; Docker's default 30s).
    #[serde(default = "default_interval")]
    pub interval: HealthDuration,
    /// Longest a check may take before it counts as failed (default 30s).
    #[serde(default = "default_interval")]
    pub timeout: HealthDuration,
    /// Consecutive failures that make the enclave unhealthy (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failures in this time after the boot do not count (a success still counts; default 0s).
    #[serde(default)]
    pub start_period: HealthDuration,
}

/// An HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The port on 127.0.0.1 inside the enclave.
    pub port: u16,
    /// The path (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_interval() -> HealthDuration {
    HealthDuration(Duration::from_secs(30))
}

fn default_retries() -> u32 {
    3
}

fn default_path() -> String {
    "/".into()
}

/// A duration written as a number and a unit: `500ms`, `30s`, `2m`, `1h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthDuration(pub Duration);

impl std::str::FromStr for HealthDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as 500ms, 30s, 2m or 1h"))?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => None,
        }
        .ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 30s, 2m or 1h"))?;
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl std::fmt::Display for HealthDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HealthDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HealthDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The shortest interval and timeout: a check every few milliseconds would be a busy loop.
pub const MIN_HEALTH_DURATION: Duration = Duration::from_millis(100);

impl HealthcheckSpec {
    /// Checks that exactly one kind of check is given and the times make sense.
    pub fn validate(&self) -> Result<(), SpecError> {
        let kinds = [
            self.command.is_some(),
            self.tcp.is_some(),
            self.http.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(SpecError::Invalid(
                "healthcheck needs exactly one of `command`, `tcp` or `http`".into(),
            ));
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            return Err(SpecError::Invalid("healthcheck: `command` is empty".into()));
        }
        if self.tcp == Some(0) || self.http.as_ref().is_some_and(|h| h.port == 0) {
            return Err(SpecError::Invalid("healthcheck: port 0".into()));
        }
        if let Some(h) = &self.http {
            if !h.path.starts_with('/')
                || h.path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(SpecError::Invalid(format!(
                    "healthcheck: http path {:?} must start with / and have no spaces",
                    h.path
                )));
            }
        }
        for (name, d) in [("interval", self.interval), ("timeout", self.timeout)] {
            if d.0 < MIN_HEALTH_DURATION {
                return Err(SpecError::Invalid(format!(
                    "healthcheck: {name} {d} is under the minimum of 100ms"
                )));
            }
        }
        if self.retries == 0 {
            return Err(SpecError::Invalid(
                "healthcheck: retries must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HealthcheckSpec, String> {
        let h: HealthcheckSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        h.validate().map_err(|e| e.to_string())?;
        Ok(h)
    }

    #[test]
    fn docker_defaults_and_durations() {
        let h = parse(r#"{"tcp": 8080}"#).unwrap();
        assert_eq!(h.interval.0, Duration::from_secs(30));
        assert_eq!(h.timeout.0, Duration::from_secs(30));
        assert_eq!((h.retries, h.start_period.0), (3, Duration::ZERO));
        let h =
            parse(r#"{"http": {"port": 80}, "interval": "500ms", "start_period": "2m"}"#).unwrap();
        assert_eq!(h.http.as_ref().unwrap().path, "/");
        assert_eq!(h.interval.0, Duration::from_millis(500));
        assert_eq!(h.start_period.0, Duration::from_secs(120));
        // The measured form reads back the same.
        let again: HealthcheckSpec =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(again, h);
    }

    #[test]
    fn bad_checks_are_refused_with_the_reason() {
        for (json, want) in [
            (r#"{}"#, "exactly one"),
            (r#"{"tcp": 1, "command": ["/bin/true"]}"#, "exactly one"),
            (r#"{"command": []}"#, "empty"),
            (r#"{"tcp": 0}"#, "port 0"),
            (
                r#"{"http": {"port": 80, "path": "x y"}}"#,
                "must start with /",
            ),
            (r#"{"tcp": 1, "interval": "10ms"}"#, "minimum"),
            (r#"{"tcp": 1, "timeout": "5 s"}"#, "not a duration"),
            (
                r#"{"tcp": 1, "interval": "99999999999999999h"}"#,
                "not a duration",
            ),
            (r#"{"tcp": 1, "retries": 0}"#, "at least 1"),
            (r#"{"tcp": 1, "every": "1s"}"#, "unknown field"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
