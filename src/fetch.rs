//! `kiln fetch`: puts every pinned .deb into the Nix store under the exact
//! path of the fixed-output derivation the flake declares, so that
//! `nix build` never needs the network.
//!
//! Each file is streamed to a temporary directory under its store name,
//! hashed on the way, checked against the lock's size and sha256, and only
//! then added with `nix-store --add-fixed sha256`. A 404 means the mirror
//! has moved on (it carries only current versions): all vanished entries
//! are collected and reported together, since the fix is one relock.

use crate::debian::http::{transport, Http, HttpError, ATTEMPTS};
use crate::debian::sources::{Mirrors, SourcesError, SuiteSource};
use crate::digest::Digest;
use crate::lock::{Lock, Package};
use crate::nixstore::{self, StoreError};
use crate::spec::Arch;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Default number of concurrent downloads.
pub const DEFAULT_JOBS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("kiln.lock is stale: these pinned .debs are gone from the mirror{}: {}; run `kiln lock --update`{}{}", if *.snapshot_tried { " and from the snapshot archive" } else { "" }, .vanished.join(", "), if *.snapshot_tried { "" } else { ", or fetch them as they were from a snapshot archive: --snapshot URL (KILN_SNAPSHOT)" }, render_others(.others))]
    Stale {
        vanished: Vec<String>,
        others: Vec<FetchError>,
        snapshot_tried: bool,
    },
    #[error("fetching {package}: it is gone from the mirror, and kiln.lock records no time for suite {suite} (its `sources` entry), so no snapshot of the archive can be chosen; run `kiln lock --update`")]
    NoSnapshotTime { package: String, suite: String },
    #[error("fetching {package}: sha256 mismatch: expected {expected}, got {actual} (from {url}; the file was deleted)")]
    Mismatch {
        package: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("fetching {package}: size mismatch: expected {expected} bytes, got {actual} (from {url}; the file was deleted)")]
    SizeMismatch {
        package: String,
        url: String,
        expected: u64,
        actual: String,
    },
    #[error("fetching {package}: {error}")]
    Download { package: String, error: HttpError },
    #[error("fetching {package}: writing {path}: {error}")]
    Io {
        package: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("fetching {package}: adding to the Nix store: {error}")]
    Store { package: String, error: StoreError },
    #[error("checking the Nix store: {0}")]
    Validity(String),
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error("creating a temporary directory in {path}: {error}")]
    TempDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("{} downloads failed:\n  {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<FetchError>),
}

fn render_others(list: &[FetchError]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = list.iter().map(|e| format!("\n  {e}")).collect();
    format!("\nand {} other failure(s):{}", list.len(), lines.concat())
}

/// One .deb to put in the store.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub package: Package,
    /// Architectures whose lock entries name this exact file (`all` packages appear under each).
    pub archs: Vec<Arch>,
    pub store_name: String,
    pub store_path: String,
}

impl Item {
    fn label(&self) -> String {
        let archs: Vec<&str> = self.archs.iter().map(|a| a.debian()).collect();
        format!(
            "{} {} ({})",
            self.name,
            self.package.version,
            archs.join(", ")
        )
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The distinct files behind a selection of lock entries.
pub fn items<'a>(entries: impl IntoIterator<Item = (Arch, String, &'a Package)>) -> Vec<Item> {
    let mut by_path: BTreeMap<String, Item> = BTreeMap::new();
    for (arch, name, p) in entries {
        let store_path = p.store_path(&name);
        by_path
            .entry(store_path.clone())
            .and_modify(|i| {
                if !i.archs.contains(&arch) {
                    i.archs.push(arch);
                }
            })
            .or_insert_with(|| Item {
                store_name: p.store_name(&name),
                name,
                package: p.clone(),
                archs: vec![arch],
                store_path,
            });
    }
    let mut out: Vec<Item> = by_path.into_values().collect();
    out.sort_by(|a, b| {
        (&a.name, &a.package.version, &a.archs).cmp(&(&b.name, &b.package.version, &b.archs))
    });
    out
}

pub struct Options {
    pub jobs: usize,
    /// Downloads go to a fresh directory inside this one.
    pub tmp_dir: PathBuf,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Where a file the mirror no longer has is fetched from instead.
    pub snapshot: Option<Snapshot>,
}

/// A snapshot archive of Debian, laid out as Debian's own snapshot archive is:
/// `ROOT/archive/<debian|debian-security>/<YYYYMMDDTHHMMSSZ>/<pool path>`,
/// where a time stands for the newest snapshot taken at or before it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: String,
    /// When each suite's signed index was made (kiln.lock's `sources`).
    pub times: BTreeMap<String, i64>,
}

