//! SLSA provenance v1 for what `kiln build` built: the control plane's
//! record of the build (docs/provenance.md).
//!
//! The statement's subjects are the image index and every platform
//! manifest; `externalParameters` are everything the user chose (image,
//! variant, attribute, archs, source revision, lock and definition
//! digests); `internalParameters` what the platform set (Nix version and
//! sandbox settings, whether the build was isolated, the seed);
//! `resolvedDependencies` every .deb (purl + sha256), the seed, the lock,
//! the definition and the source commit; `runDetails` who built it
//! (truthfully: a developer machine is never a hosted builder), when, with
//! which derivations and outputs.
//!
//! The statement is written unsigned; `kiln sign` signs it with the key the
//! sandboxed build never sees.

use crate::lock::Lock;
use crate::nixcmd::{Built, NixSettings};
use crate::seedbuild::Pin;
use kiln_seed::attest::statement::{
    rfc3339_utc, BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor,
    RunDetails,
};
use kiln_seed::attest::Statement;
use kiln_seed::digest::Digest;
use kiln_seed::verify::provenance::{
    deb_purl, ExternalParameters, FileParameter, InternalParameters, PolicyParameter,
    SourceParameter, KILN_BUILD_TYPE, LOCAL_BUILDER_PREFIX,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where `kiln build` writes provenance by default (relative to the project).
pub const DEFAULT_DIR: &str = ".kiln/provenance";

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// What the seed or an application was built from could not be read.
    #[error("build inputs: {0}")]
    Inputs(String),
    #[error("{}: {message}", path.display())]
    Summary { path: PathBuf, message: String },
    #[error("kiln.lock")]
    Lock(#[source] Box<crate::lock::LockError>),
    #[error("kiln.lock has no entry for image {image} ({arch}); run `kiln lock`")]
    NotLocked { image: String, arch: String },
    #[error("kiln.lock: {arch} package {name} is listed for {image} but not pinned")]
    Unpinned {
        image: String,
        arch: String,
        name: String,
    },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: not an in-toto statement with a SLSA provenance: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error(transparent)]
    Nix(#[from] crate::nixcmd::NixError),
}

/// What a kiln build output's `image.json` says about the image.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltImage {
    pub name: String,
    pub variant: Option<String>,
    pub tag: String,
    /// The image index, for a multi-platform output.
    pub index: Option<Digest>,
    /// Platform manifests by architecture.
    pub manifests: BTreeMap<String, Digest>,
}

impl BuiltImage {
    pub fn full_name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{v}", self.name),
            None => self.name.clone(),
        }
    }

    /// The root digest (index, or the only manifest).
    pub fn root(&self) -> Option<Digest> {
        self.index
            .or_else(|| self.manifests.values().next().copied())
    }

    /// Statement subjects: `<name>:<tag>` for the index, `<name>:<tag>-<arch>`
    /// for each manifest (the ref names in the layout).
    pub fn subjects(&self) -> Vec<(String, Digest)> {
        let mut v = Vec::new();
        if let Some(i) = self.index {
            v.push((format!("{}:{}", self.name, self.tag), i));
        }
        for (arch, d) in &self.manifests {
            v.push((format!("{}:{}-{arch}", self.name, self.tag), *d));
        }
        v
    }

    /// Reads `<out>/image.json` (index or per-arch summary, docs/internals.md).
    pub fn read(out: &Path) -> Result<BuiltImage, ProvenanceError> {
        let path = out.join("image.json");
        let bytes = std::fs::read(&path).map_err(|error| ProvenanceError::Read {
            path: path.clone(),
            error,
        })?;
        let err = |message: String| ProvenanceError::Summary {
            path: path.clone(),
            message,
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
        let digest = |p: &str| -> Result<Digest, ProvenanceError> {
            let s = text(p).ok_or_else(|| err(format!("no {p}")))?;
            Digest::parse(&s).map_err(err)
        };
        let name = text("/name").ok_or_else(|| err("no name".into()))?;
        let tag = text("/tag").ok_or_else(|| err("no tag".into()))?;
        let variant = text("/variant");
        let mut manifests = BTreeMap::new();
        let index = if v.get("index").is_some() {
            for arch in v["manifests"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                manifests.insert(arch.clone(), digest(&format!("/manifests/{arch}/digest"))?);
            }
            Some(digest("/index/digest")?)
        } else {
            let arch = text("/arch").ok_or_else(|| err("no arch".into()))?;
            manifests.insert(arch, digest("/manifest/digest")?);
            None
        };
        if manifests.is_empty() {
            return Err(err("no platform manifests".into()));
        }
        Ok(BuiltImage {
            name,
            variant,
            tag,
            index,
            manifests,
        })
    }
}

