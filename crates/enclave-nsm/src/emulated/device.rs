//! The NSM's request handler for one emulated enclave: a bank of 32 SHA-384 PCRs (0..=15
//! measured and locked at boot, as on Nitro; 16..=31 extendable and lockable by the enclave),
//! documents signed by the emulation CA, random bytes from the host.
//!
//! A document carries the locked PCRs, as Nitro's does: 0..=15 from boot, plus any the enclave
//! locked (enclave-init locks PCR31, its debug-capability marker, so verifiers see it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_nitro_enclaves_nsm_api::api::{Digest as NsmDigest, ErrorCode, Request, Response};
use enclave_attest::MAX_OPTIONAL_LEN;
use sha2::{Digest, Sha384};

use super::ca::random;
use super::{DocumentFields, EmulationCa};

/// PCRs of the bank.
pub const NSM_PCRS: u16 = 32;
/// PCRs locked from boot (0..LOCKED_PCRS); a document carries these and any locked later.
pub const LOCKED_PCRS: u16 = 16;
/// Bytes a `GetRandom` returns (what the Nitro NSM returns).
const RANDOM_LEN: usize = 256;
/// Largest `ExtendPCR` data.
const MAX_EXTEND_LEN: usize = 1024;

/// The emulated NSM of one enclave boot.
#[derive(Debug)]
pub struct EmulatedDevice {
    ca: Arc<EmulationCa>,
    module_id: String,
    pcrs: Vec<[u8; 48]>,
    locked: BTreeSet<u16>,
}

impl EmulatedDevice {
    /// A device for enclave `enclave_id` (hex; its first 16 digits name the enclave in the
    /// module id) whose measured PCRs are `measured` (index to 48 bytes; others are zero).
    pub fn new(ca: Arc<EmulationCa>, enclave_id: &str, measured: &BTreeMap<u8, [u8; 48]>) -> Self {
        let enc: String = enclave_id.chars().take(16).collect();
        let module_id = format!("i-{}-enc{enc:0>16}", ca.host_id());
        let pcrs = (0..NSM_PCRS)
            .map(|i| {
                u8::try_from(i)
                    .ok()
                    .and_then(|i| measured.get(&i))
                    .copied()
                    .unwrap_or([0; 48])
            })
            .collect();
        EmulatedDevice {
            ca,
            module_id,
            pcrs,
            locked: (0..LOCKED_PCRS).collect(),
        }
    }

    /// The module id, `i-<host 16 hex>-enc<enclave 16 hex>`.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// Answers one request as the NSM would.
    pub fn handle(&mut self, request: Request) -> Response {
        let pcr = |index: u16| usize::from(index) < self.pcrs.len();
        match request {
            Request::DescribePCR { index } if pcr(index) => Response::DescribePCR {
                lock: self.locked.contains(&index),
                data: self.pcrs[usize::from(index)].to_vec(),
            },
            Request::ExtendPCR { index, data } if pcr(index) => {
                if self.locked.contains(&index) {
                    return Response::Error(ErrorCode::ReadOnlyIndex);
                }
                if data.len() > MAX_EXTEND_LEN {
                    return Response::Error(ErrorCode::InputTooLarge);
                }
                let slot = &mut self.pcrs[usize::from(index)];
                let mut h = Sha384::new();
                h.update(*slot);
                h.update(&data);
                *slot = h.finalize().into();
                Response::ExtendPCR {
                    data: slot.to_vec(),
                }
            }
            Request::LockPCR { index } if pcr(index) => {
                self.locked.insert(index);
                Response::LockPCR
            }
            Request::LockPCRs { range } if range <= NSM_PCRS => {
                self.locked.extend(0..range);
                Response::LockPCRs
            }
            Request::DescribePCR { .. }
            | Request::ExtendPCR { .. }
            | Request::LockPCR { .. }
            | Request::LockPCRs { .. } => Response::Error(ErrorCode::InvalidIndex),
            Request::DescribeNSM => Response::DescribeNSM {
                version_major: 1,
                version_minor: 0,
                version_patch: 0,
                module_id: self.module_id.clone(),
                max_pcrs: NSM_PCRS,
                locked_pcrs: self.locked.clone(),
                digest: NsmDigest::SHA384,
            },
            Request::Attestation {
                user_data,
                nonce,
                public_key,
            } => {
                let fields = DocumentFields {
                    module_id: self.module_id.clone(),
                    pcrs: self
                        .locked
                        .iter()
                        .filter_map(|&i| {
                            let value = self.pcrs.get(usize::from(i))?;
                            Some((u8::try_from(i).ok()?, value.to_vec()))
                        })
                        .collect(),
                    public_key: public_key.map(|b| b.into_vec()),
                    user_data: user_data.map(|b| b.into_vec()),
                    nonce: nonce.map(|b| b.into_vec()),
                };
                let too_long = [&fields.public_key, &fields.user_data, &fields.nonce]
                    .iter()
                    .any(|v| v.as_ref().is_some_and(|v| v.len() > MAX_OPTIONAL_LEN));
                if too_long {
                    return Response::Error(ErrorCode::InputTooLarge);
                }
                match fields.sign(&self.ca) {
                    Ok(document) => Response::Attestation { document },
                    Err(_) => Response::Error(ErrorCode::InternalError),
                }
            }
            Request::GetRandom => match random::<RANDOM_LEN>() {
                Ok(r) => Response::GetRandom { random: r.to_vec() },
                Err(_) => Response::Error(ErrorCode::InternalError),
            },
            _ => Response::Error(ErrorCode::InvalidOperation),
        }
    }
}
