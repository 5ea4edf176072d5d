//! The qcow2 header and L1 table, read and checked by b9 before imago sees a
//! file (images are hostile input).
//!
//! imago 0.2.6 trusts most header fields: a header announcing a 21 TB disk
//! over a tiny L1 table made listing the data extents walk the whole disk in
//! 32 KiB steps, for minutes. Every field that sizes work or memory is bounded
//! here, to QEMU's limits (`block/qcow2.c`: L1 table <= 32 MiB, refcount
//! table <= 8 MiB, <= 65536 snapshots, backing file name <= 1023 bytes).
//!
//! The virtual size needs no limit of its own: the L1 table must cover it and
//! lie inside the file, so there is at most one L1 entry per 8 bytes of file
//! (and at most 2^61 bytes of disk). The L1 table is checked too: each L2
//! table it names starts inside the file and is named once (QEMU never shares
//! an L2 table between two active L1 entries). So walking the whole cluster
//! map costs at most one step per L1 entry plus one per L2 entry, both
//! bounded by the file's length, whatever the header claims.

use std::fs::File;
use std::path::Path;

use crate::bytes::{be_u32, be_u64};
use crate::disk::error::DiskError;
use crate::disk::raw::read_file_at;

/// The first four bytes of every qcow2 image.
pub const MAGIC: &[u8; 4] = b"QFI\xfb";

/// Bytes read from the front of the file: the version 3 header up to and
/// including `compression_type`, padded to 8.
const FIELDS_LEN: usize = 112;
/// The length of a version 2 header.
const V2_HEADER_LEN: u64 = 72;
/// The shortest version 3 header.
const V3_HEADER_LEN: u64 = 104;
/// Smallest cluster: 512 bytes.
const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster: 2 MiB (QEMU's limit, imago's too).
const MAX_CLUSTER_BITS: u32 = 21;
/// QEMU's `QCOW_MAX_L1_SIZE`: 32 MiB of L1 table, 4 Mi entries.
const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU's `QCOW_MAX_REFTABLE_SIZE`: 8 MiB of refcount table.
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Refcounts are at most 2^6 = 64 bits wide.
const MAX_REFCOUNT_ORDER: u32 = 6;
/// The longest backing file name the spec allows.
const MAX_BACKING_NAME: u32 = 1023;
/// QEMU's `QCOW_MAX_SNAPSHOTS`.
const MAX_SNAPSHOTS: u32 = 65536;
/// The fixed part of a snapshot table entry (QEMU's `QCowSnapshotHeader`).
const SNAPSHOT_ENTRY_LEN: u64 = 40;
/// The bits of an L1 entry holding its L2 table's offset.
const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Incompatible feature bits the spec defines, by bit number: the name and
/// how to get an image b9 reads. Only the external data file (bit 2) is read
/// by imago.
const INCOMPATIBLE_FEATURES: [(&str, &str); 5] = [
    ("dirty", "`qemu-img check -r all` repairs it"),
    ("corrupt", "`qemu-img check -r all` repairs it"),
    ("external data file", ""),
    (
        "compression type",
        "`qemu-img convert -O qcow2` rewrites it with zlib",
    ),
    (
        "extended L2 entries",
        "`qemu-img convert -O qcow2` rewrites it without",
    ),
];
/// The incompatible feature bit imago supports: an external data file.
const EXTERNAL_DATA_FILE: u32 = 2;

/// The qcow2 header fields b9 checks (version 2 images get the version 3
/// defaults for the fields they lack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Where the backing file name is, 0 for none.
    pub backing_file_offset: u64,
    /// The length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The virtual size in bytes.
    pub size: u64,
    /// 0 (none), 1 (AES), 2 (LUKS).
    pub crypt_method: u32,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// Where the active L1 table is.
    pub l1_table_offset: u64,
    /// Where the refcount table is.
    pub refcount_table_offset: u64,
    /// The refcount table's length in clusters.
    pub refcount_table_clusters: u32,
    /// Entries in the snapshot table.
    pub nb_snapshots: u32,
    /// Where the snapshot table is.
    pub snapshots_offset: u64,
    /// Features a reader must understand to read the image.
    pub incompatible_features: u64,
    /// log2 of the refcount width in bits.
    pub refcount_order: u32,
    /// The header's length in bytes (extensions follow it).
    pub header_length: u32,
    /// 0 (zlib) or 1 (zstd), for compressed clusters.
    pub compression_type: u8,
}

