//! Provenance from `kiln build`, `kiln sign`, and the
//! verifier (`kiln verify`, `nix run .#verify`) against a real sandboxed
//! build of scratch-plus; tampered copies of the signed layout that must
//! fail with a message naming what is wrong; independent cross-checks
//! (openssl, python-securesystemslib, skopeo); a probe derivation showing
//! that the sandbox has no network and cannot see the key or the host.

mod common;

use common::*;
use kiln::sign::KeyFileSigner;
use kiln::signstore::{self, SignedImage};
use kiln_seed::attest::{
    Statement, COSIGN_SIGN_V1, CYCLONEDX_BOM, SLSA_PROVENANCE_V1, SPDX_DOCUMENT,
};
use kiln_seed::digest::Digest;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const PASSWORD: &str = "kiln-e2e-attest";

/// A built, provenance-carrying, signed scratch-plus and two key pairs.
struct Fixture {
    dir: PathBuf,
    /// The image layout `kiln build` produced (in the store).
    out: PathBuf,
    provenance: PathBuf,
    key: PathBuf,
    public: PathBuf,
    other_public: PathBuf,
    /// The signed layout `kiln sign` wrote.
    signed: PathBuf,
    index: Digest,
    amd64: Digest,
    arm64: Digest,
    /// HEAD just before the build.
    head_before: String,
}

fn kiln_env(args: &[&str]) -> Output {
    kiln_cmd(&project(), args)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .expect("running kiln")
}

/// `sign <attr> --key <key> --provenance-dir <provenance_dir> --out <out>`
fn sign_args<'a>(
    attr: &'a str,
    key: &'a Path,
    provenance_dir: &'a Path,
    out: &'a Path,
) -> [&'a str; 8] {
    [
        "sign",
        attr,
        "--key",
        key.to_str().unwrap(),
        "--provenance-dir",
        provenance_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn digest_at(v: &Value, pointer: &str) -> Digest {
    Digest::parse(v.pointer(pointer).and_then(Value::as_str).unwrap()).unwrap()
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        require_setup();
        let dir = scratch("e2e-attest");
        let prov_dir = dir.join("provenance");
        let head_before = run(Command::new("git")
            .arg("-C")
            .arg(project())
            .args(["rev-parse", "HEAD"]))
        .trim()
        .to_string();
        let built = ok(
            kiln_env(&[
                "build",
                "--json",
                "--provenance-dir",
                prov_dir.to_str().unwrap(),
                "scratch-plus",
            ]),
            "kiln build scratch-plus",
        );
        let built: Value = serde_json::from_str(&built).unwrap();
        let out = PathBuf::from(built[0]["out"].as_str().unwrap());
        let provenance = PathBuf::from(built[0]["provenance"].as_str().unwrap());
        assert_eq!(provenance, prov_dir.join("scratch-plus.intoto.json"));
        for prefix in ["cosign", "other"] {
            ok(
                kiln_env(&[
                    "keygen",
                    "--output-key-prefix",
                    dir.join(prefix).to_str().unwrap(),
                ]),
                "kiln keygen",
            );
        }
        let signed = dir.join("signed");
        ok(
            kiln_env(&sign_args(
                "scratch-plus",
                &dir.join("cosign.key"),
                &prov_dir,
                &signed,
            )),
            "kiln sign scratch-plus",
        );
        let summary = read_json(&out.join("image.json"));
        Fixture {
            index: digest_at(&summary, "/index/digest"),
            amd64: digest_at(&summary, "/manifests/amd64/digest"),
            arm64: digest_at(&summary, "/manifests/arm64/digest"),
            out,
            provenance,
            key: dir.join("cosign.key"),
            public: dir.join("cosign.pub"),
            other_public: dir.join("other.pub"),
            signed,
            dir,
            head_before,
        }
    })
}

fn signer() -> KeyFileSigner {
    KeyFileSigner::from_file(&fixture().key, PASSWORD.as_bytes()).unwrap()
}

fn provenance() -> Statement {
    kiln::provenance::read(&fixture().provenance).unwrap()
}

/// `kiln verify <layout> --key <public> extra... --json`: (passed, report).
fn verify(layout: &Path, public: &Path, extra: &[&str]) -> (bool, Value) {
    let out = kiln_cmd(&project(), &["verify"])
        .arg(layout)
        .arg("--key")
        .arg(public)
        .args(extra)
        .arg("--json")
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "kiln verify --json: {e}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    assert_eq!(
        out.status.success(),
        report["ok"] == true,
        "exit status and report disagree: {report}"
    );
    (out.status.success(), report)
}

fn failures(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect()
}

/// Verification fails, and some failed check names everything in `needles`.
fn assert_fails_with(
    layout: &Path,
    public: &Path,
    extra: &[&str],
    needles: &[&str],
) -> Vec<String> {
    let (passed, report) = verify(layout, public, extra);
    let f = failures(&report);
    assert!(
        !passed,
        "verification passed but should not have: {report:#}"
    );
    assert!(
        f.iter().any(|m| needles.iter().all(|n| m.contains(n))),
        "no failed check mentions all of {needles:?}; failures:\n{}",
        f.join("\n")
    );
    f
}

/// A fresh copy of the signed layout to break.
fn copy_signed(name: &str) -> PathBuf {
    let dir = scratch(&format!("e2e-attest-{name}"));
    let to = dir.join("signed");
    run(Command::new("cp").arg("-r").arg(&fixture().signed).arg(&to));
    make_writable(&to);
    to
}

/// The image signed again in memory (to be altered, then written).
fn resigned() -> SignedImage {
    signstore::sign(&signer(), &fixture().out, &provenance(), "scratch-plus").unwrap()
}

fn write_signed(name: &str, s: &SignedImage) -> PathBuf {
    let dir = scratch(&format!("e2e-attest-{name}"));
    let to = dir.join("signed");
    signstore::write(s, &to).unwrap();
    to
}

/// Removes every attestation of `predicate_type` on `digest` (both forms)
/// and attaches `replacement` (signed with the right key) instead.
fn replace_attestation(
    s: &mut SignedImage,
    digest: &Digest,
    predicate_type: &str,
    replacement: Option<&Statement>,
) {
    let a = s.attached.get_mut(digest).unwrap();
    a.attestations
        .retain(|l| l.predicate_type != predicate_type);
    a.referrers.retain(|r| r.predicate_type != predicate_type);
    if let Some(st) = replacement {
        let (layer, referrer) = signstore::attest(&signer(), st).unwrap();
        a.attestations.push(layer);
        a.referrers.push(referrer);
    }
}

/// The statement of `predicate_type` kiln sign attached to `digest`.
fn attached_statement(s: &SignedImage, digest: &Digest, predicate_type: &str) -> Statement {
    let env = &s.attached[digest]
        .attestations
        .iter()
        .find(|l| l.predicate_type == predicate_type)
        .unwrap()
        .envelope;
    Statement::from_json(&env.payload_bytes().unwrap()).unwrap()
}

