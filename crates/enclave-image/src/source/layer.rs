//! Streaming a layer: compression detection, decompression and digest verification.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use sha2::{Digest as _, Sha256};

use super::store::BlobReader;
use super::{Digest, LayerDescriptor, SourceError};

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// The compression a layer media type announces: `Ok(None)` when the type does not say
    /// (plain `.tar` types; the bytes decide), an error for types that are not layers.
    pub fn from_media_type(media_type: &str) -> Result<Option<Self>, String> {
        const LAYER_TYPES: [&str; 4] = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let Some(suffix) = LAYER_TYPES.iter().find_map(|t| media_type.strip_prefix(t)) else {
            return Err(media_type.to_owned());
        };
        match suffix {
            "" => Ok(None),
            "+gzip" | ".gzip" => Ok(Some(Self::Gzip)),
            "+zstd" | ".zstd" => Ok(Some(Self::Zstd)),
            _ => Err(media_type.to_owned()),
        }
    }

    /// The compression the first bytes of a blob show.
    pub fn sniff(magic: &[u8]) -> Self {
        match magic {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            _ => Self::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// A decompressing reader over a layer blob.
pub enum Decompressor<R: BufRead> {
    /// Plain tar, passed through.
    Plain(R),
    /// gzip.
    Gzip(Box<MultiGzDecoder<R>>),
    /// zstd.
    Zstd(Box<ZstdReader<R>>),
}

/// Sniffs the compression of `reader` and wraps it in the matching decoder.
pub fn decompress<R: BufRead>(mut reader: R) -> io::Result<(Compression, Decompressor<R>)> {
    let compression = Compression::sniff(reader.fill_buf()?);
    let decoder = match compression {
        Compression::None => Decompressor::Plain(reader),
        Compression::Gzip => Decompressor::Gzip(Box::new(MultiGzDecoder::new(reader))),
        Compression::Zstd => Decompressor::Zstd(Box::new(ZstdReader::new(reader))),
    };
    Ok((compression, decoder))
}

impl<R: BufRead> Decompressor<R> {
    fn get_mut(&mut self) -> &mut R {
        match self {
            Self::Plain(r) => r,
            Self::Gzip(d) => d.get_mut(),
            Self::Zstd(d) => &mut d.src,
        }
    }
}

impl<R: BufRead> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
        }
    }
}

/// A multi-frame zstd reader that verifies each frame's content checksum, which ruzstd's own
/// streaming decoder neither does nor supports across frames.
pub struct ZstdReader<R: BufRead> {
    src: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(src: R) -> Self {
        Self {
            src,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; `Ok(false)` at a clean end of input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.src.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.init(&mut self.src) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.src).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(corrupt("truncated skippable frame"));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            if self.decoder.can_collect() > 0 {
                return self.decoder.read(buf);
            }
            if self.decoder.is_finished() {
                let expected = self.decoder.get_checksum_from_data();
                if expected.is_some() && expected != self.decoder.get_calculated_checksum() {
                    return Err(corrupt("zstd content checksum mismatch"));
                }
                self.in_frame = false;
                continue;
            }
            self.decoder
                .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(buf.len()))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

fn corrupt(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Counts and hashes what passes through.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Digest and length of what has passed so far.
    fn snapshot(&self) -> (Digest, u64) {
        (
            Digest::from_sha256(self.hasher.clone().finalize().into()),
            self.len,
        )
    }
}

type RawReader = BufReader<HashingReader<BlobReader>>;

/// A layer's uncompressed tar stream. Read it, then call [`LayerStream::finish`].
pub struct LayerStream {
    inner: HashingReader<Decompressor<RawReader>>,
    layer: LayerDescriptor,
    compression: Compression,
}

impl LayerStream {
    pub(crate) fn new(raw: BlobReader, layer: &LayerDescriptor) -> Result<Self, SourceError> {
        let declared = Compression::from_media_type(&layer.media_type).map_err(|media_type| {
            SourceError::UnsupportedMediaType {
                what: format!("layer {}", layer.digest),
                media_type,
            }
        })?;
        let reader = BufReader::with_capacity(64 * 1024, HashingReader::new(raw));
        let (found, decoder) = decompress(reader).map_err(|source| SourceError::LayerRead {
            layer: layer.digest.clone(),
            source,
        })?;
        // A type that names a compression must match the bytes; an uncompressed type does not
        // bind, since docker-archive layers are labelled `.tar` whatever they hold.
        if let Some(declared) = declared.filter(|&d| d != found) {
            return Err(SourceError::CompressionMismatch {
                layer: layer.digest.clone(),
                declared: declared.name(),
                found: found.name(),
            });
        }
        Ok(Self {
            inner: HashingReader::new(decoder),
            layer: layer.clone(),
            compression: found,
        })
    }

    /// The compression found in the blob.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The descriptor of the layer being read.
    pub fn descriptor(&self) -> &LayerDescriptor {
        &self.layer
    }

    /// Reads what is left (so trailing garbage and checksums are seen), then verifies the blob
    /// digest and size and the uncompressed diff id.
    pub fn finish(mut self) -> Result<(), SourceError> {
        let layer = &self.layer;
        let read_err = |source| SourceError::LayerRead {
            layer: layer.digest.clone(),
            source,
        };
        io::copy(&mut self.inner, &mut io::sink()).map_err(read_err)?;
        let (diff_id, _) = self.inner.snapshot();
        // The decoder stops at its own trailer: hash whatever follows too, it is part of the blob.
        let raw = self.inner.inner.get_mut().get_mut();
        io::copy(raw, &mut io::sink()).map_err(read_err)?;
        let (blob_digest, blob_len) = raw.snapshot();
        let what = format!("layer {}", layer.digest);
        if let Some(expected) = layer.size.filter(|&s| s != blob_len) {
            return Err(SourceError::SizeMismatch {
                what,
                expected,
                actual: blob_len,
            });
        }
        let checks = [(&layer.blob_digest, blob_digest), (&layer.diff_id, diff_id)];
        for (expected, actual) in checks {
            if let Some(expected) = expected.as_ref().filter(|&e| *e != actual) {
                return Err(SourceError::DigestMismatch {
                    what,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
