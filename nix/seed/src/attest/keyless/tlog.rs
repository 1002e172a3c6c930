//! Rekor (v1) transparency-log entries, as a Sigstore bundle carries them
//! (`TransparencyLogEntry`, protobuf JSON) and as cosign's legacy `.sig`
//! tags carry them (the `dev.sigstore.cosign/bundle` annotation): the
//! signed entry timestamp, the RFC 6962 inclusion proof and its signed
//! checkpoint, and whether the logged body is this signature by this
//! certificate over this content.

use super::ecdsa::Hash;
use super::trustroot::{Log, TrustedRoot};
use super::KeylessError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// What the log entry must record.
#[derive(Clone, Copy, Debug)]
pub enum Logged<'a> {
    /// `hashedrekord`: `signature` over content whose sha256 is `sha256`.
    Artifact {
        sha256: &'a [u8; 32],
        signature: &'a [u8],
    },
    /// `dsse` or `intoto`: an envelope over `payload` carrying `signature`.
    Envelope {
        payload: &'a [u8],
        signature: &'a [u8],
    },
}

/// A `TransparencyLogEntry` (protobuf JSON; 64-bit integers may be strings).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(default)]
    pub log_index: Value,
    pub log_id: LogId,
    #[serde(default)]
    pub kind_version: Option<KindVersion>,
    #[serde(default)]
    pub integrated_time: Value,
    #[serde(default)]
    pub inclusion_promise: Option<InclusionPromise>,
    #[serde(default)]
    pub inclusion_proof: Option<InclusionProof>,
    pub canonicalized_body: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogId {
    pub key_id: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct KindVersion {
    pub kind: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionPromise {
    pub signed_entry_timestamp: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub log_index: Value,
    pub root_hash: String,
    pub tree_size: Value,
    #[serde(default)]
    pub hashes: Vec<String>,
    #[serde(default)]
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Checkpoint {
    pub envelope: String,
}

/// What a verified entry proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub log_url: String,
    pub log_index: i64,
    /// When the log recorded the entry (Unix seconds): the time the
    /// certificate must have been valid at.
    pub integrated_time: i64,
}

fn int(v: &Value, field: &str) -> Result<i64, KeylessError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| KeylessError::Tlog(format!("{field} is not an integer")))
}

fn b64(s: &str, field: &str) -> Result<Vec<u8>, KeylessError> {
    STANDARD
        .decode(s.trim())
        .map_err(|e| KeylessError::Tlog(format!("{field} is not base64: {e}")))
}

/// The DER bytes of the first PEM block in `pem`.
pub fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    STANDARD.decode(body.trim()).ok()
}

/// The PEM form of a DER certificate, as Rekor records it.
pub fn der_to_pem(der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The payload a signed entry timestamp signs: Rekor's canonical JSON.
pub fn set_payload(body_b64: &str, integrated_time: i64, log_id: &[u8], log_index: i64) -> Vec<u8> {
    crate::json::canonical(&serde_json::json!({
        "body": body_b64,
        "integratedTime": integrated_time,
        "logID": hex::encode(log_id),
        "logIndex": log_index,
    }))
}

/// RFC 6962 leaf and node hashes.
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

pub fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or `None`
/// when the proof has the wrong length for `index` in a tree of `size`.
pub fn root_from_proof(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Verifies a signed note (a checkpoint): one of its signatures, with the
/// key hint of `log`, verifies with `log`'s key. Returns its tree size
/// and root hash.
fn verify_checkpoint(envelope: &str, log: &Log) -> Result<(u64, Vec<u8>), KeylessError> {
    let bad = |why: &str| KeylessError::Tlog(format!("the checkpoint {why}"));
    let (text, signatures) = envelope
        .split_once("\n\n")
        .ok_or_else(|| bad("has no signature block"))?;
    let signed = format!("{text}\n");
    let mut lines = text.lines();
    let (_origin, size, root) = (lines.next(), lines.next(), lines.next());
    let size: u64 = size
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("has no tree size"))?;
    let root = root
        .and_then(|r| STANDARD.decode(r).ok())
        .ok_or_else(|| bad("has no root hash"))?;
    let key = log
        .key
        .as_ref()
        .ok_or_else(|| bad("is from a log whose key kiln cannot use"))?;
    let verified = signatures.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((_, sig)) = rest.rsplit_once(' ') else {
            return false;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        sig.len() > 4
            && log.log_id.starts_with(&sig[..4])
            && key.verify(signed.as_bytes(), &sig[4..], Hash::Sha256)
    });
    if !verified {
        return Err(bad(&format!("is not signed by {}", log.base_url)));
    }
    Ok((size, root))
}

