//! Public keys as cosign writes them (`cosign.pub`: PEM `PUBLIC KEY`, an
//! X.509 SubjectPublicKeyInfo holding an ECDSA P-256 key) and verification
//! of ECDSA P-256 / SHA-256 signatures over bytes.
//!
//! Signatures are accepted in ASN.1 DER (what cosign, Go's crypto/ecdsa and
//! OpenSSL write) and as raw `r || s` (64 bytes, what WebCrypto/JOSE-style
//! signers write). High-S signatures are valid ECDSA and Go produces them,
//! so they are not rejected.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest as _, Sha256};
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum PublicKeyError {
    #[error("public key: no PEM block found (expected -----BEGIN PUBLIC KEY-----, as cosign writes to cosign.pub)")]
    NoPem,
    #[error("public key: PEM type {found:?} is not PUBLIC KEY")]
    WrongPemType { found: String },
    #[error("public key: not an ECDSA P-256 SubjectPublicKeyInfo (kiln and cosign key pairs are P-256): {reason}")]
    NotP256 { reason: String },
    #[error("signature by key {key_id}: {len}-byte signature is neither ASN.1 DER nor raw r||s (64 bytes)")]
    BadSignatureEncoding { key_id: String, len: usize },
    #[error("signature does not verify with key {key_id}")]
    BadSignature { key_id: String },
}

/// Why a key that parses as SubjectPublicKeyInfo is not P-256: the key's
/// own algorithm (and curve), not the one that was expected; else the
/// parser's error.
fn not_p256(der: Option<&[u8]>, error: impl fmt::Display) -> PublicKeyError {
    let reason = der
        .and_then(key_algorithm)
        .map(|alg| format!("the key is {alg}"))
        .unwrap_or_else(|| error.to_string());
    PublicKeyError::NotP256 { reason }
}

/// "an RSA key (OID 1.2.840.113549.1.1.1)" and the like, from a DER
/// SubjectPublicKeyInfo.
fn key_algorithm(der: &[u8]) -> Option<String> {
    use p256::pkcs8::der::asn1::ObjectIdentifier;
    use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
    let spki = SubjectPublicKeyInfoRef::try_from(der).ok()?;
    let oid = spki.algorithm.oid.to_string();
    let named = match oid.as_str() {
        "1.2.840.113549.1.1.1" => "an RSA key".to_string(),
        "1.3.101.112" => "an Ed25519 key".to_string(),
        "1.3.101.113" => "an Ed448 key".to_string(),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .map(|c| c.to_string());
            let name = match curve.as_deref() {
                Some("1.3.132.0.34") => "P-384",
                Some("1.3.132.0.35") => "P-521",
                Some("1.3.132.0.10") => "secp256k1",
                Some("1.2.840.10045.3.1.7") => "P-256",
                _ => "another curve",
            };
            return Some(format!(
                "an elliptic-curve key on {name} (curve OID {})",
                curve.unwrap_or_else(|| "missing".into())
            ));
        }
        _ => "a key of another algorithm".to_string(),
    };
    Some(format!("{named} (OID {oid})"))
}

