//! cosign-compatible key files.
//!
//! The private key file is what `cosign generate-key-pair` writes: a PEM
//! block of type `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED
//! COSIGN PRIVATE KEY`) whose body is the JSON of go-securesystemslib's
//! `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64, 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<b64, 24 bytes>"},
//!  "ciphertext":"<b64>"}
//! ```
//!
//! The plaintext is the PKCS#8 DER private key; the secretbox key is
//! scrypt(password, salt, N, r, p, 32). The public key file is a PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo). Keys are ECDSA P-256, cosign's
//! default. Keys made here load in cosign and vice versa, and the password
//! comes from `COSIGN_PASSWORD` like cosign's, so CI setups carry over.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use kiln_seed::attest::PublicKey;
use p256::ecdsa::SigningKey;
use p256::pkcs8::der::pem::LineEnding;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// PEM type cosign writes for new keys.
pub const SIGSTORE_PRIVATE_KEY_PEM: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM type of keys written by older cosign releases (still read).
pub const COSIGN_PRIVATE_KEY_PEM: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The environment variable cosign reads the key password from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The scrypt parameter sets go-securesystemslib accepts (log2 N, r, p):
/// legacy (2^15), standard (2^16, what cosign writes) and OWASP (2^17).
/// Anything else is refused so that a crafted key file cannot make kiln
/// spend unbounded memory and time deriving a key.
const SCRYPT_LEGACY: (u8, u32, u32) = (15, 8, 1);
const SCRYPT_STANDARD: (u8, u32, u32) = (16, 8, 1);
const SCRYPT_OWASP: (u8, u32, u32) = (17, 8, 1);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an encrypted sigstore private key: {found} (expected a PEM block -----BEGIN {SIGSTORE_PRIVATE_KEY_PEM}-----, as `kiln keygen` and `cosign generate-key-pair` write)")]
    NotEncryptedKey { found: String },
    #[error("encrypted private key: {0}")]
    Format(String),
    #[error("encrypted private key uses {what} {name:?}; only scrypt + nacl/secretbox (cosign's format) is supported")]
    Unsupported { what: &'static str, name: String },
    #[error("encrypted private key has unsupported scrypt parameters N={n}, r={r}, p={p} (accepted: N=32768/65536/131072, r=8, p=1)")]
    ScryptParams { n: u64, r: u32, p: u32 },
    #[error("wrong password or corrupted key file: decryption failed")]
    Decrypt,
    #[error("the decrypted private key is not a PKCS#8 ECDSA P-256 key: {0}")]
    NotP256(String),
    #[error("{path}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<KeyError>,
    },
    #[error("{path} already exists; not overwriting a key (pass --force to replace it)")]
    Exists { path: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no password for the private key: set {PASSWORD_ENV} (cosign's variable) or run on a terminal to be prompted")]
    NoPassword,
    #[error("{PASSWORD_ENV} is not valid UTF-8")]
    PasswordNotUtf8,
    #[error("the passwords entered do not match")]
    PasswordMismatch,
    #[error("reading the password from the terminal: {0}")]
    Prompt(std::io::Error),
}

/// A freshly generated key pair, both halves as the PEM text written to disk.
pub struct GeneratedKeys {
    /// The encrypted private key (`ENCRYPTED SIGSTORE PRIVATE KEY`).
    pub private_pem: String,
    /// The public key (`PUBLIC KEY`).
    pub public_pem: String,
    pub public_key: PublicKey,
}

#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Generates an ECDSA P-256 key pair and encrypts the private half with
/// `password` (cosign's standard scrypt parameters).
pub fn generate(password: &[u8]) -> Result<GeneratedKeys, KeyError> {
    let key = SigningKey::random(&mut OsRng);
    let private_pem = encrypt_private(&key, password)?;
    let public_key = PublicKey::from_verifying_key(*key.verifying_key())
        .map_err(|e| KeyError::NotP256(e.to_string()))?;
    Ok(GeneratedKeys {
        private_pem,
        public_pem: public_key.to_pem(),
        public_key,
    })
}

/// The encrypted PEM of `key` (type `ENCRYPTED SIGSTORE PRIVATE KEY`).
pub fn encrypt_private(key: &SigningKey, password: &[u8]) -> Result<String, KeyError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::NotP256(e.to_string()))?;
    let json = encrypt_with(der.as_bytes(), password, SCRYPT_STANDARD)?;
    p256::pkcs8::der::pem::encode_string(SIGSTORE_PRIVATE_KEY_PEM, LineEnding::LF, &json)
        .map_err(|e| KeyError::Format(e.to_string()))
}

