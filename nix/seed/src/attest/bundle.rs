//! Sigstore bundle v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`),
//! the protobuf-JSON form of `dev.sigstore.bundle.v1.Bundle`
//! (sigstore/protobuf-specs `sigstore_bundle.proto`, `sigstore_common.proto`,
//! `envelope.proto`), as cosign 3 writes it for OCI 1.1 referrers.
//!
//! For key-based signing the verification material is a `publicKey`
//! identifier whose `hint` is base64(sha256(SPKI DER)); the key itself is
//! delivered out of band (cosign.pub). Offline, key-signed bundles carry no
//! `tlogEntries`. The content is either a `messageSignature` (signature
//! over an artifact's bytes) or a `dsseEnvelope`.
//!
//! A key-signed bundle is verified with the trusted keys alone (its
//! transparency-log entries, if any, are not needed: the pinned key is what
//! establishes authenticity). A bundle signed with a certificate (keyless:
//! Fulcio + Rekor) is verified against an identity policy and a trusted
//! root ([`super::keyless`]), log entry included; without a policy it is
//! refused, never half-verified.

use super::dsse::{self, DsseError, Envelope, VerifiedPayload};
use super::keyless::{self, Entry, KeylessError, Leaf, Logged, Policy, Signer};
use super::pubkey::PublicKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const BUNDLE_MEDIA_TYPE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const BUNDLE_MEDIA_TYPE_V02: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";
pub const BUNDLE_MEDIA_TYPE_V01: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
/// protobuf `HashAlgorithm.SHA2_256` as protobuf JSON writes an enum.
pub const HASH_SHA2_256: &str = "SHA2_256";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("sigstore bundle is not valid JSON: {reason}")]
    Json { reason: String },
    #[error("sigstore bundle media type {found:?} is not a known bundle version (expected {BUNDLE_MEDIA_TYPE_V03:?})")]
    UnknownMediaType { found: String },
    #[error(
        "sigstore bundle has {0}: it must hold exactly one of messageSignature or dsseEnvelope"
    )]
    Content(&'static str),
    #[error("sigstore bundle holds a {found}, expected a {expected}")]
    WrongContent {
        expected: &'static str,
        found: &'static str,
    },
    #[error("sigstore bundle has no publicKey verification material")]
    NoPublicKey,
    #[error("sigstore bundle: {field} is not valid base64: {reason}")]
    BadBase64 { field: &'static str, reason: String },
    #[error("sigstore bundle message digest uses {found:?}; only {HASH_SHA2_256} is supported")]
    UnsupportedHash { found: String },
    #[error(
        "sigstore bundle message digest is sha256:{found}, but the artifact is sha256:{actual}"
    )]
    DigestMismatch { found: String, actual: String },
    #[error("sigstore bundle message signature does not verify over the artifact (sha256:{artifact}) with the given key(s) [{keys}]")]
    NoValidSignature { artifact: String, keys: String },
    #[error("no trusted public key was given to verify the sigstore bundle with")]
    NoKeys,
    // Printed inline, not also chained as a `source` (said twice by `{:#}`).
    #[error("sigstore bundle: {0}")]
    Dsse(DsseError),
    #[error("sigstore bundle (keyless): {0}")]
    Keyless(KeylessError),
    #[error("sigstore bundle is signed with a certificate (keyless): verifying it needs --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]")]
    KeylessPolicyMissing,
    #[error("sigstore bundle is signed with a key, not a certificate: verifying it needs --key")]
    NotKeyless,
}

impl From<KeylessError> for BundleError {
    fn from(e: KeylessError) -> Self {
        BundleError::Keyless(e)
    }
}

