//! `kiln diff` on real images that differ in exactly one thing
//! each — a file's mode, a config env var, a package version (two locks),
//! a layer order. Each image is built by Nix in the sandbox from a modified
//! copy of the project; each difference must be found and named, and
//! nothing else reported. Also: identical images, a registry reference
//! (pushed by skopeo to a real registry on 127.0.0.1), errors.

mod common;

use common::registry::Registry;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A writable copy of the flake source exactly as Nix evaluates it.
fn flake_copy(name: &str) -> PathBuf {
    require_setup();
    let meta = run(Command::new("nix")
        .args(["flake", "metadata", "--json"])
        .arg(project()));
    let v: Value = serde_json::from_str(&meta).unwrap();
    let src = v["path"].as_str().unwrap();
    let dir = scratch(name);
    run(Command::new("cp").arg("-rT").arg(src).arg(&dir));
    make_writable(&dir);
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} should contain {from:?} once",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A copy whose scratch-plus declares its revision annotation, so that a
/// definition change shows up only as itself (kiln derives the revision
/// from the definition otherwise).
fn pinned_copy(name: &str) -> PathBuf {
    let dir = flake_copy(name);
    edit(
        &dir.join("images/scratch-plus/image.toml"),
        "\"org.opencontainers.image.vendor\" = \"kiln\"\n",
        "\"org.opencontainers.image.vendor\" = \"kiln\"\n\"org.opencontainers.image.revision\" = \"pinned-for-kiln-diff-tests\"\n",
    );
    dir
}

fn build_in(dir: &Path, attr: &str) -> PathBuf {
    let out = run(Command::new("nix")
        .args(["build", "--no-link", "--json"])
        .arg(format!("path:{}#{attr}", dir.display())));
    let v: Value = serde_json::from_str(&out).unwrap();
    PathBuf::from(v[0]["outputs"]["out"].as_str().unwrap())
}

fn lock_of(dir: &Path) -> Value {
    read_json(&dir.join("kiln.lock"))
}

fn write_lock(dir: &Path, lock: &Value) {
    std::fs::write(dir.join("kiln.lock"), kiln::json::pretty(lock)).unwrap();
}

