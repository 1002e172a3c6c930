//! `kiln repro`: rebuild an image under conditions that must not matter
//! and require the same bytes.
//!
//! 1. The baseline: `nix build` of the image (an impure evaluation, so that
//!    the perturbation attributes of nix/lib.nix can be set; with none set
//!    the derivations are exactly those of a pure `nix build`).
//! 2. `rebuild`: `nix build --rebuild` of every derivation in the image's
//!    closure that the seed builds (layers, per-platform images, index; not
//!    the .deb fixed-output derivations nor the seed itself), and again with
//!    another `NIX_BUILD_CORES` (`cores`).
//! 3. Perturbed builds: derivation attributes (lib.nix `KILN_PERTURB`) that
//!    change the builder's TZ, locale, umask, SOURCE_DATE_EPOCH and the
//!    order it reads inputs and creates files in; and a build from a copy
//!    of the project at another path, from another working directory. Each
//!    gives new derivations that are all built from scratch; every output
//!    is compared with its baseline counterpart.
//!
//! Outputs are compared as whole store paths (NAR hashes: the OCI layout,
//! the SBOMs, image.json — everything), and a difference is explained by
//! `kiln diff` (layouts) or file by file.

use crate::diff;
use kiln_seed::spec::LayerCompression;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Nix(#[from] crate::nixcmd::NixError),
    #[error("unexpected output of `{command}`: {message}")]
    Output { command: String, message: String },
    #[error("{}: no image.json: {drv} is not a kiln image derivation", out.display())]
    NotAnImage { drv: String, out: PathBuf },
    #[error("unknown perturbation {0:?} (known: {1})")]
    UnknownPerturbation(String, String),
    #[error("copying the project to {}", to.display())]
    Copy {
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a perturbation is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum How {
    /// `nix build --rebuild` of the baseline derivations (optionally with
    /// another `cores` setting, i.e. `NIX_BUILD_CORES`).
    Rebuild { cores: Option<u32> },
    /// New derivations with these attributes (and the same variables in the
    /// environment of `nix build` itself).
    Attrs {
        attrs: Vec<(&'static str, String)>,
        host_env: bool,
    },
    /// A copy of the project at another path, built from another directory.
    Clone,
}

/// A condition that must not change the image.
#[derive(Debug, Clone)]
pub struct Perturbation {
    pub name: &'static str,
    pub description: String,
    how: How,
}

/// Every perturbation, in the order they run. `cores` is the current
/// `NIX_BUILD_CORES`, which the `cores` perturbation changes.
pub fn perturbations(cores: u32) -> Vec<Perturbation> {
    let other_cores = if cores == 1 { 7 } else { 1 };
    let attrs =
        |name, description: &str, attrs: Vec<(&'static str, &str)>, host_env| Perturbation {
            name,
            description: description.to_string(),
            how: How::Attrs {
                attrs: attrs.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
                host_env,
            },
        };
    vec![
        Perturbation {
            name: "rebuild",
            description: "the same derivations built again (nix build --rebuild)".into(),
            how: How::Rebuild { cores: None },
        },
        Perturbation {
            name: "cores",
            description: format!(
                "built again with NIX_BUILD_CORES={other_cores} instead of {cores}"
            ),
            how: How::Rebuild {
                cores: Some(other_cores),
            },
        },
        attrs(
            "tz",
            "TZ=Pacific/Chatham (UTC+12:45) for the builder and nix",
            vec![("TZ", "Pacific/Chatham")],
            true,
        ),
        attrs(
            "locale",
            "LANG=LC_ALL=tr_TR.UTF-8 (dotless i) for the builder and nix",
            vec![("LANG", "tr_TR.UTF-8"), ("LC_ALL", "tr_TR.UTF-8")],
            true,
        ),
        attrs(
            "umask",
            "the builder runs with umask 077",
            vec![("kilnUmask", "077")],
            false,
        ),
        attrs(
            "source-date-epoch",
            "SOURCE_DATE_EPOCH=1 set for the builder and nix (the baseline has none)",
            vec![("SOURCE_DATE_EPOCH", "1")],
            true,
        ),
        attrs(
            "file-order",
            "the builder reads its inputs and creates its output files in reverse order",
            vec![("kilnReverseOrder", "1")],
            false,
        ),
        Perturbation {
            name: "clone-path",
            description:
                "a copy of the project at another path, built from another working directory".into(),
            how: How::Clone,
        },
    ]
}

/// What to reproduce.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Flake attributes (`scratch-plus`, `python-debug`, `base-arm64`).
    pub images: Vec<String>,
    /// Perturbation names to run (empty: all).
    pub only: Vec<String>,
    /// Keep differing outputs (`*.check`, perturbed) and the project copy.
    pub keep: bool,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// A kiln step derivation (see [`crate::nixcmd::StepDrv`]).
pub type Drv = crate::nixcmd::StepDrv;

/// A baseline image.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineImage {
    pub image: String,
    pub digest: String,
    pub out: String,
    pub drv: String,
}

/// One derivation whose output differs from the baseline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DerivationDifference {
    pub perturbation: String,
    pub derivation: String,
    pub step: String,
    pub baseline: String,
    pub other: String,
    /// Whether every kiln input of it was identical (the difference starts here).
    pub origin: bool,
    /// Files of the output that differ (`~ changed`, `+ added`, `- removed`).
    pub files: Vec<String>,
    /// What differs inside them (kiln diff of layouts, layer entries, JSON fields).
    pub explanation: Vec<String>,
}

/// The result of one perturbation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerturbationResult {
    pub name: String,
    pub description: String,
    pub identical: bool,
    /// Derivations rebuilt and compared with their baseline.
    pub compared: usize,
    /// Image digests in this build (image → index or manifest digest).
    pub images: BTreeMap<String, String>,
    /// For the clone: whether evaluating there gave the very same derivations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_derivations: Option<bool>,
    pub differences: Vec<DerivationDifference>,
    pub seconds: f64,
}

