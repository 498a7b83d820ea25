//! cp path rules and authorized key parsing.

use base64::Engine as _;
use enclave_proto::wire::auth::{
    parse_public_key, transcript, AuthorizedKeys, KeyError, SigningKey,
};
use enclave_proto::wire::path::{
    check_symlink, safe_relative, PathError, MAX_NAME_LEN, MAX_PATH_LEN,
};
use enclave_proto::wire::secure::ControlIdentity;
use enclave_proto::wire::{Auth, Capability, EnclaveInfo, ServerConfig, Trust};
use enclave_spec::DebugSpec;
use std::sync::Arc;

#[test]
fn safe_relative_accepts_plain_relative_paths() {
    for ok in [
        "a",
        "a/b/c",
        "dir/.hidden",
        "with space/ü",
        "a..b",
        "...",
        "a\\b",
    ] {
        let p = safe_relative(ok).unwrap();
        assert_eq!(p.as_str(), ok);
        assert!(p.under(std::path::Path::new("/dest")).starts_with("/dest"));
    }
    assert_eq!(
        safe_relative("a/b/c").unwrap().parent().unwrap().as_str(),
        "a/b"
    );
    assert_eq!(safe_relative("a").unwrap().parent(), None);
}

#[test]
fn safe_relative_refuses_escapes_and_oddities() {
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    let long_path = "a/".repeat(MAX_PATH_LEN / 2 + 1);
    type Expect = fn(&PathError) -> bool;
    let cases: Vec<(&str, Expect)> = vec![
        ("", |e| *e == PathError::Empty),
        ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
        ("..", |e| matches!(e, PathError::ParentDir(_))),
        ("a/../../b", |e| matches!(e, PathError::ParentDir(_))),
        ("a/..", |e| matches!(e, PathError::ParentDir(_))),
        ("a\0b", |e| *e == PathError::Nul),
        ("a//b", |e| matches!(e, PathError::NotCanonical(_))),
        ("./a", |e| matches!(e, PathError::NotCanonical(_))),
        ("a/", |e| matches!(e, PathError::NotCanonical(_))),
        (&long_name, |e| matches!(e, PathError::TooLong(_))),
        (&long_path, |e| matches!(e, PathError::TooLong(_))),
    ];
    for (path, expected) in cases {
        let err = safe_relative(path).unwrap_err();
        assert!(expected(&err), "{path:?}: {err:?}");
    }
}

#[test]
fn symlinks_must_stay_inside() {
    let link = |p: &str| safe_relative(p).unwrap();
    for (at, target) in [
        ("l", "f"),
        ("d/l", "../f"),
        ("d/e/l", "../../f"),
        ("d/l", "./x/y"),
        ("l", "d/"),
        ("d/l", ".."),
    ] {
        check_symlink(&link(at), target).unwrap_or_else(|e| panic!("{at} -> {target}: {e}"));
    }
    for (at, target) in [
        ("l", ".."),
        ("l", "../x"),
        ("d/l", "../../x"),
        ("l", "/etc"),
        ("l", ""),
        ("l", "a\0"),
        // `..` after a name: `a` could be a link itself.
        ("l", "a/../b"),
        ("d/l", "x/../../.."),
    ] {
        assert!(
            check_symlink(&link(at), target).is_err(),
            "{at} -> {target}"
        );
    }
}

fn openssh_line(key: &SigningKey) -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], key.verifying_key().as_bytes()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} me@laptop",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

#[test]
fn authorized_keys_parse_raw_base64_and_openssh() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let raw = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    assert_eq!(parse_public_key(&raw).unwrap(), key.verifying_key());
    assert_eq!(
        parse_public_key(&openssh_line(&key)).unwrap(),
        key.verifying_key()
    );
    for bad in [
        "",
        "ssh-rsa AAAAB3NzaC1yc2E",
        "ssh-ed25519",
        "ssh-ed25519 !!!",
        "AAAA",
        "c2hvcnQ=",
    ] {
        assert!(
            matches!(parse_public_key(bad), Err(KeyError::Format(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn server_config_follows_the_debug_spec() {
    let key = SigningKey::from_bytes(&[8; 32]);
    let supervisor = SigningKey::from_bytes(&[9; 32]);
    let enclave = EnclaveInfo {
        server: "t".into(),
        name: None,
        uptime_ms: 0,
    };
    let identity = Arc::new(ControlIdentity::generate().unwrap());
    let keys_of = |c: &ServerConfig| match &c.trust {
        Trust::Remote(t) => t.keys.clone(),
        Trust::Local => panic!("a remote config"),
    };
    let off = ServerConfig::remote(
        &DebugSpec::default(),
        enclave.clone(),
        identity.clone(),
        None,
    )
    .unwrap();
    assert!(off.capabilities.is_empty() && keys_of(&off).is_empty());
    let spec = DebugSpec {
        exec: true,
        cp: true,
        attest: true,
        authorized_keys: vec![openssh_line(&key)],
    };
    let on = ServerConfig::remote(
        &spec,
        enclave.clone(),
        identity.clone(),
        Some(supervisor.verifying_key()),
    )
    .unwrap();
    assert_eq!(
        on.capabilities,
        vec![Capability::Exec, Capability::Cp, Capability::Attest]
    );
    for k in [&key, &supervisor] {
        let auth = Auth::sign(k, &[1; 32]);
        assert_eq!(
            keys_of(&on).verify(&auth, &[1; 32]).unwrap(),
            k.verifying_key()
        );
    }
    let broken = DebugSpec {
        authorized_keys: vec!["nope".into()],
        ..Default::default()
    };
    assert!(ServerConfig::remote(&broken, enclave, identity, None).is_err());
}

#[test]
fn transcript_is_domain_separated() {
    let t = transcript(&[1; 32]);
    assert!(t.starts_with(b"enclave-engine control v2 auth\0"));
    assert_eq!(&t[t.len() - 32..], &[1; 32]);
    // Signing the bare handshake hash (no domain) does not verify.
    use ed25519_dalek::Signer as _;
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut auth = Auth::sign(&key, &[1; 32]);
    auth.signature = key.sign(&t[t.len() - 32..]).to_bytes();
    let keys = AuthorizedKeys::new(vec![key.verifying_key()]);
    assert!(keys.verify(&auth, &[1; 32]).is_err());
}
