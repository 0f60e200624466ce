//! File identity independent of the file's name (ARCHITECTURE.md §4): device + inode + a hash of the
//! first bytes. The hash covers at most [`FINGERPRINT_MAX_BYTES`]; for a small file it covers what
//! the file had, and grows with it, so a later check compares like with like.

use std::os::unix::fs::FileExt;

use crate::record::FileIdentity;

/// Most leading bytes a fingerprint covers. Long enough to tell apart files that start with the
/// same timestamp prefix, short enough to read in one call.
pub const FINGERPRINT_MAX_BYTES: usize = 1024;

/// FNV-1a, 64 bits: stable across Rust versions and platforms (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The identity of a file whose first bytes are `head`, for a position at `offset`: the
/// fingerprint covers the bytes before the position (at most [`FINGERPRINT_MAX_BYTES`]), so a
/// file can always be checked against it as long as it still reaches the position.
pub fn identity(dev: u64, inode: u64, head: &[u8], offset: u64) -> FileIdentity {
    let len = (offset.min(FINGERPRINT_MAX_BYTES as u64) as usize).min(head.len());
    FileIdentity {
        dev,
        inode,
        fingerprint_len: len as u32,
        fingerprint: fnv1a(&head[..len]),
    }
}

/// Whether `file` still begins with `head`.
pub fn starts_with(file: &std::fs::File, head: &[u8]) -> std::io::Result<bool> {
    let mut now = vec![0u8; head.len()];
    match file.read_exact_at(&mut now, 0) {
        Ok(()) => Ok(now == head),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Adds to `head` (the file's first bytes) whatever part of `chunk`, read at `offset`, extends it.
pub fn extend_head(head: &mut Vec<u8>, offset: u64, chunk: &[u8]) {
    let have = head.len() as u64;
    let end = offset + chunk.len() as u64;
    if have >= FINGERPRINT_MAX_BYTES as u64 || offset > have || end <= have {
        return;
    }
    let from = (have - offset) as usize;
    let to = (FINGERPRINT_MAX_BYTES as u64).min(end) - offset;
    head.extend_from_slice(&chunk[from..to as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_fingerprint_covers_only_bytes_before_the_position() {
        let head = b"{\"a\":1}\n{\"b\":2}\n";
        assert_eq!(identity(1, 2, head, 8), identity(1, 2, &head[..8], 8));
        assert_ne!(identity(1, 2, head, 8), identity(1, 2, head, 16));
    }
}
