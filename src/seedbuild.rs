//! The seed: kiln's static sandbox-side builder (crate `nix/seed`).
//!
//! It is compiled inside the Nix sandbox by Debian's rustc
//! (`nix build .#seed`; nix/lib.nix `seedFromSource`), from the pinned .debs
//! of the `rust` toolchain and the crates of nix/seed/Cargo.lock: an
//! ordinary derivation of pinned inputs. `nix/seed.json` records what that
//! build gives (NAR hash, size, compiler), so that a build on any machine
//! can be compared with it: `kiln seed` updates it, `kiln seed --check`
//! rebuilds and compares.
//!
//! The host's cargo can build a second seed from the same sources with
//! reproducible settings ([`host_build`]): another compiler, so other
//! bytes, which must still build every image bit for bit the same
//! (`kiln digests --check --seed host`, a diverse double compilation of the
//! builder). lib.nix takes it when `KILN_HOST_SEED` (its NAR hash) is set in
//! an impure evaluation.

use crate::nixcmd::{self, BuildOptions as NixBuildOptions};
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

/// The flake attribute of the seed built in the sandbox.
pub const ATTR: &str = "seed";
/// The toolchain (toolchains/<name>) the seed is compiled with, and its compiler package.
pub const TOOLCHAIN: &str = "rust";
pub const COMPILER_PACKAGE: &str = "rustc-web";

/// `nix/seed.json`: what `nix build .#seed` gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    /// sha256 of the NAR of the binary, hex.
    pub nar_hash: String,
    /// The derivation's output path when the pin was made (for people: it
    /// moves with any input, such as a relocked toolchain, while the bytes
    /// may not).
    pub store_path: String,
    /// Size of the binary in bytes.
    pub size: u64,
    /// The compiler package and version that produced it.
    pub compiler: String,
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
    #[error(transparent)]
    Nix(#[from] nixcmd::NixError),
    #[error("the seed built here ({built}, NAR sha256 {built_hash}) differs from {pin_file} ({pinned_hash}); if the seed's sources, Cargo.lock or toolchain changed, run `kiln seed` and commit {pin_file}; otherwise the build is not reproducible")]
    Drift {
        pin_file: String,
        built: String,
        built_hash: String,
        pinned_hash: String,
    },
    #[error("building the seed failed: `{command}` exited with {status}")]
    Cargo { command: String, status: String },
    #[error("the seed binary {0} is not statically linked (it has an ELF interpreter); the sandbox has no dynamic loader")]
    NotStatic(PathBuf),
    #[error(transparent)]
    Store(#[from] nixstore::StoreError),
    #[error("{0}")]
    Lock(String),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
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
        if kiln_seed::digest::Digest::from_hex(&pin.nar_hash).is_none() {
            return Err(SeedError::Pin(
                path,
                format!("narHash {:?} is not 64 hex digits", pin.nar_hash),
            ));
        }
        Ok(pin)
    }

    /// The pin of the seed `project` builds with: kiln's (the project's
    /// own in kiln's repository, else its `kiln` input's).
    pub fn of_project(project: &Path) -> Result<Pin, SeedError> {
        Pin::read(&crate::project::kiln_source(project)?)
    }

    /// The seed every build of `project` uses, built in the sandbox from
    /// kiln's source if it is not in the store yet, checked against kiln's
    /// pin; `store_path` is where it is.
    pub fn installed(project: &Path) -> Result<Pin, SeedError> {
        Pin::installed_in(&crate::project::kiln_source(project)?)
    }

    /// [`Pin::installed`] for kiln's source `kiln`, found already.
    pub fn installed_in(kiln: &Path) -> Result<Pin, SeedError> {
        let pin = Pin::read(kiln)?;
        let built = sandbox_build(kiln, false)?;
        if built.nar_hash != pin.nar_hash {
            return Err(SeedError::Drift {
                pin_file: PIN_FILE.into(),
                built: built.store_path,
                built_hash: built.nar_hash,
                pinned_hash: pin.nar_hash,
            });
        }
        Ok(built)
    }

    pub fn write(&self, project: &Path) -> Result<(), SeedError> {
        let path = project.join(PIN_FILE);
        crate::fsutil::write_atomic(&path, &crate::json::pretty(self))
            .map_err(io(format!("writing {}", path.display())))
    }
}

