//! Reading `images/<name>/image.toml` into [`Definition`]s, with errors that
//! name the file, the line and the key.
//!
//! `extends = "<image>"` makes a definition the named one's with its own
//! top-level keys in place of the other's (which may itself extend
//! another): what an image for another Debian release (`base-debian13`
//! from `base`) needs, without copying.

use kiln_seed::spec::{Definition, SpecError};
use std::path::{Path, PathBuf};

/// File name of a definition inside its image directory.
pub const FILE_NAME: &str = "image.toml";

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{0} does not exist: a kiln project defines its images in images/<name>/image.toml (`kiln init` creates a project with an example; --project names another directory)")]
    NoImagesDir(PathBuf),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, unknown key, wrong type or impossible value; `message` carries
    /// the line, column and key from the TOML reader.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {line}{error}")]
    Invalid {
        path: PathBuf,
        line: String,
        error: SpecError,
    },
    #[error("{path}: extends {parent:?}: {message}")]
    Extends {
        path: PathBuf,
        parent: String,
        message: String,
    },
    #[error("no image definitions found under {0} (expected <name>/image.toml)")]
    NoneFound(PathBuf),
    #[error(transparent)]
    Application(#[from] crate::appsource::AppError),
}

/// A definition and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub definition: Definition,
    /// The definition files it extends, nearest first.
    pub extends: Vec<PathBuf>,
}

/// The key that names the definition another one extends.
pub const EXTENDS: &str = "extends";

/// Parses one definition. `dir_name` (the directory's name) must equal `name`.
pub fn parse(
    path: &Path,
    text: &str,
    dir_name: Option<&str>,
) -> Result<Definition, DefinitionError> {
    let definition: Definition = toml::from_str(text).map_err(|e| DefinitionError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &e),
    })?;
    definition
        .validate(dir_name)
        .map_err(|error| DefinitionError::Invalid {
            path: path.to_path_buf(),
            line: locate(text, &error)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default(),
            error,
        })?;
    Ok(definition)
}

/// Every definition of the project, with its application images checked
/// against the rest of it (base, toolchain, source directory).
pub fn load_project(project: &Path) -> Result<Vec<Loaded>, DefinitionError> {
    let loaded = load_all(&project.join("images"))?;
    crate::appsource::check(project, &loaded)?;
    Ok(loaded)
}

