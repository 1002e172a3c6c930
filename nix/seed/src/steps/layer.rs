//! The `layer` step (docs/internals.md): pinned .debs in, one deterministic
//! OCI layer (`layer.tar.gz`) and its description (`layer.json`, plus
//! `ca-certificates.pem` when a package ships certificates) out.
//!
//! The layer is a function of its .debs and the exclusion settings alone: no
//! clock, no host, no input order. The .deb's own mtimes are kept (not
//! clamped to the image's `created`) so that the same package gives the same
//! layer digest in every image and across relocks that keep its version.

use crate::copyright::{self, CopyrightInfo};
use crate::deb::{self, Control};
use crate::digest::Digest;
use crate::json;
use crate::layerinfo::{FileInfo, FileType, InstalledPackage, LayerInfo};
use crate::spec::Arch;
use crate::spec::LayerCompression;
use crate::tarsafe;
use crate::tarwrite::{write_layer_into, Entry, EntryKind, LayerBlob, Spill, Written};
use glob::{MatchOptions, Pattern};
use md5::Md5;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// What kiln leaves out of every package unless `defaultExcludes = false`:
/// documentation, manuals and bug-reporting/lint metadata, none of which a
/// container needs at run time (distroless drops the same).
/// [`DEFAULT_EXCLUDE_EXCEPTIONS`] are kept even so.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/usr/share/doc/**",
    "/usr/share/man/**",
    "/usr/share/info/**",
    "/usr/share/lintian/**",
    "/usr/share/bug/**",
    "/usr/share/linda/**",
];

/// Paths the default exclusions keep: the copyright files, which carry the
/// licenses the image is distributed under (and which the SBOM cites), and
/// what is directly in /usr/share/doc: there a package may have a symlink
/// instead of a directory, to the doc directory of a package it depends on
/// (Debian policy 12.5: libncursesw6 -> libtinfo6), and it is through that
/// link that its copyright file is found, in the image and by the image step.
/// Directories there are not kept on their own, only as parents.
pub const DEFAULT_EXCLUDE_EXCEPTIONS: &[&str] = &["/usr/share/doc/*/copyright", "/usr/share/doc/*"];

/// Where the per-package dpkg status stanzas go (distroless' layout, which
/// syft, trivy and grype read).
pub const STATUS_DIR: &str = "var/lib/dpkg/status.d";

/// The step's input (docs/internals.md, `layer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerInput {
    pub arch: String,
    pub packages: Vec<PackageInput>,
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    pub default_excludes: bool,
    /// Absent for gzip, so that gzip layers keep their derivations.
    #[serde(default)]
    pub compression: LayerCompression,
}

