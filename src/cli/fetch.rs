//! `kiln fetch` (not written yet).

use std::path::Path;

/// Placeholder.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln fetch is not implemented yet")
}
