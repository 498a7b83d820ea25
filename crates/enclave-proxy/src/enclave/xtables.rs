//! Transparent mode's netfilter rule on kernels without nf_tables (AWS's enclave kernels have
//! iptables but `# CONFIG_NF_TABLES is not set`). The same rule as [`super::nft`], as the
//! iptables rule
//!
//! ```text
//! -t nat -A OUTPUT ! -d 127.0.0.0/24 -p tcp -j REDIRECT --to-ports PORT
//! ```
//!
//! installed the way iptables-legacy does it, without its binary: read the nat table
//! (`IPT_SO_GET_INFO`, `IPT_SO_GET_ENTRIES`), put the rule first in OUTPUT, and write the whole
//! table back (`IPT_SO_SET_REPLACE`). A copy of the rule from an earlier install (any port) is
//! dropped on the way, so a second install replaces the first, as the nft backend's does. Other
//! rules of the table are kept, their jumps moved with them; their counters restart from zero
//! (the kernel resets them on replace; iptables-legacy adds the old ones back, which an enclave
//! that installs this once at boot has no use for). IPv4 only, like the nft rule.
//!
//! The layouts are in `xtables_layout`; the socket options in `xtables_unsafe`.

use std::mem::{offset_of, size_of};

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

use super::xtables_layout::{
    table_name, IptEntry, IptGetinfo, IptIp, IptReplace, RedirectTarget, StandardTarget,
    XtEntryTarget, HOOK_LOCAL_OUT, INV_DSTIP, NUM_HOOKS, REDIRECT_TARGET_SIZE,
    STANDARD_TARGET_SIZE, TARGET_NAME_LEN,
};
use super::xtables_unsafe;

/// The table the rule goes into.
const TABLE: &str = "nat";
/// `IPPROTO_TCP`.
const IPPROTO_TCP: u16 = 6;
/// The size of the entry this module adds.
const RULE_SIZE: usize = size_of::<IptEntry>() + REDIRECT_TARGET_SIZE;
/// Where `comefrom` and then the counters are, up to the end of the entry header.
const COMEFROM_AT: usize = offset_of!(IptEntry, comefrom);
/// How often a replace that lost a race (EAGAIN: the table changed since it was read) is tried.
const ATTEMPTS: usize = 3;

/// Why the rule could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum XtError {
    /// No raw IPv4 socket (the socket options are the raw socket's).
    #[error("cannot open a raw IPv4 socket for iptables: {0}")]
    Socket(Errno),
    /// The nat table is not there.
    #[error("the kernel has no iptables nat table (ip_tables, iptable_nat not loaded?): {0}")]
    NoTable(Errno),
    /// The table's entries could not be read.
    #[error("cannot read the iptables nat table: {0}")]
    Read(Errno),
    /// The kernel's table is not what its own ABI says (it never happens with a sane kernel;
    /// checked so that a bad offset is an error, not a panic).
    #[error("unexpected iptables nat table from the kernel: {0}")]
    Table(&'static str),
    /// The new table was refused.
    #[error(
        "the kernel refused the iptables nat table with the REDIRECT rule: {errno}{}",
        hint(*.errno)
    )]
    Refused {
        /// The kernel's error.
        errno: Errno,
    },
}

fn hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM => " (needs CAP_NET_ADMIN)",
        Errno::ENOENT => " (no REDIRECT target: xt_REDIRECT not loaded?)",
        Errno::EAGAIN => " (the table kept changing while it was replaced)",
        _ => "",
    }
}

/// What the rule matches: `! -d 127.0.0.0/24 -p tcp`.
fn rule_ip() -> IptIp {
    IptIp {
        dst: [127, 0, 0, 0],
        dmsk: [255, 255, 255, 0],
        proto: IPPROTO_TCP,
        invflags: INV_DSTIP,
        ..IptIp::default()
    }
}

/// The rule's entry, redirecting to `port`: header (no matches) and REDIRECT target.
pub(super) fn redirect_entry(port: u16) -> Vec<u8> {
    let head = IptEntry {
        ip: rule_ip(),
        target_offset: size_of::<IptEntry>() as u16,
        next_offset: RULE_SIZE as u16,
        ..IptEntry::default()
    };
    let mut e = Vec::with_capacity(RULE_SIZE);
    e.extend_from_slice(&head.to_bytes());
    e.extend_from_slice(&RedirectTarget::to_port(port).to_bytes());
    e
}

/// One entry of a table read from the kernel: where it starts and its bytes.
struct Entry<'a> {
    offset: usize,
    bytes: &'a [u8],
    target_offset: usize,
}

impl Entry<'_> {
    /// The target's size and name.
    fn target(&self) -> Option<(u16, [u8; TARGET_NAME_LEN])> {
        XtEntryTarget::read(self.bytes.get(self.target_offset..)?)
    }

    /// Whether this is the rule an earlier install added (whatever its port).
    fn is_our_rule(&self) -> bool {
        let ours = rule_ip().to_bytes();
        let redirect = XtEntryTarget::new("REDIRECT", REDIRECT_TARGET_SIZE);
        self.bytes.get(..ours.len()) == Some(&ours[..])
            && self.bytes.len() == RULE_SIZE
            && self.target() == Some((redirect.target_size, redirect.name))
    }

    /// Where the verdict of a standard target is, from the entry's start; `None` for others.
    fn standard_verdict_at(&self) -> Option<usize> {
        let (size, name) = self.target()?;
        (usize::from(size) == STANDARD_TARGET_SIZE && name == [0; TARGET_NAME_LEN])
            .then_some(self.target_offset + StandardTarget::VERDICT_AT)
    }
}

