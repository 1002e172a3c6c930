//! DSSE v1 (Dead Simple Signing Envelope): the JSON envelope, the
//! pre-authentication encoding (PAE) its signatures are computed over, and
//! verification against trusted keys.
//!
//! Spec: <https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>
//! and envelope.md. Signatures cover `PAE(payloadType, payload)`, so the
//! payload type is authenticated along with the body. `keyid` is an
//! unauthenticated hint: it never selects or excludes a key here; every
//! signature is tried against every trusted key.

use super::pubkey::PublicKey;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("DSSE envelope is not valid JSON: {reason}")]
    Json { reason: String },
    #[error("DSSE envelope: {field} is not valid base64: {reason}")]
    BadBase64 { field: String, reason: String },
    #[error("DSSE envelope has no signatures")]
    NoSignatures,
    #[error("no trusted public key was given to verify the DSSE envelope with")]
    NoKeys,
    #[error("DSSE envelope ({payload_type}, {payload_len}-byte payload): none of its {signatures} signature(s) verifies with the given key(s) [{keys}] (the envelope's keyid hints: [{hints}])")]
    NoValidSignature {
        payload_type: String,
        payload_len: usize,
        signatures: usize,
        keys: String,
        hints: String,
    },
    #[error("DSSE envelope has payload type {found:?}, expected {expected:?}")]
    WrongPayloadType { expected: String, found: String },
}

/// A DSSE envelope as it appears on the wire (JSON, camelCase). `payload`
/// and `sig` stay in their base64 text form so that an envelope read and
/// written again is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 (standard alphabet with padding when kiln writes it).
    pub payload: String,
    pub signatures: Vec<Signature>,
}

/// One signature. `keyid` is optional on the wire (protobuf JSON omits it
/// when empty, as cosign's bundles do); kiln always writes it, because
/// some readers (python-securesystemslib) require the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the signature bytes (ASN.1 DER ECDSA for kiln and cosign).
    pub sig: String,
}

/// A payload whose envelope carried a signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPayload {
    pub payload_type: String,
    pub payload: Vec<u8>,
    /// Key id (hex sha256 of the SPKI) of the trusted key that verified it.
    pub key_id: String,
}

/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as decimal
/// ASCII byte counts.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// The DSSE spec allows standard or URL-safe base64 on input; kiln writes
/// standard.
fn decode_b64(field: &str, text: &str) -> Result<Vec<u8>, DsseError> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .map_err(|e| DsseError::BadBase64 {
            field: field.to_string(),
            reason: e.to_string(),
        })
}

impl Envelope {
    /// An envelope with no signatures yet.
    pub fn unsigned(payload_type: &str, payload: &[u8]) -> Envelope {
        Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: Vec::new(),
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Envelope, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Json {
            reason: e.to_string(),
        })
    }

    /// Deterministic compact JSON (sorted keys), what kiln stores.
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::canonical(self)
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        decode_b64("payload", &self.payload)
    }

    /// The bytes a signer signs (and a verifier checks) for this envelope.
    pub fn pae(&self) -> Result<Vec<u8>, DsseError> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }

    /// Appends a signature (raw signature bytes, base64-encoded here).
    pub fn add_signature(&mut self, keyid: &str, sig: &[u8]) {
        self.signatures.push(Signature {
            keyid: keyid.to_string(),
            sig: STANDARD.encode(sig),
        });
    }
}

