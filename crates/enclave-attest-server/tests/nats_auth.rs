//! TLS and credentials to a real `nats-server`: a CA and server certificate made with openssl
//! at test time; token, user/password and NKey authorization, and a user JWT (`.creds`) to a
//! server in operator mode with an operator, accounts and users made at test time. What is configured is required:
//! a plain-text server, an untrusted certificate, a wrong name, missing or wrong credentials
//! are each refused with an error that says which, and no credential ever appears in one.

mod nats_support;

use std::path::Path;

use base64ct::{Base64UrlUnpadded, Encoding};
use enclave_attest::files::KvEntry;
use enclave_attest_server::files::{
    NKey, NKeyRole, NatsAuth, NatsError, NatsOptions, NatsPublisher, NatsTls,
};
use enclave_spec::{NatsCredentialKind, NatsCredentialsSpec, NatsSpec, NatsTlsSpec};
use nats_support::{nats_server, Pki, Server};
use serde_json::{json, Value};

/// Options for `server` over TLS trusting `ca_pem`, as `name`.
fn tls_options(server: &Server, ca_pem: &[u8], name: &str) -> NatsOptions {
    NatsOptions::new(&server.url(), "secure")
        .unwrap()
        .tls(NatsTls::new(ca_pem, name).unwrap())
}

/// A put and a get through a fresh publisher: the connection works end to end.
fn round_trip(options: &NatsOptions) {
    let mut kv = NatsPublisher::connect(options).unwrap();
    kv.put("k", b"over tls").unwrap();
    assert_eq!(
        kv.get("k").unwrap(),
        Some(KvEntry::Value(b"over tls".to_vec()))
    );
}

fn refused(options: &NatsOptions) -> NatsError {
    NatsPublisher::connect(options).unwrap_err()
}

/// Writes `contents` to `dir/name` (0600, as a delivered secret is) and returns the path.
fn secret_file(dir: &Path, name: &str, contents: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, contents.as_bytes()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn tls_is_required_as_configured_and_checks_the_certificate() {
    let Some(pki) = Pki::new() else { return };
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0, &pki.server_tls()) else {
        return;
    };
    let ca = pki.ca_pem();
    // The URL's host is the default name: 127.0.0.1 is in the certificate's SANs.
    let by_ip = NatsOptions::new(&server.url(), "secure").unwrap();
    let by_ip = by_ip.clone().tls(NatsTls::new(&ca, by_ip.host()).unwrap());
    round_trip(&by_ip);
    round_trip(&tls_options(&server, &ca, "nats.test"));

    // Another CA's trust, or another name, is a TLS failure, never a fallback.
    let other_ca = std::fs::read(pki.path("other-ca.pem")).unwrap();
    let err = refused(&tls_options(&server, &other_ca, "nats.test"));
    assert!(matches!(err, NatsError::Tls(_)), "{err}");
    assert!(err.to_string().contains("files.nats.tls"), "{err}");
    let err = refused(&tls_options(&server, &ca, "other.test"));
    assert!(matches!(err, NatsError::Tls(_)), "{err}");
    // No TLS configured against a TLS server: refused, naming what to set.
    let err = refused(&NatsOptions::new(&server.url(), "secure").unwrap());
    assert!(matches!(err, NatsError::TlsRequired), "{err}");

    // TLS configured against a plain-text server: refused, not spoken in plain text.
    let plain_data = tempfile::tempdir().unwrap();
    let plain = nats_server(plain_data.path(), 0, "").unwrap();
    let err = refused(&tls_options(&plain, &ca, "nats.test"));
    assert!(matches!(err, NatsError::TlsNotOffered), "{err}");
    assert!(
        err.to_string().contains("refusing to talk in plain text"),
        "{err}"
    );

    // Unusable trust anchors are refused when the options are made.
    assert!(matches!(
        NatsTls::new(b"no certificate here", "nats.test"),
        Err(NatsError::NoCaCertificate)
    ));
    assert!(matches!(
        NatsTls::new(&ca, "not a name!"),
        Err(NatsError::BadServerName(_))
    ));
}

