//! What is attached to a digest, in both of the ways cosign stores it:
//!
//! - legacy tags: `sha256-<hex>.sig`, a manifest whose layers are
//!   simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`)
//!   with the signature in the `dev.cosignproject.cosign/signature`
//!   annotation; `sha256-<hex>.att`, a manifest whose layers are DSSE
//!   envelopes (`application/vnd.dsse.envelope.v1+json`) annotated with
//!   their `predicateType`;
//! - OCI 1.1 referrers whose artifact type is a Sigstore bundle: a DSSE
//!   bundle around a `https://sigstore.dev/cosign/sign/v1` statement is an
//!   image signature, any other DSSE bundle an attestation.
//!
//! Nothing here is trusted yet: the checks verify it.

use super::source::{Source, SourceError};
use crate::attest::{
    self, Bundle, Envelope, BUNDLE_PREDICATE_TYPE_ANNOTATION, COSIGN_PREDICATE_TYPE_ANNOTATION,
    COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIGN_V1, DSSE_ENVELOPE_MEDIA_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::digest::Digest;
use oci_spec::image::{Descriptor, ImageManifest};

/// Where an artifact was found, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Layer `layer` of the manifest tagged `tag`.
    Tag { tag: String, layer: usize },
    /// The referrer manifest `manifest`.
    Referrer { manifest: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Tag { tag, layer } => {
                // sha256-<hex>.sig: the digest is in the report line already.
                let short = match (tag.get(..19), tag.rsplit_once('.')) {
                    (Some(head), Some((_, suffix))) => format!("{head}….{suffix}"),
                    _ => tag.clone(),
                };
                write!(f, "tag {short} layer {layer}")
            }
            Location::Referrer { manifest } => {
                write!(f, "referrer {}", manifest.get(..19).unwrap_or(manifest))
            }
        }
    }
}

/// A keyless signature's material in a cosign tag's layer annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagCertificate {
    /// The signing certificate, PEM.
    pub certificate_pem: String,
    /// Rekor's entry for the signature (`dev.sigstore.cosign/bundle`).
    pub rekor_bundle: Option<String>,
}

impl TagCertificate {
    fn of(layer: &Descriptor) -> Option<TagCertificate> {
        Some(TagCertificate {
            certificate_pem: annotation(layer, attest::COSIGN_CERTIFICATE_ANNOTATION)?.to_string(),
            rekor_bundle: annotation(layer, attest::COSIGN_REKOR_BUNDLE_ANNOTATION)
                .map(String::from),
        })
    }
}

#[derive(Clone, Debug)]
pub enum SignatureForm {
    /// A simple-signing payload and its base64 signature, with a
    /// certificate when it was signed keyless.
    Simple {
        payload: Vec<u8>,
        signature: String,
        certificate: Option<TagCertificate>,
    },
    /// A Sigstore bundle (a DSSE envelope around a cosign/sign/v1 statement).
    Bundle(Box<Bundle>),
}

#[derive(Clone, Debug)]
pub struct FoundSignature {
    pub location: Location,
    pub form: SignatureForm,
}

#[derive(Clone, Debug)]
pub struct FoundAttestation {
    pub location: Location,
    /// The predicate type the (unsigned) annotation claims.
    pub claimed_type: Option<String>,
    pub envelope: Envelope,
    /// Whether the envelope came in a bundle (key material checked there).
    pub bundle: Option<Box<Bundle>>,
    /// A keyless attestation's certificate, from its tag layer.
    pub certificate: Option<TagCertificate>,
}

/// What a broken artifact was meant to be, as far as can be told without
/// trusting it: it decides which valid artifact can stand in for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Signature,
    /// An attestation, with the predicate type its annotation claims.
    Attestation(Option<String>),
}

/// An artifact that could not be read, parsed or understood.
#[derive(Clone, Debug)]
pub struct Broken {
    pub kind: Kind,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Attached {
    pub signatures: Vec<FoundSignature>,
    pub attestations: Vec<FoundAttestation>,
    /// Artifacts that could not be read (tampered, malformed); the checks
    /// decide what each one means.
    pub problems: Vec<Broken>,
    /// The digests of the artifact manifests found (the `.sig` and `.att`
    /// manifests and every referrer): the entries of a layout that belong
    /// to the image.
    pub manifests: Vec<Digest>,
}

impl Attached {
    /// Nothing at all is attached: no signature, attestation or broken
    /// artifact.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty() && self.attestations.is_empty() && self.problems.is_empty()
    }

    fn broken(&mut self, kind: Kind, message: String) {
        self.problems.push(Broken { kind, message });
    }
}

fn problem(e: &SourceError) -> String {
    super::layout::chain(e)
}

fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn manifest(source: &dyn Source, desc: &Descriptor) -> Result<ImageManifest, String> {
    let bytes = source.fetch(desc).map_err(|e| problem(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a manifest: {e}", desc.digest()))
}

/// Collects everything attached to `digest` in `source`.
pub fn collect(source: &dyn Source, digest: &Digest) -> Attached {
    let mut out = Attached::default();
    let sig_tag = attest::cosign_tag(digest, "sig");
    match source.tagged(&sig_tag) {
        Ok(None) => {}
        Err(e) => out.broken(Kind::Signature, format!("{sig_tag}: {}", problem(&e))),
        Ok(Some(desc)) => match manifest(source, &desc) {
            Err(e) => out.broken(Kind::Signature, format!("{sig_tag}: {e}")),
            Ok(m) => {
                out.manifests
                    .extend(Digest::parse(desc.digest().as_ref()).ok());
                for (i, layer) in m.layers().iter().enumerate() {
                    let location = Location::Tag {
                        tag: sig_tag.clone(),
                        layer: i,
                    };
                    if layer.media_type().as_ref() != SIMPLE_SIGNING_MEDIA_TYPE {
                        out.broken(
                            Kind::Signature,
                            format!(
                                "{location}: media type {} is not {SIMPLE_SIGNING_MEDIA_TYPE}",
                                layer.media_type()
                            ),
                        );
                        continue;
                    }
                    let Some(signature) = annotation(layer, COSIGN_SIGNATURE_ANNOTATION) else {
                        out.broken(
                            Kind::Signature,
                            format!("{location}: no {COSIGN_SIGNATURE_ANNOTATION} annotation"),
                        );
                        continue;
                    };
                    match source.fetch(layer) {
                        Ok(payload) => out.signatures.push(FoundSignature {
                            location,
                            form: SignatureForm::Simple {
                                payload,
                                signature: signature.to_string(),
                                certificate: TagCertificate::of(layer),
                            },
                        }),
                        Err(e) => {
                            out.broken(Kind::Signature, format!("{location}: {}", problem(&e)))
                        }
                    }
                }
            }
        },
    }
    let att_tag = attest::cosign_tag(digest, "att");
    match source.tagged(&att_tag) {
        Ok(None) => {}
        Err(e) => out.broken(
            Kind::Attestation(None),
            format!("{att_tag}: {}", problem(&e)),
        ),
        Ok(Some(desc)) => match manifest(source, &desc) {
            Err(e) => out.broken(Kind::Attestation(None), format!("{att_tag}: {e}")),
            Ok(m) => {
                out.manifests
                    .extend(Digest::parse(desc.digest().as_ref()).ok());
                for (i, layer) in m.layers().iter().enumerate() {
                    let location = Location::Tag {
                        tag: att_tag.clone(),
                        layer: i,
                    };
                    let claimed_type =
                        annotation(layer, COSIGN_PREDICATE_TYPE_ANNOTATION).map(String::from);
                    if layer.media_type().as_ref() != DSSE_ENVELOPE_MEDIA_TYPE {
                        out.broken(
                            Kind::Attestation(claimed_type),
                            format!(
                                "{location}: media type {} is not {DSSE_ENVELOPE_MEDIA_TYPE}",
                                layer.media_type()
                            ),
                        );
                        continue;
                    }
                    let envelope = source
                        .fetch(layer)
                        .map_err(|e| problem(&e))
                        .and_then(|b| Envelope::from_json(&b).map_err(|e| e.to_string()));
                    match envelope {
                        Ok(envelope) => out.attestations.push(FoundAttestation {
                            location,
                            claimed_type,
                            envelope,
                            bundle: None,
                            certificate: TagCertificate::of(layer),
                        }),
                        Err(e) => {
                            out.broken(Kind::Attestation(claimed_type), format!("{location}: {e}"))
                        }
                    }
                }
            }
        },
    }
    match source.referrers(digest) {
        Err(e) => out.broken(
            Kind::Signature,
            format!("referrers of {digest}: {}", problem(&e)),
        ),
        Ok(descs) => {
            for desc in descs {
                collect_referrer(source, &desc, &mut out);
            }
        }
    }
    out
}

fn collect_referrer(source: &dyn Source, desc: &Descriptor, out: &mut Attached) {
    let location = Location::Referrer {
        manifest: desc.digest().to_string(),
    };
    out.manifests
        .extend(Digest::parse(desc.digest().as_ref()).ok());
    // Until the manifest is read, what it claims to be is what its
    // descriptor says.
    let kind_of = |claimed: Option<&str>| match claimed {
        Some(t) if t != COSIGN_SIGN_V1 => Kind::Attestation(Some(t.to_string())),
        _ => Kind::Signature,
    };
    let m = match manifest(source, desc) {
        Ok(m) => m,
        Err(e) => {
            let kind = kind_of(annotation(desc, BUNDLE_PREDICATE_TYPE_ANNOTATION));
            out.broken(kind, format!("{location}: {e}"));
            return;
        }
    };
    let claimed = m
        .annotations()
        .as_ref()
        .and_then(|a| a.get(BUNDLE_PREDICATE_TYPE_ANNOTATION))
        .cloned();
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|t| t.to_string())
        .or_else(|| desc.artifact_type().as_ref().map(|t| t.to_string()))
        .unwrap_or_else(|| m.config().media_type().to_string());
    if !artifact_type.starts_with("application/vnd.dev.sigstore.bundle") {
        // Not ours to judge (an SBOM pushed by another tool, say).
        return;
    }
    let Some(layer) = m.layers().first() else {
        out.broken(
            kind_of(claimed.as_deref()),
            format!("{location}: no layers"),
        );
        return;
    };
    let bundle = match source
        .fetch(layer)
        .map_err(|e| problem(&e))
        .and_then(|b| Bundle::from_json(&b).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            out.broken(kind_of(claimed.as_deref()), format!("{location}: {e}"));
            return;
        }
    };
    match &bundle.dsse_envelope {
        Some(env) if claimed.as_deref() != Some(COSIGN_SIGN_V1) => {
            out.attestations.push(FoundAttestation {
                location,
                claimed_type: claimed,
                envelope: env.clone(),
                bundle: Some(Box::new(bundle)),
                certificate: None,
            })
        }
        _ => out.signatures.push(FoundSignature {
            location,
            form: SignatureForm::Bundle(Box::new(bundle)),
        }),
    }
}