/// Verifies that at least one signature of `envelope` is valid over its PAE
/// for one of `keys`. Signatures that fail to decode or verify are skipped
/// as long as another one verifies (an envelope may carry signatures by
/// keys the verifier does not trust).
pub fn verify(envelope: &Envelope, keys: &[PublicKey]) -> Result<VerifiedPayload, DsseError> {
    if keys.is_empty() {
        return Err(DsseError::NoKeys);
    }
    if envelope.signatures.is_empty() {
        return Err(DsseError::NoSignatures);
    }
    let payload = envelope.payload_bytes()?;
    let message = pae(&envelope.payload_type, &payload);
    let mut bad_base64 = None;
    for (i, s) in envelope.signatures.iter().enumerate() {
        let sig = match decode_b64(&format!("signatures[{i}].sig"), &s.sig) {
            Ok(sig) => sig,
            Err(e) => {
                bad_base64.get_or_insert(e);
                continue;
            }
        };
        if let Some(key) = keys.iter().find(|k| k.verify(&message, &sig).is_ok()) {
            return Ok(VerifiedPayload {
                payload_type: envelope.payload_type.clone(),
                payload,
                key_id: key.key_id(),
            });
        }
    }
    // A lone undecodable signature is better reported as what it is.
    if let (Some(e), 1) = (bad_base64, envelope.signatures.len()) {
        return Err(e);
    }
    Err(DsseError::NoValidSignature {
        payload_type: envelope.payload_type.clone(),
        payload_len: payload.len(),
        signatures: envelope.signatures.len(),
        keys: keys
            .iter()
            .map(|k| k.key_id())
            .collect::<Vec<_>>()
            .join(", "),
        hints: envelope
            .signatures
            .iter()
            .map(|s| format!("{:?}", s.keyid))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// [`verify`], then requires the (authenticated) payload type to be
/// `payload_type`.
pub fn verify_as(
    envelope: &Envelope,
    payload_type: &str,
    keys: &[PublicKey],
) -> Result<VerifiedPayload, DsseError> {
    let verified = verify(envelope, keys)?;
    if verified.payload_type != payload_type {
        return Err(DsseError::WrongPayloadType {
            expected: payload_type.to_string(),
            found: verified.payload_type,
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::pubkey::tests::{sign_der, test_public};
    use crate::attest::IN_TOTO_PAYLOAD_TYPE;

    #[test]
    fn pae_matches_the_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        // Lengths are byte counts, not characters.
        assert_eq!(pae("é", b"\xff"), b"DSSEv1 2 \xc3\xa9 1 \xff".to_vec());
    }

    fn signed(key: u8, payload_type: &str, body: &[u8]) -> Envelope {
        let mut env = Envelope::unsigned(payload_type, body);
        let sig = sign_der(key, &pae(payload_type, body));
        env.add_signature(&test_public(key).key_id(), &sig);
        env
    }

    #[test]
    fn verifies_and_round_trips_through_json() {
        let env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let json = env.to_json();
        let back = Envelope::from_json(&json).unwrap();
        assert_eq!(back, env);
        let v = verify_as(&back, IN_TOTO_PAYLOAD_TYPE, &[test_public(1)]).unwrap();
        assert_eq!(v.payload, b"{\"a\":1}");
        assert_eq!(v.key_id, test_public(1).key_id());
        let text = String::from_utf8(json).unwrap();
        assert!(text.starts_with("{\"payload\":\"eyJhIjoxfQ==\",\"payloadType\":\"application/vnd.in-toto+json\",\"signatures\":[{\"keyid\":"), "{text}");
    }

    #[test]
    fn tampered_payload_fails() {
        let mut env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        env.payload = STANDARD.encode(b"{\"a\":2}");
        let err = verify(&env, &[test_public(1)]).unwrap_err();
        assert!(matches!(err, DsseError::NoValidSignature { .. }), "{err}");
        assert!(err.to_string().contains(&test_public(1).key_id()), "{err}");
    }

    #[test]
    fn changed_payload_type_fails_because_pae_covers_it() {
        let mut env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"x");
        env.payload_type = "text/plain".into();
        assert!(matches!(
            verify(&env, &[test_public(1)]).unwrap_err(),
            DsseError::NoValidSignature { .. }
        ));
    }

    #[test]
    fn wrong_payload_type_is_named() {
        let env = signed(1, "text/plain", b"x");
        let err = verify_as(&env, IN_TOTO_PAYLOAD_TYPE, &[test_public(1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DSSE envelope has payload type \"text/plain\", expected \"application/vnd.in-toto+json\""
        );
    }

    #[test]
    fn wrong_key_fails_and_keyid_is_not_trusted() {
        let mut env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"x");
        // The hint names the trusted key, but the signature is not by it.
        env.signatures[0].keyid = test_public(2).key_id();
        assert!(matches!(
            verify(&env, &[test_public(2)]).unwrap_err(),
            DsseError::NoValidSignature { .. }
        ));
        // A wrong or empty hint does not stop the right key from verifying.
        env.signatures[0].keyid = String::new();
        verify(&env, &[test_public(2), test_public(1)]).unwrap();
    }

    #[test]
    fn one_valid_signature_among_others_suffices() {
        let mut env = signed(3, IN_TOTO_PAYLOAD_TYPE, b"x");
        let good = env.signatures[0].clone();
        env.signatures[0].sig = "%%%".into();
        env.signatures.push(Signature {
            keyid: "other".into(),
            sig: STANDARD.encode(sign_der(4, &env.pae().unwrap())),
        });
        env.signatures.push(good);
        verify(&env, &[test_public(3)]).unwrap();
    }

    #[test]
    fn bad_base64_and_empty_envelopes_are_named() {
        let mut env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"x");
        env.payload = "not base64!".into();
        let err = verify(&env, &[test_public(1)]).unwrap_err();
        assert!(
            err.to_string().contains("payload is not valid base64"),
            "{err}"
        );

        let mut env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"x");
        env.signatures[0].sig = "***".into();
        let err = verify(&env, &[test_public(1)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("signatures[0].sig is not valid base64"),
            "{err}"
        );

        let env = Envelope::unsigned(IN_TOTO_PAYLOAD_TYPE, b"x");
        assert!(matches!(
            verify(&env, &[test_public(1)]).unwrap_err(),
            DsseError::NoSignatures
        ));
        let env = signed(1, IN_TOTO_PAYLOAD_TYPE, b"x");
        assert!(matches!(verify(&env, &[]).unwrap_err(), DsseError::NoKeys));
    }

    #[test]
    fn url_safe_base64_and_missing_keyid_are_accepted() {
        let body = b"\xfb\xff\xfe subjects?";
        let mut env = signed(1, "application/octet-stream", body);
        env.payload = URL_SAFE_NO_PAD.encode(body);
        verify(&env, &[test_public(1)]).unwrap();
        let json = format!(
            r#"{{"payload":"{}","payloadType":"application/octet-stream","signatures":[{{"sig":"{}"}}]}}"#,
            env.payload, env.signatures[0].sig
        );
        let parsed = Envelope::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed.signatures[0].keyid, "");
        verify(&parsed, &[test_public(1)]).unwrap();
    }
}