impl From<DsseError> for BundleError {
    fn from(e: DsseError) -> Self {
        BundleError::Dsse(e)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<MessageSignature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

/// `VerificationMaterial`: one of `publicKey`, `x509CertificateChain`,
/// `certificate`; plus transparency-log entries and timestamps, kept as
/// opaque JSON (kiln does not verify them offline).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<X509CertificateChain>,
    /// The leaf certificate (v0.3 keyless bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<X509Certificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// Unauthenticated hint: base64(sha256(SPKI DER)), as cosign writes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificate {
    /// Base64 of the DER certificate.
    pub raw_bytes: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct X509CertificateChain {
    #[serde(default)]
    pub certificates: Vec<X509Certificate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSignature {
    /// Identifies the artifact; never what the signature is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_digest: Option<HashOutput>,
    /// Base64 of the signature bytes (ASN.1 DER ECDSA).
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HashOutput {
    pub algorithm: String,
    /// Base64 of the raw digest bytes.
    pub digest: String,
}

impl VerificationMaterial {
    /// Key-based material: `{"publicKey":{"hint":...}}`.
    pub fn public_key(key: &PublicKey) -> VerificationMaterial {
        VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: key.bundle_hint(),
            }),
            ..Default::default()
        }
    }

    /// Certificate-based material (keyless): the leaf certificate, DER.
    pub fn certificate(leaf_der: &[u8]) -> VerificationMaterial {
        VerificationMaterial {
            certificate: Some(X509Certificate {
                raw_bytes: STANDARD.encode(leaf_der),
            }),
            ..Default::default()
        }
    }
}

impl Bundle {
    /// A v0.3 bundle holding a signature over `artifact`.
    pub fn message_signature(
        material: VerificationMaterial,
        artifact: &[u8],
        signature: &[u8],
    ) -> Bundle {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE_V03.to_string(),
            verification_material: material,
            message_signature: Some(MessageSignature {
                message_digest: Some(HashOutput {
                    algorithm: HASH_SHA2_256.to_string(),
                    digest: STANDARD.encode(Sha256::digest(artifact)),
                }),
                signature: STANDARD.encode(signature),
            }),
            dsse_envelope: None,
        }
    }

