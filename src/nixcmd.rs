//! Running Nix: its settings (is the sandbox really on?), `nix build`, and
//! the facts provenance records about it.

use crate::tool::{Runner, ToolError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("could not read `nix show-config --json`: {0}")]
    Config(String),
    /// Builds would not be isolated: the reasons, and what fixes them.
    #[error("Nix builds would not be isolated: {0}; kiln refuses to build without isolation. {1}, or pass --allow-unsandboxed to build without isolation on purpose")]
    NotIsolated(String, String),
    #[error("{0} is too old: kiln's projects are flakes, which need Nix 2.4 or later (Debian 12's nix-bin is 2.8); install a newer Nix (scripts/setup installs Debian's)")]
    TooOld(String),
    #[error("Nix's experimental features `nix-command` and `flakes`, which kiln needs, are not both enabled ({0}); add `experimental-features = nix-command flakes` to /etc/nix/nix.conf (scripts/setup does)")]
    FeaturesOff(String),
    #[error("unexpected output of `{command}`: {message}")]
    Output { command: String, message: String },
}

/// The Nix settings that decide whether a build is isolated and hermetic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NixSettings {
    pub version: String,
    pub system: String,
    pub sandbox: String,
    pub sandbox_fallback: bool,
    pub sandbox_paths: Vec<String>,
    pub substituters: Vec<String>,
    pub build_users_group: String,
    /// Settings kiln gave its own `nix` commands over the configured ones
    /// (`sandbox-paths =` where Nix's default exposes a shell), each with
    /// what it replaced. Empty when kiln changed nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kiln_overrides: Vec<String>,
}

/// The host path a sandbox path entry exposes as `/bin/sh` (`/bin/sh=<path>`
/// or `/bin/sh` itself), when that is all it exposes: the one shell
/// current Nix releases put into every sandbox by default (Debian's
/// bash-static, upstream's busybox). One program file shows builds no
/// host directory and no secret; anything else (a directory, another
/// path) does.
fn exposed_shell(entry: &str) -> Option<&str> {
    let entry = entry.trim_end_matches('?');
    let host = match entry.split_once('=') {
        Some(("/bin/sh", host)) => host,
        None if entry == "/bin/sh" => entry,
        _ => return None,
    };
    std::fs::metadata(host)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| host)
}

