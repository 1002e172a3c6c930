//! `kiln diff`: how two images differ, from the top down (like diffoci):
//! index (platforms, annotations) → manifests (annotations, layers) →
//! config fields → layers (matched by content, by the packages they hold,
//! by the files they share) → files (added, removed, content, mode, owner,
//! mtime, link targets, pax records and xattrs) → packages.
//!
//! Every difference is reported once, where it happened: a changed file is
//! not also reported as a changed layer digest, diff_id, config digest,
//! manifest digest and index digest. Digests that differ with nothing else
//! to show are reported as such, so an empty report always means identical.

pub mod config;
pub mod layer;

use kiln_seed::digest::Digest;
use kiln_seed::oci::{self, Layout};
use layer::LayerContent;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub const OCI_MANIFEST: &str = oci::MANIFEST_MEDIA_TYPE;
pub const OCI_INDEX: &str = oci::INDEX_MEDIA_TYPE;
pub const DOCKER_MANIFEST: &str = oci::DOCKER_MANIFEST_MEDIA_TYPE;
pub const DOCKER_LIST: &str = oci::DOCKER_LIST_MEDIA_TYPE;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{0} is not an OCI image layout directory (no oci-layout file); give a layout directory, optionally as DIR:TAG")]
    NotALayout(String),
    #[error("{}: no image tagged {tag:?} (tags: {known})", layout.display())]
    NoTag {
        layout: PathBuf,
        tag: String,
        known: String,
    },
    #[error("{}: index.json lists several images ({known}); say which one as DIR:TAG", layout.display())]
    Ambiguous { layout: PathBuf, known: String },
    #[error("{}: {message}", layout.display())]
    Invalid { layout: PathBuf, message: String },
    #[error("{}: layer {digest}", layout.display())]
    Layer {
        layout: PathBuf,
        digest: String,
        #[source]
        source: layer::LayerError,
    },
    #[error(transparent)]
    Oci(#[from] oci::Error),
}

/// What kind of difference (stable names for `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One side is an image index, the other a single manifest.
    Structure,
    PlatformAdded,
    PlatformRemoved,
    PlatformOrder,
    /// An annotation (index, index descriptor or manifest).
    Annotation,
    /// A field of an index or manifest other than annotations and layers.
    Field,
    /// A whole config field (`config.User`, `created`, history).
    ConfigField,
    /// One entry of `config.Env` or `config.Labels`.
    ConfigEntry,
    LayerOrder,
    LayerAdded,
    LayerRemoved,
    /// Same uncompressed tar, different compressed blob.
    LayerCompression,
    /// Same entries, different tar bytes (header encoding, padding).
    TarBytes,
    EntryOrder,
    FileAdded,
    FileRemoved,
    FileType,
    FileContent,
    FileMode,
    FileOwner,
    FileOwnerName,
    FileMtime,
    FileSymlink,
    FileHardlink,
    FileDevice,
    FilePax,
    /// A package added, removed or at another version.
    Package,
    /// Bytes differ and nothing above explains it.
    Bytes,
}

/// One difference, where it is and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: Kind,
    /// `index` or the platform (`amd64`, `arm64`).
    pub scope: String,
    /// Where in the scope: `annotations`, `config.Env`, `layers`,
    /// `layer 2 (ca-certificates)`, `packages`.
    pub location: String,
    /// The file, for file differences (absolute path in the image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The key, field or package name, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Value in A (`None`: absent).
    pub from: Option<String>,
    /// Value in B (`None`: absent).
    pub to: Option<String>,
    /// The one-line report.
    pub text: String,
}

impl Difference {
    pub fn new(kind: Kind, scope: &str, location: &str) -> Difference {
        let mut d = Difference {
            kind,
            scope: scope.into(),
            location: location.into(),
            path: None,
            field: None,
            from: None,
            to: None,
            text: String::new(),
        };
        d.render();
        d
    }

    pub fn path(mut self, path: String) -> Difference {
        self.path = Some(path);
        self.render();
        self
    }

    pub fn field(mut self, field: &str) -> Difference {
        self.field = Some(field.into());
        self.render();
        self
    }

    pub fn change(mut self, from: Option<String>, to: Option<String>) -> Difference {
        self.from = from;
        self.to = to;
        self.render();
        self
    }