fn blob_of(layout: &Path, d: &Digest) -> PathBuf {
    blob(layout, &d.hex())
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

// ---------------------------------------------------------------------------

#[test]
fn provenance_describes_the_build_completely_and_truthfully() {
    let fx = fixture();
    let st = provenance();
    let names: Vec<(&str, Digest)> = st
        .subject
        .iter()
        .map(|s| (s.name.as_str(), s.sha256().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("scratch-plus:latest", fx.index),
            ("scratch-plus:latest-amd64", fx.amd64),
            ("scratch-plus:latest-arm64", fx.arm64)
        ]
    );
    let p = st.slsa_provenance().unwrap();
    let bd = &p.build_definition;
    assert_eq!(bd.build_type, "https://kiln.dev/buildtypes/nix-oci/v1");
    let ext = &bd.external_parameters;
    assert_eq!(ext["image"], "scratch-plus");
    assert_eq!(ext["variant"], Value::Null);
    assert_eq!(ext["flakeAttribute"], "scratch-plus");
    assert_eq!(ext["archs"], serde_json::json!(["amd64", "arm64"]));
    // The commit checked out when the fixture was built (colleagues may
    // commit in a shared checkout meanwhile, hence either end).
    let head = run(Command::new("git")
        .arg("-C")
        .arg(project())
        .args(["rev-parse", "HEAD"]));
    let recorded = ext["source"]["revision"].as_str().unwrap();
    assert!(
        recorded == fx.head_before || recorded == head.trim(),
        "{recorded} is neither {} nor {}",
        fx.head_before,
        head.trim()
    );
    assert!(ext["source"]["dirty"].is_boolean());
    assert!(ext["source"]["uri"].as_str().unwrap().starts_with("git+"));
    let lock_bytes = std::fs::read(project().join("kiln.lock")).unwrap();
    assert_eq!(ext["lock"]["digest"], Digest::of(&lock_bytes).to_string());
    assert_eq!(ext["lock"]["path"], "kiln.lock");
    assert_eq!(ext["definition"]["path"], "images/scratch-plus/image.toml");

    let int = &bd.internal_parameters;
    assert_eq!(int["isolated"], true);
    assert_eq!(int["nix"]["sandbox"], "true");
    assert_eq!(int["nix"]["sandboxFallback"], false);
    let pin = read_json(&project().join("nix/seed.json"));
    assert_eq!(int["seed"], pin["storePath"]);

    // Every locked .deb of the image, as purl + sha256, and nothing else.
    let lock: Value = serde_json::from_slice(&lock_bytes).unwrap();
    let mut expected = std::collections::BTreeSet::new();
    for arch in ["amd64", "arm64"] {
        for name in lock["images"]["scratch-plus"]["archs"][arch]["packages"]
            .as_array()
            .unwrap()
        {
            let p = &lock["packages"]["bookworm"][arch][name.as_str().unwrap()];
            expected.insert((
                kiln_seed::verify::provenance::deb_purl(
                    name.as_str().unwrap(),
                    p["version"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap(),
                    "debian-12",
                ),
                p["sha256"].as_str().unwrap().to_string(),
            ));
        }
    }
    let debs: std::collections::BTreeSet<(String, String)> = bd
        .resolved_dependencies
        .iter()
        .filter(|d| d.uri.starts_with("pkg:deb/debian/") && !d.annotations.contains_key("role"))
        .map(|d| (d.uri.clone(), d.digest["sha256"].clone()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(debs, expected);
    // And, marked as the seed's, every .deb of the toolchain that compiled it.
    let seed_debs: std::collections::BTreeSet<String> = bd
        .resolved_dependencies
        .iter()
        .filter(|d| d.annotations.get("role").and_then(|r| r.as_str()) == Some("seed"))
        .filter(|d| d.uri.starts_with("pkg:deb/debian/"))
        .map(|d| d.uri.clone())
        .collect();
    let toolchain = lock["toolchains"]["rust"]["archs"]["amd64"]
        .as_array()
        .unwrap();
    assert_eq!(seed_debs.len(), toolchain.len());
    assert!(seed_debs
        .iter()
        .any(|u| u.starts_with("pkg:deb/debian/rustc-web@")));
    let seed = bd
        .resolved_dependencies
        .iter()
        .find(|d| d.name == "kiln-seed")
        .unwrap();
    assert_eq!(
        seed.annotations["narHash"],
        format!("sha256:{}", pin["narHash"].as_str().unwrap())
    );
    let seed_file = std::fs::read(pin["storePath"].as_str().unwrap()).unwrap();
    assert_eq!(seed.digest["sha256"], Digest::of(&seed_file).hex());
    let source = bd
        .resolved_dependencies
        .iter()
        .find(|d| d.name == "source")
        .unwrap();
    assert_eq!(source.digest["gitCommit"], recorded);
    assert!(bd
        .resolved_dependencies
        .iter()
        .any(|d| d.name == "kiln.lock" && d.digest["sha256"] == Digest::of(&lock_bytes).hex()));

    let rd = &p.run_details;
    // A developer machine, never a hosted builder.
    assert!(
        rd.builder
            .id
            .starts_with("https://kiln.dev/builders/local@"),
        "{}",
        rd.builder.id
    );
    assert_eq!(rd.builder.version["kiln"], env!("CARGO_PKG_VERSION"));
    assert!(
        rd.builder.version["nix"].starts_with("2."),
        "{:?}",
        rd.builder.version
    );
    let m = &rd.metadata;
    assert_eq!(m.invocation_id.len(), 36, "{}", m.invocation_id);
    let started =
        kiln_seed::verify::provenance::parse_rfc3339(m.started_on.as_deref().unwrap()).unwrap();
    let finished =
        kiln_seed::verify::provenance::parse_rfc3339(m.finished_on.as_deref().unwrap()).unwrap();
    assert!(started <= finished);
    assert!(rd
        .byproducts
        .iter()
        .any(|b| b.name.ends_with("-kiln-scratch-plus.drv")));
    assert!(rd
        .byproducts
        .iter()
        .any(|b| b.name.contains("kiln-layer-arm64-ca-certificates")));
    let output = rd.byproducts.iter().find(|b| b.name == "output").unwrap();
    assert_eq!(output.uri, format!("file://{}", fx.out.display()));
    assert!(output.annotations["narHash"]
        .as_str()
        .unwrap()
        .starts_with("sha256"));
}

#[test]
fn the_signed_layout_verifies_with_kiln_verify_and_nix_run_verify() {
    let fx = fixture();
    let (passed, report) = verify(
        &fx.signed,
        &fx.public,
        &["--source", project().to_str().unwrap(), "--max-age", "1d"],
    );
    assert!(passed, "{report:#}");
    let passed_checks = |kind: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["check"] == kind && c["status"] == "pass")
            .count()
    };
    assert_eq!(passed_checks("signature"), 3, "{report:#}");
    // The provenance on the index and on each platform, and each
    // platform's two SBOMs.
    assert_eq!(passed_checks("attestation"), 7, "{report:#}");
    assert_eq!(passed_checks("subjects"), 5, "{report:#}");
    assert_eq!(passed_checks("sbom"), 8, "{report:#}");
    assert_eq!(passed_checks("lock"), 1, "{report:#}");
    assert_eq!(passed_checks("isolation"), 1, "{report:#}");
    assert_eq!(report["digest"], fx.index.to_string());

    // The pinned seed's verifier, as a consumer runs it.
    let builder = provenance()
        .slsa_provenance()
        .unwrap()
        .run_details
        .builder
        .id;
    let out = Command::new("nix")
        .args(["run", &format!("{}#verify", project().display()), "--"])
        .arg(&fx.signed)
        .arg("--key")
        .arg(&fx.public)
        .args(["--builder-id", &builder, "--source"])
        .arg(project())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!("✓ builder: builder.id is {builder}")),
        "{text}"
    );
    assert!(text.contains("VERIFIED:"), "{text}");
    assert!(!text.contains('✗'), "{text}");

    // A wrong expected builder fails.
    assert_fails_with(
        &fx.signed,
        &fx.public,
        &[
            "--builder-id",
            "https://github.com/kiln-build/kiln/.github/workflows/release.yml@refs/heads/main",
        ],
        &[
            "builder",
            &builder,
            "expected https://github.com/kiln-build/kiln",
        ],
    );
}

