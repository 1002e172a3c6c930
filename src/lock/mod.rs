//! `kiln.lock`: the model, its deterministic JSON form (docs/internals.md)
//! and the offline staleness check. Resolution (verified indexes plus the
//! image definitions into a new lock) is in `resolve`, what a relock
//! changed in `summary`.
//!
//! The lock holds archive-relative paths only, never a URL: it stays valid
//! across mirrors, and the flake reads it with `builtins.fromJSON`.

use crate::debian::release::SuiteIndex;
use crate::debian::resolve::{plan_layers, resolve, Request, ResolveError, Universe};
use crate::digest::Digest;
use crate::nixstore;
use crate::release::{self, Release};
use crate::spec::{Arch, ImageSpec};
use crate::toolchain::Toolchain;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File name of the lock in a project.
pub const FILE_NAME: &str = "kiln.lock";

/// The format version this kiln writes. It reads format 1 too, whose one
/// package table is split by release on reading.
pub const FORMAT_VERSION: u32 = 2;

/// The pinned .debs of one release: arch, then package name.
pub type PackageTable = BTreeMap<Arch, BTreeMap<String, Package>>;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} does not exist; run `kiln lock`")]
    Missing { path: PathBuf },
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("writing {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is stale:\n  {}\nrun `kiln lock` to update it", problems.join("\n  "))]
    Stale {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("bootstrap {package}: {message}")]
    Bootstrap { package: String, message: String },
    #[error("toolchain {toolchain}: {arch}: versions holds {package} at {version}, but its suites give {got} (is that version still in the archive? a superseded .deb leaves the index)")]
    Held {
        toolchain: String,
        arch: Arch,
        package: String,
        version: String,
        got: String,
    },
    #[error("toolchain {toolchain}: {error}")]
    ResolveToolchain {
        toolchain: String,
        error: Box<ResolveError>,
    },
    #[error("image {image}: {error}")]
    Resolve {
        image: String,
        error: Box<ResolveError>,
    },
    #[error("{0}")]
    Conflict(Box<Conflict>),
    #[error("image {image}: suite {suite} was not loaded for {arch}")]
    NotLoaded {
        image: String,
        suite: String,
        arch: Arch,
    },
    #[error("image {image}: {message}")]
    Release { image: String, message: String },
    #[error("no image named {0} among the definitions")]
    UnknownImage(String),
    #[error("image {image}: base {base} is not an image of this project")]
    UnknownBase { image: String, base: String },
    #[error("kiln.lock has no image named {0}; run `kiln lock`")]
    NotLocked(String),
}

/// Two images (or toolchains) of one release that resolve one package of
/// one arch to two versions.
#[derive(Debug, thiserror::Error)]
#[error("{release} {arch}: {name} resolves to {version_a} for {image_a} but to {version_b} for {image_b}; a lock holds one version per package, arch and release (give both images the same suites, or run `kiln lock` for all images)")]
pub struct Conflict {
    pub release: String,
    pub arch: Arch,
    pub name: String,
    pub image_a: String,
    pub version_a: String,
    pub image_b: String,
    pub version_b: String,
}

/// The signed index a suite was locked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LockedSuite {
    pub codename: String,
    pub suite: String,
    pub date: String,
    /// The index's Date as a Unix time: what a snapshot archive is asked
    /// for when the mirror has moved on. 0 when a lock does not record it.
    #[serde(default)]
    pub epoch: i64,
    pub in_release: Digest,
    pub signer: String,
    pub indexes: BTreeMap<String, Digest>,
}

/// One pinned .deb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Package {
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub suite: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

impl Package {
    /// Name of the .deb's fixed-output derivation (docs/internals.md).
    pub fn store_name(&self, name: &str) -> String {
        nixstore::deb_store_name(name, &self.version, &self.architecture)
    }

    /// The store path `kiln fetch` adds and the flake's FOD produces.
    pub fn store_path(&self, name: &str) -> String {
        nixstore::flat_fixed_path(&self.store_name(name), &self.sha256_bytes())
    }

    pub fn sha256_bytes(&self) -> [u8; 32] {
        Digest::from_hex(&self.sha256)
            .map(|d| d.0)
            .unwrap_or_default()
    }
}

/// One architecture of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageArch {
    pub packages: Vec<String>,
    pub layers: Vec<Vec<String>>,
}

/// One image (a definition with one variant applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The codename of the Debian release its packages come from: which
    /// table of `packages` they are in.
    pub release: String,
    pub inputs: Digest,
    pub created: i64,
    pub archs: BTreeMap<Arch, ImageArch>,
    /// A Python application's wheels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<LockedPython>,
}

