//! Application images seen from the driver: the checks that need the whole
//! project (the base exists and is not itself an application, the
//! toolchain and the source directory exist), the digest of a source
//! directory recorded in the provenance, and the base an application's
//! manifests name.

use kiln_seed::digest::Digest;
use kiln_seed::spec::Definition;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How [`digest`] is computed, recorded beside it in the provenance so that
/// a consumer can recompute it with coreutils.
pub const DIGEST_RULE: &str = "sha256 of the lines `<sha256>  <path>` (sha256sum's format) of every regular file, sorted by path, and `-> <target>  <path>` of every symlink; names starting with . and `result` are skipped, as in the build";

/// OCI annotations an application's index and manifests carry.
pub const BASE_NAME: &str = kiln_seed::image::app::BASE_NAME;
pub const BASE_DIGEST: &str = kiln_seed::image::app::BASE_DIGEST;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{definition}: base {base:?} is not an image of this project (images: {known})")]
    UnknownBase {
        definition: PathBuf,
        base: String,
        known: String,
    },
    #[error("{definition}: base {base:?} is itself an application image; build on the image it is based on")]
    BaseIsApplication { definition: PathBuf, base: String },
    #[error("{definition}: base {base:?} is not built for {arch}")]
    BaseArch {
        definition: PathBuf,
        base: String,
        arch: String,
    },
    #[error(
        "{definition}: build.toolchain {toolchain:?} has no toolchains/{toolchain}/toolchain.toml"
    )]
    UnknownToolchain {
        definition: PathBuf,
        toolchain: String,
    },
    #[error("{definition}: {source_dir}: {error}")]
    GoModules {
        definition: PathBuf,
        source_dir: String,
        error: kiln_seed::gomod::GoModError,
    },
    #[error("{definition}: build.source {dir:?} is not a directory of the project")]
    NoSource { definition: PathBuf, dir: String },
    #[error("reading {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Checks every application among `loaded` against the project.
