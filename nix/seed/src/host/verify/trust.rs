//! Whom the verifier believes: trusted public keys (`--key`), and for
//! keyless signatures an identity policy (`--certificate-identity[-regexp]`,
//! `--certificate-oidc-issuer[-regexp]`) over a Sigstore trusted root
//! (`--trusted-root`, default the public-good instance's).

use crate::attest::keyless::{Matcher, Policy, TrustedRoot};
use crate::attest::PublicKey;
use std::path::{Path, PathBuf};

/// The keyless flags as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeylessFlags {
    pub identity: Option<String>,
    pub identity_regexp: Option<String>,
    pub issuer: Option<String>,
    pub issuer_regexp: Option<String>,
    pub trusted_root: Option<PathBuf>,
}

impl KeylessFlags {
    pub fn is_empty(&self) -> bool {
        *self == KeylessFlags::default()
    }

    /// The policy the flags describe, `None` when none is given; an error
    /// names the flag that is missing, doubled or wrong.
    pub fn policy(&self) -> Result<Option<Policy>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let one = |exact: &Option<String>, regexp: &Option<String>, flag: &str| {
            match (exact, regexp) {
                (Some(e), None) => Ok(Matcher::Exact(e.clone())),
                (None, Some(r)) => Matcher::regex(r).map_err(|e| format!("--{flag}-regexp: {e}")),
                (Some(_), Some(_)) => Err(format!("give --{flag} or --{flag}-regexp, not both")),
                (None, None) => Err(format!(
                    "keyless verification needs --{flag} (or --{flag}-regexp): the signer the certificate must name"
                )),
            }
        };
        let identity = one(
            &self.identity,
            &self.identity_regexp,
            "certificate-identity",
        )?;
        let issuer = one(&self.issuer, &self.issuer_regexp, "certificate-oidc-issuer")?;
        let root = match &self.trusted_root {
            None => TrustedRoot::public_good(),
            Some(p) => load_root(p)?,
        };
        Ok(Some(Policy {
            identity,
            issuer,
            root,
        }))
    }
}

fn load_root(path: &Path) -> Result<TrustedRoot, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("reading --trusted-root {}: {e}", path.display()))?;
    TrustedRoot::from_json(&bytes, &path.display().to_string()).map_err(|e| e.to_string())
}

#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub keys: Vec<PublicKey>,
    pub keyless: Option<Policy>,
}

impl Trust {
    /// Why a signature of the other kind cannot be checked.
    pub fn no_keyless_policy() -> String {
        "it is signed with a certificate (keyless): verifying it needs --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]".into()
    }

    pub fn no_keys() -> String {
        "it is signed with a key: verifying it needs --key".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_policy_or_name_what_is_missing() {
        assert!(KeylessFlags::default().policy().unwrap().is_none());
        let only_identity = KeylessFlags {
            identity: Some("a@b".into()),
            ..Default::default()
        };
        let e = only_identity.policy().unwrap_err();
        assert!(e.contains("--certificate-oidc-issuer"), "{e}");
        let both = KeylessFlags {
            identity: Some("a@b".into()),
            identity_regexp: Some(".*".into()),
            issuer: Some("https://i".into()),
            ..Default::default()
        };
        assert!(both.policy().unwrap_err().contains("not both"));
        let bad_regex = KeylessFlags {
            identity_regexp: Some("(".into()),
            issuer: Some("https://i".into()),
            ..Default::default()
        };
        assert!(bad_regex
            .policy()
            .unwrap_err()
            .contains("--certificate-identity-regexp"));
        let missing_root = KeylessFlags {
            identity: Some("a@b".into()),
            issuer: Some("https://i".into()),
            trusted_root: Some("/nonexistent/root.json".into()),
            ..Default::default()
        };
        assert!(missing_root
            .policy()
            .unwrap_err()
            .contains("/nonexistent/root.json"));
        let ok = KeylessFlags {
            identity: Some("a@b".into()),
            issuer_regexp: Some("https://.*".into()),
            ..Default::default()
        };
        let p = ok.policy().unwrap().unwrap();
        assert!(p.issuer.matches("https://x") && !p.issuer.matches("http://x"));
        assert!(!p.root.tlogs.is_empty());
    }
}