#[test]
fn token_and_user_password_are_checked_by_the_server() {
    let Some(pki) = Pki::new() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let token = "t0ken-made-for-this-test";
    let data = tempfile::tempdir().unwrap();
    let conf = format!("{}\nauthorization {{ token: {token:?} }}", pki.server_tls());
    let Some(server) = nats_server(data.path(), 0, &conf) else {
        return;
    };
    let ca = pki.ca_pem();
    let with = |kind, contents: &str, name: &str| {
        let file = secret_file(secrets.path(), name, contents);
        tls_options(&server, &ca, "nats.test").auth(NatsAuth::load(kind, Path::new(&file)).unwrap())
    };
    round_trip(&with(
        NatsCredentialKind::Token,
        &format!("{token}\n"),
        "good.token",
    ));
    let wrong = with(NatsCredentialKind::Token, "not-the-token", "bad.token");
    let err = refused(&wrong);
    assert!(matches!(err, NatsError::AuthRejected(_)), "{err}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(
        !format!("{err} {wrong:?}").contains("not-the-token"),
        "never shown"
    );
    let err = refused(&tls_options(&server, &ca, "nats.test"));
    assert!(matches!(err, NatsError::AuthRequired), "{err}");
    // Credentials are never sent without TLS, whatever the caller asks.
    let plain = NatsOptions::new(&server.url(), "secure")
        .unwrap()
        .auth(NatsAuth::Token(token.into()));
    assert!(matches!(refused(&plain), NatsError::CredentialsWithoutTls));

    let data = tempfile::tempdir().unwrap();
    let conf = format!(
        "{}\nauthorization {{ users: [ {{ user: attest, password: \"s3cret pass\" }} ] }}",
        pki.server_tls()
    );
    let server = nats_server(data.path(), 0, &conf).unwrap();
    let with = |contents: &str, name: &str| {
        let file = secret_file(secrets.path(), name, contents);
        tls_options(&server, &ca, "nats.test")
            .auth(NatsAuth::load(NatsCredentialKind::UserPassword, Path::new(&file)).unwrap())
    };
    round_trip(&with("attest:s3cret pass", "good.userpass"));
    let wrong = with("attest:wrong pass", "bad.userpass");
    let err = refused(&wrong);
    assert!(matches!(err, NatsError::AuthRejected(_)), "{err}");
    assert!(!format!("{err} {wrong:?}").contains("wrong pass"));
}

#[test]
fn nkey_signs_the_server_nonce() {
    let Some(pki) = Pki::new() else { return };
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    let user = NKey::from_raw_seed(seed);
    let data = tempfile::tempdir().unwrap();
    let conf = format!(
        "{}\nauthorization {{ users: [ {{ nkey: {} }} ] }}",
        pki.server_tls(),
        user.public_key()
    );
    let Some(server) = nats_server(data.path(), 0, &conf) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let ca = pki.ca_pem();
    let good = secret_file(
        secrets.path(),
        "user.nk",
        &format!("{}\n", user.seed_text()),
    );
    let options = tls_options(&server, &ca, "nats.test")
        .auth(NatsAuth::load(NatsCredentialKind::Nkey, Path::new(&good)).unwrap());
    round_trip(&options);
    assert!(
        !format!("{options:?}").contains(&user.seed_text()),
        "the seed is never shown"
    );

    // Another user's key: the server does not know it.
    getrandom::getrandom(&mut seed).unwrap();
    let stranger = secret_file(
        secrets.path(),
        "stranger.nk",
        &NKey::from_raw_seed(seed).seed_text(),
    );
    let err = refused(
        &tls_options(&server, &ca, "nats.test")
            .auth(NatsAuth::load(NatsCredentialKind::Nkey, Path::new(&stranger)).unwrap()),
    );
    assert!(matches!(err, NatsError::AuthRejected(_)), "{err}");
}

/// A fresh random key.
fn random_key() -> NKey {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    NKey::from_raw_seed(seed)
}

/// A JWT whose subject is `sub`, with `nats` claims, signed by `issuer` as `role`: what `nsc`
/// makes (the server checks the signature and the issuer's place in the chain).
fn jwt(issuer: &NKey, role: NKeyRole, sub: &str, nats: Value) -> String {
    let part = |v: Value| Base64UrlUnpadded::encode_string(v.to_string().as_bytes());
    let header = part(json!({"typ": "JWT", "alg": "ed25519-nkey"}));
    let claims = part(json!({
        "iat": 1_700_000_000,
        "iss": issuer.public_key_as(role),
        "sub": sub,
        "name": "test",
        "nats": nats,
    }));
    let signed = format!("{header}.{claims}");
    format!("{signed}.{}", issuer.sign_nonce(&signed))
}

