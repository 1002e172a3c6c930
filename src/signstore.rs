//! Signatures and attestations for a built image, and the signed OCI
//! layout they are stored in for offline use (docs/provenance.md).
//!
//! [`sign`] produces, for the image index (or single manifest) and every
//! platform manifest:
//!
//! - a cosign image signature: the simple-signing payload for the digest,
//!   ECDSA P-256 signed, as a layer of the `sha256-<hex>.sig` manifest
//!   (media type `application/vnd.dev.cosign.simplesigning.v1+json`,
//!   signature in the `dev.cosignproject.cosign/signature` annotation), and
//!   the same claim as cosign 3 stores it: an OCI 1.1 referrer holding a
//!   Sigstore bundle (DSSE, predicate `https://sigstore.dev/cosign/sign/v1`);
//! - DSSE-signed in-toto attestations as layers of `sha256-<hex>.att`
//!   (`application/vnd.dsse.envelope.v1+json`, `predicateType` annotation)
//!   and as bundle referrers: the SLSA provenance on the root, an SPDX and a
//!   CycloneDX SBOM on each platform manifest.
//!
//! [`write`] stores the image and all of that in one OCI layout: the image
//! as built (its index digest unchanged: nothing is added to it), the
//! `.sig`/`.att` manifests under their tags, the root's marked with
//! `cosign save`'s `kind` annotations, and the referrer manifests listed in
//! `index.json` with their `artifactType`.

use crate::provenance::BuiltImage;
use crate::sign::{self, SignError, Signer};
use kiln_seed::attest::keyless::Entry;
use kiln_seed::attest::{
    Bundle, Envelope, ResourceDescriptor, Statement, BUNDLE_CONTENT_ANNOTATION,
    BUNDLE_MEDIA_TYPE_V03, BUNDLE_PREDICATE_TYPE_ANNOTATION, COSIGN_PREDICATE_TYPE_ANNOTATION,
    COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIGN_V1, CYCLONEDX_BOM, DSSE_ENVELOPE_MEDIA_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE, SPDX_DOCUMENT,
};
use kiln_seed::attest::{COSIGN_CERTIFICATE_ANNOTATION, COSIGN_REKOR_BUNDLE_ANNOTATION};
use kiln_seed::digest::Digest;
use kiln_seed::oci::{
    self, Layout, LayoutWriter, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME,
};
use kiln_seed::verify::layout::{
    COSIGN_KIND, COSIGN_KIND_ATTS, COSIGN_KIND_IMAGE, COSIGN_KIND_IMAGE_INDEX, COSIGN_KIND_SIGS,
};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where `kiln sign` writes signed layouts by default (relative to the project).
pub const DEFAULT_DIR: &str = ".kiln/signed";
/// The OCI 1.1 empty config of artifact manifests.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum SignStoreError {
    #[error("{}: {message}", layout.display())]
    Image { layout: PathBuf, message: String },
    #[error("the provenance does not describe the image in {}: {message}; build it again with `kiln build` (which writes its provenance) before signing", layout.display())]
    ProvenanceMismatch { layout: PathBuf, message: String },
    #[error(transparent)]
    Sign(Box<SignError>),
    #[error(transparent)]
    Oci(Box<oci::Error>),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Provenance(Box<crate::provenance::ProvenanceError>),
    #[error(transparent)]
    Replace(#[from] crate::fsutil::ReplaceError),
}

// Boxed: the sources are large, and every function here returns this type.
impl From<SignError> for SignStoreError {
    fn from(e: SignError) -> Self {
        SignStoreError::Sign(Box::new(e))
    }
}

impl From<oci::Error> for SignStoreError {
    fn from(e: oci::Error) -> Self {
        SignStoreError::Oci(Box::new(e))
    }
}

impl From<crate::provenance::ProvenanceError> for SignStoreError {
    fn from(e: crate::provenance::ProvenanceError) -> Self {
        SignStoreError::Provenance(Box::new(e))
    }
}

