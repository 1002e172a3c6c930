//! Where the verifier gets what it checks: the image (index, manifests,
//! configs, layers) and what is attached to it (cosign signatures and
//! attestations under `sha256-<hex>.sig` / `.att` tags, OCI 1.1 referrers
//! holding Sigstore bundles).
//!
//! [`Source`] is deliberately small and dumb: it resolves names and hands
//! out bytes whose digest it has checked. Every decision (which signature
//! counts, what an attestation must say) is taken by its readers, so an OCI
//! layout ([`super::LayoutSource`], which also serves a build output in the
//! Nix store) and a registry (`crate::host::verify::registry`) are read by
//! the same code: [`super::tree`] walks an image from any of them.

use crate::digest::Digest;
use oci_spec::image::Descriptor;

/// Blobs larger than this are refused before they are fetched: the
/// verifier holds a blob in memory while it checks it.
pub const MAX_BLOB_SIZE: u64 = 2 << 30;

#[derive(Clone, Debug, thiserror::Error)]
pub enum SourceError {
    /// A blob is missing, has the wrong size or does not hash to its digest.
    #[error("{source_name}: blob {digest}: {message}")]
    Blob {
        source_name: String,
        digest: String,
        message: String,
    },
    /// The source itself cannot be read (no such layout, registry
    /// unreachable, malformed index.json, ...).
    #[error("{source_name}: {message}")]
    Access {
        source_name: String,
        message: String,
    },
}

/// A place holding an image and the signatures and attestations attached
/// to it. `Sync`: the verifier fetches an image's layers from several
/// threads at once.
pub trait Source: Sync {
    /// What is verified, for the report: a layout directory, a registry
    /// reference.
    fn describe(&self) -> String;

    /// The descriptor the reference names: an image index or a manifest.
    fn root(&self) -> Result<Descriptor, SourceError>;

    /// The bytes `desc` names, checked against its digest and size (a
    /// mismatch is a [`SourceError::Blob`], never returned bytes).
    fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>, SourceError>;

    /// The manifest tagged `tag` in the image's repository (for cosign's
    /// `sha256-<hex>.sig` and `sha256-<hex>.att`), or `None` when no such
    /// tag exists.
    fn tagged(&self, tag: &str) -> Result<Option<Descriptor>, SourceError>;

    /// Descriptors of the manifests whose `subject` is `digest` (the OCI
    /// 1.1 referrers API, or its tag-schema fallback), with their
    /// `artifactType` and annotations as the registry reports them.
    fn referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>, SourceError>;

    /// Every entry a consumer can reach by name or position (a layout's
    /// `index.json`), or `None` where the reference was resolved to one
    /// digest (a registry).
    fn entries(&self) -> Option<Vec<Descriptor>> {
        None
    }

    /// The layout entry name the reference gave (`DIR:NAME`, `--tag`).
    fn name(&self) -> Option<String> {
        None
    }

    /// The repository the image was read from (`registry/repository`),
    /// which its signatures must name; `None` for a layout.
    fn repository(&self) -> Option<String> {
        None
    }

    /// The reference pinned to the digest that was verified
    /// (`registry/repository@sha256:...`), where there is one.
    fn pinned(&self) -> Option<String> {
        None
    }
}
