//! Shared helpers for the integration tests that drive the real thing: Nix
//! builds in the sandbox, skopeo, umoci, podman, a registry on 127.0.0.1.
//!
//! These tests expect the machine to be set up (`scripts/setup`, which
//! `scripts/test` runs first): they fail, not skip, when it is not, so that
//! a missing install step cannot hide behind a green run.

#![allow(dead_code)]

pub mod registry;
pub mod sigstore;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository checkout (the kiln project the tests build).
pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kiln_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// The command `kiln --project <project> args...`, to add env or stdin to.
pub fn kiln_cmd(project: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kiln_bin());
    cmd.arg("--project").arg(project).args(args);
    cmd
}

/// `kiln --project <checkout> args...`
pub fn kiln(args: &[&str]) -> Output {
    kiln_in(&project(), args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A JSON file, parsed (panicking with its path when it cannot be).
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file of a blob in an OCI layout (`digest` with or without `sha256:`).
pub fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Panics with the one command that fixes it unless the machine is ready
/// for Nix builds (seed in the store, .debs fetched).
pub fn require_setup() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let pin: serde_json::Value = serde_json::from_slice(
            &std::fs::read(project().join("nix/seed.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let seed = pin["storePath"].as_str().unwrap_or_default().to_string();
        if !valid(&seed) {
            return Err(format!("the seed {seed} is not in the Nix store"));
        }
        let out = kiln(&["fetch"]);
        if !out.status.success() {
            return Err(format!("kiln fetch failed: {}", stderr(&out)));
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("this machine is not set up for kiln's integration tests ({e}); run scripts/setup");
    }
}

pub fn valid(store_path: &str) -> bool {
    !store_path.is_empty()
        && Command::new("nix-store")
            .args(["--check-validity", store_path])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Builds flake attributes with `kiln build` and returns their output paths.
pub fn build(attrs: &[&str]) -> Vec<PathBuf> {
    require_setup();
    let mut args = vec!["build", "--json"];
    args.extend_from_slice(attrs);
    let out = kiln(&args);
    assert!(
        out.status.success(),
        "kiln build {attrs:?} failed:\n{}",
        stderr(&out)
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("kiln build --json output");
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| PathBuf::from(b["out"].as_str().unwrap()))
        .collect()
}

/// A fresh scratch directory under the target dir (kept for inspection).
pub fn scratch(name: &str) -> PathBuf {
    let dir = project().join("target").join("test-scratch").join(name);
    if dir.exists() {
        make_writable(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a tree writable again (copies of store paths are read-only).
pub fn make_writable(dir: &Path) {
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(dir).status();
}

/// `umoci unpack` of one platform of a layout (umoci checks every digest).
pub fn unpack(layout: &Path, reference: &str, dest: &Path) -> PathBuf {
    let bundle = dest.join(format!("bundle-{reference}"));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{reference}", layout.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

/// `skopeo inspect` (optionally `--config`) of one reference as JSON.
pub fn skopeo_inspect(layout: &Path, reference: &str, extra: &[&str]) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(format!("oci:{}:{reference}", layout.display())));
    serde_json::from_str(&out).expect("skopeo inspect output")
}

/// Entries of a layer blob as `(path, type, mode, uid, gid)`.
pub fn layer_entries(blob: &Path) -> Vec<(String, char, u32, u64, u64)> {
    kiln_seed::tarlist::list(&std::fs::read(blob).unwrap())
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.kind, e.mode, e.uid, e.gid))
        .collect()
}

/// The descriptor list of the image index behind `<tag>` in a layout.
pub fn platform_manifests(layout: &Path) -> Vec<serde_json::Value> {
    let index = read_json(&layout.join("index.json"));
    let top = &index["manifests"][0];
    let nested = read_json(&blob(layout, top["digest"].as_str().unwrap()));
    nested["manifests"].as_array().unwrap().clone()
}

/// `kiln --project <dir> args...`
pub fn kiln_in(project: &Path, args: &[&str]) -> Output {
    kiln_cmd(project, args).output().expect("running kiln")
}

/// Commits everything in `dir` into a fresh git repository (a project
/// fixture with a revision to record and rebuild from).
pub fn git_commit_all(dir: &Path, message: &str) {
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=kiln tests",
                "-c",
                "user.email=tests@kiln.invalid",
            ])
            .args(args))
    };
    git(&["init", "--quiet"]);
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", message]);
}

/// The files Nix and kiln read of the project, besides the definitions.
pub const PROJECT_FILES: [&str; 5] = [
    "flake.nix",
    "flake.lock",
    "kiln.lock",
    "nix/lib.nix",
    "nix/seed.json",
];

/// The directories the flake compiles the seed from: its sources (without
/// build output) and the toolchain definitions; and the project template
/// the flake exports.
pub const SEED_DIRS: [&str; 3] = ["nix/seed", "toolchains", "templates"];

/// Copies what the flake needs besides the definitions and the lock:
/// [`PROJECT_FILES`] but kiln.lock, and [`SEED_DIRS`].
pub fn copy_flake_sources(dir: &Path) {
    for f in PROJECT_FILES.iter().filter(|f| **f != "kiln.lock") {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(project().join(f), to).unwrap();
    }
    for d in SEED_DIRS {
        copy_dir(&project().join(d), &dir.join(d));
    }
}

/// A copy of what Nix and kiln read of the project (with the definition of
/// scratch-plus only and the shipped policies), to change on purpose. It
/// lives outside the checkout: inside, Nix would read it as part of the
/// checkout's git flake; outside, it is a `path:` flake of its own.
pub fn project_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("kiln-e2e-projects").join(name);
    if dir.exists() {
        make_writable(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    for f in PROJECT_FILES
        .iter()
        .chain(&["images/scratch-plus/image.toml"])
    {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(project().join(f), to).unwrap();
    }
    copy_flake_sources(&dir);
    copy_dir(&project().join("policy"), &dir.join("policy"));
    dir
}

/// [`project_copy`] plus these directories of the project (images and
/// their sources), to break on purpose.
pub fn project_copy_with(name: &str, dirs: &[&str]) -> PathBuf {
    let dir = project_copy(name);
    for d in dirs {
        copy_dir(&project().join(d), &dir.join(d));
    }
    dir
}

/// Copies a tree, leaving out build output (`target/`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "target" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `syft scan oci-dir:<layout> -o json` (syft from scripts/tools' venv):
/// what an independent scanner finds in an image.
pub fn syft_json(layout: &Path) -> serde_json::Value {
    let out = Command::new(project().join(".kiln/venv/bin/syft"))
        .arg("scan")
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("running syft (scripts/tools installs it)");
    assert!(
        out.status.success(),
        "syft on {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("syft's JSON")
}

/// `kiln test <image> --json` on every platform of the image: asserts it
/// passed on `archs` platforms and returns each platform's arch and the
/// detail of its `test` check (the image's own `[test]` command).
pub fn kiln_test_details(image: &str, archs: usize) -> Vec<(String, String)> {
    require_setup();
    let out = kiln(&["test", image, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    let results = report.as_array().expect("kiln test --json: a list");
    assert_eq!(results.len(), archs, "{report}");
    results
        .iter()
        .map(|r| {
            let test = r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "test")
                .unwrap_or_else(|| panic!("no [test] check in {r}"));
            assert_eq!(test["ok"], true, "{r}");
            let arch = r["arch"].as_str().unwrap().to_string();
            println!("figure: kiln test {image} ({arch}): {} s", r["elapsed"]);
            (arch, test["detail"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The `resolvedDependencies` of the provenance `kiln build` last wrote
/// for `image`.
pub fn resolved_dependencies(image: &str) -> Vec<serde_json::Value> {
    let statement = read_json(
        &project()
            .join(".kiln/provenance")
            .join(format!("{image}.intoto.json")),
    );
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies")
        .clone()
}

/// An image's SBOMs checked by the reference validators, then the purls
/// starting with `prefix` that kiln's SPDX lists and those syft finds in
/// the layout for artifacts of `syft_type` (both sorted): what the two
/// must agree on.
pub fn sbom_and_syft_purls(
    layout: &Path,
    prefix: &str,
    syft_type: &str,
) -> (Vec<String>, Vec<String>) {
    let files = [layout.join("sbom.spdx.json"), layout.join("sbom.cdx.json")];
    let out = Command::new(project().join(".kiln/venv/bin/python"))
        .arg(project().join("tests/validate_sbom.py"))
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let spdx = read_json(&layout.join("sbom.spdx.json"));
    let mut kiln: Vec<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["referenceLocator"].as_str().map(String::from))
        .filter(|p| p.starts_with(prefix))
        .collect();
    kiln.sort();
    let mut syft: Vec<String> = syft_json(layout)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == syft_type)
        .map(|a| a["purl"].as_str().unwrap().to_string())
        .collect();
    syft.sort();
    (kiln, syft)
}

/// Adds `images/<to>/image.toml` to the project in `dir`: the definition of
/// `from` under the name `to` (a new image, e.g. one git does not track
/// yet). Returns its directory.
pub fn copy_definition(dir: &Path, from: &str, to: &str) -> PathBuf {
    let new = dir.join("images").join(to);
    std::fs::create_dir_all(&new).unwrap();
    let text = std::fs::read_to_string(dir.join("images").join(from).join("image.toml")).unwrap();
    std::fs::write(
        new.join("image.toml"),
        text.replacen(
            &format!("name = \"{from}\""),
            &format!("name = \"{to}\""),
            1,
        ),
    )
    .unwrap();
    new
}

/// Runs `cmd` with its standard output closed before it writes (`cmd |
/// head -0`), as a pipeline whose reader has gone does.
pub fn with_stdout_closed(cmd: &mut Command) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// `kiln args...` run in `dir` as a user would, without `--project` (the
/// project is found from the directory), with `password` for keys.
pub fn kiln_as_user(dir: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .current_dir(dir)
        .env_remove("KILN_PROJECT")
        .env("COSIGN_PASSWORD", password)
        .args(args)
        .output()
        .expect("running kiln")
}

/// A new cosign key pair in `dir` (`cosign.key`, `cosign.pub`, password
/// `kiln-test`); returns the public key's path.
pub fn cosign_key_pair(dir: &Path) -> PathBuf {
    let out = kiln_cmd(
        &project(),
        &[
            "keygen",
            "--output-key-prefix",
            dir.join("cosign").to_str().unwrap(),
        ],
    )
    .env("COSIGN_PASSWORD", "kiln-test")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    dir.join("cosign.pub")
}

/// The names in `dir`, sorted (none when it does not exist).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `kiln build <attr>` with its provenance in `provenance_dir`, which
/// `kiln sign <attr> --provenance-dir` then reads.
pub fn build_with_provenance(attr: &str, provenance_dir: &Path) {
    let o = kiln(&[
        "build",
        attr,
        "--provenance-dir",
        provenance_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "kiln build {attr}: {}", stderr(&o));
}

/// A Nix binary cache signing key pair `DIR/NAME.sec`, `DIR/NAME.pub`.
pub fn nix_cache_key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (secret, public) = (
        dir.join(format!("{name}.sec")),
        dir.join(format!("{name}.pub")),
    );
    run(Command::new("nix-store")
        .args(["--generate-binary-cache-key", name])
        .arg(&secret)
        .arg(&public));
    (secret, public)
}

/// `kiln cache push CACHE scratch-plus --secret-key SECRET EXTRA...`,
/// which must succeed.
pub fn cache_push_scratch_plus(cache: &str, secret: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["cache", "push", cache, "scratch-plus"];
    args.extend_from_slice(extra);
    args.extend(["--secret-key", secret.to_str().unwrap()]);
    let out = kiln(&args);
    assert!(out.status.success(), "kiln cache push: {}", stderr(&out));
    out
}
