//! `kiln keygen`: create a cosign-compatible signing key pair.

use anyhow::Context;
use kiln::keys;
use std::path::{Path, PathBuf};

/// Generate an ECDSA P-256 key pair in cosign's formats: <PREFIX>.key (the
/// private key, encrypted with a password: scrypt + nacl/secretbox, mode
/// 0600) and <PREFIX>.pub (PEM public key, 0644).
///
/// The password comes from COSIGN_PASSWORD when set, as with
/// `cosign generate-key-pair`; otherwise it is asked twice on the terminal.
/// The files work with cosign (`cosign sign --key`, `cosign verify --key`)
/// and kiln (`kiln sign --key`, `nix run .#verify -- --key`). Keep the
/// private key out of version control; publish the public key.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path prefix of the key files (relative to the current directory, like cosign's).
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_key_prefix: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

/// `project` is not used: like cosign, key paths are relative to the
/// current directory, and keys do not belong to a project tree.
pub fn run(_project: &Path, args: Args) -> anyhow::Result<()> {
    let (private, public) = keys::key_paths(&args.output_key_prefix);
    if !args.force {
        // Fail before asking for a password that would be thrown away.
        for p in [&private, &public] {
            if p.symlink_metadata().is_ok() {
                anyhow::bail!(
                    "{} already exists; not overwriting a key (pass --force to replace it)",
                    p.display()
                );
            }
        }
    }
    let password = keys::read_password(true)?;
    let generated = keys::generate(password.as_bytes()).context("generating the key pair")?;
    keys::write_key_pair(&private, &public, &generated, args.force)?;
    eprintln!("Private key written to {}", private.display());
    eprintln!("Public key written to {}", public.display());
    eprintln!(
        "Key id (sha256 of the public key): {}",
        generated.public_key.key_id()
    );
    if let Some(root) = unignored_in_git_work_tree(&private) {
        eprintln!(
            "kiln: warning: {} is inside the git work tree {} and not ignored: never commit it (add it to .gitignore)",
            private.display(),
            root.display()
        );
    }
    Ok(())
}

/// The work tree holding `file` if `file` is in one and git does not
/// ignore it: the way a signing key ends up in a public repository.
fn unignored_in_git_work_tree(file: &Path) -> Option<PathBuf> {
    let file = file.canonicalize().ok()?;
    let root = file
        .ancestors()
        .skip(1)
        .find(|d| d.join(".git").exists())?
        .to_path_buf();
    let ignored = std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["check-ignore", "-q", "--"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ignored).then_some(root)
}
