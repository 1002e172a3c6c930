use super::*;
use crate::layerinfo::FileInfo;
use crate::oci::tests::{chain, scratch};
use crate::sbom::tests::file;
use crate::tarwrite::Entry;
use sha1::Sha1;
use sha2::Digest as _;

/// A package for fixtures: its files (content `None` = directory).
pub(crate) struct Pkg {
    pub name: &'static str,
    pub version: &'static str,
    pub arch: &'static str,
    pub license: &'static str,
    pub files: Vec<(&'static str, Option<&'static [u8]>)>,
}

pub(crate) fn pkg(
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    files: Vec<(&'static str, Option<&'static [u8]>)>,
) -> Pkg {
    Pkg {
        name,
        version,
        arch,
        license: "MIT",
        files,
    }
}

fn dir_info(path: &str) -> FileInfo {
    FileInfo {
        file_type: FileType::Directory,
        mode: 0o755,
        size: None,
        sha256: None,
        sha1: None,
        ..file(path, b"")
    }
}

/// Writes a layer directory as the layer step would: layer.tar.gz with
/// the packages' files (and their parent directories), layer.json, and
/// ca-certificates.pem if given.
pub(crate) fn layer_dir(root: &Path, name: &str, pkgs: &[Pkg], pem: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut packages = Vec::new();
    for p in pkgs {
        let mut files: BTreeMap<String, FileInfo> = BTreeMap::new();
        for (path, content) in &p.files {
            let mut cur = *path;
            while let Some(i) = cur.rfind('/') {
                cur = &cur[..i];
                if cur.is_empty() {
                    break;
                }
                entries
                    .entry(cur[1..].to_string())
                    .or_insert_with(|| Entry::directory(&cur[1..], 0o755, 0, 0, 1));
                files
                    .entry(cur.to_string())
                    .or_insert_with(|| dir_info(cur));
            }
            let (entry, info) = match content {
                Some(c) => (
                    Entry::file(&path[1..], c.to_vec(), 0o644, 0, 0, 1),
                    file(path, c),
                ),
                None => (Entry::directory(&path[1..], 0o755, 0, 0, 1), dir_info(path)),
            };
            entries.insert(path[1..].to_string(), entry);
            files.insert(path.to_string(), info);
        }
        let mut ip = crate::sbom::tests::package(
            p.name,
            p.version,
            p.arch,
            p.license,
            files.into_values().collect(),
        );
        ip.maintainer = Some("Jane Doe <jane@example.org>".into());
        packages.push(ip);
    }
    let blob = tarwrite::write_layer(entries.into_values().collect()).unwrap();
    let info = LayerInfo {
        media_type: crate::layerinfo::LAYER_MEDIA_TYPE.into(),
        digest: blob.digest,
        size: blob.size(),
        diff_id: blob.diff_id,
        packages,
    };
    fs::write(dir.join("layer.tar.gz"), &blob.bytes).unwrap();
    fs::write(dir.join("layer.json"), json::pretty(&info)).unwrap();
    if let Some(pem) = pem {
        fs::write(dir.join("ca-certificates.pem"), pem).unwrap();
    }
    dir
}

pub(crate) fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "scratch-plus",
        "description": "CA certificates, nonroot and /tmp",
        "packages": {"include": ["ca-certificates"]},
        "accounts": {
            "run_as": "nonroot",
            "users": [{"name": "nonroot", "uid": 65532, "gid": 65532, "home": "/home/nonroot"}],
            "groups": [{"name": "nonroot", "gid": 65532}]
        },
        "paths": [{"path": "/tmp", "type": "directory", "mode": "1777"}],
        "config": {"env": {"TZ": "UTC", "LANG": "C.UTF-8"}, "workdir": "/home/nonroot"},
        "annotations": {"org.opencontainers.image.source": "https://example.org/kiln"},
        "variants": {"debug": {"debug": true, "accounts": {"run_as": "0"}, "config": {"entrypoint": ["/bin/sh"]}}}
    })
}