/// An ECDSA P-256 public key used to verify signatures (SHA-256 digests).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo). Text around
    /// the block (comments, a trailing newline, CRLF line ends) is tolerated
    /// because key files get copied through editors and CI secret stores.
    pub fn from_pem(pem: &str) -> Result<PublicKey, PublicKeyError> {
        let normalized = pem.replace("\r\n", "\n");
        let begin = normalized
            .find("-----BEGIN ")
            .ok_or(PublicKeyError::NoPem)?;
        let label_end = normalized[begin + 11..]
            .find("-----")
            .ok_or(PublicKeyError::NoPem)?
            + begin
            + 11;
        let label = &normalized[begin + 11..label_end];
        if label != "PUBLIC KEY" {
            return Err(PublicKeyError::WrongPemType {
                found: label.to_string(),
            });
        }
        let end_marker = "-----END PUBLIC KEY-----";
        let end = normalized[begin..]
            .find(end_marker)
            .ok_or(PublicKeyError::NoPem)?
            + begin
            + end_marker.len();
        let block = &normalized[begin..end];
        let key = VerifyingKey::from_public_key_pem(block).map_err(|e| {
            let der = p256::pkcs8::Document::from_pem(block).ok().map(|(_, d)| d);
            not_p256(der.as_ref().map(|d| d.as_bytes()), e)
        })?;
        PublicKey::from_verifying_key(key)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, PublicKeyError> {
        let key = VerifyingKey::from_public_key_der(der).map_err(|e| not_p256(Some(der), e))?;
        PublicKey::from_verifying_key(key)
    }

    pub fn from_verifying_key(key: VerifyingKey) -> Result<PublicKey, PublicKeyError> {
        let spki_der = key
            .to_public_key_der()
            .map_err(|e| PublicKeyError::NotP256 {
                reason: e.to_string(),
            })?
            .as_bytes()
            .to_vec();
        Ok(PublicKey { key, spki_der })
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The DER SubjectPublicKeyInfo (what the key id is computed over).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// PEM `PUBLIC KEY` with LF line ends, as cosign writes cosign.pub.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes as SPKI PEM")
    }

    /// Stable key id: lowercase hex sha256 of the SPKI DER. A hint for
    /// humans and for DSSE `keyid`, never a trust decision.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// The Sigstore bundle's `publicKey.hint`: base64 (standard) of the
    /// sha256 of the SPKI DER, the RFC 6962 key id that cosign writes.
    pub fn bundle_hint(&self) -> String {
        STANDARD.encode(Sha256::digest(&self.spki_der))
    }

    /// Verifies an ECDSA P-256 signature over SHA-256(`message`). `signature`
    /// is DER or raw r||s.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), PublicKeyError> {
        let candidates = decode_signature(signature);
        if candidates.is_empty() {
            return Err(PublicKeyError::BadSignatureEncoding {
                key_id: self.key_id(),
                len: signature.len(),
            });
        }
        if candidates
            .iter()
            .any(|sig| self.key.verify(message, sig).is_ok())
        {
            Ok(())
        } else {
            Err(PublicKeyError::BadSignature {
                key_id: self.key_id(),
            })
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(ecdsa-p256 {})", self.key_id())
    }
}

