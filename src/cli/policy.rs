//! `kiln policy`: evaluate the Rego policies on the definitions and on the
//! built images.

use anyhow::bail;
use kiln::policy::{self, CheckOptions, PolicyDirs};
use std::path::{Path, PathBuf};

/// Check images against policy (Rego, evaluated in-process).
///
/// Loads kiln's default rules from the project's policy/ directory and any
/// --policy directories (their *.rego files, and *.json files as data),
/// evaluates them on each image's definition, builds the images (Nix
/// reuses what is already built) and evaluates every platform: config,
/// annotations, the file list of the stacked layers, installed packages,
/// sizes and lock pins. Each violation is printed with its rule, image,
/// architecture and the offending path or field. Any `deny` fails the
/// command; `warn` only prints.
///
/// Examples:
///   kiln policy                              every image
///   kiln policy --image base-debug --json    one image, machine-readable
///   kiln policy --policy ./company-rules     add your own rules
///   kiln policy --image scratch-plus --layout ./my-copy   check a layout as that image
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Images to check: `name` (with its variants) or `name-variant`. Default: all.
    #[arg(long = "image", value_name = "IMAGE")]
    pub images: Vec<String>,
    /// A directory of your own .rego policies (and .json data). Repeatable.
    #[arg(long = "policy", value_name = "DIR")]
    pub policies: Vec<PathBuf>,
    /// Do not load the project's policy/ directory (only --policy ones).
    #[arg(long)]
    pub no_default_policies: bool,
    /// Check only the definitions; build nothing.
    #[arg(long, conflicts_with = "layout")]
    pub definitions_only: bool,
    /// Check this OCI layout (DIR, DIR:NAME or oci:DIR[:NAME]; a name leads
    /// to one entry of its index.json) as the one image named by --image,
    /// instead of building it.
    #[arg(long, value_name = "DIR")]
    pub layout: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    if args.no_default_policies && args.policies.is_empty() {
        bail!("--no-default-policies needs at least one --policy DIR");
    }
    let report = policy::check_project(
        project,
        &CheckOptions {
            images: args.images,
            dirs: PolicyDirs {
                defaults: !args.no_default_policies,
                extra: args.policies,
            },
            layout: args.layout,
            definitions_only: args.definitions_only,
        },
    )?;
    if args.json {
        super::output::json(&report);
    } else {
        print!("{}", report.render());
    }
    if report.denied() > 0 {
        eprintln!("kiln: {} policy violation(s) denied", report.denied());
    }
    Ok(super::Outcome::from_passed(report.denied() == 0))
}
