//! Finding the Debian archive the way apt does: deb822 `sources.list.d/*.sources`
//! and classic `sources.list` / `sources.list.d/*.list`, mapped to one base
//! URI and component list per suite. `--mirror` / `--security-mirror`
//! override the base URI (corporate and snapshot mirrors work unchanged
//! because the lock only holds archive-relative paths).

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{what} {url:?} is not an http:// or https:// URL")]
    BadOverride { what: &'static str, url: String },
    #[error("no apt source provides the suite {suite:?} (searched {searched}); add it to the apt sources or pass {flag}")]
    MissingSuite {
        suite: String,
        searched: String,
        flag: &'static str,
    },
}

/// Where one suite lives: `<base>/dists/<suite>/...` and `<base>/pool/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteSource {
    /// Archive root without a trailing slash.
    pub base: String,
    pub components: Vec<String>,
    /// The file that declared it, or the override that replaced it.
    pub origin: String,
}

/// `--mirror` / `KILN_MIRROR` and `--security-mirror` / `KILN_SECURITY_MIRROR`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the base URI of every suite that is not `*-security`.
    pub mirror: Option<String>,
    /// Replaces the base URI of `*-security` suites.
    pub security_mirror: Option<String>,
}

impl Overrides {
    fn for_suite(&self, suite: &str) -> Option<(&str, &'static str)> {
        if is_security(suite) {
            self.security_mirror
                .as_deref()
                .map(|u| (u, "--security-mirror"))
        } else {
            self.mirror.as_deref().map(|u| (u, "--mirror"))
        }
    }