#[test]
fn the_signed_layout_is_cosigns_format_and_keeps_the_image_digest() {
    let fx = fixture();
    let index = read_json(&fx.signed.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    let by_ref = |r: &str| {
        entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == r)
            .unwrap_or_else(|| panic!("no {r} in {index:#}"))
    };
    // The image index is the built one, unchanged, marked as cosign save does.
    assert_eq!(by_ref("latest")["digest"], fx.index.to_string());
    assert_eq!(
        by_ref("latest")["annotations"]["kind"],
        "dev.cosignproject.cosign/imageIndex"
    );
    let built_index = std::fs::read(blob_of(&fx.out, &fx.index)).unwrap();
    assert_eq!(
        std::fs::read(blob_of(&fx.signed, &fx.index)).unwrap(),
        built_index
    );

    // The provenance is attached under every digest it names; each
    // platform also carries its two SBOMs.
    for (d, n_att) in [(fx.index, 1), (fx.amd64, 3), (fx.arm64, 3)] {
        let sig = by_ref(&format!("sha256-{}.sig", d.hex()));
        let m = read_json(&blob_of(
            &fx.signed,
            &Digest::parse(sig["digest"].as_str().unwrap()).unwrap(),
        ));
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        let layer = &m["layers"][0];
        assert_eq!(
            layer["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        assert!(layer["annotations"]["dev.cosignproject.cosign/signature"].is_string());
        // No creation time anywhere: the signed layout is deterministic.
        assert!(m.get("annotations").is_none(), "{m}");
        let payload = read_json(&blob_of(
            &fx.signed,
            &Digest::parse(layer["digest"].as_str().unwrap()).unwrap(),
        ));
        assert_eq!(
            payload["critical"]["type"],
            "cosign container image signature"
        );
        assert_eq!(
            payload["critical"]["image"]["docker-manifest-digest"],
            d.to_string()
        );
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            "scratch-plus"
        );

        let att = by_ref(&format!("sha256-{}.att", d.hex()));
        let m = read_json(&blob_of(
            &fx.signed,
            &Digest::parse(att["digest"].as_str().unwrap()).unwrap(),
        ));
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), n_att);
        for l in layers {
            assert_eq!(l["mediaType"], "application/vnd.dsse.envelope.v1+json");
            assert!(l["annotations"]["predicateType"].is_string());
            assert_eq!(l["annotations"]["dev.cosignproject.cosign/signature"], "");
        }
        // Referrers: bundles whose subject is this digest.
        let referrers: Vec<&Value> = entries
            .iter()
            .filter(|e| e["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
            .filter(|e| {
                let m = read_json(&blob_of(
                    &fx.signed,
                    &Digest::parse(e["digest"].as_str().unwrap()).unwrap(),
                ));
                m["subject"]["digest"] == d.to_string()
            })
            .collect();
        assert_eq!(referrers.len(), 1 + n_att, "{d}");
        assert!(referrers
            .iter()
            .any(|r| r["annotations"]["dev.sigstore.bundle.predicateType"] == COSIGN_SIGN_V1));
    }
    // Signing twice gives the same layout (RFC 6979 signatures, no clock).
    let again = write_signed("determinism", &resigned());
    assert_eq!(
        std::fs::read(again.join("index.json")).unwrap(),
        std::fs::read(fx.signed.join("index.json")).unwrap()
    );
}

#[test]
fn independent_tools_accept_the_signatures_and_attestations() {
    let fx = fixture();
    let work = scratch("e2e-attest-crosscheck");
    let s = resigned();
    // openssl verifies every simple-signing signature with cosign.pub.
    for (d, a) in &s.attached {
        for (i, l) in a.signatures.iter().enumerate() {
            use base64::Engine as _;
            let payload = work.join(format!("{}-{i}.payload", d.hex()));
            let sig = work.join(format!("{}-{i}.sig", d.hex()));
            std::fs::write(&payload, &l.payload).unwrap();
            std::fs::write(
                &sig,
                base64::engine::general_purpose::STANDARD
                    .decode(&l.signature)
                    .unwrap(),
            )
            .unwrap();
            let out = run(Command::new("openssl")
                .args(["dgst", "-sha256", "-verify"])
                .arg(&fx.public)
                .arg("-signature")
                .arg(&sig)
                .arg(&payload));
            assert!(out.contains("Verified OK"), "{out}");
            // ... and rejects it with the other key.
            let bad = Command::new("openssl")
                .args(["dgst", "-sha256", "-verify"])
                .arg(&fx.other_public)
                .arg("-signature")
                .arg(&sig)
                .arg(&payload)
                .output()
                .unwrap();
            assert!(!bad.status.success());
        }
    }
    // python-securesystemslib verifies every DSSE envelope kiln wrote.
    let python = project().join(".kiln/venv/bin/python");
    let script = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
pub = SSlibKey.from_crypto(load_pem_public_key(open(sys.argv[1], "rb").read()), keyid=sys.argv[2], scheme="ecdsa-sha2-nistp256")
for path in sys.argv[3:]:
    env = Envelope.from_dict(json.load(open(path)))
    env.verify([pub], 1)
    st = json.loads(env.payload)
    assert st["_type"] == "https://in-toto.io/Statement/v1", st["_type"]
    print(st["predicateType"], st["subject"][0]["digest"]["sha256"])
"#;
    let mut files = Vec::new();
    for (d, a) in &s.attached {
        for (i, l) in a.attestations.iter().enumerate() {
            let f = work.join(format!("{}-{i}.dsse.json", d.hex()));
            std::fs::write(&f, l.envelope.to_json()).unwrap();
            files.push(f);
        }
    }
    assert_eq!(files.len(), 7);
    let key_id = signer().public_key().key_id();
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&fx.public)
        .arg(&key_id)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/tools)", python.display()));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let seen = stdout(&out);
    for (t, d) in [
        (SLSA_PROVENANCE_V1, fx.index),
        (SPDX_DOCUMENT, fx.amd64),
        (CYCLONEDX_BOM, fx.arm64),
    ] {
        assert!(seen.contains(&format!("{t} {}", d.hex())), "{seen}");
    }
    // skopeo reads the signed layout: the image (both platforms) and the
    // signature manifests under their tags.
    for arch in ["amd64", "arm64"] {
        let info = skopeo_inspect(&fx.signed, "latest", &["--override-arch", arch]);
        assert_eq!(info["Architecture"], arch);
    }
    let m = skopeo_inspect(
        &fx.signed,
        &format!("sha256-{}.sig", fx.index.hex()),
        &["--raw"],
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    // umoci unpacks (and checks every digest of) a platform of the signed layout.
    let rootfs = unpack(&fx.signed, "latest-arm64", &work);
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
}

