//! Licenses from Debian copyright files (`/usr/share/doc/<pkg>/copyright`).
//!
//! Only machine-readable files (copyright-format 1.0, "DEP-5") yield a
//! license: the first line of the `License:` field of every `Files:`
//! paragraph, mapped from Debian's short names to SPDX identifiers. Anything
//! else is `NOASSERTION`: an SBOM must never claim a license the package does
//! not state in a form a machine can read.

use std::collections::BTreeSet;

/// SPDX's "we do not know" value.
pub const NOASSERTION: &str = "NOASSERTION";

/// What the copyright file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyrightInfo {
    /// SPDX license expression, or [`NOASSERTION`].
    pub license: String,
    /// The `Copyright:` values, one holder line per line, or [`NOASSERTION`].
    pub copyright_text: String,
}

impl CopyrightInfo {
    pub fn noassertion() -> CopyrightInfo {
        CopyrightInfo {
            license: NOASSERTION.into(),
            copyright_text: NOASSERTION.into(),
        }
    }
}

/// Debian short license names (copyright-format 1.0, "Short name" table and
/// common practice) that are not simply SPDX identifiers in another case,
/// plus the SPDX identifiers Debian uses verbatim. Matched case-insensitively
/// (the format says short names are case-insensitive). The GNU family
/// (`GPL-2+`, `LGPL-2.1`, `AGPL-3+`, `GFDL-1.3+`, `GFDL-NIV-1.3`) is derived
/// by [`gnu_family`] instead of being listed. A name not found here becomes
/// `LicenseRef-<name>`, never a guess.
pub const SHORT_NAMES: &[(&str, &str)] = &[
    ("public-domain", "LicenseRef-public-domain"),
    ("Expat", "MIT"),
    ("MIT", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("0BSD", "0BSD"),
    ("ISC", "ISC"),
    ("Zlib", "Zlib"),
    ("Apache-1.0", "Apache-1.0"),
    ("Apache-1.1", "Apache-1.1"),
    ("Apache-2.0", "Apache-2.0"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2.0", "MPL-2.0"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("Artistic-2.0", "Artistic-2.0"),
    ("PSF-2", "Python-2.0"),
    ("Python-2.0", "Python-2.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("CC-BY-3.0", "CC-BY-3.0"),
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("CC-BY-SA-3.0", "CC-BY-SA-3.0"),
    ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
    ("OpenSSL", "OpenSSL"),
    ("BSL-1.0", "BSL-1.0"),
    ("X11", "X11"),
    ("FSFAP", "FSFAP"),
    ("FSFUL", "FSFUL"),
    ("FSFULLR", "FSFULLR"),
    ("Unicode-DFS-2016", "Unicode-DFS-2016"),
    ("curl", "curl"),
    ("Unlicense", "Unlicense"),
    ("WTFPL", "WTFPL"),
    ("EPL-1.0", "EPL-1.0"),
    ("EPL-2.0", "EPL-2.0"),
];

/// `<license> with <exception>`: Debian's free-text exception names
/// (lower-cased, the word "exception" removed) and the SPDX exception they
/// are. Autoconf's depends on the GPL version it modifies.
const EXCEPTIONS: &[(&str, &str)] = &[
    ("bison", "Bison-exception-2.2"),
    ("libtool", "Libtool-exception"),
    ("classpath", "Classpath-exception-2.0"),
    ("font", "Font-exception-2.0"),
    ("gcc-3.1", "GCC-exception-3.1"),
    ("gcc-runtime-library-3.1", "GCC-exception-3.1"),
    ("linux-syscall-note", "Linux-syscall-note"),
    ("llvm", "LLVM-exception"),
];

/// Reads a copyright file's text (`None`: the package has none).
pub fn analyze(text: Option<&str>) -> CopyrightInfo {
    let Some(text) = text else {
        return CopyrightInfo::noassertion();
    };
    let paragraphs = paragraphs(text);
    if !is_machine_readable(&paragraphs) {
        return CopyrightInfo::noassertion();
    }
    // Sorted by the term's text without its parentheses.
    let mut terms: BTreeSet<(String, bool)> = BTreeSet::new();
    for p in paragraphs.iter().filter(|p| field(p, "Files").is_some()) {
        let Some(license) = field(p, "License") else {
            continue;
        };
        let line = license.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(expr) = parse_license_line(line) {
            for term in expr.and_terms() {
                terms.insert((term.render(true), term.is_compound()));
            }
        }
    }
    let license = match terms.len() {
        0 => NOASSERTION.to_string(),
        1 => terms.into_iter().next().unwrap().0,
        _ => terms
            .into_iter()
            .map(|(s, compound)| if compound { format!("({s})") } else { s })
            .collect::<Vec<_>>()
            .join(" AND "),
    };
    let mut seen = BTreeSet::new();
    let mut lines = Vec::new();
    for p in &paragraphs {
        let Some(c) = field(p, "Copyright") else {
            continue;
        };
        for l in c.lines().map(str::trim) {
            if !l.is_empty() && l != "." && seen.insert(l.to_string()) {
                lines.push(l.to_string());
            }
        }
    }
    let copyright_text = if lines.is_empty() {
        NOASSERTION.to_string()
    } else {
        lines.join("\n")
    };
    CopyrightInfo {
        license,
        copyright_text,
    }
}

/// A paragraph: fields in order, values with continuation lines joined by
/// newlines (first line trimmed, continuation lines as written).
type Paragraph = Vec<(String, String)>;

/// Splits deb822 text into paragraphs, leniently (copyright files are
/// written by hand): comment lines are skipped, a line that is neither a
/// field nor a continuation is ignored.
fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out: Vec<Paragraph> = Vec::new();
    let mut cur: Paragraph = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            if !k.is_empty() && !k.contains(char::is_whitespace) {
                cur.push((k.to_string(), v.trim().to_string()));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a Paragraph, name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// DEP-5: the first paragraph's `Format:` names copyright-format 1.0.
fn is_machine_readable(paragraphs: &[Paragraph]) -> bool {
    paragraphs
        .first()
        .and_then(|p| field(p, "Format"))
        .is_some_and(|f| f.contains("copyright-format/1.0"))
}

/// A license expression as written on a `License:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// An SPDX identifier, `LicenseRef-...`, or `<id> WITH <exception>`.
    Id(String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn is_compound(&self) -> bool {
        !matches!(self, Expr::Id(_))
    }

    /// The operands of a top-level AND (or the expression itself).
    fn and_terms(self) -> Vec<Expr> {
        match self {
            Expr::And(v) => v,
            e => vec![e],
        }
    }

    /// SPDX syntax; operands sorted and deduplicated so that equal
    /// expressions render equally. `top`: no parentheses around it.
    pub fn render(&self, top: bool) -> String {
        let (v, op) = match self {
            Expr::Id(s) => return s.clone(),
            Expr::And(v) => (v, " AND "),
            Expr::Or(v) => (v, " OR "),
        };
        let parts: BTreeSet<String> = v.iter().map(|e| e.render(false)).collect();
        let s = parts.into_iter().collect::<Vec<_>>().join(op);
        if top {
            s
        } else {
            format!("({s})")
        }
    }

    fn combine(op: fn(Vec<Expr>) -> Expr, parts: Vec<Expr>) -> Option<Expr> {
        let is_same = |e: &Expr| {
            matches!(
                (op(vec![]), e),
                (Expr::And(_), Expr::And(_)) | (Expr::Or(_), Expr::Or(_))
            )
        };
        let mut flat = Vec::new();
        for p in parts {
            if is_same(&p) {
                if let Expr::And(v) | Expr::Or(v) = p {
                    flat.extend(v);
                }
            } else {
                flat.push(p);
            }
        }
        match flat.len() {
            0 => None,
            1 => flat.pop(),
            _ => Some(op(flat)),
        }
    }
}

/// Parses the first line of a `License:` field. Precedence per
/// copyright-format 1.0: `with <exception>` binds tightest, then `and`, then
/// `or`; a comma before `and`/`or` makes that operator bind loosest
/// (`A or B, and C` = `(A or B) and C`). A bare comma list is read as `and`.
pub fn parse_license_line(line: &str) -> Option<Expr> {
    // Tokens: words, with commas split off as their own token.
    let mut tokens: Vec<&str> = Vec::new();
    for w in line.split_whitespace() {
        let (word, comma) = match w.strip_suffix(',') {
            Some(w) => (w, true),
            None => (w, false),
        };
        if !word.is_empty() {
            tokens.push(word);
        }
        if comma {
            tokens.push(",");
        }
    }
    // Comma level: segments joined by ", and" / ", or".
    let mut segments: Vec<(bool, Vec<&str>)> = vec![(true, Vec::new())];
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "," {
            let next = tokens.get(i + 1).copied().unwrap_or("");
            let is_or = next.eq_ignore_ascii_case("or");
            if is_or || next.eq_ignore_ascii_case("and") {
                i += 1;
            }
            segments.push((!is_or, Vec::new()));
        } else {
            segments.last_mut().unwrap().1.push(tokens[i]);
        }
        i += 1;
    }
    let mut acc: Option<Expr> = None;
    for (is_and, words) in segments {
        let Some(e) = parse_or(&words) else { continue };
        acc = match acc {
            None => Some(e),
            Some(a) => Expr::combine(if is_and { Expr::And } else { Expr::Or }, vec![a, e]),
        };
    }
    acc
}

fn split_on<'a>(words: &[&'a str], op: &str) -> Vec<Vec<&'a str>> {
    let mut out = vec![Vec::new()];
    for w in words {
        if w.eq_ignore_ascii_case(op) {
            out.push(Vec::new());
        } else {
            out.last_mut().unwrap().push(*w);
        }
    }
    out
}

