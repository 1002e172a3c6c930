//! A Fulcio leaf certificate: what it binds (the signing key to an OIDC
//! identity and issuer), whether a trusted certificate authority issued it,
//! and its embedded certificate-transparency timestamps (SCTs).

use super::ecdsa::{spki_der, EcdsaKey, Hash};
use super::trustroot::{CertificateAuthority, TrustedRoot};
use super::KeylessError;
use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::{ObjectIdentifier, OctetString, Utf8StringRef};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::Certificate;

const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// Fulcio's OIDC issuer, first as raw bytes, then (since 2023) as a DER
/// UTF8String.
pub const FULCIO_ISSUER_V1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
pub const FULCIO_ISSUER_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// RFC 6962 embedded SCT list.
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

#[derive(Debug)]
pub struct Leaf {
    pub der: Vec<u8>,
    pub cert: Certificate,
    pub key: EcdsaKey,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject alternative names: URIs, e-mail addresses, other names.
    pub identities: Vec<String>,
    /// The OIDC issuer the identity was verified with.
    pub issuer: Option<String>,
}

fn parse(der: &[u8], what: &str) -> Result<Certificate, KeylessError> {
    Certificate::from_der(der).map_err(|e| KeylessError::Certificate {
        what: what.to_string(),
        reason: format!("not a DER X.509 certificate: {e}"),
    })
}

fn validity(cert: &Certificate) -> (i64, i64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs() as i64,
        v.not_after.to_unix_duration().as_secs() as i64,
    )
}

impl Leaf {
    pub fn parse(der: &[u8]) -> Result<Leaf, KeylessError> {
        let bad = |reason: String| KeylessError::Certificate {
            what: "the signing certificate".into(),
            reason,
        };
        let cert = parse(der, "the signing certificate")?;
        let key = EcdsaKey::from_spki(
            &cert.tbs_certificate.subject_public_key_info,
            "the signing certificate's key",
        )?;
        let (not_before, not_after) = validity(&cert);
        let mut identities = Vec::new();
        let mut issuer = None;
        let mut code_signing = false;
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            match ext.extn_id {
                SUBJECT_ALT_NAME => {
                    let san = SubjectAltName::from_der(value)
                        .map_err(|e| bad(format!("subjectAltName: {e}")))?;
                    for name in san.0 {
                        match name {
                            GeneralName::UniformResourceIdentifier(u) => {
                                identities.push(u.as_str().to_string())
                            }
                            GeneralName::Rfc822Name(m) => identities.push(m.as_str().to_string()),
                            GeneralName::OtherName(o) => {
                                if let Ok(s) = o.value.decode_as::<Utf8StringRef>() {
                                    identities.push(s.as_str().to_string());
                                }
                            }
                            _ => {}
                        }
                    }
                }
                EXTENDED_KEY_USAGE => {
                    let eku = ExtendedKeyUsage::from_der(value)
                        .map_err(|e| bad(format!("extendedKeyUsage: {e}")))?;
                    code_signing = eku.0.contains(&CODE_SIGNING);
                }
                FULCIO_ISSUER_V2 => {
                    let s = Utf8StringRef::from_der(value)
                        .map_err(|e| bad(format!("OIDC issuer ({FULCIO_ISSUER_V2}): {e}")))?;
                    issuer = Some(s.as_str().to_string());
                }
                FULCIO_ISSUER_V1 if issuer.is_none() => {
                    issuer = Some(String::from_utf8_lossy(value).into_owned());
                }
                _ => {}
            }
        }
        if !code_signing {
            return Err(bad(
                "it is not for code signing (no extendedKeyUsage codeSigning)".into(),
            ));
        }
        Ok(Leaf {
            der: der.to_vec(),
            cert,
            key,
            not_before,
            not_after,
            identities,
            issuer,
        })
    }

    /// Finds the certificate authority of `root` that issued this leaf
    /// and was trusted at `time`, and checks every link of its chain up to
    /// its self-signed root. Returns the issuing certificate's public key
    /// (DER SubjectPublicKeyInfo), which the SCTs commit to.
    pub fn verify_chain(&self, root: &TrustedRoot, time: i64) -> Result<Vec<u8>, KeylessError> {
        let mut tried = Vec::new();
        for ca in &root.certificate_authorities {
            if !ca.valid_for.contains(time) {
                continue;
            }
            match verify_with(&self.cert, ca, time) {
                Ok(issuer_spki) => return Ok(issuer_spki),
                Err(e) => tried.push(format!("{}: {e}", ca.uri)),
            }
        }
        Err(KeylessError::Untrusted {
            origin: root.origin.clone(),
            time: crate::date::human(time),
            tried: if tried.is_empty() {
                "no certificate authority was trusted at that time".into()
            } else {
                tried.join("; ")
            },
        })
    }

    /// Embedded SCTs, as RFC 6962 serializes the list (raw TLS bytes).
    pub fn sct_list(&self) -> Option<Vec<u8>> {
        let ext = self
            .cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == SCT_LIST)?;
        OctetString::from_der(ext.extn_value.as_bytes())
            .ok()
            .map(|o| o.into_bytes())
    }

    /// The to-be-signed certificate as the CT log signed it: without the
    /// SCT list extension (RFC 6962 §3.2 precertificate).
    pub fn precertificate_tbs(&self) -> Result<Vec<u8>, KeylessError> {
        let mut tbs = self.cert.tbs_certificate.clone();
        if let Some(exts) = tbs.extensions.as_mut() {
            exts.retain(|e| e.extn_id != SCT_LIST);
        }
        tbs.to_der().map_err(|e| KeylessError::Certificate {
            what: "the signing certificate".into(),
            reason: e.to_string(),
        })
    }
}

