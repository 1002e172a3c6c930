use super::tests::{definition, input, standard_layers};
use super::*;
use crate::oci::tests::scratch;

fn app_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "hello",
        "description": "a greeting",
        "base": "scratch-plus",
        "build": {"toolchain": "go", "source": "apps/hello", "go": {}},
        "config": {"env": {"PORT": "8080"}}
    })
}

fn app_input(root: &Path, arch: Arch, program: &[u8]) -> Input {
    let files = root.join(format!("files-{}", arch.debian()));
    fs::create_dir_all(files.join("bin")).unwrap();
    fs::write(files.join("bin/hello"), program).unwrap();
    let mut i = input(
        definition(),
        None,
        arch,
        standard_layers(root, arch.debian()),
    );
    i.app = Some(
        serde_json::from_value(serde_json::json!({
            "definition": app_definition(), "created": 1_783_800_000u64, "files": files
        }))
        .unwrap(),
    );
    i
}

fn blob(out: &Path, d: &Descriptor) -> serde_json::Value {
    let hex = d.digest().to_string()[7..].to_string();
    serde_json::from_slice(&fs::read(out.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn an_application_is_its_base_plus_one_layer() {
    let root = scratch("image-app");
    let base_out = root.join("base");
    let base = build(
        &input(
            definition(),
            None,
            Arch::Amd64,
            standard_layers(&root, "amd64"),
        ),
        &base_out,
    )
    .unwrap();
    let out = root.join("app");
    let app = build(&app_input(&root, Arch::Amd64, b"\x7fELF hello"), &out).unwrap();

    assert_eq!(app.name, "hello");
    assert_eq!(app.tag, "latest");
    assert_eq!(app.layers.len(), base.layers.len() + 1);
    for (a, b) in app.layers.iter().zip(&base.layers) {
        assert_eq!(a.descriptor, b.descriptor, "base layers enter unchanged");
    }
    assert_eq!(
        app.annotations[app::BASE_DIGEST],
        base.manifest.digest().to_string(),
        "base.digest is the base's own manifest"
    );
    assert_eq!(app.annotations[app::BASE_NAME], "scratch-plus:latest");

    let config = blob(&out, &app.config);
    let base_config = blob(&base_out, &base.config);
    assert_eq!(config["config"]["User"], base_config["config"]["User"]);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/hello"])
    );
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"PORT=8080") && env.contains(&"TZ=UTC"),
        "{env:?}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        app.layers.len()
    );
    assert_eq!(config["created"], "2026-07-11T20:00:00Z");

    let last = app.layers.last().unwrap().descriptor.digest().to_string();
    let gz = fs::read(out.join("blobs/sha256").join(&last[7..])).unwrap();
    let entries: Vec<(String, u32, Vec<u8>)> = crate::tarlist::list(&gz)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.mode, e.data))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("usr".to_string(), 0o755, vec![]),
            ("usr/bin".to_string(), 0o755, vec![]),
            (
                "usr/bin/hello".to_string(),
                0o755,
                b"\x7fELF hello".to_vec()
            ),
        ]
    );
    let spdx = fs::read_to_string(out.join(SPDX_FILE)).unwrap();
    assert!(spdx.contains("/usr/bin/hello") && spdx.contains("libc6"));
}

#[test]
fn same_application_input_gives_identical_bytes_and_a_new_program_a_new_revision() {
    let root = scratch("image-app-repro");
    let a = build(&app_input(&root, Arch::Arm64, b"one"), &root.join("a")).unwrap();
    let b = build(&app_input(&root, Arch::Arm64, b"one"), &root.join("b")).unwrap();
    assert_eq!(a, b);
    let c = build(&app_input(&root, Arch::Arm64, b"two"), &root.join("c")).unwrap();
    assert_ne!(
        a.annotations[ANNOTATION_REVISION],
        c.annotations[ANNOTATION_REVISION]
    );
}

#[test]
fn a_missing_program_names_the_file_and_leaves_nothing() {
    let root = scratch("image-app-missing");
    let mut i = app_input(&root, Arch::Amd64, b"x");
    fs::remove_file(root.join("files-amd64/bin/hello")).unwrap();
    let out = root.join("out");
    let e = build(&i, &out).unwrap_err().to_string();
    assert!(e.contains("bin/hello") && e.contains("no such file"), "{e}");
    assert!(!out.exists());
    // A link out of the build output is refused.
    std::os::unix::fs::symlink("/etc/passwd", root.join("files-amd64/bin/hello")).unwrap();
    let e = build(&i, &out).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    // An application with packages of its own is refused.
    let mut def = app_definition();
    def["packages"] = serde_json::json!({"include": ["bash"]});
    i.app.as_mut().unwrap().definition = serde_json::from_value(def).unwrap();
    let e = build(&i, &out).unwrap_err();
    let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains("packages") && chain.contains("from its base"),
        "{chain}"
    );
}

#[test]
fn a_go_program_lists_its_modules_in_both_sboms() {
    let root = scratch("image-app-go-modules");
    let program = crate::gobuildinfo::tests::binary(
        "go1.23.5",
        "path\texample.org/hello\nmod\texample.org/hello\t(devel)\t\ndep\tgolang.org/x/text\tv0.14.0\th1:abc=\n",
    );
    let out = root.join("out");
    build(&app_input(&root, Arch::Amd64, &program), &out).unwrap();
    let spdx = fs::read_to_string(out.join(SPDX_FILE)).unwrap();
    let cdx = fs::read_to_string(out.join(CYCLONEDX_FILE)).unwrap();
    for purl in [
        "pkg:golang/example.org/hello@(devel)",
        "pkg:golang/stdlib@1.23.5",
        "pkg:golang/golang.org/x/text@v0.14.0",
        "pkg:deb/debian/ca-certificates",
    ] {
        assert!(spdx.contains(purl), "SPDX lacks {purl}");
        assert!(cdx.contains(purl), "CycloneDX lacks {purl}");
    }
    assert!(spdx.contains("\"primaryPackagePurpose\": \"APPLICATION\""));
}