fn parse_or(words: &[&str]) -> Option<Expr> {
    let parts = split_on(words, "or")
        .iter()
        .filter_map(|w| parse_and(w))
        .collect();
    Expr::combine(Expr::Or, parts)
}

fn parse_and(words: &[&str]) -> Option<Expr> {
    let parts = split_on(words, "and")
        .iter()
        .filter_map(|w| parse_license(w))
        .collect();
    Expr::combine(Expr::And, parts)
}

/// One license, possibly `<name> with <exception words>`.
fn parse_license(words: &[&str]) -> Option<Expr> {
    if words.is_empty() {
        return None;
    }
    let with = words.iter().position(|w| w.eq_ignore_ascii_case("with"));
    let Some(at) = with.filter(|&at| at > 0 && at + 1 < words.len()) else {
        return Some(Expr::Id(spdx_id(&words.join(" "))));
    };
    let name = words[..at].join(" ");
    let exception: Vec<String> = words[at + 1..]
        .iter()
        .filter(|w| !w.eq_ignore_ascii_case("exception"))
        .map(|w| {
            w.to_ascii_lowercase()
                .trim_end_matches("-exception")
                .to_string()
        })
        .collect();
    let key = exception.join("-");
    let base = spdx_id(&name);
    let exception_id = match key.as_str() {
        "autoconf" if base.starts_with("GPL-2.0") => Some("Autoconf-exception-2.0"),
        "autoconf" if base.starts_with("GPL-3.0") => Some("Autoconf-exception-3.0"),
        k => EXCEPTIONS.iter().find(|(d, _)| *d == k).map(|(_, s)| *s),
    };
    Some(Expr::Id(match exception_id {
        // SPDX 2.3 allows only listed exceptions after WITH, so an unknown
        // one makes the whole thing a LicenseRef.
        Some(x) if !base.starts_with("LicenseRef-") => format!("{base} WITH {x}"),
        _ => license_ref(&words.join(" ")),
    }))
}

