//! The attestation server and its client, over real TLS on real sockets, with documents from an
//! emulated NSM (its CA in a temporary directory): the attested connection and its refusals
//! (a man in the middle relaying the enclave's document, a wrong nonce, an untrusted root) and
//! file proofs verified offline. HTTP errors, limits and client certificates: server_http.rs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use base64ct::Encoding;
use common::*;
use enclave_attest::client::{AttestedClient, ClientError, ClientOptions};
use enclave_attest::{vrf, Error, Expectation, VerifyOptions};
use enclave_attest_server::files::{FileEntry, FileError, FileStore};
use enclave_attest_server::{
    AttestationServer, AttestationSource, EmulatedSource, FileProofs, ServerError, SourceError,
    Startup,
};
use enclave_spec::FileAttestationSpec;

#[test]
fn attested_connection_verifies_the_document_and_the_tls_binding() {
    let enclave = Enclave::new();
    let server = spawn(enclave.source(), config());
    let (mut client, verified) = AttestedClient::connect(server.local_addr(), &enclave.options())
        .expect("a genuine server is accepted");
    let report = &verified.report;
    assert_eq!(report.public_key.as_ref().unwrap().0, server.public_key());
    assert_eq!(verified.tls_public_key, server.public_key());
    assert_eq!(report.nonce.as_ref().unwrap().0, verified.nonce);
    assert_eq!(verified.nonce.len(), 32);
    assert_eq!(verified.binding, server.binding());
    assert_eq!(verified.binding.vrf_public_key, None);
    assert_eq!(report.pcrs[&0].0, PCR0);

    // The connection is kept alive for further requests.
    client.health().unwrap();
    let pcrs = client.get_pcrs().unwrap();
    assert_eq!(pcrs.module_id, report.module_id);
    assert_eq!(pcrs.pcrs.len(), 16);
    assert_eq!(pcrs.pcrs[&0], PCR0);
    let doc = client.attestation(b"second nonce").unwrap();
    let mut options = enclave.options().verify;
    options.policy.nonce = Some(b"second nonce".to_vec());
    options.policy.public_key = Some(server.public_key().to_vec());
    enclave_attest::verify(&doc, &options).unwrap();
    assert!(matches!(
        client.get_file_proof("/etc/hosts"),
        Err(ClientError::NoFileAttestation)
    ));

    // /pcrs lists the PCRs in numeric order.
    let (status, head, body) = get(server.local_addr(), "/pcrs");
    assert_eq!(status, 200, "{head}");
    let body = String::from_utf8(body).unwrap();
    let order: Vec<usize> = (0..16)
        .map(|i| body.find(&format!("\"{i}\":")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{body}");

    // The caller's policy applies on top of the binding.
    let strict = enclave.options_expecting(Expectation::pcrs([(0, vec![0xb0; 48])]).unwrap());
    let err = AttestedClient::connect(server.local_addr(), &strict).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verify(Error::PcrMismatch { index: 0, .. })
        ),
        "{err}"
    );
    let untrusted = ClientOptions::new(VerifyOptions::new(enclave.options().verify.policy));
    let err = AttestedClient::connect(server.local_addr(), &untrusted).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::EmulationRoot { .. })),
        "{err}"
    );
}

/// The client's expectation is what tells the enclave it means from any other: an enclave of
/// another image under the same root (an attacker running this very server, on its own account)
/// serves a genuine document, and only the pinned PCR0 refuses it.
#[test]
fn a_client_pinning_pcr0_refuses_another_image_under_the_same_root() {
    let enclave = Enclave::new();
    let attacker = spawn(enclave.source_of_image([0xee; 48]), config());
    let err = AttestedClient::connect(attacker.local_addr(), &enclave.options()).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verify(Error::PcrMismatch {
                index: 0,
                actual: Some(_),
                ..
            })
        ),
        "{err}"
    );
    // Any enclave, said explicitly, accepts it: that is what it means.
    let (_, verified) = AttestedClient::connect(
        attacker.local_addr(),
        &enclave.options_expecting(Expectation::AnyEnclave),
    )
    .unwrap();
    assert!(verified.report.expected_pcrs.is_empty());
    assert_eq!(verified.report.pcrs[&0].0, [0xee; 48]);
}

/// A man in the middle: its own TLS key, documents relayed from the genuine server for the
/// client's own nonce. Everything verifies except the binding. (Its startup document, which
/// only the server itself checks, comes from its own device.)
struct Relay(SocketAddr, EmulatedSource);

