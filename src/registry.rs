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
pub use kiln_seed::regclient::{digest_tag, Credentials, RegistryRef};
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

pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
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
    #[error("layout {}: {error}", path.display())]
    Layout {
        path: PathBuf,
        #[source]
        error: oci::Error,
    },
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
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
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

/// How transient failures (HTTP 5xx and 429, refused or reset
/// connections, timeouts) are retried: `attempts` tries in all, waiting
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

fn is_index(media_type: &str) -> bool {
    media_type == INDEX_MEDIA_TYPE || media_type == DOCKER_LIST_MEDIA_TYPE
}

fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST_MEDIA_TYPE || media_type == DOCKER_MANIFEST_MEDIA_TYPE
}

fn parse_desc(v: &Value, what: &str) -> Result<Desc, String> {
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: descriptor without mediaType"))?;
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: descriptor without digest"))
        .and_then(|d| Digest::parse(d).map_err(|e| format!("{what}: {e}")))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{what}: descriptor without a size"))?;
    Ok(Desc {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: v.get("platform").cloned(),
    })
}

impl Doc {
    /// Parses a manifest or index whose bytes hash to `digest`.
    fn parse(bytes: Vec<u8>, digest: Digest, declared: &str, what: &str) -> Result<Doc, String> {
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(format!("{what}: larger than {MAX_DOCUMENT_SIZE} bytes"));
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{what}: not JSON: {e}"))?;
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
                "{what}: declares mediaType {media_type}, its descriptor says {declared}"
            ));
        }
        if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
            return Err(format!("{what}: schemaVersion is not 2"));
        }
        let list = |key: &str| -> Result<Vec<Desc>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|d| parse_desc(d, what)).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        let (manifests, blobs) = if is_index(&media_type) {
            (list("manifests")?, Vec::new())
        } else if is_manifest(&media_type) {
            let config = v
                .get("config")
                .ok_or_else(|| format!("{what}: manifest without config"))?;
            let mut blobs = vec![parse_desc(config, what)?];
            blobs.extend(list("layers")?);
            (Vec::new(), blobs)
        } else {
            return Err(format!(
                "{what}: media type {media_type:?} is neither an image manifest nor an index"
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
            subject: v.get("subject").map(|s| parse_desc(s, what)).transpose()?,
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
        let mut doc = Doc::parse(
            bytes,
            desc.digest,
            &desc.media_type,
            &desc.digest.to_string(),
        )
        .map_err(bad)?;
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

/// One descriptor of a layout's `index.json`.
#[derive(Clone, Debug)]
struct Entry {
    desc: Desc,
    /// `org.opencontainers.image.ref.name`.
    name: Option<String>,
}

fn layout_entries(layout: &Layout) -> Result<Vec<Entry>, RegistryError> {
    let path = layout.root().join("index.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).map_err(io_err("reading", &path))?)
        .map_err(|e| RegistryError::LayoutContent {
            path: path.clone(),
            message: format!("not JSON: {e}"),
        })?;
    let mut out = Vec::new();
    for d in v
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let desc = parse_desc(d, "index.json").map_err(|message| RegistryError::LayoutContent {
            path: path.clone(),
            message,
        })?;
        let ann = d.get("annotations");
        let name = ann
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .map(String::from);
        out.push(Entry { desc, name });
    }
    Ok(out)
}

/// The image a layout holds under `name`, resolved as every kiln command
/// resolves it ([`kiln_seed::imageref::resolve_layout`]: a name leads to
/// one entry or to none).
fn pick_root(
    layout: &Layout,
    entries: &[Entry],
    name: Option<&str>,
) -> Result<Desc, RegistryError> {
    let bad = |message: String| RegistryError::LayoutContent {
        path: layout.root().to_path_buf(),
        message,
    };
    let chosen = kiln_seed::imageref::resolve_layout(layout.index(), name)
        .map_err(|e| bad(format!("{e}")))?;
    let digest = oci::kiln_digest(chosen.digest()).map_err(bad)?;
    entries
        .iter()
        .find(|e| e.desc.digest == digest)
        .map(|e| e.desc.clone())
        .ok_or_else(|| bad(format!("{digest} is not listed in index.json")))
}

/// Artifacts attached to the image's digests, found in a layout: cosign's
/// tagged `.sig`/`.att`/`.sbom` manifests and referrer manifests (with a
/// `subject`). Anything about other digests is left alone.
struct Attachments {
    tagged: Vec<(String, Digest)>,
    referrers: Vec<Doc>,
    graph: Graph,
}

fn find_attachments(
    layout: &Layout,
    entries: &[Entry],
    subjects: &BTreeSet<Digest>,
) -> Result<Attachments, RegistryError> {
    let mut a = Attachments {
        tagged: Vec::new(),
        referrers: Vec::new(),
        graph: Graph::default(),
    };
    for Entry { desc, name, .. } in entries {
        let tagged_for = name
            .as_deref()
            .and_then(kiln_seed::imageref::attachment_name);
        let before = a.graph.docs.len();
        let relevant = match tagged_for {
            Some((d, suffix)) if !suffix.is_empty() => subjects.contains(&d),
            // A fallback index (`sha256-<hex>`) is rebuilt from the
            // referrers it lists, never copied as is.
            Some(_) => false,
            None => false,
        };
        if relevant {
            a.graph.add_from_layout(layout, desc, 0)?;
            a.tagged
                .push((name.clone().unwrap_or_default(), desc.digest));
            continue;
        }
        if !is_manifest(&desc.media_type) || subjects.contains(&desc.digest) {
            continue;
        }
        // A referrer? Read it to see its subject.
        let oci_desc = oci::descriptor(&desc.media_type, &desc.digest, desc.size);
        let Ok(bytes) = layout.read_blob(&oci_desc) else {
            continue;
        };
        let Ok(doc) = Doc::parse(bytes, desc.digest, &desc.media_type, "") else {
            continue;
        };
        if doc
            .subject
            .as_ref()
            .is_some_and(|s| subjects.contains(&s.digest))
        {
            a.graph.add_from_layout(layout, desc, 0)?;
            a.referrers.extend(
                a.graph.docs[before..]
                    .iter()
                    .filter(|d| d.digest == desc.digest)
                    .cloned(),
            );
        }
    }
    Ok(a)
}

/// A connected client for one repository.
struct Session {
    client: Client,
    target: RegistryRef,
    retry: Retry,
    retries: AtomicU32,
    concurrency: usize,
    mount_from: Vec<String>,
}

fn reference(r: &RegistryRef, what: &str) -> Reference {
    let repo = r.repository.clone();
    let registry = r.registry.clone();
    match what.strip_prefix("sha256:") {
        Some(_) => Reference::with_digest(registry, repo, what.to_string()),
        None => Reference::with_tag(registry, repo, what.to_string()),
    }
}

/// Transient: worth trying again.
fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408,
            None => !r.is_builder() && !r.is_redirect(),
        },
        OciDistributionError::ServerError { code, .. } => {
            *code >= 500 || *code == 429 || *code == 408
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Toomanyrequests)),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// The error and its sources on one line (reqwest hides the useful part,
/// e.g. "connection refused", in the chain).
fn describe(e: &OciDistributionError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

impl Session {
    async fn connect(target: &RegistryRef, opts: &Options) -> Result<Session, RegistryError> {
        let plain = opts.insecure || target.is_loopback();
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| RegistryError::Request {
            what: format!("setting up a client for {}", target.registry),
            error: describe(&e),
            attempts: 1,
        })?;
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => kiln_seed::regclient::credentials_from_files(
                &target.registry,
                &kiln_seed::regclient::auth_files(),
            )?,
        };
        let session = Session {
            client,
            target: target.clone(),
            retry: opts.retry.clone(),
            retries: AtomicU32::new(0),
            mount_from: opts.mount_from.clone(),
            concurrency: if opts.concurrency == 0 {
                4
            } else {
                opts.concurrency
            },
        };
        // Only registries that ask for it get credentials or a token
        // exchange: oci-client would otherwise ping /v2/ before every request.
        let challenge = session.probe(plain).await?;
        if matches!(challenge, Some(Challenge::Basic)) && credentials.is_none() {
            return Err(RegistryError::AuthRequired {
                registry: target.registry.clone(),
            });
        }
        if challenge.is_some() || credentials.is_some() {
            let auth = match credentials {
                Some(c) => RegistryAuth::Basic(c.username, c.password),
                None => RegistryAuth::Anonymous,
            };
            session
                .client
                .store_auth_if_needed(&target.registry, &auth)
                .await;
        }
        Ok(session)
    }

    /// `GET /v2/`: None when the registry lets anyone in, else its challenge.
    async fn probe(&self, plain: bool) -> Result<Option<Challenge>, RegistryError> {
        let url = format!(
            "{}://{}/v2/",
            if plain { "http" } else { "https" },
            self.target.registry
        );
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(15));
        if plain {
            // No TLS on this connection: skip loading the system's roots.
            builder = builder.tls_certs_only(Vec::new());
        }
        let client = builder.build().map_err(|e| RegistryError::Request {
            what: format!("GET {url}"),
            error: e.to_string(),
            attempts: 1,
        })?;
        let (status, challenge) = self
            .retrying(&format!("GET {url}"), || async {
                let r = client.get(&url).send().await?;
                let code = r.status().as_u16();
                if code >= 500 || code == 429 {
                    return Err(OciDistributionError::ServerError {
                        code,
                        url: url.clone(),
                        message: r.text().await.unwrap_or_default(),
                    });
                }
                let challenge = r
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .map(String::from);
                Ok((code, challenge))
            })
            .await?;
        match status {
            200 => Ok(None),
            401 => Ok(Some(
                challenge
                    .as_deref()
                    .and_then(parse_challenge)
                    .unwrap_or(Challenge::Basic),
            )),
            s => Err(RegistryError::Request {
                what: format!("GET {url}"),
                error: format!("HTTP {s}: this does not look like an OCI registry (the v2 API root should answer 200 or 401)"),
                attempts: 1,
            }),
        }
    }

    async fn retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && attempt < self.retry.attempts => {
                    let delay = self.retry.base_delay * 2u32.pow(attempt - 1);
                    eprintln!(
                        "kiln: {what}: {} (attempt {attempt} of {}; retrying in {} ms)",
                        describe(&e),
                        self.retry.attempts,
                        delay.as_millis()
                    );
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(RegistryError::Request {
                        what: what.to_string(),
                        error: describe(&e),
                        attempts: attempt,
                    })
                }
            }
        }
    }

    fn where_(&self) -> String {
        format!("{}/{}", self.target.registry, self.target.repository)
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let r = reference(&self.target, &digest.to_string());
        let d = digest.to_string();
        self.retrying(
            &format!("checking blob {digest} in {}", self.where_()),
            || self.client.blob_exists(&r, &d),
        )
        .await
    }

    /// Asks the registry to link `digest` from repository `from` (same
    /// registry); false when it cannot (the blob is not there, or the
    /// registry does not mount and opened an upload instead).
    async fn mount_blob(&self, digest: &Digest, from: &str) -> bool {
        // Only from a repository that has it: a refused mount opens an
        // upload session the registry keeps until it expires.
        let there = RegistryRef {
            repository: from.to_string(),
            ..self.target.clone()
        };
        let d = digest.to_string();
        let r = reference(&there, &d);
        if !self.client.blob_exists(&r, &d).await.unwrap_or(false) {
            return false;
        }
        let r = reference(&self.target, &digest.to_string());
        let source = Reference::with_tag(
            self.target.registry.clone(),
            from.to_string(),
            "latest".into(),
        );
        let d = digest.to_string();
        self.retrying(
            &format!("mounting blob {digest} from {from} in {}", self.where_()),
            || self.client.mount_blob(&r, &source, &d),
        )
        .await
        .is_ok()
    }

    /// Uploads `bytes` (already checked to hash to `digest`).
    async fn upload_blob(&self, digest: &Digest, bytes: Vec<u8>) -> Result<(), RegistryError> {
        let r = reference(&self.target, &digest.to_string());
        let d = digest.to_string();
        let data = bytes::Bytes::from(bytes);
        self.retrying(
            &format!("pushing blob {digest} to {}", self.where_()),
            || self.client.push_blob(&r, data.clone(), &d),
        )
        .await
        .map(|_| ())
    }

    /// The manifest at `what` (tag or digest), or None when there is none.
    async fn get_manifest(&self, what: &str) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
        let r = reference(&self.target, what);
        let desc = format!("fetching manifest {what} from {}", self.where_());
        let got = self
            .retrying(&desc, || async {
                match self
                    .client
                    .pull_manifest_raw(&r, &RegistryAuth::Anonymous, ACCEPT)
                    .await
                {
                    Ok(v) => Ok(Some(v)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let Some((bytes, _)) = got else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes);
        if let Some(expected) = what.strip_prefix("sha256:").and_then(Digest::from_hex) {
            if actual != expected {
                return Err(RegistryError::DigestMismatch {
                    what: desc,
                    expected,
                    actual,
                });
            }
        }
        Ok(Some((bytes.to_vec(), actual)))
    }

    async fn put_manifest(
        &self,
        what: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let r = reference(&self.target, what);
        let ct: reqwest::header::HeaderValue =
            media_type.parse().map_err(|_| RegistryError::Invalid {
                what: format!("manifest {what}"),
                message: format!("media type {media_type:?} is not a valid header value"),
            })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.retrying(
            &format!("pushing manifest {what} to {}", self.where_()),
            || self.client.push_manifest_raw(&r, body.clone(), ct.clone()),
        )
        .await
        .map(|_| ())
    }

    /// Referrers of `subject`, and whether they came from the fallback tag
    /// rather than the referrers API (known only when the API is absent:
    /// the fallback tag then holds exactly what was listed).
    async fn referrers_of(
        &self,
        subject: &Digest,
    ) -> Result<(BTreeSet<Digest>, bool), RegistryError> {
        let listed = self.listed_referrers(subject).await?;
        if listed.is_empty() {
            return Ok((listed, false));
        }
        let via_tag = match self.get_manifest(&digest_tag(subject, "")).await? {
            Some((bytes, _)) => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("manifests")?.as_array().map(|a| {
                        a.iter()
                            .filter_map(|m| Digest::parse(m.get("digest")?.as_str()?).ok())
                            .collect::<BTreeSet<_>>()
                    })
                })
                .is_some_and(|t| t == listed),
            None => false,
        };
        Ok((listed, via_tag))
    }

    /// Referrers of `subject` the registry lists (API or fallback tag).
    async fn listed_referrers(&self, subject: &Digest) -> Result<BTreeSet<Digest>, RegistryError> {
        let r = reference(&self.target, &subject.to_string());
        let index = self
            .retrying(
                &format!("listing referrers of {subject} in {}", self.where_()),
                || self.client.pull_referrers(&r, None),
            )
            .await?;
        Ok(index
            .manifests
            .iter()
            .filter_map(|m| Digest::parse(&m.digest).ok())
            .collect())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

/// What to push: an image layout, which entry of it (by ref name), and
/// where its signatures and attestations are (a layout; may be the same).
#[derive(Clone, Debug, Default)]
pub struct PushSource {
    pub layout: PathBuf,
    pub layout_ref: Option<String>,
    pub attachments: Option<PathBuf>,
}

/// Pushes the image in `source` to `target` (which must have a tag and no
/// digest), attached artifacts first and the tag last.
pub fn push(
    source: &PushSource,
    target: &RegistryRef,
    opts: &Options,
) -> Result<PushReport, RegistryError> {
    if target.digest.is_some() {
        return Err(RegistryError::Invalid {
            what: target.to_string(),
            message: "push to a tag (registry/repository:tag), not a digest".into(),
        });
    }
    for m in &opts.mount_from {
        RegistryRef::parse(&format!("{}/{m}", target.registry))?;
    }
    runtime()?.block_on(push_async(source, target, opts))
}

async fn push_async(
    source: &PushSource,
    target: &RegistryRef,
    opts: &Options,
) -> Result<PushReport, RegistryError> {
    let layout_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| RegistryError::Layout { path, error }
    };
    let layout = Layout::open(&source.layout).map_err(layout_err(&source.layout))?;
    let entries = layout_entries(&layout)?;
    let root = pick_root(&layout, &entries, source.layout_ref.as_deref())?;
    let mut graph = Graph::default();
    graph.add_from_layout(&layout, &root, 0)?;
    let subjects: BTreeSet<Digest> = graph.docs.iter().map(|d| d.digest).collect();

    let attachments = match &source.attachments {
        Some(dir) => {
            let al = Layout::open(dir).map_err(layout_err(dir))?;
            let ae = layout_entries(&al)?;
            Some((find_attachments(&al, &ae, &subjects)?, al))
        }
        None => None,
    };
    // Signatures travel with the image they sign: a name (or an extra
    // image) in a signed layout that leads to an image its signatures do
    // not cover is refused rather than pushed under them.
    if let Some((att, al)) = &attachments {
        let sig_tag = kiln_seed::attest::cosign_tag(&root.digest, "sig");
        let signed = att.tagged.iter().any(|(n, _)| *n == sig_tag)
            || att
                .referrers
                .iter()
                .any(|r| r.subject.as_ref().is_some_and(|s| s.digest == root.digest));
        if !signed {
            return Err(RegistryError::LayoutContent {
                path: al.root().to_path_buf(),
                message: format!(
                    "{} leads to {}, which the layout's signatures do not cover (no {sig_tag} and no signature referrer): it is not the signed image; push the signed image, or pass --no-signatures to push this one unsigned on purpose",
                    source
                        .layout_ref
                        .as_deref()
                        .map(|n| format!("the name {n:?}"))
                        .unwrap_or_else(|| "the layout's image".into()),
                    root.digest
                ),
            });
        }
    }

    // Every blob is checked before the first write: a damaged layout
    // writes nothing, even when the registry already has the damaged blob
    // (which would otherwise go unnoticed). The check runs on its own
    // thread while the registry is asked which blobs it has; uploads check
    // again what they read.
    let mut to_verify = vec![(
        layout.root().to_path_buf(),
        graph.blobs.values().cloned().collect::<Vec<_>>(),
    )];
    if let Some((att, al)) = &attachments {
        to_verify.push((
            al.root().to_path_buf(),
            att.graph.blobs.values().cloned().collect(),
        ));
    }
    let verification = tokio::task::spawn_blocking(move || verify_layout_blobs(&to_verify));

    let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
    let session = Session::connect(target, opts).await?;
    let mut report = PushReport {
        reference: format!("{}:{tag}@{}", target.name(), root.digest),
        digest: Some(root.digest),
        ..Default::default()
    };
    let present = present_blobs(&session, &graph).await?;
    let present_attached = match &attachments {
        Some((att, _)) => present_blobs(&session, &att.graph).await?,
        None => BTreeSet::new(),
    };
    verification
        .await
        .map_err(|e| RegistryError::Runtime(std::io::Error::other(e.to_string())))??;

    push_graph(&session, &layout, &graph, &present, &mut report).await?;

    if let Some((att, al)) = &attachments {
        push_graph(&session, al, &att.graph, &present_attached, &mut report).await?;
        for (name, digest) in &att.tagged {
            set_cosign_tag(&session, name, digest, &att.graph, &mut report).await?;
        }
        update_referrers(&session, &att.referrers, &mut report).await?;
    }

    // Last: the tag moves only now that everything it leads to is in place.
    let root_doc = graph.docs.last().expect("the root was added");
    set_tag(&session, &tag, &root_doc.digest, &graph, &mut report).await?;
    report.retries = session.retries.load(Ordering::Relaxed);
    Ok(report)
}

