//! in-toto Statement v1 and the SLSA Provenance v1 predicate, as serde types
//! that follow the specs field for field:
//!
//! - <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>
//! - <https://github.com/in-toto/attestation/blob/main/spec/v1/resource_descriptor.md>
//! - <https://slsa.dev/spec/v1.0/provenance>
//!
//! crates.io's `in-toto` only knows Statement v0.1 and SLSA v0.2 (its v1
//! parsing fails), hence these. Serialization goes through `crate::json` so the bytes
//! (which get signed) are deterministic: sorted keys, no whitespace.

use super::dsse::VerifiedPayload;
use super::IN_TOTO_PAYLOAD_TYPE;
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// What `cosign attest --type spdxjson` writes as predicateType.
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// What `cosign attest --type cyclonedx` writes as predicateType.
pub const CYCLONEDX_BOM: &str = "https://cyclonedx.org/bom";
/// The predicate type of a cosign 3 image signature stored as a Sigstore
/// bundle (a DSSE envelope around a statement with an empty predicate).
pub const COSIGN_SIGN_V1: &str = "https://sigstore.dev/cosign/sign/v1";

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("in-toto statement is not valid JSON: {reason}")]
    Json { reason: String },
    #[error("attestation payload type is {found:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}")]
    WrongPayloadType { found: String },
    #[error("statement _type is {found:?}, expected {STATEMENT_TYPE_V1:?}")]
    WrongType { found: String },
    #[error("statement has no subjects")]
    NoSubjects,
    #[error("statement subject {index} ({name:?}) has no sha256 digest")]
    SubjectWithoutSha256 { index: usize, name: String },
    #[error("statement subject {name:?}: sha256 digest {value:?} is not 64 lowercase hex digits")]
    BadSubjectDigest { name: String, value: String },
    #[error("statement predicateType is {found:?}, expected {expected:?}")]
    WrongPredicateType { expected: String, found: String },
    #[error("{predicate_type} predicate does not parse: {reason}")]
    Predicate {
        predicate_type: String,
        reason: String,
    },
    #[error("statement has no subject with digest {digest} (expected for {name})")]
    SubjectMissing { name: String, digest: Digest },
    #[error("statement subject {name:?} ({digest}) is not one of the expected digests")]
    SubjectUnexpected { name: String, digest: Digest },
    #[error("provenance {field} is {value:?}, not an RFC 3339 timestamp")]
    BadTimestamp { field: &'static str, value: String },
}

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    /// Subjects are resource descriptors; the spec asks for `digest` on each
    /// (matching is by digest) and recommends `name`.
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// Optional in the spec ("unset is treated the same as set-but-empty").
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub predicate: Value,
}

/// in-toto ResourceDescriptor v1. Every field is optional; empty ones are
/// left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Algorithm name -> lowercase hex (a DigestSet: `sha256`, `sha512`, `gitCommit`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub download_location: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Base64 of the resource's bytes, for small inline resources.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Value>,
}

impl ResourceDescriptor {
    /// `{name, digest: {sha256}}`: the shape of a statement subject.
    pub fn subject(name: &str, digest: &Digest) -> ResourceDescriptor {
        ResourceDescriptor {
            name: name.to_string(),
            digest: sha256_set(digest),
            ..Default::default()
        }
    }

    /// The sha256 entry of `digest`, if present and well-formed.
    pub fn sha256(&self) -> Option<Digest> {
        self.digest.get("sha256").and_then(|h| Digest::from_hex(h))
    }
}

fn sha256_set(digest: &Digest) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_string(), digest.hex())])
}

/// SLSA Provenance v1 predicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    /// Everything the build's caller controlled (an object, REQUIRED).
    pub external_parameters: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub internal_parameters: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "BuildMetadata::is_empty")]
    pub metadata: BuildMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub invocation_id: String,
    /// RFC 3339 (e.g. `2026-07-11T10:16:37Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

impl BuildMetadata {
    pub fn is_empty(&self) -> bool {
        self.invocation_id.is_empty() && self.started_on.is_none() && self.finished_on.is_none()
    }
}

