//! Reads the image a [`Source`] names, verifying every blob on the way:
//! the image index, each platform's manifest and config (through
//! [`crate::oci::tree`]) and layers (digest, size, and the config's diffIDs
//! against the uncompressed layers), and
//! collects what the SBOM checks compare against: the Debian packages
//! recorded in `/var/lib/dpkg/status.d` of the stacked layers.

use super::source::{Source, SourceError};
use crate::digest::Digest;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use std::collections::BTreeMap;
use std::io::Read;

const STATUS_D: &str = "var/lib/dpkg/status.d/";

pub use crate::oci::tree::short;

/// A package as dpkg's status.d records it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

impl std::fmt::Display for DebPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.name, self.version, self.architecture)
    }
}

/// One platform of the image.
#[derive(Debug)]
pub struct Platform {
    /// OCI architecture (`amd64`, `arm64`), from the index descriptor or,
    /// for a single-manifest image, the config.
    pub arch: String,
    pub variant: Option<String>,
    pub descriptor: Descriptor,
    pub digest: Digest,
    /// The installed packages, when every layer could be read.
    pub packages: Option<Vec<DebPackage>>,
    /// The manifest's annotations and layer descriptors, when it could be read.
    pub annotations: BTreeMap<String, String>,
    pub layers: Vec<Descriptor>,
}

impl Platform {
    pub fn label(&self) -> String {
        format!("{} manifest {}", self.arch, short(&self.digest))
    }
}

/// What the walk found.
#[derive(Debug)]
pub struct Image {
    pub root: Descriptor,
    pub root_digest: Digest,
    /// True when the root is an image index (a multi-platform image).
    pub is_index: bool,
    /// The root document's annotations.
    pub annotations: BTreeMap<String, String>,
    pub platforms: Vec<Platform>,
    /// Blobs fetched and found to match their digests.
    pub blobs_verified: usize,
    /// Every blob that is missing, tampered with or inconsistent.
    pub problems: Vec<String>,
}

impl Image {
    pub fn root_label(&self) -> String {
        if self.is_index {
            format!("image index {}", short(&self.root_digest))
        } else {
            self.platforms
                .first()
                .map(Platform::label)
                .unwrap_or_else(|| format!("manifest {}", short(&self.root_digest)))
        }
    }

    /// (label, digest) of the root and every platform manifest: what a
    /// provenance statement's subjects must be.
    pub fn all_digests(&self) -> Vec<(String, Digest)> {
        let mut v = vec![(self.root_label(), self.root_digest)];
        if self.is_index {
            v.extend(self.platforms.iter().map(|p| (p.label(), p.digest)));
        }
        v
    }
}

fn source_problem(e: &SourceError) -> String {
    super::layout::chain(e)
}

/// Reads the image (through [`crate::oci::tree`], the one walker) and
/// then every layer of every platform: its digest, its diffID against the
/// config, and the status.d files the SBOM checks compare against. Blob
/// problems below the root are collected, not fatal, so that signatures
/// over digests are still checked and reported.
pub fn walk(source: &dyn Source) -> Result<Image, SourceError> {
    let tree = crate::oci::tree::read(source)?;
    let mut img = Image {
        root: tree.root,
        root_digest: tree.root_digest,
        is_index: tree.is_index,
        annotations: tree.annotations,
        platforms: Vec::new(),
        blobs_verified: tree.blobs_read,
        problems: tree.problems,
    };
    for node in tree.platforms {
        let mut p = Platform {
            arch: node.arch,
            variant: node.variant,
            descriptor: node.descriptor,
            digest: node.digest,
            packages: None,
            annotations: node
                .manifest
                .as_ref()
                .and_then(|m| m.annotations().clone())
                .map(|a| a.into_iter().collect())
                .unwrap_or_default(),
            layers: node
                .manifest
                .as_ref()
                .map(|m| m.layers().clone())
                .unwrap_or_default(),
        };
        if let (Some(manifest), Some(config)) = (&node.manifest, &node.config) {
            p.packages = read_layers(source, &node.label, manifest, config, &mut img);
        }
        img.platforms.push(p);
    }
    Ok(img)
}

