//! The `[build]` table of an application image: what is compiled in the
//! sandbox, with which locked toolchain, from which source directory, and
//! which of its files go into the image (docs/image-toml.md).
//!
//! An application image names a `base` (another image of the project) and
//! adds one layer of built files on top of the base's layers, unchanged.

use crate::spec::{AbsPath, Id, Mode};
use serde::{Deserialize, Serialize};

/// `[build]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A toolchain of the project (`toolchains/<name>/toolchain.toml`).
    /// Every builder but Python's compiles with one; Python's installs
    /// wheels and copies sources, so it runs no toolchain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<String>,
    /// The source directory, relative to the project root (`apps/hello`).
    /// Only this directory enters the build.
    pub source: String,
    /// The Go builder (`[build.go]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<GoBuild>,
    /// The Rust builder (`[build.rust]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<RustBuild>,
    /// The generic builder (`[build.command]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandBuild>,
    /// The Python builder (`[build.python]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonBuild>,
    /// Files of the build output to put in the image. Default for a
    /// builder that makes one program: that program as `/usr/bin/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<Install>,
}

fn dot() -> String {
    ".".into()
}

/// `[build.go]`: `go build` with the reproducible defaults (static, no VCS
/// stamping, trimmed paths, vendored modules, no module proxy), once per
/// architecture of the image by cross-compiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoBuild {
    /// The main package, relative to the source directory.
    #[serde(default = "dot")]
    pub main: String,
    /// Extra `-ldflags` (for example `-s -w`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ldflags: Vec<String>,
    /// Build tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `[build.rust]`: `cargo install --locked --offline` of one binary from
/// the source directory, static (`+crt-static`), with the crates of the
/// source's Cargo.lock vendored in the build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RustBuild {
    /// The binary target (`--bin`). Default: the image's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_default_features: bool,
}

/// `[build.command]`: one program of the toolchain, run in its root for
/// each arch of the image, in a writable copy of the source directory,
/// with `out` (where it must write), `KILN_ARCH` (the Debian arch it
/// builds for), `HOME`, `TMPDIR` and `PATH` set, plus `env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBuild {
    /// The program (absolute path in the toolchain root) and arguments.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
}

fn requirements_txt() -> String {
    "requirements.txt".into()
}

fn python_311() -> String {
    "3.11".into()
}

fn app_dir() -> AbsPath {
    AbsPath("/app".into())
}

/// `[build.python]`: no compiler runs. The wheels pinned in kiln.lock from
/// the hashes of `requirements` are installed into the base's interpreter
/// (its `/usr/local` site directory, as pip installs as root on Debian),
/// without bytecode, and the source directory is copied to `app_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonBuild {
    /// The script the image runs, relative to the source directory: the
    /// default entrypoint is `python<version> <app_dir>/<main>`.
    pub main: String,
    /// The requirements file, relative to the source directory: every
    /// line `name==version` with `--hash=sha256:...` (pip's hash-checking
    /// mode).
    #[serde(default = "requirements_txt")]
    pub requirements: String,
    /// The base's Python (`major.minor`): the wheels' tags and the site
    /// directory follow it.
    #[serde(default = "python_311")]
    pub version: String,
    /// Where the source directory goes in the image.
    #[serde(default = "app_dir")]
    pub app_dir: AbsPath,
}

impl PythonBuild {
    /// The interpreter in the base image.
    pub fn interpreter(&self) -> String {
        format!("/usr/bin/python{}", self.version)
    }

    /// Where wheels are installed: the site directory Debian's Python
    /// reads first (`/usr/local/lib/python<v>/dist-packages`).
    pub fn site_packages(&self) -> String {
        format!("/usr/local/lib/python{}/dist-packages", self.version)
    }

    /// The CPython tag of the wheels (`cp311`).
    pub fn cpython_tag(&self) -> String {
        format!("cp{}", self.version.replace('.', ""))
    }
}

/// One file of the build output placed in the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// Path in the build output (relative).
    pub from: String,
    /// Path in the image.
    pub to: AbsPath,
    /// Default 0755 for programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<Id>,
}

/// A problem with `[build]`: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildProblem {
    pub key: String,
    pub message: String,
}

fn problem(key: &str, message: impl Into<String>) -> BuildProblem {
    BuildProblem {
        key: format!("build.{key}"),
        message: message.into(),
    }
}

/// A relative path that stays inside its directory.
fn is_inner_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains('\0')
        && s.split('/').all(|c| c != ".." && !c.is_empty())
}

