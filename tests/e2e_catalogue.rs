//! The image catalogue (scratch-plus, distroless-static, base,
//! python, each with a debug variant, on Debian 12 under the plain name
//! and on Debian 13 as `<name>-debian13`) built for real in the Nix sandbox,
//! checked against the reference SBOM validators, an independent scanner
//! (syft), the ELF headers of what was installed, qemu running the arm64
//! binaries, and the size budgets; plus the bad input a catalogue meets
//! (a variant with an unknown key, packages that collide, a package that
//! exists for one architecture only).

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const IMAGES: [&str; 12] = [
    "scratch-plus",
    "distroless-static",
    "base",
    "cc",
    "python",
    "nodejs",
    "scratch-plus-debian13",
    "distroless-static-debian13",
    "base-debian13",
    "cc-debian13",
    "python-debian13",
    "nodejs-debian13",
];
const ARCHS: [&str; 2] = ["amd64", "arm64"];

/// Compressed size budgets per arch (the README's goals): layers + config + manifest.
/// python has no goal in the issue; its budget is the measured ~16.5 MiB
/// with headroom, so that a dependency that drags in a lot fails here.
fn budget(image: &str) -> u64 {
    match image.strip_suffix("-debian13").unwrap_or(image) {
        "scratch-plus" => 200 * 1024,
        "distroless-static" => 2 * 1024 * 1024,
        "base" => 8_000_000,
        // base and libstdc++: at most 1 MiB more than base (5.5 MB).
        "cc" => 6_600_000,
        "python" => 20 * 1024 * 1024,
        // The measured 38 MiB (Debian 12) and 43 MiB (Debian 13), with room.
        "nodejs" => 48_000_000,
        _ => unreachable!(),
    }
}

/// Every image and variant: `name` and `name-debug`.
fn full_names() -> Vec<String> {
    IMAGES
        .iter()
        .flat_map(|i| [i.to_string(), format!("{i}-debug")])
        .collect()
}

fn is_debug(full: &str) -> bool {
    full.ends_with("-debug")
}

/// The image without its variant: `base-debian13` for `base-debian13-debug`.
fn base_name(full: &str) -> &str {
    full.strip_suffix("-debug").unwrap_or(full)
}

/// What the image is whatever its release: `base` for `base-debian13-debug`.
fn kind(full: &str) -> &str {
    let image = base_name(full);
    image.strip_suffix("-debian13").unwrap_or(image)
}

/// The Debian release of an image (the plain names are Debian 12).
fn release(full: &str) -> u32 {
    if base_name(full).ends_with("-debian13") {
        13
    } else {
        12
    }
}

/// The python image's CPython on the image's release.
fn python_version(full: &str) -> &'static str {
    match release(full) {
        13 => "3.13",
        _ => "3.11",
    }
}

/// The whole catalogue, built once per test process: the multi-arch
/// layouts by full name, and the single-platform layouts by (full name, arch).
struct Catalogue {
    index: BTreeMap<String, PathBuf>,
    images: BTreeMap<(String, String), PathBuf>,
}

impl Catalogue {
    fn image(&self, full: &str, arch: &str) -> &Path {
        &self.images[&(full.to_string(), arch.to_string())]
    }
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut attrs = Vec::new();
        for full in full_names() {
            attrs.push(full.clone());
            for arch in ARCHS {
                attrs.push(format!("{full}-{arch}"));
            }
        }
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        // Outputs are told apart by their image.json, not by the order
        // `nix build --json` lists them in.
        let mut cat = Catalogue {
            index: BTreeMap::new(),
            images: BTreeMap::new(),
        };
        for out in build(&attrs) {
            let s = read_json(&out.join("image.json"));
            let mut full = s["name"].as_str().unwrap().to_string();
            if let Some(v) = s["variant"].as_str() {
                full = format!("{full}-{v}");
            }
            match s["arch"].as_str() {
                Some(arch) => cat.images.insert((full, arch.to_string()), out),
                None => cat.index.insert(full, out),
            };
        }
        assert_eq!(cat.index.len(), full_names().len(), "{:?}", cat.index);
        assert_eq!(cat.images.len(), full_names().len() * ARCHS.len());
        cat
    })
}