pub(crate) fn input(
    def: serde_json::Value,
    variant: Option<&str>,
    arch: Arch,
    layers: Vec<PathBuf>,
) -> Input {
    serde_json::from_value(serde_json::json!({
        "definition": def, "variant": variant, "arch": arch, "created": 1_783_764_997u64, "layers": layers
    }))
    .unwrap()
}

pub(crate) const PEM_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
pub(crate) const PEM_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

/// Per-arch content, so that the two archs' libc layers differ as real ones do.
fn elf(arch: &str) -> &'static [u8] {
    match arch {
        "amd64" => b"\x7fELF x86-64",
        _ => b"\x7fELF aarch64",
    }
}

pub(crate) fn standard_layers(root: &Path, arch: &'static str) -> Vec<PathBuf> {
    vec![
        layer_dir(
            root,
            "ca",
            &[pkg(
                "ca-certificates",
                "20230311+deb12u1",
                "all",
                vec![("/usr/share/doc/ca-certificates/copyright", Some(b"c"))],
            )],
            Some(PEM_A),
        ),
        layer_dir(
            root,
            &format!("libc-{arch}"),
            &[
                Pkg {
                    license: "LGPL-2.1-or-later AND LicenseRef-glibc-other",
                    ..pkg(
                        "libc6",
                        "2.36-9+deb12u10",
                        arch,
                        vec![
                            ("/etc/ld.so.conf.d", None),
                            ("/usr/lib/libc.so.6", Some(elf(arch))),
                        ],
                    )
                },
                // A `+` in the name, an epoch and a `~` in the version,
                // and a compound license.
                Pkg {
                    license: "GPL-3.0-or-later WITH GCC-exception-3.1 OR MIT",
                    ..pkg(
                        "libstdc++6",
                        "1:12.2.0-14~deb12u1",
                        arch,
                        vec![("/usr/lib/libstdc++.so.6", Some(b"c++"))],
                    )
                },
            ],
            Some(PEM_B),
        ),
    ]
}

fn read(out: &Path, rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(out.join(rel)).unwrap()).unwrap()
}

fn blob_json(out: &Path, desc: &serde_json::Value) -> serde_json::Value {
    let d = desc["digest"].as_str().unwrap();
    serde_json::from_slice(&fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap()).unwrap()
}

fn generated_layer(
    out: &Path,
    summary: &Summary,
) -> BTreeMap<String, (tar::EntryType, u32, u64, u64, Vec<u8>)> {
    let d = summary
        .layers
        .last()
        .unwrap()
        .descriptor
        .digest()
        .to_string();
    let gz = fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap();
    crate::tarlist::list(&gz)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, (e.entry_type, e.mode, e.uid, e.mtime, e.data)))
        .collect()
}

