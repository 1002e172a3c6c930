//! kiln for a project of one's own: `kiln init` in a directory outside
//! kiln's repository, with kiln as a `path:` flake input, then the whole
//! flow a team runs (lock, fetch, build, sign, push, pull, verify). The
//! project's copy of the catalogue's scratch-plus definition must build to
//! the catalogue's committed digest: same definition, same lock entries,
//! same bytes, whichever flake builds it.

mod common;

use common::registry::Registry;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

const PASSWORD: &str = "own-project";

/// kiln's tracked files (and new ones not ignored), as a release tarball
/// or a clean clone would hold them: what the `path:` input points at.
/// Not the checkout itself: a `path:` input copies its whole directory
/// into the store, build output included.
fn export_kiln(to: &Path) {
    let listed = run(Command::new("git").arg("-C").arg(project()).args([
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
    ]));
    for rel in listed.split('\0').filter(|r| !r.is_empty()) {
        let from = project().join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap();
    }
}

/// `kiln args...` run in `dir` as a user would, without `--project`.
fn user(dir: &Path, args: &[&str]) -> Output {
    kiln_as_user(dir, PASSWORD, args)
}

#[track_caller]
fn ok(out: &Output) -> String {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert!(out.status.success(), "{text}");
    text
}

/// The digest of the multi-arch image in an OCI layout kiln built.
fn index_digest(layout: &Path) -> String {
    read_json(&layout.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn fresh(dir: &Path) {
    if dir.exists() {
        make_writable(dir);
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
}

#[test]
fn a_project_of_its_own_from_init_to_verify() {
    require_setup();
    let base = std::env::temp_dir().join("kiln-e2e-own-project");
    fresh(&base);
    let kiln_src = base.join("kiln");
    export_kiln(&kiln_src);
    let proj = base.join("acme-images");
    let kiln_ref = format!("path:{}", kiln_src.display());

    // init: the template, with this kiln as the input; nothing else.
    let said = ok(&user(&base, &["init", "acme-images", "--kiln", &kiln_ref]));
    assert!(said.contains("kiln lock"), "{said}");
    let flake = std::fs::read_to_string(proj.join("flake.nix")).unwrap();
    assert!(flake.contains(&kiln_ref), "{flake}");
    assert!(proj.join("images/example/image.toml").is_file());
    assert!(
        !proj.join("policy").exists(),
        "kiln's policies are used, not copied"
    );
    // init again overwrites nothing.
    let again = user(&base, &["init", "acme-images", "--kiln", &kiln_ref]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"));

    // The catalogue's scratch-plus, as the team's own image, with the
    // catalogue's lock to start from: `kiln lock` keeps an entry whose
    // packages have not changed, its `created` time included (a fresh
    // entry takes the newest signed index's date, so two locks made on
    // different days differ in that alone).
    copy_catalogue_definition(&proj, "scratch-plus");
    std::fs::copy(project().join("kiln.lock"), proj.join("kiln.lock")).unwrap();

    let locked = ok(&user(&proj, &["lock"]));
    assert!(proj.join("kiln.lock").is_file(), "{locked}");
    ok(&user(&proj, &["fetch"]));
    let built = ok_stdout(&user(
        &proj,
        &["build", "--json", "example", "scratch-plus"],
    ));
    let built: serde_json::Value = serde_json::from_str(&built).unwrap();
    let digest_of = |image: &str| {
        let b = built
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["image"] == image)
            .unwrap_or_else(|| panic!("kiln build did not build {image}: {built}"));
        assert_eq!(
            Some(index_digest(Path::new(b["out"].as_str().unwrap())).as_str()),
            b["digest"].as_str()
        );
        b["digest"].as_str().unwrap().to_string()
    };
    digest_of("example");
    let ours = digest_of("scratch-plus");

    // Same definition and same lock entries as the catalogue: same bytes.
    // When the mirror has moved on since kiln.lock was committed, a second
    // copy of the catalogue is relocked the same way, to compare like with
    // like.
    let entry = |dir: &Path| read_json(&dir.join("kiln.lock"))["images"]["scratch-plus"].clone();
    let committed = read_json(&project().join("images/scratch-plus/digests.json"))["images"]
        ["scratch-plus"]["index"]
        .as_str()
        .unwrap()
        .to_string();
    let expected =
        if entry(&proj) == entry(&project()) && same_packages(&proj, &project(), "scratch-plus") {
            committed
        } else {
            eprintln!(
                "the mirror moved since kiln.lock was committed: relocking a copy of the catalogue"
            );
            let catalogue = base.join("catalogue");
            export_kiln(&catalogue);
            ok(&user(&catalogue, &["lock", "scratch-plus"]));
            ok(&user(&catalogue, &["fetch", "scratch-plus"]));
            let o = user(&catalogue, &["build", "--json", "scratch-plus"]);
            let v: serde_json::Value = serde_json::from_str(&ok_stdout(&o)).unwrap();
            v[0]["digest"].as_str().unwrap().to_string()
        };
    assert_eq!(
        ours, expected,
        "the project's scratch-plus differs from the catalogue's"
    );

    // The provenance names kiln's input (the flake.lock pin) and the seed.
    let prov = read_json(&proj.join(".kiln/provenance/scratch-plus.intoto.json"));
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        deps.iter()
            .any(|d| d["name"] == "kiln" && d["annotations"]["role"] == "kiln"),
        "{deps:#?}"
    );
    assert!(deps.iter().any(|d| d["name"] == "kiln-seed"));

    // Sign, push, pull and verify, as in kiln's own repository.
    let reg = Registry::start();
    let target = format!("{}/acme/scratch-plus:latest", reg.host());
    let repo = format!("{}/acme/scratch-plus", reg.host());
    ok(&user(&proj, &["keygen"]));
    ok(&user(
        &proj,
        &[
            "sign",
            "scratch-plus",
            "--key",
            "cosign.key",
            "--reference",
            &repo,
        ],
    ));
    ok(&user(&proj, &["push", "scratch-plus", &target]));
    assert_eq!(
        reg.tag_digest("acme/scratch-plus", "latest"),
        Some(ours.clone())
    );
    let pulled = proj.join("pulled");
    ok(&user(&proj, &["pull", &target, pulled.to_str().unwrap()]));
    assert_eq!(index_digest(&pulled), ours);
    let v = ok(&user(
        &proj,
        &["verify", &target, "--key", "cosign.pub", "--source", "."],
    ));
    assert!(v.contains("✓") && !v.contains("✗"), "{v}");
    // The project's flake: its policies as checks, the verifier as an app.
    let check = Command::new("nix")
        .current_dir(&proj)
        .args(["flake", "check"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let nv = Command::new("nix")
        .current_dir(&proj)
        .args(["run", ".#verify", "--"])
        .args([&target, "--key", "cosign.pub"])
        .output()
        .unwrap();
    assert!(nv.status.success(), "{}{}", stdout(&nv), stderr(&nv));
}

/// The catalogue's definition of `image`, verbatim, into `dir`'s images/.
fn copy_catalogue_definition(dir: &Path, image: &str) {
    let rel = format!("images/{image}/image.toml");
    std::fs::create_dir_all(dir.join(format!("images/{image}"))).unwrap();
    std::fs::copy(project().join(&rel), dir.join(&rel)).unwrap();
}

#[track_caller]
fn ok_stdout(out: &Output) -> String {
    ok(out);
    stdout(out)
}

/// Whether two locks pin the same packages for `image` on every arch.
fn same_packages(a: &Path, b: &Path, image: &str) -> bool {
    let (la, lb) = (
        read_json(&a.join("kiln.lock")),
        read_json(&b.join("kiln.lock")),
    );
    let archs = la["images"][image]["archs"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    archs.iter().all(|(arch, plan)| {
        plan["packages"].as_array().unwrap().iter().all(|n| {
            let n = n.as_str().unwrap();
            la["packages"]["bookworm"][arch][n] == lb["packages"]["bookworm"][arch][n]
        })
    })
}

#[test]
fn a_project_without_images_or_kiln_is_told_the_fix() {
    require_setup();
    let base = std::env::temp_dir().join("kiln-e2e-own-project-mistakes");
    fresh(&base);
    // A flake that does not take kiln.
    std::fs::write(base.join("flake.nix"), "{ outputs = { self }: { }; }\n").unwrap();
    copy_catalogue_definition(&base, "scratch-plus");
    std::fs::copy(project().join("kiln.lock"), base.join("kiln.lock")).unwrap();
    let out = user(&base, &["build", "scratch-plus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no input named `kiln`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("kiln.lib.project"),
        "{}",
        stderr(&out)
    );

    // A flake but no images/ yet.
    // (Beside the other, not inside it: kiln would find that project.)
    let empty = std::env::temp_dir().join("kiln-e2e-own-project-empty");
    fresh(&empty);
    std::fs::copy(base.join("flake.nix"), empty.join("flake.nix")).unwrap();
    let out = user(&empty, &["lock"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("images/<name>/image.toml"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("kiln init"), "{}", stderr(&out));

    // No flake at all.
    std::fs::remove_file(base.join("flake.nix")).unwrap();
    let _ = std::fs::remove_file(base.join("flake.lock"));
    let out = user(&base, &["build", "scratch-plus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("kiln init"), "{}", stderr(&out));
}