/// The wheels of a Python application, per architecture, pinned for one
/// state of its requirements file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPython {
    /// SHA-256 of the requirements file they were resolved from.
    pub requirements: Digest,
    /// The CPython version (`3.11`) they are for.
    pub python: String,
    /// The newest manylinux platform tag accepted, per arch (from the
    /// base's glibc).
    pub platforms: BTreeMap<Arch, String>,
    pub wheels: BTreeMap<Arch, Vec<LockedWheel>>,
}

/// One pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedWheel {
    /// Normalized project name.
    pub name: String,
    pub version: String,
    /// The wheel's file name (its tags say where it runs).
    pub file: String,
    /// SHA-256 (hex) of the file, one the requirements file pins.
    pub sha256: String,
}

impl LockedWheel {
    /// The store path `kiln fetch` adds and the flake's FOD produces.
    pub fn store_path(&self) -> String {
        let sha = Digest::from_hex(&self.sha256)
            .map(|d| d.0)
            .unwrap_or_default();
        nixstore::flat_fixed_path(&self.file, &sha)
    }
}

/// One toolchain: the packages its root unpacks, per (build machine) arch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedToolchain {
    /// The release of its suites (its table of `packages`).
    pub release: String,
    pub inputs: Digest,
    pub archs: BTreeMap<Arch, Vec<String>>,
    /// Packages of other archs unpacked into the root as they are (their
    /// entries are in `packages.<release>.<arch>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub foreign: BTreeMap<Arch, Vec<String>>,
}

/// The bootstrap: busybox unpacked from a pinned package of
/// `packages.<release>.<arch>`, pinned by the NAR hash of that unpacking (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bootstrap {
    pub release: String,
    pub arch: Arch,
    pub package: String,
    pub nar_hash: String,
}

impl Bootstrap {
    /// The store path `kiln fetch` adds and the flake's FOD produces.
    pub fn store_path(&self) -> String {
        let nar = Digest::from_hex(&self.nar_hash)
            .map(|d| d.0)
            .unwrap_or_default();
        nixstore::recursive_fixed_path(crate::toolchain::BOOTSTRAP_STORE_NAME, &nar)
    }
}

/// The whole lock. Every map is a BTreeMap, and the bytes go through
/// `json::pretty`, so the same content always gives the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub sources: BTreeMap<String, LockedSuite>,
    /// Keyed by release codename: a lock holds one version per package,
    /// arch and release, so images of different releases never conflict.
    pub packages: BTreeMap<String, PackageTable>,
    pub images: BTreeMap<String, Image>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub toolchains: BTreeMap<String, LockedToolchain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock {
            version: FORMAT_VERSION,
            sources: BTreeMap::new(),
            packages: BTreeMap::new(),
            images: BTreeMap::new(),
            toolchains: BTreeMap::new(),
            bootstrap: None,
        }
    }
}

