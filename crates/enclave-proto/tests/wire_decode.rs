//! Decoding refuses what is not a valid message: garbage, unknown types and fields, oversize
//! data, id 0, wrong-size keys, trailing bytes, deep nesting, huge declared lengths.

use enclave_proto::wire::{
    decode, encode, Capability, Channel, ClientMessage, MessageError, Request, ServerMessage,
    MAX_DATA_CHUNK,
};

#[test]
fn garbage_is_refused() {
    for garbage in [
        &b""[..],
        b"\xff",
        b"\x00\x01\x02",
        b"hello world",
        &[0x9f; 100],
        &[0xbf; 3],
    ] {
        assert!(decode::<ClientMessage>(garbage).is_err(), "{garbage:?}");
        assert!(decode::<ServerMessage>(garbage).is_err(), "{garbage:?}");
    }
}

/// CBOR of a value written with serde_json-like structure via ciborium, for hand-made messages.
fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn map(entries: Vec<(&str, ciborium::Value)>) -> ciborium::Value {
    ciborium::Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

#[test]
fn unknown_message_type_is_refused() {
    let msg = map(vec![("launch_missiles", map(vec![("id", 1.into())]))]);
    assert!(matches!(
        decode::<ClientMessage>(&cbor(&msg)),
        Err(MessageError::Decode(_))
    ));
    assert!(decode::<ClientMessage>(&cbor(&"teleport".into())).is_err());
    // A server message is not a client message.
    assert!(decode::<ClientMessage>(
        &encode(&ServerMessage::Authenticated {
            capabilities: vec![]
        })
        .unwrap()
    )
    .is_err());
}

#[test]
fn unknown_fields_are_refused_except_in_hellos() {
    let cancel = map(vec![(
        "cancel",
        map(vec![("id", 1.into()), ("extra", 2.into())]),
    )]);
    assert!(decode::<ClientMessage>(&cbor(&cancel)).is_err());
    let request = map(vec![(
        "request",
        map(vec![
            ("id", 1.into()),
            (
                "request",
                map(vec![(
                    "ping",
                    map(vec![("payload", 1.into()), ("x", 1.into())]),
                )]),
            ),
        ]),
    )]);
    assert!(decode::<ClientMessage>(&cbor(&request)).is_err());
    // A newer client's hello with fields this version does not know still negotiates.
    let hello = map(vec![(
        "hello",
        map(vec![
            ("version", 7.into()),
            (
                "capabilities",
                ciborium::Value::Array(vec!["debug.exec".into(), "debug.future".into()]),
            ),
            ("client", "future".into()),
            ("compression", "zstd".into()),
        ]),
    )]);
    let decoded = decode::<ClientMessage>(&cbor(&hello)).unwrap();
    let ClientMessage::Hello(h) = decoded else {
        panic!("not a hello")
    };
    assert_eq!(h.version, 7);
    assert_eq!(h.capabilities, vec![Capability::Exec, Capability::Unknown]);
}

/// `exec -u`: an exec request without `user` (an older client) still decodes, one with it
/// carries it, and fields beyond it are still refused.
#[test]
fn exec_user_is_optional_and_unknown_exec_fields_are_still_refused() {
    let exec = |extra: Vec<(&str, ciborium::Value)>| {
        let mut fields = vec![(
            "argv",
            ciborium::Value::Array(vec!["id".into(), "-u".into()]),
        )];
        fields.extend(extra);
        map(vec![(
            "request",
            map(vec![
                ("id", 1.into()),
                ("request", map(vec![("exec", map(fields))])),
            ]),
        )])
    };
    let user_of = |msg: ClientMessage| match msg {
        ClientMessage::Request {
            request: Request::Exec(e),
            ..
        } => e.user,
        other => panic!("not an exec request: {other:?}"),
    };
    assert_eq!(user_of(decode(&cbor(&exec(vec![]))).unwrap()), None);
    assert_eq!(
        user_of(decode(&cbor(&exec(vec![("user", "nobody".into())]))).unwrap()),
        Some("nobody".to_owned())
    );
    assert!(decode::<ClientMessage>(&cbor(&exec(vec![("group", "0".into())]))).is_err());
    assert!(decode::<ClientMessage>(&cbor(&exec(vec![("user", 0.into())]))).is_err());
}

#[test]
fn structural_limits_are_enforced() {
    let big = ClientMessage::Data {
        id: 1,
        channel: Channel::Stdin,
        data: vec![0; MAX_DATA_CHUNK + 1].into(),
    };
    assert!(matches!(encode(&big), Err(MessageError::Invalid(_))));
    // Made by hand, so encode's check is bypassed: decode refuses it too.
    let raw = map(vec![(
        "data",
        map(vec![
            ("id", 1.into()),
            ("channel", "stdin".into()),
            ("data", ciborium::Value::Bytes(vec![0; MAX_DATA_CHUNK + 1])),
        ]),
    )]);
    assert!(matches!(
        decode::<ClientMessage>(&cbor(&raw)),
        Err(MessageError::Invalid(_))
    ));
    let zero = ClientMessage::Cancel { id: 0 };
    assert!(encode(&zero).is_err());
    assert!(
        decode::<ClientMessage>(&cbor(&map(vec![("cancel", map(vec![("id", 0.into())]))])))
            .is_err()
    );
    // Wrong sizes of fixed byte strings.
    let auth = map(vec![(
        "auth",
        map(vec![
            ("public_key", ciborium::Value::Bytes(vec![1; 31])),
            ("client_nonce", ciborium::Value::Bytes(vec![2; 32])),
            ("signature", ciborium::Value::Bytes(vec![3; 64])),
        ]),
    )]);
    assert!(decode::<ClientMessage>(&cbor(&auth)).is_err());
}

#[test]
fn trailing_bytes_and_deep_nesting_are_refused() {
    let mut bytes = encode(&ClientMessage::Cancel { id: 1 }).unwrap();
    bytes.push(0);
    assert!(matches!(
        decode::<ClientMessage>(&bytes),
        Err(MessageError::TrailingBytes(1))
    ));
    // 10 000 nested arrays: refused by the recursion limit, not by a stack overflow.
    let deep = vec![0x81u8; 10_000];
    assert!(decode::<ClientMessage>(&deep).is_err());
    assert!(decode::<ServerMessage>(&deep).is_err());
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // A byte string / array / map claiming 2^63 elements in a few bytes.
    for bytes in [
        &[
            0xa1, 0x64, b'd', b'a', b't', b'a', 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff,
        ][..],
        &[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(decode::<ClientMessage>(bytes).is_err());
    }
}

/// `cp_file_end` carries no digest since the session is encrypted: the old form with a
/// `sha256` is refused like any unknown field, and the old `checksum_mismatch` error code, which
/// only a digest could trigger, decodes as `unknown` instead of failing the connection.
#[test]
fn cp_file_end_has_no_digest_and_checksum_mismatch_is_unknown() {
    let bytes = |b: &[u8]| ciborium::Value::Bytes(b.to_vec());
    let old = map(vec![(
        "cp_file_end",
        map(vec![("id", 1.into()), ("sha256", bytes(&[0; 32]))]),
    )]);
    assert!(decode::<ClientMessage>(&cbor(&old)).is_err());
    assert!(decode::<ServerMessage>(&cbor(&old)).is_err());
    let new = map(vec![("cp_file_end", map(vec![("id", 1.into())]))]);
    assert_eq!(
        decode::<ClientMessage>(&cbor(&new)).unwrap(),
        ClientMessage::CpFileEnd { id: 1 }
    );
    let error = map(vec![(
        "error",
        map(vec![
            ("id", 1.into()),
            ("code", "checksum_mismatch".into()),
            ("message", "x".into()),
        ]),
    )]);
    let ServerMessage::Error { code, .. } = decode::<ServerMessage>(&cbor(&error)).unwrap() else {
        panic!("not an error")
    };
    assert_eq!(code, enclave_proto::wire::ErrorCode::Unknown);
}
