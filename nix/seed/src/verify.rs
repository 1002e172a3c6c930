//! The verifier behind `nix run .#verify` (not written yet).

use std::process::ExitCode;

pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("verify: not implemented yet");
    ExitCode::FAILURE
}
