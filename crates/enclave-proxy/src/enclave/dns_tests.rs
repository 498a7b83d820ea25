use super::*;

const TYPE_AAAA: u16 = 28;

fn name_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, id, 0x0100, 1, 0, 0);
    out.extend_from_slice(&name_wire(name));
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

fn with_opt(mut q: Vec<u8>, version: u8, options: &[u8]) -> Vec<u8> {
    q[11] = 1;
    q.push(0);
    q.extend_from_slice(&TYPE_OPT.to_be_bytes());
    q.extend_from_slice(&4096u16.to_be_bytes());
    q.extend_from_slice(&[0, version, 0x80, 0]);
    q.extend_from_slice(&(options.len() as u16).to_be_bytes());
    q.extend_from_slice(options);
    q
}

#[test]
fn good_query_and_a_answer() {
    let packet = query(0xbeef, "Api.Example.com", TYPE_A);
    let q = parse_query(&packet).unwrap();
    assert_eq!(q.id, 0xbeef);
    assert!(q.recursion_desired);
    assert_eq!(q.name, "api.example.com");
    assert!(q.wants_address());
    assert_eq!(q.edns, None);

    let r = q.response(Answer::Address(Ipv4Addr::new(127, 0, 0, 7)));
    let question_end = packet.len();
    // Header: id, QR|AA|RD|RA NOERROR, 1 question, 1 answer, 0, 0.
    assert_eq!(&r[..12], &[0xbe, 0xef, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    // The question is echoed byte for byte (letter case included).
    assert_eq!(&r[12..question_end], &packet[12..]);
    assert_eq!(
        &r[question_end..],
        &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 7]
    );
}

#[test]
fn nodata_nxdomain_servfail_refused() {
    let q = parse_query(&query(1, "a.b", TYPE_AAAA)).unwrap();
    assert!(!q.wants_address());
    let nodata = q.response(Answer::NoData);
    assert_eq!(nodata[3] & 0xf, Rcode::NoError as u8);
    assert_eq!(&nodata[6..8], &[0, 0]);
    assert_eq!(q.response(Answer::NxDomain)[3] & 0xf, Rcode::NxDomain as u8);
    assert_eq!(q.response(Answer::ServFail)[3] & 0xf, Rcode::ServFail as u8);
    assert_eq!(q.response(Answer::Refused)[3] & 0xf, Rcode::Refused as u8);
    // The root name parses (and is simply not allowed).
    assert_eq!(parse_query(&query(1, "", TYPE_A)).unwrap().name, "");
}

#[test]
fn edns_is_accepted_and_answered_with_opt() {
    let packet = with_opt(
        query(2, "a.b", TYPE_A),
        0,
        &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    let q = parse_query(&packet).unwrap();
    assert_eq!(
        q.edns,
        Some(Edns {
            udp_size: 4096,
            version: 0
        })
    );
    let r = q.response(Answer::Address(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(&r[10..12], &[0, 1], "one additional record");
    assert_eq!(
        &r[r.len() - 11..],
        &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]
    );

    let q = parse_query(&with_opt(query(3, "a.b", TYPE_A), 1, &[])).unwrap();
    let r = q.response(Answer::Address(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(&r[6..8], &[0, 0], "no answer with BADVERS");
    assert_eq!(r[r.len() - 11 + 5], 1, "extended rcode 1 (BADVERS)");
}

#[test]
fn malformed_queries_are_refused() {
    let good = query(9, "a.example", TYPE_A);
    let mut cases: Vec<(Vec<u8>, DnsError)> = Vec::new();
    cases.push((good[..11].to_vec(), DnsError::Short));
    let mut response = good.clone();
    response[2] |= 0x80;
    cases.push((response, DnsError::NotQuery));
    let mut notify = good.clone();
    notify[2] |= 4 << 3;
    cases.push((notify, DnsError::Opcode(4)));
    let mut two = good.clone();
    two[5] = 2;
    two.extend_from_slice(&good[12..]);
    cases.push((two, DnsError::QuestionCount(2)));
    let mut zero = good.clone();
    zero[5] = 0;
    cases.push((zero, DnsError::QuestionCount(0)));
    let mut answers = good.clone();
    answers[7] = 1;
    cases.push((
        answers,
        DnsError::Records("answer or authority records in a query"),
    ));
    let mut many_ar = good.clone();
    many_ar[11] = 2;
    cases.push((
        many_ar,
        DnsError::Records("more than one additional record"),
    ));
    // A compression pointer as the question's name (to the header, say).
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x00, 0, 1, 0, 1]);
    cases.push((
        pointer,
        DnsError::Name("compression pointer in the question"),
    ));
    // A pointer after a first label.
    let mut late_pointer = good[..12].to_vec();
    late_pointer.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
    cases.push((
        late_pointer,
        DnsError::Name("compression pointer in the question"),
    ));
    let mut extended = good[..12].to_vec();
    extended.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
    cases.push((extended, DnsError::Name("extended label type")));
    // 5 labels of 63 bytes: 320 bytes on the wire.
    let long = vec!["x".repeat(63); 5].join(".");
    cases.push((
        query(1, &long, TYPE_A),
        DnsError::Name("longer than 255 bytes"),
    ));
    let mut dotted = good[..12].to_vec();
    dotted.extend_from_slice(&[3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
    cases.push((
        dotted,
        DnsError::Name("characters other than letters, digits, '-' and '_'"),
    ));
    let mut chaos = good.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    cases.push((chaos, DnsError::Class(3)));
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push((trailing, DnsError::Trailing(1)));
    let mut not_opt = good.clone();
    not_opt[11] = 1;
    not_opt.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    cases.push((
        not_opt,
        DnsError::Records("an additional record that is not EDNS OPT"),
    ));
    let mut short_opt = with_opt(good.clone(), 0, &[1, 2, 3]);
    short_opt.pop();
    cases.push((short_opt, DnsError::Truncated));

    for (packet, want) in cases {
        assert_eq!(parse_query(&packet), Err(want.clone()), "{packet:02x?}");
        let reply = error_response(&packet, &want);
        match want.rcode() {
            None => assert_eq!(reply, None),
            Some(rcode) => {
                let reply = reply.unwrap();
                assert_eq!(&reply[..2], &packet[..2], "id echoed");
                assert_eq!(reply[2] & 0x80, 0x80, "QR set");
                assert_eq!(reply[3] & 0xf, rcode as u8);
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let packets = [
        query(1, "db.internal", TYPE_A),
        with_opt(query(1, "db.internal", TYPE_A), 0, &[0, 8, 0, 2, 0, 1]),
    ];
    for packet in packets {
        assert!(parse_query(&packet).is_ok());
        for cut in 0..packet.len() {
            let err = parse_query(&packet[..cut]).unwrap_err();
            let _ = error_response(&packet[..cut], &err);
        }
    }
}

#[test]
fn every_byte_value_at_every_position_is_handled() {
    // A cheap deterministic sweep standing in for the fuzz target.
    let base = with_opt(query(7, "a.bc", TYPE_A), 0, &[]);
    for i in 0..base.len() {
        for b in 0..=255u8 {
            let mut p = base.clone();
            p[i] = b;
            match parse_query(&p) {
                Ok(q) => drop(q.response(Answer::Address(Ipv4Addr::LOCALHOST))),
                Err(e) => drop(error_response(&p, &e)),
            }
        }
    }
}
