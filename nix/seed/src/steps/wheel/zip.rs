//! A small ZIP reader, just enough for wheels.
//!
//! Hand-written rather than the `zip` crate because that crate would add
//! about twenty crates to the seed's lean, audited dependency graph, and a
//! wheel needs very little of the format: wheels use only stored and
//! deflate entries, and RECORD's sha256 checks every file anyway, so this
//! reader only has to be strict, not clever.
//!
//! Strict means that anything a wheel has no business containing is an
//! error rather than something to work around: ZIP64, encryption,
//! compression methods other than stored (0) and deflate (8), multi-disk
//! archives, truncated or overlapping entries, duplicate names, names that
//! could land outside the target directory (absolute, `..`, backslashes,
//! NUL, newlines, empty components), symlinks and other special files.
//! The central directory is authoritative; each local header must agree
//! with it (name, method, and sizes and CRC when they are not deferred to
//! a data descriptor), so that no two ZIP readers could see different
//! contents in the same archive.

use flate2::read::DeflateDecoder;
use flate2::Crc;
use std::collections::BTreeSet;
use std::io::Read;

/// Upper bound on the sum of all entries' uncompressed sizes: far more
/// than any wheel needs, small enough that a hostile archive cannot make
/// the sandbox step exhaust memory.
pub const MAX_TOTAL_UNCOMPRESSED: u64 = 4 << 30;

/// Deflate cannot expand data by more than about 1032:1, so no honest
/// entry declares more than this many times its compressed size. Used
/// only to bound pre-allocation; the actual size is checked after
/// decompression.
const MAX_DEFLATE_RATIO: u64 = 1032;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const CDH_SIG: u32 = 0x0201_4b50;
const CDH_LEN: usize = 46;
const LFH_SIG: u32 = 0x0403_4b50;
const LFH_LEN: usize = 30;
/// Extra field id of the ZIP64 extended information.
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// "Version made by" host system for Unix: only then do the high 16 bits
/// of the external attributes hold a unix mode.
const HOST_UNIX: u8 = 3;

const FLAG_ENCRYPTED: u16 = 1 << 0;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// What is wrong with the archive; the wheel's file name is added by the
/// caller. Messages name the member (as `{:?}`) where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("no ZIP end of central directory record (not a zip archive, or truncated)")]
    NoEndRecord,
    #[error("ZIP64 archives are not supported")]
    Zip64,
    #[error("multi-disk (split) archives are not supported")]
    MultiDisk,
    #[error("central directory: {0}")]
    CentralDirectory(&'static str),
    #[error("member {member:?}: ZIP64 entries are not supported")]
    Zip64Entry { member: String },
    #[error("member {member:?} is encrypted")]
    Encrypted { member: String },
    #[error(
        "member {member:?}: compression method {method} is not supported (only stored and deflate)"
    )]
    Method { member: String, method: u16 },
    #[error("member {member:?}: unacceptable name: {why}")]
    BadName { member: String, why: &'static str },
    #[error("member {member:?} appears more than once")]
    Duplicate { member: String },
    #[error("member {member:?} is a symlink, which a wheel may not contain")]
    Symlink { member: String },
    #[error(
        "member {member:?} is a special file (unix mode {mode:o}), which a wheel may not contain"
    )]
    Special { member: String, mode: u32 },
    #[error("member {member:?}: local header: {why}")]
    LocalHeader { member: String, why: &'static str },
    #[error("member {member:?}: data is truncated or lies outside the archive's entry area")]
    Truncated { member: String },
    #[error("member {member:?} overlaps member {other:?}")]
    Overlap { member: String, other: String },
    #[error("member {member:?}: stored entry has compressed size {compressed} but uncompressed size {uncompressed}")]
    StoredSize {
        member: String,
        compressed: u64,
        uncompressed: u64,
    },
    #[error("member {member:?}: corrupt deflate data: {why}")]
    Corrupt { member: String, why: String },
    #[error(
        "member {member:?}: uncompressed size is {actual}, the central directory says {declared}"
    )]
    Size {
        member: String,
        declared: u64,
        actual: u64,
    },
    #[error(
        "member {member:?}: CRC-32 is {actual:08x}, the central directory says {declared:08x}"
    )]
    Crc {
        member: String,
        declared: u32,
        actual: u32,
    },
    #[error("the archive declares more than {limit} bytes of uncompressed data in total")]
    TooLarge { limit: u64 },
}