/// `nix build .#seed` (with `rebuild`, built again and compared with the
/// output already in the store): the seed compiled in the sandbox, as a
/// pin of what it is.
pub fn sandbox_build(project: &Path, rebuild: bool) -> Result<Pin, SeedError> {
    let built = nixcmd::build(
        project,
        &[ATTR.to_string()],
        &NixBuildOptions {
            rebuild,
            ..Default::default()
        },
    )?;
    let out = built
        .first()
        .map(|b| b.out().to_string())
        .ok_or_else(|| SeedError::Lock(format!("nix build .#{ATTR} built nothing")))?;
    let path = Path::new(&out);
    let nar = nixstore::nar_sha256_of_file(path)?;
    let size = std::fs::metadata(path)
        .map_err(io(format!("reading {out}")))?
        .len();
    Ok(Pin {
        nar_hash: hex::encode(nar),
        store_path: out,
        size,
        compiler: compiler(project)?,
        target: TARGET.to_string(),
    })
}

/// Whether `nix build .#seed` has its output in the store already (so
/// `--rebuild` can compare with it).
pub fn sandbox_build_present(project: &Path) -> Result<bool, SeedError> {
    let out = nixcmd::out_path(project, ATTR, &NixBuildOptions::default())?;
    Ok(nixstore::is_valid(&out))
}

/// "rustc-web <version>" of the toolchain the seed is compiled with, from kiln.lock.
fn compiler(project: &Path) -> Result<String, SeedError> {
    let lock = crate::lock::Lock::read(&crate::lock::Lock::path_in(project))
        .map_err(|e| SeedError::Lock(e.to_string()))?;
    let arch = crate::spec::Arch::Amd64;
    let toolchain = lock.toolchains.get(TOOLCHAIN);
    let listed = toolchain
        .and_then(|t| t.archs.get(&arch))
        .is_some_and(|names| names.iter().any(|n| n == COMPILER_PACKAGE));
    let pkg = toolchain
        .and_then(|t| lock.table(&t.release, arch))
        .and_then(|m| m.get(COMPILER_PACKAGE));
    match (listed, pkg) {
        (true, Some(p)) => Ok(format!("{COMPILER_PACKAGE} {}", p.version)),
        _ => Err(SeedError::Lock(format!(
            "kiln.lock's toolchain {TOOLCHAIN} has no {COMPILER_PACKAGE}; run `kiln lock`"
        ))),
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

/// A seed built by the host's cargo.
#[derive(Debug, Clone)]
pub struct HostSeed {
    pub binary: PathBuf,
    /// sha256 of its NAR, hex: lib.nix's `KILN_HOST_SEED`.
    pub nar_hash: String,
    /// Where [`install_host`] puts it (a recursive fixed-output path).
    pub store_path: String,
    pub size: u64,
    /// `rustc --version` of the host.
    pub rustc: String,
}

/// Options for [`host_build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Re-resolve the seed's Cargo.lock (instead of `--locked`) and copy it back.
    pub update_lock: bool,
    /// Print cargo's output.
    pub verbose: bool,
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
    crate::fsutil::copy_crate_sources(src, dst).map_err(io(format!(
        "copying {} to {}",
        src.display(),
        dst.display()
    )))
}

/// Builds the seed from `project/nix/seed` with the host's cargo, with the
/// same release settings and path remapping as the sandbox build.
pub fn host_build(project: &Path, opts: &BuildOptions) -> Result<HostSeed, SeedError> {
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
        format!(
            "--remap-path-prefix={}=/cargo",
            crate::crates::default_cargo_home().display()
        ),
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
                crate::crates::default_cargo_home().display(),
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
    Ok(HostSeed {
        binary,
        nar_hash: hex::encode(nar),
        store_path: nixstore::recursive_fixed_path(STORE_NAME, &nar),
        size,
        rustc: rustc_version()?,
    })
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

/// Adds a host-built seed to the Nix store (no-op when already valid).
pub fn install_host(seed: &HostSeed) -> Result<PathBuf, SeedError> {
    if nixstore::is_valid(&seed.store_path) {
        return Ok(PathBuf::from(&seed.store_path));
    }
    Ok(nixstore::add_fixed_recursive(
        &seed.binary,
        &seed.store_path,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_dynamic_executables() {
        // Any dynamically linked system binary has an interpreter.
        assert!(has_interpreter(Path::new("/bin/ls")).unwrap());
    }
}
