//! Application images compiled in the sandbox: hello-go is built by Debian's
//! Go in its toolchain root, put on scratch-plus's layers unchanged, chained
//! to it by the base annotations, and run for real (podman + runc; arm64
//! under qemu). Bad definitions are refused before anything is built.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn annotation(doc: &Value, key: &str) -> String {
    doc["annotations"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {doc}"))
        .to_string()
}

fn manifest_of(layout: &Path, arch: &str) -> (String, Value) {
    let d = platform_manifests(layout)
        .into_iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} manifest in {}", layout.display()));
    let digest = d["digest"].as_str().unwrap().to_string();
    let doc = read_json(&blob(layout, &digest));
    (digest, doc)
}

#[test]
fn hello_go_is_scratch_plus_plus_one_layer_and_names_it() {
    let outs = build(&["scratch-plus", "hello-go"]);
    let (base, app) = (&outs[0], &outs[1]);
    let base_index = read_json(&base.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let app_index_digest = read_json(&app.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let app_index = read_json(&blob(app, &app_index_digest));
    assert_eq!(
        annotation(&app_index, "org.opencontainers.image.base.digest"),
        base_index,
        "the index names the base's index"
    );
    assert_eq!(
        annotation(&app_index, "org.opencontainers.image.base.name"),
        "scratch-plus:latest"
    );
    for arch in ["amd64", "arm64"] {
        let (base_digest, base_manifest) = manifest_of(base, arch);
        let (_, app_manifest) = manifest_of(app, arch);
        let base_layers = base_manifest["layers"].as_array().unwrap();
        let app_layers = app_manifest["layers"].as_array().unwrap();
        assert_eq!(app_layers.len(), base_layers.len() + 1, "{arch}");
        assert_eq!(
            &app_layers[..base_layers.len()],
            &base_layers[..],
            "{arch}: base layers unchanged"
        );
        assert_eq!(
            annotation(&app_manifest, "org.opencontainers.image.base.digest"),
            base_digest,
            "{arch}: the manifest names the base's {arch} manifest"
        );
        // skopeo reads the config the way runtimes do.
        let config = skopeo_inspect(app, &format!("latest-{arch}"), &["--config"]);
        assert_eq!(config["config"]["User"], "65532:65532", "{arch}");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/usr/bin/hello-go"])
        );
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"PORT=8080"), "{env:?}");
        assert!(
            env.iter().any(|e| e.starts_with("SSL_CERT_FILE=")),
            "the base's environment stays: {env:?}"
        );
        // The program is a static executable of the right machine, alone
        // in its layer with its directories.
        let last = app_layers.last().unwrap()["digest"].as_str().unwrap();
        let entries = layer_entries(&blob(app, last));
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["usr", "usr/bin", "usr/bin/hello-go"], "{arch}");
        assert_eq!(entries[2].2, 0o755);
        let scratch_dir = scratch(&format!("hello-go-{arch}"));
        let rootfs = unpack(app, &format!("latest-{arch}"), &scratch_dir);
        let file = run(Command::new("file").arg(rootfs.join("usr/bin/hello-go")));
        let machine = if arch == "amd64" {
            "x86-64"
        } else {
            "ARM aarch64"
        };
        assert!(
            file.contains(machine) && file.contains("statically linked"),
            "{file}"
        );
    }
}

#[test]
fn hello_go_answers_in_a_hardened_container_on_both_platforms() {
    require_setup();
    let out = kiln(&["test", "hello-go", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    assert!(out.status.success(), "{}\n{report}", stderr(&out));
    let results = report.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let test = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "test")
            .unwrap_or_else(|| panic!("no self-check in {r}"));
        assert_eq!(test["ok"], true, "{r}");
        let detail = test["detail"].as_str().unwrap();
        // The service answered, as the base's nonroot user.
        assert!(detail.contains("uid 65532"), "{detail}");
        assert!(
            detail.contains(&format!("linux/{}", r["arch"].as_str().unwrap())),
            "{detail}"
        );
        println!(
            "figure: kiln test hello-go ({}): {} s",
            r["arch"], r["elapsed"]
        );
    }
}

/// A project copy with hello-go and its sources, to break on purpose.
fn app_project(name: &str) -> std::path::PathBuf {
    let dir = project_copy(name);
    for d in ["images/hello-go", "apps/hello-go"] {
        copy_dir(&project().join(d), &dir.join(d));
    }
    dir
}

#[test]
fn a_missing_base_toolchain_or_source_is_named_before_anything_builds() {
    require_setup();
    let dir = app_project("apps-bad-definitions");
    let toml = dir.join("images/hello-go/image.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    for (from, to, expected) in [
        (
            "base = \"scratch-plus\"",
            "base = \"scratch-pluss\"",
            "base \"scratch-pluss\" is not an image of this project",
        ),
        (
            "toolchain = \"go\"",
            "toolchain = \"golang\"",
            "build.toolchain \"golang\" has no toolchains/golang/toolchain.toml",
        ),
        (
            "source = \"apps/hello-go\"",
            "source = \"apps/nowhere\"",
            "build.source \"apps/nowhere\" is not a directory",
        ),
        ("[build.go]", "[build.cobol]", "unknown field `cobol`"),
        (
            "[config]",
            "[packages]\ninclude = [\"bash\"]\n\n[config]",
            "takes its packages from its base",
        ),
    ] {
        std::fs::write(&toml, original.replace(from, to)).unwrap();
        let out = kiln_in(&dir, &["build", "hello-go"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(
            err.contains(expected) && err.contains("images/hello-go/image.toml"),
            "{to}: {err}"
        );
    }
}

#[test]
fn editing_another_file_does_not_rebuild_the_app() {
    require_setup();
    let dir = app_project("apps-source-filter");
    let drv = |dir: &Path| {
        run(Command::new("nix").args(["eval", "--raw"]).arg(format!(
            "path:{}#packages.x86_64-linux.hello-go-amd64.drvPath",
            dir.display()
        )))
    };
    let before = drv(&dir);
    std::fs::write(dir.join("apps/README"), "not part of hello-go\n").unwrap();
    std::fs::write(dir.join("images/scratch-plus/notes.txt"), "unrelated\n").unwrap();
    assert_eq!(
        drv(&dir),
        before,
        "files outside apps/hello-go do not enter its build"
    );
    std::fs::write(
        dir.join("apps/hello-go/main.go"),
        std::fs::read_to_string(dir.join("apps/hello-go/main.go")).unwrap() + "\n// changed\n",
    )
    .unwrap();
    assert_ne!(drv(&dir), before, "a source change rebuilds it");
}