/// An account JWT signed by `operator`; with JetStream (the bucket) when `jetstream`.
fn account_jwt(operator: &NKey, account: &NKey, jetstream: bool) -> String {
    let mut limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
        "exports": -1, "wildcards": true, "conn": -1, "leaf": -1});
    if jetstream {
        for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[k] = json!(-1);
        }
    }
    jwt(
        operator,
        NKeyRole::Operator,
        &account.public_key_as(NKeyRole::Account),
        json!({"type": "account", "version": 2, "limits": limits}),
    )
}

/// A user JWT for `user`, signed by `account`.
fn user_jwt(account: &NKey, user: &NKey) -> String {
    jwt(
        account,
        NKeyRole::Account,
        &user.public_key(),
        json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1,
            "pub": {}, "sub": {}}),
    )
}

/// A `.creds` file as `nsc` writes it.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

#[test]
fn a_creds_file_authenticates_to_an_operator_mode_server() {
    let Some(pki) = Pki::new() else { return };
    let (operator, account, system, user) =
        (random_key(), random_key(), random_key(), random_key());
    let operator_jwt = jwt(
        &operator,
        NKeyRole::Operator,
        &operator.public_key_as(NKeyRole::Operator),
        json!({"type": "operator", "version": 2}),
    );
    let conf = format!(
        "{}\noperator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {acc}: {acc_jwt}\n  {sys}: {sys_jwt}\n}}\n",
        pki.server_tls(),
        acc = account.public_key_as(NKeyRole::Account),
        acc_jwt = account_jwt(&operator, &account, true),
        sys = system.public_key_as(NKeyRole::Account),
        sys_jwt = account_jwt(&operator, &system, false),
    );
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0, &conf) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let ca = pki.ca_pem();
    let with = |name: &str, contents: String| {
        let file = secret_file(secrets.path(), name, &contents);
        tls_options(&server, &ca, "nats.test")
            .auth(NatsAuth::load(NatsCredentialKind::Creds, Path::new(&file)).unwrap())
    };
    let good = with(
        "user.creds",
        creds(&user_jwt(&account, &user), &user.seed_text()),
    );
    round_trip(&good);
    let shown = format!("{good:?}");
    assert!(
        !shown.contains(&user.seed_text()),
        "the seed is never shown: {shown}"
    );
    assert!(shown.contains(&user.public_key()), "{shown}");

    // A user of an account the operator never signed: refused.
    let stranger = random_key();
    let err = refused(&with(
        "stranger.creds",
        creds(&user_jwt(&stranger, &user), &user.seed_text()),
    ));
    assert!(matches!(err, NatsError::AuthRejected(_)), "{err}");
    // The right JWT with another user's seed: the nonce's signature does not match it.
    let err = refused(&with(
        "other-seed.creds",
        creds(&user_jwt(&account, &user), &random_key().seed_text()),
    ));
    assert!(matches!(err, NatsError::AuthRejected(_)), "{err}");
    // No credentials at all: the server in operator mode asks for them.
    let err = refused(&tls_options(&server, &ca, "nats.test"));
    assert!(
        matches!(err, NatsError::AuthRequired | NatsError::AuthRejected(_)),
        "{err}"
    );
}