/// A regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The member name, validated (relative, `/`-separated, no `.`, `..`
    /// or empty components).
    pub name: String,
    pub data: Vec<u8>,
    /// Whether the entry carries a unix mode (host Unix) with any execute
    /// bit set.
    pub executable: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `bytes[at..at + len]`, or `None` when that is out of bounds (with
/// overflow-safe arithmetic: offsets come from the archive).
fn slice(bytes: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    let len = usize::try_from(len).ok()?;
    let end = start.checked_add(len)?;
    bytes.get(start..end)
}

/// Finds the end of central directory record: searching backwards over at
/// most the largest possible comment, taking the last signature whose
/// comment length reaches exactly the end of the archive.
fn find_eocd(bytes: &[u8]) -> Result<usize, ZipError> {
    if bytes.len() < EOCD_LEN {
        return Err(ZipError::NoEndRecord);
    }
    let last = bytes.len() - EOCD_LEN;
    let first = last.saturating_sub(u16::MAX as usize);
    (first..=last)
        .rev()
        .find(|&at| {
            u32_at(bytes, at) == EOCD_SIG
                && at + EOCD_LEN + u16_at(bytes, at + 20) as usize == bytes.len()
        })
        .ok_or(ZipError::NoEndRecord)
}

/// Whether an extra field block holds a ZIP64 record.
fn has_zip64_extra(mut extra: &[u8]) -> bool {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let len = u16_at(extra, 2) as usize;
        if id == ZIP64_EXTRA_ID {
            return true;
        }
        extra = extra.get(4 + len..).unwrap_or(&[]);
    }
    false
}

/// Validates a member name (with a trailing `/` already removed for
/// directories).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.starts_with('/') {
        return Err("absolute name");
    }
    if name.contains('\\') {
        return Err("backslash in name");
    }
    if name.contains('\0') {
        return Err("NUL in name");
    }
    if name.contains(['\n', '\r']) {
        return Err("line break in name");
    }
    for c in name.split('/') {
        match c {
            ".." => return Err("`..` component"),
            "." => return Err("`.` component"),
            "" => return Err("empty component"),
            _ => {}
        }
    }
    Ok(())
}

/// One central directory entry, as far as this reader uses it.
struct CdEntry {
    name: String,
    raw_name_len: usize,
    is_dir: bool,
    method: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
    executable: bool,
}

