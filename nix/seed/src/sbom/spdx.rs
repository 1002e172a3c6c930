//! SPDX 2.3 JSON, hand-written (`spdx-rs` writes only SPDX 2.2).
//!
//! The document describes the image (a `CONTAINER` package whose checksum
//! is the manifest digest), which CONTAINS one package per installed Debian
//! package and one package for the files kiln generated; each of those
//! CONTAINS its files, with SHA1 and SHA256 checksums and a package
//! verification code (SPDX 2.3 §7.9). Package `supplier` is the Debian
//! maintainer (the entity that makes the binary package, as syft reports
//! it), `downloadLocation` is NOASSERTION: the lock holds no mirror, and the
//! .deb's sha256 identifies it wherever it is fetched from.

use super::{
    asserted, deb_purl, image_purl, license_refs, Error, Image, Maintainer, NOASSERTION, TOOL_NAME,
    TOOL_VERSION,
};
use crate::oci::rfc3339;
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};
use std::collections::BTreeMap;

pub const SPDX_VERSION: &str = "SPDX-2.3";
pub const DATA_LICENSE: &str = "CC0-1.0";
pub const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
pub const IMAGE_ID: &str = "SPDXRef-Image";
pub const GENERATED_ID: &str = "SPDXRef-Package-kiln-generated";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: String,
    pub data_license: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<Package>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    pub relationships: Vec<Relationship>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    pub download_location: String,
    pub files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_verification_code: Option<VerificationCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    pub license_concluded: String,
    pub license_declared: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_comments: Option<String>,
    pub copyright_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_date: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCode {
    pub package_verification_code_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    pub algorithm: String,
    pub checksum_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: String,
    pub reference_type: String,
    pub reference_locator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct File {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Relative to the image root (`./usr/bin/x`), as SPDX requires.
    pub file_name: String,
    pub checksums: Vec<Checksum>,
    pub license_concluded: String,
    pub copyright_text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: String,
    pub related_spdx_element: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    pub license_id: String,
    pub name: String,
    pub extracted_text: String,
}

/// The document namespace: unique per image manifest and architecture,
/// derived from them alone (no random part, no build time).
pub fn namespace(name: &str, arch: crate::spec::Arch, manifest: &crate::digest::Digest) -> String {
    format!(
        "https://kiln.dev/spdx/{name}/{}/{}",
        arch.debian(),
        manifest.hex()
    )
}

/// The SPDX 2.3 §7.9 package verification code: SHA1 over the sorted,
/// concatenated lowercase hex SHA1s of the package's files.
pub fn verification_code<'a>(sha1s: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = sha1s.into_iter().collect();
    v.sort_unstable();
    hex::encode(Sha1::digest(v.concat().as_bytes()))
}

/// An SPDX id component from a Debian package name: `[A-Za-z0-9.-]` stay,
/// anything else becomes `X` and its hex code (Debian names are lowercase,
/// so an upper-case X only ever comes from this escape).
fn id_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("X{b:02X}"));
        }
    }
    out
}

fn checksums(sha1: &str, sha256: &str) -> Vec<Checksum> {
    vec![
        Checksum {
            algorithm: "SHA1".into(),
            checksum_value: sha1.into(),
        },
        Checksum {
            algorithm: "SHA256".into(),
            checksum_value: sha256.into(),
        },
    ]
}

impl Package {
    /// A package kiln asserts nothing about but its name, what it is for
    /// and a comment (no supplier, license or copyright): the generated
    /// files, an application and its modules.
    fn unasserted(spdx_id: String, name: String, purpose: &str, comment: String) -> Package {
        Package {
            spdx_id,
            name,
            version_info: None,
            package_file_name: None,
            supplier: None,
            download_location: NOASSERTION.into(),
            files_analyzed: false,
            package_verification_code: None,
            checksums: vec![],
            homepage: None,
            source_info: None,
            license_concluded: NOASSERTION.into(),
            license_declared: NOASSERTION.into(),
            license_comments: None,
            copyright_text: NOASSERTION.into(),
            summary: None,
            comment: Some(comment),
            external_refs: vec![],
            primary_package_purpose: Some(purpose.into()),
            built_date: None,
        }
    }

