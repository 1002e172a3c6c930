//! Black-box tests of `kiln fetch`: a lock written here, .debs served on
//! 127.0.0.1, files added to the real Nix store (skipped without nix-store).

mod debian_fixture;

use debian_fixture::*;
use kiln::digest::Digest;
use kiln::lock::{Image, ImageArch, Lock, LockedSuite, Package};
use kiln::spec::Arch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Deb {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    /// What the lock says.
    locked: Vec<u8>,
    /// What the mirror serves (`None`: a 404).
    served: Option<Vec<u8>>,
}

impl Deb {
    fn good(name: &'static str, version: &'static str, arch: &'static str) -> Deb {
        let b = unique_blob(name);
        Deb {
            name,
            version,
            arch,
            locked: b.clone(),
            served: Some(b),
        }
    }

    fn filename(&self) -> String {
        format!(
            "pool/main/{}/{}_{}_{}.deb",
            self.name, self.name, self.version, self.arch
        )
    }

    fn entry(&self) -> Package {
        Package {
            version: self.version.into(),
            architecture: self.arch.into(),
            source: self.name.into(),
            source_version: self.version.into(),
            suite: "bookworm".into(),
            filename: self.filename(),
            sha256: sha256_hex(&self.locked),
            size: self.locked.len() as u64,
        }
    }

    fn store_path(&self) -> String {
        self.entry().store_path(self.name)
    }
}

struct World {
    _dir: tempfile::TempDir,
    project: PathBuf,
    server: Server,
    env: Vec<(&'static str, String)>,
}

/// Writes a lock with image `img` holding `debs` (per the arch of each;
/// `all` ones under both) and serves what each says.
fn setup(debs: &[Deb]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&project).unwrap();
    let mut lock = Lock::default();
    lock.sources.insert(
        "bookworm".into(),
        LockedSuite {
            codename: "bookworm".into(),
            suite: "oldstable".into(),
            date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
            epoch: 1783764997,
            in_release: Digest::of(b"in-release"),
            signer: "00".repeat(20),
            indexes: BTreeMap::new(),
        },
    );
    let mut archs: BTreeMap<Arch, ImageArch> = BTreeMap::new();
    for d in debs {
        let targets: Vec<Arch> = match d.arch {
            "all" => Arch::ALL.to_vec(),
            a => vec![Arch::parse(a).unwrap()],
        };
        for arch in targets {
            lock.packages
                .entry("bookworm".into())
                .or_default()
                .entry(arch)
                .or_default()
                .insert(d.name.into(), d.entry());
            let plan = archs.entry(arch).or_insert(ImageArch {
                packages: vec![],
                layers: vec![],
            });
            plan.packages.push(d.name.into());
            plan.packages.sort();
            plan.layers.push(vec![d.name.into()]);
        }
        if let Some(b) = &d.served {
            let p = archive.join("debian").join(d.filename());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        }
    }
    lock.images.insert(
        "img".into(),
        Image {
            release: "bookworm".into(),
            inputs: Digest::of(b"inputs"),
            created: 1783764997,
            archs,
            python: None,
        },
    );
    lock.write(&Lock::path_in(&project)).unwrap();
    std::fs::create_dir_all(&archive).unwrap();
    let server = Server::start(&archive);
    let env = vec![("KILN_MIRROR", server.url("debian"))];
    World {
        _dir: dir,
        project,
        server,
        env,
    }
}

fn valid(path: &str) -> bool {
    Command::new("nix-store")
        .args(["--check-validity", path])
        .output()
        .unwrap()
        .status
        .success()
}

/// Removes what a test added, so reruns start clean.
fn forget(paths: &[String]) {
    for p in paths {
        let _ = Command::new("nix-store").args(["--delete", p]).output();
    }
}

fn tmp_is_empty(project: &Path) -> bool {
    let tmp = project.join(".kiln/tmp");
    !tmp.exists() || std::fs::read_dir(tmp).unwrap().next().is_none()
}

macro_rules! require_nix {
    () => {
        if !nix_available() {
            eprintln!("nix-store not installed; skipping");
            return;
        }
    };
}

