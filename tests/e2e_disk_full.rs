//! A full disk, as users meet it: keygen, pull and sign that run out of
//! space end with a clear error (exit 2, the OS's "No space left on
//! device", the path), leave no partial file behind and leave the previous
//! output as it was. Each test mounts its own small tmpfs (the suite runs
//! as root, as setup and CI do) and fills it after a first, successful run.

mod common;

use common::registry::Registry;
use common::*;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const NO_SPACE: &str = "No space left on device";

/// A tmpfs of `kib` KiB, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, kib: u64) -> Tmpfs {
        let dir = scratch(name).join("disk");
        std::fs::create_dir_all(&dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mounting a tmpfs (the disk-full tests run as root): {}",
            stderr(&o)
        );
        Tmpfs(dir)
    }

    /// Fills the file system to the last byte.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file below `dir` (but the filler) with its sha256.
fn contents(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "filler") {
                continue;
            }
            if p.is_dir() {
                stack.push(p.clone());
            }
            let hash = if p.is_file() {
                hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()))
            } else {
                "dir".into()
            };
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), hash);
        }
    }
    out
}

/// Exit 2, the OS's error, and `names` in what kiln said.
fn failed_for_space(o: &std::process::Output, names: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(NO_SPACE), "{err}");
    assert!(err.contains(names.to_str().unwrap()), "{err}");
    assert!(
        !err.contains("retrying"),
        "a full disk is not retried: {err}"
    );
}

#[test]
fn keygen_on_a_full_disk_keeps_the_old_pair() {
    let disk = Tmpfs::mount("disk-full-keygen", 256);
    let prefix = disk.0.join("cosign");
    let keygen = |force: bool| {
        let mut args = vec!["keygen", "--output-key-prefix", prefix.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        kiln_cmd(&project(), &args)
            .env("COSIGN_PASSWORD", "disk")
            .output()
            .unwrap()
    };
    assert!(keygen(false).status.success());
    let before = contents(&disk.0);
    disk.fill();
    let o = keygen(true);
    failed_for_space(&o, &disk.0);
    assert_eq!(contents(&disk.0), before);
}

#[test]
fn pull_onto_a_full_disk_keeps_the_previous_layout() {
    let reg = Registry::start();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    // Two images of one 300 KB layer each, of different bytes.
    for (tag, seed) in [("one", 1u8), ("two", 2u8)] {
        let layer: Vec<u8> = (0..300_000u32)
            .map(|i| (i as u8) ^ seed.wrapping_mul(37))
            .collect();
        let l = reg.put_blob("disk/full", &layer);
        let c = reg.put_blob("disk/full", config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        });
        let r = reg.put_manifest(
            "disk/full",
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        assert!(r.status == 201, "{}", r.text());
    }
    let disk = Tmpfs::mount("disk-full-pull", 1024);
    let dest = disk.0.join("pulled");
    let pull = |tag: &str, force: bool| {
        let reference = format!("{}/disk/full:{tag}", reg.host());
        let mut args = vec!["pull", &reference, dest.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        kiln(&args)
    };
    let o = pull("one", false);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = contents(&disk.0);
    disk.fill();
    let o = pull("two", true);
    failed_for_space(&o, &disk.0);
    assert_eq!(contents(&disk.0), before);
}

#[test]
fn sign_onto_a_full_disk_keeps_the_previous_signed_layout() {
    require_setup();
    let work = scratch("disk-full-sign");
    let provenance = work.join("provenance");
    build_with_provenance("scratch-plus", &provenance);
    let key = cosign_key_pair(&work);
    let disk = Tmpfs::mount("disk-full-sign-disk", 2048);
    let signed = disk.0.join("signed");
    let sign = || {
        kiln_cmd(
            &project(),
            &[
                "sign",
                "scratch-plus",
                "--key",
                key.with_extension("key").to_str().unwrap(),
                "--provenance-dir",
                provenance.to_str().unwrap(),
                "--out",
                signed.to_str().unwrap(),
            ],
        )
        .env("COSIGN_PASSWORD", "kiln-test")
        .output()
        .unwrap()
    };
    let o = sign();
    assert!(o.status.success(), "{}", stderr(&o));
    let before = contents(&disk.0);
    disk.fill();
    let o = sign();
    failed_for_space(&o, &disk.0);
    assert_eq!(contents(&disk.0), before);
}
