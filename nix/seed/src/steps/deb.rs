//! Reading Debian binary packages (`deb(5)`): the ar container, the control
//! member (`control`, `md5sums`) and the data member's tar
//! entries, exactly as they are stored. Nothing here judges the entries:
//! [`crate::tarsafe`] validates and normalizes them.
//!
//! Only the formats dpkg itself writes are accepted: format `2.x`, members
//! `debian-binary`, `control.tar[.gz|.xz|.zst]`, `data.tar[.gz|.xz|.zst]` in
//! that order, plus members starting with `_` (reserved by deb(5) for
//! additions that older readers must ignore).

use crate::tarwrite::{Spill, Stored};
use std::io::{self, BufReader, Read};

/// Errors say which member (and where in it) is wrong; the caller adds the
/// package, version and architecture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a Debian package (ar archive)")]
    Ar(#[source] io::Error),
    #[error("first member is {0:?}, expected debian-binary")]
    FirstMember(String),
    #[error("debian-binary says {0:?}, expected format 2.x")]
    Format(String),
    #[error(
        "unexpected member {0:?} (expected control.tar[.gz|.xz|.zst], data.tar[.gz|.xz|.zst])"
    )]
    UnexpectedMember(String),
    #[error("member {0:?} appears after the data member or more than once")]
    MemberOrder(String),
    #[error("no {0} member")]
    MissingMember(&'static str),
    #[error("{member}: decompressing")]
    Decompress {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("{member}: reading tar")]
    Tar {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("{member}: entry name {name:?} is not UTF-8")]
    NonUtf8 { member: String, name: String },
    #[error("{member}: {what} of {name:?} is out of range")]
    Range {
        member: String,
        name: String,
        what: &'static str,
    },
    #[error("control member has no control file")]
    NoControl,
    #[error("control.tar: {0} is not a regular file")]
    ControlNotFile(String),
    #[error("control.tar: {0} is not UTF-8")]
    ControlNotUtf8(String),
    #[error("control file line {line}: {why}")]
    ControlSyntax { line: usize, why: &'static str },
    #[error("md5sums line {line}: expected \"<32 hex digits>  <path>\", got {text:?}")]
    Md5sums { line: usize, text: String },
    #[error("{member}: decompresses to more than {limit} bytes from {compressed}, past the {ratio}:1 ratio kiln accepts (a decompression bomb?)")]
    Bomb {
        member: String,
        compressed: u64,
        limit: u64,
        ratio: u64,
    },
}

/// How far a member may expand when decompressed: `RATIO` times its
/// compressed size plus `SLACK`. The largest ratio among the Debian 12
/// packages kiln has fetched is far below it (an all-zero file compresses
/// thousands of times), so only a crafted member reaches it, and the data
/// it would otherwise spill to disk stays bounded by the .deb's size.
const BOMB_RATIO: u64 = 100;
const BOMB_SLACK: u64 = 64 << 20;

/// The inner error of a [`Limited`] writer past its limit, told apart from
/// real I/O errors when the member's error is made.
#[derive(Debug)]
struct BombMarker;

impl std::fmt::Display for BombMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed size limit")
    }
}

impl std::error::Error for BombMarker {}

fn is_bomb(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<BombMarker>())
}

fn bomb_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(BOMB_RATIO)
        .saturating_add(BOMB_SLACK)
}

/// What a tar entry of a .deb is, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarKind {
    File(Vec<u8>),
    /// A regular file whose content was copied into a spill file as it
    /// was read ([`parse_from`] with a spill).
    Stored(Stored),
    Directory,
    /// Symbolic link with its target as stored.
    Symlink(String),
    /// Hard link with the name of the entry it links to, as stored.
    Hardlink(String),
    CharDevice,
    BlockDevice,
    Fifo,
    /// Any other type flag (GNU sparse files, volume labels, ...).
    Other(u8),
}

/// One entry of a .deb's data tar, as stored (name not normalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub name: String,
    pub kind: TarKind,
    /// Permission bits and setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

/// One field of a control stanza. `raw` is everything after the colon up to
/// the end of the field's last continuation line (without the final
/// newline), so that the stanza can be written back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: String,
}

