//! `kiln completions` and `kiln man`: shell completions and manual pages,
//! generated from the same clap definitions as `--help`, so they cannot
//! drift from what the commands accept.

use anyhow::Context;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Print a shell completion script (bash, zsh, fish, elvish, powershell).
///
///   kiln completions bash > /etc/bash_completion.d/kiln
///   kiln completions zsh > "${fpath[1]}/_kiln"
///   kiln completions fish > ~/.config/fish/completions/kiln.fish
#[derive(Debug, clap::Args)]
pub struct Args {
    pub shell: clap_complete::Shell,
}

pub fn run(_project: &Path, args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "kiln", &mut out);
    super::output::text(&String::from_utf8_lossy(&out));
    Ok(())
}

/// Write the manual pages: kiln(1) and one page per command (kiln-build(1), ...).
///
/// Without --out, prints kiln(1) to stdout (`kiln man | man -l -`).
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// A directory to write kiln.1 and kiln-<command>.1 into (created).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn render(cmd: clap::Command, title: &str) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(title.to_uppercase())
        .render(&mut page)
        .context("rendering a manual page")?;
    Ok(page)
}

pub fn run_man(_project: &Path, args: ManArgs) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    let Some(dir) = args.out else {
        super::output::text(&String::from_utf8_lossy(&render(cmd, "kiln")?));
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![dir.join("kiln.1")];
    kiln::fsutil::write_atomic(&written[0], &render(cmd.clone(), "kiln")?)
        .with_context(|| format!("writing {}", written[0].display()))?;
    for sub in cmd.get_subcommands() {
        let name = format!("kiln-{}", sub.get_name());
        let path = dir.join(format!("{name}.1"));
        let page = render(sub.clone().display_name(&name).bin_name(&name), &name)?;
        kiln::fsutil::write_atomic(&path, &page)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    for p in &written {
        println!("{}", p.display());
    }
    Ok(())
}
