//! XZ streams whose blocks use LZMA2, optionally after the x86 BCJ filter:
//! what `xz --x86 --lzma2` makes and what compresses x86 Linux kernels
//! (`scripts/xz_wrap.sh`). `lzma_rs::xz_decompress` knows LZMA2 alone, so
//! the container is read here, each block's LZMA2 data goes to
//! `lzma_rs::lzma2_decompress`, and the BCJ filter is undone here.
//!
//! The container (the XZ file format, 1.0.4): a 12-byte stream header, then
//! blocks (a header, LZMA2 data, padding to 4 bytes, a check), then the
//! index, which ends the reading. CRC32 checks are verified; other check
//! types are skipped over (the caller checks the result).

/// The stream header's magic bytes.
pub(super) const MAGIC: &[u8; 6] = b"\xfd7zXZ\0";
/// Filter ids.
const FILTER_X86: u64 = 0x04;
const FILTER_LZMA2: u64 = 0x21;
/// Check type CRC32.
const CHECK_CRC32: u8 = 1;

/// Decompresses the XZ stream at the start of `data` (what follows the
/// stream's index, such as the size a kernel image appends, is ignored).
pub(super) fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let header = data.get(..12).ok_or("truncated XZ stream header")?;
    if &header[..6] != MAGIC {
        return Err("not an XZ stream".into());
    }
    if crc32fast::hash(&header[6..8]).to_le_bytes() != header[8..12] {
        return Err("XZ stream header CRC mismatch".into());
    }
    let check = header[7] & 0x0f;
    let check_size = match check {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    };
    let mut out = Vec::new();
    let mut pos = 12;
    loop {
        let size_byte = *data.get(pos).ok_or("XZ stream ends before its index")?;
        if size_byte == 0 {
            return Ok(out); // the index
        }
        let block_start = pos;
        let header_size = (usize::from(size_byte) + 1) * 4;
        let block = Block::parse(
            data.get(pos..pos + header_size)
                .ok_or("truncated XZ block header")?,
        )?;
        pos += header_size;
        let mut input = data.get(pos..).unwrap_or_default();
        let before = input.len();
        let mut plain = Vec::new();
        lzma_rs::lzma2_decompress(&mut input, &mut plain)
            .map_err(|e| format!("LZMA2 data: {e}"))?;
        let used = before - input.len();
        if block.compressed.is_some_and(|c| c != used as u64)
            || block.uncompressed.is_some_and(|u| u != plain.len() as u64)
        {
            return Err("XZ block sizes do not match its header".into());
        }
        if let Some(start) = block.x86 {
            bcj_x86_decode(&mut plain, start);
        }
        pos += used;
        pos += (4 - (pos - block_start) % 4) % 4;
        let sum = data
            .get(pos..pos + check_size)
            .ok_or("truncated XZ block check")?;
        if check == CHECK_CRC32 && crc32fast::hash(&plain).to_le_bytes() != sum {
            return Err("XZ block CRC32 mismatch".into());
        }
        pos += check_size;
        out.extend_from_slice(&plain);
    }
}

/// What a block header says.
struct Block {
    compressed: Option<u64>,
    uncompressed: Option<u64>,
    /// The x86 BCJ filter's start offset, when the filter is used.
    x86: Option<u32>,
}

