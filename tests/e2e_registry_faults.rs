//! Registries that misbehave, as users meet them: pull must end with a
//! clear error or a correct layout, in bounded time, never with a partial
//! file left behind. Images are put into a real registry on 127.0.0.1 by
//! hand (no Nix build), so each fault is exactly the one named.

mod common;

use common::registry::{Fault, FaultProxy, Registry};
use common::*;
use sha2::Digest as _;
use std::path::Path;
use std::time::{Duration, Instant};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Puts a one-platform image into `repo:tag` whose manifest lists `layers`
/// (blob bytes, and the size its descriptor declares); returns the
/// manifest's digest.
fn put_image(reg: &Registry, repo: &str, tag: &str, layers: &[(&[u8], u64)]) -> String {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = reg.put_blob(repo, config);
    let mut descs = Vec::new();
    for (bytes, declared) in layers {
        let d = reg.put_blob(repo, bytes);
        descs.push(serde_json::json!({"mediaType": LAYER, "digest": d, "size": declared}));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
        "layers": descs,
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let r = reg.put_manifest(repo, tag, MANIFEST, &body);
    assert!(r.status == 201, "{}", r.text());
    sha(&body)
}

#[test]
fn the_same_layer_listed_twice_is_pulled_once() {
    let reg = Registry::start();
    let layer = vec![7u8; 300_000];
    let digest = put_image(
        &reg,
        "faults/twice",
        "latest",
        &[(&layer, layer.len() as u64), (&layer, layer.len() as u64)],
    );
    for round in 0..3 {
        let work = scratch(&format!("faults-twice-{round}"));
        let dest = work.join("pulled");
        let o = kiln(&[
            "pull",
            &format!("{}/faults/twice:latest", reg.host()),
            dest.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "round {round}: {}", stderr(&o));
        let index = read_json(&dest.join("index.json"));
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());
        assert!(blob(&dest, &sha(&layer)).is_file());
        assert_eq!(dir_names(&work), vec!["pulled".to_string()]);
    }
}

#[test]
fn a_blob_longer_than_its_descriptor_is_cut_off_and_not_retried() {
    let reg = Registry::start();
    // 8 MiB served where the manifest declares 1,000 bytes.
    let layer = vec![1u8; 8 << 20];
    put_image(&reg, "faults/long", "latest", &[(&layer, 1000)]);
    let work = scratch("faults-long-blob");
    let dest = work.join("pulled");
    let o = kiln(&[
        "pull",
        &format!("{}/faults/long:latest", reg.host()),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&sha(&layer)) && err.contains("1000 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("retrying"),
        "a body that is too long is not a network error: {err}"
    );
    assert!(
        dir_names(&work).is_empty(),
        "left behind: {:?}",
        dir_names(&work)
    );
}

#[test]
fn a_registry_that_never_answers_fails_pull_and_push_in_bounded_time() {
    let reg = Registry::start();
    let layer = vec![3u8; 1000];
    put_image(&reg, "faults/silent", "latest", &[(&layer, 1000)]);
    let silent = FaultProxy::start(reg.addr, Fault::StallAt("GET /v2/".into()));
    let work = scratch("faults-silent");
    let dest = work.join("pulled");
    let started = Instant::now();
    let o = kiln(&[
        "pull",
        &format!("{}/faults/silent:latest", silent.host()),
        dest.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        took < Duration::from_secs(75),
        "pull gave up after {took:?}"
    );
    let err = stderr(&o);
    assert!(err.contains("no answer") && err.contains("30 s"), "{err}");
    assert!(
        err.contains("still waiting after 10 s"),
        "silent while waiting: {err}"
    );
    assert!(
        dir_names(&work).is_empty(),
        "left behind: {:?}",
        dir_names(&work)
    );

    // The verifier gives up as soon.
    let key = work.join("cosign");
    let o = kiln_cmd(
        &project(),
        &["keygen", "--output-key-prefix", key.to_str().unwrap()],
    )
    .env("COSIGN_PASSWORD", "faults")
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let started = Instant::now();
    let o = kiln(&[
        "verify",
        &format!("{}/faults/silent:latest", silent.host()),
        "--key",
        key.with_extension("pub").to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("no answer for 30 s"), "{said}");
    assert!(
        took < Duration::from_secs(75),
        "verify gave up after {took:?}"
    );

    // The same registry silent on push.
    let src = format!("{}/faults/silent:latest", reg.host());
    let pulled = work.join("source");
    assert!(kiln(&["pull", &src, pulled.to_str().unwrap()])
        .status
        .success());
    let started = Instant::now();
    let o = kiln(&[
        "push",
        pulled.to_str().unwrap(),
        &format!("{}/faults/silent-push:latest", silent.host()),
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        took < Duration::from_secs(75),
        "push gave up after {took:?}"
    );
    assert_eq!(reg.tag_digest("faults/silent-push", "latest"), None);
}

/// A "registry" on 127.0.0.1 that answers every request with 401 and
/// `challenge`; returns its address.
fn challenging(challenge: &'static str) -> std::net::SocketAddr {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            read_request(&c);
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let _ = write!(
                c,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn a_token_service_that_is_down_and_an_unknown_scheme_are_named() {
    // The token service's port: bound, then closed, so nothing listens.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let realm: &'static str = Box::leak(
        format!("Bearer realm=\"http://{dead}/token\",service=\"faults\"").into_boxed_str(),
    );
    let work = scratch("faults-auth");
    for (challenge, says) in [
        (
            realm,
            vec![format!("http://{dead}/token"), "bearer token".to_string()],
        ),
        (
            "Negotiate",
            vec!["Negotiate".to_string(), "Basic and Bearer".to_string()],
        ),
    ] {
        let addr = challenging(challenge);
        let o = kiln(&[
            "pull",
            &format!("{addr}/faults/auth:latest"),
            work.join("pulled").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        for s in &says {
            assert!(
                err.contains(s.as_str()),
                "{challenge}: does not say {s:?}: {err}"
            );
        }
        assert!(!err.contains("basic auth"), "{err}");
        assert!(
            dir_names(&work).is_empty(),
            "left behind: {:?}",
            dir_names(&work)
        );
    }
}

/// A "registry" on 127.0.0.1 whose every manifest is `size` bytes of
/// spaces, sent with or without a Content-Length; returns its address and
/// the bytes it managed to send.
fn oversized(
    size: u64,
    with_length: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let first = read_request(&c);
                if !first.contains("/manifests/") {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                    );
                    return;
                }
                let length = if with_length {
                    format!("Content-Length: {size}\r\n")
                } else {
                    String::new()
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}Connection: close\r\n\r\n"
                );
                let chunk = vec![b' '; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if c.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    left -= n as u64;
                }
            });
        }
    });
    (addr, sent)
}

#[test]
fn a_manifest_larger_than_the_limit_is_refused_before_it_is_read() {
    let work = scratch("faults-big-manifest");
    for with_length in [true, false] {
        let (addr, sent) = oversized(100 << 20, with_length);
        let started = Instant::now();
        let o = kiln(&[
            "pull",
            "--retries",
            "1",
            &format!("{addr}/faults/big:latest"),
            work.join("pulled").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("larger than 4194304 bytes"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        // Read no further than the limit (and what the sockets buffer).
        let read = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            read < 24 << 20,
            "{read} bytes were sent before kiln stopped (Content-Length given: {with_length})"
        );
        assert!(
            dir_names(&work).is_empty(),
            "left behind: {:?}",
            dir_names(&work)
        );
    }
}

/// Reads an HTTP request's head from `c` and returns its request line.
fn read_request(c: &std::net::TcpStream) -> String {
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap_or(0);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    first
}

/// A registry on 127.0.0.1 that answers `/v2/` and serves `body` (as
/// `media_type`) for every manifest it is asked for, whatever the tag or
/// digest; everything else is 404. What a broken or hostile registry can
/// send that a real one would refuse to store.
fn serving(body: Vec<u8>, media_type: &'static str) -> std::net::SocketAddr {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let first = read_request(&c);
                let path = first.split(' ').nth(1).unwrap_or("");
                let (status, kind, payload): (&str, &str, &[u8]) = if path == "/v2/" {
                    ("200 OK", "application/json", b"{}")
                } else if path.contains("/manifests/") {
                    ("200 OK", media_type, &body)
                } else {
                    ("404 Not Found", "application/json", b"{}")
                };
                let head = first.starts_with("HEAD ");
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                if !head {
                    let _ = c.write_all(payload);
                }
            });
        }
    });
    addr
}

