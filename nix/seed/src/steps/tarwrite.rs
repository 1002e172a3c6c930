//! Deterministic layer tarballs: sorted entries, numeric owners with empty
//! names, fixed modes and mtimes, gzip with a fixed level and an empty header
//! (or zstd, when an image asks for it).

use crate::digest::{Digest, DigestWriter};
use crate::spec::LayerCompression;
use flate2::{Compression, GzBuilder};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File(Vec<u8>),
    /// A regular file whose content waits in a [`Spill`] file: how the
    /// layer step keeps memory to metadata whatever the layer's size.
    Stored(Stored),
    Symlink(String),
    /// A hard link to another entry of the same layer (path relative, like `path`).
    Hardlink(String),
}

/// One entry of a layer. `path` is relative to the image root, without a
/// leading `/` or `./` and without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

impl Entry {
    pub fn directory(path: impl Into<String>, mode: u32, uid: u32, gid: u32, mtime: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Directory,
            mode,
            uid,
            gid,
            mtime,
        }
    }

    pub fn file(
        path: impl Into<String>,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
    ) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File(data),
            mode,
            uid,
            gid,
            mtime,
        }
    }

    pub fn symlink(
        path: impl Into<String>,
        target: impl Into<String>,
        uid: u32,
        gid: u32,
        mtime: u64,
    ) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Symlink(target.into()),
            mode: 0o777,
            uid,
            gid,
            mtime,
        }
    }
}

/// A finished layer blob.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// The compressed tar (the blob pushed to registries).
    pub bytes: Vec<u8>,
    /// How `bytes` is compressed (its media type).
    pub compression: LayerCompression,
    /// sha256 of `bytes` (the layer digest in the manifest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the `diff_id` in the config).
    pub diff_id: Digest,
}

impl LayerBlob {
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// gzip level used for every layer; part of the reproducibility contract.
/// Level 6 (gzip's own default): level 9 took about 3x the CPU for a
/// fraction of a percent fewer bytes on the catalogue (scripts/bench).
pub const GZIP_LEVEL: u32 = 6;

/// Where a [`EntryKind::Stored`] file's content is in its [`Spill`], with
/// the digests taken as it was written there (so that nothing reads it
/// twice to describe it).
#[derive(Debug, Clone, Copy, Eq)]
pub struct Stored {
    pub offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
    pub sha1: [u8; 20],
    pub md5: [u8; 16],
}

/// Two stored files are the same content when length and sha256 agree,
/// wherever they lie in the spill file.
impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.len == other.len && self.sha256 == other.sha256
    }
}

/// An anonymous scratch file that holds file contents while a layer's
/// entries are gathered and sorted: the layer's files come from many
/// packages and leave in path order, so their bytes must wait somewhere,
/// and on disk they cost no memory. The file is unlinked as soon as it is
/// made: nothing is left behind, whatever happens to the process.
///
/// Several threads may store into one spill file at once: each file's span
/// is reserved (its size is known from its tar header) before it is
/// written, and writes are positional.
pub struct Spill {
    file: std::fs::File,
    len: std::sync::atomic::AtomicU64,
}

/// Chunk size for copying into and out of the spill file.
const CHUNK: usize = 256 * 1024;

