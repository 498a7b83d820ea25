//! PCR31, the debug-capability marker, through the verifier: documents signed by the emulated
//! NSM after PCR31 was extended and locked exactly as enclave-init does at boot (the shared
//! `enclave_proto::debug_pcr::debug_marker`), refused unless the policy allows debug capabilities,
//! and shown in the report either way. Nitro's debug mode (PCR0..2 zero) stays a separate
//! check with its own switch.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use enclave_attest::{DebugCapabilities, Error, Expectation, Policy, TrustRoot, VerifyOptions};
use enclave_nsm::emulated::{EmulatedDevice, EmulationCa};
use enclave_proto::debug_pcr::{debug_marker, DEBUG_PCR};
use enclave_proto::wire::Capability;

const PCR0: [u8; 48] = [0xa0; 48];

struct Host {
    _dir: tempfile::TempDir,
    ca: Arc<EmulationCa>,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let ca = EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap();
        Host {
            _dir: dir,
            ca: Arc::new(ca),
        }
    }

    /// An enclave booted with `measured` PCRs.
    fn device(&self, measured: [(u8, [u8; 48]); 3]) -> EmulatedDevice {
        let measured: BTreeMap<u8, [u8; 48]> = measured.into_iter().collect();
        EmulatedDevice::new(self.ca.clone(), "0123456789abcdef", &measured)
    }

    /// A normal image's enclave after its boot recorded `pcr31` (extended with each item, then
    /// locked; `None`: PCR31 never locked, as by an init that does not know the marker).
    fn document(&self, pcr31: Option<&[&[u8]]>) -> Vec<u8> {
        let mut dev = self.device([(0, PCR0), (1, [0xa1; 48]), (2, [0xa2; 48])]);
        boot(&mut dev, pcr31);
        attest(&mut dev)
    }

    fn options(&self, policy: Policy) -> VerifyOptions {
        VerifyOptions {
            roots: TrustRoot::from_pem_or_der(&std::fs::read(self.ca.root_path()).unwrap())
                .unwrap(),
            ..VerifyOptions::new(policy)
        }
    }
}

/// What enclave-init does with PCR31 before any service runs.
fn boot(dev: &mut EmulatedDevice, pcr31: Option<&[&[u8]]>) {
    let Some(extensions) = pcr31 else { return };
    for data in extensions {
        let r = dev.handle(Request::ExtendPCR {
            index: DEBUG_PCR,
            data: data.to_vec(),
        });
        assert!(matches!(r, Response::ExtendPCR { .. }), "{r:?}");
    }
    let r = dev.handle(Request::LockPCR { index: DEBUG_PCR });
    assert!(matches!(r, Response::LockPCR), "{r:?}");
}

fn attest(dev: &mut EmulatedDevice) -> Vec<u8> {
    match dev.handle(Request::Attestation {
        user_data: None,
        nonce: None,
        public_key: None,
    }) {
        Response::Attestation { document } => document,
        other => panic!("{other:?}"),
    }
}

fn pinned() -> Policy {
    Policy::new(Expectation::pcrs([(0, PCR0.to_vec())]).unwrap())
}

fn allowing(mut policy: Policy) -> Policy {
    policy.allow_debug_capabilities = true;
    policy
}

#[test]
fn a_debug_exec_marker_is_refused_naming_it_and_accepted_when_allowed() {
    let host = Host::new();
    let marker = debug_marker(&[Capability::Exec]).unwrap();
    let doc = host.document(Some(&[&marker]));

    let err = enclave_attest::verify(&doc, &host.options(pinned())).unwrap_err();
    assert!(
        matches!(&err, Error::DebugCapabilities { capabilities } if capabilities == &[Capability::Exec]),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("debug.exec"), "{text}");
    assert!(text.contains("run commands"), "{text}");
    assert!(text.contains("--allow-debug"), "{text}");
    assert!(!text.contains("--allow-debug-mode"), "{text}");
    // Accepting any enclave is not accepting its debug capabilities.
    let any = Policy::new(Expectation::AnyEnclave);
    assert!(matches!(
        enclave_attest::verify(&doc, &host.options(any)),
        Err(Error::DebugCapabilities { .. })
    ));
    // Nor is allowing Nitro debug mode.
    let mut mode_only = pinned();
    mode_only.allow_debug_mode = true;
    assert!(matches!(
        enclave_attest::verify(&doc, &host.options(mode_only)),
        Err(Error::DebugCapabilities { .. })
    ));

    let report = enclave_attest::verify(&doc, &host.options(allowing(pinned()))).unwrap();
    let granted = DebugCapabilities::Granted {
        capabilities: vec![Capability::Exec],
    };
    assert_eq!(report.debug_capabilities, granted);
    assert!(!report.debug_mode);
    let text = report.to_string();
    assert!(
        text.contains("debug caps:   debug.exec (PCR31 marker); allowed"),
        "{text}"
    );
    assert!(text.contains("debug mode:   no"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["debug_capabilities"],
        serde_json::json!({"state": "granted", "capabilities": ["debug.exec"]})
    );
    assert_eq!(json["debug_mode"], false);
}

#[test]
fn every_combination_of_capabilities_is_named() {
    let host = Host::new();
    let caps = [Capability::Exec, Capability::Cp, Capability::Attest];
    for mask in 1u8..8 {
        let granted: Vec<Capability> = (0..3)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| caps[i])
            .collect();
        let marker = debug_marker(&granted).unwrap();
        let doc = host.document(Some(&[&marker]));
        let err = enclave_attest::verify(&doc, &host.options(pinned())).unwrap_err();
        let text = err.to_string();
        for c in &caps {
            assert_eq!(
                text.contains(&c.to_string()),
                granted.contains(c),
                "{granted:?}: {text}"
            );
        }
        let report = enclave_attest::verify(&doc, &host.options(allowing(pinned()))).unwrap();
        let DebugCapabilities::Granted { capabilities } = report.debug_capabilities else {
            panic!("{granted:?}: {:?}", report.debug_capabilities);
        };
        let mut want = granted.clone();
        want.sort_unstable();
        assert_eq!(capabilities, want);
    }
}

