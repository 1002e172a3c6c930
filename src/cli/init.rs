//! `kiln init`: a new project.

use std::path::{Path, PathBuf};

/// Create a new kiln project: a flake that takes kiln as its input
/// (`kiln.lib.project`), one example image (images/example/image.toml), a
/// .gitignore and a README. The same files as `nix flake init -t <kiln>`.
///
/// The project uses kiln's policies until it has a policy/ of its own
/// (copy kiln's there to change them). Nothing is overwritten: a directory
/// that already holds any of the files is refused, and nothing is written.
///
/// Then: `kiln lock`, `kiln fetch`, `kiln build example`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the project (created if missing). Default: the current directory.
    pub dir: Option<PathBuf>,

    /// The flake reference of the kiln the project builds with, e.g.
    /// `path:/src/kiln` for a local checkout or `github:OWNER/REPO/TAG`.
    #[arg(long = "kiln", value_name = "FLAKEREF", env = "KILN_FLAKE", default_value = kiln::init::DEFAULT_KILN_REF)]
    pub kiln_ref: String,
}

/// `project` is not used: the new project is `DIR`.
pub fn run(_project: &Path, args: Args) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let written = kiln::init::init(&dir, &args.kiln_ref)?;
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    let shown = dir.display();
    eprintln!(
        "kiln project created in {shown}, building with kiln from {}",
        args.kiln_ref
    );
    if kiln::tool::git(&dir, &["rev-parse", "--show-toplevel"]).is_some() {
        eprintln!(
            "it is inside a git repository: `git add` its files (Nix sees only tracked files)"
        );
    }
    eprintln!("next: cd {shown} && kiln lock && kiln fetch && kiln build example");
    Ok(())
}
