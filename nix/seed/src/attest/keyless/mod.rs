//! Keyless (Fulcio + Rekor) signatures, verification side, as cosign
//! checks them: the signing certificate chains to a Fulcio authority of
//! the trusted root, carries a valid SCT from a trusted CT log, names the
//! expected identity and OIDC issuer, and was valid when Rekor logged the
//! signature; the Rekor entry's signed timestamp or inclusion proof (with
//! its signed checkpoint) verifies with a trusted log key, and the entry
//! records exactly this signature by this certificate over this content.
//!
//! The caller checks the signature itself with [`Leaf::public_key`]; this
//! module checks everything that makes that key someone's.
//!
//! Not supported, and reported as such: RFC 3161 timestamps in place of a
//! log entry, Rekor v2 (Ed25519) logs.

pub mod certificate;
pub mod ecdsa;
pub mod sct;
#[cfg(any(test, feature = "test-authority"))]
pub mod testing;
pub mod tlog;
pub mod trustroot;

pub use certificate::Leaf;
pub use tlog::{Entry, Logged};
pub use trustroot::TrustedRoot;

use super::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum KeylessError {
    #[error("trusted root {origin}: {field}: {reason}")]
    TrustedRoot {
        origin: String,
        field: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Key { what: String, reason: String },
    #[error("{what}: {reason}")]
    Certificate { what: String, reason: String },
    #[error("the signing certificate does not chain to a certificate authority of {origin} trusted at {time}: {tried}")]
    Untrusted {
        origin: String,
        time: String,
        tried: String,
    },
    #[error("the signing certificate has no embedded SCT (certificate transparency)")]
    NoSct,
    #[error("the signing certificate's SCTs do not verify: {0}")]
    BadSct(String),
    #[error("transparency log: {0}")]
    Tlog(String),
    #[error("the signature has no transparency-log entry (kiln needs a Rekor entry; signed timestamps alone are not supported)")]
    NoTlogEntry,
    #[error("the signing certificate was valid from {from} to {to}, but Rekor logged the signature at {logged}")]
    NotValidWhenLogged {
        from: String,
        to: String,
        logged: String,
    },
    #[error("the certificate's identity {found} does not match --certificate-identity{expected}")]
    WrongIdentity { found: String, expected: String },
    #[error("the certificate's OIDC issuer {found:?} does not match --certificate-oidc-issuer{expected}")]
    WrongIssuer { found: String, expected: String },
    #[error("the signing certificate's key: {0}")]
    SigningKey(String),
}

/// How an identity or issuer is matched: exactly, or by a regular
/// expression that must match the whole value (cosign's `-regexp` flags
/// match anywhere unless anchored; kiln anchors, so that
/// `https://github.com/org/.*` cannot match a longer, other URL prefix).
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Regex(regex::Regex),
}

impl Matcher {
    pub fn regex(pattern: &str) -> Result<Matcher, String> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Matcher::Regex)
            .map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }

    /// How the flag was given, for messages: ` X` or `-regexp X`.
    fn describe(&self) -> String {
        match self {
            Matcher::Exact(s) => format!(" {s:?}"),
            Matcher::Regex(r) => {
                let p = r.as_str();
                let p = p
                    .strip_prefix("^(?:")
                    .and_then(|p| p.strip_suffix(")$"))
                    .unwrap_or(p);
                format!("-regexp {p:?}")
            }
        }
    }
}

/// Who a keyless signature must be from, and what is trusted to say so.
#[derive(Clone, Debug)]
pub struct Policy {
    pub identity: Matcher,
    pub issuer: Matcher,
    pub root: TrustedRoot,
}

/// A keyless signer, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    pub identity: String,
    pub issuer: String,
    pub log: tlog::Verified,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (issuer {}, {} entry {})",
            self.identity, self.issuer, self.log.log_url, self.log.log_index
        )
    }
}

impl Leaf {
    /// The signing key, for checking the signature itself (P-256: what
    /// cosign and the Sigstore clients generate).
    pub fn public_key(&self) -> Result<PublicKey, KeylessError> {
        let der = ecdsa::spki_der(&self.cert.tbs_certificate.subject_public_key_info);
        PublicKey::from_spki_der(&der).map_err(|e| KeylessError::SigningKey(e.to_string()))
    }
}

/// Checks everything but the signature itself: the log entries, the
/// certificate at the time it was logged, its SCT and its identity.
pub fn verify(
    policy: &Policy,
    leaf: &Leaf,
    entries: &[Entry],
    logged: Logged<'_>,
) -> Result<Signer, KeylessError> {
    if entries.is_empty() {
        return Err(KeylessError::NoTlogEntry);
    }
    let mut errors = Vec::new();
    let mut verified = None;
    for e in entries {
        match e.verify(&policy.root, &leaf.der, logged) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            Err(err) => errors.push(err),
        }
    }
    let Some(log) = verified else {
        return Err(errors.remove(0));
    };
    let t = log.integrated_time;
    if t < leaf.not_before || t > leaf.not_after {
        return Err(KeylessError::NotValidWhenLogged {
            from: crate::date::human(leaf.not_before),
            to: crate::date::human(leaf.not_after),
            logged: crate::date::human(t),
        });
    }
    let issuer_spki = leaf.verify_chain(&policy.root, t)?;
    certificate::verify_scts(leaf, &issuer_spki, &policy.root)?;
    let identity = leaf
        .identities
        .iter()
        .find(|i| policy.identity.matches(i))
        .ok_or_else(|| KeylessError::WrongIdentity {
            found: if leaf.identities.is_empty() {
                "(none)".into()
            } else {
                leaf.identities
                    .iter()
                    .map(|i| format!("{i:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            expected: policy.identity.describe(),
        })?;
    let issuer = leaf.issuer.clone().unwrap_or_default();
    if !policy.issuer.matches(&issuer) {
        return Err(KeylessError::WrongIssuer {
            found: issuer,
            expected: policy.issuer.describe(),
        });
    }
    Ok(Signer {
        identity: identity.clone(),
        issuer,
        log,
    })
}

/// [`verify`] for a DSSE envelope: the log entry must record the
/// envelope's payload and the signature that verifies with `key` (the
/// certificate's).
pub fn verify_envelope(
    policy: &Policy,
    leaf: &Leaf,
    key: &PublicKey,
    envelope: &super::Envelope,
    entries: &[Entry],
) -> Result<Signer, KeylessError> {
    let bad = |e: super::DsseError| KeylessError::SigningKey(e.to_string());
    let payload = envelope.payload_bytes().map_err(bad)?;
    let pae = envelope.pae().map_err(bad)?;
    let signature = envelope
        .signatures
        .iter()
        .filter_map(|s| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &s.sig).ok()
        })
        .find(|sig| key.verify(&pae, sig).is_ok())
        .ok_or_else(|| {
            KeylessError::SigningKey("no signature of the envelope verifies with it".into())
        })?;
    verify(
        policy,
        leaf,
        entries,
        Logged::Envelope {
            payload: &payload,
            signature: &signature,
        },
    )
}

#[cfg(test)]
mod tests;
