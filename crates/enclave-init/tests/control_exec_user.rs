//! `exec -u` in a real PID 1 whose app runs as `app` (1000:1000): the request's user is
//! resolved against the enclave's own /etc/passwd and /etc/group, gets that user's HOME, and an
//! unknown user or group is refused naming it, never run as someone else.

#[allow(dead_code)]
mod support;

use enclave_proto::wire::{ErrorCode, ExitStatus};
use support::control::{boot_as, client, exec, req};

#[test]
fn exec_runs_as_the_requested_user_and_refuses_unknown_ones() {
    let Some(b) = boot_as(&serde_json::json!({"debug": {"exec": true}}), "app") else {
        return;
    };
    let mut c = client(&b);
    let as_user = |c: &mut enclave_proto::client::Client, user: Option<&str>| {
        let mut r = req(&["sh", "-c", "echo $(id -u):$(id -g):$(id -G):$HOME"]);
        r.user = user.map(str::to_owned);
        exec(c, r, None)
    };
    let out = |o: support::control::Output| {
        assert_eq!(o.status, ExitStatus::Code(0), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    // By default, the app's user; then by name, by number, with a group by name.
    assert_eq!(
        out(as_user(&mut c, None).unwrap()),
        "1000:1000:1000 2000:/home/app\n"
    );
    assert_eq!(out(as_user(&mut c, Some("root")).unwrap()), "0:0:0:/root\n");
    assert_eq!(out(as_user(&mut c, Some("0")).unwrap()), "0:0:0:/root\n");
    assert_eq!(
        out(as_user(&mut c, Some("app:extra")).unwrap()),
        "1000:2000:2000:/home/app\n"
    );
    assert_eq!(
        out(as_user(&mut c, Some("4242:7")).unwrap()),
        "4242:7:7:/\n"
    );

    for (user, names) in [
        ("nosuch", "no user \"nosuch\""),
        ("app:nogroup", "no group \"nogroup\""),
    ] {
        let e = as_user(&mut c, Some(user)).expect_err(user);
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        assert!(e.to_string().contains(names), "{e}");
    }
    // The connection is still good after the refusals.
    assert_eq!(
        out(as_user(&mut c, None).unwrap()),
        "1000:1000:1000 2000:/home/app\n"
    );
}
