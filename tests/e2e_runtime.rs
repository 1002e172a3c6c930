//! Runtime tests on a real runtime. Every catalogue image runs
//! under podman + runc (arm64 under qemu-aarch64-static) with a read-only
//! root, no capabilities, no-new-privileges and no network; kiln's probe
//! reports from inside. The test copy of an image is checked too: the
//! catalogue image stays untouched, the copy has exactly one more layer.

mod common;

use common::*;
use kiln::runtime::{self, Podman};
use kiln::spec::Arch;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn kiln_test(args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["test", "--json"];
    all.extend_from_slice(args);
    let out = kiln(&all);
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out.status.success(), v, stderr(&out))
}

fn failures(results: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in results.as_array().into_iter().flatten() {
        for c in r["checks"].as_array().unwrap() {
            if c["ok"] != true {
                out.push(format!(
                    "{} ({}): {}: {}",
                    r["image"], r["arch"], c["name"], c["detail"]
                ));
            }
        }
    }
    out
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {r}"))
}

fn image_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project().join("images"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("image.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn scratch_plus_runs_hardened_on_both_platforms() {
    require_setup();
    let (ok, results, err) = kiln_test(&["scratch-plus"]);
    assert!(ok, "{err}\n{:#?}", failures(&results));
    let results = results.as_array().unwrap();
    // latest and debug, each on amd64 and arm64.
    let seen: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            (
                r["image"].as_str().unwrap().to_string(),
                r["arch"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for image in ["scratch-plus", "scratch-plus-debug"] {
        for arch in ["amd64", "arm64"] {
            assert!(seen.contains(&(image.into(), arch.into())), "{seen:?}");
        }
    }
    for r in results {
        let probe = &r["probe"];
        assert_eq!(probe["arch"], r["arch"]);
        assert_eq!(probe["capabilities"]["effective"], "0000000000000000");
        assert_eq!(probe["rootfs"]["writeErrno"], "EROFS");
        assert_eq!(probe["network"]["interfaces"], serde_json::json!(["lo"]));
        assert!(probe["caBundle"]["certificates"].as_u64().unwrap() > 100);
        let cmd = r["command"].as_str().unwrap();
        for flag in [
            "--read-only",
            "--cap-drop=ALL",
            "no-new-privileges",
            "--network none",
        ] {
            assert!(cmd.contains(flag), "{cmd}");
        }
        if r["arch"] == "arm64" {
            assert!(cmd.contains("qemu-aarch64-static:/kiln-qemu:ro"), "{cmd}");
        }
        if r["image"] == "scratch-plus" {
            assert_eq!(probe["uid"], 65532);
            assert_eq!(probe["gid"], 65532);
            assert_eq!(probe["userName"], "nonroot");
            assert_eq!(probe["shell"]["execErrno"], "ENOENT");
            // No tzdata in scratch-plus: the zone must not resolve.
            assert_eq!(probe["zoneinfo"]["resolved"], false);
        } else {
            assert_eq!(probe["uid"], 0);
            assert!(
                check(r, "debug shell runs as root")["detail"]
                    .as_str()
                    .unwrap()
                    .contains("uid=0"),
                "{r}"
            );
        }
        println!(
            "figure: kiln test {} ({}): {} s",
            r["image"], r["arch"], r["elapsed"]
        );
    }
}

#[test]
fn every_catalogue_image_passes_its_runtime_checks() {
    require_setup();
    let mut all_failures = Vec::new();
    for name in image_names() {
        let (ok, results, err) = kiln_test(&[&name]);
        let f = failures(&results);
        if !ok {
            all_failures.push(format!("{name}: {err} {f:?}"));
        }
        for r in results.as_array().into_iter().flatten() {
            // Where tzdata is installed, the zone resolves with real data.
            if r["expect"]["tzdata"] == true {
                assert_eq!(r["probe"]["zoneinfo"]["winter"], "EST", "{r}");
                assert_eq!(r["probe"]["zoneinfo"]["summer"], "EDT", "{r}");
            }
            println!(
                "figure: kiln test {} ({}): {} s",
                r["image"], r["arch"], r["elapsed"]
            );
        }
    }
    assert!(all_failures.is_empty(), "{all_failures:#?}");
}

/// The checks can fail: the same test image run without the hardening
/// flags (as root, with podman's default capabilities, a writable root and
/// the host's network) fails exactly the checks that depend on them. The
/// probe sends nothing: its UDP "dial" only asks the kernel for a route.
#[test]
fn the_probe_sees_what_the_hardening_flags_take_away() {
    require_setup();
    let out = build(&["scratch-plus-amd64"]).remove(0);
    let probe = runtime::build_probe(&project(), Arch::Amd64).unwrap();
    let work = scratch("e2e-runtime-unhardened");
    let layout = work.join("layout");
    let tag =
        runtime::write_test_layout("scratch-plus", &out, Arch::Amd64, &probe, &layout).unwrap();
    let podman = Podman::setup(&project()).unwrap();
    let id = podman.pull(&layout, &tag, "scratch-plus").unwrap();
    let run = podman
        .command()
        .args([
            "run",
            "--rm",
            "--user",
            "0:0",
            "--network",
            "host",
            "--entrypoint=/kiln-probe",
        ])
        .arg(&id)
        .output()
        .unwrap();
    podman.remove(&id);
    assert!(run.status.success(), "{}", stderr(&run));
    let report: runtime::ProbeReport = serde_json::from_slice(&run.stdout).unwrap();
    let expect = runtime::Expect {
        arch: Arch::Amd64,
        uid: 65532,
        gid: 65532,
        debug: false,
        tls: true,
        tzdata: false,
    };
    let failed: Vec<String> = runtime::judge(&report, &expect, None)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.name)
        .collect();
    for name in [
        "user",
        "capabilities",
        "no-new-privileges",
        "read-only root",
        "no network",
    ] {
        assert!(failed.contains(&name.to_string()), "{name}: {failed:?}");
    }
    assert!(report.rootfs.writable);
    assert_ne!(report.capabilities.effective, "0000000000000000");
    // What the flags do not change still passes.
    for name in ["arch", "no shell", "CA bundle"] {
        assert!(!failed.contains(&name.to_string()), "{name}: {failed:?}");
    }
}

/// The probe goes into a copy only: one more layer, a manifest marked as a
/// test copy, every digest valid (umoci checks them while unpacking), and
/// the catalogue image unchanged.
#[test]
fn the_test_copy_adds_one_layer_and_leaves_the_image_alone() {
    require_setup();
    let out = build(&["scratch-plus"]).remove(0);
    let before = std::fs::read(out.join("index.json")).unwrap();
    let probe = runtime::build_probe(&project(), Arch::Arm64).unwrap();
    let work = scratch("e2e-runtime-copy");
    let layout: PathBuf = work.join("layout");
    let tag =
        runtime::write_test_layout("scratch-plus", &out, Arch::Arm64, &probe, &layout).unwrap();
    assert_eq!(tag, "test-arm64");
    assert_eq!(std::fs::read(out.join("index.json")).unwrap(), before);

    let original = skopeo_inspect(&out, "latest-arm64", &[]);
    let copy = skopeo_inspect(&layout, &tag, &[]);
    let n = original["Layers"].as_array().unwrap().len();
    assert_eq!(copy["Layers"].as_array().unwrap().len(), n + 1);
    assert_eq!(
        copy["Layers"].as_array().unwrap()[..n],
        original["Layers"].as_array().unwrap()[..]
    );
    assert_eq!(copy["Architecture"], "arm64");
    let rootfs = unpack(&layout, &tag, &work);
    let bin = rootfs.join("kiln-probe");
    assert!(bin.is_file());
    let file = run(Command::new("file").arg(&bin));
    assert!(
        file.contains("ARM aarch64") && file.contains("statically linked"),
        "{file}"
    );
    // The probe is the one built for arm64, byte for byte.
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(&probe).unwrap());
    let manifest = skopeo_inspect(&layout, &tag, &["--raw"]);
    assert_eq!(manifest["annotations"]["dev.kiln.test"], "probe");
    // The image's own files are all still there.
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(!rootfs.join("bin/sh").exists());

    // A second copy over the first replaces it (same bytes: deterministic).
    let again =
        runtime::write_test_layout("scratch-plus", &out, Arch::Arm64, &probe, &layout).unwrap();
    assert_eq!(again, tag);
    assert_eq!(skopeo_inspect(&layout, &tag, &["--raw"]), manifest);
}

#[test]
fn an_unknown_image_or_arch_is_refused() {
    let out = kiln(&["test", "no-such-image"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no image named no-such-image (known: "),
        "{}",
        stderr(&out)
    );
    let out = kiln(&["test", "scratch-plus", "--arch", "riscv64"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not amd64 or arm64"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_moved_checkout_still_runs_its_tests() {
    // podman's database records where its storage is: it must not be in
    // the checkout, or the moved copy loads into one place and runs from
    // another ("image not known").
    require_setup();
    let first = project_copy("runtime-before-the-move");
    copy_dir(&project().join("probe"), &first.join("probe"));
    let run = |dir: &std::path::Path| {
        kiln_in(dir, &["test", "scratch-plus", "--arch", "amd64", "--json"])
    };
    let out = run(&first);
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = first.with_file_name("runtime-after-the-move");
    if moved.exists() {
        make_writable(&moved);
        std::fs::remove_dir_all(&moved).unwrap();
    }
    std::fs::rename(&first, &moved).unwrap();
    let out = run(&moved);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(failures(&report).is_empty(), "{report}");
}

/// `compression = "zstd"`: every layer of the image is tar+zstd, holding
/// the very tars of the gzip image (same diff IDs), and it runs, signs and
/// verifies as the gzip image does. (Debian 12's umoci 0.4.7 refuses zstd
/// layers, so it is not asked to unpack this one.)
#[test]
fn a_zstd_image_holds_the_gzip_images_tars_and_runs() {
    require_setup();
    let gzip = build(&["scratch-plus"]).remove(0);
    let dir = project_copy("zstd-layers");
    copy_dir(&project().join("probe"), &dir.join("probe"));
    let toml = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replacen("\n[", "\ncompression = \"zstd\"\n\n[", 1),
    )
    .unwrap();
    // The lock stays current: compression is not an input of resolution.
    let out = kiln_in(&dir, &["build", "--json", "scratch-plus"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let zstd = PathBuf::from(built[0]["out"].as_str().unwrap());

    for tag in ["latest-amd64", "latest-arm64"] {
        let manifest = skopeo_inspect(&zstd, tag, &["--raw"]);
        let layers = manifest["layers"].as_array().unwrap();
        assert!(layers.len() >= 2, "{manifest}");
        for l in layers {
            assert_eq!(
                l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
                "{manifest}"
            );
            // The zstd tool agrees that each blob is a whole, checked frame.
            let blob = blob(&zstd, l["digest"].as_str().unwrap());
            run(Command::new("zstd").arg("-tq").arg(&blob));
        }
        let config = |layout: &std::path::Path| skopeo_inspect(layout, tag, &["--config"]);
        assert_eq!(
            config(&zstd)["rootfs"]["diff_ids"],
            config(&gzip)["rootfs"]["diff_ids"],
            "{tag}: the zstd layers must hold the gzip layers' tars"
        );
    }
    // podman runs it hardened, as it runs the gzip image.
    let out = kiln_in(&dir, &["test", "scratch-plus", "--arch", "amd64", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(failures(&report).is_empty(), "{report}");

    // Signed and verified: verify reads every zstd layer's package database.
    let public = cosign_key_pair(&dir);
    let signed = dir.join("signed");
    let out = kiln_as_user(
        &dir,
        "kiln-test",
        &[
            "sign",
            "scratch-plus",
            "--key",
            dir.join("cosign.key").to_str().unwrap(),
            "-o",
            signed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kiln_in(
        &dir,
        &[
            "verify",
            signed.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}