async fn set_tag(
    session: &Session,
    tag: &str,
    digest: &Digest,
    graph: &Graph,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let current = session.get_manifest(tag).await?.map(|(_, d)| d);
    put_tag(session, tag, graph.doc(digest), current, report).await
}

/// Writes `doc` under `tag` unless the tag's `current` digest is already its.
async fn put_tag(
    session: &Session,
    tag: &str,
    doc: &Doc,
    current: Option<Digest>,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    if current == Some(doc.digest) {
        report.tags_unchanged.push(tag.to_string());
    } else {
        session
            .put_manifest(tag, &doc.media_type, &doc.bytes)
            .await?;
        report.tags_set.push(tag.to_string());
    }
    Ok(())
}

/// Points a cosign `.sig`/`.att` tag at `digest`, unless the tag already
/// holds a manifest with other layers (another signer's, an earlier
/// build's attestation): then kiln's layers are appended to those, as
/// `cosign sign` does, so that pushing never removes a signature.
async fn set_cosign_tag(
    session: &Session,
    tag: &str,
    digest: &Digest,
    graph: &Graph,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let ours = graph.doc(digest);
    let existing = match session.get_manifest(tag).await? {
        Some((bytes, current)) if current != *digest => bytes,
        other => return put_tag(session, tag, ours, other.map(|(_, d)| d), report).await,
    };
    let merged = crate::signstore::merged_cosign_manifest(&existing, &ours.bytes).map_err(
        |message| RegistryError::Invalid {
            what: format!("tag {tag} in {}", session.where_()),
            message: format!(
                "{message}; kiln appends its signatures to a cosign tag but will not replace what it cannot read"
            ),
        },
    )?;
    let Some(crate::signstore::MergedManifest { config, manifest }) = merged else {
        report.tags_unchanged.push(tag.to_string());
        return Ok(());
    };
    let config_digest = Digest::of(&config);
    if !session.blob_exists(&config_digest).await? {
        session.upload_blob(&config_digest, config).await?;
    }
    session
        .put_manifest(tag, MANIFEST_MEDIA_TYPE, &manifest)
        .await?;
    report.tags_set.push(tag.to_string());
    report.tags_merged.push(tag.to_string());
    Ok(())
}

