//! Black-box tests of `kiln lock` against a fixture archive served on
//! 127.0.0.1 and signed by a key generated in the test.

mod debian_fixture;

use debian_fixture::*;
use pgp::types::KeyDetails as _;
use std::path::Path;

const DATE_MAIN: &str = "Sat, 11 Jul 2026 10:16:37 UTC";
const DATE_SEC: &str = "Sat, 21 Nov 2026 00:53:02 UTC";

struct World {
    _dir: tempfile::TempDir,
    project: std::path::PathBuf,
    archive: std::path::PathBuf,
    server: Server,
    key: pgp::composed::SignedSecretKey,
    env: Vec<(&'static str, String)>,
}

fn main_pkgs() -> Vec<Pkg> {
    vec![
        pkg(
            "ca-certificates",
            "20230311",
            "openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0",
        )
        .all(),
        pkg("openssl", "3.0.9-1", "libssl3 (>= 3.0.9), libc6 (>= 2.34)"),
        pkg("libssl3", "3.0.9-1", "libc6 (>= 2.34)"),
        pkg("libc6", "2.36-9", "libgcc-s1"),
        pkg("libgcc-s1", "12.2.0-14", "libc6 (>= 2.35)"),
        pkg("zlib1g", "1:1.2.13.dfsg-1", "libc6 (>= 2.14)"),
        pkg("needs-new-libc", "1.0", "zlib1g, libc6 (>= 2.40)"),
        pkg("x86-tool", "1.0", "libc6").only("amd64"),
        pkg("legacy-engine", "0.9", "").field("Breaks", "libssl3 (<< 3.0.10)"),
        pkg("uses-legacy-engine", "1.0", "legacy-engine"),
    ]
}

fn setup() -> World {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&project).unwrap();
    let key = archive_key();
    write_suite(
        &archive.join("debian"),
        "bookworm",
        DATE_MAIN,
        &main_pkgs(),
        &key,
    );
    write_suite(
        &archive.join("debian-security"),
        "bookworm-security",
        DATE_SEC,
        &[pkg("libssl3", "3.0.11-1~deb12u2", "libc6 (>= 2.34)")],
        &key,
    );
    let keyring = dir.path().join("keyring.gpg");
    write_keyring(&key, &keyring);
    let server = Server::start(&archive);
    let env = vec![
        ("KILN_MIRROR", server.url("debian")),
        ("KILN_SECURITY_MIRROR", server.url("debian-security")),
        ("KILN_KEYRING", keyring.display().to_string()),
    ];
    write_image(
        &project,
        "certs",
        &["ca-certificates"],
        &["openssl", "debconf", "debconf-2.0"],
        "",
    );
    write_image(&project, "ssl", &["openssl"], &[], "");
    World {
        _dir: dir,
        project,
        archive,
        server,
        key,
        env,
    }
}

fn lock_json(project: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(project.join("kiln.lock")).unwrap()).unwrap()
}