impl Entry {
    /// A legacy cosign `dev.sigstore.cosign/bundle` annotation:
    /// `{"SignedEntryTimestamp": b64, "Payload": {"body", "integratedTime",
    /// "logIndex", "logID"}}` (an entry with a promise and no proof).
    pub fn from_cosign_bundle(annotation: &str) -> Result<Entry, KeylessError> {
        let v: Value = serde_json::from_str(annotation)
            .map_err(|e| KeylessError::Tlog(format!("the cosign bundle annotation: {e}")))?;
        let p = &v["Payload"];
        let s = |x: &Value, f: &str| {
            x.as_str()
                .map(String::from)
                .ok_or_else(|| KeylessError::Tlog(format!("the cosign bundle has no {f}")))
        };
        let log_id = hex::decode(s(&p["logID"], "Payload.logID")?)
            .map_err(|e| KeylessError::Tlog(format!("Payload.logID is not hex: {e}")))?;
        Ok(Entry {
            log_index: p["logIndex"].clone(),
            log_id: LogId {
                key_id: STANDARD.encode(log_id),
            },
            kind_version: None,
            integrated_time: p["integratedTime"].clone(),
            inclusion_promise: Some(InclusionPromise {
                signed_entry_timestamp: s(&v["SignedEntryTimestamp"], "SignedEntryTimestamp")?,
            }),
            inclusion_proof: None,
            canonicalized_body: s(&p["body"], "Payload.body")?,
        })
    }

    /// The legacy cosign annotation form of the entry (its promise only).
    pub fn to_cosign_bundle(&self) -> Result<String, KeylessError> {
        let promise = self
            .inclusion_promise
            .as_ref()
            .ok_or_else(|| KeylessError::Tlog("the entry has no signed entry timestamp".into()))?;
        Ok(
            String::from_utf8(crate::json::canonical(&serde_json::json!({
                "SignedEntryTimestamp": promise.signed_entry_timestamp,
                "Payload": {
                    "body": self.canonicalized_body,
                    "integratedTime": int(&self.integrated_time, "integratedTime")?,
                    "logIndex": int(&self.log_index, "logIndex")?,
                    "logID": hex::encode(b64(&self.log_id.key_id, "logId.keyId")?),
                }
            })))
            .unwrap_or_default(),
        )
    }