/// Blobs (verified as read, skipped when present), then manifests by digest.
/// Checks every blob of each (layout, blobs) against its digest and size.
fn verify_layout_blobs(sets: &[(PathBuf, Vec<Desc>)]) -> Result<(), RegistryError> {
    for (root, blobs) in sets {
        let layout = Layout::open(root).map_err(|error| RegistryError::Layout {
            path: root.clone(),
            error,
        })?;
        for b in blobs {
            layout
                .verify_blob(&oci::descriptor(&b.media_type, &b.digest, b.size))
                .map_err(|error| RegistryError::Layout {
                    path: root.clone(),
                    error,
                })?;
        }
    }
    Ok(())
}

/// The blobs of `graph` the repository already has (HEAD each, concurrently).
async fn present_blobs(
    session: &Session,
    graph: &Graph,
) -> Result<BTreeSet<Digest>, RegistryError> {
    let found: Vec<Option<Digest>> = stream::iter(graph.blobs.keys().copied())
        .map(|d| async move { Ok::<_, RegistryError>(session.blob_exists(&d).await?.then_some(d)) })
        .buffered(session.concurrency)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn push_graph(
    session: &Session,
    layout: &Layout,
    graph: &Graph,
    present: &BTreeSet<Digest>,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    #[derive(PartialEq)]
    enum Outcome {
        Present,
        Mounted,
        Uploaded,
    }
    let results: Vec<(BlobStat, Outcome)> = stream::iter(graph.blobs.values().cloned())
        .map(|desc| async move {
            let stat = BlobStat {
                digest: desc.digest,
                size: desc.size,
            };
            if present.contains(&desc.digest) {
                return Ok((stat, Outcome::Present));
            }
            for from in &session.mount_from {
                if session.mount_blob(&desc.digest, from).await
                    && session.blob_exists(&desc.digest).await?
                {
                    return Ok((stat, Outcome::Mounted));
                }
            }
            let path = layout.blob_path(&desc.digest);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(io_err("reading", &path))?;
            let what = format!("layout {}: blob {}", layout.root().display(), desc.digest);
            if bytes.len() as u64 != desc.size {
                return Err(RegistryError::Invalid {
                    what,
                    message: format!(
                        "is {} bytes, its descriptor says {}",
                        bytes.len(),
                        desc.size
                    ),
                });
            }
            let actual = Digest::of(&bytes);
            if actual != desc.digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: desc.digest,
                    actual,
                });
            }
            session.upload_blob(&desc.digest, bytes).await?;
            Ok::<_, RegistryError>((stat, Outcome::Uploaded))
        })
        .buffered(session.concurrency)
        .try_collect()
        .await?;
    for (stat, outcome) in results {
        match outcome {
            Outcome::Uploaded => {
                report.bytes_uploaded += stat.size;
                report.blobs_uploaded.push(stat);
            }
            Outcome::Mounted => report.blobs_mounted.push(stat),
            Outcome::Present => report.blobs_present.push(stat),
        }
    }
    for doc in &graph.docs {
        let d = doc.digest.to_string();
        if session.get_manifest(&d).await?.is_some() {
            report.manifests_present.push(doc.digest);
        } else {
            session
                .put_manifest(&d, &doc.media_type, &doc.bytes)
                .await?;
            report.manifests_pushed.push(doc.digest);
        }
    }
    Ok(())
}

