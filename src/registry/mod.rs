//! Pushing image layouts to OCI registries and pulling them back, through
//! the `oci-client` crate.
//!
//! Push order is what makes a failed push harmless: every blob first (each
//! checked against its digest as it is read from the layout, and skipped
//! when the registry already has it), then platform manifests by digest,
//! then the image index by digest, then the attached signatures and
//! attestations (legacy `sha256-<hex>.sig`/`.att` tags and OCI 1.1
//! referrers), and the image's tag last. Until that last request the tag
//! still points wherever it pointed before.
//!
//! Pull writes a complete layout into a temporary directory beside the
//! destination, verifying every manifest and blob against its digest, and
//! renames it into place only when everything is there.
//!
//! Plain HTTP is used for loopback registries (127.0.0.1, localhost, [::1])
//! or when the caller asks for it (`insecure`); everything else is HTTPS.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use kiln_seed::digest::Digest;
use kiln_seed::oci::{
    self, Layout, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MAX_DOCUMENT_SIZE, REF_NAME,
};
pub use kiln_seed::regclient::{digest_tag, normalized_repository, Credentials, RegistryRef};
use kiln_seed::regclient::{parse_challenge, Challenge};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use kiln_seed::oci::{DOCKER_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE};
/// The artifact type of a Sigstore bundle referrer (cosign 3).
pub const BUNDLE_ARTIFACT_TYPE: &str = kiln_seed::attest::bundle::BUNDLE_MEDIA_TYPE_V03;

const ACCEPT: &[&str] = &[
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] kiln_seed::regclient::RegError),
    // The cause is printed inline; not also a `source`, which `{:#}`
    // would print a second time.
    #[error("layout {}: {error}", path.display())]
    Layout { path: PathBuf, error: oci::Error },
    #[error("layout {}: {message}", path.display())]
    LayoutContent { path: PathBuf, message: String },
    #[error("{what}: {error}{}", retried(*.attempts))]
    Request {
        what: String,
        error: String,
        attempts: u32,
    },
    #[error("{what}: content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{} already exists (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Replace(#[from] crate::fsutil::ReplaceError),
    #[error("{op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("registry {registry} requires a user name and password (HTTP basic auth): pass --username with --password-stdin, or log in (REGISTRY_AUTH_FILE, ~/.docker/config.json)")]
    AuthRequired { registry: String },
    #[error("{registry} asks for a bearer token from {realm}, and getting one failed: {error}")]
    Token {
        registry: String,
        realm: String,
        error: String,
    },
    #[error("{registry} asks for authentication kiln does not speak (WWW-Authenticate: {challenge}); kiln speaks Basic and Bearer")]
    UnknownAuth { registry: String, challenge: String },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The signatures name another repository than the push's destination:
    /// a consumer's policy that matches the signed identity (containers'
    /// `sigstoreSigned` with `matchRepository`) would reject them there.
    #[error("{}: its signatures name {} as the image's repository, but it is pushed to {target}; podman, CRI-O and skopeo (a sigstoreSigned policy, signedIdentity matchRepository) would reject them there", layout.display(), signed.join(" and "))]
    IdentityMismatch {
        layout: PathBuf,
        signed: Vec<String>,
        target: String,
    },
}

fn retried(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |error| RegistryError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// How long kiln waits for a registry's TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long kiln waits for data from a registry (an answer, or the next
/// bytes of one) before the request fails, without a retry.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting request says that it still waits.
const WAITING_NOTICE: Duration = Duration::from_secs(10);

/// How transient failures (HTTP 5xx and 429, refused or reset
/// connections) are retried: `attempts` tries in all, waiting
/// `base_delay`, then twice that, and so on.
#[derive(Clone, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            base_delay: Duration::from_millis(200),
        }
    }
}

