//! `kiln seed`: compile the sandbox-side builder in the sandbox and pin
//! what it is.

use anyhow::Context;
use kiln::seedbuild::{self, BuildOptions, Pin};
use std::path::Path;

/// Compile the seed (kiln's static in-sandbox builder) from nix/seed inside
/// the Nix sandbox, with Debian's rustc, and record it in nix/seed.json.
///
/// Without flags nix/seed.json is updated when the binary changed (commit
/// it). With --check the seed is built again (`nix build --rebuild` when it
/// is already in the store) and must equal nix/seed.json bit for bit: the
/// seed is reproducible on this machine and across machines.
///
/// Examples:
///   kiln seed                    after changing nix/seed: update the pin
///   kiln seed --check            CI: rebuild and compare
///   kiln seed --update-lock      re-resolve nix/seed/Cargo.lock (host cargo)
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Fail if the rebuilt seed differs from nix/seed.json (never rewrite the pin).
    #[arg(long)]
    pub check: bool,
    /// Re-resolve nix/seed/Cargo.lock with the host's cargo first (after
    /// changing the seed's dependencies; then `kiln fetch` adds the crates).
    #[arg(long, conflicts_with = "check")]
    pub update_lock: bool,
    /// Show cargo's output (with --update-lock).
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
    store_path: &'a str,
    nar_hash: &'a str,
    size: u64,
    compiler: &'a str,
    status: &'a str,
    seconds: f64,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let started = std::time::Instant::now();
    if args.update_lock {
        seedbuild::host_build(
            project,
            &BuildOptions {
                update_lock: true,
                verbose: args.verbose,
            },
        )
        .context("re-resolving nix/seed/Cargo.lock")?;
    }
    let pinned = Pin::read(project).ok();
    let status;
    let built = if args.check {
        // Build once if absent; otherwise build again and let Nix compare.
        let present = pinned.is_some() && seedbuild::sandbox_build_present(project)?;
        let built = seedbuild::sandbox_build(project, present)
            .context("compiling the seed in the sandbox")?;
        match &pinned {
            Some(p) if p.nar_hash == built.nar_hash => {}
            Some(p) => {
                eprintln!(
                    "kiln: {}",
                    seedbuild::SeedError::Drift {
                        pin_file: seedbuild::PIN_FILE.into(),
                        built: built.store_path.clone(),
                        built_hash: built.nar_hash.clone(),
                        pinned_hash: p.nar_hash.clone(),
                    }
                );
                return Ok(super::Outcome::ChecksFailed);
            }
            None => anyhow::bail!(
                "{} is missing or unreadable; run `kiln seed`",
                seedbuild::PIN_FILE
            ),
        }
        status = if present {
            "rebuilt, matches the pin"
        } else {
            "matches the pin"
        };
        built
    } else {
        let built = seedbuild::sandbox_build(project, false)
            .context("compiling the seed in the sandbox")?;
        status = match &pinned {
            Some(old) if *old == built => "unchanged",
            Some(old) => {
                built.write(project)?;
                if old.nar_hash != built.nar_hash {
                    eprintln!(
                        "kiln: the seed changed ({} -> {}); nix/seed.json updated: commit it",
                        old.nar_hash, built.nar_hash
                    );
                }
                "pin updated"
            }
            None => {
                built.write(project)?;
                "pin written"
            }
        };
        built
    };
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        super::output::json(&SeedReport {
            store_path: &built.store_path,
            nar_hash: &built.nar_hash,
            size: built.size,
            compiler: &built.compiler,
            status,
            seconds: secs,
        });
    } else {
        println!(
            "seed {} ({} bytes, {}, {status}) in {secs:.1}s",
            built.store_path, built.size, built.compiler
        );
    }
    Ok(super::Outcome::Ok)
}
