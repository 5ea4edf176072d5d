//! On-disk structures of a VMDK sparse extent: the 512-byte sparse extent
//! header (`KDMV`) and the stream markers, encoded explicitly little-endian.
//!
//! Layout of the header (VMware "Virtual Disk Format 5.0", qemu `VMDK4Header`):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `KDMV` |
//! | 4 | 4 | version |
//! | 8 | 4 | flags |
//! | 12 | 8 | capacity (sectors) |
//! | 20 | 8 | grain size (sectors) |
//! | 28 | 8 | descriptor offset (sectors) |
//! | 36 | 8 | descriptor size (sectors) |
//! | 44 | 4 | grain table entries per grain table |
//! | 48 | 8 | redundant grain directory offset (sectors) |
//! | 56 | 8 | grain directory offset (sectors) |
//! | 64 | 8 | overhead: first grain (sectors) |
//! | 72 | 1 | unclean shutdown |
//! | 73 | 4 | new-line detection bytes `\n \r\n` |
//! | 77 | 2 | compression algorithm |

use crate::bytes::{le_u16, le_u32, le_u64};

/// Bytes per sector: every VMDK offset and size counts these.
pub(crate) const SECTOR: u64 = 512;
/// The sparse extent magic, as it appears in the file.
pub(crate) const MAGIC: [u8; 4] = *b"KDMV";
/// The new-line detection bytes (they catch files mangled by text-mode transfers).
pub(crate) const CHECK_BYTES: [u8; 4] = [b'\n', b' ', b'\r', b'\n'];
/// `gdOffset` meaning "the grain directory is described by the footer".
pub(crate) const GD_AT_END: u64 = u64::MAX;

/// Flag: the new-line detection bytes are valid.
pub(crate) const FLAG_NL_DETECT: u32 = 1 << 0;
/// Flag: a redundant grain directory is present.
pub(crate) const FLAG_RGD: u32 = 1 << 1;
/// Flag: grain table entry 1 means "zeroed grain".
pub(crate) const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Flag: grains are compressed.
pub(crate) const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: the extent contains markers (streamOptimized).
pub(crate) const FLAG_MARKERS: u32 = 1 << 17;
/// Every flag b9 understands.
pub(crate) const KNOWN_FLAGS: u32 =
    FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GRAIN | FLAG_COMPRESSED | FLAG_MARKERS;

/// `compressAlgorithm`: none.
pub(crate) const COMPRESSION_NONE: u16 = 0;
/// `compressAlgorithm`: deflate (zlib streams).
pub(crate) const COMPRESSION_DEFLATE: u16 = 1;

/// Marker type: end of stream.
pub(crate) const MARKER_EOS: u32 = 0;
/// Marker type: a grain table follows.
pub(crate) const MARKER_GT: u32 = 1;
/// Marker type: the grain directory follows.
pub(crate) const MARKER_GD: u32 = 2;
/// Marker type: the footer (a copy of the header) follows.
pub(crate) const MARKER_FOOTER: u32 = 3;

/// Bytes before the compressed data of a grain marker: LBA (8) and size (4).
pub(crate) const GRAIN_MARKER_HEADER: usize = 12;

/// The sparse extent header, fields in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SparseHeader {
    /// Format version: 1, 2 (zeroed grains) or 3 (compressed / CBT).
    pub version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Virtual size in sectors.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_size: u64,
    /// Embedded descriptor offset in sectors (0: none).
    pub desc_offset: u64,
    /// Embedded descriptor size in sectors.
    pub desc_size: u64,
    /// Grain table entries per grain table (always 512).
    pub num_gtes_per_gt: u32,
    /// Redundant grain directory offset in sectors.
    pub rgd_offset: u64,
    /// Grain directory offset in sectors, or [`GD_AT_END`].
    pub gd_offset: u64,
    /// First sector after the metadata.
    pub grain_offset: u64,
    /// Set while a writer has the extent open.
    pub unclean_shutdown: u8,
    /// Whether the new-line detection bytes are intact (decode only; encode
    /// always writes them).
    pub check_bytes_ok: bool,
    /// `COMPRESSION_*`.
    pub compress_algorithm: u16,
}

/// Why 512 bytes are not a sparse extent header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than 512 bytes.
    Truncated,
    /// The first four bytes are not `KDMV`.
    BadMagic,
}