// --- tampering: each must fail, naming what is wrong ----------------------

#[test]
fn a_wrong_public_key_fails_every_signature() {
    let fx = fixture();
    let f = assert_fails_with(
        &fx.signed,
        &fx.other_public,
        &[],
        &["image index", "does not verify with the given key"],
    );
    assert!(
        f.iter()
            .any(|m| m.contains("arm64 manifest") && m.starts_with("signature")),
        "{f:#?}"
    );
    assert!(
        f.iter()
            .any(|m| m.starts_with("attestation")
                && m.contains("none of its 1 signature(s) verifies")),
        "{f:#?}"
    );
}

#[test]
fn a_signature_copied_from_another_image_fails() {
    let fx = fixture();
    let mut s = resigned();
    // The arm64 manifest's signatures, presented for amd64.
    let arm = s.attached[&fx.arm64].clone();
    let a = s.attached.get_mut(&fx.amd64).unwrap();
    a.signatures = arm.signatures;
    a.referrers.retain(|r| r.predicate_type != COSIGN_SIGN_V1);
    a.referrers.extend(
        arm.referrers
            .into_iter()
            .filter(|r| r.predicate_type == COSIGN_SIGN_V1),
    );
    let layout = write_signed("copied-signature", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "no valid signature over amd64 manifest",
            &format!("signature payload is for {}, not {}", fx.arm64, fx.amd64),
        ],
    );
}

#[test]
fn a_signed_payload_for_another_digest_fails() {
    let fx = fixture();
    let mut s = resigned();
    let elsewhere = Digest::of(b"some other image");
    let (layer, referrer) = signstore::sign_digest(&signer(), "scratch-plus", &elsewhere).unwrap();
    let a = s.attached.get_mut(&fx.index).unwrap();
    a.signatures = vec![layer];
    a.referrers.retain(|r| r.predicate_type != COSIGN_SIGN_V1);
    a.referrers.push(referrer);
    let layout = write_signed("other-digest", &s);
    let f = assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "no valid signature over image index",
            &format!("signature payload is for {elsewhere}"),
        ],
    );
    assert!(
        f.iter()
            .any(|m| m.contains("signature statement is for another image")),
        "{f:#?}"
    );

    // A payload edited after signing does not verify at all.
    let layout = copy_signed("edited-payload");
    let index = read_json(&layout.join("index.json"));
    let sig = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                == format!("sha256-{}.sig", fx.amd64.hex())
        })
        .unwrap();
    let m = read_json(&blob_of(
        &layout,
        &Digest::parse(sig["digest"].as_str().unwrap()).unwrap(),
    ));
    let payload_blob = blob_of(
        &layout,
        &Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap(),
    );
    flip_byte(&payload_blob, 20);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &["signature", "does not match its digest"],
    );
}

#[test]
fn one_changed_byte_in_a_layer_config_manifest_or_index_fails() {
    let fx = fixture();
    let amd64 = read_json(&blob_of(&fx.out, &fx.amd64));
    let layer = Digest::parse(amd64["layers"][0]["digest"].as_str().unwrap()).unwrap();
    let config = Digest::parse(amd64["config"]["digest"].as_str().unwrap()).unwrap();
    for (name, d, what) in [
        ("layer", layer, "layer 0"),
        ("config", config, "config"),
        ("manifest", fx.amd64, "amd64 manifest"),
        ("index", fx.index, "image index"),
    ] {
        let layout = copy_signed(&format!("byte-{name}"));
        flip_byte(&blob_of(&layout, &d), 100);
        let f = assert_fails_with(
            &layout,
            &fx.public,
            &[],
            &["blobs", what, &d.to_string(), "does not match its digest"],
        );
        eprintln!("{name}: {}", f.join(" | "));
    }
}

#[test]
fn an_attestation_about_other_subjects_fails() {
    let fx = fixture();
    let mut s = resigned();
    let mut st = provenance();
    for sub in &mut st.subject {
        if sub.name.ends_with("arm64") {
            sub.digest
                .insert("sha256".into(), Digest::of(b"not arm64").hex());
        }
    }
    replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, Some(&st));
    let layout = write_signed("subjects", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "subjects",
            "SLSA provenance",
            &format!("no subject with digest {}", fx.arm64),
            "arm64 manifest",
        ],
    );
}

#[test]
fn an_sbom_of_the_other_arch_fails() {
    let fx = fixture();
    let mut s = resigned();
    let arm = attached_statement(&s, &fx.arm64, SPDX_DOCUMENT);
    // arm64's SPDX document, signed as amd64's (subject = the amd64 manifest).
    let st = Statement::new(
        vec![kiln_seed::attest::ResourceDescriptor::subject(
            "scratch-plus:latest-amd64",
            &fx.amd64,
        )],
        SPDX_DOCUMENT,
        arm.predicate,
    );
    replace_attestation(&mut s, &fx.amd64, SPDX_DOCUMENT, Some(&st));
    let layout = write_signed("sbom-arch", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "sbom",
            "SPDX SBOM attached to the amd64 manifest",
            "describes an arm64 image",
            &fx.arm64.hex(),
        ],
    );
}

#[test]
fn provenance_dependencies_that_differ_from_the_lock_fail() {
    let fx = fixture();
    let source = project();
    let src = source.to_str().unwrap();
    let mut s = resigned();
    let mut st = provenance();
    let deps = st.predicate["buildDefinition"]["resolvedDependencies"]
        .as_array_mut()
        .unwrap();
    let deb = deps
        .iter_mut()
        .find(|d| d["uri"].as_str().unwrap().starts_with("pkg:deb/"))
        .unwrap();
    let purl = deb["uri"].as_str().unwrap().to_string();
    let real = deb["digest"]["sha256"].as_str().unwrap().to_string();
    let fake = Digest::of(b"a different .deb").hex();
    deb["digest"]["sha256"] = Value::String(fake.clone());
    deps.push(serde_json::json!({"uri": "pkg:deb/debian/netcat-openbsd@1.219-1?arch=amd64&distro=debian-12", "digest": {"sha256": fake}}));
    replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, Some(&st));
    let layout = write_signed("deps", &s);
    let f = assert_fails_with(
        &layout,
        &fx.public,
        &["--source", src],
        &[
            "lock",
            &format!("{purl} has sha256 {fake}, the lock pins {real}"),
        ],
    );
    assert!(
        f.iter()
            .any(|m| m
                .contains("netcat-openbsd@1.219-1?arch=amd64&distro=debian-12 is not in the lock")),
        "{f:#?}"
    );
    // Without --source the dependencies are not compared (and say so).
    let (_, report) = verify(&layout, &fx.public, &[]);
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "lock" && c["status"] == "info"));

    // A missing .deb is named too.
    let mut s = resigned();
    let mut st = provenance();
    st.predicate["buildDefinition"]["resolvedDependencies"]
        .as_array_mut()
        .unwrap()
        .retain(|d| !d["uri"].as_str().unwrap_or("").starts_with("pkg:deb/"));
    replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, Some(&st));
    let layout = write_signed("deps-missing", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &["--source", src],
        &["lock", &format!("{purl} (locked) is missing")],
    );
}

