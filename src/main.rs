//! `kiln`: the command-line driver. A thin layer over the library: parse
//! arguments, call the library, print results (human text or `--json`).

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// The one place results become exit codes: 0 ok, 1 a check failed (a
/// verification, policy, digest, runtime or reproducibility check, or two
/// images that differ), 2 could not run (bad input, a missing file, an
/// unreachable registry; clap's usage errors are 2 as well).
fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so writing to a closed pipe (`kiln verify ...
    // | head`) would panic in println!; restore the default, as other
    // command-line tools have it: the process ends quietly.
    // SAFETY: called once, before any thread starts; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Nix warns "Git tree ... is dirty" once per invocation, and one kiln
    // command runs nix several times; kiln says it once where it matters
    // (`kiln build`, whose provenance records it).
    let mut nix_config = std::env::var("NIX_CONFIG").unwrap_or_default();
    if !nix_config.is_empty() {
        nix_config.push('\n');
    }
    nix_config.push_str("warn-dirty = false");
    std::env::set_var("NIX_CONFIG", nix_config);
    // Ctrl-C removes what kiln was writing before it exits (130); after
    // set_var, which must not race another thread.
    kiln::interrupt::install();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(cli::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(cli::Outcome::ChecksFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kiln: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
