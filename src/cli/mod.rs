//! Subcommands, one file each.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod build;
mod cache;
mod completions;
mod diff;
mod digests;
mod fetch;
mod init;
mod keygen;
mod lock;
mod mirror;
mod output;
mod policy;
mod pull;
mod push;
mod registry_args;
mod repro;
mod seed;
mod sign;
mod test;
mod verify;

/// kiln builds minimal container base images from pinned Debian packages,
/// hermetically in the Nix sandbox, bit-for-bit reproducible, with SBOMs,
/// SLSA provenance and cosign-compatible signatures.
///
/// The usual flow: `kiln init` (a new project, once), `kiln lock`
/// (resolve and pin packages against Debian's signed index), `kiln fetch`
/// (download the pinned .debs into the Nix store), then `kiln build
/// <image>` or `nix build .#<image>`. In kiln's own repository, `kiln seed`
/// rebuilds the sandbox-side builder and its pin.
///
/// Exit status, for every command: 0 ok, 1 a check failed (verify, policy,
/// test, diff, repro, digests --check, lock --check, seed --check, cache
/// verify, a build denied by policy), 2 could not run (bad input, a missing file, an
/// unreachable registry, a usage error).
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Project directory (holds images/, kiln.lock, flake.nix). Default:
    /// the nearest directory upwards from here that holds images/ and
    /// flake.nix or kiln.lock, as git finds its repository.
    #[arg(long, global = true, env = "KILN_PROJECT")]
    pub project: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Lock(lock::Args),
    Fetch(fetch::Args),
    Seed(seed::Args),
    Build(build::Args),
    Keygen(keygen::Args),
    Sign(sign::Args),
    Push(push::Args),
    Pull(pull::Args),
    Verify(verify::Args),
    Repro(repro::Args),
    Diff(diff::Args),
    Digests(digests::Args),
    Cache(cache::Args),
    Policy(policy::Args),
    Test(test::Args),
    Completions(completions::Args),
    Man(completions::ManArgs),
}

/// What a command found, when it could run: the one thing the exit status
/// reports (main maps it, and every error, to a code in one place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, and every check passed (exit 0).
    Ok,
    /// The command ran and a check failed: a denied policy, a digest that
    /// moved, a verification or runtime check that failed, two images that
    /// differ (exit 1). What failed has been printed.
    ChecksFailed,
}

impl Outcome {
    /// `ChecksFailed` unless `passed`.
    pub fn from_passed(passed: bool) -> Outcome {
        if passed {
            Outcome::Ok
        } else {
            Outcome::ChecksFailed
        }
    }
}

/// The command line with the project found.
struct Resolved {
    project: PathBuf,
    command: Command,
}

/// Runs a command that has no check of its own to fail.
fn done(r: anyhow::Result<()>) -> anyhow::Result<Outcome> {
    r.map(|()| Outcome::Ok)
}

/// Whether `dir` looks like a kiln project.
fn is_project(dir: &std::path::Path) -> bool {
    dir.join("images").is_dir()
        && (dir.join("flake.nix").is_file() || dir.join("kiln.lock").is_file())
}

/// The project: `--project` (which must be one), else the nearest one
/// upwards from the working directory, else `.` (commands that need none,
/// such as verify or diff, still run; the others say what is missing, as
/// they do for a `--project` without images/).
fn project_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        if !dir.is_dir() {
            anyhow::bail!("--project {}: no such directory", dir.display());
        }
        return Ok(dir);
    }
    let here = std::env::current_dir()?;
    Ok(here
        .ancestors()
        .find(|d| is_project(d))
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".")))
}

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let cli = Resolved {
        project: project_dir(cli.project)?,
        command: cli.command,
    };
    match cli.command {
        Command::Init(a) => done(init::run(&cli.project, a)),
        Command::Lock(a) => lock::run(&cli.project, a),
        Command::Fetch(a) => done(fetch::run(&cli.project, a)),
        Command::Seed(a) => seed::run(&cli.project, a),
        Command::Build(a) => build::run(&cli.project, a),
        Command::Keygen(a) => done(keygen::run(&cli.project, a)),
        Command::Sign(a) => done(sign::run(&cli.project, a)),
        Command::Push(a) => done(push::run(&cli.project, a)),
        Command::Pull(a) => done(pull::run(&cli.project, a)),
        Command::Verify(a) => verify::run(&cli.project, a),
        Command::Repro(a) => repro::run(&cli.project, a),
        Command::Diff(a) => diff::run(&cli.project, a),
        Command::Digests(a) => digests::run(&cli.project, a),
        Command::Cache(a) => cache::run(&cli.project, a),
        Command::Policy(a) => policy::run(&cli.project, a),
        Command::Test(a) => test::run(&cli.project, a),
        Command::Completions(a) => done(completions::run(&cli.project, a)),
        Command::Man(a) => done(completions::run_man(&cli.project, a)),
    }
}
