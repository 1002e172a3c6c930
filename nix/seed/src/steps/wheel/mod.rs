//! Installing a Python wheel (a `.whl`, the binary distribution format)
//! into an image's file tree, without pip.
//!
//! pip would need a Python interpreter at build time, and an interpreter
//! run inside the sandbox is exactly the kind of input a deterministic
//! step cannot afford. Installing a wheel is, however, just unpacking with
//! a few rules, which this module applies:
//!
//! - the archive is read with a small strict ZIP reader (see [`zip`] for
//!   why it is hand-written), which checks every entry's CRC-32 and size;
//! - the file name, the one `.dist-info` directory, its `WHEEL`
//!   (`Wheel-Version: 1.x`) and `METADATA` (`Name`, `Version`) must agree;
//! - every file is checked against `RECORD` (sha256 and size), and every
//!   file `RECORD` lists must be present;
//! - files go to the [`Scheme`]'s directories, `.data/` subdirectories to
//!   their own; `#!python` scripts get the scheme's interpreter;
//! - console and GUI entry points become small launcher scripts, an
//!   `INSTALLER` saying `kiln` is added, and `RECORD` is rewritten to list
//!   what was installed, as pip does.
//!
//! No bytecode is compiled: the image holds no `.pyc` files and `RECORD`
//! lists none, so nothing here depends on an interpreter run at build
//! time; Python falls back to the sources (and, where it may write, caches
//! bytecode at run time).
//!
//! The output is a function of the wheel's bytes, its file name and the
//! scheme alone: files are sorted by path, `RECORD` is sorted, and nothing
//! carries a timestamp (the archive's own are ignored).

pub mod zip;

pub use zip::ZipError;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Where a wheel's parts go in the image (absolute paths, no trailing
/// slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    /// e.g. `/usr/local/lib/python3.11/dist-packages`; platlib files go
    /// here too, since an image has one site directory for both.
    pub purelib: String,
    /// e.g. `/usr/local/bin`.
    pub scripts: String,
    /// e.g. `/usr/local`.
    pub data: String,
    /// e.g. `/usr/local/include/python3.11`; files go to
    /// `<headers>/<distribution name>/...`.
    pub headers: String,
    /// e.g. `/usr/bin/python3.11`: the shebang of scripts.
    pub interpreter: String,
}

/// One file to put into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFile {
    /// Absolute path in the image.
    pub path: String,
    pub data: Vec<u8>,
    /// `0o644` or `0o755`.
    pub mode: u32,
}

/// What a wheel installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `Name:` from METADATA, as written.
    pub name: String,
    /// `Version:` from METADATA.
    pub version: String,
    /// Sorted by path, no duplicates; parent directories are implied.
    pub files: Vec<InstalledFile>,
}

/// The parts of a wheel's file name,
/// `{distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub distribution: String,
    pub version: String,
    pub build: Option<String>,
    pub python_tag: String,
    pub abi_tag: String,
    pub platform_tag: String,
}

/// Every message starts with the wheel's file name and names the member
/// (as `{:?}`) where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{wheel}: not a wheel file name ({{distribution}}-{{version}}(-{{build}})?-{{python tag}}-{{abi tag}}-{{platform tag}}.whl): {why}")]
    FileName { wheel: String, why: &'static str },
    #[error("{wheel}: install scheme: {field} {value:?}: {why}")]
    Scheme {
        wheel: String,
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{wheel}: {problem}")]
    Zip { wheel: String, problem: ZipError },
    #[error("{wheel}: {why}")]
    DistInfo { wheel: String, why: String },
    #[error("{wheel}: member {member:?} is missing")]
    Missing { wheel: String, member: String },
    #[error("{wheel}: member {member:?} is not UTF-8 text")]
    NotUtf8 { wheel: String, member: String },
    #[error("{wheel}: member {member:?}: Wheel-Version {found:?} is not supported (only 1.x)")]
    WheelVersion {
        wheel: String,
        member: String,
        found: String,
    },
    #[error("{wheel}: member {member:?}: {why}")]
    Metadata {
        wheel: String,
        member: String,
        why: String,
    },
    #[error("{wheel}: member {member:?}: Name {name:?} does not match the file name's distribution {expected:?}")]
    NameMismatch {
        wheel: String,
        member: String,
        name: String,
        expected: String,
    },
    #[error("{wheel}: member {member:?}: Version {version:?} differs from the file name's version {expected:?}")]
    VersionMismatch {
        wheel: String,
        member: String,
        version: String,
        expected: String,
    },
    #[error("{wheel}: member {record:?}, line {line}: {why}")]
    Record {
        wheel: String,
        record: String,
        line: usize,
        why: String,
    },
    #[error("{wheel}: member {member:?} is not listed in {record:?}")]
    Unlisted {
        wheel: String,
        member: String,
        record: String,
    },
    #[error("{wheel}: {record:?} lists {member:?}, which is not in the archive")]
    NotInArchive {
        wheel: String,
        member: String,
        record: String,
    },
    #[error("{wheel}: member {member:?}: {record:?} gives no sha256 hash for it (found {hash:?})")]
    NoHash {
        wheel: String,
        member: String,
        record: String,
        hash: String,
    },
    #[error("{wheel}: member {member:?}: sha256 is {actual}, {record:?} says {listed}")]
    HashMismatch {
        wheel: String,
        member: String,
        record: String,
        listed: String,
        actual: String,
    },
    #[error("{wheel}: member {member:?}: size is {actual}, {record:?} says {listed}")]
    SizeMismatch {
        wheel: String,
        member: String,
        record: String,
        listed: u64,
        actual: u64,
    },
    #[error("{wheel}: member {member:?}: {why}")]
    DataDir {
        wheel: String,
        member: String,
        why: String,
    },
    #[error("{wheel}: member {member:?}, line {line}: {why}")]
    EntryPoint {
        wheel: String,
        member: String,
        line: usize,
        why: String,
    },
    /// `first`, `second`: what is installed there, e.g. `member "a/b.py"`
    /// or `console script "flask" (entry_points.txt)`.
    #[error("{wheel}: {first} and {second} would both be installed at {path:?}")]
    Conflict {
        wheel: String,
        path: String,
        first: String,
        second: String,
    },
    #[error("{wheel}: {second} would be installed at {path:?}, below {first} installed at {parent:?}, which is a file")]
    NotADirectory {
        wheel: String,
        path: String,
        parent: String,
        first: String,
        second: String,
    },
}

/// PEP 503 normalized project name: lowercase, runs of '-', '_', '.' become
/// one '-'.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            in_run = true;
            continue;
        }
        if in_run {
            out.push('-');
            in_run = false;
        }
        out.extend(c.to_lowercase());
    }
    if in_run {
        out.push('-');
    }
    out
}