/// `kiln diff --json a b`: exit code and report.
fn diff(a: &str, b: &str) -> (i32, Value, String) {
    let out = kiln(&["diff", "--json", a, b]);
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (code, report, stderr(&out))
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The differences as `(kind, scope, location, path)`.
fn found(report: &Value) -> Vec<(String, String, String, String)> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["scope"].as_str().unwrap().to_string(),
                d["location"].as_str().unwrap().to_string(),
                d["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn texts(report: &Value) -> Vec<String> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_file_mode_is_found_and_nothing_else() {
    let a = pinned_copy("diff-mode-a");
    let b = pinned_copy("diff-mode-b");
    edit(
        &b.join("images/scratch-plus/image.toml"),
        "mode = \"1777\"",
        "mode = \"0777\"",
    );
    let (ia, ib) = (build_in(&a, "scratch-plus"), build_in(&b, "scratch-plus"));
    let (code, report, err) = diff(&p(&ia), &p(&ib));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        texts(&report),
        vec![
            "amd64: layer 2 (generated files): /tmp: mode 1777 → 0777",
            "arm64: layer 2 (generated files): /tmp: mode 1777 → 0777",
        ]
    );
    assert_eq!(report["differences"][0]["kind"], "file-mode");
    // The text report says the same, and the exit status is 1.
    let out = kiln(&["diff", &p(&ia), &p(&ib)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("amd64: layer 2 (generated files): /tmp: mode 1777 → 0777"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_config_env_var_is_found_and_nothing_else() {
    let a = pinned_copy("diff-env-a");
    let b = pinned_copy("diff-env-b");
    edit(
        &b.join("images/scratch-plus/image.toml"),
        "env = { SSL_CERT_FILE = \"/etc/ssl/certs/ca-certificates.crt\" }",
        "env = { SSL_CERT_FILE = \"/etc/ssl/certs/ca-certificates.crt\", FOO = \"bar\" }",
    );
    let (ia, ib) = (build_in(&a, "scratch-plus"), build_in(&b, "scratch-plus"));
    let (code, report, err) = diff(&p(&ia), &p(&ib));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        texts(&report),
        vec![
            "amd64: config.Env: + FOO=bar",
            "arm64: config.Env: + FOO=bar"
        ]
    );
    assert_eq!(report["differences"][0]["kind"], "config-entry");
    assert_eq!(report["differences"][0]["field"], "FOO");
    assert_eq!(report["layersRead"], 0, "no layer differs, none is read");
}

#[test]
fn a_layer_order_is_found_and_nothing_else() {
    let a = flake_copy("diff-order-a");
    let b = flake_copy("diff-order-b");
    let mut lock = lock_of(&b);
    for arch in ["amd64", "arm64"] {
        let layers = &mut lock["images"]["scratch-plus-debug"]["archs"][arch]["layers"];
        let list = layers.as_array_mut().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        list.reverse();
    }
    write_lock(&b, &lock);
    let (ia, ib) = (
        build_in(&a, "scratch-plus-debug"),
        build_in(&b, "scratch-plus-debug"),
    );
    let (code, report, err) = diff(&p(&ia), &p(&ib));
    assert_eq!(code, 1, "{err}");
    let order = "layers: order 1 busybox-static, 2 ca-certificates, 3 generated files → 1 ca-certificates, 2 busybox-static, 3 generated files";
    assert_eq!(
        texts(&report),
        vec![format!("amd64: {order}"), format!("arm64: {order}")]
    );
    assert_eq!(report["differences"][0]["kind"], "layer-order");
}

/// A minimal .deb: control (no maintainer scripts) and one versioned file.
fn fake_deb(name: &str, version: &str) -> Vec<u8> {
    fn tar_gz(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }
    let control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: kiln tests <tests@kiln.invalid>\nInstalled-Size: 1\nDescription: a package kiln diff tests install\n"
    );
    let version_file = format!("{version}\n");
    let members = [
        ("debian-binary", b"2.0\n".to_vec()),
        (
            "control.tar.gz",
            tar_gz(&[("./", None), ("./control", Some(control.as_bytes()))]),
        ),
        (
            "data.tar.gz",
            tar_gz(&[
                ("./", None),
                ("./usr/", None),
                ("./usr/share/", None),
                ("./usr/share/kilntest/", None),
                (
                    "./usr/share/kilntest/VERSION",
                    Some(version_file.as_bytes()),
                ),
            ]),
        ),
    ];
    let mut ar = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            data.len()
        );
        assert_eq!(header.len(), 60);
        ar.extend_from_slice(header.as_bytes());
        ar.extend_from_slice(&data);
        if data.len() % 2 == 1 {
            ar.push(b'\n');
        }
    }
    ar
}

/// A copy whose scratch-plus also installs `kilntest-hello` at `version`,
/// as its own layer: the .deb is added to the Nix store as `kiln fetch`
/// would, the lock entry written as `kiln lock` would.
fn copy_with_package(name: &str, version: &str) -> PathBuf {
    let dir = pinned_copy(name);
    let def_path = dir.join("images/scratch-plus/image.toml");
    edit(
        &def_path,
        "include = [\"ca-certificates\"]",
        "include = [\"ca-certificates\", \"kilntest-hello\"]",
    );
    let deb = fake_deb("kilntest-hello", version);
    let sha = kiln::digest::Digest::of(&deb);
    let store_name = kiln::nixstore::deb_store_name("kilntest-hello", version, "all");
    let file = dir.join(&store_name);
    std::fs::write(&file, &deb).unwrap();
    let added = run(Command::new("nix-store")
        .args(["--add-fixed", "sha256"])
        .arg(&file));
    assert_eq!(
        added.trim(),
        kiln::nixstore::flat_fixed_path(&store_name, &sha.0)
    );
    std::fs::remove_file(&file).unwrap();

    let def = kiln::definition::load(&def_path).unwrap().definition;
    let inputs = def.image(None).unwrap().lock_inputs();
    let mut lock = lock_of(&dir);
    let image = &mut lock["images"]["scratch-plus"];
    image["inputs"] = Value::String(inputs.to_string());
    for arch in ["amd64", "arm64"] {
        let plan = &mut image["archs"][arch];
        plan["packages"] = serde_json::json!(["ca-certificates", "kilntest-hello"]);
        plan["layers"] = serde_json::json!([["ca-certificates"], ["kilntest-hello"]]);
    }
    for arch in ["amd64", "arm64"] {
        lock["packages"]["bookworm"][arch]["kilntest-hello"] = serde_json::json!({
            "architecture": "all",
            "filename": format!("pool/main/k/kilntest-hello/kilntest-hello_{version}_all.deb"),
            "sha256": sha.hex(),
            "size": deb.len(),
            "source": "kilntest-hello",
            "sourceVersion": version,
            "suite": "bookworm",
            "version": version,
        });
    }
    write_lock(&dir, &lock);
    dir
}

