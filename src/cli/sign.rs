//! `kiln sign`: cosign-compatible signatures and DSSE attestations for
//! built images, stored in a signed OCI layout for offline use.

use anyhow::{bail, Context};
use kiln::provenance;
use kiln::sign::{KeyFileSigner, Signer};
use kiln::signstore;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sign images and attest their provenance and SBOMs.
///
/// For each image (a flake attribute built with `kiln build`, or an image
/// layout directory) this signs the image index and every platform manifest
/// (cosign simple signing, ECDSA P-256), attests the SLSA provenance `kiln
/// build` wrote and the SPDX and CycloneDX SBOMs of each platform (DSSE),
/// and writes the image with all of it as one OCI layout: the legacy
/// `sha256-<hex>.sig` / `.att` tags cosign reads, plus OCI 1.1 referrers
/// holding Sigstore bundles. The image's digests do not change.
///
/// The key password comes from COSIGN_PASSWORD, else a prompt.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flake attributes (`scratch-plus`, `scratch-plus-arm64`) or image
    /// layout directories.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// The cosign private key (`ENCRYPTED SIGSTORE PRIVATE KEY`).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "keyless",
        conflicts_with = "keyless"
    )]
    pub key: Option<PathBuf>,
    /// Sign keyless, as `cosign sign` does without a key: an ephemeral key,
    /// a Fulcio certificate for the OIDC identity in SIGSTORE_ID_TOKEN (or
    /// GitHub Actions' token), and a Rekor entry for every signature.
    /// Verify with --certificate-identity and --certificate-oidc-issuer.
    #[arg(long)]
    pub keyless: bool,
    /// Keyless: the Fulcio instance that issues the certificate.
    #[arg(long, value_name = "URL", env = "SIGSTORE_FULCIO_URL", default_value = kiln::sigstore::PUBLIC_GOOD_FULCIO)]
    pub fulcio_url: String,
    /// Keyless: the Rekor instance that logs the signatures.
    #[arg(long, value_name = "URL", env = "SIGSTORE_REKOR_URL", default_value = kiln::sigstore::PUBLIC_GOOD_REKOR)]
    pub rekor_url: String,
    /// Keyless: the OIDC identity token (default: SIGSTORE_ID_TOKEN, else
    /// GitHub Actions' token service).
    #[arg(long, value_name = "JWT", requires = "keyless", hide_env_values = true)]
    pub identity_token: Option<String>,
    /// The provenance to attest (default: `<provenance-dir>/<attr>.intoto.json`
    /// from `kiln build`). Only with a single image.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Where `kiln build` wrote provenance (relative to the project).
    #[arg(long, value_name = "DIR", default_value = provenance::DEFAULT_DIR)]
    pub provenance_dir: PathBuf,
    /// The signed layout to write (default: `<signed-dir>/<attr>`). Only
    /// with a single image.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where signed layouts go, one directory per attribute (relative to
    /// the project).
    #[arg(long, value_name = "DIR", default_value = signstore::DEFAULT_DIR)]
    pub signed_dir: PathBuf,
    /// The repository the image will be pushed to, as
    /// REGISTRY/REPOSITORY (e.g. 127.0.0.1:5000/kiln/scratch-plus): the
    /// signatures name it, as cosign's do (simple signing's
    /// `docker-reference`). A containers policy that checks the signed
    /// identity accepts them only there, and `kiln push` refuses another
    /// destination. Default: the image name, for a layout kept offline. Only
    /// with a single image.
    #[arg(long, value_name = "REPO", value_parser = parse_repository)]
    pub reference: Option<String>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--reference`: a registry repository, without tag or digest (a
/// signature signs a digest; cosign's name the repository alone).
fn parse_repository(s: &str) -> Result<String, String> {
    let r = kiln::registry::RegistryRef::parse(s).map_err(|e| e.to_string())?;
    if r.tag.is_some() || r.digest.is_some() {
        return Err(format!(
            "{s}: name the repository alone ({}), as cosign's signatures do; the signature covers the digest, not a tag",
            r.name()
        ));
    }
    Ok(r.name())
}

/// The image layout and the provenance that describes it.
fn resolve(project: &Path, image: &str, args: &Args) -> anyhow::Result<(String, PathBuf, PathBuf)> {
    let as_dir = Path::new(image);
    if as_dir.join("oci-layout").is_file() {
        let built = provenance::BuiltImage::read(as_dir)?;
        let attr = if built.index.is_some() {
            built.full_name()
        } else {
            format!(
                "{}-{}",
                built.full_name(),
                built
                    .manifests
                    .keys()
                    .next()
                    .map(String::as_str)
                    .unwrap_or("")
            )
        };
        let prov = args
            .provenance
            .clone()
            .unwrap_or_else(|| provenance::path_for(&project.join(&args.provenance_dir), &attr));
        return Ok((attr, as_dir.to_path_buf(), prov));
    }
    let prov = args
        .provenance
        .clone()
        .unwrap_or_else(|| provenance::path_for(&project.join(&args.provenance_dir), image));
    if !prov.is_file() {
        // Only an image of the project can be built; anything else is a
        // path that is not a layout, or a typo (named as build names it).
        if Path::new(image).exists() {
            bail!("{image} is not an OCI image layout (it has no oci-layout file)");
        }
        if image.contains('/') {
            bail!("{image} does not exist");
        }
        kiln::build::check_attrs(project, &[image.to_string()])?;
        bail!(
            "{image} is not an image layout, and there is no provenance at {}: run `kiln build {image}` first",
            prov.display()
        );
    }
    let st = provenance::read(&prov)?;
    let layout = provenance::recorded_output(&st)
        .with_context(|| format!("{} records no output path", prov.display()))?;
    // The provenance is that of the last build that passed; sign only if it
    // is still what the image builds to (a denied or failed build since, or
    // a changed definition or lock, leaves it describing an older image).
    if args.provenance.is_none() {
        // A build with --allow-unsandboxed evaluates other derivations.
        let unsandboxed = st.predicate["buildDefinition"]["internalParameters"]["isolated"]
            == serde_json::Value::Bool(false);
        let opts = kiln::nixcmd::BuildOptions {
            allow_unsandboxed: unsandboxed,
            ..Default::default()
        };
        let now = kiln::nixcmd::out_path(project, image, &opts)
            .with_context(|| format!("evaluating what {image} builds to"))?;
        if Path::new(&now) != layout {
            bail!(
                "{} describes {}, but {image} now builds to {now} (a build since was denied or failed, or its definition or lock changed): run `kiln build {image}`, then sign",
                prov.display(),
                layout.display()
            );
        }
    }
    if !layout.join("oci-layout").is_file() {
        bail!(
            "{} (the output {} records) is gone; run `kiln build {image}` again",
            layout.display(),
            prov.display()
        );
    }
    Ok((image.to_string(), layout, prov))
}

/// One signed image, for `--json`.
#[derive(serde::Serialize)]
struct SignReport {
    image: String,
    provenance: PathBuf,
    written: signstore::Written,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<()> {
    if args.images.len() > 1
        && (args.out.is_some() || args.provenance.is_some() || args.reference.is_some())
    {
        bail!("--out, --provenance and --reference name one image's files and repository; sign one image at a time with them");
    }
    // What is to be signed is found first: a wrong name or a stale build is
    // said before a password is asked for.
    let resolved = args
        .images
        .iter()
        .map(|image| resolve(project, image, &args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signer: Box<dyn Signer> = match &args.key {
        Some(key) => {
            let password = kiln::keys::read_password(false)?;
            Box::new(
                KeyFileSigner::from_file(key, password.as_bytes())
                    .with_context(|| format!("loading the signing key {}", key.display()))?,
            )
        }
        None => {
            let signer = kiln::sigstore::KeylessSigner::new(&kiln::sigstore::KeylessOptions {
                fulcio_url: args.fulcio_url.clone(),
                rekor_url: args.rekor_url.clone(),
                identity_token: args.identity_token.clone(),
            })?;
            let (identity, issuer) = signer.signer();
            eprintln!("signing keyless as {identity} (issuer {issuer})");
            Box::new(signer)
        }
    };
    let mut written = Vec::new();
    for (attr, layout, prov) in resolved {
        let t = Instant::now();
        let statement = provenance::read(&prov)?;
        let reference = args.reference.clone().unwrap_or_else(|| {
            provenance::BuiltImage::read(&layout)
                .map(|b| b.name)
                .unwrap_or_else(|_| attr.clone())
        });
        let signed = signstore::sign(signer.as_ref(), &layout, &statement, &reference)
            .with_context(|| format!("signing {attr}"))?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| project.join(&args.signed_dir).join(&attr));
        let w = signstore::write(&signed, &out)
            .with_context(|| format!("writing {}", out.display()))?;
        if !args.json {
            println!(
                "{attr} {} {} ({} signatures, {} attestations, {} referrers, {:.2}s)",
                w.root,
                w.layout.display(),
                w.signatures,
                w.attestations,
                w.referrers,
                t.elapsed().as_secs_f64()
            );
        }
        written.push(SignReport {
            image: attr,
            provenance: prov,
            written: w,
        });
    }
    if args.json {
        super::output::json(&written);
    }
    Ok(())
}