    /// An entry as Rekor's v1 API returns it (`POST /api/v1/log/entries`:
    /// `{uuid: {body, integratedTime, logID, logIndex, verification}}`,
    /// hashes in hex) in the bundle's form (base64).
    pub fn from_rekor_response(response: &Value) -> Result<Entry, KeylessError> {
        let bad = |what: &str| KeylessError::Tlog(format!("Rekor's answer has no {what}"));
        let (_, e) = response
            .as_object()
            .and_then(|m| m.iter().next())
            .ok_or_else(|| bad("entry"))?;
        let hex_to_b64 = |v: &Value, what: &str| -> Result<String, KeylessError> {
            let h = v.as_str().ok_or_else(|| bad(what))?;
            let bytes = hex::decode(h)
                .map_err(|err| KeylessError::Tlog(format!("Rekor's {what} is not hex: {err}")))?;
            Ok(STANDARD.encode(bytes))
        };
        // protobuf JSON writes 64-bit integers as strings.
        let int64 = |v: &Value, what: &str| int(v, what).map(|n| Value::String(n.to_string()));
        let body = e["body"].as_str().ok_or_else(|| bad("body"))?.to_string();
        let kind = b64(&body, "body")
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| {
                Some(KindVersion {
                    kind: v["kind"].as_str()?.to_string(),
                    version: v["apiVersion"].as_str()?.to_string(),
                })
            });
        let v = &e["verification"];
        let proof = &v["inclusionProof"];
        let inclusion_proof = if proof.is_object() {
            Some(InclusionProof {
                log_index: int64(&proof["logIndex"], "inclusionProof.logIndex")?,
                root_hash: hex_to_b64(&proof["rootHash"], "inclusionProof.rootHash")?,
                tree_size: int64(&proof["treeSize"], "inclusionProof.treeSize")?,
                hashes: proof["hashes"]
                    .as_array()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| hex_to_b64(h, "inclusionProof.hashes"))
                            .collect()
                    })
                    .transpose()?
                    .unwrap_or_default(),
                checkpoint: proof["checkpoint"].as_str().map(|c| Checkpoint {
                    envelope: c.to_string(),
                }),
            })
        } else {
            None
        };
        Ok(Entry {
            log_index: int64(&e["logIndex"], "logIndex")?,
            log_id: LogId {
                key_id: hex_to_b64(&e["logID"], "logID")?,
            },
            kind_version: kind,
            integrated_time: int64(&e["integratedTime"], "integratedTime")?,
            inclusion_promise: v["signedEntryTimestamp"]
                .as_str()
                .map(|s| InclusionPromise {
                    signed_entry_timestamp: s.to_string(),
                }),
            inclusion_proof,
            canonicalized_body: body,
        })
    }

    /// The entry in Rekor's v1 API form, under `uuid` (what a Rekor
    /// answers; the inverse of [`Entry::from_rekor_response`]).
    pub fn to_rekor_response(&self, uuid: &str) -> Result<Value, KeylessError> {
        let b64_to_hex = |s: &str, what: &str| b64(s, what).map(hex::encode);
        let mut verification = serde_json::Map::new();
        if let Some(p) = &self.inclusion_promise {
            verification.insert(
                "signedEntryTimestamp".into(),
                p.signed_entry_timestamp.clone().into(),
            );
        }
        if let Some(p) = &self.inclusion_proof {
            verification.insert(
                "inclusionProof".into(),
                serde_json::json!({
                    "logIndex": int(&p.log_index, "inclusionProof.logIndex")?,
                    "rootHash": b64_to_hex(&p.root_hash, "inclusionProof.rootHash")?,
                    "treeSize": int(&p.tree_size, "inclusionProof.treeSize")?,
                    "hashes": p.hashes.iter().map(|h| b64_to_hex(h, "inclusionProof.hashes")).collect::<Result<Vec<_>, _>>()?,
                    "checkpoint": p.checkpoint.as_ref().map(|c| c.envelope.clone()),
                }),
            );
        }
        Ok(serde_json::json!({ uuid: {
            "body": self.canonicalized_body,
            "integratedTime": int(&self.integrated_time, "integratedTime")?,
            "logID": b64_to_hex(&self.log_id.key_id, "logId.keyId")?,
            "logIndex": int(&self.log_index, "logIndex")?,
            "verification": verification,
        }}))
    }

    /// Verifies the entry against the logs of `root`: its signed entry
    /// timestamp and its inclusion proof (each when present; at least one
    /// must be), and that its body records `logged` by `certificate` (DER).
    pub fn verify(
        &self,
        root: &TrustedRoot,
        certificate: &[u8],
        logged: Logged<'_>,
    ) -> Result<Verified, KeylessError> {
        let log_id = b64(&self.log_id.key_id, "logId.keyId")?;
        let log = root.tlog(&log_id).ok_or_else(|| {
            KeylessError::Tlog(format!(
                "the entry is from log {} which {} does not trust",
                hex::encode(&log_id),
                root.origin
            ))
        })?;
        let Some(key) = &log.key else {
            return Err(KeylessError::Tlog(format!(
                "the entry is from {} ({} key): kiln verifies Rekor v1 entries (ECDSA)",
                log.base_url, log.key_details
            )));
        };
        let log_index = int(&self.log_index, "logIndex")?;
        let integrated_time = int(&self.integrated_time, "integratedTime")?;
        if !log.valid_for.contains(integrated_time) {
            return Err(KeylessError::Tlog(format!(
                "{} was not trusted at {}",
                log.base_url,
                crate::date::human(integrated_time)
            )));
        }
        let body = b64(&self.canonicalized_body, "canonicalizedBody")?;
        if self.inclusion_promise.is_none() && self.inclusion_proof.is_none() {
            return Err(KeylessError::Tlog(
                "the entry has neither a signed entry timestamp nor an inclusion proof".into(),
            ));
        }
        if let Some(promise) = &self.inclusion_promise {
            let set = b64(&promise.signed_entry_timestamp, "signedEntryTimestamp")?;
            let payload = set_payload(
                &self.canonicalized_body,
                integrated_time,
                &log_id,
                log_index,
            );
            if !key.verify(&payload, &set, Hash::Sha256) {
                return Err(KeylessError::Tlog(format!(
                    "the signed entry timestamp does not verify with {}'s key",
                    log.base_url
                )));
            }
        }
        if let Some(proof) = &self.inclusion_proof {
            let index = int(&proof.log_index, "inclusionProof.logIndex")? as u64;
            let size = int(&proof.tree_size, "inclusionProof.treeSize")? as u64;
            let root_hash = b64(&proof.root_hash, "inclusionProof.rootHash")?;
            let hashes = proof
                .hashes
                .iter()
                .map(|h| {
                    b64(h, "inclusionProof.hashes")?
                        .try_into()
                        .map_err(|_| KeylessError::Tlog("a proof hash is not 32 bytes".into()))
                })
                .collect::<Result<Vec<[u8; 32]>, _>>()?;
            let computed = root_from_proof(leaf_hash(&body), index, size, &hashes);
            if computed.as_ref().map(|r| r.as_slice()) != Some(root_hash.as_slice()) {
                return Err(KeylessError::Tlog(format!(
                    "the inclusion proof does not lead from the entry to root {}",
                    hex::encode(&root_hash)
                )));
            }
            match &proof.checkpoint {
                Some(c) => {
                    let (cp_size, cp_root) = verify_checkpoint(&c.envelope, log)?;
                    if cp_size != size || cp_root != root_hash {
                        return Err(KeylessError::Tlog(
                            "the checkpoint is for another tree than the inclusion proof".into(),
                        ));
                    }
                }
                // Without a signed checkpoint the proof shows nothing the
                // log vouched for: the promise must carry it.
                None if self.inclusion_promise.is_none() => {
                    return Err(KeylessError::Tlog(
                        "the inclusion proof has no signed checkpoint".into(),
                    ))
                }
                None => {}
            }
        }
        check_body(&body, certificate, logged)?;
        Ok(Verified {
            log_url: log.base_url.clone(),
            log_index,
            integrated_time,
        })
    }
}