/// A layer of a cosign manifest: blob bytes, media type, annotations.
type CosignLayer<'a> = (Vec<u8>, &'a str, Vec<(&'a str, String)>);

/// A legacy `.sig` layer.
#[derive(Clone, Debug)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    /// Base64 of the DER signature.
    pub signature: String,
    /// Keyless: the certificate and log entry, as cosign annotates them.
    pub keyless: Option<KeylessAnnotations>,
}

/// A legacy `.att` layer.
#[derive(Clone, Debug)]
pub struct AttestationLayer {
    pub predicate_type: String,
    pub envelope: Envelope,
    pub keyless: Option<KeylessAnnotations>,
}

/// What cosign writes beside a keyless signature in a tag layer: the
/// signing certificate (PEM) and Rekor's entry (`dev.sigstore.cosign/bundle`).
#[derive(Clone, Debug)]
pub struct KeylessAnnotations {
    pub certificate_pem: String,
    pub rekor_bundle: String,
}

impl KeylessAnnotations {
    fn of(signer: &dyn Signer, entry: Option<Entry>) -> Result<Option<Self>, SignStoreError> {
        // Only a keyless signer logs; its certificate is the chain's leaf.
        let Some(entry) = entry else {
            return Ok(None);
        };
        let sign::SignerIdentity::Certificate { chain_der, .. } = signer.identity()? else {
            return Ok(None);
        };
        let Some(leaf) = chain_der.first() else {
            return Ok(None);
        };
        let certificate_pem = kiln_seed::attest::keyless::tlog::der_to_pem(leaf);
        let rekor_bundle = entry
            .to_cosign_bundle()
            .map_err(|e| SignError::Signature(e.to_string()))?;
        Ok(Some(KeylessAnnotations {
            certificate_pem,
            rekor_bundle,
        }))
    }

    fn annotations(this: &Option<Self>) -> Vec<(&'static str, String)> {
        match this {
            Some(k) => vec![
                (COSIGN_CERTIFICATE_ANNOTATION, k.certificate_pem.clone()),
                (COSIGN_REKOR_BUNDLE_ANNOTATION, k.rekor_bundle.clone()),
            ],
            None => Vec::new(),
        }
    }
}

/// An OCI 1.1 referrer holding a Sigstore bundle.
#[derive(Clone, Debug)]
pub struct BundleReferrer {
    pub predicate_type: String,
    pub bundle: Bundle,
}

/// Everything attached to one digest.
#[derive(Clone, Debug, Default)]
pub struct Attachments {
    pub signatures: Vec<SignatureLayer>,
    pub attestations: Vec<AttestationLayer>,
    pub referrers: Vec<BundleReferrer>,
}

/// A built image and what is attached to its digests.
#[derive(Clone, Debug)]
pub struct SignedImage {
    /// The image layout (a `kiln build` output).
    pub layout: PathBuf,
    pub image: BuiltImage,
    /// The image index (or single manifest) as listed in `index.json`.
    pub root: Descriptor,
    /// Platform manifests by architecture (descriptors from the image index).
    pub platforms: BTreeMap<String, Descriptor>,
    pub attached: BTreeMap<Digest, Attachments>,
}