impl Spill {
    /// A new spill file in `dir` (the build's temporary directory).
    pub fn new_in(dir: &std::path::Path) -> io::Result<Spill> {
        for n in 0u32.. {
            let path = dir.join(format!(".kiln-spill-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    std::fs::remove_file(&path)?;
                    return Ok(Spill {
                        file,
                        len: std::sync::atomic::AtomicU64::new(0),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("u32 range exhausted")
    }

    /// Copies the `size` bytes `r` yields to a span reserved at the end of
    /// the file and returns where they went, with their digests. A reader
    /// that yields another number of bytes is an error.
    pub fn store(&self, r: &mut dyn Read, size: u64) -> io::Result<Stored> {
        use md5::Digest as _;
        let offset = self
            .len
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        let mut written = 0u64;
        let (mut sha256, mut sha1, mut md5) =
            (sha2::Sha256::new(), sha1::Sha1::new(), md5::Md5::new());
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = &buf[..n];
            if written + n as u64 > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a file longer than the {size} bytes its header declares"),
                ));
            }
            sha256.update(chunk);
            sha1.update(chunk);
            md5.update(chunk);
            self.file.write_all_at(chunk, offset + written)?;
            written += n as u64;
        }
        if written != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a file of {written} bytes where its header declares {size}"),
            ));
        }
        Ok(Stored {
            offset,
            len: size,
            sha256: sha256.finalize().into(),
            sha1: sha1.finalize().into(),
            md5: md5.finalize().into(),
        })
    }

    /// A stored file's content, read back whole (for small files that a
    /// step must look into: copyright files, certificates).
    pub fn read(&self, s: &Stored) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len as usize);
        self.reader(s).read_to_end(&mut out)?;
        Ok(out)
    }

    fn reader<'a>(&'a self, s: &Stored) -> SpanReader<'a> {
        SpanReader {
            file: &self.file,
            pos: s.offset,
            end: s.offset + s.len,
        }
    }
}

/// Reads one span of the spill file.
struct SpanReader<'a> {
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
}

impl Read for SpanReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spill file ended before a stored file's content",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes `entries` as a deterministic tar + gzip layer.
///
/// Entries are sorted by path (parents sort before their children). Hard
/// links are re-pointed so that every link refers to the first path of its
/// group in that order, because extractors need the target before the link.
/// Duplicate paths are an error of the caller and panic.
pub fn write_layer(entries: Vec<Entry>) -> io::Result<LayerBlob> {
    write_layer_compressed(entries, LayerCompression::Gzip)
}

/// [`write_layer`] with the given compression.
pub fn write_layer_compressed(
    entries: Vec<Entry>,
    compression: LayerCompression,
) -> io::Result<LayerBlob> {
    let written = write_layer_into(entries, None, Vec::new(), compression)?;
    Ok(LayerBlob {
        bytes: written.sink,
        compression,
        digest: written.digest,
        diff_id: written.diff_id,
    })
}

/// A layer streamed into a sink by [`write_layer_into`].
pub struct Written<W> {
    pub sink: W,
    /// sha256 of the compressed bytes written to `sink`.
    pub digest: Digest,
    /// How many compressed bytes were written.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// [`write_layer`] into any sink, as the bytes are made: memory holds the
/// entries' metadata and one chunk, never the tar or the compressed layer.
/// [`EntryKind::Stored`] contents are read from `spill`. The bytes are the
/// same as [`write_layer`]'s for the same entries.
pub fn write_layer_into<W: Write + Send>(
    entries: Vec<Entry>,
    spill: Option<&Spill>,
    sink: W,
    compression: LayerCompression,
) -> io::Result<Written<W>> {
    let entries = normalize(entries);
    let (compressed, diff_id) = match compression {
        LayerCompression::Gzip => {
            let gz = GzBuilder::new()
                .operating_system(255)
                .mtime(0)
                .write(DigestWriter::new(sink), Compression::new(GZIP_LEVEL));
            let mut tar_digest = DigestWriter::new(gz);
            write_tar(&mut tar_digest, &entries, spill)?;
            let (gz, diff_id, _) = tar_digest.into_parts();
            (gz.finish()?, diff_id)
        }
        LayerCompression::Zstd => {
            crate::steps::zstdstream::compress(DigestWriter::new(sink), |pipe| {
                let mut tar_digest = DigestWriter::new(pipe);
                write_tar(&mut tar_digest, &entries, spill)?;
                Ok(tar_digest.finish().0)
            })?
        }
    };
    let (sink, digest, size) = compressed.into_parts();
    Ok(Written {
        sink,
        digest,
        size,
        diff_id,
    })
}

fn write_tar<W: Write>(out: W, entries: &[Entry], spill: Option<&Spill>) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    for e in entries {
        append(&mut builder, e, spill)?;
    }
    builder.finish()
}

