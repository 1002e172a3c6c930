//! The signed entry point of a suite: `dists/<suite>/InRelease`, verified
//! against the archive keyring with rpgp, and the `Packages` indexes checked
//! against its SHA256 table.
//!
//! rpgp's `verify_bindings()` on a whole certificate fails on the third-party
//! certifications Debian's keys carry, so key validity is evaluated here:
//! only self-signatures count, the newest valid one decides key flags and
//! expiry, a signing subkey needs a valid binding with a valid back
//! signature, and any valid revocation disqualifies.

use super::http::{Http, HttpError};
use super::packages::{paragraphs, parse_packages, BinaryPackage, PackagesError};
use super::sources::SuiteSource;
use crate::digest::Digest;
use crate::spec::Arch;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Upper bound for an InRelease download (bookworm's is about 150 kB).
const INRELEASE_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("keyring {path}: {message}")]
    Keyring { path: PathBuf, message: String },
    #[error("{suite}: downloading {file}: {error}")]
    Download {
        suite: String,
        file: String,
        error: HttpError,
    },
    #[error("{suite}: {file}: signature verification failed: {reason}")]
    Signature {
        suite: String,
        file: String,
        reason: String,
    },
    #[error("{suite}: {file}: {message}")]
    Malformed {
        suite: String,
        file: String,
        message: String,
    },
    #[error("{suite}: {file} describes Codename {codename:?} / Suite {found:?}, not {suite:?} (a signed index for another suite was served)")]
    WrongSuite {
        suite: String,
        file: String,
        codename: String,
        found: String,
    },
    #[error(
        "{suite}: {file} expired at {valid_until} (Valid-Until); the mirror is not being updated"
    )]
    Expired {
        suite: String,
        file: String,
        valid_until: String,
    },
    #[error("{suite}: InRelease lists no {wanted} for {arch} (components {components}; architectures {architectures})")]
    MissingIndex {
        suite: String,
        wanted: String,
        arch: String,
        components: String,
        architectures: String,
    },
    #[error("{suite}: {index}: sha256 mismatch: InRelease says {expected}, downloaded {actual}")]
    HashMismatch {
        suite: String,
        index: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{suite}: {index}: size mismatch: InRelease says {expected} bytes, downloaded {actual}"
    )]
    SizeMismatch {
        suite: String,
        index: String,
        expected: u64,
        actual: u64,
    },
    #[error("{suite}: {index}: decompressing: {message}")]
    Decompress {
        suite: String,
        index: String,
        message: String,
    },
    #[error(transparent)]
    Packages(#[from] PackagesError),
}

