//! The `root` step: unpacks pinned .debs into one FHS tree, the root a
//! toolchain runs in (entered with user and mount namespaces and chroot by
//! the steps that compile). No maintainer script runs; what one would have
//! made that a toolchain needs (the `update-alternatives` links such as
//! `/usr/bin/cc`) is declared in the input.
//!
//! As dpkg does for `Multi-Arch: same` packages, a path that two packages
//! both ship must be the same in both (a directory, or a file with the same
//! bytes and mode, or the same link); anything else is an error naming both
//! packages. Every entry goes through the same checks as image layers
//! (`tarsafe`: no `..`, no escape through symlinks, no device nodes), and
//! setuid or setgid files are refused: a build root has no use for them.

use super::deb;
use super::tarsafe;
use super::tarwrite::{Entry, EntryKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("root input: {0}")]
    Input(serde_json::Error),
    #[error("reading {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{pkg}: {error}")]
    Deb { pkg: String, error: deb::Error },
    #[error(transparent)]
    Unsafe(#[from] tarsafe::Error),
    #[error("{pkg}: {path:?} is setuid or setgid (mode {mode:o}); a build root refuses it")]
    Setid {
        pkg: String,
        path: String,
        mode: u32,
    },
    #[error("{path:?} is shipped by both {first} and {second}, differently (dpkg would refuse the second)")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("link {path:?}: {why}")]
    Link { path: String, why: String },
    #[error("writing {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// One .deb of the root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// `name version (arch)`, for messages.
    pub name: String,
    /// The .deb (a store path).
    pub deb: PathBuf,
}

/// Input of the `root` step (docs/internals.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub packages: Vec<Package>,
    /// Absolute path in the root → symlink target, as the alternatives
    /// system would have made them (`/usr/bin/cc` → `gcc-12`).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

/// What a path is, as far as two packages must agree on it: kind, mode
/// and content digest (not the content: a toolchain is hundreds of MB).
#[derive(PartialEq, Eq)]
enum Shape {
    Directory,
    File {
        mode: u32,
        digest: crate::digest::Digest,
    },
    Symlink(String),
    Hardlink(String),
}

fn shape(e: &Entry) -> Shape {
    match &e.kind {
        EntryKind::Directory => Shape::Directory,
        EntryKind::File(bytes) => Shape::File {
            mode: e.mode,
            digest: crate::digest::Digest::of(bytes),
        },
        EntryKind::Stored(s) => Shape::File {
            mode: e.mode,
            digest: crate::digest::Digest(s.sha256),
        },
        EntryKind::Symlink(t) => Shape::Symlink(t.clone()),
        EntryKind::Hardlink(t) => Shape::Hardlink(t.clone()),
    }
}

/// The paths placed so far, with the package that placed each.
#[derive(Default)]
struct Placed {
    paths: BTreeMap<String, (Shape, String)>,
}

impl Placed {
    /// Checks a package's validated entries against what is placed; the
    /// ones that are new (a path shipped the same way twice is kept once).
    fn place(&mut self, pkg: &str, entries: Vec<Entry>) -> Result<Vec<Entry>, Error> {
        let mut new = Vec::with_capacity(entries.len());
        for e in entries {
            if matches!(
                e.kind,
                EntryKind::File(_) | EntryKind::Stored(_) | EntryKind::Hardlink(_)
            ) && e.mode & 0o6000 != 0
            {
                return Err(Error::Setid {
                    pkg: pkg.to_string(),
                    path: e.path,
                    mode: e.mode,
                });
            }
            let this = shape(&e);
            match self.paths.get(&e.path) {
                Some((placed, _)) if *placed == this => {}
                Some((_, owner)) => {
                    return Err(Error::Conflict {
                        path: e.path,
                        first: owner.clone(),
                        second: pkg.to_string(),
                    })
                }
                None => {
                    self.paths.insert(e.path.clone(), (this, pkg.to_string()));
                    new.push(e);
                }
            }
        }
        Ok(new)
    }
}

/// Merges the packages' entries into one tree (see the module docs).
pub fn merge(packages: Vec<(String, Vec<deb::TarEntry>)>) -> Result<Vec<Entry>, Error> {
    let mut placed = Placed::default();
    let mut out = Vec::new();
    for (pkg, entries) in packages {
        out.extend(placed.place(&pkg, tarsafe::validate(&pkg, entries)?)?);
    }
    // Archive order: a hard link comes after the file it links to.
    Ok(out)
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Write {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes one entry under `out`.
fn write_entry(e: &Entry, out: &Path) -> Result<(), Error> {
    let path = out.join(&e.path);
    // A data tar may leave a parent directory implicit.
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_err(parent))?;
    }
    match &e.kind {
        EntryKind::Directory => std::fs::create_dir_all(&path).map_err(write_err(&path))?,
        EntryKind::File(bytes) => {
            std::fs::write(&path, bytes).map_err(write_err(&path))?;
            // Nix keeps only the executable bit; keep it exactly.
            let mode = if e.mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(write_err(&path))?;
        }
        // The root step reads .debs into memory, never into a spill file.
        EntryKind::Stored(_) => unreachable!("a stored entry in the root step"),
        EntryKind::Symlink(target) => symlink(target, &path).map_err(write_err(&path))?,
        EntryKind::Hardlink(target) => {
            std::fs::hard_link(out.join(target), &path).map_err(write_err(&path))?
        }
    }
    Ok(())
}

