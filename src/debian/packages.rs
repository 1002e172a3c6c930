//! Debian's deb822 control format as found in `Packages` indexes and
//! `Release` files, and the dependency-field syntax (Debian policy §7.1).
//!
//! The parser is hand-written for speed (a bookworm `Packages` file has
//! about 63,000 paragraphs and 50 MB): it borrows from the input and only the
//! fields the lock needs are copied out. Dependency fields are kept raw and
//! parsed when the resolver reaches a package, so the cost is paid only for
//! the few hundred packages an image actually pulls in.

use debversion::Version;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("{index}: line {line}: {message}")]
    Syntax {
        index: String,
        line: usize,
        message: String,
    },
    #[error("{index}: paragraph at line {line} ({package}): {message}")]
    Field {
        index: String,
        line: usize,
        package: String,
        message: String,
    },
}

/// One deb822 paragraph: fields in file order, values borrowed. A multi-line
/// value keeps its continuation lines (with their leading space).
#[derive(Debug, Clone)]
pub struct Paragraph<'a> {
    /// 1-based line of the first field.
    pub line: usize,
    pub fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Paragraph<'a> {
    /// The value of `name` (field names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Splits deb822 text into paragraphs. Errors name the line.
pub fn paragraphs(text: &str) -> Paragraphs<'_> {
    Paragraphs {
        text,
        pos: 0,
        line: 0,
    }
}

pub struct Paragraphs<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, (usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let mut para = Paragraph {
            line: 0,
            fields: Vec::new(),
        };
        // (name, value start, value end) of the field being read
        let mut cur: Option<(&'a str, usize, usize)> = None;
        while self.pos < text.len() {
            let start = self.pos;
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            self.pos = end + 1;
            self.line += 1;
            let line = text[start..end]
                .strip_suffix('\r')
                .unwrap_or(&text[start..end]);
            let first = line.as_bytes().first().copied().unwrap_or(b' ');
            // Only a line starting with blank space can be blank: checking
            // just those keeps the common `Field: value` line cheap.
            if (first == b' ' || first == b'\t') && line.trim().is_empty() {
                if cur.is_some() || !para.fields.is_empty() {
                    break;
                }
                continue;
            }
            if first == b'#' && para.fields.is_empty() && cur.is_none() {
                continue;
            }
            if first == b' ' || first == b'\t' {
                match &mut cur {
                    Some((_, _, e)) => *e = start + line.len(),
                    None => {
                        return Some(Err((self.line, "continuation line outside a field".into())))
                    }
                }
                continue;
            }
            let Some(colon) = line.find(':') else {
                return Some(Err((
                    self.line,
                    format!("expected `Field: value`, got {:?}", truncate(line)),
                )));
            };
            if let Some((name, s, e)) = cur.take() {
                para.fields.push((name, text[s..e].trim()));
            }
            if para.fields.is_empty() {
                para.line = self.line;
            }
            let name = &line[..colon];
            let vstart = start + colon + 1;
            cur = Some((name, vstart, start + line.len()));
        }
        if let Some((name, s, e)) = cur.take() {
            para.fields.push((name, text[s..e].trim()));
        }
        if para.fields.is_empty() {
            None
        } else {
            Some(Ok(para))
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// What kiln keeps of a `Packages` paragraph. Relationship fields stay raw
/// (see the module comment).
#[derive(Debug, Clone)]
pub struct BinaryPackage {
    pub name: String,
    pub version: Version,
    /// The version exactly as the index spells it (what the lock records).
    pub version_text: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub depends: String,
    pub pre_depends: String,
    pub provides: String,
    /// Conflicts and Breaks: packages that must not be installed beside
    /// this one (for an image of unpacked files, the two mean the same).
    pub conflicts: String,
    pub breaks: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub multi_arch: Option<String>,
    pub essential: bool,
}

/// Parses a whole `Packages` index; `index` names it in errors
/// (`bookworm main/binary-amd64/Packages.xz`).
pub fn parse_packages(text: &str, index: &str) -> Result<Vec<BinaryPackage>, PackagesError> {
    let mut out = Vec::with_capacity(text.len() / 800);
    for p in paragraphs(text) {
        let p = p.map_err(|(line, message)| PackagesError::Syntax {
            index: index.to_string(),
            line,
            message,
        })?;
        out.push(package(&p, index)?);
    }
    Ok(out)
}

/// The fields `package` reads, in slot order.
const WANTED: [&str; 14] = [
    "Package",
    "Version",
    "Architecture",
    "Source",
    "Depends",
    "Pre-Depends",
    "Provides",
    "Filename",
    "Size",
    "SHA256",
    "Multi-Arch",
    "Essential",
    "Conflicts",
    "Breaks",
];

/// One pass over a paragraph's fields into [`WANTED`] slots: looking each
/// field up separately is most of the parsing time in a debug build.
fn wanted<'a>(p: &Paragraph<'a>) -> [Option<&'a str>; 14] {
    let mut slots = [None; 14];
    for (k, v) in &p.fields {
        let i = match *k {
            "Package" => 0,
            "Version" => 1,
            "Architecture" => 2,
            "Source" => 3,
            "Depends" => 4,
            "Pre-Depends" => 5,
            "Provides" => 6,
            "Filename" => 7,
            "Size" => 8,
            "SHA256" => 9,
            "Multi-Arch" => 10,
            "Essential" => 11,
            "Conflicts" => 12,
            "Breaks" => 13,
            other => match WANTED.iter().position(|w| w.eq_ignore_ascii_case(other)) {
                Some(i) => i,
                None => continue,
            },
        };
        slots[i].get_or_insert(*v);
    }
    slots
}

fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty())
}

