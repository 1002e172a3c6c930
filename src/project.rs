//! A kiln project and the kiln it builds with.
//!
//! A project is a directory with `images/` and `kiln.lock`, and a flake
//! whose outputs come from kiln's `lib.project`. Its seed, its Nix library
//! and, unless it has its own `policy/`, its policies are kiln's: those of
//! the flake's `kiln` input, as Nix locked it in the project's
//! `flake.lock`. kiln's own repository is the one project that is its own
//! kiln (its catalogue).

use crate::nixcmd::{self, NixError};
use crate::tool::{Runner, ToolError};
use std::path::{Path, PathBuf};

/// The name of the flake input that is kiln.
pub const KILN_INPUT: &str = "kiln";

/// A file only kiln's own source has: the seed's pin.
const KILN_MARKER: &str = crate::seedbuild::PIN_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{0} has no flake.nix: a kiln project is a flake that takes kiln as its input (`kiln init` writes one)")]
    NoFlake(PathBuf),
    #[error("{0}/flake.nix has no input named `kiln`: add `inputs.kiln.url = \"<kiln's flake reference>\";` and `outputs = {{ self, kiln }}: kiln.lib.project {{ root = ./.; }};` (what `kiln init` writes)")]
    NoKilnInput(PathBuf),
    #[error(
        "the `kiln` input of {flake}/flake.nix ({source_dir}) is not kiln: it has no {KILN_MARKER}"
    )]
    NotKiln { flake: PathBuf, source_dir: PathBuf },
    #[error("reading the inputs of {flake}/flake.nix: {source}")]
    Nix { flake: PathBuf, source: NixError },
    #[error("unexpected output of `nix flake archive --json` for {flake}: {message}")]
    Output { flake: PathBuf, message: String },
}

/// Whether `dir` is kiln's own source (it holds the seed and its pin).
pub fn is_kiln_source(dir: &Path) -> bool {
    dir.join(KILN_MARKER).is_file() && dir.join(crate::seedbuild::CRATE_DIR).is_dir()
}

/// kiln's source for `project`: the project itself when it is kiln's
/// repository, else the store path of its flake's `kiln` input.
pub fn kiln_source(project: &Path) -> Result<PathBuf, ProjectError> {
    if is_kiln_source(project) {
        return Ok(project.to_path_buf());
    }
    nixcmd::require_flakes().map_err(|source| ProjectError::Nix {
        flake: project.to_path_buf(),
        source,
    })?;
    kiln_input(&crate::tool::Host, project)
}

/// The store path of `project`'s `kiln` input, as `nix flake archive
/// --dry-run --json` reports it (Nix locks the input first when
/// flake.lock does not have it yet).
fn kiln_input(runner: &dyn Runner, project: &Path) -> Result<PathBuf, ProjectError> {
    if !project.join("flake.nix").is_file() {
        return Err(ProjectError::NoFlake(project.to_path_buf()));
    }
    let nix_err = |source: ToolError| ProjectError::Nix {
        flake: project.to_path_buf(),
        source: source.into(),
    };
    let ran = runner
        .run(
            nixcmd::nix()
                .args(["flake", "archive", "--dry-run", "--json"])
                .arg(project),
        )
        .map_err(nix_err)?
        .checked()
        .map_err(nix_err)?;
    let v: serde_json::Value =
        serde_json::from_slice(&ran.stdout).map_err(|e| ProjectError::Output {
            flake: project.to_path_buf(),
            message: e.to_string(),
        })?;
    let Some(path) = v["inputs"][KILN_INPUT]["path"].as_str() else {
        return Err(ProjectError::NoKilnInput(project.to_path_buf()));
    };
    let dir = PathBuf::from(path);
    if !is_kiln_source(&dir) {
        return Err(ProjectError::NotKiln {
            flake: project.to_path_buf(),
            source_dir: dir,
        });
    }
    Ok(dir)
}

