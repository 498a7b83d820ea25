//! The emulated NSM end to end on the host: the enclave's client ([`EmulatedNsm`]) asks the
//! supervisor's socket server ([`NsmServer`]), whose documents verify under the emulation root.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use enclave_nsm::emulated::{EmulatedDevice, EmulationCa, NsmServer};
use enclave_nsm::{decode_response, EmulatedNsm, ErrorCode, Nsm, Response};
use enclave_proto::transport::Addr;
use enclave_proto::wire::frame::{read_frame, write_frame};

#[test]
fn the_enclave_gets_documents_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap());
    let pcrs: BTreeMap<u8, [u8; 48]> = [(0, [0x11; 48]), (1, [0x22; 48]), (2, [0x33; 48])]
        .into_iter()
        .collect();
    let device = EmulatedDevice::new(ca.clone(), &"ef".repeat(32), &pcrs);
    let path = dir.path().join("vsock.sock_9001");
    let server = NsmServer::start(&path, device).unwrap();

    let client = EmulatedNsm::at(Addr::Unix(path.clone()));
    let doc = client.attest(None, Some(vec![5; 16]), None).unwrap();
    let expected = enclave_attest::Expectation::pcrs([(0, vec![0x11; 48])]).unwrap();
    let opts = enclave_attest::VerifyOptions {
        roots: enclave_attest::TrustRoot::from_pem_or_der(&std::fs::read(ca.root_path()).unwrap())
            .unwrap(),
        ..enclave_attest::VerifyOptions::new(enclave_attest::Policy::new(expected))
    };
    let report = enclave_attest::verify(&doc, &opts).unwrap();
    assert_eq!(report.pcrs[&0].0, vec![0x11; 48]);
    assert_eq!(report.nonce.unwrap().0, vec![5; 16]);
    assert_eq!(client.get_random().unwrap().len(), 256);
    assert_eq!(client.describe_pcr(2).unwrap(), (true, vec![0x33; 48]));

    // Garbage is answered with an error, and the server keeps serving.
    let mut raw = UnixStream::connect(&path).unwrap();
    write_frame(&mut raw, b"\xff\xff").unwrap();
    let frame = read_frame(&mut raw).unwrap().unwrap();
    assert!(matches!(
        decode_response(frame.payload()).unwrap(),
        Response::Error(ErrorCode::InvalidOperation)
    ));
    assert!(client.get_random().is_ok());
    drop(server);
    assert!(!path.exists());
}
