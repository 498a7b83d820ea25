//! Arguments of the attestation commands.

use std::path::PathBuf;

use clap::Args;

/// `enclave-ctl verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 the document is genuine and the policy holds, 3 it is not \
    (the message names what failed), 4 no expected measurement was given (neither --pcr 0=, \
    --pcr 8= nor --any-enclave; nothing was verified), 1 the document or an argument could not \
    be read, 2 usage error.\n\n\
    Say which enclave you expect: --pcr 0=HEX pins the whole image, --pcr 8=HEX the \
    certificate that signed it (both from `enclave-ctl build` or `measure`). Any genuine \
    document passes a check of nothing, an attacker's enclave running the same server \
    included, so --any-enclave must be said explicitly; it prints the document's PCRs to pin \
    next time.\n\n\
    Two kinds of debug are refused unless allowed, separately: Nitro debug mode (PCR0..2 zero, \
    the enclave started with --debug-mode, its memory readable by the parent instance; \
    --allow-debug-mode) and debug capabilities (PCR31 carries the marker of debug.exec, \
    debug.cp or debug.attest granted by the enclave's spec, or an unknown non-zero value: \
    whoever controls the parent can run code in the enclave, copy files or get documents \
    binding its own key; --allow-debug). The report shows both.\n\n\
    The document's chain must end at a trusted root: the AWS Nitro Enclaves Root-G1 compiled \
    into this tool, or the roots given with --trust-root (which replace it). The cabundle's \
    first certificate, carried by the document itself, is never trusted.\n\n\
    With --https, the document comes from an enclave's attestation server for a fresh random \
    nonce, and the server's TLS key must be the one the document binds (attested TLS): a \
    relay or an impostor fails.\n\n\
    Example:\n  enclave-ctl verify doc.cose --nonce 0011… --pcr 0=$(jq -r .Measurements.PCR0 build.json)\n  \
    enclave-ctl verify --https 127.0.0.1:8443 --trust-root $(enclave-ctl attest --print-root) --pcr 0=…"
)]
pub struct VerifyArgs {
    /// The attestation document: a file of raw COSE_Sign1 bytes, base64 or hex (`-` for stdin).
    #[arg(required_unless_present = "https", conflicts_with = "https")]
    pub doc: Option<PathBuf>,

    /// Fetch the document from an attestation server (HOST:PORT, e.g. a port published with
    /// `run -p`) and check that its TLS key is the one the document binds.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "nonce")]
    pub https: Option<String>,

    /// With --https: a client certificate (PEM chain) for a server that requires mTLS.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// With --https: the client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// With --https: also get FILE's SHA3-512 and its VRF proof from the server and verify the
    /// proof under the VRF key the document binds; repeatable.
    #[arg(long = "file", value_name = "PATH", requires = "https")]
    pub files: Vec<String>,

    /// With --https: also write the verified document here.
    #[arg(short, long, value_name = "FILE", requires = "https")]
    pub output: Option<PathBuf>,

    /// Check certificate validity at this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,

    /// Trust this root (PEM or DER) instead of the AWS root; repeatable.
    #[arg(long = "trust-root", value_name = "PEM")]
    pub trust_roots: Vec<PathBuf>,

    /// Expect PCR N to be HEX; repeatable. PCR0 (the image) or PCR8 (its signer) must be among
    /// them, unless --any-enclave.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pub pcrs: Vec<String>,

    /// Accept any genuine enclave, whatever it runs (no PCR pinned); warns, printing the
    /// document's PCRs to pin next time.
    #[arg(long, conflicts_with = "pcrs")]
    pub any_enclave: bool,

    /// Expect this nonce.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,

    /// Expect this user_data.
    #[arg(long, value_name = "HEX")]
    pub user_data: Option<String>,

    /// Expect this public_key.
    #[arg(long, value_name = "HEX")]
    pub public_key: Option<String>,

    /// Accept an enclave whose PCR31 shows debug capabilities (debug.exec, debug.cp,
    /// debug.attest) or an unknown value: the host can reach into it.
    #[arg(long)]
    pub allow_debug: bool,

    /// Accept a Nitro debug-mode document (PCR0..2 all zero), which proves nothing about the
    /// code.
    #[arg(long)]
    pub allow_debug_mode: bool,

    /// Print the decoded document as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `enclave-ctl attest`.
#[derive(Debug, Args)]
#[command(
    after_help = "Fetches a fresh attestation document from a running enclave's NSM (/dev/nsm \
    on Nitro; on the emulated backend, the supervisor's emulated NSM, signed by this host's \
    emulation root). Needs no debug capability. Without --nonce a random 32-byte nonce is used \
    and printed (to stderr) so that it can be passed to `verify --nonce`.\n\n\
    Example:\n  enclave-ctl attest app -o doc.cose\n  \
    enclave-ctl verify doc.cose --trust-root $(enclave-ctl attest --print-root) --nonce … --pcr 0=…"
)]
pub struct AttestArgs {
    /// The enclave: a name or id from `enclave-ctl ps`, or a control address.
    #[arg(required_unless_present = "print_root")]
    pub enclave: Option<String>,

    /// Nonce to bind into the document (default: 32 random bytes, printed).
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,

    /// user_data to bind into the document.
    #[arg(long, value_name = "HEX")]
    pub user_data: Option<String>,

    /// A public key file (DER, or PEM whose first block is used) to bind into the document.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,

    /// Where to write the raw COSE_Sign1 document (`-`: stdout, refused on a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print the path of this host's emulation root certificate (creating it if needed) and exit.
    #[arg(long)]
    pub print_root: bool,

    #[command(flatten)]
    pub control: super::ControlArgs,
}
