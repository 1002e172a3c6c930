//! Layer contents as `kiln diff` compares them: every tar entry with the
//! metadata an extractor applies (type, mode, owner, mtime, link target,
//! device numbers, pax records) and the sha256 of each regular file, plus
//! the packages the layer installs (dpkg status files).

use super::{Difference, Kind};
use kiln_seed::digest::Digest;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Status files larger than this are not parsed for package names (a
/// stanza is a few KiB; `/var/lib/dpkg/status` of a full system is ~1 MiB).
const MAX_STATUS_SIZE: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer media type {0} is not supported (gzip, zstd or uncompressed tar)")]
    MediaType(String),
    #[error("reading the layer: {0}")]
    Read(io::Error),
    #[error("tar entry {path:?}: {message}")]
    Entry { path: String, message: String },
}

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    Other,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Hardlink => "hard link",
            FileKind::Char => "character device",
            FileKind::Block => "block device",
            FileKind::Fifo => "fifo",
            FileKind::Other => "other",
        }
    }
}

/// One tar entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub mtime: u64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, or the path a hard link points at (normalized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<(u32, u32)>,
    /// pax extended header records (xattrs are `SCHILY.xattr.*`), except
    /// those already applied to the fields above.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pax: BTreeMap<String, String>,
}

/// A layer read in full.
#[derive(Debug, Clone, Default)]
pub struct LayerContent {
    /// Entries by normalized path (no leading `/` or `./`, no trailing `/`;
    /// the root itself is `.`). A path written twice keeps its last entry,
    /// as extraction would.
    pub entries: BTreeMap<String, FileEntry>,
    /// Paths in archive order.
    pub order: Vec<String>,
    /// Packages the layer installs: name → version, from
    /// `var/lib/dpkg/status.d/*` and `var/lib/dpkg/status`.
    pub packages: BTreeMap<String, String>,
    /// sha256 of the uncompressed tar.
    pub diff_id: Option<Digest>,
}

/// A reader that hashes what passes through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes what it is given and keeps the first `keep` bytes.
struct Sink {
    hasher: Sha256,
    kept: Vec<u8>,
    keep: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&buf[..room.min(buf.len())]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The decompressing reader for a layer of `media_type` (the seed's, so
/// that `kiln diff` reads layers as the verifier and the policy do).
pub fn decompressor<'a, R: Read + 'a>(
    media_type: &str,
    blob: R,
) -> Result<Box<dyn Read + 'a>, LayerError> {
    kiln_seed::oci::layer_reader(media_type, blob).map_err(|e| match e {
        kiln_seed::oci::LayerReaderError::MediaType(m) => LayerError::MediaType(m),
        other => LayerError::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            other.to_string(),
        )),
    })
}

/// Normalizes a tar path: no leading `./` or `/`, no trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut p = path;
    loop {
        let before = p;
        p = p.trim_start_matches("./").trim_start_matches('/');
        if p == before {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() || p == "." {
        ".".into()
    } else {
        p.to_string()
    }
}

/// How a normalized path is shown: absolute.
pub fn display_path(path: &str) -> String {
    if path == "." {
        "/".into()
    } else {
        format!("/{path}")
    }
}

/// Reads a layer blob of `media_type` (compressed or not).
pub fn read(media_type: &str, blob: impl Read) -> Result<LayerContent, LayerError> {
    read_tar(decompressor(media_type, blob)?)
}

/// Reads an uncompressed layer tar.
pub fn read_tar(tar: impl Read) -> Result<LayerContent, LayerError> {
    let mut hashing = HashReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    let mut content = LayerContent::default();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(LayerError::Read)? {
            let mut entry = entry.map_err(LayerError::Read)?;
            let (path, file) = read_entry(&mut entry, &mut content.packages)?;
            content.order.push(path.clone());
            content.entries.insert(path, file);
        }
    }
    // The tar's end-of-archive padding belongs to the diff_id too.
    io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Read)?;
    content.diff_id = Some(Digest(hashing.hasher.finalize().into()));
    Ok(content)
}

