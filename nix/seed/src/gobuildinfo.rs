//! The build information Go (1.18 and later) writes into every binary: the
//! Go version, the main module and each dependency module with its
//! version and go.sum hash (what `go version -m` prints). The SBOMs list
//! them as `pkg:golang` components, as syft does.
//!
//! Format (cmd/go's `debug/buildinfo`): a 32-byte header starting with the
//! magic `\xff Go buildinf:`, 16-byte aligned in the data of the binary;
//! when bit 1 of byte 15 is set, two varint-length-prefixed strings follow
//! (the version, then the module information framed by 16 sentinel bytes
//! on each side). Older binaries store pointers instead; kiln's builders
//! use current Go, so those are reported as unreadable.
//!
//! Hand-written because no maintained crate reads it without pulling in a
//! whole object-file parser; it is 40 lines of format.

/// One module of a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    /// `(devel)` for a main module built outside version control.
    pub version: String,
    /// The go.sum `h1:` hash (dependencies only).
    pub sum: Option<String>,
}

/// What a Go binary says about how it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.23.5`.
    pub go_version: String,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
}

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const SENTINEL: usize = 16;

fn varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

fn string_at(data: &[u8]) -> Option<(&[u8], usize)> {
    let (len, n) = varint(data)?;
    let s = data.get(n..n.checked_add(len)?)?;
    Some((s, n + len))
}

/// Reads the build information of the Go binary `bin`; `None` when it is
/// not a Go binary (or one older than Go 1.18).
pub fn read(bin: &[u8]) -> Option<BuildInfo> {
    let start = (0..bin.len().saturating_sub(HEADER))
        .step_by(16)
        .find(|&i| bin[i..].starts_with(MAGIC))?;
    let flags = bin[start + 15];
    if flags & 2 == 0 {
        return None;
    }
    let rest = &bin[start + HEADER..];
    let (version, n) = string_at(rest)?;
    let (modinfo, _) = string_at(&rest[n..])?;
    let go_version = String::from_utf8(version.to_vec()).ok()?;
    let modinfo = if modinfo.len() >= 2 * SENTINEL {
        &modinfo[SENTINEL..modinfo.len() - SENTINEL]
    } else {
        &[][..]
    };
    let text = String::from_utf8_lossy(modinfo);
    let mut info = BuildInfo {
        go_version,
        main: None,
        deps: Vec::new(),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let module = |f: &[&str]| Module {
            path: f.get(1).unwrap_or(&"").to_string(),
            version: f.get(2).unwrap_or(&"").to_string(),
            sum: f.get(3).filter(|s| !s.is_empty()).map(|s| s.to_string()),
        };
        match f.first() {
            Some(&"mod") => info.main = Some(module(&f)),
            Some(&"dep") => info.deps.push(module(&f)),
            // A replacement applies to the module listed just before it.
            Some(&"=>") => {
                if let Some(last) = info.deps.last_mut() {
                    *last = module(&f);
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// The package URL syft gives a Go module: `pkg:golang/<path>@<version>`,
/// the path's slashes kept as namespace separators and, as syft writes it,
/// only characters that would break the URL's structure encoded (so
/// `(devel)` stays as is and matches what scanners report).
pub fn purl(path: &str, version: &str) -> String {
    let enc = |s: &str| {
        s.chars()
            .map(|c| match c {
                '@' | '?' | '#' | '%' | ' ' => format!("%{:02X}", c as u32),
                c if c.is_control() => format!("%{:02X}", c as u32),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    format!("pkg:golang/{}@{}", enc(path), enc(version))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes that hold Go build information as a Go 1.18+ binary does.
    pub(crate) fn binary(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        let mut header = MAGIC.to_vec();
        header.push(8);
        header.push(2);
        header.resize(HEADER, 0);
        b.extend(header);
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        for s in [version, framed.as_str()] {
            let mut n = s.len();
            while n >= 0x80 {
                b.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
                n >>= 7;
            }
            b.push(u8::try_from(n).unwrap());
            b.extend(s.as_bytes());
        }
        b.extend([0u8; 40]);
        b
    }

    #[test]
    fn reads_version_main_module_and_dependencies() {
        let bin = binary(
            "go1.23.5",
            "path\texample.org/hello\nmod\texample.org/hello\t(devel)\t\ndep\tgolang.org/x/text\tv0.14.0\th1:abc=\ndep\told.example/m\tv1.0.0\th1:x=\n=>\tnew.example/m\tv1.1.0\th1:y=\nbuild\t-buildmode=exe\n",
        );
        let info = read(&bin).unwrap();
        assert_eq!(info.go_version, "go1.23.5");
        assert_eq!(
            info.main,
            Some(Module {
                path: "example.org/hello".into(),
                version: "(devel)".into(),
                sum: None
            })
        );
        assert_eq!(info.deps.len(), 2);
        assert_eq!(info.deps[0].sum.as_deref(), Some("h1:abc="));
        assert_eq!(info.deps[1].path, "new.example/m", "replacements apply");
    }

    #[test]
    fn other_files_have_none() {
        assert_eq!(
            read(b"\x7fELF not go at all, not at all, not at all, really"),
            None
        );
        assert_eq!(read(&[]), None);
    }

    #[test]
    fn purls_are_syfts() {
        assert_eq!(
            purl("golang.org/x/text", "v0.14.0"),
            "pkg:golang/golang.org/x/text@v0.14.0"
        );
        assert_eq!(
            purl("example.org/hello", "(devel)"),
            "pkg:golang/example.org/hello@(devel)"
        );
        assert_eq!(purl("stdlib", "1.23.5"), "pkg:golang/stdlib@1.23.5");
    }
}
