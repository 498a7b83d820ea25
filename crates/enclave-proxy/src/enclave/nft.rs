//! Transparent mode's netfilter rule, installed over nf_tables netlink (there is no `nft` binary
//! inside the enclave). The batch is what `nft -f` sends for
//!
//! ```text
//! table ip enclave_egress {
//!     chain output {
//!         type nat hook output priority -100;
//!         ip daddr != 127.0.0.0/24 meta l4proto tcp redirect to :PORT
//!     }
//! }
//! ```
//!
//! `nft --debug=netlink` shows the rule's expressions: `payload` (3 bytes of the IPv4 header at
//! offset 16, i.e. daddr's /24 prefix — nft's own encoding of a /24 match, no bitwise needed),
//! `cmp neq 127.0.0`, `meta l4proto`, `cmp eq 6`, `immediate` (the port) and `redir`.
//!
//! The batch creates the table, deletes it and creates it again, all in one transaction, so a
//! second install replaces the first instead of adding a duplicate rule.

use std::fmt;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// The table transparent mode installs.
pub const TABLE: &str = "enclave_egress";
const CHAIN: &str = "output";

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
// linux/netfilter/nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_IPV4: u8 = 2;
// linux/netfilter/nf_tables.h
/// nf_tables message types are the subsystem id in the high byte, the message in the low one.
const NFT_MSG_TYPE_BASE: u16 = NFNL_SUBSYS_NFTABLES << 8;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_IP_PRI_NAT_DST: i32 = -100;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_L4PROTO: u32 = 16;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const IPPROTO_TCP: u8 = 6;

/// How long to wait for the kernel's acknowledgements (they come at once; this only guards
/// against a kernel that never answers).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The messages of the batch, named for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The batch as a whole (nfnetlink looks up the nf_tables subsystem for it).
    Batch,
    /// Creating the table (before replacing it).
    CreateTable,
    /// Deleting the old table.
    DeleteTable,
    /// Creating the fresh table.
    RecreateTable,
    /// Creating the nat chain on the output hook.
    Chain,
    /// Adding the redirect rule.
    Rule,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Batch => "start an nf_tables transaction",
            Step::CreateTable | Step::RecreateTable => "create table ip enclave_egress",
            Step::DeleteTable => "replace table ip enclave_egress",
            Step::Chain => "create chain output {type nat hook output priority -100}",
            Step::Rule => "add rule `ip daddr != 127.0.0.0/24 meta l4proto tcp redirect`",
        })
    }
}

/// Why the rule could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// No NETLINK_NETFILTER socket: nfnetlink is missing.
    #[error("cannot open a netfilter netlink socket (the kernel has no nfnetlink?): {0}")]
    Socket(Errno),
    /// Sending or receiving failed.
    #[error("netfilter netlink I/O failed: {0}")]
    Io(Errno),
    /// The kernel does not know the nf_tables subsystem.
    #[error("the kernel has no nf_tables (module not loaded?): {0}")]
    NoNfTables(Errno),
    /// A message of the batch was refused.
    #[error("the kernel refused to {step}: {errno}{}", hint(*.step, *.errno))]
    Refused {
        /// Which message.
        step: Step,
        /// The kernel's error.
        errno: Errno,
    },
    /// The kernel's reply could not be understood, or did not come.
    #[error("unexpected netfilter netlink reply: {0}")]
    Reply(&'static str),
}

fn hint(step: Step, errno: Errno) -> &'static str {
    match (step, errno) {
        (_, Errno::EPERM) => " (needs CAP_NET_ADMIN)",
        (Step::Chain, Errno::ENOENT | Errno::EOPNOTSUPP) => {
            " (no nat chain type: nft_chain_nat, nf_nat and nf_conntrack not loaded?)"
        }
        (Step::Rule, Errno::ENOENT | Errno::EOPNOTSUPP) => {
            " (an expression is missing: nft_redir not loaded?)"
        }
        _ => "",
    }
}

/// Appends netlink messages and attributes to a buffer, patching lengths when each ends.
#[derive(Debug, Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a message: nlmsghdr + nfgenmsg. Returns where it starts, for [`Writer::end`].
    fn begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `end`
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Ends the message or nested attribute started at `start` (same header layout: a length
    /// in the first bytes, native-endian, u32 for messages and u16 for attributes).
    fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// One `NFTA_LIST_ELEM { name, data {…} }` of a rule's expression list.
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Writer)) {
        let elem = self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let d = self.nest(NFTA_EXPR_DATA);
        data(self);
        self.end_nest(d);
        self.end_nest(elem);
    }

    fn data_value(&mut self, ty: u16, value: &[u8]) {
        let n = self.nest(ty);
        self.attr(NFTA_DATA_VALUE, value);
        self.end_nest(n);
    }

    fn table_msg(&mut self, ty: u16, flags: u16, seq: u32) {
        let m = self.begin(NFT_MSG_TYPE_BASE | ty, flags, seq, NFPROTO_IPV4, 0);
        self.str(NFTA_TABLE_NAME, TABLE);
        self.be32(NFTA_TABLE_FLAGS, 0);
        self.end(m);
    }
}

