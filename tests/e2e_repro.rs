//! Reproducibility across machines, proven in CI, explained when
//! it breaks. Real sandboxed Nix builds throughout:
//!
//! - the committed digests of every image and arch are what this machine
//!   builds (`kiln digests --check`: CI runs it on a fresh machine);
//! - an image built under two different sets of perturbations (different
//!   derivations) has the same bytes;
//! - `kiln repro` finds scratch-plus identical under every perturbation, and
//!   fails on a deliberately non-deterministic build naming the file;
//! - `kiln digests --update` explains a change (inputs and `kiln diff`).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn committed_digests_are_reproduced() {
    require_setup();
    let out = kiln(&["digests", "--check"]);
    assert!(
        out.status.success(),
        "this machine does not reproduce the committed digests:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("have their committed digests"),
        "{}",
        stdout(&out)
    );
}

/// `nix build --impure` of the project with `KILN_PERTURB` set.
fn perturbed_build(attr: &str, perturb: &str, extra_env: &[(&str, &str)]) -> (String, PathBuf) {
    let out = run(Command::new("nix")
        .args(["build", "--impure", "--no-link", "--json"])
        .arg(format!("{}#{attr}", project().display()))
        .env("KILN_PERTURB", perturb)
        .envs(extra_env.iter().copied()));
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v[0]["drvPath"].as_str().unwrap().to_string(),
        PathBuf::from(v[0]["outputs"]["out"].as_str().unwrap()),
    )
}

fn image_json(out: &Path) -> Value {
    read_json(&out.join("image.json"))
}

fn nar_hash(path: &Path) -> String {
    let out = run(Command::new("nix-store")
        .args(["--query", "--hash"])
        .arg(path));
    out.trim().to_string()
}

#[test]
fn two_differently_perturbed_builds_give_the_same_image() {
    require_setup();
    let nonce = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (drv_a, out_a) = perturbed_build(
        "scratch-plus",
        &format!(
            r#"{{"TZ":"Pacific/Chatham","kilnUmask":"077","SOURCE_DATE_EPOCH":"1","kilnPerturbation":"a-{nonce}"}}"#
        ),
        &[("TZ", "Pacific/Chatham")],
    );
    let (drv_b, out_b) = perturbed_build(
        "scratch-plus",
        &format!(
            r#"{{"LANG":"tr_TR.UTF-8","LC_ALL":"tr_TR.UTF-8","kilnReverseOrder":"1","kilnPerturbation":"b-{nonce}"}}"#
        ),
        &[("LC_ALL", "tr_TR.UTF-8")],
    );
    // Different derivations, each built from scratch in this test...
    assert_ne!(drv_a, drv_b);
    assert_ne!(out_a, out_b);
    // ...and the very same bytes: digests, SBOMs, the whole output.
    let (a, b) = (image_json(&out_a), image_json(&out_b));
    assert_eq!(a["index"]["digest"], b["index"]["digest"]);
    assert_eq!(a["manifests"], b["manifests"]);
    assert_eq!(nar_hash(&out_a), nar_hash(&out_b));
    // And the same as the normal build.
    let normal = build(&["scratch-plus"]).remove(0);
    assert_eq!(image_json(&normal)["index"]["digest"], a["index"]["digest"]);
    assert_eq!(nar_hash(&normal), nar_hash(&out_a));
}

