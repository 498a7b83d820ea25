//! The per-host emulation root CA: a P-384 key and a self-signed root certificate in
//! `<state root>/emulation-ca/{root.key, root.pem}`, created on first use, and the short-lived
//! leaf certificates it issues, one per document.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{BitString, OctetString, UtcTime};
use der::{Decode, Encode, EncodePem};
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{DerSignature, SigningKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha256};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::{EmulationError, EMULATION_ROOT_SUBJECT};

/// The root key file, mode 0600.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The root certificate (PEM), what `--trust-root` takes.
pub const ROOT_CERT_FILE: &str = "root.pem";
/// How long the root is valid (20 years; UTCTime reaches 2049).
const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 86_400);
/// How long a leaf is valid: documents are meant to be verified soon after they are fetched
/// (Nitro's leaves live about three hours).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Backdating of every notBefore, for clocks slightly behind the host's.
const BACKDATE: Duration = Duration::from_secs(60);

/// The emulation root: its key never leaves this struct (no `Debug` of it, never logged).
pub struct EmulationCa {
    dir: PathBuf,
    key: SigningKey,
    root_der: Vec<u8>,
}

impl std::fmt::Debug for EmulationCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulationCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmulationError + '_ {
    move |source| EmulationError::Io {
        path: path.to_owned(),
        source,
    }
}

impl EmulationCa {
    /// Loads the CA in `dir` (`<state root>/emulation-ca`), creating it when absent. Creation
    /// writes both files into a fresh 0700 directory next to `dir` and renames it into place, so
    /// concurrent first uses agree on one root and nobody ever sees half a CA.
    pub fn load_or_create(dir: &Path) -> Result<EmulationCa, EmulationError> {
        match EmulationCa::load(dir) {
            Err(EmulationError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let parent = dir.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = parent.join(format!(
            ".emulation-ca.tmp-{}-{}",
            std::process::id(),
            hex::encode(random::<4>()?)
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io(&tmp))?;
        let made = EmulationCa::create_in(&tmp).and_then(|()| match fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            // Someone else created it first: theirs is the root.
            Err(_) if dir.join(ROOT_CERT_FILE).exists() => Ok(()),
            Err(e) => Err(io(dir)(e)),
        });
        let _ = fs::remove_dir_all(&tmp);
        made?;
        EmulationCa::load(dir)
    }

    /// Loads an existing CA, refusing a key file readable by others.
    pub fn load(dir: &Path) -> Result<EmulationCa, EmulationError> {
        let key_path = dir.join(ROOT_KEY_FILE);
        let meta = fs::metadata(&key_path).map_err(io(&key_path))?;
        if meta.mode() & 0o077 != 0 {
            return Err(EmulationError::KeyPermissions {
                path: key_path,
                mode: meta.mode() & 0o777,
            });
        }
        let pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| EmulationError::Key(format!("{}: {e}", key_path.display())))?;
        let cert_path = dir.join(ROOT_CERT_FILE);
        let cert_pem = fs::read(&cert_path).map_err(io(&cert_path))?;
        let cert = Certificate::load_pem_chain(&cert_pem)
            .ok()
            .and_then(|mut v| (v.len() == 1).then(|| v.remove(0)))
            .ok_or_else(|| {
                EmulationError::Certificate(format!(
                    "{}: not one PEM certificate",
                    cert_path.display()
                ))
            })?;
        let root_der = cert.to_der().map_err(cert_err)?;
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(cert_err)?;
        if cert.tbs_certificate.subject_public_key_info != spki {
            return Err(EmulationError::Certificate(format!(
                "{} does not hold the public key of {}",
                cert_path.display(),
                key_path.display()
            )));
        }
        Ok(EmulationCa {
            dir: dir.to_owned(),
            key,
            root_der,
        })
    }

    fn create_in(dir: &Path) -> Result<(), EmulationError> {
        let key = loop {
            // A random 48-byte string is a valid scalar except with negligible probability.
            if let Ok(k) = SigningKey::from_slice(&random::<48>()?) {
                break k;
            }
        };
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| EmulationError::Key(e.to_string()))?;
        write_new(&dir.join(ROOT_KEY_FILE), pem.as_bytes(), 0o600)?;
        let now = unix_now();
        let root = issue(
            EMULATION_ROOT_SUBJECT,
            &key,
            EMULATION_ROOT_SUBJECT,
            &key,
            true,
            (now - BACKDATE, now + ROOT_LIFETIME),
        )?;
        let root_pem = root.to_pem(LineEnding::LF).map_err(cert_err)?;
        write_new(&dir.join(ROOT_CERT_FILE), root_pem.as_bytes(), 0o644)
    }

