//! [`Source`] over an image in an OCI registry
//! (`host[:port]/repository[:tag|@sha256:<hex>]`), through the seed's
//! small blocking client ([`crate::regclient`]).
//!
//! The reference is resolved once: the root descriptor is the digest the
//! tag pointed at when the source was opened, and everything else is
//! fetched by digest, so a tag moved during verification cannot mix two
//! images. Manifests and indexes come from the manifests endpoint, every
//! other blob from the blobs endpoint; both are checked against their
//! digest and size before the checks see them. Attachments are found under
//! cosign's `sha256-<hex>.sig` / `.att` tags and through the referrers API,
//! falling back to the referrers tag schema (`sha256-<hex>`) on registries
//! that do not implement it.

use super::source::{Source, SourceError, MAX_BLOB_SIZE};
use crate::digest::Digest;
use crate::oci::{self, MAX_DOCUMENT_SIZE};
use crate::regclient::{self, Client, ClientOptions, Fetched, RegError, RegistryRef};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct RegistrySource {
    reference: RegistryRef,
    client: Client,
    root: Descriptor,
    /// Manifests already fetched (by digest): the root is fetched to
    /// resolve the tag, and the checks ask for some manifests twice.
    cache: Mutex<HashMap<Digest, Vec<u8>>>,
}

fn is_document(media_type: &str) -> bool {
    oci::is_manifest(media_type) || oci::is_index(media_type)
}

impl RegistrySource {
    /// Parses `reference`, connects (credentials from `opts`, else the
    /// usual credentials files) and resolves the tag to a digest.
    pub fn open(reference: &str, opts: &ClientOptions) -> Result<RegistrySource, SourceError> {
        let access = |e: RegError| SourceError::Access {
            source_name: reference.to_string(),
            message: e.to_string(),
        };
        let r = RegistryRef::parse(reference).map_err(access)?;
        Self::open_ref(r, opts)
    }

    /// Like [`RegistrySource::open`], for a parsed reference.
    pub fn open_ref(r: RegistryRef, opts: &ClientOptions) -> Result<RegistrySource, SourceError> {
        let reference = r.to_string();
        let reference = reference.as_str();
        let access = |e: RegError| SourceError::Access {
            source_name: reference.to_string(),
            message: e.to_string(),
        };
        let mut opts = opts.clone();
        if opts.credentials.is_none() {
            opts.credentials =
                regclient::credentials_from_files(&r.registry, &regclient::auth_files())
                    .map_err(access)?;
        }
        let client = Client::new(&r.registry, &opts);
        let fetched = client
            .manifest(&r.repository, &r.reference())
            .map_err(access)?
            .ok_or_else(|| SourceError::Access {
                source_name: reference.to_string(),
                message: format!(
                    "{} is not in the registry (no manifest {} in repository {})",
                    r,
                    r.reference(),
                    r.repository
                ),
            })?;
        if !is_document(&fetched.media_type) {
            return Err(SourceError::Access {
                source_name: reference.to_string(),
                message: format!(
                    "{} is a {:?}, not an image manifest or index",
                    r, fetched.media_type
                ),
            });
        }
        let root = oci::descriptor(
            &fetched.media_type,
            &fetched.digest,
            fetched.bytes.len() as u64,
        );
        let cache = Mutex::new(HashMap::from([(fetched.digest, fetched.bytes)]));
        Ok(RegistrySource {
            reference: r,
            client,
            root,
            cache,
        })
    }

    fn name(&self) -> String {
        self.reference.to_string()
    }

    fn access(&self, e: RegError) -> SourceError {
        SourceError::Access {
            source_name: self.name(),
            message: e.to_string(),
        }
    }

    fn blob_err(&self, desc: &Descriptor, message: impl Into<String>) -> SourceError {
        SourceError::Blob {
            source_name: self.name(),
            digest: desc.digest().to_string(),
            message: message.into(),
        }
    }

    /// A registry answer about one blob: a wrong digest or size, or the
    /// blob missing, is the blob's fault; anything else is access.
    fn classify(&self, desc: &Descriptor, e: RegError) -> SourceError {
        match e {
            RegError::DigestMismatch { actual, .. } => self.blob_err(
                desc,
                format!("content does not match its digest (it hashes to {actual})"),
            ),
            RegError::SizeMismatch { actual, .. } => self.blob_err(
                desc,
                format!("is {actual} bytes, its descriptor says {}", desc.size()),
            ),
            RegError::Status { status: 404, .. } => {
                self.blob_err(desc, "missing from the registry (HTTP 404)")
            }
            other => self.access(other),
        }
    }

