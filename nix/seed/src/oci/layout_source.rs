//! [`Source`] over an OCI image layout directory: the signed layout `kiln
//! sign` writes (the image, plus cosign's `sha256-<hex>.sig` / `.att`
//! manifests as tags in `index.json`, plus referrer manifests listed in
//! `index.json` without a tag), or any layout holding an image.

use super::source::{Source, SourceError, MAX_BLOB_SIZE};
use super::{Layout, MANIFEST_MEDIA_TYPE};
use crate::digest::Digest;
use crate::oci;
use oci_spec::image::{Descriptor, ImageManifest};
use std::path::Path;

pub struct LayoutSource {
    layout: Layout,
    tag: Option<String>,
}

impl LayoutSource {
    /// Opens the layout at `dir`. `tag` selects the image by its ref name
    /// ([`crate::imageref::resolve_layout`] says how, and without a name).
    /// A source over an already opened layout.
    pub fn new(layout: Layout, tag: Option<&str>) -> LayoutSource {
        LayoutSource {
            layout,
            tag: tag.map(String::from),
        }
    }

    pub fn open(dir: &Path, tag: Option<&str>) -> Result<LayoutSource, SourceError> {
        let layout = Layout::open(dir).map_err(|e| SourceError::Access {
            source_name: dir.display().to_string(),
            message: chain(&e),
        })?;
        Ok(LayoutSource {
            layout,
            tag: tag.map(String::from),
        })
    }

    fn dir_name(&self) -> String {
        self.layout.root().display().to_string()
    }

    fn access(&self, message: impl Into<String>) -> SourceError {
        SourceError::Access {
            source_name: self.dir_name(),
            message: message.into(),
        }
    }

    fn blob_err(&self, desc: &Descriptor, message: impl Into<String>) -> SourceError {
        SourceError::Blob {
            source_name: self.dir_name(),
            digest: desc.digest().to_string(),
            message: message.into(),
        }
    }
}

pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

impl Source for LayoutSource {
    fn describe(&self) -> String {
        format!("OCI layout {}", self.dir_name())
    }

    fn root(&self) -> Result<Descriptor, SourceError> {
        crate::imageref::resolve_layout(self.layout.index(), self.tag.as_deref())
            .map_err(|e| self.access(e.to_string()))
    }

    fn entries(&self) -> Option<Vec<Descriptor>> {
        Some(self.layout.index().manifests().clone())
    }

    fn name(&self) -> Option<String> {
        self.tag.clone()
    }

    fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>, SourceError> {
        let digest = Digest::parse(desc.digest().as_ref()).map_err(|m| self.blob_err(desc, m))?;
        if desc.size() > MAX_BLOB_SIZE {
            return Err(self.blob_err(
                desc,
                format!("{} bytes is more than the verifier reads", desc.size()),
            ));
        }
        crate::oci::read_checked(&self.layout.blob_path(&digest), &digest, desc.size())
            .map_err(|m| self.blob_err(desc, m))
    }

    fn tagged(&self, tag: &str) -> Result<Option<Descriptor>, SourceError> {
        Ok(self.layout.find(tag).cloned())
    }

    fn referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>, SourceError> {
        let mut out = Vec::new();
        for d in self.layout.index().manifests() {
            if d.media_type().as_ref() != MANIFEST_MEDIA_TYPE || d.artifact_type().is_none() {
                continue;
            }
            let bytes = self.fetch(d)?;
            let m: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| self.blob_err(d, format!("is not an image manifest: {e}")))?;
            let subject = m
                .subject()
                .as_ref()
                .and_then(|s| oci::kiln_digest(s.digest()).ok());
            if subject.as_ref() == Some(digest) {
                out.push(d.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{self, tests::scratch, LayoutWriter, CONFIG_MEDIA_TYPE, REF_NAME};
    use std::collections::BTreeMap;

    fn manifest(w: &LayoutWriter, subject: Option<&Descriptor>) -> Descriptor {
        let (config, _) = w
            .put_document(
                CONFIG_MEDIA_TYPE,
                &serde_json::json!({"n": subject.is_some()}),
            )
            .unwrap();
        let mut m = oci::new_manifest(config, vec![], &BTreeMap::new());
        if let Some(s) = subject {
            m.set_subject(Some(s.clone()));
            m.set_artifact_type(Some("application/vnd.dev.sigstore.bundle.v0.3+json".into()));
        }
        w.put_document(MANIFEST_MEDIA_TYPE, &m).unwrap().0
    }

    fn tagged(mut d: Descriptor, tag: &str) -> Descriptor {
        oci::set_annotations(
            &mut d,
            &BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]),
        );
        d
    }

    #[test]
    fn root_tags_referrers_and_tampering() {
        let dir = scratch("verify-layout");
        let w = LayoutWriter::create(&dir.join("l")).unwrap();
        let image = manifest(&w, None);
        let mut referrer = manifest(&w, Some(&image));
        referrer.set_artifact_type(Some("application/vnd.dev.sigstore.bundle.v0.3+json".into()));
        let digest = oci::kiln_digest(image.digest()).unwrap();
        let sig = tagged(
            manifest(&w, None),
            &crate::attest::cosign_tag(&digest, "sig"),
        );
        w.write_index(vec![
            tagged(image.clone(), "latest"),
            sig.clone(),
            referrer.clone(),
        ])
        .unwrap();
        let src = LayoutSource::open(&dir.join("l"), None).unwrap();
        // The one image that is not a cosign artifact or a referrer.
        assert_eq!(src.root().unwrap().digest(), image.digest());
        assert_eq!(
            src.tagged(&crate::attest::cosign_tag(&digest, "sig"))
                .unwrap()
                .unwrap()
                .digest(),
            sig.digest()
        );
        assert!(src.tagged("nope").unwrap().is_none());
        let refs = src.referrers(&digest).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].digest(), referrer.digest());
        assert!(src.referrers(&Digest([0; 32])).unwrap().is_empty());
        assert!(LayoutSource::open(&dir.join("l"), Some("other"))
            .unwrap()
            .root()
            .unwrap_err()
            .to_string()
            .contains("\"other\""));
        // A blob that does not hash to its digest is never handed out.
        let path = dir.join("l/blobs/sha256").join(digest.hex());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = src.fetch(&image).unwrap_err().to_string();
        assert!(
            e.contains(&digest.to_string()) && e.contains("does not match its digest"),
            "{e}"
        );
        assert!(src.fetch(&referrer).is_ok());
    }
}
