//! `user[:group]` resolution against the rootfs' `/etc/passwd` and `/etc/group`.
//!
//! Parsed by hand rather than with `getpwnam`: in a static glibc binary the NSS functions try to
//! dlopen modules that are not there. The rules follow Docker's, so an image behaves the same
//! in an enclave as under `docker run`:
//! - `name` must exist in /etc/passwd; a numeric uid need not (its group is then 0);
//! - the group defaults to the passwd entry's, `:group` overrides it (name or number);
//! - supplementary groups are the /etc/group entries listing the user name, plus the primary.

use std::path::Path;

use crate::error::{Error, Result};

/// Who a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (includes `gid`).
    pub groups: Vec<u32>,
    /// Home directory from /etc/passwd (`/` when unknown), for `HOME`.
    pub home: String,
}

impl Credentials {
    /// Root, with no supplementary groups besides 0.
    pub fn root() -> Self {
        Self {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".to_owned(),
        }
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// (name, gid, members) of each well-formed /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty());
        Some((f[0], f[2].parse().ok()?, members.collect()))
    })
}

/// Resolves `spec` (`user[:group]`) given the text of /etc/passwd and /etc/group.
///
/// An empty spec means root.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Credentials> {
    let err = |reason: String| Error::User {
        spec: spec.to_owned(),
        reason,
    };
    if spec.is_empty() {
        return Ok(Credentials::root());
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(err("empty user name".to_owned()));
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| err(format!("no user {user:?} in /etc/passwd")))?,
        ),
    };
    let uid = match (&entry, user.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => return Err(err(format!("no user {user:?} in /etc/passwd"))),
    };
    let gid = match grp {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some("") => return Err(err("empty group name".to_owned())),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|(name, _, _)| *name == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| err(format!("no group {g:?} in /etc/group")))?,
        },
    };
    let mut groups = vec![gid];
    if let Some(e) = &entry {
        for (_, g, members) in group_entries(group) {
            if members.contains(&e.name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_owned();
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

/// Resolves `spec` against `<root>/etc/passwd` and `<root>/etc/group` (missing files are empty).
pub fn resolve_in(spec: &str, root: &Path) -> Result<Credentials> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    resolve(spec, &read("etc/passwd"), &read("etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # comment\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          broken:line\n\
                          nohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app, other\nwheel:x:10:root\n";

    #[test]
    fn empty_is_root() {
        assert_eq!(resolve("", PASSWD, GROUP).unwrap(), Credentials::root());
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let c = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.groups, [1000, 2000]);
        assert_eq!(c.home, "/home/app");
    }

    #[test]
    fn group_override_by_name_and_number() {
        let c = resolve("app:extra", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 2000));
        assert_eq!(c.groups, [2000]);
        let c = resolve("app:42", PASSWD, GROUP).unwrap();
        assert_eq!(c.gid, 42);
        assert_eq!(c.groups, [42, 2000]);
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let c = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (4242, 0, "/"));
        let c = resolve("1000:7", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 7));
        assert_eq!(resolve("1001", PASSWD, GROUP).unwrap().home, "/");
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("no user \"nobody\""), "{e}");
        let e = resolve("app:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no group"), "{e}");
        assert!(resolve(":0", PASSWD, GROUP).is_err());
        assert!(resolve("app:", PASSWD, GROUP).is_err());
    }
}
