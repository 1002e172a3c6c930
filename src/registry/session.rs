//! A connected registry client for one repository: requests with retries
//! on transient errors, the bearer-token flow, and what kiln asks of a
//! registry (blobs, manifests, tags, referrers).

use super::*;

/// A connected client for one repository.
pub(super) struct Session {
    pub(super) client: Client,
    /// kiln's own requests (the probe, manifests read with a size limit),
    /// with the same timeouts as `client`.
    http: reqwest::Client,
    /// `http://registry` or `https://registry`.
    base: String,
    /// What `client` authenticates with, and the registry's challenge.
    auth: RegistryAuth,
    /// Whether the registry asked for a bearer token.
    bearer: bool,
    /// The Authorization header that last worked for kiln's own reads.
    auth_header: tokio::sync::Mutex<Option<String>>,
    /// The same for kiln's own uploads (a token with push scope).
    push_auth_header: tokio::sync::Mutex<Option<String>>,
    pub(super) target: RegistryRef,
    pub(super) retry: Retry,
    pub(super) retries: AtomicU32,
    pub(super) concurrency: usize,
    pub(super) mount_from: Vec<String>,
    /// Blob bytes moved ([`super::Options::progress`]).
    pub(super) progress: indicatif::ProgressBar,
}

impl Drop for Session {
    /// The bar goes away when the transfer is over, however it ended, so
    /// that the report or the error stands alone.
    fn drop(&mut self) {
        self.progress.finish_and_clear();
    }
}

pub(super) fn reference(r: &RegistryRef, what: &str) -> Reference {
    let repo = r.repository.clone();
    let registry = r.registry.clone();
    match what.strip_prefix("sha256:") {
        Some(_) => Reference::with_digest(registry, repo, what.to_string()),
        None => Reference::with_tag(registry, repo, what.to_string()),
    }
}

/// Transient: worth trying again.
/// Whether nothing listens where the registry should be: retrying will not
/// start one, so it is said once.
/// Whether `e` or any error in its source chain satisfies `test`.
fn in_chain(
    e: &OciDistributionError,
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        if test(x) {
            return true;
        }
        src = x.source();
    }
    false
}

