//! An application image's base: the image its `base.name`/`base.digest`
//! annotations name is verified like any image (signature, attestations,
//! SBOMs), with the base's keys or the same ones, and chained to the
//! application: the index names the base's index, each platform manifest
//! names the base's manifest for its platform and starts with exactly
//! that manifest's layers. A swapped, unsigned or unreadable base fails,
//! named.

use super::walk::Image;
use super::{Options, Report};
use crate::image::app::{BASE_DIGEST, BASE_NAME};
use crate::imageref::ImageRef;

/// Where the base of the image at `reference` is, when `--base` does not
/// say: the image named by `base.name` beside the application, where kiln
/// puts it. In a registry, the repository beside the application's
/// (`HOST/ns/app` → `HOST/ns/<base repository>@<digest>`, as `kiln push`
/// names them); for a layout, the layout directory beside it named like
/// the base (`kiln sign` keeps one per image side by side).
pub fn locate(reference: &str, base_name: &str, digest: &str) -> Option<String> {
    let repo = base_name.split(':').next().unwrap_or(base_name);
    let r = match ImageRef::parse(reference).ok()? {
        ImageRef::Registry(r) => r,
        ImageRef::Layout { dir, .. } => {
            let sibling = dir.parent()?.join(repo);
            return sibling.is_dir().then(|| sibling.display().to_string());
        }
    };
    let sibling = match r.repository.rsplit_once('/') {
        Some((ns, _)) => format!("{ns}/{repo}"),
        None => repo.to_string(),
    };
    Some(format!("{}/{sibling}@{digest}", r.registry))
}

/// Checks the base of `image`, if it names one. `keys` are the base's
/// trusted keys (`--base-key`, else the application's).
pub fn check(report: &mut Report, image: &Image, opts: &Options, trust: &super::Trust) {
    let named = image
        .annotations
        .get(BASE_NAME)
        .zip(image.annotations.get(BASE_DIGEST));
    let platforms_name_one = image
        .platforms
        .iter()
        .any(|p| p.annotations.contains_key(BASE_DIGEST));
    let Some((name, digest)) = named else {
        if platforms_name_one {
            report.fail(
                "base",
                format!("the platform manifests name a base ({BASE_DIGEST}) but the root does not"),
            );
        }
        return;
    };
    if opts.verifying_base {
        report.fail(
            "base",
            format!("this base is itself built on {name} ({digest}); kiln builds applications on base images only"),
        );
        return;
    }
    let Some(reference) = opts
        .base
        .clone()
        .or_else(|| locate(&opts.reference, name, digest))
    else {
        report.fail(
            "base",
            format!("built on {name} ({digest}), which was not verified: pass --base <layout or registry image>"),
        );
        return;
    };
    let base_opts = Options {
        reference: reference.clone(),
        tag: None,
        rebuild: false,
        base: None,
        verifying_base: true,
        signed_repository: None,
        ..opts.clone()
    };
    let (sub, base_image) = super::verify_image(&base_opts, trust);
    if let Some(e) = &sub.error {
        report.fail(
            "base",
            format!("{name} at {reference} could not be verified: {e}"),
        );
        return;
    }
    let failed: Vec<String> = sub
        .checks
        .iter()
        .filter(|c| c.status == super::Status::Fail)
        .map(|c| format!("{}: {}", c.check, c.message))
        .collect();
    if !failed.is_empty() {
        report.fail(
            "base",
            format!(
                "{name} at {reference} does not verify: {}",
                failed.join("; ")
            ),
        );
        return;
    }
    let Some(base) = base_image else {
        report.fail("base", format!("{name} at {reference}: nothing was read"));
        return;
    };
    if base.root_digest.to_string() != *digest {
        report.fail(
            "base",
            format!(
                "the image names {name} {digest}, but {reference} is {}: not its base",
                base.root_digest
            ),
        );
        return;
    }
    report.pass(
        "base",
        format!(
            "{name} {digest} at {reference}: {} checks passed (signatures, attestations, SBOMs)",
            sub.checks.len()
        ),
    );
    for p in &image.platforms {
        let Some(bp) = base.platforms.iter().find(|b| b.arch == p.arch) else {
            report.fail(
                "layers",
                format!("{}: {name} has no {} manifest", p.label(), p.arch),
            );
            continue;
        };
        let claimed = p.annotations.get(BASE_DIGEST).cloned().unwrap_or_default();
        if claimed != bp.digest.to_string() {
            report.fail(
                "layers",
                format!(
                    "{} names base manifest {claimed:?}, but {name}'s {} manifest is {}",
                    p.label(),
                    p.arch,
                    bp.digest
                ),
            );
            continue;
        }
        let prefix = p.layers.len() >= bp.layers.len()
            && p.layers
                .iter()
                .zip(&bp.layers)
                .all(|(a, b)| a.digest() == b.digest() && a.size() == b.size());
        if prefix && !bp.layers.is_empty() {
            report.pass(
                "layers",
                format!(
                    "{}: its first {} layers are {name}'s {} manifest's, then {} of its own",
                    p.label(),
                    bp.layers.len(),
                    p.arch,
                    p.layers.len() - bp.layers.len()
                ),
            );
        } else {
            report.fail(
                "layers",
                format!(
                    "{}: its first layers are not those of {name}'s {} manifest {}",
                    p.label(),
                    p.arch,
                    bp.digest
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_base_is_the_sibling_repository_and_a_layout_has_none() {
        assert_eq!(
            locate(
                "127.0.0.1:5000/kiln/hello-go:latest",
                "scratch-plus:latest",
                "sha256:ab"
            )
            .as_deref(),
            Some("127.0.0.1:5000/kiln/scratch-plus@sha256:ab")
        );
        assert_eq!(
            locate(
                &format!("docker://127.0.0.1:5000/hello-go@sha256:{}", "c".repeat(64)),
                "scratch-plus:latest",
                "sha256:ab"
            )
            .as_deref(),
            Some("127.0.0.1:5000/scratch-plus@sha256:ab")
        );
        let dir = crate::oci::tests::scratch("verify-base-locate");
        std::fs::create_dir_all(dir.join("hello-go")).unwrap();
        std::fs::write(dir.join("hello-go/oci-layout"), "{}").unwrap();
        let app = dir.join("hello-go").display().to_string();
        assert_eq!(locate(&app, "scratch-plus:latest", "sha256:ab"), None);
        std::fs::create_dir_all(dir.join("scratch-plus")).unwrap();
        assert_eq!(
            locate(&app, "scratch-plus:latest", "sha256:ab"),
            Some(dir.join("scratch-plus").display().to_string())
        );
    }
}