#[test]
fn lock_check_and_update() {
    let w = setup();
    let o = kiln(&w.project, &w.env, &["lock"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("ssl amd64: 4 packages"), "{out}");
    assert!(out.contains("  + libssl3 3.0.11-1~deb12u2"), "{out}");

    let bytes = std::fs::read(w.project.join("kiln.lock")).unwrap();
    let text_lock = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        !text_lock.contains("127.0.0.1") && !text_lock.contains("://"),
        "no URL in the lock:\n{text_lock}"
    );
    assert!(text_lock.ends_with("}\n"));
    let lock = lock_json(&w.project);
    assert_eq!(
        lock["images"]["certs"]["archs"]["amd64"]["packages"],
        serde_json::json!(["ca-certificates"])
    );
    assert_eq!(
        lock["images"]["ssl"]["archs"]["arm64"]["packages"],
        serde_json::json!(["libc6", "libgcc-s1", "libssl3", "openssl"])
    );
    assert_eq!(lock["images"]["ssl"]["release"], "bookworm");
    let ssl = &lock["packages"]["bookworm"]["amd64"]["libssl3"];
    assert_eq!(ssl["suite"], "bookworm-security");
    assert_eq!(
        ssl["filename"],
        "pool/main/l/libssl3/libssl3_3.0.11-1~deb12u2_amd64.deb"
    );
    assert_eq!(lock["images"]["ssl"]["created"], 1795222382);
    assert_eq!(lock["images"]["certs"]["created"], 1783764997);
    assert_eq!(lock["sources"]["bookworm"]["suite"], "test-bookworm");
    let fpr = lock["sources"]["bookworm"]["signer"].as_str().unwrap();
    assert_eq!(
        fpr,
        hex::encode(w.key.primary_key.public_key().fingerprint().as_bytes())
    );
    // Indexes came through by-hash.
    assert!(
        w.server
            .requests()
            .iter()
            .any(|r| r.contains("/by-hash/SHA256/")),
        "{:?}",
        w.server.requests()
    );

    // Same indexes: byte-identical lock, reported as up to date.
    let o = kiln(&w.project, &w.env, &["lock"]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("is up to date"), "{}", text(&o).0);
    assert_eq!(std::fs::read(w.project.join("kiln.lock")).unwrap(), bytes);

    // --check is offline: no mirror configured at all.
    let o = kiln(&w.project, &[], &["lock", "--check"]);
    assert!(o.status.success(), "{:?}", text(&o));

    // A definition change makes --check fail, naming the image.
    write_image(&w.project, "ssl", &["openssl", "zlib1g"], &[], "");
    let o = kiln(&w.project, &[], &["lock", "--check"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("kiln.lock is stale")
            && err.contains("image ssl:")
            && !err.contains("image certs"),
        "{err}"
    );

    // A security update appears: --update reports what changed.
    write_suite(
        &w.archive.join("debian-security"),
        "bookworm-security",
        "Sun, 22 Nov 2026 00:00:00 UTC",
        &[pkg("libssl3", "3.0.11-1~deb12u3", "libc6 (>= 2.34)")],
        &w.key,
    );
    let o = kiln(&w.project, &w.env, &["lock", "--update", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], true);
    let amd = &v["summary"]["images"]["ssl"]["amd64"];
    assert_eq!(
        amd["upgraded"],
        serde_json::json!([{"name": "libssl3", "from": "3.0.11-1~deb12u2", "to": "3.0.11-1~deb12u3"}])
    );
    assert_eq!(amd["added"][0]["name"], "zlib1g");
    assert_eq!(amd["packages"], 5);
    let o = kiln(&w.project, &[], &["lock", "--check"]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn partial_lock_keeps_other_images() {
    let w = setup();
    assert!(kiln(&w.project, &w.env, &["lock"]).status.success());
    let before = lock_json(&w.project);
    write_image(
        &w.project,
        "certs",
        &["ca-certificates", "zlib1g"],
        &["openssl", "debconf", "debconf-2.0"],
        "",
    );
    let o = kiln(&w.project, &w.env, &["lock", "certs"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("ssl: kept as locked"), "{out}");
    let after = lock_json(&w.project);
    assert_eq!(after["images"]["ssl"], before["images"]["ssl"]);
    assert_eq!(
        after["images"]["certs"]["archs"]["amd64"]["packages"],
        serde_json::json!(["ca-certificates", "libc6", "libgcc-s1", "zlib1g"])
    );
    let o = kiln(&w.project, &w.env, &["lock", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("no image named nope"), "{}", text(&o).1);
}

fn assert_fails_without_writing(w: &World, needle: &[&str]) {
    let o = kiln(&w.project, &w.env, &["lock"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    for n in needle {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
    assert!(
        !w.project.join("kiln.lock").exists(),
        "nothing may be written"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&w.project)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.iter().all(|n| n == "images" || n == "apt-empty"),
        "{leftovers:?}"
    );
}

#[test]
fn bad_signature_is_rejected() {
    let w = setup();
    let path = w.archive.join("debian/dists/bookworm/InRelease");
    let t = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        t.replace("Codename: bookworm", "Codename: bookwormX")
            .replace("Suite: test-bookworm", "Suite: bookworm"),
    )
    .unwrap();
    assert_fails_without_writing(
        &w,
        &[
            "bookworm:",
            "dists/bookworm/InRelease",
            "signature verification failed",
        ],
    );
}

#[test]
fn signature_by_another_key_is_rejected() {
    let w = setup();
    let other = archive_key();
    write_suite(
        &w.archive.join("debian"),
        "bookworm",
        DATE_MAIN,
        &main_pkgs(),
        &other,
    );
    assert_fails_without_writing(&w, &["bookworm:", "InRelease", "no such key"]);
}

#[test]
fn packages_index_not_matching_inrelease_is_rejected() {
    let w = setup();
    let dir = w.archive.join("debian/dists/bookworm/main/binary-arm64");
    let original = std::fs::read(dir.join("Packages.xz")).unwrap();
    let mut evil = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut evil, b"Package: evil\n").unwrap();
    let evil = evil.finish().unwrap();
    // Both the by-hash copy and the plain file are swapped.
    std::fs::write(dir.join("Packages.xz"), &evil).unwrap();
    std::fs::write(
        dir.join("by-hash/SHA256").join(sha256_hex(&original)),
        &evil,
    )
    .unwrap();
    assert_fails_without_writing(
        &w,
        &[
            "bookworm: main/binary-arm64/Packages.xz: sha256 mismatch",
            &sha256_hex(&original),
            &sha256_hex(&evil),
        ],
    );
}

#[test]
fn by_hash_missing_falls_back_to_the_plain_path() {
    let w = setup();
    std::fs::remove_dir_all(
        w.archive
            .join("debian/dists/bookworm/main/binary-amd64/by-hash"),
    )
    .unwrap();
    let o = kiln(&w.project, &w.env, &["lock"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(w
        .server
        .requests()
        .iter()
        .any(|r| r == "/debian/dists/bookworm/main/binary-amd64/Packages.xz"));
}

#[test]
fn unknown_package_is_named_with_arch_and_suites() {
    let w = setup();
    write_image(&w.project, "ssl", &["openssl", "no-such-thing"], &[], "");
    assert_fails_without_writing(&w, &["image ssl: unknown package no-such-thing for amd64 (searched bookworm, bookworm-security)"]);
}

#[test]
fn package_missing_for_one_arch_names_it() {
    let w = setup();
    write_image(&w.project, "ssl", &["x86-tool"], &[], "");
    assert_fails_without_writing(
        &w,
        &["unknown package x86-tool for arm64", "it exists for amd64"],
    );
}

#[test]
fn unsatisfiable_dependency_names_the_chain() {
    let w = setup();
    write_image(&w.project, "ssl", &["needs-new-libc"], &[], "");
    assert_fails_without_writing(
        &w,
        &[
            "unsatisfiable dependency: needs-new-libc → libc6 (>= 2.40)",
            "libc6: available 2.36-9 (bookworm)",
        ],
    );
}

#[test]
fn conflicting_packages_are_named_with_how_each_came_in() {
    let w = setup();
    // The security suite's libssl3 3.0.11 is chosen, which legacy-engine
    // does not break; the main suite alone has 3.0.9, which it does.
    write_image(
        &w.project,
        "ssl",
        &["openssl", "uses-legacy-engine"],
        &[],
        "",
    );
    let o = kiln(&w.project, &w.env, &["lock"]);
    assert!(o.status.success(), "{:?}", text(&o));
    std::fs::remove_file(w.project.join("kiln.lock")).unwrap();
    for image in ["certs", "ssl"] {
        let path = w.project.join("images").join(image).join("image.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(", \"bookworm-security\"", "")).unwrap();
    }
    let o = kiln(&w.project, &w.env, &["lock"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    for want in [
        "legacy-engine 0.9 (via uses-legacy-engine → legacy-engine)",
        "`Breaks: libssl3 (<< 3.0.10)`",
        "libssl3 3.0.9-1 (via openssl → libssl3 (>= 3.0.9))",
        "exclude one of them",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert!(!w.project.join("kiln.lock").exists());
}

#[test]
fn missing_suite_names_the_files_searched() {
    let w = setup();
    let env: Vec<_> = w
        .env
        .iter()
        .filter(|(k, _)| *k != "KILN_SECURITY_MIRROR")
        .cloned()
        .collect();
    let o = kiln(&w.project, &env, &["lock"]);
    let err = text(&o).1;
    assert!(!o.status.success());
    assert!(
        err.contains("\"bookworm-security\"")
            && err.contains("apt-empty")
            && err.contains("--security-mirror"),
        "{err}"
    );
}

#[test]
fn unreadable_lock_is_replaced_by_a_full_relock_only() {
    let w = setup();
    std::fs::write(w.project.join("kiln.lock"), "<<<<<<< HEAD\n{}\n=======\n").unwrap();
    let o = kiln(&w.project, &w.env, &["lock", "certs"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("kiln.lock"), "{:?}", text(&o));
    let o = kiln(&w.project, &w.env, &["lock"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: replacing the unreadable"), "{err}");
    assert!(kiln(&w.project, &[], &["lock", "--check"]).status.success());
}

const DATE_TRIXIE: &str = "Sat, 05 Dec 2026 02:11:04 UTC";

/// A Debian 13 suite in the fixture archive, signed by `key`.
fn write_trixie(w: &World, key: &pgp::composed::SignedSecretKey) {
    write_suite(
        &w.archive.join("debian"),
        "trixie",
        DATE_TRIXIE,
        &[
            pkg(
                "openssl",
                "3.5.4-1",
                "libssl3t64 (>= 3.5.4), libc6 (>= 2.38)",
            ),
            pkg("libssl3t64", "3.5.4-1", "libc6 (>= 2.38)"),
            pkg("libc6", "2.41-12", "libgcc-s1"),
            pkg("libgcc-s1", "14.2.0-19", "libc6 (>= 2.35)"),
        ],
        key,
    );
}

/// An image of the project resolved from `suites`.
fn write_image_of(w: &World, name: &str, suites: &str, include: &str) {
    let dir = w.project.join("images").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "name = {name:?}\ndescription = \"test image\"\nsuites = [{suites}]\n\n\
             [packages]\ninclude = [{include}]\n\n[accounts]\nrun_as = \"65532\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn images_of_two_releases_lock_side_by_side_each_at_its_own_versions() {
    let w = setup();
    write_trixie(&w, &w.key);
    write_image_of(&w, "ssl13", "\"trixie\"", "\"openssl\"");
    let o = kiln(&w.project, &w.env, &["lock"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let lock = lock_json(&w.project);
    assert_eq!(lock["version"], 2);
    assert_eq!(lock["images"]["ssl"]["release"], "bookworm");
    assert_eq!(lock["images"]["ssl13"]["release"], "trixie");
    for (release, libc) in [("bookworm", "2.36-9"), ("trixie", "2.41-12")] {
        assert_eq!(
            lock["packages"][release]["amd64"]["libc6"]["version"], libc,
            "{release}"
        );
    }
    assert_eq!(
        lock["images"]["ssl13"]["archs"]["arm64"]["packages"],
        serde_json::json!(["libc6", "libgcc-s1", "libssl3t64", "openssl"])
    );
    assert_eq!(lock["sources"]["trixie"]["codename"], "trixie");
    assert!(kiln(&w.project, &w.env, &["lock", "--check"])
        .status
        .success());
}

#[test]
fn what_a_release_cannot_give_is_named_with_the_image_and_release() {
    // The fixture project with a Debian 13 suite (signed by the archive's
    // key, by another, or absent) and one more image: `kiln lock` must
    // fail saying `needles`.
    enum Trixie {
        Signed,
        SignedByAnother,
        Absent,
    }
    let refused =
        |trixie: Trixie, (image, suites, include): (&str, &str, &str), needles: &[&str]| {
            let w = setup();
            match trixie {
                Trixie::Signed => write_trixie(&w, &w.key),
                Trixie::SignedByAnother => write_trixie(&w, &archive_key()),
                Trixie::Absent => {}
            }
            write_image_of(&w, image, suites, include);
            assert_fails_without_writing(&w, needles);
        };
    // A package of Debian 12 only.
    refused(
        Trixie::Signed,
        ("zlib13", "\"trixie\"", "\"zlib1g\""),
        &[
            "image zlib13:",
            "unknown package zlib1g",
            "(searched trixie)",
        ],
    );
    // Suites of two releases in one image.
    refused(
        Trixie::Signed,
        ("mixed", "\"bookworm\", \"trixie\"", "\"openssl\""),
        &[
            "images/mixed/image.toml: line 3: suites:",
            "\"bookworm\" is Debian 12 but \"trixie\" is Debian 13; an image is built from one release",
        ],
    );
    // A release kiln does not know.
    refused(
        Trixie::Absent,
        ("old", "\"hamm\"", "\"openssl\""),
        &[
            "images/old/image.toml",
            "\"hamm\" is not a suite of a Debian release kiln knows",
        ],
    );
    // A release whose InRelease the keyring does not verify.
    refused(
        Trixie::SignedByAnother,
        ("ssl13", "\"trixie\"", "\"openssl\""),
        &["trixie:", "InRelease", "no such key"],
    );
}