fn read_central_directory(bytes: &[u8], eocd: usize) -> Result<(Vec<CdEntry>, u64), ZipError> {
    let disk = u16_at(bytes, eocd + 4);
    let cd_disk = u16_at(bytes, eocd + 6);
    let entries_here = u16_at(bytes, eocd + 8);
    let entries_total = u16_at(bytes, eocd + 10);
    let cd_size = u32_at(bytes, eocd + 12);
    let cd_offset = u32_at(bytes, eocd + 16);
    if (eocd >= ZIP64_LOCATOR_LEN && u32_at(bytes, eocd - ZIP64_LOCATOR_LEN) == ZIP64_LOCATOR_SIG)
        || entries_total == u16::MAX
        || cd_size == u32::MAX
        || cd_offset == u32::MAX
    {
        return Err(ZipError::Zip64);
    }
    if disk != 0 || cd_disk != 0 || entries_here != entries_total {
        return Err(ZipError::MultiDisk);
    }
    let cd_offset = u64::from(cd_offset);
    let cd_end = cd_offset + u64::from(cd_size);
    if cd_end > eocd as u64 {
        return Err(ZipError::CentralDirectory(
            "extends past the end of central directory record",
        ));
    }
    let cd = slice(bytes, cd_offset, u64::from(cd_size))
        .ok_or(ZipError::CentralDirectory("out of bounds"))?;
    let mut out = Vec::with_capacity(entries_total as usize);
    let mut at = 0usize;
    for _ in 0..entries_total {
        let fixed = cd
            .get(at..at + CDH_LEN)
            .ok_or(ZipError::CentralDirectory("truncated entry"))?;
        if u32_at(fixed, 0) != CDH_SIG {
            return Err(ZipError::CentralDirectory("bad entry signature"));
        }
        let made_by_host = (u16_at(fixed, 4) >> 8) as u8;
        let flags = u16_at(fixed, 8);
        let method = u16_at(fixed, 10);
        let crc = u32_at(fixed, 16);
        let compressed = u32_at(fixed, 20);
        let uncompressed = u32_at(fixed, 24);
        let name_len = u16_at(fixed, 28) as usize;
        let extra_len = u16_at(fixed, 30) as usize;
        let comment_len = u16_at(fixed, 32) as usize;
        let start_disk = u16_at(fixed, 34);
        let external = u32_at(fixed, 38);
        let local_offset = u32_at(fixed, 42);
        let var = cd
            .get(at + CDH_LEN..at + CDH_LEN + name_len + extra_len + comment_len)
            .ok_or(ZipError::CentralDirectory("truncated entry"))?;
        at += CDH_LEN + name_len + extra_len + comment_len;
        let raw_name = &var[..name_len];
        let extra = &var[name_len..name_len + extra_len];

        let lossy = String::from_utf8_lossy(raw_name).into_owned();
        let name = String::from_utf8(raw_name.to_vec()).map_err(|_| ZipError::BadName {
            member: lossy.clone(),
            why: "not UTF-8",
        })?;
        if compressed == u32::MAX
            || uncompressed == u32::MAX
            || local_offset == u32::MAX
            || start_disk == u16::MAX
            || has_zip64_extra(extra)
        {
            return Err(ZipError::Zip64Entry { member: name });
        }
        if start_disk != 0 {
            return Err(ZipError::MultiDisk);
        }
        if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 {
            return Err(ZipError::Encrypted { member: name });
        }
        if method != 0 && method != 8 {
            return Err(ZipError::Method {
                member: name,
                method,
            });
        }
        let (bare, is_dir) = match name.strip_suffix('/') {
            Some(bare) => (bare, true),
            None => (name.as_str(), false),
        };
        check_name(bare).map_err(|why| ZipError::BadName {
            member: name.clone(),
            why,
        })?;
        let mut executable = false;
        if made_by_host == HOST_UNIX {
            let mode = external >> 16;
            match mode & S_IFMT {
                S_IFLNK => return Err(ZipError::Symlink { member: name }),
                // Directory entries are skipped, so only their being a
                // symlink matters.
                _ if is_dir => {}
                0 | S_IFREG => {}
                _ => return Err(ZipError::Special { member: name, mode }),
            }
            executable = mode & 0o111 != 0;
        }
        out.push(CdEntry {
            name,
            raw_name_len: name_len,
            is_dir,
            method,
            crc,
            compressed: u64::from(compressed),
            uncompressed: u64::from(uncompressed),
            local_offset: u64::from(local_offset),
            executable,
        });
    }
    if at != cd.len() {
        return Err(ZipError::CentralDirectory(
            "size does not match its entries",
        ));
    }
    Ok((out, cd_offset))
}

/// Checks an entry's local header against the central directory and
/// returns the offset of its data.
fn local_data_offset(bytes: &[u8], e: &CdEntry, entries_end: u64) -> Result<u64, ZipError> {
    let bad = |why| ZipError::LocalHeader {
        member: e.name.clone(),
        why,
    };
    let truncated = || ZipError::Truncated {
        member: e.name.clone(),
    };
    let h = slice(bytes, e.local_offset, LFH_LEN as u64).ok_or_else(truncated)?;
    if u32_at(h, 0) != LFH_SIG {
        return Err(bad("bad signature"));
    }
    let flags = u16_at(h, 6);
    let method = u16_at(h, 8);
    let crc = u32_at(h, 14);
    let compressed = u32_at(h, 18);
    let uncompressed = u32_at(h, 22);
    let name_len = u16_at(h, 26) as usize;
    let extra_len = u16_at(h, 28) as usize;
    if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 {
        return Err(ZipError::Encrypted {
            member: e.name.clone(),
        });
    }
    if method != e.method {
        return Err(bad("compression method differs from the central directory"));
    }
    if name_len != e.raw_name_len
        || slice(bytes, e.local_offset + LFH_LEN as u64, name_len as u64).ok_or_else(truncated)?
            != e.name.as_bytes()
    {
        return Err(bad("name differs from the central directory"));
    }
    let extra = slice(
        bytes,
        e.local_offset + (LFH_LEN + name_len) as u64,
        extra_len as u64,
    )
    .ok_or_else(truncated)?;
    if has_zip64_extra(extra) || compressed == u32::MAX || uncompressed == u32::MAX {
        return Err(ZipError::Zip64Entry {
            member: e.name.clone(),
        });
    }
    if flags & FLAG_DATA_DESCRIPTOR == 0
        && (u64::from(compressed) != e.compressed
            || u64::from(uncompressed) != e.uncompressed
            || crc != e.crc)
    {
        return Err(bad("sizes or CRC differ from the central directory"));
    }
    let data = e.local_offset + (LFH_LEN + name_len + extra_len) as u64;
    if data + e.compressed > entries_end {
        return Err(truncated());
    }
    Ok(data)
}

