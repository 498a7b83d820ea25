//! The encrypted session as a man in the middle sees it: records that are altered, replayed,
//! reordered, dropped, cut or injected end the stream; a handshake recorded and replayed to the
//! enclave, or relayed through an attacker's own sessions, gets nowhere.

use std::io::{Cursor, ErrorKind, Read, Write};

use enclave_proto::wire::secure::{SecureReader, SecureWriter, ServerCheck, Transport};
use enclave_proto::wire::{
    decode_bytes, encode, encode_frame, lay_out_data, read_message, write_message, Capability,
    Channel, ClientMessage, ClientSession, ErrorCode, Request, ServerMessage, ServerSession,
    SessionError, Verdict, LAID_OUT_BUFFER, LAID_OUT_DATA_AT, MAX_DATA_CHUNK, MAX_FRAME_LEN,
    RECORD_DATA_CHUNK,
};

mod session_support;
use session_support::*;

/// A server and a client through the handshake (not yet authenticated), with both transports
/// and the client's auth message, still unsent.
fn handshaken(
    s: &mut ServerSession,
    c: &mut ClientSession,
) -> (Transport, Transport, Option<ClientMessage>) {
    let (_, v) = s
        .on_recv_frame(&encode(&c.hello().unwrap()).unwrap())
        .unwrap();
    let Verdict::Respond(sh) = v else { panic!() };
    let (_, v) = c.on_recv_frame(&encode(&sh).unwrap()).unwrap();
    let Verdict::Respond(msg1) = v else { panic!() };
    let (_, v) = s.on_recv_frame(&encode(&msg1).unwrap()).unwrap();
    let Verdict::Respond(msg2) = v else { panic!() };
    c.on_recv_frame(&encode(&msg2).unwrap()).unwrap();
    let server_t = s.take_transport().unwrap();
    let client_t = c.take_transport().unwrap();
    let auth = c.auth().unwrap();
    (server_t, client_t, auth)
}

/// Records as the client's writer produces them, one `flush` per message.
fn sealed(t: &Transport, msgs: &[ClientMessage]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut w = SecureWriter::new(Vec::new(), t.state());
    for m in msgs {
        write_message(&mut w, m).unwrap();
        w.flush().unwrap();
        records.push(std::mem::take(w.get_mut()));
    }
    records
}

fn ping(id: u32) -> ClientMessage {
    ClientMessage::Request {
        id,
        request: Request::Ping {
            payload: u64::from(id),
        },
    }
}

