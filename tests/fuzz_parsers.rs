//! Fuzzing of every parser of outside input, with proptest (stable Rust:
//! this machine has no nightly toolchain for cargo-fuzz). Each target
//! takes a seed corpus (tests/fuzz-corpus, and the repository's own image
//! definitions and policy data), mutates it (bit flips, byte changes,
//! insertions of bytes that parsers care about, deletions, truncations,
//! duplications, splices of two corpus files) or makes random bytes, and
//! feeds the result to the parser. A parser may refuse its input; it may
//! not panic, hang or accept what it must refuse.
//!
//! In CI each target runs a few hundred cases (fewer for the slow ones),
//! `KILN_FUZZ_CASES` to change. For a long run, give the
//! seconds per target: `KILN_FUZZ_SECONDS=600 cargo test --release --test
//! fuzz_parsers -- --test-threads 2 --nocapture` (each target then prints
//! its executions). A failure prints the smallest failing input proptest
//! found.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::Path;
use std::time::{Duration, Instant};

/// One change to an input.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    InsertToken(usize, usize),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
    Splice(usize, usize, usize),
}

/// Bytes that the parsers here treat specially.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\n\n",
    b": ",
    b" ",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"=",
    b"-----BEGIN PGP SIGNATURE-----\n",
    b"-----END PGP SIGNATURE-----\n",
    b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n",
    b"../",
    b"/",
    b"\0",
    b"\xff",
    b"(>= 1:2.0~rc1)",
    b" | ",
    b"[amd64]",
    b"<!nocheck>",
    b"99999999999999999999",
    b"-1",
    b"null",
    b"\"\\u0000\"",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (at, 0..TOKENS.len()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (at, 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        at.prop_map(Mutation::Truncate),
        (at, 1usize..256).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (at, any::<usize>(), any::<usize>()).prop_map(|(i, f, j)| Mutation::Splice(i, f, j)),
    ]
}

fn apply(mut v: Vec<u8>, corpus: &[Vec<u8>], m: &Mutation) -> Vec<u8> {
    let pos = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::FlipBit(i, b) if !v.is_empty() => {
            let i = i % v.len();
            v[i] ^= 1 << b;
        }
        Mutation::SetByte(i, b) if !v.is_empty() => {
            let i = i % v.len();
            v[i] = *b;
        }
        Mutation::Insert(i, bytes) => {
            let i = pos(*i, v.len());
            v.splice(i..i, bytes.iter().copied());
        }
        Mutation::InsertToken(i, t) => {
            let i = pos(*i, v.len());
            v.splice(i..i, TOKENS[*t].iter().copied());
        }
        Mutation::Delete(i, n) if !v.is_empty() => {
            let i = i % v.len();
            let end = (i + n).min(v.len());
            v.drain(i..end);
        }
        Mutation::Truncate(i) => {
            let i = pos(*i, v.len());
            v.truncate(i);
        }
        Mutation::Duplicate(i, n) if !v.is_empty() => {
            let i = i % v.len();
            let end = (i + n).min(v.len());
            let part = v[i..end].to_vec();
            v.splice(end..end, part);
        }
        Mutation::Splice(i, f, j) => {
            let other = &corpus[f % corpus.len()];
            if !other.is_empty() {
                let j = j % other.len();
                let i = pos(*i, v.len());
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
        }
        _ => {}
    }
    v
}

/// A corpus file mutated a few times, or (one case in eight) random bytes.
fn input(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = corpus.len();
    let mutated = (0..n, prop::collection::vec(mutation(), 0..8)).prop_map(move |(k, ms)| {
        ms.iter()
            .fold(corpus[k].clone(), |v, m| apply(v, &corpus, m))
    });
    prop_oneof![7 => mutated, 1 => prop::collection::vec(any::<u8>(), 0..512)]
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let c = read_dir_files(&common::project().join("tests/fuzz-corpus").join(name));
    assert!(!c.is_empty(), "no seed corpus for {name}");
    c
}

/// Runs `target` on inputs made from `corpus`: a few hundred cases, or for
/// `KILN_FUZZ_SECONDS` seconds. Each input must be handled within
/// `per_case` (a hang is a failure too).
fn fuzz(name: &str, corpus: Vec<Vec<u8>>, per_case: Duration, target: impl Fn(&[u8])) {
    fuzz_n(name, corpus, per_case, 300, target)
}

