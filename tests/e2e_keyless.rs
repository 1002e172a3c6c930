//! Keyless signing and verification end to end: `kiln sign --keyless`
//! against a test Fulcio and Rekor (`common::sigstore`), then `kiln verify`
//! and `nix run .#verify` with --certificate-identity and
//! --certificate-oidc-issuer over the test's trusted root, from the signed
//! layout and from a registry on 127.0.0.1; and what must fail.

mod common;

use common::registry::Registry;
use common::sigstore::{identity_token, Sigstore};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ISSUER: &str = "https://issuer.kiln.test";
const IDENTITY: &str = "release@kiln.test";

struct Fixture {
    dir: PathBuf,
    sigstore_url: String,
    signed: PathBuf,
    root: PathBuf,
    sign_stderr: String,
    logged: Vec<String>,
    _sigstore: Sigstore,
}

/// `kiln sign scratch-plus --keyless` against the test instance at
/// `sigstore_url`, as IDENTITY; `extra` flags follow.
fn sign_keyless(sigstore_url: &str, dir: &Path, out: &Path, extra: &[&str]) -> Output {
    kiln_cmd(
        &project(),
        &[
            "sign",
            "scratch-plus",
            "--keyless",
            "--provenance-dir",
            dir.join("provenance").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .args(extra)
    .env("SIGSTORE_FULCIO_URL", sigstore_url)
    .env("SIGSTORE_REKOR_URL", sigstore_url)
    .env("SIGSTORE_ID_TOKEN", identity_token(ISSUER, IDENTITY))
    .output()
    .unwrap()
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        require_setup();
        let dir = scratch("e2e-keyless");
        let prov = dir.join("provenance");
        let out = kiln_cmd(
            &project(),
            &[
                "build",
                "--provenance-dir",
                prov.to_str().unwrap(),
                "scratch-plus",
            ],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "kiln build: {}", stderr(&out));
        let sigstore = Sigstore::start();
        let root = dir.join("trusted_root.json");
        std::fs::write(&root, sigstore.trusted_root_json()).unwrap();
        let signed = dir.join("signed");
        let out = sign_keyless(&sigstore.url(), &dir, &signed, &[]);
        assert!(
            out.status.success(),
            "kiln sign --keyless: {}",
            stderr(&out)
        );
        let logged = sigstore.logged.lock().unwrap().clone();
        Fixture {
            dir,
            sigstore_url: sigstore.url(),
            signed,
            root,
            sign_stderr: stderr(&out),
            logged,
            _sigstore: sigstore,
        }
    })
}

fn verify_args(fx: &Fixture, identity: &str, issuer: &str) -> Vec<String> {
    vec![
        "--certificate-identity".into(),
        identity.into(),
        "--certificate-oidc-issuer".into(),
        issuer.into(),
        "--trusted-root".into(),
        fx.root.display().to_string(),
    ]
}

fn kiln_verify(reference: &str, extra: &[String]) -> (Output, Value) {
    let out = kiln_cmd(&project(), &["verify", reference, "--json"])
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out, report)
}

