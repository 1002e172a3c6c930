//! Rust crates pinned by a `Cargo.lock`, put into the Nix store for builds
//! in the sandbox: each `.crate` is a flat fixed-output path named
//! `<name>-<version>.crate` whose sha256 is the lock's `checksum`, so Nix
//! only accepts the exact file cargo would have verified.
//!
//! kiln does not talk to the crate registry itself: cargo, the registry's
//! own client, downloads (`cargo fetch --locked`), and kiln takes the files
//! from cargo's download cache, checks each against the lock and adds it.
//! The cargo used is `$KILN_CARGO`, else the one on PATH; a machine with
//! neither passes the Debian cargo of the rust toolchain root
//! (scripts/bootstrap does).

use crate::nixstore::{self, StoreError};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Cargo.lock files the flake compiles in the sandbox, relative to the
/// project: the seed's and the driver's. The seed is built outside the
/// driver's workspace (with its own lock), so it is fetched from a copy:
/// inside the repository cargo would take it for a member of the driver's.
pub const CARGO_LOCKS: [(&str, Workspace); 2] = [
    ("nix/seed/Cargo.lock", Workspace::Standalone),
    ("Cargo.lock", Workspace::InPlace),
];

/// Every Cargo.lock whose crates a build in the sandbox needs: the seed's
/// and the driver's ([`CARGO_LOCKS`]) and that of each application image
/// built by the rust builder (`<build.source>/Cargo.lock`, fetched from a
/// copy: the application is its own workspace).
pub fn cargo_locks(project: &Path) -> Vec<(String, Workspace)> {
    let mut out: Vec<(String, Workspace)> = CARGO_LOCKS
        .iter()
        .map(|(rel, w)| (rel.to_string(), *w))
        .collect();
    if let Ok(loaded) = crate::definition::load_all(&project.join("images")) {
        for l in loaded {
            if let Some(b) = l.definition.build.as_ref().filter(|b| b.rust.is_some()) {
                out.push((
                    format!("{}/Cargo.lock", b.source.trim_end_matches('/')),
                    Workspace::Standalone,
                ));
            }
        }
    }
    out
}

/// Where `cargo fetch` runs for a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workspace {
    /// In the lock's directory.
    InPlace,
    /// In a copy of the lock's directory (without `target/`) made elsewhere.
    Standalone,
}

#[derive(Debug, thiserror::Error)]
pub enum CrateError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Lock { path: PathBuf, message: String },
    #[error("crate {krate}: {file} has sha256 {actual}, but {lock} pins {expected}; the file was not used")]
    Mismatch {
        krate: String,
        file: PathBuf,
        actual: String,
        lock: PathBuf,
        expected: String,
    },
    #[error("`{command}` failed (cargo downloads the crates: install it, or set KILN_CARGO to another cargo): {message}")]
    Cargo { command: String, message: String },
    #[error("{} crate(s) of {lock} are not in cargo's cache after `cargo fetch`: {}", .missing.len(), .missing.join(", "))]
    Missing { lock: PathBuf, missing: Vec<String> },
    #[error("crate {krate}: adding to the Nix store: {error}")]
    Store { krate: String, error: StoreError },
    #[error("checking the Nix store: {0}")]
    Validity(String),
}

/// One registry crate of a Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    /// sha256 of the .crate file, hex.
    pub checksum: String,
}

impl Crate {
    /// The file name, in cargo's cache and in the store.
    pub fn file_name(&self) -> String {
        format!("{}-{}.crate", self.name, self.version)
    }

    pub fn store_path(&self) -> String {
        let mut sha = [0u8; 32];
        // Checked to be 64 hex digits when the lock was read.
        hex::decode_to_slice(&self.checksum, &mut sha).unwrap_or_default();
        nixstore::flat_fixed_path(&self.file_name(), &sha)
    }
}

