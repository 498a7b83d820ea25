//! The health check's state, shared between the supervisor's loop (which runs the checks, see
//! `supervisor/health.rs`) and the control server (which answers `health` with it).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use enclave_proto::wire::{HealthReport, HealthStatus, MAX_HEALTH_DETAIL};

use crate::say;

#[derive(Debug)]
struct State {
    status: HealthStatus,
    failing_streak: u32,
    last: Option<String>,
    checked_at: Option<Instant>,
}

/// Cloneable handle on the health state.
#[derive(Debug, Clone)]
pub struct HealthBoard(Arc<Mutex<State>>);

impl HealthBoard {
    /// A board for an enclave with a health check (`starting`) or without (`none`).
    pub fn new(has_check: bool) -> Self {
        let status = if has_check {
            HealthStatus::Starting
        } else {
            HealthStatus::None
        };
        Self(Arc::new(Mutex::new(State {
            status,
            failing_streak: 0,
            last: None,
            checked_at: None,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, as `health` answers it.
    pub fn report(&self) -> HealthReport {
        let s = self.state();
        HealthReport {
            status: s.status,
            failing_streak: s.failing_streak,
            last: s.last.clone(),
            checked_ms_ago: s
                .checked_at
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Records a check's result. `counts`: a failure counts toward `retries` (not in the start
    /// period before the first success). Logs each change of status.
    pub fn record(&self, ok: bool, detail: String, retries: u32, counts: bool, now: Instant) {
        let mut s = self.state();
        let before = s.status;
        if ok {
            s.failing_streak = 0;
            s.status = HealthStatus::Healthy;
        } else if counts || s.status == HealthStatus::Healthy {
            s.failing_streak = s.failing_streak.saturating_add(1);
            if s.failing_streak >= retries {
                s.status = HealthStatus::Unhealthy;
            }
        }
        let mut detail = detail;
        if detail.len() > MAX_HEALTH_DETAIL {
            let mut end = MAX_HEALTH_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        s.last = Some(detail);
        s.checked_at = Some(now);
        if s.status != before {
            say!(
                "health: {} ({}; {} failing in a row)",
                s.status,
                s.last.as_deref().unwrap_or(""),
                s.failing_streak
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_then_unhealthy_and_a_success_resets() {
        let b = HealthBoard::new(true);
        let now = Instant::now();
        assert_eq!(b.report().status, HealthStatus::Starting);
        // In the start period failures do not count.
        b.record(false, "exit 1".into(), 2, false, now);
        b.record(false, "exit 1".into(), 2, false, now);
        assert_eq!(b.report().status, HealthStatus::Starting);
        assert_eq!(b.report().failing_streak, 0);
        b.record(false, "exit 1".into(), 2, true, now);
        assert_eq!(b.report().status, HealthStatus::Starting);
        b.record(false, "exit 2".into(), 2, true, now);
        let r = b.report();
        assert_eq!((r.status, r.failing_streak), (HealthStatus::Unhealthy, 2));
        assert_eq!(r.last.as_deref(), Some("exit 2"));
        b.record(true, "exit 0".into(), 2, true, now);
        assert_eq!(b.report().status, HealthStatus::Healthy);
        // Once healthy, a failure counts even in the start period.
        b.record(false, "x".repeat(1000), 1, false, now);
        let r = b.report();
        assert_eq!(r.status, HealthStatus::Unhealthy);
        assert_eq!(r.last.unwrap().len(), MAX_HEALTH_DETAIL);
        assert_eq!(HealthBoard::new(false).report().status, HealthStatus::None);
    }
}
