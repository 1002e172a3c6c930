//! A Sigstore instance made of keys, for tests: a certificate authority
//! (root and the certificate that issues leaves), a CT log and a Rekor log,
//! the trusted root naming them, and what Fulcio and Rekor would answer.
//! Fulcio and Rekor cannot run in a test; their answers are what these
//! functions make, with the same formats and signatures the public-good
//! instance uses. Compiled only for tests and with the `test-authority`
//! feature (the driver's test Fulcio and Rekor), never into the seed.

use super::sct::Sct;
use super::tlog::{self, der_to_pem, Entry};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::str::FromStr as _;
use std::time::Duration;
use x509_cert::der::asn1::{BitString, Ia5String, OctetString, Utf8StringRef};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, SubjectAltName,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

pub struct TestAuthority {
    pub root_key: SigningKey,
    pub issuing_key: SigningKey,
    pub root_der: Vec<u8>,
    pub issuing_der: Vec<u8>,
    pub ct_key: SigningKey,
    pub rekor_key: SigningKey,
    /// Whether issued certificates get an SCT (off: to test its absence).
    pub with_sct: bool,
}

fn key(seed: u8) -> SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 1;
    SigningKey::from_slice(&bytes).expect("a valid scalar")
}

pub fn spki(key: &VerifyingKey) -> SubjectPublicKeyInfoOwned {
    let der = key.to_public_key_der().expect("encodes");
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).expect("parses")
}

pub fn spki_der(key: &VerifyingKey) -> Vec<u8> {
    key.to_public_key_der()
        .expect("encodes")
        .as_bytes()
        .to_vec()
}

/// sha256 of a key's SPKI: a log's id.
pub fn log_id(key: &VerifyingKey) -> [u8; 32] {
    Sha256::digest(spki_der(key)).into()
}

fn time(unix: i64) -> Time {
    Time::UtcTime(
        x509_cert::der::asn1::UtcTime::from_unix_duration(Duration::from_secs(unix as u64))
            .expect("in range"),
    )
}

fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid.parse().expect("an OID"),
        critical,
        extn_value: OctetString::new(value).expect("fits"),
    }
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: super::ecdsa::ECDSA_WITH_SHA256,
        parameters: None,
    }
}

fn sign_tbs(tbs: TbsCertificate, by: &SigningKey) -> Vec<u8> {
    let sig: DerSignature = by.sign(&tbs.to_der().expect("encodes"));
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(sig.as_bytes()).expect("fits"),
    }
    .to_der()
    .expect("encodes")
}

fn tbs(
    serial: u8,
    issuer: &str,
    subject: &str,
    key: &VerifyingKey,
    from: i64,
    to: i64,
    extensions: Vec<Extension>,
) -> TbsCertificate {
    TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).expect("a serial"),
        signature: ecdsa_sha256(),
        issuer: Name::from_str(issuer).expect("a name"),
        validity: Validity {
            not_before: time(from),
            not_after: time(to),
        },
        // Fulcio leaves have an empty subject: the identity is in the SAN.
        subject: if subject.is_empty() {
            Name::default()
        } else {
            Name::from_str(subject).expect("a name")
        },
        subject_public_key_info: spki(key),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    }
}

/// A key identifier: the first 20 bytes of sha256 of the key (RFC 7093).
fn key_id(key: &VerifyingKey) -> Vec<u8> {
    let spki = spki(key);
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn subject_key_id(key: &VerifyingKey) -> Extension {
    ext(
        "2.5.29.14",
        false,
        OctetString::new(key_id(key))
            .expect("fits")
            .to_der()
            .expect("encodes"),
    )
}

fn authority_key_id(issuer: &VerifyingKey) -> Extension {
    ext(
        "2.5.29.35",
        false,
        AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(key_id(issuer)).expect("fits")),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        }
        .to_der()
        .expect("encodes"),
    )
}

const CA_FROM: i64 = 1_600_000_000; // 2020
const CA_TO: i64 = 2_500_000_000; // 2049