#[test]
fn builds_a_layout_with_config_manifest_and_generated_layer() {
    let root = scratch("image-basic");
    let layers = standard_layers(&root, "arm64");
    let out = root.join("out");
    let summary = build(&input(definition(), None, Arch::Arm64, layers), &out).unwrap();

    assert_eq!(
        read(&out, "oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read(&out, "index.json");
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "latest");
    assert_eq!(
        index["manifests"][0]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );

    let manifest = blob_json(&out, &index["manifests"][0]);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert!(manifest["annotations"].get(REF_NAME).is_none());
    let ann = &manifest["annotations"];
    assert_eq!(ann[ANNOTATION_TITLE], "scratch-plus");
    assert_eq!(
        ann[ANNOTATION_DESCRIPTION],
        "CA certificates, nonroot and /tmp"
    );
    assert_eq!(ann[ANNOTATION_CREATED], "2026-07-11T10:16:37Z");
    assert_eq!(
        ann[ANNOTATION_LICENSES],
        "(GPL-3.0-or-later WITH GCC-exception-3.1 OR MIT) AND LGPL-2.1-or-later AND LicenseRef-glibc-other AND MIT"
    );
    assert_eq!(
        ann["org.opencontainers.image.source"],
        "https://example.org/kiln"
    );
    assert!(ann[ANNOTATION_REVISION]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(ann.get("org.opencontainers.image.version").is_none());

    let config = blob_json(&out, &manifest["config"]);
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2026-07-11T10:16:37Z");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["WorkingDir"], "/home/nonroot");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([
            "LANG=C.UTF-8",
            format!("PATH={DEFAULT_PATH}"),
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            "TZ=UTC"
        ])
    );
    assert_eq!(config["config"]["Labels"], manifest["annotations"]);
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 3);
    let first: LayerInfo =
        serde_json::from_slice(&fs::read(root.join("ca/layer.json")).unwrap()).unwrap();
    assert_eq!(diff_ids[0], first.diff_id.to_string().as_str());
    let gen_gz = fs::read(
        out.join("blobs/sha256")
            .join(summary.layers[2].descriptor.digest().digest()),
    )
    .unwrap();
    let (gen_diff, _) = Digest::of_reader(flate2::read::GzDecoder::new(gen_gz.as_slice())).unwrap();
    assert_eq!(diff_ids[2], gen_diff.to_string().as_str());
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history[0]["created_by"],
        "kiln: ca-certificates=20230311+deb12u1"
    );
    assert_eq!(history[2]["created_by"], "kiln: generated files");

    // Every blob the manifest names is there and verifies.
    let layout = oci::Layout::open(&out).unwrap();
    assert_eq!(layout.walk().unwrap().len(), 5);

    // The generated layer.
    let g = generated_layer(&out, &summary);
    let bundle = &g["etc/ssl/certs/ca-certificates.crt"];
    assert_eq!(
        String::from_utf8(bundle.4.clone()).unwrap(),
        format!("{PEM_A}{PEM_B}")
    );
    assert_eq!((bundle.1, bundle.3), (0o644, 1_783_764_997));
    assert!(g.contains_key("etc/nsswitch.conf"), "libc6 is installed");
    let home = &g["home/nonroot"];
    assert_eq!(
        (home.0, home.1, home.2),
        (tar::EntryType::Directory, 0o700, 65532)
    );
    assert_eq!(g["tmp"].1, 0o1777);

    // image.json
    let s: Summary = serde_json::from_slice(&fs::read(out.join(SUMMARY_FILE)).unwrap()).unwrap();
    assert_eq!(s, summary);
    assert_eq!(s.layers[1].packages, vec!["libc6", "libstdc++6"]);
    assert!(s.layers[2].packages.is_empty());
    assert_eq!(s.tag, "latest");
}

#[test]
fn amd64_has_no_variant_and_debug_variant_runs_as_root() {
    let root = scratch("image-debug");
    let layers = standard_layers(&root, "amd64");
    let out = root.join("out");
    let s = build(
        &input(definition(), Some("debug"), Arch::Amd64, layers),
        &out,
    )
    .unwrap();
    assert_eq!(s.tag, "debug");
    let index = read(&out, "index.json");
    assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "debug");
    let manifest = blob_json(&out, &index["manifests"][0]);
    let config = blob_json(&out, &manifest["config"]);
    assert!(config.get("variant").is_none());
    assert_eq!(config["config"]["User"], "0:0");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(
        manifest["annotations"][ANNOTATION_TITLE],
        "scratch-plus-debug"
    );
}

#[test]
fn same_input_gives_identical_bytes() {
    let root = scratch("image-determinism");
    let layers = standard_layers(&root, "amd64");
    let a = root.join("a");
    let b = root.join("b");
    build(&input(definition(), None, Arch::Amd64, layers.clone()), &a).unwrap();
    build(&input(definition(), None, Arch::Amd64, layers), &b).unwrap();
    let list = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push((
                        e.path().strip_prefix(d).unwrap().to_path_buf(),
                        fs::read(e.path()).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    };
    let (la, lb) = (list(&a), list(&b));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{} differs between two builds", x.0.display());
    }
}