    /// The CA's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root certificate file, for `--trust-root`.
    pub fn root_path(&self) -> PathBuf {
        self.dir.join(ROOT_CERT_FILE)
    }

    /// DER of the root certificate.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// 16 hex digits naming this host in module ids (`i-<these>-enc…`), from the root.
    pub fn host_id(&self) -> String {
        hex::encode(&Sha256::digest(&self.root_der)[..8])
    }

    /// Issues a fresh leaf (new P-384 key, valid [`LEAF_LIFETIME`]) named after `module_id`.
    pub(crate) fn issue_leaf(
        &self,
        module_id: &str,
    ) -> Result<(Vec<u8>, SigningKey), EmulationError> {
        let key = loop {
            if let Ok(k) = SigningKey::from_slice(&random::<48>()?) {
                break k;
            }
        };
        let now = unix_now();
        let subject = format!("CN={module_id}.emulated,OU=emulated-nsm,O=enclave-engine");
        let cert = issue(
            &subject,
            &key,
            EMULATION_ROOT_SUBJECT,
            &self.key,
            false,
            (now - BACKDATE, now + LEAF_LIFETIME),
        )?;
        Ok((cert.to_der().map_err(cert_err)?, key))
    }
}

fn cert_err(e: impl std::fmt::Display) -> EmulationError {
    EmulationError::Certificate(e.to_string())
}

pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub(crate) fn random<const N: usize>() -> Result<[u8; N], EmulationError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| EmulationError::Key(format!("getrandom: {e}")))?;
    Ok(b)
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes`, syncs.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EmulationError> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Issues an ECDSA-with-SHA384 certificate: a CA (basicConstraints CA, pathLen 0, keyCertSign)
/// or a leaf (digitalSignature).
fn issue(
    subject: &str,
    subject_key: &SigningKey,
    issuer: &str,
    issuer_key: &SigningKey,
    ca: bool,
    (not_before, not_after): (Duration, Duration),
) -> Result<Certificate, EmulationError> {
    let alg = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        parameters: None,
    };
    let time = |d: Duration| {
        UtcTime::from_unix_duration(Duration::from_secs(d.as_secs()))
            .map(Time::UtcTime)
            .map_err(cert_err)
    };
    let ext = |oid, value: Vec<u8>| -> Result<Extension, EmulationError> {
        Ok(Extension {
            extn_id: oid,
            critical: true,
            extn_value: OctetString::new(value).map_err(cert_err)?,
        })
    };
    let (bc, ku) = if ca {
        (
            BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        )
    } else {
        (
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            KeyUsage(KeyUsages::DigitalSignature.into()),
        )
    };
    let mut serial = random::<16>()?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(cert_err)?,
        signature: alg.clone(),
        issuer: Name::from_str(issuer).map_err(cert_err)?,
        validity: Validity {
            not_before: time(not_before)?,
            not_after: time(not_after)?,
        },
        subject: Name::from_str(subject).map_err(cert_err)?,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key())
            .map_err(cert_err)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            ext(
                const_oid::db::rfc5912::ID_CE_BASIC_CONSTRAINTS,
                bc.to_der().map_err(cert_err)?,
            )?,
            ext(
                const_oid::db::rfc5912::ID_CE_KEY_USAGE,
                ku.to_der().map_err(cert_err)?,
            )?,
        ]),
    };
    let sig: DerSignature = issuer_key.sign(&tbs.to_der().map_err(cert_err)?);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(sig.as_bytes()).map_err(cert_err)?,
    };
    // Round-trip once so a defect shows here, not in a verifier.
    Certificate::from_der(&cert.to_der().map_err(cert_err)?).map_err(cert_err)
}
