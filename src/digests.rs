//! Committed expected digests: `images/<name>/digests.json` holds, for the
//! image and each of its variants, the digest of the multi-platform image
//! index and of every platform's manifest. `kiln digests --check` builds
//! everything and requires exactly these digests (what CI does on a fresh
//! machine: a reproducibility check across machines on every run);
//! `kiln digests --update` rewrites them and explains what moved — the
//! inputs (lock entries, definition, seed) and the outputs (`kiln diff` of
//! the image built at the revision that committed the old digests and now).

use crate::definition;
use crate::diff::{self, Difference, Kind};
use crate::nixcmd::{self, BuildOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the expected digests, next to `image.toml`.
pub const FILE_NAME: &str = "digests.json";

#[derive(Debug, thiserror::Error)]
pub enum DigestsError {
    #[error(transparent)]
    Definition(#[from] definition::DefinitionError),
    #[error("images/{name}/image.toml: {message}")]
    Spec { name: String, message: String },
    #[error("unknown image {0:?}: not a definition name or image name under images/ (known: {1})")]
    UnknownImage(String, String),
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid digests file: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the images")]
    Build(#[from] nixcmd::NixError),
    #[error("{}: the build output has no readable image.json ({message})", out.display())]
    Output { out: PathBuf, message: String },
}

/// Digests of one image (one variant): its index and each platform's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDigests {
    /// The image index (`nix build .#<image>`; `oci:result:<tag>`).
    pub index: String,
    /// Each platform's manifest, by Debian architecture name.
    pub manifests: BTreeMap<String, String>,
}

/// `images/<name>/digests.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestsFile {
    /// By image name: `<name>` and `<name>-<variant>`.
    pub images: BTreeMap<String, ImageDigests>,
}

/// An image to build: its definition directory and flake attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Definition (directory) name.
    pub definition: String,
    /// Image name = flake attribute: `<name>` or `<name>-<variant>`.
    pub image: String,
}

/// Every image (and variant) defined under `images/`, or the ones `only`
/// names (a definition name selects all its variants).
pub fn targets(project: &Path, only: &[String]) -> Result<Vec<Target>, DigestsError> {
    let mut all = Vec::new();
    for loaded in definition::load_all(&project.join("images"))? {
        let def = &loaded.definition;
        let specs = def.images().map_err(|e| DigestsError::Spec {
            name: def.name.clone(),
            message: e.to_string(),
        })?;
        for spec in specs {
            all.push(Target {
                definition: def.name.clone(),
                image: spec.full_name(),
            });
        }
    }
    if only.is_empty() {
        return Ok(all);
    }
    let mut picked = Vec::new();
    for name in only {
        let matching: Vec<&Target> = all
            .iter()
            .filter(|t| &t.definition == name || &t.image == name)
            .collect();
        if matching.is_empty() {
            let known: Vec<&str> = all.iter().map(|t| t.image.as_str()).collect();
            return Err(DigestsError::UnknownImage(name.clone(), known.join(", ")));
        }
        for t in matching {
            if !picked.contains(t) {
                picked.push(t.clone());
            }
        }
    }
    Ok(picked)
}

pub fn path(project: &Path, definition: &str) -> PathBuf {
    project.join("images").join(definition).join(FILE_NAME)
}

/// Reads `images/<definition>/digests.json` (`None` when there is none).
pub fn read(project: &Path, definition: &str) -> Result<Option<DigestsFile>, DigestsError> {
    let p = path(project, definition);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DigestsError::Read { path: p, source }),
    };
    parse(&p, &bytes).map(Some)
}

fn parse(p: &Path, bytes: &[u8]) -> Result<DigestsFile, DigestsError> {
    let file: DigestsFile = serde_json::from_slice(bytes).map_err(|e| DigestsError::Parse {
        path: p.to_path_buf(),
        message: e.to_string(),
    })?;
    for (image, d) in &file.images {
        for digest in std::iter::once(&d.index).chain(d.manifests.values()) {
            kiln_seed::digest::Digest::parse(digest).map_err(|m| DigestsError::Parse {
                path: p.to_path_buf(),
                message: format!("{image}: {m}"),
            })?;
        }
    }
    Ok(file)
}

/// Writes `images/<definition>/digests.json` atomically, deterministically.
pub fn write(project: &Path, definition: &str, file: &DigestsFile) -> Result<(), DigestsError> {
    let p = path(project, definition);
    crate::fsutil::write_atomic(&p, &crate::json::pretty(file))
        .map_err(|source| DigestsError::Write { path: p, source })
}