impl Block {
    /// Parses a whole block header (its size byte included).
    fn parse(h: &[u8]) -> Result<Block, String> {
        let (body, crc) = h.split_at(h.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("XZ block header CRC mismatch".into());
        }
        let flags = *body.get(1).ok_or("truncated XZ block header")?;
        if flags & 0x3c != 0 {
            return Err("XZ block header with reserved flags".into());
        }
        let mut r = &body[2..];
        let compressed = (flags & 0x40 != 0).then(|| varint(&mut r)).transpose()?;
        let uncompressed = (flags & 0x80 != 0).then(|| varint(&mut r)).transpose()?;
        let mut filters = Vec::new();
        for _ in 0..=(flags & 3) {
            let id = varint(&mut r)?;
            let size = usize::try_from(varint(&mut r)?).map_err(|_| "bad XZ filter")?;
            let props = r.get(..size).ok_or("truncated XZ filter properties")?;
            r = &r[size..];
            filters.push((id, props));
        }
        let x86 = match filters.as_slice() {
            [(FILTER_LZMA2, [_])] => None,
            [(FILTER_X86, start), (FILTER_LZMA2, [_])] => match start {
                [] => Some(0),
                [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
                _ => return Err("bad x86 BCJ filter properties".into()),
            },
            _ => {
                let ids: Vec<u64> = filters.iter().map(|f| f.0).collect();
                return Err(format!("unsupported XZ filter chain {ids:#x?}"));
            }
        };
        Ok(Block {
            compressed,
            uncompressed,
            x86,
        })
    }
}

/// An XZ variable-length integer (7 bits a byte, least significant first).
fn varint(r: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..9 {
        let (&b, rest) = r.split_first().ok_or("truncated XZ integer")?;
        *r = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("XZ integer too long".into())
}

/// Undoes the x86 BCJ filter over a whole block whose first byte is at
/// uncompressed position `start`: the relative targets of `call` (E8) and
/// `jmp` (E9) that the encoder made absolute become relative again. The
/// same algorithm as XZ Embedded's `bcj_x86` (public domain), in one pass.
fn bcj_x86_decode(buf: &mut [u8], start: u32) {
    const ALLOWED: [bool; 8] = [true, true, true, false, true, false, false, false];
    const BIT_NUM: [u32; 8] = [0, 1, 2, 2, 3, 3, 3, 3];
    let msbyte = |b: u8| b == 0x00 || b == 0xff;
    if buf.len() <= 4 {
        return;
    }
    let size = buf.len() - 4;
    let mut prev_pos = usize::MAX;
    let mut prev_mask = 0u32;
    let mut i = 0;
    while i < size {
        if buf[i] & 0xfe != 0xe8 {
            i += 1;
            continue;
        }
        let distance = i.wrapping_sub(prev_pos);
        if distance > 3 {
            prev_mask = 0;
        } else {
            prev_mask = (prev_mask << (distance - 1)) & 7;
            if prev_mask != 0 {
                let b = buf[i + 4 - BIT_NUM[prev_mask as usize] as usize];
                if !ALLOWED[prev_mask as usize] || msbyte(b) {
                    prev_pos = i;
                    prev_mask = (prev_mask << 1) | 1;
                    i += 1;
                    continue;
                }
            }
        }
        prev_pos = i;
        if msbyte(buf[i + 4]) {
            let mut src = u32::from_le_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]);
            let mut dest;
            loop {
                dest = src.wrapping_sub(start.wrapping_add(i as u32).wrapping_add(5));
                if prev_mask == 0 {
                    break;
                }
                let j = BIT_NUM[prev_mask as usize] * 8;
                if !msbyte((dest >> (24 - j)) as u8) {
                    break;
                }
                src = dest ^ ((1u32 << (32 - j)) - 1);
            }
            dest &= 0x01ff_ffff;
            dest |= 0u32.wrapping_sub(dest & 0x0100_0000);
            buf[i + 1..i + 5].copy_from_slice(&dest.to_le_bytes());
            i += 5;
        } else {
            prev_mask = (prev_mask << 1) | 1;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// `xz` (xz-utils) with `args` over `data`.
    fn xz(args: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("xz")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz (xz-utils) is needed for this test");
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// x86 machine code with plenty of calls and jumps: this test binary.
    fn code() -> Vec<u8> {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        exe[..exe.len().min(3 << 20)].to_vec()
    }

    #[test]
    fn decodes_what_xz_makes_with_and_without_the_x86_filter() {
        let data = code();
        for args in [
            &[
                "-c",
                "--format=xz",
                "--check=crc32",
                "--x86",
                "--lzma2=preset=1",
            ][..],
            &["-c", "--format=xz", "--check=crc32", "--lzma2=preset=1"],
            &[
                "-c",
                "--format=xz",
                "--check=crc64",
                "--x86",
                "--lzma2=preset=1",
            ],
            &[
                "-c",
                "--format=xz",
                "--check=sha256",
                "--x86=start=4096",
                "--lzma2=preset=1",
            ],
            &[
                "-c",
                "--format=xz",
                "--check=crc32",
                "--block-size=300000",
                "--x86",
                "--lzma2=preset=1",
            ],
        ] {
            let packed = xz(args, &data);
            let mut with_size = packed.clone();
            with_size.extend_from_slice(&(data.len() as u32).to_le_bytes());
            assert!(decompress(&with_size).unwrap() == data, "{args:?}");
        }
        let empty = xz(&["-c", "--format=xz", "--x86", "--lzma2"], b"");
        assert_eq!(decompress(&empty).unwrap(), b"");
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let data = code();
        let packed = xz(
            &[
                "-c",
                "--format=xz",
                "--check=crc32",
                "--x86",
                "--lzma2=preset=1",
            ],
            &data[..200_000],
        );
        assert!(decompress(&packed[..packed.len() / 2]).is_err());
        assert!(decompress(b"not xz at all").is_err());
        for i in 0..300 {
            let mut bad = packed.clone();
            let at = (i * 7919) % bad.len();
            bad[at] ^= 0x55;
            if let Ok(out) = decompress(&bad) {
                // A flip in the index goes unnoticed; the data is intact.
                assert!(out == data[..200_000], "corrupted output at byte {at}");
            }
        }
        let delta = xz(&["-c", "--format=xz", "--delta", "--lzma2"], b"abc");
        assert!(decompress(&delta).unwrap_err().contains("unsupported"));
    }
}