impl Field {
    /// The value with the blank after the colon and trailing blanks removed;
    /// continuation lines are kept as written.
    pub fn value(&self) -> &str {
        self.raw.trim()
    }

    /// The first line of the value, trimmed (a Description's summary).
    pub fn first_line(&self) -> &str {
        self.raw.split('\n').next().unwrap_or("").trim()
    }
}

/// A binary package's control stanza (deb822), fields in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub fields: Vec<Field>,
}

impl Control {
    /// Parses one deb822 stanza. Blank lines are only allowed at the end
    /// (a binary package's control file is one paragraph).
    pub fn parse(text: &str) -> Result<Control, Error> {
        let mut fields: Vec<Field> = Vec::new();
        let mut ended = false;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                ended = !fields.is_empty();
                continue;
            }
            if ended {
                return Err(Error::ControlSyntax {
                    line: line_no,
                    why: "a second paragraph",
                });
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                let last = fields.last_mut().ok_or(Error::ControlSyntax {
                    line: line_no,
                    why: "continuation line before any field",
                })?;
                last.raw.push('\n');
                last.raw.push_str(line);
                continue;
            }
            let Some((name, raw)) = line.split_once(':') else {
                return Err(Error::ControlSyntax {
                    line: line_no,
                    why: "expected \"Field: value\"",
                });
            };
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_graphic())
                || name.starts_with('#')
            {
                return Err(Error::ControlSyntax {
                    line: line_no,
                    why: "bad field name",
                });
            }
            if fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
                return Err(Error::ControlSyntax {
                    line: line_no,
                    why: "duplicate field",
                });
            }
            fields.push(Field {
                name: name.to_string(),
                raw: raw.to_string(),
            });
        }
        if fields.is_empty() {
            return Err(Error::ControlSyntax {
                line: 1,
                why: "empty control file",
            });
        }
        Ok(Control { fields })
    }

    /// A field by name (field names are case-insensitive in deb822).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// A field's trimmed value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(Field::value)
    }

    /// The stanza as written in the package (each field `Name:raw`, one
    /// newline after each line, no blank line).
    pub fn render(&self) -> String {
        self.render_with_status(None)
    }

    /// The stanza for `/var/lib/dpkg/status.d/<name>`: the control file with
    /// `Status: install ok installed` right after `Package:`, which is what
    /// dpkg's status database holds and what scanners look for.
    pub fn to_status(&self) -> String {
        self.render_with_status(Some("install ok installed"))
    }

    fn render_with_status(&self, status: Option<&str>) -> String {
        let mut out = String::new();
        for f in &self.fields {
            if status.is_some() && f.name.eq_ignore_ascii_case("Status") {
                continue;
            }
            out.push_str(&f.name);
            out.push(':');
            out.push_str(&f.raw);
            out.push('\n');
            if let (Some(s), true) = (status, f.name.eq_ignore_ascii_case("Package")) {
                out.push_str("Status: ");
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
}

/// One line of a package's `md5sums`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5Line {
    /// 32 lowercase hex digits.
    pub md5: String,
    /// Path relative to the root, without a leading `./` or `/`.
    pub path: String,
}

/// Parses `md5sums` (`<md5>  <path>` per line, as written by dh_md5sums;
/// md5sum's binary marker `*` is accepted).
pub fn parse_md5sums(text: &str) -> Result<Vec<Md5Line>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || Error::Md5sums {
            line: i + 1,
            text: line.to_string(),
        };
        let (md5, rest) = line.split_at_checked(32).ok_or_else(bad)?;
        if !md5.bytes().all(|b| b.is_ascii_hexdigit()) || !rest.starts_with(' ') {
            return Err(bad());
        }
        let rest = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(bad)?;
        let path = rest.trim_start_matches("./").trim_start_matches('/');
        if path.is_empty() {
            return Err(bad());
        }
        out.push(Md5Line {
            md5: md5.to_ascii_lowercase(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// A parsed .deb.
#[derive(Debug, Clone)]
pub struct Deb {
    pub control: Control,
    /// `None` when the package has no md5sums file.
    pub md5sums: Option<Vec<Md5Line>>,
    /// Name of the data member (`data.tar.xz`, ...), for messages.
    pub data_member: String,
    /// The data tar's entries in archive order.
    pub data: Vec<TarEntry>,
}

/// Compression of a control or data member, from its name.
fn compression(name: &str, base: &str) -> Option<Compression> {
    match name.strip_prefix(base)? {
        ".tar" => Some(Compression::None),
        ".tar.gz" => Some(Compression::Gzip),
        ".tar.xz" => Some(Compression::Xz),
        ".tar.zst" => Some(Compression::Zstd),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

fn decompress(member: &str, c: Compression, data: Vec<u8>) -> Result<Vec<u8>, Error> {
    if c == Compression::None {
        return Ok(data);
    }
    let mut out = Vec::new();
    let compressed = data.len() as u64;
    decode(c, data.as_slice(), compressed, &mut out)
        .map_err(|e| member_error(member, compressed, e))?;
    Ok(out)
}

/// The error of a member whose decoding failed: a bomb when the limit
/// tripped, else what the decoder said.
fn member_error(member: &str, compressed: u64, source: io::Error) -> Error {
    if is_bomb(&source) {
        return Error::Bomb {
            member: member.to_string(),
            compressed,
            limit: bomb_limit(compressed),
            ratio: BOMB_RATIO,
        };
    }
    Error::Decompress {
        member: member.to_string(),
        source,
    }
}

/// A writer that fails once more than its limit was written to it.
struct Limited<'a, W> {
    inner: &'a mut W,
    left: u64,
}

impl<W: io::Write> io::Write for Limited<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other(BombMarker));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decodes a member of `compressed` bytes from `input` into `out`, failing
/// past its size limit ([`bomb_limit`]).
fn decode<R: Read, W: io::Write>(
    c: Compression,
    input: R,
    compressed: u64,
    out: &mut W,
) -> io::Result<()> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut out = Limited {
        inner: out,
        left: bomb_limit(compressed),
    };
    let mut input = BufReader::with_capacity(1 << 16, input);
    match c {
        Compression::None => {
            io::copy(&mut input, &mut out)?;
        }
        Compression::Gzip => {
            io::copy(&mut flate2::bufread::MultiGzDecoder::new(input), &mut out)?;
        }
        Compression::Xz => {
            // lzma-rs pushes its output into a writer instead of being read.
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| match e {
                lzma_rs::error::Error::IoError(e) if is_bomb(&e) => e,
                e => invalid(e.to_string()),
            })?;
        }
        Compression::Zstd => {
            // A .zst member may hold several frames; decode until the input ends.
            while !io::BufRead::fill_buf(&mut input)?.is_empty() {
                let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|e| invalid(e.to_string()))?;
                io::copy(&mut dec, &mut out)?;
            }
        }
    }
    Ok(())
}

/// Parses a .deb from its bytes.
pub fn parse(bytes: &[u8]) -> Result<Deb, Error> {
    parse_from(bytes, None)
}

/// The name of an ar member: GNU ar terminates names with '/'; dpkg accepts
/// both spellings.
fn member_name<R: Read>(entry: &ar::Entry<'_, R>) -> String {
    let raw = entry.header().identifier();
    String::from_utf8_lossy(raw.strip_suffix(b"/").unwrap_or(raw)).into_owned()
}

/// The largest `debian-binary` member read (it holds `2.0\n`).
const MAX_VERSION_MEMBER: u64 = 4096;

/// Parses a .deb as it is read from `reader`, in one pass. With a `spill`,
/// the contents of the data tar's regular files go there as they are
/// decoded ([`TarKind::Stored`]) and memory holds only the entries'
/// metadata; without, they are read into memory ([`TarKind::File`]).
/// The data member is decoded on a second thread, while this one reads
/// its tar.
pub fn parse_from<R: Read + Send>(reader: R, spill: Option<&Spill>) -> Result<Deb, Error> {
    let mut ar = ar::Archive::new(reader);
    let mut first = ar
        .next_entry()
        .ok_or(Error::MissingMember("debian-binary"))?
        .map_err(Error::Ar)?;
    let name = member_name(&first);
    if name != "debian-binary" {
        return Err(Error::FirstMember(name));
    }
    let mut version = Vec::new();
    (&mut first)
        .take(MAX_VERSION_MEMBER)
        .read_to_end(&mut version)
        .map_err(Error::Ar)?;
    drop(first);
    let version = String::from_utf8_lossy(&version).into_owned();
    let v = version.trim_end_matches('\n');
    if !(v.starts_with("2.") && v.len() > 2 && v[2..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(Error::Format(version));
    }
    let mut control: Option<(String, Vec<u8>)> = None;
    let mut data: Option<(String, Vec<TarEntry>)> = None;
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(Error::Ar)?;
        let name = member_name(&entry);
        if name.starts_with('_') {
            continue;
        }
        let size = entry.header().size();
        if let Some(c) = compression(&name, "control") {
            if control.is_some() || data.is_some() {
                return Err(Error::MemberOrder(name));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(Error::Ar)?;
            let tar = decompress(&name, c, bytes)?;
            control = Some((name, tar));
        } else if let Some(c) = compression(&name, "data") {
            if control.is_none() {
                return Err(Error::MissingMember("control.tar"));
            }
            if data.is_some() {
                return Err(Error::MemberOrder(name));
            }
            let entries = read_data(&name, c, size, entry, spill)?;
            data = Some((name, entries));
        } else {
            return Err(Error::UnexpectedMember(name));
        }
    }
    let (control_member, control_tar) = control.ok_or(Error::MissingMember("control.tar"))?;
    let (data_member, data) = data.ok_or(Error::MissingMember("data.tar"))?;

    let mut control_text = None;
    let mut md5sums = None;
    for e in read_tar(&control_member, &control_tar)? {
        let name = e.name.trim_start_matches("./");
        if !matches!(name, "control" | "md5sums") {
            continue;
        }
        let TarKind::File(bytes) = e.kind else {
            return Err(Error::ControlNotFile(name.to_string()));
        };
        let text = String::from_utf8(bytes).map_err(|_| Error::ControlNotUtf8(name.to_string()))?;
        match name {
            "control" => control_text = Some(text),
            _ => md5sums = Some(parse_md5sums(&text)?),
        }
    }
    let control = Control::parse(&control_text.ok_or(Error::NoControl)?)?;
    Ok(Deb {
        control,
        md5sums,
        data_member,
        data,
    })
}

/// Reads the data member's tar while a second thread decodes the member
/// into a pipe. The whole member is decoded even past the tar's end, so
/// that the compressor's own checks (xz's and gzip's CRCs) still run.
fn read_data<R: Read + Send>(
    member: &str,
    c: Compression,
    compressed: u64,
    input: R,
    spill: Option<&Spill>,
) -> Result<Vec<TarEntry>, Error> {
    if c == Compression::None {
        return read_tar_from(member, input, spill);
    }
    let (reader, mut writer) = io::pipe().map_err(|source| Error::Decompress {
        member: member.to_string(),
        source,
    })?;
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let r = decode(c, input, compressed, &mut writer);
            drop(writer);
            r
        });
        let mut reader = reader;
        let read = read_tar_from(member, &mut reader, spill);
        // Drain what the tar did not read (padding, trailing blocks), so
        // the decoder reaches the end of its stream; a tar error stops it
        // early: the closed pipe fails its next write.
        let drained = match &read {
            Ok(_) => io::copy(&mut reader, &mut io::sink()).map(|_| ()),
            Err(_) => Ok(()),
        };
        drop(reader);
        let decoded = decoder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the decoder thread panicked")));
        match (read, decoded, drained) {
            // A decoder that failed explains a truncated tar better; one
            // that only met the closed pipe does not.
            (Err(_), Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(member_error(member, compressed, e))
            }
            (Err(e), _, _) => Err(e),
            (Ok(_), Err(e), _) => Err(member_error(member, compressed, e)),
            (Ok(_), Ok(()), Err(e)) => Err(member_error(member, compressed, e)),
            (Ok(entries), Ok(()), Ok(())) => Ok(entries),
        }
    })
}

