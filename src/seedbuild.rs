//! Building, pinning and installing the seed: kiln's static sandbox-side
//! builder (crate `nix/seed`).
//!
//! The seed is built bit-reproducibly from a copy of `nix/seed` outside the
//! driver's workspace (so it resolves with its own Cargo.lock), with the
//! release settings of `nix/seed/build.toml`, static glibc, and every path
//! that could leak into the binary remapped. Its NAR hash is pinned in
//! `nix/seed.json`; the flake declares the seed as a recursive fixed-output
//! derivation with that hash, so the store path only exists if the bytes
//! are exactly the pinned ones.

use crate::nixstore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target the seed is built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Store name of the seed (the flake's derivation `name`).
pub const STORE_NAME: &str = "kiln-seed";
/// The pin, relative to the project.
pub const PIN_FILE: &str = "nix/seed.json";
/// The seed crate, relative to the project.
pub const CRATE_DIR: &str = "nix/seed";

/// `nix/seed.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    /// sha256 of the NAR of the binary, hex (the FOD's `outputHash`).
    pub nar_hash: String,
    /// The store path that hash gives (for people; recomputed, never trusted).
    pub store_path: String,
    /// Size of the binary in bytes.
    pub size: u64,
    /// `rustc --version` of the toolchain that produced the pin.
    pub rustc: String,
    pub target: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Pin(PathBuf, String),
    #[error("the seed {0} is not in the Nix store; run `kiln seed --check` (or scripts/setup)")]
    NotInstalled(String),
    #[error("building the seed failed: `{command}` exited with {status}")]
    Cargo { command: String, status: String },
    #[error("the seed binary {0} is not statically linked (it has an ELF interpreter); the sandbox has no dynamic loader")]
    NotStatic(PathBuf),
    #[error(transparent)]
    Store(#[from] nixstore::StoreError),
    #[error("the rebuilt seed differs from the pin in {pin_file}:\n  pinned:  {pinned} ({pinned_rustc})\n  rebuilt: {rebuilt} ({rebuilt_rustc})\nThe seed is not reproducible from this checkout (different sources, Cargo.lock or toolchain). If the change is intended, run `kiln seed` and commit {pin_file}.")]
    Mismatch {
        pin_file: String,
        pinned: String,
        rebuilt: String,
        pinned_rustc: String,
        rebuilt_rustc: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SeedError {
    let what = what.into();
    move |source| SeedError::Io { what, source }
}

impl Pin {
    pub fn read(project: &Path) -> Result<Pin, SeedError> {
        let path = project.join(PIN_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        let pin: Pin =
            serde_json::from_str(&text).map_err(|e| SeedError::Pin(path.clone(), e.to_string()))?;
        let nar = pin.nar_bytes().ok_or_else(|| {
            SeedError::Pin(
                path.clone(),
                format!("narHash {:?} is not 64 hex digits", pin.nar_hash),
            )
        })?;
        let expected = nixstore::recursive_fixed_path(STORE_NAME, &nar);
        if pin.store_path != expected {
            return Err(SeedError::Pin(
                path,
                format!(
                    "storePath {} does not match narHash (expected {expected})",
                    pin.store_path
                ),
            ));
        }
        Ok(pin)
    }

    /// The pin, when the seed it names is in the Nix store (what every
    /// build needs before Nix runs).
    pub fn installed(project: &Path) -> Result<Pin, SeedError> {
        let pin = Pin::read(project)?;
        if !nixstore::is_valid(&pin.store_path) {
            return Err(SeedError::NotInstalled(pin.store_path));
        }
        Ok(pin)
    }

    pub fn write(&self, project: &Path) -> Result<(), SeedError> {
        let path = project.join(PIN_FILE);
        crate::fsutil::write_atomic(&path, &crate::json::pretty(self))
            .map_err(io(format!("writing {}", path.display())))
    }

    fn nar_bytes(&self) -> Option<[u8; 32]> {
        kiln_seed::digest::Digest::from_hex(&self.nar_hash).map(|d| d.0)
    }
}

/// Where the seed is built: a stable directory so cargo reuses compiled
/// dependencies between builds (the copy's path is remapped away).
pub fn work_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_SEED_BUILD_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("kiln").join("seed-build")
}

/// A built seed binary.
#[derive(Debug, Clone)]
pub struct Built {
    pub binary: PathBuf,
    pub pin: Pin,
}

/// Options for [`build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Re-resolve the seed's Cargo.lock (instead of `--locked`) and copy it back.
    pub update_lock: bool,
    /// Print cargo's output.
    pub verbose: bool,
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn rustc_version() -> Result<String, SeedError> {
    let out = Command::new("rustc")
        .arg("--version")
        .output()
        .map_err(io("running rustc --version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Copies the seed crate's sources (everything but `target/`) to `dst`,
/// replacing what was there.
fn copy_sources(src: &Path, dst: &Path) -> Result<(), SeedError> {
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(io(format!("removing {}", dst.display())))?;
    }
    copy_tree(src, dst)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), SeedError> {
    std::fs::create_dir_all(dst).map_err(io(format!("creating {}", dst.display())))?;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(io(format!("reading {}", src.display())))?
        .collect::<Result<_, _>>()
        .map_err(io(format!("reading {}", src.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name == "target" {
            continue;
        }
        let from = e.path();
        let to = dst.join(&name);
        let ft = e
            .file_type()
            .map_err(io(format!("reading {}", from.display())))?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io(format!("copying {}", from.display())))?;
        }
    }
    Ok(())
}

/// Builds the seed from `project/nix/seed` and computes its pin.
pub fn build(project: &Path, opts: &BuildOptions) -> Result<Built, SeedError> {
    let crate_dir = project.join(CRATE_DIR);
    if !crate_dir.join("Cargo.toml").is_file() {
        return Err(SeedError::Pin(
            crate_dir,
            "no Cargo.toml: is --project the kiln checkout?".into(),
        ));
    }
    let work = work_dir();
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    // One seed build at a time per work dir: a second `kiln seed` waits
    // instead of deleting the sources under the first one's feet.
    let lock =
        std::fs::File::create(work.join(".lock")).map_err(io("creating the seed build lock"))?;
    lock.lock()
        .map_err(io("locking the seed build directory"))?;
    let src = work.join("src");
    let target_dir = work.join("target");
    copy_sources(&crate_dir, &src)?;

    let flags = [
        "-Ctarget-feature=+crt-static".to_string(),
        format!("--remap-path-prefix={}=/kiln-seed", src.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home().display()),
        format!("--remap-path-prefix={}=/target", target_dir.display()),
    ];
    let mut cmd = Command::new("cargo");
    cmd.arg("build").arg("--release");
    if !opts.update_lock {
        cmd.arg("--locked");
    }
    cmd.args(["--target", TARGET, "--bin", "kiln-seed"])
        .arg("--manifest-path")
        .arg(src.join("Cargo.toml"))
        .arg("--config")
        .arg(src.join("build.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        // C code compiled by build scripts must not record the build path either.
        .env(
            "CFLAGS",
            format!(
                "-ffile-prefix-map={}=/cargo -ffile-prefix-map={}=/kiln-seed",
                cargo_home().display(),
                src.display()
            ),
        );
    if !opts.verbose {
        cmd.arg("--quiet");
    }
    let command = format!("{cmd:?}");
    let status = cmd.status().map_err(io("running cargo"))?;
    if !status.success() {
        return Err(SeedError::Cargo {
            command,
            status: status.to_string(),
        });
    }
    if opts.update_lock {
        std::fs::copy(src.join("Cargo.lock"), crate_dir.join("Cargo.lock"))
            .map_err(io("copying the seed's Cargo.lock back"))?;
    }

    let built = target_dir.join(TARGET).join("release").join("kiln-seed");
    if has_interpreter(&built)? {
        return Err(SeedError::NotStatic(built));
    }
    // The file added to the store must carry the store name.
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
    let binary = out_dir.join(STORE_NAME);
    let tmp = out_dir.join(format!(".{STORE_NAME}.tmp"));
    std::fs::copy(&built, &tmp).map_err(io(format!("copying {}", built.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))
        .map_err(io("chmod seed"))?;
    std::fs::rename(&tmp, &binary).map_err(io(format!("renaming to {}", binary.display())))?;

    let nar = nixstore::nar_sha256_of_file(&binary)?;
    let size = std::fs::metadata(&binary).map_err(io("stat seed"))?.len();
    let pin = Pin {
        nar_hash: hex::encode(nar),
        store_path: nixstore::recursive_fixed_path(STORE_NAME, &nar),
        size,
        rustc: rustc_version()?,
        target: TARGET.to_string(),
    };
    Ok(Built { binary, pin })
}

/// Whether the ELF file at `path` has a PT_INTERP program header (is dynamic).
fn has_interpreter(path: &Path) -> Result<bool, SeedError> {
    let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    let bad = || {
        SeedError::Pin(
            path.to_path_buf(),
            "not a 64-bit little-endian ELF file".into(),
        )
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > bytes.len() {
            return Err(bad());
        }
        if u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds a built seed to the Nix store (no-op when already valid).
pub fn install(built: &Built) -> Result<PathBuf, SeedError> {
    if nixstore::is_valid(&built.pin.store_path) {
        return Ok(PathBuf::from(&built.pin.store_path));
    }
    Ok(nixstore::add_fixed_recursive(
        &built.binary,
        &built.pin.store_path,
    )?)
}

/// Compares a rebuilt seed with the committed pin.
pub fn check_against(project: &Path, built: &Built) -> Result<Pin, SeedError> {
    let pinned = Pin::read(project)?;
    if pinned.nar_hash != built.pin.nar_hash {
        return Err(SeedError::Mismatch {
            pin_file: PIN_FILE.into(),
            pinned: pinned.store_path,
            rebuilt: built.pin.store_path.clone(),
            pinned_rustc: pinned.rustc,
            rebuilt_rustc: built.pin.rustc.clone(),
        });
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_dynamic_executables() {
        // Any dynamically linked system binary has an interpreter.
        assert!(has_interpreter(Path::new("/bin/ls")).unwrap());
    }

    #[test]
    fn pin_must_agree_with_its_store_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nix")).unwrap();
        let nar = [7u8; 32];
        let mut pin = Pin {
            nar_hash: hex::encode(nar),
            store_path: nixstore::recursive_fixed_path(STORE_NAME, &nar),
            size: 1,
            rustc: "rustc x".into(),
            target: TARGET.into(),
        };
        pin.write(dir.path()).unwrap();
        assert_eq!(Pin::read(dir.path()).unwrap(), pin);
        pin.store_path = "/nix/store/00000000000000000000000000000000-kiln-seed".into();
        pin.write(dir.path()).unwrap();
        assert!(Pin::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("does not match"));
    }
}
