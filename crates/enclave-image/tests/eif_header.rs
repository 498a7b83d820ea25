//! Header and section header encoding, decoding and layout validation.

use enclave_image::eif::header::*;

fn sample() -> EifHeader {
    let mut h = EifHeader {
        version: EIF_VERSION,
        flags: 0,
        default_mem: 1 << 30,
        default_cpus: 2,
        reserved: 0,
        num_sections: 2,
        section_offsets: [0; MAX_SECTIONS],
        section_sizes: [0; MAX_SECTIONS],
        unused: 0,
        crc32: 0xdead_beef,
    };
    h.section_offsets[0] = HEADER_LEN as u64;
    h.section_sizes[0] = 10;
    h.section_offsets[1] = HEADER_LEN as u64 + 22;
    h.section_sizes[1] = 5;
    h
}

#[test]
fn header_round_trip() {
    let h = sample();
    let bytes = h.to_bytes();
    assert_eq!(&bytes[..4], b".eif");
    assert_eq!(&bytes[CRC_OFFSET..], &0xdead_beef_u32.to_be_bytes());
    assert_eq!(EifHeader::decode(&bytes), Ok(h));
}

#[test]
fn header_errors() {
    let mut bytes = sample().to_bytes();
    bytes[0] = b'x';
    assert!(matches!(
        EifHeader::decode(&bytes),
        Err(HeaderError::BadMagic { .. })
    ));
    let mut bytes = sample().to_bytes();
    bytes[5] = 9;
    assert_eq!(
        EifHeader::decode(&bytes),
        Err(HeaderError::UnsupportedVersion(9))
    );
    let mut bytes = sample().to_bytes();
    bytes[26..28].copy_from_slice(&33u16.to_be_bytes());
    assert_eq!(
        EifHeader::decode(&bytes),
        Err(HeaderError::TooManySections(33))
    );
}

#[test]
fn layout_checks() {
    let h = sample();
    let len = HEADER_LEN as u64 + 22 + 17;
    assert_eq!(h.validate_layout(len), Ok(()));
    assert!(matches!(
        h.validate_layout(len - 1),
        Err(HeaderError::SectionOutOfBounds { index: 1, .. })
    ));
    assert!(matches!(
        h.validate_layout(len + 1),
        Err(HeaderError::TrailingData { extra: 1, .. })
    ));
    let mut overlap = h;
    overlap.section_offsets[1] -= 1;
    assert!(matches!(
        overlap.validate_layout(len),
        Err(HeaderError::SectionOverlap { index: 1, .. })
    ));
    let mut huge = h;
    huge.section_sizes[1] = u64::MAX;
    assert!(matches!(
        huge.validate_layout(len),
        Err(HeaderError::SectionOutOfBounds { .. })
    ));
}

#[test]
fn section_header_round_trip() {
    let s = SectionHeader::new(SectionType::Ramdisk, 0x0102_0304_0506);
    let bytes = s.to_bytes();
    assert_eq!(bytes, [0, 3, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(SectionHeader::decode(&bytes, 0), Ok(s));
    let bad = [0u8, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        SectionHeader::decode(&bad, 7),
        Err(HeaderError::UnknownSectionType {
            offset: 7,
            value: 6
        })
    );
}
