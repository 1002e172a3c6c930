use super::*;
use crate::deb::fixtures::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary directory removed on drop.
struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "kiln-layer-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A package for the input: writes the .deb and fills in its digest.
fn pkg(tmp: &Tmp, name: &str, version: &str, arch: &str, deb: &[u8]) -> PackageInput {
    let path = tmp.0.join(format!("{name}_{version}_{arch}.deb"));
    std::fs::write(&path, deb).unwrap();
    PackageInput {
        name: name.into(),
        version: version.into(),
        architecture: arch.into(),
        source: name.into(),
        source_version: version.into(),
        suite: "bookworm".into(),
        filename: format!(
            "pool/main/{}/{name}/{name}_{version}_{arch}.deb",
            &name[..1]
        ),
        sha256: Digest::of(deb).hex(),
        size: deb.len() as u64,
        deb: path,
    }
}

fn input(packages: Vec<PackageInput>) -> LayerInput {
    LayerInput {
        arch: "amd64".into(),
        packages,
        exclude_paths: vec![],
        default_excludes: true,
        compression: LayerCompression::Gzip,
    }
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
    Files: *\nCopyright: 2020 Hello Authors\nLicense: GPL-2+\n\nFiles: debian/*\nCopyright: 2021 Debian\nLicense: Expat\n";

/// A typical package: binary, docs, man page, copyright, hard link.
fn hello_data() -> Vec<Fx> {
    vec![
        dir("./"),
        dir("./usr/"),
        dir("./usr/bin/"),
        Fx {
            mode: 0o755,
            ..file("./usr/bin/hello", b"\x7fELF hello")
        },
        hardlink("./usr/bin/hi", "./usr/bin/hello"),
        dir("./usr/share/"),
        dir("./usr/share/doc/"),
        dir("./usr/share/doc/hello/"),
        file("./usr/share/doc/hello/copyright", COPYRIGHT.as_bytes()),
        Fx {
            mtime: 1_700_000_500,
            ..file("./usr/share/doc/hello/changelog.Debian.gz", b"changes")
        },
        dir("./usr/share/man/"),
        dir("./usr/share/man/man1/"),
        file("./usr/share/man/man1/hello.1.gz", b"man"),
        symlink("./usr/bin/hey", "hello"),
    ]
}

fn md5(d: &[u8]) -> String {
    hex::encode(Md5::digest(d))
}

fn hello_md5sums() -> String {
    format!(
        "{}  usr/bin/hello\n{}  usr/bin/hi\n{}  usr/share/doc/hello/copyright\n{}  usr/share/doc/hello/changelog.Debian.gz\n{}  usr/share/man/man1/hello.1.gz\n",
        md5(b"\x7fELF hello"),
        md5(b"\x7fELF hello"),
        md5(COPYRIGHT.as_bytes()),
        md5(b"changes"),
        md5(b"man")
    )
}

fn hello_deb(comp: Comp) -> Vec<u8> {
    deb(
        &control("hello", "2.10-3", "amd64"),
        Some(&hello_md5sums()),
        &hello_data(),
        comp,
    )
}

/// (path, type, mode, mtime, content or link target) of every entry.
fn tar_listing(gz: &[u8]) -> Vec<(String, char, u32, u64, Vec<u8>)> {
    crate::tarlist::list(gz)
        .unwrap()
        .into_iter()
        .map(|e| {
            let data = e.link.map_or(e.data, String::into_bytes);
            (
                e.raw_path,
                e.entry_type.as_byte() as char,
                e.mode,
                e.mtime,
                data,
            )
        })
        .collect()
}

fn paths(out: &LayerOutput) -> Vec<String> {
    tar_listing(&out.blob.bytes)
        .into_iter()
        .map(|e| e.0)
        .collect()
}

fn content(out: &LayerOutput, path: &str) -> String {
    let e = tar_listing(&out.blob.bytes)
        .into_iter()
        .find(|e| e.0 == path)
        .unwrap_or_else(|| panic!("{path} missing"));
    String::from_utf8(e.4).unwrap()
}

fn build_err(i: &LayerInput) -> String {
    let e = build(i).unwrap_err();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

#[test]
fn a_package_becomes_a_layer_with_every_compression() {
    let tmp = Tmp::new();
    let mut digests = BTreeSet::new();
    for comp in [Comp::None, Comp::Gz, Comp::Xz, Comp::Zst] {
        let out = build(&input(vec![pkg(
            &tmp,
            "hello",
            "2.10-3",
            "amd64",
            &hello_deb(comp),
        )]))
        .unwrap();
        assert_eq!(
            paths(&out),
            [
                "usr/",
                "usr/bin/",
                "usr/bin/hello",
                "usr/bin/hey",
                "usr/bin/hi",
                "usr/share/",
                "usr/share/doc/",
                "usr/share/doc/hello/",
                "usr/share/doc/hello/copyright",
                "var/",
                "var/lib/",
                "var/lib/dpkg/",
                "var/lib/dpkg/status.d/",
                "var/lib/dpkg/status.d/hello",
                "var/lib/dpkg/status.d/hello.md5sums",
            ],
            "{comp:?}"
        );
        digests.insert(out.blob.digest);
    }
    // The layer depends on the contents, not on the .deb's compression.
    assert_eq!(digests.len(), 1);
}

#[test]
fn status_and_md5sums_describe_what_is_in_the_layer() {
    let tmp = Tmp::new();
    let out = build(&input(vec![pkg(
        &tmp,
        "hello",
        "2.10-3",
        "amd64",
        &hello_deb(Comp::Xz),
    )]))
    .unwrap();
    assert_eq!(
        content(&out, "var/lib/dpkg/status.d/hello"),
        "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\nMaintainer: Test <t@example.org>\n\
         Installed-Size: 12\nHomepage: https://example.org/hello\nDescription: test package hello\n a longer\n .\n description\n"
    );
    // Restricted to the files present, in the .deb's order.
    assert_eq!(
        content(&out, "var/lib/dpkg/status.d/hello.md5sums"),
        format!(
            "{}  usr/bin/hello\n{}  usr/bin/hi\n{}  usr/share/doc/hello/copyright\n",
            md5(b"\x7fELF hello"),
            md5(b"\x7fELF hello"),
            md5(COPYRIGHT.as_bytes())
        )
    );
    // Generated entries carry the package's newest mtime, not a clock.
    let listing = tar_listing(&out.blob.bytes);
    for (p, _, mode, mtime, _) in &listing {
        if p.starts_with("var/") {
            assert_eq!(*mtime, 1_700_000_500, "{p}");
            assert_eq!(*mode, if p.ends_with('/') { 0o755 } else { 0o644 }, "{p}");
        }
    }
    let hello = listing.iter().find(|e| e.0 == "usr/bin/hello").unwrap();
    assert_eq!((hello.1, hello.2, hello.3), ('0', 0o755, 1_700_000_000));
    let hi = listing.iter().find(|e| e.0 == "usr/bin/hi").unwrap();
    assert_eq!((hi.1, hi.4.as_slice()), ('1', b"usr/bin/hello".as_slice()));
}

#[test]
fn a_zstd_layer_is_written_as_layer_tar_zst_with_the_same_tar() {
    let tmp = Tmp::new();
    let mut zstd = input(vec![pkg(
        &tmp,
        "hello",
        "2.10-3",
        "amd64",
        &hello_deb(Comp::Gz),
    )]);
    let gzip = build(&zstd).unwrap();
    zstd.compression = LayerCompression::Zstd;
    let json = serde_json::json!({
        "arch": "amd64",
        "packages": [serde_json::json!({
            "name": zstd.packages[0].name, "version": zstd.packages[0].version,
            "architecture": zstd.packages[0].architecture, "source": zstd.packages[0].source,
            "sourceVersion": zstd.packages[0].source_version, "suite": zstd.packages[0].suite,
            "filename": zstd.packages[0].filename, "sha256": zstd.packages[0].sha256,
            "size": zstd.packages[0].size, "deb": zstd.packages[0].deb,
        })],
        "defaultExcludes": true,
        "compression": "zstd",
    });
    let out = tmp.0.join("out");
    run(json.to_string().as_bytes(), &out).unwrap();
    assert!(!out.join("layer.tar.gz").exists());
    let blob = std::fs::read(out.join("layer.tar.zst")).unwrap();
    let info: LayerInfo =
        serde_json::from_slice(&std::fs::read(out.join("layer.json")).unwrap()).unwrap();
    assert_eq!(info.media_type, crate::layerinfo::LAYER_MEDIA_TYPE_ZSTD);
    assert_eq!(info.digest, Digest::of(&blob));
    assert_eq!(info.size, blob.len() as u64);
    // The same tar as the gzip layer, only compressed otherwise.
    assert_eq!(info.diff_id, gzip.info.diff_id);
    assert_eq!(info.packages, gzip.info.packages);
    assert_eq!(build(&zstd).unwrap().blob.bytes, blob);
}

#[test]
fn layer_json_describes_the_package() {
    let tmp = Tmp::new();
    let out = build(&input(vec![pkg(
        &tmp,
        "hello",
        "2.10-3",
        "amd64",
        &hello_deb(Comp::Gz),
    )]))
    .unwrap();
    let info = &out.info;
    assert_eq!(info.digest, Digest::of(&out.blob.bytes));
    assert_eq!(info.size, out.blob.bytes.len() as u64);
    assert_eq!(info.media_type, crate::layerinfo::LAYER_MEDIA_TYPE);
    let p = &info.packages[0];
    assert_eq!(p.summary.as_deref(), Some("test package hello"));
    assert_eq!(p.maintainer.as_deref(), Some("Test <t@example.org>"));
    assert_eq!(p.installed_size, Some(12));
    assert_eq!(p.license, "GPL-2.0-or-later AND MIT");
    assert_eq!(p.copyright_text, "2020 Hello Authors\n2021 Debian");
    let files: Vec<_> = p
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.file_type, f.target.as_deref()))
        .collect();
    assert_eq!(
        files,
        [
            ("/usr", FileType::Directory, None),
            ("/usr/bin", FileType::Directory, None),
            ("/usr/bin/hello", FileType::File, None),
            ("/usr/bin/hey", FileType::Symlink, Some("hello")),
            ("/usr/bin/hi", FileType::Hardlink, Some("/usr/bin/hello")),
            ("/usr/share", FileType::Directory, None),
            ("/usr/share/doc", FileType::Directory, None),
            ("/usr/share/doc/hello", FileType::Directory, None),
            ("/usr/share/doc/hello/copyright", FileType::File, None),
        ]
    );
    let f = &p.files[2];
    assert_eq!(f.size, Some(10));
    assert_eq!(f.md5.as_deref(), Some(md5(b"\x7fELF hello").as_str()));
    assert_eq!(
        f.sha256.as_deref(),
        Some(Digest::of(b"\x7fELF hello").hex().as_str())
    );
    assert_eq!(f.sha1.as_deref().map(str::len), Some(40));
    // layer.json round-trips through its own type.
    let bytes = json::pretty(info);
    let back: LayerInfo = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&back, info);
}

#[test]
fn md5sums_are_computed_when_the_deb_has_none() {
    let tmp = Tmp::new();
    let d = deb(
        &control("hello", "2.10-3", "amd64"),
        None,
        &hello_data(),
        Comp::Gz,
    );
    let out = build(&input(vec![pkg(&tmp, "hello", "2.10-3", "amd64", &d)])).unwrap();
    assert_eq!(
        content(&out, "var/lib/dpkg/status.d/hello.md5sums"),
        format!(
            "{}  usr/bin/hello\n{}  usr/bin/hi\n{}  usr/share/doc/hello/copyright\n",
            md5(b"\x7fELF hello"),
            md5(b"\x7fELF hello"),
            md5(COPYRIGHT.as_bytes())
        )
    );
}

#[test]
fn a_wrong_md5sums_line_is_an_error() {
    let tmp = Tmp::new();
    let sums = hello_md5sums()
        .replace(&md5(b"man"), &md5(b"other"))
        .replace(&md5(COPYRIGHT.as_bytes()), &md5(b"x"));
    let d = deb(
        &control("hello", "2.10-3", "amd64"),
        Some(&sums),
        &hello_data(),
        Comp::Gz,
    );
    let e = build_err(&input(vec![pkg(&tmp, "hello", "2.10-3", "amd64", &d)]));
    assert!(
        e.contains("usr/share/doc/hello/copyright") && e.contains("hello 2.10-3 (amd64)"),
        "{e}"
    );
}

#[test]
fn exclusions_keep_copyright_parents_and_hard_link_groups() {
    let tmp = Tmp::new();
    let data = vec![
        dir("./usr/"),
        dir("./usr/share/"),
        dir("./usr/share/doc/"),
        dir("./usr/share/doc/xx/"),
        file("./usr/share/doc/xx/copyright", b"free text"),
        file("./usr/share/doc/xx/README", b"readme"),
        dir("./usr/share/doc/xx/examples/"),
        file("./usr/share/doc/xx/examples/a", b"a"),
        symlink("./usr/share/doc/xx-extra", "xx"),
        dir("./usr/share/info/"),
        file("./usr/share/info/x.info.gz", b"info"),
        dir("./usr/lib/"),
        dir("./usr/lib/x/"),
        file("./usr/lib/x/big.dat", b"data"),
        hardlink("./usr/lib/x/same.dat", "./usr/lib/x/big.dat"),
        hardlink("./usr/lib/x/also.dat", "./usr/lib/x/big.dat"),
        dir("./usr/lib/x/plugins/"),
        file("./usr/lib/x/plugins/keep.so", b"so"),
        file("./usr/lib/x/plugins/drop.a", b"ar"),
    ];
    let d = deb(&control("xx", "1", "all"), None, &data, Comp::Gz);
    let mut i = input(vec![pkg(&tmp, "xx", "1", "all", &d)]);
    i.exclude_paths = vec![
        "/usr/lib/x/big.dat".into(),
        "/usr/lib/x/*.a".into(),
        "/usr/lib/x/plugins/*.a".into(),
    ];
    let out = build(&i).unwrap();
    let listing = tar_listing(&out.blob.bytes);
    let got: Vec<(&str, char)> = listing
        .iter()
        .filter(|e| !e.0.starts_with("var/"))
        .map(|e| (e.0.as_str(), e.1))
        .collect();
    assert_eq!(
        got,
        [
            ("usr/", '5'),
            ("usr/lib/", '5'),
            ("usr/lib/x/", '5'),
            ("usr/lib/x/also.dat", '0'),
            ("usr/lib/x/plugins/", '5'),
            ("usr/lib/x/plugins/keep.so", '0'),
            ("usr/lib/x/same.dat", '1'),
            ("usr/share/", '5'),
            ("usr/share/doc/", '5'),
            ("usr/share/doc/xx/", '5'),
            ("usr/share/doc/xx-extra", '2'),
            ("usr/share/doc/xx/copyright", '0'),
        ]
    );
    assert_eq!(
        listing
            .iter()
            .find(|e| e.0 == "usr/lib/x/also.dat")
            .unwrap()
            .4,
        b"data"
    );
    assert_eq!(
        listing
            .iter()
            .find(|e| e.0 == "usr/lib/x/same.dat")
            .unwrap()
            .4,
        b"usr/lib/x/also.dat"
    );
    // The copyright file is not machine-readable: no license invented.
    assert_eq!(out.info.packages[0].license, "NOASSERTION");
    let files = &out.info.packages[0].files;
    let same = files
        .iter()
        .find(|f| f.path == "/usr/lib/x/same.dat")
        .unwrap();
    assert_eq!(same.target.as_deref(), Some("/usr/lib/x/also.dat"));
    let doc_link = files
        .iter()
        .find(|f| f.path == "/usr/share/doc/xx-extra")
        .unwrap();
    assert_eq!(
        (doc_link.file_type, doc_link.target.as_deref()),
        (FileType::Symlink, Some("xx"))
    );

    // Without the defaults, documentation stays.
    i.default_excludes = false;
    let out = build(&i).unwrap();
    assert!(paths(&out).contains(&"usr/share/info/x.info.gz".to_string()));
    assert!(paths(&out).contains(&"usr/share/doc/xx/examples/a".to_string()));
}

#[test]
fn bad_patterns_are_refused() {
    assert!(Excludes::new(&["usr/lib/**".into()], true).is_err());
    assert!(Excludes::new(&["/usr/[".into()], true).is_err());
    let ex = Excludes::new(&[], true).unwrap();
    assert!(ex.excluded("usr/share/man", true));
    assert!(!ex.excluded("usr/share/man", false));
    assert!(ex.excluded("usr/share/doc/a/changelog.gz", false));
    assert!(!ex.excluded("usr/share/doc/a/copyright", false));
    assert!(ex.excluded("usr/share/doc/a/b/copyright", false));
    // A doc directory that is a symlink stays; a real one only as a parent.
    assert!(!ex.excluded("usr/share/doc/libncursesw6", false));
    assert!(ex.excluded("usr/share/doc/a", true));
    assert!(!ex.excluded("usr/share/manx", false));
}

fn one_bad(data: Vec<Fx>) -> String {
    let tmp = Tmp::new();
    let d = deb(&control("evil", "6.6.6", "amd64"), None, &data, Comp::Gz);
    let e = build_err(&input(vec![pkg(&tmp, "evil", "6.6.6", "amd64", &d)]));
    assert!(e.contains("evil 6.6.6 (amd64)"), "{e}");
    e
}

#[test]
fn hostile_entries_are_errors_naming_package_and_path() {
    let e = one_bad(vec![
        dir("./"),
        file("./../../etc/cron.d/x", b"* * * * * root sh"),
    ]);
    assert!(e.contains("../../etc/cron.d/x"), "{e}");
    let e = one_bad(vec![file("/etc/shadow", b"root::0:")]);
    assert!(e.contains("/etc/shadow") && e.contains("absolute"), "{e}");
    let e = one_bad(vec![
        dir("./usr/"),
        dir("./usr/lib/"),
        symlink("./usr/lib/x", "../../../../etc/shadow"),
    ]);
    assert!(e.contains("usr/lib/x") && e.contains("outside"), "{e}");
    let e = one_bad(vec![dir("./dev/"), special("./dev/sda", b'4')]);
    assert!(e.contains("dev/sda") && e.contains("block device"), "{e}");
    let e = one_bad(vec![
        dir("./usr/"),
        symlink("./usr/lib", "/etc"),
        file("./usr/lib/passwd", b"x"),
    ]);
    assert!(e.contains("usr/lib/passwd") && e.contains("through"), "{e}");
    let e = one_bad(vec![dir("./usr/"), hardlink("./usr/x", "./usr/missing")]);
    assert!(e.contains("usr/x") && e.contains("usr/missing"), "{e}");
}

#[test]
fn a_deb_with_other_bytes_than_locked_is_refused() {
    let tmp = Tmp::new();
    let mut p = pkg(&tmp, "hello", "2.10-3", "amd64", &hello_deb(Comp::Gz));
    let good = p.sha256.clone();
    p.sha256 = "0".repeat(64);
    let e = build_err(&input(vec![p.clone()]));
    assert!(
        e.contains("hello 2.10-3 (amd64)")
            && e.contains("sha256 mismatch")
            && e.contains(&good)
            && e.contains(&"0".repeat(64)),
        "{e}"
    );
    p.sha256 = good;
    p.size += 1;
    let e = build_err(&input(vec![p]));
    assert!(e.contains("size mismatch"), "{e}");
}

#[test]
fn a_deb_that_is_another_package_is_refused() {
    let tmp = Tmp::new();
    let d = deb(
        &control("hello", "2.10-3", "amd64"),
        None,
        &hello_data(),
        Comp::Gz,
    );
    let p = pkg(&tmp, "bash", "2.10-3", "amd64", &d);
    let e = build_err(&input(vec![p]));
    assert!(
        e.contains("Package: \"hello\"") && e.contains("\"bash\""),
        "{e}"
    );
    let p = pkg(&tmp, "hello", "2.10-4", "amd64", &d);
    assert!(build_err(&input(vec![p])).contains("Version"));
    let d = deb(
        &control("hello", "2.10-3", "arm64"),
        None,
        &hello_data(),
        Comp::Gz,
    );
    let p = pkg(&tmp, "hello", "2.10-3", "amd64", &d);
    assert!(build_err(&input(vec![p])).contains("Architecture"));
}

#[test]
fn merged_layers_refuse_collisions_naming_both_packages() {
    let tmp = Tmp::new();
    let a = deb(
        &control("aaa", "1", "amd64"),
        None,
        &[dir("./etc/"), file("./etc/conf", b"a")],
        Comp::Gz,
    );
    let b = deb(
        &control("bbb", "2", "all"),
        None,
        &[dir("./etc/"), file("./etc/conf", b"b")],
        Comp::Xz,
    );
    let e = build_err(&input(vec![
        pkg(&tmp, "bbb", "2", "all", &b),
        pkg(&tmp, "aaa", "1", "amd64", &a),
    ]));
    assert!(
        e.contains("/etc/conf") && e.contains("aaa 1 (amd64)") && e.contains("bbb 2 (amd64)"),
        "{e}"
    );
    // Same directory, different owner.
    let b = deb(
        &control("bbb", "2", "all"),
        None,
        &[Fx {
            gid: 42,
            ..dir("./etc/")
        }],
        Comp::Xz,
    );
    let e = build_err(&input(vec![
        pkg(&tmp, "bbb", "2", "all", &b),
        pkg(&tmp, "aaa", "1", "amd64", &a),
    ]));
    assert!(e.contains("directory /etc") && e.contains("0:42"), "{e}");
    // A file of one package below another's symlink.
    let b = deb(
        &control("bbb", "2", "all"),
        None,
        &[symlink("./lib", "usr/lib")],
        Comp::Xz,
    );
    let c = deb(
        &control("ccc", "3", "all"),
        None,
        &[file("./lib/x", b"x")],
        Comp::Xz,
    );
    let e = build_err(&input(vec![
        pkg(&tmp, "bbb", "2", "all", &b),
        pkg(&tmp, "ccc", "3", "all", &c),
    ]));
    assert!(
        e.contains("ccc 3 (amd64)") && e.contains("lib/x") && e.contains("through"),
        "{e}"
    );
}

#[test]
fn merged_layers_share_directories_and_list_every_package() {
    let tmp = Tmp::new();
    let a = deb(
        &control("aaa", "1", "amd64"),
        None,
        &[dir("./etc/"), file("./etc/a", b"a")],
        Comp::Gz,
    );
    let b = deb(
        &control("bbb", "2", "all"),
        None,
        &[
            Fx {
                mtime: 1_800_000_000,
                ..dir("./etc/")
            },
            file("./etc/b", b"b"),
        ],
        Comp::Zst,
    );
    let out = build(&input(vec![
        pkg(&tmp, "bbb", "2", "all", &b),
        pkg(&tmp, "aaa", "1", "amd64", &a),
    ]))
    .unwrap();
    let names: Vec<_> = out.info.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["aaa", "bbb"]);
    let listing = tar_listing(&out.blob.bytes);
    assert_eq!(
        listing.iter().find(|e| e.0 == "etc/").unwrap().3,
        1_800_000_000
    );
    for p in [
        "etc/a",
        "etc/b",
        "var/lib/dpkg/status.d/aaa",
        "var/lib/dpkg/status.d/bbb.md5sums",
    ] {
        assert!(listing.iter().any(|e| e.0 == p), "{p}");
    }
    assert_eq!(
        out.info.packages[1]
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["/etc", "/etc/b"]
    );
}

#[test]
fn the_same_input_gives_the_same_bytes_in_any_order() {
    let tmp = Tmp::new();
    let a = pkg(&tmp, "hello", "2.10-3", "amd64", &hello_deb(Comp::Xz));
    let b_deb = deb(
        &control("zzz", "1", "all"),
        None,
        &[dir("./opt/"), file("./opt/z", b"z")],
        Comp::Gz,
    );
    let b = pkg(&tmp, "zzz", "1", "all", &b_deb);
    let o1 = tmp.0.join("o1");
    let o2 = tmp.0.join("o2");
    let ab: Vec<_> = [&a, &b].into_iter().map(to_json).collect();
    let ba: Vec<_> = [&b, &a].into_iter().map(to_json).collect();
    let j1 = serde_json::to_vec(&serde_json::json!({
        "arch": "amd64", "packages": ab,
        "excludePaths": [], "defaultExcludes": true
    }))
    .unwrap();
    let j2 = serde_json::to_vec(&serde_json::json!({
        "arch": "amd64", "packages": ba,
        "defaultExcludes": true
    }))
    .unwrap();
    run(&j1, &o1).unwrap();
    run(&j2, &o2).unwrap();
    for f in ["layer.tar.gz", "layer.json"] {
        assert_eq!(
            std::fs::read(o1.join(f)).unwrap(),
            std::fs::read(o2.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(!o1.join("ca-certificates.pem").exists());
    let again = build(&serde_json::from_slice(&j1).unwrap()).unwrap();
    assert_eq!(
        again.blob.bytes,
        std::fs::read(o1.join("layer.tar.gz")).unwrap()
    );
}

fn to_json(p: &PackageInput) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "version": p.version, "architecture": p.architecture, "source": p.source,
        "sourceVersion": p.source_version, "suite": p.suite, "filename": p.filename,
        "sha256": p.sha256, "size": p.size, "deb": p.deb,
    })
}

#[test]
fn unknown_input_fields_and_bad_values_are_refused() {
    assert!(matches!(
        run(
            br#"{"arch":"amd64","packages":[],"defaultExcludes":true,"x":1}"#,
            Path::new("/nonexistent")
        ),
        Err(Error::Input(_))
    ));
    assert!(matches!(
        run(
            br#"{"arch":"amd64","packages":[]}"#,
            Path::new("/nonexistent")
        ),
        Err(Error::Input(_))
    ));
    let tmp = Tmp::new();
    let p = pkg(&tmp, "hello", "2.10-3", "amd64", &hello_deb(Comp::Gz));
    let mut i = input(vec![p.clone(), p.clone()]);
    assert!(build_err(&i).contains("twice"));
    i.packages.pop();
    i.arch = "riscv64".into();
    assert!(build_err(&i).contains("riscv64"));
    i.arch = "arm64".into();
    assert!(build_err(&i).contains("is for amd64"));
}

#[test]
fn certificates_are_bundled_in_path_order() {
    let tmp = Tmp::new();
    let data = vec![
        dir("./usr/"),
        dir("./usr/share/"),
        dir("./usr/share/ca-certificates/"),
        dir("./usr/share/ca-certificates/mozilla/"),
        file(
            "./usr/share/ca-certificates/mozilla/B_Root.crt",
            b"-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n\n",
        ),
        file(
            "./usr/share/ca-certificates/mozilla/A_Root.crt",
            b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----",
        ),
        file(
            "./usr/share/ca-certificates/mozilla/a_lower.crt",
            b"-----BEGIN CERTIFICATE-----\na\n-----END CERTIFICATE-----\n",
        ),
        file("./usr/share/ca-certificates/mozilla/README", b"not a cert"),
        dir("./usr/share/ca-certificates/other/"),
        file(
            "./usr/share/ca-certificates/other/C.crt",
            b"-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n",
        ),
    ];
    let d = deb(
        &control("ca-certificates", "20230311", "all"),
        None,
        &data,
        Comp::Xz,
    );
    let mut i = input(vec![pkg(&tmp, "ca-certificates", "20230311", "all", &d)]);
    i.exclude_paths = vec!["/usr/share/ca-certificates/**".into()];
    let out = build(&i).unwrap();
    assert_eq!(
        String::from_utf8(out.ca_bundle.clone().unwrap()).unwrap(),
        "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\na\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n"
    );
    // The certificates themselves were excluded, and so were their
    // now-empty directories.
    assert_eq!(
        paths(&out)
            .into_iter()
            .filter(|p| !p.starts_with("var/"))
            .collect::<Vec<_>>(),
        ["usr/", "usr/share/"]
    );
}
