//! Synthesized layouts that differ in exactly one thing each: the diff
//! must name that thing and nothing else.

use super::*;
use kiln_seed::oci::{
    LayoutWriter, CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
    REF_NAME,
};
use kiln_seed::spec::Arch;
use kiln_seed::tarwrite::{write_layer, Entry};
use serde_json::json;

/// One package layer: its files and its dpkg status stanza.
fn package(name: &str, version: &str, files: Vec<Entry>) -> (String, Vec<Entry>) {
    let mut entries = files;
    entries.push(Entry::directory("var", 0o755, 0, 0, 1));
    entries.push(Entry::directory("var/lib", 0o755, 0, 0, 1));
    entries.push(Entry::directory("var/lib/dpkg", 0o755, 0, 0, 1));
    entries.push(Entry::directory("var/lib/dpkg/status.d", 0o755, 0, 0, 1));
    entries.push(Entry::file(
        format!("var/lib/dpkg/status.d/{name}"),
        format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\n").into_bytes(),
        0o644,
        0,
        0,
        1,
    ));
    (format!("kiln: {name}={version}"), entries)
}

#[derive(Clone)]
struct Spec {
    layers: Vec<(String, Vec<Entry>)>,
    env: Vec<String>,
    annotations: BTreeMap<String, String>,
    archs: Vec<Arch>,
    gzip_level: Option<u32>,
}

fn base() -> Spec {
    Spec {
        layers: vec![
            package(
                "ca-certificates",
                "20230311+deb12u1",
                vec![
                    Entry::directory("etc", 0o755, 0, 0, 1),
                    Entry::directory("etc/ssl", 0o755, 0, 0, 1),
                    Entry::file("etc/ssl/x.pem", b"cert one\n".to_vec(), 0o644, 0, 0, 1),
                ],
            ),
            package(
                "netbase",
                "6.4",
                vec![
                    Entry::directory("etc", 0o755, 0, 0, 1),
                    Entry::file("etc/services", b"http 80/tcp\n".to_vec(), 0o644, 0, 0, 1),
                ],
            ),
            (
                "kiln: generated files".into(),
                vec![
                    Entry::directory("etc", 0o755, 0, 0, 2),
                    Entry::file(
                        "etc/passwd",
                        b"root:x:0:0::/root:/sbin/nologin\n".to_vec(),
                        0o644,
                        0,
                        0,
                        2,
                    ),
                    Entry::directory("tmp", 0o1777, 0, 0, 2),
                ],
            ),
        ],
        env: vec!["PATH=/usr/bin:/bin".into()],
        annotations: BTreeMap::from([("org.opencontainers.image.title".into(), "t".into())]),
        archs: vec![Arch::Amd64, Arch::Arm64],
        gzip_level: None,
    }
}

fn gz(entries: Vec<Entry>, level: Option<u32>) -> (Vec<u8>, Digest) {
    let blob = write_layer(entries).unwrap();
    match level {
        None => (blob.bytes, blob.diff_id),
        Some(l) => {
            use std::io::{Read, Write};
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(blob.bytes.as_slice())
                .read_to_end(&mut tar)
                .unwrap();
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(l));
            e.write_all(&tar).unwrap();
            (e.finish().unwrap(), blob.diff_id)
        }
    }
}

