//! The `probe` step: looks at the world from inside a build and writes
//! what it saw to `$out/probe.json`, so that a test can assert that the
//! sandbox isolates builds (no network, no signing key, no host tree).
//! It reports, it never judges: the test decides, and can fail.
//!
//! Input:
//!
//! ```json
//! {"nonce": "...", "connect": ["127.0.0.1:41234", "1.1.1.1:443"],
//!  "paths": ["/tmp/kiln-test/cosign.key", "/home", "/root", "/work/main"]}
//! ```
//!
//! `nonce` only makes each probe a new derivation (Nix would otherwise
//! reuse an earlier result). Output `probe.json`:
//!
//! ```json
//! {"connect": {"127.0.0.1:41234": {"connected": false, "error": "..."}},
//!  "paths": {"/home": {"exists": false, "readable": false, "error": "..."}},
//!  "root": ["build", "dev", "etc", "nix", "proc", "tmp"],
//!  "interfaces": ["lo"], "hostname": "localhost",
//!  "inputReadable": true, "env": ["HOME", "NIX_BUILD_TOP", ...]}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the probe input is not valid")]
    Input(#[source] serde_json::Error),
    #[error("probe input: {0:?} is not an IP:port address")]
    Address(String),
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        error: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    #[allow(dead_code)]
    nonce: String,
    #[serde(default)]
    connect: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Connect {
    connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct PathSeen {
    exists: bool,
    readable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Observations {
    connect: BTreeMap<String, Connect>,
    paths: BTreeMap<String, PathSeen>,
    root: Vec<String>,
    interfaces: Vec<String>,
    hostname: String,
    input_readable: bool,
    env: Vec<String>,
}

fn connect(addr: &SocketAddr) -> Connect {
    match TcpStream::connect_timeout(addr, Duration::from_secs(3)) {
        Ok(_) => Connect {
            connected: true,
            error: None,
        },
        Err(e) => Connect {
            connected: false,
            error: Some(e.to_string()),
        },
    }
}

fn look_at(path: &Path) -> PathSeen {
    let exists = path.symlink_metadata().is_ok();
    let read = if path.is_dir() {
        std::fs::read_dir(path).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read(&mut [0u8; 1]).map(|_| ()))
    };
    PathSeen {
        exists,
        readable: read.is_ok(),
        error: read.err().map(|e| e.to_string()),
    }
}

fn names_in(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Network interfaces the kernel shows this process (`/proc/net/dev`).
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    let mut obs = Observations {
        connect: BTreeMap::new(),
        paths: BTreeMap::new(),
        root: names_in("/"),
        interfaces: interfaces(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        input_readable: std::env::var_os("kilnInputPath").is_some_and(|p| std::fs::read(p).is_ok()),
        env: {
            let mut v: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        },
    };
    for a in &input.connect {
        let addr: SocketAddr = a.parse().map_err(|_| Error::Address(a.clone()))?;
        obs.connect.insert(a.clone(), connect(&addr));
    }
    for p in &input.paths {
        obs.paths.insert(p.clone(), look_at(Path::new(p)));
    }
    let io = |error| Error::Write {
        path: out.display().to_string(),
        error,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    std::fs::write(out.join("probe.json"), crate::json::pretty(&obs)).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observes_what_it_is_asked_about() {
        let dir = crate::oci::tests::scratch("probe");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let secret = dir.join("secret.key");
        std::fs::write(&secret, b"x").unwrap();
        let input = serde_json::json!({
            "nonce": "1",
            "connect": [open],
            "paths": [secret, dir.join("absent")],
        });
        let out = dir.join("out");
        run(input.to_string().as_bytes(), &out).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("probe.json")).unwrap()).unwrap();
        // Outside the sandbox the probe sees everything: the test of the
        // sandbox can tell the difference.
        assert_eq!(v["connect"][&open]["connected"], true, "{v}");
        assert_eq!(
            v["paths"][secret.to_str().unwrap()]["readable"],
            true,
            "{v}"
        );
        let absent = dir.join("absent");
        assert_eq!(v["paths"][absent.to_str().unwrap()]["exists"], false, "{v}");
        assert!(
            v["root"].as_array().unwrap().iter().any(|n| n == "proc"),
            "{v}"
        );
        assert!(matches!(
            run(br#"{"connect": ["nowhere"]}"#, &dir.join("o2")).unwrap_err(),
            Error::Address(_)
        ));
    }
}