/// go-securesystemslib `encrypted.Encrypt`: the JSON document, fields in
/// the order Go writes them.
fn encrypt_with(
    plaintext: &[u8],
    password: &[u8],
    (log_n, r, p): (u8, u32, u32),
) -> Result<Vec<u8>, KeyError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let box_key = derive_key(password, &salt, log_n, r, p)?;
    let ciphertext = XSalsa20Poly1305::new((&*box_key).into())
        .encrypt((&nonce).into(), plaintext)
        .map_err(|_| KeyError::Format("encryption failed".into()))?;
    let doc = EncryptedKey {
        kdf: Kdf {
            name: KDF_SCRYPT.into(),
            params: ScryptParams {
                n: 1u64 << log_n,
                r,
                p,
            },
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_SECRETBOX.into(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(ciphertext),
    };
    Ok(serde_json::to_vec(&doc).expect("the key document serializes"))
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let params =
        scrypt::Params::new(log_n, r, p, KEY_LEN).map_err(|e| KeyError::Format(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &params, out.as_mut())
        .map_err(|e| KeyError::Format(e.to_string()))?;
    Ok(out)
}

/// go-securesystemslib `encrypted.Decrypt`.
fn decrypt_document(json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let doc: EncryptedKey = serde_json::from_slice(json)
        .map_err(|e| KeyError::Format(format!("the PEM body is not the expected JSON: {e}")))?;
    if doc.kdf.name != KDF_SCRYPT {
        return Err(KeyError::Unsupported {
            what: "key derivation",
            name: doc.kdf.name,
        });
    }
    if doc.cipher.name != CIPHER_SECRETBOX {
        return Err(KeyError::Unsupported {
            what: "cipher",
            name: doc.cipher.name,
        });
    }
    let ScryptParams { n, r, p } = doc.kdf.params;
    let log_n = [SCRYPT_LEGACY, SCRYPT_STANDARD, SCRYPT_OWASP]
        .into_iter()
        .find(|&(log_n, pr, pp)| 1u64 << log_n == n && pr == r && pp == p)
        .map(|(log_n, _, _)| log_n)
        .ok_or(KeyError::ScryptParams { n, r, p })?;
    let field = |name: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|e| KeyError::Format(format!("{name} is not valid base64: {e}")))
    };
    let salt = field("kdf.salt", &doc.kdf.salt)?;
    let nonce = field("cipher.nonce", &doc.cipher.nonce)?;
    let ciphertext = field("ciphertext", &doc.ciphertext)?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyError::Format(format!(
            "cipher.nonce is {} bytes, expected {NONCE_LEN}",
            nonce.len()
        )));
    }
    let box_key = derive_key(password, &salt, log_n, r, p)?;
    let plaintext = XSalsa20Poly1305::new((&*box_key).into())
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| KeyError::Decrypt)?;
    Ok(Zeroizing::new(plaintext))
}

/// Finds the first PEM block in `text`: (type, decoded body). Lenient like
/// Go's `pem.Decode` (any line length, CRLF, text around the block, RFC
/// 1421 headers skipped), because cosign reads keys with it.
fn decode_pem(text: &str) -> Option<(String, Vec<u8>)> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_and_end = &rest[label_end + 5..];
    let end = body_and_end.find(&format!("-----END {label}-----"))?;
    let body: String = body_and_end[..end]
        .lines()
        .filter(|l| !l.contains(':'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let bytes = STANDARD.decode(body).ok()?;
    Some((label.to_string(), bytes))
}

/// Decrypts an encrypted cosign/sigstore private key.
pub fn load_private(pem: &str, password: &[u8]) -> Result<SigningKey, KeyError> {
    let (label, body) = decode_pem(pem).ok_or_else(|| KeyError::NotEncryptedKey {
        found: "no PEM block".into(),
    })?;
    if label != SIGSTORE_PRIVATE_KEY_PEM && label != COSIGN_PRIVATE_KEY_PEM {
        let hint = if label.contains("PRIVATE KEY") {
            ", which is not encrypted; kiln only reads encrypted keys"
        } else {
            ""
        };
        return Err(KeyError::NotEncryptedKey {
            found: format!("PEM type {label:?}{hint}"),
        });
    }
    let der = decrypt_document(&body, password)?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::NotP256(e.to_string()))
}

