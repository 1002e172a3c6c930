//! The verifier behind `nix run .#verify` and `kiln verify`: checks an
//! image and everything attached to it, one report line per check.
//!
//! ```text
//! verify <layout dir | registry ref> --key cosign.pub [--key ...]
//!        [--tag TAG] [--builder-id ID] [--source CHECKOUT] [--max-age 30d]
//!        [--rebuild] [--json]
//! ```
//!
//! Checks: every blob reachable from the image verifies (digest, size,
//! diffIDs); the image index and each platform manifest carry a valid
//! cosign signature by one of the keys; every attestation's DSSE signature
//! verifies; a SLSA provenance is attached to the root and an SPDX and a
//! CycloneDX SBOM to each platform manifest; statement subjects are
//! exactly the image's digests; the provenance is kiln's, isolated, from
//! the expected builder, not expired, and its .debs are the lock's; each
//! SBOM describes its platform and lists the packages the layers hold.

use crate::attest::{PublicKey, CYCLONEDX_BOM, SLSA_PROVENANCE_V1, SPDX_DOCUMENT};
use crate::imageref::ImageRef;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod attached;
pub mod base;
pub mod checks;
pub mod layout;
pub mod names;
pub mod provenance;
pub mod rebuild;
pub mod registry;
pub mod report;
pub mod sbom;
pub mod source;
pub mod trust;
pub mod walk;

pub use report::{Report, Status};
pub use source::{Source, SourceError};
pub use trust::{KeylessFlags, Trust};

