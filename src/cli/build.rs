//! `kiln build`: the control plane's build, through the build engine
//! (`kiln::build`): reports what it produced, the policy verdicts and where
//! the SLSA provenance went (docs/provenance.md).

use std::path::{Path, PathBuf};

/// Build images hermetically in the Nix sandbox (`nix build .#<image>`).
///
/// Refuses to run when builds would not be isolated (the Nix sandbox off,
/// a silent fallback to building without it, or host paths in
/// sandbox-paths), unless --allow-unsandboxed is given; then the build log
/// says so loudly. The static shell current Nix exposes as /bin/sh by
/// default is removed for kiln's builds where kiln may change
/// sandbox-paths, and recorded in the provenance where it may not.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to build: flake attributes such as `scratch-plus`,
    /// `scratch-plus-debug` or `scratch-plus-arm64`.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Symlink to the first image's output (like `nix build --out-link`).
    #[arg(long, short)]
    pub out_link: Option<PathBuf>,
    /// Build again and fail if the output differs (`nix build --rebuild`).
    #[arg(long)]
    pub rebuild: bool,
    /// Build even though builds would not be isolated. The result is not
    /// hermetic, and its provenance says so.
    #[arg(long)]
    pub allow_unsandboxed: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Directory for the provenance statements (`<attr>.intoto.json`,
    /// unsigned; `kiln sign` signs them). Relative to the project.
    #[arg(long, value_name = "DIR", default_value = kiln::provenance::DEFAULT_DIR)]
    pub provenance_dir: PathBuf,
    /// A directory of your own Rego policies, evaluated with kiln's defaults
    /// (repeatable; see docs/policy.md).
    #[arg(long = "policy", value_name = "DIR")]
    pub policies: Vec<PathBuf>,
    /// Go on even when a policy denies the image. The provenance records it.
    #[arg(long)]
    pub skip_policy: bool,
    /// How many derivations to build at once (Nix's `--max-jobs`; layers
    /// of different packages are independent). Default: nix.conf's
    /// `max-jobs`, which setup sets to one per core.
    #[arg(long, short = 'j', value_name = "N")]
    pub max_jobs: Option<u32>,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let report = kiln::build::build(
        project,
        &kiln::build::Options {
            attrs: args.images.clone(),
            out_link: args.out_link.clone(),
            rebuild: args.rebuild,
            allow_unsandboxed: args.allow_unsandboxed,
            provenance_dir: project.join(&args.provenance_dir),
            policies: args.policies.clone(),
            skip_policy: args.skip_policy,
            max_jobs: args.max_jobs,
        },
    )?;
    if report
        .source
        .as_ref()
        .is_some_and(|s| s.dirty && s.revision.is_some())
    {
        eprintln!("kiln: note: the checkout has uncommitted changes; they are built, and the provenance records the source as dirty");
    }
    if let Some(why) = &report.unsandboxed {
        eprintln!("kiln: WARNING: built WITHOUT the Nix sandbox ({why}). The result is not hermetic; do not publish it.");
    }
    for b in &report.built {
        if let Some(v) = &b.verdict {
            eprint!("{v}");
        }
        if !args.json {
            match &b.digest {
                Some(d) => println!("{} {d} {}", b.image, b.out),
                None => println!("{} {}", b.image, b.out),
            }
            if let Some(p) = &b.provenance {
                eprintln!("kiln: provenance: {}", p.display());
            }
        }
    }
    if let Some(d) = &report.denied {
        eprint!("{}", d.verdict);
        eprintln!(
            "kiln: {}: {} policy violation(s) denied; nothing was linked or attested. Fix the definition, or pass --skip-policy to build anyway (recorded in the provenance)",
            d.attr, d.count
        );
        return Ok(super::Outcome::ChecksFailed);
    }
    if args.json {
        super::output::json(&report.built);
    }
    Ok(super::Outcome::Ok)
}
