//! `kiln digests` (not written yet).

use std::path::Path;

/// Check or update the committed expected digests of every image.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln digests is not implemented yet")
}