/// A kiln-shaped multi-platform layout: index.json → image index → manifests.
fn write(dir: &Path, spec: &Spec) -> PathBuf {
    let root = dir.to_path_buf();
    let w = LayoutWriter::create(&root).unwrap();
    let mut manifests = Vec::new();
    for arch in &spec.archs {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for (created_by, entries) in &spec.layers {
            let (bytes, diff_id) = gz(entries.clone(), spec.gzip_level);
            let d = w.put_blob(&bytes).unwrap();
            descs.push(oci::descriptor(LAYER_MEDIA_TYPE, &d, bytes.len() as u64));
            diff_ids.push(diff_id.to_string());
            history.push(json!({"created": "2026-07-11T10:16:37Z", "created_by": created_by}));
        }
        let config = json!({
            "architecture": arch.debian(),
            "os": "linux",
            "created": "2026-07-11T10:16:37Z",
            "config": {"Env": spec.env, "User": "65532:65532", "Labels": spec.annotations},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        let (config_desc, _) = w.put_document(CONFIG_MEDIA_TYPE, &config).unwrap();
        let manifest = oci::new_manifest(config_desc, descs, &spec.annotations);
        let (mut desc, _) = w.put_document(MANIFEST_MEDIA_TYPE, &manifest).unwrap();
        desc.set_platform(Some(oci::platform(*arch)));
        manifests.push(desc);
    }
    let index = oci::new_index(manifests.clone(), &BTreeMap::new());
    let (mut top, _) = w.put_document(INDEX_MEDIA_TYPE, &index).unwrap();
    oci::set_annotations(
        &mut top,
        &BTreeMap::from([(REF_NAME.to_string(), "latest".to_string())]),
    );
    let mut entries = vec![top];
    for (m, arch) in manifests.iter().zip(&spec.archs) {
        let mut d = m.clone();
        oci::set_annotations(
            &mut d,
            &BTreeMap::from([(REF_NAME.to_string(), format!("latest-{}", arch.debian()))]),
        );
        entries.push(d);
    }
    w.write_index(entries).unwrap();
    root
}

fn compare(a: &Spec, b: &Spec) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let pa = write(&dir.path().join("a"), a);
    let pb = write(&dir.path().join("b"), b);
    let ia = Image::open(pa.to_str().unwrap()).unwrap();
    let ib = Image::open(pb.to_str().unwrap()).unwrap();
    diff(&ia, &ib).unwrap()
}

fn texts(r: &Report) -> Vec<String> {
    r.differences.iter().map(|d| d.text.clone()).collect()
}

#[test]
fn the_same_image_written_twice_is_identical() {
    let r = compare(&base(), &base());
    assert!(r.identical, "{:#?}", texts(&r));
    assert!(r.differences.is_empty());
    assert_eq!(r.a.platforms, vec!["amd64", "arm64"]);
}

#[test]
fn a_file_mode_is_the_only_difference() {
    let mut b = base();
    b.layers[2].1[2].mode = 0o0777;
    let r = compare(&base(), &b);
    assert!(!r.identical);
    assert_eq!(
        texts(&r),
        vec![
            "amd64: layer 3 (generated files): /tmp: mode 1777 → 0777",
            "arm64: layer 3 (generated files): /tmp: mode 1777 → 0777",
        ]
    );
    assert_eq!(r.differences[0].kind, Kind::FileMode);
    assert_eq!(r.differences[0].path.as_deref(), Some("/tmp"));
}

#[test]
fn an_env_var_is_the_only_difference() {
    let mut b = base();
    b.env.push("FOO=bar".into());
    let r = compare(&base(), &b);
    assert_eq!(
        texts(&r),
        vec![
            "amd64: config.Env: + FOO=bar",
            "arm64: config.Env: + FOO=bar"
        ]
    );
    assert_eq!(r.differences[0].kind, Kind::ConfigEntry);
    assert_eq!(r.layers_read, 0, "no layer differs, none is read");
}

#[test]
fn a_package_version_names_the_package_its_files_and_its_history() {
    let mut b = base();
    b.layers[0] = package(
        "ca-certificates",
        "20250419~deb12u2",
        vec![
            Entry::directory("etc", 0o755, 0, 0, 1),
            Entry::directory("etc/ssl", 0o755, 0, 0, 1),
            Entry::file("etc/ssl/x.pem", b"cert two\n".to_vec(), 0o644, 0, 0, 1),
        ],
    );
    b.archs = vec![Arch::Amd64];
    let mut a = base();
    a.archs = vec![Arch::Amd64];
    let r = compare(&a, &b);
    let t = texts(&r);
    assert_eq!(t.len(), 4, "{t:#?}");
    assert!(
        t[0].starts_with(
            "amd64: layer 1 (ca-certificates): /etc/ssl/x.pem: content 9 bytes sha256:"
        ),
        "{t:#?}"
    );
    assert!(
        t[1].starts_with(
            "amd64: layer 1 (ca-certificates): /var/lib/dpkg/status.d/ca-certificates: content"
        ),
        "{t:#?}"
    );
    assert_eq!(
        t[2],
        "amd64: layer 1 (ca-certificates): history.created_by: \"kiln: ca-certificates=20230311+deb12u1\" → \"kiln: ca-certificates=20250419~deb12u2\""
    );
    assert_eq!(
        t[3],
        "amd64: packages: ca-certificates 20230311+deb12u1 → 20250419~deb12u2"
    );
    assert_eq!(r.differences[3].kind, Kind::Package);
    assert_eq!(r.differences[3].field.as_deref(), Some("ca-certificates"));
}

#[test]
fn a_layer_order_is_the_only_difference() {
    let mut b = base();
    b.layers.swap(0, 1);
    let r = compare(&base(), &b);
    assert_eq!(
        texts(&r),
        vec![
            "amd64: layers: order 1 ca-certificates, 2 netbase, 3 generated files → 1 netbase, 2 ca-certificates, 3 generated files",
            "arm64: layers: order 1 ca-certificates, 2 netbase, 3 generated files → 1 netbase, 2 ca-certificates, 3 generated files",
        ]
    );
    assert_eq!(r.layers_read, 0);
}

#[test]
fn a_platform_removed_is_named_at_the_index() {
    let mut b = base();
    b.archs = vec![Arch::Amd64];
    let r = compare(&base(), &b);
    assert_eq!(texts(&r), vec!["index: - platform arm64"]);
}

#[test]
fn annotations_are_named_by_key() {
    let mut b = base();
    b.annotations
        .insert("org.opencontainers.image.title".into(), "u".into());
    b.archs = vec![Arch::Amd64];
    let mut a = base();
    a.archs = vec![Arch::Amd64];
    let r = compare(&a, &b);
    assert_eq!(
        texts(&r),
        vec![
            "amd64: annotations: org.opencontainers.image.title: t → u",
            "amd64: config.Labels: org.opencontainers.image.title: t → u",
        ]
    );
}

#[test]
fn recompression_is_named_as_such() {
    let mut b = base();
    b.gzip_level = Some(1);
    b.archs = vec![Arch::Amd64];
    let mut a = base();
    a.archs = vec![Arch::Amd64];
    let r = compare(&a, &b);
    let kinds: Vec<Kind> = r.differences.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, vec![Kind::LayerCompression; 3], "{:#?}", texts(&r));
}

