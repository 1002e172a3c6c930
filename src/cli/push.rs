//! `kiln push`: an image (all platforms) with its signatures and
//! attestations to a registry.

use super::registry_args::RegistryArgs;
use anyhow::{bail, Context};
use kiln::nixcmd::{self, BuildOptions};
use kiln::registry::{self, PushReport, PushSource, RegistryRef};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Push an image with its signatures and attestations to a registry.
///
/// SOURCE is an image layout (`DIR`, `DIR:NAME` or `oci:DIR[:NAME]`, e.g.
/// ./result, or a signed layout from `kiln sign`) or an image attribute
/// (`scratch-plus`): its signed layout (.kiln/signed/<image>) when there
/// is one, else the built image. A name leads to one entry of the
/// layout's index.json or to none; in a signed layout it must lead to a
/// signed image.
///
/// Every blob is checked against its digest as it is read and skipped when
/// the registry already has it; platform manifests are pushed by digest,
/// then the index, then the signatures and attestations (cosign's
/// `sha256-<hex>.sig`/`.att` tags and OCI 1.1 referrers, with the
/// `sha256-<hex>` tag fallback on registries without the referrers API),
/// and the tag last: a push that fails leaves the tag where it was.
///
/// Signatures name the repository they sign for (`kiln sign
/// --reference`), and a containers policy that checks the signed identity
/// (podman, CRI-O, skopeo: `sigstoreSigned` with `matchRepository`)
/// accepts them only there: a push to another repository is refused.
/// Transient failures (5xx, 429, dropped connections) are retried with
/// exponential backoff.
///
/// Plain HTTP is used only for registries on loopback (127.0.0.1,
/// localhost, [::1]) or with --insecure. Credentials: --username with
/// --password-stdin, else REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json
/// or ~/.docker/config.json, else anonymous (with the bearer-token flow).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image layout directory or image attribute.
    pub source: String,
    /// Where to: registry/repository:tag, or docker://registry/repository:tag
    /// (e.g. 127.0.0.1:5000/kiln/scratch-plus:latest).
    pub target: String,
    /// The entry of the layout's index.json to push (its ref name), when it
    /// holds more than one image.
    #[arg(long = "ref", value_name = "NAME")]
    pub layout_ref: Option<String>,
    /// Push the image only, not its signatures and attestations.
    #[arg(long, conflicts_with = "signatures")]
    pub no_signatures: bool,
    /// Fail unless the layout holds signatures to push (default: push them when present).
    #[arg(long)]
    pub signatures: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Mount blobs the target lacks from this repository of the same
    /// registry (e.g. another image sharing layers) instead of uploading
    /// them; repeatable.
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    /// Print the push report as JSON.
    #[arg(long)]
    pub json: bool,

    /// No progress bar (shown on a terminal only, never with --json).
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<()> {
    let target = RegistryRef::parse(
        args.target
            .strip_prefix("docker://")
            .unwrap_or(&args.target),
    )?;
    let (layout, signed, name) = resolve_source(project, &args.source)?;
    let layout_ref = match (name, args.layout_ref.clone()) {
        (Some(a), Some(b)) if a != b => {
            bail!(
                "{} names {a:?} and --ref names {b:?}: give one",
                args.source
            )
        }
        (a, b) => a.or(b),
    };
    let has_attachments = signed || layout_has_attachments(&layout)?;
    if args.signatures && !has_attachments {
        bail!(
            "{} holds no signatures or attestations; sign it first (`kiln sign {} --key cosign.key`)",
            layout.display(),
            args.source
        );
    }
    let source = PushSource {
        layout: layout.clone(),
        layout_ref,
        attachments: (!args.no_signatures && has_attachments).then(|| layout.clone()),
    };
    let opts = args
        .registry
        .options_with_progress(args.mount_from.clone(), !args.json && !args.quiet)?;
    let started = Instant::now();
    let pushed = registry::push(&source, &target, &opts);
    if let Err(e @ registry::RegistryError::IdentityMismatch { .. }) = &pushed {
        bail!(
            "{e}. Sign it for that repository (`kiln sign {} --key cosign.key --reference {}`) and push again, or pass --no-signatures to push it unsigned",
            args.source,
            target.name()
        )
    }
    let report = pushed.with_context(|| format!("pushing {} to {target}", layout.display()))?;
    if args.json {
        super::output::json(&report);
    } else {
        print_report(
            &report,
            &layout,
            source.attachments.is_some(),
            started.elapsed(),
        );
    }
    Ok(())
}