/// Opens what `reference` names ([`ImageRef`]: an OCI layout, with an
/// optional entry name, or a registry reference), with `tag` as the
/// layout entry name. Registries: plain HTTP on loopback only;
/// credentials from the usual files (REGISTRY_AUTH_FILE,
/// ~/.docker/config.json), else anonymous.
pub fn open_source(
    reference: &str,
    tag: Option<&str>,
    client: &crate::regclient::ClientOptions,
) -> Result<Box<dyn Source>, SourceError> {
    let access = |message: String| SourceError::Access {
        source_name: reference.to_string(),
        message,
    };
    let parsed = ImageRef::parse(reference)
        .map_err(|e| access(e.to_string()))?
        .with_name(tag)
        .map_err(access)?;
    match parsed {
        ImageRef::Layout { dir, name } => {
            Ok(Box::new(layout::LayoutSource::open(&dir, name.as_deref())?))
        }
        ImageRef::Registry(r) => Ok(Box::new(registry::RegistrySource::open_ref(r, client)?)),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A layout directory or a registry reference.
    pub reference: String,
    /// Selects the image in a layout holding several.
    pub tag: Option<String>,
    /// Trusted public keys (PEM files, cosign.pub).
    pub keys: Vec<PathBuf>,
    /// Keyless signatures: who the certificate must name, and the trusted
    /// root (`--certificate-identity`, ...).
    pub keyless: KeylessFlags,
    pub builder_id: Option<String>,
    /// A checkout whose kiln.lock the provenance's .debs must match (and
    /// the place `--rebuild` clones from).
    pub source: Option<PathBuf>,
    /// Maximum age of the provenance (seconds since its finishedOn).
    pub max_age: Option<i64>,
    pub rebuild: bool,
    pub json: bool,
    /// How to reach a registry (plain HTTP, credentials, retries).
    pub client: crate::regclient::ClientOptions,
    /// An application's base image (default: beside it in its registry).
    pub base: Option<String>,
    /// Keys the base is signed with (default: `keys`).
    pub base_keys: Vec<PathBuf>,
    /// Set while verifying a base: a base may not have a base itself.
    pub verifying_base: bool,
    /// The repository a registry image's signatures must name, when it is
    /// read under another name than it was signed for (a mirror, a
    /// proxy); default: the repository it is read from.
    pub signed_repository: Option<String>,
}

pub const USAGE: &str = "usage: verify <reference> (--key cosign.pub [--key FILE]... | --certificate-identity[-regexp] ID --certificate-oidc-issuer[-regexp] URL [--trusted-root FILE]) [--tag NAME] [--builder-id ID] [--source CHECKOUT] [--max-age DURATION] [--rebuild] [--base REF] [--base-key FILE]... [--signed-repository REPO] [--json] [--insecure] [--retries N]

<reference> is written as skopeo writes it: an OCI layout (oci:DIR[:NAME],
or DIR[:NAME]) or a registry image (docker://HOST/REPO[:TAG|@DIGEST], or
HOST/REPO[:TAG|@DIGEST]). A layout without a name: every entry of its
index.json must lead to the verified image, one of its platform manifests
or an artifact attached to them. With a name (or --tag NAME): what that
name leads to is verified, and nothing is assumed about the others. A
registry tag is resolved once; the report gives the reference pinned to
the digest that was verified. Registries: plain HTTP only on loopback or
with --insecure; credentials from REGISTRY_AUTH_FILE, the containers or
docker auth files; --retries tries per request on transient errors.

Checks an image built by kiln and everything attached to it: blobs,
cosign signatures over the index and each platform manifest, DSSE
attestations (SLSA provenance, SPDX and CycloneDX SBOMs), their subjects,
the provenance (isolation, builder id, age, .debs against the lock in
--source) and the SBOMs against the packages in the image. --rebuild
checks out the recorded source revision and rebuilds it in the Nix sandbox.
--max-age (e.g. 30d, 12h) fails a provenance whose build finished longer ago.
An application image (one with org.opencontainers.image.base.* annotations)
also needs its base: --base REF (default: the repository named by
base.name beside it in the same registry), verified with --base-key (default:
the same keys); its index and manifests must name that base's digests and
each platform must start with exactly the base's layers.
A registry image's cosign signatures must name the repository it is read
from (their docker-reference, as podman, CRI-O and skopeo check it with
signedIdentity matchRepository); --signed-repository REPO names another
(an image read through a mirror or a proxy).
Keyless signatures (cosign sign with Fulcio and Rekor): the certificate
must chain to a certificate authority of the trusted root (--trusted-root
FILE, a Sigstore trusted_root.json; default: the public-good instance's),
carry a valid SCT, name --certificate-identity (its SAN: a URI or e-mail)
and --certificate-oidc-issuer, and have been valid when Rekor logged the
signature; the Rekor entry (signed entry timestamp or inclusion proof with
its signed checkpoint) must verify and record that signature. The -regexp
forms match the whole value (they are anchored). --key and the keyless
flags may be given together: each signature is checked by its kind.
Exit status: 0 verified, 1 a check failed, 2 could not verify (a usage
error, a key file that cannot be read, no such layout, an unreachable
registry).";

/// Parses the command line (everything after the program name).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut reference = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--key" => o.keys.push(PathBuf::from(value("--key")?)),
            "--certificate-identity" => o.keyless.identity = Some(value("--certificate-identity")?),
            "--certificate-identity-regexp" => {
                o.keyless.identity_regexp = Some(value("--certificate-identity-regexp")?)
            }
            "--certificate-oidc-issuer" => {
                o.keyless.issuer = Some(value("--certificate-oidc-issuer")?)
            }
            "--certificate-oidc-issuer-regexp" => {
                o.keyless.issuer_regexp = Some(value("--certificate-oidc-issuer-regexp")?)
            }
            "--trusted-root" => {
                o.keyless.trusted_root = Some(PathBuf::from(value("--trusted-root")?))
            }
            "--tag" => o.tag = Some(value("--tag")?),
            "--builder-id" => o.builder_id = Some(value("--builder-id")?),
            "--source" => o.source = Some(PathBuf::from(value("--source")?)),
            "--base" => o.base = Some(value("--base")?),
            "--base-key" => o.base_keys.push(PathBuf::from(value("--base-key")?)),
            "--signed-repository" => o.signed_repository = Some(value("--signed-repository")?),
            "--max-age" => {
                let v = value("--max-age")?;
                o.max_age = Some(provenance::parse_duration(&v).ok_or_else(|| {
                    format!("--max-age {v:?}: expected e.g. 30d, 12h, 90m or seconds")
                })?);
            }
            "--rebuild" => o.rebuild = true,
            "--insecure" => o.client.insecure = true,
            "--retries" => {
                let v = value("--retries")?;
                o.client.attempts = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .ok_or_else(|| format!("--retries {v:?}: expected a number from 1 to 20"))?;
            }
            "--json" => o.json = true,
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            _ if reference.is_none() => reference = Some(a.clone()),
            _ => return Err(format!("unexpected argument {a:?} (one image at a time)")),
        }
    }
    o.reference =
        reference.ok_or("missing the layout directory or registry reference to verify")?;
    if o.keys.is_empty() && o.keyless.is_empty() {
        return Err(
            "missing --key (the public key the image must be signed with, cosign.pub), or for a keyless signature --certificate-identity and --certificate-oidc-issuer".into(),
        );
    }
    o.keyless.policy()?;
    Ok(o)
}

