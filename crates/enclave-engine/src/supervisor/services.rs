//! Service events, from what the supervisor's health monitor sees every
//! [`crate::health::POLL_INTERVAL`]: enclave-init does not push its services' changes to the
//! host, so the supervisor compares two looks. A start, an end or a restart between two looks
//! is still seen (the state differs, or the restart count grew); several restarts between two
//! looks are one `service_restart` event carrying the new count, and a restart asked for
//! (`services restart`) shows as a running service with a new pid. A kill by the OOM killer
//! (the service's `oom_kills` grew) is an `oom` event before the restart or exit it caused.

use enclave_proto::wire::{ExitStatus, ServiceState, ServiceStatus};

use crate::events::{Event, EventKind};
use crate::state::EnclaveRecord;

fn running(s: ServiceState) -> bool {
    matches!(s, ServiceState::Starting | ServiceState::Running)
}

fn ended(s: ServiceState) -> bool {
    matches!(
        s,
        ServiceState::Exited | ServiceState::Failed | ServiceState::Stopped
    )
}

fn state_name(s: ServiceState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the look `services` shows `name` ended, its last process by the OOM killer
/// (a version-4 enclave-init counts those).
pub fn ended_by_oom(services: &[ServiceStatus], name: &str) -> bool {
    services.iter().any(|s| {
        s.name == name
            && ended(s.state)
            && s.oom_kills > 0
            && s.last_exit == Some(ExitStatus::Signal(nix::sys::signal::Signal::SIGKILL as i32))
    })
}

/// The events between the look `before` (empty: the first look of this boot) and `now`.
pub fn changes(rec: &EnclaveRecord, before: &[ServiceStatus], now: &[ServiceStatus]) -> Vec<Event> {
    let mut events = Vec::new();
    for s in now {
        let prev = before.iter().find(|p| p.name == s.name);
        let was_running = prev.is_some_and(|p| running(p.state));
        let was_ended = prev.is_some_and(|p| ended(p.state));
        let event = |kind| Event::new(kind, rec).with("service", &s.name);
        // By its policy (the count grew) or asked to (`services restart`: a new process).
        let restarted = prev.is_some_and(|p| {
            s.restarts > p.restarts || (was_running && running(s.state) && p.pid != s.pid)
        });
        if s.oom_kills > prev.map_or(0, |p| p.oom_kills) {
            events.push(event(EventKind::Oom).with("oom_kills", s.oom_kills));
        }
        if restarted {
            events.push(event(EventKind::ServiceRestart).with("restarts", s.restarts));
        } else if running(s.state) && !was_running {
            let mut e = event(EventKind::ServiceStart);
            if let Some(pid) = s.pid {
                e = e.with("pid", pid);
            }
            events.push(e);
        }
        if ended(s.state) && !was_ended {
            let mut e = event(EventKind::ServiceExit).with("state", state_name(s.state));
            match s.last_exit {
                Some(ExitStatus::Code(c)) => e = e.with("exit_code", c),
                Some(ExitStatus::Signal(n)) => e = e.with("signal", n),
                None => {}
            }
            events.push(e);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(
        name: &str,
        state: ServiceState,
        restarts: u32,
        exit: Option<ExitStatus>,
    ) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state,
            pid: running(state).then_some(42),
            restarts,
            last_exit: exit,
            since_ms: 0,
            oom_kills: 0,
        }
    }

    fn summary(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let attrs: Vec<String> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{} {}", e.kind.name(), attrs.join(","))
            })
            .collect()
    }

    #[test]
    fn starts_ends_and_restarts_between_two_looks_are_events() {
        let rec = crate::state::tests::record("0123abcd", "e");
        // The first look of a boot: what runs started, what ended ended.
        let first = vec![
            svc("web", ServiceState::Running, 0, None),
            svc("once", ServiceState::Exited, 0, Some(ExitStatus::Code(0))),
            svc("dep", ServiceState::Waiting, 0, None),
        ];
        assert_eq!(
            summary(&changes(&rec, &[], &first)),
            vec![
                "service_start pid=42,service=web",
                "service_exit exit_code=0,service=once,state=exited",
            ]
        );
        // Nothing changed: nothing.
        assert!(changes(&rec, &first, &first).is_empty());
        // web restarted twice and crashed for good; dep started.
        let second = vec![
            svc("web", ServiceState::Failed, 2, Some(ExitStatus::Signal(9))),
            svc("once", ServiceState::Exited, 0, Some(ExitStatus::Code(0))),
            svc("dep", ServiceState::Starting, 0, None),
        ];
        assert_eq!(
            summary(&changes(&rec, &first, &second)),
            vec![
                "service_restart restarts=2,service=web",
                "service_exit service=web,signal=9,state=failed",
                "service_start pid=42,service=dep",
            ]
        );
        // Restarted on request between two looks: running still, another process.
        let mut third = second.clone();
        third[2].pid = Some(43);
        assert_eq!(
            summary(&changes(&rec, &second, &third)),
            vec!["service_restart restarts=0,service=dep"]
        );
    }

    #[test]
    fn an_oom_kill_comes_before_the_restart_or_exit_it_caused() {
        let rec = crate::state::tests::record("0123abcd", "e");
        let before = vec![svc("hog", ServiceState::Running, 0, None)];
        let mut restarted = svc("hog", ServiceState::Running, 1, Some(ExitStatus::Signal(9)));
        restarted.oom_kills = 1;
        assert_eq!(
            summary(&changes(&rec, &before, &[restarted.clone()])),
            vec![
                "oom oom_kills=1,service=hog",
                "service_restart restarts=1,service=hog"
            ]
        );
        let mut gone = svc("hog", ServiceState::Failed, 1, Some(ExitStatus::Signal(9)));
        gone.oom_kills = 2;
        let after = vec![gone];
        assert_eq!(
            summary(&changes(&rec, &[restarted], &after)),
            vec![
                "oom oom_kills=2,service=hog",
                "service_exit service=hog,signal=9,state=failed"
            ]
        );
        assert!(ended_by_oom(&after, "hog"));
        // Killed by someone else: a SIGKILL, no oom.
        let killed = vec![svc(
            "hog",
            ServiceState::Exited,
            0,
            Some(ExitStatus::Signal(9)),
        )];
        assert_eq!(
            summary(&changes(&rec, &before, &killed)),
            vec!["service_exit service=hog,signal=9,state=exited"]
        );
        assert!(!ended_by_oom(&killed, "hog"));
    }
}
