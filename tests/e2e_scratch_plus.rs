//! Issue: hermetic `nix build .#scratch-plus` from a signed, pinned Debian
//! lock, end to end. Real Nix builds in the sandbox; the result is read by
//! skopeo and unpacked by umoci (which verifies every digest); the CA
//! bundle is parsed by openssl.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn lock() -> serde_json::Value {
    read_json(&project().join("kiln.lock"))
}

/// The store path of a locked .deb.
fn deb_path(arch: &str, name: &str) -> PathBuf {
    let p = &lock()["packages"]["bookworm"][arch][name];
    let sha: [u8; 32] = hex::decode(p["sha256"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let store_name = kiln::nixstore::deb_store_name(
        name,
        p["version"].as_str().unwrap(),
        p["architecture"].as_str().unwrap(),
    );
    PathBuf::from(kiln::nixstore::flat_fixed_path(&store_name, &sha))
}

#[test]
fn scratch_plus_builds_for_both_platforms_with_the_declared_contents() {
    let out = build(&["scratch-plus"]).remove(0);
    let work = scratch("e2e-scratch-plus");

    // The index lists both platforms; arm64 is v8.
    let manifests = platform_manifests(&out);
    let platforms: Vec<(String, Option<String>)> = manifests
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["platform"]["variant"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        vec![("amd64".into(), None), ("arm64".into(), Some("v8".into()))]
    );

    for (arch, skopeo_arch) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let info = skopeo_inspect(&out, "latest", &["--override-arch", skopeo_arch]);
        assert_eq!(info["Architecture"], arch);
        let labels = &info["Labels"];
        for key in [
            "title",
            "description",
            "source",
            "revision",
            "created",
            "licenses",
        ] {
            let v = labels[format!("org.opencontainers.image.{key}")]
                .as_str()
                .unwrap_or_default();
            assert!(!v.is_empty(), "{arch}: annotation {key} missing: {labels}");
        }
        assert_eq!(labels["org.opencontainers.image.title"], "scratch-plus");
        let config = skopeo_inspect(
            &out,
            "latest",
            &["--override-arch", skopeo_arch, "--config"],
        );
        assert_eq!(config["config"]["User"], "65532:65532", "{arch}");
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
            "{env:?}"
        );

        // umoci verifies every blob digest while unpacking.
        let rootfs = unpack(&out, &format!("latest-{arch}"), &work);
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(
            passwd
                .lines()
                .any(|l| l == "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"),
            "{passwd}"
        );
        assert!(
            passwd.lines().any(|l| l.starts_with("root:x:0:0:")),
            "{passwd}"
        );
        let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
        assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");
        assert!(rootfs
            .join("var/lib/dpkg/status.d/ca-certificates")
            .is_file());
        let status =
            std::fs::read_to_string(rootfs.join("var/lib/dpkg/status.d/ca-certificates")).unwrap();
        assert!(
            status.starts_with("Package: ca-certificates\nStatus: install ok installed\n"),
            "{status}"
        );
        // Nothing of the shell world: scratch-plus has no /bin at all.
        assert!(!rootfs.join("bin").exists() && !rootfs.join("usr/bin").exists());

        // The bundle parses and holds every certificate the package ships.
        let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
        let pkcs7 = run(Command::new("openssl")
            .args(["crl2pkcs7", "-nocrl", "-certfile"])
            .arg(&bundle));
        let pkcs7_file = work.join(format!("bundle-{arch}.p7"));
        std::fs::write(&pkcs7_file, pkcs7).unwrap();
        let certs = run(Command::new("openssl")
            .args(["pkcs7", "-print_certs", "-noout", "-in"])
            .arg(&pkcs7_file));
        let parsed = certs.lines().filter(|l| l.starts_with("subject=")).count();
        let shipped = run(Command::new("sh")
            .arg("-c")
            .arg(format!("dpkg-deb --fsys-tarfile {} | tar -t | grep -c '^./usr/share/ca-certificates/.*\\.crt$'", deb_path(arch, "ca-certificates").display())));
        let shipped: usize = shipped.trim().parse().unwrap();
        assert!(
            shipped > 100,
            "ca-certificates ships {shipped} certificates?"
        );
        assert_eq!(
            parsed, shipped,
            "{arch}: bundle has {parsed} certificates, the package ships {shipped}"
        );

        // Owners and modes as declared, read from the layers themselves
        // (a rootless unpack maps every owner to the current user).
        let manifest = read_json(&blob(
            &out,
            manifests
                .iter()
                .find(|m| m["platform"]["architecture"] == arch)
                .unwrap()["digest"]
                .as_str()
                .unwrap(),
        ));
        let layers = manifest["layers"].as_array().unwrap();
        let generated = layer_entries(&blob(
            &out,
            layers.last().unwrap()["digest"].as_str().unwrap(),
        ));
        let find = |p: &str| {
            generated
                .iter()
                .find(|e| e.0 == p)
                .unwrap_or_else(|| panic!("{p} not in the generated layer: {generated:?}"))
                .clone()
        };
        assert_eq!(find("tmp"), ("tmp".into(), 'd', 0o1777, 0, 0));
        assert_eq!(
            find("home/nonroot"),
            ("home/nonroot".into(), 'd', 0o700, 65532, 65532)
        );
        assert_eq!(find("etc/ssl/certs/ca-certificates.crt").2, 0o644);

        // Size budget (the seed projects claim about 200 KB).
        let compressed: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
        eprintln!(
            "scratch-plus {arch}: {compressed} bytes compressed in {} layers",
            layers.len()
        );
        assert!(compressed < 200 * 1024, "{arch}: {compressed} bytes");
    }
}

