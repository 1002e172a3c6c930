//! SBOM checks: an SBOM attestation must describe the platform manifest it
//! is attached to (its digest and architecture), and list exactly the
//! Debian packages the image's layers record in `/var/lib/dpkg/status.d`.

use super::checks::{predicate_name, VerifiedStatement};
use super::report::Report;
use super::walk::{DebPackage, Platform};
use crate::attest::{CYCLONEDX_BOM, SPDX_DOCUMENT};
use serde_json::Value;
use std::collections::BTreeSet;

/// What an SBOM says about the image it describes and its packages.
#[derive(Debug, Default, PartialEq)]
pub struct Described {
    /// `arch` qualifier of the image's `pkg:oci` purl.
    pub arch: Option<String>,
    /// sha256 hex of the image manifest the SBOM names.
    pub manifest: Option<String>,
    pub packages: BTreeSet<DebPackage>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn qualifier(purl: &str, key: &str) -> Option<String> {
    let (_, q) = purl.split_once('?')?;
    q.split('#')
        .next()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(percent_decode)
}

/// (name, version, arch) of a `pkg:deb/debian/<name>@<version>?arch=...` purl.
pub fn parse_deb_purl(purl: &str) -> Option<DebPackage> {
    let rest = purl.strip_prefix("pkg:deb/")?;
    let path = rest.split(['?', '#']).next()?;
    let (_namespace, nv) = path.split_once('/')?;
    let (name, version) = nv.split_once('@')?;
    Some(DebPackage {
        name: percent_decode(name),
        version: percent_decode(version),
        architecture: qualifier(purl, "arch")?,
    })
}

/// Reads an SPDX 2.3 document (the predicate of an SPDX attestation).
pub fn spdx(doc: &Value) -> Described {
    let mut d = Described::default();
    for p in doc["packages"].as_array().into_iter().flatten() {
        let purls = p["externalRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["referenceType"] == "purl")
            .filter_map(|r| r["referenceLocator"].as_str());
        for purl in purls {
            if let Some(pkg) = parse_deb_purl(purl) {
                d.packages.insert(pkg);
            } else if purl.starts_with("pkg:oci/") && p["primaryPackagePurpose"] == "CONTAINER" {
                d.arch = qualifier(purl, "arch");
                d.manifest = p["checksums"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["algorithm"] == "SHA256")
                    .and_then(|c| c["checksumValue"].as_str())
                    .map(String::from);
            }
        }
    }
    d
}

/// Reads a CycloneDX 1.x BOM (the predicate of a CycloneDX attestation).
pub fn cyclonedx(bom: &Value) -> Described {
    let mut d = Described::default();
    let image = &bom["metadata"]["component"];
    if let Some(purl) = image["purl"].as_str().filter(|p| p.starts_with("pkg:oci/")) {
        d.arch = qualifier(purl, "arch");
        d.manifest = image["hashes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["alg"] == "SHA-256")
            .and_then(|h| h["content"].as_str())
            .map(String::from);
    }
    fn walk(components: &Value, d: &mut Described) {
        for c in components.as_array().into_iter().flatten() {
            if let Some(pkg) = c["purl"].as_str().and_then(parse_deb_purl) {
                d.packages.insert(pkg);
            }
            walk(&c["components"], d);
        }
    }
    walk(&bom["components"], &mut d);
    d
}

fn list(ps: &BTreeSet<DebPackage>) -> String {
    if ps.is_empty() {
        return "none".into();
    }
    ps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one SBOM attestation against the platform it is attached to.
pub fn check(report: &mut Report, v: &VerifiedStatement, platform: &Platform) {
    let kind = predicate_name(&v.statement.predicate_type);
    let described = match v.statement.predicate_type.as_str() {
        SPDX_DOCUMENT => spdx(&v.statement.predicate),
        CYCLONEDX_BOM => cyclonedx(&v.statement.predicate),
        _ => return,
    };
    let what = platform.label();
    match (&described.arch, &described.manifest) {
        (Some(arch), Some(m)) if *arch == platform.arch && *m == platform.digest.hex() => {
            report.pass("sbom", format!("{kind} describes the {what}"))
        }
        (Some(arch), m) if *arch != platform.arch => report.fail(
            "sbom",
            format!(
                "{kind} attached to the {what} describes an {arch} image (manifest sha256:{}), not {}",
                m.as_deref().unwrap_or("?"),
                platform.arch
            ),
        ),
        (_, Some(m)) if *m != platform.digest.hex() => report.fail(
            "sbom",
            format!("{kind} attached to the {what} describes manifest sha256:{m}"),
        ),
        _ => report.fail(
            "sbom",
            format!("{kind} attached to the {what} does not name the image it describes (no pkg:oci purl with arch and SHA-256)"),
        ),
    }
    let Some(installed) = &platform.packages else {
        report.fail(
            "sbom",
            format!("{kind} of the {what}: the image's layers could not be read, so its packages cannot be compared"),
        );
        return;
    };
    let installed: BTreeSet<DebPackage> = installed.iter().cloned().collect();
    let extra: BTreeSet<DebPackage> = described.packages.difference(&installed).cloned().collect();
    let missing: BTreeSet<DebPackage> =
        installed.difference(&described.packages).cloned().collect();
    if extra.is_empty() && missing.is_empty() {
        report.pass(
            "sbom",
            format!(
                "{kind} of the {} image lists exactly the {} package(s) in its /var/lib/dpkg/status.d{}",
                platform.arch,
                installed.len(),
                if installed.len() <= 8 {
                    format!(": {}", list(&installed))
                } else {
                    String::new()
                }
            ),
        );
    } else {
        report.fail(
            "sbom",
            format!(
                "{kind} of the {what} does not match the image's /var/lib/dpkg/status.d: listed but not installed: {}; installed but not listed: {}",
                list(&extra),
                list(&missing)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deb_purls_parse_with_percent_encoding() {
        assert_eq!(
            parse_deb_purl(
                "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64&distro=debian-12"
            ),
            Some(DebPackage {
                name: "libstdc++6".into(),
                version: "1:12.2.0-14".into(),
                architecture: "amd64".into()
            })
        );
        assert_eq!(parse_deb_purl("pkg:oci/x@sha256%3Aab?arch=amd64"), None);
        assert_eq!(parse_deb_purl("pkg:deb/debian/x@1"), None);
    }

    #[test]
    fn spdx_and_cyclonedx_are_read() {
        let hex = "ab".repeat(32);
        let spdx_doc = json!({"packages": [
            {"primaryPackagePurpose": "CONTAINER", "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
             "externalRefs": [{"referenceType": "purl", "referenceLocator": format!("pkg:oci/x@sha256%3A{hex}?arch=arm64&tag=latest")}]},
            {"externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u1?arch=all&distro=debian-12"}]},
        ]});
        let d = spdx(&spdx_doc);
        assert_eq!(d.arch.as_deref(), Some("arm64"));
        assert_eq!(d.manifest.as_deref(), Some(hex.as_str()));
        assert_eq!(d.packages.iter().next().unwrap().version, "2025b-0+deb12u1");
        let bom = json!({"metadata": {"component": {"purl": format!("pkg:oci/x@sha256%3A{hex}?arch=amd64&tag=latest"),
            "hashes": [{"alg": "SHA-256", "content": hex}]}},
            "components": [{"purl": "pkg:deb/debian/a@1?arch=amd64&distro=debian-12"}, {"name": "/etc/passwd"}]});
        let d = cyclonedx(&bom);
        assert_eq!(d.arch.as_deref(), Some("amd64"));
        assert_eq!(d.packages.len(), 1);
    }
}
