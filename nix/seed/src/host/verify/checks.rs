//! Signature and attestation checks over what [`super::attached`] found.

use super::attached::{
    Attached, FoundAttestation, FoundSignature, Kind, Location, SignatureForm, TagCertificate,
};
use super::report::Report;
use super::trust::Trust;
use crate::attest::{
    dsse, keyless, simplesigning, Bundle, PublicKey, Statement, VerifiedPayload, COSIGN_SIGN_V1,
    CYCLONEDX_BOM, IN_TOTO_PAYLOAD_TYPE, SLSA_PROVENANCE_V1, SPDX_DOCUMENT,
};
use crate::digest::Digest;
use crate::regclient::normalized_repository;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// A statement whose DSSE signature verified with a trusted key.
#[derive(Clone, Debug)]
pub struct VerifiedStatement {
    pub statement: Statement,
    /// `key <id>`, or a keyless signer's identity, issuer and log entry.
    pub signer: String,
    pub locations: Vec<Location>,
}

/// A readable name for a predicate type.
pub fn predicate_name(t: &str) -> String {
    match t {
        SLSA_PROVENANCE_V1 => "SLSA provenance".into(),
        SPDX_DOCUMENT => "SPDX SBOM".into(),
        CYCLONEDX_BOM => "CycloneDX SBOM".into(),
        COSIGN_SIGN_V1 => "cosign signature statement".into(),
        other => format!("attestation {other}"),
    }
}

fn short_key(id: &str) -> &str {
    &id[..id.len().min(16)]
}

fn locations(ls: &[Location]) -> String {
    ls.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A signature that verified: who signed it (`key <id>`, or a keyless
/// signer's identity), and for a simple-signing payload the repository it
/// names (`docker-reference`).
struct GoodSignature {
    signer: String,
    identity: Option<String>,
}

/// How a key-verified signer is named in the report.
fn key_signer(key_id: &str) -> String {
    format!("key {}", short_key(key_id))
}

/// The certificate and Rekor entry of a keyless signature in a cosign tag.
fn tag_keyless<'t>(
    cert: &TagCertificate,
    trust: &'t Trust,
) -> Result<
    (
        &'t keyless::Policy,
        keyless::Leaf,
        PublicKey,
        Vec<keyless::Entry>,
    ),
    String,
> {
    let policy = trust
        .keyless
        .as_ref()
        .ok_or_else(Trust::no_keyless_policy)?;
    let der = keyless::tlog::pem_to_der(cert.certificate_pem.as_bytes())
        .ok_or("its dev.sigstore.cosign/certificate annotation is not a PEM certificate")?;
    let leaf = keyless::Leaf::parse(&der).map_err(|e| e.to_string())?;
    let key = leaf.public_key().map_err(|e| e.to_string())?;
    let entries = cert
        .rekor_bundle
        .as_deref()
        .map(keyless::Entry::from_cosign_bundle)
        .transpose()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    Ok((policy, leaf, key, entries))
}

/// One signature candidate: Ok when it is a valid signature over `digest`
/// by a trusted key or a keyless signer the policy names.
fn verify_signature(
    sig: &FoundSignature,
    digest: &Digest,
    trust: &Trust,
) -> Result<GoodSignature, String> {
    match &sig.form {
        SignatureForm::Simple {
            payload,
            signature,
            certificate: Some(cert),
        } => {
            let (policy, leaf, key, entries) = tag_keyless(cert, trust)?;
            let doc = simplesigning::verify(payload, signature, digest, std::slice::from_ref(&key))
                .map_err(|e| e.to_string())?;
            let sig_bytes = STANDARD
                .decode(signature.trim())
                .map_err(|e| format!("its signature is not base64: {e}"))?;
            let sha256: [u8; 32] = Sha256::digest(payload).into();
            let signer = keyless::verify(
                policy,
                &leaf,
                &entries,
                keyless::Logged::Artifact {
                    sha256: &sha256,
                    signature: &sig_bytes,
                },
            )
            .map_err(|e| e.to_string())?;
            Ok(GoodSignature {
                signer: signer.to_string(),
                identity: Some(doc.critical.identity.docker_reference),
            })
        }
        SignatureForm::Simple {
            payload,
            signature,
            certificate: None,
        } => {
            if trust.keys.is_empty() {
                return Err(Trust::no_keys());
            }
            for k in &trust.keys {
                if let Ok(doc) =
                    simplesigning::verify(payload, signature, digest, std::slice::from_ref(k))
                {
                    return Ok(GoodSignature {
                        signer: key_signer(&k.key_id()),
                        identity: Some(doc.critical.identity.docker_reference),
                    });
                }
            }
            // Report why: a bad signature first, then a payload for another image.
            Err(
                simplesigning::verify(payload, signature, digest, &trust.keys)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "does not verify".into()),
            )
        }
        SignatureForm::Bundle(b) => {
            if b.dsse_envelope.is_none() {
                return Err("a message-signature bundle does not carry the payload it signs; kiln verifies image signatures in DSSE bundles (cosign/sign/v1) or legacy .sig tags".into());
            }
            let (verified, signer) = verify_bundle(b, trust)?;
            let st = Statement::from_verified(&verified).map_err(|e| e.to_string())?;
            st.expect_predicate_type(COSIGN_SIGN_V1)
                .map_err(|e| e.to_string())?;
            st.subjects_match(&[("the signed image", *digest)])
                .map_err(|e| format!("signature statement is for another image: {e}"))?;
            Ok(GoodSignature {
                signer,
                identity: None,
            })
        }
    }
}

