//! cosign's "simple signing" payload: the JSON document a legacy cosign
//! image signature (`sha256-<hex>.sig`, layer media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`) signs.
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry/repo"},
//!              "image":{"docker-manifest-digest":"sha256:..."},
//!              "type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! The signature is over the payload bytes as stored, so a verifier checks
//! the signature first and only then trusts what the payload says (the
//! digest must be the one being verified: a signature copied from another
//! image verifies, but is for another digest).

use super::pubkey::PublicKey;
use crate::digest::Digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `critical.type` of a cosign container image signature.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

#[derive(Debug, thiserror::Error)]
pub enum SimpleSigningError {
    #[error("signature payload is not a cosign simple-signing document: {reason}")]
    Json { reason: String },
    #[error("signature payload has critical.type {found:?}, expected {SIMPLE_SIGNING_TYPE:?}")]
    WrongType { found: String },
    #[error("signature payload is for {found}, not {expected}")]
    WrongDigest { found: String, expected: Digest },
    #[error("signature payload names image {found:?}, expected {expected:?}")]
    WrongReference { found: String, expected: String },
    #[error("signature for {digest} is not valid base64: {reason}")]
    BadBase64 { digest: Digest, reason: String },
    #[error("signature for {digest} does not verify with the given key(s) [{keys}]")]
    NoValidSignature { digest: Digest, keys: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Free-form annotations (`cosign sign -a k=v`); `null` when none, as cosign writes it.
    #[serde(default)]
    pub optional: Option<BTreeMap<String, Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Kept as text so a malformed value can still be reported.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    pub fn new(
        docker_reference: &str,
        manifest_digest: &Digest,
        optional: Option<BTreeMap<String, Value>>,
    ) -> SimpleSigning {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: docker_reference.to_string(),
                },
                image: Image {
                    docker_manifest_digest: manifest_digest.to_string(),
                },
                type_: SIMPLE_SIGNING_TYPE.to_string(),
            },
            optional,
        }
    }

    /// The payload bytes to sign: deterministic compact JSON (sorted keys).
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::canonical(self)
    }

    pub fn from_json(bytes: &[u8]) -> Result<SimpleSigning, SimpleSigningError> {
        serde_json::from_slice(bytes).map_err(|e| SimpleSigningError::Json {
            reason: e.to_string(),
        })
    }

    /// Checks the type string and that the payload is for `expected`.
    pub fn check(&self, expected: &Digest) -> Result<(), SimpleSigningError> {
        if self.critical.type_ != SIMPLE_SIGNING_TYPE {
            return Err(SimpleSigningError::WrongType {
                found: self.critical.type_.clone(),
            });
        }
        if Digest::parse(&self.critical.image.docker_manifest_digest)
            .ok()
            .as_ref()
            != Some(expected)
        {
            return Err(SimpleSigningError::WrongDigest {
                found: self.critical.image.docker_manifest_digest.clone(),
                expected: *expected,
            });
        }
        Ok(())
    }

    /// Requires `critical.identity.docker-reference` to equal `expected`
    /// (a repository such as `registry:5000/kiln/scratch-plus`).
    pub fn check_reference(&self, expected: &str) -> Result<(), SimpleSigningError> {
        if self.critical.identity.docker_reference != expected {
            return Err(SimpleSigningError::WrongReference {
                found: self.critical.identity.docker_reference.clone(),
                expected: expected.to_string(),
            });
        }
        Ok(())
    }
}

/// The simple-signing payload for (docker reference, manifest digest).
pub fn payload(
    docker_reference: &str,
    manifest_digest: &Digest,
    optional: Option<BTreeMap<String, Value>>,
) -> Vec<u8> {
    SimpleSigning::new(docker_reference, manifest_digest, optional).to_json()
}

/// Parses a payload and checks it is a cosign image signature for `expected`.
pub fn parse_and_check(
    bytes: &[u8],
    expected: &Digest,
) -> Result<SimpleSigning, SimpleSigningError> {
    let doc = SimpleSigning::from_json(bytes)?;
    doc.check(expected)?;
    Ok(doc)
}

