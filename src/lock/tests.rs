use super::*;
use crate::debian::packages::parse_packages;
use crate::debian::release::{FileHash, Release};

fn deb(name: &str, version: &str, arch: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nFilename: pool/main/{name}_{version}_{arch}.deb\nSize: {}\nSHA256: {}\n{extra}\n",
        name.len() * 1000,
        hex::encode(Digest::of(format!("{name}{version}").as_bytes()).0)
    )
}

fn suite(name: &str, epoch: i64, entries: &[String]) -> SuiteIndex {
    let text = entries.join("\n");
    let mut packages = BTreeMap::new();
    for arch in Arch::ALL {
        let t = text.replace("ARCH", arch.debian());
        packages.insert(arch, parse_packages(&t, name).unwrap());
    }
    let release = Release {
        name: name.into(),
        suite: format!("{name}-suite"),
        codename: name.into(),
        date: format!("date of {name}"),
        epoch,
        valid_until: None,
        acquire_by_hash: true,
        components: vec!["main".into()],
        architectures: vec!["amd64".into(), "arm64".into()],
        files: [(
            "main/binary-amd64/Packages.xz".to_string(),
            FileHash {
                sha256: Digest::of(b"x"),
                size: 1,
            },
        )]
        .into(),
        in_release: Digest::of(name.as_bytes()),
        signer: "00".repeat(20),
    };
    SuiteIndex {
        release,
        packages,
        indexes: [(
            "main/binary-amd64/Packages.xz".to_string(),
            Digest::of(b"x"),
        )]
        .into(),
    }
}

fn indexes(ssl: &str) -> BTreeMap<String, SuiteIndex> {
    let main = suite(
        "bookworm",
        1000,
        &[
            deb(
                "ca-certificates",
                "20230311",
                "all",
                "Depends: openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0",
            ),
            deb("openssl", "3.0.9-1", "ARCH", "Depends: libssl3 (>= 3.0.9)"),
            deb("libssl3", "3.0.9-1", "ARCH", "Depends: libc6"),
            deb("libc6", "2.36-9", "ARCH", ""),
            deb("tzdata", "2024a-0+deb12u1", "all", ""),
            deb("busybox-static", "1:1.35.0-4", "ARCH", ""),
        ],
    );
    let sec = suite(
        "bookworm-security",
        2000,
        &[deb("libssl3", ssl, "ARCH", "Depends: libc6")],
    );
    [
        ("bookworm".to_string(), main),
        ("bookworm-security".to_string(), sec),
    ]
    .into()
}

fn spec(name: &str, include: &[&str], exclude: &[&str]) -> ImageSpec {
    let def: crate::spec::Definition = serde_json::from_value(serde_json::json!({
        "name": name,
        "description": "d",
        "suites": ["bookworm", "bookworm-security"],
        "packages": {"include": include, "exclude": exclude},
        "accounts": {"run_as": "65532"}
    }))
    .unwrap();
    def.image(None).unwrap()
}

fn specs() -> Vec<ImageSpec> {
    vec![
        spec(
            "certs",
            &["ca-certificates"],
            &["openssl", "debconf", "debconf-2.0"],
        ),
        spec("ssl", &["openssl"], &[]),
    ]
}

#[test]
fn build_resolves_every_image_and_arch() {
    let (lock, summary) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    assert_eq!(
        lock.images["certs"].archs[&Arch::Amd64].packages,
        ["ca-certificates"]
    );
    assert_eq!(lock.images["certs"].created, 1000);
    let ssl = &lock.images["ssl"];
    assert_eq!(
        ssl.archs[&Arch::Arm64].packages,
        ["libc6", "libssl3", "openssl"]
    );
    assert_eq!(
        ssl.archs[&Arch::Arm64].layers,
        [["libc6"], ["libssl3"], ["openssl"]]
    );
    assert_eq!(ssl.created, 2000, "libssl3 comes from the security suite");
    assert_eq!(
        lock.packages["bookworm"][&Arch::Arm64]["libssl3"].suite,
        "bookworm-security"
    );
    assert_eq!(
        lock.packages["bookworm"][&Arch::Arm64]["libssl3"].filename,
        "pool/main/libssl3_3.0.11-1_arm64.deb"
    );
    assert_eq!(ssl.inputs, specs()[1].lock_inputs());
    assert_eq!(lock.sources["bookworm"].suite, "bookworm-suite");
    assert_eq!(summary.images["ssl"][&Arch::Amd64].added.len(), 3);
    lock.check(&specs(), &[], Path::new("kiln.lock")).unwrap();
    // No URL or host anywhere.
    let text = String::from_utf8(lock.to_bytes()).unwrap();
    assert!(!text.contains("://"), "{text}");
}

