//! Runtime tests: run an image for real with podman + runc (docs/policy.md) and
//! let a probe report from inside what the container can do.
//!
//! The probe (`probe/`, Go, static, built here for amd64 and arm64) is added
//! as one extra layer to a *test copy* of the image: a new layout under
//! `.kiln/test/` with the image's layers, the probe layer, and a new config
//! and manifest. The catalogue image is never modified. arm64 images run
//! under `qemu-aarch64-static`, bind-mounted into the container so that the
//! probe still sees the container's namespaces, read-only root and dropped
//! capabilities.
//!
//! Podman reads only the project's configuration (`.kiln/podman/`, written
//! here): runc (crun fails on this machine's hybrid cgroups), cgroupfs,
//! file events, no network by default, vfs storage in the user's data
//! directory (`podman::state_dir`), shared by every checkout.

use crate::fsutil::write_atomic;
use crate::tool::{checked, display, run as output};
use kiln_seed::digest::Digest;
use kiln_seed::oci::{self, Layout, LayoutWriter, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE};
use kiln_seed::spec::{Arch, ImageSpec};
use kiln_seed::tarwrite::{self, Entry};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the probe lands in the test image.
pub const PROBE_PATH: &str = "/kiln-probe";
/// Where qemu-aarch64-static is mounted for arm64 images.
pub const QEMU_PATH: &str = "/kiln-qemu";
/// The annotation that marks a manifest as a test copy.
pub const TEST_ANNOTATION: &str = "dev.kiln.test";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error("image {image}: layout {}", layout.display())]
    Layout {
        image: String,
        layout: PathBuf,
        #[source]
        source: oci::Error,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("image {image} ({arch}): the probe's report is not valid JSON ({error}); it printed: {stdout}")]
    Report {
        image: String,
        arch: Arch,
        error: String,
        stdout: String,
    },
    #[error("{0} was not found in PATH; scripts/setup installs it")]
    Missing(String),
    #[error(transparent)]
    Replace(#[from] crate::fsutil::ReplaceError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |error| RuntimeError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

fn which(program: &str) -> Result<PathBuf, RuntimeError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| RuntimeError::Missing(program.to_string()))
}

mod judge;
mod layout;
mod podman;
mod probe;

pub use judge::*;
pub use layout::*;
pub use podman::*;
pub use probe::*;

/// The outcome for one platform of one image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchResult {
    pub image: String,
    pub arch: Arch,
    pub expect: Expect,
    pub checks: Vec<Check>,
    pub probe: ProbeReport,
    /// The exact command line of the probe run.
    pub command: String,
    /// Pull + runs + removal.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl ArchResult {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Options of [`test_image`].
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only these platforms (empty: every platform of the image).
    pub archs: Vec<Arch>,
    /// Keep the test copies (`.kiln/test/<image>/<arch>-<pid>`) and the
    /// images in podman's storage.
    pub keep: bool,
}

/// Tests every platform of `spec`'s image built at `layout`. `packages`
/// holds the locked package names per arch (for what to expect).
pub fn test_image(
    project: &Path,
    spec: &ImageSpec,
    layout: &Path,
    packages: &BTreeMap<Arch, Vec<String>>,
    opts: &TestOptions,
) -> Result<Vec<ArchResult>, RuntimeError> {
    // Podman wants absolute paths in its configuration and references.
    let project = &std::path::absolute(project).map_err(io("resolving", project))?;
    let podman = Podman::setup(project)?;
    let image = spec.full_name();
    let mut out = Vec::new();
    for &arch in &spec.archs {
        if !opts.archs.is_empty() && !opts.archs.contains(&arch) {
            continue;
        }
        let probe = build_probe(project, arch)?;
        let expect = Expect::of(spec, arch, packages.get(&arch).map_or(&[][..], |v| v))?;
        let start = Instant::now();
        // One copy per process: concurrent runs of the same image must not
        // replace each other's layout while podman reads it.
        let dest = project
            .join(".kiln/test")
            .join(&image)
            .join(format!("{arch}-{}", std::process::id()));
        let result = write_test_layout(&image, layout, arch, &probe, &dest).and_then(|tag| {
            let id = podman.pull(&dest, &tag, &image)?;
            let result = run_probe(&podman, &id, arch, &expect, &image).and_then(|probe| {
                let test = match &spec.test {
                    Some(t) => Some(run_test(&podman, &id, arch, t)?),
                    None => None,
                };
                Ok((probe, test))
            });
            if !opts.keep {
                podman.remove(&id);
            }
            result
        });
        if !opts.keep {
            let _ = std::fs::remove_dir_all(&dest);
            // The image's directory too, once no other run uses it.
            let _ = std::fs::remove_dir(dest.parent().expect("under .kiln/test"));
        }
        let ((probe, command, shell_id), test) = result?;
        let mut checks = judge(&probe, &expect, shell_id.as_deref());
        checks.extend(test);
        out.push(ArchResult {
            image: image.clone(),
            arch,
            expect,
            checks,
            probe,
            command,
            elapsed: start.elapsed(),
        });
    }
    Ok(out)
}