impl NixSettings {
    /// Whether builds run in the sandbox with no host path mounted into it
    /// but, at most, the static shell current Nix exposes as `/bin/sh`
    /// (recorded by [`NixSettings::isolation`], never hidden).
    pub fn check_isolated(&self) -> Result<(), NixError> {
        let mut problems = Vec::new();
        let mut fixes = Vec::new();
        if self.sandbox != "true" {
            problems.push(format!("the sandbox is off (sandbox = {})", self.sandbox));
        }
        if self.sandbox_fallback {
            problems.push(
                "sandbox-fallback = true (where the sandbox cannot start, Nix silently builds without it)"
                    .to_string(),
            );
        }
        if !problems.is_empty() {
            fixes.push("Run scripts/setup (it sets `sandbox = true` and `sandbox-fallback = false` in /etc/nix/nix.conf)".to_string());
        }
        let host: Vec<&str> = self
            .sandbox_paths
            .iter()
            .map(String::as_str)
            .filter(|e| exposed_shell(e).is_none())
            .collect();
        if !host.is_empty() {
            problems.push(format!(
                "sandbox-paths = {} exposes host paths to every build",
                host.join(" ")
            ));
            fixes.push(format!(
                "Remove {} from sandbox-paths in /etc/nix/nix.conf",
                host.join(" ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NixError::NotIsolated(problems.join("; "), fixes.join("; ")))
        }
    }

    /// What the provenance says of the isolation these settings give.
    pub fn isolation(&self) -> String {
        let mut s = "Nix sandbox: sandbox = true, sandbox-fallback = false, ".to_string();
        if self.sandbox_paths.is_empty() {
            s.push_str("no sandbox-paths");
        } else {
            s.push_str(&format!(
                "sandbox-paths = {} (a static shell as /bin/sh, which kiln could not remove: its nix commands are not trusted to change sandbox-paths)",
                self.sandbox_paths.join(" ")
            ));
        }
        for o in &self.kiln_overrides {
            s.push_str(&format!("; kiln set {o}"));
        }
        s.push_str("; every step ran the pinned seed without network or host files");
        s
    }
}

/// Settings kiln adds to the configured ones for every `nix` command it
/// runs (through `NIX_CONFIG`), once [`settings`] decided them.
static OVERRIDES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `program` (`nix`, `nix-store`) with kiln's overrides of the configured
/// settings, if any: every Nix command kiln runs is made here.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    if let Some(extra) = OVERRIDES.get() {
        let mut config = std::env::var("NIX_CONFIG").unwrap_or_default();
        if !config.is_empty() {
            config.push('\n');
        }
        config.push_str(extra);
        cmd.env("NIX_CONFIG", config);
    }
    cmd
}

/// `nix`, as [`command`] makes it.
pub fn nix() -> Command {
    command("nix")
}

fn output(cmd: &mut Command) -> Result<String, NixError> {
    Ok(crate::tool::checked(cmd)?)
}

/// Reads the effective settings with `nix show-config --json`.
///
/// Current Nix releases expose a static shell as `/bin/sh` in every
/// sandbox by default. kiln's builds never use it, so where kiln may
/// change `sandbox-paths` (it owns the store, or the daemon trusts it) it
/// empties it for all its own `nix` commands and records that it did;
/// where it may not, the shell stays and the provenance says so.
pub fn settings() -> Result<NixSettings, NixError> {
    let configured = settings_with(&crate::tool::Host)?;
    let _ = VERSION.set(configured.version.clone());
    if configured.sandbox_paths.is_empty()
        || !configured
            .sandbox_paths
            .iter()
            .all(|e| exposed_shell(e).is_some())
        || !may_set_restricted_settings(&crate::tool::Host)?
    {
        return Ok(configured);
    }
    let _ = OVERRIDES.set("sandbox-paths =".to_string());
    let mut s = settings_with(&crate::tool::Host)?;
    if s.sandbox_paths.is_empty() {
        s.kiln_overrides.push(format!(
            "sandbox-paths = (empty; configured: {})",
            configured.sandbox_paths.join(" ")
        ));
    }
    Ok(s)
}

/// Whether the store honours restricted settings (such as
/// `sandbox-paths`) from kiln's commands: a store kiln opens itself
/// (`Store URL: local`), or a daemon that trusts it (`Trusted: 1`, Nix
/// 2.15 and later). An untrusted daemon client's settings are ignored.
fn may_set_restricted_settings(runner: &dyn Runner) -> Result<bool, NixError> {
    // Nix 2.8 prints the answer on stderr, later versions on stdout.
    let ran = runner.run(nix().args(["store", "ping"]))?.checked()?;
    let text = format!("{}\n{}", ran.stderr, ran.text());
    Ok(text.lines().any(|l| {
        let l = l.trim();
        l == "Trusted: 1"
            || l.strip_prefix("Store URL:")
                .is_some_and(|u| u.trim().starts_with("local"))
    }))
}

/// [`settings`] through `runner`.
pub fn settings_with(runner: &dyn Runner) -> Result<NixSettings, NixError> {
    let version = runner
        .run(nix().arg("--version"))?
        .checked()?
        .text()
        .trim()
        .to_string();
    if version_number(&version) < (2, 4) {
        return Err(NixError::TooOld(version));
    }
    let config = runner.run(nix().args(["show-config", "--json"]))?;
    // Nix's own advice (a command-line flag) would fix one command, not
    // kiln's many: only what it found is kept.
    if let Some(line) = config
        .stderr
        .lines()
        .find(|l| !config.ok && l.contains("experimental Nix feature"))
    {
        let found = line.split(';').next().unwrap_or(line);
        return Err(NixError::FeaturesOff(
            found.trim().trim_start_matches("error: ").to_string(),
        ));
    }
    let text = config.checked()?.text();
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| NixError::Config(e.to_string()))?;
    // Nix before 2.13 or so lists the features as numbers, later ones by
    // name: only names can be checked here (a flake command without
    // `flakes` then says so itself).
    if let Some(features) = v["experimental-features"]["value"].as_array() {
        let names: Vec<&str> = features.iter().filter_map(|f| f.as_str()).collect();
        if names.len() == features.len()
            && !(names.contains(&"flakes") && names.contains(&"nix-command"))
        {
            return Err(NixError::FeaturesOff(format!(
                "experimental-features = {}",
                names.join(" ")
            )));
        }
    }
    let value = |k: &str| {
        v.get(k)
            .and_then(|s| s.get("value"))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let as_string = |x: serde_json::Value| match x {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let as_list = |x: serde_json::Value| -> Vec<String> {
        match x {
            serde_json::Value::Array(a) => a.into_iter().map(as_string).collect(),
            serde_json::Value::String(s) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        }
    };
    Ok(NixSettings {
        version,
        system: as_string(value("system")),
        sandbox: as_string(value("sandbox")),
        sandbox_fallback: value("sandbox-fallback").as_bool().unwrap_or(true),
        sandbox_paths: as_list(value("sandbox-paths")),
        substituters: as_list(value("substituters")),
        build_users_group: as_string(value("build-users-group")),
        kiln_overrides: Vec::new(),
    })
}

/// What `nix build` produced for one attribute.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Built {
    pub attr: String,
    pub drv_path: String,
    pub outputs: BTreeMap<String, String>,
}

impl Built {
    pub fn out(&self) -> &str {
        self.outputs
            .get("out")
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Options for [`build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--out-link` for the first attribute (otherwise `--no-link`).
    pub out_link: Option<PathBuf>,
    /// `--rebuild`: build again and compare with the existing output.
    pub rebuild: bool,
    /// Build without the sandbox check (impure evaluation that tells the seed).
    pub allow_unsandboxed: bool,
    /// Extra arguments passed to `nix build`.
    pub extra_args: Vec<String>,
    /// Build with this host-built seed (its NAR hash, hex; an impure
    /// evaluation) instead of the one compiled in the sandbox.
    pub host_seed: Option<String>,
}

/// The names of the flake's `packages.<system>`.
pub fn package_names(flake: &Path) -> Result<Vec<String>, NixError> {
    let mut cmd = nix();
    cmd.args(["eval", "--json"])
        .arg(format!("{}#packages.{SYSTEM}", flake.display()))
        .args(["--apply", "builtins.attrNames"]);
    let command = crate::tool::display(&cmd);
    let text = output(&mut cmd)?;
    serde_json::from_str(&text).map_err(|e| NixError::Output {
        command,
        message: e.to_string(),
    })
}

/// The output path `attr` (of `packages.<system>`) builds to now, evaluated
/// without building: what a record of an earlier build is compared with.
/// `opts` carries the impurities the build had (`--allow-unsandboxed`
/// derivations are other derivations).
pub fn out_path(flake: &Path, attr: &str, opts: &BuildOptions) -> Result<String, NixError> {
    let mut cmd = nix();
    cmd.args(["eval", "--raw"]).arg(format!(
        "{}#packages.{SYSTEM}.\"{attr}\".outPath",
        flake.display()
    ));
    impurity(&mut cmd, opts);
    Ok(output(&mut cmd)?.trim().to_string())
}

/// The derivation paths of `attrs` (of `packages.<system>`), in order: how
/// `nix build --json` results are matched with the attributes asked for,
/// since Nix lists its results in its own order (by derivation path).
pub fn drv_paths(
    flake: &Path,
    attrs: &[String],
    opts: &BuildOptions,
) -> Result<Vec<String>, NixError> {
    let names = serde_json::to_string(attrs).expect("strings serialize");
    let mut cmd = nix();
    cmd.args(["eval", "--json"])
        .arg(format!("{}#packages.{SYSTEM}", flake.display()))
        .arg("--apply")
        .arg(format!(
            "ps: map (a: (builtins.getAttr a ps).drvPath) (builtins.fromJSON ''{names}'')"
        ));
    impurity(&mut cmd, opts);
    let command = crate::tool::display(&cmd);
    let text = output(&mut cmd)?;
    let paths: Vec<String> = serde_json::from_str(&text).map_err(|e| NixError::Output {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if paths.len() != attrs.len() {
        return Err(NixError::Output {
            command,
            message: format!("{} derivations for {} attributes", paths.len(), attrs.len()),
        });
    }
    Ok(paths)
}

/// How `nix build` is told to build a derivation's outputs: Nix before
/// 2.14 builds the outputs of a `.drv` path given as is; from 2.14 on a
/// `.drv` path means the derivation file itself, and `drv^*` its outputs
/// (a syntax 2.8 does not parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrvInstallable {
    Plain,
    AllOutputs,
}

/// (major, minor) of `nix --version` output such as `nix (Nix) 2.26.3`.
fn version_number(version: &str) -> (u32, u32) {
    let number = version.rsplit(' ').next().unwrap_or_default();
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl DrvInstallable {
    /// For `nix --version` output such as `nix (Nix) 2.26.3`.
    fn for_version(version: &str) -> DrvInstallable {
        if version_number(version) >= (2, 14) {
            DrvInstallable::AllOutputs
        } else {
            DrvInstallable::Plain
        }
    }

    fn installable(self, drv: &str) -> String {
        match self {
            DrvInstallable::Plain => drv.to_string(),
            DrvInstallable::AllOutputs => format!("{drv}^*"),
        }
    }
}

/// `nix --version` of this machine's Nix, once known ([`settings`] reads
/// it first, before any build).
static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `nix --version`, asked at most once per run.
fn version() -> Result<String, NixError> {
    match VERSION.get() {
        Some(v) => Ok(v.clone()),
        None => {
            let v = output(nix().arg("--version"))?.trim().to_string();
            Ok(VERSION.get_or_init(|| v).clone())
        }
    }
}

/// Fails unless this machine's Nix knows flakes (2.4 or later).
pub fn require_flakes() -> Result<(), NixError> {
    let v = version()?;
    if version_number(&v) < (2, 4) {
        return Err(NixError::TooOld(v));
    }
    Ok(())
}

/// The system kiln builds on (all kiln derivations are x86_64-linux).
pub const SYSTEM: &str = "x86_64-linux";

fn impurity(cmd: &mut Command, opts: &BuildOptions) {
    if opts.allow_unsandboxed || opts.host_seed.is_some() {
        cmd.arg("--impure");
    }
    if opts.allow_unsandboxed {
        cmd.env("KILN_ALLOW_UNSANDBOXED", "1");
    } else {
        cmd.env_remove("KILN_ALLOW_UNSANDBOXED");
    }
    match &opts.host_seed {
        Some(nar) => cmd.env("KILN_HOST_SEED", nar),
        None => cmd.env_remove("KILN_HOST_SEED"),
    };
}

/// Points `link` at the built store path `out`, with a GC root, as
/// `nix build --out-link` does (the path is already valid: nothing builds).
pub fn link_output(out: &str, link: &Path) -> Result<(), NixError> {
    output(nix().args(["build", "--out-link"]).arg(link).arg(out))?;
    Ok(())
}

/// Runs `nix build <flake>#<attr>...` and returns what it built, one entry
/// per attribute, in the order given.
pub fn build(flake: &Path, attrs: &[String], opts: &BuildOptions) -> Result<Vec<Built>, NixError> {
    let flake = flake.canonicalize().unwrap_or_else(|_| flake.to_path_buf());
    let drvs = drv_paths(&flake, attrs, opts)?;
    let mut cmd = nix();
    cmd.arg("build").arg("--json").arg("--print-build-logs");
    match &opts.out_link {
        Some(link) => {
            cmd.arg("--out-link").arg(link);
        }
        None => {
            cmd.arg("--no-link");
        }
    }
    if opts.rebuild {
        cmd.arg("--rebuild");
    }
    impurity(&mut cmd, opts);
    cmd.args(&opts.extra_args);
    // The derivations, not `flake#attr`s: given attributes, Nix (2.8 at
    // least) locks and evaluates the flake once per attribute, which made a
    // build of hundreds of attributes quadratic before anything started.
    // The one evaluation above already named every derivation.
    let drv_syntax = DrvInstallable::for_version(&version()?);
    for d in &drvs {
        cmd.arg(drv_syntax.installable(d));
    }
    let command = crate::tool::display(&cmd);
    // Build logs go straight to the terminal; stdout carries the JSON.
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| ToolError::Spawn {
            command: command.clone(),
            error,
        })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command,
            status: out.status.to_string(),
            stderr: "(see the build log above)".into(),
        }
        .into());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
            command: command.clone(),
            message: e.to_string(),
        })?;
    let arr = v.as_array().ok_or_else(|| NixError::Output {
        command: command.clone(),
        message: "not a JSON array".into(),
    })?;
    let mut by_drv: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in arr {
        let drv = r
            .get("drvPath")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string();
        let outputs = r
            .get("outputs")
            .and_then(|o| o.as_object())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        by_drv.insert(drv, outputs);
    }
    attrs
        .iter()
        .zip(drvs)
        .map(|(attr, drv_path)| {
            let outputs = by_drv
                .get(&drv_path)
                .cloned()
                .ok_or_else(|| NixError::Output {
                    command: command.clone(),
                    message: format!("no result for {attr} ({drv_path})"),
                })?;
            Ok(Built {
                attr: attr.clone(),
                drv_path,
                outputs,
            })
        })
        .collect()
}