impl Build {
    /// The builder's name, for messages and the image history.
    pub fn builder(&self) -> &'static str {
        match (&self.go, &self.rust, &self.command, &self.python) {
            (Some(_), _, _, _) => "go",
            (None, Some(_), _, _) => "rust",
            (None, None, Some(_), _) => "command",
            (None, None, None, Some(_)) => "python",
            (None, None, None, None) => "none",
        }
    }

    /// The one program the builder makes (the output's `bin/<name>`).
    pub fn program(&self, image: &str) -> Option<String> {
        match (&self.go, &self.rust) {
            (Some(_), _) => Some(image.to_string()),
            (None, Some(r)) => Some(r.bin.clone().unwrap_or_else(|| image.to_string())),
            (None, None) => None,
        }
    }

    /// What goes into the image: `install`, or the builder's default (the
    /// one program it makes, under `/usr/bin`).
    pub fn installs(&self, image: &str) -> Vec<Install> {
        let Some(program) = self.program(image).filter(|_| self.install.is_empty()) else {
            return self.install.clone();
        };
        vec![Install {
            from: format!("bin/{program}"),
            to: AbsPath(format!("/usr/bin/{program}")),
            mode: None,
            uid: None,
            gid: None,
        }]
    }

    /// The entrypoint when the image declares none: the one program the
    /// build installs, or for Python the interpreter running `main`.
    pub fn default_entrypoint(&self, image: &str) -> Option<Vec<String>> {
        if let Some(py) = &self.python {
            return Some(vec![
                py.interpreter(),
                format!("{}/{}", py.app_dir.0.trim_end_matches('/'), py.main),
            ]);
        }
        let installs = self.installs(image);
        (self.install.is_empty() && installs.len() == 1).then(|| vec![installs[0].to.0.clone()])
    }

    pub fn validate(&self) -> Result<(), BuildProblem> {
        match (&self.toolchain, &self.python) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "toolchain",
                    "the python builder compiles nothing and takes no toolchain: its wheels come from the requirements file",
                ))
            }
            (None, None) => {
                return Err(problem(
                    "toolchain",
                    "a toolchain is required (toolchains/<name>/toolchain.toml)",
                ))
            }
            (Some(t), None)
                if t.is_empty()
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                return Err(problem(
                    "toolchain",
                    format!("{t:?} is not a toolchain name (lowercase letters, digits and -)"),
                ));
            }
            _ => {}
        }
        if !is_inner_path(self.source.trim_end_matches('/')) {
            return Err(problem(
                "source",
                format!(
                    "{:?} must be a directory of the project, relative to its root, without ..",
                    self.source
                ),
            ));
        }
        let builders = [
            self.go.is_some(),
            self.rust.is_some(),
            self.command.is_some(),
            self.python.is_some(),
        ];
        if builders.iter().filter(|b| **b).count() > 1 {
            return Err(problem(
                "command",
                "one builder only: [build.go], [build.rust], [build.python] or [build.command]",
            ));
        }
        if let Some(py) = &self.python {
            for (key, value) in [("main", &py.main), ("requirements", &py.requirements)] {
                if !is_inner_path(value) {
                    return Err(problem(
                        &format!("python.{key}"),
                        format!("{value:?} must be a file inside the source directory"),
                    ));
                }
            }
            let mut parts = py.version.split('.');
            let valid = parts.next() == Some("3")
                && parts
                    .next()
                    .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
                && parts.next().is_none();
            if !valid {
                return Err(problem(
                    "python.version",
                    format!(
                        "{:?} is not a Python 3 version as major.minor (\"3.11\")",
                        py.version
                    ),
                ));
            }
            if py.app_dir.0 == "/" {
                return Err(problem("python.app_dir", "the source cannot replace /"));
            }
            if !self.install.is_empty() {
                return Err(problem(
                    "install",
                    "the python builder installs the source directory and the wheels; it takes no [[build.install]]",
                ));
            }
            return Ok(());
        }
        if let Some(c) = &self.command {
            if !c.argv.first().is_some_and(|p| p.starts_with('/')) {
                return Err(problem(
                    "command.argv",
                    "the first element must be the program's absolute path in the toolchain root",
                ));
            }
            if let Some(k) = c.env.keys().find(|k| {
                k.is_empty()
                    || k.contains('=')
                    || ["out", "KILN_ARCH", "HOME", "TMPDIR"].contains(&k.as_str())
            }) {
                return Err(problem(
                    &format!("command.env.{k}"),
                    "kiln sets out, KILN_ARCH, HOME and TMPDIR; a name has no =",
                ));
            }
            if self.install.is_empty() {
                return Err(problem(
                    "install",
                    "a command build names the files it installs ([[build.install]] from = \"...\", to = \"/...\")",
                ));
            }
        }
        match (&self.go, &self.rust) {
            (None, None) if self.command.is_some() => {}
            (None, None) => {
                return Err(problem(
                    "go",
                    "a builder is required: [build.go], [build.rust], [build.python] or [build.command]",
                ))
            }
            (Some(_), Some(_)) => unreachable!("counted above"),
            (Some(go), None) => {
                if go.main != "." && !is_inner_path(go.main.trim_start_matches("./")) {
                    return Err(problem(
                        "go.main",
                        format!(
                            "{:?} must be a package directory inside the source",
                            go.main
                        ),
                    ));
                }
            }
            (None, Some(rust)) => {
                if let Some(bin) = &rust.bin {
                    if bin.is_empty() || bin.contains('/') {
                        return Err(problem(
                            "rust.bin",
                            format!("{bin:?} is not a binary target name"),
                        ));
                    }
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.install.iter().enumerate() {
            if !is_inner_path(&f.from) {
                return Err(problem(
                    &format!("install[{i}].from"),
                    format!("{:?} must be a path inside the build output", f.from),
                ));
            }
            if f.to.0 == "/" || !seen.insert(&f.to.0) {
                return Err(problem(
                    &format!("install[{i}].to"),
                    format!("{} is not a file path, or is installed twice", f.to.0),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{from_value, json};

    #[test]
    fn go_defaults_install_the_program_under_usr_bin() {
        let b: Build =
            from_value(json!({"toolchain": "go", "source": "apps/hello", "go": {}})).unwrap();
        b.validate().unwrap();
        assert_eq!(b.builder(), "go");
        assert_eq!(b.go.as_ref().unwrap().main, ".");
        let i = b.installs("hello");
        assert_eq!(i.len(), 1);
        assert_eq!(i[0].from, "bin/hello");
        assert_eq!(i[0].to.0, "/usr/bin/hello");
    }

    #[test]
    fn paths_that_leave_their_directory_are_refused() {
        for (value, key) in [
            (
                json!({"toolchain": "go", "source": "../x", "go": {}}),
                "build.source",
            ),
            (
                json!({"toolchain": "go", "source": "/abs", "go": {}}),
                "build.source",
            ),
            (
                json!({"toolchain": "Go", "source": "a", "go": {}}),
                "build.toolchain",
            ),
            (json!({"toolchain": "go", "source": "a"}), "build.go"),
            (
                json!({"toolchain": "go", "source": "a", "go": {}, "install": [{"from": "../etc", "to": "/x"}]}),
                "build.install[0].from",
            ),
        ] {
            let b: Build = from_value(value.clone()).unwrap();
            assert_eq!(b.validate().unwrap_err().key, key, "{value}");
        }
    }

    #[test]
    fn rust_installs_its_binary_and_one_builder_only() {
        let b: Build =
            from_value(json!({"toolchain": "rust", "source": "apps/r", "rust": {"bin": "srv"}}))
                .unwrap();
        b.validate().unwrap();
        assert_eq!(b.builder(), "rust");
        assert_eq!(b.installs("hello")[0].from, "bin/srv");
        assert_eq!(b.installs("hello")[0].to.0, "/usr/bin/srv");
        let both: Build =
            from_value(json!({"toolchain": "go", "source": "a", "go": {}, "rust": {}})).unwrap();
        assert_eq!(both.validate().unwrap_err().key, "build.command");
        let cmd: Build = from_value(json!({"toolchain": "busybox", "source": "a",
            "command": {"argv": ["/bin/sh", "-c", "cp x $out/x"]},
            "install": [{"from": "x", "to": "/usr/bin/x"}]}))
        .unwrap();
        cmd.validate().unwrap();
        assert_eq!(cmd.builder(), "command");
        assert_eq!(cmd.installs("a").len(), 1);
        let no_install: Build = from_value(json!({"toolchain": "busybox", "source": "a",
            "command": {"argv": ["/bin/sh"]}}))
        .unwrap();
        assert_eq!(no_install.validate().unwrap_err().key, "build.install");
    }

    #[test]
    fn python_takes_no_toolchain_and_no_install() {
        let b: Build =
            from_value(json!({"source": "apps/py", "python": {"main": "app.py"}})).unwrap();
        b.validate().unwrap();
        assert_eq!(b.builder(), "python");
        let py = b.python.as_ref().unwrap();
        assert_eq!(py.requirements, "requirements.txt");
        assert_eq!(
            py.site_packages(),
            "/usr/local/lib/python3.11/dist-packages"
        );
        assert_eq!(py.cpython_tag(), "cp311");
        assert!(b.installs("py").is_empty());
        for (value, key) in [
            (
                json!({"toolchain": "go", "source": "a", "python": {"main": "a.py"}}),
                "build.toolchain",
            ),
            (json!({"source": "a", "go": {}}), "build.toolchain"),
            (
                json!({"source": "a", "python": {"main": "../a.py"}}),
                "build.python.main",
            ),
            (
                json!({"source": "a", "python": {"main": "a.py", "version": "3"}}),
                "build.python.version",
            ),
            (
                json!({"source": "a", "python": {"main": "a.py"}, "install": [{"from": "x", "to": "/x"}]}),
                "build.install",
            ),
        ] {
            let b: Build = from_value(value.clone()).unwrap();
            assert_eq!(b.validate().unwrap_err().key, key, "{value}");
        }
    }

    #[test]
    fn unknown_builders_and_keys_are_errors() {
        assert!(
            from_value::<Build>(json!({"toolchain": "go", "source": "a", "cobol": {}})).is_err()
        );
        assert!(from_value::<Build>(
            json!({"toolchain": "go", "source": "a", "go": {"mian": "."}})
        )
        .is_err());
    }
}
