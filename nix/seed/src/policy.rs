//! Policy as code: Rego policies with `deny` and `warn` rules (as conftest
//! reads them) evaluated in-process by regorus over what an image is made
//! of. Shared by the driver (`kiln policy`, `kiln build`) and by the seed's
//! `policy` step, which `nix flake check` runs inside the sandbox.
//!
//! Two kinds of input document are evaluated (docs/policy.md):
//!
//! - `kind = "definition"`: the definition with its variant applied, before
//!   anything is built (so that a definition the loader would refuse is
//!   still reported by policy, and policy can speak about intent);
//! - `kind = "image"`: one platform of a built image: its config,
//!   annotations, the file list of its layers stacked in order (later
//!   layers win, whiteouts honoured), the packages installed in it, its
//!   sizes, and the lock entries it was built from.
//!
//! A rule yields a string, or an object `{msg, path | field}`; a violation
//! names the rule (the policy's package), the image, the architecture and
//! the offending path or field.

use crate::digest::Digest;
use crate::oci::{self, Layout};
use crate::spec::{Arch, Definition, ImageSpec, SpecError};
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The report the `policy` step writes into its output.
pub const REPORT_FILE: &str = "report.json";

/// Files in a layer whose content is read while listing (the dpkg database
/// kiln writes and the account files): anything larger is not a database.
const MAX_SMALL_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: not a valid Rego policy:{message}")]
    Parse { file: String, message: String },
    #[error("{file}: not a valid data document: {message}")]
    Data { file: String, message: String },
    #[error("rule {rule} ({file}) failed on {subject}: {message}")]
    Eval {
        rule: String,
        file: String,
        subject: String,
        message: String,
    },
    #[error("rule {rule} ({file}) on {subject}: {message}")]
    BadResult {
        rule: String,
        file: String,
        subject: String,
        message: String,
    },
    #[error("no policies: no .rego file was given")]
    NoPolicies,
    #[error("image {image}: reading the layout")]
    Layout {
        image: String,
        #[source]
        source: oci::Error,
    },
    #[error("image {image}: layer {digest}: {message}")]
    Layer {
        image: String,
        digest: String,
        message: String,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("the input is not a valid policy step input")]
    Input(#[source] serde_json::Error),
    #[error("invalid definition")]
    Spec(#[from] SpecError),
    #[error("{count} policy violation(s) (deny):\n{report}")]
    Denied { count: usize, report: String },
    #[error(transparent)]
    Oci(#[from] oci::Error),
}

/// One `.rego` or data file: a name for messages (its path) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Deny,
    Warn,
}

impl Level {
    fn rule(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Warn => "warn",
        }
    }
}

/// What a policy run is looking at: an image's definition, or one platform
/// of the built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub image: String,
    pub arch: Option<Arch>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arch {
            Some(a) => write!(f, "image {} ({a})", self.image),
            None => write!(f, "the definition of image {}", self.image),
        }
    }
}

/// One finding of one rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub level: Level,
    pub image: String,
    /// `None` for a finding on the definition.
    pub arch: Option<Arch>,
    /// The policy's package (`kiln.shell`).
    pub rule: String,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The file(s) declaring the rule.
    pub policy: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Deny => "DENY",
            Level::Warn => "WARN",
        };
        let arch = self
            .arch
            .map_or("definition".to_string(), |a| a.to_string());
        write!(f, "{level} {} {} ({arch})", self.rule, self.image)?;
        if let Some(p) = &self.path {
            write!(f, " path {p}")?;
        }
        if let Some(k) = &self.field {
            write!(f, " field {k}")?;
        }
        write!(f, ": {} [{}]", self.msg, self.policy)
    }
}

/// Violations one per line, denials first.
pub fn render(violations: &[Violation]) -> String {
    let mut sorted: Vec<&Violation> = violations.iter().collect();
    sorted.sort();
    sorted.iter().map(|v| format!("{v}\n")).collect()
}

/// A rule package and the files that declare it.
#[derive(Debug, Clone)]
struct Package {
    /// `data.kiln.shell`
    path: String,
    files: Vec<String>,
    levels: BTreeSet<Level>,
}

/// Parsed policies and data, ready to evaluate inputs.
#[derive(Clone)]
pub struct Policies {
    engine: regorus::Engine,
    packages: Vec<Package>,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("packages", &self.packages)
            .finish()
    }
}

