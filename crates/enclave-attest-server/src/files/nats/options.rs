//! Where and how to reach the NATS server: the URL, the bucket, TLS and credentials, from the
//! spec's `files.nats` section or built by hand (tests, tools).

use std::path::Path;

use enclave_spec::{NatsSpec, NatsTlsSpec};

use super::error::{parse_url, NatsUrl};
use super::{NatsAuth, NatsError, NatsTls};

/// Everything [`crate::files::NatsPublisher::connect`] needs.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub(crate) url: NatsUrl,
    pub(crate) bucket: String,
    pub(crate) tls: Option<NatsTls>,
    pub(crate) auth: Option<NatsAuth>,
}

impl NatsOptions {
    /// `url` (`nats://HOST[:PORT]`) and `bucket`, in plain text without credentials until
    /// [`NatsOptions::tls`] and [`NatsOptions::auth`] say otherwise.
    pub fn new(url: &str, bucket: &str) -> Result<NatsOptions, NatsError> {
        let valid = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(NatsError::BadBucket(bucket.to_string()));
        }
        Ok(NatsOptions {
            url: parse_url(url)?,
            bucket: bucket.to_string(),
            tls: None,
            auth: None,
        })
    }

    /// Requires TLS with these trust anchors and server name.
    pub fn tls(mut self, tls: NatsTls) -> NatsOptions {
        self.tls = Some(tls);
        self
    }

    /// Authenticates with these credentials.
    pub fn auth(mut self, auth: NatsAuth) -> NatsOptions {
        self.auth = Some(auth);
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The URL's host: the TLS server name unless the spec names another.
    pub fn host(&self) -> &str {
        &self.url.host
    }

    /// The spec's section, with the CA file (when the spec names one rather than inlining the
    /// PEM) and the credentials file read now: a missing or unreadable one fails here, at
    /// start, not at the first publication.
    pub fn from_spec(spec: &NatsSpec) -> Result<NatsOptions, NatsError> {
        let mut options = NatsOptions::new(&spec.url, &spec.bucket)?;
        if let Some(tls) = &spec.tls {
            let name = tls.server_name.as_deref().unwrap_or(&options.url.host);
            options.tls = Some(NatsTls::new(&ca_pem(tls)?, name)?);
        }
        if let Some(creds) = &spec.credentials {
            options.auth = Some(NatsAuth::load(creds.kind, Path::new(&creds.file))?);
        }
        Ok(options)
    }
}

fn ca_pem(tls: &NatsTlsSpec) -> Result<Vec<u8>, NatsError> {
    match (&tls.ca, &tls.ca_file) {
        (Some(pem), _) => Ok(pem.as_bytes().to_vec()),
        (None, Some(path)) => std::fs::read(path).map_err(|source| NatsError::CaFile {
            path: path.into(),
            source,
        }),
        (None, None) => Err(NatsError::NoCaCertificate),
    }
}