/// Pull and verify of `reference` both fail, within `limit`, with an error
/// that contains `want`, and leave nothing in `work` but the key pair.
fn pull_and_verify_fail(work: &Path, reference: &str, want: &str, limit: Duration) -> String {
    let key = cosign_key_pair(work);
    let key = key.to_str().unwrap();
    let started = Instant::now();
    let o = kiln(&[
        "pull",
        "--retries",
        "1",
        reference,
        work.join("pulled").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "pull: {}", stderr(&o));
    let pulled = stderr(&o);
    assert!(pulled.contains(want), "pull: {pulled}");
    assert!(
        started.elapsed() < limit,
        "pull took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let o = kiln(&["verify", reference, "--key", key]);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "verify: {said}");
    assert!(said.contains(want), "verify: {said}");
    assert!(
        started.elapsed() < limit,
        "verify took {:?}",
        started.elapsed()
    );
    let left = dir_names(work);
    assert_eq!(left, ["cosign.key", "cosign.pub"], "left behind");
    pulled
}

#[test]
fn a_truncated_manifest_is_refused_by_pull_and_verify() {
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha(b"{}"), "size": 2},
        "layers": [{"mediaType": LAYER, "digest": sha(b"x"), "size": 1}],
    }))
    .unwrap();
    let cut = manifest[..manifest.len() / 2].to_vec();
    let addr = serving(cut, MANIFEST);
    let work = scratch("faults-truncated-manifest");
    let said = pull_and_verify_fail(
        &work,
        &format!("{addr}/faults/truncated:latest"),
        "EOF while parsing a string",
        Duration::from_secs(30),
    );
    // Named once, not once per layer of error context.
    assert_eq!(said.matches("faults/truncated").count(), 1, "{said}");
}