/// Checks `leaf` against one authority's chain; returns the issuer's SPKI.
fn verify_with(
    leaf: &Certificate,
    ca: &CertificateAuthority,
    time: i64,
) -> Result<Vec<u8>, String> {
    let chain = ca
        .chain
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|e| format!("chain certificate: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut child = leaf;
    for (i, parent) in chain.iter().enumerate() {
        if child.tbs_certificate.issuer != parent.tbs_certificate.subject {
            return Err(if i == 0 {
                "the certificate was issued by another authority".into()
            } else {
                format!("chain certificate {i} does not issue certificate {}", i - 1)
            });
        }
        signed_by(child, parent)?;
        let (nb, na) = validity(parent);
        if time < nb || time > na {
            return Err(format!(
                "chain certificate {i} was not valid at {}",
                crate::date::human(time)
            ));
        }
        child = parent;
    }
    // The last one is the root: self-signed.
    let root = chain.last().ok_or("an empty chain")?;
    if root.tbs_certificate.issuer != root.tbs_certificate.subject {
        return Err("the chain does not end in a self-signed root".into());
    }
    signed_by(root, root)?;
    Ok(spki_der(&chain[0].tbs_certificate.subject_public_key_info))
}

fn signed_by(child: &Certificate, parent: &Certificate) -> Result<(), String> {
    let hash = Hash::of_signature_algorithm(&child.signature_algorithm.oid).ok_or_else(|| {
        format!(
            "signature algorithm {} is not ECDSA with SHA-256 or SHA-384",
            child.signature_algorithm.oid
        )
    })?;
    let key = EcdsaKey::from_spki(
        &parent.tbs_certificate.subject_public_key_info,
        "issuer key",
    )
    .map_err(|e| e.to_string())?;
    let tbs = child.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let sig = child
        .signature
        .as_bytes()
        .ok_or("the signature is not a whole number of bytes")?;
    if key.verify(&tbs, sig, hash) {
        Ok(())
    } else {
        Err("a certificate's signature does not verify with its issuer's key".into())
    }
}

/// Verifies the leaf's embedded SCTs: at least one must be signed by a CT
/// log of `root` that was trusted when it was issued (cosign requires one).
pub fn verify_scts(
    leaf: &Leaf,
    issuer_spki: &[u8],
    root: &TrustedRoot,
) -> Result<(), KeylessError> {
    let list = leaf.sct_list().ok_or(KeylessError::NoSct)?;
    let scts = super::sct::parse_list(&list)?;
    let tbs = leaf.precertificate_tbs()?;
    let issuer_key_hash: [u8; 32] = Sha256::digest(issuer_spki).into();
    let mut problems = Vec::new();
    for sct in &scts {
        let Some(log) = root.ctlog(&sct.log_id) else {
            problems.push(format!(
                "log {} is not in the trusted root",
                hex::encode(&sct.log_id)
            ));
            continue;
        };
        let time = (sct.timestamp_ms / 1000) as i64;
        if !log.valid_for.contains(time) {
            problems.push(format!(
                "log {} was not trusted at {}",
                log.base_url,
                crate::date::human(time)
            ));
            continue;
        }
        let Some(key) = &log.key else {
            problems.push(format!(
                "log {} has a {} key",
                log.base_url, log.key_details
            ));
            continue;
        };
        let signed = sct.precert_signed_data(&issuer_key_hash, &tbs);
        if key.verify(&signed, &sct.signature, Hash::Sha256) {
            return Ok(());
        }
        problems.push(format!("the SCT from {} does not verify", log.base_url));
    }
    Err(KeylessError::BadSct(problems.join("; ")))
}
