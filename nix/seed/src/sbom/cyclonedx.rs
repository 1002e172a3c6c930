//! CycloneDX 1.6 JSON, hand-written (`cyclonedx-bom` 0.8 stops at 1.5 and
//! puts a random serial number in by default).
//!
//! `metadata.component` is the image (a `container` whose version is the
//! manifest digest); `components` are the installed Debian packages
//! (`library`, `bom-ref` = purl) and the files kiln generated (`file`);
//! `dependencies` says the image depends on every package.
//!
//! Licenses are written as SPDX expressions even when they are a single
//! identifier: the 1.6 schema pins `license.id` to the SPDX list it was
//! published with, so a newer identifier would make the BOM invalid, while
//! an expression is accepted by the schema and by every consumer.

use super::{asserted, deb_purl, image_purl, Image, TOOL_NAME, TOOL_VERSION};
use crate::digest::Digest;
use crate::oci::rfc3339;
use crate::spec::Arch;
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

pub const SPEC_VERSION: &str = "1.6";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: String,
    pub spec_version: String,
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<OrganizationalEntity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyright: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrganizationalEntity {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hash {
    pub alg: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LicenseChoice {
    pub expression: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExternalReference {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    pub depends_on: Vec<String>,
}

/// RFC 4122 namespace for URLs (`6ba7b811-9dad-11d1-80b4-00c04fd430c8`).
const NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// A name-based (version 5, SHA-1) UUID, as RFC 4122 §4.3 defines it.
pub fn uuid_v5(namespace: &[u8; 16], name: &str) -> String {
    let mut h = Sha1::new();
    h.update(namespace);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// The BOM's serial number: a UUIDv5 of a URL naming the image manifest and
/// architecture, so the same image always gets the same serial number and
/// different images different ones.
pub fn serial_number(name: &str, arch: Arch, manifest: &Digest) -> String {
    let url = format!(
        "https://kiln.dev/cyclonedx/{name}/{}/{}",
        arch.debian(),
        manifest.hex()
    );
    format!("urn:uuid:{}", uuid_v5(&NAMESPACE_URL, &url))
}

fn property(name: &str, value: &str) -> Property {
    Property {
        name: name.into(),
        value: value.into(),
    }
}

fn licenses(expr: &str) -> Vec<LicenseChoice> {
    asserted(expr)
        .map(|e| {
            vec![LicenseChoice {
                expression: e.to_string(),
            }]
        })
        .unwrap_or_default()
}

/// The CycloneDX BOM of `img`.
pub fn bom(img: &Image) -> Bom {
    let image_ref = image_purl(img.name, &img.manifest, img.arch, img.tag);
    let image = Component {
        kind: "container".into(),
        bom_ref: Some(image_ref.clone()),
        name: img.name.into(),
        version: Some(img.manifest.to_string()),
        description: Some(format!(
            "OCI image manifest of {}:{} for linux/{}",
            img.name,
            img.tag,
            img.arch.debian()
        )),
        hashes: vec![Hash {
            alg: "SHA-256".into(),
            content: img.manifest.hex(),
        }],
        licenses: licenses(img.licenses),
        purl: Some(image_ref.clone()),
        ..Default::default()
    };
    let tool = Component {
        kind: "application".into(),
        name: TOOL_NAME.into(),
        version: Some(TOOL_VERSION.into()),
        ..Default::default()
    };

    let mut components = Vec::new();
    let mut depends_on = Vec::new();
    for p in &img.packages {
        let info = p.info;
        let purl = deb_purl(info, img.distro);
        let mut properties = vec![
            property("kiln:deb:architecture", &info.architecture),
            property("kiln:deb:source", &info.source),
            property("kiln:deb:sourceVersion", &info.source_version),
            property("kiln:deb:suite", &info.suite),
        ];
        if let Some(size) = info.installed_size {
            properties.push(property("kiln:deb:installedSize", &size.to_string()));
        }
        components.push(Component {
            kind: "library".into(),
            bom_ref: Some(purl.clone()),
            supplier: Some(OrganizationalEntity {
                name: "Debian".into(),
                url: vec!["https://www.debian.org/".into()],
            }),
            publisher: info.maintainer.clone().filter(|m| !m.trim().is_empty()),
            name: info.name.clone(),
            version: Some(info.version.clone()),
            description: info.summary.clone().filter(|s| !s.trim().is_empty()),
            hashes: vec![Hash {
                alg: "SHA-256".into(),
                content: info.sha256.clone(),
            }],
            licenses: licenses(&info.license),
            copyright: asserted(&info.copyright_text).map(str::to_string),
            purl: Some(purl.clone()),
            external_references: super::homepage(info)
                .map(|h| {
                    vec![ExternalReference {
                        kind: "website".into(),
                        url: h.into(),
                    }]
                })
                .unwrap_or_default(),
            properties,
        });
        depends_on.push(purl);
    }
    for g in img.generated {
        components.push(Component {
            kind: "file".into(),
            bom_ref: Some(format!("kiln:generated:{}", g.path)),
            name: g.path.clone(),
            description: Some(format!("generated by {TOOL_NAME} in place of a maintainer script or declared in the image definition")),
            hashes: vec![Hash { alg: "SHA-1".into(), content: g.sha1.clone() }, Hash { alg: "SHA-256".into(), content: g.sha256.clone() }],
            ..Default::default()
        });
    }
    for app in img.applications {
        for c in app.components() {
            let reference = c
                .purl
                .clone()
                .unwrap_or_else(|| format!("kiln:app:{}", app.file.path));
            components.push(Component {
                kind: if c.main { "application" } else { "library" }.into(),
                bom_ref: Some(reference.clone()),
                name: c.name.clone(),
                version: Some(c.version.clone()).filter(|v| !v.is_empty()),
                description: Some(if c.main {
                    format!(
                        "{} built in the sandbox by {TOOL_NAME} for this image",
                        app.file.path
                    )
                } else if let Some(dist) = &c.dist {
                    dist.describe(&app.file.path)
                } else {
                    format!("a module {} was built from", app.file.path)
                }),
                hashes: if let Some(dist) = c.dist.as_ref().filter(|_| !c.main) {
                    vec![Hash {
                        alg: "SHA-256".into(),
                        content: dist.sha256.clone(),
                    }]
                } else if c.main {
                    vec![
                        Hash {
                            alg: "SHA-1".into(),
                            content: app.file.sha1.clone(),
                        },
                        Hash {
                            alg: "SHA-256".into(),
                            content: app.file.sha256.clone(),
                        },
                    ]
                } else {
                    vec![]
                },
                purl: c.purl.clone(),
                ..Default::default()
            });
            depends_on.push(reference);
        }
    }
    depends_on.sort();

    Bom {
        bom_format: "CycloneDX".into(),
        spec_version: SPEC_VERSION.into(),
        serial_number: serial_number(img.name, img.arch, &img.manifest),
        version: 1,
        metadata: Metadata {
            timestamp: rfc3339(img.created),
            tools: Tools {
                components: vec![tool],
            },
            component: image,
        },
        components,
        dependencies: vec![Dependency {
            reference: image_ref,
            depends_on,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, package};
    use super::*;

    #[test]
    fn serial_number_is_a_deterministic_uuid_v5() {
        // Python: uuid.uuid5(uuid.NAMESPACE_URL, "https://kiln.dev/cyclonedx/x/amd64/" + "01" * 32)
        let d = Digest([1; 32]);
        assert_eq!(
            serial_number("x", Arch::Amd64, &d),
            "urn:uuid:ed2f3bf0-4f10-5748-90d5-df19346c2e17"
        );
        assert_eq!(
            serial_number("x", Arch::Amd64, &d),
            serial_number("x", Arch::Amd64, &d)
        );
        assert_ne!(
            serial_number("x", Arch::Arm64, &d),
            serial_number("x", Arch::Amd64, &d)
        );
    }

    #[test]
    fn components_have_purls_hashes_and_licenses() {
        let a = package(
            "libc6",
            "2.36-9+deb12u10",
            "amd64",
            "LGPL-2.1-or-later",
            vec![file("/lib/x", b"x")],
        );
        let b = package("tzdata", "2025b-0+deb12u1", "all", "NOASSERTION", vec![]);
        let pkgs = vec![
            super::super::Package::new(&a, |_| true).unwrap(),
            super::super::Package::new(&b, |_| true).unwrap(),
        ];
        let img = Image {
            name: "base",
            tag: "latest",
            arch: Arch::Amd64,
            created: 0,
            manifest: Digest([2; 32]),
            licenses: "LGPL-2.1-or-later",
            distro: "debian-12",
            packages: pkgs,
            generated: &[],
            applications: &[],
        };
        let bom = bom(&img);
        assert_eq!(
            bom.components[0].purl.as_deref(),
            Some("pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12")
        );
        assert_eq!(
            bom.components[0].licenses,
            vec![LicenseChoice {
                expression: "LGPL-2.1-or-later".into()
            }]
        );
        assert!(
            bom.components[1].licenses.is_empty(),
            "NOASSERTION is left out"
        );
        assert_eq!(bom.dependencies[0].depends_on.len(), 2);
        assert_eq!(bom.metadata.timestamp, "1970-01-01T00:00:00Z");
        assert_eq!(bom.metadata.component.kind, "container");
        let v = serde_json::to_value(&bom).unwrap();
        assert_eq!(v["bomFormat"], "CycloneDX");
        assert_eq!(v["specVersion"], "1.6");
        assert!(v["components"][0]["bom-ref"].is_string());
    }
}
