//! OCI image layouts: descriptors, image config / manifest / index documents,
//! writing a layout and reading one back with every blob verified.
//!
//! The document types are oci-spec's, but nothing here serializes them with
//! serde directly: their annotations and labels are `HashMap`s, whose order
//! changes from run to run (19 different digests were measured in 20 builds).
//! Every document goes through [`crate::json`], which routes it through
//! `serde_json::Value` and so sorts every map.
//!
//! The reader ([`Layout`]) is meant for every tool that consumes a layout
//! (the index step, the verifier, the driver): it never hands out a blob it
//! has not checked against its descriptor's digest and size.

pub mod layout_source;
pub mod source;
pub mod tree;

pub use layout_source::LayoutSource;
pub use source::{Source, SourceError};

use crate::digest::{Digest, DigestWriter};
use crate::json;
use crate::spec::Arch;
use oci_spec::image::{
    Arch as OciArch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
    Platform, PlatformBuilder,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub use crate::layerinfo::LAYER_MEDIA_TYPE;

/// The annotation that names a manifest in a layout's `index.json` (the
/// `:tag` in `oci:DIR:tag`). It belongs in `index.json` only, never in a
/// manifest or image index blob.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `imageLayoutVersion` written to and accepted in `oci-layout`.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// JSON documents (manifests, indexes, configs) larger than this are refused
/// before they are read: registries cap manifests at 4 MiB, and a reader
/// must not be made to allocate whatever a descriptor claims.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("layout {}: blob {digest}: {message}", layout.display())]
    Blob {
        layout: PathBuf,
        digest: String,
        message: String,
    },
    #[error("{} already exists (refusing to write over it)", .0.display())]
    Exists(PathBuf),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Formats epoch seconds as RFC 3339 UTC (`2026-07-11T10:16:37Z`), the form
/// OCI `created` fields, SPDX and CycloneDX timestamps use. No clock is read:
/// the time always comes from the lock.
pub fn rfc3339(epoch: u64) -> String {
    crate::date::rfc3339(epoch as i64)
}

/// oci-spec's digest type for one of ours (always valid: ours is sha256 hex).
pub fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a sha256 digest is a valid OCI digest")
}

/// Our digest for oci-spec's; only sha256 is accepted (kiln writes nothing else).
pub fn kiln_digest(d: &oci_spec::image::Digest) -> Result<Digest, String> {
    Digest::parse(d.as_ref())
}

/// A descriptor of `size` bytes with digest `digest`.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, oci_digest(digest))
}

/// The descriptor of `bytes`.
pub fn descriptor_of(media_type: &str, bytes: &[u8]) -> Descriptor {
    descriptor(media_type, &Digest::of(bytes), bytes.len() as u64)
}

/// Sets `annotations` on a descriptor (`None` when empty, so that the field
/// is left out rather than written as `{}`).
pub fn set_annotations(desc: &mut Descriptor, annotations: &BTreeMap<String, String>) {
    let map: HashMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    desc.set_annotations(if map.is_empty() { None } else { Some(map) });
}

/// Runs `fill` to create the output directory `out`, which must not exist
/// yet; if it fails, whatever it left at `out` is removed, so that a failed
/// step never leaves a half-written output behind.
pub fn fresh_output<T, E: From<Error>>(
    out: &Path,
    fill: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if out.symlink_metadata().is_ok() {
        return Err(Error::Exists(out.to_path_buf()).into());
    }
    let result = fill();
    if result.is_err() {
        let _ = fs::remove_dir_all(out);
    }
    result
}

/// The OCI platform of a kiln architecture (`linux`, with `v8` for arm64).
pub fn platform(arch: Arch) -> Platform {
    let mut b = PlatformBuilder::default()
        .architecture(OciArch::from(arch.debian()))
        .os(Os::Linux);
    if let Some(v) = arch.oci_variant() {
        b = b.variant(v);
    }
    b.build().expect("architecture and os are set")
}

/// Canonical bytes of an OCI document: sorted keys, no whitespace. What gets
/// hashed and stored as a blob.
pub fn document_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    json::canonical(doc)
}

