//! `kiln push` (not written yet).

use std::path::Path;

/// Push an image with its signatures and attestations to a registry.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln push is not implemented yet")
}