fn messages(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["status"] == status)
                .map(|c| c["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn keyless_signatures_are_logged_and_verify_with_the_identity() {
    let fx = fixture();
    assert!(
        fx.sign_stderr
            .contains(&format!("signing keyless as {IDENTITY} (issuer {ISSUER})")),
        "{}",
        fx.sign_stderr
    );
    // Three simple signings (index, amd64, arm64), and DSSE envelopes: three
    // cosign/sign/v1 statements, the provenance and two SBOMs per arch.
    let hashed = fx.logged.iter().filter(|k| *k == "hashedrekord").count();
    let dsse = fx.logged.iter().filter(|k| *k == "dsse").count();
    assert_eq!((hashed, dsse), (3, 3 + 1 + 4), "{:?}", fx.logged);

    let signed = fx.signed.display().to_string();
    let (out, report) = kiln_verify(&signed, &verify_args(fx, IDENTITY, ISSUER));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let passed = messages(&report, "pass");
    assert!(
        passed.iter().any(|m| m.contains("is signed by release@kiln.test (issuer https://issuer.kiln.test,")),
        "{passed:?}"
    );
    assert!(
        passed
            .iter()
            .any(|m| m.contains("SLSA provenance") && m.contains(IDENTITY)),
        "{passed:?}"
    );

    // The pinned verifier, as a consumer runs it.
    let out = Command::new("nix")
        .current_dir(project())
        .args(["run", ".#verify", "--"])
        .arg(&signed)
        .args(
            verify_args(fx, "release@kiln\\.test", ISSUER)
                .iter()
                .map(|a| {
                    if a == "--certificate-identity" {
                        "--certificate-identity-regexp".to_string()
                    } else {
                        a.clone()
                    }
                }),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix run .#verify: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// sigstore-python's client configuration for the test instance: its
/// trusted root, and where it signs (unused: it only verifies here).
fn client_trust_config(fx: &Fixture) -> PathBuf {
    let root: Value = read_json(&fx.root);
    let service = |url: &str| {
        serde_json::json!([{"url": url, "majorApiVersion": 1,
            "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "kiln test"}])
    };
    let config = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": root,
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": service(&fx.sigstore_url),
            "oidcUrls": [],
            "rekorTlogUrls": service(&fx.sigstore_url),
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"}
        }
    });
    let path = fx.dir.join("client-trust-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// `sigstore verify identity` (sigstore-python) of `bundle` over `subject`.
fn sigstore_python(config: &Path, bundle: &Path, identity: &str, subject: &Path) -> Output {
    Command::new(project().join(".kiln/venv/bin/sigstore"))
        .arg("--trust-config")
        .arg(config)
        .args(["verify", "identity", "--bundle"])
        .arg(bundle)
        .args(["--cert-identity", identity, "--cert-oidc-issuer", ISSUER])
        .arg(subject)
        .env("COLUMNS", "200")
        .output()
        .unwrap()
}

#[test]
fn sigstore_python_verifies_every_keyless_bundle_kiln_wrote() {
    let fx = fixture();
    let config = client_trust_config(fx);
    let index = read_json(&fx.signed.join("index.json"));
    let mut checked = 0;
    let mut first = None;
    for m in index["manifests"].as_array().unwrap() {
        let artifact_type = m["artifactType"].as_str().unwrap_or("");
        if !artifact_type.starts_with("application/vnd.dev.sigstore.bundle") {
            continue;
        }
        let manifest = read_json(&blob(&fx.signed, m["digest"].as_str().unwrap()));
        let bundle = blob(
            &fx.signed,
            manifest["layers"][0]["digest"].as_str().unwrap(),
        );
        // The artifact a DSSE bundle is about: the manifest it is attached
        // to, whose digest the statement names as its subject.
        let subject = blob(&fx.signed, manifest["subject"]["digest"].as_str().unwrap());
        let out = sigstore_python(&config, &bundle, IDENTITY, &subject);
        assert!(
            out.status.success(),
            "sigstore verify identity {}: {}{}",
            bundle.display(),
            stdout(&out),
            stderr(&out)
        );
        checked += 1;
        first.get_or_insert((bundle, subject));
    }
    // The index: its signature and the provenance; each of the two
    // platforms: its signature, the provenance and both SBOMs.
    assert_eq!(checked, 2 + 2 * 4);
    // And it refuses another identity for the same bundle.
    let (bundle, subject) = first.unwrap();
    let out = sigstore_python(&config, &bundle, "attacker@kiln.test", &subject);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("attacker@kiln.test"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn another_identity_issuer_root_or_a_key_does_not_verify_a_keyless_image() {
    let fx = fixture();
    let signed = fx.signed.display().to_string();
    for (args, expect) in [
        (
            verify_args(fx, "attacker@kiln.test", ISSUER),
            "does not match --certificate-identity",
        ),
        (
            verify_args(fx, IDENTITY, "https://other.issuer"),
            "does not match --certificate-oidc-issuer",
        ),
        (
            vec![
                "--certificate-identity".into(),
                IDENTITY.into(),
                "--certificate-oidc-issuer".into(),
                ISSUER.into(),
            ],
            "does not trust",
        ),
    ] {
        let (out, report) = kiln_verify(&signed, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let failed = messages(&report, "fail").join("\n");
        assert!(failed.contains(expect), "{args:?}: {failed}");
    }
    // A key alone cannot vouch for a certificate-signed image.
    let key = fx.dir.join("k");
    let out = kiln_cmd(
        &project(),
        &["keygen", "--output-key-prefix", key.to_str().unwrap()],
    )
    .env("COSIGN_PASSWORD", "x")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, report) = kiln_verify(
        &signed,
        &["--key".into(), fx.dir.join("k.pub").display().to_string()],
    );
    assert_eq!(out.status.code(), Some(1));
    let failed = messages(&report, "fail").join("\n");
    assert!(failed.contains("--certificate-identity"), "{failed}");
    // Half a policy is a usage error, before anything is read.
    let (out, _) = kiln_verify(&signed, &["--certificate-identity".into(), IDENTITY.into()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--certificate-oidc-issuer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_keyless_image_pushed_to_a_registry_verifies_there() {
    let fx = fixture();
    let registry = Registry::start();
    let repo = format!("{}/kiln/scratch-plus", registry.host());
    // Signed for the repository it goes to.
    let signed = fx.dir.join("signed-for-registry");
    let out = sign_keyless(&fx.sigstore_url, &fx.dir, &signed, &["--reference", &repo]);
    assert!(
        out.status.success(),
        "kiln sign --keyless --reference: {}",
        stderr(&out)
    );
    let out = kiln_cmd(
        &project(),
        &[
            "push",
            "--insecure",
            signed.to_str().unwrap(),
            &format!("{repo}:keyless"),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "kiln push: {}", stderr(&out));
    let mut args = verify_args(fx, IDENTITY, ISSUER);
    args.push("--insecure".into());
    let (out, report) = kiln_verify(&format!("{repo}:keyless"), &args);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(messages(&report, "pass")
        .iter()
        .any(|m| m.contains(IDENTITY)));
}

#[test]
fn keyless_signing_names_the_url_and_the_error_when_fulcio_is_unreachable() {
    let fx = fixture();
    let out = kiln_cmd(
        &project(),
        &[
            "sign",
            "scratch-plus",
            "--keyless",
            "--fulcio-url",
            "http://127.0.0.1:9",
            "--provenance-dir",
            fx.dir.join("provenance").to_str().unwrap(),
            "--out",
            fx.dir.join("never").to_str().unwrap(),
        ],
    )
    .env("SIGSTORE_ID_TOKEN", identity_token(ISSUER, IDENTITY))
    .output()
    .unwrap();
    // Could not run (2), not a failed check.
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("http://127.0.0.1:9/api/v2/signingCert"), "{e}");
    assert!(!Path::new(&fx.dir.join("never")).exists());
    // No token at all: the error says where one comes from.
    let out = kiln_cmd(
        &project(),
        &[
            "sign",
            "scratch-plus",
            "--keyless",
            "--provenance-dir",
            fx.dir.join("provenance").to_str().unwrap(),
        ],
    )
    .env_remove("SIGSTORE_ID_TOKEN")
    .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("SIGSTORE_ID_TOKEN"),
        "{}",
        stderr(&out)
    );
}