/// Connection settings shared by push and pull.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plain HTTP to a registry that is not on loopback.
    pub insecure: bool,
    /// Explicit credentials; when None, the credentials files
    /// (`REGISTRY_AUTH_FILE`, `~/.docker/config.json`, ...) are consulted,
    /// then anonymous access (with the bearer-token flow) is used.
    pub credentials: Option<Credentials>,
    pub retry: Retry,
    /// Blob transfers in flight at once (0 = 4).
    pub concurrency: usize,
    /// Repositories of the same registry to mount missing blobs from
    /// before uploading them (cross-repository blob mount).
    pub mount_from: Vec<String>,
    /// A progress bar of blob bytes on standard error (for a terminal).
    pub progress: bool,
}

/// The bytes of blobs moved so far, as one bar on standard error (hidden
/// unless asked for): each blob counts when it is complete and checked.
fn progress_bar(enabled: bool, verb: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {verb} {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
        ))
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.tick();
    bar
}

/// One blob as reported.
#[derive(Clone, Debug, Serialize)]
pub struct BlobStat {
    pub digest: Digest,
    pub size: u64,
}

/// What a push did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    /// `registry/repository:tag@digest`.
    pub reference: String,
    pub digest: Option<Digest>,
    pub blobs_uploaded: Vec<BlobStat>,
    pub blobs_present: Vec<BlobStat>,
    /// Blobs the registry linked from another repository (`--mount-from`).
    pub blobs_mounted: Vec<BlobStat>,
    pub bytes_uploaded: u64,
    pub manifests_pushed: Vec<Digest>,
    pub manifests_present: Vec<Digest>,
    /// Tags written (image tag, cosign `.sig`/`.att` tags, referrers fallback tags).
    pub tags_set: Vec<String>,
    /// Tags that already pointed at the right digest (or, for cosign tags,
    /// already held every signature pushed).
    pub tags_unchanged: Vec<String>,
    /// Cosign `.sig`/`.att` tags that held other signatures: kiln's were
    /// appended to them, as cosign does (also listed in `tags_set`).
    pub tags_merged: Vec<String>,
    /// Referrer manifests and how the registry learns of them: `api` (the
    /// registry indexes `subject` itself) or `tag` (the referrers tag schema).
    pub referrers: Vec<ReferrerStat>,
    /// Requests that failed transiently and were tried again.
    pub retries: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReferrerStat {
    pub subject: Digest,
    pub manifest: Digest,
    pub via: &'static str,
}

/// What a pull wrote.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    pub reference: String,
    pub digest: Option<Digest>,
    pub layout: PathBuf,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Cosign tags pulled (`sha256-<hex>.sig`, `.att`, `.sbom`).
    pub tags: Vec<String>,
    /// Referrer manifests pulled.
    pub referrers: Vec<ReferrerStat>,
    /// Listed as referrers but not in the repository (deleted since, or
    /// named by a registry that lists another repository's artifacts):
    /// not copied. A verifier reading the registry fails on them.
    pub referrers_missing: Vec<ReferrerStat>,
    pub retries: u32,
}

/// A manifest or index read from a layout or a registry, with the
/// descriptors it points at.
#[derive(Clone, Debug)]
struct Doc {
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
    /// Manifests (of an index).
    manifests: Vec<Desc>,
    /// Config and layers (of a manifest).
    blobs: Vec<Desc>,
    subject: Option<Desc>,
    artifact_type: Option<String>,
    annotations: BTreeMap<String, String>,
    platform: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Desc {
    media_type: String,
    digest: Digest,
    size: u64,
    platform: Option<Value>,
}

use kiln_seed::oci::{is_index, is_manifest};

/// `bytes` are what `desc` says (size and digest), else the error naming `what`.
fn check_blob(bytes: &[u8], desc: &Desc, what: String) -> Result<(), RegistryError> {
    match oci::check_blob(bytes, &desc.digest, desc.size) {
        Ok(()) => Ok(()),
        Err(oci::BlobMismatch::Digest { expected, actual }) => Err(RegistryError::DigestMismatch {
            what,
            expected,
            actual,
        }),
        Err(e @ oci::BlobMismatch::Size { .. }) => Err(RegistryError::Invalid {
            what,
            message: e.to_string(),
        }),
    }
}

fn parse_desc(v: &Value) -> Result<Desc, String> {
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| "descriptor without mediaType".to_string())?;
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| "descriptor without digest".to_string())
        .and_then(|d| Digest::parse(d).map_err(|e| e.to_string()))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| "descriptor without a size".to_string())?;
    Ok(Desc {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: v.get("platform").cloned(),
    })
}

