//! File-system helpers: outputs are written to a temporary file next to
//! their destination and renamed into place, so a failure never leaves a
//! half-written file behind; and a directory is only ever replaced when it
//! is an OCI image layout, never a directory that holds anything else.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The destination exists and holds something that is not an OCI
    /// layout: kiln never deletes it, whatever the flags.
    #[error("{} holds {holds}, not an OCI image layout: kiln replaces only a layout (blobs/, index.json, oci-layout) or an empty directory; choose a new or empty directory", path.display())]
    NotALayout { path: PathBuf, holds: String },
    // The cause is printed inline, not also chained as a `source`.
    #[error("{what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ReplaceError + 'a {
    move |error| ReplaceError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to `path` atomically (same-directory temp file + fsync + rename).
/// Copies a crate's sources from `src` into `dst` (created), leaving out
/// its build output (`target/`): regular files and directories, in name
/// order.
pub fn copy_crate_sources(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name == "target" {
            continue;
        }
        let (from, to) = (e.path(), dst.join(&name));
        let kind = e.file_type()?;
        if kind.is_dir() {
            copy_crate_sources(&from, &to)?;
        } else if kind.is_file() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether `dest` may be replaced by a new layout: it does not exist, is
/// an empty directory, or is an OCI image layout (only `oci-layout`,
/// `index.json` and `blobs/<algorithm>/<hex>` files; a symlink counts by
/// what it points to, and only the link is replaced). Anything else is a
/// [`ReplaceError::NotALayout`] naming what it holds: checked before any
/// work starts, and again at the swap.
pub fn check_replaceable(dest: &Path) -> Result<(), ReplaceError> {
    let not_layout = |holds: String| ReplaceError::NotALayout {
        path: dest.to_path_buf(),
        holds,
    };
    let meta = match std::fs::metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Nothing there, or a dangling symlink (replacing the link
            // deletes nothing).
            return Ok(());
        }
        Err(e) => return Err(io_err("reading", dest)(e)),
    };
    if !meta.is_dir() {
        return Err(not_layout("a file".into()));
    }
    let mut names: Vec<String> = std::fs::read_dir(dest)
        .map_err(io_err("reading", dest))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io_err("reading", dest))?;
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !matches!(n.as_str(), "blobs" | "index.json" | "oci-layout"))
        .collect();
    if !foreign.is_empty() {
        let shown: Vec<&str> = foreign.iter().take(3).map(|n| n.as_str()).collect();
        let more = foreign.len().saturating_sub(shown.len());
        return Err(not_layout(format!(
            "{}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    let marker = std::fs::read(dest.join("oci-layout")).unwrap_or_default();
    let is_marker = serde_json::from_slice::<serde_json::Value>(&marker)
        .ok()
        .is_some_and(|v| v.get("imageLayoutVersion").is_some());
    if !is_marker {
        return Err(not_layout(
            "no valid oci-layout file (a layout's marker)".into(),
        ));
    }
    let blobs = dest.join("blobs");
    if blobs.symlink_metadata().is_err() {
        return Ok(());
    }
    for algorithm in std::fs::read_dir(&blobs).map_err(io_err("reading", &blobs))? {
        let algorithm = algorithm.map_err(io_err("reading", &blobs))?;
        let dir = algorithm.path();
        if !algorithm
            .file_type()
            .map_err(io_err("reading", &dir))?
            .is_dir()
        {
            return Err(not_layout(format!(
                "{} (not a blob directory)",
                dir.display()
            )));
        }
        for blob in std::fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
            let blob = blob.map_err(io_err("reading", &dir))?;
            let name = blob.file_name().to_string_lossy().into_owned();
            let is_file = blob.file_type().map_err(io_err("reading", &dir))?.is_file();
            if !is_file || name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(not_layout(format!(
                    "{} (not a blob)",
                    blob.path().display()
                )));
            }
        }
    }
    Ok(())
}

/// A directory being filled beside its destination (`.<name>.partial-<pid>`
/// in the same parent, so that it can be renamed into place): removed when
/// dropped unless [`Partial::keep`] is called, and on Ctrl-C
/// ([`crate::interrupt`]). Creating one first removes the partial
/// directories for the same name that dead kiln processes left (killed
/// with SIGKILL, or a power cut), and never another process's live one.
pub struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    /// Reserves the path (nothing is there: the caller creates it, as a
    /// layout writer wants to).
    pub fn reserve(parent: &Path, name: &str) -> Partial {
        sweep_partials(parent, name);
        let path = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        crate::interrupt::register(&path);
        Partial { path, kept: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory is complete: it stays, and is the caller's to move.
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        crate::interrupt::forget(&self.path);
        self.path.clone()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.path);
            crate::interrupt::forget(&self.path);
        }
    }
}