/// The source tree: where it comes from, which commit, whether it had
/// uncommitted changes.
pub fn source_of(project: &Path) -> SourceParameter {
    let git = |args: &[&str]| crate::tool::git(project, args).map(|s| s.trim().to_string());
    let abs = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf());
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        return SourceParameter {
            uri: format!("file://{}", abs.display()),
            revision: None,
            dirty: true,
        };
    };
    let uri = match git(&["remote", "get-url", "origin"]).filter(|u| !u.is_empty()) {
        Some(url) if url.contains("://") => format!("git+{url}"),
        // scp-like `git@host:path` has no scheme; keep it readable.
        Some(url) => format!("git+ssh://{}", url.replacen(':', "/", 1)),
        None => format!("git+file://{top}"),
    };
    SourceParameter {
        uri,
        revision: git(&["rev-parse", "HEAD"]),
        // Nix only sees tracked files: untracked ones cannot change the build.
        dirty: git(&["status", "--porcelain", "--untracked-files=no"])
            .is_none_or(|s| !s.is_empty()),
    }
}

/// `runDetails.builder.id`: the CI workflow identity in a recognized CI,
/// else a local builder named by a hash of the host name (never a hosted
/// builder's id).
pub fn builder_id(env: &dyn Fn(&str) -> Option<String>) -> (String, BTreeMap<String, String>) {
    let mut extra = BTreeMap::new();
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        if let Some(wf) = env("GITHUB_WORKFLOW_REF") {
            let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            if let Some(r) = env("RUNNER_ENVIRONMENT") {
                extra.insert("runnerEnvironment".into(), r);
            }
            return (format!("{server}/{wf}"), extra);
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let hash = Digest::of(host.trim().as_bytes()).hex();
    (format!("{LOCAL_BUILDER_PREFIX}{}", &hash[..16]), extra)
}

/// `metadata.invocationId`: the CI run, else a random UUID (v4).
pub fn invocation_id(env: &dyn Fn(&str) -> Option<String>) -> String {
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        if let (Some(repo), Some(run)) = (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            let attempt = env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
            return format!("{server}/{repo}/actions/runs/{run}/attempts/{attempt}");
        }
    }
    random_uuid()
}

