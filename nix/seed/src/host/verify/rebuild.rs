//! `--rebuild`: from a verified provenance, check out the recorded source
//! revision into a temporary directory, build the recorded flake attribute
//! with Nix in the sandbox, and require the signed digests.

use super::provenance::ExternalParameters;
use super::report::Report;
use super::walk::Image;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+w")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("running {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where to clone from: the checkout given with --source (which holds the
/// revision, e.g. a fork or mirror), else the recorded URI.
fn clone_url(ext: &ExternalParameters, source: Option<&Path>) -> String {
    match source {
        Some(dir) => dir.display().to_string(),
        None => ext
            .source
            .uri
            .strip_prefix("git+")
            .unwrap_or(&ext.source.uri)
            .to_string(),
    }
}

/// Nix must build in the sandbox for the rebuild to mean anything.
fn sandbox_on() -> Result<(), String> {
    let text = run(Command::new("nix").args(["show-config", "--json"]))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("nix show-config --json: {e}"))?;
    let sandbox = v["sandbox"]["value"].clone();
    let fallback = v["sandbox-fallback"]["value"].as_bool().unwrap_or(true);
    if (sandbox == serde_json::json!(true) || sandbox == "true") && !fallback {
        Ok(())
    } else {
        Err(format!(
            "the Nix sandbox is not enforced here (sandbox = {sandbox}, sandbox-fallback = {fallback}); a rebuild would not be hermetic"
        ))
    }
}

/// Rebuilds and compares; every outcome is a report line.
pub fn rebuild(
    report: &mut Report,
    ext: &ExternalParameters,
    image: &Image,
    source: Option<&Path>,
) {
    let Some(rev) = &ext.source.revision else {
        report.fail(
            "rebuild",
            "the provenance records no source revision to rebuild from",
        );
        return;
    };
    if ext.source.dirty {
        report.info(
            "rebuild",
            format!("the build ran on a work tree with uncommitted changes; rebuilding {rev} may differ"),
        );
    }
    if let Err(e) = sandbox_on() {
        report.fail("rebuild", e);
        return;
    }
    let tmp = TempDir(std::env::temp_dir().join(format!(
        "kiln-verify-rebuild-{}-{}",
        std::process::id(),
        image.root_digest.hex().get(..12).unwrap_or("")
    )));
    let _ = std::fs::remove_dir_all(&tmp.0);
    let url = clone_url(ext, source);
    let checkout = run(Command::new("git")
        .args(["clone", "--quiet", "--no-checkout", "--", &url])
        .arg(&tmp.0))
    .and_then(|_| {
        run(Command::new("git").arg("-C").arg(&tmp.0).args([
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            rev,
        ]))
    });
    if let Err(e) = checkout {
        report.fail("rebuild", format!("checking out {rev} of {url}: {e}"));
        return;
    }
    let attr = format!("{}#{}", tmp.0.display(), ext.flake_attribute);
    let built = run(Command::new("nix").args([
        "build",
        "--no-link",
        "--json",
        "--print-build-logs",
        &attr,
    ]))
    .and_then(|out| {
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("nix build --json: {e}"))?;
        v[0]["outputs"]["out"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| "nix build --json printed no output path".to_string())
    });
    let out = match built {
        Ok(o) => o,
        Err(e) => {
            report.fail(
                "rebuild",
                format!("building {} at {rev}: {e}", ext.flake_attribute),
            );
            return;
        }
    };
    // Nix reuses an output it already has; --rebuild runs the final step
    // again and fails if it does not produce the same bytes.
    if let Err(e) = run(Command::new("nix").args(["build", "--no-link", "--rebuild", &attr])) {
        report.fail(
            "rebuild",
            format!(
                "building {} at {rev} again gave different bytes: {e}",
                ext.flake_attribute
            ),
        );
        return;
    }
    let summary: serde_json::Value = match std::fs::read(out.join("image.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            report.fail("rebuild", format!("{}/image.json: {e}", out.display()));
            return;
        }
    };
    let mut differ = Vec::new();
    let mut same = 0;
    if image.is_index {
        let got = summary["index"]["digest"].as_str().unwrap_or("?");
        if got == image.root_digest.to_string() {
            same += 1;
        } else {
            differ.push(format!(
                "image index: signed {}, rebuilt {got}",
                image.root_digest
            ));
        }
        for p in &image.platforms {
            let got = summary["manifests"][&p.arch]["digest"]
                .as_str()
                .unwrap_or("?");
            if got == p.digest.to_string() {
                same += 1;
            } else {
                differ.push(format!(
                    "{} manifest: signed {}, rebuilt {got}",
                    p.arch, p.digest
                ));
            }
        }
    } else {
        let got = summary["manifest"]["digest"].as_str().unwrap_or("?");
        if got == image.root_digest.to_string() {
            same += 1;
        } else {
            differ.push(format!(
                "manifest: signed {}, rebuilt {got}",
                image.root_digest
            ));
        }
    }
    if differ.is_empty() {
        report.pass(
            "rebuild",
            format!("rebuilt {} from {rev} in the Nix sandbox: all {same} digests equal the signed ones", ext.flake_attribute),
        );
    } else {
        report.fail(
            "rebuild",
            format!(
                "rebuilt {} from {rev}, digests differ: {}",
                ext.flake_attribute,
                differ.join("; ")
            ),
        );
    }
}