impl SignedImage {
    /// Reads a kiln image layout (root and platform descriptors), nothing attached yet.
    pub fn open(layout_dir: &Path) -> Result<SignedImage, SignStoreError> {
        let image = BuiltImage::read(layout_dir)?;
        let layout = Layout::open(layout_dir)?;
        let err = |message: String| SignStoreError::Image {
            layout: layout_dir.to_path_buf(),
            message,
        };
        let root = layout
            .find(&image.tag)
            .cloned()
            .ok_or_else(|| err(format!("index.json has no image tagged {:?}", image.tag)))?;
        let root_digest = oci::kiln_digest(root.digest()).map_err(err)?;
        if Some(root_digest) != image.root() {
            return Err(err(format!(
                "index.json tags {root_digest} as {:?} but image.json says {:?}",
                image.tag,
                image.root()
            )));
        }
        let mut platforms = BTreeMap::new();
        if image.index.is_some() {
            for d in layout.read_image_index(&root)?.manifests() {
                let arch = d
                    .platform()
                    .as_ref()
                    .map(|p| p.architecture().to_string())
                    .ok_or_else(|| err(format!("manifest {} has no platform", d.digest())))?;
                platforms.insert(arch, d.clone());
            }
        } else {
            let (arch, _) = image.manifests.iter().next().expect("read checks one");
            platforms.insert(arch.clone(), root.clone());
        }
        for (arch, d) in &image.manifests {
            let listed = platforms.get(arch).map(|p| p.digest().to_string());
            if listed.as_deref() != Some(d.to_string().as_str()) {
                return Err(err(format!(
                    "image.json's {arch} manifest {d} is not the one the index lists ({listed:?})"
                )));
            }
        }
        Ok(SignedImage {
            layout: layout_dir.to_path_buf(),
            image,
            root,
            platforms,
            attached: BTreeMap::new(),
        })
    }

    pub fn root_digest(&self) -> Digest {
        oci::kiln_digest(self.root.digest()).expect("checked when opened")
    }

    /// The descriptor of a digest of this image (root or platform).
    pub fn descriptor(&self, digest: &Digest) -> Option<&Descriptor> {
        std::iter::once(&self.root)
            .chain(self.platforms.values())
            .find(|d| d.digest().as_ref() == digest.to_string())
    }