/// The digests of a built multi-platform image, from its `image.json`.
pub fn of_output(out: &Path) -> Result<(String, ImageDigests), DigestsError> {
    let bad = |message: String| DigestsError::Output {
        out: out.to_path_buf(),
        message,
    };
    let built = crate::provenance::BuiltImage::read(out).map_err(|e| bad(e.to_string()))?;
    let index = built
        .index
        .ok_or_else(|| bad("not a multi-platform image (no index digest)".into()))?
        .to_string();
    let manifests = built
        .manifests
        .iter()
        .map(|(arch, d)| (arch.clone(), d.to_string()))
        .collect();
    Ok((built.full_name(), ImageDigests { index, manifests }))
}

/// A built image: its digests and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    pub image: String,
    pub out: PathBuf,
    pub digests: ImageDigests,
}

/// Builds `attrs` of `flake` (a project directory or flake reference) in one
/// `nix build` and reads their digests, keyed by image name.
pub fn build_all(
    flake: &Path,
    attrs: &[String],
    host_seed: Option<&str>,
) -> Result<BTreeMap<String, BuiltImage>, DigestsError> {
    let built = nixcmd::build(
        flake,
        attrs,
        &BuildOptions {
            host_seed: host_seed.map(str::to_string),
            ..Default::default()
        },
    )?;
    // Matched by what each output says it is: nix build --json does not
    // list results in the order of the attributes it was given.
    let mut out = BTreeMap::new();
    for b in built {
        let path = PathBuf::from(b.out());
        let (image, digests) = of_output(&path)?;
        out.insert(
            image.clone(),
            BuiltImage {
                image,
                out: path,
                digests,
            },
        );
    }
    Ok(out)
}

/// One image/platform whose digest is not the committed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub image: String,
    /// `None`: the index.
    pub arch: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.arch {
            Some(a) => format!("{} {a} manifest", self.image),
            None => format!("{} index", self.image),
        };
        match (&self.expected, &self.actual) {
            (Some(e), Some(a)) => write!(f, "{what}: expected {e}, built {a}"),
            (None, Some(a)) => write!(f, "{what}: built {a}, but no digest is committed"),
            (Some(e), None) => write!(
                f,
                "{what}: {e} is committed, but the image no longer has it"
            ),
            (None, None) => write!(f, "{what}: missing"),
        }
    }
}

/// Differences between committed and built digests of one image.
pub fn compare(
    image: &str,
    expected: Option<&ImageDigests>,
    actual: &ImageDigests,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let exp_index = expected.map(|e| e.index.clone());
    if exp_index.as_deref() != Some(actual.index.as_str()) {
        out.push(Mismatch {
            image: image.into(),
            arch: None,
            expected: exp_index,
            actual: Some(actual.index.clone()),
        });
    }
    let empty = BTreeMap::new();
    let exp = expected.map_or(&empty, |e| &e.manifests);
    let mut archs: Vec<&String> = exp.keys().chain(actual.manifests.keys()).collect();
    archs.sort();
    archs.dedup();
    for arch in archs {
        let (e, a) = (exp.get(arch), actual.manifests.get(arch));
        if e != a {
            out.push(Mismatch {
                image: image.into(),
                arch: Some(arch.clone()),
                expected: e.cloned(),
                actual: a.cloned(),
            });
        }
    }
    out
}