pub(super) fn is_refused(e: &OciDistributionError) -> bool {
    in_chain(e, |x| {
        x.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// Whether `e` is a timeout: no connection within [`CONNECT_TIMEOUT`], or
/// no data within [`ANSWER_TIMEOUT`].
pub(super) fn is_timeout(e: &OciDistributionError) -> bool {
    if let OciDistributionError::RequestError(r) = e {
        if r.is_timeout() {
            return true;
        }
    }
    if let OciDistributionError::IoError(io) = e {
        if io.kind() == std::io::ErrorKind::TimedOut {
            return true;
        }
    }
    in_chain(e, |x| {
        x.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_timeout())
            || x.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// Whether trying `e`'s request again may help. Timeouts are final: a
/// registry that has sent nothing for [`ANSWER_TIMEOUT`] is down or hung,
/// and asking again would only turn one bounded wait into several.
pub(super) fn is_transient(e: &OciDistributionError) -> bool {
    if is_refused(e) || is_timeout(e) {
        return false;
    }
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
        // The network failing is transient; the local disk failing (full,
        // read-only, no permission) or a body that outgrows its descriptor
        // is not, and trying again would only repeat it.
        OciDistributionError::IoError(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::QuotaExceeded
                | std::io::ErrorKind::ReadOnlyFilesystem
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// The error and its sources on one line (reqwest hides the useful part,
/// e.g. "connection refused", in the chain).
pub(super) fn describe(e: &OciDistributionError) -> String {
    if is_refused(e) {
        return "connection refused: nothing is listening there (is the registry running, and on that port?)".to_string();
    }
    if is_timeout(e) {
        return format!(
            "no answer for {} s (or no connection within {} s): the registry is down or hung; kiln gives up rather than wait",
            ANSWER_TIMEOUT.as_secs(),
            CONNECT_TIMEOUT.as_secs()
        );
    }
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
    /// `verb` (`pushing`, `pulling`) labels the progress bar.
    pub(super) async fn connect(
        target: &RegistryRef,
        opts: &Options,
        verb: &str,
    ) -> Result<Session, RegistryError> {
        let plain = opts.insecure || target.is_loopback();
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(ANSWER_TIMEOUT),
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
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(ANSWER_TIMEOUT)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
        if plain {
            // No TLS on this connection: skip loading the system's roots.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder.build().map_err(|e| RegistryError::Request {
            what: format!("setting up a client for {}", target.registry),
            error: e.to_string(),
            attempts: 1,
        })?;
        let mut session = Session {
            client,
            http,
            base: format!(
                "{}://{}",
                if plain { "http" } else { "https" },
                target.registry
            ),
            auth: RegistryAuth::Anonymous,
            bearer: false,
            auth_header: tokio::sync::Mutex::new(None),
            push_auth_header: tokio::sync::Mutex::new(None),
            target: target.clone(),
            retry: opts.retry.clone(),
            retries: AtomicU32::new(0),
            mount_from: opts.mount_from.clone(),
            progress: super::progress_bar(opts.progress, verb),
            concurrency: if opts.concurrency == 0 {
                4
            } else {
                opts.concurrency
            },
        };
        // Only registries that ask for it get credentials or a token
        // exchange: oci-client would otherwise ping /v2/ before every request.
        let challenge = session.probe().await?;
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
            session.auth = auth.clone();
            session.bearer = matches!(challenge, Some(Challenge::Bearer { .. }));
            // The token is fetched now (and kept), so that a token service
            // that is down or refuses is named as such, not reported later
            // as a bare 401 from the registry.
            if let Some(Challenge::Bearer { realm, .. }) = &challenge {
                let op = if verb == "pushing" {
                    oci_client::RegistryOperation::Push
                } else {
                    oci_client::RegistryOperation::Pull
                };
                let r = reference(target, "latest");
                if let Err(e) = session.client.auth(&r, &auth, op).await {
                    let mut error = describe(&e);
                    if matches!(e, OciDistributionError::AuthenticationFailure(_))
                        && matches!(auth, RegistryAuth::Anonymous)
                    {
                        error.push_str(" (anonymous access refused: give credentials with --username and --password-stdin, or in REGISTRY_AUTH_FILE or ~/.docker/config.json)");
                    }
                    return Err(RegistryError::Token {
                        registry: target.registry.clone(),
                        realm: realm.clone(),
                        error,
                    });
                }
            }
        }
        Ok(session)
    }

    /// `GET /v2/`: None when the registry lets anyone in, else its challenge.
    pub(super) async fn probe(&self) -> Result<Option<Challenge>, RegistryError> {
        let url = format!("{}/v2/", self.base);
        let client = &self.http;
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
            401 => match challenge.as_deref().map(|h| (h, parse_challenge(h))) {
                Some((_, Some(c))) => Ok(Some(c)),
                // No challenge at all: the registry wants credentials.
                None => Ok(Some(Challenge::Basic)),
                Some((header, None)) => Err(RegistryError::UnknownAuth {
                    registry: self.target.registry.clone(),
                    challenge: header.to_string(),
                }),
            },
            s => Err(RegistryError::Request {
                what: format!("GET {url}"),
                error: format!("HTTP {s}: this does not look like an OCI registry (the v2 API root should answer 200 or 401)"),
                attempts: 1,
            }),
        }
    }

    /// `f`, tried again on transient failures, saying every few seconds
    /// that it still waits (a registry that never answers is never
    /// silent).
    pub(super) async fn retrying<T, F, Fut>(&self, what: &str, f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        self.retry_loop(what, f, true).await
    }

    /// [`Self::retrying`] for blob transfers, which move data while they
    /// take time (the progress bar shows them; a stall still ends after
    /// [`ANSWER_TIMEOUT`]).
    pub(super) async fn retrying_transfer<T, F, Fut>(
        &self,
        what: &str,
        f: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        self.retry_loop(what, f, false).await
    }

    async fn retry_loop<T, F, Fut>(
        &self,
        what: &str,
        mut f: F,
        notices: bool,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut attempt = 1;
        loop {
            // Never silent: while a request waits, say so every few seconds.
            let request = f();
            tokio::pin!(request);
            let started = tokio::time::Instant::now();
            let mut ticks = tokio::time::interval_at(started + WAITING_NOTICE, WAITING_NOTICE);
            let outcome = loop {
                tokio::select! {
                    r = &mut request => break r,
                    _ = ticks.tick(), if notices => eprintln!(
                        "kiln: {what}: still waiting after {} s (gives up after {} s without data)",
                        started.elapsed().as_secs(),
                        ANSWER_TIMEOUT.as_secs()
                    ),
                }
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && attempt < self.retry.attempts => {
                    self.back_off(what, &describe(&e), attempt).await;
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

    /// Says why `what` is tried again, counts the retry and waits the
    /// backoff for `attempt` (200 ms, 400 ms, ... by default).
    async fn back_off(&self, what: &str, reason: &str, attempt: u32) {
        let delay = self.retry.base_delay * 2u32.pow(attempt - 1);
        eprintln!(
            "kiln: {what}: {reason} (attempt {attempt} of {}; retrying in {} ms)",
            self.retry.attempts,
            delay.as_millis()
        );
        self.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    }

    pub(super) fn where_(&self) -> String {
        format!("{}/{}", self.target.registry, self.target.repository)
    }

    pub(super) async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
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
    pub(super) async fn mount_blob(&self, digest: &Digest, from: &str) -> bool {
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

    /// Uploads `bytes` (already checked to hash to `digest`) in one
    /// request: POST opens an upload session, PUT sends the bytes with the
    /// digest. A session whose PUT fails is cancelled (DELETE), so that a
    /// failed or retried push leaves no upload for the registry to keep
    /// until it expires.
    pub(super) async fn upload_blob(
        &self,
        digest: &Digest,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let data = bytes::Bytes::from(bytes);
        self.retrying_transfer(
            &format!("pushing blob {digest} to {}", self.where_()),
            || self.upload_once(digest, data.clone()),
        )
        .await
    }

    async fn upload_once(
        &self,
        digest: &Digest,
        data: bytes::Bytes,
    ) -> Result<(), OciDistributionError> {
        use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.target.repository);
        let opened = self
            .send_authorized(oci_client::RegistryOperation::Push, || {
                self.http.post(&start).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if opened.status().as_u16() != 202 {
            return Err(server_error(opened, &start).await);
        }
        let location = opened
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| {
                if l.starts_with("http://") || l.starts_with("https://") {
                    l.to_string()
                } else {
                    format!("{}{l}", self.base)
                }
            })
            .ok_or_else(|| {
                OciDistributionError::SpecViolationError(format!(
                    "{start}: 202 Accepted without a Location for the upload"
                ))
            })?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let sent = self
            .send_authorized(oci_client::RegistryOperation::Push, || {
                self.http
                    .put(&put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, data.len())
                    .body(data.clone())
            })
            .await;
        let failure = match sent {
            Ok(r) if r.status().as_u16() == 201 => return Ok(()),
            Ok(r) => server_error(r, &put).await,
            Err(e) => e,
        };
        self.cancel_upload(&location).await;
        Err(failure)
    }

    /// Best effort: a registry that has gone away keeps the session anyway.
    async fn cancel_upload(&self, location: &str) {
        let cancel = self.send_authorized(oci_client::RegistryOperation::Push, || {
            self.http.delete(location)
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cancel).await;
    }

    /// Sends one of kiln's own requests with the Authorization for `op`
    /// that last worked, fetched again once if the registry answers 401.
    async fn send_authorized(
        &self,
        op: oci_client::RegistryOperation,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OciDistributionError> {
        let slot = match op {
            oci_client::RegistryOperation::Push => &self.push_auth_header,
            oci_client::RegistryOperation::Pull => &self.auth_header,
        };
        let mut fresh = false;
        loop {
            let header = slot.lock().await.clone();
            let mut req = request();
            if let Some(h) = &header {
                req = req.header("Authorization", h);
            }
            let resp = req.send().await?;
            if resp.status().as_u16() == 401 && !fresh {
                *slot.lock().await = self.authorization(op).await?;
                fresh = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The manifest at `what` (tag or digest), or None when there is none.
    pub(super) async fn get_manifest(
        &self,
        what: &str,
    ) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
        let desc = format!("fetching manifest {what} from {}", self.where_());
        let url = format!(
            "{}/v2/{}/manifests/{what}",
            self.base, self.target.repository
        );
        let got = self
            .retrying(&desc, || async {
                self.get_limited(&url, MAX_DOCUMENT_SIZE).await
            })
            .await?;
        let Some(bytes) = got else {
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
        Ok(Some((bytes, actual)))
    }

    /// GET `url` with kiln's own client: None on 404; the body, read only
    /// up to `limit` bytes (a larger answer fails as soon as it is seen to
    /// be larger, whatever its Content-Length says). A 401 is answered
    /// once, with the token or credentials the registry's challenge asks
    /// for.
    async fn get_limited(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, OciDistributionError> {
        let accept = ACCEPT.join(", ");
        let mut resp = self
            .send_authorized(oci_client::RegistryOperation::Pull, || {
                self.http.get(url).header("Accept", &accept)
            })
            .await?;
        match resp.status().as_u16() {
            200..=299 => {}
            404 => return Ok(None),
            _ => return Err(server_error(resp, url).await),
        }
        let too_large = || {
            OciDistributionError::SpecViolationError(format!(
                "{url}: the answer is larger than {limit} bytes, more than a manifest may be"
            ))
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// The Authorization header for kiln's own requests: a token for `op`
    /// from the token service (through the registry client, which keeps
    /// it), or the basic credentials.
    async fn authorization(
        &self,
        op: oci_client::RegistryOperation,
    ) -> Result<Option<String>, OciDistributionError> {
        use base64::Engine as _;
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        match (self.bearer, &self.auth) {
            (true, _) => {
                let r = reference(&self.target, "latest");
                let token = self.client.auth(&r, &self.auth, op).await?;
                Ok(match (token, &self.auth) {
                    (Some(t), _) => Some(format!("Bearer {t}")),
                    (None, RegistryAuth::Basic(u, p)) => Some(basic(u, p)),
                    (None, _) => None,
                })
            }
            (_, RegistryAuth::Basic(u, p)) => Ok(Some(basic(u, p))),
            _ => Ok(None),
        }
    }

    pub(super) async fn put_manifest(
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
        let context = format!("pushing manifest {what} to {}", self.where_());
        let mut attempt = 1;
        loop {
            let pushed = self
                .retrying(&context, || {
                    self.client.push_manifest_raw(&r, body.clone(), ct.clone())
                })
                .await;
            match pushed {
                Err(e)
                    if attempt < self.retry.attempts
                        && names_unknown_blob(&e)
                        && self.references_present(bytes).await? =>
                {
                    // Another push of the same content was linking it into
                    // the repository as this manifest was checked: a
                    // filesystem-backed registry rewrites a blob's (or a
                    // manifest's) link in place, and a manifest checked in
                    // that moment reads it empty. What it names is there
                    // (asked just now), so the manifest is sent again.
                    self.back_off(
                        &context,
                        "the registry did not find blobs it holds (another push is linking them)",
                        attempt,
                    )
                    .await;
                    attempt += 1;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// Whether everything a manifest names is in the repository: an image
    /// manifest's config and layers, an index's manifests. False when it
    /// names nothing or cannot be read.
    async fn references_present(&self, manifest: &[u8]) -> Result<bool, RegistryError> {
        let Ok(v) = serde_json::from_slice::<Value>(manifest) else {
            return Ok(false);
        };
        let digests = |descriptors: Vec<&Value>| -> Vec<Digest> {
            descriptors
                .into_iter()
                .filter_map(|d| Digest::parse(d.get("digest")?.as_str()?).ok())
                .collect()
        };
        let list = |key: &str| v.get(key).and_then(Value::as_array).into_iter().flatten();
        let blobs = digests(v.get("config").into_iter().chain(list("layers")).collect());
        let manifests = digests(list("manifests").collect());
        if blobs.is_empty() && manifests.is_empty() {
            return Ok(false);
        }
        for d in &blobs {
            if !self.blob_exists(d).await? {
                return Ok(false);
            }
        }
        for d in &manifests {
            if self.get_manifest(&d.to_string()).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Referrers of `subject`, and whether they came from the fallback tag
    /// rather than the referrers API (known only when the API is absent:
    /// the fallback tag then holds exactly what was listed).
    pub(super) async fn referrers_of(
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
    pub(super) async fn listed_referrers(
        &self,
        subject: &Digest,
    ) -> Result<BTreeSet<Digest>, RegistryError> {
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

/// Whether a failed manifest push was refused for a blob the registry did
/// not find (the distribution spec's `MANIFEST_BLOB_UNKNOWN`, in the body
/// the error quotes).
fn names_unknown_blob(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Request { error, .. } if error.contains("MANIFEST_BLOB_UNKNOWN"))
}

/// A registry's answer that is not the one expected, as the registry
/// client reports it (so that retrying and messages treat both alike).
async fn server_error(resp: reqwest::Response, url: &str) -> OciDistributionError {
    let code = resp.status().as_u16();
    if code == 401 {
        return OciDistributionError::UnauthorizedError { url: url.into() };
    }
    OciDistributionError::ServerError {
        code,
        url: url.into(),
        message: resp.text().await.unwrap_or_default(),
    }
}