/// Reads every entry of an uncompressed tar. GNU long names and pax `path`,
/// `linkpath`, `uid`, `gid`, `mtime` records are honoured.
pub fn read_tar(member: &str, tar_bytes: &[u8]) -> Result<Vec<TarEntry>, Error> {
    read_tar_from(member, tar_bytes, None)
}

/// [`read_tar`] from a stream; with a `spill`, regular files' contents go
/// there ([`TarKind::Stored`]) instead of into memory.
pub fn read_tar_from<R: Read>(
    member: &str,
    input: R,
    spill: Option<&Spill>,
) -> Result<Vec<TarEntry>, Error> {
    let terr = |source| Error::Tar {
        member: member.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(input);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(terr)? {
        let mut entry = entry.map_err(terr)?;
        let name_bytes = entry.path_bytes().into_owned();
        let name = String::from_utf8(name_bytes).map_err(|e| Error::NonUtf8 {
            member: member.into(),
            name: String::from_utf8_lossy(e.as_bytes()).into(),
        })?;
        let link = match entry.link_name_bytes() {
            Some(l) => Some(
                String::from_utf8(l.into_owned()).map_err(|e| Error::NonUtf8 {
                    member: member.into(),
                    name: String::from_utf8_lossy(e.as_bytes()).into(),
                })?,
            ),
            None => None,
        };
        let h = entry.header();
        let range = |what| Error::Range {
            member: member.into(),
            name: name.clone(),
            what,
        };
        let mode = h.mode().map_err(|_| range("mode"))? & 0o7777;
        let mut uid = h.uid().map_err(|_| range("uid"))?;
        let mut gid = h.gid().map_err(|_| range("gid"))?;
        let mut mtime = h.mtime().map_err(|_| range("mtime"))?;
        let typ = h.entry_type();
        if let Some(pax) = entry.pax_extensions().map_err(terr)? {
            for ext in pax.flatten() {
                let (Ok(k), Ok(v)) = (ext.key(), ext.value()) else {
                    continue;
                };
                // pax times may carry a fraction; the integer part is the second.
                let int = |s: &str| s.split('.').next().unwrap_or("").parse::<u64>();
                match k {
                    "uid" => uid = int(v).map_err(|_| range("pax uid"))?,
                    "gid" => gid = int(v).map_err(|_| range("pax gid"))?,
                    "mtime" => mtime = int(v).map_err(|_| range("pax mtime"))?,
                    _ => {}
                }
            }
        }
        let uid = u32::try_from(uid).map_err(|_| range("uid"))?;
        let gid = u32::try_from(gid).map_err(|_| range("gid"))?;
        let link = || link.clone().unwrap_or_default();
        let kind = match typ {
            tar::EntryType::Regular | tar::EntryType::Continuous => match spill {
                Some(spill) => {
                    let size = entry.size();
                    TarKind::Stored(spill.store(&mut entry, size).map_err(terr)?)
                }
                None => {
                    // The header's size is not trusted for an allocation;
                    // the vector grows with what is really read.
                    let mut data = Vec::with_capacity(entry.size().min(1 << 20) as usize);
                    entry.read_to_end(&mut data).map_err(terr)?;
                    TarKind::File(data)
                }
            },
            tar::EntryType::Directory => TarKind::Directory,
            tar::EntryType::Symlink => TarKind::Symlink(link()),
            tar::EntryType::Link => TarKind::Hardlink(link()),
            tar::EntryType::Char => TarKind::CharDevice,
            tar::EntryType::Block => TarKind::BlockDevice,
            tar::EntryType::Fifo => TarKind::Fifo,
            other => TarKind::Other(other.as_byte()),
        };
        out.push(TarEntry {
            name,
            kind,
            mode,
            uid,
            gid,
            mtime,
        });
    }
    Ok(out)
}

/// Builders of .deb files for tests (here so that every module's tests can
/// use them).
#[cfg(test)]
pub mod fixtures {
    use std::io::Write;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Comp {
        None,
        Gz,
        Xz,
        Zst,
    }

    impl Comp {
        pub fn suffix(self) -> &'static str {
            match self {
                Comp::None => ".tar",
                Comp::Gz => ".tar.gz",
                Comp::Xz => ".tar.xz",
                Comp::Zst => ".tar.zst",
            }
        }
    }

    /// A tar entry written with raw header bytes, so that hostile names
    /// (`../x`, `/etc/x`) can be built.
    #[derive(Debug, Clone)]
    pub struct Fx {
        pub name: String,
        pub typ: u8,
        pub data: Vec<u8>,
        pub link: String,
        pub mode: u32,
        pub uid: u64,
        pub gid: u64,
        pub mtime: u64,
    }

    pub fn dir(name: &str) -> Fx {
        Fx {
            name: name.into(),
            typ: b'5',
            data: vec![],
            link: String::new(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }

    pub fn file(name: &str, data: &[u8]) -> Fx {
        Fx {
            typ: b'0',
            data: data.to_vec(),
            mode: 0o644,
            ..dir(name)
        }
    }

    pub fn symlink(name: &str, target: &str) -> Fx {
        Fx {
            typ: b'2',
            link: target.into(),
            mode: 0o777,
            ..dir(name)
        }
    }

    pub fn hardlink(name: &str, target: &str) -> Fx {
        Fx {
            typ: b'1',
            link: target.into(),
            mode: 0o644,
            ..dir(name)
        }
    }

    pub fn special(name: &str, typ: u8) -> Fx {
        Fx {
            typ,
            mode: 0o644,
            ..dir(name)
        }
    }

    /// A pax extended header record set (type `x`) for the entry after it.
    pub fn pax(records: &[(&str, &str)]) -> Fx {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            // The length prefix counts itself.
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        Fx {
            typ: b'x',
            data,
            mode: 0o644,
            ..dir("./PaxHeaders/x")
        }
    }

    /// Names of 100 bytes or more go into GNU `L`/`K` records, as GNU tar
    /// (and so dpkg-deb) writes them.
    pub fn tar(entries: &[Fx]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut e = e.clone();
            for (long, typ) in [(e.name.clone(), b'L'), (e.link.clone(), b'K')] {
                if long.len() >= 100 {
                    let mut data = long.into_bytes();
                    data.push(0);
                    append_raw(
                        &mut b,
                        &Fx {
                            typ,
                            data,
                            mode: 0o644,
                            ..dir("././@LongLink")
                        },
                    );
                }
            }
            e.name.truncate(99);
            e.link.truncate(99);
            append_raw(&mut b, &e);
        }
        b.into_inner().unwrap()
    }

    fn append_raw(b: &mut tar::Builder<Vec<u8>>, e: &Fx) {
        let mut h = tar::Header::new_gnu();
        {
            let raw = h.as_old_mut();
            raw.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            raw.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(tar::EntryType::new(e.typ));
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }

    pub fn compress(c: Comp, data: &[u8]) -> Vec<u8> {
        match c {
            Comp::None => data.to_vec(),
            Comp::Gz => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Comp::Xz => {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
                out
            }
            Comp::Zst => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }

    pub fn ar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = ar::Builder::new(Vec::new());
        for (name, data) in members {
            b.append(
                &ar::Header::new(name.as_bytes().to_vec(), data.len() as u64),
                data.as_slice(),
            )
            .unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A control stanza for a package.
    pub fn control(name: &str, version: &str, arch: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <t@example.org>\n\
             Installed-Size: 12\nHomepage: https://example.org/{name}\n\
             Description: test package {name}\n a longer\n .\n description\n"
        )
    }

    /// A complete .deb.
    pub fn deb(control: &str, md5sums: Option<&str>, data: &[Fx], comp: Comp) -> Vec<u8> {
        let mut ctl = vec![dir("./"), file("./control", control.as_bytes())];
        if let Some(m) = md5sums {
            ctl.push(file("./md5sums", m.as_bytes()));
        }
        let control_name = format!("control{}", comp.suffix());
        let data_name = format!("data{}", comp.suffix());
        ar(&[
            ("debian-binary", b"2.0\n".to_vec()),
            (&control_name, compress(comp, &tar(&ctl))),
            (&data_name, compress(comp, &tar(data))),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn sample_data() -> Vec<Fx> {
        vec![
            dir("./"),
            dir("./usr/"),
            dir("./usr/bin/"),
            Fx {
                mode: 0o4755,
                ..file("./usr/bin/tool", b"#!tool\n")
            },
            hardlink("./usr/bin/tool2", "./usr/bin/tool"),
            symlink("./usr/bin/t", "tool"),
        ]
    }

    #[test]
    fn every_compression_reads_the_same() {
        let mut seen = Vec::new();
        for c in [Comp::None, Comp::Gz, Comp::Xz, Comp::Zst] {
            let bytes = deb(
                &control("hello", "1.0-1", "amd64"),
                Some(""),
                &sample_data(),
                c,
            );
            let d = parse(&bytes).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert_eq!(d.data_member, format!("data{}", c.suffix()));
            assert_eq!(d.control.get("Package"), Some("hello"));
            seen.push(d.data);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
        let data = &seen[0];
        assert_eq!(data.len(), 6);
        assert_eq!(data[3].name, "./usr/bin/tool");
        assert_eq!(data[3].mode, 0o4755);
        assert_eq!(data[3].kind, TarKind::File(b"#!tool\n".to_vec()));
        assert_eq!(data[4].kind, TarKind::Hardlink("./usr/bin/tool".into()));
        assert_eq!(data[5].kind, TarKind::Symlink("tool".into()));
        assert_eq!(data[5].mtime, 1_700_000_000);
    }

    #[test]
    fn with_a_spill_contents_wait_on_disk_and_read_back_the_same() {
        for c in [Comp::None, Comp::Gz, Comp::Xz, Comp::Zst] {
            let bytes = deb(
                &control("hello", "1.0-1", "amd64"),
                Some(""),
                &sample_data(),
                c,
            );
            let in_memory = parse(&bytes).unwrap();
            let spill = Spill::new_in(&std::env::temp_dir()).unwrap();
            let spilled = parse_from(bytes.as_slice(), Some(&spill)).unwrap();
            assert_eq!(in_memory.data.len(), spilled.data.len());
            for (m, s) in in_memory.data.iter().zip(&spilled.data) {
                match (&m.kind, &s.kind) {
                    (TarKind::File(data), TarKind::Stored(stored)) => {
                        assert_eq!(&spill.read(stored).unwrap(), data, "{c:?} {}", m.name)
                    }
                    (a, b) => assert_eq!(a, b, "{c:?} {}", m.name),
                }
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_naming_the_member() {
        // 80 MiB of zeros gzip to about 80 KiB: past 100 times that plus
        // the 64 MiB allowance. Zeros also end a tar at once, so it is the
        // decoding of the rest that must trip the limit.
        let zeros = vec![0u8; 80 << 20];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        io::Write::write_all(&mut e, &zeros).unwrap();
        let data = e.finish().unwrap();
        drop(zeros);
        let ctl = tar(&[
            dir("./"),
            file("./control", control("bomb", "1", "amd64").as_bytes()),
        ]);
        let bytes = ar(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", ctl),
            ("data.tar.gz", data),
        ]);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, Error::Bomb { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("data.tar.gz: decompresses to more than"),
            "{text}"
        );
    }

    #[test]
    fn control_fields_keep_order_and_continuations() {
        let text = "Package: hello\nVersion: 1:2.3-4\nDepends: libc6 (>= 2.34),\n libfoo\nDescription: says hello\n It greets.\n .\n Really.   \n";
        let c = Control::parse(text).unwrap();
        let names: Vec<_> = c.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Package", "Version", "Depends", "Description"]);
        assert_eq!(c.get("version"), Some("1:2.3-4"));
        assert_eq!(c.field("Description").unwrap().first_line(), "says hello");
        assert_eq!(c.render(), text);
        assert_eq!(
            c.to_status(),
            "Package: hello\nStatus: install ok installed\nVersion: 1:2.3-4\nDepends: libc6 (>= 2.34),\n libfoo\nDescription: says hello\n It greets.\n .\n Really.   \n"
        );
    }

    #[test]
    fn control_syntax_errors() {
        assert!(Control::parse("Package: a\n\nPackage: b\n").is_err());
        assert!(Control::parse(" continuation\n").is_err());
        assert!(Control::parse("Package a\n").is_err());
        assert!(Control::parse("Package: a\npackage: b\n").is_err());
        assert!(Control::parse("\n\n").is_err());
        assert!(Control::parse("Package: a\n\n\n").is_ok());
    }

    #[test]
    fn md5sums_parse() {
        let m = parse_md5sums("d41d8cd98f00b204e9800998ecf8427e  usr/bin/x\n0123456789abcdef0123456789ABCDEF  ./etc/y z\n").unwrap();
        assert_eq!(
            m[0],
            Md5Line {
                md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
                path: "usr/bin/x".into()
            }
        );
        assert_eq!(m[1].path, "etc/y z");
        assert_eq!(m[1].md5, "0123456789abcdef0123456789abcdef");
        assert!(parse_md5sums("xyz  a\n").is_err());
        assert!(parse_md5sums("d41d8cd98f00b204e9800998ecf8427e usr/bin/x\n").is_err());
    }

    #[test]
    fn control_member_contents() {
        let bytes = deb(
            &control("a", "1", "all"),
            Some("d41d8cd98f00b204e9800998ecf8427e  usr/x\n"),
            &[dir("./")],
            Comp::Gz,
        );
        let d = parse(&bytes).unwrap();
        assert_eq!(d.md5sums.unwrap().len(), 1);
        let bytes = deb(&control("a", "1", "all"), None, &[dir("./")], Comp::Gz);
        assert!(parse(&bytes).unwrap().md5sums.is_none());
    }

    #[test]
    fn bad_containers_name_the_member() {
        let t = compress(
            Comp::Gz,
            &tar(&[file("./control", control("a", "1", "all").as_bytes())]),
        );
        let d = compress(Comp::Gz, &tar(&[dir("./")]));
        let err = |m: &[(&str, Vec<u8>)]| parse(&ar(m)).unwrap_err().to_string();
        assert!(err(&[("debian-binary", b"3.0\n".to_vec())]).contains("3.0"));
        assert!(err(&[("control.tar.gz", t.clone())]).contains("debian-binary"));
        let e = err(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", t.clone()),
            ("data.tar.bz2", d.clone()),
        ]);
        assert!(e.contains("data.tar.bz2"), "{e}");
        let e = err(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", t.clone()),
        ]);
        assert!(e.contains("data.tar"), "{e}");
        let e = err(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", t.clone()),
            ("data.tar.xz", d.clone()),
        ]);
        assert!(e.contains("data.tar.xz"), "{e}");
        // Members starting with '_' are ignored, per deb(5).
        assert!(parse(&ar(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("_gpgbuilder", b"sig".to_vec()),
            ("control.tar.gz", t),
            ("data.tar.gz", d)
        ]))
        .is_ok());
        assert!(matches!(parse(b"garbage"), Err(Error::Ar(_))));
    }

    #[test]
    fn long_names_and_pax_records_are_honoured() {
        let long = format!("./usr/lib/python3.11/{}/module.py", "d".repeat(120));
        let target = format!("../{}", "t".repeat(130));
        let entries = [
            file(&long, b"x"),
            symlink("./usr/lib/short", &target),
            pax(&[
                ("path", "./usr/share/pax-named-file"),
                ("mtime", "1800000000.25"),
                ("uid", "2000000"),
            ]),
            file("./ignored-name", b"y"),
        ];
        let got = read_tar("data.tar", &tar(&entries)).unwrap();
        assert_eq!(got[0].name, long);
        assert_eq!(got[1].kind, TarKind::Symlink(target));
        assert_eq!(got[2].name, "./usr/share/pax-named-file");
        assert_eq!((got[2].mtime, got[2].uid), (1_800_000_000, 2_000_000));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn device_nodes_are_reported_as_such() {
        let bytes = deb(
            &control("a", "1", "all"),
            None,
            &[special("./dev/null", b'3'), special("./p", b'6')],
            Comp::None,
        );
        let d = parse(&bytes).unwrap();
        assert_eq!(d.data[0].kind, TarKind::CharDevice);
        assert_eq!(d.data[1].kind, TarKind::Fifo);
    }
}