/// Reads one platform's layers; the installed packages when every layer
/// could be read.
fn read_layers(
    source: &dyn Source,
    what: &str,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
    img: &mut Image,
) -> Option<Vec<DebPackage>> {
    let diff_ids = config.rootfs().diff_ids();
    let mut status = StatusD::default();
    let mut complete = true;
    let layers = manifest.layers();
    for (i, (layer, read)) in layers
        .iter()
        .zip(fetch_and_scan(source, layers))
        .enumerate()
    {
        let scanned = match read {
            Fetched::Missing(e) => {
                img.problems
                    .push(format!("{what}: layer {i}: {}", source_problem(&e)));
                complete = false;
                continue;
            }
            Fetched::Scanned(scanned) => scanned,
        };
        img.blobs_verified += 1;
        match scanned.map(|(diff_id, events)| {
            status.apply(events);
            diff_id
        }) {
            Ok(diff_id) => {
                if let Some(expected) = diff_ids.get(i) {
                    if *expected != diff_id.to_string() {
                        img.problems.push(format!(
                            "{what}: layer {i} ({}) uncompresses to {diff_id}, the config's diffID is {expected}",
                            layer.digest()
                        ));
                    }
                }
            }
            Err(e) => {
                img.problems
                    .push(format!("{what}: layer {i} ({}): {e}", layer.digest()));
                complete = false;
            }
        }
    }
    complete.then(|| status.packages())
}

/// How many layers are fetched and read at once: registries answer several
/// requests in parallel, and a layer's decompression and hash take a core.
const LAYER_WORKERS: usize = 4;

/// How many compressed bytes of layers may be held at once by the workers
/// together (a layer larger than this is read alone): the verifier holds
/// each blob in memory while it checks it, and parallel reads must not
/// multiply the memory a large image needs.
const LAYER_BYTES_IN_FLIGHT: u64 = 512 << 20;

/// Bytes the workers may still take; a worker waits until its layer fits.
struct Budget {
    left: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn take(&self, want: u64) -> u64 {
        let want = want.min(LAYER_BYTES_IN_FLIGHT);
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        while *left < want {
            left = self.freed.wait(left).unwrap_or_else(|p| p.into_inner());
        }
        *left -= want;
        want
    }

    fn give(&self, taken: u64) {
        *self.left.lock().unwrap_or_else(|p| p.into_inner()) += taken;
        self.freed.notify_all();
    }
}

/// One layer, fetched (checked against its descriptor) and read.
#[derive(Clone)]
enum Fetched {
    Missing(SourceError),
    Scanned(Result<(Digest, Vec<StatusEvent>), String>),
}

/// Fetches and reads every layer, [`LAYER_WORKERS`] at a time, and returns
/// the results in the manifest's order. Each worker holds one layer at a
/// time; what it keeps of it is the diff ID and the status.d changes. A
/// layer listed more than once (same digest and media type, hence the same
/// bytes) is fetched and read once.
fn fetch_and_scan(source: &dyn Source, layers: &[Descriptor]) -> Vec<Fetched> {
    let mut first_of: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut distinct: Vec<&Descriptor> = Vec::new();
    let slot: Vec<usize> = layers
        .iter()
        .map(|l| {
            let key = (l.digest().to_string(), l.media_type().to_string());
            *first_of.entry(key).or_insert_with(|| {
                distinct.push(l);
                distinct.len() - 1
            })
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let budget = Budget {
        left: std::sync::Mutex::new(LAYER_BYTES_IN_FLIGHT),
        freed: std::sync::Condvar::new(),
    };
    let results: Vec<std::sync::Mutex<Option<Fetched>>> = distinct
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..LAYER_WORKERS.min(distinct.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(layer) = distinct.get(i) else {
                    break;
                };
                let taken = budget.take(layer.size());
                let got = match source.fetch(layer) {
                    Ok(bytes) => Fetched::Scanned(scan_layer(layer.media_type().as_ref(), &bytes)),
                    Err(e) => Fetched::Missing(e),
                };
                budget.give(taken);
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(got);
            });
        }
    });
    let results: Vec<Fetched> = results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every layer has a result")
        })
        .collect();
    slot.into_iter().map(|i| results[i].clone()).collect()
}

/// What a layer does to status.d, in its order.
#[derive(Clone, Debug, PartialEq)]
enum StatusEvent {
    /// An opaque or removed parent: the layers below no longer count.
    Clear,
    Remove(String),
    Insert(String, Vec<u8>),
}

/// status.d as the layers stack up: later layers replace files and
/// whiteouts remove them.
#[derive(Default)]
struct StatusD {
    files: BTreeMap<String, Vec<u8>>,
}

impl StatusD {
    fn apply(&mut self, events: Vec<StatusEvent>) {
        for e in events {
            match e {
                StatusEvent::Clear => self.files.clear(),
                StatusEvent::Remove(name) => {
                    self.files.remove(&name);
                }
                StatusEvent::Insert(name, text) => {
                    self.files.insert(name, text);
                }
            }
        }
    }

    fn packages(&self) -> Vec<DebPackage> {
        let mut out: Vec<DebPackage> = self
            .files
            .iter()
            .filter(|(name, _)| !name.ends_with(".md5sums"))
            .filter_map(|(_, text)| parse_stanza(&String::from_utf8_lossy(text)))
            .collect();
        out.sort();
        out
    }
}

/// Package, Version and Architecture of a control stanza.
fn parse_stanza(text: &str) -> Option<DebPackage> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    Some(DebPackage {
        name: field("Package")?,
        version: field("Version")?,
        architecture: field("Architecture")?,
    })
}

