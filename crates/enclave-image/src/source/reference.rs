//! Parsing of skopeo-style image references.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::SourceError;

/// Where an image comes from, in skopeo's transport notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:<dir>[:<tag>]`: an OCI image layout directory.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to select.
        tag: Option<String>,
    },
    /// `oci-archive:<tar>[:<tag>]`: an OCI image layout in an uncompressed tar.
    OciArchive {
        /// The archive.
        archive: PathBuf,
        /// The `org.opencontainers.image.ref.name` to select.
        tag: Option<String>,
    },
    /// `docker-archive:<tar>[:<name:tag>|:@<index>]`: `docker save` output.
    DockerArchive {
        /// The archive.
        archive: PathBuf,
        /// A repo tag (`name:tag`) or `@<index>` into manifest.json.
        reference: Option<String>,
    },
    /// `dir:<rootfs>`: a plain directory used as the root filesystem.
    Dir {
        /// The directory.
        path: PathBuf,
    },
}

impl FromStr for ImageRef {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| SourceError::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        let (transport, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected <transport>:<path>"))?;
        // Like skopeo, the path ends at the first ':'; what follows selects the image.
        let (path, selector) = match rest.split_once(':') {
            Some((path, sel)) if transport != "dir" => (path, Some(sel)),
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(invalid("empty path"));
        }
        if selector == Some("") {
            return Err(invalid("empty tag after ':'"));
        }
        let path = PathBuf::from(path);
        let selector = selector.map(str::to_owned);
        match transport {
            "oci" => Ok(Self::Oci {
                dir: path,
                tag: selector,
            }),
            "oci-archive" => Ok(Self::OciArchive {
                archive: path,
                tag: selector,
            }),
            "docker-archive" => Ok(Self::DockerArchive {
                archive: path,
                reference: selector,
            }),
            "dir" => Ok(Self::Dir { path }),
            _ => Err(invalid(
                "unknown transport (expected oci, oci-archive, docker-archive or dir)",
            )),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (transport, path, selector) = match self {
            Self::Oci { dir, tag } => ("oci", dir, tag),
            Self::OciArchive { archive, tag } => ("oci-archive", archive, tag),
            Self::DockerArchive { archive, reference } => ("docker-archive", archive, reference),
            Self::Dir { path } => ("dir", path, &None),
        };
        write!(f, "{transport}:{}", path.display())?;
        if let Some(selector) = selector {
            write!(f, ":{selector}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn transports() {
        assert_eq!(
            parse("oci:/x/layout:app"),
            ImageRef::Oci {
                dir: "/x/layout".into(),
                tag: Some("app".into())
            }
        );
        assert_eq!(
            parse("oci-archive:img.tar"),
            ImageRef::OciArchive {
                archive: "img.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            parse("docker-archive:d.tar:enclave/app:latest"),
            ImageRef::DockerArchive {
                archive: "d.tar".into(),
                reference: Some("enclave/app:latest".into())
            }
        );
        assert_eq!(
            parse("dir:/a:b"),
            ImageRef::Dir {
                path: "/a:b".into()
            }
        );
        for s in ["oci:/x/layout:app", "docker-archive:d.tar:a/b:c", "dir:/r"] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn invalid() {
        for s in ["nope", "oci:", "oci:dir:", "http:x", ":x"] {
            assert!(s.parse::<ImageRef>().is_err(), "{s}");
        }
    }
}