/// A lock entry plus the store path of its .deb.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageInput {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub suite: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    pub deb: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the layer input JSON")]
    Input(#[source] serde_json::Error),
    #[error("layer input: {0}")]
    InvalidInput(String),
    #[error("exclude pattern {pattern:?}: {why}")]
    Pattern { pattern: String, why: String },
    #[error("{pkg}: reading {}", path.display())]
    ReadDeb {
        pkg: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{pkg}: .deb size mismatch: expected {expected} bytes, got {actual} ({})", path.display())]
    DebSize {
        pkg: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{pkg}: .deb sha256 mismatch: expected {expected}, got {actual} ({})", path.display())]
    DebSha256 {
        pkg: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{pkg}: {}", path.display())]
    Deb {
        pkg: String,
        path: PathBuf,
        #[source]
        source: deb::Error,
    },
    #[error("{pkg}: the .deb's control says {field}: {actual:?} but the lock says {expected:?}; refusing a .deb that is not what the lock names")]
    ControlMismatch {
        pkg: String,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{pkg}: control field {field}: {value:?} is not a number")]
    ControlField {
        pkg: String,
        field: &'static str,
        value: String,
    },
    #[error("{pkg}: md5sums lists {path} with md5 {listed}, but the file's md5 is {actual}")]
    Md5Mismatch {
        pkg: String,
        path: String,
        listed: String,
        actual: String,
    },
    #[error(transparent)]
    Unsafe(#[from] tarsafe::Error),
    #[error("/{path} is shipped by both {first} and {second} (a merged layer cannot hold both)")]
    Collision {
        path: String,
        first: String,
        second: String,
    },
    /// `first`/`second`: the package and what it says, e.g.
    /// `aaa 1 (amd64): mode 755, owner 0:0`.
    #[error("directory /{path} differs between packages: {first}; {second}")]
    DirectoryConflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("/{path} (from {pkg}) is where kiln writes the package database")]
    Reserved { path: String, pkg: String },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Everything the step produces, before it is written to `$out`.
#[derive(Debug, Clone)]
pub struct LayerOutput {
    pub blob: LayerBlob,
    pub info: LayerInfo,
    /// `ca-certificates.pem`, when some package ships certificates.
    pub ca_bundle: Option<Vec<u8>>,
}

/// The step: reads the input JSON, builds the layer, writes `$out`. The
/// layer streams into `layer.tar.gz` (or `layer.tar.zst`) as it is made: memory holds the
/// entries' metadata, never the files' contents or the layer (they wait in
/// a scratch file in the build's temporary directory).
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: LayerInput = serde_json::from_slice(input).map_err(Error::Input)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let blob_path = out.join(input.compression.blob_file());
    let file = std::fs::File::create(&blob_path).map_err(write_err(&blob_path))?;
    let built = build_into(&input, io::BufWriter::with_capacity(1 << 20, file))?;
    built
        .blob
        .sink
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(write_err(&blob_path))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(write_err(&path))
    };
    write("layer.json", &json::pretty(&built.info))?;
    if let Some(pem) = &built.ca_bundle {
        write("ca-certificates.pem", pem)?;
    }
    Ok(())
}

/// Builds the layer in memory.
pub fn build(input: &LayerInput) -> Result<LayerOutput, Error> {
    let built = build_into(input, Vec::new())?;
    Ok(LayerOutput {
        blob: LayerBlob {
            bytes: built.blob.sink,
            compression: input.compression,
            digest: built.blob.digest,
            diff_id: built.blob.diff_id,
        },
        info: built.info,
        ca_bundle: built.ca_bundle,
    })
}

/// A layer written into a sink, with its description.
struct BuiltInto<W> {
    blob: Written<W>,
    info: LayerInfo,
    ca_bundle: Option<Vec<u8>>,
}

fn build_into<W: io::Write + Send>(input: &LayerInput, sink: W) -> Result<BuiltInto<W>, Error> {
    check_input(input)?;
    let scratch = std::env::temp_dir();
    let spill = Spill::new_in(&scratch).map_err(|source| Error::Write {
        path: scratch.clone(),
        source,
    })?;
    let excludes = Excludes::new(&input.exclude_paths, input.default_excludes)?;
    // Package order in the input must not matter.
    let mut packages: Vec<&PackageInput> = input.packages.iter().collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    let mut loaded: Vec<Loaded> = Vec::with_capacity(packages.len());
    let mut certs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for result in load_all(&packages, &input.arch, &excludes, &spill) {
        let (package, package_certs) = result?;
        loaded.push(package);
        certs.extend(package_certs);
    }
    let labels: Vec<String> = loaded.iter().map(|p| p.label.clone()).collect();

    // The union of every package's kept entries (moved, not copied: file
    // contents can be large).
    let mut union: BTreeMap<String, (usize, Entry)> = BTreeMap::new();
    for (i, pkg) in loaded.iter_mut().enumerate() {
        for e in std::mem::take(&mut pkg.entries) {
            let Some((j, other)) = union.get_mut(&e.path) else {
                union.insert(e.path.clone(), (i, e));
                continue;
            };
            let first = &labels[*j];
            if other.kind != EntryKind::Directory || e.kind != EntryKind::Directory {
                return Err(Error::Collision {
                    path: e.path,
                    first: first.clone(),
                    second: labels[i].clone(),
                });
            }
            if (other.mode, other.uid, other.gid) != (e.mode, e.uid, e.gid) {
                let describe = |label: &str, e: &Entry| {
                    format!("{label}: mode {:o}, owner {}:{}", e.mode, e.uid, e.gid)
                };
                return Err(Error::DirectoryConflict {
                    path: e.path.clone(),
                    first: describe(first, other),
                    second: describe(&labels[i], &e),
                });
            }
            other.mtime = other.mtime.max(e.mtime);
        }
    }
    // One package's entry below another's symlink would be written through it.
    tarsafe::check_parents(
        union
            .iter()
            .map(|(p, (i, _))| (labels[*i].as_str(), p.as_str())),
        |p| union.get(p).map(|(i, e)| (&e.kind, labels[*i].as_str())),
    )?;

    // The package database: status.d/<name> and <name>.md5sums, and their
    // parent directories where no package ships them.
    let newest = loaded.iter().map(|p| p.newest_mtime).max().unwrap_or(0);
    let mut dir = String::new();
    for part in STATUS_DIR.split('/') {
        if !dir.is_empty() {
            dir.push('/');
        }
        dir.push_str(part);
        match union.get(&dir) {
            Some((_, e)) if e.kind == EntryKind::Directory => {}
            Some((j, _)) => {
                return Err(Error::Reserved {
                    path: dir.clone(),
                    pkg: labels[*j].clone(),
                })
            }
            None => {
                union.insert(
                    dir.clone(),
                    (
                        usize::MAX,
                        Entry::directory(dir.clone(), 0o755, 0, 0, newest),
                    ),
                );
            }
        }
    }
    for (i, pkg) in loaded.iter().enumerate() {
        for (path, data) in [
            (
                format!("{STATUS_DIR}/{}", pkg.input.name),
                pkg.status.as_bytes(),
            ),
            (
                format!("{STATUS_DIR}/{}.md5sums", pkg.input.name),
                pkg.md5sums.as_bytes(),
            ),
        ] {
            if let Some((j, _)) = union.get(&path) {
                let owner = labels.get(*j).cloned().unwrap_or_else(|| "kiln".into());
                return Err(Error::Reserved { path, pkg: owner });
            }
            let e = Entry::file(path.clone(), data.to_vec(), 0o644, 0, 0, pkg.newest_mtime);
            union.insert(path, (i, e));
        }
    }

    let entries: Vec<Entry> = union.into_values().map(|(_, e)| e).collect();
    let blob =
        write_layer_into(entries, Some(&spill), sink, input.compression).map_err(|source| {
            Error::Write {
                path: input.compression.blob_file().into(),
                source,
            }
        })?;
    let packages = loaded.into_iter().map(|p| p.installed).collect();
    let info = LayerInfo {
        media_type: input.compression.media_type().to_string(),
        digest: blob.digest,
        size: blob.size,
        diff_id: blob.diff_id,
        packages,
    };
    let ca_bundle = (!certs.is_empty()).then(|| ca_bundle(&certs));
    Ok(BuiltInto {
        blob,
        info,
        ca_bundle,
    })
}

/// Concatenates certificates in byte order of their paths, each ending in
/// exactly one newline (update-ca-certificates' ca-certificates.crt).
fn ca_bundle(certs: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut pem = Vec::new();
    for data in certs.values() {
        let end = data.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
        pem.extend_from_slice(&data[..end]);
        pem.push(b'\n');
    }
    pem
}

fn check_input(input: &LayerInput) -> Result<(), Error> {
    let bad = |s: String| Err(Error::InvalidInput(s));
    if Arch::parse(&input.arch).is_none() {
        return bad(format!(
            "arch {:?} is not one kiln builds (amd64, arm64)",
            input.arch
        ));
    }
    if input.packages.is_empty() {
        return bad("no packages".into());
    }
    let mut names = BTreeSet::new();
    for p in &input.packages {
        let valid_name = p.name.len() >= 2
            && p.name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && p.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !valid_name {
            return bad(format!("{:?} is not a Debian package name", p.name));
        }
        if !names.insert(&p.name) {
            return bad(format!("package {} is listed twice", p.name));
        }
        if p.architecture != input.arch && p.architecture != "all" {
            return bad(format!(
                "package {} is for {}, the layer for {}",
                p.name, p.architecture, input.arch
            ));
        }
        if Digest::from_hex(&p.sha256).is_none() {
            return bad(format!(
                "package {}: sha256 {:?} is not 64 lowercase hex digits",
                p.name, p.sha256
            ));
        }
    }
    Ok(())
}

/// One package, read, checked, filtered.
/// [`load`]s every package, several at a time (decoding a .deb's data
/// member is most of a large layer's first half, and each .deb is
/// independent), and returns the results in the order of `packages`: what
/// comes next, and the first error reported, do not depend on which
/// package finished first. Only where contents lie in the spill file does.
fn load_all(
    packages: &[&PackageInput],
    arch: &str,
    excludes: &Excludes,
    spill: &Spill,
) -> Vec<Result<(Loaded, Certificates), Error>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LOAD_WORKERS)
        .min(packages.len());
    type Slot = Mutex<Option<Result<(Loaded, Certificates), Error>>>;
    let slots: Vec<Slot> = packages.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = packages.get(i) else { break };
                let mut certs = BTreeMap::new();
                let result = load(p, arch, excludes, &mut certs, spill).map(|l| (l, certs));
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every package is loaded by a worker")
        })
        .collect()
}

