//! Checks that the init binary is a static x86-64 ELF executable: a dynamically linked one would
//! find no loader in the initramfs and the enclave would panic at boot.

use std::io::Read;
use std::path::Path;

/// Why a file is not a usable static init.
pub fn check_static_elf(path: &Path) -> Result<(), String> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    static_elf_problem(&head).map_or(Ok(()), Err)
}

/// Inspects the first bytes of an ELF file; `Some(problem)` when it is not a static x86-64
/// executable. Needs the program headers within `head`.
fn static_elf_problem(head: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    const EM_X86_64: u16 = 62;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Some("not an ELF executable".into());
    }
    if head[4] != 2 || head[5] != 1 {
        return Some("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if u16_at(18) != Some(EM_X86_64) {
        return Some("not an x86-64 executable".into());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return Some("truncated ELF header".into());
    };
    for i in 0..usize::from(phnum) {
        let off = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * usize::from(phentsize)));
        match off.and_then(u32_at) {
            Some(PT_INTERP) => {
                return Some(
                    "dynamically linked (it has an ELF interpreter); build the static one with \
                     scripts/build-init.sh"
                        .into(),
                )
            }
            Some(_) => {}
            None => return Some("program headers out of range".into()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_and_static_binaries_are_told_apart() {
        // /bin/sh on any Debian is dynamically linked.
        let err = check_static_elf(Path::new("/bin/sh")).unwrap_err();
        assert!(err.contains("dynamically linked"), "{err}");
        // busybox-static, when installed, is static.
        if Path::new("/bin/busybox").exists() {
            check_static_elf(Path::new("/bin/busybox")).unwrap();
        }
        assert!(static_elf_problem(b"#!/bin/sh\n").is_some());
        let mut truncated = b"\x7fELF\x02\x01".to_vec();
        truncated.resize(64, 0);
        truncated[18] = 62;
        truncated[32] = 0xff; // program headers far beyond the buffer
        truncated[56] = 1;
        assert_eq!(
            static_elf_problem(&truncated).as_deref(),
            Some("program headers out of range")
        );
    }
}