/// Splits the entries the kernel returned, checking every offset stays inside them.
fn split_entries(entries: &[u8]) -> Result<Vec<Entry<'_>>, XtError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < entries.len() {
        let rest = &entries[offset..];
        let (target_offset, next_offset) =
            IptEntry::read_offsets(rest).ok_or(XtError::Table("an entry is cut short"))?;
        let (to, next) = (usize::from(target_offset), usize::from(next_offset));
        if next > rest.len() || to < size_of::<IptEntry>() || to >= next || next % 8 != 0 {
            return Err(XtError::Table("an entry's offsets are outside it"));
        }
        out.push(Entry {
            offset,
            bytes: &rest[..next],
            target_offset: to,
        });
        offset += next;
    }
    Ok(out)
}

/// The nat table of `info`/`entries` with the redirect to `port` first in OUTPUT (and an
/// earlier copy of it removed): the replace header (its counters address still unset) and the
/// new entries.
pub(super) fn with_redirect(
    info: &IptGetinfo,
    entries: &[u8],
    port: u16,
) -> Result<(IptReplace, Vec<u8>), XtError> {
    let out_hook = HOOK_LOCAL_OUT;
    if info.valid_hooks & (1 << out_hook) == 0 {
        return Err(XtError::Table("the nat table has no OUTPUT chain"));
    }
    if entries.len() != info.size as usize {
        return Err(XtError::Table(
            "the entries' size is not the one GET_INFO gave",
        ));
    }
    let old = split_entries(entries)?;
    let (out_start, out_end) = (
        info.hook_entry[out_hook] as usize,
        info.underflow[out_hook] as usize,
    );
    if !old.iter().any(|e| e.offset == out_start) {
        return Err(XtError::Table("OUTPUT does not start at an entry"));
    }

    // Old offset -> new offset of every old entry (a removed one maps to what follows it).
    let mut moved = Vec::with_capacity(old.len());
    let mut new = Vec::with_capacity(entries.len() + RULE_SIZE);
    let mut kept = Vec::with_capacity(old.len());
    let mut removed = 0u32;
    let mut rule_at = 0;
    for e in &old {
        if e.offset == out_start {
            rule_at = new.len();
            new.extend_from_slice(&redirect_entry(port));
        }
        moved.push((e.offset, new.len()));
        if (out_start..out_end).contains(&e.offset) && e.is_our_rule() {
            removed += 1;
            continue;
        }
        kept.push((new.len(), e));
        let at = new.len();
        new.extend_from_slice(e.bytes);
        // The kernel clears both on replace; zero, as iptables-legacy sends them.
        new[at + COMEFROM_AT..at + size_of::<IptEntry>()].fill(0);
    }
    let too_big = || XtError::Table("the table outgrows 4 GiB");
    // A linear search: the tables an enclave has hold a handful of entries.
    let remap = |offset: usize| -> Result<u32, XtError> {
        let found = moved.iter().find(|(o, _)| *o == offset);
        let (_, n) = found.ok_or(XtError::Table("a jump or hook is not at an entry"))?;
        u32::try_from(*n).map_err(|_| too_big())
    };

    // Jumps (non-negative standard verdicts) are offsets into the table: move them too.
    for (at, e) in kept {
        let Some(v) = e.standard_verdict_at() else {
            continue;
        };
        let verdict = e
            .bytes
            .get(v..v + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or(XtError::Table("a standard target is cut short"))?;
        if let Ok(target) = usize::try_from(verdict) {
            let to =
                i32::try_from(remap(target)?).map_err(|_| XtError::Table("a jump beyond 2 GiB"))?;
            new[at + v..at + v + 4].copy_from_slice(&to.to_ne_bytes());
        }
    }

    let mut hook_entry = info.hook_entry;
    let mut underflow = info.underflow;
    for h in (0..NUM_HOOKS).filter(|h| info.valid_hooks & (1 << h) != 0) {
        hook_entry[h] = remap(info.hook_entry[h] as usize)?;
        underflow[h] = remap(info.underflow[h] as usize)?;
    }
    hook_entry[out_hook] = u32::try_from(rule_at).map_err(|_| too_big())?;

    let header = IptReplace {
        name: table_name(TABLE),
        valid_hooks: info.valid_hooks,
        num_entries: (info.num_entries.checked_add(1).ok_or_else(too_big)?)
            .checked_sub(removed)
            .ok_or(XtError::Table("more entries than GET_INFO counted"))?,
        size: u32::try_from(new.len()).map_err(|_| too_big())?,
        hook_entry,
        underflow,
        num_counters: info.num_entries,
        counters: 0,
    };
    Ok((header, new))
}

/// Installs (or replaces) the redirect of outgoing TCP to `127.0.0.1:port` in the calling
/// thread's network namespace's iptables nat table.
pub fn install_redirect(port: u16) -> Result<(), XtError> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .map_err(XtError::Socket)?;
    let mut attempt = 1;
    loop {
        let info = xtables_unsafe::get_info(&fd, TABLE).map_err(XtError::NoTable)?;
        let entries = xtables_unsafe::get_entries(&fd, &info).map_err(XtError::Read)?;
        let (header, new) = with_redirect(&info, &entries, port)?;
        match xtables_unsafe::set_replace(&fd, header, &new) {
            // Another writer replaced the table between the read and the write: read it again.
            Err(Errno::EAGAIN) if attempt < ATTEMPTS => attempt += 1,
            r => return r.map_err(|errno| XtError::Refused { errno }),
        }
    }
}

#[cfg(test)]
#[path = "xtables_tests.rs"]
mod tests;
