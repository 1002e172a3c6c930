//! `kiln policy` (not written yet).

use std::path::Path;

/// Evaluate Rego policies over definitions and built images.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln policy is not implemented yet")
}
