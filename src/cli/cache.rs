//! `kiln cache push | verify`: a Nix binary cache of what the images need.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Share builds through a signed Nix binary cache.
///
/// `push` copies everything the images are built from into the cache,
/// signed with a Nix signing key: the .debs, crates and wheels, busybox,
/// the seed, the toolchain roots and application builds (with --outputs,
/// the images too). A machine that uses the cache as a substituter and
/// trusts its public key builds them with no mirror at all, and gets the
/// same digests. `verify` checks that a cache holds every one of those
/// paths with a valid signature by the given public key (fixed-output
/// paths such as .debs are checked by their hash instead, as Nix does).
///
/// Examples:
///   nix-store --generate-binary-cache-key kiln-cache-1 cache.sec cache.pub
///   kiln cache push file:///srv/kiln-cache --secret-key cache.sec
///   kiln cache verify https://cache.example/kiln --public-key cache.pub
/// On the machine that uses it (nix.conf):
///   substituters = https://cache.example/kiln
///   trusted-public-keys = <the contents of cache.pub>
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Copy what the images need into a binary cache, signed.
    Push(PushArgs),
    /// Check that a binary cache holds what the images need, signed by a key.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The binary cache: file:///DIR, http(s)://HOST/PATH, s3://BUCKET.
    pub cache: String,
    /// Flake attributes whose inputs to copy (build them first). Default:
    /// every image of the project.
    pub images: Vec<String>,
    /// The Nix signing key (`nix-store --generate-binary-cache-key`).
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Also copy the images (layers, per-arch images, indexes).
    #[arg(long)]
    pub outputs: bool,
    /// Print what was copied as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The binary cache.
    pub cache: String,
    /// Flake attributes whose inputs to look for. Default: every image.
    pub images: Vec<String>,
    /// The cache's public key (a file holding NAME:BASE64); repeatable.
    #[arg(long, value_name = "FILE", required = true)]
    pub public_key: Vec<PathBuf>,
    /// Also require the images.
    #[arg(long)]
    pub outputs: bool,
}

fn attrs(project: &Path, images: &[String]) -> anyhow::Result<Vec<String>> {
    if images.is_empty() {
        return Ok(kiln::nixcmd::package_names(project)?
            .into_iter()
            .filter(|n| project.join("images").join(n).is_dir())
            .collect());
    }
    kiln::build::check_attrs(project, images)?;
    Ok(images.to_vec())
}

/// The attributes, what building them needs, and the paths to copy or
/// look for (the inputs, and with `outputs` the image parts too).
fn selection(
    project: &Path,
    images: &[String],
    outputs: bool,
) -> anyhow::Result<(Vec<String>, kiln::cache::Plan, Vec<String>)> {
    let attrs = attrs(project, images)?;
    let plan = kiln::cache::plan(project, &attrs).context("working out what the images need")?;
    let mut paths = plan.inputs.clone();
    if outputs {
        paths.extend(plan.outputs.iter().cloned());
    }
    Ok((attrs, plan, paths))
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    match args.command {
        CacheCommand::Push(a) => {
            let (attrs, plan, paths) = selection(project, &a.images, a.outputs)?;
            let missing: Vec<&String> = paths.iter().filter(|p| !Path::new(p).exists()).collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "{} of the paths to copy are not in this machine's store (e.g. {}): run `kiln fetch` and `kiln build {}` first",
                    missing.len(),
                    missing[0],
                    attrs.join(" ")
                );
            }
            kiln::cache::push(&a.cache, &a.secret_key, &paths)?;
            if a.json {
                super::output::json(&serde_json::json!({
                    "cache": a.cache,
                    "inputs": plan.inputs.len(),
                    "outputs": if a.outputs { plan.outputs.len() } else { 0 },
                    "paths": paths,
                }));
            } else {
                println!(
                    "{}: {} inputs{} of {} image attribute(s), signed",
                    a.cache,
                    plan.inputs.len(),
                    if a.outputs {
                        format!(" and {} image paths", plan.outputs.len())
                    } else {
                        String::new()
                    },
                    attrs.len()
                );
            }
            Ok(super::Outcome::Ok)
        }
        CacheCommand::Verify(a) => {
            let (_, _, paths) = selection(project, &a.images, a.outputs)?;
            let keys = a
                .public_key
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|k| k.trim().to_string())
                        .with_context(|| format!("reading the public key {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            match kiln::cache::verify(&a.cache, &keys, &paths) {
                Ok(()) => {
                    println!("{}: all {} paths present and signed", a.cache, paths.len());
                    Ok(super::Outcome::Ok)
                }
                Err(e @ kiln::cache::CacheError::Unsigned { .. }) => {
                    eprintln!("kiln: {e}");
                    Ok(super::Outcome::ChecksFailed)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
