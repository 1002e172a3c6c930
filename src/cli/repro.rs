//! `kiln repro` (not written yet).

use std::path::Path;

/// Rebuild an image under perturbations that must not matter and compare.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln repro is not implemented yet")
}
