//! Validation and normalization of a .deb's data entries before anything of
//! them goes into a layer (docs/internals.md: nothing may land outside the image
//! root, no device nodes, links stay inside the root).
//!
//! Every violation is an error that names the package (name, version,
//! architecture) and the offending entry. What is kept is kept exactly:
//! mode & 07777 (setuid/setgid included: policy reports them later), numeric
//! owners and the .deb's own mtimes, because a layer must be a function of
//! its .debs alone (docs/internals.md, Determinism).

use crate::deb::{TarEntry, TarKind};
use crate::tarwrite::{Entry, EntryKind};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{pkg}: entry {path:?} has an absolute name")]
    Absolute { pkg: String, path: String },
    #[error("{pkg}: entry {path:?} has a `..` component")]
    DotDot { pkg: String, path: String },
    #[error("{pkg}: entry {path:?}: {why}")]
    BadName {
        pkg: String,
        path: String,
        why: &'static str,
    },
    #[error("{pkg}: entry {path:?} is a {kind}, which kiln does not put into images")]
    Special {
        pkg: String,
        path: String,
        kind: String,
    },
    #[error("{pkg}: symlink {path:?} -> {target:?} resolves outside the image root")]
    SymlinkEscape {
        pkg: String,
        path: String,
        target: String,
    },
    #[error("{pkg}: symlink {path:?} has an empty target")]
    EmptySymlink { pkg: String, path: String },
    #[error("{pkg}: hard link {path:?} -> {target:?}: {why}")]
    Hardlink {
        pkg: String,
        path: String,
        target: String,
        why: &'static str,
    },
    /// `owner`: the package of the symlink (in a merged layer it may be
    /// another one).
    #[error("{pkg}: entry {path:?} would be written through the symlink {symlink:?} of {owner}")]
    ThroughSymlink {
        pkg: String,
        path: String,
        symlink: String,
        owner: String,
    },
    #[error("{pkg}: entry {path:?} lies below {parent:?} of {owner}, which is not a directory")]
    ParentNotDirectory {
        pkg: String,
        path: String,
        parent: String,
        owner: String,
    },
    #[error("{pkg}: entry {path:?} appears twice with different type, content, mode or owner")]
    Duplicate { pkg: String, path: String },
    #[error("{pkg}: the archive root entry {path:?} is not a directory")]
    RootNotDirectory { pkg: String, path: String },
}

/// Why a name is unacceptable (mapped to an [`Error`] by the caller, which
/// knows whether it was an entry name or a hard link target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    Absolute,
    DotDot,
    Newline,
}