/// The manifest of a single-platform layout.
fn manifest(layout: &Path) -> Value {
    let index = read_json(&layout.join("index.json"));
    read_json(&blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
}

/// Compressed size: every layer, the config and the manifest.
fn compressed_size(layout: &Path) -> u64 {
    let index = read_json(&layout.join("index.json"));
    let m = manifest(layout);
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum::<u64>()
        + m["config"]["size"].as_u64().unwrap()
        + index["manifests"][0]["size"].as_u64().unwrap()
}

/// One path of the image's file system as the container sees it.
#[derive(Debug, Clone)]
struct Node {
    kind: char,
    mode: u32,
    uid: u64,
    /// Symlink or hard link target.
    target: Option<String>,
    /// Content of regular files (hard links get their target's).
    data: Vec<u8>,
}

/// The image's file system: every layer applied in order (the later wins;
/// kiln's layers carry no whiteouts).
fn rootfs(layout: &Path) -> BTreeMap<String, Node> {
    let mut fs: BTreeMap<String, Node> = BTreeMap::new();
    for l in manifest(layout)["layers"].as_array().unwrap() {
        let bytes = std::fs::read(blob(layout, l["digest"].as_str().unwrap())).unwrap();
        for e in kiln_seed::tarlist::list(&bytes).unwrap() {
            let (path, kind, target) = (e.path, e.kind, e.link);
            let mut data = e.data;
            if kind == 'h' {
                let t = target.clone().unwrap();
                data = fs.get(&t).map(|n| n.data.clone()).unwrap_or_default();
            }
            fs.insert(
                path,
                Node {
                    kind,
                    mode: e.mode,
                    uid: e.uid,
                    target,
                    data,
                },
            );
        }
    }
    fs
}

/// A Debian package as an SBOM or a scanner names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Deb {
    name: String,
    version: String,
    arch: String,
}

/// The Debian packages of kiln's SPDX document (those with a pkg:deb purl).
fn spdx_debs(spdx: &Value) -> BTreeSet<Deb> {
    spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let purl = p["externalRefs"]
                .as_array()?
                .iter()
                .find_map(|r| r["referenceLocator"].as_str())?;
            if !purl.starts_with("pkg:deb/") {
                return None;
            }
            let arch = purl.split("arch=").nth(1)?.split('&').next()?.to_string();
            Some(Deb {
                name: p["name"].as_str()?.to_string(),
                version: p["versionInfo"].as_str()?.to_string(),
                arch,
            })
        })
        .collect()
}

fn spdx_package<'a>(spdx: &'a Value, name: &str) -> &'a Value {
    spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in the SBOM"))
}

fn venv_bin(tool: &str) -> PathBuf {
    let p = project().join(".kiln/venv/bin").join(tool);
    assert!(
        p.exists(),
        "{} is missing: run scripts/tools (scripts/test does)",
        p.display()
    );
    p
}

/// ELF `e_machine` of an image architecture.
fn elf_machine(arch: &str) -> u16 {
    match arch {
        "amd64" => 62,
        "arm64" => 183,
        _ => unreachable!(),
    }
}