    fn render(&mut self) {
        let none = "(none)";
        let f = self.from.as_deref().unwrap_or(none);
        let t = self.to.as_deref().unwrap_or(none);
        let p = self.path.as_deref().unwrap_or("");
        let field = self.field.as_deref().unwrap_or("");
        let entry = || match (&self.from, &self.to) {
            (None, Some(t)) => format!("+ {t}"),
            (Some(f), None) => format!("- {f}"),
            _ => format!("{f} → {t}"),
        };
        // Map entries: `+ K=v`, `- K=v`, `K: v → w`.
        let keyed = || match (&self.from, &self.to) {
            (None, Some(t)) => format!("+ {field}={t}"),
            (Some(f), None) => format!("- {field}={f}"),
            _ => format!("{field}: {f} → {t}"),
        };
        let body = match self.kind {
            Kind::Structure => format!("{f} → {t}"),
            Kind::PlatformAdded => format!("+ platform {t}"),
            Kind::PlatformRemoved => format!("- platform {f}"),
            Kind::PlatformOrder => format!("platform order {f} → {t}"),
            Kind::Annotation | Kind::ConfigEntry => keyed(),
            Kind::Field | Kind::ConfigField if !field.is_empty() => {
                format!("{field}: {}", entry())
            }
            Kind::Field | Kind::ConfigField => entry(),
            Kind::LayerOrder => format!("order {f} → {t}"),
            Kind::LayerAdded => format!("added ({t})"),
            Kind::LayerRemoved => format!("removed ({f})"),
            Kind::LayerCompression => {
                format!("same files, different compressed blob ({f} → {t})")
            }
            Kind::TarBytes => format!("same entries, different tar bytes ({f} → {t})"),
            Kind::EntryOrder => {
                format!("same entries in another order (first difference: {f} / {t})")
            }
            Kind::FileAdded => format!("+ {p} ({t})"),
            Kind::FileRemoved => format!("- {p} ({f})"),
            Kind::FileType => format!("{p}: type {f} → {t}"),
            Kind::FileContent => format!("{p}: content {f} → {t}"),
            Kind::FileMode => format!("{p}: mode {f} → {t}"),
            Kind::FileOwner => format!("{p}: owner {f} → {t}"),
            Kind::FileOwnerName => format!("{p}: owner names {f} → {t}"),
            Kind::FileMtime => format!("{p}: mtime {f} → {t}"),
            Kind::FileSymlink => format!("{p}: symlink target {f} → {t}"),
            Kind::FileHardlink => format!("{p}: hard link target {f} → {t}"),
            Kind::FileDevice => format!("{p}: device {f} → {t}"),
            Kind::FilePax => {
                let q = |v: &Option<String>| v.as_ref().map_or(none.into(), |v| format!("{v:?}"));
                format!("{p}: pax {field} {} → {}", q(&self.from), q(&self.to))
            }
            Kind::Package => match (&self.from, &self.to) {
                (None, Some(t)) => format!("+ {field} {t}"),
                (Some(f), None) => format!("- {field} {f}"),
                _ => format!("{field} {f} → {t}"),
            },
            Kind::Bytes => format!("bytes differ ({f} → {t}) and kiln cannot say more"),
        };
        self.text = if self.location.is_empty() {
            format!("{}: {body}", self.scope)
        } else {
            format!("{}: {}: {body}", self.scope, self.location)
        };
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// As given on the command line.
    pub image: String,
    /// Digest of the compared root (image index or manifest).
    pub digest: String,
    pub platforms: Vec<String>,
}

/// The result of [`diff`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub a: Side,
    pub b: Side,
    pub identical: bool,
    pub differences: Vec<Difference>,
    /// Layers whose contents were read and compared file by file.
    pub layers_read: usize,
}

/// A descriptor as found in a document.
#[derive(Debug, Clone)]
pub struct Desc {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub raw: Value,
}

