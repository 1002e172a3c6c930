//! Test support for the `kiln lock` / `kiln fetch` black-box tests: a tiny
//! HTTP server on 127.0.0.1 that serves a directory, and a Debian-shaped
//! archive (pool, Packages.xz, by-hash, InRelease clear-signed by an OpenPGP
//! key generated here) written into such a directory.

#![allow(dead_code)]

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey,
    SubkeyParamsBuilder,
};
use pgp::ser::Serialize as _;
use pgp::types::Password;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Serves files under `root`; everything else is a 404. Lives as long as
/// the test process (the accept thread is detached).
pub struct Server {
    pub port: u16,
    pub root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(BTreeMap::new()));
        let (log, fail, dir) = (requests.clone(), failures.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, fail, dir) = (log.clone(), fail.clone(), dir.clone());
                std::thread::spawn(move || serve(stream, &dir, &log, &fail));
            }
        });
        Server {
            port,
            root: root.to_path_buf(),
            requests,
            failures,
        }
    }

    /// The next `n` requests for `path` (as requested, `/...`) get a 503.
    pub fn fail_times(&self, path: &str, n: u32) {
        self.failures.lock().unwrap().insert(path.to_string(), n);
    }

    /// `http://127.0.0.1:PORT/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/{prefix}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    log: &Mutex<Vec<String>>,
    failures: &Mutex<BTreeMap<String, u32>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(path.clone());
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    let mut out = stream;
    if let Some(n) = failures.lock().unwrap().get_mut(&path).filter(|n| **n > 0) {
        *n -= 1;
        let _ = out.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let body = if rel.split('/').any(|c| c == "..") {
        None
    } else {
        std::fs::read(&file).ok().filter(|_| file.is_file())
    };
    let _ = match body {
        Some(b) => out
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            )
            .and_then(|_| out.write_all(&b)),
        None => out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A certify-only primary key with a signing subkey (like Debian's).
pub fn archive_key() -> SignedSecretKey {
    let sub = SubkeyParamsBuilder::default()
        .key_type(KeyType::Ed25519)
        .can_sign(true)
        .build()
        .unwrap();
    SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519)
        .can_certify(true)
        .primary_user_id("kiln test archive <test@kiln.invalid>".into())
        .subkey(sub)
        .build()
        .unwrap()
        .generate(rand_core::OsRng)
        .unwrap()
}

/// Writes the public half of `key` as a binary keyring file.
pub fn write_keyring(key: &SignedSecretKey, path: &Path) {
    std::fs::write(path, key.to_public_key().to_bytes().unwrap()).unwrap();
}

/// One binary package in a fixture archive. `content` becomes the .deb's
/// bytes (the tests never unpack them).
#[derive(Clone)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    /// `all`, or `None` for the architecture of the index.
    pub arch_all: bool,
    pub depends: String,
    pub content: Vec<u8>,
    /// Architectures whose index lists it (default both).
    pub only: Option<&'static str>,
    /// More control fields (`Breaks`, `Conflicts`, `Provides`), as written.
    pub fields: Vec<(&'static str, String)>,
}

pub fn pkg(name: &str, version: &str, depends: &str) -> Pkg {
    Pkg {
        name: name.into(),
        version: version.into(),
        arch_all: false,
        depends: depends.into(),
        content: format!("fake deb {name} {version}").into_bytes(),
        only: None,
        fields: Vec::new(),
    }
}

impl Pkg {
    pub fn field(mut self, name: &'static str, value: &str) -> Pkg {
        self.fields.push((name, value.into()));
        self
    }

    pub fn all(mut self) -> Pkg {
        self.arch_all = true;
        self
    }

    pub fn only(mut self, arch: &'static str) -> Pkg {
        self.only = Some(arch);
        self
    }

    fn arch(&self, index_arch: &str) -> String {
        if self.arch_all {
            "all".into()
        } else {
            index_arch.into()
        }
    }

    pub fn filename(&self, index_arch: &str) -> String {
        let first = &self.name[..1];
        format!(
            "pool/main/{first}/{}/{}_{}_{}.deb",
            self.name,
            self.name,
            // Pool file names leave the epoch out.
            self.version
                .split_once(':')
                .map_or(self.version.as_str(), |(_, v)| v),
            self.arch(index_arch)
        )
    }
}

/// Writes `<root>/dists/<suite>/...` and `<root>/pool/...` for `pkgs`,
/// signed by `key`. Returns the InRelease path.
pub fn write_suite(
    root: &Path,
    suite: &str,
    date: &str,
    pkgs: &[Pkg],
    key: &SignedSecretKey,
) -> PathBuf {
    let dists = root.join("dists").join(suite);
    let mut table = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        let mut text = String::new();
        for p in pkgs.iter().filter(|p| p.only.is_none_or(|o| o == arch)) {
            let file = p.filename(arch);
            let path = root.join(&file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &p.content).unwrap();
            text.push_str(&format!(
                "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <t@kiln.invalid>\n",
                p.name,
                p.version,
                p.arch(arch)
            ));
            if !p.depends.is_empty() {
                text.push_str(&format!("Depends: {}\n", p.depends));
            }
            for (k, v) in &p.fields {
                text.push_str(&format!("{k}: {v}\n"));
            }
            text.push_str(&format!(
                "Description: {}\n more\nFilename: {file}\nSize: {}\nSHA256: {}\n\n",
                p.name,
                p.content.len(),
                sha256_hex(&p.content)
            ));
        }
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(text.as_bytes()).unwrap();
        let xz = xz.finish().unwrap();
        let dir = dists.join(format!("main/binary-{arch}"));
        std::fs::create_dir_all(dir.join("by-hash/SHA256")).unwrap();
        std::fs::write(dir.join("Packages.xz"), &xz).unwrap();
        std::fs::write(dir.join("by-hash/SHA256").join(sha256_hex(&xz)), &xz).unwrap();
        table.insert(
            format!("main/binary-{arch}/Packages.xz"),
            (sha256_hex(&xz), xz.len()),
        );
        table.insert(
            format!("main/binary-{arch}/Packages"),
            (sha256_hex(text.as_bytes()), text.len()),
        );
    }
    let mut release = format!(
        "Origin: Debian\nLabel: Debian\nSuite: test-{suite}\nCodename: {suite}\nDate: {date}\n\
         Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main\nDescription: fixture\nSHA256:\n"
    );
    for (path, (hash, size)) in &table {
        release.push_str(&format!(" {hash} {size:>9} {path}\n"));
    }
    let signed = CleartextSignedMessage::sign(
        rand_core::OsRng,
        &release,
        &*key.secret_subkeys[0],
        &Password::empty(),
    )
    .unwrap()
    .to_armored_bytes(ArmorOptions::default())
    .unwrap();
    let path = dists.join("InRelease");
    std::fs::write(&path, signed).unwrap();
    path
}