    /// With `files` (their sha1s) analyzed.
    fn with_files<'a>(mut self, sha1s: impl IntoIterator<Item = &'a str>) -> Package {
        self.files_analyzed = true;
        self.package_verification_code = Some(VerificationCode {
            package_verification_code_value: verification_code(sha1s),
        });
        self
    }
}

fn rel(a: &str, kind: &str, b: &str) -> Relationship {
    Relationship {
        spdx_element_id: a.into(),
        relationship_type: kind.into(),
        related_spdx_element: b.into(),
    }
}

fn or_noassertion(s: &str) -> String {
    asserted(s).unwrap_or(NOASSERTION).to_string()
}

/// The SPDX document of `img`.
pub fn document(img: &Image) -> Result<Document, Error> {
    let created = rfc3339(img.created);
    let mut packages = Vec::new();
    let mut files = Vec::new();
    let mut relationships = vec![rel(DOCUMENT_ID, "DESCRIBES", IMAGE_ID)];
    let mut contained = Vec::new();
    // LicenseRef id -> packages whose copyright file defines it.
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();

    packages.push(Package {
        spdx_id: IMAGE_ID.into(),
        name: img.name.into(),
        version_info: Some(img.manifest.to_string()),
        package_file_name: None,
        supplier: None,
        download_location: NOASSERTION.into(),
        files_analyzed: false,
        package_verification_code: None,
        checksums: vec![Checksum {
            algorithm: "SHA256".into(),
            checksum_value: img.manifest.hex(),
        }],
        homepage: None,
        source_info: None,
        license_concluded: NOASSERTION.into(),
        license_declared: or_noassertion(img.licenses),
        license_comments: None,
        copyright_text: NOASSERTION.into(),
        summary: None,
        comment: Some(format!(
            "OCI image manifest of {}:{} for linux/{}",
            img.name,
            img.tag,
            img.arch.debian()
        )),
        external_refs: vec![purl_ref(image_purl(
            img.name,
            &img.manifest,
            img.arch,
            img.tag,
        ))],
        primary_package_purpose: Some("CONTAINER".into()),
        built_date: Some(created.clone()),
    });

    for p in &img.packages {
        let info = p.info;
        let id = format!("SPDXRef-Package-deb-{}", id_part(&info.name));
        for r in license_refs(&info.license) {
            refs.entry(r.to_string())
                .or_default()
                .push(info.name.clone());
        }
        let supplier = info
            .maintainer
            .as_deref()
            .and_then(Maintainer::parse)
            .map_or_else(|| "Organization: Debian".to_string(), |m| m.spdx_actor());
        let file_ids = add_files(
            &mut files,
            &format!("SPDXRef-File-deb-{}", id_part(&info.name)),
            &p.files,
        );
        packages.push(Package {
            spdx_id: id.clone(),
            name: info.name.clone(),
            version_info: Some(info.version.clone()),
            package_file_name: info.filename.rsplit('/').next().map(str::to_string),
            supplier: Some(supplier),
            download_location: NOASSERTION.into(),
            files_analyzed: !p.files.is_empty(),
            package_verification_code: (!p.files.is_empty()).then(|| VerificationCode {
                package_verification_code_value: verification_code(
                    p.files.iter().map(|f| f.sha1.as_str()),
                ),
            }),
            checksums: vec![Checksum {
                algorithm: "SHA256".into(),
                checksum_value: info.sha256.clone(),
            }],
            homepage: super::homepage(info).map(str::to_string),
            source_info: Some(format!(
                "built package from: {} {}",
                info.source, info.source_version
            )),
            license_concluded: NOASSERTION.into(),
            license_declared: or_noassertion(&info.license),
            license_comments: p.license_source.clone(),
            copyright_text: or_noassertion(&info.copyright_text),
            summary: info.summary.clone().filter(|s| !s.trim().is_empty()),
            comment: None,
            external_refs: vec![purl_ref(deb_purl(info, img.distro))],
            primary_package_purpose: None,
            built_date: None,
        });
        contained.push(rel(IMAGE_ID, "CONTAINS", &id));
        for f in file_ids {
            contained.push(rel(&id, "CONTAINS", &f));
        }
    }

    if !img.generated.is_empty() {
        let gen_files: Vec<super::File> = img
            .generated
            .iter()
            .map(|g| super::File {
                path: g.path.clone(),
                sha1: g.sha1.clone(),
                sha256: g.sha256.clone(),
            })
            .collect();
        let file_ids = add_files(&mut files, "SPDXRef-File-kiln", &gen_files);
        packages.push(
            Package::unasserted(
                GENERATED_ID.into(),
                "kiln-generated-files".into(),
                "OTHER",
                format!(
                    "Files {TOOL_NAME} generated in place of maintainer scripts: accounts, CA bundle, nsswitch.conf, declared paths"
                ),
            )
            .with_files(gen_files.iter().map(|f| f.sha1.as_str())),
        );
        contained.push(rel(IMAGE_ID, "CONTAINS", GENERATED_ID));
        for f in file_ids {
            contained.push(rel(GENERATED_ID, "CONTAINS", &f));
        }
    }
    for (i, app) in img.applications.iter().enumerate() {
        let app_id = format!("SPDXRef-Package-app-{i}");
        let file_ids = add_files(
            &mut files,
            &format!("SPDXRef-File-app-{i}"),
            std::slice::from_ref(&app.file),
        );
        for (j, c) in app.components().into_iter().enumerate() {
            let id = if c.main {
                app_id.clone()
            } else {
                format!("{app_id}-{j}")
            };
            let comment = if c.main {
                format!(
                    "{} built in the sandbox by {TOOL_NAME} for this image",
                    app.file.path
                )
            } else if let Some(dist) = &c.dist {
                format!("{} (sha256 {})", dist.describe(&app.file.path), dist.sha256)
            } else if let Some(sum) = &c.sum {
                format!("a module {} was built from (go.sum {sum})", app.file.path)
            } else {
                format!("a module {} was built from", app.file.path)
            };
            let purpose = if c.main { "APPLICATION" } else { "LIBRARY" };
            let mut package = Package::unasserted(id.clone(), c.name.clone(), purpose, comment);
            package.version_info = Some(c.version.clone()).filter(|v| !v.is_empty());
            package.external_refs = c.purl.clone().map(purl_ref).into_iter().collect();
            if c.main {
                package = package.with_files([app.file.sha1.as_str()]);
            }
            packages.push(package);
            if c.main {
                contained.push(rel(IMAGE_ID, "CONTAINS", &id));
                for f in &file_ids {
                    contained.push(rel(&id, "CONTAINS", f));
                }
            } else {
                contained.push(rel(&app_id, "DEPENDS_ON", &id));
            }
        }
    }
    relationships.extend(contained);

    let has_extracted_licensing_infos = refs
        .into_iter()
        .map(|(id, pkgs)| ExtractedLicense {
            name: id.trim_start_matches("LicenseRef-").to_string(),
            extracted_text: pkgs
                .iter()
                .map(|p| format!("see /usr/share/doc/{p}/copyright"))
                .collect::<Vec<_>>()
                .join("\n"),
            license_id: id,
        })
        .collect();

    Ok(Document {
        spdx_version: SPDX_VERSION.into(),
        data_license: DATA_LICENSE.into(),
        spdx_id: DOCUMENT_ID.into(),
        name: format!("{} (linux/{})", img.name, img.arch.debian()),
        document_namespace: namespace(img.name, img.arch, &img.manifest),
        creation_info: CreationInfo {
            created,
            creators: vec![format!("Tool: {TOOL_NAME}-{TOOL_VERSION}")],
        },
        packages,
        files,
        relationships,
        has_extracted_licensing_infos,
    })
}

