//! `enclave-ctl attest ENCLAVE`: a fresh attestation document from a running enclave.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use enclave_attest::parse_hex_arg;
use enclave_engine::events::{self, Event, EventKind};
use enclave_proto::wire::{AttestRequest, Capability};

use crate::cli::{AttestArgs, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: AttestArgs, remote: Option<&crate::remote::Remote>) -> Result<i32> {
    if args.print_root {
        // Made, when absent, in the checked state directory and checked as its other
        // directories are.
        let root = super::state_dir::open(&args.control.state)?;
        let ca = enclave_engine::state::emulation_ca(root.path())
            .with_context(|| format!("the emulation CA in {}", root.path().display()))?;
        println!("{}", ca.root_path().display());
        return Ok(EXIT_OK);
    }
    let Some(enclave) = args.enclave.as_deref() else {
        bail!("which enclave? (a name, an id or a control address)");
    };
    let nonce = match &args.nonce {
        Some(h) => parse_hex_arg("nonce", h)?,
        None => {
            let mut n = vec![0u8; 32];
            random_nonce(&mut n)?;
            eprintln!("nonce: {}", hex::encode(&n));
            n
        }
    };
    let user_data = args
        .user_data
        .as_deref()
        .map(|h| parse_hex_arg("user data", h))
        .transpose()?;
    let public_key = args.public_key.as_deref().map(read_key).transpose()?;
    let to_stdout = args.output.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write a binary document to a terminal; use -o FILE");
    }

    // Binding a key or data of the host's choosing needs debug.attest in the measured spec: a
    // document with the host's key would let the host pass for the enclave.
    let caps: &[Capability] = if public_key.is_some() || user_data.is_some() {
        &[Capability::Attest]
    } else {
        &[]
    };
    let mut client = super::exec::connect(enclave, &args.control, caps, remote).map_err(|e| {
        if caps.is_empty() {
            e
        } else {
            e.context(
                "--public-key and --user-data need the capability debug.attest (`debug: {attest: \
                 true}` in the enclave's spec; it shows in PCR31, and verifiers refuse such \
                 enclaves unless told --allow-debug); without them the document binds the nonce \
                 only",
            )
        }
    })?;
    let document = client
        .attest(AttestRequest {
            nonce: Some(nonce),
            user_data,
            public_key,
        })
        .with_context(|| format!("{enclave}: attestation"))?;
    // In the event log of the enclave's state directory (not for a bare control address; through
    // the engine API, when the daemon's directory is this user's).
    let root = match remote {
        Some(remote) => remote.local_root(),
        None => super::state_dir::open(&args.control.state).ok(),
    };
    if let Some(root) = root {
        if let Ok(rec) = root.resolve(enclave) {
            let binds = if caps.is_empty() {
                "nonce"
            } else {
                "nonce, key or data"
            };
            events::record(
                &root,
                Event::new(EventKind::Attest, &rec).with("binds", binds),
            );
        }
    }
    match args.output.as_ref().filter(|_| !to_stdout) {
        Some(path) => {
            std::fs::write(path, &document)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} bytes); check it with `enclave-ctl verify`",
                path.display(),
                document.len()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&document).context("writing the document")?;
            out.flush().context("writing the document")?;
        }
    }
    Ok(EXIT_OK)
}

/// A public key file: DER as is, or the first PEM block's content.
fn read_key(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    let Some(start) = text.find("-----BEGIN ") else {
        return Ok(bytes);
    };
    let body: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    base64_decode(&body).with_context(|| format!("{}: malformed PEM", path.display()))
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    use base64ct::{Base64, Encoding};
    Base64::decode_vec(s.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn random_nonce(buf: &mut [u8]) -> Result<()> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, buf))
        .context("reading /dev/urandom for a nonce")
}