#[test]
fn revision_is_stable_and_follows_package_versions() {
    let root = scratch("image-revision");
    let layers = standard_layers(&root, "amd64");
    let rev = |out: &str, layers: Vec<PathBuf>| {
        build(
            &input(definition(), None, Arch::Amd64, layers),
            &root.join(out),
        )
        .unwrap()
        .annotations[ANNOTATION_REVISION]
            .clone()
    };
    let r1 = rev("a", layers.clone());
    assert_eq!(r1, rev("b", layers.clone()));
    let newer = layer_dir(
        &root,
        "libc-newer",
        &[pkg(
            "libc6",
            "2.36-9+deb12u11",
            "amd64",
            vec![("/usr/lib/libc.so.6", Some(b"\x7fELF"))],
        )],
        None,
    );
    let r2 = rev("c", vec![layers[0].clone(), newer]);
    assert_ne!(r1, r2);
    // The definition is part of it too.
    let mut def = definition();
    def["description"] = "changed".into();
    let r3 = build(&input(def, None, Arch::Amd64, layers), &root.join("d"))
        .unwrap()
        .annotations[ANNOTATION_REVISION]
        .clone();
    assert_ne!(r1, r3);
}

#[test]
fn collision_names_both_packages_unless_allowed() {
    let root = scratch("image-collision");
    let a = layer_dir(
        &root,
        "a",
        &[pkg(
            "pkg-a",
            "1",
            "all",
            vec![("/usr/bin/tool", Some(b"a")), ("/usr/share/x", None)],
        )],
        None,
    );
    let b = layer_dir(
        &root,
        "b",
        &[pkg(
            "pkg-b",
            "1",
            "all",
            vec![("/usr/bin/tool", Some(b"b")), ("/usr/share/x", None)],
        )],
        None,
    );
    let e = build(
        &input(definition(), None, Arch::Amd64, vec![a.clone(), b.clone()]),
        &root.join("out"),
    )
    .unwrap_err();
    let msg = chain(&e);
    assert!(
        msg.contains("/usr/bin/tool") && msg.contains("pkg-a") && msg.contains("pkg-b"),
        "{msg}"
    );
    assert!(!root.join("out").exists(), "nothing half-written");

    let mut def = definition();
    def["packages"]["allow_collisions"] = serde_json::json!(["/usr/bin/*"]);
    let out = root.join("allowed");
    let s = build(&input(def, None, Arch::Amd64, vec![a, b]), &out).unwrap();
    // The later package's file is the one in the image, and only it is in the SBOM.
    let spdx: sbom::spdx::Document =
        serde_json::from_slice(&fs::read(out.join(SPDX_FILE)).unwrap()).unwrap();
    let tool: Vec<_> = spdx
        .files
        .iter()
        .filter(|f| f.file_name == "./usr/bin/tool")
        .collect();
    assert_eq!(tool.len(), 1);
    assert_eq!(
        tool[0].checksums[0].checksum_value,
        hex::encode(Sha1::digest(b"b"))
    );
    assert_eq!(s.layers.len(), 3);
}

#[test]
fn directory_against_file_is_a_collision() {
    let root = scratch("image-dirfile");
    let a = layer_dir(
        &root,
        "a",
        &[pkg("pkg-a", "1", "all", vec![("/opt/x", None)])],
        None,
    );
    let b = layer_dir(
        &root,
        "b",
        &[pkg("pkg-b", "1", "all", vec![("/opt/x", Some(b"file"))])],
        None,
    );
    let msg = chain(
        &build(
            &input(definition(), None, Arch::Amd64, vec![a, b]),
            &root.join("out"),
        )
        .unwrap_err(),
    );
    assert!(
        msg.contains("/opt/x") && msg.contains("pkg-a") && msg.contains("pkg-b"),
        "{msg}"
    );
}