/// Snapshots are taken every six hours: the first one after the index was
/// made holds everything the index listed (a file is only removed from the
/// archive days after it is superseded).
const SNAPSHOT_INTERVAL: i64 = 6 * 3600;

impl Snapshot {
    pub fn new(root: &str, lock: &Lock) -> Snapshot {
        Snapshot {
            root: root.trim_end_matches('/').to_string(),
            times: lock
                .sources
                .iter()
                .filter(|(_, s)| s.epoch > 0)
                .map(|(suite, s)| (suite.clone(), s.epoch))
                .collect(),
        }
    }

    /// The URLs to try for `filename` of `suite`, the most likely first:
    /// the first snapshot after the index, then the last one before it.
    /// `None` when the lock records no time for the suite.
    pub fn urls(&self, suite: &str, filename: &str) -> Option<Vec<String>> {
        let epoch = *self.times.get(suite)?;
        let archive = if crate::debian::sources::is_security(suite) {
            "debian-security"
        } else {
            "debian"
        };
        Some(
            [epoch + SNAPSHOT_INTERVAL, epoch]
                .iter()
                .map(|t| {
                    format!(
                        "{}/archive/{archive}/{}/{filename}",
                        self.root,
                        snapshot_id(*t)
                    )
                })
                .collect(),
        )
    }
}

/// `YYYYMMDDTHHMMSSZ`, the snapshot archive's name for a time.
pub fn snapshot_id(epoch: i64) -> String {
    kiln_seed::date::rfc3339(epoch).replace(['-', ':'], "")
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetched {
    pub name: String,
    pub version: String,
    pub archs: Vec<Arch>,
    pub store_path: String,
    /// `fetched` or `present`.
    pub status: &'static str,
}

/// What `kiln fetch` did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub fetched: usize,
    pub present: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    pub seconds: f64,
    pub packages: Vec<Fetched>,
    /// Crates of the project's Cargo.lock files (whole-lock fetches only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub crates: BTreeMap<String, crate::crates::Added>,
    /// Python applications' wheels.
    pub wheels: crate::wheels::Fetched,
    /// The bootstrap busybox's store path, when the lock has one and it was
    /// asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// kiln's seed, for a project whose kiln is its flake input (whole-lock
    /// fetches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<SeedInputs>,
}

/// What a project's fetch did for kiln's seed: nothing when the seed is in
/// the store already, else what compiling it in the sandbox needs (kiln's
/// bootstrap, its Rust toolchain's .debs and the seed's crates, from
/// kiln's own lock).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedInputs {
    pub store_path: String,
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Box<Report>>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "fetched {}, present {}, {} downloaded in {:.1}s",
            self.fetched,
            self.present,
            human_bytes(self.bytes),
            self.seconds
        )
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Store paths among `paths` that are not valid (one `nix-store` call:
/// starting it costs about 0.1 s, so asking per path would dominate).
pub fn invalid_paths(paths: &[String]) -> Result<Vec<String>, FetchError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    // Stay well below the kernel's argument-length limit.
    for chunk in paths.chunks(500) {
        let text = crate::tool::checked(
            crate::nixcmd::command("nix-store")
                .args(["--check-validity", "--print-invalid"])
                .args(chunk),
        )
        .map_err(|e| FetchError::Validity(e.to_string()))?;
        out.extend(text.lines().map(str::to_string));
    }
    Ok(out)
}