/// How `project`'s flake.lock pins its `kiln` input: the `locked`
/// reference (type, path or URL, revision) and its NAR hash as hex. None
/// when flake.lock has no such input.
pub fn locked_kiln(project: &Path) -> Option<(serde_json::Value, String)> {
    let text = std::fs::read_to_string(project.join("flake.lock")).ok()?;
    locked_input(&serde_json::from_str(&text).ok()?)
}

fn locked_input(lock: &serde_json::Value) -> Option<(serde_json::Value, String)> {
    use base64::Engine as _;
    let root = lock["root"].as_str()?;
    let node = lock["nodes"][root]["inputs"][KILN_INPUT].as_str()?;
    let locked = lock["nodes"][node]["locked"].clone();
    let sri = locked["narHash"].as_str()?.strip_prefix("sha256-")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(sri).ok()?;
    Some((locked, hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::Fake;

    fn project_with_flake() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flake.nix"), "{ outputs = { self }: { }; }").unwrap();
        dir
    }

    #[test]
    fn a_directory_without_a_flake_is_told_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let e = kiln_input(&Fake::default(), dir.path()).unwrap_err();
        assert!(e.to_string().contains("kiln init"), "{e}");
    }

    #[test]
    fn a_flake_without_the_kiln_input_is_named_with_the_fix() {
        let dir = project_with_flake();
        let fake = Fake::default().answer(
            "flake archive",
            r#"{"path":"/nix/store/x-source","inputs":{}}"#,
        );
        let e = kiln_input(&fake, dir.path()).unwrap_err();
        assert!(matches!(e, ProjectError::NoKilnInput(_)), "{e}");
        assert!(e.to_string().contains("kiln.lib.project"), "{e}");
    }

    #[test]
    fn an_input_that_is_not_kiln_is_refused() {
        let dir = project_with_flake();
        let other = tempfile::tempdir().unwrap();
        let answer = format!(
            r#"{{"path":"/nix/store/x-source","inputs":{{"kiln":{{"path":"{}","inputs":{{}}}}}}}}"#,
            other.path().display()
        );
        let fake = Fake::default().answer("flake archive", &answer);
        let e = kiln_input(&fake, dir.path()).unwrap_err();
        assert!(matches!(e, ProjectError::NotKiln { .. }), "{e}");
    }

    #[test]
    fn the_kiln_input_is_its_store_path() {
        let dir = project_with_flake();
        let kiln = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(kiln.path().join("nix/seed")).unwrap();
        std::fs::write(kiln.path().join("nix/seed.json"), "{}").unwrap();
        let answer = format!(
            r#"{{"path":"/nix/store/x-source","inputs":{{"kiln":{{"path":"{}","inputs":{{}}}}}}}}"#,
            kiln.path().display()
        );
        let fake = Fake::default().answer("flake archive", &answer);
        assert_eq!(kiln_input(&fake, dir.path()).unwrap(), kiln.path());
    }

    #[test]
    fn the_locked_kiln_input_and_its_nar_hash_are_read_from_flake_lock() {
        let lock = serde_json::json!({
            "nodes": {
                "kiln": {"locked": {"narHash": "sha256-1+UP7ObrBtRDsSk9ddcbetA0Igalza94NvOdAh2unSE=", "path": "/src/kiln", "type": "path"}},
                "root": {"inputs": {"kiln": "kiln"}}
            },
            "root": "root",
            "version": 7
        });
        let (locked, hash) = locked_input(&lock).unwrap();
        assert_eq!(locked["path"], "/src/kiln");
        assert_eq!(hash.len(), 64);
        assert!(hash.starts_with("d7e50fec"), "{hash}");
        assert!(locked_input(
            &serde_json::json!({"nodes": {"root": {"inputs": {}}}, "root": "root"})
        )
        .is_none());
    }

    #[test]
    fn nix_failing_is_reported_with_the_flake() {
        let dir = project_with_flake();
        let fake = Fake::default().fail("flake archive", "error: syntax error");
        let e = kiln_input(&fake, dir.path()).unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
    }
}
