//! The few Nix store formats kiln needs, written by hand because no
//! maintained crate covers them (crates.io's `nix-compat` is a placeholder):
//! nix-base32, fixed-output store paths, and the NAR hash of a single file.
//! Also thin wrappers around the `nix-store` commands that add files.
//!
//! Reference: Nix 2.8 `src/libstore/store-api.cc` (makeFixedOutputPath) and
//! `src/libutil/hash.cc` (printHash32); checked against `nix-store
//! --print-fixed-path` and `nix-hash` in the tests.

use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const STORE_DIR: &str = "/nix/store";

const NIX32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error("`{command}` printed {got:?}, expected the store path {expected}")]
    UnexpectedPath {
        command: String,
        got: String,
        expected: String,
    },
}

/// Nix's base-32 encoding (as in store path hashes and `nix-hash --base32`).
pub fn nix32(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let low = bytes[i] >> j;
        let high = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        let c = (low as u16 | high) & 0x1f;
        out.push(NIX32_ALPHABET[c as usize] as char);
    }
    out
}

/// Replaces every character a store path name may not contain with `-`.
pub fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-._?=".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    match s.strip_prefix('.') {
        Some(rest) => format!("-{rest}"),
        None => s,
    }
}

/// Store name of a .deb's fixed-output derivation (docs/internals.md).
pub fn deb_store_name(name: &str, version: &str, architecture: &str) -> String {
    sanitize_name(&format!("{name}_{version}_{architecture}.deb"))
}