impl Policies {
    /// Parses every policy (Rego v1; a file that is only valid as Rego v0,
    /// as older conftest policies are, is accepted as such) and merges the
    /// data documents (JSON objects) into `data`.
    pub fn load(policies: &[PolicyFile], data: &[PolicyFile]) -> Result<Policies, Error> {
        if policies.is_empty() {
            return Err(Error::NoPolicies);
        }
        let mut engine = regorus::Engine::new();
        // A builtin that fails (a bad conversion, a division by zero) is an
        // error, not a silently undefined rule: a broken policy must never
        // pass quietly.
        engine.set_strict_builtin_errors(true);
        let mut packages: Vec<Package> = Vec::new();
        for src in policies {
            let path = match engine.add_policy(src.name.clone(), src.text.clone()) {
                Ok(p) => p,
                Err(v1) => {
                    engine.set_rego_v0(true);
                    let v0 = engine.add_policy(src.name.clone(), src.text.clone());
                    engine.set_rego_v0(false);
                    v0.map_err(|_| Error::Parse {
                        file: src.name.clone(),
                        message: v1.to_string(),
                    })?
                }
            };
            let mut levels = BTreeSet::new();
            for level in [Level::Deny, Level::Warn] {
                if engine
                    .has_declared_rule_rooted_at(&src.name, level.rule())
                    .map_err(|e| Error::Parse {
                        file: src.name.clone(),
                        message: format!(" {e}"),
                    })?
                {
                    levels.insert(level);
                }
            }
            match packages.iter_mut().find(|p| p.path == path) {
                Some(p) => {
                    p.files.push(src.name.clone());
                    p.levels.extend(levels);
                }
                None => packages.push(Package {
                    path,
                    files: vec![src.name.clone()],
                    levels,
                }),
            }
        }
        for d in data {
            let value: Value = serde_json::from_str(&d.text).map_err(|e| Error::Data {
                file: d.name.clone(),
                message: e.to_string(),
            })?;
            if !value.is_object() {
                return Err(Error::Data {
                    file: d.name.clone(),
                    message: "the top level must be a JSON object".into(),
                });
            }
            engine
                .add_data(regorus::Value::from(value))
                .map_err(|e| Error::Data {
                    file: d.name.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(Policies { engine, packages })
    }

    /// Packages that declare a `deny` or `warn` rule, with their files.
    pub fn rules(&self) -> Vec<(String, Vec<String>)> {
        self.packages
            .iter()
            .filter(|p| !p.levels.is_empty())
            .map(|p| (rule_name(&p.path), p.files.clone()))
            .collect()
    }

    /// Evaluates every `deny` and `warn` rule on `input`.
    pub fn evaluate(&mut self, subject: &Subject, input: Value) -> Result<Vec<Violation>, Error> {
        self.engine.set_input(regorus::Value::from(input));
        let mut out = Vec::new();
        for pkg in &self.packages {
            for &level in &pkg.levels {
                let rule = format!("{}.{}", pkg.path, level.rule());
                let files = pkg.files.join(", ");
                let value = self
                    .engine
                    .eval_rule(rule.clone())
                    .map_err(|e| Error::Eval {
                        rule: rule_name(&rule),
                        file: files.clone(),
                        subject: subject.to_string(),
                        message: e.to_string(),
                    })?;
                let value: Value = serde_json::to_value(&value).map_err(|e| Error::BadResult {
                    rule: rule_name(&rule),
                    file: files.clone(),
                    subject: subject.to_string(),
                    message: e.to_string(),
                })?;
                let bad = |message: String| Error::BadResult {
                    rule: rule_name(&rule),
                    file: files.clone(),
                    subject: subject.to_string(),
                    message,
                };
                let items = match value {
                    // Undefined: the rule did not fire.
                    Value::Null | Value::Bool(false) => Vec::new(),
                    Value::Bool(true) => {
                        vec![Value::String(format!("{} is true", rule_name(&rule)))]
                    }
                    Value::Array(items) => items,
                    Value::String(_) | Value::Object(_) => vec![value],
                    other => return Err(bad(format!("yields {other}, not a set of messages"))),
                };
                for item in items {
                    let (msg, path, field) = match item {
                        Value::String(s) => (s, None, None),
                        Value::Object(mut o) => {
                            let msg = match o.remove("msg") {
                                Some(Value::String(s)) => s,
                                _ => {
                                    return Err(bad(format!(
                                        "yields {}, an object without a string \"msg\"",
                                        Value::Object(o)
                                    )))
                                }
                            };
                            (msg, scalar(o.get("path")), scalar(o.get("field")))
                        }
                        other => {
                            return Err(bad(format!(
                                "yields {other}; a rule must yield strings or {{msg, path|field}} objects"
                            )))
                        }
                    };
                    out.push(Violation {
                        level,
                        image: subject.image.clone(),
                        arch: subject.arch,
                        rule: rule_name(&pkg.path),
                        msg,
                        path,
                        field,
                        policy: files.clone(),
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn rule_name(path: &str) -> String {
    path.strip_prefix("data.").unwrap_or(path).to_string()
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Lock entries of one architecture: package name → its `kiln.lock` entry.
pub type LockedPackages = BTreeMap<String, Value>;

/// What the lock says about an image: whether it has an entry, and the
/// pinned packages per architecture.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LockFacts {
    pub locked: bool,
    pub archs: BTreeMap<Arch, LockedPackages>,
}

fn lock_doc(facts: &LockFacts, arch: Option<Arch>) -> Value {
    let mut packages = Vec::new();
    for (a, pkgs) in &facts.archs {
        if arch.is_some_and(|x| x != *a) {
            continue;
        }
        for (name, entry) in pkgs {
            let mut e = match entry {
                Value::Object(o) => o.clone(),
                _ => serde_json::Map::new(),
            };
            e.insert("name".into(), json!(name));
            e.insert("arch".into(), json!(a));
            packages.push(Value::Object(e));
        }
    }
    json!({ "locked": facts.locked, "packages": packages })
}

fn base_doc(spec: &ImageSpec, kind: &str) -> serde_json::Map<String, Value> {
    let mut doc = serde_json::Map::new();
    doc.insert("kind".into(), json!(kind));
    doc.insert("image".into(), json!(spec.full_name()));
    doc.insert("name".into(), json!(spec.name));
    doc.insert("variant".into(), json!(spec.variant));
    doc.insert("tag".into(), json!(spec.tag()));
    doc.insert("debug".into(), json!(spec.debug));
    doc.insert(
        "definition".into(),
        serde_json::to_value(spec).expect("an image spec serializes"),
    );
    doc
}

/// The input document for a definition (variant applied). `spec` need not
/// have passed validation: policy reports what the loader would refuse too.
pub fn definition_input(spec: &ImageSpec, lock: &LockFacts) -> Value {
    let mut doc = base_doc(spec, "definition");
    doc.insert("arch".into(), Value::Null);
    let user = match spec.user() {
        Ok((uid, gid)) => json!({"value": spec.accounts.run_as, "uid": uid, "gid": gid}),
        Err(_) => json!({"value": spec.accounts.run_as, "uid": null, "gid": null}),
    };
    doc.insert("user".into(), user);
    doc.insert("env".into(), json!(spec.config.env));
    doc.insert("lock".into(), lock_doc(lock, None));
    Value::Object(doc)
}

/// The input document for one platform of a built image.
pub fn image_input(spec: &ImageSpec, arch: Arch, facts: &ImageFacts, lock: &LockFacts) -> Value {
    let mut doc = base_doc(spec, "image");
    doc.insert("arch".into(), json!(arch));
    doc.insert("user".into(), facts.user());
    doc.insert("config".into(), facts.config.clone());
    doc.insert("annotations".into(), json!(facts.annotations));
    doc.insert("env".into(), json!(facts.env()));
    doc.insert(
        "files".into(),
        serde_json::to_value(&facts.files).expect("file entries serialize"),
    );
    doc.insert("packages".into(), json!(facts.packages));
    doc.insert("size".into(), json!(facts.size));
    doc.insert("lock".into(), lock_doc(lock, Some(arch)));
    Value::Object(doc)
}

/// One path of the image's final file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// `file`, `directory`, `symlink`, `hardlink`, `char`, `block`, `fifo`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits with setuid/setgid/sticky (`& 07777`), as a number.
    pub mode: u32,
    /// The same, as an octal string for messages (`"1777"`).
    pub octal: String,
    pub uid: u64,
    pub gid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Symlink target as written; hard link target as an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Index of the layer that put it there.
    pub layer: usize,
}

/// A package as recorded in the image's dpkg database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub version: String,
    pub architecture: String,
    /// The database file it was read from.
    pub file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Size {
    /// What a pull transfers: manifest + config + compressed layers.
    pub compressed: u64,
    /// Sum of the regular files' sizes in the final file system.
    pub uncompressed: u64,
    pub layers: Vec<u64>,
    pub files: usize,
}

/// What policy sees of one platform of a built image.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    pub arch: Arch,
    pub manifest: Digest,
    /// The whole OCI image config (`architecture`, `config.User`, ...).
    pub config: Value,
    pub annotations: BTreeMap<String, String>,
    pub files: BTreeMap<String, FileEntry>,
    pub packages: BTreeMap<String, InstalledPackage>,
    pub size: Size,
    /// `/etc/passwd` of the image, to resolve a user given by name.
    passwd: Option<String>,
}

impl ImageFacts {
    /// Reads the image `manifest` names in `layout`: every blob is checked
    /// against its digest, and the layers are stacked in order.
    pub fn read(layout: &Layout, manifest: &Descriptor, image: &str) -> Result<ImageFacts, Error> {
        let lerr = |source| Error::Layout {
            image: image.to_string(),
            source,
        };
        let m = layout.read_manifest(manifest).map_err(lerr)?;
        let config_bytes = layout.read_blob(m.config()).map_err(lerr)?;
        layout.read_config(m.config()).map_err(lerr)?;
        let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| Error::Image {
            image: image.into(),
            message: format!("config: {e}"),
        })?;
        let arch_name = config["architecture"].as_str().unwrap_or_default();
        let arch = Arch::parse(arch_name).ok_or_else(|| Error::Image {
            image: image.into(),
            message: format!("config: architecture {arch_name:?} is not amd64 or arm64"),
        })?;
        let annotations = m
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut tree = Tree::default();
        let mut size = Size {
            compressed: manifest.size() + m.config().size(),
            ..Size::default()
        };
        for (i, l) in m.layers().iter().enumerate() {
            layout.verify_blob(l).map_err(lerr)?;
            size.compressed += l.size();
            size.layers.push(l.size());
            let digest = oci::kiln_digest(l.digest()).map_err(|message| Error::Layer {
                image: image.into(),
                digest: l.digest().to_string(),
                message,
            })?;
            let file =
                std::fs::File::open(layout.blob_path(&digest)).map_err(|e| Error::Layer {
                    image: image.into(),
                    digest: digest.to_string(),
                    message: e.to_string(),
                })?;
            let reader = io::BufReader::with_capacity(
                1 << 16,
                crate::oci::layer_reader(l.media_type().as_ref(), file).map_err(|e| {
                    Error::Layer {
                        image: image.into(),
                        digest: digest.to_string(),
                        message: e.to_string(),
                    }
                })?,
            );
            tree.apply(reader, i).map_err(|message| Error::Layer {
                image: image.into(),
                digest: digest.to_string(),
                message,
            })?;
        }
        size.uncompressed = tree
            .files
            .values()
            .filter(|f| f.kind == "file")
            .filter_map(|f| f.size)
            .sum();
        size.files = tree.files.len();
        let mut packages = BTreeMap::new();
        for (path, text) in &tree.small {
            let is_db = path == "/var/lib/dpkg/status"
                || (path.starts_with("/var/lib/dpkg/status.d/") && !path.ends_with(".md5sums"));
            if is_db {
                for (name, p) in parse_dpkg_status(text, path) {
                    packages.insert(name, p);
                }
            }
        }
        let passwd = tree.small.remove("/etc/passwd");
        Ok(ImageFacts {
            arch,
            manifest: oci::kiln_digest(manifest.digest()).map_err(|message| Error::Image {
                image: image.into(),
                message,
            })?,
            config,
            annotations,
            files: tree.files,
            packages,
            size,
            passwd,
        })
    }

    /// `Env` of the config as a map.
    pub fn env(&self) -> BTreeMap<String, String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .filter_map(|e| e.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The config's `User`, resolved to numbers where it can be: numeric
    /// `uid[:gid]`, or a name looked up in the image's /etc/passwd.
    pub fn user(&self) -> Value {
        let value = self.config["config"]["User"].as_str().unwrap_or_default();
        let (u, g) = value.split_once(':').unwrap_or((value, ""));
        let lookup = |name: &str| -> Option<(u64, u64)> {
            self.passwd.as_deref()?.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[0] == name)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
        };
        let uid_gid = match u.parse::<u64>() {
            Ok(uid) => Some((uid, None)),
            Err(_) if u.is_empty() => None,
            Err(_) => lookup(u).map(|(uid, gid)| (uid, Some(gid))),
        };
        match uid_gid {
            Some((uid, gid)) => {
                let gid = g.parse::<u64>().ok().or(gid).unwrap_or(uid);
                json!({"value": value, "uid": uid, "gid": gid})
            }
            // An unset user is root.
            None if u.is_empty() => json!({"value": value, "uid": 0, "gid": 0}),
            None => json!({"value": value, "uid": null, "gid": null}),
        }
    }
}

/// The image's file system as layers are applied to it.
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, FileEntry>,
    small: BTreeMap<String, String>,
}

impl Tree {
    fn apply(&mut self, reader: impl Read, layer: usize) -> Result<(), String> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| e.to_string())?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
            let raw = entry
                .path()
                .map_err(|e| format!("entry name: {e}"))?
                .to_string_lossy()
                .into_owned();
            let path = normalize(&raw).ok_or_else(|| format!("entry {raw:?} escapes the root"))?;
            let (dir, base) = split(&path);
            if base == ".wh..wh..opq" {
                let prefix = format!("{}/", dir.trim_end_matches('/'));
                self.files.retain(|p, _| !p.starts_with(&prefix));
                self.small.retain(|p, _| !p.starts_with(&prefix));
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone = format!("{}/{hidden}", dir.trim_end_matches('/'));
                let prefix = format!("{gone}/");
                self.files
                    .retain(|p, _| p != &gone && !p.starts_with(&prefix));
                self.small
                    .retain(|p, _| p != &gone && !p.starts_with(&prefix));
                continue;
            }
            let h = entry.header();
            let kind = match h.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => "file",
                tar::EntryType::Directory => "directory",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Link => "hardlink",
                tar::EntryType::Char => "char",
                tar::EntryType::Block => "block",
                tar::EntryType::Fifo => "fifo",
                other => {
                    return Err(format!(
                        "entry {path}: unsupported tar entry type {other:?}"
                    ))
                }
            };
            let mode = h.mode().map_err(|e| format!("entry {path}: mode: {e}"))? & 0o7777;
            let target = match kind {
                "symlink" | "hardlink" => {
                    let t = entry
                        .link_name()
                        .map_err(|e| format!("entry {path}: link name: {e}"))?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Some(if kind == "hardlink" {
                        normalize(&t)
                            .ok_or_else(|| format!("hard link {path} -> {t:?} escapes the root"))?
                    } else {
                        t
                    })
                }
                _ => None,
            };
            let size = (kind == "file").then(|| h.size().unwrap_or(0));
            let entry_uid = h.uid().map_err(|e| format!("entry {path}: uid: {e}"))?;
            let entry_gid = h.gid().map_err(|e| format!("entry {path}: gid: {e}"))?;
            // A non-directory replaces whatever was below a directory of the
            // same name in a lower layer.
            if kind != "directory" {
                let prefix = format!("{path}/");
                if self
                    .files
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(p, _)| p.starts_with(&prefix))
                {
                    self.files.retain(|p, _| !p.starts_with(&prefix));
                }
            }
            if kind == "file" && size.unwrap_or(0) <= MAX_SMALL_FILE && wants_content(&path) {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| format!("entry {path}: {e}"))?;
                self.small.insert(path.clone(), text);
            } else {
                self.small.remove(&path);
            }
            self.files.insert(
                path.clone(),
                FileEntry {
                    path,
                    kind: kind.into(),
                    mode,
                    octal: format!("{mode:04o}"),
                    uid: entry_uid,
                    gid: entry_gid,
                    size,
                    target,
                    layer,
                },
            );
        }
        Ok(())
    }
}