fn read_all(t: &Transport, bytes: Vec<u8>) -> (Vec<ClientMessage>, Option<std::io::Error>) {
    let mut r = SecureReader::new(Cursor::new(bytes), t.state());
    let mut got = Vec::new();
    loop {
        match read_message::<ClientMessage>(&mut r) {
            Ok(Some(m)) => got.push(m),
            Ok(None) => return (got, None),
            Err(enclave_proto::wire::MessageError::Frame(enclave_proto::wire::FrameError::Io(
                e,
            ))) => return (got, Some(e)),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

fn pair() -> (Transport, Transport) {
    let mut s = server(&[], &[key(1)]);
    let mut c = client(&[], Some(key(1)));
    let (st, ct, _) = handshaken(&mut s, &mut c);
    (st, ct)
}

#[test]
fn records_round_trip_in_order() {
    let (st, ct) = pair();
    let msgs: Vec<ClientMessage> = (1..=50).map(ping).collect();
    let bytes = sealed(&ct, &msgs).concat();
    let (got, err) = read_all(&st, bytes);
    assert!(err.is_none());
    assert_eq!(got, msgs);
}

#[test]
fn large_frames_span_records_and_arrive_whole() {
    let (st, ct) = pair();
    let msgs: Vec<ClientMessage> = (1..=20)
        .map(|id| ClientMessage::Data {
            id,
            channel: enclave_proto::wire::Channel::Stdin,
            data: (0..enclave_proto::wire::MAX_DATA_CHUNK)
                .map(|i| (i * id as usize) as u8)
                .collect(),
        })
        .collect();
    let mut w = SecureWriter::new(Vec::new(), ct.state());
    for m in &msgs {
        write_message(&mut w, m).unwrap();
    }
    w.flush().unwrap();
    let (got, err) = read_all(&st, w.get_mut().clone());
    assert!(err.is_none());
    assert_eq!(got, msgs);
}

/// Frames written whole ([`SecureWriter::write_frame`], as both ends do) come back from
/// [`SecureReader::read_frame`] in order, the ones that fit a record as slices of that
/// record's buffer: a `Data` message of the senders' chunk size is never copied on receipt.
#[test]
fn frames_written_whole_are_read_in_place() {
    let (st, ct) = pair();
    let data = |id: u32, len: usize| ClientMessage::Data {
        id,
        channel: Channel::File,
        data: vec![id as u8; len].into(),
    };
    // Small frames sharing records, then full-size chunks, a frame too large for one record
    // (spans two) and small ones after it.
    let mut msgs: Vec<ClientMessage> = (1..=5).map(ping).collect();
    msgs.extend((6..=9).map(|id| data(id, RECORD_DATA_CHUNK)));
    msgs.push(data(10, MAX_DATA_CHUNK));
    msgs.extend((11..=12).map(ping));
    let mut w = SecureWriter::new(Vec::new(), ct.state());
    for m in &msgs {
        w.write_frame(&encode_frame(m).unwrap()).unwrap();
    }
    w.flush().unwrap();
    let mut r = SecureReader::new(Cursor::new(w.get_mut().clone()), st.state());
    let mut frames = Vec::new();
    while let Some(f) = r.read_frame(MAX_FRAME_LEN).unwrap() {
        frames.push(f);
    }
    let got: Vec<ClientMessage> = frames.iter().map(|f| decode_bytes(f).unwrap()).collect();
    assert_eq!(got, msgs);
    // The five pings came in one record: each frame's payload follows the previous one's in
    // one buffer (4 bytes of length between them).
    for pair in frames[..5].windows(2) {
        let after = pair[0].as_ptr() as usize + pair[0].len() + 4;
        assert_eq!(pair[1].as_ptr() as usize, after);
    }
    // Each full-size chunk is alone in its record, and its data is a slice of that frame.
    for (f, m) in frames[5..9].iter().zip(&msgs[5..9]) {
        let ClientMessage::Data { data, .. } = decode_bytes::<ClientMessage>(f).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            data.as_ptr() as usize,
            f.as_ptr() as usize + f.len() - data.len()
        );
        assert_eq!(&decode_bytes::<ClientMessage>(f).unwrap(), m);
    }
}

/// `Data` frames laid out with room around their bytes and sealed where they lie
/// ([`SecureWriter::write_frames_in_place`], how `cp` sends a file's chunks), one or several
/// at a time, read back as the same messages written whole would, in order with the frames
/// written around them; data too large for the layout, or a buffer without room for the
/// record, is refused and nothing of the call is written.
#[test]
fn frames_sealed_in_place_read_back_in_order_with_the_others() {
    let (st, ct) = pair();
    let pattern = |id: u32, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(id) as u8)
            .collect()
    };
    let mut w = SecureWriter::new(Vec::new(), ct.state());
    let laid_out = |id: u32, len: usize| {
        let mut buf = vec![0; LAID_OUT_BUFFER];
        buf[LAID_OUT_DATA_AT..LAID_OUT_DATA_AT + len].copy_from_slice(&pattern(id, len));
        let frame = lay_out_data(&mut buf, id, Channel::File, len).unwrap();
        buf[frame].to_vec()
    };
    w.write_frame(&encode_frame(&ping(1)).unwrap()).unwrap();
    let (mut a, mut b) = (laid_out(2, RECORD_DATA_CHUNK), laid_out(3, 1000));
    w.write_frames_in_place(&mut [&mut a, &mut b]).unwrap();
    w.write_frame(&encode_frame(&ping(4)).unwrap()).unwrap();
    let mut c = laid_out(5, 10);
    let no_room = w
        .write_frames_in_place(&mut [&mut c, &mut [0; 17]])
        .unwrap_err();
    assert_eq!(no_room.kind(), ErrorKind::InvalidInput);
    w.write_frames_in_place(&mut [&mut c]).unwrap();
    let mut big = vec![0; LAID_OUT_BUFFER + 1];
    assert!(lay_out_data(&mut big, 5, Channel::File, RECORD_DATA_CHUNK + 1).is_err());
    w.flush().unwrap();
    let (got, err) = read_all(&st, w.get_mut().clone());
    assert!(err.is_none(), "{err:?}");
    let data = |id: u32, len: usize| ClientMessage::Data {
        id,
        channel: Channel::File,
        data: pattern(id, len).into(),
    };
    assert_eq!(
        got,
        [
            ping(1),
            data(2, RECORD_DATA_CHUNK),
            data(3, 1000),
            ping(4),
            data(5, 10)
        ]
    );
}

