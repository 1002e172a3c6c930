//! Subcommands, one file each.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod build;
mod fetch;
mod keygen;
mod lock;
mod seed;

/// kiln builds minimal container base images from pinned Debian packages,
/// hermetically in the Nix sandbox, bit-for-bit reproducible, with SBOMs,
/// SLSA provenance and cosign-compatible signatures.
///
/// The usual flow: `kiln lock` (resolve and pin packages against Debian's
/// signed index), `kiln fetch` (download the pinned .debs into the Nix
/// store), `kiln seed` (build the sandbox-side builder), then
/// `nix build .#<image>`.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Project directory (holds images/, kiln.lock, flake.nix).
    #[arg(long, global = true, default_value = ".", env = "KILN_PROJECT")]
    pub project: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Lock(lock::Args),
    Build(build::Args),
    Fetch(fetch::Args),
    Seed(seed::Args),
    Keygen(keygen::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lock(a) => lock::run(&cli.project, a),
        Command::Build(a) => build::run(&cli.project, a),
        Command::Fetch(a) => fetch::run(&cli.project, a),
        Command::Seed(a) => seed::run(&cli.project, a),
        Command::Keygen(a) => keygen::run(&cli.project, a),
    }
}