#[test]
fn a_manifest_of_10000_layers_is_pulled_in_bounded_time() {
    // The same 1-byte-file tar layer 10,000 times: a 1.1 MB manifest, under
    // the 4 MiB limit. Pull fetches each blob once; verify finds no
    // signature and says so before it reads any layer.
    let reg = Registry::start();
    let mut layer = Vec::new();
    {
        let mut b = tar::Builder::new(&mut layer);
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "x", &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    // One upload, listed 10,000 times.
    let digest = reg.put_blob("faults/many", &layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = reg.put_blob("faults/many", config);
    let desc = serde_json::json!({"mediaType": LAYER, "digest": digest, "size": layer.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
        "layers": vec![desc; 10_000],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let r = reg.put_manifest("faults/many", "latest", MANIFEST, &body);
    assert!(r.status == 201, "{}", r.text());
    let work = scratch("faults-many-layers");
    let reference = format!("{}/faults/many:latest", reg.host());
    let started = Instant::now();
    let o = kiln(&["pull", &reference, work.join("pulled").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "pull took {:?}",
        started.elapsed()
    );
    assert!(blob(&work.join("pulled"), &sha(&layer)).is_file());
    let key = cosign_key_pair(&work);
    let key = key.to_str().unwrap();
    let started = Instant::now();
    let o = kiln(&["verify", &reference, "--key", key]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("is not signed"), "{}", stderr(&o));
    assert!(took < Duration::from_secs(60), "verify took {took:?}");
}

#[test]
fn an_index_that_names_itself_is_refused_by_its_digest() {
    // An index cannot list its own digest; a registry that answers every
    // digest with the same index is caught by the digest check, not
    // followed round in circles.
    let child = sha(b"any manifest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": child, "size": 300}],
    }))
    .unwrap();
    let addr = serving(index, "application/vnd.oci.image.index.v1+json");
    let work = scratch("faults-self-index");
    pull_and_verify_fail(
        &work,
        &format!("{addr}/faults/cycle:latest"),
        &child,
        Duration::from_secs(30),
    );
}
