//! `kiln verify` (not written yet).

use std::path::Path;

/// Verify an image: signatures, attestations, SBOMs, provenance, rebuild.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln verify is not implemented yet")
}
