//! `kiln sign` (not written yet).

use std::path::Path;

/// Sign images and attest them (cosign-compatible signatures, DSSE attestations).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln sign is not implemented yet")
}