/// What is wrong with a header: the field at fault and the problem, and
/// whether the image is invalid or only uses something b9 cannot read.
#[derive(Debug)]
struct Fault {
    /// The field, named as in the qcow2 spec.
    field: &'static str,
    /// What is wrong with it.
    problem: String,
    /// Valid, but not readable by b9.
    unsupported: bool,
}

/// An invalid value in `field`.
fn invalid(field: &'static str, problem: String) -> Fault {
    Fault {
        field,
        problem,
        unsupported: false,
    }
}

/// A valid value in `field` that b9 cannot read.
fn unsupported(field: &'static str, problem: String) -> Fault {
    Fault {
        field,
        problem,
        unsupported: true,
    }
}

impl Fault {
    /// The error for the image at `path`.
    fn at(self, path: &Path) -> DiskError {
        if self.unsupported {
            DiskError::Unsupported {
                path: path.to_path_buf(),
                format: "qcow2",
                what: format!("{}: {}", self.field, self.problem),
            }
        } else {
            DiskError::Corrupt {
                path: path.to_path_buf(),
                format: "qcow2",
                field: self.field.to_string(),
                problem: self.problem,
            }
        }
    }
}

/// Reads and checks the header of the image at `path`, then its L1 table:
/// what must hold before imago opens the file.
pub(crate) fn check(path: &Path) -> Result<Header, DiskError> {
    let (file, len) = open(path)?;
    let header = read_checked(&file, path, len)?;
    check_l1_table(&file, path, &header, len)?;
    Ok(header)
}

/// Reads and checks the header of the image at `path` (not its L1 table).
pub(crate) fn read(path: &Path) -> Result<Header, DiskError> {
    let (file, len) = open(path)?;
    read_checked(&file, path, len)
}

/// Opens the file (a regular file only) and finds its length.
fn open(path: &Path) -> Result<(File, u64), DiskError> {
    let file = crate::disk::gate::open_regular(path)?;
    let len = file
        .metadata()
        .map_err(|source| DiskError::Io {
            op: "cannot read",
            path: path.to_path_buf(),
            source,
        })?
        .len();
    Ok((file, len))
}

/// Reads the header fields and checks them against the file length.
fn read_checked(file: &File, path: &Path, len: u64) -> Result<Header, DiskError> {
    let mut bytes = [0u8; FIELDS_LEN];
    read_file_at(file, path, &mut bytes, 0)?;
    if &bytes[..4] != MAGIC {
        return Err(invalid("magic", "not a qcow2 image".into()).at(path));
    }
    let header = parse(&bytes);
    validate(&header, len).map_err(|f| f.at(path))?;
    Ok(header)
}

/// The fields at their offsets in the spec; a version 2 header has the
/// version 3 fields' defaults.
fn parse(b: &[u8; FIELDS_LEN]) -> Header {
    let version = be_u32(b, 4).unwrap_or(0);
    let v3 = version == 3;
    let header_length = if v3 {
        be_u32(b, 100).unwrap_or(0)
    } else {
        V2_HEADER_LEN as u32
    };
    Header {
        version,
        backing_file_offset: be_u64(b, 8).unwrap_or(0),
        backing_file_size: be_u32(b, 16).unwrap_or(0),
        cluster_bits: be_u32(b, 20).unwrap_or(0),
        size: be_u64(b, 24).unwrap_or(0),
        crypt_method: be_u32(b, 32).unwrap_or(0),
        l1_size: be_u32(b, 36).unwrap_or(0),
        l1_table_offset: be_u64(b, 40).unwrap_or(0),
        refcount_table_offset: be_u64(b, 48).unwrap_or(0),
        refcount_table_clusters: be_u32(b, 56).unwrap_or(0),
        nb_snapshots: be_u32(b, 60).unwrap_or(0),
        snapshots_offset: be_u64(b, 64).unwrap_or(0),
        incompatible_features: if v3 { be_u64(b, 72).unwrap_or(0) } else { 0 },
        refcount_order: if v3 { be_u32(b, 96).unwrap_or(0) } else { 4 },
        header_length,
        compression_type: if u64::from(header_length) > V3_HEADER_LEN {
            b[104]
        } else {
            0
        },
    }
}

