//! Policy as code in the driver: loads the project's Rego policies
//! (`policy/`) and the user's (`--policy DIR`), evaluates them on the
//! definitions and on the built images, and reports each violation with its
//! rule, image, architecture and offending path or field.
//!
//! The engine and the input documents are the seed's
//! ([`kiln_seed::policy`]), so that `kiln policy`, `kiln build` and
//! `nix flake check` (the seed's `policy` step) judge an image the same way.
//! The documents are described in docs/policy.md.

use crate::definition::{self, DefinitionError};
use crate::lock::{Lock, LockError};
use crate::nixcmd::{self, BuildOptions, NixError};
use kiln_seed::policy::{self as engine, Level, LockFacts, Policies, PolicyFile, Violation};
use kiln_seed::spec::{Arch, Definition, ImageSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use kiln_seed::policy::{render, Violation as PolicyViolation};

/// The project's own policies, relative to the project directory.
pub const DEFAULT_DIR: &str = "policy";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("--layout {0}")]
    Reference(String),
    #[error("reading the policy directory {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("policy directory {} holds no .rego file", .0.display())]
    NoRego(PathBuf),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Definition(Box<DefinitionError>),
    #[error(transparent)]
    Lock(Box<LockError>),
    #[error("building the images to check")]
    Build(#[from] NixError),
    #[error("{attr:?} is not an image of this project (known: {known})")]
    UnknownImage { attr: String, known: String },
    #[error("--layout checks one image: name it with exactly one --image")]
    LayoutNeedsOneImage,
    #[error("image {image} cannot be built: its definition is invalid ({message})")]
    Invalid { image: String, message: String },
}

impl From<DefinitionError> for PolicyError {
    fn from(e: DefinitionError) -> Self {
        PolicyError::Definition(Box::new(e))
    }
}

impl From<LockError> for PolicyError {
    fn from(e: LockError) -> Self {
        PolicyError::Lock(Box::new(e))
    }
}

/// Which policies to load.
#[derive(Debug, Clone)]
pub struct PolicyDirs {
    /// Load the project's `policy/` (kiln's default rules).
    pub defaults: bool,
    /// The user's directories (`--policy DIR`), after the defaults.
    pub extra: Vec<PathBuf>,
}

impl Default for PolicyDirs {
    fn default() -> Self {
        PolicyDirs {
            defaults: true,
            extra: Vec::new(),
        }
    }
}

impl PolicyDirs {
    fn dirs(&self, project: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.defaults {
            out.push(project.join(DEFAULT_DIR));
        }
        out.extend(self.extra.iter().cloned());
        out
    }
}