/// Whether the whiteout `path` (if it is one) hides status.d of the
/// layers below: a removed or opaque parent directory.
fn whiteout_covers_status_d(path: &str) -> bool {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(name) = base.strip_prefix(".wh.") else {
        return false;
    };
    let hidden = if name == ".wh..opq" {
        dir.to_string()
    } else if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    };
    hidden.is_empty() || STATUS_D.starts_with(&format!("{hidden}/"))
}

/// A reader that hashes what passes through it and remembers the first
/// error of the reader below (the decompressor's, told apart from the
/// tar's own).
struct Hashed<R> {
    inner: R,
    hasher: sha2::Sha256,
    error: std::rc::Rc<std::cell::RefCell<Option<String>>>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                self.error.borrow_mut().get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }
}

/// Uncompresses a layer; returns its diffID and what it does to status.d.
/// The tar is read as it is decompressed and hashed on the way, never held
/// whole.
fn scan_layer(media_type: &str, bytes: &[u8]) -> Result<(Digest, Vec<StatusEvent>), String> {
    use sha2::Digest as _;
    let compression = media_type.rsplit_once('+').map_or("tar", |(_, c)| c);
    let decoder_error = std::rc::Rc::new(std::cell::RefCell::new(None));
    let mut hashed = Hashed {
        inner: crate::oci::layer_reader(media_type, bytes).map_err(|e| e.to_string())?,
        hasher: sha2::Sha256::new(),
        error: decoder_error.clone(),
    };
    // A decompression error is reported as such, whatever the tar reader
    // made of it.
    let fail = |e: std::io::Error, what: &str| match decoder_error.borrow().clone() {
        Some(d) => format!("{compression}: {d}"),
        None => format!("tar: {what}{e}"),
    };
    let mut events = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let entries = archive.entries().map_err(|e| fail(e, ""))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| fail(e, ""))?;
            let path = entry
                .path()
                .map_err(|e| fail(e, ""))?
                .to_string_lossy()
                .into_owned();
            let path = path.trim_start_matches("./").trim_start_matches('/');
            let Some(rel) = path.strip_prefix(STATUS_D) else {
                if whiteout_covers_status_d(path) {
                    events.push(StatusEvent::Clear);
                }
                continue;
            };
            if rel == ".wh..wh..opq" {
                events.push(StatusEvent::Clear);
            } else if let Some(gone) = rel.strip_prefix(".wh.") {
                events.push(StatusEvent::Remove(gone.to_string()));
            } else if !rel.is_empty() && !rel.contains('/') && entry.header().entry_type().is_file()
            {
                let mut text = Vec::new();
                entry
                    .read_to_end(&mut text)
                    .map_err(|e| fail(e, &format!("{path}: ")))?;
                events.push(StatusEvent::Insert(rel.to_string(), text));
            }
        }
    }
    // The diffID covers the whole stream, past the tar's end blocks.
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| fail(e, ""))?;
    Ok((Digest(hashed.hasher.finalize().into()), events))
}