/// [`load_private`] from a file; errors name the file.
pub fn load_private_file(path: &Path, password: &[u8]) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    load_private(&text, password).map_err(|e| KeyError::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Reads a PEM public key file (cosign.pub); the verifier has its own
/// loader (`kiln_seed::verify::load_keys`), this one checks keygen's output.
#[cfg(test)]
fn load_public_file(path: &Path) -> Result<PublicKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    PublicKey::from_pem(&text).map_err(|e| KeyError::InFile {
        path: path.to_path_buf(),
        source: Box::new(KeyError::Format(e.to_string())),
    })
}

/// Where a key pair with `prefix` lives: `<prefix>.key`, `<prefix>.pub`.
pub fn key_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = prefix.as_os_str().to_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".key"), with(".pub"))
}

/// Writes the key pair: private key 0600, public key 0644. Each file is
/// written to a temporary file in the same directory, which is created
/// 0600 and gets its final mode before being renamed into place, so the
/// private key is never readable by others, not even briefly, and a
/// failure leaves no partial file. Without `force`, existing files are
/// never replaced (checked up front and again atomically at the rename).
pub fn write_key_pair(
    private_path: &Path,
    public_path: &Path,
    keys: &GeneratedKeys,
    force: bool,
) -> Result<(), KeyError> {
    if !force {
        for p in [private_path, public_path] {
            if p.symlink_metadata().is_ok() {
                return Err(KeyError::Exists {
                    path: p.to_path_buf(),
                });
            }
        }
    }
    // Both files are written in full before either is put in place, and
    // a replaced private key is kept aside until its public half is in
    // place too: a failure leaves the old pair (or nothing) behind, never a
    // new private key with an old public key, nor no key at all.
    let private = prepare_file(private_path, keys.private_pem.as_bytes(), 0o600)?;
    let public = prepare_file(public_path, keys.public_pem.as_bytes(), 0o644)?;
    let kept = if force && private_path.is_file() {
        let aside = private_path.with_file_name(format!(
            ".{}.previous-{}",
            private_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::hard_link(private_path, &aside).map_err(|source| KeyError::Io {
            what: "keeping the previous key aside",
            path: private_path.to_path_buf(),
            source,
        })?;
        Some(aside)
    } else {
        None
    };
    let placed = persist_file(private, private_path, force).and_then(|()| {
        persist_file(public, public_path, force).inspect_err(|_| {
            // Do not leave a private key without its public half behind.
            match &kept {
                Some(aside) => {
                    let _ = std::fs::rename(aside, private_path);
                }
                None => {
                    let _ = std::fs::remove_file(private_path);
                }
            }
        })
    });
    if let Some(aside) = &kept {
        let _ = std::fs::remove_file(aside);
    }
    placed
}

/// `bytes` in a temporary file beside `path` (mode `mode`, synced), ready
/// to be put in place.
fn prepare_file(path: &Path, bytes: &[u8], mode: u32) -> Result<tempfile::NamedTempFile, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &'static str| {
        move |source| KeyError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    // tempfile creates the file 0600 (O_EXCL) whatever the umask.
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-key-")
        .tempfile_in(dir)
        .map_err(io("creating a temporary file for"))?;
    tmp.write_all(bytes).map_err(io("writing"))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("setting permissions of"))?;
    tmp.as_file().sync_all().map_err(io("syncing"))?;
    Ok(tmp)
}

/// Puts a prepared file in place (atomically; over an existing file only
/// when `replace`).
fn persist_file(tmp: tempfile::NamedTempFile, path: &Path, replace: bool) -> Result<(), KeyError> {
    let persisted = if replace {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Io {
                what: "writing",
                path: path.to_path_buf(),
                source: e.error,
            }
        }
    })?;
    Ok(())
}