impl SparseHeader {
    /// Encodes the header as the first sector of an extent (or its footer).
    pub(crate) fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.desc_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.num_gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.grain_offset.to_le_bytes());
        b[72] = self.unclean_shutdown;
        b[73..77].copy_from_slice(&CHECK_BYTES);
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }

    /// Decodes the byte layout; the values are checked by the reader.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let Some(b) = bytes.get(..512) else {
            return Err(HeaderError::Truncated);
        };
        let mut s = [0u8; 512];
        s.copy_from_slice(b);
        if s[0..4] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        Ok(SparseHeader {
            version: le_u32(&s, 4).unwrap_or(0),
            flags: le_u32(&s, 8).unwrap_or(0),
            capacity: le_u64(&s, 12).unwrap_or(0),
            grain_size: le_u64(&s, 20).unwrap_or(0),
            desc_offset: le_u64(&s, 28).unwrap_or(0),
            desc_size: le_u64(&s, 36).unwrap_or(0),
            num_gtes_per_gt: le_u32(&s, 44).unwrap_or(0),
            rgd_offset: le_u64(&s, 48).unwrap_or(0),
            gd_offset: le_u64(&s, 56).unwrap_or(0),
            grain_offset: le_u64(&s, 64).unwrap_or(0),
            unclean_shutdown: s[72],
            check_bytes_ok: s[73..77] == CHECK_BYTES,
            compress_algorithm: le_u16(&s, 77).unwrap_or(0),
        })
    }
}

/// A metadata marker sector (`val`, size 0, `kind`), as streamOptimized
/// extents have before grain tables, the grain directory and the footer, and
/// as the end-of-stream marker.
pub(crate) fn encode_marker(val: u64, kind: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..8].copy_from_slice(&val.to_le_bytes());
    // b[8..12]: size 0 marks a metadata marker.
    b[12..16].copy_from_slice(&kind.to_le_bytes());
    b
}

/// A decoded marker: `(val, size, type)`; `type` only means something when
/// `size` is 0.
pub(crate) fn decode_marker(b: &[u8; 16]) -> (u64, u32, u32) {
    (
        le_u64(b, 0).unwrap_or(0),
        le_u32(b, 8).unwrap_or(0),
        le_u32(b, 12).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SparseHeader {
        SparseHeader {
            version: 1,
            flags: FLAG_NL_DETECT | FLAG_RGD,
            capacity: 20480,
            grain_size: 128,
            desc_offset: 1,
            desc_size: 20,
            num_gtes_per_gt: 512,
            rgd_offset: 21,
            gd_offset: 26,
            grain_offset: 128,
            unclean_shutdown: 0,
            check_bytes_ok: true,
            compress_algorithm: COMPRESSION_NONE,
        }
    }

    #[test]
    fn header_round_trip() {
        let h = sample();
        let b = h.encode();
        assert_eq!(SparseHeader::decode(&b), Ok(h));
        let mut c = sample();
        c.version = 3;
        c.flags = FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS;
        c.gd_offset = GD_AT_END;
        c.compress_algorithm = COMPRESSION_DEFLATE;
        c.unclean_shutdown = 1;
        assert_eq!(SparseHeader::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn header_matches_qemu_bytes() {
        // The first 80 bytes of `qemu-img convert -O vmdk` of a 10 MiB raw file.
        let qemu: [u8; 80] = [
            0x4b, 0x44, 0x4d, 0x56, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x50,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x0a, 0x20, 0x0d, 0x0a, 0x00, 0x00, 0x00,
        ];
        let b = sample().encode();
        assert_eq!(&b[..80], &qemu[..]);
        assert!(b[80..].iter().all(|&x| x == 0));
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            SparseHeader::decode(&[0u8; 100]),
            Err(HeaderError::Truncated)
        );
        let mut b = sample().encode();
        b[0] = b'X';
        assert_eq!(SparseHeader::decode(&b), Err(HeaderError::BadMagic));
        let mut b = sample().encode();
        b[74] = b'x';
        assert!(!SparseHeader::decode(&b)
            .map(|h| h.check_bytes_ok)
            .unwrap_or(true));
    }

    #[test]
    fn marker_round_trip() {
        let m = encode_marker(4, MARKER_GT);
        let mut h = [0u8; 16];
        h.copy_from_slice(&m[..16]);
        assert_eq!(decode_marker(&h), (4, 0, MARKER_GT));
        assert!(m[16..].iter().all(|&x| x == 0));
    }
}
