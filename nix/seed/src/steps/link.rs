//! The `link` step: a directory of symlinks into the store (how the flake
//! exposes the seed as `bin/verify` for `nix run .#verify`).
//!
//! Input: `{"links": {"bin/verify": "/nix/store/...-kiln-seed"}}`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Printed inline, not also chained as a `source`.
    #[error("link input: {0}")]
    Input(serde_json::Error),
    #[error("link name {0:?} must be a relative path without ..")]
    BadName(String),
    #[error("link target {0:?} must be a /nix/store path")]
    BadTarget(String),
    #[error("creating {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    links: BTreeMap<String, String>,
}

pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.display().to_string(),
        source,
    })?;
    for (name, target) in &input.links {
        let rel = Path::new(name);
        if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::BadName(name.clone()));
        }
        if !target.starts_with("/nix/store/") {
            return Err(Error::BadTarget(target.clone()));
        }
        let path = out.join(rel);
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(io)?;
    }
    Ok(())
}
