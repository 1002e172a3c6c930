//! Python wheels for application images: the requirements file's pins
//! resolved to one wheel per package and architecture (`kiln lock`), and
//! those wheels put into the Nix store under their pinned SHA-256 (`kiln
//! fetch`), where the flake's fixed-output paths find them.
//!
//! pip does the talking to the package index: it knows the index the user
//! configured (pip.conf, `PIP_INDEX_URL`, proxies, certificates), as kiln
//! knows the Debian mirror from apt's configuration, and its `download`
//! picks the best wheel for a target platform that is not the host's.
//! kiln never trusts what pip chose: every file's SHA-256 must be one the
//! requirements file pins, and one file per requirement must come back.

use crate::digest::Digest;
use crate::lock::{LockedPython, LockedWheel};
use crate::spec::{Arch, ImageSpec};
use kiln_seed::wheel::{normalize, parse_file_name};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{path}:{line}: {message}")]
    Requirements {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("image {image}: the python builder needs a base with Debian's libc6 for {arch} (the wheels' manylinux platform follows its glibc)")]
    NoGlibc { image: String, arch: Arch },
    #[error("image {image}: {requirement} has no wheel for {arch} (CPython {python}, {platform} or older); build one, or drop {arch} from archs")]
    NoWheel {
        image: String,
        requirement: String,
        arch: Arch,
        python: String,
        platform: String,
    },
    #[error("image {image} ({arch}): the index's wheel for {requirement} is {file}, whose sha256 {got} is not pinned in {pinned}; pin it (regenerate the hashes) or drop {arch} from archs")]
    NotPinned {
        image: String,
        arch: Arch,
        requirement: String,
        file: String,
        got: String,
        pinned: String,
    },
    #[error("image {image} ({arch}): pip download failed: {message}")]
    Pip {
        image: String,
        arch: Arch,
        message: String,
    },
    #[error("image {image} ({arch}): pip returned {file}, {problem}")]
    Unexpected {
        image: String,
        arch: Arch,
        file: String,
        problem: String,
    },
    #[error("image {image} ({arch}): pip returned no wheel for {requirement}")]
    Missing {
        image: String,
        arch: Arch,
        requirement: String,
    },
    #[error("wheel {file} ({arch}): the index served sha256 {got}, but kiln.lock pins {expected}")]
    HashMismatch {
        file: String,
        arch: Arch,
        expected: String,
        got: String,
    },
    #[error("temporary directory under {path}: {error}")]
    TempDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::nixstore::StoreError),
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
}

/// One pinned line of a requirements file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The normalized project name (lowercase, `-` for runs of `-_.`).
    pub name: String,
    pub version: String,
    /// SHA-256 digests (hex) of the files it may be installed from.
    pub hashes: BTreeSet<String>,
    pub line: usize,
}