#[test]
fn any_changed_byte_ends_the_stream_without_delivering_it() {
    let (st, ct) = pair();
    let records = sealed(&ct, &[ping(1), ping(2)]);
    for at in 0..records[1].len() {
        let mut bytes = records.concat();
        bytes[records[0].len() + at] ^= 0x01;
        let (got, err) = read_all(&st, bytes);
        assert_eq!(
            got,
            vec![ping(1)],
            "byte {at}: only the intact record is delivered"
        );
        let err = err.unwrap_or_else(|| panic!("byte {at}: the change went unnoticed"));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ),
            "{err}"
        );
    }
}

#[test]
fn replayed_reordered_dropped_or_injected_records_are_refused() {
    let (st, ct) = pair();
    let r = sealed(&ct, &[ping(1), ping(2), ping(3)]);
    let refused = |bytes: Vec<u8>, delivered: usize| {
        let (got, err) = read_all(&st, bytes);
        assert_eq!(got.len(), delivered);
        assert_eq!(err.unwrap().kind(), ErrorKind::InvalidData);
    };
    refused([&r[0][..], &r[0][..]].concat(), 1); // replayed
    refused([&r[1][..], &r[0][..]].concat(), 0); // reordered
    refused([&r[0][..], &r[2][..]].concat(), 1); // dropped
                                                 // Injected: a record sealed by someone with another session's keys.
    let (_, other) = pair();
    let forged = sealed(
        &other,
        &[ClientMessage::Request {
            id: 2,
            request: Request::Shutdown,
        }],
    );
    refused([&r[0][..], &forged[0][..]].concat(), 1);
    // The server's own records are not the client's (each direction has its own key).
    let mut back = SecureWriter::new(Vec::new(), st.state());
    write_message(
        &mut back,
        &ServerMessage::Authenticated {
            capabilities: vec![],
        },
    )
    .unwrap();
    back.flush().unwrap();
    refused(back.get_mut().clone(), 0);
}

#[test]
fn a_stream_cut_inside_a_record_is_an_error_and_between_records_an_end() {
    let (st, ct) = pair();
    let r = sealed(&ct, &[ping(1), ping(2)]);
    let (got, err) = read_all(&st, r[0].clone());
    assert_eq!((got.len(), err.is_none()), (1, true));
    for cut in 1..r[1].len() {
        let bytes = [&r[0][..], &r[1][..cut]].concat();
        let (got, err) = read_all(&st, bytes);
        assert_eq!(got.len(), 1);
        assert!(err.is_some(), "cut at {cut}");
    }
    // A record announcing no plaintext at all is refused.
    let (got, err) = read_all(&st, vec![0, 16, 0, 0]);
    assert!(got.is_empty());
    assert_eq!(err.unwrap().kind(), ErrorKind::InvalidData);
}