/// Makes every referrer findable from its subject: registries with the
/// referrers API index `subject` on their own; for the others the
/// `sha256-<hex>` tag holds an image index of the referrers (the referrers
/// tag schema), which is read, extended and written back.
async fn update_referrers(
    session: &Session,
    referrers: &[Doc],
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let mut by_subject: BTreeMap<Digest, Vec<&Doc>> = BTreeMap::new();
    for r in referrers {
        if let Some(s) = &r.subject {
            by_subject.entry(s.digest).or_default().push(r);
        }
    }
    for (subject, docs) in by_subject {
        let listed = session.listed_referrers(&subject).await?;
        let missing: Vec<&&Doc> = docs
            .iter()
            .filter(|d| !listed.contains(&d.digest))
            .collect();
        for d in docs.iter().filter(|d| listed.contains(&d.digest)) {
            report.referrers.push(ReferrerStat {
                subject,
                manifest: d.digest,
                via: "listed",
            });
        }
        if missing.is_empty() {
            continue;
        }
        let tag = digest_tag(&subject, "");
        let mut index: Value = match session.get_manifest(&tag).await? {
            Some((bytes, _)) => {
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
                    what: format!("referrers index {tag} in {}", session.where_()),
                    message: format!("not JSON: {e}"),
                })?
            }
            None => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "manifests": [],
            }),
        };
        let list = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| RegistryError::Invalid {
                what: format!("referrers index {tag} in {}", session.where_()),
                message: "is not an image index".into(),
            })?;
        for d in &missing {
            let mut desc = serde_json::json!({
                "mediaType": d.media_type,
                "digest": d.digest.to_string(),
                "size": d.bytes.len(),
            });
            if let Some(at) = &d.artifact_type {
                desc["artifactType"] = Value::String(at.clone());
            }
            if !d.annotations.is_empty() {
                desc["annotations"] = serde_json::to_value(&d.annotations).expect("strings");
            }
            list.push(desc);
            report.referrers.push(ReferrerStat {
                subject,
                manifest: d.digest,
                via: "tag",
            });
        }
        let bytes = kiln_seed::json::canonical(&index);
        session.put_manifest(&tag, INDEX_MEDIA_TYPE, &bytes).await?;
        report.tags_set.push(tag);
    }
    Ok(())
}