impl Provenance {
    /// Checks what serde cannot: timestamps are RFC 3339.
    pub fn validate(&self) -> Result<(), StatementError> {
        let m = &self.run_details.metadata;
        for (field, value) in [("startedOn", &m.started_on), ("finishedOn", &m.finished_on)] {
            if let Some(v) = value {
                if !is_rfc3339(v) {
                    return Err(StatementError::BadTimestamp {
                        field,
                        value: v.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Statement {
    pub fn new(
        subject: Vec<ResourceDescriptor>,
        predicate_type: &str,
        predicate: Value,
    ) -> Statement {
        Statement {
            type_: STATEMENT_TYPE_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// A SLSA Provenance v1 statement about `subjects` (name, digest).
    pub fn provenance(subjects: &[(&str, Digest)], provenance: &Provenance) -> Statement {
        let predicate = serde_json::to_value(provenance).expect("provenance serializes");
        Statement::new(subjects_of(subjects), SLSA_PROVENANCE_V1, predicate)
    }

    /// The statement cosign 3 signs for an image signature in a bundle:
    /// the image as subject, predicate type [`COSIGN_SIGN_V1`], empty predicate.
    pub fn cosign_sign(name: &str, manifest_digest: &Digest) -> Statement {
        Statement::new(
            vec![ResourceDescriptor::subject(name, manifest_digest)],
            COSIGN_SIGN_V1,
            Value::Object(Default::default()),
        )
    }

    /// Deterministic compact JSON: the DSSE payload.
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::canonical(self)
    }

    /// Parses and validates (`_type` v1, at least one subject, each with a
    /// well-formed sha256).
    pub fn from_json(bytes: &[u8]) -> Result<Statement, StatementError> {
        let s: Statement = serde_json::from_slice(bytes).map_err(|e| StatementError::Json {
            reason: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// The statement inside a verified DSSE envelope (payload type must be in-toto).
    pub fn from_verified(payload: &VerifiedPayload) -> Result<Statement, StatementError> {
        if payload.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(StatementError::WrongPayloadType {
                found: payload.payload_type.clone(),
            });
        }
        Statement::from_json(&payload.payload)
    }

    pub fn validate(&self) -> Result<(), StatementError> {
        if self.type_ != STATEMENT_TYPE_V1 {
            return Err(StatementError::WrongType {
                found: self.type_.clone(),
            });
        }
        if self.subject.is_empty() {
            return Err(StatementError::NoSubjects);
        }
        for (index, s) in self.subject.iter().enumerate() {
            let hex =
                s.digest
                    .get("sha256")
                    .ok_or_else(|| StatementError::SubjectWithoutSha256 {
                        index,
                        name: s.name.clone(),
                    })?;
            if Digest::from_hex(hex).is_none() {
                return Err(StatementError::BadSubjectDigest {
                    name: s.name.clone(),
                    value: hex.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn expect_predicate_type(&self, expected: &str) -> Result<(), StatementError> {
        if self.predicate_type != expected {
            return Err(StatementError::WrongPredicateType {
                expected: expected.to_string(),
                found: self.predicate_type.clone(),
            });
        }
        Ok(())
    }

    /// The SLSA Provenance v1 predicate (predicate type checked, timestamps validated).
    pub fn slsa_provenance(&self) -> Result<Provenance, StatementError> {
        self.expect_predicate_type(SLSA_PROVENANCE_V1)?;
        let p: Provenance = serde_json::from_value(self.predicate.clone()).map_err(|e| {
            StatementError::Predicate {
                predicate_type: SLSA_PROVENANCE_V1.to_string(),
                reason: e.to_string(),
            }
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Requires the statement's subjects to be exactly `expected` — every
    /// expected digest present and no other subject — matching by sha256
    /// digest as in-toto prescribes (names are informational and only
    /// appear in the errors).
    pub fn subjects_match(&self, expected: &[(&str, Digest)]) -> Result<(), StatementError> {
        self.validate()?;
        for (name, digest) in expected {
            if !self
                .subject
                .iter()
                .any(|s| s.sha256().as_ref() == Some(digest))
            {
                return Err(StatementError::SubjectMissing {
                    name: name.to_string(),
                    digest: *digest,
                });
            }
        }
        for s in &self.subject {
            let digest = s.sha256().expect("validated above");
            if !expected.iter().any(|(_, d)| *d == digest) {
                return Err(StatementError::SubjectUnexpected {
                    name: s.name.clone(),
                    digest,
                });
            }
        }
        Ok(())
    }
}

impl Statement {
    /// The statement names `digest` among its subjects (a statement about
    /// a whole build applies to each artifact it names).
    pub fn names_subject(&self, name: &str, digest: &Digest) -> Result<(), StatementError> {
        self.validate()?;
        if self
            .subject
            .iter()
            .any(|s| s.sha256().as_ref() == Some(digest))
        {
            Ok(())
        } else {
            Err(StatementError::SubjectMissing {
                name: name.to_string(),
                digest: *digest,
            })
        }
    }
}

fn subjects_of(subjects: &[(&str, Digest)]) -> Vec<ResourceDescriptor> {
    subjects
        .iter()
        .map(|(name, d)| ResourceDescriptor::subject(name, d))
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC), the form SLSA examples use.
pub fn rfc3339_utc(epoch_secs: i64) -> String {
    crate::date::rfc3339(epoch_secs)
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with field
/// ranges checked (not calendar validity of the day).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => {
            let off = &s[i + 1..];
            off.len() == 5
                && digits(i + 1..i + 3)
                && b[i + 3] == b':'
                && digits(i + 4..i + 6)
                && num(i + 1..i + 3) <= 23
                && num(i + 4..i + 6) <= 59
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn sample_provenance() -> Provenance {
        Provenance {
            build_definition: BuildDefinition {
                build_type: "https://kiln.example/build/v1".into(),
                external_parameters: json!({"image": "scratch-plus", "archs": ["amd64", "arm64"]}),
                internal_parameters: Value::Null,
                resolved_dependencies: vec![ResourceDescriptor {
                    uri: "pkg:deb/debian/tzdata@2025b-0+deb12u1?arch=all&distro=debian-12".into(),
                    digest: sha256_set(&d(9)),
                    ..Default::default()
                }],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: "https://kiln.example/local".into(),
                    version: BTreeMap::from([("kiln".into(), "0.1.0".into())]),
                    builder_dependencies: vec![],
                },
                metadata: BuildMetadata {
                    invocation_id: "abc".into(),
                    started_on: Some("2026-07-11T10:16:37Z".into()),
                    finished_on: Some("2026-07-11T10:17:00.5+02:00".into()),
                },
                byproducts: vec![],
            },
        }
    }

    #[test]
    fn provenance_statement_has_the_spec_field_names_and_skips_empty_fields() {
        let st = Statement::provenance(&[("scratch-plus", d(1))], &sample_provenance());
        let text = String::from_utf8(st.to_json()).unwrap();
        let expected = format!(
            concat!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","predicate":{{"buildDefinition":{{"buildType":"https://kiln.example/build/v1","#,
                r#""externalParameters":{{"archs":["amd64","arm64"],"image":"scratch-plus"}},"#,
                r#""resolvedDependencies":[{{"digest":{{"sha256":"{dep}"}},"uri":"pkg:deb/debian/tzdata@2025b-0+deb12u1?arch=all&distro=debian-12"}}]}},"#,
                r#""runDetails":{{"builder":{{"id":"https://kiln.example/local","version":{{"kiln":"0.1.0"}}}},"#,
                r#""metadata":{{"finishedOn":"2026-07-11T10:17:00.5+02:00","invocationId":"abc","startedOn":"2026-07-11T10:16:37Z"}}}}}},"#,
                r#""predicateType":"https://slsa.dev/provenance/v1","subject":[{{"digest":{{"sha256":"{sub}"}},"name":"scratch-plus"}}]}}"#
            ),
            dep = d(9).hex(),
            sub = d(1).hex()
        );
        assert_eq!(text, expected);
        let back = Statement::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.slsa_provenance().unwrap(), sample_provenance());
    }

    #[test]
    fn serialization_is_deterministic() {
        let mut p = sample_provenance();
        for k in ["zeta", "alpha", "mu"] {
            p.run_details.builder.version.insert(k.into(), "1".into());
        }
        let a = Statement::provenance(&[("a", d(1)), ("b", d(2))], &p).to_json();
        for _ in 0..10 {
            assert_eq!(
                Statement::provenance(&[("a", d(1)), ("b", d(2))], &p).to_json(),
                a
            );
        }
    }

    #[test]
    fn subjects_must_match_exactly_by_digest() {
        let st = Statement::provenance(&[("index", d(1)), ("amd64", d(2))], &sample_provenance());
        st.subjects_match(&[("amd64", d(2)), ("index", d(1))])
            .unwrap();
        // Names do not matter, digests do.
        st.subjects_match(&[("x", d(2)), ("y", d(1))]).unwrap();
        let err = st
            .subjects_match(&[("index", d(1)), ("amd64", d(2)), ("arm64", d(3))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "statement has no subject with digest {} (expected for arm64)",
                d(3)
            )
        );
        let err = st.subjects_match(&[("index", d(1))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "statement subject \"amd64\" ({}) is not one of the expected digests",
                d(2)
            )
        );
    }

    #[test]
    fn invalid_statements_are_named() {
        let mut st = Statement::cosign_sign("r/x", &d(1));
        st.type_ = "https://in-toto.io/Statement/v0.1".into();
        assert!(matches!(
            Statement::from_json(&st.to_json()).unwrap_err(),
            StatementError::WrongType { .. }
        ));
        let st = Statement::new(vec![], SPDX_DOCUMENT, json!({}));
        assert!(matches!(
            Statement::from_json(&st.to_json()).unwrap_err(),
            StatementError::NoSubjects
        ));
        let st = Statement::new(
            vec![ResourceDescriptor {
                name: "x".into(),
                ..Default::default()
            }],
            SPDX_DOCUMENT,
            json!({}),
        );
        assert!(matches!(
            Statement::from_json(&st.to_json()).unwrap_err(),
            StatementError::SubjectWithoutSha256 { .. }
        ));
        let mut rd = ResourceDescriptor::subject("x", &d(1));
        rd.digest.insert("sha256".into(), "ABC".into());
        let st = Statement::new(vec![rd], SPDX_DOCUMENT, json!({}));
        assert!(matches!(
            Statement::from_json(&st.to_json()).unwrap_err(),
            StatementError::BadSubjectDigest { .. }
        ));
        assert!(matches!(
            Statement::from_json(b"{").unwrap_err(),
            StatementError::Json { .. }
        ));
    }

    #[test]
    fn predicate_type_and_payload_type_are_checked() {
        let st = Statement::new(
            vec![ResourceDescriptor::subject("x", &d(1))],
            CYCLONEDX_BOM,
            json!({"bomFormat": "CycloneDX"}),
        );
        let err = st.slsa_provenance().unwrap_err();
        assert_eq!(
            err.to_string(),
            "statement predicateType is \"https://cyclonedx.org/bom\", expected \"https://slsa.dev/provenance/v1\""
        );
        let vp = VerifiedPayload {
            payload_type: "text/plain".into(),
            payload: st.to_json(),
            key_id: String::new(),
        };
        assert!(matches!(
            Statement::from_verified(&vp).unwrap_err(),
            StatementError::WrongPayloadType { .. }
        ));
        let vp = VerifiedPayload {
            payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
            ..vp
        };
        assert_eq!(Statement::from_verified(&vp).unwrap(), st);
    }

    #[test]
    fn bad_provenance_timestamps_are_rejected() {
        let mut p = sample_provenance();
        p.run_details.metadata.finished_on = Some("2026-07-11 10:17:00".into());
        let st = Statement::provenance(&[("x", d(1))], &p);
        let err = st.slsa_provenance().unwrap_err();
        assert!(
            matches!(
                err,
                StatementError::BadTimestamp {
                    field: "finishedOn",
                    ..
                }
            ),
            "{err}"
        );
        // A predicate of the right type but the wrong shape.
        let st = Statement::new(
            vec![ResourceDescriptor::subject("x", &d(1))],
            SLSA_PROVENANCE_V1,
            json!({"buildDefinition": {}}),
        );
        assert!(matches!(
            st.slsa_provenance().unwrap_err(),
            StatementError::Predicate { .. }
        ));
    }

    #[test]
    fn cosign_sign_statement_shape() {
        let st = Statement::cosign_sign("127.0.0.1:5000/kiln/scratch-plus", &d(7));
        let text = String::from_utf8(st.to_json()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","predicate":{{}},"predicateType":"https://sigstore.dev/cosign/sign/v1","subject":[{{"digest":{{"sha256":"{}"}},"name":"127.0.0.1:5000/kiln/scratch-plus"}}]}}"#,
                d(7).hex()
            )
        );
    }

    #[test]
    fn rfc3339_formatting_and_checking() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_783_764_997), "2026-07-11T10:16:37Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
        for ok in [
            "2026-07-11T10:16:37Z",
            "2026-07-11t10:16:37.123456z",
            "2026-07-11T10:16:37-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-07-11",
            "2026-13-11T10:16:37Z",
            "2026-07-11T24:00:00Z",
            "2026-07-11T10:16:37",
            "2026-07-11T10:16:37.Z",
            "2026-07-11T10:16:37+0530",
            "2026-07-11T10:16:37Z ",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn a_statement_names_each_of_its_subjects() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let st = Statement::new(
            vec![
                ResourceDescriptor::subject("index", &a),
                ResourceDescriptor::subject("amd64", &b),
            ],
            "https://example.invalid/p",
            serde_json::json!({}),
        );
        st.names_subject("amd64", &b).unwrap();
        let e = st.names_subject("other", &Digest::of(b"c")).unwrap_err();
        assert!(matches!(e, StatementError::SubjectMissing { .. }), "{e}");
        // Exactly matching still refuses the extra subject.
        assert!(st.subjects_match(&[("amd64", b)]).is_err());
    }
}