pub fn random_uuid() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sha256_file(path: &Path) -> Result<Digest, ProvenanceError> {
    let f = std::fs::File::open(path).map_err(|error| ProvenanceError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    Digest::of_reader(std::io::BufReader::new(f))
        .map(|(d, _)| d)
        .map_err(|error| ProvenanceError::Read {
            path: path.to_path_buf(),
            error,
        })
}

/// Derivations of the image's kiln steps (layers, per-arch images, index)
/// and the built output with its NAR hash: the byproducts.
fn byproducts(built: &Built, seed: &str) -> Result<Vec<ResourceDescriptor>, ProvenanceError> {
    let mut out = Vec::new();
    let steps = crate::nixcmd::kiln_steps(std::slice::from_ref(&built.drv_path), seed)?;
    for drv in steps.keys() {
        out.push(ResourceDescriptor {
            name: drv.rsplit('/').next().unwrap_or(drv).to_string(),
            uri: format!("file://{drv}"),
            media_type: "application/x-nix-derivation".into(),
            ..Default::default()
        });
    }
    let info =
        crate::tool::checked(crate::nixcmd::nix().args(["path-info", "--json", built.out()]))?;
    let nar_hash = serde_json::from_str::<Value>(&info)
        .ok()
        .and_then(|v| v[0]["narHash"].as_str().map(String::from))
        .unwrap_or_default();
    out.push(ResourceDescriptor {
        name: "output".into(),
        uri: format!("file://{}", built.out()),
        annotations: BTreeMap::from([("narHash".to_string(), Value::String(nar_hash))]),
        ..Default::default()
    });
    Ok(out)
}

/// The `role` annotation of a dependency that is not one of the image's
/// own .debs (`seed`, `base`, `toolchain`, `source`).
fn role(role: &str) -> (String, Value) {
    ("role".to_string(), Value::String(role.into()))
}

/// The .debs of a locked toolchain's root (the build machine's arch), each
/// marked with `role`.
fn toolchain_inputs(
    lock: &Lock,
    toolchain: &str,
    role_name: &str,
) -> Result<Vec<ResourceDescriptor>, ProvenanceError> {
    let arch = crate::spec::Arch::Amd64;
    let (release, names) = lock
        .toolchains
        .get(toolchain)
        .and_then(|t| Some((&t.release, t.archs.get(&arch)?)))
        .ok_or_else(|| {
            ProvenanceError::Inputs(format!("kiln.lock has no toolchain {toolchain}"))
        })?;
    let distro = Lock::distro(release);
    names
        .iter()
        .map(|name| {
            let p = lock
                .table(release, arch)
                .and_then(|m| m.get(name))
                .ok_or_else(|| {
                    ProvenanceError::Inputs(format!(
                        "kiln.lock has no {release} {arch} package {name}"
                    ))
                })?;
            Ok(ResourceDescriptor {
                uri: deb_purl(name, &p.version, &p.architecture, &distro),
                digest: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
                annotations: BTreeMap::from([role(role_name)]),
                ..Default::default()
            })
        })
        .collect()
}

/// What the seed was compiled from in the sandbox: the toolchain's .debs,
/// the crates of nix/seed/Cargo.lock and the digest of its sources (the
/// tree cargo read), each marked `"role": "seed"`.
fn seed_inputs(kiln_dir: &Path, lock: &Lock) -> Result<Vec<ResourceDescriptor>, ProvenanceError> {
    let seed_role = || role(kiln_seed::verify::provenance::SEED_ROLE);
    let mut out = toolchain_inputs(
        lock,
        crate::seedbuild::TOOLCHAIN,
        kiln_seed::verify::provenance::SEED_ROLE,
    )?;
    let cargo_lock = kiln_dir.join(crate::crates::CARGO_LOCKS[0].0);
    let crates = crate::crates::from_cargo_lock(&cargo_lock)
        .map_err(|e| ProvenanceError::Inputs(e.to_string()))?;
    for c in crates {
        out.push(ResourceDescriptor {
            uri: format!("pkg:cargo/{}@{}", c.name, c.version),
            digest: BTreeMap::from([("sha256".to_string(), c.checksum.clone())]),
            annotations: BTreeMap::from([seed_role()]),
            ..Default::default()
        });
    }
    Ok(out)
}

/// What an application image was built from besides its own definition:
/// the base image (index and platform digests, read from the
/// application's own manifests), the base's .debs, the toolchain's .debs
/// a Go application's vendored modules, a Rust application's crates or a
/// Python application's wheels, and the source directory's digest
/// ([`crate::appsource::digest`]).
fn application_inputs(
    project: &Path,
    out: &Path,
    lock: &Lock,
    spec: &kiln_seed::spec::ImageSpec,
    archs: &[String],
) -> Result<Vec<ResourceDescriptor>, ProvenanceError> {
    let (Some(base), Some(build)) = (&spec.base, &spec.build) else {
        return Ok(Vec::new());
    };
    let mut deps = Vec::new();
    let annotations = crate::appsource::base_annotations(out)
        .map_err(|message| ProvenanceError::Inputs(format!("{}: {message}", out.display())))?;
    let mut base_desc = ResourceDescriptor {
        name: annotations.name.clone(),
        uri: format!("oci:{}", annotations.name),
        digest: BTreeMap::from([("sha256".to_string(), annotations.index.hex())]),
        annotations: BTreeMap::from([role("base")]),
        ..Default::default()
    };
    for (arch, d) in &annotations.platforms {
        base_desc
            .annotations
            .insert(format!("manifest.{arch}"), Value::String(d.to_string()));
    }
    deps.push(base_desc);
    let locked = lock
        .images
        .get(base)
        .ok_or_else(|| ProvenanceError::NotLocked {
            image: base.clone(),
            arch: archs.join(", "),
        })?;
    let mut seen = std::collections::BTreeSet::new();
    let distro = Lock::distro(&locked.release);
    for (arch, plan) in &locked.archs {
        if !archs.iter().any(|a| a == arch.debian()) {
            continue;
        }
        for name in &plan.packages {
            let Some(p) = lock.table(&locked.release, *arch).and_then(|m| m.get(name)) else {
                return Err(ProvenanceError::Unpinned {
                    image: base.clone(),
                    arch: arch.debian().into(),
                    name: name.clone(),
                });
            };
            let purl = deb_purl(name, &p.version, &p.architecture, &distro);
            if seen.insert((purl.clone(), p.sha256.clone())) {
                deps.push(ResourceDescriptor {
                    uri: purl,
                    digest: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
                    annotations: BTreeMap::from([role("base")]),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(toolchain) = &build.toolchain {
        deps.extend(toolchain_inputs(lock, toolchain, "toolchain")?);
    }
    // A Go application's vendored modules, with the hash go.sum gives the
    // module (in-toto's dirHash: go.sum's h1 in hex).
    if build.go.is_some() {
        let modules = kiln_seed::gomod::vendored_modules(&project.join(&build.source))
            .map_err(|e| ProvenanceError::Inputs(format!("{}: {e}", build.source)))?;
        for m in modules {
            let mut digest = BTreeMap::new();
            if let Some(h) = m.dir_hash() {
                digest.insert("dirHash".to_string(), h);
            }
            deps.push(ResourceDescriptor {
                uri: format!("pkg:golang/{}@{}", m.path, m.version),
                digest,
                annotations: BTreeMap::from([
                    role("module"),
                    (
                        "go.sum".to_string(),
                        Value::String(m.sum.unwrap_or_else(|| "(a local replacement)".into())),
                    ),
                ]),
                ..Default::default()
            });
        }
    }
    // A Rust application's crates, as its Cargo.lock pins them.
    if build.rust.is_some() {
        let lock_file = project.join(&build.source).join("Cargo.lock");
        let crates = crate::crates::from_cargo_lock(&lock_file)
            .map_err(|e| ProvenanceError::Inputs(e.to_string()))?;
        for c in crates {
            deps.push(ResourceDescriptor {
                uri: format!("pkg:cargo/{}@{}", c.name, c.version),
                digest: BTreeMap::from([("sha256".to_string(), c.checksum.clone())]),
                annotations: BTreeMap::from([role("crate")]),
                ..Default::default()
            });
        }
    }
    // A Python application's wheels, as pinned for each of its archs.
    let wheels = lock
        .images
        .get(&spec.full_name())
        .and_then(|i| i.python.as_ref());
    for (arch, list) in wheels.iter().flat_map(|p| &p.wheels) {
        if !archs.iter().any(|a| a == arch.debian()) {
            continue;
        }
        for w in list {
            deps.push(ResourceDescriptor {
                uri: format!("pkg:pypi/{}@{}", w.name, w.version),
                name: w.file.clone(),
                digest: BTreeMap::from([("sha256".to_string(), w.sha256.clone())]),
                annotations: BTreeMap::from([
                    role("wheel"),
                    ("arch".to_string(), Value::String(arch.debian().into())),
                ]),
                ..Default::default()
            });
        }
    }
    let source = crate::appsource::digest(&project.join(&build.source))
        .map_err(|e| ProvenanceError::Inputs(e.to_string()))?;
    deps.push(ResourceDescriptor {
        name: build.source.clone(),
        digest: BTreeMap::from([("sha256".to_string(), source.hex())]),
        annotations: BTreeMap::from([
            role("source"),
            (
                "digest".to_string(),
                Value::String(crate::appsource::DIGEST_RULE.into()),
            ),
        ]),
        ..Default::default()
    });
    Ok(deps)
}

/// Everything [`generate`] needs about one build.
pub struct BuildRecord<'a> {
    pub project: &'a Path,
    pub built: &'a Built,
    pub settings: &'a NixSettings,
    pub pin: &'a Pin,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// The same for every attribute of one `kiln build` invocation.
    pub invocation_id: &'a str,
    /// What the build's policy gate decided (None: not evaluated).
    pub policy: Option<&'a PolicyRecord>,
    /// The checkout ([`source_of`]), the same for every attribute of one
    /// build: read once, not once per image.
    pub source: &'a SourceParameter,
    /// The lock and the seed, read and hashed once per build.
    pub inputs: &'a BuildInputs,
}

/// What every attribute of one build shares: kiln.lock (parsed, and its
/// digest) and the seed's sha256 (an 8.8 MB file, hashed once rather than
/// once per image).
pub struct BuildInputs {
    pub lock: Lock,
    pub lock_digest: Digest,
    pub seed_sha: Digest,
    /// kiln's source, whose lock and seed Cargo.lock pin what the seed is
    /// compiled from: the project itself in kiln's repository, else its
    /// flake's `kiln` input.
    pub kiln_dir: PathBuf,
    /// kiln's lock when it is not the project's.
    pub kiln_lock: Option<Lock>,
}

impl BuildInputs {
    /// `kiln_dir`: kiln's source for `project` ([`crate::project::kiln_source`]).
    pub fn read(
        project: &Path,
        kiln_dir: &Path,
        pin: &Pin,
    ) -> Result<BuildInputs, ProvenanceError> {
        let (lock, lock_digest) = Lock::read_with_digest(&Lock::path_in(project))
            .map_err(|e| ProvenanceError::Lock(Box::new(e)))?;
        let kiln_dir = kiln_dir.to_path_buf();
        let kiln_lock = if kiln_dir == project {
            None
        } else {
            Some(
                Lock::read(&Lock::path_in(&kiln_dir))
                    .map_err(|e| ProvenanceError::Lock(Box::new(e)))?,
            )
        };
        Ok(BuildInputs {
            lock,
            lock_digest,
            seed_sha: sha256_file(Path::new(&pin.store_path))?,
            kiln_dir,
            kiln_lock,
        })
    }
}

/// The policy gate of a build: the user's choices and the outcome.
#[derive(Debug, Clone)]
pub struct PolicyRecord {
    pub enforced: bool,
    pub extra_policies: Vec<String>,
    /// `{denied, warnings, rules}`.
    pub outcome: serde_json::Value,
}

/// The provenance statement of one built attribute.
pub fn generate(rec: &BuildRecord) -> Result<Statement, ProvenanceError> {
    let out = Path::new(rec.built.out());
    let image = BuiltImage::read(out)?;
    let full = image.full_name();
    let archs: Vec<String> = image.manifests.keys().cloned().collect();

    let (lock, lock_digest) = (&rec.inputs.lock, &rec.inputs.lock_digest);
    let def_rel = format!("images/{}/image.toml", image.name);
    let def_digest = sha256_file(&rec.project.join(&def_rel))?;
    let source = rec.source.clone();

    let mut deps: Vec<ResourceDescriptor> = Vec::new();
    let locked = lock
        .images
        .get(&full)
        .ok_or_else(|| ProvenanceError::NotLocked {
            image: full.clone(),
            arch: archs.join(", "),
        })?;
    let distro = Lock::distro(&locked.release);
    for arch_name in &archs {
        let plan = locked
            .archs
            .iter()
            .find(|(a, _)| a.debian() == arch_name)
            .map(|(_, p)| p)
            .ok_or_else(|| ProvenanceError::NotLocked {
                image: full.clone(),
                arch: arch_name.clone(),
            })?;
        let pinned =
            crate::spec::Arch::parse(arch_name).and_then(|a| lock.table(&locked.release, a));
        for name in &plan.packages {
            let p = pinned
                .and_then(|p| p.get(name))
                .ok_or_else(|| ProvenanceError::Unpinned {
                    image: full.clone(),
                    arch: arch_name.clone(),
                    name: name.clone(),
                })?;
            let purl = deb_purl(name, &p.version, &p.architecture, &distro);
            // An arch: all package pinned for both archs is one dependency.
            if deps
                .iter()
                .any(|d| d.uri == purl && d.digest.get("sha256") == Some(&p.sha256))
            {
                continue;
            }
            deps.push(ResourceDescriptor {
                uri: purl,
                name: p
                    .filename
                    .rsplit('/')
                    .next()
                    .unwrap_or(&p.filename)
                    .to_string(),
                digest: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
                annotations: BTreeMap::from([
                    ("pool".to_string(), Value::String(p.filename.clone())),
                    ("suite".to_string(), Value::String(p.suite.clone())),
                ]),
                ..Default::default()
            });
        }
    }
    deps.sort_by(|a, b| a.uri.cmp(&b.uri));
    let seed_sha = &rec.inputs.seed_sha;
    deps.push(ResourceDescriptor {
        name: "kiln-seed".into(),
        uri: format!("file://{}", rec.pin.store_path),
        digest: BTreeMap::from([("sha256".to_string(), seed_sha.hex())]),
        annotations: BTreeMap::from([
            (
                "narHash".to_string(),
                Value::String(format!("sha256:{}", rec.pin.nar_hash)),
            ),
            (
                "compiler".to_string(),
                Value::String(rec.pin.compiler.clone()),
            ),
            ("target".to_string(), Value::String(rec.pin.target.clone())),
        ]),
        ..Default::default()
    });
    let kiln_lock = rec.inputs.kiln_lock.as_ref().unwrap_or(lock);
    deps.extend(seed_inputs(&rec.inputs.kiln_dir, kiln_lock)?);
    // A project's kiln: the flake input, as flake.lock pins it.
    if let Some((locked, nar_hash)) = rec
        .inputs
        .kiln_lock
        .as_ref()
        .and_then(|_| crate::project::locked_kiln(rec.project))
    {
        deps.push(ResourceDescriptor {
            name: crate::project::KILN_INPUT.into(),
            uri: format!("file://{}", rec.inputs.kiln_dir.display()),
            // The SHA-256 of the source's NAR serialisation, not of a file.
            digest: BTreeMap::from([("nixNarSha256".to_string(), nar_hash)]),
            annotations: BTreeMap::from([role("kiln"), ("flakeLocked".to_string(), locked)]),
            ..Default::default()
        });
    }
    let definition = crate::definition::load(&rec.project.join(&def_rel))
        .map_err(|e| ProvenanceError::Inputs(e.to_string()))?;
    if let Ok(spec) = definition.definition.image(image.variant.as_deref()) {
        deps.extend(application_inputs(rec.project, out, lock, &spec, &archs)?);
    }
    deps.push(ResourceDescriptor {
        name: "kiln.lock".into(),
        digest: BTreeMap::from([("sha256".to_string(), lock_digest.hex())]),
        ..Default::default()
    });
    deps.push(ResourceDescriptor {
        name: def_rel.clone(),
        digest: BTreeMap::from([("sha256".to_string(), def_digest.hex())]),
        ..Default::default()
    });
    // A definition that extends others is built from every file.
    for parent in &definition.extends {
        let rel = parent.strip_prefix(rec.project).unwrap_or(parent);
        deps.push(ResourceDescriptor {
            name: rel.display().to_string(),
            digest: BTreeMap::from([("sha256".to_string(), sha256_file(parent)?.hex())]),
            annotations: BTreeMap::from([role("extended definition")]),
            ..Default::default()
        });
    }
    if let Some(rev) = &source.revision {
        deps.push(ResourceDescriptor {
            name: "source".into(),
            uri: source.uri.clone(),
            digest: BTreeMap::from([("gitCommit".to_string(), rev.clone())]),
            annotations: if source.dirty {
                BTreeMap::from([(
                    "dirty".to_string(),
                    Value::String("the work tree had uncommitted changes to tracked files".into()),
                )])
            } else {
                BTreeMap::new()
            },
            ..Default::default()
        });
    }

    let external = ExternalParameters {
        image: image.name.clone(),
        variant: image.variant.clone(),
        flake_attribute: rec.built.attr.clone(),
        archs: archs.clone(),
        source,
        lock: FileParameter {
            path: "kiln.lock".into(),
            digest: lock_digest.to_string(),
        },
        definition: FileParameter {
            path: def_rel,
            digest: def_digest.to_string(),
        },
        policy: rec.policy.map(|p| PolicyParameter {
            enforced: p.enforced,
            extra_policies: p.extra_policies.clone(),
        }),
    };
    let (isolated, isolation) = match rec.settings.check_isolated() {
        Ok(()) => (true, rec.settings.isolation()),
        Err(e) => (
            false,
            format!("NONE: built with --allow-unsandboxed while {e}; the build was not isolated and must not be published"),
        ),
    };
    let internal = InternalParameters {
        nix: serde_json::to_value(rec.settings).expect("settings serialize"),
        isolated,
        isolation,
        seed: rec.pin.store_path.clone(),
        policy: rec.policy.map(|p| p.outcome.clone()),
    };
    let env = |k: &str| std::env::var(k).ok();
    let (id, mut version) = builder_id(&env);
    version.insert("kiln".into(), env!("CARGO_PKG_VERSION").into());
    version.insert(
        "nix".into(),
        rec.settings
            .version
            .rsplit(' ')
            .next()
            .unwrap_or(&rec.settings.version)
            .to_string(),
    );
    version.insert("kiln-seed".into(), format!("sha256:{}", rec.pin.nar_hash));
    let provenance = Provenance {
        build_definition: BuildDefinition {
            build_type: KILN_BUILD_TYPE.into(),
            external_parameters: serde_json::to_value(&external).expect("parameters serialize"),
            internal_parameters: serde_json::to_value(&internal).expect("parameters serialize"),
            resolved_dependencies: deps,
        },
        run_details: RunDetails {
            builder: Builder {
                id,
                version,
                builder_dependencies: vec![],
            },
            metadata: BuildMetadata {
                invocation_id: rec.invocation_id.to_string(),
                started_on: Some(rfc3339_utc(epoch(rec.started))),
                finished_on: Some(rfc3339_utc(epoch(rec.finished))),
            },
            byproducts: byproducts(rec.built, &rec.pin.store_path)?,
        },
    };
    let subjects = image.subjects();
    let refs: Vec<(&str, Digest)> = subjects.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    Ok(Statement::provenance(&refs, &provenance))
}

/// `<dir>/<attr>.intoto.json`.
pub fn path_for(dir: &Path, attr: &str) -> PathBuf {
    dir.join(format!("{attr}.intoto.json"))
}

/// Writes the statement (pretty, sorted keys) atomically.
pub fn write(path: &Path, statement: &Statement) -> Result<(), ProvenanceError> {
    crate::fsutil::write_atomic(path, &kiln_seed::json::pretty(statement)).map_err(|error| {
        ProvenanceError::Write {
            path: path.to_path_buf(),
            error,
        }
    })
}

/// Reads a provenance statement written by [`write`] (or any SLSA v1 statement).
pub fn read(path: &Path) -> Result<Statement, ProvenanceError> {
    let bytes = std::fs::read(path).map_err(|error| ProvenanceError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let st = Statement::from_json(&bytes).map_err(|e| ProvenanceError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    st.slsa_provenance().map_err(|e| ProvenanceError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(st)
}

/// The output path a provenance recorded (its `output` byproduct).
pub fn recorded_output(statement: &Statement) -> Option<PathBuf> {
    let p = statement.slsa_provenance().ok()?;
    p.run_details
        .byproducts
        .iter()
        .find(|b| b.name == "output")
        .and_then(|b| b.uri.strip_prefix("file://"))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_id_is_truthful() {
        let none = |_: &str| None;
        let (id, _) = builder_id(&none);
        assert!(id.starts_with(LOCAL_BUILDER_PREFIX), "{id}");
        assert_eq!(id.len(), LOCAL_BUILDER_PREFIX.len() + 16);
        // A CI variable alone is not enough to claim a workflow identity.
        let half = |k: &str| (k == "GITHUB_ACTIONS").then(|| "true".to_string());
        assert!(builder_id(&half).0.starts_with(LOCAL_BUILDER_PREFIX));
        let gh = |k: &str| match k {
            "GITHUB_ACTIONS" => Some("true".to_string()),
            "GITHUB_WORKFLOW_REF" => {
                Some("o/r/.github/workflows/images.yml@refs/heads/main".into())
            }
            "RUNNER_ENVIRONMENT" => Some("github-hosted".into()),
            "GITHUB_REPOSITORY" => Some("o/r".into()),
            "GITHUB_RUN_ID" => Some("42".into()),
            _ => None,
        };
        let (id, extra) = builder_id(&gh);
        assert_eq!(
            id,
            "https://github.com/o/r/.github/workflows/images.yml@refs/heads/main"
        );
        assert_eq!(extra["runnerEnvironment"], "github-hosted");
        assert_eq!(
            invocation_id(&gh),
            "https://github.com/o/r/actions/runs/42/attempts/1"
        );
    }

    #[test]
    fn uuids_are_v4_and_differ() {
        let a = random_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
        assert_ne!(a, random_uuid());
    }

    #[test]
    fn image_summaries_give_subjects() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: u8| format!("sha256:{}", hex::encode([n; 32]));
        std::fs::write(
            dir.path().join("image.json"),
            serde_json::json!({"name": "x", "variant": "debug", "tag": "debug",
                "index": {"digest": d(1)},
                "manifests": {"amd64": {"digest": d(2)}, "arm64": {"digest": d(3)}}})
            .to_string(),
        )
        .unwrap();
        let img = BuiltImage::read(dir.path()).unwrap();
        assert_eq!(img.full_name(), "x-debug");
        let names: Vec<String> = img.subjects().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["x:debug", "x:debug-amd64", "x:debug-arm64"]);
        assert_eq!(img.root(), Some(Digest([1; 32])));
        std::fs::write(dir.path().join("image.json"), b"{\"name\": \"x\"}").unwrap();
        let e = BuiltImage::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("image.json") && e.contains("no tag"), "{e}");
    }
}