    fn descriptor_of(f: &Fetched) -> Descriptor {
        oci::descriptor(&f.media_type, &f.digest, f.bytes.len() as u64)
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        format!("registry {}", self.name())
    }

    fn root(&self) -> Result<Descriptor, SourceError> {
        Ok(self.root.clone())
    }

    fn repository(&self) -> Option<String> {
        Some(self.reference.name())
    }

    fn pinned(&self) -> Option<String> {
        Some(format!("{}@{}", self.reference.name(), self.root.digest()))
    }

    fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>, SourceError> {
        let digest = Digest::parse(desc.digest().as_ref()).map_err(|m| self.blob_err(desc, m))?;
        let repo = &self.reference.repository;
        if is_document(desc.media_type().as_ref()) {
            if desc.size() > MAX_DOCUMENT_SIZE {
                return Err(self.blob_err(
                    desc,
                    format!("{} bytes is too large for a manifest", desc.size()),
                ));
            }
            let cached = self.cache.lock().unwrap().get(&digest).cloned();
            let bytes = match cached {
                Some(b) => b,
                None => {
                    let f = self
                        .client
                        .manifest(repo, &digest.to_string())
                        .map_err(|e| self.classify(desc, e))?
                        .ok_or_else(|| {
                            self.blob_err(desc, "missing from the registry (no such manifest)")
                        })?;
                    self.cache.lock().unwrap().insert(digest, f.bytes.clone());
                    f.bytes
                }
            };
            if bytes.len() as u64 != desc.size() {
                return Err(self.blob_err(
                    desc,
                    format!(
                        "is {} bytes, its descriptor says {}",
                        bytes.len(),
                        desc.size()
                    ),
                ));
            }
            return Ok(bytes);
        }
        self.client
            .blob(repo, &digest, desc.size(), MAX_BLOB_SIZE)
            .map_err(|e| self.classify(desc, e))
    }

    fn tagged(&self, tag: &str) -> Result<Option<Descriptor>, SourceError> {
        let Some(f) = self
            .client
            .manifest(&self.reference.repository, tag)
            .map_err(|e| self.access(e))?
        else {
            return Ok(None);
        };
        let desc = Self::descriptor_of(&f);
        self.cache.lock().unwrap().insert(f.digest, f.bytes);
        Ok(Some(desc))
    }

    fn referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>, SourceError> {
        let Some((bytes, from_tag)) = self
            .client
            .referrers(&self.reference.repository, digest)
            .map_err(|e| self.access(e))?
        else {
            return Ok(Vec::new());
        };
        let where_ = if from_tag {
            format!("referrers tag {}", regclient::digest_tag(digest, ""))
        } else {
            format!("referrers of {digest}")
        };
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Access {
                source_name: self.name(),
                message: format!("{where_}: not an image index: {e}"),
            })?;
        // Only image manifests can be referrers; a fallback index is
        // written by whoever can push, so what it lists is a claim that
        // the checks verify (each manifest's own subject included).
        Ok(index
            .manifests()
            .iter()
            .filter(|d| {
                matches!(d.media_type(), MediaType::ImageManifest)
                    || d.media_type().as_ref() == oci::MANIFEST_MEDIA_TYPE
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_references_are_access_errors_naming_the_reference() {
        let e = RegistrySource::open("no-registry-here", &ClientOptions::default())
            .err()
            .unwrap();
        assert!(
            matches!(&e, SourceError::Access { source_name, message }
                if source_name == "no-registry-here" && message.contains("no registry")),
            "{e}"
        );
    }

    #[test]
    fn an_unreachable_registry_is_an_access_error() {
        // Port 1 on loopback: nothing listens there.
        let e = RegistrySource::open("127.0.0.1:1/x:latest", &ClientOptions::default())
            .err()
            .unwrap();
        assert!(
            matches!(&e, SourceError::Access { message, .. } if message.contains("127.0.0.1:1")),
            "{e}"
        );
    }
}
