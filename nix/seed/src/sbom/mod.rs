//! SBOMs of one image for one architecture, generated inside the derivation
//! from what was installed: the packages of the layers (their `layer.json`)
//! and the files kiln generated.
//!
//! Nothing in them depends on the build: times come from the lock
//! (`created`), identifiers (SPDX namespace, CycloneDX serial number) from
//! the manifest digest, and every list is sorted.

pub mod cyclonedx;
pub mod spdx;

use crate::digest::Digest;
use crate::layerinfo::{FileType, InstalledPackage};
use crate::rootfs::GeneratedFile;
use crate::spec::Arch;
use std::collections::BTreeMap;

pub const TOOL_NAME: &str = "kiln-seed";
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
pub use crate::copyright::NOASSERTION;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("package {package} {version}: {message}")]
    Package {
        package: String,
        version: String,
        message: String,
    },
}

fn package_err(p: &InstalledPackage, message: impl Into<String>) -> Error {
    Error::Package {
        package: p.name.clone(),
        version: p.version.clone(),
        message: message.into(),
    }
}

/// What both SBOM formats are made from.
#[derive(Debug)]
pub struct Image<'a> {
    /// The full image name (`name` or `name-variant`).
    pub name: &'a str,
    pub tag: &'a str,
    pub arch: Arch,
    /// Epoch seconds (the image's `created`).
    pub created: u64,
    /// Digest of the image manifest the SBOM describes.
    pub manifest: Digest,
    /// The image's `org.opencontainers.image.licenses` annotation.
    pub licenses: &'a str,
    /// The `distro` qualifier of the packages' purls: the image's release
    /// (`debian-12`).
    pub distro: &'a str,
    /// Installed packages, sorted by name.
    pub packages: Vec<Package<'a>>,
    /// Regular files of the generated layer.
    pub generated: &'a [GeneratedFile],
    /// Programs an application's build put in the image.
    pub applications: &'a [Application],
}

/// A program an application image's build put in it, and what the program
/// says it was built from (Go's build information).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub file: File,
    pub go: Option<crate::gobuildinfo::BuildInfo>,
    /// The wheels installed for a Python application.
    pub python: Vec<PythonDist>,
    /// The crates a Rust program was compiled from (its Cargo.lock's
    /// registry packages).
    pub cargo: Vec<CrateDist>,
}

/// A crate of a Rust application's Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateDist {
    pub name: String,
    pub version: String,
    /// Cargo.lock's checksum: the SHA-256 of the `.crate` file.
    pub checksum: String,
}

/// The file a component came from, for the SBOMs' comments and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dist {
    /// `wheel` (installed into the image) or `crate` (compiled in).
    pub kind: &'static str,
    pub file: String,
    pub sha256: String,
}

impl Dist {
    /// What the component is to the program at `path`.
    pub fn describe(&self, path: &str) -> String {
        match self.kind {
            "crate" => format!("compiled into {path} from the crate {}", self.file),
            _ => format!("installed for {path} from the wheel {}", self.file),
        }
    }
}

/// A wheel installed into an application image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonDist {
    /// `Name:` and `Version:` of its METADATA.
    pub name: String,
    pub version: String,
    /// The wheel's file name and SHA-256 (hex), as pinned in kiln.lock.
    pub wheel: String,
    pub sha256: String,
}

/// One component of an application, as both SBOMs list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppComponent {
    pub name: String,
    pub version: String,
    pub purl: Option<String>,
    /// The program itself (else a module it was built from).
    pub main: bool,
    /// The go.sum hash of a dependency module.
    pub sum: Option<String>,
    /// The wheel or crate the component came from.
    pub dist: Option<Dist>,
}