/// `podman run` arguments up to the image: the hardened flags, and for
/// arm64 qemu mounted in as the entrypoint.
fn run_args(arch: Arch, entrypoint: &str) -> Result<Vec<String>, RuntimeError> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(RUN_FLAGS.iter().map(|s| s.to_string()));
    match arch {
        Arch::Amd64 => args.push(format!("--entrypoint={entrypoint}")),
        Arch::Arm64 => {
            let qemu = which("qemu-aarch64-static")?;
            args.push("--volume".into());
            args.push(format!("{}:{QEMU_PATH}:ro", qemu.display()));
            args.push(format!("--entrypoint={QEMU_PATH}"));
        }
    }
    Ok(args)
}

type ProbeRun = (ProbeReport, String, Option<String>);

fn run_probe(
    podman: &Podman,
    id: &str,
    arch: Arch,
    expect: &Expect,
    image: &str,
) -> Result<ProbeRun, RuntimeError> {
    let mut cmd = podman.command();
    cmd.args(run_args(arch, PROBE_PATH)?).arg(id);
    if arch == Arch::Arm64 {
        cmd.arg(PROBE_PATH);
    }
    let command = display(&cmd);
    let stdout = checked(&mut cmd)?;
    let report: ProbeReport = serde_json::from_str(&stdout).map_err(|e| RuntimeError::Report {
        image: image.into(),
        arch,
        error: e.to_string(),
        stdout: stdout.clone(),
    })?;
    let shell_id = if expect.debug {
        let mut sh = podman.command();
        sh.args(run_args(arch, "/bin/sh")?).arg(id);
        if arch == Arch::Arm64 {
            sh.arg("/bin/sh");
        }
        // busybox runs `id` as an applet in-process, so this works under
        // qemu too (where a child could not exec arm64 code: no binfmt).
        sh.args(["-c", "id"]);
        let out = output(&mut sh)?;
        let text = out.text().trim().to_string();
        Some(if out.ok {
            text
        } else {
            format!("{text} (failed, {}: {})", out.status, out.stderr.trim())
        })
    } else {
        None
    };
    Ok((report, command, shell_id))
}

/// Runs the definition's `[test]` command in the image, as hardened as the
/// probe, and judges its exit status and output.
fn run_test(
    podman: &Podman,
    id: &str,
    arch: Arch,
    test: &kiln_seed::spec::ImageTest,
) -> Result<Check, RuntimeError> {
    let (program, args) = test.command.split_first().expect("validated: not empty");
    let mut cmd = podman.command();
    cmd.args(run_args(arch, program)?).arg(id);
    if arch == Arch::Arm64 {
        cmd.arg(program);
    }
    cmd.args(args);
    let out = output(&mut cmd)?;
    let stdout = out.text();
    let shown = test.command.join(" ");
    Ok(match (&test.expect_output, out.ok) {
        (_, false) => check(
            "test",
            false,
            format!("`{shown}` failed ({}): {}", out.status, out.stderr.trim()),
        ),
        (Some(want), true) if !stdout.contains(want.as_str()) => check(
            "test",
            false,
            format!("`{shown}` printed {:?}, without {want:?}", stdout.trim()),
        ),
        _ => check("test", true, format!("`{shown}`: {}", stdout.trim())),
    })
}

/// Summary line of one platform's result.
pub fn render(results: &[ArchResult]) -> String {
    let mut s = String::new();
    for r in results {
        s.push_str(&format!(
            "{} ({}) {} in {:.2} s\n",
            r.image,
            r.arch,
            if r.passed() { "PASS" } else { "FAIL" },
            r.elapsed.as_secs_f64()
        ));
        for c in &r.checks {
            s.push_str(&format!(
                "  {} {}: {}\n",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests;
