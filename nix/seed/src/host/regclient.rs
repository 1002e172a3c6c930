//! A small blocking client for OCI registries (distribution spec v1.1),
//! read-only: what the verifier needs to check an image where it is
//! published. Also the registry reference grammar and the credentials
//! file lookup, which the driver shares.
//!
//! Everything fetched by digest is checked against that digest before it
//! is returned; documents are size-limited before they are read. Plain
//! HTTP is used only for loopback registries or when asked
//! (`insecure`); anything else is HTTPS (rustls, webpki roots).
//! Authentication: anonymous, the bearer-token challenge flow
//! (`WWW-Authenticate: Bearer realm=...`, anonymous or with basic
//! credentials), and basic auth.

use crate::digest::{Digest, DigestWriter};
use crate::oci::MAX_DOCUMENT_SIZE;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What a registry is asked for when fetching a manifest: OCI and Docker
/// manifests and indexes.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Tries per request (transient failures only).
const SEND_ATTEMPTS: u32 = 3;

/// How long the verifier waits for a registry's TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long it waits for data (an answer, or its next bytes). A timeout
/// is final, never retried: a registry silent that long is down or hung.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RegError {
    #[error("registry reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("{method} {url}: {error}")]
    Transport {
        method: &'static str,
        url: String,
        error: String,
    },
    #[error("{method} {url}: HTTP {status}{}", detail(.body))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: access denied (HTTP 401{}); give credentials (--username/--password-stdin, REGISTRY_AUTH_FILE or ~/.docker/config.json)", detail(.body))]
    Unauthorized { url: String, body: String },
    #[error("token service {realm}: {reason}")]
    Token { realm: String, reason: String },
    #[error("{url}: content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{url}: {what} is larger than {limit} bytes")]
    TooLarge {
        url: String,
        what: &'static str,
        limit: u64,
    },
    #[error("{url}: {what} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        url: String,
        what: &'static str,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: the registry answered with a digest header {header:?} that is not the content's digest {actual}")]
    HeaderMismatch {
        url: String,
        header: String,
        actual: Digest,
    },
    #[error("{op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("credentials file {}: {reason}", path.display())]
    AuthFile { path: PathBuf, reason: String },
}

fn detail(body: &str) -> String {
    let b = body.trim();
    if b.is_empty() {
        String::new()
    } else {
        let short: String = b.chars().take(300).collect();
        format!(": {short}")
    }
}

/// `registry/repository[:tag][@sha256:<hex>]`. The registry part is
/// required (there is no default registry): a host name with a dot or a
/// port, `localhost`, or a bracketed IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RegistryRef {
    pub fn parse(s: &str) -> Result<RegistryRef, RegError> {
        let bad = |reason: &str| RegError::BadReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|e| bad(&format!("bad digest: {e}")))?),
            ),
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            bad("no registry: write it as <registry>/<repository>[:tag] (e.g. 127.0.0.1:5000/kiln/scratch-plus:latest)")
        })?;
        if !(registry.contains('.')
            || registry.contains(':')
            || registry == "localhost"
            || registry.starts_with('['))
        {
            return Err(bad(&format!(
                "{registry:?} is not a registry host (a host name with a dot or a port, localhost, or an IP address); kiln has no default registry"
            )));
        }
        check_registry(registry).map_err(|r| bad(&r))?;
        // A tag is after the last colon of the last path component.
        let (repository, tag) = match path.rfind(':') {
            Some(i) if !path[i..].contains('/') => (&path[..i], Some(path[i + 1..].to_string())),
            _ => (path, None),
        };
        check_repository(repository).map_err(|r| bad(&r))?;
        if let Some(t) = &tag {
            check_tag(t).map_err(|r| bad(&r))?;
        }
        Ok(RegistryRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Whether the registry is on this machine (plain HTTP is allowed).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }

    /// The digest if there is one, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// `registry/repository` (what a cosign signature names as its docker-reference).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `127.0.0.1`, `localhost` and `[::1]` (with or without a port).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn check_registry(r: &str) -> Result<(), String> {
    let ok = r
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !ok || r.is_empty() {
        return Err(format!("{r:?} is not a valid registry host[:port]"));
    }
    Ok(())
}