impl AttestationSource for Relay {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        let Some(nonce) = nonce else {
            return self.1.attest(None, user_data, public_key);
        };
        let (status, head, body) = get(
            self.0,
            &format!("/attestation?nonce={}", hex::encode(nonce)),
        );
        match status {
            200 => Ok(body),
            _ => Err(SourceError::Other(head)),
        }
    }
}

/// Drops the fields the server asks for, as a control server that ignored them would.
struct Unbinding(EmulatedSource);

impl AttestationSource for Unbinding {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        _: Option<&[u8]>,
        _: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        self.0.attest(nonce, None, None)
    }
}

#[test]
fn a_server_whose_document_binds_another_key_is_refused() {
    let enclave = Enclave::new();
    let genuine = spawn(enclave.source(), config());
    let mitm = spawn(Relay(genuine.local_addr(), enclave.source()), config());
    assert_ne!(mitm.public_key(), genuine.public_key());
    let err = AttestedClient::connect(mitm.local_addr(), &enclave.options()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::PublicKeyMismatch { .. })),
        "{err}"
    );
    // Our own server refuses to start on a source that does not bind its key.
    let err = Startup::fetch(&Unbinding(enclave.source()), None)
        .err()
        .expect("an unbound start-up document is refused");
    assert!(matches!(err, ServerError::Unbound), "{err}");
}

/// Answers every request with a document for another nonce.
struct WrongNonce(EmulatedSource);

impl AttestationSource for WrongNonce {
    fn attest(
        &self,
        _nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        self.0.attest(Some(b"stale nonce"), user_data, public_key)
    }
}

#[test]
fn a_document_for_another_nonce_is_refused() {
    let enclave = Enclave::new();
    let server = spawn(WrongNonce(enclave.source()), config());
    let err = AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::NonceMismatch { .. })),
        "{err}"
    );
}

/// The real store with every hash replaced: the client must refuse its proofs.
struct Forged(FileStore);

impl FileProofs for Forged {
    fn lookup(&self, path: &str) -> Result<FileEntry, FileError> {
        let mut entry = self.0.lookup(path)?;
        entry.hash[0] ^= 1;
        Ok(entry)
    }
    fn vrf_public_key(&self) -> vrf::PublicKey {
        self.0.vrf_public_key()
    }
    fn epoch(&self) -> vrf::Epoch {
        self.0.epoch()
    }
}