#[test]
fn an_unsigned_arm64_manifest_under_a_signed_index_fails() {
    let fx = fixture();
    let mut s = resigned();
    let a = s.attached.get_mut(&fx.arm64).unwrap();
    a.signatures.clear();
    a.referrers.retain(|r| r.predicate_type != COSIGN_SIGN_V1);
    let layout = write_signed("unsigned-arm64", &s);
    let f = assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "signature",
            &format!(
                "arm64 manifest sha256:{} is not signed",
                &fx.arm64.hex()[..12]
            ),
            &format!("sha256-{}.sig", fx.arm64.hex()),
        ],
    );
    // Only that: the index and amd64 signatures still verify.
    assert_eq!(
        f.iter().filter(|m| m.starts_with("signature")).count(),
        1,
        "{f:#?}"
    );
}

#[test]
fn a_missing_attestation_fails() {
    let fx = fixture();
    let mut s = resigned();
    replace_attestation(&mut s, &fx.amd64, CYCLONEDX_BOM, None);
    let layout = write_signed("missing-cdx", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &["no valid CycloneDX SBOM (https://cyclonedx.org/bom) is attached to amd64 manifest"],
    );
    let mut s = resigned();
    replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, None);
    let layout = write_signed("missing-provenance", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &["no valid SLSA provenance", "image index"],
    );
}

#[test]
fn an_expired_or_future_provenance_fails() {
    let fx = fixture();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |t: i64| Value::String(kiln_seed::attest::statement::rfc3339_utc(t));
    let with_times = |name: &str, started: i64, finished: i64| {
        let mut s = resigned();
        let mut st = provenance();
        let m = &mut st.predicate["runDetails"]["metadata"];
        m["startedOn"] = at(started);
        m["finishedOn"] = at(finished);
        replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, Some(&st));
        write_signed(name, &s)
    };
    let old = with_times("expired", now - 3 * 86_400, now - 3 * 86_400 + 60);
    assert_fails_with(
        &old,
        &fx.public,
        &["--max-age", "2d"],
        &["age", "provenance expired", "more than --max-age 2d"],
    );
    // Within a longer --max-age, or without one, the same provenance is fine.
    assert!(verify(&old, &fx.public, &["--max-age", "4d"]).0);
    assert!(verify(&old, &fx.public, &[]).0);
    let future = with_times("future", now, now + 86_400);
    assert_fails_with(&future, &fx.public, &[], &["age", "is in the future"]);
}

#[test]
fn tampered_attestations_and_unsandboxed_builds_fail() {
    let fx = fixture();
    // An envelope whose payload was edited after signing.
    let mut s = resigned();
    let a = s.attached.get_mut(&fx.amd64).unwrap();
    a.referrers.retain(|r| r.predicate_type != SPDX_DOCUMENT);
    let l = a
        .attestations
        .iter_mut()
        .find(|l| l.predicate_type == SPDX_DOCUMENT)
        .unwrap();
    let mut payload = l.envelope.payload_bytes().unwrap();
    let text = String::from_utf8(payload.clone())
        .unwrap()
        .replace("ca-certificates", "ca-certificatez");
    payload = text.into_bytes();
    l.envelope.payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&payload)
    };
    let layout = write_signed("edited-envelope", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &[
            "attestation",
            "SPDX SBOM on amd64 manifest",
            "none of its 1 signature(s) verifies",
        ],
    );

    // A provenance that records a build without the sandbox.
    let mut s = resigned();
    let mut st = provenance();
    st.predicate["buildDefinition"]["internalParameters"]["isolated"] = Value::Bool(false);
    st.predicate["buildDefinition"]["internalParameters"]["isolation"] =
        Value::String("NONE: built with --allow-unsandboxed while the Nix sandbox is off".into());
    replace_attestation(&mut s, &fx.index, SLSA_PROVENANCE_V1, Some(&st));
    let layout = write_signed("unsandboxed", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &[],
        &["isolation", "built WITHOUT isolation"],
    );
}

