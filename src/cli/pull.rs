//! `kiln pull` (not written yet).

use std::path::Path;

/// Pull an image (and its signatures and attestations) from a registry into an OCI layout.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln pull is not implemented yet")
}