    /// A v0.3 bundle holding a signed DSSE envelope.
    pub fn dsse(material: VerificationMaterial, envelope: Envelope) -> Bundle {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE_V03.to_string(),
            verification_material: material,
            message_signature: None,
            dsse_envelope: Some(envelope),
        }
    }

    /// Parses and checks the media type and that exactly one content is present.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError::Json {
            reason: e.to_string(),
        })?;
        b.validate()?;
        Ok(b)
    }

    /// Deterministic compact JSON (sorted keys).
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::canonical(self)
    }

    pub fn validate(&self) -> Result<(), BundleError> {
        if ![
            BUNDLE_MEDIA_TYPE_V03,
            BUNDLE_MEDIA_TYPE_V02,
            BUNDLE_MEDIA_TYPE_V01,
        ]
        .contains(&self.media_type.as_str())
        {
            return Err(BundleError::UnknownMediaType {
                found: self.media_type.clone(),
            });
        }
        match (&self.message_signature, &self.dsse_envelope) {
            (Some(_), Some(_)) => Err(BundleError::Content("both")),
            (None, None) => Err(BundleError::Content("neither")),
            _ => Ok(()),
        }
    }

    /// `"message-signature"` or `"dsse-envelope"`: the value of the
    /// `dev.sigstore.bundle.content` annotation on a referrer manifest.
    pub fn content_kind(&self) -> &'static str {
        if self.dsse_envelope.is_some() {
            "dsse-envelope"
        } else {
            "message-signature"
        }
    }

    /// Whether the bundle carries transparency-log entries (which offline
    /// key-based verification does not check).
    pub fn has_tlog_entries(&self) -> bool {
        !self.verification_material.tlog_entries.is_empty()
    }

    fn require_key_material(&self) -> Result<(), BundleError> {
        let m = &self.verification_material;
        if self.is_keyless() {
            return Err(BundleError::KeylessPolicyMissing);
        }
        if m.public_key.is_none() {
            return Err(BundleError::NoPublicKey);
        }
        Ok(())
    }

    /// Verifies a message-signature bundle over `artifact` with one of
    /// `keys`; returns the key id of the key that verified. The bundle's
    /// `messageDigest`, when present, must also equal sha256(artifact), so
    /// a bundle for another artifact is reported as a digest mismatch.
    pub fn verify_message_signature(
        &self,
        artifact: &[u8],
        keys: &[PublicKey],
    ) -> Result<String, BundleError> {
        self.validate()?;
        let ms = self
            .message_signature
            .as_ref()
            .ok_or(BundleError::WrongContent {
                expected: "message signature",
                found: "DSSE envelope",
            })?;
        self.require_key_material()?;
        if keys.is_empty() {
            return Err(BundleError::NoKeys);
        }
        let (actual, sig) = message_digest_and_signature(ms, artifact)?;
        keys.iter()
            .find(|k| k.verify(artifact, &sig).is_ok())
            .map(|k| k.key_id())
            .ok_or_else(|| BundleError::NoValidSignature {
                artifact: hex::encode(actual),
                keys: keys
                    .iter()
                    .map(|k| k.key_id())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether the bundle is signed with a certificate (keyless).
    pub fn is_keyless(&self) -> bool {
        let m = &self.verification_material;
        m.certificate.is_some() || m.x509_certificate_chain.is_some()
    }

    /// The signing (leaf) certificate, DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>, BundleError> {
        let m = &self.verification_material;
        let raw = m
            .certificate
            .as_ref()
            .or_else(|| m.x509_certificate_chain.as_ref()?.certificates.first())
            .ok_or(BundleError::NotKeyless)?;
        STANDARD
            .decode(&raw.raw_bytes)
            .map_err(|e| BundleError::BadBase64 {
                field: "verificationMaterial.certificate.rawBytes",
                reason: e.to_string(),
            })
    }

    /// The transparency-log entries, parsed.
    pub fn tlog_entries(&self) -> Result<Vec<Entry>, BundleError> {
        self.verification_material
            .tlog_entries
            .iter()
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    BundleError::Keyless(KeylessError::Tlog(format!(
                        "a tlogEntries item does not parse: {e}"
                    )))
                })
            })
            .collect()
    }

    /// The leaf certificate, its key, and the log entries of a keyless
    /// bundle.
    fn keyless_material(&self) -> Result<(Leaf, PublicKey, Vec<Entry>), BundleError> {
        let leaf = Leaf::parse(&self.certificate_der()?)?;
        let key = leaf.public_key()?;
        Ok((leaf, key, self.tlog_entries()?))
    }

    /// Verifies a keyless message-signature bundle over `artifact`: the
    /// signature with the certificate's key, then everything that makes
    /// the key `policy`'s signer.
    pub fn verify_message_signature_keyless(
        &self,
        artifact: &[u8],
        policy: &Policy,
    ) -> Result<Signer, BundleError> {
        self.validate()?;
        if !self.is_keyless() {
            return Err(BundleError::NotKeyless);
        }
        let (leaf, key, entries) = self.keyless_material()?;
        let ms = self
            .message_signature
            .as_ref()
            .ok_or(BundleError::WrongContent {
                expected: "message signature",
                found: "DSSE envelope",
            })?;
        let (digest, sig) = message_digest_and_signature(ms, artifact)?;
        key.verify(artifact, &sig)
            .map_err(|_| BundleError::NoValidSignature {
                artifact: hex::encode(digest),
                keys: "the signing certificate's".into(),
            })?;
        Ok(keyless::verify(
            policy,
            &leaf,
            &entries,
            Logged::Artifact {
                sha256: &digest,
                signature: &sig,
            },
        )?)
    }

    /// Verifies a keyless DSSE bundle: the envelope with the certificate's
    /// key, then the certificate, its identity and the log entry.
    pub fn verify_dsse_keyless(
        &self,
        policy: &Policy,
    ) -> Result<(VerifiedPayload, Signer), BundleError> {
        self.validate()?;
        if !self.is_keyless() {
            return Err(BundleError::NotKeyless);
        }
        let env = self
            .dsse_envelope
            .as_ref()
            .ok_or(BundleError::WrongContent {
                expected: "DSSE envelope",
                found: "message signature",
            })?;
        let (leaf, key, entries) = self.keyless_material()?;
        let verified = dsse::verify(env, std::slice::from_ref(&key))?;
        let signer = keyless::verify_envelope(policy, &leaf, &key, env, &entries)?;
        Ok((verified, signer))
    }

    /// Verifies a DSSE bundle's envelope with one of `keys`.
    pub fn verify_dsse(&self, keys: &[PublicKey]) -> Result<VerifiedPayload, BundleError> {
        self.validate()?;
        let env = self
            .dsse_envelope
            .as_ref()
            .ok_or(BundleError::WrongContent {
                expected: "DSSE envelope",
                found: "message signature",
            })?;
        self.require_key_material()?;
        Ok(dsse::verify(env, keys)?)
    }
}

