//! `kiln diff` (not written yet).

use std::path::Path;

/// Explain how two images differ, from the index down to files.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln diff is not implemented yet")
}