/// Every header check, in the order the fields matter: the ones that give
/// the others their meaning first.
fn validate(h: &Header, file_len: u64) -> Result<(), Fault> {
    check_version(h)?;
    check_cluster_bits(h)?;
    check_header_length(h, file_len)?;
    check_features(h)?;
    check_compression_type(h)?;
    check_crypt_method(h)?;
    check_refcount_order(h)?;
    check_size(h)?;
    check_l1_size(h)?;
    check_l1_table_offset(h, file_len)?;
    check_refcount_table(h, file_len)?;
    check_backing_file(h, file_len)?;
    check_snapshots(h, file_len)
}

/// The cluster size in bytes (valid once `cluster_bits` is checked).
fn cluster_size(h: &Header) -> u64 {
    1 << h.cluster_bits
}

/// Guest bytes one L1 entry maps: a cluster of 8-byte L2 entries, each
/// mapping a cluster.
fn l1_entry_span(h: &Header) -> u64 {
    1 << (2 * h.cluster_bits - 3)
}

/// `offset + len`, or the fault of a table that runs past 2^64.
fn table_end(field: &'static str, offset: u64, len: u64) -> Result<u64, Fault> {
    offset
        .checked_add(len)
        .ok_or_else(|| invalid(field, format!("{offset} + {len} bytes overflows")))
}

/// `offset` is a multiple of the cluster size.
fn check_aligned(h: &Header, field: &'static str, offset: u64) -> Result<(), Fault> {
    if !offset.is_multiple_of(cluster_size(h)) {
        return Err(invalid(
            field,
            format!(
                "{offset} is not a multiple of the cluster size {}",
                cluster_size(h)
            ),
        ));
    }
    Ok(())
}

/// `end` is within the file.
fn check_in_file(field: &'static str, what: &str, end: u64, file_len: u64) -> Result<(), Fault> {
    if end > file_len {
        return Err(invalid(
            field,
            format!("{what} ends at byte {end}, past the end of the file ({file_len} bytes)"),
        ));
    }
    Ok(())
}

/// Version 2 or 3.
fn check_version(h: &Header) -> Result<(), Fault> {
    match h.version {
        2 | 3 => Ok(()),
        v => Err(invalid("version", format!("{v} (expected 2 or 3)"))),
    }
}

/// Clusters of 512 bytes to 2 MiB.
fn check_cluster_bits(h: &Header) -> Result<(), Fault> {
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&h.cluster_bits) {
        return Err(invalid(
            "cluster_bits",
            format!(
                "{} is outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS} (512 bytes to 2 MiB)",
                h.cluster_bits
            ),
        ));
    }
    Ok(())
}

/// A version 3 header is at least 104 bytes, a multiple of 8, inside the
/// first cluster; any header is inside the file.
fn check_header_length(h: &Header, file_len: u64) -> Result<(), Fault> {
    let len = u64::from(h.header_length);
    let problem = if h.version == 3 && len < V3_HEADER_LEN {
        format!("{len} is less than {V3_HEADER_LEN}")
    } else if !len.is_multiple_of(8) {
        format!("{len} is not a multiple of 8")
    } else if len > cluster_size(h) {
        format!("{len} is more than the cluster size {}", cluster_size(h))
    } else if len > file_len {
        format!("{len} is more than the file's length ({file_len} bytes)")
    } else {
        return Ok(());
    };
    Err(invalid("header_length", problem))
}