/// Normalizes a tar entry name: strips a leading `./`, trailing `/`, empty
/// and `.` components. Returns `""` for the archive root. Absolute names and
/// `..` components are refused, and so are newlines (dpkg's databases and
/// md5sums are line-based).
pub fn normalize_name(name: &str) -> Result<String, NameProblem> {
    let rest = name.strip_prefix("./").unwrap_or(name);
    if rest.starts_with('/') {
        return Err(NameProblem::Absolute);
    }
    let mut parts = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(NameProblem::DotDot),
            c if c.contains('\n') => return Err(NameProblem::Newline),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Whether a relative symlink target, resolved lexically from the link's
/// directory, stays inside the root. Absolute targets always do: they are
/// resolved against the image root at run time.
pub fn symlink_stays_inside(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth: i64 = path.split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// Validates a package's data entries (in archive order) and returns them
/// normalized, in archive order, without the root entry and without exact
/// duplicates. Hard links point at the regular file of their group (never
/// at another link) and carry that file's mode, owner and mtime, since they
/// share its inode. `pkg` is the package as it should appear in messages
/// (`name version (arch)`).
pub fn validate(pkg: &str, entries: Vec<TarEntry>) -> Result<Vec<Entry>, Error> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for e in entries {
        let pkg_s = || pkg.to_string();
        let path = normalize_name(&e.name).map_err(|p| match p {
            NameProblem::Absolute => Error::Absolute {
                pkg: pkg_s(),
                path: e.name.clone(),
            },
            NameProblem::DotDot => Error::DotDot {
                pkg: pkg_s(),
                path: e.name.clone(),
            },
            NameProblem::Newline => Error::BadName {
                pkg: pkg_s(),
                path: e.name.clone(),
                why: "newline in name",
            },
        })?;
        if path.is_empty() {
            if e.kind != TarKind::Directory {
                return Err(Error::RootNotDirectory {
                    pkg: pkg_s(),
                    path: e.name,
                });
            }
            continue;
        }
        let special = |kind: &str| Error::Special {
            pkg: pkg_s(),
            path: path.clone(),
            kind: kind.to_string(),
        };
        let mut entry = Entry {
            path: path.clone(),
            kind: EntryKind::Directory,
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        };
        entry.kind = match e.kind {
            TarKind::File(data) => EntryKind::File(data),
            TarKind::Stored(stored) => EntryKind::Stored(stored),
            TarKind::Directory => EntryKind::Directory,
            TarKind::Symlink(target) => {
                if target.is_empty() {
                    return Err(Error::EmptySymlink { pkg: pkg_s(), path });
                }
                if !symlink_stays_inside(&path, &target) {
                    return Err(Error::SymlinkEscape {
                        pkg: pkg_s(),
                        path,
                        target,
                    });
                }
                EntryKind::Symlink(target)
            }
            TarKind::Hardlink(target) => {
                let bad = |why| Error::Hardlink {
                    pkg: pkg_s(),
                    path: path.clone(),
                    target: target.clone(),
                    why,
                };
                let t = normalize_name(&target).map_err(|p| {
                    bad(match p {
                        NameProblem::Absolute => "absolute target",
                        NameProblem::DotDot => "target has a `..` component",
                        NameProblem::Newline => "newline in target",
                    })
                })?;
                let i = *index
                    .get(&t)
                    .ok_or_else(|| bad("target is not an earlier entry of the package"))?;
                let file = &out[i];
                let root = match &file.kind {
                    EntryKind::File(_) | EntryKind::Stored(_) => t,
                    EntryKind::Hardlink(r) => r.clone(),
                    _ => return Err(bad("target is not a regular file")),
                };
                entry.mode = file.mode;
                entry.uid = file.uid;
                entry.gid = file.gid;
                entry.mtime = file.mtime;
                EntryKind::Hardlink(root)
            }
            TarKind::CharDevice => return Err(special("character device")),
            TarKind::BlockDevice => return Err(special("block device")),
            TarKind::Fifo => return Err(special("FIFO")),
            TarKind::Other(b) => {
                return Err(special(&format!("tar entry of type {:?}", b as char)))
            }
        };
        if let Some(&i) = index.get(&path) {
            let old = &out[i];
            // An identical repeat changes nothing (the first one stays, so
            // hard links that already point at it remain valid).
            if old.kind == entry.kind
                && (old.mode, old.uid, old.gid) == (entry.mode, entry.uid, entry.gid)
            {
                continue;
            }
            return Err(Error::Duplicate { pkg: pkg_s(), path });
        }
        if let EntryKind::Hardlink(root) = &entry.kind {
            if *root == path {
                return Err(Error::Hardlink {
                    pkg: pkg_s(),
                    path: path.clone(),
                    target: root.clone(),
                    why: "links to itself",
                });
            }
        }
        index.insert(path, out.len());
        out.push(entry);
    }
    check_parents(out.iter().map(|e| (pkg, e.path.as_str())), |p| {
        index.get(p).map(|&i| (&out[i].kind, pkg))
    })?;
    Ok(out)
}

/// Refuses entries below a symlink or a non-directory: extracting them
/// would write through the link (or fail). `entries` yields (package label,
/// path); `lookup` finds the entry at a path as (its kind, its package's
/// label). Used per package here and over the union of a merged layer by
/// the layer step, where the symlink may come from another package.
pub fn check_parents<'a, 'b>(
    entries: impl IntoIterator<Item = (&'b str, &'b str)>,
    lookup: impl Fn(&str) -> Option<(&'a EntryKind, &'a str)>,
) -> Result<(), Error> {
    for (pkg, path) in entries {
        let mut end = 0;
        while let Some(off) = path[end..].find('/') {
            end += off;
            let parent = &path[..end];
            match lookup(parent) {
                Some((EntryKind::Symlink(_), owner)) => {
                    return Err(Error::ThroughSymlink {
                        pkg: pkg.to_string(),
                        path: path.to_string(),
                        symlink: parent.to_string(),
                        owner: owner.to_string(),
                    })
                }
                Some((
                    EntryKind::File(_) | EntryKind::Stored(_) | EntryKind::Hardlink(_),
                    owner,
                )) => {
                    return Err(Error::ParentNotDirectory {
                        pkg: pkg.to_string(),
                        path: path.to_string(),
                        parent: parent.to_string(),
                        owner: owner.to_string(),
                    })
                }
                _ => {}
            }
            end += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKG: &str = "hello 1.0-1 (amd64)";

    fn te(name: &str, kind: TarKind) -> TarEntry {
        let mode = if matches!(kind, TarKind::Directory) {
            0o755
        } else {
            0o644
        };
        TarEntry {
            name: name.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 5,
        }
    }
    fn d(name: &str) -> TarEntry {
        te(name, TarKind::Directory)
    }
    fn f(name: &str, data: &[u8]) -> TarEntry {
        te(name, TarKind::File(data.to_vec()))
    }
    fn s(name: &str, target: &str) -> TarEntry {
        te(name, TarKind::Symlink(target.into()))
    }
    fn h(name: &str, target: &str) -> TarEntry {
        te(name, TarKind::Hardlink(target.into()))
    }
    fn err(entries: Vec<TarEntry>) -> String {
        let e = validate(PKG, entries).unwrap_err().to_string();
        assert!(e.contains(PKG), "error does not name the package: {e}");
        e
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("./usr/bin/"), Ok("usr/bin".into()));
        assert_eq!(normalize_name("./"), Ok("".into()));
        assert_eq!(normalize_name("."), Ok("".into()));
        assert_eq!(normalize_name("usr//./lib"), Ok("usr/lib".into()));
        assert_eq!(normalize_name("/etc/shadow"), Err(NameProblem::Absolute));
        assert_eq!(normalize_name(".//etc"), Err(NameProblem::Absolute));
        assert_eq!(normalize_name("./usr/../../etc"), Err(NameProblem::DotDot));
        assert_eq!(normalize_name("a\nb"), Err(NameProblem::Newline));
    }

    #[test]
    fn a_normal_package_passes_and_keeps_metadata() {
        let mut suid = f("./usr/bin/su", b"su");
        suid.mode = 0o104755;
        suid.gid = 42;
        suid.mtime = 99;
        let out = validate(
            PKG,
            vec![
                d("./"),
                d("./usr/"),
                d("./usr/bin/"),
                suid,
                h("./usr/bin/su2", "./usr/bin/su"),
                h("usr/bin/su3", "usr/bin/su2"),
                s("./usr/bin/x", "../lib/x"),
                s("./lib64", "/lib/x86_64-linux-gnu"),
            ],
        )
        .unwrap();
        let paths: Vec<_> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr/bin",
                "usr/bin/su",
                "usr/bin/su2",
                "usr/bin/su3",
                "usr/bin/x",
                "lib64"
            ]
        );
        assert_eq!((out[2].mode, out[2].gid, out[2].mtime), (0o4755, 42, 99));
        assert_eq!(out[3].kind, EntryKind::Hardlink("usr/bin/su".into()));
        assert_eq!(out[4].kind, EntryKind::Hardlink("usr/bin/su".into()));
        assert_eq!((out[4].mode, out[4].gid, out[4].mtime), (0o4755, 42, 99));
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        let e = err(vec![d("./"), f("./../etc/passwd", b"x")]);
        assert!(e.contains("../etc/passwd") && e.contains(".."), "{e}");
        let e = err(vec![f("/etc/passwd", b"x")]);
        assert!(e.contains("/etc/passwd") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        let e = err(vec![s("./usr/lib/x", "../../../../etc/shadow")]);
        assert!(
            e.contains("usr/lib/x") && e.contains("../../../../etc/shadow"),
            "{e}"
        );
        assert!(validate(PKG, vec![s("./usr/lib/x", "../../etc/shadow")]).is_ok());
        assert!(validate(PKG, vec![s("./x", "..")]).is_err());
        assert!(validate(PKG, vec![s("./a/x", "../b/../../c")]).is_err());
        assert!(validate(PKG, vec![s("./usr/lib/x", "/../../etc/shadow")]).is_ok());
        assert!(err(vec![s("./x", "")]).contains("empty"));
    }

    #[test]
    fn device_nodes_fifos_and_odd_types_are_refused() {
        for (kind, word) in [
            (TarKind::CharDevice, "character device"),
            (TarKind::BlockDevice, "block device"),
            (TarKind::Fifo, "FIFO"),
            (TarKind::Other(b'S'), "'S'"),
        ] {
            let e = err(vec![te("./dev/thing", kind)]);
            assert!(e.contains("dev/thing") && e.contains(word), "{e}");
        }
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let e = err(vec![
            s("./usr/lib/evil", "/etc"),
            f("./usr/lib/evil/shadow", b"x"),
        ]);
        assert!(
            e.contains("usr/lib/evil/shadow") && e.contains("through"),
            "{e}"
        );
        // Also when the link comes after the entry below it.
        assert!(validate(PKG, vec![f("./a/b", b"x"), s("./a", "c")]).is_err());
        let e = err(vec![f("./a", b"x"), f("./a/b", b"y")]);
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn hard_links_must_point_at_earlier_files() {
        let e = err(vec![h("./usr/bin/a", "./usr/bin/missing")]);
        assert!(e.contains("usr/bin/a") && e.contains("missing"), "{e}");
        assert!(validate(PKG, vec![h("./a", "./b"), f("./b", b"x")]).is_err());
        assert!(validate(PKG, vec![d("./d"), h("./a", "./d")]).is_err());
        assert!(validate(PKG, vec![s("./l", "b"), h("./a", "./l")]).is_err());
        assert!(validate(PKG, vec![f("./b", b"x"), h("./a", "../b")]).is_err());
        assert!(validate(PKG, vec![f("./b", b"x"), h("./a", "/b")]).is_err());
    }

    #[test]
    fn duplicates_must_be_identical() {
        let out = validate(
            PKG,
            vec![d("./a"), d("./a/"), f("./a/x", b"1"), f("a/x", b"1")],
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        let e = err(vec![f("./a", b"1"), f("./a", b"2")]);
        assert!(e.contains("twice"), "{e}");
        assert!(validate(PKG, vec![d("./a"), s("./a", "b")]).is_err());
    }

    #[test]
    fn root_must_be_a_directory() {
        assert!(validate(PKG, vec![f("./", b"")]).is_err());
    }
}
