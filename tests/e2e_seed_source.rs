//! The seed compiled in the sandbox from pinned inputs: what it is made of
//! and what bad input does to its build. Each case names the crate, file
//! or package at fault, and nothing is built from it.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// `nix build` of a flake attribute of a project copy (a `path:` flake).
fn nix_build(dir: &Path, attr: &str) -> Output {
    Command::new("nix")
        .args(["build", "--no-link", "--print-build-logs"])
        .arg(format!("path:{}#{attr}", dir.display()))
        .output()
        .unwrap()
}

/// A Cargo.lock entry for a crate that exists nowhere: its checksum is
/// the sha256 of `content`.
fn fake_crate_entry(name: &str, content: &[u8]) -> String {
    format!(
        "\n[[package]]\nname = \"{name}\"\nversion = \"0.0.1\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
        kiln_seed::digest::Digest::of(content).hex()
    )
}

#[test]
fn the_seed_is_built_here_from_the_pinned_toolchain_and_matches_its_pin() {
    require_setup();
    let seed = build(&["seed"]).remove(0);
    let pin = read_json(&project().join("nix/seed.json"));
    assert_eq!(
        seed.display().to_string(),
        pin["storePath"].as_str().unwrap()
    );
    let nar = kiln::nixstore::nar_sha256_of_file(&seed).unwrap();
    assert_eq!(hex::encode(nar), pin["narHash"].as_str().unwrap());
    // Static (no ELF interpreter), runs, and carries no build path.
    let bytes = std::fs::read(&seed).unwrap();
    // No path below the build directories: the seed's own sources
    // (/build/src/src/...), a vendored crate (/build/vendor/<name>-<version>/,
    // the seed itself names /build/vendor, where its chroot step unpacks an
    // application's crates), the target directory, cargo's home.
    assert_eq!(build_path_leaks(&bytes), Vec::<String>::new());
    let file = run(Command::new("file").arg(&seed));
    assert!(file.contains("static"), "{file}");
    assert!(run(Command::new(&seed).arg("--version")).starts_with("kiln-seed "));
    // Its compiler is the locked Debian one.
    let lock = kiln::lock::Lock::read(&project().join("kiln.lock")).unwrap();
    let rustc = &lock.packages["bookworm"][&kiln_seed::spec::Arch::Amd64]["rustc-web"];
    assert_eq!(pin["compiler"], format!("rustc-web {}", rustc.version));
}

#[test]
fn a_crate_whose_bytes_do_not_match_cargo_lock_is_refused_by_kiln_fetch() {
    require_setup();
    let dir = project_copy("e2e-seed-tampered-crate");
    let lock_file = dir.join("nix/seed/Cargo.lock");
    let mut text = std::fs::read_to_string(&lock_file).unwrap();
    text.push_str(&fake_crate_entry(
        "kiln-e2e-tampered",
        b"the bytes the lock pins",
    ));
    std::fs::write(&lock_file, text).unwrap();
    // cargo's cache holds other bytes under that name.
    let home = scratch("e2e-seed-tampered-cargo-home");
    let cache = home.join("registry/cache/index.example-0000000000000000");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("kiln-e2e-tampered-0.0.1.crate"), b"other bytes").unwrap();

    let out = kiln_cmd(&dir, &["fetch"])
        .env("CARGO_HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("crate kiln-e2e-tampered 0.0.1"), "{err}");
    assert!(err.contains("nix/seed/Cargo.lock pins"), "{err}");
    assert!(err.contains("was not used"), "{err}");
    let fake = kiln::crates::Crate {
        name: "kiln-e2e-tampered".into(),
        version: "0.0.1".into(),
        checksum: kiln_seed::digest::Digest::of(b"the bytes the lock pins").hex(),
    };
    assert!(!valid(&fake.store_path()), "nothing was added");
}

#[test]
fn a_crate_missing_from_the_store_is_named_with_the_command_that_adds_it() {
    require_setup();
    let dir = project_copy("e2e-seed-missing-crate");
    let lock_file = dir.join("nix/seed/Cargo.lock");
    let mut text = std::fs::read_to_string(&lock_file).unwrap();
    text.push_str(&fake_crate_entry("kiln-e2e-absent", b"never fetched"));
    std::fs::write(&lock_file, text).unwrap();
    let out = nix_build(&dir, "seed");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("crate-is-not-in-the-nix-store/run-kiln-fetch/kiln-e2e-absent-0.0.1.crate"),
        "{err}"
    );
}

#[test]
fn a_cargo_lock_out_of_date_with_cargo_toml_fails_the_build_naming_it() {
    require_setup();
    let dir = project_copy("e2e-seed-stale-cargo-lock");
    let manifest = dir.join("nix/seed/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // A dependency Cargo.lock does not have: the source changed, no relock.
    assert!(text.contains("\n[dependencies]\n"), "{text}");
    let text = text.replacen(
        "\n[dependencies]\n",
        "\n[dependencies]\nkiln-e2e-unlocked = \"1\"\n",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    let out = nix_build(&dir, "seed");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("kiln-e2e-unlocked"), "{err}");
    assert!(err.contains("--locked") || err.contains("offline"), "{err}");
}

#[test]
fn a_tampered_toolchain_deb_builds_nothing_and_is_named() {
    require_setup();
    let dir = project_copy("e2e-seed-tampered-deb");
    let lock_file = dir.join("kiln.lock");
    let mut lock: serde_json::Value = read_json(&lock_file);
    // The lock now pins other bytes for gcc-12 than the ones in the store.
    lock["packages"]["bookworm"]["amd64"]["gcc-12"]["sha256"] =
        serde_json::Value::String("00".repeat(32));
    std::fs::write(&lock_file, serde_json::to_vec_pretty(&lock).unwrap()).unwrap();
    let out = nix_build(&dir, "toolchain-rust");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("run-kiln-fetch/gcc-12_"), "{err}");
    // kiln fetch would download it, and refuse bytes that are not the pinned ones.
    let fetched = kiln_in(&dir, &["fetch", "--json"]);
    assert!(!fetched.status.success());
    assert!(stderr(&fetched).contains("gcc-12"), "{}", stderr(&fetched));
}

/// Build paths the compiler could have left in a binary.
fn build_path_leaks(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut leaks = Vec::new();
    for fixed in ["/build/src/src/", "/build/target/", "/root/.cargo"] {
        if text.contains(fixed) {
            leaks.push(fixed.to_string());
        }
    }
    for (at, _) in text.match_indices("/build/vendor/") {
        let rest: String = text[at + "/build/vendor/".len()..]
            .chars()
            .take(64)
            .collect();
        // A crate directory: a name, `-`, a version starting with a digit.
        let dir = rest.split('/').next().unwrap_or("");
        let is_crate = dir.rsplit_once('-').is_some_and(|(name, version)| {
            !name.is_empty() && version.starts_with(|c: char| c.is_ascii_digit())
        });
        if is_crate && rest.contains('/') {
            leaks.push(format!("/build/vendor/{dir}/"));
        }
    }
    leaks
}