fn wants_content(path: &str) -> bool {
    path == "/etc/passwd"
        || path == "/var/lib/dpkg/status"
        || path.starts_with("/var/lib/dpkg/status.d/")
}

/// `./usr/bin/x`, `usr/bin/x/`, `/usr/bin/x` → `/usr/bin/x`; `.` → `/`.
/// `None` when a `..` would leave the root.
fn normalize(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// Package, Version and Architecture of each stanza of a dpkg database file.
fn parse_dpkg_status(text: &str, file: &str) -> Vec<(String, InstalledPackage)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        if let Some(name) = field("Package") {
            out.push((
                name,
                InstalledPackage {
                    version: field("Version").unwrap_or_default(),
                    architecture: field("Architecture").unwrap_or_default(),
                    file: file.to_string(),
                },
            ));
        }
    }
    out
}

/// The image manifests, one per platform, of the image `name` leads to in
/// a layout (resolved as every kiln command resolves it,
/// [`crate::imageref::resolve_layout`]; without a name, the layout's one
/// image), read by the one image walker ([`crate::oci::tree`]): any blob
/// that is missing or does not match, or a manifest that disagrees with
/// its index or config, is an error.
pub fn platform_manifests(
    layout: &Layout,
    name: Option<&str>,
    image: &str,
) -> Result<Vec<Descriptor>, Error> {
    let source = crate::oci::LayoutSource::new(layout.clone(), name);
    let bad = |message: String| Error::Image {
        image: image.into(),
        message: format!("{}: {message}", layout.root().display()),
    };
    let tree =
        crate::oci::tree::read(&source).map_err(|e| bad(crate::oci::layout_source::chain(&e)))?;
    if !tree.problems.is_empty() {
        return Err(bad(tree.problems.join("; ")));
    }
    if tree.platforms.is_empty() {
        return Err(bad("holds no image manifest".into()));
    }
    Ok(tree.platforms.into_iter().map(|n| n.descriptor).collect())
}