/// Pulls `source` (a tag or digest) with all its platforms, and the
/// signatures, attestations and referrers attached to any of its digests,
/// into a new OCI layout at `dest`. The image is named `ref_name` in the
/// layout's index.json (default: the source's tag, else `latest`), each
/// platform manifest `<ref_name>-<arch>`, each attachment by its cosign tag.
pub fn pull(
    source: &RegistryRef,
    dest: &Path,
    ref_name: Option<&str>,
    with_attachments: bool,
    force: bool,
    opts: &Options,
) -> Result<PullReport, RegistryError> {
    // Even with --force, only a layout (or an empty directory) is ever
    // replaced: checked before anything is downloaded.
    crate::fsutil::check_replaceable(dest)?;
    if dest.symlink_metadata().is_ok() && !force {
        return Err(RegistryError::Exists(dest.to_path_buf()));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.partial-",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("layout")
        ))
        .tempdir_in(parent)
        .map_err(io_err("creating a temporary directory in", parent))?;
    let name = ref_name
        .map(String::from)
        .or_else(|| source.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let mut report = runtime()?.block_on(pull_async(
        source,
        tmp.path(),
        &name,
        with_attachments,
        opts,
    ))?;
    // Into place: the old layout (with --force) goes only once the new one is complete.
    crate::fsutil::replace_dir(&tmp.keep(), dest)?;
    report.layout = dest.to_path_buf();
    Ok(report)
}