fn package(p: &Paragraph<'_>, index: &str) -> Result<BinaryPackage, PackagesError> {
    let [package, version, architecture, source, depends, pre_depends, provides, filename, size, sha256, multi_arch, essential, conflicts, breaks] =
        wanted(p);
    let name = package.unwrap_or("");
    let err = |message: String| PackagesError::Field {
        index: index.to_string(),
        line: p.line,
        package: if name.is_empty() {
            "no Package field".into()
        } else {
            name.to_string()
        },
        message,
    };
    if name.is_empty() {
        return Err(err("missing Package".into()));
    }
    let missing = |f: &str| err(format!("missing {f}"));
    let version_text = present(version).ok_or_else(|| missing("Version"))?;
    let version =
        parse_version(version_text).map_err(|e| err(format!("Version {version_text:?}: {e}")))?;
    let architecture = present(architecture).ok_or_else(|| missing("Architecture"))?;
    let filename = present(filename).ok_or_else(|| missing("Filename"))?;
    if filename.starts_with('/')
        || filename.split('/').any(|c| c == ".." || c.is_empty())
        || filename.contains("://")
    {
        return Err(err(format!(
            "Filename {filename:?} is not a relative archive path"
        )));
    }
    let size_text = present(size).ok_or_else(|| missing("Size"))?;
    let size = size_text
        .parse::<u64>()
        .map_err(|_| err(format!("Size {size_text:?} is not a number")))?;
    let sha256 = present(sha256).ok_or_else(|| missing("SHA256"))?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(format!("SHA256 {sha256:?} is not 64 hex digits")));
    }
    let (source, source_version) = match source {
        Some(s) if !s.is_empty() => parse_source(s)
            .ok_or_else(|| err(format!("Source {s:?} is not `name` or `name (version)`")))?,
        _ => (name, version_text),
    };
    Ok(BinaryPackage {
        name: name.to_string(),
        version,
        version_text: version_text.to_string(),
        architecture: architecture.to_string(),
        source: source.to_string(),
        source_version: if source_version.is_empty() {
            version_text
        } else {
            source_version
        }
        .to_string(),
        depends: depends.unwrap_or("").to_string(),
        pre_depends: pre_depends.unwrap_or("").to_string(),
        provides: provides.unwrap_or("").to_string(),
        conflicts: conflicts.unwrap_or("").to_string(),
        breaks: breaks.unwrap_or("").to_string(),
        filename: filename.to_string(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        multi_arch: multi_arch.map(str::to_string),
        essential: essential.is_some_and(|v| v.eq_ignore_ascii_case("yes")),
    })
}

fn parse_source(s: &str) -> Option<(&str, &str)> {
    let s = s.trim();
    let (name, version) = match s.split_once('(') {
        None => (s, ""),
        Some((n, rest)) => {
            let v = rest.strip_suffix(')')?.trim();
            if v.is_empty() {
                return None;
            }
            (n.trim(), v)
        }
    };
    (!name.is_empty() && !name.contains(char::is_whitespace)).then_some((name, version))
}

