//! `kiln test` (not written yet).

use std::path::Path;

/// Run an image for real (podman + runc) and probe it from inside.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_project: &Path, _args: Args) -> anyhow::Result<()> {
    anyhow::bail!("kiln test is not implemented yet")
}
