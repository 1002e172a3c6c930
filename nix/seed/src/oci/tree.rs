//! One walker for an image, whatever it is read from (a layout, a build
//! output in the Nix store, a registry: any [`Source`]): the root, and for
//! an image index each platform's manifest; each manifest's config. Every
//! blob comes through the source, checked against its descriptor.
//!
//! Problems below the root are collected, not fatal, so that a reader can
//! still report on what it could read (the verifier checks signatures over
//! digests even when a layer is missing); a reader that needs the whole
//! image treats any problem as an error.

use super::source::{Source, SourceError};
use super::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::digest::Digest;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

/// `sha256:` and the first 12 hex digits: enough to tell an image's
/// digests apart in a report (the full root digest heads it).
pub fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// One platform of the image.
#[derive(Debug)]
pub struct Node {
    /// OCI architecture (`amd64`, `arm64`), from the index descriptor or,
    /// for a single-manifest image, the config.
    pub arch: String,
    pub variant: Option<String>,
    pub descriptor: Descriptor,
    pub digest: Digest,
    /// How problems name this platform: `amd64 manifest sha256:…` (in an
    /// index), `manifest sha256:<full>` (a single-manifest image).
    pub label: String,
    /// The manifest and its config, when they could be read.
    pub manifest: Option<ImageManifest>,
    pub config: Option<ImageConfiguration>,
}

/// What the walk found.
#[derive(Debug)]
pub struct Tree {
    pub root: Descriptor,
    pub root_digest: Digest,
    /// True when the root is an image index (a multi-platform image).
    pub is_index: bool,
    /// The root document's annotations (the index's, or the manifest's).
    pub annotations: std::collections::BTreeMap<String, String>,
    pub platforms: Vec<Node>,
    /// Blobs fetched and found to match their digests.
    pub blobs_read: usize,
    /// Every blob that is missing, tampered with or inconsistent.
    pub problems: Vec<String>,
}

fn problem(e: &SourceError) -> String {
    super::layout_source::chain(e)
}

/// Reads the image `source` names. The root must be fetchable (without it
/// there is nothing to read); everything below it is read as far as it can
/// be.
pub fn read(source: &dyn Source) -> Result<Tree, SourceError> {
    let root = source.root()?;
    let root_digest = Digest::parse(root.digest().as_ref()).map_err(|m| SourceError::Blob {
        source_name: source.describe(),
        digest: root.digest().to_string(),
        message: m,
    })?;
    let mut tree = Tree {
        is_index: root.media_type().as_ref() == INDEX_MEDIA_TYPE,
        root: root.clone(),
        root_digest,
        annotations: Default::default(),
        platforms: Vec::new(),
        blobs_read: 0,
        problems: Vec::new(),
    };
    match root.media_type().as_ref() {
        INDEX_MEDIA_TYPE => {
            let bytes = match source.fetch(&root) {
                Ok(b) => b,
                Err(e) => {
                    tree.problems.push(format!("image index: {}", problem(&e)));
                    return Ok(tree);
                }
            };
            tree.blobs_read += 1;
            let index: ImageIndex = match serde_json::from_slice(&bytes) {
                Ok(i) => i,
                Err(e) => {
                    tree.problems
                        .push(format!("image index {root_digest} does not parse: {e}"));
                    return Ok(tree);
                }
            };
            tree.annotations = index
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for d in index.manifests() {
                if d.media_type().as_ref() != MANIFEST_MEDIA_TYPE {
                    tree.problems.push(format!(
                        "image index {root_digest} lists {} of media type {}, which kiln never writes",
                        d.digest(),
                        d.media_type()
                    ));
                    continue;
                }
                let Ok(digest) = Digest::parse(d.digest().as_ref()) else {
                    tree.problems.push(format!(
                        "image index {root_digest} lists a manifest with digest {}, not sha256",
                        d.digest()
                    ));
                    continue;
                };
                let (arch, variant) = match d.platform() {
                    Some(p) => (p.architecture().to_string(), p.variant().clone()),
                    None => {
                        tree.problems.push(format!(
                            "image index {root_digest}: manifest {digest} has no platform"
                        ));
                        continue;
                    }
                };
                let mut node = Node {
                    label: format!("{arch} manifest {}", short(&digest)),
                    arch,
                    variant,
                    descriptor: d.clone(),
                    digest,
                    manifest: None,
                    config: None,
                };
                read_node(source, &mut node, &mut tree, false);
                tree.platforms.push(node);
            }
        }
        MANIFEST_MEDIA_TYPE => {
            let mut node = Node {
                arch: String::new(),
                variant: None,
                descriptor: root.clone(),
                digest: root_digest,
                label: format!("manifest {root_digest}"),
                manifest: None,
                config: None,
            };
            read_node(source, &mut node, &mut tree, true);
            if let Some(m) = &node.manifest {
                tree.annotations = m
                    .annotations()
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            tree.platforms.push(node);
        }
        other => {
            tree.problems.push(format!(
                "{root_digest} has media type {other}: neither an image index nor a manifest"
            ));
        }
    }
    Ok(tree)
}

/// Reads one platform's manifest and config, and checks that they agree
/// with the index (architecture) and with each other (one diffID a layer).
fn read_node(source: &dyn Source, node: &mut Node, tree: &mut Tree, arch_from_config: bool) {
    let what = node.label.clone();
    let manifest: ImageManifest = match source
        .fetch(&node.descriptor)
        .map_err(|e| problem(&e))
        .and_then(|b| {
            tree.blobs_read += 1;
            serde_json::from_slice(&b).map_err(|e| format!("does not parse: {e}"))
        }) {
        Ok(m) => m,
        Err(e) => {
            tree.problems.push(format!("{what}: {e}"));
            return;
        }
    };
    let config: ImageConfiguration = match source
        .fetch(manifest.config())
        .map_err(|e| problem(&e))
        .and_then(|b| {
            tree.blobs_read += 1;
            serde_json::from_slice(&b).map_err(|e| format!("does not parse: {e}"))
        }) {
        Ok(c) => c,
        Err(e) => {
            tree.problems.push(format!(
                "{what}: config {}: {e}",
                manifest.config().digest()
            ));
            node.manifest = Some(manifest);
            return;
        }
    };
    let config_arch = config.architecture().to_string();
    if arch_from_config {
        node.arch = config_arch;
        node.variant = config.variant().clone();
    } else if config_arch != node.arch {
        tree.problems.push(format!(
            "{what}: the index says {} but its config says {config_arch}",
            node.arch
        ));
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        tree.problems.push(format!(
            "{what}: {} layers but the config lists {} diffIDs",
            manifest.layers().len(),
            diff_ids.len()
        ));
    }
    node.manifest = Some(manifest);
    node.config = Some(config);
}