impl Desc {
    fn parse(v: &Value, layout: &Path, what: &str) -> Result<Desc, DiffError> {
        let invalid = |m: String| DiffError::Invalid {
            layout: layout.to_path_buf(),
            message: format!("{what}: {m}"),
        };
        let media_type = v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("descriptor has no digest".into()))?;
        let digest = Digest::parse(digest).map_err(invalid)?;
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("descriptor has no size".into()))?;
        Ok(Desc {
            media_type,
            digest,
            size,
            raw: v.clone(),
        })
    }
}

/// One layer of a platform image.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub desc: Desc,
    /// From the config's `rootfs.diff_ids`.
    pub diff_id: Option<String>,
    /// The config's history entry for this layer, when history lines up.
    pub history: Option<Value>,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// `os/arch[/variant]`: how platforms are matched.
    pub key: String,
    /// How the platform is shown: `amd64`, `arm64`, `linux/s390x`...
    pub name: String,
    /// The descriptor in the index (none for a single-manifest root).
    pub descriptor: Option<Value>,
    pub manifest_desc: Desc,
    pub manifest: Value,
    pub config_desc: Desc,
    pub config: Value,
    pub layers: Vec<LayerRef>,
    /// Whether history entries were attached to layers.
    pub history_by_layer: bool,
}

/// An image opened for comparison: a layout and its root.
#[derive(Debug)]
pub struct Image {
    pub label: String,
    pub layout: Layout,
    /// Digest of the root (index blob, manifest, or index.json itself).
    pub digest: String,
    /// The root index document, when the root is an index.
    pub index: Option<Value>,
    pub platforms: Vec<PlatformImage>,
}

fn ref_name(d: &Value) -> Option<&str> {
    d.get("annotations")
        .and_then(|a| a.get(oci::REF_NAME))
        .and_then(Value::as_str)
}

use oci::{is_index, is_manifest};

/// Splits a layout reference (`DIR`, `DIR:TAG`, `oci:DIR[:TAG]`) as every
/// kiln command does (kiln_seed::imageref); `None` when it is not one.
pub fn parse_reference(spec: &str) -> Option<(PathBuf, Option<String>)> {
    match kiln_seed::imageref::ImageRef::parse(spec) {
        Ok(kiln_seed::imageref::ImageRef::Layout { dir, name }) => Some((dir, name)),
        _ => None,
    }
}

impl Image {
    /// Opens `DIR` or `DIR:TAG`. Without a tag, the layout's only image is
    /// compared, or its only image index (kiln's multi-platform layouts also
    /// list each platform's manifest under `<tag>-<arch>`), or every
    /// manifest of index.json as one index.
    pub fn open(spec: &str) -> Result<Image, DiffError> {
        let Some((dir, tag)) = parse_reference(spec) else {
            return Err(DiffError::NotALayout(spec.into()));
        };
        let layout = Layout::open(&dir)?;
        let top: Value = serde_json::to_value(layout.index()).expect("index serializes");
        let entries: Vec<Value> = top["manifests"].as_array().cloned().unwrap_or_default();
        let tags = || {
            let t: Vec<&str> = entries.iter().filter_map(ref_name).collect();
            if t.is_empty() {
                "none".into()
            } else {
                t.join(", ")
            }
        };
        let root = match &tag {
            // A name leads to one entry or to none, as for every kiln command.
            Some(t) => match kiln_seed::imageref::resolve_layout(layout.index(), Some(t)) {
                Ok(d) => Some(serde_json::to_value(&d).expect("descriptor serializes")),
                Err(kiln_seed::imageref::ResolveError::NoSuchName { .. }) => {
                    return Err(DiffError::NoTag {
                        layout: dir.clone(),
                        tag: t.clone(),
                        known: tags(),
                    })
                }
                Err(e) => {
                    return Err(DiffError::Invalid {
                        layout: dir.clone(),
                        message: e.to_string(),
                    })
                }
            },
            None if entries.len() == 1 => Some(entries[0].clone()),
            None => {
                let indexes: Vec<&Value> = entries
                    .iter()
                    .filter(|d| is_index(d["mediaType"].as_str().unwrap_or_default()))
                    .collect();
                if indexes.len() == 1 {
                    Some(indexes[0].clone())
                } else if indexes.is_empty() && entries.iter().all(|d| d.get("platform").is_some())
                {
                    None
                } else {
                    return Err(DiffError::Ambiguous {
                        layout: dir.clone(),
                        known: tags(),
                    });
                }
            }
        };
        let mut image = Image {
            label: spec.into(),
            layout,
            digest: String::new(),
            index: None,
            platforms: Vec::new(),
        };
        match root {
            None => {
                let bytes =
                    std::fs::read(dir.join("index.json")).map_err(|e| DiffError::Invalid {
                        layout: dir.clone(),
                        message: format!("reading index.json: {e}"),
                    })?;
                image.digest = Digest::of(&bytes).to_string();
                image.load_index(top)?;
            }
            Some(d) => {
                let desc = Desc::parse(&d, &dir, "index.json")?;
                image.digest = desc.digest.to_string();
                if is_index(&desc.media_type) {
                    let doc = image.document(&desc)?;
                    image.load_index(doc)?;
                } else if is_manifest(&desc.media_type) {
                    let p = image.platform(&desc, None)?;
                    image.platforms.push(p);
                } else {
                    return Err(image.invalid(format!(
                        "{} has media type {:?}, not an image index or manifest",
                        desc.digest, desc.media_type
                    )));
                }
            }
        }
        Ok(image)
    }

