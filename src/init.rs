//! A new kiln project (`kiln init`): the files of kiln's flake template
//! (`templates/default`, what `nix flake init -t <kiln>` copies), with the
//! flake's `kiln` input set to the reference the user chose.

use std::path::{Path, PathBuf};

/// What kiln's own flake is called when the user names no other.
pub const DEFAULT_KILN_REF: &str = "github:kiln-build/kiln";

/// The template's files: (path in the project, contents). One source for
/// `kiln init` and for `nix flake init -t`.
const TEMPLATE: [(&str, &str); 4] = [
    ("flake.nix", include_str!("../templates/default/flake.nix")),
    (
        "images/example/image.toml",
        include_str!("../templates/default/images/example/image.toml"),
    ),
    (
        ".gitignore",
        include_str!("../templates/default/.gitignore"),
    ),
    ("README.md", include_str!("../templates/default/README.md")),
];

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; kiln init writes a new project and overwrites nothing (pick an empty directory, or remove it)")]
    Exists(PathBuf),
    #[error("--kiln {0:?}: a flake reference cannot hold quotes, backslashes or `${{`")]
    BadReference(String),
    #[error("writing {}: {error}", .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Writes a new project into `dir` (created if missing) whose flake takes
/// kiln from `kiln_ref`. Nothing is written when any file of the project
/// exists already; each file is written atomically. Returns the paths
/// written.
pub fn init(dir: &Path, kiln_ref: &str) -> Result<Vec<PathBuf>, InitError> {
    if kiln_ref.contains(['"', '\\']) || kiln_ref.contains("${") || kiln_ref.trim().is_empty() {
        return Err(InitError::BadReference(kiln_ref.to_string()));
    }
    for p in ["flake.nix", "images", "kiln.lock"] {
        let path = dir.join(p);
        if path.symlink_metadata().is_ok() {
            return Err(InitError::Exists(path));
        }
    }
    for (rel, _) in TEMPLATE {
        let path = dir.join(rel);
        if path.symlink_metadata().is_ok() {
            return Err(InitError::Exists(path));
        }
    }
    let mut written = Vec::new();
    for (rel, text) in TEMPLATE {
        let path = dir.join(rel);
        let text = if rel == "flake.nix" {
            text.replace(
                &format!("\"{DEFAULT_KILN_REF}\""),
                &format!("\"{kiln_ref}\""),
            )
        } else {
            text.to_string()
        };
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|error| InitError::Write {
            path: path.clone(),
            error,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_template_with_the_chosen_kiln() {
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("new");
        let written = init(&proj, "path:/src/kiln").unwrap();
        assert_eq!(written.len(), TEMPLATE.len());
        let flake = std::fs::read_to_string(proj.join("flake.nix")).unwrap();
        assert!(
            flake.contains("inputs.kiln.url = \"path:/src/kiln\";"),
            "{flake}"
        );
        assert!(!flake.contains(DEFAULT_KILN_REF));
        assert!(proj.join("images/example/image.toml").is_file());
        assert!(proj.join(".gitignore").is_file());
    }

    #[test]
    fn the_template_names_the_default_kiln_once() {
        let flake = TEMPLATE[0].1;
        assert_eq!(flake.matches(&format!("\"{DEFAULT_KILN_REF}\"")).count(), 1);
        let def = TEMPLATE[1].1;
        let parsed: toml::Value = toml::from_str(def).unwrap();
        assert_eq!(parsed["name"].as_str(), Some("example"));
    }

    #[test]
    fn an_existing_file_stops_it_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "mine").unwrap();
        let e = init(dir.path(), DEFAULT_KILN_REF).unwrap_err();
        assert!(matches!(e, InitError::Exists(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("README.md")).unwrap(),
            "mine"
        );
        assert!(!dir.path().join("flake.nix").exists());
        assert!(!dir.path().join("images").exists());
    }

    #[test]
    fn a_reference_that_would_break_the_flake_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["a\"b", "${x}", "a\\b", " "] {
            assert!(
                matches!(init(dir.path(), bad), Err(InitError::BadReference(_))),
                "{bad}"
            );
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