/// Whether `name` is a valid project name: ASCII letters and digits, with
/// `.`, `_`, `-` inside only. This also keeps it usable as the directory
/// name under the headers directory.
fn valid_project_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Splits a wheel file name into its parts. Only the characters the
/// format's escaping can produce are accepted, so no part can carry a
/// path separator or anything else surprising into paths or messages.
pub fn parse_file_name(file_name: &str) -> Result<WheelName, WheelError> {
    let bad = |why| WheelError::FileName {
        wheel: file_name.to_string(),
        why,
    };
    let stem = file_name
        .strip_suffix(".whl")
        .ok_or_else(|| bad("does not end in .whl"))?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() != 5 && parts.len() != 6 {
        return Err(bad("expected 5 or 6 '-'-separated parts"));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty part"));
    }
    let word = |p: &str, extra: &[u8]| {
        p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || extra.contains(&c))
    };
    if !word(parts[0], b"") {
        return Err(bad(
            "distribution has characters other than letters, digits, '_' and '.'",
        ));
    }
    if !word(parts[1], b"+!") {
        return Err(bad(
            "version has characters other than letters, digits, '_', '.', '+' and '!'",
        ));
    }
    let (build, tags) = if parts.len() == 6 {
        if !parts[2].as_bytes()[0].is_ascii_digit() || !word(parts[2], b"") {
            return Err(bad("build tag must start with a digit"));
        }
        (Some(parts[2].to_string()), &parts[3..])
    } else {
        (None, &parts[2..])
    };
    if !tags.iter().all(|t| word(t, b"")) {
        return Err(bad(
            "tags have characters other than letters, digits, '_' and '.'",
        ));
    }
    Ok(WheelName {
        distribution: parts[0].to_string(),
        version: parts[1].to_string(),
        build,
        python_tag: tags[0].to_string(),
        abi_tag: tags[1].to_string(),
        platform_tag: tags[2].to_string(),
    })
}

fn check_scheme(wheel: &str, scheme: &Scheme) -> Result<(), WheelError> {
    let fields = [
        ("purelib", &scheme.purelib),
        ("scripts", &scheme.scripts),
        ("data", &scheme.data),
        ("headers", &scheme.headers),
        ("interpreter", &scheme.interpreter),
    ];
    for (field, value) in fields {
        let bad = |why| WheelError::Scheme {
            wheel: wheel.to_string(),
            field,
            value: value.clone(),
            why,
        };
        let rest = value.strip_prefix('/').ok_or_else(|| bad("not absolute"))?;
        if value.contains(['\0', '\n', '\r', '\\']) {
            return Err(bad("contains NUL, a line break or a backslash"));
        }
        if rest.is_empty() && field != "interpreter" {
            continue;
        }
        if rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad(
                "has a trailing slash or an empty, `.` or `..` component",
            ));
        }
        // The kernel splits a shebang line at the first blank.
        if field == "interpreter" && value.contains([' ', '\t']) {
            return Err(bad("contains a blank, which a shebang line cannot carry"));
        }
    }
    Ok(())
}

