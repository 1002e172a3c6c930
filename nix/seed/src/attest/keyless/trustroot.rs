//! A Sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json`,
//! protobuf JSON of `dev.sigstore.trustroot.v1.TrustedRoot`): the Fulcio
//! certificate authorities, the Rekor transparency logs and the certificate
//! transparency logs a keyless signature is checked against, each with the
//! time range in which it may be trusted.
//!
//! The public-good instance's root is compiled in; `--trusted-root FILE`
//! replaces it (a private Sigstore deployment, or a test's own CA and logs).

use super::ecdsa::EcdsaKey;
use super::KeylessError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

/// The public-good instance's trusted root, as its TUF repository served it
/// (Fulcio since 2021, Rekor v1, both CT logs).
pub const PUBLIC_GOOD: &str = include_str!("public_good_trusted_root.json");

pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// A time range (Unix seconds); `end` is open when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidFor {
    pub start: i64,
    pub end: Option<i64>,
}

impl ValidFor {
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && self.end.is_none_or(|e| t <= e)
    }
}

/// A Rekor log or a CT log.
#[derive(Clone, Debug)]
pub struct Log {
    pub base_url: String,
    /// sha256 of the log's public key (DER SubjectPublicKeyInfo).
    pub log_id: Vec<u8>,
    /// `None` for a key type kiln does not verify (Rekor v2's Ed25519):
    /// an entry from such a log is reported as such.
    pub key: Option<EcdsaKey>,
    pub key_details: String,
    pub valid_for: ValidFor,
}

#[derive(Clone, Debug)]
pub struct CertificateAuthority {
    pub uri: String,
    /// DER certificates, the one that issues leaves first, the root last.
    pub chain: Vec<Vec<u8>>,
    pub valid_for: ValidFor,
}