fn read_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    packages: &mut BTreeMap<String, String>,
) -> Result<(String, FileEntry), LayerError> {
    let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let path = normalize(&raw_path);
    let bad = |message: String| LayerError::Entry {
        path: raw_path.clone(),
        message,
    };
    let h = entry.header().clone();
    let mut uid = h.uid().map_err(|e| bad(format!("uid: {e}")))?;
    let mut gid = h.gid().map_err(|e| bad(format!("gid: {e}")))?;
    let mut mtime = h.mtime().map_err(|e| bad(format!("mtime: {e}")))?;
    let mode = h.mode().map_err(|e| bad(format!("mode: {e}")))? & 0o7777;
    let mut uname = String::from_utf8_lossy(h.username_bytes().unwrap_or_default()).into_owned();
    let mut gname = String::from_utf8_lossy(h.groupname_bytes().unwrap_or_default()).into_owned();
    let mut pax = BTreeMap::new();
    if let Some(exts) = entry.pax_extensions().map_err(LayerError::Read)? {
        for ext in exts {
            let ext = ext.map_err(LayerError::Read)?;
            let key = String::from_utf8_lossy(ext.key_bytes()).into_owned();
            let value = String::from_utf8_lossy(ext.value_bytes()).into_owned();
            // pax times may carry a fraction; the whole seconds are the mtime.
            let int = |v: &str| v.split('.').next().unwrap_or("").parse::<u64>().ok();
            match key.as_str() {
                "path" | "linkpath" | "size" => {}
                "uid" => uid = int(&value).unwrap_or(uid),
                "gid" => gid = int(&value).unwrap_or(gid),
                "mtime" if !value.contains('.') => mtime = int(&value).unwrap_or(mtime),
                "uname" => uname = value,
                "gname" => gname = value,
                _ => {
                    pax.insert(key, value);
                }
            }
        }
    }
    let link = entry
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::File,
        tar::EntryType::Directory => FileKind::Directory,
        tar::EntryType::Symlink => FileKind::Symlink,
        tar::EntryType::Link => FileKind::Hardlink,
        tar::EntryType::Char => FileKind::Char,
        tar::EntryType::Block => FileKind::Block,
        tar::EntryType::Fifo => FileKind::Fifo,
        _ => FileKind::Other,
    };
    let device = match kind {
        FileKind::Char | FileKind::Block => Some((
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        )),
        _ => None,
    };
    let (size, sha256) = if kind == FileKind::File {
        let status = is_status_file(&path);
        let keep = if status && entry.size() <= MAX_STATUS_SIZE {
            entry.size() as usize
        } else {
            0
        };
        let mut sink = Sink {
            hasher: Sha256::new(),
            kept: Vec::with_capacity(keep),
            keep,
        };
        let n = io::copy(entry, &mut sink).map_err(LayerError::Read)?;
        if status {
            packages.extend(parse_status(&sink.kept));
        }
        (n, Some(hex::encode(sink.hasher.finalize())))
    } else {
        (0, None)
    };
    let link = match kind {
        FileKind::Hardlink => link.map(|l| normalize(&l)),
        FileKind::Symlink => link,
        _ => None,
    };
    Ok((
        path,
        FileEntry {
            kind,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            size,
            sha256,
            link,
            device,
            pax,
        },
    ))
}

fn is_status_file(path: &str) -> bool {
    path == "var/lib/dpkg/status"
        || path
            .strip_prefix("var/lib/dpkg/status.d/")
            .is_some_and(|n| !n.is_empty() && !n.contains('/') && !n.ends_with(".md5sums"))
}

/// `Package:` → `Version:` of every stanza.
pub fn parse_status(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim().to_string());
            }
        }
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.push((n, version.unwrap_or_default()));
        }
    }
    out
}

fn short_sha(s: &Option<String>) -> String {
    match s {
        Some(h) => format!("sha256:{}", &h[..h.len().min(12)]),
        None => "-".into(),
    }
}

/// One-line description of an entry (for added and removed files).
pub fn describe(e: &FileEntry) -> String {
    match e.kind {
        FileKind::File => format!("file, {} bytes, mode {:04o}", e.size, e.mode),
        FileKind::Symlink => format!("symlink → {}", e.link.as_deref().unwrap_or("")),
        FileKind::Hardlink => format!(
            "hard link → {}",
            display_path(e.link.as_deref().unwrap_or(""))
        ),
        k => format!("{}, mode {:04o}", k.name(), e.mode),
    }
}