#[test]
fn every_image_and_variant_has_both_platforms_and_its_declared_contents() {
    let cat = catalogue();
    for full in full_names() {
        let index = &cat.index[&full];
        let tag = if is_debug(&full) { "debug" } else { "latest" };
        let top = read_json(&index.join("index.json"));
        assert_eq!(
            top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], tag,
            "{full}"
        );
        let platforms: Vec<&str> = platform_manifests(index)
            .iter()
            .map(|m| match m["platform"]["architecture"].as_str().unwrap() {
                "amd64" => "amd64",
                "arm64" => "arm64",
                a => panic!("{full}: unexpected platform {a}"),
            })
            .collect();
        assert_eq!(platforms, ARCHS, "{full}");

        for arch in ARCHS {
            let layout = cat.image(&full, arch);
            let config = skopeo_inspect(index, tag, &["--override-arch", arch, "--config"]);
            assert_eq!(config["architecture"], arch, "{full}");
            let c = &config["config"];
            let labels = &c["Labels"];
            for key in ["title", "description", "source", "revision", "licenses"] {
                let v = labels[format!("org.opencontainers.image.{key}")]
                    .as_str()
                    .unwrap_or_default();
                assert!(!v.is_empty(), "{full} {arch}: annotation {key} missing");
            }
            assert_eq!(labels["org.opencontainers.image.title"], full.as_str());
            let fs = rootfs(layout);
            let has = |p: &str| fs.contains_key(p);

            // Scanners see every installed package (status.d + md5sums).
            let spdx = read_json(&layout.join("sbom.spdx.json"));
            let debs = spdx_debs(&spdx);
            assert!(!debs.is_empty(), "{full} {arch}");
            for d in &debs {
                let status = fs
                    .get(&format!("var/lib/dpkg/status.d/{}", d.name))
                    .unwrap_or_else(|| panic!("{full} {arch}: no status.d entry for {}", d.name));
                let text = String::from_utf8_lossy(&status.data);
                assert!(
                    text.starts_with(&format!(
                        "Package: {}\nStatus: install ok installed\n",
                        d.name
                    )) && text.contains(&format!("\nVersion: {}\n", d.version))
                        && text.contains(&format!("\nArchitecture: {}\n", d.arch)),
                    "{full} {arch}: {text}"
                );
                assert!(
                    has(&format!("var/lib/dpkg/status.d/{}.md5sums", d.name)),
                    "{full} {arch}: no md5sums for {}",
                    d.name
                );
                if d.arch != "all" {
                    assert_eq!(d.arch, arch, "{full}: {} is {}", d.name, d.arch);
                }
            }

            // Run-as, entrypoint and the shell only in debug variants.
            if is_debug(&full) {
                assert_eq!(c["User"], "0:0", "{full} {arch}");
                assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh"]));
                // Debian 13 merged /bin into /usr/bin: /bin is a link there.
                let bin = if release(&full) == 13 {
                    assert_eq!(
                        (fs["bin"].kind, fs["bin"].target.as_deref()),
                        ('l', Some("usr/bin")),
                        "{full} {arch}"
                    );
                    "usr/bin"
                } else {
                    "bin"
                };
                let sh = &fs[&format!("{bin}/sh")];
                assert_eq!(
                    (sh.kind, sh.target.as_deref()),
                    ('l', Some("busybox")),
                    "{full} {arch}"
                );
                assert_eq!(fs[&format!("{bin}/busybox")].kind, '-', "{full} {arch}");
            } else {
                assert_eq!(c["User"], "65532:65532", "{full} {arch}");
                assert!(
                    !has("bin/sh") && !has("bin/busybox") && !has("usr/bin/sh"),
                    "{full} {arch}: a shell in a non-debug image"
                );
                assert_eq!(fs["home/nonroot"].uid, 65532, "{full} {arch}");
            }
            assert_eq!(fs["tmp"].mode, 0o1777, "{full} {arch}");
            assert!(has("etc/ssl/certs/ca-certificates.crt"), "{full} {arch}");
            let passwd = String::from_utf8_lossy(&fs["etc/passwd"].data).into_owned();
            assert!(
                passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
                "{passwd}"
            );

            let image = kind(&full);
            if image != "scratch-plus" {
                // base-files, tzdata, netbase, media-types.
                let os = String::from_utf8_lossy(&fs["usr/lib/os-release"].data).into_owned();
                let version_id = format!("VERSION_ID=\"{}\"", release(&full));
                assert!(os.contains(&version_id), "{full}: {os}");
                let debian_version =
                    String::from_utf8_lossy(&fs["etc/debian_version"].data).into_owned();
                assert!(
                    debian_version.starts_with(&format!("{}.", release(&full))),
                    "{full}: {debian_version}"
                );
                assert_eq!(
                    fs["etc/os-release"].target.as_deref(),
                    Some("../usr/lib/os-release")
                );
                for p in [
                    "etc/debian_version",
                    "usr/share/zoneinfo/UTC",
                    "usr/share/zoneinfo/Europe/Paris",
                    "etc/services",
                    "etc/protocols",
                    "etc/mime.types",
                ] {
                    assert!(has(p), "{full} {arch}: {p} missing");
                }
                assert_eq!(
                    c["WorkingDir"],
                    if is_debug(&full) {
                        "/root"
                    } else {
                        "/home/nonroot"
                    }
                );
            }
            if !matches!(image, "scratch-plus" | "distroless-static") {
                let nss = String::from_utf8_lossy(&fs["etc/nsswitch.conf"].data).into_owned();
                assert!(nss.contains("passwd:") && nss.contains("hosts:"), "{nss}");
                assert!(
                    debs.iter().any(|d| d.name == "libc6"),
                    "{full} {arch}: no libc6"
                );
            } else {
                assert!(!has("etc/nsswitch.conf"), "{full} {arch}");
            }
            if image == "python" {
                let py = format!("python{}", python_version(&full));
                assert_eq!(fs["usr/bin/python3"].target.as_deref(), Some(py.as_str()));
                assert!(
                    has(&format!("usr/lib/{py}/os.py")),
                    "{full} {arch}: no stdlib"
                );
                if !is_debug(&full) {
                    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/python3"]));
                }
                let env: Vec<&str> = c["Env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
                    .collect();
                assert!(env.contains(&"LANG=C.UTF-8"), "{env:?}");
            }
        }
    }
}