/// The batch installing the redirect to `port`, its messages numbered from `seq`; with the
/// sequence number and step of every message whose acknowledgement must be checked.
pub fn build_batch(port: u16, seq: u32) -> (Vec<u8>, Vec<(u32, Step)>) {
    let mut w = Writer::default();
    let ack = NLM_F_REQUEST | NLM_F_ACK;
    let b = w.begin(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end(b);
    w.table_msg(NFT_MSG_NEWTABLE, ack | NLM_F_CREATE, seq + 1);
    w.table_msg(NFT_MSG_DELTABLE, ack, seq + 2);
    w.table_msg(NFT_MSG_NEWTABLE, ack | NLM_F_CREATE, seq + 3);

    let m = w.begin(
        NFT_MSG_TYPE_BASE | NFT_MSG_NEWCHAIN,
        ack | NLM_F_CREATE,
        seq + 4,
        NFPROTO_IPV4,
        0,
    );
    w.str(NFTA_CHAIN_TABLE, TABLE);
    w.str(NFTA_CHAIN_NAME, CHAIN);
    w.str(NFTA_CHAIN_TYPE, "nat");
    let hook = w.nest(NFTA_CHAIN_HOOK);
    w.be32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
    w.be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_DST as u32);
    w.end_nest(hook);
    w.end(m);

    let m = w.begin(
        NFT_MSG_TYPE_BASE | NFT_MSG_NEWRULE,
        ack | NLM_F_CREATE | NLM_F_APPEND,
        seq + 5,
        NFPROTO_IPV4,
        0,
    );
    w.str(NFTA_RULE_TABLE, TABLE);
    w.str(NFTA_RULE_CHAIN, CHAIN);
    let exprs = w.nest(NFTA_RULE_EXPRESSIONS);
    // ip daddr != 127.0.0.0/24: the first 3 bytes of the destination address (offset 16).
    w.expr("payload", |w| {
        w.be32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
        w.be32(2, NFT_PAYLOAD_NETWORK_HEADER); // NFTA_PAYLOAD_BASE
        w.be32(3, 16); // NFTA_PAYLOAD_OFFSET
        w.be32(4, 3); // NFTA_PAYLOAD_LEN
    });
    w.expr("cmp", |w| {
        w.be32(1, NFT_REG_1); // NFTA_CMP_SREG
        w.be32(2, NFT_CMP_NEQ); // NFTA_CMP_OP
        w.data_value(3, &[127, 0, 0]); // NFTA_CMP_DATA
    });
    // meta l4proto tcp
    w.expr("meta", |w| {
        w.be32(2, NFT_META_L4PROTO); // NFTA_META_KEY
        w.be32(1, NFT_REG_1); // NFTA_META_DREG
    });
    w.expr("cmp", |w| {
        w.be32(1, NFT_REG_1);
        w.be32(2, NFT_CMP_EQ);
        w.data_value(3, &[IPPROTO_TCP]);
    });
    // redirect to :port
    w.expr("immediate", |w| {
        w.be32(1, NFT_REG_1); // NFTA_IMMEDIATE_DREG
        w.data_value(2, &port.to_be_bytes()); // NFTA_IMMEDIATE_DATA
    });
    w.expr("redir", |w| {
        w.be32(1, NFT_REG_1); // NFTA_REDIR_REG_PROTO_MIN
        w.be32(3, NF_NAT_RANGE_PROTO_SPECIFIED); // NFTA_REDIR_FLAGS
    });
    w.end_nest(exprs);
    w.end(m);

    let e = w.begin(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq + 6,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end(e);

    let acks = vec![
        (seq + 1, Step::CreateTable),
        (seq + 2, Step::DeleteTable),
        (seq + 3, Step::RecreateTable),
        (seq + 4, Step::Chain),
        (seq + 5, Step::Rule),
    ];
    (w.buf, acks)
}

/// Installs (or replaces) the redirect of outgoing TCP to `127.0.0.1:port`, in the calling
/// thread's network namespace, checking the kernel's answer to every message.
pub fn install_redirect(port: u16) -> Result<(), NftError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(NftError::Socket)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NftError::Io)?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::new(ACK_TIMEOUT.as_secs() as _, 0),
    )
    .map_err(NftError::Io)?;

    let seq = 1;
    let (batch, mut pending) = build_batch(port, seq);
    sendto(
        fd.as_raw_fd(),
        &batch,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(NftError::Io)?;

    // Errors come in message order; stop at the first one. Success is every ack received.
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Err(NftError::Reply("no acknowledgement within 5 s")),
            Err(e) => return Err(NftError::Io(e)),
        };
        for (msg_seq, errno) in parse_acks(buf.get(..n).unwrap_or_default())? {
            if msg_seq == seq {
                // Only an error is ever sent for the batch-begin message.
                return Err(NftError::NoNfTables(errno.unwrap_or(Errno::UnknownErrno)));
            }
            let Some(i) = pending.iter().position(|(s, _)| *s == msg_seq) else {
                continue;
            };
            let (_, step) = pending.remove(i);
            if let Some(errno) = errno {
                return Err(NftError::Refused { step, errno });
            }
        }
    }
    Ok(())
}

/// The `NLMSG_ERROR` messages in one datagram: sequence number and error (`None` for an ack).
/// Other message types are skipped.
pub(super) fn parse_acks(mut buf: &[u8]) -> Result<Vec<(u32, Option<Errno>)>, NftError> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(NftError::Reply("a message length outside the datagram"));
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32_at(buf, 8);
        if ty == NLMSG_ERROR {
            if len < NLMSG_HDRLEN + 4 {
                return Err(NftError::Reply("an error message without an error code"));
            }
            let code = u32_at(buf, NLMSG_HDRLEN) as i32;
            out.push((seq, (code != 0).then(|| Errno::from_raw(-code))));
        }
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
#[path = "nft_tests.rs"]
mod tests;