fn is_relative_archive_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains("://")
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Lock {
    /// Path of the lock in `project`.
    pub fn path_in(project: &Path) -> PathBuf {
        project.join(FILE_NAME)
    }

    /// Reads and validates a lock.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        Ok(Lock::read_with_digest(path)?.0)
    }

    /// Reads and validates a lock, with the digest of the bytes read (what
    /// provenance records: the same bytes, read once).
    pub fn read_with_digest(path: &Path) -> Result<(Lock, Digest), LockError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LockError::Missing {
                    path: path.to_path_buf(),
                })
            }
            Err(error) => {
                return Err(LockError::Read {
                    path: path.to_path_buf(),
                    error,
                })
            }
        };
        Ok((Lock::from_slice(&bytes, path)?, Digest::of(&bytes)))
    }

    /// Reads a lock if there is one.
    pub fn read_optional(path: &Path) -> Result<Option<Lock>, LockError> {
        match Lock::read(path) {
            Ok(l) => Ok(Some(l)),
            Err(LockError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Parses and validates lock bytes; `path` names them in errors.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Lock, LockError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| LockError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut v = v;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if n == FORMAT_VERSION as u64 => {}
            Some(1) => v = split_by_release(v),
            Some(n) => {
                return Err(LockError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                    "format version {n} is not supported (this kiln reads 1 and {FORMAT_VERSION})"
                ),
                })
            }
            None => {
                return Err(LockError::Invalid {
                    path: path.to_path_buf(),
                    message: "no format version".into(),
                })
            }
        }
        let lock: Lock = serde_json::from_value(v).map_err(|e| LockError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        lock.validate().map_err(|message| LockError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(lock)
    }

    /// Internal consistency: what a hand edit or a merge could break.
    pub fn validate(&self) -> Result<(), String> {
        for release in self.packages.keys() {
            if Release::by_codename(release).is_none() {
                return Err(format!(
                    "packages.{release}: not a Debian release kiln knows"
                ));
            }
        }
        for (release, arch, pkgs) in self.tables() {
            for (name, p) in pkgs {
                let what = format!("packages.{release}.{arch}.{name}");
                if Digest::from_hex(&p.sha256).is_none() {
                    return Err(format!(
                        "{what}: sha256 {:?} is not 64 lowercase hex digits",
                        p.sha256
                    ));
                }
                if !is_relative_archive_path(&p.filename) {
                    return Err(format!(
                        "{what}: filename {:?} is not a relative archive path",
                        p.filename
                    ));
                }
                if !self.sources.contains_key(&p.suite) {
                    return Err(format!(
                        "{what}: suite {:?} has no entry in sources",
                        p.suite
                    ));
                }
                if p.version.is_empty() || p.architecture.is_empty() {
                    return Err(format!("{what}: empty version or architecture"));
                }
            }
        }
        for (image, entry) in &self.images {
            for (arch, plan) in &entry.archs {
                let what = format!("images.{image}.archs.{arch}");
                let release = &entry.release;
                let known = self.table(release, *arch);
                for name in &plan.packages {
                    if !known.is_some_and(|k| k.contains_key(name)) {
                        return Err(format!(
                            "{what}: package {name} has no entry in packages.{release}.{arch}"
                        ));
                    }
                }
                let listed: BTreeSet<&String> = plan.packages.iter().collect();
                let mut layered = BTreeSet::new();
                for name in plan.layers.iter().flatten() {
                    if !layered.insert(name) {
                        return Err(format!("{what}: {name} is in two layers"));
                    }
                }
                if listed != layered || listed.len() != plan.packages.len() {
                    return Err(format!(
                        "{what}: the layers do not hold exactly the packages"
                    ));
                }
            }
        }
        for (image, entry) in &self.images {
            for (arch, wheels) in entry.python.iter().flat_map(|p| &p.wheels) {
                for w in wheels {
                    let what = format!("images.{image}.python.wheels.{arch}.{}", w.name);
                    if Digest::from_hex(&w.sha256).is_none() {
                        return Err(format!(
                            "{what}: sha256 {:?} is not 64 lowercase hex digits",
                            w.sha256
                        ));
                    }
                    if !w.file.ends_with(".whl")
                        || !w
                            .file
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
                    {
                        return Err(format!(
                            "{what}: file {:?} is not a wheel's file name",
                            w.file
                        ));
                    }
                }
            }
        }
        for (name, t) in &self.toolchains {
            for (arch, names) in t.archs.iter().chain(&t.foreign) {
                let known = self.table(&t.release, *arch);
                for n in names {
                    if !known.is_some_and(|k| k.contains_key(n)) {
                        return Err(format!(
                            "toolchains.{name}.archs.{arch}: package {n} has no entry in packages.{}.{arch}",
                            t.release
                        ));
                    }
                }
            }
        }
        if let Some(b) = &self.bootstrap {
            if !self
                .table(&b.release, b.arch)
                .is_some_and(|k| k.contains_key(&b.package))
            {
                return Err(format!(
                    "bootstrap: package {} has no entry in packages.{}.{}",
                    b.package, b.release, b.arch
                ));
            }
            if Digest::from_hex(&b.nar_hash).is_none() {
                return Err(format!(
                    "bootstrap: narHash {:?} is not 64 lowercase hex digits",
                    b.nar_hash
                ));
            }
        }
        Ok(())
    }

    /// The pinned packages of `release` (a codename) for `arch`.
    pub fn table(&self, release: &str, arch: Arch) -> Option<&BTreeMap<String, Package>> {
        self.packages.get(release)?.get(&arch)
    }

    /// The `distro` qualifier of the purls of `release`'s packages
    /// (`debian-12`); a validated lock only holds releases kiln knows.
    pub fn distro(release: &str) -> String {
        Release::by_codename(release)
            .unwrap_or(release::DEFAULT)
            .distro()
    }

    /// Every (release, arch, packages) table.
    pub fn tables(&self) -> impl Iterator<Item = (&str, Arch, &BTreeMap<String, Package>)> {
        self.packages.iter().flat_map(|(release, by_arch)| {
            by_arch
                .iter()
                .map(move |(arch, pkgs)| (release.as_str(), *arch, pkgs))
        })
    }

    /// The deterministic bytes: sorted keys, two-space indent, trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::json::pretty(self)
    }

    /// Writes the lock atomically (temp file in the same directory + rename).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        crate::fsutil::write_atomic(path, &self.to_bytes()).map_err(|error| LockError::Write {
            path: path.to_path_buf(),
            error,
        })
    }

    /// `kiln lock --check`: offline, whether the lock still matches the
    /// definitions. `path` names the lock in the error.
    pub fn check(
        &self,
        specs: &[ImageSpec],
        toolchains: &[Toolchain],
        path: &Path,
    ) -> Result<(), LockError> {
        let mut problems = self.image_problems(specs, true);
        for t in toolchains {
            let Some(entry) = self.toolchains.get(&t.name) else {
                problems.push(format!("toolchain {}: no entry", t.name));
                continue;
            };
            if entry.inputs != t.lock_inputs() {
                problems.push(format!("toolchain {}: its definition changed (archs, suites or packages) since it was locked", t.name));
            }
        }
        for name in self.toolchains.keys() {
            if !toolchains.iter().any(|t| &t.name == name) {
                problems.push(format!(
                    "toolchain {name}: locked, but there is no such definition any more"
                ));
            }
        }
        problems.extend(self.python_problems(specs, path));
        if !toolchains.is_empty() && self.bootstrap.is_none() {
            problems.push("bootstrap: no entry (toolchains need busybox)".to_string());
        }
        stale(path, problems)
    }

    /// Like [`Lock::check`] for `specs` only; `complete` also refuses
    /// locked images that no definition declares any more.
    pub fn check_images(
        &self,
        specs: &[ImageSpec],
        complete: bool,
        path: &Path,
    ) -> Result<(), LockError> {
        let mut problems = self.image_problems(specs, complete);
        problems.extend(self.python_problems(specs, path));
        stale(path, problems)
    }

    /// A Python application's wheels must be locked for its archs and for
    /// its requirements file as it is now (read next to the lock).
    fn python_problems(&self, specs: &[ImageSpec], path: &Path) -> Vec<String> {
        let project = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        for spec in specs {
            let name = spec.full_name();
            let Some(read) = crate::wheels::requirements_of(project, spec) else {
                continue;
            };
            let Some(entry) = self.images.get(&name) else {
                continue;
            };
            let Some(py) = &entry.python else {
                problems.push(format!("image {name}: its wheels are not locked"));
                continue;
            };
            match read {
                Err(e) => problems.push(format!("image {name}: {e}")),
                Ok((file, _, digest)) if digest != py.requirements => problems.push(format!(
                    "image {name}: {} changed since its wheels were locked",
                    file.display()
                )),
                Ok(_) => {}
            }
            for arch in &spec.archs {
                if !py.wheels.contains_key(arch) {
                    problems.push(format!("image {name}: no {arch} wheels"));
                }
            }
        }
        problems
    }

    /// What makes the lock stale for `specs` (see [`Lock::check_images`]).
    fn image_problems(&self, specs: &[ImageSpec], complete: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        for spec in specs {
            let name = spec.full_name();
            names.insert(name.clone());
            let Some(entry) = self.images.get(&name) else {
                problems.push(format!("image {name}: no entry"));
                continue;
            };
            if entry.inputs != spec.lock_inputs() {
                problems.push(format!("image {name}: its definition changed (archs, suites, packages or layer_budget) since it was locked"));
                continue;
            }
            let release = &entry.release;
            for arch in &spec.archs {
                let Some(plan) = entry.archs.get(arch) else {
                    problems.push(format!("image {name}: no {arch} entry"));
                    continue;
                };
                for p in &plan.packages {
                    match self.table(release, *arch).and_then(|m| m.get(p)) {
                        None => problems.push(format!("image {name}: {release} {arch} package {p} has no entry")),
                        Some(pkg) if !spec.suites.contains(&pkg.suite) => {
                            problems.push(format!("image {name}: {arch} package {p} comes from {}, which the image does not use", pkg.suite))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        for name in self.images.keys().filter(|_| complete) {
            if !names.contains(name) {
                problems.push(format!(
                    "image {name}: locked, but there is no such definition any more"
                ));
            }
        }
        problems
    }

    /// Every (arch, name, package) of `images` (all images when `None`),
    /// restricted to `archs` when given; sorted and without duplicates.
    /// The packages of toolchain `name` (every arch it has, foreign
    /// packages included).
    pub fn select_toolchain(&self, name: &str) -> Result<Vec<(Arch, String, &Package)>, LockError> {
        let t = self
            .toolchains
            .get(name)
            .ok_or_else(|| LockError::Invalid {
                path: PathBuf::from(FILE_NAME),
                message: format!("toolchain {name} has no entry"),
            })?;
        let wanted: BTreeSet<(Arch, String)> = t
            .archs
            .iter()
            .chain(t.foreign.iter())
            .flat_map(|(arch, names)| names.iter().map(|n| (*arch, n.clone())))
            .collect();
        wanted
            .into_iter()
            .map(|(arch, name)| {
                let p = self.pinned(&t.release, arch, &name)?;
                Ok((arch, name, p))
            })
            .collect()
    }

    /// The entry of `name` in `packages.<release>.<arch>`.
    fn pinned(&self, release: &str, arch: Arch, name: &str) -> Result<&Package, LockError> {
        self.table(release, arch)
            .and_then(|m| m.get(name))
            .ok_or_else(|| LockError::Invalid {
                path: PathBuf::from(FILE_NAME),
                message: format!("package {name} ({release} {arch}) has no entry"),
            })
    }

    pub fn select(
        &self,
        images: Option<&[String]>,
        archs: Option<&[Arch]>,
    ) -> Result<Vec<(Arch, String, &Package)>, LockError> {
        // The same (arch, name) of two releases is two .debs.
        let mut wanted: BTreeSet<(Arch, String, &str)> = BTreeSet::new();
        match images {
            None => {
                for (release, arch, pkgs) in self.tables() {
                    wanted.extend(pkgs.keys().map(|n| (arch, n.clone(), release)));
                }
            }
            Some(list) => {
                for image in list {
                    let entry = self
                        .images
                        .get(image)
                        .ok_or_else(|| LockError::NotLocked(image.clone()))?;
                    for (arch, plan) in &entry.archs {
                        wanted.extend(
                            plan.packages
                                .iter()
                                .map(|n| (*arch, n.clone(), entry.release.as_str())),
                        );
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (arch, name, release) in wanted {
            if archs.is_some_and(|a| !a.contains(&arch)) {
                continue;
            }
            let p = self.pinned(release, arch, &name)?;
            out.push((arch, name, p));
        }
        Ok(out)
    }
}

/// A format-1 lock as format 2. Format 1 had one package table for every
/// image: each image, toolchain and the bootstrap takes the release of its
/// packages' suites (the default release when it has none), and gets the
/// packages it names in that release's table. A package the new form
/// cannot place is left out, and validation then names it.
fn split_by_release(mut v: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let old = v["packages"].take();
    // The release of the first of (arch, name) whose suite names one.
    let release_of = |names: &[(String, String)]| -> String {
        names
            .iter()
            .filter_map(|(arch, n)| old[arch.as_str()][n.as_str()]["suite"].as_str())
            .find_map(|suite| Release::of_suite(suite).ok())
            .unwrap_or(release::DEFAULT)
            .codename
            .to_string()
    };
    let mut tables: Map<String, Value> = Map::new();
    let mut place = |release: &str, arch: &str, name: &str| {
        if let Some(p) = old[arch].get(name) {
            let table = tables
                .entry(release.to_string())
                .or_insert_with(|| json!({}));
            if table.get(arch).is_none() {
                table[arch] = json!({});
            }
            table[arch][name] = p.clone();
        }
    };
    let names_of = |archs: &Value| -> Vec<(String, String)> {
        archs
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(arch, names)| {
                let list = names.get("packages").unwrap_or(names);
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .map(|n| (arch.clone(), n.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for section in ["images", "toolchains"] {
        let Some(entries) = v.get_mut(section).and_then(|e| e.as_object_mut()) else {
            continue;
        };
        for entry in entries.values_mut() {
            let mut names = names_of(&entry["archs"]);
            names.extend(names_of(&entry["foreign"]));
            let release = release_of(&names);
            for (arch, name) in &names {
                place(&release, arch, name);
            }
            entry["release"] = release.into();
        }
    }
    if let Some(b) = v.get_mut("bootstrap").filter(|b| b.is_object()) {
        let (arch, name) = (
            b["arch"].as_str().unwrap_or_default().to_string(),
            b["package"].as_str().unwrap_or_default().to_string(),
        );
        let release = release_of(&[(arch.clone(), name.clone())]);
        place(&release, &arch, &name);
        b["release"] = release.into();
    }
    v["packages"] = Value::Object(tables);
    v["version"] = FORMAT_VERSION.into();
    v
}

/// `Ok` without problems, else the stale-lock error listing them.
fn stale(path: &Path, problems: Vec<String>) -> Result<(), LockError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LockError::Stale {
            path: path.to_path_buf(),
            problems,
        })
    }
}

mod resolve;
mod summary;

pub use resolve::*;
pub use summary::*;

#[cfg(test)]
mod tests;
