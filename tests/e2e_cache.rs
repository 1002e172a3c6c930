//! `kiln cache push | verify` and building from the cache: a machine with
//! an empty Nix store, the cache as its substituter and its public key
//! trusted builds scratch-plus with no mirror and no `kiln fetch`, and gets
//! the committed digest; over HTTP on 127.0.0.1, with --outputs, it builds
//! nothing at all. A key the cache was not signed with is reported by
//! `kiln cache verify` and refused by Nix. Each "machine" is a fresh store
//! in a temporary directory (`--store local?root=DIR`).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

struct Fixture {
    dir: PathBuf,
    cache: String,
    public: String,
    other_public: String,
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        require_setup();
        build(&["scratch-plus"]);
        let dir = scratch("e2e-cache");
        let (sec, public) = nix_cache_key_pair(&dir, "kiln-test-cache-1");
        let (_, other) = nix_cache_key_pair(&dir, "someone-else-1");
        let cache = format!("file://{}", dir.join("cache").display());
        let out = cache_push_scratch_plus(&cache, &sec, &["--outputs", "--json"]);
        let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(report["inputs"].as_u64().unwrap() > 100, "{report}");
        assert!(report["outputs"].as_u64().unwrap() >= 5, "{report}");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
        Fixture {
            cache,
            public: read(&public),
            other_public: read(&other),
            dir,
        }
    })
}

/// `nix build .#scratch-plus` on a machine whose store is empty, with
/// `substituter` trusted under `key`; `extra` options follow.
fn build_on_fresh_machine(
    name: &str,
    substituter: &str,
    key: &str,
    extra: &[&str],
) -> (Output, PathBuf) {
    let root = scratch(name).join("store");
    let out = Command::new("nix")
        .current_dir(project())
        .args(["build", "--no-link", "--json", "--store"])
        .arg(format!("local?root={}", root.display()))
        .args(["--option", "substituters", substituter])
        .args(["--option", "trusted-public-keys", key])
        .args(extra)
        .arg(".#scratch-plus")
        .output()
        .unwrap();
    (out, root)
}

/// The index digest of what the fresh store built.
fn index_digest(out: &Output, root: &Path) -> String {
    let built: Value = serde_json::from_str(&stdout(out)).unwrap();
    let path = built[0]["outputs"]["out"].as_str().unwrap();
    let summary = read_json(&root.join(path.trim_start_matches('/')).join("image.json"));
    summary["index"]["digest"].as_str().unwrap().to_string()
}

fn committed_index() -> String {
    let d = read_json(&project().join("images/scratch-plus/digests.json"));
    d["images"]["scratch-plus"]["index"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_machine_with_only_the_cache_builds_the_committed_digest() {
    let fx = fixture();
    // No .debs, no seed, no mirror: everything the build needs comes
    // from the cache, and the layers are built here.
    let (out, root) = build_on_fresh_machine("e2e-cache-file", &fx.cache, &fx.public, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(index_digest(&out, &root), committed_index());
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn over_http_with_the_outputs_nothing_is_built() {
    let fx = fixture();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(fx.dir.join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // --max-jobs 0: this machine may not build anything.
    let (out, root) =
        build_on_fresh_machine("e2e-cache-http", &url, &fx.public, &["--max-jobs", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(index_digest(&out, &root), committed_index());
    let check = kiln(&[
        "cache",
        "verify",
        &url,
        "scratch-plus",
        "--outputs",
        "--public-key",
        fx.dir.join("kiln-test-cache-1.pub").to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn a_key_the_cache_was_not_signed_with_is_reported_and_refused() {
    let fx = fixture();
    let out = kiln(&[
        "cache",
        "verify",
        &fx.cache,
        "scratch-plus",
        "--public-key",
        fx.dir.join("someone-else-1.pub").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    // The .debs and crates are fixed-output paths, trusted by their hash;
    // the seed and the toolchain roots need the signature.
    assert!(
        e.contains("-kiln-seed") && e.contains("valid signature"),
        "{e}"
    );
    // Nix will not take them from the cache either: with no build allowed,
    // the build fails instead of using an untrusted seed.
    let (out, _) = build_on_fresh_machine(
        "e2e-cache-wrong-key",
        &fx.cache,
        &fx.other_public,
        &["--max-jobs", "0"],
    );
    assert!(!out.status.success());
    // Not a cache, or not a signing key: said before anything is copied.
    let out = kiln(&[
        "cache",
        "push",
        "/tmp/not-a-url",
        "scratch-plus",
        "--secret-key",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a binary cache URL"),
        "{}",
        stderr(&out)
    );
    let not_a_key = fx.dir.join("not-a-key");
    std::fs::write(&not_a_key, "hello").unwrap();
    let out = kiln(&[
        "cache",
        "push",
        &format!("file://{}", fx.dir.join("c2").display()),
        "scratch-plus",
        "--secret-key",
        not_a_key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a Nix signing key"),
        "{}",
        stderr(&out)
    );
}
