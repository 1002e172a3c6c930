use super::testing::{dsse_body, hashedrekord_body, TestAuthority};
use super::*;
use crate::attest::Bundle;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use sha2::{Digest as _, Sha256};

/// A real public-good bundle: the rfc8785 0.1.2 wheel, signed on GitHub
/// Actions by its release workflow in March 2024 (from sigstore-python's
/// test assets, Apache-2.0; see testdata/README).
const WHEEL: &[u8] = include_bytes!("testdata/rfc8785-0.1.2-py3-none-any.whl");
const WHEEL_BUNDLE: &[u8] = include_bytes!("testdata/rfc8785-0.1.2-py3-none-any.whl.sigstore");
const WORKFLOW: &str =
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2";
const GITHUB: &str = "https://token.actions.githubusercontent.com";

fn public_good(identity: Matcher, issuer: Matcher) -> Policy {
    Policy {
        identity,
        issuer,
        root: TrustedRoot::public_good(),
    }
}

fn exact(s: &str) -> Matcher {
    Matcher::Exact(s.into())
}

/// Verifies the wheel's bundle as `kiln` does a message signature.
fn verify_wheel(policy: &Policy, artifact: &[u8], bundle: &[u8]) -> Result<Signer, String> {
    let b = Bundle::from_json(bundle).map_err(|e| e.to_string())?;
    b.verify_message_signature_keyless(artifact, policy)
        .map_err(|e| e.to_string())
}

#[test]
fn a_real_public_good_bundle_verifies() {
    let signer = verify_wheel(
        &public_good(exact(WORKFLOW), exact(GITHUB)),
        WHEEL,
        WHEEL_BUNDLE,
    )
    .unwrap();
    assert_eq!(signer.identity, WORKFLOW);
    assert_eq!(signer.issuer, GITHUB);
    assert_eq!(signer.log.log_index, 79_605_083);
    assert_eq!(signer.log.log_url, "https://rekor.sigstore.dev");
    let by_pattern = public_good(
        Matcher::regex(r"https://github\.com/trailofbits/.*").unwrap(),
        exact(GITHUB),
    );
    verify_wheel(&by_pattern, WHEEL, WHEEL_BUNDLE).unwrap();
}

#[test]
fn the_real_bundle_fails_for_another_signer_artifact_or_root() {
    let e = verify_wheel(
        &public_good(exact("https://github.com/someone/else"), exact(GITHUB)),
        WHEEL,
        WHEEL_BUNDLE,
    )
    .unwrap_err();
    assert!(
        e.contains("does not match --certificate-identity") && e.contains(WORKFLOW),
        "{e}"
    );
    // Patterns are anchored: a prefix is not enough.
    let e = verify_wheel(
        &public_good(
            Matcher::regex("https://github.com/trailofbits").unwrap(),
            exact(GITHUB),
        ),
        WHEEL,
        WHEEL_BUNDLE,
    )
    .unwrap_err();
    assert!(e.contains("-regexp"), "{e}");
    let e = verify_wheel(
        &public_good(exact(WORKFLOW), exact("https://accounts.google.com")),
        WHEEL,
        WHEEL_BUNDLE,
    )
    .unwrap_err();
    assert!(e.contains("OIDC issuer") && e.contains(GITHUB), "{e}");
    let mut other = WHEEL.to_vec();
    other[100] ^= 1;
    let e = verify_wheel(
        &public_good(exact(WORKFLOW), exact(GITHUB)),
        &other,
        WHEEL_BUNDLE,
    )
    .unwrap_err();
    assert!(e.contains("digest"), "{e}");
    // Trusting only a test instance: nothing of the public good's is trusted.
    let test = TestAuthority::new(1);
    let policy = Policy {
        identity: exact(WORKFLOW),
        issuer: exact(GITHUB),
        root: TrustedRoot::from_json(test.trusted_root_json("f", "r").as_bytes(), "test.json")
            .unwrap(),
    };
    let e = verify_wheel(&policy, WHEEL, WHEEL_BUNDLE).unwrap_err();
    assert!(e.contains("test.json does not trust"), "{e}");
}