#[test]
fn perturbations_outside_the_known_set_are_refused() {
    require_setup();
    let out = Command::new("nix")
        .args(["eval", "--impure", "--raw"])
        .arg(format!("{}#scratch-plus.drvPath", project().display()))
        .env("KILN_PERTURB", r#"{"PATH":"/evil"}"#)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("KILN_PERTURB: unknown attribute(s) PATH"),
        "{}",
        stderr(&out)
    );
    // A pure evaluation (a plain nix build) never sees it.
    let pure = run(Command::new("nix")
        .args(["eval", "--raw"])
        .arg(format!("{}#scratch-plus.drvPath", project().display()))
        .env("KILN_PERTURB", r#"{"TZ":"UTC"}"#));
    let plain = run(Command::new("nix")
        .args(["eval", "--raw"])
        .arg(format!("{}#scratch-plus.drvPath", project().display()))
        .env_remove("KILN_PERTURB"));
    assert_eq!(pure, plain);
}

#[test]
fn scratch_plus_is_identical_under_every_perturbation() {
    require_setup();
    let out = kiln(&["repro", "scratch-plus", "--json"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["identical"], true);
    let names: Vec<&str> = r["perturbations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "rebuild",
            "cores",
            "tz",
            "locale",
            "umask",
            "source-date-epoch",
            "file-order",
            "clone-path"
        ]
    );
    // Two layers, two per-arch images, one index: every one compared under
    // every perturbation.
    assert_eq!(
        r["derivations"],
        serde_json::json!({"layer": 2, "image": 2, "index": 1})
    );
    for p in r["perturbations"].as_array().unwrap() {
        assert_eq!(p["compared"], 5, "{p}");
        assert_eq!(p["identical"], true, "{p}");
    }
    assert_eq!(r["rebuilds"], 40);
    let clone = &r["perturbations"][7];
    assert_eq!(clone["sameDerivations"], true, "{clone}");
    let digest = r["images"][0]["digest"].as_str().unwrap();
    for p in &r["perturbations"].as_array().unwrap()[2..] {
        assert_eq!(p["images"]["scratch-plus"], digest, "{p}");
    }
}

#[test]
fn a_non_deterministic_build_fails_repro_naming_the_file() {
    require_setup();
    let out = kiln_cmd(
        &project(),
        &["repro", "scratch-plus", "--only", "rebuild", "--only", "tz"],
    )
    .env("KILN_PERTURB", r#"{"kilnTestNondeterminism":"1"}"#)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("NOT REPRODUCIBLE"), "{text}");
    assert!(
        text.contains("first difference: kiln-image-scratch-plus-amd64 (image) under rebuild"),
        "{text}"
    );
    assert!(
        text.contains("amd64: layer 2 (generated files): /etc/kiln-nondeterminism: content"),
        "{text}"
    );

    let out = kiln_cmd(
        &project(),
        &[
            "repro",
            "scratch-plus",
            "--only",
            "rebuild",
            "--only",
            "tz",
            "--json",
        ],
    )
    .env("KILN_PERTURB", r#"{"kilnTestNondeterminism":"1"}"#)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["identical"], false);
    let rebuild = &r["perturbations"][0];
    assert_eq!(rebuild["name"], "rebuild");
    // Both per-arch images differ when rebuilt; the layers and the index
    // (built from the same image outputs) do not.
    let differing: Vec<&str> = rebuild["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["derivation"].as_str().unwrap())
        .collect();
    assert_eq!(
        differing,
        [
            "kiln-image-scratch-plus-amd64",
            "kiln-image-scratch-plus-arm64"
        ]
    );
    let first = &r["firstDifference"];
    assert!(first["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "~ image.json"));
    // The .check output was explained and removed.
    assert!(!Path::new(first["other"].as_str().unwrap()).exists());
    let tz = &r["perturbations"][1];
    assert_eq!(tz["identical"], false);
    assert_ne!(tz["images"]["scratch-plus"], r["images"][0]["digest"]);
}

#[test]
fn unknown_perturbations_are_named() {
    require_setup();
    let out = kiln(&["repro", "scratch-plus", "--only", "moon-phase"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown perturbation \"moon-phase\"")
            && stderr(&out).contains("file-order"),
        "{}",
        stderr(&out)
    );
}

/// A git clone of the project's flake source with the digests committed,
/// where `kiln digests` runs against a change.
fn git_copy(name: &str) -> PathBuf {
    let meta = run(Command::new("nix")
        .args(["flake", "metadata", "--json"])
        .arg(project()));
    let v: Value = serde_json::from_str(&meta).unwrap();
    let dir = scratch(name);
    run(Command::new("cp")
        .arg("-rT")
        .arg(v["path"].as_str().unwrap())
        .arg(&dir));
    make_writable(&dir);
    git_commit_all(&dir, "the project as it is");
    dir
}

#[test]
fn digests_check_names_each_difference_and_update_explains_it() {
    require_setup();
    let dir = git_copy("repro-digests");
    let check = kiln_in(&dir, &["digests", "--check", "scratch-plus"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // A definition change that only the default variant sees (the debug
    // variant runs as root): the check fails naming image and platforms...
    let def = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&def).unwrap();
    assert_eq!(text.matches("run_as = \"nonroot\"").count(), 1);
    std::fs::write(
        &def,
        text.replace("run_as = \"nonroot\"", "run_as = \"nobody\""),
    )
    .unwrap();
    let check = kiln_in(&dir, &["digests", "--check", "scratch-plus"]);
    assert!(!check.status.success());
    let said = stdout(&check);
    for what in [
        "scratch-plus index: expected sha256:",
        "scratch-plus amd64 manifest: expected sha256:",
        "scratch-plus arm64 manifest: expected sha256:",
    ] {
        assert!(said.contains(what), "{what}: {said}");
    }
    assert!(
        !said.contains("scratch-plus-debug"),
        "the debug variant did not change: {said}"
    );
    assert!(
        stderr(&check).contains("kiln digests --update"),
        "{}",
        stderr(&check)
    );

    // ...and --update records the new digests, saying why they moved: the
    // definition (input) and the user (kiln diff of old and new image).
    let before = std::fs::read(dir.join("images/scratch-plus/digests.json")).unwrap();
    let update = kiln_in(&dir, &["digests", "--update", "scratch-plus"]);
    assert!(update.status.success(), "{}", stderr(&update));
    let said = stdout(&update);
    assert!(
        said.contains("images/scratch-plus/image.toml changed"),
        "{said}"
    );
    for arch in ["amd64", "arm64"] {
        assert!(
            said.contains(&format!(
                "{arch}: config.User: \"65532:65532\" → \"65534:65534\""
            )),
            "{said}"
        );
    }
    assert!(
        said.contains("wrote images/scratch-plus/digests.json"),
        "{said}"
    );
    let after = std::fs::read(dir.join("images/scratch-plus/digests.json")).unwrap();
    assert_ne!(before, after);
    let file: Value = serde_json::from_slice(&after).unwrap();
    let old: Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(
        file["images"]["scratch-plus-debug"], old["images"]["scratch-plus-debug"],
        "unchanged images keep their digests"
    );
    let check = kiln_in(&dir, &["digests", "--check", "scratch-plus"]);
    assert!(check.status.success(), "{}", stderr(&check));

    // A broken digests file is named.
    std::fs::write(
        dir.join("images/scratch-plus/digests.json"),
        b"{\"images\": 1}",
    )
    .unwrap();
    let check = kiln_in(&dir, &["digests", "--check", "scratch-plus"]);
    assert!(!check.status.success());
    assert!(
        stderr(&check).contains("images/scratch-plus/digests.json"),
        "{}",
        stderr(&check)
    );
}
