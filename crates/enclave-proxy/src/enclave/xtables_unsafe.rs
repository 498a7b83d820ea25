//! The iptables socket options (`IPT_SO_GET_INFO`, `IPT_SO_GET_ENTRIES`, `IPT_SO_SET_REPLACE`
//! on a raw IPv4 socket): nix has no wrapper for options whose buffer is both read and written,
//! or whose buffer holds a pointer. The buffers are built and parsed in the safe
//! `xtables_layout`; each block here says why the call is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use super::xtables_layout::{
    IptGetEntries, IptGetinfo, IptReplace, XtCounters, GETINFO_SIZE, GET_ENTRIES_HEADER,
};

// linux/netfilter_ipv4/ip_tables.h (IPT_BASE_CTL = 64); the libc crate does not have them.
const IPT_SO_SET_REPLACE: libc::c_int = 64;
const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;

/// `getsockopt(SOL_IP, opt)` with `buf` as both the request and the answer; the answer's length.
fn get(fd: &OwnedFd, opt: libc::c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|_| Errno::E2BIG)?;
    // SAFETY: `buf` is valid for writes of `len` bytes (its length) for the whole call, and
    // `len` is a valid socklen_t the kernel updates; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_IP,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(rc)?;
    Ok(len as usize)
}

/// `IPT_SO_GET_INFO` for table `name`.
pub(super) fn get_info(fd: &OwnedFd, name: &str) -> Result<IptGetinfo, Errno> {
    let mut buf = IptGetinfo::request(name);
    if get(fd, IPT_SO_GET_INFO, &mut buf)? != GETINFO_SIZE {
        return Err(Errno::EPROTO);
    }
    Ok(IptGetinfo::parse(&buf))
}

/// `IPT_SO_GET_ENTRIES`: the table's entries (`info.size` bytes; the kernel answers EAGAIN when
/// the table changed size since GET_INFO).
pub(super) fn get_entries(fd: &OwnedFd, info: &IptGetinfo) -> Result<Vec<u8>, Errno> {
    let mut buf = IptGetEntries {
        name: info.name,
        size: info.size,
    }
    .request();
    if get(fd, IPT_SO_GET_ENTRIES, &mut buf)? != buf.len() {
        return Err(Errno::EPROTO);
    }
    Ok(buf.split_off(GET_ENTRIES_HEADER))
}

/// `IPT_SO_SET_REPLACE`: replaces the table with `header` + `entries`. The old table's counters
/// go to a buffer owned here, then are dropped (nothing reads them).
pub(super) fn set_replace(fd: &OwnedFd, header: IptReplace, entries: &[u8]) -> Result<(), Errno> {
    let mut counters = vec![XtCounters::default(); header.num_counters as usize];
    let header = IptReplace {
        counters: counters.as_mut_ptr() as usize,
        ..header
    };
    let buf = header.with_entries(entries);
    let len = libc::socklen_t::try_from(buf.len()).map_err(|_| Errno::E2BIG)?;
    // SAFETY: `buf` is valid for reads of `len` bytes during the call. The header's counters
    // address points into `counters`, a live allocation of `num_counters` `xt_counters`
    // (`#[repr(C)]`, two u64, the kernel's layout), which the kernel fills with at most
    // `num_counters` entries before the call returns; `counters` outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_IP,
            IPT_SO_SET_REPLACE,
            buf.as_ptr().cast(),
            len,
        )
    };
    Errno::result(rc)?;
    drop(counters);
    Ok(())
}