/// The `oci-layout` file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

/// Writes an OCI image layout into a new directory.
pub struct LayoutWriter {
    root: PathBuf,
}

impl LayoutWriter {
    /// Creates `root` (which must not exist yet) with `oci-layout` and an
    /// empty `blobs/sha256/`.
    pub fn create(root: &Path) -> Result<LayoutWriter, Error> {
        if root.symlink_metadata().is_ok() {
            return Err(Error::Exists(root.to_path_buf()));
        }
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io_err("creating", root))?;
        let w = LayoutWriter {
            root: root.to_path_buf(),
        };
        w.write_file(
            "oci-layout",
            &json::canonical(&OciLayoutFile {
                image_layout_version: LAYOUT_VERSION.into(),
            }),
        )?;
        Ok(w)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Writes a file at `rel` (relative to the layout root), creating parents.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::write(&path, bytes).map_err(io_err("writing", &path))?;
        Ok(path)
    }

    /// Stores `bytes` as a blob (once: a blob already present has the same
    /// content by construction) and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            fs::write(&path, bytes).map_err(io_err("writing", &path))?;
        }
        Ok(digest)
    }

    /// Stores the canonical JSON of `doc` as a blob and returns its descriptor
    /// and bytes.
    pub fn put_document<T: Serialize>(
        &self,
        media_type: &str,
        doc: &T,
    ) -> Result<(Descriptor, Vec<u8>), Error> {
        let bytes = document_bytes(doc);
        self.put_blob(&bytes)?;
        Ok((descriptor_of(media_type, &bytes), bytes))
    }

    /// Copies the file `src` into the layout as the blob `digest`, checking
    /// size and digest on the way; a mismatch leaves nothing behind. `what`
    /// names the source in errors (a layer directory, a layout).
    pub fn copy_blob(
        &self,
        src: &Path,
        digest: &Digest,
        size: u64,
        what: &str,
    ) -> Result<(), Error> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            // Not copied again, but still verified: a tampered copy of a
            // shared blob is reported even though it would not be used.
            return copy_verified(src, None, digest, size, what);
        }
        let tmp = self
            .root
            .join("blobs/sha256")
            .join(format!(".partial-{}", digest.hex()));
        let result = copy_verified(src, Some(&tmp), digest, size, what);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
            return result;
        }
        fs::rename(&tmp, &dest).map_err(io_err("renaming", &tmp))
    }

    /// Writes `index.json` listing `manifests`.
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> Result<(), Error> {
        let index = new_index(manifests, &BTreeMap::new());
        self.write_file("index.json", &json::pretty(&index))?;
        Ok(())
    }
}

/// Streams `src` into `tmp` (or nowhere), checking its size and digest.
fn copy_verified(
    src: &Path,
    tmp: Option<&Path>,
    digest: &Digest,
    size: u64,
    what: &str,
) -> Result<(), Error> {
    let meta = fs::metadata(src).map_err(io_err("reading", src))?;
    if !meta.is_file() {
        return Err(Error::Invalid {
            path: src.to_path_buf(),
            message: "is not a regular file".into(),
        });
    }
    if meta.len() != size {
        return Err(Error::Invalid {
            path: src.to_path_buf(),
            message: format!(
                "{what}: blob {digest} should be {size} bytes but is {}",
                meta.len()
            ),
        });
    }
    let input = fs::File::open(src).map_err(io_err("reading", src))?;
    let output: Box<dyn Write> = match tmp {
        Some(tmp) => Box::new(io::BufWriter::new(
            fs::File::create(tmp).map_err(io_err("writing", tmp))?,
        )),
        None => Box::new(io::sink()),
    };
    let mut w = DigestWriter::new(output);
    io::copy(&mut io::BufReader::new(input).take(size + 1), &mut w)
        .map_err(io_err("copying", src))?;
    let (mut buf, actual, n) = w.into_parts();
    buf.flush().map_err(io_err("writing", tmp.unwrap_or(src)))?;
    if n != size || actual != *digest {
        return Err(Error::Invalid {
            path: src.to_path_buf(),
            message: format!("{what}: content does not match its digest: expected {digest} ({size} bytes), got {actual} ({n} bytes)"),
        });
    }
    Ok(())
}