/// Makes the declared `links` under `out`.
fn write_links(links: &BTreeMap<String, String>, out: &Path) -> Result<(), Error> {
    for (path, target) in links {
        let rel =
            tarsafe::normalize_name(path.trim_start_matches('/')).map_err(|p| Error::Link {
                path: path.clone(),
                why: format!("not a path inside the root ({p:?})"),
            })?;
        if !tarsafe::symlink_stays_inside(&rel, target) {
            return Err(Error::Link {
                path: path.clone(),
                why: format!("its target {target:?} resolves outside the root"),
            });
        }
        let at = out.join(&rel);
        if at.symlink_metadata().is_ok() {
            return Err(Error::Link {
                path: path.clone(),
                why: "a package already ships that path".into(),
            });
        }
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(write_err(parent))?;
        }
        symlink(target, &at).map_err(write_err(&at))?;
    }
    Ok(())
}

/// Writes `entries` (in archive order) under `out`, then the declared `links`.
pub fn write(entries: &[Entry], links: &BTreeMap<String, String>, out: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    for e in entries {
        write_entry(e, out)?;
    }
    write_links(links, out)
}

/// The `root` step: reads the input, then unpacks one .deb at a time,
/// writing what it adds as it goes (only each path's shape is kept, so
/// memory follows the largest package, not the toolchain), then the links.
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let mut placed = Placed::default();
    let mut written = 0;
    for p in &input.packages {
        let bytes = std::fs::read(&p.deb).map_err(|error| Error::Read {
            path: p.deb.clone(),
            error,
        })?;
        let parsed = deb::parse(&bytes).map_err(|error| Error::Deb {
            pkg: p.name.clone(),
            error,
        })?;
        drop(bytes);
        let entries = placed.place(&p.name, tarsafe::validate(&p.name, parsed.data)?)?;
        for e in &entries {
            write_entry(e, out)?;
        }
        written += entries.len();
    }
    write_links(&input.links, out)?;
    eprintln!(
        "kiln-seed root: {} packages, {written} entries, {} links",
        input.packages.len(),
        input.links.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deb::{TarEntry, TarKind};

    fn file(name: &str, data: &[u8], mode: u32) -> TarEntry {
        TarEntry {
            name: name.into(),
            kind: TarKind::File(data.to_vec()),
            mode,
            uid: 0,
            gid: 0,
            mtime: 1,
        }
    }

    fn dir(name: &str) -> TarEntry {
        TarEntry {
            name: name.into(),
            kind: TarKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = crate::oci::tests::scratch(name);
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn identical_overlaps_merge_and_different_ones_name_both_packages() {
        let amd = vec![
            dir("./"),
            dir("./usr/"),
            file("./usr/share/doc", b"same", 0o644),
        ];
        let arm = vec![
            dir("./"),
            dir("./usr/"),
            file("./usr/share/doc", b"same", 0o644),
        ];
        let merged = merge(vec![
            ("a (amd64)".into(), amd.clone()),
            ("a (arm64)".into(), arm),
        ])
        .unwrap();
        assert_eq!(
            merged.iter().filter(|e| e.path == "usr/share/doc").count(),
            1
        );
        let other = vec![dir("./"), file("./usr/share/doc", b"different", 0o644)];
        let e = merge(vec![("a (amd64)".into(), amd), ("b (amd64)".into(), other)]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("usr/share/doc") && msg.contains("a (amd64)") && msg.contains("b (amd64)"),
            "{msg}"
        );
    }

    #[test]
    fn setuid_devices_and_escapes_are_refused() {
        let e = merge(vec![(
            "su (amd64)".into(),
            vec![file("./bin/su", b"x", 0o4755)],
        )])
        .unwrap_err();
        assert!(e.to_string().contains("setuid"), "{e}");
        let dev = TarEntry {
            name: "./dev/null".into(),
            kind: TarKind::CharDevice,
            mode: 0o666,
            uid: 0,
            gid: 0,
            mtime: 1,
        };
        assert!(merge(vec![("d (amd64)".into(), vec![dev])]).is_err());
        let escape = file("./../etc/passwd", b"x", 0o644);
        assert!(merge(vec![("e (amd64)".into(), vec![escape])]).is_err());
    }

    #[test]
    fn writes_files_links_and_declared_alternatives() {
        let out = scratch("root-write");
        let entries = merge(vec![(
            "gcc (amd64)".into(),
            vec![
                dir("./"),
                dir("./usr/"),
                dir("./usr/bin/"),
                file("./usr/bin/gcc-12", b"#!gcc", 0o755),
                file("./usr/share/x", b"doc", 0o644),
                TarEntry {
                    name: "./lib64".into(),
                    kind: TarKind::Symlink("usr/lib64".into()),
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    mtime: 1,
                },
            ],
        )])
        .unwrap();
        let links = BTreeMap::from([("/usr/bin/cc".to_string(), "gcc-12".to_string())]);
        write(&entries, &links, &out).unwrap();
        let gcc = std::fs::metadata(out.join("usr/bin/gcc-12")).unwrap();
        assert_eq!(gcc.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(out.join("usr/bin/cc")).unwrap(),
            Path::new("gcc-12")
        );
        assert_eq!(
            std::fs::read_link(out.join("lib64")).unwrap(),
            Path::new("usr/lib64")
        );
        // A declared link over a shipped path, or out of the root, is refused.
        let out2 = scratch("root-write-clash");
        let clash = BTreeMap::from([("/usr/bin/gcc-12".to_string(), "x".to_string())]);
        assert!(write(&entries, &clash, &out2)
            .unwrap_err()
            .to_string()
            .contains("already ships"));
        let out3 = scratch("root-write-escape");
        let escape = BTreeMap::from([("/usr/bin/x".to_string(), "../../../../etc".to_string())]);
        assert!(write(&entries, &escape, &out3)
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }
}
