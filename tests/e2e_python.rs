//! Python application images: hello-python's wheels, pinned per arch in
//! kiln.lock from its requirements file's hashes, installed by the seed
//! into the python base's interpreter (no pip, no bytecode), run for real
//! on both platforms, and listed as syft finds them. Bad pins are named.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifest_of(layout: &Path, arch: &str) -> (String, Value) {
    let d = platform_manifests(layout)
        .into_iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} manifest in {}", layout.display()));
    let digest = d["digest"].as_str().unwrap().to_string();
    let doc = read_json(&blob(layout, &digest));
    (digest, doc)
}

const SITE: &str = "usr/local/lib/python3.11/dist-packages";

#[test]
fn hello_python_is_the_python_base_plus_its_wheels_and_sources() {
    let outs = build(&["python", "hello-python"]);
    let (base, app) = (&outs[0], &outs[1]);
    for (arch, machine) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let (base_digest, base_manifest) = manifest_of(base, arch);
        let (_, app_manifest) = manifest_of(app, arch);
        let base_layers = base_manifest["layers"].as_array().unwrap();
        let app_layers = app_manifest["layers"].as_array().unwrap();
        assert_eq!(&app_layers[..base_layers.len()], &base_layers[..], "{arch}");
        assert_eq!(app_layers.len(), base_layers.len() + 1, "{arch}");
        assert_eq!(
            app_manifest["annotations"]["org.opencontainers.image.base.digest"],
            base_digest.as_str()
        );
        let config = skopeo_inspect(app, &format!("latest-{arch}"), &["--config"]);
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/usr/bin/python3.11", "/app/app.py"])
        );
        assert_eq!(config["config"]["User"], "65532:65532");

        let last = app_layers.last().unwrap()["digest"].as_str().unwrap();
        let entries = layer_entries(&blob(app, last));
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let speedups = format!("{SITE}/markupsafe/_speedups.cpython-311-{machine}-linux-gnu.so");
        for wanted in [
            "app/app.py",
            "app/requirements.txt",
            "usr/local/bin/flask",
            &format!("{SITE}/flask/__init__.py"),
            &format!("{SITE}/flask-3.1.0.dist-info/RECORD"),
            &format!("{SITE}/flask-3.1.0.dist-info/INSTALLER"),
            &speedups,
        ] {
            assert!(names.contains(&wanted), "{arch}: no {wanted} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".pyc") || n.contains("__pycache__")),
            "{arch}: bytecode in the layer"
        );
        for (path, kind, mode, uid, gid) in &entries {
            assert_eq!((*uid, *gid), (0, 0), "{path}");
            let want = match (*kind, path.as_str()) {
                ('d', _) | (_, "usr/local/bin/flask") => 0o755,
                (_, p) if p.ends_with(".so") => 0o755,
                _ => 0o644,
            };
            assert_eq!(*mode, want, "{arch}: {path}");
        }
        // The installed files are what the wheel's RECORD says, and the
        // console script runs the base's interpreter.
        let dir = scratch(&format!("hello-python-{arch}"));
        let rootfs = unpack(app, &format!("latest-{arch}"), &dir);
        let script = std::fs::read_to_string(rootfs.join("usr/local/bin/flask")).unwrap();
        assert!(script.starts_with("#!/usr/bin/python3.11\n"), "{script}");
        assert!(script.contains("from flask.cli import main"), "{script}");
        let installer = rootfs.join(SITE).join("flask-3.1.0.dist-info/INSTALLER");
        assert_eq!(std::fs::read_to_string(installer).unwrap(), "kiln\n");
        let file = run(std::process::Command::new("file").arg(rootfs.join(&speedups)));
        let elf = if arch == "amd64" {
            "x86-64"
        } else {
            "ARM aarch64"
        };
        assert!(file.contains(elf), "{file}");
    }
}

#[test]
fn hello_python_imports_everything_and_answers_on_both_platforms() {
    for (arch, detail) in kiln_test_details("hello-python", 2) {
        assert!(detail.contains("uid 65532"), "{detail}");
        let machine = if arch == "amd64" { "x86_64" } else { "aarch64" };
        assert!(detail.contains(&format!("linux/{machine}")), "{detail}");
    }
}

#[test]
fn the_sboms_list_every_wheel_as_syft_finds_it() {
    let outs = build(&["hello-python-amd64", "hello-python-arm64"]);
    for layout in &outs {
        let (kiln, syft) = sbom_and_syft_purls(layout, "pkg:pypi/", "python");
        assert_eq!(kiln.len(), 7, "{kiln:?}");
        assert!(kiln.contains(&"pkg:pypi/markupsafe@3.0.2".to_string()));
        assert_eq!(syft, kiln, "syft and kiln's SBOM disagree on the wheels");
    }
}