/// Reads every platform of the image `name` leads to in the layout at
/// `root` (without a name: the layout's one image).
pub fn read_layout(root: &Path, name: Option<&str>, image: &str) -> Result<Vec<ImageFacts>, Error> {
    let layout = Layout::open(root).map_err(|source| Error::Layout {
        image: image.to_string(),
        source,
    })?;
    let mut out: Vec<ImageFacts> = Vec::new();
    for d in platform_manifests(&layout, name, image)? {
        let facts = ImageFacts::read(&layout, &d, image)?;
        if let Some(other) = out.iter().find(|f| f.arch == facts.arch) {
            return Err(Error::Image {
                image: image.into(),
                message: format!(
                    "{} holds two different {} images ({} and {})",
                    root.display(),
                    facts.arch,
                    other.manifest,
                    facts.manifest
                ),
            });
        }
        out.push(facts);
    }
    out.sort_by_key(|f| f.arch);
    Ok(out)
}

/// Evaluates `policies` on an image's definition and on every platform of
/// the image built from it (if `layout` is given). Returns the violations
/// and the platforms that were evaluated, with their sizes.
pub fn evaluate(
    policies: &mut Policies,
    spec: &ImageSpec,
    layout: Option<(&Path, Option<&str>)>,
    lock: &LockFacts,
) -> Result<(Vec<Violation>, BTreeMap<Arch, Size>), Error> {
    let image = spec.full_name();
    let mut out = policies.evaluate(
        &Subject {
            image: image.clone(),
            arch: None,
        },
        definition_input(spec, lock),
    )?;
    let mut archs = BTreeMap::new();
    if let Some((root, name)) = layout {
        for facts in read_layout(root, name, &image)? {
            let input = image_input(spec, facts.arch, &facts, lock);
            out.extend(policies.evaluate(
                &Subject {
                    image: image.clone(),
                    arch: Some(facts.arch),
                },
                input,
            )?);
            archs.insert(facts.arch, facts.size);
        }
    }
    out.sort();
    Ok((out, archs))
}