/// Parses a Debian version (`[epoch:]upstream[-revision]`, policy §5.6.12)
/// by hand: debversion's regex costs more than the rest of reading a
/// Packages index in a debug build. Accepts exactly what debversion's
/// `FromStr` accepts, and builds the same value.
pub fn parse_version(s: &str) -> Result<Version, String> {
    let bad = || format!("invalid version {s:?}");
    let (epoch, rest) = match s.split_once(':') {
        Some((e, r)) if !e.is_empty() && !r.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(e.parse::<u32>().map_err(|_| bad())?), r)
        }
        _ => (None, s),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) if !u.is_empty() && !r.is_empty() => (u, Some(r)),
        _ => (rest, None),
    };
    let up_ok = |b: u8| b.is_ascii_alphanumeric() || b".+:~-".contains(&b);
    let rev_ok = |b: u8| b.is_ascii_alphanumeric() || b"+.~".contains(&b);
    if upstream.is_empty()
        || !upstream.bytes().all(up_ok)
        || !revision.is_none_or(|r| r.bytes().all(rev_ok))
    {
        return Err(bad());
    }
    Ok(Version {
        epoch,
        upstream_version: upstream.to_string(),
        debian_revision: revision.map(str::to_string),
    })
}

/// A version relation in a dependency field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl VersionOp {
    fn parse(s: &str) -> Option<VersionOp> {
        Some(match s {
            "<<" => VersionOp::Lt,
            // `<` and `>` are obsolete spellings of `<=` and `>=` (policy §7.1).
            "<=" | "<" => VersionOp::Le,
            "=" => VersionOp::Eq,
            ">=" | ">" => VersionOp::Ge,
            ">>" => VersionOp::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Lt => "<<",
            VersionOp::Le => "<=",
            VersionOp::Eq => "=",
            VersionOp::Ge => ">=",
            VersionOp::Gt => ">>",
        }
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let o = have.cmp(want);
        match self {
            VersionOp::Lt => o == Less,
            VersionOp::Le => o != Greater,
            VersionOp::Eq => o == Equal,
            VersionOp::Ge => o != Less,
            VersionOp::Gt => o == Greater,
        }
    }
}

/// One alternative of a dependency clause: `name [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub constraint: Option<(VersionOp, Version)>,
}

impl Dependency {
    /// Whether a package (or a versioned Provides) at `version` satisfies
    /// the version part. `None` (an unversioned Provides) satisfies only an
    /// unversioned dependency.
    pub fn accepts(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, want)), Some(have)) => op.holds(have, want),
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({} {})", self.name, op.as_str(), v),
            None => f.write_str(&self.name),
        }
    }
}

/// One comma-separated clause: satisfied by any of its alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation(pub Vec<Dependency>);

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Parses a Depends/Pre-Depends value for `arch`. Architecture qualifiers
/// (`:any`, `:native`) are dropped (an image holds one architecture);
/// alternatives restricted to other architectures (`[!amd64]`) and build
/// profiles that are not active (kiln activates none) drop out; a clause
/// whose alternatives all drop out disappears.
pub fn parse_relations(field: &str, arch: &str) -> Result<Vec<Relation>, String> {
    let mut out = Vec::new();
    for clause in field.split(',') {
        let clause = clause.trim();
        if clause.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in clause.split('|') {
            if let Some(d) = parse_alternative(alt.trim(), arch)? {
                alts.push(d);
            }
        }
        if !alts.is_empty() {
            out.push(Relation(alts));
        }
    }
    Ok(out)
}

fn parse_alternative(s: &str, arch: &str) -> Result<Option<Dependency>, String> {
    let end = s
        .find(|c: char| c.is_whitespace() || "([<:".contains(c))
        .unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return Err(format!("{s:?}: {name:?} is not a package name"));
    }
    let mut rest = s[end..].trim_start();
    if let Some(r) = rest.strip_prefix(':') {
        let qend = r
            .find(|c: char| c.is_whitespace() || "([<".contains(c))
            .unwrap_or(r.len());
        rest = r[qend..].trim_start();
    }
    let mut constraint = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| format!("{s:?}: unterminated version relation"))?;
        let inner = r[..close].trim();
        let opend = inner
            .find(|c: char| !"<>=".contains(c))
            .unwrap_or(inner.len());
        let op = VersionOp::parse(&inner[..opend])
            .ok_or_else(|| format!("{s:?}: unknown relation {:?}", &inner[..opend]))?;
        let v = inner[opend..].trim();
        let v = parse_version(v).map_err(|e| format!("{s:?}: {e}"))?;
        constraint = Some((op, v));
        rest = r[close + 1..].trim_start();
    }
    if let Some(r) = rest.strip_prefix('[') {
        let close = r
            .find(']')
            .ok_or_else(|| format!("{s:?}: unterminated [architecture] list"))?;
        if !arch_list_matches(&r[..close], arch) {
            return Ok(None);
        }
        rest = r[close + 1..].trim_start();
    }
    let mut any_profile_group = false;
    let mut profile_ok = false;
    while let Some(r) = rest.strip_prefix('<') {
        let close = r
            .find('>')
            .ok_or_else(|| format!("{s:?}: unterminated <profile> list"))?;
        any_profile_group = true;
        // With no build profile active, a group holds when every term is negated.
        if r[..close].split_whitespace().all(|t| t.starts_with('!')) {
            profile_ok = true;
        }
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("{s:?}: unexpected {rest:?}"));
    }
    if any_profile_group && !profile_ok {
        return Ok(None);
    }
    Ok(Some(Dependency {
        name: name.to_string(),
        constraint,
    }))
}

