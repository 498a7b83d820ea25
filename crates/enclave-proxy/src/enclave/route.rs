//! The default route through `lo` that transparent egress needs.
//!
//! An enclave has no interface but `lo`, so a connect to any address outside 127.0.0.0/8 fails
//! with "network unreachable" at the routing lookup, before the netfilter output hook could
//! redirect it. A default route through `lo` lets the connect reach the hook, which rewrites
//! the destination to the local forwarder; nothing ever leaves, since `lo` is the only device.
//! The route names 127.0.0.1 as the preferred source: without it the kernel finds no source
//! address of link scope on `lo` and uses 0.0.0.0, and the forwarder's replies go nowhere.
//! Installed with one rtnetlink message (`ip route replace default dev lo src 127.0.0.1`),
//! replacing any existing default route.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::nft::parse_acks;

const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the route could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// There is no `lo` (cannot happen in a Linux network namespace, but said rather than assumed).
    #[error("no loopback interface: {0}")]
    NoLoopback(Errno),
    /// The netlink exchange failed.
    #[error("rtnetlink I/O failed: {0}")]
    Io(Errno),
    /// The kernel refused the route.
    #[error("the kernel refused `ip route replace default dev lo src 127.0.0.1`: {0}")]
    Refused(Errno),
    /// No or a malformed acknowledgement.
    #[error("unexpected rtnetlink reply: {0}")]
    Reply(&'static str),
}

/// The RTM_NEWROUTE message for `default dev <ifindex> src 127.0.0.1` in the main table.
pub fn build_message(ifindex: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(44);
    m.extend_from_slice(&44u32.to_ne_bytes()); // nlmsghdr: length
    m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                              // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    m.extend_from_slice(&[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_LINK]);
    m.push(RTN_UNICAST);
    m.extend_from_slice(&0u32.to_ne_bytes());
    // RTA_PREFSRC
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&RTA_PREFSRC.to_ne_bytes());
    m.extend_from_slice(&[127, 0, 0, 1]);
    // RTA_OIF
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&RTA_OIF.to_ne_bytes());
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m
}

/// Adds (or replaces) the IPv4 default route through `lo`, source 127.0.0.1, in the calling
/// thread's namespace.
pub fn default_route_via_lo() -> Result<(), RouteError> {
    let lo = nix::net::if_::if_nametoindex("lo").map_err(RouteError::NoLoopback)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(RouteError::Io)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(RouteError::Io)?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::new(ACK_TIMEOUT.as_secs() as _, 0),
    )
    .map_err(RouteError::Io)?;
    let seq = 1;
    let msg = build_message(lo, seq);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(RouteError::Io)?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Err(RouteError::Reply("no acknowledgement within 5 s")),
            Err(e) => return Err(RouteError::Io(e)),
        };
        let acks = parse_acks(buf.get(..n).unwrap_or_default())
            .map_err(|_| RouteError::Reply("a malformed message"))?;
        if let Some((_, result)) = acks.into_iter().find(|(s, _)| *s == seq) {
            return match result {
                None => Ok(()),
                Some(errno) => Err(RouteError::Refused(errno)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_what_ip_route_sends() {
        // `ip route replace default dev lo src 127.0.0.1` (iproute2 6.1, seen with strace), with
        // our sequence number.
        let msg = build_message(1, 7);
        assert_eq!(msg.len(), 44);
        assert_eq!(&msg[4..6], &RTM_NEWROUTE.to_ne_bytes());
        assert_eq!(&msg[8..12], &7u32.to_ne_bytes());
        assert_eq!(
            &msg[16..28],
            &[2, 0, 0, 0, 254, 3, 253, 1, 0, 0, 0, 0],
            "rtmsg"
        );
        assert_eq!(&msg[28..36], &[8, 0, 7, 0, 127, 0, 0, 1], "RTA_PREFSRC");
        assert_eq!(&msg[36..44], &[8, 0, 4, 0, 1, 0, 0, 0], "RTA_OIF lo");
    }
}