struct PullState {
    blobs_dir: PathBuf,
    have: BTreeSet<Digest>,
    report: PullReport,
}

async fn pull_async(
    source: &RegistryRef,
    out: &Path,
    name: &str,
    with_attachments: bool,
    opts: &Options,
) -> Result<PullReport, RegistryError> {
    let session = Session::connect(source, opts).await?;
    let blobs_dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io_err("creating", &blobs_dir))?;
    let mut st = PullState {
        blobs_dir,
        have: BTreeSet::new(),
        report: PullReport {
            reference: source.to_string(),
            ..Default::default()
        },
    };
    let what = source.reference();
    let (bytes, digest) =
        session
            .get_manifest(&what)
            .await?
            .ok_or_else(|| RegistryError::Invalid {
                what: source.to_string(),
                message: "not found in the registry".into(),
            })?;
    let root = Doc::parse(bytes, digest, "", &source.to_string()).map_err(|message| {
        RegistryError::Invalid {
            what: source.to_string(),
            message,
        }
    })?;
    st.report.digest = Some(digest);
    let mut entries: Vec<Value> = Vec::new();
    let mut subjects = vec![digest];
    let root_entry = serde_json::json!({
        "mediaType": root.media_type,
        "digest": digest.to_string(),
        "size": root.bytes.len(),
        "annotations": { REF_NAME: name },
    });
    let children = pull_doc(&session, &mut st, root, 0).await?;
    entries.push(root_entry);
    for child in children {
        subjects.push(child.digest);
        let arch = child
            .platform
            .as_ref()
            .and_then(|p| p.get("architecture"))
            .and_then(Value::as_str)
            .map(String::from);
        let mut e = serde_json::json!({
            "mediaType": child.media_type,
            "digest": child.digest.to_string(),
            "size": child.size,
        });
        if let Some(p) = &child.platform {
            e["platform"] = p.clone();
        }
        if let Some(a) = arch {
            e["annotations"] = serde_json::json!({ REF_NAME: format!("{name}-{a}") });
        }
        entries.push(e);
    }

    if with_attachments {
        for subject in &subjects {
            for suffix in ["sig", "att", "sbom"] {
                let tag = digest_tag(subject, suffix);
                let Some((bytes, d)) = session.get_manifest(&tag).await? else {
                    continue;
                };
                let doc = Doc::parse(bytes, d, "", &format!("{} {tag}", session.where_()))
                    .map_err(|message| RegistryError::Invalid {
                        what: format!("{} {tag}", session.where_()),
                        message,
                    })?;
                let media_type = doc.media_type.clone();
                let size = doc.bytes.len();
                pull_doc(&session, &mut st, doc, 0).await?;
                entries.push(serde_json::json!({
                    "mediaType": media_type,
                    "digest": d.to_string(),
                    "size": size,
                    "annotations": { REF_NAME: tag },
                }));
                st.report.tags.push(tag);
            }
            let (listed, listed_via_tag) = session.referrers_of(subject).await?;
            for d in listed {
                if st.have.contains(&d) {
                    continue;
                }
                let Some((bytes, got)) = session.get_manifest(&d.to_string()).await? else {
                    continue;
                };
                let doc =
                    Doc::parse(bytes, got, "", &format!("referrer {d}")).map_err(|message| {
                        RegistryError::Invalid {
                            what: format!("{} referrer {d} of {subject}", session.where_()),
                            message,
                        }
                    })?;
                if doc.subject.as_ref().map(|s| s.digest) != Some(*subject) {
                    return Err(RegistryError::Invalid {
                        what: format!("{} referrer {d}", session.where_()),
                        message: format!(
                            "is listed as a referrer of {subject} but its subject is {}",
                            doc.subject
                                .as_ref()
                                .map(|s| s.digest.to_string())
                                .unwrap_or_else(|| "missing".into())
                        ),
                    });
                }
                let mut e = serde_json::json!({
                    "mediaType": doc.media_type,
                    "digest": d.to_string(),
                    "size": doc.bytes.len(),
                });
                if let Some(at) = &doc.artifact_type {
                    e["artifactType"] = Value::String(at.clone());
                }
                let mut ann = doc.annotations.clone();
                ann.retain(|k, _| k != REF_NAME);
                if !ann.is_empty() {
                    e["annotations"] = serde_json::to_value(&ann).expect("strings");
                }
                pull_doc(&session, &mut st, doc, 0).await?;
                entries.push(e);
                st.report.referrers.push(ReferrerStat {
                    subject: *subject,
                    manifest: d,
                    via: if listed_via_tag { "tag" } else { "api" },
                });
            }
        }
    }

    let layout_file = out.join("oci-layout");
    std::fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err("writing", &layout_file))?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": entries,
    });
    let index_file = out.join("index.json");
    std::fs::write(&index_file, kiln_seed::json::pretty(&index))
        .map_err(io_err("writing", &index_file))?;
    st.report.retries = session.retries.load(Ordering::Relaxed);
    Ok(st.report)
}