/// Input of the `policy` step (docs/internals.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    /// image.toml as JSON.
    pub definition: Definition,
    #[serde(default)]
    pub variant: Option<String>,
    /// Single-platform image layouts (outputs of the image step) per arch.
    pub images: BTreeMap<Arch, PathBuf>,
    /// The lock's entries for the image's packages, per arch.
    #[serde(default)]
    pub lock: BTreeMap<Arch, LockedPackages>,
    #[serde(default)]
    pub locked: bool,
    pub policies: Vec<PolicyFile>,
    #[serde(default)]
    pub data: Vec<PolicyFile>,
    /// An application's base (its definition and variant): the application
    /// is judged as it runs, on its base ([`ImageSpec::on_base`]), and
    /// `lock` holds the base's packages.
    #[serde(default)]
    pub base: Option<BaseInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseInput {
    pub definition: Definition,
    #[serde(default)]
    pub variant: Option<String>,
}

/// The `policy` step: evaluates the policies on the image's definition and
/// on each of its platforms; writes `report.json`; fails on any denial so
/// that `nix flake check` fails.
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: StepInput = serde_json::from_slice(input).map_err(Error::Input)?;
    let mut spec = input.definition.image(input.variant.as_deref())?;
    if let Some(base) = &input.base {
        spec = spec.on_base(&base.definition.image(base.variant.as_deref())?);
    }
    let lock = LockFacts {
        locked: input.locked,
        archs: input.lock.clone(),
    };
    let mut policies = Policies::load(&input.policies, &input.data)?;
    let mut violations = policies.evaluate(
        &Subject {
            image: spec.full_name(),
            arch: None,
        },
        definition_input(&spec, &lock),
    )?;
    for (arch, dir) in &input.images {
        let facts = read_layout(dir, None, &spec.full_name())?;
        let [facts] = facts.as_slice() else {
            return Err(Error::Image {
                image: spec.full_name(),
                message: format!("{} holds {} platforms, not one", dir.display(), facts.len()),
            });
        };
        if facts.arch != *arch {
            return Err(Error::Image {
                image: spec.full_name(),
                message: format!(
                    "{} is the image for {}, not {arch}",
                    dir.display(),
                    facts.arch
                ),
            });
        }
        violations.extend(policies.evaluate(
            &Subject {
                image: spec.full_name(),
                arch: Some(*arch),
            },
            image_input(&spec, *arch, facts, &lock),
        )?);
    }
    violations.sort();
    let denied = violations.iter().filter(|v| v.level == Level::Deny).count();
    if denied > 0 {
        return Err(Error::Denied {
            count: denied,
            report: render(&violations),
        });
    }
    // Warnings do not fail the check but show in its build log.
    eprint!("{}", render(&violations));
    oci::fresh_output(out, || -> Result<(), Error> {
        std::fs::create_dir_all(out).map_err(|e| Error::Image {
            image: spec.full_name(),
            message: format!("creating {}: {e}", out.display()),
        })?;
        let report = json!({
            "image": spec.full_name(),
            "violations": violations,
            "rules": policies.rules().into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        });
        std::fs::write(out.join(REPORT_FILE), crate::json::pretty(&report)).map_err(|e| {
            Error::Image {
                image: spec.full_name(),
                message: format!("writing {}: {e}", out.join(REPORT_FILE).display()),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{LayoutWriter, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE};
    use crate::tarwrite::{write_layer, Entry, EntryKind};

    fn src(name: &str, text: &str) -> PolicyFile {
        PolicyFile {
            name: name.into(),
            text: text.into(),
        }
    }

    fn subject() -> Subject {
        Subject {
            image: "x".into(),
            arch: Some(Arch::Amd64),
        }
    }

    fn spec(debug: bool, run_as: &str) -> ImageSpec {
        let def: Definition = serde_json::from_value(json!({
            "name": "x",
            "description": "d",
            "debug": debug,
            "packages": {"include": ["ca-certificates"]},
            "accounts": {
                "run_as": run_as,
                "users": [{"name": "nonroot", "uid": 65532, "gid": 65532}],
                "groups": [{"name": "nonroot", "gid": 65532}]
            }
        }))
        .unwrap();
        def.image(None).unwrap()
    }

    #[test]
    fn a_policy_that_does_not_parse_is_named_with_its_line() {
        let e = Policies::load(
            &[src(
                "policy/broken.rego",
                "package kiln.broken\n\ndeny contains msg if {\n  msg := \n}\n",
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("policy/broken.rego: not a valid Rego policy"),
            "{e}"
        );
        assert!(e.contains("--> policy/broken.rego:4:7"), "{e}");
    }

    #[test]
    fn rego_v0_policies_are_accepted() {
        let mut p = Policies::load(
            &[src(
                "old.rego",
                "package main\n\ndeny[msg] {\n  input.user == \"root\"\n  msg := \"root\"\n}\n",
            )],
            &[],
        )
        .unwrap();
        let v = p.evaluate(&subject(), json!({"user": "root"})).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "main");
        assert_eq!(v[0].msg, "root");
    }

    #[test]
    fn strings_and_objects_become_violations() {
        let mut p = Policies::load(
            &[src(
                "p.rego",
                r#"package kiln.t
import rego.v1
deny contains "plain" if input.a
deny contains {"msg": "with path", "path": "/bin/sh"} if input.a
warn contains {"msg": "with field", "field": "config.User"} if input.a
"#,
            )],
            &[],
        )
        .unwrap();
        assert_eq!(
            p.rules(),
            vec![("kiln.t".to_string(), vec!["p.rego".to_string()])]
        );
        assert!(p
            .evaluate(&subject(), json!({"a": false}))
            .unwrap()
            .is_empty());
        let v = p.evaluate(&subject(), json!({"a": true})).unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        let shell = v.iter().find(|v| v.msg == "with path").unwrap();
        assert_eq!(shell.level, Level::Deny);
        assert_eq!(shell.path.as_deref(), Some("/bin/sh"));
        assert_eq!(shell.arch, Some(Arch::Amd64));
        let warn = v.iter().find(|v| v.level == Level::Warn).unwrap();
        assert_eq!(warn.field.as_deref(), Some("config.User"));
        assert_eq!(
            warn.to_string(),
            "WARN kiln.t x (amd64) field config.User: with field [p.rego]"
        );
    }

    #[test]
    fn a_rule_that_fails_at_evaluation_is_named() {
        let mut p = Policies::load(
            &[src(
                "policy/bad.rego",
                "package kiln.bad\nimport rego.v1\ndeny contains msg if {\n  n := to_number(input.v)\n  msg := sprintf(\"%v\", [n])\n}\n",
            )],
            &[],
        )
        .unwrap();
        let e = p
            .evaluate(&subject(), json!({"v": "not a number"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("rule kiln.bad.deny (policy/bad.rego) failed on image x (amd64): "),
            "{e}"
        );
    }

    #[test]
    fn a_rule_yielding_something_else_is_an_error() {
        let mut p = Policies::load(
            &[src(
                "n.rego",
                "package kiln.n\nimport rego.v1\ndeny contains 42 if true\n",
            )],
            &[],
        )
        .unwrap();
        let e = p.evaluate(&subject(), json!({})).unwrap_err().to_string();
        assert!(
            e.contains("rule kiln.n.deny (n.rego)") && e.contains("42"),
            "{e}"
        );
    }

    #[test]
    fn data_documents_are_merged_and_bad_ones_named() {
        let rego = src(
            "s.rego",
            "package kiln.s\nimport rego.v1\ndeny contains \"big\" if input.size > data.budgets.x\n",
        );
        let mut p = Policies::load(
            std::slice::from_ref(&rego),
            &[src("b.json", r#"{"budgets": {"x": 10}}"#)],
        )
        .unwrap();
        assert_eq!(
            p.evaluate(&subject(), json!({"size": 11})).unwrap().len(),
            1
        );
        assert!(p
            .evaluate(&subject(), json!({"size": 9}))
            .unwrap()
            .is_empty());
        let e = Policies::load(&[rego], &[src("b.json", "[1]")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.json: "), "{e}");
        assert!(Policies::load(&[], &[]).is_err());
    }

    /// A layout with one amd64 image made of `layers`.
    fn layout(dir: &Path, layers: Vec<Vec<Entry>>, user: &str) -> PathBuf {
        let root = dir.join("layout");
        let w = LayoutWriter::create(&root).unwrap();
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for entries in layers {
            let blob = write_layer(entries).unwrap();
            w.put_blob(&blob.bytes).unwrap();
            descs.push(oci::descriptor(LAYER_MEDIA_TYPE, &blob.digest, blob.size()));
            diff_ids.push(blob.diff_id.to_string());
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"User": user, "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        let (cdesc, _) = w.put_document(CONFIG_MEDIA_TYPE, &config).unwrap();
        let mut ann = BTreeMap::new();
        ann.insert(
            "org.opencontainers.image.title".to_string(),
            "x".to_string(),
        );
        let (mut mdesc, _) = w
            .put_document(
                oci::MANIFEST_MEDIA_TYPE,
                &oci::new_manifest(cdesc, descs, &ann),
            )
            .unwrap();
        let mut refs = BTreeMap::new();
        refs.insert(oci::REF_NAME.to_string(), "latest".to_string());
        oci::set_annotations(&mut mdesc, &refs);
        w.write_index(vec![mdesc]).unwrap();
        root
    }

    fn file(path: &str, data: &[u8], mode: u32) -> Entry {
        Entry::file(path, data.to_vec(), mode, 0, 0, 0)
    }

    #[test]
    fn image_facts_stack_layers_in_order() {
        let dir = crate::oci::tests::scratch("policy-facts");
        let root = layout(
            &dir,
            vec![
                vec![
                    Entry::directory("bin", 0o755, 0, 0, 0),
                    file("bin/sh", b"#!", 0o755),
                    Entry::directory("opt", 0o755, 0, 0, 0),
                    file("opt/old", b"x", 0o644),
                    Entry::directory("tmp", 0o1777, 0, 0, 0),
                    file("usr/bin/su", b"su", 0o4755),
                    Entry {
                        path: "usr/bin/su2".into(),
                        kind: EntryKind::Hardlink("usr/bin/su".into()),
                        mode: 0o4755,
                        uid: 0,
                        gid: 0,
                        mtime: 0,
                    },
                ],
                vec![
                    file("bin/.wh.sh", b"", 0o644),
                    file("opt", b"now a file", 0o666),
                    Entry::directory("var/lib/dpkg/status.d", 0o755, 0, 0, 0),
                    file(
                        "var/lib/dpkg/status.d/ca-certificates",
                        b"Package: ca-certificates\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
                        0o644,
                    ),
                    file("var/lib/dpkg/status.d/ca-certificates.md5sums", b"", 0o644),
                    file("etc/passwd", b"root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65533::/:/x\n", 0o644),
                ],
            ],
            "nonroot",
        );
        let facts = read_layout(&root, None, "x").unwrap();
        assert_eq!(facts.len(), 1);
        let f = &facts[0];
        assert_eq!(f.arch, Arch::Amd64);
        assert!(!f.files.contains_key("/bin/sh"), "whiteout");
        assert!(f.files.contains_key("/bin"));
        assert!(!f.files.contains_key("/opt/old"), "replaced by a file");
        assert_eq!(f.files["/opt"].kind, "file");
        assert_eq!(f.files["/opt"].layer, 1);
        assert_eq!(f.files["/tmp"].octal, "1777");
        assert_eq!(f.files["/usr/bin/su"].mode, 0o4755);
        assert_eq!(f.files["/usr/bin/su2"].kind, "hardlink");
        assert_eq!(
            f.files["/usr/bin/su2"].target.as_deref(),
            Some("/usr/bin/su")
        );
        assert_eq!(f.packages["ca-certificates"].version, "1");
        assert_eq!(f.packages.len(), 1);
        assert_eq!(
            f.user(),
            json!({"value": "nonroot", "uid": 65532, "gid": 65533})
        );
        assert_eq!(
            f.env()["SSL_CERT_FILE"],
            "/etc/ssl/certs/ca-certificates.crt"
        );
        assert_eq!(f.annotations["org.opencontainers.image.title"], "x");
        assert_eq!(f.size.layers.len(), 2);
        assert!(f.size.compressed > f.size.layers.iter().sum::<u64>());

        // The whole document as policies see it.
        let lock = LockFacts {
            locked: true,
            archs: [(
                Arch::Amd64,
                [(
                    "ca-certificates".to_string(),
                    json!({"version": "1", "sha256": "ab"}),
                )]
                .into_iter()
                .collect(),
            )]
            .into_iter()
            .collect(),
        };
        let doc = image_input(&spec(false, "nonroot"), Arch::Amd64, f, &lock);
        assert_eq!(doc["kind"], "image");
        assert_eq!(doc["files"]["/tmp"]["mode"], 0o1777);
        assert_eq!(doc["lock"]["packages"][0]["name"], "ca-certificates");
        assert_eq!(doc["lock"]["packages"][0]["arch"], "amd64");
        assert_eq!(doc["config"]["config"]["User"], "nonroot");
    }

    #[test]
    fn users_resolve_from_numbers_names_or_nothing() {
        let dir = crate::oci::tests::scratch("policy-users");
        for (user, want) in [
            (
                "65532:65532",
                json!({"value": "65532:65532", "uid": 65532, "gid": 65532}),
            ),
            ("0", json!({"value": "0", "uid": 0, "gid": 0})),
            ("", json!({"value": "", "uid": 0, "gid": 0})),
            ("ghost", json!({"value": "ghost", "uid": null, "gid": null})),
        ] {
            let d = dir.join(user.replace(':', "_") + "u");
            std::fs::create_dir_all(&d).unwrap();
            let root = layout(
                &d,
                vec![vec![file("etc/passwd", b"root:x:0:0::/:/x\n", 0o644)]],
                user,
            );
            assert_eq!(
                read_layout(&root, None, "x").unwrap()[0].user(),
                want,
                "{user:?}"
            );
        }
    }

    #[test]
    fn definition_input_resolves_the_user_without_validation() {
        // The loader refuses run_as = 0 without debug; policy must still see it.
        let s = spec(false, "0");
        assert!(s.validate().is_err());
        let doc = definition_input(&s, &LockFacts::default());
        assert_eq!(doc["kind"], "definition");
        assert_eq!(doc["user"]["uid"], 0);
        assert_eq!(doc["debug"], false);
        assert_eq!(doc["arch"], Value::Null);
        assert_eq!(doc["lock"]["locked"], false);
    }

    #[test]
    fn tampered_layers_are_refused() {
        let dir = crate::oci::tests::scratch("policy-tampered");
        let root = layout(&dir, vec![vec![file("a", b"a", 0o644)]], "1");
        for entry in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
            let p = entry.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut b = bytes.clone();
                let n = b.len();
                b[n - 5] ^= 1;
                std::fs::write(&p, b).unwrap();
            }
        }
        let e = read_layout(&root, None, "x").unwrap_err();
        assert!(matches!(e, Error::Layout { .. }), "{e}");
    }

    fn step_input(layout: &Path, rego: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "definition": {
                "name": "x", "description": "d", "archs": ["amd64"],
                "packages": {"include": ["ca-certificates"]},
                "accounts": {"run_as": "65532"}
            },
            "variant": null,
            "images": {"amd64": layout},
            "locked": true,
            "lock": {"amd64": {}},
            "policies": [{"name": "policy/p.rego", "text": rego}],
            "data": []
        }))
        .unwrap()
    }

    #[test]
    fn the_step_writes_a_report_or_fails_leaving_nothing() {
        let dir = crate::oci::tests::scratch("policy-step");
        let root = layout(&dir, vec![vec![file("bin/sh", b"#!", 0o755)]], "65532");
        let shell = "package kiln.t\nimport rego.v1\ndeny contains {\"msg\": \"shell\", \"path\": p} if {\n  some p, _ in input.files\n  p == \"/bin/sh\"\n}\nwarn contains \"w\" if input.kind == \"definition\"\n";
        let out = dir.join("out-denied");
        let e = run(&step_input(&root, shell), &out)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("1 policy violation(s) (deny):\n"), "{e}");
        assert!(
            e.contains("DENY kiln.t x (amd64) path /bin/sh: shell [policy/p.rego]"),
            "{e}"
        );
        assert!(e.contains("WARN kiln.t x (definition): w"), "{e}");
        assert!(!out.exists());

        let warn_only =
            "package kiln.t\nimport rego.v1\nwarn contains \"w\" if input.kind == \"image\"\n";
        let out = dir.join("out-ok");
        run(&step_input(&root, warn_only), &out).unwrap();
        let report: Value =
            serde_json::from_slice(&std::fs::read(out.join(REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(report["image"], "x");
        assert_eq!(report["rules"], json!(["kiln.t"]));
        assert_eq!(report["violations"][0]["level"], "warn");
        assert_eq!(report["violations"][0]["arch"], "amd64");

        // A layout of another architecture than the input says is refused.
        let mut input: Value = serde_json::from_slice(&step_input(&root, warn_only)).unwrap();
        input["definition"]["archs"] = json!(["arm64"]);
        input["images"] = json!({"arm64": root});
        let e = run(&serde_json::to_vec(&input).unwrap(), &dir.join("out-arch"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is the image for amd64, not arm64"), "{e}");
    }

    #[test]
    fn paths_normalize_inside_the_root() {
        assert_eq!(normalize("./usr/bin/x/").as_deref(), Some("/usr/bin/x"));
        assert_eq!(normalize(".").as_deref(), Some("/"));
        assert_eq!(normalize("a/../b").as_deref(), Some("/b"));
        assert_eq!(normalize("../etc"), None);
        assert_eq!(split("/bin/sh"), ("/bin", "sh"));
        assert_eq!(split("/sh"), ("/", "sh"));
    }
}
