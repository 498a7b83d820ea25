//! The kernel's iptables ABI (linux/netfilter_ipv4/ip_tables.h, linux/netfilter/x_tables.h,
//! linux/netfilter/nf_nat.h) as `#[repr(C)]` types, each with a byte-level writer or reader.
//!
//! The types give the layout: every field is written at its `offset_of!` and every buffer is
//! `size_of` long, so the compiler computes the same padding as the kernel's C compiler, and
//! the `const` assertions below pin the sizes the kernel (and iptables-legacy) use on 64-bit
//! Linux. No type here is ever transmuted to or from bytes; that keeps this module safe.

use std::mem::{offset_of, size_of};

/// `XT_TABLE_MAXNAMELEN`.
pub const TABLE_NAME_LEN: usize = 32;
/// `XT_EXTENSION_MAXNAMELEN`: a target's name, NUL included.
pub const TARGET_NAME_LEN: usize = 29;
/// `NF_INET_NUMHOOKS`.
pub const NUM_HOOKS: usize = 5;
/// `NF_INET_LOCAL_OUT`: the OUTPUT chain's hook.
pub const HOOK_LOCAL_OUT: usize = 3;
/// `IPT_INV_DSTIP`: the destination match is negated (`! -d`).
pub const INV_DSTIP: u8 = 0x10;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`: the range's ports are used.
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// `XT_ALIGN`: entries and targets are padded to the alignment of `u64` (the counters).
pub const fn xt_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Writes `bytes` at `at` in `buf` (which the callers size with `size_of`, so it fits).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Reads `N` bytes at `at`; `None` past the end.
fn get<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at + N)?.try_into().ok()
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    get(buf, at).map(u32::from_ne_bytes)
}

/// `struct ipt_ip`: what an entry matches in the IPv4 header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IptIp {
    /// Source address and mask, destination address and mask (network order).
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub smsk: [u8; 4],
    pub dmsk: [u8; 4],
    /// Interface names and masks (`-i`, `-o`); all zero here.
    pub iniface: [u8; 16],
    pub outiface: [u8; 16],
    pub iniface_mask: [u8; 16],
    pub outiface_mask: [u8; 16],
    /// `-p`: the IP protocol, 0 for any.
    pub proto: u16,
    /// `IPT_F_*`.
    pub flags: u8,
    /// `IPT_INV_*`: which of the matches are negated.
    pub invflags: u8,
}

impl IptIp {
    /// The bytes of this header part, as they start an `ipt_entry`.
    pub fn to_bytes(self) -> [u8; size_of::<IptIp>()] {
        let mut b = [0u8; size_of::<IptIp>()];
        put(&mut b, offset_of!(IptIp, src), &self.src);
        put(&mut b, offset_of!(IptIp, dst), &self.dst);
        put(&mut b, offset_of!(IptIp, smsk), &self.smsk);
        put(&mut b, offset_of!(IptIp, dmsk), &self.dmsk);
        put(&mut b, offset_of!(IptIp, iniface), &self.iniface);
        put(&mut b, offset_of!(IptIp, outiface), &self.outiface);
        put(&mut b, offset_of!(IptIp, iniface_mask), &self.iniface_mask);
        put(
            &mut b,
            offset_of!(IptIp, outiface_mask),
            &self.outiface_mask,
        );
        put(&mut b, offset_of!(IptIp, proto), &self.proto.to_ne_bytes());
        put(&mut b, offset_of!(IptIp, flags), &[self.flags]);
        put(&mut b, offset_of!(IptIp, invflags), &[self.invflags]);
        b
    }
}

/// `struct xt_counters`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XtCounters {
    /// Packets and bytes.
    pub pcnt: u64,
    pub bcnt: u64,
}

/// `struct ipt_entry`: one rule's header; its matches and target follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IptEntry {
    pub ip: IptIp,
    /// Unused by the kernel; 0.
    pub nfcache: u32,
    /// Where the target starts, from the entry's start (the header size when there are no
    /// matches).
    pub target_offset: u16,
    /// Where the next entry starts: the header, the matches and the target.
    pub next_offset: u16,
    /// The kernel's own bookkeeping (it clears it on replace).
    pub comefrom: u32,
    pub counters: XtCounters,
}

impl IptEntry {
    /// The entry header's bytes.
    pub fn to_bytes(self) -> [u8; size_of::<IptEntry>()] {
        let mut b = [0u8; size_of::<IptEntry>()];
        put(&mut b, offset_of!(IptEntry, ip), &self.ip.to_bytes());
        put(
            &mut b,
            offset_of!(IptEntry, nfcache),
            &self.nfcache.to_ne_bytes(),
        );
        let to = offset_of!(IptEntry, target_offset);
        put(&mut b, to, &self.target_offset.to_ne_bytes());
        let no = offset_of!(IptEntry, next_offset);
        put(&mut b, no, &self.next_offset.to_ne_bytes());
        put(
            &mut b,
            offset_of!(IptEntry, comefrom),
            &self.comefrom.to_ne_bytes(),
        );
        let c = offset_of!(IptEntry, counters);
        put(&mut b, c, &self.counters.pcnt.to_ne_bytes());
        put(
            &mut b,
            c + offset_of!(XtCounters, bcnt),
            &self.counters.bcnt.to_ne_bytes(),
        );
        b
    }

    /// The target offset and next offset of the entry starting `entry`.
    pub fn read_offsets(entry: &[u8]) -> Option<(u16, u16)> {
        let to = get(entry, offset_of!(IptEntry, target_offset)).map(u16::from_ne_bytes)?;
        let no = get(entry, offset_of!(IptEntry, next_offset)).map(u16::from_ne_bytes)?;
        Some((to, no))
    }
}

/// `struct xt_entry_target`'s user view: the target's header, its data follows. (The kernel's
/// union also holds a pointer, which makes the header 8-aligned; 32 bytes either way.)
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XtEntryTarget {
    /// The whole target's size, header, data and padding.
    pub target_size: u16,
    /// NUL-padded: `""` for the standard target, `"REDIRECT"`, `"ERROR"`.
    pub name: [u8; TARGET_NAME_LEN],
    pub revision: u8,
}

impl XtEntryTarget {
    /// A header named `name` (at most 28 bytes, the callers' constants).
    pub fn new(name: &str, target_size: usize) -> Self {
        let mut n = [0u8; TARGET_NAME_LEN];
        n[..name.len()].copy_from_slice(name.as_bytes());
        Self {
            target_size: target_size as u16,
            name: n,
            revision: 0,
        }
    }

    fn write(&self, b: &mut [u8]) {
        let size = self.target_size.to_ne_bytes();
        put(b, offset_of!(XtEntryTarget, target_size), &size);
        put(b, offset_of!(XtEntryTarget, name), &self.name);
        put(b, offset_of!(XtEntryTarget, revision), &[self.revision]);
    }

    /// The target size and name of the target starting at `target`.
    pub fn read(target: &[u8]) -> Option<(u16, [u8; TARGET_NAME_LEN])> {
        let size = get(target, offset_of!(XtEntryTarget, target_size)).map(u16::from_ne_bytes)?;
        Some((size, get(target, offset_of!(XtEntryTarget, name))?))
    }
}

/// `struct xt_standard_target`: ACCEPT, DROP, RETURN (negative verdicts) or a jump (the byte
/// offset of the entry to continue at, from the table's start).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardTarget {
    pub target: XtEntryTarget,
    pub verdict: i32,
}

/// The standard target's size in an entry (padded).
pub const STANDARD_TARGET_SIZE: usize = xt_align(size_of::<StandardTarget>());

impl StandardTarget {
    /// Where the verdict is, from the target's start.
    pub const VERDICT_AT: usize = offset_of!(StandardTarget, verdict);
}

/// `struct nf_nat_ipv4_range`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatIpv4Range {
    /// `NF_NAT_RANGE_*`.
    pub flags: u32,
    /// Addresses (REDIRECT ignores them: it uses the primary address of the interface, i.e.
    /// 127.0.0.1 for locally generated packets).
    pub min_ip: [u8; 4],
    pub max_ip: [u8; 4],
    /// `union nf_conntrack_man_proto`: the ports, network order.
    pub min: [u8; 2],
    pub max: [u8; 2],
}

/// `struct nf_nat_ipv4_multi_range_compat`, REDIRECT revision 0's data: one range.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatIpv4MultiRangeCompat {
    pub rangesize: u32,
    pub range: NatIpv4Range,
}

/// The `REDIRECT` target with its data.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectTarget {
    pub target: XtEntryTarget,
    pub data: NatIpv4MultiRangeCompat,
}

/// The REDIRECT target's size in an entry (padded).
pub const REDIRECT_TARGET_SIZE: usize = xt_align(size_of::<RedirectTarget>());

impl RedirectTarget {
    /// `-j REDIRECT --to-ports port`.
    pub fn to_port(port: u16) -> Self {
        let p = port.to_be_bytes();
        Self {
            target: XtEntryTarget::new("REDIRECT", REDIRECT_TARGET_SIZE),
            data: NatIpv4MultiRangeCompat {
                rangesize: 1,
                range: NatIpv4Range {
                    flags: NAT_RANGE_PROTO_SPECIFIED,
                    min: p,
                    max: p,
                    ..NatIpv4Range::default()
                },
            },
        }
    }

    /// The target's bytes, padding included.
    pub fn to_bytes(self) -> [u8; REDIRECT_TARGET_SIZE] {
        let mut b = [0u8; REDIRECT_TARGET_SIZE];
        self.target.write(&mut b);
        let d = offset_of!(RedirectTarget, data);
        let rs = self.data.rangesize.to_ne_bytes();
        put(
            &mut b,
            d + offset_of!(NatIpv4MultiRangeCompat, rangesize),
            &rs,
        );
        let r = d + offset_of!(NatIpv4MultiRangeCompat, range);
        let range = &self.data.range;
        put(
            &mut b,
            r + offset_of!(NatIpv4Range, flags),
            &range.flags.to_ne_bytes(),
        );
        put(&mut b, r + offset_of!(NatIpv4Range, min_ip), &range.min_ip);
        put(&mut b, r + offset_of!(NatIpv4Range, max_ip), &range.max_ip);
        put(&mut b, r + offset_of!(NatIpv4Range, min), &range.min);
        put(&mut b, r + offset_of!(NatIpv4Range, max), &range.max);
        b
    }
}

/// `struct ipt_getinfo`: `IPT_SO_GET_INFO`'s argument (the name) and answer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IptGetinfo {
    pub name: [u8; TABLE_NAME_LEN],
    /// Bit `h` set when the table hooks `h`.
    pub valid_hooks: u32,
    /// Each hook's first entry and policy (underflow) entry, as offsets into the entries.
    pub hook_entry: [u32; NUM_HOOKS],
    pub underflow: [u32; NUM_HOOKS],
    pub num_entries: u32,
    /// The entries' total size in bytes.
    pub size: u32,
}

/// The buffer size of `IPT_SO_GET_INFO`.
pub const GETINFO_SIZE: usize = size_of::<IptGetinfo>();

/// A NUL-padded table name.
pub fn table_name(name: &str) -> [u8; TABLE_NAME_LEN] {
    let mut n = [0u8; TABLE_NAME_LEN];
    n[..name.len()].copy_from_slice(name.as_bytes());
    n
}

fn read_hooks(buf: &[u8], at: usize) -> Option<[u32; NUM_HOOKS]> {
    let mut hooks = [0u32; NUM_HOOKS];
    for (i, h) in hooks.iter_mut().enumerate() {
        *h = get_u32(buf, at + 4 * i)?;
    }
    Some(hooks)
}

fn put_hooks(buf: &mut [u8], at: usize, hooks: &[u32; NUM_HOOKS]) {
    for (i, h) in hooks.iter().enumerate() {
        put(buf, at + 4 * i, &h.to_ne_bytes());
    }
}

impl IptGetinfo {
    /// The request: only the name is read by the kernel.
    pub fn request(name: &str) -> [u8; GETINFO_SIZE] {
        let mut b = [0u8; GETINFO_SIZE];
        put(&mut b, offset_of!(IptGetinfo, name), &table_name(name));
        b
    }

    /// Parses the kernel's answer.
    pub fn parse(b: &[u8; GETINFO_SIZE]) -> Self {
        // `get` cannot fail inside a GETINFO_SIZE buffer; the fallbacks are never taken.
        Self {
            name: get(b, offset_of!(IptGetinfo, name)).unwrap_or_default(),
            valid_hooks: get_u32(b, offset_of!(IptGetinfo, valid_hooks)).unwrap_or_default(),
            hook_entry: read_hooks(b, offset_of!(IptGetinfo, hook_entry)).unwrap_or_default(),
            underflow: read_hooks(b, offset_of!(IptGetinfo, underflow)).unwrap_or_default(),
            num_entries: get_u32(b, offset_of!(IptGetinfo, num_entries)).unwrap_or_default(),
            size: get_u32(b, offset_of!(IptGetinfo, size)).unwrap_or_default(),
        }
    }
}

/// `struct ipt_get_entries`' header: `IPT_SO_GET_ENTRIES`' argument (name and the size from
/// GET_INFO); the kernel writes the entries after it. `align(8)` stands for the 8-aligned
/// `entrytable[]` that ends the C struct.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IptGetEntries {
    pub name: [u8; TABLE_NAME_LEN],
    pub size: u32,
}

/// The header size of `IPT_SO_GET_ENTRIES`' buffer.
pub const GET_ENTRIES_HEADER: usize = size_of::<IptGetEntries>();

impl IptGetEntries {
    /// The request buffer: header, then room for `size` bytes of entries.
    pub fn request(&self) -> Vec<u8> {
        let mut b = vec![0u8; GET_ENTRIES_HEADER + self.size as usize];
        put(&mut b, offset_of!(IptGetEntries, name), &self.name);
        put(
            &mut b,
            offset_of!(IptGetEntries, size),
            &self.size.to_ne_bytes(),
        );
        b
    }
}

/// `struct ipt_replace`: `IPT_SO_SET_REPLACE`'s header; the new entries follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IptReplace {
    pub name: [u8; TABLE_NAME_LEN],
    pub valid_hooks: u32,
    pub num_entries: u32,
    pub size: u32,
    pub hook_entry: [u32; NUM_HOOKS],
    pub underflow: [u32; NUM_HOOKS],
    /// How many counters the old table has (the kernel refuses the replace with EAGAIN when
    /// that changed since GET_INFO: someone else replaced the table in between).
    pub num_counters: u32,
    /// `struct xt_counters __user *`: where the kernel writes the old table's counters. Set by
    /// `xtables_unsafe` to a buffer it owns, as an address.
    pub counters: usize,
}

/// The header size of `IPT_SO_SET_REPLACE`'s buffer.
pub const REPLACE_HEADER: usize = size_of::<IptReplace>();

/// Where the counters pointer goes in the replace header.
pub const REPLACE_COUNTERS_AT: usize = offset_of!(IptReplace, counters);

impl IptReplace {
    /// The header's bytes followed by `entries`.
    pub fn with_entries(&self, entries: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; REPLACE_HEADER + entries.len()];
        put(&mut b, offset_of!(IptReplace, name), &self.name);
        let vh = self.valid_hooks.to_ne_bytes();
        put(&mut b, offset_of!(IptReplace, valid_hooks), &vh);
        let ne = self.num_entries.to_ne_bytes();
        put(&mut b, offset_of!(IptReplace, num_entries), &ne);
        put(
            &mut b,
            offset_of!(IptReplace, size),
            &self.size.to_ne_bytes(),
        );
        put_hooks(&mut b, offset_of!(IptReplace, hook_entry), &self.hook_entry);
        put_hooks(&mut b, offset_of!(IptReplace, underflow), &self.underflow);
        let nc = self.num_counters.to_ne_bytes();
        put(&mut b, offset_of!(IptReplace, num_counters), &nc);
        put(&mut b, REPLACE_COUNTERS_AT, &self.counters.to_ne_bytes());
        put(&mut b, REPLACE_HEADER, entries);
        b
    }
}

// The sizes the kernel uses on 64-bit Linux (and iptables-legacy: `sizeof(struct ipt_entry)`
// is 112, a standard target 40, REDIRECT's 56).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<IptIp>() == 84);
    assert!(size_of::<IptEntry>() == 112);
    assert!(size_of::<XtEntryTarget>() == 32);
    assert!(STANDARD_TARGET_SIZE == 40);
    assert!(size_of::<NatIpv4MultiRangeCompat>() == 20);
    assert!(REDIRECT_TARGET_SIZE == 56);
    assert!(GETINFO_SIZE == 84);
    assert!(GET_ENTRIES_HEADER == 40);
    assert!(REPLACE_HEADER == 96);
};