#[test]
fn a_relock_with_the_same_debs_keeps_the_creation_time() {
    let (first, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    // The security suite is re-signed (newer date), same packages.
    let mut later = indexes("3.0.11-1");
    later.get_mut("bookworm-security").unwrap().release.epoch = 3000;
    let (again, _) = lock_images(&specs(), &later, Some(&first), None).unwrap();
    assert_eq!(again.images["ssl"].created, 2000);
    // A new libssl3 moves it.
    let mut newer = indexes("3.0.13-1");
    newer.get_mut("bookworm-security").unwrap().release.epoch = 3000;
    let (moved, _) = lock_images(&specs(), &newer, Some(&first), None).unwrap();
    assert_eq!(moved.images["ssl"].created, 3000);
    assert_eq!(moved.images["certs"].created, 1000);
}

#[test]
fn bytes_are_deterministic_and_sorted() {
    let (a, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    let mut rev = specs();
    rev.reverse();
    let (b, _) = lock_images(&rev, &indexes("3.0.11-1"), None, None).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    let text = String::from_utf8(a.to_bytes()).unwrap();
    assert!(
        text.ends_with("}\n") && text.starts_with("{\n  \"images\": {"),
        "{text}"
    );
    assert!(
        text.contains("\n      \"inputs\": \"sha256:"),
        "two-space indent:\n{text}"
    );
    // Round trip.
    let back = Lock::from_slice(&a.to_bytes(), Path::new("kiln.lock")).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.to_bytes(), a.to_bytes());
    // Insertion order does not matter.
    let mut c = Lock::default();
    for (k, v) in a.images.iter().rev() {
        c.images.insert(k.clone(), v.clone());
    }
    c.sources = a.sources.clone();
    c.packages = a.packages.clone();
    assert_eq!(c.to_bytes(), a.to_bytes());
}

#[test]
fn update_reports_what_changed() {
    let (old, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    let mut changed = specs();
    changed[0] = spec(
        "certs",
        &["ca-certificates", "tzdata"],
        &["openssl", "debconf", "debconf-2.0"],
    );
    let (new, summary) = lock_images(&changed, &indexes("3.0.13-1"), Some(&old), None).unwrap();
    let ssl = &summary.images["ssl"][&Arch::Amd64];
    assert_eq!(
        ssl.upgraded,
        [Changed {
            name: "libssl3".into(),
            from: "3.0.11-1".into(),
            to: "3.0.13-1".into()
        }]
    );
    let certs = &summary.images["certs"][&Arch::Arm64];
    assert_eq!(
        certs.added,
        [Versioned {
            name: "tzdata".into(),
            version: "2024a-0+deb12u1".into()
        }]
    );
    assert!(summary.changed());
    let text = summary.render();
    assert!(text.contains("  ~ libssl3 3.0.11-1 → 3.0.13-1"), "{text}");
    assert!(text.contains("  + tzdata 2024a-0+deb12u1"), "{text}");
    assert_eq!(
        new.packages["bookworm"][&Arch::Amd64]["libssl3"].version,
        "3.0.13-1"
    );
    let (_, again) = lock_images(&changed, &indexes("3.0.13-1"), Some(&new), None).unwrap();
    assert!(!again.changed());
}

#[test]
fn partial_update_keeps_other_images_and_their_versions() {
    let (old, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    let mut changed = specs();
    changed[0] = spec(
        "certs",
        &["ca-certificates", "libssl3"],
        &["openssl", "debconf", "debconf-2.0"],
    );
    let only: BTreeSet<String> = ["certs".to_string()].into();
    // The kept image pins libssl3 at 3.0.11-1; it is no longer offered.
    let e = lock_images(&changed, &indexes("3.0.13-1"), Some(&old), Some(&only))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("libssl3") && e.contains("3.0.11-1") && e.contains("3.0.13-1"),
        "{e}"
    );
    // With the pinned version still offered, it is reused.
    let (new, summary) =
        lock_images(&changed, &indexes("3.0.11-1"), Some(&old), Some(&only)).unwrap();
    assert_eq!(new.images["ssl"], old.images["ssl"]);
    assert_eq!(summary.kept, ["ssl"]);
    assert_eq!(
        new.images["certs"].archs[&Arch::Amd64].packages,
        ["ca-certificates", "libc6", "libssl3"]
    );
    let e = lock_images(
        &changed,
        &indexes("3.0.11-1"),
        Some(&old),
        Some(&["nope".to_string()].into()),
    )
    .unwrap_err();
    assert!(matches!(e, LockError::UnknownImage(_)));
}

#[test]
fn check_names_the_stale_image() {
    let (lock, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    let p = Path::new("kiln.lock");
    let mut changed = specs();
    changed[1] = spec("ssl", &["openssl", "tzdata"], &[]);
    let e = lock.check(&changed, &[], p).unwrap_err().to_string();
    assert!(
        e.contains("image ssl: its definition changed") && !e.contains("image certs"),
        "{e}"
    );
    changed.push(spec("new", &["tzdata"], &[]));
    let e = lock.check(&changed, &[], p).unwrap_err().to_string();
    assert!(e.contains("image new: no entry"), "{e}");
    let e = lock.check(&specs()[..1], &[], p).unwrap_err().to_string();
    assert!(
        e.contains("image ssl: locked, but there is no such definition"),
        "{e}"
    );
    let mut broken = lock.clone();
    broken
        .packages
        .get_mut("bookworm")
        .unwrap()
        .get_mut(&Arch::Amd64)
        .unwrap()
        .remove("libc6");
    let e = broken.check(&specs(), &[], p).unwrap_err().to_string();
    assert!(
        e.contains("image ssl: bookworm amd64 package libc6 has no entry"),
        "{e}"
    );
}

#[test]
fn invalid_locks_are_rejected() {
    let (lock, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    let p = Path::new("kiln.lock");
    let text = String::from_utf8(lock.to_bytes()).unwrap();
    let e = Lock::from_slice(
        // A URL instead of a pool path (the lock holds no URL).
        text.replacen("pool/main/libc6", "file:///pool/main/libc6", 1)
            .as_bytes(),
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a relative archive path"), "{e}");
    let e = Lock::from_slice(
        text.replace("\"version\": 2", "\"version\": 3").as_bytes(),
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("format version 3"), "{e}");
    let e = Lock::from_slice(text.replacen("\"size\":", "\"sise\":", 1).as_bytes(), p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sise"), "{e}");
    assert!(matches!(
        Lock::read(Path::new("/nonexistent/kiln.lock")),
        Err(LockError::Missing { .. })
    ));
}

#[test]
fn unknown_package_for_one_arch_says_so() {
    let mut idx = indexes("3.0.11-1");
    idx.get_mut("bookworm")
        .unwrap()
        .packages
        .get_mut(&Arch::Arm64)
        .unwrap()
        .retain(|p| p.name != "tzdata");
    let e = build(
        &[spec("tz", &["tzdata"], &[])],
        &[],
        &idx,
        None,
        None,
        &mut no_bootstrap,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "image tz: unknown package tzdata for arm64 (searched bookworm, bookworm-security) (it exists for amd64: only arm64 lacks it)");
}

fn no_bootstrap(p: &Package) -> Result<String, String> {
    panic!(
        "no toolchain here, yet the bootstrap {} was asked for",
        p.version
    )
}

fn toolchain(packages: &[&str]) -> Toolchain {
    let text = format!(
        "description = \"t\"\nsuites = [\"bookworm\", \"bookworm-security\"]\npackages = {packages:?}\n"
    );
    crate::toolchain::parse(Path::new("toolchains/tc/toolchain.toml"), &text, "tc").unwrap()
}

#[test]
fn toolchains_share_the_images_versions_and_pin_the_bootstrap_once() {
    let tc = toolchain(&["openssl"]);
    let mut asked = Vec::new();
    let mut nar = |p: &Package| {
        asked.push(p.version.clone());
        Ok("ab".repeat(32))
    };
    let (lock, summary) = build(
        &specs(),
        std::slice::from_ref(&tc),
        &indexes("3.0.11-1"),
        None,
        None,
        &mut nar,
    )
    .unwrap();
    assert_eq!(asked, ["1:1.35.0-4"]);
    let t = &lock.toolchains["tc"];
    assert_eq!(t.inputs, tc.lock_inputs());
    assert_eq!(t.archs[&Arch::Amd64], ["libc6", "libssl3", "openssl"]);
    // The image's libssl3 (from the security suite) is the toolchain's.
    assert_eq!(
        lock.packages["bookworm"][&Arch::Amd64]["libssl3"].version,
        "3.0.11-1"
    );
    let b = lock.bootstrap.as_ref().unwrap();
    assert_eq!(
        (b.package.as_str(), b.nar_hash.as_str()),
        ("busybox-static", "ab".repeat(32).as_str())
    );
    assert!(lock.packages["bookworm"][&Arch::Amd64].contains_key("busybox-static"));
    assert!(summary.toolchains["tc"][&Arch::Amd64].added.len() == 3);
    lock.check(&specs(), std::slice::from_ref(&tc), Path::new("kiln.lock"))
        .unwrap();

    // A relock with the same busybox .deb keeps its hash without asking.
    let (again, _) = build(
        &specs(),
        std::slice::from_ref(&tc),
        &indexes("3.0.11-1"),
        Some(&lock),
        None,
        &mut no_bootstrap,
    )
    .unwrap();
    assert_eq!(again.to_bytes(), lock.to_bytes());

    // A changed toolchain makes the lock stale, naming it.
    let e = lock
        .check(
            &specs(),
            &[toolchain(&["openssl", "tzdata"])],
            Path::new("kiln.lock"),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("toolchain tc: its definition changed"), "{e}");
}

#[test]
fn a_held_version_the_suites_do_not_offer_is_an_error_naming_it() {
    let mut tc = toolchain(&["openssl"]);
    tc.versions.insert("openssl".into(), "9.9-1".into());
    let e = build(
        &specs(),
        &[tc],
        &indexes("3.0.11-1"),
        None,
        None,
        &mut |_| Ok("ab".repeat(32)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("toolchain tc: amd64: versions holds openssl at 9.9-1"),
        "{e}"
    );
    assert!(e.contains("give 3.0.9-1"), "{e}");
}

/// A lock of `specs` alone (no toolchain, so no bootstrap is asked for).
fn lock_images(
    specs: &[ImageSpec],
    indexes: &BTreeMap<String, SuiteIndex>,
    previous: Option<&Lock>,
    only: Option<&BTreeSet<String>>,
) -> Result<(Lock, Summary), LockError> {
    build(specs, &[], indexes, previous, only, &mut no_bootstrap)
}

#[test]
fn a_toolchain_package_missing_for_the_build_machine_is_named() {
    let mut idx = indexes("3.0.11-1");
    idx.get_mut("bookworm")
        .unwrap()
        .packages
        .get_mut(&Arch::Amd64)
        .unwrap()
        .retain(|p| p.name != "tzdata");
    let e = build(
        &specs(),
        &[toolchain(&["tzdata"])],
        &idx,
        None,
        None,
        &mut |_| Ok("ab".repeat(32)),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "toolchain tc: unknown package tzdata for amd64 (searched bookworm, bookworm-security) (it exists for arm64: only amd64 lacks it)");
}

#[test]
fn foreign_packages_are_pinned_from_the_same_source_version_without_dependencies() {
    let mut tc = toolchain(&["openssl"]);
    tc.foreign.insert(
        Arch::Arm64,
        vec![crate::spec::PackageName("libssl3".into())],
    );
    let (lock, _) = build(
        &specs(),
        std::slice::from_ref(&tc),
        &indexes("3.0.11-1"),
        None,
        None,
        &mut |_| Ok("ab".repeat(32)),
    )
    .unwrap();
    let t = &lock.toolchains["tc"];
    assert_eq!(t.foreign[&Arch::Arm64], ["libssl3"]);
    let arm = &lock.packages["bookworm"][&Arch::Arm64]["libssl3"];
    assert_eq!(
        (arm.version.as_str(), arm.architecture.as_str()),
        ("3.0.11-1", "arm64")
    );
    // Its dependency (libc6) is not unpacked for arm64 on its behalf.
    assert!(!t.foreign[&Arch::Arm64].contains(&"libc6".to_string()));

    // arm64 offers only an older build than the toolchain's own: refused.
    let mut idx = indexes("3.0.11-1");
    idx.get_mut("bookworm-security")
        .unwrap()
        .packages
        .get_mut(&Arch::Arm64)
        .unwrap()
        .retain(|p| p.name != "libssl3");
    let e = build(&specs(), &[tc], &idx, None, None, &mut |_| {
        Ok("ab".repeat(32))
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("toolchain tc: unknown package libssl3 for arm64")
            && e.contains("same source version"),
        "{e}"
    );
}

/// The releases' own versions of libc6 and tzdata, for images of two
/// releases in one lock.
fn two_releases() -> BTreeMap<String, SuiteIndex> {
    let mut idx = indexes("3.0.11-1");
    idx.insert(
        "trixie".to_string(),
        suite(
            "trixie",
            3000,
            &[
                deb("libc6", "2.41-12", "ARCH", ""),
                deb("tzdata", "2025b-4", "all", ""),
            ],
        ),
    );
    idx
}

fn spec_of(name: &str, suites: &[&str], include: &[&str]) -> ImageSpec {
    let def: crate::spec::Definition = serde_json::from_value(serde_json::json!({
        "name": name,
        "description": "d",
        "suites": suites,
        "packages": {"include": include},
        "accounts": {"run_as": "65532"}
    }))
    .unwrap();
    def.image(None).unwrap()
}

#[test]
fn images_of_two_releases_pin_their_own_versions_of_one_package() {
    let specs = vec![
        spec_of(
            "old",
            &["bookworm", "bookworm-security"],
            &["libc6", "tzdata"],
        ),
        spec_of("new", &["trixie"], &["libc6", "tzdata"]),
    ];
    let (lock, _) = lock_images(&specs, &two_releases(), None, None).unwrap();
    assert_eq!(lock.images["old"].release, "bookworm");
    assert_eq!(lock.images["new"].release, "trixie");
    assert_eq!(
        lock.packages["bookworm"][&Arch::Amd64]["libc6"].version,
        "2.36-9"
    );
    assert_eq!(
        lock.packages["trixie"][&Arch::Amd64]["libc6"].version,
        "2.41-12"
    );
    assert_eq!(lock.images["new"].created, 3000);
    lock.check(&specs, &[], Path::new("kiln.lock")).unwrap();
    // Both .debs of each name are fetched.
    let selected = lock.select(None, Some(&[Arch::Amd64])).unwrap();
    let versions: Vec<&str> = selected
        .iter()
        .filter(|(_, n, _)| n == "libc6")
        .map(|(_, _, p)| p.version.as_str())
        .collect();
    assert_eq!(versions, ["2.36-9", "2.41-12"]);
    let text = String::from_utf8(lock.to_bytes()).unwrap();
    assert_eq!(
        Lock::from_slice(text.as_bytes(), Path::new("kiln.lock")).unwrap(),
        lock
    );

    // A relock of one image keeps the other release's pins.
    let only: BTreeSet<String> = ["new".to_string()].into();
    let (again, _) = lock_images(&specs, &two_releases(), Some(&lock), Some(&only)).unwrap();
    assert_eq!(
        (&again.images, &again.packages),
        (&lock.images, &lock.packages)
    );
}

#[test]
fn a_format_1_lock_reads_as_its_release_table() {
    let (lock, _) = lock_images(&specs(), &indexes("3.0.11-1"), None, None).unwrap();
    // The same lock as format 1 wrote it: one table, no release keys.
    let mut v = serde_json::to_value(&lock).unwrap();
    v["version"] = 1.into();
    v["packages"] = v["packages"]["bookworm"].take();
    for image in v["images"].as_object_mut().unwrap().values_mut() {
        image.as_object_mut().unwrap().remove("release");
    }
    let bytes = serde_json::to_vec(&v).unwrap();
    let read = Lock::from_slice(&bytes, Path::new("kiln.lock")).unwrap();
    assert_eq!(read, lock);
    assert_eq!(read.version, FORMAT_VERSION);
}