/// Loads `dir/<name>/image.toml` (and the definitions it extends).
pub fn load(path: &Path) -> Result<Loaded, DefinitionError> {
    let text = read(path)?;
    let dir_name = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    let table = parse_table(path, &text)?;
    if extended(path, &table)?.is_none() {
        return Ok(Loaded {
            path: path.to_path_buf(),
            definition: parse(path, &text, dir_name)?,
            extends: Vec::new(),
        });
    }
    // The definition, then each one it extends, nearest first: each file
    // read and parsed once.
    let mut chain = vec![(path.to_path_buf(), text, table)];
    loop {
        let (child, _, child_table) = chain.last().expect("never empty");
        let Some(parent) = extended(child, child_table)? else {
            break;
        };
        let extends_err = |message: String| DefinitionError::Extends {
            path: child.clone(),
            parent: parent.clone(),
            message,
        };
        // A directory name under images/, never a path (the seed's own
        // check, spec::is_image_name, is private to the pinned seed).
        let is_name = !parent.is_empty()
            && parent
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !is_name {
            return Err(extends_err(
                "not the name of a definition (lowercase letters, digits and -)".into(),
            ));
        }
        let parent_path = child
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join(&parent)
            .join(FILE_NAME);
        if chain.iter().any(|(p, _, _)| *p == parent_path) {
            let names: Vec<String> = chain
                .iter()
                .map(|(p, _, _)| p.display().to_string())
                .collect();
            return Err(extends_err(format!(
                "a definition cannot extend itself (through {})",
                names.join(" → ")
            )));
        }
        let parent_text = read(&parent_path)
            .map_err(|_| extends_err(format!("{} does not exist", parent_path.display())))?;
        let parent_table = parse_table(&parent_path, &parent_text)?;
        chain.push((parent_path, parent_text, parent_table));
    }
    // The farthest definition first, each nearer one's keys in place of it.
    let mut merged = toml::Table::new();
    for (_, _, table) in chain.iter_mut().rev() {
        merged.extend(
            std::mem::take(table)
                .into_iter()
                .filter(|(k, _)| k != EXTENDS),
        );
    }
    let extended_files: Vec<PathBuf> = chain.iter().skip(1).map(|(p, _, _)| p.clone()).collect();
    let definition: Definition =
        merged
            .try_into()
            .map_err(|e: toml::de::Error| DefinitionError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "{} (with what it extends: {})",
                    e.message().trim_end(),
                    extended_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
    // An error names the nearest file that holds the key.
    definition.validate(dir_name).map_err(|error| {
        let (file, line) = chain
            .iter()
            .find_map(|(p, t, _)| locate(t, &error).map(|l| (p.clone(), format!("line {l}: "))))
            .unwrap_or_else(|| (path.to_path_buf(), String::new()));
        DefinitionError::Invalid {
            path: file,
            line,
            error,
        }
    })?;
    Ok(Loaded {
        path: path.to_path_buf(),
        definition,
        extends: extended_files,
    })
}

fn read(path: &Path) -> Result<String, DefinitionError> {
    std::fs::read_to_string(path).map_err(|source| DefinitionError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `text` as a TOML table; errors name the file, line and key.
fn parse_table(path: &Path, text: &str) -> Result<toml::Table, DefinitionError> {
    toml::from_str(text).map_err(|e| DefinitionError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &e),
    })
}

/// The name the definition in `table` extends, if it has the key.
fn extended(path: &Path, table: &toml::Table) -> Result<Option<String>, DefinitionError> {
    match table.get(EXTENDS) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(DefinitionError::Parse {
            path: path.to_path_buf(),
            message: format!("`{EXTENDS}` must be the name of another definition, not {other}"),
        }),
    }
}

/// Loads every `images_dir/*/image.toml`, sorted by name.
pub fn load_all(images_dir: &Path) -> Result<Vec<Loaded>, DefinitionError> {
    if !images_dir.exists() {
        return Err(DefinitionError::NoImagesDir(images_dir.to_path_buf()));
    }
    let rd = std::fs::read_dir(images_dir).map_err(|source| DefinitionError::Read {
        path: images_dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DefinitionError::Read {
            path: images_dir.to_path_buf(),
            source,
        })?;
        let p = entry.path().join(FILE_NAME);
        if p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(DefinitionError::NoneFound(images_dir.to_path_buf()));
    }
    paths.iter().map(|p| load(p)).collect()
}

pub(crate) fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            let key = key_at(text, span.start);
            let key = key.map(|k| format!(" (key `{k}`)")).unwrap_or_default();
            format!("line {line}, column {col}{key}: {msg}")
        }
        None => msg,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// The dotted key path in effect at `offset`: the innermost `[table]` header
/// above it plus the key on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if l.starts_with('[') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let key = line
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && line.contains('='))?;
    let mut key = key.to_string();
    // Inside an inline table (`users = [{ name = "a", uid = 1 }]`), add the
    // inner key just before the offending value.
    let in_line = &text[line_start..offset.min(line_end)];
    if in_line.contains('{') {
        if let Some(eq) = in_line.rfind('=') {
            let inner = in_line[..eq].trim_end();
            let start = inner
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                .map_or(0, |(i, c)| i + c.len_utf8());
            if start < inner.len() && inner[start..] != key {
                key = format!("{key}.{}", &inner[start..]);
            }
        }
    }
    Some(if table.is_empty() {
        key
    } else {
        format!("{table}.{key}")
    })
}