/// `images/<name>/image.toml` with the given packages.
pub fn write_image(project: &Path, name: &str, include: &[&str], exclude: &[&str], extra: &str) {
    let dir = project.join("images").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "name = {name:?}\ndescription = \"test image\"\nsuites = [\"bookworm\", \"bookworm-security\"]\n{extra}\n\
             [packages]\ninclude = [{}]\nexclude = [{}]\n\n[accounts]\nrun_as = \"65532\"\n",
            list(include),
            list(exclude)
        ),
    )
    .unwrap();
}

/// Runs the real `kiln` binary on `project` with the mirror, keyring and
/// apt directory pointed at the fixtures (never at the machine's mirror).
pub fn kiln(project: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.arg("--project").arg(project).args(args);
    // An empty apt directory: only the overrides define the archive.
    let apt = project.join("apt-empty");
    std::fs::create_dir_all(&apt).unwrap();
    cmd.env("KILN_APT_DIR", &apt);
    for k in ["KILN_MIRROR", "KILN_SECURITY_MIRROR", "KILN_KEYRING"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn nix_available() -> bool {
    Command::new("nix-store")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Bytes that are new on every run (a store path nobody has added yet).
pub fn unique_blob(label: &str) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut b = format!(
        "!<arch>\nkiln test {label} {nanos} {}\n",
        std::process::id()
    )
    .into_bytes();
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    let mut r = [0u8; 32];
    f.read_exact(&mut r).unwrap();
    b.extend_from_slice(&r);
    b
}