/// sha256(`artifact`), which the message signature's `messageDigest` must
/// be when it is given (it identifies the artifact; it is never what the
/// signature is checked against), and the decoded signature.
fn message_digest_and_signature(
    ms: &MessageSignature,
    artifact: &[u8],
) -> Result<([u8; 32], Vec<u8>), BundleError> {
    let actual: [u8; 32] = Sha256::digest(artifact).into();
    if let Some(md) = &ms.message_digest {
        if md.algorithm != HASH_SHA2_256 {
            return Err(BundleError::UnsupportedHash {
                found: md.algorithm.clone(),
            });
        }
        let found = STANDARD
            .decode(&md.digest)
            .map_err(|e| BundleError::BadBase64 {
                field: "messageSignature.messageDigest.digest",
                reason: e.to_string(),
            })?;
        if found != actual {
            return Err(BundleError::DigestMismatch {
                found: hex::encode(found),
                actual: hex::encode(actual),
            });
        }
    }
    let sig = STANDARD
        .decode(&ms.signature)
        .map_err(|e| BundleError::BadBase64 {
            field: "messageSignature.signature",
            reason: e.to_string(),
        })?;
    Ok((actual, sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::dsse::pae;
    use crate::attest::pubkey::tests::{sign_der, test_public};
    use crate::attest::statement::Statement;
    use crate::attest::IN_TOTO_PAYLOAD_TYPE;
    use crate::digest::Digest;

    fn dsse_bundle(key: u8) -> Bundle {
        let st = Statement::cosign_sign("r/x", &Digest([1; 32]));
        let mut env = Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, &st.to_json());
        env.add_signature("", &sign_der(key, &env.pae().unwrap()));
        Bundle::dsse(VerificationMaterial::public_key(&test_public(key)), env)
    }

    #[test]
    fn message_signature_bundle_json_shape_and_verification() {
        let artifact = b"{\"critical\":{}}";
        let key = test_public(1);
        let b = Bundle::message_signature(
            VerificationMaterial::public_key(&key),
            artifact,
            &sign_der(1, artifact),
        );
        let text = String::from_utf8(b.to_json()).unwrap();
        let expected_prefix = format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{{"messageDigest":{{"algorithm":"SHA2_256","digest":"{}"}},"signature":""#,
            STANDARD.encode(Sha256::digest(artifact))
        );
        assert!(text.starts_with(&expected_prefix), "{text}");
        assert!(
            text.ends_with(&format!(
                r#""verificationMaterial":{{"publicKey":{{"hint":"{}"}}}}}}"#,
                key.bundle_hint()
            )),
            "{text}"
        );
        let back = Bundle::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.content_kind(), "message-signature");
        assert_eq!(
            back.verify_message_signature(artifact, &[test_public(2), key.clone()])
                .unwrap(),
            key.key_id()
        );
    }

    #[test]
    fn message_signature_negative_cases() {
        let artifact = b"payload";
        let b = Bundle::message_signature(
            VerificationMaterial::public_key(&test_public(1)),
            artifact,
            &sign_der(1, artifact),
        );
        // Another artifact: the digest check names both digests.
        let err = b
            .verify_message_signature(b"other", &[test_public(1)])
            .unwrap_err();
        assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
        // Wrong key.
        let err = b
            .verify_message_signature(artifact, &[test_public(2)])
            .unwrap_err();
        assert!(matches!(err, BundleError::NoValidSignature { .. }), "{err}");
        // Without a messageDigest the signature check alone catches it.
        let mut nd = b.clone();
        nd.message_signature.as_mut().unwrap().message_digest = None;
        assert!(matches!(
            nd.verify_message_signature(b"other", &[test_public(1)])
                .unwrap_err(),
            BundleError::NoValidSignature { .. }
        ));
        // Asking a message-signature bundle for DSSE.
        assert!(matches!(
            b.verify_dsse(&[test_public(1)]).unwrap_err(),
            BundleError::WrongContent { .. }
        ));
    }

    #[test]
    fn dsse_bundle_verifies_and_tampering_fails() {
        let b = dsse_bundle(1);
        let back = Bundle::from_json(&b.to_json()).unwrap();
        assert_eq!(back.content_kind(), "dsse-envelope");
        let v = back.verify_dsse(&[test_public(1)]).unwrap();
        Statement::from_verified(&v).unwrap();
        assert!(matches!(
            back.verify_dsse(&[test_public(2)]).unwrap_err(),
            BundleError::Dsse(DsseError::NoValidSignature { .. })
        ));
        let mut t = back.clone();
        let env = t.dsse_envelope.as_mut().unwrap();
        env.payload = STANDARD.encode(b"{}");
        assert!(t.verify_dsse(&[test_public(1)]).is_err());
        assert!(matches!(
            back.verify_message_signature(b"x", &[test_public(1)])
                .unwrap_err(),
            BundleError::WrongContent { .. }
        ));
    }

    #[test]
    fn parses_cosign_shaped_bundles_and_rejects_keyless() {
        // The shape cosign 3 writes for a keyless DSSE attestation (trimmed):
        // certificate material, tlog entries, signature without keyid.
        let sig = STANDARD.encode(sign_der(1, &pae(IN_TOTO_PAYLOAD_TYPE, b"{}")));
        let json = format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"certificate":{{"rawBytes":"MIIB"}},"tlogEntries":[{{"logIndex":"1","kindVersion":{{"kind":"dsse","version":"0.0.1"}}}}]}},"dsseEnvelope":{{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{{"sig":"{sig}"}}]}}}}"#
        );
        let b = Bundle::from_json(json.as_bytes()).unwrap();
        assert!(b.has_tlog_entries());
        assert!(matches!(
            b.verify_dsse(&[test_public(1)]).unwrap_err(),
            BundleError::KeylessPolicyMissing
        ));
        // Unknown fields and round trip of the opaque parts.
        assert_eq!(Bundle::from_json(&b.to_json()).unwrap(), b);
    }

    #[test]
    fn structural_errors_are_named() {
        let mut b = dsse_bundle(1);
        b.media_type = "application/json".into();
        assert!(matches!(
            Bundle::from_json(&b.to_json()).unwrap_err(),
            BundleError::UnknownMediaType { .. }
        ));
        let mut b = dsse_bundle(1);
        b.dsse_envelope = None;
        assert!(matches!(
            Bundle::from_json(&b.to_json()).unwrap_err(),
            BundleError::Content("neither")
        ));
        let mut b = dsse_bundle(1);
        b.verification_material.public_key = None;
        assert!(matches!(
            b.verify_dsse(&[test_public(1)]).unwrap_err(),
            BundleError::NoPublicKey
        ));
        let mut b = Bundle::message_signature(
            VerificationMaterial::public_key(&test_public(1)),
            b"a",
            &sign_der(1, b"a"),
        );
        b.message_signature
            .as_mut()
            .unwrap()
            .message_digest
            .as_mut()
            .unwrap()
            .algorithm = "SHA2_384".into();
        assert!(matches!(
            b.verify_message_signature(b"a", &[test_public(1)])
                .unwrap_err(),
            BundleError::UnsupportedHash { .. }
        ));
        assert!(matches!(
            Bundle::from_json(b"[]").unwrap_err(),
            BundleError::Json { .. }
        ));
    }
}
