//! File-system helpers: outputs are written to a temporary file next to
//! their destination and renamed into place, so a failure never leaves a
//! half-written file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (same-directory temp file + fsync + rename).
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

/// Puts the complete directory `staged` at `dest` (same file system),
/// replacing what is there only once the new one is in place: the old one
/// is moved aside, the new one renamed in, then the old one removed. If
/// the new one cannot be renamed in, the old one is put back and `staged`
/// removed, so `dest` is never left missing or half-written.
pub fn replace_dir(staged: &Path, dest: &Path) -> std::io::Result<()> {
    let context = |what: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", dest.display()))
    };
    if dest.symlink_metadata().is_err() {
        return std::fs::rename(staged, dest).map_err(|e| {
            let _ = std::fs::remove_dir_all(staged);
            context("renaming into place", e)
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dir".into());
    let old = dest.with_file_name(format!(".{name}.old-{}", std::process::id()));
    std::fs::rename(dest, &old).map_err(|e| context("moving aside", e))?;
    if let Err(e) = std::fs::rename(staged, dest) {
        let _ = std::fs::rename(&old, dest);
        let _ = std::fs::remove_dir_all(staged);
        return Err(context("renaming into place", e));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_whole_directories_and_keeps_the_old_one_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (dest, staged) = (dir.path().join("out"), dir.path().join("staged"));
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("a"), "new").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "new");

        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("b"), "newer").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert!(!dest.join("a").exists());
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "newer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A staged directory that is not there: the old one stays.
        let e = replace_dir(&dir.path().join("missing"), &dest).unwrap_err();
        assert!(e.to_string().contains("renaming into place"), "{e}");
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "newer");
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