/// Reads the trusted keys.
pub fn load_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, String> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            PublicKey::from_pem(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// Reads the trusted keys and the keyless policy.
pub fn load_trust(keys: &[PathBuf], keyless: &KeylessFlags) -> Result<Trust, String> {
    Ok(Trust {
        keys: load_keys(keys)?,
        keyless: keyless.policy()?,
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Verifies `opts.reference` with already loaded `trust`.
pub fn verify(opts: &Options, trust: &Trust) -> Report {
    verify_image(opts, trust).0
}

/// [`verify`], also returning what was read of the image.
pub fn verify_image(opts: &Options, trust: &Trust) -> (Report, Option<walk::Image>) {
    let mut report = Report::new(opts.reference.clone());
    let source = match open_source(&opts.reference, opts.tag.as_deref(), &opts.client) {
        Ok(s) => s,
        Err(e) => {
            report.cannot_verify(layout::chain(&e));
            return (report, None);
        }
    };
    report.target = source.describe();
    report.pinned = source.pinned();
    let image = match walk::walk(source.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            report.fail("blobs", layout::chain(&e));
            return (report, None);
        }
    };
    report.digest = Some(image.root_digest.to_string());
    if image.problems.is_empty() {
        report.pass(
            "blobs",
            format!(
                "all {} blobs of the image verify (digest, size, config diffIDs)",
                image.blobs_verified
            ),
        );
    } else {
        for p in &image.problems {
            report.fail("blobs", p.clone());
        }
    }

    let root_label = image.root_label();
    let root_attached = attached::collect(source.as_ref(), &image.root_digest);
    let per_platform: Vec<attached::Attached> = if image.is_index {
        image
            .platforms
            .iter()
            .map(|p| attached::collect(source.as_ref(), &p.digest))
            .collect()
    } else {
        Vec::new()
    };
    // Nothing attached at all is an image that was never signed: the
    // user verified the wrong thing (a build output, a push without
    // signatures), which is said plainly rather than as failed checks.
    if root_attached.is_empty() && per_platform.iter().all(attached::Attached::is_empty) {
        report.cannot_verify(format!(
            "{} ({}) is not signed: no signature or attestation is attached to it or its platform manifests (no cosign .sig/.att tag, no referrer). Sign it (`kiln sign`) and verify the signed layout, or push the signed layout and verify it in the registry",
            source.describe(),
            image.root_digest
        ));
        return (report, Some(image));
    }
    let repository = opts
        .signed_repository
        .clone()
        .or_else(|| source.repository());
    checks::signatures(
        &mut report,
        &root_attached,
        &image.root_digest,
        &root_label,
        trust,
        repository.as_deref(),
    );
    for (p, a) in image.platforms.iter().zip(&per_platform) {
        checks::signatures(
            &mut report,
            a,
            &p.digest,
            &p.label(),
            trust,
            repository.as_deref(),
        );
    }

    // A layout is used by name: every name must lead to what is verified
    // here. With a name given, that name was resolved (uniquely) and is
    // what is verified; nothing is assumed about the others.
    match (source.entries(), source.name()) {
        (Some(entries), None) => {
            let artifacts: Vec<_> = std::iter::once(&root_attached)
                .chain(per_platform.iter())
                .flat_map(|a| a.manifests.iter().copied())
                .collect();
            names::check(&mut report, &entries, &image, &artifacts);
        }
        (Some(_), Some(name)) => report.info(
            "names",
            format!("verified what the name {name:?} leads to; the other entries of index.json were not checked"),
        ),
        (None, _) => {}
    }

    // The provenance is attached to the root and names every digest.
    let root_statements = checks::attestations(&mut report, &root_attached, &root_label, trust);
    let expected = image.all_digests();
    let mut recorded = None;
    for v in checks::require(
        &mut report,
        &root_statements,
        SLSA_PROVENANCE_V1,
        &root_label,
        &image.root_digest,
    ) {
        if image.is_index && image.platforms.is_empty() {
            report.fail(
                "subjects",
                format!("the subjects of the SLSA provenance on {root_label} cannot be checked: the image index could not be read"),
            );
        } else if image.is_index {
            checks::subjects(&mut report, v, &root_label, &expected);
        } else {
            checks::subject_included(&mut report, v, &root_label, &image.root_digest);
        }
        provenance::check(
            &mut report,
            v,
            &image,
            &provenance::Expectations {
                builder_id: opts.builder_id.as_deref(),
                source: opts.source.as_deref(),
                max_age: opts.max_age,
                now: now(),
            },
        );
        if recorded.is_none() {
            recorded = v.statement.slsa_provenance().ok().and_then(|p| {
                serde_json::from_value::<provenance::ExternalParameters>(
                    p.build_definition.external_parameters,
                )
                .ok()
            });
        }
    }

    // Each platform manifest carries its own SBOMs.
    for (i, p) in image.platforms.iter().enumerate() {
        let label = p.label();
        let statements = if image.is_index {
            checks::attestations(&mut report, &per_platform[i], &label, trust)
        } else {
            root_statements.clone()
        };
        let own = vec![(label.clone(), p.digest)];
        for t in [SPDX_DOCUMENT, CYCLONEDX_BOM] {
            for v in checks::require(&mut report, &statements, t, &label, &p.digest) {
                checks::subjects(&mut report, v, &label, &own);
                sbom::check(&mut report, v, p);
            }
        }
    }

    if opts.rebuild {
        match &recorded {
            Some(ext) => rebuild::rebuild(&mut report, ext, &image, opts.source.as_deref()),
            None => report.fail("rebuild", "no verified kiln provenance to rebuild from"),
        }
    }

    // An application: its base, verified and chained to it.
    if image.annotations.contains_key(crate::image::app::BASE_NAME)
        || image
            .platforms
            .iter()
            .any(|p| p.annotations.contains_key(crate::image::app::BASE_DIGEST))
    {
        let base_trust = if opts.base_keys.is_empty() {
            Ok(trust.clone())
        } else {
            load_keys(&opts.base_keys).map(|keys| Trust {
                keys,
                keyless: trust.keyless.clone(),
            })
        };
        match base_trust {
            Ok(t) => base::check(&mut report, &image, opts, &t),
            Err(e) => report.fail("base", e),
        }
    }
    (report, Some(image))
}

/// Parses, verifies, prints; the exit status says whether every check passed.
pub fn run(opts: &Options) -> (Report, ExitCode) {
    let trust = match load_trust(&opts.keys, &opts.keyless) {
        Ok(t) => t,
        Err(e) => {
            let mut r = Report::new(opts.reference.clone());
            r.cannot_verify(e);
            return (r, ExitCode::from(2));
        }
    };
    let report = verify(opts, &trust);
    let code = if report.error.is_some() {
        ExitCode::from(2)
    } else if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    (report, code)
}

/// Writes to stdout; a closed pipe (`verify ... | head`) is not an error
/// worth a panic.
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

pub fn main(args: &[String]) -> ExitCode {
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            out(&format!("{USAGE}\n"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("verify: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (report, code) = run(&opts);
    if opts.json {
        out(&format!("{}\n", report.render_json()));
    } else {
        out(&report.render_text());
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn command_line() {
        let o = parse_args(&args(&[
            "dir",
            "--key",
            "a.pub",
            "--key=b.pub",
            "--max-age",
            "2d",
            "--builder-id=https://x",
            "--rebuild",
            "--json",
        ]))
        .unwrap();
        assert_eq!(o.reference, "dir");
        assert_eq!(o.keys, vec![PathBuf::from("a.pub"), PathBuf::from("b.pub")]);
        assert_eq!(o.max_age, Some(2 * 86_400));
        assert_eq!(o.builder_id.as_deref(), Some("https://x"));
        assert!(o.rebuild && o.json);
        assert!(parse_args(&args(&["dir"])).unwrap_err().contains("--key"));
        assert!(parse_args(&args(&["--key", "k"]))
            .unwrap_err()
            .contains("missing"));
        assert!(parse_args(&args(&["a", "b", "--key", "k"]))
            .unwrap_err()
            .contains("one image"));
        assert!(parse_args(&args(&["a", "--key", "k", "--max-age", "soon"])).is_err());
        assert!(parse_args(&args(&["a", "--frobnicate"]))
            .unwrap_err()
            .contains("--frobnicate"));
    }
}