/// CA certificates a package ships, by path.
type Certificates = BTreeMap<String, Vec<u8>>;

/// At most this many packages are read at once: each has a decoding thread
/// of its own, and more than a few only adds memory on the machines kiln
/// builds on.
const MAX_LOAD_WORKERS: usize = 4;

struct Loaded {
    input: PackageInput,
    /// `name version (arch)` for messages.
    label: String,
    /// Kept entries (hard-link groups led by their first path).
    entries: Vec<Entry>,
    newest_mtime: u64,
    status: String,
    md5sums: String,
    installed: InstalledPackage,
}

fn load(
    p: &PackageInput,
    arch: &str,
    excludes: &Excludes,
    certs: &mut BTreeMap<String, Vec<u8>>,
    spill: &Spill,
) -> Result<Loaded, Error> {
    let label = format!("{} {} ({arch})", p.name, p.version);
    let read_err = |source| Error::ReadDeb {
        pkg: label.clone(),
        path: p.deb.clone(),
        source,
    };
    // The whole .deb is checked against the lock before any byte of it is
    // parsed; it is read twice, the second time from the page cache.
    let mut file = std::fs::File::open(&p.deb).map_err(read_err)?;
    let (digest, size) = Digest::of_reader(&mut file).map_err(read_err)?;
    if size != p.size {
        return Err(Error::DebSize {
            pkg: label,
            path: p.deb.clone(),
            expected: p.size,
            actual: size,
        });
    }
    let actual = digest.hex();
    if actual != p.sha256 {
        return Err(Error::DebSha256 {
            pkg: label,
            path: p.deb.clone(),
            expected: p.sha256.clone(),
            actual,
        });
    }
    io::Seek::rewind(&mut file).map_err(read_err)?;
    let deb = deb::parse_from(io::BufReader::with_capacity(1 << 16, file), Some(spill)).map_err(
        |source| Error::Deb {
            pkg: label.clone(),
            path: p.deb.clone(),
            source,
        },
    )?;
    check_control(&label, p, &deb.control)?;

    let entries = tarsafe::validate(&label, deb.data)?;
    let newest_mtime = entries.iter().map(|e| e.mtime).max().unwrap_or(0);
    let by_path: HashMap<&str, &Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    // Content of a file entry, through its hard link if it is one (only
    // small files are asked for: a copyright file, certificates).
    let read = |kind: &EntryKind| -> Result<Option<Vec<u8>>, Error> {
        match kind {
            EntryKind::File(d) => Ok(Some(d.clone())),
            EntryKind::Stored(s) => spill.read(s).map(Some).map_err(|source| Error::Write {
                path: std::env::temp_dir(),
                source,
            }),
            _ => Ok(None),
        }
    };
    let content = |e: &Entry| -> Result<Option<Vec<u8>>, Error> {
        match &e.kind {
            EntryKind::Hardlink(root) => match by_path.get(root.as_str()) {
                Some(target) => read(&target.kind),
                None => Ok(None),
            },
            kind => read(kind),
        }
    };
    // Both looked at before exclusions: the defaults drop the certificates'
    // directory in some images, and the copyright file's directory.
    let copyright_path = format!("usr/share/doc/{}/copyright", p.name);
    let copyright = match by_path.get(copyright_path.as_str()) {
        Some(e) => content(e)?,
        None => None,
    }
    .map(|d| copyright::analyze(Some(&String::from_utf8_lossy(&d))))
    .unwrap_or_else(CopyrightInfo::noassertion);
    for e in &entries {
        if e.path.starts_with("usr/share/ca-certificates/") && e.path.ends_with(".crt") {
            if let Some(d) = content(e)? {
                certs.insert(e.path.clone(), d);
            }
        }
    }
    drop(by_path);

    let entries = excludes.apply(entries);

    // Files and their digests, for layer.json and md5sums.
    let mut md5_of: HashMap<&str, String> = HashMap::new();
    let mut files = Vec::with_capacity(entries.len());
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    for e in &sorted {
        let mut f = FileInfo {
            path: format!("/{}", e.path),
            file_type: FileType::Directory,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: None,
            sha256: None,
            sha1: None,
            md5: None,
            target: None,
        };
        match &e.kind {
            EntryKind::Directory => {}
            EntryKind::File(_) | EntryKind::Stored(_) => {
                // Stored files were hashed on their way to the spill file.
                let (len, sha256, sha1, md5): (u64, [u8; 32], [u8; 20], [u8; 16]) = match &e.kind {
                    EntryKind::Stored(s) => (s.len, s.sha256, s.sha1, s.md5),
                    EntryKind::File(data) => (
                        data.len() as u64,
                        Sha256::digest(data).into(),
                        Sha1::digest(data).into(),
                        Md5::digest(data).into(),
                    ),
                    _ => unreachable!("matched as a file above"),
                };
                let md5 = hex::encode(md5);
                f.file_type = FileType::File;
                f.size = Some(len);
                f.sha256 = Some(hex::encode(sha256));
                f.sha1 = Some(hex::encode(sha1));
                f.md5 = Some(md5.clone());
                md5_of.insert(&e.path, md5);
            }
            EntryKind::Symlink(t) => {
                f.file_type = FileType::Symlink;
                f.target = Some(t.clone());
            }
            EntryKind::Hardlink(t) => {
                f.file_type = FileType::Hardlink;
                f.target = Some(format!("/{t}"));
            }
        }
        files.push(f);
    }
    // Hard links share their leader's content (leaders sort first).
    for e in &sorted {
        if let EntryKind::Hardlink(t) = &e.kind {
            if let Some(m) = md5_of.get(t.as_str()).cloned() {
                md5_of.insert(&e.path, m);
            }
        }
    }
    let mut md5sums = String::new();
    match &deb.md5sums {
        Some(lines) => {
            for l in lines {
                let Some(actual) = md5_of.get(l.path.as_str()) else {
                    continue;
                };
                if *actual != l.md5 {
                    return Err(Error::Md5Mismatch {
                        pkg: label,
                        path: l.path.clone(),
                        listed: l.md5.clone(),
                        actual: actual.clone(),
                    });
                }
                md5sums.push_str(&format!("{}  {}\n", l.md5, l.path));
            }
        }
        None => {
            for e in &sorted {
                if let Some(m) = md5_of.get(e.path.as_str()) {
                    md5sums.push_str(&format!("{m}  {}\n", e.path));
                }
            }
        }
    }
    drop(md5_of);
    drop(sorted);

    let control = &deb.control;
    let installed_size = match control.get("Installed-Size") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| Error::ControlField {
            pkg: label.clone(),
            field: "Installed-Size",
            value: v.to_string(),
        })?),
    };
    let installed = InstalledPackage {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        source: p.source.clone(),
        source_version: p.source_version.clone(),
        suite: p.suite.clone(),
        filename: p.filename.clone(),
        sha256: p.sha256.clone(),
        size: p.size,
        maintainer: control.get("Maintainer").map(str::to_string),
        homepage: control.get("Homepage").map(str::to_string),
        summary: control
            .field("Description")
            .map(|f| f.first_line().to_string()),
        installed_size,
        license: copyright.license,
        copyright_text: copyright.copyright_text,
        files,
    };
    Ok(Loaded {
        input: p.clone(),
        label,
        entries,
        newest_mtime,
        status: control.to_status(),
        md5sums,
        installed,
    })
}