/// OpenPGP certificates trusted to sign archive indexes.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub path: PathBuf,
    certs: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a keyring file: binary (`.gpg`, like Debian's) or ASCII-armored.
    pub fn load(path: &Path) -> Result<Keyring, ReleaseError> {
        let bytes = std::fs::read(path).map_err(|e| ReleaseError::Keyring {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Keyring::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Keyring, ReleaseError> {
        let err = |message: String| ReleaseError::Keyring {
            path: path.to_path_buf(),
            message,
        };
        let trimmed = bytes.trim_ascii_start();
        let parsed: Vec<pgp::errors::Result<SignedPublicKey>> =
            if trimmed.starts_with(b"-----BEGIN PGP") {
                SignedPublicKey::from_armor_many(trimmed)
                    .map_err(|e| err(e.to_string()))?
                    .0
                    .collect()
            } else {
                SignedPublicKey::from_bytes_many(bytes)
                    .map_err(|e| err(e.to_string()))?
                    .collect()
            };
        let mut certs = Vec::new();
        let mut first_error = None;
        for c in parsed {
            match c {
                Ok(c) => certs.push(c),
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if certs.is_empty() {
            return Err(err(format!(
                "no OpenPGP certificate found{}",
                first_error.map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            certs,
        })
    }

    #[cfg(test)]
    fn from_certs(certs: Vec<SignedPublicKey>, path: &Path) -> Keyring {
        Keyring {
            path: path.to_path_buf(),
            certs,
        }
    }

    /// Primary fingerprints (lowercase hex), in file order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| hex::encode(c.primary_key.fingerprint().as_bytes()))
            .collect()
    }
}

fn issuer_matches(sig: &Signature, key: &impl KeyDetails) -> bool {
    let ids = sig.issuer_key_id();
    let fps = sig.issuer_fingerprint();
    if ids.is_empty() && fps.is_empty() {
        return true;
    }
    ids.iter().any(|id| **id == key.legacy_key_id())
        || fps.iter().any(|fp| **fp == key.fingerprint())
}

fn created(sig: &Signature) -> u32 {
    sig.created().map_or(0, |t| t.as_secs())
}

fn expired(key_created: u32, sig: &Signature, now: i64) -> Option<i64> {
    let d = sig.key_expiration_time()?.as_secs();
    let at = key_created as i64 + d as i64;
    (d > 0 && at <= now).then_some(at)
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// The newest valid self-signature of a primary key, or why it is unusable.
fn primary_self_sig(cert: &SignedPublicKey, now: i64) -> Result<&Signature, String> {
    let primary = &cert.primary_key;
    for rev in &cert.details.revocation_signatures {
        if issuer_matches(rev, primary) && rev.verify_key(primary).is_ok() {
            return Err("the certificate is revoked".into());
        }
    }
    let mut best: Option<&Signature> = None;
    for user in &cert.details.users {
        for sig in &user.signatures {
            // Third-party certifications are not ours to judge: skip them.
            let is_cert = matches!(
                sig.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            );
            if is_cert
                && issuer_matches(sig, primary)
                && sig
                    .verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
                && best.is_none_or(|b| created(sig) > created(b))
            {
                best = Some(sig);
            }
        }
    }
    for sig in &cert.details.direct_signatures {
        if issuer_matches(sig, primary)
            && sig.verify_key(primary).is_ok()
            && best.is_none_or(|b| created(sig) > created(b))
        {
            best = Some(sig);
        }
    }
    let sig = best.ok_or("the certificate has no valid self-signature")?;
    if let Some(at) = expired(primary.created_at().as_secs(), sig, now) {
        return Err(format!("the certificate expired at {}", format_epoch(at)));
    }
    Ok(sig)
}

/// Whether `sub` may sign now: bound by a valid binding with the signing
/// flag and a valid back signature, not revoked, not expired.
fn subkey_usable(cert: &SignedPublicKey, sub: &SignedPublicSubKey, now: i64) -> Result<(), String> {
    let primary = &cert.primary_key;
    let mut best: Option<&Signature> = None;
    for sig in &sub.signatures {
        if !issuer_matches(sig, primary) || sig.verify_subkey_binding(primary, &sub.key).is_err() {
            continue;
        }
        match sig.typ() {
            Some(SignatureType::SubkeyRevocation) => return Err("the subkey is revoked".into()),
            Some(SignatureType::SubkeyBinding)
                if best.is_none_or(|b| created(sig) > created(b)) =>
            {
                best = Some(sig)
            }
            _ => {}
        }
    }
    let binding = best.ok_or("the subkey has no valid binding signature")?;
    if !binding.key_flags().sign() {
        return Err("the subkey is not marked for signing".into());
    }
    let back = binding
        .embedded_signature()
        .ok_or("the signing subkey has no back signature")?;
    back.verify_primary_key_binding(&sub.key, primary)
        .map_err(|e| format!("the subkey's back signature is invalid: {e}"))?;
    if let Some(at) = expired(sub.key.created_at().as_secs(), binding, now) {
        return Err(format!("the subkey expired at {}", format_epoch(at)));
    }
    Ok(())
}

/// Verifies a clear-signed message; returns the signed text (LF line ends)
/// and the primary fingerprint of the certificate whose key verified it.
pub fn verify_clearsigned(
    bytes: &[u8],
    keyring: &Keyring,
    now: i64,
) -> Result<(String, String), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    // Only the one signed block is read: a second block or any text after
    // the signature would be unsigned content beside signed content.
    let end = "-----END PGP SIGNATURE-----";
    let after = text
        .find(end)
        .map(|i| &text[i + end.len()..])
        .unwrap_or_default();
    if !after.trim().is_empty() {
        return Err(format!(
            "{} byte(s) after the signature (a second signed block or trailing data): refused",
            after.trim_start().len()
        ));
    }
    if text.matches("-----BEGIN PGP SIGNED MESSAGE-----").count() > 1 {
        return Err("more than one signed block: refused".into());
    }
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
        // The OpenPGP parser's error can quote the whole input as numbers.
        let e = e.to_string();
        let short: String = e.chars().take(200).collect();
        let cut = if short.len() < e.len() { " ..." } else { "" };
        format!("not a clear-signed OpenPGP message: {short}{cut}")
    })?;
    let signed = msg.signed_text();
    let mut reasons = Vec::new();
    for sig in msg.signatures() {
        if let Some(d) = sig.signature_expiration_time() {
            if d.as_secs() > 0 && created(sig) as i64 + d.as_secs() as i64 <= now {
                reasons.push("a signature has expired".to_string());
                continue;
            }
        }
        let issuer = sig
            .issuer_fingerprint()
            .first()
            .map(|f| hex::encode(f.as_bytes()))
            .or_else(|| sig.issuer_key_id().first().map(|k| hex::encode(k.as_ref())))
            .unwrap_or_else(|| "unknown".into());
        let mut matched = false;
        for cert in &keyring.certs {
            let fpr = hex::encode(cert.primary_key.fingerprint().as_bytes());
            if issuer_matches(sig, &cert.primary_key) {
                matched = true;
                let ok = primary_self_sig(cert, now).and_then(|s| {
                    if has_key_flags(s) && !s.key_flags().sign() {
                        return Err("the primary key is not marked for signing".into());
                    }
                    sig.verify(&cert.primary_key, signed.as_bytes())
                        .map_err(|e| format!("bad signature: {e}"))
                });
                match ok {
                    Ok(()) => return Ok((signed.replace("\r\n", "\n"), fpr)),
                    Err(e) => reasons.push(format!("signature by {issuer} ({fpr}): {e}")),
                }
            }
            for sub in &cert.public_subkeys {
                if !issuer_matches(sig, &sub.key) {
                    continue;
                }
                matched = true;
                let ok = primary_self_sig(cert, now)
                    .map(|_| ())
                    .and_then(|_| subkey_usable(cert, sub, now))
                    .and_then(|_| {
                        sig.verify(&sub.key, signed.as_bytes())
                            .map_err(|e| format!("bad signature: {e}"))
                    });
                match ok {
                    Ok(()) => return Ok((signed.replace("\r\n", "\n"), fpr)),
                    Err(e) => reasons.push(format!("signature by subkey {issuer} of {fpr}: {e}")),
                }
            }
        }
        if !matched {
            reasons.push(format!(
                "signature by {issuer}: no such key in {}",
                keyring.path.display()
            ));
        }
    }
    if reasons.is_empty() {
        reasons.push("the message carries no signature".into());
    }
    Err(reasons.join("; "))
}

/// One line of the SHA256 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHash {
    pub sha256: Digest,
    pub size: u64,
}

/// A verified `InRelease`.
#[derive(Debug, Clone)]
pub struct Release {
    /// The suite as named in the apt sources and definitions.
    pub name: String,
    pub suite: String,
    pub codename: String,
    pub date: String,
    pub epoch: i64,
    pub valid_until: Option<i64>,
    pub acquire_by_hash: bool,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// sha256 and size of every file the suite publishes, by path under `dists/<suite>/`.
    pub files: BTreeMap<String, FileHash>,
    /// Digest of the InRelease file exactly as downloaded.
    pub in_release: Digest,
    /// Primary fingerprint (lowercase hex) of the certificate that signed it.
    pub signer: String,
}

/// Verifies and parses an InRelease file for `suite`; `file` names it in
/// errors (its URL). `now` is the current time in epoch seconds.
pub fn open_release(
    suite: &str,
    file: &str,
    bytes: &[u8],
    keyring: &Keyring,
    now: i64,
) -> Result<Release, ReleaseError> {
    let (text, signer) =
        verify_clearsigned(bytes, keyring, now).map_err(|reason| ReleaseError::Signature {
            suite: suite.into(),
            file: file.into(),
            reason,
        })?;
    let bad = |message: String| ReleaseError::Malformed {
        suite: suite.into(),
        file: file.into(),
        message,
    };
    let mut paras = paragraphs(&text);
    let para = match paras.next() {
        Some(Ok(p)) => p,
        Some(Err((line, m))) => return Err(bad(format!("line {line}: {m}"))),
        None => return Err(bad("the signed text is empty".into())),
    };
    let field = |k: &str| para.get(k).unwrap_or("").to_string();
    let date = field("Date");
    let epoch =
        parse_date(&date).ok_or_else(|| bad(format!("Date {date:?} is not an RFC 2822 date")))?;
    let valid_until = match para.get("Valid-Until") {
        Some(v) => Some(
            parse_date(v)
                .ok_or_else(|| bad(format!("Valid-Until {v:?} is not an RFC 2822 date")))?,
        ),
        None => None,
    };
    let codename = field("Codename");
    let found = field("Suite");
    if codename != suite && found != suite {
        return Err(ReleaseError::WrongSuite {
            suite: suite.into(),
            file: file.into(),
            codename,
            found,
        });
    }
    if let Some(v) = valid_until {
        if v < now {
            return Err(ReleaseError::Expired {
                suite: suite.into(),
                file: file.into(),
                valid_until: field("Valid-Until"),
            });
        }
    }
    let mut files = BTreeMap::new();
    for line in para.get("SHA256").unwrap_or("").lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        let [hash, size, path] = w[..] else {
            return Err(bad(format!(
                "SHA256 line {line:?} is not `<sha256> <size> <path>`"
            )));
        };
        let sha256 = Digest::from_hex(&hash.to_ascii_lowercase())
            .ok_or_else(|| bad(format!("SHA256 line {line:?}: bad digest")))?;
        let size = size
            .parse()
            .map_err(|_| bad(format!("SHA256 line {line:?}: bad size")))?;
        files.insert(path.to_string(), FileHash { sha256, size });
    }
    if files.is_empty() {
        return Err(bad("no SHA256 table".into()));
    }
    let words = |k: &str| {
        para.get(k)
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    Ok(Release {
        name: suite.to_string(),
        suite: found,
        codename,
        date,
        epoch,
        valid_until,
        acquire_by_hash: para
            .get("Acquire-By-Hash")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        components: words("Components"),
        architectures: words("Architectures"),
        files,
        in_release: Digest::of(bytes),
        signer,
    })
}

impl Release {
    /// Checks a downloaded index (`main/binary-amd64/Packages.xz`) against
    /// the signed table (what `packages_index` + `check_bytes` do for the
    /// lock; kept for the tests).
    #[cfg(test)]
    fn check_index(&self, path: &str, bytes: &[u8]) -> Result<(), ReleaseError> {
        let want = self
            .files
            .get(path)
            .ok_or_else(|| ReleaseError::MissingIndex {
                suite: self.name.clone(),
                wanted: path.to_string(),
                arch: path
                    .split('/')
                    .nth(1)
                    .unwrap_or("")
                    .trim_start_matches("binary-")
                    .to_string(),
                components: self.components.join(" "),
                architectures: self.architectures.join(" "),
            })?;
        check_bytes(&self.name, path, *want, bytes)
    }

    /// The best-compressed Packages index the suite lists for `component`/`arch`.
    pub fn packages_index(&self, component: &str, arch: Arch) -> Result<String, ReleaseError> {
        let base = format!("{component}/binary-{arch}/Packages");
        for ext in [".xz", ".gz", ""] {
            let p = format!("{base}{ext}");
            if self.files.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(ReleaseError::MissingIndex {
            suite: self.name.clone(),
            wanted: format!("{base}{{.xz,.gz,}}"),
            arch: arch.to_string(),
            components: self.components.join(" "),
            architectures: self.architectures.join(" "),
        })
    }
}

/// Checks downloaded bytes against their line in the signed table.
pub fn check_bytes(
    suite: &str,
    path: &str,
    want: FileHash,
    bytes: &[u8],
) -> Result<(), ReleaseError> {
    let actual = Digest::of(bytes);
    if actual != want.sha256 {
        return Err(ReleaseError::HashMismatch {
            suite: suite.into(),
            index: path.into(),
            expected: want.sha256,
            actual,
        });
    }
    if bytes.len() as u64 != want.size {
        return Err(ReleaseError::SizeMismatch {
            suite: suite.into(),
            index: path.into(),
            expected: want.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Decompresses an index by its file name's extension.
pub fn decompress(suite: &str, path: &str, bytes: &[u8]) -> Result<String, ReleaseError> {
    let err = |message: String| ReleaseError::Decompress {
        suite: suite.into(),
        index: path.into(),
        message,
    };
    let mut out = Vec::with_capacity(bytes.len() * 6);
    if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else {
        out = bytes.to_vec();
    }
    String::from_utf8(out).map_err(|e| err(format!("not UTF-8: {e}")))
}

/// A suite's verified indexes, parsed.
#[derive(Debug, Clone)]
pub struct SuiteIndex {
    pub release: Release,
    /// Every package of every configured component, per architecture.
    pub packages: BTreeMap<Arch, Vec<BinaryPackage>>,
    /// Index path (under `dists/<suite>/`) → digest, as the lock records it.
    pub indexes: BTreeMap<String, Digest>,
}

/// Downloads and verifies `dists/<suite>/InRelease` and the Packages
/// indexes of every configured component for `archs`, then parses them.
pub async fn load_suite(
    http: &Http,
    source: &SuiteSource,
    suite: &str,
    archs: &[Arch],
    keyring: &Keyring,
    now: i64,
) -> Result<SuiteIndex, ReleaseError> {
    let dists = format!("{}/dists/{suite}", source.base);
    let url = format!("{dists}/InRelease");
    let bytes =
        http.get_bytes(&url, INRELEASE_LIMIT)
            .await
            .map_err(|e| ReleaseError::Download {
                suite: suite.into(),
                file: "InRelease".into(),
                error: e,
            })?;
    // Signature checks are CPU work (RSA-4096): keep them off the thread
    // that drives the other suites' downloads.
    let (s, u, k) = (suite.to_string(), url.clone(), keyring.clone());
    let release = tokio::task::spawn_blocking(move || open_release(&s, &u, &bytes, &k, now))
        .await
        .map_err(|e| ReleaseError::Malformed {
            suite: suite.into(),
            file: url.clone(),
            message: e.to_string(),
        })??;
    // The security archive still announces `updates/main` while its files
    // live under `main/`, so compare the last path segment (as apt does).
    let components: Vec<&String> = source
        .components
        .iter()
        .filter(|c| {
            release.components.is_empty()
                || release
                    .components
                    .iter()
                    .any(|r| r == *c || r.rsplit('/').next() == Some(c.as_str()))
        })
        .collect();
    if components.is_empty() {
        return Err(ReleaseError::MissingIndex {
            suite: suite.into(),
            wanted: format!("any of the components {}", source.components.join(" ")),
            arch: archs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            components: release.components.join(" "),
            architectures: release.architectures.join(" "),
        });
    }
    let mut jobs = Vec::new();
    let (release_ref, dists) = (&release, &dists);
    for &arch in archs {
        for comp in &components {
            let path = release.packages_index(comp, arch)?;
            let want = release.files[&path];
            jobs.push(async move {
                let release = release_ref;
                let plain = format!("{dists}/{path}");
                let bytes = if release.acquire_by_hash {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    let by_hash = format!("{dists}/{dir}/by-hash/SHA256/{}", want.sha256.hex());
                    match http.get_bytes(&by_hash, want.size).await {
                        Err(HttpError::NotFound { .. }) => http.get_bytes(&plain, want.size).await,
                        other => other,
                    }
                } else {
                    http.get_bytes(&plain, want.size).await
                };
                let bytes = match bytes {
                    // Larger than the signed size: report it as the mismatch it is.
                    Err(HttpError::TooLarge { .. }) => {
                        return Err(ReleaseError::SizeMismatch {
                            suite: suite.into(),
                            index: path,
                            expected: want.size,
                            actual: want.size + 1,
                        })
                    }
                    other => other.map_err(|e| ReleaseError::Download {
                        suite: suite.into(),
                        file: path.clone(),
                        error: e,
                    })?,
                };
                let (suite_name, p) = (suite.to_string(), path.clone());
                let parsed = tokio::task::spawn_blocking(
                    move || -> Result<Vec<BinaryPackage>, ReleaseError> {
                        check_bytes(&suite_name, &p, want, &bytes)?;
                        let text = decompress(&suite_name, &p, &bytes)?;
                        Ok(parse_packages(&text, &format!("{suite_name} {p}"))?)
                    },
                )
                .await
                .map_err(|e| ReleaseError::Decompress {
                    suite: suite.into(),
                    index: path.clone(),
                    message: e.to_string(),
                })??;
                Ok::<_, ReleaseError>((arch, path, want.sha256, parsed))
            });
        }
    }
    let results = futures_util::future::join_all(jobs).await;
    let mut packages: BTreeMap<Arch, Vec<BinaryPackage>> = BTreeMap::new();
    let mut indexes = BTreeMap::new();
    for r in results {
        let (arch, path, digest, parsed) = r?;
        packages.entry(arch).or_default().extend(parsed);
        indexes.insert(path, digest);
    }
    Ok(SuiteIndex {
        release,
        packages,
        indexes,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses the RFC 2822 dates Release files use (`Sat, 11 Jul 2026 10:16:37 UTC`)
/// into epoch seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, r)| r.trim());
    let w: Vec<&str> = s.split_whitespace().collect();
    if w.len() < 4 {
        return None;
    }
    let day: i64 = w[0].parse().ok()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(w[1]))? as i64 + 1;
    let year: i64 = w[2].parse().ok()?;
    let t: Vec<i64> = w[3]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = match t[..] {
        [h, m, s] => (h, m, s),
        [h, m] => (h, m, 0),
        _ => return None,
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let offset = match w.get(4).copied() {
        None | Some("UTC" | "GMT" | "Z" | "UT") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let v: i64 = z[1..].parse().ok()?;
            let secs = (v / 100) * 3600 + (v % 100) * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset)
}

use kiln_seed::date::days_from_civil;

/// `YYYY-MM-DD HH:MM:SS UTC` for messages.
pub fn format_epoch(t: i64) -> String {
    kiln_seed::date::human(t)
}

/// Current time in epoch seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgp::composed::{
        ArmorOptions, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
    };
    use pgp::ser::Serialize as _;
    use pgp::types::Password;

    /// A certify-only primary with a signing subkey, like Debian's archive keys.
    fn archive_key() -> SignedSecretKey {
        let sub = SubkeyParamsBuilder::default()
            .key_type(KeyType::Ed25519)
            .can_sign(true)
            .build()
            .unwrap();
        SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519)
            .can_certify(true)
            .primary_user_id("kiln test archive key <test@kiln.invalid>".into())
            .subkey(sub)
            .build()
            .unwrap()
            .generate(rand_core::OsRng)
            .unwrap()
    }

    /// A primary that signs by itself.
    fn primary_signer() -> SignedSecretKey {
        SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("kiln primary signer <p@kiln.invalid>".into())
            .build()
            .unwrap()
            .generate(rand_core::OsRng)
            .unwrap()
    }

    fn sign_with_subkey(key: &SignedSecretKey, text: &str) -> Vec<u8> {
        let msg = CleartextSignedMessage::sign(
            rand_core::OsRng,
            text,
            &*key.secret_subkeys[0],
            &Password::empty(),
        )
        .unwrap();
        msg.to_armored_bytes(ArmorOptions::default()).unwrap()
    }

    fn keyring(keys: &[&SignedSecretKey]) -> Keyring {
        Keyring::from_certs(
            keys.iter().map(|k| k.to_public_key()).collect(),
            Path::new("test-keyring.gpg"),
        )
    }

    fn release_text(codename: &str, extra: &str, packages_xz: &[u8]) -> String {
        format!(
            "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: {codename}\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n{extra}\
             Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main\nDescription: test\nMD5Sum:\n 00000000000000000000000000000000 1 main/x\n\
             SHA256:\n {} {:>8} main/binary-amd64/Packages.xz\n {} 1234 main/binary-amd64/Packages\n",
            Digest::of(packages_xz).hex(),
            packages_xz.len(),
            "ab".repeat(32)
        )
    }

    const NOW: i64 = 1_790_000_000; // 2026-09

    #[test]
    fn verifies_subkey_signature_and_parses_the_table() {
        let key = archive_key();
        let signed = sign_with_subkey(&key, &release_text("bookworm", "", b"packages"));
        let r = open_release(
            "bookworm",
            "test/InRelease",
            &signed,
            &keyring(&[&primary_signer(), &key]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            r.signer,
            hex::encode(key.primary_key.public_key().fingerprint().as_bytes())
        );
        assert_eq!(
            (r.codename.as_str(), r.suite.as_str()),
            ("bookworm", "oldstable")
        );
        assert_eq!(r.epoch, 1783764997);
        assert!(r.acquire_by_hash);
        assert_eq!(r.in_release, Digest::of(&signed));
        assert_eq!(r.files.len(), 2);
        assert_eq!(
            r.files["main/binary-amd64/Packages.xz"],
            FileHash {
                sha256: Digest::of(b"packages"),
                size: 8
            }
        );
        assert_eq!(
            r.packages_index("main", Arch::Amd64).unwrap(),
            "main/binary-amd64/Packages.xz"
        );
        r.check_index("main/binary-amd64/Packages.xz", b"packages")
            .unwrap();
    }

    #[test]
    fn verifies_primary_key_signature() {
        let key = primary_signer();
        let msg = CleartextSignedMessage::sign(
            rand_core::OsRng,
            &release_text("bookworm", "", b"p"),
            &key.primary_key,
            &Password::empty(),
        )
        .unwrap();
        let bytes = msg.to_armored_bytes(ArmorOptions::default()).unwrap();
        let r = open_release("bookworm", "f", &bytes, &keyring(&[&key]), NOW).unwrap();
        assert_eq!(
            r.signer,
            hex::encode(key.primary_key.public_key().fingerprint().as_bytes())
        );
    }

    #[test]
    fn tampered_text_is_rejected() {
        let key = archive_key();
        let signed = String::from_utf8(sign_with_subkey(
            &key,
            &release_text("bookworm", "", b"packages"),
        ))
        .unwrap();
        let tampered = signed.replace(&Digest::of(b"packages").hex(), &Digest::of(b"evil").hex());
        assert_ne!(signed, tampered);
        let e = open_release(
            "bookworm",
            "dists/bookworm/InRelease",
            tampered.as_bytes(),
            &keyring(&[&key]),
            NOW,
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ReleaseError::Signature { .. }), "{m}");
        assert!(
            m.starts_with("bookworm: dists/bookworm/InRelease: signature verification failed"),
            "{m}"
        );
    }

    #[test]
    fn unknown_signer_is_rejected() {
        let (key, other) = (archive_key(), archive_key());
        let signed = sign_with_subkey(&key, &release_text("bookworm", "", b"packages"));
        let m = open_release("bookworm", "InRelease", &signed, &keyring(&[&other]), NOW)
            .unwrap_err()
            .to_string();
        assert!(m.contains("no such key in test-keyring.gpg"), "{m}");
        // Unsigned or garbage input.
        let m = open_release(
            "bookworm",
            "InRelease",
            b"Origin: Debian\n",
            &keyring(&[&other]),
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(m.contains("not a clear-signed OpenPGP message"), "{m}");
    }

    #[test]
    fn index_for_another_suite_is_rejected() {
        let key = archive_key();
        let signed = sign_with_subkey(&key, &release_text("bookworm", "", b"p"));
        let e = open_release(
            "bookworm-security",
            "InRelease",
            &signed,
            &keyring(&[&key]),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(e, ReleaseError::WrongSuite { .. }), "{e}");
    }

    #[test]
    fn expired_valid_until_is_rejected() {
        let key = archive_key();
        let text = release_text(
            "bookworm-security",
            "Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC\n",
            b"p",
        );
        let signed = sign_with_subkey(&key, &text);
        let ring = keyring(&[&key]);
        let e = open_release("bookworm-security", "InRelease", &signed, &ring, NOW)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expired at Sat, 18 Jul 2026 10:16:37 UTC"),
            "{e}"
        );
        let ok = open_release(
            "bookworm-security",
            "InRelease",
            &signed,
            &ring,
            1783764997 + 60,
        )
        .unwrap();
        assert_eq!(ok.valid_until, Some(1783764997 + 7 * 86400));
    }

    #[test]
    fn packages_hash_mismatch_names_index_and_digests() {
        let key = archive_key();
        let signed = sign_with_subkey(&key, &release_text("bookworm", "", b"packages"));
        let r = open_release("bookworm", "InRelease", &signed, &keyring(&[&key]), NOW).unwrap();
        let e = r
            .check_index("main/binary-amd64/Packages.xz", b"packagez")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "bookworm: main/binary-amd64/Packages.xz: sha256 mismatch: InRelease says {}, downloaded {}",
                Digest::of(b"packages"),
                Digest::of(b"packagez")
            )
        );
        let e = r
            .packages_index("main", Arch::Arm64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lists no main/binary-arm64/Packages"), "{e}");
    }

    #[test]
    fn keyring_reads_binary_and_armored() {
        let key = archive_key();
        let public = key.to_public_key();
        let bin = public.to_bytes().unwrap();
        let mut two = bin.clone();
        two.extend(primary_signer().to_public_key().to_bytes().unwrap());
        assert_eq!(
            Keyring::from_bytes(&two, Path::new("k.gpg"))
                .unwrap()
                .fingerprints()
                .len(),
            2
        );
        let armored = public.to_armored_bytes(ArmorOptions::default()).unwrap();
        let ring = Keyring::from_bytes(&armored, Path::new("k.asc")).unwrap();
        assert_eq!(
            ring.fingerprints(),
            [hex::encode(public.primary_key.fingerprint().as_bytes())]
        );
        let e = Keyring::from_bytes(b"nothing", Path::new("bad.gpg"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("keyring bad.gpg: "), "{e}");
        let e = Keyring::load(Path::new("/nonexistent/k.gpg"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("keyring /nonexistent/k.gpg: "), "{e}");
    }

    #[test]
    fn decompresses_xz_and_gz() {
        use std::io::Write;
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(b"Package: a\n").unwrap();
        assert_eq!(
            decompress("s", "x/Packages.xz", &xz.finish().unwrap()).unwrap(),
            "Package: a\n"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"Package: b\n").unwrap();
        assert_eq!(
            decompress("s", "x/Packages.gz", &gz.finish().unwrap()).unwrap(),
            "Package: b\n"
        );
        assert!(decompress("s", "x/Packages.xz", b"garbage")
            .unwrap_err()
            .to_string()
            .starts_with("s: x/Packages.xz: decompressing"));
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1783764997)
        );
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_date("Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(
            parse_date("Sat, 29 Feb 2020 12:00:00 UTC"),
            Some(1582977600)
        );
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(format_epoch(1783764997), "2026-07-11 10:16:37 UTC");
        assert_eq!(format_epoch(1582977600), "2020-02-29 12:00:00 UTC");
    }

    /// The real thing: today's InRelease from the machine's mirror against
    /// Debian's keyring. Skips when there is no apt source, keyring or network.
    #[test]
    fn real_inrelease_verifies_against_the_archive_keyring() {
        let keyring_path = Path::new(crate::debian::DEFAULT_KEYRING);
        let Ok(ring) = Keyring::load(keyring_path) else {
            eprintln!("no {} here; skipping", keyring_path.display());
            return;
        };
        let Ok(mirrors) =
            crate::debian::sources::Mirrors::discover(Path::new("/etc/apt"), Default::default())
        else {
            eprintln!("no apt sources; skipping");
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = Http::new().unwrap();
        for suite in ["bookworm", "bookworm-security"] {
            let Ok(src) = mirrors.suite(suite) else {
                eprintln!("no apt source for {suite}; skipping");
                continue;
            };
            let url = format!("{}/dists/{suite}/InRelease", src.base);
            let fetched = rt.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    http.get_bytes(&url, INRELEASE_LIMIT),
                )
                .await
            });
            let Ok(Ok(bytes)) = fetched else {
                eprintln!("{url} unreachable; skipping");
                continue;
            };
            let r = open_release(suite, &url, &bytes, &ring, now()).unwrap();
            assert!(ring.fingerprints().contains(&r.signer));
            assert!(r
                .files
                .keys()
                .any(|k| k.starts_with("main/binary-amd64/Packages")));
            // The same file twenty years on: every archive key has expired.
            let later = r.epoch + 20 * 365 * 86400;
            let e = open_release(suite, &url, &bytes, &ring, later)
                .unwrap_err()
                .to_string();
            assert!(e.contains("expired"), "{e}");
            let mut tampered = bytes.clone();
            let pos = tampered.windows(6).position(|w| w == b"Date: ").unwrap() + 6;
            tampered[pos] = if tampered[pos] == b'S' { b'M' } else { b'S' };
            assert!(matches!(
                open_release(suite, &url, &tampered, &ring, now()),
                Err(ReleaseError::Signature { .. })
            ));
        }
    }
}