/// A DSSE bundle, key-signed or keyless: its verified payload and signer.
fn verify_bundle(b: &Bundle, trust: &Trust) -> Result<(VerifiedPayload, String), String> {
    if b.is_keyless() {
        let policy = trust
            .keyless
            .as_ref()
            .ok_or_else(Trust::no_keyless_policy)?;
        let (verified, signer) = b.verify_dsse_keyless(policy).map_err(|e| e.to_string())?;
        Ok((verified, signer.to_string()))
    } else {
        if trust.keys.is_empty() {
            return Err(Trust::no_keys());
        }
        let verified = b.verify_dsse(&trust.keys).map_err(|e| e.to_string())?;
        let signer = key_signer(&verified.key_id);
        Ok((verified, signer))
    }
}

/// Requires at least one valid signature over `digest` (what cosign
/// requires); reports which verified and why the others did not.
///
/// The rule for broken artifacts, the same for signatures and
/// attestations:
/// - one that cannot be read or does not parse (a blob that does not match
///   its digest, a layer of the wrong media type, a payload or envelope
///   that is not what it claims) is a failure, whatever else verifies:
///   kiln writes no such thing, and a layout or registry holding one has
///   been tampered with;
/// - one that is well formed but does not verify with the trusted keys
///   (another signer's, or one about another image) is ignored with a
///   warning when another of the same kind verifies (a signature over the
///   same digest; an attestation of the same predicate type), as cosign
///   ignores invalid signatures when one verifies; otherwise a failure.
pub fn signatures(
    report: &mut Report,
    attached: &Attached,
    digest: &Digest,
    what: &str,
    trust: &Trust,
    repository: Option<&str>,
) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for s in &attached.signatures {
        if let SignatureForm::Simple {
            payload, signature, ..
        } = &s.form
        {
            if let Err(e) = simplesigning::well_formed(payload, signature, digest) {
                report.fail(
                    "signature",
                    format!(
                        "{what}: malformed signature artifact at {}: {e}",
                        s.location
                    ),
                );
                continue;
            }
        }
        match verify_signature(s, digest, trust) {
            Ok(key) => good.push((s.location.clone(), key)),
            Err(e) => bad.push(format!("{}: {e}", s.location)),
        }
    }
    for p in attached
        .problems
        .iter()
        .filter(|p| p.kind == Kind::Signature)
    {
        report.fail(
            "signature",
            format!("{what}: malformed signature artifact: {}", p.message),
        );
    }
    let malformed = attached.problems.iter().any(|p| p.kind == Kind::Signature);
    if let Some((_, first)) = good.first() {
        let where_: Vec<Location> = good.iter().map(|(l, _)| l.clone()).collect();
        report.pass(
            "signature",
            format!(
                "{what} is signed by {} ({})",
                first.signer,
                locations(&where_)
            ),
        );
        if let Some(repo) = repository {
            identity(report, what, repo, good.iter().map(|(_, g)| g));
        }
        for b in bad {
            report.warn(
                "signature",
                format!("{what}: ignored an invalid signature: {b}"),
            );
        }
    } else if bad.is_empty() && malformed {
        // Already failed above, naming each one.
    } else if bad.is_empty() {
        report.fail(
            "signature",
            format!(
                "{what} is not signed: no tag {} and no signature referrer",
                crate::attest::cosign_tag(digest, "sig")
            ),
        );
    } else {
        report.fail(
            "signature",
            format!("no valid signature over {what}: {}", bad.join("; ")),
        );
    }
}

