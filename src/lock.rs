//! `kiln.lock`: the model, its deterministic JSON form (docs/internals.md),
//! the offline staleness check, and turning verified indexes plus the image
//! definitions into a new lock.
//!
//! The lock holds archive-relative paths only, never a URL: it stays valid
//! across mirrors, and the flake reads it with `builtins.fromJSON`.

use crate::debian::release::SuiteIndex;
use crate::debian::resolve::{plan_layers, resolve, Request, ResolveError, Universe};
use crate::digest::Digest;
use crate::nixstore;
use crate::spec::{Arch, ImageSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File name of the lock in a project.
pub const FILE_NAME: &str = "kiln.lock";

/// The format version this kiln reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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
    #[error("image {image}: {error}")]
    Resolve {
        image: String,
        error: Box<ResolveError>,
    },
    #[error("{arch}: {name} resolves to {version_a} for {image_a} but to {version_b} for {image_b}; a lock holds one version per package (give both images the same suites, or run `kiln lock` for all images)")]
    Conflict {
        arch: Arch,
        name: String,
        image_a: String,
        version_a: String,
        image_b: String,
        version_b: String,
    },
    #[error("image {image}: suite {suite} was not loaded for {arch}")]
    NotLoaded {
        image: String,
        suite: String,
        arch: Arch,
    },
    #[error("no image named {0} among the definitions")]
    UnknownImage(String),
    #[error("kiln.lock has no image named {0}; run `kiln lock`")]
    NotLocked(String),
}

/// The signed index a suite was locked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LockedSuite {
    pub codename: String,
    pub suite: String,
    pub date: String,
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
    pub inputs: Digest,
    pub created: i64,
    pub archs: BTreeMap<Arch, ImageArch>,
}