/// An image index (`schemaVersion` 2, with its `mediaType`).
pub fn new_index(manifests: Vec<Descriptor>, annotations: &BTreeMap<String, String>) -> ImageIndex {
    let mut b = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests);
    if !annotations.is_empty() {
        b = b.annotations(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    b.build().expect("all required index fields are set")
}

/// An image manifest (`schemaVersion` 2, with its `mediaType`).
pub fn new_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> ImageManifest {
    let mut b = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers);
    if !annotations.is_empty() {
        b = b.annotations(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    b.build().expect("all required manifest fields are set")
}

/// An OCI image layout opened for reading. Everything it returns from a blob
/// has been checked against the descriptor that named it.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    index: ImageIndex,
}

/// A blob reachable from a layout's `index.json`, as found by [`Layout::walk`].
#[derive(Debug, Clone)]
pub struct Reachable {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Layout {
    /// Opens the layout at `root`: `oci-layout` must declare version 1.0.0
    /// and `index.json` must parse as an image index.
    pub fn open(root: &Path) -> Result<Layout, Error> {
        let layout_path = root.join("oci-layout");
        let bytes = read_small(&layout_path)?;
        let header: OciLayoutFile = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            path: layout_path.clone(),
            message: format!("not an oci-layout file: {e}"),
        })?;
        if header.image_layout_version != LAYOUT_VERSION {
            return Err(Error::Invalid {
                path: layout_path,
                message: format!(
                    "imageLayoutVersion {:?} is not {LAYOUT_VERSION:?}",
                    header.image_layout_version
                ),
            });
        }
        let index_path = root.join("index.json");
        let bytes = read_small(&index_path)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            path: index_path.clone(),
            message: format!("not an OCI image index: {e}"),
        })?;
        check_schema_version(index.schema_version(), &index_path)?;
        Ok(Layout {
            root: root.to_path_buf(),
            index,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// The one descriptor in `index.json` named `name`; none when no entry
    /// or more than one carries the name (a name leads to one entry or to
    /// none, as [`crate::imageref::resolve_layout`] has it).
    pub fn find(&self, name: &str) -> Option<&Descriptor> {
        match crate::imageref::named(&self.index, name).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn blob_error(&self, desc: &Descriptor, message: impl Into<String>) -> Error {
        Error::Blob {
            layout: self.root.clone(),
            digest: desc.digest().to_string(),
            message: message.into(),
        }
    }

    fn digest_of(&self, desc: &Descriptor) -> Result<Digest, Error> {
        kiln_digest(desc.digest()).map_err(|m| self.blob_error(desc, m))
    }

    /// Streams the blob `desc` names and checks its size and digest.
    pub fn verify_blob(&self, desc: &Descriptor) -> Result<(), Error> {
        let digest = self.digest_of(desc)?;
        let path = self.blob_path(&digest);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| self.blob_error(desc, format!("missing: {e}")))?;
        if !meta.is_file() {
            return Err(self.blob_error(desc, "is not a regular file"));
        }
        if meta.len() != desc.size() {
            return Err(self.blob_error(
                desc,
                format!(
                    "is {} bytes, its descriptor says {}",
                    meta.len(),
                    desc.size()
                ),
            ));
        }
        let f = fs::File::open(&path).map_err(io_err("reading", &path))?;
        let (actual, _) =
            Digest::of_reader(io::BufReader::new(f)).map_err(io_err("reading", &path))?;
        if actual != digest {
            return Err(self.blob_error(
                desc,
                format!("content does not match its digest (it hashes to {actual})"),
            ));
        }
        Ok(())
    }

    /// Reads a JSON document blob (at most [`MAX_DOCUMENT_SIZE`] bytes) and
    /// checks its size and digest.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, Error> {
        let digest = self.digest_of(desc)?;
        if desc.size() > MAX_DOCUMENT_SIZE {
            return Err(self.blob_error(
                desc,
                format!("{} bytes is too large for a document", desc.size()),
            ));
        }
        read_checked(&self.blob_path(&digest), &digest, desc.size())
            .map_err(|m| self.blob_error(desc, m))
    }

    fn read_document<T: serde::de::DeserializeOwned>(
        &self,
        desc: &Descriptor,
        expected: &str,
        what: &str,
    ) -> Result<T, Error> {
        if desc.media_type().as_ref() != expected {
            return Err(self.blob_error(
                desc,
                format!(
                    "media type {} where {what} ({expected}) was expected",
                    desc.media_type()
                ),
            ));
        }
        let bytes = self.read_blob(desc)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.blob_error(desc, format!("is not JSON: {e}")))?;
        if let Some(mt) = value.get("mediaType").and_then(|v| v.as_str()) {
            if mt != expected {
                return Err(self.blob_error(
                    desc,
                    format!("declares mediaType {mt}, its descriptor says {expected}"),
                ));
            }
        }
        serde_json::from_value(value)
            .map_err(|e| self.blob_error(desc, format!("is not a valid {what}: {e}")))
    }

    /// Reads and verifies an image manifest.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<ImageManifest, Error> {
        let m: ImageManifest =
            self.read_document(desc, MANIFEST_MEDIA_TYPE, "an image manifest")?;
        check_schema_version(m.schema_version(), &self.blob_path(&self.digest_of(desc)?))?;
        Ok(m)
    }

    /// Reads and verifies an image index blob.
    pub fn read_image_index(&self, desc: &Descriptor) -> Result<ImageIndex, Error> {
        let i: ImageIndex = self.read_document(desc, INDEX_MEDIA_TYPE, "an image index")?;
        check_schema_version(i.schema_version(), &self.blob_path(&self.digest_of(desc)?))?;
        Ok(i)
    }

    /// Reads and verifies an image config.
    pub fn read_config(&self, desc: &Descriptor) -> Result<ImageConfiguration, Error> {
        self.read_document(desc, CONFIG_MEDIA_TYPE, "an image config")
    }

    /// Verifies every blob reachable from `index.json` (indexes, manifests,
    /// configs, layers) and returns them, each once, in the order reached.
    pub fn walk(&self) -> Result<Vec<Reachable>, Error> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for d in self.index.manifests() {
            self.walk_one(d, &mut seen, &mut out, 0)?;
        }
        Ok(out)
    }

    fn walk_one(
        &self,
        desc: &Descriptor,
        seen: &mut BTreeSet<Digest>,
        out: &mut Vec<Reachable>,
        depth: u32,
    ) -> Result<(), Error> {
        let digest = self.digest_of(desc)?;
        if !seen.insert(digest) {
            return Ok(());
        }
        // Nested indexes are legal but a cycle of them cannot be (digests
        // would have to collide); the bound keeps a crafted layout finite.
        if depth > 8 {
            return Err(self.blob_error(desc, "image indexes are nested too deeply"));
        }
        let reach = Reachable {
            digest,
            size: desc.size(),
            media_type: desc.media_type().to_string(),
        };
        match desc.media_type().as_ref() {
            INDEX_MEDIA_TYPE => {
                let index = self.read_image_index(desc)?;
                out.push(reach);
                for d in index.manifests() {
                    self.walk_one(d, seen, out, depth + 1)?;
                }
            }
            MANIFEST_MEDIA_TYPE => {
                let m = self.read_manifest(desc)?;
                out.push(reach);
                self.read_config(m.config())?;
                if seen.insert(self.digest_of(m.config())?) {
                    out.push(Reachable {
                        digest: self.digest_of(m.config())?,
                        size: m.config().size(),
                        media_type: CONFIG_MEDIA_TYPE.into(),
                    });
                }
                for l in m.layers() {
                    let d = self.digest_of(l)?;
                    if seen.insert(d) {
                        self.verify_blob(l)?;
                        out.push(Reachable {
                            digest: d,
                            size: l.size(),
                            media_type: l.media_type().to_string(),
                        });
                    }
                }
            }
            _ => {
                self.verify_blob(desc)?;
                out.push(reach);
            }
        }
        Ok(())
    }
}

