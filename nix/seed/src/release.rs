//! Debian releases: which one an image is built from, named by its number
//! (`debian = 13`) or by its suites (`trixie`, `trixie-updates`, ...).
//! Everything that names the distribution (purls' `distro` qualifier, the
//! lock's package tables) follows the release, never a constant.

use std::fmt;

/// A Debian release kiln can build from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    /// The major version: 12 for bookworm.
    pub version: u32,
    pub codename: &'static str,
}

/// The releases kiln knows, oldest first. A release that is not here has
/// no known archive keys or suite layout, so it is refused by name rather
/// than guessed.
pub const RELEASES: [Release; 4] = [
    Release {
        version: 11,
        codename: "bullseye",
    },
    Release {
        version: 12,
        codename: "bookworm",
    },
    Release {
        version: 13,
        codename: "trixie",
    },
    Release {
        version: 14,
        codename: "forky",
    },
];

/// What an image is built from when its definition names no release: the
/// catalogue's documented default.
pub const DEFAULT: Release = RELEASES[1];

/// The suffixes of a release's suites in Debian's archives.
const SUITE_KINDS: [&str; 4] = ["", "-updates", "-security", "-backports"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0} is not a Debian release kiln knows (it knows {known})", known = known())]
    UnknownVersion(u32),
    #[error("{0:?} is not a suite of a Debian release kiln knows (it knows {known}, each with -updates, -security and -backports)", known = known())]
    UnknownSuite(String),
    #[error(
        "{first:?} is Debian {a} but {second:?} is Debian {b}; an image is built from one release"
    )]
    Mixed {
        first: String,
        a: u32,
        second: String,
        b: u32,
    },
}

fn known() -> String {
    RELEASES
        .iter()
        .map(|r| format!("{} ({})", r.version, r.codename))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Release {
    pub fn by_version(version: u32) -> Result<Release, ReleaseError> {
        RELEASES
            .into_iter()
            .find(|r| r.version == version)
            .ok_or(ReleaseError::UnknownVersion(version))
    }

    pub fn by_codename(codename: &str) -> Option<Release> {
        RELEASES.into_iter().find(|r| r.codename == codename)
    }

    /// The release a suite belongs to: `trixie-security` is Debian 13.
    pub fn of_suite(suite: &str) -> Result<Release, ReleaseError> {
        RELEASES
            .into_iter()
            .find(|r| {
                SUITE_KINDS
                    .iter()
                    .any(|kind| suite.strip_prefix(r.codename) == Some(kind))
            })
            .ok_or_else(|| ReleaseError::UnknownSuite(suite.to_string()))
    }

    /// The one release all of `suites` belong to.
    pub fn of_suites(suites: &[String]) -> Result<Release, ReleaseError> {
        let mut found: Option<(Release, &str)> = None;
        for suite in suites {
            let r = Release::of_suite(suite)?;
            match found {
                None => found = Some((r, suite)),
                Some((f, first)) if f != r => {
                    return Err(ReleaseError::Mixed {
                        first: first.to_string(),
                        a: f.version,
                        second: suite.clone(),
                        b: r.version,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(found.map_or(DEFAULT, |(r, _)| r))
    }

    /// The suites an image of this release resolves from by default: the
    /// release, its stable updates and its security updates.
    pub fn default_suites(self) -> Vec<String> {
        ["", "-updates", "-security"]
            .iter()
            .map(|kind| format!("{}{kind}", self.codename))
            .collect()
    }

    /// The `distro` qualifier of this release's package purls, as syft,
    /// grype and trivy write and match it: `debian-12`.
    pub fn distro(self) -> String {
        format!("debian-{}", self.version)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Debian {} ({})", self.version, self.codename)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suites_name_their_release() {
        assert_eq!(Release::of_suite("trixie-security").unwrap().version, 13);
        assert_eq!(Release::of_suite("bookworm").unwrap().version, 12);
        assert_eq!(Release::of_suite("bookworm-backports").unwrap().version, 12);
        assert!(matches!(
            Release::of_suite("bookwormish"),
            Err(ReleaseError::UnknownSuite(_))
        ));
        assert!(matches!(
            Release::of_suite("stable"),
            Err(ReleaseError::UnknownSuite(_))
        ));
    }

    #[test]
    fn a_mix_of_releases_is_named() {
        let e = Release::of_suites(&strings(&["bookworm", "trixie-security"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"bookworm\" is Debian 12 but \"trixie-security\" is Debian 13; an image is built from one release"
        );
    }

    #[test]
    fn default_suites_and_distro_follow_the_release() {
        let t = Release::by_version(13).unwrap();
        assert_eq!(
            t.default_suites(),
            strings(&["trixie", "trixie-updates", "trixie-security"])
        );
        assert_eq!(t.distro(), "debian-13");
        assert_eq!(Release::of_suites(&t.default_suites()).unwrap(), t);
        assert_eq!(DEFAULT.distro(), "debian-12");
        let e = Release::by_version(15).unwrap_err().to_string();
        assert!(
            e.starts_with("15 is not a Debian release kiln knows"),
            "{e}"
        );
        assert!(e.contains("13 (trixie)"), "{e}");
    }
}
