//! `kiln fetch` when the mirror has moved on: pinned .debs come from a
//! snapshot archive as it was when the lock's signed index was made, and
//! are verified like any download.
//!
//! Debian's snapshot archive cannot be reached from here, so the archive
//! is a local HTTP server that lays out the .debs this machine already has
//! as the snapshot archive does (`/archive/debian/<YYYYMMDDTHHMMSSZ>/<pool
//! path>`), and the mirror is a local server that has nothing (every pool
//! path answers 404, as a mirror answers for a superseded version). The
//! .debs go into a fresh Nix store in a temporary directory.

mod common;

use common::*;
use kiln::lock::Lock;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

/// An HTTP server answering GET `path` with `files[path]`, else 404;
/// returns its URL and the paths asked for.
fn serve(files: BTreeMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (files, log) = (Arc::new(files), asked.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, log) = (files.clone(), log.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(path.clone());
                let mut out = stream;
                match files.get(&path) {
                    Some(body) => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = out.write_all(body);
                    }
                    None => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
            });
        }
    });
    (url, asked)
}

/// scratch-plus's amd64 .debs: (lock entry name, package) for each.
fn packages(lock: &Lock) -> Vec<(String, kiln::lock::Package)> {
    kiln::fetch::items(
        lock.select(
            Some(&["scratch-plus".to_string()]),
            Some(&[kiln::spec::Arch::Amd64]),
        )
        .unwrap(),
    )
    .into_iter()
    .map(|i| (i.name, i.package))
    .collect()
}

/// The snapshot archive's files: each .deb at the first snapshot after its
/// suite's index, with `corrupt` (a package name) served one byte off.
fn snapshot_files(lock: &Lock, corrupt: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (name, p) in packages(lock) {
        let epoch = lock.sources[&p.suite].epoch;
        let archive = if p.suite.ends_with("-security") {
            "debian-security"
        } else {
            "debian"
        };
        let id = kiln::fetch::snapshot_id(epoch + 6 * 3600);
        let store = p.store_path(&name);
        assert!(Path::new(&store).exists(), "{store}: run scripts/setup");
        let mut bytes = std::fs::read(&store).unwrap();
        if corrupt == Some(name.as_str()) {
            bytes[100] ^= 1;
        }
        files.insert(format!("/archive/{archive}/{id}/{}", p.filename), bytes);
    }
    files
}

struct Run {
    out: Output,
    store: PathBuf,
}

/// `kiln fetch scratch-plus --arch amd64 --json` on a project holding
/// `lock`, into a fresh store, with the mirror gone.
fn fetch(name: &str, lock_text: &str, snapshot: Option<&str>) -> Run {
    let dir = scratch(name);
    std::fs::write(dir.join("kiln.lock"), lock_text).unwrap();
    let store = dir.join("store");
    let (mirror, _) = serve(BTreeMap::new());
    let mut cmd = kiln_cmd(
        &dir,
        &["fetch", "scratch-plus", "--arch", "amd64", "--json"],
    );
    cmd.env("NIX_REMOTE", format!("local?root={}", store.display()))
        .env("KILN_MIRROR", &mirror)
        .env("KILN_SECURITY_MIRROR", &mirror)
        .env_remove("KILN_SNAPSHOT");
    if let Some(s) = snapshot {
        cmd.env("KILN_SNAPSHOT", s);
    }
    Run {
        out: cmd.output().unwrap(),
        store,
    }
}

fn lock_text() -> String {
    std::fs::read_to_string(project().join("kiln.lock")).unwrap()
}

#[test]
fn a_pinned_deb_gone_from_the_mirror_comes_from_the_snapshot_archive() {
    require_setup();
    let lock = Lock::read(&project().join("kiln.lock")).unwrap();
    let (snapshot, asked) = serve(snapshot_files(&lock, None));
    let run = fetch("fetch-snapshot-ok", &lock_text(), Some(&snapshot));
    assert!(run.out.status.success(), "{}", stderr(&run.out));
    let report: Value = serde_json::from_str(&stdout(&run.out)).unwrap();
    let wanted = packages(&lock);
    let statuses: Vec<&str> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), wanted.len());
    assert!(statuses.iter().all(|s| *s == "snapshot"), "{statuses:?}");
    // Each file is in the fresh store under the path the flake expects.
    for (name, p) in &wanted {
        let path = p.store_path(name);
        let rel = path.trim_start_matches('/');
        assert!(
            run.store.join(rel).exists(),
            "{path} is not in the fresh store"
        );
    }
    // The first snapshot after the index was asked for, once per file.
    assert_eq!(
        asked.lock().unwrap().len(),
        wanted.len(),
        "{:?}",
        asked.lock().unwrap()
    );
}

#[test]
fn a_snapshot_that_serves_other_bytes_is_refused_by_hash() {
    require_setup();
    let lock = Lock::read(&project().join("kiln.lock")).unwrap();
    let (victim, _) = packages(&lock).into_iter().next().unwrap();
    let (snapshot, _) = serve(snapshot_files(&lock, Some(&victim)));
    let run = fetch("fetch-snapshot-corrupt", &lock_text(), Some(&snapshot));
    assert_eq!(run.out.status.code(), Some(2), "{}", stderr(&run.out));
    let e = stderr(&run.out);
    assert!(
        e.contains(&victim) && e.contains("sha256 mismatch") && e.contains("/archive/"),
        "{e}"
    );
}

#[test]
fn without_a_snapshot_or_a_recorded_time_fetch_says_what_it_cannot_recover() {
    require_setup();
    // No snapshot archive: the stale-lock error names the way out.
    let run = fetch("fetch-snapshot-none", &lock_text(), None);
    assert_eq!(run.out.status.code(), Some(2));
    let e = stderr(&run.out);
    assert!(
        e.contains("gone from the mirror") && e.contains("--snapshot URL"),
        "{e}"
    );

    // A lock that does not record when its indexes were made: each entry
    // it cannot recover is named.
    let mut v: Value = serde_json::from_str(&lock_text()).unwrap();
    let lock = Lock::read(&project().join("kiln.lock")).unwrap();
    for source in v["sources"].as_object_mut().unwrap().values_mut() {
        source.as_object_mut().unwrap().remove("epoch");
    }
    let (snapshot, asked) = serve(snapshot_files(&lock, None));
    let run = fetch(
        "fetch-snapshot-no-time",
        &serde_json::to_string_pretty(&v).unwrap(),
        Some(&snapshot),
    );
    assert_eq!(run.out.status.code(), Some(2), "{}", stderr(&run.out));
    let e = stderr(&run.out);
    assert!(e.contains("records no time for suite"), "{e}");
    for (name, _) in packages(&lock) {
        assert!(e.contains(&name), "{name} is not named: {e}");
    }
    assert!(asked.lock().unwrap().is_empty());
}