/// Decompresses (or copies) one entry's data and checks its size and
/// CRC-32 against the central directory.
fn extract(e: &CdEntry, raw: &[u8]) -> Result<Vec<u8>, ZipError> {
    let data = match e.method {
        0 => {
            if e.compressed != e.uncompressed {
                return Err(ZipError::StoredSize {
                    member: e.name.clone(),
                    compressed: e.compressed,
                    uncompressed: e.uncompressed,
                });
            }
            raw.to_vec()
        }
        _ => {
            let cap = e.uncompressed.min(
                e.compressed
                    .saturating_mul(MAX_DEFLATE_RATIO)
                    .saturating_add(64),
            );
            let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
            // One byte more than declared, to notice an entry that is longer.
            DeflateDecoder::new(raw)
                .take(e.uncompressed + 1)
                .read_to_end(&mut out)
                .map_err(|err| ZipError::Corrupt {
                    member: e.name.clone(),
                    why: err.to_string(),
                })?;
            out
        }
    };
    if data.len() as u64 != e.uncompressed {
        return Err(ZipError::Size {
            member: e.name.clone(),
            declared: e.uncompressed,
            actual: data.len() as u64,
        });
    }
    let mut crc = Crc::new();
    crc.update(&data);
    if crc.sum() != e.crc {
        return Err(ZipError::Crc {
            member: e.name.clone(),
            declared: e.crc,
            actual: crc.sum(),
        });
    }
    Ok(data)
}

/// Reads every regular file of a ZIP archive, in central directory order.
/// Directory entries are validated and skipped.
pub fn read(bytes: &[u8]) -> Result<Vec<ZipEntry>, ZipError> {
    let eocd = find_eocd(bytes)?;
    let (entries, entries_end) = read_central_directory(bytes, eocd)?;

    let mut names = BTreeSet::new();
    let mut total: u64 = 0;
    for e in &entries {
        if !names.insert(e.name.trim_end_matches('/')) {
            return Err(ZipError::Duplicate {
                member: e.name.clone(),
            });
        }
        if !e.is_dir {
            total = total.saturating_add(e.uncompressed);
            if total > MAX_TOTAL_UNCOMPRESSED {
                return Err(ZipError::TooLarge {
                    limit: MAX_TOTAL_UNCOMPRESSED,
                });
            }
        }
    }

    // Each entry occupies [local header, end of data); no two may share a
    // byte, or one archive could be read two ways.
    let mut spans = Vec::with_capacity(entries.len());
    let mut data_offsets = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let data = local_data_offset(bytes, e, entries_end)?;
        data_offsets.push(data);
        spans.push((e.local_offset, data + e.compressed, i));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(ZipError::Overlap {
                member: entries[w[1].2].name.clone(),
                other: entries[w[0].2].name.clone(),
            });
        }
    }

    let mut out = Vec::with_capacity(entries.len());
    for (e, data) in entries.iter().zip(data_offsets) {
        if e.is_dir {
            continue;
        }
        let raw = slice(bytes, data, e.compressed).ok_or_else(|| ZipError::Truncated {
            member: e.name.clone(),
        })?;
        out.push(ZipEntry {
            name: e.name.clone(),
            data: extract(e, raw)?,
            executable: e.executable,
        });
    }
    Ok(out)
}