    /// The SBOM documents of a platform (`sbom/<arch>.{spdx,cdx}.json` in an
    /// index layout, `sbom.{spdx,cdx}.json` in a per-arch one).
    pub fn sbom(&self, arch: &str, predicate_type: &str) -> Result<Value, SignStoreError> {
        let ext = if predicate_type == SPDX_DOCUMENT {
            "spdx"
        } else {
            "cdx"
        };
        let path = if self.image.index.is_some() {
            self.layout.join(format!("sbom/{arch}.{ext}.json"))
        } else {
            self.layout.join(format!("sbom.{ext}.json"))
        };
        let bytes = std::fs::read(&path).map_err(|error| SignStoreError::Io {
            what: "reading",
            path: path.clone(),
            error,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| SignStoreError::Image {
            layout: path,
            message: format!("not JSON: {e}"),
        })
    }
}

/// An image signature over `digest` in both forms.
pub fn sign_digest(
    signer: &dyn Signer,
    reference: &str,
    digest: &Digest,
) -> Result<(SignatureLayer, BundleReferrer), SignStoreError> {
    let sig = sign::sign_image(signer, reference, digest, None)?;
    let entry = signer.log_signature(&sig.payload, &sig.signature)?;
    let keyless = KeylessAnnotations::of(signer, entry)?;
    let bundle = sign::sign_image_bundle(signer, reference, digest)?;
    Ok((
        SignatureLayer {
            signature: sig.signature_base64(),
            payload: sig.payload,
            keyless,
        },
        BundleReferrer {
            predicate_type: COSIGN_SIGN_V1.into(),
            bundle,
        },
    ))
}

/// A statement as an attestation in both forms.
pub fn attest(
    signer: &dyn Signer,
    statement: &Statement,
) -> Result<(AttestationLayer, BundleReferrer), SignStoreError> {
    let envelope = sign::sign_statement(signer, statement)?;
    // One log entry serves both forms: they hold the same envelope.
    let entry = signer.log_envelope(&envelope)?;
    let bundle = sign::dsse_bundle(signer, envelope.clone(), entry.as_ref())?;
    Ok((
        AttestationLayer {
            predicate_type: statement.predicate_type.clone(),
            envelope,
            keyless: KeylessAnnotations::of(signer, entry)?,
        },
        BundleReferrer {
            predicate_type: statement.predicate_type.clone(),
            bundle,
        },
    ))
}

/// Signs the image in `layout_dir` and attests its provenance and SBOMs.
/// `reference` is the simple-signing `docker-reference` (the repository
/// the image is meant for). The provenance must describe exactly this
/// image's digests.
pub fn sign(
    signer: &dyn Signer,
    layout_dir: &Path,
    provenance: &Statement,
    reference: &str,
) -> Result<SignedImage, SignStoreError> {
    let mut s = SignedImage::open(layout_dir)?;
    let subjects = s.image.subjects();
    let expected: Vec<(&str, Digest)> = subjects.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    provenance
        .subjects_match(&expected)
        .map_err(|e| SignStoreError::ProvenanceMismatch {
            layout: layout_dir.to_path_buf(),
            message: e.to_string(),
        })?;
    provenance
        .slsa_provenance()
        .map_err(|e| SignStoreError::ProvenanceMismatch {
            layout: layout_dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let root = s.root_digest();
    let mut digests = vec![root];
    if s.image.index.is_some() {
        digests.extend(s.image.manifests.values().copied());
    }
    for d in &digests {
        let (layer, referrer) = sign_digest(signer, reference, d)?;
        let a = s.attached.entry(*d).or_default();
        a.signatures.push(layer);
        a.referrers.push(referrer);
    }
    // The provenance names the index and every platform manifest as its
    // subjects; it is attached to each of them, so that a consumer who
    // resolved one platform (as runtimes and admission controllers do)
    // finds it under that digest too.
    let (layer, referrer) = attest(signer, provenance)?;
    for d in &digests {
        let a = s.attached.entry(*d).or_default();
        a.attestations.push(layer.clone());
        a.referrers.push(referrer.clone());
    }
    let manifests = s.image.manifests.clone();
    for (arch, digest) in &manifests {
        let name = format!("{}:{}-{arch}", s.image.name, s.image.tag);
        for t in [SPDX_DOCUMENT, CYCLONEDX_BOM] {
            let st = Statement::new(
                vec![ResourceDescriptor::subject(&name, digest)],
                t,
                s.sbom(arch, t)?,
            );
            let (layer, referrer) = attest(signer, &st)?;
            let a = s.attached.entry(*digest).or_default();
            a.attestations.push(layer);
            a.referrers.push(referrer);
        }
    }
    Ok(s)
}

/// The image config cosign's signature manifests carry: what
/// go-containerregistry's `mutate.Append` gives an empty image (no
/// creation time: the zero time), with one diffID and one history entry
/// per layer. Written in go-containerregistry's field order.
pub fn cosign_config(layers: &[Digest]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|d| format!("\"{d}\"")).collect();
    let history = vec![r#"{"created":"0001-01-01T00:00:00Z"}"#; layers.len()];
    format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{}],"os":"","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        history.join(","),
        diff_ids.join(",")
    )
    .into_bytes()
}

/// A cosign `.sig` / `.att` manifest that holds the layers of `existing`
/// (what the registry's tag has now) followed by those of `ours` it lacks,
/// as `cosign sign` and `cosign attest` append to a tag rather than replace
/// it: a push must not drop somebody else's signature. A layer is the same
/// when its digest and its signature annotation are. Returns the new
/// config and manifest bytes, or None when `existing` already holds every
/// layer of `ours`. `existing` must be an image manifest whose layers have
/// the media types of ours (a cosign manifest of the same kind).
pub fn merged_cosign_manifest(
    existing: &[u8],
    ours: &[u8],
) -> Result<Option<MergedManifest>, String> {
    let parse = |bytes: &[u8], what: &str| {
        oci_spec::image::ImageManifest::from_reader(bytes)
            .map_err(|e| format!("{what} is not an image manifest: {e}"))
    };
    let existing = parse(existing, "the manifest the tag holds")?;
    let ours = parse(ours, "kiln's manifest")?;
    let identity = |d: &Descriptor| {
        (
            d.digest().to_string(),
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(COSIGN_SIGNATURE_ANNOTATION).cloned()),
        )
    };
    let kinds: std::collections::BTreeSet<String> = ours
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    if let Some(l) = existing
        .layers()
        .iter()
        .find(|l| !kinds.contains(&l.media_type().to_string()))
    {
        return Err(format!(
            "the manifest the tag holds has a layer of media type {} (expected {})",
            l.media_type(),
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let have: std::collections::BTreeSet<_> = existing.layers().iter().map(identity).collect();
    let new: Vec<Descriptor> = ours
        .layers()
        .iter()
        .filter(|l| !have.contains(&identity(l)))
        .cloned()
        .collect();
    if new.is_empty() {
        return Ok(None);
    }
    let mut layers = existing.layers().clone();
    layers.extend(new);
    let digests = layers
        .iter()
        .map(|l| {
            oci::kiln_digest(l.digest()).map_err(|e| format!("layer digest {}: {e}", l.digest()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = cosign_config(&digests);
    let manifest = oci::new_manifest(
        oci::descriptor_of(CONFIG_MEDIA_TYPE, &config),
        layers,
        &BTreeMap::new(),
    );
    Ok(Some(MergedManifest {
        manifest: oci::document_bytes(&manifest),
        config,
    }))
}

/// The config and manifest bytes of a merged cosign manifest.
#[derive(Debug)]
pub struct MergedManifest {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

fn annotated(mut d: Descriptor, ann: &[(&str, &str)]) -> Descriptor {
    let mut map = d.annotations().clone().unwrap_or_default();
    for (k, v) in ann {
        map.insert(k.to_string(), v.to_string());
    }
    d.set_annotations(Some(map));
    d
}

/// A cosign `.sig` / `.att` manifest: the config above and `layers`
/// (blob bytes, media type, annotations).
fn cosign_manifest(w: &LayoutWriter, layers: &[CosignLayer]) -> Result<Descriptor, SignStoreError> {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for (bytes, media_type, ann) in layers {
        let digest = w.put_blob(bytes)?;
        digests.push(digest);
        let mut d = oci::descriptor(media_type, &digest, bytes.len() as u64);
        let map: BTreeMap<String, String> = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        oci::set_annotations(&mut d, &map);
        descs.push(d);
    }
    let config = cosign_config(&digests);
    w.put_blob(&config)?;
    let manifest = oci::new_manifest(
        oci::descriptor_of(CONFIG_MEDIA_TYPE, &config),
        descs,
        &BTreeMap::new(),
    );
    Ok(w.put_document(MANIFEST_MEDIA_TYPE, &manifest)?.0)
}

/// An OCI 1.1 referrer manifest around a bundle.
fn referrer_manifest(
    w: &LayoutWriter,
    subject: &Descriptor,
    r: &BundleReferrer,
) -> Result<Descriptor, SignStoreError> {
    let bytes = r.bundle.to_json();
    let digest = w.put_blob(&bytes)?;
    let empty = w.put_blob(b"{}")?;
    let layer = oci::descriptor(BUNDLE_MEDIA_TYPE_V03, &digest, bytes.len() as u64);
    let subject = oci::descriptor(
        subject.media_type().as_ref(),
        &oci::kiln_digest(subject.digest()).expect("sha256"),
        subject.size(),
    );
    let ann = BTreeMap::from([
        (
            BUNDLE_CONTENT_ANNOTATION.to_string(),
            r.bundle.content_kind().to_string(),
        ),
        (
            BUNDLE_PREDICATE_TYPE_ANNOTATION.to_string(),
            r.predicate_type.clone(),
        ),
    ]);
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(BUNDLE_MEDIA_TYPE_V03.into()))
        .config(oci::descriptor(EMPTY_MEDIA_TYPE, &empty, 2))
        .layers(vec![layer])
        .subject(subject)
        .annotations(
            ann.clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .expect("all required manifest fields are set");
    let (mut desc, _) = w.put_document(MANIFEST_MEDIA_TYPE, &manifest)?;
    desc.set_artifact_type(Some(MediaType::Other(BUNDLE_MEDIA_TYPE_V03.into())));
    oci::set_annotations(&mut desc, &ann);
    Ok(desc)
}

/// What [`write`] stored.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub layout: PathBuf,
    pub root: String,
    pub signatures: usize,
    pub attestations: usize,
    pub referrers: usize,
}

/// Writes the signed layout at `out` (replacing what was there only once
/// the new one is complete).
pub fn write(s: &SignedImage, out: &Path) -> Result<Written, SignStoreError> {
    // Refused before any work: kiln replaces only a layout, never a
    // directory that holds anything else.
    crate::fsutil::check_replaceable(out)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|error| SignStoreError::Io {
        what: "creating",
        path: parent.to_path_buf(),
        error,
    })?;
    let base = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "signed".into());
    let tmp = crate::fsutil::Partial::reserve(parent, &base);
    let written = fill(s, tmp.path(), out)?;
    crate::fsutil::replace_dir(&tmp.keep(), out)?;
    Ok(written)
}

fn fill(s: &SignedImage, tmp: &Path, out: &Path) -> Result<Written, SignStoreError> {
    let w = LayoutWriter::create(tmp)?;
    let src = Layout::open(&s.layout)?;
    for r in src.walk()? {
        w.copy_blob(
            &src.blob_path(&r.digest),
            &r.digest,
            r.size,
            &format!("image {}", s.layout.display()),
        )?;
    }
    let root = s.root_digest();
    let kind = if s.image.index.is_some() {
        COSIGN_KIND_IMAGE_INDEX
    } else {
        COSIGN_KIND_IMAGE
    };
    let mut index = vec![annotated(s.root.clone(), &[(COSIGN_KIND, kind)])];
    // The per-platform tags of the built layout (for tools that cannot read
    // nested indexes).
    for d in src.index().manifests() {
        if d.digest() != s.root.digest() {
            index.push(d.clone());
        }
    }
    let mut n = Written {
        layout: out.to_path_buf(),
        root: root.to_string(),
        signatures: 0,
        attestations: 0,
        referrers: 0,
    };
    for (digest, a) in &s.attached {
        let subject = s.descriptor(digest).ok_or_else(|| SignStoreError::Image {
            layout: s.layout.clone(),
            message: format!("{digest} is not a digest of this image"),
        })?;
        let is_root = *digest == root;
        if !a.signatures.is_empty() {
            let layers: Vec<CosignLayer> = a
                .signatures
                .iter()
                .map(|l| {
                    let mut ann = vec![(COSIGN_SIGNATURE_ANNOTATION, l.signature.clone())];
                    ann.extend(KeylessAnnotations::annotations(&l.keyless));
                    (l.payload.clone(), SIMPLE_SIGNING_MEDIA_TYPE, ann)
                })
                .collect();
            let d = cosign_manifest(&w, &layers)?;
            let tag = kiln_seed::attest::cosign_tag(digest, "sig");
            let mut ann = vec![(REF_NAME, tag.as_str())];
            if is_root {
                ann.push((COSIGN_KIND, COSIGN_KIND_SIGS));
            }
            index.push(annotated(d, &ann));
            n.signatures += a.signatures.len();
        }
        if !a.attestations.is_empty() {
            let layers: Vec<CosignLayer> = a
                .attestations
                .iter()
                .map(|l| {
                    (
                        l.envelope.to_json(),
                        DSSE_ENVELOPE_MEDIA_TYPE,
                        // cosign's attestation layers carry an empty
                        // signature annotation: the signature is in the
                        // envelope.
                        [
                            (COSIGN_PREDICATE_TYPE_ANNOTATION, l.predicate_type.clone()),
                            (COSIGN_SIGNATURE_ANNOTATION, String::new()),
                        ]
                        .into_iter()
                        .chain(KeylessAnnotations::annotations(&l.keyless))
                        .collect(),
                    )
                })
                .collect();
            let d = cosign_manifest(&w, &layers)?;
            let tag = kiln_seed::attest::cosign_tag(digest, "att");
            let mut ann = vec![(REF_NAME, tag.as_str())];
            if is_root {
                ann.push((COSIGN_KIND, COSIGN_KIND_ATTS));
            }
            index.push(annotated(d, &ann));
            n.attestations += a.attestations.len();
        }
        for r in &a.referrers {
            index.push(referrer_manifest(&w, subject, r)?);
            n.referrers += 1;
        }
    }
    w.write_index(index)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_config_is_go_containerregistrys_shape() {
        let d = Digest([7; 32]);
        let text = String::from_utf8(cosign_config(&[d, d])).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}},{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{d}","{d}"]}},"config":{{}}}}"#
            )
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }

    /// A `.sig` manifest with one simple-signing layer per (payload, signature).
    fn sig_manifest(layers: &[(&[u8], &str)], media_type: &str) -> Vec<u8> {
        let descs: Vec<Descriptor> = layers
            .iter()
            .map(|(payload, sig)| {
                let mut d = oci::descriptor_of(media_type, payload);
                oci::set_annotations(
                    &mut d,
                    &BTreeMap::from([(COSIGN_SIGNATURE_ANNOTATION.to_string(), sig.to_string())]),
                );
                d
            })
            .collect();
        let digests: Vec<Digest> = layers.iter().map(|(p, _)| Digest::of(p)).collect();
        let config = cosign_config(&digests);
        oci::document_bytes(&oci::new_manifest(
            oci::descriptor_of(CONFIG_MEDIA_TYPE, &config),
            descs,
            &BTreeMap::new(),
        ))
    }

    #[test]
    fn merging_keeps_the_signatures_a_tag_holds_and_appends_ours_once() {
        let payload: &[u8] = b"{\"critical\":{}}";
        let theirs = sig_manifest(&[(payload, "c2lnLWE=")], SIMPLE_SIGNING_MEDIA_TYPE);
        let ours = sig_manifest(&[(payload, "c2lnLWI=")], SIMPLE_SIGNING_MEDIA_TYPE);

        let MergedManifest {
            config,
            manifest: merged,
        } = merged_cosign_manifest(&theirs, &ours).unwrap().unwrap();
        let m: Value = serde_json::from_slice(&merged).unwrap();
        let sigs: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["annotations"][COSIGN_SIGNATURE_ANNOTATION]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(sigs, ["c2lnLWE=", "c2lnLWI="], "theirs first, then ours");
        assert_eq!(m["config"]["digest"], Digest::of(&config).to_string());
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

        // Pushing again changes nothing: every layer of ours is there.
        assert!(merged_cosign_manifest(&merged, &ours).unwrap().is_none());
        assert!(merged_cosign_manifest(&ours, &ours).unwrap().is_none());
    }

    #[test]
    fn merging_refuses_what_is_not_a_cosign_manifest_of_the_same_kind() {
        let ours = sig_manifest(&[(b"p", "c2ln")], SIMPLE_SIGNING_MEDIA_TYPE);
        let att = sig_manifest(&[(b"p", "c2ln")], DSSE_ENVELOPE_MEDIA_TYPE);
        let err = merged_cosign_manifest(&att, &ours).unwrap_err();
        assert!(err.contains(DSSE_ENVELOPE_MEDIA_TYPE), "{err}");
        let err = merged_cosign_manifest(b"{\"manifests\":[]}", &ours).unwrap_err();
        assert!(err.contains("not an image manifest"), "{err}");
    }
}