/// The repository the image is read from must be the one its verified
/// simple-signing signatures name: podman, CRI-O and skopeo (a
/// `sigstoreSigned` policy with `signedIdentity: matchRepository`) read
/// that name, normalized as Docker does, and accept the signatures
/// nowhere else. Bundles carry no repository.
fn identity<'a>(
    report: &mut Report,
    what: &str,
    repository: &str,
    good: impl Iterator<Item = &'a GoodSignature>,
) {
    let want = normalized_repository(repository);
    let named: std::collections::BTreeSet<String> =
        good.filter_map(|g| g.identity.clone()).collect();
    if named.is_empty() {
        return;
    }
    if named.iter().any(|n| normalized_repository(n) == want) {
        report.pass(
            "identity",
            format!("{what}: its signatures name {repository}, where it is"),
        );
    } else {
        let names: Vec<&str> = named.iter().map(String::as_str).collect();
        report.fail(
            "identity",
            format!(
                "{what}: its signatures name {}, not {repository}, where it is: a containers policy (podman, CRI-O, skopeo: sigstoreSigned, matchRepository) rejects them here; sign it for this repository (kiln sign --reference {repository})",
                names.join(" and ")
            ),
        );
    }
}

fn verify_attestation(a: &FoundAttestation, trust: &Trust) -> Result<(Statement, String), String> {
    let (verified, signer) = match (&a.bundle, &a.certificate) {
        (Some(b), _) => verify_bundle(b, trust)?,
        (None, Some(cert)) => {
            let (policy, leaf, key, entries) = tag_keyless(cert, trust)?;
            let verified = dsse::verify_as(
                &a.envelope,
                IN_TOTO_PAYLOAD_TYPE,
                std::slice::from_ref(&key),
            )
            .map_err(|e| e.to_string())?;
            let signer = keyless::verify_envelope(policy, &leaf, &key, &a.envelope, &entries)
                .map_err(|e| e.to_string())?;
            (verified, signer.to_string())
        }
        (None, None) => {
            if trust.keys.is_empty() {
                return Err(Trust::no_keys());
            }
            let verified = dsse::verify_as(&a.envelope, IN_TOTO_PAYLOAD_TYPE, &trust.keys)
                .map_err(|e| e.to_string())?;
            let signer = key_signer(&verified.key_id);
            (verified, signer)
        }
    };
    let st = Statement::from_verified(&verified).map_err(|e| e.to_string())?;
    if let Some(claimed) = &a.claimed_type {
        if *claimed != st.predicate_type {
            return Err(format!(
                "its annotation says predicate type {claimed} but the signed statement is {}",
                st.predicate_type
            ));
        }
    }
    Ok((st, signer))
}

/// Verifies the DSSE signature of every attestation attached to `what`;
/// returns the statements that verified (the same statement stored in
/// both forms is returned once).
pub fn attestations(
    report: &mut Report,
    attached: &Attached,
    what: &str,
    trust: &Trust,
) -> Vec<VerifiedStatement> {
    let mut out: Vec<(Digest, VerifiedStatement)> = Vec::new();
    let mut invalid = Vec::new();
    for a in &attached.attestations {
        match verify_attestation(a, trust) {
            Err(e) => invalid.push((a, e)),
            Ok((st, signer)) => {
                let id = Digest::of(&st.to_json());
                match out.iter_mut().find(|(d, _)| *d == id) {
                    Some((_, v)) => v.locations.push(a.location.clone()),
                    None => out.push((
                        id,
                        VerifiedStatement {
                            statement: st,
                            signer,
                            locations: vec![a.location.clone()],
                        },
                    )),
                }
            }
        }
    }
    // The rule of `signatures`: an attestation that cannot be read or does
    // not parse fails; one that does not verify is ignored, with a warning,
    // when one of the same predicate type verifies (a tag that also holds
    // another signer's attestations, as `cosign attest` appends them), and
    // fails otherwise, naming why.
    for p in &attached.problems {
        if let Kind::Attestation(claimed) = &p.kind {
            let label = claimed
                .as_deref()
                .map(predicate_name)
                .unwrap_or_else(|| "attestation".into());
            report.fail(
                "attestation",
                format!("malformed {label} artifact on {what}: {}", p.message),
            );
        }
    }
    let broken: Vec<(Option<String>, String)> = invalid
        .into_iter()
        .map(|(a, e)| (a.claimed_type.clone(), format!("({}): {e}", a.location)))
        .collect();
    for (claimed, why) in broken {
        let label = claimed
            .as_deref()
            .map(predicate_name)
            .unwrap_or_else(|| "attestation".into());
        let covered = out.iter().any(|(_, v)| match &claimed {
            Some(t) => v.statement.predicate_type == *t,
            None => true,
        });
        let message = format!("{label} on {what} {why}");
        if covered {
            report.warn("attestation", format!("ignored an invalid {message}"));
        } else {
            report.fail("attestation", message);
        }
    }
    for (_, v) in &out {
        report.pass(
            "attestation",
            format!(
                "{} on {what}: DSSE signature by {} ({})",
                predicate_name(&v.statement.predicate_type),
                v.signer,
                locations(&v.locations)
            ),
        );
    }
    out.into_iter().map(|(_, v)| v).collect()
}

