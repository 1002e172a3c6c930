//! `kiln push` / `kiln pull` against a real
//! registry (Debian's docker-registry, distribution 2.8, started on
//! 127.0.0.1 by the test), read back by skopeo and umoci, signatures under
//! cosign's tags and the referrers tag schema (distribution 2.8 has no
//! referrers API), and `nix run .#verify` against the registry reference.

mod common;

use common::registry::{self, Fault, FaultProxy, Registry, TokenGate};
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const PASSWORD_ENV: (&str, &str) = ("COSIGN_PASSWORD", "kiln-e2e-registry");

fn kiln_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut cmd = kiln_cmd(&project(), args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("running kiln");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// `kiln push SRC TARGET --json EXTRA...`, which must succeed; the report.
fn push(src: &Path, target: &str, extra: &[&str]) -> Value {
    let mut args = vec!["push", src.to_str().unwrap(), target, "--json"];
    args.extend_from_slice(extra);
    let out = kiln(&args);
    assert!(
        out.status.success(),
        "kiln push {target} failed:\n{}",
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("push report")
}

fn push_fails(src: &Path, target: &str, extra: &[&str]) -> String {
    let mut args = vec!["push", src.to_str().unwrap(), target];
    args.extend_from_slice(extra);
    let out = kiln(&args);
    assert!(
        !out.status.success(),
        "kiln push {target} should have failed:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// The digest of the image index a layout holds (its first index entry).
fn index_digest(layout: &Path) -> String {
    let v = read_json(&layout.join("index.json"));
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mediaType"] == "application/vnd.oci.image.index.v1+json")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// (arch, digest) of the platform manifests under a layout's index.
fn platforms(layout: &Path) -> Vec<(String, String)> {
    platform_manifests(layout)
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn scratch_plus() -> PathBuf {
    build(&["scratch-plus"]).remove(0)
}

fn nix_verify(reference: &str, key: &Path, env: &[(&str, &str)]) -> Output {
    nix_verify_signed_for(reference, key, env, None)
}

/// [`nix_verify`] of an image read under another name than the repository
/// its signatures name (`--signed-repository`).
fn nix_verify_signed_for(
    reference: &str,
    key: &Path,
    env: &[(&str, &str)],
    signed_repository: Option<&str>,
) -> Output {
    let mut cmd = Command::new("nix");
    cmd.current_dir(project())
        .args(["run", ".#verify", "--"])
        .arg(reference)
        .arg("--key")
        .arg(key);
    if let Some(r) = signed_repository {
        cmd.args(["--signed-repository", r]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running nix run .#verify")
}

#[test]
fn push_then_pull_round_trips_and_skopeo_and_umoci_read_it() {
    let out = scratch_plus();
    let reg = Registry::start();
    let target = format!("{}/kiln/scratch-plus:latest", reg.host());
    let report = push(&out, &target, &[]);
    let digest = index_digest(&out);
    assert_eq!(report["digest"], digest.as_str(), "{report}");
    assert_eq!(
        reg.tag_digest("kiln/scratch-plus", "latest"),
        Some(digest.clone())
    );

    // skopeo reads the index for both architectures.
    let raw: Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    let archs: Vec<&str> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    for arch in ["amd64", "arm64"] {
        let info: Value = serde_json::from_str(&run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &format!("docker://{target}"),
        ])))
        .unwrap();
        assert_eq!(info["Architecture"], arch);
        assert_eq!(
            info["Digest"],
            digest.as_str(),
            "skopeo reports the index digest"
        );
        let want = platforms(&out)
            .into_iter()
            .find(|(a, _)| a == arch)
            .unwrap();
        let layers: Vec<String> = info["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        let m = read_json(&blob(&out, &want.1));
        let built_layers: Vec<String> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(layers, built_layers, "{arch} layers");
    }

    // skopeo copies it out byte for byte.
    let work = scratch("e2e-registry-roundtrip");
    let copied = work.join("skopeo");
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:latest", copied.display()),
    ]));
    assert_eq!(index_digest(&copied), digest);

    // kiln pulls it back: same digests, every blob, readable by umoci.
    let pulled = work.join("pulled");
    let o = kiln(&["pull", &target, pulled.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pr: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pr["digest"], digest.as_str());
    assert_eq!(index_digest(&pulled), digest);
    assert_eq!(platforms(&pulled), platforms(&out));
    let mut built_blobs: Vec<_> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut pulled_blobs: Vec<_> = std::fs::read_dir(pulled.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    built_blobs.sort();
    pulled_blobs.sort();
    assert_eq!(pulled_blobs, built_blobs);
    for arch in ["amd64", "arm64"] {
        let rootfs = unpack(&pulled, &format!("latest-{arch}"), &work);
        assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    }
    // And by digest, under another name.
    let by_digest = work.join("by-digest");
    let o = kiln(&[
        "pull",
        &format!("{}/kiln/scratch-plus@{digest}", reg.host()),
        by_digest.to_str().unwrap(),
        "--name",
        "pinned",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = read_json(&by_digest.join("index.json"));
    assert_eq!(l["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        l["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "pinned"
    );
}

#[test]
fn a_second_push_sends_no_blob() {
    let out = scratch_plus();
    let reg = Registry::start();
    let target = format!("{}/kiln/twice:latest", reg.host());
    let first = push(&out, &target, &[]);
    let uploaded = first["blobsUploaded"].as_array().unwrap().len();
    assert!(uploaded >= 3, "{first}");
    // The registry saw one upload per blob.
    assert_eq!(
        reg.requests_since(0, "PUT", "/v2/kiln/twice/blobs/uploads/")
            .len(),
        uploaded
    );
    let mark = reg.log().len();
    let second = push(&out, &target, &[]);
    assert_eq!(
        second["blobsUploaded"].as_array().unwrap().len(),
        0,
        "{second}"
    );
    assert_eq!(second["blobsPresent"].as_array().unwrap().len(), uploaded);
    assert_eq!(second["manifestsPushed"].as_array().unwrap().len(), 0);
    assert_eq!(second["tagsUnchanged"], serde_json::json!(["latest"]));
    // Nothing was uploaded or written: no upload session, no manifest PUT.
    for (method, path) in [
        ("POST", "/blobs/uploads/"),
        ("PATCH", "/blobs/uploads/"),
        ("PUT", "/blobs/uploads/"),
        ("PUT", "/manifests/"),
    ] {
        let seen = reg.requests_since(mark, method, path);
        assert!(
            seen.is_empty(),
            "second push sent {method} {path}: {seen:?}"
        );
    }
}

#[test]
fn a_push_that_dies_midway_leaves_the_tag_where_it_was() {
    let [base, debug]: [PathBuf; 2] = build(&["scratch-plus", "scratch-plus-debug"])
        .try_into()
        .unwrap();
    let (old, new) = (index_digest(&base), index_digest(&debug));
    assert_ne!(old, new);
    let reg = Registry::start();
    let repo = "kiln/midway";
    push(&base, &format!("{}/{repo}:stable", reg.host()), &[]);

    // The registry goes away when the first manifest is pushed: every blob
    // of the new image is in, no manifest, and the tag must not move.
    let proxy = FaultProxy::start(reg.addr, Fault::DieAt(format!("PUT /v2/{repo}/manifests/")));
    let err = push_fails(
        &debug,
        &format!("{}/{repo}:stable", proxy.host()),
        &["--retries", "2"],
    );
    assert!(proxy.is_dead());
    assert!(
        err.contains("pushing manifest sha256:") && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    assert_eq!(reg.tag_digest(repo, "stable"), Some(old.clone()));
    assert_eq!(reg.manifest(repo, &new).status, 404);
    let blob_puts = proxy
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
        .count();
    assert!(blob_puts > 0, "the push died before any blob was sent");

    // Pushing again (straight to the registry) reuses what arrived.
    let again = push(&debug, &format!("{}/{repo}:stable", reg.host()), &[]);
    assert!(
        !again["blobsPresent"].as_array().unwrap().is_empty(),
        "{again}"
    );
    assert_eq!(reg.tag_digest(repo, "stable"), Some(new));
}

#[test]
fn a_tampered_layout_pushes_nothing() {
    let out = scratch_plus();
    let work = scratch("e2e-registry-tampered");
    let copy = work.join("layout");
    run(Command::new("cp").arg("-r").arg(&out).arg(&copy));
    make_writable(&copy);
    let reg = Registry::start();
    let repo = "kiln/tampered";
    let tag_before = {
        // Another image under the tag first (the debug variant).
        let debug = build(&["scratch-plus-debug"]).remove(0);
        push(&debug, &format!("{}/{repo}:latest", reg.host()), &[]);
        index_digest(&debug)
    };
    // One byte of the largest layer.
    let (arch, manifest) = platforms(&copy).remove(0);
    let m = read_json(&blob(&copy, &manifest));
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = blob(&copy, &layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let mark = reg.log().len();
    let err = push_fails(&copy, &format!("{}/{repo}:latest", reg.host()), &[]);
    assert!(
        err.contains(&layer) && err.contains("does not match its digest"),
        "{arch}: {err}"
    );
    assert!(
        reg.requests_since(mark, "POST", "/blobs/uploads/")
            .is_empty()
            && reg.requests_since(mark, "PUT", "/").is_empty(),
        "a damaged layout must not write anything (no upload, no manifest)"
    );
    assert_eq!(reg.tag_digest(repo, "latest"), Some(tag_before));
}

#[test]
fn transient_registry_errors_are_retried() {
    let out = scratch_plus();
    let reg = Registry::start();
    // The first three connections get 503 Service Unavailable.
    let proxy = FaultProxy::start(reg.addr, Fault::Unavailable(3));
    let report = push(&out, &format!("{}/kiln/flaky:latest", proxy.host()), &[]);
    assert!(report["retries"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(
        reg.tag_digest("kiln/flaky", "latest"),
        Some(index_digest(&out))
    );
    // Too many failures in a row: a clear error, nothing tagged.
    let proxy = FaultProxy::start(reg.addr, Fault::Unavailable(1000));
    let err = push_fails(
        &out,
        &format!("{}/kiln/down:latest", proxy.host()),
        &["--retries", "3"],
    );
    assert!(
        err.contains("503") && err.contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(reg.tag_digest("kiln/down", "latest"), None);
}

/// A proxy in front of `reg` that answers the first `times` manifest PUTs
/// to `repo` itself, with `status` and `body`.
fn refusing_manifest_puts(
    reg: &Registry,
    repo: &str,
    times: usize,
    status: u16,
    body: &'static str,
) -> FaultProxy {
    FaultProxy::start(
        reg.addr,
        Fault::ErrorAt {
            request: format!("PUT /v2/{repo}/manifests/"),
            times,
            status,
            body,
        },
    )
}

#[test]
fn a_500_on_the_first_manifest_put_is_retried_and_a_500_on_every_one_moves_no_tag() {
    let [base, debug]: [PathBuf; 2] = build(&["scratch-plus", "scratch-plus-debug"])
        .try_into()
        .unwrap();
    let reg = Registry::start();
    let repo = "kiln/five-hundred";
    // Once: the push retries that manifest and completes.
    let proxy = refusing_manifest_puts(&reg, repo, 1, 500, "");
    let report = push(&base, &format!("{}/{repo}:stable", proxy.host()), &[]);
    assert!(report["retries"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(reg.tag_digest(repo, "stable"), Some(index_digest(&base)));

    // Always: a clear error naming the status, and the tag stays on the
    // image it held.
    let proxy = refusing_manifest_puts(&reg, repo, usize::MAX, 500, "");
    let err = push_fails(
        &debug,
        &format!("{}/{repo}:stable", proxy.host()),
        &["--retries", "2"],
    );
    assert!(
        err.contains("pushing manifest sha256:")
            && err.contains("500")
            && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    assert_eq!(reg.tag_digest(repo, "stable"), Some(index_digest(&base)));
    assert_eq!(reg.manifest(repo, &index_digest(&debug)).status, 404);
    // A clean re-run completes.
    push(&debug, &format!("{}/{repo}:stable", reg.host()), &[]);
    assert_eq!(reg.tag_digest(repo, "stable"), Some(index_digest(&debug)));
}

/// What distribution answers a manifest whose blob's link another push is
/// rewriting at that moment (seen when two pushes of one image raced).
const BLOB_BEING_LINKED: &str = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:dcac4b6d7bd9f19cf53bb0f4b4bdfac360834ebd8f1f3b2ee7f93cd37a424e65"}]}"#;

#[test]
fn a_manifest_refused_for_blobs_the_registry_holds_is_sent_again() {
    let [base, debug]: [PathBuf; 2] = build(&["scratch-plus", "scratch-plus-debug"])
        .try_into()
        .unwrap();
    let reg = Registry::start();
    let repo = "kiln/being-linked";
    // The first image manifest is refused once, as during another push's
    // link: its blobs are there, so it is sent again and the push completes.
    let proxy = refusing_manifest_puts(&reg, repo, 1, 400, BLOB_BEING_LINKED);
    let out = kiln(&[
        "push",
        base.to_str().unwrap(),
        &format!("{}/{repo}:latest", proxy.host()),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the registry did not find blobs it holds"),
        "{}",
        stderr(&out)
    );
    assert_eq!(reg.tag_digest(repo, "latest"), Some(index_digest(&base)));

    // Refused every time: the push gives up with the registry's words, and
    // no tag moves.
    let proxy = refusing_manifest_puts(&reg, repo, usize::MAX, 400, BLOB_BEING_LINKED);
    let err = push_fails(
        &debug,
        &format!("{}/{repo}:latest", proxy.host()),
        &["--retries", "2"],
    );
    assert!(
        err.contains("pushing manifest sha256:") && err.contains("MANIFEST_BLOB_UNKNOWN"),
        "{err}"
    );
    assert_eq!(reg.tag_digest(repo, "latest"), Some(index_digest(&base)));
}

/// What of upload sessions for `repo` is still on the registry's disk:
/// the data and start time of an open session (a cancelled one of this
/// registry leaves only its hash state behind).
fn open_upload_files(reg: &Registry, repo: &str) -> Vec<String> {
    let dir = reg
        .data_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads");
    if !dir.exists() {
        return Vec::new();
    }
    run(Command::new("find")
        .arg(&dir)
        .args(["-name", "data", "-o", "-name", "startedat"]))
    .lines()
    .map(String::from)
    .collect()
}

#[test]
fn a_blob_upload_that_fails_cancels_its_session() {
    let out = scratch_plus();
    let reg = Registry::start();
    let repo = "kiln/cancelled";
    // Every blob PUT is answered 500 by the proxy: each upload session the
    // registry opened must be cancelled, first try and retries alike.
    let proxy = FaultProxy::start(
        reg.addr,
        Fault::ErrorAt {
            request: format!("PUT /v2/{repo}/blobs/uploads/"),
            times: usize::MAX,
            status: 500,
            body: "",
        },
    );
    let err = push_fails(
        &out,
        &format!("{}/{repo}:latest", proxy.host()),
        &["--retries", "2"],
    );
    assert!(
        err.contains("500") && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    let requests = proxy.requests.lock().unwrap().clone();
    let of = |method: &str| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r.starts_with(method) && r.contains("/blobs/uploads/"))
            .map(|r| r.split(' ').nth(1).unwrap().to_string())
            .collect()
    };
    assert!(of("PUT ").len() >= 2, "{requests:#?}");
    assert_eq!(of("DELETE ").len(), of("PUT ").len(), "{requests:#?}");
    // Each session is closed: the registry no longer knows its upload URL.
    for target in of("DELETE ") {
        assert_eq!(reg.get(&target, &[]).status, 404, "{target}");
    }
    assert_eq!(open_upload_files(&reg, repo), Vec::<String>::new());
    assert_eq!(reg.tag_digest(repo, "latest"), None);
    // Straight to the registry, the push completes and leaves no session.
    push(&out, &format!("{}/{repo}:latest", reg.host()), &[]);
    assert_eq!(open_upload_files(&reg, repo), Vec::<String>::new());
    assert_eq!(reg.tag_digest(repo, "latest"), Some(index_digest(&out)));
}

#[test]
fn a_registry_that_answers_every_request_late_still_serves_push_and_pull() {
    let out = scratch_plus();
    let reg = Registry::start();
    // 300 ms before every response: slow, but far within kiln's timeouts
    // (15 s to connect, 30 s for data), so nothing fails or is retried.
    let proxy = FaultProxy::start(reg.addr, Fault::Delay(Duration::from_millis(300)));
    let target = format!("{}/kiln/slow:latest", proxy.host());
    let report = push(&out, &target, &[]);
    assert_eq!(report["retries"].as_u64(), Some(0), "{report}");
    assert_eq!(
        reg.tag_digest("kiln/slow", "latest"),
        Some(index_digest(&out))
    );
    let pulled = scratch("e2e-registry-slow").join("pulled");
    let o = kiln(&["pull", &target, pulled.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(index_digest(&pulled), index_digest(&out));
    let delayed = proxy.requests.lock().unwrap().len();
    assert!(
        delayed >= 10,
        "only {delayed} requests went through the proxy"
    );
}

#[test]
fn ctrl_c_during_a_pull_leaves_nothing_and_a_killed_pulls_leftover_is_swept() {
    let out = scratch_plus();
    let reg = Registry::start();
    let target_path = "kiln/interrupted";
    push(&out, &format!("{}/{target_path}:latest", reg.host()), &[]);
    // The registry hangs on the first blob: the pull is mid-transfer.
    let proxy = FaultProxy::start(
        reg.addr,
        Fault::StallAt(format!("GET /v2/{target_path}/blobs/")),
    );
    let work = scratch("e2e-registry-pull-interrupted");
    let dest = work.join("pulled");
    let source = format!("{}/{target_path}:latest", proxy.host());
    let child = kiln_cmd(&project(), &["pull", &source, dest.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let partial = || -> Vec<String> {
        std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    while partial().is_empty()
        || !proxy
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("/blobs/"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pull never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        partial()[0].starts_with(".pulled.partial-"),
        "{:?}",
        partial()
    );
    // SAFETY: a plain kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted; removed 1 unfinished"),
        "{}",
        stderr(&o)
    );
    assert!(partial().is_empty(), "left behind: {:?}", partial());

    // What a killed pull (SIGKILL: no chance to clean up) leaves is swept
    // by the next pull to the same place, which then succeeds.
    let stale = work.join(".pulled.partial-4194303");
    std::fs::create_dir_all(stale.join("blobs")).unwrap();
    let o = kiln(&[
        "pull",
        &format!("{}/{target_path}:latest", reg.host()),
        dest.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(partial(), ["pulled"]);
}

/// `kiln args...` on a pseudo-terminal (util-linux `script`): what a
/// person at a terminal sees on standard error and standard output.
fn on_a_terminal(args: &[&str]) -> String {
    let mut line = format!("{} --project {}", kiln_bin().display(), project().display());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{line}: {}", stdout(&o));
    stdout(&o)
}

#[test]
fn push_and_pull_show_progress_on_a_terminal_only() {
    scratch_plus();
    let reg = Registry::start();
    let target = format!("{}/kiln/progress:latest", reg.host());
    let shown = on_a_terminal(&["push", "scratch-plus", &target]);
    assert!(
        shown.contains("pushing") && shown.contains("KiB"),
        "{shown}"
    );
    let work = scratch("e2e-registry-progress");
    let dest = work.join("pulled");
    let shown = on_a_terminal(&["pull", &target, dest.to_str().unwrap()]);
    assert!(
        shown.contains("pulling") && shown.contains(" B/s"),
        "{shown}"
    );
    // --quiet, --json and a pipe show none.
    let again = work.join("again");
    let quiet = on_a_terminal(&["pull", "-q", &target, again.to_str().unwrap()]);
    assert!(!quiet.contains(" B/s"), "{quiet}");
    let o = kiln(&["push", "scratch-plus", &target]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains(" B/s"), "{}", stderr(&o));
}

#[test]
fn pull_checks_every_blob_and_leaves_nothing_when_one_is_wrong() {
    let out = scratch_plus();
    let reg = Registry::start();
    let target = format!("{}/kiln/corrupt:latest", reg.host());
    push(&out, &target, &[]);
    // Damage a layer in the registry's own storage (distribution serves it as is).
    let (_, manifest) = platforms(&out).remove(1);
    let m = read_json(&blob(&out, &manifest));
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let h = hex(&layer);
    let stored = reg
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&h[..2])
        .join(h)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, bytes).unwrap();

    let work = scratch("e2e-registry-pull-corrupt");
    let dest = work.join("pulled");
    let o = kiln(&["pull", &target, dest.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&layer), "{err}");
    assert!(
        !dest.exists(),
        "a failed pull must not leave {}",
        dest.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A directory that is not a layout is never replaced, even with
    // --force: refused up front, naming it and what it holds.
    std::fs::create_dir_all(dest.join(".git/objects")).unwrap();
    std::fs::write(dest.join("notes.txt"), "mine").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["pull", &target, dest.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = kiln(&args);
        assert!(!o.status.success(), "{}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains(dest.to_str().unwrap())
                && err.contains(".git, notes.txt")
                && err.contains("not an OCI image layout"),
            "{err}"
        );
        assert!(dest.join(".git/objects").is_dir() && dest.join("notes.txt").is_file());
    }
    // An existing layout is replaced only with --force, and only by a
    // complete pull.
    std::fs::remove_dir_all(&dest).unwrap();
    let layout = work.join("layout");
    std::fs::create_dir(&layout).unwrap();
    for part in ["blobs", "index.json", "oci-layout"] {
        run(Command::new("cp")
            .arg("-r")
            .arg(out.join(part))
            .arg(&layout));
    }
    make_writable(&layout);
    let o = kiln(&["pull", &target, layout.to_str().unwrap()]);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = kiln(&["pull", &target, layout.to_str().unwrap(), "--force"]);
    assert!(!o.status.success());
    assert_eq!(index_digest(&layout), index_digest(&out));
}

#[test]
fn credentials_and_plain_http_policy() {
    let out = scratch_plus();
    // Basic auth: refused without credentials, accepted with them (stdin or auth file).
    let reg = Registry::start_with_auth();
    let target = format!("{}/kiln/private:latest", reg.host());
    let err = push_fails(&out, &target, &[]);
    assert!(err.contains("requires a user name and password"), "{err}");
    let o = kiln_with(
        &[
            "push",
            out.to_str().unwrap(),
            &target,
            "--username",
            registry::TEST_USER,
            "--password-stdin",
        ],
        &[],
        Some(&format!("{}\n", registry::TEST_PASSWORD)),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let work = scratch("e2e-registry-auth");
    let auth_file = work.join("auth.json");
    {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            registry::TEST_USER,
            registry::TEST_PASSWORD
        ));
        std::fs::write(
            &auth_file,
            serde_json::json!({"auths": {reg.host(): {"auth": token}}}).to_string(),
        )
        .unwrap();
    }
    let dest = work.join("pulled");
    let o = kiln_with(
        &["pull", &target, dest.to_str().unwrap()],
        &[("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap())],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(index_digest(&dest), index_digest(&out));

    // Off loopback kiln speaks HTTPS unless told otherwise: against a
    // plain-HTTP registry that fails, and --insecure makes it work.
    let ip = registry::non_loopback_ip();
    let open = Registry::start_on(ip);
    let target = format!("{}/kiln/remote:latest", open.host());
    let err = push_fails(&out, &target, &["--retries", "1"]);
    assert!(
        err.contains(&format!("https://{}/v2/", open.host())),
        "{err}"
    );
    push(&out, &target, &["--insecure"]);
    assert_eq!(
        open.tag_digest("kiln/remote", "latest"),
        Some(index_digest(&out))
    );
}

/// Copies a manifest (by tag or digest) and its blobs from one repository
/// to another, as someone with push access could; returns its bytes.
fn copy_manifest(reg: &Registry, from: &str, to: &str, reference: &str) -> Vec<u8> {
    let r = reg.manifest(from, reference);
    assert_eq!(r.status, 200, "{from}:{reference}: {}", r.text());
    let m = r.json();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for b in blobs {
        let body = reg.get(&format!("/v2/{from}/blobs/{b}"), &[]).body;
        assert_eq!(reg.put_blob(to, &body), b);
    }
    let media_type = m["mediaType"].as_str().unwrap().to_string();
    let digest = format!("sha256:{}", {
        use sha2::Digest as _;
        ::hex::encode(sha2::Sha256::digest(&r.body))
    });
    let put = reg.put_manifest(to, &digest, &media_type, &r.body);
    assert_eq!(put.status, 201, "{}", put.text());
    r.body
}

/// Points `tag` at `manifest` (its media type read from it).
fn retag(reg: &Registry, repo: &str, tag: &str, manifest: &[u8]) {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    let r = reg.put_manifest(repo, tag, m["mediaType"].as_str().unwrap(), manifest);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_referrer_that_belongs_to_another_repository_is_named_by_pull_and_fails_verify() {
    let work = scratch("e2e-registry-foreign-referrer");
    let reg = Registry::start();
    let (here, there) = ("kiln/ref-here", "kiln/ref-there");
    let (key, signed, foreign) = two_signed_layouts(&work, &reg, here, there);
    push(&signed, &format!("{}/{here}:v1", reg.host()), &[]);
    push(&foreign, &format!("{}/{there}:v1", reg.host()), &[]);
    // The referrers list of the image here gains an entry that exists only
    // in the other repository (the registry has no referrers API, so the
    // list is the sha256-<hex> tag).
    let index = index_digest(&signed);
    let list_tag = format!("sha256-{}", hex(&index));
    let mut list = reg.manifest(here, &list_tag).json();
    let theirs = reg
        .manifest(there, &format!("sha256-{}", hex(&index_digest(&foreign))))
        .json();
    let stranger = theirs["manifests"][0].clone();
    let stranger_digest = stranger["digest"].as_str().unwrap().to_string();
    assert_eq!(reg.manifest(here, &stranger_digest).status, 404);
    list["manifests"].as_array_mut().unwrap().push(stranger);
    // This registry checks that an index's entries are in the repository,
    // so the altered list is served by a proxy in front of it.
    let proxy = FaultProxy::start(
        reg.addr,
        Fault::Answer {
            request: format!("GET /v2/{here}/manifests/{list_tag} "),
            content_type: "application/vnd.oci.image.index.v1+json".into(),
            body: serde_json::to_vec(&list).unwrap(),
        },
    );

    // pull copies what is there and names what is not.
    let pulled = work.join("pulled");
    let source = format!("{}/{here}:v1", proxy.host());
    let o = kiln(&["pull", &source, pulled.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&stranger_digest) && stderr(&o).contains("not in"),
        "{}",
        stderr(&o)
    );
    // verify treats a listed artifact it cannot read as tampering (as for
    // any unreadable signature), names it and fails, in bounded time.
    let started = std::time::Instant::now();
    let o = nix_verify(&source, &key.with_extension("pub"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains(&stranger_digest), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// scratch-plus signed for `first` and scratch-plus-debug for `second`
/// (repositories of `reg`), with one key made under `work`: the key's
/// prefix and the two layouts.
fn two_signed_layouts(
    work: &Path,
    reg: &Registry,
    first: &str,
    second: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let key = work.join("cosign");
    let a = signed_layout(
        "scratch-plus",
        &key,
        work,
        &format!("{}/{first}", reg.host()),
    );
    let b = signed_layout(
        "scratch-plus-debug",
        &key,
        work,
        &format!("{}/{second}", reg.host()),
    );
    (key, a, b)
}

/// Signs `attr` for the repository `repo` (keygen, `kiln build` for the
/// provenance, `kiln sign --reference`) into a layout under `dir`.
fn signed_layout(attr: &str, key_prefix: &Path, dir: &Path, repo: &str) -> PathBuf {
    if !key_prefix.with_extension("key").exists() {
        let o = kiln_with(
            &[
                "keygen",
                "--output-key-prefix",
                key_prefix.to_str().unwrap(),
            ],
            &[PASSWORD_ENV],
            None,
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    build(&[attr]);
    let out = dir.join(format!("{attr}-for-{}", repo.replace(['/', ':'], "_")));
    let o = kiln_with(
        &[
            "sign",
            attr,
            "--key",
            key_prefix.with_extension("key").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--reference",
            repo,
        ],
        &[PASSWORD_ENV],
        None,
    );
    assert!(o.status.success(), "kiln sign {attr}: {}", stderr(&o));
    out
}

#[test]
fn signatures_travel_both_ways_and_verify_against_the_registry() {
    let work = scratch("e2e-registry-signed");
    let reg = Registry::start();
    let repo = "kiln/signed";
    let (key, signed, other) = two_signed_layouts(&work, &reg, repo, "kiln/other");
    let public = key.with_extension("pub");
    let report = push(
        &signed,
        &format!("{}/{repo}:v1", reg.host()),
        &["--signatures"],
    );
    push(&other, &format!("{}/kiln/other:v1", reg.host()), &[]);

    // Signatures name the repository they were made for: pushed anywhere
    // else, a containers policy would reject them, so the push is refused
    // (exit 2) before anything is sent, with the sign command that fixes it.
    let elsewhere = format!("{}/kiln/elsewhere", reg.host());
    let o = kiln(&["push", signed.to_str().unwrap(), &format!("{elsewhere}:v1")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("name {}/{repo} as", reg.host()))
            && err.contains(&format!("--reference {elsewhere}`"))
            && err.contains("--no-signatures"),
        "{err}"
    );
    assert!(reg.tags("kiln/elsewhere").is_empty());
    // Unsigned on purpose, it goes.
    push(&signed, &format!("{elsewhere}:v1"), &["--no-signatures"]);

    let index = index_digest(&signed);
    let mut digests = vec![index.clone()];
    digests.extend(platforms(&signed).into_iter().map(|(_, d)| d));
    let tags = reg.tags(repo);
    for d in &digests {
        // Legacy cosign tags.
        for suffix in [".sig", ".att"] {
            let t = format!("sha256-{}{suffix}", hex(d));
            assert!(tags.contains(&t), "missing tag {t} in {tags:?}");
        }
        // The referrers tag schema: an index of bundle referrers whose
        // subject is this digest, annotated as cosign 3 does.
        let fallback = reg.manifest(repo, &format!("sha256-{}", hex(d)));
        assert_eq!(fallback.status, 200, "no referrers fallback tag for {d}");
        let list = fallback.json();
        let entries = list["manifests"].as_array().unwrap();
        assert!(!entries.is_empty());
        for e in entries {
            assert_eq!(
                e["artifactType"],
                "application/vnd.dev.sigstore.bundle.v0.3+json"
            );
            assert_eq!(
                e["annotations"]["dev.sigstore.bundle.content"],
                "dsse-envelope"
            );
            assert!(e["annotations"]["dev.sigstore.bundle.predicateType"].is_string());
            let m = reg.manifest(repo, e["digest"].as_str().unwrap()).json();
            assert_eq!(m["subject"]["digest"], d.as_str());
            assert_eq!(m["artifactType"], e["artifactType"]);
            assert_eq!(
                m["layers"][0]["mediaType"],
                "application/vnd.dev.sigstore.bundle.v0.3+json"
            );
        }
    }
    assert!(
        report["referrers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["via"] == "tag"),
        "{report}"
    );
    // The tag moved last: after every signature tag.
    let puts: Vec<String> = reg
        .requests_since(0, "PUT", &format!("/v2/{repo}/manifests/"))
        .into_iter()
        .filter(|l| !l.contains("/manifests/sha256:"))
        .collect();
    assert!(
        puts.last().is_some_and(|l| l.contains("/manifests/v1 ")),
        "{puts:#?}"
    );

    // The verifier finds both kinds, over the registry reference.
    let reference = format!("{}/{repo}:v1", reg.host());
    let v = nix_verify(&reference, &public, &[]);
    let text = stdout(&v) + &stderr(&v);
    assert!(v.status.success(), "{text}");
    for d in &digests {
        let line = text
            .lines()
            .find(|l| l.starts_with("✓ signature") && l.contains(&d[..19]))
            .unwrap_or_else(|| panic!("no signature line for {d}:\n{text}"));
        assert!(
            line.contains(&format!("tag sha256-{}", &hex(d)[..12])) && line.contains("referrer"),
            "{line}"
        );
    }

    // A platform manifest, as runtimes and admission controllers resolve
    // it, verifies on its own: its signature, its SBOMs and the
    // provenance, which is attached under every digest it names.
    for (arch, manifest) in platforms(&signed) {
        let by_digest = format!("{}/{repo}@{manifest}", reg.host());
        let v = nix_verify(&by_digest, &public, &[]);
        let text = stdout(&v) + &stderr(&v);
        assert!(v.status.success(), "{arch}: {text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with('✓') && l.contains("provenance")),
            "{arch}: {text}"
        );
    }

    // The tag was resolved once, and the report pins what was verified,
    // in the text and in --json (what a deploy should use).
    let pinned = format!("{}/{repo}@{index}", reg.host());
    assert!(
        text.contains(&format!("Verified reference: {pinned}\n")),
        "{text}"
    );
    let j = kiln(&[
        "verify",
        &format!("docker://{reference}"),
        "--key",
        public.to_str().unwrap(),
        "--json",
    ]);
    assert!(j.status.success(), "{}", stderr(&j));
    let report: Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert_eq!(report["pinned"], pinned.as_str(), "{report:#}");

    // The verifier rides out a registry that answers 503 for a while.
    // Reached under another name than it was signed for, the image's
    // signatures name the wrong repository...
    let flaky = FaultProxy::start(reg.addr, Fault::Unavailable(2));
    let through_proxy = format!("{}/{repo}:v1", flaky.host());
    let v = nix_verify(&through_proxy, &public, &[]);
    let text = stdout(&v);
    assert_eq!(v.status.code(), Some(1), "{text}{}", stderr(&v));
    assert!(
        text.lines().any(|l| l.starts_with('✗')
            && l.contains("identity")
            && l.contains(&format!("kiln sign --reference {}/{repo}", flaky.host()))),
        "{text}"
    );
    // ...unless the verifier is told which one they name.
    let signed_for = format!("{}/{repo}", reg.host());
    let v = nix_verify_signed_for(&through_proxy, &public, &[], Some(&signed_for));
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    assert!(
        stdout(&v).contains(&format!("its signatures name {signed_for}, where it is")),
        "{}",
        stdout(&v)
    );
    assert!(flaky.connections.load(std::sync::atomic::Ordering::SeqCst) > 2);

    // A pulled copy verifies offline, the same way.
    let pulled = work.join("pulled");
    let o = kiln(&["pull", &reference, pulled.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pr: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        pr["tags"].as_array().unwrap().len(),
        2 * digests.len(),
        "{pr}"
    );
    let v = nix_verify(pulled.to_str().unwrap(), &public, &[]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));

    // Tampering in the registry by someone who can push: the index's
    // `.sig` tag and its referrers fallback tag re-pointed at the
    // signatures of another image (same key, valid signatures, wrong
    // digest). Both ways of finding a signature now lead to the wrong
    // image, and verification must fail.
    let other_index = index_digest(&other);
    let sig = copy_manifest(
        &reg,
        "kiln/other",
        repo,
        &format!("sha256-{}.sig", hex(&other_index)),
    );
    retag(&reg, repo, &format!("sha256-{}.sig", hex(&index)), &sig);
    let other_refs = reg
        .manifest("kiln/other", &format!("sha256-{}", hex(&other_index)))
        .json();
    for e in other_refs["manifests"].as_array().unwrap() {
        copy_manifest(&reg, "kiln/other", repo, e["digest"].as_str().unwrap());
    }
    retag(
        &reg,
        repo,
        &format!("sha256-{}", hex(&index)),
        &serde_json::to_vec(&other_refs).unwrap(),
    );
    let v = nix_verify(&reference, &public, &[]);
    let text = stdout(&v) + &stderr(&v);
    assert!(!v.status.success(), "foreign signatures must fail:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('✗') && l.contains("signature") && l.contains(&index[..19])),
        "{text}"
    );
    assert!(
        text.contains(&other_index),
        "the report names the digest the signature is for:\n{text}"
    );

    // A damaged layer in the registry's storage fails the blob check.
    let (_, manifest) = platforms(&signed).remove(0);
    let m = reg.manifest(repo, &manifest).json();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let h = hex(&layer);
    let stored = reg
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&h[..2])
        .join(h)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    let v = nix_verify(&format!("{}/kiln/signed@{index}", reg.host()), &public, &[]);
    let text = stdout(&v) + &stderr(&v);
    assert!(!v.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('✗') && l.contains(&layer) && l.contains("does not match")),
        "{text}"
    );
}

#[test]
fn a_second_signer_adds_to_the_signatures_and_removes_none() {
    let work = scratch("e2e-registry-two-signers");
    let (alice, bob) = (work.join("alice"), work.join("bob"));
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(&bob).unwrap();
    let reg = Registry::start();
    let repo = format!("{}/kiln/cosigned", reg.host());
    let by_alice = signed_layout("scratch-plus", &alice.join("cosign"), &alice, &repo);
    let by_bob = signed_layout("scratch-plus", &bob.join("cosign"), &bob, &repo);
    let target = format!("{repo}:v1");
    push(&by_alice, &target, &["--signatures"]);
    let second = push(&by_bob, &target, &["--signatures"]);

    // Every `.sig` and `.att` tag now holds both signers' layers, Alice's first.
    let index = index_digest(&by_alice);
    let mut digests = vec![index.clone()];
    digests.extend(platforms(&by_alice).into_iter().map(|(_, d)| d));
    let merged: Vec<&str> = second["tagsMerged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for d in &digests {
        for suffix in [".sig", ".att"] {
            let tag = format!("sha256-{}{suffix}", hex(d));
            assert!(merged.contains(&tag.as_str()), "{tag} not merged: {second}");
            let m = reg.manifest("kiln/cosigned", &tag).json();
            let theirs = read_layout_doc(&by_alice, &tag);
            let ours = read_layout_doc(&by_bob, &tag);
            let layers = m["layers"].as_array().unwrap();
            let want: Vec<&Value> = theirs["layers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(ours["layers"].as_array().unwrap())
                .collect();
            assert_eq!(layers.iter().collect::<Vec<_>>(), want, "{tag}");
            // The config lists one diffID per layer, as cosign's does.
            let config = reg
                .get(
                    &format!(
                        "/v2/kiln/cosigned/blobs/{}",
                        m["config"]["digest"].as_str().unwrap()
                    ),
                    &[],
                )
                .json();
            assert_eq!(
                config["rootfs"]["diff_ids"].as_array().unwrap().len(),
                layers.len()
            );
        }
    }

    // Either key verifies the image; the other signer's artifacts are
    // reported as ignored, not as failures.
    for key in [&alice, &bob] {
        let v = nix_verify(&target, &key.join("cosign.pub"), &[]);
        let text = stdout(&v) + &stderr(&v);
        assert!(v.status.success(), "{}: {text}", key.display());
        assert!(text.contains("ignored an invalid"), "{text}");
    }

    // Pushing either again writes no tag: both signers' layers are there.
    let mark = reg.log().len();
    for layout in [&by_alice, &by_bob] {
        let again = push(layout, &target, &["--signatures"]);
        assert_eq!(again["tagsMerged"], serde_json::json!([]), "{again}");
    }
    let puts = reg.requests_since(mark, "PUT", "/manifests/");
    assert!(puts.is_empty(), "{puts:?}");

    // A tag that holds something else is not overwritten.
    let tag = format!("sha256-{}.sig", hex(&index));
    let att = reg
        .manifest("kiln/cosigned", &format!("sha256-{}.att", hex(&index)))
        .body;
    retag(&reg, "kiln/cosigned", &tag, &att);
    let err = push_fails(&by_bob, &target, &["--signatures"]);
    assert!(
        err.contains(&tag) && err.contains("will not replace"),
        "{err}"
    );
}

#[test]
fn two_signers_pushing_at_once_lose_no_signature_and_no_referrer() {
    let work = scratch("e2e-registry-concurrent-signers");
    let (alice, bob) = (work.join("alice"), work.join("bob"));
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(&bob).unwrap();
    let reg = Registry::start();
    // The referrer manifests each layout attaches to each digest.
    let referrers = |layout: &Path, d: &str| -> BTreeSet<String> {
        let v = read_json(&layout.join("index.json"));
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mediaType"] == "application/vnd.oci.image.manifest.v1+json")
            .filter(|m| {
                read_json(&blob(layout, m["digest"].as_str().unwrap()))["subject"]["digest"] == d
            })
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect()
    };
    // A race needs luck to show: several rounds, each signed for and
    // pushed to a fresh repository, both pushes started together.
    for round in 0..5 {
        let repo = format!("kiln/concurrent-{round}");
        let full = format!("{}/{repo}", reg.host());
        let target = format!("{full}:v1");
        let by_alice = signed_layout("scratch-plus", &alice.join("cosign"), &alice, &full);
        let by_bob = signed_layout("scratch-plus", &bob.join("cosign"), &bob, &full);
        let mut digests = vec![index_digest(&by_alice)];
        digests.extend(platforms(&by_alice).into_iter().map(|(_, d)| d));
        let spawn = |layout: &Path| {
            kiln_cmd(
                &project(),
                &["push", layout.to_str().unwrap(), &target, "--signatures"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        };
        let (a, b) = (spawn(&by_alice), spawn(&by_bob));
        for (who, child) in [("alice", a), ("bob", b)] {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}, {who}: {}", stderr(&o));
        }
        for d in &digests {
            for suffix in [".sig", ".att"] {
                let tag = format!("sha256-{}{suffix}", hex(d));
                let m = reg.manifest(&repo, &tag).json();
                let layers = m["layers"].as_array().map(Vec::len).unwrap_or(0);
                let want = read_layout_doc(&by_alice, &tag)["layers"]
                    .as_array()
                    .unwrap()
                    .len()
                    + read_layout_doc(&by_bob, &tag)["layers"]
                        .as_array()
                        .unwrap()
                        .len();
                assert_eq!(
                    layers, want,
                    "round {round}: {tag} lost a signer's layers: {m}"
                );
            }
            let listed: BTreeSet<String> =
                reg.manifest(&repo, &format!("sha256-{}", hex(d))).json()["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["digest"].as_str().unwrap().to_string())
                    .collect();
            let want: BTreeSet<String> = referrers(&by_alice, d)
                .union(&referrers(&by_bob, d))
                .cloned()
                .collect();
            assert_eq!(listed, want, "round {round}: the referrers of {d} lost one");
        }
        for key in [&alice, &bob] {
            let v = nix_verify(&target, &key.join("cosign.pub"), &[]);
            assert!(
                v.status.success(),
                "round {round}, {}: {}{}",
                key.display(),
                stdout(&v),
                stderr(&v)
            );
        }
    }
}

/// The document a layout's index.json names `name`.
fn read_layout_doc(layout: &Path, name: &str) -> Value {
    let index = read_json(&layout.join("index.json"));
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {}", layout.display()));
    let digest = d["digest"].as_str().unwrap();
    read_json(&blob(layout, digest))
}

#[test]
fn bad_references_and_sources_are_clear_errors() {
    let work = scratch("e2e-registry-bad");
    for (args, want) in [
        (
            vec!["push", "/nonexistent/layout", "127.0.0.1:1/x:y"],
            "no such layout",
        ),
        (
            vec!["push", "/nonexistent/layout", "scratch-plus:latest"],
            "no registry",
        ),
        (
            vec!["pull", "127.0.0.1:1/x@sha256:abc", work.to_str().unwrap()],
            "bad digest",
        ),
    ] {
        let o = kiln(&args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = kiln(&[
        "pull",
        "127.0.0.1:1/x:y",
        work.join("new").to_str().unwrap(),
        "--retries",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("127.0.0.1:1") && stderr(&o).contains("refused"),
        "{}",
        stderr(&o)
    );
    assert!(!work.join("new").exists());
}

#[test]
fn the_bearer_token_flow_serves_push_pull_and_the_verifier() {
    let work = scratch("e2e-registry-bearer");
    let key = work.join("cosign");
    let reg = Registry::start();

    // Tokens for pushing only to a user with a password (basic auth at the
    // token service, as on Docker Hub or GHCR).
    let gate = TokenGate::start(reg.addr, true);
    let signed = signed_layout(
        "scratch-plus",
        &key,
        &work,
        &format!("{}/kiln/gated", gate.host()),
    );
    let target = format!("{}/kiln/gated:v1", gate.host());
    let err = push_fails(&signed, &target, &["--retries", "1"]);
    assert!(
        err.contains("bearer token")
            && err.contains("bad credentials")
            && err.contains("--username"),
        "{err}"
    );
    assert_eq!(reg.tag_digest("kiln/gated", "v1"), None);
    let o = kiln_with(
        &[
            "push",
            signed.to_str().unwrap(),
            &target,
            "--username",
            registry::TEST_USER,
            "--password-stdin",
        ],
        &[],
        Some(registry::TEST_PASSWORD),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(gate.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let scopes = gate.token_requests.lock().unwrap().clone();
    assert!(
        scopes
            .iter()
            .any(|q| q.contains("scope=repository%3Akiln%2Fgated%3A")),
        "{scopes:?}"
    );
    assert_eq!(
        reg.tag_digest("kiln/gated", "v1"),
        Some(index_digest(&signed))
    );

    // Anonymous tokens for reading: kiln pull and the verifier get one.
    let open = TokenGate::start(reg.addr, false);
    let reference = format!("{}/kiln/gated:v1", open.host());
    let dest = work.join("pulled");
    let o = kiln(&["pull", &reference, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(index_digest(&dest), index_digest(&signed));
    let before = open.token_requests.lock().unwrap().len();
    let v = nix_verify_signed_for(
        &reference,
        &key.with_extension("pub"),
        &[],
        Some(&format!("{}/kiln/gated", gate.host())),
    );
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    assert!(open.token_requests.lock().unwrap().len() > before);
}

#[test]
fn an_attribute_pushes_its_build_and_a_single_platform_image_pushes_its_manifest() {
    let attr = "distroless-static-arm64";
    let out = build(&[attr]).remove(0);
    let v = read_json(&out.join("index.json"));
    let manifest = v["manifests"][0]["digest"].as_str().unwrap().to_string();
    let reg = Registry::start();
    let target = format!("{}/kiln/{attr}:v1", reg.host());
    let o = kiln(&["push", attr, &target, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["digest"], manifest.as_str(), "{report}");
    if !project().join(".kiln/signed").join(attr).exists() {
        assert!(stderr(&o).contains("is not signed"), "{}", stderr(&o));
    }
    assert_eq!(
        reg.tag_digest(&format!("kiln/{attr}"), "v1"),
        Some(manifest.clone())
    );
    let info: Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(info["Digest"], manifest.as_str());
    // --signatures insists on signatures the build does not have.
    let err = push_fails(&out, &target, &["--signatures"]);
    assert!(err.contains("holds no signatures"), "{err}");
}

#[test]
fn mount_from_links_shared_layers_instead_of_uploading_them() {
    let [base, debug]: [PathBuf; 2] = build(&["scratch-plus", "scratch-plus-debug"])
        .try_into()
        .unwrap();
    let reg = Registry::start();
    push(&base, &format!("{}/kiln/base:latest", reg.host()), &[]);
    let mark = reg.log().len();
    let r = push(
        &debug,
        &format!("{}/kiln/debug:latest", reg.host()),
        &[
            "--mount-from",
            "kiln/nonexistent",
            "--mount-from",
            "kiln/base",
        ],
    );
    let mounted: Vec<&str> = r["blobsMounted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert!(!mounted.is_empty(), "{r}");
    // The registry linked them (201 to POST ...?mount=) and received no upload for them.
    let mounts = reg.requests_since(mark, "POST", "/v2/kiln/debug/blobs/uploads/?");
    assert!(
        mounts
            .iter()
            .any(|l| l.contains("from=kiln%2Fbase") && l.contains("\" 201 ")),
        "{mounts:#?}"
    );
    let uploads = reg.requests_since(mark, "PUT", "/v2/kiln/debug/blobs/uploads/");
    assert!(!uploads.is_empty(), "the debug image has layers of its own");
    for d in &mounted {
        assert!(
            !uploads.iter().any(|l| l.contains(hex(d))),
            "{d} was uploaded: {uploads:#?}"
        );
    }
    // Uploads are recognizable by digest in the log (so the check above can fail).
    let uploaded = r["blobsUploaded"][0]["digest"].as_str().unwrap();
    assert!(
        uploads.iter().any(|l| l.contains(hex(uploaded))),
        "{uploads:#?}"
    );
    assert_eq!(
        reg.tag_digest("kiln/debug", "latest"),
        Some(index_digest(&debug))
    );
    let err = push_fails(
        &debug,
        &format!("{}/kiln/x:latest", reg.host()),
        &["--mount-from", "Bad/Repo"],
    );
    assert!(err.contains("Bad/Repo"), "{err}");
}

/// Adds a layer of `garbage` (media type `media_type`, annotations
/// `annotations`) to the manifest tagged `tag` in `repo`, in place.
fn add_garbage_layer(reg: &Registry, repo: &str, tag: &str, media_type: &str, annotations: Value) {
    let garbage: Vec<u8> = (0u32..512)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest = reg.put_blob(repo, &garbage);
    let mut m: Value = serde_json::from_slice(&reg.manifest(repo, tag).body).unwrap();
    m["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": media_type,
        "digest": digest,
        "size": garbage.len(),
        "annotations": annotations,
    }));
    retag(reg, repo, tag, &serde_json::to_vec(&m).unwrap());
}

#[test]
fn garbage_in_a_registrys_signature_or_attestation_tag_fails_verification() {
    let work = scratch("e2e-registry-garbage");
    let key = work.join("cosign");
    let public = key.with_extension("pub");
    let reg = Registry::start();
    for (repo, suffix, media_type, annotations, want) in [
        (
            "kiln/garbage-sig",
            "sig",
            "application/vnd.dev.cosign.simplesigning.v1+json",
            serde_json::json!({"dev.cosignproject.cosign/signature": "AAAA"}),
            "malformed signature artifact",
        ),
        (
            "kiln/garbage-att",
            "att",
            "application/vnd.dsse.envelope.v1+json",
            serde_json::json!({"predicateType": "https://slsa.dev/provenance/v1"}),
            "malformed SLSA provenance artifact",
        ),
    ] {
        let signed = signed_layout(
            "scratch-plus",
            &key,
            &work,
            &format!("{}/{repo}", reg.host()),
        );
        let index = index_digest(&signed);
        let target = format!("{}/{repo}:v1", reg.host());
        push(&signed, &target, &["--signatures"]);
        // The honest push verifies...
        let v = nix_verify(&target, &public, &[]);
        assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
        // ...a layer of garbage beside the valid ones does not.
        let tag = format!("sha256-{}.{suffix}", hex(&index));
        add_garbage_layer(&reg, repo, &tag, media_type, annotations);
        let v = nix_verify(&target, &public, &[]);
        let text = stdout(&v);
        assert_eq!(v.status.code(), Some(1), "{text}{}", stderr(&v));
        assert!(
            text.lines().any(|l| l.starts_with('✗')
                && l.contains(want)
                && l.contains(&format!(".{suffix}"))),
            "{text}"
        );
    }
}