#[test]
fn credentials_files_are_read_at_start_and_checked() {
    let Some(pki) = Pki::new() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let spec = |kind, file: &str| NatsSpec {
        url: "nats://nats.test:4222".into(),
        bucket: "b".into(),
        tls: Some(NatsTlsSpec {
            ca: None,
            ca_file: Some(pki.path("ca.pem").to_str().unwrap().into()),
            server_name: None,
        }),
        credentials: Some(NatsCredentialsSpec {
            kind,
            file: file.into(),
        }),
    };
    let missing = secrets.path().join("missing").to_str().unwrap().to_string();
    let err = NatsOptions::from_spec(&spec(NatsCredentialKind::Token, &missing)).unwrap_err();
    assert!(matches!(err, NatsError::CredentialsFile { .. }), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(err.to_string().contains("run time"), "{err}");

    let cases = [
        (NatsCredentialKind::Token, "", "empty"),
        (
            NatsCredentialKind::Token,
            "line one\nline two",
            "more than one line",
        ),
        (
            NatsCredentialKind::UserPassword,
            "just-a-password",
            "not USER:PASSWORD",
        ),
        (
            NatsCredentialKind::UserPassword,
            "someone:",
            "not USER:PASSWORD",
        ),
        (NatsCredentialKind::Nkey, "SUNOTASEED", "NKey user seed"),
        (
            NatsCredentialKind::Creds,
            "SUNOTASEED",
            "no BEGIN NATS USER JWT section",
        ),
        (
            NatsCredentialKind::Creds,
            "-----BEGIN NATS USER JWT-----\nnot-a-jwt\n------END NATS USER JWT------\n\
             -----BEGIN USER NKEY SEED-----\nSUXYZ\n------END USER NKEY SEED------",
            "not three base64url parts",
        ),
        (
            NatsCredentialKind::Creds,
            "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------\n",
            "no BEGIN USER NKEY SEED section",
        ),
        (
            NatsCredentialKind::Creds,
            "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------\n\
             -----BEGIN USER NKEY SEED-----\nSUXYZ\n------END USER NKEY SEED------",
            "creds file's seed",
        ),
    ];
    for (i, (kind, contents, want)) in cases.into_iter().enumerate() {
        let file = secret_file(secrets.path(), &format!("case{i}"), contents);
        let err = NatsOptions::from_spec(&spec(kind, &file)).unwrap_err();
        assert!(matches!(err, NatsError::BadCredentials { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(want), "{text}");
        if !contents.is_empty() {
            assert!(
                !text.contains(contents),
                "the contents are never quoted: {text}"
            );
        }
    }
    // A public key is not a seed.
    let public = NKey::from_raw_seed([3; 32]).public_key();
    let file = secret_file(secrets.path(), "public.nk", &public);
    assert!(matches!(
        NatsOptions::from_spec(&spec(NatsCredentialKind::Nkey, &file)),
        Err(NatsError::BadCredentials { .. })
    ));

    // The CA from a file in the image, and the URL's host as the default name.
    let file = secret_file(secrets.path(), "ok.token", "tok");
    let options = NatsOptions::from_spec(&spec(NatsCredentialKind::Token, &file)).unwrap();
    assert_eq!(options.host(), "nats.test");
    assert!(!format!("{options:?}").contains("tok\""), "{options:?}");
    let mut no_ca = spec(NatsCredentialKind::Token, &file);
    no_ca.tls.as_mut().unwrap().ca_file = Some("/nonexistent/ca.pem".into());
    assert!(matches!(
        NatsOptions::from_spec(&no_ca),
        Err(NatsError::CaFile { .. })
    ));
}

/// The host relays the enclave's egress: it can answer in the server's place with an INFO that
/// offers no TLS, hoping for the credentials in plain text. It gets nothing: the client hangs
/// up after INFO without writing a byte.
#[test]
fn a_relay_that_strips_the_tls_offer_gets_no_credentials() {
    use std::io::{Read, Write};
    let Some(pki) = Pki::new() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let relay = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"INFO {\"headers\":true,\"auth_required\":true,\"nonce\":\"n\"}\r\n")
            .unwrap();
        let mut heard = Vec::new();
        let _ = conn.read_to_end(&mut heard);
        heard
    });
    let secrets = tempfile::tempdir().unwrap();
    let file = secret_file(secrets.path(), "relay.token", "token-for-the-real-server");
    let options = NatsOptions::new(&url, "b")
        .unwrap()
        .tls(NatsTls::new(&pki.ca_pem(), "nats.test").unwrap())
        .auth(NatsAuth::load(NatsCredentialKind::Token, Path::new(&file)).unwrap());
    let err = refused(&options);
    assert!(matches!(err, NatsError::TlsNotOffered), "{err}");
    assert_eq!(relay.join().unwrap(), b"", "the relay heard nothing");
}