/// Stores a fetched document and everything below it; returns the
/// platform manifests of an index (for the layout's `<tag>-<arch>` names).
async fn pull_doc(
    session: &Session,
    st: &mut PullState,
    doc: Doc,
    depth: u32,
) -> Result<Vec<Desc>, RegistryError> {
    if depth > 8 {
        return Err(RegistryError::Invalid {
            what: doc.digest.to_string(),
            message: "image indexes nested too deeply".into(),
        });
    }
    let mut children = Vec::new();
    if st.have.insert(doc.digest) {
        write_blob(&st.blobs_dir, &doc.digest, &doc.bytes)?;
        st.report.manifests += 1;
        st.report.bytes += doc.bytes.len() as u64;
    }
    for m in &doc.manifests {
        children.push(m.clone());
        if st.have.contains(&m.digest) {
            continue;
        }
        let (bytes, d) = session
            .get_manifest(&m.digest.to_string())
            .await?
            .ok_or_else(|| RegistryError::Invalid {
                what: format!("{} {}", session.where_(), doc.digest),
                message: format!(
                    "lists manifest {} which the registry does not have",
                    m.digest
                ),
            })?;
        if bytes.len() as u64 != m.size {
            return Err(RegistryError::Invalid {
                what: format!("{} manifest {}", session.where_(), m.digest),
                message: format!("is {} bytes, its descriptor says {}", bytes.len(), m.size),
            });
        }
        let child =
            Doc::parse(bytes, d, &m.media_type, &m.digest.to_string()).map_err(|message| {
                RegistryError::Invalid {
                    what: format!("{} manifest {}", session.where_(), m.digest),
                    message,
                }
            })?;
        Box::pin(pull_doc(session, st, child, depth + 1)).await?;
    }
    let wanted: Vec<Desc> = doc
        .blobs
        .iter()
        .filter(|b| !st.have.contains(&b.digest))
        .cloned()
        .collect();
    let blobs_dir = st.blobs_dir.clone();
    let sizes: Vec<(Digest, u64)> = stream::iter(wanted.clone())
        .map(|b| {
            let blobs_dir = blobs_dir.clone();
            async move {
                fetch_blob(session, &blobs_dir, &b).await?;
                Ok::<_, RegistryError>((b.digest, b.size))
            }
        })
        .buffer_unordered(session.concurrency)
        .try_collect()
        .await?;
    for (d, size) in sizes {
        if st.have.insert(d) {
            st.report.blobs += 1;
            st.report.bytes += size;
        }
    }
    Ok(children)
}