#[test]
fn a_tampered_log_entry_fails() {
    let policy = public_good(exact(WORKFLOW), exact(GITHUB));
    let mut v: serde_json::Value = serde_json::from_slice(WHEEL_BUNDLE).unwrap();
    let entry = &mut v["verificationMaterial"]["tlogEntries"][0];
    entry["integratedTime"] = "1710888077".into();
    let e = verify_wheel(&policy, WHEEL, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.contains("signed entry timestamp"), "{e}");
    let mut v: serde_json::Value = serde_json::from_slice(WHEEL_BUNDLE).unwrap();
    let entry = &mut v["verificationMaterial"]["tlogEntries"][0];
    entry["inclusionProof"]["hashes"][3] = STANDARD.encode([0u8; 32]).into();
    let e = verify_wheel(&policy, WHEEL, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.contains("inclusion proof"), "{e}");
    let mut v: serde_json::Value = serde_json::from_slice(WHEEL_BUNDLE).unwrap();
    v["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let e = verify_wheel(&policy, WHEEL, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.contains("no transparency-log entry"), "{e}");
}

/// A signature made with the test authority, as the driver's keyless
/// signing makes it: the leaf for a fresh key, the Rekor entry.
struct Made {
    authority: TestAuthority,
    leaf: Vec<u8>,
    signature: Vec<u8>,
    entry: Entry,
}

const ID: &str = "https://ci.example/kiln/.ci/release@refs/heads/main";
const ISSUER: &str = "https://issuer.example";
const T: i64 = 1_760_000_000;

fn make(artifact: &[u8], mutate: impl FnOnce(&mut TestAuthority)) -> Made {
    let mut authority = TestAuthority::new(7);
    mutate(&mut authority);
    let key = SigningKey::from_slice(&[9; 32]).unwrap();
    let leaf = authority.issue(key.verifying_key(), ID, ISSUER, T);
    let sig: DerSignature = key.sign(artifact);
    let digest: [u8; 32] = Sha256::digest(artifact).into();
    let body = hashedrekord_body(&digest, sig.as_bytes(), &leaf);
    let entry = authority.log(&body, 5, T + 30);
    Made {
        authority,
        leaf,
        signature: sig.as_bytes().to_vec(),
        entry,
    }
}

fn test_policy(m: &Made) -> Policy {
    Policy {
        identity: exact(ID),
        issuer: exact(ISSUER),
        root: TrustedRoot::from_json(
            m.authority
                .trusted_root_json("https://fulcio.test", "https://rekor.test")
                .as_bytes(),
            "test-root.json",
        )
        .unwrap(),
    }
}

fn check(m: &Made, policy: &Policy, artifact: &[u8]) -> Result<Signer, KeylessError> {
    let leaf = Leaf::parse(&m.leaf)?;
    leaf.public_key()?
        .verify(artifact, &m.signature)
        .map_err(|e| KeylessError::SigningKey(e.to_string()))?;
    let digest: [u8; 32] = Sha256::digest(artifact).into();
    verify(
        policy,
        &leaf,
        std::slice::from_ref(&m.entry),
        Logged::Artifact {
            sha256: &digest,
            signature: &m.signature,
        },
    )
}

#[test]
fn a_test_authority_signature_verifies_and_its_parts_are_each_checked() {
    let m = make(b"hello", |_| {});
    let s = check(&m, &test_policy(&m), b"hello").unwrap();
    assert_eq!((s.identity.as_str(), s.issuer.as_str()), (ID, ISSUER));
    assert_eq!(s.log.log_index, 5);
    assert_eq!(s.log.integrated_time, T + 30);

    // Another authority's root trusts none of it.
    let other = make(b"hello", |_| {});
    let mut policy = test_policy(&other);
    policy.root = TrustedRoot::from_json(
        TestAuthority::new(50)
            .trusted_root_json("f", "r")
            .as_bytes(),
        "other.json",
    )
    .unwrap();
    assert!(matches!(
        check(&m, &policy, b"hello"),
        Err(KeylessError::Tlog(_))
    ));

    // No SCT in the certificate.
    let m = make(b"hello", |a| a.with_sct = false);
    assert!(matches!(
        check(&m, &test_policy(&m), b"hello"),
        Err(KeylessError::NoSct)
    ));

    // Logged after the ten minutes the certificate was valid.
    let mut m = make(b"hello", |_| {});
    let digest: [u8; 32] = Sha256::digest(b"hello").into();
    m.entry = m.authority.log(
        &hashedrekord_body(&digest, &m.signature, &m.leaf),
        5,
        T + 601,
    );
    let e = check(&m, &test_policy(&m), b"hello").unwrap_err();
    assert!(matches!(e, KeylessError::NotValidWhenLogged { .. }), "{e}");

    // The log entry records another artifact, or another certificate.
    let mut m = make(b"hello", |_| {});
    m.entry = m.authority.log(
        &hashedrekord_body(&[0; 32], &m.signature, &m.leaf),
        5,
        T + 30,
    );
    let e = check(&m, &test_policy(&m), b"hello")
        .unwrap_err()
        .to_string();
    assert!(e.contains("another artifact digest"), "{e}");
    let mut m = make(b"hello", |_| {});
    let other_leaf = m.authority.issue(
        SigningKey::from_slice(&[3; 32]).unwrap().verifying_key(),
        ID,
        ISSUER,
        T,
    );
    m.entry = m.authority.log(
        &hashedrekord_body(&digest, &m.signature, &other_leaf),
        5,
        T + 30,
    );
    let e = check(&m, &test_policy(&m), b"hello")
        .unwrap_err()
        .to_string();
    assert!(e.contains("another certificate"), "{e}");

    // A checkpoint signed by another key.
    let mut m = make(b"hello", |_| {});
    let forged = TestAuthority::new(50).log(
        &STANDARD.decode(&m.entry.canonicalized_body).unwrap(),
        5,
        T + 30,
    );
    m.entry.inclusion_proof.as_mut().unwrap().checkpoint =
        forged.inclusion_proof.unwrap().checkpoint;
    m.entry.inclusion_promise = None;
    let e = check(&m, &test_policy(&m), b"hello")
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint"), "{e}");
}

#[test]
fn dsse_entries_record_the_payload_and_the_signature() {
    let m = make(b"x", |_| {});
    let leaf = Leaf::parse(&m.leaf).unwrap();
    let body = dsse_body(b"{}", b"payload", b"sig", &m.leaf);
    let entry = m.authority.log(&body, 0, T + 1);
    let policy = test_policy(&m);
    let ok = |payload: &[u8], signature: &[u8]| {
        verify(
            &policy,
            &leaf,
            std::slice::from_ref(&entry),
            Logged::Envelope { payload, signature },
        )
    };
    ok(b"payload", b"sig").unwrap();
    assert!(ok(b"other", b"sig")
        .unwrap_err()
        .to_string()
        .contains("another payload"));
    assert!(ok(b"payload", b"other").is_err());
    // A hashedrekord entry is not a record of an envelope.
    let hr = m
        .authority
        .log(&hashedrekord_body(&[1; 32], b"sig", &m.leaf), 0, T + 1);
    assert!(verify(
        &policy,
        &leaf,
        &[hr],
        Logged::Envelope {
            payload: b"payload",
            signature: b"sig"
        }
    )
    .is_err());
}
