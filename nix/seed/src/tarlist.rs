//! Lists the entries of a layer: one reader for every test and diagnostic
//! that looks inside a layer blob (the seed's step tests, the driver's
//! black-box tests), instead of a copy in each.

use std::io::Read;

/// One tar entry as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The path as stored (`./etc/`, `usr/bin/x`).
    pub raw_path: String,
    /// The path without a trailing `/`.
    pub path: String,
    pub entry_type: tar::EntryType,
    /// `d` directory, `l` symlink, `h` hard link, `-` anything else.
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Symlink or hard-link target.
    pub link: Option<String>,
    /// The entry's content (empty for links and directories).
    pub data: Vec<u8>,
}

/// The entries of `blob`: a gzip-compressed tar (recognized by its magic
/// bytes) or a plain one.
pub fn list(blob: &[u8]) -> std::io::Result<Vec<Listed>> {
    let mut tar = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut tar)?;
    } else {
        tar.extend_from_slice(blob);
    }
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar.as_slice());
    for e in archive.entries()? {
        let mut e = e?;
        let h = e.header().clone();
        let raw_path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        let entry_type = h.entry_type();
        out.push(Listed {
            path: raw_path.trim_end_matches('/').to_string(),
            raw_path,
            kind: match entry_type {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => '-',
            },
            entry_type,
            mode: h.mode()?,
            uid: h.uid()?,
            gid: h.gid()?,
            mtime: h.mtime()?,
            link,
            data,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_gzip_and_plain_tars_alike() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(65532);
        h.set_gid(65532);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "etc/x", &b"hi"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        l.set_mode(0o777);
        l.set_uid(0);
        l.set_gid(0);
        l.set_mtime(0);
        b.append_link(&mut l, "etc/y", "x").unwrap();
        let plain = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        for blob in [&plain, &gz] {
            let l = list(blob).unwrap();
            assert_eq!(
                (l[0].path.as_str(), l[0].kind, l[0].uid),
                ("etc/x", '-', 65532)
            );
            assert_eq!(l[0].data, b"hi");
            assert_eq!((l[1].kind, l[1].link.as_deref()), ('l', Some("x")));
        }
    }
}
