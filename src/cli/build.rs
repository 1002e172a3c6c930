//! `kiln build`: the control plane's build. Checks the sandbox, runs the
//! hermetic Nix build and reports what it produced.

use anyhow::{bail, Context};
use kiln::nixcmd::{self, BuildOptions};
use kiln::seedbuild::Pin;
use std::path::{Path, PathBuf};

/// Build images hermetically in the Nix sandbox (`nix build .#<image>`).
///
/// Refuses to run when the Nix sandbox is off (or would silently fall back),
/// unless --allow-unsandboxed is given; then the build log says so loudly.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to build: flake attributes such as `scratch-plus`,
    /// `scratch-plus-debug` or `scratch-plus-arm64`.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Symlink to the first image's output (like `nix build --out-link`).
    #[arg(long, short)]
    pub out_link: Option<PathBuf>,
    /// Build again and fail if the output differs (`nix build --rebuild`).
    #[arg(long)]
    pub rebuild: bool,
    /// Build even though the Nix sandbox is off. The result is not hermetic.
    #[arg(long)]
    pub allow_unsandboxed: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<()> {
    let settings = nixcmd::settings().context("reading the Nix configuration")?;
    if let Err(e) = settings.check_isolated() {
        if !args.allow_unsandboxed {
            return Err(e.into());
        }
        eprintln!("kiln: WARNING: building WITHOUT the Nix sandbox ({e}). The result is not hermetic; do not publish it.");
    }
    let pin = Pin::read(project)?;
    if !kiln::nixstore::is_valid(&pin.store_path) {
        bail!(
            "the seed {} is not in the Nix store; run `kiln seed --check` (or scripts/setup)",
            pin.store_path
        );
    }
    let built = nixcmd::build(
        project,
        &args.images,
        &BuildOptions {
            out_link: args.out_link.clone(),
            rebuild: args.rebuild,
            allow_unsandboxed: args.allow_unsandboxed,
            ..Default::default()
        },
    )?;
    let mut report = Vec::new();
    for b in &built {
        let summary = std::fs::read(Path::new(b.out()).join("image.json"))
            .ok()
            .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s).ok())
            .unwrap_or(serde_json::Value::Null);
        let digest = summary
            .pointer("/index/digest")
            .or_else(|| summary.pointer("/manifest/digest"))
            .and_then(|d| d.as_str())
            .unwrap_or("?")
            .to_string();
        if !args.json {
            println!("{} {} {}", b.attr, digest, b.out());
        }
        report.push(serde_json::json!({"image": b.attr, "digest": digest, "out": b.out(), "drv": b.drv_path}));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