fn purl_ref(purl: String) -> ExternalRef {
    ExternalRef {
        reference_category: "PACKAGE-MANAGER".into(),
        reference_type: "purl".into(),
        reference_locator: purl,
    }
}

fn add_files(out: &mut Vec<File>, prefix: &str, files: &[super::File]) -> Vec<String> {
    let mut ids = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let id = format!("{prefix}-{i}");
        out.push(File {
            spdx_id: id.clone(),
            file_name: format!(".{}", f.path),
            checksums: checksums(&f.sha1, &f.sha256),
            license_concluded: NOASSERTION.into(),
            copyright_text: NOASSERTION.into(),
        });
        ids.push(id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, package};
    use super::*;
    use crate::digest::Digest;
    use crate::rootfs::GeneratedFile;
    use crate::spec::Arch;

    #[test]
    fn verification_code_matches_a_known_vector() {
        // sha1 of "a", "b" and "hello\n"; the expected value is what
        // spdx-tools' calculate_package_verification_code gives for them.
        let a = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8";
        let b = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98";
        let c = "f572d396fae9206628714fb2ce00f72e94f2258f";
        assert_eq!(
            verification_code([c, b, a]),
            "2d23140fedb56aa541803c7fe940f40542bc9584"
        );
        assert_eq!(
            verification_code([a, c, b]),
            "2d23140fedb56aa541803c7fe940f40542bc9584"
        );
        // Of no files: sha1 of the empty string.
        assert_eq!(
            verification_code([]),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn id_part_escapes_plus() {
        assert_eq!(id_part("libstdc++6"), "libstdcX2BX2B6");
        assert_eq!(id_part("python3.11-minimal"), "python3.11-minimal");
    }

    #[test]
    fn document_has_image_packages_files_and_relationships() {
        let p = package(
            "libfoo+1",
            "1:2.0~rc1",
            "amd64",
            "MIT AND LicenseRef-foo",
            vec![file("/usr/lib/libfoo.so", b"elf")],
        );
        let pkgs = vec![super::super::Package::new(&p, |_| true).unwrap()];
        let generated = vec![GeneratedFile {
            path: "/etc/passwd".into(),
            size: 1,
            sha1: "a".repeat(40),
            sha256: "b".repeat(64),
        }];
        let img = Image {
            name: "x",
            tag: "latest",
            arch: Arch::Amd64,
            created: 1_783_764_997,
            manifest: Digest([1; 32]),
            licenses: "LicenseRef-foo AND MIT",
            distro: "debian-12",
            packages: pkgs,
            generated: &generated,
            applications: &[],
        };
        let doc = document(&img).unwrap();
        assert_eq!(doc.creation_info.created, "2026-07-11T10:16:37Z");
        assert_eq!(
            doc.document_namespace,
            format!("https://kiln.dev/spdx/x/amd64/{}", "01".repeat(32))
        );
        assert_eq!(doc.packages.len(), 3);
        let deb = &doc.packages[1];
        assert_eq!(deb.spdx_id, "SPDXRef-Package-deb-libfooX2B1");
        assert_eq!(
            deb.external_refs[0].reference_locator,
            "pkg:deb/debian/libfoo%2B1@1%3A2.0~rc1?arch=amd64&distro=debian-12"
        );
        assert!(deb.files_analyzed);
        assert_eq!(doc.files[0].file_name, "./usr/lib/libfoo.so");
        assert_eq!(doc.files[1].file_name, "./etc/passwd");
        assert_eq!(
            doc.has_extracted_licensing_infos[0].license_id,
            "LicenseRef-foo"
        );
        assert_eq!(
            doc.has_extracted_licensing_infos[0].extracted_text,
            "see /usr/share/doc/libfoo+1/copyright"
        );
        let kinds: Vec<_> = doc
            .relationships
            .iter()
            .map(|r| (r.spdx_element_id.as_str(), r.related_spdx_element.as_str()))
            .collect();
        assert!(kinds.contains(&(DOCUMENT_ID, IMAGE_ID)));
        assert!(kinds.contains(&(IMAGE_ID, "SPDXRef-Package-deb-libfooX2B1")));
        assert!(kinds.contains(&(
            "SPDXRef-Package-deb-libfooX2B1",
            "SPDXRef-File-deb-libfooX2B1-0"
        )));
        assert!(kinds.contains(&(GENERATED_ID, "SPDXRef-File-kiln-0")));
    }
}