/// The key password, as cosign gets it: `COSIGN_PASSWORD` when set (even
/// empty), else a prompt on the terminal (twice when `confirm`, for a new
/// key), else an error.
pub fn read_password(confirm: bool) -> Result<Zeroizing<String>, KeyError> {
    password_from(
        std::env::var_os(PASSWORD_ENV),
        std::io::stdin().is_terminal(),
        confirm,
        |prompt| rpassword::prompt_password(prompt),
    )
}

fn password_from(
    env: Option<std::ffi::OsString>,
    tty: bool,
    confirm: bool,
    mut prompt: impl FnMut(&str) -> std::io::Result<String>,
) -> Result<Zeroizing<String>, KeyError> {
    if let Some(v) = env {
        return v
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| KeyError::PasswordNotUtf8);
    }
    if !tty {
        return Err(KeyError::NoPassword);
    }
    let first =
        Zeroizing::new(prompt("Enter password for private key: ").map_err(KeyError::Prompt)?);
    if confirm {
        let again = Zeroizing::new(
            prompt("Enter password for private key again: ").map_err(KeyError::Prompt)?,
        );
        if *first != *again {
            return Err(KeyError::PasswordMismatch);
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_forced_keygen_that_cannot_write_the_public_key_keeps_the_old_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = key_paths(&dir.path().join("cosign"));
        std::fs::write(&private, "the old private key").unwrap();
        // The public key's path cannot be written (a directory is there).
        std::fs::create_dir(&public).unwrap();
        let keys = generate(b"pw").unwrap();
        assert!(write_key_pair(&private, &public, &keys, true).is_err());
        assert_eq!(
            std::fs::read_to_string(&private).unwrap(),
            "the old private key"
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["cosign.key".to_string(), "cosign.pub".to_string()]
        );
        // Where both can be written, both are replaced.
        std::fs::remove_dir(&public).unwrap();
        write_key_pair(&private, &public, &keys, true).unwrap();
        assert_eq!(std::fs::read_to_string(&private).unwrap(), keys.private_pem);
        assert_eq!(std::fs::read_to_string(&public).unwrap(), keys.public_pem);
    }

    // go-securesystemslib encrypted/encrypted_test.go: its known-answer
    // vectors (passphrase "supersecret"), one per accepted parameter set.
    // They were made by Go's scrypt and x/crypto/nacl/secretbox, so
    // decrypting them checks kiln's KDF and cipher against the code cosign
    // uses. These three come from `Marshal`, which encrypts the JSON
    // encoding of the []byte "reallyimportant" (a base64 JSON string).
    const GO_VECTORS: [&str; 3] = [
        r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}"#,
    ];

    /// TestDecrypt's vector: `Encrypt` of the raw bytes.
    const GO_DECRYPT_VECTOR: &str = r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;

    #[test]
    fn decrypts_go_securesystemslib_vectors() {
        assert_eq!(
            decrypt_document(GO_DECRYPT_VECTOR.as_bytes(), b"supersecret")
                .unwrap()
                .as_slice(),
            b"reallyimportant"
        );
        for v in GO_VECTORS {
            assert_eq!(
                decrypt_document(v.as_bytes(), b"supersecret")
                    .unwrap()
                    .as_slice(),
                format!("\"{}\"", STANDARD.encode("reallyimportant")).as_bytes()
            );
        }
        assert!(matches!(
            decrypt_document(GO_VECTORS[0].as_bytes(), b"supersecret!").unwrap_err(),
            KeyError::Decrypt
        ));
    }

    #[test]
    fn refuses_unknown_scrypt_parameters_and_algorithms() {
        // The vector go-securesystemslib uses for "unsupported scrypt parameters".
        let v = r#"{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}"#;
        assert!(matches!(
            decrypt_document(v.as_bytes(), b"supersecret").unwrap_err(),
            KeyError::ScryptParams { n: 99, .. }
        ));
        let v = GO_VECTORS[0].replace("nacl/secretbox", "aes-gcm");
        assert!(matches!(
            decrypt_document(v.as_bytes(), b"x").unwrap_err(),
            KeyError::Unsupported { what: "cipher", .. }
        ));
        let v = GO_VECTORS[0].replace("\"scrypt\"", "\"argon2\"");
        assert!(matches!(
            decrypt_document(v.as_bytes(), b"x").unwrap_err(),
            KeyError::Unsupported {
                what: "key derivation",
                ..
            }
        ));
    }

    #[test]
    fn generated_key_round_trips_and_signs() {
        let keys = generate(b"correct horse").unwrap();
        assert!(keys
            .private_pem
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(keys.private_pem.lines().all(|l| l.len() <= 64));
        assert!(keys.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let (_, body) = decode_pem(&keys.private_pem).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["kdf"]["name"], "scrypt");
        assert_eq!(
            doc["kdf"]["params"],
            serde_json::json!({"N": 65536, "r": 8, "p": 1})
        );
        assert_eq!(
            STANDARD
                .decode(doc["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(doc["cipher"]["name"], "nacl/secretbox");
        assert_eq!(
            STANDARD
                .decode(doc["cipher"]["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            24
        );
        // Go writes the fields in declaration order; so does kiln.
        assert!(String::from_utf8(body)
            .unwrap()
            .starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":""#));

        let key = load_private(&keys.private_pem, b"correct horse").unwrap();
        let sig: p256::ecdsa::Signature = key.sign(b"msg");
        keys.public_key
            .verify(b"msg", sig.to_der().as_bytes())
            .unwrap();
        assert_eq!(
            PublicKey::from_pem(&keys.public_pem).unwrap(),
            keys.public_key
        );

        let err = load_private(&keys.private_pem, b"wrong").unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong password or corrupted key file: decryption failed"
        );
        // The older PEM type is read too.
        let old = keys
            .private_pem
            .replace(SIGSTORE_PRIVATE_KEY_PEM, COSIGN_PRIVATE_KEY_PEM);
        load_private(&old, b"correct horse").unwrap();
    }

    #[test]
    fn non_encrypted_inputs_are_named() {
        let err = load_private(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            b"",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not an encrypted sigstore private key: PEM type \"PUBLIC KEY\""),
            "{err}"
        );
        let err = load_private(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("which is not encrypted"), "{err}");
        let err = load_private("hello", b"").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not an encrypted sigstore private key"),
            "{err}"
        );
    }

    #[test]
    fn tampered_ciphertext_fails_to_decrypt() {
        let keys = generate(b"pw").unwrap();
        let (label, body) = decode_pem(&keys.private_pem).unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut ct = STANDARD
            .decode(doc["ciphertext"].as_str().unwrap())
            .unwrap();
        ct[20] ^= 1;
        doc["ciphertext"] = STANDARD.encode(ct).into();
        let pem = p256::pkcs8::der::pem::encode_string(
            &label,
            LineEnding::LF,
            &serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            load_private(&pem, b"pw").unwrap_err(),
            KeyError::Decrypt
        ));
    }

    #[test]
    fn pem_reader_is_lenient_like_go() {
        let keys = generate(b"").unwrap();
        let crlf = format!("comment\r\n{}\r\n", keys.private_pem.replace('\n', "\r\n"));
        load_private(&crlf, b"").unwrap();
        // One long base64 line instead of 64-column lines.
        let (label, body) = decode_pem(&keys.private_pem).unwrap();
        let one_line = format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(&body)
        );
        load_private(&one_line, b"").unwrap();
    }

    #[test]
    fn files_are_written_with_modes_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = key_paths(&dir.path().join("sub/cosign"));
        assert!(private.ends_with("sub/cosign.key") && public.ends_with("sub/cosign.pub"));
        let keys = generate(b"pw").unwrap();
        write_key_pair(&private, &public, &keys, false).unwrap();
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&public).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            load_private_file(&private, b"pw").unwrap().verifying_key(),
            keys.public_key.verifying_key()
        );
        assert_eq!(load_public_file(&public).unwrap(), keys.public_key);

        let other = generate(b"pw2").unwrap();
        let err = write_key_pair(&private, &public, &other, false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        // Only the public key exists: still refused, and nothing is written.
        std::fs::remove_file(&private).unwrap();
        assert!(matches!(
            write_key_pair(&private, &public, &other, false).unwrap_err(),
            KeyError::Exists { .. }
        ));
        assert!(!private.exists());

        write_key_pair(&private, &public, &other, true).unwrap();
        assert_eq!(load_public_file(&public).unwrap(), other.public_key);
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary files are left behind.
        assert_eq!(
            std::fs::read_dir(private.parent().unwrap())
                .unwrap()
                .count(),
            2
        );

        let err = load_private_file(&private, b"pw").unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            chain.ends_with("cosign.key: wrong password or corrupted key file: decryption failed"),
            "{chain}"
        );
    }

    /// The test tools venv (scripts/tools), if it has what `modules` needs.
    pub(crate) fn venv_python(modules: &str) -> Option<PathBuf> {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".kiln/venv/bin/python");
        let ok = std::process::Command::new(&python)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipping: {} with {modules} is not available (run scripts/tools; pip install pynacl)", python.display());
        }
        ok.then_some(python)
    }

    /// An independent implementation of the cosign / go-securesystemslib
    /// key format: Python's hashlib.scrypt, PyNaCl (libsodium) secretbox
    /// and `cryptography` for PKCS#8 and SPKI.
    const PY_KEYFILE: &str = r#"
