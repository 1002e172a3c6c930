//! Signing, driver side: cosign-compatible image signatures (simple
//! signing), DSSE-signed in-toto statements, and Sigstore bundles around
//! both. The formats and their verification live in `kiln_seed::attest`
//! (the pinned verifier); this module only produces them.
//!
//! The private key stays in the driver (the build's control plane); the
//! sandboxed build steps never see it (SLSA Build L3).

use crate::keys::{self, KeyError};
use kiln_seed::attest::bundle::{Bundle, VerificationMaterial};
use kiln_seed::attest::keyless::Entry;
use kiln_seed::attest::simplesigning::SimpleSigning;
use kiln_seed::attest::{Envelope, PublicKey, Statement, IN_TOTO_PAYLOAD_TYPE};
use kiln_seed::digest::Digest;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("keyless signing: {url}: {message}")]
    Keyless { url: String, message: String },
    #[error("keyless signing needs an OIDC identity token: set SIGSTORE_ID_TOKEN (or pass --identity-token), or run in GitHub Actions with `permissions: id-token: write`; to sign with a key instead: `kiln keygen`, then --key cosign.key")]
    NoIdentityToken,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signing failed: {0}")]
    Signature(String),
}

/// Who a verifier should believe signed: what goes into a bundle's
/// `verificationMaterial`.
#[derive(Clone, Debug)]
pub enum SignerIdentity {
    /// A key pair; the public key reaches verifiers out of band (cosign.pub).
    Key(PublicKey),
    /// Keyless: a Fulcio certificate chain (DER, leaf first) binding the
    /// signing key to an OIDC identity (`subject`, e.g. a CI workflow URI,
    /// issued by `issuer`), plus Rekor entries (protobuf JSON) proving the
    /// signature was logged while the certificate was valid.
    Certificate {
        chain_der: Vec<Vec<u8>>,
        subject: String,
        issuer: String,
        tlog_entries: Vec<Value>,
    },
}

impl SignerIdentity {
    pub fn verification_material(&self) -> VerificationMaterial {
        match self {
            SignerIdentity::Key(key) => VerificationMaterial::public_key(key),
            SignerIdentity::Certificate {
                chain_der,
                tlog_entries,
                ..
            } => {
                let mut m = VerificationMaterial::certificate(
                    chain_der.first().map(Vec::as_slice).unwrap_or_default(),
                );
                m.tlog_entries = tlog_entries.clone();
                m
            }
        }
    }

    /// The DSSE `keyid` hint: the key id of a key, empty for a certificate
    /// (cosign leaves it empty; the certificate identifies the signer).
    pub fn key_hint(&self) -> String {
        match self {
            SignerIdentity::Key(key) => key.key_id(),
            SignerIdentity::Certificate { .. } => String::new(),
        }
    }
}

/// Something that signs bytes with ECDSA P-256 / SHA-256 and returns an
/// ASN.1 DER signature (what cosign writes).
pub trait Signer {
    fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, SignError>;
    /// The public key as PEM `PUBLIC KEY` (cosign.pub).
    fn public_key_pem(&self) -> Result<String, SignError>;
    fn identity(&self) -> Result<SignerIdentity, SignError>;
    /// Keyless: records a signature over `artifact` in the transparency
    /// log and returns the entry. None for a key (nothing is logged).
    fn log_signature(
        &self,
        _artifact: &[u8],
        _signature: &[u8],
    ) -> Result<Option<Entry>, SignError> {
        Ok(None)
    }
    /// Keyless: records a signed DSSE envelope in the transparency log.
    fn log_envelope(&self, _envelope: &Envelope) -> Result<Option<Entry>, SignError> {
        Ok(None)
    }
}

/// Signs with a private key from a cosign-format key file.
pub struct KeyFileSigner {
    key: SigningKey,
    public: PublicKey,
}

impl KeyFileSigner {
    pub fn new(key: SigningKey) -> Result<KeyFileSigner, SignError> {
        let public = PublicKey::from_verifying_key(*key.verifying_key())
            .map_err(|e| SignError::Signature(e.to_string()))?;
        Ok(KeyFileSigner { key, public })
    }