/// What `cosign verify --key` does for one legacy signature: the signature
/// (base64, as in the `dev.cosignproject.cosign/signature` annotation) must
/// verify over `payload` with one of `keys`, and the payload must be a
/// simple-signing document for `expected`.
pub fn verify(
    payload: &[u8],
    signature_b64: &str,
    expected: &Digest,
    keys: &[PublicKey],
) -> Result<SimpleSigning, SimpleSigningError> {
    let sig = decode_signature(signature_b64, expected)?;
    if !keys.iter().any(|k| k.verify(payload, &sig).is_ok()) {
        return Err(SimpleSigningError::NoValidSignature {
            digest: *expected,
            keys: keys
                .iter()
                .map(|k| k.key_id())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    parse_and_check(payload, expected)
}

/// The signature annotation's bytes.
fn decode_signature(signature_b64: &str, digest: &Digest) -> Result<Vec<u8>, SimpleSigningError> {
    STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| SimpleSigningError::BadBase64 {
            digest: *digest,
            reason: e.to_string(),
        })
}

/// Whether a signature artifact is well formed, whoever signed it and
/// whatever it is about: the payload is a simple-signing document and the
/// signature annotation is base64. What [`verify`] needs before any key is
/// tried; the verifier fails an artifact that is not.
pub fn well_formed(
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Result<(), SimpleSigningError> {
    SimpleSigning::from_json(payload)?;
    decode_signature(signature_b64, digest).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::pubkey::tests::{sign_der, test_public};

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn payload_bytes_are_cosigns_shape() {
        let p = payload("127.0.0.1:5000/kiln/scratch-plus", &d(0xab), None);
        assert_eq!(
            String::from_utf8(p).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/kiln/scratch-plus"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
                d(0xab)
            )
        );
        let opt = BTreeMap::from([
            ("z".to_string(), Value::from("1")),
            ("a".to_string(), Value::from("2")),
        ]);
        let p = String::from_utf8(payload("r", &d(1), Some(opt))).unwrap();
        assert!(p.ends_with(r#""optional":{"a":"2","z":"1"}}"#), "{p}");
    }

    #[test]
    fn parses_what_cosign_writes() {
        // Field order and whitespace as Go's encoding/json writes them.
        let cosign = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"ghcr.io/x/y"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":{{"sig":"original"}}}}"#,
            d(3)
        );
        let doc = parse_and_check(cosign.as_bytes(), &d(3)).unwrap();
        assert_eq!(doc.critical.identity.docker_reference, "ghcr.io/x/y");
        doc.check_reference("ghcr.io/x/y").unwrap();
        assert!(matches!(
            doc.check_reference("ghcr.io/x/z").unwrap_err(),
            SimpleSigningError::WrongReference { .. }
        ));
    }

    #[test]
    fn digest_mismatch_is_named() {
        let p = payload("r", &d(1), None);
        let err = parse_and_check(&p, &d(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("signature payload is for {}, not {}", d(1), d(2))
        );
    }

    #[test]
    fn wrong_type_is_rejected() {
        let mut doc = SimpleSigning::new("r", &d(1), None);
        doc.critical.type_ = "atomic container signature".into();
        assert!(matches!(
            parse_and_check(&doc.to_json(), &d(1)).unwrap_err(),
            SimpleSigningError::WrongType { .. }
        ));
        assert!(matches!(
            parse_and_check(b"{}", &d(1)).unwrap_err(),
            SimpleSigningError::Json { .. }
        ));
    }

    #[test]
    fn verify_checks_signature_then_digest() {
        let p = payload("r", &d(1), None);
        let sig = STANDARD.encode(sign_der(1, &p));
        verify(&p, &sig, &d(1), &[test_public(1)]).unwrap();
        // Wrong key.
        let err = verify(&p, &sig, &d(1), &[test_public(2)]).unwrap_err();
        assert!(
            matches!(err, SimpleSigningError::NoValidSignature { .. }),
            "{err}"
        );
        // A valid signature copied onto another image.
        let err = verify(&p, &sig, &d(9), &[test_public(1)]).unwrap_err();
        assert!(
            matches!(err, SimpleSigningError::WrongDigest { .. }),
            "{err}"
        );
        // Tampered payload.
        let mut tampered = p.clone();
        tampered[20] ^= 1;
        assert!(matches!(
            verify(&tampered, &sig, &d(1), &[test_public(1)]).unwrap_err(),
            SimpleSigningError::NoValidSignature { .. }
        ));
        assert!(matches!(
            verify(&p, "@@", &d(1), &[test_public(1)]).unwrap_err(),
            SimpleSigningError::BadBase64 { .. }
        ));
    }
}