/// Removes `.<name>.partial-<pid>` directories in `parent` whose process
/// is gone.
fn sweep_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Puts the complete directory `staged` at `dest` (same file system),
/// replacing what is there only once the new one is in place, and only if
/// [`check_replaceable`] allows it: the old one is moved aside, the new one
/// renamed in, then the old one removed. If the new one cannot be renamed
/// in, the old one is put back; `staged` is removed on any failure, so
/// `dest` is never left missing, half-written or lost.
pub fn replace_dir(staged: &Path, dest: &Path) -> Result<(), ReplaceError> {
    if let Err(e) = check_replaceable(dest) {
        let _ = std::fs::remove_dir_all(staged);
        return Err(e);
    }
    // `.` or `dir/..` have no name to put the old one beside.
    let named;
    let dest = if dest.file_name().is_none() {
        named = std::fs::canonicalize(dest).map_err(io_err("resolving", dest))?;
        named.as_path()
    } else {
        dest
    };
    if dest.symlink_metadata().is_err() {
        return std::fs::rename(staged, dest).map_err(|e| {
            let _ = std::fs::remove_dir_all(staged);
            io_err("renaming into place", dest)(e)
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dir".into());
    let old = dest.with_file_name(format!(".{name}.old-{}", std::process::id()));
    if let Err(e) = std::fs::rename(dest, &old) {
        let _ = std::fs::remove_dir_all(staged);
        return Err(io_err("moving aside", dest)(e));
    }
    if let Err(e) = std::fs::rename(staged, dest) {
        let _ = std::fs::rename(&old, dest);
        let _ = std::fs::remove_dir_all(staged);
        return Err(io_err("renaming into place", dest)(e));
    }
    // A symlink moved aside is removed as a link; its target stays.
    if old
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(&old);
    } else {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_whole_directories_and_keeps_the_old_one_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (dest, staged) = (dir.path().join("out"), dir.path().join("staged"));
        layout(&staged);
        std::fs::write(staged.join("blobs/sha256/aa"), "new").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("blobs/sha256/aa")).unwrap(),
            "new"
        );

        layout(&staged);
        std::fs::write(staged.join("blobs/sha256/bb"), "newer").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert!(!dest.join("blobs/sha256/aa").exists());
        assert_eq!(
            std::fs::read_to_string(dest.join("blobs/sha256/bb")).unwrap(),
            "newer"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A staged directory that is not there: the old one stays.
        let e = replace_dir(&dir.path().join("missing"), &dest).unwrap_err();
        assert!(e.to_string().contains("renaming into place"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dest.join("blobs/sha256/bb")).unwrap(),
            "newer"
        );
    }

    fn layout(at: &Path) {
        std::fs::create_dir_all(at.join("blobs/sha256")).unwrap();
        std::fs::write(at.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(at.join("index.json"), "{}").unwrap();
        std::fs::write(at.join("blobs/sha256/ab12"), "x").unwrap();
    }

    fn staged_layout(parent: &Path) -> PathBuf {
        let staged = parent.join("staged");
        layout(&staged);
        staged
    }

    #[test]
    fn only_layouts_and_empty_directories_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        // A layout is replaced; an empty directory too.
        layout(&dest);
        replace_dir(&staged_layout(dir.path()), &dest).unwrap();
        std::fs::remove_dir_all(&dest).unwrap();
        std::fs::create_dir(&dest).unwrap();
        replace_dir(&staged_layout(dir.path()), &dest).unwrap();

        // A checkout, one unrelated file, a layout with a stray file, a
        // plain file, a fake marker: refused, untouched, staged removed.
        type Make = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Make, &str)> = vec![
            (
                "checkout",
                Box::new(|d: &Path| {
                    std::fs::create_dir_all(d.join(".git/objects")).unwrap();
                    std::fs::write(d.join("README.md"), "mine").unwrap();
                }),
                ".git, README.md",
            ),
            (
                "one-file",
                Box::new(|d: &Path| {
                    std::fs::create_dir_all(d).unwrap();
                    std::fs::write(d.join("notes.txt"), "mine").unwrap();
                }),
                "notes.txt",
            ),
            (
                "layout-plus",
                Box::new(|d: &Path| {
                    layout(d);
                    std::fs::write(d.join("blobs/sha256/thesis.tex"), "mine").unwrap();
                }),
                "thesis.tex (not a blob)",
            ),
            (
                "fake-marker",
                Box::new(|d: &Path| {
                    std::fs::create_dir_all(d).unwrap();
                    std::fs::write(d.join("oci-layout"), "mine").unwrap();
                }),
                "no valid oci-layout",
            ),
            (
                "file",
                Box::new(|d: &Path| std::fs::write(d, "mine").unwrap()),
                "a file",
            ),
        ];
        for (name, make, holds) in cases {
            let dest = dir.path().join(name);
            make(&dest);
            let before = listing(&dest);
            let staged = staged_layout(dir.path());
            let e = replace_dir(&staged, &dest).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, ReplaceError::NotALayout { .. }),
                "{name}: {msg}"
            );
            assert!(
                msg.contains(&dest.display().to_string()) && msg.contains(holds),
                "{name}: {msg}"
            );
            assert_eq!(listing(&dest), before, "{name} was changed");
            assert!(
                !staged.exists(),
                "{name}: the staged directory was left behind"
            );
        }
    }

    #[test]
    fn a_symlink_is_replaced_as_a_link_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        layout(&target);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        replace_dir(&staged_layout(dir.path()), &link).unwrap();
        assert!(!link.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(target.join("blobs/sha256/ab12").is_file());
        // A link to a directory that is not a layout is refused.
        let mine = dir.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("a"), "mine").unwrap();
        let link2 = dir.path().join("link2");
        std::os::unix::fs::symlink(&mine, &link2).unwrap();
        assert!(replace_dir(&staged_layout(dir.path()), &link2).is_err());
        assert!(mine.join("a").is_file());
    }

    /// Every path under `p` with its contents, to show nothing changed.
    fn listing(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        if p.is_file() {
            return vec![(p.to_path_buf(), std::fs::read(p).unwrap())];
        }
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path.clone());
                    out.push((path, Vec::new()));
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
