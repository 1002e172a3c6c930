//! Go modules of a vendored Go build: `vendor/modules.txt` (what `go mod
//! vendor` copied) checked against `go.sum` (the hashes the developer's Go
//! accepted), read by the sandbox before `go build` and by the driver for
//! the provenance.
//!
//! In vendor mode Go itself checks modules.txt against go.mod's versions,
//! but never looks at go.sum, and the module proxy is unreachable in the
//! sandbox, so a vendored module whose version go.sum does not vouch for
//! would build silently. go.sum's `h1:` covers the whole module, while
//! vendor/ holds only the packages the build needs, so the hash itself
//! cannot be recomputed from vendor/: what is checked is that every
//! vendored module and version is one go.sum pins, and the hash go.sum
//! gives is what the provenance records.

use std::collections::BTreeMap;
use std::path::Path;

/// A vendored module and the go.sum hash of the module it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendoredModule {
    pub path: String,
    pub version: String,
    /// `h1:<base64>` from go.sum for the module that was vendored (the
    /// replacement's, for a `=>` line with a version); `None` for a
    /// replacement by a local directory, which go.sum does not list.
    pub sum: Option<String>,
}

impl VendoredModule {
    /// The go.sum hash as in-toto's `dirHash` (lowercase hex).
    pub fn dir_hash(&self) -> Option<String> {
        use base64::Engine;
        let b64 = self.sum.as_deref()?.strip_prefix("h1:")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        Some(hex::encode(bytes))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoModError {
    #[error("vendor/modules.txt:{line}: {message}")]
    ModulesTxt { line: usize, message: String },
    #[error("go.sum:{line}: {message}")]
    GoSum { line: usize, message: String },
    #[error("vendored module {path} {version} does not match go.sum: {problem}; run `go mod tidy && go mod vendor` and commit both")]
    NotInGoSum {
        path: String,
        version: String,
        problem: String,
    },
    #[error("go.mod requires modules ({first}...) but there is no vendor/modules.txt: the module proxy is unreachable in the sandbox; run `go mod vendor` and commit vendor/")]
    NotVendored { first: String },
    #[error("reading {path}: {error}")]
    Read { path: String, error: String },
}

/// go.sum: `(module, version) -> h1:...` (the `/go.mod` lines are kept
/// apart under the version `<version>/go.mod`).
pub fn parse_go_sum(text: &str) -> Result<BTreeMap<(String, String), String>, GoModError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if words.len() != 3 || !words[2].starts_with("h1:") {
            return Err(GoModError::GoSum {
                line: i + 1,
                message: format!("{line:?} is not `<module> <version> h1:<hash>`"),
            });
        }
        out.insert(
            (words[0].to_string(), words[1].to_string()),
            words[2].to_string(),
        );
    }
    Ok(out)
}

/// The modules `vendor/modules.txt` lists, each with its go.sum hash.
pub fn check_vendor(modules_txt: &str, go_sum: &str) -> Result<Vec<VendoredModule>, GoModError> {
    let sums = parse_go_sum(go_sum)?;
    let mut out = Vec::new();
    for (i, line) in modules_txt.lines().enumerate() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let bad = |message: String| GoModError::ModulesTxt {
            line: i + 1,
            message,
        };
        let (module, replacement) = match rest.split_once(" => ") {
            Some((m, r)) => (m, Some(r)),
            None => (rest, None),
        };
        let mut m = module.split_whitespace();
        let path = m
            .next()
            .ok_or_else(|| bad(format!("{line:?} names no module")))?;
        let version = m.next().unwrap_or_default();
        // The module whose files were vendored: the replacement when it
        // has a version, nothing to check for a local directory.
        let (sum_path, sum_version) =
            match replacement.map(|r| r.split_whitespace().collect::<Vec<_>>()) {
                None => (path, version),
                Some(r) if r.len() == 2 => (r[0], r[1]),
                Some(r) if r.len() == 1 => {
                    out.push(VendoredModule {
                        path: path.to_string(),
                        version: version.to_string(),
                        sum: None,
                    });
                    continue;
                }
                Some(_) => return Err(bad(format!("{line:?}: unreadable replacement"))),
            };
        if sum_version.is_empty() {
            return Err(bad(format!("{line:?}: module {path} has no version")));
        }
        let Some(sum) = sums.get(&(sum_path.to_string(), sum_version.to_string())) else {
            let pinned: Vec<&str> = sums
                .keys()
                .filter(|(p, v)| p == sum_path && !v.ends_with("/go.mod"))
                .map(|(_, v)| v.as_str())
                .collect();
            return Err(GoModError::NotInGoSum {
                path: sum_path.to_string(),
                version: sum_version.to_string(),
                problem: if pinned.is_empty() {
                    "go.sum has no hash for this module".to_string()
                } else {
                    format!("go.sum pins {}", pinned.join(", "))
                },
            });
        };
        out.push(VendoredModule {
            path: path.to_string(),
            version: version.to_string(),
            sum: Some(sum.clone()),
        });
    }
    Ok(out)
}