/// Path components: lowercase alphanumerics separated by `.`, `_`, `__` or dashes.
fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository name".into());
    }
    if repo.len() > 255 {
        return Err("repository name longer than 255 characters".into());
    }
    for comp in repo.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter()
                .all(|&c| alnum(c) || c == b'.' || c == b'_' || c == b'-')
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.");
        if !ok {
            return Err(format!(
                "repository component {comp:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
    if !ok {
        return Err(format!(
            "tag {t:?} must be 1-128 of [A-Za-z0-9_.-] and not start with '.' or '-'"
        ));
    }
    Ok(())
}

/// A repository in Docker's normalized form, as a containers policy
/// compares it: no registry means `docker.io`, a single component there
/// is under `library/`; a tag or digest is dropped (cosign's signatures
/// name the repository alone).
pub fn normalized_repository(name: &str) -> String {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let (domain, path) = match name.split_once('/') {
        Some((d, p))
            if d.contains('.') || d.contains(':') || d == "localhost" || d.starts_with('[') =>
        {
            (d, p.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !path.contains('/') {
        format!("{domain}/library/{path}")
    } else {
        format!("{domain}/{path}")
    }
}

/// The tag cosign stores a signature (`sig`), attestation (`att`) or SBOM
/// under for `digest`: `sha256-<hex>.<suffix>`; with an empty suffix, the
/// referrers tag schema's fallback tag `sha256-<hex>`.
pub fn digest_tag(digest: &Digest, suffix: &str) -> String {
    if suffix.is_empty() {
        format!("sha256-{}", digest.hex())
    } else {
        format!("sha256-{}.{suffix}", digest.hex())
    }
}

/// Username and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Where credentials are looked up, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json` (podman, skopeo),
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        files.push(Path::new(&d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        files.push(Path::new(&h).join(".docker/config.json"));
    }
    files
}

/// Credentials for `registry` from the first of `files` that has an entry
/// for it (`auths.<registry>.auth` = base64 of `user:password`, or
/// `username`/`password`). Credential helpers (`credsStore`) are not run.
pub fn credentials_from_files(
    registry: &str,
    files: &[PathBuf],
) -> Result<Option<Credentials>, RegError> {
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(RegError::Io {
                    op: "reading",
                    path: path.clone(),
                    error,
                })
            }
        };
        let bad = |reason: String| RegError::AuthFile {
            path: path.clone(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        let entry = auths.iter().find(|(k, _)| {
            let k = k
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            k.split('/').next() == Some(registry)
        });
        let Some((key, entry)) = entry else { continue };
        if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
            let decoded = STANDARD
                .decode(a)
                .map_err(|e| bad(format!("auths.{key}.auth is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|u| u.as_str()),
            entry.get("password").and_then(|p| p.as_str()),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Plain HTTP even though the registry is not on loopback.
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    /// Tries per request on transient failures (0: the default, 3).
    pub attempts: u32,
}

/// A manifest as fetched: bytes, the media type the registry declared,
/// and its digest (computed; checked against the reference when that is a
/// digest, and against `Docker-Content-Digest` when the registry sends it).
#[derive(Clone, Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// A read-only registry client for one registry host.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    credentials: Option<Credentials>,
    /// The `Authorization` header value that last worked.
    auth: Mutex<Option<String>>,
    attempts: u32,
}

impl Client {
    pub fn new(registry: &str, opts: &ClientOptions) -> Client {
        let scheme = if opts.insecure || is_loopback(registry) {
            "http"
        } else {
            "https"
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(ANSWER_TIMEOUT))
            .user_agent(concat!("kiln-verify/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: format!("{scheme}://{registry}"),
            credentials: opts.credentials.clone(),
            auth: Mutex::new(None),
            attempts: if opts.attempts == 0 {
                SEND_ATTEMPTS
            } else {
                opts.attempts
            },
        }
    }

    /// The URL of `path` (which starts with `/v2/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request, tried up to `attempts` times when the failure is
    /// transient (connection refused or reset, timeout, HTTP 5xx or 429).
    fn send(
        &self,
        method: &'static str,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegError> {
        let mut attempt = 1u32;
        loop {
            let mut req = match method {
                "HEAD" => self.agent.head(url),
                _ => self.agent.get(url),
            };
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let result = req.call();
            let transient = match &result {
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(e) => !matches!(e, ureq::Error::Timeout(_)),
            };
            if !transient || attempt >= self.attempts {
                return result.map_err(|e| RegError::Transport {
                    method,
                    url: url.to_string(),
                    error: match e {
                        ureq::Error::Timeout(_) => format!(
                            "no answer for {} s (or no connection within {} s): the registry is down or hung; the verifier gives up rather than wait",
                            ANSWER_TIMEOUT.as_secs(),
                            CONNECT_TIMEOUT.as_secs()
                        ),
                        e => e.to_string(),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(200 << (attempt - 1)));
            attempt += 1;
        }
    }

    /// GET or HEAD `path`, answering an auth challenge once.
    fn request(
        &self,
        method: &'static str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegError> {
        let url = self.url(path);
        let current = self.auth.lock().unwrap().clone();
        let resp = self.send(method, &url, accept, current.as_deref())?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        let header = match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => format!(
                "Bearer {}",
                self.token(&realm, service.as_deref(), scope.as_deref())?
            ),
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => basic_header(c),
                None => return Err(unauthorized(url, resp)),
            },
            None => return Err(unauthorized(url, resp)),
        };
        let resp = self.send(method, &url, accept, Some(&header))?;
        if resp.status().as_u16() == 401 {
            return Err(unauthorized(url, resp));
        }
        *self.auth.lock().unwrap() = Some(header);
        Ok(resp)
    }

    /// The bearer-token flow: GET realm?service=..&scope=.. (with basic
    /// credentials when there are any) → `{"token": ...}` or `{"access_token": ...}`.
    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegError> {
        let bad = |reason: String| RegError::Token {
            realm: realm.to_string(),
            reason,
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(bad("the realm is not an http(s) URL".into()));
        }
        let mut params = Vec::new();
        if let Some(s) = service {
            params.push(format!("service={}", crate::sbom::percent_encode(s)));
        }
        if let Some(s) = scope {
            params.push(format!("scope={}", crate::sbom::percent_encode(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if params.is_empty() {
            realm.to_string()
        } else {
            format!("{realm}{sep}{}", params.join("&"))
        };
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", basic_header(c));
        }
        let mut resp = req.call().map_err(|e| bad(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = read_limited(resp.body_mut(), 1 << 20, &url, "token response")?;
        if status != 200 {
            return Err(bad(format!(
                "HTTP {status}{}",
                detail(&String::from_utf8_lossy(&body))
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("answer is not JSON: {e}")))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(String::from)
            .ok_or_else(|| bad("answer has no token".into()))
    }

    /// The manifest behind `reference` (tag or digest) in `repo`, or None
    /// when the registry says it does not exist (404).
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Fetched>, RegError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let url = self.url(&path);
        let mut resp = self.request("GET", &path, Some(ACCEPT_MANIFESTS))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let header_digest = header(&resp, "docker-content-digest");
        let media_type = header(&resp, "content-type")
            .map(|m| m.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let bytes = read_limited(resp.body_mut(), MAX_DOCUMENT_SIZE, &url, "manifest")?;
        if status != 200 {
            return Err(status_error("GET", url, status, &bytes));
        }
        let digest = Digest::of(&bytes);
        if let Ok(expected) = Digest::parse(reference) {
            if expected != digest {
                return Err(RegError::DigestMismatch {
                    url,
                    expected,
                    actual: digest,
                });
            }
        }
        if let Some(h) = header_digest {
            if h.starts_with("sha256:") && h != digest.to_string() {
                return Err(RegError::HeaderMismatch {
                    url,
                    header: h,
                    actual: digest,
                });
            }
        }
        // Prefer the document's own mediaType over the header.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(String::from))
            .unwrap_or(media_type);
        Ok(Some(Fetched {
            bytes,
            media_type,
            digest,
        }))
    }

    /// The blob `digest` of `size` bytes, read into memory (at most `limit`
    /// bytes), verified.
    pub fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, RegError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let url = self.url(&path);
        if size > limit {
            return Err(RegError::TooLarge {
                url,
                what: "blob",
                limit,
            });
        }
        let mut out = Vec::new();
        self.blob_into(repo, digest, size, &mut out)?;
        Ok(out)
    }

    /// Streams the blob `digest` of `size` bytes into `w`, verifying size
    /// and digest (the caller must discard what was written on error).
    pub fn blob_into(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        w: &mut dyn Write,
    ) -> Result<(), RegError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let url = self.url(&path);
        let mut resp = self.request("GET", &path, None)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = read_limited(resp.body_mut(), 64 << 10, &url, "error")?;
            return Err(status_error("GET", url, status, &body));
        }
        let mut dw = DigestWriter::new(w);
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let n = io::copy(&mut (&mut reader).take(size + 1), &mut dw).map_err(|e| {
            RegError::Transport {
                method: "GET",
                url: url.clone(),
                error: e.to_string(),
            }
        })?;
        let (_, actual, _) = dw.into_parts();
        if n != size {
            return Err(RegError::SizeMismatch {
                url,
                what: "blob",
                expected: size,
                actual: n,
            });
        }
        if actual != *digest {
            return Err(RegError::DigestMismatch {
                url,
                expected: *digest,
                actual,
            });
        }
        Ok(())
    }

    /// The referrers of `digest` through the referrers API
    /// (`GET /v2/<repo>/referrers/<digest>`): Some(image index bytes), or
    /// None when the registry does not implement the API (404), in which
    /// case the caller falls back to the `sha256-<hex>` tag.
    pub fn referrers_api(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>, RegError> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        let url = self.url(&path);
        let mut resp = self.request(
            "GET",
            &path,
            Some("application/vnd.oci.image.index.v1+json"),
        )?;
        let status = resp.status().as_u16();
        let is_index = header(&resp, "content-type")
            .is_some_and(|c| c.starts_with("application/vnd.oci.image.index.v1+json"));
        let bytes = read_limited(resp.body_mut(), MAX_DOCUMENT_SIZE, &url, "referrers index")?;
        match status {
            200 if is_index => Ok(Some(bytes)),
            // Registries without the API answer 404 (or a 200 that is not
            // an index, e.g. an HTML page from a proxy).
            404 | 200 => Ok(None),
            _ => Err(status_error("GET", url, status, &bytes)),
        }
    }

    /// The referrers of `digest`: the referrers API when the registry has
    /// it, else the `sha256-<hex>` tag of the referrers tag schema. Returns
    /// the image index bytes (None when there are none) and whether it came
    /// from the tag.
    pub fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<(Vec<u8>, bool)>, RegError> {
        if let Some(b) = self.referrers_api(repo, digest)? {
            return Ok(Some((b, false)));
        }
        Ok(self
            .manifest(repo, &digest_tag(digest, ""))?
            .map(|m| (m.bytes, true)))
    }
}

fn basic_header(c: &Credentials) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
}

fn unauthorized(url: String, mut resp: ureq::http::Response<ureq::Body>) -> RegError {
    let body = read_limited(resp.body_mut(), 64 << 10, &url, "error").unwrap_or_default();
    RegError::Unauthorized {
        url,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn status_error(method: &'static str, url: String, status: u16, body: &[u8]) -> RegError {
    RegError::Status {
        method,
        url,
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

fn read_limited(
    body: &mut ureq::Body,
    limit: u64,
    url: &str,
    what: &'static str,
) -> Result<Vec<u8>, RegError> {
    let mut out = Vec::new();
    let mut r = body.with_config().limit(u64::MAX).reader();
    (&mut r)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegError::Transport {
            method: "GET",
            url: url.to_string(),
            error: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(RegError::TooLarge {
            url: url.to_string(),
            what,
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_registry_repo_tag_digest() {
        let r = RegistryRef::parse("127.0.0.1:5000/kiln/scratch-plus:latest").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kiln/scratch-plus");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/kiln/scratch-plus:latest");

        let d = Digest([7; 32]);
        let r = RegistryRef::parse(&format!("registry.example.com/a/b@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, Some(d));
        assert_eq!(r.reference(), d.to_string());
        assert!(!r.is_loopback());

        let r = RegistryRef::parse("localhost/x").unwrap();
        assert_eq!(r.reference(), "latest");
        assert!(r.is_loopback());
        let r = RegistryRef::parse("[::1]:5000/x:v1.2").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
        assert!(r.is_loopback());
        assert!(!is_loopback("127.0.0.1.example.com"));
        assert!(is_loopback("127.0.0.2:80"));
    }

    #[test]
    fn bad_references_name_what_is_wrong() {
        for (s, want) in [
            ("scratch-plus:latest", "no registry"),
            ("library/busybox", "not a registry host"),
            ("127.0.0.1:5000/Upper/case", "lowercase"),
            ("127.0.0.1:5000/x:-bad", "tag"),
            ("127.0.0.1:5000/x@sha256:abc", "bad digest"),
            ("127.0.0.1:5000/", "empty repository"),
        ] {
            let e = RegistryRef::parse(s).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(s), "{s}: {e}");
        }
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn credentials_come_from_the_first_file_that_has_the_registry() {
        let dir = crate::oci::tests::scratch("auth");
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(&a, r#"{"auths":{"other.example":{"auth":"eDp5"}}}"#).unwrap();
        std::fs::write(
            &b,
            format!(
                r#"{{"auths":{{"https://127.0.0.1:5000":{{"auth":"{}"}}}}}}"#,
                STANDARD.encode("kiln:pa:ss")
            ),
        )
        .unwrap();
        let c = credentials_from_files("127.0.0.1:5000", &[dir.join("missing"), a.clone(), b])
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "kiln");
        assert_eq!(c.password, "pa:ss");
        assert!(!format!("{c:?}").contains("pa:ss"));
        assert_eq!(
            credentials_from_files("127.0.0.1:5000", std::slice::from_ref(&a)).unwrap(),
            None
        );
        std::fs::write(&a, "{").unwrap();
        let e = credentials_from_files("x.example", &[a]).unwrap_err();
        assert!(e.to_string().contains("a.json"), "{e}");
    }

    #[test]
    fn digest_tags_follow_cosign_and_the_referrers_tag_schema() {
        let d = Digest([0xab; 32]);
        assert_eq!(digest_tag(&d, "sig"), format!("sha256-{}.sig", d.hex()));
        assert_eq!(digest_tag(&d, ""), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn repositories_are_compared_as_a_containers_policy_reads_them() {
        for (name, want) in [
            ("scratch-plus", "docker.io/library/scratch-plus"),
            ("kiln/scratch-plus", "docker.io/kiln/scratch-plus"),
            ("index.docker.io/library/x:1", "docker.io/library/x"),
            ("docker.io/x", "docker.io/library/x"),
            ("127.0.0.1:5000/kiln/x", "127.0.0.1:5000/kiln/x"),
            ("127.0.0.1:5000/kiln/x:v1", "127.0.0.1:5000/kiln/x"),
            ("localhost/x@sha256:00", "localhost/x"),
            ("ghcr.io/a/b:latest@sha256:00", "ghcr.io/a/b"),
        ] {
            assert_eq!(normalized_repository(name), want, "{name}");
        }
    }
}
