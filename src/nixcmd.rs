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
    #[error("the Nix sandbox is off ({0}); kiln refuses to build without isolation. Run scripts/setup (it sets `sandbox = true` and `sandbox-fallback = false` in /etc/nix/nix.conf), or pass --allow-unsandboxed to build without isolation on purpose")]
    SandboxOff(String),
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
}

impl NixSettings {
    /// Whether builds run in the sandbox, and no host path is mounted into it.
    pub fn check_isolated(&self) -> Result<(), NixError> {
        let mut problems = Vec::new();
        if self.sandbox != "true" {
            problems.push(format!("sandbox = {}", self.sandbox));
        }
        if self.sandbox_fallback {
            problems
                .push("sandbox-fallback = true (Nix would silently build unsandboxed)".to_string());
        }
        if !self.sandbox_paths.is_empty() {
            problems.push(format!(
                "sandbox-paths = {} (host paths visible to builds)",
                self.sandbox_paths.join(" ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NixError::SandboxOff(problems.join("; ")))
        }
    }
}

fn output(cmd: &mut Command) -> Result<String, NixError> {
    Ok(crate::tool::checked(cmd)?)
}

/// Reads the effective settings with `nix show-config --json`.
pub fn settings() -> Result<NixSettings, NixError> {
    settings_with(&crate::tool::Host)
}

/// [`settings`] through `runner`.
pub fn settings_with(runner: &dyn Runner) -> Result<NixSettings, NixError> {
    let version = runner
        .run(Command::new("nix").arg("--version"))?
        .checked()?
        .text()
        .trim()
        .to_string();
    let text = runner
        .run(Command::new("nix").args(["show-config", "--json"]))?
        .checked()?
        .text();
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| NixError::Config(e.to_string()))?;
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
    let mut cmd = Command::new("nix");
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
    let mut cmd = Command::new("nix");
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
fn drv_paths(flake: &Path, attrs: &[String], opts: &BuildOptions) -> Result<Vec<String>, NixError> {
    let names = serde_json::to_string(attrs).expect("strings serialize");
    let mut cmd = Command::new("nix");
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
    output(
        Command::new("nix")
            .args(["build", "--out-link"])
            .arg(link)
            .arg(out),
    )?;
    Ok(())
}

/// Runs `nix build <flake>#<attr>...` and returns what it built, one entry
/// per attribute, in the order given.
pub fn build(flake: &Path, attrs: &[String], opts: &BuildOptions) -> Result<Vec<Built>, NixError> {
    let flake = flake.canonicalize().unwrap_or_else(|_| flake.to_path_buf());
    let drvs = drv_paths(&flake, attrs, opts)?;
    let mut cmd = Command::new("nix");
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
    for a in attrs {
        cmd.arg(format!("{}#{a}", flake.display()));
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
        .run(
            Command::new("nix")
                .args(["show-derivation", "-r"])
                .args(roots),
        )?
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
        s.sandbox_paths = vec!["/bin/sh".into()];
        assert!(s
            .check_isolated()
            .unwrap_err()
            .to_string()
            .contains("sandbox-paths"));
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
        // Current Nix's default /bin/sh is a host path: not isolated.
        assert!(s
            .check_isolated()
            .unwrap_err()
            .to_string()
            .contains("bash-static"));
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