#[derive(serde::Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(serde::Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The registry crates of the Cargo.lock at `path`. Path dependencies (no
/// `source`) are the workspace's own; a git source has no checksum to pin
/// and is refused, naming the crate.
pub fn from_cargo_lock(path: &Path) -> Result<Vec<Crate>, CrateError> {
    let text = std::fs::read_to_string(path).map_err(|source| CrateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lock: CargoLock = toml::from_str(&text).map_err(|e| CrateError::Lock {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for p in lock.package {
        let Some(source) = p.source else { continue };
        let bad = |why: &str| CrateError::Lock {
            path: path.to_path_buf(),
            message: format!("{} {} ({source}): {why}", p.name, p.version),
        };
        if !source.starts_with("registry+") && !source.starts_with("sparse+") {
            return Err(bad("only registry crates can be pinned by checksum"));
        }
        let checksum = p.checksum.clone().ok_or_else(|| bad("no checksum"))?;
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the checksum is not 64 hex digits"));
        }
        out.push(Crate {
            name: p.name,
            version: p.version,
            checksum: checksum.to_ascii_lowercase(),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Cargo's home: `$CARGO_HOME`, else `~/.cargo`.
pub fn default_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Where cargo keeps downloaded .crate files: one directory per registry.
fn cache_dirs(cargo_home: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry").join("cache"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// What [`add`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Added {
    pub added: usize,
    pub present: usize,
}

/// Puts every crate of the Cargo.lock at `lock` into the store: those
/// already there are skipped, the others are taken from cargo's cache,
/// after `cargo fetch` when the cache lacks some.
pub fn add(
    lock: &Path,
    workspace: Workspace,
    cargo_home: &Path,
    cargo: &[String],
) -> Result<Added, CrateError> {
    let crates = from_cargo_lock(lock)?;
    let paths: Vec<String> = crates.iter().map(Crate::store_path).collect();
    let invalid: BTreeSet<String> = crate::fetch::invalid_paths(&paths)
        .map_err(|e| CrateError::Validity(e.to_string()))?
        .into_iter()
        .collect();
    let wanted: Vec<&Crate> = crates
        .iter()
        .filter(|c| invalid.contains(&c.store_path()))
        .collect();
    let mut report = Added {
        added: 0,
        present: crates.len() - wanted.len(),
    };
    if wanted.is_empty() {
        return Ok(report);
    }
    let find = |c: &Crate| {
        cache_dirs(cargo_home)
            .into_iter()
            .map(|d| d.join(c.file_name()))
            .find(|p| p.is_file())
    };
    if wanted.iter().any(|c| find(c).is_none()) {
        run_cargo_fetch(lock, workspace, cargo_home, cargo)?;
    }
    let mut missing = Vec::new();
    let mut verified = Vec::new();
    for c in wanted {
        let Some(file) = find(c) else {
            missing.push(c.file_name());
            continue;
        };
        let bytes = std::fs::read(&file).map_err(|source| CrateError::Read {
            path: file.clone(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != c.checksum {
            return Err(CrateError::Mismatch {
                krate: format!("{} {}", c.name, c.version),
                file,
                actual,
                lock: lock.to_path_buf(),
                expected: c.checksum.clone(),
            });
        }
        verified.push((c, file));
    }
    let files: Vec<(PathBuf, String)> = verified
        .iter()
        .map(|(c, f)| (f.clone(), c.store_path()))
        .collect();
    nixstore::add_fixed_flat_all(&files).map_err(|(i, error)| CrateError::Store {
        krate: format!("{} {}", verified[i].0.name, verified[i].0.version),
        error,
    })?;
    report.added += verified.len();
    if !missing.is_empty() {
        return Err(CrateError::Missing {
            lock: lock.to_path_buf(),
            missing,
        });
    }
    Ok(report)
}

/// `cargo fetch --locked` for the package whose lock is `lock`: downloads
/// every crate of the lock, for every platform, into `cargo_home`.
fn run_cargo_fetch(
    lock: &Path,
    workspace: Workspace,
    cargo_home: &Path,
    cargo: &[String],
) -> Result<(), CrateError> {
    let (program, args) = cargo.split_first().expect("a cargo command");
    let copy = match workspace {
        Workspace::InPlace => None,
        Workspace::Standalone => {
            let dir = lock.parent().unwrap_or(Path::new("."));
            let tmp = tempfile::tempdir().map_err(|source| CrateError::Read {
                path: std::env::temp_dir(),
                source,
            })?;
            crate::fsutil::copy_crate_sources(dir, tmp.path()).map_err(|source| {
                CrateError::Read {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
            Some(tmp)
        }
    };
    let manifest = match &copy {
        Some(tmp) => tmp.path().join("Cargo.toml"),
        None => lock.with_file_name("Cargo.toml"),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .args(["fetch", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_HOME", cargo_home);
    let command = crate::tool::display(&cmd);
    let out = cmd.output().map_err(|e| CrateError::Cargo {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(CrateError::Cargo {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(text: &str) -> Result<Vec<Crate>, CrateError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Cargo.lock");
        std::fs::write(&p, text).unwrap();
        from_cargo_lock(&p)
    }

    const SUM: &str = "320119579fcad9c21884f5c4861d16174d0e06250625266f50fe6898340abefa";

    #[test]
    fn reads_registry_crates_and_skips_the_workspace() {
        let c = lock(&format!(
            "version = 4\n[[package]]\nname = \"me\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"adler2\"\nversion = \"2.0.1\"\nsource = \"registry+https://example.invalid/index\"\nchecksum = \"{SUM}\"\n"
        ))
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].file_name(), "adler2-2.0.1.crate");
        assert!(c[0].store_path().ends_with("-adler2-2.0.1.crate"));
    }

    #[test]
    fn refuses_what_a_checksum_cannot_pin() {
        let e = lock("[[package]]\nname = \"g\"\nversion = \"1.0.0\"\nsource = \"git+https://example.invalid/g#abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g 1.0.0") && e.contains("only registry crates"),
            "{e}"
        );
        let e = lock("[[package]]\nname = \"r\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("r 1.0.0") && e.contains("no checksum"), "{e}");
    }
}