#[test]
fn a_layer_added_lists_its_packages() {
    let mut b = base();
    b.layers.insert(
        2,
        package(
            "tzdata",
            "2026f-0+deb12u1",
            vec![Entry::file(
                "etc/timezone",
                b"Etc/UTC\n".to_vec(),
                0o644,
                0,
                0,
                1,
            )],
        ),
    );
    b.archs = vec![Arch::Amd64];
    let mut a = base();
    a.archs = vec![Arch::Amd64];
    let r = compare(&a, &b);
    let t = texts(&r);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert!(
        t[0].starts_with("amd64: layer 3 (tzdata): added ("),
        "{t:#?}"
    );
    assert!(t[0].contains("packages tzdata 2026f-0+deb12u1"), "{t:#?}");
    assert_eq!(t[1], "amd64: packages: + tzdata 2026f-0+deb12u1");
}

#[test]
fn tags_select_images_and_bad_references_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir.path().join("a"), &base());
    let amd = Image::open(&format!("{}:latest-amd64", p.display())).unwrap();
    assert!(amd.index.is_none());
    assert_eq!(amd.platforms.len(), 1);
    let both = Image::open(p.to_str().unwrap()).unwrap();
    let r = diff(&amd, &both).unwrap();
    assert_eq!(
        texts(&r),
        vec![
            "index: single manifest → image index",
            "index: + platform arm64"
        ]
    );
    let e = Image::open(&format!("{}:nope", p.display()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image tagged \"nope\"") && e.contains("latest-arm64"),
        "{e}"
    );
    let e = Image::open(dir.path().to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an OCI image layout"), "{e}");
}

#[test]
fn a_tampered_blob_is_an_error_not_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let pa = write(&dir.path().join("a"), &base());
    let mut b = base();
    b.layers[1].1[1].mode = 0o600;
    let pb = write(&dir.path().join("b"), &b);
    let ib = Image::open(pb.to_str().unwrap()).unwrap();
    let layer = &ib.platforms[0].layers[1];
    let path = ib.layout.blob_path(&layer.desc.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let ia = Image::open(pa.to_str().unwrap()).unwrap();
    let e = diff(&ia, &ib).unwrap_err().to_string();
    assert!(e.contains(&layer.desc.digest.to_string()), "{e}");
}

#[test]
fn a_new_package_layer_is_not_mistaken_for_an_old_one() {
    // B merges netbase into the ca-certificates layer and adds tzdata: the
    // tzdata layer shares directories with netbase's, but no package.
    let mut a = base();
    a.archs = vec![Arch::Amd64];
    let mut b = a.clone();
    let mut merged = b.layers[0].1.clone();
    let extra: Vec<Entry> = b.layers[1]
        .1
        .iter()
        .filter(|e| !merged.iter().any(|m| m.path == e.path))
        .cloned()
        .collect();
    merged.extend(extra);
    b.layers[0] = (
        "kiln: ca-certificates=20230311+deb12u1 netbase=6.4".into(),
        merged,
    );
    b.layers[1] = package(
        "tzdata",
        "2026f-0+deb12u1",
        vec![
            Entry::directory("etc", 0o755, 0, 0, 1),
            Entry::file("etc/timezone", b"Etc/UTC\n".to_vec(), 0o644, 0, 0, 1),
        ],
    );
    let r = compare(&a, &b);
    let kinds: Vec<Kind> = r.differences.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&Kind::LayerAdded), "{:#?}", texts(&r));
    assert!(kinds.contains(&Kind::LayerRemoved), "{:#?}", texts(&r));
    assert!(!kinds.contains(&Kind::LayerOrder), "{:#?}", texts(&r));
    let t = texts(&r);
    assert!(
        t.iter()
            .any(|l| l.starts_with("amd64: layer 2 (tzdata): added")),
        "{t:#?}"
    );
    assert!(
        t.iter()
            .any(|l| l.starts_with("amd64: layer 2 (netbase): removed")),
        "{t:#?}"
    );
    assert_eq!(
        t.iter()
            .filter(|l| l.starts_with("amd64: packages:"))
            .collect::<Vec<_>>(),
        vec!["amd64: packages: + tzdata 2026f-0+deb12u1"]
    );
}
