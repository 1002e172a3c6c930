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
    for (arch, detail) in kiln_test_details("hello-go", 2) {
        // The service answered, as the base's nonroot user.
        assert!(detail.contains("uid 65532"), "{detail}");
        assert!(detail.contains(&format!("linux/{arch}")), "{detail}");
    }
}

/// A project copy with hello-go and its sources, to break on purpose.
fn app_project(name: &str) -> std::path::PathBuf {
    project_copy_with(name, &["images/hello-go", "apps/hello-go"])
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
fn a_vendored_module_that_go_sum_does_not_pin_builds_nothing() {
    require_setup();
    let dir = app_project("apps-go-sum");
    let modules = dir.join("apps/hello-go/vendor/modules.txt");
    let original = std::fs::read_to_string(&modules).unwrap();
    std::fs::write(&modules, original.replace("uuid v1.3.0", "uuid v1.3.1")).unwrap();
    let expected =
        "vendored module github.com/google/uuid v1.3.1 does not match go.sum: go.sum pins v1.3.0";
    // kiln build checks before anything builds ...
    let out = kiln_in(&dir, &["build", "hello-go"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(expected) && stderr(&out).contains("images/hello-go/image.toml"),
        "{}",
        stderr(&out)
    );
    // ... and a plain nix build is stopped by the sandbox, before go runs.
    let out = Command::new("nix")
        .args(["build", "--no-link", "-L"])
        .arg(format!("path:{}#hello-go-amd64", dir.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    // Modules required but not vendored: named, with the fix.
    std::fs::remove_dir_all(dir.join("apps/hello-go/vendor")).unwrap();
    let out = kiln_in(&dir, &["build", "hello-go"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("go.mod requires modules (github.com/google/uuid...) but there is no vendor/modules.txt"),
        "{}",
        stderr(&out)
    );
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

#[test]
fn the_sboms_list_the_base_packages_and_the_go_modules_as_syft_finds_them() {
    let outs = build(&["hello-go-amd64", "hello-go-arm64"]);
    for layout in &outs {
        let (kiln, syft) = sbom_and_syft_purls(layout, "pkg:golang/", "go-module");
        assert_eq!(
            kiln,
            [
                "pkg:golang/example.org/hello-go@(devel)",
                "pkg:golang/github.com/google/uuid@v1.3.0",
                "pkg:golang/stdlib@1.23.5"
            ],
            "{}",
            layout.display()
        );
        assert_eq!(
            syft, kiln,
            "syft and kiln's SBOM disagree on the Go modules"
        );
        // syft gives scratch-plus's one package no purl (the image has no
        // os-release to name the distribution): compare names.
        let report = syft_json(layout);
        let debs: Vec<&str> = report["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "deb")
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(debs, ["ca-certificates"], "the base's packages");
    }
}

#[test]
fn hello_rust_is_built_with_its_crates_and_runs_on_distroless_static() {
    let outs = build(&["distroless-static", "hello-rust"]);
    let (base, app) = (&outs[0], &outs[1]);
    // arm64 is cross-compiled on the amd64 build machine.
    for (arch, machine) in [("amd64", "x86-64"), ("arm64", "ARM aarch64")] {
        let (base_digest, base_manifest) = manifest_of(base, arch);
        let (_, app_manifest) = manifest_of(app, arch);
        let base_layers = base_manifest["layers"].as_array().unwrap();
        let app_layers = app_manifest["layers"].as_array().unwrap();
        assert_eq!(&app_layers[..base_layers.len()], &base_layers[..]);
        assert_eq!(app_layers.len(), base_layers.len() + 1);
        assert_eq!(
            annotation(&app_manifest, "org.opencontainers.image.base.digest"),
            base_digest
        );
        let dir = scratch(&format!("hello-rust-{arch}"));
        let rootfs = unpack(app, &format!("latest-{arch}"), &dir);
        let program = rootfs.join("usr/bin/hello-rust");
        let file = run(Command::new("file").arg(&program));
        // amd64 comes out static-pie, arm64 plain static.
        assert!(
            file.contains(machine) && file.contains("static"),
            "{arch}: {file}"
        );
        // No path of the build machine leaks into the binary.
        let bytes = std::fs::read(&program).unwrap();
        for leak in [&b"/build/"[..], b"/nix/store/", b"/root/"] {
            assert!(
                !bytes.windows(leak.len()).any(|w| w == leak),
                "{arch}: {} appears in the binary",
                String::from_utf8_lossy(leak)
            );
        }
    }
    // The provenance lists the application's own crates (anyhow has a
    // build script), apart from the seed's.
    let deps = resolved_dependencies("hello-rust");
    let crates: Vec<&str> = deps
        .iter()
        .filter(|d| d["annotations"]["role"] == "crate")
        .map(|d| d["uri"].as_str().unwrap())
        .collect();
    assert!(
        crates.len() == 1 && crates[0].starts_with("pkg:cargo/anyhow@"),
        "{crates:?}"
    );
    // The SBOMs list the crates the program was compiled from, with the
    // purls syft gives crates; syft itself finds none in the binary: Debian's
    // cargo does not embed cargo-auditable data.
    let layouts = build(&["hello-rust-amd64", "hello-rust-arm64"]);
    for layout in &layouts {
        let (kiln, syft) = sbom_and_syft_purls(layout, "pkg:cargo/", "rust-crate");
        assert!(
            kiln.len() == 1 && kiln[0].starts_with("pkg:cargo/anyhow@"),
            "{kiln:?}"
        );
        assert!(syft.is_empty(), "{syft:?}");
    }
    for (arch, detail) in kiln_test_details("hello-rust", 2) {
        let rust_arch = if arch == "amd64" { "x86_64" } else { "aarch64" };
        assert!(
            detail.contains(&format!("(rust, {rust_arch}, uid 65532)"))
                && detail.contains("CA certificates"),
            "{detail}"
        );
    }
}

#[test]
fn a_crate_that_does_not_match_the_apps_cargo_lock_builds_nothing() {
    require_setup();
    let dir = app_project("apps-bad-crate");
    for d in [
        "images/hello-rust",
        "apps/hello-rust",
        "images/distroless-static",
    ] {
        copy_dir(&project().join(d), &dir.join(d));
    }
    // A checksum no crate has: the fixed-output path cannot exist, and
    // kiln fetch, which checks every downloaded file, names the crate.
    let lock = dir.join("apps/hello-rust/Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    let start = text.find("checksum = \"").unwrap() + "checksum = \"".len();
    let mut bad = text.clone();
    bad.replace_range(start..start + 64, &"0".repeat(64));
    std::fs::write(&lock, bad).unwrap();
    let out = kiln_in(&dir, &["fetch"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("anyhow 1.0.104") && err.contains("apps/hello-rust/Cargo.lock"),
        "{err}"
    );
    let out = kiln_in(&dir, &["build", "hello-rust"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("anyhow-1.0.104.crate"),
        "{}",
        stderr(&out)
    );
}

const PASSWORD: &str = "apps-test-password";

fn kiln_pw(args: &[&str]) -> std::process::Output {
    kiln_cmd(&project(), args)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .expect("running kiln")
}

fn verify_json(layout: &Path, key: &Path, extra: &[&str]) -> (bool, Value) {
    let out = kiln_cmd(&project(), &["verify", "--json"])
        .arg(layout)
        .arg("--key")
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|_| panic!("verify: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.success(), report)
}

fn check_with<'a>(report: &'a Value, name: &str, status: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == name && c["status"] == status)
        .map(|c| c["message"].as_str().unwrap())
        .collect()
}

#[test]
fn verify_chains_an_application_to_its_signed_base_and_names_a_wrong_one() {
    require_setup();
    let dir = scratch("apps-verify");
    let prov = dir.join("provenance");
    let built = kiln_pw(&[
        "build",
        "--json",
        "--provenance-dir",
        prov.to_str().unwrap(),
        "scratch-plus",
        "distroless-static",
        "hello-go",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    for prefix in ["cosign", "other"] {
        let out = kiln_pw(&[
            "keygen",
            "--output-key-prefix",
            dir.join(prefix).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let signed = dir.join("signed");
    let sign = |image: &str, key: &str| {
        let out = kiln_pw(&[
            "sign",
            image,
            "--key",
            dir.join(key).to_str().unwrap(),
            "--provenance-dir",
            prov.to_str().unwrap(),
            "--out",
            signed.join(image).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "sign {image}: {}", stderr(&out));
    };
    sign("scratch-plus", "cosign.key");
    sign("hello-go", "cosign.key");
    sign("distroless-static", "other.key");
    let key = dir.join("cosign.pub");
    let app = signed.join("hello-go");

    // The base beside it (kiln's signed layouts side by side) verifies, and
    // each platform starts with exactly its layers.
    let (ok, report) = verify_json(&app, &key, &[]);
    assert!(ok, "{report:#}");
    let base = check_with(&report, "base", "pass");
    assert_eq!(base.len(), 1, "{report:#}");
    assert!(base[0].contains("scratch-plus:latest"), "{base:?}");
    assert_eq!(check_with(&report, "layers", "pass").len(), 2, "{report:#}");

    // Another signed image is not its base.
    let (ok, report) = verify_json(
        &app,
        &key,
        &[
            "--base",
            signed.join("distroless-static").to_str().unwrap(),
            "--base-key",
            dir.join("other.pub").to_str().unwrap(),
        ],
    );
    assert!(!ok);
    let fail = check_with(&report, "base", "fail");
    assert!(
        fail.iter().any(|m| m.contains("not its base")),
        "{report:#}"
    );

    // The right base with the wrong key: unsigned as far as we trust.
    let (ok, report) = verify_json(
        &app,
        &key,
        &["--base-key", dir.join("other.pub").to_str().unwrap()],
    );
    assert!(!ok);
    let fail = check_with(&report, "base", "fail");
    assert!(
        fail.iter()
            .any(|m| m.contains("scratch-plus:latest") && m.contains("does not verify")),
        "{report:#}"
    );

    // Alone, with nowhere to find its base: says what to pass.
    let alone = dir.join("alone/hello-go");
    copy_dir(&app, &alone);
    let (ok, report) = verify_json(&alone, &key, &[]);
    assert!(!ok);
    let fail = check_with(&report, "base", "fail");
    assert!(fail.iter().any(|m| m.contains("--base")), "{report:#}");
}

/// A project copy with an application `tool` on scratch-plus, built by
/// [build.command] in the busybox toolchain with `script`, locked.
fn command_app(name: &str, script: &str) -> std::path::PathBuf {
    let dir = project_copy(name);
    std::fs::create_dir_all(dir.join("apps/tool")).unwrap();
    std::fs::write(dir.join("apps/tool/note.txt"), "from the source\n").unwrap();
    let toml = format!(
        r#"name = "tool"
description = "a file made by a command"
base = "scratch-plus"
archs = ["amd64"]

[build]
toolchain = "busybox"
source = "apps/tool"

[build.command]
argv = ["/bin/sh", "-ec", {script:?}]

[[build.install]]
from = "greeting"
to = "/etc/greeting"
mode = "0644"

[annotations]
"org.opencontainers.image.source" = "https://example.org/tool"
"#
    );
    let def_path = dir.join("images/tool/image.toml");
    std::fs::create_dir_all(def_path.parent().unwrap()).unwrap();
    std::fs::write(&def_path, &toml).unwrap();
    let spec = kiln::definition::parse(&def_path, &toml, Some("tool"))
        .unwrap()
        .image(None)
        .unwrap();
    let lock_path = dir.join("kiln.lock");
    let mut lock = read_json(&lock_path);
    lock["images"]["tool"] = serde_json::json!({
        "release": lock["images"]["scratch-plus"]["release"],
        "archs": {"amd64": {"packages": [], "layers": []}},
        "created": lock["images"]["scratch-plus"]["created"],
        "inputs": spec.lock_inputs().to_string(),
    });
    std::fs::write(&lock_path, kiln::json::pretty(&lock)).unwrap();
    dir
}

#[test]
fn a_command_build_runs_in_a_writable_copy_of_its_source_and_installs_what_it_names() {
    require_setup();
    let dir = command_app(
        "apps-command",
        "echo scratch > left-in-the-source; printf 'built for %s, ' \"$KILN_ARCH\" > \"$out/greeting\"; cat note.txt >> \"$out/greeting\"",
    );
    let out = kiln_in(&dir, &["build", "--json", "tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let layout = Path::new(v[0]["out"].as_str().unwrap()).to_path_buf();
    let (_, manifest) = manifest_of(&layout, "amd64");
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let entries = kiln_seed::tarlist::list(&std::fs::read(blob(&layout, &last)).unwrap()).unwrap();
    let greeting = entries.iter().find(|e| e.path == "etc/greeting").unwrap();
    assert_eq!(greeting.data, b"built for amd64, from the source\n");
    assert_eq!(greeting.mode, 0o644);
}

#[test]
fn a_build_has_no_network_and_cannot_write_outside_its_output() {
    require_setup();
    for (name, script, expected) in [
        (
            "apps-network",
            // busybox's wget crashes where there is no network at all
            // (on any host); its nc reports it.
            "nc -w 5 1.1.1.1 80 </dev/null > \"$out/greeting\"",
            "unreachable",
        ),
        (
            "apps-escape-store",
            "echo x > /nix/store/kiln-escaped; echo x > \"$out/greeting\"",
            "/nix/store/kiln-escaped",
        ),
        (
            "apps-escape-root",
            "echo x >> /bin/busybox; echo x > \"$out/greeting\"",
            "/bin/busybox",
        ),
    ] {
        let dir = command_app(name, script);
        let out = kiln_in(&dir, &["build", "tool"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: the build succeeded:\n{err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            err.contains("/bin/sh -ec"),
            "{name}: the failed command is named: {err}"
        );
    }
    assert!(!Path::new("/nix/store/kiln-escaped").exists());
}

#[test]
fn the_provenance_lists_each_vendored_module_with_its_go_sum_hash() {
    build(&["hello-go"]);
    let deps = resolved_dependencies("hello-go");
    let modules: Vec<&Value> = deps
        .iter()
        .filter(|d| d["annotations"]["role"] == "module")
        .collect();
    assert_eq!(modules.len(), 1, "{modules:?}");
    assert_eq!(
        modules[0]["uri"],
        "pkg:golang/github.com/google/uuid@v1.3.0"
    );
    // go.sum's h1 (base64) as in-toto's dirHash (hex).
    assert_eq!(
        modules[0]["digest"]["dirHash"],
        "b7a2625e09b05cc8c4b3c56eb172099360571ec9fec31f0165d4daa19e5fbbb2"
    );
    assert!(deps.iter().any(|d| d["annotations"]["role"] == "toolchain"));
}
