use super::*;

/// What nft 1.0.6 sends after the netlink header (`nft --debug=mnl -f` with the table, chain and
/// rule of the module docs, redirect port 15001): nfgenmsg and attributes.
const NFT_TABLE: &str = "0200000013000100656e636c6176655f65677265737300000800020000000000";
const NFT_CHAIN: &str =
    "0200000013000100656e636c6176655f65677265737300000b0003006f75747075740000080007006e617400\
    14000480080001000000000308000200ffffff9c";
const NFT_RULE: &str =
    "0200000013000100656e636c6176655f65677265737300000b0002006f757470757400000401048034000180\
    0c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400\
    000000032c00018008000100636d700020000280080001000000000108000200000000010c00038007000100\
    7f00000024000180090001006d6574610000000014000280080002000000001008000100000000012c000180\
    08000100636d700020000280080001000000000108000200000000000c00038005000100060000002c000180\
    0e000100696d6d6564696174650000001800028008000100000000010c000280060001003a99000024000180\
    0a00010072656469720000001400028008000100000000010800030000000002";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Splits a batch into (type, flags, seq, body after the 16-byte header).
fn messages(mut buf: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0, "messages stay aligned");
        let ty = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let flags = u16::from_ne_bytes(buf[6..8].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        assert_eq!(&buf[12..16], &[0; 4], "port id 0");
        out.push((ty, flags, seq, buf[16..len].to_vec()));
        buf = &buf[len..];
    }
    out
}

#[test]
#[cfg(target_endian = "little")]
fn batch_matches_what_nft_sends() {
    let (batch, acks) = build_batch(15001, 100);
    let msgs = messages(&batch);
    let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(types, [16, 0xa00, 0xa02, 0xa00, 0xa03, 0xa06, 17]);
    let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
    assert_eq!(seqs, [100, 101, 102, 103, 104, 105, 106]);
    // Batch begin and end: family unspec, res_id = nf_tables (big-endian), no ack asked.
    assert_eq!(
        (msgs[0].1, msgs[0].3.as_slice()),
        (NLM_F_REQUEST, &[0u8, 0, 0, 10][..])
    );
    assert_eq!(
        (msgs[6].1, msgs[6].3.as_slice()),
        (NLM_F_REQUEST, &[0u8, 0, 0, 10][..])
    );
    // Every message in between asks for an ack, and is what nft sends.
    for m in &msgs[1..6] {
        assert_eq!(m.1 & (NLM_F_REQUEST | NLM_F_ACK), NLM_F_REQUEST | NLM_F_ACK);
    }
    assert_eq!(msgs[1].3, unhex(NFT_TABLE));
    assert_eq!(msgs[2].3, unhex(NFT_TABLE));
    assert_eq!(msgs[3].3, unhex(NFT_TABLE));
    assert_eq!(msgs[4].3, unhex(NFT_CHAIN));
    assert_eq!(msgs[5].3, unhex(NFT_RULE));
    assert_eq!(
        msgs[5].1 & (NLM_F_CREATE | NLM_F_APPEND),
        NLM_F_CREATE | NLM_F_APPEND
    );
    let acked: Vec<u32> = acks.iter().map(|a| a.0).collect();
    assert_eq!(acked, [101, 102, 103, 104, 105]);
}

#[test]
fn the_port_is_the_only_difference() {
    let (a, _) = build_batch(15001, 1);
    let (b, _) = build_batch(8080, 1);
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(a.len(), b.len());
    assert_eq!(diff.len(), 2);
    assert_eq!([b[diff[0]], b[diff[1]]], 8080u16.to_be_bytes());
}

fn error_msg(seq: u32, code: i32, extra: usize) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + extra;
    let mut m = Vec::new();
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&code.to_ne_bytes());
    m.resize(len, 0xee);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

#[test]
fn acks_and_errors_are_parsed() {
    let mut dgram = error_msg(2, 0, 16);
    dgram.extend(error_msg(3, -(Errno::ENOENT as i32), 17));
    assert_eq!(
        parse_acks(&dgram).unwrap(),
        [(2, None), (3, Some(Errno::ENOENT))]
    );
    // Lengths that do not fit are refused, not trusted.
    let mut bad = error_msg(2, 0, 0);
    bad[0] = 200;
    assert!(parse_acks(&bad).is_err());
    assert!(parse_acks(&error_msg(2, 0, 0)[..18]).is_err());
    assert!(parse_acks(&error_msg(2, 0, 0)[..10]).unwrap().is_empty());
    let mut short = error_msg(2, 0, 0);
    short[0] = 16;
    assert!(parse_acks(&short).is_err());
}

#[test]
fn errors_name_the_missing_piece() {
    let e = NftError::Refused {
        step: Step::Rule,
        errno: Errno::ENOENT,
    };
    assert!(e.to_string().contains("nft_redir"), "{e}");
    let e = NftError::Refused {
        step: Step::Chain,
        errno: Errno::ENOENT,
    };
    assert!(e.to_string().contains("nft_chain_nat"), "{e}");
    assert!(NftError::NoNfTables(Errno::EOPNOTSUPP)
        .to_string()
        .contains("no nf_tables"));
}