fn compress_hash(hash: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for (i, b) in hash.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

fn make_store_path(kind: &str, inner_hex: &str, name: &str) -> String {
    let fingerprint = format!("{kind}:sha256:{inner_hex}:{STORE_DIR}:{name}");
    let hash = Sha256::digest(fingerprint.as_bytes());
    format!("{STORE_DIR}/{}-{name}", nix32(&compress_hash(&hash, 20)))
}

/// Path of a flat (`outputHashMode = "flat"`) sha256 fixed-output derivation
/// or of `nix-store --add-fixed sha256 FILE`.
pub fn flat_fixed_path(name: &str, sha256: &[u8; 32]) -> String {
    let inner = Sha256::digest(format!("fixed:out:sha256:{}:", hex::encode(sha256)).as_bytes());
    make_store_path("output:out", &hex::encode(inner), name)
}

/// Path of a recursive sha256 fixed-output derivation or of
/// `nix-store --add-fixed --recursive sha256 FILE`, given the NAR hash.
pub fn recursive_fixed_path(name: &str, nar_sha256: &[u8; 32]) -> String {
    make_store_path("source", &hex::encode(nar_sha256), name)
}

fn nar_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    let pad = (8 - s.len() % 8) % 8;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// The NAR of a directory holding one executable at `bin/<name>`: what
/// `nix-store --add-fixed --recursive` serialises for the unpacked busybox.
/// Written by hand because it is this one shape and no maintained crate
/// writes NARs.
pub fn nar_of_bin_dir(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(contents.len() + 512);
    for s in [
        "nix-archive-1",
        "(",
        "type",
        "directory",
        "entry",
        "(",
        "name",
        "bin",
        "node",
    ] {
        nar_str(&mut o, s.as_bytes());
    }
    for s in ["(", "type", "directory", "entry", "(", "name"] {
        nar_str(&mut o, s.as_bytes());
    }
    nar_str(&mut o, name.as_bytes());
    for s in ["node", "(", "type", "regular", "executable", "", "contents"] {
        nar_str(&mut o, s.as_bytes());
    }
    nar_str(&mut o, contents);
    for s in [")", ")", ")", ")", ")"] {
        nar_str(&mut o, s.as_bytes());
    }
    o
}

/// sha256 of the NAR serialisation of one regular file.
pub fn nar_sha256_of_file(path: &Path) -> Result<[u8; 32], StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| StoreError::Io {
        what: format!("reading {}", path.display()),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let executable = meta.permissions().mode() & 0o100 != 0;
    let mut head = Vec::new();
    for s in [&b"nix-archive-1"[..], b"(", b"type", b"regular"] {
        nar_str(&mut head, s);
    }
    if executable {
        nar_str(&mut head, b"executable");
        nar_str(&mut head, b"");
    }
    nar_str(&mut head, b"contents");
    let len = meta.len();
    head.extend_from_slice(&len.to_le_bytes());
    let mut h = Sha256::new();
    h.update(&head);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let mut tail = vec![0u8; ((8 - len % 8) % 8) as usize];
    nar_str(&mut tail, b")");
    h.update(&tail);
    Ok(h.finalize().into())
}

fn run(cmd: &mut Command) -> Result<String, StoreError> {
    Ok(crate::tool::checked(cmd)?.trim().to_string())
}

/// Adds `file` with `nix-store --add-fixed sha256` (flat) and checks that the
/// path Nix reports is `expected`.
pub fn add_fixed_flat(file: &Path, expected: &str) -> Result<PathBuf, StoreError> {
    add(
        crate::nixcmd::command("nix-store")
            .args(["--add-fixed", "sha256"])
            .arg(file),
        expected,
    )
}

/// How many files one `nix-store --add-fixed` is given: one process per
/// file costs about 13 ms (hundreds of .debs and crates per fetch); the
/// limit keeps the command line well under the kernel's.
const ADD_BATCH: usize = 256;

/// Adds every `(file, expected store path)` flat, a batch of files per
/// `nix-store --add-fixed sha256` call, and checks each path Nix reports.
/// When a batch fails, its files are added one by one so that the error
/// names the one that failed: the index of that entry is returned with it.
pub fn add_fixed_flat_all(files: &[(PathBuf, String)]) -> Result<(), (usize, StoreError)> {
    for (chunk_no, chunk) in files.chunks(ADD_BATCH).enumerate() {
        let base = chunk_no * ADD_BATCH;
        let mut cmd = crate::nixcmd::command("nix-store");
        cmd.args(["--add-fixed", "sha256"]);
        cmd.args(chunk.iter().map(|(f, _)| f));
        let printed =
            run(&mut cmd).map(|out| out.lines().map(str::to_string).collect::<Vec<String>>());
        let all_match = printed.as_ref().is_ok_and(|lines| {
            lines.len() == chunk.len() && lines.iter().zip(chunk).all(|(l, (_, want))| l == want)
        });
        if all_match {
            continue;
        }
        for (i, (file, expected)) in chunk.iter().enumerate() {
            add_fixed_flat(file, expected).map_err(|e| (base + i, e))?;
        }
    }
    Ok(())
}

/// Adds `file` with `nix-store --add-fixed --recursive sha256` and checks the path.
pub fn add_fixed_recursive(file: &Path, expected: &str) -> Result<PathBuf, StoreError> {
    add(
        crate::nixcmd::command("nix-store")
            .args(["--add-fixed", "--recursive", "sha256"])
            .arg(file),
        expected,
    )
}

fn add(cmd: &mut Command, expected: &str) -> Result<PathBuf, StoreError> {
    let command = crate::tool::display(cmd);
    let got = run(cmd)?;
    if got != expected {
        return Err(StoreError::UnexpectedPath {
            command,
            got,
            expected: expected.to_string(),
        });
    }
    Ok(PathBuf::from(got))
}

/// Whether `path` is a valid (registered, complete) store path.
pub fn is_valid(path: &str) -> bool {
    crate::nixcmd::command("nix-store")
        .args(["--check-validity", path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn nix32_matches_known_values() {
        // nix-hash --type sha256 --to-base32 of sha256("") and of sha256("hello\n")
        assert_eq!(
            nix32(&sha(b"")),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(
            nix32(&sha(b"hello\n")),
            "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq"
        );
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(
            deb_store_name("tzdata", "2024a-0+deb12u1", "all"),
            "tzdata_2024a-0+deb12u1_all.deb"
        );
        assert_eq!(
            deb_store_name("libc6", "2.36-9~rc1", "amd64"),
            "libc6_2.36-9-rc1_amd64.deb"
        );
        assert_eq!(deb_store_name("x", "1:2.0", "arm64"), "x_1-2.0_arm64.deb");
    }

    /// Compares with the real `nix-store` when it is installed.
    #[test]
    fn store_paths_match_nix() {
        if Command::new("nix-store").arg("--version").output().is_err() {
            eprintln!("nix-store not installed; skipping");
            return;
        }
        let h = sha(b"kiln");
        let out = run(Command::new("nix-store").args([
            "--print-fixed-path",
            "sha256",
            &hex::encode(h),
            "x.deb",
        ]))
        .unwrap();
        assert_eq!(flat_fixed_path("x.deb", &h), out);
        let out = run(Command::new("nix-store").args([
            "--print-fixed-path",
            "--recursive",
            "sha256",
            &hex::encode(h),
            "kiln-seed",
        ]))
        .unwrap();
        assert_eq!(recursive_fixed_path("kiln-seed", &h), out);
    }

    #[test]
    fn nar_hash_matches_nix_hash() {
        use std::os::unix::fs::PermissionsExt;
        if Command::new("nix-hash").arg("--version").output().is_err() {
            eprintln!("nix-hash not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, content, mode) in [
            ("plain", &b"hello\n"[..], 0o644),
            ("exe", &b"#!/bin/x\nabc"[..], 0o755),
            ("empty", &b""[..], 0o644),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let want = run(Command::new("nix-hash").args(["--type", "sha256"]).arg(&p)).unwrap();
            assert_eq!(hex::encode(nar_sha256_of_file(&p).unwrap()), want, "{name}");
        }
    }
}