/// Best-effort line of the key a validation error names.
fn locate(text: &str, e: &SpecError) -> Option<usize> {
    let SpecError::Invalid { key, .. } = e else {
        return None;
    };
    let key = key.rsplit(": ").next().unwrap_or(key);
    let last = key.rsplit('.').next()?;
    let last = last.split('[').next()?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(last) && l[last.len()..].trim_start().starts_with('=')
                || l.starts_with('[') && l.trim_matches(|c| c == '[' || c == ']').ends_with(last)
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const GOOD: &str = r#"
name = "x"
description = "test"

[packages]
include = ["ca-certificates"]

[accounts]
run_as = "nonroot"
users = [{ name = "nonroot", uid = 65532, gid = 65532, home = "/home/nonroot" }]
groups = [{ name = "nonroot", gid = 65532 }]
"#;

    fn err(text: &str) -> String {
        parse(Path::new("images/x/image.toml"), text, Some("x"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_definition_parses() {
        parse(Path::new("images/x/image.toml"), GOOD, Some("x")).unwrap();
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("[packages]\n", "[packages]\ncolour = \"red\"\n");
        let e = err(&text);
        assert!(e.starts_with("images/x/image.toml: line 6"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn a_bad_value_after_non_ascii_text_in_an_inline_table_is_named() {
        // The key finder once cut a string inside a multi-byte character
        // (found by tests/fuzz_parsers.rs).
        let catalogue = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("images/scratch-plus/image.toml"),
        )
        .unwrap();
        let text = catalogue.replacen(
            "home = \"/nonexistent\", gecos",
            "home = \"/nonexistent\",\u{FFFD}= gecos",
            1,
        );
        assert_ne!(text, catalogue);
        let e = parse(Path::new("images/x/image.toml"), &text, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("images/x/image.toml"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = GOOD.replace("description = \"test\"", "description = 3");
        let e = err(&text);
        assert!(e.contains("line 3") && e.contains("description"), "{e}");
    }

    #[test]
    fn bad_mode_names_line_and_key() {
        let text =
            format!("{GOOD}\n[[paths]]\npath = \"/tmp\"\ntype = \"directory\"\nmode = \"0999\"\n");
        let e = err(&text);
        assert!(
            e.contains("line 16") && e.contains("paths.mode") && e.contains("not an octal"),
            "{e}"
        );
    }

    #[test]
    fn uid_out_of_range_names_line() {
        let e = err(&GOOD.replace("uid = 65532", "uid = 99999"));
        assert!(
            e.contains("line 10") && e.contains("accounts.users.uid") && e.contains("out of range"),
            "{e}"
        );
    }

    #[test]
    fn relative_path_is_rejected() {
        let e = err(&GOOD.replace("/home/nonroot", "home/nonroot"));
        assert!(e.contains("not absolute"), "{e}");
    }

    #[test]
    fn name_must_match_directory() {
        let e = parse(Path::new("images/y/image.toml"), GOOD, Some("y"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("directory name"), "{e}");
    }
}

/// The closest of `known` to `name` when it is close enough to be a typo
/// (edit distance at most a third of the name, and at least 1).
pub fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k.as_str())
}

/// "no image named X (known: ...); did you mean Y?": what every command
/// says about an image name that is not one.
pub fn unknown_image(name: &str, known: &[String]) -> String {
    let hint = closest(name, known)
        .map(|k| format!("; did you mean {k}?"))
        .unwrap_or_default();
    format!("no image named {name} (known: {}){hint}", known.join(", "))
}

/// The full names (`<image>[-<variant>]`) of every definition under `images_dir`.
pub fn image_names(images_dir: &Path) -> Result<Vec<String>, DefinitionError> {
    let mut names = Vec::new();
    for loaded in load_all(images_dir)? {
        names.push(loaded.definition.name.clone());
        for variant in loaded.definition.variants.keys() {
            names.push(format!("{}-{variant}", loaded.definition.name));
        }
    }
    names.sort();
    Ok(names)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod suggestion_tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_closest_name_and_a_stranger_none() {
        let known: Vec<String> = ["base", "scratch-plus", "scratch-plus-debug", "python"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("scratch-plu", &known), Some("scratch-plus"));
        assert_eq!(closest("pyhton", &known), Some("python"));
        assert_eq!(closest("nginx", &known), None);
        let m = unknown_image("scratch-plu", &known);
        assert!(
            m.starts_with("no image named scratch-plu (known: base, "),
            "{m}"
        );
        assert!(m.ends_with("; did you mean scratch-plus?"), "{m}");
    }
}

#[cfg(test)]
mod extends_tests {
    use super::*;

    /// A valid definition named base, with a debug variant.
    fn base() -> String {
        super::tests::GOOD.replace("name = \"x\"", "name = \"base\"")
            + "\n[variants.debug]\ndebug = true\n"
    }

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let d = dir.path().join("images").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(FILE_NAME), text).unwrap();
        }
        dir
    }

    fn load_one(dir: &tempfile::TempDir, name: &str) -> Result<Loaded, DefinitionError> {
        load(&dir.path().join("images").join(name).join(FILE_NAME))
    }

    #[test]
    fn an_extending_definition_replaces_the_keys_it_sets() {
        let dir = project(&[
            ("base", &base()),
            (
                "base-debian13",
                "extends = \"base\"\nname = \"base-debian13\"\ndebian = 13\n",
            ),
        ]);
        let l = load_one(&dir, "base-debian13").unwrap();
        assert_eq!(l.definition.name, "base-debian13");
        assert_eq!(l.definition.description, "test");
        assert_eq!(l.extends, [dir.path().join("images/base/image.toml")]);
        let spec = l.definition.image(Some("debug")).unwrap();
        assert_eq!(spec.full_name(), "base-debian13-debug");
        assert_eq!(spec.suites[0], "trixie");
        assert_eq!(spec.packages.include[0].0, "ca-certificates");
        assert!(load_one(&dir, "base").unwrap().extends.is_empty());
    }

    #[test]
    fn a_definition_extends_one_that_extends_another() {
        let dir = project(&[
            ("base", &base()),
            (
                "cc",
                "extends = \"base\"\nname = \"cc\"\ndescription = \"c++\"\n",
            ),
            (
                "cc-debian13",
                "extends = \"cc\"\nname = \"cc-debian13\"\ndebian = 13\n",
            ),
        ]);
        let l = load_one(&dir, "cc-debian13").unwrap();
        assert_eq!(l.definition.description, "c++");
        assert_eq!(l.definition.debian, Some(13));
        assert_eq!(l.definition.packages.include[0].0, "ca-certificates");
        assert_eq!(
            l.extends,
            [
                dir.path().join("images/cc/image.toml"),
                dir.path().join("images/base/image.toml")
            ]
        );
    }

    #[test]
    fn what_cannot_be_extended_is_named() {
        let dir = project(&[
            ("base", &base()),
            ("loop-a", "extends = \"loop-b\"\nname = \"loop-a\"\n"),
            ("loop-b", "extends = \"loop-a\"\nname = \"loop-b\"\n"),
            ("gone", "extends = \"nothing\"\nname = \"gone\"\n"),
            ("path", "extends = \"../base\"\nname = \"path\"\n"),
            ("selfish", "extends = \"selfish\"\nname = \"selfish\"\n"),
            ("number", "extends = 12\nname = \"number\"\n"),
            (
                "wrong",
                "extends = \"base\"\nname = \"wrong\"\ndebian = 99\n",
            ),
        ]);
        let e = |n: &str| load_one(&dir, n).unwrap_err().to_string();
        assert!(
            e("loop-b").contains("extends \"loop-b\": a definition cannot extend itself"),
            "{}",
            e("loop-b")
        );
        assert!(
            e("gone").contains("extends \"nothing\":") && e("gone").contains("does not exist"),
            "{}",
            e("gone")
        );
        assert!(
            e("path").contains("not the name of a definition"),
            "{}",
            e("path")
        );
        assert!(
            e("selfish").contains("cannot extend itself"),
            "{}",
            e("selfish")
        );
        assert!(
            e("number").contains("`extends` must be the name of another definition"),
            "{}",
            e("number")
        );
        let wrong = e("wrong");
        assert!(
            wrong.contains("images/wrong/image.toml: line 3: debian: 99 is not a Debian release"),
            "{wrong}"
        );
    }
}