    fn invalid(&self, message: String) -> DiffError {
        DiffError::Invalid {
            layout: self.layout.root().to_path_buf(),
            message,
        }
    }

    /// A JSON document blob, verified against its descriptor.
    fn document(&self, desc: &Desc) -> Result<Value, DiffError> {
        let bytes =
            self.layout
                .read_blob(&oci::descriptor(&desc.media_type, &desc.digest, desc.size))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.invalid(format!("blob {} is not JSON: {e}", desc.digest)))
    }

    fn load_index(&mut self, doc: Value) -> Result<(), DiffError> {
        let root = self.layout.root().to_path_buf();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for d in doc["manifests"].as_array().into_iter().flatten() {
            let desc = Desc::parse(d, &root, "image index")?;
            if !is_manifest(&desc.media_type) {
                // Nested indexes are not platform images; compared as fields.
                continue;
            }
            let mut p = self.platform(&desc, Some(d.clone()))?;
            let n = seen.entry(p.key.clone()).or_default();
            *n += 1;
            if *n > 1 {
                p.key = format!("{}#{n}", p.key);
                p.name = format!("{}#{n}", p.name);
            }
            self.platforms.push(p);
        }
        self.index = Some(doc);
        Ok(())
    }

    fn platform(
        &self,
        desc: &Desc,
        index_entry: Option<Value>,
    ) -> Result<PlatformImage, DiffError> {
        let root = self.layout.root().to_path_buf();
        let manifest = self.document(desc)?;
        let config_desc = Desc::parse(&manifest["config"], &root, "manifest config")?;
        let config = self.document(&config_desc)?;
        let platform = index_entry
            .as_ref()
            .and_then(|d| d.get("platform"))
            .cloned()
            .unwrap_or_else(|| config.clone());
        let s = |k: &str| {
            platform
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (os, arch, variant) = (s("os"), s("architecture"), s("variant"));
        let mut key = format!("{os}/{arch}");
        if !variant.is_empty() {
            key.push('/');
            key.push_str(&variant);
        }
        let mut name = if os == "linux" {
            arch.clone()
        } else {
            format!("{os}/{arch}")
        };
        if !(variant.is_empty() || arch == "arm64" && variant == "v8") {
            name = format!("{name}/{variant}");
        }
        let descs: Vec<Desc> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| Desc::parse(l, &root, "manifest layer"))
            .collect::<Result<_, _>>()?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        let history = config::layer_history(&config, descs.len());
        let history_by_layer = history.is_some();
        let layered = history.map(|(l, _)| l).unwrap_or_default();
        let layers = descs
            .into_iter()
            .enumerate()
            .map(|(i, desc)| LayerRef {
                desc,
                diff_id: diff_ids.get(i).cloned(),
                history: layered.get(i).cloned(),
            })
            .collect();
        Ok(PlatformImage {
            key,
            name,
            descriptor: index_entry,
            manifest_desc: desc.clone(),
            manifest,
            config_desc,
            config,
            layers,
            history_by_layer,
        })
    }

    /// Reads one layer in full, checking its blob digest and its diff_id.
    pub fn read_layer(&self, l: &LayerRef) -> Result<LayerContent, DiffError> {
        let err = |source| DiffError::Layer {
            layout: self.layout.root().to_path_buf(),
            digest: l.desc.digest.to_string(),
            source,
        };
        self.layout.verify_blob(&oci::descriptor(
            &l.desc.media_type,
            &l.desc.digest,
            l.desc.size,
        ))?;
        let f = std::fs::File::open(self.layout.blob_path(&l.desc.digest))
            .map_err(|e| err(layer::LayerError::Read(e)))?;
        let content = layer::read(&l.desc.media_type, f).map_err(err)?;
        if let (Some(expected), Some(actual)) = (&l.diff_id, &content.diff_id) {
            if *expected != actual.to_string() {
                return Err(self.invalid(format!(
                    "layer {} uncompresses to {actual}, but the config's diff_id is {expected}",
                    l.desc.digest
                )));
            }
        }
        Ok(content)
    }

    fn platform_names(&self) -> Vec<String> {
        self.platforms.iter().map(|p| p.name.clone()).collect()
    }
}