fn normalize(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    for w in entries.windows(2) {
        assert_ne!(w[0].path, w[1].path, "duplicate tar entry {}", w[0].path);
    }
    // Group hard links by the file they share and make the first path in
    // sorted order the file, all others links to it.
    let index: BTreeMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    let mut root_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::Hardlink(target) = &e.kind {
            let mut t = *index
                .get(target)
                .unwrap_or_else(|| panic!("hard link {} to missing {}", e.path, target));
            let mut hops = 0;
            while let EntryKind::Hardlink(next) = &entries[t].kind {
                t = index[next];
                hops += 1;
                assert!(hops < entries.len(), "hard link cycle at {}", e.path);
            }
            root_of.insert(i, t);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (link, file) in root_of {
        groups.entry(file).or_insert_with(|| vec![file]).push(link);
    }
    for (file, mut members) in groups {
        members.sort();
        let first = members[0];
        if first != file {
            let kind =
                std::mem::replace(&mut entries[file].kind, EntryKind::Hardlink(String::new()));
            entries[first].kind = kind;
            let meta = (
                entries[file].mode,
                entries[file].uid,
                entries[file].gid,
                entries[file].mtime,
            );
            (
                entries[first].mode,
                entries[first].uid,
                entries[first].gid,
                entries[first].mtime,
            ) = meta;
        }
        let target = entries[first].path.clone();
        for &m in &members[1..] {
            entries[m].kind = EntryKind::Hardlink(target.clone());
        }
    }
    entries
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    e: &Entry,
    spill: Option<&Spill>,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(e.mode & 0o7777);
    h.set_uid(e.uid as u64);
    h.set_gid(e.gid as u64);
    h.set_mtime(e.mtime);
    match &e.kind {
        EntryKind::Directory => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            builder.append_data(&mut h, format!("{}/", e.path), io::empty())
        }
        EntryKind::File(data) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, &e.path, data.as_slice())
        }
        EntryKind::Stored(stored) => {
            let spill = spill.ok_or_else(|| {
                io::Error::other(format!("{}: stored content but no spill file", e.path))
            })?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(stored.len);
            builder.append_data(&mut h, &e.path, spill.reader(stored))
        }
        EntryKind::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder.append_link(&mut h, &e.path, target)
        }
        EntryKind::Hardlink(target) => {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            builder.append_link(&mut h, &e.path, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::file(
                "etc/passwd",
                b"root:x:0:0::/root:/sbin/nologin\n".to_vec(),
                0o644,
                0,
                0,
                7,
            ),
            Entry::directory("etc", 0o755, 0, 0, 7),
            Entry::symlink("etc/os-release", "../usr/lib/os-release", 0, 0, 7),
            Entry::directory("tmp", 0o1777, 0, 0, 7),
        ]
    }

    #[test]
    fn a_zstd_layer_holds_the_same_tar_as_the_gzip_one() {
        let gz = write_layer(sample()).unwrap();
        let zst = write_layer_compressed(sample(), LayerCompression::Zstd).unwrap();
        assert_eq!(zst.compression, LayerCompression::Zstd);
        assert_eq!(zst.diff_id, gz.diff_id);
        assert_eq!(zst.digest, Digest::of(&zst.bytes));
        assert_ne!(zst.digest, gz.digest);
        let mut tar = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(zst.bytes.as_slice())
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Digest::of(&tar), zst.diff_id);
        let again = write_layer_compressed(sample(), LayerCompression::Zstd).unwrap();
        assert_eq!(again.bytes, zst.bytes);
    }

    fn read_back(blob: &LayerBlob) -> Vec<(String, tar::EntryType, u32)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Digest::of(&tar), blob.diff_id);
        let mut a = tar::Archive::new(tar.as_slice());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.header().mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn streamed_from_a_spill_is_the_same_bytes_as_in_memory() {
        // Large enough that the tar is copied in many chunks: the gzip
        // stream must not depend on how its input was cut.
        let big: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| format!("{} ", i % 7919).into_bytes())
            .take(3 << 20)
            .collect();
        let small = b"root:x:0:0::/root:/sbin/nologin\n".to_vec();
        let in_memory = vec![
            Entry::file("usr/lib/big", big.clone(), 0o644, 0, 0, 7),
            Entry::file("etc/passwd", small.clone(), 0o644, 0, 0, 7),
            Entry::directory("etc", 0o755, 0, 0, 7),
        ];
        let spill = Spill::new_in(&std::env::temp_dir()).unwrap();
        let stored_big = spill.store(&mut big.as_slice(), big.len() as u64).unwrap();
        let stored_small = spill
            .store(&mut small.as_slice(), small.len() as u64)
            .unwrap();
        // A reader that yields more or less than declared is refused.
        assert!(spill.store(&mut small.as_slice(), 3).is_err());
        assert!(spill.store(&mut small.as_slice(), 99).is_err());
        assert_eq!(spill.read(&stored_small).unwrap(), small);
        assert_eq!(stored_big.sha256, Digest::of(&big).0);
        let streamed = vec![
            Entry {
                kind: EntryKind::Stored(stored_big),
                ..Entry::file("usr/lib/big", Vec::new(), 0o644, 0, 0, 7)
            },
            Entry {
                kind: EntryKind::Stored(stored_small),
                ..Entry::file("etc/passwd", Vec::new(), 0o644, 0, 0, 7)
            },
            Entry::directory("etc", 0o755, 0, 0, 7),
        ];
        let a = write_layer(in_memory).unwrap();
        let b = write_layer_into(
            streamed.clone(),
            Some(&spill),
            Vec::new(),
            LayerCompression::Gzip,
        )
        .unwrap();
        assert_eq!(a.bytes, b.sink);
        assert_eq!((a.digest, a.diff_id), (b.digest, b.diff_id));
        assert_eq!(b.size, a.bytes.len() as u64);
        // Without its spill file a stored entry cannot be written.
        assert!(write_layer_into(streamed, None, Vec::new(), LayerCompression::Gzip).is_err());
    }

    #[test]
    fn same_entries_in_any_order_give_the_same_bytes() {
        let a = write_layer(sample()).unwrap();
        let mut rev = sample();
        rev.reverse();
        let b = write_layer(rev).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.digest, Digest::of(&a.bytes));
    }

    #[test]
    fn entries_are_sorted_and_keep_modes() {
        let blob = write_layer(sample()).unwrap();
        let names: Vec<_> = read_back(&blob)
            .into_iter()
            .map(|(p, _, m)| (p, m))
            .collect();
        assert_eq!(
            names,
            vec![
                ("etc/".into(), 0o755),
                ("etc/os-release".into(), 0o777),
                ("etc/passwd".into(), 0o644),
                ("tmp/".into(), 0o1777)
            ]
        );
    }

    #[test]
    fn gzip_header_has_no_time_and_unknown_os() {
        let blob = write_layer(sample()).unwrap();
        assert_eq!(&blob.bytes[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob.bytes[9], 255);
    }

    #[test]
    fn hard_links_point_at_the_first_path() {
        let entries = vec![
            Entry::file("usr/bin/z", b"x".to_vec(), 0o755, 0, 0, 1),
            Entry {
                path: "usr/bin/a".into(),
                kind: EntryKind::Hardlink("usr/bin/z".into()),
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 1,
            },
        ];
        let blob = write_layer(entries).unwrap();
        let got = read_back(&blob);
        assert_eq!(got[0].0, "usr/bin/a");
        assert_eq!(got[0].1, tar::EntryType::Regular);
        assert_eq!(got[1].0, "usr/bin/z");
        assert_eq!(got[1].1, tar::EntryType::Link);
    }

    #[test]
    fn long_paths_survive() {
        let long = format!("usr/share/{}/file", "d".repeat(150));
        let blob = write_layer(vec![Entry::file(long.clone(), vec![1], 0o644, 0, 0, 1)]).unwrap();
        assert_eq!(read_back(&blob)[0].0, long);
    }
}