/// Committed entries for images that are no longer defined.
pub fn stale_entries(project: &Path, targets: &[Target]) -> Result<Vec<String>, DigestsError> {
    let mut defs: Vec<&str> = targets.iter().map(|t| t.definition.as_str()).collect();
    defs.dedup();
    let mut out = Vec::new();
    for def in defs {
        if let Some(file) = read(project, def)? {
            for image in file.images.keys() {
                if !targets.iter().any(|t| &t.image == image) {
                    out.push(format!(
                        "images/{def}/{FILE_NAME} lists {image}, which images/{def}/image.toml does not define"
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Why and how an image's digests moved.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The revision whose digests file held the old digests.
    pub since: Option<String>,
    /// Input changes: lock entries, creation time, definition, seed.
    pub inputs: Vec<String>,
    /// `kiln diff` of the old image (built at `since`) and the new one.
    pub differences: Vec<Difference>,
    /// Why the old image could not be compared, if it could not.
    pub old_image: Option<String>,
}

use crate::tool::git;

/// The last commit that changed `images/<definition>/digests.json`.
pub fn digests_revision(project: &Path, definition: &str) -> Option<String> {
    let rel = format!("images/{definition}/{FILE_NAME}");
    git(project, &["log", "-1", "--format=%H", "--", &rel])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn file_at(project: &Path, rev: &str, rel: &str) -> Option<String> {
    git(project, &["show", &format!("{rev}:{rel}")])
}

/// `name version` of every locked package of `image`, per arch, from a lock
/// of any format (an old revision's may be format 1, with one table).
fn locked_packages(lock: &Value, image: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let entry = &lock["images"][image];
    let tables = match entry["release"].as_str() {
        Some(release) => &lock["packages"][release],
        None => &lock["packages"],
    };
    for (arch, plan) in entry["archs"].as_object().into_iter().flatten() {
        let pkgs = plan["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|n| {
                let v = tables[arch][n]["version"].as_str().unwrap_or("?");
                (n.to_string(), v.to_string())
            })
            .collect();
        out.insert(arch.clone(), pkgs);
    }
    out
}

/// What changed in the inputs of `image` between `rev` and the working tree.
pub fn input_changes(project: &Path, rev: &str, target: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let now_lock: Option<Value> = std::fs::read(project.join("kiln.lock"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let old_lock: Option<Value> =
        file_at(project, rev, "kiln.lock").and_then(|s| serde_json::from_str(&s).ok());
    if let (Some(old), Some(new)) = (&old_lock, &now_lock) {
        let (po, pn) = (
            locked_packages(old, &target.image),
            locked_packages(new, &target.image),
        );
        let mut archs: Vec<&String> = po.keys().chain(pn.keys()).collect();
        archs.sort();
        archs.dedup();
        let empty = BTreeMap::new();
        for arch in archs {
            let (a, b) = (
                po.get(arch).unwrap_or(&empty),
                pn.get(arch).unwrap_or(&empty),
            );
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for n in names {
                match (a.get(n), b.get(n)) {
                    (Some(x), Some(y)) if x != y => {
                        out.push(format!("kiln.lock: {n} ({arch}) {x} → {y}"))
                    }
                    (Some(x), None) => out.push(format!("kiln.lock: - {n} {x} ({arch})")),
                    (None, Some(y)) => out.push(format!("kiln.lock: + {n} {y} ({arch})")),
                    _ => {}
                }
            }
        }
        let created = |l: &Value| l["images"][&target.image]["created"].as_u64();
        if let (Some(x), Some(y)) = (created(old), created(new)) {
            if x != y {
                out.push(format!(
                    "kiln.lock: created {} → {}",
                    kiln_seed::oci::rfc3339(x),
                    kiln_seed::oci::rfc3339(y)
                ));
            }
        }
        let layers = |l: &Value| l["images"][&target.image]["archs"].clone();
        let strip = |mut v: Value| {
            for (_, plan) in v.as_object_mut().into_iter().flatten() {
                if let Some(o) = plan.as_object_mut() {
                    o.remove("packages");
                }
            }
            v
        };
        if strip(layers(old)) != strip(layers(new)) {
            out.push("kiln.lock: the layer plan changed".into());
        }
    }
    let def_rel = format!("images/{}/{}", target.definition, definition::FILE_NAME);
    let old_def = file_at(project, rev, &def_rel);
    let new_def = std::fs::read_to_string(project.join(&def_rel)).ok();
    if old_def != new_def {
        out.push(format!("{def_rel} changed"));
    }
    let seed = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["narHash"].as_str().map(String::from))
    };
    let old_seed = seed(file_at(project, rev, "nix/seed.json"));
    let new_seed = seed(std::fs::read_to_string(project.join("nix/seed.json")).ok());
    if old_seed != new_seed {
        out.push(format!(
            "nix/seed.json: the seed changed ({} → {})",
            old_seed
                .as_deref()
                .map_or("none", |s| &s[..s.len().min(12)]),
            new_seed
                .as_deref()
                .map_or("none", |s| &s[..s.len().min(12)])
        ));
    }
    for f in ["flake.nix", "nix/lib.nix"] {
        if file_at(project, rev, f) != std::fs::read_to_string(project.join(f)).ok() {
            out.push(format!("{f} changed"));
        }
    }
    out
}

/// Builds the images at `rev` (a git revision of `project`) for comparison.
pub fn build_at(
    project: &Path,
    rev: &str,
    attrs: &[String],
) -> Result<BTreeMap<String, BuiltImage>, String> {
    let abs = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf());
    let flake = format!("git+file://{}?rev={rev}", abs.display());
    let mut cmd = crate::nixcmd::nix();
    cmd.args(["build", "--no-link", "--json"]);
    for a in attrs {
        cmd.arg(format!("{flake}#{a}"));
    }
    let out = crate::tool::run(&mut cmd).map_err(|e| e.to_string())?;
    if !out.ok {
        let last = out
            .stderr
            .lines()
            .rev()
            .find(|l| l.contains("error"))
            .unwrap_or("nix build failed")
            .trim()
            .to_string();
        return Err(last);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut map = BTreeMap::new();
    for r in v.as_array().into_iter().flatten() {
        let p = PathBuf::from(r["outputs"]["out"].as_str().unwrap_or_default());
        let (image, digests) = of_output(&p).map_err(|e| e.to_string())?;
        map.insert(
            image.clone(),
            BuiltImage {
                image,
                out: p,
                digests,
            },
        );
    }
    Ok(map)
}

/// The differences between two built images, via `kiln diff`.
pub fn output_changes(old: &Path, new: &Path) -> Result<Vec<Difference>, String> {
    let a = diff::Image::open(&old.to_string_lossy()).map_err(|e| e.to_string())?;
    let b = diff::Image::open(&new.to_string_lossy()).map_err(|e| e.to_string())?;
    Ok(diff::diff(&a, &b).map_err(|e| e.to_string())?.differences)
}

/// Short lines for a list of differences: everything but file-level
/// differences verbatim, file-level ones counted per layer.
pub fn summarize(diffs: &[Difference], max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut files: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in diffs {
        if d.path.is_some() && d.kind != Kind::Package {
            *files
                .entry((d.scope.clone(), d.location.clone()))
                .or_default() += 1;
        } else {
            lines.push(d.text.clone());
        }
    }
    for ((scope, location), n) in files {
        let samples: Vec<&str> = diffs
            .iter()
            .filter(|d| d.scope == scope && d.location == location && d.path.is_some())
            .take(3)
            .filter_map(|d| d.path.as_deref())
            .collect();
        let more = if n > samples.len() { ", …" } else { "" };
        lines.push(format!(
            "{scope}: {location}: {n} file difference{} ({}{more})",
            if n == 1 { "" } else { "s" },
            samples.join(", ")
        ));
    }
    if lines.len() > max_lines {
        let n = lines.len() - max_lines;
        lines.truncate(max_lines);
        lines.push(format!("… and {n} more"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(index: &str, amd: &str, arm: &str) -> ImageDigests {
        let d = |c: &str| format!("sha256:{}", c.repeat(64));
        ImageDigests {
            index: d(index),
            manifests: BTreeMap::from([("amd64".into(), d(amd)), ("arm64".into(), d(arm))]),
        }
    }

    #[test]
    fn compare_names_each_image_and_arch() {
        let e = digests("a", "b", "c");
        assert!(compare("x", Some(&e), &e).is_empty());
        let got = compare("x", Some(&e), &digests("d", "b", "e"));
        let lines: Vec<String> = got.iter().map(|m| m.to_string()).collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("x index: expected sha256:aaaa"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("x arm64 manifest: expected sha256:cccc"),
            "{lines:?}"
        );
        let missing = compare("x", None, &e);
        assert_eq!(missing.len(), 3);
        assert!(missing[0].to_string().contains("no digest is committed"));
    }

    #[test]
    fn files_round_trip_deterministically_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images/x")).unwrap();
        let file = DigestsFile {
            images: BTreeMap::from([
                ("x-debug".into(), digests("1", "2", "3")),
                ("x".into(), digests("4", "5", "6")),
            ]),
        };
        write(dir.path(), "x", &file).unwrap();
        let text = std::fs::read_to_string(path(dir.path(), "x")).unwrap();
        assert!(text.find("\"x\"").unwrap() < text.find("\"x-debug\"").unwrap());
        assert!(text.ends_with("}\n"));
        assert_eq!(read(dir.path(), "x").unwrap(), Some(file));
        assert_eq!(read(dir.path(), "y").unwrap(), None);
        std::fs::write(
            path(dir.path(), "x"),
            text.replace("sha256:1111", "sha256:zz11"),
        )
        .unwrap();
        let e = read(dir.path(), "x").unwrap_err().to_string();
        assert!(
            e.contains("images/x/digests.json") && e.contains("x-debug"),
            "{e}"
        );
    }

    #[test]
    fn summaries_count_files_per_layer() {
        let d = |kind, path: Option<&str>| {
            let mut x = Difference::new(kind, "amd64", "layer 1 (a)");
            if let Some(p) = path {
                x = x.path(p.into());
            }
            x.change(Some("1".into()), Some("2".into()))
        };
        let diffs = vec![
            d(Kind::FileMode, Some("/a")),
            d(Kind::FileMode, Some("/b")),
            d(Kind::ConfigField, None),
        ];
        let lines = summarize(&diffs, 10);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1], "amd64: layer 1 (a): 2 file differences (/a, /b)");
    }
}