/// Puts the bootstrap busybox into the store, unpacked from its .deb (which
/// must be in the store already: it is one of the lock's packages). Its
/// store path only exists if the NAR hash is the one pinned in the lock.
/// Returns the store path and whether it had to be added.
pub fn add_bootstrap(lock: &Lock, tmp_dir: &Path) -> Result<Option<(String, bool)>, FetchError> {
    use crate::toolchain::{busybox_from_deb, BOOTSTRAP_MEMBER, BOOTSTRAP_STORE_NAME};
    let Some(b) = &lock.bootstrap else {
        return Ok(None);
    };
    let path = b.store_path();
    if nixstore::is_valid(&path) {
        return Ok(Some((path, false)));
    }
    let fail = |m: String| FetchError::Bootstrap(format!("{} ({}): {m}", b.package, b.arch));
    let pkg = lock
        .table(&b.release, b.arch)
        .and_then(|m| m.get(&b.package))
        .ok_or_else(|| fail("no entry in the lock's packages".into()))?;
    let deb = pkg.store_path(&b.package);
    let bytes = std::fs::read(&deb).map_err(|e| fail(format!("reading {deb}: {e}")))?;
    let busybox = busybox_from_deb(&b.package, &bytes).map_err(|e| fail(e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("bootstrap-")
        .tempdir_in(tmp_dir)
        .map_err(|error| FetchError::TempDir {
            path: tmp_dir.to_path_buf(),
            error,
        })?;
    let root = dir.path().join(BOOTSTRAP_STORE_NAME);
    let file = root.join(BOOTSTRAP_MEMBER);
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(file.parent().expect("bin/"))?;
        std::fs::write(&file, &busybox)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
    };
    write().map_err(|e| fail(format!("writing {}: {e}", file.display())))?;
    nixstore::add_fixed_recursive(&root, &path).map_err(|error| FetchError::Store {
        package: b.package.clone(),
        error,
    })?;
    Ok(Some((path, true)))
}

/// Fetches `items` that are not yet in the store.
pub async fn fetch(
    http: &Http,
    mirrors: &Mirrors,
    items: Vec<Item>,
    opts: &Options,
) -> Result<Report, FetchError> {
    let start = Instant::now();
    let paths: Vec<String> = items.iter().map(|i| i.store_path.clone()).collect();
    let invalid: std::collections::BTreeSet<String> = invalid_paths(&paths)?.into_iter().collect();
    let mut bases: BTreeMap<String, SuiteSource> = BTreeMap::new();
    let mut todo = Vec::new();
    let mut packages = Vec::new();
    for item in items {
        if !invalid.contains(&item.store_path) {
            packages.push(fetched(&item, "present"));
            continue;
        }
        if !bases.contains_key(&item.package.suite) {
            bases.insert(
                item.package.suite.clone(),
                mirrors.suite(&item.package.suite)?,
            );
        }
        let url = format!(
            "{}/{}",
            bases[&item.package.suite].base, item.package.filename
        );
        todo.push((item, url));
    }
    let present = packages.len();
    if todo.is_empty() {
        return Ok(Report {
            fetched: 0,
            present,
            bytes: 0,
            seconds: start.elapsed().as_secs_f64(),
            packages,
            crates: BTreeMap::new(),
            wheels: Default::default(),
            bootstrap: None,
            seed: None,
        });
    }
    std::fs::create_dir_all(&opts.tmp_dir).map_err(|error| FetchError::TempDir {
        path: opts.tmp_dir.clone(),
        error,
    })?;
    let dir = tempfile::Builder::new()
        .prefix("fetch-")
        .tempdir_in(&opts.tmp_dir)
        .map_err(|error| FetchError::TempDir {
            path: opts.tmp_dir.clone(),
            error,
        })?;
    let total: u64 = todo.iter().map(|(i, _)| i.package.size).sum();
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} fetching .debs {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_length(total);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (count, mut done) = (todo.len(), 0usize);
    bar.set_message(format!("0/{count}"));
    let results: Vec<(Item, Result<Downloaded, FetchError>)> = futures_util::stream::iter(todo)
        .map(|(item, url)| {
            let (bar, dir) = (bar.clone(), dir.path().to_path_buf());
            async move {
                let r = download(http, &item, &url, &dir, &bar, opts.snapshot.as_ref()).await;
                (item, r)
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .inspect(|_| {
            done += 1;
            bar.set_message(format!("{done}/{count}"));
        })
        .collect()
        .await;
    bar.finish_and_clear();
    let mut vanished = Vec::new();
    let mut errors = Vec::new();
    let mut bytes = 0;
    let mut verified = Vec::new();
    for (item, r) in results {
        match r {
            Ok(d) => {
                bytes += d.bytes;
                verified.push((item, d.from_snapshot));
            }
            Err(FetchError::Download {
                error: HttpError::NotFound { .. },
                ..
            }) => vanished.push(item.label()),
            Err(e) => errors.push(e),
        }
    }
    // What verified goes into the store even when something else failed:
    // a retry fetches only the rest.
    let files: Vec<(PathBuf, String)> = verified
        .iter()
        .map(|(i, _)| (dir.path().join(&i.store_name), i.store_path.clone()))
        .collect();
    let added = tokio::task::spawn_blocking(move || nixstore::add_fixed_flat_all(&files))
        .await
        .map_err(|e| FetchError::Validity(e.to_string()))?;
    let failed_at = match added {
        Ok(()) => verified.len(),
        Err((i, error)) => {
            errors.push(FetchError::Store {
                package: verified[i].0.label(),
                error,
            });
            i
        }
    };
    for (item, from_snapshot) in &verified[..failed_at] {
        packages.push(fetched(
            item,
            if *from_snapshot {
                "snapshot"
            } else {
                "fetched"
            },
        ));
    }
    drop(dir);
    vanished.sort();
    if !vanished.is_empty() {
        return Err(FetchError::Stale {
            vanished,
            snapshot_tried: opts.snapshot.is_some(),
            others: errors,
        });
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.remove(0)),
        _ => return Err(FetchError::Many(errors)),
    }
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(Report {
        fetched: failed_at,
        present,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        packages,
        crates: BTreeMap::new(),
        wheels: Default::default(),
        bootstrap: None,
        seed: None,
    })
}

fn fetched(item: &Item, status: &'static str) -> Fetched {
    Fetched {
        name: item.name.clone(),
        version: item.package.version.clone(),
        archs: item.archs.clone(),
        store_path: item.store_path.clone(),
        status,
    }
}

/// Downloads one .deb (retrying transient failures) into `dir` under its
/// store name and verifies it. Returns the bytes downloaded.
async fn download(
    http: &Http,
    item: &Item,
    url: &str,
    dir: &Path,
    bar: &indicatif::ProgressBar,
    snapshot: Option<&Snapshot>,
) -> Result<Downloaded, FetchError> {
    let path = dir.join(&item.store_name);
    let label = item.label();
    let (url, (digest, size), from_snapshot) = match (
        get_with_retries(http, url, &path, item, bar).await,
        snapshot,
    ) {
        (
            Err(FetchError::Download {
                error: HttpError::NotFound { .. },
                ..
            }),
            Some(snapshot),
        ) => {
            let (u, got) = from_snapshot_archive(http, snapshot, item, &path, bar).await?;
            (u, got, true)
        }
        (got, _) => (url.to_string(), got?, false),
    };
    let expected = item.package.size;
    if size != expected {
        let _ = std::fs::remove_file(&path);
        let actual = if size > expected {
            format!("more than {expected}")
        } else {
            size.to_string()
        };
        return Err(FetchError::SizeMismatch {
            package: label,
            url,
            expected,
            actual,
        });
    }
    if digest.hex() != item.package.sha256 {
        let _ = std::fs::remove_file(&path);
        return Err(FetchError::Mismatch {
            package: label,
            url,
            expected: item.package.sha256.clone(),
            actual: digest.hex(),
        });
    }
    // Verified; added to the store with the others (one process per batch).
    Ok(Downloaded {
        bytes: size,
        from_snapshot,
    })
}

/// GETs a file the mirror no longer has from the snapshot archive: the
/// first of its URLs that answers, and what it got; else the last error.
async fn from_snapshot_archive(
    http: &Http,
    snapshot: &Snapshot,
    item: &Item,
    path: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<(String, (Digest, u64)), FetchError> {
    let urls = snapshot
        .urls(&item.package.suite, &item.package.filename)
        .ok_or_else(|| FetchError::NoSnapshotTime {
            package: item.label(),
            suite: item.package.suite.clone(),
        })?;
    let mut last = None;
    for u in urls {
        match get_with_retries(http, &u, path, item, bar).await {
            Ok(got) => return Ok((u, got)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("a snapshot has two URLs per file"))
}

/// A verified download, waiting to be added to the store.
struct Downloaded {
    bytes: u64,
    /// From the snapshot archive, the mirror having moved on.
    from_snapshot: bool,
}

/// GETs `url` into `path`, retrying transient failures; the file is
/// removed when every attempt failed.
async fn get_with_retries(
    http: &Http,
    url: &str,
    path: &Path,
    item: &Item,
    bar: &indicatif::ProgressBar,
) -> Result<(Digest, u64), FetchError> {
    let label = item.label();
    let mut attempt = 1;
    loop {
        match stream_to(http, url, path, item.package.size, bar, &label).await {
            Err(Attempt::Transient(_)) if attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(http.delay(attempt)).await;
            }
            Err(Attempt::Transient(e)) | Err(Attempt::Fatal(e)) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            Ok(v) => return Ok(v),
        }
    }
}

enum Attempt {
    Transient(FetchError),
    Fatal(FetchError),
}

/// One attempt: GET `url` into `path`, hashing as it streams. Stops reading
/// one byte past `limit` (the lock's size): more is already a mismatch.
async fn stream_to(
    http: &Http,
    url: &str,
    path: &Path,
    limit: u64,
    bar: &indicatif::ProgressBar,
    label: &str,
) -> Result<(Digest, u64), Attempt> {
    let wrap = |e: HttpError| {
        let transient = e.is_transient();
        let err = FetchError::Download {
            package: label.to_string(),
            error: e,
        };
        if transient {
            Attempt::Transient(err)
        } else {
            Attempt::Fatal(err)
        }
    };
    let io = |error: std::io::Error| {
        Attempt::Fatal(FetchError::Io {
            package: label.to_string(),
            path: path.to_path_buf(),
            error,
        })
    };
    let resp = http.get(url).await.map_err(wrap)?;
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut n: u64 = 0;
    let mut body = resp.bytes_stream();
    let mut counted: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Take back what this attempt added to the bar; the retry starts over.
                bar.set_position(bar.position().saturating_sub(counted));
                return Err(wrap(transport(url, &e)));
            }
        };
        let take = if n + chunk.len() as u64 > limit + 1 {
            (limit + 1 - n) as usize
        } else {
            chunk.len()
        };
        hasher.update(&chunk[..take]);
        file.write_all(&chunk[..take]).await.map_err(io)?;
        n += take as u64;
        let shown = take.min(limit.saturating_sub(counted) as usize) as u64;
        bar.inc(shown);
        counted += shown;
        if n > limit {
            break;
        }
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok((Digest(hasher.finalize().into()), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(version: &str, arch: &str, sha: &str) -> Package {
        Package {
            version: version.into(),
            architecture: arch.into(),
            source: "s".into(),
            source_version: version.into(),
            suite: "bookworm".into(),
            filename: format!("pool/main/x_{version}_{arch}.deb"),
            sha256: sha.into(),
            size: 1,
        }
    }

    #[test]
    fn arch_all_files_are_fetched_once() {
        let all = pkg("1.0", "all", &"aa".repeat(32));
        let amd = pkg("1.0", "amd64", &"bb".repeat(32));
        let arm = pkg("1.0", "arm64", &"cc".repeat(32));
        let list = items(vec![
            (Arch::Amd64, "tzdata".to_string(), &all),
            (Arch::Arm64, "tzdata".to_string(), &all),
            (Arch::Amd64, "libc6".to_string(), &amd),
            (Arch::Arm64, "libc6".to_string(), &arm),
        ]);
        assert_eq!(list.len(), 3);
        let tz = list.iter().find(|i| i.name == "tzdata").unwrap();
        assert_eq!(tz.archs, [Arch::Amd64, Arch::Arm64]);
        assert_eq!(tz.store_name, "tzdata_1.0_all.deb");
        assert_eq!(tz.to_string(), "tzdata 1.0 (amd64, arm64)");
    }

    #[test]
    fn stale_message_lists_everything() {
        let e = FetchError::Stale {
            vanished: vec!["a 1 (amd64)".into(), "b 2 (arm64)".into()],
            others: vec![],
            snapshot_tried: false,
        };
        assert_eq!(e.to_string(), "kiln.lock is stale: these pinned .debs are gone from the mirror: a 1 (amd64), b 2 (arm64); run `kiln lock --update`, or fetch them as they were from a snapshot archive: --snapshot URL (KILN_SNAPSHOT)");
        let e = FetchError::Stale {
            vanished: vec!["a 1 (amd64)".into()],
            others: vec![],
            snapshot_tried: true,
        };
        assert_eq!(e.to_string(), "kiln.lock is stale: these pinned .debs are gone from the mirror and from the snapshot archive: a 1 (amd64); run `kiln lock --update`");
    }

    #[test]
    fn snapshot_urls_name_the_archive_and_the_times_around_the_index() {
        // A root on loopback that nothing serves: only the URLs are made.
        let root = "http://127.0.0.1:1";
        let snap = Snapshot {
            root: root.into(),
            times: BTreeMap::from([
                ("bookworm".to_string(), 1_783_764_997),
                ("bookworm-security".to_string(), 1_783_764_997),
            ]),
        };
        assert_eq!(snapshot_id(1_783_764_997), "20260711T101637Z");
        assert_eq!(
            snap.urls("bookworm", "pool/main/t/tzdata/tzdata_1_all.deb")
                .unwrap(),
            ["20260711T161637Z", "20260711T101637Z"]
                .map(|t| format!("{root}/archive/debian/{t}/pool/main/t/tzdata/tzdata_1_all.deb"))
        );
        assert!(snap.urls("bookworm-security", "pool/x.deb").unwrap()[0]
            .starts_with(&format!("{root}/archive/debian-security/")));
        assert!(snap.urls("bookworm-updates", "pool/x.deb").is_none());
    }
}