/// A .deb that is not what the lock says must never be used.
fn check_control(label: &str, p: &PackageInput, control: &Control) -> Result<(), Error> {
    for (field, expected) in [
        ("Package", &p.name),
        ("Version", &p.version),
        ("Architecture", &p.architecture),
    ] {
        let actual = control.get(field).unwrap_or("");
        if actual != expected {
            return Err(Error::ControlMismatch {
                pkg: label.to_string(),
                field,
                expected: expected.clone(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}

/// Compiled exclusion globs. Patterns are absolute, `*` stays within one
/// path component, `**` spans any number. A directory is also tested with a
/// trailing `/`, so `/usr/share/man/**` drops `/usr/share/man` itself; but a
/// directory is only dropped when nothing kept lies below it.
#[derive(Debug, Clone)]
pub struct Excludes {
    user: Vec<Pattern>,
    defaults: Vec<Pattern>,
    exceptions: Vec<Pattern>,
}

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Excludes {
    pub fn new(user: &[String], defaults: bool) -> Result<Excludes, Error> {
        let compile = |s: &str| {
            if !s.starts_with('/') {
                return Err(Error::Pattern {
                    pattern: s.to_string(),
                    why: "must be an absolute path".into(),
                });
            }
            Pattern::new(s).map_err(|e| Error::Pattern {
                pattern: s.to_string(),
                why: e.to_string(),
            })
        };
        let user = user.iter().map(|s| compile(s)).collect::<Result<_, _>>()?;
        let (defaults, exceptions) = if defaults {
            (
                DEFAULT_EXCLUDES
                    .iter()
                    .map(|s| compile(s))
                    .collect::<Result<_, _>>()?,
                DEFAULT_EXCLUDE_EXCEPTIONS
                    .iter()
                    .map(|s| compile(s))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Excludes {
            user,
            defaults,
            exceptions,
        })
    }

    fn matches(&self, abs: &str) -> bool {
        let any = |ps: &[Pattern]| ps.iter().any(|p| p.matches_with(abs, MATCH));
        any(&self.user) || (any(&self.defaults) && !any(&self.exceptions))
    }

    /// Whether an entry (relative path) matches, ignoring what lies below.
    pub fn excluded(&self, path: &str, is_dir: bool) -> bool {
        let abs = format!("/{path}");
        self.matches(&abs) || (is_dir && self.matches(&format!("{abs}/")))
    }

    /// The entries that stay: those not matched, plus every directory that
    /// has a kept entry below it. Hard-link groups stay consistent: the
    /// first kept path of a group (in byte order) holds the content and the
    /// other kept ones link to it, also when the original file was dropped.
    pub fn apply(&self, mut entries: Vec<Entry>) -> Vec<Entry> {
        let index: HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        let matched: Vec<bool> = entries
            .iter()
            .map(|e| self.excluded(&e.path, e.kind == EntryKind::Directory))
            .collect();
        let mut keep: Vec<bool> = matched.iter().map(|m| !m).collect();
        // Every ancestor of an entry that is kept on its own merits stays
        // (ancestors of ancestors are ancestors too, so one pass suffices).
        for (i, e) in entries.iter().enumerate() {
            if matched[i] {
                continue;
            }
            let mut end = e.path.len();
            while let Some(slash) = e.path[..end].rfind('/') {
                end = slash;
                if let Some(&j) = index.get(&e.path[..end]) {
                    keep[j] = true;
                }
            }
        }

        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let EntryKind::Hardlink(root) = &e.kind {
                let r = index[root];
                groups.entry(r).or_insert_with(|| vec![r]).push(i);
            }
        }
        for (root, members) in groups {
            let mut kept: Vec<usize> = members.into_iter().filter(|&m| keep[m]).collect();
            kept.sort_by(|&a, &b| entries[a].path.as_bytes().cmp(entries[b].path.as_bytes()));
            let Some(&leader) = kept.first() else {
                continue;
            };
            if leader != root {
                let data =
                    std::mem::replace(&mut entries[root].kind, EntryKind::Hardlink(String::new()));
                entries[leader].kind = data;
            }
            let target = entries[leader].path.clone();
            for &m in &kept[1..] {
                entries[m].kind = EntryKind::Hardlink(target.clone());
            }
        }
        entries
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect()
    }
}

#[cfg(test)]
mod tests;