/// A project copy with the python base, hello-python and its sources.
fn python_project(name: &str) -> PathBuf {
    project_copy_with(
        name,
        &["images/python", "images/hello-python", "apps/hello-python"],
    )
}

#[test]
fn unpinned_or_unhashed_requirements_are_named_by_file_and_line() {
    require_setup();
    let dir = python_project("python-bad-requirements");
    let reqs = dir.join("apps/hello-python/requirements.txt");
    let original = std::fs::read_to_string(&reqs).unwrap();
    for (from, to, expected) in [
        ("flask==3.1.0", "flask>=3.1.0", "pin an exact version"),
        (
            "blinker==1.9.0 \\\n    --hash",
            "blinker==1.9.0\nclick2==1 \\\n    --hash",
            "blinker==1.9.0: no --hash",
        ),
    ] {
        std::fs::write(&reqs, original.replace(from, to)).unwrap();
        let out = kiln_in(&dir, &["lock", "hello-python"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{to}: {err}");
        assert!(
            err.contains("apps/hello-python/requirements.txt:") && err.contains(expected),
            "{to}: {err}"
        );
    }
    // A changed file with the old lock: the flake refuses to build.
    std::fs::write(
        &reqs,
        original.replace("# The service", "# Changed: the service"),
    )
    .unwrap();
    let out = kiln_in(&dir, &["lock", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("requirements.txt changed since its wheels were locked"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_wheel_that_is_not_pinned_for_an_arch_or_does_not_match_the_lock_is_named() {
    require_setup();
    let dir = python_project("python-bad-wheels");
    let reqs = dir.join("apps/hello-python/requirements.txt");
    let original = std::fs::read_to_string(&reqs).unwrap();
    // Only the amd64 wheel of MarkupSafe is pinned: locking arm64 names it.
    let lines: Vec<&str> = original.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("markupsafe=="))
        .unwrap();
    let amd64_only: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at + 1)
        .map(|(i, l)| {
            if i == at {
                "markupsafe==3.0.2 \\\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&reqs, &amd64_only).unwrap();
    let out = kiln_in(&dir, &["lock", "hello-python"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("markupsafe==3.0.2")
            && err.contains("aarch64")
            && err.contains("is not pinned in"),
        "{err}"
    );

    // A lock whose wheel hash was changed: fetch refuses the served bytes.
    std::fs::write(&reqs, &original).unwrap();
    let lock_path = dir.join("kiln.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let flask = "d667207822eb83f1c4b50949b1623c8fc8d51f2341d65f72e1a1815397551136";
    let forged = format!("{}0", &flask[..63]);
    assert!(lock.contains(flask));
    std::fs::write(&lock_path, lock.replace(flask, &forged)).unwrap();
    let out = kiln_in(&dir, &["fetch", "hello-python"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("flask-3.1.0-py3-none-any.whl") && err.contains(&forged),
        "{err}"
    );
    // And nothing builds from it.
    let out = kiln_in(&dir, &["build", "hello-python-amd64"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("flask-3.1.0-py3-none-any.whl"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_provenance_lists_the_base_every_wheel_per_arch_and_the_source() {
    build(&["hello-python"]);
    let deps = resolved_dependencies("hello-python");
    let role = |r: &str| -> Vec<&Value> {
        deps.iter()
            .filter(|d| d["annotations"]["role"] == r)
            .collect()
    };
    let lock = read_json(&project().join("kiln.lock"));
    for arch in ["amd64", "arm64"] {
        let pinned = lock["images"]["hello-python"]["python"]["wheels"][arch]
            .as_array()
            .unwrap();
        let listed: Vec<&Value> = role("wheel")
            .into_iter()
            .filter(|d| d["annotations"]["arch"] == arch)
            .collect();
        assert_eq!(listed.len(), pinned.len(), "{arch}");
        for w in pinned {
            assert!(
                listed.iter().any(|d| d["name"] == w["file"]
                    && d["digest"]["sha256"] == w["sha256"]
                    && d["uri"]
                        == format!(
                            "pkg:pypi/{}@{}",
                            w["name"].as_str().unwrap(),
                            w["version"].as_str().unwrap()
                        )
                        .as_str()),
                "{arch}: {w} not in the provenance"
            );
        }
    }
    assert_eq!(role("source").len(), 1);
    assert!(role("base").iter().any(|d| d["name"] == "python:latest"));
    assert!(
        role("toolchain").is_empty(),
        "the python builder runs no toolchain"
    );
}