/// Parses a requirements file in pip's hash-checking form: every
/// requirement is `name==version` (extras allowed) with at least one
/// `--hash=sha256:...`, continued over lines ending in `\`. Anything that
/// would make the set depend on the machine or the day (ranges, URLs,
/// editable installs, environment markers, other options) is refused.
pub fn parse_requirements(path: &Path, text: &str) -> Result<Vec<Requirement>, WheelError> {
    let err = |line: usize, message: String| WheelError::Requirements {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out: Vec<Requirement> = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    for (i, raw) in lines.iter().enumerate() {
        if logical.is_empty() {
            start = i + 1;
        }
        let without_comment = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
            Some(at) => &raw[..at],
            None => raw,
        };
        let (text, continued) = match without_comment.trim_end().strip_suffix('\\') {
            Some(t) => (t, true),
            None => (without_comment, false),
        };
        logical.push_str(text);
        logical.push(' ');
        if continued && i + 1 < lines.len() {
            continue;
        }
        let words: Vec<&str> = logical.split_whitespace().collect();
        if !words.is_empty() {
            let spec = words[0];
            if spec.starts_with('-') {
                return Err(err(start, format!("{spec}: options are not supported; kiln reads pinned requirements with --hash only (the index comes from pip's configuration)")));
            }
            let mut hashes = BTreeSet::new();
            for w in &words[1..] {
                let hash = w.strip_prefix("--hash=").ok_or_else(|| {
                    err(start, format!("{spec}: {w}: only --hash options may follow a requirement (no environment markers)"))
                })?;
                let hex = hash.strip_prefix("sha256:").ok_or_else(|| {
                    err(
                        start,
                        format!("{spec}: {hash}: kiln pins sha256 hashes only"),
                    )
                })?;
                if Digest::from_hex(hex).is_none() {
                    return Err(err(
                        start,
                        format!("{spec}: {hex:?} is not 64 lowercase hex digits"),
                    ));
                }
                hashes.insert(hex.to_string());
            }
            let (name, version) = spec.split_once("==").ok_or_else(|| {
                err(
                    start,
                    format!("{spec}: pin an exact version (name==version)"),
                )
            })?;
            let name = name.split_once('[').map_or(name, |(n, _)| n);
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            let valid_version = !version.is_empty()
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+!-".contains(&b));
            if !valid_name || !valid_version {
                return Err(err(
                    start,
                    format!("{spec}: not a name==version pin (no URLs, ranges or markers)"),
                ));
            }
            if hashes.is_empty() {
                return Err(err(start, format!("{spec}: no --hash=sha256:...; generate the file with hashes (pip-compile --generate-hashes, uv pip compile --generate-hashes)")));
            }
            let name = normalize(name);
            if let Some(first) = out.iter().find(|r| r.name == name) {
                return Err(err(
                    start,
                    format!("{name} is pinned twice (also line {})", first.line),
                ));
            }
            out.push(Requirement {
                name,
                version: version.to_string(),
                hashes,
                line: start,
            });
        }
        logical.clear();
    }
    Ok(out)
}

/// The manylinux platform tags a glibc `2.<minor>` system runs, newest
/// first (pip does not widen an explicit `--platform` by itself).
pub fn platforms(arch: Arch, glibc_minor: u32) -> Vec<String> {
    let machine = match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    };
    let oldest = match arch {
        Arch::Amd64 => 5,
        Arch::Arm64 => 17,
    };
    let mut out: Vec<String> = (oldest..=glibc_minor)
        .rev()
        .map(|m| format!("manylinux_2_{m}_{machine}"))
        .collect();
    if glibc_minor >= 17 {
        out.push(format!("manylinux2014_{machine}"));
    }
    if arch == Arch::Amd64 {
        if glibc_minor >= 12 {
            out.push(format!("manylinux2010_{machine}"));
        }
        out.push(format!("manylinux1_{machine}"));
    }
    out
}

/// `2.36` from a Debian libc6 version such as `2.36-9+deb12u13`.
pub fn glibc_minor(debian_version: &str) -> Option<u32> {
    let upstream = debian_version.split(['-', '+', '~']).next()?;
    let mut parts = upstream.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.parse().ok()
}

/// How kiln runs pip: `KILN_PIP` (a command line) or `python3 -m pip`.
fn pip_command() -> Command {
    let words: Vec<String> = match std::env::var("KILN_PIP") {
        Ok(p) if !p.trim().is_empty() => p.split_whitespace().map(String::from).collect(),
        _ => ["python3", "-m", "pip"].map(String::from).to_vec(),
    };
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    cmd
}

/// What one `pip download` targets.
struct Target<'a> {
    image: &'a str,
    arch: Arch,
    python: &'a str,
    platforms: Vec<String>,
}

