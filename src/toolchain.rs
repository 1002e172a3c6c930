//! Toolchains: `toolchains/<name>/toolchain.toml`, a set of Debian packages
//! (a compiler and what it runs) that builds run inside the sandbox. A
//! toolchain is locked like an image's packages, from the same signed
//! indexes, into `kiln.lock`'s `toolchains`; its .debs are unpacked into one
//! FHS tree (the toolchain root) per architecture, shared by every build
//! that uses it.
//!
//! Also the bootstrap: busybox, from the `busybox-static` .deb, is the one
//! program that runs in the sandbox before any seed exists (it unpacks the
//! first toolchain root and enters it). Its store path is the unpacked
//! binary, pinned by the NAR hash `kiln lock` records; anyone can re-derive
//! that hash from the .deb, whose sha256 comes from the signed index.

use crate::digest::Digest;
use crate::spec::{Arch, PackageName};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of a toolchain inside its directory.
pub const FILE_NAME: &str = "toolchain.toml";
/// The project directory that holds toolchains.
pub const DIR: &str = "toolchains";
/// The package busybox comes from, and the arch of the bootstrap.
pub const BOOTSTRAP_PACKAGE: &str = "busybox-static";
pub const BOOTSTRAP_ARCH: Arch = Arch::Amd64;
/// The path of busybox inside that package, and inside the store path.
pub const BOOTSTRAP_MEMBER: &str = "bin/busybox";
/// Store name of the unpacked busybox (the flake's derivation `name`).
pub const BOOTSTRAP_STORE_NAME: &str = "kiln-busybox";

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error("{package}: {message}")]
    Bootstrap { package: String, message: String },
}

fn default_suites() -> Vec<String> {
    ["bookworm", "bookworm-updates", "bookworm-security"]
        .map(String::from)
        .to_vec()
}

fn default_archs() -> Vec<Arch> {
    vec![Arch::Amd64]
}

/// `toolchains/<name>/toolchain.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// Set from the directory name, never from the file.
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// Architectures the toolchain runs on (the build machine's, not the
    /// target's: a cross compiler is a package of the host arch).
    #[serde(default = "default_archs")]
    pub archs: Vec<Arch>,
    /// Suites resolved from, highest version wins; as for images.
    #[serde(default = "default_suites")]
    pub suites: Vec<String>,
    /// Packages to unpack, with their Depends and Pre-Depends.
    pub packages: Vec<PackageName>,
    /// Dependencies not to unpack (a clause naming one counts as satisfied).
    #[serde(default)]
    pub exclude: Vec<PackageName>,
    /// Exact versions to hold packages at (name -> Debian version), for a
    /// toolchain that must not move with the suites; a version the suites
    /// do not offer is a lock error naming it.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Symbolic links the root gets on top of the packages, as a
    /// maintainer script would have made them (`update-alternatives`):
    /// absolute path in the root -> link target.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// Packages of another architecture unpacked into the root as they
    /// are, without their dependencies: a cross compiler's target
    /// libraries (Rust's standard library for arm64), which live under
    /// the target's own directories. Each must come from the same source
    /// version as the build machine's packages of that source, if any.
    #[serde(default)]
    pub foreign: BTreeMap<Arch, Vec<PackageName>>,
}

impl Toolchain {
    /// sha256 of what resolution depends on: the lock is stale for this
    /// toolchain when it differs.
    pub fn lock_inputs(&self) -> Digest {
        let mut include: Vec<&str> = self.packages.iter().map(|p| p.0.as_str()).collect();
        let mut exclude: Vec<&str> = self.exclude.iter().map(|p| p.0.as_str()).collect();
        include.sort_unstable();
        include.dedup();
        exclude.sort_unstable();
        exclude.dedup();
        let mut archs: Vec<&str> = self.archs.iter().map(|a| a.debian()).collect();
        archs.sort_unstable();
        let mut value = serde_json::json!({
            "archs": archs,
            "suites": self.suites,
            "include": include,
            "exclude": exclude,
        });
        // Absent when empty, so that toolchains locked before it existed stay current.
        if !self.versions.is_empty() {
            value["versions"] = serde_json::json!(self.versions);
        }
        if !self.foreign.is_empty() {
            value["foreign"] = serde_json::json!(self.foreign);
        }
        Digest::of(&crate::json::canonical(&value))
    }

