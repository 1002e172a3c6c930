//! The seed binary: `builder` of every kiln derivation, and the verifier.
//!
//! Inside the sandbox it is called as `kiln-seed <step>` with its JSON input
//! in the file named by `$kilnInputPath` and its output directory in `$out`
//! (docs/internals.md). Nothing else is read from the environment.

use std::path::PathBuf;
use std::process::ExitCode;

mod perturb;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Called through the `bin/verify` link of `nix run .#verify`.
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if invoked_as == "verify" {
        return kiln_seed::verify::main(&args[1..]);
    }
    let step = args.get(1).map(String::as_str).unwrap_or("");
    let result = match step {
        "verify" => return kiln_seed::verify::main(&args[2..]),
        "layer" | "image" | "index" | "link" | "policy" | "probe" | "root" | "chroot" => {
            build_step(step)
        }
        "--version" | "version" => {
            println!("kiln-seed {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => Err(
            "usage: kiln-seed <layer|image|index|link|policy|probe> (inside a kiln derivation) or kiln-seed verify ...\n\
             kiln-seed is kiln's sandbox-side builder; run `kiln --help` instead"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("kiln-seed {step}: error: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn build_step(step: &str) -> Result<(), Box<dyn std::error::Error>> {
    check_sandbox()?;
    perturb::apply_umask()?;
    let input_path = std::env::var_os("kilnInputPath").ok_or("$kilnInputPath is not set (the derivation must pass its input with passAsFile = [\"kilnInput\"])")?;
    let out = PathBuf::from(std::env::var_os("out").ok_or("$out is not set")?);
    let input = std::fs::read(&input_path)
        .map_err(|e| format!("reading {}: {e}", PathBuf::from(&input_path).display()))?;
    // `kiln repro`'s perturbations (none in a normal build).
    let input = perturb::input(step, input)?;
    let final_out = out;
    // The chroot step's files are written by the program it runs, at the
    // output path its argv names (and only there: the rest of /nix is
    // read-only to it), so the file-order perturbation, which reorders
    // what the seed itself writes, does not apply to it.
    let out = if step == "chroot" {
        final_out.clone()
    } else {
        perturb::output_dir(&final_out)
    };
    match step {
        "layer" => kiln_seed::layer::run(&input, &out)?,
        "image" => kiln_seed::image::run(&input, &out)?,
        "index" => kiln_seed::index::run(&input, &out)?,
        "link" => kiln_seed::link::run(&input, &out)?,
        "policy" => kiln_seed::policy::run(&input, &out)?,
        "probe" => kiln_seed::probe::run(&input, &out)?,
        "root" => kiln_seed::steps::root::run(&input, &out)?,
        "chroot" => kiln_seed::steps::chroot::run(&input, &out)?,
        _ => unreachable!(),
    }
    perturb::finish(&out, &final_out)?;
    Ok(())
}

/// Refuses to build outside the Nix sandbox: there the host's directories
/// are invisible, so seeing `/usr` or `/home` means the build is not
/// isolated (`sandbox = false`, or host paths bind-mounted in). A build the
/// user explicitly allowed to run unsandboxed (`kiln build
/// --allow-unsandboxed` sets `kilnAllowUnsandboxed`) goes on, loudly.
fn check_sandbox() -> Result<(), String> {
    let visible: Vec<&str> = ["/usr", "/home", "/root", "/var"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    if visible.is_empty() {
        return Ok(());
    }
    if std::env::var("kilnAllowUnsandboxed").as_deref() == Ok("1") {
        eprintln!(
            "kiln-seed: WARNING: NOT RUNNING IN THE NIX SANDBOX (host paths visible: {}); this build is not hermetic and must not be described as isolated",
            visible.join(", ")
        );
        return Ok(());
    }
    Err(format!(
        "refusing to build outside the Nix sandbox: host paths are visible ({}). Set `sandbox = true` and `sandbox-fallback = false` in /etc/nix/nix.conf (scripts/setup does), or run `kiln build --allow-unsandboxed` to build without isolation on purpose",
        visible.join(", ")
    ))
}
