//! Every name a consumer can use leads to what was verified.
//!
//! A layout is consumed by name: `skopeo copy oci:DIR:latest-amd64`,
//! `umoci unpack --image DIR:latest`, `podman run oci:DIR:debug`. Verifying
//! the image kiln selects proves nothing about an entry of `index.json`
//! that leads elsewhere, so every entry is checked: an image name must
//! lead to the verified root or one of its platform manifests; a cosign or
//! referrers tag (`sha256-<hex>[.sig|.att|...]`) must be about one of
//! those digests and lead to an artifact that was found attached to it;
//! an entry without a name must be one of those too. A name used twice is
//! a failure whatever it leads to, since tools disagree on which one the
//! name means.

use super::report::Report;
use super::walk::{short, Image};
use crate::digest::Digest;
use crate::imageref::{attachment_name, ref_name};
use oci_spec::image::Descriptor;
use std::collections::{BTreeMap, BTreeSet};

/// Checks `entries` (a layout's `index.json`) against the verified
/// `image` and the artifact manifests found attached to its digests.
pub fn check(report: &mut Report, entries: &[Descriptor], image: &Image, artifacts: &[Digest]) {
    let mut subjects: BTreeMap<Digest, String> = BTreeMap::new();
    subjects.insert(image.root_digest, image.root_label());
    if image.is_index {
        for p in &image.platforms {
            subjects.insert(p.digest, p.label());
        }
    }
    let artifacts: BTreeSet<Digest> = artifacts.iter().copied().collect();
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in entries {
        if let Some(n) = ref_name(d) {
            seen.entry(n).or_default().push(d.digest().to_string());
        }
    }
    let mut failed = 0;
    for (name, digests) in &seen {
        if digests.len() > 1 {
            failed += 1;
            report.fail(
                "names",
                format!(
                    "index.json names {} entries {name:?} ({}): a consumer may get either (skopeo takes the first, umoci refuses)",
                    digests.len(),
                    digests.join(", ")
                ),
            );
        }
    }
    for (i, d) in entries.iter().enumerate() {
        let entry = match ref_name(d) {
            Some(n) => format!("index.json entry {n:?} ({})", d.digest()),
            None => format!("index.json entry {i} ({}, no name)", d.digest()),
        };
        let Ok(digest) = Digest::parse(d.digest().as_ref()) else {
            failed += 1;
            report.fail("names", format!("{entry}: not a sha256 digest"));
            continue;
        };
        let problem = match ref_name(d).map(|n| (n, attachment_name(n))) {
            // A cosign or referrers tag: about one of the image's digests,
            // and what was found there.
            Some((_, Some((about, suffix)))) => {
                if !subjects.contains_key(&about) {
                    Some(format!(
                        "is a tag for {}, which is not a digest of the verified image",
                        short(&about)
                    ))
                } else if !artifacts.contains(&digest) {
                    match suffix {
                        "sig" | "att" | "" => Some(format!(
                            "is not the {} artifact the verifier read for {}",
                            if suffix.is_empty() {
                                "referrers"
                            } else {
                                suffix
                            },
                            short(&about)
                        )),
                        other => {
                            report.warn(
                                "names",
                                format!("{entry}: a cosign .{other} attachment of {}; kiln does not verify .{other} attachments (it verifies attestations)", short(&about)),
                            );
                            None
                        }
                    }
                } else {
                    None
                }
            }
            // An image name, or no name: the verified root or a platform
            // manifest (no name: or an artifact attached to one).
            Some((_, None)) | None => {
                if subjects.contains_key(&digest)
                    || (ref_name(d).is_none() && artifacts.contains(&digest))
                {
                    None
                } else if artifacts.contains(&digest) {
                    Some("leads to a signature or attestation artifact, not to the image".into())
                } else {
                    Some("leads to a manifest that is neither the verified image, nor one of its platform manifests, nor a signature or attestation of them".into())
                }
            }
        };
        if let Some(p) = problem {
            failed += 1;
            report.fail("names", format!("{entry} {p}"));
        }
    }
    if failed == 0 {
        let named = seen.len();
        report.pass(
            "names",
            format!(
                "every entry of index.json ({} entries, {named} names) leads to the verified image, one of its platform manifests, or an artifact attached to them",
                entries.len()
            ),
        );
    }
}