impl Doc {
    /// Parses a manifest or index whose bytes hash to `digest`.
    fn parse(bytes: Vec<u8>, digest: Digest, declared: &str) -> Result<Doc, String> {
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(format!("larger than {MAX_DOCUMENT_SIZE} bytes"));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        // mediaType is optional in OCI manifests: then the descriptor's,
        // else what the document's shape says.
        let inferred = if v.get("manifests").is_some() {
            INDEX_MEDIA_TYPE
        } else {
            MANIFEST_MEDIA_TYPE
        };
        let media_type = v
            .get("mediaType")
            .and_then(Value::as_str)
            .or((!declared.is_empty()).then_some(declared))
            .unwrap_or(inferred)
            .to_string();
        if !declared.is_empty() && media_type != declared {
            return Err(format!(
                "declares mediaType {media_type}, its descriptor says {declared}"
            ));
        }
        if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
            return Err("schemaVersion is not 2".to_string());
        }
        let list = |key: &str| -> Result<Vec<Desc>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(parse_desc).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        let (manifests, blobs) = if is_index(&media_type) {
            (list("manifests")?, Vec::new())
        } else if is_manifest(&media_type) {
            let config = v
                .get("config")
                .ok_or_else(|| "manifest without config".to_string())?;
            let mut blobs = vec![parse_desc(config)?];
            blobs.extend(list("layers")?);
            (Vec::new(), blobs)
        } else {
            return Err(format!(
                "media type {media_type:?} is neither an image manifest nor an index"
            ));
        };
        let annotations = v
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Doc {
            digest,
            subject: v.get("subject").map(parse_desc).transpose()?,
            artifact_type: v
                .get("artifactType")
                .and_then(Value::as_str)
                .map(String::from),
            media_type,
            bytes,
            manifests,
            blobs,
            annotations,
            platform: None,
        })
    }
}

/// Everything reachable from a set of roots in a layout: manifests in push
/// order (children before their index) and blobs.
#[derive(Default)]
struct Graph {
    docs: Vec<Doc>,
    blobs: BTreeMap<Digest, Desc>,
    seen: BTreeSet<Digest>,
}

impl Graph {
    /// The document `digest` of the graph (tagged documents always are).
    fn doc(&self, digest: &Digest) -> &Doc {
        self.docs
            .iter()
            .find(|d| d.digest == *digest)
            .expect("tagged documents are in the graph")
    }

    fn add_from_layout(
        &mut self,
        layout: &Layout,
        desc: &Desc,
        depth: u32,
    ) -> Result<(), RegistryError> {
        if !self.seen.insert(desc.digest) {
            return Ok(());
        }
        let bad = |message: String| RegistryError::LayoutContent {
            path: layout.root().to_path_buf(),
            message,
        };
        if depth > 8 {
            return Err(bad(format!("{}: indexes nested too deeply", desc.digest)));
        }
        let oci_desc = oci::descriptor(&desc.media_type, &desc.digest, desc.size);
        let bytes = layout
            .read_blob(&oci_desc)
            .map_err(|error| RegistryError::Layout {
                path: layout.root().to_path_buf(),
                error,
            })?;
        let mut doc = Doc::parse(bytes, desc.digest, &desc.media_type)
            .map_err(|m| bad(format!("{}: {m}", desc.digest)))?;
        doc.platform = desc.platform.clone();
        for m in doc.manifests.clone() {
            self.add_from_layout(layout, &m, depth + 1)?;
        }
        for b in &doc.blobs {
            self.blobs.entry(b.digest).or_insert_with(|| b.clone());
        }
        self.docs.push(doc);
        Ok(())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

mod attachments;
mod pull;
mod push;
mod session;

use attachments::*;
pub use pull::pull;
pub use push::{push, PushSource};
use session::*;

#[cfg(test)]
mod tests;
