//! `kiln build`: the control plane's build. Checks the sandbox, runs the
//! hermetic Nix build, reports what it produced and writes its SLSA
//! provenance (docs/provenance.md).

use anyhow::{bail, Context};
use kiln::nixcmd::{self, BuildOptions};
use kiln::provenance;
use kiln::seedbuild::Pin;
use std::path::{Path, PathBuf};

/// Build images hermetically in the Nix sandbox (`nix build .#<image>`).
///
/// Refuses to run when the Nix sandbox is off (or would silently fall back),
/// unless --allow-unsandboxed is given; then the build log says so loudly.
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
    /// Build even though the Nix sandbox is off. The result is not hermetic.
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
}

/// One built attribute, for `--json`.
#[derive(serde::Serialize)]
struct Built {
    image: String,
    /// The image's root digest (none for a non-image attribute).
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    out: String,
    drv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provenance: Option<PathBuf>,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let settings = nixcmd::settings().context("reading the Nix configuration")?;
    if let Err(e) = settings.check_isolated() {
        if !args.allow_unsandboxed {
            return Err(e.into());
        }
        eprintln!("kiln: WARNING: building WITHOUT the Nix sandbox ({e}). The result is not hermetic; do not publish it.");
    }
    let pin = Pin::installed(project)?;
    precheck(project, &args.images)?;
    let started = std::time::SystemTime::now();
    let built = nixcmd::build(
        project,
        &args.images,
        &BuildOptions {
            out_link: args.out_link.clone(),
            rebuild: args.rebuild,
            allow_unsandboxed: args.allow_unsandboxed,
            ..Default::default()
        },
    )?;
    let finished = std::time::SystemTime::now();
    let provenance_dir = project.join(&args.provenance_dir);
    let invocation_id = provenance::invocation_id(&|k| std::env::var(k).ok());
    let mut report = Vec::new();
    for b in &built {
        if !Path::new(b.out()).join("image.json").is_file() {
            // Not an image (e.g. the seed or the verifier): nothing to attest.
            report.push(Built {
                image: b.attr.clone(),
                digest: None,
                out: b.out().to_string(),
                drv: b.drv_path.clone(),
                provenance: None,
            });
            if !args.json {
                println!("{} {}", b.attr, b.out());
            }
            continue;
        }
        // The policy gate: deny fails the build unless the user opts out,
        // and the opt-out goes into the provenance.
        let verdict =
            kiln::policy::evaluate_image(project, &b.attr, Path::new(b.out()), &args.policies)
                .with_context(|| format!("evaluating the policies on {}", b.attr))?;
        eprint!("{}", verdict.render());
        if verdict.denied() > 0 && !args.skip_policy {
            eprintln!(
                "kiln: {}: {} policy violation(s) denied; fix the definition, or pass --skip-policy to build anyway (recorded in the provenance)",
                b.attr,
                verdict.denied()
            );
            return Ok(super::Outcome::ChecksFailed);
        }
        let policy = provenance::PolicyRecord {
            enforced: !args.skip_policy,
            extra_policies: args
                .policies
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            outcome: serde_json::json!({
                "denied": verdict.denied(),
                "warnings": verdict.warned(),
                "rules": verdict.rules.keys().collect::<Vec<_>>(),
            }),
        };
        let statement = provenance::generate(&provenance::BuildRecord {
            project,
            built: b,
            settings: &settings,
            pin: &pin,
            started,
            finished,
            invocation_id: &invocation_id,
            policy: Some(&policy),
        })
        .with_context(|| format!("writing the provenance of {}", b.attr))?;
        let prov_path = provenance::path_for(&provenance_dir, &b.attr);
        provenance::write(&prov_path, &statement)?;
        let digest = provenance::BuiltImage::read(Path::new(b.out()))
            .ok()
            .and_then(|i| i.root())
            .map_or_else(|| "?".to_string(), |d| d.to_string());
        if !args.json {
            println!("{} {} {}", b.attr, digest, b.out());
            eprintln!("kiln: provenance: {}", prov_path.display());
        }
        report.push(Built {
            image: b.attr.clone(),
            digest: Some(digest),
            out: b.out().to_string(),
            drv: b.drv_path.clone(),
            provenance: Some(prov_path),
        });
    }
    if args.json {
        super::output::json(&report);
    }
    Ok(super::Outcome::Ok)
}

/// What would otherwise surface as a Nix evaluation or fetch error, said
/// the kiln way first: a definition error with its file, line and key, a
/// stale lock naming the image, or the .debs `kiln fetch` has not added.
fn precheck(project: &Path, attrs: &[String]) -> anyhow::Result<()> {
    let images_dir = project.join("images");
    if !images_dir.is_dir() {
        return Ok(());
    }
    let mut specs = Vec::new();
    for loaded in kiln::definition::load_all(&images_dir)? {
        specs.extend(
            loaded
                .definition
                .images()
                .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.path.display()))?,
        );
    }
    // `<image>[-<variant>]` or `<image>[-<variant>]-<arch>`; other attributes
    // (the seed, the verifier) have nothing to check.
    let wanted: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            let full = s.full_name();
            attrs
                .iter()
                .any(|a| *a == full || s.archs.iter().any(|arch| *a == format!("{full}-{arch}")))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let lock_path = kiln::lock::Lock::path_in(project);
    let lock = kiln::lock::Lock::read(&lock_path)?;
    lock.check_images(&wanted, false, &lock_path)?;
    let names: Vec<String> = wanted.iter().map(|s| s.full_name()).collect();
    let items = kiln::fetch::items(lock.select(Some(&names), None)?);
    let paths: Vec<String> = items.iter().map(|i| i.store_path.clone()).collect();
    let missing = kiln::fetch::invalid_paths(&paths)?;
    if !missing.is_empty() {
        let named: Vec<String> = items
            .iter()
            .filter(|i| missing.contains(&i.store_path))
            .take(5)
            .map(|i| format!("{} {}", i.name, i.package.version))
            .collect();
        bail!(
            "{} pinned .deb(s) are not in the Nix store ({}{}); run `kiln fetch`",
            missing.len(),
            named.join(", "),
            if missing.len() > named.len() {
                ", ..."
            } else {
                ""
            }
        );
    }
    Ok(())
}