#[test]
fn building_twice_gives_the_same_bytes() {
    // Everything is built already or now; --rebuild builds the per-arch
    // image and the index again and fails if anything differs.
    build(&["scratch-plus-amd64", "scratch-plus-arm64", "scratch-plus"]);
    let out = kiln(&[
        "build",
        "--rebuild",
        "scratch-plus-amd64",
        "scratch-plus-arm64",
        "scratch-plus",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn nix_build(flake: &Path, attr: &str, env: &[(&str, &str)]) -> std::process::Output {
    Command::new("nix")
        .args(["build", "--no-link", "--print-build-logs"])
        .arg(format!("path:{}#{attr}", flake.display()))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn a_seed_that_differs_from_its_pin_names_the_command_that_updates_it() {
    require_setup();
    let dir = project_copy("e2e-seed-drift");
    let pin_file = dir.join("nix/seed.json");
    let mut pin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pin_file).unwrap()).unwrap();
    pin["narHash"] = serde_json::Value::String("5a".repeat(32));
    std::fs::write(&pin_file, serde_json::to_vec_pretty(&pin).unwrap()).unwrap();
    let out = kiln_in(&dir, &["build", "scratch-plus"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("differs from nix/seed.json"), "{err}");
    assert!(err.contains(&"5a".repeat(32)), "{err}");
    assert!(err.contains("run `kiln seed`"), "{err}");
    assert!(!dir.join("result").exists());
}

#[test]
fn a_definition_changed_after_locking_fails_the_build_and_the_check() {
    require_setup();
    let dir = project_copy("e2e-stale-lock");
    let def = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&def).unwrap().replace(
        "include = [\"ca-certificates\"]",
        "include = [\"ca-certificates\", \"tzdata\"]",
    );
    std::fs::write(&def, text).unwrap();
    let out = nix_build(&dir, "scratch-plus-amd64", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("kiln.lock is stale for image scratch-plus"),
        "{}",
        stderr(&out)
    );
    let out = kiln_in(&dir, &["lock", "--check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("scratch-plus"), "{}", stderr(&out));
}

#[test]
fn kiln_refuses_to_build_when_the_sandbox_is_off() {
    require_setup();
    let out = kiln_cmd(&project(), &["build", "scratch-plus"])
        .env("NIX_CONFIG", "sandbox = false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sandbox = false"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-unsandboxed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_nix_without_the_features_kiln_needs_is_named_with_the_fix() {
    require_setup();
    let out = kiln_cmd(&project(), &["build", "scratch-plus"])
        .env("NIX_CONFIG", "experimental-features =")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("add `experimental-features = nix-command flakes` to /etc/nix/nix.conf")
            && !err.contains("--extra-experimental-features"),
        "{err}"
    );
}

/// Even a plain `nix build` (bypassing kiln) with the sandbox off fails:
/// the seed sees host directories and refuses, unless explicitly allowed.
#[test]
fn the_seed_refuses_to_run_outside_the_sandbox() {
    require_setup();
    let unique = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let expr = format!(
        "(import {}/nix/lib.nix {{ root = {}; }}).step {{ name = \"kiln-sandbox-probe-{unique}\"; stepName = \"link\"; input = {{ links = {{ }}; }}; }}",
        project().display(),
        project().display()
    );
    let attempt = |allow: bool| {
        let mut cmd = Command::new("nix");
        cmd.args([
            "build",
            "--impure",
            "--no-link",
            "--print-build-logs",
            "--expr",
            &expr,
        ])
        .env("NIX_CONFIG", "sandbox = false");
        if allow {
            cmd.env("KILN_ALLOW_UNSANDBOXED", "1");
        } else {
            cmd.env_remove("KILN_ALLOW_UNSANDBOXED");
        }
        cmd.output().unwrap()
    };
    let refused = attempt(false);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("refusing to build outside the Nix sandbox"),
        "{}",
        stderr(&refused)
    );
    let allowed = attempt(true);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(
        stderr(&allowed).contains("NOT RUNNING IN THE NIX SANDBOX"),
        "{}",
        stderr(&allowed)
    );
}

#[test]
fn kiln_build_names_definition_errors_and_missing_debs_before_nix_runs() {
    require_setup();
    let dir = project_copy("e2e-build-precheck-definition");
    let def = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&def)
        .unwrap()
        .replace("[packages]\n", "[packages]\ncolour = \"red\"\n");
    std::fs::write(&def, text).unwrap();
    let out = kiln_in(&dir, &["build", "scratch-plus"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("images/scratch-plus/image.toml: line ") && err.contains("colour"),
        "{err}"
    );

    let dir = project_copy("e2e-build-precheck-debs");
    let lock_path = dir.join("kiln.lock");
    let mut lock = read_json(&lock_path);
    for arch in ["amd64", "arm64"] {
        lock["packages"]["bookworm"][arch]["ca-certificates"]["sha256"] = "00".repeat(32).into();
    }
    std::fs::write(&lock_path, kiln::json::pretty(&lock)).unwrap();
    let out = kiln_in(&dir, &["build", "scratch-plus"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pinned .deb(s) are not in the Nix store (ca-certificates ")
            && err.contains("run `kiln fetch`"),
        "{err}"
    );
}