#[test]
fn binaries_are_built_for_the_image_architecture() {
    let cat = catalogue();
    for full in full_names() {
        for arch in ARCHS {
            let fs = rootfs(cat.image(&full, arch));
            let mut elves = 0;
            for (path, node) in &fs {
                if node.kind != '-' || node.data.len() < 20 || &node.data[..4] != b"\x7fELF" {
                    continue;
                }
                let machine = u16::from_le_bytes([node.data[18], node.data[19]]);
                assert_eq!(
                    machine,
                    elf_machine(arch),
                    "{full} {arch}: /{path} is an ELF for machine {machine}"
                );
                elves += 1;
            }
            let must: &[&str] = match kind(&full) {
                "base" => &["usr/lib/{triplet}/libc.so.6"],
                "cc" => &[
                    "usr/lib/{triplet}/libc.so.6",
                    // The library itself (libstdc++.so.6 is a link to it).
                    "usr/lib/{triplet}/libstdc++.so.6.0.*",
                ],
                "python" => &["usr/bin/python{py}", "usr/lib/{triplet}/libc.so.6"],
                "nodejs" => &["usr/bin/node", "usr/lib/{triplet}/libc.so.6"],
                _ => &[],
            };
            let triplet = if arch == "amd64" {
                "x86_64-linux-gnu"
            } else {
                "aarch64-linux-gnu"
            };
            let mut must: Vec<String> = must
                .iter()
                .map(|p| {
                    p.replace("{triplet}", triplet)
                        .replace("{py}", python_version(&full))
                })
                .collect();
            if is_debug(&full) {
                // Debian 13 installs it under /usr (merged /usr).
                must.push(if release(&full) == 13 {
                    "usr/bin/busybox".into()
                } else {
                    "bin/busybox".into()
                });
            }
            for p in &must {
                let alt = p.replace("usr/lib/", "lib/");
                // A trailing `*`: any file under that prefix.
                let prefixed = |prefix: &str| {
                    fs.iter()
                        .find(|(path, _)| path.starts_with(prefix))
                        .map(|(_, n)| n)
                };
                let node = match p.strip_suffix('*') {
                    Some(prefix) => prefixed(prefix),
                    None => fs.get(p).or_else(|| fs.get(&alt)),
                }
                .unwrap_or_else(|| panic!("{full} {arch}: {p} missing"));
                assert_eq!(&node.data[..4], b"\x7fELF", "{full} {arch}: {p}");
            }
            eprintln!(
                "{full} {arch}: {elves} ELF files, all for e_machine {}",
                elf_machine(arch)
            );
            assert_eq!(
                elves > 0,
                !must.is_empty(),
                "{full} {arch}: {elves} ELF files"
            );
        }
    }
}

/// Runs `argv` natively for amd64, under qemu-aarch64-static for arm64.
fn run_for(arch: &str, program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if arch == "amd64" {
        Command::new(program)
    } else {
        let mut c = Command::new("qemu-aarch64-static");
        c.arg(program);
        c
    };
    cmd.args(args).env_clear().output().unwrap_or_else(|e| {
        panic!(
            "running {} for {arch}: {e} (scripts/setup installs qemu-user-static)",
            program.display()
        )
    })
}

#[test]
fn the_debug_shell_runs_on_both_architectures() {
    let cat = catalogue();
    let work = scratch("e2e-catalogue-debug");
    for full in full_names().into_iter().filter(|f| is_debug(f)) {
        for arch in ARCHS {
            let rootfs = unpack(
                cat.image(&full, arch),
                "debug",
                &work.join(format!("{full}-{arch}")),
            );
            let busybox = rootfs.join("bin/busybox");
            let sh = rootfs.join("bin/sh");
            let out = run_for(arch, &busybox, &["echo", "ok"]);
            assert!(out.status.success(), "{full} {arch}: {}", stderr(&out));
            assert_eq!(stdout(&out), "ok\n", "{full} {arch}");
            // Through the /bin/sh symlink, as the entrypoint runs it.
            let out = run_for(arch, &sh, &["-c", "echo $((6 * 7))"]);
            assert!(out.status.success(), "{full} {arch}: {}", stderr(&out));
            assert_eq!(stdout(&out), "42\n", "{full} {arch}");
        }
    }
}