#[test]
fn a_package_version_is_found_with_its_files_and_nothing_else() {
    let a = copy_with_package("diff-pkg-a", "1.0-1");
    let b = copy_with_package("diff-pkg-b", "2.0-1");
    let (ia, ib) = (build_in(&a, "scratch-plus"), build_in(&b, "scratch-plus"));
    let (code, report, err) = diff(&p(&ia), &p(&ib));
    assert_eq!(code, 1, "{err}");
    let t = texts(&report);
    for arch in ["amd64", "arm64"] {
        let layer = format!("{arch}: layer 2 (kilntest-hello)");
        let mine: Vec<&String> = t.iter().filter(|l| l.starts_with(arch)).collect();
        // The version file, the dpkg status stanza and the md5sums kiln
        // writes for it, the layer's history entry, the package.
        assert_eq!(mine.len(), 5, "{t:#?}");
        assert!(
            mine[0].starts_with(&format!(
                "{layer}: /usr/share/kilntest/VERSION: content 6 bytes sha256:"
            )),
            "{t:#?}"
        );
        assert!(
            mine[1].starts_with(&format!(
                "{layer}: /var/lib/dpkg/status.d/kilntest-hello: content"
            )),
            "{t:#?}"
        );
        assert!(
            mine[2].starts_with(&format!(
                "{layer}: /var/lib/dpkg/status.d/kilntest-hello.md5sums: content"
            )),
            "{t:#?}"
        );
        assert_eq!(
            mine[3],
            &format!("{layer}: history.created_by: \"kiln: kilntest-hello=1.0-1\" → \"kiln: kilntest-hello=2.0-1\"")
        );
        assert_eq!(
            mine[4],
            &format!("{arch}: packages: kilntest-hello 1.0-1 → 2.0-1")
        );
    }
    let kinds: Vec<String> = found(&report).into_iter().map(|f| f.0).collect();
    assert_eq!(
        kinds,
        [
            "file-content",
            "file-content",
            "file-content",
            "config-field",
            "package"
        ]
        .repeat(2)
    );
}

#[test]
fn identical_images_exit_0_and_a_registry_copy_is_identical() {
    let out = build(&["scratch-plus"]).remove(0);
    let (code, report, err) = diff(&p(&out), &p(&out));
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["identical"], true);
    let text = kiln(&["diff", &p(&out), &format!("{}:latest", p(&out))]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    assert!(stdout(&text).starts_with("identical: sha256:"));

    // The same image pushed by skopeo to a real registry and pulled back
    // by kiln diff is the same image.
    let registry = Registry::start();
    let reference = format!("{}/kiln/scratch-plus:latest", registry.host());
    run(Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:latest", p(&out)))
        .arg(format!("docker://{reference}")));
    let (code, report, err) = diff(&reference, &p(&out));
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["a"]["image"], reference);

    // One platform against both: the index is named, nothing else.
    let (code, report, err) = diff(&format!("{}:latest-amd64", p(&out)), &reference);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        texts(&report),
        vec![
            "index: single manifest → image index",
            "index: + platform arm64"
        ]
    );
}

#[test]
fn bad_references_exit_2_naming_them() {
    let (code, _, err) = diff("/nonexistent/layout", "/nonexistent/other");
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/layout"), "{err}");
    let out = build(&["scratch-plus"]).remove(0);
    let (code, _, err) = diff(&format!("{}:nope", p(&out)), &p(&out));
    assert_eq!(code, 2);
    assert!(err.contains("no image tagged \"nope\""), "{err}");
    // A registry that is not there is an error, not a difference.
    let (code, _, err) = diff("127.0.0.1:9/kiln/none:latest", &p(&out));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("127.0.0.1:9/kiln/none:latest"), "{err}");
}