impl TestAuthority {
    /// The authority with keys derived from `seed`: two seeds give two
    /// unrelated instances (an untrusted one for tests).
    pub fn new(seed: u8) -> TestAuthority {
        let root_key = key(seed);
        let issuing_key = key(seed.wrapping_add(1));
        let ca = || {
            ext(
                "2.5.29.19",
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                }
                .to_der()
                .expect("encodes"),
            )
        };
        // keyCertSign and cRLSign.
        let cert_sign = || ext("2.5.29.15", true, vec![0x03, 0x02, 0x01, 0x06]);
        let root_der = sign_tbs(
            tbs(
                1,
                "CN=kiln test root,O=kiln",
                "CN=kiln test root,O=kiln",
                root_key.verifying_key(),
                CA_FROM,
                CA_TO,
                vec![ca(), cert_sign(), subject_key_id(root_key.verifying_key())],
            ),
            &root_key,
        );
        let issuing_der = sign_tbs(
            tbs(
                2,
                "CN=kiln test root,O=kiln",
                "CN=kiln test intermediate,O=kiln",
                issuing_key.verifying_key(),
                CA_FROM,
                CA_TO,
                vec![
                    ca(),
                    cert_sign(),
                    subject_key_id(issuing_key.verifying_key()),
                    authority_key_id(root_key.verifying_key()),
                ],
            ),
            &root_key,
        );
        TestAuthority {
            root_key,
            issuing_key,
            root_der,
            issuing_der,
            ct_key: key(seed.wrapping_add(2)),
            rekor_key: key(seed.wrapping_add(3)),
            with_sct: true,
        }
    }

    /// The trusted root naming this authority, its CT log and its Rekor,
    /// with `rekor_url` as the log's base URL.
    pub fn trusted_root_json(&self, fulcio_url: &str, rekor_url: &str) -> String {
        let log = |k: &SigningKey, url: &str| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STANDARD.encode(spki_der(k.verifying_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"}
                },
                "logId": {"keyId": STANDARD.encode(log_id(k.verifying_key()))}
            })
        };
        serde_json::to_string_pretty(&json!({
            "mediaType": super::trustroot::TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log(&self.rekor_key, rekor_url)],
            "certificateAuthorities": [{
                "subject": {"organization": "kiln", "commonName": "kiln test root"},
                "uri": fulcio_url,
                "certChain": {"certificates": [
                    {"rawBytes": STANDARD.encode(&self.issuing_der)},
                    {"rawBytes": STANDARD.encode(&self.root_der)}
                ]},
                "validFor": {"start": "2020-01-01T00:00:00Z"}
            }],
            "ctlogs": [log(&self.ct_key, "https://ct.invalid")],
            "timestampAuthorities": []
        }))
        .expect("serializes")
    }

    /// A Fulcio leaf for `public_key`, naming `identity` (a URI or an
    /// e-mail address) issued by `oidc_issuer`, valid for ten minutes from
    /// `from`, with an SCT from the CT log.
    pub fn issue(
        &self,
        public_key: &VerifyingKey,
        identity: &str,
        oidc_issuer: &str,
        from: i64,
    ) -> Vec<u8> {
        let name = if identity.contains('@') && !identity.contains("://") {
            GeneralName::Rfc822Name(Ia5String::new(identity).expect("ASCII"))
        } else {
            GeneralName::UniformResourceIdentifier(Ia5String::new(identity).expect("ASCII"))
        };
        let mut extensions = vec![
            ext("2.5.29.15", true, vec![0x03, 0x02, 0x07, 0x80]), // digitalSignature
            subject_key_id(public_key),
            authority_key_id(self.issuing_key.verifying_key()),
            ext(
                "2.5.29.37",
                false,
                ExtendedKeyUsage(vec!["1.3.6.1.5.5.7.3.3".parse().expect("OID")])
                    .to_der()
                    .expect("encodes"),
            ),
            ext(
                "2.5.29.17",
                true,
                SubjectAltName(vec![name]).to_der().expect("encodes"),
            ),
            // The issuer, as Fulcio writes it twice: raw (deprecated, still
            // what some verifiers read) and as a DER UTF8String.
            ext(
                "1.3.6.1.4.1.57264.1.1",
                false,
                oidc_issuer.as_bytes().to_vec(),
            ),
            ext(
                "1.3.6.1.4.1.57264.1.8",
                false,
                Utf8StringRef::new(oidc_issuer)
                    .expect("UTF-8")
                    .to_der()
                    .expect("encodes"),
            ),
        ];
        let issuer = "CN=kiln test intermediate,O=kiln";
        let pre = tbs(
            3,
            issuer,
            "",
            public_key,
            from,
            from + 600,
            extensions.clone(),
        );
        if self.with_sct {
            let mut sct = Sct {
                log_id: log_id(self.ct_key.verifying_key()).to_vec(),
                timestamp_ms: (from as u64) * 1000 + 1,
                extensions: vec![],
                signature: vec![],
            };
            let issuer_key_hash: [u8; 32] =
                Sha256::digest(spki_der(self.issuing_key.verifying_key())).into();
            let signed = sct.precert_signed_data(&issuer_key_hash, &pre.to_der().expect("encodes"));
            let sig: DerSignature = self.ct_key.sign(&signed);
            sct.signature = sig.as_bytes().to_vec();
            extensions.push(ext(
                "1.3.6.1.4.1.11129.2.4.2",
                false,
                OctetString::new(Sct::encode_list(&[sct]))
                    .expect("fits")
                    .to_der()
                    .expect("encodes"),
            ));
        }
        sign_tbs(
            tbs(3, issuer, "", public_key, from, from + 600, extensions),
            &self.issuing_key,
        )
    }

    /// Rekor's answer for `body` logged as entry `index` at `integrated_time`:
    /// a signed entry timestamp, and an inclusion proof in a tree of
    /// `index + 1` leaves (the earlier ones made up) with a signed
    /// checkpoint.
    pub fn log(&self, body: &[u8], index: u64, integrated_time: i64) -> Entry {
        let log_id = log_id(self.rekor_key.verifying_key());
        let body_b64 = STANDARD.encode(body);
        let set_payload = tlog::set_payload(&body_b64, integrated_time, &log_id, index as i64);
        let set: DerSignature = self.rekor_key.sign(&set_payload);
        // The tree: leaves 0..index hash "filler <i>", then this entry.
        let mut level: Vec<[u8; 32]> = (0..index)
            .map(|i| tlog::leaf_hash(format!("filler {i}").as_bytes()))
            .chain([tlog::leaf_hash(body)])
            .collect();
        let size = level.len() as u64;
        let (mut idx, mut proof) = (index as usize, Vec::new());
        while level.len() > 1 {
            let sibling = idx ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            level = level
                .chunks(2)
                .map(|c| {
                    if c.len() == 2 {
                        tlog::node_hash(&c[0], &c[1])
                    } else {
                        c[0]
                    }
                })
                .collect();
            idx /= 2;
        }
        let root = level[0];
        let note = format!("rekor.kiln.test - 1\n{size}\n{}\n", STANDARD.encode(root));
        let sig: DerSignature = self.rekor_key.sign(note.as_bytes());
        let mut hinted = log_id[..4].to_vec();
        hinted.extend_from_slice(sig.as_bytes());
        let checkpoint = format!(
            "{note}\n\u{2014} rekor.kiln.test {}\n",
            STANDARD.encode(hinted)
        );
        let kind = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            Some((
                v["kind"].as_str()?.to_string(),
                v["apiVersion"].as_str()?.to_string(),
            ))
        });
        Entry {
            log_index: json!(index.to_string()),
            log_id: tlog::LogId {
                key_id: STANDARD.encode(log_id),
            },
            kind_version: kind.map(|(kind, version)| tlog::KindVersion { kind, version }),
            integrated_time: json!(integrated_time.to_string()),
            inclusion_promise: Some(tlog::InclusionPromise {
                signed_entry_timestamp: STANDARD.encode(set.as_bytes()),
            }),
            inclusion_proof: Some(tlog::InclusionProof {
                log_index: json!(index.to_string()),
                root_hash: STANDARD.encode(root),
                tree_size: json!(size.to_string()),
                hashes: proof.iter().map(|h| STANDARD.encode(h)).collect(),
                checkpoint: Some(tlog::Checkpoint {
                    envelope: checkpoint,
                }),
            }),
            canonicalized_body: body_b64,
        }
    }
}

/// The body Rekor logs for a signature over content with digest `sha256`.
pub fn hashedrekord_body(sha256: &[u8; 32], signature: &[u8], certificate: &[u8]) -> Vec<u8> {
    crate::json::canonical(&json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(sha256)}},
            "signature": {
                "content": STANDARD.encode(signature),
                "publicKey": {"content": STANDARD.encode(der_to_pem(certificate))}
            }
        }
    }))
}

/// The body Rekor logs for a DSSE envelope over `payload` signed with
/// `signature`, proposed as the JSON text `envelope` (whose sha256 Rekor
/// records; verifiers do not have that text and do not check it).
pub fn dsse_body(envelope: &[u8], payload: &[u8], signature: &[u8], certificate: &[u8]) -> Vec<u8> {
    crate::json::canonical(&json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(envelope))},
            "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))},
            "signatures": [{
                "signature": STANDARD.encode(signature),
                "verifier": STANDARD.encode(der_to_pem(certificate))
            }]
        }
    }))
}