#[test]
fn python_runs_its_standard_library_on_both_architectures() {
    let cat = catalogue();
    let work = scratch("e2e-catalogue-python");
    // Modules that need the image's shared libraries and data: OpenSSL and
    // the CA bundle, SQLite, libffi, liblzma, libbz2, zlib, expat, the
    // time zone database.
    let program = "import ssl, sqlite3, ctypes, lzma, bz2, zlib, hashlib, json, uuid, decimal, xml.parsers.expat, zoneinfo, platform\n\
        ctx = ssl.create_default_context()\n\
        assert ctx.cert_store_stats()['x509_ca'] > 100, ctx.cert_store_stats()\n\
        assert sqlite3.connect(':memory:').execute('select 6*7').fetchone() == (42,)\n\
        assert lzma.decompress(lzma.compress(b'x')) == b'x' and bz2.decompress(bz2.compress(b'y')) == b'y'\n\
        assert zoneinfo.ZoneInfo('Europe/Paris').key == 'Europe/Paris'\n\
        print(platform.machine(), ssl.OPENSSL_VERSION.split()[0])";
    for (image, arch) in ["python", "python-debian13"]
        .into_iter()
        .flat_map(|i| ARCHS.map(|a| (i, a)))
    {
        let rootfs = unpack(
            cat.image(image, arch),
            "latest",
            &work.join(image).join(arch),
        );
        let python = rootfs.join("usr/bin/python3");
        let out = Command::new(if arch == "amd64" {
            "qemu-x86_64-static"
        } else {
            "qemu-aarch64-static"
        })
        .arg("-L")
        .arg(&rootfs)
        .arg(&python)
        .args(["-c", program])
        .env_clear()
        .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
        assert!(out.status.success(), "{image} {arch}: {}", stderr(&out));
        let machine = if arch == "amd64" { "x86_64" } else { "aarch64" };
        assert_eq!(
            stdout(&out),
            format!("{machine} OpenSSL\n"),
            "{image} {arch}"
        );
    }
}

