//! `kiln verify`: the seed's verifier (the code `nix run .#verify` runs),
//! called as a library.

use kiln_seed::verify::{self, Options};
use std::path::{Path, PathBuf};

/// Verify an image: signatures, attestations, SBOMs, provenance, rebuild.
///
/// Runs the same checks as `nix run .#verify -- ...` and prints one line
/// per check (✓ passed, ✗ failed, · not checked); exits non-zero when any
/// check fails.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A signed layout (`DIR`, `DIR:NAME`, `oci:DIR[:NAME]`), a flake
    /// attribute signed with `kiln sign` (its `.kiln/signed/<attr>`), or a
    /// registry reference (`HOST/REPO[:TAG|@DIGEST]`, `docker://...`).
    /// A layout without a name: every entry of its index.json must lead to
    /// the verified image, its platform manifests or their signatures and
    /// attestations. A registry tag is resolved once and the report gives
    /// the reference pinned to the verified digest.
    pub image: String,
    /// Trusted public key (cosign.pub); repeat to trust several.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Vec<PathBuf>,
    /// Keyless: the identity the signing certificate must name (its SAN: a
    /// CI workflow URI or an e-mail address).
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "certificate_identity_regexp"
    )]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the whole identity must match.
    #[arg(long, value_name = "REGEX")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer that verified the identity (e.g.
    /// https://token.actions.githubusercontent.com).
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "certificate_oidc_issuer_regexp"
    )]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: a regular expression the whole issuer must match.
    #[arg(long, value_name = "REGEX")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Keyless: the Sigstore trusted root (trusted_root.json) to check
    /// certificates, SCTs and Rekor entries against. Default: the
    /// public-good instance's, compiled in.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// Verify what this name of a layout leads to (its ref name; it must
    /// name exactly one entry), and nothing else.
    #[arg(long)]
    pub tag: Option<String>,
    /// Require the provenance's runDetails.builder.id to be this.
    #[arg(long, value_name = "ID")]
    pub builder_id: Option<String>,
    /// A checkout whose kiln.lock the provenance's .debs must match (also
    /// what --rebuild clones).
    #[arg(long, value_name = "CHECKOUT")]
    pub source: Option<PathBuf>,
    /// Fail when the provenance's build finished longer ago (30d, 12h, 90m, seconds).
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
    /// Check out the recorded source revision, rebuild it in the Nix
    /// sandbox and require the signed digests.
    #[arg(long)]
    pub rebuild: bool,
    /// An application's base image (layout or registry reference).
    /// Default: the image its base.name annotation names, beside it (the
    /// next repository in its registry, or kiln's signed layout of it).
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Public keys the base is signed with (repeatable). Default: --key.
    #[arg(long, value_name = "FILE")]
    pub base_key: Vec<PathBuf>,
    /// The repository a registry image's signatures must name
    /// (REGISTRY/REPOSITORY), when it is read under another name than it
    /// was signed for (a mirror, a proxy). Default: the repository it is
    /// read from, as podman, CRI-O and skopeo check it (signedIdentity
    /// matchRepository).
    #[arg(long, value_name = "REPO")]
    pub signed_repository: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let signed = project.join(kiln::signstore::DEFAULT_DIR).join(&args.image);
    let reference = if !Path::new(&args.image).exists() && signed.is_dir() {
        signed.display().to_string()
    } else {
        args.image.clone()
    };
    let max_age = match &args.max_age {
        Some(s) => Some(verify::provenance::parse_duration(s).ok_or_else(|| {
            anyhow::anyhow!("--max-age {s:?}: expected e.g. 30d, 12h, 90m or seconds")
        })?),
        None => None,
    };
    let opts = Options {
        reference,
        tag: args.tag,
        keys: args.key,
        keyless: verify::KeylessFlags {
            identity: args.certificate_identity,
            identity_regexp: args.certificate_identity_regexp,
            issuer: args.certificate_oidc_issuer,
            issuer_regexp: args.certificate_oidc_issuer_regexp,
            trusted_root: args.trusted_root,
        },
        builder_id: args.builder_id,
        source: args.source,
        max_age,
        rebuild: args.rebuild,
        json: args.json,
        client: args.registry.client_options()?,
        base: args.base,
        base_keys: args.base_key,
        verifying_base: false,
        signed_repository: args.signed_repository,
    };
    let (report, _) = verify::run(&opts);
    if args.json {
        super::output::json(&report);
    }
    if let Some(e) = &report.error {
        anyhow::bail!("could not verify {}: {e}", opts.reference);
    }
    if !args.json {
        print!("{}", report.render_text());
    }
    // The report said what failed; the exit status is what scripts see.
    Ok(super::Outcome::from_passed(report.passed()))
}