impl Application {
    /// The program (named by its main module when it is a Go binary, else
    /// by its path), then Go's standard library and every dependency
    /// module, with the purls syft gives them.
    pub fn components(&self) -> Vec<AppComponent> {
        use crate::gobuildinfo::purl;
        let Some(go) = &self.go else {
            let mut out = vec![AppComponent {
                name: self.file.path.clone(),
                version: String::new(),
                purl: None,
                main: true,
                sum: None,
                dist: None,
            }];
            // Named as syft names what it reads from the installed METADATA.
            out.extend(self.python.iter().map(|d| AppComponent {
                name: crate::wheel::normalize(&d.name),
                version: d.version.clone(),
                purl: Some(format!(
                    "pkg:pypi/{}@{}",
                    crate::wheel::normalize(&d.name),
                    d.version
                )),
                main: false,
                sum: None,
                dist: Some(Dist {
                    kind: "wheel",
                    file: d.wheel.clone(),
                    sha256: d.sha256.clone(),
                }),
            }));
            // As cargo names them (syft's purls for crates, when a binary
            // carries cargo-auditable data).
            out.extend(self.cargo.iter().map(|c| AppComponent {
                name: c.name.clone(),
                version: c.version.clone(),
                purl: Some(format!("pkg:cargo/{}@{}", c.name, c.version)),
                main: false,
                sum: None,
                dist: Some(Dist {
                    kind: "crate",
                    file: format!("{}-{}.crate", c.name, c.version),
                    sha256: c.checksum.clone(),
                }),
            }));
            return out;
        };
        let (name, version) = go
            .main
            .as_ref()
            .map_or((self.file.path.clone(), String::new()), |m| {
                (m.path.clone(), m.version.clone())
            });
        let mut out = vec![AppComponent {
            purl: go.main.as_ref().map(|_| purl(&name, &version)),
            name,
            version,
            main: true,
            sum: None,
            dist: None,
        }];
        out.push(AppComponent {
            name: "stdlib".into(),
            version: go.go_version.clone(),
            purl: Some(purl("stdlib", go.go_version.trim_start_matches("go"))),
            main: false,
            sum: None,
            dist: None,
        });
        for d in &go.deps {
            out.push(AppComponent {
                name: d.path.clone(),
                version: d.version.clone(),
                purl: Some(purl(&d.path, &d.version)),
                main: false,
                sum: d.sum.clone(),
                dist: None,
            });
        }
        out
    }
}

/// An installed package and the regular files of it that the image shows.
#[derive(Debug)]
pub struct Package<'a> {
    pub info: &'a InstalledPackage,
    pub files: Vec<File>,
    /// Where `info.license` was read when not from the package's own
    /// copyright file (see [`doc_link_licenses`]), said in the SBOM.
    pub license_source: Option<String>,
}

