//! Attestation and signature formats, verification side: DSSE envelopes,
//! in-toto statements with SLSA provenance, cosign simple-signing payloads,
//! cosign public keys and Sigstore bundles.
//!
//! This is what the pinned seed's verifier (`nix run .#verify`) trusts, so
//! it only parses and verifies; signing lives in the driver (`kiln::sign`),
//! which holds the private key. The exact formats are in docs/provenance.md.

pub mod bundle;
pub mod dsse;
pub mod keyless;
pub mod pubkey;
pub mod simplesigning;
pub mod statement;

pub use bundle::{Bundle, BundleError, BUNDLE_MEDIA_TYPE_V03};
pub use dsse::{pae, DsseError, Envelope, VerifiedPayload};
pub use pubkey::{PublicKey, PublicKeyError};
pub use simplesigning::{SimpleSigning, SimpleSigningError, SIMPLE_SIGNING_TYPE};
pub use statement::{
    Provenance, ResourceDescriptor, Statement, StatementError, COSIGN_SIGN_V1, CYCLONEDX_BOM,
    SLSA_PROVENANCE_V1, SPDX_DOCUMENT, STATEMENT_TYPE_V1,
};

use crate::digest::Digest;

/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Media type of a layer holding a DSSE envelope (cosign `.att` tags).
pub const DSSE_ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Media type of a layer holding a simple-signing payload (cosign `.sig` tags).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of a simple-signing payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotations of a keyless signature or attestation in a cosign tag:
/// the PEM signing certificate, and Rekor's entry (signed entry timestamp
/// and body) as JSON.
pub const COSIGN_CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const COSIGN_REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Layer annotation on cosign `.att` layers naming the statement's predicate type.
pub const COSIGN_PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Referrer-manifest annotation: `message-signature` or `dsse-envelope`.
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer-manifest annotation: the predicate type inside a DSSE bundle.
pub const BUNDLE_PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// The legacy cosign tag for what is attached to `digest`:
/// `sha256-<hex>.sig` (suffix `sig`) or `sha256-<hex>.att` (suffix `att`).
pub fn cosign_tag(digest: &Digest, suffix: &str) -> String {
    crate::regclient::digest_tag(digest, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags() {
        let d = Digest([0xab; 32]);
        assert_eq!(
            cosign_tag(&d, "sig"),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        assert_eq!(
            cosign_tag(&d, "att"),
            format!("sha256-{}.att", "ab".repeat(32))
        );
    }
}
