//! A real OCI registry for the tests: Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1, with a minimal configuration written
//! for the test (filesystem storage in a temporary directory, no auth),
//! never the packaged default config (which listens on every address with
//! htpasswd). Stopped when dropped.
//!
//! Also: a raw HTTP client for looking at what is in the registry without
//! going through kiln, and a TCP proxy that puts faults between a client and
//! the real registry (cut every connection from a given request on, or
//! answer the first requests with 503).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    ip: IpAddr,
    htpasswd: Option<String>,
}

/// A user the [`Registry::start_with_auth`] registry knows, and its
/// password (bcrypt cost 4, so that checking it on every request is cheap).
pub const TEST_USER: &str = "kiln";
pub const TEST_PASSWORD: &str = "kiln-test-password";
const TEST_HTPASSWD: &str = "kiln:$2b$04$IldzzYCk36xIqg4yo8UhvOw2dlvq7wx6kNeVm.uouH54wM75vK/bi";

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts a fresh, empty registry on 127.0.0.1; panics (naming the
    /// log) if it does not answer `GET /v2/` within 20 s.
    pub fn start() -> Registry {
        Registry::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), None)
    }

    /// A registry that wants HTTP basic auth ([`TEST_USER`], [`TEST_PASSWORD`]).
    pub fn start_with_auth() -> Registry {
        Registry::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), Some(TEST_HTPASSWD.into()))
    }

    /// A registry listening on `ip` (e.g. the machine's non-loopback address).
    pub fn start_on(ip: IpAddr) -> Registry {
        Registry::start_with(ip, None)
    }

    fn start_with(ip: IpAddr, htpasswd: Option<String>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .unwrap();
        let mut reg = Registry {
            child: None,
            addr: SocketAddr::from((ip, 1)),
            dir,
            ip,
            htpasswd,
        };
        // The free port can be taken between probing and binding: try again.
        for _ in 0..3 {
            reg.addr = SocketAddr::from((reg.ip, free_port(reg.ip)));
            reg.spawn();
            if reg.wait_ready() {
                return reg;
            }
            reg.stop();
        }
        panic!(
            "docker-registry did not start on 127.0.0.1 (is the docker-registry package installed? scripts/setup installs it); log:\n{}",
            reg.log()
        );
    }

    fn spawn(&mut self) {
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n",
            self.dir.path().join("data").display(),
            self.addr
        );
        if let Some(h) = &self.htpasswd {
            let path = self.dir.path().join("htpasswd");
            std::fs::write(&path, format!("{h}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = self.dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "starting docker-registry (scripts/setup installs the docker-registry package)",
            );
        self.child = Some(child);
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            if http(self.addr, "GET", "/v2/", &[], b"")
                .is_ok_and(|r| r.status == 200 || r.status == 401)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Everything the registry logged so far (one access-log line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Access-log lines since byte `from` of the log that match `method`
    /// and contain `path_part` in the request target.
    pub fn requests_since(&self, from: usize, method: &str, path_part: &str) -> Vec<String> {
        let log = self.log();
        let needle = format!("\"{method} ");
        log.get(from..)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.find(&needle).is_some_and(|i| {
                    l[i + needle.len()..]
                        .split(' ')
                        .next()
                        .is_some_and(|t| t.contains(path_part))
                })
            })
            .map(String::from)
            .collect()
    }

    /// The registry's storage directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the registry (the data stays, [`Registry::restart`] brings it back).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(
            self.wait_ready(),
            "registry did not restart:\n{}",
            self.log()
        );
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http(self.addr, "GET", path, headers, b"").unwrap()
    }

    /// The manifest behind `reference` (a tag or digest) in `repo`, as the
    /// registry serves it to an OCI client.
    pub fn manifest(&self, repo: &str, reference: &str) -> Response {
        self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_MANIFESTS)],
        )
    }

    /// The digest a tag points at, or None when the tag does not exist.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let r = http(
            self.addr,
            "HEAD",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Accept", ACCEPT_MANIFESTS)],
            b"",
        )
        .unwrap();
        (r.status == 200).then(|| r.header("docker-content-digest").unwrap().to_string())
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list"), &[]);
        if r.status != 200 {
            return vec![];
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Replaces what `tag` points at with `body` (a manifest of `media_type`).
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Response {
        http(
            self.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            body,
        )
        .unwrap()
    }

    /// Uploads a blob in one request (POST then PUT with the digest).
    pub fn put_blob(&self, repo: &str, body: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)));
        let r = http(
            self.addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        let loc = r.header("location").unwrap().to_string();
        let path = loc
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(&loc)
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = http(
            self.addr,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        digest
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    if method != "HEAD" {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// What a [`FaultProxy`] does to the traffic it forwards.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward everything until a request line starts with this text (e.g.
    /// `PUT /v2/repo/manifests/`); from then on cut every connection, as if
    /// the registry had died at that moment.
    DieAt(String),
    /// Answer the first `n` connections with `503 Service Unavailable`, then
    /// forward.
    Unavailable(usize),
    /// Forward everything until a request line starts with this text; that
    /// request is never forwarded and its connection stays open, silent (a
    /// registry that hangs mid-transfer).
    StallAt(String),
    /// The first `times` requests whose line starts with `request` are
    /// answered with `status` and `body` (JSON when it starts with `{`,
    /// else "injected fault") by the proxy and never reach the registry;
    /// everything else is forwarded.
    ErrorAt {
        request: String,
        times: usize,
        status: u16,
        body: &'static str,
    },
    /// Every response waits this long before its first byte is forwarded
    /// (a slow registry or a congested link).
    Delay(Duration),
    /// Every request whose line starts with `request` is answered `200 OK`
    /// with this body by the proxy (a registry that serves a document of
    /// its own); everything else is forwarded.
    Answer {
        request: String,
        content_type: String,
        body: Vec<u8>,
    },
}

/// A TCP proxy in front of a real registry that injects [`Fault`]s.
pub struct FaultProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Request lines seen (client → registry), in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, d, c, r) = (
            stop.clone(),
            dead.clone(),
            connections.clone(),
            requests.clone(),
        );
        // Requests answered with an error so far (Fault::ErrorAt), over
        // every connection.
        let errors = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let n = c.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                match &fault {
                    Fault::Unavailable(k) if n < *k => {
                        let mut client = client;
                        // Read the request head so the client sees an answer, not a reset.
                        let mut buf = [0u8; 4096];
                        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = client.read(&mut buf);
                        answer(&mut client, "503 Service Unavailable", "text/plain", b"");
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    _ => {}
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                pipe(
                    client,
                    server,
                    fault.clone(),
                    d.clone(),
                    r.clone(),
                    errors.clone(),
                );
            }
        });
        FaultProxy {
            addr,
            stop,
            dead,
            connections,
            requests,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the proxy has cut the registry off.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers a request in the proxy's own name, then closes the connection.
fn answer(client: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    let _ = client.write_all(&bytes);
}

/// Forwards both directions; watches request lines on the way in.
fn pipe(
    client: TcpStream,
    server: TcpStream,
    fault: Fault,
    dead: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    errors: Arc<AtomicUsize>,
) {
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let dead2 = dead.clone();
    let delay = match &fault {
        Fault::Delay(d) => Some(*d),
        _ => None,
    };
    // registry → client
    std::thread::spawn(move || {
        let (mut from, mut to) = (s2, c2);
        let mut buf = [0u8; 65536];
        loop {
            if dead2.load(Ordering::SeqCst) {
                break;
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // A read that starts a response (responses are not
                    // pipelined, so one starts a read).
                    if let Some(d) = delay.filter(|_| buf[..n].starts_with(b"HTTP/1.")) {
                        std::thread::sleep(d);
                    }
                    if dead2.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
    // client → registry, scanning for request lines (a line that starts
    // with an HTTP method and ends in HTTP/1.1 is taken as one; layer bytes
    // will not look like that).
    std::thread::spawn(move || {
        let (mut from, mut to) = (client, server);
        let mut buf = [0u8; 65536];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            carry.extend_from_slice(&buf[..n]);
            let mut cut = false;
            while let Some(pos) = carry.windows(2).position(|w| w == b"\r\n") {
                let raw = String::from_utf8_lossy(&carry[..pos]).into_owned();
                carry.drain(..pos + 2);
                // A request that follows a binary body on a kept-alive
                // connection arrives glued to the body's last bytes: the
                // request line starts at the last method seen.
                let start = ["GET /", "HEAD /", "PUT /", "POST /", "PATCH /", "DELETE /"]
                    .iter()
                    .filter_map(|m| raw.rfind(m))
                    .max();
                let line = start.map(|i| raw[i..].to_string()).unwrap_or_default();
                if line.ends_with(" HTTP/1.1") {
                    requests.lock().unwrap().push(line.clone());
                    match &fault {
                        Fault::DieAt(p) if line.starts_with(p.as_str()) => {
                            dead.store(true, Ordering::SeqCst);
                            cut = true;
                        }
                        Fault::StallAt(p) if line.starts_with(p.as_str()) => {
                            // Hold both ends open and say nothing.
                            std::thread::sleep(Duration::from_secs(300));
                            cut = true;
                        }
                        Fault::ErrorAt {
                            request,
                            times,
                            status,
                            body,
                        } if line.starts_with(request.as_str())
                            && errors.fetch_add(1, Ordering::SeqCst) < *times =>
                        {
                            // The request (and whatever of its body came
                            // with it) is dropped; the client gets the error
                            // and a closed connection.
                            let (content_type, body) = if body.starts_with('{') {
                                ("application/json", body.as_bytes())
                            } else {
                                ("text/plain", b"injected fault".as_slice())
                            };
                            answer(
                                &mut from,
                                &format!("{status} Injected Fault"),
                                content_type,
                                body,
                            );
                            cut = true;
                        }
                        Fault::Answer {
                            request,
                            content_type,
                            body,
                        } if line.starts_with(request.as_str()) => {
                            answer(&mut from, "200 OK", content_type, body);
                            cut = true;
                        }
                        _ => {}
                    }
                }
            }
            if carry.len() > 8192 {
                let keep = carry.len() - 8192;
                carry.drain(..keep);
            }
            if cut || dead.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Waits until `path` exists (for logs written by a child).
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The machine's first non-loopback IPv4 address (for checking that kiln
/// refuses plain HTTP off loopback): the source address of the default
/// route (a UDP "connect" sends nothing), else `hostname -I`.
pub fn non_loopback_ip() -> IpAddr {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = routed {
        return ip;
    }
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("running hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .map(IpAddr::V4)
        .expect("this machine has no non-loopback IPv4 address")
}

/// The token a [`TokenGate`] hands out and then requires.
pub const GATE_TOKEN: &str = "kiln-test-bearer-token";

/// A bearer-token front for a real registry, the way public registries
/// work: `/v2/` requests without `Authorization: Bearer <token>` get a 401
/// with `WWW-Authenticate: Bearer realm="http://<gate>/token",service=...,scope=...`;
/// the realm hands out the token (anonymously, or only to [`TEST_USER`]
/// with basic auth when `require_basic`); authorized requests are
/// forwarded, one per connection.
pub struct TokenGate {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Token requests served (with the scope asked for).
    pub token_requests: Arc<Mutex<Vec<String>>>,
    /// Requests refused for want of a token.
    pub refused: Arc<AtomicUsize>,
}

impl TokenGate {
    pub fn start(upstream: SocketAddr, require_basic: bool) -> TokenGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, t, r) = (stop.clone(), token_requests.clone(), refused.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (t, r) = (t.clone(), r.clone());
                std::thread::spawn(move || gate_one(client, upstream, addr, require_basic, t, r));
            }
        });
        TokenGate {
            addr,
            stop,
            token_requests,
            refused,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TokenGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn respond(mut c: &TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(body.as_bytes());
    let _ = c.shutdown(Shutdown::Both);
}

fn gate_one(
    client: TcpStream,
    upstream: SocketAddr,
    me: SocketAddr,
    require_basic: bool,
    tokens: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicUsize>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = head[0].trim_end().to_string();
    let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let header = |name: &str| {
        head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if let Some(query) = target.strip_prefix("/token") {
        if require_basic {
            use base64::Engine as _;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{TEST_USER}:{TEST_PASSWORD}"))
            );
            if header("authorization").as_deref() != Some(want.as_str()) {
                respond(
                    &client,
                    "401 Unauthorized",
                    &[],
                    "{\"details\":\"bad credentials\"}",
                );
                return;
            }
        }
        tokens.lock().unwrap().push(query.to_string());
        respond(
            &client,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &format!("{{\"token\":\"{GATE_TOKEN}\",\"expires_in\":300}}"),
        );
        return;
    }
    if header("authorization").as_deref() != Some(&format!("Bearer {GATE_TOKEN}")) {
        refused.fetch_add(1, Ordering::SeqCst);
        let repo = target.strip_prefix("/v2/").and_then(|p| {
            ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
                .iter()
                .find_map(|k| p.find(k).map(|i| p[..i].to_string()))
        });
        let mut challenge = format!("Bearer realm=\"http://{me}/token\",service=\"kiln-test\"");
        if let Some(r) = repo {
            challenge.push_str(&format!(",scope=\"repository:{r}:pull,push\""));
        }
        respond(
            &client,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", challenge),
                ("Content-Type", "application/json".into()),
            ],
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}",
        );
        return;
    }
    // Forward this one request with Connection: close, then relay the answer.
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut out = String::new();
    for l in &head {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name == "connection" {
            continue;
        }
        if l == "\r\n" {
            out.push_str("Connection: close\r\n");
        }
        out.push_str(l);
    }
    if server.write_all(out.as_bytes()).is_err() {
        return;
    }
    let len: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if len > 0 && std::io::copy(&mut (&mut reader).take(len), &mut server).is_err() {
        return;
    }
    let mut c = client;
    let _ = std::io::copy(&mut server, &mut c);
    let _ = c.shutdown(Shutdown::Both);
}