    /// Decrypts `path` (an `ENCRYPTED SIGSTORE PRIVATE KEY`) with `password`.
    pub fn from_file(path: &Path, password: &[u8]) -> Result<KeyFileSigner, SignError> {
        KeyFileSigner::new(keys::load_private_file(path, password)?)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

impl Signer for KeyFileSigner {
    fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, SignError> {
        // RFC 6979 deterministic nonces: no RNG needed, same signature for
        // the same key and bytes.
        let sig: p256::ecdsa::Signature = self
            .key
            .try_sign(bytes)
            .map_err(|e| SignError::Signature(e.to_string()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn public_key_pem(&self) -> Result<String, SignError> {
        Ok(self.public.to_pem())
    }

    fn identity(&self) -> Result<SignerIdentity, SignError> {
        Ok(SignerIdentity::Key(self.public.clone()))
    }
}

/// A signed simple-signing payload: what goes into a cosign `.sig` layer
/// (the payload as the blob, the base64 signature as the
/// `dev.cosignproject.cosign/signature` annotation).
#[derive(Clone, Debug)]
pub struct ImageSignature {
    pub payload: Vec<u8>,
    /// ASN.1 DER.
    pub signature: Vec<u8>,
}

impl ImageSignature {
    pub fn signature_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&self.signature)
    }
}

/// Signs the cosign simple-signing payload for (docker reference, manifest digest).
pub fn sign_image(
    signer: &dyn Signer,
    docker_reference: &str,
    manifest_digest: &Digest,
    optional: Option<BTreeMap<String, Value>>,
) -> Result<ImageSignature, SignError> {
    let payload = SimpleSigning::new(docker_reference, manifest_digest, optional).to_json();
    let signature = signer.sign(&payload)?;
    Ok(ImageSignature { payload, signature })
}

/// A DSSE envelope around `payload`, signed over PAE(payload_type, payload).
pub fn sign_envelope(
    signer: &dyn Signer,
    payload_type: &str,
    payload: &[u8],
) -> Result<Envelope, SignError> {
    let mut env = Envelope::unsigned(payload_type, payload);
    let sig = signer.sign(&kiln_seed::attest::pae(payload_type, payload))?;
    env.add_signature(&signer.identity()?.key_hint(), &sig);
    Ok(env)
}

/// A statement (deterministic JSON) in a signed DSSE envelope of payload
/// type `application/vnd.in-toto+json`: a cosign `.att` layer.
pub fn sign_statement(signer: &dyn Signer, statement: &Statement) -> Result<Envelope, SignError> {
    sign_envelope(signer, IN_TOTO_PAYLOAD_TYPE, &statement.to_json())
}

/// A Sigstore bundle for an existing signature over `artifact` (e.g. the
/// simple-signing payload, so one signature serves both the `.sig` tag and
/// the referrer). kiln stores image signatures as DSSE bundles; this form
/// is read by the verifier, and its tests make it.
#[cfg(test)]
fn message_signature_bundle(
    signer: &dyn Signer,
    artifact: &[u8],
    signature: &[u8],
) -> Result<Bundle, SignError> {
    Ok(Bundle::message_signature(
        signer.identity()?.verification_material(),
        artifact,
        signature,
    ))
}

/// A Sigstore bundle around a signed DSSE envelope (an attestation
/// referrer), with the envelope's transparency-log entry when the signer
/// logs (keyless).
pub fn dsse_bundle(
    signer: &dyn Signer,
    envelope: Envelope,
    entry: Option<&Entry>,
) -> Result<Bundle, SignError> {
    let mut material = signer.identity()?.verification_material();
    if let Some(e) = entry {
        material
            .tlog_entries
            .push(serde_json::to_value(e).map_err(|e| SignError::Signature(e.to_string()))?);
    }
    Ok(Bundle::dsse(material, envelope))
}

/// The image signature the way cosign 3 stores it as a referrer: a
/// bundle with a DSSE envelope around a statement of predicate type
/// `https://sigstore.dev/cosign/sign/v1` whose subject is the manifest.
pub fn sign_image_bundle(
    signer: &dyn Signer,
    name: &str,
    manifest_digest: &Digest,
) -> Result<Bundle, SignError> {
    let env = sign_statement(signer, &Statement::cosign_sign(name, manifest_digest))?;
    let entry = signer.log_envelope(&env)?;
    dsse_bundle(signer, env, entry.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_seed::attest::statement::SLSA_PROVENANCE_V1;
    use kiln_seed::attest::{dsse, simplesigning, ResourceDescriptor};
    use std::process::Command;

    fn signer() -> KeyFileSigner {
        KeyFileSigner::new(SigningKey::from_slice(&[0x42; 32]).unwrap()).unwrap()
    }

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn image_signature_verifies_with_the_seed_verifier() {
        let s = signer();
        let sig = sign_image(&s, "127.0.0.1:5000/kiln/scratch-plus", &d(1), None).unwrap();
        let doc = simplesigning::verify(
            &sig.payload,
            &sig.signature_base64(),
            &d(1),
            &[s.public_key().clone()],
        )
        .unwrap();
        assert_eq!(
            doc.critical.identity.docker_reference,
            "127.0.0.1:5000/kiln/scratch-plus"
        );
        let err = simplesigning::verify(
            &sig.payload,
            &sig.signature_base64(),
            &d(2),
            &[s.public_key().clone()],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("signature payload is for {}, not {}", d(1), d(2))
        );
    }

    #[test]
    fn statement_envelope_and_bundles_verify() {
        let s = signer();
        let st = Statement::new(
            vec![ResourceDescriptor::subject("x", &d(3))],
            SLSA_PROVENANCE_V1,
            serde_json::json!({}),
        );
        let env = sign_statement(&s, &st).unwrap();
        assert_eq!(env.signatures[0].keyid, s.public_key().key_id());
        let v = dsse::verify_as(&env, IN_TOTO_PAYLOAD_TYPE, &[s.public_key().clone()]).unwrap();
        assert_eq!(Statement::from_verified(&v).unwrap(), st);

        let b = Bundle::from_json(&dsse_bundle(&s, env, None).unwrap().to_json()).unwrap();
        b.verify_dsse(&[s.public_key().clone()]).unwrap();
        assert_eq!(
            b.verification_material.public_key.as_ref().unwrap().hint,
            s.public_key().bundle_hint()
        );

        let sig = sign_image(&s, "r", &d(4), None).unwrap();
        let b = message_signature_bundle(&s, &sig.payload, &sig.signature).unwrap();
        b.verify_message_signature(&sig.payload, &[s.public_key().clone()])
            .unwrap();

        let b = sign_image_bundle(&s, "r", &d(5)).unwrap();
        let st =
            Statement::from_verified(&b.verify_dsse(&[s.public_key().clone()]).unwrap()).unwrap();
        st.subjects_match(&[("r", d(5))]).unwrap();
    }

    #[test]
    fn certificate_identity_fills_the_bundle_seam() {
        let id = SignerIdentity::Certificate {
            chain_der: vec![vec![1, 2, 3], vec![4]],
            subject: "https://github.com/o/r/.github/workflows/release.yml@refs/heads/main".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            tlog_entries: vec![serde_json::json!({"logIndex": "1"})],
        };
        let m = id.verification_material();
        assert_eq!(m.certificate.unwrap().raw_bytes, "AQID");
        assert_eq!(m.tlog_entries.len(), 1);
        assert_eq!(id.key_hint(), "");
    }

    /// python-securesystemslib's DSSE implementation verifies kiln's
    /// envelopes, rejects a tampered one, and signs an envelope kiln's
    /// verifier accepts. (securesystemslib matches signatures to keys by
    /// keyid, so the Python key is given kiln's key id.)
    const PY_DSSE: &str = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey
from securesystemslib.exceptions import VerificationError

mode, keyid = sys.argv[1], sys.argv[3]
if mode == "verify":
    pub = SSlibKey.from_crypto(load_pem_public_key(open(sys.argv[2], "rb").read()), keyid=keyid, scheme="ecdsa-sha2-nistp256")
    env = Envelope.from_dict(json.load(sys.stdin))
    try:
        env.verify([pub], 1)
    except VerificationError as e:
        print("REJECTED", e)
        sys.exit(3)
    print(env.payload_type)
    sys.stdout.flush()
    sys.stdout.buffer.write(env.payload)
else:
    priv = load_pem_private_key(open(sys.argv[2], "rb").read(), password=None)
    pub = SSlibKey.from_crypto(priv.public_key(), keyid=keyid, scheme="ecdsa-sha2-nistp256")
    env = Envelope(sys.stdin.buffer.read(), "application/vnd.in-toto+json", {})
    env.sign(CryptoSigner(priv, pub))
    json.dump(env.to_dict(), sys.stdout)
"#;

    fn run_python(python: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write as _;
        let mut child = Command::new(python)
            .args(["-c", PY_DSSE])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn securesystemslib_interoperates_on_dsse() {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".kiln/venv/bin/python");
        let ok = Command::new(&python)
            .args(["-c", "import securesystemslib.dsse, cryptography"])
            .output();
        if !ok.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipping: securesystemslib is not installed in {} (run scripts/tools)",
                python.display()
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let key_id = s.public_key().key_id();
        let public = dir.path().join("cosign.pub");
        std::fs::write(&public, s.public_key_pem().unwrap()).unwrap();
        let st = Statement::provenance(&[("scratch-plus", d(8))], &serde_json::from_value(serde_json::json!({
            "buildDefinition": {"buildType": "https://kiln.example/b", "externalParameters": {"image": "scratch-plus"}},
            "runDetails": {"builder": {"id": "https://kiln.example/local"}}
        })).unwrap());
        let env = sign_statement(&s, &st).unwrap();

        // kiln signs, Python verifies.
        let out = run_python(
            &python,
            &["verify", public.to_str().unwrap(), &key_id],
            &env.to_json(),
        );
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = out.stdout;
        let (ptype, payload) = stdout.split_at(stdout.iter().position(|&b| b == b'\n').unwrap());
        assert_eq!(ptype, IN_TOTO_PAYLOAD_TYPE.as_bytes());
        assert_eq!(&payload[1..], st.to_json().as_slice());

        // A tampered envelope is rejected by Python too.
        let mut tampered = env.clone();
        tampered.payload = {
            use base64::Engine as _;
            let mut p = tampered.payload_bytes().unwrap();
            p[10] ^= 1;
            base64::engine::general_purpose::STANDARD.encode(p)
        };
        let out = run_python(
            &python,
            &["verify", public.to_str().unwrap(), &key_id],
            &tampered.to_json(),
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Python signs, kiln verifies.
        use p256::pkcs8::EncodePrivateKey as _;
        let private = dir.path().join("key.pem");
        std::fs::write(
            &private,
            s.key
                .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let out = run_python(
            &python,
            &["sign", private.to_str().unwrap(), &key_id],
            &st.to_json(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py_env = Envelope::from_json(&out.stdout).unwrap();
        let v = dsse::verify_as(&py_env, IN_TOTO_PAYLOAD_TYPE, &[s.public_key().clone()]).unwrap();
        assert_eq!(Statement::from_verified(&v).unwrap(), st);
        assert!(dsse::verify(
            &py_env,
            &[
                KeyFileSigner::new(SigningKey::from_slice(&[7; 32]).unwrap())
                    .unwrap()
                    .public_key()
                    .clone()
            ]
        )
        .is_err());
    }

    /// The Python models generated from sigstore's protobuf-specs read
    /// kiln's bundles field for field: a round trip through them (which
    /// drops unknown fields) gives back the same JSON.
    #[test]
    fn bundles_round_trip_through_sigstore_protobuf_specs() {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".kiln/venv/bin/python");
        let check = "import json, sys\nfrom sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle\nfor b in json.load(sys.stdin):\n    back = Bundle.from_dict(b).to_dict()\n    assert back == b, (back, b)\nprint('ok')\n";
        let ok = Command::new(&python)
            .args(["-c", "import sigstore_protobuf_specs"])
            .output();
        if !ok.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipping: sigstore-protobuf-specs is not installed in {}",
                python.display()
            );
            return;
        }
        let s = signer();
        let sig = sign_image(&s, "r", &d(1), None).unwrap();
        let bundles: Vec<Value> = [
            message_signature_bundle(&s, &sig.payload, &sig.signature).unwrap(),
            sign_image_bundle(&s, "r", &d(1)).unwrap(),
        ]
        .iter()
        .map(|b| serde_json::from_slice(&b.to_json()).unwrap())
        .collect();
        let mut child = Command::new(&python)
            .args(["-c", check])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(&serde_json::to_vec(&bundles).unwrap())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `openssl dgst -sha256 -verify cosign.pub -signature sig.der payload`
    /// accepts kiln's signatures (and rejects a tampered payload).
    #[test]
    fn openssl_verifies_kiln_signatures() {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("skipping: openssl is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = keys::generate(b"pw").unwrap();
        let s = KeyFileSigner::new(keys::load_private(&keys.private_pem, b"pw").unwrap()).unwrap();
        let sig = sign_image(&s, "127.0.0.1:5000/kiln/scratch-plus", &d(7), None).unwrap();
        std::fs::write(dir.path().join("cosign.pub"), &keys.public_pem).unwrap();
        std::fs::write(dir.path().join("sig.der"), &sig.signature).unwrap();
        std::fs::write(dir.path().join("payload"), &sig.payload).unwrap();
        let mut tampered = sig.payload.clone();
        tampered[0] = b' ';
        std::fs::write(dir.path().join("tampered"), &tampered).unwrap();
        let verify = |file: &str| {
            Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    "cosign.pub",
                    "-signature",
                    "sig.der",
                    file,
                ])
                .current_dir(dir.path())
                .output()
                .unwrap()
        };
        let ok = verify("payload");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "Verified OK");
        assert!(!verify("tampered").status.success());
    }
}