#[test]
fn sboms_validate_and_syft_finds_exactly_their_packages() {
    let cat = catalogue();
    // The reference validators, once over every document.
    let mut files = Vec::new();
    for ((_, _), layout) in &cat.images {
        files.push(layout.join("sbom.spdx.json"));
        files.push(layout.join("sbom.cdx.json"));
    }
    let out = Command::new(venv_bin("python"))
        .arg(project().join("tests/validate_sbom.py"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SBOM validation failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains(": valid "))
            .count(),
        files.len()
    );

    for ((full, arch), layout) in &cat.images {
        let spdx = read_json(&layout.join("sbom.spdx.json"));
        let kiln = spdx_debs(&spdx);
        let cdx = read_json(&layout.join("sbom.cdx.json"));
        let cdx_names: BTreeSet<&str> = cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["purl"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("pkg:deb/"))
            })
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            cdx_names,
            kiln.iter()
                .map(|d| d.name.as_str())
                .collect::<BTreeSet<_>>(),
            "{full} {arch}: SPDX and CycloneDX list different packages"
        );

        // The purls name the image's release, as scanners match them.
        let distro = format!("distro=debian-{}", release(full));
        for c in cdx["components"].as_array().unwrap() {
            if let Some(purl) = c["purl"].as_str().filter(|p| p.starts_with("pkg:deb/")) {
                assert!(purl.ends_with(&distro), "{full} {arch}: {purl}");
            }
        }

        let report = syft_json(layout);
        if kind(full) != "scratch-plus" {
            assert_eq!(
                report["distro"]["versionID"],
                release(full).to_string(),
                "{full} {arch}: syft reads the release from os-release"
            );
        }
        let artifacts = report["artifacts"].as_array().unwrap();
        let syft: BTreeSet<Deb> = artifacts
            .iter()
            .filter(|a| a["type"] == "deb")
            .map(|a| Deb {
                name: a["name"].as_str().unwrap().into(),
                version: a["version"].as_str().unwrap().into(),
                arch: a["metadata"]["architecture"].as_str().unwrap_or("").into(),
            })
            .collect();
        // syft also reports the npm modules Debian packages as files of
        // its debs (node-acorn ships acorn's package.json under
        // /usr/share/nodejs); kiln's SBOM lists them as those debs. Any
        // other finding is one kiln's SBOM misses.
        let fs = rootfs(layout);
        let owned: BTreeSet<String> = fs
            .iter()
            .filter(|(p, _)| p.starts_with("var/lib/dpkg/status.d/") && p.ends_with(".md5sums"))
            .flat_map(|(_, n)| {
                String::from_utf8_lossy(&n.data)
                    .lines()
                    .filter_map(|l| l.split_once("  ").map(|(_, f)| f.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (of_debs, others): (Vec<&Value>, Vec<&Value>) = artifacts
            .iter()
            .filter(|a| a["type"] != "deb")
            .partition(|a| {
                a["locations"].as_array().is_some_and(|ls| {
                    !ls.is_empty()
                        && ls.iter().all(|l| {
                            l["path"]
                                .as_str()
                                .is_some_and(|p| owned.contains(p.trim_start_matches('/')))
                        })
                })
            });
        let others: Vec<String> = others
            .iter()
            .map(|a| format!("{} {} ({})", a["name"], a["version"], a["type"]))
            .collect();
        if !of_debs.is_empty() {
            eprintln!(
                "{full} {arch}: syft also lists {} modules that are files of its debs",
                of_debs.len()
            );
        }
        assert_eq!(
            syft, kiln,
            "{full} {arch}: syft and kiln's SBOM disagree (left: syft, right: kiln)"
        );
        assert!(
            others.is_empty(),
            "{full} {arch}: syft also found {others:?}"
        );
        eprintln!(
            "{full} {arch}: syft and kiln agree on {} packages",
            kiln.len()
        );
    }
}

/// A package whose /usr/share/doc/<pkg> is a symlink to another package's
/// doc directory states the license of the copyright file behind the link
/// when that one is machine-readable, and nothing when it is not.
#[test]
fn licenses_behind_doc_directory_symlinks_are_resolved_but_never_invented() {
    let cat = catalogue();
    for arch in ARCHS {
        let layout = cat.image("python", arch);
        let spdx = read_json(&layout.join("sbom.spdx.json"));
        let fs = rootfs(layout);
        // libncursesw6 -> libtinfo6 (a DEP-5 copyright file).
        assert_eq!(
            fs["usr/share/doc/libncursesw6"].target.as_deref(),
            Some("libtinfo6")
        );
        let tinfo = spdx_package(&spdx, "libtinfo6");
        let ncurses = spdx_package(&spdx, "libncursesw6");
        assert_ne!(tinfo["licenseDeclared"], "NOASSERTION");
        assert_eq!(
            ncurses["licenseDeclared"], tinfo["licenseDeclared"],
            "{arch}"
        );
        assert!(
            ncurses["licenseComments"]
                .as_str()
                .unwrap_or_default()
                .contains("/usr/share/doc/libtinfo6/copyright"),
            "{ncurses}"
        );
        // libpython3.11-stdlib -> libpython3.11-minimal, whose copyright
        // file is free text: nothing to inherit.
        assert_eq!(
            fs["usr/share/doc/libpython3.11-stdlib"].target.as_deref(),
            Some("libpython3.11-minimal")
        );
        assert_eq!(
            spdx_package(&spdx, "libpython3.11-minimal")["licenseDeclared"],
            "NOASSERTION"
        );
        assert_eq!(
            spdx_package(&spdx, "libpython3.11-stdlib")["licenseDeclared"],
            "NOASSERTION"
        );
        // And the copyright file is reachable through the link, as the
        // scanners look for it.
        assert!(fs.contains_key("usr/share/doc/libtinfo6/copyright"));
    }
}

#[test]
fn compressed_sizes_are_within_budget() {
    let cat = catalogue();
    let mut over = Vec::new();
    eprintln!(
        "{:<26} {:>6} {:>12} {:>12}",
        "image", "arch", "compressed", "budget"
    );
    for full in full_names() {
        for arch in ARCHS {
            let size = compressed_size(cat.image(&full, arch));
            let image = base_name(&full);
            let limit = (!is_debug(&full)).then(|| budget(image));
            eprintln!(
                "{full:<26} {arch:>6} {size:>12} {:>12}",
                limit.map_or("-".to_string(), |l| l.to_string())
            );
            if let Some(l) = limit {
                if size > l {
                    over.push(format!("{full} {arch}: {size} > {l}"));
                }
            }
        }
    }
    assert!(over.is_empty(), "over budget: {over:?}");
}

#[test]
fn a_package_gives_the_same_layer_in_every_image() {
    let cat = catalogue();
    let mut total = 0u64;
    let mut distinct: BTreeMap<String, u64> = BTreeMap::new();
    for arch in ARCHS {
        // (release, package) -> (layer digest -> images using it), for
        // one-package layers: a release's images share its packages' layers.
        let mut by_package: BTreeMap<(u32, String), BTreeMap<String, Vec<String>>> =
            BTreeMap::new();
        for full in full_names() {
            let layout = cat.image(&full, arch);
            let summary = read_json(&layout.join("image.json"));
            for l in summary["layers"].as_array().unwrap() {
                let digest = l["digest"].as_str().unwrap().to_string();
                let size = l["size"].as_u64().unwrap();
                total += size;
                distinct.insert(digest.clone(), size);
                if let [p] = l["packages"].as_array().unwrap().as_slice() {
                    by_package
                        .entry((release(&full), p.as_str().unwrap().to_string()))
                        .or_default()
                        .entry(digest)
                        .or_default()
                        .push(full.clone());
                }
            }
        }
        for ((release, package), digests) in &by_package {
            assert_eq!(
                digests.len(),
                1,
                "{arch}: Debian {release} package {package} has different layers: {digests:?}"
            );
        }
        for (release, suffix) in [(12, ""), (13, "-debian13")] {
            let ca = &by_package[&(release, "ca-certificates".to_string())];
            let users = ca.values().next().unwrap();
            for image in ["scratch-plus", "distroless-static", "base", "python"] {
                let image = format!("{image}{suffix}");
                assert!(
                    users.contains(&image),
                    "{arch}: ca-certificates' layer is not shared by {image}: {ca:?}"
                );
            }
            let libc = &by_package[&(release, "libc6".to_string())];
            assert!(libc.values().next().unwrap().len() >= 4, "{arch}: {libc:?}");
        }
    }
    let unique: u64 = distinct.values().sum();
    eprintln!(
        "layers of all {} single-platform images: {total} bytes; distinct: {unique} bytes; shared (stored or pulled once): {} bytes",
        full_names().len() * ARCHS.len(),
        total - unique
    );
    assert!(total > unique);
}

#[test]
fn rebuilding_the_catalogue_gives_the_same_bytes() {
    catalogue();
    // Images and indexes again through kiln.
    let mut args = vec!["build".to_string(), "--rebuild".to_string()];
    for full in full_names() {
        args.push(full.clone());
        for arch in ARCHS {
            args.push(format!("{full}-{arch}"));
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kiln(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // And every layer derivation under them.
    let mut layer_drvs = BTreeSet::new();
    for full in full_names() {
        let drv = run(Command::new("nix")
            .args(["eval", "--raw"])
            .arg(format!("{}#{full}.drvPath", project().display())));
        for p in run(Command::new("nix-store")
            .args(["-q", "--requisites"])
            .arg(drv.trim()))
        .lines()
        {
            if p.contains("-kiln-layer-") && p.ends_with(".drv") {
                layer_drvs.insert(p.to_string());
            }
        }
    }
    assert!(layer_drvs.len() > 40, "{layer_drvs:?}");
    let out = Command::new("nix-store")
        .args(["--realise", "--check"])
        .args(&layer_drvs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// Bad input, in copies of the project outside the checkout (Nix would read a
// directory inside the git checkout through git, and see none of it).

/// A project with the flake, the seed pin and the given definitions, and no lock.
fn project_with(images: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-e2e-catalogue-")
        .tempdir()
        .unwrap();
    copy_flake_sources(dir.path());
    for (name, toml) in images {
        let d = dir.path().join("images").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("image.toml"), toml).unwrap();
    }
    dir
}

#[test]
fn a_variant_with_an_unknown_key_is_refused_naming_file_line_and_key() {
    for (bad, key) in [
        ("packages.nope = [\"x\"]", "variants.debug.packages.nope"),
        ("nope = true", "variants.debug.nope"),
        ("accounts.users = []", "variants.debug.accounts.users"),
    ] {
        let toml = format!(
            "name = \"v\"\ndescription = \"d\"\n[packages]\ninclude = [\"netbase\"]\n\n[variants.debug]\ndebug = true\n{bad}\n"
        );
        let dir = project_with(&[("v", &toml)]);
        for args in [&["lock"][..], &["lock", "--check"]] {
            let out = kiln_in(dir.path(), args);
            assert!(!out.status.success(), "{bad}: kiln {args:?} succeeded");
            let err = stderr(&out);
            assert!(
                err.contains("images/v/image.toml: line 8")
                    && err.contains(&format!("(key `{key}`)")),
                "{bad}: {err}"
            );
        }
        assert!(
            !dir.path().join("kiln.lock").exists(),
            "{bad}: a lock was written"
        );
    }
}

/// busybox and busybox-static both ship /bin/busybox.
const COLLIDE: &str = r#"name = "collide"
description = "two packages that ship /bin/busybox"
archs = ["amd64"]
[accounts]
run_as = "65534:65534"
[packages]
include = ["busybox", "busybox-static"]
"#;

#[test]
fn packages_that_ship_the_same_file_fail_the_build_naming_both_unless_allowed() {
    require_setup();
    let dir = project_with(&[("collide", COLLIDE)]);
    let p = dir.path();
    let out = kiln_in(p, &["lock"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Debian declares the two as conflicting; named both, they are locked
    // as asked, with a warning, and the build's collision check decides.
    let said = stdout(&out);
    assert!(
        said.contains("warning: image collide: amd64: busybox")
            && said.contains("`Conflicts: busybox-static`"),
        "{said}"
    );
    let out = kiln_in(p, &["fetch"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = kiln_in(p, &["build", "collide-amd64"]);
    assert!(!out.status.success(), "a colliding image was built");
    let err = stderr(&out);
    assert!(
        err.contains("file collision: /")
            && err.contains("package busybox (layer ")
            && err.contains("package busybox-static (layer ")
            && err.contains("allow_collisions"),
        "{err}"
    );

    // Declared (the two packages also share initramfs hooks): the later
    // layer wins, and only its file is in the SBOM.
    let def = p.join("images/collide/image.toml");
    let toml = format!(
        "{COLLIDE}allow_collisions = [\"/bin/busybox\", \"/usr/share/initramfs-tools/**\"]\n"
    );
    std::fs::write(&def, toml).unwrap();
    // busybox is a shell and the test definition has no source annotation:
    // this test is about collisions, so the policy gate is skipped.
    let out = kiln_in(p, &["build", "--json", "--skip-policy", "collide-amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let layout = PathBuf::from(built[0]["out"].as_str().unwrap());
    let spdx = read_json(&layout.join("sbom.spdx.json"));
    let owners: Vec<&str> = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fileName"] == "./bin/busybox")
        .map(|f| f["SPDXID"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
    let fs = rootfs(&layout);
    assert_eq!(fs["bin/busybox"].kind, '-');
}

#[test]
fn a_package_missing_for_one_architecture_is_a_lock_error_naming_it() {
    // libc6-i386 (32-bit libraries for amd64) is not built for arm64.
    let dir = project_with(&[(
        "onearch",
        "name = \"onearch\"\ndescription = \"d\"\naccounts.run_as = \"65534\"\n[packages]\ninclude = [\"libc6-i386\"]\n",
    )]);
    let out = kiln_in(dir.path(), &["lock"]);
    assert!(
        !out.status.success(),
        "locked a package arm64 does not have"
    );
    let err = stderr(&out);
    assert!(
        err.contains("image onearch") && err.contains("unknown package libc6-i386 for arm64"),
        "{err}"
    );
    assert!(!dir.path().join("kiln.lock").exists());
}

/// The upgrade path the docs show: the same image on Debian 12 and 13,
/// explained by `kiln diff --packages` as package versions, packages added
/// and removed, and file differences counted, never listed.
#[test]
fn moving_an_image_to_debian_13_is_explained_package_by_package() {
    let cat = catalogue();
    let (a, b) = (&cat.index["base"], &cat.index["base-debian13"]);
    let out = kiln(&[
        "diff",
        "--packages",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lock = read_json(&project().join("kiln.lock"));
    for arch in ARCHS {
        let version = |release: &str, name: &str| {
            lock["packages"][release][arch][name]["version"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let libc = format!(
            "{arch}: packages: libc6 {} → {}\n",
            version("bookworm", "libc6"),
            version("trixie", "libc6")
        );
        assert!(text.contains(&libc), "{libc}: {text}");
        assert!(
            text.contains(&format!("{arch}: packages: - gcc-12-base ")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{arch}: packages: + gcc-14-base ")),
            "{text}"
        );
    }
    // No file is listed: the file differences of a layer are one count.
    assert!(
        !text.lines().any(|l| l.contains("): /")),
        "a file difference is listed: {text}"
    );
    assert!(text.contains("(libc6): … and "), "{text}");
    assert!(text.lines().count() < 120, "{} lines", text.lines().count());
}