/// Maps one Debian short name to an SPDX identifier (or `LicenseRef-...`).
pub fn spdx_id(name: &str) -> String {
    if let Some(id) = gnu_family(name) {
        return id;
    }
    match SHORT_NAMES
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(name))
    {
        Some((_, id)) => id.to_string(),
        None => license_ref(name),
    }
}

/// `GPL-2`, `GPL-2+`, `LGPL-2.1+`, `AGPL-3`, `GFDL-1.3+`, `GFDL-NIV-1.2`
/// (also `GPL-2.0+`) to `GPL-2.0-only`, `GPL-2.0-or-later`, ... Only
/// versions that exist; unversioned `GPL` is not mapped (it would be a guess).
fn gnu_family(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let (family, rest) = ["GFDL-NIV-", "AGPL-", "LGPL-", "GPL-", "GFDL-"]
        .iter()
        .find_map(|f| upper.strip_prefix(f).map(|r| (&f[..f.len() - 1], r)))?;
    let (version, later) = match rest.strip_suffix('+') {
        Some(v) => (v, true),
        None => (rest, false),
    };
    let version = match (family, version) {
        ("GPL", "1" | "1.0") => "1.0",
        ("GPL" | "LGPL", "2" | "2.0") => "2.0",
        ("LGPL", "2.1") => "2.1",
        ("GPL" | "LGPL" | "AGPL", "3" | "3.0") => "3.0",
        ("AGPL", "1" | "1.0") => "1.0",
        ("GFDL" | "GFDL-NIV", v @ ("1.1" | "1.2" | "1.3")) => v,
        _ => return None,
    };
    let suffix = if later { "or-later" } else { "only" };
    Some(match family {
        "GFDL-NIV" => format!("GFDL-{version}-no-invariants-{suffix}"),
        f => format!("{f}-{version}-{suffix}"),
    })
}