#[test]
fn tampered_layer_blob_is_refused() {
    let root = scratch("image-tamper");
    let layers = standard_layers(&root, "amd64");
    let blob = layers[1].join("layer.tar.gz");
    let mut bytes = fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let msg = chain(
        &build(
            &input(definition(), None, Arch::Amd64, layers.clone()),
            &root.join("out"),
        )
        .unwrap_err(),
    );
    assert!(
        msg.contains("libc-amd64") && msg.contains("does not match its digest"),
        "{msg}"
    );
    assert!(!root.join("out").exists());
}

#[test]
fn package_of_another_arch_is_refused() {
    let root = scratch("image-arch");
    let layers = standard_layers(&root, "arm64");
    let msg = chain(
        &build(
            &input(definition(), None, Arch::Amd64, layers),
            &root.join("out"),
        )
        .unwrap_err(),
    );
    assert!(msg.contains("libc6") && msg.contains("arm64"), "{msg}");
}

#[test]
fn package_in_two_layers_is_refused() {
    let root = scratch("image-dup");
    let a = layer_dir(
        &root,
        "a",
        &[pkg("pkg-a", "1", "all", vec![("/a", Some(b"a"))])],
        None,
    );
    let b = layer_dir(
        &root,
        "b",
        &[pkg("pkg-a", "1", "all", vec![("/b", Some(b"a"))])],
        None,
    );
    let msg = chain(
        &build(
            &input(definition(), None, Arch::Amd64, vec![a, b]),
            &root.join("out"),
        )
        .unwrap_err(),
    );
    assert!(msg.contains("pkg-a") && msg.contains("twice"), "{msg}");
}

#[test]
fn arch_must_be_declared_and_output_must_not_exist() {
    let root = scratch("image-misc");
    let layers = standard_layers(&root, "amd64");
    let mut def = definition();
    def["archs"] = serde_json::json!(["arm64"]);
    let msg = chain(
        &build(
            &input(def, None, Arch::Amd64, layers.clone()),
            &root.join("out"),
        )
        .unwrap_err(),
    );
    assert!(msg.contains("amd64") && msg.contains("archs"), "{msg}");
    fs::create_dir_all(root.join("exists")).unwrap();
    fs::write(root.join("exists/keep"), b"x").unwrap();
    assert!(build(
        &input(definition(), None, Arch::Amd64, layers),
        &root.join("exists")
    )
    .is_err());
    assert!(
        root.join("exists/keep").exists(),
        "an existing output is never removed"
    );
}

#[test]
fn run_parses_the_step_input() {
    let root = scratch("image-run");
    let layers = standard_layers(&root, "amd64");
    let raw = serde_json::to_vec(&serde_json::json!({
        "definition": definition(), "variant": null, "arch": "amd64", "created": 1_783_764_997u64, "layers": layers
    }))
    .unwrap();
    run(&raw, &root.join("out")).unwrap();
    assert!(
        root.join("out").join(SPDX_FILE).exists() && root.join("out").join(CYCLONEDX_FILE).exists()
    );
    let e = run(br#"{"definition": {}, "arch": "amd64"}"#, &root.join("bad")).unwrap_err();
    assert!(matches!(e, Error::Input(_)));
}

#[test]
fn sboms_describe_the_manifest() {
    let root = scratch("image-sbom");
    let layers = standard_layers(&root, "amd64");
    let out = root.join("out");
    let s = build(&input(definition(), None, Arch::Amd64, layers), &out).unwrap();
    let hex = s.manifest.digest().digest().to_string();
    let spdx: sbom::spdx::Document =
        serde_json::from_slice(&fs::read(out.join(SPDX_FILE)).unwrap()).unwrap();
    assert!(spdx.document_namespace.ends_with(&hex));
    assert_eq!(spdx.packages[0].checksums[0].checksum_value, hex);
    let names: Vec<_> = spdx.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "scratch-plus",
            "ca-certificates",
            "libc6",
            "libstdc++6",
            "kiln-generated-files"
        ]
    );
    let files: Vec<_> = spdx.files.iter().map(|f| f.file_name.as_str()).collect();
    assert!(
        files.contains(&"./etc/passwd")
            && files.contains(&"./etc/ssl/certs/ca-certificates.crt")
            && files.contains(&"./usr/lib/libc.so.6"),
        "{files:?}"
    );
    let cdx: sbom::cyclonedx::Bom =
        serde_json::from_slice(&fs::read(out.join(CYCLONEDX_FILE)).unwrap()).unwrap();
    assert_eq!(
        cdx.metadata.component.version.as_deref(),
        Some(format!("sha256:{hex}").as_str())
    );
    assert_eq!(cdx.dependencies[0].depends_on.len(), 3);
    assert_eq!(
        spdx.has_extracted_licensing_infos[0].license_id,
        "LicenseRef-glibc-other"
    );
}