/// A regular file (or hard link to one) with its checksums (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Absolute path in the image.
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl<'a> Package<'a> {
    /// The package with its regular files (and hard links, with their
    /// target's checksums) for which `visible(path)` holds: a file that a
    /// later layer or the generated layer replaces is not in the image.
    pub fn new(
        info: &'a InstalledPackage,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Package<'a>, Error> {
        if !is_hex(&info.sha256, 64) {
            return Err(package_err(
                info,
                format!(
                    "sha256 {:?} of the .deb is not 64 lowercase hex digits",
                    info.sha256
                ),
            ));
        }
        let by_path: BTreeMap<&str, &crate::layerinfo::FileInfo> =
            info.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut files = Vec::new();
        for f in &info.files {
            let content = match f.file_type {
                FileType::File => f,
                FileType::Hardlink => match f.target.as_deref().and_then(|t| by_path.get(t)) {
                    Some(t) if t.file_type == FileType::File => t,
                    // A link to a file of another package: that package lists it.
                    _ => continue,
                },
                FileType::Directory | FileType::Symlink => continue,
            };
            if !visible(&f.path) {
                continue;
            }
            let sha1 = content.sha1.as_deref().filter(|h| is_hex(h, 40));
            let sha256 = content.sha256.as_deref().filter(|h| is_hex(h, 64));
            let (Some(sha1), Some(sha256)) = (sha1, sha256) else {
                return Err(package_err(
                    info,
                    format!("file {} has no valid sha1 and sha256 in layer.json", f.path),
                ));
            };
            files.push(File {
                path: f.path.clone(),
                sha1: sha1.into(),
                sha256: sha256.into(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Package {
            info,
            files,
            license_source: None,
        })
    }
}

/// Debian's directory of per-package documentation (and copyright files).
const DOC_DIR: &str = "/usr/share/doc/";

/// A license a package states through another package's copyright file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedLicense {
    /// The package that ships the copyright file.
    pub from: String,
    pub license: String,
    pub copyright_text: String,
    /// `/usr/share/doc/<from>/copyright`, as the SBOM explains it.
    pub source: String,
}

/// Licenses of packages whose `/usr/share/doc/<name>` is a symlink to the
/// doc directory of another installed package (Debian policy 12.5 allows it
/// when the package depends on that one: libncursesw6 -> libtinfo6,
/// libpython3.11-stdlib -> libpython3.11-minimal). Their own layer cannot
/// see the copyright file behind the link; the image, which has every
/// layer, can. Only packages that state no license themselves are given
/// one, and only when the file behind the link is machine-readable (its
/// package's license is asserted): nothing is invented. Links to links are
/// followed a few hops; a link that leaves /usr/share/doc or dangles gives
/// nothing.
pub fn doc_link_licenses(packages: &[&InstalledPackage]) -> BTreeMap<String, InheritedLicense> {
    // Doc directory name -> symlink target, and -> the package whose
    // copyright file is in it.
    let mut links: BTreeMap<&str, &str> = BTreeMap::new();
    let mut owners: BTreeMap<&str, &InstalledPackage> = BTreeMap::new();
    for p in packages {
        for f in &p.files {
            let Some(rest) = f.path.strip_prefix(DOC_DIR) else {
                continue;
            };
            match (f.file_type, rest.split_once('/')) {
                (FileType::Symlink, None) => {
                    if let Some(t) = f.target.as_deref() {
                        links.insert(rest, t);
                    }
                }
                (FileType::File | FileType::Hardlink, Some((dir, "copyright"))) => {
                    owners.insert(dir, p);
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    for p in packages {
        if asserted(&p.license).is_some() {
            continue;
        }
        let mut dir = p.name.as_str();
        let mut owner = None;
        for _ in 0..8 {
            let Some(next) = links.get(dir).and_then(|t| doc_link_target(t)) else {
                break;
            };
            dir = next;
            if let Some(o) = owners.get(dir) {
                owner = Some(*o);
                break;
            }
        }
        let Some(owner) = owner.filter(|o| o.name != p.name) else {
            continue;
        };
        if let Some(license) = asserted(&owner.license) {
            out.insert(
                p.name.clone(),
                InheritedLicense {
                    from: owner.name.clone(),
                    license: license.to_string(),
                    copyright_text: owner.copyright_text.clone(),
                    source: format!("{DOC_DIR}{dir}/copyright"),
                },
            );
        }
    }
    out
}

/// The doc directory a symlink in /usr/share/doc points at (`libtinfo6`,
/// `../doc/libtinfo6`, `/usr/share/doc/libtinfo6`), or `None` if it points
/// anywhere else.
fn doc_link_target(target: &str) -> Option<&str> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        vec!["usr", "share", "doc"]
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    match parts.as_slice() {
        ["usr", "share", "doc", dir] => Some(dir),
        _ => None,
    }
}

/// Percent-encodes everything but the purl spec's unreserved characters
/// (`A-Za-z0-9.-_~`): `+` becomes `%2B`, an epoch's `:` `%3A`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:deb/debian/<name>@<version>?arch=<architecture>&distro=<distro>`
/// (qualifiers sorted by key, as the purl spec requires); `distro` is the
/// release's, `debian-12`.
pub fn deb_purl(p: &InstalledPackage, distro: &str) -> String {
    deb_purl_of(&p.name, &p.version, &p.architecture, distro)
}

/// [`deb_purl`] from the three fields (what provenance records for a
/// locked .deb, so that it names packages exactly as the SBOMs do).
pub fn deb_purl_of(name: &str, version: &str, architecture: &str, distro: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        percent_encode(name),
        percent_encode(version),
        percent_encode(architecture),
        percent_encode(distro)
    )
}

/// `pkg:oci/<name>@sha256%3A<hex>?arch=<arch>&tag=<tag>` for the image.
pub fn image_purl(name: &str, manifest: &Digest, arch: Arch, tag: &str) -> String {
    format!(
        "pkg:oci/{}@{}?arch={}&tag={}",
        percent_encode(name),
        percent_encode(&manifest.to_string()),
        arch.debian(),
        percent_encode(tag)
    )
}

/// Whether a license or copyright field says something (not empty, not NOASSERTION).
pub fn asserted(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && s != NOASSERTION).then_some(s)
}

/// The `LicenseRef-*` identifiers an SPDX expression uses.
pub fn license_refs(expr: &str) -> Vec<&str> {
    expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| t.starts_with("LicenseRef-"))
        .collect()
}

/// The image's license expression: the packages' distinct asserted
/// licenses, sorted, joined with ` AND ` (those with an `OR` parenthesized
/// so that their meaning survives), or `NOASSERTION`.
pub fn combined_license<'a>(licenses: impl IntoIterator<Item = &'a str>) -> String {
    let mut set: Vec<String> = licenses
        .into_iter()
        .filter_map(asserted)
        .map(|l| {
            // AND binds tighter than OR: an expression with an OR must be
            // wrapped (even `(A) OR (B)`, which starts and ends with one).
            let words = l.split(|c: char| c.is_whitespace() || c == '(' || c == ')');
            if words.into_iter().any(|w| w.eq_ignore_ascii_case("or")) {
                format!("({l})")
            } else {
                l.to_string()
            }
        })
        .collect();
    set.sort();
    set.dedup();
    if set.is_empty() {
        NOASSERTION.to_string()
    } else {
        set.join(" AND ")
    }
}

/// A Debian `Maintainer:` field (`Name <email>`), split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub name: String,
    pub email: Option<String>,
    /// A team or mailing list rather than a person.
    pub organization: bool,
}

impl Maintainer {
    pub fn parse(field: &str) -> Option<Maintainer> {
        let field = field.trim();
        let (name, email) = match (field.find('<'), field.rfind('>')) {
            (Some(l), Some(r)) if l < r => {
                (field[..l].trim(), Some(field[l + 1..r].trim().to_string()))
            }
            _ => (field, None),
        };
        // SPDX actors put the email in parentheses: keep them out of the name.
        let name: String = name
            .chars()
            .filter(|c| !matches!(c, '(' | ')'))
            .collect::<String>()
            .trim()
            .to_string();
        if name.is_empty() {
            return None;
        }
        let lower = name.to_lowercase();
        let email = email.filter(|e| !e.is_empty() && !e.contains(['(', ')']));
        let organization = [
            "team",
            "maintainers",
            "group",
            "project",
            "developers",
            "packagers",
            "debian ",
        ]
        .iter()
        .any(|w| lower.contains(w))
            || email
                .as_deref()
                .is_some_and(|e| e.contains("@lists.") || e.ends_with("@tracker.debian.org"));
        Some(Maintainer {
            name,
            email,
            organization,
        })
    }

    /// `Person: Name (email)` / `Organization: Name (email)`.
    pub fn spdx_actor(&self) -> String {
        let kind = if self.organization {
            "Organization"
        } else {
            "Person"
        };
        match &self.email {
            Some(e) => format!("{kind}: {} ({e})", self.name),
            None => format!("{kind}: {}", self.name),
        }
    }
}

/// A homepage usable as a URL in both formats (Debian's `Homepage:` is
/// free text in practice).
pub fn homepage(p: &InstalledPackage) -> Option<&str> {
    let h = p.homepage.as_deref()?.trim();
    let rest = h
        .strip_prefix("https://")
        .or_else(|| h.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or("");
    (host.contains('.') && !h.contains(char::is_whitespace) && !h.contains(['"', '<', '>', '\\']))
        .then_some(h)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layerinfo::FileInfo;

    pub(crate) fn file(path: &str, content: &[u8]) -> FileInfo {
        use sha1::Sha1;
        use sha2::{Digest as _, Sha256};
        FileInfo {
            path: path.into(),
            file_type: FileType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: Some(content.len() as u64),
            sha256: Some(hex::encode(Sha256::digest(content))),
            sha1: Some(hex::encode(Sha1::digest(content))),
            md5: None,
            target: None,
        }
    }

    pub(crate) fn package(
        name: &str,
        version: &str,
        arch: &str,
        license: &str,
        files: Vec<FileInfo>,
    ) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            architecture: arch.into(),
            source: format!("{name}-src"),
            source_version: version.into(),
            suite: "bookworm".into(),
            filename: format!("pool/main/x/{name}/{name}_{version}_{arch}.deb"),
            sha256: hex::encode(sha2::Sha256::digest(name.as_bytes())),
            size: 1234,
            maintainer: Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>".into()),
            homepage: Some("https://www.gnu.org/software/libc/libc.html".into()),
            summary: Some(format!("{name} summary")),
            installed_size: Some(10),
            license: license.into(),
            copyright_text: "Copyright 1991 Someone".into(),
            files,
        }
    }
    use sha2::Digest as _;

    #[test]
    fn purl_encodes_version_per_spec() {
        let p = package(
            "libstdc++6",
            "1:12.2.0-14~deb12u1+b1",
            "amd64",
            "MIT",
            vec![],
        );
        assert_eq!(
            deb_purl(&p, "debian-12"),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14~deb12u1%2Bb1?arch=amd64&distro=debian-12"
        );
        // The qualifier is the image's release, never a constant.
        assert_eq!(
            deb_purl_of("libc6", "2.41-12", "arm64", "debian-13"),
            "pkg:deb/debian/libc6@2.41-12?arch=arm64&distro=debian-13"
        );
        let d = Digest([0xab; 32]);
        assert_eq!(
            image_purl("scratch-plus", &d, Arch::Arm64, "latest"),
            format!(
                "pkg:oci/scratch-plus@sha256%3A{}?arch=arm64&tag=latest",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn combined_license_sorts_dedups_and_parenthesizes() {
        assert_eq!(
            combined_license([
                "MIT",
                "NOASSERTION",
                "GPL-2.0-or-later",
                "MIT",
                "Apache-2.0 OR MIT",
                "(BSD-3-Clause) OR (Zlib)",
                "LGPL-2.1-or-later AND LicenseRef-x"
            ]),
            "((BSD-3-Clause) OR (Zlib)) AND (Apache-2.0 OR MIT) AND GPL-2.0-or-later AND LGPL-2.1-or-later AND LicenseRef-x AND MIT"
        );
        assert_eq!(combined_license(["NOASSERTION", ""]), "NOASSERTION");
    }

    #[test]
    fn license_refs_are_found() {
        assert_eq!(
            license_refs("(MIT OR LicenseRef-Debian-a) AND LicenseRef-b"),
            vec!["LicenseRef-Debian-a", "LicenseRef-b"]
        );
    }

    #[test]
    fn maintainer_becomes_an_spdx_actor() {
        let m = Maintainer::parse("GNU Libc Maintainers <debian-glibc@lists.debian.org>").unwrap();
        assert_eq!(
            m.spdx_actor(),
            "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
        );
        let m = Maintainer::parse("Julien Cristau <jcristau@debian.org>").unwrap();
        assert_eq!(
            m.spdx_actor(),
            "Person: Julien Cristau (jcristau@debian.org)"
        );
        assert_eq!(
            Maintainer::parse("Someone (nick)").unwrap().spdx_actor(),
            "Person: Someone nick"
        );
        assert!(Maintainer::parse(" <a@b> ").is_none());
    }

    fn doc_link(path: &str, target: &str) -> FileInfo {
        FileInfo {
            file_type: FileType::Symlink,
            sha1: None,
            sha256: None,
            size: None,
            target: Some(target.into()),
            ..file(path, b"")
        }
    }

    #[test]
    fn doc_directory_links_give_the_target_packages_license_only_if_it_has_one() {
        let tinfo = package(
            "libtinfo6",
            "6.4-4",
            "amd64",
            "X11",
            vec![file("/usr/share/doc/libtinfo6/copyright", b"Format: ...")],
        );
        let mut ncurses = package(
            "libncursesw6",
            "6.4-4",
            "amd64",
            NOASSERTION,
            vec![doc_link("/usr/share/doc/libncursesw6", "libtinfo6")],
        );
        ncurses.copyright_text = NOASSERTION.into();
        let minimal = package(
            "libpython3.11-minimal",
            "3.11.2-6",
            "amd64",
            NOASSERTION,
            vec![file(
                "/usr/share/doc/libpython3.11-minimal/copyright",
                b"free",
            )],
        );
        let stdlib = package(
            "libpython3.11-stdlib",
            "3.11.2-6",
            "amd64",
            NOASSERTION,
            vec![doc_link(
                "/usr/share/doc/libpython3.11-stdlib",
                "libpython3.11-minimal",
            )],
        );
        // A package that states its own license keeps it.
        let own = package(
            "own",
            "1",
            "all",
            "MIT",
            vec![doc_link("/usr/share/doc/own", "libtinfo6")],
        );
        // Links to links are followed; links out of /usr/share/doc and
        // links to packages that are not installed give nothing.
        let chained = package(
            "chained",
            "1",
            "all",
            NOASSERTION,
            vec![doc_link(
                "/usr/share/doc/chained",
                "/usr/share/doc/libncursesw6/",
            )],
        );
        let escape = package(
            "escape",
            "1",
            "all",
            NOASSERTION,
            vec![doc_link("/usr/share/doc/escape", "../../../etc")],
        );
        let dangling = package(
            "dangling",
            "1",
            "all",
            NOASSERTION,
            vec![doc_link("/usr/share/doc/dangling", "gone")],
        );
        let loop_a = package(
            "loop-a",
            "1",
            "all",
            NOASSERTION,
            vec![doc_link("/usr/share/doc/loop-a", "loop-b")],
        );
        let loop_b = package(
            "loop-b",
            "1",
            "all",
            NOASSERTION,
            vec![doc_link("/usr/share/doc/loop-b", "../doc/loop-a")],
        );
        let all = [
            &tinfo, &ncurses, &minimal, &stdlib, &own, &chained, &escape, &dangling, &loop_a,
            &loop_b,
        ];
        let got = doc_link_licenses(&all);
        let expected = |from: &str| InheritedLicense {
            from: from.into(),
            license: "X11".into(),
            copyright_text: "Copyright 1991 Someone".into(),
            source: "/usr/share/doc/libtinfo6/copyright".into(),
        };
        assert_eq!(
            got,
            BTreeMap::from([
                ("chained".to_string(), expected("libtinfo6")),
                ("libncursesw6".to_string(), expected("libtinfo6")),
            ])
        );
    }

    #[test]
    fn doc_link_targets_stay_in_the_doc_directory() {
        assert_eq!(doc_link_target("libtinfo6"), Some("libtinfo6"));
        assert_eq!(doc_link_target("libtinfo6/"), Some("libtinfo6"));
        assert_eq!(doc_link_target("./libtinfo6"), Some("libtinfo6"));
        assert_eq!(doc_link_target("../doc/libtinfo6"), Some("libtinfo6"));
        assert_eq!(
            doc_link_target("/usr/share/doc/libtinfo6"),
            Some("libtinfo6")
        );
        assert_eq!(doc_link_target("libtinfo6/examples"), None);
        assert_eq!(doc_link_target("../libtinfo6"), None);
        assert_eq!(doc_link_target("/etc"), None);
        assert_eq!(doc_link_target("../../../../etc/doc/x"), None);
    }

    #[test]
    fn package_files_skip_hidden_and_resolve_hard_links() {
        let mut link = file("/usr/bin/b", b"");
        link.file_type = FileType::Hardlink;
        link.target = Some("/usr/bin/a".into());
        link.sha1 = None;
        link.sha256 = None;
        let dir = FileInfo {
            file_type: FileType::Directory,
            sha1: None,
            sha256: None,
            ..file("/usr/bin", b"")
        };
        let p = package(
            "x",
            "1",
            "amd64",
            "MIT",
            vec![
                dir,
                file("/usr/bin/a", b"a"),
                link,
                file("/etc/hidden", b"h"),
            ],
        );
        let pkg = Package::new(&p, |path| path != "/etc/hidden").unwrap();
        let paths: Vec<_> = pkg.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/usr/bin/a", "/usr/bin/b"]);
        assert_eq!(pkg.files[0].sha1, pkg.files[1].sha1);

        let mut bad = file("/x", b"x");
        bad.sha1 = None;
        let p = package("y", "2", "amd64", "MIT", vec![bad]);
        let e = Package::new(&p, |_| true).unwrap_err().to_string();
        assert!(e.contains("package y 2") && e.contains("/x"), "{e}");
    }
}
