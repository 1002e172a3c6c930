//! Deterministic layer tarballs: sorted entries, numeric owners with empty
//! names, fixed modes and mtimes, gzip with a fixed level and an empty header.

use crate::digest::{Digest, DigestWriter};
use flate2::{Compression, GzBuilder};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File(Vec<u8>),
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
    /// The gzip-compressed tar (the blob pushed to registries).
    pub gz: Vec<u8>,
    /// sha256 of `gz` (the layer digest in the manifest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the `diff_id` in the config).
    pub diff_id: Digest,
}

impl LayerBlob {
    pub fn size(&self) -> u64 {
        self.gz.len() as u64
    }
}

/// gzip level used for every layer; part of the reproducibility contract.
pub const GZIP_LEVEL: u32 = 9;

/// Writes `entries` as a deterministic tar + gzip layer.
///
/// Entries are sorted by path (parents sort before their children). Hard
/// links are re-pointed so that every link refers to the first path of its
/// group in that order, because extractors need the target before the link.
/// Duplicate paths are an error of the caller and panic.
pub fn write_layer(entries: Vec<Entry>) -> io::Result<LayerBlob> {
    let entries = normalize(entries);
    let gz = GzBuilder::new()
        .operating_system(255)
        .mtime(0)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    let mut tar_digest = DigestWriter::new(gz);
    {
        let mut builder = tar::Builder::new(&mut tar_digest);
        builder.mode(tar::HeaderMode::Deterministic);
        for e in &entries {
            append(&mut builder, e)?;
        }
        builder.finish()?;
    }
    let (gz, diff_id, _) = tar_digest.into_parts();
    let gz = gz.finish()?;
    let digest = Digest::of(&gz);
    Ok(LayerBlob {
        gz,
        digest,
        diff_id,
    })
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

fn append<W: Write>(builder: &mut tar::Builder<W>, e: &Entry) -> io::Result<()> {
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

    fn read_back(blob: &LayerBlob) -> Vec<(String, tar::EntryType, u32)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob.gz.as_slice())
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
    fn same_entries_in_any_order_give_the_same_bytes() {
        let a = write_layer(sample()).unwrap();
        let mut rev = sample();
        rev.reverse();
        let b = write_layer(rev).unwrap();
        assert_eq!(a.gz, b.gz);
        assert_eq!(a.digest, Digest::of(&a.gz));
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
        assert_eq!(&blob.gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob.gz[9], 255);
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
