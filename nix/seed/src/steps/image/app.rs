//! Application images: the base image, built exactly as its own image step
//! builds it, plus one layer of built files and the application's config.
//!
//! The base's layers enter unchanged (the same layer directories, the same
//! generated layer), so the application's first layers are the base's
//! blobs and registries share them. The base's platform manifest digest,
//! computed here from the same bytes, is recorded as
//! `org.opencontainers.image.base.digest`.

use super::Error;
use crate::appspec::{Build, PythonBuild};
use crate::digest::Digest;
use crate::sbom::{Application, CrateDist, File, PythonDist};
use crate::spec::{Definition, ImageSpec, LayerCompression};
use crate::tarwrite::{self, Entry, LayerBlob};
use crate::wheel;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
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
    /// The build's output for this architecture (for the Python builder:
    /// the source directory).
    pub files: PathBuf,
    /// The Python builder's wheels for this architecture, as pinned in
    /// kiln.lock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<WheelInput>,
    /// The Rust builder's crates (the source's Cargo.lock), for the SBOMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crates: Vec<CrateInput>,
}

/// One crate of a Rust application's Cargo.lock.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrateInput {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

/// One pinned wheel: its file name (which carries its tags) and its store
/// path, whose bytes Nix checked against the lock's SHA-256.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WheelInput {
    pub file: String,
    pub sha256: String,
    pub path: PathBuf,
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
    wheels: &[WheelInput],
    crates: &[CrateInput],
    created: u64,
    compression: LayerCompression,
) -> Result<AppLayer, Error> {
    if let Some(py) = &build.python {
        return python_layer(py, files, wheels, created, compression);
    }
    // The crates went into the program the Rust builder made.
    let program = build
        .rust
        .as_ref()
        .and(build.program(&spec.name))
        .map(|p| format!("bin/{p}"));
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
            python: Vec::new(),
            cargo: if program.as_deref() == Some(install.from.as_str()) {
                crates
                    .iter()
                    .map(|c| CrateDist {
                        name: c.name.clone(),
                        version: c.version.clone(),
                        checksum: c.checksum.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
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
    let blob = tarwrite::write_layer_compressed(entries, compression).map_err(Error::Tar)?;
    listed.sort_by(|a, b| a.file.path.cmp(&b.file.path));
    Ok(AppLayer {
        blob,
        applications: listed,
    })
}

/// Every parent directory of `rel` (relative, without the leading `/`).
fn parents_of(rel: &str, dirs: &mut BTreeSet<String>) {
    let mut parent = Path::new(rel).parent();
    while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
        dirs.insert(p.to_string_lossy().into_owned());
        parent = p.parent();
    }
}

fn file_of(path: &str, data: &[u8]) -> File {
    File {
        path: path.to_string(),
        sha1: hex::encode(Sha1::digest(data)),
        sha256: hex::encode(Sha256::digest(data)),
    }
}

/// The Python builder's layer: the source directory under `app_dir`
/// (files 0644, or 0755 when executable; directories 0755; root-owned;
/// no links), then every wheel installed into the base's site directory
/// without bytecode. Two files at one path are an error naming both.
fn python_layer(
    py: &PythonBuild,
    source: &Path,
    wheels: &[WheelInput],
    created: u64,
    compression: LayerCompression,
) -> Result<AppLayer, Error> {
    let app_dir = py.app_dir.relative().to_string();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let mut dirs = BTreeSet::new();
    dirs.insert(app_dir.clone());
    parents_of(&app_dir, &mut dirs);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = source.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| build_err(source, format!("reading {}: {e}", rel.display())))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| build_err(source, format!("reading {}: {e}", rel.display())))?;
        names.sort();
        for name in names {
            let member = rel.join(&name);
            let shown = member.to_string_lossy().into_owned();
            let path = source.join(&member);
            let meta = path
                .symlink_metadata()
                .map_err(|e| build_err(source, format!("{shown}: {e}")))?;
            let target = format!("{app_dir}/{shown}");
            if meta.is_dir() {
                dirs.insert(target);
                stack.push(member);
            } else if meta.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let data = std::fs::read(&path)
                    .map_err(|e| build_err(source, format!("reading {shown}: {e}")))?;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                owners.insert(target.clone(), format!("the source's {shown}"));
                files.push((target, data, mode));
            } else {
                return Err(build_err(
                    source,
                    format!("{shown}: not a regular file or directory (the python builder copies files, not links)"),
                ));
            }
        }
    }
    let main = format!("{app_dir}/{}", py.main);
    let main_file = files
        .iter()
        .find(|(p, _, _)| *p == main)
        .map(|(p, d, _)| file_of(&format!("/{p}"), d))
        .ok_or_else(|| {
            build_err(
                source,
                format!("build.python.main {}: no such file in the source", py.main),
            )
        })?;

    let scheme = wheel::Scheme {
        purelib: py.site_packages(),
        scripts: "/usr/local/bin".into(),
        data: "/usr/local".into(),
        headers: format!("/usr/local/include/python{}", py.version),
        interpreter: py.interpreter(),
    };
    let mut dists = Vec::new();
    for w in wheels {
        let bytes = std::fs::read(&w.path)
            .map_err(|e| build_err(&w.path, format!("reading the wheel {}: {e}", w.file)))?;
        let installed = wheel::install(&w.file, &bytes, &scheme)
            .map_err(|e| build_err(&w.path, e.to_string()))?;
        for f in installed.files {
            let rel = f.path.trim_start_matches('/').to_string();
            if let Some(first) = owners.insert(rel.clone(), format!("the wheel {}", w.file)) {
                return Err(build_err(
                    &w.path,
                    format!(
                        "{}: installed by {first} and by the wheel {}",
                        f.path, w.file
                    ),
                ));
            }
            parents_of(&rel, &mut dirs);
            files.push((rel, f.data, f.mode));
        }
        dists.push(PythonDist {
            name: installed.name,
            version: installed.version,
            wheel: w.file.clone(),
            sha256: w.sha256.clone(),
        });
    }
    dists.sort_by(|a, b| a.name.cmp(&b.name));
    let mut entries: Vec<Entry> = files
        .into_iter()
        .map(|(path, data, mode)| Entry::file(path, data, mode, 0, 0, created))
        .collect();
    for d in dirs {
        entries.push(Entry::directory(d, 0o755, 0, 0, created));
    }
    let blob = tarwrite::write_layer_compressed(entries, compression).map_err(Error::Tar)?;
    Ok(AppLayer {
        blob,
        applications: vec![Application {
            file: main_file,
            go: None,
            python: dists,
            cargo: Vec::new(),
        }],
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