#[test]
fn a_doc_directory_symlink_gives_the_license_of_the_package_behind_it() {
    let root = scratch("image-doc-link");
    let mut layers = standard_layers(&root, "amd64");
    let tinfo = layer_dir(
        &root,
        "tinfo",
        &[Pkg {
            license: "X11",
            ..pkg(
                "libtinfo6",
                "6.4-4",
                "amd64",
                vec![("/usr/share/doc/libtinfo6/copyright", Some(b"Format: x"))],
            )
        }],
        None,
    );
    let ncurses = layer_dir(
        &root,
        "ncurses",
        &[Pkg {
            license: "NOASSERTION",
            ..pkg(
                "libncursesw6",
                "6.4-4",
                "amd64",
                vec![("/usr/lib/libncursesw.so.6", Some(b"elf"))],
            )
        }],
        None,
    );
    // The layer step lists the doc directory symlink among the files.
    let info_path = ncurses.join("layer.json");
    let mut info: LayerInfo = serde_json::from_slice(&fs::read(&info_path).unwrap()).unwrap();
    info.packages[0].files.push(FileInfo {
        path: "/usr/share/doc/libncursesw6".into(),
        file_type: FileType::Symlink,
        mode: 0o777,
        uid: 0,
        gid: 0,
        size: None,
        sha256: None,
        sha1: None,
        md5: None,
        target: Some("libtinfo6".into()),
    });
    info.packages[0].copyright_text = "NOASSERTION".into();
    fs::write(&info_path, json::pretty(&info)).unwrap();
    layers.extend([tinfo, ncurses]);
    let out = root.join("out");
    let s = build(&input(definition(), None, Arch::Amd64, layers), &out).unwrap();

    let spdx: sbom::spdx::Document =
        serde_json::from_slice(&fs::read(out.join(SPDX_FILE)).unwrap()).unwrap();
    let ncurses = spdx
        .packages
        .iter()
        .find(|p| p.name == "libncursesw6")
        .unwrap();
    assert_eq!(ncurses.license_declared, "X11");
    assert_eq!(ncurses.copyright_text, "Copyright 1991 Someone");
    let comment = ncurses.license_comments.as_deref().unwrap();
    assert!(
        comment.contains("/usr/share/doc/libtinfo6/copyright"),
        "{comment}"
    );
    let cdx: sbom::cyclonedx::Bom =
        serde_json::from_slice(&fs::read(out.join(CYCLONEDX_FILE)).unwrap()).unwrap();
    let c = cdx
        .components
        .iter()
        .find(|c| c.name == "libncursesw6")
        .unwrap();
    assert!(!c.licenses.is_empty());
    // The package that ships the file keeps its own statement.
    let tinfo = spdx
        .packages
        .iter()
        .find(|p| p.name == "libtinfo6")
        .unwrap();
    assert_eq!(
        (
            tinfo.license_declared.as_str(),
            tinfo.license_comments.as_deref()
        ),
        ("X11", None)
    );
    assert!(s.annotations[ANNOTATION_LICENSES].contains("X11"));
}