/// The whole lock. Every map is a BTreeMap, and the bytes go through
/// `json::pretty`, so the same content always gives the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub sources: BTreeMap<String, LockedSuite>,
    pub packages: BTreeMap<Arch, BTreeMap<String, Package>>,
    pub images: BTreeMap<String, Image>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock {
            version: FORMAT_VERSION,
            sources: BTreeMap::new(),
            packages: BTreeMap::new(),
            images: BTreeMap::new(),
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
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if n == FORMAT_VERSION as u64 => {}
            Some(n) => {
                return Err(LockError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "format version {n} is not supported (this kiln reads {FORMAT_VERSION})"
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
        for (arch, pkgs) in &self.packages {
            for (name, p) in pkgs {
                let what = format!("packages.{arch}.{name}");
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
                let known = self.packages.get(arch);
                for name in &plan.packages {
                    if !known.is_some_and(|k| k.contains_key(name)) {
                        return Err(format!(
                            "{what}: package {name} has no entry in packages.{arch}"
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
        Ok(())
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
    pub fn check(&self, specs: &[ImageSpec], path: &Path) -> Result<(), LockError> {
        self.check_images(specs, true, path)
    }

    /// Like [`Lock::check`] for `specs` only; `complete` also refuses
    /// locked images that no definition declares any more.
    pub fn check_images(
        &self,
        specs: &[ImageSpec],
        complete: bool,
        path: &Path,
    ) -> Result<(), LockError> {
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
            for arch in &spec.archs {
                let Some(plan) = entry.archs.get(arch) else {
                    problems.push(format!("image {name}: no {arch} entry"));
                    continue;
                };
                for p in &plan.packages {
                    match self.packages.get(arch).and_then(|m| m.get(p)) {
                        None => problems.push(format!("image {name}: {arch} package {p} has no entry")),
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
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LockError::Stale {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every (arch, name, package) of `images` (all images when `None`),
    /// restricted to `archs` when given; sorted and without duplicates.
    pub fn select(
        &self,
        images: Option<&[String]>,
        archs: Option<&[Arch]>,
    ) -> Result<Vec<(Arch, String, &Package)>, LockError> {
        let mut wanted: BTreeSet<(Arch, String)> = BTreeSet::new();
        match images {
            None => {
                for (arch, pkgs) in &self.packages {
                    wanted.extend(pkgs.keys().map(|n| (*arch, n.clone())));
                }
            }
            Some(list) => {
                for image in list {
                    let entry = self
                        .images
                        .get(image)
                        .ok_or_else(|| LockError::NotLocked(image.clone()))?;
                    for (arch, plan) in &entry.archs {
                        wanted.extend(plan.packages.iter().map(|n| (*arch, n.clone())));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (arch, name) in wanted {
            if archs.is_some_and(|a| !a.contains(&arch)) {
                continue;
            }
            let p = self
                .packages
                .get(&arch)
                .and_then(|m| m.get(&name))
                .ok_or_else(|| LockError::Invalid {
                    path: PathBuf::from(FILE_NAME),
                    message: format!("package {name} ({arch}) has no entry"),
                })?;
            out.push((arch, name, p));
        }
        Ok(out)
    }
}

/// What changed for one image and architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchChange {
    pub packages: usize,
    pub added: Vec<Versioned>,
    pub removed: Vec<Versioned>,
    pub upgraded: Vec<Changed>,
    pub downgraded: Vec<Changed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versioned {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    pub from: String,
    pub to: String,
}

impl ArchChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
    }
}

/// What `kiln lock` did: per locked image and arch, the change against the previous lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub images: BTreeMap<String, BTreeMap<Arch, ArchChange>>,
    /// Suite → Date of the signed index used.
    pub sources: BTreeMap<String, String>,
    /// Images kept from the previous lock untouched.
    pub kept: Vec<String>,
    /// Images dropped because their definition is gone.
    pub dropped: Vec<String>,
    /// What was locked as asked but deserves a look: conflicting packages
    /// both named in an image's packages.include.
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn changed(&self) -> bool {
        !self.dropped.is_empty()
            || self
                .images
                .values()
                .flat_map(|a| a.values())
                .any(|c| !c.is_empty())
    }

    /// The human form `kiln lock` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (suite, date) in &self.sources {
            out.push_str(&format!("{suite}: signed index of {date}\n"));
        }
        for (image, archs) in &self.images {
            for (arch, c) in archs {
                let delta = if c.is_empty() {
                    "unchanged".to_string()
                } else {
                    format!(
                        "+{} -{} ↑{} ↓{}",
                        c.added.len(),
                        c.removed.len(),
                        c.upgraded.len(),
                        c.downgraded.len()
                    )
                };
                out.push_str(&format!(
                    "{image} {arch}: {} packages ({delta})\n",
                    c.packages
                ));
                for a in &c.added {
                    out.push_str(&format!("  + {} {}\n", a.name, a.version));
                }
                for r in &c.removed {
                    out.push_str(&format!("  - {} {}\n", r.name, r.version));
                }
                for u in c.upgraded.iter().chain(&c.downgraded) {
                    out.push_str(&format!("  ~ {} {} → {}\n", u.name, u.from, u.to));
                }
            }
        }
        for k in &self.kept {
            out.push_str(&format!("{k}: kept as locked\n"));
        }
        for d in &self.dropped {
            out.push_str(&format!("{d}: dropped (no definition)\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// Which suites (and for which architectures) locking `specs` needs.
pub fn needed_suites(specs: &[&ImageSpec]) -> BTreeMap<String, BTreeSet<Arch>> {
    let mut out: BTreeMap<String, BTreeSet<Arch>> = BTreeMap::new();
    for s in specs {
        for suite in &s.suites {
            out.entry(suite.clone())
                .or_default()
                .extend(s.archs.iter().copied());
        }
    }
    out
}

/// Builds a new lock. `specs` are all images of all definitions; `only`
/// limits resolution to those names (the others keep their entries from
/// `previous`, and their package versions are preferred so that shared
/// packages stay at one version); `indexes` must hold every suite the
/// resolved images use.
pub fn build(
    specs: &[ImageSpec],
    indexes: &BTreeMap<String, SuiteIndex>,
    previous: Option<&Lock>,
    only: Option<&BTreeSet<String>>,
) -> Result<(Lock, Summary), LockError> {
    if let Some(only) = only {
        for name in only {
            if !specs.iter().any(|s| &s.full_name() == name) {
                return Err(LockError::UnknownImage(name.clone()));
            }
        }
    }
    let targets: Vec<&ImageSpec> = specs
        .iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s.full_name())))
        .collect();
    let empty = Lock::default();
    let prev = previous.unwrap_or(&empty);
    let mut lock = Lock::default();
    let mut summary = Summary::default();

    // Images kept from the previous lock (only with a partial update).
    let mut owner: BTreeMap<(Arch, String), (String, String)> = BTreeMap::new();
    let mut pins: BTreeMap<Arch, BTreeMap<String, String>> = BTreeMap::new();
    if only.is_some() {
        for (name, entry) in &prev.images {
            if targets.iter().any(|t| &t.full_name() == name) {
                continue;
            }
            lock.images.insert(name.clone(), entry.clone());
            summary.kept.push(name.clone());
            for (arch, plan) in &entry.archs {
                for p in &plan.packages {
                    let pkg = &prev.packages[arch][p];
                    lock.packages
                        .entry(*arch)
                        .or_default()
                        .insert(p.clone(), pkg.clone());
                    owner.insert((*arch, p.clone()), (name.clone(), pkg.version.clone()));
                    pins.entry(*arch)
                        .or_default()
                        .insert(p.clone(), pkg.version.clone());
                    if let Some(src) = prev.sources.get(&pkg.suite) {
                        lock.sources.insert(pkg.suite.clone(), src.clone());
                    }
                }
            }
        }
    } else {
        let names: BTreeSet<String> = specs.iter().map(|s| s.full_name()).collect();
        summary.dropped = prev
            .images
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
    }

    let mut sorted = targets.clone();
    sorted.sort_by_key(|s| s.full_name());
    let mut universes: BTreeMap<(Vec<String>, Arch), Universe> = BTreeMap::new();
    for spec in sorted {
        let image = spec.full_name();
        let mut created = 0i64;
        let mut archs = BTreeMap::new();
        let mut changes = BTreeMap::new();
        for suite in &spec.suites {
            let idx = indexes.get(suite).ok_or_else(|| LockError::NotLoaded {
                image: image.clone(),
                suite: suite.clone(),
                arch: spec.archs[0],
            })?;
            lock.sources.insert(suite.clone(), source_entry(idx));
        }
        let mut archs_sorted = spec.archs.clone();
        archs_sorted.sort();
        for arch in archs_sorted {
            // Building a universe indexes ~63,000 packages: once per suite list and arch.
            let key = (spec.suites.clone(), arch);
            if !universes.contains_key(&key) {
                universes.insert(key.clone(), universe(spec, indexes, arch, &image)?);
            }
            let universe = &universes[&key];
            let req = Request {
                roots: spec.packages.include.iter().map(|p| p.0.clone()).collect(),
                exclude: spec.packages.exclude.iter().map(|p| p.0.clone()).collect(),
                pins: pins.get(&arch).cloned().unwrap_or_default(),
            };
            let resolved = match resolve(universe, &req) {
                Ok(r) => r,
                Err(ResolveError::UnknownPackage {
                    name, arch, suites, ..
                }) => {
                    let hint = other_arch_hint(spec, indexes, arch, &name, &image)?;
                    return Err(LockError::Resolve {
                        image,
                        error: Box::new(ResolveError::UnknownPackage {
                            name,
                            arch,
                            suites,
                            hint,
                        }),
                    });
                }
                Err(e) => {
                    return Err(LockError::Resolve {
                        image,
                        error: Box::new(e),
                    })
                }
            };
            summary.warnings.extend(
                resolved
                    .accepted_conflicts
                    .iter()
                    .map(|c| format!("image {image}: {c}")),
            );
            let mut sizes = BTreeMap::new();
            for (name, cand) in &resolved.packages {
                let pkg = Package {
                    version: cand.pkg.version_text.clone(),
                    architecture: cand.pkg.architecture.clone(),
                    source: cand.pkg.source.clone(),
                    source_version: cand.pkg.source_version.clone(),
                    suite: cand.suite.to_string(),
                    filename: cand.pkg.filename.clone(),
                    sha256: cand.pkg.sha256.clone(),
                    size: cand.pkg.size,
                };
                sizes.insert(name.clone(), pkg.size);
                created = created.max(indexes[cand.suite].release.epoch);
                let slot = lock.packages.entry(arch).or_default();
                match slot.get(name) {
                    // The same .deb may be offered by two suites; which one it came from does not matter.
                    Some(existing)
                        if (&existing.version, &existing.sha256) != (&pkg.version, &pkg.sha256) =>
                    {
                        let (other, version_a) = owner
                            .get(&(arch, name.clone()))
                            .cloned()
                            .unwrap_or_default();
                        return Err(LockError::Conflict {
                            arch,
                            name: name.clone(),
                            image_a: other,
                            version_a,
                            image_b: image.clone(),
                            version_b: pkg.version,
                        });
                    }
                    Some(_) => {}
                    None => {
                        slot.insert(name.clone(), pkg.clone());
                        owner.insert((arch, name.clone()), (image.clone(), pkg.version.clone()));
                    }
                }
            }
            let packages: Vec<String> = resolved.packages.keys().cloned().collect();
            let mut deps = resolved.deps.clone();
            for p in &packages {
                deps.entry(p.clone()).or_default();
            }
            let layers = plan_layers(&deps, &sizes, spec.layer_budget);
            changes.insert(
                arch,
                diff(prev, &image, arch, &packages, lock.packages.get(&arch)),
            );
            archs.insert(arch, ImageArch { packages, layers });
        }
        // The newest index date moves every day (the security suite is
        // re-signed daily); an image whose packages did not change keeps its
        // creation time, so its digest does not move on a no-op relock.
        if unchanged(prev, &image, &archs, &lock.packages) {
            created = prev.images[&image].created;
        }
        lock.images.insert(
            image.clone(),
            Image {
                inputs: spec.lock_inputs(),
                created,
                archs,
            },
        );
        summary.images.insert(image, changes);
    }
    for (suite, src) in &lock.sources {
        summary.sources.insert(suite.clone(), src.date.clone());
    }
    lock.validate().map_err(|message| LockError::Invalid {
        path: PathBuf::from(FILE_NAME),
        message,
    })?;
    Ok((lock, summary))
}

fn source_entry(idx: &SuiteIndex) -> LockedSuite {
    let r = &idx.release;
    LockedSuite {
        codename: r.codename.clone(),
        suite: r.suite.clone(),
        date: r.date.clone(),
        epoch: r.epoch,
        in_release: r.in_release,
        signer: r.signer.clone(),
        indexes: idx.indexes.clone(),
    }
}

fn universe<'a>(
    spec: &ImageSpec,
    indexes: &'a BTreeMap<String, SuiteIndex>,
    arch: Arch,
    image: &str,
) -> Result<Universe<'a>, LockError> {
    let mut sources = Vec::new();
    for suite in &spec.suites {
        let idx = indexes.get(suite).ok_or_else(|| LockError::NotLoaded {
            image: image.to_string(),
            suite: suite.clone(),
            arch,
        })?;
        let pkgs = idx
            .packages
            .get(&arch)
            .ok_or_else(|| LockError::NotLoaded {
                image: image.to_string(),
                suite: suite.clone(),
                arch,
            })?;
        sources.push((idx.release.name.as_str(), pkgs.as_slice()));
    }
    Ok(Universe::new(arch, &sources))
}

/// " (it exists for arm64)": an unknown package that exists for another of
/// the image's architectures is an arch-specific gap, worth saying so.
fn other_arch_hint(
    spec: &ImageSpec,
    indexes: &BTreeMap<String, SuiteIndex>,
    arch: Arch,
    name: &str,
    image: &str,
) -> Result<String, LockError> {
    let mut found = Vec::new();
    for other in &spec.archs {
        if *other != arch && universe(spec, indexes, *other, image)?.knows(name) {
            found.push(other.to_string());
        }
    }
    Ok(if found.is_empty() {
        String::new()
    } else {
        format!(
            " (it exists for {}: only {arch} lacks it)",
            found.join(", ")
        )
    })
}

/// Whether `image` resolves to exactly the .debs (and layer plan) it had in
/// `prev`.
fn unchanged(
    prev: &Lock,
    image: &str,
    archs: &BTreeMap<Arch, ImageArch>,
    packages: &BTreeMap<Arch, BTreeMap<String, Package>>,
) -> bool {
    let Some(before) = prev.images.get(image) else {
        return false;
    };
    before.archs == *archs
        && archs.iter().all(|(arch, a)| {
            a.packages.iter().all(|n| {
                let old = prev.packages.get(arch).and_then(|m| m.get(n));
                let new = packages.get(arch).and_then(|m| m.get(n));
                matches!((old, new), (Some(o), Some(n)) if o.sha256 == n.sha256)
            })
        })
}

fn diff(
    prev: &Lock,
    image: &str,
    arch: Arch,
    now: &[String],
    pkgs: Option<&BTreeMap<String, Package>>,
) -> ArchChange {
    let version = |m: Option<&BTreeMap<String, Package>>, n: &str| {
        m.and_then(|m| m.get(n))
            .map(|p| p.version.clone())
            .unwrap_or_default()
    };
    let before: BTreeSet<&String> = prev
        .images
        .get(image)
        .and_then(|i| i.archs.get(&arch))
        .map(|a| a.packages.iter().collect())
        .unwrap_or_default();
    let after: BTreeSet<&String> = now.iter().collect();
    let old = prev.packages.get(&arch);
    let mut c = ArchChange {
        packages: now.len(),
        ..Default::default()
    };
    for n in after.difference(&before) {
        c.added.push(Versioned {
            name: (*n).clone(),
            version: version(pkgs, n),
        });
    }
    for n in before.difference(&after) {
        c.removed.push(Versioned {
            name: (*n).clone(),
            version: version(old, n),
        });
    }
    for n in after.intersection(&before) {
        let (from, to) = (version(old, n), version(pkgs, n));
        if from != to {
            let up = match (
                from.parse::<debversion::Version>(),
                to.parse::<debversion::Version>(),
            ) {
                (Ok(a), Ok(b)) => b > a,
                _ => true,
            };
            let ch = Changed {
                name: (*n).clone(),
                from,
                to,
            };
            if up {
                c.upgraded.push(ch);
            } else {
                c.downgraded.push(ch);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_packages;
    use crate::debian::release::{FileHash, Release};

    fn deb(name: &str, version: &str, arch: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nFilename: pool/main/{name}_{version}_{arch}.deb\nSize: {}\nSHA256: {}\n{extra}\n",
            name.len() * 1000,
            hex::encode(Digest::of(format!("{name}{version}").as_bytes()).0)
        )
    }

    fn suite(name: &str, epoch: i64, entries: &[String]) -> SuiteIndex {
        let text = entries.join("\n");
        let mut packages = BTreeMap::new();
        for arch in Arch::ALL {
            let t = text.replace("ARCH", arch.debian());
            packages.insert(arch, parse_packages(&t, name).unwrap());
        }
        let release = Release {
            name: name.into(),
            suite: format!("{name}-suite"),
            codename: name.into(),
            date: format!("date of {name}"),
            epoch,
            valid_until: None,
            acquire_by_hash: true,
            components: vec!["main".into()],
            architectures: vec!["amd64".into(), "arm64".into()],
            files: [(
                "main/binary-amd64/Packages.xz".to_string(),
                FileHash {
                    sha256: Digest::of(b"x"),
                    size: 1,
                },
            )]
            .into(),
            in_release: Digest::of(name.as_bytes()),
            signer: "00".repeat(20),
        };
        SuiteIndex {
            release,
            packages,
            indexes: [(
                "main/binary-amd64/Packages.xz".to_string(),
                Digest::of(b"x"),
            )]
            .into(),
        }
    }

    fn indexes(ssl: &str) -> BTreeMap<String, SuiteIndex> {
        let main = suite(
            "bookworm",
            1000,
            &[
                deb(
                    "ca-certificates",
                    "20230311",
                    "all",
                    "Depends: openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0",
                ),
                deb("openssl", "3.0.9-1", "ARCH", "Depends: libssl3 (>= 3.0.9)"),
                deb("libssl3", "3.0.9-1", "ARCH", "Depends: libc6"),
                deb("libc6", "2.36-9", "ARCH", ""),
                deb("tzdata", "2024a-0+deb12u1", "all", ""),
            ],
        );
        let sec = suite(
            "bookworm-security",
            2000,
            &[deb("libssl3", ssl, "ARCH", "Depends: libc6")],
        );
        [
            ("bookworm".to_string(), main),
            ("bookworm-security".to_string(), sec),
        ]
        .into()
    }

    fn spec(name: &str, include: &[&str], exclude: &[&str]) -> ImageSpec {
        let def: crate::spec::Definition = serde_json::from_value(serde_json::json!({
            "name": name,
            "description": "d",
            "suites": ["bookworm", "bookworm-security"],
            "packages": {"include": include, "exclude": exclude},
            "accounts": {"run_as": "65532"}
        }))
        .unwrap();
        def.image(None).unwrap()
    }

    fn specs() -> Vec<ImageSpec> {
        vec![
            spec(
                "certs",
                &["ca-certificates"],
                &["openssl", "debconf", "debconf-2.0"],
            ),
            spec("ssl", &["openssl"], &[]),
        ]
    }

    #[test]
    fn build_resolves_every_image_and_arch() {
        let (lock, summary) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        assert_eq!(
            lock.images["certs"].archs[&Arch::Amd64].packages,
            ["ca-certificates"]
        );
        assert_eq!(lock.images["certs"].created, 1000);
        let ssl = &lock.images["ssl"];
        assert_eq!(
            ssl.archs[&Arch::Arm64].packages,
            ["libc6", "libssl3", "openssl"]
        );
        assert_eq!(
            ssl.archs[&Arch::Arm64].layers,
            [["libc6"], ["libssl3"], ["openssl"]]
        );
        assert_eq!(ssl.created, 2000, "libssl3 comes from the security suite");
        assert_eq!(
            lock.packages[&Arch::Arm64]["libssl3"].suite,
            "bookworm-security"
        );
        assert_eq!(
            lock.packages[&Arch::Arm64]["libssl3"].filename,
            "pool/main/libssl3_3.0.11-1_arm64.deb"
        );
        assert_eq!(ssl.inputs, specs()[1].lock_inputs());
        assert_eq!(lock.sources["bookworm"].suite, "bookworm-suite");
        assert_eq!(summary.images["ssl"][&Arch::Amd64].added.len(), 3);
        lock.check(&specs(), Path::new("kiln.lock")).unwrap();
        // No URL or host anywhere.
        let text = String::from_utf8(lock.to_bytes()).unwrap();
        assert!(!text.contains("://"), "{text}");
    }

    #[test]
    fn a_relock_with_the_same_debs_keeps_the_creation_time() {
        let (first, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        // The security suite is re-signed (newer date), same packages.
        let mut later = indexes("3.0.11-1");
        later.get_mut("bookworm-security").unwrap().release.epoch = 3000;
        let (again, _) = build(&specs(), &later, Some(&first), None).unwrap();
        assert_eq!(again.images["ssl"].created, 2000);
        // A new libssl3 moves it.
        let mut newer = indexes("3.0.13-1");
        newer.get_mut("bookworm-security").unwrap().release.epoch = 3000;
        let (moved, _) = build(&specs(), &newer, Some(&first), None).unwrap();
        assert_eq!(moved.images["ssl"].created, 3000);
        assert_eq!(moved.images["certs"].created, 1000);
    }

    #[test]
    fn bytes_are_deterministic_and_sorted() {
        let (a, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        let mut rev = specs();
        rev.reverse();
        let (b, _) = build(&rev, &indexes("3.0.11-1"), None, None).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert!(
            text.ends_with("}\n") && text.starts_with("{\n  \"images\": {"),
            "{text}"
        );
        assert!(
            text.contains("\n      \"inputs\": \"sha256:"),
            "two-space indent:\n{text}"
        );
        // Round trip.
        let back = Lock::from_slice(&a.to_bytes(), Path::new("kiln.lock")).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.to_bytes(), a.to_bytes());
        // Insertion order does not matter.
        let mut c = Lock::default();
        for (k, v) in a.images.iter().rev() {
            c.images.insert(k.clone(), v.clone());
        }
        c.sources = a.sources.clone();
        c.packages = a.packages.clone();
        assert_eq!(c.to_bytes(), a.to_bytes());
    }

    #[test]
    fn update_reports_what_changed() {
        let (old, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        let mut changed = specs();
        changed[0] = spec(
            "certs",
            &["ca-certificates", "tzdata"],
            &["openssl", "debconf", "debconf-2.0"],
        );
        let (new, summary) = build(&changed, &indexes("3.0.13-1"), Some(&old), None).unwrap();
        let ssl = &summary.images["ssl"][&Arch::Amd64];
        assert_eq!(
            ssl.upgraded,
            [Changed {
                name: "libssl3".into(),
                from: "3.0.11-1".into(),
                to: "3.0.13-1".into()
            }]
        );
        let certs = &summary.images["certs"][&Arch::Arm64];
        assert_eq!(
            certs.added,
            [Versioned {
                name: "tzdata".into(),
                version: "2024a-0+deb12u1".into()
            }]
        );
        assert!(summary.changed());
        let text = summary.render();
        assert!(text.contains("  ~ libssl3 3.0.11-1 → 3.0.13-1"), "{text}");
        assert!(text.contains("  + tzdata 2024a-0+deb12u1"), "{text}");
        assert_eq!(new.packages[&Arch::Amd64]["libssl3"].version, "3.0.13-1");
        let (_, again) = build(&changed, &indexes("3.0.13-1"), Some(&new), None).unwrap();
        assert!(!again.changed());
    }

    #[test]
    fn partial_update_keeps_other_images_and_their_versions() {
        let (old, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        let mut changed = specs();
        changed[0] = spec(
            "certs",
            &["ca-certificates", "libssl3"],
            &["openssl", "debconf", "debconf-2.0"],
        );
        let only: BTreeSet<String> = ["certs".to_string()].into();
        // The kept image pins libssl3 at 3.0.11-1; it is no longer offered.
        let e = build(&changed, &indexes("3.0.13-1"), Some(&old), Some(&only))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("libssl3") && e.contains("3.0.11-1") && e.contains("3.0.13-1"),
            "{e}"
        );
        // With the pinned version still offered, it is reused.
        let (new, summary) =
            build(&changed, &indexes("3.0.11-1"), Some(&old), Some(&only)).unwrap();
        assert_eq!(new.images["ssl"], old.images["ssl"]);
        assert_eq!(summary.kept, ["ssl"]);
        assert_eq!(
            new.images["certs"].archs[&Arch::Amd64].packages,
            ["ca-certificates", "libc6", "libssl3"]
        );
        let e = build(
            &changed,
            &indexes("3.0.11-1"),
            Some(&old),
            Some(&["nope".to_string()].into()),
        )
        .unwrap_err();
        assert!(matches!(e, LockError::UnknownImage(_)));
    }

    #[test]
    fn check_names_the_stale_image() {
        let (lock, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        let p = Path::new("kiln.lock");
        let mut changed = specs();
        changed[1] = spec("ssl", &["openssl", "tzdata"], &[]);
        let e = lock.check(&changed, p).unwrap_err().to_string();
        assert!(
            e.contains("image ssl: its definition changed") && !e.contains("image certs"),
            "{e}"
        );
        changed.push(spec("new", &["tzdata"], &[]));
        let e = lock.check(&changed, p).unwrap_err().to_string();
        assert!(e.contains("image new: no entry"), "{e}");
        let e = lock.check(&specs()[..1], p).unwrap_err().to_string();
        assert!(
            e.contains("image ssl: locked, but there is no such definition"),
            "{e}"
        );
        let mut broken = lock.clone();
        broken
            .packages
            .get_mut(&Arch::Amd64)
            .unwrap()
            .remove("libc6");
        let e = broken.check(&specs(), p).unwrap_err().to_string();
        assert!(
            e.contains("image ssl: amd64 package libc6 has no entry"),
            "{e}"
        );
    }

    #[test]
    fn invalid_locks_are_rejected() {
        let (lock, _) = build(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
        let p = Path::new("kiln.lock");
        let text = String::from_utf8(lock.to_bytes()).unwrap();
        let e = Lock::from_slice(
            // A URL instead of a pool path (the lock holds no URL).
            text.replacen("pool/main/libc6", "file:///pool/main/libc6", 1)
                .as_bytes(),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a relative archive path"), "{e}");
        let e = Lock::from_slice(
            text.replace("\"version\": 1", "\"version\": 2").as_bytes(),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("format version 2"), "{e}");
        let e = Lock::from_slice(text.replacen("\"size\":", "\"sise\":", 1).as_bytes(), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sise"), "{e}");
        assert!(matches!(
            Lock::read(Path::new("/nonexistent/kiln.lock")),
            Err(LockError::Missing { .. })
        ));
    }

    #[test]
    fn unknown_package_for_one_arch_says_so() {
        let mut idx = indexes("3.0.11-1");
        idx.get_mut("bookworm")
            .unwrap()
            .packages
            .get_mut(&Arch::Arm64)
            .unwrap()
            .retain(|p| p.name != "tzdata");
        let e = build(&[spec("tz", &["tzdata"], &[])], &idx, None, None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "image tz: unknown package tzdata for arm64 (searched bookworm, bookworm-security) (it exists for amd64: only arm64 lacks it)");
    }
}