    fn validate(&self, path: &Path) -> Result<(), ToolchainError> {
        let invalid = |field, message: String| ToolchainError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        if self.packages.is_empty() {
            return Err(invalid(
                "packages",
                "at least one package is required".into(),
            ));
        }
        if self.archs.is_empty() {
            return Err(invalid(
                "archs",
                "at least one architecture is required".into(),
            ));
        }
        if self.suites.is_empty() {
            return Err(invalid("suites", "at least one suite is required".into()));
        }
        if let Some(arch) = self.foreign.keys().find(|a| self.archs.contains(a)) {
            return Err(invalid(
                "foreign",
                format!("{arch} is an arch the toolchain runs on; list its packages in packages"),
            ));
        }
        for (link, target) in &self.links {
            let ok = link.starts_with('/')
                && link.len() > 1
                && !link.ends_with('/')
                && link
                    .split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !ok {
                return Err(invalid(
                    "links",
                    format!("{link:?} is not an absolute, normal path"),
                ));
            }
            if target.is_empty() || target.contains('\0') {
                return Err(invalid("links", format!("{link}: empty target")));
            }
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Parses one toolchain; `name` is its directory's name.
pub fn parse(path: &Path, text: &str, name: &str) -> Result<Toolchain, ToolchainError> {
    let mut t: Toolchain = toml::from_str(text).map_err(|e| ToolchainError::Parse {
        path: path.to_path_buf(),
        message: crate::definition::describe_toml_error(text, &e),
    })?;
    if !is_name(name) {
        return Err(ToolchainError::Invalid {
            path: path.to_path_buf(),
            field: "name",
            message: format!(
                "the directory name {name:?} must be lowercase letters, digits and '-'"
            ),
        });
    }
    t.name = name.to_string();
    t.validate(path)?;
    Ok(t)
}

/// Every `<project>/toolchains/*/toolchain.toml`, sorted by name; none is
/// not an error (a project without builds has no toolchains).
pub fn load_all(project: &Path) -> Result<Vec<Toolchain>, ToolchainError> {
    let dir = project.join(DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ToolchainError::Read { path: dir, source }),
    };
    let mut found = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| ToolchainError::Read {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path().join(FILE_NAME);
        if path.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            found.push((name, path));
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path).map_err(|source| ToolchainError::Read {
                path: path.clone(),
                source,
            })?;
            parse(&path, &text, &name)
        })
        .collect()
}

/// Reads busybox out of the bootstrap .deb (whose sha256 the caller has
/// checked against the lock).
pub fn busybox_from_deb(package: &str, deb: &[u8]) -> Result<Vec<u8>, ToolchainError> {
    let err = |message: String| ToolchainError::Bootstrap {
        package: package.to_string(),
        message,
    };
    let parsed = kiln_seed::steps::deb::parse(deb).map_err(|e| err(e.to_string()))?;
    let wanted = format!("./{BOOTSTRAP_MEMBER}");
    for e in parsed.data {
        if e.name == wanted || e.name == BOOTSTRAP_MEMBER {
            return match e.kind {
                kiln_seed::steps::deb::TarKind::File(bytes) => Ok(bytes),
                _ => Err(err(format!("{BOOTSTRAP_MEMBER} is not a regular file"))),
            };
        }
    }
    Err(err(format!("the package has no {BOOTSTRAP_MEMBER}")))
}

/// The NAR sha256 (hex) of the unpacked busybox.
pub fn busybox_nar_hash(busybox: &[u8]) -> String {
    let name = BOOTSTRAP_MEMBER.rsplit('/').next().unwrap_or("busybox");
    hex::encode(Sha256::digest(crate::nixstore::nar_of_bin_dir(
        name, busybox,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_field_at_fault() {
        let p = Path::new("toolchains/rust/toolchain.toml");
        let t = parse(
            p,
            "description = \"Rust\"\npackages = [\"rustc-web\"]\n[links]\n\"/usr/bin/cc\" = \"gcc\"\n",
            "rust",
        )
        .unwrap();
        assert_eq!(t.name, "rust");
        assert_eq!(t.archs, vec![Arch::Amd64]);
        assert_eq!(t.links["/usr/bin/cc"], "gcc");

        let e = parse(p, "description = \"x\"\npackages = []\n", "rust").unwrap_err();
        assert!(e.to_string().contains("packages: at least one"), "{e}");
        let e = parse(
            p,
            "description = \"x\"\npackages = [\"ab\"]\nlinks = { \"usr/x\" = \"y\" }\n",
            "rust",
        )
        .unwrap_err();
        assert!(e.to_string().contains("links"), "{e}");
        let e = parse(
            p,
            "description = \"x\"\npackages = [\"gcc\"]\nbogus = 1\n",
            "rust",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn inputs_ignore_order_and_links() {
        let p = Path::new("t");
        let a = parse(p, "description = \"x\"\npackages = [\"a1\", \"b1\"]\n", "t").unwrap();
        let b = parse(
            p,
            "description = \"y\"\npackages = [\"b1\", \"a1\"]\nlinks = { \"/x\" = \"y\" }\n",
            "t",
        )
        .unwrap();
        assert_eq!(a.lock_inputs(), b.lock_inputs());
    }

    #[test]
    fn nar_matches_nix_hash_of_the_same_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let f = dir.path().join("bin/busybox");
        std::fs::write(&f, b"hello\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("nix-hash")
            .args(["--type", "sha256"])
            .arg(dir.path())
            .output()
            .expect("nix-hash (scripts/setup installs Nix)");
        let want = String::from_utf8(out.stdout).unwrap();
        assert_eq!(busybox_nar_hash(b"hello\n"), want.trim());
    }
}
