//! The device's requests end to end, with messages built by hand as the kernel writes them and
//! a fake NSM.

use std::sync::Mutex;

use enclave_nsm::{decode_response, encode_request, NsmError, Request};

use super::ioctl::{NsmMessage, NSM_IOCTL};
use super::proto::tests::{ioctl, message};
use super::proto::{decode, IoVec, FUSE_IOCTL_RETRY, FUSE_IOCTL_UNRESTRICTED};
use super::*;

/// Records the requests; extends answer with a fixed value.
#[derive(Default)]
struct FakeNsm(Mutex<Vec<Request>>);

impl Nsm for FakeNsm {
    fn process(&self, request: Request) -> Result<Response, NsmError> {
        let r = match &request {
            Request::ExtendPCR { index: 16, .. } => Response::ExtendPCR { data: vec![7; 48] },
            _ => Response::Error(ErrorCode::InvalidOperation),
        };
        self.0.lock().unwrap().push(request);
        Ok(r)
    }
}

fn run(msg: &[u8], nsm: &FakeNsm) -> Option<Vec<u8>> {
    let (h, r) = decode(msg).unwrap();
    handle(h, r, &|req| forward(Some(nsm), req))
}

/// `fuse_out_header.error` and the body of a reply.
fn parts(reply: &[u8]) -> (i32, &[u8]) {
    assert_eq!(
        reply[..4],
        u32::try_from(reply.len()).unwrap().to_le_bytes()
    );
    let e = i32::from_le_bytes(reply[4..8].try_into().unwrap());
    (e, &reply[16..])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn an_extend_takes_three_calls() {
    let nsm = FakeNsm::default();
    let arg = 0x7000_0000;
    let f = FUSE_IOCTL_UNRESTRICTED;

    // 1: the kernel knows nothing; we ask for the message.
    let r = run(&ioctl(f, NSM_IOCTL, arg, &[], 0), &nsm).unwrap();
    let (err, body) = parts(&r);
    assert_eq!(err, 0);
    assert_eq!(u32_at(body, 4), FUSE_IOCTL_RETRY);
    assert_eq!((u32_at(body, 8), u32_at(body, 12)), (1, 0));

    // 2: the message; we ask for the request and map the response buffer.
    let req = encode_request(&Request::ExtendPCR {
        index: 16,
        data: b"probe".to_vec(),
    })
    .unwrap();
    let m = NsmMessage {
        request: IoVec {
            base: 0x6000,
            len: u64::try_from(req.len()).unwrap(),
        },
        response: IoVec {
            base: 0x8000,
            len: 0x3000,
        },
    };
    let r = run(&ioctl(f, NSM_IOCTL, arg, &m.encode(), 0), &nsm).unwrap();
    let (_, body) = parts(&r);
    assert_eq!((u32_at(body, 8), u32_at(body, 12)), (2, 2));
    assert!(nsm.0.lock().unwrap().is_empty());

    // 3: message and request; the reply is the updated message and the response.
    let mut data = m.encode().to_vec();
    data.extend_from_slice(&req);
    let r = run(&ioctl(f, NSM_IOCTL, arg, &data, 32 + 0x3000), &nsm).unwrap();
    let (err, body) = parts(&r);
    assert_eq!(err, 0);
    assert_eq!(u32_at(body, 0), 0, "ioctl result");
    assert_eq!(u32_at(body, 4), 0, "no retry");
    let updated = NsmMessage::decode(&body[16..]).unwrap();
    let response = &body[48..];
    assert_eq!(updated.response.len, u64::try_from(response.len()).unwrap());
    assert_eq!(updated.request, m.request);
    assert!(matches!(
        decode_response(response).unwrap(),
        Response::ExtendPCR { data } if data == vec![7; 48]
    ));
    assert_eq!(nsm.0.lock().unwrap().len(), 1);
}

#[test]
fn garbage_cbor_gets_the_nsms_error_and_no_nsm_is_eio() {
    let nsm = FakeNsm::default();
    let resp = forward(Some(&nsm), b"\xff\x00").unwrap();
    assert!(matches!(
        decode_response(&resp).unwrap(),
        Response::Error(ErrorCode::InvalidArgument)
    ));
    assert!(nsm.0.lock().unwrap().is_empty());
    assert_eq!(forward(None, b"").unwrap_err(), libc::EIO);
}

#[test]
fn other_operations_get_the_devices_errnos() {
    let nsm = FakeNsm::default();
    let errno = |op| parts(&run(&message(op, 9, &[0; 24]), &nsm).unwrap()).0;
    assert_eq!(errno(opcode::READ), -libc::EINVAL);
    assert_eq!(errno(opcode::WRITE), -libc::EINVAL);
    assert_eq!(errno(40), -libc::ENOSYS); // FUSE_POLL
    assert_eq!(errno(opcode::RELEASE), 0);
    let open = run(&message(opcode::OPEN, 9, &[0; 8]), &nsm).unwrap();
    assert_eq!(parts(&open), (0, &[0u8; 16][..]));
    assert_eq!(run(&message(opcode::INTERRUPT, 9, &[0; 8]), &nsm), None);
    // Another ioctl on the device.
    let r = run(&ioctl(FUSE_IOCTL_UNRESTRICTED, 0x5401, 0, &[], 0), &nsm).unwrap();
    assert_eq!(parts(&r).0, -libc::ENOTTY);
}

#[test]
fn init_is_answered_only_for_a_kernel_that_can_do_cuse() {
    let init = |major: u32, minor: u32| {
        let mut b = Vec::new();
        for v in [major, minor, 0, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        message(opcode::CUSE_INIT, 1, &b)
    };
    let r = init_reply(&init(7, 37)).unwrap();
    assert!(r.ends_with(b"DEVNAME=nsm\0"));
    assert!(matches!(init_reply(&init(7, 10)), Err(CuseError::Init(_))));
    assert!(matches!(init_reply(&init(8, 0)), Err(CuseError::Init(_))));
    assert!(matches!(
        init_reply(&message(opcode::OPEN, 1, &[0; 8])),
        Err(CuseError::Init(_))
    ));
    assert!(matches!(init_reply(&[1, 2]), Err(CuseError::Decode(_))));
}

#[test]
fn the_fuzz_body_survives_its_seeds() {
    let m = NsmMessage {
        request: IoVec { base: 1, len: 3 },
        response: IoVec { base: 2, len: 16 },
    }
    .encode();
    let mut third = m.to_vec();
    third.extend_from_slice(b"abc");
    let f = FUSE_IOCTL_UNRESTRICTED;
    let seeds = [
        ioctl(f, NSM_IOCTL, 8, &[], 0),
        ioctl(f, NSM_IOCTL, 8, &m, 0),
        ioctl(f, NSM_IOCTL, 8, &third, 48),
        ioctl(f, NSM_IOCTL, 8, &third, 40),
        message(opcode::CUSE_INIT, 1, &[7, 0, 0, 0, 31, 0, 0, 0]),
        message(opcode::READ, 2, &[]),
    ];
    for seed in &seeds {
        for n in 0..=seed.len() {
            fuzz_message(&seed[..n]);
        }
        // Every byte flipped: lengths and sizes that disagree.
        for i in 0..seed.len() {
            let mut s = seed.clone();
            s[i] ^= 0xff;
            fuzz_message(&s);
        }
    }
}