#[test]
fn an_unknown_non_zero_pcr31_is_refused_as_unknown() {
    let host = Host::new();
    // Something other than enclave-init's single marker: another string, or the marker twice.
    let marker = debug_marker(&[Capability::Cp]).unwrap();
    for extensions in [vec![&b"something else"[..]], vec![&marker[..], &marker[..]]] {
        let doc = host.document(Some(&extensions));
        let err = enclave_attest::verify(&doc, &host.options(pinned())).unwrap_err();
        let Error::UnknownDebugMarker { pcr31 } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(pcr31.len(), 96);
        let text = err.to_string();
        assert!(text.contains("PCR31"), "{text}");
        assert!(text.contains("not a known"), "{text}");
        assert!(text.contains("--allow-debug"), "{text}");

        let report = enclave_attest::verify(&doc, &host.options(allowing(pinned()))).unwrap();
        assert!(
            matches!(&report.debug_capabilities, DebugCapabilities::Unknown { pcr31: v } if hex::encode(&v.0) == *pcr31),
            "{:?}",
            report.debug_capabilities
        );
        let text = report.to_string();
        assert!(text.contains("debug caps:   unknown"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["debug_capabilities"]["state"], "unknown");
        assert_eq!(json["debug_capabilities"]["pcr31"], pcr31.as_str());
    }
}

#[test]
fn a_zero_pcr31_and_an_unmeasured_one_are_accepted_and_told_apart() {
    let host = Host::new();
    // Locked without an extension: the spec grants nothing.
    let none = host.document(Some(&[]));
    let report = enclave_attest::verify(&none, &host.options(pinned())).unwrap();
    assert_eq!(report.debug_capabilities, DebugCapabilities::None);
    assert_eq!(report.pcrs[&31].0, [0; 48]);
    assert!(report
        .to_string()
        .contains("debug caps:   none (PCR31 zero)"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["debug_capabilities"],
        serde_json::json!({"state": "none"})
    );

    // Never locked: the document does not report PCR31 at all.
    let unmeasured = host.document(None);
    let report = enclave_attest::verify(&unmeasured, &host.options(pinned())).unwrap();
    assert_eq!(report.debug_capabilities, DebugCapabilities::NotMeasured);
    assert!(!report.pcrs.contains_key(&31));
    assert!(report.to_string().contains("debug caps:   not measured"));
}

#[test]
fn nitro_debug_mode_and_debug_capabilities_are_separate_switches() {
    let host = Host::new();
    // Nitro debug mode (PCR0..2 zero), and enclave-init recorded debug.cp.
    let mut dev = host.device([(0, [0; 48]), (1, [0; 48]), (2, [0; 48])]);
    let marker = debug_marker(&[Capability::Cp]).unwrap();
    boot(&mut dev, Some(&[&marker]));
    let doc = attest(&mut dev);
    let any = || Policy::new(Expectation::AnyEnclave);

    let err = enclave_attest::verify(&doc, &host.options(any())).unwrap_err();
    assert!(matches!(err, Error::DebugMode), "{err:?}");
    assert!(err.to_string().contains("Nitro debug-mode"), "{err}");
    assert!(err.to_string().contains("--allow-debug-mode"), "{err}");
    // Allowing the capabilities leaves debug mode refused, and the other way round.
    let err = enclave_attest::verify(&doc, &host.options(allowing(any()))).unwrap_err();
    assert!(matches!(err, Error::DebugMode), "{err:?}");
    let mut mode = any();
    mode.allow_debug_mode = true;
    let err = enclave_attest::verify(&doc, &host.options(mode.clone())).unwrap_err();
    assert!(matches!(err, Error::DebugCapabilities { .. }), "{err:?}");
    // Both allowed: accepted, and the report shows both.
    let report = enclave_attest::verify(&doc, &host.options(allowing(mode))).unwrap();
    assert!(report.debug_mode);
    assert_eq!(
        report.debug_capabilities,
        DebugCapabilities::Granted {
            capabilities: vec![Capability::Cp]
        }
    );
    let text = report.to_string();
    assert!(text.contains("Nitro debug mode"), "{text}");
    assert!(text.contains("debug caps:   debug.cp"), "{text}");
}

#[test]
fn a_pcr_mismatch_is_reported_before_the_debug_surface() {
    let host = Host::new();
    let marker = debug_marker(&[Capability::Exec]).unwrap();
    let doc = host.document(Some(&[&marker]));
    let other = Policy::new(Expectation::pcrs([(0, vec![0xbb; 48])]).unwrap());
    assert!(matches!(
        enclave_attest::verify(&doc, &host.options(other)),
        Err(Error::PcrMismatch { index: 0, .. })
    ));
}