/// Whether the logged body records this signature by this certificate over
/// this content (hashedrekord 0.0.1, dsse 0.0.1, intoto 0.0.2).
fn check_body(body: &[u8], certificate: &[u8], logged: Logged<'_>) -> Result<(), KeylessError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| KeylessError::Tlog(format!("the logged body is not JSON: {e}")))?;
    let kind = v["kind"].as_str().unwrap_or_default();
    let mismatch = |what: &str| {
        Err(KeylessError::Tlog(format!(
            "the {kind} entry records another {what} than this signature's"
        )))
    };
    let same_cert = |field: &Value| {
        field
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .and_then(|pem| pem_to_der(&pem))
            .is_some_and(|der| der == certificate)
    };
    let same_sig = |field: &Value, signature: &[u8]| {
        // intoto 0.0.2 base64-encodes the envelope's base64 signature again.
        field
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .is_some_and(|once| {
                once == signature || STANDARD.decode(&once).is_ok_and(|twice| twice == signature)
            })
    };
    let hex_sha256 = |field: &Value, want: &[u8]| {
        field["algorithm"].as_str() == Some("sha256")
            && field["value"].as_str() == Some(hex::encode(want).as_str())
    };
    match (kind, logged) {
        ("hashedrekord", Logged::Artifact { sha256, signature }) => {
            let spec = &v["spec"];
            if !hex_sha256(&spec["data"]["hash"], sha256) {
                return mismatch("artifact digest");
            }
            if !same_sig(&spec["signature"]["content"], signature) {
                return mismatch("signature");
            }
            if !same_cert(&spec["signature"]["publicKey"]["content"]) {
                return mismatch("certificate");
            }
            Ok(())
        }
        ("dsse", Logged::Envelope { payload, signature }) => {
            let spec = &v["spec"];
            if !hex_sha256(&spec["payloadHash"], &Sha256::digest(payload)) {
                return mismatch("payload");
            }
            let ok = spec["signatures"].as_array().is_some_and(|sigs| {
                sigs.iter()
                    .any(|s| same_sig(&s["signature"], signature) && same_cert(&s["verifier"]))
            });
            if !ok {
                return mismatch("signature or certificate");
            }
            Ok(())
        }
        ("intoto", Logged::Envelope { payload, signature }) => {
            let content = &v["spec"]["content"];
            if !hex_sha256(&content["payloadHash"], &Sha256::digest(payload)) {
                return mismatch("payload");
            }
            let ok = content["envelope"]["signatures"]
                .as_array()
                .is_some_and(|sigs| {
                    sigs.iter()
                        .any(|s| same_sig(&s["sig"], signature) && same_cert(&s["publicKey"]))
                });
            if !ok {
                return mismatch("signature or certificate");
            }
            Ok(())
        }
        (other, _) => Err(KeylessError::Tlog(format!(
            "the entry's kind {other:?} does not record this kind of signature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_proofs_follow_rfc_9162() {
        // A tree of 5 leaves; prove leaf 2 and leaf 4.
        let leaves: Vec<[u8; 32]> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        let h01 = node_hash(&leaves[0], &leaves[1]);
        let h23 = node_hash(&leaves[2], &leaves[3]);
        let h0123 = node_hash(&h01, &h23);
        let root = node_hash(&h0123, &leaves[4]);
        assert_eq!(
            root_from_proof(leaves[2], 2, 5, &[leaves[3], h01, leaves[4]]),
            Some(root)
        );
        assert_eq!(root_from_proof(leaves[4], 4, 5, &[h0123]), Some(root));
        // A wrong sibling, a wrong index, a short or long proof.
        assert_ne!(
            root_from_proof(leaves[2], 2, 5, &[leaves[1], h01, leaves[4]]),
            Some(root)
        );
        assert_ne!(
            root_from_proof(leaves[2], 3, 5, &[leaves[3], h01, leaves[4]]),
            Some(root)
        );
        assert_eq!(root_from_proof(leaves[2], 2, 5, &[leaves[3], h01]), None);
        assert_eq!(root_from_proof(leaves[4], 4, 5, &[h0123, h01]), None);
        assert_eq!(root_from_proof(leaves[0], 5, 5, &[]), None);
    }

    #[test]
    fn entries_convert_between_rekor_cosign_and_bundle_forms() {
        let a = crate::attest::keyless::testing::TestAuthority::new(3);
        let e = a.log(
            b"{\"kind\":\"dsse\",\"apiVersion\":\"0.0.1\"}",
            6,
            1_760_000_000,
        );
        let back = Entry::from_rekor_response(&e.to_rekor_response("u").unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&e).unwrap()
        );
        let legacy = Entry::from_cosign_bundle(&e.to_cosign_bundle().unwrap()).unwrap();
        assert_eq!(legacy.canonicalized_body, e.canonicalized_body);
        assert_eq!(legacy.log_id.key_id, e.log_id.key_id);
        assert_eq!(int(&legacy.log_index, "").unwrap(), 6);
        assert!(legacy.inclusion_proof.is_none());
    }

    #[test]
    fn pem_round_trips() {
        let der = (0u8..=200).collect::<Vec<_>>();
        assert_eq!(pem_to_der(der_to_pem(&der).as_bytes()), Some(der));
    }
}