/// The verified statements of `predicate_type`; a failure when there are none.
pub fn require<'a>(
    report: &mut Report,
    statements: &'a [VerifiedStatement],
    predicate_type: &str,
    what: &str,
    digest: &Digest,
) -> Vec<&'a VerifiedStatement> {
    let found: Vec<&VerifiedStatement> = statements
        .iter()
        .filter(|s| s.statement.predicate_type == predicate_type)
        .collect();
    if found.is_empty() {
        report.fail(
            "attestation",
            format!(
                "no valid {} ({predicate_type}) is attached to {what} (looked in tag {} and referrers)",
                predicate_name(predicate_type),
                crate::attest::cosign_tag(digest, "att")
            ),
        );
    }
    found
}

/// A platform manifest verified on its own: the statement (the whole
/// build's provenance) must name it; its other subjects are the image
/// index and the other platforms of the same build, which are not what is
/// verified here.
pub fn subject_included(report: &mut Report, v: &VerifiedStatement, what: &str, digest: &Digest) {
    let name = predicate_name(&v.statement.predicate_type);
    match v.statement.names_subject(what, digest) {
        Ok(()) => report.pass(
            "subjects",
            format!(
                "{name} on {what} names it among its {} subjects (the others, the rest of the same build, are not verified here)",
                v.statement.subject.len()
            ),
        ),
        Err(e) => report.fail("subjects", format!("{name} on {what}: {e}")),
    }
}

/// The statement's subjects must be exactly `expected`.
pub fn subjects(
    report: &mut Report,
    v: &VerifiedStatement,
    what: &str,
    expected: &[(String, Digest)],
) {
    let exp: Vec<(&str, Digest)> = expected.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let name = predicate_name(&v.statement.predicate_type);
    match v.statement.subjects_match(&exp) {
        Ok(()) => report.pass(
            "subjects",
            format!(
                "{name} on {what} is about exactly {}",
                expected
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => report.fail("subjects", format!("{name} on {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_for(names: &[Option<&str>]) -> Vec<GoodSignature> {
        names
            .iter()
            .map(|n| GoodSignature {
                signer: "key k".into(),
                identity: n.map(String::from),
            })
            .collect()
    }

    fn judged(repository: &str, names: &[Option<&str>]) -> Report {
        let mut r = Report::new("x".into());
        identity(&mut r, "the index", repository, signed_for(names).iter());
        r
    }

    #[test]
    fn signatures_must_name_the_repository_the_image_is_read_from() {
        let here = "127.0.0.1:5000/kiln/scratch-plus";
        assert!(judged(here, &[Some(here)]).passed());
        // Another signer's signature for elsewhere does not matter when
        // one names this repository.
        assert!(judged(here, &[Some("ghcr.io/x/y"), Some(here)]).passed());
        // Docker's normalization: a bare name is docker.io/library/...
        assert!(judged("docker.io/library/x", &[Some("x")]).passed());
        let elsewhere = judged(here, &[Some("scratch-plus")]);
        assert!(!elsewhere.passed());
        let m = &elsewhere.checks[0].message;
        assert!(
            m.contains("name scratch-plus, not 127.0.0.1:5000/kiln/scratch-plus")
                && m.contains("kiln sign --reference 127.0.0.1:5000/kiln/scratch-plus"),
            "{m}"
        );
        // Bundles alone name no repository: nothing to judge.
        assert!(judged(here, &[None]).checks.is_empty());
    }
}