impl Target<'_> {
    /// Runs pip for `requirements` into `dest`; the files it saved.
    fn download(&self, requirements: &Path, dest: &Path) -> Result<Vec<PathBuf>, WheelError> {
        let mut cmd = pip_command();
        cmd.args([
            "download",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .args([
            "--only-binary=:all:",
            "--require-hashes",
            "--implementation",
            "cp",
        ])
        .args(["--python-version", self.python])
        .args(["--abi", &format!("cp{}", self.python.replace('.', ""))]);
        for p in &self.platforms {
            cmd.args(["--platform", p]);
        }
        cmd.arg("--dest").arg(dest).arg("-r").arg(requirements);
        let ran = crate::tool::run(&mut cmd)?;
        if !ran.ok {
            let stderr = ran.stderr;
            if let Some(m) = hash_mismatch(&stderr) {
                return Err(WheelError::NotPinned {
                    image: self.image.to_string(),
                    arch: self.arch,
                    requirement: m.requirement,
                    file: m.file,
                    got: m.got,
                    pinned: requirements.display().to_string(),
                });
            }
            if let Some(req) = stderr
                .lines()
                .find_map(|l| l.split("No matching distribution found for ").nth(1))
            {
                return Err(WheelError::NoWheel {
                    image: self.image.to_string(),
                    requirement: req.trim().to_string(),
                    arch: self.arch,
                    python: self.python.to_string(),
                    platform: self.platforms[0].clone(),
                });
            }
            let message: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            return Err(WheelError::Pip {
                image: self.image.to_string(),
                arch: self.arch,
                message: message.join("\n  "),
            });
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dest)
            .map_err(|error| WheelError::Read {
                path: dest.to_path_buf(),
                error,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        Ok(files)
    }
}

/// What pip says when a downloaded file's hash is not among the pins.
struct Mismatch {
    requirement: String,
    file: String,
    got: String,
}

/// Reads pip's hash-mismatch report (`<req> from <url> (from ...):`, then
/// `Expected sha256 ...` and `Got ...` lines) for its first package.
fn hash_mismatch(stderr: &str) -> Option<Mismatch> {
    if !stderr.contains("DO NOT MATCH THE HASHES") {
        return None;
    }
    let mut lines = stderr.lines().skip_while(|l| !l.contains(" from "));
    let head = lines.next()?.trim();
    let (requirement, rest) = head.split_once(" from ")?;
    let url = rest.split_whitespace().next()?;
    let file = url.rsplit('/').next()?.split('#').next()?.to_string();
    let got = lines
        .find_map(|l| l.trim().strip_prefix("Got"))?
        .trim()
        .to_string();
    Some(Mismatch {
        requirement: requirement.to_string(),
        file,
        got,
    })
}

fn sha256_file(path: &Path) -> Result<String, WheelError> {
    let bytes = std::fs::read(path).map_err(|error| WheelError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(Digest::of(&bytes).hex())
}

fn temp_in(tmp: &Path) -> Result<tempfile::TempDir, WheelError> {
    std::fs::create_dir_all(tmp).map_err(|error| WheelError::TempDir {
        path: tmp.to_path_buf(),
        error,
    })?;
    tempfile::Builder::new()
        .prefix("wheels-")
        .tempdir_in(tmp)
        .map_err(|error| WheelError::TempDir {
            path: tmp.to_path_buf(),
            error,
        })
}

/// A requirements file as read: its path, its pins and the digest of its
/// bytes.
pub type ReadRequirements = (PathBuf, Vec<Requirement>, Digest);

/// The requirements file of a Python application and its digest.
pub fn requirements_of(
    project: &Path,
    spec: &ImageSpec,
) -> Option<Result<ReadRequirements, WheelError>> {
    let build = spec.build.as_ref()?;
    let py = build.python.as_ref()?;
    let path = project.join(&build.source).join(&py.requirements);
    Some((|| {
        let bytes = std::fs::read(&path).map_err(|error| WheelError::Read {
            path: path.clone(),
            error,
        })?;
        let reqs = parse_requirements(&path, &String::from_utf8_lossy(&bytes))?;
        Ok((path, reqs, Digest::of(&bytes)))
    })())
}

/// Pins one wheel per requirement and architecture of a Python
/// application, for the glibc of its base (`libc6` per arch).
/// `read` is what [`requirements_of`] gave for `spec`.
pub fn resolve(
    spec: &ImageSpec,
    read: ReadRequirements,
    base_libc: &BTreeMap<Arch, String>,
    tmp: &Path,
) -> Result<Option<LockedPython>, WheelError> {
    let Some(py) = spec.build.as_ref().and_then(|b| b.python.as_ref()) else {
        return Ok(None);
    };
    let (path, reqs, digest) = read;
    let image = spec.full_name();
    let mut wheels = BTreeMap::new();
    let mut platform = BTreeMap::new();
    for arch in &spec.archs {
        let tags = base_libc
            .get(arch)
            .and_then(|v| glibc_minor(v))
            .map(|minor| platforms(*arch, minor))
            .filter(|tags| !tags.is_empty())
            .ok_or_else(|| WheelError::NoGlibc {
                image: image.clone(),
                arch: *arch,
            })?;
        let target = Target {
            image: &image,
            arch: *arch,
            python: &py.version,
            platforms: tags,
        };
        let dir = temp_in(tmp)?;
        let files = target.download(&path, dir.path())?;
        let mut locked = Vec::new();
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let unexpected = |problem: String| WheelError::Unexpected {
                image: image.clone(),
                arch: *arch,
                file: name.clone(),
                problem,
            };
            let parsed = parse_file_name(&name)
                .map_err(|e| unexpected(format!("which is not a wheel ({e})")))?;
            let (project_name, version) = (normalize(&parsed.distribution), parsed.version);
            let req = reqs
                .iter()
                .find(|r| r.name == project_name && r.version == version)
                .ok_or_else(|| unexpected(format!("which {} does not pin", path.display())))?;
            let sha256 = sha256_file(&file)?;
            if !req.hashes.contains(&sha256) {
                return Err(unexpected(format!(
                    "whose sha256 {sha256} is not among the hashes {} pins for {}",
                    path.display(),
                    req.name
                )));
            }
            locked.push(LockedWheel {
                name: req.name.clone(),
                version: version.clone(),
                file: name.clone(),
                sha256,
            });
        }
        for r in &reqs {
            if !locked.iter().any(|w| w.name == r.name) {
                return Err(WheelError::Missing {
                    image: image.clone(),
                    arch: *arch,
                    requirement: format!("{}=={}", r.name, r.version),
                });
            }
        }
        locked.sort_by(|a, b| a.name.cmp(&b.name));
        wheels.insert(*arch, locked);
        platform.insert(*arch, target.platforms[0].clone());
    }
    Ok(Some(LockedPython {
        requirements: digest,
        python: py.version.clone(),
        platforms: platform,
        wheels,
    }))
}

/// What [`fetch`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fetched {
    pub added: usize,
    pub present: usize,
}

/// Puts every wheel the lock pins for `images` (all when `None`) into the
/// store, under its pinned SHA-256. pip downloads each missing wheel by
/// name, version and that hash; kiln checks the bytes again before adding.
pub fn fetch(
    lock: &crate::lock::Lock,
    images: Option<&[String]>,
    archs: Option<&[Arch]>,
    tmp: &Path,
) -> Result<Fetched, WheelError> {
    let mut report = Fetched::default();
    for (image, entry) in &lock.images {
        if images.is_some_and(|i| !i.contains(image)) {
            continue;
        }
        let Some(py) = &entry.python else { continue };
        for (arch, wheels) in &py.wheels {
            if archs.is_some_and(|a| !a.contains(arch)) {
                continue;
            }
            let missing: Vec<&LockedWheel> = wheels
                .iter()
                .filter(|w| !crate::nixstore::is_valid(&w.store_path()))
                .collect();
            report.present += wheels.len() - missing.len();
            if missing.is_empty() {
                continue;
            }
            let dir = temp_in(tmp)?;
            let reqs = dir.path().join("requirements.txt");
            let text: String = missing
                .iter()
                .map(|w| format!("{}=={} --hash=sha256:{}\n", w.name, w.version, w.sha256))
                .collect();
            std::fs::write(&reqs, text).map_err(|error| WheelError::Read {
                path: reqs.clone(),
                error,
            })?;
            let platform = &py.platforms[arch];
            let minor = platform
                .strip_prefix("manylinux_2_")
                .and_then(|r| r.split('_').next())
                .and_then(|m| m.parse().ok())
                .unwrap_or(17);
            let target = Target {
                image,
                arch: *arch,
                python: &py.python,
                platforms: platforms(*arch, minor),
            };
            let out = dir.path().join("wheels");
            // A pin pip refuses is kiln.lock's pin: name it as such.
            let files = target.download(&reqs, &out).map_err(|e| match e {
                WheelError::NotPinned {
                    file, got, arch, ..
                } => WheelError::HashMismatch {
                    expected: missing
                        .iter()
                        .find(|w| w.file == file)
                        .map_or_else(|| "another file".into(), |w| w.sha256.clone()),
                    file,
                    arch,
                    got,
                },
                e => e,
            })?;
            for w in missing {
                let file = out.join(&w.file);
                if !files.contains(&file) {
                    return Err(WheelError::Missing {
                        image: image.clone(),
                        arch: *arch,
                        requirement: w.file.clone(),
                    });
                }
                let got = sha256_file(&file)?;
                if got != w.sha256 {
                    return Err(WheelError::HashMismatch {
                        file: w.file.clone(),
                        arch: *arch,
                        expected: w.sha256.clone(),
                        got,
                    });
                }
                crate::nixstore::add_fixed_flat(&file, &w.store_path())?;
                report.added += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn pinned_requirements_with_continuations_and_comments() {
        let text = format!(
            "# generated\nFlask==3.1.0 \\\n    --hash=sha256:{H} \\\n    --hash=sha256:{}\nmarkupsafe[x]==3.0.2 --hash=sha256:{H}  # speedups\n\n",
            H.replace('1', "2")
        );
        let r = parse_requirements(Path::new("r.txt"), &text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].name.as_str(), r[0].version.as_str(), r[0].line),
            ("flask", "3.1.0", 2)
        );
        assert_eq!(r[0].hashes.len(), 2);
        assert_eq!((r[1].name.as_str(), r[1].line), ("markupsafe", 5));
    }

    #[test]
    fn unpinned_or_unhashed_lines_are_refused_by_line() {
        for (text, needle) in [
            ("flask>=3\n".to_string(), "pin an exact version"),
            ("flask==3.1.0\n".to_string(), "no --hash"),
            ("--index-url x\n".to_string(), "options are not supported"),
            (
                format!("flask==3.1.0 ; python_version<'4' --hash=sha256:{H}\n"),
                "only --hash",
            ),
            (format!("a==1 --hash=md5:{H}\n"), "sha256 hashes only"),
            (
                format!("a==1 --hash=sha256:{H}\nA==2 --hash=sha256:{H}\n"),
                "pinned twice",
            ),
        ] {
            let e = parse_requirements(Path::new("r.txt"), &text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("r.txt:"), "{e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn pips_hash_mismatch_report_is_read() {
        let stderr = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated ...\n    markupsafe==3.0.2 from https://index.invalid/packages/f2/MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_aarch64.whl (from -r r1.txt (line 1)):\n        Expected sha256 a123\n             Got        2cb8\n";
        let m = hash_mismatch(stderr).unwrap();
        assert_eq!(m.requirement, "markupsafe==3.0.2");
        assert_eq!(
            m.file,
            "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_aarch64.whl"
        );
        assert_eq!(m.got, "2cb8");
        assert!(hash_mismatch("ERROR: other").is_none());
    }

    #[test]
    fn manylinux_platforms_follow_glibc() {
        assert_eq!(glibc_minor("2.36-9+deb12u13"), Some(36));
        assert_eq!(glibc_minor("2.41-12"), Some(41));
        assert_eq!(glibc_minor("1.0"), None);
        let p = platforms(Arch::Arm64, 36);
        assert_eq!(p.first().unwrap(), "manylinux_2_36_aarch64");
        assert!(p.contains(&"manylinux_2_17_aarch64".to_string()));
        assert!(!p.iter().any(|t| t.contains("_2_16_")));
        assert!(platforms(Arch::Amd64, 36).contains(&"manylinux1_x86_64".to_string()));
    }

    #[test]
    fn wheel_file_names() {
        let w = parse_file_name(
            "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(
            (normalize(&w.distribution), w.version),
            ("markupsafe".to_string(), "3.0.2".to_string())
        );
        assert!(parse_file_name("flask-3.1.0.tar.gz").is_err());
        let w = LockedWheel {
            name: "markupsafe".into(),
            version: "3.0.2".into(),
            file: "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.whl".into(),
            sha256: H.into(),
        };
        assert!(w
            .store_path()
            .ends_with("-MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.whl"));
    }
}