/// No incompatible feature other than an external data file.
fn check_features(h: &Header) -> Result<(), Fault> {
    let bits = h.incompatible_features & !(1 << EXTERNAL_DATA_FILE);
    if bits == 0 {
        return Ok(());
    }
    let bit = bits.trailing_zeros();
    Err(match INCOMPATIBLE_FEATURES.get(bit as usize) {
        Some((name, hint)) => unsupported(
            "incompatible_features",
            format!("bit {bit} ({name}) is set; {hint}"),
        ),
        None => invalid(
            "incompatible_features",
            format!("bit {bit} is not defined by the qcow2 spec"),
        ),
    })
}

/// Compressed clusters use zlib (zstd needs its feature bit, refused above).
fn check_compression_type(h: &Header) -> Result<(), Fault> {
    match h.compression_type {
        0 => Ok(()),
        t => Err(invalid(
            "compression_type",
            format!("{t} without the compression type feature bit"),
        )),
    }
}

/// No encryption: b9 has no keys (imago would read ciphertext as data).
fn check_crypt_method(h: &Header) -> Result<(), Fault> {
    match h.crypt_method {
        0 => Ok(()),
        1 | 2 => Err(unsupported(
            "crypt_method",
            format!("{} (encrypted images cannot be read)", h.crypt_method),
        )),
        m => Err(invalid("crypt_method", format!("{m} (expected 0, 1 or 2)"))),
    }
}

/// Refcounts of 1 to 64 bits.
fn check_refcount_order(h: &Header) -> Result<(), Fault> {
    if h.refcount_order > MAX_REFCOUNT_ORDER {
        return Err(invalid(
            "refcount_order",
            format!(
                "{} is more than {MAX_REFCOUNT_ORDER} (64-bit refcounts)",
                h.refcount_order
            ),
        ));
    }
    Ok(())
}

/// L1 entries the virtual size needs.
fn l1_entries_needed(h: &Header) -> u64 {
    h.size.div_ceil(l1_entry_span(h))
}

/// The virtual size fits an L1 table of QEMU's largest size.
fn check_size(h: &Header) -> Result<(), Fault> {
    let needed = l1_entries_needed(h);
    if needed > MAX_L1_BYTES / 8 {
        return Err(invalid(
            "size",
            format!(
                "{} bytes need {needed} L1 entries with {}-byte clusters, more than the limit of {} (a 32 MiB L1 table)",
                h.size,
                cluster_size(h),
                MAX_L1_BYTES / 8
            ),
        ));
    }
    Ok(())
}

/// The L1 table maps the whole virtual size and is at most 32 MiB.
fn check_l1_size(h: &Header) -> Result<(), Fault> {
    let l1 = u64::from(h.l1_size);
    if l1 > MAX_L1_BYTES / 8 {
        return Err(invalid(
            "l1_size",
            format!(
                "{l1} exceeds the limit of {} entries (a 32 MiB L1 table)",
                MAX_L1_BYTES / 8
            ),
        ));
    }
    let needed = l1_entries_needed(h);
    if l1 < needed {
        return Err(invalid(
            "l1_size",
            format!(
                "{l1} entries cannot map the virtual size of {} bytes (needs {needed})",
                h.size
            ),
        ));
    }
    Ok(())
}

/// The L1 table is cluster-aligned and inside the file.
fn check_l1_table_offset(h: &Header, file_len: u64) -> Result<(), Fault> {
    const FIELD: &str = "l1_table_offset";
    check_aligned(h, FIELD, h.l1_table_offset)?;
    if h.l1_size == 0 {
        return Ok(());
    }
    let end = table_end(FIELD, h.l1_table_offset, u64::from(h.l1_size) * 8)?;
    check_in_file(FIELD, "the L1 table", end, file_len)
}