fn check_schema_version(v: u32, path: &Path) -> Result<(), Error> {
    if v != 2 {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            message: format!("schemaVersion {v} is not 2"),
        });
    }
    Ok(())
}

fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    let f = fs::File::open(path).map_err(io_err("reading", path))?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", path))?;
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            message: format!("larger than {MAX_DOCUMENT_SIZE} bytes"),
        });
    }
    Ok(bytes)
}

/// A layer blob of a media type kiln cannot uncompress.
#[derive(Debug, thiserror::Error)]
pub enum LayerReaderError {
    #[error("media type {0} is not a layer kiln can read (gzip, zstd or uncompressed tar)")]
    MediaType(String),
    #[error("zstd: {0}")]
    Zstd(String),
}

/// The uncompressed tar stream of a layer blob of `media_type` (OCI or
/// Docker names): what the policy, the verifier and `kiln diff` read.
/// Gzip is read as concatenated members, as every runtime reads it.
pub fn layer_reader<'a, R: Read + 'a>(
    media_type: &str,
    blob: R,
) -> Result<Box<dyn Read + 'a>, LayerReaderError> {
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::new(blob),
        )))
    } else if media_type.ends_with("zstd") {
        let dec = ruzstd::decoding::StreamingDecoder::new(io::BufReader::new(blob))
            .map_err(|e| LayerReaderError::Zstd(e.to_string()))?;
        Ok(Box::new(dec))
    } else if media_type.ends_with(".tar") {
        Ok(Box::new(blob))
    } else {
        Err(LayerReaderError::MediaType(media_type.into()))
    }
}