    fn validate(&self) -> Result<(), SourcesError> {
        for (what, url) in [
            ("--mirror", &self.mirror),
            ("--security-mirror", &self.security_mirror),
        ] {
            if let Some(u) = url {
                if !is_http(u) {
                    return Err(SourcesError::BadOverride {
                        what,
                        url: u.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `suite` is a security suite (served from the security archive).
pub fn is_security(suite: &str) -> bool {
    suite.ends_with("-security")
}

fn is_http(u: &str) -> bool {
    (u.starts_with("http://") && u.len() > 7) || (u.starts_with("https://") && u.len() > 8)
}

/// One `deb` line or one (URI, suite) pair of a deb822 stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    pub file: PathBuf,
    pub line: usize,
}

/// The apt sources of a machine, with overrides applied on lookup.
#[derive(Debug, Clone)]
pub struct Mirrors {
    entries: Vec<SourceEntry>,
    searched: Vec<PathBuf>,
    overrides: Overrides,
}

impl Mirrors {
    /// Reads the apt configuration under `etc_apt` (normally `/etc/apt`) in
    /// apt's order: `sources.list`, then `sources.list.d/` by file name.
    pub fn discover(etc_apt: &Path, overrides: Overrides) -> Result<Mirrors, SourcesError> {
        overrides.validate()?;
        let mut entries = Vec::new();
        let mut searched = Vec::new();
        let list = etc_apt.join("sources.list");
        if list.is_file() {
            let text = read(&list)?;
            entries.extend(parse_classic(&list, &text)?);
            searched.push(list);
        }
        let dir = etc_apt.join("sources.list.d");
        let mut files = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(|error| SourcesError::Read {
                        path: dir.clone(),
                        error,
                    })?;
                    let p = e.path();
                    // apt itself only reads these two extensions, which also
                    // skips `*.disabled*` and editor backups.
                    let ext = p.extension().and_then(|x| x.to_str());
                    if matches!(ext, Some("list" | "sources")) && p.is_file() {
                        files.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(SourcesError::Read { path: dir, error }),
        }
        files.sort();
        for f in files {
            let text = read(&f)?;
            if f.extension().is_some_and(|x| x == "sources") {
                entries.extend(parse_deb822(&f, &text)?);
            } else {
                entries.extend(parse_classic(&f, &text)?);
            }
            searched.push(f);
        }
        if searched.is_empty() {
            searched.push(etc_apt.join("sources.list"));
            searched.push(etc_apt.join("sources.list.d/*.{list,sources}"));
        }
        Ok(Mirrors {
            entries,
            searched,
            overrides,
        })
    }

    /// Every entry read, in apt's order.
    pub fn entries(&self) -> &[SourceEntry] {
        &self.entries
    }

    /// Where `suite` lives. The first apt source naming the suite wins (as
    /// in apt's own order); components of later entries with the same URI
    /// are added. An override replaces the URI and, when no apt source names
    /// the suite at all, stands in for it with component `main`.
    pub fn suite(&self, suite: &str) -> Result<SuiteSource, SourcesError> {
        let mut found: Option<SuiteSource> = None;
        for e in self.entries.iter().filter(|e| e.suite == suite) {
            match &mut found {
                None => {
                    found = Some(SuiteSource {
                        base: e.uri.clone(),
                        components: e.components.clone(),
                        origin: format!("{}:{}", e.file.display(), e.line),
                    })
                }
                Some(s) if s.base == e.uri => {
                    for c in &e.components {
                        if !s.components.contains(c) {
                            s.components.push(c.clone());
                        }
                    }
                }
                Some(_) => {}
            }
        }
        let over = self.overrides.for_suite(suite);
        match (found, over) {
            (Some(mut s), Some((url, flag))) => {
                s.base = url.trim_end_matches('/').to_string();
                s.origin = flag.to_string();
                Ok(s)
            }
            (Some(s), None) => Ok(s),
            (None, Some((url, flag))) => Ok(SuiteSource {
                base: url.trim_end_matches('/').to_string(),
                components: vec!["main".into()],
                origin: flag.to_string(),
            }),
            // Debian publishes backports in the same archive as their
            // release, signed by the same key, but apt lists them only when
            // the machine installs from them; a toolchain may still want a
            // newer compiler from there.
            (None, None) if suite.ends_with("-backports") => {
                let release = suite.trim_end_matches("-backports");
                let mut s = self
                    .suite(release)
                    .map_err(|_| SourcesError::MissingSuite {
                        suite: suite.to_string(),
                        searched: self.searched_text(),
                        flag: "--mirror",
                    })?;
                s.components.retain(|c| c == "main");
                s.origin = format!("{} (the archive of {release})", s.origin);
                Ok(s)
            }
            (None, None) => match self.sibling(suite) {
                // A release the machine does not install from lives in the
                // same archives as the one it does: trixie-security beside
                // bookworm-security, trixie beside bookworm.
                Some((sibling, mut s)) => {
                    s.components.retain(|c| c == "main");
                    s.origin = format!("{} (the archive of {sibling})", s.origin);
                    Ok(s)
                }
                None => Err(SourcesError::MissingSuite {
                    suite: suite.to_string(),
                    searched: self.searched_text(),
                    flag: if is_security(suite) {
                        "--security-mirror"
                    } else {
                        "--mirror"
                    },
                }),
            },
        }
    }

    /// The configured suite of another Debian release with the same role
    /// as `suite` (the release itself, -updates or -security), and its
    /// source.
    fn sibling(&self, suite: &str) -> Option<(String, SuiteSource)> {
        let release = crate::release::Release::of_suite(suite).ok()?;
        let kind = &suite[release.codename.len()..];
        if kind == "-backports" {
            return None;
        }
        self.entries.iter().find_map(|e| {
            let other = crate::release::Release::of_suite(&e.suite).ok()?;
            if other == release || e.suite[other.codename.len()..] != *kind {
                return None;
            }
            Some((e.suite.clone(), self.suite(&e.suite).ok()?))
        })
    }

    fn searched_text(&self) -> String {
        if self.searched.is_empty() {
            return "no apt configuration".into();
        }
        self.searched
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for SuiteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] (from {})",
            self.base,
            self.components.join(" "),
            self.origin
        )
    }
}

fn read(path: &Path) -> Result<String, SourcesError> {
    std::fs::read_to_string(path).map_err(|error| SourcesError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn normalize_uri(u: &str) -> String {
    u.trim_end_matches('/').to_string()
}

/// Classic one-line format: `deb [opt=val ...] URI SUITE COMPONENT...`.
pub fn parse_classic(path: &Path, text: &str) -> Result<Vec<SourceEntry>, SourcesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| SourcesError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let mut rest = line;
        let (kind, after) = split_word(rest);
        rest = after;
        match kind {
            "deb" => {}
            "deb-src" => continue,
            other => {
                return Err(err(format!(
                    "unknown source type {other:?} (expected deb or deb-src)"
                )))
            }
        }
        if rest.starts_with('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| err("unterminated [option] list".into()))?;
            rest = rest[end + 1..].trim_start();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < 2 {
            return Err(err("expected `deb URI SUITE [COMPONENT...]`".into()));
        }
        let uri = words[0];
        if !uri.contains(':') {
            return Err(err(format!("{uri:?} is not a URI")));
        }
        // Flat repositories (`deb URI path/`) have no dists/ tree: not ours.
        if words[1].ends_with('/') {
            continue;
        }
        out.push(SourceEntry {
            uri: normalize_uri(uri),
            suite: words[1].to_string(),
            components: words[2..].iter().map(|s| s.to_string()).collect(),
            file: path.to_path_buf(),
            line: line_no,
        });
    }
    Ok(out)
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// deb822 format (`Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`).
pub fn parse_deb822(path: &Path, text: &str) -> Result<Vec<SourceEntry>, SourcesError> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut start = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    for (i, raw) in lines
        .iter()
        .enumerate()
        .chain(std::iter::once((lines.len(), &"")))
    {
        let line_no = i + 1;
        let trimmed = raw.trim_end();
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.trim().is_empty() {
            if !fields.is_empty() {
                out.extend(stanza(path, start, &fields)?);
                fields.clear();
            }
            continue;
        }
        if trimmed.starts_with([' ', '\t']) {
            // Continuation (e.g. an inline Signed-By key block).
            let Some(last) = fields.last_mut() else {
                return Err(SourcesError::Parse {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: "continuation line without a field".into(),
                });
            };
            last.1.push('\n');
            last.1.push_str(trimmed.trim());
            continue;
        }
        let Some((k, v)) = trimmed.split_once(':') else {
            return Err(SourcesError::Parse {
                path: path.to_path_buf(),
                line: line_no,
                message: format!("expected `Field: value`, got {trimmed:?}"),
            });
        };
        if fields.is_empty() {
            start = line_no;
        }
        fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(out)
}

fn stanza(
    path: &Path,
    line: usize,
    fields: &[(String, String)],
) -> Result<Vec<SourceEntry>, SourcesError> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let err = |message: String| SourcesError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    if let Some(enabled) = get("enabled") {
        if matches!(enabled.to_ascii_lowercase().as_str(), "no" | "false" | "0") {
            return Ok(Vec::new());
        }
    }
    let types = get("types").ok_or_else(|| err("stanza has no Types field".into()))?;
    if !types.split_whitespace().any(|t| t == "deb") {
        return Ok(Vec::new());
    }
    let uris = get("uris").ok_or_else(|| err("stanza has no URIs field".into()))?;
    let suites = get("suites").ok_or_else(|| err("stanza has no Suites field".into()))?;
    let components: Vec<String> = get("components")
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for uri in uris.split_whitespace() {
        if !uri.contains(':') {
            return Err(err(format!("{uri:?} is not a URI")));
        }
        for suite in suites.split_whitespace() {
            if suite.ends_with('/') {
                continue;
            }
            out.push(SourceEntry {
                uri: normalize_uri(uri),
                suite: suite.to_string(),
                components: components.clone(),
                file: path.to_path_buf(),
                line,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
# a comment before everything
Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# comment inside a stanza
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://disabled.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: sid
Components: main
";

    const CLASSIC: &str = "\
# classic
deb http://classic.example/debian bookworm main non-free-firmware
deb-src http://classic.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://classic.example/debian bookworm-updates main # trailing
deb [ arch=amd64,arm64 ] http://classic.example/debian-security bookworm-security main
deb http://classic.example/debian bookworm contrib
deb http://flat.example/repo ./
";

    fn setup(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn deb822_stanzas_map_suites() {
        let dir = setup(&[("sources.list.d/debian.sources", DEB822)]);
        let m = Mirrors::discover(dir.path(), Overrides::default()).unwrap();
        let b = m.suite("bookworm").unwrap();
        assert_eq!(b.base, "http://mirror.example/debian");
        assert_eq!(b.components, ["main", "contrib"]);
        assert!(b.origin.ends_with("debian.sources:2"), "{}", b.origin);
        assert_eq!(
            m.suite("bookworm-updates").unwrap().base,
            "http://mirror.example/debian"
        );
        assert_eq!(
            m.suite("bookworm-security").unwrap().base,
            "http://mirror.example/debian-security"
        );
        // Enabled: no (trixie then comes from bookworm's archive), and
        // deb-src only.
        assert_eq!(
            m.suite("trixie").unwrap().base,
            "http://mirror.example/debian"
        );
        assert!(m.suite("sid").is_err());
        assert_eq!(m.entries().len(), 3);
    }

    #[test]
    fn classic_lines_with_options_and_comments() {
        let dir = setup(&[("sources.list", CLASSIC)]);
        let m = Mirrors::discover(dir.path(), Overrides::default()).unwrap();
        let b = m.suite("bookworm").unwrap();
        assert_eq!(b.base, "http://classic.example/debian");
        // Same URI on a later line adds its components.
        assert_eq!(b.components, ["main", "non-free-firmware", "contrib"]);
        assert_eq!(m.suite("bookworm-updates").unwrap().components, ["main"]);
        assert_eq!(
            m.suite("bookworm-security").unwrap().base,
            "http://classic.example/debian-security"
        );
        assert_eq!(
            m.entries().len(),
            4,
            "deb-src and the flat repository are skipped"
        );
    }

    #[test]
    fn disabled_files_are_skipped_and_order_is_apts() {
        let dir = setup(&[
            (
                "sources.list",
                "deb http://first.example/debian bookworm main\n",
            ),
            (
                "sources.list.d/a.list",
                "deb http://second.example/debian bookworm main\n",
            ),
            (
                "sources.list.d/z.sources.disabled-by-someone",
                "Types: deb\nURIs: http://nope.example/d\nSuites: trixie-updates\n",
            ),
            (
                "sources.list.d/old.list.disabled",
                "deb http://nope.example/d trixie-updates main\n",
            ),
        ]);
        let m = Mirrors::discover(dir.path(), Overrides::default()).unwrap();
        assert_eq!(
            m.suite("bookworm").unwrap().base,
            "http://first.example/debian"
        );
        let e = m.suite("trixie-updates").unwrap_err().to_string();
        assert!(
            e.contains("\"trixie-updates\"") && e.contains("sources.list") && e.contains("a.list"),
            "{e}"
        );
        assert!(!e.contains("disabled"), "{e}");
    }

    #[test]
    fn backports_come_from_their_release_archive_unless_listed() {
        let dir = setup(&[(
            "sources.list",
            "deb http://first.example/debian bookworm main contrib\n",
        )]);
        let m = Mirrors::discover(dir.path(), Overrides::default()).unwrap();
        let b = m.suite("bookworm-backports").unwrap();
        assert_eq!(b.base, "http://first.example/debian");
        assert_eq!(b.components, ["main"]);
        assert!(b.origin.contains("the archive of bookworm"), "{}", b.origin);
        let e = m.suite("hamm-backports").unwrap_err().to_string();
        assert!(e.contains("\"hamm-backports\""), "{e}");
    }

    #[test]
    fn another_release_comes_from_the_archive_of_the_configured_one() {
        let dir = setup(&[("sources.list", CLASSIC)]);
        let m = Mirrors::discover(dir.path(), Overrides::default()).unwrap();
        let t = m.suite("trixie").unwrap();
        assert_eq!(t.base, "http://classic.example/debian");
        assert_eq!(t.components, ["main"]);
        assert!(
            t.origin.contains("(the archive of bookworm)"),
            "{}",
            t.origin
        );
        let s = m.suite("trixie-security").unwrap();
        assert_eq!(s.base, "http://classic.example/debian-security");
        assert!(
            s.origin.contains("(the archive of bookworm-security)"),
            "{}",
            s.origin
        );
        assert!(m
            .suite("trixie-updates")
            .unwrap()
            .origin
            .contains("bookworm-updates"));
        // Not a Debian release kiln knows: no guess.
        assert!(m.suite("sid").is_err());
    }

    #[test]
    fn overrides_replace_base_uris() {
        let dir = setup(&[("sources.list.d/debian.sources", DEB822)]);
        let o = Overrides {
            mirror: Some("http://127.0.0.1:9/debian/".into()),
            security_mirror: Some("http://127.0.0.1:9/security".into()),
        };
        let m = Mirrors::discover(dir.path(), o).unwrap();
        let b = m.suite("bookworm").unwrap();
        assert_eq!(b.base, "http://127.0.0.1:9/debian");
        assert_eq!(b.components, ["main", "contrib"]);
        assert_eq!(b.origin, "--mirror");
        assert_eq!(
            m.suite("bookworm-security").unwrap().base,
            "http://127.0.0.1:9/security"
        );
        // A suite no apt source names is served by the override.
        assert_eq!(m.suite("trixie").unwrap().components, ["main"]);
        let only = Mirrors::discover(
            dir.path(),
            Overrides {
                mirror: Some("http://127.0.0.1:9/d".into()),
                security_mirror: None,
            },
        )
        .unwrap();
        assert_eq!(
            only.suite("bookworm-security").unwrap().base,
            "http://mirror.example/debian-security"
        );
    }

    #[test]
    fn bad_override_and_bad_lines_are_errors() {
        let dir = setup(&[]);
        let e = Mirrors::discover(
            dir.path(),
            Overrides {
                mirror: Some("ftp://x".into()),
                security_mirror: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("--mirror"), "{e}");
        let e = parse_classic(Path::new("s.list"), "\n\ndeb http://x.example/d\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.list:3:"), "{e}");
        let e = parse_deb822(Path::new("x.sources"), "Types: deb\nSuites: bookworm\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.sources:1") && e.contains("URIs"), "{e}");
    }

    #[test]
    fn missing_apt_dir_names_what_was_searched() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirrors::discover(&dir.path().join("nope"), Overrides::default()).unwrap();
        let e = m.suite("bookworm").unwrap_err().to_string();
        assert!(e.contains("sources.list") && e.contains("--mirror"), "{e}");
    }
}