fn show_json(v: Option<&Value>) -> Option<String> {
    v.map(config::show)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect()
}

/// Every field of two documents except `skip`, compared whole.
fn diff_fields(
    a: &Value,
    b: &Value,
    skip: &[&str],
    scope: &str,
    prefix: &str,
    out: &mut Vec<Difference>,
) {
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for v in [a, b] {
        keys.extend(v.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
    }
    for k in keys {
        if skip.contains(&k.as_str()) {
            continue;
        }
        if a.get(&k) != b.get(&k) {
            out.push(
                Difference::new(Kind::Field, scope, &format!("{prefix}{k}"))
                    .change(show_json(a.get(&k)), show_json(b.get(&k))),
            );
        }
    }
}

/// Compares two opened images.
pub fn diff(a: &Image, b: &Image) -> Result<Report, DiffError> {
    let mut report = Report {
        a: Side {
            image: a.label.clone(),
            digest: a.digest.clone(),
            platforms: a.platform_names(),
        },
        b: Side {
            image: b.label.clone(),
            digest: b.digest.clone(),
            platforms: b.platform_names(),
        },
        identical: a.digest == b.digest,
        differences: Vec::new(),
        layers_read: 0,
    };
    if report.identical {
        return Ok(report);
    }
    let out = &mut report.differences;
    match (&a.index, &b.index) {
        (Some(ia), Some(ib)) => {
            diff_fields(
                ia,
                ib,
                &["manifests", "annotations", "schemaVersion"],
                "index",
                "",
                out,
            );
            config::diff_map(
                &string_map(ia.get("annotations")),
                &string_map(ib.get("annotations")),
                Kind::Annotation,
                "index",
                "annotations",
                out,
            );
        }
        (None, None) => {}
        (x, y) => {
            let what = |i: &Option<Value>| {
                Some(
                    if i.is_some() {
                        "image index"
                    } else {
                        "single manifest"
                    }
                    .to_string(),
                )
            };
            out.push(Difference::new(Kind::Structure, "index", "").change(what(x), what(y)));
        }
    }
    let keys_a: Vec<&str> = a.platforms.iter().map(|p| p.key.as_str()).collect();
    let keys_b: Vec<&str> = b.platforms.iter().map(|p| p.key.as_str()).collect();
    for p in &a.platforms {
        if !keys_b.contains(&p.key.as_str()) {
            out.push(
                Difference::new(Kind::PlatformRemoved, "index", "")
                    .change(Some(p.name.clone()), None),
            );
        }
    }
    for p in &b.platforms {
        if !keys_a.contains(&p.key.as_str()) {
            out.push(
                Difference::new(Kind::PlatformAdded, "index", "")
                    .change(None, Some(p.name.clone())),
            );
        }
    }
    let common_a: Vec<&PlatformImage> = a
        .platforms
        .iter()
        .filter(|p| keys_b.contains(&p.key.as_str()))
        .collect();
    let common_b: Vec<&PlatformImage> = b
        .platforms
        .iter()
        .filter(|p| keys_a.contains(&p.key.as_str()))
        .collect();
    let order = |ps: &[&PlatformImage]| {
        ps.iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if common_a
        .iter()
        .map(|p| &p.key)
        .ne(common_b.iter().map(|p| &p.key))
    {
        out.push(
            Difference::new(Kind::PlatformOrder, "index", "")
                .change(Some(order(&common_a)), Some(order(&common_b))),
        );
    }
    let mut layers_read = 0;
    for pa in &common_a {
        let pb = common_b
            .iter()
            .find(|p| p.key == pa.key)
            .expect("common platform");
        if let (Some(da), Some(db)) = (&pa.descriptor, &pb.descriptor) {
            config::diff_map(
                &string_map(da.get("annotations")),
                &string_map(db.get("annotations")),
                Kind::Annotation,
                &pa.name,
                "index descriptor annotations",
                out,
            );
            let strip = |d: &Value| {
                let mut d = d.clone();
                if let Some(o) = d.as_object_mut() {
                    for k in ["digest", "size", "annotations"] {
                        o.remove(k);
                    }
                }
                d
            };
            diff_fields(
                &strip(da),
                &strip(db),
                &[],
                &pa.name,
                "index descriptor ",
                out,
            );
        }
        if pa.manifest_desc.digest != pb.manifest_desc.digest {
            layers_read += diff_platform(a, pa, b, pb, out)?;
        }
    }
    if out.is_empty() {
        out.push(
            Difference::new(Kind::Bytes, "index", "")
                .change(Some(a.digest.clone()), Some(b.digest.clone())),
        );
    }
    report.layers_read = layers_read;
    report.identical = report.differences.is_empty();
    Ok(report)
}

/// How a layer is named in reports: its packages, else what its history
/// entry says it is.
fn layer_name(l: &LayerRef, content: Option<&LayerContent>) -> String {
    if let Some(c) = content.filter(|c| !c.packages.is_empty()) {
        return short_list(c.packages.keys().cloned().collect());
    }
    let created_by = l
        .history
        .as_ref()
        .and_then(|h| h.get("created_by"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = created_by.strip_prefix("kiln: ").unwrap_or(created_by);
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if !tokens.is_empty() && tokens.iter().all(|t| t.contains('=')) {
        return short_list(
            tokens
                .iter()
                .map(|t| t.split('=').next().unwrap_or("").to_string())
                .collect(),
        );
    }
    let mut s: String = text.chars().take(48).collect();
    if text.chars().count() > 48 {
        s.push('…');
    }
    s
}

fn short_list(mut names: Vec<String>) -> String {
    names.sort();
    if names.len() <= 3 {
        names.join(", ")
    } else {
        format!("{}, … ({} packages)", names[..2].join(", "), names.len())
    }
}

fn layer_label(pos_a: Option<usize>, pos_b: Option<usize>, name: &str) -> String {
    let pos = match (pos_a, pos_b) {
        (Some(x), Some(y)) if x != y => format!("{}→{}", x + 1, y + 1),
        (_, Some(y)) => format!("{}", y + 1),
        (Some(x), None) => format!("{}", x + 1),
        (None, None) => "?".into(),
    };
    if name.is_empty() {
        format!("layer {pos}")
    } else {
        format!("layer {pos} ({name})")
    }
}

fn same_content(x: &LayerRef, y: &LayerRef) -> bool {
    x.desc.digest == y.desc.digest || (x.diff_id.is_some() && x.diff_id == y.diff_id)
}

/// One platform: manifest fields, config, layers, files, packages.
/// Returns how many layers were read.
// The pairing walks two index-linked tables (pair_a, pair_b) at once.
#[allow(clippy::needless_range_loop)]
fn diff_platform(
    a: &Image,
    pa: &PlatformImage,
    b: &Image,
    pb: &PlatformImage,
    out: &mut Vec<Difference>,
) -> Result<usize, DiffError> {
    let scope = pa.name.as_str();
    let before = out.len();
    diff_fields(
        &pa.manifest,
        &pb.manifest,
        &["config", "layers", "annotations", "schemaVersion"],
        scope,
        "manifest ",
        out,
    );
    if pa.manifest["config"]["mediaType"] != pb.manifest["config"]["mediaType"] {
        out.push(
            Difference::new(Kind::Field, scope, "manifest config.mediaType").change(
                show_json(pa.manifest["config"].get("mediaType")),
                show_json(pb.manifest["config"].get("mediaType")),
            ),
        );
    }
    config::diff_map(
        &string_map(pa.manifest.get("annotations")),
        &string_map(pb.manifest.get("annotations")),
        Kind::Annotation,
        scope,
        "annotations",
        out,
    );
    let by_layer = pa.history_by_layer && pb.history_by_layer;
    if pa.config_desc.digest != pb.config_desc.digest {
        config::diff_config(&pa.config, &pb.config, by_layer, scope, out);
    }

    // Layers: pair them by content, then by name, then by shared files.
    let (la, lb) = (&pa.layers, &pb.layers);
    let mut pair_a: Vec<Option<usize>> = vec![None; la.len()];
    let mut pair_b: Vec<Option<usize>> = vec![None; lb.len()];
    for i in 0..la.len().min(lb.len()) {
        if same_content(&la[i], &lb[i]) {
            pair_a[i] = Some(i);
            pair_b[i] = Some(i);
        }
    }
    for i in 0..la.len() {
        if pair_a[i].is_some() {
            continue;
        }
        if let Some(j) =
            (0..lb.len()).find(|&j| pair_b[j].is_none() && same_content(&la[i], &lb[j]))
        {
            pair_a[i] = Some(j);
            pair_b[j] = Some(i);
        }
    }
    let content_matched: BTreeSet<usize> = (0..la.len()).filter(|&i| pair_a[i].is_some()).collect();
    let mut ca: BTreeMap<usize, LayerContent> = BTreeMap::new();
    let mut cb: BTreeMap<usize, LayerContent> = BTreeMap::new();
    for (i, l) in la.iter().enumerate() {
        if pair_a[i].is_none() {
            ca.insert(i, a.read_layer(l)?);
        }
    }
    for (j, l) in lb.iter().enumerate() {
        if pair_b[j].is_none() {
            cb.insert(j, b.read_layer(l)?);
        }
    }
    let read = ca.len() + cb.len();
    let name_a = |i: usize| layer_name(&la[i], ca.get(&i));
    let name_b = |j: usize| layer_name(&lb[j], cb.get(&j));
    for i in 0..la.len() {
        if pair_a[i].is_some() || name_a(i).is_empty() {
            continue;
        }
        if let Some(j) = (0..lb.len()).find(|&j| pair_b[j].is_none() && name_b(j) == name_a(i)) {
            pair_a[i] = Some(j);
            pair_b[j] = Some(i);
        }
    }
    for i in 0..la.len() {
        if pair_a[i].is_some() {
            continue;
        }
        // Directories (/etc, /usr) are in almost every layer: only files
        // and links say two layers are versions of each other. Layers of
        // two disjoint package sets are different layers, whatever they share.
        let shared = |j: usize| {
            ca[&i]
                .entries
                .iter()
                .filter(|(p, e)| {
                    e.kind != layer::FileKind::Directory
                        && cb[&j]
                            .entries
                            .get(*p)
                            .is_some_and(|f| f.kind != layer::FileKind::Directory)
                })
                .count()
        };
        let disjoint = |j: usize| {
            let (x, y) = (&ca[&i].packages, &cb[&j].packages);
            !x.is_empty() && !y.is_empty() && x.keys().all(|k| !y.contains_key(k))
        };
        let best = (0..lb.len())
            .filter(|&j| pair_b[j].is_none() && !disjoint(j))
            .map(|j| (shared(j), std::cmp::Reverse(j)))
            .filter(|(n, _)| *n > 0)
            .max();
        if let Some((_, std::cmp::Reverse(j))) = best {
            pair_a[i] = Some(j);
            pair_b[j] = Some(i);
        }
    }

    // Order: paired layers must keep their relative order.
    let pairs: Vec<(usize, usize)> = (0..la.len())
        .filter_map(|i| pair_a[i].map(|j| (i, j)))
        .collect();
    if pairs.windows(2).any(|w| w[0].1 > w[1].1) {
        let mut by_b = pairs.clone();
        by_b.sort_by_key(|&(_, j)| j);
        let list = |ps: &[(usize, usize)], side_b: bool| {
            ps.iter()
                .enumerate()
                .map(|(k, &(i, j))| {
                    let n = if side_b { name_b(j) } else { name_a(i) };
                    if n.is_empty() {
                        format!("{}", k + 1)
                    } else {
                        format!("{} {n}", k + 1)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(
            Difference::new(Kind::LayerOrder, scope, "layers")
                .change(Some(list(&pairs, false)), Some(list(&by_b, true))),
        );
    }

    let mut pkgs_a: BTreeMap<String, String> = BTreeMap::new();
    let mut pkgs_b: BTreeMap<String, String> = BTreeMap::new();
    // Layers of the same content hold the same packages on both sides;
    // only the layers that were read can disagree.
    for c in ca.values() {
        pkgs_a.extend(c.packages.clone());
    }
    for c in cb.values() {
        pkgs_b.extend(c.packages.clone());
    }

    // Reported in B's layer order (removed layers where they were in A).
    let mut groups: Vec<(usize, Vec<Difference>)> = Vec::new();
    for i in 0..la.len() {
        let mut g = Vec::new();
        let Some(j) = pair_a[i] else {
            let c = &ca[&i];
            g.push(
                Difference::new(
                    Kind::LayerRemoved,
                    scope,
                    &layer_label(Some(i), None, &name_a(i)),
                )
                .change(Some(layer_summary(&la[i], c)), None),
            );
            groups.push((i, g));
            continue;
        };
        let label = layer_label(Some(i), Some(j), &name_b(j));
        if content_matched.contains(&i) {
            if la[i].desc.digest != lb[j].desc.digest {
                g.push(
                    Difference::new(Kind::LayerCompression, scope, &label).change(
                        Some(la[i].desc.digest.to_string()),
                        Some(lb[j].desc.digest.to_string()),
                    ),
                );
            }
        } else {
            let found = layer::diff_entries(&ca[&i], &cb[&j], scope, &label);
            if found.is_empty() {
                g.push(Difference::new(Kind::TarBytes, scope, &label).change(
                    ca[&i].diff_id.map(|d| d.to_string()),
                    cb[&j].diff_id.map(|d| d.to_string()),
                ));
            }
            g.extend(found);
        }
        if by_layer {
            config::diff_history(
                la[i].history.as_ref(),
                lb[j].history.as_ref(),
                scope,
                &label,
                "history.",
                &mut g,
            );
        }
        if la[i].desc.media_type != lb[j].desc.media_type {
            g.push(
                Difference::new(Kind::Field, scope, &format!("{label}: mediaType")).change(
                    Some(la[i].desc.media_type.clone()),
                    Some(lb[j].desc.media_type.clone()),
                ),
            );
        }
        groups.push((j, g));
    }
    for j in 0..lb.len() {
        if pair_b[j].is_none() {
            let added = Difference::new(
                Kind::LayerAdded,
                scope,
                &layer_label(None, Some(j), &name_b(j)),
            )
            .change(None, Some(layer_summary(&lb[j], &cb[&j])));
            groups.push((j, vec![added]));
        }
    }
    groups.sort_by_key(|(pos, _)| *pos);
    out.extend(groups.into_iter().flat_map(|(_, g)| g));

    let mut names: BTreeSet<&String> = pkgs_a.keys().collect();
    names.extend(pkgs_b.keys());
    for n in names {
        let (x, y) = (pkgs_a.get(n), pkgs_b.get(n));
        if x != y {
            out.push(
                Difference::new(Kind::Package, scope, "packages")
                    .field(n)
                    .change(x.cloned(), y.cloned()),
            );
        }
    }

    if out.len() == before {
        out.push(Difference::new(Kind::Bytes, scope, "manifest").change(
            Some(pa.manifest_desc.digest.to_string()),
            Some(pb.manifest_desc.digest.to_string()),
        ));
    }
    Ok(read)
}

fn layer_summary(l: &LayerRef, c: &LayerContent) -> String {
    let mut s = format!("{} entries, {}", c.entries.len(), l.desc.digest);
    if !c.packages.is_empty() {
        let p: Vec<String> = c.packages.iter().map(|(n, v)| format!("{n} {v}")).collect();
        s.push_str(&format!(", packages {}", p.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests;
