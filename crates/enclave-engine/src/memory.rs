//! Enclave memory sizes as users write them: `512m`, `2g`, `1.5`-free integers with Docker's
//! suffixes, and a bare number meaning MiB (what `--memory` always took, kept for scripts
//! written before the suffixes). Enclaves get whole MiB (QEMU's `-m` and nitro-cli's
//! `--memory` both count in MiB), so a size that is not a whole number of MiB is refused rather
//! than rounded behind the user's back.

use std::fmt;
use std::str::FromStr;

/// A memory size in MiB, parsed from `1024`, `512m`, `512MiB`, `2g`, `2048k`, `1t`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryMib(pub u64);

/// Why a memory size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemorySizeError {
    /// Nothing given.
    #[error("empty memory size: use e.g. 512m, 2g, or a number of MiB")]
    Empty,
    /// No digits before the unit, or not an integer.
    #[error("{0:?} is not a memory size: use an integer with an optional unit, e.g. 512m or 2g")]
    NotANumber(String),
    /// A unit other than b, k, m, g, t (each optionally followed by `b` or `ib`).
    #[error("{input:?}: unknown unit {unit:?} (use b, k, m, g or t, e.g. 512m or 2g)")]
    UnknownUnit {
        /// What was given.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// Larger than a u64 of bytes.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// Bytes or KiB that do not make whole MiB.
    #[error("{0:?} is not a whole number of MiB (enclaves get memory in MiB)")]
    NotWholeMib(String),
    /// Zero.
    #[error("{0:?}: an enclave needs more than 0 MiB")]
    Zero(String),
}

/// Units and their size as a power of 2, bytes. A bare number is MiB, not bytes.
const UNITS: [(&str, u32); 5] = [("b", 0), ("k", 10), ("m", 20), ("g", 30), ("t", 40)];

impl FromStr for MemoryMib {
    type Err = MemorySizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(MemorySizeError::Empty);
        }
        let digits = input
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(input.len());
        let (number, unit) = input.split_at(digits);
        if number.is_empty() {
            return Err(MemorySizeError::NotANumber(s.to_owned()));
        }
        let number: u64 = number
            .parse()
            .map_err(|_| MemorySizeError::TooLarge(s.to_owned()))?;
        let unit_lc = unit.to_ascii_lowercase();
        let shift = if unit_lc.is_empty() {
            20
        } else {
            // `m`, `mb` and `mib` all mean MiB (as in Docker); `b` alone is bytes.
            let base = match unit_lc.as_str() {
                "b" => "b",
                u => u
                    .strip_suffix("ib")
                    .or_else(|| u.strip_suffix('b'))
                    .unwrap_or(u),
            };
            let found = UNITS.iter().find(|(u, _)| *u == base);
            match found {
                Some(&(_, shift)) => shift,
                None if unit.starts_with('.') || unit.starts_with(',') => {
                    return Err(MemorySizeError::NotANumber(s.to_owned()))
                }
                None => {
                    return Err(MemorySizeError::UnknownUnit {
                        input: s.to_owned(),
                        unit: unit.to_owned(),
                    })
                }
            }
        };
        let mib = if shift >= 20 {
            number
                .checked_mul(1u64 << (shift - 20))
                .ok_or_else(|| MemorySizeError::TooLarge(s.to_owned()))?
        } else {
            let per_mib = 1u64 << (20 - shift);
            if !number.is_multiple_of(per_mib) {
                return Err(MemorySizeError::NotWholeMib(s.to_owned()));
            }
            number / per_mib
        };
        // Bytes must fit a u64 too: QEMU and nitro-cli compute with them.
        if mib.checked_mul(1 << 20).is_none() {
            return Err(MemorySizeError::TooLarge(s.to_owned()));
        }
        if mib == 0 {
            return Err(MemorySizeError::Zero(s.to_owned()));
        }
        Ok(MemoryMib(mib))
    }
}

impl fmt::Display for MemoryMib {
    /// `2g` when whole GiB, else `512m`: parses back to the same size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1024) {
            write!(f, "{}g", self.0 / 1024)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MemoryMib, MemorySizeError};

    #[test]
    fn sizes_with_and_without_suffixes() {
        for (text, mib) in [
            ("1024", 1024),
            ("512", 512),
            ("512m", 512),
            ("512M", 512),
            ("512mb", 512),
            ("512MiB", 512),
            ("2g", 2048),
            ("2G", 2048),
            ("2GiB", 2048),
            ("1t", 1 << 20),
            ("2048k", 2),
            ("1048576b", 1),
            (" 64m ", 64),
        ] {
            assert_eq!(text.parse::<MemoryMib>(), Ok(MemoryMib(mib)), "{text}");
        }
    }

    #[test]
    fn printed_sizes_parse_back() {
        for mib in [1, 128, 512, 1024, 1536, 4096] {
            let m = MemoryMib(mib);
            assert_eq!(m.to_string().parse::<MemoryMib>(), Ok(m));
        }
        assert_eq!(MemoryMib(2048).to_string(), "2g");
        assert_eq!(MemoryMib(1536).to_string(), "1536m");
    }

    #[test]
    fn bad_sizes_get_clear_errors() {
        let err = |s: &str| s.parse::<MemoryMib>().unwrap_err();
        assert_eq!(
            err("12x"),
            MemorySizeError::UnknownUnit {
                input: "12x".into(),
                unit: "x".into()
            }
        );
        assert!(err("12x").to_string().contains("unknown unit \"x\""));
        assert_eq!(err(""), MemorySizeError::Empty);
        assert_eq!(err("m"), MemorySizeError::NotANumber("m".into()));
        assert_eq!(err("-1g"), MemorySizeError::NotANumber("-1g".into()));
        assert_eq!(err("1.5g"), MemorySizeError::NotANumber("1.5g".into()));
        assert_eq!(err("0"), MemorySizeError::Zero("0".into()));
        assert_eq!(err("0g"), MemorySizeError::Zero("0g".into()));
        assert_eq!(err("1000k"), MemorySizeError::NotWholeMib("1000k".into()));
        assert_eq!(err("512b"), MemorySizeError::NotWholeMib("512b".into()));
        // Overflow: of the number itself, of the unit's product, of the bytes.
        for big in [
            "99999999999999999999999",
            "18446744073709551615t",
            "17592186044416",
            "17179869184g",
        ] {
            assert_eq!(err(big), MemorySizeError::TooLarge(big.into()), "{big}");
            assert!(err(big).to_string().contains("too large"));
        }
        // The largest size whose bytes still fit a u64.
        assert_eq!(
            "17592186044415".parse::<MemoryMib>(),
            Ok(MemoryMib(u64::MAX >> 20))
        );
    }
}
