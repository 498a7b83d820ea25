//! Restart policy, backoff and the supervisor's timings: the pure decisions, kept apart from
//! the processes they apply to so that they can be tested directly.

use std::fmt;
use std::time::Duration;

use enclave_spec::RestartPolicy;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal (this number) killed it.
    Signal(i32),
}

impl Exit {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Whether `policy` asks for a restart after `exit`.
pub fn wants_restart(policy: RestartPolicy, exit: Exit) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => !exit.success(),
        RestartPolicy::Always => true,
    }
}

/// What to do with a service whose process just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Leave it ended: the policy does not restart it.
    Done,
    /// Give up: it already used its `max_restarts`.
    GiveUp,
    /// Start it again after `delay`; this will be restart number `attempt` (from 1).
    Restart {
        /// Restart number, counted since the last stable run.
        attempt: u32,
        /// Backoff before the start.
        delay: Duration,
    },
}

/// Supervisor timings. The defaults suit an enclave; the environment of init (which on a real
/// enclave comes from the measured kernel command line) can shorten them, which the tests do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// First restart delay; doubles with each further restart.
    pub backoff_base: Duration,
    /// Longest restart delay.
    pub backoff_cap: Duration,
    /// A run at least this long resets the restart count (a service that crashes once a day
    /// should not be given up on after `max_restarts` days).
    pub stable_run: Duration,
    /// Time between SIGTERM and SIGKILL when stopping a service or shutting down.
    pub grace: Duration,
    /// Time between two readiness checks.
    pub ready_interval: Duration,
    /// After this long without being ready, a warning is logged and checks slow down.
    pub ready_timeout: Duration,
    /// Longest a readiness command may run before it is killed and counted as "not ready".
    pub probe_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            stable_run: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            ready_interval: Duration::from_millis(100),
            ready_timeout: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// Environment variables overriding [`Timings`], in milliseconds.
pub const ENV_GRACE_MS: &str = "ENCLAVE_INIT_GRACE_MS";
/// See [`ENV_GRACE_MS`].
pub const ENV_BACKOFF_MS: &str = "ENCLAVE_INIT_BACKOFF_MS";
/// See [`ENV_GRACE_MS`].
pub const ENV_BACKOFF_MAX_MS: &str = "ENCLAVE_INIT_BACKOFF_MAX_MS";
/// See [`ENV_GRACE_MS`].
pub const ENV_READY_TIMEOUT_MS: &str = "ENCLAVE_INIT_READY_TIMEOUT_MS";

impl Timings {
    /// The defaults, overridden by the `ENCLAVE_INIT_*_MS` variables found through `get`
    /// (unparsable values are ignored).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let ms = |name: &str| {
            get(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let d = Self::default();
        Self {
            grace: ms(ENV_GRACE_MS).unwrap_or(d.grace),
            backoff_base: ms(ENV_BACKOFF_MS).unwrap_or(d.backoff_base),
            backoff_cap: ms(ENV_BACKOFF_MAX_MS).unwrap_or(d.backoff_cap),
            ready_timeout: ms(ENV_READY_TIMEOUT_MS).unwrap_or(d.ready_timeout),
            ..d
        }
    }

    /// [`from_lookup`](Self::from_lookup) on init's own environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Backoff before restart number `attempt` (from 1): base, 2×base, 4×base, … up to the cap.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_cap)
            .min(self.backoff_cap)
    }

    /// Decides what follows the end of a process that ran for `ran`, after `restarts` restarts.
    pub fn decide(
        &self,
        policy: RestartPolicy,
        max_restarts: u32,
        restarts: u32,
        exit: Exit,
        ran: Duration,
    ) -> Decision {
        if !wants_restart(policy, exit) {
            return Decision::Done;
        }
        let restarts = if ran >= self.stable_run { 0 } else { restarts };
        if restarts >= max_restarts {
            return Decision::GiveUp;
        }
        let attempt = restarts + 1;
        Decision::Restart {
            attempt,
            delay: self.backoff(attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RestartPolicy::*;

    #[test]
    fn policies() {
        assert!(!wants_restart(No, Exit::Code(1)));
        assert!(wants_restart(OnFailure, Exit::Code(1)));
        assert!(wants_restart(OnFailure, Exit::Signal(9)));
        assert!(!wants_restart(OnFailure, Exit::Code(0)));
        assert!(wants_restart(Always, Exit::Code(0)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = Timings::default();
        let ms: Vec<u128> = (1..=9).map(|a| t.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert_eq!(t.backoff(200), t.backoff_cap);
    }

    #[test]
    fn max_restarts_bounds_the_runs() {
        // on-failure, max_restarts 2, always failing: runs 3 times in all.
        let t = Timings::default();
        let quick = Duration::from_millis(5);
        let mut restarts = 0;
        let mut runs = 1;
        while let Decision::Restart { attempt, .. } =
            t.decide(OnFailure, 2, restarts, Exit::Code(1), quick)
        {
            restarts = attempt;
            runs += 1;
        }
        assert_eq!(runs, 3);
        assert_eq!(
            t.decide(OnFailure, 2, 2, Exit::Code(1), quick),
            Decision::GiveUp
        );
        assert_eq!(
            t.decide(OnFailure, 0, 0, Exit::Code(1), quick),
            Decision::GiveUp
        );
        assert_eq!(t.decide(No, 5, 0, Exit::Code(1), quick), Decision::Done);
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        let t = Timings::default();
        let d = t.decide(Always, 2, 2, Exit::Code(0), t.stable_run);
        assert_eq!(
            d,
            Decision::Restart {
                attempt: 1,
                delay: t.backoff_base
            }
        );
    }

    #[test]
    fn timings_come_from_the_environment() {
        let t = Timings::from_lookup(|k| match k {
            ENV_GRACE_MS => Some("250".into()),
            ENV_BACKOFF_MS => Some("junk".into()),
            _ => None,
        });
        assert_eq!(t.grace, Duration::from_millis(250));
        assert_eq!(t.backoff_base, Timings::default().backoff_base);
    }

    #[test]
    fn exit_display() {
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL");
    }
}