/// The readings of `bytes` as a signature: ASN.1 DER (what cosign writes)
/// and, for a 64-byte input, raw r||s. Both are tried rather than guessing
/// from the length, so a raw signature that happens to parse as DER still
/// verifies.
fn decode_signature(bytes: &[u8]) -> Vec<Signature> {
    let mut out = Vec::with_capacity(2);
    if let Ok(sig) = Signature::from_der(bytes) {
        out.push(sig);
    }
    if bytes.len() == 64 {
        if let Ok(sig) = Signature::from_slice(bytes) {
            out.push(sig);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;

    #[test]
    fn a_key_of_another_algorithm_is_named_by_its_own_oid() {
        const RSA: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC+3Hu711NLGYm36qkcw5aIXc71\nhFR+cnHnhPfLwS2XgpicTU/kwIBktYzitelSrHJVbUGcKst+SByp9qQIwqKUiRV7\nrqdUZMq8vRCPsOIvSLhxeJZKxVO1M91c0L3zm4DfjFailoB3N2JgFQ9nzETsejL2\nBtBD18hAVP8hfXbHGQIDAQAB\n-----END PUBLIC KEY-----\n";
        const P384: &str = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEc4xnFnwWwv3K+kLey04Hy3TFSEEg+iM3\nab1LUrW+rysFKbdT/TWsjYQVh6/2sKeEIIwNeNYK6IZea6dgFYEPlMyY0mQbGJu1\nqkHv2DVkCsiwAyHTVMmYwkViG7R68qVu\n-----END PUBLIC KEY-----\n";
        let e = PublicKey::from_pem(RSA).unwrap_err().to_string();
        assert!(e.contains("an RSA key (OID 1.2.840.113549.1.1.1)"), "{e}");
        assert!(!e.contains("1.2.840.10045.2.1"), "{e}");
        let e = PublicKey::from_pem(P384).unwrap_err().to_string();
        assert!(e.contains("P-384 (curve OID 1.3.132.0.34)"), "{e}");
    }

    /// A fixed test key (never used outside tests).
    pub(crate) fn test_key(n: u8) -> SigningKey {
        let mut bytes = [0u8; 32];
        bytes[31] = n;
        bytes[0] = 0x11;
        SigningKey::from_slice(&bytes).unwrap()
    }

    pub(crate) fn test_public(n: u8) -> PublicKey {
        PublicKey::from_verifying_key(*test_key(n).verifying_key()).unwrap()
    }

    pub(crate) fn sign_der(n: u8, msg: &[u8]) -> Vec<u8> {
        let sig: Signature = test_key(n).sign(msg);
        sig.to_der().as_bytes().to_vec()
    }

    // Generated with `openssl ecparam -name prime256v1 -genkey` and
    // `openssl pkey -pubout`; the signature with
    // `openssl dgst -sha256 -sign key.pem` over b"kiln". Its s is in the
    // upper half of the group order (high-S), which must still verify.
    const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEd+0wDPfadAF4c/aqfQJGUxAh1V57
sg5rphr9q91lPgWqOHzDkq0nr6o4jEBMioeRbTYD6WlPuIkV5nucJPZe2w==
-----END PUBLIC KEY-----
";
    const OPENSSL_SIG_B64: &str =
        "MEYCIQDIHxfMp5wWcE+m2Z5hWCYtpxBLZKuaUazAb/rr6yXgtAIhAM/tU4aeP8H2GSZtiemw6BEC3QWMql2jypR31voNb+Ix";

    #[test]
    fn openssl_signature_verifies_and_tampering_fails() {
        let key = PublicKey::from_pem(OPENSSL_PUB).unwrap();
        let sig = STANDARD.decode(OPENSSL_SIG_B64).unwrap();
        key.verify(b"kiln", &sig).unwrap();
        let err = key.verify(b"kilN", &sig).unwrap_err();
        assert!(matches!(err, PublicKeyError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains(&key.key_id()));
    }

    #[test]
    fn pem_round_trip_and_crlf_and_surrounding_text() {
        let key = test_public(1);
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), key);
        let crlf = format!("# cosign.pub\r\n{}\r\n", pem.replace('\n', "\r\n"));
        assert_eq!(PublicKey::from_pem(&crlf).unwrap(), key);
        assert_eq!(PublicKey::from_spki_der(key.spki_der()).unwrap(), key);
    }

    #[test]
    fn der_and_raw_signatures_verify() {
        let key = test_public(2);
        let msg = b"payload";
        let der = sign_der(2, msg);
        key.verify(msg, &der).unwrap();
        let raw = Signature::from_der(&der).unwrap().to_bytes().to_vec();
        assert_eq!(raw.len(), 64);
        key.verify(msg, &raw).unwrap();
    }

    #[test]
    fn wrong_key_and_garbage_are_rejected() {
        let msg = b"payload";
        let der = sign_der(3, msg);
        let err = test_public(4).verify(msg, &der).unwrap_err();
        assert!(matches!(err, PublicKeyError::BadSignature { .. }));
        let err = test_public(3).verify(msg, b"not a signature").unwrap_err();
        assert!(
            matches!(err, PublicKeyError::BadSignatureEncoding { len: 15, .. }),
            "{err}"
        );
    }

    #[test]
    fn non_public_key_pem_is_rejected_by_type() {
        let err =
            PublicKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(matches!(err, PublicKeyError::WrongPemType { .. }), "{err}");
        assert!(matches!(
            PublicKey::from_pem("hello").unwrap_err(),
            PublicKeyError::NoPem
        ));
        // An Ed25519 SPKI is a valid PUBLIC KEY, but not P-256.
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(ed).unwrap_err(),
            PublicKeyError::NotP256 { .. }
        ));
    }

    #[test]
    fn key_id_and_hint_are_over_the_spki_der() {
        let key = test_public(5);
        let h = Sha256::digest(key.spki_der());
        assert_eq!(key.key_id(), hex::encode(h));
        assert_eq!(STANDARD.decode(key.bundle_hint()).unwrap(), h.to_vec());
    }
}
