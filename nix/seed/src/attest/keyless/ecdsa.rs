//! The ECDSA keys a Sigstore trust chain uses: P-256 (leaf certificates,
//! Rekor, the CT log) and P-384 (Fulcio's root and intermediate), read from
//! an X.509 SubjectPublicKeyInfo, with SHA-256 or SHA-384 as the message
//! hash.

use super::KeylessError;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256, Sha384};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    /// The hash of an X.509 `signatureAlgorithm`.
    pub fn of_signature_algorithm(oid: &ObjectIdentifier) -> Option<Hash> {
        match *oid {
            ECDSA_WITH_SHA256 => Some(Hash::Sha256),
            ECDSA_WITH_SHA384 => Some(Hash::Sha384),
            _ => None,
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum EcdsaKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcdsaKey {
    /// Reads a DER SubjectPublicKeyInfo; `what` names it in errors.
    pub fn from_spki_der(der: &[u8], what: &str) -> Result<EcdsaKey, KeylessError> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| KeylessError::Key {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_spki(&spki, what)
    }

    pub fn from_spki(
        spki: &SubjectPublicKeyInfoOwned,
        what: &str,
    ) -> Result<EcdsaKey, KeylessError> {
        let bad = |reason: String| KeylessError::Key {
            what: what.to_string(),
            reason,
        };
        if spki.algorithm.oid != EC_PUBLIC_KEY {
            return Err(bad(format!(
                "algorithm {} is not an elliptic-curve key (kiln verifies ECDSA P-256 and P-384)",
                spki.algorithm.oid
            )));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| bad("no named curve".into()))?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad("the key is not a whole number of bytes".into()))?;
        match curve {
            SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(EcdsaKey::P256)
                .map_err(|e| bad(e.to_string())),
            SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(EcdsaKey::P384)
                .map_err(|e| bad(e.to_string())),
            other => Err(bad(format!("curve {other} is not P-256 or P-384"))),
        }
    }

    /// Verifies an ASN.1 DER ECDSA signature over `message` hashed with `hash`.
    pub fn verify(&self, message: &[u8], signature_der: &[u8], hash: Hash) -> bool {
        let prehash = hash.digest(message);
        match self {
            EcdsaKey::P256(k) => p256::ecdsa::Signature::from_der(signature_der)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            EcdsaKey::P384(k) => p384::ecdsa::Signature::from_der(signature_der)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        }
    }
}

/// The DER encoding of a SubjectPublicKeyInfo (what key ids hash).
pub fn spki_der(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    spki.to_der().unwrap_or_default()
}
