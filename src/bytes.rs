//! Fixed-width integers read from a byte buffer at an offset: the one reader
//! of the binary formats b9 parses (MBR and GPT tables, qcow2 and VMDK
//! headers, ISO 9660 records, ELF files, ext4 superblocks).
//!
//! Every read is bounds checked: `None` when the field does not lie wholly
//! inside the buffer, never a panic. Callers turn `None` into their own typed
//! error (or a default where the format allows one).

/// The `N` bytes at `at`, or `None` when they are not all inside `b`.
fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The little-endian `u16` at `at`.
pub fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    field(b, at).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `at`.
pub fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    field(b, at).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`.
pub fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    field(b, at).map(u64::from_le_bytes)
}

/// The big-endian `u32` at `at`.
pub fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    field(b, at).map(u32::from_be_bytes)
}

/// The big-endian `u64` at `at`.
pub fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    field(b, at).map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 1), Some(0x0302));
        assert_eq!(le_u32(&b, 0), Some(0x0403_0201));
        assert_eq!(le_u64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(be_u32(&b, 0), Some(0x0102_0304));
        assert_eq!(be_u64(&b, 0), Some(0x0102_0304_0506_0708));
    }

    #[test]
    fn out_of_bounds_is_none() {
        let b = [0u8; 4];
        assert_eq!(le_u32(&b, 0), Some(0));
        assert_eq!(le_u32(&b, 1), None);
        assert_eq!(le_u16(&b, 3), None);
        assert_eq!(le_u64(&b, 0), None);
        assert_eq!(be_u32(&b, usize::MAX), None);
        assert_eq!(be_u64(&b, usize::MAX - 2), None);
    }
}
