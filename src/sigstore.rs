//! Keyless signing against a Sigstore instance: an OIDC identity token from
//! the environment, an ephemeral P-256 key, a short-lived certificate for
//! it from Fulcio, and a Rekor entry for every signature made with it.
//! The public-good instance by default; `--fulcio-url` and `--rekor-url`
//! point elsewhere (a private deployment, or a test's).
//!
//! The verification side (certificate chain, SCT, log entry, identity) is
//! the seed's (`kiln_seed::attest::keyless`), the code `nix run .#verify`
//! runs.

use crate::sign::{SignError, Signer, SignerIdentity};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use kiln_seed::attest::keyless::tlog::{der_to_pem, pem_to_der};
use kiln_seed::attest::keyless::{Entry, Leaf};
use kiln_seed::attest::Envelope;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

pub const PUBLIC_GOOD_FULCIO: &str = "https://fulcio.sigstore.dev";
pub const PUBLIC_GOOD_REKOR: &str = "https://rekor.sigstore.dev";

/// Where keyless signing gets its identity token, certificate and log entries.
#[derive(Clone, Debug)]
pub struct KeylessOptions {
    pub fulcio_url: String,
    pub rekor_url: String,
    /// An OIDC token given on the command line; else the environment's.
    pub identity_token: Option<String>,
}

impl Default for KeylessOptions {
    fn default() -> Self {
        KeylessOptions {
            fulcio_url: PUBLIC_GOOD_FULCIO.into(),
            rekor_url: PUBLIC_GOOD_REKOR.into(),
            identity_token: None,
        }
    }
}

/// An OIDC identity token and the claims Fulcio reads from it.
#[derive(Clone, Debug)]
pub struct IdentityToken {
    pub jwt: String,
    pub issuer: String,
    /// What the proof of possession signs: the e-mail address for e-mail
    /// identities, else the subject (as cosign and Fulcio do).
    pub subject: String,
}

impl IdentityToken {
    /// Reads the claims (unverified: Fulcio verifies the token).
    pub fn parse(jwt: &str) -> Result<IdentityToken, SignError> {
        let bad = |why: &str| SignError::Keyless {
            url: "the OIDC identity token".into(),
            message: why.to_string(),
        };
        let jwt = jwt.trim();
        let claims = jwt
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| bad("is not a JWT (header.claims.signature, base64url JSON claims)"))?;
        let issuer = claims["iss"]
            .as_str()
            .ok_or_else(|| bad("has no iss claim"))?
            .to_string();
        let subject = claims["email"]
            .as_str()
            .or_else(|| claims["sub"].as_str())
            .ok_or_else(|| bad("has neither an email nor a sub claim"))?
            .to_string();
        Ok(IdentityToken {
            jwt: jwt.to_string(),
            issuer,
            subject,
        })
    }

    /// The token from the environment, as CI systems provide one:
    /// `SIGSTORE_ID_TOKEN` (GitLab `id_tokens`, or any CI that sets it), or
    /// GitHub Actions' token service (`ACTIONS_ID_TOKEN_REQUEST_URL` and
    /// `_TOKEN`, with `permissions: id-token: write`), asked for audience
    /// `sigstore`.
    pub fn from_env() -> Result<IdentityToken, SignError> {
        if let Ok(t) = std::env::var("SIGSTORE_ID_TOKEN") {
            return IdentityToken::parse(&t);
        }
        if let (Ok(url), Ok(bearer)) = (
            std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            let sep = if url.contains('?') { '&' } else { '?' };
            let full = format!("{url}{sep}audience=sigstore");
            let body = http(&full, |agent| {
                agent
                    .get(&full)
                    .header("Authorization", &format!("bearer {bearer}"))
                    .call()
            })?;
            let value = body["value"].as_str().ok_or_else(|| SignError::Keyless {
                url: url.clone(),
                message: "the answer has no value (the token)".into(),
            })?;
            return IdentityToken::parse(value);
        }
        Err(SignError::NoIdentityToken)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// One request; the answer's JSON, or an error naming `url` and what
/// went wrong (the network error, or the status and the server's message).
fn http(
    url: &str,
    send: impl FnOnce(&ureq::Agent) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, SignError> {
    let fail = |message: String| SignError::Keyless {
        url: url.to_string(),
        message,
    };
    let mut resp = send(&agent()).map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| fail(format!("reading the answer: {e}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(fail(format!("HTTP {status}: {message}")));
    }
    serde_json::from_str(&text).map_err(|e| fail(format!("the answer is not JSON: {e}")))
}

fn post(url: &str, body: &Value, bearer: Option<&str>) -> Result<Value, SignError> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    http(url, |agent| {
        let mut req = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(b) = bearer {
            req = req.header("Authorization", &format!("Bearer {b}"));
        }
        req.send(&bytes[..])
    })
}

/// A signer holding an ephemeral key and Fulcio's certificate for it.
pub struct KeylessSigner {
    key: SigningKey,
    chain_der: Vec<Vec<u8>>,
    /// When the certificate expires (Unix seconds): a signature logged
    /// later would not verify.
    not_after: i64,
    identity: String,
    issuer: String,
    rekor_url: String,
}

impl KeylessSigner {
    /// Gets a certificate for a fresh key from `options.fulcio_url`.
    pub fn new(options: &KeylessOptions) -> Result<KeylessSigner, SignError> {
        let token = match &options.identity_token {
            Some(t) => IdentityToken::parse(t)?,
            None => IdentityToken::from_env()?,
        };
        let key = SigningKey::random(&mut rand_core::OsRng);
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::Signature(e.to_string()))?;
        let proof: DerSignature = key.sign(token.subject.as_bytes());
        let url = format!(
            "{}/api/v2/signingCert",
            options.fulcio_url.trim_end_matches('/')
        );
        let answer = post(
            &url,
            &json!({
                "credentials": {"oidcIdentityToken": token.jwt},
                "publicKeyRequest": {
                    "publicKey": {"algorithm": "ECDSA", "content": public_pem},
                    "proofOfPossession": STANDARD.encode(proof.as_bytes()),
                }
            }),
            Some(&token.jwt),
        )?;
        let certificates = answer["signedCertificateEmbeddedSct"]["chain"]["certificates"]
            .as_array()
            .ok_or_else(|| SignError::Keyless {
                url: url.clone(),
                message: "the answer has no signedCertificateEmbeddedSct.chain (a Fulcio with a detached SCT is not supported)".into(),
            })?;
        let chain_der = certificates
            .iter()
            .map(|c| c.as_str().and_then(|p| pem_to_der(p.as_bytes())))
            .collect::<Option<Vec<_>>>()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| SignError::Keyless {
                url: url.clone(),
                message: "the certificate chain is not PEM".into(),
            })?;
        let leaf = Leaf::parse(&chain_der[0]).map_err(|e| SignError::Keyless {
            url: url.clone(),
            message: format!("the certificate: {e}"),
        })?;
        if leaf.public_key().ok().as_ref().map(|k| k.verifying_key()) != Some(key.verifying_key()) {
            return Err(SignError::Keyless {
                url,
                message: "the certificate is for another key than the one sent".into(),
            });
        }
        Ok(KeylessSigner {
            key,
            not_after: leaf.not_after,
            identity: leaf.identities.first().cloned().unwrap_or(token.subject),
            issuer: leaf.issuer.clone().unwrap_or(token.issuer),
            chain_der,
            rekor_url: options.rekor_url.trim_end_matches('/').to_string(),
        })
    }

    /// The identity and issuer the certificate names.
    pub fn signer(&self) -> (&str, &str) {
        (&self.identity, &self.issuer)
    }

    fn leaf_pem_b64(&self) -> String {
        STANDARD.encode(der_to_pem(&self.chain_der[0]))
    }

    fn upload(&self, proposed: Value) -> Result<Entry, SignError> {
        let url = format!("{}/api/v1/log/entries", self.rekor_url);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if now >= self.not_after {
            return Err(SignError::Keyless {
                url,
                message: format!(
                    "the Fulcio certificate expired at {} before this signature was logged (it would not verify); sign fewer images per run",
                    kiln_seed::date::human(self.not_after)
                ),
            });
        }
        let answer = post(&url, &proposed, None)?;
        Entry::from_rekor_response(&answer).map_err(|e| SignError::Keyless {
            url,
            message: e.to_string(),
        })
    }
}