#[test]
fn a_recorded_handshake_replayed_to_the_enclave_gets_nowhere() {
    // A session recorded off the wire: the client's hello, handshake message and the
    // encrypted auth and shutdown request that followed.
    let mut s = server(&[], &[key(1)]);
    let mut c = client(&[], Some(key(1)));
    let hello = encode(&c.hello().unwrap()).unwrap();
    let (_, v) = s.on_recv_frame(&hello).unwrap();
    let Verdict::Respond(sh) = v else { panic!() };
    let (_, v) = c.on_recv_frame(&encode(&sh).unwrap()).unwrap();
    let Verdict::Respond(msg1) = v else { panic!() };
    let msg1 = encode(&msg1).unwrap();
    let (_, v) = s.on_recv_frame(&msg1).unwrap();
    let Verdict::Respond(msg2) = v else { panic!() };
    c.on_recv_frame(&encode(&msg2).unwrap()).unwrap();
    let ct = c.take_transport().unwrap();
    let auth = c.auth().unwrap().unwrap();
    let recorded = sealed(
        &ct,
        &[
            auth,
            ClientMessage::Request {
                id: 1,
                request: Request::Shutdown,
            },
        ],
    )
    .concat();

    // Replayed byte for byte to a fresh connection: the enclave answers with new ephemeral
    // keys, so the recorded records do not open.
    let mut replay = server(&[], &[key(1)]);
    replay.on_recv_frame(&hello).unwrap();
    replay.on_recv_frame(&msg1).unwrap();
    let fresh = replay.take_transport().unwrap();
    let (got, err) = read_all(&fresh, recorded);
    assert!(got.is_empty());
    assert_eq!(err.unwrap().kind(), ErrorKind::InvalidData);
    assert!(!replay.is_ready());
}

#[test]
fn a_relay_with_its_own_sessions_cannot_pass_for_either_end() {
    // The relay answers the client as if it were the enclave (its own identity) and opens its
    // own session to the enclave. The client that pinned the enclave's key refuses at once.
    let relay_identity =
        std::sync::Arc::new(enclave_proto::wire::secure::ControlIdentity::generate().unwrap());
    let mut relay_as_server = server_with(&[], &[key(1)], relay_identity.clone());
    let mut c = client(&[], Some(key(1)));
    let err = connect(&mut relay_as_server, &mut c).unwrap_err();
    assert!(matches!(err, SessionError::Handshake(_)), "{err}");

    // A careless client that accepts any enclave does authenticate to the relay, but the
    // proof names the relay's session: replayed into the relay's session with the enclave it is
    // refused, and the relay holds no key of its own.
    let mut relay_as_server = server_with(&[], &[key(1)], relay_identity);
    let mut careless = client_checking(&[], Some(key(1)), ServerCheck::AnyEnclave);
    let (_, _, proof) = handshaken(&mut relay_as_server, &mut careless);
    let proof = proof.unwrap();
    let mut enclave = server(&[Capability::Exec], &[key(1)]);
    let mut relay_as_client = client(&[], None);
    connect(&mut enclave, &mut relay_as_client).unwrap();
    let err = enclave.on_recv(&proof).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    assert!(!enclave.is_ready());
}

#[test]
fn the_encrypted_stream_works_over_a_socket_both_ways() {
    let (st, ct) = pair();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = SecureWriter::new(a, ct.state());
        for id in 1..=1000 {
            write_message(&mut w, &ping(id)).unwrap();
            if id % 7 == 0 {
                w.flush().unwrap();
            }
        }
        w.flush().unwrap();
    });
    let mut r = SecureReader::new(b, st.state());
    for id in 1..=1000 {
        assert_eq!(
            read_message::<ClientMessage>(&mut r).unwrap(),
            Some(ping(id))
        );
    }
    writer.join().unwrap();
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
}