/// Docker's schema 2 manifest and manifest list, which registries and
/// skopeo still hand out; read wherever an OCI manifest or index is.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image index: OCI's, or Docker's manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX_MEDIA_TYPE || media_type == DOCKER_LIST_MEDIA_TYPE
}

/// An image manifest: OCI's, or Docker's schema 2.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST_MEDIA_TYPE || media_type == DOCKER_MANIFEST_MEDIA_TYPE
}

/// How bytes fail to be what their descriptor says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobMismatch {
    #[error("is {actual} bytes, its descriptor says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("content does not match its digest (it hashes to {actual})")]
    Digest { expected: Digest, actual: Digest },
}

/// Checks `bytes` against a descriptor's `digest` and `size`: the one check
/// every reader of blobs (layouts, registries, push, pull, verify) makes
/// before it uses a byte.
pub fn check_blob(bytes: &[u8], digest: &Digest, size: u64) -> Result<(), BlobMismatch> {
    if bytes.len() as u64 != size {
        return Err(BlobMismatch::Size {
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if actual != *digest {
        return Err(BlobMismatch::Digest {
            expected: *digest,
            actual,
        });
    }
    Ok(())
}

/// Reads the blob file at `path`, which must be a regular file of exactly
/// `size` bytes hashing to `digest`; the error says which of these failed.
/// Never reads more than `size + 1` bytes, whatever the file holds.
pub fn read_checked(path: &Path, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let meta =
        fs::symlink_metadata(path).map_err(|e| format!("missing ({}): {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::with_capacity(size.min(MAX_DOCUMENT_SIZE) as usize);
    fs::File::open(path)
        .and_then(|f| f.take(size + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    match check_blob(&bytes, digest, size) {
        // The file's own length, not the bytes read (at most size + 1).
        Err(BlobMismatch::Size { .. }) => Err(format!(
            "is {} bytes, its descriptor says {size}",
            meta.len()
        )),
        Err(e) => Err(e.to_string()),
        Ok(()) => Ok(bytes),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh, empty scratch directory under the target dir (the seed has
    /// no dev-dependencies, so no tempfile crate).
    pub(crate) fn scratch(name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-scratch");
        let dir = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The error and all its sources, as main.rs prints them.
    pub(crate) fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(x) = src {
            s.push_str(&format!(": {x}"));
            src = x.source();
        }
        s
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        // The Date of the lock example in docs/internals.md.
        assert_eq!(rfc3339(1_783_764_997), "2026-07-11T10:16:37Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_799), "2024-02-28T23:59:59Z");
    }

    #[test]
    fn platform_of_arm64_has_variant_v8() {
        let v = serde_json::to_value(platform(Arch::Arm64)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
        );
        let v = serde_json::to_value(platform(Arch::Amd64)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );
    }

    #[test]
    fn annotations_serialize_sorted() {
        let mut ann = BTreeMap::new();
        for k in ["z", "a", "m", "b", "y", "c", "x", "d"] {
            ann.insert(format!("org.example.{k}"), k.to_string());
        }
        let first = document_bytes(&new_manifest(
            descriptor_of(CONFIG_MEDIA_TYPE, b"{}"),
            vec![],
            &ann,
        ));
        for _ in 0..20 {
            // A fresh HashMap each time gets a fresh random seed.
            assert_eq!(
                document_bytes(&new_manifest(
                    descriptor_of(CONFIG_MEDIA_TYPE, b"{}"),
                    vec![],
                    &ann
                )),
                first
            );
        }
        let s = String::from_utf8(first).unwrap();
        assert!(
            s.find("org.example.a").unwrap() < s.find("org.example.z").unwrap(),
            "{s}"
        );
    }

    #[test]
    fn written_layout_reads_back_and_tampering_is_caught() {
        let dir = scratch("layout");
        let root = dir.join("out");
        let w = LayoutWriter::create(&root).unwrap();
        let layer = b"not really a tar".to_vec();
        let layer_digest = w.put_blob(&layer).unwrap();
        let (config, _) = w.put_document(CONFIG_MEDIA_TYPE, &serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
        let manifest = new_manifest(
            config,
            vec![descriptor(
                LAYER_MEDIA_TYPE,
                &layer_digest,
                layer.len() as u64,
            )],
            &BTreeMap::new(),
        );
        let (mut mdesc, _) = w.put_document(MANIFEST_MEDIA_TYPE, &manifest).unwrap();
        set_annotations(
            &mut mdesc,
            &BTreeMap::from([(REF_NAME.to_string(), "latest".to_string())]),
        );
        w.write_index(vec![mdesc.clone()]).unwrap();

        let l = Layout::open(&root).unwrap();
        let found = l.find("latest").unwrap();
        assert_eq!(found.digest(), mdesc.digest());
        assert_eq!(l.walk().unwrap().len(), 3);

        fs::write(l.blob_path(&layer_digest), b"not really a taR").unwrap();
        let e = chain(&l.walk().unwrap_err());
        assert!(
            e.contains(&layer_digest.to_string()) && e.contains("does not match"),
            "{e}"
        );
    }

    #[test]
    fn copy_blob_refuses_wrong_content() {
        let dir = scratch("copy");
        let w = LayoutWriter::create(&dir.join("out")).unwrap();
        let src = dir.join("blob");
        fs::write(&src, b"hello").unwrap();
        let good = Digest::of(b"hello");
        let bad = Digest::of(b"hellO");
        let e = w
            .copy_blob(&src, &bad, 5, "layer x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer x") && e.contains(&bad.to_string()), "{e}");
        assert!(!w.blob_path(&bad).exists());
        let e = w
            .copy_blob(&src, &good, 6, "layer x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("6 bytes"), "{e}");
        w.copy_blob(&src, &good, 5, "layer x").unwrap();
        assert_eq!(fs::read(w.blob_path(&good)).unwrap(), b"hello");
        // Already present: not copied again, but a bad source is still reported.
        fs::write(&src, b"hellO").unwrap();
        let e = w.copy_blob(&src, &good, 5, "layer y").unwrap_err();
        assert!(e.to_string().contains("layer y"), "{e}");
        assert_eq!(fs::read(w.blob_path(&good)).unwrap(), b"hello");
        let leftovers: Vec<_> = fs::read_dir(dir.join("out/blobs/sha256"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn layout_rejects_wrong_version() {
        let dir = scratch("version");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        fs::write(
            dir.join("index.json"),
            br#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        assert!(Layout::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("2.0.0"));
    }
}