/// The result of [`run`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub images: Vec<BaselineImage>,
    /// kiln derivations in the closure, by step.
    pub derivations: BTreeMap<String, usize>,
    pub perturbations: Vec<PerturbationResult>,
    /// Derivation builds compared in total.
    pub rebuilds: usize,
    pub identical: bool,
    pub first_difference: Option<DerivationDifference>,
    pub seconds: f64,
}

impl Report {
    pub fn derivation_count(&self) -> usize {
        self.derivations.values().sum()
    }
}

use crate::tool::{run as run_cmd, Ran, ToolError};

/// The run, or its failure with the end of its log (Nix's are long).
fn checked(r: Ran) -> Result<Ran, ReproError> {
    if r.ok {
        Ok(r)
    } else {
        Err(ToolError::Failed {
            command: r.command,
            status: r.status,
            stderr: tail(&r.stderr, 40),
        }
        .into())
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `nix` command with the environment kiln controls: the caller's
/// `KILN_PERTURB` (`base`) merged with `attrs`, nothing unsandboxed.
fn nix(base: &BTreeMap<String, String>, attrs: &[(&str, String)]) -> Command {
    let mut cmd = crate::nixcmd::nix();
    cmd.env_remove("KILN_ALLOW_UNSANDBOXED");
    let mut all = base.clone();
    for (k, v) in attrs {
        all.insert(k.to_string(), v.clone());
    }
    if all.is_empty() {
        cmd.env_remove("KILN_PERTURB");
    } else {
        cmd.env(
            "KILN_PERTURB",
            serde_json::to_string(&all).expect("a map serializes"),
        );
    }
    for v in ["TZ", "LANG", "LC_ALL", "SOURCE_DATE_EPOCH"] {
        cmd.env_remove(v);
    }
    cmd
}

/// The effective `cores` setting (what the builder sees as NIX_BUILD_CORES).
pub fn current_cores() -> u32 {
    let configured = crate::nixcmd::nix()
        .args(["show-config", "--json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["cores"]["value"].as_u64())
        .unwrap_or(0) as u32;
    if configured == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    } else {
        configured
    }
}

/// The image an output is (index: `<name>[-<variant>]`; single platform:
/// `…-<arch>`) and its digest, from its image.json.
fn identify(drv: &str, out: &Path) -> Result<(String, String), ReproError> {
    let bad = || ReproError::NotAnImage {
        drv: drv.into(),
        out: out.to_path_buf(),
    };
    let built = crate::provenance::BuiltImage::read(out).map_err(|_| bad())?;
    let mut image = built.full_name();
    if built.index.is_none() {
        let arch = built.manifests.keys().next().ok_or_else(bad)?;
        image = format!("{image}-{arch}");
    }
    let digest = built.root().ok_or_else(bad)?.to_string();
    Ok((image, digest))
}

/// What one `nix build` produced.
struct Build {
    images: BTreeMap<String, BaselineImage>,
    /// Derivations it built (the others were already in the store).
    built: std::collections::BTreeSet<String>,
}

/// `nix build --json` of `attrs` of `flake`; results by image name.
fn build_attrs(mut cmd: Command, flake: &str, attrs: &[String]) -> Result<Build, ReproError> {
    cmd.args(["build", "--impure", "--no-link", "--json"]);
    for a in attrs {
        cmd.arg(format!("{flake}#{a}"));
    }
    let r = checked(run_cmd(&mut cmd)?)?;
    let v: Value = serde_json::from_slice(&r.stdout).map_err(|e| ReproError::Output {
        command: r.command.clone(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    // Nix lists results in its own order, not the attributes': each is
    // named by its derivation and identified by its image.json.
    for b in v.as_array().into_iter().flatten() {
        let path = b["outputs"]["out"].as_str().unwrap_or_default().to_string();
        let drv = b["drvPath"].as_str().unwrap_or_default().to_string();
        let (image, digest) = identify(&drv, Path::new(&path))?;
        out.insert(
            image.clone(),
            BaselineImage {
                image,
                digest,
                out: path,
                drv,
            },
        );
    }
    let built = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("building '"))
        .filter_map(|l| l.split('\'').next())
        .map(String::from)
        .collect();
    Ok(Build { images: out, built })
}

/// Pairs each baseline derivation with its counterpart in a perturbed
/// closure, walking both graphs from the roots (inputs matched by name).
fn pair(
    base: &BTreeMap<String, Drv>,
    b: &str,
    other: &BTreeMap<String, Drv>,
    o: &str,
    pairs: &mut BTreeMap<String, String>,
) {
    if pairs.contains_key(b) {
        return;
    }
    let (Some(bd), Some(od)) = (base.get(b), other.get(o)) else {
        return;
    };
    pairs.insert(b.to_string(), o.to_string());
    for bi in &bd.inputs {
        let name = &base[bi].name;
        if let Some(oi) = od
            .inputs
            .iter()
            .find(|oi| other.get(*oi).is_some_and(|x| &x.name == name))
        {
            pair(base, bi, other, oi, pairs);
        }
    }
}

/// NAR hashes of store paths.
fn nar_hashes(paths: &[String]) -> Result<BTreeMap<String, String>, ReproError> {
    let mut out = BTreeMap::new();
    for chunk in paths.chunks(200) {
        let mut cmd = crate::nixcmd::nix();
        cmd.args(["path-info", "--json"]).args(chunk);
        let r = checked(run_cmd(&mut cmd)?)?;
        let v: Value = serde_json::from_slice(&r.stdout).map_err(|e| ReproError::Output {
            command: r.command.clone(),
            message: e.to_string(),
        })?;
        for p in v.as_array().into_iter().flatten() {
            if let (Some(path), Some(h)) = (p["path"].as_str(), p["narHash"].as_str()) {
                out.insert(path.to_string(), h.to_string());
            }
        }
    }
    Ok(out)
}

fn step_rank(step: &str) -> u8 {
    match step {
        "layer" => 0,
        "image" => 1,
        "index" => 2,
        _ => 3,
    }
}

/// Runs the reproduction.
pub fn run(project: &Path, seed: &str, opts: &Options) -> Result<Report, ReproError> {
    let started = Instant::now();
    let say = |s: String| {
        if opts.progress {
            eprintln!("kiln repro: {s}");
        }
    };
    let cores = current_cores();
    let all = perturbations(cores);
    let known: Vec<&str> = all.iter().map(|p| p.name).collect();
    for o in &opts.only {
        if !known.contains(&o.as_str()) {
            return Err(ReproError::UnknownPerturbation(o.clone(), known.join(", ")));
        }
    }
    let selected: Vec<Perturbation> = all
        .into_iter()
        .filter(|p| opts.only.is_empty() || opts.only.iter().any(|o| o == p.name))
        .collect();
    // The caller's own KILN_PERTURB (the tests' non-determinism hook) is
    // part of the baseline and of every perturbed build.
    let base: BTreeMap<String, String> = std::env::var("KILN_PERTURB")
        .ok()
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let abs = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf());
    let flake = abs.display().to_string();

    say(format!("building {}", opts.images.join(" ")));
    let mut cmd = nix(&base, &[]);
    cmd.current_dir(&abs);
    let baseline = build_attrs(cmd, &flake, &opts.images)?.images;
    let roots: Vec<String> = baseline.values().map(|b| b.drv.clone()).collect();
    let drvs = crate::nixcmd::kiln_steps(&roots, seed)?;
    let mut by_step: BTreeMap<String, usize> = BTreeMap::new();
    for d in drvs.values() {
        *by_step.entry(d.step.clone()).or_default() += 1;
    }
    let base_outs: Vec<String> = drvs.values().map(|d| d.out.clone()).collect();
    let base_hashes = nar_hashes(&base_outs)?;
    say(format!(
        "{} kiln derivations: {}",
        drvs.len(),
        by_step
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut results = Vec::new();
    for (k, p) in selected.iter().enumerate() {
        say(format!(
            "[{}/{}] {}: {}",
            k + 1,
            selected.len(),
            p.name,
            p.description
        ));
        let t = Instant::now();
        let mut result = match &p.how {
            How::Rebuild { cores } => rebuild(p, &drvs, *cores, opts.keep)?,
            How::Attrs { attrs, host_env } => {
                let mut cmd = nix(&base, attrs);
                if *host_env {
                    for (k, v) in attrs {
                        cmd.env(k, v);
                    }
                }
                cmd.current_dir(&abs);
                let built = build_attrs(cmd, &flake, &opts.images)?;
                compare_builds(p, &baseline, &drvs, &base_hashes, &built, seed, opts.keep)?
            }
            How::Clone => clone_build(p, &abs, &base, &baseline, &drvs, &base_hashes, seed, opts)?,
        };
        result.seconds = t.elapsed().as_secs_f64();
        say(format!(
            "{}: {} ({} derivations compared, {:.1}s)",
            p.name,
            if result.identical {
                "identical"
            } else {
                "DIFFERENT"
            },
            result.compared,
            result.seconds
        ));
        results.push(result);
    }

    let first_difference = results
        .iter()
        .flat_map(|r| r.differences.iter())
        .min_by_key(|d| (!d.origin, step_rank(&d.step)))
        .cloned();
    let rebuilds = results.iter().map(|r| r.compared).sum();
    Ok(Report {
        images: baseline.into_values().collect(),
        derivations: by_step,
        identical: results.iter().all(|r| r.identical),
        perturbations: results,
        rebuilds,
        first_difference,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `nix build --rebuild` of `drvs`, layers first. One derivation per `nix`
/// process: a process checking several holds all their output locks while
/// it waits, and two such processes with overlapping sets (another
/// `--rebuild` running at the same time) wait for each other forever.
/// Returns the differences, each explained; `*.check` outputs are removed
/// unless `keep`.
fn check_each(
    perturbation: &str,
    drvs: &[&Drv],
    cores: Option<u32>,
    keep: bool,
) -> Result<Vec<DerivationDifference>, ReproError> {
    let mut ordered: Vec<&Drv> = drvs.to_vec();
    ordered.sort_by_key(|d| (step_rank(&d.step), d.name.clone()));
    let mut differences = Vec::new();
    for d in ordered {
        let mut cmd = crate::nixcmd::nix();
        cmd.env_remove("KILN_PERTURB");
        cmd.args(["build", "--rebuild", "--keep-failed", "--no-link"]);
        if let Some(c) = cores {
            cmd.args(["--option", "cores", &c.to_string()]);
        }
        cmd.arg(&d.path);
        let r = run_cmd(&mut cmd)?;
        let mut check = None;
        for line in r.stderr.lines() {
            if let Some(dir) = line
                .strip_prefix("note: keeping build directory '")
                .and_then(|s| s.strip_suffix('\''))
            {
                let _ = std::fs::remove_dir_all(dir);
            }
            if line.contains("may not be deterministic") {
                let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
                if let [_drv, _out, c] = quoted[..] {
                    check = Some(c.to_string());
                }
            }
        }
        match check {
            None if !r.ok => {
                checked(r)?;
            }
            None => {}
            Some(check) => {
                let (files, explanation) = explain(Path::new(&d.out), Path::new(&check));
                differences.push(DerivationDifference {
                    perturbation: perturbation.into(),
                    derivation: d.name.clone(),
                    step: d.step.clone(),
                    baseline: d.out.clone(),
                    other: check.clone(),
                    // Its inputs are the very outputs it was built from
                    // before: the difference starts here.
                    origin: true,
                    files,
                    explanation,
                });
                if !keep {
                    let _ = std::fs::remove_dir_all(&check);
                }
            }
        }
    }
    Ok(differences)
}

/// The `rebuild` and `cores` perturbations.
fn rebuild(
    p: &Perturbation,
    drvs: &BTreeMap<String, Drv>,
    cores: Option<u32>,
    keep: bool,
) -> Result<PerturbationResult, ReproError> {
    let all: Vec<&Drv> = drvs.values().collect();
    let differences = check_each(p.name, &all, cores, keep)?;
    Ok(PerturbationResult {
        name: p.name.into(),
        description: p.description.clone(),
        identical: differences.is_empty(),
        compared: all.len(),
        images: BTreeMap::new(),
        same_derivations: None,
        differences,
        seconds: 0.0,
    })
}

/// Compares a perturbed build with the baseline, derivation by derivation.
fn compare_builds(
    p: &Perturbation,
    baseline: &BTreeMap<String, BaselineImage>,
    drvs: &BTreeMap<String, Drv>,
    base_hashes: &BTreeMap<String, String>,
    build: &Build,
    seed: &str,
    keep: bool,
) -> Result<PerturbationResult, ReproError> {
    let built = &build.images;
    let roots: Vec<String> = built.values().map(|b| b.drv.clone()).collect();
    let other = crate::nixcmd::kiln_steps(&roots, seed)?;
    let mut pairs = BTreeMap::new();
    for (image, b) in baseline {
        if let Some(o) = built.get(image) {
            pair(drvs, &b.drv, &other, &o.drv, &mut pairs);
        }
    }
    let outs: Vec<String> = pairs.values().map(|o| other[o].out.clone()).collect();
    let hashes = nar_hashes(&outs)?;
    let same = |b: &str| {
        pairs
            .get(b)
            .is_some_and(|o| base_hashes.get(&drvs[b].out) == hashes.get(&other[o].out))
    };
    // Outputs already in the store (from an earlier run) are built again
    // now, so that every comparison is of a build made in this run.
    let present: Vec<&Drv> = pairs
        .values()
        .filter(|o| !build.built.contains(*o))
        .map(|o| &other[o])
        .collect();
    let mut differences = check_each(p.name, &present, None, keep)?;
    for (b, o) in &pairs {
        if same(b) {
            continue;
        }
        let (bd, od) = (&drvs[b], &other[o]);
        let (files, explanation) = explain(Path::new(&bd.out), Path::new(&od.out));
        differences.push(DerivationDifference {
            perturbation: p.name.into(),
            derivation: bd.name.clone(),
            step: bd.step.clone(),
            baseline: bd.out.clone(),
            other: od.out.clone(),
            origin: bd.inputs.iter().all(|i| same(i)),
            files,
            explanation,
        });
    }
    differences.sort_by_key(|d| (!d.origin, step_rank(&d.step), d.derivation.clone()));
    let unpaired = drvs.len() - pairs.len();
    if unpaired > 0 {
        let missing: Vec<&str> = drvs
            .keys()
            .filter(|k| !pairs.contains_key(*k))
            .map(|k| drvs[k].name.as_str())
            .collect();
        differences.push(DerivationDifference {
            perturbation: p.name.into(),
            derivation: missing.join(", "),
            step: "graph".into(),
            baseline: String::new(),
            other: String::new(),
            origin: true,
            files: vec![],
            explanation: vec![format!(
                "{unpaired} derivation(s) of the baseline have no counterpart in this build: its derivation graph differs"
            )],
        });
    }
    Ok(PerturbationResult {
        name: p.name.into(),
        description: p.description.clone(),
        identical: differences.is_empty(),
        compared: pairs.len(),
        images: built
            .iter()
            .map(|(k, v)| (k.clone(), v.digest.clone()))
            .collect(),
        same_derivations: None,
        differences,
        seconds: 0.0,
    })
}

/// The flake's source as Nix sees it (tracked files, with uncommitted changes).
fn flake_source(project: &Path) -> Result<PathBuf, ReproError> {
    let mut cmd = crate::nixcmd::nix();
    cmd.args(["flake", "metadata", "--json"]).arg(project);
    let r = checked(run_cmd(&mut cmd)?)?;
    let v: Value = serde_json::from_slice(&r.stdout).map_err(|e| ReproError::Output {
        command: r.command.clone(),
        message: e.to_string(),
    })?;
    v["path"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| ReproError::Output {
            command: r.command,
            message: "no path".into(),
        })
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::symlink(std::fs::read_link(from)?, to);
    }
    if meta.is_file() {
        std::fs::copy(from, to)?;
        let mut perm = std::fs::metadata(to)?.permissions();
        use std::os::unix::fs::PermissionsExt;
        perm.set_mode(perm.mode() | 0o200);
        return std::fs::set_permissions(to, perm);
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        copy_tree(&e.path(), &to.join(e.file_name()))?;
    }
    Ok(())
}

/// Builds from a copy of the project at another path, from another working
/// directory: first the derivations must be the same, then (labelled, so
/// that everything is built again there) the outputs must be.
#[allow(clippy::too_many_arguments)]
fn clone_build(
    p: &Perturbation,
    project: &Path,
    base: &BTreeMap<String, String>,
    baseline: &BTreeMap<String, BaselineImage>,
    drvs: &BTreeMap<String, Drv>,
    base_hashes: &BTreeMap<String, String>,
    seed: &str,
    opts: &Options,
) -> Result<PerturbationResult, ReproError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let top = std::env::temp_dir().join(format!("kiln-repro-{}-{nanos}", std::process::id()));
    let name = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    let clone = top.join("some/other/place").join(format!("{name}-clone"));
    let cwd = top.join("elsewhere");
    let result = (|| {
        let source = flake_source(project)?;
        copy_tree(&source, &clone).map_err(|source| ReproError::Copy {
            to: clone.clone(),
            source,
        })?;
        std::fs::create_dir_all(&cwd).map_err(|source| ReproError::Copy {
            to: cwd.clone(),
            source,
        })?;
        let flake = format!("path:{}", clone.display());
        // Evaluation alone: the same derivations, wherever the project is.
        let mut same = true;
        for (image, b) in baseline {
            let mut cmd = nix(base, &[]);
            cmd.current_dir(&cwd)
                .args(["eval", "--impure", "--raw"])
                .arg(format!("{flake}#{image}.drvPath"));
            let r = checked(run_cmd(&mut cmd)?)?;
            if String::from_utf8_lossy(&r.stdout).trim() != b.drv {
                same = false;
            }
        }
        let mut cmd = nix(base, &[("kilnPerturbation", "clone-path".to_string())]);
        cmd.current_dir(&cwd);
        let attrs: Vec<String> = baseline.keys().cloned().collect();
        let built = build_attrs(cmd, &flake, &attrs)?;
        let mut r = compare_builds(p, baseline, drvs, base_hashes, &built, seed, opts.keep)?;
        r.same_derivations = Some(same);
        if !same {
            r.identical = false;
            r.differences.insert(
                0,
                DerivationDifference {
                    perturbation: p.name.into(),
                    derivation: attrs.join(", "),
                    step: "evaluation".into(),
                    baseline: String::new(),
                    other: String::new(),
                    origin: true,
                    files: vec![],
                    explanation: vec![format!(
                        "evaluating the copy at {} gives other derivations than the project: the evaluation depends on where the project is",
                        clone.display()
                    )],
                },
            );
        }
        Ok(r)
    })();
    if !opts.keep {
        let _ = Command::new("chmod").args(["-R", "u+w"]).arg(&top).status();
        let _ = std::fs::remove_dir_all(&top);
    }
    result
}

/// `relative path → what it is` for every entry under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap_or_default();
                out.insert(rel, format!("symlink {}", t.display()));
            } else if meta.is_dir() {
                out.insert(rel, "directory".into());
                walk(root, &p, out);
            } else {
                let h = std::fs::File::open(&p)
                    .and_then(|f| kiln_seed::digest::Digest::of_reader(std::io::BufReader::new(f)))
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default();
                out.insert(rel, h);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// The first place two JSON values differ, as `pointer: a → b`.
fn json_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => {
                        if let Some(d) = json_difference(v, w, &p) {
                            return Some(d);
                        }
                    }
                    (v, w) => {
                        return Some(format!(
                            "{p}: {} → {}",
                            v.map_or("(none)".into(), diff::config::show),
                            w.map_or("(none)".into(), diff::config::show)
                        ))
                    }
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| json_difference(v, w, &format!("{at}/{i}"))),
        _ => {
            let short = |v: &Value| {
                let s = diff::config::show(v);
                if s.chars().count() > 120 {
                    format!("{}…", s.chars().take(120).collect::<String>())
                } else {
                    s
                }
            };
            Some(format!(
                "{}: {} → {}",
                if at.is_empty() { "/" } else { at },
                short(a),
                short(b)
            ))
        }
    }
}

/// Which files of two outputs of the same derivation differ, and how.
pub fn explain(a: &Path, b: &Path) -> (Vec<String>, Vec<String>) {
    let (ta, tb) = (tree(a), tree(b));
    let mut files = Vec::new();
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in &keys {
        match (ta.get(*k), tb.get(*k)) {
            (Some(x), Some(y)) if x != y => files.push(format!("~ {k}")),
            (Some(_), None) => files.push(format!("- {k}")),
            (None, Some(_)) => files.push(format!("+ {k}")),
            _ => {}
        }
    }
    let mut lines = Vec::new();
    if a.join("oci-layout").exists() && b.join("oci-layout").exists() {
        let opened = diff::Image::open(&a.to_string_lossy())
            .and_then(|x| diff::Image::open(&b.to_string_lossy()).map(|y| (x, y)));
        match opened.and_then(|(x, y)| diff::diff(&x, &y)) {
            Ok(r) => lines.extend(r.differences.iter().map(|d| d.text.clone())),
            Err(e) => lines.push(format!("kiln diff: {e}")),
        }
    }
    for compression in [LayerCompression::Gzip, LayerCompression::Zstd] {
        let layer = compression.blob_file();
        if !files.iter().any(|f| f == &format!("~ {layer}")) {
            continue;
        }
        let read = |p: &Path| {
            std::fs::File::open(p.join(layer))
                .map_err(diff::layer::LayerError::Read)
                .and_then(|f| diff::layer::read(compression.media_type(), f))
        };
        match (read(a), read(b)) {
            (Ok(x), Ok(y)) => {
                let found = diff::layer::diff_entries(&x, &y, "layer", layer);
                if found.is_empty() {
                    lines.push(format!(
                        "{layer}: same entries, different bytes (compression or tar encoding)"
                    ));
                }
                lines.extend(found.into_iter().map(|d| d.text));
            }
            (Err(e), _) | (_, Err(e)) => lines.push(format!("{layer}: {e}")),
        }
    }
    for f in &files {
        let Some(rel) = f.strip_prefix("~ ") else {
            continue;
        };
        if rel.ends_with(".json") && !rel.starts_with("blobs/") {
            let read = |p: &Path| {
                std::fs::read(p.join(rel))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            };
            if let (Some(x), Some(y)) = (read(a), read(b)) {
                if let Some(d) = json_difference(&x, &y, "") {
                    lines.push(format!("{rel}: {d}"));
                }
            }
        }
    }
    (files, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_perturbation_is_distinct_and_cores_changes() {
        let ps = perturbations(2);
        let names: Vec<&str> = ps.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            vec![
                "rebuild",
                "cores",
                "tz",
                "locale",
                "umask",
                "source-date-epoch",
                "file-order",
                "clone-path"
            ]
        );
        assert_eq!(ps[1].how, How::Rebuild { cores: Some(1) });
        assert_eq!(perturbations(1)[1].how, How::Rebuild { cores: Some(7) });
    }

    #[test]
    fn json_differences_name_the_pointer() {
        let a = json!({"a": {"b": [1, 2]}, "c": "x"});
        let b = json!({"a": {"b": [1, 3]}, "c": "x"});
        assert_eq!(json_difference(&a, &b, "").unwrap(), "/a/b/1: 2 → 3");
        let b = json!({"a": {"b": [1, 2]}});
        assert_eq!(json_difference(&a, &b, "").unwrap(), "/c: \"x\" → (none)");
        assert_eq!(json_difference(&a, &a, ""), None);
    }

    #[test]
    fn explain_names_files_and_json_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (d, v) in [(&a, 1), (&b, 2)] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("image.json"), format!("{{\"created\": {v}}}")).unwrap();
            std::fs::write(d.join("same"), "s").unwrap();
        }
        std::fs::write(b.join("extra"), "e").unwrap();
        let (files, lines) = explain(&a, &b);
        assert_eq!(files, vec!["+ extra", "~ image.json"]);
        assert_eq!(lines, vec!["image.json: /created: 1 → 2"]);
    }

    #[test]
    fn closures_pair_by_name_through_the_graph() {
        let d = |path: &str, name: &str, step: &str, inputs: &[&str]| {
            (
                path.to_string(),
                Drv {
                    path: path.into(),
                    name: name.into(),
                    step: step.into(),
                    out: format!("{path}-out"),
                    inputs: inputs.iter().map(|s| s.to_string()).collect(),
                },
            )
        };
        let base: BTreeMap<String, Drv> = [
            d("b-idx", "kiln-x", "index", &["b-img"]),
            d("b-img", "kiln-image-x-amd64", "image", &["b-l1", "b-l2"]),
            d("b-l1", "kiln-layer-amd64-a", "layer", &[]),
            d("b-l2", "kiln-layer-amd64-b", "layer", &[]),
        ]
        .into();
        let other: BTreeMap<String, Drv> = [
            d("o-idx", "kiln-x", "index", &["o-img"]),
            d("o-img", "kiln-image-x-amd64", "image", &["o-l2", "o-l1"]),
            d("o-l1", "kiln-layer-amd64-a", "layer", &[]),
            d("o-l2", "kiln-layer-amd64-b", "layer", &[]),
        ]
        .into();
        let mut pairs = BTreeMap::new();
        pair(&base, "b-idx", &other, "o-idx", &mut pairs);
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs["b-l1"], "o-l1");
        assert_eq!(pairs["b-l2"], "o-l2");
    }
}