impl Signer for KeylessSigner {
    fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig: DerSignature = self.key.sign(bytes);
        Ok(sig.as_bytes().to_vec())
    }

    fn public_key_pem(&self) -> Result<String, SignError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::Signature(e.to_string()))
    }

    fn identity(&self) -> Result<SignerIdentity, SignError> {
        Ok(SignerIdentity::Certificate {
            chain_der: self.chain_der.clone(),
            subject: self.identity.clone(),
            issuer: self.issuer.clone(),
            tlog_entries: Vec::new(),
        })
    }

    fn log_signature(&self, artifact: &[u8], signature: &[u8]) -> Result<Option<Entry>, SignError> {
        self.upload(json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(artifact))}},
                "signature": {
                    "content": STANDARD.encode(signature),
                    "publicKey": {"content": self.leaf_pem_b64()}
                }
            }
        }))
        .map(Some)
    }

    fn log_envelope(&self, envelope: &Envelope) -> Result<Option<Entry>, SignError> {
        self.upload(json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "proposedContent": {
                    "envelope": String::from_utf8_lossy(&envelope.to_json()),
                    "verifiers": [self.leaf_pem_b64()]
                }
            }
        }))
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        )
    }

    #[test]
    fn tokens_name_their_issuer_and_subject() {
        let t = IdentityToken::parse(&jwt(
            json!({"iss": "https://i", "sub": "repo:x", "email": "a@b"}),
        ))
        .unwrap();
        assert_eq!(
            (t.issuer.as_str(), t.subject.as_str()),
            ("https://i", "a@b")
        );
        let t = IdentityToken::parse(&jwt(json!({"iss": "https://i", "sub": "repo:x"}))).unwrap();
        assert_eq!(t.subject, "repo:x");
        let e = IdentityToken::parse("not-a-jwt").unwrap_err().to_string();
        assert!(e.contains("not a JWT"), "{e}");
        let e = IdentityToken::parse(&jwt(json!({"sub": "x"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("iss"), "{e}");
    }

    #[test]
    fn an_unreachable_fulcio_is_named_with_the_network_error() {
        let options = KeylessOptions {
            fulcio_url: "http://127.0.0.1:9".into(),
            rekor_url: "http://127.0.0.1:9".into(),
            identity_token: Some(jwt(json!({"iss": "https://i", "sub": "x"}))),
        };
        let e = KeylessSigner::new(&options).err().unwrap().to_string();
        assert!(e.contains("http://127.0.0.1:9/api/v2/signingCert"), "{e}");
        assert!(
            e.to_lowercase().contains("refused") || e.contains("connect"),
            "{e}"
        );
    }
}