import base64, hashlib, json, os, sys, textwrap
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

def derive(password, kdf):
    p = kdf["params"]
    return hashlib.scrypt(password, salt=base64.b64decode(kdf["salt"]), n=p["N"], r=p["r"], p=p["p"], maxmem=2**28, dklen=32)

def spki_pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

mode, password = sys.argv[1], os.environ["COSIGN_PASSWORD"].encode()
if mode == "decrypt":
    text = open(sys.argv[2]).read()
    lines = text.strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", lines[0]
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox"
    box = nacl.secret.SecretBox(derive(password, doc["kdf"]))
    der = box.decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key.curve, ec.SECP256R1)
    sys.stdout.write(spki_pem(key.public_key()))
else:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    kdf = {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": base64.b64encode(os.urandom(32)).decode()}
    nonce = os.urandom(24)
    ct = nacl.secret.SecretBox(derive(password, kdf)).encrypt(der, nonce).ciphertext
    doc = {"kdf": kdf, "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()}, "ciphertext": base64.b64encode(ct).decode()}
    body = "\n".join(textwrap.wrap(base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode(), 64))
    open(sys.argv[2], "w").write("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + body + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    sys.stdout.write(spki_pem(key.public_key()))
"#;

    #[test]
    fn key_files_interoperate_with_an_independent_python_implementation() {
        let Some(python) = venv_python("nacl, cryptography") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let run = |mode: &str, file: &Path| {
            let out = std::process::Command::new(&python)
                .args(["-c", PY_KEYFILE, mode])
                .arg(file)
                .env(PASSWORD_ENV, "s3cret pässword")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "python {mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PublicKey::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap()
        };

        // kiln encrypts, Python decrypts.
        let keys = generate("s3cret pässword".as_bytes()).unwrap();
        let kiln_file = dir.path().join("kiln.key");
        std::fs::write(&kiln_file, &keys.private_pem).unwrap();
        assert_eq!(run("decrypt", &kiln_file), keys.public_key);

        // Python encrypts, kiln decrypts.
        let py_file = dir.path().join("python.key");
        let py_public = run("encrypt", &py_file);
        let key = load_private_file(&py_file, "s3cret pässword".as_bytes()).unwrap();
        assert_eq!(key.verifying_key(), py_public.verifying_key());
        assert!(matches!(
            load_private_file(&py_file, b"other").unwrap_err(),
            KeyError::InFile { .. }
        ));
    }

    #[test]
    fn password_sources() {
        let no_prompt = |_: &str| -> std::io::Result<String> { panic!("must not prompt") };
        assert_eq!(
            password_from(Some("env".into()), true, true, no_prompt)
                .unwrap()
                .as_str(),
            "env"
        );
        // Set but empty is a password, as in cosign.
        assert_eq!(
            password_from(Some("".into()), false, false, no_prompt)
                .unwrap()
                .as_str(),
            ""
        );
        assert!(matches!(
            password_from(None, false, false, no_prompt).unwrap_err(),
            KeyError::NoPassword
        ));
        let mut answers = vec!["b".to_string(), "a".to_string()];
        let err = password_from(None, true, true, |_| Ok(answers.pop().unwrap())).unwrap_err();
        assert!(matches!(err, KeyError::PasswordMismatch));
        let mut answers = vec!["same".to_string(), "same".to_string()];
        assert_eq!(
            password_from(None, true, true, |_| Ok(answers.pop().unwrap()))
                .unwrap()
                .as_str(),
            "same"
        );
    }
}