#[test]
fn file_proofs_verify_offline_under_the_attested_vrf_key() {
    let enclave = Enclave::new();
    let data = tempfile::tempdir().unwrap();
    let root = data.path().to_str().unwrap().to_string();
    let file = format!("{root}/model weights.bin");
    std::fs::write(&file, b"attested contents").unwrap();
    std::fs::write(format!("{root}/key.secret"), b"not attested").unwrap();
    let ignore = format!("{root}/.attestignore");
    std::fs::write(&ignore, "*.secret\n").unwrap();
    let spec = FileAttestationSpec {
        roots: vec![root.clone()],
        ignore_file: Some(ignore),
        nats: None,
    };
    let key = vrf::SecretKey::from_seed([9; 32]).public_key();
    // One boot: its start-up document binds the VRF key, and its hash is the epoch the store
    // proves in.
    let boot = |source: &EmulatedSource| {
        let startup = Startup::fetch(source, Some(key)).unwrap();
        let store =
            FileStore::new(&spec, vrf::SecretKey::from_seed([9; 32]), startup.epoch()).unwrap();
        (startup, store)
    };

    let source = enclave.source();
    let (startup, store) = boot(&source);
    let epoch = startup.epoch();
    let startup_document = startup.document().to_vec();
    let server =
        AttestationServer::spawn(config(), Arc::new(source), startup, Some(Arc::new(store)))
            .unwrap();
    let (mut client, verified) =
        AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap();
    assert_eq!(verified.binding.vrf_public_key, Some(key));
    let learned = client.file_epoch().unwrap();
    assert_eq!(learned.epoch, epoch);
    assert_eq!(learned.startup_document, startup_document);

    let proven = client.get_file_proof(&file).unwrap();
    assert_eq!(proven.sha3_512, vrf::file_hash(&file).unwrap());
    assert_eq!(proven.epoch, epoch);
    let claim = vrf::FileClaim {
        path: file.clone(),
        sha3_512: proven.sha3_512,
        generation: proven.generation,
        epoch,
    };
    assert_eq!(
        vrf::verify_file(&key, &claim, &proven.proof).unwrap(),
        proven.output
    );

    let status_of = |r: Result<_, ClientError>| match r {
        Err(ClientError::Status { status, .. }) => status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status_of(client.get_file_proof("/etc/passwd")), 403);
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/../x"))),
        403
    );
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/key.secret"))),
        403
    );
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/missing"))),
        404
    );
    assert_eq!(status_of(client.get_file_proof(&root)), 404, "a directory");
    assert_eq!(status_of(client.get_file_proof(&"/a".repeat(3000))), 400);

    let hash = client
        .get(&format!("/files/hash?path={}", file.replace(' ', "%20")))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&hash.body).unwrap();
    assert_eq!(v["sha3_512"], hex::encode(proven.sha3_512));
    assert_eq!(v["path"], file.as_str());
    let resp = client.get("/files/vrf-key?nonce=abcd").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["public_key"], hex::encode(key.to_bytes()));
    assert_eq!(v["suite"], "ECVRF-EDWARDS25519-SHA512-TAI");
    assert_eq!(v["epoch"], epoch.to_hex());
    let doc = base64ct::Base64::decode_vec(v["document"].as_str().unwrap()).unwrap();
    let mut options = enclave.options().verify;
    options.policy.nonce = Some(vec![0xab, 0xcd]);
    options.policy.user_data = Some(server.binding().encode());
    enclave_attest::verify(&doc, &options).expect("the document binds the VRF key");

    // A store whose hashes are forged: the proofs fail.
    let source = enclave.source();
    let (startup, store) = boot(&source);
    let forged = AttestationServer::spawn(
        config(),
        Arc::new(source),
        startup,
        Some(Arc::new(Forged(store))),
    )
    .unwrap();
    let (mut client, _) = AttestedClient::connect(forged.local_addr(), &enclave.options()).unwrap();
    let err = client.get_file_proof(&file).unwrap_err();
    assert!(
        matches!(err, ClientError::Proof(vrf::VrfError::VerificationFailed)),
        "{err}"
    );

    // A store of another boot (proving in an epoch that is not this start-up document's)
    // cannot be served: the server refuses to start with it.
    let source = enclave.source();
    let (startup, _) = boot(&source);
    let (_, other_boot) = boot(&source);
    let err = AttestationServer::spawn(
        config(),
        Arc::new(source),
        startup,
        Some(Arc::new(other_boot)),
    )
    .unwrap_err();
    assert!(matches!(err, ServerError::FilesMismatch), "{err}");
}

/// Serves another boot's proofs and epoch: a server that replays what it proved before.
struct OtherBoot(FileStore, vrf::Epoch);

impl FileProofs for OtherBoot {
    fn lookup(&self, path: &str) -> Result<FileEntry, FileError> {
        self.0.lookup(path)
    }
    fn vrf_public_key(&self) -> vrf::PublicKey {
        self.0.vrf_public_key()
    }
    fn epoch(&self) -> vrf::Epoch {
        self.1
    }
}

#[test]
fn a_file_proof_of_another_boot_is_refused() {
    let enclave = Enclave::new();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("f");
    std::fs::write(&file, b"contents").unwrap();
    let spec = FileAttestationSpec {
        roots: vec![data.path().to_str().unwrap().into()],
        ignore_file: None,
        nats: None,
    };
    let seed = [5; 32];
    let source = enclave.source();
    let old = Startup::fetch(&source, Some(vrf::SecretKey::from_seed(seed).public_key())).unwrap();
    let startup =
        Startup::fetch(&source, Some(vrf::SecretKey::from_seed(seed).public_key())).unwrap();
    assert_ne!(
        old.epoch(),
        startup.epoch(),
        "each start-up document is a new epoch"
    );
    // The store proves in the old boot's epoch while claiming the new one: the server starts
    // (the claim matches), but what it serves does not verify in the epoch it names.
    let stale = FileStore::new(&spec, vrf::SecretKey::from_seed(seed), old.epoch()).unwrap();
    let epoch = startup.epoch();
    let server = AttestationServer::spawn(
        config(),
        Arc::new(source),
        startup,
        Some(Arc::new(OtherBoot(stale, epoch))),
    )
    .unwrap();
    let (mut client, _) = AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap();
    let err = client.get_file_proof(file.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(err, ClientError::Proof(vrf::VrfError::VerificationFailed)),
        "{err}"
    );
}