#[derive(Clone, Debug)]
pub struct TrustedRoot {
    /// Where the root came from, for messages.
    pub origin: String,
    pub tlogs: Vec<Log>,
    pub ctlogs: Vec<Log>,
    pub certificate_authorities: Vec<CertificateAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootJson {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogJson>,
    #[serde(default)]
    ctlogs: Vec<LogJson>,
    #[serde(default)]
    certificate_authorities: Vec<CaJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogJson {
    #[serde(default)]
    base_url: String,
    public_key: PublicKeyJson,
    log_id: LogIdJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyJson {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<ValidForJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdJson {
    key_id: String,
}

#[derive(Deserialize)]
struct ValidForJson {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaJson {
    #[serde(default)]
    uri: String,
    cert_chain: ChainJson,
    valid_for: Option<ValidForJson>,
}

#[derive(Deserialize)]
struct ChainJson {
    certificates: Vec<RawJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    raw_bytes: String,
}

impl TrustedRoot {
    pub fn public_good() -> TrustedRoot {
        TrustedRoot::from_json(
            PUBLIC_GOOD.as_bytes(),
            "the public-good Sigstore trusted root",
        )
        .expect("the compiled-in trusted root parses")
    }

    /// Parses a trusted root; `origin` (a file name) names it in errors.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<TrustedRoot, KeylessError> {
        let bad = |field: String, reason: String| KeylessError::TrustedRoot {
            origin: origin.to_string(),
            field,
            reason,
        };
        let root: RootJson =
            serde_json::from_slice(bytes).map_err(|e| bad("(document)".into(), e.to_string()))?;
        if !root
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(bad(
                "mediaType".into(),
                format!(
                    "{:?} is not a trusted root (expected {TRUSTED_ROOT_MEDIA_TYPE:?})",
                    root.media_type
                ),
            ));
        }
        let valid = |v: &Option<ValidForJson>, field: &str| -> Result<ValidFor, KeylessError> {
            let time = |t: &Option<String>, which: &str| -> Result<Option<i64>, KeylessError> {
                t.as_deref()
                    .map(|s| {
                        crate::date::parse_rfc3339(s).ok_or_else(|| {
                            bad(
                                format!("{field}.validFor.{which}"),
                                format!("{s:?} is not an RFC 3339 UTC time"),
                            )
                        })
                    })
                    .transpose()
            };
            match v {
                None => Ok(ValidFor {
                    start: i64::MIN,
                    end: None,
                }),
                Some(v) => Ok(ValidFor {
                    start: time(&v.start, "start")?.unwrap_or(i64::MIN),
                    end: time(&v.end, "end")?,
                }),
            }
        };
        let b64 = |s: &str, field: String| {
            STANDARD
                .decode(s)
                .map_err(|e| bad(field, format!("not base64: {e}")))
        };
        let logs = |list: &[LogJson], kind: &str| -> Result<Vec<Log>, KeylessError> {
            list.iter()
                .enumerate()
                .map(|(i, l)| {
                    let field = format!("{kind}[{i}]");
                    let der = b64(
                        &l.public_key.raw_bytes,
                        format!("{field}.publicKey.rawBytes"),
                    )?;
                    let key = if l.public_key.key_details.starts_with("PKIX_ECDSA_P")
                        || l.public_key.key_details.is_empty()
                    {
                        Some(EcdsaKey::from_spki_der(&der, &format!("{origin} {field}"))?)
                    } else {
                        None
                    };
                    Ok(Log {
                        base_url: l.base_url.clone(),
                        log_id: b64(&l.log_id.key_id, format!("{field}.logId.keyId"))?,
                        key,
                        key_details: l.public_key.key_details.clone(),
                        valid_for: valid(&l.public_key.valid_for, &format!("{field}.publicKey"))?,
                    })
                })
                .collect()
        };
        let certificate_authorities = root
            .certificate_authorities
            .iter()
            .enumerate()
            .map(|(i, ca)| {
                let field = format!("certificateAuthorities[{i}]");
                if ca.cert_chain.certificates.is_empty() {
                    return Err(bad(format!("{field}.certChain"), "no certificates".into()));
                }
                Ok(CertificateAuthority {
                    uri: ca.uri.clone(),
                    chain: ca
                        .cert_chain
                        .certificates
                        .iter()
                        .enumerate()
                        .map(|(j, c)| {
                            b64(
                                &c.raw_bytes,
                                format!("{field}.certChain.certificates[{j}].rawBytes"),
                            )
                        })
                        .collect::<Result<_, _>>()?,
                    valid_for: valid(&ca.valid_for, &field)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedRoot {
            origin: origin.to_string(),
            tlogs: logs(&root.tlogs, "tlogs")?,
            ctlogs: logs(&root.ctlogs, "ctlogs")?,
            certificate_authorities,
        })
    }

    pub fn tlog(&self, log_id: &[u8]) -> Option<&Log> {
        self.tlogs.iter().find(|l| l.log_id == log_id)
    }

    pub fn ctlog(&self, log_id: &[u8]) -> Option<&Log> {
        self.ctlogs.iter().find(|l| l.log_id == log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_good_root_parses_with_its_logs_and_authorities() {
        let root = TrustedRoot::public_good();
        assert!(root
            .tlogs
            .iter()
            .any(|l| l.base_url == "https://rekor.sigstore.dev"
                && l.key.is_some()
                && l.valid_for.contains(1_700_000_000)));
        assert_eq!(root.ctlogs.len(), 2);
        assert_eq!(root.certificate_authorities.len(), 2);
        // The first Fulcio chain was retired at the end of 2022.
        assert!(!root.certificate_authorities[0]
            .valid_for
            .contains(1_700_000_000));
    }

    #[test]
    fn a_bad_root_names_the_field() {
        let e = TrustedRoot::from_json(
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":"x","publicKey":{"rawBytes":"!!","keyDetails":"PKIX_ECDSA_P256_SHA_256"},"logId":{"keyId":"AA=="}}]}"#,
            "root.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("root.json") && e.contains("tlogs[0].publicKey.rawBytes"),
            "{e}"
        );
        let e = TrustedRoot::from_json(br#"{"mediaType":"x"}"#, "root.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mediaType"), "{e}");
    }
}