/// `base` joined with a relative `/`-separated path.
fn join(base: &str, rel: &str) -> String {
    if base == "/" {
        format!("/{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// `to` relative to the directory `from` (both absolute and clean), with
/// `../` components where it lies outside, as pip writes RECORD paths.
fn relative(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|c| !c.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend_from_slice(&to[common..]);
    parts.join("/")
}

/// `sha256=<urlsafe base64 without padding>`, RECORD's hash notation.
fn record_hash(data: &[u8]) -> String {
    format!("sha256={}", URL_SAFE_NO_PAD.encode(Sha256::digest(data)))
}

/// One RECORD field, quoted as Python's csv module does when needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line into fields (double-quoted fields may contain
/// commas and doubled quotes).
fn csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// RFC 822-style headers up to the first empty line; continuation lines
/// are dropped (nothing read here spans lines).
fn headers(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn header<'a>(headers: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// Whether `s` is a dotted Python name (`a.b.c`). Entry points are pasted
/// into generated source, so nothing else may pass.
fn dotted_name(s: &str) -> bool {
    s.split('.').all(|part| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A console or GUI script declared in `entry_points.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryPoint {
    group: String,
    name: String,
    module: String,
    attr: String,
}

/// Reads the `[console_scripts]` and `[gui_scripts]` sections of
/// `entry_points.txt` (INI-style, `name = module:attr [extras]`; extras
/// are ignored). Errors carry the 1-based line number.
fn parse_entry_points(text: &str) -> Result<Vec<EntryPoint>, (usize, String)> {
    let mut out = Vec::new();
    let mut section: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or((n, format!("malformed section header {line:?}")))?;
            section = Some(name.trim());
            continue;
        }
        let group = match section {
            Some(g @ ("console_scripts" | "gui_scripts")) => g,
            _ => continue,
        };
        let (name, value) = line
            .split_once('=')
            .ok_or((n, format!("expected `name = module:attr`, found {line:?}")))?;
        let name = name.trim();
        let mut value = value.trim();
        if let Some(at) = value.find('[') {
            if !value.ends_with(']') {
                return Err((n, format!("malformed extras in {value:?}")));
            }
            value = value[..at].trim();
        }
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.chars().any(char::is_control)
        {
            return Err((n, format!("script name {name:?} cannot be a file name")));
        }
        let (module, attr) = value
            .split_once(':')
            .ok_or((n, format!("entry point {value:?} has no `:attribute`")))?;
        let (module, attr) = (module.trim(), attr.trim());
        if !dotted_name(module) || !dotted_name(attr) {
            return Err((
                n,
                format!("entry point {value:?} is not `module:attribute` with dotted Python names"),
            ));
        }
        out.push(EntryPoint {
            group: group.to_string(),
            name: name.to_string(),
            module: module.to_string(),
            attr: attr.to_string(),
        });
    }
    Ok(out)
}

/// The launcher pip writes for an entry point, with the interpreter fixed.
fn launcher(interpreter: &str, ep: &EntryPoint) -> String {
    let import_name = ep.attr.split('.').next().unwrap_or(&ep.attr);
    format!(
        "#!{interpreter}\n\
         # -*- coding: utf-8 -*-\n\
         import re\n\
         import sys\n\
         from {module} import {import_name}\n\
         if __name__ == \"__main__\":\n    \
         sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
         sys.exit({func}())\n",
        module = ep.module,
        func = ep.attr,
    )
}

/// Replaces a first line `#!python` or `#!pythonw` (optionally followed by
/// a blank and arguments, which are kept) with `#!<interpreter>`; `None`
/// when the script does not start that way and is kept as it is.
fn fix_shebang(data: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let args = first
        .strip_prefix(b"#!pythonw")
        .or_else(|| first.strip_prefix(b"#!python"))?;
    if !(args.is_empty() || args[0] == b' ' || args[0] == b'\t') {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() + interpreter.len());
    out.extend_from_slice(b"#!");
    out.extend_from_slice(interpreter.as_bytes());
    out.extend_from_slice(args);
    out.push(b'\n');
    out.extend_from_slice(rest);
    Some(out)
}

/// The top-level directories whose names end in `suffix`.
fn dirs_of<'a>(dirs: &BTreeSet<&'a str>, suffix: &str) -> Vec<&'a str> {
    dirs.iter()
        .copied()
        .filter(|d| d.ends_with(suffix))
        .collect()
}

/// Whether a `<name>-<version><suffix>` directory belongs to the
/// distribution normalized as `dist`.
fn belongs_to(dir: &str, suffix: &str, dist: &str) -> bool {
    dir.strip_suffix(suffix)
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(name, _)| normalize(name) == dist)
}

/// A file about to be installed, with a description of where it comes
/// from for conflict messages.
struct Pending {
    source: String,
    data: Vec<u8>,
    mode: u32,
}

/// The files to install, keyed by absolute path, refusing two sources for
/// one path.
struct Placement<'a> {
    wheel: &'a str,
    files: BTreeMap<String, Pending>,
}

impl Placement<'_> {
    fn put(
        &mut self,
        path: String,
        source: String,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<(), WheelError> {
        if let Some(prev) = self.files.get(&path) {
            return Err(WheelError::Conflict {
                wheel: self.wheel.to_string(),
                path,
                first: prev.source.clone(),
                second: source,
            });
        }
        self.files.insert(path, Pending { source, data, mode });
        Ok(())
    }

    /// Refuses a file installed below another file's path (which would
    /// have to be a directory).
    fn check_parents(&self) -> Result<(), WheelError> {
        for (path, p) in &self.files {
            let mut parent = path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                if up.is_empty() {
                    break;
                }
                parent = up;
                if let Some(file) = self.files.get(parent) {
                    return Err(WheelError::NotADirectory {
                        wheel: self.wheel.to_string(),
                        path: path.clone(),
                        parent: parent.to_string(),
                        first: file.source.clone(),
                        second: p.source.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks every member against RECORD: listed, sha256 and size matching;
/// and every listed path present. `RECORD` itself is not checked, and the
/// `exempt` members (its signatures) may go unlisted or unhashed.
fn verify_record(
    wheel: &str,
    record_path: &str,
    text: &str,
    members: &BTreeMap<&str, &zip::ZipEntry>,
    exempt: &[&str],
) -> Result<(), WheelError> {
    let rec_err = |line: usize, why: String| WheelError::Record {
        wheel: wheel.to_string(),
        record: record_path.to_string(),
        line,
        why,
    };
    let mut listed: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = csv_line(line).map_err(|why| rec_err(i + 1, why.to_string()))?;
        let [path, hash, size]: [String; 3] = fields.try_into().map_err(|f: Vec<String>| {
            rec_err(
                i + 1,
                format!("{} fields, expected 3 (path,hash,size)", f.len()),
            )
        })?;
        if listed.contains_key(&path) {
            return Err(rec_err(i + 1, format!("{path:?} is listed twice")));
        }
        listed.insert(path, (i + 1, hash, size));
    }
    for (&name, entry) in members {
        if name == record_path {
            continue;
        }
        let Some((line, hash, size)) = listed.get(name) else {
            if exempt.contains(&name) {
                continue;
            }
            return Err(WheelError::Unlisted {
                wheel: wheel.to_string(),
                member: name.to_string(),
                record: record_path.to_string(),
            });
        };
        if exempt.contains(&name) && hash.is_empty() {
            continue;
        }
        let listed_digest = hash
            .strip_prefix("sha256=")
            .ok_or_else(|| WheelError::NoHash {
                wheel: wheel.to_string(),
                member: name.to_string(),
                record: record_path.to_string(),
                hash: hash.clone(),
            })?;
        let decoded = URL_SAFE_NO_PAD
            .decode(listed_digest.trim_end_matches('='))
            .ok()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| rec_err(*line, format!("{hash:?} is not a urlsafe-base64 sha256")))?;
        let actual = Sha256::digest(&entry.data);
        if decoded.as_slice() != actual.as_slice() {
            return Err(WheelError::HashMismatch {
                wheel: wheel.to_string(),
                member: name.to_string(),
                record: record_path.to_string(),
                listed: hash.clone(),
                actual: record_hash(&entry.data),
            });
        }
        if !size.is_empty() {
            let listed_size: u64 = size
                .parse()
                .map_err(|_| rec_err(*line, format!("size {size:?} is not a number")))?;
            if listed_size != entry.data.len() as u64 {
                return Err(WheelError::SizeMismatch {
                    wheel: wheel.to_string(),
                    member: name.to_string(),
                    record: record_path.to_string(),
                    listed: listed_size,
                    actual: entry.data.len() as u64,
                });
            }
        }
    }
    for path in listed.keys() {
        if path != record_path && !members.contains_key(path.as_str()) {
            return Err(WheelError::NotInArchive {
                wheel: wheel.to_string(),
                member: path.clone(),
                record: record_path.to_string(),
            });
        }
    }
    Ok(())
}

fn utf8<'a>(wheel: &str, member: &str, data: &'a [u8]) -> Result<&'a str, WheelError> {
    std::str::from_utf8(data).map_err(|_| WheelError::NotUtf8 {
        wheel: wheel.to_string(),
        member: member.to_string(),
    })
}

/// Installs the wheel `bytes` (whose file name, which carries the
/// distribution, version and tags, is `file_name`) according to `scheme`.
/// See the module documentation for what is checked and where files go.
pub fn install(file_name: &str, bytes: &[u8], scheme: &Scheme) -> Result<Installed, WheelError> {
    let wheel = file_name;
    let wn = parse_file_name(file_name)?;
    check_scheme(wheel, scheme)?;
    let entries = zip::read(bytes).map_err(|problem| WheelError::Zip {
        wheel: wheel.to_string(),
        problem,
    })?;
    let members: BTreeMap<&str, &zip::ZipEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let missing = |member: String| WheelError::Missing {
        wheel: wheel.to_string(),
        member,
    };

    // The .dist-info directory, and the .data directory if any.
    let dist = normalize(&wn.distribution);
    let top_dirs: BTreeSet<&str> = members
        .keys()
        .filter_map(|n| n.split_once('/').map(|(d, _)| d))
        .collect();
    let dist_info = match dirs_of(&top_dirs, ".dist-info").as_slice() {
        [one] => *one,
        found => {
            return Err(WheelError::DistInfo {
                wheel: wheel.to_string(),
                why: format!(
                    "expected exactly one top-level .dist-info directory, found {found:?}"
                ),
            })
        }
    };
    if !belongs_to(dist_info, ".dist-info", &dist) {
        return Err(WheelError::DistInfo {
            wheel: wheel.to_string(),
            why: format!(
                "{dist_info:?} is not the .dist-info directory of distribution {:?}",
                wn.distribution
            ),
        });
    }
    let data_dir = match dirs_of(&top_dirs, ".data").as_slice() {
        [] => None,
        [one] if belongs_to(one, ".data", &dist) => Some(*one),
        found => {
            return Err(WheelError::DistInfo {
                wheel: wheel.to_string(),
                why: format!(
                    "expected at most one top-level .data directory, \
                     of distribution {:?}; found {found:?}",
                    wn.distribution
                ),
            })
        }
    };

    // WHEEL and METADATA.
    let wheel_path = format!("{dist_info}/WHEEL");
    let wheel_file = members
        .get(wheel_path.as_str())
        .ok_or_else(|| missing(wheel_path.clone()))?;
    let wheel_headers = headers(utf8(wheel, &wheel_path, &wheel_file.data)?);
    let wheel_version =
        header(&wheel_headers, "Wheel-Version").ok_or_else(|| WheelError::Metadata {
            wheel: wheel.to_string(),
            member: wheel_path.clone(),
            why: "no Wheel-Version".to_string(),
        })?;
    let supported = wheel_version.split_once('.').is_some_and(|(major, minor)| {
        major == "1" && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
    });
    if !supported {
        return Err(WheelError::WheelVersion {
            wheel: wheel.to_string(),
            member: wheel_path,
            found: wheel_version.to_string(),
        });
    }

    let metadata_path = format!("{dist_info}/METADATA");
    let metadata = members
        .get(metadata_path.as_str())
        .ok_or_else(|| missing(metadata_path.clone()))?;
    let meta_headers = headers(utf8(wheel, &metadata_path, &metadata.data)?);
    let meta_err = |why: String| WheelError::Metadata {
        wheel: wheel.to_string(),
        member: metadata_path.clone(),
        why,
    };
    let name = header(&meta_headers, "Name").ok_or_else(|| meta_err("no Name".to_string()))?;
    let version =
        header(&meta_headers, "Version").ok_or_else(|| meta_err("no Version".to_string()))?;
    if !valid_project_name(name) {
        return Err(meta_err(format!(
            "Name {name:?} is not a valid project name"
        )));
    }
    if normalize(name) != dist {
        return Err(WheelError::NameMismatch {
            wheel: wheel.to_string(),
            member: metadata_path,
            name: name.to_string(),
            expected: wn.distribution,
        });
    }
    if version != wn.version {
        return Err(WheelError::VersionMismatch {
            wheel: wheel.to_string(),
            member: metadata_path,
            version: version.to_string(),
            expected: wn.version,
        });
    }

    // RECORD.
    let record_path = format!("{dist_info}/RECORD");
    let jws = format!("{dist_info}/RECORD.jws");
    let p7s = format!("{dist_info}/RECORD.p7s");
    let record = members
        .get(record_path.as_str())
        .ok_or_else(|| missing(record_path.clone()))?;
    verify_record(
        wheel,
        &record_path,
        utf8(wheel, &record_path, &record.data)?,
        &members,
        &[jws.as_str(), p7s.as_str()],
    )?;

    // Placement. The archive's RECORD is replaced, and its signatures,
    // which sign that RECORD, would no longer match: neither is installed.
    let mut out = Placement {
        wheel,
        files: BTreeMap::new(),
    };
    let data_prefix = data_dir.map(|d| format!("{d}/"));
    let not_installed = [record_path.as_str(), jws.as_str(), p7s.as_str()];
    for (&member, &entry) in &members {
        if not_installed.contains(&member) {
            continue;
        }
        let source = format!("member {member:?}");
        let mode = if entry.executable { 0o755 } else { 0o644 };
        let Some(rest) = data_prefix.as_deref().and_then(|p| member.strip_prefix(p)) else {
            out.put(
                join(&scheme.purelib, member),
                source,
                entry.data.clone(),
                mode,
            )?;
            continue;
        };
        let data_err = |why: String| WheelError::DataDir {
            wheel: wheel.to_string(),
            member: member.to_string(),
            why,
        };
        let (key, sub) = rest.split_once('/').ok_or_else(|| {
            data_err(
                "lies directly in the .data directory, not in one of its subdirectories"
                    .to_string(),
            )
        })?;
        let (path, data, mode) = match key {
            "purelib" | "platlib" => (join(&scheme.purelib, sub), entry.data.clone(), mode),
            "scripts" => (
                join(&scheme.scripts, sub),
                fix_shebang(&entry.data, &scheme.interpreter).unwrap_or_else(|| entry.data.clone()),
                0o755,
            ),
            "data" => (join(&scheme.data, sub), entry.data.clone(), mode),
            "headers" => (
                join(&scheme.headers, &format!("{name}/{sub}")),
                entry.data.clone(),
                mode,
            ),
            other => {
                return Err(data_err(format!(
                    ".data subdirectory {other:?} is not one of \
                     purelib, platlib, scripts, data, headers"
                )))
            }
        };
        out.put(path, source, data, mode)?;
    }

    // Entry points.
    let ep_path = format!("{dist_info}/entry_points.txt");
    if let Some(ep_file) = members.get(ep_path.as_str()) {
        let eps =
            parse_entry_points(utf8(wheel, &ep_path, &ep_file.data)?).map_err(|(line, why)| {
                WheelError::EntryPoint {
                    wheel: wheel.to_string(),
                    member: ep_path.clone(),
                    line,
                    why,
                }
            })?;
        for ep in eps {
            out.put(
                join(&scheme.scripts, &ep.name),
                format!("entry point {:?} in [{}] of {ep_path:?}", ep.name, ep.group),
                launcher(&scheme.interpreter, &ep).into_bytes(),
                0o755,
            )?;
        }
    }

    out.put(
        join(&scheme.purelib, &format!("{dist_info}/INSTALLER")),
        "the generated INSTALLER".to_string(),
        b"kiln\n".to_vec(),
        0o644,
    )?;

    // The new RECORD: every installed file but itself with hash and size,
    // itself without.
    let installed_record = join(&scheme.purelib, &record_path);
    let mut lines: Vec<(String, String)> = out
        .files
        .iter()
        .map(|(path, p)| {
            let rel = relative(&scheme.purelib, path);
            let line = format!(
                "{},{},{}\n",
                csv_field(&rel),
                record_hash(&p.data),
                p.data.len()
            );
            (rel, line)
        })
        .collect();
    lines.push((
        record_path.clone(),
        format!("{},,\n", csv_field(&record_path)),
    ));
    lines.sort();
    let new_record: String = lines.into_iter().map(|(_, l)| l).collect();
    out.put(
        installed_record,
        "the rewritten RECORD".to_string(),
        new_record.into_bytes(),
        0o644,
    )?;
    out.check_parents()?;

    Ok(Installed {
        name: name.to_string(),
        version: version.to_string(),
        files: out
            .files
            .into_iter()
            .map(|(path, p)| InstalledFile {
                path,
                data: p.data,
                mode: p.mode,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::DeflateEncoder;
    use flate2::{Compression, Crc};
    use std::io::Write;

    /// One member for the test zip writer.
    struct M {
        name: String,
        data: Vec<u8>,
        method: u16,
        mode: u32,
    }

    fn m(name: &str, data: &[u8]) -> M {
        M {
            name: name.to_string(),
            data: data.to_vec(),
            method: 8,
            mode: 0o100644,
        }
    }

    fn put16(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn put32(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A minimal ZIP writer: stored (0) or deflate (8) entries; any other
    /// method stores the bytes as they are under that method number.
    fn write_zip(members: &[M]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for mb in members {
            let mut crc = Crc::new();
            crc.update(&mb.data);
            let packed = if mb.method == 8 {
                let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
                enc.write_all(&mb.data).unwrap();
                enc.finish().unwrap()
            } else {
                mb.data.clone()
            };
            let offset = out.len() as u32;
            let common = |h: &mut Vec<u8>| {
                put16(h, 20); // version needed
                put16(h, 0x0800); // flags: UTF-8 names
                put16(h, mb.method);
                put16(h, 0); // time
                put16(h, 0x21); // date: 1980-01-01
                put32(h, crc.sum());
                put32(h, packed.len() as u32);
                put32(h, mb.data.len() as u32);
                put16(h, mb.name.len() as u16);
                put16(h, 0); // extra
            };
            put32(&mut out, 0x0403_4b50);
            common(&mut out);
            out.extend_from_slice(mb.name.as_bytes());
            out.extend_from_slice(&packed);

            put32(&mut cd, 0x0201_4b50);
            put16(&mut cd, (3 << 8) | 20); // made by: Unix
            common(&mut cd);
            put16(&mut cd, 0); // comment
            put16(&mut cd, 0); // disk
            put16(&mut cd, 0); // internal attributes
            put32(&mut cd, mb.mode << 16);
            put32(&mut cd, offset);
            cd.extend_from_slice(mb.name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&cd);
        put32(&mut out, 0x0605_4b50);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, members.len() as u16);
        put16(&mut out, members.len() as u16);
        put32(&mut out, cd.len() as u32);
        put32(&mut out, cd_offset);
        put16(&mut out, 0);
        out
    }

    fn record_of(members: &[M]) -> String {
        let mut s = String::new();
        for mb in members {
            s += &format!(
                "{},{},{}\n",
                csv_field(&mb.name),
                record_hash(&mb.data),
                mb.data.len()
            );
        }
        s + "demo-1.0.dist-info/RECORD,,\n"
    }

    /// A wheel of `members` plus a RECORD listing them all.
    fn wheel(mut members: Vec<M>) -> Vec<u8> {
        let record = record_of(&members);
        members.push(m("demo-1.0.dist-info/RECORD", record.as_bytes()));
        write_zip(&members)
    }

    const METADATA: &[u8] =
        b"Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\nSummary: x\n\nName: not this\n";
    const WHEEL: &[u8] =
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    const FILE: &str = "demo-1.0-py3-none-any.whl";

    fn base() -> Vec<M> {
        vec![
            m("demo/__init__.py", b"print('hi')\n"),
            M {
                method: 0,
                ..m("demo/cli.py", b"def main(): pass\n")
            },
            m("demo-1.0.dist-info/METADATA", METADATA),
            m("demo-1.0.dist-info/WHEEL", WHEEL),
        ]
    }

    fn full() -> Vec<M> {
        let mut v = base();
        v.extend([
            m(
                "demo-1.0.dist-info/entry_points.txt",
                b"[console_scripts]\ndemo = demo.cli:main.run [extra]\n# comment\n; comment\n\n[gui_scripts]\ndemo-gui=demo.cli:gui\n[other]\nx = not a script\n",
            ),
            m("demo-1.0.data/scripts/tool", b"#!python\nprint(1)\n"),
            M {
                method: 0,
                ..m("demo-1.0.data/scripts/plain.sh", b"#!/bin/sh\necho\n")
            },
            m("demo-1.0.data/headers/demo.h", b"int x;\n"),
            m("demo-1.0.data/data/share/demo/a,b \"q\".txt", b"data\n"),
            M {
                mode: 0o100755,
                ..m("demo-1.0.data/platlib/demo/_speed.so", b"\x7fELF")
            },
            M {
                mode: 0o100755,
                ..m("demo/run.sh", b"#!/bin/sh\n")
            },
        ]);
        v
    }

    fn scheme() -> Scheme {
        Scheme {
            purelib: "/usr/local/lib/python3.11/dist-packages".into(),
            scripts: "/usr/local/bin".into(),
            data: "/usr/local".into(),
            headers: "/usr/local/include/python3.11".into(),
            interpreter: "/usr/bin/python3.11".into(),
        }
    }

    fn err(members: Vec<M>) -> String {
        install(FILE, &write_zip(&members), &scheme())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn installs_a_wheel() {
        let got = install(FILE, &wheel(full()), &scheme()).unwrap();
        assert_eq!(got.name, "Demo");
        assert_eq!(got.version, "1.0");
        let sp = "/usr/local/lib/python3.11/dist-packages";
        let paths: Vec<(&str, u32)> = got
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        let mut want = vec![
            ("/usr/local/bin/demo".to_string(), 0o755),
            ("/usr/local/bin/demo-gui".to_string(), 0o755),
            ("/usr/local/bin/plain.sh".to_string(), 0o755),
            ("/usr/local/bin/tool".to_string(), 0o755),
            (
                "/usr/local/include/python3.11/Demo/demo.h".to_string(),
                0o644,
            ),
            (format!("{sp}/demo-1.0.dist-info/INSTALLER"), 0o644),
            (format!("{sp}/demo-1.0.dist-info/METADATA"), 0o644),
            (format!("{sp}/demo-1.0.dist-info/RECORD"), 0o644),
            (format!("{sp}/demo-1.0.dist-info/WHEEL"), 0o644),
            (format!("{sp}/demo-1.0.dist-info/entry_points.txt"), 0o644),
            (format!("{sp}/demo/__init__.py"), 0o644),
            (format!("{sp}/demo/_speed.so"), 0o755),
            (format!("{sp}/demo/cli.py"), 0o644),
            (format!("{sp}/demo/run.sh"), 0o755),
            ("/usr/local/share/demo/a,b \"q\".txt".to_string(), 0o644),
        ];
        want.sort();
        let want: Vec<(&str, u32)> = want.iter().map(|(p, m)| (p.as_str(), *m)).collect();
        assert_eq!(paths, want);

        let file = |p: &str| &got.files.iter().find(|f| f.path == p).unwrap().data;
        assert_eq!(
            file("/usr/local/bin/tool"),
            b"#!/usr/bin/python3.11\nprint(1)\n"
        );
        assert_eq!(file("/usr/local/bin/plain.sh"), b"#!/bin/sh\necho\n");
        assert_eq!(
            file(&format!("{sp}/demo-1.0.dist-info/INSTALLER")),
            b"kiln\n"
        );
        assert_eq!(
            std::str::from_utf8(file("/usr/local/bin/demo")).unwrap(),
            "#!/usr/bin/python3.11\n\
             # -*- coding: utf-8 -*-\n\
             import re\n\
             import sys\n\
             from demo.cli import main\n\
             if __name__ == \"__main__\":\n    \
             sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    \
             sys.exit(main.run())\n"
        );

        // RECORD lists every installed file, with matching hashes and sizes.
        let record = std::str::from_utf8(file(&format!("{sp}/demo-1.0.dist-info/RECORD"))).unwrap();
        assert!(record.starts_with("../../../bin/demo,sha256="), "{record}");
        assert!(record.contains("\n\"../../../share/demo/a,b \"\"q\"\".txt\",sha256="));
        assert!(record.contains("\ndemo-1.0.dist-info/RECORD,,\n"));
        let mut rels = Vec::new();
        for line in record.lines() {
            let [rel, hash, size]: [String; 3] = csv_line(line).unwrap().try_into().unwrap();
            rels.push(rel.clone());
            let abs = normalize_abs(&format!("{sp}/{rel}"));
            let f = got.files.iter().find(|f| f.path == abs).unwrap();
            if rel == "demo-1.0.dist-info/RECORD" {
                assert_eq!((hash.as_str(), size.as_str()), ("", ""));
            } else {
                assert_eq!(hash, record_hash(&f.data));
                assert_eq!(size, f.data.len().to_string());
            }
        }
        assert_eq!(rels.len(), got.files.len());
        let mut sorted = rels.clone();
        sorted.sort();
        assert_eq!(rels, sorted);
    }

    /// Resolves `..` components (test helper for RECORD paths).
    fn normalize_abs(p: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        for c in p.split('/').filter(|c| !c.is_empty()) {
            if c == ".." {
                out.pop();
            } else {
                out.push(c);
            }
        }
        format!("/{}", out.join("/"))
    }

    #[test]
    fn deterministic_and_independent_of_archive_order() {
        let a = install(FILE, &wheel(full()), &scheme()).unwrap();
        let b = install(FILE, &wheel(full()), &scheme()).unwrap();
        assert_eq!(a, b);
        let mut rev = full();
        rev.reverse();
        let c = install(FILE, &wheel(rev), &scheme()).unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn record_hash_mismatch_names_member() {
        let mut v = base();
        let record = record_of(&v).replace(&record_hash(b"print('hi')\n"), &record_hash(b"other"));
        v.push(m("demo-1.0.dist-info/RECORD", record.as_bytes()));
        let e = err(v);
        assert!(e.starts_with(FILE), "{e}");
        assert!(e.contains("member \"demo/__init__.py\": sha256 is"), "{e}");
    }

    #[test]
    fn record_size_mismatch_and_missing_listing() {
        let mut v = base();
        let record = record_of(&v).replace(",12\n", ",13\n");
        v.push(m("demo-1.0.dist-info/RECORD", record.as_bytes()));
        assert!(err(v).contains("\"demo/__init__.py\": size is 12"));

        let mut v = base();
        let record = record_of(&v) + "demo/gone.py,sha256=x,1\n";
        v.push(m("demo-1.0.dist-info/RECORD", record.as_bytes()));
        let e = err(v);
        assert!(
            e.contains("lists \"demo/gone.py\", which is not in the archive"),
            "{e}"
        );
    }

    #[test]
    fn unlisted_member_is_named() {
        let mut v = base();
        let record = record_of(&v);
        v.push(m("demo-1.0.dist-info/RECORD", record.as_bytes()));
        v.push(m("demo/extra.py", b""));
        let e = err(v);
        assert!(e.contains("member \"demo/extra.py\" is not listed"), "{e}");
    }

    #[test]
    fn unsafe_names_are_refused() {
        for (name, why) in [
            ("../evil.py", "`..` component"),
            ("demo/../../evil.py", "`..` component"),
            ("/etc/passwd", "absolute name"),
            ("demo\\x.py", "backslash"),
            ("demo//x.py", "empty component"),
        ] {
            let mut v = base();
            v.push(m(name, b"x"));
            let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
            assert!(e.starts_with(FILE), "{e}");
            assert!(e.contains(&format!("{name:?}")) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn special_members_are_refused() {
        let mut v = base();
        v.push(M {
            mode: 0o120777,
            ..m("demo/link", b"/etc/passwd")
        });
        assert!(install(FILE, &wheel(v), &scheme())
            .unwrap_err()
            .to_string()
            .contains("\"demo/link\" is a symlink"));

        let mut v = base();
        v.push(m("demo/__init__.py", b"again"));
        assert!(err(v).contains("\"demo/__init__.py\" appears more than once"));
    }

    #[test]
    fn metadata_must_match_file_name() {
        let mut v = base();
        v[2] = m(
            "demo-1.0.dist-info/METADATA",
            b"Name: other\nVersion: 1.0\n",
        );
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(e.contains("Name \"other\" does not match"), "{e}");

        let mut v = base();
        v[2] = m("demo-1.0.dist-info/METADATA", b"Name: demo\nVersion: 1.1\n");
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(e.contains("Version \"1.1\" differs"), "{e}");

        // Normalization: `DEMO` and `demo` are one project.
        let mut v = base();
        v[2] = m("demo-1.0.dist-info/METADATA", b"Name: DEMO\nVersion: 1.0\n");
        assert_eq!(install(FILE, &wheel(v), &scheme()).unwrap().name, "DEMO");
    }

    #[test]
    fn wheel_version_2_is_refused() {
        let mut v = base();
        v[3] = m("demo-1.0.dist-info/WHEEL", b"Wheel-Version: 2.0\n");
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(e.contains("Wheel-Version \"2.0\" is not supported"), "{e}");
    }

    #[test]
    fn zip64_and_other_methods_are_refused() {
        let mut v = base();
        v.push(M {
            method: 12,
            ..m("demo/x.py", b"bzip2?")
        });
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(e.contains("\"demo/x.py\": compression method 12"), "{e}");

        // The first entry's compressed size in the central directory set
        // to the ZIP64 marker.
        let mut z = wheel(base());
        let eocd = z.len() - 22;
        let cd = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        z[cd + 20..cd + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = install(FILE, &z, &scheme()).unwrap_err().to_string();
        assert!(
            e.contains("\"demo/__init__.py\": ZIP64 entries are not supported"),
            "{e}"
        );

        // An entry count of 0xffff in the end record.
        let mut z = wheel(base());
        let eocd = z.len() - 22;
        z[eocd + 10..eocd + 12].copy_from_slice(&u16::MAX.to_le_bytes());
        let e = install(FILE, &z, &scheme()).unwrap_err().to_string();
        assert!(e.contains("ZIP64 archives are not supported"), "{e}");
    }

    #[test]
    fn corrupt_data_is_refused() {
        let mut z = wheel(base());
        // The stored demo/cli.py's first data byte.
        let at = z.windows(4).position(|w| w == b"def ").unwrap();
        z[at] = b'D';
        let e = install(FILE, &z, &scheme()).unwrap_err().to_string();
        assert!(e.contains("\"demo/cli.py\": CRC-32 is"), "{e}");

        let z = wheel(base());
        let e = install(FILE, &z[..z.len() - 1], &scheme())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no ZIP end of central directory"), "{e}");
    }

    #[test]
    fn unknown_data_dir_and_bad_entry_points_are_refused() {
        let mut v = base();
        v.push(m("demo-1.0.data/etc/x", b""));
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(
            e.contains("\"demo-1.0.data/etc/x\": .data subdirectory \"etc\""),
            "{e}"
        );

        for bad in ["x/y = a:b", " = a:b", "x = a", "x = os; import y:z"] {
            let mut v = base();
            v.push(m(
                "demo-1.0.dist-info/entry_points.txt",
                format!("[console_scripts]\n{bad}\n").as_bytes(),
            ));
            let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
            assert!(e.contains("entry_points.txt\", line 2"), "{e}");
        }
    }

    #[test]
    fn conflicts_name_both_sources() {
        let mut v = base();
        v.push(m("demo-1.0.data/purelib/demo/cli.py", b"other"));
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(
            e.contains("member \"demo-1.0.data/purelib/demo/cli.py\" and member \"demo/cli.py\""),
            "{e}"
        );

        let mut v = base();
        v.push(m("demo-1.0.data/scripts/demo", b""));
        v.push(m(
            "demo-1.0.dist-info/entry_points.txt",
            b"[console_scripts]\ndemo = demo.cli:main\n",
        ));
        let e = install(FILE, &wheel(v), &scheme()).unwrap_err().to_string();
        assert!(
            e.contains("member \"demo-1.0.data/scripts/demo\" and entry point \"demo\""),
            "{e}"
        );
    }

    #[test]
    fn file_names() {
        let n = parse_file_name(
            "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        )
        .unwrap();
        assert_eq!(n.distribution, "MarkupSafe");
        assert_eq!(
            n.platform_tag,
            "manylinux_2_17_aarch64.manylinux2014_aarch64"
        );
        let n = parse_file_name("a-1-2b-py3-none-any.whl").unwrap();
        assert_eq!(n.build.as_deref(), Some("2b"));
        for bad in [
            "a-1-py3-none.whl",
            "a-1-py3-none-any.zip",
            "a/b-1-py3-none-any.whl",
            "a-1-b-py3-none-any.whl",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(normalize("Foo.Bar__baz-"), "foo-bar-baz-");
        assert_eq!(normalize("MarkupSafe"), "markupsafe");
        assert_eq!(
            relative(
                "/usr/local/lib/python3.11/dist-packages",
                "/usr/local/bin/flask"
            ),
            "../../../bin/flask"
        );
        assert_eq!(relative("/a/b", "/a/b/c/d"), "c/d");
        assert_eq!(relative("/", "/x"), "x");
        assert_eq!(
            csv_line("\"a,\"\"b\",sha256=x,1").unwrap(),
            vec!["a,\"b", "sha256=x", "1"]
        );
        assert_eq!(
            fix_shebang(b"#!pythonw -u\r\nx", "/p").unwrap(),
            b"#!/p -u\nx"
        );
        assert_eq!(fix_shebang(b"#!python3\nx", "/p"), None);
    }
}