/// Reads the `.rego` (policies) and `.json` (data) files of `dirs`,
/// recursively, in sorted order. `*_test.rego` files (Rego unit tests) are
/// skipped, as conftest does. Names are shown relative to `project` where
/// they lie inside it.
pub fn read_sources(
    project: &Path,
    dirs: &[PathBuf],
) -> Result<(Vec<PolicyFile>, Vec<PolicyFile>), PolicyError> {
    let mut rego = Vec::new();
    let mut data = Vec::new();
    for dir in dirs {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        let before = rego.len();
        for f in files {
            let name = f.strip_prefix(project).unwrap_or(&f).display().to_string();
            let file_name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let is_rego = file_name.ends_with(".rego") && !file_name.ends_with("_test.rego");
            let is_data = file_name.ends_with(".json");
            if !is_rego && !is_data {
                continue;
            }
            let text = std::fs::read_to_string(&f).map_err(|error| PolicyError::Read {
                path: f.clone(),
                error,
            })?;
            let src = PolicyFile { name, text };
            if is_rego {
                rego.push(src);
            } else {
                data.push(src);
            }
        }
        if rego.len() == before {
            return Err(PolicyError::NoRego(dir.clone()));
        }
    }
    Ok((rego, data))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let rd = std::fs::read_dir(dir).map_err(|error| PolicyError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    for entry in rd {
        let entry = entry.map_err(|error| PolicyError::Read {
            path: dir.to_path_buf(),
            error,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads and parses the policies.
pub fn load(project: &Path, dirs: &PolicyDirs) -> Result<Policies, PolicyError> {
    let (rego, data) = sources(project, dirs)?;
    Ok(Policies::load(&rego, &data)?)
}

/// kiln's default policies as shipped with this binary: used for a project
/// that has no `policy/` directory of its own (a project's `policy/` is
/// what `nix flake check` evaluates, so when it exists it wins).
pub const EMBEDDED_DEFAULTS: &[(&str, &str)] = &[
    (
        "policy/annotations.rego",
        include_str!("../policy/annotations.rego"),
    ),
    (
        "policy/budgets.json",
        include_str!("../policy/budgets.json"),
    ),
    (
        "policy/ca_bundle.rego",
        include_str!("../policy/ca_bundle.rego"),
    ),
    ("policy/debug.rego", include_str!("../policy/debug.rego")),
    ("policy/lib.rego", include_str!("../policy/lib.rego")),
    ("policy/lock.rego", include_str!("../policy/lock.rego")),
    (
        "policy/package_manager.rego",
        include_str!("../policy/package_manager.rego"),
    ),
    ("policy/setuid.rego", include_str!("../policy/setuid.rego")),
    ("policy/shell.rego", include_str!("../policy/shell.rego")),
    ("policy/size.rego", include_str!("../policy/size.rego")),
    ("policy/user.rego", include_str!("../policy/user.rego")),
    (
        "policy/world_writable.rego",
        include_str!("../policy/world_writable.rego"),
    ),
];

/// The policy and data sources `dirs` select, falling back to the embedded
/// defaults when the project has no `policy/` directory.
pub fn sources(
    project: &Path,
    dirs: &PolicyDirs,
) -> Result<(Vec<PolicyFile>, Vec<PolicyFile>), PolicyError> {
    let default_dir = project.join(DEFAULT_DIR);
    let embedded = dirs.defaults && !default_dir.is_dir();
    let mut list = dirs.dirs(project);
    if embedded {
        list.retain(|d| d != &default_dir);
    }
    let (mut rego, mut data) = read_sources(project, &list)?;
    if embedded {
        for (name, text) in EMBEDDED_DEFAULTS.iter().rev() {
            let src = PolicyFile {
                name: name.to_string(),
                text: text.to_string(),
            };
            if name.ends_with(".rego") {
                rego.insert(0, src);
            } else {
                data.insert(0, src);
            }
        }
    }
    Ok((rego, data))
}

/// What the lock says about `image` (full name).
pub fn lock_facts(lock: Option<&Lock>, image: &str) -> LockFacts {
    let Some(lock) = lock else {
        return LockFacts::default();
    };
    let Some(entry) = lock.images.get(image) else {
        return LockFacts::default();
    };
    let mut archs = BTreeMap::new();
    for (arch, plan) in &entry.archs {
        let mut pkgs = BTreeMap::new();
        for name in &plan.packages {
            let value = lock
                .table(&entry.release, *arch)
                .and_then(|p| p.get(name))
                .map(|p| serde_json::to_value(p).expect("a lock entry serializes"))
                // Named by the image but missing from the packages: no pin.
                .unwrap_or(serde_json::json!({}));
            pkgs.insert(name.clone(), value);
        }
        archs.insert(*arch, pkgs);
    }
    LockFacts {
        locked: true,
        archs,
    }
}

/// A definition as policy sees it: parsed, but not necessarily valid.
#[derive(Debug, Clone)]
pub struct RawDefinition {
    pub path: PathBuf,
    pub definition: Definition,
    /// Why the definition loader refuses it (file, line and key), if it does.
    pub invalid: Option<String>,
}

impl RawDefinition {
    /// Every image (variant applied) of the definition.
    pub fn specs(&self) -> Vec<ImageSpec> {
        let mut names = vec![None];
        names.extend(self.definition.variants.keys().map(|v| Some(v.as_str())));
        names
            .into_iter()
            .filter_map(|v| self.definition.image(v).ok())
            .collect()
    }
}

/// Reads `images/*/image.toml` without refusing the ones that fail
/// validation: those are still evaluated (their definition documents), so
/// that a policy reports what is wrong with them in its own terms.
pub fn load_definitions(project: &Path) -> Result<Vec<RawDefinition>, PolicyError> {
    let images_dir = project.join("images");
    let rd = std::fs::read_dir(&images_dir).map_err(|error| PolicyError::Read {
        path: images_dir.clone(),
        error,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(definition::FILE_NAME))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(DefinitionError::NoneFound(images_dir).into());
    }
    paths.iter().map(|p| load_raw(p)).collect()
}

fn load_raw(path: &Path) -> Result<RawDefinition, PolicyError> {
    match definition::load(path) {
        Ok(l) => Ok(RawDefinition {
            path: l.path,
            definition: l.definition,
            invalid: None,
        }),
        Err(e @ DefinitionError::Invalid { .. }) => {
            let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            let invalid = Some(e.to_string());
            // It parsed for the loader (which only then validates).
            let definition: Definition = toml::from_str(&text).map_err(|_| PolicyError::from(e))?;
            Ok(RawDefinition {
                path: path.to_path_buf(),
                definition,
                invalid,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// One image (or platform) that was evaluated.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluated {
    pub image: String,
    /// The platforms of the built image that were evaluated (none when
    /// only the definition was), with their sizes.
    pub archs: BTreeMap<Arch, engine::Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<PathBuf>,
}

/// The outcome of a policy run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub violations: Vec<Violation>,
    pub evaluated: Vec<Evaluated>,
    /// The rule packages that ran, with their files.
    pub rules: BTreeMap<String, Vec<String>>,
    /// Time spent reading layouts and evaluating (not building).
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Report {
    pub fn denied(&self) -> usize {
        self.count(Level::Deny)
    }

    pub fn warned(&self) -> usize {
        self.count(Level::Warn)
    }

    fn count(&self, level: Level) -> usize {
        self.violations.iter().filter(|v| v.level == level).count()
    }

    /// Violations one per line, then a summary line.
    pub fn render(&self) -> String {
        let platforms: usize = self.evaluated.iter().map(|e| e.archs.len()).sum();
        format!(
            "{}policy: {} image(s), {} platform(s), {} rule package(s) in {:.3} s: {} denied, {} warning(s)\n",
            render(&self.violations),
            self.evaluated.len(),
            platforms,
            self.rules.len(),
            self.elapsed.as_secs_f64(),
            self.denied(),
            self.warned()
        )
    }
}

/// Evaluates `policies` on one image: its definition, then every platform
/// of the image in the layout (if any) that `name` leads to (without a
/// name, the layout's one image).
pub fn evaluate_spec(
    policies: &mut Policies,
    spec: &ImageSpec,
    base: Option<&ImageSpec>,
    layout: Option<(&Path, Option<&str>)>,
    lock: Option<&Lock>,
) -> Result<(Vec<Violation>, Evaluated), PolicyError> {
    let image = spec.full_name();
    let (violations, archs) = match base {
        // An application is judged as it runs: on its base, with the
        // base's packages.
        Some(base) => engine::evaluate(
            policies,
            &spec.on_base(base),
            layout,
            &lock_facts(lock, &base.full_name()),
        )?,
        None => engine::evaluate(policies, spec, layout, &lock_facts(lock, &image))?,
    };
    Ok((
        violations,
        Evaluated {
            image,
            archs,
            layout: layout.map(|(p, _)| p.to_path_buf()),
        },
    ))
}

/// An application's base among `specs` (none for other images, or when the
/// base is missing: the definition checks name that).
pub fn base_of<'a>(spec: &ImageSpec, specs: &'a [ImageSpec]) -> Option<&'a ImageSpec> {
    let base = spec.base.as_deref()?;
    specs.iter().find(|s| s.full_name() == base)
}

fn rules_of(policies: &Policies) -> BTreeMap<String, Vec<String>> {
    policies.rules().into_iter().collect()
}

/// For `kiln build`: evaluates the project's policies (`policy/`, plus
/// `extra_dirs`) on what building the flake attribute `attr`
/// (`<image>[-<variant>][-<arch>]`) produced at `out`. A report with
/// `denied() > 0` must fail the build unless the user opted out.
pub fn evaluate_image(
    project: &Path,
    attr: &str,
    out: &Path,
    extra_dirs: &[PathBuf],
) -> Result<Report, PolicyError> {
    let start = Instant::now();
    let mut policies = load(
        project,
        &PolicyDirs {
            defaults: true,
            extra: extra_dirs.to_vec(),
        },
    )?;
    let defs = definition::load_all(&project.join("images"))?;
    let specs: Vec<ImageSpec> = defs
        .iter()
        .map(|d| d.definition.images())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PolicyError::Invalid {
            image: attr.to_string(),
            message: e.to_string(),
        })?
        .into_iter()
        .flatten()
        .collect();
    let spec = specs
        .iter()
        .find(|s| s.full_name() == attr)
        .or_else(|| {
            specs.iter().find(|s| {
                Arch::ALL
                    .iter()
                    .any(|a| format!("{}-{a}", s.full_name()) == attr)
            })
        })
        .ok_or_else(|| PolicyError::UnknownImage {
            attr: attr.to_string(),
            known: specs
                .iter()
                .map(|s| s.full_name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let lock = Lock::read_optional(&Lock::path_in(project))?;
    let (violations, evaluated) = evaluate_spec(
        &mut policies,
        spec,
        base_of(spec, &specs),
        Some((out, None)),
        lock.as_ref(),
    )?;
    Ok(Report {
        violations,
        evaluated: vec![evaluated],
        rules: rules_of(&policies),
        elapsed: start.elapsed(),
    })
}

/// What `kiln policy` checks.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Full image names (`base-debug`) or definition names (all variants);
    /// empty: every image.
    pub images: Vec<String>,
    pub dirs: PolicyDirs,
    /// Evaluate this layout reference (`DIR`, `DIR:NAME`, `oci:DIR[:NAME]`)
    /// as the (one) image named in `images`, instead of building it.
    pub layout: Option<String>,
    /// Evaluate the definitions only; build nothing.
    pub definitions_only: bool,
}

/// Builds flake attributes (Nix reuses what exists) and returns each one's
/// output.
pub fn build(project: &Path, attrs: &[String]) -> Result<BTreeMap<String, PathBuf>, PolicyError> {
    if attrs.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(nixcmd::build(project, attrs, &BuildOptions::default())?
        .into_iter()
        .map(|b| {
            let out = PathBuf::from(b.out());
            (b.attr, out)
        })
        .collect())
}

/// `kiln policy`: evaluates the definitions, builds (or reuses) the images
/// and evaluates every platform of each.
pub fn check_project(project: &Path, opts: &CheckOptions) -> Result<Report, PolicyError> {
    let mut policies = load(project, &opts.dirs)?;
    let defs = load_definitions(project)?;
    let lock = Lock::read_optional(&Lock::path_in(project))?;
    let all_specs: Vec<ImageSpec> = defs.iter().flat_map(|d| d.specs()).collect();

    // (spec, the loader's complaint if the definition is invalid)
    let mut selected: Vec<(ImageSpec, Option<String>, PathBuf)> = Vec::new();
    for d in &defs {
        for spec in d.specs() {
            // A layout is one image: its name is taken exactly.
            let wanted = opts.images.is_empty()
                || opts
                    .images
                    .iter()
                    .any(|i| *i == spec.full_name() || (opts.layout.is_none() && *i == spec.name));
            if wanted {
                selected.push((spec, d.invalid.clone(), d.path.clone()));
            }
        }
    }
    for want in &opts.images {
        if !selected
            .iter()
            .any(|(s, _, _)| s.full_name() == *want || (opts.layout.is_none() && s.name == *want))
        {
            let known: Vec<String> = defs
                .iter()
                .flat_map(|d| d.specs())
                .map(|s| s.full_name())
                .collect();
            return Err(PolicyError::UnknownImage {
                attr: want.clone(),
                known: known.join(", "),
            });
        }
    }
    if opts.layout.is_some() && (opts.images.len() != 1 || selected.len() != 1) {
        return Err(PolicyError::LayoutNeedsOneImage);
    }

    // Build first (Nix reuses what exists), so that the evaluation time is
    // the policies' alone.
    let mut layouts: BTreeMap<String, (PathBuf, Option<String>)> = BTreeMap::new();
    if let Some(reference) = &opts.layout {
        // Resolved as every kiln command resolves a reference.
        use kiln_seed::imageref::ImageRef;
        match ImageRef::parse(reference) {
            Ok(ImageRef::Layout { dir, name }) => {
                layouts.insert(selected[0].0.full_name(), (dir, name));
            }
            Ok(ImageRef::Registry(r)) => {
                return Err(PolicyError::Reference(format!(
                    "{r} is a registry reference; pull it first (`kiln pull {r} DIR`)"
                )))
            }
            Err(e) => return Err(PolicyError::Reference(e.to_string())),
        }
    } else if !opts.definitions_only {
        // An invalid or unlocked image cannot be built; its definition is
        // still evaluated (kiln.lock denies the missing lock entry).
        let locked = |s: &ImageSpec| {
            lock.as_ref()
                .is_some_and(|l| l.images.contains_key(&s.full_name()))
        };
        let attrs: Vec<String> = selected
            .iter()
            .filter(|(s, invalid, _)| invalid.is_none() && locked(s))
            .map(|(s, _, _)| s.full_name())
            .collect();
        layouts = build(project, &attrs)?
            .into_iter()
            .map(|(k, v)| (k, (v, None)))
            .collect();
    }

    let start = Instant::now();
    let mut violations = Vec::new();
    let mut evaluated = Vec::new();
    for (spec, invalid, path) in &selected {
        if let Some(message) = invalid {
            violations.push(Violation {
                level: Level::Deny,
                image: spec.full_name(),
                arch: None,
                rule: "kiln.definition".into(),
                msg: format!("the definition loader refuses it: {message}"),
                path: None,
                field: None,
                policy: path
                    .strip_prefix(project)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            });
        }
        let layout = layouts
            .get(&spec.full_name())
            .map(|(dir, name)| (dir.as_path(), name.as_deref()));
        let (v, e) = evaluate_spec(
            &mut policies,
            spec,
            base_of(spec, &all_specs),
            layout,
            lock.as_ref(),
        )?;
        violations.extend(v);
        evaluated.push(e);
    }
    violations.sort();
    Ok(Report {
        violations,
        evaluated,
        rules: rules_of(&policies),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_defaults_are_the_shipped_policy_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_DIR);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                (n.ends_with(".rego") && !n.ends_with("_test.rego")) || n.ends_with(".json")
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = EMBEDDED_DEFAULTS
            .iter()
            .map(|(n, _)| n.trim_start_matches("policy/").to_string())
            .collect();
        assert_eq!(
            embedded, on_disk,
            "add new policy files to EMBEDDED_DEFAULTS"
        );
        for (name, text) in EMBEDDED_DEFAULTS {
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
            assert_eq!(std::fs::read_to_string(file).unwrap(), *text);
        }
    }

    #[test]
    fn a_project_without_a_policy_directory_gets_the_embedded_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (rego, data) = sources(dir.path(), &PolicyDirs::default()).unwrap();
        assert_eq!(rego.len() + data.len(), EMBEDDED_DEFAULTS.len());
        assert!(rego.iter().any(|s| s.name == "policy/shell.rego"));
    }

    fn project() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn defaults() -> Policies {
        load(&project(), &PolicyDirs::default()).unwrap()
    }

    fn spec(extra: serde_json::Value) -> ImageSpec {
        let mut def = json!({
            "name": "t",
            "description": "d",
            "packages": {"include": ["ca-certificates"]},
            "accounts": {
                "run_as": "nonroot",
                "users": [{"name": "nonroot", "uid": 65532, "gid": 65532}],
                "groups": [{"name": "nonroot", "gid": 65532}]
            },
            "config": {"env": {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}},
            "annotations": {"org.opencontainers.image.source": "https://example.invalid/src"}
        });
        merge(&mut def, extra);
        let d: Definition = serde_json::from_value(def).unwrap();
        d.image(None).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn file(path: &str, kind: &str, mode: u32) -> (String, serde_json::Value) {
        (
            path.to_string(),
            json!({"path": path, "type": kind, "mode": mode, "octal": format!("{mode:04o}"),
                   "uid": 0, "gid": 0, "size": 10, "layer": 0}),
        )
    }

    /// An image document as the seed builds it, for a clean image.
    fn image_doc(spec: &ImageSpec, files: Vec<(String, serde_json::Value)>) -> serde_json::Value {
        let mut doc = engine::definition_input(spec, &LockFacts::default());
        let sha = "a".repeat(64);
        let files: serde_json::Map<String, serde_json::Value> = files.into_iter().collect();
        merge(
            &mut doc,
            json!({
                "kind": "image",
                "arch": "amd64",
                "user": {"value": "65532:65532", "uid": 65532, "gid": 65532},
                "config": {"config": {"User": "65532:65532"}},
                "annotations": {
                    "org.opencontainers.image.title": "t",
                    "org.opencontainers.image.description": "d",
                    "org.opencontainers.image.source": "https://example.invalid/src"
                },
                "files": files,
                "packages": {"ca-certificates": {"version": "1", "architecture": "all", "file": "/var/lib/dpkg/status.d/ca-certificates"}},
                "size": {"compressed": 1000, "uncompressed": 2000, "layers": [900], "files": 3},
                "lock": {"locked": true, "packages": [{"name": "ca-certificates", "arch": "amd64", "version": "1", "sha256": sha}]}
            }),
        );
        doc
    }

    fn clean_files() -> Vec<(String, serde_json::Value)> {
        vec![
            file("/tmp", "directory", 0o1777),
            file("/etc/ssl/certs/ca-certificates.crt", "file", 0o644),
            file("/var/lib/dpkg/status.d/ca-certificates", "file", 0o644),
        ]
    }

    fn run(doc: serde_json::Value) -> Vec<Violation> {
        let subject = engine::Subject {
            image: doc["image"].as_str().unwrap().to_string(),
            arch: doc["arch"].as_str().and_then(Arch::parse),
        };
        defaults().evaluate(&subject, doc).unwrap()
    }

    fn denials(v: &[Violation]) -> Vec<(String, Option<String>, Option<String>)> {
        v.iter()
            .filter(|v| v.level == Level::Deny)
            .map(|v| (v.rule.clone(), v.path.clone(), v.field.clone()))
            .collect()
    }

    #[test]
    fn the_default_policies_load_and_a_clean_image_passes() {
        let p = defaults();
        let rules: Vec<String> = p.rules().into_iter().map(|(r, _)| r).collect();
        for r in [
            "kiln.user",
            "kiln.annotations",
            "kiln.shell",
            "kiln.package_manager",
            "kiln.setuid",
            "kiln.world_writable",
            "kiln.ca_bundle",
            "kiln.lock",
            "kiln.size",
            "kiln.debug",
        ] {
            assert!(rules.contains(&r.to_string()), "{r} missing from {rules:?}");
        }
        let s = spec(json!({}));
        let v = run(image_doc(&s, clean_files()));
        // "t" has no budget: a warning, nothing denied.
        assert_eq!(denials(&v), vec![], "{v:?}");
        assert!(v
            .iter()
            .any(|v| v.rule == "kiln.size" && v.level == Level::Warn));
    }

    #[test]
    fn root_without_debug_is_denied_on_the_definition_and_the_image() {
        let s = spec(json!({"accounts": {"run_as": "0"}}));
        let v = run(engine::definition_input(&s, &LockFacts::default()));
        assert!(
            denials(&v).contains(&("kiln.user".into(), None, Some("accounts.run_as".into()))),
            "{v:?}"
        );
        let mut doc = image_doc(&s, clean_files());
        doc["user"] = json!({"value": "", "uid": 0, "gid": 0});
        let v = run(doc);
        assert!(
            denials(&v).contains(&("kiln.user".into(), None, Some("config.User".into()))),
            "{v:?}"
        );
        // Declared debug: a warning instead.
        let s = spec(json!({"accounts": {"run_as": "0"}, "debug": true}));
        let mut doc = image_doc(&s, clean_files());
        doc["user"] = json!({"value": "0:0", "uid": 0, "gid": 0});
        let v = run(doc);
        assert!(!v.iter().any(|v| v.rule == "kiln.user"), "{v:?}");
        assert!(v
            .iter()
            .any(|v| v.rule == "kiln.debug" && v.level == Level::Warn));
    }

    #[test]
    fn shells_busybox_and_package_managers_are_denied_unless_debug() {
        let mut files = clean_files();
        files.push(file("/bin/sh", "file", 0o755));
        files.push(file("/usr/bin/zsh", "file", 0o755));
        files.push(file("/usr/lib/busybox", "file", 0o755));
        let mut applet = file("/usr/bin/ls", "symlink", 0o777);
        applet.1["target"] = json!("/bin/busybox");
        files.push(applet);
        files.push(file("/usr/bin/apt-get", "file", 0o755));
        files.push(file("/usr/bin/dpkg", "file", 0o755));
        files.push(file("/usr/share/bash-completion", "directory", 0o755));
        files.push(file("/usr/bin/shasum", "file", 0o755));
        let s = spec(json!({}));
        let d = denials(&run(image_doc(&s, files.clone())));
        for (rule, path) in [
            ("kiln.shell", "/bin/sh"),
            ("kiln.shell", "/usr/bin/zsh"),
            ("kiln.shell", "/usr/lib/busybox"),
            ("kiln.shell", "/usr/bin/ls"),
            ("kiln.package_manager", "/usr/bin/apt-get"),
            ("kiln.package_manager", "/usr/bin/dpkg"),
        ] {
            assert!(
                d.contains(&(rule.into(), Some(path.into()), None)),
                "{rule} {path}: {d:?}"
            );
        }
        assert_eq!(d.len(), 6, "{d:?}");
        let s = spec(json!({"debug": true}));
        let d = denials(&run(image_doc(&s, files)));
        assert_eq!(d, vec![], "debug images may have a shell");
    }

    #[test]
    fn setuid_world_writable_and_missing_ca_bundle_are_denied() {
        let mut files = vec![
            file("/tmp", "directory", 0o1777),
            file("/var/tmp", "directory", 0o777),
            file("/usr/bin/su", "file", 0o4755),
            file("/usr/bin/wall", "file", 0o2755),
            file("/etc/motd", "file", 0o666),
            file("/var/lib/dpkg/status.d/ca-certificates", "file", 0o644),
        ];
        let mut link = file("/lib64", "symlink", 0o777);
        link.1["target"] = json!("usr/lib64");
        files.push(link);
        let s = spec(json!({}));
        let v = run(image_doc(&s, files));
        let d = denials(&v);
        for (rule, path) in [
            ("kiln.setuid", "/usr/bin/su"),
            ("kiln.setuid", "/usr/bin/wall"),
            ("kiln.world_writable", "/var/tmp"),
            ("kiln.world_writable", "/etc/motd"),
            ("kiln.ca_bundle", "/etc/ssl/certs/ca-certificates.crt"),
        ] {
            assert!(
                d.contains(&(rule.into(), Some(path.into()), None)),
                "{rule} {path}: {d:?}"
            );
        }
        assert_eq!(d.len(), 5, "{v:?}");
        let su = v
            .iter()
            .find(|v| v.path.as_deref() == Some("/usr/bin/su"))
            .unwrap();
        assert_eq!(su.msg, "/usr/bin/su is setuid (mode 4755)");
    }

    #[test]
    fn a_ca_bundle_behind_a_symlink_counts() {
        let mut files = clean_files();
        files.retain(|(p, _)| p != "/etc/ssl/certs/ca-certificates.crt");
        let mut link = file("/etc/ssl/certs/ca-certificates.crt", "symlink", 0o777);
        link.1["target"] = json!("../bundle.pem");
        files.push(link);
        let s = spec(json!({}));
        let d = denials(&run(image_doc(&s, files.clone())));
        assert_eq!(d.len(), 1, "dangling: {d:?}");
        files.push(file("/etc/ssl/certs/../bundle.pem", "file", 0o644));
        // Targets are joined, not normalized: a relative one is looked up as written.
        let d = denials(&run(image_doc(&s, files)));
        assert_eq!(d, vec![], "{d:?}");
    }

    #[test]
    fn lock_mismatches_and_missing_pins_are_denied() {
        let s = spec(json!({}));
        let mut doc = image_doc(&s, clean_files());
        doc["packages"]["openssl"] = json!({"version": "3", "architecture": "amd64", "file": "/var/lib/dpkg/status.d/openssl"});
        doc["lock"]["packages"][0]["sha256"] = json!("not-a-sha");
        let v = run(doc);
        let msgs: Vec<&str> = v
            .iter()
            .filter(|v| v.rule == "kiln.lock")
            .map(|v| v.msg.as_str())
            .collect();
        assert!(
            msgs.contains(
                &"package ca-certificates (amd64) is not pinned by a sha256 in kiln.lock"
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"package openssl 3 is installed but not pinned in kiln.lock for this image"
            ),
            "{msgs:?}"
        );
        let mut doc = image_doc(&s, clean_files());
        doc["lock"] = json!({"locked": false, "packages": []});
        doc["packages"] = json!({});
        let v = run(doc);
        assert!(v
            .iter()
            .any(|v| v.rule == "kiln.lock" && v.msg.contains("no entry for image t")));
    }

    #[test]
    fn size_budgets_apply_by_image_then_by_name() {
        let s = spec(json!({"name": "scratch-plus"}));
        let mut doc = image_doc(&s, clean_files());
        doc["size"]["compressed"] = json!(200_001);
        let v = run(doc.clone());
        let d = denials(&v);
        assert_eq!(
            d,
            vec![("kiln.size".into(), None, Some("size.compressed".into()))]
        );
        assert_eq!(
            v[0].msg,
            "200001 bytes compressed, over the budget of 200000 bytes"
        );
        doc["size"]["compressed"] = json!(200_000);
        assert_eq!(denials(&run(doc)), vec![]);
    }

    #[test]
    fn missing_annotations_are_denied() {
        let s = spec(json!({"annotations": {"org.opencontainers.image.source": " "}}));
        let v = run(engine::definition_input(&s, &LockFacts::default()));
        assert!(v.iter().any(|v| v.rule == "kiln.annotations"));
        let mut doc = image_doc(&s, clean_files());
        doc["annotations"] = json!({"org.opencontainers.image.title": "t"});
        let d = denials(&run(doc));
        assert!(d.contains(&(
            "kiln.annotations".into(),
            None,
            Some("annotations.org.opencontainers.image.source".into())
        )));
        assert!(d.contains(&(
            "kiln.annotations".into(),
            None,
            Some("annotations.org.opencontainers.image.description".into())
        )));
    }

    #[test]
    fn policy_dirs_need_rego_and_name_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_sources(dir.path(), &[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no .rego file"), "{e}");
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.rego"), "package a\n").unwrap();
        std::fs::write(dir.path().join("a_test.rego"), "package a_test\n").unwrap();
        std::fs::write(dir.path().join("d.json"), "{}").unwrap();
        let (rego, data) = read_sources(dir.path(), &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(rego.len(), 1);
        assert_eq!(rego[0].name, "sub/a.rego");
        assert_eq!(data[0].name, "d.json");
    }
}