/// `LicenseRef-` + the name with `+` spelled `plus` and every run of other
/// characters outside letters, digits and `.` turned into one `-`, as SPDX
/// allows only those in a LicenseRef.
pub fn license_ref(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            s.push(c);
        } else if c == '+' {
            if !s.is_empty() && !s.ends_with('-') {
                s.push('-');
            }
            s.push_str("plus");
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-');
    if s.is_empty() {
        "LicenseRef-unknown".to_string()
    } else {
        format!("LicenseRef-{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_map_to_spdx() {
        for (debian, spdx) in [
            ("GPL-2+", "GPL-2.0-or-later"),
            ("GPL-2", "GPL-2.0-only"),
            ("gpl-3+", "GPL-3.0-or-later"),
            ("GPL-2.0+", "GPL-2.0-or-later"),
            ("GPL-1+", "GPL-1.0-or-later"),
            ("LGPL-2.1+", "LGPL-2.1-or-later"),
            ("LGPL-2", "LGPL-2.0-only"),
            ("LGPL-3", "LGPL-3.0-only"),
            ("AGPL-3+", "AGPL-3.0-or-later"),
            ("GFDL-1.3+", "GFDL-1.3-or-later"),
            ("GFDL-NIV-1.2", "GFDL-1.2-no-invariants-only"),
            ("Expat", "MIT"),
            ("BSD-3-clause", "BSD-3-Clause"),
            ("bsd-2-clause", "BSD-2-Clause"),
            ("Apache-2.0", "Apache-2.0"),
            ("MPL-2.0", "MPL-2.0"),
            ("public-domain", "LicenseRef-public-domain"),
            ("Zlib", "Zlib"),
            ("ISC", "ISC"),
            ("PSF-2", "Python-2.0"),
            ("Artistic", "Artistic-1.0-Perl"),
            ("GPL", "LicenseRef-GPL"),
            ("GPL-4+", "LicenseRef-GPL-4-plus"),
            ("permissive", "LicenseRef-permissive"),
            ("BSD-like (see below)", "LicenseRef-BSD-like-see-below"),
        ] {
            assert_eq!(spdx_id(debian), spdx, "{debian}");
        }
    }

    fn line(s: &str) -> String {
        parse_license_line(s).unwrap().render(true)
    }

    #[test]
    fn license_lines_with_operators() {
        assert_eq!(
            line("GPL-1+ or Artistic"),
            "Artistic-1.0-Perl OR GPL-1.0-or-later"
        );
        assert_eq!(
            line("LGPL-2.1+ and BSD-3-clause"),
            "BSD-3-Clause AND LGPL-2.1-or-later"
        );
        // `and` binds tighter than `or` ...
        assert_eq!(
            line("MIT or GPL-2 and BSD-3-clause"),
            "(BSD-3-Clause AND GPL-2.0-only) OR MIT"
        );
        // ... unless a comma precedes it.
        assert_eq!(
            line("MIT or GPL-2, and BSD-3-clause"),
            "(GPL-2.0-only OR MIT) AND BSD-3-Clause"
        );
        assert_eq!(
            line("GPL-3+ with Autoconf exception"),
            "GPL-3.0-or-later WITH Autoconf-exception-3.0"
        );
        assert_eq!(
            line("GPL-2+ with Libtool exception"),
            "GPL-2.0-or-later WITH Libtool-exception"
        );
        assert_eq!(
            line("GPL-2+ with OpenSSL exception"),
            "LicenseRef-GPL-2-plus-with-OpenSSL-exception"
        );
        assert_eq!(line("Expat, BSD-2-clause"), "BSD-2-Clause AND MIT");
    }

    const DEP5: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example
Source: https://example.org

Files: *
Copyright: 2001-2020 Jane Doe <jane@example.org>
           2019 John Roe
License: GPL-2+
 This program is free software ...
 .
 more text

Files: lib/*
Copyright: 2010 Example Corp.
License: LGPL-2.1+ or MIT

Files: debian/*
Copyright: 2001-2020 Jane Doe <jane@example.org>
License: GPL-2+

Files: tests/*
Copyright: 2015 Tester
License: Expat and public-domain

# a comment
License: GPL-2+
 On Debian systems, the complete text ...
";

    #[test]
    fn dep5_files_give_an_spdx_expression_and_holders() {
        let info = analyze(Some(DEP5));
        assert_eq!(
            info.license,
            "GPL-2.0-or-later AND (LGPL-2.1-or-later OR MIT) AND LicenseRef-public-domain AND MIT"
        );
        assert_eq!(
            info.copyright_text,
            "2001-2020 Jane Doe <jane@example.org>\n2019 John Roe\n2010 Example Corp.\n2015 Tester"
        );
    }

    #[test]
    fn a_single_compound_term_has_no_parentheses() {
        let text = "Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: X\nLicense: GPL-1+ or Artistic\n";
        assert_eq!(
            analyze(Some(text)).license,
            "Artistic-1.0-Perl OR GPL-1.0-or-later"
        );
    }

    #[test]
    fn free_text_and_missing_files_are_noassertion() {
        let text = "This is the Debian GNU/Linux prepackaged version of libc.\n\nCopyright (C) 1991-2023 Free Software Foundation, Inc.\nLicense: LGPL-2.1+\n";
        assert_eq!(analyze(Some(text)), CopyrightInfo::noassertion());
        assert_eq!(analyze(None), CopyrightInfo::noassertion());
        // A Format line that is not copyright-format 1.0 is not enough.
        let text = "Format: something else\n\nFiles: *\nCopyright: X\nLicense: MIT\n";
        assert_eq!(analyze(Some(text)), CopyrightInfo::noassertion());
    }

    #[test]
    fn license_refs_are_valid_spdx() {
        for n in ["a b", "+", "--x--", "Foo+Bar", "été"] {
            let r = license_ref(n);
            let idstring = r.strip_prefix("LicenseRef-").unwrap();
            assert!(
                !idstring.is_empty()
                    && idstring
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{r}"
            );
        }
    }
}