/// [`fuzz`] with `ci_cases` cases in a short run (for slow targets).
fn fuzz_n(
    name: &str,
    corpus: Vec<Vec<u8>>,
    per_case: Duration,
    ci_cases: u32,
    target: impl Fn(&[u8]),
) {
    let seconds: u64 = std::env::var("KILN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cases: u32 = std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ci_cases);
    let started = Instant::now();
    let strategy = input(corpus.clone());
    let mut executions: u64 = 0;
    // The corpus itself first: every seed parses as it is.
    for c in &corpus {
        target(c);
    }
    loop {
        let mut runner = TestRunner::new(Config {
            cases: if seconds > 0 { 2000 } else { cases },
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        });
        let result = runner.run(&strategy, |bytes| {
            let t = Instant::now();
            target(&bytes);
            if t.elapsed() > per_case {
                return Err(TestCaseError::fail(format!(
                    "took {:?} on {} bytes",
                    t.elapsed(),
                    bytes.len()
                )));
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz target {name}: {e}");
        }
        executions += u64::from(runner.config().cases);
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {executions} executions in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn deb_packages() {
    fuzz("deb", corpus("deb"), Duration::from_secs(5), |bytes| {
        if let Ok(deb) = kiln_seed::steps::deb::parse(bytes) {
            let _ = kiln_seed::steps::tarsafe::validate("fuzz", deb.data);
        }
    });
}

#[test]
fn control_stanzas_and_md5sums() {
    fuzz(
        "control",
        corpus("control"),
        Duration::from_secs(2),
        |bytes| {
            let t = text(bytes);
            if let Ok(c) = kiln_seed::steps::deb::Control::parse(&t) {
                let _ = c.render();
                let _ = c.to_status();
            }
            let _ = kiln_seed::steps::deb::parse_md5sums(&t);
        },
    );
}

#[test]
fn packages_indexes_versions_and_relations() {
    fuzz(
        "packages",
        corpus("packages"),
        Duration::from_secs(2),
        |bytes| {
            let t = text(bytes);
            if let Ok(pkgs) =
                kiln::debian::packages::parse_packages(&t, "main/binary-amd64/Packages")
            {
                assert!(pkgs.iter().all(|p| !p.name.is_empty()));
            }
            for line in t.lines().take(64) {
                let value = line.split_once(": ").map(|(_, v)| v).unwrap_or(line);
                let _ = kiln::debian::packages::parse_version(value);
                let _ = kiln::debian::packages::parse_relations(value, "amd64");
                let _ = kiln::debian::packages::parse_provides(value);
            }
        },
    );
}

/// The archive keyring the lock verifies InRelease files with.
fn archive_keyring() -> kiln::debian::release::Keyring {
    kiln::debian::release::Keyring::load(Path::new(
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    ))
    .expect("the Debian archive keyring (debian-archive-keyring) is installed")
}

#[test]
fn inrelease_files() {
    let keyring = archive_keyring();
    let seed = corpus("inrelease");
    // The signed file as published is accepted (at its own date)...
    let now = 1_796_600_000;
    assert!(kiln::debian::release::verify_clearsigned(&seed[0], &keyring, now).is_ok());
    // ...and no mutation of it is, except ones outside the signed text and
    // the signature that OpenPGP itself ignores (checked below: none of
    // the accepted inputs may carry extra content).
    fuzz_n(
        "inrelease",
        seed.clone(),
        Duration::from_secs(5),
        60,
        |bytes| {
            if let Ok((signed, _)) = kiln::debian::release::verify_clearsigned(bytes, &keyring, now)
            {
                let original = text(&seed[0]);
                assert!(
                    original.contains(signed.trim_end()),
                    "accepted a signed text that is not the archive's"
                );
                let begin = "-----BEGIN PGP SIGNED MESSAGE-----";
                assert_eq!(
                    text(bytes).matches(begin).count(),
                    1,
                    "two signed blocks accepted"
                );
            }
        },
    );
}

#[test]
fn inrelease_with_a_second_block_or_trailing_data_is_refused() {
    let keyring = archive_keyring();
    let seed = corpus("inrelease").remove(0);
    let now = 1_796_600_000;
    let mut twice = seed.clone();
    twice.extend_from_slice(&seed);
    let e = kiln::debian::release::verify_clearsigned(&twice, &keyring, now).unwrap_err();
    assert!(
        e.contains("a second signed block"),
        "{}",
        &e[..e.len().min(300)]
    );
    let mut trailing = seed.clone();
    trailing.extend_from_slice(b"Origin: Not Debian\n");
    let e = kiln::debian::release::verify_clearsigned(&trailing, &keyring, now).unwrap_err();
    assert!(
        e.contains("after the signature"),
        "{}",
        &e[..e.len().min(300)]
    );
}

#[test]
fn image_definitions() {
    let mut seed = Vec::new();
    for entry in std::fs::read_dir(common::project().join("images")).unwrap() {
        let p = entry.unwrap().path().join("image.toml");
        if p.is_file() {
            seed.push(std::fs::read(p).unwrap());
        }
    }
    fuzz("definition", seed, Duration::from_secs(2), |bytes| {
        let _ = kiln::definition::parse(Path::new("images/x/image.toml"), &text(bytes), None);
    });
}

#[test]
fn dsse_envelopes_bundles_and_statements() {
    let mut seed = corpus("dsse");
    seed.extend(corpus("bundle"));
    fuzz("dsse+bundle", seed, Duration::from_secs(2), |bytes| {
        if let Ok(payload) =
            kiln_seed::attest::dsse::Envelope::from_json(bytes).and_then(|e| e.payload_bytes())
        {
            let _ = kiln_seed::attest::statement::Statement::from_json(&payload);
        }
        let _ = kiln_seed::attest::bundle::Bundle::from_json(bytes);
        let _ = kiln_seed::attest::statement::Statement::from_json(bytes);
        let _ = kiln_seed::attest::simplesigning::SimpleSigning::from_json(bytes);
    });
}

#[test]
fn public_keys() {
    fuzz(
        "publickey",
        corpus("publickey"),
        Duration::from_secs(2),
        |bytes| {
            let _ = kiln_seed::attest::pubkey::PublicKey::from_pem(&text(bytes));
        },
    );
}

#[test]
fn encrypted_private_keys() {
    // Decrypting runs scrypt (about 0.1 s, 64 MiB) whenever the structure
    // holds: fewer cases, and a time limit wide enough for a loaded
    // machine (a long run beside CI once took 12 s for one case).
    fuzz_n(
        "privatekey",
        corpus("privatekey"),
        Duration::from_secs(60),
        100,
        |bytes| {
            let _ = kiln::keys::load_private(&text(bytes), b"own-project");
        },
    );
}

#[test]
fn registry_references_and_challenges() {
    let seed: Vec<Vec<u8>> = [
        "127.0.0.1:5000/kiln/scratch-plus:latest",
        "docker://registry.example/a/b@sha256:0303030303030303030303030303030303030303030303030303030303030303",
        "oci:./result:debug",
        "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull\"",
        "Basic realm=\"registry\"",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("references", seed, Duration::from_secs(1), |bytes| {
        let t = text(bytes);
        let _ = kiln_seed::host::regclient::RegistryRef::parse(&t);
        let _ = kiln_seed::imageref::ImageRef::parse(&t);
        let _ = kiln_seed::host::regclient::parse_challenge(&t);
    });
}

#[test]
fn policy_data() {
    let dir = common::project().join("policy");
    let mut rego = Vec::new();
    let mut seed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            rego.push(kiln_seed::policy::PolicyFile {
                name,
                text: std::fs::read_to_string(&p).unwrap(),
            });
        } else if name.ends_with(".json") {
            seed.push(std::fs::read(&p).unwrap());
        }
    }
    fuzz("policydata", seed, Duration::from_secs(5), |bytes| {
        let data = [kiln_seed::policy::PolicyFile {
            name: "policy/budgets.json".into(),
            text: text(bytes),
        }];
        let _ = kiln_seed::policy::Policies::load(&rego, &data);
    });
}