/// [`scan_layer`], applied to `status`.
#[cfg(test)]
fn read_layer(media_type: &str, bytes: &[u8], status: &mut StatusD) -> Result<Digest, String> {
    let (diff_id, events) = scan_layer(media_type, bytes)?;
    status.apply(events);
    Ok(diff_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn status_d_follows_the_layer_stack() {
        let mut s = StatusD::default();
        let a = tar_of(&[
            (
                "var/lib/dpkg/status.d/libc6",
                "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n",
            ),
            ("var/lib/dpkg/status.d/libc6.md5sums", "abc  lib/x\n"),
            (
                "./var/lib/dpkg/status.d/python3.11",
                "Package: python3.11\nVersion: 3.11.2-6\nArchitecture: amd64\nDescription: x\n",
            ),
            ("usr/share/doc/x", "y"),
        ]);
        let d = read_layer("application/vnd.oci.image.layer.v1.tar", &a, &mut s).unwrap();
        assert_eq!(d, Digest::of(&a));
        assert_eq!(
            s.packages(),
            vec![
                DebPackage {
                    name: "libc6".into(),
                    version: "2.36-9".into(),
                    architecture: "amd64".into()
                },
                DebPackage {
                    name: "python3.11".into(),
                    version: "3.11.2-6".into(),
                    architecture: "amd64".into()
                }
            ]
        );
        let b = tar_of(&[("var/lib/dpkg/status.d/.wh.python3.11", "")]);
        read_layer("application/vnd.oci.image.layer.v1.tar", &b, &mut s).unwrap();
        assert_eq!(s.packages().len(), 1);
        let c = tar_of(&[("var/lib/dpkg/status.d/.wh..wh..opq", "")]);
        read_layer("application/vnd.oci.image.layer.v1.tar", &c, &mut s).unwrap();
        assert!(s.packages().is_empty());
        assert!(whiteout_covers_status_d("var/lib/.wh.dpkg"));
        assert!(whiteout_covers_status_d("var/lib/.wh..wh..opq"));
        assert!(whiteout_covers_status_d(".wh.var"));
        assert!(!whiteout_covers_status_d("var/lib/.wh.dpkgx"));
        assert!(!whiteout_covers_status_d("var/lib/dpkg/status.dx"));
    }

    /// Blobs by digest, and nothing else: what `read_layers` fetches.
    struct Blobs(BTreeMap<String, Vec<u8>>);

    impl Source for Blobs {
        fn describe(&self) -> String {
            "blobs".into()
        }
        fn root(&self) -> Result<Descriptor, SourceError> {
            unreachable!("read_layers asks for blobs only")
        }
        fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>, SourceError> {
            Ok(self.0[&desc.digest().to_string()].clone())
        }
        fn tagged(&self, _: &str) -> Result<Option<Descriptor>, SourceError> {
            unreachable!("read_layers asks for blobs only")
        }
        fn referrers(&self, _: &Digest) -> Result<Vec<Descriptor>, SourceError> {
            unreachable!("read_layers asks for blobs only")
        }
    }

    #[test]
    fn a_layer_that_is_not_the_configs_diff_id_is_a_problem() {
        // The build trusts the diffID its layer step recorded; this is the
        // check that catches a layer that does not uncompress to it.
        let layer = tar_of(&[("etc/x", "y")]);
        let digest = Digest::of(&layer);
        let manifest: ImageManifest = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest.to_string(), "size": layer.len()}]
        }))
        .unwrap();
        let config = |diff_id: String| -> ImageConfiguration {
            serde_json::from_value(serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id]}
            }))
            .unwrap()
        };
        let source = Blobs(BTreeMap::from([(digest.to_string(), layer)]));
        let mut img = Image {
            root: manifest.layers()[0].clone(),
            root_digest: digest,
            is_index: false,
            annotations: BTreeMap::new(),
            platforms: Vec::new(),
            blobs_verified: 0,
            problems: Vec::new(),
        };
        read_layers(
            &source,
            "amd64",
            &manifest,
            &config(digest.to_string()),
            &mut img,
        )
        .unwrap();
        assert!(img.problems.is_empty(), "{:?}", img.problems);
        let wrong = format!("sha256:{}", "1".repeat(64));
        read_layers(
            &source,
            "amd64",
            &manifest,
            &config(wrong.clone()),
            &mut img,
        )
        .unwrap();
        assert_eq!(img.problems.len(), 1);
        assert!(
            img.problems[0].contains(&format!(
                "uncompresses to {digest}, the config's diffID is {wrong}"
            )),
            "{:?}",
            img.problems
        );
    }

    #[test]
    fn layers_read_in_parallel_stack_in_the_manifests_order() {
        // 40 layers, each adding a package and removing the previous one:
        // only the last one's remains, whatever order the workers finish in.
        let mut blobs = BTreeMap::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for n in 0..40 {
            let stanza = format!("Package: p{n}\nVersion: 1\nArchitecture: all\n");
            let gone = format!("var/lib/dpkg/status.d/.wh.p{}", n.max(1) - 1);
            let mut files = vec![(format!("var/lib/dpkg/status.d/p{n}"), stanza)];
            if n > 0 {
                files.push((gone, String::new()));
            }
            let files: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str()))
                .collect();
            let layer = tar_of(&files);
            let digest = Digest::of(&layer);
            layers.push(
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest.to_string(), "size": layer.len()}),
            );
            diff_ids.push(digest.to_string());
            blobs.insert(digest.to_string(), layer);
        }
        let manifest: ImageManifest = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": layers
        }))
        .unwrap();
        let config: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap();
        let mut img = Image {
            root: manifest.layers()[0].clone(),
            root_digest: Digest([0; 32]),
            is_index: false,
            annotations: BTreeMap::new(),
            platforms: Vec::new(),
            blobs_verified: 0,
            problems: Vec::new(),
        };
        let packages = read_layers(&Blobs(blobs), "amd64", &manifest, &config, &mut img).unwrap();
        assert!(img.problems.is_empty(), "{:?}", img.problems);
        assert_eq!(img.blobs_verified, 40);
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p39"]);
    }

    #[test]
    fn unreadable_layers_are_named() {
        let mut s = StatusD::default();
        let e = read_layer(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            b"nope",
            &mut s,
        )
        .unwrap_err();
        assert!(e.starts_with("gzip:"), "{e}");
        let e = read_layer("application/x-foo", b"", &mut s).unwrap_err();
        assert!(e.contains("application/x-foo"), "{e}");
    }
}
