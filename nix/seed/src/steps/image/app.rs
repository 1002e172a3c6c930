//! Application images: the base image, built exactly as its own image step
//! builds it, plus one layer of built files and the application's config.
//!
//! The base's layers enter unchanged (the same layer directories, the same
//! generated layer), so the application's first layers are the base's
//! blobs and registries share them. The base's platform manifest digest,
//! computed here from the same bytes, is recorded as
//! `org.opencontainers.image.base.digest`.

use super::Error;
use crate::appspec::Build;
use crate::digest::Digest;
use crate::sbom::{Application, File};
use crate::spec::{Definition, ImageSpec};
use crate::tarwrite::{self, Entry, LayerBlob};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// OCI annotation: the image this one is based on, by name.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// OCI annotation: the digest of the manifest this one is based on.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The image step's `app` input: what turns the base into the application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    /// The application's image.toml as JSON (it has `base` and `build`).
    pub definition: Definition,
    /// Epoch seconds.
    pub created: u64,
    /// The lock's `inputs` digest for the application.
    #[serde(default)]
    pub inputs: Option<Digest>,
    /// The build's output for this architecture.
    pub files: PathBuf,
}

/// The application's layer and what the SBOMs list of it.
pub struct AppLayer {
    pub blob: LayerBlob,
    pub applications: Vec<Application>,
}

impl AppInput {
    /// The application's spec, checked against the lock.
    pub fn spec(&self) -> Result<(ImageSpec, Build), Error> {
        let spec = super::checked_spec(&self.definition, None, self.inputs)?;
        let build = spec
            .build
            .clone()
            .expect("validated: an application has [build]");
        Ok((spec, build))
    }
}

fn build_err(files: &Path, message: String) -> Error {
    Error::Build {
        dir: files.to_path_buf(),
        message,
    }
}

/// The layer of built files: each `install` entry read from the build
/// output (a regular file, never a link out of it), its parent directories
/// root-owned 0755, everything dated `created`.
pub fn layer(
    spec: &ImageSpec,
    build: &Build,
    files: &Path,
    created: u64,
) -> Result<AppLayer, Error> {
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut listed = Vec::new();
    for install in build.installs(&spec.name) {
        let from = files.join(&install.from);
        let meta = from.symlink_metadata().map_err(|e| {
            build_err(
                files,
                format!("{}: the build made no such file ({e})", install.from),
            )
        })?;
        if !meta.is_file() {
            return Err(build_err(
                files,
                format!("{}: not a regular file (the build must output files, not links or directories)", install.from),
            ));
        }
        let data = std::fs::read(&from)
            .map_err(|e| build_err(files, format!("reading {}: {e}", install.from)))?;
        let rel = install.to.relative().to_string();
        let mut parent = Path::new(&rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
        listed.push(Application {
            file: File {
                path: install.to.0.clone(),
                sha1: hex::encode(Sha1::digest(&data)),
                sha256: hex::encode(Sha256::digest(&data)),
            },
            go: crate::gobuildinfo::read(&data),
        });
        entries.push(Entry::file(
            rel,
            data,
            install.mode.map_or(0o755, |m| m.0),
            install.uid.map_or(0, |i| i.0),
            install.gid.map_or(0, |i| i.0),
            created,
        ));
    }
    for d in dirs {
        entries.push(Entry::directory(d, 0o755, 0, 0, created));
    }
    let blob = tarwrite::write_layer(entries).map_err(Error::Tar)?;
    listed.sort_by(|a, b| a.file.path.cmp(&b.file.path));
    Ok(AppLayer {
        blob,
        applications: listed,
    })
}

/// `org.opencontainers.image.revision` of an application: its definition,
/// the base it was built on and the bytes of its layer.
pub fn revision(spec: &ImageSpec, base_manifest: &Digest, layer: &LayerBlob) -> Digest {
    let value = serde_json::json!({
        "definition": spec,
        "base": base_manifest.to_string(),
        "layer": layer.diff_id.to_string(),
    });
    Digest::of(&crate::json::canonical(&value))
}
