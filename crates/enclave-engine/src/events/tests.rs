use super::*;
use crate::state::tests::record as rec;

fn event(kind: EventKind, n: u32) -> Event {
    Event::new(kind, &rec(&"e".repeat(64), "web")).with("n", n)
}

#[test]
fn appended_events_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        append(dir.path(), &event(kind, i as u32)).unwrap();
    }
    let back = read_all(dir.path());
    let kinds: Vec<EventKind> = back.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, EventKind::ALL);
    assert_eq!(back[3].attributes["n"], "3");
    let mode = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // The names are the log's.
    let line = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    assert!(line.contains(r#""type":"health_status""#), "{line}");
}

#[test]
fn a_torn_line_and_unknown_fields_are_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &event(EventKind::Create, 0)).unwrap();
    let mut f = open_private(&dir.path().join(LOG_FILE), true).unwrap();
    f.write_all(
        b"{\"time\":\"x\",\"type\":\"boot\",\"id\":\"a\",\"name\":\"b\",\"evil\":1}\n{\"time\":",
    )
    .unwrap();
    let back = read_all(dir.path());
    assert_eq!(back.len(), 1);
    // A follower does not consume the unfinished line; once it is finished, it reads it.
    let mut follower = Follower::at_end(dir.path());
    assert!(follower.poll().is_empty());
    f.write_all(b"\"t\"}\n").unwrap();
    append(dir.path(), &event(EventKind::Boot, 1)).unwrap();
    let new = follower.poll();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].kind, EventKind::Boot);
}

#[test]
fn the_log_rotates_and_both_generations_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(64 * 1024);
    let mut follower = Follower::at_end(dir.path());
    let mut written = 0;
    while std::fs::metadata(dir.path().join(OLD_LOG_FILE)).is_err() {
        append(
            dir.path(),
            &event(EventKind::Die, written).with("why", &big),
        )
        .unwrap();
        written += 1;
        assert!(written < 200, "never rotated");
    }
    let back = read_all(dir.path());
    assert_eq!(back.len(), written as usize);
    assert_eq!(
        back.last().unwrap().attributes["n"],
        (written - 1).to_string()
    );
    assert!(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() < MAX_LOG_BYTES);
    // After the rotation the follower reads the new generation from its start.
    follower.poll();
    append(dir.path(), &event(EventKind::Stop, 999)).unwrap();
    let new = follower.poll();
    assert_eq!(new.last().unwrap().kind, EventKind::Stop);
}

#[test]
fn appends_from_many_threads_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let e = event(EventKind::Heartbeat, t * 100 + i).with("pad", "y".repeat(3000));
                    append(&dir, &e).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    assert_eq!(text.lines().count(), 400);
    assert_eq!(read_all(dir.path()).len(), 400);
}

#[test]
fn kinds_parse_by_name() {
    assert_eq!(
        "health_status".parse::<EventKind>(),
        Ok(EventKind::HealthStatus)
    );
    assert_eq!("oom".parse::<EventKind>(), Ok(EventKind::Oom));
    let err = "pause".parse::<EventKind>().unwrap_err();
    assert!(err.contains("one of create, boot"), "{err}");
}

#[test]
fn a_symlinked_log_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join(LOG_FILE)).unwrap();
    assert!(append(dir.path(), &event(EventKind::Create, 0)).is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
}
