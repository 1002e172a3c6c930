//! `kiln pull`: an image and what is attached to it, from a registry into
//! an OCI layout.

use super::registry_args::RegistryArgs;
use kiln::registry::{self, RegistryRef};
use std::path::{Path, PathBuf};

/// Pull an image (and its signatures and attestations) from a registry into an OCI layout.
///
/// Fetches the image index, every platform manifest, config and layer, and
/// what is attached to each of those digests: cosign's `sha256-<hex>.sig`,
/// `.att` and `.sbom` manifests and OCI 1.1 referrers (referrers API, or
/// the `sha256-<hex>` tag fallback). Every manifest and blob is checked
/// against its digest as it is written. The layout is assembled in a
/// temporary directory next to DEST and renamed into place when complete;
/// `kiln verify DEST` / `nix run .#verify -- DEST` check it offline.
///
/// In DEST's index.json the image is named after the tag (or --name), each
/// platform manifest `<name>-<arch>` (for umoci and skopeo), and the cosign
/// manifests by their tags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// registry/repository:tag or registry/repository@sha256:<hex> (also
    /// with skopeo's docker:// prefix).
    pub source: String,
    /// The layout directory to create.
    pub dest: PathBuf,
    /// The image's ref name in the layout (default: the tag, else `latest`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Pull the image only, not its signatures and attestations.
    #[arg(long)]
    pub no_signatures: bool,
    /// Replace DEST if it exists (only once the new layout is complete).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print the pull report as JSON.
    #[arg(long)]
    pub json: bool,

    /// No progress bar (shown on a terminal only, never with --json).
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(_project: &Path, args: Args) -> anyhow::Result<()> {
    let source = RegistryRef::parse(
        args.source
            .strip_prefix("docker://")
            .unwrap_or(&args.source),
    )?;
    let opts = args
        .registry
        .options_with_progress(Vec::new(), !args.json && !args.quiet)?;
    let report = registry::pull(
        &source,
        &args.dest,
        args.name.as_deref(),
        !args.no_signatures,
        args.force,
        &opts,
    )
    .map_err(|e| anyhow::Error::new(e).context(format!("pulling {source}")))?;
    for r in &report.referrers_missing {
        eprintln!(
            "kiln: warning: {source}: referrer {} of {} is listed ({}) but not in the repository; not copied, and a verifier reading the registry fails on it",
            r.manifest,
            r.subject,
            if r.via == "tag" { "by the sha256-<hex> tag" } else { "by the referrers API" }
        );
    }
    if args.json {
        super::output::json(&report);
    } else {
        println!(
            "pulled {}@{} into {}",
            report.reference,
            report.digest.map(|d| d.to_string()).unwrap_or_default(),
            report.layout.display()
        );
        println!(
            "  {} manifests, {} blobs, {:.2} MB, every digest verified",
            report.manifests,
            report.blobs,
            report.bytes as f64 / 1_000_000.0
        );
        if args.no_signatures {
            println!("  signatures and attestations: not pulled");
        } else if report.tags.is_empty() && report.referrers.is_empty() {
            println!("  signatures and attestations: none found");
        } else {
            let via_tag = report.referrers.iter().filter(|r| r.via == "tag").count();
            println!(
                "  signatures and attestations: {} cosign tags ({}), {} referrers{}",
                report.tags.len(),
                report
                    .tags
                    .iter()
                    .filter_map(|t| t.rsplit_once('.').map(|(_, s)| s))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
                report.referrers.len(),
                if via_tag > 0 {
                    format!(" ({via_tag} through the sha256-<hex> fallback tags)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