pub fn check(project: &Path, loaded: &[crate::definition::Loaded]) -> Result<(), AppError> {
    let mut images: BTreeMap<String, &Definition> = BTreeMap::new();
    for l in loaded {
        images.insert(l.definition.name.clone(), &l.definition);
        for v in l.definition.variants.keys() {
            images.insert(format!("{}-{v}", l.definition.name), &l.definition);
        }
    }
    for l in loaded {
        let d = &l.definition;
        let (Some(base), Some(build)) = (&d.base, &d.build) else {
            continue;
        };
        let definition = l.path.clone();
        let Some(b) = images.get(base) else {
            return Err(AppError::UnknownBase {
                definition,
                base: base.clone(),
                known: images
                    .keys()
                    .filter(|n| images[*n].base.is_none())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if b.base.is_some() {
            return Err(AppError::BaseIsApplication {
                definition,
                base: base.clone(),
            });
        }
        if let Some(arch) = d.archs.iter().find(|a| !b.archs.contains(a)) {
            return Err(AppError::BaseArch {
                definition,
                base: base.clone(),
                arch: arch.debian().into(),
            });
        }
        if let Some(toolchain) = build.toolchain.as_ref().filter(|t| {
            !project
                .join("toolchains")
                .join(t)
                .join("toolchain.toml")
                .is_file()
        }) {
            return Err(AppError::UnknownToolchain {
                definition,
                toolchain: toolchain.clone(),
            });
        }
        if !project.join(&build.source).is_dir() {
            return Err(AppError::NoSource {
                definition,
                dir: build.source.clone(),
            });
        }
        // The sandbox checks this too; here it fails before anything builds.
        if build.go.is_some() {
            kiln_seed::gomod::vendored_modules(&project.join(&build.source)).map_err(|error| {
                AppError::GoModules {
                    definition,
                    source_dir: build.source.clone(),
                    error,
                }
            })?;
        }
    }
    Ok(())
}

/// The digest of a source directory ([`DIGEST_RULE`]).
pub fn digest(dir: &Path) -> Result<Digest, AppError> {
    let mut lines = Vec::new();
    walk(dir, "", &mut lines)?;
    lines.sort_by(|a: &(String, String), b| a.0.cmp(&b.0));
    let text: String = lines
        .into_iter()
        .map(|(path, what)| format!("{what}  {path}\n"))
        .collect();
    Ok(Digest::of(text.as_bytes()))
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) -> Result<(), AppError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |error| AppError::Read { path, error }
    };
    for e in std::fs::read_dir(dir).map_err(read(dir))? {
        let e = e.map_err(read(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "result" {
            continue;
        }
        let path = e.path();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ty = e.file_type().map_err(read(&path))?;
        if ty.is_dir() {
            walk(&path, &rel, out)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&path).map_err(read(&path))?;
            out.push((rel, format!("-> {}", target.display())));
        } else if ty.is_file() {
            let bytes = std::fs::read(&path).map_err(read(&path))?;
            out.push((rel, hex::encode(Sha256::digest(&bytes))));
        }
    }
    Ok(())
}

/// The base an application image names: from its index's and its platform
/// manifests' annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseAnnotations {
    pub name: String,
    pub index: Digest,
    pub platforms: BTreeMap<String, Digest>,
}

/// Reads the base annotations of the built layout `out` (an index step
/// output).
pub fn base_annotations(out: &Path) -> Result<BaseAnnotations, String> {
    let blob = |d: &str| -> Result<serde_json::Value, String> {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or(format!("{d} is not sha256"))?;
        let path = out.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let summary: serde_json::Value = {
        let path = out.join("image.json");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let annotation = |doc: &serde_json::Value, key: &str, what: &str| -> Result<String, String> {
        doc["annotations"][key]
            .as_str()
            .map(String::from)
            .ok_or(format!("the {what} has no {key} annotation"))
    };
    // One platform's output (`<image>-<arch>`): its manifest is the root.
    if summary.get("index").is_none() {
        let arch = summary["arch"]
            .as_str()
            .ok_or("image.json has no index and no arch")?;
        let d = summary["manifest"]["digest"]
            .as_str()
            .ok_or("image.json has no manifest")?;
        let manifest = blob(d)?;
        let base = Digest::parse(&annotation(&manifest, BASE_DIGEST, "manifest")?)?;
        return Ok(BaseAnnotations {
            name: annotation(&manifest, BASE_NAME, "manifest")?,
            index: base,
            platforms: BTreeMap::from([(arch.to_string(), base)]),
        });
    }
    let index_digest = summary["index"]["digest"]
        .as_str()
        .ok_or("image.json has no index")?;
    let index = blob(index_digest)?;
    let name = annotation(&index, BASE_NAME, "image index")?;
    let index = Digest::parse(&annotation(&index, BASE_DIGEST, "image index")?)?;
    let mut platforms = BTreeMap::new();
    for (arch, desc) in summary["manifests"].as_object().into_iter().flatten() {
        let d = desc["digest"]
            .as_str()
            .ok_or("image.json: a manifest has no digest")?;
        let manifest = blob(d)?;
        platforms.insert(
            arch.clone(),
            Digest::parse(&annotation(
                &manifest,
                BASE_DIGEST,
                &format!("{arch} manifest"),
            )?)?,
        );
    }
    Ok(BaseAnnotations {
        name,
        index,
        platforms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_digest_is_sha256sum_of_the_files_and_skips_dot_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cmd")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("go.mod"), "module x\n").unwrap();
        std::fs::write(dir.path().join("cmd/main.go"), "package main\n").unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        let expected = format!(
            "{}  cmd/main.go\n{}  go.mod\n",
            hex::encode(Sha256::digest(b"package main\n")),
            hex::encode(Sha256::digest(b"module x\n"))
        );
        let d = digest(dir.path()).unwrap();
        assert_eq!(d, Digest::of(expected.as_bytes()));
        std::fs::write(dir.path().join(".git/HEAD"), "other").unwrap();
        assert_eq!(digest(dir.path()).unwrap(), d, "dot names do not count");
        std::fs::write(dir.path().join("go.mod"), "module y\n").unwrap();
        assert_ne!(digest(dir.path()).unwrap(), d);
    }
}
