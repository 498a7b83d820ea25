//! The NSM messages: byte for byte what the NSM API crate's `/dev/nsm` driver sends (it
//! encodes with serde_cbor), so the hardware and emulated NSMs take the same requests; and the
//! emulated NSM's framing over a socket.

use std::os::unix::net::UnixListener;

use enclave_nsm::{
    decode_request, decode_response, encode_request, encode_response, read_request, write_response,
    EmulatedNsm, ErrorCode, Nsm, NsmError, Request, Response,
};
use enclave_proto::transport::Addr;
use serde_bytes::ByteBuf;

fn requests() -> Vec<Request> {
    vec![
        Request::DescribePCR { index: 3 },
        Request::ExtendPCR {
            index: 16,
            data: vec![1, 2, 3],
        },
        Request::LockPCR { index: 16 },
        Request::LockPCRs { range: 20 },
        Request::DescribeNSM,
        Request::Attestation {
            user_data: Some(ByteBuf::from(vec![9; 5])),
            nonce: None,
            public_key: Some(ByteBuf::from(vec![])),
        },
        Request::GetRandom,
    ]
}

#[test]
fn requests_are_encoded_as_the_driver_encodes_them() {
    for r in requests() {
        let ours = encode_request(&r).unwrap();
        assert_eq!(ours, serde_cbor::to_vec(&r).unwrap(), "{r:?}");
        let back = decode_request(&ours).unwrap();
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
    }
    // The two simplest, spelled out: a unit variant is its name as text.
    assert_eq!(encode_request(&Request::GetRandom).unwrap()[0], 0x69);
}

#[test]
fn responses_from_the_driver_decode() {
    let responses = vec![
        Response::DescribePCR {
            lock: true,
            data: vec![0; 48],
        },
        Response::Attestation {
            document: vec![0x84, 1, 2],
        },
        Response::GetRandom {
            random: vec![7; 256],
        },
        Response::LockPCRs,
        Response::Error(ErrorCode::InvalidIndex),
    ];
    for r in responses {
        let theirs = serde_cbor::to_vec(&r).unwrap();
        assert_eq!(encode_response(&r).unwrap(), theirs);
        let ours = decode_response(&theirs).unwrap();
        assert_eq!(format!("{ours:?}"), format!("{r:?}"));
    }
    assert!(matches!(decode_response(b"\xff"), Err(NsmError::Cbor(_))));
}

#[test]
fn the_emulated_client_speaks_one_frame_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nsm.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let response = match read_request(&mut s).unwrap().unwrap() {
                Request::GetRandom => Response::GetRandom {
                    random: vec![1; 256],
                },
                _ => Response::Error(ErrorCode::InvalidOperation),
            };
            write_response(&mut s, &response).unwrap();
        }
    });
    let nsm = EmulatedNsm::at(Addr::Unix(path));
    assert_eq!(nsm.get_random().unwrap(), vec![1; 256]);
    assert!(matches!(
        nsm.attest(None, None, None),
        Err(NsmError::Refused(ErrorCode::InvalidOperation))
    ));
    server.join().unwrap();
}