fn write_blob(dir: &Path, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    let path = dir.join(digest.hex());
    std::fs::write(&path, bytes).map_err(io_err("writing", &path))
}

/// Downloads one blob into the layout, verifying size and digest; a
/// mismatch leaves nothing at the blob's path.
async fn fetch_blob(session: &Session, dir: &Path, desc: &Desc) -> Result<(), RegistryError> {
    let dest = dir.join(desc.digest.hex());
    let tmp = dir.join(format!(".partial-{}", desc.digest.hex()));
    let r = reference(&session.target, &desc.digest.to_string());
    let d = desc.digest.to_string();
    let what = format!("fetching blob {} from {}", desc.digest, session.where_());
    let result = session
        .retrying(&what, || async {
            let file = tokio::fs::File::create(&tmp).await?;
            session.client.pull_blob(&r, d.as_str(), file).await
        })
        .await;
    let check = async {
        result?;
        // oci-client checked the digest while streaming; size and digest
        // are checked again on what landed on disk.
        let bytes = tokio::fs::read(&tmp)
            .await
            .map_err(io_err("reading", &tmp))?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::Invalid {
                what: what.clone(),
                message: format!(
                    "is {} bytes, its descriptor says {}",
                    bytes.len(),
                    desc.size
                ),
            });
        }
        let actual = Digest::of(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                what: what.clone(),
                expected: desc.digest,
                actual,
            });
        }
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io_err("renaming", &tmp))
    };
    let r = check.await;
    if r.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_recognized() {
        let d = Digest([3; 32]);
        assert_eq!(
            kiln_seed::imageref::attachment_name(&digest_tag(&d, "sig")),
            Some((d, "sig"))
        );
        assert_eq!(
            kiln_seed::imageref::attachment_name(&digest_tag(&d, "")),
            Some((d, ""))
        );
        assert_eq!(kiln_seed::imageref::attachment_name("latest"), None);
        assert_eq!(kiln_seed::imageref::attachment_name("sha256-abc.sig"), None);
    }

    #[test]
    fn transient_errors_are_retried_and_others_are_not() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert!(is_transient(&server(503)));
        assert!(is_transient(&server(429)));
        assert!(!is_transient(&server(400)));
        assert!(!is_transient(&OciDistributionError::UnauthorizedError {
            url: "u".into()
        }));
        assert!(is_not_found(&server(404)));
    }

    #[test]
    fn documents_parse_and_mismatched_media_types_are_refused() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0303030303030303030303030303030303030303030303030303030303030303","size":10},"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec();
        let d = Digest::of(&m);
        let doc = Doc::parse(m.clone(), d, MANIFEST_MEDIA_TYPE, "x").unwrap();
        assert_eq!(doc.blobs.len(), 1);
        assert_eq!(doc.subject.unwrap().digest, Digest([3; 32]));
        assert_eq!(doc.artifact_type.as_deref(), Some(BUNDLE_ARTIFACT_TYPE));
        let e = Doc::parse(m, d, INDEX_MEDIA_TYPE, "x").unwrap_err();
        assert!(e.contains("declares mediaType"), "{e}");
    }
}