/// The refcount table is cluster-aligned, starts inside the file, and has
/// 1 cluster to 8 MiB (imago loads it whole to write).
fn check_refcount_table(h: &Header, file_len: u64) -> Result<(), Fault> {
    check_aligned(h, "refcount_table_offset", h.refcount_table_offset)?;
    let clusters = u64::from(h.refcount_table_clusters);
    let max = MAX_REFTABLE_BYTES / cluster_size(h);
    if clusters == 0 || clusters > max {
        return Err(invalid(
            "refcount_table_clusters",
            format!("{clusters} is outside 1..={max} (up to an 8 MiB refcount table)"),
        ));
    }
    if h.refcount_table_offset >= file_len {
        return Err(invalid(
            "refcount_table_offset",
            format!(
                "{} is past the end of the file ({file_len} bytes)",
                h.refcount_table_offset
            ),
        ));
    }
    Ok(())
}

/// The backing file name is at most 1023 bytes, inside the first cluster
/// and inside the file.
fn check_backing_file(h: &Header, file_len: u64) -> Result<(), Fault> {
    if h.backing_file_offset == 0 {
        return Ok(());
    }
    if h.backing_file_size > MAX_BACKING_NAME {
        return Err(invalid(
            "backing_file_size",
            format!(
                "{} is more than {MAX_BACKING_NAME} bytes",
                h.backing_file_size
            ),
        ));
    }
    const FIELD: &str = "backing_file_offset";
    let end = table_end(FIELD, h.backing_file_offset, u64::from(h.backing_file_size))?;
    if end > cluster_size(h) {
        return Err(invalid(
            FIELD,
            format!(
                "the backing file name ends at byte {end}, past the first cluster ({} bytes)",
                cluster_size(h)
            ),
        ));
    }
    check_in_file(FIELD, "the backing file name", end, file_len)
}

/// At most 65536 snapshots, in a cluster-aligned table inside the file.
fn check_snapshots(h: &Header, file_len: u64) -> Result<(), Fault> {
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(invalid(
            "nb_snapshots",
            format!("{} is more than {MAX_SNAPSHOTS}", h.nb_snapshots),
        ));
    }
    if h.nb_snapshots == 0 {
        return Ok(());
    }
    const FIELD: &str = "snapshots_offset";
    check_aligned(h, FIELD, h.snapshots_offset)?;
    let len = u64::from(h.nb_snapshots) * SNAPSHOT_ENTRY_LEN;
    let end = table_end(FIELD, h.snapshots_offset, len)?;
    check_in_file(FIELD, "the snapshot table", end, file_len)
}

/// Reads the L1 table and checks its entries.
fn check_l1_table(file: &File, path: &Path, h: &Header, file_len: u64) -> Result<(), DiskError> {
    // Bounded: the header check put the table (<= 32 MiB) inside the file.
    let mut table = vec![0u8; h.l1_size as usize * 8];
    read_file_at(file, path, &mut table, h.l1_table_offset)?;
    check_l1_entries(h, &table, file_len).map_err(|f| f.at(path))
}