/// Every difference between two layers' entries, named by path and field.
/// `scope` and `location` say where the layer is ("amd64", "layer 2 (x)").
pub fn diff_entries(
    a: &LayerContent,
    b: &LayerContent,
    scope: &str,
    location: &str,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let d = |kind: Kind, path: &str, from: Option<String>, to: Option<String>| {
        Difference::new(kind, scope, location)
            .path(display_path(path))
            .change(from, to)
    };
    let mut paths: Vec<&String> = a.entries.keys().chain(b.entries.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        match (a.entries.get(p), b.entries.get(p)) {
            (Some(x), None) => out.push(d(Kind::FileRemoved, p, Some(describe(x)), None)),
            (None, Some(y)) => out.push(d(Kind::FileAdded, p, None, Some(describe(y)))),
            (Some(x), Some(y)) if x != y => {
                if x.kind != y.kind {
                    out.push(d(
                        Kind::FileType,
                        p,
                        Some(x.kind.name().into()),
                        Some(y.kind.name().into()),
                    ));
                    continue;
                }
                if x.sha256 != y.sha256 || x.size != y.size {
                    out.push(d(
                        Kind::FileContent,
                        p,
                        Some(format!("{} bytes {}", x.size, short_sha(&x.sha256))),
                        Some(format!("{} bytes {}", y.size, short_sha(&y.sha256))),
                    ));
                }
                if x.mode != y.mode {
                    out.push(d(
                        Kind::FileMode,
                        p,
                        Some(format!("{:04o}", x.mode)),
                        Some(format!("{:04o}", y.mode)),
                    ));
                }
                if (x.uid, x.gid) != (y.uid, y.gid) {
                    out.push(d(
                        Kind::FileOwner,
                        p,
                        Some(format!("{}:{}", x.uid, x.gid)),
                        Some(format!("{}:{}", y.uid, y.gid)),
                    ));
                }
                if (&x.uname, &x.gname) != (&y.uname, &y.gname) {
                    out.push(d(
                        Kind::FileOwnerName,
                        p,
                        Some(format!("{:?}:{:?}", x.uname, x.gname)),
                        Some(format!("{:?}:{:?}", y.uname, y.gname)),
                    ));
                }
                if x.mtime != y.mtime {
                    out.push(d(
                        Kind::FileMtime,
                        p,
                        Some(kiln_seed::oci::rfc3339(x.mtime)),
                        Some(kiln_seed::oci::rfc3339(y.mtime)),
                    ));
                }
                if x.link != y.link {
                    let kind = if x.kind == FileKind::Hardlink {
                        Kind::FileHardlink
                    } else {
                        Kind::FileSymlink
                    };
                    out.push(d(kind, p, x.link.clone(), y.link.clone()));
                }
                if x.device != y.device {
                    let dev = |e: &FileEntry| e.device.map(|(ma, mi)| format!("{ma},{mi}"));
                    out.push(d(Kind::FileDevice, p, dev(x), dev(y)));
                }
                let mut keys: Vec<&String> = x.pax.keys().chain(y.pax.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    if x.pax.get(k) != y.pax.get(k) {
                        out.push(
                            Difference::new(Kind::FilePax, scope, location)
                                .path(display_path(p))
                                .field(k)
                                .change(x.pax.get(k).cloned(), y.pax.get(k).cloned()),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if out.is_empty() && a.order != b.order {
        let first = a
            .order
            .iter()
            .zip(&b.order)
            .position(|(x, y)| x != y)
            .unwrap_or(a.order.len().min(b.order.len()));
        out.push(Difference::new(Kind::EntryOrder, scope, location).change(
            a.order.get(first).map(|p| display_path(p)),
            b.order.get(first).map(|p| display_path(p)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_seed::tarwrite::{write_layer, Entry};

    fn sample() -> Vec<Entry> {
        vec![
            Entry::directory("etc", 0o755, 0, 0, 5),
            Entry::file(
                "etc/hosts",
                b"127.0.0.1 localhost\n".to_vec(),
                0o644,
                0,
                0,
                5,
            ),
            Entry::symlink("etc/mtab", "../proc/self/mounts", 0, 0, 5),
            Entry::directory("var/lib/dpkg/status.d", 0o755, 0, 0, 5),
            Entry::file(
                "var/lib/dpkg/status.d/netbase",
                b"Package: netbase\nStatus: install ok installed\nVersion: 6.4\n".to_vec(),
                0o644,
                0,
                0,
                5,
            ),
            Entry::file(
                "var/lib/dpkg/status.d/netbase.md5sums",
                b"x  y\n".to_vec(),
                0o644,
                0,
                0,
                5,
            ),
        ]
    }

    fn read_entries(entries: Vec<Entry>) -> LayerContent {
        let blob = write_layer(entries).unwrap();
        let c = read(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            blob.bytes.as_slice(),
        )
        .unwrap();
        assert_eq!(c.diff_id, Some(blob.diff_id));
        c
    }

    #[test]
    fn reads_entries_packages_and_diff_id() {
        let c = read_entries(sample());
        assert_eq!(
            c.packages,
            BTreeMap::from([("netbase".into(), "6.4".into())])
        );
        let hosts = &c.entries["etc/hosts"];
        assert_eq!(
            (hosts.kind, hosts.mode, hosts.size),
            (FileKind::File, 0o644, 20)
        );
        assert_eq!(
            c.entries["etc/mtab"].link.as_deref(),
            Some("../proc/self/mounts")
        );
        assert_eq!(c.entries["etc"].kind, FileKind::Directory);
    }

    #[test]
    fn identical_layers_have_no_differences() {
        let a = read_entries(sample());
        let b = read_entries(sample());
        assert!(diff_entries(&a, &b, "amd64", "layer 1").is_empty());
    }

    #[test]
    fn each_field_is_named() {
        let a = read_entries(sample());
        let mut changed = sample();
        changed[1].mode = 0o600;
        changed[1].uid = 7;
        changed[2] = Entry::symlink("etc/mtab", "/proc/mounts", 0, 0, 5);
        changed[0].mtime = 6;
        changed.push(Entry::file("etc/new", vec![1, 2], 0o644, 0, 0, 5));
        changed.remove(5);
        let b = read_entries(changed);
        let diffs = diff_entries(&a, &b, "amd64", "layer 1 (netbase)");
        let got: Vec<String> = diffs.iter().map(|d| d.text.clone()).collect();
        let kinds: Vec<(Kind, Option<&str>)> =
            diffs.iter().map(|d| (d.kind, d.path.as_deref())).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::FileMtime, Some("/etc")),
                (Kind::FileMode, Some("/etc/hosts")),
                (Kind::FileOwner, Some("/etc/hosts")),
                (Kind::FileSymlink, Some("/etc/mtab")),
                (Kind::FileAdded, Some("/etc/new")),
                (
                    Kind::FileRemoved,
                    Some("/var/lib/dpkg/status.d/netbase.md5sums")
                ),
            ]
        );
        assert!(
            got.contains(&"amd64: layer 1 (netbase): /etc/hosts: mode 0644 → 0600".to_string()),
            "{got:#?}"
        );
        assert!(got.contains(&"amd64: layer 1 (netbase): /etc/mtab: symlink target ../proc/self/mounts → /proc/mounts".to_string()), "{got:#?}");
    }

    #[test]
    fn content_changes_name_sizes_and_hashes() {
        let a = read_entries(sample());
        let mut changed = sample();
        changed[1] = Entry::file("etc/hosts", b"::1 localhost\n".to_vec(), 0o644, 0, 0, 5);
        let b = read_entries(changed);
        let diffs = diff_entries(&a, &b, "arm64", "layer 3");
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].kind, Kind::FileContent);
        assert!(
            diffs[0]
                .text
                .starts_with("arm64: layer 3: /etc/hosts: content 20 bytes sha256:"),
            "{}",
            diffs[0].text
        );
    }

    #[test]
    fn pax_records_and_plain_tars_are_read() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_pax_extensions([
            ("SCHILY.xattr.user.k", b"v1".as_slice()),
            ("atime", b"12.5"),
        ])
        .unwrap();
        tar.append_data(&mut h, "./a", b"abc".as_slice()).unwrap();
        let a = read(
            "application/vnd.oci.image.layer.v1.tar",
            tar.into_inner().unwrap().as_slice(),
        )
        .unwrap();
        let e = &a.entries["a"];
        assert_eq!(
            e.pax.get("SCHILY.xattr.user.k").map(String::as_str),
            Some("v1")
        );
        assert_eq!(e.pax.get("atime").map(String::as_str), Some("12.5"));
        let mut b = a.clone();
        b.entries
            .get_mut("a")
            .unwrap()
            .pax
            .insert("SCHILY.xattr.user.k".into(), "v2".into());
        let diffs = diff_entries(&a, &b, "amd64", "layer 1");
        assert_eq!(diffs.len(), 1);
        assert_eq!(
            diffs[0].text,
            "amd64: layer 1: /a: pax SCHILY.xattr.user.k \"v1\" → \"v2\""
        );
    }

    #[test]
    fn same_entries_in_another_order_is_named() {
        let a = read_entries(sample());
        let mut b = a.clone();
        b.order.reverse();
        let diffs = diff_entries(&a, &b, "amd64", "layer 1");
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].kind, Kind::EntryOrder);
    }

    #[test]
    fn unsupported_media_types_are_refused() {
        assert!(matches!(
            read("application/octet-stream", [].as_slice()),
            Err(LayerError::MediaType(_))
        ));
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./etc/"), "etc");
        assert_eq!(normalize("/./usr/bin"), "usr/bin");
        assert_eq!(normalize("./"), ".");
        assert_eq!(display_path("."), "/");
    }
}