/// A kiln step derivation: one whose builder is the pinned seed and that
/// is not fixed-output (the .debs and the seed itself are). Layers,
/// per-platform images and image indexes are steps; provenance lists them
/// and `kiln repro` rebuilds them.
#[derive(Clone, Debug, Serialize)]
pub struct StepDrv {
    pub path: String,
    /// The derivation's `name`.
    pub name: String,
    /// The seed step it runs: layer, image, index, ...
    pub step: String,
    pub out: String,
    /// The step derivations among its inputs.
    #[serde(skip)]
    pub inputs: Vec<String>,
}

/// Every kiln step derivation in the closure of `roots` (.drv paths),
/// where `seed` is the pinned seed's store path.
pub fn kiln_steps(roots: &[String], seed: &str) -> Result<BTreeMap<String, StepDrv>, NixError> {
    kiln_steps_with(&crate::tool::Host, roots, seed)
}

/// [`kiln_steps`] through `runner`.
pub fn kiln_steps_with(
    runner: &dyn Runner,
    roots: &[String],
    seed: &str,
) -> Result<BTreeMap<String, StepDrv>, NixError> {
    let r = runner
        .run(nix().args(["show-derivation", "-r"]).args(roots))?
        .checked()?;
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).map_err(|e| NixError::Output {
        command: r.command.clone(),
        message: e.to_string(),
    })?;
    let all = v.as_object().cloned().unwrap_or_default();
    let is_step = |d: &serde_json::Value| {
        d["builder"].as_str() == Some(seed) && d["outputs"]["out"].get("hash").is_none()
    };
    let mut out = BTreeMap::new();
    for (path, d) in &all {
        if !is_step(d) {
            continue;
        }
        let inputs = d["inputDrvs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(p, _)| p.clone())
            .filter(|p| all.get(p).is_some_and(is_step))
            .collect();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        out.insert(
            path.clone(),
            StepDrv {
                path: path.clone(),
                name: text(&d["env"]["name"]),
                step: text(&d["args"][0]),
                out: text(&d["outputs"]["out"]["path"]),
                inputs,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> NixSettings {
        NixSettings {
            version: "nix (Nix) 2.8.0".into(),
            system: "x86_64-linux".into(),
            sandbox: "true".into(),
            sandbox_fallback: false,
            sandbox_paths: vec![],
            substituters: vec![],
            build_users_group: "nixbld".into(),
            kiln_overrides: vec![],
        }
    }

    #[test]
    fn strict_settings_are_isolated() {
        strict().check_isolated().unwrap();
    }

    #[test]
    fn sandbox_off_or_fallback_or_host_paths_are_refused() {
        let mut s = strict();
        s.sandbox = "false".into();
        assert!(s
            .check_isolated()
            .unwrap_err()
            .to_string()
            .contains("sandbox = false"));
        let mut s = strict();
        s.sandbox_fallback = true;
        assert!(s
            .check_isolated()
            .unwrap_err()
            .to_string()
            .contains("sandbox-fallback"));
        let mut s = strict();
        s.sandbox_paths = vec!["/etc".into(), "/bin/sh".into()];
        let e = s.check_isolated().unwrap_err().to_string();
        assert!(
            e.contains("sandbox-paths = /etc exposes host paths")
                && e.contains("Remove /etc from sandbox-paths")
                && !e.contains("off")
                && !e.contains("scripts/setup"),
            "{e}"
        );
    }

    #[test]
    fn a_shell_as_bin_sh_is_isolated_and_recorded() {
        let shell = std::env::current_exe().unwrap();
        let mut s = strict();
        s.sandbox_paths = vec![format!("/bin/sh={}", shell.display())];
        s.check_isolated().unwrap();
        assert!(
            s.isolation()
                .contains(&format!("sandbox-paths = /bin/sh={}", shell.display())),
            "{}",
            s.isolation()
        );
        // A host path that is no file, or a shell elsewhere than /bin/sh,
        // is a host path.
        for entry in [
            "/bin/sh=/nonexistent/sh",
            "/bin/sh=/etc",
            "/usr/bin/sh=/bin/sh",
        ] {
            s.sandbox_paths = vec![entry.into()];
            assert!(s.check_isolated().is_err(), "{entry}");
        }
        // What kiln removed is said.
        let mut s = strict();
        s.kiln_overrides = vec!["sandbox-paths = (empty; configured: /bin/sh=/x)".into()];
        assert!(s.isolation().contains(
            "no sandbox-paths; kiln set sandbox-paths = (empty; configured: /bin/sh=/x)"
        ));
        assert!(strict()
            .isolation()
            .contains("no sandbox-paths; every step"));
    }

    #[test]
    fn a_nix_without_flakes_is_named_with_the_fix() {
        let too_old = crate::tool::Fake::default().answer("--version", "nix (Nix) 2.3.16\n");
        let e = settings_with(&too_old).unwrap_err().to_string();
        assert!(
            e.contains("nix (Nix) 2.3.16 is too old") && e.contains("2.4"),
            "{e}"
        );
        let off = crate::tool::Fake::default()
            .answer("--version", "nix (Nix) 2.26.3\n")
            .answer(
                "show-config",
                r#"{"experimental-features":{"value":["nix-command"]}}"#,
            );
        let e = settings_with(&off).unwrap_err().to_string();
        assert!(
            e.contains("experimental-features = nix-command)")
                && e.contains(
                    "add `experimental-features = nix-command flakes` to /etc/nix/nix.conf"
                ),
            "{e}"
        );
        let disabled = crate::tool::Fake::default()
            .answer("--version", "nix (Nix) 2.8.0\n")
            .fail(
                "show-config",
                "error: experimental Nix feature 'nix-command' is disabled",
            );
        let e = settings_with(&disabled).unwrap_err().to_string();
        assert!(
            e.contains("'nix-command' is disabled") && e.contains("nix.conf"),
            "{e}"
        );
    }

    #[test]
    fn derivations_are_named_as_the_nix_version_reads_them() {
        let drv = "/nix/store/x-kiln-scratch-plus.drv";
        for (version, want) in [
            ("nix (Nix) 2.8.0", drv.to_string()),
            ("nix (Nix) 2.13.6", drv.to_string()),
            ("nix (Nix) 2.14.0", format!("{drv}^*")),
            ("nix (Nix) 2.26.3", format!("{drv}^*")),
        ] {
            assert_eq!(
                DrvInstallable::for_version(version).installable(drv),
                want,
                "{version}"
            );
        }
    }

    #[test]
    fn restricted_settings_are_set_only_where_the_store_honours_them() {
        for (ping, may) in [
            ("Store URL: local\nVersion: 2.8.0\n", true),
            ("Store URL: daemon\nVersion: 2.26.3\nTrusted: 1\n", true),
            ("Store URL: daemon\nVersion: 2.26.3\nTrusted: 0\n", false),
            ("Store URL: daemon\nVersion: 2.8.0\n", false),
        ] {
            let fake = crate::tool::Fake::default().answer("ping", ping);
            assert_eq!(may_set_restricted_settings(&fake).unwrap(), may, "{ping}");
        }
    }

    #[test]
    fn settings_are_read_from_show_config() {
        let fake = crate::tool::Fake::default()
            .answer("--version", "nix (Nix) 2.26.3\n")
            .answer(
                "show-config",
                r#"{"sandbox":{"value":"true"},"sandbox-fallback":{"value":false},
                    "sandbox-paths":{"value":["/bin/sh=/usr/bin/bash-static"]},
                    "substituters":{"value":[]},"system":{"value":"x86_64-linux"},
                    "build-users-group":{"value":"nixbld"}}"#,
            );
        let s = settings_with(&fake).unwrap();
        assert_eq!(s.version, "nix (Nix) 2.26.3");
        assert_eq!(s.sandbox_paths, vec!["/bin/sh=/usr/bin/bash-static"]);
        // A Nix that is not there is named.
        let e = settings_with(&crate::tool::Fake::default()).unwrap_err();
        assert!(e.to_string().contains("nix --version"), "{e}");
    }

    #[test]
    fn steps_are_the_seeds_derivations_that_are_not_fixed_output() {
        let seed = "/nix/store/s-kiln-seed";
        let fake = crate::tool::Fake::default().answer(
            "show-derivation",
            r#"{
              "/nix/store/i-kiln-x.drv": {"builder": "/nix/store/s-kiln-seed", "args": ["index"],
                 "env": {"name": "kiln-x"}, "outputs": {"out": {"path": "/nix/store/o1"}},
                 "inputDrvs": {"/nix/store/l-kiln-layer.drv": ["out"], "/nix/store/d-tzdata.deb.drv": ["out"]}},
              "/nix/store/l-kiln-layer.drv": {"builder": "/nix/store/s-kiln-seed", "args": ["layer"],
                 "env": {"name": "kiln-layer"}, "outputs": {"out": {"path": "/nix/store/o2"}}, "inputDrvs": {}},
              "/nix/store/d-tzdata.deb.drv": {"builder": "builtin:fetchurl", "args": [],
                 "env": {"name": "tzdata.deb"}, "outputs": {"out": {"path": "/nix/store/o3", "hash": "ab"}}, "inputDrvs": {}},
              "/nix/store/s-kiln-seed.drv": {"builder": "builtin:fetchurl", "args": [],
                 "env": {"name": "kiln-seed"}, "outputs": {"out": {"path": "/nix/store/s-kiln-seed", "hash": "cd"}}, "inputDrvs": {}}
            }"#,
        );
        let steps = kiln_steps_with(&fake, &["/nix/store/i-kiln-x.drv".into()], seed).unwrap();
        assert_eq!(
            steps.keys().collect::<Vec<_>>(),
            ["/nix/store/i-kiln-x.drv", "/nix/store/l-kiln-layer.drv"]
        );
        let index = &steps["/nix/store/i-kiln-x.drv"];
        assert_eq!(
            (index.step.as_str(), index.out.as_str()),
            ("index", "/nix/store/o1")
        );
        assert_eq!(index.inputs, vec!["/nix/store/l-kiln-layer.drv"]);
    }

    #[test]
    fn reads_this_machines_settings() {
        if Command::new("nix").arg("--version").output().is_err() {
            return;
        }
        let s = settings().unwrap();
        assert!(s.version.contains("Nix"));
        assert!(!s.system.is_empty());
    }
}