#[test]
fn fetches_verifies_and_adds_to_the_store_then_skips() {
    require_nix!();
    let debs = [
        Deb::good("tzdata", "2026a-0+deb12u1", "all"),
        Deb::good("libc6", "2.36-9+deb12u14", "amd64"),
        Deb::good("libc6", "2.36-9+deb12u14", "arm64"),
        Deb::good("ca-certificates", "20250419~deb12u2", "all"),
    ];
    let paths: Vec<String> = debs.iter().map(Deb::store_path).collect();
    let w = setup(&debs);
    // The first request for one file fails: retried.
    w.server
        .fail_times(&format!("/debian/{}", debs[1].filename()), 1);

    let o = kiln(&w.project, &w.env, &["fetch", "--arch", "arm64", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["fetched"], 3,
        "tzdata, ca-certificates (all) and libc6 arm64: {out}"
    );
    assert!(valid(&paths[2]) && valid(&paths[0]) && !valid(&paths[1]));

    let o = kiln(&w.project, &w.env, &["fetch"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("fetched 1, present 3,"), "{out}");
    assert!(paths.iter().all(|p| valid(p)));
    assert!(
        w.server
            .requests()
            .iter()
            .filter(|r| r.ends_with(&debs[1].filename()))
            .count()
            == 2,
        "one 503, one retry: {:?}",
        w.server.requests()
    );
    // The store name carries no `~`.
    assert!(
        paths[3].ends_with("-ca-certificates_20250419-deb12u2_all.deb"),
        "{}",
        paths[3]
    );
    assert_eq!(
        paths[3],
        kiln::nixstore::flat_fixed_path(
            "ca-certificates_20250419-deb12u2_all.deb",
            &Digest::parse(&format!("sha256:{}", sha256_hex(&debs[3].locked)))
                .unwrap()
                .0
        )
    );

    let o = kiln(&w.project, &w.env, &["fetch", "img"]);
    assert!(
        text(&o).0.starts_with("fetched 0, present 4,"),
        "{:?}",
        text(&o)
    );
    assert!(tmp_is_empty(&w.project));
    forget(&paths);
}

#[test]
fn corrupted_deb_is_rejected_and_not_added() {
    require_nix!();
    let mut bad = Deb::good("tzdata", "2026a-0+deb12u1", "arm64");
    let mut served = bad.locked.clone();
    let last = served.len() - 1;
    served[last] ^= 0xff;
    bad.served = Some(served.clone());
    let w = setup(&[bad]);
    let lock = Lock::read(&Lock::path_in(&w.project)).unwrap();
    let entry = &lock.packages["bookworm"][&Arch::Arm64]["tzdata"];
    let path = entry.store_path("tzdata");
    let o = kiln(&w.project, &w.env, &["fetch"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains(&format!(
            "fetching tzdata 2026a-0+deb12u1 (arm64): sha256 mismatch: expected {}, got {}",
            entry.sha256,
            sha256_hex(&served)
        )),
        "{err}"
    );
    assert!(!valid(&path), "nothing may be added");
    assert!(tmp_is_empty(&w.project), "the bad file must be deleted");
}

#[test]
fn wrong_size_is_rejected() {
    require_nix!();
    let mut bad = Deb::good("libzstd1", "1.5.4+dfsg2-5", "amd64");
    let mut served = bad.locked.clone();
    served.extend_from_slice(b"trailing garbage");
    bad.served = Some(served);
    let w = setup(&[bad]);
    let o = kiln(&w.project, &w.env, &["fetch"]);
    let err = text(&o).1;
    assert!(!o.status.success());
    assert!(
        err.contains("fetching libzstd1 1.5.4+dfsg2-5 (amd64): size mismatch"),
        "{err}"
    );
    assert!(tmp_is_empty(&w.project));
}

#[test]
fn vanished_debs_are_reported_together() {
    require_nix!();
    let debs = [
        Deb {
            served: None,
            ..Deb::good("tzdata", "2026a-0+deb12u1", "all")
        },
        Deb {
            served: None,
            ..Deb::good("libssl3", "3.0.17-1~deb12u2", "arm64")
        },
        Deb::good("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ];
    let w = setup(&debs);
    let o = kiln(&w.project, &w.env, &["fetch"]);
    let err = text(&o).1;
    assert!(!o.status.success());
    assert!(
        err.contains("kiln.lock is stale: these pinned .debs are gone from the mirror: libssl3 3.0.17-1~deb12u2 (arm64), tzdata 2026a-0+deb12u1 (amd64, arm64); run `kiln lock --update`"),
        "{err}"
    );
    // What could be fetched was fetched.
    assert!(valid(&debs[2].store_path()));
    forget(&[debs[2].store_path()]);
}

#[test]
fn bad_lock_and_unknown_image_are_errors() {
    let w = setup(&[Deb::good("tzdata", "2026a-0+deb12u1", "all")]);
    let o = kiln(&w.project, &w.env, &["fetch", "nope"]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("kiln.lock has no image named nope"),
        "{:?}",
        text(&o)
    );
    let lock = Lock::path_in(&w.project);
    let t = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, t.replace("pool/main/tzdata", "../../etc/tzdata")).unwrap();
    let o = kiln(&w.project, &w.env, &["fetch"]);
    assert!(
        text(&o).1.contains("not a relative archive path"),
        "{:?}",
        text(&o)
    );
    std::fs::remove_file(&lock).unwrap();
    let o = kiln(&w.project, &w.env, &["fetch"]);
    assert!(
        text(&o)
            .1
            .contains("kiln.lock does not exist; run `kiln lock`"),
        "{:?}",
        text(&o)
    );
}