fn arch_matches(pattern: &str, arch: &str) -> bool {
    pattern == arch
        || pattern == "any"
        || pattern == "linux-any"
        || pattern.strip_prefix("linux-") == Some(arch)
}

fn arch_list_matches(list: &str, arch: &str) -> bool {
    let terms: Vec<&str> = list.split_whitespace().collect();
    if terms.iter().all(|t| t.starts_with('!')) {
        !terms.iter().any(|t| arch_matches(&t[1..], arch))
    } else {
        terms
            .iter()
            .any(|t| !t.starts_with('!') && arch_matches(t, arch))
    }
}

/// Parses a Provides value: `name [(= version)]`, comma-separated.
pub fn parse_provides(field: &str) -> Result<Vec<(String, Option<Version>)>, String> {
    let mut out = Vec::new();
    for item in field.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let d = parse_alternative(item, "")?
            .ok_or_else(|| format!("{item:?}: unexpected restriction in Provides"))?;
        match d.constraint {
            None => out.push((d.name, None)),
            Some((VersionOp::Eq, v)) => out.push((d.name, Some(v))),
            Some((op, _)) => {
                return Err(format!(
                    "{item:?}: Provides allows only `=`, not {}",
                    op.as_str()
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    const INDEX: &str = "\
Package: libc6
Source: glibc
Version: 2.36-9+deb12u13
Installed-Size: 12983
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Recommends: libidn2-0 (>= 2.0.5~)
Breaks: aide (<< 0.17.3-4+b3), busybox (<< 1.30.1-6)
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 More text.
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb
Size: 2757936
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: python3.11-minimal
Source: python3.11 (3.11.2-6+deb12u6)
Version: 3.11.2-6+deb12u6+b1
Architecture: amd64
Pre-Depends: libc6 (>= 2.36)
Depends: libpython3.11-minimal (= 3.11.2-6+deb12u6+b1), libexpat1 (>= 2.1~beta3), zlib1g (>= 1:1.2.0)
Filename: pool/main/p/python3.11/python3.11-minimal_3.11.2-6+deb12u6+b1_amd64.deb
Size: 2064504
SHA256: 0000000000000000000000000000000000000000000000000000000000000002
Essential: no

Package: mawk
Version: 1.3.4.20200120-3.1
Architecture: amd64
Provides: awk
Filename: pool/main/m/mawk/mawk_1.3.4.20200120-3.1_amd64.deb
Size: 119000
SHA256: 0000000000000000000000000000000000000000000000000000000000000003
";

    #[test]
    fn packages_index_fields() {
        let pkgs = parse_packages(INDEX, "test").unwrap();
        assert_eq!(pkgs.len(), 3);
        let libc = &pkgs[0];
        assert_eq!(libc.name, "libc6");
        assert_eq!(libc.source, "glibc");
        assert_eq!(libc.source_version, "2.36-9+deb12u13");
        assert_eq!(libc.depends, "libgcc-s1");
        assert_eq!(libc.multi_arch.as_deref(), Some("same"));
        assert_eq!(libc.size, 2757936);
        let py = &pkgs[1];
        assert_eq!(py.source, "python3.11");
        assert_eq!(py.source_version, "3.11.2-6+deb12u6");
        assert_eq!(py.version_text, "3.11.2-6+deb12u6+b1");
        assert_eq!(py.pre_depends, "libc6 (>= 2.36)");
        assert!(!py.essential);
        let mawk = &pkgs[2];
        assert_eq!(mawk.source, "mawk");
        assert_eq!(mawk.source_version, "1.3.4.20200120-3.1");
        assert_eq!(
            parse_provides(&mawk.provides).unwrap(),
            vec![("awk".to_string(), None)]
        );
    }

    #[test]
    fn multiline_values_and_crlf() {
        let text = "Package: a\r\nDescription: x\r\n more\r\n\r\nPackage: b\r\n";
        let ps: Vec<_> = paragraphs(text).map(Result::unwrap).collect();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("x\r\n more"));
        assert_eq!(ps[1].line, 5);
    }

    #[test]
    fn bad_paragraphs_name_index_line_and_package() {
        let e = parse_packages("Package: a\nno colon here\n", "idx")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "idx: line 2: expected `Field: value`, got \"no colon here\""
        );
        let e = parse_packages("\nPackage: a\nVersion: 1\nArchitecture: all\nFilename: ../x.deb\nSize: 1\nSHA256: 00\n", "idx").unwrap_err().to_string();
        assert!(
            e.contains("idx: paragraph at line 2 (a)") && e.contains("not a relative archive path"),
            "{e}"
        );
        let e = parse_packages("Package: a\nVersion: 1\n", "idx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing Architecture"), "{e}");
    }

    #[test]
    fn dependency_syntax() {
        let r = parse_relations(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (>= 3.11~), perl:native, libfoo [arm64], \
             libbar [!arm64], libbaz <!nocheck>, libstage <stage1>, a [amd64] | b, c (<< 2) | d (>> 1) | e (= 1:2-3) | f (<= 4)",
            "amd64",
        )
        .unwrap();
        let text: Vec<String> = r.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "libc6 (>= 2.34)",
                "debconf (>= 0.5) | debconf-2.0",
                "python3 (>= 3.11~)",
                "perl",
                "libbar",
                "libbaz",
                "a | b",
                "c (<< 2) | d (>> 1) | e (= 1:2-3) | f (<= 4)",
            ]
        );
        let arm =
            parse_relations("libfoo [arm64], libbar [!arm64], x [linux-any]", "arm64").unwrap();
        assert_eq!(
            arm.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["libfoo", "x"]
        );
        // Obsolete `<` / `>` mean `<=` / `>=`.
        let old = parse_relations("a (< 2), b (> 1)", "amd64").unwrap();
        assert_eq!(old[0].0[0].constraint.as_ref().unwrap().0, VersionOp::Le);
        assert_eq!(old[1].0[0].constraint.as_ref().unwrap().0, VersionOp::Ge);
        assert!(parse_relations("a (~ 1)", "amd64").is_err());
        assert!(parse_relations("a (>= 1", "amd64").is_err());
        assert!(parse_relations("Bad", "amd64").is_err());
        assert!(parse_relations("", "amd64").unwrap().is_empty());
    }

    #[test]
    fn provides_with_versions() {
        let p = parse_provides("libfoo-abi (= 1.2), awk, x:any").unwrap();
        assert_eq!(
            p,
            vec![
                ("libfoo-abi".into(), Some(v("1.2"))),
                ("awk".into(), None),
                ("x".into(), None)
            ]
        );
        assert!(parse_provides("a (>= 1)").is_err());
    }

    #[test]
    fn hand_parsed_versions_match_debversion() {
        use std::str::FromStr;
        for s in [
            "1.0",
            "1:2.0-1",
            "2.36-9+deb12u14",
            "1:1.2.13.dfsg-1",
            "20250419~deb12u2",
            "1.0-1-2",
            "3.0.11-1~deb12u2",
            "0:1",
            "1.0-",
            "a:b",
            "12:3:4-5",
            "1.0~rc1+b1",
            "",
            "-1",
            "1.0 2",
            "1:",
            "x-y_z",
        ] {
            let ours = parse_version(s);
            let theirs = Version::from_str(s);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{s:?}: {ours:?} vs {theirs:?}"
            );
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                assert_eq!(
                    (a.epoch, &a.upstream_version, &a.debian_revision),
                    (b.epoch, &b.upstream_version, &b.debian_revision),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn version_relations_use_debian_ordering() {
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1:0.9") > v("2.0"));
        assert!(v("2.36-9+deb12u10") > v("2.36-9+deb12u9"));
        assert!(v("1.0-1") < v("1.0-1+b1"));
        assert!(v("1.0") == v("1.0"));
        let d = |s: &str| parse_relations(s, "amd64").unwrap().remove(0).0.remove(0);
        assert!(d("a (>= 1.0~)").accepts(Some(&v("1.0~rc1"))));
        assert!(!d("a (>= 1.0)").accepts(Some(&v("1.0~rc1"))));
        assert!(d("a (<< 2)").accepts(Some(&v("1.9"))));
        assert!(!d("a (<< 2)").accepts(Some(&v("2"))));
        assert!(d("a (= 1:2-3)").accepts(Some(&v("1:2-3"))));
        assert!(!d("a (>> 1)").accepts(Some(&v("1"))));
        // An unversioned Provides cannot satisfy a versioned dependency.
        assert!(!d("a (>= 1)").accepts(None));
        assert!(d("a").accepts(None));
    }
}