/// Each L2 table the L1 table names is cluster-aligned, starts inside the
/// file, and is named by one entry only.
fn check_l1_entries(h: &Header, table: &[u8], file_len: u64) -> Result<(), Fault> {
    let mut offsets = Vec::new();
    for (index, entry) in table.chunks_exact(8).enumerate() {
        let offset = be_u64(entry, 0).unwrap_or(0) & L1_OFFSET_MASK;
        if offset != 0 {
            check_l2_offset(h, index, offset, file_len)?;
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    match offsets.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(invalid(
            "l1_table",
            format!(
                "two entries name the L2 table at offset {} (each L2 table belongs to one entry)",
                w[0]
            ),
        )),
        None => Ok(()),
    }
}

/// One L1 entry's L2 table offset is cluster-aligned and inside the file.
fn check_l2_offset(h: &Header, index: usize, offset: u64, file_len: u64) -> Result<(), Fault> {
    let problem = if !offset.is_multiple_of(cluster_size(h)) {
        format!("is not a multiple of the cluster size {}", cluster_size(h))
    } else if offset >= file_len {
        format!("is past the end of the file ({file_len} bytes)")
    } else {
        return Ok(());
    };
    Err(invalid(
        "l1_table",
        format!("entry {index}: the L2 table offset {offset} {problem}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid 64 KiB image with 512-byte clusters, "hello" at guest offset
    /// 0: header, refcount table, refcount block, L1 table (2 entries), one
    /// L2 table, one data cluster.
    fn image() -> Vec<u8> {
        let mut b = vec![0u8; 6 * 512];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, MAGIC);
        put(4, &3u32.to_be_bytes());
        put(20, &9u32.to_be_bytes());
        put(24, &65536u64.to_be_bytes());
        put(36, &2u32.to_be_bytes());
        put(40, &1536u64.to_be_bytes());
        put(48, &512u64.to_be_bytes());
        put(56, &1u32.to_be_bytes());
        put(96, &4u32.to_be_bytes());
        put(100, &104u32.to_be_bytes());
        put(512, &1024u64.to_be_bytes());
        for cluster in 0..6 {
            put(1024 + 2 * cluster, &1u16.to_be_bytes());
        }
        let copied = 1u64 << 63;
        put(1536, &(2048 | copied).to_be_bytes());
        put(2048, &(2560 | copied).to_be_bytes());
        put(2560, b"hello");
        b
    }

    /// Writes `bytes` as `x.qcow2` in a new temporary directory.
    fn write(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.qcow2");
        std::fs::write(&p, bytes).unwrap();
        (d, p)
    }

    /// The field `check` names for the image changed by `edit`.
    fn rejected(edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = image();
        edit(&mut b);
        let (_d, p) = write(&b);
        let e = check(&p).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("x.qcow2"), "{text}");
        match e {
            DiskError::Corrupt { field, .. } => field,
            DiskError::Unsupported { what, .. } => format!("unsupported {what}"),
            e => panic!("unexpected {e}"),
        }
    }

    fn set32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn set64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    #[test]
    fn valid_image_passes_and_reads_through_imago() {
        let (_d, p) = write(&image());
        let h = check(&p).unwrap();
        assert_eq!((h.version, h.cluster_bits, h.size), (3, 9, 65536));
        let r = crate::disk::qcow2::Qcow2Image::open(&p, false).unwrap();
        let mut buf = [0u8; 6];
        crate::disk::capability::ImageReader::read_at(&r, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello\0");
    }

    #[test]
    fn version_2_header_passes() {
        let mut b = image();
        set32(&mut b, 4, 2);
        b[72..104].fill(0);
        let (_d, p) = write(&b);
        assert_eq!(check(&p).unwrap().header_length, 72);
    }

    #[test]
    fn magic_version_and_cluster_bits() {
        assert_eq!(rejected(|b| b[0] = 0), "magic");
        assert_eq!(rejected(|b| set32(b, 4, 4)), "version");
        assert_eq!(rejected(|b| set32(b, 20, 8)), "cluster_bits");
        assert_eq!(rejected(|b| set32(b, 20, 22)), "cluster_bits");
    }

    #[test]
    fn header_length() {
        assert_eq!(rejected(|b| set32(b, 100, 100)), "header_length");
        assert_eq!(rejected(|b| set32(b, 100, 108)), "header_length");
        assert_eq!(rejected(|b| set32(b, 100, 1024)), "header_length");
        assert_eq!(rejected(|b| b.truncate(60)), "header_length");
    }

    #[test]
    fn features_compression_crypt_refcount_order() {
        let f = rejected(|b| set64(b, 72, 1));
        assert!(
            f.starts_with("unsupported incompatible_features: bit 0 (dirty"),
            "{f}"
        );
        assert_eq!(rejected(|b| set64(b, 72, 1 << 40)), "incompatible_features");
        let zstd = |b: &mut Vec<u8>| {
            set32(b, 100, 112);
            b[104] = 1;
        };
        assert_eq!(rejected(zstd), "compression_type");
        let f = rejected(|b| set32(b, 32, 2));
        assert!(f.starts_with("unsupported crypt_method"), "{f}");
        assert_eq!(rejected(|b| set32(b, 32, 7)), "crypt_method");
        assert_eq!(rejected(|b| set32(b, 96, 7)), "refcount_order");
    }

    #[test]
    fn size_and_l1_size() {
        // 21 TB over 512-byte clusters: the case the fuzzer found spinning.
        assert_eq!(rejected(|b| set64(b, 24, 21_000_000_000_000)), "size");
        assert_eq!(rejected(|b| set32(b, 36, u32::MAX)), "l1_size");
        assert_eq!(rejected(|b| set32(b, 36, 1)), "l1_size");
        assert_eq!(rejected(|b| set32(b, 36, 0)), "l1_size");
    }

    #[test]
    fn l1_table_offset() {
        assert_eq!(rejected(|b| set64(b, 40, 1537)), "l1_table_offset");
        assert_eq!(rejected(|b| set64(b, 40, 1 << 40)), "l1_table_offset");
        assert_eq!(rejected(|b| set64(b, 40, u64::MAX << 9)), "l1_table_offset");
        // The table's last entry past the end of the file.
        assert_eq!(rejected(|b| set64(b, 40, 3072)), "l1_table_offset");
    }

    #[test]
    fn refcount_table() {
        assert_eq!(rejected(|b| set64(b, 48, 513)), "refcount_table_offset");
        assert_eq!(rejected(|b| set64(b, 48, 1 << 20)), "refcount_table_offset");
        assert_eq!(rejected(|b| set32(b, 56, 0)), "refcount_table_clusters");
        assert_eq!(
            rejected(|b| set32(b, 56, u32::MAX)),
            "refcount_table_clusters"
        );
        // 8 MiB of 512-byte clusters is the most.
        assert_eq!(rejected(|b| set32(b, 56, 16385)), "refcount_table_clusters");
    }

    #[test]
    fn backing_file() {
        let name = |offset: u64, len: u32| {
            move |b: &mut Vec<u8>| {
                set64(b, 8, offset);
                set32(b, 16, len);
            }
        };
        assert_eq!(rejected(name(200, 1024)), "backing_file_size");
        assert_eq!(rejected(name(480, 40)), "backing_file_offset");
        assert_eq!(rejected(name(u64::MAX - 3, 8)), "backing_file_offset");
    }

    #[test]
    fn snapshots() {
        assert_eq!(rejected(|b| set32(b, 60, 65537)), "nb_snapshots");
        let table = |offset: u64| {
            move |b: &mut Vec<u8>| {
                set32(b, 60, 2);
                set64(b, 64, offset);
            }
        };
        assert_eq!(rejected(table(100)), "snapshots_offset");
        assert_eq!(rejected(table(3072)), "snapshots_offset");
        assert_eq!(rejected(table(u64::MAX << 9)), "snapshots_offset");
    }

    #[test]
    fn l1_entries() {
        assert_eq!(rejected(|b| set64(b, 1536, 1 << 30)), "l1_table");
        // Two entries naming one L2 table.
        assert_eq!(rejected(|b| set64(b, 1544, 2048)), "l1_table");
    }

    #[test]
    fn unaligned_l2_table() {
        // With 512-byte clusters every offset in an L1 entry is aligned.
        let b = image();
        let mut fields = [0u8; FIELDS_LEN];
        fields.copy_from_slice(&b[..FIELDS_LEN]);
        let h = Header {
            cluster_bits: 16,
            ..parse(&fields)
        };
        let f = check_l1_entries(&h, &(1u64 << 15).to_be_bytes(), 1 << 20).unwrap_err();
        assert_eq!(f.field, "l1_table");
        assert!(f.problem.contains("not a multiple"), "{}", f.problem);
    }

    #[test]
    fn only_regular_files() {
        let e = check(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