/// A layout as given (with the entry name the reference gives), or an
/// image attribute's signed layout, or its build output. Returns whether
/// the layout is a signed one.
fn resolve_source(project: &Path, source: &str) -> anyhow::Result<(PathBuf, bool, Option<String>)> {
    use kiln_seed::imageref::{ImageRef, RefError};
    match ImageRef::parse(source) {
        Ok(ImageRef::Layout { dir, name }) => return Ok((dir, false, name)),
        Ok(ImageRef::Registry(r)) => {
            bail!("{source}: a registry reference ({r}); kiln push reads a layout or an image attribute")
        }
        Err(
            e @ (RefError::NotALayout(_) | RefError::Transport { .. } | RefError::EmptyName { .. }),
        ) => return Err(e.into()),
        Err(_) if source.contains('/') || source.contains(':') => {
            bail!("{source}: no such layout directory")
        }
        Err(_) => {}
    }
    let signed = project.join(kiln::signstore::DEFAULT_DIR).join(source);
    let built = build(project, source)?;
    if !signed.join("oci-layout").is_file() {
        eprintln!(
            "kiln: {source} is not signed ({} does not exist); pushing the image without signatures (`kiln sign {source} --key cosign.key` signs it)",
            signed.display()
        );
        return Ok((built, false, None));
    }
    let (want, have) = (root_digest(&built)?, root_digest(&signed)?);
    if want != have {
        bail!(
            "the signed layout {} holds {have}, but {source} builds to {want} now: sign it again (`kiln sign {source} --key cosign.key`), or push a layout directory explicitly",
            signed.display()
        );
    }
    Ok((signed, true, None))
}

/// The image attribute's output (built if needed, in the sandbox).
fn build(project: &Path, attr: &str) -> anyhow::Result<PathBuf> {
    let settings = nixcmd::settings().context("reading the Nix configuration")?;
    settings.check_isolated()?;
    kiln::build::check_attrs(project, &[attr.to_string()])?;
    let built = nixcmd::build(project, &[attr.to_string()], &BuildOptions::default())
        .with_context(|| format!("building {attr}"))?;
    let out = built
        .first()
        .with_context(|| format!("nix build {attr} produced no output"))?;
    Ok(PathBuf::from(out.out()))
}

/// The digest of the image index (or single manifest) a layout holds.
fn root_digest(layout: &Path) -> anyhow::Result<String> {
    let path = layout.join("index.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    v["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["mediaType"] == kiln_seed::oci::INDEX_MEDIA_TYPE)
        .or_else(|| v["manifests"].get(0))
        .and_then(|d| d["digest"].as_str())
        .map(String::from)
        .with_context(|| format!("{} lists no image", path.display()))
}

/// Whether index.json lists cosign tags or referrers.
fn layout_has_attachments(layout: &Path) -> anyhow::Result<bool> {
    let path = layout.join("index.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(v["manifests"].as_array().into_iter().flatten().any(|d| {
        d.get("artifactType").is_some()
            || d["annotations"][kiln_seed::oci::REF_NAME]
                .as_str()
                .is_some_and(|n| n.starts_with("sha256-"))
    }))
}

fn print_report(r: &PushReport, layout: &Path, with_signatures: bool, took: Duration) {
    let mb = |b: u64| b as f64 / 1_000_000.0;
    println!("pushed {} ({})", r.reference, layout.display());
    println!(
        "  blobs: {} uploaded ({:.2} MB), {} already present{}",
        r.blobs_uploaded.len(),
        mb(r.bytes_uploaded),
        r.blobs_present.len(),
        if r.blobs_mounted.is_empty() {
            String::new()
        } else {
            format!(
                ", {} mounted from another repository",
                r.blobs_mounted.len()
            )
        }
    );
    println!(
        "  manifests: {} pushed, {} already present",
        r.manifests_pushed.len(),
        r.manifests_present.len()
    );
    if with_signatures {
        let tags: Vec<&String> = r
            .tags_set
            .iter()
            .filter(|t| t.starts_with("sha256-"))
            .collect();
        let by: Vec<String> = ["api", "tag", "listed"]
            .iter()
            .map(|v| (v, r.referrers.iter().filter(|x| x.via == *v).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| {
                format!(
                    "{n} {}",
                    match *v {
                        "tag" => "added to the sha256-<hex> fallback index",
                        "listed" => "already listed",
                        _ => "indexed by the registry",
                    }
                )
            })
            .collect();
        println!(
            "  signatures and attestations: {} tags written; referrers: {}",
            tags.len(),
            if by.is_empty() {
                "none".into()
            } else {
                by.join(", ")
            }
        );
    } else {
        println!("  signatures and attestations: not pushed");
    }
    if !r.tags_merged.is_empty() {
        println!(
            "  kept the signatures already there and appended kiln's: {}",
            r.tags_merged.join(", ")
        );
    }
    if !r.tags_unchanged.is_empty() {
        println!("  unchanged tags: {}", r.tags_unchanged.join(", "));
    }
    if r.retries > 0 {
        println!("  retried {} transient failures", r.retries);
    }
    println!("  took {:.2} s", took.as_secs_f64());
}
