//! The one HTTP client kiln uses for the archive: retries what is worth
//! retrying (connection trouble, 5xx, 429) and reports a 404 as its own
//! case, because for a pinned .deb it means "the lock is stale", not "try
//! again".

use futures_util::StreamExt;
use std::time::Duration;

/// Attempts per request (the first one plus two retries).
pub const ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: the response is larger than the {limit} bytes expected")]
    TooLarge { url: String, limit: u64 },
    #[error("setting up the HTTP client: {0}")]
    Client(String),
}

impl HttpError {
    /// Worth another attempt: the server or the network may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Transport { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    backoff: Duration,
}

impl Http {
    pub fn new() -> Result<Http, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(Http {
            client,
            backoff: Duration::from_millis(500),
        })
    }

    /// Delay before attempt `n` (1-based, n >= 2): backoff, 3×backoff, ...
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff * 3u32.pow(attempt.saturating_sub(2))
    }

    /// One GET that must answer 200; the body is left to the caller.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response, HttpError> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| transport(url, &e))?;
        let status = resp.status().as_u16();
        match status {
            200 => Ok(resp),
            404 | 410 => Err(HttpError::NotFound {
                url: url.to_string(),
                status,
            }),
            _ => Err(HttpError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }

    /// The whole body (at most `limit` bytes), retrying transient failures.
    pub async fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, HttpError> {
        let mut attempt = 1;
        loop {
            match self.get_bytes_once(url, limit).await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(self.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn get_bytes_once(&self, url: &str, limit: u64) -> Result<Vec<u8>, HttpError> {
        let resp = self.get(url).await?;
        let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| transport(url, &e))?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(HttpError::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// reqwest's Display stops at the outermost layer ("error sending request");
/// the cause chain says what actually happened (refused, timed out, ...).
pub fn transport(url: &str, e: &reqwest::Error) -> HttpError {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let m = s.to_string();
        if !message.contains(&m) {
            message.push_str(": ");
            message.push_str(&m);
        }
        src = s.source();
    }
    HttpError::Transport {
        url: url.to_string(),
        message,
    }
}