#[test]
fn kiln_sign_refuses_what_it_cannot_stand_behind() {
    let fx = fixture();
    // A provenance about other digests.
    let mut st = provenance();
    st.subject.pop();
    let wrong = fx.dir.join("wrong.intoto.json");
    kiln::provenance::write(&wrong, &st).unwrap();
    let out = kiln_env(&[
        "sign",
        fx.out.to_str().unwrap(),
        "--key",
        fx.key.to_str().unwrap(),
        "--provenance",
        wrong.to_str().unwrap(),
        "--out",
        fx.dir.join("never").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the provenance does not describe the image"),
        "{}",
        stderr(&out)
    );
    assert!(!fx.dir.join("never").exists());
    // A name that is no image is said to be none (not "build it first").
    let out = kiln_env(&[
        "sign",
        "no-such-image",
        "--key",
        fx.key.to_str().unwrap(),
        "--provenance-dir",
        fx.dir.join("provenance").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no image named no-such-image (known: "),
        "{}",
        stderr(&out)
    );
    // An image of the project that was never built has no provenance.
    let out = kiln_env(&[
        "sign",
        "python-debug",
        "--key",
        fx.key.to_str().unwrap(),
        "--provenance-dir",
        fx.dir.join("no-provenance-here").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("run `kiln build python-debug` first"),
        "{}",
        stderr(&out)
    );
    // A wrong password names the key file.
    let out = kiln_cmd(
        &project(),
        &sign_args(
            "scratch-plus",
            &fx.key,
            &fx.dir.join("provenance"),
            &fx.dir.join("never"),
        ),
    )
    .env("COSIGN_PASSWORD", "wrong")
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(fx.key.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // --key and --keyless are one or the other.
    let out = kiln_env(&["sign", "scratch-plus", "--keyless", "--key", "cosign.key"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--keyless"), "{}", stderr(&out));
}

#[test]
fn kiln_sign_never_deletes_what_is_not_a_layout() {
    let fx = fixture();
    let prov_dir = fx.dir.join("provenance");
    // A git checkout, and a directory holding one unrelated file.
    let checkout = scratch("e2e-attest-sign-checkout").join("repo");
    std::fs::create_dir_all(&checkout).unwrap();
    std::fs::write(checkout.join("main.go"), "package main\n").unwrap();
    run(Command::new("git")
        .arg("-C")
        .arg(&checkout)
        .args(["init", "-q"]));
    let one_file = scratch("e2e-attest-sign-one-file").join("out");
    std::fs::create_dir_all(&one_file).unwrap();
    std::fs::write(one_file.join("notes.txt"), "mine").unwrap();
    for (dest, holds) in [(&checkout, ".git, main.go"), (&one_file, "notes.txt")] {
        let out = kiln_env(&sign_args("scratch-plus", &fx.key, &prov_dir, dest));
        assert!(!out.status.success(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(dest.to_str().unwrap())
                && err.contains(holds)
                && err.contains("not an OCI image layout"),
            "{err}"
        );
        assert!(dest.join(holds.split(", ").last().unwrap()).is_file());
        // Nothing left beside it either.
        let parent: Vec<String> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(parent.len(), 1, "{parent:?}");
    }
    assert!(checkout.join(".git/HEAD").is_file());
    // A signed layout kiln wrote is replaced by signing again.
    let again = copy_signed("sign-again");
    ok(
        kiln_env(&sign_args("scratch-plus", &fx.key, &prov_dir, &again)),
        "kiln sign over a signed layout",
    );
    assert!(verify(&again, &fx.public, &[]).0);
}

// --- rebuild from provenance -----------------------------------------------

/// A git repository holding what the flake evaluates (so that a provenance
/// records a clean revision).
fn git_project(name: &str) -> PathBuf {
    let dir = scratch(name).join("project");
    let mut files = vec![
        "flake.nix".to_string(),
        "flake.lock".to_string(),
        "kiln.lock".to_string(),
        "nix/lib.nix".to_string(),
        "nix/seed.json".to_string(),
        "nix/seed/Cargo.toml".to_string(),
        "nix/seed/Cargo.lock".to_string(),
        "nix/seed/build.toml".to_string(),
    ];
    for sub in ["images", "apps", "policy", "nix/seed/src", "toolchains"] {
        let root = project().join(sub);
        if root.is_dir() {
            let listed = run(Command::new("find").arg(&root).args(["-type", "f"]));
            for f in listed.lines() {
                files.push(
                    Path::new(f)
                        .strip_prefix(project())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    for f in files {
        let to = dir.join(&f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(project().join(&f), &to).unwrap();
    }
    git_commit_all(&dir, "kiln e2e rebuild fixture");
    dir
}

#[test]
fn verify_rebuild_reproduces_the_signed_digests_from_the_recorded_revision() {
    let fx = fixture();
    let proj = git_project("e2e-attest-rebuild");
    let prov = proj.join(".kiln/provenance/scratch-plus.intoto.json");
    let run_kiln = |args: &[&str]| {
        kiln_cmd(&proj, args)
            .env("COSIGN_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    ok(
        run_kiln(&["build", "scratch-plus"]),
        "kiln build in the git fixture",
    );
    let st = kiln::provenance::read(&prov).unwrap();
    let ext = &st.predicate["buildDefinition"]["externalParameters"];
    assert_eq!(ext["source"]["dirty"], false, "{ext}");
    assert_eq!(
        ext["source"]["uri"],
        format!("git+file://{}", proj.canonicalize().unwrap().display())
    );
    ok(
        run_kiln(&["sign", "scratch-plus", "--key", fx.key.to_str().unwrap()]),
        "kiln sign in the git fixture",
    );
    let signed = proj.join(".kiln/signed/scratch-plus");
    let (passed, report) = verify(
        &signed,
        &fx.public,
        &["--rebuild", "--source", proj.to_str().unwrap()],
    );
    assert!(passed, "{report:#}");
    let rebuild = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "rebuild")
        .unwrap();
    assert!(
        rebuild["message"]
            .as_str()
            .unwrap()
            .contains("all 3 digests equal the signed ones"),
        "{rebuild}"
    );

    // A provenance pointing at a revision that builds something else: the
    // rebuild names the digests that differ.
    let def = proj.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&def).unwrap().replace(
        "\"org.opencontainers.image.vendor\" = \"kiln\"",
        "\"org.opencontainers.image.vendor\" = \"someone else\"",
    );
    std::fs::write(&def, text).unwrap();
    run(Command::new("git").arg("-C").arg(&proj).args([
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@kiln.invalid",
        "commit",
        "--quiet",
        "-am",
        "vendor",
    ]));
    let other_rev = run(Command::new("git")
        .arg("-C")
        .arg(&proj)
        .args(["rev-parse", "HEAD"]));
    let mut st = st.clone();
    st.predicate["buildDefinition"]["externalParameters"]["source"]["revision"] =
        Value::String(other_rev.trim().into());
    let s = signstore::sign(
        &signer(),
        &kiln::provenance::recorded_output(&st).unwrap(),
        &st,
        "scratch-plus",
    )
    .unwrap();
    let index = s.root_digest();
    let layout = write_signed("rebuild-other-rev", &s);
    assert_fails_with(
        &layout,
        &fx.public,
        &["--rebuild", "--source", proj.to_str().unwrap()],
        &[
            "rebuild",
            "digests differ",
            &format!("image index: signed {index}"),
        ],
    );
}

// --- hermeticity -------------------------------------------------------------

#[test]
fn the_sandbox_has_no_network_and_cannot_see_the_key_or_the_host() {
    require_setup();
    let fx = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = fx.key.canonicalize().unwrap();
    let checkout = project().canonicalize().unwrap();
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let local = format!("127.0.0.1:{port}");
    let input = serde_json::json!({
        "nonce": nonce,
        "connect": [local, "1.1.1.1:443", "[2606:4700:4700::1111]:443"],
        "paths": [key, "/home", "/root", checkout, "/usr", "/etc/passwd", "/etc/nix/nix.conf"],
    });
    let expr = format!(
        "(import {}/nix/lib.nix {{ root = {}; }}).step {{ name = \"kiln-probe\"; stepName = \"probe\"; input = builtins.fromJSON {}; }}",
        project().display(),
        project().display(),
        serde_json::to_string(&input.to_string()).unwrap()
    );
    let out = Command::new("nix")
        .args([
            "build",
            "--impure",
            "--no-link",
            "--json",
            "--print-build-logs",
            "--expr",
            &expr,
        ])
        .env_remove("KILN_ALLOW_UNSANDBOXED")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let probe_out = PathBuf::from(built[0]["outputs"]["out"].as_str().unwrap());
    let seen = read_json(&probe_out.join("probe.json"));

    // The probe ran and could read its own input (it is not blind).
    assert_eq!(seen["inputReadable"], true, "{seen:#}");
    // No network: not the host's loopback listener, not the internet.
    for addr in [local.as_str(), "1.1.1.1:443", "[2606:4700:4700::1111]:443"] {
        assert_eq!(
            seen["connect"][addr]["connected"], false,
            "{addr}: {seen:#}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "the sandboxed probe reached the host's 127.0.0.1:{port}"
    );
    let interfaces: Vec<&str> = seen["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(interfaces, vec!["lo"], "{seen:#}");
    // No key, no host tree.
    for p in [
        key.to_str().unwrap(),
        "/home",
        "/root",
        checkout.to_str().unwrap(),
        "/usr",
        "/etc/nix/nix.conf",
    ] {
        assert_eq!(
            seen["paths"][p]["exists"], false,
            "{p} is visible inside the sandbox: {seen:#}"
        );
        assert_eq!(seen["paths"][p]["readable"], false, "{p}: {seen:#}");
    }
    let root: Vec<&str> = seen["root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    for host_only in ["home", "root", "usr", "work", "var", "opt"] {
        assert!(
            !root.contains(&host_only),
            "/{host_only} in the sandbox: {root:?}"
        );
    }
    // The environment carries no secret: in particular no COSIGN_PASSWORD.
    let env: Vec<&str> = seen["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        !env.iter()
            .any(|e| e.contains("COSIGN") || e.contains("KILN_")),
        "{env:?}"
    );

    // Control: the same probe outside the sandbox sees the listener and the
    // key, so the assertions above can fail.
    let pin = read_json(&project().join("nix/seed.json"));
    let work = scratch("e2e-attest-probe-control");
    let input_file = work.join("input.json");
    std::fs::write(&input_file, input.to_string()).unwrap();
    let control = Command::new(pin["storePath"].as_str().unwrap())
        .arg("probe")
        .env("kilnInputPath", &input_file)
        .env("out", work.join("out"))
        .env("kilnAllowUnsandboxed", "1")
        .output()
        .unwrap();
    assert!(control.status.success(), "{}", stderr(&control));
    let host = read_json(&work.join("out/probe.json"));
    assert_eq!(host["connect"][&local]["connected"], true, "{host:#}");
    assert_eq!(
        host["paths"][key.to_str().unwrap()]["readable"],
        true,
        "{host:#}"
    );
}

/// `nix build --json` lists results in derivation-path order, not in the
/// order asked for: each image must still get its own provenance.
#[test]
fn one_build_of_several_images_writes_each_its_own_provenance() {
    let fx = fixture();
    let dir = fx.dir.join("several");
    let attrs = ["scratch-plus-arm64", "scratch-plus", "scratch-plus-amd64"];
    let mut args = vec!["build", "--json", "--provenance-dir", dir.to_str().unwrap()];
    args.extend(attrs);
    let built: Value =
        serde_json::from_str(&ok(kiln_env(&args), "kiln build of three attributes")).unwrap();
    for (i, attr) in attrs.iter().enumerate() {
        assert_eq!(built[i]["image"], *attr);
        let st = kiln::provenance::read(&dir.join(format!("{attr}.intoto.json"))).unwrap();
        let subjects: Vec<(String, Digest)> = st
            .subject
            .iter()
            .map(|s| (s.name.clone(), s.sha256().unwrap()))
            .collect();
        let expected = match *attr {
            "scratch-plus" => vec![
                ("scratch-plus:latest".to_string(), fx.index),
                ("scratch-plus:latest-amd64".to_string(), fx.amd64),
                ("scratch-plus:latest-arm64".to_string(), fx.arm64),
            ],
            "scratch-plus-amd64" => vec![("scratch-plus:latest-amd64".to_string(), fx.amd64)],
            _ => vec![("scratch-plus:latest-arm64".to_string(), fx.arm64)],
        };
        assert_eq!(subjects, expected, "{attr}");
        assert_eq!(
            st.predicate["buildDefinition"]["externalParameters"]["flakeAttribute"],
            *attr
        );
        let out = kiln::provenance::recorded_output(&st).unwrap();
        assert_eq!(out.to_str().unwrap(), built[i]["out"].as_str().unwrap());
    }
    // A single-platform image signs and verifies on its own.
    let signed = fx.dir.join("signed-arm64");
    ok(
        kiln_env(&sign_args("scratch-plus-arm64", &fx.key, &dir, &signed)),
        "kiln sign scratch-plus-arm64",
    );
    let (passed, report) = verify(
        &signed,
        &fx.public,
        &["--source", project().to_str().unwrap()],
    );
    assert!(passed, "{report:#}");
    assert_eq!(report["digest"], fx.arm64.to_string());
}

/// With the sandbox off, `kiln build --allow-unsandboxed` builds, and its
/// provenance says the build was not isolated; the verifier refuses it.
#[test]
fn an_unsandboxed_build_is_recorded_as_not_isolated_and_fails_verification() {
    let fx = fixture();
    let dir = fx.dir.join("unsandboxed");
    let out = kiln_cmd(
        &project(),
        &["build", "--allow-unsandboxed", "--json", "--provenance-dir"],
    )
    .arg(&dir)
    .arg("scratch-plus-amd64")
    .env("NIX_CONFIG", "sandbox = false")
    .env("COSIGN_PASSWORD", PASSWORD)
    .output()
    .unwrap();
    let built: Value = serde_json::from_str(&ok(out, "kiln build --allow-unsandboxed")).unwrap();
    let st = kiln::provenance::read(&dir.join("scratch-plus-amd64.intoto.json")).unwrap();
    let int = &st.predicate["buildDefinition"]["internalParameters"];
    assert_eq!(int["isolated"], false, "{int}");
    assert_eq!(int["nix"]["sandbox"], "false", "{int}");
    let isolation = int["isolation"].as_str().unwrap();
    assert!(
        isolation.starts_with("NONE: built with --allow-unsandboxed")
            && isolation.contains("sandbox = false"),
        "{isolation}"
    );
    // The image itself is the same bytes (the seed is deterministic either way).
    assert_eq!(built[0]["digest"], fx.amd64.to_string());
    let signed = dir.join("signed");
    ok(
        kiln_env(&sign_args("scratch-plus-amd64", &fx.key, &dir, &signed)),
        "kiln sign of the unsandboxed build",
    );
    assert_fails_with(
        &signed,
        &fx.public,
        &[],
        &["isolation", "built WITHOUT isolation", "sandbox = false"],
    );
}

/// Current Nix releases expose a static shell as `/bin/sh` in every
/// sandbox by default (Debian 13's Nix: `/bin/sh=/usr/bin/bash-static`).
/// That is no reason to call the sandbox off: where kiln owns the store
/// it empties `sandbox-paths` for its own builds and says so in the
/// provenance; any other host path is refused, naming the fix.
#[test]
fn current_nixs_default_shell_is_removed_and_recorded_and_host_paths_are_refused() {
    let fx = fixture();
    let dir = fx.dir.join("nix-default-shell");
    // This machine's Nix 2.8 has no default sandbox path; give it current
    // Nix's (any single program file stands for the static shell).
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    let configured = format!("/bin/sh={}", shell.display());
    let out = kiln_cmd(&project(), &["build", "--json", "--provenance-dir"])
        .arg(&dir)
        .arg("scratch-plus-amd64")
        .env("NIX_CONFIG", format!("sandbox-paths = {configured}"))
        .output()
        .unwrap();
    let built: Value =
        serde_json::from_str(&ok(out, "kiln build under a default /bin/sh")).unwrap();
    assert_eq!(built[0]["digest"], fx.amd64.to_string());
    let st = kiln::provenance::read(&dir.join("scratch-plus-amd64.intoto.json")).unwrap();
    let int = &st.predicate["buildDefinition"]["internalParameters"];
    assert_eq!(int["isolated"], true, "{int}");
    assert_eq!(int["nix"]["sandboxPaths"], serde_json::json!([]), "{int}");
    let overridden = format!("sandbox-paths = (empty; configured: {configured})");
    assert_eq!(
        int["nix"]["kilnOverrides"],
        serde_json::json!([overridden]),
        "{int}"
    );
    assert!(
        int["isolation"]
            .as_str()
            .unwrap()
            .contains(&format!("kiln set {overridden}")),
        "{int}"
    );

    // A path that shows builds the host's files is refused, and the
    // sandbox, which is on, is not called off.
    let out = kiln_cmd(&project(), &["build", "scratch-plus-amd64"])
        .env("NIX_CONFIG", "sandbox-paths = /etc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sandbox-paths = /etc exposes host paths")
            && err.contains("Remove /etc from sandbox-paths in /etc/nix/nix.conf")
            && err.contains("--allow-unsandboxed")
            && !err.contains(" off"),
        "{err}"
    );
}

// --- every name leads to what was verified ---------------------------------

/// Writes `bytes` as a blob of `layout`; its descriptor fields.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let d = Digest::of(bytes);
    std::fs::write(blob_of(layout, &d), bytes).unwrap();
    (d.to_string(), bytes.len() as u64)
}

fn edit_index(layout: &Path, f: impl FnOnce(&mut Vec<Value>)) {
    let path = layout.join("index.json");
    let mut v = read_json(&path);
    f(v["manifests"].as_array_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// A manifest that is not the signed one (the amd64 manifest with an
/// annotation added: a real, runnable image nobody signed).
fn unsigned_manifest(layout: &Path) -> (String, u64) {
    let mut m = read_json(&blob_of(layout, &fixture().amd64));
    m["annotations"]["org.example.evil"] = Value::from("1");
    put_blob(layout, &serde_json::to_vec(&m).unwrap())
}

fn descriptor(media_type: &str, (digest, size): &(String, u64), name: Option<&str>) -> Value {
    let mut d = serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
    if let Some(n) = name {
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
    }
    d
}

/// `kiln push LAYOUT --ref NAME` to a port where nothing listens: it must
/// be refused before any connection is tried; its stderr.
fn push_ref_fails(layout: &Path, name: &str) -> String {
    let out = kiln(&[
        "push",
        layout.to_str().unwrap(),
        "127.0.0.1:1/kiln/x:latest",
        "--ref",
        name,
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("Connection refused"),
        "it tried to connect: {err}"
    );
    err
}

/// Whether the report has a `check` line of `status` whose message
/// contains `needle`.
fn has_check(report: &Value, check: &str, status: &str, needle: &str) -> bool {
    report["checks"].as_array().unwrap().iter().any(|c| {
        c["check"] == check
            && c["status"] == status
            && c["message"].as_str().unwrap().contains(needle)
    })
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[test]
fn every_name_in_a_signed_layout_leads_to_the_verified_image() {
    let fx = fixture();
    // The honest layout verifies, every name included.
    let (passed, report) = verify(&fx.signed, &fx.public, &[]);
    assert!(passed, "{report:#}");
    assert!(has_check(&report, "names", "pass", ""), "{report:#}");

    // A per-platform name pointed at another image's manifest.
    let l = copy_signed("names-platform");
    let other = unsigned_manifest(&l);
    edit_index(&l, |ms| {
        for m in ms.iter_mut() {
            if m["annotations"]["org.opencontainers.image.ref.name"] == "latest-amd64" {
                m["digest"] = Value::from(other.0.clone());
                m["size"] = Value::from(other.1);
            }
        }
    });
    // What a consumer gets under that name is the other image.
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest-amd64", l.display())));
    assert_eq!(Digest::of(raw.as_bytes()).to_string(), other.0);
    assert_fails_with(&l, &fx.public, &[], &["\"latest-amd64\"", &other.0]);
    // kiln push of that name under the layout's signatures is refused.
    let err = push_ref_fails(&l, "latest-amd64");
    assert!(
        err.contains("\"latest-amd64\"") && err.contains("signatures do not cover"),
        "{err}"
    );
    // Verifying that name alone cannot succeed: nothing is attached to
    // what it leads to (exit 2, said plainly, not as failed checks).
    let (passed, report) = verify(
        &PathBuf::from(format!("{}:latest-amd64", l.display())),
        &fx.public,
        &[],
    );
    assert!(!passed, "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("({}) is not signed", other.0)),
        "{report:#}"
    );

    // A second image named `latest`, unsigned, before the signed one.
    let l = copy_signed("names-duplicate");
    let mut index = read_json(&blob_of(&l, &fx.index));
    index["annotations"] = serde_json::json!({"org.example.evil": "1"});
    let evil = put_blob(&l, &serde_json::to_vec(&index).unwrap());
    edit_index(&l, |ms| {
        ms.insert(0, descriptor(INDEX, &evil, Some("latest")))
    });
    let f = assert_fails_with(&l, &fx.public, &[], &["\"latest\"", &evil.0]);
    assert!(f.iter().any(|m| m.contains(&fx.index.to_string())), "{f:?}");
    assert_fails_with(
        &l,
        &fx.public,
        &["--tag", "latest"],
        &["\"latest\"", "2 entries"],
    );
    let err = push_ref_fails(&l, "latest");
    assert!(err.contains("2 entries \"latest\""), "{err}");

    // An untagged extra manifest, neither signed nor an artifact.
    let l = copy_signed("names-untagged");
    let extra = unsigned_manifest(&l);
    edit_index(&l, |ms| ms.push(descriptor(MANIFEST, &extra, None)));
    assert_fails_with(&l, &fx.public, &[], &[&extra.0, "no name"]);
}

/// Adds a layer of random bytes to the manifest tagged `tag`.
fn add_garbage_layer(layout: &Path, tag: &str, media_type: &str, annotations: Value) {
    let mut garbage = vec![0u8; 512];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let layer = put_blob(layout, &garbage);
    edit_index(layout, |ms| {
        let m = ms
            .iter_mut()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap();
        let d = Digest::parse(m["digest"].as_str().unwrap()).unwrap();
        let mut doc = read_json(&blob_of(layout, &d));
        let mut l = descriptor(media_type, &layer, None);
        l["annotations"] = annotations;
        doc["layers"].as_array_mut().unwrap().push(l);
        let (digest, size) = put_blob(layout, &serde_json::to_vec(&doc).unwrap());
        m["digest"] = Value::from(digest);
        m["size"] = Value::from(size);
    });
}

#[test]
fn broken_signature_and_attestation_artifacts_follow_one_rule() {
    let fx = fixture();
    let sig = kiln_seed::attest::cosign_tag(&fx.index, "sig");
    let att = kiln_seed::attest::cosign_tag(&fx.index, "att");
    // Garbage beside valid ones: a failure for both kinds.
    let l = copy_signed("garbage-sig");
    add_garbage_layer(
        &l,
        &sig,
        "application/vnd.dev.cosign.simplesigning.v1+json",
        serde_json::json!({"dev.cosignproject.cosign/signature": "AAAA"}),
    );
    assert_fails_with(
        &l,
        &fx.public,
        &[],
        &["malformed signature artifact", ".sig"],
    );
    let l = copy_signed("garbage-att");
    add_garbage_layer(
        &l,
        &att,
        "application/vnd.dsse.envelope.v1+json",
        serde_json::json!({"predicateType": "https://slsa.dev/provenance/v1"}),
    );
    assert_fails_with(
        &l,
        &fx.public,
        &[],
        &["malformed SLSA provenance artifact", ".att"],
    );

    // Another signer's well-formed signature beside ours: ignored, with a
    // warning, as cosign does.
    let other = KeyFileSigner::from_file(&fx.dir.join("other.key"), PASSWORD.as_bytes()).unwrap();
    let theirs = signstore::sign(&other, &fx.out, &provenance(), "scratch-plus").unwrap();
    let mut ours = resigned();
    let d = fx.index;
    let extra = theirs.attached[&d].signatures.clone();
    ours.attached.get_mut(&d).unwrap().signatures.extend(extra);
    let l = write_signed("two-signers", &ours);
    let (passed, report) = verify(&l, &fx.public, &[]);
    assert!(passed, "{report:#}");
    assert!(
        has_check(&report, "signature", "warn", "ignored an invalid signature"),
        "{report:#}"
    );
}
