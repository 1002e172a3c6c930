//! `kiln seed`: build the sandbox-side builder, pin it, put it in the store.

use anyhow::Context;
use kiln::seedbuild::{self, BuildOptions};
use std::path::Path;

/// Build the seed (kiln's static in-sandbox builder) reproducibly from
/// nix/seed, and add it to the Nix store.
///
/// Without flags the pin in nix/seed.json is updated when the binary
/// changed (commit it). With --check the rebuilt binary must equal the pin
/// bit for bit — that is kiln's own reproducibility test, and what a fresh
/// machine runs to install the seed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fail if the rebuilt seed differs from nix/seed.json (never rewrite the pin).
    #[arg(long)]
    pub check: bool,
    /// Re-resolve nix/seed/Cargo.lock (after changing the seed's dependencies).
    #[arg(long, conflicts_with = "check")]
    pub update_lock: bool,
    /// Show cargo's output.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kiln seed --json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SeedReport<'a> {
    store_path: &'a Path,
    nar_hash: &'a str,
    size: u64,
    status: &'a str,
    seconds: f64,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let started = std::time::Instant::now();
    let built = seedbuild::build(
        project,
        &BuildOptions {
            update_lock: args.update_lock,
            verbose: args.verbose,
        },
    )
    .context("building the seed")?;
    let status = if args.check {
        match seedbuild::check_against(project, &built) {
            Ok(_) => {}
            // The rebuilt seed differs: the check failed (and says how).
            Err(e @ seedbuild::SeedError::Mismatch { .. }) => {
                eprintln!("kiln: {e}");
                return Ok(super::Outcome::ChecksFailed);
            }
            Err(e) => return Err(e.into()),
        }
        "matches the pin"
    } else {
        match seedbuild::Pin::read(project) {
            Ok(old) if old.nar_hash == built.pin.nar_hash => "unchanged",
            Ok(old) => {
                built.pin.write(project)?;
                eprintln!(
                    "kiln: the seed changed: {} -> {}; nix/seed.json updated: commit it (every image derivation will rebuild)",
                    old.store_path, built.pin.store_path
                );
                "pin updated"
            }
            Err(_) => {
                built.pin.write(project)?;
                "pin written"
            }
        }
    };
    let path = seedbuild::install(&built).context("adding the seed to the Nix store")?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        super::output::json(&SeedReport {
            store_path: &path,
            nar_hash: &built.pin.nar_hash,
            size: built.pin.size,
            status,
            seconds: secs,
        });
    } else {
        println!(
            "seed {} ({} bytes, {status}) in {secs:.1}s",
            path.display(),
            built.pin.size
        );
    }
    Ok(super::Outcome::Ok)
}
