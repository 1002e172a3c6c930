//! A Sigstore instance for the tests: Fulcio's `POST /api/v2/signingCert`
//! and Rekor's `POST /api/v1/log/entries` on 127.0.0.1, answered with the
//! certificates and log entries of a test authority
//! (`kiln_seed::attest::keyless::testing`): the same formats and
//! signatures as the public-good instance, made with the test's keys.
//! The public-good Fulcio and Rekor cannot be reached from here.
//!
//! Like Fulcio, it checks the proof of possession (a signature over the
//! token's e-mail or subject by the key to certify) and names the token's
//! e-mail (else subject) and issuer in the certificate; unlike Fulcio it
//! does not verify the token's own signature (there is no identity
//! provider to ask). Like Rekor, it turns a proposed `dsse` entry into the
//! body Rekor logs.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use kiln_seed::attest::keyless::testing::{dsse_body, TestAuthority};
use kiln_seed::attest::keyless::tlog::{der_to_pem, pem_to_der};
use kiln_seed::attest::pubkey::PublicKey;
use kiln_seed::attest::Envelope;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Sigstore {
    pub addr: SocketAddr,
    /// Kinds of the entries logged so far (`hashedrekord`, `dsse`).
    pub logged: Arc<Mutex<Vec<String>>>,
    authority: Arc<TestAuthority>,
}

impl Sigstore {
    pub fn start() -> Sigstore {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let authority = Arc::new(TestAuthority::new(11));
        let logged = Arc::new(Mutex::new(Vec::new()));
        let (a, l) = (authority.clone(), logged.clone());
        let next_index = Arc::new(AtomicU64::new(40));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (a, l, n) = (a.clone(), l.clone(), next_index.clone());
                std::thread::spawn(move || serve(stream, &a, &l, &n));
            }
        });
        Sigstore {
            addr,
            logged,
            authority,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The trusted root that trusts this instance (and nothing else).
    pub fn trusted_root_json(&self) -> String {
        self.authority.trusted_root_json(&self.url(), &self.url())
    }
}

/// An unsigned OIDC token with these claims (the test Fulcio reads them).
pub fn identity_token(issuer: &str, email: &str) -> String {
    let claims = json!({"iss": issuer, "sub": "kiln-test", "email": email, "aud": "sigstore"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        URL_SAFE_NO_PAD.encode(b"unsigned")
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn serve(stream: TcpStream, a: &TestAuthority, logged: &Mutex<Vec<String>>, next: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0;
    let mut bearer = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => bearer = value.trim().strip_prefix("Bearer ").map(String::from),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = match path.as_str() {
        "/api/v2/signingCert" => fulcio(a, &request, bearer.as_deref()),
        "/api/v1/log/entries" => rekor(a, &request, logged, next),
        _ => (404, json!({"message": "not found"})),
    };
    let text = answer.to_string();
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn fulcio(a: &TestAuthority, request: &Value, bearer: Option<&str>) -> (u16, Value) {
    let token = request["credentials"]["oidcIdentityToken"]
        .as_str()
        .unwrap_or("");
    if bearer != Some(token) {
        return (
            401,
            json!({"message": "the bearer token is not the identity token"}),
        );
    }
    let Some(claims) = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return (400, json!({"message": "the identity token is not a JWT"}));
    };
    let subject = claims["email"]
        .as_str()
        .or(claims["sub"].as_str())
        .unwrap_or("");
    let issuer = claims["iss"].as_str().unwrap_or("");
    let Ok(key) = PublicKey::from_pem(
        request["publicKeyRequest"]["publicKey"]["content"]
            .as_str()
            .unwrap_or(""),
    ) else {
        return (
            400,
            json!({"message": "the public key is not a P-256 PEM key"}),
        );
    };
    let proof = STANDARD
        .decode(
            request["publicKeyRequest"]["proofOfPossession"]
                .as_str()
                .unwrap_or(""),
        )
        .unwrap_or_default();
    if key.verify(subject.as_bytes(), &proof).is_err() {
        return (
            400,
            json!({"message": "the proof of possession does not verify"}),
        );
    }
    let leaf = a.issue(key.verifying_key(), subject, issuer, now() - 5);
    (
        201,
        json!({"signedCertificateEmbeddedSct": {"chain": {"certificates": [
            der_to_pem(&leaf), der_to_pem(&a.issuing_der), der_to_pem(&a.root_der)
        ]}}}),
    )
}

fn rekor(
    a: &TestAuthority,
    request: &Value,
    logged: &Mutex<Vec<String>>,
    next: &AtomicU64,
) -> (u16, Value) {
    let kind = request["kind"].as_str().unwrap_or("").to_string();
    let body = match kind.as_str() {
        "hashedrekord" => kiln_seed::json::canonical(request),
        "dsse" => {
            let content = &request["spec"]["proposedContent"];
            let text = content["envelope"].as_str().unwrap_or("");
            let Ok(env) = Envelope::from_json(text.as_bytes()) else {
                return (400, json!({"message": "the envelope does not parse"}));
            };
            let cert = content["verifiers"][0]
                .as_str()
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|pem| pem_to_der(&pem))
                .unwrap_or_default();
            let sig = STANDARD.decode(&env.signatures[0].sig).unwrap_or_default();
            dsse_body(
                text.as_bytes(),
                &env.payload_bytes().unwrap_or_default(),
                &sig,
                &cert,
            )
        }
        other => {
            return (
                400,
                json!({"message": format!("kind {other:?} is not supported")}),
            )
        }
    };
    logged.lock().unwrap().push(kind);
    let index = next.fetch_add(1, Ordering::SeqCst);
    let entry = a.log(&body, index, now());
    (
        201,
        entry.to_rekor_response(&format!("{index:064x}")).unwrap(),
    )
}