/// The first module go.mod requires, if any (`require x v` or a
/// `require (...)` block).
pub fn first_requirement(go_mod: &str) -> Option<String> {
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        if in_block {
            if line == ")" {
                in_block = false;
            } else if let Some(m) = line.split_whitespace().next() {
                return Some(m.to_string());
            }
        } else if line == "require (" {
            in_block = true;
        } else if let Some(rest) = line.strip_prefix("require ") {
            return rest.split_whitespace().next().map(String::from);
        }
    }
    None
}

/// Reads a Go source directory: its vendored modules checked against
/// go.sum, or an error when go.mod requires modules that are not vendored.
/// A module without requirements has no modules.
pub fn vendored_modules(dir: &Path) -> Result<Vec<VendoredModule>, GoModError> {
    let read = |name: &str| -> Result<Option<String>, GoModError> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GoModError::Read {
                path: name.to_string(),
                error: e.to_string(),
            }),
        }
    };
    let Some(modules) = read("vendor/modules.txt")? else {
        return match read("go.mod")?.as_deref().and_then(first_requirement) {
            Some(first) => Err(GoModError::NotVendored { first }),
            None => Ok(Vec::new()),
        };
    };
    let sum = read("go.sum")?.unwrap_or_default();
    check_vendor(&modules, &sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "github.com/google/uuid v1.3.0 h1:t6JiXgmwXMjEs8VusXIJk2BXHsn+wx8BZdTaoZ5fu7I=\ngithub.com/google/uuid v1.3.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n";
    const MODULES: &str = "# github.com/google/uuid v1.3.0\n## explicit\ngithub.com/google/uuid\n";

    #[test]
    fn vendored_modules_carry_their_go_sum_hash() {
        let m = check_vendor(MODULES, SUM).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].path, "github.com/google/uuid");
        assert_eq!(m[0].version, "v1.3.0");
        assert_eq!(
            m[0].sum.as_deref(),
            Some("h1:t6JiXgmwXMjEs8VusXIJk2BXHsn+wx8BZdTaoZ5fu7I=")
        );
        assert_eq!(m[0].dir_hash().unwrap().len(), 64);
    }

    #[test]
    fn a_version_go_sum_does_not_pin_is_named() {
        let e = check_vendor(&MODULES.replace("v1.3.0", "v1.3.1"), SUM).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vendored module github.com/google/uuid v1.3.1 does not match go.sum: go.sum pins v1.3.0; run `go mod tidy && go mod vendor` and commit both"
        );
        let e = check_vendor(MODULES, "").unwrap_err();
        assert!(e.to_string().contains("go.sum has no hash"), "{e}");
        let e = check_vendor(MODULES, "broken line\n").unwrap_err();
        assert!(e.to_string().starts_with("go.sum:1:"), "{e}");
    }

    #[test]
    fn replacements_are_checked_as_the_module_vendored() {
        let modules = "# example.com/a v1.0.0 => example.com/b v1.1.0\nexample.com/a\n# example.com/c v0.0.0 => ../c\nexample.com/c\n";
        let sum = "example.com/b v1.1.0 h1:AAAA\n";
        let m = check_vendor(modules, sum).unwrap();
        assert_eq!(m[0].sum.as_deref(), Some("h1:AAAA"));
        assert_eq!(m[1].sum, None);
        assert!(check_vendor(modules, "example.com/a v1.0.0 h1:AAAA\n").is_err());
    }

    #[test]
    fn requirements_without_vendor_are_found() {
        assert_eq!(
            first_requirement("module x\n\ngo 1.23\n\nrequire (\n\tgithub.com/google/uuid v1.3.0 // indirect\n)\n"),
            Some("github.com/google/uuid".into())
        );
        assert_eq!(
            first_requirement("module x\nrequire a.b/c v1\n"),
            Some("a.b/c".into())
        );
        assert_eq!(first_requirement("module x\n\ngo 1.23\n"), None);
    }
}
